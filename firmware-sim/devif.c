// SPDX-License-Identifier: MIT
/*
 * devif.c - csd device interface, daemon side (Documentation/
 * device-interface.md, include/csd/csd_devif.h).
 *
 * Threads: the main thread (devif_run) owns the listening socket, the
 * clients' sockets and doorbell eventfds, fetches SQEs and resolves PRPs;
 * completions arrive from any firmware thread (or inline from
 * csdfw_submit) and post CQEs under the queue's cq_lock.
 *
 * Everything read from shared memory is read once into private memory and
 * validated before use: a client can write anything at any time.
 *
 * Controller reset (v1.2): a client's reset request (reset_req !=
 * the last value acked) is noticed by the main thread on the client's
 * doorbells, at every heartbeat tick and in the busy-poll passes.  It sets
 * cl->resetting: nothing more is fetched from the client and post_cqe()
 * drops the completions of its commands still in the firmware (no CQE, no
 * interrupt).  The completion that brings cl->inflight to zero wakes the
 * main thread (reap_fd), which zeroes the client's rings and doorbell
 * words, restarts its indices and acks (client_reset_finish).
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "csd/csd_devif.h"
#include "devif.h"
#include "ivshm_server.h"

#define PAGE		CSD_DEVIF_PAGE
#define OWN_ORPHAN	UINT32_MAX	/* ctx_owner[]: claimable by anyone */
#define ALIGN_UP(x, a)	(((x) + (a) - 1) / (a) * (a))

/* Shared-memory access.  Each shared word is accessed exactly once per use
 * with an atomic (READ_ONCE/WRITE_ONCE-like) access; ordering as noted. */
static inline uint32_t shm_load_acquire32(const uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline uint64_t shm_load64(const uint64_t *p)
{
	return le64toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void shm_store32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELAXED);
}

static inline void shm_store_release32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELEASE);
}

static inline void shm_store_release64(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, htole64(v), __ATOMIC_RELEASE);
}

struct devif_client;

struct dq {
	struct devif_client *cl;
	uint16_t qid;
	struct csd_sqe *sq;		/* shared */
	struct csd_devif_sqx *sqx;	/* shared */
	struct csd_cqe *cq;		/* shared */
	uint32_t sq_head;		/* main thread only */
	pthread_mutex_t cq_lock;
	uint32_t cq_tail;		/* cq_lock */
	uint16_t phase;			/* cq_lock: phase of the next CQE */
	uint32_t inflight;		/* cq_lock: fetched, CQE not posted */
};

struct devif_client {
	struct devif *d;
	uint32_t slot;
	uint32_t generation;		/* attaches of this slot */
	bool active;			/* slot in use (main thread) */
	atomic_bool dead;		/* socket gone, reap pending */
	atomic_uint inflight;		/* commands in the firmware */
	atomic_bool resetting;		/* controller reset in progress:
					 * nothing fetched, CQEs dropped */
	atomic_uint discarded;		/* completions dropped by it */
	uint32_t reset_ack;		/* main thread: last request acked */
	uint32_t reset_val;		/* main thread: request acted on */
	int sock;
	int db_fd[CSD_DEVIF_MAX_QUEUES];	/* client rings us */
	int irq_fd[CSD_DEVIF_MAX_QUEUES];	/* we ring the client */
	int shm_fd;			/* this client's own memfd */
	uint8_t *shm;			/* its mapping (shm_size bytes) */
	struct csd_devif_regs *regs;	/* its register page */
	uint8_t *area;
	struct csd_devif_client *ctl;
	uint8_t *win;
	struct dq q[CSD_DEVIF_MAX_QUEUES];
};

struct devif {
	struct devif_opts o;
	struct csdfw *fw;
	uint32_t nvec;
	uint32_t max_xfer;
	uint64_t area_size, q_stride, sq_off, sqx_off, cq_off;
	uint64_t q_off, win_off, win_size;
	uint8_t *dma;
	uint64_t dma_size;
	int timer_fd;
	int reap_fd;
	uint64_t heartbeat;
	atomic_uint quiet_cqes;		/* CQEs posted without an interrupt */
	pthread_mutex_t own_lock;
	uint32_t *ctx_owner;		/* [id] = slot + 1, 0 none, OWN_ORPHAN */
	uint32_t max_ctx;
	struct devif_client *cl;	/* [max_clients] */
};

/* One command in the firmware. */
struct dcmd {
	struct dq *q;
	uint8_t opcode;
	uint32_t ctx;			/* cdw12 as submitted */
	uint16_t sq_head;		/* SQ head after fetching this one */
	struct csd_sqe sqe;		/* private copy */
	struct csdfw_data data;
	unsigned int nseg, maxseg;
	struct csdfw_seg seg[];
};

static void logmsg(const struct devif *d, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logmsg(const struct devif *d, int level, const char *fmt, ...)
{
	va_list ap;

	if (level > d->o.log_level)
		return;
	fputs("csd-fw: ", stderr);
	va_start(ap, fmt);
	/* NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): clang-tidy 14 misses va_start here */
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static inline uint16_t err_status(uint8_t sct, uint8_t sc)
{
	return (uint16_t)(CSD_STATUS(sct, sc) | CSD_STATUS_DNR);
}

/* ---- context ownership ------------------------------------------------- */

/*
 * Before submission: a command naming a context this client does not own
 * is sent with context id 0 (never valid), so the firmware answers exactly
 * as for an unknown context, in its own validation order.  CTX_DESTROY
 * drops ownership at submission so no later command of the client can
 * reach the id once the firmware may hand it out again.
 *
 * An orphan (a context that existed in the firmware when the daemon
 * started, see devif_scan_orphans) belongs to the first client that names
 * it: the command claims it and then proceeds as the owner's.
 */
static void own_check(struct devif *d, struct dcmd *c)
{
	uint32_t me = c->q->cl->slot + 1, id = c->sqe.cdw12;
	bool claimed = false;

	if (c->q->qid == 0 || !csd_io_names_ctx(c->opcode))
		return;
	pthread_mutex_lock(&d->own_lock);
	if (id >= 1 && id <= d->max_ctx && d->ctx_owner[id] == OWN_ORPHAN) {
		d->ctx_owner[id] = me;
		claimed = true;
	}
	if (id == 0 || id > d->max_ctx || d->ctx_owner[id] != me) {
		c->sqe.cdw12 = 0;
		c->ctx = 0;
	} else if (c->opcode == CSD_IO_CTX_DESTROY) {
		d->ctx_owner[id] = 0;
	}
	pthread_mutex_unlock(&d->own_lock);
	if (claimed)
		logmsg(d, DEVIF_LOG_INFO,
		       "client %u claimed orphan context %u (opcode 0x%02x)\n",
		       me, id, c->opcode);
}

static void own_complete(struct devif *d, struct dcmd *c, uint16_t status,
			 uint32_t dw0)
{
	uint32_t me = c->q->cl->slot + 1;

	if (c->q->qid == 0)
		return;
	pthread_mutex_lock(&d->own_lock);
	if (c->opcode == CSD_IO_CTX_CREATE && !status && dw0 >= 1 &&
	    dw0 <= d->max_ctx)
		d->ctx_owner[dw0] = me;
	else if (c->opcode == CSD_IO_CTX_DESTROY && status && c->ctx &&
		 c->ctx <= d->max_ctx && d->ctx_owner[c->ctx] == 0)
		d->ctx_owner[c->ctx] = me;	/* destroy failed: still ours */
	pthread_mutex_unlock(&d->own_lock);
}

int devif_scan_orphans(struct devif *d)
{
	struct csd_log_ctx_hdr *hdr;
	struct csd_log_ctx_entry *e;
	struct csdfw_seg seg;
	struct csdfw_data data;
	struct csd_sqe sqe;
	struct csd_cqe cqe;
	uint32_t i, n, id;
	size_t len;
	int marked = 0;

	len = sizeof(*hdr) + (size_t)d->max_ctx * sizeof(*e);
	hdr = calloc(1, len);
	if (!hdr)
		return -ENOMEM;
	seg.addr = hdr;
	seg.len = len;
	data.seg = &seg;
	data.nseg = 1;
	data.len = len;
	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = CSD_ADM_GET_LOG_PAGE;
	sqe.nsid = 0xffffffffu;
	sqe.cdw10 = CSD_LOG_CONTEXTS | (uint32_t)((len / 4 - 1) & 0xffff) << 16;
	sqe.cdw11 = (uint32_t)((len / 4 - 1) >> 16);
	csdfw_exec(d->fw, CSDFW_Q_ADMIN, &sqe, &data, &cqe);
	if (cqe.status >> 1) {
		logmsg(d, DEVIF_LOG_ERR, "contexts log: status 0x%04x\n",
		       cqe.status >> 1);
		free(hdr);
		return -EIO;
	}
	n = hdr->count < d->max_ctx ? hdr->count : d->max_ctx;
	e = (struct csd_log_ctx_entry *)(hdr + 1);
	pthread_mutex_lock(&d->own_lock);
	for (i = 0; i < n; i++) {
		id = e[i].ctx_id;
		if (id >= 1 && id <= d->max_ctx && !d->ctx_owner[id]) {
			d->ctx_owner[id] = OWN_ORPHAN;
			marked++;
		}
	}
	pthread_mutex_unlock(&d->own_lock);
	free(hdr);
	if (marked)
		logmsg(d, DEVIF_LOG_INFO,
		       "%d context(s) without an owner: the first client "
		       "naming one claims it\n", marked);
	return marked;
}

struct csdfw *devif_fw(struct devif *d)
{
	return d->fw;
}

/* Destroy every context a departed client still owns. */
static void own_release(struct devif *d, uint32_t slot)
{
	struct csd_sqe sqe;
	struct csd_cqe cqe;
	uint32_t id;

	for (id = 1; id <= d->max_ctx; id++) {
		pthread_mutex_lock(&d->own_lock);
		if (d->ctx_owner[id] != slot + 1) {
			pthread_mutex_unlock(&d->own_lock);
			continue;
		}
		d->ctx_owner[id] = 0;
		pthread_mutex_unlock(&d->own_lock);
		memset(&sqe, 0, sizeof(sqe));
		sqe.opcode = CSD_IO_CTX_DESTROY;
		sqe.nsid = CSD_NSID;
		sqe.cdw12 = id;
		csdfw_exec(d->fw, CSDFW_Q_IO, &sqe, NULL, &cqe);
		logmsg(d, DEVIF_LOG_INFO, "client %u: destroyed context %u (status 0x%04x)\n",
		       slot + 1, id, cqe.status >> 1);
	}
}

/* ---- completion ---------------------------------------------------------- */

/*
 * Post one CQE and ring the client.  Order: dw0, dw1, sq_head/sq_id first,
 * then the word holding cid and the status with the new phase tag, stored
 * with release semantics: a client whose acquire load of the status word
 * sees the new phase also sees the rest of the entry.  A client that has
 * gone away gets nothing (its area is reset before reuse), nor does a
 * client resetting its controller.
 */
static void post_cqe(struct dq *q, uint16_t sq_head, uint16_t cid,
		     uint16_t status, uint32_t dw0, uint32_t dw1)
{
	struct devif_client *cl = q->cl;
	uint32_t *w, poll_cpu;

	pthread_mutex_lock(&q->cq_lock);
	if (atomic_load(&cl->resetting)) {
		/* a command fetched before a controller reset: its
		 * completion is discarded (device-interface.md 4.4) */
		atomic_fetch_add(&cl->discarded, 1);
	} else if (!atomic_load(&cl->dead)) {
		w = (uint32_t *)&q->cq[q->cq_tail];
		shm_store32(&w[0], dw0);
		shm_store32(&w[1], dw1);
		shm_store32(&w[2], (uint32_t)sq_head | (uint32_t)q->qid << 16);
		shm_store_release32(&w[3], (uint32_t)cid |
				    (uint32_t)((status << 1) | q->phase) << 16);
		if (++q->cq_tail == cl->d->o.depth) {
			q->cq_tail = 0;
			q->phase ^= 1;
		}
		/*
		 * eventfd write: the client's vector (MSI-X in a guest) --
		 * unless the client said it is polling this CQ.  The full
		 * barrier orders the CQE store before the cq_poll load; the
		 * client clears cq_poll, barrier, then looks at the CQ once
		 * more, so one of the two always sees the other.
		 */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		poll_cpu = le32toh(__atomic_load_n(&cl->ctl->db[q->qid].cq_poll,
						   __ATOMIC_RELAXED));
		if (poll_cpu) {
			/* 1 + the poller's CPU (a hint): ours? */
			if (poll_cpu - 1 == (uint32_t)sched_getcpu())
				atomic_fetch_add(&cl->d->quiet_cqes, 1);
		} else if (eventfd_write(cl->irq_fd[q->qid], 1) < 0 &&
			   errno != EAGAIN)
			logmsg(cl->d, DEVIF_LOG_ERR, "client %u: irq write: %s\n",
			       cl->slot + 1,
			       strerror(errno));
	}
	q->inflight--;
	pthread_mutex_unlock(&q->cq_lock);
}

static void cmd_finish(struct dcmd *c, uint16_t status, uint32_t dw0,
		       uint32_t dw1)
{
	struct dq *q = c->q;
	struct devif_client *cl = q->cl;
	struct devif *d = cl->d;

	own_complete(d, c, status, dw0);
	post_cqe(q, c->sq_head, c->sqe.cid, status, status ? 0 : dw0, dw1);
	free(c);
	/* last touch of the client: the reaper may free its slot (or finish
	 * its controller reset) after this */
	if (atomic_fetch_sub(&cl->inflight, 1) == 1 &&
	    (atomic_load(&cl->dead) || atomic_load(&cl->resetting)))
		eventfd_write(d->reap_fd, 1);
}

static void fw_done(void *arg, const struct csd_cqe *cqe)
{
	struct dcmd *c = arg;

	cmd_finish(c, (uint16_t)(cqe->status >> 1), cqe->dw0, cqe->dw1);
}

/* ---- PRP resolution ---------------------------------------------------- */

/* Map [addr, addr + len) of the device address space to daemon memory. */
static void *dma_map(struct devif_client *cl, uint64_t addr, uint64_t len)
{
	struct devif *d = cl->d;
	uint64_t off;

	if (addr & CSD_DEVIF_ADDR_WINDOW) {
		off = addr & CSD_DEVIF_ADDR_MASK;
		if (off >= d->win_size || len > d->win_size - off)
			return NULL;
		return cl->win + off;
	}
	if (!d->dma || addr >= d->dma_size || len > d->dma_size - addr)
		return NULL;
	return d->dma + addr;
}

static int seg_add(struct dcmd *c, void *p, size_t len)
{
	struct csdfw_seg *s = c->nseg ? &c->seg[c->nseg - 1] : NULL;

	if (s && (uint8_t *)s->addr + s->len == p) {	/* contiguous: merge */
		s->len += len;
		return 0;
	}
	if (c->nseg == c->maxseg)
		return -1;
	c->seg[c->nseg].addr = p;
	c->seg[c->nseg].len = len;
	c->nseg++;
	return 0;
}

/*
 * Gather the PRPs of @c (NVMe rules, 4 KiB pages) covering @len bytes into
 * its segment list.  PRP1 may carry a dword-aligned page offset; PRP2 is the
 * second page or, when more than two pages are needed, a qword-aligned
 * pointer to a PRP list whose last entry in each list page chains to the
 * next (page-aligned) list page.  Every entry is read once and validated.
 */
static int prp_resolve(struct devif_client *cl, struct dcmd *c, uint64_t len)
{
	uint64_t prp1 = c->sqe.prp1, prp2 = c->sqe.prp2;
	uint64_t first, rem, list, e, chunk, hops = 0;
	const uint64_t *lp;
	uint32_t n, i;
	void *p;

	if (prp1 & 3)
		return -1;
	first = PAGE - (prp1 & (PAGE - 1));
	if (first > len)
		first = len;
	p = dma_map(cl, prp1, first);
	if (!p || seg_add(c, p, first))
		return -1;
	rem = len - first;
	if (!rem)
		return 0;
	if (rem <= PAGE) {
		if (prp2 & (PAGE - 1))
			return -1;
		p = dma_map(cl, prp2, rem);
		return p && !seg_add(c, p, rem) ? 0 : -1;
	}
	list = prp2;
	if (list & 7)
		return -1;
	while (rem) {
		n = (uint32_t)((PAGE - (list & (PAGE - 1))) / 8);
		lp = dma_map(cl, list, (uint64_t)n * 8);
		if (!lp || ++hops > len / PAGE + 2)
			return -1;
		for (i = 0; i < n && rem; i++) {
			e = shm_load64(&lp[i]);
			if (i == n - 1 && rem > PAGE) {
				/* chain to the next list page */
				if (e & (PAGE - 1))
					return -1;
				list = e;
				break;
			}
			if (e & (PAGE - 1))
				return -1;
			chunk = rem < PAGE ? rem : PAGE;
			p = dma_map(cl, e, chunk);
			if (!p || seg_add(c, p, chunk))
				return -1;
			rem -= chunk;
		}
	}
	return 0;
}

/* ---- submission ---------------------------------------------------------- */

static void fetch_one(struct dq *q, uint32_t slot)
{
	struct devif_client *cl = q->cl;
	struct devif *d = cl->d;
	struct csd_devif_sqx *x = &q->sqx[slot];
	uint32_t len, flags, maxseg;
	struct dcmd *c;
	uint16_t st = 0;

	/* entry fields are read once, into private memory */
	len = le32toh(__atomic_load_n(&x->data_len, __ATOMIC_RELAXED));
	flags = le32toh(__atomic_load_n(&x->flags, __ATOMIC_RELAXED));
	maxseg = len <= d->max_xfer ? len / PAGE + 2 : 1;
	c = calloc(1, sizeof(*c) + maxseg * sizeof(c->seg[0]));
	if (!c) {
		/* no memory for the command: complete it from the stack */
		struct csd_sqe tmp;

		memcpy(&tmp, &q->sq[slot], sizeof(tmp));
		atomic_fetch_add(&cl->inflight, 1);
		post_cqe(q, (uint16_t)q->sq_head, tmp.cid,
			 err_status(CSD_SCT_GENERIC, CSD_SC_INTERNAL), 0, 0);
		if (atomic_fetch_sub(&cl->inflight, 1) == 1 &&
		    atomic_load(&cl->dead))
			eventfd_write(d->reap_fd, 1);
		return;
	}
	memcpy(&c->sqe, (const void *)&q->sq[slot], sizeof(c->sqe));
	c->q = q;
	c->sq_head = (uint16_t)q->sq_head;
	c->opcode = c->sqe.opcode;
	c->ctx = c->sqe.cdw12;
	c->maxseg = maxseg;
	atomic_fetch_add(&cl->inflight, 1);

	if (flags) {
		__atomic_fetch_or(&cl->ctl->error, htole32(CSD_DEVIF_ERR_SQX),
				  __ATOMIC_RELAXED);
		logmsg(d, DEVIF_LOG_DEBUG, "client %u: queue %u: SQX flags "
		       "0x%x\n", cl->slot + 1, q->qid, flags);
		st = err_status(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD);
	} else if (len > d->max_xfer) {
		st = err_status(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD);
	} else if (len && prp_resolve(cl, c, len)) {
		st = err_status(CSD_SCT_GENERIC, CSD_SC_SGL_INVALID);
	}
	if (st) {
		cmd_finish(c, st, 0, 0);
		return;
	}
	c->data.seg = c->seg;
	c->data.nseg = c->nseg;
	c->data.len = len;
	own_check(d, c);
	csdfw_submit(d->fw, q->qid ? CSDFW_Q_IO : CSDFW_Q_ADMIN, &c->sqe,
		     len ? &c->data : NULL, fw_done, c);
}

/*
 * Process a queue's doorbell: fetch SQEs from our head up to the client's
 * tail, but only as many as the CQ has room for (completions never
 * overwrite entries the client has not consumed, as long as it moves its CQ
 * head forward only).
 */
static uint32_t queue_process(struct dq *q)
{
	struct devif_client *cl = q->cl;
	uint32_t depth = cl->d->o.depth, tail, head, used, avail, n;
	struct csd_devif_qdb *db = &cl->ctl->db[q->qid];

	if (atomic_load(&cl->resetting))	/* step 1: stop fetching */
		return 0;
	/* acquire: the SQEs (and SQX entries) written before the tail
	 * doorbell are visible once we see the tail */
	tail = shm_load_acquire32(&db->sq_tail);
	if (tail >= depth) {
		__atomic_fetch_or(&cl->ctl->error, htole32(CSD_DEVIF_ERR_SQ_TAIL),
				  __ATOMIC_RELAXED);
		logmsg(cl->d, DEVIF_LOG_DEBUG, "client %u: queue %u: sq_tail "
		       "%u >= depth, ignored\n", cl->slot + 1, q->qid, tail);
		return 0;
	}
	head = shm_load_acquire32(&db->cq_head);
	pthread_mutex_lock(&q->cq_lock);
	if (head >= depth) {
		__atomic_fetch_or(&cl->ctl->error, htole32(CSD_DEVIF_ERR_CQ_HEAD),
				  __ATOMIC_RELAXED);
		logmsg(cl->d, DEVIF_LOG_DEBUG, "client %u: queue %u: cq_head "
		       "%u >= depth, ignored\n", cl->slot + 1, q->qid, head);
		avail = 0;
	} else {
		used = (q->cq_tail + depth - head) % depth + q->inflight;
		avail = used < depth - 1 ? depth - 1 - used : 0;
	}
	n = (tail + depth - q->sq_head) % depth;
	if (n > avail)
		n = avail;
	q->inflight += n;	/* reserve CQ slots */
	pthread_mutex_unlock(&q->cq_lock);

	for (avail = n; avail; avail--) {
		uint32_t slot = q->sq_head;

		q->sq_head = (q->sq_head + 1) % depth;
		fetch_one(q, slot);
	}
	return n;
}

static void client_process_all(struct devif_client *cl)
{
	uint32_t i;

	for (i = 0; i < cl->d->nvec && !atomic_load(&cl->dead); i++)
		queue_process(&cl->q[i]);
}

/* ---- controller reset (v1.2) ------------------------------------------ */

/*
 * Steps 3 and 4 of a controller reset, once nothing the client submitted
 * is left in the firmware (every completion since the request was
 * dropped): zero its rings and doorbell words, restart our indices, clear
 * the sticky error word, then ack with release semantics -- a client that
 * sees the ack (acquire) sees the zeroed memory -- and signal vector 0.
 */
static void client_reset_finish(struct devif_client *cl)
{
	struct devif *d = cl->d;
	uint32_t v, n;

	for (v = 0; v < d->nvec; v++) {
		struct dq *q = &cl->q[v];

		pthread_mutex_lock(&q->cq_lock);
		memset((void *)q->sq, 0, (size_t)d->o.depth * sizeof(*q->sq));
		memset((void *)q->sqx, 0, (size_t)d->o.depth * sizeof(*q->sqx));
		memset((void *)q->cq, 0, (size_t)d->o.depth * sizeof(*q->cq));
		q->sq_head = 0;
		q->cq_tail = 0;
		q->phase = 1;
		q->inflight = 0;
		shm_store32(&cl->ctl->db[v].sq_tail, 0);
		shm_store32(&cl->ctl->db[v].cq_head, 0);
		shm_store32(&cl->ctl->db[v].cq_poll, 0);
		pthread_mutex_unlock(&q->cq_lock);
	}
	shm_store32(&cl->ctl->error, 0);
	n = atomic_exchange(&cl->discarded, 0);
	atomic_store(&cl->resetting, false);
	cl->reset_ack = cl->reset_val;
	logmsg(d, DEVIF_LOG_INFO,
	       "client %u: controller reset (%u commands discarded)\n",
	       cl->slot + 1, n);
	shm_store_release32(&cl->ctl->reset_ack, cl->reset_val);
	if (eventfd_write(cl->irq_fd[0], 1) < 0 && errno != EAGAIN)
		logmsg(d, DEVIF_LOG_ERR, "client %u: irq write: %s\n",
		       cl->slot + 1, strerror(errno));
}

/*
 * Look at the client's reset request (main thread: on its doorbells, at
 * every heartbeat tick, after a completion ended a reset's wait).  A new
 * request starts a reset (steps 1-2: stop fetching, drop completions); a
 * reset whose commands have all left the firmware is finished.  A request
 * changed while a reset was in progress is acted on right after its ack
 * (at most one follow-up here, so a client flipping the word cannot keep
 * the main thread busy).
 */
static void client_check_reset(struct devif_client *cl)
{
	uint32_t req;
	int pass;

	if (!cl->active || atomic_load(&cl->dead))
		return;
	for (pass = 0; pass < 2; pass++) {
		if (atomic_load(&cl->resetting)) {
			if (atomic_load(&cl->inflight))
				return;	/* the last completion wakes us */
			client_reset_finish(cl);
		}
		/* acquire: pairs with the client's release store */
		req = shm_load_acquire32(&cl->ctl->reset_req);
		if (req == cl->reset_ack)
			return;
		cl->reset_val = req;
		atomic_store(&cl->discarded, 0);
		/* seq_cst store, then the inflight load: with cmd_finish's
		 * decrement-then-load, one of the two sees the other */
		atomic_store(&cl->resetting, true);
		logmsg(cl->d, DEVIF_LOG_DEBUG,
		       "client %u: controller reset requested (%u in flight)\n",
		       cl->slot + 1, atomic_load(&cl->inflight));
	}
	if (atomic_load(&cl->resetting) && !atomic_load(&cl->inflight))
		client_reset_finish(cl);
}

/* ---- clients ------------------------------------------------------------- */

static void regs_init(struct devif *d, struct csd_devif_regs *r)
{
	r->magic = htole32(CSD_DEVIF_MAGIC);
	r->version = htole32(CSD_DEVIF_VERSION);
	r->caps = htole32(CSD_DEVIF_CAP_WINDOW | CSD_DEVIF_CAP_CTX_OWNER |
			  CSD_DEVIF_CAP_RESET |
			  (d->dma ? CSD_DEVIF_CAP_DMA_RAM : 0));
	r->heartbeat = htole64(d->heartbeat);
	r->hb_period_ms = htole32(d->o.hb_ms);
	r->max_clients = htole32(d->o.max_clients);
	r->nr_io_queues = htole32(d->o.io_queues);
	r->queue_depth = htole32(d->o.depth);
	r->nr_vectors = htole32(d->nvec);
	r->max_xfer = htole32(d->max_xfer);
	r->shm_size = htole64(d->o.shm_size);
	r->client_off = htole64(PAGE);
	r->client_stride = 0;	/* v1.1: every client's area is at client_off */
	r->q_off = htole64(d->q_off);
	r->q_stride = htole64(d->q_stride);
	r->sq_off = htole64(d->sq_off);
	r->sqx_off = htole64(d->sqx_off);
	r->cq_off = htole64(d->cq_off);
	r->win_off = htole64(d->win_off);
	r->win_size = htole64(d->win_size);
	r->dma_size = htole64(d->dma_size);
	/* release: every field above is visible before RDY */
	shm_store_release32(&r->status, CSD_DEVIF_STS_RDY);
}

/*
 * Drop the daemon's side of a client's memory.  The memfd dies with the
 * client's own mapping; a later attach of the slot gets a new, zeroed one,
 * so nothing of this client is ever visible to the next.
 */
static void client_unmap(struct devif *d, struct devif_client *cl)
{
	uint32_t v;

	if (cl->shm)
		munmap(cl->shm, d->o.shm_size);
	close_fd(&cl->shm_fd);
	cl->shm = cl->area = cl->win = NULL;
	cl->regs = NULL;
	cl->ctl = NULL;
	for (v = 0; v < CSD_DEVIF_MAX_QUEUES; v++) {
		cl->q[v].sq = NULL;
		cl->q[v].sqx = NULL;
		cl->q[v].cq = NULL;
	}
}

/*
 * Create the client's own shared memory: a sealed memfd (the client cannot
 * shrink it under the daemon's feet) holding a register page and this
 * client's area only.
 */
static int client_map(struct devif *d, struct devif_client *cl)
{
	char name[32];
	uint32_t v;
	int rc;

	snprintf(name, sizeof(name), "csd-fw client %u", cl->slot + 1);
	cl->shm_fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (cl->shm_fd < 0 ||
	    ftruncate(cl->shm_fd, (off_t)d->o.shm_size) < 0 ||
	    fcntl(cl->shm_fd, F_ADD_SEALS,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto err;
	cl->shm = mmap(NULL, d->o.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       cl->shm_fd, 0);
	if (cl->shm == MAP_FAILED) {
		cl->shm = NULL;
		goto err;
	}
	cl->regs = (struct csd_devif_regs *)cl->shm;
	cl->area = cl->shm + PAGE;
	cl->ctl = (struct csd_devif_client *)cl->area;
	cl->win = cl->area + d->win_off;
	for (v = 0; v < d->nvec; v++) {
		struct dq *q = &cl->q[v];
		uint8_t *qb = cl->area + d->q_off + v * d->q_stride;

		q->sq = (struct csd_sqe *)(qb + d->sq_off);
		q->sqx = (struct csd_devif_sqx *)(qb + d->sqx_off);
		q->cq = (struct csd_cqe *)(qb + d->cq_off);
		q->sq_head = 0;
		q->cq_tail = 0;
		q->phase = 1;		/* first pass writes phase 1 */
		q->inflight = 0;
	}
	shm_store32(&cl->ctl->peer_id, cl->slot + 1);
	shm_store32(&cl->ctl->generation, ++cl->generation);
	shm_store32(&cl->ctl->state, CSD_DEVIF_CLIENT_ACTIVE);
	regs_init(d, cl->regs);		/* RDY last, with release */
	return 0;
err:
	rc = -errno;
	logmsg(d, DEVIF_LOG_ERR, "client %u: shared memory: %s\n",
	       cl->slot + 1, strerror(errno));
	client_unmap(d, cl);
	return rc;
}

static int client_attach(struct devif *d, int sock)
{
	struct devif_client *cl = NULL;
	uint32_t i, v;
	int rc = 0;

	for (i = 0; i < d->o.max_clients; i++) {
		if (!d->cl[i].active) {
			cl = &d->cl[i];
			break;
		}
	}
	if (!cl) {
		logmsg(d, DEVIF_LOG_INFO,
		       "refusing a client: all %u slots busy\n",
		       d->o.max_clients);
		close(sock);
		return -EBUSY;
	}
	for (v = 0; v < d->nvec; v++) {
		cl->db_fd[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		cl->irq_fd[v] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (cl->db_fd[v] < 0 || cl->irq_fd[v] < 0) {
			rc = -errno;
			goto err;
		}
	}
	rc = client_map(d, cl);
	if (rc)
		goto err;
	atomic_store(&cl->dead, false);
	atomic_store(&cl->inflight, 0);
	atomic_store(&cl->resetting, false);
	atomic_store(&cl->discarded, 0);
	cl->reset_ack = cl->reset_val = 0;	/* both words are 0 at attach */
	cl->sock = sock;

	/* the ivshmem server messages, in the spec's order */
	rc = ivshm_send(sock, IVSHM_PROTOCOL_VERSION, -1);
	if (!rc)
		rc = ivshm_send(sock, cl->slot + 1, -1);
	if (!rc)
		rc = ivshm_send(sock, -1, cl->shm_fd);
	for (v = 0; !rc && v < d->nvec; v++)	/* peer "daemon": doorbells */
		rc = ivshm_send(sock, CSD_DEVIF_DAEMON_PEER, cl->db_fd[v]);
	for (v = 0; !rc && v < d->nvec; v++)	/* own vectors: interrupts */
		rc = ivshm_send(sock, cl->slot + 1, cl->irq_fd[v]);
	if (rc)
		goto err;
	cl->active = true;
	logmsg(d, DEVIF_LOG_INFO, "client %u connected (%u vectors)\n",
	       cl->slot + 1, d->nvec);
	return 0;

err:
	logmsg(d, DEVIF_LOG_ERR, "client setup failed: %s\n", strerror(-rc));
	client_unmap(d, cl);
	for (v = 0; v < d->nvec; v++) {
		close_fd(&cl->db_fd[v]);
		close_fd(&cl->irq_fd[v]);
	}
	cl->sock = -1;
	close(sock);
	return rc;
}

/* Final teardown once nothing of the client is in the firmware. */
static void client_try_reap(struct devif *d, struct devif_client *cl)
{
	uint32_t v;

	if (!cl->active || !atomic_load(&cl->dead) ||
	    atomic_load(&cl->inflight))
		return;
	own_release(d, cl->slot);
	for (v = 0; v < d->nvec; v++)
		close_fd(&cl->irq_fd[v]);
	shm_store_release32(&cl->ctl->state, CSD_DEVIF_CLIENT_FREE);
	client_unmap(d, cl);
	cl->active = false;
	logmsg(d, DEVIF_LOG_INFO, "client %u released\n", cl->slot + 1);
}

static void client_detach(struct devif *d, struct devif_client *cl)
{
	uint32_t v;

	atomic_store(&cl->dead, true);
	close_fd(&cl->sock);
	for (v = 0; v < d->nvec; v++)
		close_fd(&cl->db_fd[v]);
	logmsg(d, DEVIF_LOG_INFO, "client %u disconnected\n", cl->slot + 1);
	client_try_reap(d, cl);
}

static void client_sock_event(struct devif *d, struct devif_client *cl)
{
	char buf[256];
	ssize_t n;

	/* clients never send anything: data is drained, EOF is a detach */
	for (;;) {
		n = read(cl->sock, buf, sizeof(buf));
		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		client_detach(d, cl);
		return;
	}
}

/* ---- setup --------------------------------------------------------------- */

/*
 * Every client's memfd: the register page, then its client area (client
 * page, queues, data window) up to the end.
 */
static int layout(struct devif *d, struct csdfw_config *cfg)
{
	const struct devif_opts *o = &d->o;
	uint64_t qbytes, data_pages, pages;

	d->nvec = o->io_queues + 1;
	d->sq_off = 0;
	d->sqx_off = ALIGN_UP((uint64_t)o->depth * sizeof(struct csd_sqe), PAGE);
	d->cq_off = d->sqx_off +
		ALIGN_UP((uint64_t)o->depth * sizeof(struct csd_devif_sqx), PAGE);
	d->q_stride = d->cq_off +
		ALIGN_UP((uint64_t)o->depth * sizeof(struct csd_cqe), PAGE);
	d->q_off = PAGE;
	qbytes = d->q_off + d->nvec * d->q_stride;
	d->area_size = o->shm_size - PAGE;
	d->win_off = qbytes;
	if (d->area_size < qbytes + (128u << 10)) {
		logmsg(d, DEVIF_LOG_ERR, "shm size %" PRIu64
		       " too small for %u queues of %u entries\n",
		       o->shm_size, d->nvec, o->depth);
		return -EINVAL;
	}
	d->win_size = d->area_size - qbytes;
	/*
	 * The largest command a client can bounce through its window: its
	 * data pages plus the PRP list pages describing them (511 entries
	 * per chained list page) plus one page of slack.
	 */
	pages = d->win_size / PAGE;
	data_pages = (pages - 3) * 511 / 512;
	if ((uint64_t)cfg->max_xfer > data_pages * PAGE) {
		logmsg(d, DEVIF_LOG_INFO, "max_xfer clamped from %u to %" PRIu64
		       " bytes (data window %" PRIu64 " bytes)\n",
		       cfg->max_xfer, data_pages * PAGE, d->win_size);
		cfg->max_xfer = (uint32_t)(data_pages * PAGE);
	}
	return 0;
}

static int map_dma(struct devif *d)
{
	struct stat st;
	int fd, rc;

	fd = open(d->o.dma_file, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		logmsg(d, DEVIF_LOG_ERR, "--dma-file %s: %s\n", d->o.dma_file,
		       strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		logmsg(d, DEVIF_LOG_ERR, "--dma-file %s: empty or unreadable\n",
		       d->o.dma_file);
		close(fd);
		return -EINVAL;
	}
	d->dma_size = (uint64_t)st.st_size;
	d->dma = mmap(NULL, d->dma_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		      0);
	close(fd);
	if (d->dma == MAP_FAILED) {
		d->dma = NULL;
		rc = -errno;
		logmsg(d, DEVIF_LOG_ERR, "--dma-file mmap: %s\n",
		       strerror(errno));
		return rc;
	}
	return 0;
}

static void clients_init(struct devif *d)
{
	uint32_t i, v;

	for (i = 0; i < d->o.max_clients; i++) {
		struct devif_client *cl = &d->cl[i];

		cl->d = d;
		cl->slot = i;
		cl->sock = -1;
		cl->shm_fd = -1;
		atomic_init(&cl->dead, false);
		atomic_init(&cl->inflight, 0);
		atomic_init(&cl->resetting, false);
		atomic_init(&cl->discarded, 0);
		for (v = 0; v < CSD_DEVIF_MAX_QUEUES; v++) {
			struct dq *q = &cl->q[v];

			cl->db_fd[v] = -1;
			cl->irq_fd[v] = -1;
			q->cl = cl;
			q->qid = (uint16_t)v;
			pthread_mutex_init(&q->cq_lock, NULL);
		}
	}
}

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int devif_create(const struct devif_opts *o, struct csdfw_config *cfg,
		 struct devif **dp)
{
	struct devif *d;
	int rc;

	*dp = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->o = *o;
	d->timer_fd = d->reap_fd = -1;
	atomic_init(&d->quiet_cqes, 0);
	pthread_mutex_init(&d->own_lock, NULL);
	if (!is_pow2(o->shm_size) || o->shm_size < (1u << 20) ||
	    o->shm_size > (1ull << 40) ||
	    o->io_queues < 1 || o->io_queues > CSD_DEVIF_MAX_QUEUES - 1 ||
	    o->depth < CSD_DEVIF_MIN_DEPTH || o->depth > CSD_DEVIF_MAX_DEPTH ||
	    o->max_clients < 1 || o->max_clients > CSD_DEVIF_MAX_CLIENTS ||
	    o->hb_ms < 1 || o->hb_ms > 10000 || o->poll_us > 1000000) {
		logmsg(d, DEVIF_LOG_ERR,
		       "bad options: shm size must be a power of two 1M..1T, "
		       "queues 1..%d, depth %d..%d, clients 1..%d, "
		       "heartbeat 1..10000 ms, poll 0..1000000 us\n",
		       CSD_DEVIF_MAX_QUEUES - 1, CSD_DEVIF_MIN_DEPTH,
		       CSD_DEVIF_MAX_DEPTH, CSD_DEVIF_MAX_CLIENTS);
		rc = -EINVAL;
		goto err;
	}
	rc = layout(d, cfg);
	if (rc)
		goto err;
	d->cl = calloc(o->max_clients, sizeof(*d->cl));
	if (!d->cl) {
		rc = -ENOMEM;
		goto err;
	}
	clients_init(d);
	if (o->dma_file) {
		rc = map_dma(d);
		if (rc)
			goto err;
	}
	d->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	d->reap_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->timer_fd < 0 || d->reap_fd < 0) {
		rc = -errno;
		goto err;
	}
	rc = csdfw_create(cfg, &d->fw);
	if (rc) {
		logmsg(d, DEVIF_LOG_ERR, "firmware: %s\n",
		       strerror(rc < 0 ? -rc : EIO));
		d->fw = NULL;
		rc = rc < 0 ? rc : -EIO;
		goto err;
	}
	d->max_xfer = csdfw_get_config(d->fw)->max_xfer;
	d->max_ctx = csdfw_get_config(d->fw)->max_contexts;
	d->ctx_owner = calloc((size_t)d->max_ctx + 1, sizeof(uint32_t));
	if (!d->ctx_owner) {
		rc = -ENOMEM;
		goto err;
	}
	rc = devif_scan_orphans(d);
	if (rc < 0)
		goto err;
	*dp = d;
	return 0;

err:
	devif_destroy(d);
	return rc;
}

void devif_destroy(struct devif *d)
{
	uint32_t i, v;

	if (!d)
		return;
	for (i = 0; d->cl && i < d->o.max_clients; i++) {
		struct devif_client *cl = &d->cl[i];

		/* clients (and a guest driver) see the shutdown */
		if (cl->regs)
			shm_store_release32(&cl->regs->status,
					    CSD_DEVIF_STS_SHST);
		if (cl->active) {
			atomic_store(&cl->dead, true);
			close_fd(&cl->sock);
			for (v = 0; v < d->nvec; v++)
				close_fd(&cl->db_fd[v]);
		}
	}
	/* waits for the work in flight; its completions see dead clients */
	if (d->fw)
		csdfw_destroy(d->fw);
	for (i = 0; d->cl && i < d->o.max_clients; i++) {
		client_unmap(d, &d->cl[i]);
		for (v = 0; v < CSD_DEVIF_MAX_QUEUES; v++) {
			close_fd(&d->cl[i].irq_fd[v]);
			pthread_mutex_destroy(&d->cl[i].q[v].cq_lock);
		}
	}
	if (d->dma)
		munmap(d->dma, d->dma_size);
	close_fd(&d->timer_fd);
	close_fd(&d->reap_fd);
	pthread_mutex_destroy(&d->own_lock);
	free(d->ctx_owner);
	free(d->cl);
	free(d);
}

/* ---- event loop ----------------------------------------------------------- */

enum { EV_LISTEN, EV_STOP, EV_TIMER, EV_REAP, EV_SOCK, EV_DB };

struct evtag {
	uint8_t kind;
	uint8_t q;
	uint16_t slot;
};

static void heartbeat_tick(struct devif *d)
{
	uint64_t exp;
	uint32_t i;

	if (read(d->timer_fd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
		return;
	d->heartbeat++;
	for (i = 0; i < d->o.max_clients; i++) {
		struct devif_client *cl = &d->cl[i];

		if (!cl->active || atomic_load(&cl->dead))
			continue;
		/* every client's own register page; release: clients pair
		 * it with an acquire load */
		shm_store_release64(&cl->regs->heartbeat, d->heartbeat);
		/* a periodic rescan catches doorbells a client did not ring
		 * (or rang while its CQ was full), and reset requests */
		client_check_reset(cl);
		client_process_all(cl);
	}
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Tell every live client whether we busy-poll its doorbells. */
static void set_db_poll(struct devif *d, uint32_t on)
{
	uint32_t i;

	for (i = 0; i < d->o.max_clients; i++) {
		struct devif_client *cl = &d->cl[i];

		if (cl->active && !atomic_load(&cl->dead))
			__atomic_store_n(&cl->ctl->db_poll, htole32(on),
					 __ATOMIC_RELAXED);
	}
	/* pairs with the client's barrier between its tail store and its
	 * db_poll load: after clearing, a rescan sees every tail a client
	 * published without ringing */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* One pass over every live queue's tail doorbell in memory; the number of
 * commands fetched. */
static uint32_t poll_doorbells(struct devif *d)
{
	uint32_t i, v, n = 0;

	for (i = 0; i < d->o.max_clients; i++) {
		struct devif_client *cl = &d->cl[i];

		if (!cl->active || atomic_load(&cl->dead))
			continue;
		client_check_reset(cl);
		for (v = 0; v < d->nvec; v++) {
			struct dq *q = &cl->q[v];

			if (shm_load_acquire32(&cl->ctl->db[v].sq_tail) !=
			    q->sq_head)
				n += queue_process(q);
		}
	}
	return n;
}

/*
 * After posting CQEs without an interrupt to a client polling on this very
 * CPU (cq_poll = 1 + its CPU, a hint): yield, so that the client -- spinning
 * and yielding itself -- sees them now rather than after our busy-poll
 * window.  An interrupt needs no help (the wake-up preempts us), nor does a
 * poller on another CPU.
 */
static void yield_to_pollers(struct devif *d)
{
	if (atomic_exchange(&d->quiet_cqes, 0))
		sched_yield();
}

/* Spin on the doorbells in memory for up to a slice (or until the busy-poll
 * window since the last command closes); updates *last. */
#define SPIN_SLICE_NS	50000ull

static void spin_doorbells(struct devif *d, uint64_t *last)
{
	uint64_t win = (uint64_t)d->o.poll_us * 1000, t0 = mono_ns(), now;
	unsigned int k = 0;

	for (;;) {
		if (poll_doorbells(d))
			*last = mono_ns();
		yield_to_pollers(d);
		for (k = 0; k < 16; k++)
			cpu_relax();
		now = mono_ns();
		if (now - t0 >= SPIN_SLICE_NS || now - *last >= win)
			return;
	}
}

int devif_run(struct devif *d, int lfd, int stop_fd)
{
	size_t maxfd = 4 + (size_t)d->o.max_clients * (1 + d->nvec);
	uint64_t win = (uint64_t)d->o.poll_us * 1000, last = 0;
	struct itimerspec its = { 0 };
	bool spinning = false;
	struct evtag *tag;
	struct pollfd *pf;
	uint64_t val;
	int rc = 0;

	pf = calloc(maxfd, sizeof(*pf));
	tag = calloc(maxfd, sizeof(*tag));
	if (!pf || !tag) {
		free(pf);
		free(tag);
		return -ENOMEM;
	}
	its.it_interval.tv_sec = d->o.hb_ms / 1000;
	its.it_interval.tv_nsec = (long)(d->o.hb_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	timerfd_settime(d->timer_fd, 0, &its, NULL);

	for (;;) {
		size_t n = 0, k;
		uint32_t i, v;
		int timeout = -1;
		bool worked = false;

		/*
		 * Busy-poll window: for poll_us after the last command, look
		 * at the doorbells in memory instead of sleeping (clients
		 * that see db_poll skip their eventfd kick).  Before
		 * sleeping, clear db_poll and look once more.
		 */
		if (win && mono_ns() - last < win) {
			if (!spinning) {
				set_db_poll(d, 1);
				spinning = true;
			}
			timeout = 0;
		} else if (spinning) {
			set_db_poll(d, 0);
			spinning = false;
			if (poll_doorbells(d)) {
				last = mono_ns();
				continue;
			}
		}
#define ADD(fd_, kind_, slot_, q_) do {					\
		pf[n].fd = (fd_);					\
		pf[n].events = POLLIN;					\
		pf[n].revents = 0;					\
		tag[n].kind = (kind_);					\
		tag[n].slot = (uint16_t)(slot_);			\
		tag[n].q = (uint8_t)(q_);				\
		n++;							\
	} while (0)
		ADD(lfd, EV_LISTEN, 0, 0);
		ADD(stop_fd, EV_STOP, 0, 0);
		ADD(d->timer_fd, EV_TIMER, 0, 0);
		ADD(d->reap_fd, EV_REAP, 0, 0);
		for (i = 0; i < d->o.max_clients; i++) {
			struct devif_client *cl = &d->cl[i];

			if (!cl->active || atomic_load(&cl->dead))
				continue;
			ADD(cl->sock, EV_SOCK, i, 0);
			for (v = 0; v < d->nvec; v++)
				ADD(cl->db_fd[v], EV_DB, i, v);
		}
#undef ADD
		if (poll(pf, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		for (k = 0; k < n; k++) {
			struct devif_client *cl = &d->cl[tag[k].slot];

			if (!pf[k].revents)
				continue;
			switch (tag[k].kind) {
			case EV_LISTEN: {
				int s = ivshm_accept(lfd);

				if (s >= 0 && !client_attach(d, s) && spinning)
					set_db_poll(d, 1);
				break;
			}
			case EV_STOP:
				goto out;
			case EV_TIMER:
				heartbeat_tick(d);
				break;
			case EV_REAP:
				if (eventfd_read(d->reap_fd, &val) < 0)
					break;
				for (i = 0; i < d->o.max_clients; i++) {
					client_try_reap(d, &d->cl[i]);
					client_check_reset(&d->cl[i]);
				}
				break;
			case EV_SOCK:
				if (cl->active && !atomic_load(&cl->dead))
					client_sock_event(d, cl);
				break;
			case EV_DB:
				if (!cl->active || atomic_load(&cl->dead))
					break;
				/* drain the eventfd, then scan the ring */
				if (eventfd_read(cl->db_fd[tag[k].q], &val) < 0 &&
				    errno != EAGAIN)
					break;
				client_check_reset(cl);
				if (queue_process(&cl->q[tag[k].q])) {
					last = mono_ns();
					worked = true;
				}
				break;
			}
		}
		if (worked)
			yield_to_pollers(d);
		if (timeout == 0)
			spin_doorbells(d, &last);
	}
out:
	free(pf);
	free(tag);
	return rc;
}
