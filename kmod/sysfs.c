// SPDX-License-Identifier: GPL-2.0
/*
 * sysfs.c - attributes of /sys/class/csd/csdN.
 */
#include <linux/device.h>
#include <linux/kstrtox.h>
#include <linux/sysfs.h>

#include "csd.h"

static struct csd_ctrl *to_csd(struct device *dev)
{
	return container_of(dev, struct csd_ctrl, dev);
}

static ssize_t model_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	return sysfs_emit(buf, "%s\n", to_csd(dev)->model);
}
static DEVICE_ATTR_RO(model);

static ssize_t serial_show(struct device *dev, struct device_attribute *attr,
			   char *buf)
{
	return sysfs_emit(buf, "%s\n", to_csd(dev)->serial);
}
static DEVICE_ATTR_RO(serial);

static ssize_t firmware_rev_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", to_csd(dev)->fw_version);
}
static DEVICE_ATTR_RO(firmware_rev);

static ssize_t interface_version_show(struct device *dev,
				      struct device_attribute *attr, char *buf)
{
	u32 v = to_csd(dev)->version;

	return sysfs_emit(buf, "%u.%u\n", v >> 16, v & 0xffff);
}
static DEVICE_ATTR_RO(interface_version);

static ssize_t state_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct csd_ctrl *ctrl = to_csd(dev);
	const char *state = "live";

	if (READ_ONCE(ctrl->dead))
		state = "dead";
	else if (READ_ONCE(ctrl->resetting))
		state = "resetting";
	return sysfs_emit(buf, "%s\n", state);
}
static DEVICE_ATTR_RO(state);

static ssize_t stats_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct csd_ctrl *ctrl = to_csd(dev);

	return sysfs_emit(buf,
			  "commands %lld\nerrors %lld\ntimeouts %lld\nresets %lld\nuring_cmds %lld\npinned %lld\nbounced %lld\neagain %lld\n",
			  (long long)atomic64_read(&ctrl->commands),
			  (long long)atomic64_read(&ctrl->errors),
			  (long long)atomic64_read(&ctrl->timeouts),
			  (long long)atomic64_read(&ctrl->resets),
			  (long long)atomic64_read(&ctrl->uring_cmds),
			  (long long)atomic64_read(&ctrl->pinned_cmds),
			  (long long)atomic64_read(&ctrl->bounce_cmds),
			  (long long)atomic64_read(&ctrl->eagain));
}
static DEVICE_ATTR_RO(stats);

static ssize_t contexts_in_use_show(struct device *dev,
				    struct device_attribute *attr, char *buf)
{
	struct csd_ctrl *ctrl = to_csd(dev);
	unsigned long id, n = 0;
	void *owner;

	xa_for_each(&ctrl->contexts, id, owner)
		n++;
	return sysfs_emit(buf, "%lu\n", n);
}
static DEVICE_ATTR_RO(contexts_in_use);

static ssize_t data_path_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	struct csd_ctrl *ctrl = to_csd(dev);
	bool ram = ctrl->caps & CSD_DEVIF_CAP_DMA_RAM &&
		   READ_ONCE(csd_guest_dma);

	return sysfs_emit(buf, "%s\n", ram ? "guest-ram" : "window");
}
static DEVICE_ATTR_RO(data_path);

static ssize_t queues_show(struct device *dev, struct device_attribute *attr,
			   char *buf)
{
	struct csd_ctrl *ctrl = to_csd(dev);

	return sysfs_emit(buf, "%u %u\n", ctrl->nr_io_queues, ctrl->depth);
}
static DEVICE_ATTR_RO(queues);

static ssize_t max_xfer_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", to_csd(dev)->max_xfer);
}
static DEVICE_ATTR_RO(max_xfer);

/*
 * Write 1 (root: the file is 0200): controller reset, as NVME_IOCTL_RESET.
 * Returns when it is done; device removal waits for it (at most
 * admin_timeout).
 */
static ssize_t reset_controller_store(struct device *dev,
				      struct device_attribute *attr,
				      const char *buf, size_t count)
{
	bool on;
	int ret;

	ret = kstrtobool(buf, &on);
	if (ret)
		return ret;
	if (!on)
		return -EINVAL;
	ret = csd_ctrl_reset(to_csd(dev), "sysfs reset_controller");
	return ret ? ret : count;
}
static DEVICE_ATTR_WO(reset_controller);

static struct attribute *csd_attrs[] = {
	&dev_attr_model.attr,
	&dev_attr_serial.attr,
	&dev_attr_firmware_rev.attr,
	&dev_attr_interface_version.attr,
	&dev_attr_state.attr,
	&dev_attr_stats.attr,
	&dev_attr_contexts_in_use.attr,
	&dev_attr_data_path.attr,
	&dev_attr_queues.attr,
	&dev_attr_max_xfer.attr,
	&dev_attr_reset_controller.attr,
	NULL,
};

static const struct attribute_group csd_attr_group = {
	.attrs = csd_attrs,
};

const struct attribute_group *csd_attr_groups[] = {
	&csd_attr_group,
	NULL,
};
