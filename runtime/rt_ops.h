/* SPDX-License-Identifier: MIT */
/*
 * rt_ops.h - host compute kernels of the runtime: tensor types, fp16/bf16
 * conversion, a small thread pool, threaded SIMD matmul over F32 / F16 /
 * BF16 / Q8_0 weights, RMSNorm, RoPE, SwiGLU, softmax and sampling.
 *
 * Weight layout follows ggml: a matrix with ne = [K, N] is N rows of K
 * values, so y[b][n] = sum_k x[b][k] * W[n][k].  Q8_0 rows are K/32 blocks
 * of { fp16 d; int8 qs[32] } (34 bytes), value = d * qs[i].
 *
 * No global mutable state: the only cached value is the CPU feature probe.
 */
#ifndef CSD_RT_OPS_H
#define CSD_RT_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ggml type ids (the values stored in GGUF tensor infos). */
enum rt_type {
	RT_TYPE_F32 = 0,
	RT_TYPE_F16 = 1,
	RT_TYPE_Q8_0 = 8,
	RT_TYPE_BF16 = 30,
};

#define RT_QK8_0	32
struct rt_block_q8_0 {
	uint16_t d;		/* fp16 scale */
	int8_t qs[RT_QK8_0];
};

/* 1 if @type is one of the supported types above. */
int rt_type_supported(uint32_t type);
/* "f32", "f16", "bf16", "q8_0" or "?" */
const char *rt_type_name(uint32_t type);
/* Parses a type name; -EINVAL if unknown. */
int rt_type_parse(const char *s, uint32_t *type);
/* Bytes of a row of @k values; 0 if unsupported or k not a block multiple. */
size_t rt_type_row_bytes(uint32_t type, uint64_t k);
/* Values per block (1, or 32 for Q8_0); 0 if unsupported. */
uint32_t rt_type_block(uint32_t type);

float rt_fp16_to_fp32(uint16_t h);
uint16_t rt_fp32_to_fp16(float f);		/* round to nearest even */
float rt_bf16_to_fp32(uint16_t h);
uint16_t rt_fp32_to_bf16(float f);		/* round to nearest even */
/* Row conversion (uses F16C when available). */
void rt_fp32_to_fp16_row(const float *x, uint16_t *y, size_t n);
void rt_fp16_to_fp32_row(const uint16_t *x, float *y, size_t n);
/* Quantizes @k values (multiple of 32) of @x to Q8_0 blocks (ggml rule). */
void rt_quantize_q8_0_row(const float *x, struct rt_block_q8_0 *y, size_t k);
/* Dequantizes one row of any supported type to f32. */
void rt_dequant_row(uint32_t type, const void *row, float *y, size_t k);

/*
 * Format a message into @err (if non-NULL and @errlen > 0) and return @ret:
 * the runtime's "return -EINVAL with a reason" helper.
 */
int rt_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* CLOCK_MONOTONIC in nanoseconds (the runtime's and its tools' clock). */
uint64_t rt_now_ns(void);

/* ISA selection, like the firmware: CSD_SIMD=scalar|avx2|avx512 env. */
enum rt_simd {
	RT_SIMD_AUTO = -1,
	RT_SIMD_SCALAR = 0,
	RT_SIMD_AVX2 = 1,
	RT_SIMD_AVX512 = 2,
	RT_SIMD_COUNT
};
int rt_simd_detect(void);		/* best supported, honours CSD_SIMD */
int rt_simd_supported(int simd);
const char *rt_simd_name(int simd);

/*
 * Thread pool: @nthreads total workers including the caller of
 * rt_pool_run (nthreads 1 = no extra thread).  Not reentrant: one
 * rt_pool_run at a time per pool.
 */
struct rt_pool;
typedef void (*rt_task_fn)(void *arg, uint32_t task, uint32_t worker);
int rt_pool_create(uint32_t nthreads, struct rt_pool **pp);
void rt_pool_destroy(struct rt_pool *p);
uint32_t rt_pool_threads(const struct rt_pool *p);
/* Runs fn(arg, t, worker) for t in [0, ntasks); returns when all done. */
void rt_pool_run(struct rt_pool *p, rt_task_fn fn, void *arg, uint32_t ntasks);

/*
 * y[B][N] = x[B][K] . W[N][K]^T, W of @wtype (rows contiguous, row size
 * rt_type_row_bytes).  Each weight row is read once for the whole batch.
 * The result of y[b][n] does not depend on B, the thread count or the
 * row partitioning (only on @simd).  @pool may be NULL (single thread).
 * Returns 0, -EINVAL (bad type / K) or -ENOMEM.
 */
int rt_matmul(struct rt_pool *pool, int simd, const float *x, uint32_t B,
	      uint32_t K, uint32_t wtype, const void *w, uint32_t N, float *y);

/* y = x / sqrt(mean(x^2) + eps) * w  (w may be NULL; y may alias x). */
void rt_rmsnorm(float *y, const float *x, const float *w, uint32_t n,
		float eps);
/*
 * RoPE as llama.cpp's NORM mode (llama): for each head, rotate consecutive
 * pairs (x[2i], x[2i+1]), i < n_rot/2, by pos * base^(-2i/n_rot).
 */
void rt_rope(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t n_rot,
	     uint32_t pos, float base);
/* g[i] = silu(g[i]) * u[i] */
void rt_swiglu(float *g, const float *u, size_t n);
void rt_softmax(float *x, uint32_t n);
uint32_t rt_argmax(const float *x, uint32_t n);

/* Small seeded RNG (xoshiro256**). */
struct rt_rng {
	uint64_t s[4];
};
void rt_rng_seed(struct rt_rng *r, uint64_t seed);
uint64_t rt_rng_next(struct rt_rng *r);
float rt_rng_float(struct rt_rng *r);		/* [0, 1) */

struct rt_sampling {
	float temperature;	/* <= 0: greedy (argmax) */
	uint32_t top_k;		/* 0: all */
	float top_p;		/* >= 1 or <= 0: off */
	uint64_t seed;
};
/*
 * Samples a token from @logits[n].  @scratch: n floats, @idx: n uint32_t
 * (caller-provided so no allocation happens per token).
 */
uint32_t rt_sample(const float *logits, uint32_t n,
		   const struct rt_sampling *sp, struct rt_rng *rng,
		   float *scratch, uint32_t *idx);

/* ---- internal: per-ISA kernels (rt_ops_avx2.c, rt_ops_avx512.c) ---- */
/*
 * Rows [n0, n1) of y[B][ldy] = x[B][K] . W^T.  @scratch holds at least
 * RT_MM_SCRATCH_B(K, B) floats, 64-byte aligned.  K is a multiple of 32 for
 * Q8_0.
 */
#define RT_MM_ROWS	16
#define RT_MM_KC	256	/* K block (values) of the SIMD panel kernels */
#define RT_MM_MB	64	/* x rows per accumulator pass */
/* f32 panel row stride: K rounded up to 16, plus one cache line so the
 * rows do not all map to the same L1/L2 sets when K is a power of two */
#define RT_MM_KS(K)	((((size_t)(K) + 15) & ~(size_t)15) + 16)
/* f32 panel of RT_MM_ROWS rows + RT_MM_MB x RT_MM_ROWS 16-lane
 * accumulators */
#define RT_MM_SCRATCH(K) ((size_t)RT_MM_ROWS * RT_MM_KS(K) + \
			  (size_t)RT_MM_MB * RT_MM_ROWS * 16)
/* ... + x of B rows packed in RT_MM_KC blocks (one rt_mm_* call) */
#define RT_MM_SCRATCH_B(K, B) (RT_MM_SCRATCH(K) + (size_t)(B) * \
			  (((size_t)(K) + RT_MM_KC - 1) / RT_MM_KC * RT_MM_KC))
typedef void (*rt_mm_fn)(uint32_t type, const float *x, uint32_t B,
			 uint32_t K, const void *w, size_t row_bytes,
			 uint32_t n0, uint32_t n1, float *y, uint32_t ldy,
			 float *scratch);
void rt_mm_scalar(uint32_t type, const float *x, uint32_t B, uint32_t K,
		  const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		  float *y, uint32_t ldy, float *scratch);
void rt_mm_avx2(uint32_t type, const float *x, uint32_t B, uint32_t K,
		const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		float *y, uint32_t ldy, float *scratch);
void rt_mm_avx512(uint32_t type, const float *x, uint32_t B, uint32_t K,
		  const void *w, size_t row_bytes, uint32_t n0, uint32_t n1,
		  float *y, uint32_t ldy, float *scratch);
void rt_f32_to_f16_avx2(const float *x, uint16_t *y, size_t n);
void rt_f16_to_f32_avx2(const uint16_t *x, float *y, size_t n);

#endif /* CSD_RT_OPS_H */
