// SPDX-License-Identifier: MIT
/*
 * test_devif.c - the csd-fw daemon and libcsd's shm: transport.
 *
 * Each test starts its own daemon ($CSD_FW, set by meson) on a private
 * socket.  A raw ivshmem client (below) plays the hostile client: garbage
 * doorbells, garbage entries, bad PRPs, oversize lengths.  Every wait is
 * bounded; nothing asserts timings.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csd.h"
#include "csd/csd_devif.h"
#include "csd/csd_spec.h"

#include "cu_main.h"
#define DAEMON_DIR_NAME "devif"
#include "daemon_util.h"

/* ---- raw ivshmem client ------------------------------------------------ */

struct rawq {
	struct csd_sqe *sq;
	struct csd_devif_sqx *sqx;
	struct csd_cqe *cq;
	uint32_t tail, head;
	uint16_t phase;
};

struct raw {
	int sock;
	uint8_t *shm;
	size_t size;
	ino_t ino;			/* the memfd's inode */
	struct csd_devif_regs *regs;
	struct csd_devif_client *ctl;
	uint8_t *win;
	uint64_t win_size;
	uint32_t peer, depth, nvec;
	int db[CSD_DEVIF_MAX_QUEUES], irq[CSD_DEVIF_MAX_QUEUES];
	struct rawq q[CSD_DEVIF_MAX_QUEUES];
};

static int raw_recv(int sock, int64_t *v, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct pollfd pfd = { .fd = sock, .events = POLLIN };
	struct iovec iov = { .iov_base = v, .iov_len = 8 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;

	*fd = -1;
	if (poll(&pfd, 1, WAIT_MS) != 1)
		return -1;
	if (recvmsg(sock, &m, MSG_WAITALL) != 8)
		return -1;
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	*v = (int64_t)le64toh((uint64_t)*v);
	return 0;
}

/* Report where a raw connect failed (diagnostics only). */
static int fail_at(int where)
{
	fprintf(stderr, "raw_connect: failed at step %d (errno %d)\n", where,
		errno);
	return -1;
}

static int raw_connect(struct raw *r, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t area;
	struct stat st;
	int64_t v;
	uint32_t i;
	int fd;

	memset(r, 0, sizeof(*r));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	r->sock = socket(AF_UNIX, SOCK_STREAM, 0);
	if (r->sock < 0 || connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)))
		return fail_at(1);
	if (raw_recv(r->sock, &v, &fd) || v != 0)
		return fail_at(2);
	if (raw_recv(r->sock, &v, &fd) || v < 1)
		return fail_at(3);
	r->peer = (uint32_t)v;
	if (raw_recv(r->sock, &v, &fd) || v != -1 || fd < 0 || fstat(fd, &st))
		return fail_at(4);
	r->size = (size_t)st.st_size;
	r->ino = st.st_ino;
	r->shm = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (r->shm == MAP_FAILED)
		return fail_at(5);
	r->regs = (struct csd_devif_regs *)r->shm;
	if (r->regs->magic != CSD_DEVIF_MAGIC)
		return fail_at(6);
	r->depth = r->regs->queue_depth;
	r->nvec = r->regs->nr_vectors;
	area = r->regs->client_off + (uint64_t)(r->peer - 1) *
	       r->regs->client_stride;
	r->ctl = (struct csd_devif_client *)(r->shm + area);
	r->win = r->shm + area + r->regs->win_off;
	r->win_size = r->regs->win_size;
	for (i = 0; i < r->nvec; i++) {
		uint8_t *qb = r->shm + area + r->regs->q_off +
			      i * r->regs->q_stride;

		r->q[i].sq = (struct csd_sqe *)(qb + r->regs->sq_off);
		r->q[i].sqx = (struct csd_devif_sqx *)(qb + r->regs->sqx_off);
		r->q[i].cq = (struct csd_cqe *)(qb + r->regs->cq_off);
		r->q[i].phase = 1;
		if (raw_recv(r->sock, &v, &r->db[i]) || v != 0 || r->db[i] < 0)
			return fail_at(7);
	}
	for (i = 0; i < r->nvec; i++)
		if (raw_recv(r->sock, &v, &r->irq[i]) || v != r->peer ||
		    r->irq[i] < 0)
			return fail_at(8);
	return 0;
}

static void raw_close(struct raw *r)
{
	uint32_t i;

	for (i = 0; i < r->nvec; i++) {
		close(r->db[i]);
		close(r->irq[i]);
	}
	if (r->shm && r->shm != MAP_FAILED)
		munmap(r->shm, r->size);
	close(r->sock);
}

static void raw_ring(struct raw *r, uint32_t q, uint32_t tail)
{
	__atomic_store_n(&r->ctl->db[q].sq_tail, tail, __ATOMIC_RELEASE);
	eventfd_write(r->db[q], 1);
}

static void raw_submit(struct raw *r, uint32_t q, const struct csd_sqe *sqe,
		       uint32_t len)
{
	struct rawq *rq = &r->q[q];

	rq->sq[rq->tail] = *sqe;
	rq->sqx[rq->tail].data_len = len;
	rq->sqx[rq->tail].flags = 0;
	rq->tail = (rq->tail + 1) % r->depth;
	raw_ring(r, q, rq->tail);
}

/* Next CQE of queue @q; 0 or -1 on timeout. */
static int raw_wait(struct raw *r, uint32_t q, struct csd_cqe *out)
{
	struct rawq *rq = &r->q[q];
	struct pollfd pfd = { .fd = r->irq[q], .events = POLLIN };
	uint64_t v;
	int i;

	for (i = 0; i < WAIT_MS / 10; i++) {
		struct csd_cqe *e = &rq->cq[rq->head];
		uint16_t st = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);

		if ((st & 1) == rq->phase) {
			*out = *e;
			if (++rq->head == r->depth) {
				rq->head = 0;
				rq->phase ^= 1;
			}
			__atomic_store_n(&r->ctl->db[q].cq_head, rq->head,
					 __ATOMIC_RELEASE);
			return 0;
		}
		if (poll(&pfd, 1, 10) == 1)
			eventfd_read(r->irq[q], &v);
	}
	return -1;
}

/* Identify Controller into window offset 0; returns the status field or
 * -1 on timeout. */
static int raw_identify(struct raw *r, uint64_t prp1, uint32_t len)
{
	struct csd_sqe s = { .opcode = CSD_ADM_IDENTIFY, .cid = 7,
			     .cdw10 = CSD_ID_CNS_CTRL, .prp1 = prp1 };
	struct csd_cqe c;

	raw_submit(r, 0, &s, len);
	if (raw_wait(r, 0, &c))
		return -1;
	CU_ASSERT_EQUAL(c.cid, 7);
	CU_ASSERT_EQUAL(c.sq_id, 0);
	return c.status >> 1;
}

#define W(off)		(CSD_DEVIF_ADDR_WINDOW | (uint64_t)(off))
#define ST(sct, sc)	CSD_STATUS(sct, sc)

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---- hostile client ------------------------------------------------------ */

static void test_register_page(void)
{
	struct daemon d;
	struct raw r;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	CU_ASSERT_EQUAL(r.regs->version >> 16, CSD_DEVIF_MAJOR);
	CU_ASSERT(r.regs->status & CSD_DEVIF_STS_RDY);
	CU_ASSERT_EQUAL(r.nvec, r.regs->nr_io_queues + 1);
	CU_ASSERT_EQUAL(r.ctl->state, CSD_DEVIF_CLIENT_ACTIVE);
	CU_ASSERT_EQUAL(r.ctl->peer_id, r.peer);
	CU_ASSERT(r.regs->max_xfer >= 65536);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	CU_ASSERT_EQUAL(((struct csd_id_ctrl *)r.win)->vs.magic, CSD_ID_MAGIC);
	CU_ASSERT_EQUAL(((struct csd_id_ctrl *)r.win)->vs.max_xfer,
			r.regs->max_xfer);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

static void test_hostile_doorbells(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	int i;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	/* SQ tail out of range: ignored, flagged */
	raw_ring(&r, 0, r.depth + 5);
	raw_ring(&r, 1, 0xffffffffu);
	for (i = 0; i < WAIT_MS / 10 && !(r.ctl->error & CSD_DEVIF_ERR_SQ_TAIL);
	     i++)
		sleep_ms(10);
	CU_ASSERT(r.ctl->error & CSD_DEVIF_ERR_SQ_TAIL);
	/* CQ head out of range: flagged; nothing is fetched meanwhile (a
	 * Flush submitted now stays in the SQ), then it runs once the head
	 * is valid again (device-interface.md 3.2) */
	__atomic_store_n(&r.ctl->db[1].cq_head, 99999u, __ATOMIC_RELEASE);
	{
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = 0x55 };

		raw_submit(&r, 1, &s, 0);
	}
	for (i = 0; i < WAIT_MS / 10 && !(r.ctl->error & CSD_DEVIF_ERR_CQ_HEAD);
	     i++)
		sleep_ms(10);
	CU_ASSERT(r.ctl->error & CSD_DEVIF_ERR_CQ_HEAD);
	sleep_ms(50);
	CU_ASSERT_NOT_EQUAL(__atomic_load_n(&r.q[1].cq[r.q[1].head].status,
					    __ATOMIC_ACQUIRE) & 1,
			    r.q[1].phase);
	__atomic_store_n(&r.ctl->db[1].cq_head, r.q[1].head, __ATOMIC_RELEASE);
	raw_ring(&r, 1, r.q[1].tail);
	CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 1, &c), 0);
	CU_ASSERT_EQUAL(c.cid, 0x55);
	CU_ASSERT_EQUAL(c.status >> 1, 0);
	/* still answers */
	raw_ring(&r, 0, 0);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	/* a flush on the I/O queue too */
	{
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = 3 };

		raw_submit(&r, 1, &s, 0);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 1, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
		CU_ASSERT_EQUAL(c.cid, 3);
		CU_ASSERT_EQUAL(c.sq_id, 1);
	}
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

static void test_hostile_entries(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint64_t seed = 42;
	uint32_t q, i, n, round, got;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	for (round = 0; round < 20; round++) {
		q = round % r.nvec;
		n = 1 + (uint32_t)(rng(&seed) % (r.depth - 1));
		for (i = 0; i < n; i++) {
			struct rawq *rq = &r.q[q];
			uint64_t *w = (uint64_t *)&rq->sq[(rq->tail + i) %
							  r.depth];
			unsigned int k;

			for (k = 0; k < 8; k++)
				w[k] = rng(&seed);
			/* now and then a plausible opcode and window PRPs */
			if (i % 3 == 0) {
				struct csd_sqe *s = (struct csd_sqe *)w;

				s->opcode = (uint8_t)(0x80 + rng(&seed) % 16);
				s->prp1 = W(rng(&seed) % (r.win_size + 8192));
				s->prp2 = W(rng(&seed) % (r.win_size + 8192));
			}
			rq->sqx[(rq->tail + i) % r.depth].data_len =
				(uint32_t)rng(&seed) >> (rng(&seed) % 32);
			rq->sqx[(rq->tail + i) % r.depth].flags =
				rng(&seed) % 8 ? 0 : (uint32_t)rng(&seed);
		}
		r.q[q].tail = (r.q[q].tail + n) % r.depth;
		raw_ring(&r, q, r.q[q].tail);
		for (got = 0; got < n; got++) {
			if (raw_wait(&r, q, &c))
				break;
			if (c.status >> 1)	/* every error carries DNR */
				CU_ASSERT((c.status >> 1) & CSD_STATUS_DNR);
		}
		CU_ASSERT_EQUAL(got, n);
	}
	/* alive and correct */
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

static void test_bad_prps(void)
{
	const int sgl = ST(CSD_SCT_GENERIC, CSD_SC_SGL_INVALID) | CSD_STATUS_DNR;
	const int fld = ST(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD) |
			CSD_STATUS_DNR;
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint64_t *list;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	/* outside the window, straddling its end, unaligned, guest RAM
	 * without --dma-file, oversize */
	CU_ASSERT_EQUAL(raw_identify(&r, W(r.win_size), 4096), sgl);
	CU_ASSERT_EQUAL(raw_identify(&r, W(r.win_size - 4096 + 2048), 4096),
			sgl);
	CU_ASSERT_EQUAL(raw_identify(&r, W(2), 4096), sgl);
	CU_ASSERT_EQUAL(raw_identify(&r, 0x1000, 4096), sgl);
	CU_ASSERT_EQUAL(raw_identify(&r, W(~0ull >> 1), 4096), sgl);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 0xffffffffu), fld);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), r.regs->max_xfer + 4), fld);
	/* an offset PRP1 with a bad (unaligned) PRP2 */
	{
		struct csd_sqe s = { .opcode = CSD_ADM_IDENTIFY, .cid = 9,
				     .cdw10 = CSD_ID_CNS_CTRL,
				     .prp1 = W(2048), .prp2 = W(8192 + 8) };

		raw_submit(&r, 0, &s, 4096);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, sgl);
		/* the same with a good PRP2 works (two segments) */
		s.prp2 = W(8192);
		raw_submit(&r, 0, &s, 4096);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
	}
	/* a PRP list with an entry out of range, then unaligned, then a
	 * chain pointer out of range: Get Log Page of 16 KiB */
	list = (uint64_t *)(r.win + 65536);
	{
		uint32_t numd = 16384 / 4 - 1;
		struct csd_sqe s = { .opcode = CSD_ADM_GET_LOG_PAGE, .cid = 11,
				     .nsid = 0xffffffffu,
				     .cdw10 = CSD_LOG_STATS | numd << 16,
				     .prp1 = W(0), .prp2 = W(65536) };

		list[0] = W(4096);
		list[1] = W(r.win_size);	/* out of range */
		list[2] = W(12288);
		raw_submit(&r, 0, &s, 16384);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, sgl);
		list[1] = W(8192 + 16);		/* unaligned */
		raw_submit(&r, 0, &s, 16384);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, sgl);
		list[1] = W(8192);		/* good */
		raw_submit(&r, 0, &s, 16384);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
		s.prp2 = W(r.win_size - 8);	/* list at the window's end */
		raw_submit(&r, 0, &s, 16384);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, sgl);
	}
	/* non-zero SQX flags */
	{
		struct csd_sqe s = { .opcode = CSD_ADM_IDENTIFY, .cid = 5,
				     .cdw10 = CSD_ID_CNS_CTRL, .prp1 = W(0) };
		struct rawq *rq = &r.q[0];

		rq->sq[rq->tail] = s;
		rq->sqx[rq->tail].data_len = 4096;
		rq->sqx[rq->tail].flags = 1;
		rq->tail = (rq->tail + 1) % r.depth;
		raw_ring(&r, 0, rq->tail);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, fld);
		CU_ASSERT(r.ctl->error & CSD_DEVIF_ERR_SQX);
	}
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/*
 * Doorbell values and queue ids a client cannot legitimately produce: a
 * huge eventfd value, doorbell words of queues that do not exist (the
 * client page has room for 17), and NVMe queue-management admin opcodes
 * naming bogus queue ids (queues are fixed here: invalid opcode).
 */
static void test_hostile_queue_ids(void)
{
	const int inval_opc = ST(CSD_SCT_GENERIC, CSD_SC_INVALID_OPCODE) |
			      CSD_STATUS_DNR;
	static const uint8_t qmgmt[] = { 0x00, 0x01, 0x04, 0x05 };
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint32_t v, i;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	CU_ASSERT_FATAL(r.nvec < CSD_DEVIF_MAX_QUEUES);
	/* doorbell words past the last queue: nothing reads them */
	for (v = r.nvec; v < CSD_DEVIF_MAX_QUEUES; v++) {
		__atomic_store_n(&r.ctl->db[v].sq_tail, 5u, __ATOMIC_RELEASE);
		__atomic_store_n(&r.ctl->db[v].cq_head, 7u, __ATOMIC_RELEASE);
	}
	/* the largest value an eventfd takes, on every vector */
	for (v = 0; v < r.nvec; v++)
		eventfd_write(r.db[v], 0xfffffffffffffffeull);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	/* NVMe Delete/Create I/O SQ/CQ with queue ids 0, 1, 99, 0xffff */
	for (i = 0; i < sizeof(qmgmt); i++) {
		struct csd_sqe s = { .opcode = qmgmt[i], .cid = (uint16_t)i,
				     .cdw10 = (uint32_t)(i * 33) | 63u << 16,
				     .cdw11 = 1, .prp1 = W(0) };

		s.cdw10 = (i & 1 ? 0xffffu : 99u) | 63u << 16;
		raw_submit(&r, 0, &s, i & 1 ? 4096 : 0);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 0, &c), 0);
		CU_ASSERT_EQUAL(c.status >> 1, inval_opc);
		CU_ASSERT_EQUAL(c.sq_id, 0);
	}
	CU_ASSERT_EQUAL(r.ctl->error, 0);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* The same CID many times at once: each entry completes on its own, with
 * the CID it carried (the daemon does not track CIDs). */
static void test_reused_cids(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint32_t i, n, ok = 0, heads[CSD_DEVIF_MAX_DEPTH] = { 0 };

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	n = r.depth - 1;
	for (i = 0; i < n; i++) {
		struct rawq *rq = &r.q[1];
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = 42 };

		rq->sq[rq->tail] = s;
		rq->sqx[rq->tail].data_len = 0;
		rq->sqx[rq->tail].flags = 0;
		rq->tail = (rq->tail + 1) % r.depth;
	}
	raw_ring(&r, 1, r.q[1].tail);
	for (i = 0; i < n; i++) {
		if (raw_wait(&r, 1, &c))
			break;
		CU_ASSERT_EQUAL(c.cid, 42);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
		if (c.sq_head < r.depth)
			heads[c.sq_head]++;
		ok++;
	}
	CU_ASSERT_EQUAL(ok, n);
	/* every SQ head position reported exactly once */
	for (i = 0; i < n; i++)
		CU_ASSERT_EQUAL(heads[(i + 1) % r.depth], 1);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* Wait (bounded) until the CQE at @idx of queue @q carries phase @ph,
 * without consuming anything. */
static int raw_peek(struct raw *r, uint32_t q, uint32_t idx, uint16_t ph)
{
	int i;

	for (i = 0; i < WAIT_MS / 5; i++) {
		uint16_t st = __atomic_load_n(&r->q[q].cq[idx].status,
					      __ATOMIC_ACQUIRE);

		if ((st & 1) == ph)
			return 0;
		sleep_ms(5);
	}
	return -1;
}

/*
 * Queue overflow: with its CQ full (nothing consumed) the client keeps
 * writing entries and moves its tail by depth + 3 -- lapping the SQ.  The
 * ring says 3 new entries, so exactly 3 are fetched (the last contents of
 * those slots) once the CQ has room, then a marker command proves nothing
 * else was; the daemon never overwrites an unconsumed CQE.
 */
static void test_queue_overflow(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	struct rawq *rq;
	uint32_t i, n, extra;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	rq = &r.q[1];
	n = r.depth - 1;
	for (i = 0; i < n; i++) {
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = (uint16_t)i };

		raw_submit(&r, 1, &s, 0);
	}
	/* the CQ now fills up: n entries, none consumed */
	CU_ASSERT_EQUAL_FATAL(raw_peek(&r, 1, n - 1, 1), 0);
	/* lap the SQ: depth + 3 more entries, cids 1000 + i */
	extra = r.depth + 3;
	for (i = 0; i < extra; i++) {
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = (uint16_t)(1000 + i) };

		rq->sq[rq->tail] = s;
		rq->sqx[rq->tail].data_len = 0;
		rq->sqx[rq->tail].flags = 0;
		rq->tail = (rq->tail + 1) % r.depth;
	}
	raw_ring(&r, 1, rq->tail);
	/* the unconsumed CQEs are intact: cids 0..n-1 in order */
	for (i = 0; i < n; i++) {
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 1, &c), 0);
		CU_ASSERT_EQUAL(c.cid, i);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
	}
	/* head moved: ring again, the 3 lapped entries come through */
	raw_ring(&r, 1, rq->tail);
	for (i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 1, &c), 0);
		CU_ASSERT_EQUAL(c.cid, 1000 + extra - 3 + i);
	}
	{
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = 0x7777 };

		raw_submit(&r, 1, &s, 0);
		CU_ASSERT_EQUAL_FATAL(raw_wait(&r, 1, &c), 0);
		CU_ASSERT_EQUAL(c.cid, 0x7777);
	}
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* A client that fills its SQ without ever consuming completions: the daemon
 * holds back (never overruns the CQ), then resumes once the head moves. */
static void test_cq_backpressure(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint32_t i, got = 0, n;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	n = r.depth - 1;
	for (i = 0; i < n; i++) {
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = (uint16_t)i };

		raw_submit(&r, 1, &s, 0);
	}
	for (i = 0; i < n; i++) {
		if (raw_wait(&r, 1, &c))
			break;
		CU_ASSERT_EQUAL(c.cid, i);
		CU_ASSERT_EQUAL(c.status >> 1, 0);
		got++;
	}
	CU_ASSERT_EQUAL(got, n);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* ---- shm transport through the public API ------------------------------- */

static const struct csd_ctx_params small_p = {
	.layers = 2, .kv_heads = 2, .q_heads = 4, .head_dim = 64,
	.dtype = CSD_KV_F32, .max_seqs = 4, .max_tokens = 8192,
};

static void test_api_roundtrip(void)
{
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct csd_dev_info info;
	struct csd_ctx *ctx = NULL;
	size_t row = 2 * 64 * 4;
	uint32_t ntok = 6000, i;	/* > 2 MiB per direction: chained lists */
	float *k, *v, *k2, *v2;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &dev), 0);
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, &info), 0);
	CU_ASSERT_STRING_EQUAL(info.transport, "shm");
	k = malloc(ntok * row);
	v = malloc(ntok * row);
	k2 = calloc(ntok, row);
	v2 = calloc(ntok, row);
	CU_ASSERT_FATAL(k && v && k2 && v2);
	for (i = 0; i < ntok * row / 4; i++) {
		k[i] = (float)i * 0.5f;
		v[i] = -(float)i;
	}
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, 0, ntok, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 0, ntok, k2, v2), 0);
	CU_ASSERT(memcmp(k, k2, ntok * row) == 0);
	CU_ASSERT(memcmp(v, v2, ntok * row) == 0);
	/* an unaligned tail */
	memset(k2, 0, row * 3);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 17, 3, k2, v2), 0);
	CU_ASSERT(memcmp(k + 17 * row / 4, k2, 3 * row) == 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);
	free(k);
	free(v);
	free(k2);
	free(v2);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

struct worker {
	struct csd_ctx *ctx;
	uint32_t seq;
	int rc;
	int done;
};

/* Many attention calls in flight from several threads. */
static void *attn_worker(void *arg)
{
	struct worker *w = arg;
	struct csd_attn *ops[8];
	float q[8][4 * 64], out[8][4 * 64];
	struct csd_attn_req req[8];
	uint32_t seqs[8];
	int it, j, rc;

	for (j = 0; j < 8; j++) {
		for (int e = 0; e < 4 * 64; e++)
			q[j][e] = (float)((e + j) % 7) * 0.1f;
		seqs[j] = w->seq;
	}
	for (it = 0; it < 20 && !w->rc; it++) {
		for (j = 0; j < 8; j++) {
			req[j] = (struct csd_attn_req){
				.layer = (uint32_t)(j % 2), .nseq = 1,
				.seqs = &seqs[j], .q = q[j], .out = out[j],
			};
			rc = csd_attn_submit(w->ctx, &req[j], &ops[j]);
			if (rc) {
				w->rc = rc;
				break;
			}
		}
		while (j-- > 0) {
			rc = csd_attn_wait(ops[j], NULL);
			if (rc && !w->rc)
				w->rc = rc;
		}
	}
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_api_threads(void)
{
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	pthread_t th[4];
	struct worker w[4];
	float *kv;
	int i;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &dev), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
	kv = calloc(64, 2 * 64 * 4);
	CU_ASSERT_FATAL(kv != NULL);
	for (i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(csd_kv_append(ctx, (uint32_t)i, 0, 0, 64, kv,
					      kv), 0);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, (uint32_t)i, 1, 0, 64, kv,
					      kv), 0);
	}
	for (i = 0; i < 4; i++) {
		w[i] = (struct worker){ .ctx = ctx, .seq = (uint32_t)i };
		pthread_create(&th[i], NULL, attn_worker, &w[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(w[i].rc, 0);
	}
	free(kv);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/*
 * Synchronous calls (whose caller reaps its own completion, leader/follower)
 * from several threads while other threads keep asynchronous attention
 * reads in flight (reaped by the completion thread or by a leader), in
 * interrupt and polled mode: every call completes with the right data.
 */
#define MIX_TOK	64
#define MIX_ROW	(2 * 64)	/* small_p: kv_heads * head_dim floats */

struct mixer {
	struct csd_ctx *ctx;
	const float *kv;	/* [2 seqs][MIX_TOK][MIX_ROW], K = V */
	const float *ref;	/* attention output for seq 0 */
	const float *q;
	unsigned int seed;
	int async;
	int bad;
};

static void *mix_thread(void *arg)
{
	struct mixer *m = arg;
	float k[MIX_TOK * MIX_ROW], v[MIX_TOK * MIX_ROW];
	float out[8][4 * 64];
	struct csd_attn *ops[8];
	uint32_t seq0 = 0;
	int it, j, rc;

	for (it = 0; it < (m->async ? 25 : 300) && !m->bad; it++) {
		if (!m->async) {
			uint32_t s = (uint32_t)rand_r(&m->seed) % 2;
			uint32_t st = (uint32_t)rand_r(&m->seed) % MIX_TOK;
			uint32_t n = 1 + (uint32_t)rand_r(&m->seed) %
					 (MIX_TOK - st);
			const float *e = m->kv + ((size_t)s * MIX_TOK + st) *
						 MIX_ROW;

			rc = csd_kv_read(m->ctx, s, 0, st, n, k, v);
			if (rc || memcmp(k, e, n * MIX_ROW * 4) ||
			    memcmp(v, e, n * MIX_ROW * 4))
				m->bad++;
			continue;
		}
		for (j = 0; j < 8; j++) {
			struct csd_attn_req req = {
				.layer = 0, .nseq = 1, .seqs = &seq0,
				.q = m->q, .out = out[j],
			};

			if (csd_attn_submit(m->ctx, &req, &ops[j])) {
				m->bad++;
				break;
			}
		}
		while (j-- > 0) {
			if (csd_attn_wait(ops[j], NULL) ||
			    memcmp(out[j], m->ref, sizeof(out[j])))
				m->bad++;
		}
	}
	return NULL;
}

static void test_api_sync_async_mix(void)
{
	static const char *const modes[] = { "", ",poll=20" };
	struct daemon d;
	float *kv, q[4 * 64], ref[4 * 64];
	unsigned int mode;
	size_t i;

	kv = malloc(sizeof(float) * 2 * MIX_TOK * MIX_ROW);
	CU_ASSERT_FATAL(kv != NULL);
	for (i = 0; i < 2 * MIX_TOK * MIX_ROW; i++)
		kv[i] = (float)((i * 2654435761u >> 20) % 1000) * 0.001f;
	for (i = 0; i < 4 * 64; i++)
		q[i] = (float)(i % 5) * 0.1f;
	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	for (mode = 0; mode < 2; mode++) {
		struct csd_attn_req req = {
			.layer = 0, .nseq = 1, .seqs = (uint32_t[]){ 0 },
			.q = q, .out = ref,
		};
		struct csd_dev *dev = NULL;
		struct csd_ctx *ctx = NULL;
		struct mixer m[5];
		pthread_t th[5];
		char spec[200];
		int t;

		snprintf(spec, sizeof(spec), "%s%s", d.spec, modes[mode]);
		CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &dev), 0);
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
		for (i = 0; i < 2; i++)
			CU_ASSERT_EQUAL(csd_kv_append(ctx, (uint32_t)i, 0, 0,
						      MIX_TOK,
						      kv + i * MIX_TOK * MIX_ROW,
						      kv + i * MIX_TOK * MIX_ROW),
					0);
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
		for (t = 0; t < 5; t++) {
			m[t] = (struct mixer){
				.ctx = ctx, .kv = kv, .ref = ref, .q = q,
				.seed = 77u + (unsigned int)t, .async = t >= 3,
			};
			CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL,
							     mix_thread, &m[t]),
					      0);
		}
		for (t = 0; t < 5; t++) {
			pthread_join(th[t], NULL);
			CU_ASSERT_EQUAL(m[t].bad, 0);
		}
		CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
		csd_dev_close(dev);
	}
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
	free(kv);
}

/* ---- daemon death -------------------------------------------------------- */

struct streamer {
	struct csd_dev *dev;
	int last_rc;
	int calls;
	int done;
};

static void *stream_thread(void *arg)
{
	struct streamer *s = arg;
	struct csd_dev_stats st;
	int rc = 0, i;

	for (i = 0; i < 1000000 && !rc; i++)
		rc = csd_dev_get_stats(s->dev, &st);
	s->last_rc = rc;
	s->calls = i;
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Wait (bounded) for a flag set by a thread; 0 when set. */
static int wait_flag(const int *flag)
{
	int i;

	for (i = 0; i < 3 * WAIT_MS / 10; i++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE))
			return 0;
		sleep_ms(10);
	}
	return -1;
}

static void kill_mid_stream(int sig, const char *opts)
{
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct streamer s[2] = { { 0 } };
	pthread_t th[2];
	char spec[200];
	int i, ok = 1;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	snprintf(spec, sizeof(spec), "%s%s", d.spec, opts);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &dev), 0);
	for (i = 0; i < 2; i++) {
		s[i].dev = dev;
		pthread_create(&th[i], NULL, stream_thread, &s[i]);
	}
	sleep_ms(100);
	kill(d.pid, sig);
	for (i = 0; i < 2; i++) {
		if (wait_flag(&s[i].done)) {
			ok = 0;		/* hung: leave the thread, fail */
			continue;
		}
		pthread_join(th[i], NULL);
		CU_ASSERT(s[i].last_rc == -EIO || s[i].last_rc == -ENOTCONN);
	}
	CU_ASSERT_FATAL(ok);
	/* new calls fail at once */
	{
		struct csd_dev_stats st;

		CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &st), -ENOTCONN);
	}
	csd_dev_close(dev);
	if (sig == SIGSTOP)
		kill(d.pid, SIGCONT);
	daemon_stop(&d, SIGKILL);
}

static void test_daemon_killed(void)
{
	kill_mid_stream(SIGKILL, "");
}

static void test_daemon_killed_polled(void)
{
	kill_mid_stream(SIGKILL, ",poll");
}

static void test_daemon_hung(void)
{
	/* a stopped daemon: only the heartbeat tells */
	kill_mid_stream(SIGSTOP, ",timeout=500");
}

static void test_open_errors(void)
{
	struct daemon d;
	struct csd_dev *dev = NULL;

	CU_ASSERT_EQUAL(csd_dev_open("shm:/nonexistent/sock", &dev), -ENOENT);
	CU_ASSERT_EQUAL(csd_dev_open("shm:", &dev), -EINVAL);
	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	{
		char spec[200];

		snprintf(spec, sizeof(spec), "%s,bogus=1", d.spec);
		CU_ASSERT_EQUAL(csd_dev_open(spec, &dev), -EINVAL);
	}
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
	CU_ASSERT_EQUAL(csd_dev_open(d.spec, &dev), -ENOENT);
	CU_ASSERT(dev == NULL);
}

/* ---- multi-client -------------------------------------------------------- */

/* dev_io() without cdw13..15; a status comes back as CSD_STATUS_CODE(). */
static int raw_io(struct csd_dev *dev, uint8_t opc, uint32_t ctx, void *buf,
		  uint32_t len, uint64_t *res)
{
	int rc = dev_io(dev, opc, ctx, 0, 0, 0, buf, len, res);

	return rc > 0 ? CSD_STATUS_CODE(rc) : rc;
}

static void test_isolation(void)
{
	const int inval = ST(CSD_SCT_VENDOR, CSD_VSC_CTX_INVALID);
	struct daemon d;
	struct csd_dev *a = NULL, *b = NULL;
	struct csd_ctx *ca = NULL;
	struct csd_ctx_desc desc = {
		.layers = 1, .kv_heads = 1, .q_heads = 1, .head_dim = 64,
		.dtype = CSD_DTYPE_F32, .max_seqs = 1, .max_tokens = 16,
	};
	uint8_t info[64 + 8];
	uint64_t res = 0;
	uint32_t ida, idraw;
	int i;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &a), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &b), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(a, &small_p, &ca), 0);
	ida = csd_ctx_get_id(ca);
	/* b cannot reach a's context */
	CU_ASSERT_EQUAL(raw_io(b, CSD_IO_CTX_QUERY, ida, info, sizeof(info),
			       NULL), inval);
	CU_ASSERT_EQUAL(raw_io(b, CSD_IO_SEQ_RESET, ida, NULL, 0, NULL), inval);
	CU_ASSERT_EQUAL(raw_io(b, CSD_IO_CTX_DESTROY, ida, NULL, 0, NULL),
			inval);
	/* a still can */
	CU_ASSERT_EQUAL(raw_io(a, CSD_IO_CTX_QUERY, ida, info, sizeof(info),
			       NULL), 0);
	/* a context a creates behind libcsd's back dies with a's connection */
	CU_ASSERT_EQUAL(raw_io(a, CSD_IO_CTX_CREATE, 0, &desc, sizeof(desc),
			       &res), 0);
	idraw = (uint32_t)res;
	CU_ASSERT(idraw >= 1 && idraw != ida);
	CU_ASSERT(ctx_listed(b, idraw));
	CU_ASSERT_EQUAL(raw_io(b, CSD_IO_CTX_DESTROY, idraw, NULL, 0, NULL),
			inval);
	csd_dev_close(a);
	for (i = 0; i < WAIT_MS / 20 && (ctx_listed(b, idraw) ||
					 ctx_listed(b, ida)); i++)
		sleep_ms(20);
	CU_ASSERT(!ctx_listed(b, idraw));
	CU_ASSERT(!ctx_listed(b, ida));
	csd_dev_close(b);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

static void test_client_limit(void)
{
	static const char *const one[] = { "--max-clients", "1", NULL };
	struct daemon d;
	struct csd_dev *a = NULL, *b = NULL;
	int i, rc = -1;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, one), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &a), 0);
	CU_ASSERT_EQUAL(csd_dev_open(d.spec, &b), -EBUSY);
	CU_ASSERT(b == NULL);
	csd_dev_close(a);
	/* the slot frees once the daemon has seen the disconnect */
	for (i = 0; i < WAIT_MS / 20; i++) {
		rc = csd_dev_open(d.spec, &b);
		if (rc != -EBUSY)
			break;
		sleep_ms(20);
	}
	CU_ASSERT_EQUAL(rc, 0);
	csd_dev_close(b);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* ---- per-client shared memory (devif v1.1) ------------------------------ */

/* The mapping of this process named "memfd:csd-fw client <peer>" other than
 * @not (libcsd's own mapping of its memfd); NULL if none. */
static uint8_t *find_client_map(uint32_t peer, const uint8_t *not,
				size_t *len)
{
	char line[512], want[48];
	uint8_t *found = NULL;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return NULL;
	snprintf(want, sizeof(want), "memfd:csd-fw client %u ", peer);
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (!strstr(line, want) ||
		    sscanf(line, "%lx-%lx", &lo, &hi) != 2 ||
		    (uint8_t *)lo == not)
			continue;
		found = (uint8_t *)lo;
		*len = hi - lo;
	}
	fclose(f);
	return found;
}

/*
 * Every client has its own memfd: register page + its own area only.  A
 * writes a distinctive pattern through its data window (a KV append); B and
 * C scan their whole mappings and never find it (a positive control finds
 * it in A's); doorbells one client writes land in its own memory only; a
 * slot reused after a detach starts from zeroed memory.
 */
static void test_memory_isolation(void)
{
	struct daemon d;
	struct csd_dev *a = NULL;
	struct csd_ctx *ctx = NULL;
	struct raw b, c, e;
	const size_t row = 2 * 64 * 4;
	const uint32_t ntok = 64;
	uint8_t *pat, *amap;
	uint64_t seed = 0xc5d;
	size_t alen = 0, i;
	int k;

	pat = malloc(ntok * row);
	if (!pat) {		/* not CU_ASSERT_FATAL: gcc -Wnonnull below */
		CU_FAIL("out of memory");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &a), 0);	/* peer 1 */
	CU_ASSERT_EQUAL_FATAL(raw_connect(&b, d.sock), 0);	/* peer 2 */
	CU_ASSERT_EQUAL_FATAL(raw_connect(&c, d.sock), 0);	/* peer 3 */
	CU_ASSERT_EQUAL(b.peer, 2);
	CU_ASSERT_EQUAL(c.peer, 3);
	/* v1.1 layout: stride 0, the area right after the register page,
	 * the memory is the register page plus one client area */
	CU_ASSERT_EQUAL(b.regs->version, CSD_DEVIF_VERSION);
	CU_ASSERT_EQUAL(b.regs->client_stride, 0);
	CU_ASSERT_EQUAL(b.size, b.regs->shm_size);
	CU_ASSERT_EQUAL((uint8_t *)b.ctl, b.shm + b.regs->client_off);
	CU_ASSERT_EQUAL(b.regs->client_off + b.regs->win_off +
			b.regs->win_size, b.size);
	CU_ASSERT(b.ino != c.ino);
	CU_ASSERT_EQUAL(b.ctl->peer_id, 2);
	CU_ASSERT_EQUAL(c.ctl->peer_id, 3);
	/* the heartbeat runs in every client's register page */
	for (k = 0; k < WAIT_MS / 10 &&
	     (__atomic_load_n(&b.regs->heartbeat, __ATOMIC_ACQUIRE) < 2 ||
	      __atomic_load_n(&c.regs->heartbeat, __ATOMIC_ACQUIRE) < 2); k++)
		sleep_ms(10);
	CU_ASSERT(b.regs->heartbeat >= 2 && c.regs->heartbeat >= 2);

	for (i = 0; i < ntok * row; i += 8) {
		uint64_t x = rng(&seed);

		memcpy(pat + i, &x, 8);
	}
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(a, &small_p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, ntok, pat, pat), 0);
	/* positive control: the pattern is in A's own memory */
	amap = find_client_map(1, NULL, &alen);
	CU_ASSERT_FATAL(amap != NULL);
	CU_ASSERT(memmem(amap, alen, pat, 256) != NULL);
	/* nobody else sees it */
	CU_ASSERT(memmem(b.shm, b.size, pat, 256) == NULL);
	CU_ASSERT(memmem(c.shm, c.size, pat, 256) == NULL);
	/* C's window contents are invisible to B, and the other way round */
	memcpy(c.win + 8192, pat + 1024, 256);
	CU_ASSERT(memmem(b.shm, b.size, pat + 1024, 256) == NULL);
	/* B's doorbell writes stay in B's memory: C's queues are untouched
	 * and keep working */
	__atomic_store_n(&b.ctl->db[1].sq_tail, 3u, __ATOMIC_RELEASE);
	CU_ASSERT_EQUAL(c.ctl->db[1].sq_tail, 0);
	CU_ASSERT_EQUAL(raw_identify(&c, W(0), 4096), 0);
	__atomic_store_n(&b.ctl->db[1].sq_tail, 0u, __ATOMIC_RELEASE);
	CU_ASSERT_EQUAL(raw_identify(&b, W(0), 4096), 0);

	/* A leaves; its slot comes back with new, zeroed memory */
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(a);
	for (k = 0; k < WAIT_MS / 20; k++) {
		if (!raw_connect(&e, d.sock))
			break;
		raw_close(&e);
		e.shm = NULL;
		sleep_ms(20);
	}
	CU_ASSERT_FATAL(e.shm != NULL);
	if (e.peer == 1) {
		CU_ASSERT_EQUAL(e.ctl->generation, 2);
	}
	CU_ASSERT(e.ino != b.ino && e.ino != c.ino);
	CU_ASSERT(memmem(e.shm, e.size, pat, 256) == NULL);
	CU_ASSERT_EQUAL(raw_identify(&e, W(0), 4096), 0);
	raw_close(&e);
	raw_close(&c);
	raw_close(&b);
	free(pat);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* ---- random-SQE storm through the shm transport ------------------------- */

struct stormer {
	struct csd_dev *dev;
	struct csd_ctx *cx;		/* a real context of this device */
	uint32_t seq;			/* its sequence slot this thread uses */
	uint64_t seed;
	uint32_t n;
	uint32_t ctx;			/* its id */
	uint32_t ntok[2];		/* tokens appended per layer */
	uint32_t sent, ok, errs;
	int rc;
};

/* A well-formed command on the thread's own sequence: KV append, read,
 * attention, query, stats. */
static int storm_real(struct stormer *s, uint64_t y)
{
	float kv[8 * 2 * 64], q[4 * 64], out[4 * 64];
	uint32_t layer = (uint32_t)(y >> 8) % 2, n = 1 + (uint32_t)(y >> 12) % 8;
	struct csd_ctx_usage u;
	struct csd_dev_stats st;
	int rc;

	switch (y % 5) {
	case 0:
		if (s->ntok[layer] + n > small_p.max_tokens) {
			rc = csd_seq_reset(s->cx, s->seq);
			s->ntok[0] = s->ntok[1] = 0;
			return rc;
		}
		memset(kv, 0, sizeof(kv));
		kv[0] = (float)y;
		rc = csd_kv_append(s->cx, s->seq, layer, s->ntok[layer], n, kv,
				   kv);
		if (!rc)
			s->ntok[layer] += n;
		return rc;
	case 1:
		if (s->ntok[layer] < n)
			return csd_ctx_query(s->cx, &u, NULL, 0);
		return csd_kv_read(s->cx, s->seq, layer, s->ntok[layer] - n, n,
				   kv, kv);
	case 2: {
		struct csd_attn_req req = {
			.layer = layer, .nseq = 1, .seqs = &s->seq, .q = q,
			.out = out,
		};

		if (!s->ntok[layer])
			return csd_ctx_query(s->cx, &u, NULL, 0);
		memset(q, 0, sizeof(q));
		return csd_attn_run(s->cx, &req, NULL);
	}
	case 3:
		return csd_ctx_query(s->cx, &u, NULL, 0);
	default:
		return csd_dev_get_stats(s->dev, &st);
	}
}

static void *storm_thread(void *arg)
{
	static const uint8_t io_opc[] = {
		CSD_IO_FLUSH, CSD_IO_CTX_CREATE, CSD_IO_CTX_DESTROY,
		CSD_IO_KV_APPEND, CSD_IO_KV_READ, CSD_IO_SEQ_RESET,
		CSD_IO_ATTN_SUBMIT, CSD_IO_CTX_QUERY, CSD_IO_ATTN_READ,
	};
	static const uint8_t adm_opc[] = {
		CSD_ADM_GET_LOG_PAGE, CSD_ADM_IDENTIFY, CSD_ADM_SET_FEATURES,
		CSD_ADM_GET_FEATURES,
	};
	struct stormer *s = arg;
	uint8_t *buf = malloc(65536);
	uint32_t i;

	if (!buf) {
		s->rc = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < 65536; i++)
		buf[i] = (uint8_t)rng(&s->seed);
	for (i = 0; i < s->n && !s->rc; i++) {
		uint64_t x = rng(&s->seed), y = rng(&s->seed);
		int admin = (x & 7) == 0;
		struct csd_passthru pt = { 0 };
		int rc;

		if (admin)
			pt.opcode = adm_opc[(x >> 3) % sizeof(adm_opc)];
		else if ((x >> 3) % 16 == 0)
			pt.opcode = (uint8_t)(x >> 8);	/* anything */
		else
			pt.opcode = io_opc[(x >> 3) % sizeof(io_opc)];
		/* each field: mostly plausible (zero, small), now and then
		 * anything */
		pt.nsid = (x >> 16) % 8 ? (admin ? 0xffffffffu : CSD_NSID) :
			  (uint32_t)y;
		pt.cdw2 = (x >> 20) % 8 ? 0 : (uint32_t)(y >> 3);
		pt.cdw10 = (uint32_t)rng(&s->seed) % 4;
		pt.cdw11 = (x >> 29) % 4 ? 0 : (uint32_t)rng(&s->seed) >>
			   ((x >> 31) % 32);
		/* half of the I/O commands name this thread's context */
		pt.cdw12 = (x >> 36) % 2 ? s->ctx : (uint32_t)rng(&s->seed) %
			   70;
		pt.cdw13 = (x >> 37) % 4 ? (uint32_t)rng(&s->seed) % 8 :
			   (uint32_t)rng(&s->seed) >> ((x >> 39) % 32);
		pt.cdw14 = (x >> 44) % 4 ? (uint32_t)rng(&s->seed) % 8 :
			   (uint32_t)rng(&s->seed) >> ((x >> 46) % 32);
		pt.cdw15 = (x >> 51) % 4 ? (uint32_t)rng(&s->seed) % 16 :
			   (uint32_t)rng(&s->seed);
		if ((y >> 40) % 3) {
			pt.data_len = (uint32_t)(y % ((y >> 20) % 2 ? 65536 :
						      4097)) & ~3u;
			pt.addr = pt.data_len ? buf : NULL;
		}
		if (pt.opcode == CSD_ADM_SET_FEATURES && admin)
			pt.cdw11 = 0;	/* never turn pacing on */
		if (pt.opcode == CSD_IO_CTX_DESTROY && pt.cdw12 == s->ctx)
			pt.cdw12 = 0;	/* keep the real context */
		/* one in four: a real command through the library */
		if ((x >> 55) % 4 == 0) {
			rc = storm_real(s, y);
			s->sent++;
			if (rc == 0)
				s->ok++;
			else if (rc == -EIO || rc == -ENOTCONN)
				s->rc = rc;
			else
				s->errs++;
			continue;
		}
		rc = csd_dev_passthru(s->dev, admin, &pt);
		s->sent++;
		if (rc)
			s->rc = rc;	/* the transport itself failed */
		else if (pt.status) {
			s->errs++;
			if (getenv("CSD_STORM_DEBUG"))
				fprintf(stderr, "opc %02x adm %d len %u "
					"%x %x %x %x %x %x %x st %04x\n",
					pt.opcode, admin, pt.data_len, pt.cdw2,
					pt.cdw10, pt.cdw11, pt.cdw12, pt.cdw13,
					pt.cdw14, pt.cdw15, pt.status);
		}
		else
			s->ok++;
	}
	free(buf);
	return NULL;
}

/*
 * >= 100k random commands (CSD_STORM_N, default 100000) from 4 threads on
 * two connections (interrupt and polled mode); every one completes; the
 * daemon stays up, still answers correctly, and exits cleanly (under the
 * sanitizer build, with ASan+UBSan watching it).
 */
static void test_storm(void)
{
	struct daemon d;
	struct csd_dev *dev[2] = { NULL, NULL };
	struct csd_ctx *ctx[2] = { NULL, NULL };
	struct stormer st[4];
	pthread_t th[4];
	const char *env = getenv("CSD_STORM_N");
	uint32_t total = env ? (uint32_t)strtoul(env, NULL, 0) : 100000;
	uint32_t sent = 0, ok = 0, errs = 0;
	char spec[200];
	int i, status;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &dev[0]), 0);
	snprintf(spec, sizeof(spec), "%s,poll=50", d.spec);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &dev[1]), 0);
	for (i = 0; i < 2; i++)
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev[i], &small_p,
						     &ctx[i]), 0);
	for (i = 0; i < 4; i++) {
		st[i] = (struct stormer){
			.dev = dev[i % 2], .seed = 1000 + (uint64_t)i,
			.n = total / 4 + (i < (int)(total % 4)),
			.cx = ctx[i % 2], .seq = (uint32_t)i / 2,
			.ctx = csd_ctx_get_id(ctx[i % 2]),
		};
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL,
						     storm_thread, &st[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(st[i].rc, 0);
		sent += st[i].sent;
		ok += st[i].ok;
		errs += st[i].errs;
	}
	CU_ASSERT(sent >= total);
	CU_ASSERT_EQUAL(ok + errs, sent);
	CU_ASSERT(ok > 0 && errs > 0);
	fprintf(stderr, "  storm: %u commands, %u ok, %u errors\n", sent, ok,
		errs);
	/* still correct: the real contexts answer */
	for (i = 0; i < 2; i++) {
		struct csd_ctx_usage u;

		CU_ASSERT_EQUAL(csd_ctx_query(ctx[i], &u, NULL, 0), 0);
		csd_ctx_destroy(ctx[i]);
		csd_dev_close(dev[i]);
	}
	status = daemon_stop(&d, SIGTERM);
	CU_ASSERT(status != -1 && WIFEXITED(status) &&
		  WEXITSTATUS(status) == 0);
}


/* ---- controller reset (devif v1.2) --------------------------------------- */

/* A slow drive: pacing on, every flash read takes 0.5 s of modeled time, so
 * a KV_READ or an attention job stays in the firmware that long and every
 * later command waits behind it on the modeled clock. */
static const char *const slow_opts[] = {
	"--device-opts", "pacing=1,read_ns=500000000", "--heartbeat-ms", "20",
	NULL,
};

/*
 * Wait (bounded) until the heartbeat in @regs has advanced by two: the
 * daemon's event loop has then run a whole heartbeat tick -- which rescans
 * every queue -- after this call, so every command published before it has
 * been fetched.  (A reset request seen in the same pass as a doorbell would
 * otherwise stop the fetch: such commands are dropped unexecuted, which is
 * right but not what these tests want to look at.)
 */
static int wait_fetched(const struct csd_devif_regs *regs)
{
	uint64_t h0 = __atomic_load_n(&regs->heartbeat, __ATOMIC_ACQUIRE);
	int i;

	for (i = 0; i < WAIT_MS; i++) {
		if (__atomic_load_n(&regs->heartbeat, __ATOMIC_ACQUIRE) >= h0 + 2)
			return 0;
		sleep_ms(1);
	}
	return -1;
}

#define RKV_TOK		16
#define RKV_ROW		(64 * 4)		/* 1 KV head x 64 x f32 */
#define RKV_LEN		(2 * RKV_TOK * RKV_ROW)	/* K then V: 8 KiB */

/* One command on queue @q and its completion (status field, -1 timeout). */
static int raw_cmd(struct raw *r, uint32_t q, struct csd_sqe *s, uint32_t len,
		   struct csd_cqe *c)
{
	raw_submit(r, q, s, len);
	if (raw_wait(r, q, c))
		return -1;
	CU_ASSERT_EQUAL(c->cid, s->cid);
	return c->status >> 1;
}

/* A one-layer, one-KV-head f32 context of client @r (descriptor at window
 * offset @off); its id, 0 on failure. */
static uint32_t raw_ctx_create(struct raw *r, uint64_t off)
{
	struct csd_ctx_desc *desc = (struct csd_ctx_desc *)(r->win + off);
	struct csd_sqe s = { .opcode = CSD_IO_CTX_CREATE, .nsid = CSD_NSID,
			     .cid = 0x101, .cdw10 = sizeof(*desc) / 4,
			     .prp1 = W(off) };
	struct csd_cqe c;

	memset(desc, 0, sizeof(*desc));
	desc->layers = 1;
	desc->kv_heads = 1;
	desc->q_heads = 1;
	desc->head_dim = 64;
	desc->dtype = CSD_DTYPE_F32;
	desc->max_seqs = 1;
	desc->max_tokens = 64;
	if (raw_cmd(r, 1, &s, sizeof(*desc), &c))
		return 0;
	return c.dw0;
}

/* KV_APPEND / KV_READ of RKV_TOK tokens of sequence 0, layer 0, data at
 * window offset @off (page aligned; two pages). */
static struct csd_sqe raw_kv_sqe(uint8_t opc, uint32_t ctx, uint64_t off,
				 uint16_t cid)
{
	struct csd_sqe s = { .opcode = opc, .nsid = CSD_NSID, .cid = cid,
			     .cdw10 = RKV_LEN / 4, .cdw12 = ctx, .cdw13 = 0,
			     .cdw14 = 0, .cdw15 = RKV_TOK, .prp1 = W(off),
			     .prp2 = W(off + 4096) };

	return s;
}

static void fill_kv(uint8_t *p, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < RKV_LEN / 4; i++) {
		float f = (float)(i * 7 + seed) * 0.25f;

		memcpy(p + 4 * i, &f, 4);
	}
}

/* Request a controller reset (reset_ack + 1, release, ring vector 0);
 * returns the request value. */
static uint32_t raw_reset_request(struct raw *r)
{
	uint32_t req = __atomic_load_n(&r->ctl->reset_ack,
				       __ATOMIC_ACQUIRE) + 1;

	__atomic_store_n(&r->ctl->reset_req, req, __ATOMIC_RELEASE);
	eventfd_write(r->db[0], 1);
	return req;
}

/* Wait (bounded) for reset_ack == @req; 0 or -1.  Vector 0 is left alone
 * (the caller may look at it). */
static int raw_reset_wait(struct raw *r, uint32_t req)
{
	int i;

	for (i = 0; i < WAIT_MS / 2; i++) {
		if (__atomic_load_n(&r->ctl->reset_ack, __ATOMIC_ACQUIRE) ==
		    req)
			return 0;
		sleep_ms(2);
	}
	return -1;
}

/* After a reset: our indices restart too (tail 0, head 0, phase 1). */
static void raw_reset_indices(struct raw *r)
{
	uint32_t v;

	for (v = 0; v < r->nvec; v++) {
		r->q[v].tail = 0;
		r->q[v].head = 0;
		r->q[v].phase = 1;
	}
}

static int all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Every ring and doorbell word of client @r is zero, and its error word. */
static int raw_rings_zero(const struct raw *r)
{
	uint32_t v;
	int ok = r->ctl->error == 0;

	for (v = 0; v < r->nvec; v++) {
		ok &= all_zero(r->q[v].sq, r->depth * sizeof(struct csd_sqe));
		ok &= all_zero(r->q[v].sqx,
			       r->depth * sizeof(struct csd_devif_sqx));
		ok &= all_zero(r->q[v].cq, r->depth * sizeof(struct csd_cqe));
		ok &= r->ctl->db[v].sq_tail == 0 && r->ctl->db[v].cq_head == 0 &&
		      r->ctl->db[v].cq_poll == 0;
	}
	return ok;
}

/*
 * A raw client resets with three commands in the firmware (a KV_READ the
 * paced drive holds for 0.5 s and two Flushes behind it).  The ack comes
 * only once all three have left the firmware -- the daemon logs them as
 * discarded before it acks -- and none of them got a CQE: every ring,
 * doorbell word and the error word are zero.  Vector 0 was signalled.
 * The queues then work from index 0 with phase 1, no stale CQE appears
 * after the first new one, and the context and its data are still there.
 * A second reset with nothing in flight discards nothing.
 */
static void test_reset_raw(void)
{
	struct daemon d;
	struct raw r;
	struct csd_sqe s;
	struct csd_cqe c;
	struct rawq *rq;
	uint64_t val;
	uint32_t ctx, req, i;
	int k;

	CU_ASSERT_EQUAL_FATAL(daemon_start_log(&d, slow_opts, 1), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	CU_ASSERT_EQUAL(r.regs->version, CSD_DEVIF_VERSION);
	CU_ASSERT_EQUAL(CSD_DEVIF_VERSION & 0xffff, 2);
	CU_ASSERT(r.regs->caps & CSD_DEVIF_CAP_RESET);
	CU_ASSERT_EQUAL(r.ctl->reset_req, 0);
	CU_ASSERT_EQUAL(r.ctl->reset_ack, 0);
	ctx = raw_ctx_create(&r, 0);
	CU_ASSERT_FATAL(ctx != 0);
	fill_kv(r.win + 65536, 1);
	s = raw_kv_sqe(CSD_IO_KV_APPEND, ctx, 65536, 0x102);
	CU_ASSERT_EQUAL_FATAL(raw_cmd(&r, 1, &s, RKV_LEN, &c), 0);

	/* a sticky error and a garbage tail, both cleared by the reset */
	raw_ring(&r, 2 % r.nvec, r.depth + 5);
	for (k = 0; k < WAIT_MS / 10 && !(r.ctl->error & CSD_DEVIF_ERR_SQ_TAIL);
	     k++)
		sleep_ms(10);
	CU_ASSERT(r.ctl->error & CSD_DEVIF_ERR_SQ_TAIL);

	/* three commands behind one doorbell: the slow read first */
	rq = &r.q[1];
	memset(r.win + 131072, 0, RKV_LEN);
	s = raw_kv_sqe(CSD_IO_KV_READ, ctx, 131072, 0x200);
	rq->sq[rq->tail] = s;
	rq->sqx[rq->tail].data_len = RKV_LEN;
	rq->sqx[rq->tail].flags = 0;
	rq->tail = (rq->tail + 1) % r.depth;
	for (i = 0; i < 2; i++) {
		struct csd_sqe f = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = (uint16_t)(0x201 + i) };

		rq->sq[rq->tail] = f;
		rq->sqx[rq->tail].data_len = 0;
		rq->sqx[rq->tail].flags = 0;
		rq->tail = (rq->tail + 1) % r.depth;
	}
	while (eventfd_read(r.irq[0], &val) == 0)
		;			/* vector 0 quiet before the request */
	raw_ring(&r, 1, rq->tail);
	CU_ASSERT_EQUAL(wait_fetched(r.regs), 0);
	req = raw_reset_request(&r);
	CU_ASSERT_EQUAL(req, 1);
	CU_ASSERT_EQUAL_FATAL(raw_reset_wait(&r, req), 0);
	/* vector 0 was signalled with the ack */
	{
		struct pollfd pfd = { .fd = r.irq[0], .events = POLLIN };

		CU_ASSERT_EQUAL(poll(&pfd, 1, WAIT_MS), 1);
		CU_ASSERT_EQUAL(eventfd_read(r.irq[0], &val), 0);
	}
	/* the three left the firmware before the ack, without a CQE */
	CU_ASSERT(log_has(&d, "client 1: controller reset (3 commands "
			  "discarded)"));
	CU_ASSERT(raw_rings_zero(&r));
	CU_ASSERT_EQUAL(r.ctl->reset_req, 1);

	/* from index 0, phase 1: pacing off on the admin queue */
	raw_reset_indices(&r);
	{
		struct csd_sqe sf = { .opcode = CSD_ADM_SET_FEATURES,
				      .cid = 0x300,
				      .cdw10 = CSD_FEAT_ID_PACING,
				      .cdw11 = 0 };

		CU_ASSERT_EQUAL(raw_cmd(&r, 0, &sf, 0, &c), 0);
		CU_ASSERT_EQUAL(c.sq_head, 1);
		CU_ASSERT_EQUAL(c.sq_id, 0);
		CU_ASSERT_EQUAL(r.q[0].head, 1);
	}
	/* the context and its data survived */
	memset(r.win + 196608, 0, RKV_LEN);
	s = raw_kv_sqe(CSD_IO_KV_READ, ctx, 196608, 0x301);
	CU_ASSERT_EQUAL(raw_cmd(&r, 1, &s, RKV_LEN, &c), 0);
	CU_ASSERT_EQUAL(c.sq_head, 1);
	CU_ASSERT(memcmp(r.win + 196608, r.win + 65536, RKV_LEN) == 0);
	/* nothing else was posted on queue 1 */
	CU_ASSERT(all_zero(&r.q[1].cq[1],
			   (r.depth - 1) * sizeof(struct csd_cqe)));

	/* again, with nothing in flight */
	req = raw_reset_request(&r);
	CU_ASSERT_EQUAL(req, 2);
	CU_ASSERT_EQUAL_FATAL(raw_reset_wait(&r, req), 0);
	CU_ASSERT(raw_rings_zero(&r));
	CU_ASSERT(log_has(&d, "client 1: controller reset (0 commands "
			  "discarded)"));
	raw_reset_indices(&r);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	CU_ASSERT_EQUAL(r.q[0].head, 1);
	raw_close(&r);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/*
 * A v1.1-style client never touches the reset words: over several
 * heartbeat ticks (each one looks at the request word) and a few ring
 * wraps its commands complete normally, in order, and nothing is reset.
 */
static void test_reset_v11_client(void)
{
	struct daemon d;
	struct raw r;
	struct csd_cqe c;
	uint64_t hb0;
	uint32_t i, n, ok = 0;
	int k;

	CU_ASSERT_EQUAL_FATAL(daemon_start_log(&d, NULL, 1), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&r, d.sock), 0);
	CU_ASSERT_EQUAL(r.regs->version >> 16, CSD_DEVIF_MAJOR);
	hb0 = __atomic_load_n(&r.regs->heartbeat, __ATOMIC_ACQUIRE);
	n = 3 * r.depth + 5;
	for (i = 0; i < n; i++) {
		struct csd_sqe s = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID,
				     .cid = (uint16_t)i };
		uint32_t q = 1 + i % (r.nvec - 1);

		raw_submit(&r, q, &s, 0);
		if (raw_wait(&r, q, &c))
			break;
		if (c.cid == (uint16_t)i && c.status >> 1 == 0 &&
		    c.sq_head == r.q[q].tail)
			ok++;
		if (i % r.depth == 0)	/* let heartbeats pass */
			for (k = 0; k < WAIT_MS / 10 &&
			     __atomic_load_n(&r.regs->heartbeat,
					     __ATOMIC_ACQUIRE) <
			     hb0 + 1 + i / r.depth; k++)
				sleep_ms(10);
	}
	CU_ASSERT_EQUAL(ok, n);
	CU_ASSERT(__atomic_load_n(&r.regs->heartbeat, __ATOMIC_ACQUIRE) >=
		  hb0 + 3);
	CU_ASSERT_EQUAL(r.ctl->reset_req, 0);
	CU_ASSERT_EQUAL(r.ctl->reset_ack, 0);
	CU_ASSERT_EQUAL(r.ctl->error, 0);
	CU_ASSERT_EQUAL(raw_identify(&r, W(0), 4096), 0);
	raw_close(&r);
	CU_ASSERT(!log_has_quiet(&d, "controller reset"));
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/*
 * Client A resets while both A and B have a slow KV_READ in the firmware:
 * A's is discarded, B's completes normally -- CQE, status 0, its data --
 * B's rings and indices are untouched and B goes on from where it was.
 */
static void test_reset_other_client(void)
{
	struct daemon d;
	struct raw a, b;
	struct csd_sqe s;
	struct csd_cqe c;
	uint32_t ca, cb, req, btail;

	CU_ASSERT_EQUAL_FATAL(daemon_start_log(&d, slow_opts, 1), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&a, d.sock), 0);
	CU_ASSERT_EQUAL_FATAL(raw_connect(&b, d.sock), 0);
	CU_ASSERT_EQUAL(a.peer, 1);
	ca = raw_ctx_create(&a, 0);
	cb = raw_ctx_create(&b, 0);
	CU_ASSERT_FATAL(ca && cb);
	fill_kv(a.win + 65536, 3);
	fill_kv(b.win + 65536, 4);
	s = raw_kv_sqe(CSD_IO_KV_APPEND, ca, 65536, 1);
	CU_ASSERT_EQUAL_FATAL(raw_cmd(&a, 1, &s, RKV_LEN, &c), 0);
	s = raw_kv_sqe(CSD_IO_KV_APPEND, cb, 65536, 2);
	CU_ASSERT_EQUAL_FATAL(raw_cmd(&b, 1, &s, RKV_LEN, &c), 0);

	/* both reads in the firmware (0.5 s each, one after the other) */
	memset(b.win + 131072, 0, RKV_LEN);
	s = raw_kv_sqe(CSD_IO_KV_READ, cb, 131072, 0xb0);
	raw_submit(&b, 1, &s, RKV_LEN);
	s = raw_kv_sqe(CSD_IO_KV_READ, ca, 131072, 0xa0);
	raw_submit(&a, 1, &s, RKV_LEN);
	CU_ASSERT_EQUAL(wait_fetched(a.regs), 0);
	req = raw_reset_request(&a);
	CU_ASSERT_EQUAL_FATAL(raw_reset_wait(&a, req), 0);
	CU_ASSERT(log_has(&d, "client 1: controller reset (1 commands "
			  "discarded)"));
	CU_ASSERT(raw_rings_zero(&a));
	/* B: untouched, its read completes as usual */
	btail = b.q[1].tail;
	CU_ASSERT_EQUAL(b.ctl->db[1].sq_tail, btail);
	CU_ASSERT_EQUAL_FATAL(raw_wait(&b, 1, &c), 0);
	CU_ASSERT_EQUAL(c.cid, 0xb0);
	CU_ASSERT_EQUAL(c.status >> 1, 0);
	CU_ASSERT_EQUAL(c.sq_head, btail);
	CU_ASSERT(memcmp(b.win + 131072, b.win + 65536, RKV_LEN) == 0);
	CU_ASSERT_EQUAL(b.ctl->reset_ack, 0);
	CU_ASSERT_EQUAL(raw_identify(&b, W(0), 4096), 0);
	/* A from index 0 reads its own data */
	raw_reset_indices(&a);
	memset(a.win + 131072, 0, RKV_LEN);
	s = raw_kv_sqe(CSD_IO_KV_READ, ca, 131072, 0xa1);
	CU_ASSERT_EQUAL(raw_cmd(&a, 1, &s, RKV_LEN, &c), 0);
	CU_ASSERT(memcmp(a.win + 131072, a.win + 65536, RKV_LEN) == 0);
	raw_close(&a);
	raw_close(&b);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
}

/* ---- csd_dev_reset() through the shm: transport ---------------------------- */

/* Commands published in libcsd's own queues of client @peer (its memfd
 * mapping in this process) since @base: sum over the queues of the SQ tail
 * advance.  -1 if the mapping is not found. */
static int sq_published(uint32_t peer, const uint32_t *base)
{
	const struct csd_devif_regs *regs;
	const struct csd_devif_client *ctl;
	uint32_t v, n = 0;
	size_t len = 0;
	uint8_t *map = find_client_map(peer, NULL, &len);

	if (!map)
		return -1;
	regs = (const struct csd_devif_regs *)map;
	ctl = (const struct csd_devif_client *)(map + regs->client_off);
	for (v = 0; v < regs->nr_vectors; v++)
		n += (__atomic_load_n(&ctl->db[v].sq_tail, __ATOMIC_ACQUIRE) +
		      regs->queue_depth - base[v]) % regs->queue_depth;
	return (int)n;
}

static void sq_snapshot(uint32_t peer, uint32_t *base)
{
	const struct csd_devif_regs *regs;
	const struct csd_devif_client *ctl;
	size_t len = 0;
	uint8_t *map = find_client_map(peer, NULL, &len);
	uint32_t v;

	memset(base, 0, CSD_DEVIF_MAX_QUEUES * sizeof(*base));
	if (!map)
		return;
	regs = (const struct csd_devif_regs *)map;
	ctl = (const struct csd_devif_client *)(map + regs->client_off);
	for (v = 0; v < regs->nr_vectors; v++)
		base[v] = __atomic_load_n(&ctl->db[v].sq_tail,
					  __ATOMIC_ACQUIRE);
}

/* Wait (bounded) until @n commands are published since @base. */
static int wait_published(uint32_t peer, const uint32_t *base, int n)
{
	int i, got = -1;

	for (i = 0; i < WAIT_MS; i++) {
		got = sq_published(peer, base);
		if (got >= n)
			break;
		sleep_ms(1);
	}
	return got;
}

#define RST_N	3	/* attention calls in flight */

struct rst_call {
	struct csd_ctx *ctx;
	struct csd_attn_req req;
	struct csd_attn *op;
	uint32_t seq;
	float q[4 * 64], out[4 * 64];
	float k[MIX_TOK * MIX_ROW], v[MIX_TOK * MIX_ROW];
	int rc;
};

static void *rst_submit(void *arg)
{
	struct rst_call *c = arg;

	c->req = (struct csd_attn_req){
		.layer = 0, .nseq = 1, .seqs = &c->seq, .q = c->q,
		.out = c->out,
	};
	c->rc = csd_attn_submit(c->ctx, &c->req, &c->op);
	return NULL;
}

static void *rst_sync(void *arg)
{
	struct rst_call *c = arg;

	c->rc = csd_kv_read(c->ctx, c->seq, 0, 0, MIX_TOK, c->k, c->v);
	return NULL;
}

/*
 * libcsd: RST_N asynchronous attention calls with their reads parked in the
 * firmware (the paced drive: 0.5 s per job, one after the other) and a
 * synchronous KV read in another thread, then csd_dev_reset(): every one of
 * them ends with -ECANCELED, and afterwards the handle works as before --
 * the context and its data are intact, attention gives the same result.
 *
 * To have all attention jobs queued before any of their reads (so that all
 * reads are still parked at the reset) the daemon is stopped while the
 * submitting threads publish their ATTN_SUBMITs, then continued.
 */
static void test_reset_api(void)
{
	static const char *const opts[] = {
		"--device-opts", "read_ns=500000000", "--heartbeat-ms", "20",
		NULL,
	};
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	struct rst_call *call;
	pthread_t th[RST_N + 1];
	float *kv, ref[RST_N][4 * 64];
	uint32_t base[CSD_DEVIF_MAX_QUEUES];
	char spec[200];
	size_t i;
	int t;

	kv = malloc(sizeof(float) * RST_N * MIX_TOK * MIX_ROW);
	call = calloc(RST_N + 1, sizeof(*call));
	if (!kv || !call) {
		free(kv);
		free(call);
		CU_FAIL("out of memory");
		return;
	}
	for (i = 0; i < RST_N * MIX_TOK * MIX_ROW; i++)
		kv[i] = (float)((i * 2654435761u >> 20) % 1000) * 0.001f;
	CU_ASSERT_EQUAL_FATAL(daemon_start_log(&d, opts, 1), 0);
	/* a generous heartbeat timeout: the daemon is stopped for a while */
	snprintf(spec, sizeof(spec), "%s,timeout=60000", d.spec);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &dev), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
	for (t = 0; t <= RST_N; t++) {
		call[t].ctx = ctx;
		call[t].seq = (uint32_t)(t % RST_N);
		for (i = 0; i < 4 * 64; i++)
			call[t].q[i] = (float)((i + (size_t)t) % 5) * 0.1f;
	}
	for (t = 0; t < RST_N; t++) {
		struct csd_attn_req req = {
			.layer = 0, .nseq = 1, .seqs = &call[t].seq,
			.q = call[t].q, .out = ref[t],
		};
		const float *e = kv + (size_t)t * MIX_TOK * MIX_ROW;

		CU_ASSERT_EQUAL_FATAL(csd_kv_append(ctx, (uint32_t)t, 0, 0,
						    MIX_TOK, e, e), 0);
		CU_ASSERT_EQUAL_FATAL(csd_attn_run(ctx, &req, NULL), 0);
	}
	CU_ASSERT_EQUAL_FATAL(csd_dev_set_pacing(dev, 1), 0);

	/* the ATTN_SUBMITs reach the queues while the daemon is stopped */
	sq_snapshot(1, base);
	CU_ASSERT_EQUAL_FATAL(kill(d.pid, SIGSTOP), 0);
	for (t = 0; t < RST_N; t++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, rst_submit,
						     &call[t]), 0);
	CU_ASSERT_EQUAL(wait_published(1, base, RST_N), RST_N);
	CU_ASSERT_EQUAL_FATAL(kill(d.pid, SIGCONT), 0);
	for (t = 0; t < RST_N; t++) {
		pthread_join(th[t], NULL);
		CU_ASSERT_EQUAL(call[t].rc, 0);
	}
	/* their reads are parked now; a synchronous call joins them */
	CU_ASSERT_EQUAL(sq_published(1, base), 2 * RST_N);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th[RST_N], NULL, rst_sync,
					     &call[RST_N]), 0);
	CU_ASSERT_EQUAL(wait_published(1, base, 2 * RST_N + 1),
			2 * RST_N + 1);
	{
		size_t len = 0;
		const uint8_t *map = find_client_map(1, NULL, &len);

		CU_ASSERT_FATAL(map != NULL);
		CU_ASSERT_EQUAL(wait_fetched((const void *)map), 0);
	}

	CU_ASSERT_EQUAL(csd_dev_reset(dev), 0);
	pthread_join(th[RST_N], NULL);
	CU_ASSERT_EQUAL(call[RST_N].rc, -ECANCELED);
	for (t = 0; t < RST_N; t++) {
		if (!call[t].op)
			continue;
		CU_ASSERT_EQUAL(csd_attn_wait(call[t].op, NULL), -ECANCELED);
	}
	CU_ASSERT(log_has(&d, "client 1: controller reset (4 commands "
			  "discarded)"));

	/* business as usual: data, contexts and results unchanged */
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dev, 0), 0);
	CU_ASSERT(ctx_listed(dev, csd_ctx_get_id(ctx)));
	for (t = 0; t < RST_N; t++) {
		const float *e = kv + (size_t)t * MIX_TOK * MIX_ROW;
		struct csd_attn_req req = {
			.layer = 0, .nseq = 1, .seqs = &call[t].seq,
			.q = call[t].q, .out = call[t].out,
		};

		CU_ASSERT_EQUAL(csd_kv_read(ctx, (uint32_t)t, 0, 0, MIX_TOK,
					    call[t].k, call[t].v), 0);
		CU_ASSERT(memcmp(call[t].k, e, sizeof(call[t].k)) == 0);
		CU_ASSERT(memcmp(call[t].v, e, sizeof(call[t].v)) == 0);
		memset(call[t].out, 0, sizeof(call[t].out));
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
		CU_ASSERT(memcmp(call[t].out, ref[t], sizeof(ref[t])) == 0);
	}
	/* a reset with nothing in flight */
	CU_ASSERT_EQUAL(csd_dev_reset(dev), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, 0, MIX_TOK, call[0].k,
				    call[0].v), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
	free(call);
	free(kv);
}

/* The daemon's register page in this process (libcsd's mapping of client
 * @peer), or NULL. */
static const struct csd_devif_regs *client_regs(uint32_t peer)
{
	size_t len = 0;

	return (const void *)find_client_map(peer, NULL, &len);
}

/* Attention tags on the drive not yet released (CTX_QUERY), -1 on error. */
static int64_t drive_inflight(struct csd_ctx *ctx)
{
	struct csd_ctx_usage u;

	if (csd_ctx_query(ctx, &u, NULL, 0) < 0)
		return -1;
	return u.inflight;
}

/*
 * A drive with ONE attention tag per context: an attention call aborted by
 * a controller reset must give its tag back (command-set.md 3.8: the host
 * reads the tag again -- success or TAG_INVALID both leave it free), so
 * that the next call on the context works without destroying it.
 *
 * 1. the paced ATTN_READ was fetched (parked on its job's modeled end) when
 *    the reset came: the drive completed it (result discarded, tag freed);
 * 2. the ATTN_SUBMIT was fetched and ran, but its completion waited on the
 *    modeled clock behind a slow KV read when the reset came: the drive
 *    holds the job under the tag until a read collects it.
 */
static void test_reset_attn_tag(void)
{
	static const char *const opts[] = {
		"--device-opts", "read_ns=1000000000,tags=1",
		"--heartbeat-ms", "20", NULL,
	};
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	struct csd_attn *op = NULL;
	struct rst_call *call;
	struct csd_attn_req req;
	uint32_t base[CSD_DEVIF_MAX_QUEUES];
	float *kv, ref[4 * 64];
	pthread_t th[2];
	size_t i;

	kv = malloc(sizeof(float) * MIX_TOK * MIX_ROW);
	call = calloc(2, sizeof(*call));
	if (!kv || !call) {
		free(kv);
		free(call);
		CU_FAIL("out of memory");
		return;
	}
	for (i = 0; i < MIX_TOK * MIX_ROW; i++)
		kv[i] = (float)((i * 2654435761u >> 20) % 1000) * 0.001f;
	CU_ASSERT_EQUAL_FATAL(daemon_start_log(&d, opts, 1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(d.spec, &dev), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
	CU_ASSERT_EQUAL_FATAL(csd_kv_append(ctx, 0, 0, 0, MIX_TOK, kv, kv), 0);
	for (i = 0; i < 2; i++) {
		size_t j;

		call[i].ctx = ctx;
		call[i].seq = 0;
		for (j = 0; j < 4 * 64; j++)
			call[i].q[j] = (float)(j % 7) * 0.1f;
	}
	req = (struct csd_attn_req){
		.layer = 0, .nseq = 1, .seqs = &call[0].seq, .q = call[0].q,
		.out = ref,
	};
	CU_ASSERT_EQUAL_FATAL(csd_attn_run(ctx, &req, NULL), 0);
	CU_ASSERT_FATAL(client_regs(1) != NULL);

	/* 1: the read parked on the paced job is aborted */
	CU_ASSERT_EQUAL_FATAL(csd_dev_set_pacing(dev, 1), 0);
	sq_snapshot(1, base);
	req.out = call[0].out;
	CU_ASSERT_EQUAL_FATAL(csd_attn_submit(ctx, &req, &op), 0);
	CU_ASSERT_EQUAL(wait_published(1, base, 2), 2);
	CU_ASSERT_EQUAL(wait_fetched(client_regs(1)), 0);
	CU_ASSERT_EQUAL(csd_dev_reset(dev), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(op, NULL), -ECANCELED);
	CU_ASSERT(log_has(&d, "client 1: controller reset (1 commands "
			  "discarded)"));
	/* the tag is free again, on the drive and in the library */
	CU_ASSERT_EQUAL(drive_inflight(ctx), 0);
	memset(call[0].out, 0, sizeof(call[0].out));
	CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
	CU_ASSERT(memcmp(call[0].out, ref, sizeof(ref)) == 0);

	/* 2: the ATTN_SUBMIT ran, its completion is aborted */
	sq_snapshot(1, base);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th[0], NULL, rst_sync, &call[0]),
			      0);
	CU_ASSERT_EQUAL(wait_published(1, base, 1), 1);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&th[1], NULL, rst_submit,
					     &call[1]), 0);
	CU_ASSERT_EQUAL(wait_published(1, base, 2), 2);
	CU_ASSERT_EQUAL(wait_fetched(client_regs(1)), 0);
	CU_ASSERT_EQUAL(csd_dev_reset(dev), 0);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	CU_ASSERT_EQUAL(call[0].rc, -ECANCELED);
	CU_ASSERT_EQUAL(call[1].rc, -ECANCELED);
	CU_ASSERT(call[1].op == NULL);
	CU_ASSERT(log_has(&d, "client 1: controller reset (2 commands "
			  "discarded)"));
	CU_ASSERT_EQUAL(drive_inflight(ctx), 0);
	/* the sequence is not held by the aborted call either */
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dev, 0), 0);
	memset(call[1].out, 0, sizeof(call[1].out));
	req.out = call[1].out;
	CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
	CU_ASSERT(memcmp(call[1].out, ref, sizeof(ref)) == 0);
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 0), 0);

	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
	free(call);
	free(kv);
}

/*
 * Many threads keep making synchronous calls (polled mode too) while
 * another resets the handle again and again: every call returns 0 or
 * -ECANCELED, data read successfully is right, nothing hangs; a group of
 * two handles resets both members.
 */
struct rst_hammer {
	struct csd_ctx *ctx;
	const float *e;
	int stop;
	unsigned int ok, canceled, bad;
};

static void *rst_hammer_thread(void *arg)
{
	struct rst_hammer *h = arg;
	float k[MIX_TOK * MIX_ROW], v[MIX_TOK * MIX_ROW];
	int rc;

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		rc = csd_kv_read(h->ctx, 0, 0, 0, MIX_TOK, k, v);
		if (rc == 0 && !memcmp(k, h->e, sizeof(k)) &&
		    !memcmp(v, h->e, sizeof(v)))
			h->ok++;
		else if (rc == -ECANCELED)
			h->canceled++;
		else
			h->bad++;
	}
	return NULL;
}

static void test_reset_concurrent(void)
{
	static const char *const modes[] = { "", ",poll=20" };
	struct daemon d;
	float *kv;
	unsigned int mode;
	size_t i;

	kv = malloc(sizeof(float) * MIX_TOK * MIX_ROW);
	CU_ASSERT_FATAL(kv != NULL);
	for (i = 0; i < MIX_TOK * MIX_ROW; i++)
		kv[i] = (float)i;
	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	for (mode = 0; mode < 2; mode++) {
		struct csd_dev *dev = NULL;
		struct csd_ctx *ctx = NULL;
		struct rst_hammer h[3];
		pthread_t th[3];
		char spec[200];
		int t, n;

		snprintf(spec, sizeof(spec), "%s%s", d.spec, modes[mode]);
		CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &dev), 0);
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_p, &ctx), 0);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, MIX_TOK, kv, kv),
				0);
		for (t = 0; t < 3; t++) {
			h[t] = (struct rst_hammer){ .ctx = ctx, .e = kv };
			CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL,
							     rst_hammer_thread,
							     &h[t]), 0);
		}
		for (n = 0; n < 50; n++) {
			CU_ASSERT_EQUAL(csd_dev_reset(dev), 0);
			sleep_ms(2);
		}
		for (t = 0; t < 3; t++) {
			__atomic_store_n(&h[t].stop, 1, __ATOMIC_RELEASE);
			pthread_join(th[t], NULL);
			CU_ASSERT_EQUAL(h[t].bad, 0);
		}
		/* and the handle works as before */
		{
			float k[MIX_TOK * MIX_ROW], v[MIX_TOK * MIX_ROW];

			CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, 0, MIX_TOK, k, v),
					0);
			CU_ASSERT(memcmp(k, kv, sizeof(k)) == 0 &&
				  memcmp(v, kv, sizeof(v)) == 0);
		}
		CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
		csd_dev_close(dev);
	}
	/* a group: every member is reset */
	{
		struct csd_dev *g = NULL;
		char spec[400];

		snprintf(spec, sizeof(spec), "%s,%s", d.spec, d.spec);
		CU_ASSERT_EQUAL_FATAL(csd_dev_open(spec, &g), 0);
		CU_ASSERT_EQUAL(csd_dev_reset(g), 0);
		CU_ASSERT_EQUAL(csd_dev_flush(g), 0);
		csd_dev_close(g);
	}
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), 0);
	free(kv);
}

static CU_TestInfo hostile_tests[] = {
	{ "register_page", test_register_page },
	{ "doorbells", test_hostile_doorbells },
	{ "garbage_entries", test_hostile_entries },
	{ "bad_prps", test_bad_prps },
	{ "cq_backpressure", test_cq_backpressure },
	{ "queue_ids", test_hostile_queue_ids },
	{ "reused_cids", test_reused_cids },
	{ "queue_overflow", test_queue_overflow },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo api_tests[] = {
	{ "open_errors", test_open_errors },
	{ "roundtrip_chained_prps", test_api_roundtrip },
	{ "threads", test_api_threads },
	{ "sync_async_mix", test_api_sync_async_mix },
	CU_TEST_INFO_NULL,
};

/* ---- daemon_util.h itself ------------------------------------------------- */

/*
 * A daemon that exited on its own stays unreaped until its daemon_stop():
 * starting others meanwhile does not reap it, so daemon_stop() gets its
 * real status (not -1 after WAIT_MS and a SIGKILL of a pid that may have
 * been recycled).  One reaped elsewhere (kill_leftovers()) is not signalled
 * again: -1.  More extra arguments than DAEMON_MAX_EXTRA spawn nothing.
 * log_has() searches the whole log, not its first 64 KiB.
 */
static void test_util_daemons(void)
{
	const char *many[DAEMON_MAX_EXTRA + 2];
	struct daemon a, b, c, d;
	siginfo_t si;
	char *fill;
	int i, fd;

	CU_ASSERT_EQUAL_FATAL(daemon_start(&a, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(daemon_start(&b, NULL), 0);
	kill(a.pid, SIGTERM);
	for (i = 0; i < WAIT_MS / 20; i++) {	/* exited, left a zombie */
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)a.pid, &si,
			   WEXITED | WNOHANG | WNOWAIT) == 0 &&
		    si.si_pid == a.pid)
			break;
		sleep_ms(20);
	}
	CU_ASSERT_EQUAL(si.si_pid, a.pid);
	CU_ASSERT_EQUAL(daemon_start(&c, NULL), 0);	/* must not reap a */
	CU_ASSERT_EQUAL(daemon_stop(&a, SIGTERM), 0);
	CU_ASSERT_EQUAL(a.pid, 0);
	CU_ASSERT_EQUAL(daemon_stop(&b, SIGTERM), 0);
	CU_ASSERT_EQUAL(daemon_stop(&c, SIGTERM), 0);
	CU_ASSERT_EQUAL(daemon_stop(&c, SIGTERM), -1);	/* none runs */

	CU_ASSERT_EQUAL_FATAL(daemon_start(&d, NULL), 0);
	kill_leftovers();
	CU_ASSERT_EQUAL(daemon_stop(&d, SIGTERM), -1);

	for (i = 0; i < DAEMON_MAX_EXTRA + 1; i++)
		many[i] = "--foreground";
	many[i] = NULL;
	CU_ASSERT_EQUAL(daemon_start(&d, many), -1);
	CU_ASSERT_EQUAL(d.pid, 0);
	daemon_stop(&d, SIGTERM);

	CU_ASSERT_EQUAL_FATAL(daemon_dir_make(&d, DAEMON_DIR_NAME), 0);
	snprintf(d.log, sizeof(d.log), "%s/log", d.dir);
	fd = open(d.log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	fill = malloc(200000);
	CU_ASSERT_FATAL(fd >= 0 && fill);
	memset(fill, 'x', 200000);
	CU_ASSERT_EQUAL(write(fd, fill, 200000), 200000);
	CU_ASSERT_EQUAL(write(fd, "the end\n", 8), 8);
	close(fd);
	free(fill);
	CU_ASSERT(log_has_quiet(&d, "the end"));
	CU_ASSERT(!log_has_quiet(&d, "not there"));
	daemon_dir_remove(&d);
}

static CU_TestInfo util_tests[] = {
	{ "daemons", test_util_daemons },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo death_tests[] = {
	{ "killed", test_daemon_killed },
	{ "killed_polled", test_daemon_killed_polled },
	{ "hung_heartbeat", test_daemon_hung },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo client_tests[] = {
	{ "isolation", test_isolation },
	{ "limit", test_client_limit },
	{ "memory", test_memory_isolation },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo reset_tests[] = {
	{ "raw", test_reset_raw },
	{ "v11_client", test_reset_v11_client },
	{ "other_client", test_reset_other_client },
	{ "api", test_reset_api },
	{ "attn_tag", test_reset_attn_tag },
	{ "concurrent", test_reset_concurrent },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo storm_tests[] = {
	{ "random_sqes", test_storm },
	CU_TEST_INFO_NULL,
};

static int suite_init(void)
{
	if (!getenv("CSD_FW")) {
		fprintf(stderr, "test_devif: CSD_FW (path of csd-fw) not set\n");
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int suite_fini(void)
{
	kill_leftovers();
	return 0;
}

static const struct cu_suite suites[] = {
	{ "hostile", suite_init, suite_fini, hostile_tests },
	{ "api", suite_init, suite_fini, api_tests },
	{ "death", suite_init, suite_fini, death_tests },
	{ "clients", suite_init, suite_fini, client_tests },
	{ "reset", suite_init, suite_fini, reset_tests },
	{ "storm", suite_init, suite_fini, storm_tests },
	{ "util", suite_init, suite_fini, util_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	int rc;

	atexit(kill_leftovers);
	rc = cu_run(argc, argv, suites);
	kill_leftovers();
	return rc;
}
