// SPDX-License-Identifier: MIT
/*
 * conformance.c - the CSD command-set conformance suite.
 *
 * Runs against the drive named by CSD_DEVICE (default "embedded:") using
 * only the public API: csd.h, and csd_dev_passthru() with raw command
 * fields from csd/csd_spec.h.  It does not assume a fresh drive: every test
 * creates its own contexts, destroys them, and tolerates contexts of
 * others.  Each test is independent.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csd/csd_spec.h"
#include "csd.h"

#include "cu_main.h"

static struct csd_dev *dev;
static struct csd_dev_info info;

#define ST(sct, sc)	CSD_STATUS(sct, sc)
#define S_OK		0
#define S_OPCODE	ST(CSD_SCT_GENERIC, CSD_SC_INVALID_OPCODE)
#define S_FIELD		ST(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD)
#define S_NS		ST(CSD_SCT_GENERIC, CSD_SC_INVALID_NS)
#define S_LOG		ST(CSD_SCT_CMD_SPECIFIC, CSD_SC_INVALID_LOG_PAGE)
#define S_VS(x)		ST(CSD_SCT_VENDOR, CSD_VSC_##x)
/* NVMe generic 15h Operation Denied: the kernel transport's status for a
 * command the driver refused with -EACCES (libcsd/transport_kernel.c) */
#define S_DENIED	ST(CSD_SCT_GENERIC, CSD_SC_OP_DENIED)

static int suite_init(void)
{
	int rc = csd_dev_open(NULL, &dev);

	if (rc) {
		fprintf(stderr, "conformance: cannot open CSD_DEVICE=%s: %s\n",
			getenv("CSD_DEVICE") ? getenv("CSD_DEVICE") :
					       "(embedded:)", strerror(-rc));
		return -1;
	}
	return csd_dev_get_info(dev, &info) ? -1 : 0;
}

static int suite_fini(void)
{
	csd_dev_close(dev);
	dev = NULL;
	return 0;
}

/* ---- raw command helpers --------------------------------------------- */

/*
 * On the kernel transport (/dev/csdN, Linux NVMe passthrough ABI) the driver
 * refuses some commands before the device sees them, and libcsd reports its
 * errno as the nearest status: a bidirectional opcode (transfer bits 11b,
 * which the ABI's single buffer cannot describe) -EINVAL -> INVALID_FIELD;
 * without CAP_SYS_ADMIN, an opcode outside the unprivileged set -EACCES ->
 * S_DENIED.  Is @rc an acceptable refusal of invalid opcode @opc?
 */
static int on_kernel(void)
{
	return !strcmp(info.transport, "kernel");
}

static int opcode_refused(uint8_t opc, int rc)
{
	if (rc == S_OPCODE)
		return 1;
	if (!on_kernel())
		return 0;
	if (CSD_OPC_XFER(opc) == (CSD_XFER_TO_DEV | CSD_XFER_FROM_DEV) &&
	    rc == S_FIELD)
		return 1;
	return geteuid() != 0 && rc == S_DENIED;
}

/* Send one command; returns its status code (SCT+SC) or a negative errno.
 * Every error status must carry DNR. */
static int raw(int admin, struct csd_passthru *pt)
{
	int rc = csd_dev_passthru(dev, admin, pt);

	if (rc)
		return rc;
	if (pt->status)
		CU_ASSERT(pt->status & CSD_STATUS_DNR);
	return CSD_STATUS_CODE(pt->status);
}

static int io(uint8_t opc, uint32_t ctx, uint32_t cdw13, uint32_t cdw14,
	      uint32_t cdw15, void *buf, uint32_t len, uint64_t *result)
{
	struct csd_passthru pt = {
		.opcode = opc, .nsid = CSD_NSID, .cdw10 = len / 4,
		.cdw12 = ctx, .cdw13 = cdw13, .cdw14 = cdw14, .cdw15 = cdw15,
		.addr = buf, .data_len = len,
	};
	int rc = raw(0, &pt);

	if (result)
		*result = pt.result;
	return rc;
}

static int get_log(uint8_t lid, uint64_t lpo, void *buf, uint32_t len)
{
	uint32_t numd = len / 4 - 1;
	struct csd_passthru pt = {
		.opcode = CSD_ADM_GET_LOG_PAGE, .nsid = 0xffffffffu,
		.cdw10 = lid | (numd & 0xffff) << 16, .cdw11 = numd >> 16,
		.cdw12 = (uint32_t)lpo, .cdw13 = (uint32_t)(lpo >> 32),
		.addr = buf, .data_len = len,
	};

	return raw(1, &pt);
}

static uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_float(uint64_t *s)
{
	return (float)((rng_next(s) >> 40) * (2.0 / (1ull << 24)) - 1.0);
}

static size_t dsz(enum csd_kv_dtype d)
{
	return d == CSD_KV_F32 ? 4 : 2;
}

/* Random values exactly representable in every dtype (8-bit mantissa). */
static void fill_kv(void *buf, size_t n, enum csd_kv_dtype d, uint64_t *s)
{
	size_t i;

	for (i = 0; i < n; i++) {
		float f = (float)((int)(rng_next(s) % 255) - 127) / 128.0f;
		uint32_t u;

		memcpy(&u, &f, 4);
		if (d == CSD_KV_F32) {
			((float *)buf)[i] = f;
		} else if (d == CSD_KV_BF16) {
			((uint16_t *)buf)[i] = (uint16_t)(u >> 16);
		} else {	/* |f| < 1, multiple of 1/128: exact in fp16 */
			uint16_t h = 0;

			if (f != 0) {
				int e = (int)((u >> 23) & 0xff) - 127 + 15;

				h = (uint16_t)((u >> 16 & 0x8000) |
					       (uint32_t)e << 10 |
					       ((u >> 13) & 0x3ff));
			}
			((uint16_t *)buf)[i] = h;
		}
	}
}

static double kv_val(const void *buf, size_t i, enum csd_kv_dtype d)
{
	uint32_t u;
	float f;

	if (d == CSD_KV_F32)
		return ((const float *)buf)[i];
	if (d == CSD_KV_BF16) {
		u = (uint32_t)((const uint16_t *)buf)[i] << 16;
	} else {
		uint16_t h = ((const uint16_t *)buf)[i];

		if (!(h & 0x7fff))
			u = (uint32_t)(h & 0x8000) << 16;
		else
			u = (uint32_t)(h & 0x8000) << 16 |
			    (uint32_t)(((h >> 10) & 0x1f) + 112) << 23 |
			    (uint32_t)(h & 0x3ff) << 13;
	}
	memcpy(&f, &u, 4);
	return f;
}

static struct csd_ctx *mk_ctx(uint32_t layers, uint32_t kvh, uint32_t qh,
			      uint32_t hd, enum csd_kv_dtype d, uint32_t seqs,
			      uint32_t toks)
{
	struct csd_ctx_params p = {
		.layers = layers, .kv_heads = kvh, .q_heads = qh,
		.head_dim = hd, .dtype = d, .max_seqs = seqs,
		.max_tokens = toks,
	};
	struct csd_ctx *ctx = NULL;
	int rc = csd_ctx_create(dev, &p, &ctx);

	CU_ASSERT_EQUAL(rc, 0);
	if (rc)
		fprintf(stderr, "  ctx create: %s\n", strerror(-rc));
	return ctx;
}

static uint32_t seq_len(struct csd_ctx *ctx, uint32_t seq)
{
	uint32_t lens[64] = { 0 };

	CU_ASSERT(csd_ctx_query(ctx, NULL, lens, seq + 1) >= 0);
	return lens[seq];
}

/* ---- admin ----------------------------------------------------------- */

static void test_identify_ctrl(void)
{
	struct csd_id_ctrl *id = calloc(1, sizeof(*id));
	struct csd_passthru pt = {
		.opcode = CSD_ADM_IDENTIFY, .cdw10 = CSD_ID_CNS_CTRL,
		.addr = id, .data_len = CSD_ID_SIZE,
	};
	const struct csd_id_vs *vs;

	CU_ASSERT_FATAL(id != NULL);
	CU_ASSERT_EQUAL_FATAL(raw(1, &pt), S_OK);
	vs = &id->vs;
	CU_ASSERT_EQUAL(id->vid, 0x1af4);
	CU_ASSERT_EQUAL(id->ssvid, 0x1100);
	CU_ASSERT(memcmp(id->mn, "CSD-SIM", 7) == 0);
	CU_ASSERT_EQUAL(id->mn[39], ' ');
	CU_ASSERT(memcmp(id->sn, "CSDSIM0001          ", 20) == 0);
	CU_ASSERT(memcmp(id->fr, "0.1.0", 5) == 0);
	CU_ASSERT_EQUAL(id->ver, 0x00020000);
	CU_ASSERT_EQUAL(id->nn, 1);
	CU_ASSERT_EQUAL(id->sqes, 0x66);
	CU_ASSERT_EQUAL(id->cqes, 0x44);
	CU_ASSERT_EQUAL(vs->magic, CSD_ID_MAGIC);
	CU_ASSERT_EQUAL(vs->spec_version, CSD_SPEC_VERSION);
	CU_ASSERT_EQUAL(vs->dtypes & 7u, 7u);
	CU_ASSERT(vs->min_head_dim >= 16 && vs->min_head_dim <= 64);
	CU_ASSERT(vs->max_head_dim >= 128);
	CU_ASSERT_EQUAL(vs->head_dim_align, 16);
	CU_ASSERT(vs->max_layers >= 40 && vs->max_kv_heads >= 8 &&
		  vs->max_q_heads >= 32);
	CU_ASSERT(vs->max_tags >= 1 && vs->nchannels >= 1);
	CU_ASSERT(vs->max_contexts >= 1 && vs->max_seqs >= 1 &&
		  vs->max_tokens >= 1024 && vs->max_attn_seqs >= 1);
	CU_ASSERT(vs->max_xfer >= 65536 && vs->max_xfer % 4 == 0);
	CU_ASSERT(vs->page_size >= 4096 &&
		  (vs->page_size & (vs->page_size - 1)) == 0);
	CU_ASSERT(vs->pages_per_block >= 1 && vs->threads >= 1);
	CU_ASSERT(vs->capacity > 0);
	/* csd_dev_get_info reports the same */
	CU_ASSERT_EQUAL(info.max_xfer, vs->max_xfer);
	CU_ASSERT_EQUAL(info.max_tags, vs->max_tags);
	CU_ASSERT_EQUAL(info.spec_version, vs->spec_version);
	CU_ASSERT_EQUAL(info.capacity, vs->capacity);
	free(id);
}

static void test_identify_ns_and_errors(void)
{
	uint8_t *buf = calloc(1, CSD_ID_SIZE + 4);
	struct csd_id_ns *ns = (struct csd_id_ns *)buf;
	struct csd_passthru pt = {
		.opcode = CSD_ADM_IDENTIFY, .nsid = CSD_NSID,
		.cdw10 = CSD_ID_CNS_NS, .addr = buf, .data_len = CSD_ID_SIZE,
	};

	CU_ASSERT_FATAL(buf != NULL);
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	CU_ASSERT(ns->nsze > 0);
	CU_ASSERT(ns->ncap <= ns->nsze);
	CU_ASSERT(ns->nuse <= ns->ncap);
	CU_ASSERT_EQUAL((ns->lbaf[0] >> 16) & 0xff, 12);
	pt.nsid = 0xffffffffu;
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	pt.nsid = 2;
	CU_ASSERT_EQUAL(raw(1, &pt), S_NS);
	pt.nsid = 0;
	pt.cdw10 = 0x05;		/* unsupported CNS */
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	pt.cdw10 = CSD_ID_CNS_CTRL;
	pt.data_len = CSD_ID_SIZE - 4;	/* wrong size */
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	pt.data_len = CSD_ID_SIZE + 4;
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	pt.data_len = CSD_ID_SIZE;
	pt.cdw10 = CSD_ID_CNS_CTRL | 1u << 16;	/* reserved CNTID bits */
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	free(buf);
}

static void test_invalid_opcodes(void)
{
	static const uint8_t adm[] = { 0x00, 0x01, 0x05, 0x7f, 0x81, 0xc0 };
	static const uint8_t ios[] = { 0x01, 0x02, 0x80, 0x82, 0x87, 0x8b,
				       0x8f, 0xff };
	struct csd_passthru pt;
	size_t i;

	for (i = 0; i < sizeof(adm); i++) {
		pt = (struct csd_passthru){ .opcode = adm[i] };
		CU_ASSERT(opcode_refused(adm[i], raw(1, &pt)));
	}
	for (i = 0; i < sizeof(ios); i++) {
		pt = (struct csd_passthru){ .opcode = ios[i],
					    .nsid = CSD_NSID };
		CU_ASSERT(opcode_refused(ios[i], raw(0, &pt)));
	}
	/* an I/O opcode on the admin queue and vice versa */
	pt = (struct csd_passthru){ .opcode = CSD_IO_CTX_DESTROY,
				    .nsid = CSD_NSID, .cdw12 = 1 };
	CU_ASSERT(opcode_refused(CSD_IO_CTX_DESTROY, raw(1, &pt)));
	pt = (struct csd_passthru){ .opcode = CSD_ADM_GET_FEATURES,
				    .cdw10 = CSD_FEAT_ID_PACING };
	CU_ASSERT(opcode_refused(CSD_ADM_GET_FEATURES, raw(0, &pt)));
}

static void test_log_pages(void)
{
	struct csd_log_health h;
	struct csd_log_stats st, part;
	struct {
		struct csd_log_ctx_hdr hdr;
		struct csd_log_ctx_entry e[4];
	} cl;
	uint8_t big[1024];

	CU_ASSERT_EQUAL(get_log(CSD_LOG_HEALTH, 0, &h, sizeof(h)), S_OK);
	CU_ASSERT(h.temperature > 200);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 0, &st, sizeof(st)), S_OK);
	CU_ASSERT(st.blocks_total > 0 && st.blocks_free <= st.blocks_total);
	CU_ASSERT(st.commands > 0);
	CU_ASSERT(st.flash_bytes_used >= st.kv_bytes_stored / 2);
	/* an offset read returns the same bytes (blocks_total does not move) */
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS,
				offsetof(struct csd_log_stats, blocks_total),
				&part, 8), S_OK);
	CU_ASSERT_EQUAL(part.kv_bytes_stored, st.blocks_total);
	/* bytes past the end of a log are zero */
	memset(big, 0xa5, sizeof(big));
	CU_ASSERT_EQUAL(get_log(CSD_LOG_HEALTH, 0, big, sizeof(big)), S_OK);
	CU_ASSERT(big[600] == 0 && big[1023] == 0);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_CONTEXTS, 0, &cl, sizeof(cl)), S_OK);
	CU_ASSERT(cl.hdr.count <= info.max_contexts);
	CU_ASSERT_EQUAL(st.contexts, cl.hdr.count);

	CU_ASSERT_EQUAL(get_log(0x55, 0, big, 64), S_LOG);
	CU_ASSERT_EQUAL(get_log(0x01, 0, big, 64), S_LOG);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 2, big, 64), S_FIELD);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, sizeof(st), big, 64), S_FIELD);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 1ull << 32, big, 64), S_FIELD);
	{
		/* NUMD and buffer length disagree */
		struct csd_passthru pt = {
			.opcode = CSD_ADM_GET_LOG_PAGE,
			.cdw10 = CSD_LOG_STATS | 15u << 16,
			.addr = big, .data_len = 128,
		};

		CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	}
}

static void test_features(void)
{
	struct csd_passthru pt = { .opcode = CSD_ADM_GET_FEATURES,
				   .cdw10 = CSD_FEAT_ID_PACING };
	uint32_t orig;

	CU_ASSERT_EQUAL_FATAL(raw(1, &pt), S_OK);
	orig = (uint32_t)pt.result & 1;
	CU_ASSERT_EQUAL((uint32_t)pt.result & ~1u, 0);
	/* SEL (command-set.md 4.3): 1 default and 2 saved agree, 3 the
	 * capabilities (C0h changeable, 07h nothing), 4..7 invalid */
	{
		uint64_t def;

		pt.cdw10 = CSD_FEAT_ID_PACING | 1u << 8;
		CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
		def = pt.result;
		CU_ASSERT_EQUAL((uint32_t)def & ~1u, 0);
		pt.cdw10 = CSD_FEAT_ID_PACING | 2u << 8;
		CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
		CU_ASSERT_EQUAL(pt.result, def);
		pt.cdw10 = CSD_FEAT_ID_PACING | 3u << 8;
		CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
		CU_ASSERT_EQUAL((uint32_t)pt.result, 0x4);
		pt.cdw10 = CSD_FEAT_NUM_QUEUES | 3u << 8;
		CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
		CU_ASSERT_EQUAL((uint32_t)pt.result, 0);
		pt.cdw10 = CSD_FEAT_ID_PACING | 4u << 8;
		CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
		pt.cdw10 = CSD_FEAT_ID_PACING | 1u << 11;	/* reserved */
		CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
		pt.cdw10 = CSD_FEAT_ID_PACING;
	}
	if (on_kernel() && geteuid() != 0) {
		/* Set Features needs CAP_SYS_ADMIN on /dev/csdN */
		pt = (struct csd_passthru){ .opcode = CSD_ADM_SET_FEATURES,
					    .cdw10 = CSD_FEAT_ID_PACING,
					    .cdw11 = orig };
		CU_ASSERT_EQUAL(raw(1, &pt), S_DENIED);
		cu_skip("Set Features: needs CAP_SYS_ADMIN on the kernel "
			"transport");
		return;
	}

	pt = (struct csd_passthru){ .opcode = CSD_ADM_SET_FEATURES,
				    .cdw10 = CSD_FEAT_ID_PACING, .cdw11 = 2 };
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	/* SV: not saveable (after the FID and value checks), nothing set */
	pt.cdw11 = orig ^ 1;
	pt.cdw10 = CSD_FEAT_ID_PACING | 1u << 31;
	CU_ASSERT_EQUAL(raw(1, &pt),
			CSD_STATUS(CSD_SCT_CMD_SPECIFIC,
				   CSD_SC_FEATURE_NOT_SAVEABLE));
	pt.cdw11 = 2;
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	pt.cdw10 = CSD_FEAT_ID_PACING;
	pt.cdw11 = orig ^ 1;
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	pt = (struct csd_passthru){ .opcode = CSD_ADM_GET_FEATURES,
				    .cdw10 = CSD_FEAT_ID_PACING };
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	CU_ASSERT_EQUAL((uint32_t)pt.result, orig ^ 1);
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dev, (int)orig), 0);
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	CU_ASSERT_EQUAL((uint32_t)pt.result, orig);

	pt = (struct csd_passthru){ .opcode = CSD_ADM_GET_FEATURES,
				    .cdw10 = CSD_FEAT_NUM_QUEUES };
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	CU_ASSERT_EQUAL((uint32_t)pt.result, 0);
	pt.opcode = CSD_ADM_SET_FEATURES;
	pt.cdw11 = 0x00070007;
	CU_ASSERT_EQUAL(raw(1, &pt), S_OK);
	CU_ASSERT_EQUAL((uint32_t)pt.result, 0);

	pt = (struct csd_passthru){ .opcode = CSD_ADM_GET_FEATURES,
				    .cdw10 = 0x55 };
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
	pt.opcode = CSD_ADM_SET_FEATURES;
	CU_ASSERT_EQUAL(raw(1, &pt), S_FIELD);
}

static void test_flush(void)
{
	uint32_t word = 0;
	struct csd_passthru pt = { .opcode = CSD_IO_FLUSH, .nsid = CSD_NSID };

	CU_ASSERT_EQUAL(raw(0, &pt), S_OK);
	pt.nsid = 0xffffffffu;
	CU_ASSERT_EQUAL(raw(0, &pt), S_OK);
	pt.nsid = 0;
	CU_ASSERT_EQUAL(raw(0, &pt), S_NS);
	pt.nsid = 2;
	CU_ASSERT_EQUAL(raw(0, &pt), S_NS);
	pt.nsid = CSD_NSID;
	pt.addr = &word;	/* data on a no-data command */
	pt.data_len = 4;
	CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
	CU_ASSERT_EQUAL(csd_dev_flush(dev), 0);
}

/* ---- contexts -------------------------------------------------------- */

static int ctx_in_log(uint32_t id, struct csd_log_ctx_entry *out)
{
	size_t len = (info.max_contexts + 1) * sizeof(struct csd_log_ctx_entry);
	struct csd_log_ctx_hdr *hdr = calloc(1, len);
	struct csd_log_ctx_entry *e = (struct csd_log_ctx_entry *)(hdr + 1);
	uint32_t i, prev = 0;
	int found = 0;

	CU_ASSERT_FATAL(hdr != NULL);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_CONTEXTS, 0, hdr, (uint32_t)len), 0);
	for (i = 0; i < hdr->count && i < info.max_contexts; i++) {
		CU_ASSERT(e[i].ctx_id > prev);	/* ascending */
		prev = e[i].ctx_id;
		if (e[i].ctx_id == id) {
			found = 1;
			if (out)
				*out = e[i];
		}
	}
	free(hdr);
	return found;
}

static void test_ctx_lifecycle(void)
{
	struct csd_ctx *ctx = mk_ctx(3, 4, 16, 128, CSD_KV_BF16, 5, 1000);
	struct csd_log_ctx_entry e;
	struct csd_ctx_usage u;
	uint8_t buf[64 + 8 * 8];
	uint64_t res;
	uint32_t id;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	id = csd_ctx_get_id(ctx);
	CU_ASSERT(id >= 1 && id <= info.max_contexts);
	CU_ASSERT_FATAL(ctx_in_log(id, &e));
	CU_ASSERT_EQUAL(e.layers, 3);
	CU_ASSERT_EQUAL(e.kv_heads, 4);
	CU_ASSERT_EQUAL(e.q_heads, 16);
	CU_ASSERT_EQUAL(e.head_dim, 128);
	CU_ASSERT_EQUAL(e.dtype, CSD_DTYPE_BF16);
	CU_ASSERT_EQUAL(e.max_seqs, 5);
	CU_ASSERT_EQUAL(e.max_tokens, 1000);
	CU_ASSERT_EQUAL(e.seqs_used, 0);
	CU_ASSERT_EQUAL(e.bytes_used, 0);	/* nothing reserved at create */
	CU_ASSERT_EQUAL(e.tokens, 0);

	/* CTX_QUERY: header + up to max_seqs entries */
	memset(buf, 0xa5, sizeof(buf));
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_QUERY, id, 0, 0, 0, buf, sizeof(buf),
			   &res), S_OK);
	CU_ASSERT_EQUAL((uint32_t)res, 5);
	{
		struct csd_ctx_info ci;

		memcpy(&ci, buf, sizeof(ci));
		CU_ASSERT_EQUAL(ci.ctx_id, id);
		CU_ASSERT_EQUAL(ci.p.layers, 3);
		CU_ASSERT_EQUAL(ci.p.max_seqs, 5);
		CU_ASSERT_EQUAL(ci.seqs_used, 0);
		CU_ASSERT_EQUAL(ci.inflight, 0);
		CU_ASSERT(ci.tokens_per_page >= 1);
	}
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_QUERY, id, 0, 0, 0, buf, 64, &res), S_OK);
	CU_ASSERT_EQUAL((uint32_t)res, 0);
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_QUERY, id, 0, 0, 0, buf, 60, NULL),
			S_VS(LENGTH));
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_QUERY, id, 0, 0, 0, buf, 68, NULL),
			S_VS(LENGTH));
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(u.tokens, 0);

	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	CU_ASSERT(!ctx_in_log(id, NULL));
	/* the id is gone: every context command says CTX_INVALID */
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_DESTROY, id, 0, 0, 0, NULL, 0, NULL),
			S_VS(CTX_INVALID));
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_QUERY, id, 0, 0, 0, buf, 64, NULL),
			S_VS(CTX_INVALID));
	CU_ASSERT_EQUAL(io(CSD_IO_SEQ_RESET, id, 0, 0, 0, NULL, 0, NULL),
			S_VS(CTX_INVALID));
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_DESTROY, 0, 0, 0, 0, NULL, 0, NULL),
			S_VS(CTX_INVALID));
}

static void test_ctx_create_errors(void)
{
	struct csd_ctx_desc p, good = {
		.layers = 2, .kv_heads = 2, .q_heads = 4, .head_dim = 64,
		.dtype = CSD_DTYPE_F16, .max_seqs = 2, .max_tokens = 64,
	};
	static const struct {
		int field;
		uint32_t val;
		int status;
	} cases[] = {
		{ 0, 0, S_VS(UNSUPPORTED) },		/* layers 0 */
		{ 0, 0xffff, S_VS(UNSUPPORTED) },	/* > max_layers */
		{ 1, 0, S_VS(UNSUPPORTED) },		/* kv_heads 0 */
		{ 2, 3, S_VS(UNSUPPORTED) },		/* q % kv */
		{ 2, 0, S_VS(UNSUPPORTED) },
		{ 3, 72, S_VS(UNSUPPORTED) },		/* % 16 */
		{ 3, 16, S_VS(UNSUPPORTED) },		/* < min */
		{ 3, 4096, S_VS(UNSUPPORTED) },		/* > max */
		{ 4, 3, S_VS(UNSUPPORTED) },		/* dtype */
		{ 5, 0, S_VS(UNSUPPORTED) },		/* max_seqs 0 */
		{ 6, 0, S_VS(UNSUPPORTED) },		/* max_tokens 0 */
		{ 7, 1, S_FIELD },			/* flags */
		{ 8, 1, S_FIELD },			/* rsvd0 */
		{ 9, 1, S_FIELD },			/* rsvd1 */
	};
	uint32_t before, after;
	struct csd_log_stats st;
	uint64_t res;
	size_t i;

	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 0, &st, sizeof(st)), S_OK);
	before = (uint32_t)st.contexts;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		p = good;
		switch (cases[i].field) {
		case 0: p.layers = (uint16_t)cases[i].val; break;
		case 1: p.kv_heads = (uint16_t)cases[i].val; break;
		case 2: p.q_heads = (uint16_t)cases[i].val; break;
		case 3: p.head_dim = (uint16_t)cases[i].val; break;
		case 4: p.dtype = (uint8_t)cases[i].val; break;
		case 5: p.max_seqs = cases[i].val; break;
		case 6: p.max_tokens = cases[i].val; break;
		case 7: p.flags = cases[i].val; break;
		case 8: p.rsvd0[1] = 1; break;
		default: p.rsvd1[39] = 1; break;
		}
		rc = io(CSD_IO_CTX_CREATE, 0, 0, 0, 0, &p, sizeof(p), &res);
		CU_ASSERT_EQUAL(rc, cases[i].status);
		if (rc != cases[i].status)
			fprintf(stderr, "  create case %zu: 0x%x\n", i, rc);
		if (rc == S_OK)
			io(CSD_IO_CTX_DESTROY, (uint32_t)res, 0, 0, 0, NULL,
			   0, NULL);
	}
	p = good;
	p.max_seqs = info.max_seqs + 1;
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_CREATE, 0, 0, 0, 0, &p, sizeof(p), NULL),
			S_VS(UNSUPPORTED));
	p = good;
	p.max_tokens = info.max_tokens + 1;
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_CREATE, 0, 0, 0, 0, &p, sizeof(p), NULL),
			S_VS(UNSUPPORTED));
	/* shape-derived length: CTX_CREATE carries exactly 64 bytes */
	CU_ASSERT_EQUAL(io(CSD_IO_CTX_CREATE, 0, 0, 0, 0, &good, 60, NULL),
			S_VS(LENGTH));
	/* reserved dwords, flags, NDM, nsid */
	{
		struct csd_passthru pt = {
			.opcode = CSD_IO_CTX_CREATE, .nsid = CSD_NSID,
			.cdw10 = 16, .addr = &good, .data_len = 64,
		};

		pt.cdw13 = 1;
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
		pt.cdw13 = 0;
		pt.cdw2 = 1;
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
		pt.cdw2 = 0;
		pt.cdw11 = 1;
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
		pt.cdw11 = 0;
		pt.flags = 0x40;
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
		pt.flags = 0;
		pt.nsid = 0;
		CU_ASSERT_EQUAL(raw(0, &pt), S_NS);
		pt.nsid = CSD_NSID;
		pt.cdw10 = 15;		/* NDT != buffer */
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
	}
	/* nothing was created (if no one else uses the drive meanwhile) */
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 0, &st, sizeof(st)), S_OK);
	after = (uint32_t)st.contexts;
	if (after != before)
		fprintf(stderr, "  note: contexts %u -> %u (shared drive?)\n",
			before, after);
}

static void test_ctx_limit(void)
{
	struct csd_ctx **c = calloc(info.max_contexts + 1, sizeof(*c));
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 1, .q_heads = 1, .head_dim = 64,
		.dtype = CSD_KV_F16, .max_seqs = 1, .max_tokens = 16,
	};
	uint32_t n = 0, i;
	int rc = 0;

	CU_ASSERT_FATAL(c != NULL);
	while (n <= info.max_contexts) {
		rc = csd_ctx_create(dev, &p, &c[n]);
		if (rc)
			break;
		n++;
	}
	CU_ASSERT_EQUAL(rc, -EMFILE);
	CU_ASSERT(n <= info.max_contexts);
	/* ids are distinct and in range */
	for (i = 0; i < n; i++) {
		uint32_t id = csd_ctx_get_id(c[i]);

		CU_ASSERT(id >= 1 && id <= info.max_contexts);
		if (i)
			CU_ASSERT_NOT_EQUAL(id, csd_ctx_get_id(c[i - 1]));
	}
	for (i = 0; i < n; i++)
		CU_ASSERT_EQUAL(csd_ctx_destroy(c[i]), 0);
	free(c);
}

/* ---- KV -------------------------------------------------------------- */

static void kv_dtype_case(enum csd_kv_dtype d, uint32_t hd)
{
	struct csd_ctx *ctx = mk_ctx(2, 3, 3, hd, d, 3, 2048);
	struct csd_ctx_usage u;
	size_t row = 3 * (size_t)hd * dsz(d);
	uint32_t tpp, n, steps[6], i, at = 0;
	char *k, *v, *k2, *v2;
	uint64_t s = 1234 + d + hd, res;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u, NULL, 0), 0);
	tpp = u.tokens_per_page;
	CU_ASSERT_FATAL(tpp >= 1);
	/* appends that end just before, on and after page boundaries */
	steps[0] = 1;
	steps[1] = tpp - 1 ? tpp - 1 : 1;
	steps[2] = 1;
	steps[3] = tpp + 1;
	steps[4] = 3 * tpp - 2;
	steps[5] = 2 * tpp + 5;
	for (n = 0, i = 0; i < 6; i++)
		n += steps[i];
	k = malloc(n * row);
	v = malloc(n * row);
	k2 = malloc(n * row);
	v2 = malloc(n * row);
	CU_ASSERT_FATAL(k && v && k2 && v2);
	fill_kv(k, n * row / dsz(d), d, &s);
	fill_kv(v, n * row / dsz(d), d, &s);
	for (i = 0; i < 6; i++) {
		uint32_t m = steps[i];
		char *buf = malloc(2 * m * row);

		CU_ASSERT_FATAL(buf != NULL);
		if (2 * m * row > info.max_xfer) {
			/* too big for one command here: let libcsd split */
			CU_ASSERT_EQUAL(csd_kv_append(ctx, 2, 1, at, m,
						      k + at * row,
						      v + at * row), 0);
			at += m;
			free(buf);
			continue;
		}
		memcpy(buf, k + at * row, m * row);
		memcpy(buf + m * row, v + at * row, m * row);
		CU_ASSERT_EQUAL(io(CSD_IO_KV_APPEND, csd_ctx_get_id(ctx),
				   2 | 1u << 16, at, m, buf,
				   (uint32_t)(2 * m * row), &res), S_OK);
		at += m;
		CU_ASSERT_EQUAL((uint32_t)res, at);	/* new length */
		free(buf);
	}
	CU_ASSERT_EQUAL(seq_len(ctx, 2), 0);	/* layer 0 still empty */
	/* whole read, and reads across each boundary */
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 2, 1, 0, n, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k, k2, n * row), 0);
	CU_ASSERT_EQUAL(memcmp(v, v2, n * row), 0);
	for (i = 1; i + 1 < n; i += tpp) {
		uint32_t lo = i - 1, m = (n - lo) < 3 ? n - lo : 3;
		char *buf = malloc(2 * m * row);

		CU_ASSERT_FATAL(buf != NULL);
		CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, csd_ctx_get_id(ctx),
				   2 | 1u << 16, lo, m, buf,
				   (uint32_t)(2 * m * row), &res), S_OK);
		CU_ASSERT_EQUAL((uint32_t)res, m);
		CU_ASSERT_EQUAL(memcmp(buf, k + lo * row, m * row), 0);
		CU_ASSERT_EQUAL(memcmp(buf + m * row, v + lo * row, m * row),
				0);
		free(buf);
	}
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	free(k);
	free(v);
	free(k2);
	free(v2);
}

static void test_kv_dtypes(void)
{
	kv_dtype_case(CSD_KV_F16, 128);
	kv_dtype_case(CSD_KV_BF16, 64);
	kv_dtype_case(CSD_KV_F32, 256);
	kv_dtype_case(CSD_KV_F16, info.max_head_dim);
	kv_dtype_case(CSD_KV_F32, info.min_head_dim);
}

/* Every KV error leaves the stored tokens unchanged. */
static void test_kv_errors(void)
{
	struct csd_ctx *ctx = mk_ctx(2, 2, 2, 64, CSD_KV_F16, 2, 40);
	size_t row = 2 * 64 * 2;
	char kv[2 * 8 * 256], k2[40 * 256], v2[40 * 256], ref[2][40 * 256];
	uint32_t id, c13 = 1 | 1u << 16;	/* seq 1, layer 1 */
	uint64_t s = 5;
	struct csd_log_stats st0, st1;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	id = csd_ctx_get_id(ctx);
	fill_kv(ref, sizeof(ref) / 2, CSD_KV_F16, &s);
	CU_ASSERT_EQUAL_FATAL(csd_kv_append(ctx, 1, 1, 0, 30, ref[0], ref[1]),
			      0);
	memcpy(kv, ref[0] + 30 * row, 8 * row);
	memcpy(kv + 8 * row, ref[1] + 30 * row, 8 * row);
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 0, &st0, sizeof(st0)), S_OK);

#define APP(c13_, start, ntok, len) \
	io(CSD_IO_KV_APPEND, id, (c13_), (start), (ntok), kv, (len), NULL)
	/* length */
	CU_ASSERT_EQUAL(APP(c13, 30, 2, 2 * row), S_VS(LENGTH));
	CU_ASSERT_EQUAL(APP(c13, 30, 1, 4 * row), S_VS(LENGTH));
	/* fields */
	CU_ASSERT_EQUAL(APP(c13, 30, 0, 0), S_FIELD);
	{
		struct csd_passthru pt = {
			.opcode = CSD_IO_KV_APPEND, .nsid = CSD_NSID,
			.cdw10 = (uint32_t)(2 * row / 4) + 1, .cdw12 = id,
			.cdw13 = c13, .cdw14 = 30, .cdw15 = 1,
			.addr = kv, .data_len = (uint32_t)(2 * row),
		};

		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);	/* NDT */
		pt.cdw10--;
		pt.cdw3 = 1;
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);	/* reserved */
		pt.cdw3 = 0;
		pt.nsid = 7;
		CU_ASSERT_EQUAL(raw(0, &pt), S_NS);
		pt.nsid = 0xffffffffu;
		CU_ASSERT_EQUAL(raw(0, &pt), S_NS);
		pt.nsid = CSD_NSID;
		pt.cdw12 = 0;
		CU_ASSERT_EQUAL(raw(0, &pt), S_VS(CTX_INVALID));
		pt.cdw12 = id;
		pt.cdw10 = info.max_xfer / 4 + 1;	/* > max_xfer */
		CU_ASSERT_EQUAL(raw(0, &pt), S_FIELD);
	}
	/* ranges */
	CU_ASSERT_EQUAL(APP(2 | 1u << 16, 0, 1, 2 * row), S_VS(SEQ_RANGE));
	CU_ASSERT_EQUAL(APP(0xffff, 0, 1, 2 * row), S_VS(SEQ_RANGE));
	CU_ASSERT_EQUAL(APP(1 | 2u << 16, 0, 1, 2 * row), S_VS(LAYER_RANGE));
	/* state */
	CU_ASSERT_EQUAL(APP(c13, 29, 1, 2 * row), S_VS(TOKEN_ORDER));
	CU_ASSERT_EQUAL(APP(c13, 31, 1, 2 * row), S_VS(TOKEN_ORDER));
	{
		char *big = calloc(11, 2 * row);

		CU_ASSERT_FATAL(big != NULL);
		CU_ASSERT_EQUAL(io(CSD_IO_KV_APPEND, id, c13, 30, 11, big,
				   (uint32_t)(22 * row), NULL), S_VS(CTX_FULL));
		free(big);
	}
	/* reads */
	CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, id, c13, 29, 2, kv,
			   (uint32_t)(4 * row), NULL), S_VS(TOKEN_RANGE));
	CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, id, 0, 0, 1, kv,
			   (uint32_t)(2 * row), NULL), S_VS(TOKEN_RANGE));
	CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, id, c13, 0xffffffffu, 1, kv,
			   (uint32_t)(2 * row), NULL), S_VS(TOKEN_RANGE));
	CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, id, c13, 0, 2, kv,
			   (uint32_t)(2 * row), NULL), S_VS(LENGTH));
	CU_ASSERT_EQUAL(io(CSD_IO_KV_READ, id, c13, 0, 0, kv, 0, NULL),
			S_FIELD);

	/* nothing changed */
	CU_ASSERT_EQUAL(get_log(CSD_LOG_STATS, 0, &st1, sizeof(st1)), S_OK);
	CU_ASSERT_EQUAL(seq_len(ctx, 1), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 0, 30, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k2, ref[0], 30 * row), 0);
	CU_ASSERT_EQUAL(memcmp(v2, ref[1], 30 * row), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 30, 1, k2, v2), -ERANGE);
	/* and the drive still appends where it should */
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, 30, 10, ref[0] + 30 * row,
				      ref[1] + 30 * row), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 0, 40, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k2, ref[0], 40 * row), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
#undef APP
}

static void test_seq_reset(void)
{
	struct csd_ctx *ctx = mk_ctx(2, 1, 1, 64, CSD_KV_F32, 3, 200);
	struct csd_ctx_usage u0, u1;
	char k[200 * 256], v[200 * 256];
	uint32_t id;
	uint64_t s = 9;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
	id = csd_ctx_get_id(ctx);
	fill_kv(k, 200 * 64, CSD_KV_F32, &s);
	fill_kv(v, 200 * 64, CSD_KV_F32, &s);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 200, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 1, 0, 150, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 2, 0, 0, 5, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 2, 1, 0, 5, k, v), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u0, NULL, 0), 0);
	CU_ASSERT_EQUAL(u0.tokens, 360);
	CU_ASSERT_EQUAL(u0.seqs_used, 2);
	CU_ASSERT_EQUAL(seq_len(ctx, 0), 150);

	CU_ASSERT_EQUAL(io(CSD_IO_SEQ_RESET, id, 3, 0, 0, NULL, 0, NULL),
			S_VS(SEQ_RANGE));
	CU_ASSERT_EQUAL(io(CSD_IO_SEQ_RESET, id, 1u << 16, 0, 0, NULL, 0,
			   NULL), S_FIELD);	/* reserved bits */
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 0), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u1, NULL, 0), 0);
	CU_ASSERT_EQUAL(u1.tokens, 10);
	CU_ASSERT_EQUAL(u1.seqs_used, 1);
	CU_ASSERT(u1.bytes_used < u0.bytes_used);
	CU_ASSERT_EQUAL(seq_len(ctx, 0), 0);
	CU_ASSERT_EQUAL(seq_len(ctx, 2), 5);
	/* reset of an empty sequence is fine; append restarts at 0 */
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 1), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 1, 1, k, v), -EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 1, k, v), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
}

/* ---- attention ------------------------------------------------------- */

struct ref_ctx {
	struct csd_ctx *ctx;
	uint32_t kvh, qh, hd, nseq;
	enum csd_kv_dtype d;
	uint32_t len[8];
	char *k[8], *v[8];	/* host copies, [cap][kvh][hd] */
	uint32_t cap;
};

static void rc_init(struct ref_ctx *r, uint32_t kvh, uint32_t qh,
		    uint32_t hd, enum csd_kv_dtype d, uint32_t nseq,
		    const uint32_t *len, uint32_t cap)
{
	size_t row = (size_t)kvh * hd * dsz(d);
	uint64_t s = 31 + hd + qh;
	uint32_t i;

	memset(r, 0, sizeof(*r));
	r->kvh = kvh;
	r->qh = qh;
	r->hd = hd;
	r->d = d;
	r->nseq = nseq;
	r->cap = cap;
	r->ctx = mk_ctx(2, kvh, qh, hd, d, nseq, cap);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r->ctx);
	for (i = 0; i < nseq; i++) {
		r->k[i] = malloc(cap * row);
		r->v[i] = malloc(cap * row);
		CU_ASSERT_FATAL(r->k[i] && r->v[i]);
		fill_kv(r->k[i], cap * row / dsz(d), d, &s);
		fill_kv(r->v[i], cap * row / dsz(d), d, &s);
		r->len[i] = len[i];
		if (len[i])
			CU_ASSERT_EQUAL(csd_kv_append(r->ctx, i, 1, 0, len[i],
						      r->k[i], r->v[i]), 0);
	}
}

static void rc_fini(struct ref_ctx *r)
{
	uint32_t i;

	CU_ASSERT_EQUAL(csd_ctx_destroy(r->ctx), 0);
	for (i = 0; i < r->nseq; i++) {
		free(r->k[i]);
		free(r->v[i]);
	}
}

/* max |err| of out/lse of sequence @seq vs a double reference */
static double rc_check(struct ref_ctx *r, uint32_t seq, const float *q,
		       const float *out, const float *lse, uint32_t window,
		       double scale)
{
	uint32_t hi = r->len[seq], lo = window && hi > window ? hi - window : 0;
	uint32_t g = r->qh / r->kvh, h, t, i;
	double err = 0;

	for (h = 0; h < r->qh; h++) {
		double m = -INFINITY, l = 0, acc[512] = { 0 };

		for (t = lo; t < hi; t++) {
			size_t b = ((size_t)t * r->kvh + h / g) * r->hd;
			double sc = 0, p, c;

			for (i = 0; i < r->hd; i++)
				sc += q[h * r->hd + i] * kv_val(r->k[seq], b + i,
								 r->d);
			sc *= scale;
			if (sc > m) {
				c = exp(m - sc);
				for (i = 0; i < r->hd; i++)
					acc[i] *= c;
				l *= c;
				m = sc;
			}
			p = exp(sc - m);
			l += p;
			for (i = 0; i < r->hd; i++)
				acc[i] += p * kv_val(r->v[seq], b + i, r->d);
		}
		for (i = 0; i < r->hd; i++)
			err = fmax(err, fabs(acc[i] / l - out[h * r->hd + i]));
		if (lse)
			err = fmax(err, fabs(m + log(l) - lse[h]));
	}
	return err;
}

static void attn_case(uint32_t kvh, uint32_t qh, uint32_t hd,
		      enum csd_kv_dtype d, uint32_t flags, uint32_t window,
		      float scale, uint32_t nseq)
{
	static const uint32_t lens[8] = { 33, 1, 100, 16, 64, 5, 250, 17 };
	struct ref_ctx r;
	size_t qn = (size_t)qh * hd, row = (size_t)kvh * hd * dsz(d);
	float *q = malloc(nseq * qn * sizeof(float));
	float *out = malloc(nseq * qn * sizeof(float));
	float *lse = malloc(nseq * qh * sizeof(float));
	char *kn = malloc(nseq * row), *vn = malloc(nseq * row);
	uint32_t seqs[8], i;
	uint64_t s = 77, tokens = 0;
	struct csd_attn_result res;
	struct csd_attn_req req = {
		.layer = 1, .nseq = nseq, .flags = flags, .window = window,
		.scale = scale, .seqs = seqs, .q = q, .k_new = kn,
		.v_new = vn, .out = out, .lse = lse,
	};
	double err = 0;

	/* keep each command within the drive's max_xfer */
	while (nseq > 1 && nseq * (4 + qn * 4 + 2 * row) > info.max_xfer)
		nseq--;
	req.nseq = nseq;
	CU_ASSERT_FATAL(q && out && lse && kn && vn);
	rc_init(&r, kvh, qh, hd, d, nseq, lens, 256);
	for (i = 0; i < nseq; i++)
		seqs[i] = nseq - 1 - i;	/* any order */
	for (i = 0; i < nseq * qn; i++)
		q[i] = 2 * rng_float(&s);
	if (flags & CSD_ATTN_FUSED_KV)
		for (i = 0; i < nseq; i++) {
			uint32_t sq = seqs[i];

			memcpy(kn + i * row, r.k[sq] + r.len[sq] * row, row);
			memcpy(vn + i * row, r.v[sq] + r.len[sq] * row, row);
			r.len[sq]++;
		}
	CU_ASSERT_EQUAL_FATAL(csd_attn_run(r.ctx, &req, &res), 0);
	for (i = 0; i < nseq; i++) {
		uint32_t l = r.len[seqs[i]];

		err = fmax(err, rc_check(&r, seqs[i], q + i * qn, out + i * qn,
					 flags & CSD_ATTN_LSE ? lse + i * qh :
								NULL, window,
					 scale ? scale : 1.0 / sqrt(hd)));
		tokens += window && l > window ? window : l;
	}
	CU_ASSERT(err < 2e-3);
	if (err >= 2e-3)
		fprintf(stderr, "  attn kvh %u qh %u hd %u d %d flags %u w %u: "
			"err %g\n", kvh, qh, hd, d, flags, window, err);
	CU_ASSERT_EQUAL(res.tokens, tokens);
	/* fused appends are visible to reads */
	if (flags & CSD_ATTN_FUSED_KV)
		for (i = 0; i < nseq; i++) {
			char *kb = malloc(row), *vb = malloc(row);
			uint32_t sq = seqs[i];

			CU_ASSERT_FATAL(kb && vb);
			CU_ASSERT_EQUAL(csd_kv_read(r.ctx, sq, 1,
						    r.len[sq] - 1, 1, kb, vb),
					0);
			CU_ASSERT_EQUAL(memcmp(kb, kn + i * row, row), 0);
			CU_ASSERT_EQUAL(memcmp(vb, vn + i * row, row), 0);
			free(kb);
			free(vb);
		}
	rc_fini(&r);
	free(q);
	free(out);
	free(lse);
	free(kn);
	free(vn);
}

static void test_attn_dense(void)
{
	attn_case(2, 2, 128, CSD_KV_F16, 0, 0, 0, 3);
	attn_case(4, 4, 64, CSD_KV_F32, 0, 0, 0.2f, 2);
	attn_case(1, 1, 256, CSD_KV_BF16, 0, 0, 0, 1);
}

static void test_attn_fused(void)
{
	attn_case(2, 8, 128, CSD_KV_F16, CSD_ATTN_FUSED_KV, 0, 0, 4);
	attn_case(2, 2, 64, CSD_KV_BF16, CSD_ATTN_FUSED_KV | CSD_ATTN_LSE, 0,
		  0, 8);
}

static void test_attn_window(void)
{
	attn_case(2, 4, 64, CSD_KV_F16, CSD_ATTN_LSE, 16, 0, 5);
	attn_case(1, 2, 128, CSD_KV_F32, CSD_ATTN_FUSED_KV, 1, 0, 3);
	attn_case(2, 2, 64, CSD_KV_F16, 0, 100000, 0, 4);
}

static void test_attn_lse_gqa_batch(void)
{
	attn_case(1, 16, 64, CSD_KV_F16, CSD_ATTN_LSE, 0, 0, 2);
	attn_case(2, 16, 128, CSD_KV_BF16, CSD_ATTN_LSE, 0, 0.05f, 8);
	attn_case(8, 8, 80, CSD_KV_F16, CSD_ATTN_LSE, 0, 0, 6);
}

/* raw ATTN_SUBMIT of nseq seqs (q zero), optional fused rows */
static int raw_submit(uint32_t id, uint32_t tag, uint32_t layer,
		      const uint32_t *seqs, uint32_t nseq, uint32_t flags,
		      uint32_t qh, uint32_t hd, size_t row, uint32_t window,
		      uint32_t scale_bits, uint32_t cdw3, long len_adj)
{
	size_t len = (size_t)((long)(nseq * (4 + (size_t)qh * hd * 4) +
			(flags & CSD_ATTN_F_FUSED_KV ? 2 * nseq * row : 0)) +
			len_adj);
	char *buf = calloc(1, len + 4);
	struct csd_passthru pt = {
		.opcode = CSD_IO_ATTN_SUBMIT, .nsid = CSD_NSID,
		.cdw2 = window, .cdw3 = cdw3, .cdw10 = (uint32_t)(len / 4),
		.cdw12 = id, .cdw13 = tag | layer << 16,
		.cdw14 = nseq | flags << 16, .cdw15 = scale_bits,
		.addr = buf, .data_len = (uint32_t)len,
	};
	int rc;

	CU_ASSERT_FATAL(buf != NULL);
	if (seqs)
		memcpy(buf, seqs, nseq * 4 < len ? nseq * 4 : len);
	rc = raw(0, &pt);
	free(buf);
	return rc;
}

static int raw_read(uint32_t id, uint32_t tag, size_t len, uint64_t *res)
{
	char *buf = calloc(1, len + 4);
	int rc;

	CU_ASSERT_FATAL(buf != NULL);
	rc = io(CSD_IO_ATTN_READ, id, tag, 0, 0, buf, (uint32_t)len, res);
	free(buf);
	return rc;
}

static void test_attn_errors(void)
{
	static const uint32_t lens[3] = { 20, 0, 7 };
	struct ref_ctx r;
	uint32_t id, seqs[3] = { 0, 2, 0 }, qh = 4, hd = 64;
	uint32_t t5 = info.max_tags > 5 ? 5 : info.max_tags - 1;
	uint32_t t7 = info.max_tags > 7 ? 7 : 0;
	size_t row = 2 * 64 * 2, outlen = 2 * (size_t)qh * hd * 4;
	struct csd_ctx_usage u;
	uint64_t res;

	rc_init(&r, 2, qh, hd, CSD_KV_F16, 3, lens, 32);
	id = csd_ctx_get_id(r.ctx);
#define SUB(tag, layer, sq, n, fl, win, sc, c3, adj) \
	raw_submit(id, tag, layer, sq, n, fl, qh, hd, row, win, sc, c3, adj)
	/* fields */
	CU_ASSERT_EQUAL(SUB(info.max_tags, 1, seqs, 2, 0, 0, 0, 0, 0),
			S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 0, 0, 0, 0, 0, 0), S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 1u << 5, 0, 0, 0, 0), S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, f2u(NAN), 0, 0), S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, f2u(INFINITY), 0, 0),
			S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, f2u(-0.5f), 0, 0), S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, 0, 1, 0), S_FIELD);
	if (info.max_attn_seqs < 0xffff) {
		uint32_t n = info.max_attn_seqs + 1;
		uint32_t *many = calloc(n, 4);

		CU_ASSERT_FATAL(many != NULL);
		CU_ASSERT_EQUAL(raw_submit(id, 0, 1, many, n, 0, qh, hd, row,
					   0, 0, 0, 0), S_FIELD);
		free(many);
	}
	/* ranges */
	CU_ASSERT_EQUAL(SUB(0, 2, seqs, 2, 0, 0, 0, 0, 0), S_VS(LAYER_RANGE));
	seqs[1] = 3;
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, 0, 0, 0), S_VS(SEQ_RANGE));
	seqs[1] = 2;
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, 0, 0, 4), S_VS(LENGTH));
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, CSD_ATTN_F_FUSED_KV, 0, 0, 0,
			    -(long)(2 * row)), S_VS(LENGTH));
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 3, 0, 0, 0, 0, 0), S_FIELD); /* dup */
	/* state */
	seqs[1] = 1;
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, 0, 0, 0, 0, 0), S_VS(EMPTY_SEQ));
	CU_ASSERT_EQUAL(SUB(0, 0, seqs, 1, 0, 0, 0, 0, 0), S_VS(EMPTY_SEQ));
	seqs[1] = 2;
	/* a failed fused submit appends nothing */
	CU_ASSERT_EQUAL(SUB(0, 1, seqs, 2, CSD_ATTN_F_FUSED_KV, 0, 0, 1, 0),
			S_FIELD);
	CU_ASSERT_EQUAL(seq_len(r.ctx, 0), 0);	/* layer 0 empty */
	CU_ASSERT_EQUAL(csd_ctx_query(r.ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(u.tokens, 27);
	CU_ASSERT_EQUAL(u.inflight, 0);

	/* tags: busy, read length, unknown, double read */
	CU_ASSERT_EQUAL(raw_read(id, t5, outlen, NULL), S_VS(TAG_INVALID));
	CU_ASSERT_EQUAL(SUB(t5, 1, seqs, 2, 0, 0, 0, 0, 0), S_OK);
	CU_ASSERT_EQUAL(SUB(t5, 1, seqs, 2, 0, 0, 0, 0, 0), S_VS(TAG_BUSY));
	CU_ASSERT_EQUAL(csd_ctx_query(r.ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(u.inflight, 1);
	/* a sequence with an unread call cannot be reset */
	CU_ASSERT_EQUAL(csd_seq_reset(r.ctx, 0), -EBUSY);
	CU_ASSERT_EQUAL(raw_read(id, t5, outlen + 4, NULL), S_VS(LENGTH));
	CU_ASSERT_EQUAL(raw_read(id, t5, outlen + 2 * qh * 4, NULL),
			S_VS(LENGTH));	/* LSE not requested */
	CU_ASSERT_EQUAL(raw_read(id, t5, outlen, &res), S_OK);
	CU_ASSERT_EQUAL((uint32_t)res, 27);
	CU_ASSERT_EQUAL(raw_read(id, t5, outlen, NULL), S_VS(TAG_INVALID));
	CU_ASSERT_EQUAL(raw_read(id, info.max_tags, outlen, NULL), S_FIELD);
	CU_ASSERT_EQUAL(csd_seq_reset(r.ctx, 2), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(r.ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(u.inflight, 0);
	CU_ASSERT_EQUAL(u.tokens, 20);
	/* destroy discards an unread result */
	CU_ASSERT_EQUAL(SUB(t7, 1, seqs, 1, 0, 0, 0, 0, 0), S_OK);
	rc_fini(&r);
#undef SUB
}

static void test_attn_stats(void)
{
	static const uint32_t lens[2] = { 40, 9 };
	struct ref_ctx r;
	struct csd_dev_stats a, b;
	float q[2 * 2 * 64] = { 0 }, out[2 * 2 * 64];
	uint32_t seqs[2] = { 0, 1 };
	struct csd_attn_req req = { .layer = 1, .nseq = 2, .seqs = seqs,
				    .q = q, .out = out };
	struct csd_attn_result res;

	rc_init(&r, 2, 2, 64, CSD_KV_F16, 2, lens, 64);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &a), 0);
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, &res), 0);
	CU_ASSERT_EQUAL(res.tokens, 49);
	if (info.read_lat_ns)	/* not for zero-latency profiles */
		CU_ASSERT(res.modeled_ns > 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &b), 0);
	/* other users of the drive can only add */
	CU_ASSERT(b.attn_calls >= a.attn_calls + 1);
	CU_ASSERT(b.attn_seqs >= a.attn_seqs + 2);
	CU_ASSERT(b.attn_tokens >= a.attn_tokens + 49);
	CU_ASSERT(b.flash_bytes_read >= a.flash_bytes_read + 49 * 2 * 256);
	CU_ASSERT(b.commands >= a.commands + 3);
	if (info.read_lat_ns)
		CU_ASSERT(b.modeled_ns > a.modeled_ns);
	rc_fini(&r);
}

/*
 * NO_SPACE needs a small drive: only checked when the drive under test is
 * the embedded one, on a second embedded drive of 2 MiB.
 */
static void test_no_space(void)
{
	struct csd_dev *small = NULL;
	struct csd_ctx *ctx = NULL;
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 8, .q_heads = 8, .head_dim = 128,
		.dtype = CSD_KV_F16, .max_seqs = 4, .max_tokens = 1u << 20,
	};
	size_t row = 8 * 128 * 2;
	uint32_t chunk = 256, len = 0, i;
	char *buf = calloc(chunk, row);
	int rc = 0;

	CU_ASSERT_FATAL(buf != NULL);
	if (strcmp(info.transport, "embedded")) {
		cu_skip("NO_SPACE: needs the embedded transport");
		free(buf);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:capacity=2M", &small), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(small, &p, &ctx), 0);
	for (i = 0; i < 1000; i++) {
		rc = csd_kv_append(ctx, 0, 0, len, chunk, buf, buf);
		if (rc)
			break;
		len += chunk;
	}
	CU_ASSERT_EQUAL(rc, -ENOSPC);
	CU_ASSERT(len > 0);
	/* all or nothing: the length did not move, reads still work */
	{
		uint32_t l = 0;

		CU_ASSERT_EQUAL(csd_ctx_query(ctx, NULL, &l, 1), 1);
		CU_ASSERT_EQUAL(l, len);
	}
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, len - 1, 1, buf, buf), 0);
	/* reclaim: after a reset the space can be used again */
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 0), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, chunk, buf, buf), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(small);
	free(buf);
}

/*
 * SparF (v0.2): field checks change nothing; libcsd parameter checks;
 * k >= n equals dense; a ratio reads fewer flash bytes.
 */
static void test_attn_sparse(void)
{
	static const uint32_t lens[2] = { 2100, 30 };
	const uint32_t qh = 4, hd = 64;
	size_t row = 2 * 64 * 2, qn = 2 * (size_t)qh * hd;
	float *q = malloc(qn * 4), *o1 = malloc(qn * 4), *o2 = malloc(qn * 4);
	uint32_t seqs[2] = { 0, 1 }, id, i;
	struct csd_attn_req req = { .layer = 1, .nseq = 2, .seqs = seqs };
	struct csd_dev_stats a, b, c;
	struct csd_ctx_usage u;
	struct ref_ctx r;
	uint64_t dense;

	CU_ASSERT_FATAL(q && o1 && o2);
	if (!(info.features & CSD_FEAT_SPARSE)) {
		cu_skip("drive without SparF (features bit 5)");
		goto out;
	}
	CU_ASSERT_EQUAL(info.spec_version, CSD_SPEC_VERSION);
	rc_init(&r, 2, qh, hd, CSD_KV_F16, 2, lens, 2100);
	id = csd_ctx_get_id(r.ctx);
	for (i = 0; i < qn; i++)
		q[i] = (float)((int)(i * 7919 % 255) - 127) / 64.0f;
#define SUB(fl, win, c3) \
	raw_submit(id, 0, 1, seqs, 2, fl, qh, hd, row, win, 0, c3, 0)
	CU_ASSERT_EQUAL(SUB(CSD_ATTN_F_SPARSE, 8, CSD_CDW3_SPARSE(8, 10)),
			S_FIELD);
	CU_ASSERT_EQUAL(SUB(CSD_ATTN_F_SPARSE_FRAC, 0, 0), S_FIELD);
	CU_ASSERT_EQUAL(SUB(0, 0, CSD_CDW3_SPARSE(8, 10)), S_FIELD);
	CU_ASSERT_EQUAL(SUB(CSD_ATTN_F_SPARSE, 0, CSD_CDW3_SPARSE(8, 0)),
			S_FIELD);
	CU_ASSERT_EQUAL(SUB(CSD_ATTN_F_SPARSE, 0, CSD_CDW3_SPARSE(65, 10)),
			S_FIELD);
	CU_ASSERT_EQUAL(SUB(1u << 4, 0, 0), S_FIELD);
#undef SUB
	CU_ASSERT_EQUAL(csd_ctx_query(r.ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(u.inflight, 0);

	/* libcsd parameter checks */
	req.q = q;
	req.out = o2;
	req.flags = CSD_ATTN_SPARSE;
	req.sparse.ratio = 1.5f;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.ratio = -0.1f;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.ratio = NAN;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.ratio = 0;
	req.sparse.r = 0;
	req.sparse.k = 10;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.r = hd + 1;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.r = 8;
	req.sparse.k = 0;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.sparse.k = 10;
	req.window = 4;
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), -EINVAL);
	req.window = 0;

	/* k >= n: exactly dense */
	req.flags = 0;
	req.out = o1;
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &a), 0);
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &b), 0);
	dense = b.flash_bytes_read - a.flash_bytes_read;
	req.flags = CSD_ATTN_SPARSE;
	req.out = o2;
	req.sparse.k = 1u << 30;	/* capped: all tokens */
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), 0);
	CU_ASSERT_EQUAL(memcmp(o1, o2, qn * 4), 0);
	/* ratio 1/8: finite output, fewer bytes read than dense */
	memset(&req.sparse, 0, sizeof(req.sparse));
	req.sparse.ratio = 0.125f;
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &c), 0);
	CU_ASSERT_EQUAL(csd_attn_run(r.ctx, &req, NULL), 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &a), 0);
	for (i = 0; i < qn; i++)
		CU_ASSERT(isfinite(o2[i]));
	if (!strcmp(info.transport, "embedded"))	/* no other users */
		CU_ASSERT(a.flash_bytes_read - c.flash_bytes_read < dense);
	rc_fini(&r);
out:
	free(q);
	free(o1);
	free(o2);
}

static CU_TestInfo admin_tests[] = {
	{ "identify_ctrl", test_identify_ctrl },
	{ "identify_ns_and_errors", test_identify_ns_and_errors },
	{ "invalid_opcodes", test_invalid_opcodes },
	{ "log_pages", test_log_pages },
	{ "features", test_features },
	{ "flush", test_flush },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo ctx_tests[] = {
	{ "lifecycle", test_ctx_lifecycle },
	{ "create_errors", test_ctx_create_errors },
	{ "limit", test_ctx_limit },
	{ "seq_reset", test_seq_reset },
	{ "no_space", test_no_space },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo kv_tests[] = {
	{ "dtypes_boundaries", test_kv_dtypes },
	{ "errors_state_unchanged", test_kv_errors },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo attn_tests[] = {
	{ "dense", test_attn_dense },
	{ "fused", test_attn_fused },
	{ "window", test_attn_window },
	{ "lse_gqa_batch", test_attn_lse_gqa_batch },
	{ "errors", test_attn_errors },
	{ "stats", test_attn_stats },
	{ "sparse", test_attn_sparse },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "admin", suite_init, suite_fini, admin_tests },
	{ "ctx", suite_init, suite_fini, ctx_tests },
	{ "kv", suite_init, suite_fini, kv_tests },
	{ "attn", suite_init, suite_fini, attn_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
