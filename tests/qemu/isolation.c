// SPDX-License-Identifier: MIT
/*
 * isolation.c - cross-process isolation of /dev/csdN contexts (guest test).
 *
 * Process A opens the node and creates a context; process B opens the node
 * on its own (a separate open file) and creates one.  Each may use its own
 * context; naming the other's gives -EACCES (ioctl and uring_cmd, for every
 * context opcode); a process sharing A's open file (fork) is A; when B's
 * file is closed its context is gone (CTX_INVALID); when A closes, A's is.
 * Usage: isolation [/dev/csd0]
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest_util.h"

#define S_CTX_INVALID	(CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_INVALID) | \
			 CSD_STATUS_DNR)

static const char *node = "/dev/csd0";

static int xread(int fd, void *buf, size_t len)
{
	return read(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

static int xwrite(int fd, const void *buf, size_t len)
{
	return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

/* Every context opcode naming @id must be refused with -EACCES. */
static void foreign_refused(int fd, struct io_uring *ring, uint32_t id,
			    const char *who)
{
	static const uint8_t opcs[] = {
		CSD_IO_CTX_DESTROY, CSD_IO_KV_APPEND, CSD_IO_KV_READ,
		CSD_IO_SEQ_RESET, CSD_IO_ATTN_SUBMIT, CSD_IO_CTX_QUERY,
		CSD_IO_ATTN_READ,
	};
	struct nvme_passthru_cmd64 c;
	struct nvme_uring_cmd uc;
	uint8_t buf[512];
	uint64_t res;
	unsigned int i, bad_ioctl = 0, bad_uring = 0;
	int r;

	memset(buf, 0, sizeof(buf));
	for (i = 0; i < sizeof(opcs); i++) {
		uint32_t len = CSD_OPC_XFER(opcs[i]) ? 256 : 0;

		memset(&c, 0, sizeof(c));
		c.opcode = opcs[i];
		c.nsid = CSD_NSID;
		c.addr = len ? (uint64_t)(uintptr_t)buf : 0;
		c.data_len = len;
		c.cdw10 = len / 4;
		c.cdw12 = id;
		r = pt_ioctl(fd, false, &c);
		if (r != -EACCES) {
			printf("  %s: opcode 0x%02x on context %u (ioctl): %d\n",
			       who, opcs[i], id, r);
			bad_ioctl++;
		}
		memset(&uc, 0, sizeof(uc));
		uc.opcode = opcs[i];
		uc.nsid = CSD_NSID;
		uc.addr = c.addr;
		uc.data_len = len;
		uc.cdw10 = len / 4;
		uc.cdw12 = id;
		r = ur_cmd(ring, fd, false, &uc, &res);
		if (r != -EACCES) {
			printf("  %s: opcode 0x%02x on context %u (uring): %d\n",
			       who, opcs[i], id, r);
			bad_uring++;
		}
	}
	check(!bad_ioctl, "isolation: %s: every context opcode on a foreign "
	      "context -> EACCES (ioctl)", who);
	check(!bad_uring, "isolation: %s: every context opcode on a foreign "
	      "context -> EACCES (uring_cmd)", who);
}

/* Contexts log (0xC1) as seen through @fd: is @id listed? -1 on error. */
static int log_lists(int fd, uint32_t id)
{
	uint8_t buf[64 * 65];
	const struct csd_log_ctx_hdr *h = (const void *)buf;
	const struct csd_log_ctx_entry *e = (const void *)(buf + 64);
	struct nvme_passthru_cmd64 c;
	uint32_t i, numd = sizeof(buf) / 4 - 1;

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_ADM_GET_LOG_PAGE;
	c.nsid = 0xffffffffu;
	c.addr = (uint64_t)(uintptr_t)buf;
	c.data_len = sizeof(buf);
	c.cdw10 = CSD_LOG_CONTEXTS | (numd & 0xffff) << 16;
	if (pt_ioctl(fd, true, &c))
		return -1;
	for (i = 0; i < h->count && i < 64; i++)
		if (e[i].ctx_id == id)
			return 1;
	return 0;
}

static int child_b(int to_a, int from_a)
{
	struct io_uring ring;
	uint32_t ida, idb;
	int fd, id;
	char go;

	g_pass = g_fail = 0;
	fd = open(node, O_RDWR);
	check(fd >= 0, "isolation: B opens %s", node);
	if (fd < 0 || ur_init(&ring, 8, IORING_SETUP_SQE128 |
			      IORING_SETUP_CQE32))
		return 1;
	id = ctx_create_ioctl(fd);
	check(id > 0, "isolation: B creates context %d", id);
	idb = id > 0 ? (uint32_t)id : 0;
	if (xwrite(to_a, &idb, sizeof(idb)) || xread(from_a, &ida, sizeof(ida)))
		return 1;
	check(ctx_query_ioctl(fd, idb) == 0, "isolation: B uses its context");
	foreign_refused(fd, &ring, ida, "B names A's context");
	/* tell A we are done; wait until A has checked our context */
	if (xwrite(to_a, &idb, sizeof(idb)) || xread(from_a, &go, 1))
		return 1;
	io_uring_queue_exit(&ring);
	close(fd);		/* B's context is destroyed here */
	return check_summary("isolation (B)");
}

int main(int argc, char **argv)
{
	int a2b[2], b2a[2], fd, fd2, id, st, r;
	struct io_uring ring;
	uint32_t ida, idb, dummy;
	pid_t pid;
	char go = 1;

	if (argc > 1)
		node = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(node, O_RDWR);
	check(fd >= 0, "isolation: A opens %s", node);
	if (fd < 0)
		return check_summary("isolation");
	if (ur_init(&ring, 8, IORING_SETUP_SQE128 | IORING_SETUP_CQE32)) {
		check(false, "isolation: io_uring SQE128/CQE32 ring");
		return check_summary("isolation");
	}
	id = ctx_create_ioctl(fd);
	check(id > 0, "isolation: A creates context %d", id);
	if (id <= 0)
		return check_summary("isolation");
	ida = (uint32_t)id;
	if (pipe(a2b) || pipe(b2a))
		return 1;
	pid = fork();
	if (pid == 0) {
		close(fd);	/* B must not use A's open file */
		io_uring_queue_exit(&ring);
		_exit(child_b(b2a[1], a2b[0]));
	}
	if (pid < 0 || xread(b2a[0], &idb, sizeof(idb)) ||
	    xwrite(a2b[1], &ida, sizeof(ida)) ||
	    xread(b2a[0], &dummy, sizeof(dummy))) {
		check(false, "isolation: talking to B");
		return check_summary("isolation");
	}
	check(idb > 0 && idb != ida, "isolation: A %u and B %u differ", ida,
	      idb);
	check(ctx_query_ioctl(fd, ida) == 0, "isolation: A uses its context");
	foreign_refused(fd, &ring, idb, "A names B's context");
	r = log_lists(fd, ida);
	check(r == 1, "isolation: A's context in the contexts log");
	printf("isolation: info: B's context %s in A's view of log 0xC1\n",
	       log_lists(fd, idb) == 1 ? "is listed" : "is not listed");

	/* a child sharing A's open file is A */
	pid_t p2 = fork();

	if (p2 == 0)
		_exit(ctx_query_ioctl(fd, ida) == 0 ? 0 : 1);
	check(p2 > 0 && waitpid(p2, &st, 0) == p2 && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0,
	      "isolation: a fork sharing A's open file uses A's context");

	/* B closes its file: its context is destroyed */
	if (xwrite(a2b[1], &go, 1) || waitpid(pid, &st, 0) != pid)
		check(false, "isolation: B exit");
	r = ctx_query_ioctl(fd, idb);
	check(r == S_CTX_INVALID, "isolation: B's context destroyed with B's "
	      "file (CTX_QUERY -> 0x%x)", r);

	/* A closes: A's context is destroyed too */
	io_uring_queue_exit(&ring);
	close(fd);
	fd2 = open(node, O_RDWR);
	r = fd2 >= 0 ? ctx_query_ioctl(fd2, ida) : -errno;
	check(r == S_CTX_INVALID, "isolation: A's context destroyed with A's "
	      "file (CTX_QUERY -> 0x%x)", r);
	if (fd2 >= 0)
		close(fd2);
	return check_summary("isolation (A)");
}
