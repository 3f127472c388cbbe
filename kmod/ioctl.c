// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl.c - the user ABI of /dev/csdN: the Linux NVMe passthrough ioctls
 * (<linux/nvme_ioctl.h>), so nvme-cli and libnvme work unchanged.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/nvme_ioctl.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "csd.h"

static int csd_open(struct inode *inode, struct file *f)
{
	struct csd_ctrl *ctrl = container_of(inode->i_cdev, struct csd_ctrl,
					     cdev);
	struct csd_file *cf;

	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return -ENOMEM;
	csd_ctrl_get(ctrl);
	cf->ctrl = ctrl;
	f->private_data = cf;
	return 0;
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

/* Commands an unprivileged user may send; everything else needs CAP_SYS_ADMIN. */
static bool csd_cmd_allowed(bool admin, u8 opc)
{
	if (capable(CAP_SYS_ADMIN))
		return true;
	if (admin)
		return opc == CSD_ADM_IDENTIFY || opc == CSD_ADM_GET_LOG_PAGE ||
		       opc == CSD_ADM_GET_FEATURES;
	switch (opc) {
	case CSD_IO_FLUSH:
	case CSD_IO_CTX_CREATE:
	case CSD_IO_CTX_DESTROY:
	case CSD_IO_KV_APPEND:
	case CSD_IO_KV_READ:
	case CSD_IO_SEQ_RESET:
	case CSD_IO_ATTN_SUBMIT:
	case CSD_IO_CTX_QUERY:
	case CSD_IO_ATTN_READ:
		return true;
	default:
		return false;
	}
}

/*
 * struct nvme_passthru_cmd is a prefix of struct nvme_passthru_cmd64 up to
 * timeout_ms; @is64 says which one user space passed.
 */
static int csd_user_cmd(struct csd_ctrl *ctrl, struct csd_file *cf,
			void __user *argp, bool admin, bool is64)
{
	struct nvme_passthru_cmd64 c;
	size_t len = is64 ? sizeof(c) : sizeof(struct nvme_passthru_cmd);
	struct csd_sqe sqe = { };
	u32 xfer, result = 0;
	int ret;

	memset(&c, 0, sizeof(c));
	if (copy_from_user(&c, argp, len))
		return -EFAULT;
	if (!is64) {
		struct nvme_passthru_cmd *c32 = (void *)&c;

		c.timeout_ms = c32->timeout_ms;
		c.rsvd2 = 0;
	}

	/* Validate every field before anything reaches the device. */
	if (c.flags || c.rsvd1 || c.metadata || c.metadata_len ||
	    (is64 && c.rsvd2))
		return -EINVAL;
	xfer = CSD_OPC_XFER(c.opcode);
	if (xfer == (CSD_XFER_TO_DEV | CSD_XFER_FROM_DEV))
		return -EINVAL;
	if (c.data_len && xfer == CSD_XFER_NONE)
		return -EINVAL;
	if (!c.data_len && c.addr)
		return -EINVAL;
	if (c.data_len > ctrl->max_xfer || c.data_len > ctrl->win.data_size)
		return -EINVAL;
	if (c.data_len && !access_ok(u64_to_user_ptr(c.addr), c.data_len))
		return -EFAULT;
	if (!csd_cmd_allowed(admin, c.opcode))
		return -EACCES;

	sqe.opcode = c.opcode;
	sqe.nsid = c.nsid;
	sqe.cdw2 = c.cdw2;
	sqe.cdw3 = c.cdw3;
	sqe.cdw10 = c.cdw10;
	sqe.cdw11 = c.cdw11;
	sqe.cdw12 = c.cdw12;
	sqe.cdw13 = c.cdw13;
	sqe.cdw14 = c.cdw14;
	sqe.cdw15 = c.cdw15;

	ret = csd_submit_user(ctrl, cf, admin, &sqe,
			      u64_to_user_ptr(c.addr), c.data_len,
			      c.timeout_ms, &result);
	if (ret < 0)
		return ret;
	if (is64) {
		struct nvme_passthru_cmd64 __user *u = argp;

		if (put_user((u64)result, &u->result))
			return -EFAULT;
	} else {
		struct nvme_passthru_cmd __user *u = argp;

		if (put_user(result, &u->result))
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
	default:
		ret = -ENOTTY;
		break;
	}
out:
	up_read(&ctrl->remove_lock);
	return ret;
}

const struct file_operations csd_fops = {
	.owner = THIS_MODULE,
	.open = csd_open,
	.release = csd_release,
	.unlocked_ioctl = csd_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};
