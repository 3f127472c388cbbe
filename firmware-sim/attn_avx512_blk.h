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

#ifndef AI
#define AI static inline __attribute__((always_inline))
#endif
#define KB 64			/* tokens per online-softmax step */
#ifndef PF_DIST
#define PF_DIST 2		/* blocks ahead to prefetch */
#endif
/* share (in 1/16) of a block's prefetches issued while scoring */
#ifndef PF_SCORE16
#define PF_SCORE16 12
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
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

/* Row pointers of one block (this one, or a later one to prefetch). */
struct pf {
	uint32_t n;		/* rows (0: none) */
	size_t row_bytes;
	const char *k[KB], *v[KB];
};

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
 * The rows (K and V) of a later block, in the order they are prefetched:
 * the first ns while scoring (split evenly over the head groups), the rest
 * during the V accumulation (split evenly over its tiles).
 */
struct pfplan {
	uint32_t n, ns;
	size_t row_bytes;
	const char *rows[2 * KB];
};

static inline void pfplan_init(struct pfplan *pp, const struct pf *b)
{
	for (uint32_t i = 0; i < b->n; i++) {
		pp->rows[2 * i] = b->k[i];
		pp->rows[2 * i + 1] = b->v[i];
	}
	pp->n = 2 * b->n;
	pp->ns = pp->n * PF_SCORE16 / 16;
	pp->row_bytes = b->row_bytes;
}

/* Prefetch rows [t0, t1) of a paged stream, page piece by page piece. */
static inline void prefetch_range(const void *const *pages, uint32_t tpp,
				  uint32_t base, uint32_t t0, uint32_t t1,
				  size_t row_bytes)
{
	while (t0 < t1) {
		uint32_t pg = t0 / tpp, e = (pg + 1) * tpp;
		const char *p = (const char *)pages[pg - base / tpp] +
				(size_t)(t0 % tpp) * row_bytes;
		size_t len;

		if (e > t1)
			e = t1;
		len = (size_t)(e - t0) * row_bytes;
		for (size_t o = 0; o < len; o += 64)
			_mm_prefetch(p + o, PF_HINT);
		_mm_prefetch(p + len - 1, PF_HINT);
		t0 = e;
	}
}

static inline void prefetch_block(const struct attn_args *a, uint32_t t0,
			   size_t row_bytes)
{
	uint32_t t1;

	if (t0 >= a->tok_end)
		return;
	t1 = a->tok_end - t0 > KB ? t0 + KB : a->tok_end;
	prefetch_range(a->kpages, a->tpp, a->tok_begin, t0, t1, row_bytes);
	prefetch_range(a->vpages, a->tpp, a->tok_begin, t0, t1, row_bytes);
}

static inline void block_rows(const struct attn_args *a, uint32_t t0,
		       size_t row_bytes, struct pf *b)
{
	b->row_bytes = row_bytes;
	b->n = t0 >= a->tok_end ? 0 :
	       a->tok_end - t0 > KB ? KB : a->tok_end - t0;
	attn_rows(a->kpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->k);
	attn_rows(a->vpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->v);
}


#endif /* CSDFW_ATTN_AVX512_BLK_H */
