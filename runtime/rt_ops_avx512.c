/* SPDX-License-Identifier: MIT */
/*
 * rt_ops_avx512.c - AVX-512 matmul kernel (same scheme as rt_ops_avx2.c,
 * 16 lanes, masked tails).
 */
#include <immintrin.h>
#include <string.h>

#include "rt_ops.h"

static void cvt_row(uint32_t type, const void *row, float *dst, uint32_t K)
{
	uint32_t k = 0;

	switch (type) {
	case RT_TYPE_F16: {
		const uint16_t *h = row;

		for (; k + 16 <= K; k += 16)
			_mm512_store_ps(dst + k, _mm512_cvtph_ps(
				_mm256_loadu_si256((const __m256i *)(h + k))));
		for (; k < K; k++)
			dst[k] = _cvtsh_ss(h[k]);
		break;
	}
	case RT_TYPE_BF16: {
		const uint16_t *h = row;

		for (; k + 16 <= K; k += 16) {
			__m512i v = _mm512_cvtepu16_epi32(
				_mm256_loadu_si256((const __m256i *)(h + k)));

			_mm512_store_ps(dst + k, _mm512_castsi512_ps(
				_mm512_slli_epi32(v, 16)));
		}
		for (; k < K; k++) {
			uint32_t u = (uint32_t)h[k] << 16;

			memcpy(dst + k, &u, 4);
		}
		break;
	}
	case RT_TYPE_Q8_0: {
		const struct rt_block_q8_0 *b = row;
		uint32_t nb = K / RT_QK8_0, i, g;

		for (i = 0; i < nb; i++) {
			__m512 d = _mm512_set1_ps(_cvtsh_ss(b[i].d));

			for (g = 0; g < 2; g++) {
				__m128i q = _mm_loadu_si128(
					(const __m128i *)(b[i].qs + 16 * g));
				__m512 f = _mm512_cvtepi32_ps(
					_mm512_cvtepi8_epi32(q));

				_mm512_store_ps(dst + i * 32 + 16 * g,
						_mm512_mul_ps(d, f));
			}
		}
		break;
	}
	default:
		memcpy(dst, row, (size_t)K * 4);
	}
}

static inline __mmask16 tail_mask(uint32_t rem)
{
	return (__mmask16)((1u << rem) - 1);
}

static float dot1(const float *x, const float *w, uint32_t K)
{
	__m512 a = _mm512_setzero_ps();
	uint32_t k;

	for (k = 0; k + 16 <= K; k += 16)
		a = _mm512_fmadd_ps(_mm512_loadu_ps(x + k),
				    _mm512_loadu_ps(w + k), a);
	if (k < K) {
		__mmask16 m = tail_mask(K - k);

		a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k),
				    _mm512_maskz_loadu_ps(m, w + k), a);
	}
	return _mm512_reduce_add_ps(a);
}

static void dot4(const float *x, const float *const *w, uint32_t K,
		 float *out)
{
	__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	uint32_t k;

	for (k = 0; k + 16 <= K; k += 16) {
		__m512 xv = _mm512_loadu_ps(x + k);

		a0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[0] + k), a0);
		a1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[1] + k), a1);
		a2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[2] + k), a2);
		a3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[3] + k), a3);
	}
	if (k < K) {
		__mmask16 m = tail_mask(K - k);
		__m512 xv = _mm512_maskz_loadu_ps(m, x + k);

		a0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[0] + k), a0);
		a1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[1] + k), a1);
		a2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[2] + k), a2);
		a3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[3] + k), a3);
	}
	out[0] = _mm512_reduce_add_ps(a0);
	out[1] = _mm512_reduce_add_ps(a1);
	out[2] = _mm512_reduce_add_ps(a2);
	out[3] = _mm512_reduce_add_ps(a3);
}

/* dot4 for two x rows at once: same per-output arithmetic as dot4. */
static void dot4x2(const float *x0, const float *x1, const float *const *w,
		   uint32_t K, float *out0, float *out1)
{
	__m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	__m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
	uint32_t k;

	for (k = 0; k + 16 <= K; k += 16) {
		__m512 xv = _mm512_loadu_ps(x0 + k), yv = _mm512_loadu_ps(x1 + k);
		__m512 w0 = _mm512_loadu_ps(w[0] + k), w1 = _mm512_loadu_ps(w[1] + k);
		__m512 w2 = _mm512_loadu_ps(w[2] + k), w3 = _mm512_loadu_ps(w[3] + k);

		a0 = _mm512_fmadd_ps(xv, w0, a0);
		a1 = _mm512_fmadd_ps(xv, w1, a1);
		a2 = _mm512_fmadd_ps(xv, w2, a2);
		a3 = _mm512_fmadd_ps(xv, w3, a3);
		b0 = _mm512_fmadd_ps(yv, w0, b0);
		b1 = _mm512_fmadd_ps(yv, w1, b1);
		b2 = _mm512_fmadd_ps(yv, w2, b2);
		b3 = _mm512_fmadd_ps(yv, w3, b3);
	}
	if (k < K) {
		__mmask16 m = tail_mask(K - k);
		__m512 xv = _mm512_maskz_loadu_ps(m, x0 + k);
		__m512 yv = _mm512_maskz_loadu_ps(m, x1 + k);
		__m512 w0 = _mm512_maskz_loadu_ps(m, w[0] + k);
		__m512 w1 = _mm512_maskz_loadu_ps(m, w[1] + k);
		__m512 w2 = _mm512_maskz_loadu_ps(m, w[2] + k);
		__m512 w3 = _mm512_maskz_loadu_ps(m, w[3] + k);

		a0 = _mm512_fmadd_ps(xv, w0, a0);
		a1 = _mm512_fmadd_ps(xv, w1, a1);
		a2 = _mm512_fmadd_ps(xv, w2, a2);
		a3 = _mm512_fmadd_ps(xv, w3, a3);
		b0 = _mm512_fmadd_ps(yv, w0, b0);
		b1 = _mm512_fmadd_ps(yv, w1, b1);
		b2 = _mm512_fmadd_ps(yv, w2, b2);
		b3 = _mm512_fmadd_ps(yv, w3, b3);
	}
	out0[0] = _mm512_reduce_add_ps(a0);
	out0[1] = _mm512_reduce_add_ps(a1);
	out0[2] = _mm512_reduce_add_ps(a2);
	out0[3] = _mm512_reduce_add_ps(a3);
	out1[0] = _mm512_reduce_add_ps(b0);
	out1[1] = _mm512_reduce_add_ps(b1);
	out1[2] = _mm512_reduce_add_ps(b2);
	out1[3] = _mm512_reduce_add_ps(b3);
}

void rt_mm_avx512(uint32_t type, const float *x, uint32_t B, uint32_t K,
		  const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		  float *y, uint32_t ldy, float *scratch)
{
	const float *rows[RT_MM_ROWS];
	uint32_t nr = n1 - n0, r, b;
	size_t ks = ((size_t)K + 15) & ~(size_t)15;

	for (r = 0; r < nr; r++) {
		const uint8_t *src = (const uint8_t *)w +
				     (size_t)(n0 + r) * row_bytes;

		if (type == RT_TYPE_F32) {
			rows[r] = (const float *)src;
		} else {
			cvt_row(type, src, scratch + r * ks, K);
			rows[r] = scratch + r * ks;
		}
	}
	for (b = 0; b + 2 <= B; b += 2) {
		const float *xb = x + (size_t)b * K;
		float *yb = y + (size_t)b * ldy + n0;

		for (r = 0; r + 4 <= nr; r += 4)
			dot4x2(xb, xb + K, rows + r, K, yb + r, yb + ldy + r);
		for (; r < nr; r++) {
			yb[r] = dot1(xb, rows[r], K);
			yb[ldy + r] = dot1(xb + K, rows[r], K);
		}
	}
	for (; b < B; b++) {
		const float *xb = x + (size_t)b * K;
		float *yb = y + (size_t)b * ldy + n0;

		for (r = 0; r + 4 <= nr; r += 4)
			dot4(xb, rows + r, K, yb + r);
		for (; r < nr; r++)
			yb[r] = dot1(xb, rows[r], K);
	}
}
