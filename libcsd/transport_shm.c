// SPDX-License-Identifier: MIT
/*
 * transport_shm.c - "shm:PATH[,timeout=MS][,poll[=US]]": the csd-fw daemon
 * over the csd device interface (Documentation/device-interface.md).
 *
 * The library connects to the daemon's unix socket as an ordinary ivshmem
 * client (the same protocol QEMU's ivshmem-doorbell speaks), maps the shared
 * memory, and drives its own queue set: NVMe SQ/CQ rings with phase bits,
 * doorbells in shared memory plus an eventfd kick per queue, completions
 * signalled on the client's own eventfd vectors.
 *
 * This transport COPIES: every command's data is bounced through the
 * client's data window (copy in before submission for writes, copy out
 * after completion for reads), described to the daemon with NVMe PRPs
 * (window addresses, bit 63 set).
 *
 * Completion modes.  Interrupt mode (the default): whoever holds the
 * "reaper" role sleeps on the client's eventfd vectors, consumes the CQEs of
 * every queue and calls the completion callbacks.  A thread executing a
 * command synchronously (ops->exec: every csd_exec) takes the role itself
 * when nobody holds it -- leader/follower -- so its own completion wakes it
 * directly, with no hop through another thread; a second synchronous caller
 * meanwhile sleeps on a condition variable (a follower) and is woken by the
 * reaper that runs its completion.  A leader whose command is done gives the
 * role up: to a waiting follower, else to the completion thread if
 * asynchronous commands (ops->submit) are outstanding.  The completion
 * thread reaps only then -- asynchronous commands pending, nobody else
 * holding the role -- and yields the role whenever a synchronous caller
 * waits; otherwise it sleeps on the socket alone, watching for daemon death
 * (and scanning the queues once a period, should a vector be missed).
 * Polled mode (",poll", optionally ",poll=US", default 200 us): a
 * synchronous caller, after submitting, spins on its CQ's phase bits -- no
 * eventfd, no sleep -- for up to US microseconds and runs every completion
 * it finds (its own included, so it returns without a context switch);
 * after the first 2 us each pass yields the CPU, in case the daemon shares
 * it (see spin_wait).  While it spins it sets the queue's cq_poll word (to
 * 1 + its CPU), so the daemon skips the interrupt (and, on the same CPU,
 * yields to it).  A command still outstanding after the window is waited
 * for as in interrupt mode (interrupts on again), so a long command (an
 * attention read waiting for its job) costs at most US of spinning.
 * Asynchronous submissions never spin.  Both modes skip the doorbell
 * eventfd kick while the daemon says it is busy-polling (db_poll).
 *
 * Daemon death (socket EOF, a stalled heartbeat, a shutdown or fatal status),
 * noticed by the completion thread within its 50 ms tick whatever the role,
 * fails every pending command with an INTERNAL error status (-EIO), waking
 * its waiter, and every later submission with -ENOTCONN; so no wait is
 * unbounded although a leader sleeps on the vectors without a timeout of
 * its own (an armed timer per wait costs microseconds in a VM).
 *
 * Controller reset (ops->reset, csd_dev_reset; device interface v1.2):
 * t->resetting is set, then every queue's SQ lock and reap lock is taken
 * once, so no submitter is half-way through an SQE and no reaper through a
 * CQE; from then on shm_send() waits and cq_pop() finds nothing (the daemon
 * zeroes the CQ rings under us).  The request is stored (release) and
 * vector 0 rung; the ack is polled for, bounded by the timeout (none: the
 * device is dead, fail_all()).  After the ack: every queue restarts at
 * index 0 with phase 1, submissions resume, and the commands that were in
 * flight at the request (marked `aborting`) are finished with ABORT_REQ
 * (-ECANCELED; the daemon has discarded them, so may_run stays clear) --
 * after submissions resume, so a completion callback that submits cannot
 * deadlock.  This transport never gives up on a command by itself: the
 * only ABORT_REQs it makes up are a reset's (daemon death is INTERNAL).  Their cids stay in use until then, so the new
 * commands never collide with them.
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "csd/csd_devif.h"
#include "csd_internal.h"

#define PAGE			CSD_DEVIF_PAGE
#define SHM_CONNECT_MS		5000	/* server messages at connect */
#define SHM_DEFAULT_TIMEOUT_MS	3000	/* heartbeat stall => dead */
#define SHM_POLL_MS		50
#define SHM_SPIN_US_DEFAULT	200	/* ",poll" window */
#define SHM_SPIN_PURE_NS	2000	/* of it without yielding */

struct shm_req {
	csd_cpl_fn done;
	void *arg;
	bool used;
	bool copy_out;
	bool waited;			/* a synchronous caller waits for it */
	bool aborting;			/* in flight at a controller reset */
	struct csd_seg seg[CSD_MAX_SEGS];
	unsigned int nseg;
	size_t len;
	uint32_t bpage, npages;		/* bounce allocation, window pages */
};

struct shm_q {
	pthread_mutex_t lock;		/* SQ side, cid table */
	pthread_cond_t cond;		/* a slot became free / dead */
	uint16_t qid;
	struct csd_sqe *sq;
	struct csd_devif_sqx *sqx;
	struct csd_cqe *cq;
	struct csd_devif_qdb *db;
	uint32_t sq_tail;		/* lock */
	uint32_t inflight;		/* lock */
	pthread_mutex_t rlock;		/* CQ side: cq_head, phase */
	uint32_t cq_head;		/* rlock */
	uint16_t phase;			/* rlock */
	atomic_uint spinners;		/* threads polling this CQ */
	struct shm_req *req;		/* [depth], index = cid */
	uint16_t *free_cid;		/* stack */
	uint32_t nfree;
	int db_fd;			/* ring the daemon */
	int irq_fd;			/* our vector */
};

struct shm_tp {
	int sock;
	uint8_t *shm;
	size_t shm_size;
	const struct csd_devif_regs *regs;
	struct csd_devif_client *ctl;
	uint8_t *win;
	uint64_t win_size;
	uint32_t win_pages;
	uint32_t depth, nvec, peer, max_xfer, timeout_ms;
	uint32_t spin_us;		/* polled mode window, 0 = interrupts */
	atomic_uint late;		/* polled: waits done only after yields */
	struct shm_q q[CSD_DEVIF_MAX_QUEUES];
	atomic_uint rr;
	/* bounce allocator: one byte per window page, 1 = used */
	pthread_mutex_t alock;
	pthread_cond_t acond;
	uint8_t *pmap;
	uint32_t hint;
	/* lifetime */
	pthread_t thr;
	bool thr_started;
	int wake_fd;
	atomic_bool stop;
	atomic_bool dead;
	atomic_bool resetting;		/* controller reset: no SQE, no CQE */
	uint32_t caps;			/* register page caps */
	pthread_mutex_t rst_lock;	/* one reset at a time */
	pthread_mutex_t plock;
	pthread_cond_t pcond;
	uint32_t pending;		/* plock: submitted, done not called */
	/* the reaper role (interrupt waits; see "Completion modes") */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;		/* followers: a completion, role free */
	int reaper;			/* wlock: REAP_* */
	pthread_t leader;		/* wlock: the holder, unless REAP_NONE */
	uint32_t nwait;			/* wlock: synchronous callers waiting */
	uint32_t unwaited;		/* wlock: asynchronous commands pending */
	int kick_fd;			/* wakes the leader */
	int epfd;			/* the leader's: vectors + kick_fd */
};

enum { REAP_NONE, REAP_THREAD, REAP_WAITER };

/* A synchronous caller's command (ops->exec). */
struct shm_wait {
	struct shm_tp *t;
	pthread_t tid;
	struct csd_cpl cpl;
	int done;			/* set last (release): cpl is valid */
};

/* ---- shared-memory access --------------------------------------------- */

static inline uint32_t ld_acquire32(const uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline uint32_t ld32(const uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint64_t ld_acquire64(const uint64_t *p)
{
	return le64toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline void st_release32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELEASE);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, unsigned int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ---- connection ---------------------------------------------------------- */

/* One server message: 8-byte LE value and an optional fd.  -ETIMEDOUT,
 * -ECONNRESET (EOF) or -errno. */
static int recv_msg(int sock, int64_t *val, int *fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *cm;
	int64_t le;
	ssize_t n;
	int rc;

	*fd = -1;
	rc = poll(&pfd, 1, SHM_CONNECT_MS);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	iov.iov_base = &le;
	iov.iov_len = sizeof(le);
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	}
	if (n == 0)
		return -ECONNRESET;
	if (n != (ssize_t)sizeof(le) || (msg.msg_flags & MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	*val = (int64_t)le64toh((uint64_t)le);
	return 0;
}

/* Expect a message with value @want carrying an fd. */
static int recv_fd(int sock, int64_t want, int *fd)
{
	int64_t v = -1;
	int rc = recv_msg(sock, &v, fd);

	if (rc)
		return rc;
	if (v != want || *fd < 0) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -EPROTO;
	}
	return 0;
}

/* Validate the register page and locate our client area. */
static int map_layout(struct shm_tp *t)
{
	const struct csd_devif_regs *r = t->regs;
	uint64_t co, cs, qo, qs, so, xo, cqo, wo, ws, area, asize, qend;
	uint32_t nq, slot = t->peer - 1, v;

	if (t->shm_size < sizeof(*r) || ld32(&r->magic) != CSD_DEVIF_MAGIC) {
		csd_debug("shm: bad magic\n");
		return -ENODEV;
	}
	if ((ld32(&r->version) >> 16) != CSD_DEVIF_MAJOR) {
		csd_debug("shm: interface version 0x%08x not supported\n",
			  ld32(&r->version));
		return -EPROTO;
	}
	if (!(ld_acquire32(&r->status) & CSD_DEVIF_STS_RDY))
		return -ENODEV;
	nq = ld32(&r->nr_io_queues);
	t->caps = ld32(&r->caps);
	t->depth = ld32(&r->queue_depth);
	t->nvec = ld32(&r->nr_vectors);
	t->max_xfer = ld32(&r->max_xfer);
	co = le64toh(r->client_off);
	cs = le64toh(r->client_stride);
	qo = le64toh(r->q_off);
	qs = le64toh(r->q_stride);
	so = le64toh(r->sq_off);
	xo = le64toh(r->sqx_off);
	cqo = le64toh(r->cq_off);
	wo = le64toh(r->win_off);
	ws = le64toh(r->win_size);
	if (nq < 1 || nq + 1 > CSD_DEVIF_MAX_QUEUES || t->nvec != nq + 1 ||
	    t->depth < CSD_DEVIF_MIN_DEPTH || t->depth > CSD_DEVIF_MAX_DEPTH ||
	    slot >= ld32(&r->max_clients) || co % PAGE || co < PAGE ||
	    cs % PAGE || wo % PAGE || ws < PAGE || t->max_xfer < PAGE)
		return -EPROTO;
	area = co + (uint64_t)slot * cs;
	if (area > t->shm_size)
		return -EPROTO;
	/* the area ends at the next slot's, or (v1.1: stride 0, one client
	 * per memory) at the end of the memory */
	asize = cs ? cs : t->shm_size - area;
	qend = qo + (uint64_t)t->nvec * qs;
	if (asize < PAGE || asize > t->shm_size - area || qend > wo ||
	    wo > asize || ws > asize - wo || qo < PAGE ||
	    so + (uint64_t)t->depth * 64 > qs ||
	    xo + (uint64_t)t->depth * 8 > qs ||
	    cqo + (uint64_t)t->depth * 16 > qs)
		return -EPROTO;
	t->ctl = (struct csd_devif_client *)(t->shm + area);
	t->win = t->shm + area + wo;
	t->win_size = ws;
	t->win_pages = (uint32_t)(ws / PAGE);
	for (v = 0; v < t->nvec; v++) {
		uint8_t *qb = t->shm + area + qo + v * qs;

		t->q[v].sq = (struct csd_sqe *)(qb + so);
		t->q[v].sqx = (struct csd_devif_sqx *)(qb + xo);
		t->q[v].cq = (struct csd_cqe *)(qb + cqo);
		t->q[v].db = &t->ctl->db[v];
	}
	if (ld_acquire32(&t->ctl->state) != CSD_DEVIF_CLIENT_ACTIVE ||
	    ld32(&t->ctl->peer_id) != t->peer)
		return -EPROTO;
	return 0;
}

static int shm_connect(struct shm_tp *t, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int64_t v = -1;
	uint32_t i;
	struct stat st;
	int fd = -1, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	t->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (t->sock < 0)
		return -errno;
	if (connect(t->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	/* 1. protocol version; EOF here: the daemon has no free slot */
	rc = recv_msg(t->sock, &v, &fd);
	if (rc == -ECONNRESET)
		return -EBUSY;
	if (rc)
		return rc;
	if (fd >= 0)
		close(fd);
	if (v != 0)
		return -EPROTO;
	/* 2. our peer id */
	rc = recv_msg(t->sock, &v, &fd);
	if (rc)
		return rc;
	if (fd >= 0)
		close(fd);
	if (v < 1 || v > 65535)
		return -EPROTO;
	t->peer = (uint32_t)v;
	/* 3. -1 with the shared memory */
	rc = recv_fd(t->sock, -1, &fd);
	if (rc)
		return rc;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)PAGE) {
		close(fd);
		return -EPROTO;
	}
	t->shm_size = (size_t)st.st_size;
	t->shm = mmap(NULL, t->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		      0);
	close(fd);
	if (t->shm == MAP_FAILED) {
		t->shm = NULL;
		return -errno;
	}
	t->regs = (const struct csd_devif_regs *)t->shm;
	rc = map_layout(t);
	if (rc)
		return rc;
	/* 4. the daemon peer's vectors (our doorbells), 5. our own vectors */
	for (i = 0; i < t->nvec; i++) {
		rc = recv_fd(t->sock, CSD_DEVIF_DAEMON_PEER, &t->q[i].db_fd);
		if (rc)
			return rc;
	}
	for (i = 0; i < t->nvec; i++) {
		rc = recv_fd(t->sock, t->peer, &t->q[i].irq_fd);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- bounce allocator ----------------------------------------------------- */

static uint32_t list_pages(uint32_t dpages)
{
	uint32_t e, n = 1;

	if (dpages <= 2)
		return 0;
	for (e = dpages - 1; e > 512; e -= 511)
		n++;
	return n;
}

static bool is_dead(struct shm_tp *t)
{
	return atomic_load(&t->dead);
}

/* First fit over the page map; waits (bounded by daemon death) for space. */
static int bounce_alloc(struct shm_tp *t, uint32_t n, uint32_t *first)
{
	struct timespec ts;
	uint32_t i, run, start, pass;

	if (n > t->win_pages)
		return -E2BIG;
	pthread_mutex_lock(&t->alock);
	for (;;) {
		if (is_dead(t)) {
			pthread_mutex_unlock(&t->alock);
			return -ENOTCONN;
		}
		for (pass = 0; pass < 2; pass++) {
			start = pass ? 0 : t->hint;
			run = 0;
			for (i = start; i < t->win_pages; i++) {
				if (t->pmap[i]) {
					run = 0;
					continue;
				}
				if (++run == n) {
					uint32_t s = i + 1 - n;

					memset(t->pmap + s, 1, n);
					t->hint = i + 1 < t->win_pages ? i + 1 : 0;
					*first = s;
					pthread_mutex_unlock(&t->alock);
					return 0;
				}
			}
		}
		deadline_in(&ts, SHM_POLL_MS * 2);
		pthread_cond_timedwait(&t->acond, &t->alock, &ts);
	}
}

static void bounce_free(struct shm_tp *t, uint32_t first, uint32_t n)
{
	if (!n)
		return;
	pthread_mutex_lock(&t->alock);
	memset(t->pmap + first, 0, n);
	pthread_cond_broadcast(&t->acond);
	pthread_mutex_unlock(&t->alock);
}

/* ---- completion ---------------------------------------------------------- */

static void pending_add(struct shm_tp *t, int d)
{
	pthread_mutex_lock(&t->plock);
	t->pending = (uint32_t)((int)t->pending + d);
	if (!t->pending)
		pthread_cond_broadcast(&t->pcond);
	pthread_mutex_unlock(&t->plock);
}

/* Release a command's slot and resources, then report it.  @aborting:
 * only if the command was in flight at a controller reset (a reset's
 * abort pass; the cid may have completed and been reused since). */
static void req_finish_if(struct shm_tp *t, struct shm_q *q, uint16_t cid,
			  const struct csd_cpl *cpl, bool aborting)
{
	struct shm_req r;
	size_t off;
	unsigned int i;

	pthread_mutex_lock(&q->lock);
	if (cid >= t->depth || !q->req[cid].used ||
	    (aborting && !q->req[cid].aborting)) {
		pthread_mutex_unlock(&q->lock);
		if (!aborting)
			csd_debug("shm: completion for unknown cid %u on "
				  "queue %u\n", cid, q->qid);
		return;
	}
	r = q->req[cid];
	q->req[cid].used = false;
	q->free_cid[q->nfree++] = cid;
	q->inflight--;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);

	if (r.copy_out && !cpl->status && !is_dead(t)) {
		const uint8_t *src = t->win + (size_t)r.bpage * PAGE;

		for (i = 0, off = 0; i < r.nseg; i++) {
			memcpy(r.seg[i].addr, src + off, r.seg[i].len);
			off += r.seg[i].len;
		}
	}
	bounce_free(t, r.bpage, r.npages);
	if (!r.waited) {
		pthread_mutex_lock(&t->wlock);
		t->unwaited--;
		pthread_mutex_unlock(&t->wlock);
	}
	r.done(r.arg, cpl);
	pending_add(t, -1);
}

static void req_finish(struct shm_tp *t, struct shm_q *q, uint16_t cid,
		       const struct csd_cpl *cpl)
{
	req_finish_if(t, q, cid, cpl, false);
}

/* Take the next new CQE of @q, if any (caller holds q->rlock). */
static bool cq_pop(struct shm_tp *t, struct shm_q *q, uint16_t *cid,
		   struct csd_cpl *cpl)
{
	const uint32_t *w = (const uint32_t *)&q->cq[q->cq_head];
	uint32_t w3;
	uint16_t status;

	/* during a controller reset the daemon zeroes the ring: hands off
	 * (shm_reset() restarts cq_head and phase afterwards) */
	if (atomic_load(&t->resetting))
		return false;
	/* acquire: the phase flip publishes the rest of the entry */
	w3 = ld_acquire32(&w[3]);
	status = (uint16_t)(w3 >> 16);
	if ((status & 1) != q->phase)
		return false;
	cpl->dw0 = ld32(&w[0]);
	cpl->dw1 = ld32(&w[1]);
	cpl->status = (uint16_t)(status >> 1);
	cpl->may_run = false;	/* the daemon's word */
	*cid = (uint16_t)(w3 & 0xffff);
	if (++q->cq_head == t->depth) {
		q->cq_head = 0;
		q->phase ^= 1;
	}
	/* release the slot to the daemon before reporting */
	st_release32(&q->db->cq_head, q->cq_head);
	return true;
}

/*
 * Consume the new CQEs of @q; callbacks run without q->rlock held (they may
 * submit again).  @block: wait for the reap lock (completion thread, end of
 * a spin); else give up when another thread is reaping (a spinner).
 */
static void queue_reap(struct shm_tp *t, struct shm_q *q, bool block)
{
	struct csd_cpl cpl;
	uint16_t cid;
	bool got;

	for (;;) {
		if (block)
			pthread_mutex_lock(&q->rlock);
		else if (pthread_mutex_trylock(&q->rlock))
			return;
		got = cq_pop(t, q, &cid, &cpl);
		pthread_mutex_unlock(&q->rlock);
		if (!got)
			return;
		req_finish(t, q, cid, &cpl);
	}
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Polled mode: this thread polls @q's CQ; interrupts off while anyone
 * does.  Called before the command's tail is published.  The value is
 * 1 + our CPU: a daemon on the same CPU yields it after posting to us. */
static void spin_enter(struct shm_q *q)
{
	int cpu;

	if (atomic_fetch_add(&q->spinners, 1) == 0) {
		cpu = sched_getcpu();
		__atomic_store_n(&q->db->cq_poll,
				 htole32(cpu >= 0 ? (uint32_t)cpu + 1 : ~0u),
				 __ATOMIC_RELAXED);
	}
}

static void spin_leave(struct shm_tp *t, struct shm_q *q)
{
	if (atomic_fetch_sub(&q->spinners, 1) != 1)
		return;
	__atomic_store_n(&q->db->cq_poll, 0, __ATOMIC_RELAXED);
	/* pairs with the daemon's barrier between its CQE store and its
	 * cq_poll load: a CQE posted without an interrupt is seen here */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	queue_reap(t, q, true);
}

static bool wait_done(const struct shm_wait *w)
{
	return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

/*
 * Spin on @q's phase bits until @w's command is done, the window closes or
 * the device dies; completions found are run here.  The first
 * SHM_SPIN_PURE_NS spin without yielding (the daemon on another CPU answers
 * within that); after it every pass yields the CPU, in case the daemon
 * shares ours -- spinning would only keep it from running.  While
 * completions keep arriving only after yields (t->late), the pure spin is
 * skipped, re-tried every 32nd wait.
 */
static void spin_wait(struct shm_tp *t, struct shm_q *q,
		      const struct shm_wait *w)
{
	uint64_t t0 = now_ns(), now, pure;
	uint64_t end = t0 + (uint64_t)t->spin_us * 1000;
	unsigned int late = atomic_load(&t->late);
	bool yielded = false;

	pure = late >= 4 && late % 32 ? 0 : SHM_SPIN_PURE_NS;
	for (;;) {
		queue_reap(t, q, false);
		if (wait_done(w) || is_dead(t))
			break;
		cpu_relax();
		now = now_ns();
		if (now - t0 >= pure) {
			sched_yield();
			yielded = true;
		}
		if (now > end)
			break;
	}
	if (wait_done(w))
		atomic_store(&t->late, yielded ? late + 1 : 0);
	spin_leave(t, q);
}

/* The daemon is gone: fail everything pending, refuse everything new. */
static void fail_all(struct shm_tp *t, const char *why)
{
	static const struct csd_cpl cpl = {
		.status = CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INTERNAL) |
			  CSD_STATUS_DNR,
	};
	uint32_t v, cid;

	if (!atomic_exchange(&t->dead, true))
		csd_debug("shm: device dead (%s)\n", why);
	pthread_mutex_lock(&t->alock);
	pthread_cond_broadcast(&t->acond);
	pthread_mutex_unlock(&t->alock);
	for (v = 0; v < t->nvec; v++) {
		struct shm_q *q = &t->q[v];

		for (cid = 0; cid < t->depth; cid++) {
			bool used;

			pthread_mutex_lock(&q->lock);
			used = q->req[cid].used;
			pthread_cond_broadcast(&q->cond);
			pthread_mutex_unlock(&q->lock);
			if (used)
				req_finish(t, q, (uint16_t)cid, &cpl);
		}
	}
	/* every waiter's command is done now (their callbacks woke them
	 * already; once more does no harm) */
	pthread_mutex_lock(&t->wlock);
	pthread_cond_broadcast(&t->wcond);
	pthread_mutex_unlock(&t->wlock);
	eventfd_write(t->kick_fd, 1);
}

/* Empty an eventfd (nonblocking: nothing to read is fine). */
static void drain(int fd)
{
	eventfd_t val;

	eventfd_read(fd, &val);
}

/* A synchronous command was completed by a thread other than its waiter:
 * wake the leader (asleep on the vectors) and the followers. */
static void wake_waiters(struct shm_tp *t)
{
	bool kick;

	pthread_mutex_lock(&t->wlock);
	kick = t->reaper != REAP_NONE &&
	       !pthread_equal(t->leader, pthread_self());
	if (t->nwait)
		pthread_cond_broadcast(&t->wcond);
	pthread_mutex_unlock(&t->wlock);
	if (kick)
		eventfd_write(t->kick_fd, 1);
}

/* Completion callback of ops->exec: runs in the waiter itself (the usual
 * case) or in whichever thread reaped the command. */
static void exec_done(void *arg, const struct csd_cpl *cpl)
{
	struct shm_wait *w = arg;
	struct shm_tp *t = w->t;
	bool self = pthread_equal(w->tid, pthread_self());

	w->cpl = *cpl;
	/* from here on *w may be gone (its thread sees done and returns) */
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	if (!self)
		wake_waiters(t);
}

/*
 * The reaper role held by a synchronous caller: consume the completions of
 * every queue, sleeping on the vectors, until @w's command is done.  The
 * vectors (and kick_fd) sit in t->epfd edge-triggered: every eventfd write
 * queues an event whether or not anyone sleeps, so a CQE posted after a
 * scan always ends the next wait, and nothing needs reading (a counter left
 * non-zero is drained by the completion thread's level-triggered poll when
 * it next reaps).  No timeout of its own: whoever else completes @w --
 * a polling spinner, fail_all() when the completion thread finds the daemon
 * dead -- kicks us through wake_waiters().
 */
static void lead(struct shm_tp *t, const struct shm_wait *w)
{
	struct epoll_event ev[CSD_DEVIF_MAX_QUEUES + 1];
	uint32_t v;
	int n;

	for (;;) {
		for (v = 0; v < t->nvec; v++)
			queue_reap(t, &t->q[v], true);
		if (wait_done(w))
			return;
		/* epoll, not poll: one wait queue, no per-call setup */
		n = epoll_wait(t->epfd, ev, (int)t->nvec + 1, -1);
		if (n < 0 && errno != EINTR) {
			const struct timespec ms = { 0, 1000000L };

			nanosleep(&ms, NULL);	/* no busy loop */
		}
	}
}

/* Wait for @w's command, submitted by this thread: as the leader if nobody
 * reaps, else as a follower; then hand the role on. */
static void exec_wait(struct shm_tp *t, const struct shm_wait *w)
{
	struct timespec ts;
	bool kick = false;

	pthread_mutex_lock(&t->wlock);
	if (t->reaper != REAP_NONE && pthread_equal(t->leader, pthread_self())) {
		/* a completion callback run by the reaper waits for a command
		 * of its own: reap on, nested (on the completion thread this
		 * suspends its daemon watch until the command completes) */
		pthread_mutex_unlock(&t->wlock);
		lead(t, w);
		return;
	}
	t->nwait++;
	while (!wait_done(w)) {
		if (t->reaper == REAP_NONE) {
			t->reaper = REAP_WAITER;
			t->leader = pthread_self();
			pthread_mutex_unlock(&t->wlock);
			lead(t, w);
			pthread_mutex_lock(&t->wlock);
			t->reaper = REAP_NONE;
			break;
		}
		/* timed: belt and braces, every wake-up is signalled */
		deadline_in(&ts, SHM_POLL_MS * 2);
		pthread_cond_timedwait(&t->wcond, &t->wlock, &ts);
	}
	t->nwait--;
	if (t->reaper == REAP_NONE) {
		if (t->nwait)			/* a follower takes over */
			pthread_cond_broadcast(&t->wcond);
		else if (t->unwaited)		/* the completion thread */
			kick = true;
	}
	pthread_mutex_unlock(&t->wlock);
	if (kick)
		eventfd_write(t->wake_fd, 1);
}

/*
 * The completion thread: reaps (sleeping on the vectors) only while
 * asynchronous commands are pending and no synchronous caller waits;
 * otherwise sleeps on the socket and its wake eventfd.  Either way it
 * watches the daemon every SHM_POLL_MS: socket EOF, controller status,
 * heartbeat.
 */
static void *completion_thread(void *arg)
{
	struct shm_tp *t = arg;
	struct pollfd pf[CSD_DEVIF_MAX_QUEUES + 2];
	uint64_t hb, last_hb = ~0ull, last_change = now_ms(), val;
	uint32_t v, nv, st;
	bool reap;
	char buf[64];
	int n, err;

	while (!atomic_load(&t->stop)) {
		if (is_dead(t)) {
			/* nothing left to watch (the socket stays readable at
			 * EOF): sleep until close wakes us */
			pf[0].fd = t->wake_fd;
			pf[0].events = POLLIN;
			if (poll(pf, 1, -1) > 0)
				eventfd_read(t->wake_fd, &val);
			continue;
		}
		pthread_mutex_lock(&t->wlock);
		reap = t->reaper == REAP_NONE && !t->nwait && t->unwaited;
		if (reap) {
			t->reaper = REAP_THREAD;
			t->leader = pthread_self();
		}
		pthread_mutex_unlock(&t->wlock);
		nv = reap ? t->nvec : 0;
		for (v = 0; v < nv; v++) {
			pf[v].fd = t->q[v].irq_fd;
			pf[v].events = POLLIN;
		}
		pf[nv].fd = t->sock;
		pf[nv].events = POLLIN;
		pf[nv + 1].fd = t->wake_fd;
		pf[nv + 1].events = POLLIN;
		n = poll(pf, nv + 2, SHM_POLL_MS);
		err = n < 0 ? errno : 0;
		for (v = 0; n > 0 && v < nv; v++)
			if (pf[v].revents)
				drain(t->q[v].irq_fd);
		if (!reap && n == 0) {
			/* a quiet period: scan every queue once, unless
			 * someone reaps (a missed vector costs one period) */
			pthread_mutex_lock(&t->wlock);
			reap = t->reaper == REAP_NONE && !t->nwait;
			if (reap) {
				t->reaper = REAP_THREAD;
				t->leader = pthread_self();
			}
			pthread_mutex_unlock(&t->wlock);
		}
		if (reap) {
			for (v = 0; v < t->nvec; v++)
				queue_reap(t, &t->q[v], true);
			pthread_mutex_lock(&t->wlock);
			t->reaper = REAP_NONE;
			if (t->nwait)		/* a waiter takes over */
				pthread_cond_broadcast(&t->wcond);
			pthread_mutex_unlock(&t->wlock);
		}
		if (atomic_load(&t->stop))
			break;
		if (n < 0 && err != EINTR) {
			fail_all(t, "poll failed");
			continue;
		}
		if (n > 0 && pf[nv].revents) {
			ssize_t r = read(t->sock, buf, sizeof(buf));

			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				fail_all(t, "socket closed");
				continue;
			}
		}
		if (n > 0 && pf[nv + 1].revents)
			eventfd_read(t->wake_fd, &val);
		st = ld_acquire32(&t->regs->status);
		if (!(st & CSD_DEVIF_STS_RDY) ||
		    (st & (CSD_DEVIF_STS_CFS | CSD_DEVIF_STS_SHST))) {
			fail_all(t, "controller not ready");
			continue;
		}
		hb = ld_acquire64(&t->regs->heartbeat);
		if (hb != last_hb) {
			last_hb = hb;
			last_change = now_ms();
		} else if (now_ms() - last_change > t->timeout_ms) {
			fail_all(t, "heartbeat stalled");
		}
	}
	return NULL;
}

/* ---- ops ----------------------------------------------------------------- */

static void shm_free(struct shm_tp *t)
{
	uint32_t v;

	for (v = 0; v < CSD_DEVIF_MAX_QUEUES; v++) {
		struct shm_q *q = &t->q[v];

		if (q->db_fd >= 0)
			close(q->db_fd);
		if (q->irq_fd >= 0)
			close(q->irq_fd);
		free(q->req);
		free(q->free_cid);
		pthread_mutex_destroy(&q->lock);
		pthread_mutex_destroy(&q->rlock);
		pthread_cond_destroy(&q->cond);
	}
	if (t->shm)
		munmap(t->shm, t->shm_size);
	if (t->sock >= 0)
		close(t->sock);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->kick_fd >= 0)
		close(t->kick_fd);
	if (t->epfd >= 0)
		close(t->epfd);
	free(t->pmap);
	pthread_mutex_destroy(&t->alock);
	pthread_cond_destroy(&t->acond);
	pthread_mutex_destroy(&t->plock);
	pthread_cond_destroy(&t->pcond);
	pthread_mutex_destroy(&t->wlock);
	pthread_cond_destroy(&t->wcond);
	pthread_mutex_destroy(&t->rst_lock);
	free(t);
}

static int parse_opts(struct shm_tp *t, const char *opts, char *path,
		      size_t plen)
{
	const char *comma = strchr(opts, ',');
	size_t n = comma ? (size_t)(comma - opts) : strlen(opts);
	char *end;
	unsigned long v;

	if (!n || n >= plen)
		return -EINVAL;
	memcpy(path, opts, n);
	path[n] = 0;
	t->timeout_ms = SHM_DEFAULT_TIMEOUT_MS;
	while (comma) {
		const char *o = comma + 1;

		comma = strchr(o, ',');
		if (!strncmp(o, "timeout=", 8)) {
			errno = 0;
			v = strtoul(o + 8, &end, 10);
			if (errno || end == o + 8 || (*end && *end != ',') ||
			    v < 100 || v > 600000)
				return -EINVAL;
			t->timeout_ms = (uint32_t)v;
		} else if (!strncmp(o, "poll", 4) &&
			   (o[4] == ',' || !o[4])) {
			t->spin_us = SHM_SPIN_US_DEFAULT;
		} else if (!strncmp(o, "poll=", 5)) {
			errno = 0;
			v = strtoul(o + 5, &end, 10);
			if (errno || end == o + 5 || (*end && *end != ',') ||
			    v < 1 || v > 1000000)
				return -EINVAL;
			t->spin_us = (uint32_t)v;
		} else {
			csd_debug("shm: unknown option \"%s\"\n", o);
			return -EINVAL;
		}
	}
	return 0;
}

static int shm_open_tp(struct csd_dev *dev, const char *opts)
{
	struct shm_tp *t;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint32_t v, i, hb;
	int rc;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->sock = -1;
	t->wake_fd = -1;
	t->kick_fd = -1;
	t->epfd = -1;
	pthread_mutex_init(&t->alock, NULL);
	pthread_cond_init(&t->acond, NULL);
	pthread_mutex_init(&t->plock, NULL);
	pthread_cond_init(&t->pcond, NULL);
	pthread_mutex_init(&t->wlock, NULL);
	pthread_cond_init(&t->wcond, NULL);
	pthread_mutex_init(&t->rst_lock, NULL);
	atomic_init(&t->resetting, false);
	t->reaper = REAP_NONE;
	atomic_init(&t->rr, 0);
	atomic_init(&t->late, 0);
	atomic_init(&t->stop, false);
	atomic_init(&t->dead, false);
	for (v = 0; v < CSD_DEVIF_MAX_QUEUES; v++) {
		t->q[v].db_fd = -1;
		t->q[v].irq_fd = -1;
		t->q[v].qid = (uint16_t)v;
		pthread_mutex_init(&t->q[v].lock, NULL);
		pthread_mutex_init(&t->q[v].rlock, NULL);
		pthread_cond_init(&t->q[v].cond, NULL);
		atomic_init(&t->q[v].spinners, 0);
	}
	rc = parse_opts(t, opts ? opts : "", path, sizeof(path));
	if (rc)
		goto err;
	rc = shm_connect(t, path);
	if (rc) {
		csd_debug("shm: %s: %s\n", path, strerror(-rc));
		goto err;
	}
	hb = ld32(&t->regs->hb_period_ms);
	if (hb && t->timeout_ms < 10 * hb)
		t->timeout_ms = 10 * hb;
	t->pmap = calloc(t->win_pages, 1);
	t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!t->pmap || t->wake_fd < 0 || t->kick_fd < 0 || t->epfd < 0) {
		rc = -ENOMEM;
		goto err;
	}
	for (v = 0; v <= t->nvec; v++) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET,
					  .data.u32 = v };

		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, v < t->nvec ?
			      t->q[v].irq_fd : t->kick_fd, &ev) < 0) {
			rc = -errno;
			goto err;
		}
	}
	for (v = 0; v < t->nvec; v++) {
		struct shm_q *q = &t->q[v];

		q->req = calloc(t->depth, sizeof(*q->req));
		q->free_cid = calloc(t->depth, sizeof(*q->free_cid));
		if (!q->req || !q->free_cid) {
			rc = -ENOMEM;
			goto err;
		}
		for (i = 0; i < t->depth; i++)
			q->free_cid[i] = (uint16_t)(t->depth - 1 - i);
		q->nfree = t->depth;
		q->phase = 1;
	}
	rc = pthread_create(&t->thr, NULL, completion_thread, t);
	if (rc) {
		rc = -rc;
		goto err;
	}
	t->thr_started = true;
	dev->tp = t;
	return 0;
err:
	shm_free(t);
	return rc;
}

static void shm_close_tp(struct csd_dev *dev)
{
	struct shm_tp *t = dev->tp;
	struct timespec ts;

	if (!t)
		return;
	/* wait for commands in flight: bounded, a dead daemon fails them */
	pthread_mutex_lock(&t->plock);
	while (t->pending) {
		deadline_in(&ts, SHM_POLL_MS * 2);
		pthread_cond_timedwait(&t->pcond, &t->plock, &ts);
	}
	pthread_mutex_unlock(&t->plock);
	if (t->thr_started) {
		atomic_store(&t->stop, true);
		eventfd_write(t->wake_fd, 1);
		pthread_join(t->thr, NULL);
	}
	shm_free(t);
	dev->tp = NULL;
}

/* Describe window pages [bpage, bpage + dpages) with PRPs; the PRP list (if
 * any) goes in the pages right after the data. */
static void build_prps(struct shm_tp *t, struct csd_sqe *sqe, uint32_t bpage,
		       uint32_t dpages)
{
	uint64_t base = CSD_DEVIF_ADDR_WINDOW | ((uint64_t)bpage * PAGE);
	uint64_t *lp;
	uint32_t lpage, e, i, left;

	sqe->prp1 = base;
	sqe->prp2 = 0;
	if (dpages == 2)
		sqe->prp2 = base + PAGE;
	if (dpages <= 2)
		return;
	lpage = bpage + dpages;
	sqe->prp2 = CSD_DEVIF_ADDR_WINDOW | ((uint64_t)lpage * PAGE);
	lp = (uint64_t *)(t->win + (size_t)lpage * PAGE);
	left = dpages - 1;
	for (e = 1, i = 0; left; ) {
		if (i == 511 && left > 1) {
			/* last slot of a list page with more to come: chain */
			lpage++;
			lp[i] = htole64(CSD_DEVIF_ADDR_WINDOW |
					((uint64_t)lpage * PAGE));
			lp = (uint64_t *)(t->win + (size_t)lpage * PAGE);
			i = 0;
			continue;
		}
		lp[i++] = htole64(base + (uint64_t)e * PAGE);
		e++;
		left--;
	}
}

/*
 * Send one command.  @waited: the caller (ops->exec) waits for it and reaps
 * itself (polled mode: spins; *@qp is the queue), else the completion thread
 * must reap it and is woken if nobody else will.
 */
static int shm_send(struct shm_tp *t, int admin, const struct csd_sqe *sqe,
		    const struct csd_seg *seg, unsigned int nseg,
		    csd_cpl_fn done, void *arg, bool waited,
		    struct shm_q **qp)
{
	struct csd_sqe s = *sqe;
	struct shm_req *r;
	struct shm_q *q;
	struct timespec ts;
	uint32_t dpages = 0, npages = 0, bpage = 0, slot;
	uint8_t dir = CSD_OPC_XFER(sqe->opcode);
	size_t len = 0, off;
	bool spin = waited && t->spin_us, kick = false;
	uint16_t cid;
	unsigned int i;
	int rc;

	if (nseg > CSD_MAX_SEGS)
		return -EINVAL;
	if (is_dead(t))
		return -ENOTCONN;
	for (i = 0; i < nseg; i++)
		len += seg[i].len;
	if (len > UINT32_MAX)
		return -EINVAL;
	s.prp1 = s.prp2 = 0;
	/* Larger than the device takes: sent without PRPs, the daemon
	 * rejects the length itself (INVALID_FIELD), as any transport. */
	if (len && len <= t->max_xfer) {
		dpages = (uint32_t)((len + PAGE - 1) / PAGE);
		npages = dpages + list_pages(dpages);
		rc = bounce_alloc(t, npages, &bpage);
		if (rc)
			return rc;
		if (dir != CSD_XFER_FROM_DEV) {
			uint8_t *dst = t->win + (size_t)bpage * PAGE;

			for (i = 0, off = 0; i < nseg; i++) {
				memcpy(dst + off, seg[i].addr, seg[i].len);
				off += seg[i].len;
			}
		}
		build_prps(t, &s, bpage, dpages);
	}
	if (admin)
		q = &t->q[0];
	else
		q = &t->q[1 + atomic_fetch_add(&t->rr, 1) % (t->nvec - 1)];

	pthread_mutex_lock(&q->lock);
	/* at most depth - 1 in flight: the daemon never has to hold back a
	 * completion for lack of CQ space; nothing is submitted during a
	 * controller reset (shm_reset broadcasts q->cond at its end) */
	while (!is_dead(t) && (atomic_load(&t->resetting) ||
			       q->inflight >= t->depth - 1)) {
		deadline_in(&ts, SHM_POLL_MS * 2);
		pthread_cond_timedwait(&q->cond, &q->lock, &ts);
	}
	if (is_dead(t)) {
		pthread_mutex_unlock(&q->lock);
		bounce_free(t, bpage, npages);
		return -ENOTCONN;
	}
	cid = q->free_cid[--q->nfree];
	r = &q->req[cid];
	r->done = done;
	r->arg = arg;
	r->used = true;
	r->copy_out = len && dpages && (dir & CSD_XFER_FROM_DEV);
	r->nseg = nseg;
	for (i = 0; i < nseg; i++)
		r->seg[i] = seg[i];
	r->len = len;
	r->bpage = bpage;
	r->npages = npages;
	r->waited = waited;
	r->aborting = false;
	q->inflight++;
	pending_add(t, 1);
	if (!waited) {
		/* before the daemon can complete it (req_finish counts down) */
		pthread_mutex_lock(&t->wlock);
		t->unwaited++;
		kick = t->reaper == REAP_NONE && !t->nwait;
		pthread_mutex_unlock(&t->wlock);
	}
	if (spin)		/* interrupts off before the daemon can look */
		spin_enter(q);

	s.cid = cid;
	slot = q->sq_tail;
	memcpy((void *)&q->sq[slot], &s, sizeof(s));
	__atomic_store_n(&q->sqx[slot].data_len, htole32((uint32_t)len),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&q->sqx[slot].flags, 0, __ATOMIC_RELAXED);
	q->sq_tail = (slot + 1) % t->depth;
	/* release: the SQE, its SQX entry and the bounce data are visible
	 * before the new tail */
	st_release32(&q->db->sq_tail, q->sq_tail);
	pthread_mutex_unlock(&q->lock);
	/*
	 * Kick the daemon's vector for this queue, unless it busy-polls our
	 * doorbells.  The full barrier orders the tail store before the
	 * db_poll load; the daemon clears db_poll, barrier, then rescans the
	 * tails before it sleeps, so a skipped kick is never lost.
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!ld32(&t->ctl->db_poll) && eventfd_write(q->db_fd, 1) < 0)
		csd_debug("shm: doorbell write: %s\n", strerror(errno));
	if (kick)		/* nobody reaps: the completion thread must */
		eventfd_write(t->wake_fd, 1);
	*qp = q;
	return 0;
}

static int shm_submit(struct csd_dev *dev, int admin, const struct csd_sqe *sqe,
		      const struct csd_seg *seg, unsigned int nseg,
		      csd_cpl_fn done, void *arg)
{
	struct shm_q *q;

	return shm_send(dev->tp, admin, sqe, seg, nseg, done, arg, false, &q);
}

/* Synchronous execution: this thread reaps its own completion (polled
 * mode: spins first), see "Completion modes". */
static int shm_exec(struct csd_dev *dev, int admin, const struct csd_sqe *sqe,
		    const struct csd_seg *seg, unsigned int nseg,
		    struct csd_cpl *cpl)
{
	struct shm_tp *t = dev->tp;
	struct shm_wait w = { .t = t, .tid = pthread_self() };
	struct shm_q *q;
	int rc;

	rc = shm_send(t, admin, sqe, seg, nseg, exec_done, &w, true, &q);
	if (rc)
		return rc;
	if (t->spin_us)
		spin_wait(t, q, &w);
	if (!wait_done(&w))
		exec_wait(t, &w);
	*cpl = w.cpl;
	return 0;
}

/* ---- controller reset (device interface v1.2) ---------------------------- */

/* Poll (bounded by the timeout and by daemon death) for reset_ack == @req.
 * The daemon signals vector 0 too, but the vectors belong to the reaper. */
static int reset_wait_ack(struct shm_tp *t, uint32_t req)
{
	uint64_t end = now_ms() + t->timeout_ms;
	struct timespec ts = { 0, 20000L };	/* 20 us, doubling to 1 ms */

	for (;;) {
		/* acquire: pairs with the daemon's release store of the ack,
		 * made after it zeroed the rings and doorbell words */
		if (ld_acquire32(&t->ctl->reset_ack) == req)
			return 0;
		if (is_dead(t))
			return -ENOTCONN;
		if (now_ms() > end)
			return -ETIMEDOUT;
		nanosleep(&ts, NULL);
		if (ts.tv_nsec < 1000000L)
			ts.tv_nsec *= 2;
	}
}

static int shm_reset(struct csd_dev *dev)
{
	static const struct csd_cpl abort_cpl = {
		.status = CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_ABORT_REQ) |
			  CSD_STATUS_DNR,
	};
	struct shm_tp *t = dev->tp;
	uint32_t v, cid, req, n = 0;
	int rc;

	if (!(t->caps & CSD_DEVIF_CAP_RESET))
		return -EOPNOTSUPP;	/* a v1.0/v1.1 daemon */
	pthread_mutex_lock(&t->rst_lock);
	if (is_dead(t)) {
		pthread_mutex_unlock(&t->rst_lock);
		return -ENOTCONN;
	}
	/* quiesce: no submitter is writing an SQE, no reaper reading a CQE
	 * once we have held each lock; later ones see the flag */
	atomic_store(&t->resetting, true);
	for (v = 0; v < t->nvec; v++) {
		pthread_mutex_lock(&t->q[v].lock);
		pthread_mutex_unlock(&t->q[v].lock);
		pthread_mutex_lock(&t->q[v].rlock);
		pthread_mutex_unlock(&t->q[v].rlock);
	}
	req = ld32(&t->ctl->reset_ack) + 1;
	/* release: our last SQ tail and CQ head stores come first */
	st_release32(&t->ctl->reset_req, req);
	if (eventfd_write(t->q[0].db_fd, 1) < 0)
		csd_debug("shm: doorbell write: %s\n", strerror(errno));
	rc = reset_wait_ack(t, req);
	if (rc == -ETIMEDOUT)
		fail_all(t, "no controller reset ack");
	if (rc) {
		/* dead: fail_all() finished every command */
		atomic_store(&t->resetting, false);
		for (v = 0; v < t->nvec; v++) {
			pthread_mutex_lock(&t->q[v].lock);
			pthread_cond_broadcast(&t->q[v].cond);
			pthread_mutex_unlock(&t->q[v].lock);
		}
		pthread_mutex_unlock(&t->rst_lock);
		csd_debug("shm: controller reset: %s\n", strerror(-rc));
		return rc == -ETIMEDOUT ? rc : -ENOTCONN;
	}
	/* the daemon is done with every command we had submitted: mark them,
	 * restart our indices (its rings are zeroed), resume */
	for (v = 0; v < t->nvec; v++) {
		struct shm_q *q = &t->q[v];

		pthread_mutex_lock(&q->lock);
		for (cid = 0; cid < t->depth; cid++) {
			if (q->req[cid].used) {
				q->req[cid].aborting = true;
				n++;
			}
		}
		q->sq_tail = 0;
		pthread_mutex_lock(&q->rlock);
		q->cq_head = 0;
		q->phase = 1;
		pthread_mutex_unlock(&q->rlock);
		pthread_mutex_unlock(&q->lock);
	}
	atomic_store(&t->resetting, false);
	for (v = 0; v < t->nvec; v++) {
		pthread_mutex_lock(&t->q[v].lock);
		pthread_cond_broadcast(&t->q[v].cond);
		pthread_mutex_unlock(&t->q[v].lock);
	}
	/* then finish the old ones: ABORT_REQ, no data copied out */
	for (v = 0; v < t->nvec; v++)
		for (cid = 0; cid < t->depth; cid++)
			req_finish_if(t, &t->q[v], (uint16_t)cid, &abort_cpl,
				      true);
	pthread_mutex_unlock(&t->rst_lock);
	csd_debug("shm: controller reset: %u commands aborted\n", n);
	return 0;
}

const struct csd_transport_ops csd_transport_shm = {
	.name = "shm",
	.open = shm_open_tp,
	.close = shm_close_tp,
	.submit = shm_submit,
	.exec = shm_exec,
	.reset = shm_reset,
};
