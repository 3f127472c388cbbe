// SPDX-License-Identifier: MIT
/*
 * csdctl - inspect a CSD: identify, info, stats, contexts, pacing.
 *
 *   csdctl [-d DEVICE] [--json] identify|info|stats|list|ctx ID|pacing on|off
 *
 * Exit status: 0 success, 1 device or command error, 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csd/csd_spec.h"
#include "csd.h"

static const char *dtype_name(unsigned int d)
{
	static const char *const names[] = { "f32", "f16", "bf16" };

	return d < 3 ? names[d] : "?";
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: csdctl [-d DEVICE] [--json] COMMAND\n"
		"\n"
		"commands:\n"
		"  identify        Identify Controller (standard and vendor fields)\n"
		"  info            device summary (limits, geometry, timing)\n"
		"  stats           CSD statistics log\n"
		"  list            KV contexts on the drive\n"
		"  ctx ID          one KV context\n"
		"  pacing on|off   complete commands at modeled device time\n"
		"\n"
		"options:\n"
		"  -d, --device DEVICE  device string (default $CSD_DEVICE, else \"embedded:\")\n"
		"  -j, --json           JSON output\n"
		"  -h, --help           this help\n"
		"\n"
		"exit status: 0 ok, 1 device/command error, 2 usage error\n");
}

static void json_str(const char *key, const char *s, int last)
{
	printf("  \"%s\": \"", key);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c > 0x7e)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	printf("\"%s\n", last ? "" : ",");
}

static void json_u64(const char *key, uint64_t v, int last)
{
	printf("  \"%s\": %llu%s\n", key, (unsigned long long)v,
	       last ? "" : ",");
}

static void trim(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = 0;
	while (n && (dst[n - 1] == ' ' || dst[n - 1] == 0))
		dst[--n] = 0;
}

static int cmd_identify(struct csd_dev *dev, int json)
{
	struct csd_id_ctrl *id;
	struct csd_passthru pt = { 0 };
	char mn[41], sn[21], fr[9], fw[17], simd[17], prof[17];
	const struct csd_id_vs *vs;
	int rc;

	id = calloc(1, sizeof(*id));
	if (!id)
		return -ENOMEM;
	pt.opcode = CSD_ADM_IDENTIFY;
	pt.cdw10 = CSD_ID_CNS_CTRL;
	pt.addr = id;
	pt.data_len = sizeof(*id);
	rc = csd_dev_passthru(dev, 1, &pt);
	if (!rc && pt.status)
		rc = csd_status_to_errno(pt.status);
	if (rc) {
		free(id);
		return rc;
	}
	vs = &id->vs;
	trim(mn, id->mn, sizeof(id->mn));
	trim(sn, id->sn, sizeof(id->sn));
	trim(fr, id->fr, sizeof(id->fr));
	trim(fw, vs->fw_version, sizeof(vs->fw_version));
	trim(simd, vs->simd, sizeof(vs->simd));
	trim(prof, vs->profile, sizeof(vs->profile));
	if (json) {
		printf("{\n");
		json_u64("vid", id->vid, 0);
		json_u64("ssvid", id->ssvid, 0);
		json_str("mn", mn, 0);
		json_str("sn", sn, 0);
		json_str("fr", fr, 0);
		json_u64("ver", id->ver, 0);
		json_u64("nn", id->nn, 0);
		json_u64("sqes", id->sqes, 0);
		json_u64("cqes", id->cqes, 0);
		json_u64("magic", vs->magic, 0);
		json_u64("spec_version", vs->spec_version, 0);
		json_u64("dtypes", vs->dtypes, 0);
		json_u64("features", vs->features, 0);
		json_u64("min_head_dim", vs->min_head_dim, 0);
		json_u64("max_head_dim", vs->max_head_dim, 0);
		json_u64("head_dim_align", vs->head_dim_align, 0);
		json_u64("max_layers", vs->max_layers, 0);
		json_u64("max_kv_heads", vs->max_kv_heads, 0);
		json_u64("max_q_heads", vs->max_q_heads, 0);
		json_u64("max_tags", vs->max_tags, 0);
		json_u64("channels", vs->nchannels, 0);
		json_u64("max_contexts", vs->max_contexts, 0);
		json_u64("max_seqs", vs->max_seqs, 0);
		json_u64("max_tokens", vs->max_tokens, 0);
		json_u64("max_attn_seqs", vs->max_attn_seqs, 0);
		json_u64("max_xfer", vs->max_xfer, 0);
		json_u64("page_size", vs->page_size, 0);
		json_u64("pages_per_block", vs->pages_per_block, 0);
		json_u64("threads", vs->threads, 0);
		json_u64("capacity", vs->capacity, 0);
		json_u64("chan_mbps", vs->chan_mbps, 0);
		json_u64("link_mbps", vs->link_mbps, 0);
		json_u64("read_lat_ns", vs->read_lat_ns, 0);
		json_u64("prog_lat_ns", vs->prog_lat_ns, 0);
		json_u64("cmd_overhead_ns", vs->cmd_overhead_ns, 0);
		json_u64("compute_gflops", vs->compute_gflops, 0);
		json_str("fw_version", fw, 0);
		json_str("simd", simd, 0);
		json_str("profile", prof, 1);
		printf("}\n");
	} else {
		printf("vid             0x%04x\n", id->vid);
		printf("ssvid           0x%04x\n", id->ssvid);
		printf("mn              %s\n", mn);
		printf("sn              %s\n", sn);
		printf("fr              %s\n", fr);
		printf("ver             0x%08x\n", id->ver);
		printf("nn              %u\n", id->nn);
		printf("sqes/cqes       0x%02x/0x%02x\n", id->sqes, id->cqes);
		printf("vs.magic        0x%08x%s\n", vs->magic,
		       vs->magic == CSD_ID_MAGIC ? " (CSD1)" : " (bad)");
		printf("vs.spec_version %u.%u\n", vs->spec_version >> 16,
		       vs->spec_version & 0xffff);
		printf("vs.dtypes       0x%x\n", vs->dtypes);
		printf("vs.features     0x%x\n", vs->features);
		printf("vs.head_dim     %u..%u align %u\n", vs->min_head_dim,
		       vs->max_head_dim, vs->head_dim_align);
		printf("vs.max_layers   %u\n", vs->max_layers);
		printf("vs.max_heads    kv %u q %u\n", vs->max_kv_heads,
		       vs->max_q_heads);
		printf("vs.max_tags     %u\n", vs->max_tags);
		printf("vs.max_contexts %u\n", vs->max_contexts);
		printf("vs.max_seqs     %u\n", vs->max_seqs);
		printf("vs.max_tokens   %u\n", vs->max_tokens);
		printf("vs.max_attn_seqs %u\n", vs->max_attn_seqs);
		printf("vs.max_xfer     %u\n", vs->max_xfer);
		printf("vs.flash        %u channels, page %u, %u pages/block, %llu bytes\n",
		       vs->nchannels, vs->page_size, vs->pages_per_block,
		       (unsigned long long)vs->capacity);
		printf("vs.timing       chan %u MB/s, link %u MB/s, tR %u ns, tPROG %u ns, cmd %u ns, %u GFLOP/s\n",
		       vs->chan_mbps, vs->link_mbps, vs->read_lat_ns,
		       vs->prog_lat_ns, vs->cmd_overhead_ns,
		       vs->compute_gflops);
		printf("vs.fw_version   %s\n", fw);
		printf("vs.simd         %s\n", simd);
		printf("vs.profile      %s\n", prof);
		printf("vs.threads      %u\n", vs->threads);
	}
	free(id);
	return 0;
}

static int cmd_info(struct csd_dev *dev, int json)
{
	struct csd_dev_info in;
	int rc = csd_dev_get_info(dev, &in);

	if (rc)
		return rc;
	if (json) {
		printf("{\n");
		json_str("model", in.model, 0);
		json_str("serial", in.serial, 0);
		json_str("firmware", in.firmware, 0);
		json_str("fw_version", in.fw_version, 0);
		json_str("transport", in.transport, 0);
		json_str("simd", in.simd, 0);
		json_str("profile", in.profile, 0);
		json_u64("spec_version", in.spec_version, 0);
		json_u64("dtypes", in.dtypes, 0);
		json_u64("features", in.features, 0);
		json_u64("min_head_dim", in.min_head_dim, 0);
		json_u64("max_head_dim", in.max_head_dim, 0);
		json_u64("head_dim_align", in.head_dim_align, 0);
		json_u64("max_layers", in.max_layers, 0);
		json_u64("max_kv_heads", in.max_kv_heads, 0);
		json_u64("max_q_heads", in.max_q_heads, 0);
		json_u64("max_contexts", in.max_contexts, 0);
		json_u64("max_seqs", in.max_seqs, 0);
		json_u64("max_tokens", in.max_tokens, 0);
		json_u64("max_tags", in.max_tags, 0);
		json_u64("max_attn_seqs", in.max_attn_seqs, 0);
		json_u64("max_xfer", in.max_xfer, 0);
		json_u64("channels", in.channels, 0);
		json_u64("page_size", in.page_size, 0);
		json_u64("pages_per_block", in.pages_per_block, 0);
		json_u64("threads", in.threads, 0);
		json_u64("capacity", in.capacity, 0);
		json_u64("chan_mbps", in.chan_mbps, 0);
		json_u64("link_mbps", in.link_mbps, 0);
		json_u64("read_lat_ns", in.read_lat_ns, 0);
		json_u64("prog_lat_ns", in.prog_lat_ns, 1);
		printf("}\n");
		return 0;
	}
	printf("model        %s\n", in.model);
	printf("serial       %s\n", in.serial);
	printf("firmware     %s (firmware-sim %s)\n", in.firmware,
	       in.fw_version);
	printf("transport    %s\n", in.transport);
	printf("spec         %u.%u\n", in.spec_version >> 16,
	       in.spec_version & 0xffff);
	printf("dtypes       %s%s%s\n",
	       in.dtypes & (1u << CSD_KV_F32) ? "f32 " : "",
	       in.dtypes & (1u << CSD_KV_F16) ? "f16 " : "",
	       in.dtypes & (1u << CSD_KV_BF16) ? "bf16" : "");
	printf("features     %s%s%s%s%s\n",
	       in.features & CSD_FEAT_FUSED_KV ? "fused-kv " : "",
	       in.features & CSD_FEAT_LSE ? "lse " : "",
	       in.features & CSD_FEAT_PACING ? "pacing " : "",
	       in.features & CSD_FEAT_WINDOW ? "window " : "",
	       in.features & CSD_FEAT_FILE_BACKED ? "file-backed" : "");
	printf("head_dim     %u..%u (multiple of %u)\n", in.min_head_dim,
	       in.max_head_dim, in.head_dim_align);
	printf("limits       layers %u, kv_heads %u, q_heads %u, contexts %u, "
	       "seqs %u, tokens %u\n", in.max_layers, in.max_kv_heads,
	       in.max_q_heads, in.max_contexts, in.max_seqs, in.max_tokens);
	printf("attention    %u tags/context, %u seqs/call, kernel %s, "
	       "%u threads\n", in.max_tags, in.max_attn_seqs, in.simd,
	       in.threads);
	printf("max_xfer     %u bytes\n", in.max_xfer);
	printf("flash        %.1f GiB, %u channels, page %u B, block %u pages\n",
	       in.capacity / (1024.0 * 1024 * 1024), in.channels,
	       in.page_size, in.pages_per_block);
	printf("timing       profile %s: %u MB/s per channel, link %u MB/s, "
	       "tR %u ns, tPROG %u ns\n", in.profile, in.chan_mbps,
	       in.link_mbps, in.read_lat_ns, in.prog_lat_ns);
	return 0;
}

static int cmd_stats(struct csd_dev *dev, int json)
{
	struct csd_dev_stats st;
	int rc = csd_dev_get_stats(dev, &st);

	if (rc)
		return rc;
#define F(x) { #x, st.x }
	const struct {
		const char *name;
		uint64_t v;
	} f[] = {
		F(kv_bytes_stored), F(flash_bytes_used), F(flash_bytes_read),
		F(flash_bytes_written), F(host_bytes_in), F(host_bytes_out),
		F(attn_calls), F(attn_seqs), F(attn_tokens), F(commands),
		F(errors), F(modeled_ns), F(busy_ns), F(contexts),
		F(blocks_free), F(blocks_total),
	};
#undef F
	size_t i, n = sizeof(f) / sizeof(f[0]);

	if (json)
		printf("{\n");
	for (i = 0; i < n; i++) {
		if (json)
			json_u64(f[i].name, f[i].v, i + 1 == n);
		else
			printf("%-20s %llu\n", f[i].name,
			       (unsigned long long)f[i].v);
	}
	if (json)
		printf("}\n");
	return 0;
}

static void print_ctx(const struct csd_ctx_entry *e, int json, int last)
{
	if (json) {
		printf("  {\"id\": %u, \"layers\": %u, \"kv_heads\": %u, "
		       "\"q_heads\": %u, \"head_dim\": %u, \"dtype\": \"%s\", "
		       "\"max_seqs\": %u, \"max_tokens\": %u, "
		       "\"seqs_used\": %u, \"bytes_used\": %llu, "
		       "\"tokens\": %llu}%s\n",
		       e->id, e->layers, e->kv_heads, e->q_heads, e->head_dim,
		       dtype_name(e->dtype), e->max_seqs, e->max_tokens,
		       e->seqs_used, (unsigned long long)e->bytes_used,
		       (unsigned long long)e->tokens, last ? "" : ",");
		return;
	}
	printf("%4u %6u %8u %7u %8u %5s %8u %10u %9u %12llu %12llu\n", e->id,
	       e->layers, e->kv_heads, e->q_heads, e->head_dim,
	       dtype_name(e->dtype), e->max_seqs, e->max_tokens, e->seqs_used,
	       (unsigned long long)e->bytes_used,
	       (unsigned long long)e->tokens);
}

static void print_ctx_header(void)
{
	printf("%4s %6s %8s %7s %8s %5s %8s %10s %9s %12s %12s\n", "id",
	       "layers", "kv_heads", "q_heads", "head_dim", "dtype",
	       "max_seqs", "max_tokens", "seqs_used", "bytes_used", "tokens");
}

static int load_ctx(struct csd_dev *dev, struct csd_ctx_entry **ep)
{
	struct csd_dev_info in;
	struct csd_ctx_entry *e;
	int n;

	n = csd_dev_get_info(dev, &in);
	if (n)	/* 0 or -errno; never let a stray > 0 look like a count */
		return n < 0 ? n : -EIO;
	e = calloc(in.max_contexts ? in.max_contexts : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	n = csd_dev_list_ctx(dev, e, in.max_contexts);
	if (n < 0) {
		free(e);
		return n;
	}
	if ((uint32_t)n > in.max_contexts)
		n = (int)in.max_contexts;
	*ep = e;
	return n;
}

static int cmd_list(struct csd_dev *dev, int json)
{
	struct csd_ctx_entry *e;
	int i, n = load_ctx(dev, &e);

	if (n < 0)
		return n;
	if (json) {
		printf("[\n");
		for (i = 0; i < n; i++)
			print_ctx(&e[i], 1, i + 1 == n);
		printf("]\n");
	} else {
		print_ctx_header();
		for (i = 0; i < n; i++)
			print_ctx(&e[i], 0, 0);
		if (!n)
			printf("(no contexts)\n");
	}
	free(e);
	return 0;
}

static int cmd_ctx(struct csd_dev *dev, uint32_t id, int json)
{
	struct csd_ctx_entry *e;
	int i, n = load_ctx(dev, &e);

	if (n < 0)
		return n;
	for (i = 0; i < n; i++)
		if (e[i].id == id)
			break;
	if (i == n) {
		free(e);
		return -ENOENT;
	}
	if (json) {
		print_ctx(&e[i], 1, 1);
	} else {
		print_ctx_header();
		print_ctx(&e[i], 0, 0);
	}
	free(e);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *devstr = NULL, *cmd;
	struct csd_dev *dev;
	int json = 0, c, rc;
	unsigned long id = 0;
	int pacing = 0;
	char *end;

	while ((c = getopt_long(argc, argv, "d:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			devstr = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	if (!strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "ctx")) {
		if (optind >= argc) {
			fprintf(stderr, "csdctl: ctx needs a context id\n");
			return 2;
		}
		errno = 0;
		id = strtoul(argv[optind], &end, 0);
		if (errno || *end || end == argv[optind] || id > UINT32_MAX) {
			fprintf(stderr, "csdctl: bad context id '%s'\n",
				argv[optind]);
			return 2;
		}
		optind++;
	} else if (!strcmp(cmd, "pacing")) {
		if (optind >= argc || (strcmp(argv[optind], "on") != 0 &&
				       strcmp(argv[optind], "off") != 0)) {
			fprintf(stderr, "csdctl: pacing needs on or off\n");
			return 2;
		}
		pacing = !strcmp(argv[optind++], "on");
	} else if (strcmp(cmd, "identify") != 0 && strcmp(cmd, "info") != 0 &&
		   strcmp(cmd, "stats") != 0 && strcmp(cmd, "list") != 0) {
		fprintf(stderr, "csdctl: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "csdctl: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}

	rc = csd_dev_open(devstr, &dev);
	if (rc) {
		fprintf(stderr, "csdctl: cannot open device '%s': %s\n",
			devstr ? devstr : (getenv("CSD_DEVICE") ?
					   getenv("CSD_DEVICE") : "embedded:"),
			strerror(-rc));
		return 1;
	}
	if (!strcmp(cmd, "identify"))
		rc = cmd_identify(dev, json);
	else if (!strcmp(cmd, "info"))
		rc = cmd_info(dev, json);
	else if (!strcmp(cmd, "stats"))
		rc = cmd_stats(dev, json);
	else if (!strcmp(cmd, "list"))
		rc = cmd_list(dev, json);
	else if (!strcmp(cmd, "ctx"))
		rc = cmd_ctx(dev, (uint32_t)id, json);
	else {
		rc = csd_dev_set_pacing(dev, pacing);
		if (!rc && json)
			printf("{\n  \"pacing\": %s\n}\n",
			       pacing ? "true" : "false");
		else if (!rc)
			printf("pacing %s\n", pacing ? "on" : "off");
	}
	csd_dev_close(dev);
	if (rc) {
		if (rc == -ENOENT && !strcmp(cmd, "ctx"))
			fprintf(stderr, "csdctl: no context %lu\n", id);
		else
			fprintf(stderr, "csdctl: %s: %s\n", cmd,
				strerror(-rc));
		return 1;
	}
	return 0;
}
