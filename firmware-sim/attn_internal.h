/* SPDX-License-Identifier: MIT */
/*
 * attn_internal.h - shared between the attention kernels, the engine and
 * their tests: ISA kernel entry points, element conversion helpers and the
 * block size of the kernels.
 */
#ifndef CSDFW_ATTN_INTERNAL_H
#define CSDFW_ATTN_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "attn.h"
#include "csd/csd_spec.h"

/* Tokens a kernel scores before one online-softmax rescale. */
#define ATTN_BLOCK		16
#define ATTN_MAX_NQ		64
#define ATTN_MAX_HEAD_DIM	256

/* ISA kernels (each compiled with its own -m flags). */
void attn_kernel_avx2(const struct attn_args *a);
void attn_kernel_avx512(const struct attn_args *a);
void attn_kernel_avx512bf16(const struct attn_args *a);

/* Whether the CPU (and OS) support the ISA of @simd; no env lookup. */
int attn_cpu_supports(int simd);

/*
 * SparF hot loops, one set per ISA (attn_sparse.c scalar reference,
 * attn_sparse_avx2.c, attn_sparse_avx512.c).
 */
struct attn_sparse_ops {
	/* s[h * ss + t] = sum_j qd[h * r + j] * cols[j][t] for h < nq,
	 * t < n: approximate scores of @nq q heads from @r channel-indexed
	 * columns of dtype @dt (dim-major axpy; each column block is loaded
	 * once for all heads).  @next (or NULL): the @r columns of the next
	 * chunk, prefetched while the end of this one is worked on. */
	void (*chan_dot)(int dt, uint32_t r, uint32_t nq, const float *qd,
			 const void *const *cols, const void *const *next,
			 uint32_t n, float *s, size_t ss);
	/* s[t] = dot(q, rows[t]) over @d elements of dtype @dt, t < n */
	void (*rows_dot)(int dt, uint32_t d, const float *q,
			 const char *const *rows, uint32_t n, float *s);
	/* max of s[0..n) (n >= 1; NaN ignored, -inf if all NaN) */
	float (*vmax)(const float *s, uint32_t n);
	/* sum_t exp(a * s[t] - b), t < n */
	float (*expsum)(const float *s, uint32_t n, float a, float b);
	/* s[t] = exp(a * s[t] - b), t < n; returns the sum of the new s[] */
	float (*expput)(float *s, uint32_t n, float a, float b);
	/* g[t] = sum_h w[h] * e[h * ss + t] for h < nq (>= 1), t < n */
	void (*wsum)(const float *e, size_t ss, uint32_t nq, const float *w,
		     uint32_t n, float *g);
	/* the t < n whose order key (attn_fkey) has a top byte above @kb
	 * into @hi, equal to @kb into @eq, ascending; returns their counts
	 * in *nhi, *neq.  Room: up to 16 entries past each count may be
	 * written (the caller's buffers hold n + 16). */
	void (*split)(const float *s, uint32_t n, uint32_t kb, uint32_t *hi,
		      uint32_t *nhi, uint32_t *eq, uint32_t *neq);
};

/* The scalar split and wsum (AVX2 uses them too). */
void attn_sparse_split_scalar(const float *s, uint32_t n, uint32_t kb,
			      uint32_t *hi, uint32_t *nhi, uint32_t *eq,
			      uint32_t *neq);
void attn_sparse_wsum_scalar(const float *e, size_t ss, uint32_t nq,
			     const float *w, uint32_t n, float *g);

extern const struct attn_sparse_ops attn_sparse_scalar;
extern const struct attn_sparse_ops attn_sparse_avx2;
extern const struct attn_sparse_ops attn_sparse_avx512;
/* Ops for @simd (must be supported). */
const struct attn_sparse_ops *attn_sparse_ops_get(int simd);

/*
 * Scratch memory of one worker thread, reused by its sparse groups (grown
 * on demand, freed by attn_scratch_free()).
 */
struct attn_scratch {
	void *mem;
	size_t size;
};

/* A block of at least @n bytes (64-byte aligned) or NULL. */
void *attn_scratch_get(struct attn_scratch *sc, size_t n);
void attn_scratch_free(struct attn_scratch *sc);

/*
 * Sparse attention of the q heads of kv head @kvh of sequence @si of @j:
 * writes out (and lse) of those heads and calls j->sp_read.  Without
 * memory for its scratch (about (q heads per kv head + 5) * 4 bytes per
 * token) it falls back to exact dense attention of the heads.
 */
void attn_sparse_group(const struct attn_sparse_ops *ops,
		       attn_kernel_fn kernel, struct attn_job *j, uint32_t si,
		       uint32_t kvh, struct attn_scratch *sc);

/* ---- element conversions (portable, exact) ---------------------------- */

/* Order-preserving key of a float bit pattern (larger float, larger key;
 * -0 < +0; NaN above +inf or below -inf by sign). */
static inline uint32_t attn_fkey_u(uint32_t u)
{
	return u ^ ((u & 0x80000000u) ? 0xffffffffu : 0x80000000u);
}

static inline float attn_u32_as_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint32_t attn_f32_as_u32(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* IEEE binary16 -> binary32 (exact, subnormals, inf and NaN included). */
static inline float attn_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t man = h & 0x3ff;

	if (exp == 0x1f)			/* inf / NaN */
		return attn_u32_as_f32(sign | 0x7f800000 | (man << 13));
	if (exp == 0) {
		if (!man)
			return attn_u32_as_f32(sign);
		/* subnormal: man * 2^-24 is exact in binary32 */
		float f = (float)man * 5.9604644775390625e-8f;

		return sign ? -f : f;
	}
	return attn_u32_as_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* binary32 -> binary16, round to nearest even, overflow to inf. */
static inline uint16_t attn_f32_to_f16(float f)
{
	uint32_t u = attn_f32_as_u32(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t au = u & 0x7fffffff;

	if (au >= 0x7f800000)			/* inf / NaN (keep quiet NaN) */
		return sign | 0x7c00 | (au > 0x7f800000 ? 0x200 : 0);
	if (au >= 0x477ff000)			/* rounds to >= 65536 */
		return sign | 0x7c00;
	if (au < 0x38800000) {			/* half subnormal or zero */
		/* value * 2^24 rounded to nearest even integer */
		float a = attn_u32_as_f32(au) * 16777216.0f;
		uint32_t r = (uint32_t)a;
		float frac = a - (float)r;

		if (frac > 0.5f || (frac == 0.5f && (r & 1)))
			r++;
		return sign | (uint16_t)r;
	}
	/* normal: rebias and round the 13 dropped bits */
	uint32_t v = au - (112u << 23);
	uint32_t rnd = 0xfff + ((v >> 13) & 1);

	return sign | (uint16_t)((v + rnd) >> 13);
}

static inline float attn_bf16_to_f32(uint16_t b)
{
	return attn_u32_as_f32((uint32_t)b << 16);
}

/* binary32 -> bfloat16, round to nearest even, NaN stays NaN. */
static inline uint16_t attn_f32_to_bf16(float f)
{
	uint32_t u = attn_f32_as_u32(f);

	if ((u & 0x7fffffff) > 0x7f800000)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fff + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

/* Element @i of a row of @dtype as float. */
static inline float attn_load_elem(const void *row, int dtype, uint32_t i)
{
	switch (dtype) {
	case CSD_DTYPE_F16:
		return attn_f16_to_f32(((const uint16_t *)row)[i]);
	case CSD_DTYPE_BF16:
		return attn_bf16_to_f32(((const uint16_t *)row)[i]);
	default:
		return ((const float *)row)[i];
	}
}

static inline void attn_store_elem(void *row, int dtype, uint32_t i, float v)
{
	switch (dtype) {
	case CSD_DTYPE_F16:
		((uint16_t *)row)[i] = attn_f32_to_f16(v);
		break;
	case CSD_DTYPE_BF16:
		((uint16_t *)row)[i] = attn_f32_to_bf16(v);
		break;
	default:
		((float *)row)[i] = v;
		break;
	}
}

/*
 * Row pointers of tokens [t0, t0 + n) of a paged stream whose first page
 * holds token @base (page-aligned: pages[0] is page base / tpp).
 */
static inline void attn_rows(const void *const *pages, uint32_t tpp,
			     uint32_t base, uint32_t t0, uint32_t n,
			     size_t row_bytes, const char **rows)
{
	uint32_t pg = t0 / tpp - base / tpp;
	uint32_t off = t0 % tpp;

	/* page by page: one page lookup per page, no branch per row */
	for (uint32_t i = 0; i < n; pg++, off = 0) {
		const char *p = (const char *)pages[pg] + (size_t)off * row_bytes;
		uint32_t m = tpp - off < n - i ? tpp - off : n - i;

		for (uint32_t j = 0; j < m; j++)
			rows[i + j] = p + (size_t)j * row_bytes;
		i += m;
	}
}

#endif /* CSDFW_ATTN_INTERNAL_H */
