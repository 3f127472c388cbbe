/* SPDX-License-Identifier: MIT */
/*
 * csd_internal.h - libcsd internals: device/context structures and the
 * transport ops table.  Never installed, never included from include/.
 */
#ifndef CSD_INTERNAL_H
#define CSD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csd/csd_spec.h"
#include "csd.h"

/* Only csd_* API functions are exported (the library is built with
 * -fvisibility=hidden); put this on each public definition. */
#define CSD_EXPORT __attribute__((visibility("default")))

/* Most data segments a command of this library uses (ATTN_SUBMIT: seq ids,
 * q, k, v). */
#define CSD_MAX_SEGS 4

/* One host buffer of a command's data. */
struct csd_seg {
	void *addr;
	size_t len;
};

/*
 * A completion as the library sees it: dw0, dw1 and the NVMe status field
 * (phase bit removed, i.e. CQE status word >> 1; 0 = success).
 *
 * may_run: the host, not the drive, ended the command -- a transport that
 * stopped waiting for it (a local timeout, an interrupted wait) and made
 * up @status (ABORT_REQ) -- so the command may still reach the drive and
 * run later.  False for every completion the drive (or a controller reset,
 * which discards the commands in flight for good) settled; attn.c gives
 * an aborted call's tag back only then.
 */
struct csd_cpl {
	uint32_t dw0;
	uint32_t dw1;
	uint16_t status;
	bool may_run;
};

typedef void (*csd_cpl_fn)(void *arg, const struct csd_cpl *cpl);

/*
 * A transport: how commands reach a drive.
 *
 * open:   parse @opts (the part of the device string after the scheme) and
 *         set dev->tp.  Returns 0 or -errno.
 * close:  wait for commands in flight, free dev->tp.
 * submit: send one command.  @sqe is complete except cid/prp, which the
 *         transport owns.  @seg[0..nseg) is the data buffer in order (the
 *         descriptors may be on the caller's stack: the transport copies
 *         them; the buffers themselves must stay valid until @done).
 *         Returns 0 and later calls @done exactly once (possibly before
 *         submit returns, possibly from another thread), or returns -errno
 *         and never calls @done.  -errno means the command never reached
 *         the drive and never will; a transport that gives up waiting for
 *         a command it sent completes it instead (ABORT_REQ, may_run set).
 *         Thread-safe.
 * exec:   optional: send one command and wait for its completion in the
 *         calling thread (csd_exec); arguments as submit, the completion
 *         in *@cpl.  Returns 0 (*@cpl filled) or -errno when the command
 *         could not be sent.  Lets a transport complete a synchronous call
 *         in the waiting thread itself rather than wake it from another.
 *         NULL: csd_exec uses submit and waits for the callback.
 * reset:  optional: controller reset of this handle's queues
 *         (csd_dev_reset): every command in flight completes (its @done is
 *         called) with ABORT_REQ (may_run clear: the drive has dropped it),
 *         then the transport takes commands again.
 *         Returns 0 or -errno.  NULL: csd_dev_reset returns -EOPNOTSUPP.
 */
struct csd_transport_ops {
	const char *name;
	int (*open)(struct csd_dev *dev, const char *opts);
	void (*close)(struct csd_dev *dev);
	int (*submit)(struct csd_dev *dev, int admin, const struct csd_sqe *sqe,
		      const struct csd_seg *seg, unsigned int nseg,
		      csd_cpl_fn done, void *arg);
	int (*exec)(struct csd_dev *dev, int admin, const struct csd_sqe *sqe,
		    const struct csd_seg *seg, unsigned int nseg,
		    struct csd_cpl *cpl);
	int (*reset)(struct csd_dev *dev);
};

extern const struct csd_transport_ops csd_transport_embedded;
/* transport_kernel.c: "/dev/..." NVMe passthrough char device (csd.ko) */
extern const struct csd_transport_ops csd_transport_kernel;

struct csd_dev {
	const struct csd_transport_ops *ops;
	void *tp;			/* transport private */
	struct csd_dev_info info;	/* from Identify at open */
	struct csd_id_ctrl *id;		/* raw Identify Controller */
	atomic_uint cid;
	pthread_mutex_t lock;		/* protects ctx_list */
	struct csd_ctx *ctx_list;
	struct csd_group *grp;		/* non-NULL: a device group (group.c) */
};

struct csd_ctx {
	struct csd_dev *dev;
	uint32_t id;
	struct csd_ctx_params p;
	size_t dsize;			/* dtype size */
	size_t row_bytes;		/* kv_heads * head_dim * dsize */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t *tags;			/* bitmap of max_tags bits */
	uint32_t ntags;
	uint32_t tag_hint;
	uint32_t reads_pending;		/* ATTN_READs not completed yet */
	uint32_t refs;			/* 1 (handle) + unwaited ops */
	bool dead;			/* destroyed, waiting for ops */
	struct csd_ctx *next, **pprev;	/* dev->ctx_list */
	struct csd_group_ctx *grp;	/* non-NULL: a context of a group */
};

/* Synchronous execution through the transport: 0 and *cpl filled, or
 * -errno when the command could not be sent. */
int csd_exec(struct csd_dev *dev, int admin, struct csd_sqe *sqe,
	     const struct csd_seg *seg, unsigned int nseg, struct csd_cpl *cpl);
/* Execute and map the status: 0 on success (dw0/dw1 returned through
 * @cpl if non-NULL), else -errno. */
int csd_exec_status(struct csd_dev *dev, int admin, struct csd_sqe *sqe,
		    const struct csd_seg *seg, unsigned int nseg,
		    struct csd_cpl *cpl);
/* Get Log Page @lid into @buf (len multiple of 4). */
int csd_get_log(struct csd_dev *dev, uint8_t lid, void *buf, uint32_t len);

/* Internal helpers of ctx.c used by attn.c / dev.c / group.c. */
void csd_ctx_put(struct csd_ctx *ctx);
/* Add @ctx to / remove it from its device's list (takes dev->lock). */
void csd_ctx_link(struct csd_dev *dev, struct csd_ctx *ctx);
void csd_ctx_unlink(struct csd_dev *dev, struct csd_ctx *ctx);
/* dev.c: destroy every context still open through @dev. */
void csd_dev_destroy_contexts(struct csd_dev *dev);

/*
 * group.c: device groups.  The public functions of dev.c, ctx.c and attn.c
 * hand a group device (dev->grp) or group context (ctx->grp) to these at
 * their top.  A group's struct csd_attn is really a struct csd_group_attn;
 * both begin with `struct csd_ctx *ctx`, so csd_attn_wait() tells them
 * apart by op->ctx->grp - keep ctx the first member of struct csd_attn.
 */
int csd_group_is_spec(const char *spec);
int csd_group_open_spec(const char *spec, struct csd_dev **devp);
void csd_group_close(struct csd_dev *dev);
int csd_group_get_stats(struct csd_dev *dev, struct csd_dev_stats *st);
int csd_group_set_pacing(struct csd_dev *dev, int on);
int csd_group_flush(struct csd_dev *dev);
int csd_group_reset(struct csd_dev *dev);
int csd_group_list_ctx(struct csd_dev *dev, struct csd_ctx_entry *ents,
		       size_t max);
int csd_group_ctx_create(struct csd_dev *dev, const struct csd_ctx_params *p,
			 struct csd_ctx **ctxp);
int csd_group_ctx_destroy(struct csd_ctx *ctx);
int csd_group_ctx_query(struct csd_ctx *ctx, struct csd_ctx_usage *u,
			uint32_t *seq_lens, size_t n);
int csd_group_seq_reset(struct csd_ctx *ctx, uint32_t seq);
int csd_group_kv_append(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
			uint32_t start, uint32_t ntok, const void *k,
			const void *v);
int csd_group_kv_read(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
		      uint32_t start, uint32_t ntok, void *k, void *v);
int csd_group_attn_submit(struct csd_ctx *ctx, const struct csd_attn_req *req,
			  struct csd_attn **opp);
int csd_group_attn_wait(struct csd_attn *op, struct csd_attn_result *res);

/* Debug messages (CSD_DEBUG=1 in the environment) to stderr. */
void csd_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline void csd_sqe_io(struct csd_sqe *sqe, uint8_t opc, uint32_t ctx,
			      uint32_t ndata)
{
	*sqe = (struct csd_sqe){ 0 };
	sqe->opcode = opc;
	sqe->nsid = CSD_NSID;
	sqe->cdw10 = ndata / 4;
	sqe->cdw12 = ctx;
}

#endif /* CSD_INTERNAL_H */
