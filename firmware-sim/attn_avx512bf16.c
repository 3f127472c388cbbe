// SPDX-License-Identifier: MIT
/*
 * attn_avx512bf16.c - AVX-512 BF16 attention kernel for fp16 and bf16 KV:
 * bf16 products with f32 accumulation (vdpbf16ps, 32 multiply-adds per
 * instruction where vfmadd231ps does 16).
 *
 * Decode attention does (q heads / kv heads) / dtype-size multiply-adds
 * per KV byte: 2 for GQA 32/8 at fp16, which puts the f32 kernel's
 * compute roof near one core's streaming bandwidth.  bf16 products halve
 * the multiply instructions; conversions, the V pairing and the score
 * reduction remain, so the gain is 1.2-1.4x with KV in cache and none
 * where DRAM sets the pace (Documentation/performance.md, section 7).
 * Opt-in: CSD_SIMD=auto never selects it.
 *
 * Numerics (tested against the scalar reference, NMSE <= 5e-4):
 *  - K/V elements become bf16 (8-bit significand) on the fly.  fp16 is
 *    converted with integer ops only: shifting an fp16 code right by 3
 *    (rounding half away from zero) gives the bf16 code of the value
 *    times 2^-112 -- exact exponent, significand rounded from 11 to 8
 *    bits; q and the softmax weights are scaled by 2^112 to cancel it.
 *    fp16 subnormals (|x| < 2^-14) fall on bf16 subnormals, which
 *    vdpbf16ps reads as zero -- except the four largest (codes 3fch-3ffh),
 *    which round up to 2^-14.  bf16 KV is used as stored.
 *  - q and the softmax weights p are rounded to bf16 (nearest even); the
 *    softmax denominator is summed from the rounded p, so the weights of
 *    a row still sum to one.  Products and sums stay f32.
 *  - Every K/V element is checked for inf/NaN (exponent all ones) as it
 *    is converted, q for magnitudes that would not round to a finite
 *    bf16 (after the 2^112 scaling for fp16) and each block's scores for
 *    magnitudes above SCORE_MAX or NaN (overflow); any of them makes the
 *    call start again on the f32 kernel (attn_kernel_avx512), so
 *    non-finite data and extreme logits get the reference's semantics.
 *    f32 KV always runs there.
 *  - What no cheap guard sees: a score that is a small difference of large
 *    products (sum |q_i k_i| >> |s|) carries the products' bf16 error,
 *    ~2^-9 * sqrt(sum (q_i k_i)^2), which can exceed the NMSE budget on
 *    such data (e.g. opposite-sign outlier channels that cancel).  That
 *    is the trade of every bf16-product kernel, and why this one is
 *    opt-in.
 *
 * Pipeline as in attn_avx512.c (attn_avx512_blk.h): blocks of KB tokens,
 * scores with one transposing add tree per 16 (token, head) sums, one
 * online-softmax step per block, a trickle of prefetches for the block
 * PF_DIST ahead.  V: vdpbf16ps sums pairs of adjacent elements, so two
 * tokens' V rows are interleaved (vpunpck[lh]wd) and multiplied by the
 * pair (p_t, p_t+1); the unpack permutes channels within each 32-channel
 * chunk, so the accumulator lives in that order (vperm_chan()) until the
 * end of the call.
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"
#include "attn_avx512_inl.h"
#include "attn_avx512_blk.h"

/* fp16 code >> 3 = bf16 code of value * 2^-112; q and p carry 2^112 */
#define F16_SCALE 0x1p112f
/* |q| * F16_SCALE must round to a finite bf16 */
#define Q_MAX 0x1p15f
/* bf16 KV: |q| must round to a finite bf16 (halfway to 2^128 rounds up) */
#define QB_MAX 0x1.ffp127f
/*
 * Largest |scaled score| the bf16 products serve: without cancellation a
 * score's error grows with its magnitude (~2^-9 relative per product),
 * and exp() turns an absolute error e into a relative error e of the
 * weight.  LLM logits stay well below this; beyond it the call runs on
 * the f32 kernel.
 */
#define SCORE_MAX 64.0f

/* kernel-local KV type index (tables, templates) */
#define DT_F16 0
#define DT_BF16 1

static const uint16_t zero_row[ATTN_MAX_HEAD_DIM]
	__attribute__((aligned(64)));

/* 32 KV codes (16 if half) at p, as raw 16-bit codes */
AI __m512i ld32(const char *p, const int half)
{
	if (half)
		return _mm512_maskz_loadu_epi16(0xffff, p);
	return _mm512_loadu_si512(p);
}

/*
 * Raw fp16/bf16 codes -> bf16 codes (fp16: of value * 2^-112).  Bit 15 of
 * each 16-bit lane of *chk is set (and stays set) when a code has an
 * all-ones exponent: adding the exponent's lowest bit then carries out of
 * the magnitude, which flips bit 15 (ternlog 0xf6: chk | (x ^ (x + e))).
 */
AI __m512i cvt32(__m512i x, const int dt, __m512i *chk)
{
	if (dt == DT_F16) {
		const __m512i e = _mm512_set1_epi16(0x0400);

		*chk = _mm512_ternarylogic_epi32(*chk, x,
						 _mm512_add_epi16(x, e), 0xf6);
		/* magnitude + 4 >> 3: rounded; sra keeps the sign, and
		 * the mask clears the sign copies above the exponent */
		x = _mm512_srai_epi16(_mm512_add_epi16(
			x, _mm512_set1_epi16(4)), 3);
		return _mm512_and_si512(x, _mm512_set1_epi16((short)0x8fff));
	}
	*chk = _mm512_ternarylogic_epi32(*chk, x,
		_mm512_add_epi16(x, _mm512_set1_epi16(0x0080)), 0xf6);
	return x;
}

AI __m512 dp(__m512 acc, __m512i a, __m512i b)
{
	return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* acc[i][h] += k_i . q_h over chunk c (32 elements, 16 if half) */
AI void score_chunk(const char *const *kr, const uint16_t *qb, uint32_t dq,
			uint32_t c, const int half, const int dt, const int HB,
			const int TB, __m512 (*acc)[8], __m512i *ck)
{
	__m512i k[8];

#pragma GCC unroll 8
	for (int i = 0; i < TB; i++)
		k[i] = cvt32(ld32(kr[i] + c * 64, half), dt, ck);
#pragma GCC unroll 8
	for (int h = 0; h < HB; h++) {
		const __m512i qv = _mm512_loadu_si512(qb + (size_t)h * dq +
						      c * 32);

#pragma GCC unroll 8
		for (int i = 0; i < TB; i++)
			acc[i][h] = dp(acc[i][h], k[i], qv);
	}
}

/*
 * Scores of @n (<= KB) tokens for HB heads (bf16 q rows at qb, stride dq
 * codes, zero past d) into s[h][]: as score_group() of attn_avx512.c with
 * 32-element chunks (nf full ones, then a 16-element one if half).
 */
AI void score_group(const char *const *rows, uint32_t n, const uint16_t *qb,
		    uint32_t dq, uint32_t nf, const int half, const int dt,
		    const int HB, const int TB, float scale, float (*s)[KB],
		    const char *const *pfr, uint32_t pfn, size_t row_bytes,
		    __m512i *chk)
{
	const int G = 16 / HB;
	const __m512 vs = _mm512_set1_ps(scale);
	float *const sf = s[0];
	__m512i ck = *chk;
	struct pfcur pc;
	uint32_t rate;

	pfcur_init(&pc, pfr, pfn, row_bytes);
	rate = pfcur_rate(&pc, (n + TB - 1) / TB * (nf + half));
	for (uint32_t g0 = 0; g0 < n; g0 += G) {
		__m512 red[16];

#pragma GCC unroll 16
		for (int t = 0; t < G; t += TB) {
			const char *kr[8];
			__m512 acc[8][8];

			group_init(kr, acc, rows, n, g0 + t, TB, HB);
			for (uint32_t c = 0; c < nf; c++) {
				pfcur_step(&pc, rate);
				score_chunk(kr, qb, dq, c, 0, dt, HB, TB, acc,
					    &ck);
			}
			if (half) {
				pfcur_step(&pc, rate);
				score_chunk(kr, qb, dq, nf, 1, dt, HB, TB, acc,
					    &ck);
			}
			red_put(red, acc, TB, HB, t);
		}

		red_store(red, vs, HB, sf, g0);
	}
	*chk = ck;
}

/*
 * acc = acc * alpha[h] + sum_t p[h][t] * v_t over HB heads x CB chunks of
 * 32 channels from chunk c0 (one 16-channel chunk if half).  Token pairs:
 * pb[h][i] holds the bf16 pair (p[2i], p[2i+1]); an odd last token is
 * paired with a zero row.  Chunk c's accumulator is at acc + c * 32 in
 * unpack order: the lo lanes (16, or 8 if half), then the hi lanes.
 */
AI void vtile(const char *const *rows, uint32_t n, const int dt, uint32_t c0,
	      const int HB, const int CB, const int half, float *acc,
	      uint32_t d, const uint32_t (*pb)[KB / 2], const float *alpha,
	      const char *const *pfr, uint32_t pfn, size_t row_bytes,
	      __m512i *chk)
{
	const int L = half ? 8 : 16;
	const __mmask16 lm = half ? 0x00ff : 0xffff;
	const uint32_t np = (n + 1) / 2;
	__m512i ck = *chk;
	__m512 r[8][4][2];
	struct pfcur pc;
	uint32_t rate;

#pragma GCC unroll 8
	for (int h = 0; h < HB; h++) {
		const __m512 al = _mm512_set1_ps(alpha[h]);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++) {
			float *a = acc + (size_t)h * d + (c0 + c) * 32;

			r[h][c][0] = _mm512_mul_ps(al,
				_mm512_maskz_loadu_ps(lm, a));
			r[h][c][1] = _mm512_mul_ps(al,
				_mm512_maskz_loadu_ps(lm, a + L));
		}
	}
	pfcur_init(&pc, pfr, pfn, row_bytes);
	rate = pfcur_rate(&pc, np);
	for (uint32_t i = 0; i < np; i++) {
		const char *r0 = rows[2 * i] + c0 * 64;
		const char *r1 = 2 * i + 1 < n ? rows[2 * i + 1] + c0 * 64 :
				 (const char *)zero_row;
		__m512i lo[4], hi[4];

		pfcur_step(&pc, rate);
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++) {
			const __m512i a = ld32(r0 + c * 64, half);
			const __m512i b = ld32(r1 + c * 64, half);

			lo[c] = cvt32(_mm512_unpacklo_epi16(a, b), dt, &ck);
			hi[c] = cvt32(_mm512_unpackhi_epi16(a, b), dt, &ck);
		}
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++) {
			const __m512i w = _mm512_set1_epi32((int)pb[h][i]);

#pragma GCC unroll 4
			for (int c = 0; c < CB; c++) {
				r[h][c][0] = dp(r[h][c][0], lo[c], w);
				r[h][c][1] = dp(r[h][c][1], hi[c], w);
			}
		}
	}
#pragma GCC unroll 8
	for (int h = 0; h < HB; h++)
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++) {
			float *a = acc + (size_t)h * d + (c0 + c) * 32;

			_mm512_mask_storeu_ps(a, lm, r[h][c][0]);
			_mm512_mask_storeu_ps(a + L, lm, r[h][c][1]);
		}
	*chk = ck;
}

/* Specialized instances, as in attn_avx512.c; DT: DT_F16 / DT_BF16. */
typedef void (*score_fn)(const char *const *rows, uint32_t n,
			 const uint16_t *qb, uint32_t dq, uint32_t nf,
			 float scale, float (*s)[KB], const char *const *pfr,
			 uint32_t pfn, size_t row_bytes, __m512i *chk);
typedef void (*vtile_fn)(const char *const *rows, uint32_t n, uint32_t c0,
			 float *acc, uint32_t d, const uint32_t (*pb)[KB / 2],
			 const float *alpha, const char *const *pfr,
			 uint32_t pfn, size_t row_bytes, __m512i *chk);

#define SCORE(DT, HF, HB, TB)						\
static __attribute__((noinline)) void score_##DT##_##HF##_##HB(	\
	const char *const *rows, uint32_t n, const uint16_t *qb,	\
	uint32_t dq, uint32_t nf, float scale, float (*s)[KB],		\
	const char *const *pfr, uint32_t pfn, size_t row_bytes,	\
	__m512i *chk)							\
{									\
	score_group(rows, n, qb, dq, nf, HF, DT, HB, TB, scale, s, pfr, \
		    pfn, row_bytes, chk);				\
}
#define SCORES(DT, HF) SCORE(DT, HF, 8, 2) SCORE(DT, HF, 4, 4)		\
	SCORE(DT, HF, 2, 4) SCORE(DT, HF, 1, 8)
SCORES(0, 0)
SCORES(0, 1)
SCORES(1, 0)
SCORES(1, 1)

#define VTILE(DT, HF, HB, CB)						\
static __attribute__((noinline)) void vtile_##DT##_##HF##_##HB##_##CB( \
	const char *const *rows, uint32_t n, uint32_t c0, float *acc,	\
	uint32_t d, const uint32_t (*pb)[KB / 2], const float *alpha,	\
	const char *const *pfr, uint32_t pfn, size_t row_bytes,	\
	__m512i *chk)							\
{									\
	vtile(rows, n, DT, c0, HB, CB, HF, acc, d, pb, alpha, pfr, pfn,	\
	      row_bytes, chk);						\
}
#define VTILES(DT) VTILE(DT, 0, 8, 1) VTILE(DT, 0, 4, 2)		\
	VTILE(DT, 0, 4, 1) VTILE(DT, 0, 2, 4) VTILE(DT, 0, 2, 2)	\
	VTILE(DT, 0, 2, 1) VTILE(DT, 0, 1, 4) VTILE(DT, 0, 1, 2)	\
	VTILE(DT, 0, 1, 1) VTILE(DT, 1, 8, 1) VTILE(DT, 1, 4, 1)	\
	VTILE(DT, 1, 2, 1) VTILE(DT, 1, 1, 1)
VTILES(0)
VTILES(1)

/* [dtype][half][log2 HB] */
static const score_fn score_tab[2][2][4] = {
#define SROW(DT, HF) { score_##DT##_##HF##_1, score_##DT##_##HF##_2,	\
	score_##DT##_##HF##_4, score_##DT##_##HF##_8 }
	{ SROW(0, 0), SROW(0, 1) }, { SROW(1, 0), SROW(1, 1) },
};

/* [dtype][log2 HB][log2 CB] (full chunks; CB 4 not used with HB >= 4) */
static const vtile_fn vtile_tab[2][4][3] = {
#define VROW(DT) {							\
	{ vtile_##DT##_0_1_1, vtile_##DT##_0_1_2, vtile_##DT##_0_1_4 },	\
	{ vtile_##DT##_0_2_1, vtile_##DT##_0_2_2, vtile_##DT##_0_2_4 },	\
	{ vtile_##DT##_0_4_1, vtile_##DT##_0_4_2, NULL },		\
	{ vtile_##DT##_0_8_1, NULL, NULL } }
	VROW(0), VROW(1),
};

/* [dtype][log2 HB]: the 16-channel chunk of a head_dim = 16 mod 32 */
static const vtile_fn vtile_half_tab[2][4] = {
	{ vtile_0_1_1_1, vtile_0_1_2_1, vtile_0_1_4_1, vtile_0_1_8_1 },
	{ vtile_1_1_1_1, vtile_1_1_2_1, vtile_1_1_4_1, vtile_1_1_8_1 },
};

static unsigned int head_group_log2(uint32_t rem)
{
	return rem >= 8 ? 3 : rem >= 4 ? 2 : rem >= 2 ? 1 : 0;
}

/* log2 of the width (chunks) of the V tile at full chunk c of nf */
static unsigned int vtile_cb_log2(unsigned int lg, uint32_t c, uint32_t nf)
{
	if (lg <= 1 && c + 4 <= nf)
		return 2;
	return lg <= 2 && c + 2 <= nf ? 1 : 0;
}

struct bctx {
	int dt;			/* 0 f16, 1 bf16 */
	uint32_t d, dq, nf, nq;
	int half;
	float scale;
	const uint16_t *qb;
};

static void scores(const struct bctx *b, const char *const *rows, uint32_t n,
		   float (*s)[KB], const struct pf *nx, __m512i *chk)
{
	uint32_t ng = 0, gi = 0;

	for (uint32_t h = 0; h < b->nq; ng++)
		h += 1u << head_group_log2(b->nq - h);
	for (uint32_t h = 0; h < b->nq; gi++) {
		unsigned int lg = head_group_log2(b->nq - h);
		uint32_t p0 = nx->n * gi / ng, p1 = nx->n * (gi + 1) / ng;

		score_tab[b->dt][b->half][lg](rows, n, b->qb + (size_t)h * b->dq,
					       b->dq, b->nf, b->scale, s + h,
					       nx->k + p0, p1 - p0,
					       nx->row_bytes, chk);
		h += 1u << lg;
	}
}

static void vaccum(const struct bctx *b, const char *const *rows, uint32_t n,
		   float *acc, const uint32_t (*pb)[KB / 2],
		   const float *alpha, const struct pf *nx, __m512i *chk)
{
	const uint32_t npv = nx->n;
	const char *const *pvr = nx->v;
	uint32_t nt = 0, ti = 0;

	for (uint32_t h = 0; h < b->nq;) {
		unsigned int lg = head_group_log2(b->nq - h);

		for (uint32_t c = 0; c < b->nf;
		     c += 1u << vtile_cb_log2(lg, c, b->nf))
			nt++;
		nt += b->half;
		h += 1u << lg;
	}
	for (uint32_t h = 0; h < b->nq;) {
		unsigned int lg = head_group_log2(b->nq - h);
		float *ah = acc + (size_t)h * b->d;

		for (uint32_t c = 0; c < b->nf; ti++) {
			unsigned int cbl = vtile_cb_log2(lg, c, b->nf);
			uint32_t p0 = npv * ti / nt, p1 = npv * (ti + 1) / nt;

			vtile_tab[b->dt][lg][cbl](rows, n, c, ah, b->d,
						  pb + h, alpha + h, pvr + p0,
						  p1 - p0, nx->row_bytes, chk);
			c += 1u << cbl;
		}
		if (b->half) {
			uint32_t p0 = npv * ti / nt, p1 = npv * (ti + 1) / nt;

			vtile_half_tab[b->dt][lg](rows, n, b->nf, ah, b->d,
						  pb + h, alpha + h, pvr + p0,
						  p1 - p0, nx->row_bytes, chk);
			ti++;
		}
		h += 1u << lg;
	}
}

/* Channel of position @p of a chunk accumulator (L lo lanes, L hi lanes). */
static inline uint32_t vperm_chan(uint32_t p, uint32_t L)
{
	uint32_t hi = p >= L, j = hi ? p - L : p;

	return 8 * (j / 4) + 4 * hi + j % 4;
}

/* Accumulator rows from chunk unpack order back to channel order. */
static void unpermute(float *acc, uint32_t nq, uint32_t d)
{
	float tmp[ATTN_MAX_HEAD_DIM];

	for (uint32_t h = 0; h < nq; h++) {
		float *row = acc + (size_t)h * d;

		for (uint32_t cb = 0; cb < d; cb += 32) {
			uint32_t w = d - cb < 32 ? d - cb : 32;

			for (uint32_t p = 0; p < w; p++)
				tmp[cb + vperm_chan(p, w / 2)] = row[cb + p];
		}
		memcpy(row, tmp, d * sizeof(float));
	}
}

/*
 * q rows -> bf16 rows of b->dq codes (times qs, zero padded).  Returns
 * false when a q element is not finite or too large to scale.
 */
static bool q_to_bf16(const float *q, uint32_t nq, uint32_t d, uint32_t dq,
		      float qs, float qmax, uint16_t *qb)
{
	const __m512 vmax = _mm512_set1_ps(qmax), vqs = _mm512_set1_ps(qs);
	__mmask16 bad = 0;

	for (uint32_t h = 0; h < nq; h++)
		for (uint32_t j = 0; j < dq; j += 16) {
			__m512 v = j < d ? _mm512_loadu_ps(q + (size_t)h * d + j)
					 : _mm512_setzero_ps();

			/* not (|v| < qmax): also true for NaN */
			bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), vmax,
						  _CMP_NLT_UQ);
			_mm256_storeu_si256((__m256i *)(qb + (size_t)h * dq + j),
					    (__m256i)_mm512_cvtneps_pbh(
						    _mm512_mul_ps(v, vqs)));
		}
	return !bad;
}

/* bf16 codes (16) -> f32 */
AI __m512 bf16_f32(__m256i b)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(
		_mm512_cvtepu16_epi32(b), 16));
}

void attn_kernel_avx512bf16(const struct attn_args *a)
{
	const uint32_t d = a->head_dim, nq = a->n_q;
	const size_t row_bytes = (size_t)d * 2;
	uint16_t qb[ATTN_MAX_NQ * ATTN_MAX_HEAD_DIM] __attribute__((aligned(64)));
	float s[ATTN_MAX_NQ][KB] __attribute__((aligned(64)));
	uint32_t pb[ATTN_MAX_NQ][KB / 2] __attribute__((aligned(64)));
	float alpha[ATTN_MAX_NQ];
	struct pf ring[PF_DIST + 1];
	unsigned int cur = 0;
	__m512i chk = _mm512_setzero_si512();
	__mmask16 big = 0;
	struct bctx b;
	float qs;

	if (a->dtype != CSD_DTYPE_F16 && a->dtype != CSD_DTYPE_BF16) {
		attn_kernel_avx512(a);
		return;
	}
	b.dt = a->dtype == CSD_DTYPE_F16 ? DT_F16 : DT_BF16;
	b.d = d;
	b.dq = (d + 31) & ~31u;
	b.nf = d / 32;
	b.half = d % 32 != 0;
	b.nq = nq;
	b.scale = a->scale;
	b.qb = qb;
	qs = b.dt == DT_F16 ? F16_SCALE : 1.0f;
	if (!q_to_bf16(a->q, nq, d, b.dq, qs, b.dt == DT_F16 ? Q_MAX : QB_MAX,
		       qb)) {
		attn_kernel_avx512(a);
		return;
	}

	block_pipe_start(a, ring, PF_DIST, row_bytes);

	for (uint32_t t0 = a->tok_begin; t0 < a->tok_end; t0 += KB) {
		const uint32_t n = ring[cur].n, nv = (n + 15) / 16;
		struct pf *nx = &ring[(cur + PF_DIST) % (PF_DIST + 1)];
		const char *const *kr = ring[cur].k, *const *vr = ring[cur].v;

		block_rows(a, t0 + PF_DIST * KB, row_bytes, nx);
		scores(&b, kr, n, s, nx, &chk);

		for (uint32_t h = 0; h < nq; h++) {
			const __m512 ninf = _mm512_set1_ps(-INFINITY);
			const __m512 smax = _mm512_set1_ps(SCORE_MAX);
			const __m512 vqs = _mm512_set1_ps(qs);
			const __m512 vqi = _mm512_set1_ps(1.0f / qs);
			__m512 sv[KB / 16], mx = ninf, sum;
			float bm, mold = a->m[h], mnew;

			for (uint32_t i = 0; i < nv; i++) {
				uint32_t left = n - i * 16;
				__mmask16 valid = left >= 16 ? 0xffff :
					(__mmask16)((1u << left) - 1);

				const __m512 raw = _mm512_load_ps(s[h] + i * 16);

				/* not (|s| <= SCORE_MAX): also NaN (overflow) */
				big |= _mm512_mask_cmp_ps_mask(valid,
					_mm512_abs_ps(raw), smax, _CMP_NLE_UQ);
				sv[i] = _mm512_mask_mov_ps(ninf, valid, raw);
				mx = _mm512_max_ps(mx, sv[i]);
			}
			bm = _mm512_reduce_max_ps(mx);
			mnew = mold > bm ? mold : bm;
			alpha[h] = mold == -INFINITY ? 0.0f : expf(mold - mnew);
			mx = _mm512_set1_ps(mnew);
			sum = _mm512_setzero_ps();
			for (uint32_t i = 0; i < nv; i++) {
				/* p rounded to bf16 (scaled by qs), and the
				 * denominator summed from the rounded p */
				__m256i e = (__m256i)_mm512_cvtneps_pbh(
					_mm512_mul_ps(exp16(_mm512_sub_ps(
						sv[i], mx)), vqs));

				_mm256_store_si256((__m256i *)pb[h] + i, e);
				sum = _mm512_fmadd_ps(bf16_f32(e), vqi, sum);
			}
			a->l[h] = a->l[h] * alpha[h] + _mm512_reduce_add_ps(sum);
			a->m[h] = mnew;
		}

		vaccum(&b, vr, n, a->acc, (const uint32_t (*)[KB / 2])pb,
		       alpha, nx, &chk);
		/* inf/NaN in K or V, or logits too large for bf16 products:
		 * the exact kernel has the semantics */
		if (big || _mm512_test_epi16_mask(chk,
				_mm512_set1_epi16((short)0x8000))) {
			attn_kernel_avx512(a);
			return;
		}
		cur = (cur + 1) % (PF_DIST + 1);
	}
	unpermute(a->acc, nq, d);
}
