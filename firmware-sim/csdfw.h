/* SPDX-License-Identifier: MIT */
/*
 * csdfw.h - libcsdfw, the emulated CSD ("firmware-sim") as a library.
 *
 * Internal to the project: used by libcsd's embedded transport, the csd-fw
 * daemon and the tests.  Never installed, never included from include/.
 *
 * The device consumes NVMe-format submission entries (csd_spec.h) and
 * completes each one exactly once through a callback, possibly from another
 * thread and possibly before csdfw_submit() returns.
 */
#ifndef CSDFW_H
#define CSDFW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csd/csd_spec.h"

#define CSDFW_VERSION		"0.1.0"
#define CSDFW_MAX_CHANNELS	64
/* Pages of a KV stream's first extent when extent_pages is 0, and bytes of
 * its largest when extent_max_pages is 0 (see csdfw_config_parse). */
#define CSDFW_EXTENT_DEFAULT	16
#define CSDFW_EXTENT_MAX_BYTES	(1u << 20)

/* Flash and host-link timing profile (see model.c for the equations). */
struct csdfw_timing {
	char     name[16];
	double   chan_bytes_per_s;	/* per flash channel */
	double   link_bytes_per_s;	/* host link (PCIe), each direction */
	uint32_t read_lat_ns;		/* page read (tR) */
	uint32_t prog_lat_ns;		/* page program (tPROG) */
	uint32_t ways;			/* dies x planes per channel working in parallel */
	uint32_t cmd_overhead_ns;	/* fixed cost per command */
	double   compute_flops;		/* attention engine, FLOP/s */
};

struct csdfw_config {
	uint64_t capacity;		/* KV flash bytes */
	uint32_t channels;
	uint32_t page_size;		/* bytes, power of two >= 4096 */
	uint32_t pages_per_block;	/* erase/reclaim unit */
	uint32_t threads;		/* attention workers, 0 = online CPUs */
	int      simd;			/* enum csd_simd, CSD_SIMD_AUTO */
	int      pacing;		/* complete at modeled time */
	char     backing[256];		/* flash backing file, "" = memory */
	uint32_t max_contexts;
	uint32_t max_seqs;		/* per context */
	uint32_t max_tokens;		/* per sequence */
	uint32_t max_tags;		/* attention calls in flight per context */
	uint32_t max_attn_seqs;		/* sequences per ATTN_SUBMIT */
	uint32_t max_xfer;		/* bytes per command */
	struct csdfw_timing timing;
	int      format;		/* backing: 1 = (re)format, losing its contents */
	uint32_t extent_pages;		/* first KV extent, pages; 0 = default */
	uint32_t extent_max_pages;	/* largest KV extent; 0 = default */
};

/* Defaults: the InstInfer drive (8 ch x 1.4 GB/s, PCIe 4.0 x4), memory-backed. */
void csdfw_config_default(struct csdfw_config *cfg);
/*
 * Apply "key=val,key=val" options (the part after "embedded:").  Keys:
 * capacity (bytes, K/M/G/T suffix), channels, page, block, threads,
 * simd (scalar|avx2|avx512|avx512bf16|auto), pacing (0|1), backing (path),
 * profile (instinfer|nvmevirt|fast), contexts, seqs, tokens, tags, xfer,
 * chan_mbps, link_mbps, read_ns, prog_ns, format (0|1), extent (pages),
 * extent_max (pages).
 * Returns 0 or -EINVAL and a message in @err (if non-NULL) naming the bad
 * key.
 *
 * extent=PAGES, extent_max=PAGES: a KV stream's token-indexed pages are
 * allocated in extents of consecutive flash pages that double from
 * `extent` up to `extent_max` as the stream grows (a bulk append skips the
 * sizes it would fill at once; extents of a block or more are whole
 * blocks), extent j of a stream on channel
 * (j + skew) % channels (firmware-sim/kv.c, Placement), so the attention
 * engine reads a stream in runs of up to extent_max pages; extent=1,
 * extent_max=1 stripes single pages over the channels.  extent must
 * divide block.  Defaults (0): extent CSDFW_EXTENT_DEFAULT (16 = 64 KiB at
 * 4 KiB pages, or the largest power of two below it that divides block),
 * extent_max CSDFW_EXTENT_MAX_BYTES (1 MiB) of pages; an extent_max below
 * extent means extents do not grow; it is rounded down to whole blocks,
 * or below a block to the largest extent * 2^j that divides the block.  Neither is part of the backing
 * file's format: a file may be reopened with other values.
 *
 * Backing file (Documentation/on-media-format.md): a missing or empty file
 * is formatted; a file with a valid superblock is opened and the contexts
 * and KV of its last committed metadata (FLUSH) are recovered; its
 * geometry (capacity in blocks, channels, page, block) must match the
 * configuration, else csdfw_create fails (-EMEDIUMTYPE, message on
 * stderr).  A file with a corrupt or truncated superblock or no valid
 * metadata fails (-EUCLEAN) unless format=1, which formats the file
 * unconditionally (everything in it is lost).
 */
int csdfw_config_parse(struct csdfw_config *cfg, const char *opts,
		       char *err, size_t errlen);
/* Fill cfg->timing from a named profile; -ENOENT if unknown. */
int csdfw_timing_profile(struct csdfw_timing *t, const char *name);

struct csdfw;

int csdfw_create(const struct csdfw_config *cfg, struct csdfw **fwp);
/* Waits for all work in flight, then frees everything. */
void csdfw_destroy(struct csdfw *fw);

/* A command's data buffer as a list of host segments (scatter/gather). */
struct csdfw_seg {
	void  *addr;
	size_t len;
};
struct csdfw_data {
	const struct csdfw_seg *seg;
	unsigned int nseg;
	size_t len;		/* sum of seg[].len */
};

/* Copy helpers; return 0, or -1 if [off, off+len) is outside @d. */
int csdfw_data_read(const struct csdfw_data *d, size_t off, void *dst,
		    size_t len);
int csdfw_data_write(const struct csdfw_data *d, size_t off, const void *src,
		     size_t len);
/* Pointer to [off, off+len) if it lies within one segment, else NULL. */
void *csdfw_data_ptr(const struct csdfw_data *d, size_t off, size_t len);

enum csdfw_queue {
	CSDFW_Q_ADMIN = 0,
	CSDFW_Q_IO = 1,
};

/*
 * Called exactly once per command.  @cqe->cid is the SQE's cid; the phase
 * bit is 0 (transports set their own).  The data buffer may be reused once
 * this has been called.
 */
typedef void (*csdfw_done_fn)(void *arg, const struct csd_cqe *cqe);

/*
 * Submit a command.  @data describes the buffer the transport resolved for
 * the command (NULL or len 0 when none); its length is checked against the
 * command's own length fields.  Thread-safe.
 */
void csdfw_submit(struct csdfw *fw, enum csdfw_queue q,
		  const struct csd_sqe *sqe, const struct csdfw_data *data,
		  csdfw_done_fn done, void *arg);

/* Synchronous convenience wrapper: submits and waits; fills @cqe. */
void csdfw_exec(struct csdfw *fw, enum csdfw_queue q,
		const struct csd_sqe *sqe, const struct csdfw_data *data,
		struct csd_cqe *cqe);

/* The configuration in effect (after defaults and clamping). */
const struct csdfw_config *csdfw_get_config(const struct csdfw *fw);

#endif /* CSDFW_H */
