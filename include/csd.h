/* SPDX-License-Identifier: MIT */
/*
 * csd.h - libcsd, the host library for in-storage attention.
 *
 * One public header.  Every function returns 0 (or a non-negative count)
 * on success and a negative errno on failure.  Handles are opaque.  A
 * struct csd_dev may be used from several threads at once; a struct
 * csd_attn belongs to the thread that waits for it.
 *
 * See csd(7) and the per-function man pages in Documentation/man.
 */
#ifndef CSD_H
#define CSD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSD_LIB_VERSION_MAJOR 0
#define CSD_LIB_VERSION_MINOR 1

struct csd_dev;		/* an open drive */
struct csd_ctx;		/* a KV context on a drive */
struct csd_attn;	/* an attention call in flight */

/* KV element types (values equal the wire encoding). */
enum csd_kv_dtype {
	CSD_KV_F32 = 0,
	CSD_KV_F16 = 1,
	CSD_KV_BF16 = 2,
};

/* ---- devices --------------------------------------------------------- */

/*
 * Open a drive.  @spec selects the transport:
 *   "embedded:" or "embedded:key=val,..."  in-process emulated drive
 *       keys: capacity=SIZE (e.g. 16G), channels=N, page=BYTES,
 *       block=PAGES, extent=PAGES, extent_max=PAGES, threads=N,
 *       simd=scalar|avx2|avx512|avx512bf16|auto, pacing=0|1, backing=PATH (durable,
 *       file-backed flash), format=0|1, profile=NAME; see csd_dev_open(3)
 *   "shm:PATH[,timeout=MS][,poll[=US]]"  the csd-fw daemon listening on
 *       socket PATH (data is copied through the shared-memory window)
 *   "/dev/NODE[,ioctl][,depth=N]"  NVMe passthrough char device (csd.ko's
 *       /dev/csdN, or /dev/ngXnY): io_uring uring_cmd, ioctl fallback
 *   "A,B,..." or "group:OPTS,A,..."  a device group, see csd_group_open()
 * NULL or "" means the CSD_DEVICE environment variable, else "embedded:".
 */
int csd_dev_open(const char *spec, struct csd_dev **devp);
void csd_dev_close(struct csd_dev *dev);

struct csd_dev_info {
	char model[41];
	char serial[21];
	char firmware[9];	/* Identify FR */
	char fw_version[17];	/* firmware-sim version string */
	char transport[16];	/* "embedded", "shm", "kernel" */
	char simd[17];		/* attention kernel in use */
	char profile[17];	/* timing profile name */
	uint32_t spec_version;	/* (major << 16) | minor */
	uint32_t dtypes;	/* bit (1 << enum csd_kv_dtype) */
	uint32_t features;	/* CSD_FEAT_* of csd_spec.h */
	uint32_t min_head_dim, max_head_dim, head_dim_align;
	uint32_t max_layers, max_kv_heads, max_q_heads;
	uint32_t max_contexts, max_seqs, max_tokens, max_tags;
	uint32_t max_attn_seqs;
	uint32_t max_xfer;
	uint32_t channels, page_size, pages_per_block, threads;
	uint64_t capacity;
	uint32_t chan_mbps, link_mbps, read_lat_ns, prog_lat_ns;
};
int csd_dev_get_info(struct csd_dev *dev, struct csd_dev_info *info);

struct csd_dev_stats {
	uint64_t kv_bytes_stored;
	uint64_t flash_bytes_used;
	uint64_t flash_bytes_read;
	uint64_t flash_bytes_written;
	uint64_t host_bytes_in;
	uint64_t host_bytes_out;
	uint64_t attn_calls;
	uint64_t attn_seqs;
	uint64_t attn_tokens;
	uint64_t commands;
	uint64_t errors;
	uint64_t modeled_ns;
	uint64_t busy_ns;
	uint64_t contexts;
	uint64_t blocks_free;
	uint64_t blocks_total;
};
int csd_dev_get_stats(struct csd_dev *dev, struct csd_dev_stats *st);

/* Complete commands at their modeled device time (1) or at once (0). */
int csd_dev_set_pacing(struct csd_dev *dev, int on);

/* Persist the drive's state (backing file) - NVMe Flush. */
int csd_dev_flush(struct csd_dev *dev);

/*
 * Controller reset of this handle's queues (like an NVMe controller reset,
 * but for this handle only): every command in flight on @dev completes
 * with -ECANCELED (csd_attn_wait() of an attention call in flight returns
 * -ECANCELED), calls made during the reset wait for it, and the handle is
 * usable again when it returns 0.  KV contexts and their data are kept.
 * An aborted attention call's tag is read again before -ECANCELED is
 * returned, so the tag is free afterwards (command-set.md 3.8).
 * "shm:": device interface v1.2 reset (-EOPNOTSUPP from an older daemon;
 * no answer within the timeout: the device is treated as dead and
 * -ETIMEDOUT returned); "/dev/...": NVME_IOCTL_RESET (needs CAP_SYS_ADMIN:
 * -EACCES/-EPERM otherwise); groups reset every member (the first error is
 * returned); "embedded:" returns -EOPNOTSUPP.  See csd_dev_reset(3).
 */
int csd_dev_reset(struct csd_dev *dev);

struct csd_ctx_entry {
	uint32_t id;
	uint32_t layers, kv_heads, q_heads, head_dim;
	enum csd_kv_dtype dtype;
	uint32_t max_seqs, max_tokens, seqs_used;
	uint64_t bytes_used;
	uint64_t tokens;
};
/* Fill up to @max entries; returns the number of live contexts. */
int csd_dev_list_ctx(struct csd_dev *dev, struct csd_ctx_entry *ents,
		     size_t max);

/*
 * Raw passthrough of one command, modelled on struct nvme_passthru_cmd64.
 * Returns 0 when the command reached the device (its NVMe status field,
 * without the phase bit, is in @status; 0 = success) or a negative errno
 * when it could not be sent.  Meant for tools and conformance tests.
 */
struct csd_passthru {
	uint8_t opcode;
	uint8_t flags;
	uint16_t rsvd1;
	uint32_t nsid;
	uint32_t cdw2, cdw3;
	uint32_t cdw10, cdw11, cdw12, cdw13, cdw14, cdw15;
	void *addr;		/* data buffer or NULL */
	uint32_t data_len;	/* bytes */
	uint32_t timeout_ms;	/* 0 = transport default */
	uint64_t result;	/* CQE dw0 | dw1 << 32 */
	uint16_t status;	/* NVMe status field, 0 = success */
};
int csd_dev_passthru(struct csd_dev *dev, int admin, struct csd_passthru *cmd);

/* Map an NVMe status field (as in csd_passthru.status) to -errno. */
int csd_status_to_errno(uint16_t status);
/* Short human-readable name of an NVMe/CSD status field. */
const char *csd_status_str(uint16_t status);

/* ---- KV contexts ----------------------------------------------------- */

struct csd_ctx_params {
	uint32_t layers;
	uint32_t kv_heads;
	uint32_t q_heads;	/* multiple of kv_heads (GQA) */
	uint32_t head_dim;
	enum csd_kv_dtype dtype;
	uint32_t max_seqs;	/* sequence slots */
	uint32_t max_tokens;	/* per sequence */
};
int csd_ctx_create(struct csd_dev *dev, const struct csd_ctx_params *p,
		   struct csd_ctx **ctxp);
/* Destroy the context on the drive (waits for its attention calls). */
int csd_ctx_destroy(struct csd_ctx *ctx);
uint32_t csd_ctx_get_id(const struct csd_ctx *ctx);
int csd_ctx_get_params(const struct csd_ctx *ctx, struct csd_ctx_params *p);

struct csd_ctx_usage {
	uint32_t seqs_used;
	uint32_t inflight;
	uint32_t tokens_per_page;
	uint64_t bytes_used;
	uint64_t tokens;
};
/* Usage, and per-sequence lengths (min over layers) for up to @n slots. */
int csd_ctx_query(struct csd_ctx *ctx, struct csd_ctx_usage *u,
		  uint32_t *seq_lens, size_t n);

/* Free a sequence slot's KV (whole-block reclaim on the drive). */
int csd_seq_reset(struct csd_ctx *ctx, uint32_t seq);

/*
 * Append @ntok tokens of one layer of one sequence, starting at token
 * @start (which must equal the tokens stored so far for (seq, layer)).
 * @k and @v are [ntok][kv_heads][head_dim] in the context dtype.  Large
 * appends are split into commands of at most max_xfer bytes; a failure
 * part-way leaves the tokens before the failing command stored.
 */
int csd_kv_append(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
		  uint32_t start, uint32_t ntok, const void *k, const void *v);
/* Read tokens [start, start + ntok) back into @k and @v (same layout). */
int csd_kv_read(struct csd_ctx *ctx, uint32_t seq, uint32_t layer,
		uint32_t start, uint32_t ntok, void *k, void *v);

/* ---- attention ------------------------------------------------------- */

enum csd_attn_req_flags {
	CSD_ATTN_FUSED_KV = 1u << 0,	/* append k_new/v_new, then attend */
	CSD_ATTN_LSE = 1u << 1,		/* fill lse */
	CSD_ATTN_SPARSE = 1u << 2,	/* SparF approximate attention: @sparse */
};

/*
 * SparF parameters (with CSD_ATTN_SPARSE; spec v0.2).  Either @ratio > 0:
 * the target fraction of the dense KV bytes read per call (e.g. 0.125), from
 * which the library derives r = round(ratio * head_dim) (>= 1) and keeps
 * ceil(ratio / 2 * n) tokens of every sequence of n attended tokens; or
 * @ratio == 0 and explicit @r (dims of q used for approximate scores,
 * 1..head_dim) and @k (tokens kept per sequence and q head, >= 1; k >= n
 * means all tokens, which equals dense attention).  Not combinable with a
 * non-zero window.  See csd_attn_submit(3) and command-set.md.
 */
struct csd_attn_sparse {
	float ratio;
	uint32_t r;
	uint32_t k;
};

struct csd_attn_req {
	uint32_t layer;
	uint32_t nseq;
	uint32_t flags;		/* enum csd_attn_req_flags */
	uint32_t window;	/* attend to the last @window tokens; 0 = all */
	float scale;		/* softmax scale; 0 = 1/sqrt(head_dim) */
	const uint32_t *seqs;	/* [nseq] sequence slots, distinct */
	const float *q;		/* [nseq][q_heads][head_dim] */
	const void *k_new;	/* FUSED_KV: [nseq][kv_heads][head_dim] dtype */
	const void *v_new;
	float *out;		/* [nseq][q_heads][head_dim] */
	float *lse;		/* LSE: [nseq][q_heads] */
	struct csd_attn_sparse sparse;	/* with CSD_ATTN_SPARSE */
};

/*
 * Start an attention call.  The buffers of @req (including seqs, q, k_new,
 * v_new, out, lse) must stay valid until csd_attn_wait() returns.  Many
 * calls may be in flight per context (up to info.max_tags).
 */
int csd_attn_submit(struct csd_ctx *ctx, const struct csd_attn_req *req,
		    struct csd_attn **opp);

struct csd_attn_result {
	uint64_t tokens;	/* (sequence, token) pairs attended */
	uint64_t modeled_ns;	/* modeled device time, submit + read */
};
/* Wait for @op, fill req->out (and lse), free @op.  @res may be NULL. */
int csd_attn_wait(struct csd_attn *op, struct csd_attn_result *res);
/* Submit and wait. */
int csd_attn_run(struct csd_ctx *ctx, const struct csd_attn_req *req,
		 struct csd_attn_result *res);

/* ---- device groups: several drives as one ---------------------------- */

enum csd_group_split {
	CSD_SPLIT_HEADS = 0,	/* each drive holds a share of the KV heads */
	CSD_SPLIT_TOKENS = 1,	/* each drive holds a share of every sequence's
				 * tokens; outputs merged by log-sum-exp */
};

struct csd_group_opts {
	uint32_t split;		/* enum csd_group_split */
	uint32_t chunk_tokens;	/* CSD_SPLIT_TOKENS: tokens per stripe unit
				 * (0 = library default, 256) */
};

/*
 * Open @n drives (device strings as for csd_dev_open(), any transports) as
 * one device.  The returned handle is used exactly like a single drive:
 * contexts, KV and attention are spread over the members and results
 * gathered (head split: bit-identical to one drive; token split: merged by
 * log-sum-exp).  @opts may be NULL (split by heads).  A member failing to
 * open closes the others and its error is returned.
 * csd_dev_open("A,B,...") with every element starting with a transport
 * prefix ("embedded:", "embedded", "shm:", "/dev/") opens a head-split
 * group too; the string is split only at commas followed by a prefix.
 * "group:OPTS,A,..." chooses the split in the string (one or more members;
 * OPTS: split=heads|tokens, chunk=N = chunk_tokens 1..2^24, only with
 * split=tokens; bad options -EINVAL).  See csd_group_open(3).
 */
int csd_group_open(const char *const *specs, unsigned int n,
		   const struct csd_group_opts *opts, struct csd_dev **devp);
/* Number of member drives of @dev (1 for a single drive). */
unsigned int csd_dev_get_members(const struct csd_dev *dev);

#ifdef __cplusplus
}
#endif

#endif /* CSD_H */
