/* SPDX-License-Identifier: MIT */
/*
 * kv.h - KV context manager and flash-aware layout.
 *
 * Flash geometry: `channels` channels, each of `blocks_per_channel` blocks of
 * `pages_per_block` pages of `page_size` bytes, held in one backing region
 * (anonymous memory or an mmap'd file).  A KV "stream" is the K (or V) rows
 * of one (context, sequence, layer, kv head); a page holds
 * tokens_per_page = page_size / (head_dim * dtype size) consecutive rows of
 * one stream (16 tokens for head_dim 128 at fp16 with 4 KiB pages).
 * A stream's pages are allocated in extents of consecutive pages that
 * grow with the stream (kv_extent_size(): E, 2E, 4E, ... pages up to X;
 * config extent= and extent_max=, defaults 16 pages and 1 MiB;
 * kv_store_extent(), kv_store_extent_max()): extent j is placed on channel
 * (j + stream_skew) % channels, so one attention call reads all channels
 * in parallel and a kernel walks whole extents of a stream sequentially in
 * memory; E = X = 1 stripes single pages.  Extents smaller than a block
 * come from open blocks owned by the sequence (one open block per channel
 * per sequence), larger ones are whole blocks; an extent is reserved whole
 * when its first page is needed.  Resetting a sequence or destroying a context
 * frees whole blocks (no page-level garbage collection).
 *
 * Concurrency: appends to different sequences may run concurrently; appends
 * to one (seq, layer) are serialized by the caller.  Readers (attention)
 * may look up pages of a stream while an append to it is in progress: page
 * tables never move, and the stored length is published with release
 * semantics after the data (kv_len() is an acquire load).
 *
 * All functions returning uint16_t return an NVMe status field
 * (CSD_STATUS(...)), 0 on success, and change nothing on failure.
 */
#ifndef CSDFW_KV_H
#define CSDFW_KV_H

#include <stdint.h>

#include "csdfw.h"
#include "model.h"

struct kv_store;
struct kv_ctx;

enum kv_which { KV_K = 0, KV_V = 1 };

/* Create the flash store from cfg (capacity, channels, page_size,
 * pages_per_block, backing).  Returns 0 or -errno. */
int kv_store_open(const struct csdfw_config *cfg, struct kv_store **sp);
void kv_store_close(struct kv_store *s);
/* msync the backing file (no-op for memory).  0 or -errno. */
int kv_store_flush(struct kv_store *s);
uint64_t kv_store_blocks_total(const struct kv_store *s);
/* Free blocks, including blocks freed since the last commit of a backing
 * file (reusable after the next commit, which an append that needs them
 * makes implicitly). */
uint64_t kv_store_blocks_free(const struct kv_store *s);
/*
 * Backing file (Documentation/on-media-format.md): kv_store_flush() is a
 * metadata commit (data pages msync'd, then the context table, lengths and
 * page tables written to the older of two checksummed slots).  Contexts of
 * the last commit are recovered by kv_store_open(): kv_store_recovered(s,
 * i) for i < kv_store_nrecovered(s), ascending id (NULL once destroyed).
 * Every context not destroyed by its owner is released by
 * kv_store_close().  kv_store_shutdown() commits and then makes
 * kv_ctx_destroy() only unload contexts (their blocks stay in the file):
 * call it before tearing contexts down at a clean shutdown.
 */
uint32_t kv_store_nrecovered(const struct kv_store *s);
struct kv_ctx *kv_store_recovered(const struct kv_store *s, uint32_t i);
void kv_store_shutdown(struct kv_store *s);

/* Params are validated by the caller against device limits. */
uint16_t kv_ctx_create(struct kv_store *s, const struct csd_ctx_desc *p,
		       uint32_t id, struct kv_ctx **cp);
/* Frees every block of the context.  No reader may be active. */
void kv_ctx_destroy(struct kv_ctx *c);
/* Frees every block of the sequence.  No reader of it may be active. */
uint16_t kv_seq_reset(struct kv_ctx *c, uint32_t seq);

const struct csd_ctx_desc *kv_ctx_params(const struct kv_ctx *c);
uint32_t kv_ctx_id(const struct kv_ctx *c);
uint32_t kv_tokens_per_page(const struct kv_ctx *c);

/*
 * Append @ntok tokens to (seq, layer) at token @start, which must equal
 * kv_len(seq, layer) (else CSD_VSC_TOKEN_ORDER).  Token t's K row (all kv
 * heads, [kv_heads][head_dim]) is read from @src at k_off + t * row_bytes,
 * its V row at v_off + t * row_bytes, row_bytes = kv_heads * head_dim *
 * dtype size.  Checks CSD_VSC_CTX_FULL (start + ntok > max_tokens) and
 * CSD_VSC_NO_SPACE before writing anything.  Adds programmed pages per
 * channel and bytes to @w (may be NULL).
 */
uint16_t kv_append(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		   uint32_t start, uint32_t ntok, const struct csdfw_data *src,
		   size_t k_off, size_t v_off, struct model_work *w);

/* kv_append() flags */
enum {
	/* new extents of the first size only (no growth): the placement a
	 * nearly full store falls back to, asked for up front */
	KV_APPEND_NOGROW = 1u << 0,
};

/* kv_append() with KV_APPEND_* @flags. */
uint16_t kv_append_flags(struct kv_ctx *c, uint32_t seq, uint32_t layer,
			 uint32_t start, uint32_t ntok,
			 const struct csdfw_data *src, size_t k_off,
			 size_t v_off, struct model_work *w,
			 unsigned int flags);

/*
 * Upper bound on the free blocks kv_append_flags(c, seq, layer, kv_len(),
 * ntok, ..., @flags) takes (0 if it needs no new extent or page): for a
 * space pre-check over several appends (a fused ATTN_SUBMIT), compared
 * with kv_store_blocks_free().  Without KV_APPEND_NOGROW an append may
 * take growing extents whenever they fit, so its bound covers both
 * placements; a batch that does not fit that way may still fit with
 * KV_APPEND_NOGROW.  Appends to (seq, layer) must be held off by the
 * caller for the bound to stay valid.
 */
uint64_t kv_append_blocks_bound(struct kv_ctx *c, uint32_t seq,
				uint32_t layer, uint32_t ntok,
				unsigned int flags);
/* Pages of a stream's first / largest extent (kv.c, Placement). */
uint32_t kv_store_extent(const struct kv_store *s);
uint32_t kv_store_extent_max(const struct kv_store *s);

/*
 * The largest extent the store uses for a configured @x (pages), first
 * extent @e and blocks of @ppb pages: at least @e; below a block, the
 * largest e << j <= x that divides the block (so open blocks are tiled
 * without leftover tails), else whole blocks.  Needs e | ppb.
 */
uint32_t kv_extent_max_norm(uint32_t e, uint32_t x, uint32_t ppb);
/*
 * Pages of a stream's extent of level @k (0 = its first) as the store sizes
 * them while space allows: min(e << k, x), rounded down to whole blocks of
 * @ppb pages when at least a block, and a whole block for a smaller size
 * that does not divide the block (csd-bench mirrors the layout with it).
 * Needs e | ppb and x = kv_extent_max_norm(e, x, ppb).
 */
uint32_t kv_extent_size(uint32_t e, uint32_t x, uint32_t ppb, uint64_t k);
/*
 * The level an append that still has @want pages of a stream to place
 * gives the stream's next extent when the last one began at level k - 1:
 * k, or the first level after it whose extent holds all @want pages (or
 * the largest), so a bulk append (a prefill) does not start with small
 * extents it would fill at once, while a decode append (one page) grows
 * one level per extent.
 */
uint64_t kv_extent_level(uint32_t e, uint32_t x, uint32_t ppb, uint64_t k,
			 uint64_t want);

/* Read tokens [start, start+ntok) into @dst: K rows at 0, V rows at
 * ntok * row_bytes.  CSD_VSC_TOKEN_RANGE if beyond kv_len(). */
uint16_t kv_read(struct kv_ctx *c, uint32_t seq, uint32_t layer,
		 uint32_t start, uint32_t ntok, const struct csdfw_data *dst,
		 struct model_work *w);

/* Stored tokens of (seq, layer); acquire load. */
uint32_t kv_len(const struct kv_ctx *c, uint32_t seq, uint32_t layer);

/* Address of page @page_idx (token page_idx * tokens_per_page onward) of a
 * stream; rows are contiguous, head_dim elements each.  The page must
 * exist (page_idx * tpp < kv_len). */
const void *kv_page(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		    uint32_t kv_head, enum kv_which which, uint32_t page_idx);

/*
 * Batched kv_page() and kv_page_chan() (SparF's scattered kept rows): for
 * i < n, kpg[i] / vpg[i] = the address of K / V page pg[i] of (seq, layer,
 * kv_head) and kch[i] / vch[i] its flash channel (each output may be NULL).
 * Cheapest for ascending pg[].  Returns n, or the first i whose page
 * kv_page() would not find (NULL); outputs from i on are not written.
 */
uint32_t kv_pages(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		  uint32_t kv_head, const uint32_t *pg, uint32_t n,
		  const void **kpg, const void **vpg, uint32_t *kch,
		  uint32_t *vch);

/* Charge to @w the pages attention reads for tokens [tok_lo, tok_hi) of
 * all kv heads of (seq, layer), K and V, per channel. */
void kv_account_read(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		     uint32_t tok_lo, uint32_t tok_hi, struct model_work *w);

/* Usage for CTX_QUERY / the context log.  Fills up to @n seq entries. */
void kv_ctx_info(const struct kv_ctx *c, struct csd_ctx_info *info,
		 struct csd_seq_info *seqs, uint32_t n);

/* Device-wide byte counters (payload held and whole pages allocated). */
uint64_t kv_store_bytes_stored(const struct kv_store *s);
uint64_t kv_store_bytes_used(const struct kv_store *s);

/* ---- SparF support (command set v0.2) ----------------------------------
 *
 * Channel-indexed K: besides the token-indexed pages, every complete
 * "chunk" of kv_chan_tokens(c) = page_size / dtype-size consecutive tokens
 * of a K stream is also stored dimension-major: head_dim pages, page j
 * holding dim j of the chunk's tokens in token order.  The copy is written
 * by kv_append when a chunk completes (costs head_dim pages per chunk, i.e.
 * K stored twice for complete chunks); tokens of the incomplete tail chunk
 * exist only token-indexed.  Pages come from the sequence's blocks (freed
 * with it) and are striped over the channels.
 */
uint32_t kv_chan_tokens(const struct kv_ctx *c);
/* Complete chunks of (seq, layer) = kv_len / kv_chan_tokens (acquire;
 * a chunk's pages are published before the length that completes it). */
uint32_t kv_chan_chunks(const struct kv_ctx *c, uint32_t seq, uint32_t layer);
/* Dim @dim of chunk @chunk of the K stream of @kv_head: kv_chan_tokens(c)
 * elements of the context dtype.  The chunk must be complete. */
const void *kv_chan_page(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
			 uint32_t kv_head, uint32_t dim, uint32_t chunk);
/* Flash channel of a token-indexed page / of a channel-indexed page
 * (for the timing model's per-channel accounting). */
uint32_t kv_page_chan(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		      uint32_t kv_head, enum kv_which which, uint32_t page_idx);
uint32_t kv_chan_page_chan(const struct kv_ctx *c, uint32_t seq,
			   uint32_t layer, uint32_t kv_head, uint32_t dim,
			   uint32_t chunk);
/*
 * Running sum of V over every stored token of (seq, layer), all kv heads:
 * fills @sum[kv_heads][head_dim] and returns the number of tokens it covers
 * (a consistent snapshot: the sum is of exactly the first n tokens, even
 * with an append to the sequence in progress).  Kept in device DRAM,
 * updated by kv_append, cleared by kv_seq_reset; O(kv_heads * head_dim).
 */
uint32_t kv_vsum(const struct kv_ctx *c, uint32_t seq, uint32_t layer,
		 float *sum);

#endif /* CSDFW_KV_H */
