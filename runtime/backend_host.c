/* SPDX-License-Identifier: MIT */
/*
 * backend_host.c - "host" attention backend: KV (fp16) in host RAM,
 * attention on the host CPU with the drive's own attention engine
 * (firmware-sim/attn.h), so a comparison with the csd backend isolates where
 * the KV cache lives, not which kernels run.
 *
 * KV of one (seq, layer) is kept in groups of HOST_TPP tokens.  A group is
 * one allocation holding, for every kv head, a K page then (after all K
 * pages) a V page of HOST_TPP rows of head_dim fp16 values - the page layout
 * the attention kernels expect.  The per-(seq, layer) table of group
 * pointers grows by doubling; a replaced table is retired (kept until reset
 * or close) so an attention job in flight never sees freed memory.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <csd/csd_spec.h>

#include "attn.h"
#include "backend.h"
#include "rt_ops.h"

#define HOST_TPP	32	/* tokens per page */
#define HOST_MAX_OPS	256	/* attention calls in flight */

struct host_stream {		/* one (seq, layer) */
	uint32_t len;		/* tokens stored */
	uint32_t cap;		/* entries of groups */
	void **groups;
};

struct host_retired {
	struct host_retired *next;
	void **groups;
};

struct host_op {
	int used;
	int done;
	struct host_be *be;
	struct attn_job job;
	uint32_t *seqs, *lo, *hi;	/* [max_seqs] each */
};

struct host_be {
	const struct rt_backend_ops *ops;	/* must be first */
	struct rt_shape shape;
	size_t row_bytes;			/* head_dim * 2 */
	size_t page_bytes;			/* HOST_TPP rows */
	size_t group_bytes;			/* 2 * kv_heads pages */
	struct host_stream *streams;		/* [max_seqs][layers] */
	struct host_retired *retired;
	struct attn_engine *eng;
	uint32_t *busy;				/* [max_seqs] calls in flight */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct host_op opt[HOST_MAX_OPS];
	uint64_t kv_bytes, kv_peak;
	struct rt_backend_stats st;
};

static struct host_be *to_be(struct rt_backend *b)
{
	return (struct host_be *)b;
}

static struct host_stream *host_stream(struct host_be *be, uint32_t seq,
				       uint32_t layer)
{
	return &be->streams[(size_t)seq * be->shape.layers + layer];
}

static int host_shape_ok(const struct rt_shape *s)
{
	if (!s || !s->layers || !s->q_heads || !s->kv_heads || !s->head_dim ||
	    !s->max_seqs || !s->max_tokens)
		return 0;
	if (s->q_heads % s->kv_heads || s->q_heads / s->kv_heads > 64)
		return 0;
	if (s->head_dim % 16 || s->head_dim > 256)
		return 0;
	return 1;
}

static void host_free_stream(struct host_be *be, struct host_stream *hs)
{
	uint32_t g, ng = (hs->len + HOST_TPP - 1) / HOST_TPP;

	for (g = 0; g < ng; g++)
		free(hs->groups[g]);
	free(hs->groups);
	be->kv_bytes -= (uint64_t)ng * be->group_bytes;
	hs->groups = NULL;
	hs->cap = 0;
	hs->len = 0;
}

static void host_free_retired(struct host_be *be)
{
	while (be->retired) {
		struct host_retired *r = be->retired;

		be->retired = r->next;
		free(r->groups);
		free(r);
	}
}

static void host_close(struct rt_backend *b)
{
	struct host_be *be = to_be(b);
	size_t i;

	if (!be)
		return;
	if (be->eng)
		attn_engine_destroy(be->eng);
	if (be->streams)
		for (i = 0; i < (size_t)be->shape.max_seqs * be->shape.layers;
		     i++)
			host_free_stream(be, &be->streams[i]);
	host_free_retired(be);
	for (i = 0; i < HOST_MAX_OPS; i++) {
		free(be->opt[i].seqs);
		free(be->opt[i].lo);
		free(be->opt[i].hi);
	}
	free(be->streams);
	free(be->busy);
	pthread_cond_destroy(&be->cond);
	pthread_mutex_destroy(&be->lock);
	free(be);
}

static int host_open(const struct rt_shape *shape, const char *opts,
		     struct rt_backend **bp)
{
	struct host_be *be;
	size_t i;
	int ret;

	if (!bp)
		return -EINVAL;
	*bp = NULL;
	if (!host_shape_ok(shape))
		return -EINVAL;
	if (opts && *opts)
		return -EINVAL;		/* the host backend takes no options */
	be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->ops = &rt_backend_host;
	be->shape = *shape;
	if (!be->shape.threads)
		be->shape.threads = 1;
	be->row_bytes = (size_t)shape->head_dim * 2;
	be->page_bytes = be->row_bytes * HOST_TPP;
	be->group_bytes = be->page_bytes * 2 * shape->kv_heads;
	pthread_mutex_init(&be->lock, NULL);
	pthread_cond_init(&be->cond, NULL);
	ret = -ENOMEM;
	be->streams = calloc((size_t)shape->max_seqs * shape->layers,
			     sizeof(*be->streams));
	be->busy = calloc(shape->max_seqs, sizeof(*be->busy));
	if (!be->streams || !be->busy)
		goto err;
	for (i = 0; i < HOST_MAX_OPS; i++) {
		struct host_op *op = &be->opt[i];

		op->be = be;
		op->seqs = calloc(shape->max_seqs, sizeof(uint32_t));
		op->lo = calloc(shape->max_seqs, sizeof(uint32_t));
		op->hi = calloc(shape->max_seqs, sizeof(uint32_t));
		if (!op->seqs || !op->lo || !op->hi)
			goto err;
	}
	ret = attn_engine_create(be->shape.threads, CSD_SIMD_AUTO, &be->eng);
	if (ret < 0)
		goto err;
	*bp = (struct rt_backend *)be;
	return 0;
err:
	host_close((struct rt_backend *)be);
	return ret;
}

/* Make room for token @pos; returns the group holding it. */
static void *host_group(struct host_be *be, struct host_stream *hs,
			uint32_t pos)
{
	uint32_t g = pos / HOST_TPP;

	if (g >= hs->cap) {
		uint32_t ncap = hs->cap ? hs->cap * 2 : 4;
		struct host_retired *r = NULL;
		void **ng;

		while (ncap <= g)
			ncap *= 2;
		ng = calloc(ncap, sizeof(*ng));
		if (!ng)
			return NULL;
		if (hs->groups) {
			r = malloc(sizeof(*r));
			if (!r) {
				free(ng);
				return NULL;
			}
			memcpy(ng, hs->groups, hs->cap * sizeof(*ng));
			r->groups = hs->groups;
			r->next = be->retired;
			be->retired = r;
		}
		hs->groups = ng;
		hs->cap = ncap;
	}
	if (!hs->groups[g]) {
		hs->groups[g] = aligned_alloc(64, be->group_bytes);
		if (!hs->groups[g])
			return NULL;
		be->kv_bytes += be->group_bytes;
		if (be->kv_bytes > be->kv_peak)
			be->kv_peak = be->kv_bytes;
	}
	return hs->groups[g];
}

/* Store @ntok tokens at the end of @hs (caller checked the range). */
static int host_store(struct host_be *be, struct host_stream *hs,
		      uint32_t ntok, const uint16_t *k, const uint16_t *v,
		      size_t tok_stride)
{
	uint32_t kvh = be->shape.kv_heads, t, h;

	for (t = 0; t < ntok; t++) {
		uint32_t pos = hs->len;
		char *grp = host_group(be, hs, pos);
		size_t row = (size_t)(pos % HOST_TPP) * be->row_bytes;

		if (!grp)
			return -ENOMEM;
		for (h = 0; h < kvh; h++) {
			const uint16_t *ks = k + t * tok_stride +
					     (size_t)h * be->shape.head_dim;
			const uint16_t *vs = v + t * tok_stride +
					     (size_t)h * be->shape.head_dim;

			memcpy(grp + h * be->page_bytes + row, ks,
			       be->row_bytes);
			memcpy(grp + (kvh + h) * be->page_bytes + row, vs,
			       be->row_bytes);
		}
		hs->len++;
	}
	return 0;
}

static int host_append(struct rt_backend *b, uint32_t seq, uint32_t layer,
		       uint32_t start, uint32_t ntok, const uint16_t *k,
		       const uint16_t *v)
{
	struct host_be *be = to_be(b);
	struct host_stream *hs;

	if (!be || seq >= be->shape.max_seqs || layer >= be->shape.layers)
		return -ERANGE;
	if (!ntok)
		return 0;
	if (!k || !v)
		return -EINVAL;
	hs = host_stream(be, seq, layer);
	if (start != hs->len)
		return -EILSEQ;
	if ((uint64_t)start + ntok > be->shape.max_tokens)
		return -EFBIG;
	return host_store(be, hs, ntok, k, v,
			  (size_t)be->shape.kv_heads * be->shape.head_dim);
}

static const void *host_page(void *cookie, uint32_t seq, uint32_t kv_head,
			     int which, uint32_t page_idx)
{
	struct host_op *op = cookie;
	struct host_be *be = op->be;
	struct host_stream *hs = host_stream(be, seq, (uint32_t)(uintptr_t)
					     op->job.priv);
	const char *grp = hs->groups[page_idx];

	return grp + ((size_t)which * be->shape.kv_heads + kv_head) *
		     be->page_bytes;
}

static void host_done(struct attn_job *job)
{
	struct host_op *op = job->cookie;
	struct host_be *be = op->be;

	pthread_mutex_lock(&be->lock);
	op->done = 1;
	pthread_cond_broadcast(&be->cond);
	pthread_mutex_unlock(&be->lock);
}

static int host_submit(struct rt_backend *b, uint32_t layer, uint32_t nseq,
		       const uint32_t *seqs, const float *q,
		       const uint16_t *k_new, const uint16_t *v_new,
		       float *out)
{
	struct host_be *be = to_be(b);
	size_t kv_tok = be ? (size_t)be->shape.kv_heads * be->shape.head_dim
			   : 0;
	uint64_t t0 = rt_now_ns(), kvb = 0;
	struct host_op *op = NULL;
	uint32_t i, j;
	int slot, ret;

	if (!be || !seqs || !q || !k_new || !v_new || !out || !nseq ||
	    nseq > be->shape.max_seqs)
		return -EINVAL;
	if (layer >= be->shape.layers)
		return -ERANGE;
	for (i = 0; i < nseq; i++) {
		if (seqs[i] >= be->shape.max_seqs)
			return -ERANGE;
		for (j = 0; j < i; j++)
			if (seqs[j] == seqs[i])
				return -EINVAL;
		if (host_stream(be, seqs[i], layer)->len >=
		    be->shape.max_tokens)
			return -EFBIG;
	}
	pthread_mutex_lock(&be->lock);
	for (slot = 0; slot < HOST_MAX_OPS; slot++)
		if (!be->opt[slot].used)
			break;
	if (slot == HOST_MAX_OPS) {
		pthread_mutex_unlock(&be->lock);
		return -EBUSY;
	}
	op = &be->opt[slot];
	op->used = 1;
	op->done = 0;
	pthread_mutex_unlock(&be->lock);

	for (i = 0; i < nseq; i++) {
		struct host_stream *hs = host_stream(be, seqs[i], layer);

		ret = host_store(be, hs, 1, k_new + i * kv_tok,
				 v_new + i * kv_tok, kv_tok);
		if (ret < 0)
			goto err;	/* earlier seqs keep their token */
		op->seqs[i] = seqs[i];
		op->lo[i] = 0;
		op->hi[i] = hs->len;
		kvb += (uint64_t)hs->len * kv_tok * 2 * 2;
	}
	memset(&op->job, 0, sizeof(op->job));
	op->job.dtype = CSD_DTYPE_F16;
	op->job.head_dim = be->shape.head_dim;
	op->job.q_heads = be->shape.q_heads;
	op->job.kv_heads = be->shape.kv_heads;
	op->job.tpp = HOST_TPP;
	op->job.scale = 1.0f / sqrtf((float)be->shape.head_dim);
	op->job.nseq = nseq;
	op->job.seqs = op->seqs;
	op->job.lo = op->lo;
	op->job.hi = op->hi;
	op->job.q = q;
	op->job.out = out;
	op->job.page = host_page;
	op->job.cookie = op;
	op->job.done = host_done;
	op->job.priv = (void *)(uintptr_t)layer;
	for (i = 0; i < nseq; i++)
		be->busy[seqs[i]]++;
	ret = attn_engine_submit(be->eng, &op->job);
	if (ret < 0) {
		for (i = 0; i < nseq; i++)
			be->busy[seqs[i]]--;
		goto err;
	}
	be->st.attn_calls++;
	be->st.kv_bytes_read += kvb;
	be->st.attn_ns += rt_now_ns() - t0;
	return slot;
err:
	pthread_mutex_lock(&be->lock);
	op->used = 0;
	pthread_mutex_unlock(&be->lock);
	return ret;
}

static int host_wait(struct rt_backend *b, int ticket)
{
	struct host_be *be = to_be(b);
	uint64_t t0 = rt_now_ns();
	struct host_op *op;
	uint32_t i;

	if (!be || ticket < 0 || ticket >= HOST_MAX_OPS)
		return -EINVAL;
	op = &be->opt[ticket];
	pthread_mutex_lock(&be->lock);
	if (!op->used) {
		pthread_mutex_unlock(&be->lock);
		return -EINVAL;
	}
	while (!op->done)
		pthread_cond_wait(&be->cond, &be->lock);
	op->used = 0;
	pthread_mutex_unlock(&be->lock);
	for (i = 0; i < op->job.nseq; i++)
		be->busy[op->seqs[i]]--;
	be->st.attn_ns += rt_now_ns() - t0;
	return 0;
}

static int host_reset(struct rt_backend *b, uint32_t seq)
{
	struct host_be *be = to_be(b);
	uint32_t l;

	if (!be || seq >= be->shape.max_seqs)
		return -ERANGE;
	if (be->busy[seq])
		return -EBUSY;
	for (l = 0; l < be->shape.layers; l++)
		host_free_stream(be, host_stream(be, seq, l));
	return 0;
}

static void host_get_stats(struct rt_backend *b, struct rt_backend_stats *st)
{
	struct host_be *be = to_be(b);

	if (!be || !st)
		return;
	*st = be->st;
	st->host_kv_bytes = be->kv_peak;
}

const struct rt_backend_ops rt_backend_host = {
	.name = "host",
	.open = host_open,
	.close = host_close,
	.append = host_append,
	.submit = host_submit,
	.wait = host_wait,
	.reset = host_reset,
	.get_stats = host_get_stats,
};
