// SPDX-License-Identifier: MIT
/*
 * attn_sparse_avx2.c - SparF hot loops with AVX2 + FMA + F16C: the
 * dim-major approximate scores over channel-indexed columns (8
 * accumulators of 8 tokens in registers, every head of the group per
 * block, the columns prefetched ahead into L2), row dots for the tail
 * tokens, max, sum of exponentials and exponentials in place.  Ragged
 * ends are done in scalar code; split and wsum are the scalar ones.
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"
#include "attn_avx2_inl.h"

#define AI static inline __attribute__((always_inline))

/* chan_dot prefetches this many bytes ahead in every column */
#ifndef CPF_BYTES
#define CPF_BYTES 2048
#endif

#define TB 8		/* 8-token vectors per block of chan_dot */

AI void chan_dot_1(const int dt, uint32_t r, const float *qd,
		   const void *const *cols, uint32_t t0, float *s,
		   const void *const *pf, uint32_t pt0)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	__m256 acc[TB];

#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
		acc[i] = _mm256_setzero_ps();
	for (uint32_t j = 0; j < r; j++) {
		const char *c = (const char *)cols[j] + (size_t)t0 * es;
		const __m256 qv = _mm256_set1_ps(qd[j]);

		if (pf) {	/* the lines of a block ahead, spread out */
			const char *p = (const char *)pf[j] + (size_t)pt0 * es;

			for (size_t o = 0; o < TB * 8 * es; o += 64)
				_mm_prefetch(p + o, _MM_HINT_T1);
		}

#pragma GCC unroll 8
		for (int i = 0; i < TB; i++)
			acc[i] = _mm256_fmadd_ps(ld8(c + i * 8 * es, dt), qv,
						 acc[i]);
	}
#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
		_mm256_storeu_ps(s + t0 + i * 8, acc[i]);
}

/* blocks of TB * 8 tokens, every head per block */
AI void chan_dot_t(const int dt, uint32_t r, uint32_t nq, const float *qd,
		   const void *const *cols, const void *const *next,
		   uint32_t n, float *s, size_t ss)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	const uint32_t ahead = (uint32_t)(CPF_BYTES / es);
	uint32_t t0 = 0;

	for (; t0 + TB * 8 <= n; t0 += TB * 8) {
		/* prefetch (with the first head) the block @ahead tokens on,
		 * in this chunk or the next one */
		const void *const *pf = cols;
		uint32_t pt0 = t0 + ahead;

		if (pt0 + TB * 8 > n) {
			pf = next;
			pt0 -= n;
			if (pt0 + TB * 8 > n)
				pf = NULL;
		}
		for (uint32_t h = 0; h < nq; h++)
			chan_dot_1(dt, r, qd + h * r, cols, t0, s + h * ss,
			   h ? NULL : pf, pt0);
	}
	for (; t0 + 8 <= n; t0 += 8) {
		for (uint32_t h = 0; h < nq; h++) {
			__m256 acc = _mm256_setzero_ps();

			for (uint32_t j = 0; j < r; j++)
				acc = _mm256_fmadd_ps(
					ld8((const char *)cols[j] +
					    (size_t)t0 * es, dt),
					_mm256_set1_ps(qd[h * r + j]), acc);
			_mm256_storeu_ps(s + h * ss + t0, acc);
		}
	}
	for (; t0 < n; t0++) {
		for (uint32_t h = 0; h < nq; h++) {
			float acc = 0.0f;

			for (uint32_t j = 0; j < r; j++)
				acc = fmaf(attn_load_elem(cols[j], dt, t0),
					   qd[h * r + j], acc);
			s[h * ss + t0] = acc;
		}
	}
}

static void chan_dot(int dt, uint32_t r, uint32_t nq, const float *qd,
		     const void *const *cols, const void *const *next,
		     uint32_t n, float *s, size_t ss)
{
	switch (dt) {
	case CSD_DTYPE_F16:
		chan_dot_t(CSD_DTYPE_F16, r, nq, qd, cols, next, n,
			   s, ss);
		break;
	case CSD_DTYPE_BF16:
		chan_dot_t(CSD_DTYPE_BF16, r, nq, qd, cols, next, n,
			   s, ss);
		break;
	default:
		chan_dot_t(CSD_DTYPE_F32, r, nq, qd, cols, next, n,
			   s, ss);
		break;
	}
}

AI void rows_dot_t(const int dt, uint32_t d, const float *q,
		   const char *const *rows, uint32_t n, float *s)
{
	const size_t cs = 8 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	uint32_t t = 0;

	for (; t + 4 <= n; t += 4) {
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;

		for (uint32_t c = 0; c < d / 8; c++) {
			const __m256 qv = _mm256_loadu_ps(q + c * 8);

			a0 = _mm256_fmadd_ps(ld8(rows[t] + c * cs, dt), qv, a0);
			a1 = _mm256_fmadd_ps(ld8(rows[t + 1] + c * cs, dt), qv,
					     a1);
			a2 = _mm256_fmadd_ps(ld8(rows[t + 2] + c * cs, dt), qv,
					     a2);
			a3 = _mm256_fmadd_ps(ld8(rows[t + 3] + c * cs, dt), qv,
					     a3);
		}
		s[t] = hsum1(a0);
		s[t + 1] = hsum1(a1);
		s[t + 2] = hsum1(a2);
		s[t + 3] = hsum1(a3);
	}
	for (; t < n; t++) {
		__m256 a0 = _mm256_setzero_ps();

		for (uint32_t c = 0; c < d / 8; c++)
			a0 = _mm256_fmadd_ps(ld8(rows[t] + c * cs, dt),
					     _mm256_loadu_ps(q + c * 8), a0);
		s[t] = hsum1(a0);
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
	__m256 m = _mm256_set1_ps(-INFINITY);
	float r;
	uint32_t t = 0;
	__m128 x;

	for (; t + 8 <= n; t += 8)	/* max_ps(x, m) keeps m for NaN x */
		m = _mm256_max_ps(_mm256_loadu_ps(s + t), m);
	x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	r = _mm_cvtss_f32(x);
	for (; t < n; t++)
		r = fmaxf(r, s[t]);
	return r;
}

static float expsum(const float *s, uint32_t n, float a, float b)
{
	const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
	__m256 s0 = _mm256_setzero_ps(), s1 = s0;
	uint32_t t = 0;
	float sum;

	for (; t + 16 <= n; t += 16) {
		s0 = _mm256_add_ps(s0, exp8(_mm256_fmsub_ps(
			va, _mm256_loadu_ps(s + t), vb)));
		s1 = _mm256_add_ps(s1, exp8(_mm256_fmsub_ps(
			va, _mm256_loadu_ps(s + t + 8), vb)));
	}
	sum = hsum1(_mm256_add_ps(s0, s1));
	for (; t < n; t++)
		sum += expf(fmaf(a, s[t], -b));
	return sum;
}

static float expput(float *s, uint32_t n, float a, float b)
{
	const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
	__m256 acc = _mm256_setzero_ps();
	uint32_t t = 0;
	float sum;

	for (; t + 8 <= n; t += 8) {
		__m256 e = exp8(_mm256_fmsub_ps(va, _mm256_loadu_ps(s + t), vb));

		_mm256_storeu_ps(s + t, e);
		acc = _mm256_add_ps(acc, e);
	}
	sum = hsum1(acc);
	for (; t < n; t++) {
		s[t] = expf(fmaf(a, s[t], -b));
		sum += s[t];
	}
	return sum;
}

const struct attn_sparse_ops attn_sparse_avx2 = {
	.chan_dot = chan_dot,
	.rows_dot = rows_dot,
	.vmax = vmax,
	.expsum = expsum,
	.expput = expput,
	.wsum = attn_sparse_wsum_scalar,
	.split = attn_sparse_split_scalar,
};
