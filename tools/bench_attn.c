// SPDX-License-Identifier: MIT
/*
 * bench_attn.c - `csd-bench attn`: attention engine throughput (KV bytes/s)
 * per kernel, against a STREAM-like SIMD read of the same number of bytes
 * by the same number of threads, measured interleaved in the same run.
 *
 * The KV set is laid out like a fresh drive's after one bulk append of
 * each stream, i.e. a prefill (firmware-sim/kv.c, Placement): 4 KiB pages
 * of tokens_per_page rows of one (sequence, kv head, K|V) stream, allocated
 * in extents of consecutive pages that grow from --extent to --extent-max
 * pages (kv_extent_level()/kv_extent_size(), the drive's defaults: 16
 * pages = 64 KiB up to 1 MiB, whole blocks of the default block size once
 * a block or more; a bulk append skips the sizes it would fill at once),
 * the extents of all streams in
 * shuffled order in one big buffer (so the kernels cannot ride on one
 * sequential stream).  --extent 1 --extent-max 1 scatters single pages,
 * which makes the hardware prefetchers restart at every 4 KiB page.
 */
#include <errno.h>
#include <getopt.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "attn.h"
#include "csdfw.h"
#include "kv.h"
#include "csd/csd_spec.h"
#include "csd-bench.h"

#define PAGE_SIZE_KV	4096u
#define MAX_ITERS	1000

struct opts {
	uint32_t tokens, batch, q_heads, kv_heads, head_dim;
	int dtype;
	unsigned int threads, iters;
	uint32_t extent, extent_max;	/* pages of the first / largest
					 * extent of a stream */
	int kernels[CSD_SIMD_COUNT];
	int nkernels;
	bool json;
};

struct kvbuf {
	char *buf;
	size_t size;		/* bytes of pages (whole extents) */
	uint32_t *slot;		/* [seq][kvh][2][pps] -> page slot */
	uint32_t pps, kv_heads, tpp;
};

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	double t_done;		/* when the worker completed the job */
};

struct kres {
	int simd;
	double roof;		/* compute roof of this kernel, GB/s */
	double gbps[MAX_ITERS], stream[MAX_ITERS];
	double best, median, sbest, smedian;
	double max_err, max_lse_err;
	int ok;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static const void *bench_page(void *cookie, uint32_t seq, uint32_t kvh,
			   int which, uint32_t idx)
{
	const struct kvbuf *k = cookie;

	return k->buf + (size_t)k->slot[(((size_t)seq * k->kv_heads + kvh) * 2 +
					 which) * k->pps + idx] * PAGE_SIZE_KV;
}

static void job_done(struct attn_job *job)
{
	struct waiter *w = job->priv;
	double t = now_s();

	pthread_mutex_lock(&w->lock);
	w->t_done = t;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Submit @job and wait for it; returns seconds or -1. */
static double run_engine(struct attn_engine *e, struct attn_job *job,
			 struct waiter *w)
{
	double t0;

	w->done = false;
	job->priv = w;
	t0 = now_s();
	if (attn_engine_submit(e, job))
		return -1;
	pthread_mutex_lock(&w->lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	/* completion as seen by the worker: this thread may wake up late */
	return w->t_done - t0;
}

/* ---- STREAM-like read ---------------------------------------------------- */

__attribute__((target("avx512f")))
static uint64_t read_avx512(const char *p, size_t n)
{
	__m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
	__m512i a4 = a0, a5 = a0, a6 = a0, a7 = a0;

	for (size_t i = 0; i + 512 <= n; i += 512) {
		const char *q = p + i;

		a0 = _mm512_xor_si512(a0, _mm512_load_si512(q));
		a1 = _mm512_xor_si512(a1, _mm512_load_si512(q + 64));
		a2 = _mm512_xor_si512(a2, _mm512_load_si512(q + 128));
		a3 = _mm512_xor_si512(a3, _mm512_load_si512(q + 192));
		a4 = _mm512_xor_si512(a4, _mm512_load_si512(q + 256));
		a5 = _mm512_xor_si512(a5, _mm512_load_si512(q + 320));
		a6 = _mm512_xor_si512(a6, _mm512_load_si512(q + 384));
		a7 = _mm512_xor_si512(a7, _mm512_load_si512(q + 448));
	}
	a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1),
			      _mm512_xor_si512(a2, a3));
	a4 = _mm512_xor_si512(_mm512_xor_si512(a4, a5),
			      _mm512_xor_si512(a6, a7));
	uint64_t r[8];

	_mm512_storeu_si512(r, _mm512_xor_si512(a0, a4));
	return r[0] ^ r[1] ^ r[2] ^ r[3] ^ r[4] ^ r[5] ^ r[6] ^ r[7];
}

__attribute__((target("avx2")))
static uint64_t read_avx2(const char *p, size_t n)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	__m256i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
	uint64_t r[4];

	for (size_t i = 0; i + 256 <= n; i += 256) {
		const char *q = p + i;

		a0 = _mm256_xor_si256(a0, _mm256_load_si256((const void *)q));
		a1 = _mm256_xor_si256(a1, _mm256_load_si256((const void *)(q + 32)));
		a2 = _mm256_xor_si256(a2, _mm256_load_si256((const void *)(q + 64)));
		a3 = _mm256_xor_si256(a3, _mm256_load_si256((const void *)(q + 96)));
		a4 = _mm256_xor_si256(a4, _mm256_load_si256((const void *)(q + 128)));
		a5 = _mm256_xor_si256(a5, _mm256_load_si256((const void *)(q + 160)));
		a6 = _mm256_xor_si256(a6, _mm256_load_si256((const void *)(q + 192)));
		a7 = _mm256_xor_si256(a7, _mm256_load_si256((const void *)(q + 224)));
	}
	a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1),
			      _mm256_xor_si256(a2, a3));
	a4 = _mm256_xor_si256(_mm256_xor_si256(a4, a5),
			      _mm256_xor_si256(a6, a7));
	_mm256_storeu_si256((__m256i *)r, _mm256_xor_si256(a0, a4));
	return r[0] ^ r[1] ^ r[2] ^ r[3];
}

static uint64_t read_scalar(const char *p, size_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	uint64_t a = 0, b = 0, c = 0, d = 0;

	for (size_t i = 0; i + 4 <= n / 8; i += 4) {
		a ^= q[i];
		b ^= q[i + 1];
		c ^= q[i + 2];
		d ^= q[i + 3];
	}
	return a ^ b ^ c ^ d;
}

struct sthread {
	const char *p;
	size_t n;
	int isa;
	pthread_barrier_t *bar;
	uint64_t sink;
	double t_begin, t_end;	/* measured by the thread itself */
};

static void *stream_thread(void *arg)
{
	struct sthread *t = arg;

	pthread_barrier_wait(t->bar);
	t->t_begin = now_s();
	if (t->isa == CSD_SIMD_AVX512)
		t->sink = read_avx512(t->p, t->n);
	else if (t->isa == CSD_SIMD_AVX2)
		t->sink = read_avx2(t->p, t->n);
	else
		t->sink = read_scalar(t->p, t->n);
	t->t_end = now_s();
	return NULL;
}

/* Read @n bytes of @buf with @threads threads; returns seconds or -1. */
static double run_stream(const char *buf, size_t n, unsigned int threads,
			 int isa, uint64_t *sink)
{
	struct sthread *t = calloc(threads, sizeof(*t));
	pthread_t *tid = calloc(threads, sizeof(*tid));
	pthread_barrier_t bar;
	size_t per = n / threads / 4096 * 4096;
	unsigned int started = 0;
	double t0, t1 = -1;

	if (!t || !tid || pthread_barrier_init(&bar, NULL, threads + 1))
		goto out;
	for (; started < threads; started++) {
		t[started].p = buf + per * started;
		t[started].n = started + 1 == threads ?
			       n - per * started : per;
		t[started].isa = isa;
		t[started].bar = &bar;
		if (pthread_create(&tid[started], NULL, stream_thread,
				   &t[started]))
			break;
	}
	if (started < threads) {
		/* cannot start all: release the barrier never reached */
		fprintf(stderr, "csd-bench: pthread_create failed\n");
		exit(1);
	}
	pthread_barrier_wait(&bar);
	/*
	 * From the first thread's start to the last one's end, as seen by the
	 * threads: this thread may be scheduled out right after the barrier.
	 */
	for (unsigned int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		*sink ^= t[i].sink;
	}
	t0 = t[0].t_begin;
	t1 = t[0].t_end;
	for (unsigned int i = 1; i < threads; i++) {
		if (t[i].t_begin < t0)
			t0 = t[i].t_begin;
		if (t[i].t_end > t1)
			t1 = t[i].t_end;
	}
	t1 -= t0;
	pthread_barrier_destroy(&bar);
out:
	free(t);
	free(tid);
	return t1;
}

/* ---- compute roof: f32 FMA peak of the same threads --------------------- */

/*
 * Decode attention does group = q_heads / kv_heads f32 FMAs per K element
 * (one dot per query head of the group) and as many per V element (the
 * weighted sum), i.e. group / dtype-size FMAs per KV byte, plus conversions
 * and softmax on top.  The FMA peak of the threads therefore bounds the KV
 * bytes/s any f32-arithmetic kernel can reach, independently of memory:
 * roof = fma_per_s * dtype-size / group.  Twelve independent accumulator
 * chains hide the FMA latency (4 cycles x 2 pipes on Zen 4 needs >= 8).
 */
#define FMA_CHAINS	12
#define FMA_ITERS	(1u << 22)

/* Twelve named accumulators (an array would be kept in memory). */
#define FMA12(F, m, c)							\
	do {								\
		a0 = F(a0, m, c); a1 = F(a1, m, c); a2 = F(a2, m, c);	\
		a3 = F(a3, m, c); a4 = F(a4, m, c); a5 = F(a5, m, c);	\
		a6 = F(a6, m, c); a7 = F(a7, m, c); a8 = F(a8, m, c);	\
		a9 = F(a9, m, c); a10 = F(a10, m, c); a11 = F(a11, m, c); \
	} while (0)

/*
 * The zmm peak loop: FMA_ITERS rounds of F(a, m, c) over the twelve
 * chains, folded into *sink so that the compiler keeps them.
 */
#define PEAK512(F, m, c, sink)						\
	do {								\
		__m512 a0 = _mm512_set1_ps(0.f), a1 = _mm512_set1_ps(1.f); \
		__m512 a2 = _mm512_set1_ps(2.f), a3 = _mm512_set1_ps(3.f); \
		__m512 a4 = _mm512_set1_ps(4.f), a5 = _mm512_set1_ps(5.f); \
		__m512 a6 = _mm512_set1_ps(6.f), a7 = _mm512_set1_ps(7.f); \
		__m512 a8 = _mm512_set1_ps(8.f), a9 = _mm512_set1_ps(9.f); \
		__m512 a10 = _mm512_set1_ps(10.f);			\
		__m512 a11 = _mm512_set1_ps(11.f);			\
		float r_[16];						\
									\
		for (uint32_t i_ = 0; i_ < FMA_ITERS; i_++)		\
			FMA12(F, m, c);					\
		a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1),	\
						 _mm512_add_ps(a2, a3)), \
				   _mm512_add_ps(_mm512_add_ps(a4, a5),	\
						 _mm512_add_ps(a6, a7))); \
		a0 = _mm512_add_ps(a0, _mm512_add_ps(_mm512_add_ps(a8, a9), \
						     _mm512_add_ps(a10, a11))); \
		_mm512_storeu_ps(r_, a0);				\
		*(sink) ^= (uint64_t)r_[3];				\
	} while (0)

__attribute__((target("avx512f")))
static double fma_avx512(uint64_t *sink)
{
	const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);

	PEAK512(_mm512_fmadd_ps, m, c, sink);
	return (double)FMA_ITERS * FMA_CHAINS * 16;
}

__attribute__((target("avx2,fma")))
static double fma_avx2(uint64_t *sink)
{
	const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
	__m256 a0 = _mm256_set1_ps(0.f), a1 = _mm256_set1_ps(1.f);
	__m256 a2 = _mm256_set1_ps(2.f), a3 = _mm256_set1_ps(3.f);
	__m256 a4 = _mm256_set1_ps(4.f), a5 = _mm256_set1_ps(5.f);
	__m256 a6 = _mm256_set1_ps(6.f), a7 = _mm256_set1_ps(7.f);
	__m256 a8 = _mm256_set1_ps(8.f), a9 = _mm256_set1_ps(9.f);
	__m256 a10 = _mm256_set1_ps(10.f), a11 = _mm256_set1_ps(11.f);
	float r[8];

	for (uint32_t i = 0; i < FMA_ITERS; i++)
		FMA12(_mm256_fmadd_ps, m, c);
	a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
			   _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
	a0 = _mm256_add_ps(a0, _mm256_add_ps(_mm256_add_ps(a8, a9),
					     _mm256_add_ps(a10, a11)));
	_mm256_storeu_ps(r, a0);
	*sink ^= (uint64_t)r[3];
	return (double)FMA_ITERS * FMA_CHAINS * 8;
}

#ifndef CSD_NO_AVX512BF16
/*
 * The bf16 kernel's multiply-adds: vdpbf16ps does 32 per instruction
 * (pairs of bf16 products into 16 f32 lanes); its peak, in multiply-adds
 * per second, gives that kernel's roof as the FMA peak does for the f32
 * kernels.
 */
__attribute__((target("avx512f,avx512bf16")))
static double dp_avx512bf16(uint64_t *sink)
{
	const __m512bh m = (__m512bh)_mm512_set1_epi16(0x3f80);	/* 1.0 */
	const __m512bh c = (__m512bh)_mm512_set1_epi16(0x3380);	/* 6e-8 */

	PEAK512(_mm512_dpbf16_ps, m, c, sink);
	return (double)FMA_ITERS * FMA_CHAINS * 32;
}
#endif

struct fthread {
	int isa;
	pthread_barrier_t *bar;
	uint64_t sink;
	double fmas, t_begin, t_end;
};

static void *fma_thread(void *arg)
{
	struct fthread *t = arg;

	pthread_barrier_wait(t->bar);
	t->t_begin = now_s();
	switch (t->isa) {
#ifndef CSD_NO_AVX512BF16
	case CSD_SIMD_AVX512BF16:
		t->fmas = dp_avx512bf16(&t->sink);
		break;
#endif
	case CSD_SIMD_AVX512:
		t->fmas = fma_avx512(&t->sink);
		break;
	default:
		t->fmas = fma_avx2(&t->sink);
		break;
	}
	t->t_end = now_s();
	return NULL;
}

/*
 * Multiply-adds per second of @threads threads running at once (f32 FMA
 * for avx2/avx512, bf16 pair products for avx512bf16); 0 on failure.
 */
static double run_fma(unsigned int threads, int isa, uint64_t *sink)
{
	struct fthread *t = calloc(threads, sizeof(*t));
	pthread_t *tid = calloc(threads, sizeof(*tid));
	pthread_barrier_t bar;
	unsigned int started = 0;
	double t0, t1, fmas = 0, rate = 0;

	if (isa == CSD_SIMD_SCALAR || !t || !tid ||
	    pthread_barrier_init(&bar, NULL, threads + 1))
		goto out;
	for (; started < threads; started++) {
		t[started].isa = isa;
		t[started].bar = &bar;
		if (pthread_create(&tid[started], NULL, fma_thread,
				   &t[started])) {
			fprintf(stderr, "csd-bench: pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&bar);
	for (unsigned int i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		*sink ^= t[i].sink;
		fmas += t[i].fmas;
	}
	t0 = t[0].t_begin;
	t1 = t[0].t_end;
	for (unsigned int i = 1; i < threads; i++) {
		if (t[i].t_begin < t0)
			t0 = t[i].t_begin;
		if (t[i].t_end > t1)
			t1 = t[i].t_end;
	}
	if (t1 > t0)
		rate = fmas / (t1 - t0);
	pthread_barrier_destroy(&bar);
out:
	free(t);
	free(tid);
	return rate;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: csd-bench attn [options]\n"
"  --tokens N       tokens per sequence (16384)\n"
"  --batch B        sequences (8)\n"
"  --q-heads H      query heads (32)\n"
"  --kv-heads H     kv heads (8)\n"
"  --head-dim D     head dim, multiple of 16, 16..256 (128)\n"
"  --dtype T        f16|bf16|f32 (f16)\n"
"  --threads T      worker threads (online CPUs)\n"
"  --iters N        measured iterations per kernel (5)\n"
"  --kernels LIST   comma separated: scalar,avx2,avx512 (all supported)\n"
"  --extent PAGES   KV layout: a stream's first extent, PAGES consecutive\n"
"                   4 KiB pages; extents double up to --extent-max and are\n"
"                   shuffled (16, as the drive)\n"
"  --extent-max PAGES  largest extent (256 = 1 MiB, as the drive; PAGES\n"
"                   <= --extent: fixed extents; 1 with --extent 1: single\n"
"                   scattered pages)\n"
"  --json           one JSON object on stdout\n"
"KV bytes/s of each kernel are measured interleaved with a SIMD read of the\n"
"same bytes (same threads); ratio = kernel / stream (best of N).  The f32 FMA\n"
"peak of the same threads gives the compute roof (avx512bf16: the\n"
"vdpbf16ps multiply-add peak): decode attention needs\n"
"(q_heads / kv_heads) / dtype-size FMAs per KV byte.\n");
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *v)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(s, &end, 0);
	if (errno || end == s || *end || x < min || x > max)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int parse_kernels(char *s, struct opts *o)
{
	char *save = NULL;

	o->nkernels = 0;
	for (char *tok = strtok_r(s, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int k;

		if (attn_simd_parse(tok, &k) < 0 || k == CSD_SIMD_AUTO) {
			fprintf(stderr, "csd-bench attn: unknown kernel '%s'\n",
				tok);
			return -1;
		}
		if (!attn_simd_supported(k)) {
			fprintf(stderr,
				"csd-bench attn: kernel %s not supported by this CPU\n",
				tok);
			return -1;
		}
		for (int i = 0; i < o->nkernels; i++)
			if (o->kernels[i] == k)
				k = -1;
		if (k >= 0 && o->nkernels < CSD_SIMD_COUNT)
			o->kernels[o->nkernels++] = k;
	}
	return o->nkernels ? 0 : -1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "tokens", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'b' },
		{ "q-heads", required_argument, NULL, 'q' },
		{ "kv-heads", required_argument, NULL, 'k' },
		{ "head-dim", required_argument, NULL, 'd' },
		{ "dtype", required_argument, NULL, 'T' },
		{ "threads", required_argument, NULL, 'j' },
		{ "iters", required_argument, NULL, 'i' },
		{ "kernels", required_argument, NULL, 'K' },
		{ "extent", required_argument, NULL, 'E' },
		{ "extent-max", required_argument, NULL, 'X' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t v;
	int c;

	*o = (struct opts){
		.tokens = 16384, .batch = 8, .q_heads = 32, .kv_heads = 8,
		.head_dim = 128, .dtype = CSD_DTYPE_F16,
		.threads = ncpu > 0 ? (unsigned int)ncpu : 1, .iters = 5,
		.extent = CSDFW_EXTENT_DEFAULT,
		.extent_max = CSDFW_EXTENT_MAX_BYTES / PAGE_SIZE_KV,
	};
	for (int k = 0; k < CSD_SIMD_COUNT; k++)
		if (attn_simd_supported(k))
			o->kernels[o->nkernels++] = k;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_u32(optarg, 1, 1u << 24, &o->tokens))
				goto bad;
			break;
		case 'b':
			if (parse_u32(optarg, 1, 4096, &o->batch))
				goto bad;
			break;
		case 'q':
			if (parse_u32(optarg, 1, 1024, &o->q_heads))
				goto bad;
			break;
		case 'k':
			if (parse_u32(optarg, 1, 256, &o->kv_heads))
				goto bad;
			break;
		case 'd':
			if (parse_u32(optarg, 16, 256, &o->head_dim) ||
			    o->head_dim % 16)
				goto bad;
			break;
		case 'T':
			if (!strcmp(optarg, "f16") || !strcmp(optarg, "fp16"))
				o->dtype = CSD_DTYPE_F16;
			else if (!strcmp(optarg, "bf16"))
				o->dtype = CSD_DTYPE_BF16;
			else if (!strcmp(optarg, "f32") || !strcmp(optarg, "fp32"))
				o->dtype = CSD_DTYPE_F32;
			else
				goto bad;
			break;
		case 'j':
			if (parse_u32(optarg, 1, 1024, &v))
				goto bad;
			o->threads = v;
			break;
		case 'i':
			if (parse_u32(optarg, 1, MAX_ITERS, &v))
				goto bad;
			o->iters = v;
			break;
		case 'K':
			if (parse_kernels(optarg, o))
				return -1;
			break;
		case 'E':
			if (parse_u32(optarg, 1, 1u << 16, &o->extent))
				goto bad;
			break;
		case 'X':
			if (parse_u32(optarg, 1, 1u << 20, &o->extent_max))
				goto bad;
			break;
		case 'J':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "csd-bench attn: unexpected argument '%s'\n",
			argv[optind]);
		return -1;
	}
	if (o->extent_max < o->extent)
		o->extent_max = o->extent;	/* as the drive: no growth */
	if (o->q_heads % o->kv_heads || o->q_heads / o->kv_heads > 64) {
		fprintf(stderr,
			"csd-bench attn: q-heads must be a multiple of kv-heads (ratio <= 64)\n");
		return -1;
	}
	return 0;
bad:
	fprintf(stderr, "csd-bench attn: bad value '%s'\n", optarg);
	usage(stderr);
	return -1;
}

static const char *dtype_name(int dt)
{
	return dt == CSD_DTYPE_F16 ? "f16" : dt == CSD_DTYPE_BF16 ? "bf16" : "f32";
}

/*
 * The extents of a stream of @pps pages written by one bulk append, as the
 * drive sizes them (blocks of @ppb pages): returns their number; @start
 * (if not NULL) gets their first pages and, at [count], the end of the
 * last; *@pages (if not NULL) the pages they cover (whole extents).
 */
static size_t stream_extents(const struct opts *o, uint32_t ppb, uint32_t pps,
			     uint32_t *start, size_t *pages)
{
	size_t n = 0, pg = 0;

	for (uint64_t k = 0; pg < pps; k++, n++) {
		if (start)
			start[n] = (uint32_t)pg;
		k = kv_extent_level(o->extent, o->extent_max, ppb, k,
				    pps - pg);
		pg += kv_extent_size(o->extent, o->extent_max, ppb, k);
	}
	if (start)
		start[n] = (uint32_t)pg;
	if (pages)
		*pages = pg;
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned int n)
{
	double tmp[MAX_ITERS];

	memcpy(tmp, v, n * sizeof(double));
	qsort(tmp, n, sizeof(double), cmp_double);
	return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

static void fill(struct kvbuf *k, int dtype)
{
	uint64_t s = 0x1234567887654321ull;
	uint64_t *p = (uint64_t *)k->buf;

	for (size_t i = 0; i < k->size / 8; i++) {
		uint64_t r = rng_next(&s), v;

		if (dtype == CSD_DTYPE_F32) {
			/* two floats, |x| in [0.25, 2) */
			v = 0;
			for (int j = 0; j < 2; j++) {
				uint64_t x = (r >> (32 * j)) & 0x807fffffu;

				x |= (uint64_t)(125 + (r >> (23 + 32 * j)) % 3) << 23;
				v |= (x & 0xffffffffu) << (32 * j);
			}
		} else if (dtype == CSD_DTYPE_F16) {
			v = r & 0x83ff83ff83ff83ffull;
			for (int j = 0; j < 4; j++)
				v |= (uint64_t)(13 + ((r >> (16 * j + 10)) & 1) +
						((r >> (16 * j + 11)) & 1)) <<
				     (16 * j + 10);
		} else {
			v = r & 0x807f807f807f807full;
			for (int j = 0; j < 4; j++)
				v |= (uint64_t)(125 + ((r >> (16 * j + 7)) & 1) +
						((r >> (16 * j + 8)) & 1)) <<
				     (16 * j + 7);
		}
		p[i] = v;
	}
}

int bench_attn_main(int argc, char **argv)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			    false, 0 };
	struct kres *res = NULL;
	struct kvbuf kv = { 0 };
	struct opts o;
	struct attn_job job;
	uint32_t *seqs = NULL, *lo = NULL, *hi = NULL;
	float *q = NULL, *out = NULL, *lse = NULL, *ref = NULL, *ref_lse = NULL;
	size_t row, npages, nout, nlse, next, ext_per_stream, res_pages;
	uint32_t *ext = NULL, *ext_start = NULL, *ext_base = NULL;
	struct csdfw_config dcfg;
	uint64_t sink = 0, s = 42;
	double kv_bytes, scalar_best = 0, fma_rate = 0, dp_rate = 0, roof;
	int stream_isa, rc = 1, best = -1;

	rc = parse_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	rc = 1;
	row = (size_t)o.head_dim * csd_dtype_size(o.dtype);
	if (row > PAGE_SIZE_KV) {
		fprintf(stderr, "csd-bench attn: row larger than a page\n");
		return 2;
	}
	kv.tpp = (uint32_t)(PAGE_SIZE_KV / row);
	kv.pps = (o.tokens + kv.tpp - 1) / kv.tpp;
	kv.kv_heads = o.kv_heads;
	npages = (size_t)o.batch * o.kv_heads * 2 * kv.pps;
	/* a stream's extents as the drive sizes them for one bulk append of
	 * the stream (a prefill; blocks of its default size); whole extents:
	 * the unused tail of the last one stays */
	csdfw_config_default(&dcfg);
	if (dcfg.pages_per_block % o.extent &&
	    o.extent % dcfg.pages_per_block) {
		fprintf(stderr, "csd-bench attn: --extent must divide the "
			"drive's block (%u pages) or be a multiple of it\n",
			dcfg.pages_per_block);
		return 2;
	}
	o.extent_max = kv_extent_max_norm(o.extent, o.extent_max,
					  dcfg.pages_per_block);
	ext_per_stream = stream_extents(&o, dcfg.pages_per_block, kv.pps,
					NULL, &res_pages);
	next = (size_t)o.batch * o.kv_heads * 2 * ext_per_stream;
	res_pages *= (size_t)o.batch * o.kv_heads * 2;
	kv.size = res_pages * PAGE_SIZE_KV;
	if (res_pages > UINT32_MAX || !next) {
		fprintf(stderr, "csd-bench attn: KV too large\n");
		return 2;
	}
	kv_bytes = (double)o.batch * o.kv_heads * o.tokens * row * 2;
	nout = (size_t)o.batch * o.q_heads * o.head_dim;
	nlse = (size_t)o.batch * o.q_heads;
	stream_isa = attn_simd_supported(CSD_SIMD_AVX512) ? CSD_SIMD_AVX512 :
		     attn_simd_supported(CSD_SIMD_AVX2) ? CSD_SIMD_AVX2 :
		     CSD_SIMD_SCALAR;

	kv.buf = mmap(NULL, kv.size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (kv.buf == MAP_FAILED) {
		kv.buf = NULL;
		fprintf(stderr, "csd-bench attn: cannot map %zu bytes\n",
			kv.size);
		goto out;
	}
	madvise(kv.buf, kv.size, MADV_HUGEPAGE);
	kv.slot = malloc(npages * sizeof(*kv.slot));
	ext = malloc(next * sizeof(*ext));
	ext_start = malloc((ext_per_stream + 1) * sizeof(*ext_start));
	ext_base = calloc(next, sizeof(*ext_base));
	seqs = malloc(o.batch * sizeof(*seqs));
	lo = malloc(o.batch * sizeof(*lo));
	hi = malloc(o.batch * sizeof(*hi));
	q = malloc(nout * sizeof(float));
	out = malloc(nout * sizeof(float));
	ref = malloc(nout * sizeof(float));
	lse = malloc(nlse * sizeof(float));
	ref_lse = malloc(nlse * sizeof(float));
	res = calloc(CSD_SIMD_COUNT, sizeof(*res));
	if (!kv.slot || !ext || !ext_start || !ext_base || !seqs || !lo ||
	    !hi || !q || !out || !ref || !lse || !ref_lse || !res) {
		fprintf(stderr, "csd-bench attn: out of memory\n");
		goto out;
	}
	/* shuffled extent placement: extent e of stream st at slot ext[...] */
	for (size_t i = 0; i < next; i++)
		ext[i] = (uint32_t)i;
	for (size_t i = next; i > 1; i--) {
		size_t j = rng_next(&s) % i;
		uint32_t x = ext[i - 1];

		ext[i - 1] = ext[j];
		ext[j] = x;
	}
	/* extent k of a stream: its pages from ext_start[k]; extent e (of
	 * all streams) laid out at ext_base[e], in shuffled order */
	(void)stream_extents(&o, dcfg.pages_per_block, kv.pps, ext_start,
			     NULL);
	{
		uint32_t base = 0;

		for (size_t i = 0; i < next; i++) {
			size_t k = ext[i] % ext_per_stream;

			ext_base[ext[i]] = base;
			base += ext_start[k + 1] - ext_start[k];
		}
	}
	for (size_t st = 0; st < npages / kv.pps; st++)
		for (size_t k = 0; k < ext_per_stream; k++)
			for (uint32_t pg = ext_start[k];
			     pg < ext_start[k + 1] && pg < kv.pps; pg++)
				kv.slot[st * kv.pps + pg] =
					ext_base[st * ext_per_stream + k] +
					(pg - ext_start[k]);
	fill(&kv, o.dtype);
	for (uint32_t i = 0; i < o.batch; i++) {
		seqs[i] = i;
		lo[i] = 0;
		hi[i] = o.tokens;
	}
	for (size_t i = 0; i < nout; i++)
		q[i] = (float)((double)(rng_next(&s) >> 11) * 0x1p-52 - 1.0);

	job = (struct attn_job){
		.dtype = o.dtype, .head_dim = o.head_dim, .q_heads = o.q_heads,
		.kv_heads = o.kv_heads, .tpp = kv.tpp,
		.scale = 1.0f / sqrtf((float)o.head_dim), .nseq = o.batch,
		.seqs = seqs, .lo = lo, .hi = hi, .q = q, .lse = lse,
		.page = bench_page, .cookie = &kv, .done = job_done,
	};

	/* reference outputs: the scalar kernel */
	{
		struct attn_engine *e;

		if (attn_engine_create(o.threads, CSD_SIMD_SCALAR, &e)) {
			fprintf(stderr, "csd-bench attn: engine create failed\n");
			goto out;
		}
		job.out = ref;
		job.lse = ref_lse;
		if (run_engine(e, &job, &w) < 0) {
			attn_engine_destroy(e);
			goto out;
		}
		attn_engine_destroy(e);
		job.out = out;
		job.lse = lse;
	}

	if (!o.json)
		printf("csd-bench attn: dtype %s, %u tokens x %u seqs, heads %u/%u, head_dim %u, "
		       "tpp %u, extent %u..%u pages, threads %u, KV %.1f MiB, %u iters, stream %s\n",
		       dtype_name(o.dtype), o.tokens, o.batch, o.q_heads,
		       o.kv_heads, o.head_dim, kv.tpp, o.extent, o.extent_max,
		       o.threads, kv_bytes / 1048576.0, o.iters,
		       attn_simd_name(stream_isa));

	for (int i = 0; i < 3; i++) {
		double f = run_fma(o.threads, stream_isa, &sink);

		if (f > fma_rate)
			fma_rate = f;
	}
	/* KV bytes/s the FMA peak allows: group / dtype-size FMAs per byte */
	roof = fma_rate * csd_dtype_size(o.dtype) /
	       ((double)o.q_heads / o.kv_heads);
	/* the bf16 kernel (fp16/bf16 KV): its own multiply-add peak */
	for (int ki = 0; ki < o.nkernels; ki++)
		if (o.kernels[ki] == CSD_SIMD_AVX512BF16 &&
		    o.dtype != CSD_DTYPE_F32)
			for (int i = 0; i < 3; i++) {
				double f = run_fma(o.threads,
						   CSD_SIMD_AVX512BF16, &sink);

				if (f > dp_rate)
					dp_rate = f;
			}

	for (int ki = 0; ki < o.nkernels; ki++) {
		struct kres *r = &res[ki];
		struct attn_engine *e;
		double t;

		r->simd = o.kernels[ki];
		r->roof = (r->simd == CSD_SIMD_AVX512BF16 && dp_rate > 0 ?
			   dp_rate / fma_rate : 1.0) * roof * 1e-9;
		if (attn_engine_create(o.threads, r->simd, &e)) {
			fprintf(stderr, "csd-bench attn: engine create failed\n");
			goto out;
		}
		/* warm-up (also the verified run) */
		if (run_engine(e, &job, &w) < 0)
			goto fail_engine;
		for (size_t i = 0; i < nout; i++) {
			double d = fabs((double)out[i] - ref[i]);

			if (!(d <= r->max_err))	/* NaN counts */
				r->max_err = isnan(d) ? INFINITY : d;
		}
		for (size_t i = 0; i < nlse; i++) {
			double d = fabs((double)lse[i] - ref_lse[i]);

			if (!(d <= r->max_lse_err))
				r->max_lse_err = isnan(d) ? INFINITY : d;
		}
		r->ok = r->max_err <= 1e-3 && r->max_lse_err <= 1e-3;
		for (unsigned int it = 0; it < o.iters; it++) {
			t = run_engine(e, &job, &w);
			if (t <= 0)
				goto fail_engine;
			r->gbps[it] = kv_bytes / t * 1e-9;
			t = run_stream(kv.buf, (size_t)kv_bytes, o.threads,
				       stream_isa, &sink);
			if (t <= 0)
				goto fail_engine;
			r->stream[it] = kv_bytes / t * 1e-9;
		}
		attn_engine_destroy(e);
		r->median = median(r->gbps, o.iters);
		r->smedian = median(r->stream, o.iters);
		for (unsigned int it = 0; it < o.iters; it++) {
			if (r->gbps[it] > r->best)
				r->best = r->gbps[it];
			if (r->stream[it] > r->sbest)
				r->sbest = r->stream[it];
		}
		if (r->simd == CSD_SIMD_SCALAR)
			scalar_best = r->best;
		if (best < 0 || r->best > res[best].best)
			best = ki;
		continue;
fail_engine:
		attn_engine_destroy(e);
		fprintf(stderr, "csd-bench attn: engine run failed\n");
		goto out;
	}

	if (o.json) {
		printf("{\"bench\":\"attn\",\"dtype\":\"%s\",\"tokens\":%u,\"batch\":%u,"
		       "\"q_heads\":%u,\"kv_heads\":%u,\"head_dim\":%u,\"tpp\":%u,"
		       "\"threads\":%u,\"iters\":%u,\"extent\":%u,"
		       "\"extent_max\":%u,"
		       "\"kv_bytes\":%.0f,\"stream_isa\":\"%s\",\"kernels\":[",
		       dtype_name(o.dtype), o.tokens, o.batch, o.q_heads,
		       o.kv_heads, o.head_dim, kv.tpp, o.threads, o.iters,
		       o.extent, o.extent_max, kv_bytes,
		       attn_simd_name(stream_isa));
		for (int ki = 0; ki < o.nkernels; ki++) {
			const struct kres *r = &res[ki];

			printf("%s{\"name\":\"%s\",\"gbps\":%.3f,\"gbps_median\":%.3f,"
			       "\"stream_gbps\":%.3f,\"stream_gbps_median\":%.3f,"
			       "\"ratio\":%.4f,\"ratio_median\":%.4f,"
			       "\"speedup_vs_scalar\":%.3f,\"max_err\":%.3g,"
			       "\"max_lse_err\":%.3g,\"compute_roof_gbps\":%.3f,"
			       "\"verified\":%s}",
			       ki ? "," : "", attn_simd_name(r->simd), r->best,
			       r->median, r->sbest, r->smedian,
			       r->best / r->sbest, r->median / r->smedian,
			       scalar_best > 0 ? r->best / scalar_best : 0.0,
			       r->max_err, r->max_lse_err, r->roof,
			       r->ok ? "true" : "false");
		}
		printf("],\"best\":\"%s\",\"ratio\":%.4f,\"gbps\":%.3f,"
		       "\"stream_gbps\":%.3f,\"fma_gflops\":%.2f,"
		       "\"bf16_dp_gmacs\":%.2f,"
		       "\"compute_roof_gbps\":%.3f,\"roof_over_stream\":%.4f,"
		       "\"ratio_vs_roofline\":%.4f}\n",
		       attn_simd_name(res[best].simd),
		       res[best].best / res[best].sbest, res[best].best,
		       res[best].sbest, fma_rate * 1e-9, dp_rate * 1e-9,
		       res[best].roof, res[best].roof / res[best].sbest,
		       res[best].best / fmin(res[best].sbest, res[best].roof));
	} else {
		printf("%-10s %9s %9s %10s %10s %7s %8s %10s %10s\n", "kernel",
		       "GB/s", "median", "stream", "s.median", "ratio",
		       "x scalar", "max|err|", "max|dlse|");
		for (int ki = 0; ki < o.nkernels; ki++) {
			const struct kres *r = &res[ki];
			char sp[16] = "-";

			if (scalar_best > 0)
				snprintf(sp, sizeof(sp), "%.2f",
					 r->best / scalar_best);
			printf("%-10s %9.2f %9.2f %10.2f %10.2f %7.3f %8s %10.2e %10.2e%s\n",
			       attn_simd_name(r->simd), r->best, r->median,
			       r->sbest, r->smedian, r->best / r->sbest, sp,
			       r->max_err, r->max_lse_err,
			       r->ok ? "" : "  MISMATCH");
		}
		printf("best: %s, ratio %.3f of STREAM read (%.2f / %.2f GB/s)\n",
		       attn_simd_name(res[best].simd),
		       res[best].best / res[best].sbest, res[best].best,
		       res[best].sbest);
		printf("compute roof: %.1f G f32 FMA/s on %u threads at %.2g FMA per KV byte"
		       " -> %.2f GB/s = %.3f of STREAM;\n",
		       fma_rate * 1e-9, o.threads,
		       (double)o.q_heads / o.kv_heads / csd_dtype_size(o.dtype),
		       roof * 1e-9, roof * 1e-9 / res[best].sbest);
		if (dp_rate > 0)
			printf("bf16 products: %.1f G multiply-adds/s -> %.2f GB/s"
			       " = %.3f of STREAM (avx512bf16's roof);\n",
			       dp_rate * 1e-9, dp_rate / fma_rate * roof * 1e-9,
			       dp_rate / fma_rate * roof * 1e-9 / res[best].sbest);
		printf("best kernel = %.3f of its roofline min(STREAM, compute roof)\n",
		       res[best].best / fmin(res[best].sbest, res[best].roof));
	}
	rc = 0;
	for (int ki = 0; ki < o.nkernels; ki++)
		if (!res[ki].ok)
			rc = 1;
	if (sink == 42)		/* keep the stream reads observable */
		fprintf(stderr, " ");
out:
	if (kv.buf)
		munmap(kv.buf, kv.size);
	free(kv.slot);
	free(ext);
	free(ext_start);
	free(ext_base);
	free(seqs);
	free(lo);
	free(hi);
	free(q);
	free(out);
	free(ref);
	free(lse);
	free(ref_lse);
	free(res);
	return rc;
}
