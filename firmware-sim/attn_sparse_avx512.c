// SPDX-License-Identifier: MIT
/*
 * attn_sparse_avx512.c - SparF hot loops with AVX-512 (compiled with
 * -mavx512f/bw/vl/dq): the dim-major approximate scores over
 * channel-indexed columns (up to 16 accumulators in registers: 8 x 16
 * tokens of one or two heads, or 4 x 16 tokens of four heads, so each
 * column vector is converted once per head block; the columns are
 * prefetched ahead into L2, across into the next chunk), row dots for the
 * tail tokens, max, sums of exponentials, the group's weighted sum of
 * probabilities, and the top-k split by key byte (register compress).
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"
#include "attn_avx512_inl.h"

#define AI static inline __attribute__((always_inline))

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

/* chan_dot prefetches this many bytes ahead in every column */
#ifndef CPF_BYTES
#define CPF_BYTES 2048
#endif
#ifndef CPF_HINT
#define CPF_HINT _MM_HINT_T1
#endif

#define TB 8		/* 16-token vectors per block of chan_dot */

/*
 * Scores of @hb heads (qd [hb][r]) for the @tv * 16 tokens at t0: each
 * column vector is converted once and used by every head (hb * tv <= 16
 * accumulators).  With @pf, prefetches the lines of the TB * 16 tokens at
 * pt0 of columns pf[], one column per dim step.
 */
AI void chan_block(const int dt, const int hb, const int tv, uint32_t r,
		   const float *qd, const void *const *cols, uint32_t t0,
		   float *s, size_t ss, const void *const *pf, uint32_t pt0)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	__m512 acc[4][TB];

#pragma GCC unroll 4
	for (int h = 0; h < hb; h++)
#pragma GCC unroll 8
		for (int i = 0; i < tv; i++)
			acc[h][i] = _mm512_setzero_ps();
	for (uint32_t j = 0; j < r; j++) {
		const char *c = (const char *)cols[j] + (size_t)t0 * es;
		__m512 qv[4];

#pragma GCC unroll 4
		for (int h = 0; h < hb; h++)
			qv[h] = _mm512_set1_ps(qd[h * r + j]);
		if (pf) {	/* the lines of a block ahead, spread out */
			const char *p = (const char *)pf[j] + (size_t)pt0 * es;

			for (size_t o = 0; o < TB * 16 * es; o += 64)
				_mm_prefetch(p + o, CPF_HINT);
		}
#pragma GCC unroll 8
		for (int i = 0; i < tv; i++) {
			const __m512 x = ld16(c + i * 16 * es, dt);

#pragma GCC unroll 4
			for (int h = 0; h < hb; h++)
				acc[h][i] = _mm512_fmadd_ps(x, qv[h], acc[h][i]);
		}
	}
#pragma GCC unroll 4
	for (int h = 0; h < hb; h++)
#pragma GCC unroll 8
		for (int i = 0; i < tv; i++)
			_mm512_storeu_ps(s + h * ss + t0 + i * 16, acc[h][i]);
}

/* blocks of TB * 16 tokens, every head per block (the block's column data
 * stays in L1 across heads), heads 4, 2 or 1 at a time */
AI void chan_dot_t(const int dt, uint32_t r, uint32_t nq, const float *qd,
		   const void *const *cols, const void *const *next,
		   uint32_t n, float *s, size_t ss)
{
	const size_t es = dt == CSD_DTYPE_F32 ? 4 : 2;
	const uint32_t ahead = (uint32_t)(CPF_BYTES / es);
	uint32_t t0 = 0;

	for (; t0 + TB * 16 <= n; t0 += TB * 16) {
		/* prefetch (with the first heads) the block @ahead tokens
		 * on, in this chunk or the next one */
		const void *const *pf = cols;
		uint32_t pt0 = t0 + ahead, h = 0;

		if (pt0 + TB * 16 > n) {
			pf = next;
			pt0 -= n;
			if (pt0 + TB * 16 > n)
				pf = NULL;
		}
		for (; h + 4 <= nq; h += 4, pf = NULL) {
			chan_block(dt, 4, TB / 2, r, qd + h * r, cols, t0,
				   s + h * ss, ss, pf, pt0);
			chan_block(dt, 4, TB / 2, r, qd + h * r, cols,
				   t0 + TB * 8, s + h * ss, ss, NULL, 0);
		}
		for (; h + 2 <= nq; h += 2, pf = NULL)
			chan_block(dt, 2, TB, r, qd + h * r, cols, t0,
				   s + h * ss, ss, pf, pt0);
		for (; h < nq; h++, pf = NULL)
			chan_block(dt, 1, TB, r, qd + h * r, cols, t0,
				   s + h * ss, ss, pf, pt0);
	}
	for (; t0 < n; t0 += 16) {
		uint32_t left = n - t0;
		__mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);

		for (uint32_t h = 0; h < nq; h++) {
			__m512 acc = _mm512_setzero_ps();

			for (uint32_t j = 0; j < r; j++)
				acc = _mm512_fmadd_ps(
					ld16m((const char *)cols[j] +
					      (size_t)t0 * es, dt, m),
					_mm512_set1_ps(qd[h * r + j]), acc);
			_mm512_mask_storeu_ps(s + h * ss + t0, m, acc);
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

static float expput(float *s, uint32_t n, float a, float b)
{
	const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
	__m512 sum = _mm512_setzero_ps();

	for (uint32_t t = 0; t < n; t += 16) {
		uint32_t left = n - t;
		__mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__m512 e = exp16(_mm512_fmsub_ps(
			va, _mm512_maskz_loadu_ps(k, s + t), vb));

		_mm512_mask_storeu_ps(s + t, k, e);
		sum = _mm512_mask_add_ps(sum, k, sum, e);
	}
	return _mm512_reduce_add_ps(sum);
}

static void wsum(const float *e, size_t ss, uint32_t nq, const float *w,
		 uint32_t n, float *g)
{
	for (uint32_t t = 0; t < n; t += 16) {
		uint32_t left = n - t;
		__mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__m512 acc = _mm512_mul_ps(_mm512_set1_ps(w[0]),
					   _mm512_maskz_loadu_ps(k, e + t));

		for (uint32_t h = 1; h < nq; h++)
			acc = _mm512_fmadd_ps(_mm512_set1_ps(w[h]),
					      _mm512_maskz_loadu_ps(k, e + h * ss + t),
					      acc);
		_mm512_mask_storeu_ps(g + t, k, acc);
	}
}

/* compress in registers, then a plain store (a compressing store to memory
 * is slow on some cores); up to 16 entries past the count are written */
static void split(const float *s, uint32_t n, uint32_t kb, uint32_t *hi,
		  uint32_t *nhi, uint32_t *eq, uint32_t *neq)
{
	const __m512i vkb = _mm512_set1_epi32((int)kb);
	const __m512i top = _mm512_set1_epi32((int)0x80000000u);
	__m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
					12, 13, 14, 15);
	const __m512i step = _mm512_set1_epi32(16);
	uint32_t nh = 0, ne = 0;

	for (uint32_t t = 0; t < n; t += 16) {
		uint32_t left = n - t;
		__mmask16 m = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__m512i u = _mm512_maskz_loadu_epi32(m, s + t);
		__m512i key = _mm512_xor_si512(u, _mm512_or_si512(
					_mm512_srai_epi32(u, 31), top));
		__m512i b = _mm512_srli_epi32(key, 24);
		__mmask16 mh = _mm512_mask_cmpgt_epu32_mask(m, b, vkb);
		__mmask16 me = _mm512_mask_cmpeq_epu32_mask(m, b, vkb);

		_mm512_storeu_si512(hi + nh, _mm512_maskz_compress_epi32(mh, idx));
		nh += (uint32_t)__builtin_popcount(mh);
		_mm512_storeu_si512(eq + ne, _mm512_maskz_compress_epi32(me, idx));
		ne += (uint32_t)__builtin_popcount(me);
		idx = _mm512_add_epi32(idx, step);
	}
	*nhi = nh;
	*neq = ne;
}

const struct attn_sparse_ops attn_sparse_avx512 = {
	.chan_dot = chan_dot,
	.rows_dot = rows_dot,
	.vmax = vmax,
	.expsum = expsum,
	.expput = expput,
	.wsum = wsum,
	.split = split,
};
