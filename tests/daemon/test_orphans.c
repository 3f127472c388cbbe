// SPDX-License-Identifier: MIT
/*
 * test_orphans.c - contexts without an owner ("orphans", e.g. recovered
 * from a backing file when the daemon starts) belong to the first client
 * that names one.  The device interface (devif.c) runs in this process:
 * contexts are created straight through the firmware before any client
 * attaches, then devif_scan_orphans() marks them, as devif_create() does
 * at start-up.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "csd.h"
#include "csd/csd_spec.h"
#include "csdfw.h"
#include "devif.h"
#include "ivshm_server.h"

#include "cu_main.h"
#include "daemon_util.h"

struct server {
	struct devif *d;
	int lfd, stop;
	struct daemon dd;	/* socket directory (served in-process) */
	pthread_t th;
	int rc;
};

static void *serve(void *arg)
{
	struct server *s = arg;

	s->rc = devif_run(s->d, s->lfd, s->stop);
	return NULL;
}

/* Create a context straight in the firmware; its id or 0. */
static uint32_t fw_ctx_create(struct csdfw *fw)
{
	struct csd_ctx_desc desc = {
		.layers = 1, .kv_heads = 1, .q_heads = 1, .head_dim = 64,
		.dtype = CSD_DTYPE_F32, .max_seqs = 1, .max_tokens = 16,
	};
	struct csdfw_seg seg = { &desc, sizeof(desc) };
	struct csdfw_data data = { &seg, 1, sizeof(desc) };
	struct csd_sqe sqe = { .opcode = CSD_IO_CTX_CREATE, .nsid = CSD_NSID,
			       .cdw10 = sizeof(desc) / 4 };
	struct csd_cqe cqe;

	csdfw_exec(fw, CSDFW_Q_IO, &sqe, &data, &cqe);
	return cqe.status >> 1 ? 0 : cqe.dw0;
}

static int server_start(struct server *s)
{
	struct devif_opts o = {
		.shm_size = 8u << 20, .io_queues = 2, .depth = 16,
		.max_clients = 4, .hb_ms = 100, .poll_us = 0,
		.log_level = DEVIF_LOG_INFO,
	};
	struct csdfw_config cfg;

	memset(s, 0, sizeof(*s));
	s->lfd = s->stop = -1;
	csdfw_config_default(&cfg);
	cfg.capacity = 256u << 20;
	if (devif_create(&o, &cfg, &s->d))
		return -1;
	if (daemon_dir_make(&s->dd, "orphan"))
		return -1;
	s->lfd = ivshm_listen(s->dd.sock);
	s->stop = eventfd(0, EFD_CLOEXEC);
	return s->lfd < 0 || s->stop < 0 ? -1 : 0;
}

static int server_run(struct server *s)
{
	return pthread_create(&s->th, NULL, serve, s) ? -1 : 0;
}

static void server_stop(struct server *s)
{
	eventfd_write(s->stop, 1);
	pthread_join(s->th, NULL);
	CU_ASSERT_EQUAL(s->rc, 0);
	devif_destroy(s->d);
	close(s->lfd);
	close(s->stop);
	daemon_dir_remove(&s->dd);
}

/* CTX_QUERY / CTX_DESTROY of @id: 0, the whole status field or -errno. */
static int query(struct csd_dev *dev, uint32_t id)
{
	uint8_t info[64 + 8];

	return dev_io(dev, CSD_IO_CTX_QUERY, id, 0, 0, 0, info, sizeof(info),
		      NULL);
}

static int destroy(struct csd_dev *dev, uint32_t id)
{
	return dev_io(dev, CSD_IO_CTX_DESTROY, id, 0, 0, 0, NULL, 0, NULL);
}

static void test_claim(void)
{
	const int inval = CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_INVALID) |
			  CSD_STATUS_DNR;
	struct server s;
	struct csd_dev *a = NULL, *b = NULL;
	uint32_t x, y;
	int i;

	CU_ASSERT_EQUAL_FATAL(server_start(&s), 0);
	/* nothing in a fresh firmware */
	CU_ASSERT_EQUAL(devif_scan_orphans(s.d), 0);
	x = fw_ctx_create(devif_fw(s.d));
	y = fw_ctx_create(devif_fw(s.d));
	CU_ASSERT_FATAL(x && y && x != y);
	CU_ASSERT_EQUAL(devif_scan_orphans(s.d), 2);
	CU_ASSERT_EQUAL(devif_scan_orphans(s.d), 0);	/* already marked */
	CU_ASSERT_EQUAL_FATAL(server_run(&s), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(s.dd.spec, &a), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(s.dd.spec, &b), 0);
	/* b names x first: b owns it, a gets the ownership error */
	CU_ASSERT_EQUAL(query(b, x), 0);
	CU_ASSERT_EQUAL(query(a, x), inval);
	CU_ASSERT_EQUAL(destroy(a, x), inval);
	CU_ASSERT_EQUAL(query(b, x), 0);
	/* a claims y with a destroy: gone, b never reaches it */
	CU_ASSERT_EQUAL(destroy(a, y), 0);
	CU_ASSERT_EQUAL(query(b, y), inval);
	CU_ASSERT(!ctx_listed(a, y));
	/* a claimed orphan is like any owned context: it dies with its
	 * owner's connection */
	CU_ASSERT(ctx_listed(a, x));
	csd_dev_close(b);
	for (i = 0; i < 500 && ctx_listed(a, x); i++)
		sleep_ms(10);
	CU_ASSERT(!ctx_listed(a, x));
	csd_dev_close(a);
	server_stop(&s);
}

static CU_TestInfo orphan_tests[] = {
	{ "claim", test_claim },
	CU_TEST_INFO_NULL,
};

static int suite_init(void)
{
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static const struct cu_suite suites[] = {
	{ "orphans", suite_init, NULL, orphan_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
