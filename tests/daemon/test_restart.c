// SPDX-License-Identifier: MIT
/*
 * test_restart.c - durability across a daemon crash (issue 7 item 4).
 *
 * Starts csd-fw ($CSD_FW, set by meson) with a backing file, creates a
 * context through libcsd's shm: transport, appends, flushes, keeps
 * appending from a second thread and kills the daemon with SIGKILL in the
 * middle of it: the client's calls must fail (-EIO / -ENOTCONN), never
 * hang.  Then restarts the daemon on the same file, reconnects, claims the
 * recovered (unowned) context by naming it and reads the KV back: every
 * flushed token bit-identical, the stored length consistent.  Every wait
 * is bounded (alarm() guards the whole program); nothing asserts timings.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csd.h"
#include "csd/csd_spec.h"

#include "cu_main.h"
#include "daemon_util.h"

#define HD		64
#define KVH		2
#define ROW		(KVH * HD * 2)	/* f16 */
#define FLUSHED		1500

/* The daemons' directory: their socket and the backing file. */
static struct daemon g_paths;
static char g_file[128];
static char g_opts[256];

/* Start csd-fw on the backing file, in g_paths (again after a crash). */
static int restart_daemon(struct daemon *d)
{
	const char *extra[] = { "--device-opts", g_opts, NULL };

	*d = g_paths;
	return daemon_spawn(d, extra, 0);
}

/* Deterministic K (w = 0) / V (w = 1) rows of tokens [start, start+n). */
static void gen(uint8_t *dst, uint32_t seq, uint32_t start, uint32_t n,
		uint32_t w)
{
	size_t i;

	for (i = 0; i < (size_t)n * ROW; i++) {
		uint64_t x = ((uint64_t)seq << 56) ^ ((uint64_t)w << 55) ^
			     ((uint64_t)start * ROW + i);

		x *= 0x9e3779b97f4a7c15ull;
		dst[i] = (uint8_t)(x >> 56);
	}
}

static int append(struct csd_ctx *c, uint32_t seq, uint32_t start, uint32_t n)
{
	uint8_t *k = malloc((size_t)n * ROW), *v = malloc((size_t)n * ROW);
	int rc;

	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	gen(k, seq, start, n, 0);
	gen(v, seq, start, n, 1);
	rc = csd_kv_append(c, seq, 0, start, n, k, v);
	free(k);
	free(v);
	return rc;
}

struct streamer {
	struct csd_ctx *ctx;
	atomic_int appended;		/* tokens acknowledged */
	int err;
};

static void *stream_main(void *arg)
{
	struct streamer *st = arg;
	uint32_t pos = FLUSHED;
	int rc;

	for (;;) {
		rc = append(st->ctx, 0, pos, 16);
		if (rc) {
			st->err = rc;
			return NULL;
		}
		pos += 16;
		atomic_store(&st->appended, (int)pos);
		if (pos >= 60000)
			pos = 60000;	/* CTX_FULL ends it: not expected */
	}
}

static void test_kill_restart(void)
{
	struct csd_ctx_params cp = { 2, KVH, KVH, HD, CSD_KV_F16, 4, 65536 };
	struct streamer st;
	struct daemon d;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	pthread_t th;
	uint32_t id, len, t;
	uint8_t q[64 + 4 * 8];
	uint8_t *got, *want;
	int rc, status;

	if (!getenv("CSD_FW")) {
		cu_skip("CSD_FW not set");
		return;
	}
	memset(&d, 0, sizeof(d));
	CU_ASSERT_FATAL(restart_daemon(&d) == 0);
	CU_ASSERT_FATAL(csd_dev_open(d.spec, &dev) == 0);
	CU_ASSERT_FATAL(csd_ctx_create(dev, &cp, &ctx) == 0);
	id = csd_ctx_get_id(ctx);
	CU_ASSERT(append(ctx, 0, 0, 700) == 0);
	CU_ASSERT(append(ctx, 0, 700, FLUSHED - 700) == 0);
	CU_ASSERT(append(ctx, 1, 0, 33) == 0);
	CU_ASSERT(csd_dev_flush(dev) == 0);

	/* keep appending, then kill -9 mid-stream */
	memset(&st, 0, sizeof(st));
	st.ctx = ctx;
	atomic_init(&st.appended, FLUSHED);
	CU_ASSERT_FATAL(pthread_create(&th, NULL, stream_main, &st) == 0);
	for (t = 0; t < WAIT_MS / 5 && atomic_load(&st.appended) < FLUSHED + 160;
	     t++)
		sleep_ms(5);
	status = daemon_stop(&d, SIGKILL);
	CU_ASSERT(status != -1 && WIFSIGNALED(status) &&
		  WTERMSIG(status) == SIGKILL);
	pthread_join(th, NULL);	/* bounded: alarm() in main */
	CU_ASSERT(st.err == -EIO || st.err == -ENOTCONN);
	if (st.err != -EIO && st.err != -ENOTCONN)
		fprintf(stderr, "\n  streaming append after kill: %d\n", st.err);
	/* new calls fail too */
	rc = append(ctx, 1, 33, 1);
	CU_ASSERT(rc == -EIO || rc == -ENOTCONN);
	rc = csd_dev_flush(dev);
	CU_ASSERT(rc == -EIO || rc == -ENOTCONN);
	csd_dev_close(dev);	/* frees the dead context handle too */

	/* restart on the same backing file */
	CU_ASSERT_FATAL(restart_daemon(&d) == 0);
	CU_ASSERT_FATAL(csd_dev_open(d.spec, &dev) == 0);
	{
		struct csd_ctx_entry e[8];
		int n = csd_dev_list_ctx(dev, e, 8), i, found = 0;

		CU_ASSERT(n >= 1);
		for (i = 0; i < n && i < 8; i++)
			if (e[i].id == id) {
				found = 1;
				CU_ASSERT(e[i].kv_heads == KVH &&
					  e[i].head_dim == HD &&
					  e[i].max_tokens == 65536);
			}
		CU_ASSERT(found);
	}
	/* naming the orphan claims it */
	memset(q, 0, sizeof(q));
	CU_ASSERT_FATAL(dev_io(dev, CSD_IO_CTX_QUERY, id, 0, 0, 0, q,
			       sizeof(q), NULL) == 0);
	{
		const struct csd_seq_info *si = (const void *)(q + 64);

		len = si[0].max_len;
		/* flushed tokens all there; unflushed ones may be lost */
		CU_ASSERT(len >= FLUSHED);
		CU_ASSERT(len <= (uint32_t)atomic_load(&st.appended) + 16);
		CU_ASSERT(si[1].max_len == 33);
	}
	got = malloc((size_t)len * ROW * 2);
	want = malloc((size_t)len * ROW * 2);
	CU_ASSERT_FATAL(got && want);
	gen(want, 0, 0, len, 0);
	gen(want + (size_t)len * ROW, 0, 0, len, 1);
	/* bit-identical: the whole stored length, in pieces */
	for (t = 0; t < len;) {
		uint32_t n = len - t < 512 ? len - t : 512;
		uint8_t *buf = malloc((size_t)n * ROW * 2);

		CU_ASSERT_FATAL(buf != NULL);
		CU_ASSERT(dev_io(dev, CSD_IO_KV_READ, id, 0, t, n, buf,
				 n * ROW * 2, NULL) == 0);
		memcpy(got + (size_t)t * ROW, buf, (size_t)n * ROW);
		memcpy(got + (size_t)len * ROW + (size_t)t * ROW,
		       buf + (size_t)n * ROW, (size_t)n * ROW);
		free(buf);
		t += n;
	}
	CU_ASSERT(memcmp(got, want, (size_t)len * ROW * 2) == 0);
	free(got);
	free(want);
	/* and nothing beyond it */
	{
		uint8_t one[ROW * 2];

		CU_ASSERT(dev_io(dev, CSD_IO_KV_READ, id, 0, len, 1, one,
				 sizeof(one), NULL) != 0);
	}
	/* the claimed context takes appends and can be destroyed */
	{
		uint8_t kv[ROW * 2];

		gen(kv, 0, len, 1, 0);
		gen(kv + ROW, 0, len, 1, 1);
		CU_ASSERT(dev_io(dev, CSD_IO_KV_APPEND, id, 0, len, 1, kv,
				 sizeof(kv), NULL) == 0);
	}
	CU_ASSERT(csd_dev_flush(dev) == 0);
	CU_ASSERT(dev_io(dev, CSD_IO_CTX_DESTROY, id, 0, 0, 0, NULL, 0,
			 NULL) == 0);
	csd_dev_close(dev);
	status = daemon_stop(&d, SIGTERM);
	CU_ASSERT(status != -1 && WIFEXITED(status) &&
		  WEXITSTATUS(status) == 0);
}

static int suite_init(void)
{
	if (daemon_dir_make(&g_paths, "restart"))
		return 1;
	snprintf(g_file, sizeof(g_file), "%s/flash.img", g_paths.dir);
	snprintf(g_opts, sizeof(g_opts),
		 "backing=%s,capacity=64M,channels=4,block=16,threads=1",
		 g_file);
	return 0;
}

static int suite_fini(void)
{
	kill_leftovers();	/* a FATAL assertion's daemon */
	unlink(g_file);
	daemon_dir_remove(&g_paths);
	return 0;
}

static CU_TestInfo restart_tests[] = {
	{ "kill_restart", test_kill_restart },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "restart", suite_init, suite_fini, restart_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	alarm(240);	/* a hang is a failure, not a stuck test run */
	return cu_run(argc, argv, suites);
}
