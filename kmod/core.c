// SPDX-License-Identifier: GPL-2.0
/*
 * core.c - controller attach, queues, command submission and completion,
 * timeouts, controller reset, the liveness watchdog and controller death of
 * csd.ko.
 *
 * A request is owned by two sides (see struct csd_req): the device while its
 * CID is on a queue, and the submitter until it has a result.  Timeouts and
 * controller death end the submitter side early; the buffers stay with the
 * device side until the device completes the command, a controller reset
 * is acknowledged (the daemon then no longer touches them), or the daemon
 * is gone (Documentation/driver.md, "Errors").
 */
#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/user_namespace.h>

#include "csd.h"

#ifdef __BIG_ENDIAN
#error "csd.ko writes little-endian queue entries natively"
#endif

#define CSD_WATCHDOG_MS		250

/* csd_irq() reads the CQE's CID and status as one aligned 32-bit word */
static_assert(offsetof(struct csd_cqe, cid) == 12);
static_assert(offsetof(struct csd_cqe, status) == 14);
/* csd_ctx_log_prepare() sizes the contexts log in entries */
static_assert(sizeof(struct csd_log_ctx_hdr) ==
	      sizeof(struct csd_log_ctx_entry));

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
static void csd_ctx_restore(struct csd_req *req);

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

	/* a submitter that gave up may be gone with its file */
	if (req->ctx_dropped && !req->abandoned)
		csd_ctx_restore(req);
	csd_data_release(req);
	kvfree(req->log.buf);
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

/*
 * Consume the CQEs whose phase tag matches, end the requests they name and
 * publish the new CQ head.  q->lock held.  Returns whether any was consumed.
 */
static bool csd_process_cq(struct csd_queue *q)
{
	unsigned int budget;
	bool found = false;

	for (budget = q->depth; budget; budget--) {
		struct csd_cqe *cqe = &q->cq[q->cq_head];
		/*
		 * CID and status share one 32-bit word, written last by the
		 * daemon with a release store: read it once, with acquire,
		 * so dw0/dw1 read below are those of this completion.
		 */
		u32 word = smp_load_acquire((u32 *)&cqe->cid);
		u16 st = word >> 16, cid = word & 0xffff;
		struct csd_req *req;
		u16 tag;

		if ((st & 1) != q->cq_phase)
			break;
		found = true;
		if (++q->cq_head == q->depth) {
			q->cq_head = 0;
			q->cq_phase ^= 1;
		}
		tag = cid & CSD_CID_TAG_MASK;
		req = tag < q->depth ? q->cmds[tag] : NULL;
		if (!req || req->sqe.cid != cid) {
			dev_warn_ratelimited(&q->ctrl->pdev->dev,
					     "queue %u: completion for unknown cid %#x\n",
					     q->qid, cid);
			continue;
		}
		q->cmds[tag] = NULL;
		req->status = st >> 1;
		req->result = READ_ONCE(cqe->dw0) |
			      (u64)READ_ONCE(cqe->dw1) << 32;
		req->device_done = true;
		if (req->status & 0x7fff)
			atomic64_inc(&q->ctrl->errors);
		csd_req_device_end(q, req);
	}
	if (found)
		/* entries consumed before the daemon sees the new head */
		smp_store_release(&q->db->cq_head, q->cq_head);
	if (!budget)
		dev_warn_ratelimited(&q->ctrl->pdev->dev,
				     "queue %u: more than %u completions at once\n",
				     q->qid, q->depth);
	return found;
}

/*
 * Has the daemon acknowledged our reset request?  Acquire: its zeroing of
 * the rings and doorbells is visible once this is true.
 */
static bool csd_reset_acked(struct csd_ctrl *ctrl)
{
	/* pairs with the daemon's release store of reset_ack */
	return smp_load_acquire(&ctrl->client->reset_ack) ==
	       READ_ONCE(ctrl->reset_req);
}

/**
 * csd_irq() - interrupt of one queue (MSI-X vector v = queue v)
 * @irq: the Linux interrupt number
 * @data: the &struct csd_queue
 *
 * Consumes the completions of the queue (csd_process_cq()).  The CQ is
 * daemon-written memory: each CQE's status word is read once with acquire
 * semantics, every CID is checked against the request that owns its tag,
 * and at most @depth entries are taken per call, so a daemon that keeps
 * flipping phase tags cannot hold the CPU in hard interrupt context (flow
 * control, device-interface.md 4.3, never lets an honest daemon post more
 * than depth - 1 before the head moves).  While a controller reset is in
 * progress the queues are stopped and no CQE is read; vector 0 then also
 * signals the reset acknowledgment, which wakes csd_ctrl_reset().
 *
 * Return: IRQ_HANDLED if a CQE or the reset acknowledgment was seen, else
 * IRQ_NONE.
 */
irqreturn_t csd_irq(int irq, void *data)
{
	struct csd_queue *q = data;
	struct csd_ctrl *ctrl = q->ctrl;
	irqreturn_t ret = IRQ_NONE;
	unsigned long flags;

	if (!q->qid && READ_ONCE(ctrl->resetting) && csd_reset_acked(ctrl)) {
		wake_up(&ctrl->reset_wait);
		ret = IRQ_HANDLED;
	}
	spin_lock_irqsave(&q->lock, flags);
	if (!q->stopped && csd_process_cq(q))
		ret = IRQ_HANDLED;
	spin_unlock_irqrestore(&q->lock, flags);
	return ret;
}

/**
 * csd_ctrl_kill() - mark the controller dead and fail every submitter
 * @ctrl: the controller
 * @why: logged once (NULL: removal, not logged)
 * @dma_stopped: the daemon can no longer touch our memory (it is gone), so
 *	the buffers of commands it still owned are released too; otherwise
 *	they stay with the commands until it completes them or acknowledges
 *	a controller reset in progress
 *
 * The device cannot come back (device-interface.md section 2): every
 * submitter still waiting gets -EIO and new commands fail with -EIO.
 * Any context that may sleep; takes every queue lock in turn.
 */
void csd_ctrl_kill(struct csd_ctrl *ctrl, const char *why, bool dma_stopped)
{
	unsigned long flags;
	unsigned int v, tag;

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
		for (tag = 0; tag < q->depth; tag++) {
			struct csd_req *req = q->cmds[tag];

			if (!req)
				continue;
			if (!req->abandoned)
				csd_req_end_submitter(req, -EIO);
			if (dma_stopped) {
				q->cmds[tag] = NULL;
				csd_req_device_end(q, req);
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
		wake_up_all(&q->wait);
	}
	csd_window_wake(ctrl);
	wake_up_all(&ctrl->req_wait);
	wake_up_all(&ctrl->reset_wait);
}

/* Room for one more command on a queue that is not being reset? */
static bool csd_queue_ready(struct csd_queue *q)
{
	return !READ_ONCE(q->stopped) && READ_ONCE(q->inflight) < q->depth - 1;
}

/**
 * csd_queue_submit() - give a request to the device
 * @q: the queue
 * @req: the request, data mapped
 * @nowait: return -EAGAIN instead of waiting for a slot
 * @timeout: how long to wait for a slot, in jiffies
 *
 * At most depth - 1 commands are outstanding per queue
 * (device-interface.md 4.3); while a controller reset is in progress the
 * queue is stopped and submitters wait for its end like for a slot.  The
 * SQE and SQX entry are written, then the tail is published with a release
 * store and the daemon's doorbell rung.
 *
 * Return: 0 (the device owns @req, which may already have completed), or
 * -EIO (dead), -EAGAIN, -EINTR or -ETIMEDOUT (@req not queued).
 */
static int csd_queue_submit(struct csd_queue *q, struct csd_req *req,
			    bool nowait, long timeout)
{
	struct csd_ctrl *ctrl = q->ctrl;
	unsigned long flags;
	unsigned int tag;
	u16 tail;

	for (;;) {
		spin_lock_irqsave(&q->lock, flags);
		if (ctrl->dead) {
			spin_unlock_irqrestore(&q->lock, flags);
			return -EIO;
		}
		if (csd_queue_ready(q))
			break;
		spin_unlock_irqrestore(&q->lock, flags);
		if (nowait)
			return -EAGAIN;
		timeout = wait_event_killable_timeout(q->wait,
						      csd_queue_ready(q) ||
						      READ_ONCE(ctrl->dead),
						      timeout);
		if (timeout < 0)
			return -EINTR;
		if (!timeout)
			return -ETIMEDOUT;
	}
	for (tag = 0; tag < q->depth; tag++)
		if (!q->cmds[tag])
			break;
	q->cmds[tag] = req;
	q->inflight++;
	atomic_inc(&ctrl->outstanding);
	req->q = q;
	req->start = jiffies;
	req->sqe.cid = (q->cid_gen++ & (0xffff >> CSD_CID_TAG_BITS)) <<
		       CSD_CID_TAG_BITS | tag;
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

/**
 * csd_exec_sync() - run a request and wait for it
 * @req: the request, data mapped, @req->q set
 * @timeout: jiffies, for the queue slot and again for the completion
 * @owned: set to whether the caller still owns @req
 *
 * *@owned is true on success (see req->status) and when @req was never
 * queued; false when the wait ended with -ETIMEDOUT, -EINTR (fatal signal)
 * or -EIO (controller dead): the request is then abandoned and freed by
 * the device side once the device can no longer touch its buffers.
 *
 * Return: 0 or a negative errno.
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

/**
 * csd_submit_sync() - driver-internal synchronous command
 * @ctrl: the controller
 * @qid: queue (0 admin)
 * @sqe: the command; PRPs and CID are filled in
 * @buf: kernel buffer (bounced through the window) or NULL
 * @data_len: bytes of @buf
 * @to_dev: @buf is written to the device
 * @result: CQE dw0 on success, or NULL
 *
 * Used for Identify at probe and for context cleanup; admin timeout.
 *
 * Return: 0, -EIO for an NVMe error status, or a negative errno.
 */
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
	ret = csd_data_map_kernel(req, buf, data_len, to_dev, false, timeout);
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

/*
 * A caller without CAP_SYS_ADMIN gets the contexts log through a kernel
 * buffer of at most this many bytes: the header and 1023 entries (csd-fw
 * has 64 contexts by default), one allocation.
 */
#define CSD_CTX_LOG_MAX		(64 * 1024)
/* device reads of one filtered contexts log before -EAGAIN */
#define CSD_CTX_LOG_TRIES	4

/* Get Log Page: NUMD (0's based, dwords) and LPO (bytes) of @sqe */
static u32 csd_log_numd(const struct csd_sqe *sqe)
{
	return sqe->cdw10 >> 16 | (sqe->cdw11 & 0xffff) << 16;
}

static u64 csd_log_lpo(const struct csd_sqe *sqe)
{
	return (u64)sqe->cdw13 << 32 | sqe->cdw12;
}

/*
 * May the caller see and use every context, also those no open file owns
 * (CAP_SYS_ADMIN)?  noaudit: without the capability the caller gets the
 * view of its own contexts, which is not a denial to log for an everyday
 * command.
 */
static bool csd_all_contexts(void)
{
	return ns_capable_noaudit(&init_user_ns, CAP_SYS_ADMIN);
}

/* Is @uc a Get Log Page C1h (contexts) the caller may only see filtered? */
static bool csd_ctx_log_filtered(const struct csd_ucmd *uc)
{
	return uc->admin && uc->sqe.opcode == CSD_ADM_GET_LOG_PAGE &&
	       (uc->sqe.cdw10 & 0xff) == CSD_LOG_CONTEXTS &&
	       !csd_all_contexts();
}

/* Before changing @cf's entries in ctrl->contexts (struct csd_file). */
static void csd_ctx_gen_bump(struct csd_file *cf)
{
	atomic_inc(&cf->ctx_gen);
	/* before the xarray change; pairs with csd_ctx_log_filter() */
	smp_mb__after_atomic();
}

/**
 * csd_ctx_log_prepare() - Get Log Page C1h of a caller without CAP_SYS_ADMIN
 * @req: a fresh request of the submitting file, req->sqe = the user's
 * @uc: the command, checked by csd_validate()
 * @nowait: neither sleep in the allocation nor wait for a bounce chunk
 *	(-EAGAIN: io_uring retries from a worker)
 *
 * The caller may only see its own contexts (csd_ctx_log_finish()), so the
 * device's log cannot go to the user buffer: the whole log (header and up
 * to max_contexts entries, at most max_xfer and %CSD_CTX_LOG_MAX bytes) is
 * read from offset 0 into a kernel buffer (charged to the caller's memory
 * cgroup), through the bounce window.  The caller's NUMD and LPO apply to
 * the filtered log; the checks the device would make on them are made by
 * csd_ctx_log_finish().  The other fields (NSID, LSP, RAE, CDW11 31:16,
 * CDW14, CDW15) go to the device as given.  The buffer is freed with the
 * request.  The file's ctx_gen is recorded before the device reads.
 *
 * Return: 0, -EINVAL (max_xfer below 64 bytes), -ENOMEM, -EAGAIN, or an
 * error of csd_data_map_kernel().
 */
static int csd_ctx_log_prepare(struct csd_req *req, const struct csd_ucmd *uc,
			       bool nowait)
{
	const size_t esz = sizeof(struct csd_log_ctx_entry);
	gfp_t gfp = nowait ? GFP_NOWAIT | __GFP_ACCOUNT | __GFP_NOWARN :
			     GFP_KERNEL_ACCOUNT;
	struct csd_ctrl *ctrl = req->ctrl;
	u32 numd = csd_log_numd(&uc->sqe);
	u64 lpo = csd_log_lpo(&uc->sqe);
	u32 len;
	int ret;

	/* the header counts as one entry */
	len = min_t(u64, ((u64)ctrl->max_contexts + 1) * esz, CSD_CTX_LOG_MAX);
	len = min_t(u32, len, rounddown(ctrl->max_xfer, esz));
	if (!len)
		return -EINVAL;
	req->log.buf = kvmalloc(len, gfp);
	if (!req->log.buf)
		return nowait ? -EAGAIN : -ENOMEM;
	req->log.ubuf = u64_to_user_ptr(uc->addr);
	req->log.ulen = uc->data_len;
	req->log.lpo = lpo;
	req->log.bad = ((u64)numd + 1) * 4 != uc->data_len ||
		       !IS_ALIGNED(lpo, 4);
	/* read before the submission's release store of the SQ tail */
	req->log.gen = atomic_read(&req->file->ctx_gen);

	numd = len / 4 - 1;
	req->sqe.cdw10 = (req->sqe.cdw10 & 0xffff) | numd << 16;
	req->sqe.cdw11 = (req->sqe.cdw11 & 0xffff0000) | numd >> 16;
	req->sqe.cdw12 = 0;
	req->sqe.cdw13 = 0;
	req->q = &ctrl->queues[0];
	ret = csd_data_map_kernel(req, req->log.buf, len, false, nowait,
				  csd_timeout(true, uc->timeout_ms));
	if (!ret)
		atomic64_inc(&ctrl->bounce_cmds);
	return ret;
}

/*
 * Keep the entries of the device's log in req->log.buf that the submitting
 * file owns, in the device's (ascending id) order; set the header's count
 * to their number and zero its reserved bytes.  The count comes from the
 * device: entries past the bytes read are ignored.  *@size = the filtered
 * log's size.  Returns whether the file's contexts stayed the same since
 * req->log.gen was read (before the device read the log).  Why that makes
 * the filtered log exact: an id the file owns now is a context the file
 * created (owners are recorded after the device created the context, and
 * taken away before a CTX_DESTROY is sent: csd_ctx_access()), and the same
 * id listed by the device earlier, while the file's entries did not
 * change, was that very context, not a context of another file that had
 * the id before (ids are slots, reused).
 */
static bool csd_ctx_log_filter(struct csd_req *req, size_t *size)
{
	struct csd_ctrl *ctrl = req->ctrl;
	struct csd_log_ctx_hdr *hdr = req->log.buf;
	struct csd_log_ctx_entry *e = (struct csd_log_ctx_entry *)(hdr + 1);
	u32 max = (req->data.len - sizeof(*hdr)) / sizeof(*e);
	u32 n = min(hdr->count, max), i, kept = 0;

	for (i = 0; i < n; i++) {
		if (xa_load(&ctrl->contexts, e[i].ctx_id) != req->file)
			continue;
		if (i != kept)
			e[kept] = e[i];
		kept++;
	}
	memset(hdr, 0, sizeof(*hdr));
	hdr->count = kept;
	*size = sizeof(*hdr) + (size_t)kept * sizeof(*e);
	/* the owners above before the generation; pairs with csd_ctx_gen_bump() */
	smp_rmb();
	return atomic_read(&req->file->ctx_gen) == req->log.gen;
}

/**
 * csd_ctx_log_finish() - deliver a filtered Get Log Page C1h
 * @req: a request of csd_ctx_log_prepare() that completed successfully,
 *	the device's log copied into req->log.buf
 *
 * The caller sees a valid C1h log of 64 + 64 * count bytes listing its own
 * contexts (csd_ctx_log_filter()).  If the file created or destroyed a
 * context while the device read the log, the log is read again (at most
 * %CSD_CTX_LOG_TRIES reads in all, synchronously, also for io_uring: in
 * the submitter's task), then -EAGAIN.  Bytes [LPO, LPO + length) of the
 * filtered log are copied to the caller, bytes past its end are zero.  As
 * the device answers for its own log, INVALID_FIELD: NUMD not matching the
 * length, LPO not dword aligned, LPO at or past the end of the log.
 * Process context of the submitter.
 *
 * Return: 0, the NVMe status field INVALID_FIELD | DNR, -EAGAIN, -EFAULT,
 * or an error of csd_submit_sync().
 */
static int csd_ctx_log_finish(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;
	void __user *ubuf = req->log.ubuf;
	u32 ulen = req->log.ulen, len = req->data.len;
	unsigned int tries = 1;
	size_t size, cnt;
	int ret;

	if (req->log.bad)
		goto invalid;
	while (!csd_ctx_log_filter(req, &size)) {
		struct csd_sqe sqe = req->sqe;

		if (tries++ == CSD_CTX_LOG_TRIES)
			return -EAGAIN;
		/* our bounce chunk first: the window may have only one */
		csd_data_release(req);
		req->log.gen = atomic_read(&req->file->ctx_gen);
		ret = csd_submit_sync(ctrl, 0, &sqe, req->log.buf, len, false,
				      NULL);
		if (ret)
			return ret;
		atomic64_inc(&ctrl->bounce_cmds);
	}
	if (req->log.lpo >= size)
		goto invalid;
	cnt = min_t(u64, size - req->log.lpo, ulen);
	if (copy_to_user(ubuf, req->log.buf + req->log.lpo, cnt))
		return -EFAULT;
	if (cnt < ulen && clear_user(ubuf + cnt, ulen - cnt))
		return -EFAULT;
	return 0;
invalid:
	atomic64_inc(&ctrl->errors);
	return CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD) |
	       CSD_STATUS_DNR;
}

/**
 * csd_ctx_access() - may the submitting file name the context in CDW12?
 * @req: a fresh request of the submitting file, req->sqe = the user's
 *	I/O command, one that names a context (csd_io_names_ctx())
 *
 * A context another open file owns: -EACCES, for every caller.  One the
 * file owns: yes; a CTX_DESTROY takes the ownership away now, before the
 * device can free the id for reuse (req->ctx_dropped: given back if the
 * device refuses the command).  One no open file owns (none with that id,
 * or an orphan: its creator gave up, its destroy's outcome is unknown, it
 * predates the module): as is with CAP_SYS_ADMIN, to clean up; for any
 * other caller the command goes to the device with context id 0, so it
 * gets the device's answer for a context that does not exist (CTX_INVALID,
 * in the device's validation order) - the caller can neither see
 * (csd_ctx_log_finish()) nor use a context it does not own.
 *
 * Return: 0 or -EACCES.
 */
static int csd_ctx_access(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;
	struct csd_file *cf = req->file;
	u32 id = req->sqe.cdw12;
	void *owner;

	if (req->sqe.opcode == CSD_IO_CTX_DESTROY) {
		csd_ctx_gen_bump(cf);
		owner = xa_cmpxchg(&ctrl->contexts, id, cf, NULL, GFP_KERNEL);
		if (owner == cf)
			req->ctx_dropped = true;
	} else {
		owner = xa_load(&ctrl->contexts, id);
	}
	if (owner == cf)
		return 0;
	if (owner)
		return -EACCES;
	if (!csd_all_contexts())
		req->sqe.cdw12 = 0;
	return 0;
}

/*
 * Did the device refuse a CTX_DESTROY before touching the context (the
 * field checks of its step 2)?  Any other outcome - success, CTX_INVALID,
 * aborted by a controller reset (it may have run) - leaves the id unowned.
 */
static bool csd_destroy_refused(u16 status)
{
	u16 sc = CSD_STATUS_SC(status);

	return CSD_STATUS_SCT(status) == CSD_SCT_GENERIC &&
	       (sc == CSD_SC_INVALID_OPCODE || sc == CSD_SC_INVALID_FIELD ||
		sc == CSD_SC_INVALID_NS);
}

/* Give back the ownership csd_ctx_access() took away.  Process context. */
static void csd_ctx_restore(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;
	u32 id = req->sqe.cdw12;
	void *old;

	csd_ctx_gen_bump(req->file);
	old = xa_cmpxchg(&ctrl->contexts, id, NULL, req->file, GFP_KERNEL);
	if (old)
		dev_warn(&ctrl->pdev->dev,
			 "context %u left without owner (%d)\n", id,
			 xa_is_err(old) ? xa_err(old) : -EBUSY);
}

/**
 * csd_req_prepare_user() - ownership, queue and data of a user command
 * @req: a fresh request of the submitting file
 * @uc: the command, checked by csd_validate()
 * @nowait: do not sleep for memory or a bounce chunk (-EAGAIN)
 *
 * A command naming (CDW12) a context is checked by csd_ctx_access().  A Get
 * Log Page C1h of a caller without CAP_SYS_ADMIN goes through a kernel
 * buffer (csd_ctx_log_prepare()).  The caller frees @req on error.
 *
 * Return: 0, -EACCES, -EINVAL, -EIO (dead), -EFAULT, -ENOMEM, -EAGAIN,
 * -EINTR or -ETIMEDOUT.
 */
int csd_req_prepare_user(struct csd_req *req, const struct csd_ucmd *uc,
			 bool nowait)
{
	struct csd_ctrl *ctrl = req->ctrl;
	u8 opc = uc->sqe.opcode;
	unsigned int qid;
	int ret;

	if (READ_ONCE(ctrl->dead))
		return -EIO;
	req->sqe = uc->sqe;
	if (!uc->admin && csd_io_names_ctx(opc)) {
		ret = csd_ctx_access(req);
		if (ret)
			return ret;
	}
	if (csd_ctx_log_filtered(uc))
		return csd_ctx_log_prepare(req, uc, nowait);
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

/**
 * csd_req_start() - queue a prepared asynchronous request
 * @req: the request, req->end_io set
 * @timeout_ms: the user's timeout (0: the module's), ends the submitter
 *	side through the watchdog
 * @nowait: return -EAGAIN rather than wait for a queue slot
 *
 * Return: 0 (req->end_io will be called exactly once) or a negative errno
 * (@req not queued, the caller frees it).
 */
int csd_req_start(struct csd_req *req, unsigned int timeout_ms, bool nowait)
{
	unsigned long tmo = csd_timeout(!req->q->qid, timeout_ms);

	req->deadline = jiffies + tmo;
	return csd_queue_submit(req->q, req, nowait, tmo);
}

/*
 * Record the owner of the context a successful CTX_CREATE made (a
 * CTX_DESTROY's was taken away by csd_ctx_access()).  A context that
 * cannot be recorded could not be used by its creator: it is destroyed
 * and the command fails with -ENOMEM.
 */
static int csd_track_contexts(struct csd_req *req)
{
	struct csd_ctrl *ctrl = req->ctrl;
	u32 id = lower_32_bits(req->result);
	struct csd_sqe sqe = {
		.opcode = CSD_IO_CTX_DESTROY,
		.nsid = CSD_NSID,
		.cdw12 = id,
	};
	int err;

	if (!req->file || !req->q->qid || req->sqe.opcode != CSD_IO_CTX_CREATE)
		return 0;
	csd_ctx_gen_bump(req->file);
	err = xa_err(xa_store(&ctrl->contexts, id, req->file, GFP_KERNEL));
	if (!err)
		return 0;
	dev_warn(&ctrl->pdev->dev, "cannot track context %u (%d): destroyed\n",
		 id, err);
	csd_submit_sync(ctrl, 1, &sqe, NULL, 0, false, NULL);
	return err;
}

/**
 * csd_req_user_finish() - the submitter's side of a completed user command
 * @req: the completed request, owned by the caller; freed here
 * @result: set to CQE dw0 | dw1 << 32
 *
 * Process context of the submitter: records the owner of a created
 * context, delivers bounced read data (copy_to_user; a filtered contexts
 * log through csd_ctx_log_finish()).  A CTX_DESTROY the device refused
 * gives the context back to the file (csd_req_free()).
 *
 * Return: the NVMe status field (>= 0) or a negative errno.
 */
int csd_req_user_finish(struct csd_req *req, u64 *result)
{
	int ret = req->status & 0x7fff;

	*result = req->result;
	if (req->ctx_dropped && !csd_destroy_refused(ret))
		req->ctx_dropped = false;
	if (!ret) {
		ret = csd_track_contexts(req);
		if (!ret)
			ret = csd_data_finish(req);
		if (!ret && req->log.buf)
			ret = csd_ctx_log_finish(req);
	}
	csd_req_free(req);
	return ret;
}

/**
 * csd_submit_user() - synchronous user passthrough command (ioctl)
 * @ctrl: the controller
 * @file: the submitting open file (context owner)
 * @uc: the command, checked by csd_validate()
 * @result: set to CQE dw0 | dw1 << 32 on completion
 *
 * Return: a negative errno, or the NVMe status field (>= 0).
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

/**
 * csd_release_contexts() - destroy contexts on the device
 * @ctrl: the controller
 * @file: destroy the contexts of this file (being released), or of every
 *	file (NULL: the device is going away)
 *
 * Each context is taken out of the table by exactly one caller, which
 * sends its CTX_DESTROY (unless the controller is dead).  May sleep.
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

/**
 * csd_ctrl_reset() - controller reset (device interface 1.2, caps bit 3)
 * @ctrl: the controller
 * @why: logged with the outcome
 *
 * Stops every queue (new submissions wait, or get -EAGAIN when they may
 * not block; no more CQEs are read, after the ones already posted), asks
 * the daemon for a reset (reset_req = reset_ack + 1, release; vector 0
 * doorbell) and waits for its acknowledgment, for at most admin_timeout,
 * woken by the vector 0 interrupt and polling every CSD_WATCHDOG_MS.  The
 * acknowledged daemon has discarded every command of ours and touches none
 * of their buffers: each request still on a queue ends with the status
 * ABORT_REQ | DNR (0x4007; submitters that gave up already just have their
 * request freed), the buffers are released, the queues restart at index 0
 * with phase 1, and submission resumes.  CID generations keep counting, so
 * a stale CQE cannot complete a new command.
 *
 * No acknowledgment within admin_timeout: the controller is dead (buffers
 * stay with the commands).  A controller that dies during the wait (e.g.
 * removal) still gets its buffers back if the acknowledgment arrives in
 * time, but stays dead.  One reset at a time; process context.
 *
 * Return: 0, -EOPNOTSUPP (the daemon cannot reset), or -EIO (dead).
 */
int csd_ctrl_reset(struct csd_ctrl *ctrl, const char *why)
{
	struct device *dev = &ctrl->pdev->dev;
	unsigned int v, tag, aborted = 0;
	unsigned long deadline, flags;
	bool acked = false;
	int ret = 0;
	u32 req;

	if (!(ctrl->caps & CSD_DEVIF_CAP_RESET))
		return -EOPNOTSUPP;
	mutex_lock(&ctrl->reset_lock);
	if (READ_ONCE(ctrl->dead)) {
		ret = -EIO;
		goto out_unlock;
	}
	WRITE_ONCE(ctrl->resetting, true);

	/* 1. stop the queues: after this, no SQE is written, no CQE read */
	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];

		spin_lock_irqsave(&q->lock, flags);
		csd_process_cq(q);
		WRITE_ONCE(q->stopped, true);
		spin_unlock_irqrestore(&q->lock, flags);
	}

	/* 2. request */
	req = READ_ONCE(ctrl->client->reset_ack) + 1;
	WRITE_ONCE(ctrl->reset_req, req);
	/* every SQE and tail written before is visible before the request */
	smp_store_release(&ctrl->client->reset_req, req);
	wmb(); /* reset_req visible before the doorbell write */
	writel(CSD_DEVIF_DAEMON_PEER << 16 | 0, ctrl->bar0 + CSD_IVSHM_DOORBELL);

	/* 3. the acknowledgment */
	deadline = jiffies + csd_timeout(true, 0);
	for (;;) {
		acked = csd_reset_acked(ctrl);
		if (acked || READ_ONCE(ctrl->dma_stopped) ||
		    time_after(jiffies, deadline))
			break;
		wait_event_timeout(ctrl->reset_wait, csd_reset_acked(ctrl) ||
				   READ_ONCE(ctrl->dma_stopped),
				   msecs_to_jiffies(CSD_WATCHDOG_MS));
	}
	if (!acked) {
		csd_ctrl_kill(ctrl, "controller reset not acknowledged", false);
		ret = -EIO;
		goto out;
	}

	/* 4. the daemon let go of every command: abort them, restart */
	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];

		spin_lock_irqsave(&q->lock, flags);
		for (tag = 0; tag < q->depth; tag++) {
			struct csd_req *r = q->cmds[tag];

			if (!r)
				continue;
			q->cmds[tag] = NULL;
			r->status = CSD_STATUS_HOST_ABORTED;
			r->result = 0;
			atomic64_inc(&ctrl->errors);
			csd_req_device_end(q, r);
			aborted++;
		}
		q->sq_tail = 0;
		q->cq_head = 0;
		q->cq_phase = 1;
		WRITE_ONCE(q->stopped, false);
		spin_unlock_irqrestore(&q->lock, flags);
		wake_up_all(&q->wait);
	}
	if (READ_ONCE(ctrl->dead)) {
		ret = -EIO;
		goto out;
	}
	atomic64_inc(&ctrl->resets);
	dev_warn(dev, "controller reset (%s): %u commands aborted\n", why,
		 aborted);
out:
	WRITE_ONCE(ctrl->resetting, false);
out_unlock:
	mutex_unlock(&ctrl->reset_lock);
	return ret;
}

/* A reset the watchdog asked for, unless another one came first. */
static void csd_reset_work(struct work_struct *work)
{
	struct csd_ctrl *ctrl = container_of(work, struct csd_ctrl,
					     reset_work);

	if (atomic64_read(&ctrl->resets) == READ_ONCE(ctrl->reset_trigger))
		csd_ctrl_reset(ctrl, "command timeout");
}

/*
 * Timeouts.  Asynchronous submitters whose own deadline passed get
 * -ETIMEDOUT (synchronous ones time out in csd_exec_sync()).  A command
 * still on its queue when its module timeout (from its start) expired
 * ends its submitter with -ETIMEDOUT if that still waits and triggers a
 * controller reset (csd_reset_work()), which aborts every other command;
 * a daemon that cannot reset makes the controller dead instead.
 * Watchdog context.
 */
static void csd_check_timeouts(struct csd_ctrl *ctrl)
{
	bool resetting = READ_ONCE(ctrl->resetting);
	unsigned long now = jiffies, flags;
	unsigned int v, tag, hung_qid = 0;
	u8 hung_opc = 0;
	bool hung = false;

	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];
		unsigned long tmo = csd_timeout(!v, 0);

		spin_lock_irqsave(&q->lock, flags);
		for (tag = 0; q->inflight && tag < q->depth; tag++) {
			struct csd_req *req = q->cmds[tag];
			bool expired;

			if (!req)
				continue;
			/* the reset in progress decides the others' fate */
			expired = !resetting &&
				  time_after_eq(now, req->start + tmo);
			if (!req->abandoned &&
			    (expired || (req->end_io &&
					 time_after_eq(now, req->deadline)))) {
				atomic64_inc(&ctrl->timeouts);
				dev_warn_ratelimited(&ctrl->pdev->dev,
						     "queue %u: command %#x timed out\n",
						     v, req->sqe.opcode);
				csd_req_end_submitter(req, -ETIMEDOUT);
			}
			if (expired && !hung) {
				hung = true;
				hung_qid = v;
				hung_opc = req->sqe.opcode;
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
	}
	if (!hung)
		return;
	if (!(ctrl->caps & CSD_DEVIF_CAP_RESET)) {
		dev_err(&ctrl->pdev->dev,
			"queue %u: command %#x not completed in %u ms and the device cannot reset\n",
			hung_qid, hung_opc,
			jiffies_to_msecs(csd_timeout(!hung_qid, 0)));
		csd_ctrl_kill(ctrl, "command timeout", false);
		return;
	}
	if (work_pending(&ctrl->reset_work))
		return;
	dev_warn(&ctrl->pdev->dev,
		 "queue %u: command %#x not completed in %u ms, resetting the controller\n",
		 hung_qid, hung_opc, jiffies_to_msecs(csd_timeout(!hung_qid, 0)));
	WRITE_ONCE(ctrl->reset_trigger, atomic64_read(&ctrl->resets));
	queue_work(csd_wq, &ctrl->reset_work);
}

/*
 * Every CSD_WATCHDOG_MS: the daemon's liveness (heartbeat, status, our
 * client slot) and command timeouts.  Keeps running after death until the
 * daemon can no longer touch our memory.
 */
static void csd_watchdog(struct work_struct *work)
{
	struct csd_ctrl *ctrl = container_of(to_delayed_work(work),
					     struct csd_ctrl, watchdog);
	/* daemon-provided: keep 10 x period from wrapping (at most 10 min) */
	u32 period = clamp_t(u32, READ_ONCE(ctrl->regs->hb_period_ms), 1,
			     60000);
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

/* [@off, @off + @len) inside [0, @limit), without overflow */
static bool csd_range_ok(u64 off, u64 len, u64 limit)
{
	return off <= limit && len <= limit - off;
}

static int csd_queue_init(struct csd_ctrl *ctrl, unsigned int v)
{
	const struct csd_layout *l = &ctrl->layout;
	struct csd_queue *q = &ctrl->queues[v];
	void *base = ctrl->client_area + l->q_off + v * l->q_stride;
	u32 sq_tail, cq_head;

	q->ctrl = ctrl;
	q->qid = v;
	q->depth = ctrl->depth;
	spin_lock_init(&q->lock);
	init_waitqueue_head(&q->wait);
	q->sq = base + l->sq_off;
	q->sqx = base + l->sqx_off;
	q->cq = base + l->cq_off;
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
	ctrl->max_contexts = id->vs.max_contexts;
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

/*
 * Snapshot the register page into ctrl->layout and check it: every region
 * inside BAR2 and inside our client area, page aligned (device-interface.md
 * section 3), with no arithmetic that can wrap.  Hostile values fail probe.
 */
static int csd_read_layout(struct csd_ctrl *ctrl)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct csd_layout *l = &ctrl->layout;
	struct device *dev = &ctrl->pdev->dev;
	u32 max_clients, nr_io_queues, nr_vectors, depth, slot;
	u64 shm = ctrl->shm_size, client_off, stride;

	max_clients = READ_ONCE(r->max_clients);
	nr_io_queues = READ_ONCE(r->nr_io_queues);
	nr_vectors = READ_ONCE(r->nr_vectors);
	depth = READ_ONCE(r->queue_depth);
	ctrl->max_xfer = READ_ONCE(r->max_xfer);
	client_off = READ_ONCE(r->client_off);
	stride = READ_ONCE(r->client_stride);
	l->q_off = READ_ONCE(r->q_off);
	l->q_stride = READ_ONCE(r->q_stride);
	l->sq_off = READ_ONCE(r->sq_off);
	l->sqx_off = READ_ONCE(r->sqx_off);
	l->cq_off = READ_ONCE(r->cq_off);
	l->win_off = READ_ONCE(r->win_off);
	l->win_size = READ_ONCE(r->win_size);

	if (max_clients > CSD_DEVIF_MAX_CLIENTS || ctrl->peer_id < 1 ||
	    ctrl->peer_id > max_clients) {
		dev_err(dev, "bad peer id %u (%u clients)\n", ctrl->peer_id,
			max_clients);
		return -ENODEV;
	}
	slot = ctrl->peer_id - 1;
	if (nr_io_queues < 1 || nr_io_queues > CSD_DEVIF_MAX_QUEUES - 1 ||
	    nr_vectors != nr_io_queues + 1 || depth < CSD_DEVIF_MIN_DEPTH ||
	    depth > CSD_DEVIF_MAX_DEPTH)
		goto bad;
	/*
	 * Client area: client_off + slot * stride.  Stride 0 (devif 1.1,
	 * one shared memory per client) makes the area run to the end.
	 */
	if (stride > shm || !csd_range_ok(client_off, (u64)slot * stride, shm))
		goto bad;
	l->client_off = client_off + (u64)slot * stride;
	l->area_size = stride ? stride : shm - client_off;
	if (!csd_range_ok(l->client_off, l->area_size, shm) ||
	    l->area_size < sizeof(struct csd_devif_client))
		goto bad;
	if (!IS_ALIGNED(l->client_off | l->q_off | l->q_stride | l->sq_off |
			l->sqx_off | l->cq_off | l->win_off, CSD_DEVIF_PAGE))
		goto bad;
	/* queues: nr_vectors strides, each holding the three rings */
	if (l->q_stride > l->area_size ||
	    !csd_range_ok(l->q_off, nr_vectors * l->q_stride, l->area_size) ||
	    !csd_range_ok(l->sq_off, depth * sizeof(struct csd_sqe),
			  l->q_stride) ||
	    !csd_range_ok(l->sqx_off, depth * sizeof(struct csd_devif_sqx),
			  l->q_stride) ||
	    !csd_range_ok(l->cq_off, depth * sizeof(struct csd_cqe),
			  l->q_stride))
		goto bad;
	/* the window holds at least one max_xfer command (csd_window_init) */
	if (!csd_range_ok(l->win_off, l->win_size, l->area_size) ||
	    !ctrl->max_xfer || ctrl->max_xfer > l->win_size)
		goto bad;

	ctrl->depth = depth;
	ctrl->nr_vectors = nr_vectors;
	ctrl->nr_io_queues = min_t(u32, nr_io_queues, num_possible_cpus());
	return 0;

bad:
	dev_err(dev, "inconsistent register page\n");
	return -ENODEV;
}

/*
 * A reset requested by an earlier instance of the driver (removed while it
 * waited) may still be in progress: the daemon zeroes the rings and
 * doorbells when it completes, so wait for that before reading them.
 */
static int csd_wait_reset_done(struct csd_ctrl *ctrl)
{
	unsigned long deadline = jiffies + csd_timeout(true, 0);
	struct csd_devif_client *c = ctrl->client;

	if (!(ctrl->caps & CSD_DEVIF_CAP_RESET))
		return 0;
	/* acquire: the daemon's zeroing is visible once the ack is */
	while (smp_load_acquire(&c->reset_ack) != READ_ONCE(c->reset_req)) {
		if (time_after(jiffies, deadline)) {
			dev_err(&ctrl->pdev->dev,
				"a controller reset of an earlier attach never completed\n");
			return -EIO;
		}
		msleep(20);
	}
	return 0;
}

/**
 * csd_ctrl_init() - validate the register page and attach to our client slot
 * @ctrl: the controller; @regs, @shm, @shm_size, @peer_id and @caps are set
 *
 * Reads the layout once (csd_read_layout()), checks that our client slot is
 * active, sets up the queues from the doorbell words (the daemon keeps its
 * queue state across module reloads) and the bounce window.  No interrupt
 * and no command yet.  On error the caller frees with the last reference.
 *
 * Return: 0 or a negative errno (-ENODEV for a layout we cannot use).
 */
int csd_ctrl_init(struct csd_ctrl *ctrl)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct device *dev = &ctrl->pdev->dev;
	unsigned int v;
	int ret;

	ret = csd_read_layout(ctrl);
	if (ret)
		return ret;
	if (ctrl->caps & CSD_DEVIF_CAP_DMA_RAM) {
		ctrl->dma_size = READ_ONCE(r->dma_size);
		if (!ctrl->dma_size)
			ctrl->caps &= ~CSD_DEVIF_CAP_DMA_RAM;
	}
	ctrl->client_area = ctrl->shm + ctrl->layout.client_off;
	ctrl->client = ctrl->client_area;
	if (READ_ONCE(ctrl->client->state) != CSD_DEVIF_CLIENT_ACTIVE ||
	    READ_ONCE(ctrl->client->peer_id) != ctrl->peer_id) {
		dev_err(dev, "client slot %u not active\n", ctrl->peer_id - 1);
		return -ENODEV;
	}
	ret = csd_wait_reset_done(ctrl);
	if (ret)
		return ret;

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
	INIT_WORK(&ctrl->reset_work, csd_reset_work);
	return 0;
}

int csd_ctrl_start(struct csd_ctrl *ctrl)
{
	schedule_delayed_work(&ctrl->watchdog,
			      msecs_to_jiffies(CSD_WATCHDOG_MS));
	return csd_identify(ctrl);
}

/**
 * csd_ctrl_remove() - stop using the device (unbind, rmmod, hot unplug,
 *	failed probe)
 * @ctrl: the controller; interrupts still registered
 *
 * Destroys the contexts of files still open while the device can, fails
 * everything, waits for ioctls in progress (a controller reset among them)
 * to leave and (up to 5 s) for the device to finish the commands it owns,
 * then stops the watchdog and a reset it may have started.  Open
 * files get -ENODEV from now on.  Memory is freed with the last reference.
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
	/* the watchdog queues reset_work: stop it first */
	cancel_delayed_work_sync(&ctrl->watchdog);
	cancel_work_sync(&ctrl->reset_work);
	left = atomic_read(&ctrl->outstanding);
	if (left)
		dev_warn(&ctrl->pdev->dev,
			 "%d commands still owned by the device: their buffers stay pinned\n",
			 left);
}

/**
 * csd_ctrl_shutdown() - free what csd_ctrl_init() allocated
 * @ctrl: the controller, at its last reference (no interrupts, no requests)
 */
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
