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
#include <linux/kref.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/rwsem.h>
#include <linux/semaphore.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "csd_devif.h"

#define CSD_DRV_NAME		"csd"
#define CSD_MAX_MINORS		64

/* ivshmem BAR0 registers */
#define CSD_IVSHM_IVPOSITION	0x08
#define CSD_IVSHM_DOORBELL	0x0c

/* One in-flight command. */
struct csd_cmd {
	struct completion done;
	struct csd_sqe sqe;
	u32 data_len;
	u16 status;		/* NVMe status field (CQE status >> 1) */
	u32 result;		/* CQE dw0 */
	int error;		/* transport error: -EIO (dead controller) */
};

/* One queue pair in the client area of BAR2. */
struct csd_queue {
	struct csd_ctrl *ctrl;
	spinlock_t lock;	/* SQ tail, CQ head, cmds[] */
	u16 qid;
	u16 depth;
	u16 sq_tail;
	u16 cq_head;
	u8 cq_phase;
	struct csd_sqe *sq;
	struct csd_devif_sqx *sqx;
	struct csd_cqe *cq;
	struct csd_devif_qdb *db;
	struct csd_cmd **cmds;	/* indexed by CID */
	unsigned int inflight;
	struct semaphore slots;	/* depth - 1 commands at most */
};

/* Data window chunks: fixed-size bounce buffers, each with room for PRP lists. */
struct csd_window {
	void *base;		/* kernel address of the window */
	u64 dev_off;		/* window offset for PRPs (CSD_DEVIF_ADDR_WINDOW) */
	size_t chunk_size;
	size_t data_size;	/* bytes of data per chunk (>= max_xfer) */
	unsigned int nr_chunks;
	unsigned long *busy;	/* bitmap of chunks in use */
	spinlock_t lock;	/* busy */
	struct semaphore free;	/* free chunks */
};

struct csd_ctrl {
	struct pci_dev *pdev;
	struct device dev;	/* /dev/csdN, holds the last reference */
	struct cdev cdev;
	int instance;

	void __iomem *bar0;
	void *shm;		/* BAR2, mapped write-back */
	size_t shm_size;
	struct csd_devif_regs *regs;
	struct csd_devif_client *client;
	void *client_area;

	u32 caps;
	u32 version;
	u32 max_xfer;
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
	bool dead;

	/* removal vs. users */
	struct rw_semaphore remove_lock;
	bool removed;

	/* identify data */
	char model[41];
	char serial[21];
	char firmware_rev[9];
	char fw_version[17];

	/* contexts owned by open files: ctx id -> struct csd_file * */
	struct xarray contexts;
	atomic64_t commands;
	atomic64_t errors;
	atomic64_t timeouts;
};

/* Per open file of /dev/csdN. */
struct csd_file {
	struct csd_ctrl *ctrl;
};

extern unsigned int csd_io_timeout;
extern unsigned int csd_admin_timeout;

/* core.c */
int csd_ctrl_init(struct csd_ctrl *ctrl);
int csd_ctrl_start(struct csd_ctrl *ctrl);
void csd_ctrl_shutdown(struct csd_ctrl *ctrl);
irqreturn_t csd_irq(int irq, void *data);
void csd_ctrl_kill(struct csd_ctrl *ctrl, const char *why);
int csd_submit_user(struct csd_ctrl *ctrl, struct csd_file *file, bool admin,
		    struct csd_sqe *sqe, void __user *ubuf, u32 data_len,
		    unsigned int timeout_ms, u32 *result);
int csd_submit_sync(struct csd_ctrl *ctrl, unsigned int qid,
		    struct csd_sqe *sqe, void *buf, u32 data_len,
		    bool to_dev, u32 *result);
void csd_release_contexts(struct csd_ctrl *ctrl, struct csd_file *file);

/* ioctl.c */
extern const struct file_operations csd_fops;

/* sysfs.c */
extern const struct attribute_group *csd_attr_groups[];

/* pci.c */
void csd_ctrl_get(struct csd_ctrl *ctrl);
void csd_ctrl_put(struct csd_ctrl *ctrl);

#endif /* CSD_KMOD_H */
