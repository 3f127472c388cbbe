// SPDX-License-Identifier: MIT
/* test_kv.c - unit tests of the KV context manager (firmware-sim/kv.c). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn_internal.h"
#include "fw_helpers.h"
#include "kv.h"
#include "cu_main.h"

#define PG	4096u

/* ---- helpers ------------------------------------------------------------ */

/* A store whose extents grow from @extent to @extent_max pages (0: the
 * defaults). */
static struct kv_store *open_store_g(uint64_t pages_per_channel, uint32_t ch,
				     uint32_t ppb, uint32_t extent,
				     uint32_t extent_max, const char *backing)
{
	struct csdfw_config cfg;
	struct kv_store *s = NULL;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.capacity = pages_per_channel * ch * PG;
	cfg.channels = ch;
	cfg.page_size = PG;
	cfg.pages_per_block = ppb;
	cfg.extent_pages = extent;
	cfg.extent_max_pages = extent_max;
	if (backing)
		snprintf(cfg.backing, sizeof(cfg.backing), "%s", backing);
	rc = kv_store_open(&cfg, &s);
	CU_ASSERT(rc == 0);
	return rc ? NULL : s;
}

/* A store with extents of @extent pages that do not grow. */
static struct kv_store *open_store_x(uint64_t pages_per_channel, uint32_t ch,
				     uint32_t ppb, uint32_t extent,
				     const char *backing)
{
	return open_store_g(pages_per_channel, ch, ppb, extent, extent,
			    backing);
}

/* Single-page extents: the page-level placement the older tests check. */
static struct kv_store *open_store(uint64_t pages_per_channel, uint32_t ch,
				   uint32_t ppb, const char *backing)
{
	return open_store_x(pages_per_channel, ch, ppb, 1, backing);
}

static struct csd_ctx_desc mkp(uint16_t layers, uint16_t kvh, uint16_t hd,
				 uint8_t dtype, uint32_t seqs, uint32_t toks)
{
	return fwt_desc(layers, kvh, kvh, hd, dtype, seqs, toks);
}

static struct kv_ctx *mkctx(struct kv_store *s, struct csd_ctx_desc p,
			    uint32_t id)
{
	struct kv_ctx *c = NULL;

	CU_ASSERT_FATAL(kv_ctx_create(s, &p, id, &c) == 0);
	CU_ASSERT_FATAL(c != NULL);
	return c;
}

static uint32_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/* Deterministic "random" row content (any bit pattern, any dtype). */
static void gen_row(uint8_t *dst, uint32_t bytes, uint32_t salt,
		    uint32_t layer, uint32_t tok, uint32_t head, uint32_t which)
{
	uint64_t key = ((uint64_t)salt << 52) ^ ((uint64_t)layer << 40) ^
		       ((uint64_t)tok << 12) ^ ((uint64_t)head << 1) ^ which;
	uint32_t i, v;

	for (i = 0; i < bytes / 4; i++) {
		v = mix(key * 0x9e3779b97f4a7c15ull + i);
		memcpy(dst + 4 * i, &v, 4);
	}
}

static uint32_t hrow(const struct kv_ctx *c)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);

	return p->head_dim * csd_dtype_size(p->dtype);
}

static size_t rowb(const struct kv_ctx *c)
{
	return (size_t)hrow(c) * kv_ctx_params(c)->kv_heads;
}

/* K[ntok][kvh][hd] then V[...] of tokens [start, start + ntok). */
static uint8_t *gen_kv(const struct kv_ctx *c, uint32_t salt, uint32_t layer,
		       uint32_t start, uint32_t ntok)
{
	uint32_t kvh = kv_ctx_params(c)->kv_heads, hr = hrow(c), t, h, w;
	size_t rb = rowb(c);
	uint8_t *b = malloc(2 * rb * ntok + 1);

	CU_ASSERT_FATAL(b != NULL);
	for (w = 0; w < 2; w++)
		for (t = 0; t < ntok; t++)
			for (h = 0; h < kvh; h++)
				gen_row(b + w * rb * ntok + t * rb + h * hr,
					hr, salt, layer, start + t, h, w);
	return b;
}

/* Append through a data buffer split into @nseg odd-sized segments. */
static uint16_t app_sg(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		       uint32_t layer, uint32_t start, uint32_t ntok,
		       unsigned int nseg, struct model_work *w)
{
	uint8_t *b = gen_kv(c, salt, layer, start, ntok);
	size_t len = 2 * rowb(c) * ntok, off = 0;
	struct csdfw_seg seg[8];
	struct csdfw_data d;
	unsigned int i;
	uint16_t rc;

	if (nseg < 1)
		nseg = 1;
	if (nseg > 8)
		nseg = 8;
	for (i = 0; i < nseg; i++) {
		size_t n = i + 1 == nseg ? len - off : (len / nseg) | 1;

		if (n > len - off)
			n = len - off;
		seg[i].addr = b + off;
		seg[i].len = n;
		off += n;
	}
	d.seg = seg;
	d.nseg = nseg;
	d.len = len;
	rc = kv_append(c, seq, layer, start, ntok, &d, 0, rowb(c) * ntok, w);
	free(b);
	return rc;
}

static uint16_t app(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		    uint32_t layer, uint32_t start, uint32_t ntok,
		    struct model_work *w)
{
	return app_sg(c, salt, seq, layer, start, ntok, 1, w);
}

/* kv_read of [start, start+ntok) compared with the generator. */
static int check_read(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		      uint32_t layer, uint32_t start, uint32_t ntok,
		      unsigned int nseg)
{
	uint8_t *want = gen_kv(c, salt, layer, start, ntok);
	size_t len = 2 * rowb(c) * ntok, off = 0;
	uint8_t *got = calloc(1, len + 1);
	struct csdfw_seg seg[4];
	struct csdfw_data d;
	unsigned int i;
	int ok;

	CU_ASSERT_FATAL(got != NULL);
	if (nseg < 1 || nseg > 4)
		nseg = 1;
	for (i = 0; i < nseg; i++) {
		size_t n = i + 1 == nseg ? len - off : (len / nseg) | 3;

		if (n > len - off)
			n = len - off;
		seg[i].addr = got + off;
		seg[i].len = n;
		off += n;
	}
	d.seg = seg;
	d.nseg = nseg;
	d.len = len;
	ok = kv_read(c, seq, layer, start, ntok, &d, NULL) == 0 &&
	     memcmp(want, got, len) == 0;
	free(want);
	free(got);
	return ok;
}

/* Every row of every page of (seq, layer) via kv_page(). */
static int check_pages(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		       uint32_t layer)
{
	uint32_t len = kv_len(c, seq, layer), tpp = kv_tokens_per_page(c);
	uint32_t kvh = kv_ctx_params(c)->kv_heads, hr = hrow(c);
	uint8_t row[1024];
	uint32_t t, h, w;

	for (w = 0; w < 2; w++)
		for (h = 0; h < kvh; h++)
			for (t = 0; t < len; t++) {
				const uint8_t *pg = kv_page(c, seq, layer, h,
						w ? KV_V : KV_K, t / tpp);

				if (!pg)
					return 0;
				gen_row(row, hr, salt, layer, t, h, w);
				if (memcmp(pg + (t % tpp) * hr, row, hr))
					return 0;
			}
	return 1;
}

static uint32_t rnd(uint32_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 17;
	*st ^= *st << 5;
	return *st;
}

/* ---- round trip ------------------------------------------------------------ */

static void roundtrip_one(uint8_t dtype, uint16_t hd)
{
	struct kv_store *s = open_store(256, 4, 4, NULL);
	uint32_t tpp, n, pos, k, seed = 12345u + hd + dtype;
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 3, hd, dtype, 4, 100000), 1);
	tpp = kv_tokens_per_page(c);
	CU_ASSERT(tpp == PG / (hd * csd_dtype_size(dtype)));
	n = 10 * tpp + 3;	/* 11 pages per stream: > 2 blocks/channel */

	/* seq 0: many small appends (scatter/gather), interleaved with
	 * seq 2 (other content) and layer 0 of seq 0 */
	for (pos = 0; pos < n;) {
		uint32_t m = 1 + rnd(&seed) % 7;

		if (m > n - pos)
			m = n - pos;
		CU_ASSERT_FATAL(app_sg(c, 0, 0, 1, pos, m, 1 + m % 4, NULL) == 0);
		CU_ASSERT_FATAL(app(c, 7, 2, 1, pos, m, NULL) == 0);
		CU_ASSERT_FATAL(app(c, 9, 0, 0, pos, m, NULL) == 0);
		pos += m;
		CU_ASSERT(kv_len(c, 0, 1) == pos);
	}
	/* seq 1: one bulk append of the same content */
	CU_ASSERT(app(c, 0, 1, 1, 0, n, NULL) == 0);
	CU_ASSERT(kv_len(c, 1, 1) == n);
	CU_ASSERT(kv_len(c, 1, 0) == 0);
	CU_ASSERT(kv_len(c, 3, 1) == 0);

	CU_ASSERT(check_read(c, 0, 0, 1, 0, n, 1));
	CU_ASSERT(check_read(c, 0, 1, 1, 0, n, 3));
	CU_ASSERT(check_read(c, 7, 2, 1, 0, n, 2));
	CU_ASSERT(check_read(c, 9, 0, 0, 0, n, 1));
	CU_ASSERT(check_pages(c, 0, 0, 1));
	CU_ASSERT(check_pages(c, 0, 1, 1));
	CU_ASSERT(check_pages(c, 7, 2, 1));
	CU_ASSERT(check_pages(c, 9, 0, 0));
	for (k = 0; k < 30; k++) {
		uint32_t a = rnd(&seed) % n, b = 1 + rnd(&seed) % (n - a);

		CU_ASSERT(check_read(c, 0, 1, 1, a, b, 1 + k % 4));
		CU_ASSERT(check_read(c, 0, 0, 1, a, b, 1));
	}
	CU_ASSERT(kv_store_bytes_stored(s) == 4ull * n * rowb(c) * 2);
	CU_ASSERT(kv_store_bytes_used(s) ==
		  4ull * ((n + tpp - 1) / tpp) * 6 * PG);
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	CU_ASSERT(kv_store_bytes_stored(s) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	kv_store_close(s);
}

static void test_roundtrip(void)
{
	static const uint16_t hds[] = { 64, 80, 128, 256 };
	uint8_t dt;
	size_t i;

	for (dt = 0; dt < CSD_DTYPE_COUNT; dt++)
		for (i = 0; i < sizeof(hds) / sizeof(hds[0]); i++)
			roundtrip_one(dt, hds[i]);
}

static void test_geometry(void)
{
	struct csdfw_config cfg;
	struct kv_store *s = NULL;
	struct kv_ctx *c = NULL;
	struct csd_ctx_desc p;

	memset(&cfg, 0, sizeof(cfg));
	cfg.channels = 3;
	cfg.page_size = PG;
	cfg.pages_per_block = 4;
	/* 10 blocks -> 3 per channel, the rest is dropped */
	cfg.capacity = 10ull * 4 * PG + 100;
	CU_ASSERT_FATAL(kv_store_open(&cfg, &s) == 0);
	CU_ASSERT(kv_store_blocks_total(s) == 9);
	CU_ASSERT(kv_store_blocks_free(s) == 9);
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);

	p = mkp(1, 1, 80, CSD_DTYPE_F16, 1, 10);
	CU_ASSERT(kv_ctx_create(s, &p, 5, &c) == 0);
	CU_ASSERT(kv_tokens_per_page(c) == 25);
	CU_ASSERT(kv_ctx_id(c) == 5);
	CU_ASSERT(kv_ctx_params(c)->head_dim == 80);
	kv_ctx_destroy(c);
	c = NULL;
	/* a head row larger than a page cannot be laid out */
	p = mkp(1, 1, 2048, CSD_DTYPE_F32, 1, 10);
	CU_ASSERT(kv_ctx_create(s, &p, 6, &c) == VS(UNSUPPORTED));
	CU_ASSERT(c == NULL);
	kv_store_close(s);

	/* bad geometry */
	cfg.capacity = 2ull * 4 * PG;	/* fewer blocks than channels */
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.capacity = 1 << 20;
	cfg.channels = 0;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.channels = CSDFW_MAX_CHANNELS + 1;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.channels = 2;
	cfg.page_size = 3000;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.page_size = PG;
	cfg.pages_per_block = 0;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.pages_per_block = 4;
	snprintf(cfg.backing, sizeof(cfg.backing),
		 "/nonexistent-csd-dir/x/flash.img");
	CU_ASSERT(kv_store_open(&cfg, &s) == -ENOENT);
	CU_ASSERT(s == NULL);
}

/* ---- striping ----------------------------------------------------------- */

static void test_striping(void)
{
	struct kv_store *s = open_store(64, 8, 4, NULL);
	struct model_work w;
	struct kv_ctx *c;
	uint32_t tpp, ch, i, cnt[8] = { 0 };
	const void **ptrs;
	size_t np = 0, a, b;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 4, 128, CSD_DTYPE_F16, 2, 4096), 1);
	tpp = kv_tokens_per_page(c);
	CU_ASSERT(tpp == 16);

	/* one page index of 8 streams: one page on each channel */
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 0, 0, 0, 0, tpp, &w) == 0);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.wr_pages[ch] == 1);
	CU_ASSERT(w.link_in == 0 && w.link_out == 0);
	/* filling the partial last page programs it again */
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 0, 0, 0, tpp, 3, &w) == 0);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.wr_pages[ch] == 1);
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 0, 0, 0, tpp + 3, 1, &w) == 0);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.wr_pages[ch] == 1);
	/* page indices 1..15: 15 pages per channel */
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 0, 0, 0, tpp + 4, 15 * tpp - 4, &w) == 0);
	CU_ASSERT(kv_len(c, 0, 0) == 16 * tpp);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.wr_pages[ch] == 15);
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 0, 0, 0, 16 * tpp, &w);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.rd_pages[ch] == 16);
	/* a read of one token touches one page per stream */
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 0, 0, 5 * tpp + 2, 5 * tpp + 3, &w);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.rd_pages[ch] == 1);
	/* range straddling a page boundary: two pages per stream */
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 0, 0, 5 * tpp - 1, 5 * tpp + 1, &w);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.rd_pages[ch] == 2);
	/* beyond the length is clamped, empty range charges nothing */
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 0, 0, 16 * tpp, 20 * tpp, &w);
	kv_account_read(c, 0, 0, 3, 3, &w);
	kv_account_read(c, 1, 0, 0, 10, &w);
	for (ch = 0; ch < 8; ch++)
		CU_ASSERT(w.rd_pages[ch] == 0);
	/* kv_read charges the pages it touches */
	{
		size_t len = 2 * rowb(c) * (tpp + 2);
		uint8_t *buf = malloc(len);
		struct csdfw_seg sg = { buf, len };
		struct csdfw_data d = { &sg, 1, len };

		CU_ASSERT_FATAL(buf != NULL);
		memset(&w, 0, sizeof(w));
		CU_ASSERT(kv_read(c, 0, 0, tpp - 1, tpp + 2, &d, &w) == 0);
		for (ch = 0; ch < 8; ch++)
			CU_ASSERT(w.rd_pages[ch] == 3);
		free(buf);
	}

	/* one stream alone (kv_heads 1 -> K and V): each page index i puts
	 * K and V on two different channels, and 8 page indices cover every
	 * channel exactly twice */
	{
		struct kv_ctx *c1 = mkctx(s, mkp(1, 1, 128, CSD_DTYPE_F16, 1,
						 4096), 2);

		CU_ASSERT(app(c1, 1, 0, 0, 0, 8 * tpp, NULL) == 0);
		for (i = 0; i < 8; i++) {
			uint32_t n = 0;

			memset(&w, 0, sizeof(w));
			kv_account_read(c1, 0, 0, i * tpp, (i + 1) * tpp, &w);
			for (ch = 0; ch < 8; ch++) {
				CU_ASSERT(w.rd_pages[ch] <= 1);
				n += w.rd_pages[ch];
				cnt[ch] += w.rd_pages[ch];
			}
			CU_ASSERT(n == 2);
		}
		for (ch = 0; ch < 8; ch++)
			CU_ASSERT(cnt[ch] == 2);
		CU_ASSERT(check_pages(c1, 1, 0, 0));
		kv_ctx_destroy(c1);
	}

	/* every page of every stream is a distinct flash page */
	CU_ASSERT(app(c, 3, 1, 1, 0, 5 * tpp + 1, NULL) == 0);
	ptrs = calloc(2 * 8 * 22, sizeof(*ptrs));
	CU_ASSERT_FATAL(ptrs != NULL);
	for (i = 0; i < 16; i++)
		for (ch = 0; ch < 8; ch++)
			ptrs[np++] = kv_page(c, 0, 0, ch / 2, ch % 2 ? KV_V : KV_K, i);
	for (i = 0; i < 6; i++)
		for (ch = 0; ch < 8; ch++)
			ptrs[np++] = kv_page(c, 1, 1, ch / 2, ch % 2 ? KV_V : KV_K, i);
	for (a = 0; a < np; a++) {
		CU_ASSERT(ptrs[a] != NULL);
		CU_ASSERT(((uintptr_t)ptrs[a] & (PG - 1)) == 0);
		for (b = a + 1; b < np; b++)
			CU_ASSERT(ptrs[a] != ptrs[b]);
	}
	free(ptrs);
	CU_ASSERT(check_pages(c, 0, 0, 0));
	CU_ASSERT(check_pages(c, 3, 1, 1));
	kv_ctx_destroy(c);
	kv_store_close(s);
}

/* Fallback: when a page's channel is out of space the next channel with
 * room is used (layout documented in kv.c). */
static void test_fallback(void)
{
	/* 3 channels x 1 block x 2 pages */
	struct kv_store *s = open_store(2, 3, 2, NULL);
	struct model_work w;
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_blocks_total(s) == 3);
	c = mkctx(s, mkp(2, 1, 128, CSD_DTYPE_F16, 2, 1000), 1);
	/* layer 0: K on ch0, V on ch1; layer 1: K on ch2, V on ch0 */
	CU_ASSERT(app(c, 0, 0, 0, 0, 16, NULL) == 0);
	CU_ASSERT(app(c, 1, 0, 1, 0, 16, NULL) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	/* layer 1 page 1 wants K on ch0 (full) and V on ch1: K falls back to
	 * ch1, V then to ch2 */
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 1, 0, 1, 16, 16, &w) == 0);
	CU_ASSERT(w.wr_pages[0] == 0 && w.wr_pages[1] == 1 &&
		  w.wr_pages[2] == 1);
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 0, 1, 0, 32, &w);
	CU_ASSERT(w.rd_pages[0] == 1 && w.rd_pages[1] == 1 &&
		  w.rd_pages[2] == 2);
	CU_ASSERT(check_read(c, 0, 0, 0, 0, 16, 1));
	CU_ASSERT(check_read(c, 1, 0, 1, 0, 32, 1));
	CU_ASSERT(check_pages(c, 1, 0, 1));
	/* full now, and no partly filled page left */
	CU_ASSERT(app(c, 0, 0, 0, 16, 1, NULL) == VS(NO_SPACE));
	CU_ASSERT(kv_store_bytes_used(s) == 6ull * PG);
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == 3);
	kv_store_close(s);
}

/* ---- errors change nothing ------------------------------------------------- */

struct snap {
	uint32_t len[2][2];
	uint64_t free, stored, used;
	struct csd_ctx_info info;
	struct csd_seq_info si[2];
	uint8_t *data[2][2];
	size_t dlen[2][2];
};

static void snap_take(struct kv_ctx *c, struct kv_store *s, struct snap *sn)
{
	uint32_t q, l;

	memset(sn, 0, sizeof(*sn));
	for (q = 0; q < 2; q++)
		for (l = 0; l < 2; l++) {
			uint32_t n = kv_len(c, q, l);
			size_t len = 2 * rowb(c) * n;
			struct csdfw_seg sg;
			struct csdfw_data d;

			sn->len[q][l] = n;
			sn->dlen[q][l] = len;
			sn->data[q][l] = malloc(len + 1);
			CU_ASSERT_FATAL(sn->data[q][l] != NULL);
			sg.addr = sn->data[q][l];
			sg.len = len;
			d.seg = &sg;
			d.nseg = 1;
			d.len = len;
			CU_ASSERT(kv_read(c, q, l, 0, n, &d, NULL) == 0);
		}
	sn->free = kv_store_blocks_free(s);
	sn->stored = kv_store_bytes_stored(s);
	sn->used = kv_store_bytes_used(s);
	kv_ctx_info(c, &sn->info, sn->si, 2);
}

static int snap_same(const struct snap *a, const struct snap *b)
{
	uint32_t q, l;
	int same = a->free == b->free && a->stored == b->stored &&
		   a->used == b->used &&
		   memcmp(&a->info, &b->info, sizeof(a->info)) == 0 &&
		   memcmp(a->si, b->si, sizeof(a->si)) == 0;

	for (q = 0; q < 2; q++)
		for (l = 0; l < 2; l++)
			same = same && a->len[q][l] == b->len[q][l] &&
			       a->dlen[q][l] == b->dlen[q][l] &&
			       memcmp(a->data[q][l], b->data[q][l],
				      a->dlen[q][l]) == 0;
	return same;
}

static void snap_free(struct snap *sn)
{
	uint32_t q, l;

	for (q = 0; q < 2; q++)
		for (l = 0; l < 2; l++)
			free(sn->data[q][l]);
}

/* Run a failing append, check status and that nothing changed. */
static void expect_fail(struct kv_ctx *c, struct kv_store *s, uint16_t want,
			uint32_t seq, uint32_t layer, uint32_t start,
			uint32_t ntok)
{
	struct snap a, b;
	struct model_work w, z;

	memset(&w, 0, sizeof(w));
	memset(&z, 0, sizeof(z));
	snap_take(c, s, &a);
	CU_ASSERT(app(c, 55, seq, layer, start, ntok, &w) == want);
	snap_take(c, s, &b);
	CU_ASSERT(snap_same(&a, &b));
	CU_ASSERT(memcmp(&w, &z, sizeof(w)) == 0);
	snap_free(&a);
	snap_free(&b);
}

static void test_token_order(void)
{
	struct kv_store *s = open_store(64, 2, 4, NULL);
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 2, 64, CSD_DTYPE_BF16, 2, 1000), 1);
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 0, 1, 1);
	CU_ASSERT(app(c, 0, 0, 0, 0, 40, NULL) == 0);
	CU_ASSERT(app(c, 0, 1, 1, 0, 7, NULL) == 0);
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 0, 41, 1);
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 0, 39, 1);
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 0, 0, 1);
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 1, 40, 1);
	expect_fail(c, s, VS(TOKEN_ORDER), 1, 1, 8, 1);
	/* ranges */
	expect_fail(c, s, VS(SEQ_RANGE), 2, 0, 0, 1);
	expect_fail(c, s, VS(LAYER_RANGE), 0, 2, 40, 1);
	/* short data */
	{
		uint8_t buf[64] = { 0 };
		struct csdfw_seg sg = { buf, sizeof(buf) };
		struct csdfw_data d = { &sg, 1, sizeof(buf) };

		CU_ASSERT(kv_append(c, 0, 0, 40, 1, &d, 0, 0, NULL) ==
			  VS(LENGTH));
		CU_ASSERT(kv_read(c, 0, 0, 0, 1, &d, NULL) == VS(LENGTH));
		CU_ASSERT(kv_read(c, 0, 0, 40, 1, &d, NULL) ==
			  VS(TOKEN_RANGE));
		CU_ASSERT(kv_read(c, 0, 0, 0, 41, &d, NULL) ==
			  VS(TOKEN_RANGE));
		CU_ASSERT(kv_read(c, 1, 0, 0, 1, &d, NULL) ==
			  VS(TOKEN_RANGE));
		CU_ASSERT(kv_read(c, 2, 0, 0, 1, &d, NULL) == VS(SEQ_RANGE));
		CU_ASSERT(kv_read(c, 0, 2, 0, 1, &d, NULL) ==
			  VS(LAYER_RANGE));
		CU_ASSERT(kv_read(c, 0, 0, UINT32_MAX, 2, &d, NULL) ==
			  VS(TOKEN_RANGE));
		CU_ASSERT(kv_seq_reset(c, 2) == VS(SEQ_RANGE));
	}
	CU_ASSERT(kv_len(c, 0, 0) == 40);
	CU_ASSERT(kv_len(c, 5, 0) == 0);
	CU_ASSERT(kv_len(c, 0, 9) == 0);
	CU_ASSERT(check_read(c, 0, 0, 0, 0, 40, 2));
	CU_ASSERT(check_read(c, 0, 1, 1, 0, 7, 1));
	kv_ctx_destroy(c);
	kv_store_close(s);
}

static void test_ctx_full(void)
{
	struct kv_store *s = open_store(64, 2, 4, NULL);
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 1, 128, CSD_DTYPE_F32, 2, 100), 1);
	expect_fail(c, s, VS(CTX_FULL), 0, 0, 0, 101);
	CU_ASSERT(app(c, 0, 0, 0, 0, 90, NULL) == 0);
	expect_fail(c, s, VS(CTX_FULL), 0, 0, 90, 11);
	CU_ASSERT(app(c, 0, 0, 0, 90, 10, NULL) == 0);
	expect_fail(c, s, VS(CTX_FULL), 0, 0, 100, 1);
	/* TOKEN_ORDER is checked before CTX_FULL */
	expect_fail(c, s, VS(TOKEN_ORDER), 0, 0, 101, 1);
	CU_ASSERT(kv_len(c, 0, 0) == 100);
	CU_ASSERT(check_read(c, 0, 0, 0, 0, 100, 1));
	CU_ASSERT(check_pages(c, 0, 0, 0));
	kv_ctx_destroy(c);
	kv_store_close(s);
}

static void test_no_space(void)
{
	/* 2 channels x 2 blocks x 4 pages = 16 pages */
	struct kv_store *s = open_store(8, 2, 4, NULL);
	struct kv_ctx *c;
	uint64_t total;

	CU_ASSERT_FATAL(s != NULL);
	total = kv_store_blocks_total(s);
	CU_ASSERT(total == 4);
	c = mkctx(s, mkp(2, 1, 128, CSD_DTYPE_F16, 2, 10000), 1);
	/* 100 tokens: 7 pages per stream, 14 pages */
	CU_ASSERT(app(c, 0, 0, 0, 0, 100, NULL) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 14ull * PG);
	/* 60 more need 3 more pages per stream (6 > 2 free): nothing written */
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 100, 60);
	/* even another layer that would partly fit */
	expect_fail(c, s, VS(NO_SPACE), 0, 1, 0, 32);
	/* another sequence has no block at all */
	expect_fail(c, s, VS(NO_SPACE), 1, 0, 0, 1);
	/* the partial page still takes tokens without new pages */
	CU_ASSERT(app(c, 0, 0, 0, 100, 12, NULL) == 0);
	/* the last two pages */
	CU_ASSERT(app(c, 0, 0, 0, 112, 16, NULL) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 16ull * PG);
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 128, 1);
	CU_ASSERT(check_read(c, 0, 0, 0, 0, 128, 1));
	CU_ASSERT(check_pages(c, 0, 0, 0));

	/* reset gives the space back, and it is reused */
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	CU_ASSERT(kv_len(c, 0, 0) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	CU_ASSERT(kv_store_bytes_stored(s) == 0);
	CU_ASSERT(app(c, 4, 1, 1, 0, 128, NULL) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(check_read(c, 4, 1, 1, 0, 128, 2));
	CU_ASSERT(check_pages(c, 4, 1, 1));
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 0, 1);
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	kv_store_close(s);
}

/* ---- reclaim and info -------------------------------------------------------- */

static void test_reclaim(void)
{
	struct kv_store *s = open_store(64, 4, 8, NULL);
	struct kv_ctx *c, *c2;
	struct csd_ctx_info info;
	struct csd_seq_info si[4];
	uint64_t total, free_mid;
	const uint8_t *stale;
	uint32_t i, round;
	int zero = 1;

	CU_ASSERT_FATAL(s != NULL);
	total = kv_store_blocks_total(s);
	CU_ASSERT(total == 32);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	c = mkctx(s, mkp(3, 2, 64, CSD_DTYPE_F16, 4, 10000), 1);
	c2 = mkctx(s, mkp(1, 1, 256, CSD_DTYPE_F32, 2, 10000), 2);

	for (round = 0; round < 3; round++) {
		CU_ASSERT(app(c, round, 0, 0, 0, 10, NULL) == 0);
		CU_ASSERT(app(c, round, 0, 1, 0, 5, NULL) == 0);
		CU_ASSERT(app(c, round, 2, 1, 0, 3, NULL) == 0);
		CU_ASSERT(app(c, round, 3, 2, 0, 200, NULL) == 0);
		CU_ASSERT(app(c2, round, 1, 0, 0, 30, NULL) == 0);

		kv_ctx_info(c, &info, si, 4);
		CU_ASSERT(info.ctx_id == 1);
		CU_ASSERT(info.p.layers == 3 && info.p.kv_heads == 2 &&
			  info.p.head_dim == 64 &&
			  info.p.dtype == CSD_DTYPE_F16 &&
			  info.p.max_seqs == 4 && info.p.max_tokens == 10000);
		CU_ASSERT(info.seqs_used == 3);
		CU_ASSERT(info.tokens == 218);
		CU_ASSERT(info.tokens_per_page == 32);
		/* pages: l0 1, l1 1, s2 1, s3 7, each x 4 streams */
		CU_ASSERT(info.bytes_used == 10ull * 4 * PG);
		CU_ASSERT(si[0].min_len == 0 && si[0].max_len == 10);
		CU_ASSERT(si[1].min_len == 0 && si[1].max_len == 0);
		CU_ASSERT(si[2].min_len == 0 && si[2].max_len == 3);
		CU_ASSERT(si[3].min_len == 0 && si[3].max_len == 200);
		CU_ASSERT(kv_store_bytes_used(s) ==
			  (40ull + 8 * 2) * PG);
		CU_ASSERT(kv_store_bytes_stored(s) ==
			  218ull * 256 * 2 + 30ull * 1024 * 2);
		CU_ASSERT(kv_store_blocks_free(s) < total);

		/* reset seq 3: only its blocks come back */
		free_mid = kv_store_blocks_free(s);
		stale = kv_page(c, 3, 2, 0, KV_K, 0);
		CU_ASSERT_FATAL(stale != NULL);
		CU_ASSERT(kv_seq_reset(c, 3) == 0);
		CU_ASSERT(kv_seq_reset(c, 3) == 0);
		CU_ASSERT(kv_seq_reset(c, 1) == 0);	/* never used */
		CU_ASSERT(kv_store_blocks_free(s) > free_mid);
		/* memory backing: the freed block was given back (zero) */
		for (i = 0; i < PG; i++)
			zero &= stale[i] == 0;
		CU_ASSERT(zero);
		CU_ASSERT(kv_len(c, 3, 2) == 0);
		kv_ctx_info(c, &info, si, 2);
		CU_ASSERT(info.seqs_used == 2);
		CU_ASSERT(info.tokens == 18);
		CU_ASSERT(info.bytes_used == 3ull * 4 * PG);
		CU_ASSERT(check_read(c, round, 0, 0, 0, 10, 1));
		CU_ASSERT(check_read(c, round, 2, 1, 0, 3, 1));
		CU_ASSERT(check_read(c2, round, 1, 0, 0, 30, 1));

		/* reuse after reset */
		CU_ASSERT(app(c, 100 + round, 3, 2, 0, 64, NULL) == 0);
		CU_ASSERT(check_read(c, 100 + round, 3, 2, 0, 64, 1));
		CU_ASSERT(check_pages(c, 100 + round, 3, 2));

		for (i = 0; i < 4; i++)
			CU_ASSERT(kv_seq_reset(c, i) == 0);
		CU_ASSERT(kv_seq_reset(c2, 1) == 0);
		CU_ASSERT(kv_store_blocks_free(s) == total);
		CU_ASSERT(kv_store_bytes_used(s) == 0);
		CU_ASSERT(kv_store_bytes_stored(s) == 0);
		kv_ctx_info(c, &info, NULL, 0);
		CU_ASSERT(info.seqs_used == 0 && info.tokens == 0 &&
			  info.bytes_used == 0);
	}
	/* destroy with data in it */
	CU_ASSERT(app(c, 1, 0, 0, 0, 500, NULL) == 0);
	CU_ASSERT(app(c2, 1, 0, 0, 0, 100, NULL) == 0);
	kv_ctx_destroy(c);
	CU_ASSERT(check_read(c2, 1, 0, 0, 0, 100, 1));
	kv_ctx_destroy(c2);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	CU_ASSERT(kv_store_bytes_stored(s) == 0);
	kv_ctx_destroy(NULL);
	kv_store_close(s);
}

/* ---- file backing ---------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	*len = (size_t)st.st_size;
	b = malloc(*len + 1);
	if (b && pread(fd, b, *len, 0) != (ssize_t)*len) {
		free(b);
		b = NULL;
	}
	close(fd);
	return b;
}

static void test_file_backing(void)
{
	char dir[] = "/tmp/csd-test-kv-XXXXXX";
	char path[300], probe[300];
	struct kv_store *s;
	struct kv_ctx *c;
	uint8_t row[256], *f;
	size_t flen, i;
	uint32_t t, h, w;
	int found = 1, zero = 1, punch, fd;

	CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/flash.img", dir);
	snprintf(probe, sizeof(probe), "%s/probe", dir);
	/* does this filesystem punch holes? */
	fd = open(probe, O_RDWR | O_CREAT, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT(ftruncate(fd, 1 << 16) == 0);
	punch = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  0, 4096) == 0;
	close(fd);
	unlink(probe);

	/* a stale file without a superblock is refused; format=1 formats
	 * it and nothing of the old content survives */
	fd = open(path, O_RDWR | O_CREAT, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	memset(row, 0xee, sizeof(row));
	for (i = 0; i < 1000; i++)
		CU_ASSERT(write(fd, row, sizeof(row)) == sizeof(row));
	close(fd);
	{
		struct csdfw_config cfg;

		memset(&cfg, 0, sizeof(cfg));
		cfg.capacity = 16ull * 2 * PG;
		cfg.channels = 2;
		cfg.page_size = PG;
		cfg.pages_per_block = 4;
		CU_ASSERT_FATAL(strlen(path) < sizeof(cfg.backing));
		memcpy(cfg.backing, path, strlen(path) + 1);
		s = NULL;
		CU_ASSERT(kv_store_open(&cfg, &s) == -EUCLEAN);
		CU_ASSERT(s == NULL);
		cfg.format = 1;
		CU_ASSERT_FATAL(kv_store_open(&cfg, &s) == 0);
	}
	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(1, 2, 128, CSD_DTYPE_F16, 2, 1000), 1);
	CU_ASSERT(app(c, 3, 0, 0, 0, 40, NULL) == 0);
	CU_ASSERT(app(c, 4, 1, 0, 0, 17, NULL) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);

	f = slurp(path, &flen);
	CU_ASSERT_FATAL(f != NULL);
	/* superblock page, two metadata slots, then the 32 data pages */
	CU_ASSERT(flen > 32ull * PG && flen % PG == 0);
	CU_ASSERT(memcmp(f, "CSDKVSB", 8) == 0);
	for (i = 0; i < flen; i++)
		if (f[i] == 0xee && i + 256 <= flen &&
		    memcmp(f + i, row, 256) == 0)
			found = 0;	/* stale content survived */
	CU_ASSERT(found);
	for (w = 0; w < 2; w++)
		for (h = 0; h < 2; h++)
			for (t = 0; t < 40; t++) {
				gen_row(row, 256, 3, 0, t, h, w);
				if (!memmem(f, flen, row, 256))
					found = 0;
			}
	CU_ASSERT(found);
	free(f);
	CU_ASSERT(check_read(c, 3, 0, 0, 0, 40, 1));

	/* reset punches the blocks out of the file */
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(kv_seq_reset(c, 1) == 0);
	CU_ASSERT(kv_store_flush(s) == 0);
	f = slurp(path, &flen);
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT(flen > 32ull * PG);
	for (i = flen - 32ull * PG; i < flen; i++)
		zero &= f[i] == 0;
	if (punch)
		CU_ASSERT(zero);
	free(f);
	/* and reused */
	CU_ASSERT(app(c, 5, 1, 0, 0, 64, NULL) == 0);
	CU_ASSERT(check_read(c, 5, 1, 0, 0, 64, 1));
	CU_ASSERT(kv_store_flush(s) == 0);
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	kv_store_close(s);
	unlink(path);
	rmdir(dir);
}

/* ---- concurrency ------------------------------------------------------------ */

#define CC_TOKENS	1500

struct cc {
	struct kv_ctx *c;
	atomic_int writers_left;
	atomic_int bad;
	atomic_long checks;
};

struct cc_writer {
	struct cc *cc;
	uint32_t seq;
	uint32_t layer_lo, layer_hi;	/* appends these layers in turn */
	uint32_t seed;
};

static void *cc_write(void *p)
{
	struct cc_writer *wr = p;
	uint32_t pos = 0, l;

	while (pos < CC_TOKENS) {
		uint32_t m = 1 + rnd(&wr->seed) % 23;

		if (m > CC_TOKENS - pos)
			m = CC_TOKENS - pos;
		long seen = atomic_load(&wr->cc->checks);

		for (l = wr->layer_lo; l <= wr->layer_hi; l++)
			if (app(wr->cc->c, wr->seq, wr->seq, l, pos, m, NULL))
				atomic_fetch_add(&wr->cc->bad, 1);
		pos += m;
		/* interleave with the reader: wait for one more check */
		while (atomic_load(&wr->cc->checks) == seen)
			sched_yield();
	}
	atomic_fetch_sub(&wr->cc->writers_left, 1);
	return NULL;
}

static void *cc_read(void *p)
{
	struct cc *cc = p;
	struct kv_ctx *c = cc->c;
	uint32_t seed = 99, tpp = kv_tokens_per_page(c), hr = hrow(c);
	uint8_t row[1024];

	while (atomic_load(&cc->writers_left) > 0) {
		uint32_t seq = rnd(&seed) % 2, layer = rnd(&seed) % 2;
		uint32_t h = rnd(&seed) % 2, w = rnd(&seed) % 2;
		uint32_t len = kv_len(c, seq, layer), pg, t, end;
		const uint8_t *page;

		if (!len)
			continue;
		/* the newest page is the interesting one */
		pg = rnd(&seed) % 2 ? (len - 1) / tpp : rnd(&seed) % len / tpp;
		page = kv_page(c, seq, layer, h, w ? KV_V : KV_K, pg);
		if (!page) {
			atomic_fetch_add(&cc->bad, 1);
			continue;
		}
		end = (pg + 1) * tpp < len ? (pg + 1) * tpp : len;
		for (t = pg * tpp; t < end; t++) {
			gen_row(row, hr, seq, layer, t, h, w);
			if (memcmp(page + (t % tpp) * hr, row, hr))
				atomic_fetch_add(&cc->bad, 1);
		}
		if (!check_read(c, seq, seq, layer, len > 40 ? len - 40 : 0,
				len > 40 ? 40 : len, 1))
			atomic_fetch_add(&cc->bad, 1);
		atomic_fetch_add(&cc->checks, 1);
	}
	return NULL;
}

static void test_concurrency(void)
{
	struct kv_store *s = open_store(1024, 4, 8, NULL);
	struct cc_writer wr[3];
	pthread_t th[4];
	struct cc cc;
	int i;

	CU_ASSERT_FATAL(s != NULL);
	memset(&cc, 0, sizeof(cc));
	cc.c = mkctx(s, mkp(2, 2, 64, CSD_DTYPE_F16, 2, CC_TOKENS), 1);
	atomic_init(&cc.writers_left, 3);
	atomic_init(&cc.bad, 0);
	atomic_init(&cc.checks, 0);
	/* seq 0: its two layers from two threads; seq 1: both layers */
	wr[0] = (struct cc_writer){ &cc, 0, 0, 0, 1 };
	wr[1] = (struct cc_writer){ &cc, 0, 1, 1, 2 };
	wr[2] = (struct cc_writer){ &cc, 1, 0, 1, 3 };
	CU_ASSERT_FATAL(pthread_create(&th[3], NULL, cc_read, &cc) == 0);
	for (i = 0; i < 3; i++)
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, cc_write,
					       &wr[i]) == 0);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT(atomic_load(&cc.bad) == 0);
	CU_ASSERT(atomic_load(&cc.checks) > 100);
	for (i = 0; i < 4; i++) {
		CU_ASSERT(kv_len(cc.c, i / 2, i % 2) == CC_TOKENS);
		CU_ASSERT(check_read(cc.c, i / 2, i / 2, i % 2, 0, CC_TOKENS,
				     1));
		CU_ASSERT(check_pages(cc.c, i / 2, i / 2, i % 2));
	}
	CU_ASSERT(kv_store_bytes_stored(s) ==
		  4ull * CC_TOKENS * rowb(cc.c) * 2);
	kv_ctx_destroy(cc.c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	kv_store_close(s);
}

/* ---- metadata footprint ---------------------------------------------------- */

static void test_metadata_size(void)
{
	/* 13B-class context: 40 layers x 40 kv heads x 128, f16, 64 seqs x
	 * 32k tokens.  Heap use must be small and grow with what is stored. */
	struct kv_store *s = open_store(65536, 8, 64, NULL);	/* 2 GiB */
	struct mallinfo2 a, b, d;
	struct kv_ctx *c;
	uint32_t q, l;

	CU_ASSERT_FATAL(s != NULL);
	a = mallinfo2();
	c = mkctx(s, mkp(40, 40, 128, CSD_DTYPE_F16, 64, 32768), 1);
	b = mallinfo2();
	CU_ASSERT(b.uordblks - a.uordblks < (1u << 20));
	for (q = 0; q < 2; q++)
		for (l = 0; l < 40; l++)
			CU_ASSERT_FATAL(app(c, 1, q, l, 0, 1, NULL) == 0);
	d = mallinfo2();
	/* two sequences with every layer in use: far below 1 MiB each, plus
	 * the V running sums (40 x 128 doubles per layer) */
	CU_ASSERT(d.uordblks - b.uordblks < (1u << 20) + 2 * 40 * 40960);
	CU_ASSERT(check_pages(c, 1, 1, 39));
	kv_ctx_destroy(c);
	kv_store_close(s);
}

/* ---- SparF support: channel-indexed K and the V running sum ---------------- */

/* Finite values, exact in every dtype (k/64, |k| <= 127). */
static float fval(uint32_t salt, uint32_t layer, uint32_t tok, uint32_t head,
		  uint32_t which, uint32_t dim)
{
	uint32_t v = mix(((uint64_t)salt << 52) ^ ((uint64_t)layer << 44) ^
			 ((uint64_t)tok << 20) ^ ((uint64_t)head << 10) ^
			 ((uint64_t)which << 9) ^ dim);

	return (float)((int)(v % 255) - 127) / 64.0f;
}

static void put_elem(uint8_t *row, uint8_t dtype, uint32_t i, float v)
{
	attn_store_elem(row, dtype, i, v);
}

/* Append finite K/V of tokens [start, start + ntok). */
static uint16_t app_f(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		      uint32_t layer, uint32_t start, uint32_t ntok,
		      struct model_work *w)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);
	size_t rb = rowb(c), len = 2 * rb * ntok;
	uint8_t *b = malloc(len + 1);
	struct csdfw_seg sg = { b, len };
	struct csdfw_data d = { &sg, 1, len };
	uint32_t t, h, j, wh;
	uint16_t rc;

	CU_ASSERT_FATAL(b != NULL);
	for (wh = 0; wh < 2; wh++)
		for (t = 0; t < ntok; t++)
			for (h = 0; h < p->kv_heads; h++)
				for (j = 0; j < p->head_dim; j++)
					put_elem(b + wh * rb * ntok + t * rb +
						 h * hrow(c), p->dtype, j,
						 fval(salt, layer, start + t,
						      h, wh, j));
	rc = kv_append(c, seq, layer, start, ntok, &d, 0, rb * ntok, w);
	free(b);
	return rc;
}

/* Every complete chunk's channel pages == token-indexed K transposed. */
static int check_chan(struct kv_ctx *c, uint32_t seq, uint32_t layer)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);
	uint32_t ct = kv_chan_tokens(c), tpp = kv_tokens_per_page(c);
	uint32_t es = csd_dtype_size(p->dtype), hr = hrow(c);
	uint32_t nch = kv_chan_chunks(c, seq, layer), k, h, j, t;

	if (nch != kv_len(c, seq, layer) / ct)
		return 0;
	if (kv_chan_page(c, seq, layer, 0, 0, nch))
		return 0;	/* incomplete chunk: no channel pages */
	for (k = 0; k < nch; k++)
		for (h = 0; h < p->kv_heads; h++)
			for (j = 0; j < p->head_dim; j++) {
				const uint8_t *cp = kv_chan_page(c, seq, layer,
								 h, j, k);

				if (!cp || ((uintptr_t)cp & (PG - 1)))
					return 0;
				for (t = 0; t < ct; t++) {
					uint32_t tok = k * ct + t;
					const uint8_t *tp = kv_page(c, seq,
						layer, h, KV_K, tok / tpp);

					if (!tp || memcmp(cp + t * es,
						tp + (tok % tpp) * hr + j * es,
						es))
						return 0;
				}
			}
	return 1;
}

/* Exact sum (double) of V of tokens [0, n) vs kv_vsum(). */
static int check_vsum(struct kv_ctx *c, uint32_t salt, uint32_t seq,
		      uint32_t layer, uint32_t n)
{
	const struct csd_ctx_desc *p = kv_ctx_params(c);
	uint32_t m = p->kv_heads * p->head_dim, i, t;
	float *got = malloc(m * sizeof(*got));
	int ok;

	CU_ASSERT_FATAL(got != NULL);
	ok = kv_vsum(c, seq, layer, got) == n;
	for (i = 0; i < m && ok; i++) {
		double want = 0;

		for (t = 0; t < n; t++)
			want += fval(salt, layer, t, i / p->head_dim, 1,
				     i % p->head_dim);
		ok = got[i] == (float)want;
	}
	free(got);
	return ok;
}

static void chan_one(uint8_t dtype, uint16_t hd, uint32_t *seed)
{
	struct kv_store *s = open_store(1024, 4, 8, NULL);
	uint32_t ct, tpp, n, pos, kvh = 2, cpc = 0;
	struct model_work w;
	struct kv_ctx *c;
	uint64_t pages;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, (uint16_t)kvh, hd, dtype, 2, 100000), 1);
	ct = kv_chan_tokens(c);
	tpp = kv_tokens_per_page(c);
	CU_ASSERT(ct == PG / csd_dtype_size(dtype));
	n = 2 * ct + ct / 3;
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 0);
	for (pos = 0; pos < n;) {
		uint32_t m = 1 + rnd(seed) % (ct / 2), i, before, tot = 0;
		uint32_t pg_new;

		if (m > n - pos)
			m = n - pos;
		memset(&w, 0, sizeof(w));
		before = kv_chan_chunks(c, 0, 1);
		CU_ASSERT_FATAL(app_f(c, 3, 0, 1, pos, m, &w) == 0);
		pos += m;
		CU_ASSERT(kv_chan_chunks(c, 0, 1) == pos / ct);
		/* programs: token pages touched + the new channel pages */
		pg_new = (pos - 1) / tpp - (pos - m) / tpp + 1;
		for (i = 0; i < 4; i++)
			tot += w.wr_pages[i];
		CU_ASSERT(tot == pg_new * 2 * kvh +
			  (pos / ct - before) * kvh * hd);
		if (pos / ct != before)
			cpc++;
	}
	CU_ASSERT(cpc == 2);
	CU_ASSERT(check_chan(c, 0, 1));
	CU_ASSERT(check_vsum(c, 3, 0, 1, n));
	/* one bulk append gives the same channel pages */
	CU_ASSERT(app_f(c, 3, 1, 1, 0, n, NULL) == 0);
	CU_ASSERT(check_chan(c, 1, 1));
	CU_ASSERT(check_vsum(c, 3, 1, 1, n));
	{
		uint32_t k, j, h;

		for (k = 0; k < 2; k++)
			for (h = 0; h < kvh; h++)
				for (j = 0; j < hd; j++) {
					CU_ASSERT(memcmp(
					    kv_chan_page(c, 0, 1, h, j, k),
					    kv_chan_page(c, 1, 1, h, j, k),
					    PG) == 0);
					/* consecutive dims on distinct,
					 * round-robin channels */
					CU_ASSERT(kv_chan_page_chan(c, 1, 1, h,
							j, k) ==
						  (kv_chan_page_chan(c, 1, 1, h,
							0, k) + j) % 4);
				}
		CU_ASSERT(kv_page_chan(c, 1, 1, 1, KV_V, 3) ==
			  (kv_page_chan(c, 1, 1, 1, KV_V, 0) + 3) % 4);
	}
	/* space: token and channel pages both counted */
	pages = 2ull * ((n + tpp - 1) / tpp * 2 * kvh + 2ull * kvh * hd);
	CU_ASSERT(kv_store_bytes_used(s) == pages * PG);
	/* empty layer */
	CU_ASSERT(check_vsum(c, 3, 0, 0, 0));
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 0);
	CU_ASSERT(kv_chan_page(c, 0, 0, 0, 0, 0) == NULL);
	/* reset clears the chunks and the sum, reuse rebuilds them */
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(kv_chan_chunks(c, 0, 1) == 0);
	CU_ASSERT(kv_chan_page(c, 0, 1, 0, 0, 0) == NULL);
	CU_ASSERT(check_vsum(c, 3, 0, 1, 0));
	CU_ASSERT(kv_store_bytes_used(s) == pages / 2 * PG);
	CU_ASSERT(app_f(c, 3, 0, 1, 0, ct + 1, NULL) == 0);
	CU_ASSERT(check_chan(c, 0, 1));
	CU_ASSERT(check_vsum(c, 3, 0, 1, ct + 1));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	kv_store_close(s);
}

static void test_chan(void)
{
	static const uint16_t hds[] = { 64, 80, 128 };
	uint32_t seed = 777;
	uint8_t dt;
	size_t i;

	for (dt = 0; dt < CSD_DTYPE_COUNT; dt++)
		for (i = 0; i < sizeof(hds) / sizeof(hds[0]); i++)
			chan_one(dt, hds[i], &seed);
}

static void test_chan_no_space(void)
{
	/* 2 channels x 12 blocks x 8 pages = 192 pages.  f32, hd 64, one
	 * kv head: 16 tokens per page, 1024-token chunks of 64 pages */
	struct kv_store *s = open_store(96, 2, 8, NULL);
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 1, 64, CSD_DTYPE_F32, 2, 10000), 1);
	CU_ASSERT(kv_chan_tokens(c) == 1024);
	/* 1023 tokens: 64 pages per stream = 128 pages (16 blocks) */
	CU_ASSERT(app_f(c, 1, 0, 0, 0, 1023, NULL) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 128ull * PG);
	/* seq 1 takes two blocks: 48 pages left */
	CU_ASSERT(app_f(c, 2, 1, 0, 0, 1, NULL) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 6);
	/* the 1024th token fits in its page but completes a chunk: needs
	 * 64 channel pages -> nothing written */
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 1023, 1);
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 1023, 5);
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 0);
	CU_ASSERT(check_vsum(c, 1, 0, 0, 1023));
	/* a layer that completes no chunk still fits */
	CU_ASSERT(app_f(c, 3, 0, 1, 0, 16, NULL) == 0);
	CU_ASSERT(kv_seq_reset(c, 1) == 0);
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 1023, 1);
	CU_ASSERT(app_f(c, 3, 0, 1, 16, 1, NULL) == 0);
	/* exactly 64 pages free once seq 1 and layer 1 are gone */
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(app_f(c, 1, 0, 0, 0, 1023, NULL) == 0);
	CU_ASSERT(app_f(c, 1, 0, 0, 1023, 1, NULL) == 0);
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 1);
	CU_ASSERT(kv_store_bytes_used(s) == 192ull * PG);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(check_chan(c, 0, 0));
	CU_ASSERT(check_vsum(c, 1, 0, 0, 1024));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	kv_store_close(s);
}

#define VC_TOKENS	5000

struct vc {
	struct kv_ctx *c;
	double *prefix;			/* [VC_TOKENS + 1][64] */
	atomic_int done;
	atomic_int bad;
	atomic_long checks;
};

static void *vc_write(void *p)
{
	struct vc *vc = p;
	uint32_t pos = 0, seed = 4242;

	while (pos < VC_TOKENS) {
		uint32_t m = 1 + rnd(&seed) % 97;
		long seen = atomic_load(&vc->checks);

		if (m > VC_TOKENS - pos)
			m = VC_TOKENS - pos;
		if (app_f(vc->c, 9, 0, 0, pos, m, NULL))
			atomic_fetch_add(&vc->bad, 1);
		pos += m;
		while (atomic_load(&vc->checks) == seen &&
		       !atomic_load(&vc->done))
			sched_yield();
	}
	atomic_store(&vc->done, 1);
	return NULL;
}

static void *vc_read(void *p)
{
	struct vc *vc = p;
	float sum[64];
	uint32_t n, i, nch, ct = kv_chan_tokens(vc->c), seed = 5;

	while (!atomic_load(&vc->done)) {
		n = kv_vsum(vc->c, 0, 0, sum);
		for (i = 0; i < 64; i++)
			if (sum[i] != (float)vc->prefix[(size_t)n * 64 + i])
				atomic_fetch_add(&vc->bad, 1);
		nch = kv_chan_chunks(vc->c, 0, 0);
		if (nch * ct > kv_len(vc->c, 0, 0) + 0u)
			atomic_fetch_add(&vc->bad, 1);
		if (nch) {
			uint32_t k = rnd(&seed) % nch, j = rnd(&seed) % 64;
			uint32_t t = rnd(&seed) % ct;
			const uint16_t *cp = kv_chan_page(vc->c, 0, 0, 0, j, k);

			if (!cp || attn_f16_to_f32(cp[t]) !=
				   fval(9, 0, k * ct + t, 0, 0, j))
				atomic_fetch_add(&vc->bad, 1);
		}
		atomic_fetch_add(&vc->checks, 1);
	}
	return NULL;
}

static void test_chan_concurrency(void)
{
	struct kv_store *s = open_store(1024, 4, 8, NULL);
	pthread_t th[2];
	struct vc vc;
	uint32_t t, i;

	CU_ASSERT_FATAL(s != NULL);
	memset(&vc, 0, sizeof(vc));
	vc.c = mkctx(s, mkp(1, 1, 64, CSD_DTYPE_F16, 1, VC_TOKENS), 1);
	vc.prefix = calloc((size_t)(VC_TOKENS + 1) * 64, sizeof(double));
	CU_ASSERT_FATAL(vc.prefix != NULL);
	for (t = 0; t < VC_TOKENS; t++)
		for (i = 0; i < 64; i++)
			vc.prefix[(size_t)(t + 1) * 64 + i] =
				vc.prefix[(size_t)t * 64 + i] +
				fval(9, 0, t, 0, 1, i);
	atomic_init(&vc.done, 0);
	atomic_init(&vc.bad, 0);
	atomic_init(&vc.checks, 0);
	CU_ASSERT_FATAL(pthread_create(&th[1], NULL, vc_read, &vc) == 0);
	CU_ASSERT_FATAL(pthread_create(&th[0], NULL, vc_write, &vc) == 0);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	CU_ASSERT(atomic_load(&vc.bad) == 0);
	CU_ASSERT(atomic_load(&vc.checks) > 20);
	CU_ASSERT(kv_chan_chunks(vc.c, 0, 0) == VC_TOKENS / 2048);
	CU_ASSERT(check_chan(vc.c, 0, 0));
	CU_ASSERT(check_vsum(vc.c, 9, 0, 0, VC_TOKENS));
	free(vc.prefix);
	kv_ctx_destroy(vc.c);
	kv_store_close(s);
}

/* ---- extents ---------------------------------------------------------------- */

/*
 * Layout of every stream of (seq, layer) with extents of @e pages on @nch
 * channels and nothing ever falling back: pages of one extent are adjacent
 * in memory, extent j of a stream is on channel (j + skew) % nch.
 */
static int check_extents(struct kv_ctx *c, uint32_t seq, uint32_t layer,
			 uint32_t e, uint32_t nch)
{
	uint32_t kvh = kv_ctx_params(c)->kv_heads, tpp = kv_tokens_per_page(c);
	uint32_t np = (kv_len(c, seq, layer) + tpp - 1) / tpp, h, w, i;

	for (h = 0; h < kvh; h++)
		for (w = 0; w < 2; w++) {
			enum kv_which wh = w ? KV_V : KV_K;
			uint32_t ch0 = kv_page_chan(c, seq, layer, h, wh, 0);

			for (i = 0; i < np; i++) {
				const uint8_t *pg = kv_page(c, seq, layer, h,
							    wh, i);

				if (!pg || kv_page_chan(c, seq, layer, h, wh,
							i) != (ch0 + i / e) % nch)
					return 0;
				if (i % e && pg != (const uint8_t *)kv_page(c,
						seq, layer, h, wh, i - 1) + PG)
					return 0;
			}
		}
	return 1;
}

static void extent_one(uint32_t e, uint32_t nch, uint8_t dtype, uint16_t hd)
{
	/* blocks of 16 pages, 64 blocks per channel */
	struct kv_store *s = open_store_x(4096, nch, 16, e, NULL);
	uint32_t tpp, n, pos, seed = 99u + e * 7 + nch, ch, i, len;
	struct model_work w;
	struct kv_ctx *c;
	uint64_t pages;

	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == e);
	c = mkctx(s, mkp(2, 3, hd, dtype, 3, 100000), 1);
	tpp = kv_tokens_per_page(c);
	/* odd: several extents, blocks and channel rounds, a partial extent
	 * and a partial page at the end */
	n = (2 * e * nch + e / 2 + 1) * tpp + tpp / 3 + 1;

	/* seq 0 layer 1 in odd pieces (some one token: decode), interleaved
	 * with seq 2 layer 1 and seq 0 layer 0 sharing the open blocks */
	for (pos = 0; pos < n;) {
		uint32_t m = rnd(&seed) % 3 ? 1 + rnd(&seed) % 40 : 1;

		if (m > n - pos)
			m = n - pos;
		CU_ASSERT_FATAL(app_sg(c, 0, 0, 1, pos, m, 1 + m % 3, NULL) ==
				0);
		CU_ASSERT_FATAL(app(c, 7, 2, 1, pos, m, NULL) == 0);
		CU_ASSERT_FATAL(app(c, 9, 0, 0, pos, m, NULL) == 0);
		pos += m;
	}
	/* seq 1: one bulk append */
	CU_ASSERT(app(c, 0, 1, 1, 0, n, NULL) == 0);
	CU_ASSERT(check_read(c, 0, 0, 1, 0, n, 2));
	CU_ASSERT(check_read(c, 0, 1, 1, 0, n, 1));
	CU_ASSERT(check_read(c, 7, 2, 1, 0, n, 3));
	CU_ASSERT(check_read(c, 9, 0, 0, 0, n, 1));
	CU_ASSERT(check_pages(c, 0, 0, 1));
	CU_ASSERT(check_pages(c, 0, 1, 1));
	CU_ASSERT(check_pages(c, 7, 2, 1));
	CU_ASSERT(check_pages(c, 9, 0, 0));
	CU_ASSERT(check_extents(c, 0, 1, e, nch));
	CU_ASSERT(check_extents(c, 1, 1, e, nch));
	CU_ASSERT(check_extents(c, 2, 1, e, nch));
	CU_ASSERT(check_extents(c, 0, 0, e, nch));
	for (i = 0; i < 20; i++) {
		uint32_t a = rnd(&seed) % n, b = 1 + rnd(&seed) % (n - a);

		CU_ASSERT(check_read(c, 0, 0, 1, a, b, 1 + i % 4));
	}
	/* bytes_used counts pages holding rows, not reserved ones */
	pages = (n + tpp - 1) / tpp * 6 + (uint64_t)n / kv_chan_tokens(c) * 3 *
		hd;
	CU_ASSERT(kv_store_bytes_used(s) == 4 * pages * PG);
	/* reading e * nch pages of every stream: e pages per stream on
	 * every channel (charged per page, on the page's channel) */
	memset(&w, 0, sizeof(w));
	kv_account_read(c, 1, 1, 0, e * nch * tpp, &w);
	for (ch = 0; ch < nch; ch++)
		CU_ASSERT(w.rd_pages[ch] == 6 * e);
	/* programs likewise (plus the channel-indexed pages of the chunks
	 * completed) */
	memset(&w, 0, sizeof(w));
	CU_ASSERT(app(c, 5, 1, 0, 0, e * nch * tpp, &w) == 0);
	for (ch = 0, i = 0; ch < nch; ch++) {
		CU_ASSERT(w.wr_pages[ch] >= 6 * e);
		i += w.wr_pages[ch];
	}
	CU_ASSERT(i == 6 * e * nch + e * nch * tpp / kv_chan_tokens(c) * 3 *
		  hd);
	CU_ASSERT(check_extents(c, 1, 0, e, nch));

	/* reset: the blocks come back, the sequence starts over at extent 0
	 * of a fresh layout */
	len = kv_len(c, 1, 1);
	CU_ASSERT(kv_seq_reset(c, 1) == 0);
	CU_ASSERT(kv_seq_reset(c, 0) == 0);
	CU_ASSERT(app(c, 3, 1, 1, 0, len / 2 + 1, NULL) == 0);
	CU_ASSERT(check_read(c, 3, 1, 1, 0, len / 2 + 1, 1));
	CU_ASSERT(check_extents(c, 1, 1, e, nch));
	CU_ASSERT(check_read(c, 7, 2, 1, 0, n, 1));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	CU_ASSERT(kv_store_bytes_stored(s) == 0);
	kv_store_close(s);
}

static void test_extent_roundtrip(void)
{
	static const uint32_t es[] = { 1, 4, 16 };
	size_t i;

	for (i = 0; i < 3; i++) {
		extent_one(es[i], 4, CSD_DTYPE_F16, 128);
		extent_one(es[i], 3, CSD_DTYPE_F32, 80);
		extent_one(es[i], 8, CSD_DTYPE_BF16, 64);
	}
}

/* Decode, one token at a time: a stream takes space only at an extent's
 * first page (E = block: exactly one block per stream then). */
static void test_extent_decode(void)
{
	struct kv_store *s = open_store_x(256, 4, 8, 8, NULL);
	uint32_t tpp, t, n, bad = 0;
	uint64_t bound;
	struct kv_ctx *c;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(1, 2, 128, CSD_DTYPE_F16, 1, 100000), 1);
	tpp = kv_tokens_per_page(c);
	n = 3 * 8 * tpp + 5;
	for (t = 0; t < n; t++) {
		uint64_t before = kv_store_blocks_free(s);
		uint64_t want = t % (8 * tpp) ? 0 : 4;

		CU_ASSERT_FATAL(app(c, 1, 0, 0, t, 1, NULL) == 0);
		bad += before - kv_store_blocks_free(s) != want;
		bound = kv_append_blocks_bound(c, 0, 0, 1, 0);
		bad += (t + 1) % (8 * tpp) ? bound != 0 : bound < 4;
	}
	CU_ASSERT(bad == 0);
	CU_ASSERT(check_read(c, 1, 0, 0, 0, n, 1));
	CU_ASSERT(check_extents(c, 0, 0, 8, 4));
	/* 4 extents per stream */
	CU_ASSERT(kv_store_blocks_total(s) - kv_store_blocks_free(s) == 16);
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	kv_store_close(s);
}

/*
 * The NO_SPACE check counts in extents: room in an open block smaller than
 * an extent is no room for one, reserved pages are room only for their
 * stream.  3 channels x 9 blocks x 8 pages, extents of 4; f32, head_dim 64,
 * one kv head: 16 tokens per page, 1024-token chunks of 64 channel pages
 * (22/21/21 over the channels, which leaves the open blocks unaligned).
 */
static void test_extent_no_space(void)
{
	struct kv_store *s = open_store_x(72, 3, 8, 4, NULL);
	struct kv_ctx *c;
	uint64_t total;

	CU_ASSERT_FATAL(s != NULL);
	total = kv_store_blocks_total(s);
	CU_ASSERT(total == 27);
	c = mkctx(s, mkp(2, 1, 64, CSD_DTYPE_F32, 2, 10000), 1);
	/*
	 * 1024 tokens: 16 extents per stream (K: 6/5/5 on ch 0/1/2, V:
	 * 5/6/5) = 44/44/40 pages, then 22/21/21 channel pages: 66/65/61
	 * pages = 9/9/8 blocks, room 6/7/3 pages in the open blocks.
	 */
	CU_ASSERT_FATAL(app_f(c, 1, 0, 0, 0, 1024, NULL) == 0);
	CU_ASSERT(kv_chan_chunks(c, 0, 0) == 1);
	CU_ASSERT(kv_store_blocks_free(s) == 1);
	CU_ASSERT(kv_store_bytes_used(s) == 192ull * PG);
	/* extent 16: K on ch 1 (room 7), V on ch 2 (room 3 < 4: the last
	 * free block); extent 17: K on ch 2 (new block), V on ch 0 */
	CU_ASSERT(app_f(c, 1, 0, 0, 1024, 1, NULL) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(app_f(c, 1, 0, 0, 1025, 127, NULL) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 208ull * PG);
	/* extent 18 of both streams: 2 + 3 + 0 pages of room, no extent */
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 1152, 1);
	/* nor for another layer or sequence */
	expect_fail(c, s, VS(NO_SPACE), 0, 1, 0, 1);
	expect_fail(c, s, VS(NO_SPACE), 1, 0, 0, 1);
	CU_ASSERT(kv_append_blocks_bound(c, 0, 0, 1, 0) >= 1);
	CU_ASSERT(kv_append_blocks_bound(c, 0, 0, 0, 0) == 0);
	CU_ASSERT(check_extents(c, 0, 0, 4, 3));
	CU_ASSERT(check_chan(c, 0, 0));
	CU_ASSERT(check_vsum(c, 1, 0, 0, 1152));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == total);

	/*
	 * Reserved pages: with every block taken, a stream still fills its
	 * own extents, and a new extent fits where an open block has room.
	 * 2 channels x 2 blocks x 8 pages, extents of 4, f16 hd 128 (16
	 * tokens per page), one kv head: K extent j on ch j % 2, V on
	 * (j + 1) % 2.
	 */
	kv_store_close(s);
	s = open_store_x(16, 2, 8, 4, NULL);
	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 1, 128, CSD_DTYPE_F16, 2, 10000), 1);
	CU_ASSERT(app(c, 1, 0, 0, 0, 1, NULL) == 0);	/* blocks a0, a1 */
	CU_ASSERT(app(c, 2, 1, 0, 0, 1, NULL) == 0);	/* blocks b0, b1 */
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 4ull * PG);
	/* the rest of extent 0, then extent 1 in the open blocks' room */
	CU_ASSERT(app(c, 1, 0, 0, 1, 63, NULL) == 0);
	CU_ASSERT(app(c, 1, 0, 0, 64, 64, NULL) == 0);
	expect_fail(c, s, VS(NO_SPACE), 0, 0, 128, 1);
	/* seq 1 likewise, decode style */
	{
		uint32_t t, bad = 0;

		for (t = 1; t < 128; t++)
			bad += app(c, 2, 1, 0, t, 1, NULL) != 0;
		CU_ASSERT(bad == 0);
	}
	expect_fail(c, s, VS(NO_SPACE), 1, 0, 128, 1);
	expect_fail(c, s, VS(NO_SPACE), 0, 1, 0, 1);
	CU_ASSERT(kv_store_bytes_used(s) == 32ull * PG);
	CU_ASSERT(check_read(c, 1, 0, 0, 0, 128, 1));
	CU_ASSERT(check_read(c, 2, 1, 0, 0, 128, 1));
	CU_ASSERT(check_extents(c, 0, 0, 4, 2));
	CU_ASSERT(check_extents(c, 1, 0, 4, 2));
	/* reset: its blocks come back and are reused */
	CU_ASSERT(kv_seq_reset(c, 1) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 2);
	CU_ASSERT(app(c, 3, 0, 1, 0, 128, NULL) == 0);
	CU_ASSERT(check_read(c, 3, 0, 1, 0, 128, 1));
	CU_ASSERT(check_read(c, 1, 0, 0, 0, 128, 1));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == kv_store_blocks_total(s));
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	kv_store_close(s);
}

/* Configuration: the key, its check, the default's fit to the block. */
/*
 * Layout of every stream of (seq, layer) on a fresh store whose extents
 * grow from @e to @x pages (blocks of @ppb) on @nch >= 2 channels, nothing
 * falling back: the stream is runs of adjacent pages -- also a whole-block
 * extent, whose blocks are popped together from a channel's free list (low
 * numbers first) -- each on the channel after the previous run's, and
 * every run but the last has the size of a level (kv_extent_size) above
 * the previous run's.  With @decode, no level is skipped (appends of one
 * page at a time).
 */
static int check_grown(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		       uint32_t e, uint32_t x, uint32_t ppb, uint32_t nch,
		       int decode)
{
	uint32_t kvh = kv_ctx_params(c)->kv_heads, tpp = kv_tokens_per_page(c);
	uint32_t np = (kv_len(c, seq, layer) + tpp - 1) / tpp, h, w, i;

	for (h = 0; h < kvh; h++)
		for (w = 0; w < 2; w++) {
			enum kv_which wh = w ? KV_V : KV_K;
			uint32_t start = 0, k = 0;

			for (i = 1; i <= np; i++) {
				const uint8_t *pg = i < np ? kv_page(c, seq,
						layer, h, wh, i) : NULL;
				uint32_t ch = i < np ? kv_page_chan(c, seq,
						layer, h, wh, i) : nch;
				uint32_t pch = kv_page_chan(c, seq, layer, h,
							    wh, i - 1);

				if (i < np && !pg)
					return 0;
				if (ch == pch) {	/* same run */
					if (pg != (const uint8_t *)kv_page(c,
						seq, layer, h, wh, i - 1) + PG)
						return 0;
					continue;
				}
				if (i < np && ch != (pch + 1) % nch)
					return 0;
				/* a run of i - start pages ended: its level */
				while (k < 64 && kv_extent_size(e, x, ppb, k) <
				       i - start && !decode)
					k++;
				if (i < np && kv_extent_size(e, x, ppb, k) !=
				    i - start)
					return 0;
				if (i == np && kv_extent_size(e, x, ppb, k) <
				    i - start)
					return 0;
				k++;
				start = i;
			}
		}
	return 1;
}

/* Pages [p0, p1) of K of kv head 0 adjacent in memory, on channel @ch. */
static int run_at(struct kv_ctx *c, uint32_t seq, uint32_t layer, uint32_t p0,
		  uint32_t p1, uint32_t ch)
{
	for (uint32_t i = p0; i < p1; i++) {
		if (kv_page_chan(c, seq, layer, 0, KV_K, i) != ch)
			return 0;
		if (i > p0 && (const uint8_t *)kv_page(c, seq, layer, 0, KV_K,
						       i) !=
		    (const uint8_t *)kv_page(c, seq, layer, 0, KV_K, i - 1) +
		    PG)
			return 0;
	}
	return 1;
}

/*
 * Growing extents: 4, 8 pages from open blocks, then 16, 32, 64 as whole
 * blocks of 16 pages.  Seq 1 layer 1 is decoded one token at a time (every
 * level in turn), seq 0 layer 1 appended in odd pieces (levels skipped by
 * the larger ones), seq 0 layer 0 in one bulk append (a prefill: extents
 * of 64 pages from the start), all sharing the blocks, SparF channel pages
 * (one chunk) in between.  Each stream's layout follows the schedule, the
 * data reads back, a reset frees everything and growth starts over.
 */
static void test_extent_grow(void)
{
	struct kv_store *s = open_store_g(1024, 4, 16, 4, 64, NULL);
	uint32_t seed = 7, pos, tpp, n, q, ch;
	struct kv_ctx *c;
	uint64_t total;

	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 4);
	CU_ASSERT(kv_store_extent_max(s) == 64);
	CU_ASSERT(kv_extent_size(4, 64, 16, 0) == 4);
	CU_ASSERT(kv_extent_size(4, 64, 16, 1) == 8);
	CU_ASSERT(kv_extent_size(4, 64, 16, 2) == 16);
	CU_ASSERT(kv_extent_size(4, 64, 16, 4) == 64);
	CU_ASSERT(kv_extent_size(4, 64, 16, 40) == 64);
	CU_ASSERT(kv_extent_size(4, 40, 16, 9) == 32);	/* whole blocks */
	CU_ASSERT(kv_extent_size(16, 16, 16, 9) == 16);
	CU_ASSERT(kv_extent_level(4, 64, 16, 0, 1) == 0);
	CU_ASSERT(kv_extent_level(4, 64, 16, 1, 9) == 2);
	CU_ASSERT(kv_extent_level(4, 64, 16, 0, 1000) == 4);
	CU_ASSERT(kv_extent_level(4, 64, 16, 6, 1000) == 6);
	total = kv_store_blocks_total(s);
	c = mkctx(s, mkp(2, 2, 128, CSD_DTYPE_F16, 2, 100000), 1);
	tpp = kv_tokens_per_page(c);
	/* 4 + 8 + 16 + 32 + 64 + 64 pages and a partial one */
	n = (188 + 5) * tpp + 3;
	CU_ASSERT_FATAL(app(c, 3, 0, 0, 0, n, NULL) == 0);
	for (pos = 0; pos < n;) {
		uint32_t m = rnd(&seed) % 3 ? 1 + rnd(&seed) % 300 : 1;

		if (m > n - pos)
			m = n - pos;
		CU_ASSERT_FATAL(app(c, 1, 0, 1, pos, m, NULL) == 0);
		for (q = pos; q < pos + m; q++)
			CU_ASSERT_FATAL(app(c, 2, 1, 1, q, 1, NULL) == 0);
		pos += m;
	}
	CU_ASSERT(check_grown(c, 0, 1, 4, 64, 16, 4, 0));
	CU_ASSERT(check_grown(c, 1, 1, 4, 64, 16, 4, 1));
	CU_ASSERT(check_grown(c, 0, 0, 4, 64, 16, 4, 0));
	ch = kv_page_chan(c, 0, 0, 0, KV_K, 0);
	CU_ASSERT(run_at(c, 0, 0, 0, 64, ch));
	CU_ASSERT(run_at(c, 0, 0, 64, 128, (ch + 1) % 4));
	CU_ASSERT(run_at(c, 0, 0, 128, 192, (ch + 2) % 4));
	ch = kv_page_chan(c, 1, 1, 0, KV_K, 0);
	CU_ASSERT(run_at(c, 1, 1, 0, 4, ch));
	CU_ASSERT(run_at(c, 1, 1, 4, 12, (ch + 1) % 4));
	CU_ASSERT(run_at(c, 1, 1, 60, 124, (ch + 4) % 4));
	CU_ASSERT(check_read(c, 1, 0, 1, 0, n, 3));
	CU_ASSERT(check_read(c, 2, 1, 1, 0, n, 1));
	CU_ASSERT(check_read(c, 3, 0, 0, 0, n, 2));

	for (q = 0; q < 2; q++)
		CU_ASSERT(kv_seq_reset(c, q) == 0);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	CU_ASSERT(kv_store_bytes_used(s) == 0);
	/* starts over at 4 pages (decode) */
	for (q = 0; q < 20 * tpp; q++)
		CU_ASSERT_FATAL(app(c, 4, 0, 1, q, 1, NULL) == 0);
	CU_ASSERT(check_grown(c, 0, 1, 4, 64, 16, 4, 1));
	CU_ASSERT(run_at(c, 0, 1, 0, 4, kv_page_chan(c, 0, 1, 0, KV_K, 0)));
	CU_ASSERT(check_read(c, 4, 0, 1, 0, 20 * tpp, 1));
	kv_ctx_destroy(c);
	CU_ASSERT(kv_store_blocks_free(s) == total);
	kv_store_close(s);
}

/*
 * A nearly full store: when the next growing extent does not fit, the
 * append falls back to extents of E, so the store still fills up.  2
 * channels x 8 blocks x 16 pages, extents 4 .. 64; one K and one V stream
 * of 16 tokens per page: 4 + 8 + 16 + 32 + 64 pages each take the whole
 * store but 4 pages per open block, which the fallback fills; the append
 * that completes the first SparF chunk (128 channel pages) finds no room
 * and changes nothing.
 */
static void test_extent_grow_full(void)
{
	struct kv_store *s = open_store_g(128, 2, 16, 4, 64, NULL);
	struct kv_ctx *c;
	uint32_t t, tpp, bad = 0;

	CU_ASSERT_FATAL(s != NULL);
	c = mkctx(s, mkp(2, 1, 128, CSD_DTYPE_F16, 2, 100000), 1);
	tpp = kv_tokens_per_page(c);
	for (t = 0; t < 128 * tpp - 1; t++)
		bad += app(c, 5, 0, 0, t, 1, NULL) != 0;
	CU_ASSERT(bad == 0);
	CU_ASSERT(kv_store_blocks_free(s) == 0);
	CU_ASSERT(kv_store_bytes_used(s) == 256ull * PG);
	CU_ASSERT(check_read(c, 5, 0, 0, 0, t, 2));
	expect_fail(c, s, VS(NO_SPACE), 0, 0, t, 1);
	expect_fail(c, s, VS(NO_SPACE), 1, 0, 0, 1);
	CU_ASSERT(kv_append_blocks_bound(c, 1, 0, 1, 0) > 0);
	CU_ASSERT(kv_append_blocks_bound(c, 1, 0, 1, KV_APPEND_NOGROW) > 0);
	kv_ctx_destroy(c);
	kv_store_close(s);
}

static void test_extent_config(void)
{
	struct csdfw_config cfg;
	struct kv_store *s = NULL;
	char err[128];

	csdfw_config_default(&cfg);
	CU_ASSERT(csdfw_config_parse(&cfg, "extent=8", err, sizeof(err)) ==
		  0);
	CU_ASSERT(cfg.extent_pages == 8);
	CU_ASSERT(csdfw_config_parse(&cfg, "block=4", err, sizeof(err)) ==
		  -EINVAL);
	CU_ASSERT(strstr(err, "extent") != NULL);
	CU_ASSERT(csdfw_config_parse(&cfg, "block=24,extent=16", err,
				     sizeof(err)) == -EINVAL);
	CU_ASSERT(csdfw_config_parse(&cfg, "extent=0", err, sizeof(err)) ==
		  -EINVAL);
	CU_ASSERT(cfg.extent_pages == 8);
	CU_ASSERT(csdfw_config_parse(&cfg, "block=24,extent=1", err,
				     sizeof(err)) == 0);

	/* the default adapts to small blocks; an explicit one must divide */
	s = open_store_x(64, 2, 4, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 4);
	kv_store_close(s);
	s = open_store_x(72, 2, 24, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 8);
	kv_store_close(s);
	s = open_store_x(64, 2, 64, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == CSDFW_EXTENT_DEFAULT);
	kv_store_close(s);
	memset(&cfg, 0, sizeof(cfg));
	cfg.capacity = 64ull * PG;
	cfg.channels = 2;
	cfg.page_size = PG;
	cfg.pages_per_block = 8;
	cfg.extent_pages = 3;
	s = NULL;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	cfg.extent_pages = 16;
	CU_ASSERT(kv_store_open(&cfg, &s) == -EINVAL);
	CU_ASSERT(s == NULL);

	/* extent_max: 1 MiB by default, at least the first extent */
	csdfw_config_default(&cfg);
	CU_ASSERT(cfg.extent_max_pages == 0);
	CU_ASSERT(csdfw_config_parse(&cfg, "extent_max=64", err,
				     sizeof(err)) == 0);
	CU_ASSERT(cfg.extent_max_pages == 64);
	CU_ASSERT(csdfw_config_parse(&cfg, "extent_max=0", err,
				     sizeof(err)) == -EINVAL);
	s = open_store_g(64, 2, 64, 0, 0, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent(s) == 16);
	CU_ASSERT(kv_store_extent_max(s) == 256);
	kv_store_close(s);
	s = open_store_g(64, 2, 16, 16, 4, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent_max(s) == 16);
	kv_store_close(s);
	/* sizes below a block divide it, larger ones are whole blocks */
	s = open_store_g(256, 2, 64, 4, 40, NULL);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT(kv_store_extent_max(s) == 32);
	kv_store_close(s);
	CU_ASSERT(kv_extent_max_norm(16, 300, 64) == 256);
	CU_ASSERT(kv_extent_max_norm(8, 1000, 24) == 984);
	CU_ASSERT(kv_extent_max_norm(8, 20, 24) == 8);
	CU_ASSERT(kv_extent_size(8, 984, 24, 1) == 24);
	CU_ASSERT(kv_extent_size(8, 984, 24, 2) == 24);
	CU_ASSERT(kv_extent_size(8, 984, 24, 3) == 48);
}

static CU_TestInfo kv_tests[] = {
	{ "geometry", test_geometry },
	{ "roundtrip", test_roundtrip },
	{ "striping", test_striping },
	{ "fallback", test_fallback },
	{ "token_order", test_token_order },
	{ "ctx_full", test_ctx_full },
	{ "no_space", test_no_space },
	{ "reclaim", test_reclaim },
	{ "file_backing", test_file_backing },
	{ "concurrency", test_concurrency },
	{ "metadata_size", test_metadata_size },
	{ "chan", test_chan },
	{ "chan_no_space", test_chan_no_space },
	{ "chan_concurrency", test_chan_concurrency },
	{ "extent_roundtrip", test_extent_roundtrip },
	{ "extent_decode", test_extent_decode },
	{ "extent_no_space", test_extent_no_space },
	{ "extent_config", test_extent_config },
	{ "extent_grow", test_extent_grow },
	{ "extent_grow_full", test_extent_grow_full },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "kv", NULL, NULL, kv_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
