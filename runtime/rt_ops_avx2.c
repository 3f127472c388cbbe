/* SPDX-License-Identifier: MIT */
/*
 * rt_ops_avx2.c - AVX2 + FMA + F16C matmul kernel and fp16 row conversion.
 *
 * A group of up to RT_MM_ROWS weight rows is converted to f32 once (into
 * @scratch), then every x row of the batch is dotted with it, four weight
 * rows at a time so each x load feeds four FMAs.  Each output uses one
 * vector accumulator and a fixed reduction order, so the value of y[b][n]
 * is the same whatever B or the row grouping.
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

		for (; k + 8 <= K; k += 8)
			_mm256_store_ps(dst + k, _mm256_cvtph_ps(
				_mm_loadu_si128((const __m128i *)(h + k))));
		for (; k < K; k++)
			dst[k] = _cvtsh_ss(h[k]);
		break;
	}
	case RT_TYPE_BF16: {
		const uint16_t *h = row;

		for (; k + 8 <= K; k += 8) {
			__m256i v = _mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)(h + k)));

			_mm256_store_ps(dst + k, _mm256_castsi256_ps(
				_mm256_slli_epi32(v, 16)));
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
			__m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));

			for (g = 0; g < 4; g++) {
				__m128i q = _mm_loadl_epi64(
					(const __m128i *)(b[i].qs + 8 * g));
				__m256 f = _mm256_cvtepi32_ps(
					_mm256_cvtepi8_epi32(q));

				_mm256_store_ps(dst + i * 32 + 8 * g,
						_mm256_mul_ps(d, f));
			}
		}
		break;
	}
	default:
		memcpy(dst, row, (size_t)K * 4);
	}
}

static inline float hsum(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);

	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

static float dot1(const float *x, const float *w, uint32_t K)
{
	__m256 a = _mm256_setzero_ps();
	uint32_t k;
	float s;

	for (k = 0; k + 8 <= K; k += 8)
		a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k),
				    _mm256_loadu_ps(w + k), a);
	s = hsum(a);
	for (; k < K; k++)
		s += x[k] * w[k];
	return s;
}

static void dot4(const float *x, const float *const *w, uint32_t K,
		 float *out)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	uint32_t k, r;

	for (k = 0; k + 8 <= K; k += 8) {
		__m256 xv = _mm256_loadu_ps(x + k);

		a0 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[0] + k), a0);
		a1 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[1] + k), a1);
		a2 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[2] + k), a2);
		a3 = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[3] + k), a3);
	}
	out[0] = hsum(a0);
	out[1] = hsum(a1);
	out[2] = hsum(a2);
	out[3] = hsum(a3);
	for (r = 0; r < 4; r++)
		for (uint32_t kk = k; kk < K; kk++)
			out[r] += x[kk] * w[r][kk];
}

void rt_mm_avx2(uint32_t type, const float *x, uint32_t B, uint32_t K,
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
	for (b = 0; b < B; b++) {
		const float *xb = x + (size_t)b * K;
		float *yb = y + (size_t)b * ldy + n0;

		for (r = 0; r + 4 <= nr; r += 4)
			dot4(xb, rows + r, K, yb + r);
		for (; r < nr; r++)
			yb[r] = dot1(xb, rows[r], K);
	}
}

void rt_f32_to_f16_avx2(const float *x, uint16_t *y, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(y + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
						 _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++)
		y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

void rt_f16_to_f32_avx2(const uint16_t *x, float *y, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(
			_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = _cvtsh_ss(x[i]);
}
