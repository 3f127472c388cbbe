/* SPDX-License-Identifier: MIT */
/*
 * attn_avx512_blk.h - the block pipeline shared by the AVX-512 dense
 * kernels (attn_avx512.c: f32 arithmetic; attn_avx512bf16.c: bf16 dot
 * products): the transposing score reduction, and the software prefetch
 * of the K/V rows of the block PF_DIST blocks ahead, spread as a trickle
 * of lines over the work on the current block.  Include only from
 * translation units compiled with the AVX-512 flags.
 */
#ifndef CSDFW_ATTN_AVX512_BLK_H
#define CSDFW_ATTN_AVX512_BLK_H

#include <immintrin.h>

#include "attn_internal.h"
#include "attn_block.h"

#ifndef AI
#define AI static inline __attribute__((always_inline))
#endif
/*
 * Blocks ahead to prefetch.  1 (the next block, ~1-3 us ahead of its use)
 * read DRAM 2-4% faster than 2 with one thread and +0.01-0.02 of STREAM
 * with two (performance.md, section 7); the rows of a block stay in L2
 * either way.
 */
#ifndef PF_DIST
#define PF_DIST 1
#endif

/* Slot of token t in the reduction tree so that hsum16 yields token order. */
static const uint8_t red_slot[16] = {
	0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15
};

/*
 * Lane j of the result = sum of all lanes of v[red_slot[j]].  Each level
 * halves the vectors with one blend, one shuffle and one add (the blend
 * keeps the halves that stay, the shuffle brings the ones that move): 16
 * shuffles in all instead of 30, and zmm shuffles share ports with FMA.
 */
AI __m512 hsum16(const __m512 *v)
{
	/* level 2 partner of (x, y): [x.q1, y.q0, x.q3, y.q2] */
	const __m512i i2 = _mm512_set_epi32(27, 26, 25, 24, 15, 14, 13, 12,
					    19, 18, 17, 16, 7, 6, 5, 4);
	__m512 b[8], c[4], d[2];

#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)		/* 256-bit halves */
		b[j] = _mm512_add_ps(
			_mm512_mask_blend_ps(0xff00, v[j], v[j + 8]),
			_mm512_shuffle_f32x4(v[j], v[j + 8], 0x4e));
#pragma GCC unroll 8
	for (int j = 0; j < 4; j++)		/* 128-bit quarters */
		c[j] = _mm512_add_ps(
			_mm512_mask_blend_ps(0xf0f0, b[j], b[j + 4]),
			_mm512_permutex2var_ps(b[j], i2, b[j + 4]));
#pragma GCC unroll 8
	for (int j = 0; j < 2; j++)		/* pairs */
		d[j] = _mm512_add_ps(
			_mm512_mask_blend_ps(0xcccc, c[j], c[j + 2]),
			_mm512_shuffle_ps(c[j], c[j + 2], 0x4e));
	return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88),
			     _mm512_shuffle_ps(d[0], d[1], 0xdd));
}

/*
 * Rows and zeroed accumulators of tokens j0 .. j0 + TB - 1 of a score
 * group (tokens past n repeat the last row; their lanes are masked).
 */
AI void group_init(const char **kr, __m512 (*acc)[8],
		   const char *const *rows, uint32_t n, uint32_t j0,
		   const int TB, const int HB)
{
#pragma GCC unroll 8
	for (int i = 0; i < TB; i++) {
		const uint32_t j = j0 + i;

		kr[i] = rows[j < n ? j : n - 1];
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++)
			acc[i][h] = _mm512_setzero_ps();
	}
}

/*
 * Put the score accumulators acc[i][h] of tokens t .. t + TB - 1 of a
 * group of G = 16 / HB tokens x HB heads into their reduction slots.
 */
AI void red_put(__m512 *red, __m512 (*acc)[8], const int TB, const int HB,
		int t)
{
	const int G = 16 / HB;

#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++)
			red[red_slot[h * G + t + i]] = acc[i][h];
}

/*
 * Reduce a group's 16 slots to one vector (lane h * G + i: head h, token
 * g0 + i), scale it and store head h's G scores at sf[h * KB + g0 ..].
 */
AI void red_store(const __m512 *red, __m512 vs, const int HB, float *sf,
		  uint32_t g0)
{
	const int G = 16 / HB;
	const __m512 r = _mm512_mul_ps(hsum16(red), vs);

#pragma GCC unroll 8
	for (int h = 0; h < HB; h++)
		_mm512_mask_storeu_ps(sf + h * (KB - G) + g0,
				      (__mmask16)(((1u << G) - 1) << (h * G)),
				      r);
}

/* Cursor over the 64-byte lines of a list of rows to prefetch. */
struct pfcur {
	const char *const *rows, *const *end;
	size_t off, row_bytes;
};

AI void pfcur_init(struct pfcur *pc, const char *const *rows, uint32_t n,
		   size_t row_bytes)
{
	pc->rows = rows;
	pc->end = rows + n;
	pc->off = 0;
	pc->row_bytes = row_bytes;
}

/* Lines per step to cover the rows in @steps steps. */
AI uint32_t pfcur_rate(const struct pfcur *pc, uint32_t steps)
{
	size_t lines = (size_t)(pc->end - pc->rows) *
		       ((pc->row_bytes + 63) / 64);

	return steps ? (uint32_t)((lines + steps - 1) / steps) : 0;
}

/*
 * Prefetch the next @k lines.  Rows are 32-byte aligned multiples of 32
 * bytes, so stepping 64 bytes from the row start touches every line.
 */
AI void pfcur_step(struct pfcur *pc, uint32_t k)
{
	for (; k && pc->rows < pc->end; k--) {
		_mm_prefetch(*pc->rows + pc->off, PF_HINT);
		pc->off += 64;
		if (pc->off >= pc->row_bytes) {
			pc->off = 0;
			pc->rows++;
		}
	}
}

/*
 * The rows of the later block (its struct pf) are prefetched in this
 * order: its K rows while scoring (split evenly over the head groups),
 * then its V rows during the V accumulation (split evenly over its
 * tiles).  Each phase thus prefetches one stream sequentially, the one it
 * reads.  Against K and V rows alternating (with 3/4 of them issued while
 * scoring) this gained +0.03 of STREAM for the bf16 kernel and +0.02 for
 * the f32 one (Documentation/performance.md, section 7); the AVX2 kernel,
 * whose scoring takes a larger share of a block, gained nothing and keeps
 * the alternating order.
 */

#endif /* CSDFW_ATTN_AVX512_BLK_H */
