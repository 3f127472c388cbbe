// SPDX-License-Identifier: MIT
/*
 * test_group.c - device groups (libcsd/group.c): several drives as one.
 *
 * Head split over 2 and 4 drives must give bit-identical attention outputs,
 * lse and KV read-back to one drive (GQA shapes, head counts not a multiple
 * of the member count, fewer KV heads than members, fused KV, windows);
 * token split over 2 and 4 drives (several stripe sizes, lengths that are
 * not multiples of them) must match one drive within NMSE 1e-10; errors and
 * partial failures must not leak; a synthetic model decodes the same
 * greedy tokens on 1, 2 and 4 drives.  With $CSD_TEST_GROUP set (e.g.
 * "shm:A,shm:B", from tests/daemon/run-with-daemons.sh) the equivalence
 * checks also run on that group.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csd.h"

#include "backend.h"
#include "cu_main.h"
#include "rt_decode.h"
#include "rt_model.h"
#include "rt_synth.h"
#include "tiny_model.h"

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

/* Random KV elements: f32 in [-1, 1), or f16/bf16 bit patterns of numbers
 * of magnitude 1/4 .. 2. */
static void fill_kv(uint64_t *s, void *p, size_t n, enum csd_kv_dtype dt)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t r = rng_next(s);

		if (dt == CSD_KV_F32) {
			((float *)p)[i] = rng_float(s);
		} else if (dt == CSD_KV_F16) {
			((uint16_t *)p)[i] = (uint16_t)((r & 1) << 15 |
					     (13 + (r >> 1) % 3) << 10 |
					     ((r >> 8) & 0x3ff));
		} else {
			((uint16_t *)p)[i] = (uint16_t)((r & 1) << 15 |
					     (125 + (r >> 1) % 3) << 7 |
					     ((r >> 8) & 0x7f));
		}
	}
}

static void fill_f(uint64_t *s, float *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = rng_float(s);
}

/* Bit-identical (memcmp of the representations, on purpose). */
static int same_bits(const void *a, const void *b, size_t n)
{
	return memcmp(a, b, n) == 0;
}

static size_t dsz(enum csd_kv_dtype dt)
{
	return dt == CSD_KV_F32 ? 4 : 2;
}

static double nmse(const float *ref, const float *x, size_t n)
{
	double num = 0, den = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		double d = (double)x[i] - ref[i];

		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? num / den : num;
}

static struct csd_dev *open_group(const char *const *specs, unsigned int n,
				  uint32_t split, uint32_t chunk)
{
	struct csd_group_opts o = { split, chunk };
	struct csd_dev *dev = NULL;
	int rc = csd_group_open(specs, n, &o, &dev);

	CU_ASSERT_EQUAL(rc, 0);
	if (rc)
		fprintf(stderr, "csd_group_open: %d\n", rc);
	return dev;
}

/* ---- single drive vs group ------------------------------------------- */

#define MAXS 4

struct eq_case {
	uint32_t kv_heads, q_heads, head_dim;
	enum csd_kv_dtype dtype;
	uint32_t nseq;
	uint32_t lens[MAXS];	/* prompt lengths (>= 1) */
};

/*
 * Run the same workload on @d1 (one drive) and @dg (a group): appends in
 * two pieces, read-back, attention with several windows, fused appends,
 * lse.  @exact: outputs must be bit-identical, else NMSE <= 1e-10.
 */
static void run_equiv(struct csd_dev *d1, struct csd_dev *dg,
		      const struct eq_case *c, int exact)
{
	static const uint32_t windows[] = { 0, 1, 5, 17, 33, 300, 100000 };
	struct csd_ctx_params p = {
		.layers = 2, .kv_heads = c->kv_heads, .q_heads = c->q_heads,
		.head_dim = c->head_dim, .dtype = c->dtype, .max_seqs = 8,
		.max_tokens = 1024,
	};
	size_t row = (size_t)c->kv_heads * c->head_dim * dsz(c->dtype);
	size_t qn = (size_t)c->q_heads * c->head_dim;
	struct csd_ctx *c1 = NULL, *cg = NULL;
	uint32_t seqs[MAXS], s, l, step;
	uint32_t lens1[8], lensg[8];
	uint64_t rs = 1234 + c->kv_heads * 7 + c->q_heads;
	float *q, *o1, *og, *lse1, *lseg;
	char *k, *v, *kr, *vr;
	size_t w;

	CU_ASSERT_FATAL(c->nseq <= MAXS);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(d1, &p, &c1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &cg), 0);
	k = malloc(1024 * row);
	v = malloc(1024 * row);
	kr = malloc(1024 * row);
	vr = malloc(1024 * row);
	q = malloc(MAXS * qn * sizeof(float));
	o1 = malloc(MAXS * qn * sizeof(float));
	og = malloc(MAXS * qn * sizeof(float));
	lse1 = malloc(MAXS * c->q_heads * sizeof(float));
	lseg = malloc(MAXS * c->q_heads * sizeof(float));
	CU_ASSERT_FATAL(k && v && kr && vr && q && o1 && og && lse1 && lseg);

	for (s = 0; s < c->nseq; s++) {
		uint32_t L = c->lens[s], a = L / 3;

		seqs[s] = 2 * s + 1;
		for (l = 0; l < p.layers; l++) {
			fill_kv(&rs, k, L * row / dsz(c->dtype), c->dtype);
			fill_kv(&rs, v, L * row / dsz(c->dtype), c->dtype);
			if (a) {
				CU_ASSERT_EQUAL(csd_kv_append(c1, seqs[s], l, 0,
							      a, k, v), 0);
				CU_ASSERT_EQUAL(csd_kv_append(cg, seqs[s], l, 0,
							      a, k, v), 0);
			}
			CU_ASSERT_EQUAL(csd_kv_append(c1, seqs[s], l, a, L - a,
						      k + a * row, v + a * row),
					0);
			CU_ASSERT_EQUAL(csd_kv_append(cg, seqs[s], l, a, L - a,
						      k + a * row, v + a * row),
					0);
			/* read-back: all, then a middle range */
			memset(kr, 0x55, L * row);
			memset(vr, 0x55, L * row);
			CU_ASSERT_EQUAL(csd_kv_read(cg, seqs[s], l, 0, L, kr,
						    vr), 0);
			CU_ASSERT(same_bits(kr, k, L * row));
			CU_ASSERT(same_bits(vr, v, L * row));
			if (L > 4) {
				uint32_t b = L / 4, n = L / 2;

				CU_ASSERT_EQUAL(csd_kv_read(cg, seqs[s], l, b,
							    n, kr, vr), 0);
				CU_ASSERT(same_bits(kr, k + b * row, n * row));
				CU_ASSERT(same_bits(vr, v + b * row, n * row));
			}
		}
	}
	CU_ASSERT_EQUAL(csd_ctx_query(c1, NULL, lens1, 8), 8);
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lensg, 8), 8);
	CU_ASSERT(same_bits(lens1, lensg, sizeof(lens1)));

	/* attention: windows, then fused steps, all with lse */
	for (step = 0; step < 4 + sizeof(windows) / sizeof(windows[0]);
	     step++) {
		int fused = step >= sizeof(windows) / sizeof(windows[0]);
		uint32_t ns = step == 2 ? 1 : c->nseq;	/* one direct call */
		struct csd_attn_req r = {
			.layer = step & 1, .nseq = ns,
			.flags = CSD_ATTN_LSE | (fused ? CSD_ATTN_FUSED_KV : 0),
			.window = fused ? (step & 2 ? 0 : 9) : windows[step],
			.seqs = seqs, .q = q, .k_new = k, .v_new = v,
		};
		struct csd_attn_result r1, rg;
		size_t n = ns * qn;

		fill_f(&rs, q, n);
		fill_kv(&rs, k, ns * row / dsz(c->dtype), c->dtype);
		fill_kv(&rs, v, ns * row / dsz(c->dtype), c->dtype);
		r.out = o1;
		r.lse = lse1;
		CU_ASSERT_EQUAL(csd_attn_run(c1, &r, &r1), 0);
		memset(og, 0x55, n * sizeof(float));
		r.out = og;
		r.lse = lseg;
		CU_ASSERT_EQUAL(csd_attn_run(cg, &r, &rg), 0);
		CU_ASSERT_EQUAL(r1.tokens, rg.tokens);
		if (exact) {
			CU_ASSERT(same_bits(o1, og, n * sizeof(float)));
			CU_ASSERT(same_bits(lse1, lseg, ns * c->q_heads *
					 sizeof(float)));
		} else {
			double e = nmse(o1, og, n);

			CU_ASSERT(e <= 1e-10);
			if (e > 1e-10)
				fprintf(stderr, "step %u: nmse %g\n", step, e);
			for (w = 0; w < ns * c->q_heads; w++)
				CU_ASSERT(fabsf(lse1[w] - lseg[w]) <=
					  1e-5f * (1 + fabsf(lse1[w])));
		}
		if (fused) {	/* the new token is where it belongs */
			uint32_t L = c->lens[0] + 1 + (step - 7) / 2;

			CU_ASSERT_EQUAL(csd_kv_read(cg, seqs[0], r.layer,
						    L - 1, 1, kr, vr), 0);
			CU_ASSERT(same_bits(kr, k, row));
			CU_ASSERT(same_bits(vr, v, row));
		}
	}
	CU_ASSERT_EQUAL(csd_ctx_query(c1, NULL, lens1, 8), 8);
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lensg, 8), 8);
	CU_ASSERT(same_bits(lens1, lensg, sizeof(lens1)));

	/* reset, then the sequence starts again at 0 */
	CU_ASSERT_EQUAL(csd_seq_reset(cg, seqs[0]), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lensg, 8), 8);
	CU_ASSERT_EQUAL(lensg[seqs[0]], 0);
	fill_kv(&rs, k, 3 * row / dsz(c->dtype), c->dtype);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seqs[0], 0, 0, 3, k, k), 0);
	CU_ASSERT_EQUAL(csd_kv_read(cg, seqs[0], 0, 0, 3, kr, vr), 0);
	CU_ASSERT(same_bits(kr, k, 3 * row));

	CU_ASSERT_EQUAL(csd_ctx_destroy(c1), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(cg), 0);
	free(k);
	free(v);
	free(kr);
	free(vr);
	free(q);
	free(o1);
	free(og);
	free(lse1);
	free(lseg);
}

static const struct eq_case eq_cases[] = {
	/* GQA 4:1, 8 KV heads */
	{ 8, 32, 128, CSD_KV_F16, 3, { 37, 100, 1 } },
	/* odd head counts vs the members, MHA */
	{ 3, 3, 64, CSD_KV_F32, 2, { 50, 7 } },
	{ 5, 15, 64, CSD_KV_BF16, 4, { 2, 300, 64, 65 } },
	/* fewer KV heads than members */
	{ 1, 4, 64, CSD_KV_F16, 2, { 19, 40 } },
	{ 2, 6, 64, CSD_KV_F32, 1, { 129 } },
};

#define NCASES (sizeof(eq_cases) / sizeof(eq_cases[0]))

static void equiv_n(unsigned int n, uint32_t split, uint32_t chunk)
{
	const char *specs[4] = { "embedded:", "embedded:", "embedded:",
				 "embedded:" };
	struct csd_dev *d1 = NULL, *dg;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	dg = open_group(specs, n, split, chunk);
	CU_ASSERT_FATAL(dg != NULL);
	CU_ASSERT_EQUAL(csd_dev_get_members(dg), n);
	for (i = 0; i < NCASES; i++)
		run_equiv(d1, dg, &eq_cases[i], split == CSD_SPLIT_HEADS);
	csd_dev_close(dg);
	csd_dev_close(d1);
}

static void test_heads2(void)
{
	equiv_n(2, CSD_SPLIT_HEADS, 0);
}

static void test_heads4(void)
{
	equiv_n(4, CSD_SPLIT_HEADS, 0);
}

static void test_tokens2_c16(void)
{
	equiv_n(2, CSD_SPLIT_TOKENS, 16);
}

static void test_tokens2_c48(void)
{
	equiv_n(2, CSD_SPLIT_TOKENS, 48);
}

static void test_tokens4_c32(void)
{
	equiv_n(4, CSD_SPLIT_TOKENS, 32);
}

static void test_tokens4_c7(void)
{
	equiv_n(4, CSD_SPLIT_TOKENS, 7);
}

static void test_tokens3_default(void)
{
	equiv_n(3, CSD_SPLIT_TOKENS, 0);
}

/* The comma form of csd_dev_open(). */
static void test_string_form(void)
{
	struct csd_dev *d1 = NULL, *dg = NULL;
	struct csd_dev_info i1, ig;
	size_t i;

	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	CU_ASSERT_EQUAL(csd_dev_get_members(d1), 1);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(
		"embedded:capacity=1G,pacing=0,embedded:capacity=2G", &dg), 0);
	CU_ASSERT_EQUAL(csd_dev_get_members(dg), 2);
	CU_ASSERT_EQUAL(csd_dev_get_info(d1, &i1), 0);
	CU_ASSERT_EQUAL(csd_dev_get_info(dg, &ig), 0);
	CU_ASSERT_STRING_EQUAL(ig.transport, "group");
	CU_ASSERT_EQUAL(ig.capacity, 3ull << 30);
	CU_ASSERT_EQUAL(ig.channels, 2 * i1.channels);
	CU_ASSERT_EQUAL(ig.max_kv_heads, 2 * i1.max_kv_heads);
	CU_ASSERT_EQUAL(ig.max_xfer, i1.max_xfer);
	CU_ASSERT_EQUAL(ig.max_tokens, i1.max_tokens);
	for (i = 0; i < NCASES; i++)
		run_equiv(d1, dg, &eq_cases[i], 1);
	csd_dev_close(dg);
	dg = NULL;
	/* "embedded" without colon, and three members */
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded,embedded,embedded:", &dg),
			      0);
	CU_ASSERT_EQUAL(csd_dev_get_members(dg), 3);
	csd_dev_close(dg);
	dg = NULL;
	/* CSD_DEVICE when the string is NULL */
	setenv("CSD_DEVICE", "embedded:,embedded:", 1);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(NULL, &dg), 0);
	CU_ASSERT_EQUAL(csd_dev_get_members(dg), 2);
	unsetenv("CSD_DEVICE");
	csd_dev_close(dg);
	csd_dev_close(d1);
	CU_ASSERT_EQUAL(csd_dev_get_members(NULL), 0);
}

/*
 * "group:OPTS,MEMBER,..." chooses the split in the string: it opens what
 * csd_group_open() with the same options opens (same limits, bit-identical
 * results of the same workload), and bad options are -EINVAL.
 */
static void test_string_split(void)
{
	static const struct {
		const char *spec;
		uint32_t split, chunk;
		unsigned int n;
	} same[] = {
		{ "group:split=tokens,chunk=16,embedded:,embedded:,embedded:",
		  CSD_SPLIT_TOKENS, 16, 3 },
		{ "group:chunk=64,split=tokens,embedded:tokens=256,"
		  "embedded:tokens=256", CSD_SPLIT_TOKENS, 64, 2 },
		{ "group:split=tokens,embedded,embedded:", CSD_SPLIT_TOKENS,
		  0, 2 },
		{ "group:split=heads,split=tokens,chunk=7,embedded:,embedded:",
		  CSD_SPLIT_TOKENS, 7, 2 },
		{ "group:split=heads,embedded:,embedded:", CSD_SPLIT_HEADS, 0,
		  2 },
		{ "group:embedded:,embedded:", CSD_SPLIT_HEADS, 0, 2 },
		{ "group:,embedded:", CSD_SPLIT_HEADS, 0, 1 },
		{ "group:split=tokens,chunk=16777216,embedded:",
		  CSD_SPLIT_TOKENS, 1u << 24, 1 },
	};
	static const char *const bad[] = {
		"group:", "group:split=tokens", "group:split=tokens,",
		"group:split=tokens,,embedded:", "group:split=bogus,embedded:",
		"group:split=,embedded:", "group:split,embedded:",
		"group:Split=tokens,embedded:", "group:bogus=1,embedded:",
		"group:chunk=16,embedded:",
		"group:split=heads,chunk=16,embedded:",
		"group:split=tokens,chunk=0,embedded:",
		"group:split=tokens,chunk=,embedded:",
		"group:split=tokens,chunk=-5,embedded:",
		"group:split=tokens,chunk=+5,embedded:",
		"group:split=tokens,chunk=12x,embedded:",
		"group:split=tokens,chunk=16777217,embedded:",
		"group:split=tokens,chunk=99999999999999999999,embedded:",
		"group:split=tokens,embedded:bogus=1",
		"group:split=tokens,embedded:,bogus",
		"embedded:,group:split=tokens,embedded:",
	};
	struct csd_dev *d1 = NULL, *dg = NULL, *da;
	struct csd_dev_info ia, is;
	size_t i, j;

	for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		const char *specs[3];

		for (j = 0; j < same[i].n; j++)
			specs[j] = i == 1 ? "embedded:tokens=256" : "embedded:";
		da = open_group(specs, same[i].n, same[i].split, same[i].chunk);
		CU_ASSERT_FATAL(da != NULL);
		dg = NULL;
		CU_ASSERT_EQUAL_FATAL(csd_dev_open(same[i].spec, &dg), 0);
		CU_ASSERT_EQUAL(csd_dev_get_members(dg), same[i].n);
		CU_ASSERT_EQUAL(csd_dev_get_info(da, &ia), 0);
		CU_ASSERT_EQUAL(csd_dev_get_info(dg, &is), 0);
		CU_ASSERT_STRING_EQUAL(is.transport, "group");
		CU_ASSERT_EQUAL(is.max_tokens, ia.max_tokens);
		CU_ASSERT_EQUAL(is.max_kv_heads, ia.max_kv_heads);
		CU_ASSERT_EQUAL(is.max_q_heads, ia.max_q_heads);
		/* the API group as the reference: bit-identical */
		if (i == 0 || i == 3 || i == 4)
			for (j = 0; j < NCASES; j++)
				run_equiv(da, dg, &eq_cases[j], 1);
		csd_dev_close(da);
		csd_dev_close(dg);
	}
	/* token split for real: longer than one 256-token member allows */
	{
		struct csd_ctx_params p = {
			.layers = 1, .kv_heads = 2, .q_heads = 4,
			.head_dim = 64, .dtype = CSD_KV_F32, .max_seqs = 1,
			.max_tokens = 500,
		};
		struct csd_ctx *c = NULL;

		CU_ASSERT_EQUAL_FATAL(csd_dev_open(same[1].spec, &dg), 0);
		CU_ASSERT_EQUAL(csd_ctx_create(dg, &p, &c), 0);
		CU_ASSERT_EQUAL(csd_ctx_destroy(c), 0);
		csd_dev_close(dg);
		dg = NULL;
		CU_ASSERT_EQUAL_FATAL(csd_dev_open(
			"group:split=heads,embedded:tokens=256,"
			"embedded:tokens=256", &dg), 0);
		CU_ASSERT_EQUAL(csd_ctx_create(dg, &p, &c), -EOPNOTSUPP);
		csd_dev_close(dg);
	}
	/* and one drive vs the string form, like the API form's tests */
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	dg = NULL;
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(same[0].spec, &dg), 0);
	run_equiv(d1, dg, &eq_cases[0], 0);
	csd_dev_close(dg);
	/* CSD_DEVICE may hold one */
	setenv("CSD_DEVICE", same[0].spec, 1);
	dg = NULL;
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(NULL, &dg), 0);
	CU_ASSERT_EQUAL(csd_dev_get_members(dg), 3);
	unsetenv("CSD_DEVICE");
	csd_dev_close(dg);
	csd_dev_close(d1);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc;

		dg = (struct csd_dev *)&dg;	/* set to NULL on failure */
		rc = csd_dev_open(bad[i], &dg);
		CU_ASSERT_EQUAL(rc, -EINVAL);
		if (rc != -EINVAL)
			fprintf(stderr, "\"%s\": %d\n", bad[i], rc);
		if (rc)
			CU_ASSERT_PTR_NULL(dg);
		if (!rc)
			csd_dev_close(dg);
	}
}

/* A sequence longer than one drive allows, by tokens. */
static void test_tokens_long(void)
{
	const char *specs[4] = { "embedded:tokens=256", "embedded:tokens=256",
				 "embedded:tokens=256", "embedded:tokens=256" };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 4, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 2, .max_tokens = 1000,
	};
	struct csd_dev *d1 = NULL, *dg, *dsmall = NULL;
	struct csd_ctx *c1 = NULL, *cg = NULL, *cs = NULL;
	struct csd_dev_info in;
	size_t row = 2 * 64 * 4, n = 4 * 64;
	float *k, *v, q[4 * 64], o1[4 * 64], og[4 * 64];
	uint32_t seq = 1, len = 0;
	uint64_t rs = 99;
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};

	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:tokens=256", &dsmall), 0);
	CU_ASSERT_EQUAL(csd_ctx_create(dsmall, &p, &cs), -EOPNOTSUPP);
	csd_dev_close(dsmall);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	dg = open_group(specs, 4, CSD_SPLIT_TOKENS, 64);
	CU_ASSERT_FATAL(dg != NULL);
	CU_ASSERT_EQUAL(csd_dev_get_info(dg, &in), 0);
	CU_ASSERT_EQUAL(in.max_tokens, 1024);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(d1, &p, &c1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &cg), 0);
	k = malloc(1000 * row);
	v = malloc(1000 * row);
	CU_ASSERT_FATAL(k && v);
	fill_f(&rs, k, 1000 * row / 4);
	fill_f(&rs, v, 1000 * row / 4);
	fill_f(&rs, q, n);
	CU_ASSERT_EQUAL(csd_kv_append(c1, seq, 0, 0, 1000, k, v), 0);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, 0, 999, k, v), 0);
	/* out of order, then past the end */
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, 998, 1, k, v), -EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, 999, 2, k, v), -EFBIG);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, 999, 1, k + 999 * row / 4,
				      v + 999 * row / 4), 0);
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, &len, 1), 1);
	CU_ASSERT_EQUAL(len, 0);	/* slot 0 */
	CU_ASSERT_EQUAL(csd_kv_read(cg, seq, 0, 990, 11, k, v), -ERANGE);
	r.out = o1;
	CU_ASSERT_EQUAL(csd_attn_run(c1, &r, NULL), 0);
	r.out = og;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), 0);
	CU_ASSERT(nmse(o1, og, n) <= 1e-10);
	/* fused at the limit: CTX_FULL */
	r.flags = CSD_ATTN_FUSED_KV;
	r.k_new = k;
	r.v_new = v;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EFBIG);
	csd_ctx_destroy(c1);
	csd_ctx_destroy(cg);
	csd_dev_close(dg);
	csd_dev_close(d1);
	free(k);
	free(v);
}

/*
 * SparF through a group: forwarded unchanged to head-split members (so
 * bit-identical to one drive); in a token split every member keeps its own
 * top tokens - with k >= all tokens that is exactly dense attention.
 */
static void test_sparse(void)
{
	const char *specs[4] = { "embedded:", "embedded:", "embedded:",
				 "embedded:" };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 8, .q_heads = 32, .head_dim = 128,
		.dtype = CSD_KV_F16, .max_seqs = 2, .max_tokens = 1100,
	};
	size_t row = 8 * 128 * 2, qn = 32 * 128;
	uint32_t seqs[2] = { 0, 1 }, lens[2] = { 300, 1000 }, s;
	struct csd_ctx *c1 = NULL, *cg = NULL;
	struct csd_dev *d1 = NULL, *dg;
	float *q, *o1, *og, *od;
	uint16_t *kv;
	uint64_t rs = 77;
	unsigned int n, split;
	int rc;

	kv = malloc(1000 * row * 2);
	q = malloc(2 * qn * sizeof(float));
	o1 = malloc(2 * qn * sizeof(float));
	og = malloc(2 * qn * sizeof(float));
	od = malloc(2 * qn * sizeof(float));
	CU_ASSERT_FATAL(kv && q && o1 && og && od);
	fill_kv(&rs, kv, 1000 * row, CSD_KV_F16);
	fill_f(&rs, q, 2 * qn);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(d1, &p, &c1), 0);
	for (s = 0; s < 2; s++)
		CU_ASSERT_EQUAL(csd_kv_append(c1, s, 0, 0, lens[s], kv,
					      kv + 1000 * row / 2), 0);
	{
		struct csd_attn_req r = {
			.nseq = 2, .seqs = seqs, .q = q, .out = o1,
			.flags = CSD_ATTN_SPARSE,
			.sparse = { .ratio = 0.25f },
		};

		rc = csd_attn_run(c1, &r, NULL);
		if (rc) {
			cu_skip("the drive has no SparF yet");
			goto out;
		}
		r.flags = 0;
		r.out = od;
		CU_ASSERT_EQUAL(csd_attn_run(c1, &r, NULL), 0);
	}
	for (split = 0; split < 2; split++) {
		for (n = 2; n <= 4; n += 2) {
			struct csd_attn_req r = {
				.nseq = 2, .seqs = seqs, .q = q, .out = og,
				.flags = CSD_ATTN_SPARSE,
				.sparse = { .ratio = 0.25f },
			};

			dg = open_group(specs, n, split, 64);
			CU_ASSERT_FATAL(dg != NULL);
			CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &cg), 0);
			for (s = 0; s < 2; s++)
				CU_ASSERT_EQUAL(csd_kv_append(cg, s, 0, 0,
							      lens[s], kv,
							      kv + 1000 * row / 2),
						0);
			CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), 0);
			if (split == CSD_SPLIT_HEADS) {
				CU_ASSERT(same_bits(o1, og, 2 * qn *
						 sizeof(float)));
			} else {
				/* approximate; closer to dense than 0 is */
				CU_ASSERT(nmse(od, og, 2 * qn) < 0.5);
			}
			/* every token kept: dense */
			r.sparse.ratio = 0;
			r.sparse.r = 128;
			r.sparse.k = 1u << 20;
			CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), 0);
			CU_ASSERT(nmse(od, og, 2 * qn) <= 1e-10);
			/* not with a window */
			r.window = 10;
			CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EINVAL);
			csd_dev_close(dg);
		}
	}
out:
	csd_dev_close(d1);
	free(kv);
	free(q);
	free(o1);
	free(og);
	free(od);
}

/* ---- errors ---------------------------------------------------------- */

static void test_open_errors(void)
{
	const char *bad[] = { "embedded:", "embedded:nosuchkey=1" };
	const char *nul[] = { "embedded:", NULL };
	struct csd_group_opts o = { 7, 0 };
	struct csd_dev *dev = (struct csd_dev *)&o;

	CU_ASSERT_EQUAL(csd_group_open(bad, 2, NULL, &dev), -EINVAL);
	CU_ASSERT_PTR_NULL(dev);
	CU_ASSERT_EQUAL(csd_group_open(nul, 2, NULL, &dev), -EINVAL);
	CU_ASSERT_EQUAL(csd_group_open(bad, 0, NULL, &dev), -EINVAL);
	CU_ASSERT_EQUAL(csd_group_open(NULL, 1, NULL, &dev), -EINVAL);
	CU_ASSERT_EQUAL(csd_group_open(bad, 1, NULL, NULL), -EINVAL);
	CU_ASSERT_EQUAL(csd_group_open(bad, 1, &o, &dev), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_open("embedded:,embedded:bogus=2", &dev),
			-EINVAL);
	CU_ASSERT_EQUAL(csd_dev_open("embedded:,shm:/nonexistent/sock", &dev),
			-ENOENT);
	/* a comma not followed by a prefix is part of the member string */
	CU_ASSERT_EQUAL(csd_dev_open("embedded:,bogus", &dev), -EINVAL);
	CU_ASSERT_EQUAL(csd_dev_open("embedded:,embedded:", NULL), -EINVAL);
}

static void test_call_errors(void)
{
	const char *specs[2] = { "embedded:", "embedded:tokens=64" };
	const char *tspecs[2] = { "embedded:", "embedded:" };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 2, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 4, .max_tokens = 100,
	};
	struct csd_dev_stats st;
	struct csd_ctx *ctx = NULL;
	struct csd_dev *dg;
	float q[4 * 128], out[4 * 128], kv[2 * 64] = { 0 };
	uint32_t seq = 0, bad = 9, two[2] = { 1, 1 };
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q, .out = out,
	};
	struct csd_attn *op;
	int split;

	memset(q, 0, sizeof(q));
	/* member 1 cannot hold max_tokens 100: create fails, nothing left */
	dg = open_group(specs, 2, CSD_SPLIT_HEADS, 0);
	CU_ASSERT_FATAL(dg != NULL);
	CU_ASSERT_EQUAL(csd_ctx_create(dg, &p, &ctx), -EOPNOTSUPP);
	CU_ASSERT_PTR_NULL(ctx);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dg, &st), 0);
	CU_ASSERT_EQUAL(st.contexts, 0);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dg, NULL, 0), 0);
	p.max_tokens = 64;
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &ctx), 0);
	CU_ASSERT_EQUAL(csd_dev_get_stats(dg, &st), 0);
	CU_ASSERT_EQUAL(st.contexts, 2);
	CU_ASSERT_EQUAL(csd_dev_list_ctx(dg, NULL, 0), 1);
	CU_ASSERT_EQUAL(csd_dev_set_pacing(dg, 0), 0);
	CU_ASSERT_EQUAL(csd_dev_flush(dg), 0);
	{
		struct csd_passthru pt = { .opcode = 0x06 };

		CU_ASSERT_EQUAL(csd_dev_passthru(dg, 1, &pt), -EOPNOTSUPP);
	}
	/* close with the context still open: destroyed (ASan: no leak) */
	csd_dev_close(dg);

	for (split = 0; split < 2; split++) {
		dg = open_group(tspecs, 2, (uint32_t)split, 16);
		CU_ASSERT_FATAL(dg != NULL);
		p.max_tokens = 100;
		ctx = NULL;
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &ctx), 0);
		/* empty sequence, bad seq, bad layer, duplicate, flags */
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), -ENODATA);
		r.seqs = &bad;
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), -ERANGE);
		r.seqs = two;
		r.nseq = 2;
		CU_ASSERT_EQUAL(csd_attn_submit(ctx, &r, &op), -EINVAL);
		r.seqs = &seq;
		r.nseq = 1;
		r.layer = 1;
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), -ERANGE);
		r.layer = 0;
		r.flags = 1u << 7;
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), -EINVAL);
		r.flags = CSD_ATTN_LSE;
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), -EINVAL);
		r.flags = 0;
		CU_ASSERT_EQUAL(csd_attn_submit(ctx, &r, NULL), -EINVAL);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 4, 0, 0, 1, kv, kv), -ERANGE);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 0, kv, kv), -EINVAL);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 101, kv, kv),
				-EFBIG);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 1, kv, kv), 0);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, 0, 1, kv, kv),
				-EILSEQ);
		CU_ASSERT_EQUAL(csd_kv_read(ctx, 0, 0, 0, 2, out, out),
				-ERANGE);
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), 0);
		/* an op in flight when the context is destroyed */
		CU_ASSERT_EQUAL_FATAL(csd_attn_submit(ctx, &r, &op), 0);
		CU_ASSERT_EQUAL(csd_ctx_destroy(ctx), 0);
		csd_attn_wait(op, NULL);
		csd_dev_close(dg);
	}
}

/* A member failing mid-call: its tags run out after the other's start. */
static void test_member_fails(void)
{
	const char *specs[2] = { "embedded:tags=4", "embedded:tags=1" };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 2, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 4, .max_tokens = 100,
	};
	float q[2 * 64] = { 0 }, o1[2 * 64], o2[2 * 64], kv[2 * 64] = { 0 };
	uint32_t seq = 0;
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};
	struct csd_attn *op1, *op2 = NULL;
	struct csd_ctx *ctx = NULL;
	struct csd_dev *dg;
	int split;

	for (split = 0; split < 2; split++) {
		dg = open_group(specs, 2, (uint32_t)split, 16);
		CU_ASSERT_FATAL(dg != NULL);
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &ctx), 0);
		/* 20 tokens: on both members in the token split */
		for (seq = 0; seq < 20; seq++)
			CU_ASSERT_EQUAL(csd_kv_append(ctx, 0, 0, seq, 1, kv,
						      kv), 0);
		seq = 0;
		r.out = o1;
		CU_ASSERT_EQUAL_FATAL(csd_attn_submit(ctx, &r, &op1), 0);
		r.out = o2;
		CU_ASSERT_EQUAL(csd_attn_submit(ctx, &r, &op2), -EAGAIN);
		CU_ASSERT_PTR_NULL(op2);
		CU_ASSERT_EQUAL(csd_attn_wait(op1, NULL), 0);
		/* the tags of the failed call came back */
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), 0);
		CU_ASSERT(same_bits(o1, o2, sizeof(o1)));
		csd_dev_close(dg);
	}
}

/*
 * Head split over a big and a small drive: appends and fused calls that the
 * small member refuses (-ENOSPC) after the big one stored them.  The group
 * reports the shorter length, refuses attention on the sequence (-EILSEQ)
 * and completes the same append once space is freed on the small member
 * (another sequence reset), members already holding the tokens skipped;
 * everything then equals one drive bit for bit.  The small member splits
 * appends into 8-token commands (xfer=4096), so it may stop part-way.
 */
#define RT_SMALL "embedded:capacity=1M,channels=1,block=4,xfer=4096"
#define RT_MAXT 4096u
#define RT_STEP 40u	/* not a multiple of the 16 tokens of a page */

static void rt_attn_same(struct csd_ctx *c1, struct csd_ctx *cg, uint32_t seq,
			 const float *q)
{
	float o1[4 * 64], og[4 * 64], l1[4], lg[4];
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
		.flags = CSD_ATTN_LSE,
	};
	struct csd_attn_result r1, rg;

	r.out = o1;
	r.lse = l1;
	CU_ASSERT_EQUAL(csd_attn_run(c1, &r, &r1), 0);
	memset(og, 0x55, sizeof(og));
	r.out = og;
	r.lse = lg;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, &rg), 0);
	CU_ASSERT_EQUAL(r1.tokens, rg.tokens);
	CU_ASSERT(same_bits(o1, og, sizeof(o1)));
	CU_ASSERT(same_bits(l1, lg, sizeof(l1)));
}

static void test_append_retry(void)
{
	const char *specs[2] = { "embedded:", RT_SMALL };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 4, .head_dim = 64,
		.dtype = CSD_KV_F32, .max_seqs = 4, .max_tokens = RT_MAXT,
	};
	const size_t row = 2 * 64 * 4, rf = row / 4;
	struct csd_dev *d1 = NULL, *dg;
	struct csd_ctx *c1 = NULL, *cg = NULL;
	float *k, *v, *kr, *vr, q[4 * 64], o1[4 * 64], og[4 * 64];
	uint32_t seq = 0, len, lens[4], i;
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};
	uint64_t rs = 4242;
	int rc = 0;

	k = malloc(RT_MAXT * row);
	v = malloc(RT_MAXT * row);
	kr = malloc(RT_MAXT * row);
	vr = malloc(RT_MAXT * row);
	CU_ASSERT_FATAL(k && v && kr && vr);
	fill_f(&rs, k, RT_MAXT * rf);
	fill_f(&rs, v, RT_MAXT * rf);
	fill_f(&rs, q, 4 * 64);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	dg = open_group(specs, 2, CSD_SPLIT_HEADS, 0);
	CU_ASSERT_FATAL(dg != NULL);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(d1, &p, &c1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &cg), 0);

	/* sequences 1 and 2 take space that is freed later */
	CU_ASSERT_EQUAL_FATAL(csd_kv_append(cg, 1, 0, 0, 256, k, v), 0);
	CU_ASSERT_EQUAL_FATAL(csd_kv_append(cg, 2, 0, 0, 256, k, v), 0);
	/* sequence 0 until the small member is full */
	for (len = 0; len + RT_STEP <= RT_MAXT; len += RT_STEP) {
		rc = csd_kv_append(cg, seq, 0, len, RT_STEP, k + len * rf,
				   v + len * rf);
		if (rc)
			break;
		CU_ASSERT_EQUAL_FATAL(csd_kv_append(c1, seq, 0, len, RT_STEP,
						    k + len * rf,
						    v + len * rf), 0);
	}
	CU_ASSERT_EQUAL_FATAL(rc, -ENOSPC);
	CU_ASSERT_FATAL(len >= RT_STEP);
	/* the small member's length, at most part of the new tokens */
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lens, 4), 4);
	CU_ASSERT(lens[0] >= len && lens[0] < len + RT_STEP);
	CU_ASSERT_EQUAL(csd_kv_read(cg, seq, 0, len, RT_STEP, kr, vr),
			-ERANGE);
	/* still full; other ranges out of order; attention refused */
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len, RT_STEP, k + len * rf,
				      v + len * rf), -ENOSPC);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, lens[0] + 1, RT_STEP, k, v),
			-EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len - 1, RT_STEP, k, v),
			-EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len, RT_STEP - 1,
				      k + len * rf, v + len * rf), -EILSEQ);
	r.out = og;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EILSEQ);
	r.flags = CSD_ATTN_FUSED_KV;
	r.k_new = k;
	r.v_new = v;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EILSEQ);
	r.flags = 0;
	/* free space on the small member: the same append completes */
	CU_ASSERT_EQUAL(csd_seq_reset(cg, 1), 0);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len, RT_STEP, k + len * rf,
				      v + len * rf), 0);
	CU_ASSERT_EQUAL(csd_kv_append(c1, seq, 0, len, RT_STEP, k + len * rf,
				      v + len * rf), 0);
	len += RT_STEP;
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lens, 4), 4);
	CU_ASSERT_EQUAL(lens[0], len);
	CU_ASSERT_EQUAL(lens[1], 0);
	CU_ASSERT_EQUAL(lens[2], 256);
	/* done: now a repeat is out of order, as on one drive */
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len - RT_STEP, RT_STEP,
				      k + (len - RT_STEP) * rf,
				      v + (len - RT_STEP) * rf), -EILSEQ);
	CU_ASSERT_EQUAL(csd_kv_read(cg, seq, 0, 0, len, kr, vr), 0);
	CU_ASSERT(same_bits(kr, k, len * row));
	CU_ASSERT(same_bits(vr, v, len * row));
	rt_attn_same(c1, cg, seq, q);

	/* fill the small member again (sequence 3 ends up inconsistent) */
	for (i = 0; i < RT_MAXT; i++)
		if (csd_kv_append(cg, 3, 0, i, 1, k, v))
			break;
	CU_ASSERT(i < RT_MAXT);
	/* fused steps until one is refused by the small member */
	r.flags = CSD_ATTN_FUSED_KV | CSD_ATTN_LSE;
	for (i = 0; i < 64 && len < RT_MAXT; i++, len++) {
		float l1[4], lg[4];

		r.k_new = k + len * rf;
		r.v_new = v + len * rf;
		r.out = o1;
		r.lse = l1;
		CU_ASSERT_EQUAL(csd_attn_run(c1, &r, NULL), 0);
		r.out = og;
		r.lse = lg;
		rc = csd_attn_run(cg, &r, NULL);
		if (rc)
			break;
		CU_ASSERT(same_bits(o1, og, sizeof(o1)));
	}
	CU_ASSERT_EQUAL_FATAL(rc, -ENOSPC);
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lens, 4), 4);
	CU_ASSERT_EQUAL(lens[0], len);
	/* a fused retry cannot be told from the next token: refused */
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EILSEQ);
	r.flags = 0;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), -EILSEQ);
	/* space, then the fused token by append; attention = the fused call */
	CU_ASSERT_EQUAL(csd_seq_reset(cg, 2), 0);
	CU_ASSERT_EQUAL(csd_kv_append(cg, seq, 0, len, 1, k + len * rf,
				      v + len * rf), 0);
	len++;
	CU_ASSERT_EQUAL(csd_ctx_query(cg, NULL, lens, 4), 4);
	CU_ASSERT_EQUAL(lens[0], len);
	memset(og, 0x55, sizeof(og));
	r.out = og;
	r.lse = NULL;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), 0);
	CU_ASSERT(same_bits(o1, og, sizeof(o1)));
	CU_ASSERT_EQUAL(csd_kv_read(cg, seq, 0, 0, len, kr, vr), 0);
	CU_ASSERT(same_bits(kr, k, len * row));
	CU_ASSERT(same_bits(vr, v, len * row));
	rt_attn_same(c1, cg, seq, q);
	/* a reset makes the inconsistent sequence 3 usable again */
	CU_ASSERT_EQUAL(csd_seq_reset(cg, 3), 0);
	CU_ASSERT_EQUAL(csd_kv_append(cg, 3, 0, 0, 2, k, v), 0);
	seq = 3;
	CU_ASSERT_EQUAL(csd_attn_run(cg, &r, NULL), 0);

	CU_ASSERT_EQUAL(csd_ctx_destroy(c1), 0);
	CU_ASSERT_EQUAL(csd_ctx_destroy(cg), 0);
	csd_dev_close(dg);
	csd_dev_close(d1);
	free(k);
	free(v);
	free(kr);
	free(vr);
}

/* Many calls in flight, waited in reverse order. */
static void test_inflight(void)
{
	const char *specs[3] = { "embedded:", "embedded:", "embedded:" };
	struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 4, .q_heads = 8, .head_dim = 64,
		.dtype = CSD_KV_F16, .max_seqs = 8, .max_tokens = 600,
	};
	enum { NOPS = 8 };
	float q[8 * 64], out[NOPS][8 * 64], ref[8 * 64];
	uint16_t *kv = malloc(500 * 4 * 64 * sizeof(*kv));
	struct csd_attn *ops[NOPS];
	struct csd_ctx *ctx = NULL;
	uint32_t seq = 3;
	struct csd_attn_req r = {
		.layer = 0, .nseq = 1, .seqs = &seq, .q = q,
	};
	uint64_t rs = 5;
	int split, i;

	CU_ASSERT_FATAL(kv != NULL);
	fill_f(&rs, q, 8 * 64);
	fill_kv(&rs, kv, 500 * 4 * 64, CSD_KV_F16);
	for (split = 0; split < 2; split++) {
		struct csd_dev *dg = open_group(specs, 3, (uint32_t)split, 32);

		CU_ASSERT_FATAL(dg != NULL);
		CU_ASSERT_EQUAL_FATAL(csd_ctx_create(dg, &p, &ctx), 0);
		CU_ASSERT_EQUAL(csd_kv_append(ctx, seq, 0, 0, 500, kv, kv), 0);
		r.out = ref;
		CU_ASSERT_EQUAL(csd_attn_run(ctx, &r, NULL), 0);
		for (i = 0; i < NOPS; i++) {
			r.out = out[i];
			CU_ASSERT_EQUAL_FATAL(csd_attn_submit(ctx, &r, &ops[i]),
					      0);
		}
		for (i = NOPS - 1; i >= 0; i--) {
			CU_ASSERT_EQUAL(csd_attn_wait(ops[i], NULL), 0);
			CU_ASSERT(same_bits(out[i], ref, sizeof(ref)));
		}
		csd_dev_close(dg);
	}
	free(kv);
}

/* ---- $CSD_TEST_GROUP (e.g. two csd-fw daemons) ----------------------- */

static void test_env_group(void)
{
	const char *g = getenv("CSD_TEST_GROUP");
	struct csd_dev *d1 = NULL, *dg = NULL;
	size_t i;

	if (!g || !*g) {
		cu_skip("CSD_TEST_GROUP not set");
		return;
	}
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	CU_ASSERT_EQUAL_FATAL(csd_dev_open(g, &dg), 0);
	CU_ASSERT(csd_dev_get_members(dg) >= 2);
	for (i = 0; i < NCASES; i++)
		run_equiv(d1, dg, &eq_cases[i], 1);
	csd_dev_close(dg);
	csd_dev_close(d1);
}

static void test_env_group_tokens(void)
{
	const char *g = getenv("CSD_TEST_GROUP");
	const char *specs[8];
	char *buf, *p;
	struct csd_dev *d1 = NULL, *dg;
	unsigned int n = 0;
	size_t i;

	if (!g || !*g) {
		cu_skip("CSD_TEST_GROUP not set");
		return;
	}
	buf = strdup(g);
	CU_ASSERT_FATAL(buf != NULL);
	if (!buf)
		return;
	specs[n++] = buf;
	for (p = buf; *p && n < 8; p++)
		if (*p == ',' && !strncmp(p + 1, "shm:", 4)) {
			*p = 0;
			specs[n++] = p + 1;
		}
	CU_ASSERT_EQUAL_FATAL(csd_dev_open("embedded:", &d1), 0);
	dg = open_group(specs, n, CSD_SPLIT_TOKENS, 16);
	CU_ASSERT_FATAL(dg != NULL);
	for (i = 0; i < NCASES; i++)
		run_equiv(d1, dg, &eq_cases[i], 0);
	csd_dev_close(dg);
	csd_dev_close(d1);
	free(buf);
}

/* ---- the runtime on a group ------------------------------------------ */

#define DEC_STEPS	24
#define DEC_BATCH	4

static struct rt_model *tiny;

static int rt_init(void)
{
	return test_tiny_model_open("test-group", 11, &tiny);
}

static int rt_fini(void)
{
	if (tiny)
		rt_model_close(tiny);
	tiny = NULL;
	return 0;
}

/* Greedy tokens [DEC_BATCH][DEC_STEPS] with the csd backend on @dev. */
static int decode(const char *dev, int32_t *toks)
{
	const struct rt_backend_ops *ops = rt_backend_find("csd");
	struct rt_decoder_config cfg;
	struct rt_decoder *d = NULL;
	int32_t *prompts[DEC_BATCH], out[DEC_BATCH];
	uint32_t lens[DEC_BATCH], s, i;
	uint64_t x = 3;
	char err[256] = "";
	int ret, step;

	for (s = 0; s < DEC_BATCH; s++) {
		lens[s] = 5 + 13 * s;
		prompts[s] = malloc(lens[s] * sizeof(int32_t));
		if (!prompts[s])
			return -ENOMEM;
		for (i = 0; i < lens[s]; i++)
			prompts[s][i] = (int32_t)(3 + rng_next(&x) % 200);
	}
	rt_decoder_config_init(&cfg, DEC_BATCH, 64 + DEC_STEPS, 2);
	ret = rt_decoder_create(tiny, ops, dev, &cfg, &d, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "%s: %s\n", dev, err);
		goto out;
	}
	ret = rt_decoder_prefill(d, (const int32_t *const *)prompts, lens,
				 NULL);
	for (step = 0; ret == 0 && step < DEC_STEPS; step++) {
		ret = rt_decoder_step(d, NULL, out);
		for (s = 0; s < DEC_BATCH; s++)
			toks[s * DEC_STEPS + step] = out[s];
	}
	rt_decoder_destroy(d);
out:
	for (s = 0; s < DEC_BATCH; s++)
		free(prompts[s]);
	return ret;
}

static void test_runtime_greedy(void)
{
	static const char *const devs[] = {
		"embedded:",
		"embedded:,embedded:",
		"embedded:,embedded:,embedded:,embedded:",
	};
	int32_t t[3][DEC_BATCH * DEC_STEPS];
	int i;

	CU_ASSERT_FATAL(tiny != NULL);
	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL_FATAL(decode(devs[i], t[i]), 0);
	CU_ASSERT(same_bits(t[0], t[1], sizeof(t[0])));
	CU_ASSERT(same_bits(t[0], t[2], sizeof(t[0])));
}

static CU_TestInfo open_tests[] = {
	{ "string_form", test_string_form },
	{ "string_split_option", test_string_split },
	{ "open_errors", test_open_errors },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo head_tests[] = {
	{ "heads_2_drives_bit_identical", test_heads2 },
	{ "heads_4_drives_bit_identical", test_heads4 },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo token_tests[] = {
	{ "tokens_2_drives_chunk16", test_tokens2_c16 },
	{ "tokens_2_drives_chunk48", test_tokens2_c48 },
	{ "tokens_4_drives_chunk32", test_tokens4_c32 },
	{ "tokens_4_drives_chunk7", test_tokens4_c7 },
	{ "tokens_3_drives_default_chunk", test_tokens3_default },
	{ "tokens_longer_than_one_drive", test_tokens_long },
	{ "sparf_forwarded", test_sparse },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo err_tests[] = {
	{ "call_errors", test_call_errors },
	{ "member_fails_mid_call", test_member_fails },
	{ "append_retry_after_enospc", test_append_retry },
	{ "inflight", test_inflight },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo env_tests[] = {
	{ "csd_test_group_heads", test_env_group },
	{ "csd_test_group_tokens", test_env_group_tokens },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo rt_tests[] = {
	{ "greedy_1_2_4_drives", test_runtime_greedy },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "open", NULL, NULL, open_tests },
	{ "heads", NULL, NULL, head_tests },
	{ "tokens", NULL, NULL, token_tests },
	{ "errors", NULL, NULL, err_tests },
	{ "env", NULL, NULL, env_tests },
	{ "runtime", rt_init, rt_fini, rt_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
