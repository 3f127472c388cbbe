// SPDX-License-Identifier: MIT
/*
 * attn_scalar.c - reference attention kernel in plain C.
 *
 * f32 accumulation, online softmax with one rescale per block of
 * ATTN_BLOCK tokens: scores of the block for every head of the GQA group,
 * then the running max/sum/accumulator update, then the V accumulation.
 * Each K and V row is converted once and reused for all n_q heads.
 */
#include <math.h>

#include "attn_internal.h"

static void row_to_f32(const void *row, int dtype, uint32_t d, float *out)
{
	if (dtype == CSD_DTYPE_F32) {
		memcpy(out, row, d * sizeof(float));
		return;
	}
	for (uint32_t i = 0; i < d; i++)
		out[i] = attn_load_elem(row, dtype, i);
}

void attn_kernel_scalar(const struct attn_args *a)
{
	const uint32_t d = a->head_dim, nq = a->n_q;
	const size_t row_bytes = (size_t)d * csd_dtype_size(a->dtype);
	float s[ATTN_MAX_NQ][ATTN_BLOCK];
	float row[ATTN_MAX_HEAD_DIM];
	const char *krow[ATTN_BLOCK], *vrow[ATTN_BLOCK];

	for (uint32_t h = 0; h < nq; h++) {
		a->m[h] = -INFINITY;
		a->l[h] = 0.0f;
	}
	memset(a->acc, 0, (size_t)nq * d * sizeof(float));

	for (uint32_t t0 = a->tok_begin; t0 < a->tok_end; t0 += ATTN_BLOCK) {
		uint32_t n = a->tok_end - t0;

		if (n > ATTN_BLOCK)
			n = ATTN_BLOCK;
		attn_rows(a->kpages, a->tpp, a->tok_begin, t0, n, row_bytes,
			  krow);
		attn_rows(a->vpages, a->tpp, a->tok_begin, t0, n, row_bytes,
			  vrow);

		/* scores */
		for (uint32_t t = 0; t < n; t++) {
			row_to_f32(krow[t], a->dtype, d, row);
			for (uint32_t h = 0; h < nq; h++) {
				const float *q = a->q + (size_t)h * d;
				float dot = 0.0f;

				for (uint32_t i = 0; i < d; i++)
					dot += q[i] * row[i];
				s[h][t] = dot * a->scale;
			}
		}

		/* one online-softmax step per head for the block */
		for (uint32_t h = 0; h < nq; h++) {
			float bm = -INFINITY, mnew, alpha, sum = 0.0f;
			float *acc = a->acc + (size_t)h * d;

			for (uint32_t t = 0; t < n; t++)
				bm = fmaxf(bm, s[h][t]);
			mnew = fmaxf(a->m[h], bm);
			alpha = a->m[h] == -INFINITY ? 0.0f :
				expf(a->m[h] - mnew);
			for (uint32_t t = 0; t < n; t++) {
				s[h][t] = expf(s[h][t] - mnew);
				sum += s[h][t];
			}
			if (alpha != 1.0f)
				for (uint32_t i = 0; i < d; i++)
					acc[i] *= alpha;
			a->l[h] = a->l[h] * alpha + sum;
			a->m[h] = mnew;
		}

		/* V accumulation */
		for (uint32_t t = 0; t < n; t++) {
			row_to_f32(vrow[t], a->dtype, d, row);
			for (uint32_t h = 0; h < nq; h++) {
				float *acc = a->acc + (size_t)h * d;
				const float p = s[h][t];

				for (uint32_t i = 0; i < d; i++)
					acc[i] += p * row[i];
			}
		}
	}
}
