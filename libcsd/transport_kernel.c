// SPDX-License-Identifier: MIT
/*
 * transport_kernel.c - "/dev/NAME[,ioctl][,depth=N]": a drive behind a Linux
 * NVMe passthrough character device: /dev/csdN of csd.ko, or the generic
 * per-namespace node /dev/ngXnY of any NVMe controller that implements the
 * CSD command set.  Only the ABI of <linux/nvme_ioctl.h> is used.
 *
 * Fast path: io_uring passthrough (IORING_OP_URING_CMD on a ring set up
 * with SQE128 | CQE32; cmd_op NVME_URING_CMD_IO / NVME_URING_CMD_ADMIN,
 * struct nvme_uring_cmd in the SQE's command area).  Any number of
 * submitting threads share one ring (submission under a mutex, at most
 * depth commands in flight); a completion thread reaps the CQEs and calls
 * the library's callbacks.
 *
 * Fallback: the synchronous ioctls NVME_IOCTL_{ADMIN,IO}64_CMD (the 32-bit
 * result forms when the driver lacks the 64-bit ones), executed in the
 * submitting thread (the callback runs before submit returns), used
 *   - when asked for ("/dev/csd0,ioctl"),
 *   - when io_uring cannot be set up (old kernel, io_uring disabled),
 *   - per queue kind, when a uring_cmd says the driver does not implement
 *     it: the Identify probe at open for admin commands (any of -EINVAL,
 *     -EOPNOTSUPP, -ENOSYS, -ENOTTY; e.g. /dev/ngXnY takes only I/O
 *     uring_cmds), the first I/O command for I/O (-EOPNOTSUPP, -ENOSYS,
 *     -ENOTTY; that command is then re-issued through the ioctl).
 *
 * Completions: a status >= 0 from the kernel is the NVMe status field and
 * is passed through; the 64-bit result is CQE dw0 | dw1 << 32.  A negative
 * errno (the driver refused the command before the device saw it, or the
 * controller is dead) is reported as the nearest NVMe status, so callers
 * see the same status whichever side rejected it: -EINVAL -> INVALID_FIELD,
 * -EFAULT -> SGL_INVALID (-> -EFAULT), -EACCES/-EPERM -> Operation Denied
 * (generic 15h), -ETIMEDOUT/-EINTR/-ECANCELED -> ABORT_REQ, -ENOTTY/
 * -EOPNOTSUPP -> INVALID_OPCODE, anything else -> INTERNAL (-> -EIO); all
 * with DNR except -ENOMEM/-EAGAIN/-EBUSY/-EINTR.  The ABORT_REQ of those
 * errnos is the kernel giving up its wait (a timeout, a signal, a
 * cancelled uring_cmd), not the device dropping the command, which may
 * still run: such a completion has may_run set, unlike the positive
 * ABORT_REQ status of a controller reset (see kdev_reset).
 *
 * Data: the kernel ABI takes one user buffer per command.  A command with
 * one data segment passes it directly (the driver pins it); with several
 * segments (KV_APPEND's K and V, ATTN_SUBMIT, ATTN_READ with LSE) the
 * library coalesces them into one page-aligned bounce buffer (copied in
 * before a host-to-device command, copied out after a successful
 * device-to-host one).
 *
 * I/O commands naming namespace CSD_NSID are sent to the node's namespace
 * (NVME_IOCTL_ID), so /dev/ngXnY with another nsid works unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/nvme_ioctl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csd_internal.h"

#define KDEV_DEFAULT_DEPTH	64
#define KDEV_MAX_DEPTH		4096
#define KDEV_ALIGN		4096
#define KDEV_STOP		(~(uint64_t)0)	/* user_data of the stop NOP */
/* NVMe generic status 15h, Operation Denied (no csd_spec.h name) */

struct kdev_req {
	csd_cpl_fn done;
	void *arg;
	struct nvme_passthru_cmd64 cmd;	/* as sent (re-sent by the fallback) */
	bool admin;
	bool copy_out;
	void *bounce;			/* nseg > 1: coalesced data */
	struct csd_seg seg[CSD_MAX_SEGS];
	unsigned int nseg;
};

struct kdev_tp {
	int fd;
	uint32_t nsid;			/* NVME_IOCTL_ID, 0 if none */
	bool use_uring;			/* the ring exists */
	atomic_bool admin_ioctl;	/* admin commands go through ioctls */
	atomic_bool io_ioctl;		/* I/O commands go through ioctls */
	atomic_bool no_ioctl64;		/* only the 32-bit result ioctls */
	uint32_t depth;
	/* io_uring */
	struct io_uring ring;
	pthread_mutex_t sq_lock;	/* ring SQ side, slots */
	pthread_cond_t slot_cond;
	struct kdev_req *req;		/* [depth] */
	uint32_t *free_slot;		/* stack */
	uint32_t nfree;
	pthread_t thr;
	bool thr_started;
	/* commands in flight (both paths) */
	pthread_mutex_t plock;
	pthread_cond_t pcond;
	uint32_t pending;
};

/* ---- status mapping ---------------------------------------------------- */

static uint16_t errno_status(int err)
{
	uint16_t dnr = CSD_STATUS_DNR;
	uint8_t sc;

	switch (err) {
	case EINVAL:
	case E2BIG:
	case EOVERFLOW:
	case EMSGSIZE:
		sc = CSD_SC_INVALID_FIELD;
		break;
	case EFAULT:
		sc = CSD_SC_SGL_INVALID;
		break;
	case EACCES:
	case EPERM:
		sc = CSD_SC_OP_DENIED;
		break;
	case EINTR:
		dnr = 0;
		/* fall through */
	case ETIMEDOUT:
	case ECANCELED:
		sc = CSD_SC_ABORT_REQ;
		break;
	case ENOTTY:
	case EOPNOTSUPP:
		sc = CSD_SC_INVALID_OPCODE;
		break;
	case ENOMEM:
	case EAGAIN:
	case EBUSY:
		dnr = 0;
		sc = CSD_SC_INTERNAL;
		break;
	default:
		sc = CSD_SC_INTERNAL;
		break;
	}
	return (uint16_t)(CSD_STATUS(CSD_SCT_GENERIC, sc) | dnr);
}

/* Kernel return value (NVMe status >= 0, or -errno) and 64-bit result to a
 * library completion. */
static void kdev_cpl(struct csd_cpl *cpl, int ret, uint64_t result)
{
	memset(cpl, 0, sizeof(*cpl));
	if (ret < 0) {
		csd_debug("kernel: command failed: %s\n", strerror(-ret));
		cpl->status = errno_status(-ret);
		cpl->may_run = ret == -ETIMEDOUT || ret == -EINTR ||
			       ret == -ECANCELED;
		return;
	}
	cpl->status = (uint16_t)(ret & 0x7fff);
	cpl->dw0 = (uint32_t)result;
	cpl->dw1 = (uint32_t)(result >> 32);
}

/* ---- ioctl path ---------------------------------------------------------- */

static int kdev_ioctl(struct kdev_tp *t, bool admin,
		      struct nvme_passthru_cmd64 *c)
{
	struct nvme_passthru_cmd c32;
	int ret;

	if (!atomic_load(&t->no_ioctl64)) {
		do {
			ret = ioctl(t->fd, admin ? NVME_IOCTL_ADMIN64_CMD :
					   NVME_IOCTL_IO64_CMD, c);
		} while (ret < 0 && errno == EINTR);
		if (ret >= 0)
			return ret;
		if (errno != ENOTTY)
			return -errno;
		csd_debug("kernel: no 64-bit passthrough ioctls\n");
		atomic_store(&t->no_ioctl64, true);
	}
	/* nvme_passthru_cmd is nvme_passthru_cmd64 up to timeout_ms */
	memcpy(&c32, c, offsetof(struct nvme_passthru_cmd, result));
	c32.result = 0;
	do {
		ret = ioctl(t->fd, admin ? NVME_IOCTL_ADMIN_CMD :
				   NVME_IOCTL_IO_CMD, &c32);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return -errno;
	c->result = c32.result;
	return ret;
}

/* ---- completion ---------------------------------------------------------- */

static void pending_add(struct kdev_tp *t, int d)
{
	pthread_mutex_lock(&t->plock);
	t->pending = (uint32_t)((int)t->pending + d);
	if (!t->pending)
		pthread_cond_broadcast(&t->pcond);
	pthread_mutex_unlock(&t->plock);
}

/* Copy-out, free the bounce buffer and report.  @r is a private copy. */
static void req_report(struct kdev_tp *t, struct kdev_req *r, int ret,
		       uint64_t result)
{
	struct csd_cpl cpl;
	size_t off = 0;
	unsigned int i;

	kdev_cpl(&cpl, ret, result);
	if (r->bounce && r->copy_out && ret == 0) {
		for (i = 0; i < r->nseg; i++) {
			memcpy(r->seg[i].addr, (uint8_t *)r->bounce + off,
			       r->seg[i].len);
			off += r->seg[i].len;
		}
	}
	free(r->bounce);
	r->done(r->arg, &cpl);
	pending_add(t, -1);
}

static bool uring_unsupported(int res, bool strict)
{
	return res == -EOPNOTSUPP || res == -ENOSYS || res == -ENOTTY ||
	       (!strict && res == -EINVAL);
}

static void *completion_thread(void *arg)
{
	struct kdev_tp *t = arg;
	struct io_uring_cqe *cqe;
	struct kdev_req r;
	uint64_t ud, result;
	uint32_t slot;
	int rc, res;

	for (;;) {
		rc = io_uring_wait_cqe(&t->ring, &cqe);
		if (rc == -EINTR || rc == -EAGAIN)
			continue;
		if (rc < 0) {
			/* cannot happen with a valid ring; do not spin */
			csd_debug("kernel: io_uring_wait_cqe: %s\n",
				  strerror(-rc));
			usleep(10000);
			continue;
		}
		ud = cqe->user_data;
		res = cqe->res;
		/* CQE32: the 64-bit command result follows the 16-byte CQE */
		memcpy(&result, (const uint8_t *)cqe + sizeof(*cqe),
		       sizeof(result));
		io_uring_cqe_seen(&t->ring, cqe);
		if (ud == KDEV_STOP)
			break;
		if (ud == 0 || ud > t->depth) {
			csd_debug("kernel: CQE with bad user_data %llu\n",
				  (unsigned long long)ud);
			continue;
		}
		slot = (uint32_t)(ud - 1);

		pthread_mutex_lock(&t->sq_lock);
		r = t->req[slot];
		t->req[slot].done = NULL;
		t->free_slot[t->nfree++] = slot;
		pthread_cond_signal(&t->slot_cond);
		pthread_mutex_unlock(&t->sq_lock);

		if (!r.admin && uring_unsupported(res, true)) {
			/* the driver has no I/O uring_cmd: use the ioctl
			 * from now on, starting with this command */
			if (!atomic_exchange(&t->io_ioctl, true))
				csd_debug("kernel: I/O uring_cmd: %s, using "
					  "ioctls\n", strerror(-res));
			res = kdev_ioctl(t, false, &r.cmd);
			result = r.cmd.result;
		}
		req_report(t, &r, res, result);
	}
	return NULL;
}

/* Queue one command on the ring.  Returns 0 or -errno (nothing queued). */
static int uring_queue(struct kdev_tp *t, const struct kdev_req *in)
{
	struct nvme_uring_cmd uc;
	struct io_uring_sqe *sqe;
	uint32_t slot;
	int rc;

	memset(&uc, 0, sizeof(uc));
	uc.opcode = in->cmd.opcode;
	uc.flags = in->cmd.flags;
	uc.nsid = in->cmd.nsid;
	uc.cdw2 = in->cmd.cdw2;
	uc.cdw3 = in->cmd.cdw3;
	uc.addr = in->cmd.addr;
	uc.data_len = in->cmd.data_len;
	uc.cdw10 = in->cmd.cdw10;
	uc.cdw11 = in->cmd.cdw11;
	uc.cdw12 = in->cmd.cdw12;
	uc.cdw13 = in->cmd.cdw13;
	uc.cdw14 = in->cmd.cdw14;
	uc.cdw15 = in->cmd.cdw15;
	uc.timeout_ms = in->cmd.timeout_ms;

	pthread_mutex_lock(&t->sq_lock);
	while (!t->nfree)
		pthread_cond_wait(&t->slot_cond, &t->sq_lock);
	sqe = io_uring_get_sqe(&t->ring);
	if (!sqe) {
		/* every slot is free or in the kernel: cannot be full */
		pthread_mutex_unlock(&t->sq_lock);
		return -EBUSY;
	}
	slot = t->free_slot[--t->nfree];
	t->req[slot] = *in;
	memset(sqe, 0, 2 * sizeof(*sqe));	/* SQE128 */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = t->fd;
	sqe->cmd_op = in->admin ? NVME_URING_CMD_ADMIN : NVME_URING_CMD_IO;
	sqe->user_data = (uint64_t)slot + 1;
	memcpy((uint8_t *)sqe + offsetof(struct io_uring_sqe, addr3), &uc,
	       sizeof(uc));
	pending_add(t, 1);
	/* -EBUSY: CQ overflow being flushed by the completion thread */
	do {
		rc = io_uring_submit(&t->ring);
	} while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
	if (rc < 0)	/* the SQE stays queued; the next submit sends it */
		csd_debug("kernel: io_uring_submit: %s\n", strerror(-rc));
	pthread_mutex_unlock(&t->sq_lock);
	return 0;
}

/* ---- ops ----------------------------------------------------------------- */

static void kdev_free(struct kdev_tp *t)
{
	if (t->use_uring)
		io_uring_queue_exit(&t->ring);
	if (t->fd >= 0)
		close(t->fd);
	free(t->req);
	free(t->free_slot);
	pthread_mutex_destroy(&t->sq_lock);
	pthread_cond_destroy(&t->slot_cond);
	pthread_mutex_destroy(&t->plock);
	pthread_cond_destroy(&t->pcond);
	free(t);
}

/* "PATH[,ioctl][,depth=N]"; PATH is copied to @path. */
static int parse_opts(struct kdev_tp *t, const char *opts, char *path,
		      size_t plen, bool *force_ioctl)
{
	const char *comma = strchr(opts, ',');
	size_t n = comma ? (size_t)(comma - opts) : strlen(opts);
	unsigned long v;
	char *end;

	if (!n || n >= plen)
		return -EINVAL;
	memcpy(path, opts, n);
	path[n] = 0;
	*force_ioctl = false;
	t->depth = KDEV_DEFAULT_DEPTH;
	while (comma) {
		const char *o = comma + 1;
		size_t ol;

		comma = strchr(o, ',');
		ol = comma ? (size_t)(comma - o) : strlen(o);
		if (ol == 5 && !strncmp(o, "ioctl", 5)) {
			*force_ioctl = true;
		} else if (!strncmp(o, "depth=", 6)) {
			errno = 0;
			v = strtoul(o + 6, &end, 10);
			if (errno || end == o + 6 || (*end && *end != ',') ||
			    v < 1 || v > KDEV_MAX_DEPTH)
				return -EINVAL;
			t->depth = (uint32_t)v;
		} else {
			csd_debug("kernel: unknown option \"%.*s\"\n", (int)ol,
				  o);
			return -EINVAL;
		}
	}
	return 0;
}

static int uring_setup(struct kdev_tp *t)
{
	struct io_uring_params p;
	uint32_t i;
	int rc;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32 |
		  IORING_SETUP_CQSIZE;
	p.cq_entries = 2 * t->depth;
	rc = io_uring_queue_init_params(t->depth, &t->ring, &p);
	if (rc < 0)
		return rc;
	t->use_uring = true;
	t->req = calloc(t->depth, sizeof(*t->req));
	t->free_slot = calloc(t->depth, sizeof(*t->free_slot));
	if (!t->req || !t->free_slot)
		return -ENOMEM;
	for (i = 0; i < t->depth; i++)
		t->free_slot[i] = t->depth - 1 - i;
	t->nfree = t->depth;
	rc = pthread_create(&t->thr, NULL, completion_thread, t);
	if (rc)
		return -rc;
	t->thr_started = true;
	return 0;
}

/*
 * Identify Controller through a private ring: tells whether the driver takes
 * admin uring_cmds.  Returns -errno when io_uring itself is unusable (no
 * io_uring, no SQE128/CQE32), else 0 with the command's result in *res
 * (only looked at for "unsupported"; the library's own Identify follows).
 */
static int probe_admin(struct kdev_tp *t, int *res)
{
	struct io_uring_cqe *cqe;
	struct nvme_uring_cmd uc;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	struct io_uring_params p;
	void *buf = NULL;
	int rc;

	*res = 0;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	rc = io_uring_queue_init_params(2, &ring, &p);
	if (rc < 0)
		return rc;
	if (posix_memalign(&buf, KDEV_ALIGN, CSD_ID_SIZE)) {
		io_uring_queue_exit(&ring);
		return -ENOMEM;
	}
	memset(&uc, 0, sizeof(uc));
	uc.opcode = CSD_ADM_IDENTIFY;
	uc.cdw10 = CSD_ID_CNS_CTRL;
	uc.addr = (uint64_t)(uintptr_t)buf;
	uc.data_len = CSD_ID_SIZE;
	sqe = io_uring_get_sqe(&ring);
	if (!sqe) {
		rc = -EIO;
		goto out;
	}
	memset(sqe, 0, 2 * sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = t->fd;
	sqe->cmd_op = NVME_URING_CMD_ADMIN;
	sqe->user_data = 1;
	memcpy((uint8_t *)sqe + offsetof(struct io_uring_sqe, addr3), &uc,
	       sizeof(uc));
	do {
		rc = io_uring_submit(&ring);
	} while (rc == -EINTR || rc == -EAGAIN);
	if (rc == 1) {
		do {
			rc = io_uring_wait_cqe(&ring, &cqe);
		} while (rc == -EINTR);
		if (!rc) {
			*res = cqe->res;
			io_uring_cqe_seen(&ring, cqe);
		}
	} else if (rc >= 0) {
		rc = -EIO;
	}
out:
	io_uring_queue_exit(&ring);
	free(buf);
	return rc;
}

static int kdev_open(struct csd_dev *dev, const char *opts)
{
	char path[4096];
	struct kdev_tp *t;
	struct stat st;
	bool force_ioctl;
	int rc;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->fd = -1;
	pthread_mutex_init(&t->sq_lock, NULL);
	pthread_cond_init(&t->slot_cond, NULL);
	pthread_mutex_init(&t->plock, NULL);
	pthread_cond_init(&t->pcond, NULL);
	atomic_init(&t->admin_ioctl, false);
	atomic_init(&t->io_ioctl, false);
	atomic_init(&t->no_ioctl64, false);
	rc = parse_opts(t, opts ? opts : "", path, sizeof(path), &force_ioctl);
	if (rc)
		goto err;
	t->fd = open(path, O_RDWR | O_CLOEXEC);
	if (t->fd < 0) {
		rc = -errno;
		csd_debug("kernel: %s: %s\n", path, strerror(-rc));
		goto err;
	}
	if (fstat(t->fd, &st) < 0 || !S_ISCHR(st.st_mode)) {
		csd_debug("kernel: %s: not a character device\n", path);
		rc = -ENODEV;
		goto err;
	}
	rc = ioctl(t->fd, NVME_IOCTL_ID);
	t->nsid = rc > 0 ? (uint32_t)rc : 0;

	if (!force_ioctl) {
		int res;

		rc = probe_admin(t, &res);
		if (rc || res == -EINVAL) {
			/* no io_uring, no SQE128/CQE32, or no URING_CMD
			 * opcode (older than 5.19) */
			csd_debug("kernel: io_uring unavailable (%s), using "
				  "ioctls\n", strerror(rc ? -rc : -res));
			force_ioctl = true;
		} else if (uring_unsupported(res, true)) {
			/* the node takes no admin uring_cmd (/dev/ngXnY) */
			csd_debug("kernel: admin uring_cmd: %s, using ioctls\n",
				  strerror(-res));
			atomic_store(&t->admin_ioctl, true);
		}
	}
	if (!force_ioctl) {
		rc = uring_setup(t);
		if (rc) {
			csd_debug("kernel: io_uring setup: %s\n",
				  strerror(-rc));
			goto err;
		}
	} else {
		atomic_store(&t->admin_ioctl, true);
		atomic_store(&t->io_ioctl, true);
	}
	csd_debug("kernel: %s nsid %u, admin %s, I/O %s\n", path, t->nsid,
		  atomic_load(&t->admin_ioctl) ? "ioctl" : "io_uring",
		  atomic_load(&t->io_ioctl) ? "ioctl" : "io_uring");
	dev->tp = t;
	return 0;
err:
	if (t->thr_started) {
		/* only uring_setup's allocation failures get here with the
		 * thread running: stop it like close does */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);

		if (sqe) {
			io_uring_prep_nop(sqe);
			sqe->user_data = KDEV_STOP;
			io_uring_submit(&t->ring);
		}
		pthread_join(t->thr, NULL);
	}
	kdev_free(t);
	return rc;
}

static void kdev_close(struct csd_dev *dev)
{
	struct kdev_tp *t = dev->tp;
	struct io_uring_sqe *sqe;

	if (!t)
		return;
	/* the driver completes every command (at worst with a timeout or
	 * -EIO when the controller dies): this wait is bounded */
	pthread_mutex_lock(&t->plock);
	while (t->pending)
		pthread_cond_wait(&t->pcond, &t->plock);
	pthread_mutex_unlock(&t->plock);
	if (t->thr_started) {
		pthread_mutex_lock(&t->sq_lock);
		sqe = io_uring_get_sqe(&t->ring);
		if (sqe) {
			io_uring_prep_nop(sqe);
			sqe->user_data = KDEV_STOP;
			io_uring_submit(&t->ring);
		}
		pthread_mutex_unlock(&t->sq_lock);
		if (sqe)
			pthread_join(t->thr, NULL);
		else
			pthread_detach(t->thr);
	}
	kdev_free(t);
	dev->tp = NULL;
}

static int kdev_submit(struct csd_dev *dev, int admin, const struct csd_sqe *sqe,
		       const struct csd_seg *seg, unsigned int nseg,
		       csd_cpl_fn done, void *arg)
{
	struct kdev_tp *t = dev->tp;
	uint8_t dir = CSD_OPC_XFER(sqe->opcode);
	struct kdev_req r;
	size_t len = 0, off;
	unsigned int i;
	int rc;

	if (nseg > CSD_MAX_SEGS)
		return -EINVAL;
	for (i = 0; i < nseg; i++)
		len += seg[i].len;
	if (len > UINT32_MAX)
		return -EINVAL;

	memset(&r, 0, sizeof(r));
	r.done = done;
	r.arg = arg;
	r.admin = admin != 0;
	r.cmd.opcode = sqe->opcode;
	r.cmd.flags = sqe->flags;
	r.cmd.nsid = sqe->nsid;
	if (!admin && sqe->nsid == CSD_NSID && t->nsid)
		r.cmd.nsid = t->nsid;
	r.cmd.cdw2 = sqe->cdw2;
	r.cmd.cdw3 = sqe->cdw3;
	r.cmd.cdw10 = sqe->cdw10;
	r.cmd.cdw11 = sqe->cdw11;
	r.cmd.cdw12 = sqe->cdw12;
	r.cmd.cdw13 = sqe->cdw13;
	r.cmd.cdw14 = sqe->cdw14;
	r.cmd.cdw15 = sqe->cdw15;
	r.cmd.data_len = (uint32_t)len;
	if (nseg == 1) {
		r.cmd.addr = (uint64_t)(uintptr_t)seg[0].addr;
	} else if (nseg > 1 && len) {
		size_t alen = (len + KDEV_ALIGN - 1) & ~(size_t)(KDEV_ALIGN - 1);

		if (posix_memalign(&r.bounce, KDEV_ALIGN, alen))
			return -ENOMEM;
		if (dir & CSD_XFER_TO_DEV) {
			for (i = 0, off = 0; i < nseg; i++) {
				memcpy((uint8_t *)r.bounce + off, seg[i].addr,
				       seg[i].len);
				off += seg[i].len;
			}
		}
		r.copy_out = (dir & CSD_XFER_FROM_DEV) != 0;
		r.nseg = nseg;
		for (i = 0; i < nseg; i++)
			r.seg[i] = seg[i];
		r.cmd.addr = (uint64_t)(uintptr_t)r.bounce;
	}

	if (atomic_load(admin ? &t->admin_ioctl : &t->io_ioctl)) {
		pending_add(t, 1);
		rc = kdev_ioctl(t, r.admin, &r.cmd);
		req_report(t, &r, rc, r.cmd.result);
		return 0;
	}
	rc = uring_queue(t, &r);
	if (rc)
		free(r.bounce);
	return rc;
}

/*
 * Controller reset (csd_dev_reset): NVME_IOCTL_RESET.  csd.ko (device
 * interface v1.2) fails every command in flight with ABORT_REQ -- the
 * ioctl or uring_cmd returns the positive status 0x4007, which
 * kdev_cpl() passes through (-ECANCELED; the device has discarded the
 * command, may_run stays clear) -- unpins their buffers after the
 * daemon's ack, and returns once the controller is live again.  The
 * driver requires CAP_SYS_ADMIN (-EACCES/-EPERM otherwise).  Not retried
 * on EINTR: a reset may have happened.
 */
static int kdev_reset(struct csd_dev *dev)
{
	struct kdev_tp *t = dev->tp;

	if (ioctl(t->fd, NVME_IOCTL_RESET) < 0) {
		int err = errno;

		csd_debug("kernel: NVME_IOCTL_RESET: %s\n", strerror(err));
		return -err;
	}
	return 0;
}

const struct csd_transport_ops csd_transport_kernel = {
	.name = "kernel",
	.open = kdev_open,
	.close = kdev_close,
	.submit = kdev_submit,
	.reset = kdev_reset,
};
