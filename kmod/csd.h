/* SPDX-License-Identifier: GPL-2.0 */
/*
 * csd.h - internal definitions of csd.ko, the guest driver of the csd
 * computational storage drive served by csd-fw through QEMU's
 * ivshmem-doorbell device (Documentation/device-interface.md).
 */
#ifndef CSD_KMOD_H
#define CSD_KMOD_H

#include <linux/cdev.h>
#include <linux/completion.h>
#include <linux/device.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "csd_devif.h"

#define CSD_DRV_NAME		"csd"
#define CSD_MAX_MINORS		64

/* ivshmem BAR0 registers */
#define CSD_IVSHM_IVPOSITION	0x08
#define CSD_IVSHM_DOORBELL	0x0c

#define CSD_NO_CHUNK		(-1)

/* NVMe status field of a command the host aborted: SCT 0, SC 07h, DNR */
#define CSD_STATUS_HOST_ABORTED	0x4007

/*
 * CID = generation << CSD_CID_TAG_BITS | tag.  The tag indexes q->cmds[]
 * (depth <= 4096); the generation changes with every submission, so a stale
 * or duplicated CQE from the daemon cannot complete a newer command that
 * reuses the tag.
 */
#define CSD_CID_TAG_BITS	12
#define CSD_CID_TAG_MASK	((1u << CSD_CID_TAG_BITS) - 1)
static_assert(CSD_CID_TAG_MASK + 1 >= CSD_DEVIF_MAX_DEPTH);

struct csd_ctrl;
struct csd_file;
struct csd_req;

/*
 * How a command's data reaches the device: pinned user pages addressed by
 * guest-physical PRPs (fast path, caps bit 1), or a bounce chunk of the data
 * window in BAR2 (fallback, and kernel-internal commands).
 */
struct csd_data {
	u32 len;
	bool to_dev;
	/* bounce */
	int chunk;		/* window chunk or CSD_NO_CHUNK */
	void __user *ubuf;	/* user buffer to copy out to (reads) */
	void *kbuf;		/* kernel buffer to copy out to (reads) */
	/* pinned */
	struct page **pages;
	unsigned int nr_pages;
	unsigned long *lists;	/* PRP list pages (kernel virtual addresses) */
	unsigned int nr_lists;
};

/* A synchronous caller waiting on its own stack (ioctl, internal). */
struct csd_wait {
	struct completion done;
	struct csd_req *req;	/* completed: the caller owns the request */
	int error;		/* failed: the request is no longer the caller's */
};

/*
 * One command.  Two sides own it: the device (while its CID is in
 * q->cmds[]) and the submitter (until it got a result).  The submitter side
 * ends exactly once, under q->lock: with the completion (the submitter then
 * owns and frees the request) or with an error (timeout, dead controller:
 * the request is "abandoned" and freed by the device side once the device
 * can no longer touch its buffers).
 */
struct csd_req {
	struct csd_ctrl *ctrl;
	struct csd_queue *q;
	struct csd_file *file;	/* owner of contexts it creates; NULL: kernel */
	struct csd_sqe sqe;
	struct csd_data data;
	u16 status;		/* NVMe status field (CQE status >> 1) */
	u64 result;		/* CQE dw0 | dw1 << 32 (as nvme's result.u64) */
	bool device_done;	/* a CQE arrived */
	bool abandoned;		/* submitter side ended with an error */
	unsigned long start;	/* jiffies at submission */
	unsigned long deadline;	/* submitter's timeout (async requests) */
	struct csd_wait *wait;	/* synchronous submitter, or NULL */
	/* asynchronous submitter (io_uring): called once under q->lock */
	void (*end_io)(struct csd_req *req, int error);
	void *end_io_data;
	struct work_struct free_work;
	/*
	 * CTX_DESTROY of a context @file owns: its ownership was taken away
	 * when the command was prepared; given back if the device refused
	 * the command without touching the context (csd_req_free()).
	 */
	bool ctx_dropped;
	/*
	 * Get Log Page C1h of a caller without CAP_SYS_ADMIN: the device's
	 * log is read into @buf, filtered and copied out by the driver.
	 */
	struct {
		void *buf;		/* kernel copy of the device's log, or NULL */
		void __user *ubuf;	/* the caller's buffer */
		u32 ulen;		/* its length */
		u64 lpo;		/* the caller's log page offset */
		bool bad;		/* NUMD != ulen or LPO unaligned */
		unsigned int gen;	/* file->ctx_gen before the device read */
	} log;
};

/* One queue pair in the client area of BAR2. */
struct csd_queue {
	struct csd_ctrl *ctrl;
	spinlock_t lock;	/* SQ tail, CQ head, cmds[], inflight */
	u16 qid;
	u16 depth;
	u16 sq_tail;
	u16 cq_head;
	u8 cq_phase;
	u8 cid_gen;		/* generation of the next CID */
	struct csd_sqe *sq;
	struct csd_devif_sqx *sqx;
	struct csd_cqe *cq;
	struct csd_devif_qdb *db;
	struct csd_req **cmds;	/* indexed by CID tag: requests the device owns */
	unsigned int inflight;	/* at most depth - 1 (device-interface.md 4.3) */
	bool stopped;		/* controller reset: no SQE written, no CQE read */
	wait_queue_head_t wait;	/* slot freed, reset ended, or death */
};

/* Data window chunks: fixed-size bounce buffers, each with room for PRP lists. */
struct csd_window {
	void *base;		/* kernel address of the window */
	size_t chunk_size;
	size_t data_size;	/* bytes of data per chunk (>= max_xfer) */
	unsigned int nr_chunks;
	unsigned long *busy;	/* bitmap of chunks in use */
	spinlock_t lock;	/* busy */
	wait_queue_head_t wait;	/* a chunk was freed or the controller died */
};

/*
 * The register page as validated at probe.  The daemon owns that page, so
 * every value the driver uses is read once into this snapshot and checked
 * there; the page itself is only re-read for liveness (status, heartbeat).
 */
struct csd_layout {
	u64 client_off;		/* of our client area, in BAR2 */
	u64 area_size;		/* bytes of our client area */
	u64 q_off;		/* the rest are client-area relative */
	u64 q_stride;
	u64 sq_off;
	u64 sqx_off;
	u64 cq_off;
	u64 win_off;
	u64 win_size;
};

struct csd_ctrl {
	struct pci_dev *pdev;
	struct device dev;	/* /dev/csdN; its refcount keeps this alive */
	struct cdev cdev;
	int instance;

	void __iomem *bar0;
	void *shm;		/* BAR2, mapped write-back */
	size_t shm_size;
	struct csd_devif_regs *regs;
	struct csd_devif_client *client;
	void *client_area;
	struct csd_layout layout;

	u32 caps;
	u32 version;
	u32 max_xfer;
	u64 dma_size;		/* guest RAM the daemon maps (caps bit 1) */
	u32 nr_io_queues;	/* I/O queues in use */
	u32 nr_vectors;
	u16 depth;
	u32 peer_id;

	struct csd_queue *queues;	/* [0] admin, [1..nr_io_queues] I/O */
	struct csd_window win;
	atomic_t next_ioq;

	/* liveness */
	struct delayed_work watchdog;
	u64 last_heartbeat;
	unsigned long last_beat_jiffies;
	bool dead;		/* new commands fail with -EIO */
	bool dma_stopped;	/* the daemon can no longer touch our memory */

	/* controller reset (devif 1.2, caps bit 3) */
	struct mutex reset_lock;	/* one reset at a time */
	bool resetting;		/* queues stopped, waiting for reset_ack */
	u32 reset_req;		/* the value we stored in client->reset_req */
	wait_queue_head_t reset_wait;	/* reset_ack seen, or death */
	struct work_struct reset_work;	/* reset after a command timeout */
	s64 reset_trigger;	/* resets count when reset_work was queued */

	/* removal vs. users */
	struct rw_semaphore remove_lock;
	bool removed;
	atomic_t nr_reqs;	/* requests allocated */
	atomic_t outstanding;	/* requests the device owns */
	wait_queue_head_t req_wait;

	/* identify data */
	char model[41];
	char serial[21];
	char firmware_rev[9];
	char fw_version[17];
	u32 max_contexts;	/* Identify vendor area */

	/* contexts owned by open files: ctx id -> struct csd_file * */
	struct xarray contexts;

	/* statistics */
	atomic64_t commands;
	atomic64_t errors;
	atomic64_t timeouts;
	atomic64_t resets;
	atomic64_t uring_cmds;
	atomic64_t pinned_cmds;
	atomic64_t bounce_cmds;
	atomic64_t eagain;
};

/* Per open file of /dev/csdN. */
struct csd_file {
	struct csd_ctrl *ctrl;
	/*
	 * Bumped before every change of this file's entries in
	 * ctrl->contexts (a context created, a destroy prepared, ownership
	 * given back): a filtered contexts log read while it changed is read
	 * again (csd_ctx_log_finish()).
	 */
	atomic_t ctx_gen;
};

/* A user passthrough command, whichever ABI structure carried it. */
struct csd_ucmd {
	struct csd_sqe sqe;
	u64 addr;
	u32 data_len;
	u32 timeout_ms;
	bool admin;
};

extern unsigned int csd_io_timeout;
extern unsigned int csd_admin_timeout;
extern bool csd_guest_dma;
extern struct workqueue_struct *csd_wq;

/* core.c */
int csd_ctrl_init(struct csd_ctrl *ctrl);
int csd_ctrl_start(struct csd_ctrl *ctrl);
void csd_ctrl_shutdown(struct csd_ctrl *ctrl);
void csd_ctrl_remove(struct csd_ctrl *ctrl);
irqreturn_t csd_irq(int irq, void *data);
void csd_ctrl_kill(struct csd_ctrl *ctrl, const char *why, bool dma_stopped);
int csd_ctrl_reset(struct csd_ctrl *ctrl, const char *why);
struct csd_req *csd_req_alloc(struct csd_ctrl *ctrl, struct csd_file *file);
void csd_req_free(struct csd_req *req);
int csd_req_prepare_user(struct csd_req *req, const struct csd_ucmd *uc,
			 bool nowait);
int csd_req_start(struct csd_req *req, unsigned int timeout_ms, bool nowait);
int csd_req_user_finish(struct csd_req *req, u64 *result);
int csd_submit_user(struct csd_ctrl *ctrl, struct csd_file *file,
		    const struct csd_ucmd *uc, u64 *result);
int csd_submit_sync(struct csd_ctrl *ctrl, unsigned int qid,
		    struct csd_sqe *sqe, void *buf, u32 data_len,
		    bool to_dev, u32 *result);
void csd_release_contexts(struct csd_ctrl *ctrl, struct csd_file *file);

/* dma.c */
int csd_window_init(struct csd_ctrl *ctrl);
void csd_window_free(struct csd_ctrl *ctrl);
int csd_data_map_user(struct csd_req *req, void __user *ubuf, u32 len,
		      bool to_dev, bool nowait, unsigned long timeout);
int csd_data_map_kernel(struct csd_req *req, void *kbuf, u32 len,
			bool to_dev, bool nowait, unsigned long timeout);
int csd_data_finish(struct csd_req *req);
void csd_data_release(struct csd_req *req);
void csd_window_wake(struct csd_ctrl *ctrl);

/* ioctl.c */
extern const struct file_operations csd_fops;

/* sysfs.c */
extern const struct attribute_group *csd_attr_groups[];

/* pci.c */
void csd_ctrl_get(struct csd_ctrl *ctrl);
void csd_ctrl_put(struct csd_ctrl *ctrl);

#endif /* CSD_KMOD_H */
