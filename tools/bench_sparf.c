// SPDX-License-Identifier: MIT
/*
 * bench_sparf.c - `csd-bench sparf`: accuracy and cost of SparF sparse
 * attention (command set v0.2) against dense attention, measured side by
 * side in one run on an embedded drive.
 *
 *  1. Attention level, two contexts (f16, head_dim 128, --heads kv heads,
 *     default 8): MHA and GQA 4 (4x the q heads), each a batch of
 *     --attn-batch (default 8) sequences of --tokens (default 32768),
 *     synthetic KV with a few heavy dims and a few "needle" tokens aligned
 *     with q: NMSE of the outputs vs dense, flash bytes read per call
 *     (statistics log), modeled device time per call, and measured wall
 *     time of dense and of every ratio, interleaved; reported as the
 *     median over --iters of the per-iteration sparse / dense ratio (the
 *     machine may be shared: only side-by-side ratios are meaningful).
 *  2. Model level: greedy-token agreement of decode over --gen steps
 *     (default 256) on synthetic models (presets tiny-mha (MHA) and small
 *     (GQA 4:1) by default, host prefill of random prompts of --prompt
 *     tokens, default 2048 = one complete channel chunk at head_dim 64,
 *     batch --batch, default 2), teacher-forced: the sparse decoder is fed
 *     the dense run's tokens, so each step compares one argmax.  Host
 *     prefill dominates the run time (quadratic in --prompt).
 *
 * Ratios 1/4, 1/8, 1/16: r = ratio * head_dim dims, ratio / 2 of the
 * tokens kept (libcsd's struct csd_attn_sparse.ratio).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <csd.h>

#include "backend.h"
#include "csd-bench.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_ops.h"
#include "rt_synth.h"

#define NRATIO	3
#define MAXIT	64

static const float ratios[NRATIO] = { 0.25f, 0.125f, 0.0625f };
static const char *const rnames[NRATIO] = { "1/4", "1/8", "1/16" };

struct sopts {
	uint32_t tokens, heads, iters, gen, prompt, batch, abatch;
	const char *json, *models;
};

static uint64_t rs = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return (double)((rs * 0x2545f4914f6cdd1dull) >> 11) /
	       9007199254740992.0 * 2.0 - 1.0;
}

static uint16_t f2h(float f)
{
	return rt_fp32_to_fp16(f);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_d);
	return n ? v[n / 2] : 0;
}

static double nmse(const float *a, const float *ref, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? num / den : num;
}

/* ---- 1. attention level ---------------------------------------------------- */

#define NCTX	2
static const uint32_t ctx_gqa[NCTX] = { 1, 4 };

struct attn_res {
	uint32_t gqa, q_heads;
	double nmse[NRATIO];
	double bytes_dense, bytes[NRATIO];	/* flash bytes per call */
	double mod_dense, mod[NRATIO];		/* modeled ns per call */
	double t_dense, t[NRATIO];		/* measured ns per call, medians */
	double t_ratio[NRATIO];			/* median of per-iteration
						 * sparse / dense */
};

#define POOL	(1u << 22)

/*
 * Fill @nseq sequences of @n tokens: K and V drawn from a pool of random
 * f16 values (K heavy dims d % 16 == 3, x4), and 1 token in 512 a
 * "needle" whose K is aligned with the sequence's q of its kv head.
 */
static int fill(struct csd_ctx *ctx, uint32_t nseq, uint32_t n, uint32_t h,
		uint32_t gqa, uint32_t d, const float *q)
{
	const uint32_t chunk = 1024;
	size_t row = (size_t)h * d;
	uint16_t *pool = malloc((POOL + row * chunk) * 2);
	uint16_t *k = malloc(chunk * row * 2), *v = malloc(chunk * row * 2);
	int rc = 0;

	if (!pool || !k || !v) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < POOL + row * chunk; i++)
		pool[i] = f2h((float)urand() * (i % 16 == 3 ? 4.0f : 1.0f));
	for (uint32_t s = 0; s < nseq && !rc; s++) {
		const float *qs = q + (size_t)s * h * gqa * d;

		for (uint32_t t0 = 0; t0 < n && !rc; t0 += chunk) {
			uint32_t m = n - t0 < chunk ? n - t0 : chunk;
			/* 16-element aligned offsets keep the heavy dims */
			size_t ko = (size_t)((urand() + 1.0) * 0.5 * POOL) & ~15ul;
			size_t vo = (size_t)((urand() + 1.0) * 0.5 * POOL) & ~15ul;

			memcpy(k, pool + ko, (size_t)m * row * 2);
			memcpy(v, pool + vo, (size_t)m * row * 2);
			for (uint32_t t = 0; t < m; t++) {
				if ((urand() + 1.0) * 256.0 >= 1.0)
					continue;
				for (uint32_t i = 0; i < row; i++)
					k[t * row + i] = f2h(0.3f * (float)urand() +
						2.5f * qs[(i / d) * gqa * d + i % d]);
			}
			rc = csd_kv_append(ctx, s, 0, t0, m, k, v);
		}
	}
out:
	free(pool);
	free(k);
	free(v);
	return rc;
}

static int attn_call(struct csd_dev *dev, struct csd_ctx *ctx, uint32_t nseq,
		     const uint32_t *seqs, const float *q, float *out,
		     float ratio, double *bytes, double *mod, double *ns)
{
	struct csd_attn_req req;
	struct csd_attn_result res;
	struct csd_dev_stats a, b;
	uint64_t t0;
	int rc;

	memset(&req, 0, sizeof(req));
	req.nseq = nseq;
	req.seqs = seqs;
	req.q = q;
	req.out = out;
	if (ratio > 0.0f) {
		req.flags = CSD_ATTN_SPARSE;
		req.sparse.ratio = ratio;
	}
	rc = csd_dev_get_stats(dev, &a);
	if (rc)
		return rc;
	t0 = rt_now_ns();
	rc = csd_attn_run(ctx, &req, &res);
	*ns = (double)(rt_now_ns() - t0);
	if (rc)
		return rc;
	rc = csd_dev_get_stats(dev, &b);
	*bytes = (double)(b.flash_bytes_read - a.flash_bytes_read);
	*mod = (double)res.modeled_ns;
	return rc;
}

/* One context (kv heads o->heads, q heads gqa times that), a batch of
 * o->abatch sequences of o->tokens: dense and every ratio side by side. */
static int bench_attention(const struct sopts *o, uint32_t gqa,
			   struct attn_res *r)
{
	const uint32_t h = o->heads, d = 128, nseq = o->abatch;
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = h, .q_heads = h * gqa, .head_dim = d,
		.dtype = CSD_KV_F16, .max_seqs = nseq, .max_tokens = o->tokens,
	};
	size_t qn = (size_t)nseq * h * gqa * d;
	float *q = malloc(qn * 4), *od = calloc(qn, 4), *os = calloc(qn, 4);
	uint32_t seqs[64];
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	double td[MAXIT], ts[NRATIO][MAXIT], tr[MAXIT], x, y;
	int rc = -ENOMEM;

	if (!q || !od || !os)
		goto out;
	for (size_t i = 0; i < qn; i++)
		q[i] = (float)urand() * (i % 16 == 3 ? 3.0f : 1.0f);
	for (uint32_t s = 0; s < nseq; s++)
		seqs[s] = s;
	rc = csd_dev_open("embedded:capacity=16G", &dev);
	if (rc)
		goto out;
	rc = csd_ctx_create(dev, &p, &ctx);
	if (!rc)
		rc = fill(ctx, nseq, o->tokens, h, gqa, d, q);
	if (rc)
		goto out;
	r->gqa = gqa;
	r->q_heads = h * gqa;
	rc = attn_call(dev, ctx, nseq, seqs, q, od, 0, &r->bytes_dense,
		       &r->mod_dense, &x);
	for (int i = 0; i < NRATIO && !rc; i++) {
		rc = attn_call(dev, ctx, nseq, seqs, q, os, ratios[i],
			       &r->bytes[i], &r->mod[i], &y);
		r->nmse[i] = nmse(os, od, qn);
	}
	/* timing: dense and every ratio interleaved (the machine may be
	 * shared: compare within an iteration) */
	for (uint32_t it = 0; it < o->iters && !rc; it++) {
		rc = attn_call(dev, ctx, nseq, seqs, q, od, 0, &x, &y, &td[it]);
		for (int i = 0; i < NRATIO && !rc; i++)
			rc = attn_call(dev, ctx, nseq, seqs, q, os, ratios[i],
				       &x, &y, &ts[i][it]);
	}
	if (rc)
		goto out;
	for (int i = 0; i < NRATIO; i++) {
		for (uint32_t it = 0; it < o->iters; it++)
			tr[it] = ts[i][it] / td[it];
		r->t_ratio[i] = median(tr, o->iters);
		r->t[i] = median(ts[i], o->iters);
	}
	r->t_dense = median(td, o->iters);
out:
	if (ctx)
		csd_ctx_destroy(ctx);
	if (dev)
		csd_dev_close(dev);
	free(q);
	free(od);
	free(os);
	return rc;
}

/* ---- 2. model level ------------------------------------------------------- */

struct model_res {
	char preset[16];
	uint32_t heads, kv_heads, layers, steps;
	double agree[NRATIO];
	double kv_dense, kv[NRATIO];	/* KV bytes read per step */
};

static int load_synth(const char *preset, uint32_t ctx, struct rt_model **mp)
{
	const char *tmp = getenv("TMPDIR");
	char path[512], err[256] = "";
	struct rt_synth_opts so;
	int fd, rc;

	snprintf(path, sizeof(path), "%s/csd-bench-sparf-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	memset(&so, 0, sizeof(so));
	so.preset = preset;
	so.wtype = -1;
	so.seed = 1;
	so.ctx = ctx;
	rc = rt_synth_write(path, &so, err, sizeof(err));
	if (!rc)
		rc = rt_model_open(path, mp, err, sizeof(err));
	unlink(path);
	if (rc)
		fprintf(stderr, "csd-bench sparf: %s: %s\n", preset,
			err[0] ? err : strerror(-rc));
	return rc;
}

/*
 * Decode @gen steps of @batch random prompts; with @forced the inputs are
 * forced[g][s] (the dense run's tokens).  Tokens out into @toks[g][s].
 */
static int decode(const struct rt_model *m, const struct sopts *o,
		  float ratio, const int32_t *forced, int32_t *toks,
		  double *kv_per_step)
{
	struct rt_decoder_config cfg;
	struct rt_decoder *d = NULL;
	struct rt_decode_stats st;
	int32_t **pr = calloc(o->batch, sizeof(*pr));
	uint32_t *lens = calloc(o->batch, sizeof(*lens));
	char err[256];
	int rc = -ENOMEM;

	if (!pr || !lens)
		goto out;
	for (uint32_t s = 0; s < o->batch; s++) {
		struct rt_rng rng;

		lens[s] = o->prompt;
		pr[s] = calloc(o->prompt, sizeof(int32_t));
		if (!pr[s])
			goto out;
		rt_rng_seed(&rng, 1000003u + s);
		for (uint32_t i = 0; i < o->prompt; i++)
			pr[s][i] = (int32_t)(3 + rt_rng_next(&rng) %
					     (m->hp.n_vocab - 3));
	}
	rt_decoder_config_init(&cfg, o->batch, o->prompt + o->gen + 1, 0);
	cfg.micro_batches = 1;
	rc = rt_decoder_create(m, &rt_backend_csd, "embedded:", &cfg, &d, err,
			       sizeof(err));
	if (rc) {
		fprintf(stderr, "csd-bench sparf: decoder: %s\n", err);
		goto out;
	}
	if (ratio > 0.0f) {
		rc = rt_csd_set_sparse(rt_decoder_backend(d), ratio);
		if (rc)
			goto out;
	}
	rc = rt_decoder_prefill(d, (const int32_t *const *)pr, lens, NULL);
	for (uint32_t g = 0; g < o->gen && !rc; g++)
		rc = rt_decoder_step(d, forced && g ? forced +
				     (size_t)(g - 1) * o->batch : NULL,
				     toks + (size_t)g * o->batch);
	if (rc)
		goto out;
	rt_decoder_stats(d, &st);
	*kv_per_step = (double)st.backend.kv_bytes_read / o->gen;

out:
	if (d)
		rt_decoder_destroy(d);
	if (pr)
		for (uint32_t s = 0; s < o->batch; s++)
			free(pr[s]);
	free(pr);
	free(lens);
	return rc;
}

static int bench_model(const struct sopts *o, const char *preset,
		       struct model_res *mr)
{
	size_t nt = (size_t)o->gen * o->batch;
	int32_t *dense = malloc(nt * 4), *sp = malloc(nt * 4);
	struct rt_model *m = NULL;
	int rc = -ENOMEM;

	if (!dense || !sp)
		goto out;
	rc = load_synth(preset, o->prompt + o->gen + 64, &m);
	if (rc || !m) {
		rc = rc ? rc : -EINVAL;
		goto out;
	}
	snprintf(mr->preset, sizeof(mr->preset), "%s", preset);
	mr->heads = m->hp.n_head;
	mr->kv_heads = m->hp.n_head_kv;
	mr->layers = m->hp.n_layer;
	mr->steps = o->gen;
	rc = decode(m, o, 0, NULL, dense, &mr->kv_dense);
	for (int i = 0; i < NRATIO && !rc; i++) {
		size_t same = 0;

		rc = decode(m, o, ratios[i], dense, sp, &mr->kv[i]);
		for (size_t t = 0; t < nt; t++)
			same += sp[t] == dense[t];
		mr->agree[i] = (double)same / (double)nt;
	}
out:
	if (m)
		rt_model_close(m);
	free(dense);
	free(sp);
	return rc;
}

/* ---- report ------------------------------------------------------------- */

static void report(FILE *f, const struct sopts *o, const struct attn_res *ar,
		   const struct model_res *mr, int nm)
{
	fprintf(f, "{\n  \"bench\": \"sparf\",\n  \"attention\": {\"kv_heads\": %u, "
		"\"head_dim\": 128, \"dtype\": \"f16\", \"tokens\": %u, "
		"\"batch\": %u, \"iters\": %u, \"contexts\": [\n", o->heads,
		o->tokens, o->abatch, o->iters);
	for (int s = 0; s < NCTX; s++) {
		const struct attn_res *r = &ar[s];

		fprintf(f, "    {\"gqa\": %u, \"q_heads\": %u, \"dense\": {\"flash_bytes\": %.0f, "
			"\"modeled_ns\": %.0f, \"measured_ns\": %.0f}, \"sparse\": [",
			r->gqa, r->q_heads, r->bytes_dense, r->mod_dense,
			r->t_dense);
		for (int i = 0; i < NRATIO; i++)
			fprintf(f, "%s\n      {\"ratio\": \"%s\", \"nmse\": %.6g, "
				"\"flash_bytes\": %.0f, \"bytes_over_dense\": %.4f, "
				"\"modeled_ns\": %.0f, \"modeled_over_dense\": %.4f, "
				"\"measured_ns\": %.0f, \"measured_over_dense\": %.4f}",
				i ? "," : "", rnames[i], r->nmse[i], r->bytes[i],
				r->bytes[i] / r->bytes_dense, r->mod[i],
				r->mod[i] / r->mod_dense, r->t[i], r->t_ratio[i]);
		fprintf(f, "]}%s\n", s == NCTX - 1 ? "" : ",");
	}
	fprintf(f, "  ]},\n  \"models\": [\n");
	for (int k = 0; k < nm; k++) {
		fprintf(f, "    {\"preset\": \"%s\", \"layers\": %u, \"heads\": %u, "
			"\"kv_heads\": %u, \"batch\": %u, \"prompt\": %u, "
			"\"steps\": %u, \"teacher_forced\": true, "
			"\"kv_bytes_per_step_dense\": %.0f, \"sparse\": [",
			mr[k].preset, mr[k].layers, mr[k].heads, mr[k].kv_heads,
			o->batch, o->prompt, mr[k].steps, mr[k].kv_dense);
		for (int i = 0; i < NRATIO; i++)
			fprintf(f, "%s{\"ratio\": \"%s\", \"token_agreement\": %.4f, "
				"\"kv_bytes_per_step\": %.0f}", i ? ", " : "",
				rnames[i], mr[k].agree[i], mr[k].kv[i]);
		fprintf(f, "]}%s\n", k == nm - 1 ? "" : ",");
	}
	fprintf(f, "  ]\n}\n");
}

static void print_text(const struct sopts *o, const struct attn_res *ar,
		       const struct model_res *mr, int nm)
{
	for (int s = 0; s < NCTX; s++) {
		const struct attn_res *r = &ar[s];

		printf("attention, %u x %u tokens, %u/%u heads (dense: %.1f MiB flash, modeled %.3f ms, measured %.3f ms)\n",
		       o->abatch, o->tokens, r->q_heads, o->heads,
		       r->bytes_dense / 1048576.0, r->mod_dense / 1e6,
		       r->t_dense / 1e6);
		printf("  %-5s %10s %12s %12s %12s\n", "ratio", "NMSE",
		       "bytes/dense", "modeled/d", "measured/d");
		for (int i = 0; i < NRATIO; i++)
			printf("  %-5s %10.3g %12.4f %12.4f %12.4f\n", rnames[i],
			       r->nmse[i], r->bytes[i] / r->bytes_dense,
			       r->mod[i] / r->mod_dense, r->t_ratio[i]);
	}
	for (int k = 0; k < nm; k++) {
		printf("model %s (%u layers, %u/%u heads), %u steps teacher-forced:\n",
		       mr[k].preset, mr[k].layers, mr[k].heads, mr[k].kv_heads,
		       mr[k].steps);
		for (int i = 0; i < NRATIO; i++)
			printf("  %-5s greedy tokens agree %.1f%%, KV read/step %.1f KiB (dense %.1f KiB, %.3fx)\n",
			       rnames[i], 100.0 * mr[k].agree[i],
			       mr[k].kv[i] / 1024.0, mr[k].kv_dense / 1024.0,
			       mr[k].kv_dense > 0 ? mr[k].kv[i] / mr[k].kv_dense
						  : 0);
	}
}

int bench_sparf_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", required_argument, NULL, 'j' },
		{ "tokens", required_argument, NULL, 't' },
		{ "heads", required_argument, NULL, 'H' },
		{ "iters", required_argument, NULL, 'i' },
		{ "gen", required_argument, NULL, 'g' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "batch", required_argument, NULL, 'b' },
		{ "attn-batch", required_argument, NULL, 'B' },
		{ "models", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sopts o = { 32768, 8, 7, 256, 2048, 2, 8, NULL,
			   "tiny-mha,small" };
	struct attn_res ar[NCTX];
	struct model_res mr[4];
	char mbuf[64], *save = NULL, *tok;
	int c, rc, nm = 0;

	memset(ar, 0, sizeof(ar));
	memset(mr, 0, sizeof(mr));
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'j': o.json = optarg; break;
		case 't': o.tokens = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'H': o.heads = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'i': o.iters = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'g': o.gen = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'p': o.prompt = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'b': o.batch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'B': o.abatch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'm': o.models = optarg; break;
		default:
			printf("usage: csd-bench sparf [--json FILE] [--tokens N] [--heads H]\n"
			       "         [--attn-batch B] [--iters N] [--gen N] [--prompt N]\n"
			       "         [--batch B] [--models tiny-mha,small]\n"
			       "  defaults: 8 x 32768 tokens, 8 kv heads, 7 iterations; models:\n"
			       "  256 steps after 2048-token prompts, batch 2 (about 2 minutes).\n"
			       "  Longer: --prompt 4096 --batch 4 --models tiny-mha,tiny,small\n"
			       "  --iters 21 (host prefill dominates: ~10 minutes).\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (o.tokens < 2048 || !o.heads || o.heads > 64 || !o.iters ||
	    o.iters > MAXIT || !o.gen || !o.prompt || !o.batch ||
	    !o.abatch || o.abatch > 64 ||
	    strlen(o.models) >= sizeof(mbuf)) {
		fprintf(stderr, "csd-bench sparf: bad option value\n");
		return 2;
	}
	for (int i = 0; i < NCTX; i++) {
		rc = bench_attention(&o, ctx_gqa[i], &ar[i]);
		if (rc) {
			fprintf(stderr, "csd-bench sparf: attention: %s\n",
				strerror(-rc));
			return 1;
		}
	}
	strcpy(mbuf, o.models);
	for (tok = strtok_r(mbuf, ",", &save); tok && nm < 4;
	     tok = strtok_r(NULL, ",", &save)) {
		rc = bench_model(&o, tok, &mr[nm]);
		if (rc) {
			fprintf(stderr, "csd-bench sparf: model %s: %s\n", tok,
				strerror(-rc));
			return 1;
		}
		nm++;
	}
	print_text(&o, ar, mr, nm);
	if (o.json) {
		FILE *f = fopen(o.json, "w");

		if (!f) {
			fprintf(stderr, "csd-bench sparf: %s: %s\n", o.json,
				strerror(errno));
			return 1;
		}
		report(f, &o, ar, mr, nm);
		if (fclose(f)) {
			fprintf(stderr, "csd-bench sparf: %s: write failed\n",
				o.json);
			return 1;
		}
	}
	return 0;
}
