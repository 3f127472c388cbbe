// SPDX-License-Identifier: MIT
/*
 * test_attn.c - attention kernels and engine.
 *
 * The scalar kernel is checked against a double precision naive softmax
 * attention on the same (quantized) KV data; every SIMD kernel the CPU runs
 * is checked against both; the engine is checked for batches, GQA, paging,
 * windows, concurrency and its done() contract.
 */
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_internal.h"
#include "csd/csd_spec.h"
#include "cu_main.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

/* uniform in [-1, 1) */
static float rndf(void)
{
	return (float)((double)rnd32() / 2147483648.0 - 1.0);
}

/* A paged KV store like the drive's: pages of tpp rows, shuffled order. */
struct kvset {
	int dtype;
	uint32_t d, kvh, tpp, nseq, ntok, pps;
	size_t row_bytes, page_bytes;
	char *buf;
	uint32_t *slot;		/* [nseq][kvh][2][pps] -> page slot */
	atomic_uint bad_lookups;
};

static const void *kvs_page(void *cookie, uint32_t seq, uint32_t kvh,
			    int which, uint32_t idx)
{
	struct kvset *s = cookie;

	if (seq >= s->nseq || kvh >= s->kvh || (which != 0 && which != 1) ||
	    idx >= s->pps) {
		atomic_fetch_add(&s->bad_lookups, 1);
		return NULL;
	}
	return s->buf + (size_t)s->slot[(((size_t)seq * s->kvh + kvh) * 2 +
					 which) * s->pps + idx] * s->page_bytes;
}

static const void *kvs_row(struct kvset *s, uint32_t seq, uint32_t h,
			   int which, uint32_t t)
{
	return (const char *)kvs_page(s, seq, h, which, t / s->tpp) +
	       (size_t)(t % s->tpp) * s->row_bytes;
}

/* amp scales the K values (bigger logits), V is uniform [-1, 1). */
static struct kvset *kvs_new(int dtype, uint32_t d, uint32_t kvh,
			     uint32_t tpp, uint32_t nseq, uint32_t ntok,
			     float amp)
{
	struct kvset *s = calloc(1, sizeof(*s));
	size_t npages;

	CU_ASSERT_FATAL(s != NULL);
	s->dtype = dtype;
	s->d = d;
	s->kvh = kvh;
	s->tpp = tpp;
	s->nseq = nseq;
	s->ntok = ntok;
	s->pps = (ntok + tpp - 1) / tpp;
	s->row_bytes = (size_t)d * csd_dtype_size(dtype);
	s->page_bytes = s->row_bytes * tpp;
	npages = (size_t)nseq * kvh * 2 * s->pps;
	s->buf = malloc(npages * s->page_bytes);
	s->slot = malloc(npages * sizeof(*s->slot));
	CU_ASSERT_FATAL(s->buf != NULL && s->slot != NULL);
	for (size_t i = 0; i < npages; i++)
		s->slot[i] = (uint32_t)i;
	for (size_t i = npages; i > 1; i--) {
		size_t j = rnd32() % i;
		uint32_t x = s->slot[i - 1];

		s->slot[i - 1] = s->slot[j];
		s->slot[j] = x;
	}
	for (size_t i = 0; i < npages * s->page_bytes / csd_dtype_size(dtype);
	     i++)
		attn_store_elem(s->buf, dtype, (uint32_t)i, rndf());
	/* rescale K rows */
	if (amp != 1.0f)
		for (uint32_t q = 0; q < nseq; q++)
			for (uint32_t h = 0; h < kvh; h++)
				for (uint32_t t = 0; t < ntok; t++) {
					void *r = (void *)kvs_row(s, q, h, 0, t);

					for (uint32_t i = 0; i < d; i++)
						attn_store_elem(r, dtype, i,
							amp * attn_load_elem(r,
								dtype, i));
				}
	return s;
}

static void kvs_free(struct kvset *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s->slot);
	free(s);
}

/* Naive double precision attention of one GQA group. */
static void ref_attn(struct kvset *s, uint32_t seq, uint32_t h, uint32_t nq,
		     const float *q, float scale, uint32_t lo, uint32_t hi,
		     double *out, double *lse)
{
	const uint32_t d = s->d, n = hi - lo;
	double *sc = malloc(n * sizeof(double));

	CU_ASSERT_FATAL(sc != NULL);
	for (uint32_t j = 0; j < nq; j++) {
		const float *qj = q + (size_t)j * d;
		double m = -INFINITY, l = 0;

		for (uint32_t t = 0; t < n; t++) {
			const void *k = kvs_row(s, seq, h, 0, lo + t);
			double dot = 0;

			for (uint32_t i = 0; i < d; i++)
				dot += (double)qj[i] *
				       attn_load_elem(k, s->dtype, i);
			sc[t] = dot * scale;
			if (sc[t] > m)
				m = sc[t];
		}
		for (uint32_t i = 0; i < d; i++)
			out[(size_t)j * d + i] = 0;
		for (uint32_t t = 0; t < n; t++) {
			const void *v = kvs_row(s, seq, h, 1, lo + t);
			double p = exp(sc[t] - m);

			l += p;
			for (uint32_t i = 0; i < d; i++)
				out[(size_t)j * d + i] +=
					p * attn_load_elem(v, s->dtype, i);
		}
		for (uint32_t i = 0; i < d; i++)
			out[(size_t)j * d + i] /= l;
		lse[j] = m + log(l);
	}
	free(sc);
}

struct err {
	double se, sr, maxabs, maxref;
	unsigned int nonfinite;
};

static void err_add(struct err *e, double x, double ref)
{
	double dd = x - ref;

	if (!isfinite(x))
		e->nonfinite++;
	e->se += dd * dd;
	e->sr += ref * ref;
	if (fabs(dd) > e->maxabs)
		e->maxabs = fabs(dd);
	if (fabs(ref) > e->maxref)
		e->maxref = fabs(ref);
}

static double err_nmse(const struct err *e)
{
	return e->sr > 0 ? e->se / e->sr : e->se;
}

/* Run kernel @fn directly over [lo, hi) of (seq, h); out/lse normalized. */
static void run_kernel(attn_kernel_fn fn, struct kvset *s, uint32_t seq,
		       uint32_t h, uint32_t nq, const float *q, float scale,
		       uint32_t lo, uint32_t hi, float *out, float *lse)
{
	uint32_t p0 = lo / s->tpp, np = (hi - 1) / s->tpp - p0 + 1;
	const void **kp = malloc(np * sizeof(void *));
	const void **vp = malloc(np * sizeof(void *));
	float m[ATTN_MAX_NQ], l[ATTN_MAX_NQ];

	CU_ASSERT_FATAL(kp && vp);
	for (uint32_t i = 0; i < np; i++) {
		kp[i] = kvs_page(s, seq, h, 0, p0 + i);
		vp[i] = kvs_page(s, seq, h, 1, p0 + i);
	}
	struct attn_args a = {
		.dtype = s->dtype, .head_dim = s->d, .n_q = nq, .scale = scale,
		.q = q, .kpages = kp, .vpages = vp, .tpp = s->tpp,
		.tok_begin = lo, .tok_end = hi, .m = m, .l = l, .acc = out,
	};
	fn(&a);
	for (uint32_t j = 0; j < nq; j++) {
		for (uint32_t i = 0; i < s->d; i++)
			out[(size_t)j * s->d + i] /= l[j];
		lse[j] = m[j] + logf(l[j]);
	}
	free(kp);
	free(vp);
}

static float *rnd_q(size_t n, float amp)
{
	float *q = malloc(n * sizeof(float));

	CU_ASSERT_FATAL(q != NULL);
	for (size_t i = 0; i < n; i++)
		q[i] = amp * rndf();
	return q;
}

/* ---- conversions -------------------------------------------------------- */

__attribute__((target("f16c")))
static uint16_t hw_f32_to_f16(float f)
{
	return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

__attribute__((target("f16c")))
static float hw_f16_to_f32(uint16_t h)
{
	return _cvtsh_ss(h);
}

static void test_convert(void)
{
	int hw = attn_simd_supported(CSD_SIMD_AVX2);
	unsigned int bad = 0;

	for (uint32_t h = 0; h < 65536; h++) {
		float f = attn_f16_to_f32((uint16_t)h);

		if (isnan(f))
			continue;
		if (attn_f32_to_f16(f) != h)
			bad++;
		if (hw && attn_f32_as_u32(hw_f16_to_f32((uint16_t)h)) !=
		    attn_f32_as_u32(f))
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* round to nearest even */
	CU_ASSERT_EQUAL(attn_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	CU_ASSERT_EQUAL(attn_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
	CU_ASSERT_EQUAL(attn_f32_to_f16(65520.0f), 0x7c00);
	CU_ASSERT_EQUAL(attn_f32_to_f16(65519.0f), 0x7bff);
	CU_ASSERT_EQUAL(attn_f32_to_f16(0x1p-25f), 0);
	CU_ASSERT_EQUAL(attn_f32_to_f16(0x1.8p-25f), 1);
	CU_ASSERT_EQUAL(attn_f32_to_f16(-0.0f), 0x8000);
	CU_ASSERT_EQUAL(attn_f32_to_f16(INFINITY), 0x7c00);
	CU_ASSERT(isnan(attn_f16_to_f32(attn_f32_to_f16(NAN))));
	if (hw) {
		bad = 0;
		for (int i = 0; i < 1000000; i++) {
			float f = attn_u32_as_f32(rnd32());

			if (isnan(f))
				continue;
			if (attn_f32_to_f16(f) != hw_f32_to_f16(f))
				bad++;
		}
		CU_ASSERT_EQUAL(bad, 0);
	}
	/* bf16 */
	CU_ASSERT_EQUAL(attn_f32_to_bf16(1.0f), 0x3f80);
	CU_ASSERT_EQUAL(attn_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	CU_ASSERT_EQUAL(attn_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	CU_ASSERT_EQUAL(attn_bf16_to_f32(0x3f82), 1.0f + 0x1p-6f);
	CU_ASSERT(isnan(attn_bf16_to_f32(attn_f32_to_bf16(NAN))));
}

/* ---- kernels ------------------------------------------------------------ */

static const int dtypes[] = { CSD_DTYPE_F32, CSD_DTYPE_F16, CSD_DTYPE_BF16 };
static const uint32_t dims[] = { 64, 80, 128, 256 };
static const uint32_t ntoks[] = { 1, 15, 16, 17, 4097 };
static const uint32_t nqs[] = { 1, 4, 8 };

/*
 * For every shape: kernel @simd vs double reference (and vs scalar for SIMD):
 * NMSE of the outputs at most @nmse, lse off by at most @dlse.
 */
static void check_kernel_dims(int simd, double nmse, double dlse,
			      const uint32_t *dv, size_t ndv)
{
	attn_kernel_fn fn = attn_kernel_get(simd);

	CU_ASSERT_FATAL(fn != NULL);
	for (size_t di = 0; di < 3; di++) {
		for (size_t hi = 0; hi < ndv; hi++) {
			const uint32_t d = dv[hi];
			struct kvset *s = kvs_new(dtypes[di], d, 1,
				(uint32_t)(4096 / (d * csd_dtype_size(dtypes[di]))),
				1, 4100, 1.0f);
			double worst_ref = 0, worst_scalar = 0, worst_lse = 0;

			for (size_t ti = 0; ti < 5; ti++) {
				for (size_t qi = 0; qi < 3; qi++) {
					const uint32_t nq = nqs[qi], n = ntoks[ti];
					/* start at 3: not page aligned */
					const uint32_t lo = n > 100 ? 0 : 3;
					float *q = rnd_q((size_t)nq * d, 2.0f);
					float *o = malloc((size_t)nq * d * 4);
					float *os = malloc((size_t)nq * d * 4);
					double *r = malloc((size_t)nq * d * 8);
					float lse[ATTN_MAX_NQ], lses[ATTN_MAX_NQ];
					double rl[ATTN_MAX_NQ];
					struct err e = {0}, es = {0}, el = {0};
					float sc = 1.0f / sqrtf((float)d);

					CU_ASSERT_FATAL(o && os && r);
					run_kernel(fn, s, 0, 0, nq, q, sc, lo,
						   lo + n, o, lse);
					run_kernel(attn_kernel_scalar, s, 0, 0, nq,
						   q, sc, lo, lo + n, os, lses);
					ref_attn(s, 0, 0, nq, q, sc, lo, lo + n,
						 r, rl);
					for (size_t i = 0; i < (size_t)nq * d; i++) {
						err_add(&e, o[i], r[i]);
						err_add(&es, o[i], os[i]);
					}
					for (uint32_t j = 0; j < nq; j++)
						err_add(&el, lse[j], rl[j]);
					CU_ASSERT_EQUAL(e.nonfinite + el.nonfinite,
							0);
					if (err_nmse(&e) > worst_ref)
						worst_ref = err_nmse(&e);
					if (err_nmse(&es) > worst_scalar)
						worst_scalar = err_nmse(&es);
					if (el.maxabs > worst_lse)
						worst_lse = el.maxabs;
					free(q);
					free(o);
					free(os);
					free(r);
				}
			}
			if (getenv("CU_VERBOSE"))
				printf("\n  %s dt%d d%u: nmse ref %.3g scalar %.3g lse %.3g",
				       attn_simd_name(simd), dtypes[di], d,
				       worst_ref, worst_scalar, worst_lse);
			CU_ASSERT(worst_ref <= nmse);
			CU_ASSERT(worst_scalar <= nmse);
			CU_ASSERT(worst_lse <= dlse);
			kvs_free(s);
		}
	}
}

static void check_kernel_tol(int simd, double nmse, double dlse)
{
	check_kernel_dims(simd, nmse, dlse, dims, 4);
}

/* f32 arithmetic on the same quantized data: only f32 rounding differs */
static void check_kernel(int simd)
{
	check_kernel_tol(simd, 1e-10, 1e-4);
}

/*
 * avx512bf16 on these fixed-seed shapes: worst NMSE ~1.4e-5.  The project's
 * budget for reduced-precision kernels is 5e-4; the tests hold it to 5e-5
 * so that a lost rounding step or similar shows up.
 */
#define BF16_NMSE 5e-5

/*
 * NMSE budget of @simd against the reference on the same quantized data:
 * f32 rounding only, or (avx512bf16) bf16 products.
 */
static double simd_nmse(int simd)
{
	return simd == CSD_SIMD_AVX512BF16 ? BF16_NMSE : 1e-10;
}

static double simd_dlse(int simd)
{
	return simd == CSD_SIMD_AVX512BF16 ? 1e-2 : 1e-4;
}

static void test_scalar_vs_double(void)
{
	/* scalar: tight max relative error against double */
	for (size_t di = 0; di < 3; di++) {
		struct kvset *s = kvs_new(dtypes[di], 128, 2, 16, 1, 2000, 1.0f);
		const uint32_t nq = 4, d = 128;
		float *q = rnd_q((size_t)nq * d, 1.0f);
		float o[4 * 128], lse[4];
		double r[4 * 128], rl[4];
		struct err e = {0};

		run_kernel(attn_kernel_scalar, s, 0, 1, nq, q, 0.125f, 5, 1999,
			   o, lse);
		ref_attn(s, 0, 1, nq, q, 0.125f, 5, 1999, r, rl);
		for (size_t i = 0; i < nq * d; i++)
			err_add(&e, o[i], r[i]);
		CU_ASSERT(e.maxabs <= 1e-5 * e.maxref);
		for (uint32_t j = 0; j < nq; j++)
			CU_ASSERT(fabs(lse[j] - rl[j]) <= 1e-5 * fabs(rl[j]) + 1e-5);
		free(q);
		kvs_free(s);
	}
	check_kernel(CSD_SIMD_SCALAR);
}

static void test_avx2(void)
{
	if (!attn_simd_supported(CSD_SIMD_AVX2)) {
		cu_skip("CPU lacks AVX2/FMA/F16C");
		return;
	}
	check_kernel(CSD_SIMD_AVX2);
}

static void test_avx512(void)
{
	if (!attn_simd_supported(CSD_SIMD_AVX512)) {
		cu_skip("CPU lacks AVX-512 F/BW/VL/DQ");
		return;
	}
	check_kernel(CSD_SIMD_AVX512);
}

/*
 * bf16 products (K, V and q rounded to 8-bit significands, f32 sums): the
 * project's budget for reduced-precision kernels, NMSE <= 5e-4.
 */
static void test_avx512bf16(void)
{
	if (!attn_simd_supported(CSD_SIMD_AVX512BF16)) {
		cu_skip("CPU lacks AVX512_BF16");
		return;
	}
	check_kernel_tol(CSD_SIMD_AVX512BF16, BF16_NMSE, 1e-2);
	/* every chunk shape: 16-element tails, no full 32-element chunk */
	static const uint32_t odd[] = { 16, 48, 112, 144, 240 };

	check_kernel_dims(CSD_SIMD_AVX512BF16, BF16_NMSE, 1e-2, odd, 5);
}

/* Raw kernel outputs (unnormalized acc, m, l) of @fn over [lo, hi). */
struct kout {
	float acc[8 * 128], m[8], l[8];
};

static void run_raw(attn_kernel_fn fn, struct kvset *s, uint32_t nq,
		    const float *q, float scale, uint32_t lo, uint32_t hi,
		    struct kout *o)
{
	uint32_t np = (hi - 1) / s->tpp + 1;
	const void **kp = malloc(np * sizeof(void *));
	const void **vp = malloc(np * sizeof(void *));

	CU_ASSERT_FATAL(kp && vp && nq <= 8 && s->d <= 128);
	for (uint32_t i = 0; i < np; i++) {
		kp[i] = kvs_page(s, 0, 0, 0, i);
		vp[i] = kvs_page(s, 0, 0, 1, i);
	}
	struct attn_args a = {
		.dtype = s->dtype, .head_dim = s->d, .n_q = nq, .scale = scale,
		.q = q, .kpages = kp, .vpages = vp, .tpp = s->tpp,
		.tok_begin = lo, .tok_end = hi, .m = o->m, .l = o->l,
		.acc = o->acc,
	};
	/* NaN everywhere: a kernel must write every output */
	memset(o, 0xff, sizeof(*o));
	fn(&a);
	free(kp);
	free(vp);
}

static bool kout_same(const struct kout *x, const struct kout *y)
{
	return !memcmp(x, y, sizeof(*x));
}

/*
 * avx512bf16 hands a call to the f32 AVX-512 kernel when bf16 products
 * cannot give the reference's semantics: inf/NaN anywhere in K or V, q
 * too large for the fp16 scaling, logits above its bound.  Those calls
 * give exactly the AVX-512 result; ordinary data take the bf16 path (not
 * bit-identical to AVX-512, but within the budget), including fp16 at
 * the edges of its range.
 */
static void test_bf16_guards(void)
{
	attn_kernel_fn bf, f32;

	if (!attn_simd_supported(CSD_SIMD_AVX512BF16)) {
		cu_skip("CPU lacks AVX512_BF16");
		return;
	}
	bf = attn_kernel_get(CSD_SIMD_AVX512BF16);
	f32 = attn_kernel_get(CSD_SIMD_AVX512);
	for (int di = 1; di < 3; di++) {
		const int dt = dtypes[di];
		const uint32_t d = 80, nq = 4, n = 150;
		struct kvset *s = kvs_new(dt, d, 1, 16, 1, n, 1.0f);
		float *q = rnd_q((size_t)nq * d, 1.0f);
		const float sc = 1.0f / sqrtf((float)d);
		struct kout *o1 = malloc(sizeof(*o1));
		struct kout *o2 = malloc(sizeof(*o2));
		static const float bad[] = { NAN, INFINITY, -INFINITY };

		CU_ASSERT_FATAL(o1 && o2);
		/* ordinary data: the bf16 path runs */
		run_raw(bf, s, nq, q, sc, 0, n, o1);
		run_raw(f32, s, nq, q, sc, 0, n, o2);
		CU_ASSERT(!kout_same(o1, o2));

		/* a non-finite element in K, then in V, anywhere */
		for (int w = 0; w < 2; w++)
			for (size_t b = 0; b < 3; b++) {
				uint32_t t = (uint32_t)(rnd32() % n);
				uint32_t i = (uint32_t)(rnd32() % d);
				void *r = (void *)kvs_row(s, 0, 0, w, t);
				float old = attn_load_elem(r, dt, i);

				attn_store_elem(r, dt, i, bad[b]);
				run_raw(bf, s, nq, q, sc, 0, n, o1);
				run_raw(f32, s, nq, q, sc, 0, n, o2);
				CU_ASSERT(kout_same(o1, o2));
				attn_store_elem(r, dt, i, old);
			}

		/* logits beyond the bound: q x 200 -> |s| ~ 100s */
		for (uint32_t i = 0; i < nq * d; i++)
			q[i] *= 200.0f;
		run_raw(bf, s, nq, q, sc, 3, n, o1);
		run_raw(f32, s, nq, q, sc, 3, n, o2);
		CU_ASSERT(kout_same(o1, o2));
		for (uint32_t i = 0; i < nq * d; i++)
			q[i] /= 200.0f;

		/* only large negative logits: K = 0.5, q = -40 -> s ~ -160 */
		{
			struct kvset *sn = kvs_new(dt, d, 1, 16, 1, n, 1.0f);
			float *qn = rnd_q((size_t)nq * d, 1.0f);

			for (uint32_t t = 0; t < n; t++)
				for (uint32_t i = 0; i < d; i++)
					attn_store_elem((void *)kvs_row(sn, 0, 0,
							0, t), dt, i, 0.5f);
			for (uint32_t i = 0; i < nq * d; i++)
				qn[i] = -40.0f;
			run_raw(bf, sn, nq, qn, sc, 0, n, o1);
			run_raw(f32, sn, nq, qn, sc, 0, n, o2);
			CU_ASSERT(kout_same(o1, o2));
			free(qn);
			kvs_free(sn);
		}

		if (dt == CSD_DTYPE_BF16) {
			/* q that rounds to bf16 inf, K with a zero column:
			 * inf * 0 must not turn into NaN scores */
			float keep = q[0];

			for (uint32_t t = 0; t < n; t++)
				attn_store_elem((void *)kvs_row(s, 0, 0, 0, t), dt,
						0, 0.0f);
			q[0] = 3.4e38f;
			run_raw(bf, s, 1, q, sc, 0, n, o1);
			run_raw(f32, s, 1, q, sc, 0, n, o2);
			CU_ASSERT(kout_same(o1, o2));
			q[0] = keep;
		}

		if (dt == CSD_DTYPE_F16) {
			/* |q| >= 2^15 cannot carry the 2^112 scale */
			float keep = q[7];

			q[7] = 40000.0f;
			memset(q + d, 0, (nq - 1) * d * sizeof(float));
			run_raw(bf, s, 1, q, 1e-6f, 0, n, o1);
			run_raw(f32, s, 1, q, 1e-6f, 0, n, o2);
			CU_ASSERT(kout_same(o1, o2));
			q[7] = keep;

			/* fp16 extremes stay on the bf16 path: the largest
			 * finite value and subnormals (read as zero) */
			struct err e = {0};
			float o[4 * 80], lse[4];
			double r[4 * 80], rl[4];
			void *r0 = (void *)kvs_row(s, 0, 0, 1, 5);
			void *r1 = (void *)kvs_row(s, 0, 0, 0, 6);

			for (uint32_t i = 0; i < d; i++) {
				((uint16_t *)r0)[i] = (uint16_t)(0x7bff |
					(i & 1 ? 0x8000 : 0));	/* +-65504 */
				((uint16_t *)r1)[i] = (uint16_t)(1 + i);
			}
			run_raw(bf, s, nq, q, sc, 0, n, o1);
			run_raw(f32, s, nq, q, sc, 0, n, o2);
			CU_ASSERT(!kout_same(o1, o2));
			run_kernel(bf, s, 0, 0, nq, q, sc, 0, n, o, lse);
			ref_attn(s, 0, 0, nq, q, sc, 0, n, r, rl);
			for (uint32_t i = 0; i < nq * d; i++)
				err_add(&e, o[i], r[i]);
			CU_ASSERT_EQUAL(e.nonfinite, 0);
			CU_ASSERT(err_nmse(&e) <= 5e-4);
		}
		free(o1);
		free(o2);
		free(q);
		kvs_free(s);
	}
}

/*
 * The fp16 -> bf16 conversion of avx512bf16 over every finite fp16 code:
 * one token, q = 0, so acc = the converted V row.  Expected, from the
 * documented rule rather than the shift trick: round to 8 significant
 * bits, halfway away from zero; below 2^-14 (fp16 subnormals) zero, except
 * what rounds up to 2^-14 on the subnormal grid (codes 3fch-3ffh).
 * Non-finite codes make the call run on the f32 kernel: exact values.
 */
static float bf16_expect(uint16_t c)
{
	float v = attn_f16_to_f32(c), a = fabsf(v), r, f;
	int e = 0;

	if (a < 0x1p-14f) {
		r = (c & 0x7fff) >= 0x3fc ? 0x1p-14f : 0.0f;
	} else {
		f = frexpf(a, &e);	/* a = f * 2^e, f in [0.5, 1) */
		r = ldexpf(floorf(f * 256.0f + 0.5f) / 256.0f, e);
	}
	return v < 0 || (c & 0x8000) ? -r : r;
}

static void test_bf16_convert(void)
{
	const uint32_t d = 128;
	attn_kernel_fn bf;
	unsigned int bad = 0, nonfin = 0;

	if (!attn_simd_supported(CSD_SIMD_AVX512BF16)) {
		cu_skip("CPU lacks AVX512_BF16");
		return;
	}
	bf = attn_kernel_get(CSD_SIMD_AVX512BF16);
	for (uint32_t c0 = 0; c0 < 65536; c0 += d) {
		uint16_t krow[128] = { 0 }, vrow[128];
		const void *kp[1] = { krow }, *vp[1] = { vrow };
		float q[128] = { 0 }, acc[128], m, l;
		bool fin = true;

		for (uint32_t i = 0; i < d; i++) {
			vrow[i] = (uint16_t)(c0 + i);
			fin &= (vrow[i] & 0x7c00) != 0x7c00;
		}
		struct attn_args a = {
			.dtype = CSD_DTYPE_F16, .head_dim = d, .n_q = 1,
			.scale = 1.0f, .q = q, .kpages = kp, .vpages = vp,
			.tpp = 1, .tok_begin = 0, .tok_end = 1, .m = &m, .l = &l,
			.acc = acc,
		};
		bf(&a);
		CU_ASSERT(m == 0.0f && l == 1.0f);
		for (uint32_t i = 0; i < d; i++) {
			float want = fin ? bf16_expect(vrow[i]) :
					   attn_f16_to_f32(vrow[i]);

			if (isnan(want) ? !isnan(acc[i]) :
			    memcmp(&want, &acc[i], sizeof(want)) &&
			    !(want == 0.0f && acc[i] == 0.0f))
			{
				bad++;
				if (getenv("CU_VERBOSE") && bad < 10)
					printf("\n  code %04x: want %a got %a",
					       vrow[i], want, acc[i]);
			}
		}
		nonfin += !fin;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(nonfin, 2 * 1024 / d);	/* rows with exponent 31 */
}

/*
 * The softmax denominator is summed from the same bf16-rounded weights as
 * the numerator: with all V elements 1 every output is 1 to f32 rounding.
 */
static void test_bf16_weights(void)
{
	attn_kernel_fn bf;

	if (!attn_simd_supported(CSD_SIMD_AVX512BF16)) {
		cu_skip("CPU lacks AVX512_BF16");
		return;
	}
	bf = attn_kernel_get(CSD_SIMD_AVX512BF16);
	for (int di = 1; di < 3; di++) {
		const uint32_t d = 64, nq = 8, n = 301;
		struct kvset *s = kvs_new(dtypes[di], d, 1, 16, 1, n, 1.0f);
		float *q = rnd_q((size_t)nq * d, 3.0f);
		float o[8 * 64], lse[8], worst = 0;

		for (uint32_t t = 0; t < n; t++)
			for (uint32_t i = 0; i < d; i++)
				attn_store_elem((void *)kvs_row(s, 0, 0, 1, t),
						dtypes[di], i, 1.0f);
		run_kernel(bf, s, 0, 0, nq, q, 0.125f, 0, n, o, lse);
		for (uint32_t i = 0; i < nq * d; i++)
			worst = fmaxf(worst, fabsf(o[i] - 1.0f));
		CU_ASSERT(worst < 1e-6f);
		free(q);
		kvs_free(s);
	}
}

/* Every kernel on extreme inputs: large logits, equal scores, odd tpp. */
static void test_extremes(void)
{
	for (int simd = 0; simd < CSD_SIMD_COUNT; simd++) {
		attn_kernel_fn fn;

		if (!attn_simd_supported(simd))
			continue;
		fn = attn_kernel_get(simd);
		for (size_t di = 0; di < 3; di++) {
			const uint32_t d = 64, nq = 8;
			/* K values up to +-100, q up to +-100: logits ~1e4+ */
			struct kvset *s = kvs_new(dtypes[di], d, 1, 25, 1, 300,
						  100.0f);
			float *q = rnd_q((size_t)nq * d, 100.0f);
			float o[8 * 64], lse[8];
			double r[8 * 64], rl[8];
			struct err e = {0};

			run_kernel(fn, s, 0, 0, nq, q, 1.0f, 7, 300, o, lse);
			ref_attn(s, 0, 0, nq, q, 1.0f, 7, 300, r, rl);
			for (size_t i = 0; i < nq * d; i++)
				err_add(&e, o[i], r[i]);
			for (uint32_t j = 0; j < nq; j++) {
				CU_ASSERT(isfinite(lse[j]));
				CU_ASSERT(fabs(lse[j] - rl[j]) <=
					  1e-5 * fabs(rl[j]) + 1e-3);
			}
			CU_ASSERT_EQUAL(e.nonfinite, 0);
			/* logits ~1e4 in f32: score rounding ~1e-3 abs */
			CU_ASSERT(err_nmse(&e) <= 1e-2);

			/* all-equal scores: q = 0 -> mean of V, lse = log n */
			memset(q, 0, (size_t)nq * d * sizeof(float));
			run_kernel(fn, s, 0, 0, nq, q, 1.0f, 3, 290, o, lse);
			ref_attn(s, 0, 0, nq, q, 1.0f, 3, 290, r, rl);
			memset(&e, 0, sizeof(e));
			for (size_t i = 0; i < nq * d; i++)
				err_add(&e, o[i], r[i]);
			CU_ASSERT(err_nmse(&e) <= simd_nmse(simd));
			for (uint32_t j = 0; j < nq; j++)
				CU_ASSERT(fabsf(lse[j] - logf(287.0f)) < 1e-5f);
			free(q);
			kvs_free(s);
		}
	}
}

static void test_merge(void)
{
	float m1, l1, a1[16], a2[16];

	for (int i = 0; i < 16; i++) {
		a1[i] = (float)i;
		a2[i] = (float)(100 + i);
	}
	/* empty partial merged in: nothing changes */
	m1 = 2.0f;
	l1 = 3.0f;
	attn_merge(&m1, &l1, a1, -INFINITY, 0.0f, a2, 16);
	CU_ASSERT(m1 == 2.0f && l1 == 3.0f && a1[5] == 5.0f);
	/* into an empty one: copy */
	m1 = -INFINITY;
	l1 = 0.0f;
	attn_merge(&m1, &l1, a1, 1.5f, 2.0f, a2, 16);
	CU_ASSERT(m1 == 1.5f && l1 == 2.0f && a1[5] == 105.0f);
	/* both empty */
	m1 = -INFINITY;
	l1 = 0.0f;
	attn_merge(&m1, &l1, a1, -INFINITY, 0.0f, a2, 16);
	CU_ASSERT(m1 == -INFINITY && l1 == 0.0f);
	/* general: (m=0,l=1,acc=1) + (m=ln2,l=1,acc=3) -> m=ln2, l=1.5 */
	for (int i = 0; i < 16; i++) {
		a1[i] = 1.0f;
		a2[i] = 3.0f;
	}
	m1 = 0.0f;
	l1 = 1.0f;
	attn_merge(&m1, &l1, a1, logf(2.0f), 1.0f, a2, 16);
	CU_ASSERT(fabsf(m1 - logf(2.0f)) < 1e-7f);
	CU_ASSERT(fabsf(l1 - 1.5f) < 1e-6f);
	CU_ASSERT(fabsf(a1[3] - 3.5f) < 1e-6f);
	/* far apart maxima: no inf/nan, small one vanishes */
	m1 = 1e4f;
	l1 = 1.0f;
	a1[0] = 1.0f;
	a2[0] = 7.0f;
	attn_merge(&m1, &l1, a1, -1e4f, 5.0f, a2, 16);
	CU_ASSERT(m1 == 1e4f && l1 == 1.0f && a1[0] == 1.0f);
	m1 = -1e4f;
	l1 = 5.0f;
	a1[0] = 7.0f;
	a2[0] = 1.0f;
	attn_merge(&m1, &l1, a1, 1e4f, 1.0f, a2, 16);
	CU_ASSERT(m1 == 1e4f && l1 == 1.0f && a1[0] == 1.0f);
}

static void test_simd_api(void)
{
	int v = -5;

	CU_ASSERT(attn_simd_supported(CSD_SIMD_SCALAR));
	CU_ASSERT(!attn_simd_supported(7));
	CU_ASSERT(!attn_simd_supported(CSD_SIMD_AUTO));
	CU_ASSERT_EQUAL(attn_simd_parse("avx2", &v), 0);
	CU_ASSERT_EQUAL(v, CSD_SIMD_AVX2);
	CU_ASSERT_EQUAL(attn_simd_parse("AVX512", &v), 0);
	CU_ASSERT_EQUAL(v, CSD_SIMD_AVX512);
	CU_ASSERT_EQUAL(attn_simd_parse("auto", &v), 0);
	CU_ASSERT_EQUAL(v, CSD_SIMD_AUTO);
	CU_ASSERT_EQUAL(attn_simd_parse("scalar", &v), 0);
	CU_ASSERT_EQUAL(v, CSD_SIMD_SCALAR);
	errno = 0;
	CU_ASSERT_EQUAL(attn_simd_parse("sse9", &v), -1);
	CU_ASSERT_EQUAL(errno, EINVAL);
	CU_ASSERT_STRING_EQUAL(attn_simd_name(CSD_SIMD_AVX2), "avx2");
	CU_ASSERT_STRING_EQUAL(attn_simd_name(CSD_SIMD_AUTO), "auto");
	CU_ASSERT(attn_kernel_get(CSD_SIMD_SCALAR) == attn_kernel_scalar);
	CU_ASSERT(attn_kernel_get(9) == NULL);

	char *old = getenv("CSD_SIMD") ? strdup(getenv("CSD_SIMD")) : NULL;
	int best;

	unsetenv("CSD_SIMD");
	best = attn_simd_detect();
	CU_ASSERT(attn_simd_supported(best));
	CU_ASSERT(best == CSD_SIMD_AVX512 ||
		  !attn_simd_supported(CSD_SIMD_AVX512));
	setenv("CSD_SIMD", "scalar", 1);
	CU_ASSERT_EQUAL(attn_simd_detect(), CSD_SIMD_SCALAR);
	setenv("CSD_SIMD", "avx2", 1);
	CU_ASSERT_EQUAL(attn_simd_detect(),
			attn_simd_supported(CSD_SIMD_AVX2) ? CSD_SIMD_AVX2 :
			best);
	setenv("CSD_SIMD", "bogus", 1);
	CU_ASSERT_EQUAL(attn_simd_detect(), best);
	if (old) {
		setenv("CSD_SIMD", old, 1);
		free(old);
	} else {
		unsetenv("CSD_SIMD");
	}
}

/* ---- engine ------------------------------------------------------------- */

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int done;
};

struct tjob {
	struct attn_job job;
	struct waiter *w;
	atomic_uint calls;
	uint32_t *seqs, *lo, *hi;
	float *q, *out, *lse;
};

static void tjob_done(struct attn_job *job)
{
	struct tjob *t = job->priv;

	atomic_fetch_add(&t->calls, 1);
	pthread_mutex_lock(&t->w->lock);
	t->w->done++;
	pthread_cond_broadcast(&t->w->cond);
	pthread_mutex_unlock(&t->w->lock);
}

static void waiter_wait(struct waiter *w, unsigned int n)
{
	pthread_mutex_lock(&w->lock);
	while (w->done < n)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* A batch over kvset @s: sequence i of the job is kv sequence
 * nseq-1-i; lengths and windows random up to maxlen. */
static struct tjob *tjob_new(struct kvset *s, uint32_t nseq, uint32_t nq,
			     uint32_t maxlen, struct waiter *w)
{
	struct tjob *t = calloc(1, sizeof(*t));
	const uint32_t qh = nq * s->kvh;

	CU_ASSERT_FATAL(t != NULL);
	t->seqs = malloc(nseq * 4);
	t->lo = malloc(nseq * 4);
	t->hi = malloc(nseq * 4);
	t->q = rnd_q((size_t)nseq * qh * s->d, 1.0f);
	t->out = malloc((size_t)nseq * qh * s->d * 4);
	t->lse = malloc((size_t)nseq * qh * 4);
	CU_ASSERT_FATAL(t->seqs && t->lo && t->hi && t->out && t->lse);
	for (uint32_t i = 0; i < nseq; i++) {
		uint32_t len = 1 + rnd32() % maxlen;

		t->seqs[i] = s->nseq - 1 - i;
		t->hi[i] = len;
		t->lo[i] = (rnd32() & 1) ? 0 : rnd32() % len;	/* window */
	}
	t->w = w;
	t->job = (struct attn_job){
		.dtype = s->dtype, .head_dim = s->d, .q_heads = qh,
		.kv_heads = s->kvh, .tpp = s->tpp,
		.scale = 1.0f / sqrtf((float)s->d), .nseq = nseq,
		.seqs = t->seqs, .lo = t->lo, .hi = t->hi, .q = t->q,
		.out = t->out, .lse = t->lse, .page = kvs_page, .cookie = s,
		.done = tjob_done, .priv = t,
	};
	return t;
}

static void tjob_free(struct tjob *t)
{
	free(t->seqs);
	free(t->lo);
	free(t->hi);
	free(t->q);
	free(t->out);
	free(t->lse);
	free(t);
}

/*
 * Check a finished job against the double reference (lse within @dlse);
 * returns the NMSE of the outputs.
 */
static double tjob_check(struct kvset *s, struct tjob *t, double dlse)
{
	const struct attn_job *j = &t->job;
	const uint32_t nq = j->q_heads / j->kv_heads, d = j->head_dim;
	double *r = malloc((size_t)nq * d * 8), rl[ATTN_MAX_NQ];
	struct err e = {0}, el = {0};

	CU_ASSERT_FATAL(r != NULL);
	CU_ASSERT_EQUAL(atomic_load(&t->calls), 1);
	for (uint32_t i = 0; i < j->nseq; i++)
		for (uint32_t h = 0; h < j->kv_heads; h++) {
			size_t qo = ((size_t)i * j->q_heads + h * nq);

			ref_attn(s, j->seqs[i], h, nq, j->q + qo * d, j->scale,
				 j->lo[i], j->hi[i], r, rl);
			for (size_t x = 0; x < (size_t)nq * d; x++)
				err_add(&e, j->out[qo * d + x], r[x]);
			for (uint32_t x = 0; x < nq; x++)
				err_add(&el, j->lse[qo + x], rl[x]);
		}
	CU_ASSERT_EQUAL(e.nonfinite + el.nonfinite, 0);
	CU_ASSERT(el.maxabs <= dlse);
	free(r);
	return err_nmse(&e);
}

static void test_engine_batches(void)
{
	static const uint32_t tpps[] = { 8, 16, 25, 32 };
	static const uint32_t batches[] = { 1, 3, 17, 64 };
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0 };
	unsigned int ndone = 0;

	for (int simd = 0; simd < CSD_SIMD_COUNT; simd++) {
		struct attn_engine *e;

		if (!attn_simd_supported(simd))
			continue;
		CU_ASSERT_FATAL(attn_engine_create(3, simd, &e) == 0);
		CU_ASSERT_EQUAL(attn_engine_simd(e), simd);
		CU_ASSERT_EQUAL(attn_engine_threads(e), 3);
		for (size_t k = 0; k < 4; k++) {
			const int dt = dtypes[(k + simd) % 3];
			const uint32_t nq = nqs[(k + 2 * simd) % 3];
			const uint32_t d = dims[(k + simd) % 4];
			const uint32_t b = batches[k];
			/* long sequences (many tasks) for small batches */
			const uint32_t maxlen = b <= 3 ? 9000 : 700;
			struct kvset *s = kvs_new(dt, d, 2, tpps[k], b, maxlen,
						  1.0f);
			struct tjob *t = tjob_new(s, b, nq, maxlen, &w);
			double nmse;

			CU_ASSERT_EQUAL_FATAL(attn_engine_submit(e, &t->job), 0);
			waiter_wait(&w, ++ndone);
			nmse = tjob_check(s, t, simd_dlse(simd));
			CU_ASSERT(nmse <= simd_nmse(simd));
			if (getenv("CU_VERBOSE"))
				printf("\n  engine %s dt%d d%u nq%u b%u: nmse %.3g",
				       attn_simd_name(simd), dt, d, nq, b, nmse);
			CU_ASSERT_EQUAL(atomic_load(&s->bad_lookups), 0);

			/* same job on the calling thread, same result */
			float *o2 = malloc((size_t)b * nq * 2 * d * 4);

			CU_ASSERT_FATAL(o2 != NULL);
			memcpy(o2, t->out, (size_t)b * nq * 2 * d * 4);
			CU_ASSERT_EQUAL(attn_run_single(&t->job, simd), 0);
			CU_ASSERT_EQUAL(atomic_load(&t->calls), 2);
			struct err e2 = {0};

			for (size_t x = 0; x < (size_t)b * nq * 2 * d; x++)
				err_add(&e2, t->out[x], o2[x]);
			/* task split may differ (thread count): merge order,
			 * and for bf16 the rounding of p (relative to each
			 * task's running max) */
			CU_ASSERT(err_nmse(&e2) <=
				  (simd == CSD_SIMD_AVX512BF16 ? 5e-4 : 1e-11));
			ndone++;
			free(o2);
			tjob_free(t);
			kvs_free(s);
		}
		attn_engine_destroy(e);
	}
}

/* A 4097-token sequence through the engine (several tasks + merge). */
static void test_engine_long(void)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0 };
	struct kvset *s = kvs_new(CSD_DTYPE_F16, 128, 8, 16, 2, 20000, 1.0f);
	struct attn_engine *e;
	struct tjob *t;

	CU_ASSERT_FATAL(attn_engine_create(2, CSD_SIMD_AUTO, &e) == 0);
	t = tjob_new(s, 2, 4, 100, &w);
	t->lo[0] = 0;
	t->hi[0] = 4097;
	t->lo[1] = 1234;
	t->hi[1] = 20000;
	CU_ASSERT_EQUAL_FATAL(attn_engine_submit(e, &t->job), 0);
	waiter_wait(&w, 1);
	CU_ASSERT(tjob_check(s, t, 1e-4) <= 1e-10);
	tjob_free(t);
	attn_engine_destroy(e);
	kvs_free(s);
}

static void test_engine_concurrent(void)
{
	enum { NJOBS = 48 };
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0 };
	struct kvset *s = kvs_new(CSD_DTYPE_BF16, 64, 2, 32, 8, 3000, 1.0f);
	struct tjob *t[NJOBS];
	struct attn_engine *e;

	CU_ASSERT_FATAL(attn_engine_create(4, CSD_SIMD_AUTO, &e) == 0);
	for (int i = 0; i < NJOBS; i++) {
		t[i] = tjob_new(s, 1 + i % 8, 1 + i % 3 * 2, 3000, &w);
		CU_ASSERT_EQUAL_FATAL(attn_engine_submit(e, &t[i]->job), 0);
	}
	waiter_wait(&w, NJOBS);
	for (int i = 0; i < NJOBS; i++) {
		CU_ASSERT(tjob_check(s, t[i], 1e-4) <= 1e-10);
		CU_ASSERT(t[i]->job.internal == NULL);
		tjob_free(t[i]);
	}
	attn_engine_destroy(e);

	/* destroy with jobs still queued: every job completes, once */
	CU_ASSERT_FATAL(attn_engine_create(2, CSD_SIMD_AUTO, &e) == 0);
	w.done = 0;
	for (int i = 0; i < NJOBS; i++) {
		t[i] = tjob_new(s, 8, 2, 3000, &w);
		CU_ASSERT_EQUAL_FATAL(attn_engine_submit(e, &t[i]->job), 0);
	}
	attn_engine_destroy(e);
	CU_ASSERT_EQUAL(w.done, NJOBS);
	for (int i = 0; i < NJOBS; i++) {
		CU_ASSERT_EQUAL(atomic_load(&t[i]->calls), 1);
		if (i % 8 == 0)
			CU_ASSERT(tjob_check(s, t[i], 1e-4) <= 1e-10);
		tjob_free(t[i]);
	}
	kvs_free(s);
}

static void test_engine_errors(void)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    0 };
	struct kvset *s = kvs_new(CSD_DTYPE_F16, 64, 2, 32, 2, 100, 1.0f);
	struct attn_engine *e;
	struct tjob *t = tjob_new(s, 2, 2, 100, &w);
	struct attn_job j;

	CU_ASSERT_EQUAL(attn_engine_create(1, 17, &e), -EINVAL);
	CU_ASSERT_FATAL(attn_engine_create(0, CSD_SIMD_SCALAR, &e) == 0);
	CU_ASSERT(attn_engine_threads(e) >= 1);

	j = t->job;
	j.head_dim = 72;
	CU_ASSERT_EQUAL(attn_engine_submit(e, &j), -EINVAL);
	j = t->job;
	j.q_heads = 3;
	CU_ASSERT_EQUAL(attn_engine_submit(e, &j), -EINVAL);
	j = t->job;
	j.dtype = CSD_DTYPE_COUNT;
	CU_ASSERT_EQUAL(attn_engine_submit(e, &j), -EINVAL);
	j = t->job;
	j.tpp = 0;
	CU_ASSERT_EQUAL(attn_run_single(&j, CSD_SIMD_SCALAR), -EINVAL);
	t->lo[1] = t->hi[1];
	CU_ASSERT_EQUAL(attn_engine_submit(e, &t->job), -EINVAL);
	CU_ASSERT_EQUAL(attn_run_single(&t->job, 42), -EINVAL);
	CU_ASSERT_EQUAL(atomic_load(&t->calls), 0);
	attn_engine_destroy(e);
	/* no lse requested */
	t->lo[1] = 0;
	t->job.lse = NULL;
	CU_ASSERT_EQUAL(attn_run_single(&t->job, CSD_SIMD_AUTO), 0);
	CU_ASSERT_EQUAL(atomic_load(&t->calls), 1);
	tjob_free(t);
	kvs_free(s);
}

static CU_TestInfo conv_tests[] = {
	{ "conversions", test_convert },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo kernel_tests[] = {
	{ "scalar_vs_double", test_scalar_vs_double },
	{ "avx2", test_avx2 },
	{ "avx512", test_avx512 },
	{ "avx512bf16", test_avx512bf16 },
	{ "bf16_guards", test_bf16_guards },
	{ "bf16_convert", test_bf16_convert },
	{ "bf16_weights", test_bf16_weights },
	{ "extremes", test_extremes },
	{ "merge", test_merge },
	{ "simd_api", test_simd_api },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo engine_tests[] = {
	{ "batches", test_engine_batches },
	{ "long", test_engine_long },
	{ "concurrent", test_engine_concurrent },
	{ "errors", test_engine_errors },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "convert", NULL, NULL, conv_tests },
	{ "kernels", NULL, NULL, kernel_tests },
	{ "engine", NULL, NULL, engine_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
