// SPDX-License-Identifier: MIT
/*
 * csd-demo - what `make demo` runs: decode-phase attention of a
 * 13B-class model (Llama-2-13B: 40 layers, 40 heads MHA, head_dim 128,
 * fp16 KV) on the drive, through libcsd, scaled to about a minute here.
 *
 *   1. create a KV context, bulk-append deterministic pseudo-random prefill
 *      KV for every (sequence, layer);
 *   2. decode steps: per layer, one fused k/v append + attention call per
 *      micro-batch, two micro-batches in flight;
 *   3. verify sampled (sequence, layer, step) outputs and log-sum-exps
 *      against a double-precision reference computed here from the same KV
 *      (regenerated from the same counter-based generator, so the host
 *      keeps no copy of the cache);
 *   4. report prefill GB/s, decode calls/s, KV GB/s read inside the drive,
 *      and the modeled time of the emulated InstInfer drive.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csd.h"

#define FULL_LAYERS	40	/* Llama-2-13B */
#define HEADS		40
#define HEAD_DIM	128
#define NSAMPLES	6

struct demo {
	uint32_t layers, batch, prompt, steps;
	uint64_t seed;
	const char *device;
	size_t row;		/* HEADS * HEAD_DIM halves */
	float *h2f;		/* fp16 -> f32 table */
};

/* a handful of samples, initialised positionally: padding is irrelevant */
struct sample { // NOLINT(clang-analyzer-optin.performance.Padding)
	uint32_t seq, layer, step;
	float *out;		/* [HEADS][HEAD_DIM] from the drive */
	float lse[HEADS];
	int have;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t key(const struct demo *d, uint32_t seq, uint32_t layer,
		    uint32_t tok, uint32_t what)
{
	return mix64(d->seed ^ mix64(((uint64_t)seq << 40) ^
				     ((uint64_t)layer << 32) ^ tok ^
				     ((uint64_t)what << 60)));
}

/*
 * One K or V row (what 0/1) of token @tok: random fp16 values with
 * magnitude in [1/16, 1) and random sign, built directly as bits.
 */
static void gen_row(const struct demo *d, uint32_t seq, uint32_t layer,
		    uint32_t tok, uint32_t what, uint16_t *dst)
{
	uint64_t s = key(d, seq, layer, tok, what), r = 0;
	size_t i;

	for (i = 0; i < d->row; i++) {
		uint16_t b;

		if ((i & 3) == 0)
			r = mix64(s += 0x9e3779b97f4a7c15ull);
		b = (uint16_t)(r & 0xffff);
		r >>= 16;
		dst[i] = (uint16_t)((b & 0x8000) |
				    (uint16_t)(11 + ((b >> 10) & 3)) << 10 |
				    (b & 0x3ff));
	}
}

/* q of (seq, layer, step): [HEADS][HEAD_DIM] in [-3, 3). */
static void gen_q(const struct demo *d, uint32_t seq, uint32_t layer,
		  uint32_t step, float *q)
{
	uint64_t s = key(d, seq, layer, step, 2);
	size_t i;

	for (i = 0; i < d->row; i++)
		q[i] = (float)((mix64(s += 0x9e3779b97f4a7c15ull) >> 40) *
			       (6.0 / (1ull << 24)) - 3.0);
}

static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
	float f;

	if (exp == 0) {
		f = (float)mant * (1.0f / 16777216.0f);
		return sign ? -f : f;
	}
	x = exp == 31 ? sign | 0x7f800000 | mant << 13
		      : sign | (exp + 112) << 23 | mant << 13;
	memcpy(&f, &x, 4);
	return f;
}

/* Double-precision reference of one sampled output, tokens [0, n). */
static int reference(const struct demo *d, const struct sample *sm,
		     double *out, double *lse)
{
	uint32_t n = d->prompt + sm->step + 1, t, h, i;
	uint16_t *k = malloc(d->row * 2), *v = malloc(d->row * 2);
	double *m = malloc(HEADS * sizeof(double));
	double *l = calloc(HEADS, sizeof(double));
	float q[HEADS * HEAD_DIM];
	double scale = 1.0 / sqrt(HEAD_DIM);

	if (!k || !v || !m || !l) {
		free(k);
		free(v);
		free(m);
		free(l);
		return -ENOMEM;
	}
	gen_q(d, sm->seq, sm->layer, sm->step, q);
	for (h = 0; h < HEADS; h++)
		m[h] = -INFINITY;
	memset(out, 0, sizeof(double) * HEADS * HEAD_DIM);
	for (t = 0; t < n; t++) {
		gen_row(d, sm->seq, sm->layer, t, 0, k);
		gen_row(d, sm->seq, sm->layer, t, 1, v);
		for (h = 0; h < HEADS; h++) {
			const uint16_t *kh = k + (size_t)h * HEAD_DIM;
			const uint16_t *vh = v + (size_t)h * HEAD_DIM;
			double s = 0, c, p, *o = out + (size_t)h * HEAD_DIM;

			for (i = 0; i < HEAD_DIM; i++)
				s += (double)q[h * HEAD_DIM + i] *
				     d->h2f[kh[i]];
			s *= scale;
			if (s > m[h]) {
				c = exp(m[h] - s);
				for (i = 0; i < HEAD_DIM; i++)
					o[i] *= c;
				l[h] *= c;
				m[h] = s;
			}
			p = exp(s - m[h]);
			l[h] += p;
			for (i = 0; i < HEAD_DIM; i++)
				o[i] += p * d->h2f[vh[i]];
		}
	}
	for (h = 0; h < HEADS; h++) {
		for (i = 0; i < HEAD_DIM; i++)
			out[h * HEAD_DIM + i] /= l[h];
		lse[h] = m[h] + log(l[h]);
	}
	free(k);
	free(v);
	free(m);
	free(l);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: csd-demo [--layers N] [--batch N] [--prompt N] [--steps N]\n"
		"                [--device STR] [--seed N]\n"
		"Decode attention of a Llama-2-13B-shaped KV cache on the drive.\n"
		"defaults: --layers 4 --batch 8 --prompt 4096 --steps 64\n"
		"          --device $CSD_DEVICE or embedded:\n");
}

static int parse_u32(const char *s, uint32_t *v, uint32_t min)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 0);
	if (errno || *end || end == s || x < min || x > 1u << 24)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int prefill(struct demo *d, struct csd_ctx *ctx, double *secs)
{
	size_t bytes = (size_t)d->prompt * d->row * 2;
	uint16_t *k = malloc(bytes), *v = malloc(bytes);
	uint32_t s, l, t;
	int rc = 0;

	*secs = 0;
	if (!k || !v) {
		rc = -ENOMEM;
		goto out;
	}
	for (s = 0; s < d->batch && !rc; s++) {
		for (l = 0; l < d->layers && !rc; l++) {
			double t0;

			for (t = 0; t < d->prompt; t++) {
				gen_row(d, s, l, t, 0, k + (size_t)t * d->row);
				gen_row(d, s, l, t, 1, v + (size_t)t * d->row);
			}
			t0 = now_s();
			rc = csd_kv_append(ctx, s, l, 0, d->prompt, k, v);
			*secs += now_s() - t0;
		}
		if (isatty(1)) {
			printf("\r  prefill  : %u/%u sequences", s + 1,
			       d->batch);
			fflush(stdout);
		}
	}
	if (isatty(1))
		printf("\r\033[K");
out:
	free(k);
	free(v);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "layers", required_argument, NULL, 'l' },
		{ "batch", required_argument, NULL, 'b' },
		{ "prompt", required_argument, NULL, 'p' },
		{ "steps", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo d = {
		.layers = 4, .batch = 8, .prompt = 4096, .steps = 64,
		.seed = 2025, .device = NULL, .row = HEADS * HEAD_DIM,
	};
	struct sample sm[NSAMPLES];
	struct csd_dev_stats st0, st1;
	struct csd_dev_info info;
	struct csd_ctx_params p;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	uint32_t *seqs = NULL, mb[2], mbn[2], step, l, i, j, sd;
	float *q = NULL, *out = NULL, *lse = NULL;
	uint16_t *kn = NULL, *vn = NULL;
	double prefill_s, t0, dec_s, modeled_sum = 0, max_err = 0, lse_err = 0;
	double se = 0, sref = 0, kv_gb;
	uint64_t calls = 0, ntok;
	int c, rc, pass;

	while ((c = getopt_long(argc, argv, "l:b:p:s:d:S:h", opts, NULL)) !=
	       -1) {
		uint32_t v = 0;

		switch (c) {
		case 'd':
			d.device = optarg;
			continue;
		case 'h':
			usage(stdout);
			return 0;
		case 'l': case 'b': case 'p': case 's': case 'S':
			if (parse_u32(optarg, &v, c == 'b' ? 2 : 1)) {
				fprintf(stderr, "csd-demo: bad value '%s'\n",
					optarg);
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
		if (c == 'l')
			d.layers = v;
		else if (c == 'b')
			d.batch = v;
		else if (c == 'p')
			d.prompt = v;
		else if (c == 's')
			d.steps = v;
		else
			d.seed = v;
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}

	memset(sm, 0, sizeof(sm));
	d.h2f = malloc(65536 * sizeof(float));
	if (!d.h2f)
		return 1;
	for (i = 0; i < 65536; i++)
		d.h2f[i] = half_to_float((uint16_t)i);

	rc = csd_dev_open(d.device, &dev);
	if (rc) {
		fprintf(stderr, "csd-demo: cannot open device: %s\n",
			strerror(-rc));
		return 1;
	}
	csd_dev_get_info(dev, &info);
	ntok = (uint64_t)d.batch * d.layers * d.prompt;
	printf("csd-demo: decode attention on a computational storage drive\n");
	printf("  drive    : %s (%s transport, %s kernel, %u threads, "
	       "profile %s: %u ch x %u MB/s, link %u MB/s)\n", info.model,
	       info.transport, info.simd, info.threads, info.profile,
	       info.channels, info.chan_mbps, info.link_mbps);
	printf("  model    : Llama-2-13B attention shape: %d layers, %d heads "
	       "(MHA), head_dim %d, fp16 KV\n", FULL_LAYERS, HEADS, HEAD_DIM);
	printf("  scaled to: %u of %d layers, batch %u, %u-token prompts, "
	       "%u decode steps\n", d.layers, FULL_LAYERS, d.batch, d.prompt,
	       d.steps);
	printf("             KV cache %.2f GB (%u x %u x %u tokens x %u B/token"
	       "/layer) on the drive, none on the host\n",
	       ntok * d.row * 4.0 / 1e9, d.layers, d.batch, d.prompt,
	       (unsigned int)(d.row * 4));

	p = (struct csd_ctx_params){
		.layers = d.layers, .kv_heads = HEADS, .q_heads = HEADS,
		.head_dim = HEAD_DIM, .dtype = CSD_KV_F16,
		.max_seqs = d.batch, .max_tokens = d.prompt + d.steps,
	};
	rc = csd_ctx_create(dev, &p, &ctx);
	if (rc) {
		fprintf(stderr, "csd-demo: context create: %s\n",
			strerror(-rc));
		goto out;
	}

	rc = prefill(&d, ctx, &prefill_s);
	if (rc) {
		fprintf(stderr, "csd-demo: prefill append: %s\n",
			strerror(-rc));
		goto out;
	}
	printf("  prefill  : %.2f GB appended in %.2f s: %.2f GB/s\n",
	       ntok * d.row * 4.0 / 1e9, prefill_s,
	       ntok * d.row * 4.0 / 1e9 / prefill_s);

	/* samples: (seq, layer, step) spread over the run */
	{
		const uint32_t L = d.layers, B = d.batch, S = d.steps;
		const uint32_t pick[NSAMPLES][3] = {
			{ 0, 0, 0 }, { B - 1, L - 1, S - 1 },
			{ B / 2, L / 2, S / 2 }, { 1, L - 1, 0 },
			{ B - 1, 0, S - 1 }, { B / 3, L > 1 ? 1 : 0, S / 3 },
		};

		for (i = 0; i < NSAMPLES; i++) {
			sm[i] = (struct sample){ pick[i][0], pick[i][1],
						 pick[i][2], NULL, { 0 }, 0 };
			sm[i].out = malloc(d.row * sizeof(float));
			if (!sm[i].out) {
				rc = -ENOMEM;
				goto out;
			}
		}
	}

	seqs = malloc(d.batch * sizeof(*seqs));
	q = malloc((size_t)d.batch * d.row * sizeof(float));
	out = malloc((size_t)d.batch * d.row * sizeof(float));
	lse = malloc((size_t)d.batch * HEADS * sizeof(float));
	kn = malloc((size_t)d.batch * d.row * 2);
	vn = malloc((size_t)d.batch * d.row * 2);
	if (!seqs || !q || !out || !lse || !kn || !vn) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < d.batch; i++)
		seqs[i] = i;
	mb[0] = 0;
	mbn[0] = d.batch / 2;
	mb[1] = mbn[0];
	mbn[1] = d.batch - mbn[0];

	csd_dev_get_stats(dev, &st0);
	t0 = now_s();
	for (step = 0; step < d.steps && !rc; step++) {
		double step_ns = 0;

		for (l = 0; l < d.layers && !rc; l++) {
			struct csd_attn *op[2] = { NULL, NULL };
			struct csd_attn_result res;

			/* this step's q and new k/v rows (host side) */
			for (i = 0; i < d.batch; i++) {
				uint32_t tok = d.prompt + step;

				gen_q(&d, i, l, step, q + (size_t)i * d.row);
				gen_row(&d, i, l, tok, 0,
					kn + (size_t)i * d.row);
				gen_row(&d, i, l, tok, 1,
					vn + (size_t)i * d.row);
			}
			/* two micro-batches in flight */
			for (j = 0; j < 2 && !rc; j++) {
				size_t o = (size_t)mb[j] * d.row;
				struct csd_attn_req req = {
					.layer = l, .nseq = mbn[j],
					.flags = CSD_ATTN_FUSED_KV |
						 CSD_ATTN_LSE,
					.seqs = seqs + mb[j], .q = q + o,
					.k_new = kn + o, .v_new = vn + o,
					.out = out + o,
					.lse = lse + (size_t)mb[j] * HEADS,
				};

				rc = csd_attn_submit(ctx, &req, &op[j]);
			}
			for (j = 0; j < 2; j++) {
				int w;

				if (!op[j])
					continue;
				w = csd_attn_wait(op[j], &res);
				if (w && !rc)
					rc = w;
				step_ns += (double)res.modeled_ns;
				calls++;
			}
			if (rc)
				break;
			for (i = 0; i < NSAMPLES; i++) {
				if (sm[i].layer != l || sm[i].step != step)
					continue;
				memcpy(sm[i].out,
				       out + (size_t)sm[i].seq * d.row,
				       d.row * sizeof(float));
				memcpy(sm[i].lse,
				       lse + (size_t)sm[i].seq * HEADS,
				       sizeof(sm[i].lse));
				sm[i].have = 1;
			}
		}
		modeled_sum += step_ns;
		if (isatty(1)) {
			printf("\r  decode   : step %u/%u", step + 1, d.steps);
			fflush(stdout);
		}
	}
	dec_s = now_s() - t0;
	if (isatty(1))
		printf("\r\033[K");
	if (rc) {
		fprintf(stderr, "csd-demo: attention: %s\n", strerror(-rc));
		goto out;
	}
	csd_dev_get_stats(dev, &st1);
	kv_gb = (double)(st1.flash_bytes_read - st0.flash_bytes_read) / 1e9;
	printf("  decode   : %llu attention calls (%u seqs each, fused k/v "
	       "append, 2 in flight) in %.2f s: %.1f calls/s, %.1f "
	       "tokens/s (scaled model)\n", (unsigned long long)calls,
	       mbn[0], dec_s, calls / dec_s, d.batch * d.steps / dec_s);
	printf("             KV read inside the drive: %.2f GB, %.2f GB/s "
	       "(%llu (seq, token) pairs attended)\n", kv_gb, kv_gb / dec_s,
	       (unsigned long long)(st1.attn_tokens - st0.attn_tokens));
	{
		double per_step = modeled_sum / d.steps;	/* ns */
		double full = per_step * FULL_LAYERS / d.layers;

		printf("  modeled  : InstInfer-class drive (%s profile): %.3f s "
		       "device time for the decode (stats), %.2f ms per step "
		       "of %u layers\n", info.profile,
		       (st1.modeled_ns - st0.modeled_ns) / 1e9, per_step / 1e6,
		       d.layers);
		printf("             -> %.1f ms per step at all %d layers: "
		       "%.1f tokens/s for batch %u (attention on the drive "
		       "only)\n", full / 1e6, FULL_LAYERS,
		       full > 0 ? d.batch / (full / 1e9) : 0.0, d.batch);
	}

	/* verification */
	for (i = 0; i < NSAMPLES; i++) {
		double *ro = malloc(d.row * sizeof(double)), rl[HEADS];

		if (!ro || !sm[i].have) {
			free(ro);
			rc = -EIO;
			goto out;
		}
		rc = reference(&d, &sm[i], ro, rl);
		if (rc) {
			free(ro);
			goto out;
		}
		for (sd = 0; sd < d.row; sd++) {
			double e = sm[i].out[sd] - ro[sd];

			se += e * e;
			sref += ro[sd] * ro[sd];
			max_err = fmax(max_err, fabs(e));
		}
		for (sd = 0; sd < HEADS; sd++)
			lse_err = fmax(lse_err, fabs(sm[i].lse[sd] - rl[sd]));
		free(ro);
	}
	{
		double nmse = sref > 0 ? se / sref : se;

		pass = nmse <= 1e-6 && max_err <= 1e-3 && lse_err <= 1e-3 &&
		       isfinite(nmse);
		printf("  verify   : %d samples (seq, layer, step) vs a double-"
		       "precision host reference: max |err| %.3g, NMSE %.3g, "
		       "max |lse err| %.3g: %s\n", NSAMPLES, max_err, nmse,
		       lse_err, pass ? "PASS" : "FAIL");
	}
	rc = pass ? 0 : -EIO;

out:
	if (ctx)
		csd_ctx_destroy(ctx);
	csd_dev_close(dev);
	for (i = 0; i < NSAMPLES; i++)
		if (sm[i].out)
			free(sm[i].out);
	free(seqs);
	free(q);
	free(out);
	free(lse);
	free(kn);
	free(vn);
	free(d.h2f);
	return rc ? 1 : 0;
}
