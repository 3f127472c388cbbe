// SPDX-License-Identifier: MIT
/*
 * attn_avx2.c - AVX2 + FMA + F16C attention kernel.
 *
 * Same structure as attn_avx512.c with 8-float vectors (and 16 registers).
 * Per block of KB (64) tokens:
 *  1. scores: each K row is converted once (vcvtph2ps for fp16) and dotted
 *     with every query head of the group, several tokens at a time so that
 *     one q chunk load serves them all; the 8 dot accumulators of
 *     (8 / heads) tokens x heads stay in registers and are reduced together
 *     by one transposing blend/shuffle/add tree into one vector of scores;
 *  2. one online-softmax step per head: block max, one rescale factor, a
 *     vector exp of the scores;
 *  3. V: register tiles of (heads x 8-float chunks) accumulators; each V
 *     chunk is converted once per tile and used for all heads in it.
 * The K/V rows of a later block are prefetched into L2 a few lines at a
 * time, spread over the work (pages are scattered, so the hardware
 * prefetchers cannot run across page boundaries, and a burst of prefetches
 * stalls the pipeline).  Each (dtype, heads, tile) loop nest is its own
 * small function so that the register allocator sees one at a time.
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"
#include "attn_avx2_inl.h"
#include "attn_block.h"

#define AI static inline __attribute__((always_inline))
#ifndef PF_DIST
#define PF_DIST 2		/* blocks ahead to prefetch */
#endif
/* share (in 1/16) of a block's prefetches issued while scoring */
#ifndef PF_SCORE16
#define PF_SCORE16 10
#endif

/* Slot of result lane j in the reduction tree (hsum8 yields lane order). */
static const uint8_t red_slot[8] = { 0, 2, 1, 3, 4, 6, 5, 7 };

/*
 * Lane j of the result = sum of all lanes of v[red_slot[j]].  Each level
 * halves the vectors with one blend, one shuffle and one add.
 */
AI __m256 hsum8(const __m256 *v)
{
	__m256 b[4], c[2];

#pragma GCC unroll 4
	for (int j = 0; j < 4; j++)		/* 128-bit halves */
		b[j] = _mm256_add_ps(_mm256_blend_ps(v[j], v[j + 4], 0xf0),
				     _mm256_permute2f128_ps(v[j], v[j + 4],
							    0x21));
#pragma GCC unroll 2
	for (int j = 0; j < 2; j++)		/* pairs */
		c[j] = _mm256_add_ps(_mm256_blend_ps(b[j], b[j + 2], 0xcc),
				     _mm256_shuffle_ps(b[j], b[j + 2], 0x4e));
	return _mm256_add_ps(_mm256_shuffle_ps(c[0], c[1], 0x88),
			     _mm256_shuffle_ps(c[0], c[1], 0xdd));
}

/* Cursor over the addresses of lines to prefetch. */
struct pfcur {
	const char *const *p, *const *end;
};

/* Lines per step to cover [p, end) in @steps steps. */
AI uint32_t pfcur_rate(const struct pfcur *pc, uint32_t steps)
{
	return steps ? (uint32_t)((pc->end - pc->p + steps - 1) / steps) : 0;
}

AI void pfcur_step(struct pfcur *pc, uint32_t k)
{
	for (; k && pc->p < pc->end; k--)
		_mm_prefetch(*pc->p++, PF_HINT);
}

/*
 * Store the G = 8 / HB scores of each of HB heads (lanes [h * G, h * G + G)
 * of @r) to sf[h * KB + g0 ..].
 */
AI void store_group(float *sf, __m256 r, const int HB, uint32_t g0)
{
	if (HB == 1) {
		_mm256_storeu_ps(sf + g0, r);
	} else if (HB == 2) {
		_mm_storeu_ps(sf + g0, _mm256_castps256_ps128(r));
		_mm_storeu_ps(sf + KB + g0, _mm256_extractf128_ps(r, 1));
	} else if (HB == 4) {
		const __m128 lo = _mm256_castps256_ps128(r);
		const __m128 hi = _mm256_extractf128_ps(r, 1);

		_mm_storel_pi((__m64 *)(void *)(sf + g0), lo);
		_mm_storeh_pi((__m64 *)(void *)(sf + KB + g0), lo);
		_mm_storel_pi((__m64 *)(void *)(sf + 2 * KB + g0), hi);
		_mm_storeh_pi((__m64 *)(void *)(sf + 3 * KB + g0), hi);
	} else {
		float tmp[8];

		_mm256_storeu_ps(tmp, r);
#pragma GCC unroll 8
		for (int h = 0; h < 8; h++)
			sf[h * KB + g0] = tmp[h];
	}
}

/*
 * Scores of @n (<= KB) tokens for HB heads (q rows at q, stride d) into
 * s[h][], TB tokens at a time so that each q chunk load serves TB tokens.
 * The 8 dot accumulators of G = 8 / HB tokens x HB heads stay in registers
 * and are reduced by one transposing tree (lane h * G + i: head h, token
 * i).  Lanes of tokens >= n hold garbage (the caller masks them).
 */
AI void score_group(const char *const *rows, uint32_t n, const float *q,
		    uint32_t d, const int dt, const int HB, const int TB,
		    float scale, float (*s)[KB], const char *const *pfl,
		    uint32_t pfn)
{
	const size_t cstep = 8 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	const uint32_t nc = d / 8;
	const int G = 8 / HB;
	const __m256 vs = _mm256_set1_ps(scale);

	struct pfcur pc;
	uint32_t rate;

	/* rows of a later block, a few lines per chunk step */
	pc.p = pfl;
	pc.end = pfl + pfn;
	rate = pfcur_rate(&pc, (n + TB - 1) / TB * nc);
	for (uint32_t g0 = 0; g0 < n; g0 += G) {
		__m256 red[8];

#pragma GCC unroll 8
		for (int t = 0; t < G; t += TB) {
			const char *kr[8];
			__m256 acc[8][8];

#pragma GCC unroll 8
			for (int i = 0; i < TB; i++) {
				const uint32_t j = g0 + t + i;

				kr[i] = rows[j < n ? j : n - 1];
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					acc[i][h] = _mm256_setzero_ps();
			}
			for (uint32_t c = 0; c < nc; c++) {
				__m256 k[8];

				pfcur_step(&pc, rate);
#pragma GCC unroll 8
				for (int i = 0; i < TB; i++)
					k[i] = ld8(kr[i] + c * cstep, dt);
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++) {
					const __m256 qv = _mm256_loadu_ps(
						q + (size_t)h * d + c * 8);

#pragma GCC unroll 8
					for (int i = 0; i < TB; i++)
						acc[i][h] = _mm256_fmadd_ps(
							k[i], qv, acc[i][h]);
				}
			}
#pragma GCC unroll 8
			for (int i = 0; i < TB; i++)
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					red[red_slot[h * G + t + i]] =
						acc[i][h];
		}
		store_group(s[0], _mm256_mul_ps(hsum8(red), vs), HB, g0);
	}
}

/*
 * acc[h][c0*8 ..] = acc * alpha[h] + sum_t p[h][t] * v_t, HB x CB tile;
 * prefetches lines pfl[0 .. pfn) spread over the tokens.
 */
AI void vtile(const char *const *rows, uint32_t n, const int dt, uint32_t c0,
	      const int HB, const int CB, float *acc, uint32_t d,
	      const float (*p)[KB], const float *alpha,
	      const char *const *pfl, uint32_t pfn)
{
	const size_t cstep = 8 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	__m256 r[8][4];
	struct pfcur pc;
	uint32_t rate;

#pragma GCC unroll 8
	for (int h = 0; h < HB; h++) {
		const __m256 al = _mm256_set1_ps(alpha[h]);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			r[h][c] = _mm256_mul_ps(al, _mm256_loadu_ps(
				acc + (size_t)h * d + (c0 + c) * 8));
	}
	pc.p = pfl;
	pc.end = pfl + pfn;
	rate = pfcur_rate(&pc, n);
	for (uint32_t t = 0; t < n; t++) {
		const char *vr = rows[t] + c0 * cstep;
		__m256 v[4];

		pfcur_step(&pc, rate);
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			v[c] = ld8(vr + c * cstep, dt);
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++) {
			const __m256 pb = _mm256_broadcast_ss(&p[h][t]);

#pragma GCC unroll 4
			for (int c = 0; c < CB; c++)
				r[h][c] = _mm256_fmadd_ps(pb, v[c], r[h][c]);
		}
	}
#pragma GCC unroll 8
	for (int h = 0; h < HB; h++)
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			_mm256_storeu_ps(acc + (size_t)h * d + (c0 + c) * 8,
					 r[h][c]);
}

typedef void (*score_fn)(const char *const *rows, uint32_t n, const float *q,
			 uint32_t d, float scale, float (*s)[KB],
			 const char *const *pfl, uint32_t pfn);
typedef void (*vtile_fn)(const char *const *rows, uint32_t n, uint32_t c0,
			 float *acc, uint32_t d, const float (*p)[KB],
			 const float *alpha, const char *const *pfl,
			 uint32_t pfn);

#define SCORE(DT, HB, TB)						\
static __attribute__((noinline)) void score_##DT##_##HB(		\
	const char *const *rows, uint32_t n, const float *q, uint32_t d, \
	float scale, float (*s)[KB], const char *const *pfl,		\
	uint32_t pfn)							\
{									\
	score_group(rows, n, q, d, DT, HB, TB, scale, s, pfl, pfn);	\
}
/*
 * Heads are scored two at a time: 4 tokens x 2 heads give 8 independent
 * FMA chains (FMA latency 4 x 2 pipes) with q chunks shared by 4 tokens;
 * 4 heads x 2 tokens were slower (fewer tokens per q load, one reduction
 * per 2 tokens) even though K is converted once per head pair.
 */
#define SCORES(DT) SCORE(DT, 2, 4) SCORE(DT, 1, 4)
SCORES(0)
SCORES(1)
SCORES(2)

#define VTILE(DT, HB, CB)						\
static __attribute__((noinline)) void vtile_##DT##_##HB##_##CB(	\
	const char *const *rows, uint32_t n, uint32_t c0, float *acc,	\
	uint32_t d, const float (*p)[KB], const float *alpha,		\
	const char *const *pfl, uint32_t pfn)				\
{									\
	vtile(rows, n, DT, c0, HB, CB, acc, d, p, alpha, pfl, pfn);	\
}
#define VTILES(DT) VTILE(DT, 8, 1) VTILE(DT, 4, 2) VTILE(DT, 4, 1)	\
	VTILE(DT, 2, 4) VTILE(DT, 2, 2) VTILE(DT, 2, 1) VTILE(DT, 1, 4)	\
	VTILE(DT, 1, 2) VTILE(DT, 1, 1)
VTILES(0)
VTILES(1)
VTILES(2)

/* [dtype][log2 HB] */
static const score_fn score_tab[3][2] = {
#define SROW(DT) { score_##DT##_1, score_##DT##_2 }
	SROW(0), SROW(1), SROW(2),
};

/* [dtype][log2 HB][log2 CB]: the widest tile of each head group first */
static const vtile_fn vtile_tab[3][4][3] = {
#define VROW(DT) {							\
	{ vtile_##DT##_1_1, vtile_##DT##_1_2, vtile_##DT##_1_4 },	\
	{ vtile_##DT##_2_1, vtile_##DT##_2_2, vtile_##DT##_2_4 },	\
	{ vtile_##DT##_4_1, vtile_##DT##_4_2, NULL },			\
	{ vtile_##DT##_8_1, NULL, NULL } }
	VROW(0), VROW(1), VROW(2),
};

static unsigned int head_group_log2(uint32_t rem)
{
	return rem >= 8 ? 3 : rem >= 4 ? 2 : rem >= 2 ? 1 : 0;
}

/*
 * The lines (K and V rows) of a later block, in the order they are
 * prefetched: the first ns while scoring (split evenly over the head
 * groups), the rest during the V accumulation (split evenly over its
 * tiles).
 */
struct pfplan {
	uint32_t n, ns;
	const char *lines[2 * KB * (ATTN_MAX_HEAD_DIM * 4 / 64) + 4];
};

static void pfplan_init(struct pfplan *pp, const struct pf *b)
{
	const __m256i offs = _mm256_setr_epi64x(0, 64, 128, 192);
	const uint32_t lpr = (uint32_t)((b->row_bytes + 63) / 64);
	uint32_t n = 0;

	/*
	 * Rows are 32-byte aligned multiples of 32 bytes, so stepping 64
	 * bytes from the row start touches every line of the row.  Four
	 * addresses per store; the ones past a row's end are overwritten by
	 * the next row or lie past n.
	 */
	for (uint32_t i = 0; i < b->n; i++) {
		for (uint32_t l = 0; l < lpr; l += 4)
			_mm256_storeu_si256((__m256i *)(void *)(pp->lines + n + l),
				_mm256_add_epi64(offs, _mm256_set1_epi64x(
					(long long)(uintptr_t)(b->k[i] + 64 * l))));
		n += lpr;
		for (uint32_t l = 0; l < lpr; l += 4)
			_mm256_storeu_si256((__m256i *)(void *)(pp->lines + n + l),
				_mm256_add_epi64(offs, _mm256_set1_epi64x(
					(long long)(uintptr_t)(b->v[i] + 64 * l))));
		n += lpr;
	}
	pp->n = n;
	pp->ns = n * PF_SCORE16 / 16;
}

static void scores(const char *const *rows, uint32_t n, const float *q,
		   uint32_t d, uint32_t nq, int dt, float scale,
		   float (*s)[KB], const struct pfplan *pp)
{
	const uint32_t ng = (nq + 1) / 2;

	/* heads in pairs (and a single one last) */
	for (uint32_t h = 0, gi = 0; h < nq; gi++) {
		unsigned int lg = nq - h >= 2;
		uint32_t p0 = pp->ns * gi / ng, p1 = pp->ns * (gi + 1) / ng;

		score_tab[dt][lg](rows, n, q + (size_t)h * d, d, scale, s + h,
				  pp->lines + p0, p1 - p0);
		h += 1u << lg;
	}
}

/* log2 of the width (chunks) of the V tile at chunk c of a 2^lg head group */
static unsigned int vtile_cb_log2(unsigned int lg, uint32_t c, uint32_t nc)
{
	static const unsigned int max_cb_log2[4] = { 2, 2, 1, 0 };
	unsigned int l = max_cb_log2[lg];

	while (c + (1u << l) > nc)
		l--;
	return l;
}

static void vaccum(const char *const *rows, uint32_t n, int dt, uint32_t nq,
		   float *acc, uint32_t d, const float (*p)[KB],
		   const float *alpha, const struct pfplan *pp)
{
	const uint32_t nc = d / 8, npv = pp->n - pp->ns;
	const char *const *pvr = pp->lines + pp->ns;
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
					       p1 - p0);
			c += 1u << cbl;
		}
		h += 1u << lg;
	}
}

void attn_kernel_avx2(const struct attn_args *a)
{
	const uint32_t d = a->head_dim, nq = a->n_q;
	const int dt = a->dtype < CSD_DTYPE_COUNT ? a->dtype : CSD_DTYPE_F32;
	const size_t row_bytes = (size_t)d * csd_dtype_size(dt);
	const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	float s[ATTN_MAX_NQ][KB] __attribute__((aligned(32)));
	float alpha[ATTN_MAX_NQ];
	/* rows of this block and of the PF_DIST blocks after it */
	struct pf ring[PF_DIST + 1];
	struct pfplan pp;
	unsigned int cur = 0;

	block_pipe_start(a, ring, PF_DIST, row_bytes);

	for (uint32_t t0 = a->tok_begin; t0 < a->tok_end; t0 += KB) {
		const uint32_t n = ring[cur].n, nv = (n + 7) / 8;
		struct pf *nx = &ring[(cur + PF_DIST) % (PF_DIST + 1)];
		const char *const *kr = ring[cur].k, *const *vr = ring[cur].v;

		/* a later block's rows: prefetched while working on this one */
		block_rows(a, t0 + PF_DIST * KB, row_bytes, nx);

		pfplan_init(&pp, nx);
		scores(kr, n, a->q, d, nq, dt, a->scale, s, &pp);

		for (uint32_t h = 0; h < nq; h++) {
			const __m256 ninf = _mm256_set1_ps(-INFINITY);
			__m256 sv[KB / 8], mx = ninf, sum;
			float bm, mold = a->m[h], mnew;

			for (uint32_t i = 0; i < nv; i++) {
				/* lanes of tokens >= n: -inf (exp -> 0) */
				__m256 valid = _mm256_castsi256_ps(
					_mm256_cmpgt_epi32(
						_mm256_set1_epi32((int)(n - i * 8)),
						iota));

				sv[i] = _mm256_blendv_ps(ninf,
					_mm256_load_ps(s[h] + i * 8), valid);
				mx = _mm256_max_ps(mx, sv[i]);
			}
			bm = hmax1(mx);
			mnew = mold > bm ? mold : bm;
			alpha[h] = mold == -INFINITY ? 0.0f : expf(mold - mnew);
			mx = _mm256_set1_ps(mnew);
			sum = _mm256_setzero_ps();
			for (uint32_t i = 0; i < nv; i++) {
				__m256 e = exp8(_mm256_sub_ps(sv[i], mx));

				sum = _mm256_add_ps(sum, e);
				_mm256_store_ps(s[h] + i * 8, e);
			}
			a->l[h] = a->l[h] * alpha[h] + hsum1(sum);
			a->m[h] = mnew;
		}

		vaccum(vr, n, dt, nq, a->acc, d, (const float (*)[KB])s, alpha,
		       &pp);
		cur = (cur + 1) % (PF_DIST + 1);
	}
}
