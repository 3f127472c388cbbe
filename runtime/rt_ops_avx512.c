/* SPDX-License-Identifier: MIT */
/*
 * rt_ops_avx512.c - AVX-512 matmul kernel.
 *
 * Accumulation order (the contract that makes y[b][n] independent of B,
 * the thread count and the row partitioning): every output owns one
 * 16-lane f32 accumulator; lane j sums x[k] * w[k] for k = j, j+16, ...
 * in increasing k with FMA (the last partial vector zero-masked), and the
 * 16 lanes are then added with the fixed tree of hsum().  Weight values
 * are converted exactly (f16/bf16 -> f32, q8_0 as d * q in f32), so it
 * does not matter whether a row is converted in registers or first into
 * a panel buffer.
 *
 * Two paths, chosen by B, with that same per-output arithmetic:
 *  - B <= DIRECT_B (memory-bound decode): weight rows are converted in
 *    registers and multiplied with all B x rows (streams W once).
 *  - larger B (compute-bound): a panel of RT_MM_ROWS weight rows is
 *    converted once to f32 (scratch, L2-resident), then a register-blocked
 *    MR x NR micro-kernel (MR x rows by NR weight rows, 16 zmm
 *    accumulators) runs over K blocks of RT_MM_KC values, keeping the
 *    panel block and the x tile in L1; partial accumulators live in a
 *    small buffer between K blocks (stored exactly, so no rounding).
 */
#include <immintrin.h>
#include <string.h>

#include "rt_ops.h"

#define AI		static inline __attribute__((always_inline))
/* fully unroll the register-tile loops so accumulators stay in zmm */
#define UNROLL		_Pragma("GCC unroll 16")
#define MR		4	/* x rows per micro-tile */
#define NR		4	/* weight rows per micro-tile */
#define DIRECT_B	4	/* B at or below this: on-the-fly conversion */
#define KCV		(RT_MM_KC / 16)	/* vectors per K block */

/* Fixed reduction tree: (i, i+8), then (i, i+4), (i, i+2), (i, i+1). */
AI float hsum(__m512 v)
{
	__m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
				 _mm512_extractf32x8_ps(v, 1));
	__m128 b = _mm_add_ps(_mm256_castps256_ps128(a),
			      _mm256_extractf128_ps(a, 1));

	b = _mm_add_ps(b, _mm_movehl_ps(b, b));
	b = _mm_add_ss(b, _mm_movehdup_ps(b));
	return _mm_cvtss_f32(b);
}

static inline __mmask16 tail_mask(uint32_t rem)
{
	return (__mmask16)((1u << rem) - 1);
}

/* 16 converted weights at vector index v (masked with m, zeros outside). */
AI __m512 wload(uint32_t type, const uint8_t *row, uint32_t v, __mmask16 m)
{
	switch (type) {
	case RT_TYPE_F16:
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m,
			(const uint16_t *)row + (size_t)v * 16));
	case RT_TYPE_BF16:
		return _mm512_castsi512_ps(_mm512_slli_epi32(
			_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m,
				(const uint16_t *)row + (size_t)v * 16)), 16));
	case RT_TYPE_Q8_0: {
		/* K is a multiple of 32: never masked */
		const struct rt_block_q8_0 *b =
			(const struct rt_block_q8_0 *)row + v / 2;
		__m512 d = _mm512_set1_ps(_cvtsh_ss(b->d));
		__m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
			_mm_loadu_si128((const __m128i *)(b->qs +
							  16 * (v & 1)))));

		return _mm512_mul_ps(d, f);
	}
	default:
		return _mm512_maskz_loadu_ps(m, (const float *)row +
					     (size_t)v * 16);
	}
}

/*
 * Direct path: mr x rows (mr <= DIRECT_B) by nr weight rows, whole K,
 * weights converted in registers.
 */
AI void direct_tile(int mr, int nr, uint32_t type, const float *x,
		    uint32_t K, const uint8_t *w, size_t row_bytes, float *y,
		    uint32_t ldy)
{
	__m512 acc[DIRECT_B][NR];
	uint32_t nv = K / 16, v;
	int i, j;

	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			acc[i][j] = _mm512_setzero_ps();
	for (v = 0; v < nv; v++) {
		__m512 xv[DIRECT_B];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm512_loadu_ps(x + (size_t)i * K + v * 16);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m512 wv = wload(type, w + j * row_bytes, v,
					  (__mmask16)0xffff);

			UNROLL
			for (i = 0; i < mr; i++)
				acc[i][j] = _mm512_fmadd_ps(xv[i], wv,
							    acc[i][j]);
		}
	}
	if (K % 16) {
		__mmask16 m = tail_mask(K % 16);
		__m512 xv[DIRECT_B];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm512_maskz_loadu_ps(m, x + (size_t)i * K +
						      nv * 16);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m512 wv = wload(type, w + j * row_bytes, nv, m);

			UNROLL
			for (i = 0; i < mr; i++)
				acc[i][j] = _mm512_fmadd_ps(xv[i], wv,
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
	uint32_t r;

	for (r = 0; r + NR <= nrows; r += NR)
		direct_tile(mr, NR, type, x, K, w + r * row_bytes, row_bytes,
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
	uint32_t nv = (K + 15) / 16, v;
	__mmask16 m;

	for (v = 0; v + 1 < nv; v++)
		_mm512_store_ps(dst + v * 16, wload(type, row, v,
						    (__mmask16)0xffff));
	m = K % 16 ? tail_mask(K % 16) : (__mmask16)0xffff;
	_mm512_store_ps(dst + v * 16, wload(type, row, v, m));
}

/*
 * Panel micro-kernel: mr x rows by nr panel rows over vectors [v0, v1) of
 * one K block; accumulators in @acc ([x row][RT_MM_ROWS][16]).  @tail is
 * the mask of vector v1 - 1 when it is the last, partial vector of K.
 */
AI void panel_tile(int mr, int nr, const float *x, size_t ldx,
		   const float *w, size_t ldw, uint32_t v1,
		   __mmask16 tail, float *acc, int first)
{
	__m512 a[MR][NR];
	uint32_t v, vfull = tail != 0xffff ? v1 - 1 : v1;
	int i, j;

	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			a[i][j] = first ? _mm512_setzero_ps() :
				  _mm512_load_ps(acc + ((size_t)i *
						 RT_MM_ROWS + j) * 16);
	for (v = 0; v < vfull; v++) {
		__m512 xv[MR];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm512_loadu_ps(x + (size_t)i * ldx + v * 16);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m512 wv = _mm512_loadu_ps(w + j * ldw + v * 16);

			UNROLL
			for (i = 0; i < mr; i++)
				a[i][j] = _mm512_fmadd_ps(xv[i], wv, a[i][j]);
		}
	}
	if (vfull < v1) {
		__m512 xv[MR];

		UNROLL
		for (i = 0; i < mr; i++)
			xv[i] = _mm512_maskz_loadu_ps(tail, x + (size_t)i * ldx +
						      v * 16);
		UNROLL
		for (j = 0; j < nr; j++) {
			__m512 wv = _mm512_loadu_ps(w + j * ldw + v * 16);

			UNROLL
			for (i = 0; i < mr; i++)
				a[i][j] = _mm512_fmadd_ps(xv[i], wv, a[i][j]);
		}
	}
	UNROLL
	for (i = 0; i < mr; i++)
		UNROLL
		for (j = 0; j < nr; j++)
			_mm512_store_ps(acc + ((size_t)i * RT_MM_ROWS + j) * 16,
					a[i][j]);
}

typedef void (*tile_fn)(const float *x, size_t ldx, const float *w,
			size_t ldw, uint32_t v1, __mmask16 tail,
			float *acc, int first);

#define TILE(mr, nr)							\
static void tile_##mr##_##nr(const float *x, size_t ldx, const float *w, \
			     size_t ldw, uint32_t v1,			\
			     __mmask16 tail, float *acc, int first)	\
{									\
	panel_tile(mr, nr, x, ldx, w, ldw, v1, tail, acc, first);	\
}
TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4)
TILE(4, 1) TILE(4, 2) TILE(4, 3) TILE(4, 4)

static const tile_fn tiles[MR][NR] = {
	{ tile_1_1, tile_1_2, tile_1_3, tile_1_4 },
	{ tile_2_1, tile_2_2, tile_2_3, tile_2_4 },
	{ tile_3_1, tile_3_2, tile_3_3, tile_3_4 },
	{ tile_4_1, tile_4_2, tile_4_3, tile_4_4 },
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
	uint32_t nv = (K + 15) / 16, b0, mb, kb, b, r, i, j;
	__mmask16 last = K % 16 ? tail_mask(K % 16) : (__mmask16)0xffff;

	for (b0 = 0; b0 < B; b0 += RT_MM_MB) {
		mb = B - b0 < RT_MM_MB ? B - b0 : RT_MM_MB;
		for (kb = 0; kb < nv; kb += KCV) {
			uint32_t v1 = kb + KCV < nv ? kb + KCV : nv;
			__mmask16 tail = v1 == nv ? last : (__mmask16)0xffff;
			const float *xk = xp + (size_t)(kb / KCV) * B *
					  RT_MM_KC;

			for (b = 0; b < mb; b += MR) {
				uint32_t m = mb - b < MR ? mb - b : MR;
				const float *xb = xk + (size_t)(b0 + b) *
						  RT_MM_KC;
				float *ab = acc + (size_t)b * RT_MM_ROWS * 16;

				for (r = 0; r < nr; r += NR) {
					uint32_t n = nr - r < NR ? nr - r : NR;

					/* m, n >= 1 here (r < nr, b < mb) */
					// cppcheck-suppress negativeIndex
					tiles[m - 1][n - 1](xb, RT_MM_KC,
							    w + r * ldw +
							    (size_t)kb * 16,
							    ldw, v1 - kb, tail,
							    ab + r * 16,
							    kb == 0);
				}
			}
		}
		for (i = 0; i < mb; i++)
			for (j = 0; j < nr; j++)
				y[(size_t)(b0 + i) * ldy + j] = hsum(
					_mm512_load_ps(acc + ((size_t)i *
						RT_MM_ROWS + j) * 16));
	}
}

void rt_mm_avx512(uint32_t type, const float *x, uint32_t B, uint32_t K,
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

		if (type == RT_TYPE_F32 && !(K % 16) && (K & 1023)) {
			panel(xp, B, K, (const float *)src, K, nr, y + n, ldy,
			      acc);
			continue;
		}
		for (r = 0; r < nr; r++)
			cvt_row(type, src + r * row_bytes, scratch + r * ks, K);
		panel(xp, B, K, scratch, ks, nr, y + n, ldy, acc);
	}
}
