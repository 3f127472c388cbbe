/* SPDX-License-Identifier: MIT */
/*
 * backend.h - attention backends of the host runtime.
 *
 * The decoder owns everything but attention and the KV cache.  A backend
 * stores KV (fp16) for a batch of sequence slots and computes decode
 * attention for one layer of a batch of sequences.  Three backends share
 * this interface so they can be compared on the same workload:
 *   host     KV in host RAM, attention on the host CPU
 *   flexgen  KV in a file, read back every step with io_uring O_DIRECT
 *   csd      KV and attention on a drive through libcsd
 */
#ifndef CSD_RT_BACKEND_H
#define CSD_RT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct rt_shape {
	uint32_t layers, q_heads, kv_heads, head_dim;
	uint32_t max_seqs;	/* sequence slots */
	uint32_t max_tokens;	/* per sequence */
	uint32_t threads;	/* host threads the backend may use */
};

/* Time and traffic accounting, summed over the backend's life. */
struct rt_backend_stats {
	uint64_t attn_calls;
	uint64_t kv_bytes_read;		/* KV bytes read to compute attention */
	uint64_t link_bytes;		/* bytes over the host link (PCIe/SSD) */
	uint64_t host_kv_bytes;		/* host RAM held for KV (peak) */
	uint64_t attn_ns;		/* wall time inside attention calls */
	uint64_t xfer_ns;		/* wall time moving KV (flexgen reads) */
	uint64_t modeled_ns;		/* modeled device time (csd) */
};

struct rt_backend;

struct rt_backend_ops {
	const char *name;
	/* @opts: backend-specific string (csd: device string; flexgen: dir). */
	int (*open)(const struct rt_shape *shape, const char *opts,
		    struct rt_backend **bp);
	void (*close)(struct rt_backend *b);
	/*
	 * Store @ntok tokens of (seq, layer) starting at @start (== tokens
	 * stored so far).  k, v: [ntok][kv_heads][head_dim] fp16 (uint16_t).
	 */
	int (*append)(struct rt_backend *b, uint32_t seq, uint32_t layer,
		      uint32_t start, uint32_t ntok, const uint16_t *k,
		      const uint16_t *v);
	/*
	 * Start decode attention of @layer for @nseq sequences: append each
	 * sequence's new token (k_new/v_new [nseq][kv_heads][head_dim] fp16),
	 * then attend over all its tokens with q [nseq][q_heads][head_dim],
	 * writing out [nseq][q_heads][head_dim].  Buffers stay valid until
	 * wait() returns.  Returns a ticket >= 0 or -errno.
	 */
	int (*submit)(struct rt_backend *b, uint32_t layer, uint32_t nseq,
		      const uint32_t *seqs, const float *q,
		      const uint16_t *k_new, const uint16_t *v_new, float *out);
	int (*wait)(struct rt_backend *b, int ticket);
	int (*reset)(struct rt_backend *b, uint32_t seq);
	void (*get_stats)(struct rt_backend *b, struct rt_backend_stats *st);
};

extern const struct rt_backend_ops rt_backend_host;
extern const struct rt_backend_ops rt_backend_flexgen;
extern const struct rt_backend_ops rt_backend_csd;

/* "host" | "flexgen" | "csd" -> ops, NULL if unknown. */
const struct rt_backend_ops *rt_backend_find(const char *name);

/*
 * flexgen only (additive): how the KV file is read, and a raw O_DIRECT
 * sequential read of the KV written so far in the same file (io_uring,
 * 4 MiB aligned reads, 32 in flight, registered buffers, best of two
 * passes, no compute) - the reference flexgen's KV read rate is compared
 * with.  -EINVAL if @b is not a flexgen backend.
 */
struct rt_flexgen_info {
	int uring;		/* 1 io_uring, 0 pread fallback */
	int direct;		/* 1 O_DIRECT, 0 buffered fallback */
	uint32_t read_size;	/* bytes per read request */
	uint32_t queue_depth;	/* reads in flight */
	uint64_t file_bytes;	/* KV bytes written to the file */
	uint64_t staging_bytes;	/* host staging buffers allocated */
	char path[256];		/* directory of the (unlinked) file */
};
int rt_flexgen_get_info(struct rt_backend *b, struct rt_flexgen_info *info);
/* Reads at most @max_bytes (0 = all written); fills bytes read and ns. */
int rt_flexgen_raw_read(struct rt_backend *b, uint64_t max_bytes,
			uint64_t *bytes, uint64_t *ns);

/*
 * csd only (additive): SparF sparse attention (spec v0.2) with compression
 * @ratio of the KV bytes read per step (0 < ratio <= 1) for the calls
 * submitted after it; 0 = dense.  kv_bytes_read then counts the drive's
 * real flash reads.  -EINVAL if @b is not a csd backend or @ratio is out of
 * range.
 */
int rt_csd_set_sparse(struct rt_backend *b, float ratio);

#endif /* CSD_RT_BACKEND_H */
