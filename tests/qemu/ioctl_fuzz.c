// SPDX-License-Identifier: MIT
/*
 * ioctl_fuzz.c - random and malformed NVMe passthrough commands against
 * /dev/csdN (guest test): the 32- and 64-bit admin/I/O ioctls, uring_cmds
 * (NVME_URING_CMD_IO/_ADMIN and unknown cmd_ops) on an SQE128/CQE32 ring
 * and on rings without SQE128 or CQE32, and unknown ioctl numbers.  Fields
 * are drawn from valid-looking and hostile values: NULL, kernel, unmapped,
 * read-only, misaligned and range-crossing addresses; lengths from 0 to
 * beyond max_xfer; random opcodes, nsid, flags, reserved words, metadata
 * pointers and lengths, timeouts down to 1 ms.
 *
 * Every data address is either hostile or inside a scratch mapping that
 * stays mapped for the whole run, so the device can never write into the
 * fuzzer's own memory (the inaccessible pages stay reserved, see
 * setup_memory(): nothing else, e.g. an io_uring ring, may be mapped
 * there).  Every uring_cmd must complete (no hang).  After the storm the
 * device must still work: Identify (ioctl and uring_cmd) and a context's
 * create/query/destroy.
 *
 * Usage: ioctl_fuzz [/dev/csd0 [ITERATIONS [SEED]]]  (default 12000)
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_util.h"

#define SCRATCH		(4u << 20)	/* read/write data area */
#define PAGE		4096u
#define BATCH		16

struct fuzz {
	int fd;
	uint64_t rng;
	uint8_t *scratch;		/* SCRATCH bytes, then a guard page */
	uint8_t *ro;			/* one read-only page */
	uint64_t unmapped;		/* a PROT_NONE page: nothing accessible */
	uint32_t max_xfer;
	unsigned long ops, ioctls, urings, unknown, bad_rings;
	unsigned long dev_ok, dev_err, refused;
	unsigned long ring_accepted;	/* uring_cmd accepted on a bad ring */
	unsigned long hangs;
	unsigned long stray;		/* CQEs of no outstanding command */
	unsigned long short_submit;
	uint64_t next_ud;		/* unique per uring_cmd of the run */
	struct {
		uint64_t ud;
		uint32_t op;
		struct nvme_uring_cmd uc;
	} hist[1024];			/* recent uring_cmds, by ud % 1024 */
};

static void print_uring(struct fuzz *f, uint64_t ud, const char *why, int res)
{
	const struct nvme_uring_cmd *c = &f->hist[ud % 1024].uc;

	if (f->hist[ud % 1024].ud != ud) {
		printf("  uring_cmd #%llu %s (res %d): no longer in history\n",
		       (unsigned long long)ud, why, res);
		return;
	}
	printf("  uring_cmd #%llu %s (res %d): cmd_op 0x%x opcode 0x%02x "
	       "flags 0x%x nsid 0x%x addr 0x%llx len %u md 0x%llx/%u "
	       "cdw10-15 %x %x %x %x %x %x timeout_ms %u\n",
	       (unsigned long long)ud, why, res, f->hist[ud % 1024].op,
	       c->opcode, c->flags, c->nsid, (unsigned long long)c->addr,
	       c->data_len, (unsigned long long)c->metadata, c->metadata_len,
	       c->cdw10, c->cdw11, c->cdw12, c->cdw13, c->cdw14, c->cdw15,
	       c->timeout_ms);
}

static uint64_t rnd(struct fuzz *f)
{
	uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t below(struct fuzz *f, uint32_t n)
{
	return (uint32_t)(rnd(f) % n);
}

static uint64_t pick_addr(struct fuzz *f, uint32_t len)
{
	switch (below(f, 12)) {
	case 0:
		return 0;
	case 1:
		return 0xffff888000000000ull + (rnd(f) & 0xffffff000ull);
	case 2:
		return 0xffffffffffffff00ull;
	case 3:
		return f->unmapped + below(f, PAGE);
	case 4:
		return (uint64_t)(uintptr_t)f->ro + below(f, 64);
	case 5:	/* crosses into the guard page */
		return (uint64_t)(uintptr_t)f->scratch + SCRATCH -
		       (len ? below(f, len) : 0);
	case 6:
		return rnd(f) & 0x00007fffffffffffull;	/* random user */
	case 7:
		return 0x1000 + below(f, 0x10000);
	default: {	/* inside scratch, often misaligned */
		uint32_t room = len < SCRATCH ? SCRATCH - len : 0;
		uint32_t off = room ? below(f, room + 1) : 0;

		if (below(f, 2))
			off &= ~(PAGE - 1);
		return (uint64_t)(uintptr_t)f->scratch + off;
	}
	}
}

static uint32_t pick_len(struct fuzz *f)
{
	switch (below(f, 10)) {
	case 0:
		return 0;
	case 1:
		return 1 + below(f, 7);
	case 2:
		return 4 * (1 + below(f, 64));
	case 3:
		return 64;
	case 4:
		return PAGE;
	case 5:
		return f->max_xfer;
	case 6:
		return f->max_xfer + 4 * (1 + below(f, 1024));
	case 7:
		return 0xffffffffu - below(f, 16);
	case 8:
		return below(f, 3 * PAGE);
	default:
		return 4 * below(f, 1 << 16);
	}
}

static uint8_t pick_opcode(struct fuzz *f, bool admin)
{
	static const uint8_t adm[] = { 0x02, 0x06, 0x09, 0x0a, 0x00, 0x01,
				       0x04, 0x05, 0x08, 0x0c, 0x10, 0x80 };
	static const uint8_t ios[] = { 0x00, 0x81, 0x82, 0x84, 0x85, 0x86,
				       0x88, 0x89, 0x8a, 0x8d, 0x8e, 0x8f };

	if (below(f, 4) == 0)
		return (uint8_t)rnd(f);
	return admin ? adm[below(f, sizeof(adm))] : ios[below(f, sizeof(ios))];
}

static uint32_t pick_word(struct fuzz *f)
{
	switch (below(f, 6)) {
	case 0:
		return 0;
	case 1:
		return below(f, 16);		/* small ids, counts */
	case 2:
		return 0xffffffffu;
	case 3:
		return (uint32_t)rnd(f);
	default:
		return below(f, 1024);
	}
}

/* A well-formed command (Identify, log pages, context commands), so the
 * device side runs too; make_cmd() then mutates at most one field. */
static void sane_cmd(struct fuzz *f, bool admin, struct nvme_passthru_cmd64 *c)
{
	uint8_t *buf = f->scratch + PAGE * below(f, SCRATCH / PAGE - 2);

	memset(c, 0, sizeof(*c));
	c->addr = (uint64_t)(uintptr_t)buf;
	if (admin) {
		switch (below(f, 3)) {
		case 0:
			c->opcode = CSD_ADM_IDENTIFY;
			c->cdw10 = CSD_ID_CNS_CTRL;
			c->data_len = CSD_ID_SIZE;
			break;
		case 1:
			c->opcode = CSD_ADM_GET_LOG_PAGE;
			c->nsid = 0xffffffffu;
			c->data_len = 64 * (1 + below(f, 8));
			c->cdw10 = (uint32_t)(0xc0 + below(f, 2)) |
				   (c->data_len / 4 - 1) << 16;
			break;
		default:
			c->opcode = CSD_ADM_GET_FEATURES;
			c->cdw10 = CSD_FEAT_ID_PACING;
			c->addr = 0;
			break;
		}
		return;
	}
	c->nsid = CSD_NSID;
	switch (below(f, 4)) {
	case 0: {
		struct csd_ctx_desc d = small_ctx();

		memcpy(buf, &d, sizeof(d));
		c->opcode = CSD_IO_CTX_CREATE;
		c->data_len = sizeof(d);
		break;
	}
	case 1:
		c->opcode = CSD_IO_CTX_QUERY;
		c->data_len = 64 + 8 * below(f, 3);
		c->cdw12 = below(f, 8);
		break;
	case 2:
		c->opcode = CSD_IO_CTX_DESTROY;
		c->addr = 0;
		c->cdw12 = below(f, 8);
		break;
	default:
		c->opcode = CSD_IO_FLUSH;
		c->addr = 0;
		break;
	}
	c->cdw10 = c->data_len / 4;
}

/* One hostile-or-plausible command in the 64-bit ioctl layout. */
static void make_cmd(struct fuzz *f, bool admin, struct nvme_passthru_cmd64 *c)
{
	if (below(f, 4) == 0) {
		sane_cmd(f, admin, c);
		switch (below(f, 8)) {
		case 0:
			c->data_len = pick_len(f);
			break;
		case 1:
			c->addr = pick_addr(f, c->data_len);
			break;
		case 2:
			c->nsid = (uint32_t)rnd(f);
			break;
		case 3:
			c->timeout_ms = 1 + below(f, 3);
			break;
		default:
			break;
		}
		return;
	}
	memset(c, 0, sizeof(*c));
	c->opcode = pick_opcode(f, admin);
	if (below(f, 8) == 0)
		c->flags = (uint8_t)rnd(f);
	if (below(f, 10) == 0)
		c->rsvd1 = (uint16_t)rnd(f);
	switch (below(f, 5)) {
	case 0:
		c->nsid = 0;
		break;
	case 1:
		c->nsid = 0xffffffffu;
		break;
	case 2:
		c->nsid = (uint32_t)rnd(f);
		break;
	default:
		c->nsid = CSD_NSID;
		break;
	}
	if (below(f, 6) == 0)
		c->cdw2 = (uint32_t)rnd(f);
	if (below(f, 6) == 0)
		c->cdw3 = (uint32_t)rnd(f);
	if (below(f, 8) == 0)
		c->metadata = pick_addr(f, 64);
	if (below(f, 8) == 0)
		c->metadata_len = pick_len(f);
	c->data_len = below(f, 5) ? pick_len(f) : 0;
	c->addr = below(f, 10) ? pick_addr(f, c->data_len) : 0;
	c->cdw10 = below(f, 2) ? c->data_len / 4 : pick_word(f);
	c->cdw11 = pick_word(f);
	c->cdw12 = pick_word(f);
	c->cdw13 = pick_word(f);
	c->cdw14 = pick_word(f);
	c->cdw15 = pick_word(f);
	switch (below(f, 6)) {
	case 0:
		c->timeout_ms = 1 + below(f, 10);
		break;
	case 1:
		c->timeout_ms = (uint32_t)rnd(f);
		break;
	default:
		c->timeout_ms = 0;
		break;
	}
	if (below(f, 12) == 0)
		c->rsvd2 = (uint32_t)rnd(f);
}

static void note_result(struct fuzz *f, int r)
{
	if (r < 0)
		f->refused++;
	else if (r == 0)
		f->dev_ok++;
	else
		f->dev_err++;
}

static void fuzz_ioctl(struct fuzz *f)
{
	struct nvme_passthru_cmd64 c;
	bool admin = below(f, 3) == 0;
	unsigned long req;
	int r;

	make_cmd(f, admin, &c);
	if (below(f, 3) == 0)	/* 32-bit layout: ends at timeout_ms */
		req = admin ? NVME_IOCTL_ADMIN_CMD : NVME_IOCTL_IO_CMD;
	else
		req = admin ? NVME_IOCTL_ADMIN64_CMD : NVME_IOCTL_IO64_CMD;
	if (below(f, 20) == 0) {
		/* the command structure itself at a hostile address */
		r = ioctl(f->fd, req, (void *)(uintptr_t)pick_addr(f, 80));
	} else {
		r = ioctl(f->fd, req, &c);
	}
	note_result(f, r < 0 ? -errno : r);
	f->ioctls++;
}

static bool known_ioctl(unsigned long cmd)
{
	static const unsigned long known[] = {
		NVME_IOCTL_ID, NVME_IOCTL_ADMIN_CMD, NVME_IOCTL_SUBMIT_IO,
		NVME_IOCTL_IO_CMD, NVME_IOCTL_RESET, NVME_IOCTL_SUBSYS_RESET,
		NVME_IOCTL_RESCAN, NVME_IOCTL_ADMIN64_CMD, NVME_IOCTL_IO64_CMD,
		NVME_IOCTL_IO64_CMD_VEC,
	};
	size_t i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (cmd == known[i])
			return true;
	return false;
}

static void fuzz_unknown(struct fuzz *f)
{
	unsigned long cmd;
	uint32_t type;
	int r;

	do {
		/* 'N' most of the time; never the generic VFS/tty/fs types
		 * ('T' FIO*, 'X' FIFREEZE, 'f' FS_IOC_*, 0 FIBMAP/FIGETBSZ,
		 * 0x12 BLK*, 0x94 FICLONE*) */
		type = below(f, 3) ? 'N' : (uint32_t)(1 + below(f, 255));
		if (type == 'T' || type == 'X' || type == 'f' || type == 0x12 ||
		    type == 0x94)
			type = 'N';
		cmd = (unsigned long)(below(f, 4)) << 30 |
		      (unsigned long)below(f, 1u << 14) << 16 |
		      type << 8 | below(f, 256);
	} while (known_ioctl(cmd));
	r = ioctl(f->fd, cmd, (void *)(uintptr_t)pick_addr(f, 128));
	note_result(f, r < 0 ? -errno : 0);
	f->unknown++;
}

static uint32_t pick_cmd_op(struct fuzz *f, bool *admin)
{
	*admin = below(f, 3) == 0;
	switch (below(f, 12)) {
	case 0:
		return (uint32_t)rnd(f);
	case 1:
		return NVME_URING_CMD_IO_VEC;
	case 2:
		return NVME_URING_CMD_ADMIN_VEC;
	case 3:
		return NVME_IOCTL_IO64_CMD;
	default:
		return *admin ? NVME_URING_CMD_ADMIN : NVME_URING_CMD_IO;
	}
}

static void to_uring(const struct nvme_passthru_cmd64 *c,
		     struct nvme_uring_cmd *uc)
{
	memset(uc, 0, sizeof(*uc));
	uc->opcode = c->opcode;
	uc->flags = c->flags;
	uc->rsvd1 = c->rsvd1;
	uc->nsid = c->nsid;
	uc->cdw2 = c->cdw2;
	uc->cdw3 = c->cdw3;
	uc->metadata = c->metadata;
	uc->addr = c->addr;
	uc->metadata_len = c->metadata_len;
	uc->data_len = c->data_len;
	uc->cdw10 = c->cdw10;
	uc->cdw11 = c->cdw11;
	uc->cdw12 = c->cdw12;
	uc->cdw13 = c->cdw13;
	uc->cdw14 = c->cdw14;
	uc->cdw15 = c->cdw15;
	uc->timeout_ms = c->timeout_ms;
	uc->rsvd2 = c->rsvd2;
}

/* A batch of uring_cmds on @ring; every one must complete, exactly once. */
static void fuzz_uring(struct fuzz *f, struct io_uring *ring, bool sqe128,
		       bool cqe32, unsigned int n)
{
	struct nvme_passthru_cmd64 c;
	struct nvme_uring_cmd uc;
	unsigned int i, queued = 0, left;
	uint64_t result, ud, first = f->next_ud + 1;
	bool seen[BATCH];
	bool admin;
	int rc, res;

	for (i = 0; i < n && i < BATCH; i++) {
		uint32_t op = pick_cmd_op(f, &admin);

		make_cmd(f, admin, &c);
		to_uring(&c, &uc);
		ud = first + i;
		f->hist[ud % 1024].ud = ud;
		f->hist[ud % 1024].op = op;
		f->hist[ud % 1024].uc = uc;
		if (ur_queue(ring, f->fd, op, &uc, ud, sqe128))
			break;
		queued++;
		seen[i] = false;
	}
	f->next_ud += queued;
	rc = io_uring_submit(ring);
	if (rc < 0) {
		printf("  io_uring_submit: %s\n", strerror(-rc));
		f->hangs++;
		return;
	}
	if ((unsigned int)rc < queued) {
		printf("  io_uring_submit: %d of %u submitted\n", rc, queued);
		f->short_submit++;
	}
	for (left = queued; left; ) {
		rc = ur_reap(ring, 60, &res, &result, &ud, cqe32);
		if (rc) {
			printf("  uring_cmd did not complete in 60 s: %s\n",
			       strerror(-rc));
			for (i = 0; i < queued; i++)
				if (!seen[i])
					print_uring(f, first + i, "pending", 0);
			f->hangs++;
			return;
		}
		if (ud < first || ud >= first + queued || seen[ud - first]) {
			if (f->stray < 20)
				print_uring(f, ud, ud < first + queued ?
					    "completed again / late" :
					    "unknown", res);
			if (++f->stray >= 1000) {
				printf("  %lu stray CQEs: giving up\n",
				       f->stray);
				f->hangs++;
				return;
			}
			continue;
		}
		seen[ud - first] = true;
		left--;
		if (!sqe128 || !cqe32) {
			f->bad_rings++;
			if (res >= 0)
				f->ring_accepted++;
		} else {
			note_result(f, res);
		}
		f->urings++;
	}
}

/*
 * The scratch area, its guard page, a read-only page and an inaccessible
 * page.  The guard and the inaccessible page are PROT_NONE mappings kept
 * for the whole run, not holes: a hole left by munmap() is where the next
 * small mmap() goes (top-down allocation), and the io_uring rings set up
 * after this used to land there - the main ring's SQ/CQ ring page exactly
 * at the "unmapped" address - so a fuzzed command reading device data into
 * it legitimately overwrote the ring's head, tail, SQ array and CQEs (stale
 * SQEs submitted again, CQEs of old user_data, commands never completing).
 */
static void setup_memory(struct fuzz *f)
{
	uint8_t *p, *none;

	p = mmap(NULL, SCRATCH + PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	none = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	f->ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED || none == MAP_FAILED || f->ro == MAP_FAILED ||
	    mprotect(p + SCRATCH, PAGE, PROT_NONE)) {	/* guard */
		perror("mmap");
		exit(1);
	}
	memset(p, 0x5a, SCRATCH);
	f->scratch = p;
	f->unmapped = (uint64_t)(uintptr_t)none;
}

static int identify(struct fuzz *f, struct io_uring *ring, bool uring,
		    struct csd_id_ctrl *id)
{
	struct nvme_passthru_cmd64 c;
	struct nvme_uring_cmd uc;
	uint64_t res;

	memset(&c, 0, sizeof(c));
	memset(id, 0, sizeof(*id));
	c.opcode = CSD_ADM_IDENTIFY;
	c.cdw10 = CSD_ID_CNS_CTRL;
	c.addr = (uint64_t)(uintptr_t)id;
	c.data_len = CSD_ID_SIZE;
	if (!uring)
		return pt_ioctl(f->fd, true, &c);
	to_uring(&c, &uc);
	return ur_cmd(ring, f->fd, true, &uc, &res);
}

int main(int argc, char **argv)
{
	const char *node = argc > 1 ? argv[1] : "/dev/csd0";
	unsigned long iters = argc > 2 ? strtoul(argv[2], NULL, 0) : 12000;
	struct io_uring ring, r64, rnocqe;
	struct csd_id_ctrl *id;
	struct fuzz f;
	unsigned long i;
	double t0;
	bool have_r64, have_rnocqe;
	unsigned int tries;
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&f, 0, sizeof(f));
	f.rng = argc > 3 ? strtoull(argv[3], NULL, 0) :
			   (uint64_t)time(NULL) * 2654435761u;
	printf("ioctl_fuzz: %s, %lu iterations, seed %llu\n", node, iters,
	       (unsigned long long)f.rng);
	id = aligned_alloc(PAGE, sizeof(*id));
	f.fd = open(node, O_RDWR);
	if (f.fd < 0 || !id) {
		check(false, "fuzz: open %s", node);
		return check_summary("ioctl_fuzz");
	}
	setup_memory(&f);
	if (ur_init(&ring, 2 * BATCH, IORING_SETUP_SQE128 | IORING_SETUP_CQE32)) {
		check(false, "fuzz: SQE128/CQE32 ring");
		return check_summary("ioctl_fuzz");
	}
	have_r64 = !ur_init(&r64, BATCH, 0);
	have_rnocqe = !ur_init(&rnocqe, BATCH, IORING_SETUP_SQE128);
	r = identify(&f, &ring, false, id);
	check(r == 0, "fuzz: Identify before (ioctl) -> %d", r);
	f.max_xfer = r == 0 && id->vs.max_xfer ? id->vs.max_xfer : 1u << 20;

	/* Short command timeouts first: Identify (reaches the device) with
	 * timeout_ms 1..3, BATCH at a time; each must complete exactly once. */
	{
		struct nvme_uring_cmd uc;
		uint64_t ud, res64, first = f.next_ud + 1;
		unsigned int k, got = 0, stray = 0, timedout = 0;
		int res;

		for (k = 0; k < BATCH; k++) {
			memset(&uc, 0, sizeof(uc));
			uc.opcode = CSD_ADM_IDENTIFY;
			uc.cdw10 = CSD_ID_CNS_CTRL;
			uc.addr = (uint64_t)(uintptr_t)(f.scratch + k * PAGE);
			uc.data_len = CSD_ID_SIZE;
			uc.timeout_ms = 1 + k % 3;
			ud = first + k;
			f.hist[ud % 1024].ud = ud;
			f.hist[ud % 1024].op = NVME_URING_CMD_ADMIN;
			f.hist[ud % 1024].uc = uc;
			ur_queue(&ring, f.fd, NVME_URING_CMD_ADMIN, &uc, ud, true);
		}
		f.next_ud += BATCH;
		io_uring_submit(&ring);
		while (got < BATCH && stray < 100 &&
		       !ur_reap(&ring, 60, &res, &res64, &ud, true)) {
			if (ud < first || ud >= first + BATCH) {
				stray++;
				continue;
			}
			got++;
			if (res < 0)
				timedout++;
		}
		/* anything more within 3 s is a second completion */
		while (stray < 100 && !ur_reap(&ring, 3, &res, &res64, &ud, true)) {
			if (stray < 5)
				print_uring(&f, ud, "completed again", res);
			stray++;
		}
		check(got == BATCH && !stray, "fuzz: %u Identify uring_cmds with "
		      "timeout_ms 1..3 complete exactly once (%u completed, %u "
		      "with an error, %u extra CQEs)", BATCH, got, timedout,
		      stray);
		if (got != BATCH || stray)
			f.hangs++;	/* the ring is not trustworthy now */
	}

	t0 = now_s();
	for (i = 0; i < iters && !f.hangs; ) {
		uint32_t k = below(&f, 100);

		if (k < 45) {
			fuzz_ioctl(&f);
			i++;
		} else if (k < 85) {
			fuzz_uring(&f, &ring, true, true,
				   below(&f, 4) ? 1 + below(&f, 3) :
						  1 + below(&f, BATCH));
			i = f.ioctls + f.urings + f.unknown;
		} else if (k < 90) {
			if (have_r64 && below(&f, 2))
				fuzz_uring(&f, &r64, false, false, 1 + below(&f, 4));
			else if (have_rnocqe)
				fuzz_uring(&f, &rnocqe, true, false,
					   1 + below(&f, 4));
			i = f.ioctls + f.urings + f.unknown;
		} else {
			fuzz_unknown(&f);
			i++;
		}
	}
	f.ops = f.ioctls + f.urings + f.unknown;
	printf("ioctl_fuzz: %lu operations in %.1f s: %lu ioctls, %lu "
	       "uring_cmds (%lu on rings without SQE128/CQE32), %lu unknown "
	       "ioctls; device ok %lu, device error status %lu, refused by "
	       "the driver %lu\n", f.ops, now_s() - t0, f.ioctls, f.urings,
	       f.bad_rings, f.unknown, f.dev_ok, f.dev_err, f.refused);
	check(f.ops >= 10000 || f.ops >= iters, "fuzz: %lu random/malformed "
	      "operations issued", f.ops);
	check(!f.hangs, "fuzz: every uring_cmd completed");
	check(!f.stray, "fuzz: every uring_cmd completed once (%lu stray CQEs)",
	      f.stray);
	check(!f.short_submit, "fuzz: io_uring_submit took every SQE (%lu "
	      "short)", f.short_submit);
	check(!f.ring_accepted, "fuzz: uring_cmd refused on rings without "
	      "SQE128/CQE32 (%lu of %lu accepted)", f.ring_accepted,
	      f.bad_rings);

	/* still healthy (a fresh ring: stray CQEs are counted above) */
	io_uring_queue_exit(&ring);
	if (ur_init(&ring, 2 * BATCH, IORING_SETUP_SQE128 | IORING_SETUP_CQE32))
		check(false, "fuzz: a new SQE128/CQE32 ring");
	r = identify(&f, &ring, false, id);
	check(r == 0 && !memcmp(id->mn, "CSD-SIM", 7),
	      "fuzz: Identify after (ioctl) -> %d", r);
	r = identify(&f, &ring, true, id);
	check(r == 0 && !memcmp(id->mn, "CSD-SIM", 7),
	      "fuzz: Identify after (uring_cmd) -> %d", r);
	/*
	 * The storm's CTX_CREATEs may have filled the device's context table
	 * (CTX_LIMIT): they go with their file, so open the node again.  An
	 * io-wq worker may drop the last reference to the old file a moment
	 * after our close(): allow a little time for that release.
	 */
	close(f.fd);
	f.fd = open(node, O_RDWR);
	r = f.fd < 0 ? -errno : ctx_create_ioctl(f.fd);
	for (tries = 0; f.fd >= 0 && r < 0 && r != -EACCES && tries < 20;
	     tries++) {
		usleep(100000);
		r = ctx_create_ioctl(f.fd);
	}
	check(r > 0, "fuzz: CTX_CREATE after (file opened again) -> %d", r);
	if (r > 0) {
		int q = ctx_query(f.fd, NULL, (uint32_t)r);

		check(q == 0, "fuzz: CTX_QUERY after -> %d", q);
	}
	io_uring_queue_exit(&ring);
	if (have_r64)
		io_uring_queue_exit(&r64);
	if (have_rnocqe)
		io_uring_queue_exit(&rnocqe);
	if (f.fd >= 0)
		close(f.fd);
	free(id);
	return check_summary("ioctl_fuzz");
}
