// SPDX-License-Identifier: GPL-2.0
/*
 * uring_test.c - csd.ko checks run inside the QEMU guest by guest-kmod.sh:
 * io_uring passthrough (NVME_URING_CMD_IO/_ADMIN, SQE128/CQE32) round trips
 * through pinned pages (unaligned buffers, PRP lists, many in flight), the
 * validation and ownership errors, and an open file across device removal.
 *
 *   uring_test [DEV]            the io_uring checks
 *   uring_test hold DEV DIR     open DEV, create DIR/ready, wait for
 *                               DIR/go, then expect ENODEV from an ioctl
 *                               and a uring_cmd (the device was removed)
 *   uring_test reset DEV        controller reset after a command timeout
 *                               (root; csd.ko io_timeout=1, csd-fw with
 *                               read_ns=2000000000: a KV_READ is modeled
 *                               at >= 2 s, and pacing makes it take that
 *                               long): the timed-out command gets
 *                               ETIMEDOUT, another one in flight 0x4007
 *   uring_test ioctl-reset DEV [any]
 *                               NVME_IOCTL_RESET: root succeeds, others
 *                               get EACCES ("any": print the result only)
 *   uring_test slow DEV         one KV_READ that is slow with pacing on
 *                               (for the reset-vs-removal race; prints
 *                               its result only)
 *
 * Prints "GUEST PASS: ..." / "GUEST FAIL: ..." lines; exit status 1 if any
 * check failed.  Self-contained:
 *   cc -O2 -static -o uring_test tests/qemu/uring_test.c -luring
 */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <liburing.h>
#include <linux/nvme_ioctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE		4096u
#define HEAD_DIM	64u
#define ROW		(HEAD_DIM * 4u)	/* f32, kv_heads 1 */
#define MAX_TOKENS	8192u

static int fails;

static void check(int ok, const char *what, long got)
{
	if (ok)
		printf("GUEST PASS: uring %s\n", what);
	else
		printf("GUEST FAIL: uring %s (got %ld)\n", what, got);
	if (!ok)
		fails++;
}

static int prep(struct io_uring *ring, int fd, unsigned int op,
		const struct nvme_uring_cmd *c, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 128);
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	sqe->cmd_op = op;
	sqe->user_data = tag;
	memcpy(sqe->cmd, c, sizeof(*c));
	return 0;
}

/* One command, waited for; returns res, *result = big_cqe[0]. */
static int run1(struct io_uring *ring, int fd, unsigned int op,
		const struct nvme_uring_cmd *c, uint64_t *result)
{
	struct io_uring_cqe *cqe;
	int ret;

	ret = prep(ring, fd, op, c, 1);
	if (ret)
		return ret;
	ret = io_uring_submit(ring);
	if (ret != 1)
		return ret < 0 ? ret : -EIO;
	ret = io_uring_wait_cqe(ring, &cqe);
	if (ret)
		return ret;
	ret = cqe->res;
	if (result)
		*result = cqe->big_cqe[0];
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

static void kv_cmd(struct nvme_uring_cmd *c, uint8_t opc, uint32_t ctx,
		   uint32_t start, uint32_t ntok, void *buf)
{
	memset(c, 0, sizeof(*c));
	c->opcode = opc;
	c->nsid = 1;
	c->addr = (uintptr_t)buf;
	c->data_len = 2 * ntok * ROW;
	c->cdw10 = c->data_len / 4;
	c->cdw12 = ctx;
	c->cdw13 = 0;		/* sequence 0, layer 0 */
	c->cdw14 = start;
	c->cdw15 = ntok;
}

static void fill(float *p, size_t n, uint32_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (float)((seed * 2654435761u + i * 40503u) % 100003u);
}

static int create_ctx(struct io_uring *ring, int fd, uint32_t *id)
{
	struct nvme_uring_cmd c = { 0 };
	uint8_t desc[64] = { 0 };
	uint64_t res = 0;
	uint32_t v;
	int ret;

	desc[0] = 1;		/* layers */
	desc[2] = 1;		/* kv_heads */
	desc[4] = 1;		/* q_heads */
	desc[6] = HEAD_DIM;	/* head_dim */
	desc[8] = 0;		/* f32 */
	v = 1;
	memcpy(desc + 12, &v, 4);	/* max_seqs */
	v = MAX_TOKENS;
	memcpy(desc + 16, &v, 4);	/* max_tokens */
	c.opcode = 0x81;
	c.nsid = 1;
	c.addr = (uintptr_t)desc;
	c.data_len = sizeof(desc);
	c.cdw10 = sizeof(desc) / 4;
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, &res);
	*id = (uint32_t)res;
	return ret;
}

static long sysfs_num(const char *name)
{
	char path[128], buf[64];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/csd/csd0/%s", name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 0);
	fclose(f);
	return v;
}

/* Append ntok tokens from an unaligned buffer and read them back. */
static void round_trip(struct io_uring *ring, int fd, uint32_t ctx,
		       uint32_t *len, uint32_t ntok, size_t off,
		       const char *what)
{
	size_t bytes = 2 * (size_t)ntok * ROW;
	size_t map = bytes + off + PAGE;
	uint8_t *a = mmap(NULL, map, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b = mmap(NULL, map, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct nvme_uring_cmd c;
	uint64_t res = 0;
	char name[96];
	int ret;

	if (a == MAP_FAILED || b == MAP_FAILED) {
		check(0, what, -ENOMEM);
		return;
	}
	fill((float *)(a + off), bytes / 4, *len + 7);
	memset(b, 0xa5, map);
	kv_cmd(&c, 0x85, ctx, *len, ntok, a + off);
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, &res);
	snprintf(name, sizeof(name), "%s KV_APPEND %u tokens (%zu B, offset %zu)",
		 what, ntok, bytes, off);
	check(ret == 0 && (uint32_t)res == *len + ntok, name, ret ? ret : (long)res);
	if (ret == 0)
		*len += ntok;
	kv_cmd(&c, 0x86, ctx, *len - ntok, ntok, b + off);
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, &res);
	snprintf(name, sizeof(name), "%s KV_READ back, bytes identical", what);
	check(ret == 0 && !memcmp(a + off, b + off, bytes) &&
	      b[off - 1] == 0xa5 && b[off + bytes] == 0xa5, name, ret);
	munmap(a, map);
	munmap(b, map);
}

/* Many reads in flight at once, each checked. */
static void in_flight(struct io_uring *ring, int fd, uint32_t ctx,
		      uint32_t len)
{
	enum { N = 48, NTOK = 4 };
	size_t bytes = 2 * NTOK * ROW;
	uint8_t *buf = malloc(N * (bytes + 64));
	uint8_t *ref = malloc(bytes * 2);
	struct nvme_uring_cmd c;
	int i, done = 0, good = 0, ret;

	if (!buf || !ref || len < NTOK) {
		check(0, "48 KV_READs in flight", -ENOMEM);
		goto out;
	}
	kv_cmd(&c, 0x86, ctx, 0, NTOK, ref);
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	if (ret) {
		check(0, "48 KV_READs in flight (reference read)", ret);
		goto out;
	}
	for (i = 0; i < N; i++) {
		uint8_t *p = buf + i * (bytes + 64) + 4 * (i % 16);

		kv_cmd(&c, 0x86, ctx, 0, NTOK, p);
		if (prep(ring, fd, NVME_URING_CMD_IO, &c, i))
			break;
	}
	ret = io_uring_submit(ring);
	if (ret != N) {
		check(0, "48 KV_READs in flight (submit)", ret);
		goto out;
	}
	while (done < N) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(ring, &cqe))
			break;
		i = (int)cqe->user_data;
		if (cqe->res == 0 && i >= 0 && i < N &&
		    !memcmp(buf + i * (bytes + 64) + 4 * (i % 16), ref, bytes))
			good++;
		io_uring_cqe_seen(ring, cqe);
		done++;
	}
	check(good == N, "48 KV_READs in flight, all correct", good);
out:
	free(buf);
	free(ref);
}

static void errors(struct io_uring *ring, int fd, uint32_t ctx)
{
	struct nvme_uring_cmd c;
	uint8_t buf[512];
	long max_xfer = sysfs_num("max_xfer");
	int ret, fd2;

	kv_cmd(&c, 0x86, ctx, 0, 1, buf);
	ret = run1(ring, fd, 0x1234, &c, NULL);
	check(ret == -ENOTTY, "unknown cmd_op -> ENOTTY", ret);

	kv_cmd(&c, 0x86, ctx, 0, 1, buf);
	c.flags = 1;
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	check(ret == -EINVAL, "flags != 0 -> EINVAL", ret);

	kv_cmd(&c, 0x86, ctx, 0, 1, buf);
	c.metadata_len = 8;
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	check(ret == -EINVAL, "metadata -> EINVAL", ret);

	kv_cmd(&c, 0x86, ctx, 0, 1, buf);
	c.data_len = (uint32_t)max_xfer + 4;
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	check(max_xfer > 0 && ret == -EINVAL, "data_len > max_xfer -> EINVAL",
	      ret);

	kv_cmd(&c, 0x86, ctx, 0, 1, (void *)(uintptr_t)0x1000);
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	check(ret == -EFAULT, "unmapped buffer -> EFAULT", ret);

	kv_cmd(&c, 0x86, ctx, 0, 1, (void *)(uintptr_t)0xffff800000000000ull);
	ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
	check(ret == -EFAULT, "kernel address -> EFAULT", ret);

	/* another open file names our context */
	fd2 = open("/dev/csd0", O_RDWR);
	kv_cmd(&c, 0x86, ctx, 0, 1, buf);
	ret = fd2 < 0 ? -errno : run1(ring, fd2, NVME_URING_CMD_IO, &c, NULL);
	check(ret == -EACCES, "other file's context -> EACCES", ret);
	if (fd2 >= 0)
		close(fd2);

	/* a read-only mapping cannot receive device data */
	{
		void *ro = mmap(NULL, PAGE, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		kv_cmd(&c, 0x86, ctx, 0, 1, ro);
		ret = run1(ring, fd, NVME_URING_CMD_IO, &c, NULL);
		check(ret == -EFAULT, "read into read-only page -> EFAULT", ret);
		munmap(ro, PAGE);
	}

	/* rings without SQE128 / CQE32 are refused */
	{
		struct io_uring small;
		struct io_uring_sqe *sqe;
		struct io_uring_cqe *cqe;

		if (io_uring_queue_init(4, &small, 0) == 0) {
			sqe = io_uring_get_sqe(&small);
			if (!sqe)
				return;
			memset(sqe, 0, 64);
			sqe->opcode = IORING_OP_URING_CMD;
			sqe->fd = fd;
			sqe->cmd_op = NVME_URING_CMD_ADMIN;
			io_uring_submit(&small);
			ret = io_uring_wait_cqe(&small, &cqe) ? -EIO : cqe->res;
			check(ret == -EOPNOTSUPP, "64-byte SQE ring -> EOPNOTSUPP",
			      ret);
			io_uring_queue_exit(&small);
		}
	}
}

static int test_main(const char *dev)
{
	struct nvme_uring_cmd c = { 0 };
	struct io_uring ring;
	uint8_t *id;
	uint32_t ctx = 0, len = 0;
	long max_xfer;
	int fd, ret;

	fd = open(dev, O_RDWR);
	if (fd < 0) {
		check(0, "open", -errno);
		return 1;
	}
	ret = io_uring_queue_init(64, &ring,
				  IORING_SETUP_SQE128 | IORING_SETUP_CQE32);
	if (ret) {
		check(0, "io_uring_queue_init SQE128|CQE32", ret);
		return 1;
	}
	/* Identify into a buffer straddling a page boundary (PRP1 + PRP2) */
	id = aligned_alloc(PAGE, 3 * PAGE);
	memset(id, 0, 3 * PAGE);
	c.opcode = 0x06;
	c.addr = (uintptr_t)(id + PAGE - 8);
	c.data_len = 4096;
	c.cdw10 = 1;
	ret = run1(&ring, fd, NVME_URING_CMD_ADMIN, &c, NULL);
	check(ret == 0 && !memcmp(id + PAGE - 8 + 24, "CSD-SIM", 7),
	      "admin Identify (unaligned, 2 pages): model CSD-SIM", ret);

	ret = create_ctx(&ring, fd, &ctx);
	check(ret == 0 && ctx >= 1, "CTX_CREATE", ret ? ret : (long)ctx);
	if (ret || !ctx)
		return 1;
	check(sysfs_num("contexts_in_use") >= 1, "sysfs contexts_in_use >= 1",
	      sysfs_num("contexts_in_use"));

	round_trip(&ring, fd, ctx, &len, 1, 4, "1 page");
	round_trip(&ring, fd, ctx, &len, 64, 4092, "PRP list");
	max_xfer = sysfs_num("max_xfer");
	if (max_xfer > 0) {
		uint32_t big = (uint32_t)(max_xfer / (2 * ROW));

		if (big > MAX_TOKENS - len - 8)
			big = MAX_TOKENS - len - 8;
		round_trip(&ring, fd, ctx, &len, big, 64, "max_xfer");
	}
	in_flight(&ring, fd, ctx, len);
	errors(&ring, fd, ctx);

	io_uring_queue_exit(&ring);
	close(fd);
	free(id);
	return fails ? 1 : 0;
}

/* Keep a file open across device removal; see the usage comment. */
static int hold_main(const char *dev, const char *dir)
{
	struct nvme_admin_cmd a = { 0 };
	struct nvme_uring_cmd c = { 0 };
	struct io_uring ring;
	char path[256];
	uint8_t buf[4096];
	struct stat st;
	int fd, ret, i;

	fd = open(dev, O_RDWR);
	if (fd < 0 || io_uring_queue_init(4, &ring, IORING_SETUP_SQE128 |
					  IORING_SETUP_CQE32)) {
		check(0, "hold: open", -errno);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/ready", dir);
	close(open(path, O_CREAT | O_WRONLY, 0644));
	snprintf(path, sizeof(path), "%s/go", dir);
	for (i = 0; i < 600 && stat(path, &st); i++)
		usleep(100000);
	a.opcode = 0x06;
	a.addr = (uintptr_t)buf;
	a.data_len = sizeof(buf);
	a.cdw10 = 1;
	ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, &a) < 0 ? -errno : 0;
	check(ret == -ENODEV, "open file after removal: ioctl -> ENODEV", ret);
	c.opcode = 0x06;
	c.addr = (uintptr_t)buf;
	c.data_len = sizeof(buf);
	c.cdw10 = 1;
	ret = run1(&ring, fd, NVME_URING_CMD_ADMIN, &c, NULL);
	check(ret == -ENODEV, "open file after removal: uring_cmd -> ENODEV",
	      ret);
	io_uring_queue_exit(&ring);
	close(fd);
	return fails ? 1 : 0;
}

/* ---- controller reset --------------------------------------------------- */

#define ST_ABORTED	0x4007	/* ABORT_REQ | DNR: aborted by the host */

static long stat_num(const char *key)
{
	char line[128];
	size_t n = strlen(key);
	long v = -1;
	FILE *f = fopen("/sys/class/csd/csd0/stats", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static int sysfs_state_is(const char *want)
{
	char buf[32] = "";
	FILE *f = fopen("/sys/class/csd/csd0/state", "r");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return !strcmp(buf, want);
}

/* Wait (up to 20 s) until the stats count @want resets. */
static long wait_resets(long want)
{
	long n = stat_num("resets");
	int i;

	for (i = 0; i < 200 && n < want; i++) {
		usleep(100000);
		n = stat_num("resets");
	}
	return n;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Set Features 0xC0 (pacing): commands complete at their modeled time. */
static int set_pacing(int fd, unsigned int on)
{
	struct nvme_admin_cmd a = { 0 };

	a.opcode = 0x09;
	a.cdw10 = 0xc0;
	a.cdw11 = on;
	return ioctl(fd, NVME_IOCTL_ADMIN_CMD, &a) < 0 ? -errno : 0;
}

static void read_cmd64(struct nvme_passthru_cmd64 *p, uint32_t ctx,
		       uint32_t ntok, void *buf)
{
	memset(p, 0, sizeof(*p));
	p->opcode = 0x86;
	p->nsid = 1;
	p->addr = (uintptr_t)buf;
	p->data_len = 2 * ntok * ROW;
	p->cdw10 = p->data_len / 4;
	p->cdw12 = ctx;
	p->cdw15 = ntok;
}

/* A KV_READ that must work (pacing off) and return @ref. */
static void read_ok(int fd, uint32_t ctx, const uint8_t *ref, size_t bytes,
		    const char *what)
{
	struct nvme_passthru_cmd64 p;
	uint8_t buf[2 * 4 * ROW];
	int ret;

	memset(buf, 0, sizeof(buf));
	read_cmd64(&p, ctx, 4, buf);
	ret = ioctl(fd, NVME_IOCTL_IO64_CMD, &p);	/* status field */
	if (ret < 0)
		ret = -errno;
	check(ret == 0 && !memcmp(buf, ref, bytes), what, ret);
}

static int reset_main(const char *dev)
{
	enum { NTOK = 4 };
	size_t bytes = 2 * NTOK * ROW;
	struct nvme_passthru_cmd64 p;
	struct nvme_uring_cmd c;
	struct io_uring ring;
	uint8_t ref[2 * NTOK * ROW], buf[2 * NTOK * ROW], buf2[2 * NTOK * ROW];
	uint32_t ctx = 0;
	long r0, r, t0;
	int fd, ret, res1 = 1, res2 = 1, i;
	uint64_t res = 0;
	double t;

	fd = open(dev, O_RDWR);
	if (fd < 0 || io_uring_queue_init(8, &ring, IORING_SETUP_SQE128 |
					  IORING_SETUP_CQE32)) {
		check(0, "reset: open", -errno);
		return 1;
	}
	ret = set_pacing(fd, 0);
	check(ret == 0, "reset: Set Features pacing off", ret);
	ret = create_ctx(&ring, fd, &ctx);
	check(ret == 0 && ctx >= 1, "reset: CTX_CREATE", ret ? ret : (long)ctx);
	if (ret || !ctx)
		return 1;
	fill((float *)ref, bytes / 4, 11);
	kv_cmd(&c, 0x85, ctx, 0, NTOK, ref);
	ret = run1(&ring, fd, NVME_URING_CMD_IO, &c, &res);
	check(ret == 0, "reset: KV_APPEND", ret);

	/* without pacing the read is quick but reports its modeled time */
	memset(buf, 0, sizeof(buf));
	kv_cmd(&c, 0x86, ctx, 0, NTOK, buf);
	ret = run1(&ring, fd, NVME_URING_CMD_IO, &c, &res);
	printf("reset: KV_READ modeled at %.3f s (CQE dw1)\n",
	       (double)(res >> 32) / 1e9);
	check(ret == 0 && !memcmp(buf, ref, bytes) && (res >> 32) >= 1000000000u,
	      "reset: KV_READ modeled >= 1 s (csd-fw read_ns=2000000000)",
	      ret ? ret : (long)(res >> 32));
	if (ret || (res >> 32) < 1000000000u)
		goto out;

	/* 1. a synchronous command outlives io_timeout (1 s) */
	r0 = stat_num("resets");
	t0 = stat_num("timeouts");
	ret = set_pacing(fd, 1);
	check(ret == 0, "reset: Set Features pacing on", ret);
	read_cmd64(&p, ctx, NTOK, buf);
	t = now_s();
	ret = ioctl(fd, NVME_IOCTL_IO64_CMD, &p);
	if (ret < 0)
		ret = -errno;
	t = now_s() - t;
	printf("reset: ioctl KV_READ returned after %.2f s\n", t);
	check(ret == -ETIMEDOUT, "reset: ioctl KV_READ past io_timeout -> ETIMEDOUT",
	      ret);
	r = wait_resets(r0 + 1);
	check(r == r0 + 1, "reset: sysfs stats count one controller reset", r - r0);
	check(stat_num("timeouts") > t0, "reset: sysfs stats count the timeout",
	      stat_num("timeouts") - t0);
	check(sysfs_state_is("live"), "reset: state live after the reset", 0);
	ret = set_pacing(fd, 0);
	check(ret == 0, "reset: next admin command works (pacing off)", ret);
	read_ok(fd, ctx, ref, bytes, "reset: next KV_READ works, data intact");

	/*
	 * 2. io_uring: a KV_READ that times out, and 200 ms later an admin
	 * command queued behind it in the device (pacing keeps one device
	 * clock): the reset aborts that one with 0x4007.
	 */
	ret = set_pacing(fd, 1);
	check(ret == 0, "reset: Set Features pacing on (2)", ret);
	memset(buf2, 0, sizeof(buf2));
	kv_cmd(&c, 0x86, ctx, 0, NTOK, buf2);
	ret = prep(&ring, fd, NVME_URING_CMD_IO, &c, 1);
	if (!ret)
		ret = io_uring_submit(&ring) == 1 ? 0 : -EIO;
	usleep(200000);
	memset(&c, 0, sizeof(c));
	c.opcode = 0x0a;	/* Get Features, pacing */
	c.cdw10 = 0xc0;
	if (!ret)
		ret = prep(&ring, fd, NVME_URING_CMD_ADMIN, &c, 2);
	if (!ret)
		ret = io_uring_submit(&ring) == 1 ? 0 : -EIO;
	for (i = 0; !ret && i < 2; i++) {
		struct io_uring_cqe *cqe;

		if (io_uring_wait_cqe(&ring, &cqe))
			break;
		if (cqe->user_data == 1)
			res1 = cqe->res;
		else
			res2 = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
	}
	check(res1 == -ETIMEDOUT, "reset: uring KV_READ past io_timeout -> ETIMEDOUT",
	      res1);
	check(res2 == ST_ABORTED,
	      "reset: uring admin command in flight -> status 0x4007 (aborted)",
	      res2);
	r = wait_resets(r0 + 2);
	check(r == r0 + 2, "reset: second reset counted", r - r0);
	check(sysfs_state_is("live"), "reset: state live after the second reset",
	      0);
	ret = set_pacing(fd, 0);
	check(ret == 0, "reset: pacing off after the second reset", ret);
	kv_cmd(&c, 0x86, ctx, 0, NTOK, buf);
	memset(buf, 0, sizeof(buf));
	ret = run1(&ring, fd, NVME_URING_CMD_IO, &c, &res);
	check(ret == 0 && !memcmp(buf, ref, bytes),
	      "reset: uring KV_READ after the reset works", ret);

	/* 3. NVME_IOCTL_RESET on an idle controller */
	r0 = stat_num("resets");
	ret = ioctl(fd, NVME_IOCTL_RESET) < 0 ? -errno : 0;
	check(ret == 0 && stat_num("resets") == r0 + 1,
	      "reset: NVME_IOCTL_RESET as root", ret);
	read_ok(fd, ctx, ref, bytes, "reset: KV_READ after NVME_IOCTL_RESET");
out:
	set_pacing(fd, 0);
	io_uring_queue_exit(&ring);
	close(fd);
	return fails ? 1 : 0;
}

/* NVME_IOCTL_RESET: CAP_SYS_ADMIN only. */
static int ioctl_reset_main(const char *dev, int any)
{
	int fd = open(dev, O_RDWR), ret, want = geteuid() ? -EACCES : 0;
	char what[64];

	if (fd < 0) {
		check(0, "ioctl-reset: open", -errno);
		return 1;
	}
	ret = ioctl(fd, NVME_IOCTL_RESET) < 0 ? -errno : 0;
	if (any) {
		printf("NVME_IOCTL_RESET: %s\n", ret ? strerror(-ret) : "0");
		close(fd);
		return 0;
	}
	snprintf(what, sizeof(what), "NVME_IOCTL_RESET as uid %u -> %s",
		 (unsigned int)geteuid(), want ? "EACCES" : "0");
	check(ret == want, what, ret);
	close(fd);
	return fails ? 1 : 0;
}

/* Context, 4 tokens, one KV_READ (slow while pacing is on): result only. */
static int slow_main(const char *dev)
{
	uint8_t buf[2 * 4 * ROW];
	struct nvme_passthru_cmd64 p;
	struct nvme_uring_cmd c;
	struct io_uring ring;
	uint32_t ctx = 0;
	int fd, ret;

	fd = open(dev, O_RDWR);
	if (fd < 0 || io_uring_queue_init(4, &ring, IORING_SETUP_SQE128 |
					  IORING_SETUP_CQE32)) {
		printf("slow: open: %s\n", strerror(errno));
		return 0;
	}
	ret = create_ctx(&ring, fd, &ctx);
	if (!ret) {
		fill((float *)buf, sizeof(buf) / 4, 5);
		kv_cmd(&c, 0x85, ctx, 0, 4, buf);
		ret = run1(&ring, fd, NVME_URING_CMD_IO, &c, NULL);
	}
	if (!ret) {
		read_cmd64(&p, ctx, 4, buf);
		ret = ioctl(fd, NVME_IOCTL_IO64_CMD, &p);
		if (ret < 0)
			ret = -errno;
	}
	printf("slow: KV_READ %d\n", ret);
	io_uring_queue_exit(&ring);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && !strcmp(argv[1], "hold"))
		return hold_main(argv[2], argv[3]);
	if (argc >= 3 && !strcmp(argv[1], "reset"))
		return reset_main(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "ioctl-reset"))
		return ioctl_reset_main(argv[2], argc >= 4 &&
					!strcmp(argv[3], "any"));
	if (argc >= 3 && !strcmp(argv[1], "slow"))
		return slow_main(argv[2]);
	return test_main(argc > 1 ? argv[1] : "/dev/csd0");
}
