/* SPDX-License-Identifier: MIT */
/*
 * rt_ops_avx2.c - AVX2 + FMA + F16C matmul kernel and fp16 row conversion.
 *
 * Same scheme as rt_ops_avx512.c with 8 lanes (see there): every output
 * owns one 8-lane accumulator, lane j sums x[k] * w[k] for k = j, j+8, ...
 * in increasing k with FMA (last partial vector zero-masked), then the
 * lanes are added with the fixed tree of hsum().  So y[b][n] does not
 * depend on B, the thread count or the row partitioning.
 *
 *  - B <= DIRECT_B: weights converted in registers, all x rows at once.
 *  - larger B: a panel of RT_MM_ROWS rows is converted once to f32, then
 *    an MR x NR register tile (12 ymm accumulators) runs over K blocks of
 *    RT_MM_KC values (panel block + x tile L1-resident).
 */
#include <immintrin.h>
#include <string.h>

#include "rt_ops.h"

#define AI		static inline __attribute__((always_inline))
/* fully unroll the register-tile loops so accumulators stay in ymm */
#define UNROLL		_Pragma("GCC unroll 16")
#define MR		3	/* x rows per micro-tile */
#define NR		4	/* weight rows per micro-tile */
#define DIRECT_B	4	/* B at or below this: on-the-fly conversion */
#define DNR		4	/* max weight rows per direct tile */
#define KCV		(RT_MM_KC / 8)	/* vectors per K block */

/* Fixed reduction tree: (i, i+4), then (i, i+2), (i, i+1). */
AI float hsum(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);

	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

/* Lane mask of the first @rem (1..8) lanes. */
AI __m256i lane_mask(uint32_t rem)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem),
				  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 converted weights at vector index v; @rem < 8: only rem valid. */
AI __m256 wload(uint32_t type, const uint8_t *row, uint32_t v, uint32_t rem)
{
	const uint16_t *h = (const uint16_t *)row + (size_t)v * 8;
	__m128i hv;

	switch (type) {
	case RT_TYPE_F16:
	case RT_TYPE_BF16:
		if (rem < 8) {
			uint16_t tmp[8] = { 0 };

			memcpy(tmp, h, rem * sizeof(uint16_t));
			hv = _mm_loadu_si128((const __m128i *)tmp);
		} else {
			hv = _mm_loadu_si128((const __m128i *)h);
		}
		if (type == RT_TYPE_F16)
			return _mm256_cvtph_ps(hv);
		return _mm256_castsi256_ps(_mm256_slli_epi32(
			_mm256_cvtepu16_epi32(hv), 16));
	case RT_TYPE_Q8_0: {
		/* K is a multiple of 32: never partial */
		const struct rt_block_q8_0 *b =
			(const struct rt_block_q8_0 *)row + v / 4;
		__m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
		__m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
			_mm_loadl_epi64((const __m128i *)(b->qs +
							  8 * (v & 3)))));

		return _mm256_mul_ps(d, f);
	}
	default:
		if (rem < 8)
			return _mm256_maskload_ps((const float *)row +
						  (size_t)v * 8,
						  lane_mask(rem));
		return _mm256_loadu_ps((const float *)row + (size_t)v * 8);
	}
}

/* Direct path: mr x rows by nr weight rows, whole K. */
AI void direct_tile(int mr, int nr, uint32_t type, const float *x,
		    uint32_t K, const uint8_t *w, size_t row_bytes, float *y,
		    uint32_t ldy)
{
	__m256 acc[DIRECT_B][DNR];
	uint32_t nv = K / 8, v;
	int i, j;

	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			acc[i][j] = _mm256_setzero_ps();
	for (v = 0; v < nv; v++) {
		__m256 xv[DIRECT_B];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm256_loadu_ps(x + (size_t)i * K + v * 8);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m256 wv = wload(type, w + j * row_bytes, v, 8);

			UNROLL
			for (i = 0; i < mr; i++)
				acc[i][j] = _mm256_fmadd_ps(xv[i], wv,
							    acc[i][j]);
		}
	}
	if (K % 8) {
		__m256i m = lane_mask(K % 8);
		__m256 xv[DIRECT_B];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm256_maskload_ps(x + (size_t)i * K + nv * 8,
						   m);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m256 wv = wload(type, w + j * row_bytes, nv, K % 8);

			UNROLL
			for (i = 0; i < mr; i++)
				acc[i][j] = _mm256_fmadd_ps(xv[i], wv,
							    acc[i][j]);
		}
	}
	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			y[(size_t)i * ldy + j] = hsum(acc[i][j]);
}

AI void direct_rows(int mr, uint32_t type, const float *x, uint32_t K,
		    const uint8_t *w, size_t row_bytes, uint32_t nrows,
		    float *y, uint32_t ldy)
{
	const int nt = mr <= 2 ? DNR : 2;	/* <= 8 accumulators */
	uint32_t r;

	for (r = 0; r + (uint32_t)nt <= nrows; r += (uint32_t)nt)
		direct_tile(mr, nt, type, x, K, w + r * row_bytes, row_bytes,
			    y + r, ldy);
	for (; r < nrows; r++)
		direct_tile(mr, 1, type, x, K, w + r * row_bytes, row_bytes,
			    y + r, ldy);
}

#define DIRECT_TYPE(mr)							\
static void direct_##mr(uint32_t type, const float *x, uint32_t K,	\
			const uint8_t *w, size_t row_bytes, uint32_t nrows, \
			float *y, uint32_t ldy)				\
{									\
	switch (type) {							\
	case RT_TYPE_F16:						\
		direct_rows(mr, RT_TYPE_F16, x, K, w, row_bytes, nrows,	\
			    y, ldy);					\
		break;							\
	case RT_TYPE_BF16:						\
		direct_rows(mr, RT_TYPE_BF16, x, K, w, row_bytes, nrows, \
			    y, ldy);					\
		break;							\
	case RT_TYPE_Q8_0:						\
		direct_rows(mr, RT_TYPE_Q8_0, x, K, w, row_bytes, nrows, \
			    y, ldy);					\
		break;							\
	default:							\
		direct_rows(mr, RT_TYPE_F32, x, K, w, row_bytes, nrows,	\
			    y, ldy);					\
	}								\
}
DIRECT_TYPE(1)
DIRECT_TYPE(2)
DIRECT_TYPE(3)
DIRECT_TYPE(4)

/* Converts one weight row to f32 (padded with zeros to a 16 multiple). */
static void cvt_row(uint32_t type, const uint8_t *row, float *dst,
		    uint32_t K)
{
	uint32_t nv = K / 8, v, ks = (K + 15) & ~15u;

	for (v = 0; v < nv; v++)
		_mm256_store_ps(dst + v * 8, wload(type, row, v, 8));
	if (K % 8)
		_mm256_store_ps(dst + v * 8, wload(type, row, v, K % 8));
	for (v = (K + 7) / 8; v * 8 < ks; v++)
		_mm256_store_ps(dst + v * 8, _mm256_setzero_ps());
}

/*
 * Panel micro-kernel: mr x rows by nr panel rows over vectors [v0, v1) of
 * one K block; accumulators in @acc ([x row][RT_MM_ROWS][8]).  @rem < 8:
 * vector v1 - 1 is the last, partial vector of K (rem lanes).
 */
AI void panel_tile(int mr, int nr, const float *x, size_t ldx,
		   const float *w, size_t ldw, uint32_t v1,
		   uint32_t rem, float *acc, int first)
{
	__m256 a[MR][NR];
	uint32_t v, vfull = rem < 8 ? v1 - 1 : v1;
	int i, j;

	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			a[i][j] = first ? _mm256_setzero_ps() :
				  _mm256_load_ps(acc + ((size_t)i *
						 RT_MM_ROWS + j) * 8);
	for (v = 0; v < vfull; v++) {
		__m256 xv[MR];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm256_loadu_ps(x + (size_t)i * ldx + v * 8);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m256 wv = _mm256_loadu_ps(w + j * ldw + v * 8);

			UNROLL
			for (i = 0; i < mr; i++)
				a[i][j] = _mm256_fmadd_ps(xv[i], wv, a[i][j]);
		}
	}
	if (vfull < v1) {
		__m256i m = lane_mask(rem);
		__m256 xv[MR];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm256_maskload_ps(x + (size_t)i * ldx + v * 8,
						   m);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m256 wv = _mm256_loadu_ps(w + j * ldw + v * 8);

			UNROLL
			for (i = 0; i < mr; i++)
				a[i][j] = _mm256_fmadd_ps(xv[i], wv, a[i][j]);
		}
	}
	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			_mm256_store_ps(acc + ((size_t)i * RT_MM_ROWS + j) * 8,
					a[i][j]);
}

typedef void (*tile_fn)(const float *x, size_t ldx, const float *w,
			size_t ldw, uint32_t v1, uint32_t rem,
			float *acc, int first);

#define TILE(mr, nr)							\
static void tile_##mr##_##nr(const float *x, size_t ldx, const float *w, \
			     size_t ldw, uint32_t v1,			\
			     uint32_t rem, float *acc, int first)	\
{									\
	panel_tile(mr, nr, x, ldx, w, ldw, v1, rem, acc, first);	\
}
TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4)

static const tile_fn tiles[MR][NR] = {
	{ tile_1_1, tile_1_2, tile_1_3, tile_1_4 },
	{ tile_2_1, tile_2_2, tile_2_3, tile_2_4 },
	{ tile_3_1, tile_3_2, tile_3_3, tile_3_4 },
};

/*
 * Copies x to @xp in K blocks: block kb (RT_MM_KC values) of row b at
 * xp + (kb * B + b) * RT_MM_KC, so a micro-tile's x rows are adjacent
 * (no cache-set aliasing of rows K floats apart).  Unused tail values of
 * the last block are never read (masked).
 */
static void pack_x(const float *x, uint32_t B, uint32_t K, float *xp)
{
	uint32_t k0, b, len;

	for (k0 = 0; k0 < K; k0 += RT_MM_KC) {
		len = K - k0 < RT_MM_KC ? K - k0 : RT_MM_KC;
		for (b = 0; b < B; b++)
			memcpy(xp + ((size_t)(k0 / RT_MM_KC) * B + b) *
			       RT_MM_KC, x + (size_t)b * K + k0,
			       (size_t)len * sizeof(float));
	}
}

/*
 * One panel of nr <= RT_MM_ROWS rows (at @w, stride @ldw floats) times the
 * packed x (@xp, see pack_x).
 */
static void panel(const float *xp, uint32_t B, uint32_t K, const float *w,
		  size_t ldw, uint32_t nr, float *y, uint32_t ldy, float *acc)
{
	uint32_t nv = (K + 7) / 8, b0, mb, kb, b, r, i, j;
	uint32_t last = K % 8 ? K % 8 : 8;

	for (b0 = 0; b0 < B; b0 += RT_MM_MB) {
		mb = B - b0 < RT_MM_MB ? B - b0 : RT_MM_MB;
		for (kb = 0; kb < nv; kb += KCV) {
			uint32_t v1 = kb + KCV < nv ? kb + KCV : nv;
			uint32_t rem = v1 == nv ? last : 8;
			const float *xk = xp + (size_t)(kb / KCV) * B *
					  RT_MM_KC;

			for (b = 0; b < mb; b += MR) {
				uint32_t m = mb - b < MR ? mb - b : MR;
				const float *xb = xk + (size_t)(b0 + b) *
						  RT_MM_KC;
				float *ab = acc + (size_t)b * RT_MM_ROWS * 8;

				for (r = 0; r < nr; r += NR) {
					uint32_t n = nr - r < NR ? nr - r : NR;

					/* m, n >= 1 here (r < nr, b < mb) */
					// cppcheck-suppress negativeIndex
					tiles[m - 1][n - 1](xb, RT_MM_KC,
							    w + r * ldw +
							    (size_t)kb * 8,
							    ldw, v1 - kb, rem,
							    ab + r * 8,
							    kb == 0);
				}
			}
		}
		for (i = 0; i < mb; i++)
			for (j = 0; j < nr; j++)
				y[(size_t)(b0 + i) * ldy + j] = hsum(
					_mm256_load_ps(acc + ((size_t)i *
						RT_MM_ROWS + j) * 8));
	}
}

void rt_mm_avx2(uint32_t type, const float *x, uint32_t B, uint32_t K,
		const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		float *y, uint32_t ldy, float *scratch)
{
	const uint8_t *wb = (const uint8_t *)w + (size_t)n0 * row_bytes;
	size_t ks = RT_MM_KS(K);
	float *acc = scratch + RT_MM_ROWS * ks;
	float *xp = acc + (size_t)RT_MM_MB * RT_MM_ROWS * 16;
	uint32_t n, r;

	if (B <= DIRECT_B) {
		void (*fn)(uint32_t, const float *, uint32_t, const uint8_t *,
			   size_t, uint32_t, float *, uint32_t) =
			B == 1 ? direct_1 : B == 2 ? direct_2 :
			B == 3 ? direct_3 : direct_4;

		fn(type, x, K, wb, row_bytes, n1 - n0, y + n0, ldy);
		return;
	}
	pack_x(x, B, K, xp);
	for (n = n0; n < n1; n += RT_MM_ROWS) {
		uint32_t nr = n1 - n < RT_MM_ROWS ? n1 - n : RT_MM_ROWS;
		const uint8_t *src = (const uint8_t *)w + (size_t)n * row_bytes;

		if (type == RT_TYPE_F32 && !(K % 8) && (K & 1023)) {
			panel(xp, B, K, (const float *)src, K, nr, y + n, ldy,
			      acc);
			continue;
		}
		for (r = 0; r < nr; r++)
			cvt_row(type, src + r * row_bytes, scratch + r * ks, K);
		panel(xp, B, K, scratch, ks, nr, y + n, ldy, acc);
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
