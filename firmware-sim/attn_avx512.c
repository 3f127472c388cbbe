// SPDX-License-Identifier: MIT
/*
 * attn_avx512.c - AVX-512 attention kernel (compiled with -mavx512f/bw/vl/dq).
 *
 * Per block of KB (64) tokens:
 *  1. scores: each K row is converted once (vcvtph2ps for fp16) and dotted
 *     with every query head of the group, several tokens at a time so that
 *     one q chunk load serves them all; the dot accumulators of 16 tokens
 *     are reduced together (one transposing add tree per head gives 16
 *     scores in one register);
 *  2. one online-softmax step per head: block max, one rescale factor, a
 *     vector exp of the scores;
 *  3. V: register tiles of (heads x 16-float chunks) accumulators; each V
 *     chunk is converted once per tile and used for all heads in it.
 * The K/V rows of the next block are prefetched into L2 (pages are
 * scattered, so the hardware prefetchers cannot run across page
 * boundaries).
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"

#define AI static inline __attribute__((always_inline))
#define KB 64			/* tokens per online-softmax step */
#ifndef PF_DIST
#define PF_DIST 2		/* blocks ahead to prefetch */
#endif
/* the scores prefetch the V rows of every PF_VSTRIDE-th token, V the rest */
#ifndef PF_VSTRIDE
#define PF_VSTRIDE 4
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif

/* Slot of token t in the reduction tree so that hsum16 yields token order. */
static const uint8_t red_slot[16] = {
	0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15
};

AI __m512 ld16(const char *p, const int dt)
{
	if (dt == CSD_DTYPE_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
	if (dt == CSD_DTYPE_BF16)
		return _mm512_castsi512_ps(_mm512_slli_epi32(
			_mm512_cvtepu16_epi32(
				_mm256_loadu_si256((const __m256i *)p)), 16));
	return _mm512_loadu_ps((const float *)p);
}

/* exp(x) for x <= 88; -inf and very negative x give 0. */
AI __m512 exp16(__m512 x)
{
	const __m512 one = _mm512_set1_ps(1.0f);
	__m512 n, r, r2, p;

	x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
	x = _mm512_min_ps(x, _mm512_set1_ps(88.37626f));
	n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
				 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
	r2 = _mm512_mul_ps(r, r);
	p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, one));
	return _mm512_scalef_ps(p, n);
}

/* Lane j of the result = sum of all lanes of v[red_slot[j]]. */
AI __m512 hsum16(const __m512 *v)
{
	__m512 b[8], c[4], d[2];

	for (int j = 0; j < 8; j++)
		b[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[j], v[j + 8], 0x44),
				     _mm512_shuffle_f32x4(v[j], v[j + 8], 0xee));
	for (int j = 0; j < 4; j++)
		c[j] = _mm512_add_ps(_mm512_shuffle_f32x4(b[j], b[j + 4], 0x88),
				     _mm512_shuffle_f32x4(b[j], b[j + 4], 0xdd));
	for (int j = 0; j < 2; j++)
		d[j] = _mm512_add_ps(_mm512_shuffle_ps(c[j], c[j + 2], 0x44),
				     _mm512_shuffle_ps(c[j], c[j + 2], 0xee));
	return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88),
			     _mm512_shuffle_ps(d[0], d[1], 0xdd));
}

/* Rows of a later block to prefetch while scoring this one. */
struct pf {
	uint32_t n;		/* rows (0: none) */
	size_t row_bytes;
	const char *k[KB], *v[KB];
};

AI void prefetch_one(const char *row, size_t row_bytes)
{
	for (size_t o = 0; o < row_bytes; o += 64)
		_mm_prefetch(row + o, PF_HINT);
	_mm_prefetch(row + row_bytes - 1, PF_HINT);
}

/*
 * Scores of @n (<= KB) tokens for HB heads (q rows at q, stride d) into
 * s[h][], TB tokens at a time so that each q chunk load serves TB tokens.
 * Lanes of tokens >= n hold garbage (the caller masks them).
 */
AI void score_group(const char *const *rows, uint32_t n, const float *q,
		    uint32_t d, const int dt, const int HB, const int TB,
		    float scale, float (*s)[KB], const struct pf *pf)
{
	const size_t cstep = 16 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	const uint32_t nc = d / 16;
	const __m512 vs = _mm512_set1_ps(scale);
	__m512 red[8][16];

	for (uint32_t t0 = 0; t0 < n; t0 += 16) {
		for (uint32_t t = 0; t < 16; t += TB) {
			const char *kr[8];
			__m512 acc[8][8];

			if (t0 + t >= n) {
				for (uint32_t i = t; i < 16; i++)
#pragma GCC unroll 8
					for (int h = 0; h < HB; h++)
						red[h][red_slot[i]] =
							_mm512_setzero_ps();
				break;
			}
#pragma GCC unroll 8
			for (int i = 0; i < TB; i++) {
				kr[i] = rows[t0 + t + i < n ? t0 + t + i : 0];
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					acc[i][h] = _mm512_setzero_ps();
			}
			/* the same tokens of a later block: one line of each
			 * prefetched per 64 bytes of chunks, spread over the
			 * dot products */
			const char *pk[8];

			const char *pv[8];

#pragma GCC unroll 8
			for (int i = 0; i < TB; i++) {
				const uint32_t j = t0 + t + i;

				pk[i] = j < pf->n ? pf->k[j] : kr[i];
				pv[i] = j < pf->n && !(j % PF_VSTRIDE) ?
					pf->v[j] : NULL;
			}
			for (uint32_t c = 0; c < nc; c++) {
				__m512 k[8];

				if (!((c * cstep) & 63))
#pragma GCC unroll 8
					for (int i = 0; i < TB; i++) {
						_mm_prefetch(pk[i] + c * cstep,
							     PF_HINT);
						if (pv[i])
							_mm_prefetch(pv[i] +
								c * cstep,
								PF_HINT);
					}

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
#pragma GCC unroll 8
			for (int i = 0; i < TB; i++)
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					red[h][red_slot[t + i]] = acc[i][h];
		}
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++)
			_mm512_store_ps(s[h] + t0,
					_mm512_mul_ps(hsum16(red[h]), vs));
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
	uint32_t pj = 0;

#pragma GCC unroll 8
	for (int h = 0; h < HB; h++) {
		const __m512 al = _mm512_set1_ps(alpha[h]);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			r[h][c] = _mm512_mul_ps(al, _mm512_loadu_ps(
				acc + (size_t)h * d + (c0 + c) * 16));
	}
	for (uint32_t t = 0; t < n; t++) {
		const char *vr = rows[t] + c0 * cstep;
		__m512 v[4];

		/* pfn rows spread evenly over the n tokens */
		while (pj < pfn && pj * n <= t * pfn)
			prefetch_one(pfr[pj++], row_bytes);

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
			 const struct pf *pf);
typedef void (*vtile_fn)(const char *const *rows, uint32_t n, uint32_t c0,
			 float *acc, uint32_t d, const float (*p)[KB],
			 const float *alpha, const char *const *pfr,
			 uint32_t pfn, size_t row_bytes);

#define SCORE(DT, HB, TB)						\
static __attribute__((noinline)) void score_##DT##_##HB(		\
	const char *const *rows, uint32_t n, const float *q, uint32_t d, \
	float scale, float (*s)[KB], const struct pf *pf)		\
{									\
	score_group(rows, n, q, d, DT, HB, TB, scale, s, pf);		\
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
		   float (*s)[KB], const struct pf *pf)
{
	static const struct pf nopf;

	for (uint32_t h = 0; h < nq;) {
		unsigned int lg = head_group_log2(nq - h);

		score_tab[dt][lg](rows, n, q + (size_t)h * d, d, scale, s + h,
				  h ? &nopf : pf);
		h += 1u << lg;
	}
}

static void vaccum(const char *const *rows, uint32_t n, int dt, uint32_t nq,
		   float *acc, uint32_t d, const float (*p)[KB],
		   const float *alpha, const struct pf *pf)
{
	const uint32_t nc = d / 16;
	const char *pvr[KB];
	uint32_t npv = 0;

	for (uint32_t i = 0; i < pf->n; i++)
		if (i % PF_VSTRIDE)
			pvr[npv++] = pf->v[i];
	for (uint32_t h = 0; h < nq;) {
		unsigned int lg = head_group_log2(nq - h);
		float *ah = acc + (size_t)h * d;
		/* the first head group prefetches the V rows of a later
		 * block that the scores did not, spread over its tiles */
		const uint32_t cb = lg < 3 ? 4 : 2;
		const uint32_t ntile = (nc + cb - 1) / cb;
		const uint32_t per = h ? 0 : (npv + ntile - 1) / ntile;
		uint32_t c = 0, pdone = 0;

#define VT(CBL)								\
	do {								\
		uint32_t pn = npv - pdone < per ? npv - pdone : per;	\
		vtile_tab[dt][lg][CBL](rows, n, c, ah, d, p + h,	\
				       alpha + h, pvr + pdone, pn,	\
				       pf->row_bytes);			\
		pdone += pn;						\
	} while (0)
		if (lg < 3)
			for (; c + 4 <= nc; c += 4)
				VT(2);
		for (; c + 2 <= nc; c += 2)
			VT(1);
		if (c < nc)
			VT(0);
#undef VT
		h += 1u << lg;
	}
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

static void prefetch_block(const struct attn_args *a, uint32_t t0,
			   size_t row_bytes)
{
	uint32_t t1;

	if (t0 >= a->tok_end)
		return;
	t1 = a->tok_end - t0 > KB ? t0 + KB : a->tok_end;
	prefetch_range(a->kpages, a->tpp, a->tok_begin, t0, t1, row_bytes);
	prefetch_range(a->vpages, a->tpp, a->tok_begin, t0, t1, row_bytes);
}

static void block_rows(const struct attn_args *a, uint32_t t0,
		       size_t row_bytes, struct pf *b)
{
	b->row_bytes = row_bytes;
	b->n = t0 >= a->tok_end ? 0 :
	       a->tok_end - t0 > KB ? KB : a->tok_end - t0;
	attn_rows(a->kpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->k);
	attn_rows(a->vpages, a->tpp, a->tok_begin, t0, b->n, row_bytes, b->v);
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

	for (uint32_t h = 0; h < nq; h++) {
		a->m[h] = -INFINITY;
		a->l[h] = 0.0f;
	}
	memset(a->acc, 0, (size_t)nq * d * sizeof(float));
	for (unsigned int i = 0; i < PF_DIST; i++) {
		prefetch_block(a, a->tok_begin + i * KB, row_bytes);
		block_rows(a, a->tok_begin + i * KB, row_bytes, &ring[i]);
	}

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
