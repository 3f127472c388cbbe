/* SPDX-License-Identifier: MIT */
/*
 * backend_flexgen.c - "flexgen" attention backend: a FlexGen-style baseline
 * that keeps the KV cache in a file and reads it back every decode step,
 * layer by layer, with io_uring O_DIRECT, then computes attention on the host
 * with the same kernels as the drive (firmware-sim/attn.h).
 *
 * File layout (one unlinked file in opts' directory, default $TMPDIR):
 *   region(layer, seq) at ((layer * max_seqs) + seq) * region_bytes,
 *   region = ceil(max_tokens / FG_TPP) chunks; a chunk holds FG_TPP tokens:
 *   for each kv head a K page [FG_TPP][head_dim] fp16, then the V pages,
 *   padded to 4 KiB.  A layer's regions are contiguous, every read and write
 *   is 4 KiB aligned.
 *
 * Appends: the last two chunks of every (seq, layer) are kept in RAM; a
 * chunk is written (O_DIRECT, whole chunk) once it is full, so every KV byte
 * is written exactly once.
 *
 * Decode: a worker thread owns the io_uring.  For each submitted call it
 * appends the new tokens and reads each sequence's full chunks into staging
 * blocks (reads of up to read_size bytes, queue_depth in flight); a sequence
 * whose reads are done is handed to the attention engine while the reads of
 * the next ones continue.  After planning a call for layer L it prefetches
 * layer L+1 (wrapping to 0) of the same sequences into free staging, since
 * the decoder submits layers in order: the next layer's KV streams in while
 * this layer computes.  A prefetched read is used only if it still covers
 * the sequence (same reset generation, at most one chunk behind); otherwise
 * it is dropped and read again.
 *
 * opts: "DIR" or "key=val,..." with dir=DIR, buf=MiB (staging budget,
 * default 256; grows if one sequence needs more), rs=KiB (read size,
 * default 4096), qd=N (default 32), io=uring|pread, direct=1|0,
 * ssd_gbps=X (GB/s, > 0; default off).
 *
 * SSD pacing (ssd_gbps=X): the file (often a RAM file) stands in for a
 * modeled SSD that serves reads one after another at X GB/s.  Each KV read
 * gets a due time on a serial SSD clock when it is issued,
 *   due = max(now, ssd_clock) + len / (X * 1e9) s,  ssd_clock = due,
 * and is not completed (its data not used) before then: the worker sleeps
 * until the due time, without the lock, before reaping it (and after a
 * pread in the fallback).  Appends (writes) and rt_flexgen_raw_read() are
 * not paced.  Results are the same as unpaced; only the timing changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <csd/csd_spec.h>

#include "attn.h"
#include "backend.h"
#include "rt_ops.h"

#define FG_TPP		16		/* tokens per page (4 KiB at hd 128) */
#define FG_ALIGN	4096u
#define FG_MAX_OPS	256		/* calls in flight */

enum { UD_READ = 1, UD_WRITE = 2 };

struct fg_stream {			/* one (seq, layer) */
	uint32_t len;
	uint32_t gen;			/* bumped by reset */
	char *tail[2];			/* RAM copies of chunks c, c&1 */
	uint32_t wchunk[2];		/* chunk being written from tail[i] */
	uint8_t wpending[2];
};

struct fg_op;

enum fg_tstate { T_FREE, T_LIVE, T_COMPUTING };

struct fg_task {
	struct fg_task *prev, *next;	/* live list, creation order */
	int state;
	struct fg_op *op;		/* NULL: prefetched, unclaimed */
	uint32_t idx;			/* index of seq in op */
	uint32_t layer, seq, gen;
	uint32_t nchunks;		/* chunks read from the file */
	uint32_t nblocks, issued, done;	/* read blocks */
	uint32_t *blocks;		/* [max_blocks_per_task] pool index */
	char **bptr;			/* [max_blocks_per_task] their buffers */
	uint64_t *due;			/* [max_blocks_per_task] ssd pacing */
	int err;
	/* attention job (one sequence) */
	const char *tail[2];
	uint32_t jseq, jlo, jhi;
	struct attn_job job;
	struct fg_be *be;
};

struct fg_op {
	int used, queued, active, done;
	int err;
	uint32_t layer, nseq, planned, remaining;
	const uint32_t *seqs;
	const float *q;
	const uint16_t *k_new, *v_new;
	float *out;
	uint64_t t_reads_done;
	uint64_t order;
};

struct fg_be {
	const struct rt_backend_ops *ops;	/* must be first */
	struct rt_shape shape;
	char dir[256];
	int fd, direct, uring;
	uint32_t qd, budget_blocks;
	double ssd_gbps;			/* > 0: pace reads (ssd_gbps=) */
	uint64_t ssd_clock;			/* ns, serial SSD clock */
	size_t row_bytes, page_bytes, chunk_bytes, block_bytes;
	uint32_t chunks_per_block;
	uint64_t region_bytes;
	size_t tok_kv_bytes;
	struct fg_stream *streams;		/* [layers][max_seqs] */
	struct attn_engine *eng;
	struct io_uring ring;
	/* staging block pool */
	char **blk;
	uint32_t nblk, capblk, *freeblk, nfree;
	/* tasks */
	struct fg_task *tasks;
	uint32_t ntasks;
	struct fg_task live;			/* list head */
	uint32_t npred;				/* live unclaimed tasks */
	/* ops */
	struct fg_op opt[FG_MAX_OPS];
	uint64_t order_next, order_active;	/* FIFO of queued ops */
	uint32_t *busy;				/* [max_seqs] */
	/* worker */
	pthread_t worker;
	int worker_started, stop;
	pthread_mutex_t lock;
	pthread_cond_t wcond;			/* wakes the worker */
	uint64_t kick;				/* bumped with every wcond signal */
	pthread_cond_t cond;			/* op done / write done */
	uint32_t inflight;			/* reads + writes in flight */
	uint32_t ncomputing;			/* attention jobs running */
	int werr;
	uint64_t file_bytes;
	uint64_t tail_bytes;
	uint64_t peak_host;
	struct rt_backend_stats st;
};

/* Sleep (lock not held) until CLOCK_MONOTONIC reaches @due ns. */
static void fg_sleep_until(uint64_t due)
{
	struct timespec ts = {
		.tv_sec = (time_t)(due / 1000000000ull),
		.tv_nsec = (long)(due % 1000000000ull),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

static struct fg_be *to_be(struct rt_backend *b)
{
	return (struct fg_be *)b;
}

static struct fg_stream *fg_stream(struct fg_be *be, uint32_t seq,
				   uint32_t layer)
{
	return &be->streams[(size_t)layer * be->shape.max_seqs + seq];
}

static uint64_t fg_off(struct fg_be *be, uint32_t seq, uint32_t layer,
		       uint32_t chunk)
{
	return ((uint64_t)layer * be->shape.max_seqs + seq) * be->region_bytes +
	       (uint64_t)chunk * be->chunk_bytes;
}

static void fg_note_host(struct fg_be *be)
{
	uint64_t h = (uint64_t)be->nblk * be->block_bytes + be->tail_bytes;

	if (h > be->peak_host)
		be->peak_host = h;
}

/* ---- I/O primitives ------------------------------------------------- */

#define FG_HUGE		(2u << 20)

/*
 * A buffer for O_DIRECT reads (staging blocks, the raw read's buffers),
 * faulted in.  From @len >= 2 MiB on it is 2 MiB aligned and asks for
 * transparent huge pages: an O_DIRECT request becomes one block-layer
 * segment per physically contiguous run of its buffer, and the virtual
 * disk takes at most max_segments (e.g. 254) per request, so a 4 MiB read
 * into scattered 4 KiB pages is split into several device requests and the
 * stream runs ~35% slower than into huge pages (measured here: 1.4 vs
 * 2.2 GB/s at 32 x 4 MiB in flight).  Both flexgen's blocks and the raw
 * reference use this, so neither has an edge.  Free with free().
 */
static void *fg_io_alloc(size_t len)
{
	size_t al = len >= FG_HUGE ? FG_HUGE : FG_ALIGN;
	size_t sz = (len + al - 1) / al * al;
	void *p = aligned_alloc(al, sz);

	if (!p)
		return NULL;
#ifdef MADV_HUGEPAGE
	if (al == FG_HUGE)
		(void)madvise(p, sz, MADV_HUGEPAGE);	/* a hint only */
#endif
	memset(p, 0, sz);
	return p;
}

static int fg_pio(int fd, int wr, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = wr ? pwrite(fd, (char *)buf + done, len - done,
					(off_t)(off + done))
			       : pread(fd, (char *)buf + done, len - done,
				       (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

static struct io_uring_sqe *fg_sqe(struct fg_be *be)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&be->ring);

	if (!sqe) {
		io_uring_submit(&be->ring);
		sqe = io_uring_get_sqe(&be->ring);
	}
	return sqe;
}

/* ---- streams and appends -------------------------------------------- */

static int fg_tail_buf(struct fg_be *be, struct fg_stream *fs, int i)
{
	if (fs->tail[i])
		return 0;
	fs->tail[i] = aligned_alloc(FG_ALIGN, be->chunk_bytes);
	if (!fs->tail[i])
		return -ENOMEM;
	memset(fs->tail[i], 0, be->chunk_bytes);
	be->tail_bytes += be->chunk_bytes;
	fg_note_host(be);
	return 0;
}

/* Caller holds the lock.  Wait until tail[i] of @fs has no write. */
static void fg_wait_tail(struct fg_be *be, struct fg_stream *fs, int i,
			 int in_worker);

/*
 * Store one token at the end of @fs (lock held).  A chunk that becomes full
 * is written: asynchronously by the worker (uring), else synchronously.
 */
static int fg_store(struct fg_be *be, struct fg_stream *fs, uint32_t seq,
		    uint32_t layer, const uint16_t *k, const uint16_t *v,
		    int in_worker)
{
	uint32_t c = fs->len / FG_TPP, kvh = be->shape.kv_heads, h;
	size_t row = (size_t)(fs->len % FG_TPP) * be->row_bytes;
	int i = c & 1, ret;
	char *buf;

	if (fs->len % FG_TPP == 0)
		fg_wait_tail(be, fs, i, in_worker);
	ret = fg_tail_buf(be, fs, i);
	if (ret < 0)
		return ret;
	buf = fs->tail[i];
	for (h = 0; h < kvh; h++) {
		memcpy(buf + h * be->page_bytes + row,
		       k + (size_t)h * be->shape.head_dim, be->row_bytes);
		memcpy(buf + (kvh + h) * be->page_bytes + row,
		       v + (size_t)h * be->shape.head_dim, be->row_bytes);
	}
	fs->len++;
	if (fs->len % FG_TPP)
		return 0;
	/* chunk c is full: write it */
	be->file_bytes += be->chunk_bytes;
	be->st.link_bytes += be->chunk_bytes;
	if (in_worker && be->uring) {
		struct io_uring_sqe *sqe = fg_sqe(be);

		if (sqe) {
			io_uring_prep_write(sqe, be->fd, buf,
					    (unsigned int)be->chunk_bytes,
					    fg_off(be, seq, layer, c));
			io_uring_sqe_set_data64(sqe, ((uint64_t)UD_WRITE << 56) |
						((uint64_t)layer << 32) |
						((uint64_t)seq << 1) | i);
			fs->wpending[i] = 1;
			fs->wchunk[i] = c;
			be->inflight++;
			return 0;
		}
	}
	ret = fg_pio(be->fd, 1, buf, be->chunk_bytes,
		     fg_off(be, seq, layer, c));
	if (ret < 0)
		be->werr = ret;
	return ret;
}

/* ---- staging blocks ------------------------------------------------- */

static int fg_blk_get(struct fg_be *be, int may_grow, uint32_t *idx)
{
	if (be->nfree) {
		*idx = be->freeblk[--be->nfree];
		return 0;
	}
	if (!may_grow && be->nblk >= be->budget_blocks)
		return -ENOSPC;
	if (be->nblk == be->capblk) {
		uint32_t ncap = be->capblk ? be->capblk * 2 : 64;
		char **nb = realloc(be->blk, ncap * sizeof(*nb));
		uint32_t *nf;

		if (!nb)
			return -ENOMEM;
		be->blk = nb;
		nf = realloc(be->freeblk, ncap * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		be->freeblk = nf;
		be->capblk = ncap;
	}
	be->blk[be->nblk] = fg_io_alloc(be->block_bytes);
	if (!be->blk[be->nblk])
		return -ENOMEM;
	*idx = be->nblk++;
	fg_note_host(be);
	return 0;
}

static void fg_blk_put(struct fg_be *be, uint32_t idx)
{
	be->freeblk[be->nfree++] = idx;
}

/* ---- tasks ---------------------------------------------------------- */

static void fg_task_unlink(struct fg_be *be, struct fg_task *t)
{
	uint32_t i;

	for (i = 0; i < t->issued; i++)
		fg_blk_put(be, t->blocks[i]);
	t->prev->next = t->next;
	t->next->prev = t->prev;
	if (!t->op)
		be->npred--;
	t->state = T_FREE;
	t->op = NULL;
}

static struct fg_task *fg_task_new(struct fg_be *be, struct fg_op *op,
				   uint32_t layer, uint32_t seq)
{
	struct fg_stream *fs = fg_stream(be, seq, layer);
	struct fg_task *t = NULL;
	uint32_t i;

	for (i = 0; i < be->ntasks; i++)
		if (be->tasks[i].state == T_FREE) {
			t = &be->tasks[i];
			break;
		}
	if (!t)
		return NULL;
	t->state = T_LIVE;
	t->op = op;
	t->layer = layer;
	t->seq = seq;
	t->gen = fs->gen;
	/*
	 * A claimed task (after the fused append) finds the last two chunks
	 * in RAM; a prefetch must still cover one more append.
	 */
	t->nchunks = fs->len / FG_TPP;
	if (op && t->nchunks)
		t->nchunks--;
	t->nblocks = (t->nchunks + be->chunks_per_block - 1) /
		     be->chunks_per_block;
	t->issued = t->done = 0;
	t->err = 0;
	t->prev = be->live.prev;
	t->next = &be->live;
	be->live.prev->next = t;
	be->live.prev = t;
	if (!op)
		be->npred++;
	return t;
}

/* Is prefetched @t usable for (layer, seq) now (after the fused append)? */
static int fg_task_fits(struct fg_be *be, struct fg_task *t)
{
	struct fg_stream *fs = fg_stream(be, t->seq, t->layer);
	uint32_t need = fs->len / FG_TPP;

	need = need ? need - 1 : 0;	/* chunks no longer in RAM */
	return t->gen == fs->gen && t->nchunks >= need &&
	       t->nchunks <= fs->len / FG_TPP;
}

static const void *fg_page(void *cookie, uint32_t seq, uint32_t kv_head,
			   int which, uint32_t page_idx)
{
	struct fg_task *t = cookie;
	struct fg_be *be = t->be;
	size_t in = ((size_t)which * be->shape.kv_heads + kv_head) *
		    be->page_bytes;

	if (page_idx < t->nchunks) {
		uint32_t b = page_idx / be->chunks_per_block;
		uint32_t c = page_idx % be->chunks_per_block;

		return t->bptr[b] + (size_t)c * be->chunk_bytes + in;
	}
	return t->tail[page_idx & 1] + in;
}

static void fg_op_task_done(struct fg_be *be, struct fg_op *op, int err)
{
	if (err && !op->err)
		op->err = err;
	if (--op->remaining == 0) {
		op->done = 1;
		pthread_cond_broadcast(&be->cond);
	}
}

/*
 * Lock held.  Tell the worker that its inputs changed.  The worker sleeps
 * only while be->kick still has the value it sampled (under the lock) before
 * its last scan, so a kick given while it scanned, or while it had dropped
 * the lock for I/O, is never lost.
 */
static void fg_kick(struct fg_be *be)
{
	be->kick++;
	pthread_cond_signal(&be->wcond);
}

static void fg_job_done(struct attn_job *job)
{
	struct fg_task *t = job->cookie;
	struct fg_be *be = t->be;

	pthread_mutex_lock(&be->lock);
	be->ncomputing--;
	fg_op_task_done(be, t->op, 0);
	fg_task_unlink(be, t);
	fg_kick(be);
	pthread_mutex_unlock(&be->lock);
}

/* Lock held.  Start attention for a claimed task whose reads are done. */
static void fg_task_compute(struct fg_be *be, struct fg_task *t)
{
	struct fg_op *op = t->op;
	struct fg_stream *fs = fg_stream(be, t->seq, t->layer);
	size_t qh = (size_t)be->shape.q_heads * be->shape.head_dim;
	int ret;

	if (t->err || be->werr || op->err) {
		fg_op_task_done(be, op, t->err ? t->err :
				be->werr ? be->werr : op->err);
		fg_task_unlink(be, t);
		return;
	}
	t->tail[0] = fs->tail[0];
	t->tail[1] = fs->tail[1];
	t->jseq = t->seq;
	t->jlo = 0;
	t->jhi = fs->len;
	memset(&t->job, 0, sizeof(t->job));
	t->job.dtype = CSD_DTYPE_F16;
	t->job.head_dim = be->shape.head_dim;
	t->job.q_heads = be->shape.q_heads;
	t->job.kv_heads = be->shape.kv_heads;
	t->job.tpp = FG_TPP;
	t->job.scale = 1.0f / sqrtf((float)be->shape.head_dim);
	t->job.nseq = 1;
	t->job.seqs = &t->jseq;
	t->job.lo = &t->jlo;
	t->job.hi = &t->jhi;
	t->job.q = op->q + t->idx * qh;
	t->job.out = op->out + t->idx * qh;
	t->job.page = fg_page;
	t->job.cookie = t;
	t->job.done = fg_job_done;
	be->st.kv_bytes_read += (uint64_t)fs->len * be->tok_kv_bytes;
	t->state = T_COMPUTING;
	be->ncomputing++;
	ret = attn_engine_submit(be->eng, &t->job);
	if (ret < 0) {
		be->ncomputing--;
		fg_op_task_done(be, op, ret);
		fg_task_unlink(be, t);
	}
}

/* ---- the worker ----------------------------------------------------- */

static void fg_complete(struct fg_be *be, uint64_t ud, int res)
{
	int type = (int)(ud >> 56);

	be->inflight--;
	if (type == UD_WRITE) {
		uint32_t layer = (uint32_t)(ud >> 32) & 0xffffff;
		uint32_t seq = (uint32_t)(ud & 0xffffffffu) >> 1;
		struct fg_stream *fs = fg_stream(be, seq, layer);

		fs->wpending[ud & 1] = 0;
		if (res != (int)be->chunk_bytes)
			be->werr = res < 0 ? res : -EIO;
		pthread_cond_broadcast(&be->cond);
	} else {
		struct fg_task *t = &be->tasks[(ud >> 24) & 0xffffffu];
		uint32_t b = (uint32_t)(ud & 0xffffffu);
		uint32_t nch = t->nchunks - b * be->chunks_per_block;
		size_t want;

		if (nch > be->chunks_per_block)
			nch = be->chunks_per_block;
		want = (size_t)nch * be->chunk_bytes;
		if (res != (int)want && !t->err)
			t->err = res < 0 ? res : -EIO;
		t->done++;
	}
}

/* Due time (ns) of the paced read @ud, 0 if not a paced read. */
static uint64_t fg_read_due(struct fg_be *be, uint64_t ud)
{
	struct fg_task *t;

	if (be->ssd_gbps <= 0 || (int)(ud >> 56) != UD_READ)
		return 0;
	t = &be->tasks[(ud >> 24) & 0xffffffu];
	return t->due[ud & 0xffffffu];
}

/* Lock held; the due time of a @len-byte read issued now (SSD pacing). */
static uint64_t fg_ssd_due(struct fg_be *be, size_t len)
{
	uint64_t now = rt_now_ns(), start;

	start = be->ssd_clock > now ? be->ssd_clock : now;
	be->ssd_clock = start + (uint64_t)((double)len / be->ssd_gbps + 0.5);
	return be->ssd_clock;
}

/*
 * Lock held; reap whatever completed (block if @wait and I/O in flight).
 * A paced read is completed no earlier than its due time.
 */
static void fg_reap(struct fg_be *be, int wait)
{
	struct io_uring_cqe *cqe;
	int reaped = 0;

	if (!be->uring || !be->inflight)
		return;
	if (wait) {
		/*
		 * Submit and wait in one call: if the submit fails (e.g.
		 * -EAGAIN) we return to the caller's loop instead of sleeping
		 * on completions of requests the kernel never saw.
		 */
		pthread_mutex_unlock(&be->lock);
		io_uring_submit_and_wait(&be->ring, 1);
		pthread_mutex_lock(&be->lock);
	} else {
		io_uring_submit(&be->ring);
	}
	while (io_uring_peek_cqe(&be->ring, &cqe) == 0) {
		uint64_t ud = io_uring_cqe_get_data64(cqe), due;

		due = fg_read_due(be, ud);
		if (due && due > rt_now_ns()) {
			/*
			 * SSD pacing: not due yet.  Once something was
			 * reaped, leave it in the ring and let the caller
			 * act on what completed; else sleep until due
			 * (only the worker consumes the ring, and a task
			 * with a read in flight is never unlinked).
			 */
			if (reaped)
				break;
			pthread_mutex_unlock(&be->lock);
			fg_sleep_until(due);
			pthread_mutex_lock(&be->lock);
		}
		fg_complete(be, ud, cqe->res);
		io_uring_cqe_seen(&be->ring, cqe);
		reaped++;
	}
}

static void fg_wait_tail(struct fg_be *be, struct fg_stream *fs, int i,
			 int in_worker)
{
	while (fs->wpending[i]) {
		if (in_worker)
			fg_reap(be, 1);
		else
			pthread_cond_wait(&be->cond, &be->lock);
	}
}

/* Issue reads for @t while blocks and queue slots last; 1 if progressed. */
static int fg_issue(struct fg_be *be, struct fg_task *t, int may_grow)
{
	int progress = 0;

	/* chunks of this task still being written? */
	{
		struct fg_stream *fs = fg_stream(be, t->seq, t->layer);
		int i;

		for (i = 0; i < 2; i++)
			if (fs->wpending[i] && fs->wchunk[i] < t->nchunks &&
			    t->issued < t->nblocks)
				return 0;
	}
	while (t->issued < t->nblocks && be->inflight < be->qd) {
		uint32_t b = t->issued, nch, idx;
		uint64_t off = fg_off(be, t->seq, t->layer,
				      b * be->chunks_per_block);
		size_t len;

		if (fg_blk_get(be, may_grow, &idx) < 0)
			break;
		nch = t->nchunks - b * be->chunks_per_block;
		if (nch > be->chunks_per_block)
			nch = be->chunks_per_block;
		len = (size_t)nch * be->chunk_bytes;
		t->blocks[b] = idx;
		t->bptr[b] = be->blk[idx];
		if (be->ssd_gbps > 0)
			t->due[b] = fg_ssd_due(be, len);
		t->issued++;
		be->st.link_bytes += len;
		progress = 1;
		if (be->uring) {
			struct io_uring_sqe *sqe = fg_sqe(be);

			if (sqe) {
				io_uring_prep_read(sqe, be->fd, be->blk[idx],
						   (unsigned int)len, off);
				io_uring_sqe_set_data64(sqe,
					((uint64_t)UD_READ << 56) |
					((uint64_t)(t - be->tasks) << 24) | b);
				be->inflight++;
				continue;
			}
		}
		/* pread fallback (synchronous, worker only touches @t) */
		{
			char *dst = be->blk[idx];
			uint64_t due = be->ssd_gbps > 0 ? t->due[b] : 0;
			int fd = be->fd, ret;

			pthread_mutex_unlock(&be->lock);
			ret = fg_pio(fd, 0, dst, len, off);
			if (due)
				fg_sleep_until(due);
			pthread_mutex_lock(&be->lock);
			if (ret < 0 && !t->err)
				t->err = ret;
			t->done++;
		}
	}
	return progress;
}

/* Evict the newest unclaimed prefetch with no read in flight. */
static int fg_evict_pred(struct fg_be *be)
{
	struct fg_task *t;

	for (t = be->live.prev; t != &be->live; t = t->prev)
		if (!t->op && t->issued == t->done) {
			fg_task_unlink(be, t);
			return 1;
		}
	return 0;
}

/* Do @a and @b share a (seq, layer) stream? */
static int fg_ops_overlap(const struct fg_op *a, const struct fg_op *b)
{
	uint32_t i, j;

	if (a->layer != b->layer)
		return 0;
	for (i = 0; i < a->nseq; i++)
		for (j = 0; j < b->nseq; j++)
			if (a->seqs[i] == b->seqs[j])
				return 1;
	return 0;
}

/*
 * Oldest queued op, unless an earlier call on one of its streams is still
 * running (its fused append would change what that call attends to).
 */
static struct fg_op *fg_next_queued(struct fg_be *be)
{
	struct fg_op *best = NULL;
	int i;

	for (i = 0; i < FG_MAX_OPS; i++) {
		struct fg_op *op = &be->opt[i];

		if (op->used && op->queued && !op->active &&
		    (!best || op->order < best->order))
			best = op;
	}
	if (!best)
		return NULL;
	for (i = 0; i < FG_MAX_OPS; i++) {
		struct fg_op *op = &be->opt[i];

		if (op->used && op->active && !op->done &&
		    fg_ops_overlap(op, best))
			return NULL;
	}
	return best;
}

/* Activate @op: fused appends, claim prefetches, create tasks. */
static int fg_activate(struct fg_be *be, struct fg_op *op)
{
	size_t kv = (size_t)be->shape.kv_heads * be->shape.head_dim;
	uint32_t i;

	op->active = 1;
	op->remaining = op->nseq;
	for (i = 0; i < op->nseq; i++) {
		struct fg_stream *fs = fg_stream(be, op->seqs[i], op->layer);
		int ret = fg_store(be, fs, op->seqs[i], op->layer,
				   op->k_new + i * kv, op->v_new + i * kv, 1);

		if (ret < 0 && !op->err)
			op->err = ret;
	}
	return 0;
}

/* Create (or claim) tasks for the next seqs of @op; 1 if progressed. */
static int fg_plan(struct fg_be *be, struct fg_op *op)
{
	int progress = 0;

	while (op->planned < op->nseq) {
		uint32_t seq = op->seqs[op->planned];
		struct fg_task *t, *found = NULL;

		for (t = be->live.next; t != &be->live; t = t->next)
			if (!t->op && t->layer == op->layer && t->seq == seq) {
				found = t;
				break;
			}
		if (found && !fg_task_fits(be, found)) {
			if (found->issued != found->done)
				break;		/* drop it once its reads land */
			fg_task_unlink(be, found);
			found = NULL;
		}
		if (found) {
			/* move to the claimed part: keep list order */
			found->op = op;
			be->npred--;
			t = found;
		} else {
			t = fg_task_new(be, op, op->layer, seq);
			if (!t)
				break;
		}
		t->idx = op->planned++;
		if (op->err)
			t->nblocks = t->issued;	/* fails at compute */
		progress = 1;
	}
	return progress;
}

/* Prefetch layer L+1 of @op's seqs into spare staging. */
static void fg_predict(struct fg_be *be, struct fg_op *op)
{
	uint32_t layer = (op->layer + 1) % be->shape.layers, i;
	struct fg_task *t;

	for (i = 0; i < op->nseq; i++) {
		uint32_t seq = op->seqs[i];
		int have = 0;

		if (be->npred >= be->shape.max_seqs * 2)
			return;
		for (t = be->live.next; t != &be->live; t = t->next)
			if (t->layer == layer && t->seq == seq && !t->op) {
				have = 1;
				break;
			}
		if (have || fg_stream(be, seq, layer)->len < FG_TPP)
			continue;
		if (!fg_task_new(be, NULL, layer, seq))
			return;
	}
}

static void *fg_worker(void *arg)
{
	struct fg_be *be = arg;

	pthread_mutex_lock(&be->lock);
	while (!be->stop || be->inflight) {
		/* sampled under the lock before looking at any state */
		uint64_t seen = be->kick;
		struct fg_op *op;
		struct fg_task *t, *tn;
		int progress = 0, starved = 0;

		fg_reap(be, 0);
		/* activate queued ops in order */
		while ((op = fg_next_queued(be))) {
			fg_activate(be, op);
			progress = 1;
		}
		/* plan active ops in order, then prefetch */
		{
			struct fg_op *last = NULL;
			int i, all = 1;
			uint64_t ord;

			for (ord = be->order_active; ord < be->order_next;
			     ord++) {
				for (i = 0; i < FG_MAX_OPS; i++) {
					op = &be->opt[i];
					if (op->used && op->active &&
					    op->order == ord)
						break;
				}
				if (i == FG_MAX_OPS)
					continue;
				if (op->planned < op->nseq) {
					progress |= fg_plan(be, op);
					if (op->planned < op->nseq)
						all = 0;
				}
				last = op;
			}
			if (all && last && !last->err)
				fg_predict(be, last);
		}
		/* claimed tasks first, then prefetches */
		for (t = be->live.next; t != &be->live; t = tn) {
			tn = t->next;
			if (!t->op || t->state != T_LIVE)
				continue;
			if (t->issued < t->nblocks) {
				int grow = !be->nfree && !be->inflight &&
					   !be->npred && !be->ncomputing;

				progress |= fg_issue(be, t, grow);
				if (t->issued < t->nblocks)
					starved = 1;
				/*
				 * fg_issue may drop the lock (pread): a
				 * finished job may have unlinked the old
				 * successor.  @t itself stays linked (only
				 * the worker unlinks a live claimed task).
				 */
				tn = t->next;
			}
			if (t->done == t->nblocks) {
				t->op->t_reads_done = rt_now_ns();
				fg_task_compute(be, t);
				progress = 1;
			}
		}
		if (starved && !be->nfree && be->npred)
			progress |= fg_evict_pred(be);
		if (!starved)
			for (t = be->live.next; t != &be->live; t = t->next)
				if (!t->op && t->issued < t->nblocks &&
				    be->inflight < be->qd)
					progress |= fg_issue(be, t, 0);
		/* retire finished ops from the FIFO window */
		while (be->order_active < be->order_next) {
			int i, found = 0;

			for (i = 0; i < FG_MAX_OPS; i++)
				if (be->opt[i].used &&
				    be->opt[i].order == be->order_active &&
				    (!be->opt[i].active ||
				     be->opt[i].planned < be->opt[i].nseq))
					found = 1;
			if (found)
				break;
			be->order_active++;
		}
		if (progress)
			continue;
		if (be->inflight) {
			fg_reap(be, 1);
			continue;
		}
		/*
		 * Nothing to do until someone kicks: submit, a finished
		 * attention job, close.  Predicate loop on kick, which they
		 * change under be->lock before signalling.
		 */
		while (be->kick == seen && !be->stop)
			pthread_cond_wait(&be->wcond, &be->lock);
	}
	pthread_mutex_unlock(&be->lock);
	return NULL;
}

/* ---- ops ------------------------------------------------------------ */

static int fg_parse_opts(struct fg_be *be, const char *opts, uint32_t *buf_mb,
			 uint32_t *rs_kb, int *want_uring)
{
	char tmp[512], *save = NULL, *tok, *eq, *end;
	const char *env = getenv("TMPDIR");

	snprintf(be->dir, sizeof(be->dir), "%s", env && *env ? env : "/tmp");
	be->qd = 32;
	be->direct = 1;
	*buf_mb = 256;
	*rs_kb = 4096;
	*want_uring = 1;
	if (!opts || !*opts)
		return 0;
	if (strlen(opts) >= sizeof(tmp))
		return -EINVAL;
	strcpy(tmp, opts);
	for (tok = strtok_r(tmp, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		unsigned long val = 0;

		eq = strchr(tok, '=');
		if (!eq) {
			if (snprintf(be->dir, sizeof(be->dir), "%s", tok) >=
			    (int)sizeof(be->dir))
				return -EINVAL;
			continue;
		}
		*eq++ = '\0';
		if (strcmp(tok, "dir") == 0) {
			if (snprintf(be->dir, sizeof(be->dir), "%s", eq) >=
			    (int)sizeof(be->dir))
				return -EINVAL;
			continue;
		}
		if (strcmp(tok, "io") == 0) {
			if (strcmp(eq, "uring") == 0)
				*want_uring = 1;
			else if (strcmp(eq, "pread") == 0)
				*want_uring = 0;
			else
				goto bad;
			continue;
		}
		if (strcmp(tok, "ssd_gbps") == 0) {
			double x;

			errno = 0;
			x = strtod(eq, &end);
			if (errno || end == eq || *end || !(x > 0) || x > 1e6)
				goto bad;
			be->ssd_gbps = x;
			continue;
		}
		errno = 0;
		val = strtoul(eq, &end, 0);
		if (errno || end == eq || *end)
			goto bad;
		if (strcmp(tok, "buf") == 0 && val >= 1 && val <= 1u << 20)
			*buf_mb = (uint32_t)val;
		else if (strcmp(tok, "rs") == 0 && val >= 4 && val <= 65536 &&
			 val % 4 == 0)
			*rs_kb = (uint32_t)val;
		else if (strcmp(tok, "qd") == 0 && val >= 1 && val <= 256)
			be->qd = (uint32_t)val;
		else if (strcmp(tok, "direct") == 0 && val <= 1)
			be->direct = (int)val;
		else
			goto bad;
	}
	return 0;
bad:
	fprintf(stderr,
		"flexgen: bad option '%s%s%s' (options: DIR or dir=DIR, "
		"buf=MiB 1..1048576, rs=KiB 4..65536 multiple of 4, "
		"qd=1..256, io=uring|pread, direct=0|1, "
		"ssd_gbps=GB/s > 0 (pace KV reads to a modeled SSD))\n",
		tok, eq ? "=" : "", eq ? eq : "");
	return -EINVAL;
}

static int fg_open_file(struct fg_be *be, uint64_t size)
{
	char path[300];
	struct stat sb;
	int fd, flags = O_RDWR | O_CLOEXEC;

	if (stat(be->dir, &sb) < 0)
		return -errno;
	if (!S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	if (be->direct) {
		fd = open(be->dir, flags | O_TMPFILE | O_DIRECT, 0600);
		if (fd < 0) {
			snprintf(path, sizeof(path), "%s/csd-flexgen-XXXXXX",
				 be->dir);
			fd = mkostemp(path, O_CLOEXEC);
			if (fd >= 0) {
				unlink(path);
				if (fcntl(fd, F_SETFL, O_DIRECT) < 0) {
					fprintf(stderr,
						"flexgen: O_DIRECT unsupported in %s, buffered I/O\n",
						be->dir);
					be->direct = 0;
				}
			}
		}
	} else {
		fd = open(be->dir, flags | O_TMPFILE, 0600);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int ret = -errno;

		close(fd);
		return ret == -EINVAL ? -EFBIG : ret;
	}
	be->fd = fd;
	return 0;
}

static void fg_close(struct rt_backend *b)
{
	struct fg_be *be = to_be(b);
	size_t i;

	if (!be)
		return;
	if (be->worker_started) {
		pthread_mutex_lock(&be->lock);
		be->stop = 1;
		fg_kick(be);
		pthread_mutex_unlock(&be->lock);
		pthread_join(be->worker, NULL);
	}
	if (be->eng)
		attn_engine_destroy(be->eng);
	if (be->uring)
		io_uring_queue_exit(&be->ring);
	if (be->fd >= 0)
		close(be->fd);
	if (be->streams)
		for (i = 0; i < (size_t)be->shape.layers * be->shape.max_seqs;
		     i++) {
			free(be->streams[i].tail[0]);
			free(be->streams[i].tail[1]);
		}
	for (i = 0; i < be->nblk; i++)
		free(be->blk[i]);
	if (be->tasks)
		for (i = 0; i < be->ntasks; i++) {
			free(be->tasks[i].blocks);
			free(be->tasks[i].bptr);
			free(be->tasks[i].due);
		}
	free(be->tasks);
	free(be->blk);
	free(be->freeblk);
	free(be->streams);
	free(be->busy);
	pthread_cond_destroy(&be->cond);
	pthread_cond_destroy(&be->wcond);
	pthread_mutex_destroy(&be->lock);
	free(be);
}

static int fg_open(const struct rt_shape *s, const char *opts,
		   struct rt_backend **bp)
{
	uint32_t buf_mb, rs_kb, maxchunks, maxblk, i;
	int want_uring, ret;
	struct fg_be *be;
	size_t raw;

	if (!bp)
		return -EINVAL;
	*bp = NULL;
	if (!s || !s->layers || !s->q_heads || !s->kv_heads || !s->head_dim ||
	    !s->max_seqs || !s->max_tokens || s->q_heads % s->kv_heads ||
	    s->head_dim % 16 || s->head_dim > 256 ||
	    s->q_heads / s->kv_heads > 64 || s->max_seqs >= (1u << 20) ||
	    s->layers >= (1u << 23))
		return -EINVAL;
	be = calloc(1, sizeof(*be));
	if (!be)
		return -ENOMEM;
	be->ops = &rt_backend_flexgen;
	be->fd = -1;
	be->shape = *s;
	if (!be->shape.threads)
		be->shape.threads = 1;
	pthread_mutex_init(&be->lock, NULL);
	pthread_cond_init(&be->wcond, NULL);
	pthread_cond_init(&be->cond, NULL);
	be->live.next = be->live.prev = &be->live;
	ret = fg_parse_opts(be, opts, &buf_mb, &rs_kb, &want_uring);
	if (ret < 0)
		goto err;
	be->row_bytes = (size_t)s->head_dim * 2;
	be->page_bytes = be->row_bytes * FG_TPP;
	raw = be->page_bytes * 2 * s->kv_heads;
	be->chunk_bytes = (raw + FG_ALIGN - 1) / FG_ALIGN * FG_ALIGN;
	be->tok_kv_bytes = (size_t)s->kv_heads * s->head_dim * 2 * 2;
	be->chunks_per_block = (uint32_t)(((size_t)rs_kb * 1024) /
					  be->chunk_bytes);
	/* 64-bit: max_tokens near UINT32_MAX must not wrap to 0 chunks */
	maxchunks = (uint32_t)(((uint64_t)s->max_tokens + FG_TPP - 1) / FG_TPP);
	if (be->chunks_per_block > maxchunks)
		be->chunks_per_block = maxchunks;
	if (!be->chunks_per_block)
		be->chunks_per_block = 1;
	be->block_bytes = be->chunks_per_block * be->chunk_bytes;
	be->region_bytes = (uint64_t)maxchunks * be->chunk_bytes;
	be->budget_blocks = (uint32_t)(((uint64_t)buf_mb << 20) /
				       be->block_bytes);
	if (be->budget_blocks < 2)
		be->budget_blocks = 2;
	ret = -ENOMEM;
	be->streams = calloc((size_t)s->layers * s->max_seqs,
			     sizeof(*be->streams));
	be->busy = calloc(s->max_seqs, sizeof(*be->busy));
	be->ntasks = 4 * s->max_seqs + 16;
	be->tasks = calloc(be->ntasks, sizeof(*be->tasks));
	if (!be->streams || !be->busy || !be->tasks)
		goto err;
	maxblk = (maxchunks + be->chunks_per_block - 1) / be->chunks_per_block;
	if (!maxblk) {		/* cannot happen: max_tokens >= 1 */
		ret = -EINVAL;
		goto err;
	}
	for (i = 0; i < be->ntasks; i++) {
		be->tasks[i].be = be;
		be->tasks[i].blocks = calloc(maxblk, sizeof(uint32_t));
		be->tasks[i].bptr = calloc(maxblk, sizeof(char *));
		if (!be->tasks[i].blocks || !be->tasks[i].bptr)
			goto err;
		if (be->ssd_gbps > 0) {
			be->tasks[i].due = calloc(maxblk, sizeof(uint64_t));
			if (!be->tasks[i].due)
				goto err;
		}
	}
	if (be->region_bytes > (uint64_t)LLONG_MAX / s->layers / s->max_seqs) {
		ret = -EFBIG;
		goto err;
	}
	ret = fg_open_file(be, be->region_bytes * s->layers * s->max_seqs);
	if (ret < 0)
		goto err;
	if (want_uring) {
		ret = io_uring_queue_init(256, &be->ring, 0);
		if (ret == 0) {
			be->uring = 1;
		} else {
			fprintf(stderr,
				"flexgen: io_uring setup failed (%s), using pread\n",
				strerror(-ret));
		}
	}
	ret = attn_engine_create(be->shape.threads, CSD_SIMD_AUTO, &be->eng);
	if (ret < 0)
		goto err;
	ret = pthread_create(&be->worker, NULL, fg_worker, be);
	if (ret) {
		ret = -ret;
		goto err;
	}
	be->worker_started = 1;
	*bp = (struct rt_backend *)be;
	return 0;
err:
	fg_close((struct rt_backend *)be);
	return ret;
}

static int fg_append(struct rt_backend *b, uint32_t seq, uint32_t layer,
		     uint32_t start, uint32_t ntok, const uint16_t *k,
		     const uint16_t *v)
{
	struct fg_be *be = to_be(b);
	size_t kv = be ? (size_t)be->shape.kv_heads * be->shape.head_dim : 0;
	struct fg_stream *fs;
	uint32_t t;
	int ret = 0;

	if (!be)
		return -EINVAL;
	if (seq >= be->shape.max_seqs || layer >= be->shape.layers)
		return -ERANGE;
	if (!ntok)
		return 0;
	if (!k || !v)
		return -EINVAL;
	pthread_mutex_lock(&be->lock);
	fs = fg_stream(be, seq, layer);
	if (start != fs->len) {
		ret = -EILSEQ;
		goto out;
	}
	if ((uint64_t)start + ntok > be->shape.max_tokens) {
		ret = -EFBIG;
		goto out;
	}
	for (t = 0; t < ntok && ret == 0; t++)
		ret = fg_store(be, fs, seq, layer, k + t * kv, v + t * kv, 0);
out:
	pthread_mutex_unlock(&be->lock);
	return ret;
}

static int fg_submit(struct rt_backend *b, uint32_t layer, uint32_t nseq,
		     const uint32_t *seqs, const float *q,
		     const uint16_t *k_new, const uint16_t *v_new, float *out)
{
	struct fg_be *be = to_be(b);
	uint64_t t0 = rt_now_ns();
	struct fg_op *op = NULL;
	uint32_t i, j;
	int slot, ret = 0;

	if (!be || !seqs || !q || !k_new || !v_new || !out || !nseq ||
	    nseq > be->shape.max_seqs)
		return -EINVAL;
	if (layer >= be->shape.layers)
		return -ERANGE;
	pthread_mutex_lock(&be->lock);
	if (be->werr) {
		ret = be->werr;
		goto out;
	}
	for (i = 0; i < nseq; i++) {
		if (seqs[i] >= be->shape.max_seqs) {
			ret = -ERANGE;
			goto out;
		}
		for (j = 0; j < i; j++)
			if (seqs[j] == seqs[i]) {
				ret = -EINVAL;
				goto out;
			}
		if (fg_stream(be, seqs[i], layer)->len >=
		    be->shape.max_tokens) {
			ret = -EFBIG;
			goto out;
		}
	}
	for (slot = 0; slot < FG_MAX_OPS; slot++)
		if (!be->opt[slot].used)
			break;
	if (slot == FG_MAX_OPS) {
		ret = -EBUSY;
		goto out;
	}
	op = &be->opt[slot];
	memset(op, 0, sizeof(*op));
	op->used = 1;
	op->queued = 1;
	op->layer = layer;
	op->nseq = nseq;
	op->seqs = seqs;
	op->q = q;
	op->k_new = k_new;
	op->v_new = v_new;
	op->out = out;
	op->order = be->order_next++;
	for (i = 0; i < nseq; i++)
		be->busy[seqs[i]]++;
	be->st.attn_calls++;
	fg_kick(be);
	ret = slot;
out:
	be->st.attn_ns += rt_now_ns() - t0;
	pthread_mutex_unlock(&be->lock);
	return ret;
}

static int fg_wait(struct rt_backend *b, int ticket)
{
	struct fg_be *be = to_be(b);
	uint64_t t0 = rt_now_ns(), t1;
	struct fg_op *op;
	uint32_t i;
	int ret;

	if (!be || ticket < 0 || ticket >= FG_MAX_OPS)
		return -EINVAL;
	op = &be->opt[ticket];
	pthread_mutex_lock(&be->lock);
	if (!op->used) {
		pthread_mutex_unlock(&be->lock);
		return -EINVAL;
	}
	while (!op->done)
		pthread_cond_wait(&be->cond, &be->lock);
	t1 = rt_now_ns();
	if (op->t_reads_done > t0)
		be->st.xfer_ns += (op->t_reads_done < t1 ? op->t_reads_done
							 : t1) - t0;
	ret = op->err;
	for (i = 0; i < op->nseq; i++)
		be->busy[op->seqs[i]]--;
	op->used = 0;
	be->st.attn_ns += t1 - t0;
	pthread_mutex_unlock(&be->lock);
	return ret;
}

static int fg_reset(struct rt_backend *b, uint32_t seq)
{
	struct fg_be *be = to_be(b);
	uint32_t l;
	int ret = 0;

	if (!be)
		return -EINVAL;
	if (seq >= be->shape.max_seqs)
		return -ERANGE;
	pthread_mutex_lock(&be->lock);
	if (be->busy[seq]) {
		ret = -EBUSY;
	} else {
		for (l = 0; l < be->shape.layers; l++) {
			struct fg_stream *fs = fg_stream(be, seq, l);

			fg_wait_tail(be, fs, 0, 0);
			fg_wait_tail(be, fs, 1, 0);
			fs->len = 0;
			fs->gen++;
		}
	}
	pthread_mutex_unlock(&be->lock);
	return ret;
}

static void fg_get_stats(struct rt_backend *b, struct rt_backend_stats *st)
{
	struct fg_be *be = to_be(b);

	if (!be || !st)
		return;
	pthread_mutex_lock(&be->lock);
	*st = be->st;
	st->host_kv_bytes = be->peak_host;
	pthread_mutex_unlock(&be->lock);
}

int rt_flexgen_get_info(struct rt_backend *b, struct rt_flexgen_info *info)
{
	struct fg_be *be = to_be(b);

	if (!be || !info || be->ops != &rt_backend_flexgen)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&be->lock);
	info->uring = be->uring;
	info->direct = be->direct;
	info->read_size = (uint32_t)be->block_bytes;
	info->queue_depth = be->qd;
	info->file_bytes = be->file_bytes;
	info->staging_bytes = (uint64_t)be->nblk * be->block_bytes;
	snprintf(info->path, sizeof(info->path), "%s", be->dir);
	pthread_mutex_unlock(&be->lock);
	return 0;
}

/*
 * Raw sequential read of the written KV, the reference flexgen's own KV read
 * rate is compared with, so it must be a strong one: the same file and fd
 * (O_DIRECT), every region's full chunks in file order with adjacent regions
 * merged into one extent, FG_RAW_RS-byte aligned reads, FG_RAW_QD of them in
 * flight on a private io_uring, into registered huge-page buffers from
 * fg_io_alloc() like flexgen's staging blocks (plain reads if the
 * registration fails), a request resubmitted as soon as one completes; the
 * best of FG_RAW_PASSES passes is reported.
 * Runs next to the worker (reads only; call it between steps).
 */
#define FG_RAW_RS	(4u << 20)
#define FG_RAW_QD	32u
#define FG_RAW_PASSES	2

struct fg_ext {
	uint64_t off, len;
};

/* Extents of what is on the file (written, no write in flight). */
static int fg_raw_extents(struct fg_be *be, struct fg_ext **ep, size_t *np)
{
	size_t n = 0, cap = (size_t)be->shape.layers * be->shape.max_seqs;
	struct fg_ext *ext = calloc(cap ? cap : 1, sizeof(*ext));
	uint32_t l, s, i;

	if (!ext)
		return -ENOMEM;
	pthread_mutex_lock(&be->lock);
	for (l = 0; l < be->shape.layers; l++)
		for (s = 0; s < be->shape.max_seqs; s++) {
			struct fg_stream *fs = fg_stream(be, s, l);
			uint32_t c = fs->len / FG_TPP;
			uint64_t off = fg_off(be, s, l, 0);

			for (i = 0; i < 2; i++)
				if (fs->wpending[i] && fs->wchunk[i] < c)
					c = fs->wchunk[i];
			if (!c)
				continue;
			if (n && ext[n - 1].off + ext[n - 1].len == off) {
				ext[n - 1].len += (uint64_t)c * be->chunk_bytes;
				continue;
			}
			ext[n].off = off;
			ext[n].len = (uint64_t)c * be->chunk_bytes;
			n++;
		}
	pthread_mutex_unlock(&be->lock);
	*ep = ext;
	*np = n;
	return 0;
}

static int fg_raw_uring(int fd, const struct fg_ext *ext, size_t n,
			uint64_t max_bytes, uint64_t *bytes, uint64_t *ns)
{
	struct iovec iov[FG_RAW_QD];
	uint32_t freeb[FG_RAW_QD], nfree = 0, inflight = 0, i, qd = FG_RAW_QD;
	uint64_t total = 0, pos = 0, want = 0;
	size_t e = 0, rs = FG_RAW_RS;
	struct io_uring ring;
	int ret, fixed;
	char *mem;

	/* no more buffer than the data needs (small files, tests) */
	for (e = 0; e < n; e++)
		want += ext[e].len;
	e = 0;
	if (max_bytes && want > max_bytes)
		want = max_bytes;
	if (want < (uint64_t)rs * qd) {
		qd = (uint32_t)((want + rs - 1) / rs);
		if (!qd)
			qd = 1;
		if (want < rs)
			rs = want ? (size_t)(want + FG_ALIGN - 1) / FG_ALIGN *
				    FG_ALIGN : FG_ALIGN;
	}
	/* faulted in (before the clock starts), huge pages if possible */
	mem = fg_io_alloc((size_t)qd * rs);
	if (!mem)
		return -ENOMEM;
	ret = io_uring_queue_init(qd * 2, &ring, 0);
	if (ret < 0) {
		free(mem);
		return ret;
	}
	for (i = 0; i < qd; i++) {
		iov[i].iov_base = mem + (size_t)i * rs;
		iov[i].iov_len = rs;
		freeb[nfree++] = qd - 1 - i;
	}
	fixed = io_uring_register_buffers(&ring, iov, qd) == 0;
	ret = 0;
	*ns = rt_now_ns();
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;

		/* fill the queue */
		while (nfree && e < n && ret == 0 &&
		       !(max_bytes && total >= max_bytes)) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			uint64_t len = ext[e].len - pos;
			uint32_t bi;

			if (!sqe)
				break;
			if (len > rs)
				len = rs;
			bi = freeb[--nfree];
			if (fixed)
				io_uring_prep_read_fixed(sqe, fd, iov[bi].iov_base,
							 (unsigned int)len,
							 ext[e].off + pos,
							 (int)bi);
			else
				io_uring_prep_read(sqe, fd, iov[bi].iov_base,
						   (unsigned int)len,
						   ext[e].off + pos);
			io_uring_sqe_set_data64(sqe,
						((uint64_t)len << 32) | bi);
			inflight++;
			total += len;
			pos += len;
			if (pos == ext[e].len) {
				e++;
				pos = 0;
			}
		}
		if (!inflight)
			break;
		i = (uint32_t)io_uring_submit_and_wait(&ring, 1);
		if ((int)i < 0 && io_uring_peek_cqe(&ring, &cqe) != 0) {
			if ((int)i == -EINTR || (int)i == -EAGAIN ||
			    (int)i == -EBUSY)
				continue;
			if (ret == 0)
				ret = (int)i;
			break;
		}
		io_uring_for_each_cqe(&ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);

			if (cqe->res != (int)(ud >> 32) && ret == 0)
				ret = cqe->res < 0 ? cqe->res : -EIO;
			freeb[nfree++] = (uint32_t)(ud & 0xffffffffu);
			inflight--;
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	*ns = rt_now_ns() - *ns;
	io_uring_queue_exit(&ring);
	free(mem);
	*bytes = total;
	return ret;
}

static int fg_raw_pread(int fd, const struct fg_ext *ext, size_t n,
			uint64_t max_bytes, uint64_t *bytes, uint64_t *ns)
{
	char *buf = fg_io_alloc(FG_RAW_RS);
	uint64_t total = 0, pos, t0 = rt_now_ns();
	size_t e;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (e = 0; e < n && ret == 0; e++)
		for (pos = 0; pos < ext[e].len && ret == 0;) {
			uint64_t len = ext[e].len - pos;

			if (max_bytes && total >= max_bytes)
				break;
			if (len > FG_RAW_RS)
				len = FG_RAW_RS;
			ret = fg_pio(fd, 0, buf, len, ext[e].off + pos);
			total += len;
			pos += len;
		}
	*ns = rt_now_ns() - t0;
	free(buf);
	*bytes = total;
	return ret;
}

int rt_flexgen_raw_read(struct rt_backend *b, uint64_t max_bytes,
			uint64_t *bytes, uint64_t *ns)
{
	struct fg_be *be = to_be(b);
	struct fg_ext *ext = NULL;
	size_t n;
	int ret, pass;

	if (!be || be->ops != &rt_backend_flexgen || !bytes || !ns)
		return -EINVAL;
	*bytes = 0;
	ret = fg_raw_extents(be, &ext, &n);
	if (ret < 0)
		return ret;
	/* best of FG_RAW_PASSES passes: the device here is noisy */
	*ns = 0;
	for (pass = 0; pass < FG_RAW_PASSES; pass++) {
		uint64_t got = 0, dt = 0;

		ret = -ENOSYS;
		if (be->uring)
			ret = fg_raw_uring(be->fd, ext, n, max_bytes, &got, &dt);
		if (ret == -ENOSYS || ret == -ENOMEM || ret == -EPERM)
			ret = fg_raw_pread(be->fd, ext, n, max_bytes, &got,
					   &dt);
		if (ret < 0)
			break;
		if (!pass || (double)got * (double)*ns >
			     (double)*bytes * (double)dt) {
			*bytes = got;
			*ns = dt;
		}
	}
	free(ext);
	return ret;
}

const struct rt_backend_ops rt_backend_flexgen = {
	.name = "flexgen",
	.open = fg_open,
	.close = fg_close,
	.append = fg_append,
	.submit = fg_submit,
	.wait = fg_wait,
	.reset = fg_reset,
	.get_stats = fg_get_stats,
};
