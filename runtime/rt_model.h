/* SPDX-License-Identifier: MIT */
/*
 * rt_model.h - a llama-architecture model from a GGUF file: hyper-parameters
 * (llama.* metadata), weights checked against llama.cpp's shapes, and a
 * byte-level tokenizer over the file's vocabulary.
 */
#ifndef CSD_RT_MODEL_H
#define CSD_RT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rt_gguf.h"

struct rt_hparams {
	uint32_t n_layer;
	uint32_t n_embd;
	uint32_t n_ff;
	uint32_t n_head;
	uint32_t n_head_kv;
	uint32_t head_dim;	/* n_embd / n_head */
	uint32_t n_rot;		/* llama.rope.dimension_count (default head_dim) */
	uint32_t n_ctx;		/* llama.context_length */
	uint32_t n_vocab;
	float rope_base;	/* llama.rope.freq_base (default 10000) */
	float rms_eps;		/* llama.attention.layer_norm_rms_epsilon */
};

/* A weight matrix: n rows of k values (GGUF ne = [k, n]). */
struct rt_weight {
	uint32_t type;		/* enum rt_type */
	uint32_t k, n;
	size_t row_bytes;
	const void *data;
};

struct rt_layer {
	const float *attn_norm;		/* [n_embd] */
	const float *ffn_norm;		/* [n_embd] */
	struct rt_weight wq;		/* [n_embd] -> [n_head * head_dim] */
	struct rt_weight wk, wv;	/* [n_embd] -> [n_head_kv * head_dim] */
	struct rt_weight wo;		/* [n_head * head_dim] -> [n_embd] */
	struct rt_weight w_gate, w_up;	/* [n_embd] -> [n_ff] */
	struct rt_weight w_down;	/* [n_ff] -> [n_embd] */
};

enum rt_tok_kind {
	RT_TOK_NONE = 0,	/* no byte vocabulary: tokenize unavailable */
	RT_TOK_LLAMA,		/* "<0xXX>" byte tokens (SentencePiece style) */
	RT_TOK_GPT2,		/* GPT-2 bytes_to_unicode single-char tokens */
};

struct rt_model {
	struct rt_gguf *gguf;
	char name[64];
	struct rt_hparams hp;
	struct rt_weight tok_embd;	/* [n_embd] x n_vocab rows */
	struct rt_weight output;	/* [n_embd] -> [n_vocab] */
	const float *output_norm;
	struct rt_layer *layers;
	/* tokenizer */
	int tok_kind;
	int32_t bos, eos;		/* -1 if absent */
	int add_bos;
	int32_t byte_tok[256];		/* byte -> token id, -1 if absent */
	int16_t *tok_byte;		/* [n_vocab] token -> byte, -1 if none */
};

/* Opens and validates a llama GGUF model.  -errno + message in @err. */
int rt_model_open(const char *path, struct rt_model **mp, char *err,
		  size_t errlen);
/* Takes ownership of @g (closed on error too). */
int rt_model_from_gguf(struct rt_gguf *g, struct rt_model **mp, char *err,
		       size_t errlen);
void rt_model_close(struct rt_model *m);

/* Bytes of all weights (for reports). */
uint64_t rt_model_weight_bytes(const struct rt_model *m);

/*
 * Byte-level encode: optional BOS then one token per byte.  Returns the
 * number of tokens (may exceed @cap: only @cap are written), -ENOTSUP if
 * the vocabulary has no byte tokens, -EINVAL if a byte has no token.
 */
int rt_model_tokenize(const struct rt_model *m, const char *text, size_t len,
		      int add_bos, int32_t *out, size_t cap);
/*
 * Decode one token: writes its bytes (no NUL) and returns how many (0 for
 * special tokens), -EINVAL if out of range.
 */
int rt_model_detokenize(const struct rt_model *m, int32_t tok, char *buf,
			size_t cap);

#endif /* CSD_RT_MODEL_H */
