// SPDX-License-Identifier: MIT
/*
 * attn_avx512.c - AVX-512 attention kernel (compiled with -mavx512f/bw/vl/dq).
 *
 * Per block of KB (64) tokens:
 *  1. scores: each K row is converted once (vcvtph2ps for fp16) and dotted
 *     with every query head of the group, several tokens at a time so that
 *     one q chunk load serves them all; the 16 dot accumulators of
 *     (16 / heads) tokens x heads stay in registers and one transposing
 *     blend/shuffle/add tree turns them into one vector of 16 scores;
 *  2. one online-softmax step per head: block max, one rescale factor, a
 *     vector exp of the scores;
 *  3. V: register tiles of (heads x 16-float chunks) accumulators; each V
 *     chunk is converted once per tile and used for all heads in it.
 * The K/V rows of the block PF_DIST blocks ahead are prefetched into L2
 * (pages are scattered, so the hardware prefetchers cannot run across page
 * boundaries) one or two lines per inner-loop step, spread over both
 * phases: on DRAM-resident KV a burst of prefetches stalls the pipeline
 * (the line fill buffers fill up) while an even trickle overlaps with the
 * FMAs (single-core DRAM time 42 -> ~32 ns/token for fp16, 4 heads, d 128).
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"
#include "attn_avx512_inl.h"
#include "attn_avx512_blk.h"

/*
 * Scores of @n (<= KB) tokens for HB heads (q rows at q, stride d) into
 * s[h][], TB tokens at a time so that each q chunk load serves TB tokens.
 * The 16 dot accumulators of G = 16 / HB tokens x HB heads stay in
 * registers and are reduced by one transposing add tree into one vector
 * (lane h * G + i: head h, token i), stored with one masked store per head.
 * Lanes of tokens >= n hold garbage (the caller masks them).
 */
AI void score_group(const char *const *rows, uint32_t n, const float *q,
		    uint32_t d, const int dt, const int HB, const int TB,
		    float scale, float (*s)[KB], const char *const *pfr,
		    uint32_t pfn, size_t row_bytes)
{
	const size_t cstep = 16 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	const uint32_t nc = d / 16;
	const int G = 16 / HB;
	const __m512 vs = _mm512_set1_ps(scale);
	float *const sf = s[0];

	struct pfcur pc;
	uint32_t rate;

	/* rows of a later block, a few lines per chunk step */
	pfcur_init(&pc, pfr, pfn, row_bytes);
	rate = pfcur_rate(&pc, (n + TB - 1) / TB * nc);
	for (uint32_t g0 = 0; g0 < n; g0 += G) {
		__m512 red[16];

#pragma GCC unroll 16
		for (int t = 0; t < G; t += TB) {
			const char *kr[8];
			__m512 acc[8][8];

			group_init(kr, acc, rows, n, g0 + t, TB, HB);
			for (uint32_t c = 0; c < nc; c++) {
				__m512 k[8];

				pfcur_step(&pc, rate);
#pragma GCC unroll 8
				for (int i = 0; i < TB; i++)
					k[i] = ld16(kr[i] + c * cstep, dt);
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++) {
					const __m512 qv = _mm512_loadu_ps(
						q + (size_t)h * d + c * 16);

#pragma GCC unroll 8
					for (int i = 0; i < TB; i++)
						acc[i][h] = _mm512_fmadd_ps(
							k[i], qv, acc[i][h]);
				}
			}
			red_put(red, acc, TB, HB, t);
		}

		red_store(red, vs, HB, sf, g0);
	}
}

/* acc[h][c0*16 ..] = acc * alpha[h] + sum_t p[h][t] * v_t, HB x CB tile. */
AI void vtile(const char *const *rows, uint32_t n, const int dt, uint32_t c0,
	      const int HB, const int CB, float *acc, uint32_t d,
	      const float (*p)[KB], const float *alpha,
	      const char *const *pfr, uint32_t pfn, size_t row_bytes)
{
	const size_t cstep = 16 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	__m512 r[8][4];
	struct pfcur pc;
	uint32_t rate;

#pragma GCC unroll 8
	for (int h = 0; h < HB; h++) {
		const __m512 al = _mm512_set1_ps(alpha[h]);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			r[h][c] = _mm512_mul_ps(al, _mm512_loadu_ps(
				acc + (size_t)h * d + (c0 + c) * 16));
	}
	pfcur_init(&pc, pfr, pfn, row_bytes);
	rate = pfcur_rate(&pc, n);
	for (uint32_t t = 0; t < n; t++) {
		const char *vr = rows[t] + c0 * cstep;
		__m512 v[4];

		/* pfn rows spread evenly over the n tokens */
		pfcur_step(&pc, rate);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			v[c] = ld16(vr + c * cstep, dt);
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++) {
			const __m512 pb = _mm512_set1_ps(p[h][t]);

#pragma GCC unroll 4
			for (int c = 0; c < CB; c++)
				r[h][c] = _mm512_fmadd_ps(pb, v[c], r[h][c]);
		}
	}
#pragma GCC unroll 8
	for (int h = 0; h < HB; h++)
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			_mm512_storeu_ps(acc + (size_t)h * d + (c0 + c) * 16,
					 r[h][c]);
}

/*
 * Specialized (dtype, heads, tokens|chunks) instances, each its own small
 * function so that the register allocator sees one loop nest at a time.
 */
typedef void (*score_fn)(const char *const *rows, uint32_t n, const float *q,
			 uint32_t d, float scale, float (*s)[KB],
			 const char *const *pfr, uint32_t pfn,
			 size_t row_bytes);
typedef void (*vtile_fn)(const char *const *rows, uint32_t n, uint32_t c0,
			 float *acc, uint32_t d, const float (*p)[KB],
			 const float *alpha, const char *const *pfr,
			 uint32_t pfn, size_t row_bytes);

#define SCORE(DT, HB, TB)						\
static __attribute__((noinline)) void score_##DT##_##HB(		\
	const char *const *rows, uint32_t n, const float *q, uint32_t d, \
	float scale, float (*s)[KB], const char *const *pfr,		\
	uint32_t pfn, size_t row_bytes)					\
{									\
	score_group(rows, n, q, d, DT, HB, TB, scale, s, pfr, pfn,	\
		    row_bytes);						\
}
#define SCORES(DT) SCORE(DT, 8, 2) SCORE(DT, 4, 4) SCORE(DT, 2, 4)	\
	SCORE(DT, 1, 8)
SCORES(0)
SCORES(1)
SCORES(2)

#define VTILE(DT, HB, CB)						\
static __attribute__((noinline)) void vtile_##DT##_##HB##_##CB(	\
	const char *const *rows, uint32_t n, uint32_t c0, float *acc,	\
	uint32_t d, const float (*p)[KB], const float *alpha,		\
	const char *const *pfr, uint32_t pfn, size_t row_bytes)	\
{									\
	vtile(rows, n, DT, c0, HB, CB, acc, d, p, alpha, pfr, pfn,	\
	      row_bytes);						\
}
#define VTILES(DT) VTILE(DT, 8, 2) VTILE(DT, 8, 1) VTILE(DT, 4, 4)	\
	VTILE(DT, 4, 2) VTILE(DT, 4, 1) VTILE(DT, 2, 4) VTILE(DT, 2, 2)	\
	VTILE(DT, 2, 1) VTILE(DT, 1, 4) VTILE(DT, 1, 2) VTILE(DT, 1, 1)
VTILES(0)
VTILES(1)
VTILES(2)

/* [dtype][log2 HB] */
static const score_fn score_tab[3][4] = {
#define SROW(DT) { score_##DT##_1, score_##DT##_2, score_##DT##_4, score_##DT##_8 }
	SROW(0), SROW(1), SROW(2),
};

/* [dtype][log2 HB][log2 CB] (CB 4 not used with HB 8) */
static const vtile_fn vtile_tab[3][4][3] = {
#define VROW(DT) {							\
	{ vtile_##DT##_1_1, vtile_##DT##_1_2, vtile_##DT##_1_4 },	\
	{ vtile_##DT##_2_1, vtile_##DT##_2_2, vtile_##DT##_2_4 },	\
	{ vtile_##DT##_4_1, vtile_##DT##_4_2, vtile_##DT##_4_4 },	\
	{ vtile_##DT##_8_1, vtile_##DT##_8_2, NULL } }
	VROW(0), VROW(1), VROW(2),
};

static unsigned int head_group_log2(uint32_t rem)
{
	return rem >= 8 ? 3 : rem >= 4 ? 2 : rem >= 2 ? 1 : 0;
}

static void scores(const char *const *rows, uint32_t n, const float *q,
		   uint32_t d, uint32_t nq, int dt, float scale,
		   float (*s)[KB], const struct pf *nx)
{
	uint32_t ng = 0, gi = 0;

	for (uint32_t h = 0; h < nq; ng++)
		h += 1u << head_group_log2(nq - h);
	for (uint32_t h = 0; h < nq; gi++) {
		unsigned int lg = head_group_log2(nq - h);
		uint32_t p0 = nx->n * gi / ng, p1 = nx->n * (gi + 1) / ng;

		score_tab[dt][lg](rows, n, q + (size_t)h * d, d, scale, s + h,
				  nx->k + p0, p1 - p0, nx->row_bytes);
		h += 1u << lg;
	}
}

/* log2 of the width (chunks) of the V tile at chunk c of a 2^lg head group */
static unsigned int vtile_cb_log2(unsigned int lg, uint32_t c, uint32_t nc)
{
	return lg < 3 && c + 4 <= nc ? 2 : c + 2 <= nc ? 1 : 0;
}

static void vaccum(const char *const *rows, uint32_t n, int dt, uint32_t nq,
		   float *acc, uint32_t d, const float (*p)[KB],
		   const float *alpha, const struct pf *nx)
{
	const uint32_t nc = d / 16, npv = nx->n;
	const char *const *pvr = nx->v;
	uint32_t nt = 0, ti = 0;

	for (uint32_t h = 0; h < nq;) {
		unsigned int lg = head_group_log2(nq - h);

		for (uint32_t c = 0; c < nc; c += 1u << vtile_cb_log2(lg, c, nc))
			nt++;
		h += 1u << lg;
	}
	for (uint32_t h = 0; h < nq;) {
		unsigned int lg = head_group_log2(nq - h);

		for (uint32_t c = 0; c < nc; ti++) {
			unsigned int cbl = vtile_cb_log2(lg, c, nc);
			uint32_t p0 = npv * ti / nt, p1 = npv * (ti + 1) / nt;

			vtile_tab[dt][lg][cbl](rows, n, c, acc + (size_t)h * d,
					       d, p + h, alpha + h, pvr + p0,
					       p1 - p0, nx->row_bytes);
			c += 1u << cbl;
		}
		h += 1u << lg;
	}
}

void attn_kernel_avx512(const struct attn_args *a)
{
	const uint32_t d = a->head_dim, nq = a->n_q;
	const int dt = a->dtype < CSD_DTYPE_COUNT ? a->dtype : CSD_DTYPE_F32;
	const size_t row_bytes = (size_t)d * csd_dtype_size(dt);
	float s[ATTN_MAX_NQ][KB] __attribute__((aligned(64)));
	float alpha[ATTN_MAX_NQ];
	/* rows of this block and of the PF_DIST blocks after it */
	struct pf ring[PF_DIST + 1];
	unsigned int cur = 0;

	block_pipe_start(a, ring, PF_DIST, row_bytes);

	for (uint32_t t0 = a->tok_begin; t0 < a->tok_end; t0 += KB) {
		const uint32_t n = ring[cur].n, nv = (n + 15) / 16;
		struct pf *nx = &ring[(cur + PF_DIST) % (PF_DIST + 1)];
		const char *const *kr = ring[cur].k, *const *vr = ring[cur].v;

		/* a later block's rows: prefetched while working on this one */
		block_rows(a, t0 + PF_DIST * KB, row_bytes, nx);

		scores(kr, n, a->q, d, nq, dt, a->scale, s, nx);

		for (uint32_t h = 0; h < nq; h++) {
			const __m512 ninf = _mm512_set1_ps(-INFINITY);
			__m512 sv[KB / 16], mx = ninf, sum;
			float bm, mold = a->m[h], mnew;

			for (uint32_t i = 0; i < nv; i++) {
				uint32_t left = n - i * 16;
				__mmask16 valid = left >= 16 ? 0xffff :
					(__mmask16)((1u << left) - 1);

				sv[i] = _mm512_mask_mov_ps(ninf, valid,
						_mm512_load_ps(s[h] + i * 16));
				mx = _mm512_max_ps(mx, sv[i]);
			}
			bm = _mm512_reduce_max_ps(mx);
			mnew = mold > bm ? mold : bm;
			alpha[h] = mold == -INFINITY ? 0.0f : expf(mold - mnew);
			mx = _mm512_set1_ps(mnew);
			sum = _mm512_setzero_ps();
			for (uint32_t i = 0; i < nv; i++) {
				/* exp16 maps -inf (masked lanes) to 0 */
				__m512 e = exp16(_mm512_sub_ps(sv[i], mx));

				sum = _mm512_add_ps(sum, e);
				_mm512_store_ps(s[h] + i * 16, e);
			}
			a->l[h] = a->l[h] * alpha[h] + _mm512_reduce_add_ps(sum);
			a->m[h] = mnew;
		}

		vaccum(vr, n, dt, nq, a->acc, d, (const float (*)[KB])s, alpha,
		       nx);
		cur = (cur + 1) % (PF_DIST + 1);
	}
}
