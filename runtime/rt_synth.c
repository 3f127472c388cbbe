/* SPDX-License-Identifier: MIT */
/*
 * rt_synth.c - deterministic synthetic llama models as GGUF.
 *
 * Weights are uniform pseudo-random with variance-preserving scales
 * (1/sqrt(fan_in)), norms near 1, a slightly sharpened output layer so
 * greedy decoding is not flat.  Every block of RT_SYNTH_ROWS rows of every
 * tensor has its own seed derived from (seed, tensor, block), so the file
 * is the same whatever the thread count.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_gguf.h"
#include "rt_ops.h"
#include "rt_synth.h"

#define RT_SYNTH_ROWS	64
#define SLAB_BYTES	(32u << 20)

static const struct rt_synth_preset presets[] = {
	{ "tiny", 2, 256, 512, 4, 2, 2048 },
	{ "tiny-mha", 2, 256, 512, 4, 4, 2048 },
	{ "small", 4, 512, 1376, 8, 2, 4096 },
	{ "7b", 32, 4096, 11008, 32, 32, 4096 },
	{ "7b-gqa", 32, 4096, 11008, 32, 8, 4096 },
	{ "13b", 40, 5120, 13824, 40, 40, 4096 },
	{ "13b-gqa", 40, 5120, 13824, 40, 8, 4096 },
	{ NULL, 0, 0, 0, 0, 0, 0 },
};

const struct rt_synth_preset *rt_synth_presets(void)
{
	return presets;
}

const struct rt_synth_preset *rt_synth_preset_find(const char *name)
{
	const struct rt_synth_preset *p;

	for (p = presets; name && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}


struct gen_job {
	uint64_t seed;
	uint32_t tensor;	/* index, mixes into the seed */
	uint32_t type, k;
	uint32_t row0, nrows;	/* slab */
	float center, amp;	/* value = center + amp * u, u in [-1, 1) */
	size_t row_bytes;
	uint8_t *out;
	float **tmp;		/* per worker: RT_SYNTH_ROWS * k floats */
};

static void gen_task(void *arg, uint32_t t, uint32_t worker)
{
	struct gen_job *j = arg;
	uint32_t r0 = t * RT_SYNTH_ROWS, r1 = r0 + RT_SYNTH_ROWS, r;
	uint64_t blk = (j->row0 + r0) / RT_SYNTH_ROWS;
	float *tmp = j->tmp[worker];
	struct rt_rng rng;
	size_t i, n;

	if (r1 > j->nrows)
		r1 = j->nrows;
	n = (size_t)(r1 - r0) * j->k;
	rt_rng_seed(&rng, j->seed ^ ((uint64_t)j->tensor << 40) ^
			  (blk * 0x9e3779b97f4a7c15ull));
	for (i = 0; i + 1 < n; i += 2) {
		uint64_t v = rt_rng_next(&rng);
		uint32_t a = (uint32_t)(v >> 41) | 0x40000000u;	/* [2,4) */
		uint32_t b = (uint32_t)((v >> 9) & 0x7fffff) | 0x40000000u;
		float fa, fb;

		memcpy(&fa, &a, 4);
		memcpy(&fb, &b, 4);
		tmp[i] = j->center + j->amp * (fa - 3.0f);
		tmp[i + 1] = j->center + j->amp * (fb - 3.0f);
	}
	if (i < n) {
		uint32_t a = (uint32_t)(rt_rng_next(&rng) >> 41) | 0x40000000u;
		float fa;

		memcpy(&fa, &a, 4);
		tmp[i] = j->center + j->amp * (fa - 3.0f);
	}
	for (r = r0; r < r1; r++) {
		const float *src = tmp + (size_t)(r - r0) * j->k;
		uint8_t *dst = j->out + (size_t)r * j->row_bytes;

		switch (j->type) {
		case RT_TYPE_F32:
			memcpy(dst, src, (size_t)j->k * 4);
			break;
		case RT_TYPE_F16:
			rt_fp32_to_fp16_row(src, (uint16_t *)dst, j->k);
			break;
		case RT_TYPE_BF16:
			for (i = 0; i < j->k; i++)
				((uint16_t *)dst)[i] = rt_fp32_to_bf16(src[i]);
			break;
		case RT_TYPE_Q8_0:
			rt_quantize_q8_0_row(src, (struct rt_block_q8_0 *)dst,
					     j->k);
			break;
		}
	}
}

struct synth {
	struct rt_gguf_writer *w;
	struct rt_pool *pool;
	uint64_t seed;
	uint32_t ntensor;
	uint8_t *slab;
	float **tmp;
	uint32_t tmp_k;
};

/* Generates and writes one tensor of @rows rows of @k values. */
static int put_tensor(struct synth *s, uint32_t type, uint32_t k,
		      uint32_t rows, float center, float amp)
{
	struct gen_job j;
	size_t rb = rt_type_row_bytes(type, k);
	uint32_t per = (uint32_t)(SLAB_BYTES / rb), r, i;
	int ret;

	per = per < RT_SYNTH_ROWS ? RT_SYNTH_ROWS :
	      per / RT_SYNTH_ROWS * RT_SYNTH_ROWS;
	if (k > s->tmp_k) {
		for (i = 0; i < rt_pool_threads(s->pool); i++) {
			free(s->tmp[i]);
			s->tmp[i] = malloc((size_t)RT_SYNTH_ROWS * k *
					   sizeof(float));
			if (!s->tmp[i]) {
				s->tmp_k = 0;
				return -ENOMEM;
			}
		}
		s->tmp_k = k;
	}
	memset(&j, 0, sizeof(j));
	j.seed = s->seed;
	j.tensor = s->ntensor++;
	j.type = type;
	j.k = k;
	j.center = center;
	j.amp = amp;
	j.row_bytes = rb;
	j.tmp = s->tmp;
	for (r = 0; r < rows; r += per) {
		uint32_t n = rows - r < per ? rows - r : per;
		uint8_t *buf = s->slab;
		uint8_t *big = NULL;

		if ((size_t)n * rb > SLAB_BYTES) {	/* huge rows */
			big = malloc((size_t)n * rb);
			if (!big)
				return -ENOMEM;
			buf = big;
		}
		j.row0 = r;
		j.nrows = n;
		j.out = buf;
		rt_pool_run(s->pool, gen_task, &j,
			    (n + RT_SYNTH_ROWS - 1) / RT_SYNTH_ROWS);
		ret = rt_gguf_w_data(s->w, buf, (size_t)n * rb);
		free(big);
		if (ret)
			return ret;
	}
	return 0;
}

static const char *const special[3] = { "<unk>", "<s>", "</s>" };

static int write_meta(struct rt_gguf_writer *w,
		      const struct rt_synth_preset *p, uint32_t layers, uint32_t ctx, uint32_t wtype)
{
	char name[96];
	uint32_t ftype;

	snprintf(name, sizeof(name), "csd-synth-%s-%ul-%s", p->name, layers,
		 rt_type_name(wtype));
	ftype = wtype == RT_TYPE_F32 ? 0 : wtype == RT_TYPE_F16 ? 1 :
		wtype == RT_TYPE_Q8_0 ? 7 : 32;
	rt_gguf_w_str(w, "general.architecture", "llama");
	rt_gguf_w_str(w, "general.name", name);
	rt_gguf_w_u32(w, "general.file_type", ftype);
	rt_gguf_w_u32(w, "general.quantization_version", 2);
	rt_gguf_w_u32(w, "general.alignment", RT_GGUF_DEFAULT_ALIGN);
	rt_gguf_w_u32(w, "llama.vocab_size", RT_SYNTH_VOCAB);
	rt_gguf_w_u32(w, "llama.context_length", ctx);
	rt_gguf_w_u32(w, "llama.embedding_length", p->n_embd);
	rt_gguf_w_u32(w, "llama.block_count", layers);
	rt_gguf_w_u32(w, "llama.feed_forward_length", p->n_ff);
	rt_gguf_w_u32(w, "llama.rope.dimension_count", p->n_embd / p->n_head);
	rt_gguf_w_u32(w, "llama.attention.head_count", p->n_head);
	rt_gguf_w_u32(w, "llama.attention.head_count_kv", p->n_head_kv);
	rt_gguf_w_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	rt_gguf_w_f32(w, "llama.rope.freq_base", 10000.0f);
	rt_gguf_w_str(w, "tokenizer.ggml.model", "llama");
	return 0;
}

static int write_vocab(struct rt_gguf_writer *w)
{
	char (*names)[8] = malloc(256 * 8);
	const char *toks[RT_SYNTH_VOCAB];
	float scores[RT_SYNTH_VOCAB];
	int32_t ttype[RT_SYNTH_VOCAB];
	uint32_t i;
	int ret;

	if (!names)
		return -ENOMEM;
	for (i = 0; i < 3; i++) {
		toks[i] = special[i];
		scores[i] = 0.0f;
		ttype[i] = i == 0 ? 2 : 3;	/* UNKNOWN, CONTROL */
	}
	for (i = 0; i < 256; i++) {
		snprintf(names[i], 8, "<0x%02X>", i);
		toks[3 + i] = names[i];
		scores[3 + i] = 0.0f;
		ttype[3 + i] = 6;		/* BYTE */
	}
	rt_gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, RT_SYNTH_VOCAB);
	rt_gguf_w_arr_f32(w, "tokenizer.ggml.scores", scores, RT_SYNTH_VOCAB);
	rt_gguf_w_arr_i32(w, "tokenizer.ggml.token_type", ttype,
			  RT_SYNTH_VOCAB);
	rt_gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
	rt_gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
	rt_gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
	rt_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
	/*
	 * The vocabulary is bytes only (no SentencePiece "\u2581" piece);
	 * llama.cpp's SPM tokenizer prepends one unless told not to.
	 */
	rt_gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", 0);
	ret = rt_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
	free(names);
	return ret;
}

int rt_synth_write(const char *path, const struct rt_synth_opts *o,
		   char *err, size_t errlen)
{
	const struct rt_synth_preset *p;
	struct synth s;
	uint32_t layers, ctx, wtype, qd, kvd, l, i;
	uint64_t ne[2];
	char nm[96];
	int fd = -1, ret;

	memset(&s, 0, sizeof(s));
	p = rt_synth_preset_find(o ? o->preset : NULL);
	if (!p)
		return rt_errf(err, errlen, -EINVAL, "unknown preset '%s'",
			    o && o->preset ? o->preset : "(null)");
	layers = o->layers ? o->layers : p->n_layer;
	ctx = o->ctx ? o->ctx : p->n_ctx;
	wtype = o->wtype < 0 ? RT_TYPE_F16 : (uint32_t)o->wtype;
	if (!rt_type_supported(wtype))
		return rt_errf(err, errlen, -EINVAL, "unsupported weight type %d",
			    o->wtype);
	if (layers > 1024)
		return rt_errf(err, errlen, -EINVAL, "too many layers");
	qd = p->n_embd;
	kvd = p->n_embd / p->n_head * p->n_head_kv;
	s.seed = o->seed;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return rt_errf(err, errlen, -errno, "%s: %s", path,
			    strerror(errno));
	ret = rt_gguf_writer_create(fd, RT_GGUF_DEFAULT_ALIGN, &s.w);
	if (ret)
		goto out;
	ret = rt_pool_create(o->threads, &s.pool);
	if (ret)
		goto out;
	ret = -ENOMEM;
	s.slab = malloc(SLAB_BYTES);
	s.tmp = calloc(rt_pool_threads(s.pool), sizeof(*s.tmp));
	if (!s.slab || !s.tmp)
		goto out;
	write_meta(s.w, p, layers, ctx, wtype);
	ret = write_vocab(s.w);
	if (ret)
		goto out;
	/* tensor infos, in llama.cpp's usual order */
	ne[0] = p->n_embd;
	ne[1] = RT_SYNTH_VOCAB;
	rt_gguf_w_tensor(s.w, "token_embd.weight", wtype, 2, ne);
	for (l = 0; l < layers; l++) {
		ne[0] = p->n_embd;
		snprintf(nm, sizeof(nm), "blk.%u.attn_norm.weight", l);
		rt_gguf_w_tensor(s.w, nm, RT_TYPE_F32, 1, ne);
		ne[1] = qd;
		snprintf(nm, sizeof(nm), "blk.%u.attn_q.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		ne[1] = kvd;
		snprintf(nm, sizeof(nm), "blk.%u.attn_k.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		snprintf(nm, sizeof(nm), "blk.%u.attn_v.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		ne[0] = qd;
		ne[1] = p->n_embd;
		snprintf(nm, sizeof(nm), "blk.%u.attn_output.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		ne[0] = p->n_embd;
		snprintf(nm, sizeof(nm), "blk.%u.ffn_norm.weight", l);
		rt_gguf_w_tensor(s.w, nm, RT_TYPE_F32, 1, ne);
		ne[1] = p->n_ff;
		snprintf(nm, sizeof(nm), "blk.%u.ffn_gate.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		snprintf(nm, sizeof(nm), "blk.%u.ffn_up.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
		ne[0] = p->n_ff;
		ne[1] = p->n_embd;
		snprintf(nm, sizeof(nm), "blk.%u.ffn_down.weight", l);
		rt_gguf_w_tensor(s.w, nm, wtype, 2, ne);
	}
	ne[0] = p->n_embd;
	rt_gguf_w_tensor(s.w, "output_norm.weight", RT_TYPE_F32, 1, ne);
	ne[1] = RT_SYNTH_VOCAB;
	ret = rt_gguf_w_tensor(s.w, "output.weight", wtype, 2, ne);
	if (ret)
		goto out;
	/* data, same order; amp = sqrt(3) * std for a uniform */
#define U(std)	(1.7320508f * (std))
	ret = put_tensor(&s, wtype, p->n_embd, RT_SYNTH_VOCAB, 0.0f, U(1.0f));
	for (l = 0; !ret && l < layers; l++) {
		float se = 1.0f / sqrtf((float)p->n_embd);

		ret = put_tensor(&s, RT_TYPE_F32, p->n_embd, 1, 1.0f, 0.1f);
		if (!ret)
			ret = put_tensor(&s, wtype, p->n_embd, qd, 0.0f, U(se));
		for (i = 0; !ret && i < 2; i++)
			ret = put_tensor(&s, wtype, p->n_embd, kvd, 0.0f,
					 U(se));
		if (!ret)
			ret = put_tensor(&s, wtype, qd, p->n_embd, 0.0f,
					 U(0.5f / sqrtf((float)qd)));
		if (!ret)
			ret = put_tensor(&s, RT_TYPE_F32, p->n_embd, 1, 1.0f,
					 0.1f);
		for (i = 0; !ret && i < 2; i++)
			ret = put_tensor(&s, wtype, p->n_embd, p->n_ff, 0.0f,
					 U(se));
		if (!ret)
			ret = put_tensor(&s, wtype, p->n_ff, p->n_embd, 0.0f,
					 U(0.5f / sqrtf((float)p->n_ff)));
	}
	if (!ret)
		ret = put_tensor(&s, RT_TYPE_F32, p->n_embd, 1, 1.0f, 0.1f);
	if (!ret)
		ret = put_tensor(&s, wtype, p->n_embd, RT_SYNTH_VOCAB, 0.0f,
				 U(3.0f / sqrtf((float)p->n_embd)));
#undef U
	if (!ret)
		ret = rt_gguf_w_finish(s.w);
out:
	if (s.w) {
		int r2 = rt_gguf_writer_destroy(s.w);

		if (!ret)
			ret = r2;
	}
	if (s.tmp)
		for (i = 0; i < rt_pool_threads(s.pool); i++)
			free(s.tmp[i]);
	free(s.tmp);
	free(s.slab);
	rt_pool_destroy(s.pool);
	if (fd >= 0 && close(fd) && !ret)
		ret = -errno;
	if (ret) {
		unlink(path);
		rt_errf(err, errlen, ret, "%s: write failed: %s", path,
		     strerror(-ret));
	}
	return ret;
}
