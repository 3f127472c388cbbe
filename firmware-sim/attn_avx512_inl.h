/* SPDX-License-Identifier: MIT */
/*
 * attn_avx512_inl.h - AVX-512 building blocks shared by the dense
 * (attn_avx512.c) and SparF (attn_sparse_avx512.c) kernels: KV element
 * loads for every dtype and a vector exp.  Include only from translation
 * units compiled with the AVX-512 flags (firmware-sim/meson.build).
 */
#ifndef CSDFW_ATTN_AVX512_INL_H
#define CSDFW_ATTN_AVX512_INL_H

#include <immintrin.h>

#include "attn_internal.h"

#ifndef AI
#define AI static inline __attribute__((always_inline))
#endif

AI __m512 ld16(const char *p, const int dt)
{
	if (dt == CSD_DTYPE_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
	if (dt == CSD_DTYPE_BF16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(
			_mm512_cvtepu16_epi32(
				_mm256_loadu_si256((const __m256i *)p)), 16));
	return _mm512_loadu_ps((const float *)p);
}

/* exp(x) for x <= 88; -inf and very negative x give 0. */
AI __m512 exp16(__m512 x)
{
	const __m512 one = _mm512_set1_ps(1.0f);
	__m512 n, r, r2, p;

	x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
	x = _mm512_min_ps(x, _mm512_set1_ps(88.37626f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
				 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	r2 = _mm512_mul_ps(r, r);
	p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, one));
	return _mm512_scalef_ps(p, n);
}

#endif /* CSDFW_ATTN_AVX512_INL_H */
