// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl.c - the user ABI of /dev/csdN: the Linux NVMe passthrough ioctls
 * and io_uring passthrough (NVME_URING_CMD_IO/_ADMIN, SQE128/CQE32) with
 * the structures of <linux/nvme_ioctl.h>, so nvme-cli, libnvme and liburing
 * work unchanged.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/nvme_ioctl.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "csd.h"

static int csd_open(struct inode *inode, struct file *f)
{
	struct csd_ctrl *ctrl = container_of(inode->i_cdev, struct csd_ctrl,
					     cdev);
	struct csd_file *cf;
	int ret = 0;

	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return -ENOMEM;
	/* an open that found the cdev just before removal deleted it */
	down_read(&ctrl->remove_lock);
	if (ctrl->removed) {
		ret = -ENODEV;
	} else {
		csd_ctrl_get(ctrl);
		cf->ctrl = ctrl;
		f->private_data = cf;
	}
	up_read(&ctrl->remove_lock);
	if (ret)
		kfree(cf);
	return ret;
}

static int csd_release(struct inode *inode, struct file *f)
{
	struct csd_file *cf = f->private_data;
	struct csd_ctrl *ctrl = cf->ctrl;

	down_read(&ctrl->remove_lock);
	if (!ctrl->removed)
		csd_release_contexts(ctrl, cf);
	up_read(&ctrl->remove_lock);
	csd_ctrl_put(ctrl);
	kfree(cf);
	return 0;
}

/*
 * Commands an unprivileged user may send; everything else needs
 * CAP_SYS_ADMIN.  capable() only for the others, so that everyday commands
 * neither mark the task as having used privilege nor log LSM denials.
 */
static bool csd_cmd_allowed(bool admin, u8 opc)
{
	if (admin) {
		if (opc == CSD_ADM_IDENTIFY || opc == CSD_ADM_GET_LOG_PAGE ||
		    opc == CSD_ADM_GET_FEATURES)
			return true;
		return capable(CAP_SYS_ADMIN);
	}
	return csd_io_known(opc) || capable(CAP_SYS_ADMIN);
}

/* Fields of the ABI structures that must be zero: flags, rsvd, metadata. */
struct csd_uhdr {
	u8 flags;
	u16 rsvd1;
	u32 rsvd2;
	u64 metadata;
	u32 metadata_len;
};

/**
 * csd_validate() - check a user command before anything reaches the device
 * @ctrl: the controller (for max_xfer)
 * @h: the ABI fields that must be zero
 * @uc: the command
 *
 * In order: the opcode (privilege), the reserved fields, the data
 * direction, the length against max_xfer, the user range.  Context
 * ownership is checked later, in csd_req_prepare_user().
 *
 * Return: 0, -EACCES, -EINVAL or -EFAULT.
 */
static int csd_validate(struct csd_ctrl *ctrl, const struct csd_uhdr *h,
			const struct csd_ucmd *uc)
{
	u8 xfer = CSD_OPC_XFER(uc->sqe.opcode);

	if (!csd_cmd_allowed(uc->admin, uc->sqe.opcode))
		return -EACCES;
	if (h->flags || h->rsvd1 || h->rsvd2 || h->metadata || h->metadata_len)
		return -EINVAL;
	if (xfer == (CSD_XFER_TO_DEV | CSD_XFER_FROM_DEV))
		return -EINVAL;
	if (uc->data_len && xfer == CSD_XFER_NONE)
		return -EINVAL;
	if (!uc->data_len && uc->addr)
		return -EINVAL;
	if (uc->data_len > ctrl->max_xfer)
		return -EINVAL;
	if (uc->data_len &&
	    !access_ok(u64_to_user_ptr(uc->addr), uc->data_len))
		return -EFAULT;
	return 0;
}

static void csd_fill_sqe(struct csd_sqe *sqe, u8 opcode, u32 nsid, u32 cdw2,
			 u32 cdw3, const u32 *cdw10_15)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = opcode;
	sqe->nsid = nsid;
	sqe->cdw2 = cdw2;
	sqe->cdw3 = cdw3;
	sqe->cdw10 = cdw10_15[0];
	sqe->cdw11 = cdw10_15[1];
	sqe->cdw12 = cdw10_15[2];
	sqe->cdw13 = cdw10_15[3];
	sqe->cdw14 = cdw10_15[4];
	sqe->cdw15 = cdw10_15[5];
}

/*
 * Take a passthrough command apart into the fields csd_validate() checks
 * (@h) and the command to send (@uc).  A macro because the ioctl
 * (struct nvme_passthru_cmd64) and io_uring (struct nvme_uring_cmd) forms
 * have the same field names but different layouts.
 */
#define CSD_FROM_PASSTHRU(cmd, hdr, ucmd)				\
	do {								\
		const __auto_type __c = (cmd);				\
		struct csd_uhdr *__h = (hdr);				\
		struct csd_ucmd *__u = (ucmd);				\
		u32 __cdw[6] = { __c->cdw10, __c->cdw11, __c->cdw12,	\
				 __c->cdw13, __c->cdw14, __c->cdw15 };	\
									\
		__h->flags = __c->flags;				\
		__h->rsvd1 = __c->rsvd1;				\
		__h->rsvd2 = __c->rsvd2;				\
		__h->metadata = __c->metadata;				\
		__h->metadata_len = __c->metadata_len;			\
		csd_fill_sqe(&__u->sqe, __c->opcode, __c->nsid,		\
			     __c->cdw2, __c->cdw3, __cdw);		\
		__u->addr = __c->addr;					\
		__u->data_len = __c->data_len;				\
		__u->timeout_ms = __c->timeout_ms;			\
	} while (0)

/**
 * csd_user_cmd() - NVME_IOCTL_{ADMIN,IO}{,64}_CMD
 * @ctrl: the controller
 * @cf: the open file
 * @argp: struct nvme_passthru_cmd or struct nvme_passthru_cmd64 in user space
 * @admin: admin queue
 * @is64: @argp is the 64-bit form (64-bit result)
 *
 * struct nvme_passthru_cmd is a prefix of struct nvme_passthru_cmd64 up to
 * timeout_ms.  The structure is copied in once and validated.
 *
 * Return: a negative errno or the NVMe status field (>= 0).
 */
static int csd_user_cmd(struct csd_ctrl *ctrl, struct csd_file *cf,
			void __user *argp, bool admin, bool is64)
{
	struct nvme_passthru_cmd64 c;
	size_t len = is64 ? sizeof(c) : sizeof(struct nvme_passthru_cmd);
	struct csd_uhdr h = { };
	struct csd_ucmd uc = { };
	u64 result = 0;
	int ret;

	memset(&c, 0, sizeof(c));
	if (copy_from_user(&c, argp, len))
		return -EFAULT;
	if (!is64) {
		struct nvme_passthru_cmd *c32 = (void *)&c;

		c.timeout_ms = c32->timeout_ms;
		c.rsvd2 = 0;
	}
	CSD_FROM_PASSTHRU(&c, &h, &uc);
	uc.admin = admin;
	ret = csd_validate(ctrl, &h, &uc);
	if (ret)
		return ret;

	ret = csd_submit_user(ctrl, cf, &uc, &result);
	if (ret < 0)
		return ret;
	if (is64) {
		struct nvme_passthru_cmd64 __user *u = argp;

		if (put_user(result, &u->result))
			return -EFAULT;
	} else {
		struct nvme_passthru_cmd __user *u = argp;

		if (put_user((u32)result, &u->result))
			return -EFAULT;
	}
	return ret;
}

static long csd_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct csd_file *cf = f->private_data;
	struct csd_ctrl *ctrl = cf->ctrl;
	void __user *argp = (void __user *)arg;
	long ret;

	down_read(&ctrl->remove_lock);
	if (ctrl->removed) {
		ret = -ENODEV;
		goto out;
	}
	switch (cmd) {
	case NVME_IOCTL_ID:
		ret = CSD_NSID;
		break;
	case NVME_IOCTL_ADMIN_CMD:
		ret = csd_user_cmd(ctrl, cf, argp, true, false);
		break;
	case NVME_IOCTL_ADMIN64_CMD:
		ret = csd_user_cmd(ctrl, cf, argp, true, true);
		break;
	case NVME_IOCTL_IO_CMD:
		ret = csd_user_cmd(ctrl, cf, argp, false, false);
		break;
	case NVME_IOCTL_IO64_CMD:
		ret = csd_user_cmd(ctrl, cf, argp, false, true);
		break;
	case NVME_IOCTL_RESET:
		if (!capable(CAP_SYS_ADMIN))
			ret = -EACCES;
		else
			ret = csd_ctrl_reset(ctrl, "NVME_IOCTL_RESET");
		break;
	default:
		ret = -ENOTTY;
		break;
	}
out:
	up_read(&ctrl->remove_lock);
	return ret;
}

/* io_uring passthrough: per-command state in io_uring_cmd.pdu */
struct csd_uring_pdu {
	struct csd_req *req;	/* completed: ours to finish */
	int error;		/* else the error */
};

static struct csd_uring_pdu *csd_uring_pdu(struct io_uring_cmd *ioucmd)
{
	return (struct csd_uring_pdu *)&ioucmd->pdu;
}

/* Task context of the submitter: copy out, then post the CQE. */
static void csd_uring_task_cb(struct io_uring_cmd *ioucmd,
			      unsigned int issue_flags)
{
	struct csd_uring_pdu *pdu = csd_uring_pdu(ioucmd);
	u64 result = 0;
	int ret;

	if (pdu->req)
		ret = csd_req_user_finish(pdu->req, &result);
	else
		ret = pdu->error;
	/* as nvme: res = status field or -errno, res2 (CQE32) = dw0 */
	io_uring_cmd_done(ioucmd, ret, result, issue_flags);
}

/* Submitter side ends (q->lock held, any context). */
static void csd_uring_end_io(struct csd_req *req, int error)
{
	struct io_uring_cmd *ioucmd = req->end_io_data;
	struct csd_uring_pdu *pdu = csd_uring_pdu(ioucmd);

	pdu->req = error ? NULL : req;
	pdu->error = error;
	io_uring_cmd_complete_in_task(ioucmd, csd_uring_task_cb);
}

/**
 * csd_uring_cmd() - io_uring passthrough (NVME_URING_CMD_IO/_ADMIN)
 * @ioucmd: the command; struct nvme_uring_cmd in the 128-byte SQE
 * @issue_flags: IO_URING_F_*
 *
 * Validated like the ioctls and queued without waiting.  The CQE is posted
 * exactly once, from the submitter's task (csd_uring_task_cb()), on
 * completion, timeout (watchdog) or controller death.  io_uring holds the
 * file until then, so the open file (and the context owner) outlives it.
 *
 * Return: -EIOCBQUEUED, or a negative errno (-EAGAIN with
 * IO_URING_F_NONBLOCK when a queue, window, removal or the allocation of a
 * filtered contexts log would block).
 */
static int csd_uring_cmd(struct io_uring_cmd *ioucmd, unsigned int issue_flags)
{
	struct csd_file *cf = ioucmd->file->private_data;
	struct csd_ctrl *ctrl = cf->ctrl;
	bool nowait = issue_flags & IO_URING_F_NONBLOCK;
	struct nvme_uring_cmd c;
	struct csd_uhdr h = { };
	struct csd_ucmd uc = { };
	struct csd_req *req;
	int ret;

	BUILD_BUG_ON(sizeof(struct csd_uring_pdu) > sizeof(ioucmd->pdu));
	if ((issue_flags & (IO_URING_F_SQE128 | IO_URING_F_CQE32)) !=
	    (IO_URING_F_SQE128 | IO_URING_F_CQE32))
		return -EOPNOTSUPP;
	switch (ioucmd->cmd_op) {
	case NVME_URING_CMD_IO:
		uc.admin = false;
		break;
	case NVME_URING_CMD_ADMIN:
		uc.admin = true;
		break;
	default:
		return -ENOTTY;
	}
	/* the SQE is shared with user space: read it once */
	memcpy(&c, ioucmd->cmd, sizeof(c));
	CSD_FROM_PASSTHRU(&c, &h, &uc);

	/* IO_URING_F_NONBLOCK: do not sleep behind a removal */
	if (nowait) {
		if (!down_read_trylock(&ctrl->remove_lock)) {
			atomic64_inc(&ctrl->eagain);
			return -EAGAIN;
		}
	} else {
		down_read(&ctrl->remove_lock);
	}
	if (ctrl->removed) {
		ret = -ENODEV;
		goto out;
	}
	ret = csd_validate(ctrl, &h, &uc);
	if (ret)
		goto out;
	req = csd_req_alloc(ctrl, cf);
	if (!req) {
		ret = -ENOMEM;
		goto out;
	}
	ret = csd_req_prepare_user(req, &uc, nowait);
	if (!ret) {
		req->end_io = csd_uring_end_io;
		req->end_io_data = ioucmd;
		ret = csd_req_start(req, uc.timeout_ms, nowait);
	}
	if (ret) {
		req->end_io = NULL;
		csd_req_free(req);
		goto out;
	}
	atomic64_inc(&ctrl->uring_cmds);
	ret = -EIOCBQUEUED;
out:
	up_read(&ctrl->remove_lock);
	if (ret == -EAGAIN)
		atomic64_inc(&ctrl->eagain);
	return ret;
}

const struct file_operations csd_fops = {
	.owner = THIS_MODULE,
	.open = csd_open,
	.release = csd_release,
	.unlocked_ioctl = csd_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.uring_cmd = csd_uring_cmd,
	.llseek = noop_llseek,
};
