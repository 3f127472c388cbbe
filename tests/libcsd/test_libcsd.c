// SPDX-License-Identifier: MIT
/*
 * test_libcsd.c - libcsd API behaviour on the embedded drive: device
 * strings, info, contexts, KV round trips split over max_xfer, attention
 * against a double-precision reference, concurrency, tag exhaustion, the
 * status -> errno table, passthrough and statistics; and, through a fake
 * NVMe node, which aborted attention calls give their tag back.
 */
#include <errno.h>
#include <linux/nvme_ioctl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "csd/csd_spec.h"
#include "csd.h"

#include "cu_main.h"

/* ---- helpers --------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float rng_float(uint64_t *s)	/* [-1, 1) */
{
	return (float)((rng_next(s) >> 40) * (2.0 / (1ull << 24)) - 1.0);
}

static uint16_t f32_to_f16(float f)
{
	uint32_t x, sign, mant;
	int32_t exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffff;
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) {
		if (exp < -10)
			return (uint16_t)sign;
		mant |= 0x800000;
		{
			uint32_t shift = (uint32_t)(14 - exp);
			uint32_t h = mant >> shift;
			uint32_t rem = mant & ((1u << shift) - 1);
			uint32_t half = 1u << (shift - 1);

			if (rem > half || (rem == half && (h & 1)))
				h++;
			return (uint16_t)(sign | h);
		}
	}
	{
		uint32_t h = sign | (uint32_t)exp << 10 | mant >> 13;
		uint32_t rem = mant & 0x1fff;

		if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
			h++;
		return (uint16_t)h;
	}
}

static float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, x;
	float f;

	if (exp == 0) {
		f = (float)mant * (1.0f / 16777216.0f);
		return sign ? -f : f;
	}
	if (exp == 31)
		x = sign | 0x7f800000 | mant << 13;
	else
		x = sign | (exp + 112) << 23 | mant << 13;
	memcpy(&f, &x, 4);
	return f;
}

static uint16_t f32_to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;

	memcpy(&f, &x, 4);
	return f;
}

static size_t dsize(enum csd_kv_dtype d)
{
	return d == CSD_KV_F32 ? 4 : 2;
}

/* Fill n elements of dtype d with random values. */
static void fill_kv(void *buf, size_t n, enum csd_kv_dtype d, uint64_t *s)
{
	size_t i;

	for (i = 0; i < n; i++) {
		float f = rng_float(s);

		if (d == CSD_KV_F32)
			((float *)buf)[i] = f;
		else if (d == CSD_KV_F16)
			((uint16_t *)buf)[i] = f32_to_f16(f);
		else
			((uint16_t *)buf)[i] = f32_to_bf16(f);
	}
}

static double kv_elem(const void *buf, size_t i, enum csd_kv_dtype d)
{
	if (d == CSD_KV_F32)
		return ((const float *)buf)[i];
	if (d == CSD_KV_F16)
		return f16_to_f32(((const uint16_t *)buf)[i]);
	return bf16_to_f32(((const uint16_t *)buf)[i]);
}

/*
 * Double-precision attention of one sequence over tokens [lo, hi) of
 * K/V ([tokens][kvh][hd], dtype d): out[qh][hd], lse[qh].
 */
static void ref_attn(const float *q, const void *k, const void *v,
		     enum csd_kv_dtype d, uint32_t qh, uint32_t kvh,
		     uint32_t hd, uint32_t lo, uint32_t hi, double scale,
		     double *out, double *lse)
{
	uint32_t h, t, i, g = qh / kvh;
	double *s = malloc((hi - lo) * sizeof(double));

	CU_ASSERT_FATAL(s != NULL);
	for (h = 0; h < qh; h++) {
		uint32_t kh = h / g;
		double m = -INFINITY, l = 0;

		for (t = lo; t < hi; t++) {
			double acc = 0;
			size_t base = ((size_t)t * kvh + kh) * hd;

			for (i = 0; i < hd; i++)
				acc += (double)q[(size_t)h * hd + i] *
				       kv_elem(k, base + i, d);
			s[t - lo] = acc * scale;
			if (s[t - lo] > m)
				m = s[t - lo];
		}
		for (i = 0; i < hd; i++)
			out[(size_t)h * hd + i] = 0;
		for (t = lo; t < hi; t++) {
			double p = exp(s[t - lo] - m);
			size_t base = ((size_t)t * kvh + kh) * hd;

			l += p;
			for (i = 0; i < hd; i++)
				out[(size_t)h * hd + i] +=
					p * kv_elem(v, base + i, d);
		}
		for (i = 0; i < hd; i++)
			out[(size_t)h * hd + i] /= l;
		if (lse)
			lse[h] = m + log(l);
	}
	free(s);
}

static struct csd_dev *open_dev(const char *spec)
{
	struct csd_dev *dev = NULL;
	int rc = csd_dev_open(spec, &dev);

	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dev);
	return dev;
}

static const struct csd_ctx_params small_shape = {
	.layers = 2, .kv_heads = 2, .q_heads = 8, .head_dim = 64,
	.dtype = CSD_KV_F16, .max_seqs = 8, .max_tokens = 4096,
};

/* ---- open / info ----------------------------------------------------- */

static void test_open_bad_specs(void)
{
	static const struct {
		const char *spec;
		int err;
	} cases[] = {
		{ "bogus", -EINVAL },
		{ "embeddedx:", -EINVAL },
		{ "tcp://host", -EINVAL },
		{ "shm:/nonexistent/csd.sock", -ENOENT },
		{ "/dev/csd-nonexistent", -ENOENT },	/* kernel transport */
		{ "/dev/csd-nonexistent,bogus", -EINVAL },
		{ "embedded:nosuchkey=1", -EINVAL },
		{ "embedded:channels=abc", -EINVAL },
		{ "embedded:simd=sse9", -EINVAL },
	};
	struct csd_dev *dev = (struct csd_dev *)&dev;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = csd_dev_open(cases[i].spec, &dev);

		CU_ASSERT_EQUAL(rc, cases[i].err);
		CU_ASSERT_PTR_NULL(dev);
		if (rc != cases[i].err)
			fprintf(stderr, "  spec \"%s\": %d\n", cases[i].spec,
				rc);
	}
	CU_ASSERT_EQUAL(csd_dev_open("embedded:", NULL), -EINVAL);
	csd_dev_close(NULL);
}

static void test_open_env(void)
{
	struct csd_dev_info info;
	struct csd_dev *dev = NULL;
	char *saved = getenv("CSD_DEVICE") ? strdup(getenv("CSD_DEVICE")) :
					      NULL;

	setenv("CSD_DEVICE", "shm:/nonexistent", 1);
	CU_ASSERT_EQUAL(csd_dev_open(NULL, &dev), -ENOENT);
	CU_ASSERT_EQUAL(csd_dev_open("", &dev), -ENOENT);
	/* an explicit string wins over the environment */
	dev = open_dev("embedded:channels=2");
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, &info), 0);
	CU_ASSERT_EQUAL(info.channels, 2);
	csd_dev_close(dev);

	setenv("CSD_DEVICE", "embedded:channels=4", 1);
	dev = open_dev(NULL);
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, &info), 0);
	CU_ASSERT_EQUAL(info.channels, 4);
	csd_dev_close(dev);

	unsetenv("CSD_DEVICE");
	dev = open_dev(NULL);
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, &info), 0);
	CU_ASSERT_STRING_EQUAL(info.transport, "embedded");
	CU_ASSERT_EQUAL(info.channels, 8);
	csd_dev_close(dev);
	dev = open_dev("embedded");
	csd_dev_close(dev);

	if (saved) {
		setenv("CSD_DEVICE", saved, 1);
		free(saved);
	}
}

static void test_info(void)
{
	struct csd_dev *dev = open_dev("embedded:");
	struct csd_dev_info in;

	CU_ASSERT_EQUAL(csd_dev_get_info(NULL, &in), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, NULL), -EINVAL);
	CU_ASSERT_EQUAL_FATAL(csd_dev_get_info(dev, &in), 0);
	CU_ASSERT(strncmp(in.model, "CSD-SIM", 7) == 0);
	CU_ASSERT(in.model[strlen(in.model) - 1] != ' ');
	CU_ASSERT_STRING_EQUAL(in.serial, "CSDSIM0001");
	CU_ASSERT_STRING_EQUAL(in.firmware, "0.1.0");
	CU_ASSERT(in.fw_version[0] != 0);
	CU_ASSERT_STRING_EQUAL(in.transport, "embedded");
	CU_ASSERT(in.simd[0] != 0);
	CU_ASSERT_STRING_EQUAL(in.profile, "instinfer");
	CU_ASSERT_EQUAL(in.spec_version, CSD_SPEC_VERSION);
	CU_ASSERT_EQUAL(in.dtypes & 7u, 7u);
	CU_ASSERT(in.features & CSD_FEAT_FUSED_KV);
	CU_ASSERT(in.features & CSD_FEAT_LSE);
	CU_ASSERT_EQUAL(in.min_head_dim, 64);
	CU_ASSERT_EQUAL(in.max_head_dim, 256);
	CU_ASSERT_EQUAL(in.head_dim_align, 16);
	CU_ASSERT_EQUAL(in.max_layers, 256);
	CU_ASSERT_EQUAL(in.max_kv_heads, 256);
	CU_ASSERT_EQUAL(in.max_q_heads, 1024);
	CU_ASSERT_EQUAL(in.max_contexts, 64);
	CU_ASSERT_EQUAL(in.max_seqs, 4096);
	CU_ASSERT_EQUAL(in.max_tokens, 1048576);
	CU_ASSERT_EQUAL(in.max_tags, 1024);
	CU_ASSERT_EQUAL(in.max_attn_seqs, 1024);
	CU_ASSERT_EQUAL(in.max_xfer, 64u << 20);
	CU_ASSERT_EQUAL(in.channels, 8);
	CU_ASSERT_EQUAL(in.page_size, 4096);
	CU_ASSERT_EQUAL(in.pages_per_block, 64);
	CU_ASSERT(in.threads >= 1);
	CU_ASSERT_EQUAL(in.capacity, 16ull << 30);
	CU_ASSERT_EQUAL(in.chan_mbps, 1400);
	CU_ASSERT_EQUAL(in.link_mbps, 7000);
	CU_ASSERT(in.read_lat_ns > 0 && in.prog_lat_ns > in.read_lat_ns);
	csd_dev_close(dev);

	dev = open_dev("embedded:xfer=65536,tags=4,channels=4,profile=fast");
	CU_ASSERT_EQUAL_FATAL(csd_dev_get_info(dev, &in), 0);
	CU_ASSERT_EQUAL(in.max_xfer, 65536);
	CU_ASSERT_EQUAL(in.max_tags, 4);
	CU_ASSERT_EQUAL(in.channels, 4);
	CU_ASSERT_STRING_EQUAL(in.profile, "fast");
	csd_dev_close(dev);
}

/* ---- contexts -------------------------------------------------------- */

static void test_ctx_lifecycle(void)
{
	struct csd_dev *dev = open_dev("embedded:");
	struct csd_ctx_entry ents[4];
	struct csd_ctx_params p;
	struct csd_ctx *a, *b;
	int n;

	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, ents, 4), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_shape, &a), 0);
	CU_ASSERT(csd_ctx_get_id(a) >= 1);
	CU_ASSERT_EQUAL(csd_ctx_get_params(a, &p), 0);
	CU_ASSERT_EQUAL(memcmp(&p, &small_shape, sizeof(p)), 0);
	p.dtype = CSD_KV_BF16;
	p.layers = 3;
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &p, &b), 0);
	CU_ASSERT_NOT_EQUAL(csd_ctx_get_id(a), csd_ctx_get_id(b));

	n = csd_dev_list_ctx(dev, ents, 4);
	CU_ASSERT_EQUAL(n, 2);
	if (n == 2) {
		CU_ASSERT(ents[0].id < ents[1].id);
		CU_ASSERT_EQUAL(ents[0].id, csd_ctx_get_id(a));
		CU_ASSERT_EQUAL(ents[0].layers, 2);
		CU_ASSERT_EQUAL(ents[0].kv_heads, 2);
		CU_ASSERT_EQUAL(ents[0].q_heads, 8);
		CU_ASSERT_EQUAL(ents[0].head_dim, 64);
		CU_ASSERT_EQUAL(ents[0].dtype, CSD_KV_F16);
		CU_ASSERT_EQUAL(ents[0].max_seqs, 8);
		CU_ASSERT_EQUAL(ents[0].max_tokens, 4096);
		CU_ASSERT_EQUAL(ents[1].layers, 3);
		CU_ASSERT_EQUAL(ents[1].dtype, CSD_KV_BF16);
	}
	/* fewer slots than contexts: count is still the total */
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, ents, 1), 2);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, NULL, 0), 2);

	CU_ASSERT_EQUAL(csd_ctx_destroy(a), 0);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, ents, 4), 1);
	CU_ASSERT_EQUAL(ents[0].id, csd_ctx_get_id(b));
	/* b is left for csd_dev_close() to destroy */
	csd_dev_close(dev);
	CU_ASSERT_EQUAL(csd_ctx_destroy(NULL), -EINVAL);
}

static void test_ctx_bad_shapes(void)
{
	struct csd_dev *dev = open_dev("embedded:");
	struct csd_ctx *ctx = NULL;
	struct csd_ctx_params p;
	static const struct {
		const char *what;
		int field, value;
	} cases[] = {
		{ "layers 0", 0, 0 }, { "layers 257", 0, 257 },
		{ "kv_heads 0", 1, 0 }, { "q_heads not multiple", 2, 9 },
		{ "head_dim 72", 3, 72 }, { "head_dim 32", 3, 32 },
		{ "head_dim 512", 3, 512 }, { "dtype 3", 4, 3 },
		{ "max_seqs 0", 5, 0 }, { "max_seqs 4097", 5, 4097 },
		{ "max_tokens 0", 6, 0 }, { "layers 70000", 0, 70000 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		p = small_shape;
		switch (cases[i].field) {
		case 0: p.layers = (uint32_t)cases[i].value; break;
		case 1: p.kv_heads = (uint32_t)cases[i].value; break;
		case 2: p.q_heads = (uint32_t)cases[i].value; break;
		case 3: p.head_dim = (uint32_t)cases[i].value; break;
		case 4: p.dtype = (enum csd_kv_dtype)cases[i].value; break;
		case 5: p.max_seqs = (uint32_t)cases[i].value; break;
		default: p.max_tokens = (uint32_t)cases[i].value; break;
		}
		rc = csd_ctx_create(dev, &p, &ctx);
		CU_ASSERT_EQUAL(rc, -EOPNOTSUPP);
		CU_ASSERT_PTR_NULL(ctx);
		if (rc != -EOPNOTSUPP)
			fprintf(stderr, "  %s: %d\n", cases[i].what, rc);
		if (!rc)
			csd_ctx_destroy(ctx);
	}
	CU_ASSERT_EQUAL(csd_ctx_create(dev, NULL, &ctx), -EINVAL);
	CU_ASSERT_EQUAL(csd_ctx_create(dev, &small_shape, NULL), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, NULL, 0), 0);
	csd_dev_close(dev);
}

static void test_ctx_limit(void)
{
	struct csd_dev *dev = open_dev("embedded:contexts=2");
	struct csd_ctx *c[3] = { NULL };

	CU_ASSERT_EQUAL(csd_ctx_create(dev, &small_shape, &c[0]), 0);
	CU_ASSERT_EQUAL(csd_ctx_create(dev, &small_shape, &c[1]), 0);
	CU_ASSERT_EQUAL(csd_ctx_create(dev, &small_shape, &c[2]), -EMFILE);
	CU_ASSERT_EQUAL(csd_ctx_destroy(c[0]), 0);
	/* lowest free id is reused */
	CU_ASSERT_EQUAL(csd_ctx_create(dev, &small_shape, &c[2]), 0);
	CU_ASSERT_EQUAL(csd_ctx_get_id(c[2]), 1);
	csd_dev_close(dev);
}

static void test_ctx_query_reset(void)
{
	struct csd_dev *dev = open_dev("embedded:");
	struct csd_ctx_usage u;
	uint32_t lens[10];
	struct csd_ctx *ctx;
	uint64_t s = 1;
	size_t row = 2 * 64 * 2;
	void *k = malloc(100 * row), *v = malloc(100 * row);

	CU_ASSERT_FATAL(k && v);
	fill_kv(k, 100 * row / 2, CSD_KV_F16, &s);
	fill_kv(v, 100 * row / 2, CSD_KV_F16, &s);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &small_shape, &ctx), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 100, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 1, 0, 60, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 3, 0, 0, 7, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 3, 1, 0, 7, k, v), 0);

	memset(lens, 0xff, sizeof(lens));
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u, lens, 10), 8);
	CU_ASSERT_EQUAL(lens[0], 60);	/* min over layers */
	CU_ASSERT_EQUAL(lens[1], 0);
	CU_ASSERT_EQUAL(lens[3], 7);
	CU_ASSERT_EQUAL(lens[8], 0);	/* beyond max_seqs: zeroed */
	CU_ASSERT_EQUAL(lens[9], 0);
	CU_ASSERT_EQUAL(u.seqs_used, 2);
	CU_ASSERT_EQUAL(u.tokens, 100 + 60 + 7 + 7);
	CU_ASSERT_EQUAL(u.inflight, 0);
	CU_ASSERT(u.tokens_per_page > 0);
	CU_ASSERT(u.bytes_used > 0);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u, NULL, 0), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, NULL, lens, 2), 2);

	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 0), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(ctx, &u, lens, 4), 4);
	CU_ASSERT_EQUAL(lens[0], 0);
	CU_ASSERT_EQUAL(lens[3], 7);
	CU_ASSERT_EQUAL(u.seqs_used, 1);
	CU_ASSERT_EQUAL(u.tokens, 14);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 5, k, v), 0);
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 8), -ERANGE);
	CU_ASSERT_EQUAL(csd_seq_reset(ctx, 70000), -ERANGE);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);
	free(k);
	free(v);
}

/* ---- KV -------------------------------------------------------------- */

static void kv_roundtrip(enum csd_kv_dtype d)
{
	struct csd_dev *dev = open_dev("embedded:xfer=65536");
	struct csd_ctx_params p = {
		.layers = 2, .kv_heads = 8, .q_heads = 8, .head_dim = 128,
		.dtype = d, .max_seqs = 4, .max_tokens = 2000,
	};
	struct csd_dev_stats st0, st1;
	size_t row = (size_t)8 * 128 * dsize(d);
	uint32_t n = 1000;
	struct csd_ctx *ctx;
	uint64_t s = 42 + d;
	char *k = malloc(n * row), *v = malloc(n * row);
	char *k2 = calloc(n, row), *v2 = calloc(n, row);

	CU_ASSERT_FATAL(k && v && k2 && v2);
	fill_kv(k, n * row / dsize(d), d, &s);
	fill_kv(v, n * row / dsize(d), d, &s);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &st0), 0);
	/* 2 rows per token; 64 KiB per command -> several commands */
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, 0, 3, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, 3, n - 3, k + 3 * row,
				      v + 3 * row), 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dev, &st1), 0);
	CU_ASSERT(st1.commands - st0.commands >=
		  1 + (n - 3) / (65536 / (2 * row)));
	CU_ASSERT_EQUAL(st1.kv_bytes_stored - st0.kv_bytes_stored,
			2ull * n * row);

	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 0, n, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k, k2, n * row), 0);
	CU_ASSERT_EQUAL(memcmp(v, v2, n * row), 0);
	memset(k2, 0, n * row);
	memset(v2, 0, n * row);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 5, 700, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k + 5 * row, k2, 700 * row), 0);
	CU_ASSERT_EQUAL(memcmp(v + 5 * row, v2, 700 * row), 0);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, n - 1, 1, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k + (n - 1) * row, k2, row), 0);

	/* errors */
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, n - 1, 2, k2, v2), -ERANGE);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, 0, 1, k2, v2), -ERANGE);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, n + 1, 1, k, v), -EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, 0, 1, k, v), -EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 4, 0, 0, 1, k, v), -ERANGE);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 2, 0, 1, k, v), -ERANGE);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 0, k, v), -EINVAL);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 1, NULL, v), -EINVAL);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, n, 1001, k, v), -EFBIG);
	/* a failed append leaves the stored tokens untouched */
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 1, 1, 0, n, k2, v2), 0);
	CU_ASSERT_EQUAL(memcmp(k, k2, n * row), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 1, 1, n, 1000, k, v), 0);

	csd_dev_close(dev);
	free(k);
	free(v);
	free(k2);
	free(v2);
}

static void test_kv_f16(void) { kv_roundtrip(CSD_KV_F16); }
static void test_kv_bf16(void) { kv_roundtrip(CSD_KV_BF16); }
static void test_kv_f32(void) { kv_roundtrip(CSD_KV_F32); }

/* ---- attention ------------------------------------------------------- */

struct attn_fix {
	struct csd_dev *dev;
	struct csd_ctx *ctx;
	struct csd_ctx_params p;
	uint32_t nseq;
	uint32_t len[8];
	void *k[8], *v[8];	/* host copies, layer 0, up to cap tokens */
	uint32_t cap;
};

static void fix_init(struct attn_fix *f, const char *spec,
		     const struct csd_ctx_params *p, uint32_t nseq,
		     const uint32_t *len, uint32_t cap, uint64_t seed)
{
	size_t row = (size_t)p->kv_heads * p->head_dim * dsize(p->dtype);
	uint32_t i;

	memset(f, 0, sizeof(*f));
	f->dev = open_dev(spec);
	f->p = *p;
	f->nseq = nseq;
	f->cap = cap;
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(f->dev, p, &f->ctx), 0);
	for (i = 0; i < nseq; i++) {
		f->len[i] = len[i];
		f->k[i] = malloc(cap * row);
		f->v[i] = malloc(cap * row);
		CU_ASSERT_FATAL(f->k[i] && f->v[i]);
		fill_kv(f->k[i], cap * row / dsize(p->dtype), p->dtype, &seed);
		fill_kv(f->v[i], cap * row / dsize(p->dtype), p->dtype, &seed);
		if (len[i])
			CU_ASSERT_EQUAL(csd_kv_append(f->ctx, i, 0, 0, len[i],
						      f->k[i], f->v[i]), 0);
	}
}

static void fix_fini(struct attn_fix *f)
{
	uint32_t i;

	CU_ASSERT_EQUAL(csd_ctx_destroy(f->ctx), 0);
	csd_dev_close(f->dev);
	for (i = 0; i < f->nseq; i++) {
		free(f->k[i]);
		free(f->v[i]);
	}
}

/* Compare one call's out/lse against the reference; returns max error. */
static double check_out(struct attn_fix *f, uint32_t seq, const float *q,
			const float *out, const float *lse, uint32_t window,
			float scale)
{
	uint32_t qh = f->p.q_heads, hd = f->p.head_dim, i;
	uint32_t hi = f->len[seq], lo = window && hi > window ? hi - window : 0;
	double *ro = malloc((size_t)qh * hd * sizeof(double));
	double *rl = malloc(qh * sizeof(double)), err = 0;
	double sc = scale ? scale : 1.0 / sqrt(hd);

	CU_ASSERT_FATAL(ro && rl);
	ref_attn(q, f->k[seq], f->v[seq], f->p.dtype, qh, f->p.kv_heads, hd,
		 lo, hi, sc, ro, rl);
	for (i = 0; i < qh * hd; i++)
		err = fmax(err, fabs(ro[i] - out[i]));
	if (lse)
		for (i = 0; i < qh; i++)
			err = fmax(err, fabs(rl[i] - lse[i]));
	free(ro);
	free(rl);
	return err;
}

static void attn_case(enum csd_kv_dtype d, uint32_t qh, uint32_t kvh,
		      uint32_t hd, uint32_t flags, uint32_t window, float scale)
{
	static const uint32_t lens[4] = { 1, 17, 300, 64 };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = kvh, .q_heads = qh, .head_dim = hd,
		.dtype = d, .max_seqs = 4, .max_tokens = 512,
	};
	struct attn_fix f;
	uint32_t seqs[4] = { 2, 0, 3, 1 }, i;
	size_t qn = (size_t)qh * hd, row = (size_t)kvh * hd * dsize(d);
	float *q = malloc(4 * qn * sizeof(float));
	float *out = malloc(4 * qn * sizeof(float));
	float *lse = malloc(4 * qh * sizeof(float));
	char *kn = malloc(4 * row), *vn = malloc(4 * row);
	struct csd_attn_result res;
	struct csd_attn_req req = {
		.layer = 0, .nseq = 4, .flags = flags, .window = window,
		.scale = scale, .seqs = seqs, .q = q, .k_new = kn,
		.v_new = vn, .out = out, .lse = lse,
	};
	uint64_t s = 7, tokens = 0;
	double err = 0;

	CU_ASSERT_FATAL(q && out && lse && kn && vn);
	fix_init(&f, "embedded:", &p, 4, lens, 512, 99 + hd);
	for (i = 0; i < 4 * qn; i++)
		q[i] = 2.0f * rng_float(&s);
	if (flags & CSD_ATTN_FUSED_KV) {
		/* the new token is the next row of the host copy */
		for (i = 0; i < 4; i++) {
			memcpy(kn + i * row, (char *)f.k[seqs[i]] +
			       (size_t)f.len[seqs[i]] * row, row);
			memcpy(vn + i * row, (char *)f.v[seqs[i]] +
			       (size_t)f.len[seqs[i]] * row, row);
			f.len[seqs[i]]++;
		}
	}
	memset(out, 0, 4 * qn * sizeof(float));
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, &res), 0);
	for (i = 0; i < 4; i++) {
		uint32_t l = f.len[seqs[i]];

		err = fmax(err, check_out(&f, seqs[i], q + i * qn,
					  out + i * qn,
					  flags & CSD_ATTN_LSE ? lse + i * qh :
								 NULL,
					  window, scale));
		tokens += window && l > window ? window : l;
	}
	CU_ASSERT(err < 2e-3);
	if (err >= 2e-3)
		fprintf(stderr, "  dtype %d qh %u kvh %u hd %u flags %u window %u: err %g\n",
			d, qh, kvh, hd, flags, window, err);
	CU_ASSERT_EQUAL(res.tokens, tokens);
	CU_ASSERT(res.modeled_ns > 0);
	if (flags & CSD_ATTN_FUSED_KV) {
		uint32_t lens_now[4];

		CU_ASSERT_EQUAL(csd_ctx_query(f.ctx, NULL, lens_now, 4), 4);
		for (i = 0; i < 4; i++)
			CU_ASSERT_EQUAL(lens_now[i], f.len[i]);
	}
	fix_fini(&f);
	free(q);
	free(out);
	free(lse);
	free(kn);
	free(vn);
}

static void test_attn_dense(void)
{
	attn_case(CSD_KV_F16, 8, 2, 128, CSD_ATTN_LSE, 0, 0);
	attn_case(CSD_KV_F32, 4, 4, 64, 0, 0, 0.05f);
	attn_case(CSD_KV_BF16, 8, 1, 256, CSD_ATTN_LSE, 0, 0);
}

static void test_attn_fused_window(void)
{
	attn_case(CSD_KV_F16, 8, 2, 128, CSD_ATTN_FUSED_KV | CSD_ATTN_LSE,
		  0, 0);
	attn_case(CSD_KV_F16, 8, 8, 80, CSD_ATTN_LSE, 16, 0);
	attn_case(CSD_KV_F32, 16, 2, 64, CSD_ATTN_FUSED_KV, 33, 0.1f);
}

static void test_attn_errors(void)
{
	static const uint32_t lens[2] = { 10, 0 };
	struct csd_ctx_params p = small_shape;
	struct attn_fix f;
	float q[2 * 8 * 64] = { 0 }, out[2 * 8 * 64];
	uint32_t seqs[2] = { 0, 1 };
	struct csd_attn_req req = {
		.layer = 0, .nseq = 1, .seqs = seqs, .q = q, .out = out,
	};
	struct csd_attn *op = (struct csd_attn *)&op;

	p.max_seqs = 2;
	fix_init(&f, "embedded:", &p, 2, lens, 16, 5);
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, NULL), -EINVAL);
	CU_ASSERT_EQUAL(csd_attn_submit(NULL, &req, &op), -EINVAL);
	CU_ASSERT_PTR_NULL(op);
	req.nseq = 0;
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op), -EINVAL);
	req.nseq = 1;
	req.flags = 1u << 7;
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op), -EINVAL);
	req.flags = CSD_ATTN_LSE;	/* lse NULL */
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op), -EINVAL);
	req.flags = CSD_ATTN_FUSED_KV;	/* k_new NULL */
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op), -EINVAL);
	req.flags = 0;
	req.layer = 2;
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -ERANGE);
	req.layer = 0;
	seqs[0] = 5;
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -ERANGE);
	seqs[0] = 1;	/* empty */
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -ENODATA);
	seqs[0] = 0;
	seqs[1] = 0;	/* duplicate */
	req.nseq = 2;
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -EINVAL);
	req.nseq = 1;
	req.scale = NAN;
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -EINVAL);
	req.scale = -1.0f;
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), -EINVAL);
	req.scale = 0;
	/* the failed calls did not leak tags or leave the context busy */
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, NULL), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(NULL, NULL), -EINVAL);
	fix_fini(&f);
}

static void test_attn_tags_exhausted(void)
{
	static const uint32_t lens[1] = { 40 };
	struct csd_ctx_params p = small_shape;
	struct attn_fix f;
	float q[8 * 64], out[5][8 * 64];
	uint32_t seq = 0;
	struct csd_attn *op[5];
	struct csd_attn_req req = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};
	uint64_t s = 3;
	int i;

	for (i = 0; i < 8 * 64; i++)
		q[i] = rng_float(&s);
	fix_init(&f, "embedded:tags=4", &p, 1, lens, 40, 11);
	for (i = 0; i < 4; i++) {
		req.out = out[i];
		CU_ASSERT_EQUAL_FATAL(csd_attn_submit(f.ctx, &req, &op[i]), 0);
	}
	req.out = out[4];
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op[4]), -EAGAIN);
	CU_ASSERT_EQUAL(csd_attn_wait(op[1], NULL), 0);
	CU_ASSERT_EQUAL(csd_attn_submit(f.ctx, &req, &op[4]), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(op[0], NULL), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(op[2], NULL), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(op[3], NULL), 0);
	CU_ASSERT_EQUAL(csd_attn_wait(op[4], NULL), 0);
	for (i = 1; i < 5; i++)
		CU_ASSERT_EQUAL(memcmp(out[0], out[i], sizeof(out[0])), 0);
	CU_ASSERT(check_out(&f, 0, q, out[0], NULL, 0, 0) < 1e-3);
	fix_fini(&f);
}

static void test_attn_destroy_inflight(void)
{
	static const uint32_t lens[1] = { 200 };
	struct csd_dev *dev;
	struct csd_ctx *ctx;
	struct csd_ctx_params p = small_shape;
	float q[8 * 64] = { 0 }, out[3][8 * 64];
	uint32_t seq = 0;
	struct csd_attn *op[3];
	struct csd_attn_req req = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};
	size_t row = 2 * 64 * 2;
	char *k = calloc(lens[0], row);
	int i;

	CU_ASSERT_FATAL(k != NULL);
	dev = open_dev("embedded:");
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, lens[0], k, k), 0);
	for (i = 0; i < 3; i++) {
		req.out = out[i];
		CU_ASSERT_EQUAL_FATAL(csd_attn_submit(ctx, &req, &op[i]), 0);
	}
	/* destroy waits for the reads; the ops stay waitable */
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dev, NULL, 0), 0);
	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(csd_attn_wait(op[i], NULL), 0);
	csd_dev_close(dev);
	free(k);
}

struct thr_arg {
	struct attn_fix *f;
	const float *q;		/* [nseq][qn] */
	const float *expect;	/* [nseq][qn] */
	int id, calls, failures;
};

static void *thr_main(void *a)
{
	struct thr_arg *t = a;
	size_t qn = (size_t)t->f->p.q_heads * t->f->p.head_dim;
	enum { INFLIGHT = 6 };
	struct csd_attn *op[INFLIGHT];
	float *out = malloc(INFLIGHT * 2 * qn * sizeof(float));
	float *qb = malloc(INFLIGHT * 2 * qn * sizeof(float));
	uint32_t seqs[INFLIGHT][2], nseq = t->f->nseq;
	int i = 0, j, n, m;

	if (!out || !qb) {
		t->failures++;
		goto out;
	}
	while (i < t->calls) {
		/* a round: up to INFLIGHT calls in flight, then wait all */
		for (n = 0; n < INFLIGHT && i < t->calls; n++, i++) {
			uint32_t a0 = (uint32_t)(t->id * 7 + i) % nseq;
			uint32_t a1 = (a0 + 1 + (uint32_t)i % (nseq - 1)) % nseq;
			struct csd_attn_req req = {
				.layer = 0, .nseq = 2, .seqs = seqs[n],
				.q = qb + (size_t)n * 2 * qn,
				.out = out + (size_t)n * 2 * qn,
			};

			seqs[n][0] = a0;
			seqs[n][1] = a1;
			memcpy(qb + (size_t)n * 2 * qn, t->q + a0 * qn,
			       qn * sizeof(float));
			memcpy(qb + ((size_t)n * 2 + 1) * qn, t->q + a1 * qn,
			       qn * sizeof(float));
			if (csd_attn_submit(t->f->ctx, &req, &op[n])) {
				t->failures++;
				break;
			}
		}
		for (m = 0; m < n; m++) {
			if (csd_attn_wait(op[m], NULL))
				t->failures++;
			for (j = 0; j < 2; j++)
				if (memcmp(out + ((size_t)m * 2 + j) * qn,
					   t->expect + seqs[m][j] * qn,
					   qn * sizeof(float)))
					t->failures++;
		}
		if (n < INFLIGHT && i < t->calls)
			break;	/* a submit failed */
	}
out:
	free(out);
	free(qb);
	return NULL;
}

static void test_attn_threads(void)
{
	enum { NTHR = 4, NSEQ = 6 };
	static const uint32_t lens[NSEQ] = { 50, 130, 7, 260, 33, 1 };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 4, .head_dim = 64,
		.dtype = CSD_KV_F16, .max_seqs = NSEQ, .max_tokens = 300,
	};
	struct csd_dev_stats st0, st1;
	struct thr_arg ta[NTHR];
	pthread_t th[NTHR];
	struct attn_fix f;
	size_t qn = 4 * 64;
	float *q = malloc(NSEQ * qn * sizeof(float));
	float *expect = malloc(NSEQ * qn * sizeof(float));
	int calls = getenv("CSD_TEST_SANITIZER") ? 60 : 300;
	uint64_t s = 77;
	uint32_t i;

	CU_ASSERT_FATAL(q && expect);
	fix_init(&f, "embedded:", &p, NSEQ, lens, 300, 21);
	for (i = 0; i < NSEQ * qn; i++)
		q[i] = rng_float(&s);
	/* expected outputs: one call per sequence (the device is
	 * deterministic for a given sequence and q) */
	for (i = 0; i < NSEQ; i++) {
		struct csd_attn_req req = {
			.layer = 0, .nseq = 1, .seqs = &i, .q = q + i * qn,
			.out = expect + i * qn,
		};

		CU_ASSERT_EQUAL_FATAL(csd_attn_run(f.ctx, &req, NULL), 0);
		CU_ASSERT(check_out(&f, i, q + i * qn, expect + i * qn, NULL,
				    0, 0) < 1e-3);
	}
	CU_ASSERT_EQUAL(csd_dev_get_stats(f.dev, &st0), 0);
	for (i = 0; i < NTHR; i++) {
		ta[i] = (struct thr_arg){ .f = &f, .q = q, .expect = expect,
					  .id = (int)i, .calls = calls };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, thr_main,
						     &ta[i]), 0);
	}
	for (i = 0; i < NTHR; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(ta[i].failures, 0);
	}
	CU_ASSERT_EQUAL(csd_dev_get_stats(f.dev, &st1), 0);
	CU_ASSERT_EQUAL(st1.attn_calls - st0.attn_calls,
			(uint64_t)NTHR * calls);
	CU_ASSERT_EQUAL(st1.attn_seqs - st0.attn_seqs,
			(uint64_t)NTHR * calls * 2);
	fix_fini(&f);
	free(q);
	free(expect);
}

/* ---- status, passthru, stats, features ------------------------------- */

static void test_status_map(void)
{
	static const struct {
		uint8_t sct, sc;
		int err;
		const char *name;
	} t[] = {
		{ 0, CSD_SC_SUCCESS, 0, "SUCCESS" },
		{ 0, CSD_SC_INVALID_OPCODE, -EOPNOTSUPP, "INVALID_OPCODE" },
		{ 0, CSD_SC_INVALID_FIELD, -EINVAL, "INVALID_FIELD" },
		{ 0, CSD_SC_INVALID_NS, -EINVAL, "INVALID_NS" },
		{ 0, CSD_SC_DATA_XFER_ERROR, -EIO, "DATA_XFER_ERROR" },
		{ 0, CSD_SC_INTERNAL, -EIO, "INTERNAL" },
		{ 0, CSD_SC_ABORT_REQ, -ECANCELED, "ABORT_REQ" },
		{ 0, CSD_SC_SGL_INVALID, -EFAULT, "SGL_INVALID" },
		{ 1, CSD_SC_INVALID_LOG_PAGE, -EINVAL, "INVALID_LOG_PAGE" },
		{ 7, CSD_VSC_CTX_INVALID, -ENOENT, "CTX_INVALID" },
		{ 7, CSD_VSC_CTX_FULL, -EFBIG, "CTX_FULL" },
		{ 7, CSD_VSC_NO_SPACE, -ENOSPC, "NO_SPACE" },
		{ 7, CSD_VSC_LENGTH, -EINVAL, "LENGTH" },
		{ 7, CSD_VSC_TOKEN_ORDER, -EILSEQ, "TOKEN_ORDER" },
		{ 7, CSD_VSC_SEQ_RANGE, -ERANGE, "SEQ_RANGE" },
		{ 7, CSD_VSC_LAYER_RANGE, -ERANGE, "LAYER_RANGE" },
		{ 7, CSD_VSC_TOKEN_RANGE, -ERANGE, "TOKEN_RANGE" },
		{ 7, CSD_VSC_TAG_BUSY, -EBUSY, "TAG_BUSY" },
		{ 7, CSD_VSC_TAG_INVALID, -EINVAL, "TAG_INVALID" },
		{ 7, CSD_VSC_CTX_LIMIT, -EMFILE, "CTX_LIMIT" },
		{ 7, CSD_VSC_UNSUPPORTED, -EOPNOTSUPP, "UNSUPPORTED" },
		{ 7, CSD_VSC_BUSY, -EBUSY, "BUSY" },
		{ 7, CSD_VSC_EMPTY_SEQ, -ENODATA, "EMPTY_SEQ" },
		/* anything else */
		{ 0, 0x05, -EIO, NULL },
		{ 1, 0x01, -EIO, NULL },
		{ 2, 0x81, -EIO, NULL },
		{ 7, 0x0f, -EIO, NULL },
		{ 7, 0xff, -EIO, NULL },
		{ 3, 0x01, -EIO, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint16_t st = CSD_STATUS(t[i].sct, t[i].sc);
		const char *name = csd_status_str(st);

		CU_ASSERT_EQUAL(csd_status_to_errno(st), t[i].err);
		/* DNR and More bits do not change the mapping */
		if (st)
			CU_ASSERT_EQUAL(csd_status_to_errno(st |
							    CSD_STATUS_DNR |
							    CSD_STATUS_MORE),
					t[i].err);
		CU_ASSERT_PTR_NOT_NULL(name);
		if (t[i].name) {
			CU_ASSERT_STRING_EQUAL(name, t[i].name);
		} else {
			CU_ASSERT(strlen(name) > 0);
		}
	}
}

static void test_passthru(void)
{
	struct csd_dev *dev = open_dev("embedded:");
	struct csd_passthru pt;
	struct csd_id_ctrl *id = calloc(1, sizeof(*id));
	uint8_t buf[64];

	CU_ASSERT_FATAL(id != NULL);
	memset(&pt, 0, sizeof(pt));
	pt.opcode = CSD_ADM_IDENTIFY;
	pt.cdw10 = CSD_ID_CNS_CTRL;
	pt.addr = id;
	pt.data_len = sizeof(*id);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 1, &pt), 0);
	CU_ASSERT_EQUAL(pt.status, 0);
	CU_ASSERT_EQUAL(id->vid, 0x1af4);
	CU_ASSERT_EQUAL(id->vs.magic, CSD_ID_MAGIC);

	/* unknown opcode on each queue: sent, status reported, rc 0 */
	memset(&pt, 0, sizeof(pt));
	pt.opcode = 0x7c;
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 1, &pt), 0);
	CU_ASSERT_EQUAL(CSD_STATUS_CODE(pt.status),
			CSD_STATUS(0, CSD_SC_INVALID_OPCODE));
	CU_ASSERT(pt.status & CSD_STATUS_DNR);
	CU_ASSERT_EQUAL(csd_status_to_errno(pt.status), -EOPNOTSUPP);
	/* Identify is an admin command only */
	pt.opcode = CSD_ADM_IDENTIFY;
	pt.cdw10 = CSD_ID_CNS_CTRL;
	pt.addr = id;
	pt.data_len = sizeof(*id);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 0, &pt), 0);
	CU_ASSERT_EQUAL(CSD_STATUS_CODE(pt.status),
			CSD_STATUS(0, CSD_SC_INVALID_OPCODE));

	/* Get Features pacing: value in result dw0 */
	memset(&pt, 0, sizeof(pt));
	pt.opcode = CSD_ADM_GET_FEATURES;
	pt.cdw10 = CSD_FEAT_ID_PACING;
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 1, &pt), 0);
	CU_ASSERT_EQUAL(pt.status, 0);
	CU_ASSERT_EQUAL(pt.result & 0xffffffffu, 0);
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dev, 1), 0);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 1, &pt), 0);
	CU_ASSERT_EQUAL(pt.result & 0xffffffffu, 1);
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dev, 0), 0);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 1, &pt), 0);
	CU_ASSERT_EQUAL(pt.result & 0xffffffffu, 0);

	/* CTX_QUERY of a context that does not exist */
	memset(&pt, 0, sizeof(pt));
	pt.opcode = CSD_IO_CTX_QUERY;
	pt.nsid = CSD_NSID;
	pt.cdw10 = sizeof(buf) / 4;
	pt.cdw12 = 63;
	pt.addr = buf;
	pt.data_len = sizeof(buf);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 0, &pt), 0);
	CU_ASSERT_EQUAL(csd_status_to_errno(pt.status), -ENOENT);

	/* bad arguments */
	pt.addr = NULL;
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 0, &pt), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_passthru(dev, 0, NULL), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_passthru(NULL, 0, &pt), -EINVAL);
	csd_dev_close(dev);
	free(id);
}

static void test_stats_flush(void)
{
	static const uint32_t lens[2] = { 100, 20 };
	struct csd_ctx_params p = small_shape;
	struct csd_dev_stats a, b;
	struct attn_fix f;
	float q[2 * 8 * 64] = { 0 }, out[2 * 8 * 64];
	uint32_t seqs[2] = { 0, 1 };
	struct csd_attn_req req = {
		.layer = 0, .nseq = 2, .seqs = seqs, .q = q, .out = out,
	};
	struct csd_attn_result res;
	size_t row = 2 * 64 * 2;

	fix_init(&f, "embedded:", &p, 2, lens, 128, 1);
	CU_ASSERT_EQUAL_FATAL(csd_dev_get_stats(f.dev, &a), 0);
	CU_ASSERT_EQUAL(a.contexts, 1);
	CU_ASSERT_EQUAL(a.kv_bytes_stored, 2 * 120 * row);
	CU_ASSERT(a.flash_bytes_used >= a.kv_bytes_stored);
	CU_ASSERT(a.blocks_total > 0 && a.blocks_free < a.blocks_total);
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, &res), 0);
	CU_ASSERT_EQUAL(res.tokens, 120);
	CU_ASSERT_EQUAL(csd_attn_run(f.ctx, &req, &res), 0);
	CU_ASSERT_EQUAL(csd_dev_flush(f.dev), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_get_stats(f.dev, &b), 0);
	CU_ASSERT_EQUAL(b.attn_calls - a.attn_calls, 2);
	CU_ASSERT_EQUAL(b.attn_seqs - a.attn_seqs, 4);
	CU_ASSERT_EQUAL(b.attn_tokens - a.attn_tokens, 240);
	/* 2 x (submit + read) + flush + the get log page of a */
	CU_ASSERT(b.commands - a.commands >= 5);
	CU_ASSERT(b.flash_bytes_read - a.flash_bytes_read >= 2 * 2 * 120 * row);
	CU_ASSERT(b.modeled_ns > a.modeled_ns);
	CU_ASSERT(b.host_bytes_out > a.host_bytes_out);
	CU_ASSERT_EQUAL(b.errors, a.errors);
	CU_ASSERT_EQUAL(csd_seq_reset(f.ctx, 0), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_get_stats(f.dev, &b), 0);
	CU_ASSERT_EQUAL(b.kv_bytes_stored, 2 * 20 * row);
	CU_ASSERT(b.blocks_free > a.blocks_free);
	CU_ASSERT_EQUAL(csd_dev_get_stats(f.dev, NULL), -EINVAL);
	fix_fini(&f);
}

/* ---- aborted attention calls and their tags (a fake /dev node) -------- */

/*
 * The kernel transport ("/dev/null,ioctl") against a fake NVMe node: this
 * program's ioctl() -- it interposes on libc's for the library -- executes
 * the passthrough ioctls on an embedded drive through csd_dev_passthru(),
 * and can fail the next command of one opcode the way the kernel would:
 *
 *   FAKE_TIMEOUT    the ioctl's wait ends with -ETIMEDOUT, the command not
 *                   run yet; it is held and runs when the test says
 *                   (fake_run_held(): it reached the drive late)
 *   FAKE_RESET      a controller reset discarded it: status ABORT_REQ|DNR
 *   FAKE_RESET_RAN  it ran, then a reset dropped its completion: the same
 *
 * Global: ioctl() has no argument to find it by.  Single-threaded (the
 * ioctl path executes in the submitting thread).
 */
enum { FAKE_NONE, FAKE_TIMEOUT, FAKE_RESET, FAKE_RESET_RAN };

static struct {
	struct csd_dev *drive;		/* NULL: ioctl() passes through */
	uint8_t opc;			/* the next command with this opcode */
	int mode;			/* ... fails so (FAKE_*) */
	struct nvme_passthru_cmd64 held;	/* FAKE_TIMEOUT's command */
	void *held_data;
	unsigned int attn_reads;	/* ATTN_READs executed */
} fake;

static int fake_exec(int admin, const struct nvme_passthru_cmd64 *c,
		     void *data, uint64_t *result)
{
	struct csd_passthru pt;
	int rc;

	memset(&pt, 0, sizeof(pt));
	pt.opcode = c->opcode;
	pt.flags = c->flags;
	pt.nsid = admin ? c->nsid : CSD_NSID;
	pt.cdw2 = c->cdw2;
	pt.cdw3 = c->cdw3;
	pt.cdw10 = c->cdw10;
	pt.cdw11 = c->cdw11;
	pt.cdw12 = c->cdw12;
	pt.cdw13 = c->cdw13;
	pt.cdw14 = c->cdw14;
	pt.cdw15 = c->cdw15;
	pt.addr = data;
	pt.data_len = c->data_len;
	if (!admin && c->opcode == CSD_IO_ATTN_READ)
		fake.attn_reads++;
	rc = csd_dev_passthru(fake.drive, admin, &pt);
	if (rc)
		return rc;
	*result = pt.result;
	return pt.status;
}

static int fake_cmd(int admin, struct nvme_passthru_cmd64 *c)
{
	void *data = (void *)(uintptr_t)c->addr;
	uint64_t result = 0;
	int mode = FAKE_NONE, rc;

	if (!admin && c->opcode == fake.opc) {
		mode = fake.mode;
		fake.mode = FAKE_NONE;
		fake.opc = 0;
	}
	switch (mode) {
	case FAKE_TIMEOUT:
		/* keep a copy: the library frees its buffer when we return */
		fake.held = *c;
		fake.held_data = malloc(c->data_len ? c->data_len : 1);
		if (!fake.held_data) {
			errno = ENOMEM;
			return -1;
		}
		memcpy(fake.held_data, data, c->data_len);
		errno = ETIMEDOUT;
		return -1;
	case FAKE_RESET:
		return CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_ABORT_REQ) |
		       CSD_STATUS_DNR;
	case FAKE_RESET_RAN:
		fake_exec(admin, c, data, &result);
		return CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_ABORT_REQ) |
		       CSD_STATUS_DNR;
	default:
		break;
	}
	rc = fake_exec(admin, c, data, &result);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	c->result = result;
	return rc;
}

/* The command FAKE_TIMEOUT held reaches the drive now; its status. */
static int fake_run_held(void)
{
	uint64_t result;
	int rc;

	if (!fake.held_data)
		return -ENOENT;
	rc = fake_exec(0, &fake.held, fake.held_data, &result);
	free(fake.held_data);
	fake.held_data = NULL;
	return rc;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fake.drive) {
		if (req == NVME_IOCTL_ID)
			return 1;
		if (req == NVME_IOCTL_ADMIN64_CMD || req == NVME_IOCTL_IO64_CMD)
			return fake_cmd(req == NVME_IOCTL_ADMIN64_CMD, arg);
	}
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

/* Submit attention calls until the tags run out (-EAGAIN): every submit
 * and wait must succeed.  Returns how many were free. */
static int free_tags(struct csd_ctx *ctx, const struct csd_attn_req *req)
{
	struct csd_attn *op[8];
	int n, i;

	for (n = 0; n < 8; n++) {
		int rc = csd_attn_submit(ctx, req, &op[n]);

		if (rc == -EAGAIN)
			break;
		CU_ASSERT_EQUAL(rc, 0);
		if (rc)
			break;
	}
	for (i = 0; i < n; i++)
		CU_ASSERT_EQUAL(csd_attn_wait(op[i], NULL), 0);
	return n;
}

/*
 * An ATTN_SUBMIT or ATTN_READ aborted by a controller reset (status
 * ABORT_REQ from the driver) gives its tag back: the library reads it again
 * and the drive's tag is free too (every tag works afterwards).  One whose
 * ioctl wait timed out (-ETIMEDOUT, also reported as ABORT_REQ) may still
 * reach the drive: its tag stays busy -- even when the timed-out submit
 * reaches the drive only after the library would have re-read the tag, and
 * the tag is never handed out again.
 */
static void test_attn_abort_tags(void)
{
	static const struct {
		uint8_t opc;
		int mode;
		int submit_rc;		/* csd_attn_submit() */
		int free_after;		/* of 4 tags */
		const char *what;
	} cases[] = {
		{ CSD_IO_ATTN_SUBMIT, FAKE_TIMEOUT, -ECANCELED, 3,
		  "submit timed out, runs late" },
		{ CSD_IO_ATTN_READ, FAKE_TIMEOUT, 0, 3, "read timed out" },
		{ CSD_IO_ATTN_SUBMIT, FAKE_RESET, -ECANCELED, 4,
		  "submit discarded by a reset" },
		{ CSD_IO_ATTN_SUBMIT, FAKE_RESET_RAN, -ECANCELED, 4,
		  "submit ran, completion dropped by a reset" },
		{ CSD_IO_ATTN_READ, FAKE_RESET, 0, 4,
		  "read discarded by a reset" },
		{ CSD_IO_ATTN_READ, FAKE_RESET_RAN, 0, 4,
		  "read ran, completion dropped by a reset" },
	};
	struct csd_ctx_params p = small_shape;
	float q[8 * 64], out[8 * 64], ref[8 * 64];
	uint32_t seq = 0;
	struct csd_attn_req req = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q, .out = out,
	};
	struct csd_dev_info info;
	struct csd_attn *op;
	struct csd_dev *dev;
	struct attn_fix f;
	static const uint32_t lens[1] = { 40 };
	unsigned int c, i, reads;
	uint64_t s = 5;

	for (i = 0; i < 8 * 64; i++)
		q[i] = rng_float(&s);
	/* the drive: f.dev; the library's view of it: dev */
	fix_init(&f, "embedded:tags=4", &p, 1, lens, 40, 17);
	fake.drive = f.dev;
	dev = open_dev("/dev/null,ioctl");
	CU_ASSERT_EQUAL(csd_dev_get_info(dev, &info), 0);
	CU_ASSERT_STRING_EQUAL(info.transport, "kernel");
	CU_ASSERT_EQUAL(info.max_tags, 4);

	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct csd_ctx *ctx;
		int rc, n;

		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &p, &ctx), 0);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 40, f.k[0], f.v[0]),
				0);
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
		memcpy(ref, out, sizeof(ref));

		fake.opc = cases[c].opc;
		fake.mode = cases[c].mode;
		reads = fake.attn_reads;
		op = NULL;
		rc = csd_attn_submit(ctx, &req, &op);
		CU_ASSERT_EQUAL(rc, cases[c].submit_rc);
		if (!rc)
			CU_ASSERT_EQUAL(csd_attn_wait(op, NULL), -ECANCELED);
		CU_ASSERT_EQUAL(fake.mode, FAKE_NONE);	/* it was used */
		if (cases[c].mode == FAKE_TIMEOUT) {
			/* no re-read: it could run before the lost command */
			CU_ASSERT_EQUAL(fake.attn_reads, reads);
			CU_ASSERT_EQUAL(fake_run_held(), 0);	/* late */
		} else {
			CU_ASSERT(fake.attn_reads > reads);	/* re-read */
		}
		n = free_tags(ctx, &req);
		if (n != cases[c].free_after)
			fprintf(stderr, "case \"%s\": %d tags free, not %d\n",
				cases[c].what, n, cases[c].free_after);
		CU_ASSERT_EQUAL(n, cases[c].free_after);
		/* and every free tag works, the hint having come round */
		for (i = 0; i < 8; i++)
			CU_ASSERT_EQUAL(csd_attn_run(ctx, &req, NULL), 0);
		CU_ASSERT_EQUAL(memcmp(out, ref, sizeof(ref)), 0);
		CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	}
	csd_dev_close(dev);
	fake.drive = NULL;
	fix_fini(&f);
}

/*
 * csd_dev_reset(): the in-process drive has no controller to reset
 * (-EOPNOTSUPP, nothing changes: a context and its data stay usable); a
 * group passes the members' answer on; NULL is -EINVAL.
 */
static void test_dev_reset_embedded(void)
{
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 1, .q_heads = 1, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 1, .max_tokens = 64,
	};
	struct csd_dev *dev = NULL, *grp = NULL;
	struct csd_ctx *ctx = NULL;
	float k[4 * 64], v[4 * 64], k2[4 * 64], v2[4 * 64];
	unsigned int i;

	for (i = 0; i < 4 * 64; i++) {
		k[i] = (float)i;
		v[i] = -(float)i;
	}
	CU_ASSERT_EQUAL(csd_dev_reset(NULL), -EINVAL);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &dev), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dev, &p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 4, k, v), 0);
	CU_ASSERT_EQUAL(csd_dev_reset(dev), -EOPNOTSUPP);
	CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, 0, 4, k2, v2), 0);
	CU_ASSERT(memcmp(k, k2, sizeof(k)) == 0 && memcmp(v, v2, sizeof(v)) == 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
	csd_dev_close(dev);

	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:,embedded:", &grp), 0);
	CU_ASSERT_EQUAL(csd_dev_reset(grp), -EOPNOTSUPP);
	csd_dev_close(grp);
}

static CU_TestInfo dev_tests[] = {
	{ "open_bad_specs", test_open_bad_specs },
	{ "open_env", test_open_env },
	{ "info", test_info },
	{ "reset_embedded", test_dev_reset_embedded },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo ctx_tests[] = {
	{ "lifecycle", test_ctx_lifecycle },
	{ "bad_shapes", test_ctx_bad_shapes },
	{ "limit", test_ctx_limit },
	{ "query_reset", test_ctx_query_reset },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo kv_tests[] = {
	{ "roundtrip_f16", test_kv_f16 },
	{ "roundtrip_bf16", test_kv_bf16 },
	{ "roundtrip_f32", test_kv_f32 },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo attn_tests[] = {
	{ "dense", test_attn_dense },
	{ "fused_window", test_attn_fused_window },
	{ "errors", test_attn_errors },
	{ "tags_exhausted", test_attn_tags_exhausted },
	{ "destroy_inflight", test_attn_destroy_inflight },
	{ "threads", test_attn_threads },
	{ "abort_tags", test_attn_abort_tags },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo misc_tests[] = {
	{ "status_map", test_status_map },
	{ "passthru", test_passthru },
	{ "stats_flush", test_stats_flush },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "dev", NULL, NULL, dev_tests },
	{ "ctx", NULL, NULL, ctx_tests },
	{ "kv", NULL, NULL, kv_tests },
	{ "attn", NULL, NULL, attn_tests },
	{ "misc", NULL, NULL, misc_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
