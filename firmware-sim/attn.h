/* SPDX-License-Identifier: MIT */
/*
 * attn.h - the attention engine of the emulated drive.
 *
 * Layers (as in ggml): a scalar reference and AVX2 / AVX-512 kernels with
 * one signature (attn_kernel_fn) computing a *partial* attention of a GQA
 * group over a token range with online softmax; an engine that splits a
 * batch call into (sequence, kv head, token block) tasks on a worker pool
 * and merges the partials with log-sum-exp.
 */
#ifndef CSDFW_ATTN_H
#define CSDFW_ATTN_H

#include <stdbool.h>
#include <stdint.h>

enum csd_simd {
	CSD_SIMD_AUTO = -1,
	CSD_SIMD_SCALAR = 0,
	CSD_SIMD_AVX2 = 1,
	CSD_SIMD_AVX512 = 2,
	/* AVX-512 + BF16: bf16 products for fp16/bf16 KV (f32 KV: avx512);
	 * opt-in only, auto picks the best f32-arithmetic kernel */
	CSD_SIMD_AVX512BF16 = 3,
	CSD_SIMD_COUNT
};

/* Best kernel this CPU runs; honours CSD_SIMD=scalar|avx2|avx512|avx512bf16. */
int attn_simd_detect(void);
/* Whether this CPU can run @simd. */
int attn_simd_supported(int simd);
const char *attn_simd_name(int simd);
/* "scalar"|"avx2"|"avx512"|"avx512bf16"|"auto" -> enum, -1 + errno EINVAL on error. */
int attn_simd_parse(const char *s, int *simd);

/*
 * Partial attention of n_q query heads sharing one KV head over tokens
 * [tok_begin, tok_end) (tok_end > tok_begin).  Token t's row is at
 * kpages[t / tpp - tok_begin / tpp] + (t % tpp) * head_dim * elsize
 * (same for V).  Outputs, per query head h:
 *   m[h]   = max_t s_ht,    s_ht = scale * dot(q_h, k_t)
 *   l[h]   = sum_t exp(s_ht - m[h])
 *   acc[h] = sum_t exp(s_ht - m[h]) * v_t      ([n_q][head_dim], unnormalized)
 */
struct attn_args {
	int dtype;			/* enum csd_dtype */
	uint32_t head_dim;		/* multiple of 16, 16..256 */
	uint32_t n_q;			/* query heads in the group, 1..64 */
	float scale;
	const float *q;			/* [n_q][head_dim] */
	const void *const *kpages;
	const void *const *vpages;
	uint32_t tpp;			/* tokens per page */
	uint32_t tok_begin, tok_end;
	float *m, *l, *acc;
};
typedef void (*attn_kernel_fn)(const struct attn_args *a);

/* Kernel for @simd (must be supported). */
attn_kernel_fn attn_kernel_get(int simd);

/* Scalar reference kernel (always available). */
void attn_kernel_scalar(const struct attn_args *a);

/* Merge partial (m2, l2, acc2) into (m1, l1, acc1) for one head. */
void attn_merge(float *m1, float *l1, float *acc1, float m2, float l2,
		const float *acc2, uint32_t head_dim);

/* ---- the engine: batch calls on a worker pool ------------------------- */

struct attn_engine;

int attn_engine_create(unsigned int threads, int simd,
		       struct attn_engine **ep);
/* Waits for queued jobs, joins the workers. */
void attn_engine_destroy(struct attn_engine *e);
int attn_engine_simd(const struct attn_engine *e);
unsigned int attn_engine_threads(const struct attn_engine *e);

/* Page lookup callback: address of page @page_idx of the K or V stream
 * (which: 0 K, 1 V) of (seq, kv_head) for the job's layer. */
typedef const void *(*attn_page_fn)(void *cookie, uint32_t seq,
				    uint32_t kv_head, int which,
				    uint32_t page_idx);

/* SparF: address of the channel-indexed page of dim @dim of complete chunk
 * @chunk of the K stream of (seq, kv_head) for the job's layer. */
typedef const void *(*attn_chan_fn)(void *cookie, uint32_t seq,
				    uint32_t kv_head, uint32_t dim,
				    uint32_t chunk);

/* SparF, optional batched form of attn_page_fn: the K and V page
 * addresses of pages pg[0..n) (ascending) of (seq, kv_head) into kpg[],
 * vpg[]; returns n, or the first i whose page is missing (where the page
 * callback returns NULL). */
typedef uint32_t (*attn_pages_fn)(void *cookie, uint32_t seq,
				  uint32_t kv_head, const uint32_t *pg,
				  uint32_t n, const void **kpg,
				  const void **vpg);

struct attn_job;

/*
 * SparF: what one (sequence, kv head) group of a sparse job read, reported
 * from a worker once the group's selection is made (for the timing model).
 * @dims: the group's r dims (shared by its q heads, ascending), whose
 * channel pages of every complete chunk were read whole; the tail tokens
 * [chunks * chan_tokens, hi) were scored from their token-indexed K pages;
 * @toks: the group's k kept tokens (ascending, distinct) whose K and V rows
 * were read.
 */
typedef void (*attn_sparse_read_fn)(struct attn_job *job, uint32_t si,
				    uint32_t kv_head, const uint32_t *dims,
				    uint32_t ndims, const uint32_t *toks,
				    uint32_t ntoks);

struct attn_job {
	/* shape */
	int dtype;
	uint32_t head_dim, q_heads, kv_heads, tpp;
	float scale;
	/* batch: for sequence i, attend tokens [lo[i], hi[i]) (hi > lo) */
	uint32_t nseq;
	const uint32_t *seqs;		/* [nseq] passed to page() */
	const uint32_t *lo, *hi;	/* [nseq] */
	const float *q;			/* [nseq][q_heads][head_dim] */
	float *out;			/* [nseq][q_heads][head_dim] */
	float *lse;			/* [nseq][q_heads] or NULL */
	attn_page_fn page;
	void *cookie;
	/* called once from a worker when out/lse are complete */
	void (*done)(struct attn_job *job);
	void *priv;			/* owner's pointer */
	/*
	 * SparF (command set v0.2), used when sp_r != 0: every sequence must
	 * have lo == 0.  A sequence whose kept tokens k_i =
	 * attn_sparse_k(sp_k, sp_frac, hi) cover all its tokens is attended
	 * exactly as a dense job would (same tasks, bit-identical).
	 */
	uint32_t sp_r;			/* dims of q, 1..head_dim; 0 = dense */
	uint32_t sp_k;			/* tokens kept (>= 1) or a fraction */
	bool sp_frac;			/* sp_k in units of 2^-24 */
	uint32_t chan_tokens;		/* tokens per channel chunk (% tpp == 0) */
	attn_chan_fn chan;
	const float *vsum;		/* [nseq][kv_heads][head_dim]: sum of V
					 * over tokens [0, hi) */
	attn_sparse_read_fn sp_read;	/* may be NULL */
	attn_pages_fn pages;		/* may be NULL (then page() per page) */
	/* engine private */
	void *internal;
};

/* Queue @job; returns 0 or -errno (nothing queued on error). */
int attn_engine_submit(struct attn_engine *e, struct attn_job *job);

/* Run @job on the calling thread only, with kernel @simd (tests, tools). */
int attn_run_single(struct attn_job *job, int simd);

/* ---- SparF helpers ------------------------------------------------------ */

/* Tokens kept of a sequence of @n tokens: @k, or with @frac
 * max(1, ceil(n * k / 2^24)); at most n. */
static inline uint32_t attn_sparse_k(uint32_t k, bool frac, uint32_t n)
{
	uint64_t v = k;

	if (frac)
		v = ((uint64_t)n * k + (1u << 24) - 1) >> 24;
	if (v < 1)
		v = 1;
	return v > n ? n : (uint32_t)v;
}

/*
 * The @r dims of @q (length @d) with the largest |q_i|, ascending; ties go
 * to the lower index.  Returns ||q_r||_1 / ||q||_1 (1 when q is 0).
 */
float attn_sparse_topdims(const float *q, uint32_t d, uint32_t r,
			  uint32_t *dims);

#endif /* CSDFW_ATTN_H */
