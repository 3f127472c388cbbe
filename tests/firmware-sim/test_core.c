// SPDX-License-Identifier: MIT
/*
 * test_core.c - firmware core: wire layout, the spec's SQE examples,
 * configuration parsing, a table of malformed commands (each gets its
 * documented status with DNR and changes nothing), and functional tests of
 * contexts, KV, attention, tags, pacing and the admin commands.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cu_main.h"
#include "csdfw.h"
#include "fw_helpers.h"

#define OPTS_FAST "profile=fast,capacity=256M,threads=2,tags=16,attn_seqs=4," \
		  "contexts=4,xfer=1M,seqs=64,tokens=65536"

static struct csdfw *open_dev(const char *opts)
{
	struct csdfw_config cfg;
	struct csdfw *fw = NULL;
	char err[128];

	csdfw_config_default(&cfg);
	if (csdfw_config_parse(&cfg, opts, err, sizeof(err))) {
		fprintf(stderr, "config: %s\n", err);
		return NULL;
	}
	if (csdfw_create(&cfg, &fw))
		return NULL;
	return fw;
}

/* ---- wire layout ------------------------------------------------------- */

#define OFF(t, f, o) CU_ASSERT_EQUAL(offsetof(struct t, f), o)

static void test_wire_offsets(void)
{
	OFF(csd_sqe, opcode, 0);
	OFF(csd_sqe, flags, 1);
	OFF(csd_sqe, cid, 2);
	OFF(csd_sqe, nsid, 4);
	OFF(csd_sqe, cdw2, 8);
	OFF(csd_sqe, cdw3, 12);
	OFF(csd_sqe, mptr, 16);
	OFF(csd_sqe, prp1, 24);
	OFF(csd_sqe, prp2, 32);
	OFF(csd_sqe, cdw10, 40);
	OFF(csd_sqe, cdw11, 44);
	OFF(csd_sqe, cdw12, 48);
	OFF(csd_sqe, cdw13, 52);
	OFF(csd_sqe, cdw14, 56);
	OFF(csd_sqe, cdw15, 60);
	OFF(csd_cqe, dw0, 0);
	OFF(csd_cqe, dw1, 4);
	OFF(csd_cqe, sq_head, 8);
	OFF(csd_cqe, sq_id, 10);
	OFF(csd_cqe, cid, 12);
	OFF(csd_cqe, status, 14);

	OFF(csd_ctx_desc, layers, 0);
	OFF(csd_ctx_desc, kv_heads, 2);
	OFF(csd_ctx_desc, q_heads, 4);
	OFF(csd_ctx_desc, head_dim, 6);
	OFF(csd_ctx_desc, dtype, 8);
	OFF(csd_ctx_desc, rsvd0, 9);
	OFF(csd_ctx_desc, max_seqs, 12);
	OFF(csd_ctx_desc, max_tokens, 16);
	OFF(csd_ctx_desc, flags, 20);
	OFF(csd_ctx_desc, rsvd1, 24);

	OFF(csd_ctx_info, p.max_seqs, 12);
	OFF(csd_ctx_info, p.max_tokens, 16);
	OFF(csd_ctx_info, ctx_id, 20);
	OFF(csd_ctx_info, seqs_used, 24);
	OFF(csd_ctx_info, inflight, 28);
	OFF(csd_ctx_info, bytes_used, 32);
	OFF(csd_ctx_info, tokens, 40);
	OFF(csd_ctx_info, tokens_per_page, 48);
	OFF(csd_seq_info, max_len, 4);

	OFF(csd_id_ctrl, vid, 0);
	OFF(csd_id_ctrl, ssvid, 2);
	OFF(csd_id_ctrl, sn, 4);
	OFF(csd_id_ctrl, fr, 64);
	OFF(csd_id_ctrl, mdts, 77);
	OFF(csd_id_ctrl, cntlid, 78);
	OFF(csd_id_ctrl, lpa, 261);
	OFF(csd_id_ctrl, cqes, 513);
	OFF(csd_id_ctrl, maxcmd, 514);
	OFF(csd_id_ctrl, oncs, 520);
	OFF(csd_id_vs, magic, 0);
	OFF(csd_id_vs, spec_version, 4);
	OFF(csd_id_vs, dtypes, 8);
	OFF(csd_id_vs, features, 12);
	OFF(csd_id_vs, min_head_dim, 16);
	OFF(csd_id_vs, max_head_dim, 18);
	OFF(csd_id_vs, head_dim_align, 20);
	OFF(csd_id_vs, max_layers, 22);
	OFF(csd_id_vs, max_kv_heads, 24);
	OFF(csd_id_vs, max_q_heads, 26);
	OFF(csd_id_vs, max_tags, 28);
	OFF(csd_id_vs, nchannels, 30);
	OFF(csd_id_vs, max_contexts, 32);
	OFF(csd_id_vs, max_seqs, 36);
	OFF(csd_id_vs, max_tokens, 40);
	OFF(csd_id_vs, max_attn_seqs, 44);
	OFF(csd_id_vs, max_xfer, 48);
	OFF(csd_id_vs, page_size, 52);
	OFF(csd_id_vs, pages_per_block, 56);
	OFF(csd_id_vs, threads, 60);
	OFF(csd_id_vs, capacity, 64);
	OFF(csd_id_vs, chan_mbps, 72);
	OFF(csd_id_vs, link_mbps, 76);
	OFF(csd_id_vs, read_lat_ns, 80);
	OFF(csd_id_vs, prog_lat_ns, 84);
	OFF(csd_id_vs, cmd_overhead_ns, 88);
	OFF(csd_id_vs, compute_gflops, 92);
	OFF(csd_id_vs, fw_version, 96);
	OFF(csd_id_vs, simd, 112);
	OFF(csd_id_vs, profile, 128);
	OFF(csd_id_vs, rsvd, 144);
	OFF(csd_id_ns, nsze, 0);
	OFF(csd_id_ns, ncap, 8);
	OFF(csd_id_ns, nuse, 16);
	OFF(csd_id_ns, nsfeat, 24);
	OFF(csd_id_ns, nlbaf, 25);
	OFF(csd_id_ns, flbas, 26);

	OFF(csd_log_health, temperature, 1);
	OFF(csd_log_health, avail_spare, 3);
	OFF(csd_log_health, spare_thresh, 4);
	OFF(csd_log_health, percent_used, 5);
	OFF(csd_log_health, data_units_written, 48);
	OFF(csd_log_health, host_reads, 64);
	OFF(csd_log_health, host_writes, 80);
	OFF(csd_log_health, ctrl_busy_time, 96);
	OFF(csd_log_health, power_cycles, 112);
	OFF(csd_log_health, power_on_hours, 128);
	OFF(csd_log_health, num_err_log_entries, 176);

	OFF(csd_log_stats, kv_bytes_stored, 0);
	OFF(csd_log_stats, flash_bytes_used, 8);
	OFF(csd_log_stats, flash_bytes_read, 16);
	OFF(csd_log_stats, flash_bytes_written, 24);
	OFF(csd_log_stats, host_bytes_in, 32);
	OFF(csd_log_stats, host_bytes_out, 40);
	OFF(csd_log_stats, attn_calls, 48);
	OFF(csd_log_stats, attn_seqs, 56);
	OFF(csd_log_stats, attn_tokens, 64);
	OFF(csd_log_stats, commands, 72);
	OFF(csd_log_stats, errors, 80);
	OFF(csd_log_stats, modeled_ns, 88);
	OFF(csd_log_stats, busy_ns, 96);
	OFF(csd_log_stats, contexts, 104);
	OFF(csd_log_stats, blocks_free, 112);
	OFF(csd_log_stats, blocks_total, 120);
	OFF(csd_log_stats, rsvd, 128);

	OFF(csd_log_ctx_entry, ctx_id, 0);
	OFF(csd_log_ctx_entry, layers, 4);
	OFF(csd_log_ctx_entry, kv_heads, 6);
	OFF(csd_log_ctx_entry, q_heads, 8);
	OFF(csd_log_ctx_entry, head_dim, 10);
	OFF(csd_log_ctx_entry, dtype, 12);
	OFF(csd_log_ctx_entry, max_seqs, 16);
	OFF(csd_log_ctx_entry, max_tokens, 20);
	OFF(csd_log_ctx_entry, seqs_used, 24);
	OFF(csd_log_ctx_entry, bytes_used, 32);
	OFF(csd_log_ctx_entry, tokens, 40);
	OFF(csd_log_ctx_entry, rsvd1, 48);

	CU_ASSERT_EQUAL(CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_FULL), 0x702);
	CU_ASSERT_EQUAL(CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_FULL) |
			CSD_STATUS_DNR, 0x4702);
	CU_ASSERT_EQUAL(CSD_SPEC_VERSION, 0x00000002);	/* v0.2: SparF */
	CU_ASSERT_EQUAL(CSD_ID_MAGIC, 0x31445343u);
	CU_ASSERT_EQUAL(memcmp("CSD1", &(uint32_t){ CSD_ID_MAGIC }, 4), 0);
}

/* ---- the spec's examples (Documentation/command-set.md, "Examples") ---- */

static const uint8_t ex_create[64] = {
	0x81, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
	[40] = 0x10,
};
static const uint8_t ex_create_params[64] = {
	0x08, 0x00, 0x08, 0x00, 0x20, 0x00, 0x80, 0x00,
	0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
	0x00, 0x10, 0x00, 0x00,
};
static const uint8_t ex_append[64] = {
	0x85, 0x00, 0x07, 0x00, 0x01, 0x00, 0x00, 0x00,
	[40] = 0x00, 0x10, 0x00, 0x00,
	[48] = 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x05, 0x00,
	0x10, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
};
static const uint8_t ex_submit[64] = {
	0x89, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00,
	0x00, 0x04, 0x00, 0x00,
	[40] = 0x02, 0x28, 0x00, 0x00,
	[48] = 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x05, 0x00,
	0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x3e,
};
static const uint8_t ex_read[64] = {
	0x8e, 0x00, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00,
	[40] = 0x40, 0x20, 0x00, 0x00,
	[48] = 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
};

static void test_spec_examples(void)
{
	struct csd_ctx_desc p;
	struct csd_sqe s;
	struct csd_cqe cqe;
	struct csdfw *fw = open_dev(OPTS_FAST);
	uint8_t *buf;
	uint32_t id;
	float scale = 0.125f;
	size_t i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	/* CTX_CREATE: from fields == documented bytes, and back */
	memset(&p, 0, sizeof(p));
	p.layers = 8;
	p.kv_heads = 8;
	p.q_heads = 32;
	p.head_dim = 128;
	p.dtype = CSD_DTYPE_F16;
	p.max_seqs = 4;
	p.max_tokens = 4096;
	CU_ASSERT_EQUAL(memcmp(&p, ex_create_params, 64), 0);
	s = fwt_io(CSD_IO_CTX_CREATE, 0, sizeof(p));
	s.cid = 1;
	CU_ASSERT_EQUAL(memcmp(&s, ex_create, 64), 0);
	memcpy(&s, ex_create, 64);
	CU_ASSERT_EQUAL(s.opcode, CSD_IO_CTX_CREATE);
	CU_ASSERT_EQUAL(s.cdw10 * 4, sizeof(p));
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, &p, sizeof(p), &cqe), 0);
	id = cqe.dw0;
	CU_ASSERT_EQUAL(id, 1);
	CU_ASSERT_EQUAL(cqe.cid, 1);

	/* tokens 0..15 of (seq 3, layer 5) first, so the example appends 16.. */
	buf = calloc(1, 16 * 2 * 2048);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 3, 5, 0, 16, buf,
			       16 * 2 * 2048, NULL), 0);

	s = fwt_io(CSD_IO_KV_APPEND, 1, 4 * 2 * 2048);
	s.cid = 7;
	s.cdw13 = 3 | 5 << 16;
	s.cdw14 = 16;
	s.cdw15 = 4;
	CU_ASSERT_EQUAL(memcmp(&s, ex_append, 64), 0);
	memcpy(&s, ex_append, 64);
	CU_ASSERT_EQUAL(CSD_CDW13_SEQ(s.cdw13), 3);
	CU_ASSERT_EQUAL(CSD_CDW13_LAYER(s.cdw13), 5);
	CU_ASSERT_EQUAL(s.cdw10, 4096);
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, buf, 16384, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 20);
	CU_ASSERT_EQUAL(cqe.cid, 7);

	s = fwt_attn_sqe(1, 2, 5, 2, CSD_ATTN_F_FUSED_KV | CSD_ATTN_F_LSE,
			 scale, 1024, 40968);
	s.cid = 8;
	CU_ASSERT_EQUAL(memcmp(&s, ex_submit, 64), 0);
	memcpy(&s, ex_submit, 64);
	CU_ASSERT_EQUAL(CSD_CDW13_TAG(s.cdw13), 2);
	CU_ASSERT_EQUAL(CSD_CDW14_NSEQ(s.cdw14), 2);
	CU_ASSERT_EQUAL(CSD_CDW14_FLAGS(s.cdw14), 3);
	CU_ASSERT_EQUAL(s.cdw10 * 4u, 40968);
	((uint32_t *)buf)[0] = 3;
	((uint32_t *)buf)[1] = 0;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, buf, 40968, &cqe), 0);

	s = fwt_io(CSD_IO_ATTN_READ, 1, 33024);
	s.cid = 9;
	s.cdw13 = 2;
	CU_ASSERT_EQUAL(memcmp(&s, ex_read, 64), 0);
	memcpy(&s, ex_read, 64);
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, buf, 33024, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 22);	/* 21 + 1 tokens */
	/* all-zero K and V: softmax is uniform, out = 0, lse = log(n) */
	for (i = 0; i < 32; i++) {
		float lse0, lse1;

		memcpy(&lse0, buf + 32768 + i * 4, 4);
		memcpy(&lse1, buf + 32768 + 128 + i * 4, 4);
		CU_ASSERT_DOUBLE_EQUAL(lse0, log(21.0), 1e-4);
		CU_ASSERT_DOUBLE_EQUAL(lse1, 0.0, 1e-5);
	}
	free(buf);
	csdfw_destroy(fw);
}

/*
 * The byte blocks of command-set.md section 7 themselves: parsed from the
 * document and compared with the arrays above, so that the text and the
 * test cannot drift apart.  Lines "    OO: xx xx ..." (OO the hex offset)
 * form a block; "    AA..BB: xx" fills a range; any other line ends it.
 */
static FILE *open_spec_doc(void)
{
	static const char rel[] = "/../../Documentation/command-set.md";
	char src[512], path[1200], exe[512];
	char *slash;
	ssize_t n;
	FILE *f;

	snprintf(src, sizeof(src), "%s", __FILE__);
	slash = strrchr(src, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s%s", src, rel);
	f = fopen(path, "r");
	if (f || src[0] == '/')
		return f;
	/* __FILE__ is relative to the build root: exe is in
	 * <build>/tests/firmware-sim */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/../../%s%s", exe, src, rel);
	return fopen(path, "r");
}

#define DOC_MAX_BLOCKS	8

static int parse_doc_blocks(FILE *f, uint8_t blk[][64], size_t *blen)
{
	char line[256];
	bool in7 = false, open_blk = false;
	int nb = 0;

	while (fgets(line, sizeof(line), f)) {
		unsigned int a, b, v;
		int pos = 0, k;
		char *p;

		if (!strncmp(line, "## ", 3)) {
			in7 = !strncmp(line, "## 7.", 5);
			open_blk = false;
			continue;
		}
		if (!in7)
			continue;
		if (strncmp(line, "    ", 4) ||
		    (sscanf(line + 4, "%x..%x:%n", &a, &b, &pos) != 2 &&
		     sscanf(line + 4, "%x:%n", &a, &pos) != 1) || !pos) {
			open_blk = false;
			continue;
		}
		if (!open_blk) {
			if (nb == DOC_MAX_BLOCKS)
				return -1;
			memset(blk[nb], 0, 64);
			blen[nb] = 0;
			nb++;
			open_blk = true;
		}
		p = line + 4 + pos;
		if (strstr(line, "..")) {
			if (sscanf(p, "%x", &v) != 1 || b >= 64 || a > b)
				return -1;
			for (k = (int)a; k <= (int)b; k++)
				blk[nb - 1][k] = (uint8_t)v;
			blen[nb - 1] = b + 1;
			continue;
		}
		for (k = 0; a + (unsigned int)k < 64; k++) {
			int used = 0;

			if (sscanf(p, "%2x%n", &v, &used) != 1)
				break;
			blk[nb - 1][a + (unsigned int)k] = (uint8_t)v;
			p += used;
		}
		if (a + (unsigned int)k > blen[nb - 1])
			blen[nb - 1] = a + (unsigned int)k;
	}
	return nb;
}

static void test_spec_examples_text(void)
{
	static const uint8_t *const want[] = {
		ex_create, ex_create_params, ex_append, ex_submit, ex_read,
	};
	uint8_t blk[DOC_MAX_BLOCKS][64];
	size_t blen[DOC_MAX_BLOCKS], i;
	FILE *f = open_spec_doc();
	int nb;

	if (!f) {
		cu_skip("Documentation/command-set.md not found");
		return;
	}
	nb = parse_doc_blocks(f, blk, blen);
	fclose(f);
	/* CTX_CREATE SQE and data, KV_APPEND, ATTN_SUBMIT, ATTN_READ */
	CU_ASSERT_EQUAL_FATAL(nb, 5);
	for (i = 0; i < 5; i++) {
		CU_ASSERT_EQUAL(blen[i], 64);
		if (memcmp(blk[i], want[i], 64))
			fprintf(stderr, "\n  command-set.md example block %zu "
				"differs from the test's bytes", i);
		CU_ASSERT_EQUAL(memcmp(blk[i], want[i], 64), 0);
	}
}

/* ---- configuration ------------------------------------------------------ */

static void test_config(void)
{
	struct csdfw_config cfg, keep;
	char err[128];

	csdfw_config_default(&cfg);
	CU_ASSERT_EQUAL(cfg.capacity, 16ull << 30);
	CU_ASSERT_EQUAL(cfg.channels, 8);
	CU_ASSERT_EQUAL(cfg.page_size, 4096);
	CU_ASSERT_EQUAL(cfg.pages_per_block, 64);
	CU_ASSERT(cfg.threads >= 1);
	CU_ASSERT_EQUAL(cfg.pacing, 0);
	CU_ASSERT_EQUAL(cfg.max_contexts, 64);
	CU_ASSERT_EQUAL(cfg.max_seqs, 4096);
	CU_ASSERT_EQUAL(cfg.max_tokens, 1048576);
	CU_ASSERT_EQUAL(cfg.max_tags, 1024);
	CU_ASSERT_EQUAL(cfg.max_attn_seqs, 1024);
	CU_ASSERT_EQUAL(cfg.max_xfer, 64u << 20);
	CU_ASSERT_STRING_EQUAL(cfg.timing.name, "instinfer");
	CU_ASSERT_DOUBLE_EQUAL(cfg.timing.chan_bytes_per_s, 1.4e9, 1);
	CU_ASSERT_DOUBLE_EQUAL(cfg.timing.link_bytes_per_s, 7.0e9, 1);
	CU_ASSERT_EQUAL(cfg.timing.read_lat_ns, 36000);
	CU_ASSERT_EQUAL(cfg.timing.prog_lat_ns, 185000);

	CU_ASSERT_EQUAL(csdfw_config_parse(&cfg, "capacity=1G,channels=4,"
		"chan_mbps=500,profile=nvmevirt,page=8K,block=32,tags=8,"
		"pacing=1,xfer=2M,read_ns=1000,backing=/tmp/x", err,
		sizeof(err)), 0);
	CU_ASSERT_EQUAL(cfg.capacity, 1ull << 30);
	CU_ASSERT_EQUAL(cfg.channels, 4);
	CU_ASSERT_EQUAL(cfg.page_size, 8192);
	CU_ASSERT_EQUAL(cfg.pages_per_block, 32);
	CU_ASSERT_EQUAL(cfg.max_tags, 8);
	CU_ASSERT_EQUAL(cfg.pacing, 1);
	CU_ASSERT_EQUAL(cfg.max_xfer, 2u << 20);
	CU_ASSERT_STRING_EQUAL(cfg.timing.name, "nvmevirt");
	CU_ASSERT_DOUBLE_EQUAL(cfg.timing.chan_bytes_per_s, 500e6, 1);
	CU_ASSERT_DOUBLE_EQUAL(cfg.timing.link_bytes_per_s, 3.2e9, 1);
	CU_ASSERT_EQUAL(cfg.timing.read_lat_ns, 1000);
	CU_ASSERT_STRING_EQUAL(cfg.backing, "/tmp/x");
	CU_ASSERT_EQUAL(csdfw_config_parse(&cfg, "", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(csdfw_config_parse(&cfg, NULL, err, sizeof(err)), 0);

	keep = cfg;
	{
		static const struct { const char *opt, *word; } bad[] = {
			{ "foo=1", "foo" },
			{ "channels=0", "channels" },
			{ "channels=65", "channels" },
			{ "capacity=12Q", "capacity" },
			{ "capacity=-1", "capacity" },
			{ "capacity=", "capacity" },
			{ "pacing=2", "pacing" },
			{ "simd=sse9", "simd" },
			{ "profile=nope", "profile" },
			{ "channels", "channels" },
			{ "page=5000", "page" },
			{ "tags=0", "tags" },
			{ "threads=x", "threads" },
			{ "capacity=99999999T", "capacity" },
			{ "capacity=4K", "capacity" },
		};
		size_t i;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			err[0] = '\0';
			CU_ASSERT_EQUAL(csdfw_config_parse(&cfg, bad[i].opt,
							   err, sizeof(err)),
					-EINVAL);
			if (!strstr(err, bad[i].word))
				fprintf(stderr, "  '%s' -> '%s'\n", bad[i].opt,
					err);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].word));
			CU_ASSERT_EQUAL(memcmp(&cfg, &keep, sizeof(cfg)), 0);
		}
	}
}

/* ---- malformed commands --------------------------------------------------- */

/*
 * Fixture: ctx 1 "A" (layers 4, kv 2, q 8, hd 64, f16, 8 seqs x 64 tokens,
 * row 256 B): seq 0 has 40 tokens in every layer, seq 1 is full (64) at
 * layer 0, seq 3 has 20 tokens at layer 1; tag 5 holds an unread attention
 * over seq 0 layer 0.  ctx 2 "B" (layers 2, kv 1, q 2, hd 128, bf16,
 * 4 seqs x 100 tokens) holds random data.
 */
#define A 1
#define B 2
#define ROW_A 256
#define KV_A(n) ((n) * 2 * ROW_A)
#define SUB_A(n) ((n) * (4 + 8 * 64 * 4))
#define SUBF_A(n) (SUB_A(n) + (n) * 2 * ROW_A)
#define RD_A(n) ((n) * 8 * 64 * 4)
#define NAN_BITS 0x7fc00000u
#define INF_BITS 0x7f800000u
#define NEG1_BITS 0xbf800000u
#define FUSED (CSD_ATTN_F_FUSED_KV << 16)
#define LSE (CSD_ATTN_F_LSE << 16)

struct bad_cmd {
	const char *name;
	enum csdfw_queue q;
	struct csd_sqe sqe;
	int len;		/* data bytes; -1 = NDT * 4 */
	uint32_t w[4];		/* first dwords of the data */
	int pmut;		/* CTX_CREATE: which params mutation */
	uint16_t st;
};

#define IOQ CSDFW_Q_IO
#define ADQ CSDFW_Q_ADMIN
#define KVR(ctx, seq, l, st, n) .opcode = CSD_IO_KV_READ, .nsid = 1, \
	.cdw10 = KV_A(n) / 4, .cdw12 = ctx, .cdw13 = (seq) | (l) << 16, \
	.cdw14 = st, .cdw15 = n
#define KVW(ctx, seq, l, st, n) .opcode = CSD_IO_KV_APPEND, .nsid = 1, \
	.cdw10 = KV_A(n) / 4, .cdw12 = ctx, .cdw13 = (seq) | (l) << 16, \
	.cdw14 = st, .cdw15 = n
#define SUB(ctx, tag, l, n, fl, len) .opcode = CSD_IO_ATTN_SUBMIT, \
	.nsid = 1, .cdw10 = (len) / 4, .cdw12 = ctx, \
	.cdw13 = (tag) | (l) << 16, .cdw14 = (n) | (fl)
#define RD(ctx, tag, len) .opcode = CSD_IO_ATTN_READ, .nsid = 1, \
	.cdw10 = (len) / 4, .cdw12 = ctx, .cdw13 = tag
#define NOD(opc, ctx) .opcode = opc, .nsid = 1, .cdw12 = ctx
#define QRY(ctx, len) .opcode = CSD_IO_CTX_QUERY, .nsid = 1, \
	.cdw10 = (len) / 4, .cdw12 = ctx
#define CRT(len) .opcode = CSD_IO_CTX_CREATE, .nsid = 1, .cdw10 = (len) / 4

enum { PM_NONE, PM_LAYERS0, PM_LAYERS257, PM_KV0, PM_KV257, PM_QNOTMUL,
       PM_GQA128, PM_Q1025, PM_HD48, PM_HD72, PM_HD272, PM_DTYPE3,
       PM_SEQS0, PM_SEQSBIG, PM_TOK0, PM_TOKBIG, PM_FLAGS, PM_RSVD0,
       PM_RSVD1, PM_Q0, PM_FLAGS_SHAPE };

/* entries override fields of the macro-built base command on purpose */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
#ifdef __clang__
#pragma clang diagnostic ignored "-Winitializer-overrides"
#endif
static const struct bad_cmd bad_cmds[] = {
	/* 1. opcode */
	{ "io: identify opcode", IOQ, { .opcode = 0x06, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0x01", IOQ, { .opcode = 0x01, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0x02", IOQ, { .opcode = 0x02, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0x80", IOQ, { .opcode = 0x80, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0x82", IOQ, { .opcode = 0x82, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0x8f", IOQ, { .opcode = 0x8f, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "io: opcode 0xff", IOQ, { .opcode = 0xff, .nsid = 1 }, 0, {0}, 0, ST_IOPC },
	{ "admin: opcode 0x00", ADQ, { .opcode = 0x00 }, 0, {0}, 0, ST_IOPC },
	{ "admin: ctx-create opcode", ADQ, { CRT(64) }, 64, {0}, 0, ST_IOPC },
	{ "admin: kv-append opcode", ADQ, { KVW(A, 0, 0, 40, 1) }, -1, {0}, 0, ST_IOPC },
	{ "admin: opcode 0xc0", ADQ, { .opcode = 0xc0 }, 0, {0}, 0, ST_IOPC },
	/* 2. fields */
	{ "flags", IOQ, { KVR(A, 0, 0, 0, 1), .flags = 1 }, -1, {0}, 0, ST_IF },
	{ "flags psdt", IOQ, { KVR(A, 0, 0, 0, 1), .flags = 0x40 }, -1, {0}, 0, ST_IF },
	{ "mptr", IOQ, { KVR(A, 0, 0, 0, 1), .mptr = 0x1000 }, -1, {0}, 0, ST_IF },
	{ "ndm", IOQ, { KVR(A, 0, 0, 0, 1), .cdw11 = 1 }, -1, {0}, 0, ST_IF },
	{ "cdw2 on kv-read", IOQ, { KVR(A, 0, 0, 0, 1), .cdw2 = 1 }, -1, {0}, 0, ST_IF },
	{ "cdw3 on kv-append", IOQ, { KVW(A, 0, 0, 40, 1), .cdw3 = 1 }, -1, {0}, 0, ST_IF },
	{ "cdw3 on attn-submit", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)), .cdw3 = 1 }, -1, {0}, 0, ST_IF },
	{ "attn flag bit 2", IOQ, { SUB(A, 6, 0, 1, 4u << 16, SUB_A(1)) }, -1, {0}, 0, ST_IF },
	{ "attn flag bit 15", IOQ, { SUB(A, 6, 0, 1, 0x8000u << 16, SUB_A(1)) }, -1, {0}, 0, ST_IF },
	{ "seq-reset cdw13 hi", IOQ, { NOD(CSD_IO_SEQ_RESET, A), .cdw13 = 2u << 16 }, 0, {0}, 0, ST_IF },
	{ "seq-reset cdw14", IOQ, { NOD(CSD_IO_SEQ_RESET, A), .cdw13 = 2, .cdw14 = 1 }, 0, {0}, 0, ST_IF },
	{ "attn-read cdw13 hi", IOQ, { RD(A, 5, RD_A(1)), .cdw13 = 5 | 1u << 16 }, -1, {0}, 0, ST_IF },
	{ "attn-read cdw15", IOQ, { RD(A, 5, RD_A(1)), .cdw15 = 1 }, -1, {0}, 0, ST_IF },
	{ "ctx-query cdw13", IOQ, { QRY(A, 64), .cdw13 = 1 }, -1, {0}, 0, ST_IF },
	{ "ctx-destroy cdw14", IOQ, { NOD(CSD_IO_CTX_DESTROY, B), .cdw14 = 1 }, 0, {0}, 0, ST_IF },
	{ "ctx-create cdw12", IOQ, { CRT(64), .cdw12 = 1 }, 64, {0}, 0, ST_IF },
	{ "flush cdw10", IOQ, { .opcode = 0, .nsid = 1, .cdw10 = 1 }, 0, {0}, 0, ST_IF },
	{ "flush cdw3", IOQ, { .opcode = 0, .nsid = 1, .cdw3 = 1 }, 0, {0}, 0, ST_IF },
	{ "nsid 0", IOQ, { KVR(A, 0, 0, 0, 1), .nsid = 0 }, -1, {0}, 0, ST_INS },
	{ "nsid 2", IOQ, { KVR(A, 0, 0, 0, 1), .nsid = 2 }, -1, {0}, 0, ST_INS },
	{ "nsid all on kv-read", IOQ, { KVR(A, 0, 0, 0, 1), .nsid = ~0u }, -1, {0}, 0, ST_INS },
	{ "flush nsid 0", IOQ, { .opcode = 0, .nsid = 0 }, 0, {0}, 0, ST_INS },
	{ "flush nsid 2", IOQ, { .opcode = 0, .nsid = 2 }, 0, {0}, 0, ST_INS },
	{ "ndt > buffer", IOQ, { KVR(A, 0, 0, 0, 1) }, 256, {0}, 0, ST_IF },
	{ "buffer > ndt", IOQ, { KVR(A, 0, 0, 0, 1), .cdw10 = 64 }, 512, {0}, 0, ST_IF },
	{ "odd buffer", IOQ, { KVR(A, 0, 0, 0, 1), .cdw10 = 127 }, 511, {0}, 0, ST_IF },
	{ "ndt without buffer", IOQ, { KVR(A, 0, 0, 0, 1) }, 0, {0}, 0, ST_IF },
	{ "ndt > max_xfer", IOQ, { KVW(A, 0, 0, 40, 2049) }, -1, {0}, 0, ST_IF },
	{ "data on ctx-destroy", IOQ, { NOD(CSD_IO_CTX_DESTROY, B), .cdw10 = 1 }, 4, {0}, 0, ST_IF },
	{ "ndt on ctx-destroy", IOQ, { NOD(CSD_IO_CTX_DESTROY, B), .cdw10 = 1 }, 0, {0}, 0, ST_IF },
	{ "data on seq-reset", IOQ, { NOD(CSD_IO_SEQ_RESET, A), .cdw10 = 1, .cdw13 = 2 }, 4, {0}, 0, ST_IF },
	{ "data on flush", IOQ, { .opcode = 0, .nsid = 1 }, 4, {0}, 0, ST_IF },
	{ "submit tag = max_tags", IOQ, { SUB(A, 16, 0, 1, 0, SUB_A(1)) }, -1, {3}, 0, ST_IF },
	{ "submit tag 0xffff", IOQ, { SUB(A, 0xffff, 0, 1, 0, SUB_A(1)) }, -1, {3}, 0, ST_IF },
	{ "read tag = max_tags", IOQ, { RD(A, 16, RD_A(1)) }, -1, {0}, 0, ST_IF },
	{ "nseq 0", IOQ, { SUB(A, 6, 0, 0, 0, 0) }, 0, {0}, 0, ST_IF },
	{ "nseq > max_attn_seqs", IOQ, { SUB(A, 6, 0, 5, 0, SUB_A(5)) }, -1, {0, 1, 2, 3}, 0, ST_IF },
	{ "append ntok 0", IOQ, { KVW(A, 0, 0, 40, 0) }, 0, {0}, 0, ST_IF },
	{ "read ntok 0", IOQ, { KVR(A, 0, 0, 0, 0) }, 0, {0}, 0, ST_IF },
	{ "scale nan", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)), .cdw15 = NAN_BITS }, -1, {0}, 0, ST_IF },
	{ "scale inf", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)), .cdw15 = INF_BITS }, -1, {0}, 0, ST_IF },
	{ "scale -1", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)), .cdw15 = NEG1_BITS }, -1, {0}, 0, ST_IF },
	/* 3. ranges */
	{ "ctx 0", IOQ, { KVR(0, 0, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "ctx 3 (free slot)", IOQ, { KVR(3, 0, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "ctx 9 (> max)", IOQ, { KVR(9, 0, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "ctx ~0", IOQ, { KVR(~0u, 0, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "append ctx 3", IOQ, { KVW(3, 0, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "reset ctx 3", IOQ, { NOD(CSD_IO_SEQ_RESET, 3) }, 0, {0}, 0, VS(CTX_INVALID) },
	{ "query ctx 3", IOQ, { QRY(3, 64) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "destroy ctx 3", IOQ, { NOD(CSD_IO_CTX_DESTROY, 3) }, 0, {0}, 0, VS(CTX_INVALID) },
	{ "destroy ctx 0", IOQ, { NOD(CSD_IO_CTX_DESTROY, 0) }, 0, {0}, 0, VS(CTX_INVALID) },
	{ "destroy ctx 9", IOQ, { NOD(CSD_IO_CTX_DESTROY, 9) }, 0, {0}, 0, VS(CTX_INVALID) },
	{ "submit ctx 3", IOQ, { SUB(3, 6, 0, 1, 0, SUB_A(1)) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "attn-read ctx 3", IOQ, { RD(3, 5, RD_A(1)) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "read seq 8", IOQ, { KVR(A, 8, 0, 0, 1) }, -1, {0}, 0, VS(SEQ_RANGE) },
	{ "append seq 8", IOQ, { KVW(A, 8, 0, 0, 1) }, -1, {0}, 0, VS(SEQ_RANGE) },
	{ "append seq 0xffff", IOQ, { KVW(A, 0xffff, 0, 0, 1) }, -1, {0}, 0, VS(SEQ_RANGE) },
	{ "reset seq 8", IOQ, { NOD(CSD_IO_SEQ_RESET, A), .cdw13 = 8 }, 0, {0}, 0, VS(SEQ_RANGE) },
	{ "submit seq 8", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)) }, -1, {8}, 0, VS(SEQ_RANGE) },
	{ "submit seq ~0", IOQ, { SUB(A, 6, 0, 2, 0, SUB_A(2)) }, -1, {0, ~0u}, 0, VS(SEQ_RANGE) },
	{ "read layer 4", IOQ, { KVR(A, 0, 4, 0, 1) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "append layer 4", IOQ, { KVW(A, 0, 4, 0, 1) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "append layer 0xffff", IOQ, { KVW(A, 0, 0xffff, 0, 1) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "submit layer 4", IOQ, { SUB(A, 6, 4, 1, 0, SUB_A(1)) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "append short data", IOQ, { KVW(A, 0, 0, 40, 2), .cdw10 = KV_A(1) / 4 }, -1, {0}, 0, VS(LENGTH) },
	{ "append long data", IOQ, { KVW(A, 0, 0, 40, 1), .cdw10 = KV_A(2) / 4 }, -1, {0}, 0, VS(LENGTH) },
	{ "read short data", IOQ, { KVR(A, 0, 0, 0, 2), .cdw10 = KV_A(1) / 4 }, -1, {0}, 0, VS(LENGTH) },
	{ "submit fused len, no flag", IOQ, { SUB(A, 6, 0, 1, 0, SUBF_A(1)) }, -1, {0}, 0, VS(LENGTH) },
	{ "submit fused, short", IOQ, { SUB(A, 6, 0, 1, FUSED, SUB_A(1)) }, -1, {0}, 0, VS(LENGTH) },
	{ "submit nseq 2, data for 1", IOQ, { SUB(A, 6, 0, 2, 0, SUB_A(1)) }, -1, {0}, 0, VS(LENGTH) },
	{ "submit 1 dword", IOQ, { SUB(A, 6, 0, 1, 0, 4) }, -1, {0}, 0, VS(LENGTH) },
	{ "query len 60", IOQ, { QRY(A, 60) }, -1, {0}, 0, VS(LENGTH) },
	{ "query len 68", IOQ, { QRY(A, 68) }, -1, {0}, 0, VS(LENGTH) },
	{ "query len 0", IOQ, { QRY(A, 0) }, 0, {0}, 0, VS(LENGTH) },
	{ "create len 60", IOQ, { CRT(60) }, -1, {0}, 0, VS(LENGTH) },
	{ "create len 68", IOQ, { CRT(68) }, -1, {0}, 0, VS(LENGTH) },
	{ "create len 0", IOQ, { CRT(0) }, 0, {0}, 0, VS(LENGTH) },
	{ "attn-read wrong len", IOQ, { RD(A, 5, RD_A(1) + 32) }, -1, {0}, 0, VS(LENGTH) },
	{ "attn-read short", IOQ, { RD(A, 5, 4) }, -1, {0}, 0, VS(LENGTH) },
	{ "read past len", IOQ, { KVR(A, 0, 0, 39, 2) }, -1, {0}, 0, VS(TOKEN_RANGE) },
	{ "read at len", IOQ, { KVR(A, 0, 0, 40, 1) }, -1, {0}, 0, VS(TOKEN_RANGE) },
	{ "read empty seq", IOQ, { KVR(A, 2, 0, 0, 1) }, -1, {0}, 0, VS(TOKEN_RANGE) },
	{ "read start ~0", IOQ, { KVR(A, 0, 0, ~0u, 1) }, -1, {0}, 0, VS(TOKEN_RANGE) },
	{ "read other layer", IOQ, { KVR(A, 3, 0, 0, 1) }, -1, {0}, 0, VS(TOKEN_RANGE) },
	{ "submit duplicate seqs", IOQ, { SUB(A, 6, 1, 2, 0, SUB_A(2)) }, -1, {3, 3}, 0, ST_IF },
	{ "submit duplicate seqs 3", IOQ, { SUB(A, 6, 1, 3, 0, SUB_A(3)) }, -1, {0, 3, 0}, 0, ST_IF },
	/* 4. ownership / state */
	{ "append start < len", IOQ, { KVW(A, 0, 0, 39, 1) }, -1, {0}, 0, VS(TOKEN_ORDER) },
	{ "append start > len", IOQ, { KVW(A, 0, 0, 41, 1) }, -1, {0}, 0, VS(TOKEN_ORDER) },
	{ "append start 0", IOQ, { KVW(A, 0, 1, 0, 1) }, -1, {0}, 0, VS(TOKEN_ORDER) },
	{ "append to full", IOQ, { KVW(A, 1, 0, 64, 1) }, -1, {0}, 0, VS(CTX_FULL) },
	{ "append past max", IOQ, { KVW(A, 2, 0, 0, 65) }, -1, {0}, 0, VS(CTX_FULL) },
	{ "fused to full", IOQ, { SUB(A, 6, 0, 2, FUSED, SUBF_A(2)) }, -1, {2, 1}, 0, VS(CTX_FULL) },
	{ "submit busy tag", IOQ, { SUB(A, 5, 0, 1, 0, SUB_A(1)) }, -1, {0}, 0, VS(TAG_BUSY) },
	{ "submit busy tag fused", IOQ, { SUB(A, 5, 0, 1, FUSED, SUBF_A(1)) }, -1, {2}, 0, VS(TAG_BUSY) },
	{ "reset busy seq", IOQ, { NOD(CSD_IO_SEQ_RESET, A), .cdw13 = 0 }, 0, {0}, 0, VS(BUSY) },
	{ "read unknown tag", IOQ, { RD(A, 6, RD_A(1)) }, -1, {0}, 0, VS(TAG_INVALID) },
	{ "read unknown tag 15", IOQ, { RD(A, 15, 4) }, -1, {0}, 0, VS(TAG_INVALID) },
	{ "submit empty seq", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)) }, -1, {2}, 0, VS(EMPTY_SEQ) },
	{ "submit one empty", IOQ, { SUB(A, 6, 0, 2, 0, SUB_A(2)) }, -1, {0, 2}, 0, VS(EMPTY_SEQ) },
	{ "submit empty layer", IOQ, { SUB(A, 6, 2, 1, LSE, SUB_A(1)) }, -1, {3}, 0, VS(EMPTY_SEQ) },
	/* create parameters */
	{ "create layers 0", IOQ, { CRT(64) }, -1, {0}, PM_LAYERS0, VS(UNSUPPORTED) },
	{ "create layers 257", IOQ, { CRT(64) }, -1, {0}, PM_LAYERS257, VS(UNSUPPORTED) },
	{ "create kv_heads 0", IOQ, { CRT(64) }, -1, {0}, PM_KV0, VS(UNSUPPORTED) },
	{ "create kv_heads 257", IOQ, { CRT(64) }, -1, {0}, PM_KV257, VS(UNSUPPORTED) },
	{ "create q % kv", IOQ, { CRT(64) }, -1, {0}, PM_QNOTMUL, VS(UNSUPPORTED) },
	{ "create gqa 128", IOQ, { CRT(64) }, -1, {0}, PM_GQA128, VS(UNSUPPORTED) },
	{ "create q_heads 1025", IOQ, { CRT(64) }, -1, {0}, PM_Q1025, VS(UNSUPPORTED) },
	{ "create head_dim 48", IOQ, { CRT(64) }, -1, {0}, PM_HD48, VS(UNSUPPORTED) },
	{ "create head_dim 72", IOQ, { CRT(64) }, -1, {0}, PM_HD72, VS(UNSUPPORTED) },
	{ "create head_dim 272", IOQ, { CRT(64) }, -1, {0}, PM_HD272, VS(UNSUPPORTED) },
	{ "create dtype 3", IOQ, { CRT(64) }, -1, {0}, PM_DTYPE3, VS(UNSUPPORTED) },
	{ "create max_seqs 0", IOQ, { CRT(64) }, -1, {0}, PM_SEQS0, VS(UNSUPPORTED) },
	{ "create max_seqs big", IOQ, { CRT(64) }, -1, {0}, PM_SEQSBIG, VS(UNSUPPORTED) },
	{ "create max_tokens 0", IOQ, { CRT(64) }, -1, {0}, PM_TOK0, VS(UNSUPPORTED) },
	{ "create max_tokens big", IOQ, { CRT(64) }, -1, {0}, PM_TOKBIG, VS(UNSUPPORTED) },
	{ "create flags", IOQ, { CRT(64) }, -1, {0}, PM_FLAGS, ST_IF },
	{ "create rsvd0", IOQ, { CRT(64) }, -1, {0}, PM_RSVD0, ST_IF },
	{ "create rsvd1", IOQ, { CRT(64) }, -1, {0}, PM_RSVD1, ST_IF },
	/* admin */
	{ "identify cns 2", ADQ, { .opcode = 6, .cdw10 = 2 }, 4096, {0}, 0, ST_IF },
	{ "identify cns 0 nsid 2", ADQ, { .opcode = 6, .nsid = 2, .cdw10 = 0 }, 4096, {0}, 0, ST_INS },
	{ "identify cns 0 nsid 0", ADQ, { .opcode = 6, .nsid = 0, .cdw10 = 0 }, 4096, {0}, 0, ST_INS },
	{ "identify 4092 bytes", ADQ, { .opcode = 6, .cdw10 = 1 }, 4092, {0}, 0, ST_IF },
	{ "identify no buffer", ADQ, { .opcode = 6, .cdw10 = 1 }, 0, {0}, 0, ST_IF },
	{ "identify cntid", ADQ, { .opcode = 6, .cdw10 = 1 | 1u << 16 }, 4096, {0}, 0, ST_IF },
	{ "identify cdw11", ADQ, { .opcode = 6, .cdw10 = 1, .cdw11 = 1 }, 4096, {0}, 0, ST_IF },
	{ "identify flags", ADQ, { .opcode = 6, .cdw10 = 1, .flags = 1 }, 4096, {0}, 0, ST_IF },
	{ "log lid 3", ADQ, { .opcode = 2, .cdw10 = 3 | 127u << 16 }, 512, {0}, 0, ST_LOG },
	{ "log lid 0xc2", ADQ, { .opcode = 2, .cdw10 = 0xc2 | 127u << 16 }, 512, {0}, 0, ST_LOG },
	{ "log lpo 2", ADQ, { .opcode = 2, .cdw10 = 2 | 127u << 16, .cdw12 = 2 }, 512, {0}, 0, ST_IF },
	{ "log lpo = size", ADQ, { .opcode = 2, .cdw10 = 2 | 127u << 16, .cdw12 = 512 }, 512, {0}, 0, ST_IF },
	{ "log lpo hi", ADQ, { .opcode = 2, .cdw10 = 0xc0 | 63u << 16, .cdw13 = 1 }, 256, {0}, 0, ST_IF },
	{ "log numd mismatch", ADQ, { .opcode = 2, .cdw10 = 2 | 127u << 16 }, 256, {0}, 0, ST_IF },
	{ "log numdu mismatch", ADQ, { .opcode = 2, .cdw10 = 2 | 127u << 16, .cdw11 = 1 }, 512, {0}, 0, ST_IF },
	{ "log lsp", ADQ, { .opcode = 2, .cdw10 = 2 | 1u << 8 | 127u << 16 }, 512, {0}, 0, ST_IF },
	{ "log csi", ADQ, { .opcode = 2, .cdw10 = 2 | 127u << 16, .cdw14 = 1u << 24 }, 512, {0}, 0, ST_IF },
	{ "get features fid 1", ADQ, { .opcode = 0xa, .cdw10 = 1 }, 0, {0}, 0, ST_IF },
	{ "set features fid 0xc1", ADQ, { .opcode = 9, .cdw10 = 0xc1 }, 0, {0}, 0, ST_IF },
	{ "set pacing bit 1", ADQ, { .opcode = 9, .cdw10 = 0xc0, .cdw11 = 2 }, 0, {0}, 0, ST_IF },
	{ "set pacing save", ADQ, { .opcode = 9, .cdw10 = 0xc0 | 1u << 31, .cdw11 = 1 }, 0, {0}, 0, ST_NSAVE },
	{ "get features data", ADQ, { .opcode = 0xa, .cdw10 = 0xc0 }, 4, {0}, 0, ST_IF },
	{ "get features sel 4", ADQ, { .opcode = 0xa, .cdw10 = 0xc0 | 4u << 8 }, 0, {0}, 0, ST_IF },
	{ "set features cdw12", ADQ, { .opcode = 9, .cdw10 = 0xc0, .cdw12 = 1 }, 0, {0}, 0, ST_IF },
	{ "create q_heads 0", IOQ, { CRT(64) }, -1, {0}, PM_Q0, VS(UNSUPPORTED) },
	/* precedence (command-set.md section 2): with two faults, the
	 * earlier check decides */
	{ "order: opcode, flags", IOQ, { .opcode = 0x82, .nsid = 1, .flags = 1 }, 0, {0}, 0, ST_IOPC },
	{ "order: flags, nsid", IOQ, { KVR(A, 0, 0, 0, 1), .flags = 1, .nsid = 2 }, -1, {0}, 0, ST_IF },
	{ "order: ndm, nsid", IOQ, { KVR(A, 0, 0, 0, 1), .cdw11 = 1, .nsid = 2 }, -1, {0}, 0, ST_IF },
	{ "order: rsvd cdw2, nsid", IOQ, { KVR(A, 0, 0, 0, 1), .cdw2 = 1, .nsid = 2 }, -1, {0}, 0, ST_IF },
	{ "order: flag bits, nsid", IOQ, { SUB(A, 6, 0, 1, 0x10u << 16, SUB_A(1)), .nsid = 2 }, -1, {0}, 0, ST_IF },
	{ "order: nsid, ndt", IOQ, { KVR(A, 0, 0, 0, 1), .nsid = 2 }, 256, {0}, 0, ST_INS },
	{ "order: nsid, ntok", IOQ, { KVR(A, 0, 0, 0, 0), .nsid = 2 }, 0, {0}, 0, ST_INS },
	{ "order: nsid, submit cdw3", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1)), .cdw3 = 1, .nsid = 2 }, -1, {0}, 0, ST_INS },
	{ "order: submit tag, ctx", IOQ, { SUB(3, 16, 0, 1, 0, SUB_A(1)) }, -1, {0}, 0, ST_IF },
	{ "order: ctx, seq", IOQ, { KVR(3, 8, 0, 0, 1) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "order: seq, layer", IOQ, { KVR(A, 8, 4, 0, 1) }, -1, {0}, 0, VS(SEQ_RANGE) },
	{ "order: layer, length", IOQ, { KVW(A, 0, 4, 40, 2), .cdw10 = KV_A(1) / 4 }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "order: length, token order", IOQ, { KVW(A, 0, 0, 0, 2), .cdw10 = KV_A(1) / 4 }, -1, {0}, 0, VS(LENGTH) },
	{ "order: length, token range", IOQ, { KVR(A, 0, 0, 39, 2), .cdw10 = KV_A(1) / 4 }, -1, {0}, 0, VS(LENGTH) },
	{ "order: token order, full", IOQ, { KVW(A, 1, 0, 63, 2) }, -1, {0}, 0, VS(TOKEN_ORDER) },
	{ "order: submit layer, sparse r", IOQ, { SUB(A, 6, 4, 1, CSD_ATTN_F_SPARSE << 16, SUB_A(1)), .cdw3 = CSD_CDW3_SPARSE(128, 1) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "order: submit sparse r, length", IOQ, { SUB(A, 6, 0, 1, CSD_ATTN_F_SPARSE << 16, SUB_A(1) + 4), .cdw3 = CSD_CDW3_SPARSE(128, 1) }, -1, {0}, 0, ST_IF },
	{ "order: submit layer, length", IOQ, { SUB(A, 6, 4, 1, 0, SUB_A(1) + 4) }, -1, {0}, 0, VS(LAYER_RANGE) },
	{ "order: submit length, seq", IOQ, { SUB(A, 6, 0, 1, 0, SUB_A(1) + 4) }, -1, {8}, 0, VS(LENGTH) },
	{ "order: submit seq, duplicate", IOQ, { SUB(A, 6, 0, 3, 0, SUB_A(3)) }, -1, {0, 0, 8}, 0, VS(SEQ_RANGE) },
	{ "order: submit duplicate, busy tag", IOQ, { SUB(A, 5, 0, 2, 0, SUB_A(2)) }, -1, {0, 0}, 0, ST_IF },
	{ "order: submit busy tag, empty", IOQ, { SUB(A, 5, 0, 1, 0, SUB_A(1)) }, -1, {2}, 0, VS(TAG_BUSY) },
	{ "order: submit busy tag, full", IOQ, { SUB(A, 5, 0, 1, FUSED, SUBF_A(1)) }, -1, {1}, 0, VS(TAG_BUSY) },
	{ "order: read tag unknown, length", IOQ, { RD(A, 6, RD_A(1) + 32) }, -1, {0}, 0, VS(TAG_INVALID) },
	{ "order: query ctx, length", IOQ, { QRY(3, 60) }, -1, {0}, 0, VS(CTX_INVALID) },
	{ "order: create flags, shape", IOQ, { CRT(64) }, -1, {0}, PM_FLAGS_SHAPE, ST_IF },
	{ "order: identify length, nsid", ADQ, { .opcode = 6, .nsid = 2, .cdw10 = 0 }, 4092, {0}, 0, ST_IF },
	{ "order: identify cns, nsid", ADQ, { .opcode = 6, .nsid = 2, .cdw10 = 2 }, 4096, {0}, 0, ST_IF },
	{ "order: log lpo align, lid", ADQ, { .opcode = 2, .cdw10 = 3 | 127u << 16, .cdw12 = 2 }, 512, {0}, 0, ST_IF },
	{ "order: log lid, lpo size", ADQ, { .opcode = 2, .cdw10 = 3 | 127u << 16, .cdw12 = 4096 }, 512, {0}, 0, ST_LOG },
	{ "order: set features fid, sv", ADQ, { .opcode = 9, .cdw10 = 0xc1 | 1u << 31 }, 0, {0}, 0, ST_IF },
	{ "order: set features value, sv", ADQ, { .opcode = 9, .cdw10 = 0xc0 | 1u << 31, .cdw11 = 2 }, 0, {0}, 0, ST_IF },
	{ "order: get features fid, sel", ADQ, { .opcode = 0xa, .cdw10 = 0xc1 | 4u << 8 }, 0, {0}, 0, ST_IF },
};
#pragma GCC diagnostic pop

static void mutate_params(struct csd_ctx_desc *p, int m)
{
	memset(p, 0, sizeof(*p));
	p->layers = 2;
	p->kv_heads = 2;
	p->q_heads = 4;
	p->head_dim = 64;
	p->dtype = CSD_DTYPE_F16;
	p->max_seqs = 4;
	p->max_tokens = 64;
	switch (m) {
	case PM_LAYERS0: p->layers = 0; break;
	case PM_LAYERS257: p->layers = 257; break;
	case PM_KV0: p->kv_heads = 0; break;
	case PM_KV257: p->kv_heads = 257; p->q_heads = 257; break;
	case PM_QNOTMUL: p->q_heads = 5; break;
	case PM_GQA128: p->kv_heads = 1; p->q_heads = 128; break;
	case PM_Q1025: p->kv_heads = 1; p->q_heads = 1025; break;
	case PM_HD48: p->head_dim = 48; break;
	case PM_HD72: p->head_dim = 72; break;
	case PM_HD272: p->head_dim = 272; break;
	case PM_DTYPE3: p->dtype = 3; break;
	case PM_SEQS0: p->max_seqs = 0; break;
	case PM_SEQSBIG: p->max_seqs = 65; break;
	case PM_TOK0: p->max_tokens = 0; break;
	case PM_TOKBIG: p->max_tokens = 65537; break;
	case PM_FLAGS: p->flags = 1; break;
	case PM_RSVD0: p->rsvd0[2] = 1; break;
	case PM_RSVD1: p->rsvd1[39] = 0x80; break;
	case PM_Q0: p->q_heads = 0; break;
	case PM_FLAGS_SHAPE: p->flags = 1; p->layers = 0; break;
	default: break;
	}
}

struct snap {
	uint8_t *q[2];		/* CTX_QUERY of A and B */
	size_t qlen[2];
	uint8_t *kv;		/* every stored row of A and B */
	size_t kvlen;
};

static void take_snap(struct csdfw *fw, struct snap *s, bool with_kv)
{
	static const uint32_t ids[2] = { A, B };
	int i;

	memset(s, 0, sizeof(*s));
	for (i = 0; i < 2; i++) {
		struct csd_sqe q;

		s->qlen[i] = 64 + 8 * 8;
		s->q[i] = calloc(1, s->qlen[i]);
		q = fwt_io(CSD_IO_CTX_QUERY, ids[i], s->qlen[i]);
		CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &q, s->q[i], s->qlen[i],
					NULL), 0);
	}
	if (!with_kv)
		return;
	s->kv = malloc(4u << 20);
	for (i = 0; i < 2; i++) {
		const struct csd_ctx_info *info = (void *)s->q[i];
		const struct csd_seq_info *si = (void *)(s->q[i] + 64);
		size_t row = (size_t)info->p.kv_heads * info->p.head_dim *
			     (info->p.dtype == CSD_DTYPE_F32 ? 4 : 2);
		uint32_t seq, l;

		for (seq = 0; seq < info->p.max_seqs; seq++) {
			for (l = 0; l < info->p.layers; l++) {
				struct csd_cqe cqe;
				uint32_t n;
				uint8_t probe[8];

				(void)probe;
				if (!si[seq].max_len)
					continue;
				/* find the layer's length: read 1 token at a
				 * time would be slow; binary search on
				 * TOKEN_RANGE */
				{
					uint32_t lo = 0, hi = si[seq].max_len;

					while (lo < hi) {
						uint32_t mid = (lo + hi + 1) / 2;
						uint8_t *tmp = malloc(2 * row);

						if (fwt_kv(fw, CSD_IO_KV_READ,
							   ids[i], seq, l,
							   mid - 1, 1, tmp,
							   2 * row, NULL) == 0)
							lo = mid;
						else
							hi = mid - 1;
						free(tmp);
					}
					n = lo;
				}
				memcpy(s->kv + s->kvlen, &n, 4);
				s->kvlen += 4;
				if (!n)
					continue;
				CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ,
						       ids[i], seq, l, 0, n,
						       s->kv + s->kvlen,
						       2 * row * n, &cqe), 0);
				s->kvlen += 2 * row * n;
			}
		}
	}
}

static void free_snap(struct snap *s)
{
	free(s->q[0]);
	free(s->q[1]);
	free(s->kv);
}

static void fill_rand(void *p, size_t n, uint64_t *rs, int dtype)
{
	size_t i, el = dtype == CSD_DTYPE_F32 ? 4 : 2;

	for (i = 0; i < n / el; i++)
		fwt_store(p, i, dtype, fwt_val(rs));
}

static void test_malformed(void)
{
	struct csdfw *fw = open_dev(OPTS_FAST);
	struct snap before, after, fin;
	uint64_t rs = 12345;
	uint8_t *buf;
	uint32_t id, seq, l;
	size_t i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	buf = calloc(1, 2u << 20);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 4, 2, 8, 64, CSD_DTYPE_F16, 8, 64,
					 &id), 0);
	CU_ASSERT_EQUAL_FATAL(id, A);
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 2, 1, 2, 128, CSD_DTYPE_BF16, 4,
					 100, &id), 0);
	CU_ASSERT_EQUAL_FATAL(id, B);
	for (l = 0; l < 4; l++) {
		fill_rand(buf, KV_A(40), &rs, CSD_DTYPE_F16);
		CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, A, 0, l, 0, 40,
				       buf, KV_A(40), NULL), 0);
	}
	fill_rand(buf, KV_A(64), &rs, CSD_DTYPE_F16);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, A, 1, 0, 0, 64, buf,
			       KV_A(64), NULL), 0);
	fill_rand(buf, KV_A(20), &rs, CSD_DTYPE_F16);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, A, 3, 1, 0, 20, buf,
			       KV_A(20), NULL), 0);
	for (seq = 0; seq < 4; seq++) {
		for (l = 0; l < 2; l++) {
			uint32_t n = 1 + (uint32_t)(fwt_rand(&rs) % 99);

			fill_rand(buf, (size_t)n * 2 * 256, &rs,
				  CSD_DTYPE_BF16);
			CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, B, seq, l,
					       0, n, buf, (size_t)n * 512,
					       NULL), 0);
		}
	}
	/* the unread attention under tag 5 */
	{
		struct csd_sqe s = fwt_attn_sqe(A, 5, 0, 1, 0, 0, 0, SUB_A(1));

		memset(buf, 0, SUB_A(1));
		fill_rand(buf + 4, SUB_A(1) - 4, &rs, CSD_DTYPE_F32);
		((uint32_t *)buf)[0] = 0;
		CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, buf, SUB_A(1),
					NULL), 0);
	}
	take_snap(fw, &before, true);

	for (i = 0; i < sizeof(bad_cmds) / sizeof(bad_cmds[0]); i++) {
		const struct bad_cmd *b = &bad_cmds[i];
		struct csd_sqe s = b->sqe;
		size_t len = b->len < 0 ? (size_t)s.cdw10 * 4 : (size_t)b->len;
		struct csd_cqe cqe;
		uint16_t st;
		int k;

		s.cid = (uint16_t)(0x100 + i);
		memset(buf, 0, len);
		if (len >= 16)
			fill_rand(buf, len, &rs, CSD_DTYPE_F16);
		for (k = 0; k < 4 && (size_t)(k + 1) * 4 <= len; k++)
			((uint32_t *)buf)[k] = b->w[k];
		if (s.opcode == CSD_IO_CTX_CREATE && b->q == CSDFW_Q_IO &&
		    len == 64)
			mutate_params((struct csd_ctx_desc *)(void *)buf,
				      b->pmut);
		st = fwt_run(fw, b->q, &s, buf, len, &cqe);
		if (st != fwt_err(b->st))
			fprintf(stderr, "\n  %s: status 0x%04x, want 0x%04x",
				b->name, st, fwt_err(b->st));
		CU_ASSERT_EQUAL(st, fwt_err(b->st));
		CU_ASSERT_EQUAL(cqe.cid, s.cid);
		CU_ASSERT_EQUAL(cqe.dw0, 0);
		take_snap(fw, &after, false);
		if (memcmp(before.q[0], after.q[0], before.qlen[0]) ||
		    memcmp(before.q[1], after.q[1], before.qlen[1]))
			fprintf(stderr, "\n  %s: changed a context", b->name);
		CU_ASSERT_EQUAL(memcmp(before.q[0], after.q[0],
				       before.qlen[0]), 0);
		CU_ASSERT_EQUAL(memcmp(before.q[1], after.q[1],
				       before.qlen[1]), 0);
		free_snap(&after);
	}

	/* bit-identical contexts */
	take_snap(fw, &fin, true);
	CU_ASSERT_EQUAL(fin.kvlen, before.kvlen);
	CU_ASSERT_EQUAL(memcmp(fin.kv, before.kv, before.kvlen), 0);
	free_snap(&fin);
	free_snap(&before);

	/* and the drive keeps working */
	CU_ASSERT_EQUAL(fwt_attn_read(fw, A, 5, buf, RD_A(1), NULL), 0);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, A, 5, buf, RD_A(1), NULL),
			fwt_err(VS(TAG_INVALID)));
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, A, 0), 0);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, A, 0, 0, 0, 1, buf,
			       KV_A(1), NULL), 0);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, B, 0), 0);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, A, 0), 0);
	free(buf);
	csdfw_destroy(fw);
}

/* ---- attention vs a double-precision reference ------------------------- */

struct shape {
	uint16_t kvh, qh, hd;
	uint8_t dtype;
};

static void check_attention(struct csdfw *fw, const struct shape *sh,
			    const uint32_t *lens, uint32_t nseq,
			    uint32_t window, bool fused, float scale,
			    uint64_t *rs)
{
	size_t el = csd_dtype_size(sh->dtype);
	size_t row = (size_t)sh->kvh * sh->hd;	/* elements */
	size_t qn = (size_t)sh->qh * sh->hd, sublen, outlen;
	uint32_t maxlen = 0, i, id, tag = 3;
	float **k, **v, *q;
	uint8_t *sub, *out;
	double *ref, *rlse, sc = scale > 0 ? scale : 1.0 / sqrt(sh->hd);
	double maxerr = 0, maxlerr = 0;
	struct csd_sqe s;
	struct csd_cqe cqe;
	uint64_t tokens = 0;

	for (i = 0; i < nseq; i++)
		maxlen = lens[i] > maxlen ? lens[i] : maxlen;
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 2, sh->kvh, sh->qh, sh->hd,
					 sh->dtype, nseq, maxlen + 1, &id), 0);
	k = calloc(nseq, sizeof(*k));
	v = calloc(nseq, sizeof(*v));
	q = malloc(nseq * qn * 4);
	for (i = 0; i < nseq; i++) {
		uint32_t n = lens[i] + 1;
		uint8_t *kb = malloc(2 * row * el * n + 4);
		size_t t;

		k[i] = malloc(row * n * 4);
		v[i] = malloc(row * n * 4);
		for (t = 0; t < row * lens[i]; t++) {
			k[i][t] = fwt_val(rs);
			v[i][t] = fwt_val(rs);
			fwt_store(kb, t, sh->dtype, k[i][t]);
			fwt_store(kb + row * el * lens[i], t, sh->dtype,
				  v[i][t]);
		}
		if (lens[i])
			CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, i, 1,
					       0, lens[i], kb,
					       2 * row * el * lens[i], NULL),
					0);
		free(kb);
	}
	sublen = nseq * 4 + nseq * qn * 4 + (fused ? 2 * nseq * row * el : 0);
	sub = malloc(sublen);
	for (i = 0; i < nseq; i++) {
		uint8_t *kp = sub + nseq * 4 + nseq * qn * 4;
		uint8_t *vp = kp + nseq * row * el;
		size_t t;

		((uint32_t *)(void *)sub)[i] = nseq - 1 - i;	/* any order */
		for (t = 0; t < qn; t++)
			q[i * qn + t] = fwt_val(rs);
		for (t = 0; fused && t < row; t++) {
			uint32_t sq = nseq - 1 - i;
			float a = fwt_val(rs), b = fwt_val(rs);

			k[sq][row * lens[sq] + t] = a;
			v[sq][row * lens[sq] + t] = b;
			fwt_store(kp, i * row + t, sh->dtype, a);
			fwt_store(vp, i * row + t, sh->dtype, b);
		}
	}
	memcpy(sub + nseq * 4, q, nseq * qn * 4);
	s = fwt_attn_sqe(id, tag, 1, nseq,
			 CSD_ATTN_F_LSE | (fused ? CSD_ATTN_F_FUSED_KV : 0),
			 scale, window, sublen);
	CU_ASSERT_EQUAL_FATAL(fwt_run(fw, CSDFW_Q_IO, &s, sub, sublen, &cqe),
			      0);
	memset(sub, 0xff, sublen);	/* the device copied what it needs */
	outlen = nseq * qn * 4 + nseq * sh->qh * 4;
	out = malloc(outlen);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, tag, out, outlen, &cqe), 0);
	ref = malloc(qn * sizeof(double));
	rlse = malloc(sh->qh * sizeof(double));
	for (i = 0; i < nseq; i++) {
		uint32_t sq = nseq - 1 - i;
		uint32_t hi = lens[sq] + (fused ? 1 : 0);
		uint32_t lo = window && hi > window ? hi - window : 0;
		const float *o = (const float *)(void *)out + i * qn;
		const float *ol = (const float *)(void *)(out + nseq * qn * 4) +
				  (size_t)i * sh->qh;
		size_t t;

		tokens += hi - lo;
		fwt_ref_attn(k[sq], v[sq], lo, hi, sh->qh, sh->kvh, sh->hd,
			     q + i * qn, sc, ref, rlse);
		for (t = 0; t < qn; t++)
			maxerr = fmax(maxerr, fabs(o[t] - ref[t]));
		for (t = 0; t < sh->qh; t++)
			maxlerr = fmax(maxlerr, fabs(ol[t] - rlse[t]) /
					       fmax(1.0, fabs(rlse[t])));
		/* fused: the new token is stored */
		if (fused) {
			uint8_t *kb = malloc(2 * row * el);

			CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ, id, sq, 1,
					       lens[sq], 1, kb, 2 * row * el,
					       NULL), 0);
			for (t = 0; t < row; t++) {
				CU_ASSERT_EQUAL(fwt_load(kb, t, sh->dtype),
						k[sq][row * lens[sq] + t]);
				CU_ASSERT_EQUAL(fwt_load(kb + row * el, t,
							 sh->dtype),
						v[sq][row * lens[sq] + t]);
			}
			free(kb);
		}
	}
	if (maxerr > 2e-3 || maxlerr > 1e-4)
		fprintf(stderr, "\n  kv %u q %u hd %u dt %u: err %g lse %g",
			sh->kvh, sh->qh, sh->hd, sh->dtype, maxerr, maxlerr);
	CU_ASSERT(maxerr <= 2e-3);
	CU_ASSERT(maxlerr <= 1e-4);
	CU_ASSERT_EQUAL(cqe.dw0, tokens);
	free(ref);
	free(rlse);
	free(out);
	free(sub);
	free(q);
	for (i = 0; i < nseq; i++) {
		free(k[i]);
		free(v[i]);
	}
	free(k);
	free(v);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, id, 0), 0);
}

static void test_attention_ref(void)
{
	static const struct shape shapes[] = {
		{ 2, 8, 64, CSD_DTYPE_F16 },
		{ 1, 4, 128, CSD_DTYPE_BF16 },
		{ 4, 4, 80, CSD_DTYPE_F32 },
		{ 2, 16, 256, CSD_DTYPE_F16 },
	};
	static const uint32_t lens[] = { 1, 15, 16, 17, 100 };
	static const uint32_t lens0[] = { 0, 3, 40, 0 };
	struct csdfw *fw = open_dev(OPTS_FAST);
	uint64_t rs = 99;
	size_t i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		check_attention(fw, &shapes[i], lens, 4, 0, false, 0, &rs);
		check_attention(fw, &shapes[i], lens + 1, 4, 0, false, 0.3f,
				&rs);
	}
	/* fused append, windows */
	for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		check_attention(fw, &shapes[i], lens0, 4, 0, true, 0, &rs);
		check_attention(fw, &shapes[i], lens0, 4, 8, true, 0, &rs);
		check_attention(fw, &shapes[i], lens + 1, 4, 16, false, 0.1f,
				&rs);
		check_attention(fw, &shapes[i], lens, 1, 1, true, 0, &rs);
	}
	csdfw_destroy(fw);
}

/* ---- tags, destroy, reset ------------------------------------------------ */

struct async_rd {
	pthread_mutex_t lock;
	int done, ok;
};

static void async_cb(void *arg, const struct csd_cqe *cqe)
{
	struct async_rd *a = arg;

	pthread_mutex_lock(&a->lock);
	a->done++;
	if (cqe->status == 0)
		a->ok++;
	pthread_mutex_unlock(&a->lock);
}

/* one context: 1 layer, kv 2, q 8, hd 128, f16; seq 0 with @n tokens */
static uint32_t make_long(struct csdfw *fw, uint32_t n, uint64_t *rs)
{
	size_t row = 2 * 128 * 2;
	uint8_t *kb = malloc(2 * row * n);
	uint32_t id;

	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 8, 128, CSD_DTYPE_F16, 4, n + 64,
				   &id), 0);
	fill_rand(kb, 2 * row * n, rs, CSD_DTYPE_F16);
	for (uint32_t t = 0; t < n; t += 512) {	/* within max_xfer */
		uint32_t k = n - t < 512 ? n - t : 512;

		CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 0, 0, t, k,
				       kb, 2 * row * k, NULL), 0);
	}
	free(kb);
	return id;
}

static uint16_t submit_q(struct csdfw *fw, uint32_t id, uint32_t tag,
			 uint32_t seq, const float *q)
{
	size_t len = 4 + 8 * 128 * 4;
	uint8_t *b = malloc(len);
	struct csd_sqe s = fwt_attn_sqe(id, tag, 0, 1, 0, 0, 0, len);
	uint16_t st;

	memcpy(b, &seq, 4);
	memcpy(b + 4, q, len - 4);
	st = fwt_run(fw, CSDFW_Q_IO, &s, b, len, NULL);
	free(b);
	return st;
}

static void test_many_tags(void)
{
	struct csdfw *fw = open_dev(OPTS_FAST);
	uint64_t rs = 7;
	float q[8 * 128], *out, *first;
	uint32_t id, t;
	struct csd_cqe cqe;
	struct csd_sqe qs;
	uint8_t info[64 + 32];

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	id = make_long(fw, 3000, &rs);
	for (t = 0; t < 8 * 128; t++)
		q[t] = fwt_val(&rs);
	for (t = 0; t < 16; t++)
		CU_ASSERT_EQUAL(submit_q(fw, id, t, 0, q), 0);
	qs = fwt_io(CSD_IO_CTX_QUERY, id, sizeof(info));
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &qs, info, sizeof(info), &cqe),
			0);
	CU_ASSERT_EQUAL(((struct csd_ctx_info *)(void *)info)->inflight, 16);
	CU_ASSERT_EQUAL(cqe.dw0, 4);
	/* all busy: any tag -> TAG_BUSY; reset -> BUSY */
	CU_ASSERT_EQUAL(submit_q(fw, id, 7, 0, q), fwt_err(VS(TAG_BUSY)));
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 0),
			fwt_err(VS(BUSY)));
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 1), 0);
	out = malloc(8 * 128 * 4);
	first = malloc(8 * 128 * 4);
	for (t = 16; t-- > 0;) {
		CU_ASSERT_EQUAL(fwt_attn_read(fw, id, t, t == 15 ? first : out,
					      8 * 128 * 4, &cqe), 0);
		CU_ASSERT_EQUAL(cqe.dw0, 3000);
		if (t != 15)
			CU_ASSERT_EQUAL(memcmp(out, first, 8 * 128 * 4), 0);
	}
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &qs, info, sizeof(info), &cqe),
			0);
	CU_ASSERT_EQUAL(((struct csd_ctx_info *)(void *)info)->inflight, 0);
	/* reset now works; length 0; attention over it is EMPTY_SEQ */
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 0), 0);
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &qs, info, sizeof(info), &cqe),
			0);
	CU_ASSERT_EQUAL(((struct csd_seq_info *)(void *)(info + 64))[0].max_len,
			0);
	CU_ASSERT_EQUAL(((struct csd_ctx_info *)(void *)info)->bytes_used, 0);
	CU_ASSERT_EQUAL(submit_q(fw, id, 0, 0, q), fwt_err(VS(EMPTY_SEQ)));
	free(out);
	free(first);
	csdfw_destroy(fw);
}

static void test_destroy_inflight(void)
{
	struct csdfw *fw = open_dev("profile=fast,capacity=512M,threads=1,"
				    "tags=16,contexts=4");
	struct async_rd a = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
	uint64_t rs = 8;
	float q[8 * 128];
	float *outs[4];
	uint32_t id, id2, t;
	struct csdfw_seg seg[4];
	struct csdfw_data d[4];

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	id = make_long(fw, 20000, &rs);
	for (t = 0; t < 8 * 128; t++)
		q[t] = fwt_val(&rs);
	for (t = 0; t < 8; t++)
		CU_ASSERT_EQUAL(submit_q(fw, id, t, 0, q), 0);
	/* reads on 4 tags, asynchronously: they park until their jobs end */
	for (t = 0; t < 4; t++) {
		struct csd_sqe s = fwt_io(CSD_IO_ATTN_READ, id, 8 * 128 * 4);

		s.cdw13 = t;
		outs[t] = malloc(8 * 128 * 4);
		seg[t].addr = outs[t];
		seg[t].len = 8 * 128 * 4;
		d[t].seg = &seg[t];
		d[t].nseg = 1;
		d[t].len = seg[t].len;
		csdfw_submit(fw, CSDFW_Q_IO, &s, &d[t], async_cb, &a);
	}
	/* destroy waits for the jobs, the parked reads complete first */
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, id, 0), 0);
	pthread_mutex_lock(&a.lock);
	CU_ASSERT_EQUAL(a.done, 4);
	CU_ASSERT_EQUAL(a.ok, 4);
	pthread_mutex_unlock(&a.lock);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, id, 0),
			fwt_err(VS(CTX_INVALID)));
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 5, outs[0], 8 * 128 * 4, NULL),
			fwt_err(VS(CTX_INVALID)));
	/* the id is reused */
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, 0, 1, 1, &id2), 0);
	CU_ASSERT_EQUAL(id2, id);
	/* destroy of the device with jobs in flight and nothing read */
	id2 = make_long(fw, 20000, &rs);
	for (t = 0; t < 4; t++)
		CU_ASSERT_EQUAL(submit_q(fw, id2, t, 0, q), 0);
	csdfw_destroy(fw);
	for (t = 0; t < 4; t++)
		free(outs[t]);
}

/*
 * What a host relies on after a controller reset dropped the completion of
 * an ATTN_SUBMIT or ATTN_READ (command-set.md 3.8, "Aborted commands"): it
 * cannot tell whether the command ran, and reads the tag again.  A read
 * that ran freed the tag (the re-read is TAG_INVALID); a submit that ran
 * left its job under the tag (the re-read collects it, a wrong length
 * first keeps it).  Either way the tag and the sequence are free after.
 * With pacing on, as the paced drive's completions are the ones a reset
 * catches.
 */
static void test_reread_after_abort(void)
{
	struct csdfw *fw = open_dev("profile=fast,capacity=256M,threads=1,"
				    "tags=1,pacing=1");
	struct async_rd a = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
	struct csd_sqe s = fwt_io(CSD_IO_ATTN_READ, 0, 8 * 128 * 4);
	struct csdfw_seg seg;
	struct csdfw_data d;
	uint8_t info[64];
	struct csd_cqe cqe;
	float q[8 * 128], *out, *ref;
	uint64_t rs = 11;
	uint32_t id, t;
	int done = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	id = make_long(fw, 1000, &rs);
	for (t = 0; t < 8 * 128; t++)
		q[t] = fwt_val(&rs);
	out = calloc(8 * 128, 4);
	ref = calloc(8 * 128, 4);
	CU_ASSERT_FATAL(out && ref);
	CU_ASSERT_EQUAL(submit_q(fw, id, 0, 0, q), 0);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, ref, 8 * 128 * 4, NULL), 0);

	/* 1: the read ran, its completion is "discarded" (only counted) */
	CU_ASSERT_EQUAL(submit_q(fw, id, 0, 0, q), 0);
	s.cdw12 = id;
	s.cdw13 = 0;
	seg = (struct csdfw_seg){ out, 8 * 128 * 4 };
	d = (struct csdfw_data){ .seg = &seg, .nseg = 1, .len = seg.len };
	csdfw_submit(fw, CSDFW_Q_IO, &s, &d, async_cb, &a);
	for (t = 0; t < 100000 && !done; t++) {
		pthread_mutex_lock(&a.lock);
		done = a.done;
		pthread_mutex_unlock(&a.lock);
		if (!done)
			usleep(100);
	}
	CU_ASSERT_EQUAL_FATAL(done, 1);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, out, 8 * 128 * 4, NULL),
			fwt_err(VS(TAG_INVALID)));

	/* 2: the submit ran, its read never came */
	CU_ASSERT_EQUAL(submit_q(fw, id, 0, 0, q), 0);
	CU_ASSERT_EQUAL(submit_q(fw, id, 0, 0, q), fwt_err(VS(TAG_BUSY)));
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 0),
			fwt_err(VS(BUSY)));
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, out, 8 * 128 * 4 - 4, NULL),
			fwt_err(VS(LENGTH)));
	memset(out, 0, 8 * 128 * 4);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, out, 8 * 128 * 4, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 1000);
	CU_ASSERT_EQUAL(memcmp(out, ref, 8 * 128 * 4), 0);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, out, 8 * 128 * 4, NULL),
			fwt_err(VS(TAG_INVALID)));
	s = fwt_io(CSD_IO_CTX_QUERY, id, sizeof(info));
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, info, sizeof(info), NULL),
			0);
	CU_ASSERT_EQUAL(((struct csd_ctx_info *)(void *)info)->inflight, 0);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 0), 0);
	free(out);
	free(ref);
	csdfw_destroy(fw);
}

/*
 * ATTN_SUBMIT (tag 0, layer 0) of one sequence @seq fused with its next
 * token (zero q/k/v, head_dim 64 fp16, one q head) from buffer @kb.
 */
static uint16_t fused_one(struct csdfw *fw, uint32_t id, uint32_t seq,
			  uint8_t *kb)
{
	const size_t sub = 4 + 64 * 4 + 2 * 128;
	struct csd_sqe s = fwt_attn_sqe(id, 0, 0, 1, CSD_ATTN_F_FUSED_KV, 0,
					0, sub);

	memset(kb, 0, sub);
	((uint32_t *)(void *)kb)[0] = seq;
	return fwt_run(fw, CSDFW_Q_IO, &s, kb, sub, NULL);
}

/* ---- capacity ------------------------------------------------------------- */

static void test_limits(void)
{
	/* 8 channels x 2 blocks x 4 pages x 4 KiB = 64 pages */
	struct csdfw *fw = open_dev("profile=fast,capacity=256K,block=4,"
				    "threads=1,contexts=2,tags=4");
	uint8_t *kb = calloc(1, 2 * 128 * 1100 + 4096);
	uint32_t id, id2, id3;
	struct csd_cqe cqe;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F16, 4, 4096,
				   &id), 0);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F16, 4, 4096,
				   &id2), 0);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F16, 4, 4096,
				   &id3), fwt_err(VS(CTX_LIMIT)));
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, id2, 0), 0);
	/* 32 tokens per page, 2 streams: 1024 tokens fill all 64 pages */
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 0, 0, 0, 1000, kb,
			       1000 * 256, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 1000);
	/* into the partly filled last pages */
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 0, 0, 1000, 24, kb,
			       24 * 256, NULL), 0);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 0, 0, 1024, 1, kb,
			       256, NULL), fwt_err(VS(NO_SPACE)));
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 1, 0, 0, 1, kb, 256,
			       NULL), fwt_err(VS(NO_SPACE)));
	/* fused append that needs a page: nothing changes */
	CU_ASSERT_EQUAL(fused_one(fw, id, 1, kb), fwt_err(VS(NO_SPACE)));
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ, id, 1, 0, 0, 1, kb, 256,
			       NULL), fwt_err(VS(TOKEN_RANGE)));
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, kb, 256, NULL),
			fwt_err(VS(TAG_INVALID)));
	/* reclaim gives the space back */
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_SEQ_RESET, id, 0), 0);
	CU_ASSERT_EQUAL(fused_one(fw, id, 1, kb), 0);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, kb, 256, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 1);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F16, 4, 4096,
				   &id2), 0);
	CU_ASSERT_EQUAL(id2, 2);
	free(kb);
	csdfw_destroy(fw);
}

/*
 * A fused append on a nearly full drive: the next growing extent (2
 * blocks per stream) does not fit in the 2 free blocks, extents of the
 * first size (1 block per stream) do, so the call is accepted and appends
 * with those; with no block left the next one is refused.
 */
static void test_fused_nogrow(void)
{
	/* 8 channels x 2 blocks x 4 pages; 32 tokens per page; extents of
	 * 4 pages (a block), 8, 16, ... */
	struct csdfw *fw = open_dev("profile=fast,capacity=256K,block=4,"
				    "threads=1,contexts=2,tags=4");
	uint8_t *kb = calloc(1, 2 * 128 * 400 + 4096);
	struct csd_cqe cqe;
	uint32_t id, q;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	CU_ASSERT_PTR_NOT_NULL_FATAL(kb);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F16, 4, 4096,
				   &id), 0);
	/* seq 0: 4 pages (1 block per stream); seqs 1, 2: 4 + 8 pages
	 * (3 blocks per stream): 14 of 16 blocks */
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, 0, 0, 0, 128, kb,
			       128 * 256, NULL), 0);
	for (q = 1; q <= 2; q++) {
		CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, q, 0, 0, 128,
				       kb, 128 * 256, NULL), 0);
		CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, q, 0, 128, 256,
				       kb, 256 * 256, NULL), 0);
	}
	/* token 128 of seq 0 starts page 4: 8 pages would need 4 blocks */
	CU_ASSERT_EQUAL(fused_one(fw, id, 0, kb), 0);
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, kb, 256, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 129);	/* tokens attended */
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ, id, 0, 0, 128, 1, kb, 256,
			       NULL), 0);
	/* seq 1 at page 12: no block left for any extent */
	CU_ASSERT_EQUAL(fused_one(fw, id, 1, kb), fwt_err(VS(NO_SPACE)));
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ, id, 1, 0, 384, 1, kb, 256,
			       NULL), fwt_err(VS(TOKEN_RANGE)));
	free(kb);
	csdfw_destroy(fw);
}

/* ---- modeled time and pacing -------------------------------------------- */

static uint32_t append_dw1(struct csdfw *fw, uint32_t id, uint32_t seq,
			   uint32_t n)
{
	uint8_t *kb = calloc(1, (size_t)n * 512);
	struct csd_cqe cqe;

	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, id, seq, 0, 0, n, kb,
			       (size_t)n * 512, &cqe), 0);
	free(kb);
	return cqe.dw1;
}

static uint32_t attn_dw1(struct csdfw *fw, uint32_t id, uint32_t seq,
			 uint32_t *submit_dw1)
{
	size_t len = 4 + 8 * 64 * 4;
	uint8_t *b = calloc(1, len);
	struct csd_sqe s = fwt_attn_sqe(id, 0, 0, 1, 0, 0, 0, len);
	struct csd_cqe cqe;

	memcpy(b, &seq, 4);
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, b, len, &cqe), 0);
	*submit_dw1 = cqe.dw1;
	CU_ASSERT_EQUAL(fwt_attn_read(fw, id, 0, b, 8 * 64 * 4, &cqe), 0);
	free(b);
	return cqe.dw1;
}

static void test_pacing(void)
{
	/* the InstInfer profile (the default) */
	struct csdfw *fw = open_dev("capacity=256M,threads=2,tags=8");
	struct csd_sqe s;
	struct csd_cqe cqe;
	uint32_t id, a, b, c, sa, sb, t;
	struct async_rd ar = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	/* 2 kv heads x 64 x f16 = 256 B rows */
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 8, 64, CSD_DTYPE_F16, 8, 8192,
				   &id), 0);
	a = append_dw1(fw, id, 0, 16);
	b = append_dw1(fw, id, 1, 1024);
	c = append_dw1(fw, id, 2, 4096);
	CU_ASSERT(a > 0);
	CU_ASSERT(b > a);
	CU_ASSERT(c > b);
	a = attn_dw1(fw, id, 0, &sa);
	b = attn_dw1(fw, id, 1, &sb);
	c = attn_dw1(fw, id, 2, &sb);
	CU_ASSERT(sa > 0);
	CU_ASSERT(a > 0);
	CU_ASSERT(b > a);
	CU_ASSERT(c > b);

	/* pacing on */
	s = fwt_io(0, 0, 0);
	s.opcode = CSD_ADM_SET_FEATURES;
	s.nsid = 0;
	s.cdw10 = CSD_FEAT_ID_PACING;
	s.cdw11 = 1;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, &cqe), 0);
	s.opcode = CSD_ADM_GET_FEATURES;
	s.cdw11 = 0;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 1);
	a = append_dw1(fw, id, 3, 64);
	CU_ASSERT(a > 0);
	b = attn_dw1(fw, id, 3, &sb);
	CU_ASSERT(b > 0);
	/* many paced commands in flight at once all complete */
	for (t = 0; t < 32; t++) {
		struct csd_sqe q = fwt_io(CSD_IO_FLUSH, 0, 0);

		csdfw_submit(fw, CSDFW_Q_IO, &q, NULL, async_cb, &ar);
	}
	s.opcode = CSD_ADM_SET_FEATURES;
	s.cdw11 = 0;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, &cqe), 0);
	s.opcode = CSD_ADM_GET_FEATURES;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, &cqe), 0);
	CU_ASSERT_EQUAL(cqe.dw0, 0);
	csdfw_destroy(fw);	/* waits for the paced completions */
	CU_ASSERT_EQUAL(ar.done, 32);
	CU_ASSERT_EQUAL(ar.ok, 32);

	/* pacing from the configuration, device destroyed with work queued */
	fw = open_dev("capacity=64M,threads=1,pacing=1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 8, 64, CSD_DTYPE_F16, 8, 8192,
				   &id), 0);
	CU_ASSERT(append_dw1(fw, id, 0, 100) > 0);
	csdfw_destroy(fw);
}

/* ---- admin ----------------------------------------------------------------- */

static uint16_t get_log(struct csdfw *fw, uint8_t lid, uint64_t lpo,
			void *buf, size_t len)
{
	struct csd_sqe s;
	uint32_t numd = (uint32_t)(len / 4 - 1);

	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_GET_LOG_PAGE;
	s.cdw10 = lid | (numd & 0xffff) << 16;
	s.cdw11 = numd >> 16;
	s.cdw12 = (uint32_t)lpo;
	s.cdw13 = (uint32_t)(lpo >> 32);
	return fwt_run(fw, CSDFW_Q_ADMIN, &s, buf, len, NULL);
}

static void test_admin(void)
{
	struct csdfw *fw = open_dev(OPTS_FAST);
	const struct csdfw_config *cfg;
	struct csd_id_ctrl *id = malloc(4096);
	struct csd_id_ns *ns = malloc(4096);
	struct csd_log_stats st, st2;
	struct csd_log_health h;
	uint8_t logb[64 * 6], part[16];
	struct csd_log_ctx_hdr *hdr = (void *)logb;
	struct csd_log_ctx_entry *e = (void *)(logb + 64);
	struct csd_sqe s;
	uint8_t kb[512 * 10];
	uint32_t c1, c2, c3;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	cfg = csdfw_get_config(fw);
	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_IDENTIFY;
	s.cdw10 = CSD_ID_CNS_CTRL;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, id, 4096, NULL), 0);
	CU_ASSERT_EQUAL(id->vid, 0x1af4);
	CU_ASSERT_EQUAL(id->ssvid, 0x1100);
	CU_ASSERT_EQUAL(memcmp(id->mn, "CSD-SIM attention CSD (InstInfer-class) ",
			       40), 0);
	CU_ASSERT_EQUAL(memcmp(id->sn, "CSDSIM0001          ", 20), 0);
	CU_ASSERT_EQUAL(memcmp(id->fr, "0.1.0   ", 8), 0);
	CU_ASSERT_EQUAL(id->ver, 0x00020000);
	CU_ASSERT_EQUAL(id->nn, 1);
	CU_ASSERT_EQUAL(id->sqes, 0x66);
	CU_ASSERT_EQUAL(id->cqes, 0x44);
	CU_ASSERT_EQUAL(id->mdts, 8);	/* 1 MiB = 2^8 x 4 KiB */
	CU_ASSERT_EQUAL(id->vs.magic, CSD_ID_MAGIC);
	CU_ASSERT_EQUAL(id->vs.spec_version, CSD_SPEC_VERSION);
	CU_ASSERT_EQUAL(id->vs.dtypes, 7);
	CU_ASSERT_EQUAL(id->vs.features & 0xf, 0xf);
	CU_ASSERT_EQUAL(id->vs.features & CSD_FEAT_FILE_BACKED, 0);
	CU_ASSERT_EQUAL(id->vs.min_head_dim, 64);
	CU_ASSERT_EQUAL(id->vs.max_head_dim, 256);
	CU_ASSERT_EQUAL(id->vs.head_dim_align, 16);
	CU_ASSERT_EQUAL(id->vs.max_layers, 256);
	CU_ASSERT_EQUAL(id->vs.max_kv_heads, 256);
	CU_ASSERT_EQUAL(id->vs.max_q_heads, 1024);
	CU_ASSERT_EQUAL(id->vs.max_tags, 16);
	CU_ASSERT_EQUAL(id->vs.nchannels, 8);
	CU_ASSERT_EQUAL(id->vs.max_contexts, 4);
	CU_ASSERT_EQUAL(id->vs.max_seqs, 64);
	CU_ASSERT_EQUAL(id->vs.max_tokens, 65536);
	CU_ASSERT_EQUAL(id->vs.max_attn_seqs, 4);
	CU_ASSERT_EQUAL(id->vs.max_xfer, 1u << 20);
	CU_ASSERT_EQUAL(id->vs.page_size, 4096);
	CU_ASSERT_EQUAL(id->vs.pages_per_block, 64);
	CU_ASSERT_EQUAL(id->vs.threads, cfg->threads);
	CU_ASSERT_EQUAL(id->vs.capacity, 256ull << 20);
	CU_ASSERT_STRING_EQUAL(id->vs.fw_version, "0.1.0");
	CU_ASSERT_STRING_EQUAL(id->vs.profile, "fast");
	CU_ASSERT(id->vs.simd[0] != '\0');

	s.cdw10 = CSD_ID_CNS_NS;
	s.nsid = 1;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, ns, 4096, NULL), 0);
	CU_ASSERT_EQUAL(ns->nsze, (256ull << 20) / 4096);
	CU_ASSERT_EQUAL(ns->ncap, ns->nsze);
	CU_ASSERT_EQUAL(ns->nuse, 0);
	CU_ASSERT_EQUAL(ns->lbaf[0], 12u << 16);
	s.nsid = 0xffffffff;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, ns, 4096, NULL), 0);

	/* logs */
	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_STATS, 0, &st, sizeof(st)), 0);
	CU_ASSERT_EQUAL(st.contexts, 0);
	CU_ASSERT_EQUAL(st.kv_bytes_stored, 0);
	CU_ASSERT(st.commands >= 3);
	CU_ASSERT_EQUAL(st.blocks_total, (256ull << 20) / (64 * 4096));
	CU_ASSERT_EQUAL(st.blocks_free, st.blocks_total);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 4, 64, CSD_DTYPE_F16, 4, 100,
				   &c1), 0);
	CU_ASSERT_EQUAL(fwt_create(fw, 2, 1, 1, 128, CSD_DTYPE_BF16, 2, 50,
				   &c2), 0);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 1, 1, 64, CSD_DTYPE_F32, 1, 5,
				   &c3), 0);
	CU_ASSERT_EQUAL(fwt_simple(fw, CSD_IO_CTX_DESTROY, c2, 0), 0);
	memset(kb, 0x11, sizeof(kb));
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, c1, 1, 0, 0, 10, kb,
			       10 * 512, NULL), 0);
	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_STATS, 0, &st2, sizeof(st2)), 0);
	CU_ASSERT_EQUAL(st2.contexts, 2);
	CU_ASSERT_EQUAL(st2.kv_bytes_stored, 10 * 512);
	CU_ASSERT_EQUAL(st2.flash_bytes_used, 4 * 4096);
	CU_ASSERT(st2.flash_bytes_written >= 4 * 4096);
	CU_ASSERT(st2.host_bytes_in >= st.host_bytes_in + 10 * 512 + 3 * 64);
	CU_ASSERT_EQUAL(st2.commands, st.commands + 6);	/* +1 log read */
	CU_ASSERT_EQUAL(st2.errors, st.errors);
	CU_ASSERT(st2.blocks_free < st2.blocks_total);
	/* a part of it, at an offset */
	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_STATS, 8, part, sizeof(part)), 0);
	CU_ASSERT_EQUAL(memcmp(part, (uint8_t *)&st2 + 8, 16), 0);

	memset(logb, 0xee, sizeof(logb));
	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_CONTEXTS, 0, logb, sizeof(logb)),
			0);
	CU_ASSERT_EQUAL(hdr->count, 2);
	CU_ASSERT_EQUAL(e[0].ctx_id, c1);
	CU_ASSERT_EQUAL(e[0].layers, 1);
	CU_ASSERT_EQUAL(e[0].kv_heads, 2);
	CU_ASSERT_EQUAL(e[0].q_heads, 4);
	CU_ASSERT_EQUAL(e[0].head_dim, 64);
	CU_ASSERT_EQUAL(e[0].dtype, CSD_DTYPE_F16);
	CU_ASSERT_EQUAL(e[0].max_seqs, 4);
	CU_ASSERT_EQUAL(e[0].max_tokens, 100);
	CU_ASSERT_EQUAL(e[0].seqs_used, 1);
	CU_ASSERT_EQUAL(e[0].tokens, 10);
	CU_ASSERT_EQUAL(e[0].bytes_used, 4 * 4096);
	CU_ASSERT_EQUAL(e[1].ctx_id, c3);
	CU_ASSERT_EQUAL(e[1].dtype, CSD_DTYPE_F32);
	/* past the end of the log: zeros */
	{
		static const uint8_t z[64 * 3];

		CU_ASSERT_EQUAL(memcmp(logb + 64 * 3, z, sizeof(z)), 0);
	}
	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_CONTEXTS, 64 * 3, logb, 64),
			fwt_err(ST_IF));

	CU_ASSERT_EQUAL(get_log(fw, CSD_LOG_HEALTH, 0, &h, sizeof(h)), 0);
	CU_ASSERT_EQUAL(h.temperature, 313);
	CU_ASSERT(h.avail_spare > 90);
	CU_ASSERT_EQUAL(h.power_cycles[0], 1);
	CU_ASSERT(h.host_writes[0] >= 1);
	CU_ASSERT(h.data_units_written[0] >= 1);

	/* number of queues */
	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_GET_FEATURES;
	s.cdw10 = CSD_FEAT_NUM_QUEUES;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, NULL), 0);
	s.opcode = CSD_ADM_SET_FEATURES;
	s.cdw11 = 0x00070007;
	{
		struct csd_cqe cqe;

		CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, NULL, 0, &cqe),
				0);
		CU_ASSERT_EQUAL(cqe.dw0, 0);
	}
	free(id);
	free(ns);
	csdfw_destroy(fw);
}

static void test_file_backed(void)
{
	char path[] = "/tmp/csd-test-core-XXXXXX", opts[160];
	int fd = mkstemp(path);
	struct csdfw *fw;
	struct csd_sqe s;
	struct csd_id_ctrl *id = malloc(4096);
	uint8_t kb[512 * 4], rb[512 * 4];
	struct stat sb;
	uint32_t c;

	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	snprintf(opts, sizeof(opts), "profile=fast,capacity=16M,threads=1,"
		 "backing=%s", path);
	fw = open_dev(opts);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_IDENTIFY;
	s.cdw10 = CSD_ID_CNS_CTRL;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_ADMIN, &s, id, 4096, NULL), 0);
	CU_ASSERT(id->vs.features & CSD_FEAT_FILE_BACKED);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 4, 64, CSD_DTYPE_F16, 4, 100,
				   &c), 0);
	fill_rand(kb, sizeof(kb), &(uint64_t){ 5 }, CSD_DTYPE_F16);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, c, 0, 0, 0, 4, kb,
			       sizeof(kb), NULL), 0);
	s = fwt_io(CSD_IO_FLUSH, 0, 0);
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, NULL, 0, NULL), 0);
	s.nsid = 0xffffffff;
	CU_ASSERT_EQUAL(fwt_run(fw, CSDFW_Q_IO, &s, NULL, 0, NULL), 0);
	CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_READ, c, 0, 0, 0, 4, rb,
			       sizeof(rb), NULL), 0);
	CU_ASSERT_EQUAL(memcmp(kb, rb, sizeof(kb)), 0);
	CU_ASSERT_EQUAL(stat(path, &sb), 0);
	CU_ASSERT(sb.st_size >= 16 << 20);
	csdfw_destroy(fw);
	unlink(path);
	free(id);
}

/* ---- concurrency ------------------------------------------------------------ */

struct thr_arg {
	struct csdfw *fw;
	uint32_t ctx, seq;
	int errors;
};

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	uint8_t kb[512], rb[512];
	float q[8 * 64] = { 0 };
	size_t len = 4 + sizeof(q) + 512;
	uint8_t *sub = malloc(len);
	uint32_t t;

	for (t = 0; t < 300; t++) {
		struct csd_sqe s;
		uint32_t tag = a->seq;

		memset(kb, (int)(t + a->seq), sizeof(kb));
		if (fwt_kv(a->fw, CSD_IO_KV_APPEND, a->ctx, a->seq, 0, 2 * t, 1,
			   kb, sizeof(kb), NULL))
			a->errors++;
		/* fused append of token 2t+1 and attention */
		memcpy(sub, &a->seq, 4);
		memcpy(sub + 4, q, sizeof(q));
		memset(sub + 4 + sizeof(q), (int)(t + a->seq + 1), 512);
		s = fwt_attn_sqe(a->ctx, tag, 0, 1, CSD_ATTN_F_FUSED_KV, 0, 0,
				 len);
		if (fwt_run(a->fw, CSDFW_Q_IO, &s, sub, len, NULL))
			a->errors++;
		if (fwt_attn_read(a->fw, a->ctx, tag, q, sizeof(q), NULL))
			a->errors++;
		memset(q, 0, sizeof(q));
		if (fwt_kv(a->fw, CSD_IO_KV_READ, a->ctx, a->seq, 0, 2 * t, 1,
			   rb, sizeof(rb), NULL) || memcmp(kb, rb, 512))
			a->errors++;
	}
	free(sub);
	return NULL;
}

static void test_concurrent(void)
{
	struct csdfw *fw = open_dev(OPTS_FAST);
	struct thr_arg args[4];
	pthread_t th[4];
	uint32_t c;
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(fw);
	CU_ASSERT_EQUAL(fwt_create(fw, 1, 2, 8, 64, CSD_DTYPE_F16, 8, 1000,
				   &c), 0);
	for (i = 0; i < 4; i++) {
		args[i] = (struct thr_arg){ fw, c, (uint32_t)i, 0 };
		pthread_create(&th[i], NULL, thr_main, &args[i]);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(args[i].errors, 0);
	}
	csdfw_destroy(fw);
}

static CU_TestInfo wire_tests[] = {
	{ "offsets", test_wire_offsets },
	{ "spec examples", test_spec_examples },
	{ "spec examples text", test_spec_examples_text },
	{ "config", test_config },
	CU_TEST_INFO_NULL
};

static CU_TestInfo malformed_tests[] = {
	{ "table", test_malformed },
	CU_TEST_INFO_NULL
};

static CU_TestInfo func_tests[] = {
	{ "attention vs reference", test_attention_ref },
	{ "many tags, reset busy", test_many_tags },
	{ "destroy with jobs in flight", test_destroy_inflight },
	{ "re-read of a tag after an abort", test_reread_after_abort },
	{ "limits: contexts, space", test_limits },
	{ "fused append falls back to small extents", test_fused_nogrow },
	{ "modeled time and pacing", test_pacing },
	{ "admin: identify, logs, features", test_admin },
	{ "file-backed store and flush", test_file_backed },
	{ "concurrent submitters", test_concurrent },
	CU_TEST_INFO_NULL
};

static const struct cu_suite suites[] = {
	{ "wire", NULL, NULL, wire_tests },
	{ "malformed", NULL, NULL, malformed_tests },
	{ "functional", NULL, NULL, func_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
