/* SPDX-License-Identifier: MIT */
/*
 * rt_model.c - llama model: hyper-parameters, weights, byte tokenizer.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_model.h"
#include "rt_ops.h"


static int req_u32(const struct rt_gguf *g, const char *key, uint32_t *v,
		   char *err, size_t errlen)
{
	int ret = rt_gguf_get_u32(g, key, v);

	if (ret == -ENOENT)
		return rt_errf(err, errlen, -EINVAL, "missing metadata key '%s'",
			    key);
	if (ret)
		return rt_errf(err, errlen, -EINVAL,
			    "metadata key '%s' is not an unsigned integer", key);
	if (!*v)
		return rt_errf(err, errlen, -EINVAL, "metadata key '%s' is 0",
			    key);
	return 0;
}

/* Weight with ne = [k, n] and a supported matrix type. */
static int get_weight(const struct rt_gguf *g, const char *name, uint32_t k,
		      uint32_t n, struct rt_weight *w, char *err,
		      size_t errlen)
{
	const struct rt_gguf_tensor *t = rt_gguf_find_tensor(g, name);

	if (!t)
		return rt_errf(err, errlen, -EINVAL, "missing tensor '%s'", name);
	if (t->n_dims != 2 || t->ne[0] != k || t->ne[1] != n)
		return rt_errf(err, errlen, -EINVAL,
			    "tensor '%s': shape [%llu, %llu] (n_dims %u), "
			    "expected [%u, %u]", name,
			    (unsigned long long)t->ne[0],
			    (unsigned long long)t->ne[1], t->n_dims, k, n);
	if ((uintptr_t)t->data % 4)
		return rt_errf(err, errlen, -EINVAL,
			    "tensor '%s': data not 4-byte aligned", name);
	w->type = t->type;
	w->k = k;
	w->n = n;
	w->row_bytes = rt_type_row_bytes(t->type, k);
	w->data = t->data;
	return 0;
}

static int get_norm(const struct rt_gguf *g, const char *name, uint32_t n,
		    const float **p, char *err, size_t errlen)
{
	const struct rt_gguf_tensor *t = rt_gguf_find_tensor(g, name);

	if (!t)
		return rt_errf(err, errlen, -EINVAL, "missing tensor '%s'", name);
	if (t->n_dims != 1 || t->ne[0] != n)
		return rt_errf(err, errlen, -EINVAL,
			    "tensor '%s': shape [%llu] (n_dims %u), expected "
			    "[%u]", name, (unsigned long long)t->ne[0],
			    t->n_dims, n);
	if (t->type != RT_TYPE_F32)
		return rt_errf(err, errlen, -EINVAL,
			    "tensor '%s': type %s, norms must be f32", name,
			    rt_type_name(t->type));
	if ((uintptr_t)t->data % 4)
		return rt_errf(err, errlen, -EINVAL, "tensor '%s': misaligned",
			    name);
	*p = t->data;
	return 0;
}

static int load_hparams(struct rt_model *m, char *err, size_t errlen)
{
	const struct rt_gguf *g = m->gguf;
	struct rt_hparams *hp = &m->hp;
	const char *s;
	uint32_t len;
	uint64_t n;
	uint32_t et;
	const uint8_t *data;
	int ret;

	ret = rt_gguf_get_str(g, "general.architecture", &s, &len);
	if (ret)
		return rt_errf(err, errlen, -EINVAL,
			    "missing metadata key 'general.architecture'");
	if (len != 5 || memcmp(s, "llama", 5) != 0)
		return rt_errf(err, errlen, -EINVAL,
			    "architecture '%.*s' not supported (need llama)",
			    (int)(len > 64 ? 64 : len), s);
	if (!rt_gguf_get_str(g, "general.name", &s, &len))
		snprintf(m->name, sizeof(m->name), "%.*s",
			 (int)(len > 63 ? 63 : len), s);
	if ((ret = req_u32(g, "llama.block_count", &hp->n_layer, err, errlen)) ||
	    (ret = req_u32(g, "llama.embedding_length", &hp->n_embd, err,
			   errlen)) ||
	    (ret = req_u32(g, "llama.feed_forward_length", &hp->n_ff, err,
			   errlen)) ||
	    (ret = req_u32(g, "llama.attention.head_count", &hp->n_head, err,
			   errlen)) ||
	    (ret = req_u32(g, "llama.context_length", &hp->n_ctx, err,
			   errlen)))
		return ret;
	if (rt_gguf_find_kv(g, "llama.attention.head_count_kv")) {
		ret = req_u32(g, "llama.attention.head_count_kv",
			      &hp->n_head_kv, err, errlen);
		if (ret)
			return ret;
	} else {
		hp->n_head_kv = hp->n_head;
	}
	ret = rt_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon",
			      &hp->rms_eps);
	if (ret)
		return rt_errf(err, errlen, -EINVAL, "%s metadata key "
			    "'llama.attention.layer_norm_rms_epsilon'",
			    ret == -ENOENT ? "missing" : "bad");
	if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f))
		return rt_errf(err, errlen, -EINVAL, "bad rms epsilon %g",
			    (double)hp->rms_eps);
	hp->rope_base = 10000.0f;
	ret = rt_gguf_get_f32(g, "llama.rope.freq_base", &hp->rope_base);
	if (ret && ret != -ENOENT)
		return rt_errf(err, errlen, -EINVAL, "bad llama.rope.freq_base");
	if (!(hp->rope_base > 1.0f))
		return rt_errf(err, errlen, -EINVAL, "bad rope base %g",
			    (double)hp->rope_base);
	if (hp->n_layer > 1024 || hp->n_embd > 65536 || hp->n_ff > 1u << 20 ||
	    hp->n_head > 1024)
		return rt_errf(err, errlen, -EINVAL, "hyper-parameters too large");
	if (hp->n_embd % hp->n_head)
		return rt_errf(err, errlen, -EINVAL,
			    "embedding_length %u not a multiple of head_count "
			    "%u", hp->n_embd, hp->n_head);
	if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
		return rt_errf(err, errlen, -EINVAL,
			    "head_count %u not a multiple of head_count_kv %u",
			    hp->n_head, hp->n_head_kv);
	hp->head_dim = hp->n_embd / hp->n_head;
	if (hp->head_dim % 2)
		return rt_errf(err, errlen, -EINVAL, "odd head dim %u",
			    hp->head_dim);
	hp->n_rot = hp->head_dim;
	ret = rt_gguf_get_u32(g, "llama.rope.dimension_count", &hp->n_rot);
	if ((ret && ret != -ENOENT) || hp->n_rot > hp->head_dim ||
	    hp->n_rot % 2)
		return rt_errf(err, errlen, -EINVAL,
			    "bad llama.rope.dimension_count");
	/* vocabulary size: tokenizer tokens, else token_embd */
	if (!rt_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &data)) {
		if (et != RT_GGUF_STRING || !n || n > (1u << 24))
			return rt_errf(err, errlen, -EINVAL,
				    "bad tokenizer.ggml.tokens");
		hp->n_vocab = (uint32_t)n;
	} else {
		const struct rt_gguf_tensor *t =
			rt_gguf_find_tensor(g, "token_embd.weight");

		if (!t || t->n_dims != 2 || t->ne[1] > (1u << 24))
			return rt_errf(err, errlen, -EINVAL,
				    "missing tensor 'token_embd.weight'");
		hp->n_vocab = (uint32_t)t->ne[1];
	}
	return 0;
}

static int load_weights(struct rt_model *m, char *err, size_t errlen)
{
	const struct rt_gguf *g = m->gguf;
	const struct rt_hparams *hp = &m->hp;
	uint32_t qd = hp->n_head * hp->head_dim;
	uint32_t kvd = hp->n_head_kv * hp->head_dim;
	char nm[96];
	uint32_t l;
	int ret;

	ret = get_weight(g, "token_embd.weight", hp->n_embd, hp->n_vocab,
			 &m->tok_embd, err, errlen);
	if (ret)
		return ret;
	ret = get_norm(g, "output_norm.weight", hp->n_embd, &m->output_norm,
		       err, errlen);
	if (ret)
		return ret;
	if (rt_gguf_find_tensor(g, "output.weight")) {
		ret = get_weight(g, "output.weight", hp->n_embd, hp->n_vocab,
				 &m->output, err, errlen);
		if (ret)
			return ret;
	} else {
		m->output = m->tok_embd;	/* tied embeddings */
	}
	m->layers = calloc(hp->n_layer, sizeof(*m->layers));
	if (!m->layers)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	for (l = 0; l < hp->n_layer; l++) {
		struct rt_layer *ly = &m->layers[l];

#define W(field, suffix, k, n)						\
	do {								\
		snprintf(nm, sizeof(nm), "blk.%u." suffix ".weight", l);	\
		ret = get_weight(g, nm, k, n, &ly->field, err, errlen);	\
		if (ret)						\
			return ret;					\
	} while (0)
		snprintf(nm, sizeof(nm), "blk.%u.attn_norm.weight", l);
		ret = get_norm(g, nm, hp->n_embd, &ly->attn_norm, err, errlen);
		if (ret)
			return ret;
		snprintf(nm, sizeof(nm), "blk.%u.ffn_norm.weight", l);
		ret = get_norm(g, nm, hp->n_embd, &ly->ffn_norm, err, errlen);
		if (ret)
			return ret;
		W(wq, "attn_q", hp->n_embd, qd);
		W(wk, "attn_k", hp->n_embd, kvd);
		W(wv, "attn_v", hp->n_embd, kvd);
		W(wo, "attn_output", qd, hp->n_embd);
		W(w_gate, "ffn_gate", hp->n_embd, hp->n_ff);
		W(w_up, "ffn_up", hp->n_embd, hp->n_ff);
		W(w_down, "ffn_down", hp->n_ff, hp->n_embd);
#undef W
	}
	return 0;
}

/* GPT-2 bytes_to_unicode: byte -> code point. */
static uint32_t gpt2_cp(uint32_t b)
{
	uint32_t n = 0, c;

	if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
	    (b >= 0xae && b <= 0xff))
		return b;
	for (c = 0; c < b; c++)
		if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) ||
		      (c >= 0xae && c <= 0xff)))
			n++;
	return 256 + n;
}

static int utf8_one(const char *s, uint32_t len, uint32_t *cp)
{
	const uint8_t *u = (const uint8_t *)s;

	if (len == 1 && u[0] < 0x80) {
		*cp = u[0];
		return 0;
	}
	if (len == 2 && (u[0] & 0xe0) == 0xc0 && (u[1] & 0xc0) == 0x80) {
		*cp = ((uint32_t)(u[0] & 0x1f) << 6) | (u[1] & 0x3f);
		return 0;
	}
	return -1;
}

static int hexv(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int load_vocab(struct rt_model *m, char *err, size_t errlen)
{
	const struct rt_gguf *g = m->gguf;
	const uint8_t *p;
	const char *s;
	uint32_t len, et, i, b, cp2b[512];
	uint64_t n;
	int64_t v;
	int kind = RT_TOK_NONE, ab;

	m->bos = m->eos = -1;
	m->add_bos = 0;
	for (i = 0; i < 256; i++)
		m->byte_tok[i] = -1;
	if (!rt_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) && v >= 0 &&
	    v < m->hp.n_vocab)
		m->bos = (int32_t)v;
	if (!rt_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) && v >= 0 &&
	    v < m->hp.n_vocab)
		m->eos = (int32_t)v;
	if (!rt_gguf_get_str(g, "tokenizer.ggml.model", &s, &len)) {
		if (len == 5 && !memcmp(s, "llama", 5)) {
			kind = RT_TOK_LLAMA;
			m->add_bos = 1;
		} else if (len == 4 && !memcmp(s, "gpt2", 4)) {
			kind = RT_TOK_GPT2;
		}
	}
	if (!rt_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &ab))
		m->add_bos = ab;
	m->tok_byte = malloc(m->hp.n_vocab * sizeof(*m->tok_byte));
	if (!m->tok_byte)
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	for (i = 0; i < m->hp.n_vocab; i++)
		m->tok_byte[i] = -1;
	if (kind == RT_TOK_NONE ||
	    rt_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &p)) {
		m->tok_kind = RT_TOK_NONE;
		return 0;
	}
	for (i = 0; i < 512; i++)
		cp2b[i] = 0xffffffffu;
	for (b = 0; b < 256; b++)
		cp2b[gpt2_cp(b)] = b;
	for (i = 0; i < n; i++) {
		int byte = -1;
		uint32_t cp;

		rt_gguf_str_next(&p, &s, &len);
		if (kind == RT_TOK_LLAMA) {
			if (len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' &&
			    hexv(s[3]) >= 0 && hexv(s[4]) >= 0)
				byte = hexv(s[3]) * 16 + hexv(s[4]);
		} else if (!utf8_one(s, len, &cp) && cp < 512 &&
			   cp2b[cp] != 0xffffffffu) {
			byte = (int)cp2b[cp];
		}
		if (byte >= 0) {
			m->tok_byte[i] = (int16_t)byte;
			if (m->byte_tok[byte] < 0)
				m->byte_tok[byte] = (int32_t)i;
		}
	}
	m->tok_kind = kind;
	return 0;
}

void rt_model_close(struct rt_model *m)
{
	if (!m)
		return;
	rt_gguf_close(m->gguf);
	free(m->layers);
	free(m->tok_byte);
	free(m);
}

int rt_model_from_gguf(struct rt_gguf *g, struct rt_model **mp, char *err,
		       size_t errlen)
{
	struct rt_model *m;
	int ret;

	*mp = NULL;
	m = calloc(1, sizeof(*m));
	if (!m) {
		rt_gguf_close(g);
		return rt_errf(err, errlen, -ENOMEM, "out of memory");
	}
	m->gguf = g;
	ret = load_hparams(m, err, errlen);
	if (!ret)
		ret = load_weights(m, err, errlen);
	if (!ret)
		ret = load_vocab(m, err, errlen);
	if (ret) {
		rt_model_close(m);
		return ret;
	}
	*mp = m;
	return 0;
}

int rt_model_open(const char *path, struct rt_model **mp, char *err,
		  size_t errlen)
{
	struct rt_gguf *g;
	int ret;

	*mp = NULL;
	ret = rt_gguf_open(path, &g, err, errlen);
	if (ret)
		return ret;
	return rt_model_from_gguf(g, mp, err, errlen);
}

static uint64_t wbytes(const struct rt_weight *w)
{
	return (uint64_t)w->row_bytes * w->n;
}

uint64_t rt_model_weight_bytes(const struct rt_model *m)
{
	uint64_t s = wbytes(&m->tok_embd) + 4ull * m->hp.n_embd;
	uint32_t l;

	if (m->output.data != m->tok_embd.data)
		s += wbytes(&m->output);
	for (l = 0; l < m->hp.n_layer; l++) {
		const struct rt_layer *ly = &m->layers[l];

		s += 8ull * m->hp.n_embd + wbytes(&ly->wq) + wbytes(&ly->wk) +
		     wbytes(&ly->wv) + wbytes(&ly->wo) + wbytes(&ly->w_gate) +
		     wbytes(&ly->w_up) + wbytes(&ly->w_down);
	}
	return s;
}

int rt_model_tokenize(const struct rt_model *m, const char *text, size_t len,
		      int add_bos, int32_t *out, size_t cap)
{
	size_t n = 0, i;

	if (m->tok_kind == RT_TOK_NONE)
		return -ENOTSUP;
	if (len > (size_t)INT32_MAX - 1)
		return -EINVAL;
	if (add_bos && m->bos >= 0) {
		if (n < cap)
			out[n] = m->bos;
		n++;
	}
	for (i = 0; i < len; i++) {
		int32_t t = m->byte_tok[(uint8_t)text[i]];

		if (t < 0)
			return -EINVAL;
		if (n < cap)
			out[n] = t;
		n++;
	}
	return (int)n;
}

int rt_model_detokenize(const struct rt_model *m, int32_t tok, char *buf,
			size_t cap)
{
	if (tok < 0 || (uint32_t)tok >= m->hp.n_vocab)
		return -EINVAL;
	if (m->tok_byte[tok] < 0)
		return 0;
	if (cap < 1)
		return -ENOSPC;
	buf[0] = (char)m->tok_byte[tok];
	return 1;
}
