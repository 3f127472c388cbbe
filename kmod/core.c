// SPDX-License-Identifier: GPL-2.0
/*
 * core.c - controller attach, queues, command submission and completion,
 * timeouts, the liveness watchdog and controller death of csd.ko.
 *
 * A request is owned by two sides (see struct csd_req): the device while its
 * CID is on a queue, and the submitter until it has a result.  Timeouts and
 * controller death end the submitter side early; the buffers stay with the
 * device side until the device completes the command or can no longer touch
 * memory (the daemon is gone), because the device interface has no abort and
 * no reset (Documentation/driver.md, "Errors").
 */
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "csd.h"

#ifdef __BIG_ENDIAN
#error "csd.ko writes little-endian queue entries natively"
#endif

#define CSD_WATCHDOG_MS		250

static unsigned long csd_timeout(bool admin, unsigned int timeout_ms)
{
	unsigned int tmo_s = admin ? READ_ONCE(csd_admin_timeout) :
				     READ_ONCE(csd_io_timeout);
	u64 tmo_ms = max_t(u64, (u64)tmo_s * 1000, 1);

	if (timeout_ms && timeout_ms < tmo_ms)
		tmo_ms = timeout_ms;
	return msecs_to_jiffies(tmo_ms);
}

static void csd_req_free_work(struct work_struct *work);

struct csd_req *csd_req_alloc(struct csd_ctrl *ctrl, struct csd_file *file)
{
	struct csd_req *req = kzalloc(sizeof(*req), GFP_KERNEL);

	if (!req)
		return NULL;
	req->ctrl = ctrl;
	req->file = file;
	req->data.chunk = CSD_NO_CHUNK;
	INIT_WORK(&req->free_work, csd_req_free_work);
	csd_ctrl_get(ctrl);
	atomic_inc(&ctrl->nr_reqs);
	return req;
}

/* Process context; the device no longer owns @req. */
void csd_req_free(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;

	csd_data_release(req);
	kfree(req);
	atomic_dec(&ctrl->nr_reqs);
	wake_up_all(&ctrl->req_wait);
	csd_ctrl_put(ctrl);
}

/* An abandoned request the device finished with (or can no longer touch). */
static void csd_req_free_work(struct work_struct *work)
{
	struct csd_req *req = container_of(work, struct csd_req, free_work);
	struct csd_ctrl *ctrl = req->ctrl;

	/*
	 * A context created for a submitter that gave up: nobody knows its
	 * id, so destroy it rather than leak it on the device.
	 */
	if (req->device_done && !req->status && req->q->qid &&
	    req->sqe.opcode == CSD_IO_CTX_CREATE && !READ_ONCE(ctrl->dead)) {
		struct csd_sqe sqe = {
			.opcode = CSD_IO_CTX_DESTROY,
			.nsid = CSD_NSID,
			.cdw12 = lower_32_bits(req->result),
		};

		csd_submit_sync(ctrl, 1, &sqe, NULL, 0, false, NULL);
	}
	csd_req_free(req);
}

/*
 * End the submitter side of @req, once, with the completion (@error 0: the
 * submitter now owns the request) or an error (the request is abandoned to
 * the device side).  Called with q->lock held, any context.
 */
static void csd_req_end_submitter(struct csd_req *req, int error)
{
	if (error)
		req->abandoned = true;
	if (req->wait) {
		struct csd_wait *w = req->wait;

		req->wait = NULL;
		w->error = error;
		w->req = error ? NULL : req;
		complete(&w->done);
	} else if (req->end_io) {
		void (*end_io)(struct csd_req *req, int error) = req->end_io;

		req->end_io = NULL;
		end_io(req, error);
	}
}

/* The device is done with @req (removed from q->cmds).  q->lock held. */
static void csd_req_device_end(struct csd_queue *q, struct csd_req *req)
{
	struct csd_ctrl *ctrl = q->ctrl;

	q->inflight--;
	atomic_dec(&ctrl->outstanding);
	wake_up(&q->wait);
	wake_up_all(&ctrl->req_wait);
	if (req->abandoned) {
		queue_work(csd_wq, &req->free_work);
		return;
	}
	csd_req_end_submitter(req, 0);
}

irqreturn_t csd_irq(int irq, void *data)
{
	struct csd_queue *q = data;
	unsigned long flags;
	bool found = false;

	spin_lock_irqsave(&q->lock, flags);
	for (;;) {
		struct csd_cqe *cqe = &q->cq[q->cq_head];
		/* pairs with the daemon's release store: fields before it are valid */
		u16 st = smp_load_acquire(&cqe->status);
		struct csd_req *req;
		u16 cid;

		if ((st & 1) != q->cq_phase)
			break;
		cid = READ_ONCE(cqe->cid);
		found = true;
		if (++q->cq_head == q->depth) {
			q->cq_head = 0;
			q->cq_phase ^= 1;
		}
		if (cid >= q->depth || !q->cmds[cid]) {
			dev_warn_ratelimited(&q->ctrl->pdev->dev,
					     "queue %u: completion for unknown cid %u\n",
					     q->qid, cid);
			continue;
		}
		req = q->cmds[cid];
		q->cmds[cid] = NULL;
		req->status = st >> 1;
		req->result = READ_ONCE(cqe->dw0) |
			      (u64)READ_ONCE(cqe->dw1) << 32;
		req->device_done = true;
		if (req->status & 0x7fff)
			atomic64_inc(&q->ctrl->errors);
		csd_req_device_end(q, req);
	}
	if (found)
		/* publish entries/consumption before the daemon reads the index */
		smp_store_release(&q->db->cq_head, q->cq_head);
	spin_unlock_irqrestore(&q->lock, flags);
	return IRQ_HANDLED;
}

/*
 * The device cannot come back (device-interface.md section 2): every
 * submitter still waiting gets -EIO and new commands fail with -EIO.
 * @dma_stopped: the daemon can no longer touch our memory (it is gone), so
 * the buffers of commands it still owned are released too; otherwise they
 * stay pinned until it completes them.
 */
void csd_ctrl_kill(struct csd_ctrl *ctrl, const char *why, bool dma_stopped)
{
	unsigned long flags;
	unsigned int v, cid;

	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];

		spin_lock_irqsave(&q->lock, flags);
		if (v == 0) {
			if (!ctrl->dead && why)
				dev_err(&ctrl->pdev->dev, "controller dead: %s\n",
					why);
			WRITE_ONCE(ctrl->dead, true);
			if (dma_stopped)
				WRITE_ONCE(ctrl->dma_stopped, true);
		}
		for (cid = 0; cid < q->depth; cid++) {
			struct csd_req *req = q->cmds[cid];

			if (!req)
				continue;
			if (!req->abandoned)
				csd_req_end_submitter(req, -EIO);
			if (dma_stopped) {
				q->cmds[cid] = NULL;
				csd_req_device_end(q, req);
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
		wake_up_all(&q->wait);
	}
	csd_window_wake(ctrl);
	wake_up_all(&ctrl->req_wait);
}

/*
 * Put @req on @q: wait (or -EAGAIN with @nowait) for a slot, so at most
 * depth - 1 commands are outstanding (device-interface.md 4.3).  On success
 * the device owns @req and it may already have completed on return.
 */
static int csd_queue_submit(struct csd_queue *q, struct csd_req *req,
			    bool nowait, long timeout)
{
	struct csd_ctrl *ctrl = q->ctrl;
	unsigned long flags;
	unsigned int cid;
	u16 tail;

	for (;;) {
		spin_lock_irqsave(&q->lock, flags);
		if (ctrl->dead) {
			spin_unlock_irqrestore(&q->lock, flags);
			return -EIO;
		}
		if (q->inflight < q->depth - 1)
			break;
		spin_unlock_irqrestore(&q->lock, flags);
		if (nowait)
			return -EAGAIN;
		timeout = wait_event_killable_timeout(q->wait,
						      READ_ONCE(q->inflight) < q->depth - 1 ||
						      READ_ONCE(ctrl->dead),
						      timeout);
		if (timeout < 0)
			return -EINTR;
		if (!timeout)
			return -ETIMEDOUT;
	}
	for (cid = 0; cid < q->depth; cid++)
		if (!q->cmds[cid])
			break;
	q->cmds[cid] = req;
	q->inflight++;
	atomic_inc(&ctrl->outstanding);
	req->q = q;
	req->start = jiffies;
	req->sqe.cid = cid;
	tail = q->sq_tail;
	memcpy(&q->sq[tail], &req->sqe, sizeof(req->sqe));
	WRITE_ONCE(q->sqx[tail].data_len, req->data.len);
	WRITE_ONCE(q->sqx[tail].flags, 0);
	if (++tail == q->depth)
		tail = 0;
	q->sq_tail = tail;
	/* publish the entry and the data before the daemon reads the index */
	smp_store_release(&q->db->sq_tail, tail);
	wmb(); /* tail visible before the doorbell write */
	writel(CSD_DEVIF_DAEMON_PEER << 16 | q->qid,
	       ctrl->bar0 + CSD_IVSHM_DOORBELL);
	spin_unlock_irqrestore(&q->lock, flags);
	atomic64_inc(&ctrl->commands);
	return 0;
}

/*
 * Run @req and wait up to @timeout.  *@owned says whether the caller still
 * owns @req: yes on success (see req->status) and when it was never queued;
 * no when the wait ended with -ETIMEDOUT, -EINTR or -EIO (the request is
 * abandoned and the device side frees it).
 */
static int csd_exec_sync(struct csd_req *req, unsigned long timeout,
			 bool *owned)
{
	struct csd_queue *q = req->q;
	struct csd_ctrl *ctrl = req->ctrl;
	u8 opcode = req->sqe.opcode;
	unsigned long flags;
	struct csd_wait w;
	long left;
	int ret;

	init_completion(&w.done);
	w.req = NULL;
	w.error = 0;
	req->wait = &w;
	*owned = true;
	ret = csd_queue_submit(q, req, false, timeout);
	if (ret) {
		req->wait = NULL;
		return ret;
	}
	left = wait_for_completion_killable_timeout(&w.done, timeout);
	if (left <= 0) {
		spin_lock_irqsave(&q->lock, flags);
		if (req->wait) {
			req->wait = NULL;
			req->abandoned = true;
			w.error = left ? -EINTR : -ETIMEDOUT;
		}
		spin_unlock_irqrestore(&q->lock, flags);
		if (w.error == -ETIMEDOUT) {
			atomic64_inc(&ctrl->timeouts);
			dev_warn_ratelimited(&ctrl->pdev->dev,
					     "queue %u: command %#x timed out\n",
					     q->qid, opcode);
		}
	}
	*owned = w.req;
	return w.error;
}

/* Kernel-internal synchronous command (Identify at probe, context cleanup). */
int csd_submit_sync(struct csd_ctrl *ctrl, unsigned int qid,
		    struct csd_sqe *sqe, void *buf, u32 data_len,
		    bool to_dev, u32 *result)
{
	unsigned long timeout = csd_timeout(true, 0);
	struct csd_req *req;
	bool owned;
	int ret;

	req = csd_req_alloc(ctrl, NULL);
	if (!req)
		return -ENOMEM;
	req->sqe = *sqe;
	req->q = &ctrl->queues[qid];
	ret = csd_data_map_kernel(req, buf, data_len, to_dev, timeout);
	if (ret)
		goto out;
	ret = csd_exec_sync(req, timeout, &owned);
	if (!owned)
		return ret;
	if (ret)
		goto out;
	if (req->status & 0x7fff)
		ret = -EIO;
	else
		ret = csd_data_finish(req);
	if (!ret && result)
		*result = lower_32_bits(req->result);
out:
	csd_req_free(req);
	return ret;
}

static bool csd_opc_names_ctx(u8 opc)
{
	switch (opc) {
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
 * Check ownership, pick the queue and map the data of a validated user
 * command.  The caller frees @req on error.
 */
int csd_req_prepare_user(struct csd_req *req, const struct csd_ucmd *uc,
			 bool nowait)
{
	struct csd_ctrl *ctrl = req->ctrl;
	u8 opc = uc->sqe.opcode;
	unsigned int qid;

	if (READ_ONCE(ctrl->dead))
		return -EIO;
	if (!uc->admin && csd_opc_names_ctx(opc)) {
		void *owner = xa_load(&ctrl->contexts, uc->sqe.cdw12);

		if (owner && owner != req->file)
			return -EACCES;
	}
	req->sqe = uc->sqe;
	if (uc->admin) {
		qid = 0;
	} else {
		qid = atomic_inc_return(&ctrl->next_ioq);
		qid = qid % ctrl->nr_io_queues + 1;
	}
	req->q = &ctrl->queues[qid];
	return csd_data_map_user(req, u64_to_user_ptr(uc->addr), uc->data_len,
				 CSD_OPC_XFER(opc) == CSD_XFER_TO_DEV, nowait,
				 csd_timeout(uc->admin, uc->timeout_ms));
}

/* Queue a prepared asynchronous request (req->end_io set). */
int csd_req_start(struct csd_req *req, unsigned int timeout_ms, bool nowait)
{
	unsigned long tmo = csd_timeout(!req->q->qid, timeout_ms);

	req->deadline = jiffies + tmo;
	return csd_queue_submit(req->q, req, nowait, tmo);
}

/* Track the contexts a successful command created or destroyed. */
static void csd_track_contexts(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;

	if (!req->file || !req->q->qid)
		return;
	if (req->sqe.opcode == CSD_IO_CTX_CREATE) {
		u32 id = lower_32_bits(req->result);
		int err = xa_err(xa_store(&ctrl->contexts, id, req->file,
					  GFP_KERNEL));

		if (err)
			dev_warn(&ctrl->pdev->dev,
				 "cannot track context %u: %d\n", id, err);
	} else if (req->sqe.opcode == CSD_IO_CTX_DESTROY) {
		xa_cmpxchg(&ctrl->contexts, req->sqe.cdw12, req->file, NULL,
			   GFP_KERNEL);
	}
}

/*
 * The submitter's side of a completed user command, in its process context:
 * deliver bounced read data, track contexts, free @req.  Returns the NVMe
 * status field (>= 0, with *@result = CQE dw0 | dw1 << 32) or a negative
 * errno.
 */
int csd_req_user_finish(struct csd_req *req, u64 *result)
{
	int ret = req->status & 0x7fff;

	*result = req->result;
	if (!ret) {
		csd_track_contexts(req);
		ret = csd_data_finish(req);
	}
	csd_req_free(req);
	return ret;
}

/*
 * Synchronous user passthrough command (ioctl); @uc is validated.  Returns a
 * negative errno, or the NVMe status field (>= 0) with *@result.
 */
int csd_submit_user(struct csd_ctrl *ctrl, struct csd_file *file,
		    const struct csd_ucmd *uc, u64 *result)
{
	struct csd_req *req;
	bool owned;
	int ret;

	req = csd_req_alloc(ctrl, file);
	if (!req)
		return -ENOMEM;
	ret = csd_req_prepare_user(req, uc, false);
	if (ret)
		goto out;
	ret = csd_exec_sync(req, csd_timeout(uc->admin, uc->timeout_ms),
			    &owned);
	if (!owned)
		return ret;
	if (ret)
		goto out;
	return csd_req_user_finish(req, result);
out:
	csd_req_free(req);
	return ret;
}

/*
 * Destroy every context @file created (the file is being released), or
 * every tracked context (@file NULL: the device is going away).
 */
void csd_release_contexts(struct csd_ctrl *ctrl, struct csd_file *file)
{
	unsigned long id;
	void *owner;

	xa_for_each(&ctrl->contexts, id, owner) {
		struct csd_sqe sqe = {
			.opcode = CSD_IO_CTX_DESTROY,
			.nsid = CSD_NSID,
			.cdw12 = id,
		};

		if (file && owner != file)
			continue;
		/* whoever takes the entry out sends the destroy */
		if (xa_cmpxchg(&ctrl->contexts, id, owner, NULL,
			       GFP_KERNEL) != owner)
			continue;
		if (!READ_ONCE(ctrl->dead))
			csd_submit_sync(ctrl, 1, &sqe, NULL, 0, false, NULL);
	}
}

/*
 * Timeouts of asynchronous submitters (synchronous ones time out in
 * csd_exec_sync()), and hung commands: the interface has neither abort nor
 * reset, so a command the device has not completed in twice the module
 * timeout marks the controller dead.
 */
static void csd_check_timeouts(struct csd_ctrl *ctrl)
{
	unsigned long now = jiffies, flags;
	unsigned int v, cid, hung_qid = 0;
	u8 hung_opc = 0;
	bool hung = false;

	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];
		unsigned long hard = 2 * csd_timeout(!v, 0);

		spin_lock_irqsave(&q->lock, flags);
		for (cid = 0; q->inflight && cid < q->depth; cid++) {
			struct csd_req *req = q->cmds[cid];

			if (!req)
				continue;
			if (!req->abandoned && req->end_io &&
			    time_after_eq(now, req->deadline)) {
				atomic64_inc(&ctrl->timeouts);
				dev_warn_ratelimited(&ctrl->pdev->dev,
						     "queue %u: command %#x timed out\n",
						     v, req->sqe.opcode);
				csd_req_end_submitter(req, -ETIMEDOUT);
			}
			if (!hung && time_after(now, req->start + hard)) {
				hung = true;
				hung_qid = v;
				hung_opc = req->sqe.opcode;
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
	}
	if (hung) {
		dev_err(&ctrl->pdev->dev,
			"queue %u: command %#x not completed in %u ms; no abort or reset in this interface\n",
			hung_qid, hung_opc,
			jiffies_to_msecs(2 * csd_timeout(!hung_qid, 0)));
		csd_ctrl_kill(ctrl, "command timeout", false);
	}
}

static void csd_watchdog(struct work_struct *work)
{
	struct csd_ctrl *ctrl = container_of(to_delayed_work(work),
					     struct csd_ctrl, watchdog);
	u32 period = max_t(u32, READ_ONCE(ctrl->regs->hb_period_ms), 1);
	unsigned long limit = msecs_to_jiffies(max_t(u32, 3000, 10 * period));
	/* pairs with the daemon's release store: fields before it are valid */
	u32 status = smp_load_acquire(&ctrl->regs->status);
	u64 hb = READ_ONCE(ctrl->regs->heartbeat);
	bool stalled = false;

	if (hb != ctrl->last_heartbeat) {
		ctrl->last_heartbeat = hb;
		ctrl->last_beat_jiffies = jiffies;
	} else if (time_after(jiffies, ctrl->last_beat_jiffies + limit)) {
		stalled = true;
	}

	if (READ_ONCE(ctrl->client->state) != CSD_DEVIF_CLIENT_ACTIVE)
		/* the daemon let go of us: it no longer touches our memory */
		csd_ctrl_kill(ctrl, "client slot released", true);
	else if (stalled)
		csd_ctrl_kill(ctrl, "heartbeat stalled", true);
	else if (status & (CSD_DEVIF_STS_CFS | CSD_DEVIF_STS_SHST) ||
		 !(status & CSD_DEVIF_STS_RDY))
		/* it may still be draining commands: keep their buffers */
		csd_ctrl_kill(ctrl, "daemon shut down or fatal status", false);
	else if (!READ_ONCE(ctrl->dead))
		csd_check_timeouts(ctrl);

	/* after death, keep watching until the daemon's DMA has stopped */
	if (!READ_ONCE(ctrl->dma_stopped))
		schedule_delayed_work(&ctrl->watchdog,
				      msecs_to_jiffies(CSD_WATCHDOG_MS));
}

static bool csd_range_ok(u64 off, u64 len, u64 limit)
{
	return off <= limit && len <= limit - off;
}

static int csd_queue_init(struct csd_ctrl *ctrl, unsigned int v)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct csd_queue *q = &ctrl->queues[v];
	void *base = ctrl->client_area + r->q_off + v * r->q_stride;
	u32 sq_tail, cq_head;

	q->ctrl = ctrl;
	q->qid = v;
	q->depth = ctrl->depth;
	spin_lock_init(&q->lock);
	init_waitqueue_head(&q->wait);
	q->sq = base + r->sq_off;
	q->sqx = base + r->sqx_off;
	q->cq = base + r->cq_off;
	q->db = &ctrl->client->db[v];
	q->cmds = kcalloc(q->depth, sizeof(*q->cmds), GFP_KERNEL);
	if (!q->cmds)
		return -ENOMEM;

	/*
	 * The daemon keeps its queue state for the life of the connection,
	 * which outlives the module: resume from the doorbells.  Expected
	 * phase = inverse of the (consumed or zeroed) entry at the head.
	 */
	sq_tail = READ_ONCE(q->db->sq_tail);
	cq_head = READ_ONCE(q->db->cq_head);
	if (sq_tail >= q->depth || cq_head >= q->depth) {
		dev_err(&ctrl->pdev->dev, "queue %u: bad doorbell state\n", v);
		return -EIO;
	}
	q->sq_tail = sq_tail;
	q->cq_head = cq_head;
	q->cq_phase = !(READ_ONCE(q->cq[cq_head].status) & 1);
	return 0;
}

static void csd_copy_str(char *dst, const char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len] = '\0';
	strim(dst);
}

static int csd_identify(struct csd_ctrl *ctrl)
{
	struct csd_sqe sqe = {
		.opcode = CSD_ADM_IDENTIFY,
		.cdw10 = CSD_ID_CNS_CTRL,
	};
	struct csd_id_ctrl *id;
	int ret;

	id = kzalloc(sizeof(*id), GFP_KERNEL);
	if (!id)
		return -ENOMEM;
	ret = csd_submit_sync(ctrl, 0, &sqe, id, sizeof(*id), false, NULL);
	if (ret)
		goto out;
	if (id->vs.magic != CSD_ID_MAGIC) {
		dev_err(&ctrl->pdev->dev, "identify: bad vendor magic\n");
		ret = -ENODEV;
		goto out;
	}
	csd_copy_str(ctrl->model, id->mn, sizeof(id->mn));
	csd_copy_str(ctrl->serial, id->sn, sizeof(id->sn));
	csd_copy_str(ctrl->firmware_rev, id->fr, sizeof(id->fr));
	csd_copy_str(ctrl->fw_version, id->vs.fw_version,
		     sizeof(id->vs.fw_version));
	dev_info(&ctrl->pdev->dev,
		 "%s fw %s, interface %u.%u, %u I/O queues x %u, max_xfer %u, data via %s\n",
		 ctrl->model, ctrl->fw_version, ctrl->version >> 16,
		 ctrl->version & 0xffff, ctrl->nr_io_queues, ctrl->depth,
		 ctrl->max_xfer, ctrl->caps & CSD_DEVIF_CAP_DMA_RAM ?
		 "guest RAM (pinned pages)" : "data window (bounce)");
out:
	kfree(id);
	return ret;
}

/* Validate the register page and attach to our client slot. */
int csd_ctrl_init(struct csd_ctrl *ctrl)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct device *dev = &ctrl->pdev->dev;
	u64 shm = ctrl->shm_size, cs, area, qend;
	u32 slot, v;
	int ret;

	if (ctrl->peer_id < 1 || ctrl->peer_id > r->max_clients ||
	    r->max_clients > CSD_DEVIF_MAX_CLIENTS) {
		dev_err(dev, "bad peer id %u\n", ctrl->peer_id);
		return -ENODEV;
	}
	slot = ctrl->peer_id - 1;
	cs = r->client_stride;
	ctrl->depth = r->queue_depth;
	ctrl->nr_vectors = r->nr_vectors;
	ctrl->max_xfer = r->max_xfer;
	/*
	 * Client area: client_off + slot * stride.  Stride 0 (devif 1.1,
	 * one shared memory per client) makes the area run to the end.
	 */
	if (!csd_range_ok(r->client_off, (u64)slot * cs, shm))
		goto bad;
	area = cs ? cs : shm - r->client_off;
	if (!csd_range_ok(r->client_off + (u64)slot * cs, area, shm) ||
	    area < sizeof(struct csd_devif_client))
		goto bad;
	if (r->nr_io_queues < 1 || r->nr_io_queues > CSD_DEVIF_MAX_QUEUES - 1 ||
	    r->nr_vectors != r->nr_io_queues + 1 ||
	    ctrl->depth < CSD_DEVIF_MIN_DEPTH ||
	    ctrl->depth > CSD_DEVIF_MAX_DEPTH || !ctrl->max_xfer ||
	    !csd_range_ok(r->win_off, r->win_size, area))
		goto bad;
	qend = r->q_off + (u64)r->nr_vectors * r->q_stride;
	if (!csd_range_ok(r->q_off, (u64)r->nr_vectors * r->q_stride, area) ||
	    qend > area ||
	    !csd_range_ok(r->sq_off, ctrl->depth * sizeof(struct csd_sqe),
			  r->q_stride) ||
	    !csd_range_ok(r->sqx_off, ctrl->depth * sizeof(struct csd_devif_sqx),
			  r->q_stride) ||
	    !csd_range_ok(r->cq_off, ctrl->depth * sizeof(struct csd_cqe),
			  r->q_stride)) {
		dev_err(dev, "inconsistent queue layout\n");
		return -ENODEV;
	}
	if (ctrl->caps & CSD_DEVIF_CAP_DMA_RAM) {
		ctrl->dma_size = READ_ONCE(r->dma_size);
		if (!ctrl->dma_size)
			ctrl->caps &= ~CSD_DEVIF_CAP_DMA_RAM;
	}
	ctrl->client_area = ctrl->shm + r->client_off + slot * cs;
	ctrl->client = ctrl->client_area;
	if (READ_ONCE(ctrl->client->state) != CSD_DEVIF_CLIENT_ACTIVE ||
	    READ_ONCE(ctrl->client->peer_id) != ctrl->peer_id) {
		dev_err(dev, "client slot %u not active\n", slot);
		return -ENODEV;
	}
	ctrl->nr_io_queues = min_t(u32, r->nr_io_queues, num_possible_cpus());

	ctrl->queues = kcalloc(ctrl->nr_io_queues + 1, sizeof(*ctrl->queues),
			       GFP_KERNEL);
	if (!ctrl->queues)
		return -ENOMEM;
	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		ret = csd_queue_init(ctrl, v);
		if (ret)
			return ret;
	}
	ret = csd_window_init(ctrl);
	if (ret)
		return ret;

	ctrl->last_heartbeat = READ_ONCE(r->heartbeat);
	ctrl->last_beat_jiffies = jiffies;
	INIT_DELAYED_WORK(&ctrl->watchdog, csd_watchdog);
	return 0;

bad:
	dev_err(dev, "inconsistent register page\n");
	return -ENODEV;
}

int csd_ctrl_start(struct csd_ctrl *ctrl)
{
	schedule_delayed_work(&ctrl->watchdog,
			      msecs_to_jiffies(CSD_WATCHDOG_MS));
	return csd_identify(ctrl);
}

/*
 * The device is going away (unbind, rmmod, hot unplug) or probe failed:
 * destroy the contexts of files still open while the device can, fail
 * everything, wait for users to leave and (bounded) for the device to
 * finish the commands it owns.  Memory is freed with the last reference.
 */
void csd_ctrl_remove(struct csd_ctrl *ctrl)
{
	int left;

	if (!READ_ONCE(ctrl->dead))
		csd_release_contexts(ctrl, NULL);
	csd_ctrl_kill(ctrl, NULL, false);
	down_write(&ctrl->remove_lock);
	ctrl->removed = true;
	up_write(&ctrl->remove_lock);
	wait_event_timeout(ctrl->req_wait, !atomic_read(&ctrl->outstanding),
			   5 * HZ);
	cancel_delayed_work_sync(&ctrl->watchdog);
	left = atomic_read(&ctrl->outstanding);
	if (left)
		dev_warn(&ctrl->pdev->dev,
			 "%d commands still owned by the device: their buffers stay pinned\n",
			 left);
}

/* Free what csd_ctrl_init() allocated (last reference; no IRQs). */
void csd_ctrl_shutdown(struct csd_ctrl *ctrl)
{
	unsigned int v;

	if (ctrl->queues)
		for (v = 0; v <= ctrl->nr_io_queues; v++)
			kfree(ctrl->queues[v].cmds);
	kfree(ctrl->queues);
	ctrl->queues = NULL;
	csd_window_free(ctrl);
}
