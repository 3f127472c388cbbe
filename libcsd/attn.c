// SPDX-License-Identifier: MIT
/*
 * attn.c - asynchronous attention: ATTN_SUBMIT under a per-context tag,
 * then an ATTN_READ issued at once whose completion fills the caller's
 * out/lse buffers and wakes csd_attn_wait().
 *
 * Tags: a per-context bitmap on the host mirrors the drive's tags.  A tag is
 * freed here when the drive freed it (a successful read, TAG_INVALID, a
 * refused submit).  A call aborted with ABORT_REQ by the drive or by a
 * controller reset (csd_dev_reset(), or the kernel driver's own) leaves
 * the drive's tag free or holding the job, the host cannot tell which,
 * but the aborted command is gone for good: tag_reclaim() reads the tag
 * again, which settles it.  An ABORT_REQ the transport made up because it
 * stopped waiting (cpl.may_run: a kernel ioctl's timeout or signal) is
 * different: the command may still reach the drive and take the tag after
 * any re-read, so the tag stays busy.  So does it after any other failure,
 * for good on this handle.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "csd_internal.h"

struct csd_attn {
	struct csd_ctx *ctx;
	uint32_t tag;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	uint32_t submit_ns;
	size_t rlen;		/* ATTN_READ data: out (+ lse) */
	struct csd_cpl rd;
};

/* Lowest free tag at or after the hint; -EAGAIN when all are busy. */
static int tag_alloc(struct csd_ctx *ctx)
{
	uint32_t i, t;

	for (i = 0; i < ctx->ntags; i++) {
		t = (ctx->tag_hint + i) % ctx->ntags;
		if (!(ctx->tags[t / 64] & (1ull << (t % 64)))) {
			ctx->tags[t / 64] |= 1ull << (t % 64);
			ctx->tag_hint = (t + 1) % ctx->ntags;
			return (int)t;
		}
	}
	return -EAGAIN;
}

static void tag_free(struct csd_ctx *ctx, uint32_t t)
{
	ctx->tags[t / 64] &= ~(1ull << (t % 64));
}

static bool status_is(uint16_t st, uint8_t sct, uint8_t sc)
{
	return CSD_STATUS_CODE(st) == CSD_STATUS(sct, sc);
}

/* Aborted (ABORT_REQ), whether for good or not. */
static bool cpl_aborted(const struct csd_cpl *cpl)
{
	return status_is(cpl->status, CSD_SCT_GENERIC, CSD_SC_ABORT_REQ);
}

/* Aborted for good: by the drive or a controller reset, not by a
 * transport that stopped waiting (the command may still run then). */
static bool cpl_dropped(const struct csd_cpl *cpl)
{
	return cpl_aborted(cpl) && !cpl->may_run;
}

/* A transport's -errno for a command it may have sent after all.  The
 * transports promise -errno only for commands that never reached the
 * drive (csd_internal.h), but a tag is never freed on a timeout's word. */
static bool errno_maybe_sent(int rc)
{
	return rc == -ETIMEDOUT || rc == -EINTR || rc == -ECANCELED;
}

/* Attempts of tag_reclaim(): its read is aborted again only by another
 * reset racing it. */
#define RECLAIM_TRIES	3

/*
 * Give back @tag of @ctx after its ATTN_SUBMIT or ATTN_READ was aborted for
 * good (cpl_dropped(): ABORT_REQ from the drive or a controller reset, never
 * a transport's timeout).  The drive either freed the tag (the read ran and
 * only its completion was dropped; the submit never ran) or still holds the
 * job (the submit ran; the read never did).  So read the tag again, @len
 * bytes into a scratch buffer (command-set.md 3.8): success collects the
 * orphaned result, TAG_INVALID says it was already free -- either way it is
 * free on the drive now, and here.  Anything else (the device gone, the
 * context destroyed, this read itself timed out) keeps it busy on this
 * handle, as before.  Synchronous: the read parks until the job ends, which
 * the drive bounds.  Counted in reads_pending so csd_ctx_destroy() waits
 * for it (the context id stays ours meanwhile).  The caller holds a context
 * reference.
 */
static void tag_reclaim(struct csd_ctx *ctx, uint32_t tag, size_t len)
{
	struct csd_seg seg;
	struct csd_sqe sqe;
	struct csd_cpl cpl;
	bool freed = false;
	int i, rc = -ENOMEM;
	void *buf;

	pthread_mutex_lock(&ctx->lock);
	if (ctx->dead) {
		pthread_mutex_unlock(&ctx->lock);
		return;
	}
	ctx->reads_pending++;
	pthread_mutex_unlock(&ctx->lock);

	buf = malloc(len ? len : 1);
	for (i = 0; buf && i < RECLAIM_TRIES; i++) {
		seg = (struct csd_seg){ buf, len };
		csd_sqe_io(&sqe, CSD_IO_ATTN_READ, ctx->id, (uint32_t)len);
		sqe.cdw13 = tag;
		rc = csd_exec(ctx->dev, 0, &sqe, &seg, 1, &cpl);
		if (rc)
			break;
		rc = cpl.status;
		if (!cpl_dropped(&cpl)) {
			/* a may_run abort: this read may still run and free
			 * the tag later, or not -- keep it busy */
			freed = !cpl.status ||
				status_is(cpl.status, CSD_SCT_VENDOR,
					  CSD_VSC_TAG_INVALID);
			break;
		}
	}
	free(buf);
	/* rc: the last status field, or -errno when nothing was sent */
	csd_debug("ctx %u tag %u: re-read after an abort: %d (0x%04x), %s\n",
		  ctx->id, tag, rc, rc > 0 ? (unsigned int)rc : 0u,
		  freed ? "tag free" : "tag kept busy");

	pthread_mutex_lock(&ctx->lock);
	if (freed)
		tag_free(ctx, tag);
	if (--ctx->reads_pending == 0)
		pthread_cond_broadcast(&ctx->cond);
	pthread_mutex_unlock(&ctx->lock);
}

static void attn_read_done(void *arg, const struct csd_cpl *cpl)
{
	struct csd_attn *op = arg;
	struct csd_ctx *ctx = op->ctx;

	/* The op holds a context reference until it is waited for, so ctx
	 * stays valid after the reads_pending update. */
	pthread_mutex_lock(&ctx->lock);
	if (--ctx->reads_pending == 0)
		pthread_cond_broadcast(&ctx->cond);
	pthread_mutex_unlock(&ctx->lock);

	pthread_mutex_lock(&op->lock);
	op->rd = *cpl;
	op->done = 1;
	pthread_cond_signal(&op->cond);
	pthread_mutex_unlock(&op->lock);
}

/*
 * SparF parameters of @req (CSD_ATTN_SPARSE) as ATTN_SUBMIT CDW3 and the
 * extra CDW14 flags (spec v0.2).  A ratio gives r = round(ratio *
 * head_dim) >= 1 dims and keeps ratio / 2 of every sequence's tokens
 * (CSD_ATTN_F_SPARSE_FRAC, k = ratio / 2 in units of 2^-24); else r and k
 * are absolute (k is capped at the field's maximum, which keeps all tokens
 * of any sequence the device can hold).
 */
static int sparse_encode(const struct csd_ctx_params *p,
			 const struct csd_attn_req *req, uint32_t *cdw3,
			 uint32_t *flags)
{
	const struct csd_attn_sparse *sp = &req->sparse;
	uint32_t r, k;

	if (req->window)
		return -EINVAL;
	if (sp->ratio != 0.0f) {
		double kf;

		if (!(sp->ratio > 0.0f && sp->ratio <= 1.0f))
			return -EINVAL;	/* also NaN */
		r = (uint32_t)lround((double)sp->ratio * p->head_dim);
		if (r < 1)
			r = 1;
		if (r > p->head_dim)
			r = p->head_dim;
		kf = nearbyint((double)sp->ratio / 2 * CSD_SPARSE_FRAC_ONE);
		k = kf < 1 ? 1 : kf > CSD_SPARSE_MAX_K ? CSD_SPARSE_MAX_K
						       : (uint32_t)kf;
		*flags |= CSD_ATTN_F_SPARSE | CSD_ATTN_F_SPARSE_FRAC;
	} else {
		r = sp->r;
		k = sp->k > CSD_SPARSE_MAX_K ? CSD_SPARSE_MAX_K : sp->k;
		if (r < 1 || r > p->head_dim || r > CSD_SPARSE_MAX_R || !k)
			return -EINVAL;
		*flags |= CSD_ATTN_F_SPARSE;
	}
	*cdw3 = CSD_CDW3_SPARSE(r, k);
	return 0;
}

static void op_free(struct csd_attn *op)
{
	pthread_cond_destroy(&op->cond);
	pthread_mutex_destroy(&op->lock);
	free(op);
}

CSD_EXPORT int csd_attn_submit(struct csd_ctx *ctx,
			       const struct csd_attn_req *req,
			       struct csd_attn **opp)
{
	size_t qlen, kvlen = 0, outlen, lselen = 0, sublen;
	const struct csd_ctx_params *p;
	struct csd_seg seg[CSD_MAX_SEGS];
	struct csd_seg rseg[2];
	struct csd_attn *op;
	struct csd_sqe sqe;
	struct csd_cpl cpl;
	unsigned int nseg = 0, nrseg = 0;
	uint32_t scale_bits, cdw3 = 0;
	uint32_t wflags;
	int rc, tag;

	if (ctx && ctx->grp)
		return csd_group_attn_submit(ctx, req, opp);
	if (!opp)
		return -EINVAL;
	*opp = NULL;
	if (!ctx || !req || !req->nseq || !req->seqs || !req->q || !req->out)
		return -EINVAL;
	if (req->flags & ~(uint32_t)(CSD_ATTN_FUSED_KV | CSD_ATTN_LSE |
				     CSD_ATTN_SPARSE))
		return -EINVAL;
	if ((req->flags & CSD_ATTN_FUSED_KV) && (!req->k_new || !req->v_new))
		return -EINVAL;
	if ((req->flags & CSD_ATTN_LSE) && !req->lse)
		return -EINVAL;
	if (req->nseq > UINT16_MAX)
		return -EINVAL;
	if (req->layer > UINT16_MAX)
		return -ERANGE;
	p = &ctx->p;
	wflags = req->flags & (CSD_ATTN_F_FUSED_KV | CSD_ATTN_F_LSE);
	if (req->flags & CSD_ATTN_SPARSE) {
		rc = sparse_encode(p, req, &cdw3, &wflags);
		if (rc)
			return rc;
	}
	qlen = (size_t)req->nseq * p->q_heads * p->head_dim * sizeof(float);
	if (req->flags & CSD_ATTN_FUSED_KV)
		kvlen = (size_t)req->nseq * ctx->row_bytes;
	outlen = qlen;
	if (req->flags & CSD_ATTN_LSE)
		lselen = (size_t)req->nseq * p->q_heads * sizeof(float);
	sublen = req->nseq * sizeof(uint32_t) + qlen + 2 * kvlen;
	if (sublen > ctx->dev->info.max_xfer ||
	    outlen + lselen > ctx->dev->info.max_xfer)
		return -EINVAL;

	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	if (pthread_mutex_init(&op->lock, NULL)) {
		free(op);
		return -ENOMEM;
	}
	if (pthread_cond_init(&op->cond, NULL)) {
		pthread_mutex_destroy(&op->lock);
		free(op);
		return -ENOMEM;
	}
	op->ctx = ctx;

	pthread_mutex_lock(&ctx->lock);
	tag = ctx->dead ? -ENOENT : tag_alloc(ctx);
	if (tag >= 0)
		ctx->refs++;
	pthread_mutex_unlock(&ctx->lock);
	if (tag < 0) {
		op_free(op);
		return tag;
	}
	op->tag = (uint32_t)tag;

	seg[nseg++] = (struct csd_seg){ (void *)(uintptr_t)req->seqs,
					req->nseq * sizeof(uint32_t) };
	seg[nseg++] = (struct csd_seg){ (void *)(uintptr_t)req->q, qlen };
	if (kvlen) {
		seg[nseg++] = (struct csd_seg){ (void *)(uintptr_t)req->k_new,
						kvlen };
		seg[nseg++] = (struct csd_seg){ (void *)(uintptr_t)req->v_new,
						kvlen };
	}
	memcpy(&scale_bits, &req->scale, sizeof(scale_bits));
	csd_sqe_io(&sqe, CSD_IO_ATTN_SUBMIT, ctx->id, (uint32_t)sublen);
	sqe.cdw2 = req->window;
	sqe.cdw13 = op->tag | req->layer << 16;
	sqe.cdw3 = cdw3;
	sqe.cdw14 = req->nseq | wflags << 16;
	sqe.cdw15 = scale_bits;
	rc = csd_exec(ctx->dev, 0, &sqe, seg, nseg, &cpl);
	if (!rc && cpl.status) {
		csd_debug("ATTN_SUBMIT ctx %u tag %u: status 0x%04x (%s)\n",
			  ctx->id, op->tag, cpl.status,
			  csd_status_str(cpl.status));
		rc = csd_status_to_errno(cpl.status);
		if (cpl_dropped(&cpl)) {
			/* aborted for good (a controller reset): the job may
			 * have been queued under the tag before it */
			tag_reclaim(ctx, op->tag, outlen + lselen);
		} else if (cpl_aborted(&cpl)) {
			/* the transport stopped waiting: the submit may
			 * still run and take the tag -- keep it busy */
			csd_debug("ctx %u tag %u: submit may still run, tag "
				  "kept busy\n", ctx->id, op->tag);
		} else {
			/* the drive refused it: the tag is free there */
			pthread_mutex_lock(&ctx->lock);
			tag_free(ctx, op->tag);
			pthread_mutex_unlock(&ctx->lock);
		}
		goto err_put;
	}
	if (rc) {
		/* not sent at all (the transport refused it); a timeout's
		 * errno is not trusted to mean that */
		if (!errno_maybe_sent(rc)) {
			pthread_mutex_lock(&ctx->lock);
			tag_free(ctx, op->tag);
			pthread_mutex_unlock(&ctx->lock);
		}
		goto err_put;
	}
	op->submit_ns = cpl.dw1;
	op->rlen = outlen + lselen;

	rseg[nrseg++] = (struct csd_seg){ req->out, outlen };
	if (lselen)
		rseg[nrseg++] = (struct csd_seg){ req->lse, lselen };
	csd_sqe_io(&sqe, CSD_IO_ATTN_READ, ctx->id,
		   (uint32_t)(outlen + lselen));
	sqe.cdw13 = op->tag;
	sqe.cid = (uint16_t)atomic_fetch_add(&ctx->dev->cid, 1);
	pthread_mutex_lock(&ctx->lock);
	ctx->reads_pending++;
	pthread_mutex_unlock(&ctx->lock);
	rc = ctx->dev->ops->submit(ctx->dev, 0, &sqe, rseg, nrseg,
				   attn_read_done, op);
	if (rc) {
		/* The drive still holds the job under this tag: keep the tag
		 * marked busy so it is never reused on this handle. */
		pthread_mutex_lock(&ctx->lock);
		if (--ctx->reads_pending == 0)
			pthread_cond_broadcast(&ctx->cond);
		pthread_mutex_unlock(&ctx->lock);
		goto err_put;
	}
	*opp = op;
	return 0;

err_put:
	op_free(op);
	csd_ctx_put(ctx);
	return rc;
}

CSD_EXPORT int csd_attn_wait(struct csd_attn *op, struct csd_attn_result *res)
{
	struct csd_ctx *ctx;
	uint16_t st;
	int rc;

	if (!op)
		return -EINVAL;
	if (op->ctx->grp)
		return csd_group_attn_wait(op, res);
	ctx = op->ctx;
	pthread_mutex_lock(&op->lock);
	while (!op->done)
		pthread_cond_wait(&op->cond, &op->lock);
	pthread_mutex_unlock(&op->lock);

	st = op->rd.status;
	rc = csd_status_to_errno(st);
	if (st)
		csd_debug("ATTN_READ ctx %u tag %u: status 0x%04x (%s)\n",
			  ctx->id, op->tag, st, csd_status_str(st));
	/* The drive frees a tag when a read of it succeeds (or never knew
	 * it); a read aborted for good (a reset) may or may not have run:
	 * read the tag again.  Otherwise -- a read the transport stopped
	 * waiting for may still run, too -- it stays busy there and must not
	 * be reused here. */
	if (!st || status_is(st, CSD_SCT_VENDOR, CSD_VSC_TAG_INVALID)) {
		pthread_mutex_lock(&ctx->lock);
		tag_free(ctx, op->tag);
		pthread_mutex_unlock(&ctx->lock);
	} else if (cpl_dropped(&op->rd)) {
		tag_reclaim(ctx, op->tag, op->rlen);
	}
	if (res) {
		res->tokens = st ? 0 : op->rd.dw0;
		res->modeled_ns = (uint64_t)op->submit_ns + op->rd.dw1;
	}
	op_free(op);
	csd_ctx_put(ctx);
	return rc;
}

CSD_EXPORT int csd_attn_run(struct csd_ctx *ctx, const struct csd_attn_req *req,
			    struct csd_attn_result *res)
{
	struct csd_attn *op;
	int rc;

	rc = csd_attn_submit(ctx, req, &op);
	if (rc)
		return rc;
	return csd_attn_wait(op, res);
}
