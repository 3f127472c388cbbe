/* SPDX-License-Identifier: MIT */
/*
 * attn_avx2_inl.h - AVX2 building blocks shared by the dense (attn_avx2.c)
 * and SparF (attn_sparse_avx2.c) kernels: KV element loads for every dtype,
 * a vector exp, horizontal sum and max.  Include only from translation units
 * compiled with -mavx2 -mfma -mf16c.
 */
#ifndef CSDFW_ATTN_AVX2_INL_H
#define CSDFW_ATTN_AVX2_INL_H

#include <immintrin.h>

#include "attn_internal.h"

#ifndef AI
#define AI static inline __attribute__((always_inline))
#endif

AI __m256 ld8(const char *p, const int dt)
{
	if (dt == CSD_DTYPE_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
	if (dt == CSD_DTYPE_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(
			_mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)p)), 16));
	return _mm256_loadu_ps((const float *)p);
}

/* exp(x) for x <= 88; -inf and very negative x give 0. */
AI __m256 exp8(__m256 x)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 n, r, r2, p, tiny;
	__m256i e;

	/* below -87.3 the 2^n scaling would leave the normal range */
	tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
	x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
	x = _mm256_min_ps(x, _mm256_set1_ps(88.37626f));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	r2 = _mm256_mul_ps(r, r);
	p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, one));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
					       _mm256_set1_epi32(127)), 23);
	return _mm256_andnot_ps(tiny,
				_mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AI float hsum1(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

AI float hmax1(__m256 v)
{
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

#endif /* CSDFW_ATTN_AVX2_INL_H */
