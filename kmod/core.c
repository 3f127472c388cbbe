// SPDX-License-Identifier: GPL-2.0
/*
 * core.c - controller attach, queues, command submission and completion,
 * timeouts and the liveness watchdog of csd.ko.
 *
 * Data moves through the client's data window in BAR2 (bounce buffers);
 * see Documentation/driver.md for why and what replaces it.
 */
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "csd.h"

#ifdef __BIG_ENDIAN
#error "csd.ko writes little-endian queue entries natively"
#endif

#define CSD_PRP_PER_PAGE	(CSD_DEVIF_PAGE / sizeof(u64))
#define CSD_MAX_CHUNKS		64
#define CSD_NO_CHUNK		(-1)

struct csd_req {
	struct csd_cmd cmd;
	struct csd_queue *q;
	int chunk;
	bool abandoned;		/* waiter gave up; the IRQ frees the request */
};

static void csd_win_put(struct csd_window *win, int chunk)
{
	unsigned long flags;

	if (chunk == CSD_NO_CHUNK)
		return;
	spin_lock_irqsave(&win->lock, flags);
	clear_bit(chunk, win->busy);
	spin_unlock_irqrestore(&win->lock, flags);
	up(&win->free);
}

static int csd_win_get(struct csd_window *win, unsigned long timeout)
{
	unsigned long flags;
	unsigned int i;

	if (down_timeout(&win->free, timeout))
		return -ETIMEDOUT;
	spin_lock_irqsave(&win->lock, flags);
	i = find_first_zero_bit(win->busy, win->nr_chunks);
	if (!WARN_ON_ONCE(i >= win->nr_chunks))
		set_bit(i, win->busy);
	spin_unlock_irqrestore(&win->lock, flags);
	if (i >= win->nr_chunks) {
		up(&win->free);
		return -EIO;
	}
	return i;
}

static void *csd_win_addr(struct csd_window *win, int chunk)
{
	return win->base + (size_t)chunk * win->chunk_size;
}

/* Describe @len bytes at the start of @chunk with PRPs (window addresses). */
static void csd_build_prps(struct csd_window *win, int chunk, u32 len,
			   struct csd_sqe *sqe)
{
	u64 off = (u64)chunk * win->chunk_size;
	u32 npages = DIV_ROUND_UP(len, CSD_DEVIF_PAGE);
	u64 list_off;
	u64 *list;
	u32 i, idx;

	sqe->prp1 = CSD_DEVIF_ADDR_WINDOW | off;
	sqe->prp2 = 0;
	if (npages <= 1)
		return;
	if (npages == 2) {
		sqe->prp2 = CSD_DEVIF_ADDR_WINDOW | (off + CSD_DEVIF_PAGE);
		return;
	}
	list_off = off + win->data_size;
	list = win->base + list_off;
	sqe->prp2 = CSD_DEVIF_ADDR_WINDOW | list_off;
	for (i = 1, idx = 0; i < npages; i++) {
		if (idx == CSD_PRP_PER_PAGE - 1 && i < npages - 1) {
			list_off += CSD_DEVIF_PAGE;
			WRITE_ONCE(list[idx], CSD_DEVIF_ADDR_WINDOW | list_off);
			list = win->base + list_off;
			idx = 0;
		}
		WRITE_ONCE(list[idx++], CSD_DEVIF_ADDR_WINDOW |
			   (off + (u64)i * CSD_DEVIF_PAGE));
	}
}

static void csd_req_free(struct csd_ctrl *ctrl, struct csd_req *req)
{
	csd_win_put(&ctrl->win, req->chunk);
	kfree(req);
}

/* Called with q->lock held once the request left the queue. */
static void csd_req_finish(struct csd_queue *q, struct csd_req *req)
{
	q->inflight--;
	if (req->abandoned) {
		up(&q->slots);
		csd_req_free(q->ctrl, req);
		return;
	}
	complete(&req->cmd.done);
}

irqreturn_t csd_irq(int irq, void *data)
{
	struct csd_queue *q = data;
	bool found = false;

	spin_lock(&q->lock);
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
		req = container_of(q->cmds[cid], struct csd_req, cmd);
		q->cmds[cid] = NULL;
		req->cmd.status = st >> 1;
		req->cmd.result = READ_ONCE(cqe->dw0);
		csd_req_finish(q, req);
	}
	if (found)
		/* publish entries/consumption before the daemon reads the index */
		smp_store_release(&q->db->cq_head, q->cq_head);
	spin_unlock(&q->lock);
	return IRQ_HANDLED;
}

/*
 * The device cannot come back (device-interface.md section 2): complete every
 * pending command with -EIO and refuse new ones.
 */
void csd_ctrl_kill(struct csd_ctrl *ctrl, const char *why)
{
	unsigned int v, cid;
	unsigned long flags;

	for (v = 0; v <= ctrl->nr_io_queues; v++) {
		struct csd_queue *q = &ctrl->queues[v];

		spin_lock_irqsave(&q->lock, flags);
		if (v == 0 && !ctrl->dead && why)
			dev_err(&ctrl->pdev->dev, "controller dead: %s\n", why);
		WRITE_ONCE(ctrl->dead, true);
		for (cid = 0; cid < q->depth; cid++) {
			struct csd_req *req;

			if (!q->cmds[cid])
				continue;
			req = container_of(q->cmds[cid], struct csd_req, cmd);
			q->cmds[cid] = NULL;
			req->cmd.error = -EIO;
			csd_req_finish(q, req);
		}
		spin_unlock_irqrestore(&q->lock, flags);
	}
}

static int csd_queue_submit(struct csd_ctrl *ctrl, struct csd_queue *q,
			    struct csd_req *req)
{
	unsigned long flags;
	unsigned int cid;
	u16 tail;

	spin_lock_irqsave(&q->lock, flags);
	if (ctrl->dead) {
		spin_unlock_irqrestore(&q->lock, flags);
		return -EIO;
	}
	for (cid = 0; cid < q->depth; cid++)
		if (!q->cmds[cid])
			break;
	if (WARN_ON_ONCE(cid == q->depth)) {
		spin_unlock_irqrestore(&q->lock, flags);
		return -EIO;
	}
	q->cmds[cid] = &req->cmd;
	q->inflight++;
	req->cmd.sqe.cid = cid;
	tail = q->sq_tail;
	memcpy(&q->sq[tail], &req->cmd.sqe, sizeof(req->cmd.sqe));
	WRITE_ONCE(q->sqx[tail].data_len, req->cmd.data_len);
	WRITE_ONCE(q->sqx[tail].flags, 0);
	if (++tail == q->depth)
		tail = 0;
	q->sq_tail = tail;
	/* publish entries/consumption before the daemon reads the index */
	smp_store_release(&q->db->sq_tail, tail);
	wmb(); /* tail visible before the doorbell write */
	writel(CSD_DEVIF_DAEMON_PEER << 16 | q->qid,
	       ctrl->bar0 + CSD_IVSHM_DOORBELL);
	spin_unlock_irqrestore(&q->lock, flags);
	return 0;
}

/*
 * Run one request on queue @qid and wait up to @timeout jiffies.  On timeout
 * the request is abandoned: it keeps its CID and window chunk until the
 * device completes it (or the controller dies), and the caller gets
 * -ETIMEDOUT.  Returns 0 (see req->cmd.status) or a negative errno.
 */
static int csd_exec(struct csd_ctrl *ctrl, unsigned int qid,
		    struct csd_req *req, unsigned long timeout, bool *owned)
{
	struct csd_queue *q = &ctrl->queues[qid];
	unsigned long flags;
	int ret;

	*owned = true;
	req->q = q;
	if (down_timeout(&q->slots, timeout))
		return -ETIMEDOUT;
	ret = csd_queue_submit(ctrl, q, req);
	if (ret) {
		up(&q->slots);
		return ret;
	}
	atomic64_inc(&ctrl->commands);
	if (!wait_for_completion_timeout(&req->cmd.done, timeout)) {
		spin_lock_irqsave(&q->lock, flags);
		if (!completion_done(&req->cmd.done)) {
			req->abandoned = true;
			*owned = false;
		}
		spin_unlock_irqrestore(&q->lock, flags);
		if (!*owned) {
			atomic64_inc(&ctrl->timeouts);
			dev_warn_ratelimited(&ctrl->pdev->dev,
					     "queue %u: command %#x timed out\n",
					     qid, req->cmd.sqe.opcode);
			return -ETIMEDOUT;
		}
	}
	up(&q->slots);
	if (req->cmd.error)
		return req->cmd.error;
	if (req->cmd.status)
		atomic64_inc(&ctrl->errors);
	return 0;
}

static struct csd_req *csd_req_alloc(struct csd_ctrl *ctrl, u32 data_len,
				     unsigned long timeout, int *err)
{
	struct csd_req *req = kzalloc(sizeof(*req), GFP_KERNEL);

	if (!req) {
		*err = -ENOMEM;
		return NULL;
	}
	init_completion(&req->cmd.done);
	req->chunk = CSD_NO_CHUNK;
	if (data_len) {
		int chunk = csd_win_get(&ctrl->win, timeout);

		if (chunk < 0) {
			kfree(req);
			*err = chunk;
			return NULL;
		}
		req->chunk = chunk;
	}
	req->cmd.data_len = data_len;
	return req;
}

/* Kernel-internal synchronous command (Identify at probe, context cleanup). */
int csd_submit_sync(struct csd_ctrl *ctrl, unsigned int qid,
		    struct csd_sqe *sqe, void *buf, u32 data_len,
		    bool to_dev, u32 *result)
{
	unsigned long timeout = msecs_to_jiffies(csd_admin_timeout * 1000);
	struct csd_req *req;
	bool owned;
	int ret;

	if (data_len > ctrl->win.data_size)
		return -EINVAL;
	req = csd_req_alloc(ctrl, data_len, timeout, &ret);
	if (!req)
		return ret;
	req->cmd.sqe = *sqe;
	if (data_len) {
		void *p = csd_win_addr(&ctrl->win, req->chunk);

		if (to_dev)
			memcpy(p, buf, data_len);
		csd_build_prps(&ctrl->win, req->chunk, data_len, &req->cmd.sqe);
	}
	ret = csd_exec(ctrl, qid, req, timeout, &owned);
	if (!owned)
		return ret;
	if (!ret && req->cmd.status)
		ret = -EIO;
	if (!ret && data_len && !to_dev)
		memcpy(buf, csd_win_addr(&ctrl->win, req->chunk), data_len);
	if (!ret && result)
		*result = req->cmd.result;
	csd_req_free(ctrl, req);
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
 * Submit a user passthrough command.  The caller validated every field.
 * Returns a negative errno, or the NVMe status field (>= 0) with *result.
 */
int csd_submit_user(struct csd_ctrl *ctrl, struct csd_file *file, bool admin,
		    struct csd_sqe *sqe, void __user *ubuf, u32 data_len,
		    unsigned int timeout_ms, u32 *result)
{
	unsigned int tmo_s = admin ? csd_admin_timeout : csd_io_timeout;
	unsigned long timeout;
	struct csd_req *req;
	unsigned int qid;
	bool to_dev = CSD_OPC_XFER(sqe->opcode) == CSD_XFER_TO_DEV;
	bool owned;
	void *p = NULL;
	int ret;

	if (timeout_ms && timeout_ms < tmo_s * 1000)
		timeout = msecs_to_jiffies(timeout_ms);
	else
		timeout = msecs_to_jiffies(tmo_s * 1000);

	if (!admin && csd_opc_names_ctx(sqe->opcode)) {
		void *owner = xa_load(&ctrl->contexts, sqe->cdw12);

		if (owner && owner != file)
			return -EACCES;
	}

	req = csd_req_alloc(ctrl, data_len, timeout, &ret);
	if (!req)
		return ret;
	req->cmd.sqe = *sqe;
	if (data_len) {
		p = csd_win_addr(&ctrl->win, req->chunk);
		if (to_dev && copy_from_user(p, ubuf, data_len)) {
			csd_req_free(ctrl, req);
			return -EFAULT;
		}
		csd_build_prps(&ctrl->win, req->chunk, data_len, &req->cmd.sqe);
	}
	if (admin) {
		qid = 0;
	} else {
		qid = atomic_inc_return(&ctrl->next_ioq);
		qid = qid % ctrl->nr_io_queues + 1;
	}
	ret = csd_exec(ctrl, qid, req, timeout, &owned);
	if (!owned)
		return ret;
	if (ret)
		goto out;
	ret = req->cmd.status & 0x7fff;
	*result = req->cmd.result;
	if (!ret && data_len && !to_dev && copy_to_user(ubuf, p, data_len))
		ret = -EFAULT;
	if (!admin && !(req->cmd.status & 0x7fff)) {
		if (sqe->opcode == CSD_IO_CTX_CREATE) {
			int err = xa_err(xa_store(&ctrl->contexts,
						  req->cmd.result, file,
						  GFP_KERNEL));
			if (err)
				dev_warn(&ctrl->pdev->dev,
					 "cannot track context %u: %d\n",
					 req->cmd.result, err);
		} else if (sqe->opcode == CSD_IO_CTX_DESTROY) {
			xa_cmpxchg(&ctrl->contexts, sqe->cdw12, file, NULL,
				   GFP_KERNEL);
		}
	}
out:
	csd_req_free(ctrl, req);
	return ret;
}

/* Destroy every context @file created (the file is being released). */
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

		if (owner != file)
			continue;
		xa_erase(&ctrl->contexts, id);
		if (!READ_ONCE(ctrl->dead))
			csd_submit_sync(ctrl, 1, &sqe, NULL, 0, false, NULL);
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

	if (ctrl->dead)
		return;
	if (status & (CSD_DEVIF_STS_CFS | CSD_DEVIF_STS_SHST) ||
	    !(status & CSD_DEVIF_STS_RDY)) {
		csd_ctrl_kill(ctrl, "daemon shut down or fatal status");
		return;
	}
	if (READ_ONCE(ctrl->client->state) != CSD_DEVIF_CLIENT_ACTIVE) {
		csd_ctrl_kill(ctrl, "client slot released");
		return;
	}
	if (hb != ctrl->last_heartbeat) {
		ctrl->last_heartbeat = hb;
		ctrl->last_beat_jiffies = jiffies;
	} else if (time_after(jiffies, ctrl->last_beat_jiffies + limit)) {
		csd_ctrl_kill(ctrl, "heartbeat stalled");
		return;
	}
	schedule_delayed_work(&ctrl->watchdog, msecs_to_jiffies(250));
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
	sema_init(&q->slots, q->depth - 1);
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

static int csd_window_init(struct csd_ctrl *ctrl)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct csd_window *win = &ctrl->win;
	size_t pages, lists;

	win->base = ctrl->client_area + r->win_off;
	win->data_size = round_up(ctrl->max_xfer, CSD_DEVIF_PAGE);
	pages = win->data_size / CSD_DEVIF_PAGE;
	lists = pages > 2 ? DIV_ROUND_UP(pages, CSD_PRP_PER_PAGE - 1) : 0;
	win->chunk_size = win->data_size + lists * CSD_DEVIF_PAGE;
	win->nr_chunks = min_t(u64, r->win_size / win->chunk_size,
			       CSD_MAX_CHUNKS);
	if (!win->nr_chunks) {
		dev_err(&ctrl->pdev->dev,
			"data window (%llu bytes) too small for max_xfer %u\n",
			r->win_size, ctrl->max_xfer);
		return -EINVAL;
	}
	win->busy = bitmap_zalloc(win->nr_chunks, GFP_KERNEL);
	if (!win->busy)
		return -ENOMEM;
	spin_lock_init(&win->lock);
	sema_init(&win->free, win->nr_chunks);
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
	char *s;
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
	s = ctrl->model;
	dev_info(&ctrl->pdev->dev, "%s fw %s, %u I/O queues x %u, max_xfer %u\n",
		 s, ctrl->fw_version, ctrl->nr_io_queues, ctrl->depth,
		 ctrl->max_xfer);
out:
	kfree(id);
	return ret;
}

/* Validate the register page and attach to our client slot. */
int csd_ctrl_init(struct csd_ctrl *ctrl)
{
	struct csd_devif_regs *r = ctrl->regs;
	struct device *dev = &ctrl->pdev->dev;
	u64 shm = ctrl->shm_size, cs, qend;
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
	if (r->nr_io_queues < 1 || r->nr_io_queues > CSD_DEVIF_MAX_QUEUES - 1 ||
	    r->nr_vectors != r->nr_io_queues + 1 ||
	    ctrl->depth < CSD_DEVIF_MIN_DEPTH ||
	    ctrl->depth > CSD_DEVIF_MAX_DEPTH || !ctrl->max_xfer ||
	    !csd_range_ok(r->client_off, (u64)(slot + 1) * cs, shm) ||
	    cs < sizeof(struct csd_devif_client) ||
	    !csd_range_ok(r->win_off, r->win_size, cs)) {
		dev_err(dev, "inconsistent register page\n");
		return -ENODEV;
	}
	qend = r->q_off + (u64)r->nr_vectors * r->q_stride;
	if (!csd_range_ok(r->q_off, (u64)r->nr_vectors * r->q_stride, cs) ||
	    qend > cs ||
	    !csd_range_ok(r->sq_off, ctrl->depth * sizeof(struct csd_sqe),
			  r->q_stride) ||
	    !csd_range_ok(r->sqx_off, ctrl->depth * sizeof(struct csd_devif_sqx),
			  r->q_stride) ||
	    !csd_range_ok(r->cq_off, ctrl->depth * sizeof(struct csd_cqe),
			  r->q_stride)) {
		dev_err(dev, "inconsistent queue layout\n");
		return -ENODEV;
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
}

int csd_ctrl_start(struct csd_ctrl *ctrl)
{
	schedule_delayed_work(&ctrl->watchdog, msecs_to_jiffies(250));
	return csd_identify(ctrl);
}

/* Free what csd_ctrl_init() allocated; IRQs are already gone. */
void csd_ctrl_shutdown(struct csd_ctrl *ctrl)
{
	unsigned int v;

	if (ctrl->queues)
		for (v = 0; v <= ctrl->nr_io_queues; v++)
			kfree(ctrl->queues[v].cmds);
	kfree(ctrl->queues);
	ctrl->queues = NULL;
	bitmap_free(ctrl->win.busy);
	ctrl->win.busy = NULL;
}
