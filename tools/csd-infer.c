/* SPDX-License-Identifier: MIT */
/*
 * csd-infer - Llama-family decode with attention and the KV cache on an
 * attention backend: the drive (csd), host RAM (host) or a file read back
 * every step (flexgen).
 *
 *   csd-infer make-model --preset P [--layers N] [--ctx N]
 *                        [--type f16|bf16|q8_0|f32] [--seed S] -o FILE
 *   csd-infer run     (--model FILE | --synthetic PRESET) [options]
 *   csd-infer compare (--model FILE | --synthetic PRESET) [options]
 *
 * Run options: --batch B, --prompt-len N, --gen N, --attn host|flexgen|csd,
 * --device STR (csd; "A,B,..." = a group of drives), --drives LIST (compare:
 * extra csd rows on that many drives), --kv-dir DIR / --flexgen-opts STR
 * (flexgen), --sparse RATIO (csd: SparF sparse attention reading about
 * RATIO of the KV per step; compare adds a "csd-sparse" row), --threads N,
 * --micro-batches 1|2, --mixed (prompt lengths vary
 * over the batch), --synthetic-kv (fill the prompt KV with random values instead of
 * computing the prefill on the host: for long contexts), --layers N and
 * --type T (with --synthetic), --json.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_ops.h"
#include "rt_synth.h"

struct opts {
	const char *model, *synthetic, *out, *preset, *device, *fg_opts;
	const char *attn, *backends, *drives;
	uint32_t layers, ctx, batch, prompt_len, gen, threads, mbatches;
	uint32_t fg_threads;
	float sparse;		/* SparF ratio for csd, 0 = dense */
	uint64_t seed;
	int wtype, json, mixed, synth_kv;
};

struct result {
	const char *backend;
	char label[24];		/* backend, "csd x2" for 2 drives */
	uint32_t drives;	/* csd: member drives of the device */
	float sparse;		/* csd: SparF ratio, 0 = dense */
	double agree;		/* sparse: greedy tokens equal to the dense row */
	int ret;
	char err[256];
	uint32_t batch;
	uint64_t steps, gen_tokens, prompt_tokens;
	double decode_s, prefill_s, host_s, xfer_s, attn_s, modeled_s;
	double tok_s;
	struct rt_backend_stats bs;
	/* flexgen */
	int fg_valid, fg_uring, fg_direct;
	uint32_t fg_rs, fg_qd;
	double fg_read_gbs, raw_read_gbs;
	int32_t *tokens;	/* [batch][gen] */
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: csd-infer make-model --preset P [--layers N] [--ctx N]\n"
"                            [--type f16|bf16|q8_0|f32] [--seed S] -o FILE\n"
"       csd-infer run     (--model FILE | --synthetic PRESET) [options]\n"
"       csd-infer compare (--model FILE | --synthetic PRESET) [options]\n"
"       csd-infer presets\n"
"options:\n"
"  --batch B            sequences decoded together (default 1)\n"
"  --prompt-len N       prompt tokens per sequence (default 32)\n"
"  --mixed              prompt lengths vary over the batch (N/2..N)\n"
"  --gen N              tokens generated per sequence (default 32)\n"
"  --attn BACKEND       host | flexgen | csd (run; default csd)\n"
"  --backends LIST      compare only these, e.g. csd,flexgen (default all)\n"
"  --device STR         libcsd device for csd (default embedded:); a list\n"
"                       A,B,... of device strings is a group of drives\n"
"  --drives LIST        compare: add csd rows on N drives each (--device\n"
"                       repeated N times), e.g. --drives 1,2,4\n"
"  --kv-dir DIR         directory of flexgen's KV file (default $TMPDIR)\n"
"  --flexgen-opts STR   flexgen options (dir=,buf=MiB,rs=KiB,qd=,io=,ssd_gbps=)\n"
"  --sparse RATIO       csd: SparF sparse attention reading ~RATIO of the\n"
"                       KV per step (e.g. 0.125); compare adds a row\n"
"  --threads N          host threads (default: online CPUs)\n"
"  --flexgen-threads N  host threads for the flexgen run (default --threads;\n"
"                       1 can leave a core to its I/O on a 2-core machine)\n"
"  --micro-batches 1|2  pipeline halves of the batch (default 2 if B>=2)\n"
"  --synthetic-kv       random prompt KV instead of a host prefill\n"
"  --layers N --type T  model shape for --synthetic\n"
"  --seed S             prompt / model seed (default 1)\n"
"  --json               machine-readable report on stdout\n");
}

enum {
	O_PRESET = 256, O_LAYERS, O_TYPE, O_CTX, O_SEED, O_MODEL, O_SYNTH,
	O_BATCH, O_PLEN, O_GEN, O_ATTN, O_DEVICE, O_KVDIR, O_FGOPTS,
	O_THREADS, O_MB, O_JSON, O_MIXED, O_SKV, O_BACKENDS, O_FGTHREADS,
	O_DRIVES, O_SPARSE,
};

static const struct option long_opts[] = {
	{ "preset", required_argument, NULL, O_PRESET },
	{ "layers", required_argument, NULL, O_LAYERS },
	{ "type", required_argument, NULL, O_TYPE },
	{ "ctx", required_argument, NULL, O_CTX },
	{ "seed", required_argument, NULL, O_SEED },
	{ "model", required_argument, NULL, O_MODEL },
	{ "synthetic", required_argument, NULL, O_SYNTH },
	{ "batch", required_argument, NULL, O_BATCH },
	{ "prompt-len", required_argument, NULL, O_PLEN },
	{ "gen", required_argument, NULL, O_GEN },
	{ "attn", required_argument, NULL, O_ATTN },
	{ "backends", required_argument, NULL, O_BACKENDS },
	{ "device", required_argument, NULL, O_DEVICE },
	{ "drives", required_argument, NULL, O_DRIVES },
	{ "sparse", required_argument, NULL, O_SPARSE },
	{ "kv-dir", required_argument, NULL, O_KVDIR },
	{ "flexgen-opts", required_argument, NULL, O_FGOPTS },
	{ "threads", required_argument, NULL, O_THREADS },
	{ "flexgen-threads", required_argument, NULL, O_FGTHREADS },
	{ "micro-batches", required_argument, NULL, O_MB },
	{ "json", no_argument, NULL, O_JSON },
	{ "mixed", no_argument, NULL, O_MIXED },
	{ "synthetic-kv", no_argument, NULL, O_SKV },
	{ "output", required_argument, NULL, 'o' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_u32(const char *s, const char *what, uint32_t min,
		     uint32_t *v)
{
	unsigned long long x;
	char *end;

	errno = 0;
	x = strtoull(s, &end, 0);
	if (errno || end == s || *end || x < min || x > UINT32_MAX) {
		fprintf(stderr, "csd-infer: bad %s '%s'\n", what, s);
		return -1;
	}
	*v = (uint32_t)x;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	memset(o, 0, sizeof(*o));
	o->batch = 1;
	o->prompt_len = 32;
	o->gen = 32;
	o->seed = 1;
	o->wtype = -1;
	o->attn = "csd";
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", long_opts, NULL)) != -1) {
		uint32_t t;

		switch (c) {
		case O_PRESET: o->preset = optarg; break;
		case O_LAYERS:
			if (parse_u32(optarg, "--layers", 1, &o->layers))
				return -1;
			break;
		case O_CTX:
			if (parse_u32(optarg, "--ctx", 1, &o->ctx))
				return -1;
			break;
		case O_TYPE:
			if (rt_type_parse(optarg, &t) < 0) {
				fprintf(stderr, "csd-infer: bad --type '%s'\n",
					optarg);
				return -1;
			}
			o->wtype = (int)t;
			break;
		case O_SEED:
			o->seed = strtoull(optarg, NULL, 0);
			break;
		case O_MODEL: o->model = optarg; break;
		case O_SYNTH: o->synthetic = optarg; break;
		case O_BATCH:
			if (parse_u32(optarg, "--batch", 1, &o->batch))
				return -1;
			break;
		case O_PLEN:
			if (parse_u32(optarg, "--prompt-len", 1,
				      &o->prompt_len))
				return -1;
			break;
		case O_GEN:
			if (parse_u32(optarg, "--gen", 1, &o->gen))
				return -1;
			break;
		case O_ATTN: o->attn = optarg; break;
		case O_BACKENDS: o->backends = optarg; break;
		case O_DEVICE: o->device = optarg; break;
		case O_DRIVES: o->drives = optarg; break;
		case O_SPARSE: {
			char *end;

			o->sparse = strtof(optarg, &end);
			if (end == optarg || *end || !(o->sparse > 0.0f) ||
			    o->sparse > 1.0f) {
				fprintf(stderr,
					"csd-infer: --sparse takes a ratio in (0, 1], e.g. 0.125\n");
				return -1;
			}
			break;
		}
		case O_KVDIR:	/* bare DIR is the short form of the opts */
		case O_FGOPTS: o->fg_opts = optarg; break;
		case O_THREADS:
			if (parse_u32(optarg, "--threads", 1, &o->threads))
				return -1;
			break;
		case O_FGTHREADS:
			if (parse_u32(optarg, "--flexgen-threads", 1,
				      &o->fg_threads))
				return -1;
			break;
		case O_MB:
			if (parse_u32(optarg, "--micro-batches", 1,
				      &o->mbatches) || o->mbatches > 2) {
				fprintf(stderr,
					"csd-infer: --micro-batches is 1 or 2\n");
				return -1;
			}
			break;
		case O_JSON: o->json = 1; break;
		case O_MIXED: o->mixed = 1; break;
		case O_SKV: o->synth_kv = 1; break;
		case 'o': o->out = optarg; break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "csd-infer: unexpected argument '%s'\n",
			argv[optind]);
		return -1;
	}
	return 0;
}

/* ---- make-model ------------------------------------------------------- */

static int cmd_make_model(struct opts *o)
{
	struct rt_synth_opts so;
	char err[256] = "";
	int ret;

	if (!o->preset || !o->out) {
		fprintf(stderr, "csd-infer make-model: --preset and -o are required\n");
		return 2;
	}
	memset(&so, 0, sizeof(so));
	so.preset = o->preset;
	so.layers = o->layers;
	so.ctx = o->ctx;
	so.wtype = o->wtype;
	so.seed = o->seed;
	so.threads = o->threads;
	ret = rt_synth_write(o->out, &so, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "csd-infer make-model: %s: %s\n", o->out,
			err[0] ? err : strerror(-ret));
		return 1;
	}
	return 0;
}

static int cmd_presets(void)
{
	const struct rt_synth_preset *p;

	printf("%-10s %6s %6s %6s %6s %6s %7s\n", "preset", "layers", "embd",
	       "ff", "heads", "kv", "ctx");
	for (p = rt_synth_presets(); p && p->name; p++)
		printf("%-10s %6u %6u %6u %6u %6u %7u\n", p->name, p->n_layer,
		       p->n_embd, p->n_ff, p->n_head, p->n_head_kv, p->n_ctx);
	return 0;
}

/* ---- model loading ---------------------------------------------------- */

static int load_model(const struct opts *o, struct rt_model **mp)
{
	char err[256] = "", path[512];
	int ret;

	if (!!o->model == !!o->synthetic) {
		fprintf(stderr,
			"csd-infer: give exactly one of --model FILE, --synthetic PRESET\n");
		return -EINVAL;
	}
	if (o->model) {
		ret = rt_model_open(o->model, mp, err, sizeof(err));
		if (ret < 0)
			fprintf(stderr, "csd-infer: %s: %s\n", o->model,
				err[0] ? err : strerror(-ret));
		return ret;
	}
	{
		const char *tmp = getenv("TMPDIR");
		struct rt_synth_opts so;
		int fd;

		snprintf(path, sizeof(path), "%s/csd-infer-model-XXXXXX",
			 tmp && *tmp ? tmp : "/tmp");
		fd = mkstemp(path);
		if (fd < 0) {
			ret = -errno;
			fprintf(stderr, "csd-infer: %s: %s\n", path,
				strerror(errno));
			return ret;
		}
		close(fd);
		memset(&so, 0, sizeof(so));
		so.preset = o->synthetic;
		so.layers = o->layers;
		so.ctx = o->ctx;
		so.wtype = o->wtype;
		so.seed = o->seed;
		so.threads = o->threads;
		ret = rt_synth_write(path, &so, err, sizeof(err));
		if (ret == 0)
			ret = rt_model_open(path, mp, err, sizeof(err));
		unlink(path);	/* the model is mmap'd */
		if (ret < 0)
			fprintf(stderr, "csd-infer: synthetic %s: %s\n",
				o->synthetic, err[0] ? err : strerror(-ret));
		return ret;
	}
}

/* ---- one run ---------------------------------------------------------- */

static void progress(const char *what, uint32_t done, uint32_t total,
		     uint64_t t0)
{
	double s = (double)(rt_now_ns() - t0) / 1e9;
	int w = 30, fill = total ? (int)((uint64_t)done * w / total) : w;

	fprintf(stderr, "\r%-8s [%.*s%*s] %u/%u  %.1fs", what, fill,
		"##############################", w - fill, "", done, total,
		s);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}

static uint32_t prompt_len_of(const struct opts *o, uint32_t s)
{
	uint32_t n = o->prompt_len;

	if (o->mixed && o->batch > 1)
		n = n - (uint32_t)((uint64_t)(n / 2) * s / (o->batch - 1));
	return n ? n : 1;
}

/* Member drives of a libcsd device string: "A,B,..." where every element
 * starts with a transport prefix is a group (libcsd's csd_dev_open rule). */
static uint32_t drive_count(const char *dev)
{
	static const char *const pfx[] = { "embedded", "shm:", "/dev/" };
	uint32_t n = 1;
	size_t i;

	if (!dev || !*dev)
		dev = getenv("CSD_DEVICE");
	for (; dev && *dev; dev++) {
		if (*dev != ',')
			continue;
		for (i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++)
			if (!strncmp(dev + 1, pfx[i], strlen(pfx[i])))
				break;
		n += i < sizeof(pfx) / sizeof(pfx[0]);
	}
	return n;
}

static int run_one(const struct opts *o, const struct rt_model *m,
		   const char *backend, int tty, struct result *r)
{
	const struct rt_backend_ops *ops = rt_backend_find(backend);
	struct rt_decoder_config cfg;
	struct rt_decoder *d = NULL;
	struct rt_decode_stats st;
	uint32_t *lens = NULL, maxlen = 0, s, g;
	int32_t **prompts = NULL, *out = NULL;
	const char *bopts = NULL;
	uint64_t t0;
	int ret = -ENOMEM;

	memset(r, 0, sizeof(*r));
	r->backend = backend;
	snprintf(r->label, sizeof(r->label), "%s", backend);
	r->batch = o->batch;
	if (!ops) {
		snprintf(r->err, sizeof(r->err), "unknown backend '%s'",
			 backend);
		return r->ret = -EINVAL;
	}
	if (!strcmp(backend, "csd")) {
		bopts = o->device;
		r->drives = drive_count(o->device);
		if (r->drives > 1)
			snprintf(r->label, sizeof(r->label), "csd x%u",
				 r->drives);
	} else if (!strcmp(backend, "flexgen"))
		bopts = o->fg_opts;
	if (!strcmp(backend, "csd") && o->sparse > 0.0f) {
		r->sparse = o->sparse;
		snprintf(r->label, sizeof(r->label), "csd-sparse");
	}
	lens = calloc(o->batch, sizeof(*lens));
	prompts = calloc(o->batch, sizeof(*prompts));
	out = calloc(o->batch, sizeof(*out));
	r->tokens = calloc((size_t)o->batch * o->gen, sizeof(int32_t));
	if (!lens || !prompts || !out || !r->tokens)
		goto fail;
	for (s = 0; s < o->batch; s++) {
		struct rt_rng rng;
		uint32_t i;

		lens[s] = prompt_len_of(o, s);
		if (lens[s] > maxlen)
			maxlen = lens[s];
		prompts[s] = calloc(lens[s], sizeof(int32_t));
		if (!prompts[s])
			goto fail;
		rt_rng_seed(&rng, o->seed * 1000003u + s);
		for (i = 0; i < lens[s]; i++)
			prompts[s][i] = (int32_t)(3 + rt_rng_next(&rng) %
					(m->hp.n_vocab > 3 ? m->hp.n_vocab - 3 : 1));
		if (m->bos >= 0 && m->add_bos)
			prompts[s][0] = m->bos;
		r->prompt_tokens += lens[s];
	}
	rt_decoder_config_init(&cfg, o->batch, maxlen + o->gen + 1,
			       !strcmp(backend, "flexgen") && o->fg_threads ?
			       o->fg_threads : o->threads);
	cfg.micro_batches = o->mbatches;
	ret = rt_decoder_create(m, ops, bopts, &cfg, &d, r->err,
				sizeof(r->err));
	if (ret < 0)
		goto fail;
	if (r->sparse > 0.0f) {
		ret = rt_csd_set_sparse(rt_decoder_backend(d), r->sparse);
		if (ret < 0) {
			snprintf(r->err, sizeof(r->err), "--sparse: %s",
				 strerror(-ret));
			goto fail;
		}
	}
	t0 = rt_now_ns();
	if (tty)
		fprintf(stderr, "%s: prefill %" PRIu64 " tokens...", backend,
			r->prompt_tokens);
	if (o->synth_kv)
		ret = rt_decoder_prefill_synthetic(d, lens, o->seed,
						   m->bos >= 0 ? m->bos : 1);
	else
		ret = rt_decoder_prefill(d, (const int32_t *const *)prompts,
					 lens, NULL);
	if (tty)
		fputc('\r', stderr);
	if (ret < 0) {
		snprintf(r->err, sizeof(r->err), "prefill: %s",
			 strerror(-ret));
		goto fail;
	}
	r->prefill_s = (double)(rt_now_ns() - t0) / 1e9;
	t0 = rt_now_ns();
	for (g = 0; g < o->gen; g++) {
		ret = rt_decoder_step(d, NULL, out);
		if (ret < 0) {
			snprintf(r->err, sizeof(r->err), "decode step %u: %s",
				 g, strerror(-ret));
			goto fail;
		}
		for (s = 0; s < o->batch; s++)
			r->tokens[(size_t)s * o->gen + g] = out[s];
		if (tty)
			progress(backend, g + 1, o->gen, t0);
	}
	rt_decoder_stats(d, &st);
	r->bs = st.backend;
	r->steps = st.steps;
	r->gen_tokens = (uint64_t)o->gen * o->batch;
	r->decode_s = (double)st.decode_ns / 1e9;
	r->host_s = (double)st.host_ns / 1e9;
	r->xfer_s = (double)st.backend.xfer_ns / 1e9;
	r->attn_s = (double)(st.wait_ns + st.submit_ns) / 1e9 - r->xfer_s;
	if (r->attn_s < 0)
		r->attn_s = 0;
	r->modeled_s = (double)st.backend.modeled_ns / 1e9;
	r->tok_s = r->decode_s > 0 ? (double)r->gen_tokens / r->decode_s : 0;
	if (!strcmp(backend, "flexgen")) {
		struct rt_backend *b = rt_decoder_backend(d);
		struct rt_flexgen_info fi;
		uint64_t bytes = 0, ns = 0;

		if (rt_flexgen_get_info(b, &fi) == 0) {
			r->fg_valid = 1;
			r->fg_uring = fi.uring;
			r->fg_direct = fi.direct;
			r->fg_rs = fi.read_size;
			r->fg_qd = fi.queue_depth;
			/* bytes read from the file per decode second */
			if (st.decode_ns)
				r->fg_read_gbs = (double)(st.backend.link_bytes -
							  fi.file_bytes) /
						 (double)st.decode_ns;
			if (rt_flexgen_raw_read(b, 8ull << 30, &bytes, &ns) == 0 &&
			    ns)
				r->raw_read_gbs = (double)bytes / (double)ns;
		}
	}
	ret = 0;
fail:
	if (d)
		rt_decoder_destroy(d);
	if (prompts)
		for (s = 0; s < o->batch; s++)
			free(prompts[s]);
	free(prompts);
	free(lens);
	free(out);
	if (ret < 0 && !r->err[0])
		snprintf(r->err, sizeof(r->err), "%s", strerror(-ret));
	return r->ret = ret;
}

/* ---- reports ---------------------------------------------------------- */

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

static void print_workload(const struct opts *o, const struct rt_model *m)
{
	printf("model %s: %u layers, embd %u, heads %u/%u kv, head_dim %u, vocab %u\n",
	       m->name[0] ? m->name : "?", m->hp.n_layer, m->hp.n_embd,
	       m->hp.n_head, m->hp.n_head_kv, m->hp.head_dim, m->hp.n_vocab);
	printf("workload: batch %u, prompt %u%s, gen %u, %s prefill\n",
	       o->batch, o->prompt_len, o->mixed ? " (mixed)" : "", o->gen,
	       o->synth_kv ? "synthetic-KV" : "host");
}

static void print_run(const struct result *r)
{
	printf("backend %s\n", r->label);
	printf("  decode       %.3f s, %" PRIu64 " tokens, %.2f tokens/s\n",
	       r->decode_s, r->gen_tokens, r->tok_s);
	printf("  prefill      %.3f s (%" PRIu64 " prompt tokens)\n",
	       r->prefill_s, r->prompt_tokens);
	printf("  time split   host compute %.3f s, transfers %.3f s, attention wait %.3f s\n",
	       r->host_s, r->xfer_s, r->attn_s);
	printf("  modeled dev  %.3f s\n", r->modeled_s);
	printf("  host KV mem  %.1f MiB\n", mib(r->bs.host_kv_bytes));
	printf("  link bytes   %.1f MiB (KV read for attention %.1f MiB)\n",
	       mib(r->bs.link_bytes), mib(r->bs.kv_bytes_read));
	if (r->fg_valid)
		printf("  flexgen io   %s%s, %u KiB reads x %u; KV read %.2f GB/s, raw O_DIRECT read %.2f GB/s\n",
		       r->fg_uring ? "io_uring" : "pread",
		       r->fg_direct ? " O_DIRECT" : " buffered",
		       r->fg_rs / 1024, r->fg_qd, r->fg_read_gbs,
		       r->raw_read_gbs);
}

static void json_run(const struct result *r, int last)
{
	printf("    {\"backend\": \"%s\", \"ok\": %s, ", r->backend,
	       r->ret ? "false" : "true");
	if (r->ret)
		printf("\"error\": \"%s\", ", r->err);
	if (r->drives)
		printf("\"drives\": %u, ", r->drives);
	if (r->sparse > 0.0f)
		printf("\"sparse_ratio\": %.6g, \"tokens_agree_dense\": %.4f, ",
		       r->sparse, r->agree);
	printf("\"batch\": %u, \"steps\": %" PRIu64 ", \"tokens\": %" PRIu64
	       ", \"prompt_tokens\": %" PRIu64 ", \"tokens_per_s\": %.4f, "
	       "\"decode_s\": %.6f, \"prefill_s\": %.6f, \"host_s\": %.6f, "
	       "\"transfer_s\": %.6f, \"attn_wait_s\": %.6f, "
	       "\"modeled_device_s\": %.6f, \"host_kv_bytes\": %" PRIu64
	       ", \"link_bytes\": %" PRIu64 ", \"kv_bytes_read\": %" PRIu64
	       ", \"attn_calls\": %" PRIu64,
	       r->batch, r->steps, r->gen_tokens, r->prompt_tokens, r->tok_s,
	       r->decode_s, r->prefill_s, r->host_s, r->xfer_s, r->attn_s,
	       r->modeled_s, r->bs.host_kv_bytes, r->bs.link_bytes,
	       r->bs.kv_bytes_read, r->bs.attn_calls);
	if (r->fg_valid)
		printf(", \"flexgen\": {\"io_uring\": %s, \"o_direct\": %s, "
		       "\"read_size\": %u, \"queue_depth\": %u, "
		       "\"kv_read_gbps\": %.4f, \"raw_read_gbps\": %.4f}",
		       r->fg_uring ? "true" : "false",
		       r->fg_direct ? "true" : "false", r->fg_rs, r->fg_qd,
		       r->fg_read_gbs, r->raw_read_gbs);
	printf("}%s\n", last ? "" : ",");
}

static void json_head(const struct opts *o, const struct rt_model *m,
		      const char *cmd)
{
	printf("{\n  \"command\": \"%s\",\n  \"model\": {\"name\": \"%s\", "
	       "\"layers\": %u, \"embd\": %u, \"heads\": %u, \"kv_heads\": %u, "
	       "\"head_dim\": %u, \"vocab\": %u},\n  \"workload\": {\"batch\": %u, "
	       "\"prompt_len\": %u, \"mixed\": %s, \"gen\": %u, "
	       "\"synthetic_kv\": %s},\n  \"runs\": [\n",
	       cmd, m->name, m->hp.n_layer, m->hp.n_embd, m->hp.n_head,
	       m->hp.n_head_kv, m->hp.head_dim, m->hp.n_vocab, o->batch,
	       o->prompt_len, o->mixed ? "true" : "false", o->gen,
	       o->synth_kv ? "true" : "false");
}

/*
 * --backends LIST: the chosen subset of @all, kept in @all's order (so the
 * table always reads host, flexgen, csd).  NULL or "" = all.
 */
static int select_backends(const char *spec, const char *const all[3],
			   const char *list[3], int *n)
{
	char buf[64], *save = NULL, *tok;
	int want[3] = { 0, 0, 0 }, i;

	*n = 0;
	if (!spec || !*spec) {
		for (i = 0; i < 3; i++)
			list[(*n)++] = all[i];
		return 0;
	}
	if (strlen(spec) >= sizeof(buf)) {
		fprintf(stderr, "csd-infer: bad --backends '%s'\n", spec);
		return -1;
	}
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < 3; i++)
			if (!strcmp(tok, all[i]))
				break;
		if (i == 3) {
			fprintf(stderr,
				"csd-infer: unknown backend '%s' in --backends (host,flexgen,csd)\n",
				tok);
			return -1;
		}
		want[i] = 1;
	}
	for (i = 0; i < 3; i++)
		if (want[i])
			list[(*n)++] = all[i];
	return *n ? 0 : -1;
}

#define MAX_DRIVE_ROWS	8

/* --drives LIST: one more csd row per N, on --device repeated N times. */
static int add_drive_rows(const struct opts *o, const char **list,
			  const char **devs, char **dstr, int *n)
{
	const char *base = o->device && *o->device ? o->device : "embedded:";
	char buf[64], *save = NULL, *tok;
	uint32_t d, k;

	if (strlen(o->drives) >= sizeof(buf))
		goto bad;
	strcpy(buf, o->drives);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		size_t len;

		if (*n >= 3 + MAX_DRIVE_ROWS ||
		    parse_u32(tok, "--drives", 1, &d) || d > 64)
			goto bad;
		len = (strlen(base) + 1) * d;
		dstr[*n] = malloc(len);
		if (!dstr[*n])
			return -1;
		dstr[*n][0] = 0;
		for (k = 0; k < d; k++) {
			if (k)
				strcat(dstr[*n], ",");
			strcat(dstr[*n], base);
		}
		list[*n] = "csd";
		devs[*n] = dstr[*n];
		(*n)++;
	}
	return 0;
bad:
	fprintf(stderr, "csd-infer: bad --drives '%s' (e.g. 1,2,4; up to %d)\n",
		o->drives, MAX_DRIVE_ROWS);
	return -1;
}

static int cmd_run(struct opts *o, int compare)
{
	static const char *const all[] = { "host", "flexgen", "csd" };
	const char *list[4 + MAX_DRIVE_ROWS], *devs[4 + MAX_DRIVE_ROWS];
	char *dstr[4 + MAX_DRIVE_ROWS] = { NULL };
	float sparse[4 + MAX_DRIVE_ROWS] = { 0 };
	int n = 0, i, rc = 0, tty, fgi = -1, csi = -1;
	struct result res[4 + MAX_DRIVE_ROWS];
	struct rt_model *m = NULL;

	if (!compare && !rt_backend_find(o->attn)) {
		fprintf(stderr, "csd-infer: unknown --attn '%s' (host|flexgen|csd)\n",
			o->attn);
		return 2;
	}
	if (!compare)
		list[n++] = o->attn;
	else if (select_backends(o->backends, all, list, &n) < 0)
		return 2;
	for (i = 0; i < n; i++)
		devs[i] = o->device;
	if (compare && o->drives &&
	    add_drive_rows(o, list, devs, dstr, &n) < 0) {
		for (i = 0; i < n; i++)
			free(dstr[i]);
		return 2;
	}
	if (!compare)
		sparse[0] = o->sparse;
	else if (o->sparse > 0.0f) {	/* one more row: csd with SparF */
		list[n] = "csd";
		devs[n] = o->device;
		sparse[n++] = o->sparse;
	}
	for (i = 0; i < n; i++) {
		if (!strcmp(list[i], "flexgen"))
			fgi = i;
		else if (!strcmp(list[i], "csd") && csi < 0)
			csi = i;
	}
	/* !m: the analyzer cannot tell that -errno after mkstemp is < 0 */
	if (load_model(o, &m) < 0 || !m) {
		for (i = 0; i < n; i++)
			free(dstr[i]);
		return 1;
	}
	tty = !o->json && isatty(STDERR_FILENO);
	for (i = 0; i < n; i++) {
		struct opts ro = *o;

		ro.device = devs[i];
		ro.sparse = sparse[i];
		if (run_one(&ro, m, list[i], tty, &res[i]) < 0) {
			fprintf(stderr, "csd-infer: %s: %s\n", res[i].label,
				res[i].err);
			rc = 1;
		}
	}
	for (i = 0; i < n; i++) {	/* sparse rows: agreement with dense */
		size_t nt = (size_t)o->batch * o->gen, same = 0, t;
		int ref = res[0].sparse > 0.0f ? -1 : 0;

		if (!res[i].sparse || res[i].ret || ref < 0 || res[ref].ret)
			continue;
		for (t = 0; t < nt; t++)
			same += res[i].tokens[t] == res[ref].tokens[t];
		res[i].agree = nt ? (double)same / (double)nt : 0;
	}
	if (o->json) {
		json_head(o, m, compare ? "compare" : "run");
		for (i = 0; i < n; i++)
			json_run(&res[i], i == n - 1);
		printf("  ]");
	} else {
		print_workload(o, m);
	}
	if (compare) {
		int match = 1;
		size_t nt = (size_t)o->batch * o->gen;

		for (i = 1; i < n; i++)
			if (res[i].sparse > 0.0f)	/* approximate */
				continue;
			else if (res[i].ret || res[0].ret ||
			    memcmp(res[i].tokens, res[0].tokens,
				   nt * sizeof(int32_t)) != 0)
				match = 0;
		if (o->json) {
			const struct result *fr = fgi >= 0 ? &res[fgi] : NULL;
			const struct result *cr = csi >= 0 ? &res[csi] : NULL;
			double fg = fr && !fr->ret ? fr->tok_s : 0;

			printf(",\n  \"tokens_match\": %s,\n  \"csd_over_flexgen\": %.4f,\n"
			       "  \"flexgen_read_over_raw\": %.4f\n}\n",
			       match ? "true" : "false",
			       fg > 0 && cr && !cr->ret ? cr->tok_s / fg : 0,
			       fr && fr->raw_read_gbs > 0 ?
			       fr->fg_read_gbs / fr->raw_read_gbs : 0);
		} else {
			printf("\n%-8s %10s %9s %9s %9s %9s %10s %11s %11s\n",
			       "backend", "tokens/s", "decode s", "host s",
			       "xfer s", "attn s", "modeled s", "host KV MiB",
			       "link MiB");
			for (i = 0; i < n; i++) {
				const struct result *r = &res[i];

				if (r->ret) {
					printf("%-8s failed: %s\n", r->label,
					       r->err);
					continue;
				}
				printf("%-8s %10.2f %9.3f %9.3f %9.3f %9.3f %10.3f %11.1f %11.1f\n",
				       r->label, r->tok_s, r->decode_s,
				       r->host_s, r->xfer_s, r->attn_s,
				       r->modeled_s, mib(r->bs.host_kv_bytes),
				       mib(r->bs.link_bytes));
			}
			printf("greedy tokens identical across backends: %s\n",
			       match ? "yes" : "NO");
			for (i = 0; i < n; i++)
				if (res[i].sparse > 0.0f && !res[i].ret)
					printf("%s (ratio %g): %.1f%% of greedy tokens equal to %s\n",
					       res[i].label, res[i].sparse,
					       100.0 * res[i].agree,
					       res[0].label);
			if (fgi >= 0 && !res[fgi].ret && res[fgi].fg_valid)
				printf("flexgen: %s%s, KV read %.2f GB/s vs raw O_DIRECT read %.2f GB/s of the same file\n",
				       res[fgi].fg_uring ? "io_uring" : "pread",
				       res[fgi].fg_direct ? " O_DIRECT" : " buffered",
				       res[fgi].fg_read_gbs, res[fgi].raw_read_gbs);
			if (fgi >= 0 && csi >= 0 && !res[fgi].ret &&
			    !res[csi].ret && res[fgi].tok_s > 0)
				printf("csd / flexgen tokens/s: %.2fx\n",
				       res[csi].tok_s / res[fgi].tok_s);
		}
		if (!match && !rc)
			rc = 1;
	} else if (o->json) {
		printf("\n}\n");
	} else if (!res[0].ret) {
		print_run(&res[0]);
		if (res[0].sparse > 0.0f)
			printf("  sparse       SparF ratio %g (KV read counts the drive's flash reads)\n",
			       res[0].sparse);
	}
	for (i = 0; i < n; i++) {
		free(res[i].tokens);
		free(dstr[i]);
	}
	rt_model_close(m);
	return rc;
}

int main(int argc, char **argv)
{
	const char *cmd;
	struct opts o;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") ||
	    !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (parse_opts(argc - 1, argv + 1, &o) < 0) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(cmd, "make-model"))
		return cmd_make_model(&o);
	if (!strcmp(cmd, "presets"))
		return cmd_presets();
	if (!strcmp(cmd, "run"))
		return cmd_run(&o, 0);
	if (!strcmp(cmd, "compare"))
		return cmd_run(&o, 1);
	fprintf(stderr, "csd-infer: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
