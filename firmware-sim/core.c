// SPDX-License-Identifier: MIT
/*
 * core.c - the firmware core of the emulated CSD: command decode and
 * validation, dispatch, attention tags, completion and pacing.
 *
 * Every command goes through the same pipeline (Documentation/command-set.md,
 * "Validation order"):
 *
 *   1. opcode     the queue's descriptor table has it, else INVALID_OPCODE
 *   2. fields     generic checks driven by the descriptor (flags, MPTR, NDM,
 *                 reserved bits, NSID, data length) then the opcode's own
 *                 field check (tag, nseq, ntok, scale, ...)
 *   3. ranges     in the handler: context, sequence, layer, shape length,
 *                 token range, duplicates
 *   4. state      in the handler: tags, busy sequences, token order, space
 *
 * Handlers return an NVMe status field; any non-zero status is delivered
 * with DNR and nothing on the device has changed.  A successful handler has
 * filled cqe.dw0 and the model_work of what it moved; dw1 is the modeled
 * time.  ATTN_READ may return FW_PARKED: it is completed later by the
 * attention job's callback (on an engine worker thread).
 *
 * Completion is direct, or with pacing through a timer thread that delivers
 * each command at its modeled completion time (model_schedule()).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

/* ---- small helpers ----------------------------------------------------- */

static inline uint32_t sat32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static inline void st_add(_Atomic uint64_t *a, uint64_t v)
{
	atomic_fetch_add_explicit(a, v, memory_order_relaxed);
}

bool fw_data_has(const struct fw_cmd *c)
{
	return c->data && c->data->len;
}

size_t fw_data_len(const struct fw_cmd *c)
{
	return c->data ? c->data->len : 0;
}

static uint64_t work_pages(const struct model_work *w, bool rd)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < CSDFW_MAX_CHANNELS; i++)
		n += rd ? w->rd_pages[i] : w->wr_pages[i];
	return n;
}

static void pend_inc(struct csdfw *fw)
{
	pthread_mutex_lock(&fw->pend_lock);
	fw->pending++;
	pthread_mutex_unlock(&fw->pend_lock);
}

static void pend_dec(struct csdfw *fw)
{
	pthread_mutex_lock(&fw->pend_lock);
	if (--fw->pending == 0)
		pthread_cond_broadcast(&fw->pend_cond);
	pthread_mutex_unlock(&fw->pend_lock);
}

/* ---- pacing timer -------------------------------------------------------- */

static void cmd_free(struct fw_cmd *c)
{
	free(c->segs);
	free(c);
}

static void deliver(struct fw_cmd *c)
{
	struct csdfw *fw = c->fw;

	c->done(c->arg, &c->cqe);
	cmd_free(c);
	pend_dec(fw);
}

static void tq_swap(struct fw_tq *q, size_t a, size_t b)
{
	struct fw_cmd *t = q->v[a];

	q->v[a] = q->v[b];
	q->v[b] = t;
}

static int tq_push(struct fw_tq *q, struct fw_cmd *c)
{
	size_t i;

	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		/* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
		struct fw_cmd **v = realloc(q->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		q->v = v;
		q->cap = cap;
	}
	i = q->n++;
	q->v[i] = c;
	while (i && q->v[(i - 1) / 2]->deadline > q->v[i]->deadline) {
		tq_swap(q, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	return 0;
}

static struct fw_cmd *tq_pop(struct fw_tq *q)
{
	struct fw_cmd *top = q->v[0];
	size_t i = 0;

	q->v[0] = q->v[--q->n];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < q->n && q->v[l]->deadline < q->v[m]->deadline)
			m = l;
		if (r < q->n && q->v[r]->deadline < q->v[m]->deadline)
			m = r;
		if (m == i)
			break;
		tq_swap(q, i, m);
		i = m;
	}
	return top;
}

static void *tq_main(void *arg)
{
	struct csdfw *fw = arg;

	pthread_mutex_lock(&fw->tq_lock);
	for (;;) {
		uint64_t now;

		if (!fw->tq.n) {
			if (fw->tq_stop)
				break;
			pthread_cond_wait(&fw->tq_cond, &fw->tq_lock);
			continue;
		}
		now = model_now_ns();
		if (fw->tq.v[0]->deadline <= now) {
			struct fw_cmd *c = tq_pop(&fw->tq);

			pthread_mutex_unlock(&fw->tq_lock);
			deliver(c);
			pthread_mutex_lock(&fw->tq_lock);
		} else {
			uint64_t d = fw->tq.v[0]->deadline;
			struct timespec ts = {
				.tv_sec = (time_t)(d / 1000000000ull),
				.tv_nsec = (long)(d % 1000000000ull),
			};

			pthread_cond_timedwait(&fw->tq_cond, &fw->tq_lock, &ts);
		}
	}
	pthread_mutex_unlock(&fw->tq_lock);
	return NULL;
}

/*
 * Finish a command: fill the CQE, account it, then deliver now or at its
 * modeled completion time.  @st is a status field (0 = success).
 */
static void fw_complete(struct csdfw *fw, struct fw_cmd *c, uint16_t st)
{
	uint64_t cost;

	if (st) {
		static const struct model_work none;

		c->cqe.dw0 = 0;
		c->cost_set = false;
		c->paced_set = false;
		memset(&c->w, 0, sizeof(c->w));
		cost = model_cost(&fw->model, &none);
		st_add(&fw->st.errors, 1);
	} else {
		cost = c->cost_set ? c->cost_ns : model_cost(&fw->model, &c->w);
		st_add(&fw->st.host_bytes_in, c->w.link_in);
		st_add(&fw->st.host_bytes_out, c->w.link_out);
		st_add(&fw->st.flash_bytes_read,
		       work_pages(&c->w, true) * fw->cfg.page_size);
		st_add(&fw->st.flash_bytes_written,
		       work_pages(&c->w, false) * fw->cfg.page_size);
		if (c->w.link_in)
			st_add(&fw->st.write_cmds, 1);
		if (c->w.link_out)
			st_add(&fw->st.read_cmds, 1);
	}
	st_add(&fw->st.commands, 1);
	st_add(&fw->st.modeled_ns, cost);
	c->cqe.dw1 = sat32(cost);
	c->cqe.cid = c->sqe.cid;
	c->cqe.sq_id = c->q == CSDFW_Q_ADMIN ? 0 : 1;
	c->cqe.sq_head = 0;
	c->cqe.status = (uint16_t)((st ? (st | CSD_STATUS_DNR) : 0) << 1);

	if (atomic_load_explicit(&fw->pacing, memory_order_relaxed)) {
		if (!c->paced_set)
			c->deadline = model_schedule(&fw->model, c->t_submit,
						     cost);
		if (c->deadline > model_now_ns()) {
			int rc;

			pthread_mutex_lock(&fw->tq_lock);
			rc = tq_push(&fw->tq, c);
			if (!rc && fw->tq.v[0] == c)
				pthread_cond_signal(&fw->tq_cond);
			pthread_mutex_unlock(&fw->tq_lock);
			if (!rc)
				return;
			/* no memory for the queue: deliver early */
		}
	}
	deliver(c);
}

/* ---- contexts ------------------------------------------------------------- */

static struct fw_ctx *ctx_get(struct csdfw *fw, uint32_t id)
{
	struct fw_ctx *ctx = NULL;

	if (id == 0 || id > fw->cfg.max_contexts)
		return NULL;
	pthread_mutex_lock(&fw->lock);
	ctx = fw->ctx[id - 1];
	if (ctx) {
		pthread_mutex_lock(&ctx->lock);
		if (ctx->dying) {
			pthread_mutex_unlock(&ctx->lock);
			ctx = NULL;
		} else {
			ctx->refs++;
			pthread_mutex_unlock(&ctx->lock);
		}
	}
	pthread_mutex_unlock(&fw->lock);
	return ctx;
}

static void ctx_put_locked(struct fw_ctx *ctx)
{
	if (--ctx->refs <= 1)
		pthread_cond_broadcast(&ctx->cond);
}

static void ctx_put(struct fw_ctx *ctx)
{
	pthread_mutex_lock(&ctx->lock);
	ctx_put_locked(ctx);
	pthread_mutex_unlock(&ctx->lock);
}

static void ctx_free(struct fw_ctx *ctx)
{
	uint32_t i;

	if (!ctx)
		return;
	if (ctx->tags)
		for (i = 0; i < ctx->fw->cfg.max_tags; i++)
			free(ctx->tags[i].mem);
	if (ctx->kv)
		kv_ctx_destroy(ctx->kv);
	for (i = 0; i < FW_SEQ_STRIPES; i++)
		pthread_mutex_destroy(&ctx->seq_lock[i]);
	pthread_mutex_destroy(&ctx->lock);
	pthread_cond_destroy(&ctx->cond);
	free(ctx->tags);
	free(ctx->seq_busy);
	free(ctx);
}

static pthread_mutex_t *seq_stripe(struct fw_ctx *ctx, uint32_t seq)
{
	return &ctx->seq_lock[seq % FW_SEQ_STRIPES];
}

/* ---- the opcode descriptor table ----------------------------------------- */

enum fw_data_rule {
	D_NONE,		/* no data: buffer must be empty */
	D_NDT,		/* vendor: CDW10 NDT, CDW11 NDM, direction from opcode */
	D_ID,		/* exactly 4096 bytes (Identify) */
	D_LOG,		/* (NUMD + 1) * 4 bytes (Get Log Page) */
};

enum fw_nsid_rule {
	NS_ANY,		/* not checked (admin) */
	NS_IO,		/* must be CSD_NSID */
	NS_IO_ALL,	/* CSD_NSID or 0xFFFFFFFF (Flush) */
};

typedef uint16_t (*fw_handler)(struct csdfw *fw, struct fw_cmd *c);

/* field order mirrors the positional op tables below; they are tiny */
struct fw_opdesc { // NOLINT(clang-analyzer-optin.performance.Padding)
	uint8_t opcode;
	uint8_t data;		/* enum fw_data_rule */
	uint8_t nsid;		/* enum fw_nsid_rule */
	const char *name;
	/* bits that must be zero: CDW2, CDW3, then CDW10..CDW15 */
	uint32_t rsvd2, rsvd3;
	uint32_t rsvd[6];
	uint32_t flagbits;	/* CDW14[31:16] bits defined (ATTN_SUBMIT) */
	fw_handler check;	/* opcode's own field checks (step 2) */
	fw_handler exec;	/* steps 3, 4 and the work */
};

static uint16_t io_flush(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_ctx_create(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_ctx_destroy(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_kv_check(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_kv_append(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_kv_read(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_seq_reset(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_attn_submit_check(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_attn_submit(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_ctx_query(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_attn_read_check(struct csdfw *fw, struct fw_cmd *c);
static uint16_t io_attn_read(struct csdfw *fw, struct fw_cmd *c);

#define ALL	0xffffffffu
#define HI16	0xffff0000u

static const struct fw_opdesc admin_ops[] = {
	{ CSD_ADM_GET_LOG_PAGE, D_LOG, NS_ANY, "get-log-page", 0, 0,
	  /* CDW10 LSP[14:8]; RAE bit 15 allowed; CDW11 LSI; CDW14 */
	  { 0x7f00, HI16, 0, 0, ALL, ALL }, 0,
	  fw_adm_get_log_check, fw_adm_get_log },
	{ CSD_ADM_IDENTIFY, D_ID, NS_ANY, "identify", 0, 0,
	  { 0xffffff00, ALL, ALL, ALL, ALL, ALL }, 0,
	  fw_adm_identify_check, fw_adm_identify },
	{ CSD_ADM_SET_FEATURES, D_NONE, NS_ANY, "set-features", 0, 0,
	  /* SV (bit 31) is checked by the handler: not saveable */
	  { 0x7fffff00, 0, ALL, ALL, ALL, ALL }, 0,
	  fw_adm_features_check, fw_adm_set_features },
	{ CSD_ADM_GET_FEATURES, D_NONE, NS_ANY, "get-features", 0, 0,
	  { 0xfffff800, ALL, ALL, ALL, ALL, ALL }, 0,
	  fw_adm_features_check, fw_adm_get_features },
};

static const struct fw_opdesc io_ops[] = {
	{ CSD_IO_FLUSH, D_NONE, NS_IO_ALL, "flush", ALL, ALL,
	  { ALL, ALL, ALL, ALL, ALL, ALL }, 0, NULL, io_flush },
	{ CSD_IO_CTX_CREATE, D_NDT, NS_IO, "ctx-create", ALL, ALL,
	  { 0, ALL, ALL, ALL, ALL, ALL }, 0, NULL, io_ctx_create },
	{ CSD_IO_CTX_DESTROY, D_NDT, NS_IO, "ctx-destroy", ALL, ALL,
	  { 0, ALL, 0, ALL, ALL, ALL }, 0, NULL, io_ctx_destroy },
	{ CSD_IO_KV_APPEND, D_NDT, NS_IO, "kv-append", ALL, ALL,
	  { 0, ALL, 0, 0, 0, 0 }, 0, io_kv_check, io_kv_append },
	{ CSD_IO_KV_READ, D_NDT, NS_IO, "kv-read", ALL, ALL,
	  { 0, ALL, 0, 0, 0, 0 }, 0, io_kv_check, io_kv_read },
	{ CSD_IO_SEQ_RESET, D_NDT, NS_IO, "seq-reset", ALL, ALL,
	  { 0, ALL, 0, HI16, ALL, ALL }, 0, NULL, io_seq_reset },
	/* CDW3 (SparF parameters, v0.2) is checked by its own check */
	{ CSD_IO_ATTN_SUBMIT, D_NDT, NS_IO, "attn-submit", 0, 0,
	  { 0, ALL, 0, 0, 0, 0 }, CSD_ATTN_F_ALL,
	  io_attn_submit_check, io_attn_submit },
	{ CSD_IO_CTX_QUERY, D_NDT, NS_IO, "ctx-query", ALL, ALL,
	  { 0, ALL, 0, ALL, ALL, ALL }, 0, NULL, io_ctx_query },
	{ CSD_IO_ATTN_READ, D_NDT, NS_IO, "attn-read", ALL, ALL,
	  { 0, ALL, 0, HI16, ALL, ALL }, 0,
	  io_attn_read_check, io_attn_read },
};

static const struct fw_opdesc *find_op(enum csdfw_queue q, uint8_t opc)
{
	const struct fw_opdesc *t = q == CSDFW_Q_ADMIN ? admin_ops : io_ops;
	size_t n = q == CSDFW_Q_ADMIN ? sizeof(admin_ops) / sizeof(admin_ops[0])
				      : sizeof(io_ops) / sizeof(io_ops[0]);
	size_t i;

	if (q != CSDFW_Q_ADMIN && q != CSDFW_Q_IO)
		return NULL;
	for (i = 0; i < n; i++)
		if (t[i].opcode == opc)
			return &t[i];
	return NULL;
}

/* Step 2, the generic part, in the documented order. */
static uint16_t check_fields(struct csdfw *fw, const struct fw_opdesc *d,
			     struct fw_cmd *c)
{
	const struct csd_sqe *s = &c->sqe;
	const uint32_t cdw[6] = { s->cdw10, s->cdw11, s->cdw12,
				  s->cdw13, s->cdw14, s->cdw15 };
	size_t len = fw_data_len(c);
	int i;

	if (s->flags || s->mptr)
		return ST_INVALID_FIELD;
	if (d->data == D_NDT && s->cdw11)		/* NDM */
		return ST_INVALID_FIELD;
	if ((s->cdw2 & d->rsvd2) || (s->cdw3 & d->rsvd3))
		return ST_INVALID_FIELD;
	for (i = 0; i < 6; i++)
		if (cdw[i] & d->rsvd[i])
			return ST_INVALID_FIELD;
	if (d->flagbits && (CSD_CDW14_FLAGS(s->cdw14) & ~d->flagbits))
		return ST_INVALID_FIELD;
	if (d->nsid == NS_IO && s->nsid != CSD_NSID)
		return ST_GEN(INVALID_NS);
	if (d->nsid == NS_IO_ALL && s->nsid != CSD_NSID &&
	    s->nsid != 0xffffffffu)
		return ST_GEN(INVALID_NS);
	switch (d->data) {
	case D_NONE:
		if (len)
			return ST_INVALID_FIELD;
		break;
	case D_NDT: {
		uint64_t ndt = (uint64_t)s->cdw10 * 4;

		if (ndt != len || ndt > fw->cfg.max_xfer)
			return ST_INVALID_FIELD;
		if (CSD_OPC_XFER(d->opcode) == CSD_XFER_NONE && len)
			return ST_INVALID_FIELD;
		break;
	}
	case D_ID:
		if (len != CSD_ID_SIZE)
			return ST_INVALID_FIELD;
		break;
	case D_LOG: {
		uint64_t numd = ((uint64_t)(s->cdw11 & 0xffff) << 16 |
				 (s->cdw10 >> 16)) + 1;

		if (numd * 4 != len || len > fw->cfg.max_xfer)
			return ST_INVALID_FIELD;
		break;
	}
	}
	return d->check ? d->check(fw, c) : ST_OK;
}

/* ---- I/O handlers -------------------------------------------------------- */

static uint16_t io_flush(struct csdfw *fw, struct fw_cmd *c)
{
	return kv_store_flush(fw->kv) ? ST_GEN(INTERNAL) : ST_OK;
}

static uint16_t check_params(struct csdfw *fw, const struct csd_ctx_desc *p)
{
	size_t i;

	if (p->flags)
		return ST_INVALID_FIELD;
	for (i = 0; i < sizeof(p->rsvd0); i++)
		if (p->rsvd0[i])
			return ST_INVALID_FIELD;
	for (i = 0; i < sizeof(p->rsvd1); i++)
		if (p->rsvd1[i])
			return ST_INVALID_FIELD;
	if (!p->layers || p->layers > FW_MAX_LAYERS ||
	    !p->kv_heads || p->kv_heads > FW_MAX_KV_HEADS ||
	    !p->q_heads || p->q_heads > FW_MAX_Q_HEADS ||
	    p->q_heads % p->kv_heads || p->q_heads / p->kv_heads > FW_MAX_GQA ||
	    p->head_dim < FW_MIN_HEAD_DIM || p->head_dim > FW_MAX_HEAD_DIM ||
	    p->head_dim % FW_HEAD_DIM_ALIGN || p->dtype >= CSD_DTYPE_COUNT ||
	    !p->max_seqs || p->max_seqs > fw->cfg.max_seqs ||
	    !p->max_tokens || p->max_tokens > fw->cfg.max_tokens)
		return ST_VS(UNSUPPORTED);
	return ST_OK;
}

/* A context object without its KV part (io_ctx_create, recovery). */
static struct fw_ctx *ctx_alloc(struct csdfw *fw, const struct csd_ctx_desc *pp)
{
	struct csd_ctx_desc p = *pp;
	struct fw_ctx *ctx;
	uint32_t i;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->fw = fw;
	ctx->p = p;
	ctx->refs = 1;
	ctx->row_bytes = (size_t)p.kv_heads * p.head_dim *
			 csd_dtype_size(p.dtype);
	ctx->tags = calloc(fw->cfg.max_tags, sizeof(*ctx->tags));
	ctx->seq_busy = calloc(p.max_seqs, sizeof(*ctx->seq_busy));
	if (!ctx->tags || !ctx->seq_busy) {
		free(ctx->tags);
		free(ctx->seq_busy);
		free(ctx);
		return NULL;
	}
	for (i = 0; i < FW_SEQ_STRIPES; i++)
		pthread_mutex_init(&ctx->seq_lock[i], NULL);
	pthread_mutex_init(&ctx->lock, NULL);
	pthread_cond_init(&ctx->cond, NULL);
	for (i = 0; i < fw->cfg.max_tags; i++) {
		ctx->tags[i].ctx = ctx;
		ctx->tags[i].idx = (uint16_t)i;
	}
	return ctx;
}

static uint16_t io_ctx_create(struct csdfw *fw, struct fw_cmd *c)
{
	struct csd_ctx_desc p;
	struct fw_ctx *ctx;
	uint32_t slot;
	uint16_t st;

	if (fw_data_len(c) != sizeof(p))
		return ST_VS(LENGTH);
	if (csdfw_data_read(c->data, 0, &p, sizeof(p)))
		return ST_GEN(DATA_XFER_ERROR);
	st = check_params(fw, &p);
	if (st)
		return st;
	ctx = ctx_alloc(fw, &p);
	if (!ctx)
		return ST_GEN(INTERNAL);

	pthread_mutex_lock(&fw->lock);
	for (slot = 0; slot < fw->cfg.max_contexts; slot++)
		if (!fw->ctx[slot])
			break;
	if (slot == fw->cfg.max_contexts) {
		pthread_mutex_unlock(&fw->lock);
		ctx_free(ctx);
		return ST_VS(CTX_LIMIT);
	}
	ctx->id = slot + 1;
	st = kv_ctx_create(fw->kv, &p, ctx->id, &ctx->kv);
	if (st) {
		pthread_mutex_unlock(&fw->lock);
		ctx->kv = NULL;
		ctx_free(ctx);
		return st;
	}
	ctx->tpp = kv_tokens_per_page(ctx->kv);
	fw->ctx[slot] = ctx;
	fw->nctx++;
	pthread_mutex_unlock(&fw->lock);

	c->cqe.dw0 = ctx->id;
	c->w.link_in = sizeof(p);
	return ST_OK;
}

/*
 * Take @ctx out of service: wait (on the submitting thread) until no command
 * or job uses it; parked reads complete when their jobs finish.
 */
static uint16_t io_ctx_destroy(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t id = c->sqe.cdw12;
	struct fw_ctx *ctx;

	if (id == 0 || id > fw->cfg.max_contexts)
		return ST_VS(CTX_INVALID);
	pthread_mutex_lock(&fw->lock);
	ctx = fw->ctx[id - 1];
	if (!ctx) {
		pthread_mutex_unlock(&fw->lock);
		return ST_VS(CTX_INVALID);
	}
	pthread_mutex_lock(&ctx->lock);
	if (ctx->dying) {
		pthread_mutex_unlock(&ctx->lock);
		pthread_mutex_unlock(&fw->lock);
		return ST_VS(CTX_INVALID);
	}
	ctx->dying = true;
	fw->nctx--;
	pthread_mutex_unlock(&fw->lock);
	while (ctx->refs > 1)
		pthread_cond_wait(&ctx->cond, &ctx->lock);
	pthread_mutex_unlock(&ctx->lock);

	pthread_mutex_lock(&fw->lock);
	fw->ctx[id - 1] = NULL;
	pthread_mutex_unlock(&fw->lock);
	ctx_free(ctx);
	return ST_OK;
}

static uint16_t io_kv_check(struct csdfw *fw, struct fw_cmd *c)
{
	return c->sqe.cdw15 ? ST_OK : ST_INVALID_FIELD;	/* ntok >= 1 */
}

/* Steps 3 common to KV_APPEND / KV_READ; takes a context reference. */
static uint16_t kv_ranges(struct csdfw *fw, struct fw_cmd *c,
			  struct fw_ctx **ctxp)
{
	uint32_t seq = CSD_CDW13_SEQ(c->sqe.cdw13);
	uint32_t layer = CSD_CDW13_LAYER(c->sqe.cdw13);
	struct fw_ctx *ctx = ctx_get(fw, c->sqe.cdw12);

	if (!ctx)
		return ST_VS(CTX_INVALID);
	if (seq >= ctx->p.max_seqs) {
		ctx_put(ctx);
		return ST_VS(SEQ_RANGE);
	}
	if (layer >= ctx->p.layers) {
		ctx_put(ctx);
		return ST_VS(LAYER_RANGE);
	}
	if ((uint64_t)c->sqe.cdw15 * ctx->row_bytes * 2 != fw_data_len(c)) {
		ctx_put(ctx);
		return ST_VS(LENGTH);
	}
	*ctxp = ctx;
	return ST_OK;
}

static uint16_t io_kv_append(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t seq = CSD_CDW13_SEQ(c->sqe.cdw13);
	uint32_t layer = CSD_CDW13_LAYER(c->sqe.cdw13);
	uint32_t start = c->sqe.cdw14, ntok = c->sqe.cdw15;
	struct fw_ctx *ctx;
	uint16_t st;

	st = kv_ranges(fw, c, &ctx);
	if (st)
		return st;
	pthread_mutex_lock(seq_stripe(ctx, seq));
	pthread_rwlock_rdlock(&fw->alloc_lock);
	/* TOKEN_ORDER, CTX_FULL, NO_SPACE in that order, all-or-nothing */
	st = kv_append(ctx->kv, seq, layer, start, ntok, c->data, 0,
		       (size_t)ntok * ctx->row_bytes, &c->w);
	pthread_rwlock_unlock(&fw->alloc_lock);
	if (!st)
		c->cqe.dw0 = kv_len(ctx->kv, seq, layer);
	pthread_mutex_unlock(seq_stripe(ctx, seq));
	c->w.link_in = fw_data_len(c);
	ctx_put(ctx);
	return st;
}

static uint16_t io_kv_read(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t seq = CSD_CDW13_SEQ(c->sqe.cdw13);
	uint32_t layer = CSD_CDW13_LAYER(c->sqe.cdw13);
	uint32_t start = c->sqe.cdw14, ntok = c->sqe.cdw15;
	struct fw_ctx *ctx;
	uint16_t st;

	st = kv_ranges(fw, c, &ctx);
	if (st)
		return st;
	pthread_mutex_lock(seq_stripe(ctx, seq));
	if ((uint64_t)start + ntok > kv_len(ctx->kv, seq, layer))
		st = ST_VS(TOKEN_RANGE);
	else
		st = kv_read(ctx->kv, seq, layer, start, ntok, c->data, &c->w);
	pthread_mutex_unlock(seq_stripe(ctx, seq));
	c->cqe.dw0 = ntok;
	c->w.link_out = fw_data_len(c);
	ctx_put(ctx);
	return st;
}

static uint16_t io_seq_reset(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t seq = CSD_CDW13_SEQ(c->sqe.cdw13);
	struct fw_ctx *ctx = ctx_get(fw, c->sqe.cdw12);
	uint16_t st = ST_OK;
	bool busy;

	if (!ctx)
		return ST_VS(CTX_INVALID);
	if (seq >= ctx->p.max_seqs) {
		ctx_put(ctx);
		return ST_VS(SEQ_RANGE);
	}
	/* Submits raise seq_busy only under the stripe lock we hold. */
	pthread_mutex_lock(seq_stripe(ctx, seq));
	pthread_mutex_lock(&ctx->lock);
	busy = ctx->seq_busy[seq] != 0;
	pthread_mutex_unlock(&ctx->lock);
	if (busy)
		st = ST_VS(BUSY);
	else
		st = kv_seq_reset(ctx->kv, seq);
	pthread_mutex_unlock(seq_stripe(ctx, seq));
	ctx_put(ctx);
	return st;
}

static uint16_t io_ctx_query(struct csdfw *fw, struct fw_cmd *c)
{
	size_t len = fw_data_len(c);
	struct csd_ctx_info info;
	struct csd_seq_info *seqs = NULL;
	struct fw_ctx *ctx = ctx_get(fw, c->sqe.cdw12);
	uint32_t n;
	uint16_t st = ST_OK;

	if (!ctx)
		return ST_VS(CTX_INVALID);
	if (len < sizeof(info) || (len - sizeof(info)) % sizeof(*seqs)) {
		ctx_put(ctx);
		return ST_VS(LENGTH);
	}
	n = (uint32_t)((len - sizeof(info)) / sizeof(*seqs));
	if (n > ctx->p.max_seqs)
		n = ctx->p.max_seqs;
	if (n) {
		seqs = calloc(n, sizeof(*seqs));
		if (!seqs) {
			ctx_put(ctx);
			return ST_GEN(INTERNAL);
		}
	}
	kv_ctx_info(ctx->kv, &info, seqs, n);
	pthread_mutex_lock(&ctx->lock);
	info.inflight = ctx->tags_busy;
	pthread_mutex_unlock(&ctx->lock);
	if (csdfw_data_write(c->data, 0, &info, sizeof(info)) ||
	    (n && csdfw_data_write(c->data, sizeof(info), seqs,
				   (size_t)n * sizeof(*seqs))))
		st = ST_GEN(DATA_XFER_ERROR);
	/* entries past max_seqs read as zero */
	if (!st && sizeof(info) + (size_t)n * sizeof(*seqs) < len) {
		static const uint8_t zero[256];
		size_t off = sizeof(info) + (size_t)n * sizeof(*seqs);

		while (off < len) {
			size_t k = len - off < sizeof(zero) ? len - off
							    : sizeof(zero);

			csdfw_data_write(c->data, off, zero, k);
			off += k;
		}
	}
	free(seqs);
	c->cqe.dw0 = n;
	c->w.link_out = len;
	ctx_put(ctx);
	return st;
}

/* ---- attention ----------------------------------------------------------- */

static uint16_t io_attn_submit_check(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t tag = CSD_CDW13_TAG(c->sqe.cdw13);
	uint32_t nseq = CSD_CDW14_NSEQ(c->sqe.cdw14);
	unsigned int flags = CSD_CDW14_FLAGS(c->sqe.cdw14);
	float scale;

	if (tag >= fw->cfg.max_tags)
		return ST_INVALID_FIELD;
	if (nseq < 1 || nseq > fw->cfg.max_attn_seqs)
		return ST_INVALID_FIELD;
	memcpy(&scale, &c->sqe.cdw15, sizeof(scale));
	if (!isfinite(scale) || scale < 0.0f)
		return ST_INVALID_FIELD;
	/* SparF (v0.2): CDW3 and FRAC only with SPARSE; no window; k >= 1
	 * (r = 0 cannot be encoded; r > head_dim is a range check) */
	if (!(flags & CSD_ATTN_F_SPARSE)) {
		if (c->sqe.cdw3 || (flags & CSD_ATTN_F_SPARSE_FRAC))
			return ST_INVALID_FIELD;
	} else if (c->sqe.cdw2 || !CSD_CDW3_SPARSE_K(c->sqe.cdw3)) {
		return ST_INVALID_FIELD;
	}
	return ST_OK;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static const void *job_page(void *cookie, uint32_t seq, uint32_t kv_head,
			    int which, uint32_t page_idx)
{
	struct fw_tag *t = cookie;

	return kv_page(t->ctx->kv, seq, t->layer, kv_head,
		       which ? KV_V : KV_K, page_idx);
}

/* SparF: K and V pages of the kept rows, one batched lookup */
static uint32_t job_pages(void *cookie, uint32_t seq, uint32_t kv_head,
			  const uint32_t *pg, uint32_t n, const void **kpg,
			  const void **vpg)
{
	struct fw_tag *t = cookie;

	return kv_pages(t->ctx->kv, seq, t->layer, kv_head, pg, n, kpg, vpg,
			NULL, NULL);
}

/* SparF: channel-indexed K page of a chunk */
static const void *job_chan(void *cookie, uint32_t seq, uint32_t kv_head,
			    uint32_t dim, uint32_t chunk)
{
	struct fw_tag *t = cookie;

	return kv_chan_page(t->ctx->kv, seq, t->layer, kv_head, dim, chunk);
}

static inline void w_add32(uint32_t *p, uint32_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static inline void w_add64(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/*
 * SparF: charge what a sparse (sequence, kv head) group read to the job's
 * model_work (concurrently from workers: counted locally, then one atomic
 * add per channel; job_done reads it after the engine's last-task
 * synchronization).  Channel pages of the group's dims are read whole for
 * every complete chunk; the tail chunk's token-indexed K pages whole; the
 * kept tokens' K and V rows as partial page reads (one sense per distinct
 * page, only the rows transferred).
 */
/* distinct pages of the kept rows looked up per kv_pages() call */
#define SP_PAGES 64

static void job_sp_read(struct attn_job *job, uint32_t si, uint32_t kv_head,
			const uint32_t *dims, uint32_t ndims,
			const uint32_t *toks, uint32_t ntoks)
{
	struct fw_tag *t = job->priv;
	struct kv_ctx *kv = t->ctx->kv;
	struct model_work *w = &t->w;
	const uint32_t seq = job->seqs[si], n = job->hi[si], tpp = job->tpp;
	const uint32_t nch = n / job->chan_tokens;
	const size_t row = (size_t)job->head_dim * csd_dtype_size(job->dtype);
	/* tpp is a power of two in practice: shift instead of divide */
	const bool p2 = !(tpp & (tpp - 1));
	const unsigned int tsh = (unsigned int)__builtin_ctz(tpp);
	uint32_t pages[CSDFW_MAX_CHANNELS] = { 0 };
	uint32_t parts[CSDFW_MAX_CHANNELS] = { 0 };
	uint64_t pbytes[CSDFW_MAX_CHANNELS] = { 0 };
	uint32_t upg[SP_PAGES], cnt[SP_PAGES], kch[SP_PAGES], vch[SP_PAGES];
	uint32_t c, i, p;

	for (c = 0; c < nch; c++)
		for (i = 0; i < ndims; i++)
			pages[kv_chan_page_chan(kv, seq, t->layer, kv_head,
						dims[i], c)]++;
	for (p = nch * job->chan_tokens / tpp; (uint64_t)p * tpp < n; p++)
		pages[kv_page_chan(kv, seq, t->layer, kv_head, KV_K, p)]++;
	/* kept rows: per distinct page (toks ascending) one partial read of
	 * K and one of V, SP_PAGES pages per batched lookup */
	for (i = 0; i < ntoks;) {
		uint32_t nu = 0, got, u;

		while (i < ntoks) {
			uint32_t pg = p2 ? toks[i] >> tsh : toks[i] / tpp;

			if (!nu || upg[nu - 1] != pg) {
				if (nu == SP_PAGES)
					break;
				upg[nu] = pg;
				cnt[nu++] = 0;
			}
			cnt[nu - 1]++;
			i++;
		}
		got = kv_pages(kv, seq, t->layer, kv_head, upg, nu, NULL, NULL,
			       kch, vch);
		for (u = got; u < nu; u++) {	/* missing: as kv_page_chan */
			kch[u] = kv_page_chan(kv, seq, t->layer, kv_head, KV_K,
					      upg[u]);
			vch[u] = kv_page_chan(kv, seq, t->layer, kv_head, KV_V,
					      upg[u]);
		}
		for (u = 0; u < nu; u++) {
			parts[kch[u]]++;
			pbytes[kch[u]] += cnt[u] * row;
			parts[vch[u]]++;
			pbytes[vch[u]] += cnt[u] * row;
		}
	}
	for (c = 0; c < CSDFW_MAX_CHANNELS; c++) {
		if (pages[c])
			w_add32(&w->rd_pages[c], pages[c]);
		if (parts[c]) {
			w_add32(&w->rd_part_pages[c], parts[c]);
			w_add64(&w->rd_part_bytes[c], pbytes[c]);
		}
	}
}

static size_t attn_out_bytes(const struct fw_ctx *ctx, uint32_t nseq,
			     unsigned int flags)
{
	size_t n = (size_t)nseq * ctx->p.q_heads * ctx->p.head_dim * 4;

	if (flags & CSD_ATTN_F_LSE)
		n += (size_t)nseq * ctx->p.q_heads * 4;
	return n;
}

/* Release a tag (result read or context gone).  ctx->lock held. */
static void tag_release_locked(struct fw_ctx *ctx, struct fw_tag *t)
{
	uint32_t i;

	for (i = 0; i < t->nseq; i++)
		ctx->seq_busy[t->job.seqs[i]]--;
	free(t->mem);
	t->mem = NULL;
	t->state = TAG_FREE;
	t->reader = NULL;
	ctx->tags_busy--;
}

/*
 * Device time an attention job occupies on the paced clock: its flash reads
 * and compute only.  The output transfer and a command overhead belong to
 * the ATTN_READ that collects the result (scheduled in finish_read()), so
 * they are not counted twice; CQE dw1 of the read still reports the whole
 * job cost (t->cost_ns) as the spec says.
 */
static uint64_t job_sched_ns(const struct model *m, const struct model_work *w)
{
	struct model_work j = *w;
	uint64_t ns;

	j.link_out = 0;
	ns = model_cost(m, &j);
	return ns > m->t.cmd_overhead_ns ? ns - m->t.cmd_overhead_ns : 0;
}

/*
 * Copy a finished job's result into the read command and complete it.
 * The tag is in TAG_READING (no one else touches it); the read holds a
 * context reference which is dropped here.
 */
static void finish_read(struct csdfw *fw, struct fw_ctx *ctx,
			struct fw_tag *t, struct fw_cmd *rd)
{
	size_t out = (size_t)t->nseq * ctx->p.q_heads * ctx->p.head_dim * 4;
	uint16_t st = ST_OK;

	if (csdfw_data_write(rd->data, 0, t->job.out, out) ||
	    ((t->flags & CSD_ATTN_F_LSE) &&
	     csdfw_data_write(rd->data, out, t->job.lse,
			      (size_t)t->nseq * ctx->p.q_heads * 4)))
		st = ST_GEN(DATA_XFER_ERROR);
	rd->cqe.dw0 = sat32(t->tokens);
	rd->w.link_out = fw_data_len(rd);
	rd->cost_ns = t->cost_ns;
	rd->cost_set = true;
	if (atomic_load_explicit(&fw->pacing, memory_order_relaxed)) {
		struct model_work w = { .link_out = rd->w.link_out };
		uint64_t at = rd->t_submit > t->job_end_ns ? rd->t_submit
							   : t->job_end_ns;

		rd->deadline = model_schedule(&fw->model, at,
					      model_cost(&fw->model, &w));
		rd->paced_set = true;
	}
	pthread_mutex_lock(&ctx->lock);
	if (st)
		t->state = TAG_DONE;	/* result kept */
	else
		tag_release_locked(ctx, t);
	ctx_put_locked(ctx);
	pthread_mutex_unlock(&ctx->lock);
	fw_complete(fw, rd, st);
}

/* Engine worker: a job finished. */
static void job_done(struct attn_job *job)
{
	struct fw_tag *t = job->priv;
	struct fw_ctx *ctx = t->ctx;
	struct csdfw *fw = ctx->fw;
	struct fw_cmd *rd = NULL;
	uint64_t now = model_now_ns(), part = 0;
	int i;

	if (t->job.sp_r) {
		/* SparF: what was read is known only now */
		t->cost_ns = model_cost(&fw->model, &t->w);
		if (t->job_end_ns)
			t->job_end_ns = model_schedule(&fw->model,
						       t->job_end_ns,
						       job_sched_ns(&fw->model,
								    &t->w));
	}
	for (i = 0; i < CSDFW_MAX_CHANNELS; i++)
		part += t->w.rd_part_bytes[i];
	st_add(&fw->st.busy_ns, now - t->t_start);
	st_add(&fw->st.flash_bytes_read,
	       work_pages(&t->w, true) * fw->cfg.page_size + part);
	pthread_mutex_lock(&ctx->lock);
	if (t->state == TAG_READING)
		rd = t->reader;
	else
		t->state = TAG_DONE;
	ctx->jobs--;
	ctx->refs++;		/* keep ctx across finish_read */
	pthread_mutex_unlock(&ctx->lock);
	if (rd)
		finish_read(fw, ctx, t, rd);
	pthread_mutex_lock(&ctx->lock);
	ctx_put_locked(ctx);	/* the job's reference ... */
	ctx_put_locked(ctx);	/* ... and ours */
	pthread_mutex_unlock(&ctx->lock);
	pend_dec(fw);
}

struct attn_batch {
	uint32_t nseq;
	uint32_t *seqs, *lo, *hi, *sorted;
	float *q, *out, *lse;
	float *vsum;			/* SparF: [nseq][kv_heads][head_dim] */
};

static void *batch_alloc(const struct fw_ctx *ctx, uint32_t nseq,
			 unsigned int flags, struct attn_batch *b)
{
	size_t qn = (size_t)nseq * ctx->p.q_heads * ctx->p.head_dim;
	size_t u = (size_t)nseq * 4 * sizeof(uint32_t);
	size_t lse = (flags & CSD_ATTN_F_LSE) ?
		     (size_t)nseq * ctx->p.q_heads * sizeof(float) : 0;
	size_t ua = (u + 63) & ~(size_t)63, qa = (qn * 4 + 63) & ~(size_t)63;
	size_t la = (lse + 63) & ~(size_t)63;
	size_t vs = (flags & CSD_ATTN_F_SPARSE) ? (size_t)nseq *
		    ctx->p.kv_heads * ctx->p.head_dim * sizeof(float) : 0;
	uint8_t *m = aligned_alloc(64, ua + 2 * qa + la +
				   ((vs + 63) & ~(size_t)63));

	if (!m)
		return NULL;
	b->vsum = vs ? (float *)(void *)(m + ua + 2 * qa + la) : NULL;
	b->nseq = nseq;
	b->seqs = (uint32_t *)(void *)m;
	b->lo = b->seqs + nseq;
	b->hi = b->lo + nseq;
	b->sorted = b->hi + nseq;
	b->q = (float *)(void *)(m + ua);
	b->out = (float *)(void *)(m + ua + qa);
	b->lse = lse ? (float *)(void *)(m + ua + 2 * qa) : NULL;
	return m;
}

static void stripes_lock(struct fw_ctx *ctx, const bool *use, bool lock)
{
	int i;

	for (i = 0; i < FW_SEQ_STRIPES; i++) {
		int k = lock ? i : FW_SEQ_STRIPES - 1 - i;

		if (!use[k])
			continue;
		if (lock)
			pthread_mutex_lock(&ctx->seq_lock[k]);
		else
			pthread_mutex_unlock(&ctx->seq_lock[k]);
	}
}

static uint16_t io_attn_submit(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t tag = CSD_CDW13_TAG(c->sqe.cdw13);
	uint32_t layer = CSD_CDW13_LAYER(c->sqe.cdw13);
	uint32_t nseq = CSD_CDW14_NSEQ(c->sqe.cdw14);
	unsigned int flags = CSD_CDW14_FLAGS(c->sqe.cdw14);
	bool fused = flags & CSD_ATTN_F_FUSED_KV;
	bool sparse = flags & CSD_ATTN_F_SPARSE;
	uint32_t sp_r = CSD_CDW3_SPARSE_R(c->sqe.cdw3);
	uint32_t sp_k = CSD_CDW3_SPARSE_K(c->sqe.cdw3);
	bool sp_frac = flags & CSD_ATTN_F_SPARSE_FRAC;
	uint32_t window = c->sqe.cdw2;
	struct fw_ctx *ctx;
	struct attn_batch b;
	struct fw_tag *t;
	struct model_work jw;
	bool stripes[FW_SEQ_STRIPES] = { false };
	size_t qbytes, kvrow, len, koff, voff;
	uint64_t tokens = 0, need_blocks = 0, need_e = 0, flops = 0;
	unsigned int aflags = 0;
	void *mem = NULL;
	uint16_t st = ST_OK;
	float scale;
	uint32_t i;
	int rc;

	memcpy(&scale, &c->sqe.cdw15, sizeof(scale));
	/* step 3: ranges */
	ctx = ctx_get(fw, c->sqe.cdw12);
	if (!ctx)
		return ST_VS(CTX_INVALID);
	if (layer >= ctx->p.layers) {
		st = ST_VS(LAYER_RANGE);
		goto out_put;
	}
	if (sparse && sp_r > ctx->p.head_dim) {
		st = ST_INVALID_FIELD;
		goto out_put;
	}
	qbytes = (size_t)nseq * ctx->p.q_heads * ctx->p.head_dim * 4;
	kvrow = ctx->row_bytes;
	len = (size_t)nseq * 4 + qbytes + (fused ? 2 * nseq * kvrow : 0);
	if (len != fw_data_len(c)) {
		st = ST_VS(LENGTH);
		goto out_put;
	}
	mem = batch_alloc(ctx, nseq, flags, &b);
	if (!mem) {
		st = ST_GEN(INTERNAL);
		goto out_put;
	}
	if (csdfw_data_read(c->data, 0, b.seqs, (size_t)nseq * 4) ||
	    csdfw_data_read(c->data, (size_t)nseq * 4, b.q, qbytes)) {
		st = ST_GEN(DATA_XFER_ERROR);
		goto out_free;
	}
	for (i = 0; i < nseq; i++) {
		if (b.seqs[i] >= ctx->p.max_seqs) {
			st = ST_VS(SEQ_RANGE);
			goto out_free;
		}
	}
	memcpy(b.sorted, b.seqs, (size_t)nseq * 4);
	qsort(b.sorted, nseq, sizeof(uint32_t), cmp_u32);
	for (i = 1; i < nseq; i++) {
		if (b.sorted[i] == b.sorted[i - 1]) {
			st = ST_INVALID_FIELD;
			goto out_free;
		}
	}

	/* step 4: state, with the sequences' stripes (and space) held */
	for (i = 0; i < nseq; i++)
		stripes[b.seqs[i] % FW_SEQ_STRIPES] = true;
	stripes_lock(ctx, stripes, true);
	if (fused)
		pthread_rwlock_wrlock(&fw->alloc_lock);
	t = &ctx->tags[tag];
	pthread_mutex_lock(&ctx->lock);
	if (t->state != TAG_FREE) {
		st = ST_VS(TAG_BUSY);
		goto out_unlock;
	}
	for (i = 0; i < nseq; i++) {
		uint32_t l = kv_len(ctx->kv, b.seqs[i], layer);

		if (fused && (uint64_t)l + 1 > ctx->p.max_tokens) {
			st = ST_VS(CTX_FULL);
			goto out_unlock;
		}
		/* new extents / pages (token pages, and the channel-indexed
		 * pages of a chunk the token completes): kv's own bound, so
		 * either every sequence appends or none does */
		if (fused)
			need_blocks += kv_append_blocks_bound(ctx->kv,
							      b.seqs[i],
							      layer, 1, 0);
	}
	/* growing extents if they fit for all, else extents of E (the
	 * smaller bound, worked out only when needed) */
	if (fused && need_blocks > kv_store_blocks_free(fw->kv)) {
		for (i = 0; i < nseq; i++)
			need_e += kv_append_blocks_bound(ctx->kv, b.seqs[i],
							 layer, 1,
							 KV_APPEND_NOGROW);
		if (need_e > kv_store_blocks_free(fw->kv)) {
			st = ST_VS(NO_SPACE);
			goto out_unlock;
		}
		aflags = KV_APPEND_NOGROW;
	}
	if (!fused) {
		for (i = 0; i < nseq; i++) {
			if (!kv_len(ctx->kv, b.seqs[i], layer)) {
				st = ST_VS(EMPTY_SEQ);
				goto out_unlock;
			}
		}
	}
	/* accepted: reserve the tag and the sequences */
	t->state = TAG_RUNNING;
	t->flags = (uint8_t)flags;
	t->layer = layer;
	t->nseq = nseq;
	t->mem = mem;
	t->reader = NULL;
	t->job.seqs = b.seqs;
	t->job.out = b.out;
	t->job.lse = b.lse;
	ctx->tags_busy++;
	for (i = 0; i < nseq; i++)
		ctx->seq_busy[b.seqs[i]]++;
	pthread_mutex_unlock(&ctx->lock);

	koff = (size_t)nseq * 4 + qbytes;
	voff = koff + (size_t)nseq * kvrow;
	for (i = 0; fused && i < nseq; i++) {
		uint32_t s = b.seqs[i];
		uint16_t ast = kv_append_flags(ctx->kv, s, layer,
					       kv_len(ctx->kv, s, layer), 1,
					       c->data, koff + i * kvrow,
					       voff + i * kvrow, &c->w, aflags);

		if (ast && !st)
			st = ast;	/* cannot happen: checked above */
	}
	memset(&jw, 0, sizeof(jw));
	for (i = 0; i < nseq; i++) {
		uint32_t s = b.seqs[i], hi, ki;

		if (!sparse) {
			hi = kv_len(ctx->kv, s, layer);
			b.hi[i] = hi;
			b.lo[i] = window && hi > window ? hi - window : 0;
			kv_account_read(ctx->kv, s, layer, b.lo[i], b.hi[i],
					&jw);
			flops += 4ull * ctx->p.q_heads * ctx->p.head_dim *
				 (b.hi[i] - b.lo[i]);
			tokens += b.hi[i] - b.lo[i];
			continue;
		}
		/* SparF: length and mean(V) from one consistent snapshot */
		hi = kv_vsum(ctx->kv, s, layer, b.vsum + (size_t)i *
			     ctx->p.kv_heads * ctx->p.head_dim);
		b.hi[i] = hi;
		b.lo[i] = 0;
		tokens += hi;
		ki = attn_sparse_k(sp_k, sp_frac, hi);
		if (ki >= hi) {		/* all tokens: exactly dense */
			kv_account_read(ctx->kv, s, layer, 0, hi, &jw);
			flops += 4ull * ctx->p.q_heads * ctx->p.head_dim * hi;
		} else {		/* reads are charged by job_sp_read */
			flops += (uint64_t)ctx->p.q_heads *
				 (2ull * sp_r * hi +
				  4ull * ctx->p.head_dim * ki);
		}
	}
	if (fused)
		pthread_rwlock_unlock(&fw->alloc_lock);
	stripes_lock(ctx, stripes, false);

	if (st) {	/* a fused append failed after the checks */
		struct fw_cmd *rd = NULL;

		pthread_mutex_lock(&ctx->lock);
		if (t->state == TAG_READING) {
			rd = t->reader;
			ctx_put_locked(ctx);	/* the reader's reference */
		}
		tag_release_locked(ctx, t);
		pthread_mutex_unlock(&ctx->lock);
		if (rd)
			fw_complete(fw, rd, ST_GEN(ABORT_REQ));
		ctx_put(ctx);
		return st;
	}

	jw.flops = flops;
	jw.link_out = attn_out_bytes(ctx, nseq, flags);
	pthread_mutex_lock(&ctx->lock);
	t->tokens = tokens;
	t->w = jw;
	t->cost_ns = model_cost(&fw->model, &jw);
	memset(&t->job, 0, sizeof(t->job));
	t->job.dtype = ctx->p.dtype;
	t->job.head_dim = ctx->p.head_dim;
	t->job.q_heads = ctx->p.q_heads;
	t->job.kv_heads = ctx->p.kv_heads;
	t->job.tpp = ctx->tpp;
	t->job.scale = scale > 0.0f ? scale :
		       1.0f / sqrtf((float)ctx->p.head_dim);
	t->job.nseq = nseq;
	t->job.seqs = b.seqs;
	t->job.lo = b.lo;
	t->job.hi = b.hi;
	t->job.q = b.q;
	t->job.out = b.out;
	t->job.lse = b.lse;
	t->job.page = job_page;
	t->job.cookie = t;
	t->job.done = job_done;
	t->job.priv = t;
	if (sparse) {
		t->job.sp_r = sp_r;
		t->job.sp_k = sp_k;
		t->job.sp_frac = sp_frac;
		t->job.chan_tokens = kv_chan_tokens(ctx->kv);
		t->job.chan = job_chan;
		t->job.vsum = b.vsum;
		t->job.sp_read = job_sp_read;
		t->job.pages = job_pages;
	}
	pthread_mutex_unlock(&ctx->lock);

	c->w.link_in = fw_data_len(c);
	c->cost_ns = model_cost(&fw->model, &c->w);
	c->cost_set = true;
	t->job_end_ns = 0;
	if (atomic_load_explicit(&fw->pacing, memory_order_relaxed)) {
		c->deadline = model_schedule(&fw->model, c->t_submit,
					     c->cost_ns);
		c->paced_set = true;
		/* a sparse job is placed when it is done (job_done): its
		 * reads depend on the scores; until then the earliest start */
		t->job_end_ns = sparse ? c->deadline :
				model_schedule(&fw->model, c->deadline,
					       job_sched_ns(&fw->model, &jw));
	}
	st_add(&fw->st.attn_calls, 1);
	st_add(&fw->st.attn_seqs, nseq);
	st_add(&fw->st.attn_tokens, tokens);

	pthread_mutex_lock(&ctx->lock);
	ctx->jobs++;
	ctx->refs++;		/* held by the job */
	pthread_mutex_unlock(&ctx->lock);
	pend_inc(fw);
	t->t_start = model_now_ns();
	rc = attn_engine_submit(fw->eng, &t->job);
	if (rc) {
		/* the engine refused (no memory): run it on this thread;
		 * attn_run_single() calls job_done() itself on success */
		rc = attn_run_single(&t->job, attn_engine_simd(fw->eng));
		if (rc) {
			memset(t->job.out, 0, qbytes);
			if (t->job.lse)
				memset(t->job.lse, 0, (size_t)nseq *
				       ctx->p.q_heads * sizeof(float));
			job_done(&t->job);
		}
	}
	ctx_put(ctx);
	return ST_OK;

out_unlock:
	pthread_mutex_unlock(&ctx->lock);
	if (fused)
		pthread_rwlock_unlock(&fw->alloc_lock);
	stripes_lock(ctx, stripes, false);
out_free:
	free(mem);
out_put:
	ctx_put(ctx);
	return st;
}

static uint16_t io_attn_read_check(struct csdfw *fw, struct fw_cmd *c)
{
	return CSD_CDW13_TAG(c->sqe.cdw13) < fw->cfg.max_tags ?
	       ST_OK : ST_INVALID_FIELD;
}

static uint16_t io_attn_read(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t tag = CSD_CDW13_TAG(c->sqe.cdw13);
	struct fw_ctx *ctx = ctx_get(fw, c->sqe.cdw12);
	struct csdfw_seg *segs = NULL;
	struct fw_tag *t;
	uint16_t st = ST_OK;
	bool done;

	if (!ctx)
		return ST_VS(CTX_INVALID);
	/* a parked read outlives the transport's descriptor: copy it */
	if (c->data && c->data->nseg) {
		segs = malloc(c->data->nseg * sizeof(*segs));
		if (!segs) {
			ctx_put(ctx);
			return ST_GEN(INTERNAL);
		}
		memcpy(segs, c->data->seg, c->data->nseg * sizeof(*segs));
	}
	t = &ctx->tags[tag];
	pthread_mutex_lock(&ctx->lock);
	if (t->state == TAG_FREE)
		st = ST_VS(TAG_INVALID);
	else if (attn_out_bytes(ctx, t->nseq, t->flags) != fw_data_len(c))
		st = ST_VS(LENGTH);
	else if (t->state == TAG_READING)
		st = ST_VS(TAG_BUSY);
	if (st) {
		pthread_mutex_unlock(&ctx->lock);
		free(segs);
		ctx_put(ctx);
		return st;
	}
	c->segs = segs;
	if (c->data) {
		c->dcopy = *c->data;
		c->dcopy.seg = segs;
		c->data = &c->dcopy;
	}
	done = t->state == TAG_DONE;
	t->state = TAG_READING;
	t->reader = c;
	pthread_mutex_unlock(&ctx->lock);
	if (done)
		finish_read(fw, ctx, t, c);	/* drops our reference */
	return FW_PARKED;	/* completed by finish_read */
}

/* ---- submission ---------------------------------------------------------- */

static void complete_nomem(const struct csd_sqe *sqe, enum csdfw_queue q,
			   csdfw_done_fn done, void *arg)
{
	struct csd_cqe cqe;

	memset(&cqe, 0, sizeof(cqe));
	cqe.cid = sqe->cid;
	cqe.sq_id = q == CSDFW_Q_ADMIN ? 0 : 1;
	cqe.status = (uint16_t)((ST_GEN(INTERNAL) | CSD_STATUS_DNR) << 1);
	done(arg, &cqe);
}

void csdfw_submit(struct csdfw *fw, enum csdfw_queue q,
		  const struct csd_sqe *sqe, const struct csdfw_data *data,
		  csdfw_done_fn done, void *arg)
{
	const struct fw_opdesc *d;
	struct fw_cmd *c;
	uint64_t t0;
	uint16_t st;

	c = calloc(1, sizeof(*c));
	if (!c) {
		complete_nomem(sqe, q, done, arg);
		return;
	}
	t0 = model_now_ns();
	c->fw = fw;
	c->q = q;
	c->sqe = *sqe;
	c->data = data && data->len ? data : NULL;
	c->done = done;
	c->arg = arg;
	c->t_submit = t0;
	pend_inc(fw);

	d = find_op(q, sqe->opcode);
	if (!d) {
		st = ST_GEN(INVALID_OPCODE);
		goto complete;
	}
	st = check_fields(fw, d, c);
	if (st)
		goto complete;
	st = d->exec(fw, c);
	if (st == FW_PARKED) {
		st_add(&fw->st.busy_ns, model_now_ns() - t0);
		return;
	}
complete:
	st_add(&fw->st.busy_ns, model_now_ns() - t0);
	fw_complete(fw, c, st);
}

struct exec_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	struct csd_cqe *cqe;
};

static void exec_done(void *arg, const struct csd_cqe *cqe)
{
	struct exec_wait *w = arg;

	pthread_mutex_lock(&w->lock);
	*w->cqe = *cqe;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void csdfw_exec(struct csdfw *fw, enum csdfw_queue q,
		const struct csd_sqe *sqe, const struct csdfw_data *data,
		struct csd_cqe *cqe)
{
	struct exec_wait w = { .done = false, .cqe = cqe };

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	csdfw_submit(fw, q, sqe, data, exec_done, &w);
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
}

/* ---- services for admin.c ---------------------------------------------- */

uint32_t fw_list_contexts(struct csdfw *fw, struct csd_log_ctx_entry *ents,
			  uint32_t max)
{
	uint32_t i, n = 0;

	pthread_mutex_lock(&fw->lock);
	for (i = 0; i < fw->cfg.max_contexts && n < max; i++) {
		struct fw_ctx *ctx = fw->ctx[i];
		struct csd_ctx_info info;
		struct csd_log_ctx_entry *e = &ents[n];

		if (!ctx || ctx->dying)
			continue;
		kv_ctx_info(ctx->kv, &info, NULL, 0);
		memset(e, 0, sizeof(*e));
		e->ctx_id = ctx->id;
		e->layers = ctx->p.layers;
		e->kv_heads = ctx->p.kv_heads;
		e->q_heads = ctx->p.q_heads;
		e->head_dim = ctx->p.head_dim;
		e->dtype = ctx->p.dtype;
		e->max_seqs = ctx->p.max_seqs;
		e->max_tokens = ctx->p.max_tokens;
		e->seqs_used = info.seqs_used;
		e->bytes_used = info.bytes_used;
		e->tokens = info.tokens;
		n++;
	}
	pthread_mutex_unlock(&fw->lock);
	return n;
}

void fw_fill_stats(struct csdfw *fw, struct csd_log_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->kv_bytes_stored = kv_store_bytes_stored(fw->kv);
	s->flash_bytes_used = kv_store_bytes_used(fw->kv);
#define LD(f) atomic_load_explicit(&fw->st.f, memory_order_relaxed)
	s->flash_bytes_read = LD(flash_bytes_read);
	s->flash_bytes_written = LD(flash_bytes_written);
	s->host_bytes_in = LD(host_bytes_in);
	s->host_bytes_out = LD(host_bytes_out);
	s->attn_calls = LD(attn_calls);
	s->attn_seqs = LD(attn_seqs);
	s->attn_tokens = LD(attn_tokens);
	s->commands = LD(commands);
	s->errors = LD(errors);
	s->modeled_ns = LD(modeled_ns);
	s->busy_ns = LD(busy_ns);
#undef LD
	pthread_mutex_lock(&fw->lock);
	s->contexts = fw->nctx;
	pthread_mutex_unlock(&fw->lock);
	s->blocks_free = kv_store_blocks_free(fw->kv);
	s->blocks_total = kv_store_blocks_total(fw->kv);
}

/* ---- create / destroy ---------------------------------------------------- */

/*
 * Register the contexts kv_store_open() recovered from the backing file at
 * their ids (they are unowned until a host names them).  0 or -errno with
 * a message on stderr.
 */
static int adopt_recovered(struct csdfw *fw)
{
	uint32_t i, n = kv_store_nrecovered(fw->kv);

	for (i = 0; i < n; i++) {
		struct kv_ctx *kv = kv_store_recovered(fw->kv, i);
		const struct csd_ctx_desc *p = kv_ctx_params(kv);
		uint32_t id = kv_ctx_id(kv);
		struct fw_ctx *ctx;

		if (id > fw->cfg.max_contexts || fw->ctx[id - 1] ||
		    check_params(fw, p)) {
			fprintf(stderr, "csdfw: recovered context %u does not "
				"fit this configuration (contexts=%u, "
				"seqs=%u, tokens=%u)\n", id,
				fw->cfg.max_contexts, fw->cfg.max_seqs,
				fw->cfg.max_tokens);
			return -EINVAL;
		}
		ctx = ctx_alloc(fw, p);
		if (!ctx)
			return -ENOMEM;
		ctx->id = id;
		ctx->kv = kv;
		ctx->tpp = kv_tokens_per_page(kv);
		fw->ctx[id - 1] = ctx;
		fw->nctx++;
	}
	return 0;
}

int csdfw_create(const struct csdfw_config *cfg, struct csdfw **fwp)
{
	struct csdfw_config def;
	pthread_condattr_t ca;
	pthread_rwlockattr_t ra;
	struct csdfw *fw;
	uint32_t i;
	int rc;

	*fwp = NULL;
	if (!cfg) {
		csdfw_config_default(&def);
		cfg = &def;
	}
	if (fw_config_check(cfg, NULL, 0))
		return -EINVAL;
	fw = calloc(1, sizeof(*fw));
	if (!fw)
		return -ENOMEM;
	fw->cfg = *cfg;
	fw->cfg.backing[sizeof(fw->cfg.backing) - 1] = '\0';
	fw->t_create = model_now_ns();
	atomic_init(&fw->pacing, cfg->pacing ? 1 : 0);
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): array of pointers */
	fw->ctx = calloc(fw->cfg.max_contexts, sizeof(*fw->ctx));
	if (!fw->ctx) {
		rc = -ENOMEM;
		goto err_free;
	}
	pthread_mutex_init(&fw->lock, NULL);
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fw->alloc_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&fw->pend_lock, NULL);
	pthread_cond_init(&fw->pend_cond, NULL);
	pthread_mutex_init(&fw->tq_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fw->tq_cond, &ca);
	pthread_condattr_destroy(&ca);
	model_init(&fw->model, &fw->cfg.timing, fw->cfg.channels,
		   fw->cfg.page_size);

	rc = kv_store_open(&fw->cfg, &fw->kv);
	if (rc)
		goto err_locks;
	rc = adopt_recovered(fw);
	if (rc)
		goto err_kv;
	if (fw->cfg.simd != CSD_SIMD_AUTO &&
	    !attn_simd_supported(fw->cfg.simd)) {
		rc = -ENOTSUP;
		goto err_kv;
	}
	rc = attn_engine_create(fw->cfg.threads, fw->cfg.simd, &fw->eng);
	if (rc)
		goto err_kv;
	fw->cfg.simd = attn_engine_simd(fw->eng);
	fw->cfg.threads = attn_engine_threads(fw->eng);
	rc = -pthread_create(&fw->tq_thread, NULL, tq_main, fw);
	if (rc)
		goto err_eng;
	fw->tq_started = true;
	*fwp = fw;
	return 0;

err_eng:
	attn_engine_destroy(fw->eng);
err_kv:
	/* recovered contexts: their blocks only go pending, never
	 * committed, so the file keeps them */
	for (i = 0; i < fw->cfg.max_contexts; i++)
		ctx_free(fw->ctx[i]);
	kv_store_close(fw->kv);
err_locks:
	model_fini(&fw->model);
	pthread_cond_destroy(&fw->tq_cond);
	pthread_mutex_destroy(&fw->tq_lock);
	pthread_cond_destroy(&fw->pend_cond);
	pthread_mutex_destroy(&fw->pend_lock);
	pthread_rwlock_destroy(&fw->alloc_lock);
	pthread_mutex_destroy(&fw->lock);
err_free:
	free(fw->ctx);
	free(fw);
	return rc;
}

void csdfw_destroy(struct csdfw *fw)
{
	uint32_t i;

	if (!fw)
		return;
	/* every command delivered and every job finished */
	pthread_mutex_lock(&fw->pend_lock);
	while (fw->pending)
		pthread_cond_wait(&fw->pend_cond, &fw->pend_lock);
	pthread_mutex_unlock(&fw->pend_lock);

	pthread_mutex_lock(&fw->tq_lock);
	fw->tq_stop = true;
	pthread_cond_broadcast(&fw->tq_cond);
	pthread_mutex_unlock(&fw->tq_lock);
	if (fw->tq_started)
		pthread_join(fw->tq_thread, NULL);
	attn_engine_destroy(fw->eng);
	/* a clean shutdown commits; contexts stay in a backing file */
	kv_store_shutdown(fw->kv);
	for (i = 0; i < fw->cfg.max_contexts; i++)
		ctx_free(fw->ctx[i]);
	kv_store_close(fw->kv);
	model_fini(&fw->model);
	free(fw->tq.v);
	pthread_cond_destroy(&fw->tq_cond);
	pthread_mutex_destroy(&fw->tq_lock);
	pthread_cond_destroy(&fw->pend_cond);
	pthread_mutex_destroy(&fw->pend_lock);
	pthread_rwlock_destroy(&fw->alloc_lock);
	pthread_mutex_destroy(&fw->lock);
	free(fw->ctx);
	free(fw);
}
