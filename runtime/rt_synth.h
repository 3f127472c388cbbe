/* SPDX-License-Identifier: MIT */
/*
 * rt_synth.h - deterministic synthetic llama models written as GGUF
 * (csd-infer make-model).  Same preset + options + seed = same bytes.
 *
 * The vocabulary is SentencePiece-style ("llama" tokenizer model): <unk>,
 * <s>, </s>, then the 256 byte tokens <0x00>..<0xFF> (259 tokens).
 */
#ifndef CSD_RT_SYNTH_H
#define CSD_RT_SYNTH_H

#include <stddef.h>
#include <stdint.h>

struct rt_synth_preset {
	const char *name;
	uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_ctx;
};

struct rt_synth_opts {
	const char *preset;	/* "tiny", "small", "7b", "7b-gqa", "13b", ... */
	uint32_t layers;	/* 0: preset default */
	uint32_t ctx;		/* 0: preset default (llama.context_length) */
	int wtype;		/* matrices: enum rt_type, -1: F16 */
	uint64_t seed;
	uint32_t threads;	/* 0: online CPUs */
};

/* {NULL}-terminated table. */
const struct rt_synth_preset *rt_synth_presets(void);
const struct rt_synth_preset *rt_synth_preset_find(const char *name);

/* Writes the model to @path (created/truncated).  -errno + message. */
int rt_synth_write(const char *path, const struct rt_synth_opts *o,
		   char *err, size_t errlen);

#define RT_SYNTH_VOCAB	259

#endif /* CSD_RT_SYNTH_H */
