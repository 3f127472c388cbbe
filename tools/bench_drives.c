// SPDX-License-Identifier: MIT
/*
 * bench_drives.c - `csd-bench drives`: modeled decode throughput with the
 * KV cache and attention spread over 1, 2, 4, 8 drives (a libcsd device
 * group, heads split over the drives by default), for 7B- and 13B-class
 * shapes, compared with a FlexGen-style baseline and with InstInfer's
 * reported multi-drive figure.
 *
 * For every shape and drive count N a group of N embedded drives (InstInfer
 * timing profile) holds one layer's KV of --run-batch sequences of --ctx
 * tokens (zeros: the timing model does not look at values).  Fused decode
 * attention calls run on it; each call's modeled device time comes from the
 * completions (struct csd_attn_result.modeled_ns: for a group the slowest
 * member, the members working in parallel), which price the real flash
 * pages read on every channel, the drive's link and command overhead.  A
 * batch of B sequences is modeled as B / run-batch such calls per layer
 * (serialized on the drives), so the KV in RAM stays small.  Then, per
 * decode step, as `csd-bench e2e` models it:
 *
 *   dev  = layers x (B / run-batch) x modeled call time
 *   host = a modeled host accelerator: per layer max(weight bytes /
 *          host_gbps, 2 x params x B / host_tflops), plus the output matrix
 *   ssd  = KV bytes of the step / ssd_gbps (flexgen reading the KV from one
 *          SSD, perfectly overlapped)
 *   csd tokens/s = B / max(host, dev), flexgen tokens/s = B / max(host, ssd)
 *
 * Output: a table (or JSON with --json -), --json FILE / --png FILE (gnuplot,
 * as bench_e2e's sweep.gp; needs gnuplot on $PATH).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <csd.h>

#include "csd-bench.h"

#define DR_MAX_N	8
#define DR_MAX_SHAPES	4

/* InstInfer (HPCA 2025), /work/shared/instinfer-notes.md */
#define II_DENSE_1	6.85	/* 1 CSD, dense, x FlexGen (OPT-13B) */
#define II_SPARF_1	11.1	/* 1 CSD, SparF */
#define II_2CSD		10.5	/* 2 CSDs, x FlexGen */

struct dr_shape {
	const char *name;
	uint32_t layers, heads, kv_heads, head_dim, embd, ff, vocab;
};

/* Llama-2 7B / 13B dimensions, and 7B with 8 KV heads (GQA). */
static const struct dr_shape dr_shapes[] = {
	{ "7b", 32, 32, 32, 128, 4096, 11008, 32000 },
	{ "13b", 40, 40, 40, 128, 5120, 13824, 32000 },
	{ "7b-gqa", 32, 32, 8, 128, 4096, 11008, 32000 },
	{ NULL, 0, 0, 0, 0, 0, 0, 0 },
};

struct dr_opts {
	const struct dr_shape *shapes[DR_MAX_SHAPES];
	int nshape;
	uint32_t drives[DR_MAX_N];
	int ndrive;
	uint32_t batch, run_batch, ctx, steps, chunk;
	uint32_t split;
	float sparse;
	double ssd_gbps, host_gbps, host_tflops;
	const char *device, *json, *png;
	int json_stdout;
};

struct dr_point {
	const struct dr_shape *s;
	uint32_t n;
	int ret;
	double call_ms;		/* modeled time of one call (run_batch seqs) */
	double dev_s, host_s, ssd_s;	/* per decode step */
	double kv_bytes;	/* KV attended per step */
	double csd_tok_s, fg_tok_s, over_fg, speedup;
	double member_ms_min, member_ms_max;	/* per-member share */
};

static void dr_usage(FILE *f)
{
	fprintf(f,
"usage: csd-bench drives [options]\n"
"  --shapes LIST       7b,13b,7b-gqa (default 7b,13b)\n"
"  --drives LIST       drive counts (default 1,2,4,8; at most 8 values)\n"
"  --batch B           modeled batch (default 64)\n"
"  --ctx N             context tokens per sequence (default 8192)\n"
"  --run-batch b       sequences actually stored and attended per call\n"
"                      (default 4; B must be a multiple of b)\n"
"  --steps N           measured calls per point (default 2, after a warm-up)\n"
"  --split heads|tokens  how the group spreads KV (default heads)\n"
"  --chunk N           token-split stripe (default: library's)\n"
"  --sparse RATIO      SparF attention (e.g. 0.125) instead of dense\n"
"  --device STR        one member's device string (default\n"
"                      embedded:profile=instinfer)\n"
"  --ssd-gbps X        flexgen's SSD bandwidth (default 7.0)\n"
"  --host-gbps X       modeled host memory bandwidth (default 768)\n"
"  --host-tflops X     modeled host fp16 TFLOP/s (default 150)\n"
"  --json FILE         JSON to FILE (\"-\": stdout instead of the table)\n"
"  --png FILE          plot with gnuplot\n");
}

enum {
	D_SHAPES = 256, D_DRIVES, D_BATCH, D_CTX, D_RUNB, D_STEPS, D_SPLIT,
	D_CHUNK, D_SPARSE, D_DEVICE, D_SSD, D_HOSTBW, D_HOSTFL, D_JSON, D_PNG,
};

static const struct option dr_long[] = {
	{ "shapes", required_argument, NULL, D_SHAPES },
	{ "drives", required_argument, NULL, D_DRIVES },
	{ "batch", required_argument, NULL, D_BATCH },
	{ "ctx", required_argument, NULL, D_CTX },
	{ "run-batch", required_argument, NULL, D_RUNB },
	{ "steps", required_argument, NULL, D_STEPS },
	{ "split", required_argument, NULL, D_SPLIT },
	{ "chunk", required_argument, NULL, D_CHUNK },
	{ "sparse", required_argument, NULL, D_SPARSE },
	{ "device", required_argument, NULL, D_DEVICE },
	{ "ssd-gbps", required_argument, NULL, D_SSD },
	{ "host-gbps", required_argument, NULL, D_HOSTBW },
	{ "host-tflops", required_argument, NULL, D_HOSTFL },
	{ "json", required_argument, NULL, D_JSON },
	{ "png", required_argument, NULL, D_PNG },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int dr_u32(const char *s, const char *what, uint32_t min, uint32_t max,
		  uint32_t *v)
{
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s || *end || x < min || x > max) {
		fprintf(stderr, "csd-bench drives: bad %s '%s'\n", what, s);
		return -1;
	}
	*v = (uint32_t)x;
	return 0;
}

static int dr_dbl(const char *s, const char *what, double min, double max,
		  double *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || *end || !(x >= min) || x > max) {
		fprintf(stderr, "csd-bench drives: bad %s '%s'\n", what, s);
		return -1;
	}
	*v = x;
	return 0;
}

static int dr_list(const char *s, struct dr_opts *o, int shapes)
{
	char buf[128], *save = NULL, *tok;
	const struct dr_shape *sh;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if (shapes)
		o->nshape = 0;
	else
		o->ndrive = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (!shapes) {
			if (o->ndrive == DR_MAX_N ||
			    dr_u32(tok, "drive count", 1, 256,
				   &o->drives[o->ndrive]))
				return -1;
			o->ndrive++;
			continue;
		}
		for (sh = dr_shapes; sh->name; sh++)
			if (!strcmp(sh->name, tok))
				break;
		if (!sh->name || o->nshape == DR_MAX_SHAPES) {
			fprintf(stderr, "csd-bench drives: unknown shape '%s'\n",
				tok);
			return -1;
		}
		o->shapes[o->nshape++] = sh;
	}
	return (shapes ? o->nshape : o->ndrive) ? 0 : -1;
}

/* 0 ok, 1 help shown, -1 error */
static int dr_parse(int argc, char **argv, struct dr_opts *o)
{
	double d;
	int c;

	memset(o, 0, sizeof(*o));
	o->shapes[0] = &dr_shapes[0];
	o->shapes[1] = &dr_shapes[1];
	o->nshape = 2;
	o->drives[0] = 1;
	o->drives[1] = 2;
	o->drives[2] = 4;
	o->drives[3] = 8;
	o->ndrive = 4;
	o->batch = 64;
	o->run_batch = 4;
	o->ctx = 8192;
	o->steps = 2;
	o->ssd_gbps = 7.0;
	o->host_gbps = 768.0;
	o->host_tflops = 150.0;
	o->device = "embedded:profile=instinfer";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", dr_long, NULL)) != -1) {
		switch (c) {
		case D_SHAPES:
		case D_DRIVES:
			if (dr_list(optarg, o, c == D_SHAPES)) {
				fprintf(stderr, "csd-bench drives: bad list '%s'\n",
					optarg);
				return -1;
			}
			break;
		case D_BATCH:
			if (dr_u32(optarg, "--batch", 1, 1u << 16, &o->batch))
				return -1;
			break;
		case D_CTX:
			if (dr_u32(optarg, "--ctx", 1, 1u << 22, &o->ctx))
				return -1;
			break;
		case D_RUNB:
			if (dr_u32(optarg, "--run-batch", 1, 1024,
				   &o->run_batch))
				return -1;
			break;
		case D_STEPS:
			if (dr_u32(optarg, "--steps", 1, 1000, &o->steps))
				return -1;
			break;
		case D_SPLIT:
			if (!strcmp(optarg, "heads")) {
				o->split = CSD_SPLIT_HEADS;
			} else if (!strcmp(optarg, "tokens")) {
				o->split = CSD_SPLIT_TOKENS;
			} else {
				fprintf(stderr, "csd-bench drives: --split heads|tokens\n");
				return -1;
			}
			break;
		case D_CHUNK:
			if (dr_u32(optarg, "--chunk", 1, 1u << 24, &o->chunk))
				return -1;
			break;
		case D_SPARSE:
			if (dr_dbl(optarg, "--sparse", 1e-6, 1.0, &d))
				return -1;
			o->sparse = (float)d;
			break;
		case D_DEVICE: o->device = optarg; break;
		case D_SSD:
			if (dr_dbl(optarg, "--ssd-gbps", 1e-3, 1e6, &o->ssd_gbps))
				return -1;
			break;
		case D_HOSTBW:
			if (dr_dbl(optarg, "--host-gbps", 1e-3, 1e9,
				   &o->host_gbps))
				return -1;
			break;
		case D_HOSTFL:
			if (dr_dbl(optarg, "--host-tflops", 1e-6, 1e9,
				   &o->host_tflops))
				return -1;
			break;
		case D_JSON:
			if (!strcmp(optarg, "-"))
				o->json_stdout = 1;
			else
				o->json = optarg;
			break;
		case D_PNG: o->png = optarg; break;
		case 'h':
			dr_usage(stdout);
			return 1;
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "csd-bench drives: unexpected argument '%s'\n",
			argv[optind]);
		return -1;
	}
	if (o->batch % o->run_batch || o->run_batch > o->batch) {
		fprintf(stderr,
			"csd-bench drives: --batch must be a multiple of --run-batch\n");
		return -1;
	}
	return 0;
}

/* Modeled host accelerator time of one decode step (fp16 weights). */
static double dr_host_model(const struct dr_opts *o, const struct dr_shape *s)
{
	double bw = o->host_gbps * 1e9, fl = o->host_tflops * 1e12;
	double kvd = (double)s->kv_heads * s->head_dim;
	double params = (double)s->embd * s->embd * 2 + 2.0 * s->embd * kvd +
			3.0 * s->embd * s->ff;
	double out = (double)s->embd * s->vocab, a, b, t;

	a = params * 2 / bw;
	b = 2 * params * o->batch / fl;
	t = s->layers * (a > b ? a : b);
	a = out * 2 / bw;
	b = 2 * out * o->batch / fl;
	return t + (a > b ? a : b);
}

static int dr_run_point(const struct dr_opts *o, struct dr_point *p)
{
	const struct dr_shape *s = p->s;
	struct csd_group_opts go = { o->split, o->chunk };
	const char **specs = NULL;
	struct csd_ctx_params cp;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	struct csd_attn_result res;
	struct csd_attn_req r;
	uint32_t *seqs = NULL, i, st, per;
	size_t row = (size_t)s->kv_heads * s->head_dim * 2;
	size_t qn = (size_t)s->heads * s->head_dim;
	float *q = NULL, *out = NULL;
	uint16_t *kv = NULL;
	uint64_t ns = 0;
	int rc = -ENOMEM;

	specs = calloc(p->n, sizeof(*specs));
	if (!specs)
		goto out;
	for (i = 0; i < p->n; i++)
		specs[i] = o->device;
	rc = csd_group_open(specs, p->n, &go, &dev);
	if (rc) {
		fprintf(stderr, "csd-bench drives: open %u x %s: %s\n", p->n,
			o->device, strerror(-rc));
		goto out;
	}
	memset(&cp, 0, sizeof(cp));
	cp.layers = 1;
	cp.kv_heads = s->kv_heads;
	cp.q_heads = s->heads;
	cp.head_dim = s->head_dim;
	cp.dtype = CSD_KV_F16;
	cp.max_seqs = o->run_batch;
	cp.max_tokens = o->ctx + o->steps + 2;
	rc = csd_ctx_create(dev, &cp, &ctx);
	if (rc) {
		fprintf(stderr, "csd-bench drives: %s on %u drives: context: %s\n",
			s->name, p->n, strerror(-rc));
		goto out;
	}
	per = (uint32_t)(((size_t)8 << 20) / row);
	if (per > o->ctx)
		per = o->ctx;
	kv = calloc((size_t)per * row, 1);
	seqs = calloc(o->run_batch, sizeof(*seqs));
	q = calloc((size_t)o->run_batch * qn, sizeof(float));
	out = calloc((size_t)o->run_batch * qn, sizeof(float));
	rc = -ENOMEM;
	if (!kv || !seqs || !q || !out)
		goto out;
	for (i = 0; i < o->run_batch; i++) {
		uint32_t t, nt;

		seqs[i] = i;
		for (t = 0; t < o->ctx; t += nt) {
			nt = o->ctx - t < per ? o->ctx - t : per;
			rc = csd_kv_append(ctx, i, 0, t, nt, kv, kv);
			if (rc) {
				fprintf(stderr, "csd-bench drives: append: %s\n",
					strerror(-rc));
				goto out;
			}
		}
	}
	for (i = 0; i < o->run_batch * qn; i++)
		q[i] = (float)((i * 2654435761u) >> 20) / 4096.0f - 0.5f;
	memset(&r, 0, sizeof(r));
	r.layer = 0;
	r.nseq = o->run_batch;
	r.flags = CSD_ATTN_FUSED_KV;
	r.seqs = seqs;
	r.q = q;
	r.k_new = kv;
	r.v_new = kv;
	r.out = out;
	if (o->sparse > 0) {
		r.flags |= CSD_ATTN_SPARSE;
		r.sparse.ratio = o->sparse;
	}
	/* warm-up, then the measured calls */
	for (st = 0; st <= o->steps; st++) {
		rc = csd_attn_run(ctx, &r, &res);
		if (rc) {
			fprintf(stderr, "csd-bench drives: attention: %s\n",
				strerror(-rc));
			goto out;
		}
		if (st)
			ns += res.modeled_ns;
	}
	p->call_ms = (double)ns / o->steps / 1e6;
	rc = 0;
out:
	if (ctx)
		csd_ctx_destroy(ctx);
	csd_dev_close(dev);
	free(specs);
	free(kv);
	free(seqs);
	free(q);
	free(out);
	return p->ret = rc;
}

static void dr_model(const struct dr_opts *o, struct dr_point *p,
		     const struct dr_point *one)
{
	const struct dr_shape *s = p->s;
	double calls = (double)o->batch / o->run_batch;

	p->kv_bytes = (double)o->batch * (o->ctx + 1) * s->kv_heads *
		      s->head_dim * 2 * 2 * s->layers;
	p->dev_s = s->layers * calls * p->call_ms / 1e3;
	p->host_s = dr_host_model(o, s);
	p->ssd_s = p->kv_bytes / (o->ssd_gbps * 1e9);
	p->csd_tok_s = o->batch / (p->host_s > p->dev_s ? p->host_s : p->dev_s);
	p->fg_tok_s = o->batch / (p->host_s > p->ssd_s ? p->host_s : p->ssd_s);
	p->over_fg = p->csd_tok_s / p->fg_tok_s;
	p->speedup = one && one->csd_tok_s > 0 ? p->csd_tok_s / one->csd_tok_s :
		     0;
}

/* ---- output ----------------------------------------------------------- */

static const char *dr_split_name(const struct dr_opts *o)
{
	return o->split == CSD_SPLIT_TOKENS ? "tokens" : "heads";
}

static void dr_table(const struct dr_opts *o, const struct dr_point *pts,
		     int npts)
{
	const struct dr_point *p2 = NULL, *p1 = NULL;
	int i;

	printf("modeled decode: batch %u, context %u, %s attention, KV split "
	       "by %s over drives of \"%s\"\n", o->batch, o->ctx,
	       o->sparse > 0 ? "SparF" : "dense", dr_split_name(o), o->device);
	printf("host %.0f GB/s %.0f TFLOP/s; flexgen reads KV from a %.1f GB/s "
	       "SSD\n\n", o->host_gbps, o->host_tflops, o->ssd_gbps);
	printf("%-7s %6s | %10s %10s %9s | %9s %9s %8s | %8s %9s\n", "shape",
	       "drives", "call ms", "dev s", "host s", "csd tok/s", "fg tok/s",
	       "ssd s", "x 1drive", "x flexgen");
	for (i = 0; i < npts; i++) {
		const struct dr_point *p = &pts[i];

		if (p->ret) {
			printf("%-7s %6u | failed: %s\n", p->s->name, p->n,
			       strerror(-p->ret));
			continue;
		}
		printf("%-7s %6u | %10.3f %10.3f %9.4f | %9.2f %9.2f %8.2f | "
		       "%7.2fx %8.2fx\n", p->s->name, p->n, p->call_ms,
		       p->dev_s, p->host_s, p->csd_tok_s, p->fg_tok_s,
		       p->ssd_s, p->speedup, p->over_fg);
		if (!strcmp(p->s->name, "13b") && p->n == 2)
			p2 = p;
		if (!strcmp(p->s->name, "13b") && p->n == 1)
			p1 = p;
	}
	printf("\nInstInfer (HPCA 2025) reports %.2fx FlexGen with one CSD "
	       "(dense; %.1fx with SparF) and about %.1fx with 2 CSDs "
	       "(OPT-13B).\n", II_DENSE_1, II_SPARF_1, II_2CSD);
	if (p1 && p2)
		printf("Here (13b, modeled): 1 drive %.2fx, 2 drives %.2fx "
		       "FlexGen; 2 drives / 1 drive = %.2fx (InstInfer: "
		       "%.2fx).\n", p1->over_fg, p2->over_fg, p2->speedup,
		       II_2CSD / II_DENSE_1);
}

static void dr_json(FILE *f, const struct dr_opts *o,
		    const struct dr_point *pts, int npts)
{
	int i;

	fprintf(f, "{\n  \"command\": \"drives\",\n");
	fprintf(f, "  \"config\": {\"batch\": %u, \"ctx\": %u, "
		"\"run_batch\": %u, \"steps\": %u, \"split\": \"%s\", "
		"\"chunk_tokens\": %u, \"sparse_ratio\": %.6f, "
		"\"device\": \"%s\", \"ssd_gbps\": %.3f, \"host_gbps\": %.3f, "
		"\"host_tflops\": %.3f},\n", o->batch, o->ctx, o->run_batch,
		o->steps, dr_split_name(o), o->chunk, o->sparse, o->device,
		o->ssd_gbps, o->host_gbps, o->host_tflops);
	fprintf(f, "  \"instinfer\": {\"dense_1_csd_over_flexgen\": %.2f, "
		"\"sparf_1_csd_over_flexgen\": %.2f, "
		"\"two_csd_over_flexgen\": %.2f},\n", II_DENSE_1, II_SPARF_1,
		II_2CSD);
	fprintf(f, "  \"notes\": \"modeled per decode step: dev_s = layers x "
		"batch/run_batch x modeled time of one fused attention call "
		"of run_batch sequences on the group (slowest member); host_s "
		"= modeled accelerator; ssd_s = KV bytes / ssd_gbps; tokens/s "
		"= batch / max(host_s, dev_s or ssd_s).\",\n");
	fprintf(f, "  \"points\": [\n");
	for (i = 0; i < npts; i++) {
		const struct dr_point *p = &pts[i];
		const struct dr_shape *s = p->s;

		fprintf(f, "    {\"shape\": \"%s\", \"layers\": %u, "
			"\"heads\": %u, \"kv_heads\": %u, \"head_dim\": %u, "
			"\"drives\": %u, \"ok\": %s, \"call_ms\": %.6f, "
			"\"dev_s\": %.6f, \"host_s\": %.6f, \"ssd_s\": %.6f, "
			"\"kv_bytes_per_step\": %.0f, "
			"\"csd_tokens_per_s\": %.4f, "
			"\"flexgen_tokens_per_s\": %.4f, "
			"\"csd_over_flexgen\": %.4f, "
			"\"speedup_over_1_drive\": %.4f}%s\n",
			s->name, s->layers, s->heads, s->kv_heads, s->head_dim,
			p->n, p->ret ? "false" : "true", p->call_ms, p->dev_s,
			p->host_s, p->ssd_s, p->kv_bytes, p->csd_tok_s,
			p->fg_tok_s, p->over_fg, p->speedup,
			i == npts - 1 ? "" : ",");
	}
	fprintf(f, "  ]\n}\n");
}

static uint32_t dr_max_drives(const struct dr_opts *o)
{
	uint32_t m = 1;
	int i;

	for (i = 0; i < o->ndrive; i++)
		if (o->drives[i] > m)
			m = o->drives[i];
	return m;
}

/* gnuplot through a pipe; the data inline as datablocks. */
static int dr_png(const struct dr_opts *o, const struct dr_point *pts,
		  int npts)
{
	static const char *const colors[] = { "#1f77b4", "#d62728", "#2ca02c",
					      "#9467bd" };
	FILE *g;
	int si, i, rc;

	g = popen("gnuplot", "w");
	if (!g) {
		fprintf(stderr, "csd-bench drives: cannot run gnuplot: %s\n",
			strerror(errno));
		return -1;
	}
	for (si = 0; si < o->nshape; si++) {
		fprintf(g, "$d%d << EOD\n", si);
		for (i = 0; i < npts; i++)
			if (pts[i].s == o->shapes[si] && !pts[i].ret)
				fprintf(g, "%u %.4f %.4f %.4f\n", pts[i].n,
					pts[i].csd_tok_s, pts[i].over_fg,
					pts[i].fg_tok_s);
		fprintf(g, "EOD\n");
	}
	fprintf(g,
"set terminal pngcairo size 1400,620 font 'sans,11'\n"
"set output '%s'\n"
"set multiplot layout 1,2\n"
"set logscale x 2\n"
"set xlabel 'drives'\n"
"set xtics (1, 2, 4, 8, 16, 32, 64, 128, 256)\n"
"set xrange [0.8:%u]\n"
"set grid\n"
"set key top left box\n"
"set title \"modeled decode throughput, KV and %s attention on N drives (split by %s)\\nbatch %u, context %u, host %.0f GB/s %.0f TFLOP/s\"\n"
"set ylabel 'tokens/s'\n"
"set logscale y 2\n",
		o->png, dr_max_drives(o) * 5 / 4 + 1,
		o->sparse > 0 ? "SparF" : "dense", dr_split_name(o),
		o->batch, o->ctx, o->host_gbps, o->host_tflops);
	fprintf(g, "plot ");
	for (si = 0; si < o->nshape; si++)
		fprintf(g, "%s$d%d using 1:2 with linespoints lw 2 pt 7 lc rgb "
			"'%s' title '%s csd', $d%d using 1:4 with lines dt 2 "
			"lc rgb '%s' title '%s flexgen (%.0f GB/s SSD)'",
			si ? ", " : "", si, colors[si % 4],
			o->shapes[si]->name, si, colors[si % 4],
			o->shapes[si]->name, o->ssd_gbps);
	fprintf(g, "\nunset logscale y\n"
"set title \"csd / flexgen tokens/s vs InstInfer's reported figures (OPT-13B)\"\n"
"set ylabel 'x flexgen'\n"
"set yrange [0:*]\n"
"plot ");
	for (si = 0; si < o->nshape; si++)
		fprintf(g, "$d%d using 1:3 with linespoints lw 2 pt 7 lc rgb "
			"'%s' title '%s, modeled', ", si, colors[si % 4],
			o->shapes[si]->name);
	fprintf(g, "'-' using 1:2 with points pt 9 ps 2.5 lc rgb '#000000' "
		"title 'InstInfer reported (1 CSD dense, 2 CSDs)'\n"
		"1 %.2f\n2 %.2f\ne\nunset multiplot\n", II_DENSE_1, II_2CSD);
	rc = pclose(g);
	if (rc) {
		fprintf(stderr, "csd-bench drives: gnuplot failed (status %d)\n",
			rc);
		return -1;
	}
	return 0;
}

int bench_drives_main(int argc, char **argv)
{
	struct dr_point pts[DR_MAX_SHAPES * DR_MAX_N];
	struct dr_opts o;
	int si, di, n = 0, rc = 0;

	si = dr_parse(argc, argv, &o);
	if (si) {
		if (si < 0)
			dr_usage(stderr);
		return si < 0 ? 2 : 0;
	}
	memset(pts, 0, sizeof(pts));
	for (si = 0; si < o.nshape; si++) {
		const struct dr_point *one = NULL;

		for (di = 0; di < o.ndrive; di++) {
			struct dr_point *p = &pts[n++];

			p->s = o.shapes[si];
			p->n = o.drives[di];
			fprintf(stderr, "drives: %s on %u drive(s)...\n",
				p->s->name, p->n);
			if (dr_run_point(&o, p)) {
				rc = 1;
				continue;
			}
			if (p->n == 1)
				one = p;
			dr_model(&o, p, one);
		}
	}
	if (o.json_stdout)
		dr_json(stdout, &o, pts, n);
	else
		dr_table(&o, pts, n);
	if (o.json) {
		FILE *f = fopen(o.json, "w");

		if (!f) {
			fprintf(stderr, "csd-bench drives: %s: %s\n", o.json,
				strerror(errno));
			rc = 1;
		} else {
			dr_json(f, &o, pts, n);
			if (fclose(f))
				rc = 1;
		}
	}
	if (o.png && dr_png(&o, pts, n))
		rc = 1;
	return rc;
}
