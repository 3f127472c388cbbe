/* SPDX-License-Identifier: MIT */
/*
 * fuzz_gguf.c - libFuzzer target for the GGUF loader and the llama model
 * checks on top of it.  Input is parsed in place (rt_gguf_open_mem).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_gguf.h"
#include "rt_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rt_gguf *g = NULL;
	struct rt_model *m = NULL;
	char err[256];
	uint64_t i, n;
	uint32_t et, len;
	const uint8_t *p;
	const char *s;
	uint8_t *copy;

	/* private copy so 4-byte alignment of tensor data is realistic */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (rt_gguf_open_mem(copy, size, &g, err, sizeof(err)) == 0) {
		for (i = 0; i < g->n_kv; i++) {
			const struct rt_gguf_kv *kv = &g->kv[i];

			if (kv->type != RT_GGUF_ARRAY ||
			    kv->arr_type != RT_GGUF_STRING)
				continue;
			p = kv->val;
			for (n = 0; n < kv->arr_n; n++)
				rt_gguf_str_next(&p, &s, &len);
			(void)et;
		}
		for (i = 0; i < g->n_tensors; i++) {
			const struct rt_gguf_tensor *t = &g->tensors[i];
			volatile uint8_t sink = 0;

			if (t->size)
				sink = ((const uint8_t *)t->data)[t->size - 1];
			(void)sink;
		}
		/* takes ownership of g */
		if (rt_model_from_gguf(g, &m, err, sizeof(err)) == 0) {
			int32_t toks[8];

			rt_model_tokenize(m, "ab", 2, 1, toks, 8);
			rt_model_close(m);
		}
	}
	free(copy);
	return 0;
}
