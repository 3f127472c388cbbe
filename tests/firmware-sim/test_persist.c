// SPDX-License-Identifier: MIT
/*
 * test_persist.c - durability of the KV store on a backing file
 * (firmware-sim/kv.c persistence section, Documentation/on-media-format.md):
 * flush + crash (SIGKILL of a forked child) + reopen, clean shutdown,
 * destroy-after-flush, corrupt/truncated files, geometry mismatch and the
 * implicit checkpoint when only pending-free blocks are left.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csdfw.h"
#include "kv.h"
#include "fw_helpers.h"
#include "cu_main.h"

#define PG	4096u
#define KST(x)	CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_##x)

static char g_dir[64];
static char g_path[128];

static int suite_init(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/csd-test-persist-XXXXXX");
	if (!mkdtemp(g_dir))
		return 1;
	snprintf(g_path, sizeof(g_path), "%s/flash.img", g_dir);
	return 0;
}

static int suite_fini(void)
{
	unlink(g_path);
	rmdir(g_dir);
	return 0;
}

/* Largest KV extent of the stores the tests open (pages; 0: the default,
 * 1 MiB).  16 = the first extent: the extents do not grow, which keeps the
 * space arithmetic of most tests simple. */
static uint32_t g_extent_max = 16;

/* 4 channels x 32 blocks x 16 pages (8 MiB). */
static void mkcfg(struct csdfw_config *cfg, uint32_t channels, int format)
{
	csdfw_config_default(cfg);
	cfg->capacity = 8ull << 20;
	cfg->channels = channels;
	cfg->page_size = PG;
	cfg->pages_per_block = 16;
	cfg->threads = 1;
	cfg->max_contexts = 8;
	cfg->max_seqs = 8;
	cfg->max_tokens = 65536;
	cfg->format = format;
	cfg->extent_max_pages = g_extent_max;
	memcpy(cfg->backing, g_path, strlen(g_path) + 1);
}

static struct kv_store *sopen(uint32_t channels, int format, int *err)
{
	struct csdfw_config cfg;
	struct kv_store *s = NULL;
	int rc;

	mkcfg(&cfg, channels, format);
	rc = kv_store_open(&cfg, &s);
	if (err)
		*err = rc;
	return rc ? NULL : s;
}

static struct csd_ctx_desc mkp(uint16_t layers, uint16_t kvh, uint16_t hd,
			       uint8_t dtype, uint32_t seqs, uint32_t toks)
{
	return fwt_desc(layers, kvh, kvh, hd, dtype, seqs, toks);
}

static size_t rowb(const struct csd_ctx_desc *p)
{
	return (size_t)p->kv_heads * p->head_dim * csd_dtype_size(p->dtype);
}

/* K rows then V rows of tokens [start, start + n): finite values k/64. */
static uint8_t *gen(const struct csd_ctx_desc *p, uint32_t salt,
		    uint32_t seq, uint32_t layer, uint32_t start, uint32_t n)
{
	size_t rb = rowb(p), i, per = rb / csd_dtype_size(p->dtype);
	uint8_t *b = malloc(2 * rb * n + 1);
	uint32_t w, t;

	CU_ASSERT_FATAL(b != NULL);
	for (w = 0; w < 2; w++)
		for (t = 0; t < n; t++)
			for (i = 0; i < per; i++) {
				uint64_t x = ((uint64_t)salt << 48) ^
					     ((uint64_t)seq << 40) ^
					     ((uint64_t)layer << 32) ^
					     ((uint64_t)(start + t) << 12) ^
					     (w << 11) ^ i;
				float v = (float)((int)(fwt_rand(&x) % 255) -
						  127) / 64.0f;

				fwt_store(b + w * rb * n + t * rb, i,
					  p->dtype, v);
			}
	return b;
}

static uint16_t kapp(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		     uint32_t layer, uint32_t start, uint32_t n)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);
	size_t len = 2 * rowb(p) * n;
	uint8_t *b = gen(p, salt, seq, layer, start, n);
	struct csdfw_seg sg = { b, len };
	struct csdfw_data d = { &sg, 1, len };
	uint16_t rc = kv_append(c, seq, layer, start, n, &d, 0,
				rowb(p) * n, NULL);

	free(b);
	return rc;
}

static int kcheck(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		  uint32_t layer, uint32_t n)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);
	size_t len = 2 * rowb(p) * n;
	uint8_t *want = gen(p, salt, seq, layer, 0, n), *got = malloc(len + 1);
	struct csdfw_seg sg = { got, len };
	struct csdfw_data d = { &sg, 1, len };
	int ok;

	CU_ASSERT_FATAL(got != NULL);
	ok = kv_len(c, seq, layer) == n &&
	     (!n || (kv_read(c, seq, layer, 0, n, &d, NULL) == 0 &&
		     memcmp(want, got, len) == 0));
	free(want);
	free(got);
	return ok;
}

static struct kv_ctx *find_ctx(struct kv_store *s, uint32_t id)
{
	uint32_t i;

	for (i = 0; i < kv_store_nrecovered(s); i++) {
		struct kv_ctx *c = kv_store_recovered(s, i);

		if (c && kv_ctx_id(c) == id)
			return c;
	}
	return NULL;
}

/* Run @fn in a child that is SIGKILLed when it returns (a crash). */
static void crash_child(void (*fn)(void))
{
	pid_t pid = fork();
	int st;

	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		fn();
		kill(getpid(), SIGKILL);
		_exit(3);
	}
	CU_ASSERT_FATAL(waitpid(pid, &st, 0) == pid);
	CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static void fresh(void)
{
	unlink(g_path);
}

/* ---- flush, crash, recover ------------------------------------------------ */

/* ctx 3: f16, 2 layers x 2 kv heads x 64; chunk = 2048 tokens */
static void child_flush_then_more(void)
{
	struct csd_ctx_desc p = mkp(2, 2, 64, CSD_DTYPE_F16, 4, 10000);
	struct kv_store *s = sopen(4, 0, NULL);
	struct kv_ctx *c = NULL;

	if (!s || kv_ctx_create(s, &p, 3, &c))
		_exit(1);
	if (kapp(c, 1, 0, 0, 0, 1000) || kapp(c, 1, 0, 0, 1000, 1500) ||
	    kapp(c, 1, 2, 1, 0, 77))
		_exit(1);
	if (kv_store_flush(s))
		_exit(1);
	/* unflushed: more tokens, a reset, a new context */
	if (kapp(c, 1, 0, 0, 2500, 300) || kapp(c, 1, 1, 0, 0, 50))
		_exit(1);
	if (kv_seq_reset(c, 2))
		_exit(1);
	{
		struct kv_ctx *c2 = NULL;

		if (kv_ctx_create(s, &p, 5, &c2) || kapp(c2, 9, 0, 0, 0, 99))
			_exit(1);
	}
}

static void test_crash_recover(void)
{
	struct csd_ctx_desc p = mkp(2, 2, 64, CSD_DTYPE_F16, 4, 10000);
	struct kv_store *s;
	struct kv_ctx *c, *ref;
	float vs[128], vr[128];
	uint32_t k, h, j;
	int err;

	fresh();
	crash_child(child_flush_then_more);
	s = sopen(4, 0, &err);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_nrecovered(s) == 1);
	c = find_ctx(s, 3);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(find_ctx(s, 5) == NULL);	/* created after the flush */
	CU_ASSERT(memcmp(kv_ctx_params(c), &p, sizeof(p)) == 0);
	/* exactly the flushed state */
	CU_ASSERT(kcheck(c, 1, 0, 0, 2500));
	CU_ASSERT(kcheck(c, 1, 2, 1, 77));	/* reset undone */
	CU_ASSERT(kcheck(c, 1, 1, 0, 0));
	CU_ASSERT(kcheck(c, 1, 0, 1, 0));

	/* channel pages and the V sum match a context built in memory */
	{
		struct csdfw_config mc;
		struct kv_store *m = NULL;

		mkcfg(&mc, 4, 0);
		mc.backing[0] = '\0';
		CU_ASSERT_FATAL(kv_store_open(&mc, &m) == 0);
		CU_ASSERT_FATAL(kv_ctx_create(m, &p, 3, &ref) == 0);
		CU_ASSERT(kapp(ref, 1, 0, 0, 0, 2500) == 0);
		CU_ASSERT(kv_chan_chunks(c, 0, 0) == 1);
		for (k = 0; k < 1; k++)
			for (h = 0; h < 2; h++)
				for (j = 0; j < 64; j++) {
					const void *a = kv_chan_page(c, 0, 0,
								     h, j, k);
					const void *b = kv_chan_page(ref, 0, 0,
								     h, j, k);

					CU_ASSERT_FATAL(a && b);
					CU_ASSERT(memcmp(a, b, PG) == 0);
				}
		CU_ASSERT(kv_vsum(c, 0, 0, vs) == 2500);
		CU_ASSERT(kv_vsum(ref, 0, 0, vr) == 2500);
		CU_ASSERT(memcmp(vs, vr, sizeof(vs)) == 0);
		kv_ctx_destroy(ref);
		kv_store_close(m);
	}

	/* the recovered context works: append, reset, read */
	CU_ASSERT(kapp(c, 1, 0, 0, 2500, 2000) == 0);
	CU_ASSERT(kcheck(c, 1, 0, 0, 4500));
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 2);
	CU_ASSERT(kv_seq_reset(c, 2) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_store_close(s);	/* no commit: like a crash after the flush */

	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 3);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 4500));
	CU_ASSERT(kcheck(c, 1, 2, 1, 0));
	/* destroy + flush: gone for good, space back */
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_flush(s) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	kv_store_close(s);
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_nrecovered(s) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	kv_store_close(s);
}

/* destroy after the flush, then a crash: the context comes back intact
 * even though another context allocated space after the destroy */
static void child_destroy_then_crash(void)
{
	struct csd_ctx_desc p = mkp(1, 2, 128, CSD_DTYPE_F32, 2, 60000);
	struct kv_store *s = sopen(4, 0, NULL);
	struct kv_ctx *a = NULL, *b = NULL;

	if (!s || kv_ctx_create(s, &p, 1, &a) || kapp(a, 7, 0, 0, 0, 1500) ||
	    kv_store_flush(s))
		_exit(1);
	kv_ctx_destroy(a);
	if (kv_ctx_create(s, &p, 2, &b) || kapp(b, 8, 0, 0, 0, 1500))
		_exit(1);
}

static void test_destroy_crash(void)
{
	struct kv_store *s;
	struct kv_ctx *a;

	fresh();
	crash_child(child_destroy_then_crash);
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	a = find_ctx(s, 1);
	CU_ASSERT_FATAL(a != NULL);
	CU_ASSERT(find_ctx(s, 2) == NULL);
	CU_ASSERT(kcheck(a, 7, 0, 0, 1500));
	kv_store_close(s);
}

/* Only pending-free blocks left: the append commits and retries. */
static void test_auto_checkpoint(void)
{
	/* f32, 2 heads x 128: 8 tokens per stream page, 1024-token chunks of
	 * 256 pages; the store has 2048 pages */
	struct csd_ctx_desc p = mkp(1, 2, 128, CSD_DTYPE_F32, 2, 60000);
	struct kv_store *s;
	struct kv_ctx *a, *b;
	uint64_t total;

	fresh();
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	total = kv_store_blocks_total(s);
	CU_ASSERT_FATAL(kv_ctx_create(s, &p, 1, &a) == 0);
	CU_ASSERT(kapp(a, 1, 0, 0, 0, 2500) == 0);	/* 1252 + 512 pages */
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_ctx_destroy(a);
	/* free + pending: all of it */
	CU_ASSERT(kv_store_blocks_free(s) == total);
	CU_ASSERT_FATAL(kv_ctx_create(s, &p, 2, &b) == 0);
	CU_ASSERT(kapp(b, 2, 0, 0, 0, 20) == 0);
	/* 512 more pages: needs the destroyed context's blocks */
	CU_ASSERT(kapp(b, 2, 0, 0, 20, 1000) == 0);
	CU_ASSERT(kcheck(b, 2, 0, 0, 1020));
	/* still all-or-nothing when even the pending space is too small */
	CU_ASSERT(kapp(b, 2, 0, 0, 1020, 4000) == KST(NO_SPACE));
	CU_ASSERT(kcheck(b, 2, 0, 0, 1020));
	kv_store_close(s);	/* crash: no commit after the implicit one */

	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(find_ctx(s, 1) == NULL);
	b = find_ctx(s, 2);
	CU_ASSERT_FATAL(b != NULL);
	/* committed by the implicit checkpoint: the 20 tokens before it */
	CU_ASSERT(kcheck(b, 2, 0, 0, 20));
	kv_store_close(s);
}

/* ---- extents ---------------------------------------------------------------- */

/* Pages [p0, p1) of every stream of (seq, layer) adjacent in memory. */
static int adjacent(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		    uint32_t p0, uint32_t p1)
{
	uint32_t kvh = kv_ctx_params(c)->kv_heads, h, w, i;

	for (h = 0; h < kvh; h++)
		for (w = 0; w < 2; w++)
			for (i = p0 + 1; i < p1; i++)
				if ((const uint8_t *)kv_page(c, seq, layer, h,
						w ? KV_V : KV_K, i) !=
				    (const uint8_t *)kv_page(c, seq, layer, h,
						w ? KV_V : KV_K, i - 1) + PG)
					return 0;
	return 1;
}

/*
 * Extents of 16 pages (the default; a block here): a partly filled extent
 * survives flush + reopen; after the reopen the next page starts a new
 * extent (the reserved rest of the old one stays unused until reset), the
 * data reads back, and a file written with extents reopens with another
 * extent size.
 */
static void test_extent_reopen(void)
{
	/* f16, 1 layer x 2 kv heads x 128: 16 tokens per page */
	struct csd_ctx_desc p = mkp(1, 2, 128, CSD_DTYPE_F16, 2, 60000);
	struct csdfw_config cfg;
	struct kv_store *s;
	struct kv_ctx *c;
	uint64_t total, used;
	uint32_t t, bad = 0;

	fresh();
	mkcfg(&cfg, 4, 0);
	CU_ASSERT(cfg.extent_pages == 0);
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 16);
	total = kv_store_blocks_total(s);
	CU_ASSERT_FATAL(kv_ctx_create(s, &p, 7, &c) == 0);
	/* 6 pages + 3 tokens of extent 0: 4 streams, 4 blocks */
	CU_ASSERT(kapp(c, 1, 0, 0, 0, 83) == 0);
	CU_ASSERT(kapp(c, 2, 1, 0, 0, 20) == 0);
	CU_ASSERT(adjacent(c, 0, 0, 0, 6));
	CU_ASSERT(total - kv_store_blocks_free(s) == 8);
	CU_ASSERT(kv_store_flush(s) == 0);
	/* unflushed: decode into the reserved pages, lost by the crash */
	for (t = 83; t < 120; t++)
		bad += kapp(c, 1, 0, 0, t, 1) != 0;
	CU_ASSERT(bad == 0);
	kv_store_close(s);	/* no commit: a crash after the flush */

	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 7);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 83));
	CU_ASSERT(kcheck(c, 2, 1, 0, 20));
	CU_ASSERT(adjacent(c, 0, 0, 0, 6));
	CU_ASSERT(total - kv_store_blocks_free(s) == 8);
	used = kv_store_bytes_used(s);
	CU_ASSERT(used == (6ull + 2) * 4 * PG);
	/* decode on: page 5 fills up without space, page 6 starts a new
	 * extent (4 new blocks), whose pages are adjacent again */
	for (t = 83; t < 96; t++)
		bad += kapp(c, 1, 0, 0, t, 1) != 0;
	CU_ASSERT(total - kv_store_blocks_free(s) == 8);
	for (t = 96; t < 16 * 22; t++)
		bad += kapp(c, 1, 0, 0, t, 1) != 0;
	CU_ASSERT(total - kv_store_blocks_free(s) == 12);
	/* page 22: the next extent */
	bad += kapp(c, 1, 0, 0, 16 * 22, 16 + 1) != 0;
	CU_ASSERT(bad == 0);
	CU_ASSERT(total - kv_store_blocks_free(s) == 16);
	CU_ASSERT(adjacent(c, 0, 0, 6, 22));
	CU_ASSERT(kv_page(c, 0, 0, 0, KV_K, 6) !=
		  (const uint8_t *)kv_page(c, 0, 0, 0, KV_K, 5) + PG);
	CU_ASSERT(kcheck(c, 1, 0, 0, 16 * 23 + 1));
	/* the new extents are striped: K of head 0 moves one channel on */
	CU_ASSERT(kv_page_chan(c, 0, 0, 0, KV_K, 22) ==
		  (kv_page_chan(c, 0, 0, 0, KV_K, 6) + 1) % 4);
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_store_close(s);

	/* reopened with single-page extents: the layout is in the page
	 * tables, not in the configuration */
	mkcfg(&cfg, 4, 0);
	cfg.extent_pages = 1;
	cfg.extent_max_pages = 1;
	s = NULL;
	CU_ASSERT_FATAL(kv_store_open(&cfg, &s) == 0);
	c = find_ctx(s, 7);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 16 * 23 + 1));
	CU_ASSERT(kcheck(c, 2, 1, 0, 20));
	CU_ASSERT(kapp(c, 1, 0, 0, 16 * 23 + 1, 100) == 0);
	CU_ASSERT(kcheck(c, 1, 0, 0, 16 * 23 + 101));
	CU_ASSERT(kv_seq_reset(c, 1) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_store_close(s);

	/* and back with 16: reset and destroy give everything back */
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 7);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 16 * 23 + 101));
	CU_ASSERT(kcheck(c, 2, 1, 0, 0));
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(kapp(c, 3, 0, 0, 0, 40) == 0);
	CU_ASSERT(adjacent(c, 0, 0, 0, 3));
	CU_ASSERT(kcheck(c, 3, 0, 0, 40));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_flush(s) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	kv_store_close(s);
}

/* ---- damaged files ---------------------------------------------------------- */

static void patch(off_t off, uint8_t x)
{
	int fd = open(g_path, O_RDWR);
	uint8_t v;

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(pread(fd, &v, 1, off) == 1);
	v ^= x;
	CU_ASSERT(pwrite(fd, &v, 1, off) == 1);
	close(fd);
}

static void make_two_commits(void)
{
	struct csd_ctx_desc p = mkp(1, 1, 64, CSD_DTYPE_BF16, 2, 10000);
	struct kv_store *s;
	struct kv_ctx *c;

	fresh();
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT_FATAL(kv_ctx_create(s, &p, 4, &c) == 0);
	CU_ASSERT(kapp(c, 5, 1, 0, 0, 300) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);	/* commit 2, slot B */
	CU_ASSERT(kapp(c, 5, 1, 0, 300, 200) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);	/* commit 3, slot A */
	kv_store_close(s);
}

static void test_slot_fallback(void)
{
	struct kv_store *s;
	struct kv_ctx *c;
	int err;

	make_two_commits();
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 4);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 5, 1, 0, 500));
	kv_store_close(s);

	/* slot A (at one page) payload damaged: slot B's commit */
	patch(PG + 64 + 30, 0x10);
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 4);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 5, 1, 0, 300));
	kv_store_close(s);

	/* both damaged: refused */
	make_two_commits();
	patch(PG + 12, 0x01);			/* slot A header crc */
	{
		struct stat st;
		uint64_t slot;

		/* slot B starts right after slot A: find its magic */
		CU_ASSERT_FATAL(stat(g_path, &st) == 0);
		for (slot = 2 * PG; slot < (uint64_t)st.st_size; slot += PG) {
			char m[8];
			int fd = open(g_path, O_RDONLY);

			CU_ASSERT(pread(fd, m, 8, (off_t)slot) == 8);
			close(fd);
			if (!memcmp(m, "CSDKVMD", 8))
				break;
		}
		patch((off_t)slot + 16, 0x01);	/* its seq */
	}
	s = sopen(4, 0, &err);
	CU_ASSERT(s == NULL && err == -EUCLEAN);
	/* format=1 starts over */
	s = sopen(4, 1, &err);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_nrecovered(s) == 0);
	kv_store_close(s);
	s = sopen(4, 0, &err);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_nrecovered(s) == 0);
	kv_store_close(s);
}

static void test_bad_files(void)
{
	struct kv_store *s;
	struct stat st;
	int err;

	/* corrupt superblock */
	make_two_commits();
	patch(20, 0x40);
	s = sopen(4, 0, &err);
	CU_ASSERT(s == NULL && err == -EUCLEAN);
	/* wrong magic (not a CSD file) */
	make_two_commits();
	patch(0, 0xff);
	s = sopen(4, 0, &err);
	CU_ASSERT(s == NULL && err == -EUCLEAN);
	/* truncated */
	make_two_commits();
	CU_ASSERT_FATAL(stat(g_path, &st) == 0);
	CU_ASSERT(truncate(g_path, st.st_size / 2) == 0);
	s = sopen(4, 0, &err);
	CU_ASSERT(s == NULL && err == -EUCLEAN);
	/* geometry mismatch (and the file is left alone) */
	make_two_commits();
	s = sopen(2, 0, &err);
	CU_ASSERT(s == NULL && err == -EMEDIUMTYPE);
	{
		struct csdfw_config cfg;

		mkcfg(&cfg, 4, 0);
		cfg.capacity = 16ull << 20;
		CU_ASSERT(kv_store_open(&cfg, &s) == -EMEDIUMTYPE);
		cfg.capacity = 8ull << 20;
		cfg.pages_per_block = 8;
		CU_ASSERT(kv_store_open(&cfg, &s) == -EMEDIUMTYPE);
	}
	s = sopen(4, 0, &err);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(find_ctx(s, 4) && kcheck(find_ctx(s, 4), 5, 1, 0, 500));
	kv_store_close(s);
	/* an empty file is formatted */
	CU_ASSERT(truncate(g_path, 0) == 0);
	s = sopen(4, 0, &err);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_nrecovered(s) == 0);
	kv_store_close(s);
}

/* ---- through the firmware (csdfw) ------------------------------------------- */

static uint16_t fw_app(struct csdfw *fw, uint32_t id,
		       const struct csd_ctx_desc *p, uint32_t salt,
		       uint32_t seq, uint32_t layer, uint32_t start,
		       uint32_t n)
{
	uint8_t *b = gen(p, salt, seq, layer, start, n);
	uint16_t st = fwt_kv(fw, CSD_IO_KV_APPEND, id, seq, layer, start, n,
			     b, 2 * rowb(p) * n, NULL);

	free(b);
	return st;
}

static int fw_check(struct csdfw *fw, uint32_t id,
		    const struct csd_ctx_desc *p, uint32_t salt, uint32_t seq,
		    uint32_t layer, uint32_t n)
{
	size_t len = 2 * rowb(p) * n;
	uint8_t *want = gen(p, salt, seq, layer, 0, n), *got = malloc(len);
	int ok;

	CU_ASSERT_FATAL(got != NULL);
	ok = fwt_kv(fw, CSD_IO_KV_READ, id, seq, layer, 0, n, got, len,
		    NULL) == 0 && memcmp(want, got, len) == 0;
	/* and not one token more */
	ok = ok && fwt_kv(fw, CSD_IO_KV_READ, id, seq, layer, 0, n + 1, got,
			  0, NULL) != 0;
	free(want);
	free(got);
	return ok;
}

static struct csd_ctx_desc fw_p(void)
{
	return mkp(2, 2, 64, CSD_DTYPE_F16, 4, 8192);
}

static void child_fw(void)
{
	struct csd_ctx_desc p = fw_p();
	struct csdfw_config cfg;
	struct csdfw *fw;
	uint32_t id;

	mkcfg(&cfg, 4, 0);
	if (csdfw_create(&cfg, &fw) ||
	    fwt_create(fw, 2, 2, 2, 64, CSD_DTYPE_F16, 4, 8192, &id) ||
	    id != 1 || fw_app(fw, id, &p, 3, 1, 1, 0, 2100) ||
	    fwt_simple(fw, CSD_IO_FLUSH, 0, 0) ||
	    fw_app(fw, id, &p, 3, 1, 1, 2100, 10))
		_exit(1);
}

static void test_fw_restart(void)
{
	struct csd_ctx_desc p = fw_p();
	struct csdfw_config cfg;
	struct csdfw *fw;
	uint8_t q[64 + 4 * 8];
	struct csd_sqe s;
	const struct csd_ctx_info *info = (const void *)q;

	fresh();
	crash_child(child_fw);
	mkcfg(&cfg, 4, 0);
	CU_ASSERT_FATAL(csdfw_create(&cfg, &fw) == 0);
	s = fwt_io(CSD_IO_CTX_QUERY, 1, sizeof(q));
	CU_ASSERT(fwt_run(fw, CSDFW_Q_IO, &s, q, sizeof(q), NULL) == 0);
	CU_ASSERT(info->ctx_id == 1 && info->tokens == 2100 &&
		  info->p.kv_heads == 2 && info->p.max_tokens == 8192);
	CU_ASSERT(fw_check(fw, 1, &p, 3, 1, 1, 2100));
	/* it takes appends, and a new context gets the next id */
	CU_ASSERT(fw_app(fw, 1, &p, 3, 1, 1, 2100, 10) == 0);
	{
		uint32_t id = 0;

		CU_ASSERT(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F32, 1, 100,
				     &id) == 0);
		CU_ASSERT(id == 2);
	}
	/* a clean shutdown commits everything */
	csdfw_destroy(fw);
	CU_ASSERT_FATAL(csdfw_create(&cfg, &fw) == 0);
	CU_ASSERT(fw_check(fw, 1, &p, 3, 1, 1, 2110));
	CU_ASSERT(fwt_simple(fw, CSD_IO_CTX_DESTROY, 2, 0) == 0);
	csdfw_destroy(fw);
	/* geometry mismatch: csdfw_create fails */
	mkcfg(&cfg, 8, 0);
	CU_ASSERT(csdfw_create(&cfg, &fw) == -EMEDIUMTYPE);
	/* recovered context beyond this configuration's limits */
	mkcfg(&cfg, 4, 0);
	cfg.max_tokens = 4096;
	CU_ASSERT(csdfw_create(&cfg, &fw) == -EINVAL);
	mkcfg(&cfg, 4, 0);
	CU_ASSERT_FATAL(csdfw_create(&cfg, &fw) == 0);
	CU_ASSERT(fw_check(fw, 1, &p, 3, 1, 1, 2110));
	s = fwt_io(CSD_IO_CTX_QUERY, 2, sizeof(q));
	CU_ASSERT(fwt_run(fw, CSDFW_Q_IO, &s, q, sizeof(q), NULL) ==
		  fwt_err(VS(CTX_INVALID)));
	csdfw_destroy(fw);
}

/*
 * Growing extents (default extent_max: 16, 32, 64, 128, 256 pages here,
 * all whole blocks of 16) survive flush + reopen; the reserved, never
 * written blocks of the last extent are free again after the reopen (a
 * block is owned only through the pages the page tables name), the next
 * page starts a new extent of the first size and the channel round-robin
 * goes on.
 */
static void test_extent_grow_reopen(void)
{
	/* f16, 1 layer x 1 kv head x 128: 16 tokens per page */
	struct csd_ctx_desc p = mkp(1, 1, 128, CSD_DTYPE_F16, 2, 60000);
	struct kv_store *s;
	struct kv_ctx *c;
	uint64_t total;
	uint32_t t, ch0, bad = 0;

	g_extent_max = 0;
	fresh();
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 16);
	CU_ASSERT(kv_store_extent_max(s) == 256);
	total = kv_store_blocks_total(s);
	CU_ASSERT_FATAL(kv_ctx_create(s, &p, 3, &c) == 0);
	/* two bulk appends, 63 and 57 pages: an extent of 64 pages (the
	 * first level that holds 63), then 56 of 128 pages; K and V:
	 * 2 x (4 + 8) blocks */
	CU_ASSERT(kapp(c, 1, 0, 0, 0, 1000) == 0);
	CU_ASSERT(kapp(c, 1, 0, 0, 1000, 920) == 0);
	CU_ASSERT(total - kv_store_blocks_free(s) == 24);
	CU_ASSERT(adjacent(c, 0, 0, 0, 64));
	CU_ASSERT(adjacent(c, 0, 0, 64, 120));
	ch0 = kv_page_chan(c, 0, 0, 0, KV_K, 0);
	CU_ASSERT(kv_page_chan(c, 0, 0, 0, KV_K, 64) == (ch0 + 1) % 4);
	CU_ASSERT(kv_store_flush(s) == 0);
	/* unflushed decode into the reserved pages: no space, lost */
	for (t = 1920; t < 2000; t++)
		bad += kapp(c, 1, 0, 0, t, 1) != 0;
	CU_ASSERT(total - kv_store_blocks_free(s) == 24);
	kv_store_close(s);	/* no commit: a crash after the flush */

	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 3);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 1920));
	/* 4 of the 8 blocks of the 128-page extent hold named pages */
	CU_ASSERT(total - kv_store_blocks_free(s) == 16);
	/* decode on: page 120 starts a 16-page extent on channel ch0 + 7
	 * (the recovered 120 pages count as 7 extents of 16) */
	for (t = 1920; t < 2047; t++)
		bad += kapp(c, 1, 0, 0, t, 1) != 0;
	CU_ASSERT(total - kv_store_blocks_free(s) == 18);
	CU_ASSERT(adjacent(c, 0, 0, 120, 128));
	CU_ASSERT(kv_page_chan(c, 0, 0, 0, KV_K, 120) == (ch0 + 7) % 4);
	/* the token that completes the first SparF chunk: 128 channel pages
	 * from the open blocks */
	bad += kapp(c, 1, 0, 0, 2047, 1) != 0;
	CU_ASSERT(bad == 0);
	CU_ASSERT(kcheck(c, 1, 0, 0, 2048));
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_store_close(s);

	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = find_ctx(s, 3);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(kcheck(c, 1, 0, 0, 2048));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_store_close(s);
	g_extent_max = 16;
}

/*
 * Growing extents through the implicit checkpoint: with no free block
 * left but 4 pending ones (a reset after a flush), an append that needs a
 * growing extent of 2 blocks per stream commits the metadata and then
 * takes it (the retry must plan growing extents again, not the fallback).
 */
static void test_extent_grow_ckpt(void)
{
	/* f16, 1 kv head x 128: 16 tokens per page, 2 streams; E = 16 pages
	 * = a block, then 32 */
	struct csd_ctx_desc pb = mkp(1, 1, 128, CSD_DTYPE_F16, 2, 60000);
	struct csd_ctx_desc pa = mkp(16, 1, 128, CSD_DTYPE_F16, 8, 60000);
	struct kv_store *s;
	struct kv_ctx *a, *b;
	uint32_t sq, l;

	g_extent_max = 0;
	fresh();
	s = sopen(4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT_FATAL(kv_ctx_create(s, &pb, 1, &b) == 0);
	CU_ASSERT_FATAL(kv_ctx_create(s, &pa, 2, &a) == 0);
	CU_ASSERT(kapp(b, 1, 0, 0, 0, 1) == 0);		/* 2 blocks */
	/* one token per (seq, layer) of a: 2 blocks each, 126 in all */
	for (sq = 0; sq <= 4; sq++)
		for (l = 0; l < (sq == 0 ? 2u : sq == 4 ? 13u : 16u); l++)
			CU_ASSERT(kapp(a, 2, sq, l, 0, 1) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);
	CU_ASSERT(kv_seq_reset(a, 0) == 0);	/* 4 blocks pending */
	/* pages 1..16: the 32-page extent, 2 blocks per stream */
	CU_ASSERT(kapp(b, 1, 0, 0, 1, 256) == 0);
	CU_ASSERT(kcheck(b, 1, 0, 0, 257));
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(adjacent(b, 0, 0, 16, 17));
	kv_store_close(s);
	g_extent_max = 16;
}

static CU_TestInfo persist_tests[] = {
	{ "crash_recover", test_crash_recover },
	{ "destroy_crash", test_destroy_crash },
	{ "auto_checkpoint", test_auto_checkpoint },
	{ "slot_fallback", test_slot_fallback },
	{ "bad_files", test_bad_files },
	{ "fw_restart", test_fw_restart },
	{ "extent_reopen", test_extent_reopen },
	{ "extent_grow_reopen", test_extent_grow_reopen },
	{ "extent_grow_ckpt", test_extent_grow_ckpt },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "persist", suite_init, suite_fini, persist_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
