// SPDX-License-Identifier: MIT
/*
 * kv.c - KV context manager and flash-aware layout (contract: kv.h).
 *
 * Geometry.  The store has `channels` channels of `blocks_per_channel`
 * blocks of `pages_per_block` pages.  blocks_per_channel =
 * capacity / (page_size * pages_per_block) / channels, i.e. the capacity is
 * rounded down to whole blocks and to the same number of blocks on every
 * channel.  Block g (0 .. blocks_total-1) belongs to channel
 * g / blocks_per_channel and lives at byte offset g * block_bytes of the
 * backing region; a page is named by its global page number
 * p = g * pages_per_block + page (uint32_t), so its channel is
 * p / pages_per_block / blocks_per_channel.
 *
 * Backing: anonymous MAP_NORESERVE memory, or a file created/truncated to
 * the region size and mapped MAP_SHARED.  Freed blocks are given back
 * (MADV_DONTNEED for memory, FALLOC_FL_PUNCH_HOLE for files) before they
 * return to their channel's free list.
 *
 * Rows.  A stream's page holds tpp = page_size / (head_dim * elsize) rows.
 * A row never spans pages: contexts whose head row is larger than a page
 * are refused with CSD_VSC_UNSUPPORTED (cannot happen with the device
 * limits: 256 x f32 = 1 KiB < 4 KiB minimum page).
 *
 * Placement.  A stream's token-indexed pages are allocated in extents of
 * consecutive pages that grow with the stream: the n-th extent since the
 * layer's last reset or recovery has level k >= n and kv_extent_size(E, X,
 * ppb, k) = min(E << k, X) pages, rounded down to whole blocks when a
 * block or more (E = extent, config extent=, default 16 = 64 KiB at 4 KiB
 * pages, divides pages_per_block; X = extent_max, default 1 MiB, at least
 * E; E = X = 1 is single-page striping).  A decode append (one page at a
 * time) takes the levels in turn; a bulk append (a prefill) skips the
 * levels whose extents it would fill at once (kv_extent_level), so a
 * prefilled stream is in extents of X from its start.  An attention
 * kernel thus walks a stream in runs of up to 1 MiB in host memory and the
 * hardware prefetchers, which stop at every 4 KiB boundary of a scattered
 * page and restart at every run, keep streaming (1 MiB runs read ~5% more
 * of the STREAM bandwidth than 64 KiB ones, Documentation/performance.md
 * section 7), while what a stream reserves beyond its pages stays below
 * about its own size while it grows, then below X.  Stream st = kv_head *
 * 2 + which of layer l has skew (l * kv_heads * 2 + st) % channels, and
 * the n-th extent is placed on channel (xch + n + skew) % channels, so the
 * extents of one stream go round-robin over all channels and the same
 * extent of the streams of a layer is spread evenly over the channels: an
 * attention call still reads every channel in parallel (at extent
 * granularity).  The whole extent is reserved when its first page is
 * needed (decode appends one token at a time) and the page table entries
 * of all its pages are written then (past the length, so no reader sees
 * them); the layer keeps where its reserved pages end (xend), the least
 * level of its next extent (xk) and how many extents it has begun (xn).
 * Reserved pages that hold no rows yet are neither free nor counted in
 * bytes_used (which counts pages holding rows).
 *
 * Each sequence owns one open block per channel (shared by all its layers
 * and heads); an extent smaller than a block takes its pages at the
 * block's next free page, a channel-indexed K page (below) one page.  An
 * extent of a block or more takes whole free blocks instead, popped
 * together from one channel's free list (low block numbers first, so on a
 * fresh store they are adjacent in the backing region); the open blocks
 * are left alone.  If the wanted channel has neither room for the request
 * in the sequence's open block (or, for whole blocks, a free block), the
 * next channel (ch + 1, ch + 2, ... cyclically) that has one is used.  An
 * open block with less room than a request is abandoned when the request
 * needs its channel: those pages stay unused until the sequence is reset.
 * Extent sizes below a block divide it (kv_extent_max_norm,
 * kv_extent_size), so that happens only where requests of different sizes
 * share a block (growth, channel-indexed pages), never with E = X = 1.  So
 * an extent smaller than a block never spans blocks.
 *
 * Space check.  An append first plans every allocation it needs (extents
 * of all streams, then channel-indexed pages) on a copy of the per-channel
 * state (free block counts, the sequence's open-block cursors) with exactly
 * the placement rules above, and fails with NO_SPACE unless all of them
 * succeed; then it allocates for real under the same store lock, so an
 * append is all-or-nothing and the check is exact, reserved extent pages
 * and abandoned block tails included.  A new page inside an already
 * reserved extent needs no space at all.  When the growing extents do not
 * fit, the append is planned again with extents of E pages (a nearly full
 * store still fills up), and fails only if those do not fit either.
 *
 * Recovered layers (backing file): a block is owned through the pages the
 * page tables name, so the reserved rest of a last extent is not known.
 * The next page starts a new extent (xend = the page count), growth starts
 * over at E (xk = xn = 0) and the channel round-robin goes on as if the
 * recovered pages had been extents of E (xch = pages / E); reserved pages
 * in blocks that hold named pages stay unused until reset (the same as the
 * unused tail of an open block), reserved blocks without any are free.
 * This also makes a file written with other extent sizes recover
 * correctly: they are not part of the on-media format.
 *
 * Page tables.  Every stream of one (seq, layer) has the same number of
 * pages, so a (seq, layer) has one table: entry [page][stream] = global page
 * number.  It is two-level: a directory sized from max_tokens (fixed, never
 * moved) of lazily allocated chunks of `chunk_pages` page indices
 * (~4 KiB each).  Entries are written before the length is published
 * (release) and are never rewritten while the length covers them, so
 * readers may look pages up during appends.  Per-sequence and per-layer
 * structures are allocated on first append and kept until the context is
 * destroyed (a reset only drops the blocks and the lengths).
 *
 * Channel-indexed K (SparF).  Every complete chunk of ct = page_size /
 * elsize tokens of a K stream is also stored dimension-major: head_dim
 * pages, page j = dim j of the chunk's ct tokens.  When an append completes
 * chunk k, it takes kv_heads * head_dim more pages, one at a time (dim j of
 * kv head h on channel (k * head_dim + j + skew(layer, K stream of h)) %
 * channels, same fallback as token pages; no extents), planned in the
 * NO_SPACE check, transposes
 * the chunk's rows from the token-indexed pages (the emulated drive stages
 * the chunk in DRAM: no page reads are charged) and charges the programs to
 * model_work.wr_pages; the pages are written before the length that
 * completes the chunk is published.  Space cost: head_dim pages per chunk
 * per kv head = the chunk's K once more, so a long sequence uses 1.5x the
 * flash of K + V alone (bytes_used counts the channel pages).  The chunk
 * table of a (seq, layer) is a directory of max_tokens / ct lazily
 * allocated [kv_heads][head_dim] arrays.
 *
 * V running sum: per (seq, layer), kv_heads * head_dim doubles (device
 * DRAM, 8 bytes per element per layer in use), the sum of V over the first
 * vn tokens.  Updated by kv_append (the delta is summed before, then added
 * inside a seqlock write section) and cleared by kv_seq_reset; kv_vsum
 * retries until it read an even, unchanged sequence count, so (sum, n) is a
 * consistent snapshot.
 *
 * Programming: a partly filled last page is filled by later appends (the
 * emulated drive buffers it); every page an append writes rows to is
 * charged as one program in model_work.wr_pages, every page a read touches
 * as one read.  kv_append/kv_read do not charge the host link (the caller
 * accounts the command's transfer).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "attn_internal.h"
#include "kv.h"

#define NO_BLOCK	UINT32_MAX
#define CHUNK_BYTES	4096u

#define ST_INTERNAL	CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INTERNAL)
#define ST_VSC(x)	CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_##x)

struct kv_store {
	uint8_t *base;			/* whole mapping */
	size_t size;
	uint8_t *data;			/* block 0 */
	size_t data_bytes;		/* blocks_total * block_bytes */
	int fd;				/* -1: memory */
	bool closing;			/* contexts are unloaded, not freed */
	/* backing file (on-media-format.md), else zero */
	uint64_t slot_off, slot_size, data_off, fs_id;
	uint64_t md_seq;		/* sequence number of the last commit */
	uint32_t md_slot;		/* slot holding it (0 = A, 1 = B) */
	uint32_t channels;
	uint32_t page_size;
	uint32_t ppb;			/* pages per block */
	uint32_t extent;		/* E: pages of a stream's first extent,
					 * divides ppb */
	uint32_t extent_max;		/* X >= E: largest extent (kv_extent_size) */
	uint32_t open_max;		/* largest request served from an open
					 * block (blocks_bound) */
	uint32_t bpc;			/* blocks per channel */
	size_t block_bytes;

	pthread_mutex_t lock;		/* free lists */
	uint32_t *free_blk;		/* [channels][bpc] stacks of block ids */
	uint32_t nfree[CSDFW_MAX_CHANNELS];
	uint64_t nfree_total;		/* under lock */
	uint64_t npending;		/* freed, reusable after a commit */
	uint32_t *pend_blk;		/* [blocks_total], file backing only */

	pthread_mutex_t commit_lock;	/* one commit at a time; before reg */
	pthread_mutex_t reg_lock;	/* reg[]; before any kv_seq lock */
	struct kv_ctx **reg;		/* live contexts */
	uint32_t nreg, reg_cap;
	struct kv_ctx **rec;		/* recovered by kv_store_open */
	uint32_t nrec;

	_Atomic uint64_t blocks_free;
	_Atomic uint64_t bytes_stored;
	_Atomic uint64_t bytes_used;
};

struct kv_layer {
	_Atomic uint32_t len;
	/* extents, under kv_seq.lock: token pages below xend are placed
	 * (page table entries written); the next extent has at least level
	 * xk (kv_extent_size), is the xn-th since the last reset or recovery
	 * and goes to channel (xch + xn + skew) % channels */
	uint32_t xend, xk, xn, xch;
	/* V running sum, a seqlock: odd while kv_append/reset update it */
	_Atomic uint32_t vseq;
	_Atomic uint32_t vn;		/* tokens the sum covers */
	_Atomic double *vsum;		/* [kv_heads * head_dim] */
	/* channel-indexed K: [cchunks] -> [kv_heads][head_dim] page numbers */
	_Atomic(uint32_t *) *cdir;
	_Atomic(uint32_t *) dir[];	/* [nchunks] */
};

struct kv_seq {
	pthread_mutex_t lock;		/* appends and reset */
	uint32_t *owned;		/* blocks owned (all layers) */
	uint32_t nowned, owned_cap;
	uint32_t open_blk[CSDFW_MAX_CHANNELS];
	uint32_t open_next[CSDFW_MAX_CHANNELS];
	_Atomic(struct kv_layer *) layer[];	/* [layers] */
};

struct kv_ctx {
	struct kv_store *s;
	struct csd_ctx_desc p;
	uint32_t id;
	uint32_t elsize;
	uint32_t hrow;			/* bytes of one head's row */
	size_t row_bytes;		/* kv_heads * hrow */
	uint32_t tpp;
	uint32_t nstreams;		/* kv_heads * 2 */
	uint32_t max_pages;		/* per stream */
	uint32_t chunk_pages;
	uint32_t nchunks;
	uint32_t ct;			/* tokens per channel-indexed chunk */
	uint32_t cchunks;		/* max complete chunks per stream */
	uint32_t cpages;		/* kv_heads * head_dim pages per chunk */
	pthread_mutex_t lock;		/* sequence allocation */
	_Atomic uint64_t bytes_used;
	_Atomic(struct kv_seq *) *seqs;	/* [max_seqs] */
};

/* ---- store ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static int is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

static int store_attach_file(struct kv_store *s, const struct csdfw_config *cfg);
static int store_commit(struct kv_store *s);
static void store_release_all(struct kv_store *s);

int kv_store_open(const struct csdfw_config *cfg, struct kv_store **sp)
{
	struct kv_store *s;
	uint64_t block_bytes, nblocks, bpc, total_pages;
	uint32_t ch, b, extent, extent_max;
	int err;

	*sp = NULL;
	if (!cfg || cfg->channels == 0 || cfg->channels > CSDFW_MAX_CHANNELS ||
	    !is_pow2(cfg->page_size) || cfg->page_size < 4096 ||
	    cfg->pages_per_block == 0)
		return -EINVAL;
	extent = cfg->extent_pages;
	if (!extent) {
		/* default: CSDFW_EXTENT_DEFAULT, or less to divide the block */
		extent = CSDFW_EXTENT_DEFAULT;
		while (cfg->pages_per_block % extent)
			extent /= 2;
	}
	if (extent > cfg->pages_per_block || cfg->pages_per_block % extent)
		return -EINVAL;
	/* default: 1 MiB (at least E); below E: no growth */
	extent_max = kv_extent_max_norm(extent, cfg->extent_max_pages ?
					cfg->extent_max_pages :
					CSDFW_EXTENT_MAX_BYTES / cfg->page_size,
					cfg->pages_per_block);
	block_bytes = (uint64_t)cfg->page_size * cfg->pages_per_block;
	nblocks = cfg->capacity / block_bytes;
	bpc = nblocks / cfg->channels;
	if (bpc == 0)
		return -EINVAL;
	total_pages = bpc * cfg->channels * cfg->pages_per_block;
	if (total_pages >= UINT32_MAX || bpc * cfg->channels >= UINT32_MAX ||
	    total_pages * cfg->page_size > (uint64_t)SIZE_MAX / 4)
		return -EFBIG;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->channels = cfg->channels;
	s->page_size = cfg->page_size;
	s->ppb = cfg->pages_per_block;
	s->extent = extent;
	s->extent_max = extent_max;
	/* open-block requests: single pages, extents below a block (E, the
	 * fallback, and growing ones) */
	s->open_max = 1;
	for (b = 0; b < 32; b++) {
		uint32_t z = kv_extent_size(extent, extent_max,
					    cfg->pages_per_block, b);

		if (z < cfg->pages_per_block && z > s->open_max)
			s->open_max = z;
	}
	if (extent < cfg->pages_per_block && extent > s->open_max)
		s->open_max = extent;
	s->bpc = (uint32_t)bpc;
	s->block_bytes = (size_t)block_bytes;
	s->data_bytes = (size_t)(total_pages * cfg->page_size);
	s->size = s->data_bytes;
	s->free_blk = calloc((size_t)bpc * cfg->channels, sizeof(uint32_t));
	if (!s->free_blk) {
		err = -ENOMEM;
		goto err_free;
	}
	err = -pthread_mutex_init(&s->lock, NULL);
	if (err)
		goto err_free;
	err = -pthread_mutex_init(&s->reg_lock, NULL);
	if (err)
		goto err_lock;
	err = -pthread_mutex_init(&s->commit_lock, NULL);
	if (err)
		goto err_reg;

	/* Stacks popped from the top: hand out low block numbers first. */
	for (ch = 0; ch < s->channels; ch++) {
		uint32_t *stk = s->free_blk + (size_t)ch * s->bpc;

		for (b = 0; b < s->bpc; b++)
			stk[b] = ch * s->bpc + (s->bpc - 1 - b);
		s->nfree[ch] = s->bpc;
	}
	s->nfree_total = (uint64_t)s->bpc * s->channels;
	atomic_init(&s->blocks_free, s->nfree_total);
	atomic_init(&s->bytes_stored, 0);
	atomic_init(&s->bytes_used, 0);

	if (cfg->backing[0]) {
		/* superblock, metadata, recovery: the persistence section */
		err = store_attach_file(s, cfg);
		if (err)
			goto err_commit;
		*sp = s;
		return 0;
	}
	s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->base == MAP_FAILED) {
		err = -errno;
		s->base = NULL;
		goto err_commit;
	}
	/*
	 * Attention reads pages scattered over the whole store; with 4 KiB
	 * host pages nearly every flash page read is a TLB miss.  Ask for
	 * transparent huge pages (advice only: reclaim's MADV_DONTNEED of a
	 * block simply splits a huge page).
	 */
	s->data = s->base;
	(void)madvise(s->base, s->size, MADV_HUGEPAGE);
	*sp = s;
	return 0;

err_commit:
	pthread_mutex_destroy(&s->commit_lock);
err_reg:
	pthread_mutex_destroy(&s->reg_lock);
err_lock:
	pthread_mutex_destroy(&s->lock);
err_free:
	free(s->free_blk);
	free(s->pend_blk);
	free(s->reg);
	free(s->rec);
	free(s);
	return err;
}

void kv_store_close(struct kv_store *s)
{
	if (!s)
		return;
	s->closing = true;
	store_release_all(s);
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	pthread_mutex_destroy(&s->commit_lock);
	pthread_mutex_destroy(&s->reg_lock);
	pthread_mutex_destroy(&s->lock);
	free(s->free_blk);
	free(s->pend_blk);
	free(s->reg);
	free(s->rec);
	free(s);
}

int kv_store_flush(struct kv_store *s)
{
	if (!s || s->fd < 0)
		return 0;
	return store_commit(s);
}

void kv_store_shutdown(struct kv_store *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		(void)store_commit(s);
	s->closing = true;
}

uint32_t kv_store_nrecovered(const struct kv_store *s)
{
	return s->nrec;
}

struct kv_ctx *kv_store_recovered(const struct kv_store *s, uint32_t i)
{
	return i < s->nrec ? s->rec[i] : NULL;
}

uint64_t kv_store_blocks_total(const struct kv_store *s)
{
	return (uint64_t)s->bpc * s->channels;
}

uint64_t kv_store_blocks_free(const struct kv_store *s)
{
	return atomic_load_explicit(&s->blocks_free, memory_order_relaxed);
}

uint64_t kv_store_bytes_stored(const struct kv_store *s)
{
	return atomic_load_explicit(&s->bytes_stored, memory_order_relaxed);
}

uint64_t kv_store_bytes_used(const struct kv_store *s)
{
	return atomic_load_explicit(&s->bytes_used, memory_order_relaxed);
}

static inline uint32_t blk_channel(const struct kv_store *s, uint32_t blk)
{
	return blk / s->bpc;
}

static inline uint32_t page_channel(const struct kv_store *s, uint32_t pg)
{
	return pg / s->ppb / s->bpc;
}

static inline uint8_t *page_addr(const struct kv_store *s, uint32_t pg)
{
	return s->data + (size_t)pg * s->page_size;
}

/* Give the blocks' storage back to the OS, then to the free lists. */
/* Give blocks back to their channel's free list (under s->lock). */
static void free_push_locked(struct kv_store *s, const uint32_t *blk,
			     uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++) {
		uint32_t ch = blk_channel(s, blk[i]);

		s->free_blk[(size_t)ch * s->bpc + s->nfree[ch]++] = blk[i];
	}
	s->nfree_total += n;
}

/*
 * Memory: give the blocks' storage back to the OS, then to the free lists.
 * Backing file: the last committed metadata may still reference them, so
 * they wait on the pending list until the next commit (which punches them
 * out of the file and frees them).  While the store is closing, contexts
 * are only unloaded: their blocks stay theirs in the file.
 */
static void store_free_blocks(struct kv_store *s, const uint32_t *blk,
			      uint32_t n)
{
	uint32_t i;

	if (!n || s->closing)
		return;
	if (s->fd >= 0) {
		pthread_mutex_lock(&s->lock);
		memcpy(s->pend_blk + s->npending, blk, (size_t)n * sizeof(*blk));
		s->npending += n;
		atomic_fetch_add_explicit(&s->blocks_free, n,
					  memory_order_relaxed);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	for (i = 0; i < n; i++)
		(void)madvise(s->data + (size_t)blk[i] * s->block_bytes,
			      s->block_bytes, MADV_DONTNEED);
	pthread_mutex_lock(&s->lock);
	free_push_locked(s, blk, n);
	atomic_fetch_add_explicit(&s->blocks_free, n, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
}

/* ---- contexts --------------------------------------------------------- */

static uint32_t pow2_floor(uint32_t x)
{
	uint32_t p = 1;

	while (p <= x / 2)
		p <<= 1;
	return p;
}

uint16_t kv_ctx_create(struct kv_store *s, const struct csd_ctx_desc *p,
		       uint32_t id, struct kv_ctx **cp)
{
	struct kv_ctx *c;
	uint32_t elsize, hrow, i;

	*cp = NULL;
	if (!p->layers || !p->kv_heads || !p->head_dim || !p->max_seqs ||
	    !p->max_tokens)
		return CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD);
	if (p->dtype >= CSD_DTYPE_COUNT)
		return ST_VSC(UNSUPPORTED);
	elsize = csd_dtype_size(p->dtype);
	hrow = (uint32_t)p->head_dim * elsize;
	if (hrow > s->page_size)
		return ST_VSC(UNSUPPORTED);

	c = calloc(1, sizeof(*c));
	if (!c)
		return ST_INTERNAL;
	c->s = s;
	c->p = *p;
	c->id = id;
	c->elsize = elsize;
	c->hrow = hrow;
	c->row_bytes = (size_t)hrow * p->kv_heads;
	c->tpp = s->page_size / hrow;
	c->nstreams = (uint32_t)p->kv_heads * 2;
	c->max_pages = (uint32_t)(((uint64_t)p->max_tokens + c->tpp - 1) /
				  c->tpp);
	c->chunk_pages = pow2_floor(CHUNK_BYTES / (c->nstreams * 4u) ?
				    CHUNK_BYTES / (c->nstreams * 4u) : 1);
	c->nchunks = (c->max_pages + c->chunk_pages - 1) / c->chunk_pages;
	c->ct = s->page_size / elsize;
	c->cchunks = p->max_tokens / c->ct;
	c->cpages = (uint32_t)p->kv_heads * p->head_dim;
	atomic_init(&c->bytes_used, 0);
	c->seqs = calloc(p->max_seqs, sizeof(*c->seqs));
	if (!c->seqs)
		goto err;
	for (i = 0; i < p->max_seqs; i++)
		atomic_init(&c->seqs[i], NULL);
	if (pthread_mutex_init(&c->lock, NULL))
		goto err;
	/* registered for the metadata commits */
	pthread_mutex_lock(&s->reg_lock);
	if (s->nreg == s->reg_cap) {
		uint32_t cap = s->reg_cap ? 2 * s->reg_cap : 16;
		struct kv_ctx **r = realloc(s->reg,
					    cap * sizeof(struct kv_ctx *));

		if (!r) {
			pthread_mutex_unlock(&s->reg_lock);
			pthread_mutex_destroy(&c->lock);
			goto err;
		}
		s->reg = r;
		s->reg_cap = cap;
	}
	s->reg[s->nreg++] = c;
	pthread_mutex_unlock(&s->reg_lock);
	*cp = c;
	return 0;
err:
	free(c->seqs);
	free(c);
	return ST_INTERNAL;
}

const struct csd_ctx_desc *kv_ctx_params(const struct kv_ctx *c)
{
	return &c->p;
}

uint32_t kv_ctx_id(const struct kv_ctx *c)
{
	return c->id;
}

uint32_t kv_tokens_per_page(const struct kv_ctx *c)
{
	return c->tpp;
}

static inline uint32_t pages_for(const struct kv_ctx *c, uint32_t ntok)
{
	return (uint32_t)(((uint64_t)ntok + c->tpp - 1) / c->tpp);
}

static inline struct kv_seq *seq_peek(const struct kv_ctx *c, uint32_t seq)
{
	if (seq >= c->p.max_seqs)
		return NULL;
	return atomic_load_explicit(&c->seqs[seq], memory_order_acquire);
}

static inline struct kv_layer *layer_peek(const struct kv_ctx *c,
					  const struct kv_seq *sq,
					  uint32_t layer)
{
	if (!sq || layer >= c->p.layers)
		return NULL;
	return atomic_load_explicit(&sq->layer[layer], memory_order_acquire);
}

static struct kv_seq *seq_get(struct kv_ctx *c, uint32_t seq)
{
	struct kv_seq *sq = seq_peek(c, seq);
	uint32_t i;

	if (sq)
		return sq;
	pthread_mutex_lock(&c->lock);
	sq = atomic_load_explicit(&c->seqs[seq], memory_order_relaxed);
	if (sq)
		goto out;
	sq = calloc(1, sizeof(*sq) + c->p.layers * sizeof(sq->layer[0]));
	if (!sq)
		goto out;
	if (pthread_mutex_init(&sq->lock, NULL)) {
		free(sq);
		sq = NULL;
		goto out;
	}
	for (i = 0; i < CSDFW_MAX_CHANNELS; i++)
		sq->open_blk[i] = NO_BLOCK;
	for (i = 0; i < c->p.layers; i++)
		atomic_init(&sq->layer[i], NULL);
	atomic_store_explicit(&c->seqs[seq], sq, memory_order_release);
out:
	pthread_mutex_unlock(&c->lock);
	return sq;
}

/* One allocation: header, dir[nchunks], cdir[cchunks], vsum[cpages]. */
static size_t layer_vsum_off(const struct kv_ctx *c)
{
	size_t off = sizeof(struct kv_layer) +
		     ((size_t)c->nchunks + c->cchunks) * sizeof(uint32_t *);

	return (off + 7) & ~(size_t)7;
}

static size_t layer_bytes(const struct kv_ctx *c)
{
	return layer_vsum_off(c) + (size_t)c->cpages * sizeof(double);
}

/* Called with sq->lock held. */
static struct kv_layer *layer_get(struct kv_ctx *c, struct kv_seq *sq,
				  uint32_t layer)
{
	struct kv_layer *ly = layer_peek(c, sq, layer);
	uint32_t i;

	if (ly)
		return ly;
	ly = calloc(1, layer_bytes(c));
	if (!ly)
		return NULL;
	atomic_init(&ly->len, 0);
	atomic_init(&ly->vseq, 0);
	atomic_init(&ly->vn, 0);
	for (i = 0; i < c->nchunks; i++)
		atomic_init(&ly->dir[i], NULL);
	ly->vsum = (_Atomic double *)((uint8_t *)ly + layer_vsum_off(c));
	for (i = 0; i < c->cpages; i++)
		atomic_init(&ly->vsum[i], 0.0);
	ly->cdir = (_Atomic(uint32_t *) *)(void *)(ly->dir + c->nchunks);
	for (i = 0; i < c->cchunks; i++)
		atomic_init(&ly->cdir[i], NULL);
	atomic_store_explicit(&sq->layer[layer], ly, memory_order_release);
	return ly;
}

static inline uint32_t *pt_entry(const struct kv_ctx *c,
				 const struct kv_layer *ly, uint32_t page,
				 uint32_t stream)
{
	uint32_t *chunk = atomic_load_explicit(&ly->dir[page / c->chunk_pages],
					       memory_order_acquire);

	return chunk + (size_t)(page % c->chunk_pages) * c->nstreams + stream;
}

/* Pages of (seq, layer) at length @len: token-indexed and channel-indexed. */
static inline uint64_t layer_pages(const struct kv_ctx *c, uint32_t len)
{
	return (uint64_t)pages_for(c, len) * c->nstreams +
	       (uint64_t)(len / c->ct) * c->cpages;
}

/* Seqlock writer side of the V sum (appends to the layer are serialized). */
static void vsum_begin(struct kv_layer *ly)
{
	uint32_t q = atomic_load_explicit(&ly->vseq, memory_order_relaxed);

	atomic_store_explicit(&ly->vseq, q + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void vsum_end(struct kv_layer *ly)
{
	uint32_t q = atomic_load_explicit(&ly->vseq, memory_order_relaxed);

	atomic_store_explicit(&ly->vseq, q + 1, memory_order_release);
}

static void vsum_clear(const struct kv_ctx *c, struct kv_layer *ly)
{
	uint32_t i;

	vsum_begin(ly);
	for (i = 0; i < c->cpages; i++)
		atomic_store_explicit(&ly->vsum[i], 0.0, memory_order_relaxed);
	atomic_store_explicit(&ly->vn, 0, memory_order_relaxed);
	vsum_end(ly);
}

/* A layer's extents start over: its next extent, at token page @xend, is
 * the first (level 0) and goes to channel (@xch + skew) % channels. */
static void layer_extents_restart(struct kv_layer *ly, uint32_t xend,
				  uint32_t xch)
{
	ly->xend = xend;
	ly->xk = 0;
	ly->xn = 0;
	ly->xch = xch;
}

/* Drop every block and length of a sequence.  Called with sq->lock held. */
static void seq_drop(struct kv_ctx *c, struct kv_seq *sq)
{
	struct kv_store *s = c->s;
	uint64_t stored = 0, used = 0;
	uint32_t l, i;

	for (l = 0; l < c->p.layers; l++) {
		struct kv_layer *ly = layer_peek(c, sq, l);
		uint32_t len;

		if (!ly)
			continue;
		len = atomic_load_explicit(&ly->len, memory_order_relaxed);
		stored += (uint64_t)len * c->row_bytes * 2;
		used += layer_pages(c, len) * s->page_size;
		atomic_store_explicit(&ly->len, 0, memory_order_release);
		layer_extents_restart(ly, 0, 0);
		vsum_clear(c, ly);
	}
	store_free_blocks(s, sq->owned, sq->nowned);
	sq->nowned = 0;
	for (i = 0; i < CSDFW_MAX_CHANNELS; i++) {
		sq->open_blk[i] = NO_BLOCK;
		sq->open_next[i] = 0;
	}
	atomic_fetch_sub_explicit(&s->bytes_stored, stored,
				  memory_order_relaxed);
	atomic_fetch_sub_explicit(&s->bytes_used, used, memory_order_relaxed);
	atomic_fetch_sub_explicit(&c->bytes_used, used, memory_order_relaxed);
}

void kv_ctx_destroy(struct kv_ctx *c)
{
	struct kv_store *s;
	uint32_t i, l, k;

	if (!c)
		return;
	s = c->s;
	pthread_mutex_lock(&s->reg_lock);
	for (i = 0; i < s->nreg; i++)
		if (s->reg[i] == c) {
			s->reg[i] = s->reg[--s->nreg];
			break;
		}
	for (i = 0; i < s->nrec; i++)
		if (s->rec[i] == c)
			s->rec[i] = NULL;
	pthread_mutex_unlock(&s->reg_lock);
	for (i = 0; i < c->p.max_seqs; i++) {
		struct kv_seq *sq = seq_peek(c, i);

		if (!sq)
			continue;
		pthread_mutex_lock(&sq->lock);
		seq_drop(c, sq);
		pthread_mutex_unlock(&sq->lock);
		for (l = 0; l < c->p.layers; l++) {
			struct kv_layer *ly = layer_peek(c, sq, l);

			if (!ly)
				continue;
			for (k = 0; k < c->nchunks; k++)
				free(atomic_load_explicit(&ly->dir[k],
						memory_order_relaxed));
			for (k = 0; k < c->cchunks; k++)
				free(atomic_load_explicit(&ly->cdir[k],
						memory_order_relaxed));
			free(ly);
		}
		pthread_mutex_destroy(&sq->lock);
		free(sq->owned);
		free(sq);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->seqs);
	free(c);
}

uint16_t kv_seq_reset(struct kv_ctx *c, uint32_t seq)
{
	struct kv_seq *sq;

	if (seq >= c->p.max_seqs)
		return ST_VSC(SEQ_RANGE);
	sq = seq_peek(c, seq);
	if (!sq)
		return 0;
	pthread_mutex_lock(&sq->lock);
	seq_drop(c, sq);
	pthread_mutex_unlock(&sq->lock);
	return 0;
}

/* ---- append / read ------------------------------------------------------ */

static inline void add_sat(uint32_t *x, uint32_t n)
{
	*x = *x > UINT32_MAX - n ? UINT32_MAX : *x + n;
}

static inline uint32_t stream_skew(const struct kv_ctx *c, uint32_t layer,
				   uint32_t stream)
{
	return (uint32_t)(((uint64_t)layer * c->nstreams + stream) %
			  c->s->channels);
}

/* Pages [p0, p1) of every stream of (seq, layer), one page op each. */
static void charge_pages(const struct kv_ctx *c, const struct kv_layer *ly,
			 uint32_t p0, uint32_t p1, uint32_t *per_ch)
{
	uint32_t cnt[CSDFW_MAX_CHANNELS] = { 0 };
	uint32_t pg, st, ch;

	for (pg = p0; pg < p1; pg++)
		for (st = 0; st < c->nstreams; st++)
			cnt[page_channel(c->s, *pt_entry(c, ly, pg, st))]++;
	for (ch = 0; ch < c->s->channels; ch++)
		add_sat(&per_ch[ch], cnt[ch]);
}

/* Make sure the seq can record @more owned blocks without allocating. */
static int owned_reserve(struct kv_seq *sq, uint64_t more)
{
	uint64_t need = sq->nowned + more;
	uint32_t *o;

	if (need <= sq->owned_cap)
		return 0;
	if (need > UINT32_MAX)
		need = UINT32_MAX;
	if (need < 2ull * sq->owned_cap)
		need = 2ull * sq->owned_cap > UINT32_MAX ? UINT32_MAX :
		       2ull * sq->owned_cap;
	o = realloc(sq->owned, need * sizeof(*o));
	if (!o)
		return -ENOMEM;
	sq->owned = o;
	sq->owned_cap = (uint32_t)need;
	return 0;
}

/*
 * Allocation state of one sequence on every channel: the store's free
 * block counts and the sequence's open-block cursors (ppb = no room, i.e.
 * no open block or a full one).  Appends plan on a copy first (the space
 * check), then allocate for real from a fresh copy with the same rules.
 */
struct alloc_sim {
	uint32_t nfree[CSDFW_MAX_CHANNELS];
	uint32_t next[CSDFW_MAX_CHANNELS];
};

/* Called with the store lock held.  @pending: count pending-free blocks
 * as free (would a commit make room?). */
static void sim_init(const struct kv_store *s, const struct kv_seq *sq,
		     struct alloc_sim *a, bool pending)
{
	uint64_t i;
	uint32_t ch;

	for (ch = 0; ch < s->channels; ch++) {
		a->nfree[ch] = s->nfree[ch];
		a->next[ch] = sq->open_blk[ch] == NO_BLOCK ? s->ppb :
			      sq->open_next[ch];
	}
	for (i = 0; pending && i < s->npending; i++)
		a->nfree[blk_channel(s, s->pend_blk[i])]++;
}

/*
 * @n consecutive pages on channel @ch0, or the next channel that has room
 * for them in the open block or a free block.  Returns the channel (the
 * pages end at a->next[ch]) or UINT32_MAX; *opened tells whether a new
 * block was opened.
 */
static uint32_t sim_take(const struct kv_store *s, struct alloc_sim *a,
			 uint32_t ch0, uint32_t n, bool *opened)
{
	uint32_t k;

	for (k = 0; k < s->channels; k++) {
		uint32_t ch = (ch0 + k) % s->channels;

		if (s->ppb - a->next[ch] >= n) {
			a->next[ch] += n;
			*opened = false;
			return ch;
		}
		if (a->nfree[ch]) {
			a->nfree[ch]--;
			a->next[ch] = n;
			*opened = true;
			return ch;
		}
	}
	return UINT32_MAX;
}

/* Take a free block of channel @ch for @sq (planned: there is one, and
 * room in sq->owned).  Store lock held. */
static uint32_t pop_block(struct kv_store *s, struct kv_seq *sq, uint32_t ch)
{
	uint32_t blk = s->free_blk[(size_t)ch * s->bpc + --s->nfree[ch]];

	s->nfree_total--;
	sq->owned[sq->nowned++] = blk;
	return blk;
}

/* The real allocation of sim_take: the first of the @n pages.  Called with
 * the store lock held, @a made by sim_init(pending = false). */
static uint32_t take_pages(struct kv_store *s, struct kv_seq *sq,
			   struct alloc_sim *a, uint32_t ch0, uint32_t n)
{
	bool opened;
	uint32_t ch = sim_take(s, a, ch0, n, &opened);

	if (ch == UINT32_MAX)
		return UINT32_MAX;	/* not reached: planned */
	if (opened)
		sq->open_blk[ch] = pop_block(s, sq, ch);
	sq->open_next[ch] = a->next[ch];
	return sq->open_blk[ch] * s->ppb + a->next[ch] - n;
}

/* Channel for one whole free block: @ch0 or the next one that has one. */
static uint32_t sim_take_block(const struct kv_store *s, struct alloc_sim *a,
			       uint32_t ch0)
{
	uint32_t k;

	for (k = 0; k < s->channels; k++) {
		uint32_t ch = (ch0 + k) % s->channels;

		if (a->nfree[ch]) {
			a->nfree[ch]--;
			return ch;
		}
	}
	return UINT32_MAX;
}

/* Plan @nb whole blocks of an extent (not the open blocks). */
static bool sim_take_blocks(const struct kv_store *s, struct alloc_sim *a,
			    uint32_t ch0, uint32_t nb)
{
	while (nb--)
		if (sim_take_block(s, a, ch0) == UINT32_MAX)
			return false;
	return true;
}

/*
 * The real allocation of a whole-block extent: its pages [pg, pg + len) of
 * stream @st, block after block (popped together, so on a fresh channel
 * they are adjacent in the backing region), page table entries written
 * for all of them.  Store lock held, planned.
 */
static void take_blocks(struct kv_store *s, struct kv_seq *sq,
			struct alloc_sim *a, uint32_t ch0,
			const struct kv_ctx *c, struct kv_layer *ly,
			uint32_t pg, uint32_t st, uint32_t len)
{
	uint32_t i, blk = 0;

	for (i = 0; i < len; i++) {
		if (i % s->ppb == 0) {
			uint32_t ch = sim_take_block(s, a, ch0);

			if (ch == UINT32_MAX)
				return;	/* not reached: planned */
			blk = pop_block(s, sq, ch);
		}
		*pt_entry(c, ly, pg + i, st) = blk * s->ppb + i % s->ppb;
	}
}

uint32_t kv_extent_max_norm(uint32_t e, uint32_t x, uint32_t ppb)
{
	uint32_t m = e ? e : 1;

	if (!ppb)
		return m;	/* outside the contract (ppb >= 1) */
	if (x >= ppb)
		return x - x % ppb > m ? x - x % ppb : m;
	while ((uint64_t)m * 2 <= x && ppb % (m * 2) == 0)
		m *= 2;
	return m;
}

uint32_t kv_extent_size(uint32_t e, uint32_t x, uint32_t ppb, uint64_t k)
{
	uint64_t z = k >= 32 || (uint64_t)e << k >= x ? x : (uint64_t)e << k;

	if (!z || !ppb)
		return 1;	/* outside the contract (e, x, ppb >= 1) */
	if (z >= ppb)
		z -= z % ppb;	/* whole blocks */
	else if (ppb % z)
		z = ppb;	/* only sizes that tile a block */
	return (uint32_t)z;
}

uint64_t kv_extent_level(uint32_t e, uint32_t x, uint32_t ppb, uint64_t k,
			 uint64_t want)
{
	for (; k < 64; k++) {
		uint32_t z = kv_extent_size(e, x, ppb, k);

		if (z >= want || z == kv_extent_size(e, x, ppb, k + 1))
			break;
	}
	return k;
}

/*
 * Size of a layer's next extent, for an append that still has @want pages
 * to place: growing (*xk may skip levels), or E (@grow false: the fallback
 * when the growing ones do not fit).
 */
static inline uint32_t next_extent(const struct kv_store *s, uint32_t *xk,
				   bool grow, uint32_t want)
{
	if (!grow)
		return s->extent;
	*xk = (uint32_t)kv_extent_level(s->extent, s->extent_max, s->ppb, *xk,
					want);
	return kv_extent_size(s->extent, s->extent_max, s->ppb, *xk);
}

/* Does an extent of @z pages take whole free blocks (not the open one)? */
static inline bool extent_whole(const struct kv_store *s, uint32_t z)
{
	return z >= s->ppb;
}

/* Pages of an extent of @z pages at page @start that a context of
 * @max_pages pages can use (start < max_pages). */
static inline uint32_t extent_len(uint32_t start, uint32_t z,
				  uint32_t max_pages)
{
	uint64_t end = (uint64_t)start + z;

	return (uint32_t)((end < max_pages ? end : max_pages) - start);
}

/*
 * What placing token pages up to @p1 of one stream of layer @ly takes
 * (extents of growing size, or of E if !@grow): @x extents from open
 * blocks of @xp pages in all and @nb whole blocks; @end: the first page
 * past the last new extent.  @ly NULL: a layer with no pages yet.
 */
struct ext_need {
	uint64_t x, xp, nb;
	uint32_t end;
};

static void extents_new(const struct kv_store *s, const struct kv_layer *ly,
			uint32_t max_pages, uint32_t p1, bool grow,
			struct ext_need *n)
{
	uint32_t pg = ly ? ly->xend : 0, xk = ly ? ly->xk : 0;

	memset(n, 0, sizeof(*n));
	for (; pg < p1; xk++) {
		uint32_t z = next_extent(s, &xk, grow, p1 - pg);
		uint32_t len = extent_len(pg, z, max_pages);

		if (extent_whole(s, z)) {
			/* ppb: checked != 0 in kv_store_open */
			// NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
			n->nb += (len + s->ppb - 1) / s->ppb;
		} else {
			n->x++;
			n->xp += z;
		}
		pg += len;
	}
	n->end = pg;
}

/*
 * Bound on the blocks an append opens for @n (per stream) x @streams and
 * @y single pages: each open-block request opens at most one, every block
 * opened and left behind by the same append (all but the last one per
 * channel) holds at least ppb - Z + 1 of its pages (Z: the largest request
 * served from open blocks), and whole-block extents take exactly theirs.
 */
static uint64_t blocks_bound(const struct kv_store *s, const struct ext_need *n,
			     uint64_t streams, uint64_t y)
{
	uint64_t x = n->x * streams, b;

	b = s->channels + 1 +
	    (n->xp * streams + y) / (s->ppb - s->open_max + 1);
	return (x + y < b ? x + y : b) + n->nb * streams;
}

/* The larger bound of an append's placements (growing extents unless
 * @nogrow, or the E fallback) for token pages up to @p1 and @y channel
 * pages; *@end: where the later one's last extent ends. */
static uint64_t append_bound(const struct kv_ctx *c, const struct kv_layer *ly,
			     uint32_t p1, uint64_t y, bool nogrow,
			     uint32_t *end)
{
	struct ext_need g, e;
	uint64_t bg, be;

	extents_new(c->s, ly, c->max_pages, p1, false, &e);
	be = blocks_bound(c->s, &e, c->nstreams, y);
	if (end)
		*end = e.end;
	if (nogrow)
		return be;
	extents_new(c->s, ly, c->max_pages, p1, true, &g);
	bg = blocks_bound(c->s, &g, c->nstreams, y);
	if (end && g.end > *end)
		*end = g.end;
	return bg > be ? bg : be;
}

/*
 * Place token pages up to @p1 of every stream of (seq, layer) -- the
 * extents that begin at or past ly->xend, growing or (!@grow) of E pages,
 * with all their page table entries -- and the channel-indexed pages of
 * chunks [k0, k1), in this order, on @a.  Plan only (@commit false: true
 * iff everything fits), or for real (page table entries and the layer's
 * extent state written; the plan said it fits).  Store lock held.
 */
static bool place_pages(struct kv_ctx *c, struct kv_seq *sq,
			struct kv_layer *ly, uint32_t layer, uint32_t p1,
			bool grow, uint32_t k0, uint32_t k1,
			struct alloc_sim *a, bool commit)
{
	struct kv_store *s = c->s;
	uint32_t pg = ly->xend, xk = ly->xk, xn = ly->xn, st, k, h, j, ch0;
	bool opened;

	for (; pg < p1; xk++, xn++) {
		uint32_t z = next_extent(s, &xk, grow, p1 - pg);
		uint32_t len = extent_len(pg, z, c->max_pages);

		for (st = 0; st < c->nstreams; st++) {
			/* channels: checked != 0 in kv_store_open, never
			 * changed (the analyzer loses that across
			 * pthread_mutex_lock(&s->lock)) */
			// NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
			ch0 = (uint32_t)(((uint64_t)ly->xch + xn +
					  stream_skew(c, layer, st)) %
					 s->channels);
			if (!commit) {
				if (extent_whole(s, z) ?
				    !sim_take_blocks(s, a, ch0,
					(len + s->ppb - 1) / s->ppb) :
				    sim_take(s, a, ch0, z, &opened) ==
				    UINT32_MAX)
					return false;
				continue;
			}
			if (extent_whole(s, z)) {
				take_blocks(s, sq, a, ch0, c, ly, pg, st, len);
			} else {
				uint32_t first = take_pages(s, sq, a, ch0, z);

				for (j = 0; j < len; j++)
					*pt_entry(c, ly, pg + j, st) =
						first + j;
			}
		}
		pg += len;
	}
	if (commit) {
		ly->xend = pg;
		ly->xk = xk;
		ly->xn = xn;
	}
	for (k = k0; k < k1; k++) {
		uint32_t *ent = commit ? atomic_load_explicit(&ly->cdir[k],
						memory_order_relaxed) : NULL;

		for (h = 0; h < c->p.kv_heads; h++)
			for (j = 0; j < c->p.head_dim; j++) {
				// NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
				ch0 = (k * c->p.head_dim + j +
				       stream_skew(c, layer, h * 2)) %
				      s->channels;
				if (!commit) {
					if (sim_take(s, a, ch0, 1, &opened) ==
					    UINT32_MAX)
						return false;
					continue;
				}
				ent[h * c->p.head_dim + j] =
					take_pages(s, sq, a, ch0, 1);
			}
	}
	return true;
}

static void copy_rows_in(const struct kv_ctx *c, const struct kv_layer *ly,
			 uint32_t start, uint32_t ntok,
			 const struct csdfw_data *src, size_t off, uint32_t which)
{
	const uint8_t *flat = csdfw_data_ptr(src, off, ntok * c->row_bytes);
	uint32_t t, h;

	for (t = 0; t < ntok; t++) {
		uint32_t tok = start + t, pg = tok / c->tpp;
		size_t in_pg = (size_t)(tok % c->tpp) * c->hrow;
		size_t so = (size_t)t * c->row_bytes;

		for (h = 0; h < c->p.kv_heads; h++, so += c->hrow) {
			uint8_t *dst = page_addr(c->s,
					*pt_entry(c, ly, pg, h * 2 + which)) +
				       in_pg;

			if (flat)
				memcpy(dst, flat + so, c->hrow);
			else
				(void)csdfw_data_read(src, off + so, dst,
						      c->hrow);
		}
	}
}

static int data_covers(const struct csdfw_data *d, size_t off, size_t len)
{
	return d && off <= d->len && len <= d->len - off;
}

/* Channel-indexed copy of chunk @k of every K stream of (seq, layer): the
 * chunk's rows (token-indexed pages, already written) transposed into
 * head_dim pages per kv head.  Charges the programs to @w. */
static void write_chan_chunk(const struct kv_ctx *c, const struct kv_layer *ly,
			     uint32_t k, struct model_work *w)
{
	const uint32_t *ent = atomic_load_explicit(&ly->cdir[k],
						   memory_order_relaxed);
	uint32_t hd = c->p.head_dim, h, j, t;
	uint32_t cnt[CSDFW_MAX_CHANNELS] = { 0 };

	for (h = 0; h < c->p.kv_heads; h++) {
		const uint32_t *pe = ent + (size_t)h * hd;

		for (t = 0; t < c->ct; t++) {
			uint32_t tok = k * c->ct + t;
			const uint8_t *row = page_addr(c->s,
				*pt_entry(c, ly, tok / c->tpp, h * 2)) +
				(size_t)(tok % c->tpp) * c->hrow;

			if (c->elsize == 2) {
				const uint16_t *r16 = (const uint16_t *)row;

				for (j = 0; j < hd; j++)
					((uint16_t *)page_addr(c->s, pe[j]))[t] =
						r16[j];
			} else {
				const uint32_t *r32 = (const uint32_t *)row;

				for (j = 0; j < hd; j++)
					((uint32_t *)page_addr(c->s, pe[j]))[t] =
						r32[j];
			}
		}
		if (w)
			for (j = 0; j < hd; j++)
				cnt[page_channel(c->s, pe[j])]++;
	}
	if (w)
		for (j = 0; j < c->s->channels; j++)
			add_sat(&w->wr_pages[j], cnt[j]);
}

/* Sum of V over tokens [start, start + ntok) of (seq, layer), stored. */
static void v_delta(const struct kv_ctx *c, const struct kv_layer *ly,
		    uint32_t start, uint32_t ntok, double *d)
{
	uint32_t hd = c->p.head_dim, t, h, j;

	for (t = start; t < start + ntok; t++)
		for (h = 0; h < c->p.kv_heads; h++) {
			const uint8_t *row = page_addr(c->s,
				*pt_entry(c, ly, t / c->tpp, h * 2 + 1)) +
				(size_t)(t % c->tpp) * c->hrow;
			double *dh = d + (size_t)h * hd;

			for (j = 0; j < hd; j++)
				dh[j] += attn_load_elem(row, c->p.dtype, j);
		}
}

static void vsum_add(const struct kv_ctx *c, struct kv_layer *ly,
		     const double *d, uint32_t n)
{
	uint32_t i;

	vsum_begin(ly);
	for (i = 0; i < c->cpages; i++)
		atomic_store_explicit(&ly->vsum[i],
			atomic_load_explicit(&ly->vsum[i],
					     memory_order_relaxed) + d[i],
			memory_order_relaxed);
	atomic_store_explicit(&ly->vn, n, memory_order_relaxed);
	vsum_end(ly);
}

/*
 * The space check of an append: plan its placement with growing extents
 * (if *@grow), else with extents of E (a nearly full store); *@grow tells
 * which fits.  @pending: count pending-free blocks as free (would a commit
 * make room?).  Store lock held.
 */
static bool plan_pages(struct kv_ctx *c, struct kv_seq *sq,
		       struct kv_layer *ly, uint32_t layer, uint32_t p1,
		       uint32_t k0, uint32_t k1, bool pending, bool *grow)
{
	struct alloc_sim a;

	if (*grow) {
		sim_init(c->s, sq, &a, pending);
		if (place_pages(c, sq, ly, layer, p1, true, k0, k1, &a, false))
			return true;
		*grow = false;
	}
	sim_init(c->s, sq, &a, pending);
	return place_pages(c, sq, ly, layer, p1, false, k0, k1, &a, false);
}

uint16_t kv_append(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		   uint32_t start, uint32_t ntok, const struct csdfw_data *src,
		   size_t k_off, size_t v_off, struct model_work *w)
{
	return kv_append_flags(c, seq, layer, start, ntok, src, k_off, v_off,
			       w, 0);
}

uint16_t kv_append_flags(struct kv_ctx *c, uint32_t seq, uint32_t layer,
			 uint32_t start, uint32_t ntok,
			 const struct csdfw_data *src, size_t k_off,
			 size_t v_off, struct model_work *w,
			 unsigned int flags)
{
	const bool nogrow = flags & KV_APPEND_NOGROW;
	struct kv_store *s = c->s;
	struct kv_seq *sq;
	struct kv_layer *ly;
	uint32_t len, p0, p1, old_pages, k, c0, c1, pt_end;
	uint64_t npages, y, bound;
	bool grow;
	double *delta = NULL;
	size_t bytes;
	uint16_t rc = 0;
	bool retried = false;

	if (seq >= c->p.max_seqs)
		return ST_VSC(SEQ_RANGE);
	if (layer >= c->p.layers)
		return ST_VSC(LAYER_RANGE);
	bytes = (size_t)ntok * c->row_bytes;
	if (ntok && (!data_covers(src, k_off, bytes) ||
		     !data_covers(src, v_off, bytes)))
		return ST_VSC(LENGTH);
	sq = seq_get(c, seq);
	if (!sq)
		return ST_INTERNAL;
	if (ntok) {
		delta = calloc(c->cpages, sizeof(*delta));
		if (!delta)
			return ST_INTERNAL;
	}
retry:
	grow = !nogrow;
	pthread_mutex_lock(&sq->lock);
	ly = layer_get(c, sq, layer);
	if (!ly) {
		rc = ST_INTERNAL;
		goto out;
	}
	len = atomic_load_explicit(&ly->len, memory_order_relaxed);
	if (start != len) {
		rc = ST_VSC(TOKEN_ORDER);
		goto out;
	}
	if ((uint64_t)start + ntok > c->p.max_tokens) {
		rc = ST_VSC(CTX_FULL);
		goto out;
	}
	if (!ntok)
		goto out;

	old_pages = pages_for(c, len);
	p1 = pages_for(c, len + ntok);
	c0 = len / c->ct;
	c1 = (len + ntok) / c->ct;
	npages = (uint64_t)(p1 - old_pages) * c->nstreams +
		 (uint64_t)(c1 - c0) * c->cpages;

	/* Everything that can fail for lack of memory, before any change
	 * that is visible (chunks past the length are not).  An extent's
	 * page table entries are all written when it begins: chunks up to
	 * the end of the last new extent of either placement. */
	y = (uint64_t)(c1 - c0) * c->cpages;
	bound = append_bound(c, ly, p1, y, nogrow, &pt_end);
	if (pt_end < p1)
		pt_end = p1;
	for (k = old_pages / c->chunk_pages;
	     pt_end > old_pages && k <= (pt_end - 1) / c->chunk_pages; k++) {
		uint32_t *chunk;

		if (atomic_load_explicit(&ly->dir[k], memory_order_relaxed))
			continue;
		chunk = calloc((size_t)c->chunk_pages * c->nstreams,
			       sizeof(*chunk));
		if (!chunk) {
			rc = ST_INTERNAL;
			goto out;
		}
		atomic_store_explicit(&ly->dir[k], chunk, memory_order_release);
	}
	for (k = c0; k < c1; k++) {
		uint32_t *ent;

		if (atomic_load_explicit(&ly->cdir[k], memory_order_relaxed))
			continue;
		ent = calloc(c->cpages, sizeof(*ent));
		if (!ent) {
			rc = ST_INTERNAL;
			goto out;
		}
		atomic_store_explicit(&ly->cdir[k], ent, memory_order_release);
	}
	if (!npages)
		goto write;
	if (owned_reserve(sq, bound)) {
		rc = ST_INTERNAL;
		goto out;
	}

	pthread_mutex_lock(&s->lock);
	if (ly->xend < p1 || y) {
		if (!plan_pages(c, sq, ly, layer, p1, c0, c1, false, &grow)) {
			bool ckpt = false;

			grow = !nogrow;
			if (!retried && s->npending)
				ckpt = plan_pages(c, sq, ly, layer, p1, c0, c1,
						  true, &grow);
			pthread_mutex_unlock(&s->lock);
			if (ckpt) {
				/* space held back for crash safety: commit
				 * the metadata (releases it), then try once
				 * more */
				pthread_mutex_unlock(&sq->lock);
				retried = true;
				if (!store_commit(s))
					goto retry;
				pthread_mutex_lock(&sq->lock);
			}
			rc = ST_VSC(NO_SPACE);
			goto out;
		}
	}
	{
		uint64_t before = s->nfree_total;
		struct alloc_sim a;

		sim_init(s, sq, &a, false);
		(void)place_pages(c, sq, ly, layer, p1, grow, c0, c1, &a,
				  true);
		atomic_fetch_sub_explicit(&s->blocks_free,
					  before - s->nfree_total,
					  memory_order_relaxed);
	}
	pthread_mutex_unlock(&s->lock);

write:
	copy_rows_in(c, ly, start, ntok, src, k_off, 0);
	copy_rows_in(c, ly, start, ntok, src, v_off, 1);
	for (k = c0; k < c1; k++)
		write_chan_chunk(c, ly, k, w);
	v_delta(c, ly, start, ntok, delta);
	vsum_add(c, ly, delta, len + ntok);

	atomic_fetch_add_explicit(&s->bytes_stored, (uint64_t)bytes * 2,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&s->bytes_used, npages * s->page_size,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&c->bytes_used, npages * s->page_size,
				  memory_order_relaxed);
	if (w) {
		p0 = start / c->tpp;
		charge_pages(c, ly, p0, p1, w->wr_pages);
	}
	atomic_store_explicit(&ly->len, len + ntok, memory_order_release);
out:
	pthread_mutex_unlock(&sq->lock);
	free(delta);
	return rc;
}

uint64_t kv_append_blocks_bound(struct kv_ctx *c, uint32_t seq,
				uint32_t layer, uint32_t ntok,
				unsigned int flags)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	struct kv_seq *sq = seq_peek(c, seq);
	uint32_t len = 0;
	uint64_t end, p1, y, b;

	if (sq && ly)
		pthread_mutex_lock(&sq->lock);
	if (ly)
		len = atomic_load_explicit(&ly->len, memory_order_relaxed);
	end = (uint64_t)len + ntok;
	p1 = (end + c->tpp - 1) / c->tpp;
	if (p1 > c->max_pages)
		p1 = c->max_pages;
	y = (end / c->ct - len / c->ct) * c->cpages;
	b = append_bound(c, ly, (uint32_t)p1, y, flags & KV_APPEND_NOGROW,
			 NULL);
	if (sq && ly)
		pthread_mutex_unlock(&sq->lock);
	return b;
}

uint32_t kv_store_extent(const struct kv_store *s)
{
	return s->extent;
}

uint32_t kv_store_extent_max(const struct kv_store *s)
{
	return s->extent_max;
}

uint32_t kv_len(const struct kv_ctx *c, uint32_t seq, uint32_t layer)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);

	return ly ? atomic_load_explicit(&ly->len, memory_order_acquire) : 0;
}

uint16_t kv_read(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		 uint32_t start, uint32_t ntok, const struct csdfw_data *dst,
		 struct model_work *w)
{
	struct kv_layer *ly;
	uint32_t len, t, h, which;
	size_t bytes;

	if (seq >= c->p.max_seqs)
		return ST_VSC(SEQ_RANGE);
	if (layer >= c->p.layers)
		return ST_VSC(LAYER_RANGE);
	ly = layer_peek(c, seq_peek(c, seq), layer);
	len = ly ? atomic_load_explicit(&ly->len, memory_order_acquire) : 0;
	if ((uint64_t)start + ntok > len)
		return ST_VSC(TOKEN_RANGE);
	bytes = (size_t)ntok * c->row_bytes;
	if (ntok && !data_covers(dst, 0, 2 * bytes))
		return ST_VSC(LENGTH);
	if (!ntok)
		return 0;
	for (which = 0; which < 2; which++) {
		size_t base = which ? bytes : 0;
		uint8_t *flat = csdfw_data_ptr(dst, base, bytes);

		for (t = 0; t < ntok; t++) {
			uint32_t tok = start + t, pg = tok / c->tpp;
			size_t in_pg = (size_t)(tok % c->tpp) * c->hrow;
			size_t doff = base + (size_t)t * c->row_bytes;

			for (h = 0; h < c->p.kv_heads; h++, doff += c->hrow) {
				const uint8_t *sp = page_addr(c->s,
					*pt_entry(c, ly, pg, h * 2 + which)) +
					in_pg;

				if (flat)
					memcpy(flat + (doff - base), sp,
					       c->hrow);
				else
					(void)csdfw_data_write(dst, doff, sp,
							       c->hrow);
			}
		}
	}
	if (w)
		charge_pages(c, ly, start / c->tpp,
			     (start + ntok - 1) / c->tpp + 1, w->rd_pages);
	return 0;
}

const void *kv_page(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		    uint32_t kv_head, enum kv_which which, uint32_t page_idx)
{
	const void *p = NULL;

	kv_pages(c, seq, layer, kv_head, &page_idx, 1, which ? NULL : &p,
		 which ? &p : NULL, NULL, NULL);
	return p;
}

void kv_account_read(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		     uint32_t tok_lo, uint32_t tok_hi, struct model_work *w)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	uint32_t len;

	if (!ly || !w)
		return;
	len = atomic_load_explicit(&ly->len, memory_order_acquire);
	if (tok_hi > len)
		tok_hi = len;
	if (tok_lo >= tok_hi)
		return;
	charge_pages(c, ly, tok_lo / c->tpp, (tok_hi - 1) / c->tpp + 1,
		     w->rd_pages);
}

void kv_ctx_info(const struct kv_ctx *c, struct csd_ctx_info *info,
		 struct csd_seq_info *seqs, uint32_t n)
{
	uint64_t tokens = 0;
	uint32_t used = 0, i, l;

	for (i = 0; i < c->p.max_seqs; i++) {
		struct kv_seq *sq = seq_peek(c, i);
		uint32_t mn = 0, mx = 0;

		if (sq) {
			mn = UINT32_MAX;
			for (l = 0; l < c->p.layers; l++) {
				struct kv_layer *ly = layer_peek(c, sq, l);
				uint32_t len = ly ? atomic_load_explicit(
					&ly->len, memory_order_acquire) : 0;

				tokens += len;
				mn = len < mn ? len : mn;
				mx = len > mx ? len : mx;
			}
		}
		if (mx)
			used++;
		if (seqs && i < n) {
			seqs[i].min_len = mn;
			seqs[i].max_len = mx;
		}
	}
	if (!info)
		return;
	memset(info, 0, sizeof(*info));
	info->p.layers = c->p.layers;
	info->p.kv_heads = c->p.kv_heads;
	info->p.q_heads = c->p.q_heads;
	info->p.head_dim = c->p.head_dim;
	info->p.dtype = c->p.dtype;
	info->p.max_seqs = c->p.max_seqs;
	info->p.max_tokens = c->p.max_tokens;
	info->ctx_id = c->id;
	info->seqs_used = used;
	info->inflight = 0;
	info->bytes_used = atomic_load_explicit(&c->bytes_used,
						memory_order_relaxed);
	info->tokens = tokens;
	info->tokens_per_page = c->tpp;
}

/* ---- SparF support ------------------------------------------------------ */

uint32_t kv_chan_tokens(const struct kv_ctx *c)
{
	return c->ct;
}

uint32_t kv_chan_chunks(const struct kv_ctx *c, uint32_t seq, uint32_t layer)
{
	return kv_len(c, seq, layer) / c->ct;
}

static const uint32_t *chan_entry(const struct kv_ctx *c, uint32_t seq,
				  uint32_t layer, uint32_t kv_head,
				  uint32_t dim, uint32_t chunk)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	const uint32_t *ent;

	if (!ly || kv_head >= c->p.kv_heads || dim >= c->p.head_dim ||
	    chunk >= c->cchunks)
		return NULL;
	ent = atomic_load_explicit(&ly->cdir[chunk], memory_order_acquire);
	if (!ent)
		return NULL;
	return ent + (size_t)kv_head * c->p.head_dim + dim;
}

const void *kv_chan_page(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
			 uint32_t kv_head, uint32_t dim, uint32_t chunk)
{
	const uint32_t *e = chan_entry(c, seq, layer, kv_head, dim, chunk);

	if (!e || chunk >= kv_chan_chunks(c, seq, layer))
		return NULL;
	return page_addr(c->s, *e);
}

uint32_t kv_page_chan(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		      uint32_t kv_head, enum kv_which which, uint32_t page_idx)
{
	uint32_t ch = 0;

	kv_pages(c, seq, layer, kv_head, &page_idx, 1, NULL, NULL,
		 which ? NULL : &ch, which ? &ch : NULL);
	return ch;
}

/* Divisor @d (>= 1) as a multiplier: q = n / d for every 32-bit n is
 * (n * m) >> 64 with m = 2^64 / d rounded up (Lemire, Kaser, Kurz 2019);
 * d == 1 (m would wrap to 0) is marked by m == 0. */
static inline uint64_t kv_fdiv_magic(uint64_t d)
{
	return d > 1 ? UINT64_MAX / d + 1 : 0;
}

__extension__ typedef unsigned __int128 kv_u128;

static inline uint32_t kv_fdiv(uint32_t n, uint64_t m)
{
	return m ? (uint32_t)(((kv_u128)m * n) >> 64) : n;
}

uint32_t kv_pages(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		  uint32_t kv_head, const uint32_t *pg, uint32_t n,
		  const void **kpg, const void **vpg, uint32_t *kch,
		  uint32_t *vch)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	const unsigned int sh = (unsigned int)__builtin_ctz(c->chunk_pages);
	const uint64_t ppc = (uint64_t)c->s->ppb * c->s->bpc;
	/* page_channel(): pg / ppb / bpc == pg / (ppb * bpc), which is 0
	 * for every 32-bit pg when ppb * bpc >= 2^32 */
	const uint64_t m = kch || vch ? kv_fdiv_magic(ppc) : 0;
	const bool big = ppc > UINT32_MAX;
	const uint32_t *chunk = NULL;
	uint32_t ci = UINT32_MAX, i;

	if (!ly || kv_head >= c->p.kv_heads)
		return 0;
	for (i = 0; i < n; i++) {
		const uint32_t *e;

		if (pg[i] >= c->max_pages)
			return i;
		if (pg[i] >> sh != ci) {
			ci = pg[i] >> sh;
			chunk = atomic_load_explicit(&ly->dir[ci],
						     memory_order_acquire);
		}
		if (!chunk)
			return i;
		e = chunk + (size_t)(pg[i] & (c->chunk_pages - 1)) *
			    c->nstreams + kv_head * 2;
		if (kpg)
			kpg[i] = page_addr(c->s, e[0]);
		if (vpg)
			vpg[i] = page_addr(c->s, e[1]);
		if (kch)
			kch[i] = big ? 0 : kv_fdiv(e[0], m);
		if (vch)
			vch[i] = big ? 0 : kv_fdiv(e[1], m);
	}
	return n;
}

uint32_t kv_chan_page_chan(const struct kv_ctx *c, uint32_t seq,
			   uint32_t layer, uint32_t kv_head, uint32_t dim,
			   uint32_t chunk)
{
	const uint32_t *e = chan_entry(c, seq, layer, kv_head, dim, chunk);

	return e ? page_channel(c->s, *e) : 0;
}

uint32_t kv_vsum(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		 float *sum)
{
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	uint32_t q0, q1, n, i;

	if (!ly) {
		if (seq < c->p.max_seqs && layer < c->p.layers)
			memset(sum, 0, (size_t)c->cpages * sizeof(*sum));
		return 0;
	}
	for (;;) {
		q0 = atomic_load_explicit(&ly->vseq, memory_order_acquire);
		if (q0 & 1) {
			sched_yield();
			continue;
		}
		for (i = 0; i < c->cpages; i++)
			sum[i] = (float)atomic_load_explicit(&ly->vsum[i],
						memory_order_relaxed);
		n = atomic_load_explicit(&ly->vn, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		q1 = atomic_load_explicit(&ly->vseq, memory_order_relaxed);
		if (q0 == q1)
			return n;
	}
}

/* ---- persistence (Documentation/on-media-format.md) --------------------- */

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the on-media format is little-endian; port the encoders first"
#endif

#define FMT_VERSION	1u
#define SB_BYTES	256u
#define MD_HDR_BYTES	64u
#define MD_MAX_CTX	65536u

static const char sb_magic[8] = "CSDKVSB";
static const char md_magic[8] = "CSDKVMD";

struct sb_disk {
	char magic[8];
	uint32_t version;
	uint32_t sb_bytes;
	uint64_t data_bytes;
	uint32_t channels;
	uint32_t page_size;
	uint32_t ppb;
	uint32_t bpc;
	uint64_t slot_off;
	uint64_t slot_size;
	uint64_t data_off;
	uint64_t file_size;
	uint64_t fs_id;
	uint64_t format_ns;
	uint8_t rsvd[164];
	uint32_t crc;
};
_Static_assert(sizeof(struct sb_disk) == SB_BYTES, "superblock size");
_Static_assert(offsetof(struct sb_disk, crc) == 252, "superblock crc");

struct md_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_crc;
	uint64_t seq;
	uint64_t fs_id;
	uint64_t payload_len;
	uint32_t payload_crc;
	uint32_t nctx;
	uint64_t nrec;
	uint64_t rsvd;
};
_Static_assert(sizeof(struct md_hdr) == MD_HDR_BYTES, "slot header size");

struct md_ctx {
	uint32_t id;
	uint32_t nrec;
	struct csd_ctx_desc p;
};
_Static_assert(sizeof(struct md_ctx) == 72, "context record size");

struct md_layer {
	uint32_t seq;
	uint32_t layer;
	uint32_t len;
	uint32_t rsvd;
};

/* CRC-32C (Castagnoli, reflected 0x82f63b78), as in iSCSI / ext4. */
static uint32_t crc32c(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t tab[256], crc = ~0u, i, k;

	for (i = 0; i < 256; i++) {
		uint32_t v = i;

		for (k = 0; k < 8; k++)
			v = v & 1 ? (v >> 1) ^ 0x82f63b78u : v >> 1;
		tab[i] = v;
	}
	while (len--)
		crc = tab[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void perr(const struct csdfw_config *cfg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void perr(const struct csdfw_config *cfg, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "csdfw: backing file %.*s: ",
		(int)sizeof(cfg->backing), cfg->backing);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

/*
 * Slot capacity: every allocated page is referenced at most once (4 bytes),
 * a layer record (16 bytes) covers at least two pages, plus MD_MAX_CTX
 * context records.
 */
static uint64_t slot_bytes(const struct kv_store *s)
{
	uint64_t pages = (uint64_t)s->bpc * s->channels * s->ppb;

	return align_up(MD_HDR_BYTES + (uint64_t)MD_MAX_CTX *
			sizeof(struct md_ctx) + pages * 4 + pages / 2 *
			sizeof(struct md_layer), s->page_size);
}

static uint8_t *slot_addr(const struct kv_store *s, uint32_t slot)
{
	return s->base + s->slot_off + (size_t)slot * s->slot_size;
}

static int msync_range(const struct kv_store *s, const uint8_t *p, size_t len)
{
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095;

	if (msync((void *)a, len + ((uintptr_t)p - a), MS_SYNC) < 0)
		return -errno;
	(void)s;
	return 0;
}

/* Growable byte buffer for the metadata image. */
struct mbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static size_t mb_put(struct mbuf *b, const void *src, size_t n)
{
	size_t off = b->len;

	if (b->err)
		return 0;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 65536;
		uint8_t *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return 0;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
	return off;
}

/* The metadata image of one context; takes each kv_seq lock in turn. */
static void snap_ctx(struct kv_ctx *c, struct mbuf *b, uint64_t *nrec_total)
{
	struct md_ctx mc;
	size_t coff;
	uint32_t q, l, pg, st, k;

	memset(&mc, 0, sizeof(mc));
	mc.id = c->id;
	mc.p = c->p;
	coff = mb_put(b, &mc, sizeof(mc));
	for (q = 0; q < c->p.max_seqs; q++) {
		struct kv_seq *sq = seq_peek(c, q);

		if (!sq)
			continue;
		pthread_mutex_lock(&sq->lock);
		for (l = 0; l < c->p.layers; l++) {
			struct kv_layer *ly = layer_peek(c, sq, l);
			struct md_layer ml;
			uint32_t len;

			if (!ly)
				continue;
			len = atomic_load_explicit(&ly->len,
						   memory_order_acquire);
			if (!len)
				continue;
			memset(&ml, 0, sizeof(ml));
			ml.seq = q;
			ml.layer = l;
			ml.len = len;
			mb_put(b, &ml, sizeof(ml));
			for (pg = 0; pg < pages_for(c, len); pg++)
				for (st = 0; st < c->nstreams; st++)
					mb_put(b, pt_entry(c, ly, pg, st), 4);
			for (k = 0; k < len / c->ct; k++)
				mb_put(b, atomic_load_explicit(&ly->cdir[k],
						memory_order_relaxed),
				       (size_t)c->cpages * 4);
			mc.nrec++;
		}
		pthread_mutex_unlock(&sq->lock);
	}
	if (!b->err)
		memcpy(b->p + coff, &mc, sizeof(mc));
	*nrec_total += mc.nrec;
}

/* Write @img (payload) as metadata slot @slot with sequence @seq. */
static int write_slot(struct kv_store *s, uint32_t slot, uint64_t seq,
		      const uint8_t *img, size_t len, uint32_t nctx,
		      uint64_t nrec)
{
	uint8_t *dst = slot_addr(s, slot);
	struct md_hdr h;

	if (len > s->slot_size - MD_HDR_BYTES)
		return -ENOSPC;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, md_magic, sizeof(h.magic));
	h.version = FMT_VERSION;
	h.seq = seq;
	h.fs_id = s->fs_id;
	h.payload_len = len;
	h.payload_crc = crc32c(img, len);
	h.nctx = nctx;
	h.nrec = nrec;
	h.hdr_crc = crc32c(&h, sizeof(h));
	/* payload first; the header (with both CRCs) makes the slot valid */
	if (len)
		memcpy(dst + MD_HDR_BYTES, img, len);
	memcpy(dst, &h, sizeof(h));
	return msync_range(s, dst, MD_HDR_BYTES + len);
}

/*
 * Commit: snapshot every context (lengths and page tables), make the data
 * pages durable, write the snapshot to the older slot, then release the
 * blocks that were pending before the snapshot began.
 */
static int store_commit(struct kv_store *s)
{
	struct mbuf b = { NULL, 0, 0, 0 };
	uint64_t n0, nrec = 0, i;
	uint32_t nctx, slot, k;
	int err;

	if (s->fd < 0)
		return 0;
	pthread_mutex_lock(&s->commit_lock);
	pthread_mutex_lock(&s->lock);
	n0 = s->npending;
	pthread_mutex_unlock(&s->lock);

	pthread_mutex_lock(&s->reg_lock);
	nctx = s->nreg;
	for (k = 0; k < s->nreg; k++)
		snap_ctx(s->reg[k], &b, &nrec);
	pthread_mutex_unlock(&s->reg_lock);
	err = b.err;
	if (err)
		goto out;
	if (msync(s->data, s->data_bytes, MS_SYNC) < 0) {
		err = -errno;
		goto out;
	}
	slot = s->md_slot ^ 1;
	err = write_slot(s, slot, s->md_seq + 1, b.p, b.len, nctx, nrec);
	if (err)
		goto out;
	s->md_seq++;
	s->md_slot = slot;

	/* nothing committed references the pending blocks any more */
	for (i = 0; i < n0; i++)
		(void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE |
				FALLOC_FL_KEEP_SIZE,
				(off_t)(s->data_off +
					(uint64_t)s->pend_blk[i] *
					s->block_bytes),
				(off_t)s->block_bytes);
	pthread_mutex_lock(&s->lock);
	free_push_locked(s, s->pend_blk, n0);
	memmove(s->pend_blk, s->pend_blk + n0,
		(size_t)(s->npending - n0) * sizeof(*s->pend_blk));
	s->npending -= n0;
	pthread_mutex_unlock(&s->lock);
out:
	pthread_mutex_unlock(&s->commit_lock);
	free(b.p);
	return err;
}

/* Unload every context still registered (the store is closing). */
static void store_release_all(struct kv_store *s)
{
	while (s->nreg)
		kv_ctx_destroy(s->reg[s->nreg - 1]);
}

/* ---- recovery ------------------------------------------------------------ */

struct rcv {
	uint64_t *owner;		/* [blocks]: (id << 32 | seq) + 1 */
	uint8_t *seen;			/* [pages / 8] */
};

/* Claim page @pg for (c, seq); 0 or -EUCLEAN. */
static int rcv_page(struct kv_store *s, struct rcv *r, struct kv_ctx *c,
		    struct kv_seq *sq, uint32_t seq, uint32_t pg)
{
	uint64_t pages = (uint64_t)s->bpc * s->channels * s->ppb;
	uint64_t key = ((uint64_t)c->id << 32 | seq) + 1;
	uint32_t blk;

	if (pg >= pages || (r->seen[pg / 8] & (1u << (pg % 8))))
		return -EUCLEAN;
	r->seen[pg / 8] |= (uint8_t)(1u << (pg % 8));
	blk = pg / s->ppb;
	if (r->owner[blk] == key)
		return 0;
	if (r->owner[blk])
		return -EUCLEAN;
	r->owner[blk] = key;
	if (owned_reserve(sq, 1))
		return -ENOMEM;
	sq->owned[sq->nowned++] = blk;
	return 0;
}

/* Rebuild one (seq, layer) from its record; @pp advances past it. */
static int rcv_layer(struct kv_store *s, struct rcv *r, struct kv_ctx *c,
		     const struct md_layer *ml, const uint32_t *ent,
		     size_t nent)
{
	struct kv_seq *sq;
	struct kv_layer *ly;
	uint32_t pg, st, k, j, np;
	double *delta;
	int err;

	if (ml->seq >= c->p.max_seqs || ml->layer >= c->p.layers ||
	    !ml->len || ml->len > c->p.max_tokens || ml->rsvd)
		return -EUCLEAN;
	np = pages_for(c, ml->len);
	if (nent != (size_t)np * c->nstreams +
		    (size_t)(ml->len / c->ct) * c->cpages)
		return -EUCLEAN;
	sq = seq_get(c, ml->seq);
	if (!sq)
		return -ENOMEM;
	ly = layer_get(c, sq, ml->layer);
	if (!ly)
		return -ENOMEM;
	if (atomic_load_explicit(&ly->len, memory_order_relaxed))
		return -EUCLEAN;	/* the same layer twice */
	for (k = 0; k * c->chunk_pages < np; k++) {
		uint32_t *chunk = calloc((size_t)c->chunk_pages * c->nstreams,
					 sizeof(*chunk));

		if (!chunk)
			return -ENOMEM;
		atomic_store_explicit(&ly->dir[k], chunk, memory_order_relaxed);
	}
	for (pg = 0; pg < np; pg++)
		for (st = 0; st < c->nstreams; st++) {
			err = rcv_page(s, r, c, sq, ml->seq, *ent);
			if (err)
				return err;
			*pt_entry(c, ly, pg, st) = *ent++;
		}
	for (k = 0; k < ml->len / c->ct; k++) {
		uint32_t *ce = calloc(c->cpages, sizeof(*ce));

		if (!ce)
			return -ENOMEM;
		atomic_store_explicit(&ly->cdir[k], ce, memory_order_relaxed);
		for (j = 0; j < c->cpages; j++) {
			err = rcv_page(s, r, c, sq, ml->seq, *ent);
			if (err)
				return err;
			ce[j] = *ent++;
		}
	}
	/* the reserved rest of the last extent is not known: the next page
	 * starts a new extent, growing again from E; the channel round-robin
	 * goes on as if the recovered pages had been extents of E */
	layer_extents_restart(ly, np, np / s->extent);
	/* the V running sum lives in DRAM only: rebuilt from the V pages */
	delta = calloc(c->cpages, sizeof(*delta));
	if (!delta)
		return -ENOMEM;
	v_delta(c, ly, 0, ml->len, delta);
	vsum_add(c, ly, delta, ml->len);
	free(delta);
	atomic_store_explicit(&ly->len, ml->len, memory_order_release);
	atomic_fetch_add_explicit(&s->bytes_stored,
				  (uint64_t)ml->len * c->row_bytes * 2,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&s->bytes_used,
				  layer_pages(c, ml->len) * s->page_size,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&c->bytes_used,
				  layer_pages(c, ml->len) * s->page_size,
				  memory_order_relaxed);
	return 0;
}

static int rcv_parse(struct kv_store *s, struct rcv *r, const uint8_t *p,
		     size_t len, uint32_t nctx)
{
	const uint8_t *end = p + len;
	uint32_t i, k, n;
	int err;

	for (i = 0; i < nctx; i++) {
		struct md_ctx mc;
		struct kv_ctx *c;

		if ((size_t)(end - p) < sizeof(mc))
			return -EUCLEAN;
		memcpy(&mc, p, sizeof(mc));
		p += sizeof(mc);
		if (!mc.id)
			return -EUCLEAN;
		for (k = 0; k < s->nreg; k++)
			if (s->reg[k]->id == mc.id)
				return -EUCLEAN;
		if (kv_ctx_create(s, &mc.p, mc.id, &c))
			return -EUCLEAN;
		s->rec[s->nrec++] = c;
		for (n = 0; n < mc.nrec; n++) {
			struct md_layer ml;
			uint64_t nent;

			if ((size_t)(end - p) < sizeof(ml))
				return -EUCLEAN;
			memcpy(&ml, p, sizeof(ml));
			p += sizeof(ml);
			if (ml.layer >= c->p.layers || !ml.len ||
			    ml.len > c->p.max_tokens)
				return -EUCLEAN;
			nent = (uint64_t)pages_for(c, ml.len) * c->nstreams +
			       (uint64_t)(ml.len / c->ct) * c->cpages;
			if ((uint64_t)(end - p) / 4 < nent)
				return -EUCLEAN;
			err = rcv_layer(s, r, c, &ml,
					(const uint32_t *)(const void *)p,
					(size_t)nent);
			if (err)
				return err;
			p += nent * 4;
		}
	}
	return p == end ? 0 : -EUCLEAN;
}

static int slot_valid(const struct kv_store *s, uint32_t slot,
		      struct md_hdr *h)
{
	const uint8_t *src = slot_addr(s, slot);
	uint32_t crc;

	memcpy(h, src, sizeof(*h));
	crc = h->hdr_crc;
	h->hdr_crc = 0;
	if (memcmp(h->magic, md_magic, sizeof(h->magic)) != 0 ||
	    crc32c(h, sizeof(*h)) != crc)
		return 0;
	h->hdr_crc = crc;
	return h->version == FMT_VERSION && h->fs_id == s->fs_id &&
	       h->nctx <= MD_MAX_CTX &&
	       h->payload_len <= s->slot_size - MD_HDR_BYTES &&
	       crc32c(src + MD_HDR_BYTES, h->payload_len) == h->payload_crc;
}

/* Load the newest valid slot that parses; the other one as a fallback. */
static int store_recover(struct kv_store *s, const struct csdfw_config *cfg)
{
	uint64_t blocks = (uint64_t)s->bpc * s->channels;
	struct md_hdr h[2];
	int ok[2], err = -EUCLEAN;
	uint32_t order[2], i, ch, b;
	struct rcv r;

	ok[0] = slot_valid(s, 0, &h[0]);
	ok[1] = slot_valid(s, 1, &h[1]);
	order[0] = ok[1] && (!ok[0] || h[1].seq > h[0].seq) ? 1 : 0;
	order[1] = order[0] ^ 1;
	r.owner = calloc(blocks, sizeof(uint64_t));
	r.seen = calloc(blocks * s->ppb / 8 + 1, 1);
	s->rec = calloc(MD_MAX_CTX, sizeof(struct kv_ctx *));
	if (!r.owner || !r.seen || !s->rec) {
		err = -ENOMEM;
		goto out;
	}
	for (i = 0; i < 2; i++) {
		uint32_t sl = order[i];

		if (!ok[sl])
			continue;
		err = rcv_parse(s, &r, slot_addr(s, sl) + MD_HDR_BYTES,
				h[sl].payload_len, h[sl].nctx);
		if (!err) {
			s->md_seq = h[sl].seq;
			s->md_slot = sl;
			if (i)
				perr(cfg, "metadata slot %c unusable, "
				     "recovered slot %c (commit %llu)",
				     'A' + (int)order[0], 'A' + (int)sl,
				     (unsigned long long)h[sl].seq);
			break;
		}
		/* unload what this slot built, try the other one */
		s->closing = true;
		store_release_all(s);
		s->closing = false;
		s->nrec = 0;
		memset(r.owner, 0, blocks * sizeof(*r.owner));
		memset(r.seen, 0, blocks * s->ppb / 8 + 1);
		atomic_store(&s->bytes_stored, 0);
		atomic_store(&s->bytes_used, 0);
		if (err == -ENOMEM)
			goto out;
	}
	if (err) {
		perr(cfg, "no valid metadata slot (use format=1 to reformat)");
		goto out;
	}
	/* free lists: the blocks no recovered sequence owns */
	s->nfree_total = 0;
	for (ch = 0; ch < s->channels; ch++) {
		uint32_t *stk = s->free_blk + (size_t)ch * s->bpc;

		s->nfree[ch] = 0;
		for (b = 0; b < s->bpc; b++) {
			uint32_t blk = ch * s->bpc + (s->bpc - 1 - b);

			if (!r.owner[blk])
				stk[s->nfree[ch]++] = blk;
		}
		s->nfree_total += s->nfree[ch];
	}
	atomic_store(&s->blocks_free, s->nfree_total);
out:
	free(r.owner);
	free(r.seen);
	return err;
}

/* Lay out and write a fresh superblock and an empty metadata slot A. */
static int store_format(struct kv_store *s)
{
	struct sb_disk sb;
	struct timespec ts;
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	s->fs_id = mix64((uint64_t)ts.tv_sec * 1000000000ull +
			 (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
	if (!s->fs_id)
		s->fs_id = 1;
	/* drop old contents (a reformat must not resurrect anything) */
	if (ftruncate(s->fd, 0) < 0 || ftruncate(s->fd, (off_t)s->size) < 0)
		return -errno;
	memset(&sb, 0, sizeof(sb));
	memcpy(sb.magic, sb_magic, sizeof(sb.magic));
	sb.version = FMT_VERSION;
	sb.sb_bytes = SB_BYTES;
	sb.data_bytes = s->data_bytes;
	sb.channels = s->channels;
	sb.page_size = s->page_size;
	sb.ppb = s->ppb;
	sb.bpc = s->bpc;
	sb.slot_off = s->slot_off;
	sb.slot_size = s->slot_size;
	sb.data_off = s->data_off;
	sb.file_size = s->size;
	sb.fs_id = s->fs_id;
	sb.format_ns = (uint64_t)ts.tv_sec * 1000000000ull +
		       (uint64_t)ts.tv_nsec;
	sb.crc = crc32c(&sb, offsetof(struct sb_disk, crc));
	/* slot A (commit 1, no contexts) before the superblock names it */
	err = write_slot(s, 0, 1, NULL, 0, 0, 0);
	if (err)
		return err;
	memcpy(s->base, &sb, sizeof(sb));
	err = msync_range(s, s->base, sizeof(sb));
	if (err)
		return err;
	s->md_seq = 1;
	s->md_slot = 0;
	return 0;
}

static int store_attach_file(struct kv_store *s, const struct csdfw_config *cfg)
{
	char path[sizeof(cfg->backing) + 1];
	uint64_t blocks = (uint64_t)s->bpc * s->channels;
	struct sb_disk sb;
	struct stat st;
	bool fmt = cfg->format != 0;
	int err;

	memcpy(path, cfg->backing, sizeof(cfg->backing));
	path[sizeof(cfg->backing)] = '\0';
	s->slot_off = s->page_size;
	s->slot_size = slot_bytes(s);
	s->data_off = s->slot_off + 2 * s->slot_size;
	s->size = (size_t)(s->data_off + s->data_bytes);
	s->pend_blk = calloc(blocks, sizeof(*s->pend_blk));
	if (!s->pend_blk)
		return -ENOMEM;
	s->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->fd < 0)
		return -errno;
	if (fstat(s->fd, &st) < 0) {
		err = -errno;
		goto err_fd;
	}
	if (st.st_size == 0) {
		fmt = true;
	} else if (!fmt) {
		uint32_t crc;

		if (pread(s->fd, &sb, sizeof(sb), 0) != (ssize_t)sizeof(sb) ||
		    memcmp(sb.magic, sb_magic, sizeof(sb.magic)) != 0) {
			perr(cfg, "no CSD superblock (use format=1 to "
			     "format it)");
			err = -EUCLEAN;
			goto err_fd;
		}
		crc = crc32c(&sb, offsetof(struct sb_disk, crc));
		if (crc != sb.crc) {
			perr(cfg, "superblock checksum mismatch (use "
			     "format=1 to reformat)");
			err = -EUCLEAN;
			goto err_fd;
		}
		if (sb.version != FMT_VERSION || sb.sb_bytes != SB_BYTES) {
			perr(cfg, "unsupported format version %u (this "
			     "firmware: %u)", sb.version, FMT_VERSION);
			err = -EUCLEAN;
			goto err_fd;
		}
		if (sb.channels != s->channels ||
		    sb.page_size != s->page_size || sb.ppb != s->ppb ||
		    sb.bpc != s->bpc || sb.data_bytes != s->data_bytes) {
			perr(cfg, "geometry mismatch: file has %u channels x "
			     "%u blocks of %u pages of %u bytes, configured "
			     "%u x %u x %u x %u", sb.channels, sb.bpc, sb.ppb,
			     sb.page_size, s->channels, s->bpc, s->ppb,
			     s->page_size);
			err = -EMEDIUMTYPE;
			goto err_fd;
		}
		if (sb.slot_off != s->slot_off ||
		    sb.slot_size != s->slot_size ||
		    sb.data_off != s->data_off || sb.file_size != s->size) {
			perr(cfg, "superblock layout is inconsistent");
			err = -EUCLEAN;
			goto err_fd;
		}
		if ((uint64_t)st.st_size < sb.file_size) {
			perr(cfg, "truncated: %lld bytes, expected %llu",
			     (long long)st.st_size,
			     (unsigned long long)sb.file_size);
			err = -EUCLEAN;
			goto err_fd;
		}
		s->fs_id = sb.fs_id;
	}
	if (fmt && ftruncate(s->fd, (off_t)s->size) < 0) {
		err = -errno;
		goto err_fd;
	}
	s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       s->fd, 0);
	if (s->base == MAP_FAILED) {
		err = -errno;
		s->base = NULL;
		goto err_fd;
	}
	s->data = s->base + s->data_off;
	err = fmt ? store_format(s) : store_recover(s, cfg);
	if (err)
		goto err_map;
	return 0;

err_map:
	s->closing = true;
	store_release_all(s);
	munmap(s->base, s->size);
	s->base = NULL;
err_fd:
	close(s->fd);
	s->fd = -1;
	return err;
}
