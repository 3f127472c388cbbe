// SPDX-License-Identifier: MIT
/*
 * attn_avx2.c - AVX2 + FMA + F16C attention kernel.
 *
 * Same structure as attn_avx512.c with 8-float vectors: per block of 16
 * tokens, scores of every head (K rows converted once, dot accumulators of
 * 8 tokens reduced together with an hadd tree), one online-softmax step per
 * head, then V accumulation in (heads x chunks) register tiles.
 */
#include <immintrin.h>
#include <math.h>

#include "attn_internal.h"

#define AI static inline __attribute__((always_inline))
#define PF_BLOCKS 3

AI __m256 ld8(const char *p, const int dt)
{
	if (dt == CSD_DTYPE_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
	if (dt == CSD_DTYPE_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(
			_mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)p)), 16));
	return _mm256_loadu_ps((const float *)p);
}

/* exp(x) for x <= 88; very negative x give ~0 (<= 1.2e-38). */
AI __m256 exp8(__m256 x)
{
	const __m256 one = _mm256_set1_ps(1.0f);
	__m256 n, r, r2, p;
	__m256i e;

	x = _mm256_max_ps(x, _mm256_set1_ps(-87.33654f));
	x = _mm256_min_ps(x, _mm256_set1_ps(88.37626f));
	n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
	r2 = _mm256_mul_ps(r, r);
	p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, one));
	e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
					       _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Lane j of the result = sum of all lanes of v[j]. */
AI __m256 hsum8(const __m256 *v)
{
	__m256 t0 = _mm256_hadd_ps(v[0], v[1]);
	__m256 t1 = _mm256_hadd_ps(v[2], v[3]);
	__m256 t2 = _mm256_hadd_ps(v[4], v[5]);
	__m256 t3 = _mm256_hadd_ps(v[6], v[7]);
	__m256 u0 = _mm256_hadd_ps(t0, t1);
	__m256 u1 = _mm256_hadd_ps(t2, t3);

	return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
			     _mm256_permute2f128_ps(u0, u1, 0x31));
}

AI float hsum1(__m256 v)
{
	__m128 x = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	x = _mm_add_ps(x, _mm_movehl_ps(x, x));
	x = _mm_add_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

AI float hmax1(__m256 v)
{
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

/* Scores of @n tokens for HB heads (q rows at q, stride d) into s[h][]. */
AI void score_group(const char *const *rows, uint32_t n, const float *q,
		    uint32_t d, const int dt, const int HB, float scale,
		    float (*s)[ATTN_BLOCK])
{
	const size_t cstep = 8 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	const uint32_t nc = d / 8;
	const __m256 vs = _mm256_set1_ps(scale);
	__m256 red[8][8];

	for (uint32_t g = 0; g < ATTN_BLOCK; g += 8) {
		for (uint32_t j = 0; j < 8; j++) {
			const uint32_t t = g + j;
			__m256 acc[8];

			if (t >= n) {
#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					red[h][j] = _mm256_setzero_ps();
				continue;
			}
#pragma GCC unroll 8
			for (int h = 0; h < HB; h++)
				acc[h] = _mm256_setzero_ps();
			const char *kr = rows[t];

			for (uint32_t c = 0; c < nc; c++) {
				__m256 k0 = ld8(kr + c * cstep, dt);

#pragma GCC unroll 8
				for (int h = 0; h < HB; h++)
					acc[h] = _mm256_fmadd_ps(k0,
						_mm256_loadu_ps(q + (size_t)h * d +
								c * 8),
						acc[h]);
			}
#pragma GCC unroll 8
			for (int h = 0; h < HB; h++)
				red[h][j] = acc[h];
		}
#pragma GCC unroll 8
		for (int h = 0; h < HB; h++)
			_mm256_storeu_ps(s[h] + g,
					 _mm256_mul_ps(hsum8(red[h]), vs));
		if (g + 8 >= n)
			break;
	}
}

AI void scores(const char *const *rows, uint32_t n, const float *q,
	       uint32_t d, uint32_t nq, const int dt, float scale,
	       float (*s)[ATTN_BLOCK])
{
	uint32_t h = 0;

	while (h < nq) {
		uint32_t rem = nq - h;
		const float *qh = q + (size_t)h * d;

		if (rem >= 8) {
			score_group(rows, n, qh, d, dt, 8, scale, s + h);
			h += 8;
		} else if (rem >= 4) {
			score_group(rows, n, qh, d, dt, 4, scale, s + h);
			h += 4;
		} else if (rem >= 2) {
			score_group(rows, n, qh, d, dt, 2, scale, s + h);
			h += 2;
		} else {
			score_group(rows, n, qh, d, dt, 1, scale, s + h);
			h += 1;
		}
	}
}

/* acc[h][c0*8 ..] = acc * alpha[h] + sum_t p[h][t] * v_t, HB x CB tile. */
AI void vtile(const char *const *rows, uint32_t n, const int dt, uint32_t c0,
	      const int HB, const int CB, float *acc, uint32_t d,
	      const float (*p)[ATTN_BLOCK], const float *alpha)
{
	const size_t cstep = 8 * (dt == CSD_DTYPE_F32 ? 4 : 2);
	__m256 r[4][4];

#pragma GCC unroll 4
	for (int h = 0; h < HB; h++) {
		const __m256 al = _mm256_set1_ps(alpha[h]);

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			r[h][c] = _mm256_mul_ps(al, _mm256_loadu_ps(
				acc + (size_t)h * d + (c0 + c) * 8));
	}
	for (uint32_t t = 0; t < n; t++) {
		const char *vr = rows[t] + c0 * cstep;
		__m256 v[4];

#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			v[c] = ld8(vr + c * cstep, dt);
#pragma GCC unroll 4
		for (int h = 0; h < HB; h++) {
			const __m256 pb = _mm256_broadcast_ss(&p[h][t]);

#pragma GCC unroll 4
			for (int c = 0; c < CB; c++)
				r[h][c] = _mm256_fmadd_ps(pb, v[c], r[h][c]);
		}
	}
#pragma GCC unroll 4
	for (int h = 0; h < HB; h++)
#pragma GCC unroll 4
		for (int c = 0; c < CB; c++)
			_mm256_storeu_ps(acc + (size_t)h * d + (c0 + c) * 8,
					 r[h][c]);
}

AI void vgroup(const char *const *rows, uint32_t n, const int dt,
	       const int HB, float *acc, uint32_t d,
	       const float (*p)[ATTN_BLOCK], const float *alpha)
{
	const uint32_t nc = d / 8;
	uint32_t c = 0;

	if (HB <= 2) {
		for (; c + 4 <= nc; c += 4)
			vtile(rows, n, dt, c, HB, 4, acc, d, p, alpha);
	}
	for (; c + 2 <= nc; c += 2)
		vtile(rows, n, dt, c, HB, 2, acc, d, p, alpha);
	if (c < nc)
		vtile(rows, n, dt, c, HB, 1, acc, d, p, alpha);
}

AI void vaccum(const char *const *rows, uint32_t n, const int dt,
	       uint32_t nq, float *acc, uint32_t d,
	       const float (*p)[ATTN_BLOCK], const float *alpha)
{
	uint32_t h = 0;

	while (h < nq) {
		uint32_t rem = nq - h;
		float *ah = acc + (size_t)h * d;

		if (rem >= 4) {
			vgroup(rows, n, dt, 4, ah, d, p + h, alpha + h);
			h += 4;
		} else if (rem >= 2) {
			vgroup(rows, n, dt, 2, ah, d, p + h, alpha + h);
			h += 2;
		} else {
			vgroup(rows, n, dt, 1, ah, d, p + h, alpha + h);
			h += 1;
		}
	}
}

static void prefetch_rows(const struct attn_args *a, uint32_t t0,
			  size_t row_bytes)
{
	const char *kr[ATTN_BLOCK], *vr[ATTN_BLOCK];
	uint32_t n;

	if (t0 >= a->tok_end)
		return;
	n = a->tok_end - t0;
	if (n > ATTN_BLOCK)
		n = ATTN_BLOCK;
	attn_rows(a->kpages, a->tpp, a->tok_begin, t0, n, row_bytes, kr);
	attn_rows(a->vpages, a->tpp, a->tok_begin, t0, n, row_bytes, vr);
	for (uint32_t t = 0; t < n; t++)
		for (size_t o = 0; o < row_bytes; o += 64) {
			_mm_prefetch(kr[t] + o, _MM_HINT_T1);
			_mm_prefetch(vr[t] + o, _MM_HINT_T1);
		}
}

AI void kernel(const struct attn_args *a, const int dt)
{
	const uint32_t d = a->head_dim, nq = a->n_q;
	const size_t row_bytes = (size_t)d * (dt == CSD_DTYPE_F32 ? 4 : 2);
	float s[ATTN_MAX_NQ][ATTN_BLOCK] __attribute__((aligned(32)));
	float alpha[ATTN_MAX_NQ];
	const char *kr[ATTN_BLOCK], *vr[ATTN_BLOCK];

	for (uint32_t h = 0; h < nq; h++) {
		a->m[h] = -INFINITY;
		a->l[h] = 0.0f;
	}
	memset(a->acc, 0, (size_t)nq * d * sizeof(float));
	for (uint32_t i = 1; i <= PF_BLOCKS; i++)
		prefetch_rows(a, a->tok_begin + i * ATTN_BLOCK, row_bytes);

	for (uint32_t t0 = a->tok_begin; t0 < a->tok_end; t0 += ATTN_BLOCK) {
		uint32_t n = a->tok_end - t0;

		if (n > ATTN_BLOCK)
			n = ATTN_BLOCK;
		prefetch_rows(a, t0 + (PF_BLOCKS + 1) * ATTN_BLOCK, row_bytes);
		attn_rows(a->kpages, a->tpp, a->tok_begin, t0, n, row_bytes,
			  kr);
		attn_rows(a->vpages, a->tpp, a->tok_begin, t0, n, row_bytes,
			  vr);

		scores(kr, n, a->q, d, nq, dt, a->scale, s);

		for (uint32_t h = 0; h < nq; h++) {
			float *sh = s[h];
			float mold = a->m[h], mnew, bm;
			__m256 lo, hi, mv;

			for (uint32_t t = n; t < ATTN_BLOCK; t++)
				sh[t] = -INFINITY;
			lo = _mm256_load_ps(sh);
			hi = _mm256_load_ps(sh + 8);
			bm = hmax1(_mm256_max_ps(lo, hi));
			mnew = fmaxf(mold, bm);
			alpha[h] = mold == -INFINITY ? 0.0f : expf(mold - mnew);
			mv = _mm256_set1_ps(mnew);
			lo = exp8(_mm256_sub_ps(lo, mv));
			hi = exp8(_mm256_sub_ps(hi, mv));
			_mm256_store_ps(sh, lo);
			_mm256_store_ps(sh + 8, hi);
			for (uint32_t t = n; t < ATTN_BLOCK; t++)
				sh[t] = 0.0f;
			if (n < ATTN_BLOCK) {
				lo = _mm256_load_ps(sh);
				hi = _mm256_load_ps(sh + 8);
			}
			a->l[h] = a->l[h] * alpha[h] + hsum1(_mm256_add_ps(lo, hi));
			a->m[h] = mnew;
		}

		vaccum(vr, n, dt, nq, a->acc, d, (const float (*)[ATTN_BLOCK])s,
		       alpha);
	}
}

void attn_kernel_avx2(const struct attn_args *a)
{
	switch (a->dtype) {
	case CSD_DTYPE_F16:
		kernel(a, CSD_DTYPE_F16);
		break;
	case CSD_DTYPE_BF16:
		kernel(a, CSD_DTYPE_BF16);
		break;
	default:
		kernel(a, CSD_DTYPE_F32);
		break;
	}
}
