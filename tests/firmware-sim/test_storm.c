// SPDX-License-Identifier: MIT
/*
 * test_storm.c - seeded random-command storm against a shadow model.
 *
 * The test keeps its own model of every context (shape, per (seq, layer)
 * contents, busy tags and sequences) and predicts the exact status (and
 * dw0) of every command, valid or not, from the documented validation
 * order.  After every command the prediction is checked; every few hundred
 * commands the whole device state (CTX_QUERY of each context, the context
 * log, the statistics log) is compared with the model, and KV read-backs
 * and attention outputs are compared with the model's contents.
 *
 *   CSD_STORM_SEED=n       seed (default: time); printed at start
 *   CSD_STORM_COMMANDS=n   number of commands (default 100000)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cu_main.h"
#include "csdfw.h"
#include "fw_helpers.h"

#define NCTX	4
#define NSEQ	8
#define NLAYER	3
#define NTAG	8
#define MAXNSEQ	4

struct stag {
	bool busy;
	uint32_t nseq, flags, layer;
	uint32_t seqs[MAXNSEQ], lo[MAXNSEQ], hi[MAXNSEQ];
	uint64_t tokens;
	float *q;		/* [nseq][qh][hd] */
	float scale;
};

struct sctx {
	bool live;
	uint32_t id;
	struct csd_ctx_desc p;
	size_t el, row;		/* element size, row bytes (all kv heads) */
	uint32_t len[NSEQ][NLAYER];
	uint8_t *kv[NSEQ][NLAYER];	/* [max_tokens] K rows, then V rows */
	uint32_t seq_busy[NSEQ];
	struct stag tag[NTAG];
};

struct storm {
	struct csdfw *fw;
	uint64_t rs;
	struct sctx ctx[NCTX];	/* index = id - 1 */
	uint64_t commands, errors;
	uint64_t fails;
	uint8_t *buf;
	size_t bufsz;
	uint64_t n;		/* command number, for messages */
};

static uint32_t rnd(struct storm *S, uint32_t n)
{
	return n ? (uint32_t)(fwt_rand(&S->rs) % n) : 0;
}

#define CHECK(S, cond, ...) do {					\
	if (!(cond)) {							\
		if ((S)->fails++ < 20) {				\
			fprintf(stderr, "\n  cmd %" PRIu64 ": ", (S)->n); \
			fprintf(stderr, __VA_ARGS__);			\
		}							\
		CU_FAIL(#cond);						\
	}								\
} while (0)

static uint16_t run(struct storm *S, enum csdfw_queue q,
		    const struct csd_sqe *sqe, size_t len, uint16_t expect,
		    struct csd_cqe *cqe, const char *what)
{
	struct csd_cqe c;
	uint16_t st;

	st = fwt_run(S->fw, q, sqe, S->buf, len, &c);
	S->commands++;
	if (st)
		S->errors++;
	CHECK(S, st == fwt_err(expect), "%s: status 0x%04x want 0x%04x",
	      what, st, fwt_err(expect));
	CHECK(S, c.cid == sqe->cid, "%s: cid", what);
	if (cqe)
		*cqe = c;
	return st;
}

static void gen_vals(struct storm *S, void *dst, size_t nel, int dtype)
{
	size_t i;

	for (i = 0; i < nel; i++)
		fwt_store(dst, i, dtype, fwt_val(&S->rs));
}

/* K row t of (seq, layer) lives at kv + t*row, V row at kv + (max+t)*row */
static uint8_t *krow(struct sctx *c, uint32_t s, uint32_t l, uint32_t t)
{
	return c->kv[s][l] + (size_t)t * c->row;
}

static uint8_t *vrow(struct sctx *c, uint32_t s, uint32_t l, uint32_t t)
{
	return c->kv[s][l] + ((size_t)c->p.max_tokens + t) * c->row;
}

static struct sctx *pick_live(struct storm *S)
{
	uint32_t i, k = rnd(S, NCTX);

	for (i = 0; i < NCTX; i++) {
		struct sctx *c = &S->ctx[(k + i) % NCTX];

		if (c->live)
			return c;
	}
	return NULL;
}

static void drop_ctx(struct sctx *c)
{
	uint32_t s, l, t;

	for (s = 0; s < NSEQ; s++)
		for (l = 0; l < NLAYER; l++)
			free(c->kv[s][l]);
	for (t = 0; t < NTAG; t++)
		free(c->tag[t].q);
	memset(c, 0, sizeof(*c));
}

/* ---- operations --------------------------------------------------------- */

static void op_create(struct storm *S)
{
	static const uint16_t hds[] = { 64, 64, 80, 128 };
	struct csd_ctx_desc p;
	struct csd_sqe s = fwt_io(CSD_IO_CTX_CREATE, 0, sizeof(p));
	struct csd_cqe cqe;
	uint32_t slot, sq, l;
	uint16_t expect = 0;
	int bad = rnd(S, 8) == 0;

	memset(&p, 0, sizeof(p));
	p.layers = (uint16_t)(1 + rnd(S, NLAYER));
	p.kv_heads = (uint16_t)(1 + rnd(S, 2));
	p.q_heads = (uint16_t)(p.kv_heads << rnd(S, 3));
	p.head_dim = hds[rnd(S, 4)];
	p.dtype = (uint8_t)rnd(S, CSD_DTYPE_COUNT);
	p.max_seqs = 1 + rnd(S, NSEQ);
	p.max_tokens = 8 + rnd(S, 57);
	if (bad) {
		switch (rnd(S, 4)) {
		case 0: p.head_dim = 72; break;
		case 1: p.q_heads = (uint16_t)(p.kv_heads * 3 + 1); break;
		case 2: p.dtype = 7; break;
		default: p.max_seqs = 0; break;
		}
		if (p.q_heads % p.kv_heads == 0 && p.head_dim % 16 == 0 &&
		    p.dtype < CSD_DTYPE_COUNT && p.max_seqs)
			bad = 0;
	}
	for (slot = 0; slot < NCTX; slot++)
		if (!S->ctx[slot].live)
			break;
	if (bad)
		expect = VS(UNSUPPORTED);
	else if (slot == NCTX)
		expect = VS(CTX_LIMIT);
	memcpy(S->buf, &p, sizeof(p));
	s.cid = (uint16_t)S->n;
	if (run(S, CSDFW_Q_IO, &s, sizeof(p), expect, &cqe, "create"))
		return;
	CHECK(S, cqe.dw0 == slot + 1, "create: id %u want %u", cqe.dw0,
	      slot + 1);
	{
		struct sctx *c = &S->ctx[slot];

		c->live = true;
		c->id = slot + 1;
		c->p = p;
		c->el = csd_dtype_size(p.dtype);
		c->row = (size_t)p.kv_heads * p.head_dim * c->el;
		for (sq = 0; sq < p.max_seqs; sq++)
			for (l = 0; l < p.layers; l++)
				c->kv[sq][l] = malloc(2 * c->row *
						      p.max_tokens);
	}
}

static void op_destroy(struct storm *S)
{
	struct sctx *c = pick_live(S);
	struct csd_sqe s;

	if (!c)
		return;
	s = fwt_io(CSD_IO_CTX_DESTROY, c->id, 0);
	s.cid = (uint16_t)S->n;
	run(S, CSDFW_Q_IO, &s, 0, 0, NULL, "destroy");
	drop_ctx(c);
}

static void op_append(struct storm *S)
{
	struct sctx *c = pick_live(S);
	uint32_t sq, l, start, ntok, len;
	struct csd_sqe s;
	struct csd_cqe cqe;
	uint16_t expect = 0;
	size_t bytes;

	if (!c)
		return;
	sq = rnd(S, c->p.max_seqs + (rnd(S, 20) == 0));
	l = rnd(S, c->p.layers + (rnd(S, 20) == 0));
	len = sq < c->p.max_seqs && l < c->p.layers ? c->len[sq][l] : 0;
	ntok = 1 + rnd(S, rnd(S, 4) ? 4 : 16);
	start = len;
	if (rnd(S, 10) == 0)
		start = rnd(S, 2) ? len + 1 : (len ? len - 1 : 3);
	bytes = 2 * (size_t)ntok * c->row;
	if (sq >= c->p.max_seqs)
		expect = VS(SEQ_RANGE);
	else if (l >= c->p.layers)
		expect = VS(LAYER_RANGE);
	else if (start != len)
		expect = VS(TOKEN_ORDER);
	else if ((uint64_t)start + ntok > c->p.max_tokens)
		expect = VS(CTX_FULL);
	gen_vals(S, S->buf, bytes / c->el, c->p.dtype);
	s = fwt_io(CSD_IO_KV_APPEND, c->id, bytes);
	s.cid = (uint16_t)S->n;
	s.cdw13 = sq | l << 16;
	s.cdw14 = start;
	s.cdw15 = ntok;
	if (run(S, CSDFW_Q_IO, &s, bytes, expect, &cqe, "append"))
		return;
	CHECK(S, cqe.dw0 == len + ntok, "append: dw0 %u want %u", cqe.dw0,
	      len + ntok);
	memcpy(krow(c, sq, l, start), S->buf, ntok * c->row);
	memcpy(vrow(c, sq, l, start), S->buf + ntok * c->row, ntok * c->row);
	c->len[sq][l] += ntok;
}

static void op_read(struct storm *S)
{
	struct sctx *c = pick_live(S);
	uint32_t sq, l, start, ntok, len;
	struct csd_sqe s;
	struct csd_cqe cqe;
	uint16_t expect = 0;
	size_t bytes;

	if (!c)
		return;
	sq = rnd(S, c->p.max_seqs);
	l = rnd(S, c->p.layers);
	len = c->len[sq][l];
	if (len && rnd(S, 8)) {
		start = rnd(S, len);
		ntok = 1 + rnd(S, len - start);
	} else {
		start = rnd(S, len + 2);
		ntok = 1 + rnd(S, 4);
	}
	if ((uint64_t)start + ntok > len)
		expect = VS(TOKEN_RANGE);
	bytes = 2 * (size_t)ntok * c->row;
	s = fwt_io(CSD_IO_KV_READ, c->id, bytes);
	s.cid = (uint16_t)S->n;
	s.cdw13 = sq | l << 16;
	s.cdw14 = start;
	s.cdw15 = ntok;
	if (run(S, CSDFW_Q_IO, &s, bytes, expect, &cqe, "read"))
		return;
	CHECK(S, cqe.dw0 == ntok, "read: dw0");
	CHECK(S, !memcmp(S->buf, krow(c, sq, l, start), ntok * c->row) &&
	      !memcmp(S->buf + ntok * c->row, vrow(c, sq, l, start),
		      ntok * c->row), "read: contents of ctx %u seq %u layer %u",
	      c->id, sq, l);
}

static void op_reset(struct storm *S)
{
	struct sctx *c = pick_live(S);
	uint32_t sq, l;
	struct csd_sqe s;
	uint16_t expect = 0;

	if (!c)
		return;
	sq = rnd(S, c->p.max_seqs + 1);
	if (sq >= c->p.max_seqs)
		expect = VS(SEQ_RANGE);
	else if (c->seq_busy[sq])
		expect = VS(BUSY);
	s = fwt_io(CSD_IO_SEQ_RESET, c->id, 0);
	s.cid = (uint16_t)S->n;
	s.cdw13 = sq;
	if (run(S, CSDFW_Q_IO, &s, 0, expect, NULL, "reset"))
		return;
	for (l = 0; l < NLAYER; l++)
		c->len[sq][l] = 0;
}

static void op_submit(struct storm *S)
{
	struct sctx *c = pick_live(S);
	uint32_t tag, nseq, l, flags, window, i, j, seqs[MAXNSEQ];
	size_t qn, len, off;
	struct csd_sqe s;
	uint16_t expect = 0;
	bool fused;
	float scale;

	if (!c)
		return;
	tag = rnd(S, NTAG);
	l = rnd(S, c->p.layers);
	nseq = 1 + rnd(S, c->p.max_seqs < MAXNSEQ ? c->p.max_seqs : MAXNSEQ);
	for (i = 0; i < nseq; i++) {
again:
		seqs[i] = rnd(S, c->p.max_seqs);
		for (j = 0; j < i; j++)
			if (seqs[j] == seqs[i])
				goto again;
	}
	flags = rnd(S, 4);
	fused = flags & CSD_ATTN_F_FUSED_KV;
	window = rnd(S, 4) ? 0 : 1 + rnd(S, 20);
	scale = rnd(S, 2) ? 0.0f : 0.05f * (float)(1 + rnd(S, 4));
	qn = (size_t)c->p.q_heads * c->p.head_dim;
	len = nseq * 4 + nseq * qn * 4 + (fused ? 2 * nseq * c->row : 0);
	if (c->tag[tag].busy)
		expect = VS(TAG_BUSY);
	for (i = 0; !expect && i < nseq; i++) {
		if (fused && c->len[seqs[i]][l] + 1 > c->p.max_tokens)
			expect = VS(CTX_FULL);
	}
	for (i = 0; !expect && !fused && i < nseq; i++)
		if (!c->len[seqs[i]][l])
			expect = VS(EMPTY_SEQ);
	memcpy(S->buf, seqs, nseq * 4);
	gen_vals(S, S->buf + nseq * 4, nseq * qn, CSD_DTYPE_F32);
	off = nseq * 4 + nseq * qn * 4;
	if (fused)
		gen_vals(S, S->buf + off, 2 * nseq * c->row / c->el,
			 c->p.dtype);
	s = fwt_attn_sqe(c->id, tag, l, nseq, flags, scale, window, len);
	s.cid = (uint16_t)S->n;
	if (run(S, CSDFW_Q_IO, &s, len, expect, NULL, "submit"))
		return;
	{
		struct stag *t = &c->tag[tag];

		t->busy = true;
		t->nseq = nseq;
		t->flags = flags;
		t->layer = l;
		t->tokens = 0;
		t->scale = scale > 0 ? scale : 1.0f / sqrtf(c->p.head_dim);
		free(t->q);
		t->q = malloc(nseq * qn * 4);
		memcpy(t->q, S->buf + nseq * 4, nseq * qn * 4);
		for (i = 0; i < nseq; i++) {
			uint32_t sq = seqs[i];

			if (fused) {
				uint32_t n = c->len[sq][l];

				memcpy(krow(c, sq, l, n),
				       S->buf + off + i * c->row, c->row);
				memcpy(vrow(c, sq, l, n),
				       S->buf + off + (nseq + i) * c->row,
				       c->row);
				c->len[sq][l]++;
			}
			t->seqs[i] = sq;
			t->hi[i] = c->len[sq][l];
			t->lo[i] = window && t->hi[i] > window ?
				   t->hi[i] - window : 0;
			t->tokens += t->hi[i] - t->lo[i];
			c->seq_busy[sq]++;
		}
	}
}

static void check_output(struct storm *S, struct sctx *c, struct stag *t)
{
	uint32_t qh = c->p.q_heads, kvh = c->p.kv_heads, hd = c->p.head_dim;
	size_t qn = (size_t)qh * hd, rowel = (size_t)kvh * hd;
	double *ref = malloc(qn * sizeof(double)), lse[64 * 4];
	float *k, *v;
	uint32_t i, tok;
	size_t e;
	double err = 0, lerr = 0;

	k = malloc(t->hi[0] * rowel * 4 + 4);
	v = NULL;
	free(k);
	for (i = 0; i < t->nseq; i++) {
		uint32_t sq = t->seqs[i];
		const float *o = (const float *)(void *)S->buf + i * qn;
		const float *ol = (const float *)(void *)S->buf +
				  t->nseq * qn + (size_t)i * qh;

		k = malloc((size_t)t->hi[i] * rowel * 4);
		v = malloc((size_t)t->hi[i] * rowel * 4);
		for (tok = 0; tok < t->hi[i]; tok++) {
			for (e = 0; e < rowel; e++) {
				k[tok * rowel + e] = fwt_load(
					krow(c, sq, t->layer, tok), e,
					c->p.dtype);
				v[tok * rowel + e] = fwt_load(
					vrow(c, sq, t->layer, tok), e,
					c->p.dtype);
			}
		}
		fwt_ref_attn(k, v, t->lo[i], t->hi[i], qh, kvh, hd,
			     t->q + i * qn, t->scale, ref, lse);
		for (e = 0; e < qn; e++)
			err = fmax(err, fabs(o[e] - ref[e]));
		if (t->flags & CSD_ATTN_F_LSE)
			for (e = 0; e < qh; e++)
				lerr = fmax(lerr, fabs(ol[e] - lse[e]) /
						  fmax(1.0, fabs(lse[e])));
		free(k);
		free(v);
	}
	CHECK(S, err < 2e-3 && lerr < 1e-4,
	      "attention ctx %u: err %g lse err %g", c->id, err, lerr);
	free(ref);
}

static void op_attn_read(struct storm *S)
{
	struct sctx *c = pick_live(S);
	uint32_t tag, i;
	struct stag *t;
	struct csd_sqe s;
	struct csd_cqe cqe;
	uint16_t expect = 0;
	size_t len;

	if (!c)
		return;
	tag = rnd(S, NTAG);
	t = &c->tag[tag];
	if (!t->busy)
		tag = rnd(S, NTAG);	/* try to find a busy one */
	t = &c->tag[tag];
	if (t->busy) {
		len = (size_t)t->nseq * c->p.q_heads * c->p.head_dim * 4;
		if (t->flags & CSD_ATTN_F_LSE)
			len += (size_t)t->nseq * c->p.q_heads * 4;
	} else {
		len = (size_t)(1 + rnd(S, 2)) * c->p.q_heads * c->p.head_dim *
		      4;
	}
	if (t->busy && rnd(S, 12) == 0)
		len += 4 * (1 + rnd(S, 8));
	if (!t->busy)
		expect = VS(TAG_INVALID);
	else if (len != (size_t)t->nseq * c->p.q_heads * c->p.head_dim * 4 +
		 ((t->flags & CSD_ATTN_F_LSE) ?
		  (size_t)t->nseq * c->p.q_heads * 4 : 0))
		expect = VS(LENGTH);
	s = fwt_io(CSD_IO_ATTN_READ, c->id, len);
	s.cid = (uint16_t)S->n;
	s.cdw13 = tag;
	if (run(S, CSDFW_Q_IO, &s, len, expect, &cqe, "attn-read"))
		return;
	CHECK(S, cqe.dw0 == t->tokens, "attn-read: dw0 %u want %" PRIu64,
	      cqe.dw0, t->tokens);
	if (rnd(S, 4) == 0)
		check_output(S, c, t);
	for (i = 0; i < t->nseq; i++)
		c->seq_busy[t->seqs[i]]--;
	t->busy = false;
}

static void check_query(struct storm *S, struct sctx *c)
{
	size_t len = 64 + 8 * (size_t)c->p.max_seqs;
	struct csd_sqe s = fwt_io(CSD_IO_CTX_QUERY, c->id, len);
	const struct csd_ctx_info *info = (void *)S->buf;
	const struct csd_seq_info *si = (void *)(S->buf + 64);
	struct csd_cqe cqe;
	uint32_t sq, l, inflight = 0, used = 0;
	uint64_t tokens = 0;

	s.cid = (uint16_t)S->n;
	if (run(S, CSDFW_Q_IO, &s, len, 0, &cqe, "query"))
		return;
	CHECK(S, cqe.dw0 == c->p.max_seqs, "query: dw0");
	for (l = 0; l < NTAG; l++)
		inflight += c->tag[l].busy;
	CHECK(S, info->ctx_id == c->id && info->p.layers == c->p.layers &&
	      info->p.kv_heads == c->p.kv_heads &&
	      info->p.q_heads == c->p.q_heads &&
	      info->p.head_dim == c->p.head_dim &&
	      info->p.dtype == c->p.dtype &&
	      info->p.max_seqs == c->p.max_seqs &&
	      info->p.max_tokens == c->p.max_tokens, "query: params");
	CHECK(S, info->inflight == inflight, "query: inflight %u want %u",
	      info->inflight, inflight);
	for (sq = 0; sq < c->p.max_seqs; sq++) {
		uint32_t mn = UINT32_MAX, mx = 0;

		for (l = 0; l < c->p.layers; l++) {
			mn = c->len[sq][l] < mn ? c->len[sq][l] : mn;
			mx = c->len[sq][l] > mx ? c->len[sq][l] : mx;
			tokens += c->len[sq][l];
		}
		used += mx > 0;
		CHECK(S, si[sq].max_len == mx && si[sq].min_len == mn,
		      "query: ctx %u seq %u len %u/%u want %u/%u", c->id, sq,
		      si[sq].min_len, si[sq].max_len, mn, mx);
	}
	CHECK(S, info->tokens == tokens, "query: tokens");
	CHECK(S, info->seqs_used == used, "query: seqs_used");
}

static void op_query(struct storm *S)
{
	struct sctx *c = pick_live(S);

	if (c)
		check_query(S, c);
}

/* Commands that are wrong before any context state is looked at. */
static void op_garbage(struct storm *S)
{
	static const uint8_t bad_io[] = { 0x01, 0x02, 0x06, 0x80, 0x82, 0x83,
					  0x87, 0x8b, 0x8c, 0x8d, 0x8f, 0x90,
					  0xc0, 0xff };
	static const uint8_t good_io[] = { 0x81, 0x84, 0x85, 0x86, 0x88,
					   0x89, 0x8a, 0x8e };
	struct csd_sqe s;
	uint16_t expect;
	size_t len = 0;
	uint32_t k = rnd(S, 5);

	memset(&s, 0, sizeof(s));
	s.cid = (uint16_t)S->n;
	s.nsid = 1;
	if (k == 0) {
		s.opcode = bad_io[rnd(S, sizeof(bad_io))];
		s.cdw10 = (uint32_t)fwt_rand(&S->rs);
		expect = ST_IOPC;
	} else if (k == 1) {
		s.opcode = good_io[rnd(S, sizeof(good_io))];
		s.flags = (uint8_t)(1 + rnd(S, 255));
		expect = ST_IF;
	} else if (k == 2) {
		s.opcode = good_io[rnd(S, sizeof(good_io))];
		s.mptr = 1 + fwt_rand(&S->rs) % 1000;
		expect = ST_IF;
	} else if (k == 3) {
		s.opcode = CSD_IO_KV_READ;
		s.nsid = rnd(S, 2) ? 0 : 2 + rnd(S, 100);
		s.cdw15 = 1;
		expect = ST_INS;
	} else {
		/* a context that does not exist, fields otherwise fine */
		s.opcode = CSD_IO_CTX_QUERY;
		s.cdw12 = NCTX + 1 + rnd(S, 1000);
		len = 64;
		s.cdw10 = 16;
		expect = VS(CTX_INVALID);
	}
	run(S, CSDFW_Q_IO, &s, len, expect, NULL, "garbage");
}

static void check_all(struct storm *S)
{
	struct csd_log_stats st;
	struct csd_sqe s;
	uint32_t i, live = 0;
	uint8_t logb[64 + 64 * NCTX];
	const struct csd_log_ctx_hdr *hdr = (void *)logb;
	const struct csd_log_ctx_entry *e = (void *)(logb + 64);

	for (i = 0; i < NCTX; i++) {
		if (!S->ctx[i].live)
			continue;
		check_query(S, &S->ctx[i]);
		live++;
	}
	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_GET_LOG_PAGE;
	s.cdw10 = CSD_LOG_CONTEXTS | (uint32_t)(sizeof(logb) / 4 - 1) << 16;
	run(S, CSDFW_Q_ADMIN, &s, sizeof(logb), 0, NULL, "ctx log");
	memcpy(logb, S->buf, sizeof(logb));
	CHECK(S, hdr->count == live, "ctx log: count %u want %u", hdr->count,
	      live);
	for (i = 0; i < hdr->count && i < NCTX; i++)
		CHECK(S, S->ctx[e[i].ctx_id - 1].live &&
		      (i == 0 || e[i].ctx_id > e[i - 1].ctx_id),
		      "ctx log: entry %u", i);
	s.cdw10 = CSD_LOG_STATS | (uint32_t)(sizeof(st) / 4 - 1) << 16;
	run(S, CSDFW_Q_ADMIN, &s, sizeof(st), 0, NULL, "stats log");
	memcpy(&st, S->buf, sizeof(st));
	/* the log read itself is counted after the snapshot */
	CHECK(S, st.commands == S->commands - 1, "stats: commands %" PRIu64
	      " want %" PRIu64, st.commands, S->commands - 1);
	CHECK(S, st.errors == S->errors, "stats: errors");
	CHECK(S, st.contexts == live, "stats: contexts");
	CHECK(S, st.blocks_free <= st.blocks_total, "stats: blocks");
}

static void test_storm(void)
{
	struct storm *S = calloc(1, sizeof(*S));
	struct csdfw_config cfg;
	const char *e;
	uint64_t seed, ncmd = 100000, i;
	uint32_t k;

	e = getenv("CSD_STORM_SEED");
	seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	e = getenv("CSD_STORM_COMMANDS");
	if (e)
		ncmd = strtoull(e, NULL, 0);
	printf("\n  storm: seed %" PRIu64 ", %" PRIu64
	       " commands (CSD_STORM_SEED=%" PRIu64 " to repeat)\n", seed, ncmd,
	       seed);
	S->rs = seed * 2654435761u + 0x9e3779b97f4a7c15ull;
	S->bufsz = 1u << 20;
	S->buf = malloc(S->bufsz);
	csdfw_config_default(&cfg);
	CU_ASSERT_EQUAL_FATAL(csdfw_config_parse(&cfg,
		"profile=fast,capacity=512M,threads=2,tags=8,attn_seqs=4,"
		"contexts=4,seqs=8,tokens=4096,xfer=1M", NULL, 0), 0);
	CU_ASSERT_EQUAL_FATAL(csdfw_create(&cfg, &S->fw), 0);

	for (i = 0; i < ncmd; i++) {
		S->n = i;
		k = rnd(S, 100);
		if (k < 3)
			op_create(S);
		else if (k < 4)
			op_destroy(S);
		else if (k < 30)
			op_append(S);
		else if (k < 45)
			op_read(S);
		else if (k < 50)
			op_reset(S);
		else if (k < 66)
			op_submit(S);
		else if (k < 82)
			op_attn_read(S);
		else if (k < 87)
			op_query(S);
		else
			op_garbage(S);
		if (i % 512 == 511)
			check_all(S);
		if (S->fails > 50)
			break;
	}
	check_all(S);
	/* drain: read every tag, destroy every context, space comes back */
	for (k = 0; k < NCTX; k++) {
		struct sctx *c = &S->ctx[k];
		struct csd_sqe s;

		if (!c->live)
			continue;
		s = fwt_io(CSD_IO_CTX_DESTROY, c->id, 0);
		run(S, CSDFW_Q_IO, &s, 0, 0, NULL, "final destroy");
		drop_ctx(c);
	}
	{
		struct csd_log_stats st;
		struct csd_sqe s;

		memset(&s, 0, sizeof(s));
		s.opcode = CSD_ADM_GET_LOG_PAGE;
		s.cdw10 = CSD_LOG_STATS | (uint32_t)(sizeof(st) / 4 - 1) << 16;
		run(S, CSDFW_Q_ADMIN, &s, sizeof(st), 0, NULL, "stats");
		memcpy(&st, S->buf, sizeof(st));
		CU_ASSERT_EQUAL(st.blocks_free, st.blocks_total);
		CU_ASSERT_EQUAL(st.kv_bytes_stored, 0);
		CU_ASSERT_EQUAL(st.flash_bytes_used, 0);
		CU_ASSERT_EQUAL(st.contexts, 0);
		printf("  storm: %" PRIu64 " commands, %" PRIu64 " errors, %"
		       PRIu64 " attention calls, %" PRIu64 " mismatches\n",
		       S->commands, S->errors, st.attn_calls, S->fails);
	}
	CU_ASSERT_EQUAL(S->fails, 0);
	csdfw_destroy(S->fw);
	free(S->buf);
	free(S);
}

static CU_TestInfo storm_tests[] = {
	{ "random commands vs shadow model", test_storm },
	CU_TEST_INFO_NULL
};

static const struct cu_suite suites[] = {
	{ "storm", NULL, NULL, storm_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
