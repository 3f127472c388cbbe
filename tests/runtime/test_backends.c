/* SPDX-License-Identifier: MIT */
/*
 * test_backends.c - the three attention backends (host, flexgen, csd) on
 * the same random fp16 KV give the same attention outputs.
 *
 * Every output is checked against a float64 reference computed here from
 * the same fp16 KV (tolerance REF_TOL absolute + relative), and the three
 * backends against each other (tolerance XB_TOL): all run f32-accumulating
 * kernels over identical fp16 inputs, so they differ only by summation
 * order.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cu_main.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_synth.h"
#include "tiny_model.h"

#define REF_TOL	2e-3	/* |out - ref| <= REF_TOL * (1 + |ref|) */
#define XB_TOL	5e-4	/* between backends */

#define T_LAYERS	2
#define T_QH		8
#define T_KVH		2
#define T_HD		64
#define T_SEQS		8
#define T_MAXTOK	200

/* ---- fp16 helpers --------------------------------------------------- */

static uint16_t f2h(float f)
{
	uint32_t x, sign, mant;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffff;
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		{
			uint32_t shift = (uint32_t)(14 - exp);
			uint32_t h = mant >> shift;
			uint32_t rem = mant & ((1u << shift) - 1);
			uint32_t half = 1u << (shift - 1);

			if (rem > half || (rem == half && (h & 1)))
				h++;
			return (uint16_t)(sign | h);
		}
	}
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	{
		uint32_t h = ((uint32_t)exp << 10) | (mant >> 13);
		uint32_t rem = mant & 0x1fff;

		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++;
		return (uint16_t)(sign | h);
	}
}

static float h2f(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
	float f;

	if (exp == 0) {
		f = ldexpf((float)mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		x = sign | 0x7f800000 | (mant << 13);
	else
		x = sign | ((exp + 112) << 23) | (mant << 13);
	memcpy(&f, &x, 4);
	return f;
}

/* ---- deterministic random ------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_f(uint64_t *s)
{
	return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0) *
	       2.0f - 1.0f;
}

static void fill_h(uint64_t *s, uint16_t *p, size_t n, float amp)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = f2h(rng_f(s) * amp);
}

static void fill_f(uint64_t *s, float *p, size_t n, float amp)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = rng_f(s) * amp;
}

/* ---- reference model of the KV cache --------------------------------- */

#define KV_TOK	((size_t)T_KVH * T_HD)

struct ref_kv {
	uint32_t len[T_SEQS][T_LAYERS];
	uint16_t *k[T_SEQS][T_LAYERS];	/* [T_MAXTOK][KV_TOK] */
	uint16_t *v[T_SEQS][T_LAYERS];
};

static int ref_init(struct ref_kv *r)
{
	int s, l;

	memset(r, 0, sizeof(*r));
	for (s = 0; s < T_SEQS; s++)
		for (l = 0; l < T_LAYERS; l++) {
			r->k[s][l] = calloc(T_MAXTOK * KV_TOK, 2);
			r->v[s][l] = calloc(T_MAXTOK * KV_TOK, 2);
			if (!r->k[s][l] || !r->v[s][l])
				return -ENOMEM;
		}
	return 0;
}

static void ref_free(struct ref_kv *r)
{
	int s, l;

	for (s = 0; s < T_SEQS; s++)
		for (l = 0; l < T_LAYERS; l++) {
			free(r->k[s][l]);
			free(r->v[s][l]);
		}
}

static void ref_append(struct ref_kv *r, uint32_t s, uint32_t l,
		       uint32_t ntok, const uint16_t *k, const uint16_t *v)
{
	memcpy(r->k[s][l] + r->len[s][l] * KV_TOK, k, ntok * KV_TOK * 2);
	memcpy(r->v[s][l] + r->len[s][l] * KV_TOK, v, ntok * KV_TOK * 2);
	r->len[s][l] += ntok;
}

/* float64 attention of one sequence, all q heads */
static void ref_attn(const struct ref_kv *r, uint32_t s, uint32_t l,
		     const float *q, double *out)
{
	uint32_t n = r->len[s][l], h, t, d;
	double scale = 1.0 / sqrt((double)T_HD);
	double *sc = malloc(n * sizeof(double));

	CU_ASSERT_FATAL(sc != NULL);
	for (h = 0; h < T_QH; h++) {
		uint32_t kh = h / (T_QH / T_KVH);
		double m = -INFINITY, sum = 0;

		for (t = 0; t < n; t++) {
			const uint16_t *kr = r->k[s][l] + t * KV_TOK +
					     kh * T_HD;
			double dot = 0;

			for (d = 0; d < T_HD; d++)
				dot += (double)q[h * T_HD + d] * h2f(kr[d]);
			sc[t] = dot * scale;
			if (sc[t] > m)
				m = sc[t];
		}
		for (d = 0; d < T_HD; d++)
			out[h * T_HD + d] = 0;
		for (t = 0; t < n; t++) {
			const uint16_t *vr = r->v[s][l] + t * KV_TOK +
					     kh * T_HD;
			double w = exp(sc[t] - m);

			sum += w;
			for (d = 0; d < T_HD; d++)
				out[h * T_HD + d] += w * h2f(vr[d]);
		}
		for (d = 0; d < T_HD; d++)
			out[h * T_HD + d] /= sum;
	}
	free(sc);
}

/* ---- the workload ----------------------------------------------------- */

static const char *const be_names[] = { "host", "flexgen", "csd" };
#define NBE 3

static struct rt_shape test_shape(void)
{
	struct rt_shape s = {
		.layers = T_LAYERS, .q_heads = T_QH, .kv_heads = T_KVH,
		.head_dim = T_HD, .max_seqs = T_SEQS, .max_tokens = T_MAXTOK,
		.threads = 2,
	};
	return s;
}

static const char *tmpdir(void)
{
	const char *d = getenv("TMPDIR");

	return d && *d ? d : "/tmp";
}

/*
 * The drive the csd backend uses: $CSD_TEST_DEVICE when set (the meson test
 * runtime-shm points it at a csd-fw daemon), else a fast embedded drive.
 */
static const char *csd_dev(void)
{
	const char *d = getenv("CSD_TEST_DEVICE");

	return d && *d ? d : "embedded:profile=fast";
}

static int open_be(int i, const char *fg_opts, struct rt_backend **bp)
{
	const struct rt_backend_ops *ops = rt_backend_find(be_names[i]);
	struct rt_shape s = test_shape();

	CU_ASSERT_FATAL(ops != NULL);
	if (i == 1)
		return ops->open(&s, fg_opts, bp);
	if (i == 2)
		return ops->open(&s, csd_dev(), bp);
	return ops->open(&s, NULL, bp);
}

/*
 * Run @steps decode steps of micro-batches @mb (nmb of them, each a list of
 * slots) on every backend; check each output against the reference and
 * against the host backend's.  Returns the number of outputs checked.
 */
static unsigned int run_workload(const char *fg_opts, const uint32_t *prompt,
				 const uint32_t *const *mb,
				 const uint32_t *mbn, int nmb, int steps,
				 struct rt_backend_stats *st_out)
{
	struct rt_backend *be[NBE] = { NULL };
	const struct rt_backend_ops *ops[NBE];
	struct ref_kv *ref = malloc(sizeof(*ref));
	size_t qn = (size_t)T_SEQS * T_QH * T_HD;
	float *q = malloc(qn * sizeof(float));
	float *out[NBE][2];
	double *ro = malloc(T_QH * T_HD * sizeof(double));
	uint16_t *kn = malloc(T_SEQS * KV_TOK * 2);
	uint16_t *vn = malloc(T_SEQS * KV_TOK * 2);
	uint16_t *kp = malloc(T_MAXTOK * KV_TOK * 2);
	uint16_t *vp = malloc(T_MAXTOK * KV_TOK * 2);
	unsigned int checked = 0;
	double worst_ref = 0, worst_xb = 0;
	uint64_t rs = 12345;
	int i, j, m, step;
	uint32_t s, l;

	CU_ASSERT_FATAL(ref && q && ro && kn && vn && kp && vp);
	CU_ASSERT_FATAL(ref_init(ref) == 0);
	CU_ASSERT_FATAL(nmb <= 2);
	for (i = 0; i < NBE; i++) {
		ops[i] = rt_backend_find(be_names[i]);
		CU_ASSERT_FATAL(open_be(i, fg_opts, &be[i]) == 0);
		for (m = 0; m < 2; m++) {
			out[i][m] = calloc(qn, sizeof(float));
			CU_ASSERT_FATAL(out[i][m] != NULL);
		}
	}
	/* prefill: bulk append of each slot's prompt, every layer */
	for (s = 0; s < T_SEQS; s++)
		for (l = 0; l < T_LAYERS; l++) {
			if (!prompt[s])
				continue;
			fill_h(&rs, kp, prompt[s] * KV_TOK, 1.0f);
			fill_h(&rs, vp, prompt[s] * KV_TOK, 1.0f);
			ref_append(ref, s, l, prompt[s], kp, vp);
			for (i = 0; i < NBE; i++)
				CU_ASSERT_EQUAL_FATAL(ops[i]->append(be[i], s,
						l, 0, prompt[s], kp, vp), 0);
		}
	for (step = 0; step < steps; step++) {
		for (l = 0; l < T_LAYERS; l++) {
			int tk[NBE][2];
			size_t qoff[2], koff[2];

			/* inputs of every micro-batch, then submit all */
			for (m = 0; m < nmb; m++) {
				qoff[m] = (m ? mbn[0] : 0) * T_QH * T_HD;
				koff[m] = (m ? mbn[0] : 0) * KV_TOK;
				fill_f(&rs, q + qoff[m],
				       mbn[m] * T_QH * T_HD, 2.0f);
				fill_h(&rs, kn + koff[m], mbn[m] * KV_TOK,
				       1.0f);
				fill_h(&rs, vn + koff[m], mbn[m] * KV_TOK,
				       1.0f);
				for (j = 0; j < (int)mbn[m]; j++)
					ref_append(ref, mb[m][j], l, 1,
						   kn + koff[m] + j * KV_TOK,
						   vn + koff[m] + j * KV_TOK);
			}
			for (i = 0; i < NBE; i++)
				for (m = 0; m < nmb; m++) {
					tk[i][m] = ops[i]->submit(be[i], l,
						mbn[m], mb[m], q + qoff[m],
						kn + koff[m], vn + koff[m],
						out[i][m]);
					CU_ASSERT_FATAL(tk[i][m] >= 0);
				}
			for (i = 0; i < NBE; i++)
				for (m = nmb - 1; m >= 0; m--)
					CU_ASSERT_EQUAL_FATAL(ops[i]->wait(
						be[i], tk[i][m]), 0);
			for (m = 0; m < nmb; m++)
				for (j = 0; j < (int)mbn[m]; j++) {
					size_t o = (size_t)j * T_QH * T_HD, e;

					ref_attn(ref, mb[m][j], l,
						 q + qoff[m] + o, ro);
					for (e = 0; e < T_QH * T_HD; e++) {
						double h0 = out[0][m][o + e];

						for (i = 0; i < NBE; i++) {
							double x = out[i][m][o + e];
							double d = fabs(x - ro[e]) /
								   (1 + fabs(ro[e]));

							if (d > worst_ref)
								worst_ref = d;
							d = fabs(x - h0);
							if (d > worst_xb)
								worst_xb = d;
						}
					}
					checked++;
				}
		}
	}
	CU_ASSERT(worst_ref <= REF_TOL);
	CU_ASSERT(worst_xb <= XB_TOL);
	if (worst_ref > REF_TOL || worst_xb > XB_TOL)
		fprintf(stderr, "worst vs ref %.3g, between backends %.3g\n",
			worst_ref, worst_xb);
	if (st_out)
		ops[1]->get_stats(be[1], st_out);
	for (i = 0; i < NBE; i++) {
		ops[i]->close(be[i]);
		free(out[i][0]);
		free(out[i][1]);
	}
	ref_free(ref);
	free(ref);
	free(q);
	free(ro);
	free(kn);
	free(vn);
	free(kp);
	free(vp);
	return checked;
}

static const uint32_t mixed_prompt[T_SEQS] = { 1, 17, 33, 5, 64, 15, 16, 47 };

static void test_batch1(void)
{
	static const uint32_t seq3[] = { 4 };
	const uint32_t *mb[] = { seq3 };
	uint32_t n[] = { 1 };
	struct rt_backend_stats st;

	CU_ASSERT(run_workload(NULL, mixed_prompt, mb, n, 1, 40, &st) ==
		  40 * T_LAYERS);
	CU_ASSERT(st.attn_calls == 40 * T_LAYERS);
	CU_ASSERT(st.link_bytes > 0);
	CU_ASSERT(st.kv_bytes_read > 0);
}

static void test_batch8(void)
{
	static const uint32_t all[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	const uint32_t *mb[] = { all };
	uint32_t n[] = { 8 };

	CU_ASSERT(run_workload(NULL, mixed_prompt, mb, n, 1, 40, NULL) ==
		  40 * T_LAYERS * 8);
}

/* two micro-batches in flight at once, reversed wait order */
static void test_microbatch(void)
{
	static const uint32_t a[] = { 6, 0, 2, 4 }, b[] = { 1, 3, 7, 5 };
	const uint32_t *mb[] = { a, b };
	uint32_t n[] = { 4, 4 };

	CU_ASSERT(run_workload(NULL, mixed_prompt, mb, n, 2, 30, NULL) ==
		  30 * T_LAYERS * 8);
}

/* flexgen with a tiny staging pool and small reads (eviction, growth) */
static void test_flexgen_small_pool(void)
{
	static const uint32_t all[] = { 7, 6, 5, 4, 3, 2, 1, 0 };
	const uint32_t *mb[] = { all };
	uint32_t n[] = { 8 };
	char opts[300];

	snprintf(opts, sizeof(opts), "dir=%s,buf=1,rs=8,qd=2", tmpdir());
	CU_ASSERT(run_workload(opts, mixed_prompt, mb, n, 1, 20, NULL) ==
		  20 * T_LAYERS * 8);
}

static void test_flexgen_pread(void)
{
	static const uint32_t all[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	const uint32_t *mb[] = { all };
	uint32_t n[] = { 8 };
	char opts[300];

	snprintf(opts, sizeof(opts), "%s,io=pread", tmpdir());
	CU_ASSERT(run_workload(opts, mixed_prompt, mb, n, 1, 12, NULL) ==
		  12 * T_LAYERS * 8);
}

/*
 * pread fallback (the worker drops its lock for every read) with a tiny
 * staging pool and two micro-batches in flight, waited in reverse order:
 * attention jobs finish, free staging and kick the worker while it is
 * reading, which is where a lost wakeup would hang.
 */
static void test_flexgen_pread_small_pool(void)
{
	static const uint32_t a[] = { 6, 0, 2, 4 }, b[] = { 1, 3, 7, 5 };
	const uint32_t *mb[] = { a, b };
	uint32_t n[] = { 4, 4 };
	char opts[300];

	snprintf(opts, sizeof(opts), "dir=%s,io=pread,buf=1,rs=8,qd=2",
		 tmpdir());
	CU_ASSERT(run_workload(opts, mixed_prompt, mb, n, 2, 12, NULL) ==
		  12 * T_LAYERS * 8);
}

/*
 * Run a fixed workload (mixed prompts, @steps decode steps over all layers,
 * two micro-batches in flight) on one flexgen backend opened with @opts;
 * store every attention output in @all (steps * T_LAYERS * T_SEQS * QH*HD).
 */
static void fg_record(const char *opts, int steps, float *all)
{
	static const uint32_t a[] = { 6, 0, 2, 4 }, b[] = { 1, 3, 7, 5 };
	const uint32_t *mb[] = { a, b };
	const struct rt_backend_ops *ops = rt_backend_find("flexgen");
	struct rt_shape sh = test_shape();
	size_t qs = (size_t)T_QH * T_HD;
	struct rt_backend *be = NULL;
	uint16_t *kp = malloc(T_MAXTOK * KV_TOK * 2);
	uint16_t *vp = malloc(T_MAXTOK * KV_TOK * 2);
	uint16_t *kn = malloc(T_SEQS * KV_TOK * 2);
	uint16_t *vn = malloc(T_SEQS * KV_TOK * 2);
	float *q = malloc(T_SEQS * qs * sizeof(float));
	uint64_t rs = 777;
	int step, m, tk[2];
	uint32_t s, l;

	CU_ASSERT_FATAL(ops && kp && vp && kn && vn && q);
	CU_ASSERT_FATAL(ops->open(&sh, opts, &be) == 0);
	for (s = 0; s < T_SEQS; s++)
		for (l = 0; l < T_LAYERS; l++) {
			fill_h(&rs, kp, mixed_prompt[s] * KV_TOK, 1.0f);
			fill_h(&rs, vp, mixed_prompt[s] * KV_TOK, 1.0f);
			CU_ASSERT_EQUAL_FATAL(ops->append(be, s, l, 0,
					mixed_prompt[s], kp, vp), 0);
		}
	for (step = 0; step < steps; step++)
		for (l = 0; l < T_LAYERS; l++) {
			float *o = all + ((size_t)step * T_LAYERS + l) *
					 T_SEQS * qs;

			fill_f(&rs, q, T_SEQS * qs, 2.0f);
			fill_h(&rs, kn, T_SEQS * KV_TOK, 1.0f);
			fill_h(&rs, vn, T_SEQS * KV_TOK, 1.0f);
			for (m = 0; m < 2; m++) {
				tk[m] = ops->submit(be, l, 4, mb[m],
						    q + m * 4 * qs,
						    kn + m * 4 * KV_TOK,
						    vn + m * 4 * KV_TOK,
						    o + m * 4 * qs);
				CU_ASSERT_FATAL(tk[m] >= 0);
			}
			CU_ASSERT_EQUAL_FATAL(ops->wait(be, tk[1]), 0);
			CU_ASSERT_EQUAL_FATAL(ops->wait(be, tk[0]), 0);
		}
	ops->close(be);
	free(kp);
	free(vp);
	free(kn);
	free(vn);
	free(q);
}

/*
 * ssd_gbps= (reads paced to a modeled SSD) changes only timing: the same
 * attention outputs as unpaced, bit for bit, on io_uring and on pread (with
 * a tiny staging pool and small reads, so many paced reads queue up).  The
 * paced run is also checked against the reference and the other backends.
 * No timing is asserted.
 */
static void test_flexgen_ssd_pacing(void)
{
	static const char *const extra[] = {
		"", ",io=pread", ",buf=1,rs=8,qd=2", ",io=pread,buf=1,rs=8",
	};
	static const uint32_t all8[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	const uint32_t *mb[] = { all8 };
	uint32_t n[] = { 8 };
	const int steps = 8;
	size_t cnt = (size_t)steps * T_LAYERS * T_SEQS * T_QH * T_HD;
	float *ref = malloc(cnt * sizeof(float));
	float *got = malloc(cnt * sizeof(float));
	char opts[400];
	size_t i;

	CU_ASSERT_FATAL(ref && got);
	for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
		memset(ref, 0, cnt * sizeof(float));
		memset(got, 0xff, cnt * sizeof(float));
		snprintf(opts, sizeof(opts), "dir=%s%s", tmpdir(), extra[i]);
		fg_record(opts, steps, ref);
		/* 0.05 GB/s: the test's few hundred KiB per step pace visibly */
		snprintf(opts, sizeof(opts), "dir=%s%s,ssd_gbps=0.05",
			 tmpdir(), extra[i]);
		fg_record(opts, steps, got);
		CU_ASSERT(memcmp(ref, got, cnt * sizeof(float)) == 0);
	}
	free(ref);
	free(got);
	snprintf(opts, sizeof(opts), "dir=%s,ssd_gbps=7", tmpdir());
	CU_ASSERT(run_workload(opts, mixed_prompt, mb, n, 1, 8, NULL) ==
		  8 * T_LAYERS * 8);
}

/* the file is really used: written, read back, raw read of the same file */
static void test_flexgen_file(void)
{
	const struct rt_backend_ops *ops = rt_backend_find("flexgen");
	struct rt_shape s = test_shape();
	struct rt_flexgen_info info;
	struct rt_backend_stats st;
	struct rt_backend *b, *h;
	uint16_t *kp = calloc(T_MAXTOK * KV_TOK, 2);
	float q[T_QH * T_HD], out[T_QH * T_HD];
	uint64_t bytes = 0, ns = 0, rs = 7;
	uint32_t seq = 2;
	int tk;

	CU_ASSERT_FATAL(kp != NULL);
	fill_h(&rs, kp, T_MAXTOK * KV_TOK, 1.0f);
	fill_f(&rs, q, T_QH * T_HD, 1.0f);
	CU_ASSERT_FATAL(ops->open(&s, tmpdir(), &b) == 0);
	CU_ASSERT(rt_flexgen_get_info(b, &info) == 0);
	CU_ASSERT(info.read_size >= 4096);
	CU_ASSERT(info.queue_depth >= 1);
	if (!info.uring)
		fprintf(stderr, "  note: flexgen runs on pread here\n");
	CU_ASSERT(ops->append(b, seq, 0, 0, 100, kp, kp) == 0);
	CU_ASSERT(ops->append(b, seq, 1, 0, 100, kp, kp) == 0);
	tk = ops->submit(b, 0, 1, &seq, q, kp, kp, out);
	CU_ASSERT_FATAL(tk >= 0);
	CU_ASSERT(ops->wait(b, tk) == 0);
	ops->get_stats(b, &st);
	CU_ASSERT(rt_flexgen_get_info(b, &info) == 0);
	/* 2 layers x 6 full chunks of 16 tokens were written */
	CU_ASSERT(info.file_bytes >= 12 * 16 * KV_TOK * 2 * 2);
	CU_ASSERT(st.link_bytes >= info.file_bytes);
	CU_ASSERT(st.kv_bytes_read == 101 * KV_TOK * 2 * 2);
	CU_ASSERT(st.host_kv_bytes > 0);
	CU_ASSERT(rt_flexgen_raw_read(b, 0, &bytes, &ns) == 0);
	CU_ASSERT(bytes >= 12 * 16 * KV_TOK * 2 * 2);
	/* not a flexgen backend */
	CU_ASSERT_FATAL(rt_backend_host.open(&s, NULL, &h) == 0);
	CU_ASSERT(rt_flexgen_raw_read(h, 0, &bytes, &ns) == -EINVAL);
	CU_ASSERT(rt_flexgen_get_info(h, &info) == -EINVAL);
	rt_backend_host.close(h);
	ops->close(b);
	free(kp);
}

static void test_reset(void)
{

	uint16_t *kp = calloc(64 * KV_TOK, 2), *kq = calloc(64 * KV_TOK, 2);
	float q[T_QH * T_HD], o1[T_QH * T_HD], o2[T_QH * T_HD];
	uint64_t rs = 99;
	uint32_t seq = 5;
	int i, tk;

	CU_ASSERT_FATAL(kp && kq);
	fill_h(&rs, kp, 64 * KV_TOK, 1.0f);
	fill_h(&rs, kq, 64 * KV_TOK, 1.0f);
	fill_f(&rs, q, T_QH * T_HD, 1.0f);
	for (i = 0; i < NBE; i++) {
		const struct rt_backend_ops *ops = rt_backend_find(be_names[i]);
		struct rt_backend *b;
		uint32_t l;

		CU_ASSERT_FATAL(open_be(i, tmpdir(), &b) == 0);
		/* fill with kq, reset, fill with kp: must equal fresh kp */
		for (l = 0; l < T_LAYERS; l++)
			CU_ASSERT(ops->append(b, seq, l, 0, 40, kq, kq) == 0);
		CU_ASSERT(ops->reset(b, seq) == 0);
		CU_ASSERT(ops->append(b, seq, 0, 0, 40, kp, kp) == 0);
		CU_ASSERT(ops->append(b, seq, 0, 1, 1, kp, kp) == -EILSEQ);
		tk = ops->submit(b, 0, 1, &seq, q, kp + 40 * KV_TOK,
				 kp + 40 * KV_TOK, o1);
		CU_ASSERT_FATAL(tk >= 0);
		CU_ASSERT(ops->wait(b, tk) == 0);
		CU_ASSERT(ops->wait(b, tk) == -EINVAL);	/* already reaped */
		ops->close(b);

		CU_ASSERT_FATAL(open_be(i, tmpdir(), &b) == 0);
		CU_ASSERT(ops->append(b, seq, 0, 0, 40, kp, kp) == 0);
		tk = ops->submit(b, 0, 1, &seq, q, kp + 40 * KV_TOK,
				 kp + 40 * KV_TOK, o2);
		CU_ASSERT_FATAL(tk >= 0);
		CU_ASSERT(ops->wait(b, tk) == 0);
		ops->close(b);
		for (l = 0; l < T_QH * T_HD; l++)
			if (fabsf(o1[l] - o2[l]) > XB_TOL)
				break;
		CU_ASSERT(l == T_QH * T_HD);
	}
	free(kp);
	free(kq);
}

static void test_errors(void)
{
	struct rt_shape s = test_shape(), bad = test_shape();
	struct rt_backend *b = NULL;
	uint16_t kv[2 * KV_TOK] = { 0 };
	float q[2 * T_QH * T_HD] = { 0 }, out[2 * T_QH * T_HD];
	uint32_t seq = T_SEQS, dup[2] = { 1, 1 };
	int i;

	CU_ASSERT(rt_backend_find("nope") == NULL);
	CU_ASSERT(rt_backend_find(NULL) == NULL);
	CU_ASSERT(rt_backend_find("csd") == &rt_backend_csd);
	/* bad options */
	CU_ASSERT(rt_backend_host.open(&s, "x=1", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "dir=/nonexistent/csd-x", &b) ==
		  -ENOENT);
	CU_ASSERT(rt_backend_flexgen.open(&s, "qd=0", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "io=aio", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "buf=lots", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=0", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=-7", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=fast", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=7x", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "ssd_gbps=nan", &b) == -EINVAL);
	CU_ASSERT(rt_backend_flexgen.open(&s, "/etc/passwd", &b) == -ENOTDIR);
	CU_ASSERT(rt_backend_csd.open(&s, "bogus:", &b) < 0);
	CU_ASSERT(b == NULL);
	/* bad shapes */
	bad.q_heads = 3;
	for (i = 0; i < NBE; i++) {
		const struct rt_backend_ops *ops = rt_backend_find(be_names[i]);

		CU_ASSERT(ops->open(&bad, NULL, &b) < 0);
		CU_ASSERT(ops->open(NULL, NULL, &b) == -EINVAL);
	}
	/* bad calls */
	for (i = 0; i < NBE; i++) {
		const struct rt_backend_ops *ops = rt_backend_find(be_names[i]);

		CU_ASSERT_FATAL(open_be(i, NULL, &b) == 0);
		CU_ASSERT(ops->append(b, T_SEQS, 0, 0, 1, kv, kv) == -ERANGE);
		CU_ASSERT(ops->append(b, 0, T_LAYERS, 0, 1, kv, kv) ==
			  -ERANGE);
		CU_ASSERT(ops->append(b, 0, 0, 3, 1, kv, kv) == -EILSEQ);
		CU_ASSERT(ops->submit(b, 0, 1, &seq, q, kv, kv, out) ==
			  -ERANGE);
		CU_ASSERT(ops->submit(b, T_LAYERS, 1, dup, q, kv, kv, out) ==
			  -ERANGE);
		CU_ASSERT(ops->submit(b, 0, 2, dup, q, kv, kv, out) ==
			  -EINVAL);
		CU_ASSERT(ops->wait(b, 12345) < 0);
		CU_ASSERT(ops->wait(b, -1) < 0);
		CU_ASSERT(ops->reset(b, T_SEQS) == -ERANGE);
		ops->close(b);
	}
}

static CU_TestInfo attn_tests[] = {
	{ "batch1_40_steps", test_batch1 },
	{ "batch8_mixed_40_steps", test_batch8 },
	{ "two_microbatches", test_microbatch },
	{ "flexgen_small_pool", test_flexgen_small_pool },
	{ "flexgen_pread", test_flexgen_pread },
	{ "flexgen_pread_small_pool", test_flexgen_pread_small_pool },
	{ "flexgen_file", test_flexgen_file },
	{ "flexgen_ssd_pacing", test_flexgen_ssd_pacing },
	{ "reset", test_reset },
	{ "errors", test_errors },
	CU_TEST_INFO_NULL,
};


/* ---- the decoder on each backend: identical greedy tokens -------------- */

#define DEC_STEPS	64

static struct rt_model *tiny_model;

static int dec_init(void)
{
	return test_tiny_model_open("test-backends", 5, &tiny_model);
}

static int dec_fini(void)
{
	if (tiny_model)
		rt_model_close(tiny_model);
	tiny_model = NULL;
	return 0;
}

/* greedy tokens [batch][DEC_STEPS] of one backend */
static int dec_run(const char *name, uint32_t batch, int32_t *toks)
{
	const struct rt_backend_ops *ops = rt_backend_find(name);
	const char *opts = !strcmp(name, "csd") ? csd_dev() :
			   !strcmp(name, "flexgen") ? tmpdir() : NULL;
	struct rt_decoder_config cfg;
	struct rt_decoder *d = NULL;
	int32_t *prompts[8], out[8];
	uint32_t lens[8], s, i;
	uint64_t x = 77;
	char err[256] = "";
	int ret, step;

	for (s = 0; s < batch; s++) {
		lens[s] = batch == 1 ? 23 : 3 + 9 * s;	/* 3 .. 66 */
		prompts[s] = malloc(lens[s] * sizeof(int32_t));
		if (!prompts[s])
			return -ENOMEM;
		for (i = 0; i < lens[s]; i++)
			prompts[s][i] = (int32_t)(3 + rng_next(&x) % 256);
	}
	rt_decoder_config_init(&cfg, batch, 66 + DEC_STEPS + 2, 2);
	ret = rt_decoder_create(tiny_model, ops, opts, &cfg, &d, err,
				sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		goto out;
	}
	ret = rt_decoder_prefill(d, (const int32_t *const *)prompts, lens,
				 NULL);
	for (step = 0; ret == 0 && step < DEC_STEPS; step++) {
		ret = rt_decoder_step(d, NULL, out);
		for (s = 0; s < batch; s++)
			toks[s * DEC_STEPS + step] = out[s];
	}
	if (ret == 0 && !strcmp(name, "flexgen")) {
		struct rt_backend_stats st;

		ops->get_stats(rt_decoder_backend(d), &st);
		CU_ASSERT(st.link_bytes > 0);
		CU_ASSERT(st.attn_calls == (uint64_t)DEC_STEPS *
			  tiny_model->hp.n_layer * (batch > 1 ? 2 : 1));
	}
	rt_decoder_destroy(d);
out:
	for (s = 0; s < batch; s++)
		free(prompts[s]);
	return ret;
}

static void dec_compare(uint32_t batch)
{
	int32_t *t[NBE];
	int i;

	CU_ASSERT_FATAL(tiny_model != NULL);
	for (i = 0; i < NBE; i++) {
		t[i] = calloc((size_t)batch * DEC_STEPS, sizeof(int32_t));
		CU_ASSERT_FATAL(t[i] != NULL);
		CU_ASSERT_EQUAL(dec_run(be_names[i], batch, t[i]), 0);
	}
	for (i = 1; i < NBE; i++)
		CU_ASSERT(memcmp(t[0], t[i], (size_t)batch * DEC_STEPS *
				 sizeof(int32_t)) == 0);
	for (i = 0; i < NBE; i++)
		free(t[i]);
}

static void test_dec_batch1(void)
{
	dec_compare(1);
}

static void test_dec_batch8(void)
{
	dec_compare(8);
}

static CU_TestInfo dec_tests[] = {
	{ "greedy_64_steps_batch1", test_dec_batch1 },
	{ "greedy_64_steps_batch8_mixed", test_dec_batch8 },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "backends", NULL, NULL, attn_tests },
	{ "decoder", dec_init, dec_fini, dec_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
