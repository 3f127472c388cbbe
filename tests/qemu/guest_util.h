/* SPDX-License-Identifier: MIT */
/*
 * guest_util.h - helpers of the QEMU guest test programs (tests/qemu/ C files):
 * raw NVMe passthrough through the ioctls and through io_uring uring_cmd,
 * and the "GUEST PASS:" / "GUEST FAIL:" result lines guest-init.sh counts.
 * Header-only, built statically by tests/qemu/run.sh.
 */
#ifndef CSD_GUEST_UTIL_H
#define CSD_GUEST_UTIL_H

#include <errno.h>
#include <liburing.h>
#include <linux/nvme_ioctl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "csd/csd_spec.h"

static unsigned int g_pass, g_fail;

static inline void __attribute__((format(printf, 2, 3)))
check(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("GUEST %s: ", cond ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (cond)
		g_pass++;
	else
		g_fail++;
}

static inline int check_summary(const char *prog)
{
	printf("%s: %u passed, %u failed\n", prog, g_pass, g_fail);
	fflush(stdout);
	return g_fail ? 1 : 0;
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ioctl passthrough: the NVMe status (>= 0) or -errno. */
static inline int pt_ioctl(int fd, bool admin, struct nvme_passthru_cmd64 *c)
{
	int ret = ioctl(fd, admin ? NVME_IOCTL_ADMIN64_CMD : NVME_IOCTL_IO64_CMD,
			c);

	return ret < 0 ? -errno : ret;
}

/* A ring for uring_cmd (SQE128 | CQE32 unless @flags says otherwise). */
static inline int ur_init(struct io_uring *ring, unsigned int entries,
			  unsigned int flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return io_uring_queue_init_params(entries, ring, &p);
}

/* Queue one uring_cmd (not submitted).  -EBUSY when the SQ is full. */
static inline int ur_queue(struct io_uring *ring, int fd, uint32_t cmd_op,
			   const struct nvme_uring_cmd *uc, uint64_t ud,
			   bool sqe128)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, sqe128 ? 2 * sizeof(*sqe) : sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = cmd_op;
	sqe->user_data = ud;
	/* the command area starts at addr3; 16 bytes without SQE128 */
	memcpy((uint8_t *)sqe + offsetof(struct io_uring_sqe, addr3), uc,
	       sqe128 ? sizeof(*uc) : 16);
	return 0;
}

/* Reap one CQE (waiting at most @tmo_s seconds): 0 with res/result/ud, or
 * -ETIME / -errno. */
static inline int ur_reap(struct io_uring *ring, double tmo_s, int *res,
			  uint64_t *result, uint64_t *ud, bool cqe32)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)tmo_s,
		.tv_nsec = (long long)((tmo_s - (double)(long long)tmo_s) * 1e9),
	};
	struct io_uring_cqe *cqe;
	int rc;

	do {
		rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	} while (rc == -EINTR);
	if (rc)
		return rc;
	*res = cqe->res;
	if (ud)
		*ud = cqe->user_data;
	if (result) {
		*result = 0;
		if (cqe32)
			memcpy(result, (const uint8_t *)cqe + sizeof(*cqe),
			       sizeof(*result));
	}
	io_uring_cqe_seen(ring, cqe);
	return 0;
}

/* One synchronous uring_cmd on an SQE128/CQE32 ring: status (>= 0) or
 * -errno; *result = the 64-bit command result. */
static inline int ur_cmd(struct io_uring *ring, int fd, bool admin,
			 const struct nvme_uring_cmd *uc, uint64_t *result)
{
	int rc, res = 0;

	rc = ur_queue(ring, fd, admin ? NVME_URING_CMD_ADMIN :
			       NVME_URING_CMD_IO, uc, 1, true);
	if (rc)
		return rc;
	rc = io_uring_submit(ring);
	if (rc != 1)
		return rc < 0 ? rc : -EIO;
	rc = ur_reap(ring, 120, &res, result, NULL, true);
	return rc ? rc : res;
}

/*
 * One passthrough command through the ioctl, or as a uring_cmd when @ring
 * is set (nvme_uring_cmd is nvme_passthru_cmd64 without the result): the
 * status (>= 0) or -errno; c->result set on both paths.
 */
static inline int pt_cmd(int fd, struct io_uring *ring, bool admin,
			 struct nvme_passthru_cmd64 *c)
{
	struct nvme_uring_cmd uc;
	uint64_t res = 0;
	int rc;

	if (!ring)
		return pt_ioctl(fd, admin, c);
	memset(&uc, 0, sizeof(uc));
	uc.opcode = c->opcode;
	uc.flags = c->flags;
	uc.nsid = c->nsid;
	uc.cdw2 = c->cdw2;
	uc.cdw3 = c->cdw3;
	uc.metadata = c->metadata;
	uc.addr = c->addr;
	uc.metadata_len = c->metadata_len;
	uc.data_len = c->data_len;
	uc.cdw10 = c->cdw10;
	uc.cdw11 = c->cdw11;
	uc.cdw12 = c->cdw12;
	uc.cdw13 = c->cdw13;
	uc.cdw14 = c->cdw14;
	uc.cdw15 = c->cdw15;
	uc.timeout_ms = c->timeout_ms;
	rc = ur_cmd(ring, fd, admin, &uc, &res);
	c->result = res;
	return rc;
}

/* struct csd_ctx_desc of a small f32 context. */
static inline struct csd_ctx_desc small_ctx(void)
{
	struct csd_ctx_desc d;

	memset(&d, 0, sizeof(d));
	d.layers = 1;
	d.kv_heads = 1;
	d.q_heads = 1;
	d.head_dim = 64;
	d.dtype = CSD_DTYPE_F32;
	d.max_seqs = 2;
	d.max_tokens = 64;
	return d;
}

/* CTX_CREATE of @d through the ioctl: the new id (> 0) or -errno / -status. */
static inline int ctx_create_desc(int fd, const struct csd_ctx_desc *d)
{
	struct nvme_passthru_cmd64 c;
	int ret;

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_IO_CTX_CREATE;
	c.nsid = CSD_NSID;
	c.addr = (uint64_t)(uintptr_t)d;
	c.data_len = sizeof(*d);
	c.cdw10 = sizeof(*d) / 4;
	ret = pt_ioctl(fd, false, &c);
	if (ret)
		return ret < 0 ? ret : -ret;
	return (int)(uint32_t)c.result;
}

/* CTX_CREATE of small_ctx() through the ioctl. */
static inline int ctx_create_ioctl(int fd)
{
	struct csd_ctx_desc d = small_ctx();

	return ctx_create_desc(fd, &d);
}

/* CTX_QUERY (header only) through the ioctl, or io_uring when @ring is set:
 * status or -errno. */
static inline int ctx_query(int fd, struct io_uring *ring, uint32_t id)
{
	struct nvme_passthru_cmd64 c;
	uint8_t buf[64];

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_IO_CTX_QUERY;
	c.nsid = CSD_NSID;
	c.addr = (uint64_t)(uintptr_t)buf;
	c.data_len = sizeof(buf);
	c.cdw10 = sizeof(buf) / 4;
	c.cdw12 = id;
	return pt_cmd(fd, ring, false, &c);
}

#endif /* CSD_GUEST_UTIL_H */
