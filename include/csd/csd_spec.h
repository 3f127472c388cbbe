/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * csd_spec.h - the CSD command set, wire format (spec version 0.2).
 *
 * This header is the machine-readable half of Documentation/command-set.md.
 * It is shared by the emulated drive (firmware-sim), libcsd and the kernel
 * driver, so it is plain C with no userspace-only dependencies.
 *
 * All multi-byte fields are little-endian on the wire.  Every structure that
 * crosses the host link has its size (and key offsets) checked at compile
 * time at the bottom of this file.
 */
#ifndef CSD_SPEC_H
#define CSD_SPEC_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/stddef.h>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#define CSD_SPEC_MAJOR		0
#define CSD_SPEC_MINOR		2
#define CSD_SPEC_VERSION	((CSD_SPEC_MAJOR << 16) | CSD_SPEC_MINOR)

/* ------------------------------------------------------------------------
 * Queue entries (identical to NVMe base specification 2.0 layouts)
 * ------------------------------------------------------------------------
 */

/* 64-byte submission queue entry. */
struct csd_sqe {
	uint8_t  opcode;
	uint8_t  flags;		/* FUSE/PSDT: must be 0 */
	uint16_t cid;		/* command identifier, echoed in the CQE */
	uint32_t nsid;
	uint32_t cdw2;
	uint32_t cdw3;
	uint64_t mptr;		/* metadata pointer: must be 0 */
	uint64_t prp1;		/* data pointer (transport defined) */
	uint64_t prp2;
	uint32_t cdw10;
	uint32_t cdw11;
	uint32_t cdw12;
	uint32_t cdw13;
	uint32_t cdw14;
	uint32_t cdw15;
};

/* 16-byte completion queue entry. */
struct csd_cqe {
	uint32_t dw0;		/* command specific result */
	uint32_t dw1;		/* modeled device time, ns (saturating) */
	uint16_t sq_head;
	uint16_t sq_id;
	uint16_t cid;
	uint16_t status;	/* bit 0 phase, then the NVMe status field */
};

/*
 * Status field, as in NVMe: the 16-bit CQE status word holds the phase tag in
 * bit 0; the 15-bit status field above it is SC[7:0] SCT[10:8] CRD[12:11]
 * M[13] DNR[14].  The helpers below work on the status field (word >> 1).
 */
#define CSD_STATUS(sct, sc)	((uint16_t)((((sct) & 0x7) << 8) | ((sc) & 0xff)))
#define CSD_STATUS_SC(s)	((s) & 0xff)
#define CSD_STATUS_SCT(s)	(((s) >> 8) & 0x7)
#define CSD_STATUS_DNR		(1u << 14)
#define CSD_STATUS_MORE		(1u << 13)
#define CSD_STATUS_CODE(s)	((s) & 0x7ff)	/* SCT+SC, without DNR/M/CRD */

/* Status code types */
#define CSD_SCT_GENERIC		0x0
#define CSD_SCT_CMD_SPECIFIC	0x1
#define CSD_SCT_MEDIA		0x2
#define CSD_SCT_VENDOR		0x7

/* Generic command status (SCT 0), subset used by this command set */
#define CSD_SC_SUCCESS		0x00
#define CSD_SC_INVALID_OPCODE	0x01
#define CSD_SC_INVALID_FIELD	0x02
#define CSD_SC_DATA_XFER_ERROR	0x04
#define CSD_SC_INTERNAL		0x06
#define CSD_SC_ABORT_REQ	0x07
#define CSD_SC_INVALID_NS	0x0b
#define CSD_SC_SGL_INVALID	0x0d	/* bad data pointer / segment */
#define CSD_SC_OP_DENIED	0x15	/* host side: access denied (EACCES) */

/* Command specific status (SCT 1) */
#define CSD_SC_INVALID_LOG_PAGE	0x09
#define CSD_SC_FEATURE_NOT_SAVEABLE 0x0d

/*
 * Vendor specific status (SCT 7): conditions of the CSD command set.
 * Every one of these is returned with DNR set.
 */
enum csd_vendor_sc {
	CSD_VSC_CTX_INVALID	= 0x01,	/* no such KV context */
	CSD_VSC_CTX_FULL	= 0x02,	/* append beyond the context's max_tokens */
	CSD_VSC_NO_SPACE	= 0x03,	/* device flash capacity exhausted */
	CSD_VSC_LENGTH		= 0x04,	/* data length does not match the shape */
	CSD_VSC_TOKEN_ORDER	= 0x05,	/* append start != current length */
	CSD_VSC_SEQ_RANGE	= 0x06,	/* sequence slot >= max_seqs */
	CSD_VSC_LAYER_RANGE	= 0x07,	/* layer >= layers */
	CSD_VSC_TAG_BUSY	= 0x08,	/* attention tag already in flight */
	CSD_VSC_TAG_INVALID	= 0x09,	/* no attention submitted under tag */
	CSD_VSC_CTX_LIMIT	= 0x0a,	/* too many contexts */
	CSD_VSC_UNSUPPORTED	= 0x0b,	/* shape/dtype/option not supported */
	CSD_VSC_BUSY		= 0x0c,	/* sequence has attention in flight */
	CSD_VSC_TOKEN_RANGE	= 0x0d,	/* read beyond the stored tokens */
	CSD_VSC_EMPTY_SEQ	= 0x0e,	/* attention over a sequence with no KV */
};

/* ------------------------------------------------------------------------
 * Opcodes.  As in NVMe, opcode bits [1:0] give the data direction:
 * 00 none, 01 host to device (write), 10 device to host (read).
 * Bidirectional (11) is never used.
 * ------------------------------------------------------------------------
 */
#define CSD_XFER_NONE		0x0
#define CSD_XFER_TO_DEV		0x1
#define CSD_XFER_FROM_DEV	0x2
#define CSD_OPC_XFER(opc)	((opc) & 0x3)

/* Admin command set (standard NVMe opcodes) */
enum csd_admin_opcode {
	CSD_ADM_GET_LOG_PAGE	= 0x02,
	CSD_ADM_IDENTIFY	= 0x06,
	CSD_ADM_SET_FEATURES	= 0x09,
	CSD_ADM_GET_FEATURES	= 0x0a,
};

/* I/O command set: standard Flush plus vendor opcodes (>= 0x80) */
enum csd_io_opcode {
	CSD_IO_FLUSH		= 0x00,
	CSD_IO_CTX_CREATE	= 0x81,	/* W: struct csd_ctx_desc */
	CSD_IO_CTX_DESTROY	= 0x84,	/* -  */
	CSD_IO_KV_APPEND	= 0x85,	/* W: K rows then V rows */
	CSD_IO_KV_READ		= 0x86,	/* R: K rows then V rows */
	CSD_IO_SEQ_RESET	= 0x88,	/* -  */
	CSD_IO_ATTN_SUBMIT	= 0x89,	/* W: seq ids, q, optional k/v */
	CSD_IO_CTX_QUERY	= 0x8a,	/* R: struct csd_ctx_info + seq lens */
	CSD_IO_ATTN_READ	= 0x8e,	/* R: out, optional lse */
};

/* The single namespace holding KV contexts. I/O commands use NSID 1. */
#define CSD_NSID		1

/*
 * Does I/O opcode @opc name a KV context in CDW12?  Every vendor I/O command
 * but CTX_CREATE does; transports that enforce context ownership (csd-fw,
 * csd.ko) check it before a command reaches the drive.
 */
static inline int csd_io_names_ctx(uint8_t opc)
{
	switch (opc) {
	case CSD_IO_CTX_DESTROY:
	case CSD_IO_KV_APPEND:
	case CSD_IO_KV_READ:
	case CSD_IO_SEQ_RESET:
	case CSD_IO_ATTN_SUBMIT:
	case CSD_IO_CTX_QUERY:
	case CSD_IO_ATTN_READ:
		return 1;
	default:
		return 0;
	}
}

/* Is @opc an I/O opcode of this command set? */
static inline int csd_io_known(uint8_t opc)
{
	return opc == CSD_IO_FLUSH || opc == CSD_IO_CTX_CREATE ||
	       csd_io_names_ctx(opc);
}

/*
 * Common dword usage of the vendor I/O commands (details per command in
 * Documentation/command-set.md):
 *   CDW10  NDT: number of dwords of data transferred (0 when no data)
 *   CDW11  NDM: number of dwords of metadata: must be 0
 *   CDW12  context id (every command that names a context)
 *
 * KV_APPEND / KV_READ:
 *   CDW13  [15:0] sequence slot, [31:16] layer
 *   CDW14  first token
 *   CDW15  number of tokens (>= 1)
 *   data   K[ntok][kv_heads][head_dim] then V[ntok][kv_heads][head_dim],
 *          elements in the context dtype
 * SEQ_RESET:   CDW13 [15:0] sequence slot
 * ATTN_SUBMIT:
 *   CDW2   window: attend to the last `window` tokens only (0 = all);
 *          must be 0 with CSD_ATTN_F_SPARSE
 *   CDW3   SparF parameters with CSD_ATTN_F_SPARSE (v0.2), else 0:
 *          [7:0] r - 1 (dims of q used for the approximate scores,
 *          r <= head_dim; shared by the q heads of a GQA group),
 *          [31:8] k (tokens kept per (sequence, KV head), >= 1; with
 *          CSD_ATTN_F_SPARSE_FRAC a fraction of each sequence's tokens in
 *          units of 2^-24: k_i = max(1, ceil(n_i * k / 2^24)))
 *   CDW13  [15:0] tag, [31:16] layer
 *   CDW14  [15:0] number of sequences, [31:16] flags (CSD_ATTN_F_*)
 *   CDW15  softmax scale, IEEE-754 binary32 bits (0 = 1/sqrt(head_dim))
 *   data   uint32 seq[nseq], float q[nseq][q_heads][head_dim], and with
 *          CSD_ATTN_F_FUSED_KV: k[nseq][kv_heads][hd] then v[...] (dtype)
 * ATTN_READ:
 *   CDW13  [15:0] tag
 *   data   float out[nseq][q_heads][head_dim], then with CSD_ATTN_F_LSE
 *          float lse[nseq][q_heads] (natural log of the softmax denominator
 *          including the running max, i.e. log(sum(exp(s_i))))
 *   CQE dw0 = total tokens attended (saturating)
 */
#define CSD_CDW13_SEQ(c)	((c) & 0xffff)
#define CSD_CDW13_LAYER(c)	((c) >> 16)
#define CSD_CDW13_TAG(c)	((c) & 0xffff)
#define CSD_CDW14_NSEQ(c)	((c) & 0xffff)
#define CSD_CDW14_FLAGS(c)	((c) >> 16)

enum csd_attn_flags {
	CSD_ATTN_F_FUSED_KV	= 1u << 0,	/* append the new token's k/v first */
	CSD_ATTN_F_LSE		= 1u << 1,	/* return per-head log-sum-exp */
	CSD_ATTN_F_SPARSE	= 1u << 2,	/* v0.2: SparF, parameters in CDW3 */
	CSD_ATTN_F_SPARSE_FRAC	= 1u << 3,	/* v0.2: CDW3 k is a fraction */
};
#define CSD_ATTN_F_ALL		(CSD_ATTN_F_FUSED_KV | CSD_ATTN_F_LSE | \
				 CSD_ATTN_F_SPARSE | CSD_ATTN_F_SPARSE_FRAC)

/* ATTN_SUBMIT CDW3 with CSD_ATTN_F_SPARSE (v0.2) */
#define CSD_SPARSE_MAX_R	256
#define CSD_SPARSE_MAX_K	0xffffffu
#define CSD_SPARSE_FRAC_ONE	(1u << 24)	/* FRAC unit: k / 2^24 */
#define CSD_CDW3_SPARSE_R(c)	(((c) & 0xffu) + 1)
#define CSD_CDW3_SPARSE_K(c)	((c) >> 8)
#define CSD_CDW3_SPARSE(r, k)	((((uint32_t)(r) - 1) & 0xffu) | \
				 ((uint32_t)(k) << 8))

/* ------------------------------------------------------------------------
 * KV contexts
 * ------------------------------------------------------------------------
 */
enum csd_dtype {
	CSD_DTYPE_F32	= 0,
	CSD_DTYPE_F16	= 1,
	CSD_DTYPE_BF16	= 2,
	CSD_DTYPE_COUNT
};

static inline unsigned int csd_dtype_size(unsigned int dtype)
{
	return dtype == CSD_DTYPE_F32 ? 4 : 2;
}

/* CTX_CREATE data (64 bytes).  CQE dw0 returns the context id (>= 1). */
struct csd_ctx_desc {
	uint16_t layers;	/* 1 .. id.max_layers */
	uint16_t kv_heads;	/* 1 .. id.max_kv_heads */
	uint16_t q_heads;	/* multiple of kv_heads, <= id.max_q_heads */
	uint16_t head_dim;	/* id.min_head_dim .. id.max_head_dim, %16 */
	uint8_t  dtype;		/* enum csd_dtype */
	uint8_t  rsvd0[3];
	uint32_t max_seqs;	/* sequence slots, 1 .. id.max_seqs */
	uint32_t max_tokens;	/* per sequence, 1 .. id.max_tokens */
	uint32_t flags;		/* must be 0 (none defined in v0.2) */
	uint8_t  rsvd1[40];
};

/* CTX_QUERY data header (64 bytes), followed by one struct csd_seq_info
 * per sequence slot, as many as fit in the transfer.
 */
struct csd_ctx_info {
	struct {
		uint16_t layers, kv_heads, q_heads, head_dim;
		uint8_t  dtype;
		uint8_t  rsvd0[3];
		uint32_t max_seqs;
		uint32_t max_tokens;
	} p;
	uint32_t ctx_id;
	uint32_t seqs_used;	/* slots holding at least one token */
	uint32_t inflight;	/* attention tags not yet released (read) */
	uint64_t bytes_used;	/* flash bytes allocated (whole pages) */
	uint64_t tokens;	/* sum over (seq, layer) of stored tokens */
	uint32_t tokens_per_page;
	uint8_t  rsvd1[12];
};

struct csd_seq_info {
	uint32_t min_len;	/* min over layers of stored tokens */
	uint32_t max_len;	/* max over layers */
};

/* ------------------------------------------------------------------------
 * Identify
 * ------------------------------------------------------------------------
 */
#define CSD_ID_CNS_NS		0x00
#define CSD_ID_CNS_CTRL		0x01
#define CSD_ID_SIZE		4096

#define CSD_ID_MAGIC		0x31445343u	/* "CSD1" little-endian */

enum csd_feature_bits {
	CSD_FEAT_FUSED_KV	= 1u << 0,
	CSD_FEAT_LSE		= 1u << 1,
	CSD_FEAT_PACING		= 1u << 2,
	CSD_FEAT_WINDOW		= 1u << 3,
	CSD_FEAT_FILE_BACKED	= 1u << 4,
	CSD_FEAT_SPARSE		= 1u << 5,	/* v0.2: SparF (CSD_ATTN_F_SPARSE) */
};

/* Vendor specific area of Identify Controller, bytes 3072..4095. */
struct csd_id_vs {
	uint32_t magic;			/* CSD_ID_MAGIC */
	uint32_t spec_version;		/* CSD_SPEC_VERSION of the device */
	uint32_t dtypes;		/* bit (1 << enum csd_dtype) */
	uint32_t features;		/* enum csd_feature_bits */
	uint16_t min_head_dim;
	uint16_t max_head_dim;
	uint16_t head_dim_align;	/* head_dim must be a multiple */
	uint16_t max_layers;
	uint16_t max_kv_heads;
	uint16_t max_q_heads;
	uint16_t max_tags;		/* attention tags per context */
	uint16_t nchannels;
	uint32_t max_contexts;
	uint32_t max_seqs;		/* per context */
	uint32_t max_tokens;		/* per sequence */
	uint32_t max_attn_seqs;		/* sequences per ATTN_SUBMIT */
	uint32_t max_xfer;		/* bytes per command */
	uint32_t page_size;		/* flash page, bytes */
	uint32_t pages_per_block;
	uint32_t threads;		/* attention worker threads */
	uint64_t capacity;		/* KV flash bytes */
	/* timing profile */
	uint32_t chan_mbps;		/* per flash channel, MB/s */
	uint32_t link_mbps;		/* host link, MB/s */
	uint32_t read_lat_ns;		/* flash page read */
	uint32_t prog_lat_ns;		/* flash page program */
	uint32_t cmd_overhead_ns;	/* fixed cost per command */
	uint32_t compute_gflops;	/* attention engine throughput */
	char     fw_version[16];	/* NUL padded */
	char     simd[16];		/* attention kernel in use */
	char     profile[16];		/* timing profile name */
	uint8_t  rsvd[880];
};

/* Identify Controller (CNS 01h), the fields this device fills. */
struct csd_id_ctrl {
	uint16_t vid;
	uint16_t ssvid;
	char     sn[20];
	char     mn[40];
	char     fr[8];
	uint8_t  rab;
	uint8_t  ieee[3];
	uint8_t  cmic;
	uint8_t  mdts;		/* floor(log2(max_xfer / 4 KiB)) */
	uint16_t cntlid;
	uint32_t ver;
	uint8_t  rsvd84[172];
	uint16_t oacs;		/* offset 256 */
	uint8_t  acl;
	uint8_t  aerl;
	uint8_t  frmw;
	uint8_t  lpa;
	uint8_t  elpe;
	uint8_t  npss;
	uint8_t  rsvd264[248];
	uint8_t  sqes;		/* offset 512 */
	uint8_t  cqes;
	uint16_t maxcmd;
	uint32_t nn;
	uint16_t oncs;
	uint8_t  rsvd522[2550];
	struct csd_id_vs vs;	/* offset 3072 */
};

/* Identify Namespace (CNS 00h), the fields this device fills. */
struct csd_id_ns {
	uint64_t nsze;		/* capacity in 4 KiB blocks */
	uint64_t ncap;
	uint64_t nuse;		/* blocks allocated to KV pages */
	uint8_t  nsfeat;
	uint8_t  nlbaf;
	uint8_t  flbas;
	uint8_t  rsvd27[101];
	uint32_t lbaf[64];	/* offset 128: lbaf[0] = LBADS 12 */
	uint8_t  rsvd384[3712];
};

/* ------------------------------------------------------------------------
 * Get Log Page: CDW10 [7:0] LID, [31:16] NUMDL; CDW11 [15:0] NUMDU;
 * CDW12/13 log page offset (bytes, dword aligned).
 * ------------------------------------------------------------------------
 */
#define CSD_LOG_HEALTH		0x02	/* NVMe SMART / Health, 512 bytes */
#define CSD_LOG_STATS		0xc0	/* struct csd_log_stats */
#define CSD_LOG_CONTEXTS	0xc1	/* struct csd_log_ctx_hdr + entries */

struct csd_log_health {
	uint8_t  critical_warning;
	uint16_t temperature;		/* Kelvin */
	uint8_t  avail_spare;
	uint8_t  spare_thresh;
	uint8_t  percent_used;
	uint8_t  rsvd6[26];
	uint64_t data_units_read[2];	/* 1000 x 512 bytes, 128-bit */
	uint64_t data_units_written[2];
	uint64_t host_reads[2];
	uint64_t host_writes[2];
	uint64_t ctrl_busy_time[2];	/* minutes */
	uint64_t power_cycles[2];
	uint64_t power_on_hours[2];
	uint64_t unsafe_shutdowns[2];
	uint64_t media_errors[2];
	uint64_t num_err_log_entries[2];
	uint8_t  rsvd192[320];
} __attribute__((packed));

struct csd_log_stats {
	uint64_t kv_bytes_stored;	/* payload bytes of K and V held */
	uint64_t flash_bytes_used;	/* whole pages allocated */
	uint64_t flash_bytes_read;	/* read internally by attention/read-back */
	uint64_t flash_bytes_written;	/* programmed */
	uint64_t host_bytes_in;		/* crossed the host link to the device */
	uint64_t host_bytes_out;
	uint64_t attn_calls;		/* ATTN_SUBMIT commands completed */
	uint64_t attn_seqs;		/* sequences attended */
	uint64_t attn_tokens;		/* (seq, kv token) pairs attended */
	uint64_t commands;		/* all commands completed */
	uint64_t errors;		/* commands completed with an error */
	uint64_t modeled_ns;		/* sum of modeled device time */
	uint64_t busy_ns;		/* real time spent executing */
	uint64_t contexts;		/* live contexts */
	uint64_t blocks_free;
	uint64_t blocks_total;
	uint64_t rsvd[16];
};

struct csd_log_ctx_hdr {
	uint32_t count;			/* live contexts */
	uint32_t rsvd[15];
};

struct csd_log_ctx_entry {
	uint32_t ctx_id;
	uint16_t layers, kv_heads, q_heads, head_dim;
	uint8_t  dtype;
	uint8_t  rsvd0[3];
	uint32_t max_seqs;
	uint32_t max_tokens;
	uint32_t seqs_used;
	uint32_t rsvd2;
	uint64_t bytes_used;
	uint64_t tokens;
	uint8_t  rsvd1[16];
};

/* ------------------------------------------------------------------------
 * Features: CDW10 [7:0] FID; Set Features value in CDW11.
 * ------------------------------------------------------------------------
 */
#define CSD_FEAT_NUM_QUEUES	0x07
#define CSD_FEAT_ID_PACING	0xc0	/* CDW11 bit 0: complete at modeled time */

/* ------------------------------------------------------------------------
 * Compile-time checks of every wire structure.
 * ------------------------------------------------------------------------
 */
_Static_assert(sizeof(struct csd_sqe) == 64, "sqe size");
_Static_assert(offsetof(struct csd_sqe, prp1) == 24, "sqe prp1");
_Static_assert(offsetof(struct csd_sqe, cdw10) == 40, "sqe cdw10");
_Static_assert(offsetof(struct csd_sqe, cdw15) == 60, "sqe cdw15");
_Static_assert(sizeof(struct csd_cqe) == 16, "cqe size");
_Static_assert(offsetof(struct csd_cqe, status) == 14, "cqe status");
_Static_assert(sizeof(struct csd_ctx_desc) == 64, "ctx desc size");
_Static_assert(sizeof(struct csd_ctx_info) == 64, "ctx info size");
_Static_assert(sizeof(struct csd_seq_info) == 8, "seq info size");
_Static_assert(sizeof(struct csd_id_vs) == 1024, "id vs size");
_Static_assert(sizeof(struct csd_id_ctrl) == CSD_ID_SIZE, "id ctrl size");
_Static_assert(offsetof(struct csd_id_ctrl, mn) == 24, "id ctrl mn");
_Static_assert(offsetof(struct csd_id_ctrl, ver) == 80, "id ctrl ver");
_Static_assert(offsetof(struct csd_id_ctrl, oacs) == 256, "id ctrl oacs");
_Static_assert(offsetof(struct csd_id_ctrl, sqes) == 512, "id ctrl sqes");
_Static_assert(offsetof(struct csd_id_ctrl, nn) == 516, "id ctrl nn");
_Static_assert(offsetof(struct csd_id_ctrl, vs) == 3072, "id ctrl vs");
_Static_assert(sizeof(struct csd_id_ns) == CSD_ID_SIZE, "id ns size");
_Static_assert(offsetof(struct csd_id_ns, lbaf) == 128, "id ns lbaf");
_Static_assert(sizeof(struct csd_log_health) == 512, "health log size");
_Static_assert(offsetof(struct csd_log_health, data_units_read) == 32,
	       "health log dur");
_Static_assert(sizeof(struct csd_log_stats) == 256, "stats log size");
_Static_assert(sizeof(struct csd_log_ctx_hdr) == 64, "ctx log hdr size");
_Static_assert(sizeof(struct csd_log_ctx_entry) == 64, "ctx log entry size");
_Static_assert(CSD_CDW3_SPARSE_R(CSD_CDW3_SPARSE(CSD_SPARSE_MAX_R, 1)) ==
	       CSD_SPARSE_MAX_R, "sparse r field");
_Static_assert(CSD_CDW3_SPARSE_K(CSD_CDW3_SPARSE(1, CSD_SPARSE_MAX_K)) ==
	       CSD_SPARSE_MAX_K, "sparse k field");
_Static_assert(CSD_SPEC_VERSION == 0x00000002, "spec version 0.2");

#endif /* CSD_SPEC_H */
