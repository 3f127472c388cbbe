// SPDX-License-Identifier: MIT
/*
 * group.c - device groups: several drives used as one struct csd_dev.
 *
 * A group is a struct csd_dev whose ->grp is set; its contexts are struct
 * csd_ctx with ->grp set.  The public functions of dev.c, ctx.c and attn.c
 * hand such handles to the csd_group_*() functions here, which fan the call
 * out to the members through the public API (so members may use any
 * transport, and may themselves be groups) and gather the results.
 *
 * CSD_SPLIT_HEADS: a context has one sub-context per member, each with a
 *   contiguous share of the KV heads and the query heads of those heads'
 *   GQA groups (uneven shares allowed; with fewer KV heads than members
 *   only the first kv_heads members are used).  KV rows are split by head;
 *   every attention call goes to all members at once with their heads' q
 *   (and fused k/v) and the outputs (and lse) are gathered.  Per-head math
 *   is the drive's own, so results equal one drive's.  Appends go to the
 *   members one after the other; each member's (sequence, layer) length is
 *   tracked on the host so that an append refused by a member after others
 *   stored it can be retried (hs_append) and attention on a sequence whose
 *   members differ is refused (hs_check).
 *
 * CSD_SPLIT_TOKENS: every member holds all heads but only a share of each
 *   sequence's tokens: stripes of chunk_tokens tokens, round robin over the
 *   members (global token t is on member (t / C) % n).  The group tracks
 *   each (sequence, layer) length on the host.  Attention runs on every
 *   member holding tokens of a sequence, with lse, and the partial results
 *   are merged per (sequence, q head) by log-sum-exp.  A global window maps
 *   to a suffix of each member's tokens; sequences needing different
 *   per-member windows (or only some needing the fused append) are sent as
 *   separate calls to that member.  A fused k/v goes to the member owning
 *   the new token's position.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csd_internal.h"

#define GROUP_MAX_MEMBERS	256
#define GROUP_DEF_CHUNK		256	/* tokens per stripe (16 pages of 16) */
#define GROUP_KV_BYTES		(1u << 20)	/* gather buffer per member */

struct group_member {
	struct csd_dev *dev;
};

struct csd_group {
	unsigned int n;
	struct group_member *mem;
	uint32_t split;		/* enum csd_group_split */
	uint32_t chunk;		/* CSD_SPLIT_TOKENS */
};

/* A member's share of a context. */
struct group_share {
	struct csd_ctx *ctx;	/* the sub-context */
	uint32_t h0, nh;	/* first KV head, KV heads (head split) */
};

struct csd_group_ctx {
	unsigned int n;		/* members used (sub-contexts) */
	struct group_share *sh;	/* [n] */
	uint32_t split, chunk;
	uint32_t g;		/* q heads per KV head */
	uint32_t *len;		/* [max_seqs][layers] lengths (token split) */
	uint32_t *mlen;		/* head split, n > 1: [n][max_seqs][layers]
				 * each member's lengths (see hs_append) */
};

/* One call to one member. */
struct group_sub {
	unsigned int m;		/* member */
	struct csd_attn *op;
	struct csd_attn_req r;
	uint32_t *idx;		/* [r.nseq] positions in the caller's request */
	int direct;		/* head split, nseq 1: caller's buffers */
};

/* Starts with the context pointer like struct csd_attn: csd_attn_wait()
 * tells the two apart by ctx->grp (see csd_internal.h). */
struct csd_group_attn {
	struct csd_ctx *ctx;
	struct csd_attn_req req;	/* the caller's request */
	unsigned int nsub;
	struct group_sub *sub;
	void *mem;			/* scratch of all subs */
};

static void group_dummy_close(struct csd_dev *dev)
{
	(void)dev;
}

static int group_dummy_open(struct csd_dev *dev, const char *opts)
{
	(void)dev;
	(void)opts;
	return -EOPNOTSUPP;
}

/* Raw commands have no single drive to go to. */
static int group_dummy_submit(struct csd_dev *dev, int admin,
			      const struct csd_sqe *sqe,
			      const struct csd_seg *seg, unsigned int nseg,
			      csd_cpl_fn done, void *arg)
{
	(void)dev;
	(void)admin;
	(void)sqe;
	(void)seg;
	(void)nseg;
	(void)done;
	(void)arg;
	return -EOPNOTSUPP;
}

static const struct csd_transport_ops group_ops = {
	.name = "group",
	.open = group_dummy_open,
	.close = group_dummy_close,
	.submit = group_dummy_submit,
};

static uint32_t umin(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static uint32_t umax(uint32_t a, uint32_t b)
{
	return a > b ? a : b;
}

/* ---- device strings -------------------------------------------------- */

/* Length of the transport prefix at @s, 0 if none. */
static size_t tp_prefix(const char *s)
{
	if (!strncmp(s, "embedded:", 9))
		return 9;
	if (!strncmp(s, "embedded", 8) && (s[8] == 0 || s[8] == ','))
		return 8;
	if (!strncmp(s, "shm:", 4))
		return 4;
	if (!strncmp(s, "/dev/", 5))
		return 5;
	return 0;
}

static const char *spec_or_env(const char *spec)
{
	const char *env;

	if (spec && *spec)
		return spec;
	env = getenv("CSD_DEVICE");
	return env && *env ? env : "embedded:";
}

/* Number of group elements of @s: split at commas followed by a transport
 * prefix; 0 when @s does not start with one. */
static unsigned int spec_count(const char *s)
{
	unsigned int n = 1;

	if (!tp_prefix(s))
		return 0;
	for (; *s; s++)
		if (*s == ',' && tp_prefix(s + 1))
			n++;
	return n;
}

/* "group:OPTS,MEMBER,...": group options first (any number of members). */
#define GROUP_PREFIX		"group:"
#define GROUP_PREFIX_LEN	6

int csd_group_is_spec(const char *spec)
{
	spec = spec_or_env(spec);
	return !strncmp(spec, GROUP_PREFIX, GROUP_PREFIX_LEN) ||
	       spec_count(spec) > 1;
}

/* A decimal number of @n bytes at @s in [1, max]; -1 if it is not one. */
static long parse_count(const char *s, size_t n, unsigned long max)
{
	unsigned long v = 0;
	size_t i;

	if (!n)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > max)
			return -1;
	}
	return v ? (long)v : -1;
}

/*
 * The options of "group:OPTS,MEMBER,...": @s, @n bytes (empty: the
 * defaults), is a comma-separated list of
 *   split=heads|tokens   CSD_SPLIT_HEADS (default) / CSD_SPLIT_TOKENS
 *   chunk=N              token split stripe, 1 .. 2^24 tokens (default 256)
 * A key given twice: the last one counts.  Anything else, an empty
 * option, or chunk= without split=tokens: -EINVAL.
 */
static int parse_group_opts(const char *s, size_t n,
			    struct csd_group_opts *o)
{
	bool chunk = false;

	*o = (struct csd_group_opts){ .split = CSD_SPLIT_HEADS };
	while (n) {
		const char *comma = memchr(s, ',', n);
		size_t len = comma ? (size_t)(comma - s) : n;
		long v = -1;

		if (len > 6 && !strncmp(s, "chunk=", 6))
			v = parse_count(s + 6, len - 6, 1ul << 24);
		if (len == 11 && !strncmp(s, "split=heads", 11)) {
			o->split = CSD_SPLIT_HEADS;
		} else if (len == 12 && !strncmp(s, "split=tokens", 12)) {
			o->split = CSD_SPLIT_TOKENS;
		} else if (v > 0) {
			o->chunk_tokens = (uint32_t)v;
			chunk = true;
		} else {
			csd_debug("group: bad option \"%.*s\" (split=heads|"
				  "tokens, chunk=1..16777216)\n", (int)len, s);
			return -EINVAL;
		}
		if (!comma)
			break;
		n -= len + 1;
		s = comma + 1;
		if (!n) {
			csd_debug("group: empty option\n");
			return -EINVAL;
		}
	}
	if (chunk && o->split != CSD_SPLIT_TOKENS) {
		csd_debug("group: chunk= needs split=tokens\n");
		return -EINVAL;
	}
	return 0;
}

int csd_group_open_spec(const char *spec, struct csd_dev **devp)
{
	struct csd_group_opts o = { .split = CSD_SPLIT_HEADS };
	const char **specs = NULL;
	char *buf = NULL, *p;
	unsigned int n, i = 0;
	int rc = -ENOMEM;

	if (!devp)
		return -EINVAL;
	*devp = NULL;
	spec = spec_or_env(spec);
	if (!strncmp(spec, GROUP_PREFIX, GROUP_PREFIX_LEN)) {
		/* options up to the first comma before a member ("group:A"
		 * and "group:,A" have none) */
		const char *opts = spec + GROUP_PREFIX_LEN, *m = opts;

		while (*m && !tp_prefix(m)) {
			m = strchr(m, ',');
			if (!m)
				break;
			m++;
		}
		if (!m || !*m) {
			csd_debug("\"%s\": a group without members\n", spec);
			return -EINVAL;
		}
		rc = parse_group_opts(opts, m > opts ? (size_t)(m - 1 - opts)
						     : 0, &o);
		if (rc)
			return rc;
		spec = m;
		rc = -ENOMEM;
	}
	n = spec_count(spec);
	if (n < 1)
		return -EINVAL;
	buf = strdup(spec);
	specs = calloc(n, sizeof(*specs));
	if (!buf || !specs)
		goto out;
	specs[i++] = buf;
	for (p = buf; *p; p++) {
		if (*p == ',' && tp_prefix(p + 1)) {
			*p = 0;
			specs[i++] = p + 1;
		}
	}
	rc = csd_group_open(specs, n, &o, devp);
out:
	free(specs);
	free(buf);
	return rc;
}

/* ---- open / close ---------------------------------------------------- */

static void group_info(struct csd_dev *dev)
{
	struct csd_group *grp = dev->grp;
	struct csd_dev_info *in = &dev->info;
	unsigned int i;

	*in = grp->mem[0].dev->info;
	snprintf(in->model, sizeof(in->model), "group of %u: %.28s", grp->n,
		 grp->mem[0].dev->info.model);
	snprintf(in->transport, sizeof(in->transport), "group");
	for (i = 1; i < grp->n; i++) {
		const struct csd_dev_info *m = &grp->mem[i].dev->info;

		in->spec_version = umin(in->spec_version, m->spec_version);
		in->dtypes &= m->dtypes;
		in->features &= m->features;
		in->min_head_dim = umax(in->min_head_dim, m->min_head_dim);
		in->max_head_dim = umin(in->max_head_dim, m->max_head_dim);
		in->head_dim_align = umax(in->head_dim_align,
					  m->head_dim_align);
		in->max_layers = umin(in->max_layers, m->max_layers);
		in->max_kv_heads = umin(in->max_kv_heads, m->max_kv_heads);
		in->max_q_heads = umin(in->max_q_heads, m->max_q_heads);
		in->max_contexts = umin(in->max_contexts, m->max_contexts);
		in->max_seqs = umin(in->max_seqs, m->max_seqs);
		in->max_tokens = umin(in->max_tokens, m->max_tokens);
		in->max_tags = umin(in->max_tags, m->max_tags);
		in->max_attn_seqs = umin(in->max_attn_seqs, m->max_attn_seqs);
		in->max_xfer = umin(in->max_xfer, m->max_xfer);
		in->channels += m->channels;
		in->threads += m->threads;
		in->capacity += m->capacity;
		in->link_mbps += m->link_mbps;
		in->chan_mbps = umin(in->chan_mbps, m->chan_mbps);
		in->read_lat_ns = umax(in->read_lat_ns, m->read_lat_ns);
		in->prog_lat_ns = umax(in->prog_lat_ns, m->prog_lat_ns);
	}
	if (grp->split == CSD_SPLIT_HEADS) {
		/* head counts add up over the members */
		uint64_t kv = (uint64_t)in->max_kv_heads * grp->n;
		uint64_t q = (uint64_t)in->max_q_heads * grp->n;

		in->max_kv_heads = (uint32_t)(kv > UINT16_MAX ? UINT16_MAX : kv);
		in->max_q_heads = (uint32_t)(q > UINT16_MAX ? UINT16_MAX : q);
	} else {
		/* the longest sequence whose every member share fits */
		uint32_t c = grp->chunk, mt = in->max_tokens;
		uint64_t l = (uint64_t)(mt / c) * c * grp->n + mt % c;

		in->max_tokens = (uint32_t)(l > UINT32_MAX ? UINT32_MAX : l);
	}
}

static void group_free(struct csd_dev *dev)
{
	struct csd_group *grp = dev->grp;
	unsigned int i;

	for (i = 0; i < grp->n; i++)
		csd_dev_close(grp->mem[i].dev);
	free(grp->mem);
	free(grp);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

CSD_EXPORT int csd_group_open(const char *const *specs, unsigned int n,
			      const struct csd_group_opts *opts,
			      struct csd_dev **devp)
{
	struct csd_group *grp;
	struct csd_dev *dev;
	unsigned int i;
	int rc = -EINVAL;

	if (!devp)
		return -EINVAL;
	*devp = NULL;
	if (!specs || n < 1 || n > GROUP_MAX_MEMBERS)
		return -EINVAL;
	if (opts && (opts->split > CSD_SPLIT_TOKENS ||
		     (opts->split == CSD_SPLIT_TOKENS &&
		      opts->chunk_tokens > (1u << 24))))
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	grp = calloc(1, sizeof(*grp));
	if (!dev || !grp)
		goto err_nomem;
	grp->mem = calloc(n, sizeof(*grp->mem));
	if (!grp->mem)
		goto err_nomem;
	if (pthread_mutex_init(&dev->lock, NULL))
		goto err_nomem;
	grp->split = opts ? opts->split : CSD_SPLIT_HEADS;
	grp->chunk = opts && opts->chunk_tokens ? opts->chunk_tokens :
		     GROUP_DEF_CHUNK;
	dev->ops = &group_ops;
	dev->grp = grp;
	atomic_init(&dev->cid, 0);
	for (i = 0; i < n; i++) {
		rc = specs[i] ? csd_dev_open(specs[i], &grp->mem[i].dev) :
				-EINVAL;
		if (rc) {
			csd_debug("group: member %u \"%s\": %d\n", i,
				  specs[i] ? specs[i] : "(null)", rc);
			break;
		}
		grp->n = i + 1;
	}
	if (grp->n < n) {
		group_free(dev);	/* closes the members opened */
		return rc;
	}
	group_info(dev);
	*devp = dev;
	return 0;

err_nomem:
	if (grp)
		free(grp->mem);
	free(grp);
	free(dev);
	return -ENOMEM;
}

CSD_EXPORT unsigned int csd_dev_get_members(const struct csd_dev *dev)
{
	if (!dev)
		return 0;
	return dev->grp ? dev->grp->n : 1;
}

void csd_group_close(struct csd_dev *dev)
{
	csd_dev_destroy_contexts(dev);
	group_free(dev);
}

/* ---- device-wide calls ----------------------------------------------- */

int csd_group_get_stats(struct csd_dev *dev, struct csd_dev_stats *st)
{
	struct csd_group *grp = dev->grp;
	struct csd_dev_stats s;
	unsigned int i;
	int rc;

	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	for (i = 0; i < grp->n; i++) {
		rc = csd_dev_get_stats(grp->mem[i].dev, &s);
		if (rc)
			return rc;
		st->kv_bytes_stored += s.kv_bytes_stored;
		st->flash_bytes_used += s.flash_bytes_used;
		st->flash_bytes_read += s.flash_bytes_read;
		st->flash_bytes_written += s.flash_bytes_written;
		st->host_bytes_in += s.host_bytes_in;
		st->host_bytes_out += s.host_bytes_out;
		st->attn_calls += s.attn_calls;
		st->attn_seqs += s.attn_seqs;
		st->attn_tokens += s.attn_tokens;
		st->commands += s.commands;
		st->errors += s.errors;
		st->modeled_ns += s.modeled_ns;
		st->busy_ns += s.busy_ns;
		st->contexts += s.contexts;
		st->blocks_free += s.blocks_free;
		st->blocks_total += s.blocks_total;
	}
	return 0;
}

int csd_group_set_pacing(struct csd_dev *dev, int on)
{
	struct csd_group *grp = dev->grp;
	unsigned int i;
	int rc, first = 0;

	for (i = 0; i < grp->n; i++) {
		rc = csd_dev_set_pacing(grp->mem[i].dev, on);
		if (rc && !first)
			first = rc;
	}
	return first;
}

int csd_group_flush(struct csd_dev *dev)
{
	struct csd_group *grp = dev->grp;
	unsigned int i;
	int rc, first = 0;

	for (i = 0; i < grp->n; i++) {
		rc = csd_dev_flush(grp->mem[i].dev);
		if (rc && !first)
			first = rc;
	}
	return first;
}

/* Every member is reset, whatever the others return: the first error. */
int csd_group_reset(struct csd_dev *dev)
{
	struct csd_group *grp = dev->grp;
	unsigned int i;
	int rc, first = 0;

	for (i = 0; i < grp->n; i++) {
		rc = csd_dev_reset(grp->mem[i].dev);
		if (rc && !first)
			first = rc;
	}
	return first;
}

int csd_group_list_ctx(struct csd_dev *dev, struct csd_ctx_entry *ents,
		       size_t max)
{
	struct csd_ctx_usage u;
	struct csd_ctx *ctx;
	size_t n = 0;

	if (max && !ents)
		return -EINVAL;
	pthread_mutex_lock(&dev->lock);
	for (ctx = dev->ctx_list; ctx; ctx = ctx->next, n++) {
		if (n >= max)
			continue;
		memset(&u, 0, sizeof(u));
		csd_ctx_query(ctx, &u, NULL, 0);
		ents[n] = (struct csd_ctx_entry){
			.id = ctx->id,
			.layers = ctx->p.layers,
			.kv_heads = ctx->p.kv_heads,
			.q_heads = ctx->p.q_heads,
			.head_dim = ctx->p.head_dim,
			.dtype = ctx->p.dtype,
			.max_seqs = ctx->p.max_seqs,
			.max_tokens = ctx->p.max_tokens,
			.seqs_used = u.seqs_used,
			.bytes_used = u.bytes_used,
			.tokens = u.tokens,
		};
	}
	pthread_mutex_unlock(&dev->lock);
	return (int)n;
}

/* ---- contexts -------------------------------------------------------- */

static void gctx_free(struct csd_ctx *ctx)
{
	struct csd_group_ctx *gc = ctx->grp;

	if (gc) {
		free(gc->sh);
		free(gc->len);
		free(gc->mlen);
		free(gc);
	}
	pthread_cond_destroy(&ctx->cond);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

static void gctx_put(struct csd_ctx *ctx)
{
	uint32_t refs;

	pthread_mutex_lock(&ctx->lock);
	refs = --ctx->refs;
	pthread_mutex_unlock(&ctx->lock);
	if (!refs)
		gctx_free(ctx);
}

/* Tokens of global positions [0, t) on member @i of @n, stripes of @c. */
static uint32_t tok_local(uint32_t t, uint32_t i, uint32_t n, uint32_t c)
{
	uint64_t round = (uint64_t)c * n, rem = t % round;
	uint64_t l = (uint64_t)(t / round) * c;

	if (rem > (uint64_t)i * c)
		l += umin((uint32_t)(rem - (uint64_t)i * c), c);
	return (uint32_t)l;
}

/* Head split, n > 1: member @m's length of (@seq, @layer), as tracked on
 * the host (under ctx->lock). */
static uint32_t *hs_mlen(struct csd_ctx *ctx, unsigned int m, uint32_t seq,
			 uint32_t layer)
{
	struct csd_group_ctx *gc = ctx->grp;

	return &gc->mlen[((size_t)m * ctx->p.max_seqs + seq) * ctx->p.layers +
			 layer];
}

int csd_group_ctx_create(struct csd_dev *dev, const struct csd_ctx_params *p,
			 struct csd_ctx **ctxp)
{
	struct csd_group *grp = dev->grp;
	struct csd_group_ctx *gc;
	struct csd_ctx_params sp;
	struct csd_ctx *ctx;
	unsigned int i, n;
	int rc = -ENOMEM;

	if (!p || !ctxp)
		return -EINVAL;
	*ctxp = NULL;
	if (p->layers > UINT16_MAX || p->kv_heads > UINT16_MAX ||
	    p->q_heads > UINT16_MAX || p->head_dim > UINT16_MAX ||
	    (unsigned int)p->dtype > UINT8_MAX)
		return -EOPNOTSUPP;
	if (!p->kv_heads || !p->q_heads || p->q_heads % p->kv_heads ||
	    !p->layers || !p->max_seqs || !p->max_tokens)
		return -EOPNOTSUPP;	/* the drive's UNSUPPORTED (shape) */
	n = grp->split == CSD_SPLIT_HEADS ? umin(grp->n, p->kv_heads) : grp->n;

	ctx = calloc(1, sizeof(*ctx));
	gc = calloc(1, sizeof(*gc));
	if (!ctx || !gc) {
		free(ctx);
		free(gc);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&ctx->lock, NULL)) {
		free(ctx);
		free(gc);
		return -ENOMEM;
	}
	if (pthread_cond_init(&ctx->cond, NULL)) {
		pthread_mutex_destroy(&ctx->lock);
		free(ctx);
		free(gc);
		return -ENOMEM;
	}
	ctx->grp = gc;
	ctx->dev = dev;
	ctx->p = *p;
	ctx->dsize = p->dtype == CSD_KV_F32 ? 4 : 2;
	ctx->row_bytes = (size_t)p->kv_heads * p->head_dim * ctx->dsize;
	ctx->refs = 1;
	gc->split = grp->split;
	gc->chunk = grp->chunk;
	gc->g = p->q_heads / p->kv_heads;
	gc->sh = calloc(n, sizeof(*gc->sh));
	if (!gc->sh)
		goto err;
	if (gc->split == CSD_SPLIT_TOKENS) {
		gc->len = calloc((size_t)p->max_seqs * p->layers,
				 sizeof(*gc->len));
		if (!gc->len)
			goto err;
	}
	if (gc->split == CSD_SPLIT_HEADS && n > 1) {
		size_t cnt = (size_t)p->max_seqs * p->layers;

		if (cnt > SIZE_MAX / sizeof(*gc->mlen) / n)
			goto err;
		gc->mlen = calloc(cnt * n, sizeof(*gc->mlen));
		if (!gc->mlen)
			goto err;
	}
	for (i = 0; i < n; i++) {
		sp = *p;
		if (gc->split == CSD_SPLIT_HEADS) {
			gc->sh[i].nh = p->kv_heads / n + (i < p->kv_heads % n);
			gc->sh[i].h0 = i ? gc->sh[i - 1].h0 + gc->sh[i - 1].nh : 0;
			sp.kv_heads = gc->sh[i].nh;
			sp.q_heads = gc->sh[i].nh * gc->g;
		} else {
			gc->sh[i].nh = p->kv_heads;
			sp.max_tokens = umax(1, tok_local(p->max_tokens, i, n,
							  gc->chunk));
		}
		rc = csd_ctx_create(grp->mem[i].dev, &sp, &gc->sh[i].ctx);
		if (rc)
			goto err;
		gc->n = i + 1;
	}
	ctx->id = gc->sh[0].ctx->id;

	csd_ctx_link(dev, ctx);
	*ctxp = ctx;
	return 0;
err:
	for (i = 0; i < gc->n; i++)
		csd_ctx_destroy(gc->sh[i].ctx);
	gctx_free(ctx);
	return rc;
}

int csd_group_ctx_destroy(struct csd_ctx *ctx)
{
	struct csd_group_ctx *gc = ctx->grp;
	struct csd_dev *dev = ctx->dev;
	unsigned int i;
	int rc, first = 0;

	pthread_mutex_lock(&ctx->lock);
	ctx->dead = true;
	pthread_mutex_unlock(&ctx->lock);
	for (i = 0; i < gc->n; i++) {
		rc = csd_ctx_destroy(gc->sh[i].ctx);
		if (rc && !first)
			first = rc;
		gc->sh[i].ctx = NULL;
	}
	csd_ctx_unlink(dev, ctx);
	gctx_put(ctx);
	return first;
}

int csd_group_ctx_query(struct csd_ctx *ctx, struct csd_ctx_usage *u,
			uint32_t *seq_lens, size_t n)
{
	struct csd_group_ctx *gc = ctx->grp;
	struct csd_ctx_usage mu, acc;
	uint32_t *lens = NULL;
	unsigned int i;
	size_t j;
	int rc, cap = INT32_MAX;

	if (n && !seq_lens)
		return -EINVAL;
	if (n) {
		lens = calloc(n, sizeof(*lens));
		if (!lens)
			return -ENOMEM;
	}
	memset(&acc, 0, sizeof(acc));
	for (j = 0; j < n; j++)
		seq_lens[j] = gc->split == CSD_SPLIT_HEADS ? UINT32_MAX : 0;
	for (i = 0; i < gc->n; i++) {
		rc = csd_ctx_query(gc->sh[i].ctx, &mu, lens, n);
		if (rc < 0)
			goto out;
		if (rc < cap)
			cap = rc;
		acc.seqs_used = umax(acc.seqs_used, mu.seqs_used);
		acc.inflight = umax(acc.inflight, mu.inflight);
		if (!i)
			acc.tokens_per_page = mu.tokens_per_page;
		acc.bytes_used += mu.bytes_used;
		for (j = 0; j < n; j++) {
			if (gc->split == CSD_SPLIT_HEADS)
				seq_lens[j] = umin(seq_lens[j], lens[j]);
			else
				seq_lens[j] += lens[j];
		}
		/* head split: every member stores every token */
		if (gc->split == CSD_SPLIT_TOKENS || !i)
			acc.tokens += mu.tokens;
	}
	for (j = 0; j < n; j++)
		if ((size_t)cap <= j)
			seq_lens[j] = 0;
	if (u)
		*u = acc;
	rc = cap;
out:
	free(lens);
	return rc;
}

int csd_group_seq_reset(struct csd_ctx *ctx, uint32_t seq)
{
	struct csd_group_ctx *gc = ctx->grp;
	unsigned int i;
	uint32_t l;
	int rc, first = 0;

	if (seq > UINT16_MAX)
		return -ERANGE;
	for (i = 0; i < gc->n; i++) {
		rc = csd_seq_reset(gc->sh[i].ctx, seq);
		if (rc && !first)
			first = rc;
		if (rc && !i)
			return rc;	/* nothing changed anywhere */
		if (rc || !gc->mlen || seq >= ctx->p.max_seqs)
			continue;
		pthread_mutex_lock(&ctx->lock);
		for (l = 0; l < ctx->p.layers; l++)
			*hs_mlen(ctx, i, seq, l) = 0;
		pthread_mutex_unlock(&ctx->lock);
	}
	if (gc->len && seq < ctx->p.max_seqs) {
		pthread_mutex_lock(&ctx->lock);
		for (l = 0; l < ctx->p.layers; l++)
			gc->len[(size_t)seq * ctx->p.layers + l] = 0;
		pthread_mutex_unlock(&ctx->lock);
	}
	return first;
}

/* ---- KV: head split -------------------------------------------------- */

/* Reads; appends of a single member (more members: hs_append()). */
static int hs_kv(struct csd_ctx *ctx, int rd, uint32_t seq, uint32_t layer,
		 uint32_t start, uint32_t ntok, const void *k, const void *v)
{
	struct csd_group_ctx *gc = ctx->grp;
	size_t hb = (size_t)ctx->p.head_dim * ctx->dsize;
	uint32_t maxh = 0;
	size_t maxrow;
	uint32_t per, t0, nt, t;
	char *tk, *tv;
	unsigned int i;
	int rc = 0;

	if (gc->n == 1 || !rd)
		return rd ? csd_kv_read(gc->sh[0].ctx, seq, layer, start, ntok,
					(void *)(uintptr_t)k,
					(void *)(uintptr_t)v) :
			    csd_kv_append(gc->sh[0].ctx, seq, layer, start, ntok,
					  k, v);
	for (i = 0; i < gc->n; i++)
		maxh = umax(maxh, gc->sh[i].nh);
	maxrow = maxh * hb;
	if (!maxrow)
		return -EINVAL;
	per = (uint32_t)(GROUP_KV_BYTES / maxrow);
	if (!per)
		per = 1;
	if (per > ntok)
		per = ntok;
	tk = malloc(2 * (size_t)per * maxrow);
	if (!tk)
		return -ENOMEM;
	tv = tk + (size_t)per * maxrow;
	for (t0 = 0; t0 < ntok && !rc; t0 += nt) {
		nt = umin(per, ntok - t0);
		for (i = 0; i < gc->n && !rc; i++) {
			size_t mrow = gc->sh[i].nh * hb;
			size_t off = gc->sh[i].h0 * hb;
			const char *ck = (const char *)k + t0 * ctx->row_bytes;
			const char *cv = (const char *)v + t0 * ctx->row_bytes;

			rc = csd_kv_read(gc->sh[i].ctx, seq, layer, start + t0,
					 nt, tk, tv);
			if (rc)
				break;
			for (t = 0; t < nt; t++) {
				memcpy((char *)(uintptr_t)ck +
				       t * ctx->row_bytes + off,
				       tk + t * mrow, mrow);
				memcpy((char *)(uintptr_t)cv +
				       t * ctx->row_bytes + off,
				       tv + t * mrow, mrow);
			}
		}
	}
	free(tk);
	return rc;
}

/*
 * Head split append over n > 1 members, retryable.  The members' lengths
 * of (seq, layer) are tracked on the host (gc->mlen: appends, fused
 * attention calls and resets that succeeded on a member).  When they are
 * all equal, @start must be that length (else -EILSEQ, as on one drive).
 * When they differ (an earlier append or fused call stopped part-way),
 * every member's length must lie in [start, start + ntok] and each member
 * is sent only the tokens it lacks: a member already at start + ntok is
 * skipped.  That completes a retry of the failed append; it trusts the
 * caller to pass the same k/v (what a member already holds is not
 * compared).  Members are done one after the other, each in pieces of at
 * most one KV_APPEND command of that member (all-or-nothing on the
 * drive), so a member's tracked length is exact after a failure too.
 */
static int hs_append(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
		     uint32_t start, uint32_t ntok, const void *k,
		     const void *v)
{
	struct csd_group_ctx *gc = ctx->grp;
	size_t hb = (size_t)ctx->p.head_dim * ctx->dsize, buf = 0;
	uint32_t end = start + ntok, lo = UINT32_MAX, hi = 0, *cur, *per;
	char *tk = NULL, *tv;
	unsigned int i;
	int rc = -ENOMEM;

	cur = calloc(2 * (size_t)gc->n, sizeof(*cur));
	if (!cur)
		return -ENOMEM;
	per = cur + gc->n;
	pthread_mutex_lock(&ctx->lock);
	for (i = 0; i < gc->n; i++) {
		cur[i] = *hs_mlen(ctx, i, seq, layer);
		lo = umin(lo, cur[i]);
		hi = umax(hi, cur[i]);
	}
	pthread_mutex_unlock(&ctx->lock);
	if (lo == hi ? lo != start : lo < start || hi > end) {
		rc = -EILSEQ;
		goto out;
	}
	for (i = 0; i < gc->n; i++) {
		size_t mrow = gc->sh[i].nh * hb;
		size_t xfer, np;

		if (!mrow) {		/* every member holds >= 1 head */
			rc = -EINVAL;
			goto out;
		}
		xfer = gc->sh[i].ctx->dev->info.max_xfer / (2 * mrow);
		np = umin(GROUP_KV_BYTES / mrow, end - cur[i]);

		if (xfer < np)
			np = xfer;
		per[i] = (uint32_t)(np ? np : 1);
		if ((size_t)per[i] * mrow > buf)
			buf = (size_t)per[i] * mrow;
	}
	if (!buf) {
		rc = -EINVAL;
		goto out;
	}
	tk = malloc(2 * buf);
	if (!tk)
		goto out;
	tv = tk + buf;
	rc = 0;
	for (i = 0; i < gc->n && !rc; i++) {
		size_t mrow = gc->sh[i].nh * hb;
		size_t off = gc->sh[i].h0 * hb;
		uint32_t t, nt, x;

		for (t = cur[i]; t < end; t += nt) {
			const char *ck = (const char *)k +
					 (size_t)(t - start) * ctx->row_bytes;
			const char *cv = (const char *)v +
					 (size_t)(t - start) * ctx->row_bytes;

			nt = umin(per[i], end - t);
			for (x = 0; x < nt; x++) {
				memcpy(tk + x * mrow,
				       ck + x * ctx->row_bytes + off, mrow);
				memcpy(tv + x * mrow,
				       cv + x * ctx->row_bytes + off, mrow);
			}
			rc = csd_kv_append(gc->sh[i].ctx, seq, layer, t, nt,
					   tk, tv);
			if (rc)
				break;
			pthread_mutex_lock(&ctx->lock);
			*hs_mlen(ctx, i, seq, layer) = t + nt;
			pthread_mutex_unlock(&ctx->lock);
		}
	}
out:
	free(tk);
	free(cur);
	return rc;
}

/* ---- KV: token split ------------------------------------------------- */

static int ts_kv(struct csd_ctx *ctx, int rd, uint32_t seq, uint32_t layer,
		 uint32_t start, uint32_t ntok, const void *k, const void *v)
{
	struct csd_group_ctx *gc = ctx->grp;
	uint32_t c = gc->chunk, n = gc->n, *lenp, cur, done = 0;
	int rc = 0;

	if (seq >= ctx->p.max_seqs || layer >= ctx->p.layers)
		return -ERANGE;
	lenp = &gc->len[(size_t)seq * ctx->p.layers + layer];
	pthread_mutex_lock(&ctx->lock);
	cur = *lenp;
	pthread_mutex_unlock(&ctx->lock);
	if (!rd && start != cur)
		return -EILSEQ;
	if (rd && (uint64_t)start + ntok > cur)
		return -ERANGE;
	while (done < ntok) {
		uint32_t t = start + done, s = t / c;
		uint32_t m = s % n, nt = umin(ntok - done, c - t % c);
		uint32_t lt = (s / n) * c + t % c;
		size_t off = (size_t)done * ctx->row_bytes;

		if (rd)
			rc = csd_kv_read(gc->sh[m].ctx, seq, layer, lt, nt,
					 (char *)(uintptr_t)k + off,
					 (char *)(uintptr_t)v + off);
		else
			rc = csd_kv_append(gc->sh[m].ctx, seq, layer, lt, nt,
					   (const char *)k + off,
					   (const char *)v + off);
		if (rc)
			break;
		done += nt;
		if (!rd) {
			pthread_mutex_lock(&ctx->lock);
			*lenp = start + done;
			pthread_mutex_unlock(&ctx->lock);
		}
	}
	return rc;
}

int csd_group_kv_append(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
			uint32_t start, uint32_t ntok, const void *k,
			const void *v)
{
	/* the single drive's order: ranges, capacity, arguments */
	if (seq >= ctx->p.max_seqs || layer >= ctx->p.layers)
		return -ERANGE;
	if (ntok && (uint64_t)start + ntok > ctx->p.max_tokens)
		return -EFBIG;
	if (!k || !v || !ntok)
		return -EINVAL;
	if (ctx->grp->mlen)
		return hs_append(ctx, seq, layer, start, ntok, k, v);
	if (ctx->grp->split == CSD_SPLIT_HEADS)
		return hs_kv(ctx, 0, seq, layer, start, ntok, k, v);
	return ts_kv(ctx, 0, seq, layer, start, ntok, k, v);
}

int csd_group_kv_read(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
		      uint32_t start, uint32_t ntok, void *k, void *v)
{
	if (!k || !v || !ntok)
		return -EINVAL;
	if (seq > UINT16_MAX || layer > UINT16_MAX ||
	    start > UINT32_MAX - ntok)
		return -ERANGE;
	if (ctx->grp->split == CSD_SPLIT_HEADS)
		return hs_kv(ctx, 1, seq, layer, start, ntok, k, v);
	return ts_kv(ctx, 1, seq, layer, start, ntok, k, v);
}

/* ---- attention ------------------------------------------------------- */

static void gop_free(struct csd_group_attn *op)
{
	free(op->sub);
	free(op->mem);
	free(op);
}

/* Wait for every sub-call started; first error. */
static int gop_wait_subs(struct csd_group_attn *op, uint64_t *tokens,
			 uint64_t *ns_max)
{
	struct csd_group_ctx *gc = op->ctx->grp;
	uint64_t *ns, tok = 0, tmax = 0;
	unsigned int s;
	int rc, first = 0;

	ns = calloc(gc->n, sizeof(*ns));
	for (s = 0; s < op->nsub; s++) {
		struct group_sub *sb = &op->sub[s];
		struct csd_attn_result res = { 0, 0 };

		if (!sb->op)
			continue;
		rc = csd_attn_wait(sb->op, &res);
		sb->op = NULL;
		if (rc && !first)
			first = rc;
		if (gc->split == CSD_SPLIT_HEADS)
			tok = res.tokens > tok ? res.tokens : tok;
		else
			tok += res.tokens;
		if (ns)
			ns[sb->m] += res.modeled_ns;
		else if (res.modeled_ns > tmax)
			tmax = res.modeled_ns;
	}
	/* members run in parallel: the slowest one's time */
	for (s = 0; ns && s < gc->n; s++)
		if (ns[s] > tmax)
			tmax = ns[s];
	free(ns);
	*tokens = tok;
	*ns_max = tmax;
	return first;
}

static int gop_start(struct csd_group_attn *op)
{
	struct csd_group_ctx *gc = op->ctx->grp;
	unsigned int s;
	int rc;

	for (s = 0; s < op->nsub; s++) {
		struct group_sub *sb = &op->sub[s];

		rc = csd_attn_submit(gc->sh[sb->m].ctx, &sb->r, &sb->op);
		if (rc) {
			sb->op = NULL;
			return rc;
		}
	}
	return 0;
}

/* Head split: one call per member with its heads. */
static int hs_build(struct csd_group_attn *op)
{
	const struct csd_attn_req *req = &op->req;
	struct csd_ctx *ctx = op->ctx;
	struct csd_group_ctx *gc = ctx->grp;
	size_t d = ctx->p.head_dim, hb = d * ctx->dsize, need = 0;
	uint32_t ns = req->nseq, j, Q = ctx->p.q_heads;
	int fused = !!(req->flags & CSD_ATTN_FUSED_KV);
	int lse = !!(req->flags & CSD_ATTN_LSE);
	unsigned int i;
	char *p;

	op->nsub = gc->n;
	op->sub = calloc(gc->n, sizeof(*op->sub));
	if (!op->sub)
		return -ENOMEM;
	if (ns > 1) {
		for (i = 0; i < gc->n; i++) {
			size_t nq = (size_t)gc->sh[i].nh * gc->g;

			need += 2 * ns * nq * d * sizeof(float);
			if (lse)
				need += ns * nq * sizeof(float);
			if (fused)
				need += 2 * ns * gc->sh[i].nh * hb;
		}
		op->mem = malloc(need);
		if (!op->mem)
			return -ENOMEM;
	}
	p = op->mem;
	for (i = 0; i < gc->n; i++) {
		struct group_sub *sb = &op->sub[i];
		size_t q0 = (size_t)gc->sh[i].h0 * gc->g, nq = gc->sh[i].nh * gc->g;
		size_t qrow = nq * d * sizeof(float);
		size_t kvrow = gc->sh[i].nh * hb;

		sb->m = i;
		sb->r = *req;
		if (ns == 1) {
			sb->direct = 1;
			sb->r.q = req->q + q0 * d;
			sb->r.out = req->out + q0 * d;
			if (lse)
				sb->r.lse = req->lse + q0;
			if (fused) {
				sb->r.k_new = (const char *)req->k_new +
					      gc->sh[i].h0 * hb;
				sb->r.v_new = (const char *)req->v_new +
					      gc->sh[i].h0 * hb;
			}
			continue;
		}
		sb->r.q = (const float *)p;
		for (j = 0; j < ns; j++)
			memcpy(p + j * qrow, req->q + ((size_t)j * Q + q0) * d,
			       qrow);
		p += ns * qrow;
		sb->r.out = (float *)p;
		p += ns * qrow;
		if (lse) {
			sb->r.lse = (float *)p;
			p += ns * nq * sizeof(float);
		}
		if (fused) {
			sb->r.k_new = p;
			for (j = 0; j < ns; j++)
				memcpy(p + j * kvrow,
				       (const char *)req->k_new +
				       j * ctx->row_bytes + gc->sh[i].h0 * hb,
				       kvrow);
			p += ns * kvrow;
			sb->r.v_new = p;
			for (j = 0; j < ns; j++)
				memcpy(p + j * kvrow,
				       (const char *)req->v_new +
				       j * ctx->row_bytes + gc->sh[i].h0 * hb,
				       kvrow);
			p += ns * kvrow;
		}
	}
	return 0;
}

static void hs_gather(struct csd_group_attn *op)
{
	const struct csd_attn_req *req = &op->req;
	struct csd_ctx *ctx = op->ctx;
	struct csd_group_ctx *gc = ctx->grp;
	size_t d = ctx->p.head_dim, Q = ctx->p.q_heads;
	unsigned int i;
	uint32_t j;

	for (i = 0; i < op->nsub; i++) {
		const struct group_sub *sb = &op->sub[i];
		size_t q0 = (size_t)gc->sh[sb->m].h0 * gc->g;
		size_t nq = (size_t)gc->sh[sb->m].nh * gc->g;

		if (sb->direct)
			continue;
		for (j = 0; j < req->nseq; j++) {
			memcpy(req->out + ((size_t)j * Q + q0) * d,
			       sb->r.out + j * nq * d, nq * d * sizeof(float));
			if (req->flags & CSD_ATTN_LSE)
				memcpy(req->lse + (size_t)j * Q + q0,
				       sb->r.lse + j * nq,
				       nq * sizeof(float));
		}
	}
}

/* A (sequence, member) part of a token-split call. */
struct ts_part {
	uint32_t j;		/* index in the caller's request */
	uint32_t fused;
	uint32_t window;
};

static int ts_part_cmp(const void *a, const void *b)
{
	const struct ts_part *x = a, *y = b;

	if (x->fused != y->fused)
		return x->fused < y->fused ? -1 : 1;
	if (x->window != y->window)
		return x->window < y->window ? -1 : 1;
	return x->j < y->j ? -1 : x->j > y->j;
}

/*
 * Token split: per member, the sequences with tokens there, grouped into
 * calls of equal (fused, window).  @lens: global lengths before the call.
 */
static int ts_build(struct csd_group_attn *op, const uint32_t *lens)
{
	const struct csd_attn_req *req = &op->req;
	struct csd_ctx *ctx = op->ctx;
	struct csd_group_ctx *gc = ctx->grp;
	uint32_t ns = req->nseq, c = gc->chunk, n = gc->n, j, a, b;
	size_t d = ctx->p.head_dim, Q = ctx->p.q_heads, need = 0;
	int fused = !!(req->flags & CSD_ATTN_FUSED_KV);
	struct ts_part *parts = NULL;
	unsigned int i, np, ncall = 0, s;
	char *p;
	int rc = -ENOMEM;

	parts = calloc((size_t)ns * n, sizeof(*parts));
	op->sub = calloc((size_t)ns * n, sizeof(*op->sub));
	if (!parts || !op->sub)
		goto out;
	/* pass 1: the calls and the scratch they need */
	for (s = 0; s < 2; s++) {
		p = op->mem;
		ncall = 0;
		for (i = 0; i < n; i++) {
			np = 0;
			for (j = 0; j < ns; j++) {
				uint32_t L = lens[j] + fused;	/* after */
				uint32_t own = fused ?
					       (lens[j] / c) % n : UINT32_MAX;
				uint32_t li = tok_local(L, i, n, c), w = 0;

				if (req->window && req->window < L) {
					w = li - tok_local(L - req->window, i,
							   n, c);
					if (w == li)
						w = 0;
					else if (!w)
						continue;
				}
				if (!li)
					continue;
				parts[np++] = (struct ts_part){
					j, own == i, w };
			}
			qsort(parts, np, sizeof(*parts), ts_part_cmp);
			for (a = 0; a < np; a = b) {
				struct group_sub *sb = &op->sub[ncall++];
				uint32_t k, cnt;

				for (b = a + 1; b < np &&
				     parts[b].fused == parts[a].fused &&
				     parts[b].window == parts[a].window; b++)
					;
				cnt = b - a;
				if (!s) {
					need += cnt * (sizeof(uint32_t) * 2 +
						       2 * Q * d *
						       sizeof(float) +
						       Q * sizeof(float));
					if (parts[a].fused)
						need += 2 * cnt *
							ctx->row_bytes;
					continue;
				}
				sb->m = i;
				sb->r = *req;
				sb->r.nseq = cnt;
				sb->r.window = parts[a].window;
				sb->r.flags = (req->flags & ~CSD_ATTN_FUSED_KV) |
					      CSD_ATTN_LSE;
				if (parts[a].fused)
					sb->r.flags |= CSD_ATTN_FUSED_KV;
				sb->idx = (uint32_t *)(void *)p;
				p += cnt * sizeof(uint32_t);
				sb->r.seqs = (const uint32_t *)(void *)p;
				p += cnt * sizeof(uint32_t);
				sb->r.q = (const float *)(void *)p;
				p += cnt * Q * d * sizeof(float);
				sb->r.out = (float *)(void *)p;
				p += cnt * Q * d * sizeof(float);
				sb->r.lse = (float *)(void *)p;
				p += cnt * Q * sizeof(float);
				sb->r.k_new = NULL;
				sb->r.v_new = NULL;
				if (parts[a].fused) {
					sb->r.k_new = p;
					p += cnt * ctx->row_bytes;
					sb->r.v_new = p;
					p += cnt * ctx->row_bytes;
				}
				for (k = 0; k < cnt; k++) {
					uint32_t jj = parts[a + k].j;

					sb->idx[k] = jj;
					((uint32_t *)(uintptr_t)sb->r.seqs)[k] =
						req->seqs[jj];
					memcpy((float *)(uintptr_t)sb->r.q +
					       k * Q * d, req->q + jj * Q * d,
					       Q * d * sizeof(float));
					if (!parts[a].fused)
						continue;
					memcpy((char *)(uintptr_t)sb->r.k_new +
					       k * ctx->row_bytes,
					       (const char *)req->k_new +
					       jj * ctx->row_bytes,
					       ctx->row_bytes);
					memcpy((char *)(uintptr_t)sb->r.v_new +
					       k * ctx->row_bytes,
					       (const char *)req->v_new +
					       jj * ctx->row_bytes,
					       ctx->row_bytes);
				}
			}
		}
		if (!s) {
			op->mem = malloc(need ? need : 1);
			if (!op->mem)
				goto out;
		}
	}
	op->nsub = ncall;
	rc = 0;
out:
	free(parts);
	return rc;
}

/* Merge the members' partial outputs per (sequence, q head). */
static int ts_merge(struct csd_group_attn *op)
{
	const struct csd_attn_req *req = &op->req;
	struct csd_ctx *ctx = op->ctx;
	size_t d = ctx->p.head_dim, Q = ctx->p.q_heads, nh, x, t;
	double *mx, *sum;
	unsigned int s;
	uint32_t k;

	nh = (size_t)req->nseq * Q;
	mx = malloc(2 * nh * sizeof(double));
	if (!mx)
		return -ENOMEM;
	sum = mx + nh;
	for (x = 0; x < nh; x++) {
		mx[x] = -INFINITY;
		sum[x] = 0;
	}
	memset(req->out, 0, nh * d * sizeof(float));
	for (s = 0; s < op->nsub; s++) {
		const struct group_sub *sb = &op->sub[s];

		for (k = 0; k < sb->r.nseq; k++)
			for (x = 0; x < Q; x++) {
				size_t o = sb->idx[k] * Q + x;
				double l = sb->r.lse[k * Q + x];

				if (l > mx[o])
					mx[o] = l;
			}
	}
	for (s = 0; s < op->nsub; s++) {
		const struct group_sub *sb = &op->sub[s];

		for (k = 0; k < sb->r.nseq; k++)
			for (x = 0; x < Q; x++) {
				size_t o = sb->idx[k] * Q + x;

				sum[o] += exp(sb->r.lse[k * Q + x] - mx[o]);
			}
	}
	for (s = 0; s < op->nsub; s++) {
		const struct group_sub *sb = &op->sub[s];

		for (k = 0; k < sb->r.nseq; k++)
			for (x = 0; x < Q; x++) {
				size_t o = sb->idx[k] * Q + x;
				float w = (float)(exp(sb->r.lse[k * Q + x] -
						      mx[o]) / sum[o]);
				const float *src = sb->r.out + (k * Q + x) * d;
				float *dst = req->out + o * d;

				for (t = 0; t < d; t++)
					dst[t] += w * src[t];
			}
	}
	if (req->flags & CSD_ATTN_LSE)
		for (x = 0; x < nh; x++)
			req->lse[x] = (float)(mx[x] + log(sum[x]));
	free(mx);
	return 0;
}

/*
 * Head split, n > 1: the sequences' members must agree on the length of
 * the layer (else -EILSEQ): after a KV append or a fused call that stopped
 * part-way some members hold a token the others lack, attention would mix
 * lengths across heads, and a fused append cannot be completed by a retry
 * (it has no start: the group cannot tell a retry from the next token).
 * csd_kv_append() of the missing tokens at the group's length completes
 * it (see hs_append).  Sequences or a layer out of range are left to the
 * members.
 */
static int hs_check(struct csd_ctx *ctx, const struct csd_attn_req *req)
{
	struct csd_group_ctx *gc = ctx->grp;
	unsigned int i;
	uint32_t j, l;
	int rc = 0;

	if (!gc->mlen || req->layer >= ctx->p.layers)
		return 0;
	pthread_mutex_lock(&ctx->lock);
	for (j = 0; j < req->nseq && !rc; j++) {
		if (req->seqs[j] >= ctx->p.max_seqs)
			continue;
		l = *hs_mlen(ctx, 0, req->seqs[j], req->layer);
		for (i = 1; i < gc->n; i++)
			if (*hs_mlen(ctx, i, req->seqs[j], req->layer) != l)
				rc = -EILSEQ;
	}
	pthread_mutex_unlock(&ctx->lock);
	return rc;
}

/* Head split, n > 1: the fused appends of the members' calls that were
 * submitted happened (ATTN_SUBMIT appends or fails as a whole). */
static void hs_fused_done(struct csd_group_attn *op)
{
	struct csd_ctx *ctx = op->ctx;
	struct csd_group_ctx *gc = ctx->grp;
	const struct csd_attn_req *req = &op->req;
	unsigned int s;
	uint32_t j;

	if (!gc->mlen || !(req->flags & CSD_ATTN_FUSED_KV) ||
	    req->layer >= ctx->p.layers)
		return;
	pthread_mutex_lock(&ctx->lock);
	for (s = 0; s < op->nsub; s++) {
		if (!op->sub[s].op)
			continue;
		for (j = 0; j < req->nseq; j++)
			if (req->seqs[j] < ctx->p.max_seqs)
				(*hs_mlen(ctx, op->sub[s].m, req->seqs[j],
					  req->layer))++;
	}
	pthread_mutex_unlock(&ctx->lock);
}

/* Token split: check the request as the drive would and snapshot the
 * lengths; with FUSED_KV the lengths are advanced (under the lock). */
static int ts_lens(struct csd_ctx *ctx, const struct csd_attn_req *req,
		   uint32_t *lens)
{
	struct csd_group_ctx *gc = ctx->grp;
	uint32_t j, i, L = ctx->p.layers;
	int fused = !!(req->flags & CSD_ATTN_FUSED_KV);

	if (req->layer >= ctx->p.layers)
		return -ERANGE;
	for (j = 0; j < req->nseq; j++)
		if (req->seqs[j] >= ctx->p.max_seqs)
			return -ERANGE;
	for (j = 0; j < req->nseq; j++)
		for (i = j + 1; i < req->nseq; i++)
			if (req->seqs[i] == req->seqs[j])
				return -EINVAL;
	pthread_mutex_lock(&ctx->lock);
	for (j = 0; j < req->nseq; j++) {
		lens[j] = gc->len[(size_t)req->seqs[j] * L + req->layer];
		if (fused && lens[j] >= ctx->p.max_tokens) {
			pthread_mutex_unlock(&ctx->lock);
			return -EFBIG;
		}
		if (!fused && !lens[j]) {
			pthread_mutex_unlock(&ctx->lock);
			return -ENODATA;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
	return 0;
}

int csd_group_attn_submit(struct csd_ctx *ctx, const struct csd_attn_req *req,
			  struct csd_attn **opp)
{
	struct csd_group_ctx *gc = ctx->grp;
	const uint32_t known = CSD_ATTN_FUSED_KV | CSD_ATTN_LSE |
			       CSD_ATTN_SPARSE;
	struct csd_group_attn *op;
	uint32_t *lens = NULL;
	uint64_t tok, ns;
	unsigned int s;
	int rc;

	if (!opp)
		return -EINVAL;
	*opp = NULL;
	if (!req || !req->nseq || !req->seqs || !req->q || !req->out)
		return -EINVAL;
	if (req->flags & ~known)
		return -EINVAL;
	if ((req->flags & CSD_ATTN_FUSED_KV) && (!req->k_new || !req->v_new))
		return -EINVAL;
	if ((req->flags & CSD_ATTN_LSE) && !req->lse)
		return -EINVAL;
	if ((req->flags & CSD_ATTN_SPARSE) && req->window)
		return -EINVAL;
	if (req->nseq > UINT16_MAX)
		return -EINVAL;
	if (req->layer > UINT16_MAX)
		return -ERANGE;

	op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->ctx = ctx;
	op->req = *req;
	if (gc->split == CSD_SPLIT_TOKENS) {
		if (req->nseq > ctx->dev->info.max_attn_seqs) {
			free(op);
			return -EINVAL;
		}
		lens = calloc(req->nseq, sizeof(*lens));
		rc = lens ? ts_lens(ctx, req, lens) : -ENOMEM;
		if (!rc)
			rc = ts_build(op, lens);
	} else {
		rc = hs_check(ctx, req);
		if (!rc)
			rc = hs_build(op);
	}
	if (rc)
		goto err_free;

	pthread_mutex_lock(&ctx->lock);
	rc = ctx->dead ? -ENOENT : 0;
	if (!rc)
		ctx->refs++;
	pthread_mutex_unlock(&ctx->lock);
	if (rc)
		goto err_free;

	rc = gop_start(op);
	hs_fused_done(op);
	if (gc->split == CSD_SPLIT_TOKENS &&
	    (req->flags & CSD_ATTN_FUSED_KV)) {
		/* the fused appends that reached a member happened */
		pthread_mutex_lock(&ctx->lock);
		for (s = 0; s < op->nsub; s++) {
			const struct group_sub *sb = &op->sub[s];
			uint32_t k;

			if (!sb->op || !(sb->r.flags & CSD_ATTN_FUSED_KV))
				continue;
			for (k = 0; k < sb->r.nseq; k++)
				gc->len[(size_t)sb->r.seqs[k] * ctx->p.layers +
					req->layer] = lens[sb->idx[k]] + 1;
		}
		pthread_mutex_unlock(&ctx->lock);
	}
	free(lens);
	lens = NULL;
	if (rc) {
		gop_wait_subs(op, &tok, &ns);
		gop_free(op);
		gctx_put(ctx);
		return rc;
	}
	*opp = (struct csd_attn *)(void *)op;
	return 0;

err_free:
	free(lens);
	gop_free(op);
	return rc;
}

int csd_group_attn_wait(struct csd_attn *aop, struct csd_attn_result *res)
{
	struct csd_group_attn *op = (struct csd_group_attn *)(void *)aop;
	struct csd_ctx *ctx = op->ctx;
	uint64_t tok = 0, ns = 0;
	int rc;

	rc = gop_wait_subs(op, &tok, &ns);
	if (!rc) {
		if (ctx->grp->split == CSD_SPLIT_TOKENS)
			rc = ts_merge(op);
		else
			hs_gather(op);
	}
	if (res) {
		res->tokens = rc ? 0 : tok;
		res->modeled_ns = ns;
	}
	gop_free(op);
	gctx_put(ctx);
	return rc;
}
