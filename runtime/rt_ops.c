/* SPDX-License-Identifier: MIT */
/*
 * rt_ops.c - runtime compute kernels: types, conversions, thread pool,
 * matmul dispatch, norms, RoPE, activations and sampling.
 */
#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include "rt_ops.h"

/* ---- types ---- */

int rt_type_supported(uint32_t type)
{
	return type == RT_TYPE_F32 || type == RT_TYPE_F16 ||
	       type == RT_TYPE_BF16 || type == RT_TYPE_Q8_0;
}

const char *rt_type_name(uint32_t type)
{
	switch (type) {
	case RT_TYPE_F32: return "f32";
	case RT_TYPE_F16: return "f16";
	case RT_TYPE_BF16: return "bf16";
	case RT_TYPE_Q8_0: return "q8_0";
	}
	return "?";
}

int rt_type_parse(const char *s, uint32_t *type)
{
	static const uint32_t all[] = { RT_TYPE_F32, RT_TYPE_F16,
					RT_TYPE_BF16, RT_TYPE_Q8_0 };
	size_t i;

	for (i = 0; s && i < sizeof(all) / sizeof(all[0]); i++)
		if (strcasecmp(s, rt_type_name(all[i])) == 0) {
			*type = all[i];
			return 0;
		}
	return -EINVAL;
}

uint32_t rt_type_block(uint32_t type)
{
	if (!rt_type_supported(type))
		return 0;
	return type == RT_TYPE_Q8_0 ? RT_QK8_0 : 1;
}

size_t rt_type_row_bytes(uint32_t type, uint64_t k)
{
	switch (type) {
	case RT_TYPE_F32:
		return (size_t)k * 4;
	case RT_TYPE_F16:
	case RT_TYPE_BF16:
		return (size_t)k * 2;
	case RT_TYPE_Q8_0:
		if (k % RT_QK8_0)
			return 0;
		return (size_t)(k / RT_QK8_0) * sizeof(struct rt_block_q8_0);
	}
	return 0;
}

/* ---- conversions ---- */

static inline uint32_t f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

float rt_fp16_to_fp32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;

	if (exp == 0x1f)
		return u2f(sign | 0x7f800000u | (man << 13));
	if (exp == 0) {
		/* zero or subnormal: man * 2^-24 */
		float v = (float)man * 5.9604644775390625e-8f;

		return sign ? -v : v;
	}
	return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t rt_fp32_to_fp16(float f)
{
	uint32_t x = f2u(f);
	uint32_t sign = (x >> 16) & 0x8000;
	uint32_t ax = x & 0x7fffffffu;
	int32_t e;
	uint32_t man, r;

	if (ax >= 0x7f800000u)			/* inf / nan */
		return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ?
						   0x200 : 0));
	if (ax >= 0x477ff000u)			/* rounds to >= 65520 */
		return (uint16_t)(sign | 0x7c00);
	e = (int32_t)(ax >> 23) - 127;
	if (e < -14) {				/* subnormal half */
		float v = u2f(ax) * 16777216.0f;	/* * 2^24 */

		r = (uint32_t)lrintf(v);	/* nearest even (default) */
		return (uint16_t)(sign | r);
	}
	man = ax & 0x7fffff;
	r = ((uint32_t)(e + 15) << 10) | (man >> 13);
	/* round to nearest even on the 13 dropped bits */
	if ((man & 0x1fff) > 0x1000 || ((man & 0x1fff) == 0x1000 && (r & 1)))
		r++;
	return (uint16_t)(sign | r);
}

float rt_bf16_to_fp32(uint16_t h)
{
	return u2f((uint32_t)h << 16);
}

uint16_t rt_fp32_to_bf16(float f)
{
	uint32_t x = f2u(f);

	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40);	/* quiet nan */
	return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

void rt_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n)
{
	size_t i;

	if (rt_simd_supported(RT_SIMD_AVX2)) {
		rt_f32_to_f16_avx2(x, y, n);
		return;
	}
	for (i = 0; i < n; i++)
		y[i] = rt_fp32_to_fp16(x[i]);
}

void rt_fp16_to_fp32_row(const uint16_t *x, float *y, size_t n)
{
	size_t i;

	if (rt_simd_supported(RT_SIMD_AVX2)) {
		rt_f16_to_f32_avx2(x, y, n);
		return;
	}
	for (i = 0; i < n; i++)
		y[i] = rt_fp16_to_fp32(x[i]);
}

void rt_quantize_q8_0_row(const float *x, struct rt_block_q8_0 *y, size_t k)
{
	size_t b, i;

	for (b = 0; b < k / RT_QK8_0; b++) {
		const float *xb = x + b * RT_QK8_0;
		float amax = 0.0f, d, id;

		for (i = 0; i < RT_QK8_0; i++)
			amax = fmaxf(amax, fabsf(xb[i]));
		d = amax / 127.0f;
		id = d ? 1.0f / d : 0.0f;
		y[b].d = rt_fp32_to_fp16(d);
		for (i = 0; i < RT_QK8_0; i++)
			y[b].qs[i] = (int8_t)roundf(xb[i] * id);
	}
}

int rt_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

uint64_t rt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rt_dequant_row(uint32_t type, const void *row, float *y, size_t k)
{
	size_t i;

	switch (type) {
	case RT_TYPE_F32:
		memcpy(y, row, k * sizeof(float));
		break;
	case RT_TYPE_F16:
		for (i = 0; i < k; i++)
			y[i] = rt_fp16_to_fp32(((const uint16_t *)row)[i]);
		break;
	case RT_TYPE_BF16:
		for (i = 0; i < k; i++)
			y[i] = rt_bf16_to_fp32(((const uint16_t *)row)[i]);
		break;
	case RT_TYPE_Q8_0: {
		const struct rt_block_q8_0 *b = row;

		for (size_t blk = 0; blk * RT_QK8_0 < k; blk++) {
			float d = rt_fp16_to_fp32(b[blk].d);
			size_t n = k - blk * RT_QK8_0;

			if (n > RT_QK8_0)
				n = RT_QK8_0;
			for (size_t j = 0; j < n; j++)
				y[blk * RT_QK8_0 + j] = d * (float)b[blk].qs[j];
		}
		break;
	}
	default:
		memset(y, 0, k * sizeof(float));
	}
}

/* ---- ISA selection ---- */

static int cpu_has_f16c(void)
{
	unsigned int a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	return (c & bit_F16C) != 0;
}

static int rt_simd_probe(void)
{
	int best = RT_SIMD_SCALAR;

	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    cpu_has_f16c())
		best = RT_SIMD_AVX2;
	if (best == RT_SIMD_AVX2 && __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512dq"))
		best = RT_SIMD_AVX512;
	return best;
}

static int rt_simd_best(void)
{
	static _Atomic int cached = -2;		/* cached CPU probe */
	int v = atomic_load(&cached);

	if (v == -2) {
		v = rt_simd_probe();
		atomic_store(&cached, v);
	}
	return v;
}

int rt_simd_supported(int simd)
{
	return simd >= RT_SIMD_SCALAR && simd <= rt_simd_best();
}

const char *rt_simd_name(int simd)
{
	switch (simd) {
	case RT_SIMD_SCALAR: return "scalar";
	case RT_SIMD_AVX2: return "avx2";
	case RT_SIMD_AVX512: return "avx512";
	case RT_SIMD_AUTO: return "auto";
	}
	return "?";
}

int rt_simd_detect(void)
{
	const char *env = getenv("CSD_SIMD");
	int best = rt_simd_best(), want = best;

	if (env && *env) {
		if (!strcmp(env, "scalar"))
			want = RT_SIMD_SCALAR;
		else if (!strcmp(env, "avx2"))
			want = RT_SIMD_AVX2;
		else if (!strcmp(env, "avx512"))
			want = RT_SIMD_AVX512;
	}
	return want < best ? want : best;
}

/* ---- thread pool ---- */

struct rt_worker {
	struct rt_pool *pool;
	pthread_t tid;
	uint32_t id;
	int started;
};

struct rt_pool {
	uint32_t nthreads;
	struct rt_worker *w;
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done;
	uint64_t gen;
	int quit;
	/* current job */
	rt_task_fn fn;
	void *arg;
	uint32_t ntasks;
	atomic_uint next;
	uint32_t active;		/* workers still in the job */
	/* per-worker matmul scratch */
	float **scratch;
	size_t scratch_floats;
};

static void pool_work(struct rt_pool *p, uint32_t worker)
{
	for (;;) {
		uint32_t t = atomic_fetch_add(&p->next, 1);

		if (t >= p->ntasks)
			break;
		p->fn(p->arg, t, worker);
	}
}

static void *pool_main(void *arg)
{
	struct rt_worker *w = arg;
	struct rt_pool *p = w->pool;
	uint64_t seen = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->quit && p->gen == seen)
			pthread_cond_wait(&p->cv_work, &p->lock);
		if (p->quit)
			break;
		seen = p->gen;
		pthread_mutex_unlock(&p->lock);
		pool_work(p, w->id);
		pthread_mutex_lock(&p->lock);
		if (--p->active == 0)
			pthread_cond_signal(&p->cv_done);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int rt_pool_create(uint32_t nthreads, struct rt_pool **pp)
{
	struct rt_pool *p;
	uint32_t i;

	*pp = NULL;
	if (!nthreads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nthreads = n > 0 ? (uint32_t)n : 1;
	}
	if (nthreads > 256)
		nthreads = 256;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nthreads = nthreads;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv_work, NULL);
	pthread_cond_init(&p->cv_done, NULL);
	p->w = calloc(nthreads, sizeof(*p->w));
	p->scratch = calloc(nthreads, sizeof(*p->scratch));
	if (!p->w || !p->scratch)
		goto err;
	for (i = 1; i < nthreads; i++) {
		p->w[i].pool = p;
		p->w[i].id = i;
		if (pthread_create(&p->w[i].tid, NULL, pool_main, &p->w[i]))
			goto err;
		p->w[i].started = 1;
	}
	*pp = p;
	return 0;
err:
	rt_pool_destroy(p);
	return -ENOMEM;
}

void rt_pool_destroy(struct rt_pool *p)
{
	uint32_t i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->quit = 1;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->lock);
	for (i = 1; p->w && i < p->nthreads; i++)
		if (p->w[i].started)
			pthread_join(p->w[i].tid, NULL);
	for (i = 0; p->scratch && i < p->nthreads; i++)
		free(p->scratch[i]);
	free(p->scratch);
	free(p->w);
	pthread_cond_destroy(&p->cv_work);
	pthread_cond_destroy(&p->cv_done);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

uint32_t rt_pool_threads(const struct rt_pool *p)
{
	return p ? p->nthreads : 1;
}

void rt_pool_run(struct rt_pool *p, rt_task_fn fn, void *arg, uint32_t ntasks)
{
	uint32_t t;

	if (!ntasks)
		return;
	if (!p || p->nthreads == 1 || ntasks == 1) {
		for (t = 0; t < ntasks; t++)
			fn(arg, t, 0);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->ntasks = ntasks;
	atomic_store(&p->next, 0);
	p->active = p->nthreads - 1;
	p->gen++;
	pthread_cond_broadcast(&p->cv_work);
	pthread_mutex_unlock(&p->lock);
	pool_work(p, 0);
	pthread_mutex_lock(&p->lock);
	while (p->active)
		pthread_cond_wait(&p->cv_done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

static int pool_reserve(struct rt_pool *p, size_t floats)
{
	uint32_t i;

	if (floats <= p->scratch_floats)
		return 0;
	for (i = 0; i < p->nthreads; i++) {
		float *s;

		free(p->scratch[i]);
		s = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
		p->scratch[i] = s;
		if (!s) {
			p->scratch_floats = 0;
			return -ENOMEM;
		}
	}
	p->scratch_floats = floats;
	return 0;
}

/* ---- matmul ---- */

/* Scalar reference: convert a row, plain float accumulation in k order. */
void rt_mm_scalar(uint32_t type, const float *x, uint32_t B, uint32_t K,
		  const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		  float *y, uint32_t ldy, float *scratch)
{
	uint32_t n, b, k;

	for (n = n0; n < n1; n++) {
		const uint8_t *row = (const uint8_t *)w + (size_t)n * row_bytes;

		rt_dequant_row(type, row, scratch, K);
		for (b = 0; b < B; b++) {
			const float *xb = x + (size_t)b * K;
			float acc = 0.0f;

			for (k = 0; k < K; k++)
				acc += xb[k] * scratch[k];
			y[(size_t)b * ldy + n] = acc;
		}
	}
}

struct mm_job {
	rt_mm_fn fn;
	struct rt_pool *pool;
	uint32_t type, B, K, N, rows;
	const float *x;
	const void *w;
	size_t row_bytes;
	float *y;
	float *scratch0;	/* when pool == NULL */
};

static void mm_task(void *arg, uint32_t t, uint32_t worker)
{
	struct mm_job *j = arg;
	uint32_t n0 = t * j->rows, n1 = n0 + j->rows;
	float *scratch = j->pool ? j->pool->scratch[worker] : j->scratch0;

	if (n1 > j->N)
		n1 = j->N;
	j->fn(j->type, j->x, j->B, j->K, j->w, j->row_bytes, n0, n1, j->y,
	      j->N, scratch);
}

int rt_matmul(struct rt_pool *pool, int simd, const float *x, uint32_t B,
	      uint32_t K, uint32_t wtype, const void *w, uint32_t N, float *y)
{
	struct mm_job j;
	uint32_t threads = rt_pool_threads(pool), ntasks;
	size_t need = RT_MM_SCRATCH_B(K, B);

	if (!rt_type_supported(wtype) || !K || !rt_type_row_bytes(wtype, K))
		return -EINVAL;
	if (!B || !N)
		return 0;
	if (simd == RT_SIMD_AUTO)
		simd = rt_simd_detect();
	if (!rt_simd_supported(simd))
		return -EINVAL;
	memset(&j, 0, sizeof(j));
	j.fn = simd == RT_SIMD_AVX512 ? rt_mm_avx512 :
	       simd == RT_SIMD_AVX2 ? rt_mm_avx2 : rt_mm_scalar;
	j.type = wtype;
	j.B = B;
	j.K = K;
	j.N = N;
	j.x = x;
	j.w = w;
	j.y = y;
	j.row_bytes = rt_type_row_bytes(wtype, K);
	/*
	 * ~16 tasks per thread (dynamic scheduling evens out a noisy
	 * machine), whole RT_MM_ROWS groups; the split does not change any
	 * result.
	 */
	j.rows = (N + threads * 16 - 1) / (threads * 16);
	j.rows = (j.rows + RT_MM_ROWS - 1) / RT_MM_ROWS * RT_MM_ROWS;
	ntasks = (N + j.rows - 1) / j.rows;
	if (pool && threads > 1 && ntasks > 1) {
		if (pool_reserve(pool, need))
			return -ENOMEM;
		j.pool = pool;
		rt_pool_run(pool, mm_task, &j, ntasks);
		return 0;
	}
	j.scratch0 = aligned_alloc(64, (need * sizeof(float) + 63) &
				   ~(size_t)63);
	if (!j.scratch0)
		return -ENOMEM;
	for (uint32_t t = 0; t < ntasks; t++)
		mm_task(&j, t, 0);
	free(j.scratch0);
	return 0;
}

/* ---- elementwise ---- */

void rt_rmsnorm(float *y, const float *x, const float *w, uint32_t n,
		float eps)
{
	double ss = 0.0;
	float scale;
	uint32_t i;

	for (i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	scale = (float)(1.0 / sqrt(ss / n + eps));
	for (i = 0; i < n; i++)
		y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

void rt_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t n_rot,
	     uint32_t pos, float base)
{
	uint32_t h, i;

	if (n_rot > head_dim)
		n_rot = head_dim;
	for (i = 0; i < n_rot / 2; i++) {
		double theta = (double)pos *
			       pow((double)base, -2.0 * i / (double)n_rot);
		float c = (float)cos(theta), s = (float)sin(theta);

		for (h = 0; h < n_heads; h++) {
			float *p = x + (size_t)h * head_dim + 2 * i;
			float x0 = p[0], x1 = p[1];

			p[0] = x0 * c - x1 * s;
			p[1] = x0 * s + x1 * c;
		}
	}
}

void rt_swiglu(float *g, const float *u, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void rt_softmax(float *x, uint32_t n)
{
	float m = -INFINITY, sum = 0.0f;
	uint32_t i;

	for (i = 0; i < n; i++)
		m = fmaxf(m, x[i]);
	for (i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		sum += x[i];
	}
	for (i = 0; i < n; i++)
		x[i] /= sum;
}

uint32_t rt_argmax(const float *x, uint32_t n)
{
	uint32_t i, best = 0;

	for (i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* ---- rng and sampling ---- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rt_rng_seed(struct rt_rng *r, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rt_rng_next(struct rt_rng *r)
{
	uint64_t *s = r->s;
	uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

float rt_rng_float(struct rt_rng *r)
{
	return (float)(rt_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Sort helper: indices by descending value, ties by index. */
static void sort_desc(uint32_t *idx, uint32_t n, const float *v)
{
	/* insertion sort for small n, shell sort otherwise (no qsort_r) */
	uint32_t gap, i, j;

	for (gap = n / 2; gap > 0; gap /= 2)
		for (i = gap; i < n; i++) {
			uint32_t t = idx[i];

			for (j = i; j >= gap &&
			     (v[idx[j - gap]] < v[t] ||
			      (v[idx[j - gap]] == v[t] && idx[j - gap] > t));
			     j -= gap)
				idx[j] = idx[j - gap];
			idx[j] = t;
		}
}

uint32_t rt_sample(const float *logits, uint32_t n,
		   const struct rt_sampling *sp, struct rt_rng *rng,
		   float *scratch, uint32_t *idx)
{
	uint32_t i, k;
	float m, sum, r, acc;

	if (!sp || sp->temperature <= 0.0f || n <= 1)
		return rt_argmax(logits, n);
	for (i = 0; i < n; i++)
		idx[i] = i;
	sort_desc(idx, n, logits);
	k = sp->top_k && sp->top_k < n ? sp->top_k : n;
	m = logits[idx[0]];
	sum = 0.0f;
	for (i = 0; i < k; i++) {
		scratch[i] = expf((logits[idx[i]] - m) / sp->temperature);
		sum += scratch[i];
	}
	if (sp->top_p > 0.0f && sp->top_p < 1.0f) {
		acc = 0.0f;
		for (i = 0; i < k; i++) {
			acc += scratch[i] / sum;
			if (acc >= sp->top_p) {
				k = i + 1;
				break;
			}
		}
		sum = 0.0f;
		for (i = 0; i < k; i++)
			sum += scratch[i];
	}
	r = rt_rng_float(rng) * sum;
	acc = 0.0f;
	for (i = 0; i < k; i++) {
		acc += scratch[i];
		if (r < acc)
			return idx[i];
	}
	return idx[k - 1];
}
