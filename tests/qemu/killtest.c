// SPDX-License-Identifier: MIT
/*
 * killtest.c - the daemon dies mid-stream (guest test).
 *
 * Keeps commands in flight on /dev/csdN through three paths at once
 * (uring_cmds, DEPTH deep; a thread of ioctls; a thread using libcsd's
 * kernel transport), prints the marker line "CSD-KILL-READY" that
 * tests/qemu/run.sh waits for on the console before it kills csd-fw with
 * SIGKILL, then checks:
 *   - every path sees its commands fail within the driver's I/O timeout
 *     (/sys/module/csd/parameters/io_timeout, default 30 s) + a margin,
 *   - every uring_cmd in flight completes (none hangs),
 *   - new commands fail at once,
 *   - the dead device can be unbound from csd.ko while this process still
 *     holds three open files (the module itself stays pinned by open files
 *     until they are closed: guest-init.sh runs `rmmod csd` afterwards),
 *     and the held files then fail cleanly.
 * Usage: killtest [/dev/csd0]
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "csd.h"
#include "guest_util.h"

#define DEPTH		16
#define MARGIN_S	15.0

static const char *node = "/dev/csd0";
static atomic_bool ready;
static double t_ready;

struct path_result {
	double t_fail;		/* first failure, seconds after ready */
	int err;
	unsigned long n;	/* commands completed before the failure */
};

static struct path_result r_ioctl, r_lib;

static void wait_ready(void)
{
	while (!atomic_load(&ready))
		usleep(1000);
}

static void *ioctl_thread(void *arg)
{
	int fd = *(int *)arg;
	uint32_t id;
	int r;

	r = ctx_create_ioctl(fd);
	if (r <= 0) {
		r_ioctl.err = r;
		r_ioctl.t_fail = -1;
		return NULL;
	}
	id = (uint32_t)r;
	for (;;) {
		r = ctx_query(fd, NULL, id);
		if (r && atomic_load(&ready)) {
			r_ioctl.t_fail = now_s() - t_ready;
			r_ioctl.err = r;
			return NULL;
		}
		if (r) {
			r_ioctl.err = r;
			r_ioctl.t_fail = -1;
			return NULL;
		}
		r_ioctl.n++;
		if (r_ioctl.n == 20)
			wait_ready();
	}
}

static void *lib_thread(void *arg)
{
	struct csd_ctx *ctx = arg;
	struct csd_ctx_usage u;
	int r;

	for (;;) {
		r = csd_ctx_query(ctx, &u, NULL, 0);
		if (r && atomic_load(&ready)) {
			r_lib.t_fail = now_s() - t_ready;
			r_lib.err = r;
			return NULL;
		}
		if (r) {
			r_lib.err = r;
			r_lib.t_fail = -1;
			return NULL;
		}
		r_lib.n++;
		if (r_lib.n == 20)
			wait_ready();
	}
}

static double io_timeout(void)
{
	FILE *fp = fopen("/sys/module/csd/parameters/io_timeout", "r");
	int v = 30;

	if (fp) {
		if (fscanf(fp, "%d", &v) != 1)
			v = 30;
		fclose(fp);
	}
	return v > 0 ? v : 30;
}

/* Unbind the PCI function behind /sys/class/csd/<node>: 0 or -errno. */
static int unbind(const char *dev)
{
	const char *name = strrchr(dev, '/');
	char path[256], link[256];
	const char *bdf;
	ssize_t n;
	FILE *fp;
	int rc = 0;

	snprintf(path, sizeof(path), "/sys/class/csd/%s/device",
		 name ? name + 1 : dev);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return -errno;
	link[n] = 0;
	bdf = strrchr(link, '/');
	bdf = bdf ? bdf + 1 : link;
	fp = fopen("/sys/bus/pci/drivers/csd/unbind", "w");
	if (!fp)
		return -errno;
	if (fputs(bdf, fp) < 0)
		rc = -EIO;
	if (fclose(fp))
		rc = -errno;
	return rc;
}

int main(int argc, char **argv)
{
	static uint8_t bufs[DEPTH][64];
	struct nvme_uring_cmd uc;
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 1, .q_heads = 1, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 1, .max_tokens = 16,
	};
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	pthread_t th_ioctl, th_lib;
	struct io_uring ring;
	unsigned int inflight = 0;
	unsigned long done_ok = 0, done_err = 0, hung = 0;
	double limit = io_timeout() + MARGIN_S, t_fail = -1, t0;
	uint64_t result, ud;
	int fd, fd_lib, r, res, id, first_err = 0;
	char spec[64];

	if (argc > 1)
		node = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(node, O_RDWR);
	fd_lib = open(node, O_RDWR);
	if (fd < 0 || fd_lib < 0 ||
	    ur_init(&ring, 2 * DEPTH, IORING_SETUP_SQE128 |
		    IORING_SETUP_CQE32)) {
		check(false, "kill: open %s and a uring", node);
		return check_summary("killtest");
	}
	snprintf(spec, sizeof(spec), "%s", node);
	r = csd_dev_open(spec, &dev);
	if (!r)
		r = csd_ctx_create(dev, &p, &ctx);
	check(!r, "kill: libcsd open %s and create a context -> %d", node, r);
	id = ctx_create_ioctl(fd);
	check(id > 0, "kill: context %d for the uring stream", id);
	if (r || id <= 0)
		return check_summary("killtest");

	pthread_create(&th_ioctl, NULL, ioctl_thread, &fd_lib);
	pthread_create(&th_lib, NULL, lib_thread, ctx);

	/* stream: keep DEPTH CTX_QUERYs in flight */
	memset(&uc, 0, sizeof(uc));
	uc.opcode = CSD_IO_CTX_QUERY;
	uc.nsid = CSD_NSID;
	uc.data_len = 64;
	uc.cdw10 = 16;
	uc.cdw12 = (uint32_t)id;
	t0 = now_s();
	for (;;) {
		while (t_fail < 0 && inflight < DEPTH) {
			uc.addr = (uint64_t)(uintptr_t)bufs[inflight];
			if (ur_queue(&ring, fd, NVME_URING_CMD_IO, &uc,
				     inflight + 1, true))
				break;
			inflight++;
		}
		io_uring_submit(&ring);
		if (!inflight)
			break;
		r = ur_reap(&ring, limit, &res, &result, &ud, true);
		if (r) {
			hung = inflight;
			break;
		}
		inflight--;
		if (res == 0) {
			done_ok++;
		} else {
			done_err++;
			if (t_fail < 0) {
				t_fail = atomic_load(&ready) ?
					 now_s() - t_ready : -2;
				first_err = res;
			}
		}
		if (!atomic_load(&ready) && done_ok >= 200) {
			t_ready = now_s();
			atomic_store(&ready, true);
			/* the host kills csd-fw when it sees this line */
			printf("CSD-KILL-READY\n");
			fflush(stdout);
		}
		if (atomic_load(&ready) && t_fail < 0 &&
		    now_s() - t_ready > limit)
			break;
		if (now_s() - t0 > 3 * limit)
			break;
	}
	pthread_join(th_ioctl, NULL);
	pthread_join(th_lib, NULL);
	printf("killtest: uring stream %lu ok / %lu failed, first error %d "
	       "after %.1f s; ioctl thread %lu ok, error %d after %.1f s; "
	       "libcsd %lu ok, error %d after %.1f s (limit %.0f s)\n",
	       done_ok, done_err, first_err, t_fail, r_ioctl.n, r_ioctl.err,
	       r_ioctl.t_fail, r_lib.n, r_lib.err, r_lib.t_fail, limit);
	check(atomic_load(&ready), "kill: stream running before the kill "
	      "(%lu commands)", done_ok);
	check(t_fail >= 0 && t_fail <= limit, "kill: uring_cmd stream fails "
	      "within the timeout (%.1f s, res %d)", t_fail, first_err);
	check(!hung, "kill: every uring_cmd in flight completed (%lu hung)",
	      (unsigned long)hung);
	check(r_ioctl.t_fail >= 0 && r_ioctl.t_fail <= limit,
	      "kill: ioctl stream fails within the timeout (%.1f s, %d)",
	      r_ioctl.t_fail, r_ioctl.err);
	check(r_lib.t_fail >= 0 && r_lib.t_fail <= limit && r_lib.err == -EIO,
	      "kill: libcsd calls fail with -EIO within the timeout "
	      "(%.1f s, %d)", r_lib.t_fail, r_lib.err);

	/* new commands fail at once */
	t0 = now_s();
	r = ctx_query(fd, NULL, (uint32_t)id);
	check(r != 0 && now_s() - t0 < 2.0, "kill: new ioctl fails at once "
	      "(%d in %.2f s)", r, now_s() - t0);
	t0 = now_s();
	uc.addr = (uint64_t)(uintptr_t)bufs[0];
	r = ur_cmd(&ring, fd, false, &uc, &result);
	check(r != 0 && now_s() - t0 < 2.0, "kill: new uring_cmd fails at "
	      "once (%d in %.2f s)", r, now_s() - t0);
	{
		struct csd_ctx_usage u;

		t0 = now_s();
		r = csd_ctx_query(ctx, &u, NULL, 0);
		check(r == -EIO && now_s() - t0 < 2.0, "kill: new libcsd call "
		      "fails at once (%d in %.2f s)", r, now_s() - t0);
	}

	/* remove the dead device while this process holds three open files */
	r = unbind(node);
	check(r == 0, "kill: unbind the dead device with files open (%d)", r);
	r = ctx_query(fd, NULL, (uint32_t)id);
	check(r < 0, "kill: ioctl on a file of the removed device fails "
	      "cleanly (%d)", r);
	r = ur_cmd(&ring, fd, false, &uc, &result);
	check(r < 0, "kill: uring_cmd on a file of the removed device fails "
	      "cleanly (%d)", r);
	csd_ctx_destroy(ctx);
	csd_dev_close(dev);
	io_uring_queue_exit(&ring);
	close(fd);
	close(fd_lib);
	return check_summary("killtest");
}
