// SPDX-License-Identifier: GPL-2.0
/*
 * pci.c - PCI glue of csd.ko: binds QEMU's ivshmem-doorbell device
 * (1af4:1110) when its BAR2 carries the csd device interface, maps the BARs,
 * sets up MSI-X (vector v = queue v) and creates /dev/csdN.
 */
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "csd.h"

#define CSD_MAX_TIMEOUT_S	3600

/* Timeouts are 1..CSD_MAX_TIMEOUT_S seconds: 0 would fail every command. */
static int csd_param_set_timeout(const char *val, const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, 1, CSD_MAX_TIMEOUT_S);
}

static const struct kernel_param_ops csd_timeout_ops = {
	.set = csd_param_set_timeout,
	.get = param_get_uint,
};

unsigned int csd_io_timeout = 30;
module_param_cb(io_timeout, &csd_timeout_ops, &csd_io_timeout, 0644);
__MODULE_PARM_TYPE(io_timeout, "uint");
MODULE_PARM_DESC(io_timeout,
		 "I/O command timeout in seconds, 1..3600 (default 30); a command still running then resets the controller");

unsigned int csd_admin_timeout = 10;
module_param_cb(admin_timeout, &csd_timeout_ops, &csd_admin_timeout, 0644);
__MODULE_PARM_TYPE(admin_timeout, "uint");
MODULE_PARM_DESC(admin_timeout,
		 "admin (and driver-internal) command and controller reset timeout in seconds, 1..3600 (default 10)");

bool csd_guest_dma = true;
module_param_named(guest_dma, csd_guest_dma, bool, 0644);
MODULE_PARM_DESC(guest_dma,
		 "pin user buffers and pass guest-RAM PRPs when the device maps guest RAM (default Y; N: always bounce through the data window)");

struct workqueue_struct *csd_wq;

static DEFINE_IDA(csd_ida);
static dev_t csd_devt;
static struct class *csd_class;

#define CSD_BAR_REGS	0
#define CSD_BAR_SHM	2

static void csd_dev_release(struct device *dev)
{
	struct csd_ctrl *ctrl = container_of(dev, struct csd_ctrl, dev);

	csd_ctrl_shutdown(ctrl);
	if (ctrl->shm)
		memunmap(ctrl->shm);
	xa_destroy(&ctrl->contexts);
	ida_free(&csd_ida, ctrl->instance);
	pci_dev_put(ctrl->pdev);
	kfree(ctrl);
}

void csd_ctrl_get(struct csd_ctrl *ctrl)
{
	get_device(&ctrl->dev);
}

void csd_ctrl_put(struct csd_ctrl *ctrl)
{
	put_device(&ctrl->dev);
}

/* Does BAR2 carry the csd device interface?  Leave other ivshmem alone. */
static int csd_check_shm(struct pci_dev *pdev, struct csd_devif_regs *r)
{
	u32 magic = READ_ONCE(r->magic);
	u32 version = READ_ONCE(r->version);
	/* pairs with the daemon's release store: fields before it are valid */
	u32 status = smp_load_acquire(&r->status);

	if (magic != CSD_DEVIF_MAGIC)
		return -ENODEV;
	if (version >> 16 != CSD_DEVIF_MAJOR) {
		dev_info(&pdev->dev, "unsupported interface version %u.%u\n",
			 version >> 16, version & 0xffff);
		return -ENODEV;
	}
	if (!(status & CSD_DEVIF_STS_RDY) ||
	    status & (CSD_DEVIF_STS_CFS | CSD_DEVIF_STS_SHST)) {
		dev_info(&pdev->dev, "device not ready (status %#x)\n", status);
		return -ENODEV;
	}
	return 0;
}

static void csd_free_irqs(struct csd_ctrl *ctrl, unsigned int n)
{
	while (n--)
		pci_free_irq(ctrl->pdev, n, &ctrl->queues[n]);
}

/* MSI-X vector v = queue v (device-interface.md section 1), csdN-qV */
static int csd_setup_irqs(struct csd_ctrl *ctrl)
{
	struct pci_dev *pdev = ctrl->pdev;
	unsigned int v;
	int ret;

	ret = pci_alloc_irq_vectors(pdev, ctrl->nr_vectors, ctrl->nr_vectors,
				    PCI_IRQ_MSIX);
	if (ret < 0) {
		dev_err(&pdev->dev, "need %u MSI-X vectors: %d\n",
			ctrl->nr_vectors, ret);
		return ret;
	}
	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		ret = pci_request_irq(pdev, v, csd_irq, NULL, &ctrl->queues[v],
				      "%s-q%u", dev_name(&ctrl->dev), v);
		if (ret) {
			csd_free_irqs(ctrl, v);
			pci_free_irq_vectors(pdev);
			return ret;
		}
	}
	return 0;
}

/**
 * csd_probe() - bind an ivshmem-doorbell function that carries csd
 * @pdev: the PCI function (1af4:1110)
 * @id: the matching table entry
 *
 * Leaves other ivshmem users alone (-ENODEV unless BAR2 has the magic, a
 * supported major version and RDY), maps the BARs, attaches to the client
 * slot, sets up MSI-X, sends Identify and creates /dev/csdN.
 *
 * Return: 0 or a negative errno; everything is undone on error.
 */
static int csd_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct csd_ctrl *ctrl;
	resource_size_t shm_len;
	void *shm;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	shm_len = pci_resource_len(pdev, CSD_BAR_SHM);
	if (shm_len < sizeof(struct csd_devif_regs) ||
	    !(pci_resource_flags(pdev, CSD_BAR_SHM) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, CSD_BAR_REGS) < CSD_IVSHM_DOORBELL + 4)
		return -ENODEV;
	/* Peek at the magic before claiming anything. */
	shm = memremap(pci_resource_start(pdev, CSD_BAR_SHM),
		       sizeof(struct csd_devif_regs), MEMREMAP_WB);
	if (!shm)
		return -ENOMEM;
	ret = csd_check_shm(pdev, shm);
	memunmap(shm);
	if (ret)
		return ret;

	ret = pcim_iomap_regions(pdev, BIT(CSD_BAR_REGS), CSD_DRV_NAME);
	if (ret)
		return ret;
	ret = pci_request_region(pdev, CSD_BAR_SHM, CSD_DRV_NAME);
	if (ret)
		return ret;

	ctrl = kzalloc(sizeof(*ctrl), GFP_KERNEL);
	if (!ctrl) {
		ret = -ENOMEM;
		goto out_region;
	}
	ret = ida_alloc_max(&csd_ida, CSD_MAX_MINORS - 1, GFP_KERNEL);
	if (ret < 0) {
		kfree(ctrl);
		goto out_region;
	}
	ctrl->instance = ret;
	/* from here on, the last put_device() frees (csd_dev_release) */
	ctrl->pdev = pci_dev_get(pdev);
	ctrl->bar0 = pcim_iomap_table(pdev)[CSD_BAR_REGS];
	ctrl->shm_size = shm_len;
	init_rwsem(&ctrl->remove_lock);
	init_waitqueue_head(&ctrl->req_wait);
	mutex_init(&ctrl->reset_lock);
	init_waitqueue_head(&ctrl->reset_wait);
	xa_init(&ctrl->contexts);
	device_initialize(&ctrl->dev);
	ctrl->dev.class = csd_class;
	ctrl->dev.parent = &pdev->dev;
	ctrl->dev.groups = csd_attr_groups;
	ctrl->dev.release = csd_dev_release;
	ctrl->dev.devt = MKDEV(MAJOR(csd_devt), ctrl->instance);
	ret = dev_set_name(&ctrl->dev, "csd%d", ctrl->instance);
	if (ret)
		goto out_put;

	ctrl->shm = memremap(pci_resource_start(pdev, CSD_BAR_SHM), shm_len,
			     MEMREMAP_WB);
	if (!ctrl->shm) {
		ret = -ENOMEM;
		goto out_put;
	}
	ctrl->regs = ctrl->shm;
	ctrl->caps = READ_ONCE(ctrl->regs->caps);
	ctrl->version = READ_ONCE(ctrl->regs->version);
	ctrl->peer_id = readl(ctrl->bar0 + CSD_IVSHM_IVPOSITION);

	ret = csd_ctrl_init(ctrl);
	if (ret)
		goto out_put;
	if (pci_msix_vec_count(pdev) < (int)ctrl->nr_vectors) {
		dev_err(&pdev->dev, "device has %d MSI-X vectors, need %u\n",
			pci_msix_vec_count(pdev), ctrl->nr_vectors);
		ret = -ENODEV;
		goto out_put;
	}
	pci_set_master(pdev);
	ret = csd_setup_irqs(ctrl);
	if (ret)
		goto out_put;
	ret = csd_ctrl_start(ctrl);
	if (ret)
		goto out_remove;

	/*
	 * Open files pin the module (cdev owner) and hold a reference to
	 * the controller, which outlives the PCI device: after remove the
	 * fops fail with -ENODEV (Documentation/driver.md).
	 */
	cdev_init(&ctrl->cdev, &csd_fops);
	ctrl->cdev.owner = THIS_MODULE;
	ret = cdev_device_add(&ctrl->cdev, &ctrl->dev);
	if (ret)
		goto out_remove;
	pci_set_drvdata(pdev, ctrl);
	return 0;

out_remove:
	csd_ctrl_remove(ctrl);
	csd_free_irqs(ctrl, ctrl->nr_io_queues + 1);
	pci_free_irq_vectors(pdev);
	flush_workqueue(csd_wq);
out_put:
	put_device(&ctrl->dev);
out_region:
	pci_release_region(pdev, CSD_BAR_SHM);
	return ret;
}

/**
 * csd_remove() - unbind, rmmod or surprise removal
 * @pdev: the PCI function
 *
 * Files may still be open: they hold the controller (not the PCI device's
 * resources) and get -ENODEV.  Order: the device node, the controller
 * (contexts, pending commands), interrupts, deferred frees, BAR2.
 */
static void csd_remove(struct pci_dev *pdev)
{
	struct csd_ctrl *ctrl = pci_get_drvdata(pdev);

	cdev_device_del(&ctrl->cdev, &ctrl->dev);
	csd_ctrl_remove(ctrl);
	csd_free_irqs(ctrl, ctrl->nr_io_queues + 1);
	pci_free_irq_vectors(pdev);
	flush_workqueue(csd_wq);
	pci_release_region(pdev, CSD_BAR_SHM);
	put_device(&ctrl->dev);
}

static const struct pci_device_id csd_pci_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },
	{ }
};
MODULE_DEVICE_TABLE(pci, csd_pci_ids);

static struct pci_driver csd_pci_driver = {
	.name = CSD_DRV_NAME,
	.id_table = csd_pci_ids,
	.probe = csd_probe,
	.remove = csd_remove,
};

static int __init csd_init(void)
{
	int ret;

	csd_wq = alloc_workqueue("csd", WQ_MEM_RECLAIM, 0);
	if (!csd_wq)
		return -ENOMEM;
	ret = alloc_chrdev_region(&csd_devt, 0, CSD_MAX_MINORS, CSD_DRV_NAME);
	if (ret)
		goto out_wq;
	csd_class = class_create(THIS_MODULE, CSD_DRV_NAME);
	if (IS_ERR(csd_class)) {
		ret = PTR_ERR(csd_class);
		goto out_chrdev;
	}
	ret = pci_register_driver(&csd_pci_driver);
	if (ret)
		goto out_class;
	return 0;

out_class:
	class_destroy(csd_class);
out_chrdev:
	unregister_chrdev_region(csd_devt, CSD_MAX_MINORS);
out_wq:
	destroy_workqueue(csd_wq);
	return ret;
}

static void __exit csd_exit(void)
{
	pci_unregister_driver(&csd_pci_driver);
	class_destroy(csd_class);
	unregister_chrdev_region(csd_devt, CSD_MAX_MINORS);
	ida_destroy(&csd_ida);
	destroy_workqueue(csd_wq);
}

module_init(csd_init);
module_exit(csd_exit);

MODULE_DESCRIPTION("csd computational storage drive (ivshmem-doorbell + csd-fw)");
MODULE_AUTHOR("csd project");
MODULE_LICENSE("GPL");
