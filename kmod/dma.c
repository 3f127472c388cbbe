// SPDX-License-Identifier: GPL-2.0
/*
 * dma.c - how command data reaches csd-fw: PRPs (device-interface.md
 * section 5) over pinned user pages in guest RAM that the daemon maps
 * (--dma-file, caps bit 1: no copy), or over a bounce chunk of the client's
 * data window in BAR2 (the fallback, and kernel-internal commands).
 */
#include <linux/bitmap.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "csd.h"

#define CSD_PRP_PER_PAGE	(CSD_DEVIF_PAGE / sizeof(u64))
#define CSD_MAX_CHUNKS		64

/* The PRP page size is the CPU page size: pinned pages are PRP pages. */
static_assert(PAGE_SIZE == CSD_DEVIF_PAGE);

static bool csd_win_try_get(struct csd_ctrl *ctrl, int *chunk)
{
	struct csd_window *win = &ctrl->win;
	unsigned long flags;
	unsigned int i;
	bool ok = false;

	spin_lock_irqsave(&win->lock, flags);
	i = find_first_zero_bit(win->busy, win->nr_chunks);
	if (i < win->nr_chunks) {
		set_bit(i, win->busy);
		*chunk = i;
		ok = true;
	}
	spin_unlock_irqrestore(&win->lock, flags);
	return ok;
}

static int csd_win_get(struct csd_ctrl *ctrl, bool nowait,
		       unsigned long timeout)
{
	long left = timeout;
	int chunk;

	for (;;) {
		if (READ_ONCE(ctrl->dead))
			return -EIO;
		if (csd_win_try_get(ctrl, &chunk))
			return chunk;
		if (nowait)
			return -EAGAIN;
		left = wait_event_killable_timeout(ctrl->win.wait,
						   READ_ONCE(ctrl->dead) ||
						   !bitmap_full(ctrl->win.busy,
								ctrl->win.nr_chunks),
						   left);
		if (left < 0)
			return -EINTR;
		if (!left)
			return -ETIMEDOUT;
	}
}

static void csd_win_put(struct csd_ctrl *ctrl, int chunk)
{
	struct csd_window *win = &ctrl->win;
	unsigned long flags;

	spin_lock_irqsave(&win->lock, flags);
	clear_bit(chunk, win->busy);
	spin_unlock_irqrestore(&win->lock, flags);
	wake_up(&win->wait);
}

void csd_window_wake(struct csd_ctrl *ctrl)
{
	wake_up_all(&ctrl->win.wait);
}

static void *csd_win_addr(struct csd_window *win, int chunk)
{
	return win->base + (size_t)chunk * win->chunk_size;
}

/**
 * csd_build_prp2() - PRP2 of a command over @nr pages
 * @nr: data pages; page 0 is PRP1's (set by the caller)
 * @arg: for the callbacks
 * @list: list page @k: *@va = its kernel address, *@addr = the address the
 *	device reads it at; returns 0, or a value csd_build_prp2() returns
 * @page: the device address of data page @i
 * @prp2: set to 0 (one page), page 1 (two pages), or the first PRP list
 *
 * The one PRP-list walk of both data paths (device-interface.md section 5):
 * the entries of pages 1..@nr - 1 fill list pages of %CSD_PRP_PER_PAGE
 * entries; when more entries remain than fit, a list's last entry points to
 * the next list instead.  The lists may be memory the daemon reads
 * (WRITE_ONCE).  Always inlined, so the callbacks are direct calls.
 *
 * Return: 0 or what @list returned.
 */
static __always_inline int
csd_build_prp2(unsigned int nr, void *arg,
	       int (*list)(void *arg, unsigned int k, u64 **va, u64 *addr),
	       u64 (*page)(void *arg, unsigned int i), u64 *prp2)
{
	unsigned int left, next = 1, k, n, j;
	u64 *cur, *prev = NULL;
	u64 addr;
	int ret;

	*prp2 = 0;
	if (nr <= 1)
		return 0;
	if (nr == 2) {
		*prp2 = page(arg, 1);
		return 0;
	}
	for (left = nr - 1, k = 0; left; k++) {
		ret = list(arg, k, &cur, &addr);
		if (ret)
			return ret;
		if (prev)
			WRITE_ONCE(prev[CSD_PRP_PER_PAGE - 1], addr);
		else
			*prp2 = addr;
		n = left <= CSD_PRP_PER_PAGE ? left : CSD_PRP_PER_PAGE - 1;
		for (j = 0; j < n; j++)
			WRITE_ONCE(cur[j], page(arg, next++));
		left -= n;
		prev = cur;
	}
	return 0;
}

/* Number of PRP list pages csd_build_prp2() uses for @nr pages. */
static unsigned int csd_prp_nr_lists(unsigned int nr)
{
	if (nr <= 2)
		return 0;
	/* entries per list: 511 + a chain pointer, the last list 512 */
	return nr - 1 <= CSD_PRP_PER_PAGE ? 1 :
	       DIV_ROUND_UP(nr - 2, CSD_PRP_PER_PAGE - 1);
}

/* A bounce chunk: data at @off in the window, its PRP lists at @list_off. */
struct csd_win_prps {
	struct csd_window *win;
	u64 off;
	u64 list_off;
};

static int csd_win_prp_list(void *arg, unsigned int k, u64 **va, u64 *addr)
{
	struct csd_win_prps *w = arg;
	u64 off = w->list_off + (u64)k * CSD_DEVIF_PAGE;

	*va = w->win->base + off;
	*addr = CSD_DEVIF_ADDR_WINDOW | off;
	return 0;
}

static u64 csd_win_prp_page(void *arg, unsigned int i)
{
	struct csd_win_prps *w = arg;

	return CSD_DEVIF_ADDR_WINDOW | (w->off + (u64)i * CSD_DEVIF_PAGE);
}

/*
 * Describe @len bytes at the start of @chunk with PRPs (window addresses);
 * the PRP lists follow the chunk's data (csd_window_init()).
 */
static void csd_build_window_prps(struct csd_window *win, int chunk, u32 len,
				  struct csd_sqe *sqe)
{
	struct csd_win_prps w = {
		.win = win,
		.off = (u64)chunk * win->chunk_size,
		.list_off = (u64)chunk * win->chunk_size + win->data_size,
	};

	sqe->prp1 = CSD_DEVIF_ADDR_WINDOW | w.off;
	/* window list pages are always addressable: cannot fail */
	csd_build_prp2(DIV_ROUND_UP_ULL(len, CSD_DEVIF_PAGE), &w,
		       csd_win_prp_list, csd_win_prp_page, &sqe->prp2);
}

static int csd_map_bounce(struct csd_req *req, u32 len, bool nowait,
			  unsigned long timeout)
{
	struct csd_ctrl *ctrl = req->ctrl;
	int chunk = csd_win_get(ctrl, nowait, timeout);

	if (chunk < 0)
		return chunk;
	req->data.chunk = chunk;
	csd_build_window_prps(&ctrl->win, chunk, len, &req->sqe);
	return 0;
}

/* Is [@pa, @pa + PAGE_SIZE) inside the guest RAM the daemon maps? */
static bool csd_dma_ok(struct csd_ctrl *ctrl, phys_addr_t pa)
{
	return pa < ctrl->dma_size && ctrl->dma_size - pa >= PAGE_SIZE &&
	       !(pa & CSD_DEVIF_ADDR_WINDOW);
}

static void csd_unpin(struct csd_data *d, bool dirty)
{
	unsigned int i;

	if (d->pages) {
		unpin_user_pages_dirty_lock(d->pages, d->nr_pages, dirty);
		kvfree(d->pages);
		d->pages = NULL;
	}
	for (i = 0; i < d->nr_lists; i++)
		free_page(d->lists[i]);
	kfree(d->lists);
	d->lists = NULL;
	d->nr_lists = 0;
}

/* Pinned pages: list pages allocated from kernel memory as needed. */
struct csd_ram_prps {
	struct csd_ctrl *ctrl;
	struct csd_data *d;
};

/* Returns 1 when the list page is not addressable (caller bounces). */
static int csd_ram_prp_list(void *arg, unsigned int k, u64 **va, u64 *addr)
{
	struct csd_ram_prps *r = arg;
	unsigned long page = __get_free_page(GFP_KERNEL);

	if (!page)
		return -ENOMEM;
	r->d->lists[r->d->nr_lists++] = page;
	*va = (u64 *)page;
	*addr = virt_to_phys((void *)page);
	return csd_dma_ok(r->ctrl, *addr) ? 0 : 1;
}

static u64 csd_ram_prp_page(void *arg, unsigned int i)
{
	struct csd_ram_prps *r = arg;

	return page_to_phys(r->d->pages[i]);
}

/*
 * PRP2 for the pinned pages (page 0 is PRP1), list pages recorded in
 * @d->lists (freed by csd_unpin()).  Returns 1 when a list page is not
 * addressable (caller bounces).
 */
static int csd_build_ram_prps(struct csd_ctrl *ctrl, struct csd_data *d,
			      struct csd_sqe *sqe)
{
	struct csd_ram_prps r = { .ctrl = ctrl, .d = d };
	unsigned int n = csd_prp_nr_lists(d->nr_pages);

	if (n) {
		d->lists = kcalloc(n, sizeof(*d->lists), GFP_KERNEL);
		if (!d->lists)
			return -ENOMEM;
	}
	return csd_build_prp2(d->nr_pages, &r, csd_ram_prp_list,
			      csd_ram_prp_page, &sqe->prp2);
}

/*
 * Pin the user buffer and describe it with guest-physical PRPs.  Returns 0,
 * 1 when the buffer cannot be described (caller bounces), or a negative
 * errno.
 */
static int csd_map_pinned(struct csd_req *req, void __user *ubuf, u32 len,
			  bool to_dev)
{
	struct csd_ctrl *ctrl = req->ctrl;
	struct csd_data *d = &req->data;
	unsigned long addr = (unsigned long)ubuf;
	unsigned int off = offset_in_page(addr), i;
	unsigned int nr = DIV_ROUND_UP_ULL((u64)off + len, PAGE_SIZE);
	int ret;

	d->pages = kvmalloc_array(nr, sizeof(*d->pages), GFP_KERNEL);
	if (!d->pages)
		return -ENOMEM;
	/* the device writes the pages of a device-to-host transfer */
	ret = pin_user_pages_fast(addr & PAGE_MASK, nr, to_dev ? 0 : FOLL_WRITE,
				  d->pages);
	if (ret != nr) {
		if (ret > 0)
			unpin_user_pages(d->pages, ret);
		kvfree(d->pages);
		d->pages = NULL;
		return ret < 0 ? ret : -EFAULT;
	}
	d->nr_pages = nr;
	for (i = 0; i < nr; i++)
		if (!csd_dma_ok(ctrl, page_to_phys(d->pages[i]))) {
			ret = 1;
			goto out_unpin;
		}
	req->sqe.prp1 = page_to_phys(d->pages[0]) + off;
	ret = csd_build_ram_prps(ctrl, d, &req->sqe);
	if (ret)
		goto out_unpin;
	return 0;

out_unpin:
	csd_unpin(d, false);
	return ret;
}

/**
 * csd_data_map_user() - describe a user buffer to the device
 * @req: the request; PRP1/PRP2 of req->sqe are set
 * @ubuf: the user buffer (access_ok() checked by the caller)
 * @len: bytes, <= max_xfer
 * @to_dev: the device reads the buffer (else writes it)
 * @nowait: do not wait for a bounce chunk
 * @timeout: jiffies to wait for a bounce chunk
 *
 * Pinned pages when the daemon maps guest RAM and the buffer is dword
 * aligned (PRP1 offset rule), else a bounce chunk (write data copied in
 * now, read data copied out by csd_data_finish()).  Whatever was taken is
 * given back by csd_data_release(), on every path.
 *
 * Return: 0 or a negative errno (-EFAULT: not mappable as asked).
 */
int csd_data_map_user(struct csd_req *req, void __user *ubuf, u32 len,
		      bool to_dev, bool nowait, unsigned long timeout)
{
	struct csd_ctrl *ctrl = req->ctrl;
	struct csd_data *d = &req->data;
	int ret;

	d->len = len;
	d->to_dev = to_dev;
	if (!len)
		return 0;
	if (READ_ONCE(csd_guest_dma) && ctrl->caps & CSD_DEVIF_CAP_DMA_RAM &&
	    IS_ALIGNED((unsigned long)ubuf, 4)) {
		ret = csd_map_pinned(req, ubuf, len, to_dev);
		if (ret <= 0) {
			if (!ret)
				atomic64_inc(&ctrl->pinned_cmds);
			return ret;
		}
	}
	ret = csd_map_bounce(req, len, nowait, timeout);
	if (ret)
		return ret;
	atomic64_inc(&ctrl->bounce_cmds);
	if (to_dev) {
		if (copy_from_user(csd_win_addr(&ctrl->win, d->chunk), ubuf, len))
			return -EFAULT;
	} else {
		d->ubuf = ubuf;
	}
	return 0;
}

/**
 * csd_data_map_kernel() - describe a kernel buffer to the device
 * @req: the request; PRP1/PRP2 of req->sqe are set
 * @kbuf: the buffer
 * @len: bytes, <= the window's data bytes per chunk
 * @to_dev: the device reads the buffer (else writes it)
 * @nowait: do not wait for a bounce chunk
 * @timeout: jiffies to wait for a bounce chunk
 *
 * Always a bounce chunk: write data is copied in now, read data copied out
 * by csd_data_finish().  The chunk is given back by csd_data_release().
 *
 * Return: 0 or a negative errno.
 */
int csd_data_map_kernel(struct csd_req *req, void *kbuf, u32 len,
			bool to_dev, bool nowait, unsigned long timeout)
{
	struct csd_ctrl *ctrl = req->ctrl;
	struct csd_data *d = &req->data;
	int ret;

	d->len = len;
	d->to_dev = to_dev;
	if (!len)
		return 0;
	if (len > ctrl->win.data_size)
		return -EINVAL;
	ret = csd_map_bounce(req, len, nowait, timeout);
	if (ret)
		return ret;
	if (to_dev)
		memcpy(csd_win_addr(&ctrl->win, d->chunk), kbuf, len);
	else
		d->kbuf = kbuf;
	return 0;
}

/**
 * csd_data_finish() - deliver read data that went through the window
 * @req: a request that completed successfully
 *
 * Process context of the submitter (copy_to_user).
 *
 * Return: 0 or -EFAULT.
 */
int csd_data_finish(struct csd_req *req)
{
	struct csd_data *d = &req->data;
	void *src;

	if (d->chunk == CSD_NO_CHUNK || d->to_dev)
		return 0;
	src = csd_win_addr(&req->ctrl->win, d->chunk);
	if (d->kbuf)
		memcpy(d->kbuf, src, d->len);
	else if (d->ubuf && copy_to_user(d->ubuf, src, d->len))
		return -EFAULT;
	return 0;
}

/**
 * csd_data_release() - give back a request's pinned pages and bounce chunk
 * @req: a request the device no longer owns (never queued, completed, or
 *	 the daemon can no longer touch memory)
 *
 * Pages of a device-to-host transfer are marked dirty whether or not the
 * command completed: the daemon may have written part of them before an
 * error, a timeout or its death (as bio_release_pages() does for reads).
 * Process context.
 */
void csd_data_release(struct csd_req *req)
{
	struct csd_data *d = &req->data;

	csd_unpin(d, !d->to_dev);
	if (d->chunk != CSD_NO_CHUNK) {
		csd_win_put(req->ctrl, d->chunk);
		d->chunk = CSD_NO_CHUNK;
	}
}

/**
 * csd_window_init() - cut the data window into bounce chunks
 * @ctrl: the controller; layout validated (max_xfer <= win_size)
 *
 * Each chunk holds round_up(max_xfer, 4K) data bytes plus the PRP list
 * pages describing them; at most %CSD_MAX_CHUNKS chunks.
 *
 * Return: 0, -EINVAL if not even one chunk fits, or -ENOMEM.
 */
int csd_window_init(struct csd_ctrl *ctrl)
{
	const struct csd_layout *l = &ctrl->layout;
	struct csd_window *win = &ctrl->win;
	size_t pages, lists;

	win->base = ctrl->client_area + l->win_off;
	win->data_size = round_up((size_t)ctrl->max_xfer, CSD_DEVIF_PAGE);
	pages = win->data_size / CSD_DEVIF_PAGE;
	lists = pages > 2 ? DIV_ROUND_UP(pages, CSD_PRP_PER_PAGE - 1) : 0;
	win->chunk_size = win->data_size + lists * CSD_DEVIF_PAGE;
	win->nr_chunks = min_t(u64, l->win_size / win->chunk_size,
			       CSD_MAX_CHUNKS);
	if (!win->nr_chunks) {
		dev_err(&ctrl->pdev->dev,
			"data window (%llu bytes) too small for max_xfer %u\n",
			l->win_size, ctrl->max_xfer);
		return -EINVAL;
	}
	win->busy = bitmap_zalloc(win->nr_chunks, GFP_KERNEL);
	if (!win->busy)
		return -ENOMEM;
	spin_lock_init(&win->lock);
	init_waitqueue_head(&win->wait);
	return 0;
}

void csd_window_free(struct csd_ctrl *ctrl)
{
	bitmap_free(ctrl->win.busy);
	ctrl->win.busy = NULL;
}
