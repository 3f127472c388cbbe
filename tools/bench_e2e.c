// SPDX-License-Identifier: MIT
/*
 * bench_e2e.c - `csd-bench e2e`: end-to-end decode throughput of the csd
 * backend against the flexgen baseline over a batch sweep, measured and
 * modeled - the batch-size figure of the InstInfer paper.
 *
 * For every batch size B the same synthetic llama model decodes B
 * sequences of --ctx tokens of (synthetic) context:
 *
 *   measured  csd on the embedded drive in pacing mode (every attention
 *             call completes at its modeled device time, InstInfer drive
 *             profile), and flexgen whose KV reads are paced to a modeled
 *             SSD (flexgen's ssd_gbps= option, --ssd-gbps, default 7 GB/s
 *             for PCIe 4.0 x4; --no-ssd-pacing reads the RAM file unpaced,
 *             for comparison).  Host compute runs on this CPU, so these
 *             numbers depend on it.
 *   modeled   per decode step, from the runs' byte and device-time counts:
 *               dev  = the drive's modeled attention time (csd stats)
 *               ssd  = KV bytes attended / ssd bandwidth (flexgen)
 *               host = a modeled host accelerator: per layer
 *                      max(weight bytes / host_gbps, flops / host_tflops)
 *             end-to-end step time = max(host, dev | ssd) (host compute
 *             overlapped with attention / reads, as both backends do), and
 *             the attention-only ratio ssd / dev.  These do not depend on
 *             this CPU (the "cpu-host" variant uses the measured host time
 *             of this CPU instead of the modeled accelerator).
 *
 * Output: a table, or --json; --out DIR writes sweep.json, sweep.dat and a
 * gnuplot script sweep.gp (`cd DIR && gnuplot sweep.gp` -> sweep.png).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "csd-bench.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_ops.h"
#include "rt_synth.h"

#define E2E_MAX_BATCHES	32

struct e2e_opts {
	const char *preset, *model, *device, *kv_dir, *fg_extra, *out;
	uint32_t layers, ctx, gen, threads;
	int wtype;
	uint32_t batches[E2E_MAX_BATCHES];
	int nbatch;
	double ssd_gbps, host_gbps, host_tflops;
	int json, no_flexgen, no_pacing;
};

struct e2e_run {
	int ran, ret;
	char err[200];
	char opts[256];
	double decode_s, tok_s, host_s, wait_s, xfer_s, modeled_s;
	double read_gbps;		/* link bytes / decode s (flexgen) */
	uint64_t kv_bytes, link_bytes, steps;
	int32_t *tokens;		/* [gen][batch] */
};

struct e2e_point {
	struct e2e_run csd, fg;
	uint32_t batch;
	int match;			/* -1: flexgen not run */
	double meas_ratio;
	/* modeled, per decode step */
	double kv_bytes, dev_s, ssd_s, host_s, cpu_host_s;
	double csd_tok_s, fg_tok_s;	/* modeled, accelerator host */
	double ratio_e2e, ratio_serial, ratio_attn, ratio_cpu;
};

static void e2e_usage(FILE *f)
{
	fprintf(f,
"usage: csd-bench e2e [options]\n"
"  --preset P          synthetic model shape (default 7b-gqa)\n"
"  --model FILE        use a GGUF model instead of --preset\n"
"  --layers N          layers of the synthetic model (default 1)\n"
"  --type T            weight type f16|bf16|q8_0|f32 (default f16)\n"
"  --batches LIST      comma-separated batch sizes (default 8,16,32,64,128,256)\n"
"  --ctx N             context tokens per sequence (default 4096)\n"
"  --gen N             measured decode steps per point (default 3; +1 warm-up)\n"
"  --device STR        csd device (default embedded:pacing=1)\n"
"  --kv-dir DIR        flexgen KV file directory (default /dev/shm if present,\n"
"                      with direct=0; a RAM file paced to --ssd-gbps)\n"
"  --flexgen-opts STR  extra flexgen options appended (e.g. qd=16)\n"
"  --ssd-gbps X        modeled SSD read bandwidth, GB/s (default 7.0)\n"
"  --no-ssd-pacing     do not pace flexgen's reads (model still uses --ssd-gbps)\n"
"  --host-gbps X       modeled host accelerator memory bandwidth (default 768)\n"
"  --host-tflops X     modeled host accelerator fp16 TFLOP/s (default 150)\n"
"  --no-flexgen        measure csd only (modeled ratios still reported)\n"
"  --threads N         host threads (default: online CPUs)\n"
"  --json              JSON on stdout\n"
"  --out DIR           write DIR/sweep.json, sweep.dat, sweep.gp\n");
}

enum {
	E_PRESET = 256, E_MODEL, E_LAYERS, E_TYPE, E_BATCHES, E_CTX, E_GEN,
	E_DEVICE, E_KVDIR, E_FGOPTS, E_SSD, E_HOSTBW, E_HOSTFL, E_NOFG, E_NOPACE,
	E_THREADS, E_JSON, E_OUT,
};

static const struct option e2e_long[] = {
	{ "preset", required_argument, NULL, E_PRESET },
	{ "model", required_argument, NULL, E_MODEL },
	{ "layers", required_argument, NULL, E_LAYERS },
	{ "type", required_argument, NULL, E_TYPE },
	{ "batches", required_argument, NULL, E_BATCHES },
	{ "ctx", required_argument, NULL, E_CTX },
	{ "gen", required_argument, NULL, E_GEN },
	{ "device", required_argument, NULL, E_DEVICE },
	{ "kv-dir", required_argument, NULL, E_KVDIR },
	{ "flexgen-opts", required_argument, NULL, E_FGOPTS },
	{ "ssd-gbps", required_argument, NULL, E_SSD },
	{ "host-gbps", required_argument, NULL, E_HOSTBW },
	{ "host-tflops", required_argument, NULL, E_HOSTFL },
	{ "no-flexgen", no_argument, NULL, E_NOFG },
	{ "no-ssd-pacing", no_argument, NULL, E_NOPACE },
	{ "threads", required_argument, NULL, E_THREADS },
	{ "json", no_argument, NULL, E_JSON },
	{ "out", required_argument, NULL, E_OUT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int e2e_u32(const char *s, const char *what, uint32_t min,
		   uint32_t max, uint32_t *v)
{
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s || *end || x < min || x > max) {
		fprintf(stderr, "csd-bench e2e: bad %s '%s'\n", what, s);
		return -1;
	}
	*v = (uint32_t)x;
	return 0;
}

static int e2e_dbl(const char *s, const char *what, double min, double *v)
{
	char *end;
	double x;

	errno = 0;
	x = strtod(s, &end);
	if (errno || end == s || *end || !(x >= min) || x > 1e9) {
		fprintf(stderr, "csd-bench e2e: bad %s '%s'\n", what, s);
		return -1;
	}
	*v = x;
	return 0;
}

static int e2e_batches(const char *s, struct e2e_opts *o)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	o->nbatch = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (o->nbatch == E2E_MAX_BATCHES ||
		    e2e_u32(tok, "batch", 1, 65536, &o->batches[o->nbatch]))
			return -1;
		o->nbatch++;
	}
	return o->nbatch ? 0 : -1;
}

/* 0 ok, 1 help shown, -1 error */
static int e2e_parse(int argc, char **argv, struct e2e_opts *o)
{
	static const uint32_t defb[] = { 8, 16, 32, 64, 128, 256 };
	struct stat sb;
	int c;

	memset(o, 0, sizeof(*o));
	o->preset = "7b-gqa";
	o->device = "embedded:pacing=1";
	o->layers = 1;
	o->ctx = 4096;
	o->gen = 3;
	o->wtype = -1;
	o->ssd_gbps = 7.0;
	o->host_gbps = 768.0;
	o->host_tflops = 150.0;
	memcpy(o->batches, defb, sizeof(defb));
	o->nbatch = (int)(sizeof(defb) / sizeof(defb[0]));
	if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode))
		o->kv_dir = "/dev/shm";
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", e2e_long, NULL)) != -1) {
		uint32_t t;

		switch (c) {
		case E_PRESET: o->preset = optarg; break;
		case E_MODEL: o->model = optarg; break;
		case E_LAYERS:
			if (e2e_u32(optarg, "--layers", 1, 1024, &o->layers))
				return -1;
			break;
		case E_TYPE:
			if (rt_type_parse(optarg, &t) < 0) {
				fprintf(stderr, "csd-bench e2e: bad --type '%s'\n",
					optarg);
				return -1;
			}
			o->wtype = (int)t;
			break;
		case E_BATCHES:
			if (e2e_batches(optarg, o)) {
				fprintf(stderr, "csd-bench e2e: bad --batches '%s'\n",
					optarg);
				return -1;
			}
			break;
		case E_CTX:
			if (e2e_u32(optarg, "--ctx", 1, 1u << 24, &o->ctx))
				return -1;
			break;
		case E_GEN:
			if (e2e_u32(optarg, "--gen", 1, 1u << 20, &o->gen))
				return -1;
			break;
		case E_DEVICE: o->device = optarg; break;
		case E_KVDIR: o->kv_dir = optarg; break;
		case E_FGOPTS: o->fg_extra = optarg; break;
		case E_SSD:
			if (e2e_dbl(optarg, "--ssd-gbps", 1e-3, &o->ssd_gbps))
				return -1;
			break;
		case E_HOSTBW:
			if (e2e_dbl(optarg, "--host-gbps", 1e-3, &o->host_gbps))
				return -1;
			break;
		case E_HOSTFL:
			if (e2e_dbl(optarg, "--host-tflops", 1e-6,
				    &o->host_tflops))
				return -1;
			break;
		case E_NOFG: o->no_flexgen = 1; break;
		case E_NOPACE: o->no_pacing = 1; break;
		case E_THREADS:
			if (e2e_u32(optarg, "--threads", 1, 1024, &o->threads))
				return -1;
			break;
		case E_JSON: o->json = 1; break;
		case E_OUT: o->out = optarg; break;
		case 'h':
			e2e_usage(stdout);
			return 1;
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "csd-bench e2e: unexpected argument '%s'\n",
			argv[optind]);
		return -1;
	}
	return 0;
}

static int e2e_load(const struct e2e_opts *o, struct rt_model **mp)
{
	const char *tmp = getenv("TMPDIR");
	struct rt_synth_opts so;
	char err[256] = "", path[512];
	int fd, ret;

	if (o->model) {
		ret = rt_model_open(o->model, mp, err, sizeof(err));
		if (ret < 0)
			fprintf(stderr, "csd-bench e2e: %s: %s\n", o->model,
				err[0] ? err : strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "%s/csd-bench-e2e-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0) {
		ret = -errno;
		fprintf(stderr, "csd-bench e2e: %s: %s\n", path, strerror(errno));
		return ret;
	}
	close(fd);
	memset(&so, 0, sizeof(so));
	so.preset = o->preset;
	so.layers = o->layers;
	so.ctx = o->ctx + o->gen + 2;
	so.wtype = o->wtype;
	so.seed = 1;
	so.threads = o->threads;
	ret = rt_synth_write(path, &so, err, sizeof(err));
	if (ret == 0)
		ret = rt_model_open(path, mp, err, sizeof(err));
	unlink(path);		/* mmap'd */
	if (ret < 0)
		fprintf(stderr, "csd-bench e2e: synthetic %s: %s\n", o->preset,
			err[0] ? err : strerror(-ret));
	return ret;
}

/* Decode @o->gen steps (after one warm-up step) at batch @batch. */
static int e2e_run_one(const struct e2e_opts *o, const struct rt_model *m,
		       const char *backend, const char *bopts, uint32_t batch,
		       struct e2e_run *r)
{
	const struct rt_backend_ops *ops = rt_backend_find(backend);
	struct rt_decode_stats s0, s1;
	struct rt_decoder_config cfg;
	struct rt_decoder *d = NULL;
	uint32_t *lens = NULL, s, g;
	int32_t *out = NULL;
	int ret = -ENOMEM;

	r->ran = 1;
	snprintf(r->opts, sizeof(r->opts), "%s", bopts ? bopts : "");
	if (!ops) {
		snprintf(r->err, sizeof(r->err), "no backend %s", backend);
		return r->ret = -EINVAL;
	}
	lens = calloc(batch, sizeof(*lens));
	out = calloc(batch, sizeof(*out));
	r->tokens = calloc((size_t)batch * o->gen, sizeof(int32_t));
	if (!lens || !out || !r->tokens)
		goto out;
	for (s = 0; s < batch; s++)
		lens[s] = o->ctx;
	rt_decoder_config_init(&cfg, batch, o->ctx + o->gen + 2, o->threads);
	ret = rt_decoder_create(m, ops, bopts, &cfg, &d, r->err,
				sizeof(r->err));
	if (ret < 0)
		goto out;
	ret = rt_decoder_prefill_synthetic(d, lens, 1,
					   m->bos >= 0 ? m->bos : 1);
	if (ret < 0) {
		snprintf(r->err, sizeof(r->err), "prefill: %s",
			 strerror(-ret));
		goto out;
	}
	ret = rt_decoder_step(d, NULL, out);	/* warm-up */
	if (ret < 0)
		goto step_err;
	rt_decoder_stats(d, &s0);
	for (g = 0; g < o->gen; g++) {
		ret = rt_decoder_step(d, NULL, out);
		if (ret < 0)
			goto step_err;
		memcpy(r->tokens + (size_t)g * batch, out,
		       batch * sizeof(*out));
	}
	rt_decoder_stats(d, &s1);
	r->steps = s1.steps - s0.steps;
	r->decode_s = (double)(s1.decode_ns - s0.decode_ns) / 1e9;
	r->host_s = (double)(s1.host_ns - s0.host_ns) / 1e9;
	r->wait_s = (double)(s1.wait_ns - s0.wait_ns) / 1e9;
	r->xfer_s = (double)(s1.backend.xfer_ns - s0.backend.xfer_ns) / 1e9;
	r->modeled_s = (double)(s1.backend.modeled_ns -
				s0.backend.modeled_ns) / 1e9;
	r->kv_bytes = s1.backend.kv_bytes_read - s0.backend.kv_bytes_read;
	r->link_bytes = s1.backend.link_bytes - s0.backend.link_bytes;
	r->tok_s = r->decode_s > 0 ? (double)batch * o->gen / r->decode_s : 0;
	r->read_gbps = r->decode_s > 0 ?
		       (double)r->link_bytes / r->decode_s / 1e9 : 0;
	ret = 0;
	goto out;
step_err:
	snprintf(r->err, sizeof(r->err), "decode step: %s", strerror(-ret));
out:
	if (d)
		rt_decoder_destroy(d);
	free(lens);
	free(out);
	if (ret < 0 && !r->err[0])
		snprintf(r->err, sizeof(r->err), "%s", strerror(-ret));
	return r->ret = ret;
}

static double wbytes(const struct rt_weight *w)
{
	return (double)w->row_bytes * w->n;
}

/*
 * Modeled host accelerator time of one decode step at @batch: every layer
 * streams its weights once and does 2 flops per weight per sequence.
 */
static double e2e_host_model(const struct e2e_opts *o, const struct rt_model *m,
			     uint32_t batch)
{
	double t = 0, bw = o->host_gbps * 1e9, fl = o->host_tflops * 1e12;
	uint32_t l;

	for (l = 0; l < m->hp.n_layer; l++) {
		const struct rt_layer *ly = &m->layers[l];
		const struct rt_weight *w[] = { &ly->wq, &ly->wk, &ly->wv,
						&ly->wo, &ly->w_gate, &ly->w_up,
						&ly->w_down };
		double bytes = 0, flops = 0, a, b;
		size_t i;

		for (i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
			bytes += wbytes(w[i]);
			flops += 2.0 * w[i]->k * w[i]->n * batch;
		}
		a = bytes / bw;
		b = flops / fl;
		t += a > b ? a : b;
	}
	{
		double a = wbytes(&m->output) / bw;
		double b = 2.0 * m->output.k * m->output.n * batch / fl;

		t += a > b ? a : b;
	}
	return t;
}

static double dmax(double a, double b)
{
	return a > b ? a : b;
}

static void e2e_model(const struct e2e_opts *o, const struct rt_model *m,
		      struct e2e_point *p)
{
	double steps = (double)o->gen;

	p->kv_bytes = (double)p->csd.kv_bytes / steps;
	p->dev_s = p->csd.modeled_s / steps;
	p->ssd_s = p->kv_bytes / (o->ssd_gbps * 1e9);
	p->host_s = e2e_host_model(o, m, p->batch);
	p->cpu_host_s = p->csd.host_s / steps;
	p->csd_tok_s = p->batch / dmax(p->host_s, p->dev_s);
	p->fg_tok_s = p->batch / dmax(p->host_s, p->ssd_s);
	p->ratio_e2e = p->csd_tok_s / p->fg_tok_s;
	p->ratio_serial = (p->host_s + p->ssd_s) / (p->host_s + p->dev_s);
	p->ratio_attn = p->dev_s > 0 ? p->ssd_s / p->dev_s : 0;
	p->ratio_cpu = dmax(p->cpu_host_s, p->ssd_s) /
		       dmax(p->cpu_host_s, p->dev_s);
}

/* ---- output ----------------------------------------------------------- */

static void e2e_json_run(FILE *f, const char *name, const struct e2e_run *r,
			 int last)
{
	fprintf(f, "        \"%s\": {", name);
	if (!r->ran) {
		fprintf(f, "\"ran\": false}%s\n", last ? "" : ",");
		return;
	}
	fprintf(f, "\"ok\": %s, \"opts\": \"%s\", ", r->ret ? "false" : "true",
		r->opts);
	if (r->ret)
		fprintf(f, "\"error\": \"%s\", ", r->err);
	fprintf(f, "\"steps\": %" PRIu64 ", \"tokens_per_s\": %.4f, "
		"\"decode_s\": %.6f, \"host_s\": %.6f, \"wait_s\": %.6f, "
		"\"transfer_s\": %.6f, \"modeled_device_s\": %.6f, "
		"\"kv_bytes_read\": %" PRIu64 ", \"link_bytes\": %" PRIu64
		", \"link_gbps\": %.4f}%s\n",
		r->steps, r->tok_s, r->decode_s, r->host_s, r->wait_s,
		r->xfer_s, r->modeled_s, r->kv_bytes, r->link_bytes,
		r->read_gbps, last ? "" : ",");
}

static void e2e_json(FILE *f, const struct e2e_opts *o,
		     const struct rt_model *m, const char *fg_opts,
		     const struct e2e_point *pts, int n)
{
	int i;

	fprintf(f, "{\n  \"command\": \"e2e\",\n");
	fprintf(f, "  \"model\": {\"name\": \"%s\", \"layers\": %u, "
		"\"embd\": %u, \"ff\": %u, \"heads\": %u, \"kv_heads\": %u, "
		"\"head_dim\": %u, \"vocab\": %u},\n",
		m->name, m->hp.n_layer, m->hp.n_embd, m->hp.n_ff, m->hp.n_head,
		m->hp.n_head_kv, m->hp.head_dim, m->hp.n_vocab);
	fprintf(f, "  \"config\": {\"ctx\": %u, \"gen\": %u, "
		"\"csd_device\": \"%s\", \"flexgen_opts\": \"%s\", "
		"\"ssd_gbps\": %.3f, \"host_gbps\": %.3f, "
		"\"host_tflops\": %.3f},\n",
		o->ctx, o->gen, o->device, fg_opts, o->ssd_gbps, o->host_gbps,
		o->host_tflops);
	fprintf(f, "  \"notes\": \"measured.*: wall clock on this machine "
		"(host compute on this CPU; csd paced to the drive model, "
		"flexgen reads paced to ssd_gbps). modeled.*: per decode step; "
		"dev_s = drive model attention time, ssd_s = KV bytes / "
		"ssd_gbps, host_s = max(weights/host_gbps, flops/host_tflops) "
		"per layer; e2e step = max(host, attention); cpu_host uses the "
		"measured host time of this CPU.\",\n");
	fprintf(f, "  \"points\": [\n");
	for (i = 0; i < n; i++) {
		const struct e2e_point *p = &pts[i];

		fprintf(f, "    {\"batch\": %u,\n      \"measured\": {\n",
			p->batch);
		e2e_json_run(f, "csd", &p->csd, 0);
		e2e_json_run(f, "flexgen", &p->fg, 0);
		fprintf(f, "        \"tokens_match\": %s,\n"
			"        \"csd_over_flexgen\": %.4f},\n",
			p->match < 0 ? "null" : p->match ? "true" : "false",
			p->meas_ratio);
		fprintf(f, "      \"modeled\": {\"kv_bytes_per_step\": %.0f, "
			"\"dev_s\": %.6f, \"ssd_s\": %.6f, \"host_s\": %.6f, "
			"\"cpu_host_s\": %.6f, \"csd_tokens_per_s\": %.3f, "
			"\"flexgen_tokens_per_s\": %.3f, "
			"\"csd_over_flexgen\": %.4f, "
			"\"csd_over_flexgen_serial\": %.4f, "
			"\"attention_only\": %.4f, "
			"\"csd_over_flexgen_cpu_host\": %.4f}}%s\n",
			p->kv_bytes, p->dev_s, p->ssd_s, p->host_s,
			p->cpu_host_s, p->csd_tok_s, p->fg_tok_s, p->ratio_e2e,
			p->ratio_serial, p->ratio_attn, p->ratio_cpu,
			i == n - 1 ? "" : ",");
	}
	fprintf(f, "  ]\n}\n");
}

static void e2e_table(const struct e2e_opts *o, const struct rt_model *m,
		      const char *fg_opts, const struct e2e_point *pts, int n)
{
	int i;

	printf("model %s: %u layers, ctx %u, %u measured steps per point\n",
	       m->name, m->hp.n_layer, o->ctx, o->gen);
	printf("measured: csd on %s, flexgen (%s)\nmodeled: SSD %.1f GB/s, "
	       "host %.0f GB/s, %.0f TFLOP/s\n\n", o->device, fg_opts,
	       o->ssd_gbps, o->host_gbps, o->host_tflops);
	printf("%6s | %9s %9s %7s %5s | %9s %9s %8s | %7s %7s %7s %7s\n",
	       "batch", "csd tok/s", "fg tok/s", "ratio", "same",
	       "dev ms", "ssd ms", "host ms", "e2e", "serial", "attn",
	       "cpu-host");
	printf("%6s | %33s | %28s | %31s\n", "",
	       "------------ measured -----------",
	       "------ modeled per step ----",
	       "------ modeled csd/flexgen ----");
	for (i = 0; i < n; i++) {
		const struct e2e_point *p = &pts[i];

		printf("%6u | %9.2f %9.2f %6.2fx %5s | %9.2f %9.2f %8.3f | "
		       "%6.2fx %6.2fx %6.2fx %6.2fx\n",
		       p->batch, p->csd.tok_s, p->fg.tok_s, p->meas_ratio,
		       p->match < 0 ? "-" : p->match ? "yes" : "NO",
		       p->dev_s * 1e3, p->ssd_s * 1e3, p->host_s * 1e3,
		       p->ratio_e2e, p->ratio_serial, p->ratio_attn,
		       p->ratio_cpu);
	}
}

static int e2e_write_out(const struct e2e_opts *o, const struct rt_model *m,
			 const char *fg_opts, const struct e2e_point *pts,
			 int n)
{
	char path[1024], fg_meas[96];
	FILE *f;
	int i;

	if (mkdir(o->out, 0777) < 0 && errno != EEXIST) {
		fprintf(stderr, "csd-bench e2e: %s: %s\n", o->out,
			strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/sweep.json", o->out);
	f = fopen(path, "w");
	if (!f)
		goto err;
	e2e_json(f, o, m, fg_opts, pts, n);
	if (fclose(f))
		goto err;

	snprintf(path, sizeof(path), "%s/sweep.dat", o->out);
	f = fopen(path, "w");
	if (!f)
		goto err;
	fprintf(f, "# csd-bench e2e: %s, %u layers, ctx %u; ratios are "
		"csd/flexgen tokens/s\n", m->name, m->hp.n_layer, o->ctx);
	fprintf(f, "# batch meas_ratio model_e2e model_attn model_cpuhost "
		"meas_csd_tok_s meas_fg_tok_s model_csd_tok_s model_fg_tok_s "
		"dev_ms ssd_ms host_ms\n");
	for (i = 0; i < n; i++) {
		const struct e2e_point *p = &pts[i];

		fprintf(f, "%u %.4f %.4f %.4f %.4f %.3f %.3f %.3f %.3f %.4f "
			"%.4f %.4f\n", p->batch,
			p->match < 0 ? 0.0 : p->meas_ratio, p->ratio_e2e,
			p->ratio_attn, p->ratio_cpu, p->csd.tok_s,
			p->match < 0 ? 0.0 : p->fg.tok_s, p->csd_tok_s,
			p->fg_tok_s, p->dev_s * 1e3, p->ssd_s * 1e3,
			p->host_s * 1e3);
	}
	if (fclose(f))
		goto err;

	if (o->no_pacing)
		snprintf(fg_meas, sizeof(fg_meas), "unpaced RAM file");
	else
		snprintf(fg_meas, sizeof(fg_meas), "reads paced to %.1f GB/s",
			 o->ssd_gbps);
	snprintf(path, sizeof(path), "%s/sweep.gp", o->out);
	f = fopen(path, "w");
	if (!f)
		goto err;
	fprintf(f,
"# gnuplot script written by csd-bench e2e; run: gnuplot sweep.gp\n"
"set terminal pngcairo size 1400,680 font 'sans,11'\n"
"set output 'sweep.png'\n"
"set datafile missing '0.0000'\n"
"set multiplot layout 1,2\n"
"set logscale x 2\n"
"set xlabel 'batch size (sequences)'\n"
"set grid\n"
"set key tmargin center horizontal maxrows 2 box\n"
"set offsets graph 0.04, graph 0.04, 0, 0\n"
"set title \"decode throughput: csd (attention in the drive) vs flexgen (KV read from a %.1f GB/s SSD)\\n%s, %u layer(s), context %u tokens per sequence\"\n"
"set ylabel 'tokens/s'\n"
"set logscale y 10\n"
"plot 'sweep.dat' using 1:8 with linespoints lw 2 pt 7 lc rgb '#1f77b4' title 'csd, modeled', \\\n"
"     '' using 1:9 with linespoints lw 2 pt 5 lc rgb '#d62728' title 'flexgen, modeled', \\\n"
"     '' using 1:6 with linespoints lw 1 dt 2 pt 6 lc rgb '#1f77b4' title 'csd, measured (paced drive, host = this CPU)', \\\n"
"     '' using 1:7 with linespoints lw 1 dt 2 pt 4 lc rgb '#d62728' title 'flexgen, measured (%s, host = this CPU)'\n"
"unset logscale y\n"
"set title \"csd / flexgen tokens/s\\nmodeled: drive model vs SSD model, modeled host %.0f GB/s, %.0f TFLOP/s\"\n"
"set ylabel 'speedup (x)'\n"
"set yrange [0:*]\n"
"plot 'sweep.dat' using 1:3 with linespoints lw 5 pt 7 ps 1.5 lc rgb '#2ca02c' title 'modeled end-to-end (modeled host)', \\\n"
"     '' using 1:4 with linespoints lw 2 dt 4 pt 9 lc rgb '#9467bd' title 'modeled attention only', \\\n"
"     '' using 1:5 with linespoints lw 1 dt 3 pt 8 lc rgb '#ff7f0e' title 'modeled, host time of this CPU', \\\n"
"     '' using 1:2 with linespoints lw 1 dt 2 pt 6 lc rgb '#000000' title 'measured (paced, host = this CPU)', \\\n"
"     1 with lines lc rgb '#888888' notitle\n"
"unset multiplot\n",
		o->ssd_gbps, m->name, m->hp.n_layer, o->ctx, fg_meas,
		o->host_gbps, o->host_tflops);
	if (fclose(f))
		goto err;
	return 0;
err:
	fprintf(stderr, "csd-bench e2e: %s: %s\n", path, strerror(errno));
	return -1;
}

int bench_e2e_main(int argc, char **argv)
{
	struct e2e_point pts[E2E_MAX_BATCHES];
	struct rt_model *m = NULL;
	struct e2e_opts o;
	char fg_opts[512];
	int i, rc = 0, tty;

	i = e2e_parse(argc, argv, &o);
	if (i) {
		if (i < 0)
			e2e_usage(stderr);
		return i < 0 ? 2 : 0;
	}
	fg_opts[0] = '\0';
	if (o.kv_dir)
		snprintf(fg_opts, sizeof(fg_opts), "dir=%s%s", o.kv_dir,
			 strncmp(o.kv_dir, "/dev/shm", 8) ? "" : ",direct=0");
	if (!o.no_pacing) {
		size_t l = strlen(fg_opts);

		snprintf(fg_opts + l, sizeof(fg_opts) - l, "%sssd_gbps=%g",
			 l ? "," : "", o.ssd_gbps);
	}
	if (o.fg_extra && *o.fg_extra) {
		size_t l = strlen(fg_opts);

		snprintf(fg_opts + l, sizeof(fg_opts) - l, "%s%s",
			 l ? "," : "", o.fg_extra);
	}
	if (e2e_load(&o, &m) < 0 || !m)
		return 1;
	tty = isatty(STDERR_FILENO);
	memset(pts, 0, sizeof(pts));
	for (i = 0; i < o.nbatch; i++) {
		struct e2e_point *p = &pts[i];
		uint64_t t0 = rt_now_ns();

		p->batch = o.batches[i];
		p->match = -1;
		if (tty)
			fprintf(stderr, "e2e: batch %u: csd...", p->batch);
		if (e2e_run_one(&o, m, "csd", o.device, p->batch, &p->csd)) {
			fprintf(stderr, "\ncsd-bench e2e: batch %u: csd: %s\n",
				p->batch, p->csd.err);
			rc = 1;
			continue;
		}
		if (!o.no_flexgen) {
			if (tty)
				fprintf(stderr, " flexgen...");
			if (e2e_run_one(&o, m, "flexgen", fg_opts, p->batch,
					&p->fg)) {
				fprintf(stderr,
					"\ncsd-bench e2e: batch %u: flexgen (%s): %s\n",
					p->batch, fg_opts, p->fg.err);
				rc = 1;
			} else {
				p->match = !memcmp(p->csd.tokens, p->fg.tokens,
						   (size_t)p->batch * o.gen *
						   sizeof(int32_t));
				if (!p->match)
					rc = 1;
				if (p->fg.tok_s > 0)
					p->meas_ratio = p->csd.tok_s /
							p->fg.tok_s;
			}
		}
		e2e_model(&o, m, p);
		if (tty)
			fprintf(stderr, " %.1f s\n",
				(double)(rt_now_ns() - t0) / 1e9);
	}
	if (o.json)
		e2e_json(stdout, &o, m, fg_opts, pts, o.nbatch);
	else
		e2e_table(&o, m, fg_opts, pts, o.nbatch);
	if (o.out && e2e_write_out(&o, m, fg_opts, pts, o.nbatch))
		rc = 1;
	for (i = 0; i < o.nbatch; i++) {
		free(pts[i].csd.tokens);
		free(pts[i].fg.tokens);
	}
	rt_model_close(m);
	return rc;
}
