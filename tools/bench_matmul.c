// SPDX-License-Identifier: MIT
/*
 * bench_matmul.c - `csd-bench matmul`: throughput of the runtime matmul
 * (rt_matmul, y[B][N] = x[B][K] . W[N][K]^T) per weight type x ISA x batch.
 *
 * Reports GFLOP/s (2*B*N*K flops per call) and the weight-streaming rate
 * (weight bytes read per second, the figure that matters at small batch).
 * Every point is the best of --reps timed repetitions (the machine is
 * shared and noisy), each repetition running enough calls to last at least
 * --min-ms.  Weights are larger than the LLC for the default shapes, so the
 * small-batch numbers are memory-bound as in a real decode step.
 *
 * To judge the numbers on a shared (or throttled / SMT-shared virtual)
 * machine, the same thread pool also measures a register-only FMA loop per
 * ISA ("fma_peak", best-of, taken before and after the sweep): "%peak" is
 * the matmul GFLOP/s over that measured peak, not over a datasheet one.
 */
#include <errno.h>
#include <getopt.h>
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csd-bench.h"
#include "rt_ops.h"

#define MAX_LIST	16

struct opts {
	uint32_t types[MAX_LIST], ntypes;
	int simds[MAX_LIST], nsimds;
	uint32_t batches[MAX_LIST], nbatches;
	uint32_t ns[MAX_LIST], nns;
	uint32_t K;
	unsigned int threads, reps;
	double min_ms;
	bool json;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: csd-bench matmul [options]\n"
"  --types LIST     weight types (f32,f16,bf16,q8_0; default all)\n"
"  --simd LIST      kernels (scalar,avx2,avx512; default avx2,avx512)\n"
"  --batch LIST     batch sizes (default 1,8,32,64,128)\n"
"  --n LIST         output rows N (default 11008,4096)\n"
"  --k K            reduction length (default 4096)\n"
"  --threads T      thread-pool size (default 2)\n"
"  --reps R         timed repetitions, best-of is reported (default 5)\n"
"  --min-ms MS      minimum duration of one repetition (default 200)\n"
"  --json           one JSON object on stdout\n");
}

/* Splits a comma list; @parse converts one item, returns 0 or -EINVAL. */
static int parse_list(const char *s, uint32_t *out, uint32_t *n,
		      int (*parse)(const char *, uint32_t *))
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n >= MAX_LIST || parse(tok, &out[*n]))
			return -EINVAL;
		(*n)++;
	}
	return *n ? 0 : -EINVAL;
}

static int parse_u32(const char *s, uint32_t *v)
{
	char *end;
	unsigned long x = strtoul(s, &end, 0);

	if (!*s || *end || x == 0 || x > 1u << 24)
		return -EINVAL;
	*v = (uint32_t)x;
	return 0;
}

static int parse_simd(const char *s, uint32_t *v)
{
	int i;

	for (i = RT_SIMD_SCALAR; i < RT_SIMD_COUNT; i++)
		if (!strcmp(s, rt_simd_name(i))) {
			*v = (uint32_t)i;
			return 0;
		}
	return -EINVAL;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	char *end;
	static const struct option lo[] = {
		{ "types", required_argument, NULL, 't' },
		{ "simd", required_argument, NULL, 's' },
		{ "batch", required_argument, NULL, 'b' },
		{ "n", required_argument, NULL, 'n' },
		{ "k", required_argument, NULL, 'k' },
		{ "threads", required_argument, NULL, 'T' },
		{ "reps", required_argument, NULL, 'r' },
		{ "min-ms", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint32_t tmp[MAX_LIST], i, v;
	int c;

	memset(o, 0, sizeof(*o));
	o->types[0] = RT_TYPE_F32;
	o->types[1] = RT_TYPE_F16;
	o->types[2] = RT_TYPE_BF16;
	o->types[3] = RT_TYPE_Q8_0;
	o->ntypes = 4;
	o->simds[0] = RT_SIMD_AVX2;
	o->simds[1] = RT_SIMD_AVX512;
	o->nsimds = 2;
	o->batches[0] = 1;
	o->batches[1] = 8;
	o->batches[2] = 32;
	o->batches[3] = 64;
	o->batches[4] = 128;
	o->nbatches = 5;
	o->ns[0] = 11008;
	o->ns[1] = 4096;
	o->nns = 2;
	o->K = 4096;
	o->threads = 2;
	o->reps = 5;
	o->min_ms = 200;
	end = NULL;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_list(optarg, o->types, &o->ntypes,
				       rt_type_parse))
				goto bad;
			break;
		case 's':
			if (parse_list(optarg, tmp, &v, parse_simd))
				goto bad;
			for (i = 0; i < v; i++)
				o->simds[i] = (int)tmp[i];
			o->nsimds = (int)v;
			break;
		case 'b':
			if (parse_list(optarg, o->batches, &o->nbatches,
				       parse_u32))
				goto bad;
			break;
		case 'n':
			if (parse_list(optarg, o->ns, &o->nns, parse_u32))
				goto bad;
			break;
		case 'k':
			if (parse_u32(optarg, &o->K))
				goto bad;
			break;
		case 'T':
			if (parse_u32(optarg, &v) || v > 256)
				goto bad;
			o->threads = v;
			break;
		case 'r':
			if (parse_u32(optarg, &v) || v > 1000)
				goto bad;
			o->reps = v;
			break;
		case 'm':
			o->min_ms = strtod(optarg, &end);
			if (end == optarg || *end || !(o->min_ms > 0))
				goto bad;
			break;
		case 'J':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			goto bad;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "csd-bench matmul: unexpected argument '%s'\n",
			argv[optind]);
		return -EINVAL;
	}
	return 0;
bad:
	usage(stderr);
	return -EINVAL;
}

/* Fills @w (N rows of @type) from a fixed-seed RNG, values in [-1, 1). */
static void fill_w(uint32_t type, void *w, uint32_t K, uint32_t N,
		   float *row)
{
	size_t rb = rt_type_row_bytes(type, K);
	struct rt_rng r;
	uint32_t n, k;

	rt_rng_seed(&r, 1234 + type);
	for (n = 0; n < N; n++) {
		uint8_t *dst = (uint8_t *)w + (size_t)n * rb;

		for (k = 0; k < K; k++)
			row[k] = rt_rng_float(&r) * 2.0f - 1.0f;
		switch (type) {
		case RT_TYPE_F32:
			memcpy(dst, row, (size_t)K * 4);
			break;
		case RT_TYPE_F16:
			rt_fp32_to_fp16_row(row, (uint16_t *)dst, K);
			break;
		case RT_TYPE_BF16:
			for (k = 0; k < K; k++)
				((uint16_t *)dst)[k] = rt_fp32_to_bf16(row[k]);
			break;
		case RT_TYPE_Q8_0:
			rt_quantize_q8_0_row(row, (struct rt_block_q8_0 *)dst,
					     K);
			break;
		}
	}
}

/* ---- measured FMA peak: 16 independent FMA chains per thread ---- */

#define PEAK_ITERS	2000000u

__attribute__((target("avx2,fma")))
static float peak_avx2(uint32_t iters)
{
	__m256 a[16], m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
	float s = 0;
	uint32_t i, j;

	for (j = 0; j < 16; j++)
		a[j] = _mm256_set1_ps((float)j);
	for (i = 0; i < iters; i++) {
		_Pragma("GCC unroll 16")
		for (j = 0; j < 16; j++)
			a[j] = _mm256_fmadd_ps(a[j], m, c);
	}
	for (j = 0; j < 16; j++)
		s += _mm256_cvtss_f32(a[j]);
	return s;
}

__attribute__((target("avx512f")))
static float peak_avx512(uint32_t iters)
{
	__m512 a[16], m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
	float s = 0;
	uint32_t i, j;

	for (j = 0; j < 16; j++)
		a[j] = _mm512_set1_ps((float)j);
	for (i = 0; i < iters; i++) {
		_Pragma("GCC unroll 16")
		for (j = 0; j < 16; j++)
			a[j] = _mm512_fmadd_ps(a[j], m, c);
	}
	for (j = 0; j < 16; j++)
		s += _mm512_reduce_add_ps(a[j]);
	return s;
}

struct peak_job {
	int simd;
	volatile float sink[256];
};

static void peak_task(void *arg, uint32_t t, uint32_t worker)
{
	struct peak_job *j = arg;

	(void)worker;
	j->sink[t & 255] = j->simd == RT_SIMD_AVX512 ?
			   peak_avx512(PEAK_ITERS) : peak_avx2(PEAK_ITERS);
}

/* Best-of-reps FMA GFLOP/s of @simd with every pool thread busy. */
static double fma_peak(struct rt_pool *pool, int simd, unsigned int reps)
{
	struct peak_job j = { .simd = simd };
	uint32_t T = rt_pool_threads(pool);
	double best = 0, t0, t, flops;
	unsigned int rep;

	if (simd != RT_SIMD_AVX2 && simd != RT_SIMD_AVX512)
		return 0;
	flops = 2.0 * 16 * (simd == RT_SIMD_AVX512 ? 16 : 8) *
		(double)PEAK_ITERS * T;
	for (rep = 0; rep < reps; rep++) {
		t0 = now_s();
		rt_pool_run(pool, peak_task, &j, T);
		t = now_s() - t0;
		if (flops / t * 1e-9 > best)
			best = flops / t * 1e-9;
	}
	return best;
}

struct point {
	uint32_t type, N, B;
	int simd;
	double sec, gflops, gbps;
};

/* Best-of-reps seconds per call; <0 on error. */
static double time_mm(struct rt_pool *pool, int simd, const float *x,
		      uint32_t B, uint32_t K, uint32_t type, const void *w,
		      uint32_t N, float *y, const struct opts *o)
{
	double best = 1e30, t0, t;
	unsigned int rep, calls, i;

	/* warm-up, and size a repetition to last >= min_ms */
	t0 = now_s();
	if (rt_matmul(pool, simd, x, B, K, type, w, N, y))
		return -1;
	t = now_s() - t0;
	calls = t > 0 ? (unsigned int)(o->min_ms * 1e-3 / t) + 1 : 1;
	if (calls > 100000)
		calls = 100000;
	for (rep = 0; rep < o->reps; rep++) {
		t0 = now_s();
		for (i = 0; i < calls; i++)
			rt_matmul(pool, simd, x, B, K, type, w, N, y);
		t = (now_s() - t0) / calls;
		if (t < best)
			best = t;
	}
	return best;
}

int bench_matmul_main(int argc, char **argv)
{
	struct opts o;
	struct rt_pool *pool = NULL;
	struct point *pts = NULL;
	uint32_t maxB = 0, maxN = 0, ti, ni, bi, np = 0, i;
	float *x = NULL, *y = NULL, *row = NULL;
	void *w = NULL;
	double peak[RT_SIMD_COUNT] = { 0 };
	int rc, si, ret = 1;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	for (i = 0; i < o.nbatches; i++)
		maxB = o.batches[i] > maxB ? o.batches[i] : maxB;
	for (i = 0; i < o.nns; i++)
		maxN = o.ns[i] > maxN ? o.ns[i] : maxN;
	if (!maxB || !maxN || !o.K || !o.ntypes || !o.nsimds) {
		fprintf(stderr, "csd-bench matmul: empty batch/N/K/type/simd list\n");
		return 2;
	}
	for (i = 0; i < o.ntypes; i++)
		if (!rt_type_row_bytes(o.types[i], o.K)) {
			fprintf(stderr, "csd-bench matmul: K %u invalid for %s\n",
				o.K, rt_type_name(o.types[i]));
			return 2;
		}
	if (rt_pool_create(o.threads, &pool)) {
		fprintf(stderr, "csd-bench matmul: cannot create pool\n");
		return 1;
	}
	x = malloc((size_t)maxB * o.K * sizeof(float));
	y = malloc((size_t)maxB * maxN * sizeof(float));
	row = malloc((size_t)o.K * sizeof(float));
	w = malloc(rt_type_row_bytes(RT_TYPE_F32, o.K) * maxN);
	pts = calloc((size_t)o.ntypes * o.nns * o.nbatches * (uint32_t)o.nsimds,
		     sizeof(*pts));
	if (!x || !y || !row || !w || !pts) {
		fprintf(stderr, "csd-bench matmul: out of memory\n");
		goto out;
	}
	{
		struct rt_rng r;

		rt_rng_seed(&r, 99);
		for (size_t k = 0; k < (size_t)maxB * o.K; k++)
			x[k] = rt_rng_float(&r) * 2.0f - 1.0f;
	}
	for (si = 0; si < o.nsimds; si++)
		if (rt_simd_supported(o.simds[si]))
			peak[o.simds[si]] = fma_peak(pool, o.simds[si], o.reps);
	if (!o.json)
		printf("%-5s %-7s %6s %5s %11s %10s %6s %9s\n", "type", "simd",
		       "N", "B", "ms/call", "GFLOP/s", "%peak", "W GB/s");
	for (ti = 0; ti < o.ntypes; ti++) {
		uint32_t type = o.types[ti];

		fill_w(type, w, o.K, maxN, row);
		for (ni = 0; ni < o.nns; ni++) {
			for (si = 0; si < o.nsimds; si++) {
				int simd = o.simds[si];

				if (!rt_simd_supported(simd))
					continue;
				for (bi = 0; bi < o.nbatches; bi++) {
					struct point *p = &pts[np];
					uint32_t B = o.batches[bi], N = o.ns[ni];
					double wb = (double)rt_type_row_bytes(
						type, o.K) * N;

					p->type = type;
					p->N = N;
					p->B = B;
					p->simd = simd;
					p->sec = time_mm(pool, simd, x, B, o.K,
							 type, w, N, y, &o);
					if (p->sec < 0) {
						fprintf(stderr,
							"csd-bench matmul: rt_matmul failed\n");
						goto out;
					}
					p->gflops = 2.0 * B * N * o.K /
						    p->sec * 1e-9;
					p->gbps = wb / p->sec * 1e-9;
					np++;
					if (!o.json) {
						printf("%-5s %-7s %6u %5u %11.3f %10.1f %6.0f %9.2f\n",
						       rt_type_name(type),
						       rt_simd_name(simd), N, B,
						       p->sec * 1e3, p->gflops,
						       peak[simd] > 0 ? 100 *
						       p->gflops / peak[simd] : 0,
						       p->gbps);
						fflush(stdout);
					}
				}
			}
		}
	}
	for (si = 0; si < o.nsimds; si++) {
		int simd = o.simds[si];
		double p2;

		if (!rt_simd_supported(simd))
			continue;
		p2 = fma_peak(pool, simd, o.reps);
		if (p2 > peak[simd])
			peak[simd] = p2;
		if (!o.json)
			printf("measured FMA peak %-6s %7.1f GFLOP/s (%u threads)\n",
			       rt_simd_name(simd), peak[simd], o.threads);
	}
	if (o.json) {
		printf("{\"bench\":\"matmul\",\"K\":%u,\"threads\":%u,"
		       "\"reps\":%u,\"fma_peak_gflops\":{\"avx2\":%.1f,"
		       "\"avx512\":%.1f},\"results\":[", o.K, o.threads,
		       o.reps, peak[RT_SIMD_AVX2], peak[RT_SIMD_AVX512]);
		for (i = 0; i < np; i++)
			printf("%s{\"type\":\"%s\",\"simd\":\"%s\",\"N\":%u,"
			       "\"B\":%u,\"ms\":%.4f,\"gflops\":%.2f,"
			       "\"weight_gbps\":%.3f,\"pct_peak\":%.1f}",
			       i ? "," : "", rt_type_name(pts[i].type),
			       rt_simd_name(pts[i].simd), pts[i].N, pts[i].B,
			       pts[i].sec * 1e3, pts[i].gflops, pts[i].gbps,
			       peak[pts[i].simd] > 0 ? 100 * pts[i].gflops /
			       peak[pts[i].simd] : 0);
		printf("]}\n");
	}
	ret = 0;
out:
	free(pts);
	free(w);
	free(row);
	free(y);
	free(x);
	rt_pool_destroy(pool);
	return ret;
}
