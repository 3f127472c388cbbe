// SPDX-License-Identifier: MIT
/*
 * attn_sparse_avx512.c - SparF hot loops with AVX-512 (compiled with
 * -mavx512f/bw/vl/dq): the dim-major approximate scores over
 * channel-indexed columns (8 accumulators of 16 tokens in registers, one
 * load and one FMA per 16 tokens and dim), row dots for the tail tokens,
 * max and sum of exponentials for the kept softmax mass.
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"

#define AI static inline __attribute__((always_inline))

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

/* the first popcount(m) lanes, others 0 */
AI __m512 ld16m(const char *p, const int dt, __mmask16 m)
{
	if (dt == CSD_DTYPE_F16)
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
	if (dt == CSD_DTYPE_BF16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(
			_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)),
			16));
	return _mm512_maskz_loadu_ps(m, p);
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

#define TB 8		/* 16-token vectors per block of chan_dot */

AI void chan_block(const int dt, uint32_t r, const float *qd,
		   const void *const *cols, uint32_t t0, float *s)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	__m512 acc[TB];

#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
		acc[i] = _mm512_setzero_ps();
	for (uint32_t j = 0; j < r; j++) {
		const char *c = (const char *)cols[j] + (size_t)t0 * es;
		const __m512 qv = _mm512_set1_ps(qd[j]);

#pragma GCC unroll 8
		for (int i = 0; i < TB; i++)
			acc[i] = _mm512_fmadd_ps(ld16(c + i * 16 * es, dt), qv,
						 acc[i]);
	}
#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
		_mm512_storeu_ps(s + t0 + i * 16, acc[i]);
}

AI void chan_dot_t(const int dt, uint32_t r, const float *qd,
		   const void *const *cols, uint32_t n, float *s)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	uint32_t t0 = 0;

	for (; t0 + TB * 16 <= n; t0 += TB * 16)
		chan_block(dt, r, qd, cols, t0, s);
	for (; t0 < n; t0 += 16) {
		uint32_t left = n - t0;
		__mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__m512 acc = _mm512_setzero_ps();

		for (uint32_t j = 0; j < r; j++)
			acc = _mm512_fmadd_ps(
				ld16m((const char *)cols[j] + (size_t)t0 * es,
				      dt, m),
				_mm512_set1_ps(qd[j]), acc);
		_mm512_mask_storeu_ps(s + t0, m, acc);
	}
}

static void chan_dot(int dt, uint32_t r, const float *qd,
		     const void *const *cols, uint32_t n, float *s)
{
	switch (dt) {
	case CSD_DTYPE_F16:
		chan_dot_t(CSD_DTYPE_F16, r, qd, cols, n, s);
		break;
	case CSD_DTYPE_BF16:
		chan_dot_t(CSD_DTYPE_BF16, r, qd, cols, n, s);
		break;
	default:
		chan_dot_t(CSD_DTYPE_F32, r, qd, cols, n, s);
		break;
	}
}

AI void rows_dot_t(const int dt, uint32_t d, const float *q,
		   const char *const *rows, uint32_t n, float *s)
{
	const size_t cs = 16 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	uint32_t t = 0;

	for (; t + 4 <= n; t += 4) {
		__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;

		for (uint32_t c = 0; c < d / 16; c++) {
			const __m512 qv = _mm512_loadu_ps(q + c * 16);

			a0 = _mm512_fmadd_ps(ld16(rows[t] + c * cs, dt), qv, a0);
			a1 = _mm512_fmadd_ps(ld16(rows[t + 1] + c * cs, dt), qv,
					     a1);
			a2 = _mm512_fmadd_ps(ld16(rows[t + 2] + c * cs, dt), qv,
					     a2);
			a3 = _mm512_fmadd_ps(ld16(rows[t + 3] + c * cs, dt), qv,
					     a3);
		}
		s[t] = _mm512_reduce_add_ps(a0);
		s[t + 1] = _mm512_reduce_add_ps(a1);
		s[t + 2] = _mm512_reduce_add_ps(a2);
		s[t + 3] = _mm512_reduce_add_ps(a3);
	}
	for (; t < n; t++) {
		__m512 a0 = _mm512_setzero_ps();

		for (uint32_t c = 0; c < d / 16; c++)
			a0 = _mm512_fmadd_ps(ld16(rows[t] + c * cs, dt),
					     _mm512_loadu_ps(q + c * 16), a0);
		s[t] = _mm512_reduce_add_ps(a0);
	}
}

static void rows_dot(int dt, uint32_t d, const float *q,
		     const char *const *rows, uint32_t n, float *s)
{
	switch (dt) {
	case CSD_DTYPE_F16:
		rows_dot_t(CSD_DTYPE_F16, d, q, rows, n, s);
		break;
	case CSD_DTYPE_BF16:
		rows_dot_t(CSD_DTYPE_BF16, d, q, rows, n, s);
		break;
	default:
		rows_dot_t(CSD_DTYPE_F32, d, q, rows, n, s);
		break;
	}
}

static float vmax(const float *s, uint32_t n)
{
	__m512 m = _mm512_set1_ps(-INFINITY);
	uint32_t t = 0;

	for (; t + 16 <= n; t += 16)	/* max_ps(x, m) keeps m for NaN x */
		m = _mm512_max_ps(_mm512_loadu_ps(s + t), m);
	if (t < n) {
		__mmask16 k = (__mmask16)((1u << (n - t)) - 1);

		m = _mm512_mask_max_ps(m, k, _mm512_maskz_loadu_ps(k, s + t), m);
	}
	return _mm512_reduce_max_ps(m);
}

static float expsum(const float *s, uint32_t n, float a, float b)
{
	const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
	__m512 s0 = _mm512_setzero_ps(), s1 = s0;
	uint32_t t = 0;

	for (; t + 32 <= n; t += 32) {
		s0 = _mm512_add_ps(s0, exp16(_mm512_fmsub_ps(
			va, _mm512_loadu_ps(s + t), vb)));
		s1 = _mm512_add_ps(s1, exp16(_mm512_fmsub_ps(
			va, _mm512_loadu_ps(s + t + 16), vb)));
	}
	for (; t < n; t += 16) {
		uint32_t left = n - t;
		__mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__m512 e = exp16(_mm512_fmsub_ps(
			va, _mm512_maskz_loadu_ps(k, s + t), vb));

		s0 = _mm512_mask_add_ps(s0, k, s0, e);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

const struct attn_sparse_ops attn_sparse_avx512 = {
	.chan_dot = chan_dot,
	.rows_dot = rows_dot,
	.vmax = vmax,
	.expsum = expsum,
};
