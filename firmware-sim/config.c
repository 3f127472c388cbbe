// SPDX-License-Identifier: MIT
/*
 * config.c - device configuration: defaults and the "key=val,..." parser.
 *
 * The parser is strict: an unknown key, a value that does not parse or is
 * out of range makes the whole string fail with -EINVAL and a message that
 * names the key; @cfg is left unchanged in that case.  A `profile=` key is
 * applied before every other key wherever it appears, so
 * "chan_mbps=800,profile=fast" keeps the explicit channel bandwidth.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static unsigned int online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned int)n : 1;
}

void csdfw_config_default(struct csdfw_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = 16ull << 30;
	cfg->channels = 8;
	cfg->page_size = 4096;
	cfg->pages_per_block = 64;
	cfg->threads = online_cpus();
	cfg->simd = CSD_SIMD_AUTO;
	cfg->pacing = 0;
	cfg->backing[0] = '\0';
	cfg->max_contexts = 64;
	cfg->max_seqs = 4096;
	cfg->max_tokens = 1048576;
	cfg->max_tags = 1024;
	cfg->max_attn_seqs = 1024;
	cfg->max_xfer = 64u << 20;
	if (csdfw_timing_profile(&cfg->timing, "instinfer")) {
		/* model.c not linked in yet: the same numbers by hand */
		snprintf(cfg->timing.name, sizeof(cfg->timing.name),
			 "instinfer");
		cfg->timing.chan_bytes_per_s = 1.4e9;
		cfg->timing.link_bytes_per_s = 7.0e9;
		cfg->timing.read_lat_ns = 36000;
		cfg->timing.prog_lat_ns = 185000;
		cfg->timing.ways = 16;
		cfg->timing.cmd_overhead_ns = 5000;
		cfg->timing.compute_flops = 2e12;
	}
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Unsigned decimal or 0x hex with an optional K/M/G/T (binary) suffix. */
static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K':
		shift = 10;
		break;
	case 'm': case 'M':
		shift = 20;
		break;
	case 'g': case 'G':
		shift = 30;
		break;
	case 't': case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (shift) {
		end++;
		if (*end == 'i' || *end == 'I')	/* "16GiB" style */
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
		if (*end)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -EINVAL;
		v <<= shift;
	}
	*out = v;
	return 0;
}

enum key_kind { K_U64, K_U32, K_MBPS, K_SIMD, K_BOOL, K_PATH };

struct key_desc {
	const char *name;
	enum key_kind kind;
	size_t off;
	uint64_t min, max;
};

#define OFF(f) offsetof(struct csdfw_config, f)

static const struct key_desc keys[] = {
	{ "capacity", K_U64, OFF(capacity), 1, UINT64_MAX },
	{ "channels", K_U32, OFF(channels), 1, CSDFW_MAX_CHANNELS },
	{ "page", K_U32, OFF(page_size), 4096, 1u << 20 },
	{ "block", K_U32, OFF(pages_per_block), 1, 1u << 16 },
	{ "threads", K_U32, OFF(threads), 0, 1024 },
	{ "simd", K_SIMD, OFF(simd), 0, 0 },
	{ "pacing", K_BOOL, OFF(pacing), 0, 1 },
	{ "backing", K_PATH, OFF(backing), 0, 0 },
	{ "contexts", K_U32, OFF(max_contexts), 1, 65535 },
	{ "seqs", K_U32, OFF(max_seqs), 1, 65536 },
	{ "tokens", K_U32, OFF(max_tokens), 1, 1u << 31 },
	{ "tags", K_U32, OFF(max_tags), 1, 65535 },
	{ "attn_seqs", K_U32, OFF(max_attn_seqs), 1, 65535 },
	{ "xfer", K_U32, OFF(max_xfer), 4096, 1u << 30 },
	{ "chan_mbps", K_MBPS, OFF(timing.chan_bytes_per_s), 1, 1u << 30 },
	{ "link_mbps", K_MBPS, OFF(timing.link_bytes_per_s), 1, 1u << 30 },
	{ "read_ns", K_U32, OFF(timing.read_lat_ns), 0, UINT32_MAX },
	{ "prog_ns", K_U32, OFF(timing.prog_lat_ns), 0, UINT32_MAX },
	{ "format", K_BOOL, OFF(format), 0, 1 },
	{ "extent", K_U32, OFF(extent_pages), 1, 1u << 16 },
	{ "extent_max", K_U32, OFF(extent_max_pages), 1, 1u << 20 },
};

static int apply_key(struct csdfw_config *cfg, const char *key,
		     const char *val, char *err, size_t errlen)
{
	const struct key_desc *k = NULL;
	char *field;
	uint64_t v;
	size_t i;

	if (strcmp(key, "profile") == 0)
		return 0;	/* applied in the first pass */
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].name, key) == 0)
			k = &keys[i];
	if (!k) {
		errf(err, errlen, "unknown option '%s'", key);
		return -EINVAL;
	}
	field = (char *)cfg + k->off;
	switch (k->kind) {
	case K_SIMD: {
		int simd;

		if (attn_simd_parse(val, &simd) < 0)
			goto bad;
		*(int *)(void *)field = simd;
		return 0;
	}
	case K_PATH:
		if (strlen(val) >= sizeof(cfg->backing))
			goto bad;
		memcpy(field, val, strlen(val) + 1);
		return 0;
	default:
		break;
	}
	if (parse_size(val, &v) || v < k->min || v > k->max)
		goto bad;
	switch (k->kind) {
	case K_U64:
		*(uint64_t *)(void *)field = v;
		break;
	case K_U32:
		*(uint32_t *)(void *)field = (uint32_t)v;
		break;
	case K_BOOL:
		*(int *)(void *)field = (int)v;
		break;
	case K_MBPS:
		*(double *)(void *)field = (double)v * 1e6;
		break;
	default:
		break;
	}
	return 0;
bad:
	errf(err, errlen, "bad value '%s' for option '%s'", val, key);
	return -EINVAL;
}

int fw_config_check(const struct csdfw_config *cfg, char *err, size_t errlen)
{
	uint64_t block_bytes;

	if (!cfg->channels || cfg->channels > CSDFW_MAX_CHANNELS) {
		errf(err, errlen, "channels must be 1..%d", CSDFW_MAX_CHANNELS);
		return -EINVAL;
	}
	if (cfg->page_size < 4096 || (cfg->page_size & (cfg->page_size - 1)) ||
	    cfg->page_size > (1u << 20)) {
		errf(err, errlen, "page must be a power of two, 4096..1M");
		return -EINVAL;
	}
	if (!cfg->pages_per_block || cfg->pages_per_block > (1u << 16)) {
		errf(err, errlen, "block must be 1..65536 pages");
		return -EINVAL;
	}
	if (cfg->extent_pages && cfg->pages_per_block % cfg->extent_pages) {
		errf(err, errlen, "extent must divide block (%u pages)",
		     cfg->pages_per_block);
		return -EINVAL;
	}
	block_bytes = (uint64_t)cfg->page_size * cfg->pages_per_block;
	if (cfg->capacity / block_bytes < cfg->channels) {
		errf(err, errlen,
		     "capacity must hold at least one block per channel");
		return -EINVAL;
	}
	if (cfg->capacity / cfg->page_size > UINT32_MAX) {
		errf(err, errlen, "capacity too large for the page size");
		return -EINVAL;
	}
	if (cfg->simd < CSD_SIMD_AUTO || cfg->simd >= CSD_SIMD_COUNT) {
		errf(err, errlen, "bad simd");
		return -EINVAL;
	}
	if (cfg->pacing != 0 && cfg->pacing != 1) {
		errf(err, errlen, "pacing must be 0 or 1");
		return -EINVAL;
	}
	if (!cfg->max_contexts || cfg->max_contexts > 65535 ||
	    !cfg->max_seqs || cfg->max_seqs > 65536 ||
	    !cfg->max_tokens || cfg->max_tokens > (1u << 31) ||
	    !cfg->max_tags || cfg->max_tags > 65535 ||
	    !cfg->max_attn_seqs || cfg->max_attn_seqs > 65535) {
		errf(err, errlen, "contexts/seqs/tokens/tags/attn_seqs out of range");
		return -EINVAL;
	}
	if (cfg->max_xfer < 4096 || cfg->max_xfer > (1u << 30) ||
	    cfg->max_xfer % 4) {
		errf(err, errlen, "xfer must be 4096..1G, a multiple of 4");
		return -EINVAL;
	}
	if (memchr(cfg->backing, '\0', sizeof(cfg->backing)) == NULL) {
		errf(err, errlen, "backing path too long");
		return -EINVAL;
	}
	return 0;
}

/* Split "a=b,c=d" in place; calls fn for each item; pass 0 or 1. */
static int walk(struct csdfw_config *cfg, char *s, int pass, char *err,
		size_t errlen)
{
	char *save = NULL, *item;
	int rc;

	for (item = strtok_r(s, ",", &save); item;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');

		if (!eq || eq == item) {
			errf(err, errlen, "option '%s' is not key=value", item);
			return -EINVAL;
		}
		*eq = '\0';
		if (pass == 0) {
			if (strcmp(item, "profile") == 0 &&
			    csdfw_timing_profile(&cfg->timing, eq + 1)) {
				errf(err, errlen,
				     "bad value '%s' for option 'profile'",
				     eq + 1);
				return -EINVAL;
			}
			continue;
		}
		rc = apply_key(cfg, item, eq + 1, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

int csdfw_config_parse(struct csdfw_config *cfg, const char *opts,
		       char *err, size_t errlen)
{
	struct csdfw_config tmp = *cfg;
	char *a = NULL, *b = NULL;
	int rc = 0;

	if (err && errlen)
		err[0] = '\0';
	if (!opts || !*opts)
		return 0;
	a = strdup(opts);
	b = strdup(opts);
	if (!a || !b) {
		errf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = walk(&tmp, a, 0, err, errlen);
	if (!rc)
		rc = walk(&tmp, b, 1, err, errlen);
	if (!rc)
		rc = fw_config_check(&tmp, err, errlen);
	if (!rc)
		*cfg = tmp;
out:
	free(a);
	free(b);
	return rc;
}

const struct csdfw_config *csdfw_get_config(const struct csdfw *fw)
{
	return &fw->cfg;
}
