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
 * Placement.  Each sequence owns one open block per channel (shared by all
 * its layers and heads).  Stream st = kv_head * 2 + which of layer l has
 * skew (l * kv_heads * 2 + st) % channels, and its page i is placed on
 * channel (i + skew) % channels, so the pages of one stream go round-robin
 * over all channels and the same page index of the streams of a layer is
 * spread evenly over the channels.  If that channel has neither room in the
 * sequence's open block nor a free block, the next channel (ch + 1, ch + 2,
 * ... cyclically) that has one is used.  An append first counts the pages
 * it needs (for all streams) and fails with NO_SPACE unless that many pages
 * are available over all channels (then the fallback always succeeds), so
 * an append is all-or-nothing.
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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kv.h"

#define NO_BLOCK	UINT32_MAX
#define CHUNK_BYTES	4096u

#define ST_INTERNAL	CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INTERNAL)
#define ST_VSC(x)	CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_##x)

struct kv_store {
	uint8_t *base;
	size_t size;
	int fd;				/* -1: memory */
	uint32_t channels;
	uint32_t page_size;
	uint32_t ppb;			/* pages per block */
	uint32_t bpc;			/* blocks per channel */
	size_t block_bytes;

	pthread_mutex_t lock;		/* free lists */
	uint32_t *free_blk;		/* [channels][bpc] stacks of block ids */
	uint32_t nfree[CSDFW_MAX_CHANNELS];
	uint64_t nfree_total;		/* under lock */

	_Atomic uint64_t blocks_free;
	_Atomic uint64_t bytes_stored;
	_Atomic uint64_t bytes_used;
};

struct kv_layer {
	_Atomic uint32_t len;
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
	pthread_mutex_t lock;		/* sequence allocation */
	_Atomic uint64_t bytes_used;
	_Atomic(struct kv_seq *) *seqs;	/* [max_seqs] */
};

/* ---- store ------------------------------------------------------------ */

static int is_pow2(uint32_t x)
{
	return x && !(x & (x - 1));
}

int kv_store_open(const struct csdfw_config *cfg, struct kv_store **sp)
{
	struct kv_store *s;
	uint64_t block_bytes, nblocks, bpc, total_pages;
	uint32_t ch, b;
	int err;

	*sp = NULL;
	if (!cfg || cfg->channels == 0 || cfg->channels > CSDFW_MAX_CHANNELS ||
	    !is_pow2(cfg->page_size) || cfg->page_size < 4096 ||
	    cfg->pages_per_block == 0)
		return -EINVAL;
	block_bytes = (uint64_t)cfg->page_size * cfg->pages_per_block;
	nblocks = cfg->capacity / block_bytes;
	bpc = nblocks / cfg->channels;
	if (bpc == 0)
		return -EINVAL;
	total_pages = bpc * cfg->channels * cfg->pages_per_block;
	if (total_pages >= UINT32_MAX || bpc * cfg->channels >= UINT32_MAX ||
	    total_pages * cfg->page_size > (uint64_t)SIZE_MAX / 2)
		return -EFBIG;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->fd = -1;
	s->channels = cfg->channels;
	s->page_size = cfg->page_size;
	s->ppb = cfg->pages_per_block;
	s->bpc = (uint32_t)bpc;
	s->block_bytes = (size_t)block_bytes;
	s->size = (size_t)(total_pages * cfg->page_size);
	s->free_blk = calloc((size_t)bpc * cfg->channels, sizeof(uint32_t));
	if (!s->free_blk) {
		err = -ENOMEM;
		goto err_free;
	}
	err = -pthread_mutex_init(&s->lock, NULL);
	if (err)
		goto err_free;

	if (cfg->backing[0]) {
		char path[sizeof(cfg->backing) + 1];

		memcpy(path, cfg->backing, sizeof(cfg->backing));
		path[sizeof(cfg->backing)] = '\0';
		s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (s->fd < 0) {
			err = -errno;
			goto err_lock;
		}
		if (ftruncate(s->fd, (off_t)s->size) < 0) {
			err = -errno;
			goto err_fd;
		}
		s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE,
			       MAP_SHARED, s->fd, 0);
	} else {
		s->base = mmap(NULL, s->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			       -1, 0);
	}
	if (s->base == MAP_FAILED) {
		err = -errno;
		s->base = NULL;
		goto err_fd;
	}
	/*
	 * Attention reads pages scattered over the whole store; with 4 KiB
	 * host pages nearly every flash page read is a TLB miss.  Ask for
	 * transparent huge pages (advice only: reclaim's MADV_DONTNEED of a
	 * block simply splits a huge page).
	 */
	if (s->fd < 0)
		(void)madvise(s->base, s->size, MADV_HUGEPAGE);

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
	*sp = s;
	return 0;

err_fd:
	if (s->fd >= 0)
		close(s->fd);
err_lock:
	pthread_mutex_destroy(&s->lock);
err_free:
	free(s->free_blk);
	free(s);
	return err;
}

void kv_store_close(struct kv_store *s)
{
	if (!s)
		return;
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	pthread_mutex_destroy(&s->lock);
	free(s->free_blk);
	free(s);
}

int kv_store_flush(struct kv_store *s)
{
	if (!s || s->fd < 0)
		return 0;
	if (msync(s->base, s->size, MS_SYNC) < 0)
		return -errno;
	return 0;
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
	return s->base + (size_t)pg * s->page_size;
}

/* Give the blocks' storage back to the OS, then to the free lists. */
static void store_free_blocks(struct kv_store *s, const uint32_t *blk,
			      uint32_t n)
{
	uint32_t i;

	if (!n)
		return;
	for (i = 0; i < n; i++) {
		size_t off = (size_t)blk[i] * s->block_bytes;

		if (s->fd >= 0)
			(void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE |
					FALLOC_FL_KEEP_SIZE, (off_t)off,
					(off_t)s->block_bytes);
		else
			(void)madvise(s->base + off, s->block_bytes,
				      MADV_DONTNEED);
	}
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < n; i++) {
		uint32_t ch = blk_channel(s, blk[i]);

		s->free_blk[(size_t)ch * s->bpc + s->nfree[ch]++] = blk[i];
	}
	s->nfree_total += n;
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
	atomic_init(&c->bytes_used, 0);
	c->seqs = calloc(p->max_seqs, sizeof(*c->seqs));
	if (!c->seqs)
		goto err;
	for (i = 0; i < p->max_seqs; i++)
		atomic_init(&c->seqs[i], NULL);
	if (pthread_mutex_init(&c->lock, NULL))
		goto err;
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

/* Called with sq->lock held. */
static struct kv_layer *layer_get(struct kv_ctx *c, struct kv_seq *sq,
				  uint32_t layer)
{
	struct kv_layer *ly = layer_peek(c, sq, layer);
	uint32_t i;

	if (ly)
		return ly;
	ly = calloc(1, sizeof(*ly) + (size_t)c->nchunks * sizeof(ly->dir[0]));
	if (!ly)
		return NULL;
	atomic_init(&ly->len, 0);
	for (i = 0; i < c->nchunks; i++)
		atomic_init(&ly->dir[i], NULL);
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
		used += (uint64_t)pages_for(c, len) * c->nstreams *
			s->page_size;
		atomic_store_explicit(&ly->len, 0, memory_order_release);
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
	uint32_t i, l, k;

	if (!c)
		return;
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

/* Take one page for the seq on channel @ch0 or the next channel with room.
 * Called with the store lock held; the caller made sure a page exists. */
static uint32_t take_page(struct kv_store *s, struct kv_seq *sq, uint32_t ch0)
{
	uint32_t k;

	for (k = 0; k < s->channels; k++) {
		uint32_t ch = (ch0 + k) % s->channels;

		if (sq->open_blk[ch] == NO_BLOCK ||
		    sq->open_next[ch] == s->ppb) {
			uint32_t blk;

			if (!s->nfree[ch])
				continue;
			blk = s->free_blk[(size_t)ch * s->bpc +
					  --s->nfree[ch]];
			s->nfree_total--;
			sq->owned[sq->nowned++] = blk;
			sq->open_blk[ch] = blk;
			sq->open_next[ch] = 0;
		}
		return sq->open_blk[ch] * s->ppb + sq->open_next[ch]++;
	}
	return UINT32_MAX;	/* not reached */
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

uint16_t kv_append(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		   uint32_t start, uint32_t ntok, const struct csdfw_data *src,
		   size_t k_off, size_t v_off, struct model_work *w)
{
	struct kv_store *s = c->s;
	struct kv_seq *sq;
	struct kv_layer *ly;
	uint32_t len, p0, p1, old_pages, pg, st, k;
	uint64_t npages, avail;
	size_t bytes;
	uint16_t rc = 0;

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
	npages = (uint64_t)(p1 - old_pages) * c->nstreams;

	/* Everything that can fail for lack of memory, before any change
	 * that is visible (chunks past the length are not). */
	for (k = old_pages / c->chunk_pages;
	     p1 > old_pages && k <= (p1 - 1) / c->chunk_pages; k++) {
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
	if (!npages)
		goto write;
	if (owned_reserve(sq, npages / s->ppb + s->channels + 1)) {
		rc = ST_INTERNAL;
		goto out;
	}

	pthread_mutex_lock(&s->lock);
	avail = s->nfree_total * s->ppb;
	for (k = 0; k < s->channels; k++)
		if (sq->open_blk[k] != NO_BLOCK)
			avail += s->ppb - sq->open_next[k];
	if (npages > avail) {
		pthread_mutex_unlock(&s->lock);
		rc = ST_VSC(NO_SPACE);
		goto out;
	}
	{
		uint64_t before = s->nfree_total;

		for (pg = old_pages; pg < p1; pg++)
			for (st = 0; st < c->nstreams; st++)
				/* channels: checked != 0 in kv_store_open,
				 * never changed (the analyzer loses that
				 * across pthread_mutex_lock(&s->lock)) */
				*pt_entry(c, ly, pg, st) = take_page(s, sq,
					// NOLINTNEXTLINE(clang-analyzer-core.DivideZero)
					(pg + stream_skew(c, layer, st)) %
					s->channels);
		atomic_fetch_sub_explicit(&s->blocks_free,
					  before - s->nfree_total,
					  memory_order_relaxed);
	}
	pthread_mutex_unlock(&s->lock);

write:
	copy_rows_in(c, ly, start, ntok, src, k_off, 0);
	copy_rows_in(c, ly, start, ntok, src, v_off, 1);

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
	return rc;
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
	struct kv_layer *ly = layer_peek(c, seq_peek(c, seq), layer);
	const uint32_t *chunk;

	if (!ly || kv_head >= c->p.kv_heads || page_idx >= c->max_pages)
		return NULL;
	chunk = atomic_load_explicit(&ly->dir[page_idx / c->chunk_pages],
				     memory_order_acquire);
	if (!chunk)
		return NULL;
	return page_addr(c->s, chunk[(size_t)(page_idx % c->chunk_pages) *
				     c->nstreams + kv_head * 2 +
				     (which ? 1 : 0)]);
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
