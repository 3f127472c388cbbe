/* SPDX-License-Identifier: MIT */
/*
 * test_decode.c - the decoder on a tiny synthetic model against a
 * straightforward single-thread reference decoder (double accumulation,
 * fp16-rounded KV like the runtime's KV cache), with a test-local naive
 * attention backend (KV in RAM).
 *
 * Tolerance: |logit - ref| <= 5e-4 * (1 + max |ref logit|) per position.
 * The runtime accumulates in float (SIMD order), the reference in double;
 * both see the same fp16 weights and fp16-rounded K/V, so only float
 * rounding separates them.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cu_main.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_ops.h"
#include "rt_synth.h"

#define TOL_REL	5e-4

/* ---- test-local backend: naive attention, KV (fp16) in RAM ---- */

struct nbe {
	const struct rt_backend_ops *ops;
	struct rt_shape sh;
	uint16_t *k, *v;	/* [seq][layer][tok][kvd] */
	uint32_t *len;		/* [seq][layer] */
	uint64_t calls;
};

static size_t nbe_off(struct nbe *b, uint32_t s, uint32_t l, uint32_t t)
{
	size_t kvd = (size_t)b->sh.kv_heads * b->sh.head_dim;

	return (((size_t)s * b->sh.layers + l) * b->sh.max_tokens + t) * kvd;
}

static const struct rt_backend_ops naive_ops;

static int nbe_open(const struct rt_shape *sh, const char *opts,
		    struct rt_backend **bp)
{
	struct nbe *b = calloc(1, sizeof(*b));
	size_t n;

	if (!b)
		return -ENOMEM;
	b->ops = &naive_ops;
	b->sh = *sh;
	n = (size_t)sh->max_seqs * sh->layers * sh->max_tokens *
	    sh->kv_heads * sh->head_dim;
	b->k = calloc(n, 2);
	b->v = calloc(n, 2);
	b->len = calloc((size_t)sh->max_seqs * sh->layers, sizeof(uint32_t));
	if (!b->k || !b->v || !b->len) {
		free(b->k);
		free(b->v);
		free(b->len);
		free(b);
		return -ENOMEM;
	}
	*bp = (struct rt_backend *)b;
	return 0;
}

static void nbe_close(struct rt_backend *bp)
{
	struct nbe *b = (struct nbe *)bp;

	free(b->k);
	free(b->v);
	free(b->len);
	free(b);
}

static int nbe_append(struct rt_backend *bp, uint32_t s, uint32_t l,
		      uint32_t start, uint32_t ntok, const uint16_t *k,
		      const uint16_t *v)
{
	struct nbe *b = (struct nbe *)bp;
	uint32_t *len = &b->len[(size_t)s * b->sh.layers + l];
	size_t kvd = (size_t)b->sh.kv_heads * b->sh.head_dim;

	if (s >= b->sh.max_seqs || start != *len ||
	    start + ntok > b->sh.max_tokens)
		return -EINVAL;
	memcpy(b->k + nbe_off(b, s, l, start), k, ntok * kvd * 2);
	memcpy(b->v + nbe_off(b, s, l, start), v, ntok * kvd * 2);
	*len += ntok;
	return 0;
}

static int nbe_submit(struct rt_backend *bp, uint32_t l, uint32_t nseq,
		      const uint32_t *seqs, const float *q,
		      const uint16_t *kn, const uint16_t *vn, float *out)
{
	struct nbe *b = (struct nbe *)bp;
	uint32_t hd = b->sh.head_dim, qh = b->sh.q_heads, kh = b->sh.kv_heads;
	size_t kvd = (size_t)kh * hd;
	uint32_t i, h, t, e;
	int ret;

	for (i = 0; i < nseq; i++) {
		uint32_t s = seqs[i], n;

		ret = nbe_append(bp, s, l, b->len[(size_t)s * b->sh.layers + l],
				 1, kn + i * kvd, vn + i * kvd);
		if (ret)
			return ret;
		n = b->len[(size_t)s * b->sh.layers + l];
		for (h = 0; h < qh; h++) {
			const float *qq = q + ((size_t)i * qh + h) * hd;
			uint32_t g = h / (qh / kh);
			double *sc = malloc(n * sizeof(double)), m = -INFINITY,
			       sum = 0;

			if (!sc)
				return -ENOMEM;
			for (t = 0; t < n; t++) {
				const uint16_t *kk = b->k + nbe_off(b, s, l, t) +
						     (size_t)g * hd;
				double d = 0;

				for (e = 0; e < hd; e++)
					d += (double)qq[e] *
					     rt_fp16_to_fp32(kk[e]);
				sc[t] = d / sqrt((double)hd);
				if (sc[t] > m)
					m = sc[t];
			}
			for (t = 0; t < n; t++) {
				sc[t] = exp(sc[t] - m);
				sum += sc[t];
			}
			for (e = 0; e < hd; e++) {
				double acc = 0;

				for (t = 0; t < n; t++)
					acc += sc[t] * rt_fp16_to_fp32(
						b->v[nbe_off(b, s, l, t) +
						     (size_t)g * hd + e]);
				out[((size_t)i * qh + h) * hd + e] =
					(float)(acc / sum);
			}
			free(sc);
		}
	}
	b->calls++;
	return 0;
}

static int nbe_wait(struct rt_backend *bp, int ticket)
{
	return 0;
}

static int nbe_reset(struct rt_backend *bp, uint32_t s)
{
	struct nbe *b = (struct nbe *)bp;

	memset(&b->len[(size_t)s * b->sh.layers], 0,
	       b->sh.layers * sizeof(uint32_t));
	return 0;
}

static void nbe_stats(struct rt_backend *bp, struct rt_backend_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->attn_calls = ((struct nbe *)bp)->calls;
}

static const struct rt_backend_ops naive_ops = {
	.name = "naive", .open = nbe_open, .close = nbe_close,
	.append = nbe_append, .submit = nbe_submit, .wait = nbe_wait,
	.reset = nbe_reset, .get_stats = nbe_stats,
};

/* ---- reference decoder: one sequence, double accumulation ---- */

struct refw {
	float *data;
	uint32_t k, n;
};

struct ref {
	const struct rt_model *m;
	struct refw embd, out, *w;	/* w: [layer][7] */
	double *kc, *vc;		/* [layer][tok][kvd] fp16-rounded */
	uint32_t len, cap;
};

static void refw_load(struct refw *r, const struct rt_weight *w)
{
	uint32_t i;

	r->k = w->k;
	r->n = w->n;
	r->data = malloc((size_t)w->k * w->n * sizeof(float));
	CU_ASSERT_FATAL(r->data != NULL);
	for (i = 0; i < w->n; i++)
		rt_dequant_row(w->type, (const uint8_t *)w->data +
			       (size_t)i * w->row_bytes,
			       r->data + (size_t)i * w->k, w->k);
}

static void ref_init(struct ref *r, const struct rt_model *m, uint32_t cap)
{
	const struct rt_hparams *hp = &m->hp;
	size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
	uint32_t l;

	memset(r, 0, sizeof(*r));
	r->m = m;
	r->cap = cap;
	refw_load(&r->embd, &m->tok_embd);
	refw_load(&r->out, &m->output);
	r->w = calloc((size_t)hp->n_layer * 7, sizeof(*r->w));
	r->kc = calloc((size_t)hp->n_layer * cap * kvd, sizeof(double));
	r->vc = calloc((size_t)hp->n_layer * cap * kvd, sizeof(double));
	CU_ASSERT_FATAL(r->w && r->kc && r->vc);
	for (l = 0; l < hp->n_layer; l++) {
		const struct rt_layer *ly = &m->layers[l];
		struct refw *w = r->w + (size_t)l * 7;

		refw_load(&w[0], &ly->wq);
		refw_load(&w[1], &ly->wk);
		refw_load(&w[2], &ly->wv);
		refw_load(&w[3], &ly->wo);
		refw_load(&w[4], &ly->w_gate);
		refw_load(&w[5], &ly->w_up);
		refw_load(&w[6], &ly->w_down);
	}
}

static void ref_free(struct ref *r)
{
	uint32_t i;

	free(r->embd.data);
	free(r->out.data);
	for (i = 0; i < r->m->hp.n_layer * 7; i++)
		free(r->w[i].data);
	free(r->w);
	free(r->kc);
	free(r->vc);
}

static void rmv(const struct refw *w, const double *x, double *y)
{
	uint32_t i, j;

	for (i = 0; i < w->n; i++) {
		double a = 0;

		for (j = 0; j < w->k; j++)
			a += (double)w->data[(size_t)i * w->k + j] * x[j];
		y[i] = a;
	}
}

static void rnorm(const double *x, const float *w, uint32_t n, double eps,
		  double *y)
{
	double ss = 0;
	uint32_t i;

	for (i = 0; i < n; i++)
		ss += x[i] * x[i];
	ss = 1.0 / sqrt(ss / n + eps);
	for (i = 0; i < n; i++)
		y[i] = x[i] * ss * w[i];
}

static void rrope(double *x, uint32_t nh, uint32_t hd, uint32_t nr,
		  uint32_t pos, double base)
{
	uint32_t h, i;

	for (h = 0; h < nh; h++)
		for (i = 0; i < nr / 2; i++) {
			double th = pos * pow(base, -2.0 * i / nr);
			double *p = x + (size_t)h * hd + 2 * i, a = p[0], b = p[1];

			p[0] = a * cos(th) - b * sin(th);
			p[1] = a * sin(th) + b * cos(th);
		}
}

static double fp16r(double x)
{
	return rt_fp16_to_fp32(rt_fp32_to_fp16((float)x));
}

/* Feeds @tok at position r->len, writes logits [n_vocab]. */
static void ref_step(struct ref *r, int32_t tok, double *logits)
{
	const struct rt_hparams *hp = &r->m->hp;
	uint32_t dim = hp->n_embd, hd = hp->head_dim, qd = hp->n_head * hd;
	uint32_t kvd = hp->n_head_kv * hd, l, i, h, t, e, pos = r->len;
	double *x = calloc(dim, 8), *xn = calloc(dim, 8), *q = calloc(qd, 8);
	double *k = calloc(kvd, 8), *v = calloc(kvd, 8), *att = calloc(qd, 8);
	double *o = calloc(dim, 8), *g = calloc(hp->n_ff, 8);
	double *u = calloc(hp->n_ff, 8), *sc = calloc(pos + 1, 8);

	CU_ASSERT_FATAL(x && xn && q && k && v && att && o && g && u && sc);
	CU_ASSERT_FATAL(pos < r->cap);
	for (i = 0; i < dim; i++)
		x[i] = r->embd.data[(size_t)tok * dim + i];
	for (l = 0; l < hp->n_layer; l++) {
		const struct rt_layer *ly = &r->m->layers[l];
		struct refw *w = r->w + (size_t)l * 7;
		double *kc = r->kc + (size_t)l * r->cap * kvd;
		double *vc = r->vc + (size_t)l * r->cap * kvd;

		rnorm(x, ly->attn_norm, dim, hp->rms_eps, xn);
		rmv(&w[0], xn, q);
		rmv(&w[1], xn, k);
		rmv(&w[2], xn, v);
		rrope(q, hp->n_head, hd, hp->n_rot, pos, hp->rope_base);
		rrope(k, hp->n_head_kv, hd, hp->n_rot, pos, hp->rope_base);
		for (i = 0; i < kvd; i++) {
			kc[(size_t)pos * kvd + i] = fp16r(k[i]);
			vc[(size_t)pos * kvd + i] = fp16r(v[i]);
		}
		for (h = 0; h < hp->n_head; h++) {
			uint32_t kh = h / (hp->n_head / hp->n_head_kv);
			double m = -INFINITY, sum = 0;

			for (t = 0; t <= pos; t++) {
				double d = 0;

				for (e = 0; e < hd; e++)
					d += q[h * hd + e] *
					     kc[(size_t)t * kvd + kh * hd + e];
				sc[t] = d / sqrt((double)hd);
				m = sc[t] > m ? sc[t] : m;
			}
			for (t = 0; t <= pos; t++) {
				sc[t] = exp(sc[t] - m);
				sum += sc[t];
			}
			for (e = 0; e < hd; e++) {
				double a = 0;

				for (t = 0; t <= pos; t++)
					a += sc[t] *
					     vc[(size_t)t * kvd + kh * hd + e];
				att[h * hd + e] = a / sum;
			}
		}
		rmv(&w[3], att, o);
		for (i = 0; i < dim; i++)
			x[i] += o[i];
		rnorm(x, ly->ffn_norm, dim, hp->rms_eps, xn);
		rmv(&w[4], xn, g);
		rmv(&w[5], xn, u);
		for (i = 0; i < hp->n_ff; i++)
			g[i] = g[i] / (1 + exp(-g[i])) * u[i];
		rmv(&w[6], g, o);
		for (i = 0; i < dim; i++)
			x[i] += o[i];
	}
	rnorm(x, r->m->output_norm, dim, hp->rms_eps, xn);
	rmv(&r->out, xn, logits);
	r->len++;
	free(x); free(xn); free(q); free(k); free(v); free(att); free(o);
	free(g); free(u); free(sc);
}

/* max |a - b| / (1 + max |b|) */
static double logit_err(const float *a, const double *b, uint32_t n)
{
	double md = 0, mb = 0;
	uint32_t i;

	for (i = 0; i < n; i++) {
		md = fmax(md, fabs(a[i] - b[i]));
		mb = fmax(mb, fabs(b[i]));
	}
	return md / (1 + mb);
}

/* ---- fixtures ---- */

static char model_path[4][64];
static struct rt_model *models[4];
static const uint32_t wtypes[4] = { RT_TYPE_F16, RT_TYPE_F32, RT_TYPE_BF16,
				    RT_TYPE_Q8_0 };

static int suite_init(void)
{
	struct rt_synth_opts o;
	char err[256];
	int i, fd;

	for (i = 0; i < 4; i++) {
		snprintf(model_path[i], sizeof(model_path[i]),
			 "/tmp/csd-test-decode-XXXXXX");
		fd = mkstemp(model_path[i]);
		if (fd < 0)
			return -1;
		close(fd);
		memset(&o, 0, sizeof(o));
		o.preset = "tiny";
		o.wtype = (int)wtypes[i];
		o.seed = 1234;
		if (rt_synth_write(model_path[i], &o, err, sizeof(err))) {
			fprintf(stderr, "synth: %s\n", err);
			return -1;
		}
		if (rt_model_open(model_path[i], &models[i], err,
				  sizeof(err))) {
			fprintf(stderr, "model: %s\n", err);
			return -1;
		}
	}
	return 0;
}

static int suite_fini(void)
{
	int i;

	for (i = 0; i < 4; i++) {
		rt_model_close(models[i]);
		unlink(model_path[i]);
	}
	return 0;
}

static void make_prompt(int32_t *p, uint32_t len, uint32_t salt,
			const struct rt_model *m)
{
	uint32_t i;

	p[0] = m->bos;
	for (i = 1; i < len; i++)
		p[i] = 3 + (int32_t)((i * 31 + salt * 17 + i * i) % 256);
}

static struct rt_decoder *mkdec(const struct rt_model *m,
				const struct rt_backend_ops *ops,
				uint32_t batch, uint32_t max_tokens,
				uint32_t threads, uint32_t mb)
{
	struct rt_decoder_config c;
	struct rt_decoder *d = NULL;
	char err[256] = "";
	int ret;

	rt_decoder_config_init(&c, batch, max_tokens, threads);
	c.micro_batches = mb;
	c.prefill_chunk = 7;	/* exercise chunking */
	ret = rt_decoder_create(m, ops, "", &c, &d, err, sizeof(err));
	if (ret)
		fprintf(stderr, "decoder: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(ret, 0);
	return d;
}

/* ---- tests ---- */

static void test_tokenizer(void)
{
	const struct rt_model *m = models[0];
	int32_t toks[32];
	char buf[4], out[32];
	int n, i, k = 0;

	CU_ASSERT_EQUAL(m->hp.n_vocab, RT_SYNTH_VOCAB);
	CU_ASSERT_EQUAL(m->hp.head_dim, 64);
	CU_ASSERT_EQUAL(m->tok_kind, RT_TOK_LLAMA);
	n = rt_model_tokenize(m, "hi\n\xff", 4, 1, toks, 32);
	CU_ASSERT_EQUAL_FATAL(n, 5);
	CU_ASSERT_EQUAL(toks[0], 1);
	CU_ASSERT_EQUAL(toks[1], 3 + 'h');
	for (i = 0; i < n; i++) {
		int r = rt_model_detokenize(m, toks[i], buf, sizeof(buf));

		CU_ASSERT(r >= 0);
		if (r > 0)
			out[k++] = buf[0];
	}
	CU_ASSERT_EQUAL(k, 4);
	CU_ASSERT(memcmp(out, "hi\n\xff", 4) == 0);
	CU_ASSERT_EQUAL(rt_model_detokenize(m, 9999, buf, 4), -EINVAL);
}

/* Batch 1: prefill + 24 greedy steps, logits vs reference, every type. */
static void test_ref_batch1(void)
{
	uint32_t ti, st, L = 9;

	for (ti = 0; ti < 4; ti++) {
		const struct rt_model *m = models[ti];
		struct rt_decoder *d = mkdec(m, &naive_ops, 1, 64, 2, 0);
		double *rl = malloc(m->hp.n_vocab * sizeof(double));
		const int32_t *pp[1];
		int32_t prompt[16], tok;
		struct ref r;
		double worst = 0;
		uint32_t i;

		CU_ASSERT_FATAL(rl != NULL);
		ref_init(&r, m, 64);
		make_prompt(prompt, L, 1, m);
		pp[0] = prompt;
		CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill(d, pp, &L, &tok), 0);
		for (i = 0; i < L; i++)
			ref_step(&r, prompt[i], rl);
		worst = fmax(worst, logit_err(rt_decoder_logits(d, 0), rl,
					      m->hp.n_vocab));
		for (st = 0; st < 24; st++) {
			ref_step(&r, tok, rl);
			CU_ASSERT_EQUAL_FATAL(rt_decoder_step(d, NULL, &tok), 0);
			worst = fmax(worst, logit_err(rt_decoder_logits(d, 0),
						      rl, m->hp.n_vocab));
		}
		fprintf(stderr, "  %s: worst logit error %.2e (tol %.0e)\n",
			rt_type_name(wtypes[ti]), worst, TOL_REL);
		CU_ASSERT(worst <= TOL_REL);
		CU_ASSERT_EQUAL(rt_decoder_pos(d, 0), L + 24);
		ref_free(&r);
		free(rl);
		rt_decoder_destroy(d);
	}
}

#define B8	8
#define GEN	64

static void run_batch(const struct rt_model *m, const struct rt_backend_ops *ops,
		      uint32_t batch, uint32_t first_salt, const uint32_t *lens,
		      uint32_t threads, uint32_t mb, int32_t (*toks)[GEN + 1])
{
	struct rt_decoder *d = mkdec(m, ops, batch, 128, threads, mb);
	int32_t prompts[B8][32], first[B8], out[B8];
	const int32_t *pp[B8];
	uint32_t s, st;

	for (s = 0; s < batch; s++) {
		make_prompt(prompts[s], lens[s], first_salt + s, m);
		pp[s] = prompts[s];
	}
	CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill(d, pp, lens, first), 0);
	for (s = 0; s < batch; s++)
		toks[s][0] = first[s];
	for (st = 0; st < GEN; st++) {
		CU_ASSERT_EQUAL_FATAL(rt_decoder_step(d, NULL, out), 0);
		for (s = 0; s < batch; s++)
			toks[s][st + 1] = out[s];
	}
	rt_decoder_destroy(d);
}

static const uint32_t lens8[B8] = { 1, 17, 5, 30, 2, 9, 23, 12 };

/* Batch 8 (mixed prompts) == 8 single runs, >= 64 greedy steps. */
static void test_batch_vs_single(void)
{
	static int32_t bt[B8][GEN + 1], one[1][GEN + 1], bt1[B8][GEN + 1];
	const struct rt_model *m = models[0];
	uint32_t s, distinct = 0, i, j;

	run_batch(m, &naive_ops, B8, 0, lens8, 2, 0, bt);
	for (s = 0; s < B8; s++) {
		run_batch(m, &naive_ops, 1, s, &lens8[s], 1, 0, one);
		CU_ASSERT(memcmp(one[0], bt[s], sizeof(one[0])) == 0);
	}
	/* one micro-batch, 3 threads: same tokens */
	run_batch(m, &naive_ops, B8, 0, lens8, 3, 1, bt1);
	CU_ASSERT(memcmp(bt, bt1, sizeof(bt)) == 0);
	/* greedy decoding is not degenerate: several distinct tokens */
	for (i = 0; i <= GEN; i++) {
		for (j = 0; j < i; j++)
			if (bt[3][j] == bt[3][i])
				break;
		distinct += j == i;
	}
	fprintf(stderr, "  seq 3: %u distinct tokens in %u\n", distinct,
		GEN + 1);
	CU_ASSERT(distinct >= 4);
}

/* Batch 8: logits of every sequence vs the reference along the way. */
static void test_ref_batch8(void)
{
	const struct rt_model *m = models[3];	/* q8_0 */
	struct rt_decoder *d = mkdec(m, &naive_ops, B8, 128, 2, 2);
	int32_t prompts[B8][32], cur[B8];
	const int32_t *pp[B8];
	struct ref r[B8];
	double *rl = malloc(m->hp.n_vocab * sizeof(double)), worst = 0;
	uint32_t s, i, st;

	CU_ASSERT_FATAL(rl != NULL);
	for (s = 0; s < B8; s++) {
		make_prompt(prompts[s], lens8[s], 100 + s, m);
		pp[s] = prompts[s];
		ref_init(&r[s], m, 128);
	}
	CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill(d, pp, lens8, cur), 0);
	for (s = 0; s < B8; s++) {
		for (i = 0; i < lens8[s]; i++)
			ref_step(&r[s], prompts[s][i], rl);
		worst = fmax(worst, logit_err(rt_decoder_logits(d, s), rl,
					      m->hp.n_vocab));
	}
	for (st = 0; st < 20; st++) {
		int32_t in[B8];

		memcpy(in, cur, sizeof(in));
		CU_ASSERT_EQUAL_FATAL(rt_decoder_step(d, in, cur), 0);
		for (s = 0; s < B8; s++) {
			ref_step(&r[s], in[s], rl);
			worst = fmax(worst, logit_err(rt_decoder_logits(d, s),
						      rl, m->hp.n_vocab));
		}
	}
	fprintf(stderr, "  batch 8 worst logit error %.2e\n", worst);
	CU_ASSERT(worst <= TOL_REL);
	for (s = 0; s < B8; s++)
		ref_free(&r[s]);
	free(rl);
	rt_decoder_destroy(d);
}

/* The real host backend gives the same greedy tokens as the naive one. */
static void test_host_backend(void)
{
	static int32_t a[B8][GEN + 1], b[B8][GEN + 1];

	run_batch(models[0], &naive_ops, B8, 50, lens8, 2, 2, a);
	run_batch(models[0], &rt_backend_host, B8, 50, lens8, 2, 2, b);
	CU_ASSERT(memcmp(a, b, sizeof(a)) == 0);
}

static void test_limits(void)
{
	const struct rt_model *m = models[0];
	struct rt_decoder *d = mkdec(m, &naive_ops, 2, 8, 1, 0);
	struct rt_decode_stats st;
	uint32_t lens[2] = { 3, 8 }, i;
	int32_t p[2][8], out[2];
	const int32_t *pp[2] = { p[0], p[1] };

	make_prompt(p[0], 8, 0, m);
	make_prompt(p[1], 8, 1, m);
	CU_ASSERT_EQUAL(rt_decoder_prefill(d, pp, lens, NULL), -EINVAL);
	lens[1] = 6;
	p[0][1] = 5000;
	CU_ASSERT_EQUAL(rt_decoder_prefill(d, pp, lens, NULL), -EINVAL);
	p[0][1] = 7;
	CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill(d, pp, lens, NULL), 0);
	CU_ASSERT_EQUAL(rt_decoder_step(d, NULL, out), 0);
	CU_ASSERT_EQUAL(rt_decoder_step(d, NULL, out), 0);
	CU_ASSERT_EQUAL(rt_decoder_step(d, NULL, out), -ENOSPC);
	rt_decoder_stats(d, &st);
	CU_ASSERT_EQUAL(st.steps, 2);
	CU_ASSERT_EQUAL(st.prompt_tokens, 9);
	CU_ASSERT_EQUAL(st.backend.attn_calls, 2 * 2 * m->hp.n_layer);
	/* re-prefill resets and works again */
	CU_ASSERT_EQUAL(rt_decoder_prefill(d, pp, lens, NULL), 0);
	CU_ASSERT_EQUAL(rt_decoder_pos(d, 1), 6);
	/* synthetic prefill: decode over random KV */
	lens[0] = 5;
	lens[1] = 2;
	CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill_synthetic(d, lens, 9, 1), 0);
	CU_ASSERT_EQUAL(rt_decoder_step(d, NULL, out), 0);
	for (i = 0; i < 2; i++)
		CU_ASSERT(out[i] >= 0 && (uint32_t)out[i] < m->hp.n_vocab);
	CU_ASSERT_EQUAL(rt_decoder_pos(d, 0), 6);
	rt_decoder_destroy(d);
}

static void test_sampling(void)
{
	const struct rt_model *m = models[0];
	struct rt_sampling sp = { 0.8f, 40, 0.95f, 77 };
	int32_t ta[2][20], tb[2][20], p[2][4], out[2];
	const int32_t *pp[2] = { p[0], p[1] };
	uint32_t lens[2] = { 4, 4 }, run, i, s;

	make_prompt(p[0], 4, 0, m);
	make_prompt(p[1], 4, 0, m);
	for (run = 0; run < 2; run++) {
		struct rt_decoder *d = mkdec(m, &naive_ops, 2, 64, 2, 0);

		rt_decoder_set_sampling(d, &sp);
		CU_ASSERT_EQUAL_FATAL(rt_decoder_prefill(d, pp, lens, NULL), 0);
		for (i = 0; i < 20; i++) {
			CU_ASSERT_EQUAL_FATAL(rt_decoder_step(d, NULL, out), 0);
			for (s = 0; s < 2; s++)
				(run ? tb : ta)[s][i] = out[s];
		}
		rt_decoder_destroy(d);
	}
	/* seeded: reproducible; per-sequence RNG: same prompt, other draws */
	CU_ASSERT(memcmp(ta, tb, sizeof(ta)) == 0);
	CU_ASSERT(memcmp(ta[0], ta[1], sizeof(ta[0])) != 0);
}

static CU_TestInfo decode_tests[] = {
	{ "tokenizer", test_tokenizer },
	{ "ref_batch1_all_types", test_ref_batch1 },
	{ "ref_batch8_mixed", test_ref_batch8 },
	{ "batch8_vs_single_64_steps", test_batch_vs_single },
	{ "host_backend_same_tokens", test_host_backend },
	{ "limits_and_synthetic_prefill", test_limits },
	{ "sampling", test_sampling },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "decode", suite_init, suite_fini, decode_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
