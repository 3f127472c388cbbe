// SPDX-License-Identifier: MIT
/*
 * isolation.c - cross-process isolation of /dev/csdN contexts (guest test).
 *
 * Process A opens the node and creates a context; process B opens the node
 * on its own (a separate open file) and creates one.  Each may use its own
 * context; naming the other's gives -EACCES (ioctl and uring_cmd, for every
 * context opcode); a process sharing A's open file (fork) is A; when B's
 * file is closed its context is gone (CTX_INVALID); when A closes, A's is.
 *
 * The contexts log (Get Log Page C1h) lists only the caller's own contexts
 * unless the caller has CAP_SYS_ADMIN (Documentation/driver.md, "Access"):
 * unprivileged, A sees its contexts and not B's, with NUMD/LPO applying to
 * that filtered log (partial reads, offsets, zeros past the end, LPO past
 * the end, bad NUMD or LPO alignment INVALID_FIELD, as the device answers),
 * through the ioctl and io_uring alike.  Run as root, A and B see every
 * context, a uid 1000 child with its own open file sees its contexts and
 * not root's, and a uid 1000 child sharing A's open file sees A's contexts
 * only.
 *
 * A context no open file owns (an orphan: here a CTX_DESTROY the device
 * refused after its submitter gave up; run as root, with pacing) can be
 * neither seen nor used without CAP_SYS_ADMIN: a uid 1000 caller gets
 * CTX_INVALID as for a context that does not exist; root uses and
 * destroys it.  A CTX_DESTROY the device refuses leaves the context with
 * its owner.  Churn: while another open file creates and destroys contexts
 * of one shape and a process sharing the reader's file creates and
 * destroys contexts of another, an unprivileged reader's contexts log never
 * lists an entry of the other file (ids are reused slots).
 * Usage: isolation [/dev/csd0]
 */
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest_util.h"

#define S_CTX_INVALID	(CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_INVALID) | \
			 CSD_STATUS_DNR)
#define S_INVALID_FIELD	(CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD) | \
			 CSD_STATUS_DNR)

/* unprivileged identity of the children that drop root */
#define USER_UID	1000
#define USER_GID	1000

/* a full contexts log: header + 64 entries (csd-fw's default max_contexts) */
#define LOG_ENTS	64
#define LOG_FULL	(64 * (LOG_ENTS + 1))

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
	uint8_t buf[512];
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
		r = pt_cmd(fd, NULL, false, &c);
		if (r != -EACCES) {
			printf("  %s: opcode 0x%02x on context %u (ioctl): %d\n",
			       who, opcs[i], id, r);
			bad_ioctl++;
		}
		r = pt_cmd(fd, ring, false, &c);
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

/*
 * Get Log Page C1h through @fd (the ioctl, or io_uring when @ring is set):
 * @len bytes at log page offset @lpo; NUMD = @numd_len / 4 - 1 (normally
 * @len).  Returns the NVMe status (>= 0) or -errno.
 */
static int get_ctx_log_numd(int fd, struct io_uring *ring, uint64_t lpo,
			    void *buf, uint32_t len, uint32_t numd_len)
{
	uint32_t numd = numd_len / 4 - 1;
	struct nvme_passthru_cmd64 c;

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_ADM_GET_LOG_PAGE;
	c.nsid = 0xffffffffu;
	c.addr = (uint64_t)(uintptr_t)buf;
	c.data_len = len;
	c.cdw10 = CSD_LOG_CONTEXTS | (numd & 0xffff) << 16;
	c.cdw11 = numd >> 16;
	c.cdw12 = (uint32_t)lpo;
	c.cdw13 = (uint32_t)(lpo >> 32);
	return pt_cmd(fd, ring, true, &c);
}

static int get_ctx_log(int fd, struct io_uring *ring, uint64_t lpo, void *buf,
		       uint32_t len)
{
	return get_ctx_log_numd(fd, ring, lpo, buf, len, len);
}

/* Is @id among the @n entries of the contexts log in @buf? */
static bool log_has(const uint8_t *buf, uint32_t n, uint32_t id)
{
	const struct csd_log_ctx_entry *e = (const void *)(buf + 64);
	uint32_t i;

	for (i = 0; i < n && i < LOG_ENTS; i++)
		if (e[i].ctx_id == id)
			return true;
	return false;
}

/* Contexts log (0xC1) as seen through @fd: is @id listed? -1 on error. */
static int log_lists(int fd, uint32_t id)
{
	uint8_t buf[LOG_FULL];
	const struct csd_log_ctx_hdr *h = (const void *)buf;

	if (get_ctx_log(fd, NULL, 0, buf, sizeof(buf)))
		return -1;
	return log_has(buf, h->count, id);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The filtered contexts log of an unprivileged caller that owns exactly
 * @n contexts @own (any order) while @foreign is another file's: the log is
 * 64 + 64 * n bytes, own entries in ascending id order, and NUMD/LPO apply
 * to it (Documentation/driver.md, "Access").
 */
static void filtered_log(int fd, struct io_uring *ring, const uint32_t *own,
			 uint32_t n, uint32_t foreign, const char *who)
{
	static uint8_t full[LOG_FULL], alt[LOG_FULL], part[256];
	const struct csd_log_ctx_hdr *h = (const void *)full;
	const struct csd_log_ctx_entry *e = (const void *)(full + 64);
	uint32_t sorted[LOG_ENTS], i, size = 64 + 64 * n;
	bool entries_ok = true;
	uint8_t *ro;
	int r;

	memcpy(sorted, own, n * sizeof(*own));
	qsort(sorted, n, sizeof(*sorted), cmp_u32);
	memset(full, 0xa5, sizeof(full));
	r = get_ctx_log(fd, NULL, 0, full, sizeof(full));
	check(r == 0 && h->count == n, "log C1h: %s: count %u = its own %u "
	      "contexts (ioctl, status 0x%x)", who, h->count, n, r);
	if (r || h->count != n)
		return;
	for (i = 0; i < n; i++)
		if (e[i].ctx_id != sorted[i] || e[i].layers != 1 ||
		    e[i].head_dim != 64 || e[i].max_tokens != 64)
			entries_ok = false;
	check(entries_ok, "log C1h: %s: its own entries, ascending id", who);
	check(!log_has(full, h->count, foreign),
	      "log C1h: %s: context %u of another open file not listed", who,
	      foreign);
	check(all_zero(full + 4, 60), "log C1h: %s: header reserved bytes 0",
	      who);
	check(all_zero(full + size, sizeof(full) - size),
	      "log C1h: %s: bytes past the end of its log (%u) are 0", who,
	      size);

	memset(alt, 0x5a, sizeof(alt));
	r = get_ctx_log(fd, ring, 0, alt, sizeof(alt));
	check(r == 0 && !memcmp(alt, full, sizeof(full)),
	      "log C1h: %s: io_uring read = ioctl read (status 0x%x)", who, r);

	/* header only */
	memset(part, 0xa5, sizeof(part));
	r = get_ctx_log(fd, NULL, 0, part, 64);
	check(r == 0 && !memcmp(part, full, 64) && part[64] == 0xa5,
	      "log C1h: %s: 64-byte read = the header, count %u", who,
	      ((const struct csd_log_ctx_hdr *)(const void *)part)->count);
	/* LPO 64: the first own entry */
	memset(part, 0xa5, sizeof(part));
	r = get_ctx_log(fd, NULL, 64, part, 64);
	check(r == 0 && !memcmp(part, full + 64, 64),
	      "log C1h: %s: LPO 64, 64 bytes = its first entry (ioctl)", who);
	memset(part, 0xa5, sizeof(part));
	r = get_ctx_log(fd, ring, 64, part, 128);
	check(r == 0 && !memcmp(part, full + 64, 128),
	      "log C1h: %s: LPO 64, 128 bytes (io_uring)", who);
	/* a read inside the last entry running past the end: tail zeroed */
	memset(part, 0xa5, sizeof(part));
	r = get_ctx_log(fd, NULL, size - 56, part, 128);
	check(r == 0 && !memcmp(part, full + size - 56, 56) &&
	      all_zero(part + 56, 72),
	      "log C1h: %s: LPO %u, 128 bytes: 56 bytes of the last entry, "
	      "then zeros", who, size - 56);
	/* a 4-byte read of the count at LPO 0, and of an id at LPO 128 */
	memset(part, 0xa5, sizeof(part));
	r = get_ctx_log(fd, ring, 128, part, 4);
	check(r == 0 && !memcmp(part, full + 128, 4) && part[4] == 0xa5,
	      "log C1h: %s: LPO 128, 4 bytes (io_uring)", who);
	/* LPO at or past the end of its log: INVALID_FIELD, like the device */
	r = get_ctx_log(fd, NULL, size, part, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: LPO %u = its log size -> "
	      "INVALID_FIELD (ioctl: 0x%x)", who, size, r);
	r = get_ctx_log(fd, ring, size, part, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: LPO %u = its log size -> "
	      "INVALID_FIELD (io_uring: 0x%x)", who, size, r);
	r = get_ctx_log(fd, NULL, 1ull << 32, part, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: LPO 2^32 -> INVALID_FIELD "
	      "(0x%x)", who, r);
	/* what the device checks on its own log: INVALID_FIELD as well */
	r = get_ctx_log(fd, NULL, 2, part, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: LPO not dword aligned -> "
	      "INVALID_FIELD (0x%x)", who, r);
	r = get_ctx_log(fd, ring, 6, part, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: LPO not dword aligned -> "
	      "INVALID_FIELD (io_uring: 0x%x)", who, r);
	r = get_ctx_log_numd(fd, NULL, 0, part, 64, 128);
	check(r == S_INVALID_FIELD, "log C1h: %s: NUMD != data_len -> "
	      "INVALID_FIELD (0x%x)", who, r);
	r = get_ctx_log_numd(fd, ring, 0, part, 128, 64);
	check(r == S_INVALID_FIELD, "log C1h: %s: NUMD != data_len -> "
	      "INVALID_FIELD (io_uring: 0x%x)", who, r);
	/* a buffer the driver cannot write: EFAULT, nothing else happens */
	ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro != MAP_FAILED) {
		r = get_ctx_log(fd, NULL, 0, ro, 128);
		check(r == -EFAULT, "log C1h: %s: read-only buffer -> EFAULT "
		      "(%d)", who, r);
		r = get_ctx_log(fd, ring, 0, ro, 128);
		check(r == -EFAULT, "log C1h: %s: read-only buffer -> EFAULT "
		      "(io_uring: %d)", who, r);
		munmap(ro, 4096);
	}
}

/* Become USER_UID:USER_GID with no capability left. */
static int drop_root(void)
{
	if (setgroups(0, NULL) || setgid(USER_GID) || setuid(USER_UID))
		return -1;
	return setuid(0) == 0 ? -1 : 0;
}

/*
 * Root run: a uid 1000 process with its own open file creates two
 * contexts; its log shows them and not root's (@ida); the root parent
 * (@to_p, @from_p) then checks that it sees them all.
 */
static int child_user(int to_p, int from_p, uint32_t ida)
{
	struct io_uring ring;
	uint32_t ids[2];
	int fd, i, id;
	char go;

	g_pass = g_fail = 0;
	if (drop_root()) {
		check(false, "isolation: child drops root");
		return 1;
	}
	fd = open(node, O_RDWR);
	check(fd >= 0, "isolation: uid %d opens %s", USER_UID, node);
	if (fd < 0 || ur_init(&ring, 8, IORING_SETUP_SQE128 |
			      IORING_SETUP_CQE32))
		return 1;
	for (i = 0; i < 2; i++) {
		id = ctx_create_ioctl(fd);
		check(id > 0, "isolation: uid %d creates context %d", USER_UID,
		      id);
		ids[i] = id > 0 ? (uint32_t)id : 0;
	}
	check(log_lists(fd, ida) == 0,
	      "log C1h: uid %d does not see root's context %u", USER_UID, ida);
	filtered_log(fd, &ring, ids, 2, ida, "uid 1000 (own file)");
	if (xwrite(to_p, ids, sizeof(ids)) || xread(from_p, &go, 1))
		return 1;
	io_uring_queue_exit(&ring);
	close(fd);
	return check_summary("isolation (uid 1000 child)");
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
	check(ctx_query(fd, NULL, idb) == 0, "isolation: B uses its context");
	foreign_refused(fd, &ring, ida, "B names A's context");
	/* tell A we are done; wait until A has checked our context */
	if (xwrite(to_a, &idb, sizeof(idb)) || xread(from_a, &go, 1))
		return 1;
	io_uring_queue_exit(&ring);
	close(fd);		/* B's context is destroyed here */
	return check_summary("isolation (B)");
}

/*
 * Unprivileged A (owning @ida; B owns @idb): the log lists A's contexts
 * only; with two more contexts, partial reads and offsets of that log.
 */
static void user_log_checks(int fd, struct io_uring *ring, uint32_t ida,
			    uint32_t idb)
{
	uint32_t own[3] = { ida };
	int i, id;

	check(log_lists(fd, idb) == 0,
	      "log C1h: unprivileged A does not see B's context %u", idb);
	for (i = 1; i < 3; i++) {
		id = ctx_create_ioctl(fd);
		check(id > 0, "isolation: A creates context %d", id);
		own[i] = id > 0 ? (uint32_t)id : 0;
	}
	filtered_log(fd, ring, own, 3, idb, "unprivileged A");
}

/*
 * Root A (owning @ida; root B owns @idb): root sees every context, also
 * those of a uid 1000 process; a uid 1000 child sharing A's open file sees
 * A's context (the file's) but not B's.
 */
static void root_log_checks(int fd, uint32_t ida, uint32_t idb)
{
	uint8_t buf[LOG_FULL];
	const struct csd_log_ctx_hdr *h = (const void *)buf;
	uint32_t idc[2] = { 0, 0 };
	int p2c[2], c2p[2], st, r;
	char go = 1;
	pid_t pid;

	check(log_lists(fd, idb) == 1,
	      "log C1h: root A sees B's context %u", idb);
	if (pipe(p2c) || pipe(c2p)) {
		check(false, "isolation: pipes");
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(fd);	/* its own open file */
		_exit(child_user(c2p[1], p2c[0], ida));
	}
	if (pid < 0 || xread(c2p[0], idc, sizeof(idc))) {
		check(false, "isolation: talking to the uid 1000 child");
	} else {
		r = get_ctx_log(fd, NULL, 0, buf, sizeof(buf));
		check(r == 0 && log_has(buf, h->count, ida) &&
		      log_has(buf, h->count, idb) &&
		      log_has(buf, h->count, idc[0]) &&
		      log_has(buf, h->count, idc[1]),
		      "log C1h: root sees every context (%u %u %u %u of %u)",
		      ida, idb, idc[0], idc[1], h->count);
	}
	if (pid > 0) {
		if (xwrite(p2c[1], &go, 1) || waitpid(pid, &st, 0) != pid ||
		    !WIFEXITED(st) || WEXITSTATUS(st))
			check(false, "isolation: uid 1000 child exit");
	}
	close(p2c[0]);
	close(p2c[1]);
	close(c2p[0]);
	close(c2p[1]);

	/* the filter is per open file: A's file, used by a uid 1000 process */
	pid = fork();
	if (pid == 0) {
		if (drop_root())
			_exit(2);
		_exit(log_lists(fd, ida) == 1 && log_lists(fd, idb) == 0 ?
		      0 : 1);
	}
	check(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0,
	      "log C1h: uid 1000 sharing A's open file sees A's context, "
	      "not B's");
}

/* ---- orphans, refused destroys, churn ------------------------------------ */

/* one K or V row of small_ctx(): 1 KV head x 64 f32 */
#define ROW		256
#define NTOK		4
/* max_tokens of the other file's contexts in the churn test */
#define OTHER_TOKENS	32

/* KV_APPEND / KV_READ of NTOK tokens of sequence 0, layer 0 (ioctl). */
static int kv_io(int fd, uint8_t opc, uint32_t id, void *buf)
{
	struct nvme_passthru_cmd64 c;

	memset(&c, 0, sizeof(c));
	c.opcode = opc;
	c.nsid = CSD_NSID;
	c.addr = (uint64_t)(uintptr_t)buf;
	c.data_len = 2 * NTOK * ROW;
	c.cdw10 = c.data_len / 4;
	c.cdw12 = id;
	c.cdw15 = NTOK;
	return pt_ioctl(fd, false, &c);
}

/* Set Features C0h (pacing, root): commands complete at their modeled time */
static int set_pacing(int fd, unsigned int on)
{
	struct nvme_passthru_cmd64 c;

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_ADM_SET_FEATURES;
	c.cdw10 = 0xc0;
	c.cdw11 = on;
	return pt_ioctl(fd, true, &c);
}

/* CTX_DESTROY (ioctl); CDW13 is reserved: non-zero, the device refuses it */
static int ctx_destroy(int fd, uint32_t id, uint32_t cdw13,
		       uint32_t timeout_ms)
{
	struct nvme_passthru_cmd64 c;

	memset(&c, 0, sizeof(c));
	c.opcode = CSD_IO_CTX_DESTROY;
	c.nsid = CSD_NSID;
	c.cdw12 = id;
	c.cdw13 = cdw13;
	c.timeout_ms = timeout_ms;
	return pt_ioctl(fd, false, &c);
}

/*
 * A CTX_DESTROY the device refuses leaves the context with its owner: still
 * usable and still listed.
 */
static void destroy_refused_keeps(int fd, uint32_t id)
{
	int r;

	r = ctx_destroy(fd, id, 1, 0);
	check(r == S_INVALID_FIELD, "ownership: CTX_DESTROY with a reserved "
	      "field refused by the device (0x%x)", r);
	check(ctx_query(fd, NULL, id) == 0,
	      "ownership: the context stays its file's after a refused destroy");
	check(log_lists(fd, id) == 1,
	      "ownership: and stays in its file's contexts log");
}

/* uid 1000, its own open file or @shared: the orphan @x is invisible. */
static int orphan_user(int shared, uint32_t x)
{
	static uint8_t out[2 * NTOK * ROW];
	struct io_uring ring;
	int fd = shared, r;

	g_pass = g_fail = 0;
	if (drop_root())
		return 2;
	if (fd < 0) {
		fd = open(node, O_RDWR);
		if (fd < 0)
			return 2;
	}
	if (ur_init(&ring, 8, IORING_SETUP_SQE128 | IORING_SETUP_CQE32))
		return 2;
	r = ctx_query(fd, NULL, x);
	check(r == S_CTX_INVALID, "orphan: uid 1000 (%s file): CTX_QUERY of "
	      "the unowned context %u -> CTX_INVALID (ioctl: 0x%x)",
	      shared >= 0 ? "A's" : "own", x, r);
	r = ctx_query(fd, &ring, x);
	check(r == S_CTX_INVALID, "orphan: uid 1000: CTX_QUERY -> CTX_INVALID "
	      "(io_uring: 0x%x)", r);
	r = kv_io(fd, CSD_IO_KV_READ, x, out);
	check(r == S_CTX_INVALID, "orphan: uid 1000: KV_READ -> CTX_INVALID "
	      "(0x%x)", r);
	r = ctx_destroy(fd, x, 0, 0);
	check(r == S_CTX_INVALID, "orphan: uid 1000: CTX_DESTROY -> "
	      "CTX_INVALID (0x%x)", r);
	r = log_lists(fd, x);
	check(r == 0, "orphan: uid 1000: not in its contexts log (%d)", r);
	io_uring_queue_exit(&ring);
	return check_summary("isolation (orphan, uid 1000)");
}

static void run_orphan_user(int shared, uint32_t x, const char *what)
{
	pid_t pid = fork();
	int st;

	if (pid == 0)
		_exit(orphan_user(shared, x));
	check(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0, "orphan: uid 1000 child (%s) done", what);
}

/*
 * Root: make an orphan - a context whose CTX_DESTROY the device refused
 * after its submitter gave up (the driver took the ownership away when the
 * destroy was sent and cannot know the outcome in time).  Pacing on and a
 * slow KV_READ (read_ns = 2 s, tests/qemu/run.sh) keep the destroy in the
 * device past its 300 ms timeout.  Then: unprivileged callers get
 * CTX_INVALID and do not see it, root uses, lists and destroys it.
 */
static void orphan_checks(int fd, struct io_uring *ring)
{
	static uint8_t kv[2 * NTOK * ROW], out[2 * NTOK * ROW];
	uint8_t buf[LOG_FULL];
	const struct csd_log_ctx_hdr *h = (const void *)buf;
	struct nvme_uring_cmd uc;
	int id, r, res = -1, fd2;
	uint32_t x;

	id = ctx_create_ioctl(fd);
	check(id > 0, "orphan: root creates context %d", id);
	if (id <= 0)
		return;
	x = (uint32_t)id;
	memset(kv, 0x3c, sizeof(kv));
	r = kv_io(fd, CSD_IO_KV_APPEND, x, kv);
	check(r == 0, "orphan: KV_APPEND %d tokens (0x%x)", NTOK, r);
	r = set_pacing(fd, 1);
	check(r == 0, "orphan: pacing on (%d)", r);
	memset(&uc, 0, sizeof(uc));
	uc.opcode = CSD_IO_KV_READ;
	uc.nsid = CSD_NSID;
	uc.addr = (uint64_t)(uintptr_t)out;
	uc.data_len = sizeof(out);
	uc.cdw10 = sizeof(out) / 4;
	uc.cdw12 = x;
	uc.cdw15 = NTOK;
	r = ur_queue(ring, fd, NVME_URING_CMD_IO, &uc, 7, true);
	if (!r)
		r = io_uring_submit(ring) == 1 ? 0 : -EIO;
	check(r == 0, "orphan: slow KV_READ submitted (%d)", r);
	usleep(100000);
	r = ctx_destroy(fd, x, 1, 300);
	check(r == -ETIMEDOUT, "orphan: refused CTX_DESTROY behind it, "
	      "given up after 300 ms -> ETIMEDOUT (%d)", r);
	r = ur_reap(ring, 60, &res, NULL, NULL, true);
	check(r == 0 && res == 0, "orphan: slow KV_READ completes (%d %d)", r,
	      res);
	r = set_pacing(fd, 0);
	check(r == 0, "orphan: pacing off (%d)", r);

	/* root may use it (the device answers for it: it still exists) */
	r = ctx_query(fd, NULL, x);
	check(r == 0, "orphan: root uses the unowned context %u (0x%x)", x, r);
	run_orphan_user(-1, x, "own file");
	run_orphan_user(fd, x, "A's file");
	r = get_ctx_log(fd, NULL, 0, buf, sizeof(buf));
	check(r == 0 && log_has(buf, h->count, x),
	      "orphan: root's contexts log lists it (0x%x)", r);
	/* the cleanup an administrator does, from any open file */
	fd2 = open(node, O_RDWR);
	r = fd2 >= 0 ? ctx_destroy(fd2, x, 0, 0) : -errno;
	check(r == 0, "orphan: root destroys it from another open file (0x%x)",
	      r);
	r = fd2 >= 0 ? ctx_query(fd2, NULL, x) : -errno;
	check(r == S_CTX_INVALID, "orphan: gone (CTX_QUERY -> 0x%x)", r);
	if (fd2 >= 0)
		close(fd2);
}

/* The other open file of the churn test: create and destroy, @n times. */
static int churn_other(int n)
{
	struct csd_ctx_desc d = small_ctx();
	int fd, i, id, bad = 0;

	fd = open(node, O_RDWR);
	if (fd < 0)
		return 2;
	d.max_tokens = OTHER_TOKENS;
	for (i = 0; i < n; i++) {
		id = ctx_create_desc(fd, &d);
		if (id <= 0 || ctx_destroy(fd, (uint32_t)id, 0, 0))
			bad++;
	}
	close(fd);
	return bad ? 1 : 0;
}

/* The reader's own file, shared: create and destroy its own, @n times. */
static int churn_self(int fd, int n)
{
	int i, id, bad = 0;

	for (i = 0; i < n; i++) {
		id = ctx_create_ioctl(fd);
		if (id <= 0 || ctx_destroy(fd, (uint32_t)id, 0, 0))
			bad++;
	}
	return bad ? 1 : 0;
}

/*
 * A contexts log read through a ring with IORING_SETUP_DEFER_TASKRUN: the
 * driver filters the log only when the CQEs are waited for, so sleeping
 * 3 ms in between keeps the device's copy of the log that long unfiltered
 * while the other processes reuse the ids.
 */
static int log_deferred(struct io_uring *ring, int fd, void *buf, uint32_t len)
{
	uint32_t numd = len / 4 - 1;
	struct nvme_uring_cmd uc;
	int r, res = 0;

	memset(&uc, 0, sizeof(uc));
	uc.opcode = CSD_ADM_GET_LOG_PAGE;
	uc.nsid = 0xffffffffu;
	uc.addr = (uint64_t)(uintptr_t)buf;
	uc.data_len = len;
	uc.cdw10 = CSD_LOG_CONTEXTS | (numd & 0xffff) << 16;
	uc.cdw11 = numd >> 16;
	r = ur_queue(ring, fd, NVME_URING_CMD_ADMIN, &uc, 9, true);
	if (r)
		return r;
	r = io_uring_submit(ring);
	if (r != 1)
		return r < 0 ? r : -EIO;
	usleep(3000);
	r = ur_reap(ring, 60, &res, NULL, NULL, true);
	return r ? r : res;
}

/*
 * Unprivileged: read the contexts log (ioctl and io_uring in turn) while
 * another open file and a process sharing ours churn contexts.  Context
 * ids are slots, reused at once: a log read by the device just before the
 * other file destroyed id X and our file created X again must not show the
 * other file's entry (its max_tokens tells it apart).
 */
static int churn_test(void)
{
	static uint8_t buf[LOG_FULL];
	const struct csd_log_ctx_hdr *h = (const void *)buf;
	const struct csd_log_ctx_entry *e = (const void *)(buf + 64);
	unsigned int reads = 0, ok = 0, eagain = 0, foreign = 0, other = 0;
	pid_t p1, p2;
	int fd, st1 = -1, st2 = -1, r, left = 2;
	struct io_uring ring;
	bool deferred;
	uint32_t i;

	fd = open(node, O_RDWR);
	if (fd < 0) {
		check(false, "churn: open");
		return 1;
	}
	/* deferred task work (Linux 6.1), else an ordinary ring */
	deferred = !ur_init(&ring, 8, IORING_SETUP_SQE128 | IORING_SETUP_CQE32 |
			    IORING_SETUP_SINGLE_ISSUER |
			    IORING_SETUP_DEFER_TASKRUN);
	if (!deferred && ur_init(&ring, 8, IORING_SETUP_SQE128 |
				 IORING_SETUP_CQE32)) {
		check(false, "churn: ring");
		return 1;
	}
	p1 = fork();
	if (p1 == 0)
		_exit(churn_other(300));
	p2 = fork();
	if (p2 == 0)
		_exit(churn_self(fd, 300));
	while (left && reads < 100000) {
		if (reads % 2 && deferred)
			r = log_deferred(&ring, fd, buf, sizeof(buf));
		else
			r = get_ctx_log(fd, reads % 2 ? &ring : NULL, 0, buf,
					sizeof(buf));
		reads++;
		if (r == -EAGAIN) {
			eagain++;
		} else if (r) {
			other++;
		} else {
			ok++;
			for (i = 0; i < h->count && i < LOG_ENTS; i++)
				if (e[i].max_tokens != 64)
					foreign++;
		}
		if (p1 > 0 && st1 < 0 && waitpid(p1, &st1, WNOHANG) == p1)
			left--;
		if (p2 > 0 && st2 < 0 && waitpid(p2, &st2, WNOHANG) == p2)
			left--;
	}
	if (st1 < 0 && p1 > 0)
		waitpid(p1, &st1, 0);
	if (st2 < 0 && p2 > 0)
		waitpid(p2, &st2, 0);
	check(p1 > 0 && WIFEXITED(st1) && WEXITSTATUS(st1) == 0 &&
	      p2 > 0 && WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
	      "churn: both churners created and destroyed 300 contexts");
	check(!foreign && !other && ok > 0,
	      "churn: %u log reads during churn (%u ok, %u EAGAIN, %u other "
	      "errors; io_uring %s): %u entries of the other file seen", reads,
	      ok, eagain, other, deferred ? "deferred 3 ms" : "immediate",
	      foreign);
	io_uring_queue_exit(&ring);
	close(fd);
	return 0;
}

/* Root run: the churn reader is a uid 1000 child (root sees everything). */
static void churn_as_user(void)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		g_pass = g_fail = 0;
		if (drop_root())
			_exit(2);
		churn_test();
		_exit(check_summary("isolation (churn, uid 1000)"));
	}
	check(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0, "churn: uid 1000 child done");
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
	check(ctx_query(fd, NULL, ida) == 0, "isolation: A uses its context");
	foreign_refused(fd, &ring, idb, "A names B's context");
	r = log_lists(fd, ida);
	check(r == 1, "isolation: A's context in the contexts log");
	if (geteuid() == 0)
		root_log_checks(fd, ida, idb);
	else
		user_log_checks(fd, &ring, ida, idb);
	destroy_refused_keeps(fd, ida);
	if (geteuid() == 0) {
		orphan_checks(fd, &ring);
		churn_as_user();
	} else {
		churn_test();
	}

	/* a child sharing A's open file is A */
	pid_t p2 = fork();

	if (p2 == 0)
		_exit(ctx_query(fd, NULL, ida) == 0 ? 0 : 1);
	check(p2 > 0 && waitpid(p2, &st, 0) == p2 && WIFEXITED(st) &&
	      WEXITSTATUS(st) == 0,
	      "isolation: a fork sharing A's open file uses A's context");

	/* B closes its file: its context is destroyed */
	if (xwrite(a2b[1], &go, 1) || waitpid(pid, &st, 0) != pid)
		check(false, "isolation: B exit");
	r = ctx_query(fd, NULL, idb);
	check(r == S_CTX_INVALID, "isolation: B's context destroyed with B's "
	      "file (CTX_QUERY -> 0x%x)", r);

	/* A closes: A's context is destroyed too */
	io_uring_queue_exit(&ring);
	close(fd);
	fd2 = open(node, O_RDWR);
	r = fd2 >= 0 ? ctx_query(fd2, NULL, ida) : -errno;
	check(r == S_CTX_INVALID, "isolation: A's context destroyed with A's "
	      "file (CTX_QUERY -> 0x%x)", r);
	if (fd2 >= 0)
		close(fd2);
	return check_summary("isolation (A)");
}
