/* SPDX-License-Identifier: MIT */
/*
 * rt_decode.c - the host decoder (see rt_decode.h).
 *
 * Decode step, per micro-batch ("half") h and layer l:
 *   pre(h, l):  xn = rmsnorm(x) * attn_norm; q, k, v = xn . W{q,k,v};
 *               RoPE(q, k) at each sequence's position; k, v -> fp16;
 *               backend submit(l, q, k, v) -> att
 *   post(h, l): x += att . Wo; x += W_down (silu(xn . Wg) * (xn . Wu))
 * Pipeline with two halves:
 *   for l: for h: { if l: wait(h, l-1), post(h, l-1); pre(h, l) + submit }
 * so the host works on one half while the backend attends the other.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_decode.h"
#include "rt_ops.h"

struct half {
	uint32_t s0, n;			/* sequences [s0, s0 + n) */
	uint32_t *seqs;
	float *xn, *q, *k, *v, *att, *o, *g, *u;
	uint16_t *k16, *v16;
	int ticket;			/* -1: nothing in flight */
};

struct rt_decoder {
	const struct rt_model *m;
	struct rt_hparams hp;
	struct rt_decoder_config cfg;
	const struct rt_backend_ops *ops;
	struct rt_backend *be;
	struct rt_pool *pool;
	int simd;
	uint32_t B, max_tokens, qd, kvd;
	uint32_t *pos;
	int32_t *next;
	float *x;			/* [B][n_embd] residual */
	float *xn_all;			/* [B][n_embd] */
	float *logits;			/* [B][n_vocab] */
	struct rt_rng *rng;		/* [B] */
	float *samp;
	uint32_t *samp_idx;
	struct half h[2];
	uint32_t nh;
	float **att_scratch;		/* [threads][max_tokens] prefill */
	struct rt_decode_stats st;
};


void rt_decoder_config_init(struct rt_decoder_config *c, uint32_t batch,
			    uint32_t max_tokens, uint32_t threads)
{
	memset(c, 0, sizeof(*c));
	c->batch = batch;
	c->max_tokens = max_tokens;
	c->threads = threads;
	c->simd = RT_SIMD_AUTO;
}

static void half_free(struct half *h)
{
	free(h->seqs);
	free(h->xn);
	free(h->q);
	free(h->k);
	free(h->v);
	free(h->att);
	free(h->o);
	free(h->g);
	free(h->u);
	free(h->k16);
	free(h->v16);
}

static int half_alloc(struct rt_decoder *d, struct half *h, uint32_t s0,
		      uint32_t n)
{
	const struct rt_hparams *hp = &d->hp;
	uint32_t i;

	h->s0 = s0;
	h->n = n;
	h->ticket = -1;
	h->seqs = calloc(n, sizeof(*h->seqs));
	h->xn = calloc((size_t)n * hp->n_embd, sizeof(float));
	h->q = calloc((size_t)n * d->qd, sizeof(float));
	h->k = calloc((size_t)n * d->kvd, sizeof(float));
	h->v = calloc((size_t)n * d->kvd, sizeof(float));
	h->att = calloc((size_t)n * d->qd, sizeof(float));
	h->o = calloc((size_t)n * hp->n_embd, sizeof(float));
	h->g = calloc((size_t)n * hp->n_ff, sizeof(float));
	h->u = calloc((size_t)n * hp->n_ff, sizeof(float));
	h->k16 = calloc((size_t)n * d->kvd, sizeof(uint16_t));
	h->v16 = calloc((size_t)n * d->kvd, sizeof(uint16_t));
	if (!h->seqs || !h->xn || !h->q || !h->k || !h->v || !h->att ||
	    !h->o || !h->g || !h->u || !h->k16 || !h->v16)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		h->seqs[i] = s0 + i;
	return 0;
}

void rt_decoder_destroy(struct rt_decoder *d)
{
	uint32_t i;

	if (!d)
		return;
	for (i = 0; i < d->nh; i++)
		if (d->h[i].ticket >= 0 && d->be)
			d->ops->wait(d->be, d->h[i].ticket);
	if (d->be)
		d->ops->close(d->be);
	for (i = 0; i < 2; i++)
		half_free(&d->h[i]);
	if (d->att_scratch)
		for (i = 0; i < rt_pool_threads(d->pool); i++)
			free(d->att_scratch[i]);
	free(d->att_scratch);
	rt_pool_destroy(d->pool);
	free(d->pos);
	free(d->next);
	free(d->x);
	free(d->xn_all);
	free(d->logits);
	free(d->rng);
	free(d->samp);
	free(d->samp_idx);
	free(d);
}

int rt_decoder_create(const struct rt_model *m,
		      const struct rt_backend_ops *ops, const char *opts,
		      const struct rt_decoder_config *cfg,
		      struct rt_decoder **dp, char *err, size_t errlen)
{
	struct rt_decoder *d;
	struct rt_shape shape;
	uint32_t i, n0;
	int ret;

	if (!dp)
		return -EINVAL;
	*dp = NULL;
	if (!m || !ops || !cfg || !cfg->batch)
		return rt_errf(err, errlen, -EINVAL,
			    "decoder: model, backend and batch >= 1 needed");
	if (cfg->micro_batches > 2)
		return rt_errf(err, errlen, -EINVAL,
			    "decoder: micro_batches must be 0, 1 or 2");
	d = calloc(1, sizeof(*d));
	if (!d)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	d->m = m;
	d->hp = m->hp;
	d->cfg = *cfg;
	d->ops = ops;
	d->B = cfg->batch;
	d->max_tokens = cfg->max_tokens ? cfg->max_tokens : m->hp.n_ctx;
	d->qd = d->hp.n_head * d->hp.head_dim;
	d->kvd = d->hp.n_head_kv * d->hp.head_dim;
	if (!d->cfg.prefill_chunk)
		d->cfg.prefill_chunk = 128;
	d->simd = cfg->simd == RT_SIMD_AUTO ? rt_simd_detect() : cfg->simd;
	ret = -EINVAL;
	if (!rt_simd_supported(d->simd)) {
		rt_errf(err, errlen, ret, "decoder: SIMD level %d not supported",
		     cfg->simd);
		goto err;
	}
	ret = rt_pool_create(cfg->threads, &d->pool);
	if (ret) {
		rt_errf(err, errlen, ret, "decoder: thread pool: %s",
		     strerror(-ret));
		goto err;
	}
	ret = -ENOMEM;
	d->pos = calloc(d->B, sizeof(*d->pos));
	d->next = calloc(d->B, sizeof(*d->next));
	d->x = calloc((size_t)d->B * d->hp.n_embd, sizeof(float));
	d->xn_all = calloc((size_t)d->B * d->hp.n_embd, sizeof(float));
	d->logits = calloc((size_t)d->B * d->hp.n_vocab, sizeof(float));
	d->rng = calloc(d->B, sizeof(*d->rng));
	d->samp = calloc(d->hp.n_vocab, sizeof(float));
	d->samp_idx = calloc(d->hp.n_vocab, sizeof(uint32_t));
	d->att_scratch = calloc(rt_pool_threads(d->pool), sizeof(float *));
	if (!d->pos || !d->next || !d->x || !d->xn_all || !d->logits ||
	    !d->rng || !d->samp || !d->samp_idx || !d->att_scratch) {
		rt_errf(err, errlen, ret, "out of memory");
		goto err;
	}
	for (i = 0; i < rt_pool_threads(d->pool); i++) {
		d->att_scratch[i] = calloc(d->max_tokens, sizeof(float));
		if (!d->att_scratch[i]) {
			rt_errf(err, errlen, ret, "out of memory");
			goto err;
		}
	}
	d->nh = d->B >= 2 && cfg->micro_batches != 1 ? 2 : 1;
	n0 = d->nh == 2 ? (d->B + 1) / 2 : d->B;
	if (half_alloc(d, &d->h[0], 0, n0) ||
	    (d->nh == 2 && half_alloc(d, &d->h[1], n0, d->B - n0))) {
		rt_errf(err, errlen, ret, "out of memory");
		goto err;
	}
	rt_decoder_set_sampling(d, &cfg->sampling);
	memset(&shape, 0, sizeof(shape));
	shape.layers = d->hp.n_layer;
	shape.q_heads = d->hp.n_head;
	shape.kv_heads = d->hp.n_head_kv;
	shape.head_dim = d->hp.head_dim;
	shape.max_seqs = d->B;
	shape.max_tokens = d->max_tokens;
	shape.threads = cfg->backend_threads ? cfg->backend_threads :
			rt_pool_threads(d->pool);
	ret = ops->open(&shape, opts, &d->be);
	if (ret) {
		d->be = NULL;
		rt_errf(err, errlen, ret, "backend %s: open failed: %s",
		     ops->name ? ops->name : "?", strerror(-ret));
		goto err;
	}
	*dp = d;
	return 0;
err:
	rt_decoder_destroy(d);
	return ret;
}

void rt_decoder_set_sampling(struct rt_decoder *d,
			     const struct rt_sampling *s)
{
	uint32_t i;

	d->cfg.sampling = *s;
	for (i = 0; i < d->B; i++)
		rt_rng_seed(&d->rng[i], s->seed ^
				       ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull));
}

static int mm(struct rt_decoder *d, const float *x, uint32_t B,
	      const struct rt_weight *w, float *y)
{
	return rt_matmul(d->pool, d->simd, x, B, w->k, w->type, w->data, w->n,
			 y);
}

static void embed(struct rt_decoder *d, int32_t tok, float *dst)
{
	const struct rt_weight *e = &d->m->tok_embd;

	rt_dequant_row(e->type, (const uint8_t *)e->data +
		       (size_t)tok * e->row_bytes, dst, e->k);
}

/* Logits of @n rows of residual @x into @out and samples into next[]. */
static int final_logits(struct rt_decoder *d, const float *x, uint32_t n,
			float *xn, float *out)
{
	uint32_t i, dim = d->hp.n_embd;

	for (i = 0; i < n; i++)
		rt_rmsnorm(xn + (size_t)i * dim, x + (size_t)i * dim,
			   d->m->output_norm, dim, d->hp.rms_eps);
	return mm(d, xn, n, &d->m->output, out);
}

static int32_t sample(struct rt_decoder *d, uint32_t s)
{
	return (int32_t)rt_sample(d->logits + (size_t)s * d->hp.n_vocab,
				  d->hp.n_vocab, &d->cfg.sampling, &d->rng[s],
				  d->samp, d->samp_idx);
}

/* ---- decode step ---- */

static int pre(struct rt_decoder *d, struct half *h, uint32_t l)
{
	const struct rt_layer *ly = &d->m->layers[l];
	const struct rt_hparams *hp = &d->hp;
	uint32_t i, n = h->n;
	uint64_t t0;
	int ret;

	for (i = 0; i < n; i++)
		rt_rmsnorm(h->xn + (size_t)i * hp->n_embd,
			   d->x + (size_t)(h->s0 + i) * hp->n_embd,
			   ly->attn_norm, hp->n_embd, hp->rms_eps);
	if ((ret = mm(d, h->xn, n, &ly->wq, h->q)) ||
	    (ret = mm(d, h->xn, n, &ly->wk, h->k)) ||
	    (ret = mm(d, h->xn, n, &ly->wv, h->v)))
		return ret;
	for (i = 0; i < n; i++) {
		uint32_t p = d->pos[h->s0 + i];

		rt_rope(h->q + (size_t)i * d->qd, hp->n_head, hp->head_dim,
			hp->n_rot, p, hp->rope_base);
		rt_rope(h->k + (size_t)i * d->kvd, hp->n_head_kv, hp->head_dim,
			hp->n_rot, p, hp->rope_base);
	}
	rt_fp32_to_fp16_row(h->k, h->k16, (size_t)n * d->kvd);
	rt_fp32_to_fp16_row(h->v, h->v16, (size_t)n * d->kvd);
	t0 = rt_now_ns();
	ret = d->ops->submit(d->be, l, n, h->seqs, h->q, h->k16, h->v16,
			     h->att);
	d->st.submit_ns += rt_now_ns() - t0;
	if (ret < 0)
		return ret;
	h->ticket = ret;
	return 0;
}

static int wait_half(struct rt_decoder *d, struct half *h)
{
	uint64_t t0 = rt_now_ns();
	int ret;

	if (h->ticket < 0)
		return 0;
	ret = d->ops->wait(d->be, h->ticket);
	h->ticket = -1;
	d->st.wait_ns += rt_now_ns() - t0;
	return ret < 0 ? ret : 0;
}

/* Output projection and FFN of @n rows of residual @x. */
static int post_rows(struct rt_decoder *d, const struct rt_layer *ly,
		     float *x, uint32_t n, const float *att, float *xn,
		     float *o, float *g, float *u)
{
	const struct rt_hparams *hp = &d->hp;
	size_t i, nd = (size_t)n * hp->n_embd;
	int ret;

	ret = mm(d, att, n, &ly->wo, o);
	if (ret)
		return ret;
	for (i = 0; i < nd; i++)
		x[i] += o[i];
	for (i = 0; i < n; i++)
		rt_rmsnorm(xn + i * hp->n_embd, x + i * hp->n_embd,
			   ly->ffn_norm, hp->n_embd, hp->rms_eps);
	if ((ret = mm(d, xn, n, &ly->w_gate, g)) ||
	    (ret = mm(d, xn, n, &ly->w_up, u)))
		return ret;
	rt_swiglu(g, u, (size_t)n * hp->n_ff);
	ret = mm(d, g, n, &ly->w_down, o);
	if (ret)
		return ret;
	for (i = 0; i < nd; i++)
		x[i] += o[i];
	return 0;
}

static int post(struct rt_decoder *d, struct half *h, uint32_t l)
{
	return post_rows(d, &d->m->layers[l],
			 d->x + (size_t)h->s0 * d->hp.n_embd, h->n, h->att,
			 h->xn, h->o, h->g, h->u);
}

static void drain(struct rt_decoder *d)
{
	uint32_t i;

	for (i = 0; i < d->nh; i++)
		wait_half(d, &d->h[i]);
}

int rt_decoder_step(struct rt_decoder *d, const int32_t *in, int32_t *out)
{
	uint64_t t0 = rt_now_ns(), w0 = d->st.wait_ns, s0 = d->st.submit_ns;
	uint32_t s, l, i;
	int ret;

	for (s = 0; s < d->B; s++) {
		int32_t tok = in ? in[s] : d->next[s];

		if (tok < 0 || (uint32_t)tok >= d->hp.n_vocab)
			return -EINVAL;
		if (d->pos[s] >= d->max_tokens)
			return -ENOSPC;
		embed(d, tok, d->x + (size_t)s * d->hp.n_embd);
	}
	for (l = 0; l < d->hp.n_layer; l++)
		for (i = 0; i < d->nh; i++) {
			if (l) {
				ret = wait_half(d, &d->h[i]);
				if (!ret)
					ret = post(d, &d->h[i], l - 1);
				if (ret)
					goto fail;
			}
			ret = pre(d, &d->h[i], l);
			if (ret)
				goto fail;
		}
	for (i = 0; i < d->nh; i++) {
		ret = wait_half(d, &d->h[i]);
		if (!ret)
			ret = post(d, &d->h[i], d->hp.n_layer - 1);
		if (ret)
			goto fail;
	}
	ret = final_logits(d, d->x, d->B, d->xn_all, d->logits);
	if (ret)
		goto fail;
	for (s = 0; s < d->B; s++) {
		d->pos[s]++;
		d->next[s] = sample(d, s);
		if (out)
			out[s] = d->next[s];
	}
	d->st.steps++;
	d->st.tokens += d->B;
	d->st.decode_ns += rt_now_ns() - t0;
	d->st.host_ns += (rt_now_ns() - t0) - (d->st.wait_ns - w0) -
			 (d->st.submit_ns - s0);
	return 0;
fail:
	drain(d);
	return ret;
}

/* ---- prefill ---- */

struct pf_attn {
	struct rt_decoder *d;
	const float *q;		/* [cl][qd] chunk queries */
	const float *kf, *vf;	/* [L][kvd] fp16-rounded keys / values */
	float *out;		/* [cl][qd] */
	uint32_t c0, cl;	/* chunk start, length */
};

static void pf_attn_task(void *arg, uint32_t t, uint32_t worker)
{
	struct pf_attn *a = arg;
	const struct rt_hparams *hp = &a->d->hp;
	uint32_t i = t / hp->n_head, h = t % hp->n_head;
	uint32_t kh = h / (hp->n_head / hp->n_head_kv), hd = hp->head_dim;
	uint32_t tp = a->c0 + i, j, e;
	const float *q = a->q + (size_t)i * a->d->qd + (size_t)h * hd;
	float *o = a->out + (size_t)i * a->d->qd + (size_t)h * hd;
	float *sc = a->d->att_scratch[worker];
	float scale = 1.0f / sqrtf((float)hd), m = -INFINITY, sum = 0.0f;

	for (j = 0; j <= tp; j++) {
		const float *k = a->kf + (size_t)j * a->d->kvd +
				 (size_t)kh * hd;
		float s = 0.0f;

		for (e = 0; e < hd; e++)
			s += q[e] * k[e];
		sc[j] = s * scale;
		m = fmaxf(m, sc[j]);
	}
	for (j = 0; j <= tp; j++) {
		sc[j] = expf(sc[j] - m);
		sum += sc[j];
	}
	memset(o, 0, hd * sizeof(float));
	for (j = 0; j <= tp; j++) {
		const float *v = a->vf + (size_t)j * a->d->kvd +
				 (size_t)kh * hd;
		float p = sc[j] / sum;

		for (e = 0; e < hd; e++)
			o[e] += p * v[e];
	}
}

struct pf_buf {
	float *X, *xn, *q, *k, *v, *att, *o, *g, *u, *kf, *vf;
	uint16_t *k16, *v16;
};

static void pf_free(struct pf_buf *b)
{
	free(b->X);
	free(b->xn);
	free(b->q);
	free(b->k);
	free(b->v);
	free(b->att);
	free(b->o);
	free(b->g);
	free(b->u);
	free(b->kf);
	free(b->vf);
	free(b->k16);
	free(b->v16);
}

static int pf_alloc(struct rt_decoder *d, struct pf_buf *b, uint32_t L)
{
	const struct rt_hparams *hp = &d->hp;
	size_t c = d->cfg.prefill_chunk;

	memset(b, 0, sizeof(*b));
	/* L >= 1: d->B >= 1 (rt_decoder_create) and every prompt is >= 1 */
	// NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
	b->X = malloc((size_t)L * hp->n_embd * sizeof(float));
	b->xn = malloc(c * hp->n_embd * sizeof(float));
	b->q = malloc(c * d->qd * sizeof(float));
	b->k = malloc(c * d->kvd * sizeof(float));
	b->v = malloc(c * d->kvd * sizeof(float));
	b->att = malloc(c * d->qd * sizeof(float));
	b->o = malloc(c * hp->n_embd * sizeof(float));
	b->g = malloc(c * hp->n_ff * sizeof(float));
	b->u = malloc(c * hp->n_ff * sizeof(float));
	b->kf = malloc((size_t)L * d->kvd * sizeof(float));
	b->vf = malloc((size_t)L * d->kvd * sizeof(float));
	b->k16 = malloc((size_t)L * d->kvd * sizeof(uint16_t));
	b->v16 = malloc((size_t)L * d->kvd * sizeof(uint16_t));
	if (!b->X || !b->xn || !b->q || !b->k || !b->v || !b->att || !b->o ||
	    !b->g || !b->u || !b->kf || !b->vf || !b->k16 || !b->v16)
		return -ENOMEM;
	return 0;
}

static int prefill_seq(struct rt_decoder *d, struct pf_buf *b, uint32_t s,
		       const int32_t *toks, uint32_t L)
{
	const struct rt_hparams *hp = &d->hp;
	uint32_t l, c0, i, dim = hp->n_embd;
	uint64_t t0;
	int ret;

	for (i = 0; i < L; i++)
		embed(d, toks[i], b->X + (size_t)i * dim);
	for (l = 0; l < hp->n_layer; l++) {
		const struct rt_layer *ly = &d->m->layers[l];

		for (c0 = 0; c0 < L; c0 += d->cfg.prefill_chunk) {
			uint32_t cl = L - c0 < d->cfg.prefill_chunk ?
				      L - c0 : d->cfg.prefill_chunk;
			float *X = b->X + (size_t)c0 * dim;
			size_t ko = (size_t)c0 * d->kvd, kn = (size_t)cl * d->kvd;
			struct pf_attn a;

			for (i = 0; i < cl; i++)
				rt_rmsnorm(b->xn + (size_t)i * dim,
					   X + (size_t)i * dim, ly->attn_norm,
					   dim, hp->rms_eps);
			if ((ret = mm(d, b->xn, cl, &ly->wq, b->q)) ||
			    (ret = mm(d, b->xn, cl, &ly->wk, b->k)) ||
			    (ret = mm(d, b->xn, cl, &ly->wv, b->v)))
				return ret;
			for (i = 0; i < cl; i++) {
				rt_rope(b->q + (size_t)i * d->qd, hp->n_head,
					hp->head_dim, hp->n_rot, c0 + i,
					hp->rope_base);
				rt_rope(b->k + (size_t)i * d->kvd,
					hp->n_head_kv, hp->head_dim, hp->n_rot,
					c0 + i, hp->rope_base);
			}
			rt_fp32_to_fp16_row(b->k, b->k16 + ko, kn);
			rt_fp32_to_fp16_row(b->v, b->v16 + ko, kn);
			rt_fp16_to_fp32_row(b->k16 + ko, b->kf + ko, kn);
			rt_fp16_to_fp32_row(b->v16 + ko, b->vf + ko, kn);
			a.d = d;
			a.q = b->q;
			a.kf = b->kf;
			a.vf = b->vf;
			a.out = b->att;
			a.c0 = c0;
			a.cl = cl;
			rt_pool_run(d->pool, pf_attn_task, &a, cl * hp->n_head);
			ret = post_rows(d, ly, X, cl, b->att, b->xn, b->o,
					b->g, b->u);
			if (ret)
				return ret;
		}
		t0 = rt_now_ns();
		ret = d->ops->append(d->be, s, l, 0, L, b->k16, b->v16);
		d->st.append_ns += rt_now_ns() - t0;
		if (ret < 0)
			return ret;
	}
	ret = final_logits(d, b->X + (size_t)(L - 1) * dim, 1, b->xn,
			   d->logits + (size_t)s * hp->n_vocab);
	if (ret)
		return ret;
	d->pos[s] = L;
	d->next[s] = sample(d, s);
	return 0;
}

static int reset_all(struct rt_decoder *d)
{
	uint32_t s;
	int ret;

	drain(d);
	for (s = 0; s < d->B; s++) {
		if (d->pos[s]) {
			ret = d->ops->reset(d->be, s);
			if (ret < 0)
				return ret;
		}
		d->pos[s] = 0;
	}
	return 0;
}

int rt_decoder_prefill(struct rt_decoder *d, const int32_t *const *prompts,
		       const uint32_t *lens, int32_t *first)
{
	struct pf_buf b;
	uint64_t t0 = rt_now_ns();
	uint32_t s, i, maxl = 0;
	int ret;

	for (s = 0; s < d->B; s++) {
		if (!lens[s] || lens[s] >= d->max_tokens || !prompts[s])
			return -EINVAL;
		for (i = 0; i < lens[s]; i++)
			if (prompts[s][i] < 0 ||
			    (uint32_t)prompts[s][i] >= d->hp.n_vocab)
				return -EINVAL;
		if (lens[s] > maxl)
			maxl = lens[s];
	}
	ret = reset_all(d);
	if (ret)
		return ret;
	ret = pf_alloc(d, &b, maxl);
	for (s = 0; !ret && s < d->B; s++) {
		ret = prefill_seq(d, &b, s, prompts[s], lens[s]);
		if (!ret) {
			if (first)
				first[s] = d->next[s];
			d->st.prompt_tokens += lens[s];
			d->st.tokens++;
		}
	}
	pf_free(&b);
	d->st.prefill_ns += rt_now_ns() - t0;
	return ret;
}

int rt_decoder_prefill_synthetic(struct rt_decoder *d, const uint32_t *lens,
				 uint64_t seed, int32_t tok)
{
	const uint32_t chunk = 256;
	uint64_t t0 = rt_now_ns();
	uint16_t *kb, *vb;
	uint32_t s, l, c;
	size_t i, n;
	int ret;

	if (tok < 0 || (uint32_t)tok >= d->hp.n_vocab)
		return -EINVAL;
	for (s = 0; s < d->B; s++)
		if (lens[s] >= d->max_tokens)
			return -EINVAL;
	ret = reset_all(d);
	if (ret)
		return ret;
	n = (size_t)chunk * d->kvd;
	kb = malloc(n * sizeof(uint16_t));
	vb = malloc(n * sizeof(uint16_t));
	if (!kb || !vb) {
		ret = -ENOMEM;
		goto out;
	}
	for (s = 0; s < d->B; s++) {
		for (l = 0; l < d->hp.n_layer; l++) {
			struct rt_rng rng;

			rt_rng_seed(&rng, seed ^ ((uint64_t)s << 32) ^
					  ((uint64_t)l * 0x9e3779b97f4a7c15ull));
			for (c = 0; c < lens[s]; c += chunk) {
				uint32_t nt = lens[s] - c < chunk ?
					      lens[s] - c : chunk;

				for (i = 0; i < (size_t)nt * d->kvd; i++) {
					uint64_t r = rt_rng_next(&rng);

					/* fp16 in about [-1, 1]: exp 13..15 */
					kb[i] = (uint16_t)(0x3400 |
						(r & 0x83ff) | ((r >> 16) & 0x0400));
					vb[i] = (uint16_t)(0x3400 |
						((r >> 20) & 0x83ff) |
						((r >> 40) & 0x0400));
				}
				ret = d->ops->append(d->be, s, l, c, nt, kb, vb);
				if (ret < 0)
					goto out;
			}
		}
		d->pos[s] = lens[s];
		d->next[s] = tok;
		d->st.prompt_tokens += lens[s];
	}
	ret = 0;
out:
	free(kb);
	free(vb);
	d->st.prefill_ns += rt_now_ns() - t0;
	d->st.append_ns += rt_now_ns() - t0;
	return ret;
}

/* ---- queries ---- */

const float *rt_decoder_logits(const struct rt_decoder *d, uint32_t seq)
{
	if (seq >= d->B)
		return NULL;
	return d->logits + (size_t)seq * d->hp.n_vocab;
}

uint32_t rt_decoder_pos(const struct rt_decoder *d, uint32_t seq)
{
	return seq < d->B ? d->pos[seq] : 0;
}

void rt_decoder_stats(struct rt_decoder *d, struct rt_decode_stats *st)
{
	*st = d->st;
	memset(&st->backend, 0, sizeof(st->backend));
	if (d->be && d->ops->get_stats)
		d->ops->get_stats(d->be, &st->backend);
}

struct rt_backend *rt_decoder_backend(struct rt_decoder *d)
{
	return d->be;
}

uint32_t rt_decoder_batch(const struct rt_decoder *d)
{
	return d->B;
}
