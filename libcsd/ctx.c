// SPDX-License-Identifier: MIT
/*
 * ctx.c - KV contexts: create/destroy/query, sequence reset, KV append and
 * read-back (split into commands of at most max_xfer bytes, whole tokens).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "csd_internal.h"

static void ctx_free(struct csd_ctx *ctx)
{
	pthread_cond_destroy(&ctx->cond);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx->tags);
	free(ctx);
}

void csd_ctx_put(struct csd_ctx *ctx)
{
	uint32_t refs;

	pthread_mutex_lock(&ctx->lock);
	refs = --ctx->refs;
	pthread_mutex_unlock(&ctx->lock);
	if (!refs)
		ctx_free(ctx);
}

void csd_ctx_link(struct csd_dev *dev, struct csd_ctx *ctx)
{
	pthread_mutex_lock(&dev->lock);
	ctx->next = dev->ctx_list;
	if (ctx->next)
		ctx->next->pprev = &ctx->next;
	ctx->pprev = &dev->ctx_list;
	dev->ctx_list = ctx;
	pthread_mutex_unlock(&dev->lock);
}

void csd_ctx_unlink(struct csd_dev *dev, struct csd_ctx *ctx)
{
	pthread_mutex_lock(&dev->lock);
	*ctx->pprev = ctx->next;
	if (ctx->next)
		ctx->next->pprev = ctx->pprev;
	pthread_mutex_unlock(&dev->lock);
}

CSD_EXPORT int csd_ctx_create(struct csd_dev *dev,
			      const struct csd_ctx_params *p,
			      struct csd_ctx **ctxp)
{
	struct csd_ctx *ctx;
	struct csd_cpl cpl;
	struct csd_sqe sqe;
	struct csd_seg seg;
	uint32_t ntags;
	struct csd_ctx_desc wire;
	int rc;

	if (dev && dev->grp)
		return csd_group_ctx_create(dev, p, ctxp);
	if (!dev || !p || !ctxp)
		return -EINVAL;
	*ctxp = NULL;
	if (p->layers > UINT16_MAX || p->kv_heads > UINT16_MAX ||
	    p->q_heads > UINT16_MAX || p->head_dim > UINT16_MAX ||
	    (unsigned int)p->dtype > UINT8_MAX)
		return -EOPNOTSUPP;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ntags = dev->info.max_tags;
	ctx->tags = calloc((ntags + 63) / 64, sizeof(uint64_t));
	if (!ctx->tags) {
		free(ctx);
		return -ENOMEM;
	}
	ctx->ntags = ntags;
	if (pthread_mutex_init(&ctx->lock, NULL)) {
		free(ctx->tags);
		free(ctx);
		return -ENOMEM;
	}
	if (pthread_cond_init(&ctx->cond, NULL)) {
		pthread_mutex_destroy(&ctx->lock);
		free(ctx->tags);
		free(ctx);
		return -ENOMEM;
	}
	ctx->dev = dev;
	ctx->p = *p;
	ctx->dsize = p->dtype == CSD_KV_F32 ? 4 : 2;
	ctx->row_bytes = (size_t)p->kv_heads * p->head_dim * ctx->dsize;
	ctx->refs = 1;

	memset(&wire, 0, sizeof(wire));
	wire.layers = (uint16_t)p->layers;
	wire.kv_heads = (uint16_t)p->kv_heads;
	wire.q_heads = (uint16_t)p->q_heads;
	wire.head_dim = (uint16_t)p->head_dim;
	wire.dtype = (uint8_t)p->dtype;
	wire.max_seqs = p->max_seqs;
	wire.max_tokens = p->max_tokens;
	csd_sqe_io(&sqe, CSD_IO_CTX_CREATE, 0, sizeof(wire));
	seg.addr = &wire;
	seg.len = sizeof(wire);
	rc = csd_exec_status(dev, 0, &sqe, &seg, 1, &cpl);
	if (rc) {
		ctx_free(ctx);
		return rc;
	}
	ctx->id = cpl.dw0;

	csd_ctx_link(dev, ctx);
	*ctxp = ctx;
	return 0;
}

CSD_EXPORT int csd_ctx_destroy(struct csd_ctx *ctx)
{
	struct csd_dev *dev;
	struct csd_sqe sqe;
	int rc;

	if (ctx && ctx->grp)
		return csd_group_ctx_destroy(ctx);
	if (!ctx)
		return -EINVAL;
	dev = ctx->dev;
	/* Let the attention reads still in flight complete first, so no
	 * completion can arrive for a context the drive no longer has. */
	pthread_mutex_lock(&ctx->lock);
	ctx->dead = true;
	while (ctx->reads_pending)
		pthread_cond_wait(&ctx->cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);

	csd_sqe_io(&sqe, CSD_IO_CTX_DESTROY, ctx->id, 0);
	rc = csd_exec_status(dev, 0, &sqe, NULL, 0, NULL);

	csd_ctx_unlink(dev, ctx);
	csd_ctx_put(ctx);
	return rc;
}

CSD_EXPORT uint32_t csd_ctx_get_id(const struct csd_ctx *ctx)
{
	return ctx ? ctx->id : 0;
}

CSD_EXPORT int csd_ctx_get_params(const struct csd_ctx *ctx,
				  struct csd_ctx_params *p)
{
	if (!ctx || !p)
		return -EINVAL;
	*p = ctx->p;
	return 0;
}

CSD_EXPORT int csd_ctx_query(struct csd_ctx *ctx, struct csd_ctx_usage *u,
			     uint32_t *seq_lens, size_t n)
{
	const struct csd_ctx_info *info;
	const struct csd_seq_info *si;
	struct csd_sqe sqe;
	struct csd_seg seg;
	struct csd_cpl cpl;
	size_t i, len, cap;
	void *buf;
	int rc;

	if (ctx && ctx->grp)
		return csd_group_ctx_query(ctx, u, seq_lens, n);
	if (!ctx || (n && !seq_lens))
		return -EINVAL;
	cap = n < ctx->p.max_seqs ? n : ctx->p.max_seqs;
	if (cap > (ctx->dev->info.max_xfer - sizeof(*info)) / sizeof(*si))
		cap = (ctx->dev->info.max_xfer - sizeof(*info)) / sizeof(*si);
	len = sizeof(*info) + cap * sizeof(*si);
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	csd_sqe_io(&sqe, CSD_IO_CTX_QUERY, ctx->id, (uint32_t)len);
	seg.addr = buf;
	seg.len = len;
	rc = csd_exec_status(ctx->dev, 0, &sqe, &seg, 1, &cpl);
	if (rc)
		goto out;
	info = buf;
	si = (const struct csd_seq_info *)(info + 1);
	if (u) {
		u->seqs_used = info->seqs_used;
		u->inflight = info->inflight;
		u->tokens_per_page = info->tokens_per_page;
		u->bytes_used = info->bytes_used;
		u->tokens = info->tokens;
	}
	if (cpl.dw0 < cap)
		cap = cpl.dw0;
	for (i = 0; i < n; i++)
		seq_lens[i] = i < cap ? si[i].min_len : 0;
	rc = (int)cap;
out:
	free(buf);
	return rc;
}

CSD_EXPORT int csd_seq_reset(struct csd_ctx *ctx, uint32_t seq)
{
	struct csd_sqe sqe;

	if (ctx && ctx->grp)
		return csd_group_seq_reset(ctx, seq);
	if (!ctx)
		return -EINVAL;
	if (seq > UINT16_MAX)
		return -ERANGE;
	csd_sqe_io(&sqe, CSD_IO_SEQ_RESET, ctx->id, 0);
	sqe.cdw13 = seq;
	return csd_exec_status(ctx->dev, 0, &sqe, NULL, 0, NULL);
}

/* One KV_APPEND / KV_READ at a time, whole tokens, <= max_xfer bytes. */
static int kv_xfer(struct csd_ctx *ctx, uint8_t opc, uint32_t seq,
		   uint32_t layer, uint32_t start, uint32_t ntok,
		   const void *k, const void *v)
{
	size_t row = ctx->row_bytes, per_cmd;
	uint32_t done = 0;

	if (!k || !v)
		return -EINVAL;
	if (ntok == 0)
		return -EINVAL;
	if (seq > UINT16_MAX || layer > UINT16_MAX)
		return -ERANGE;
	if (start > UINT32_MAX - ntok)
		return -ERANGE;
	per_cmd = ctx->dev->info.max_xfer / (2 * row);
	if (per_cmd == 0)
		return -EINVAL;
	while (done < ntok) {
		uint32_t n = ntok - done;
		struct csd_seg seg[2];
		struct csd_sqe sqe;
		size_t off;
		int rc;

		if (n > per_cmd)
			n = (uint32_t)per_cmd;
		off = (size_t)done * row;
		seg[0].addr = (char *)(uintptr_t)k + off;
		seg[0].len = (size_t)n * row;
		seg[1].addr = (char *)(uintptr_t)v + off;
		seg[1].len = (size_t)n * row;
		csd_sqe_io(&sqe, opc, ctx->id, (uint32_t)(2 * seg[0].len));
		sqe.cdw13 = seq | layer << 16;
		sqe.cdw14 = start + done;
		sqe.cdw15 = n;
		rc = csd_exec_status(ctx->dev, 0, &sqe, seg, 2, NULL);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

CSD_EXPORT int csd_kv_append(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
			     uint32_t start, uint32_t ntok, const void *k,
			     const void *v)
{
	if (ctx && ctx->grp)
		return csd_group_kv_append(ctx, seq, layer, start, ntok, k, v);
	if (!ctx)
		return -EINVAL;
	/* Checked here so that an append split over several commands fails
	 * before anything is stored, in the drive's own order (ranges, then
	 * capacity); everything else is left to the drive. */
	if (seq >= ctx->p.max_seqs || layer >= ctx->p.layers)
		return -ERANGE;
	if (ntok && (uint64_t)start + ntok > ctx->p.max_tokens)
		return -EFBIG;
	return kv_xfer(ctx, CSD_IO_KV_APPEND, seq, layer, start, ntok, k, v);
}

CSD_EXPORT int csd_kv_read(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
			   uint32_t start, uint32_t ntok, void *k, void *v)
{
	if (ctx && ctx->grp)
		return csd_group_kv_read(ctx, seq, layer, start, ntok, k, v);
	if (!ctx)
		return -EINVAL;
	return kv_xfer(ctx, CSD_IO_KV_READ, seq, layer, start, ntok, k, v);
}
