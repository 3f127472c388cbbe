/* SPDX-License-Identifier: MIT */
/*
 * backend_csd.c - "csd" attention backend: KV cache and decode attention on
 * a drive through libcsd.  Only q, the new token's k/v and the output cross
 * the host link per step (plus the bulk KV append after prefill).
 *
 * opts is a libcsd device string ("embedded:...", "shm:PATH", "/dev/csdN");
 * NULL or "" means "embedded:" (CSD_DEVICE is not consulted so that a
 * benchmark names its device explicitly).
 *
 * rt_csd_set_sparse() switches later calls to SparF (CSD_ATTN_SPARSE with
 * a compression ratio); the bytes the drive really read are then taken
 * from its statistics log around each wait.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <csd.h>

#include "backend.h"
#include "rt_ops.h"

#define CSDB_MAX_OPS	256	/* attention calls in flight */

struct csdb_op {
	int used;
	uint32_t nseq;
	struct csd_attn *op;
	struct csd_attn_req req;
};

struct csdb_be {
	const struct rt_backend_ops *ops;	/* must be first */
	struct rt_shape shape;
	struct csd_dev *dev;
	struct csd_ctx *ctx;
	size_t tok_kv_bytes;			/* K + V of one token, layer */
	struct csdb_op opt[CSDB_MAX_OPS];
	struct rt_backend_stats st;
	float sparse;				/* SparF ratio, 0 = dense */
	uint64_t flash_read;			/* last device stats snapshot */
};

static struct csdb_be *to_be(struct rt_backend *b)
{
	return (struct csdb_be *)b;
}

static void csdb_close(struct rt_backend *b)
{
	struct csdb_be *be = to_be(b);
	int i;

	if (!be)
		return;
	for (i = 0; i < CSDB_MAX_OPS; i++)
		if (be->opt[i].used)
			csd_attn_wait(be->opt[i].op, NULL);
	if (be->ctx)
		csd_ctx_destroy(be->ctx);
	if (be->dev)
		csd_dev_close(be->dev);
	free(be);
}

static int csdb_open(const struct rt_shape *shape, const char *opts,
		     struct rt_backend **bp)
{
	struct csd_ctx_params p;
	struct csdb_be *be;
	int ret;

	if (!bp)
		return -EINVAL;
	*bp = NULL;
	if (!shape || !shape->layers || !shape->q_heads || !shape->kv_heads ||
	    !shape->head_dim || !shape->max_seqs || !shape->max_tokens)
		return -EINVAL;
	be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->ops = &rt_backend_csd;
	be->shape = *shape;
	be->tok_kv_bytes = (size_t)shape->kv_heads * shape->head_dim * 2 * 2;
	ret = csd_dev_open(opts && *opts ? opts : "embedded:", &be->dev);
	if (ret < 0)
		goto err;
	memset(&p, 0, sizeof(p));
	p.layers = shape->layers;
	p.kv_heads = shape->kv_heads;
	p.q_heads = shape->q_heads;
	p.head_dim = shape->head_dim;
	p.dtype = CSD_KV_F16;
	p.max_seqs = shape->max_seqs;
	p.max_tokens = shape->max_tokens;
	ret = csd_ctx_create(be->dev, &p, &be->ctx);
	if (ret < 0)
		goto err;
	*bp = (struct rt_backend *)be;
	return 0;
err:
	csdb_close((struct rt_backend *)be);
	return ret < 0 ? ret : -EIO;
}

static int csdb_append(struct rt_backend *b, uint32_t seq, uint32_t layer,
		       uint32_t start, uint32_t ntok, const uint16_t *k,
		       const uint16_t *v)
{
	struct csdb_be *be = to_be(b);
	int ret;

	if (!be)
		return -EINVAL;
	if (!ntok)
		return 0;
	ret = csd_kv_append(be->ctx, seq, layer, start, ntok, k, v);
	if (ret < 0)
		return ret;
	be->st.link_bytes += (uint64_t)ntok * be->tok_kv_bytes;
	return 0;
}

static int csdb_submit(struct rt_backend *b, uint32_t layer, uint32_t nseq,
		       const uint32_t *seqs, const float *q,
		       const uint16_t *k_new, const uint16_t *v_new,
		       float *out)
{
	struct csdb_be *be = to_be(b);
	uint64_t t0 = rt_now_ns();
	struct csdb_op *op;
	int slot, ret;

	if (!be)
		return -EINVAL;
	for (slot = 0; slot < CSDB_MAX_OPS; slot++)
		if (!be->opt[slot].used)
			break;
	if (slot == CSDB_MAX_OPS)
		return -EBUSY;
	op = &be->opt[slot];
	memset(&op->req, 0, sizeof(op->req));
	op->req.layer = layer;
	op->req.nseq = nseq;
	op->req.flags = CSD_ATTN_FUSED_KV;
	if (be->sparse > 0.0f) {
		op->req.flags |= CSD_ATTN_SPARSE;
		op->req.sparse.ratio = be->sparse;
	}
	op->req.seqs = seqs;
	op->req.q = q;
	op->req.k_new = k_new;
	op->req.v_new = v_new;
	op->req.out = out;
	ret = csd_attn_submit(be->ctx, &op->req, &op->op);
	if (ret < 0)
		return ret;
	op->used = 1;
	op->nseq = nseq;
	be->st.attn_calls++;
	/* q + fused k/v in, out back (seq ids are noise) */
	be->st.link_bytes += (uint64_t)nseq *
			     ((uint64_t)be->shape.q_heads * be->shape.head_dim *
			      4 * 2 + be->tok_kv_bytes);
	be->st.attn_ns += rt_now_ns() - t0;
	return slot;
}

static int csdb_wait(struct rt_backend *b, int ticket)
{
	struct csdb_be *be = to_be(b);
	struct csd_attn_result res;
	uint64_t t0 = rt_now_ns();
	struct csdb_op *op;
	int ret;

	if (!be || ticket < 0 || ticket >= CSDB_MAX_OPS)
		return -EINVAL;
	op = &be->opt[ticket];
	if (!op->used)
		return -EINVAL;
	memset(&res, 0, sizeof(res));
	ret = csd_attn_wait(op->op, &res);
	op->used = 0;
	op->op = NULL;
	be->st.modeled_ns += res.modeled_ns;
	if (op->req.flags & CSD_ATTN_SPARSE) {
		struct csd_dev_stats ds;

		/* the drive's real reads (whole and partial pages) */
		if (!csd_dev_get_stats(be->dev, &ds)) {
			be->st.kv_bytes_read += ds.flash_bytes_read -
						be->flash_read;
			be->flash_read = ds.flash_bytes_read;
		}
	} else {
		be->st.kv_bytes_read += res.tokens * be->tok_kv_bytes;
	}
	be->st.attn_ns += rt_now_ns() - t0;
	return ret < 0 ? ret : 0;
}

static int csdb_reset(struct rt_backend *b, uint32_t seq)
{
	struct csdb_be *be = to_be(b);

	if (!be)
		return -EINVAL;
	return csd_seq_reset(be->ctx, seq);
}

static void csdb_get_stats(struct rt_backend *b, struct rt_backend_stats *st)
{
	struct csdb_be *be = to_be(b);

	if (!be || !st)
		return;
	*st = be->st;
	st->host_kv_bytes = 0;
}

int rt_csd_set_sparse(struct rt_backend *b, float ratio)
{
	struct csdb_be *be = to_be(b);
	struct csd_dev_stats ds;

	if (!be || be->ops != &rt_backend_csd ||
	    !(ratio >= 0.0f && ratio <= 1.0f))
		return -EINVAL;
	if (csd_dev_get_stats(be->dev, &ds))
		return -EIO;
	be->flash_read = ds.flash_bytes_read;
	be->sparse = ratio;
	return 0;
}

const struct rt_backend_ops rt_backend_csd = {
	.name = "csd",
	.open = csdb_open,
	.close = csdb_close,
	.append = csdb_append,
	.submit = csdb_submit,
	.wait = csdb_wait,
	.reset = csdb_reset,
	.get_stats = csdb_get_stats,
};
