// SPDX-License-Identifier: MIT
/*
 * admin.c - admin commands of the emulated CSD: Identify, Get Log Page,
 * Get / Set Features.  Generic field checks (reserved bits, data length)
 * are done by core.c from the descriptor table; these are the opcode
 * specific checks and the work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static void pad(char *dst, size_t n, const char *src)
{
	size_t l = strlen(src);

	memset(dst, ' ', n);
	memcpy(dst, src, l < n ? l : n);
}

static uint32_t mbps(double bps)
{
	double v = bps / 1e6;

	return v >= 4294967295.0 ? UINT32_MAX : (uint32_t)(v + 0.5);
}

static uint8_t mdts_of(uint32_t max_xfer)
{
	uint32_t pages = max_xfer / 4096;
	uint8_t n = 0;

	while (pages > 1) {
		pages >>= 1;
		n++;
	}
	return n;
}

/* ---- Identify ------------------------------------------------------------ */

uint16_t fw_adm_identify_check(struct csdfw *fw, struct fw_cmd *c)
{
	uint32_t cns = c->sqe.cdw10 & 0xff;

	if (cns != CSD_ID_CNS_NS && cns != CSD_ID_CNS_CTRL)
		return ST_INVALID_FIELD;
	if (cns == CSD_ID_CNS_NS && c->sqe.nsid != CSD_NSID &&
	    c->sqe.nsid != 0xffffffffu)
		return ST_GEN(INVALID_NS);
	return ST_OK;
}

static void fill_id_ctrl(struct csdfw *fw, struct csd_id_ctrl *id)
{
	const struct csdfw_config *cfg = &fw->cfg;
	struct csd_id_vs *vs = &id->vs;

	memset(id, 0, sizeof(*id));
	id->vid = 0x1af4;
	id->ssvid = 0x1100;
	pad(id->sn, sizeof(id->sn), "CSDSIM0001");
	pad(id->mn, sizeof(id->mn), "CSD-SIM attention CSD (InstInfer-class)");
	pad(id->fr, sizeof(id->fr), CSDFW_VERSION);
	id->mdts = mdts_of(cfg->max_xfer);
	id->cntlid = 1;
	id->ver = 0x00020000;
	id->lpa = 0x04;			/* extended data for Get Log Page */
	id->sqes = 0x66;
	id->cqes = 0x44;
	id->maxcmd = 1024;
	id->nn = 1;

	vs->magic = CSD_ID_MAGIC;
	vs->spec_version = CSD_SPEC_VERSION;
	vs->dtypes = (1u << CSD_DTYPE_F32) | (1u << CSD_DTYPE_F16) |
		     (1u << CSD_DTYPE_BF16);
	vs->features = CSD_FEAT_FUSED_KV | CSD_FEAT_LSE | CSD_FEAT_PACING |
		       CSD_FEAT_SPARSE |
		       CSD_FEAT_WINDOW | (cfg->backing[0] ? CSD_FEAT_FILE_BACKED
							    : 0);
	vs->min_head_dim = FW_MIN_HEAD_DIM;
	vs->max_head_dim = FW_MAX_HEAD_DIM;
	vs->head_dim_align = FW_HEAD_DIM_ALIGN;
	vs->max_layers = FW_MAX_LAYERS;
	vs->max_kv_heads = FW_MAX_KV_HEADS;
	vs->max_q_heads = FW_MAX_Q_HEADS;
	vs->max_tags = (uint16_t)cfg->max_tags;
	vs->nchannels = (uint16_t)cfg->channels;
	vs->max_contexts = cfg->max_contexts;
	vs->max_seqs = cfg->max_seqs;
	vs->max_tokens = cfg->max_tokens;
	vs->max_attn_seqs = cfg->max_attn_seqs;
	vs->max_xfer = cfg->max_xfer;
	vs->page_size = cfg->page_size;
	vs->pages_per_block = cfg->pages_per_block;
	vs->threads = cfg->threads;
	vs->capacity = kv_store_blocks_total(fw->kv) * cfg->pages_per_block *
		       cfg->page_size;
	vs->chan_mbps = mbps(cfg->timing.chan_bytes_per_s);
	vs->link_mbps = mbps(cfg->timing.link_bytes_per_s);
	vs->read_lat_ns = cfg->timing.read_lat_ns;
	vs->prog_lat_ns = cfg->timing.prog_lat_ns;
	vs->cmd_overhead_ns = cfg->timing.cmd_overhead_ns;
	{
		double g = cfg->timing.compute_flops / 1e9;

		vs->compute_gflops = g >= 4294967295.0 ? UINT32_MAX :
				     (uint32_t)(g + 0.5);
	}
	snprintf(vs->fw_version, sizeof(vs->fw_version), "%s", CSDFW_VERSION);
	snprintf(vs->simd, sizeof(vs->simd), "%s", attn_simd_name(cfg->simd));
	snprintf(vs->profile, sizeof(vs->profile), "%s", cfg->timing.name);
}

static void fill_id_ns(struct csdfw *fw, struct csd_id_ns *ns)
{
	uint64_t cap = kv_store_blocks_total(fw->kv) *
		       fw->cfg.pages_per_block * fw->cfg.page_size;

	memset(ns, 0, sizeof(*ns));
	ns->nsze = cap / 4096;
	ns->ncap = cap / 4096;
	ns->nuse = kv_store_bytes_used(fw->kv) / 4096;
	ns->nsfeat = 0;
	ns->nlbaf = 0;			/* one format (0's based) */
	ns->flbas = 0;
	ns->lbaf[0] = 12u << 16;	/* LBADS = 12: 4 KiB */
}

uint16_t fw_adm_identify(struct csdfw *fw, struct fw_cmd *c)
{
	union {
		struct csd_id_ctrl ctrl;
		struct csd_id_ns ns;
	} *u = malloc(sizeof(*u));
	uint16_t st = ST_OK;

	if (!u)
		return ST_GEN(INTERNAL);
	if ((c->sqe.cdw10 & 0xff) == CSD_ID_CNS_CTRL)
		fill_id_ctrl(fw, &u->ctrl);
	else
		fill_id_ns(fw, &u->ns);
	if (csdfw_data_write(c->data, 0, u, CSD_ID_SIZE))
		st = ST_GEN(DATA_XFER_ERROR);
	free(u);
	c->w.link_out = CSD_ID_SIZE;
	return st;
}

/* ---- Get Log Page ---------------------------------------------------------- */

static uint64_t log_offset(const struct fw_cmd *c)
{
	return (uint64_t)c->sqe.cdw12 | (uint64_t)c->sqe.cdw13 << 32;
}

uint16_t fw_adm_get_log_check(struct csdfw *fw, struct fw_cmd *c)
{
	return log_offset(c) % 4 ? ST_INVALID_FIELD : ST_OK;
}

/* 128-bit little-endian counter from a 64-bit value (packed struct). */
#define u128(f, x) do { (f)[0] = (x); (f)[1] = 0; } while (0)

static void fill_health(struct csdfw *fw, struct csd_log_health *h)
{
	struct csd_log_stats s;
	uint64_t used, total, hours;

	fw_fill_stats(fw, &s);
	memset(h, 0, sizeof(*h));
	h->critical_warning = 0;
	h->temperature = 313;			/* 40 C */
	total = s.blocks_total ? s.blocks_total : 1;
	used = s.blocks_total - s.blocks_free;
	h->avail_spare = (uint8_t)(100 - used * 100 / total);
	h->spare_thresh = 10;
	h->percent_used = 0;			/* no wear modeled */
	if (h->avail_spare < h->spare_thresh)
		h->critical_warning |= 0x01;
	/* data units: thousands of 512-byte units, rounded up */
	u128(h->data_units_read, (s.host_bytes_out + 511999) / 512000);
	u128(h->data_units_written, (s.host_bytes_in + 511999) / 512000);
	u128(h->host_reads, atomic_load(&fw->st.read_cmds));
	u128(h->host_writes, atomic_load(&fw->st.write_cmds));
	u128(h->ctrl_busy_time, s.busy_ns / 60000000000ull);
	u128(h->power_cycles, 1);
	hours = (model_now_ns() - fw->t_create) / 3600000000000ull;
	u128(h->power_on_hours, hours);
	u128(h->unsafe_shutdowns, 0);
	u128(h->media_errors, 0);
	u128(h->num_err_log_entries, 0);
}

uint16_t fw_adm_get_log(struct csdfw *fw, struct fw_cmd *c)
{
	uint8_t lid = c->sqe.cdw10 & 0xff;
	uint64_t lpo = log_offset(c);
	size_t len = fw_data_len(c), size, n;
	uint8_t *buf = NULL;
	uint16_t st = ST_OK;

	switch (lid) {
	case CSD_LOG_HEALTH:
		size = sizeof(struct csd_log_health);
		buf = calloc(1, size);
		if (buf)
			fill_health(fw, (struct csd_log_health *)(void *)buf);
		break;
	case CSD_LOG_STATS:
		size = sizeof(struct csd_log_stats);
		buf = calloc(1, size);
		if (buf)
			fw_fill_stats(fw, (struct csd_log_stats *)(void *)buf);
		break;
	case CSD_LOG_CONTEXTS: {
		uint32_t max = fw->cfg.max_contexts, cnt;
		struct csd_log_ctx_hdr *hdr;

		size = sizeof(*hdr) +
		       (size_t)max * sizeof(struct csd_log_ctx_entry);
		buf = calloc(1, size);
		if (!buf)
			break;
		hdr = (struct csd_log_ctx_hdr *)(void *)buf;
		cnt = fw_list_contexts(fw, (struct csd_log_ctx_entry *)(void *)
				       (buf + sizeof(*hdr)), max);
		hdr->count = cnt;
		size = sizeof(*hdr) +
		       (size_t)cnt * sizeof(struct csd_log_ctx_entry);
		break;
	}
	default:
		return ST_INVALID_LOG_PAGE;
	}
	if (!buf)
		return ST_GEN(INTERNAL);
	if (lpo >= size) {
		free(buf);
		return ST_INVALID_FIELD;
	}
	n = size - lpo < len ? size - lpo : len;
	if (csdfw_data_write(c->data, 0, buf + lpo, n))
		st = ST_GEN(DATA_XFER_ERROR);
	/* past the end of the log: zeros */
	while (!st && n < len) {
		static const uint8_t zero[512];
		size_t k = len - n < sizeof(zero) ? len - n : sizeof(zero);

		if (csdfw_data_write(c->data, n, zero, k))
			st = ST_GEN(DATA_XFER_ERROR);
		n += k;
	}
	free(buf);
	c->w.link_out = len;
	return st;
}

/* ---- Features -------------------------------------------------------------- */

uint16_t fw_adm_features_check(struct csdfw *fw, struct fw_cmd *c)
{
	uint8_t fid = c->sqe.cdw10 & 0xff;

	if (fid != CSD_FEAT_ID_PACING && fid != CSD_FEAT_NUM_QUEUES)
		return ST_INVALID_FIELD;
	if (c->sqe.opcode == CSD_ADM_SET_FEATURES &&
	    fid == CSD_FEAT_ID_PACING && (c->sqe.cdw11 & ~1u))
		return ST_INVALID_FIELD;
	return ST_OK;
}

uint16_t fw_adm_get_features(struct csdfw *fw, struct fw_cmd *c)
{
	uint8_t fid = c->sqe.cdw10 & 0xff;
	uint32_t sel = (c->sqe.cdw10 >> 8) & 0x7;

	if (sel > 3)
		return ST_INVALID_FIELD;
	if (sel == 3) {			/* supported capabilities */
		c->cqe.dw0 = fid == CSD_FEAT_ID_PACING ? 0x4 : 0;  /* changeable */
		return ST_OK;
	}
	if (fid == CSD_FEAT_NUM_QUEUES)
		c->cqe.dw0 = 0;		/* one SQ and one CQ (0's based) */
	else if (sel == 0)
		c->cqe.dw0 = (uint32_t)atomic_load(&fw->pacing);
	else				/* default and saved */
		c->cqe.dw0 = fw->cfg.pacing ? 1 : 0;
	return ST_OK;
}

uint16_t fw_adm_set_features(struct csdfw *fw, struct fw_cmd *c)
{
	uint8_t fid = c->sqe.cdw10 & 0xff;

	if (c->sqe.cdw10 & (1u << 31))	/* SV */
		return ST_NOT_SAVEABLE;
	if (fid == CSD_FEAT_NUM_QUEUES) {
		c->cqe.dw0 = 0;
		return ST_OK;
	}
	atomic_store(&fw->pacing, (int)(c->sqe.cdw11 & 1));
	c->cqe.dw0 = c->sqe.cdw11 & 1;
	return ST_OK;
}
