/* SPDX-License-Identifier: MIT */
/*
 * core.h - internals of the firmware core (core.c, admin.c, config.c).
 *
 * Not a contract header: only the core's own files include it.
 *
 * Objects and locks (outermost first; a thread never takes an earlier lock
 * while holding a later one):
 *
 *   fw->lock            context table (slots, create/destroy bookkeeping)
 *   ctx->seq_lock[i]    stripe i of the context's sequences: serializes
 *                       appends, reads, resets and attention submits that
 *                       touch a sequence of the stripe (taken in ascending
 *                       stripe order when a command names several)
 *   fw->alloc_lock      rwlock: appends take it shared, a fused ATTN_SUBMIT
 *                       exclusive so its space check and appends are atomic
 *   ctx->lock           tags, per-sequence in-flight counts, references
 *   fw->pend_lock       outstanding work counter (csdfw_destroy waits on it)
 *   fw->tq_lock         pacing timer queue
 *
 * Attention jobs run on the attention engine's workers; their completion
 * callback only takes ctx->lock and fw->pend_lock (never blocks).
 */
#ifndef CSDFW_CORE_H
#define CSDFW_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "csdfw.h"
#include "attn.h"
#include "kv.h"
#include "model.h"

/* Fixed device limits (Identify vendor area). */
#define FW_MIN_HEAD_DIM		64
#define FW_MAX_HEAD_DIM		256
#define FW_HEAD_DIM_ALIGN	16
#define FW_MAX_LAYERS		256
#define FW_MAX_KV_HEADS		256
#define FW_MAX_Q_HEADS		1024
#define FW_MAX_GQA		64

#define FW_SEQ_STRIPES		64

/* Status helpers (NVMe status field, without phase and DNR). */
#define ST_OK			0
#define ST_GEN(x)		CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_##x)
#define ST_VS(x)		CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_##x)
#define ST_INVALID_FIELD	ST_GEN(INVALID_FIELD)
#define ST_INVALID_LOG_PAGE	CSD_STATUS(CSD_SCT_CMD_SPECIFIC, \
					   CSD_SC_INVALID_LOG_PAGE)
#define ST_NOT_SAVEABLE		CSD_STATUS(CSD_SCT_CMD_SPECIFIC, \
					   CSD_SC_FEATURE_NOT_SAVEABLE)
/* A handler's "not completed yet" (ATTN_READ parked on its job). */
#define FW_PARKED		0xffffu

struct fw_stats {
	_Atomic uint64_t flash_bytes_read;
	_Atomic uint64_t flash_bytes_written;
	_Atomic uint64_t host_bytes_in;
	_Atomic uint64_t host_bytes_out;
	_Atomic uint64_t attn_calls;
	_Atomic uint64_t attn_seqs;
	_Atomic uint64_t attn_tokens;
	_Atomic uint64_t commands;
	_Atomic uint64_t errors;
	_Atomic uint64_t modeled_ns;
	_Atomic uint64_t busy_ns;
	_Atomic uint64_t read_cmds;	/* read-direction commands (health) */
	_Atomic uint64_t write_cmds;	/* write-direction commands */
};

struct fw_cmd;
struct fw_ctx;

enum fw_tag_state {
	TAG_FREE = 0,
	TAG_RUNNING,		/* job queued/running, no read yet */
	TAG_DONE,		/* job finished, result waiting for a read */
	TAG_READING,		/* a read is parked on it or copying out */
};

struct fw_tag {
	struct fw_ctx *ctx;
	uint16_t idx;
	uint8_t state;		/* enum fw_tag_state, under ctx->lock */
	uint8_t flags;		/* CSD_ATTN_F_* of the submit */
	uint32_t layer;
	uint32_t nseq;
	uint64_t tokens;	/* sum of hi - lo */
	uint64_t cost_ns;	/* modeled job time incl. output transfer */
	uint64_t job_end_ns;	/* modeled completion (pacing), 0 = none */
	uint64_t t_start;	/* real time the job was queued */
	struct model_work w;	/* the job's flash reads and flops */
	struct attn_job job;
	void *mem;		/* one allocation: seqs, lo, hi, q, out, lse */
	struct fw_cmd *reader;	/* parked ATTN_READ */
};

struct fw_ctx {
	struct csdfw *fw;
	uint32_t id;
	struct kv_ctx *kv;
	struct csd_ctx_desc p;
	uint32_t tpp;
	size_t row_bytes;		/* kv_heads * head_dim * elsize */
	pthread_mutex_t seq_lock[FW_SEQ_STRIPES];
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* refs dropped */
	uint32_t refs;			/* table (1) + commands/jobs using it */
	bool dying;
	uint32_t tags_busy;		/* tags not FREE */
	uint32_t jobs;			/* jobs not finished */
	uint32_t *seq_busy;		/* [max_seqs] tags holding the seq */
	struct fw_tag *tags;		/* [max_tags] */
};

struct fw_cmd {
	struct csdfw *fw;
	enum csdfw_queue q;
	struct csd_sqe sqe;
	const struct csdfw_data *data;	/* the transport's, or dcopy */
	struct csdfw_data dcopy;	/* for parked commands */
	struct csdfw_seg *segs;
	csdfw_done_fn done;
	void *arg;
	struct csd_cqe cqe;
	uint64_t t_submit;		/* host clock at arrival */
	uint64_t deadline;		/* pacing: deliver at */
	uint64_t cost_ns;		/* modeled time (dw1 before saturation) */
	bool cost_set;			/* handler set cost_ns itself */
	bool paced_set;			/* handler set deadline itself */
	struct model_work w;
};

struct fw_tq {				/* min-heap of commands by deadline */
	struct fw_cmd **v;
	size_t n, cap;
};

struct csdfw {
	struct csdfw_config cfg;
	struct kv_store *kv;
	struct attn_engine *eng;
	struct model model;
	uint64_t t_create;

	pthread_mutex_t lock;
	struct fw_ctx **ctx;		/* [max_contexts], id - 1 */
	uint32_t nctx;			/* live (not dying) contexts */

	pthread_rwlock_t alloc_lock;

	_Atomic int pacing;
	struct fw_stats st;

	pthread_mutex_t pend_lock;
	pthread_cond_t pend_cond;
	uint64_t pending;		/* commands not delivered + jobs */

	pthread_mutex_t tq_lock;
	pthread_cond_t tq_cond;
	struct fw_tq tq;
	bool tq_stop;
	bool tq_started;
	pthread_t tq_thread;
};

/* ---- core.c services used by admin.c ---------------------------------- */

/* Snapshot of live contexts, ascending id; returns count (<= max). */
uint32_t fw_list_contexts(struct csdfw *fw, struct csd_log_ctx_entry *ents,
			  uint32_t max);
void fw_fill_stats(struct csdfw *fw, struct csd_log_stats *s);
bool fw_data_has(const struct fw_cmd *c);
size_t fw_data_len(const struct fw_cmd *c);

/* ---- admin.c handlers (decode table in core.c) ------------------------ */
uint16_t fw_adm_identify_check(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_identify(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_get_log_check(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_get_log(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_features_check(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_get_features(struct csdfw *fw, struct fw_cmd *c);
uint16_t fw_adm_set_features(struct csdfw *fw, struct fw_cmd *c);

/* ---- config.c --------------------------------------------------------- */
/* Check a configuration; 0 or -EINVAL with a message. */
int fw_config_check(const struct csdfw_config *cfg, char *err, size_t errlen);

#endif /* CSDFW_CORE_H */
