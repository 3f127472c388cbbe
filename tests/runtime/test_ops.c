/* SPDX-License-Identifier: MIT */
/*
 * test_ops.c - runtime kernels: matmul (every type x ISA vs scalar and a
 * double reference), conversions, RMSNorm, RoPE, SwiGLU, softmax, sampling.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cu_main.h"
#include "rt_ops.h"

static const uint32_t types[] = { RT_TYPE_F32, RT_TYPE_F16, RT_TYPE_BF16,
				  RT_TYPE_Q8_0 };
#define NTYPES (sizeof(types) / sizeof(types[0]))

static float frand(struct rt_rng *r)
{
	return rt_rng_float(r) * 2.0f - 1.0f;
}

/* Random weight matrix of @type, n rows of k. */
static void *make_w(uint32_t type, uint32_t k, uint32_t n, struct rt_rng *r)
{
	size_t rb = rt_type_row_bytes(type, k);
	uint8_t *w = malloc(rb * n + 1);
	float *row = malloc(k * sizeof(float));
	uint32_t i, j;

	CU_ASSERT_FATAL(w && row);
	for (i = 0; i < n; i++) {
		uint8_t *dst = w + (size_t)i * rb;

		for (j = 0; j < k; j++)
			row[j] = frand(r);
		switch (type) {
		case RT_TYPE_F32:
			memcpy(dst, row, k * 4);
			break;
		case RT_TYPE_F16:
			for (j = 0; j < k; j++)
				((uint16_t *)dst)[j] = rt_fp32_to_fp16(row[j]);
			break;
		case RT_TYPE_BF16:
			for (j = 0; j < k; j++)
				((uint16_t *)dst)[j] = rt_fp32_to_bf16(row[j]);
			break;
		case RT_TYPE_Q8_0:
			rt_quantize_q8_0_row(row, (struct rt_block_q8_0 *)dst,
					     k);
			break;
		}
	}
	free(row);
	return w;
}

static void check_mm(uint32_t type, uint32_t B, uint32_t K, uint32_t N,
		     struct rt_pool *pool, struct rt_rng *r)
{
	size_t rb = rt_type_row_bytes(type, K);
	void *w = make_w(type, K, N, r);
	float *x = malloc((size_t)B * K * sizeof(float));
	float *ys = malloc((size_t)B * N * sizeof(float));
	float *y = malloc((size_t)B * N * sizeof(float));
	float *y1 = malloc((size_t)N * sizeof(float));
	float *wr = malloc((size_t)K * sizeof(float));
	uint32_t b, n, k;
	int simd, bad = 0;

	CU_ASSERT_FATAL(x && ys && y && y1 && wr);
	for (k = 0; k < B * K; k++)
		x[k] = frand(r);
	CU_ASSERT_EQUAL_FATAL(rt_matmul(NULL, RT_SIMD_SCALAR, x, B, K, type,
					w, N, ys), 0);
	/* scalar vs double reference */
	for (n = 0; n < N; n++) {
		rt_dequant_row(type, (uint8_t *)w + (size_t)n * rb, wr, K);
		for (b = 0; b < B; b++) {
			double acc = 0, mag = 0;

			for (k = 0; k < K; k++) {
				acc += (double)x[(size_t)b * K + k] * wr[k];
				mag += fabs((double)x[(size_t)b * K + k] * wr[k]);
			}
			if (fabs(ys[(size_t)b * N + n] - acc) >
			    1e-5 * mag + 1e-6)
				bad++;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	for (simd = RT_SIMD_SCALAR; simd < RT_SIMD_COUNT; simd++) {
		if (!rt_simd_supported(simd))
			continue;
		CU_ASSERT_EQUAL_FATAL(rt_matmul(pool, simd, x, B, K, type, w,
						N, y), 0);
		bad = 0;
		for (n = 0; n < N; n++) {
			rt_dequant_row(type, (uint8_t *)w + (size_t)n * rb,
				       wr, K);
			for (b = 0; b < B; b++) {
				double mag = 0;

				for (k = 0; k < K; k++)
					mag += fabs((double)x[(size_t)b * K + k]
						    * wr[k]);
				if (fabsf(y[(size_t)b * N + n] -
					  ys[(size_t)b * N + n]) >
				    2e-5 * mag + 1e-6)
					bad++;
			}
		}
		if (bad)
			fprintf(stderr, "type %s simd %s B %u K %u N %u: %d bad\n",
				rt_type_name(type), rt_simd_name(simd), B, K,
				N, bad);
		CU_ASSERT_EQUAL(bad, 0);
		/* batch independence: every row alone, single thread */
		for (b = 0; b < B; b++) {
			CU_ASSERT_EQUAL_FATAL(rt_matmul(NULL, simd,
				x + (size_t)b * K, 1, K, type, w, N, y1), 0);
			CU_ASSERT(memcmp(y1, y + (size_t)b * N,
					 N * sizeof(float)) == 0);
		}
	}
	free(w);
	free(x);
	free(ys);
	free(y);
	free(y1);
	free(wr);
}

static void test_matmul(void)
{
	static const uint32_t Ks[] = { 32, 64, 96, 160, 256, 4096 };
	static const uint32_t Kodd[] = { 1, 7, 15, 33, 100, 257 };
	static const uint32_t Ns[] = { 1, 3, 4, 5, 17, 33, 100 };
	struct rt_pool *pool;
	struct rt_rng r;
	uint32_t t, ki, ni, B;

	rt_rng_seed(&r, 42);
	CU_ASSERT_EQUAL_FATAL(rt_pool_create(3, &pool), 0);
	for (t = 0; t < NTYPES; t++) {
		for (ki = 0; ki < sizeof(Ks) / sizeof(Ks[0]); ki++)
			for (ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++) {
				B = 1 + (ki * 7 + ni * 3) % 17;
				if (Ks[ki] == 4096 && Ns[ni] > 33)
					continue;
				check_mm(types[t], B, Ks[ki], Ns[ni], pool, &r);
			}
		if (types[t] == RT_TYPE_Q8_0)
			continue;
		for (ki = 0; ki < sizeof(Kodd) / sizeof(Kodd[0]); ki++)
			for (ni = 0; ni < sizeof(Ns) / sizeof(Ns[0]); ni++)
				check_mm(types[t], 1 + (ki + ni) % 17,
					 Kodd[ki], Ns[ni], pool, &r);
	}
	/* every B from 1 to 17 */
	for (t = 0; t < NTYPES; t++)
		for (B = 1; B <= 17; B++)
			check_mm(types[t], B, 64, 37, pool, &r);
	rt_pool_destroy(pool);
}

static void test_matmul_threads(void)
{
	struct rt_pool *p1, *p4;
	struct rt_rng r;
	uint32_t K = 512, N = 1000, B = 9, t;
	float *x = malloc((size_t)B * K * 4), *ya = malloc((size_t)B * N * 4),
	      *yb = malloc((size_t)B * N * 4);

	CU_ASSERT_FATAL(x && ya && yb);
	rt_rng_seed(&r, 7);
	for (t = 0; t < B * K; t++)
		x[t] = frand(&r);
	CU_ASSERT_EQUAL_FATAL(rt_pool_create(1, &p1), 0);
	CU_ASSERT_EQUAL_FATAL(rt_pool_create(4, &p4), 0);
	for (t = 0; t < NTYPES; t++) {
		void *w = make_w(types[t], K, N, &r);

		CU_ASSERT_EQUAL(rt_matmul(p1, RT_SIMD_AUTO, x, B, K, types[t],
					  w, N, ya), 0);
		CU_ASSERT_EQUAL(rt_matmul(p4, RT_SIMD_AUTO, x, B, K, types[t],
					  w, N, yb), 0);
		CU_ASSERT(memcmp(ya, yb, (size_t)B * N * 4) == 0);
		free(w);
	}
	/* bad arguments */
	CU_ASSERT_EQUAL(rt_matmul(p1, RT_SIMD_AUTO, x, 1, 33, RT_TYPE_Q8_0,
				  x, 1, ya), -EINVAL);
	CU_ASSERT_EQUAL(rt_matmul(p1, RT_SIMD_AUTO, x, 1, 32, 2, x, 1, ya),
			-EINVAL);
	rt_pool_destroy(p1);
	rt_pool_destroy(p4);
	free(x);
	free(ya);
	free(yb);
}

static void test_convert(void)
{
	struct rt_rng r;
	uint32_t i;
	int bad = 0;

	/* fp16 -> fp32 -> fp16 is exact for every non-NaN half */
	for (i = 0; i < 65536; i++) {
		uint16_t h = (uint16_t)i;

		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			continue;
		if (rt_fp32_to_fp16(rt_fp16_to_fp32(h)) != h)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(rt_fp16_to_fp32(0x3c00), 1.0f);
	CU_ASSERT_EQUAL(rt_fp16_to_fp32(0xc000), -2.0f);
	CU_ASSERT_EQUAL(rt_fp16_to_fp32(0x0001), 5.9604644775390625e-8f);
	CU_ASSERT_EQUAL(rt_fp32_to_fp16(65520.0f), 0x7c00);
	CU_ASSERT_EQUAL(rt_fp32_to_fp16(65519.0f), 0x7bff);
	CU_ASSERT_EQUAL(rt_fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00); /* tie even */
	CU_ASSERT_EQUAL(rt_fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);
	CU_ASSERT_EQUAL(rt_fp32_to_bf16(1.0f), 0x3f80);
	CU_ASSERT_EQUAL(rt_bf16_to_fp32(0x4040), 3.0f);
	/* row conversion (F16C when present) equals the scalar rule */
	rt_rng_seed(&r, 3);
	{
		float x[1003];
		uint16_t h[1003];
		float back[1003];

		for (i = 0; i < 1003; i++)
			x[i] = frand(&r) * (i % 3 ? 1.0f : 1e-5f) *
			       (i % 7 ? 1.0f : 7e4f);
		rt_fp32_to_fp16_row(x, h, 1003);
		rt_fp16_to_fp32_row(h, back, 1003);
		bad = 0;
		for (i = 0; i < 1003; i++) {
			if (h[i] != rt_fp32_to_fp16(x[i]))
				bad++;
			if (back[i] != rt_fp16_to_fp32(h[i]))
				bad++;
		}
		CU_ASSERT_EQUAL(bad, 0);
	}
	/* bf16 rounding vs double: error <= half ulp (2^-8 relative) */
	bad = 0;
	for (i = 0; i < 10000; i++) {
		float x = frand(&r) * 100.0f;
		float y = rt_bf16_to_fp32(rt_fp32_to_bf16(x));

		if (fabsf(x - y) > fabsf(x) / 256.0f)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* q8_0: |x - deq| <= d / 2 */
	{
		float x[64], y[64];
		struct rt_block_q8_0 q[2];

		for (i = 0; i < 64; i++)
			x[i] = frand(&r) * (i < 32 ? 1.0f : 0.01f);
		rt_quantize_q8_0_row(x, q, 64);
		rt_dequant_row(RT_TYPE_Q8_0, q, y, 64);
		bad = 0;
		for (i = 0; i < 64; i++)
			if (fabsf(x[i] - y[i]) >
			    rt_fp16_to_fp32(q[i / 32].d) * 0.5f + 1e-4f *
			    fabsf(x[i]))
				bad++;
		CU_ASSERT_EQUAL(bad, 0);
	}
	CU_ASSERT_EQUAL(rt_type_row_bytes(RT_TYPE_Q8_0, 64), 68);
	CU_ASSERT_EQUAL(rt_type_row_bytes(RT_TYPE_Q8_0, 65), 0);
	CU_ASSERT_EQUAL(rt_type_row_bytes(RT_TYPE_BF16, 3), 6);
	CU_ASSERT_EQUAL(rt_type_row_bytes(2, 32), 0);
}

static void test_rmsnorm(void)
{
	static const uint32_t ns[] = { 1, 7, 64, 256, 4096 };
	struct rt_rng r;
	uint32_t t, i;

	rt_rng_seed(&r, 11);
	for (t = 0; t < sizeof(ns) / sizeof(ns[0]); t++) {
		uint32_t n = ns[t];
		float *x = malloc(n * 4), *w = malloc(n * 4), *y = malloc(n * 4);
		double ss = 0;
		int bad = 0;

		CU_ASSERT_FATAL(x && w && y);
		for (i = 0; i < n; i++) {
			x[i] = frand(&r) * 3.0f;
			w[i] = 1.0f + frand(&r) * 0.2f;
			ss += (double)x[i] * x[i];
		}
		rt_rmsnorm(y, x, w, n, 1e-5f);
		for (i = 0; i < n; i++) {
			double ref = x[i] / sqrt(ss / n + 1e-5f) * w[i];

			if (fabs(y[i] - ref) > 1e-5 * (fabs(ref) + 1e-3))
				bad++;
		}
		CU_ASSERT_EQUAL(bad, 0);
		rt_rmsnorm(x, x, NULL, n, 1e-5f);	/* in place */
		for (i = 0, bad = 0; i < n; i++)
			if (fabsf(x[i] * w[i] - y[i]) > 1e-5f * (fabsf(y[i]) + 1e-3f))
				bad++;
		CU_ASSERT_EQUAL(bad, 0);
		free(x);
		free(w);
		free(y);
	}
}

static void test_rope(void)
{
	static const uint32_t cases[][3] = {	/* heads, head_dim, n_rot */
		{ 1, 64, 64 }, { 4, 64, 64 }, { 2, 128, 128 }, { 3, 128, 64 },
		{ 8, 80, 80 },
	};
	static const uint32_t poss[] = { 0, 1, 17, 1000, 8191, 70000 };
	struct rt_rng r;
	uint32_t c, p, i, h;

	rt_rng_seed(&r, 5);
	for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		for (p = 0; p < sizeof(poss) / sizeof(poss[0]); p++) {
			uint32_t nh = cases[c][0], hd = cases[c][1];
			uint32_t nr = cases[c][2], n = nh * hd;
			float *x = malloc(n * 4), *y = malloc(n * 4);
			int bad = 0;

			CU_ASSERT_FATAL(x && y);
			for (i = 0; i < n; i++)
				x[i] = y[i] = frand(&r);
			rt_rope(y, nh, hd, nr, poss[p], 10000.0f);
			for (h = 0; h < nh; h++)
				for (i = 0; i < hd; i++) {
					const float *xh = x + h * hd;
					double ref;

					if (i >= nr) {
						ref = xh[i];
					} else {
						uint32_t pi = i / 2;
						double th = poss[p] *
							pow(10000.0, -2.0 * pi / nr);

						ref = i % 2 ?
						      xh[i - 1] * sin(th) +
						      xh[i] * cos(th) :
						      xh[i] * cos(th) -
						      xh[i + 1] * sin(th);
					}
					if (fabs(y[h * hd + i] - ref) > 1e-5)
						bad++;
				}
			CU_ASSERT_EQUAL(bad, 0);
			free(x);
			free(y);
		}
	/* position 0 is the identity */
	{
		float a[64], b[64];

		for (i = 0; i < 64; i++)
			a[i] = b[i] = frand(&r);
		rt_rope(a, 1, 64, 64, 0, 10000.0f);
		CU_ASSERT(memcmp(a, b, sizeof(a)) == 0);
	}
}

static void test_act(void)
{
	float g[5] = { -3, -1, 0, 1, 4 }, u[5] = { 1, 2, 3, 4, 0.5f };
	float s[4] = { 1, 2, 3, 1000 };
	uint32_t i;

	rt_swiglu(g, u, 5);
	for (i = 0; i < 5; i++) {
		double x = (double[]){ -3, -1, 0, 1, 4 }[i];
		double ref = x / (1 + exp(-x)) * u[i];

		CU_ASSERT_DOUBLE_EQUAL(g[i], ref, 1e-6);
	}
	rt_softmax(s, 4);
	CU_ASSERT_DOUBLE_EQUAL(s[3], 1.0, 1e-6);
	CU_ASSERT(s[0] >= 0 && s[0] < 1e-30 + 1e-40);
	{
		float t[3] = { 0, log(2.0), log(5.0) };

		rt_softmax(t, 3);
		CU_ASSERT_DOUBLE_EQUAL(t[0], 1.0 / 8, 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(t[1], 2.0 / 8, 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(t[2], 5.0 / 8, 1e-6);
	}
	{
		float a[6] = { 1, 5, 2, 5, -1, 0 };

		CU_ASSERT_EQUAL(rt_argmax(a, 6), 1);	/* first max */
	}
}

static void test_sample(void)
{
	float lg[100], scratch[100];
	uint32_t idx[100], cnt[100] = { 0 }, i, t;
	struct rt_sampling sp = { 0 };
	struct rt_rng r, r2;

	for (i = 0; i < 100; i++)
		lg[i] = (float)((i * 37) % 100) / 20.0f;	/* max at i=73? */
	t = rt_argmax(lg, 100);
	rt_rng_seed(&r, 1);
	CU_ASSERT_EQUAL(rt_sample(lg, 100, &sp, &r, scratch, idx), t);
	sp.temperature = 1.0f;
	sp.top_k = 1;
	CU_ASSERT_EQUAL(rt_sample(lg, 100, &sp, &r, scratch, idx), t);
	sp.top_k = 0;
	sp.top_p = 1e-6f;
	CU_ASSERT_EQUAL(rt_sample(lg, 100, &sp, &r, scratch, idx), t);
	/* top-k 3: only the 3 largest ever come out, all of them do */
	sp.top_p = 0;
	sp.top_k = 3;
	for (i = 0; i < 3000; i++)
		cnt[rt_sample(lg, 100, &sp, &r, scratch, idx)]++;
	for (i = 0, t = 0; i < 100; i++)
		if (cnt[i])
			t++;
	CU_ASSERT_EQUAL(t, 3);
	/* same seed, same draws */
	sp.top_k = 0;
	sp.top_p = 0.9f;
	rt_rng_seed(&r, 99);
	rt_rng_seed(&r2, 99);
	for (i = 0; i < 100; i++) {
		uint32_t a = rt_sample(lg, 100, &sp, &r, scratch, idx);
		uint32_t b = rt_sample(lg, 100, &sp, &r2, scratch, idx);

		CU_ASSERT_EQUAL(a, b);
	}
}

static CU_TestInfo ops_tests[] = {
	{ "matmul_types_isas", test_matmul },
	{ "matmul_threads", test_matmul_threads },
	{ "convert", test_convert },
	{ "rmsnorm", test_rmsnorm },
	{ "rope", test_rope },
	{ "activations", test_act },
	{ "sample", test_sample },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "ops", NULL, NULL, ops_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
