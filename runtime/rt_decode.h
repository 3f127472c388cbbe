/* SPDX-License-Identifier: MIT */
/*
 * rt_decode.h - the host decoder: a batch of sequences of one llama model,
 * everything but attention on the host CPU, decode attention and the KV
 * cache on an attention backend (backend.h).
 *
 * Flow: rt_decoder_create -> rt_decoder_prefill (host computes the prompts
 * with full causal attention, appends their KV, fp16, to the backend and
 * samples each sequence's first token) -> rt_decoder_step (feeds the last
 * sampled tokens, attention per layer on the backend, samples the next
 * ones) ... -> rt_decoder_destroy.
 *
 * With two micro-batches (batch >= 2) the batch is split in halves and
 * pipelined per layer: while the backend computes one half's attention,
 * the host computes the other half's projections / FFN.
 *
 * The KV cache is fp16: the host's prefill attention uses fp16-rounded K/V
 * too, so prefill and decode see the same values.  Results of a sequence
 * do not depend on the batch it runs in (nor on thread count).
 */
#ifndef CSD_RT_DECODE_H
#define CSD_RT_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "rt_model.h"
#include "rt_ops.h"

struct rt_decoder_config {
	uint32_t batch;		/* sequences (>= 1) */
	uint32_t max_tokens;	/* per sequence: prompt + generated (0: n_ctx) */
	uint32_t threads;	/* host compute threads (0: online CPUs) */
	uint32_t backend_threads; /* rt_shape.threads (0: threads) */
	uint32_t micro_batches;	/* 1 or 2 (0: 2 if batch >= 2) */
	int simd;		/* enum rt_simd (RT_SIMD_AUTO = -1) */
	uint32_t prefill_chunk;	/* prompt tokens per matmul chunk (0: 128) */
	struct rt_sampling sampling;	/* temperature 0 = greedy */
};

/* Zero-initialized config with simd = RT_SIMD_AUTO, greedy sampling. */
void rt_decoder_config_init(struct rt_decoder_config *c, uint32_t batch,
			    uint32_t max_tokens, uint32_t threads);

struct rt_decode_stats {
	uint64_t steps;			/* rt_decoder_step calls */
	uint64_t tokens;		/* tokens generated (incl. prefill's) */
	uint64_t prompt_tokens;		/* tokens prefilled */
	uint64_t prefill_ns;		/* wall time in prefill (incl. append) */
	uint64_t append_ns;		/* backend append time in prefill */
	uint64_t decode_ns;		/* wall time in rt_decoder_step */
	uint64_t host_ns;		/* host compute time inside steps */
	uint64_t wait_ns;		/* time blocked in backend wait() */
	uint64_t submit_ns;		/* time inside backend submit() */
	struct rt_backend_stats backend;	/* the backend's own stats */
};

struct rt_decoder;

/*
 * Opens the backend (@ops with @opts) with the model's shape.  @err gets a
 * message on failure.  The model must outlive the decoder.
 */
int rt_decoder_create(const struct rt_model *m,
		      const struct rt_backend_ops *ops, const char *opts,
		      const struct rt_decoder_config *cfg,
		      struct rt_decoder **dp, char *err, size_t errlen);
void rt_decoder_destroy(struct rt_decoder *d);

/*
 * Prefills every sequence: prompts[s][0..lens[s]) (lens[s] >= 1, token ids
 * < n_vocab, lens[s] < max_tokens).  Resets previous state.  Writes each
 * sequence's first generated token to @first (may be NULL).
 */
int rt_decoder_prefill(struct rt_decoder *d, const int32_t *const *prompts,
		       const uint32_t *lens, int32_t *first);
/*
 * Benchmark prefill: no host compute.  Appends lens[s] tokens of
 * deterministic pseudo-random KV (seeded by @seed) for every sequence and
 * layer, and sets each sequence's next input token to @tok.  Decode steps
 * then run the real model over that context.
 */
int rt_decoder_prefill_synthetic(struct rt_decoder *d, const uint32_t *lens,
				 uint64_t seed, int32_t tok);
/*
 * One decode step for every sequence: feeds @in[s] (or, if @in is NULL,
 * the token sampled last), runs the model, samples the next token into
 * @out[s] (may be NULL).  -ENOSPC if a sequence is at max_tokens.
 */
int rt_decoder_step(struct rt_decoder *d, const int32_t *in, int32_t *out);

/* Logits [n_vocab] of sequence @seq from the last prefill / step. */
const float *rt_decoder_logits(const struct rt_decoder *d, uint32_t seq);
/* Tokens stored for @seq (prompt + fed tokens). */
uint32_t rt_decoder_pos(const struct rt_decoder *d, uint32_t seq);
void rt_decoder_set_sampling(struct rt_decoder *d,
			     const struct rt_sampling *s);
void rt_decoder_stats(struct rt_decoder *d, struct rt_decode_stats *st);
/* The backend instance (for backend-specific queries such as flexgen's). */
struct rt_backend *rt_decoder_backend(struct rt_decoder *d);
uint32_t rt_decoder_batch(const struct rt_decoder *d);

#endif /* CSD_RT_DECODE_H */
