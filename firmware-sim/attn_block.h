/* SPDX-License-Identifier: MIT */
/*
 * attn_block.h - the ISA-neutral part of the SIMD kernels' block pipeline
 * (attn_avx2.c, attn_avx512.c, attn_avx512bf16.c): blocks of KB tokens,
 * one online-softmax step each; the start of a call and the row pointers
 * of a block; a burst prefetch (into L2: prefetcht1) of all lines of a
 * block, used for the first blocks of a call -- later blocks are
 * prefetched as a trickle spread over the work on the current one
 * (per-ISA code).
 */
#ifndef CSDFW_ATTN_BLOCK_H
#define CSDFW_ATTN_BLOCK_H

#include <xmmintrin.h>

#include "attn_internal.h"

/* prefetch hint of every kernel (-DPF_HINT=... for experiments) */
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif

#define KB 64			/* tokens per online-softmax step */

/* Row pointers of one block (this one, or a later one to prefetch). */
struct pf {
	uint32_t n;		/* rows (0: none) */
	size_t row_bytes;
	const char *k[KB], *v[KB];
};

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

/* Prefetch the block of rows from token @t0 (K and V). */
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

/* The K and V row pointers of the block from token @t0 into @b. */
static inline void block_rows(const struct attn_args *a, uint32_t t0,
			      size_t row_bytes, struct pf *b)
{
	b->row_bytes = row_bytes;
	b->n = t0 >= a->tok_end ? 0 :
	       a->tok_end - t0 > KB ? KB : a->tok_end - t0;
	attn_rows(a->kpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->k);
	attn_rows(a->vpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->v);
}

/*
 * Start a call: an empty partial result (m = -inf, l = 0, acc = 0) and
 * the rows of its first @dist blocks in ring[0 .. dist), prefetched.  The
 * kernel then works on ring[cur] while filling ring[(cur + dist) %
 * (dist + 1)] with the block @dist ahead.
 */
static inline void block_pipe_start(const struct attn_args *a,
				    struct pf *ring, unsigned int dist,
				    size_t row_bytes)
{
	for (uint32_t h = 0; h < a->n_q; h++) {
		a->m[h] = -INFINITY;
		a->l[h] = 0.0f;
	}
	memset(a->acc, 0, (size_t)a->n_q * a->head_dim * sizeof(float));
	for (unsigned int i = 0; i < dist; i++) {
		prefetch_block(a, a->tok_begin + i * KB, row_bytes);
		block_rows(a, a->tok_begin + i * KB, row_bytes, &ring[i]);
	}
}

#endif /* CSDFW_ATTN_BLOCK_H */
