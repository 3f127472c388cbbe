// SPDX-License-Identifier: MIT
/*
 * attn_sparse.c - SparF sparse attention (command set v0.2): the scalar
 * reference of its hot loops and the per-(sequence, kv head) algorithm.
 *
 * For every q head h of the group (SparQ / InstInfer SparF):
 *  1. D = the r dims with the largest |q_i| (ties: lower index);
 *  2. approximate scores s^_t = sum_{i in D} q_i K_t,i, from the
 *     channel-indexed K pages (one page per dim and complete chunk: a
 *     dim-major axpy over the chunk's tokens) and, for the tokens of the
 *     incomplete tail chunk, from their token-indexed K rows;
 *  3. the k tokens with the largest s^ (radix select on the order-keyed
 *     float bits; ties: lower index), in token order;
 *  4. exact attention over their K/V rows with the caller's scale (the
 *     dense kernel, fed one row pointer per "page");
 *  5. alpha = sum over the kept tokens of softmax(scale^ * s^), with the
 *     SparQ temperature correction scale^ = scale / sqrt(||q_D||_1 /
 *     ||q||_1), and out = alpha * attn + (1 - alpha) * mean(V), mean(V) =
 *     vsum / n; lse = ln(sum over kept of exp(s_t)) - ln(alpha), an
 *     estimate of the dense log-sum-exp.
 */
#include <math.h>
#include <stdlib.h>

#include "attn_internal.h"

/* ---- scalar reference of the hot loops ---------------------------------- */

static void chan_dot_scalar(int dt, uint32_t r, const float *qd,
			    const void *const *cols, uint32_t n, float *s)
{
	for (uint32_t t = 0; t < n; t++)
		s[t] = 0.0f;
	for (uint32_t j = 0; j < r; j++)
		for (uint32_t t = 0; t < n; t++)
			s[t] += qd[j] * attn_load_elem(cols[j], dt, t);
}

static void rows_dot_scalar(int dt, uint32_t d, const float *q,
			    const char *const *rows, uint32_t n, float *s)
{
	for (uint32_t t = 0; t < n; t++) {
		float dot = 0.0f;

		for (uint32_t i = 0; i < d; i++)
			dot += q[i] * attn_load_elem(rows[t], dt, i);
		s[t] = dot;
	}
}

static float vmax_scalar(const float *s, uint32_t n)
{
	float m = -INFINITY;

	for (uint32_t t = 0; t < n; t++)
		m = fmaxf(m, s[t]);
	return m;
}

static float expsum_scalar(const float *s, uint32_t n, float a, float b)
{
	float sum = 0.0f;

	for (uint32_t t = 0; t < n; t++)
		sum += expf(a * s[t] - b);
	return sum;
}

const struct attn_sparse_ops attn_sparse_scalar = {
	.chan_dot = chan_dot_scalar,
	.rows_dot = rows_dot_scalar,
	.vmax = vmax_scalar,
	.expsum = expsum_scalar,
};

const struct attn_sparse_ops *attn_sparse_ops_get(int simd)
{
	if (!attn_cpu_supports(simd))
		return NULL;
	switch (simd) {
	case CSD_SIMD_AVX512:
		return &attn_sparse_avx512;
	case CSD_SIMD_AVX2:
		return &attn_sparse_avx2;
	default:
		return &attn_sparse_scalar;
	}
}

/* ---- selection ------------------------------------------------------------ */

struct dimv {
	float v;
	uint32_t i;
};

/* a ranks below b: smaller |q|, or equal and a higher index */
static inline int dim_worse(const struct dimv *a, const struct dimv *b)
{
	return a->v < b->v || (a->v == b->v && a->i > b->i);
}

static void heap_down(struct dimv *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, w = i;

		if (l < n && dim_worse(&h[l], &h[w]))
			w = l;
		if (l + 1 < n && dim_worse(&h[l + 1], &h[w]))
			w = l + 1;
		if (w == i)
			return;
		struct dimv tmp = h[i];

		h[i] = h[w];
		h[w] = tmp;
		i = w;
	}
}

float attn_sparse_topdims(const float *q, uint32_t d, uint32_t r,
			  uint32_t *dims)
{
	struct dimv heap[ATTN_MAX_HEAD_DIM];
	bool keep[ATTN_MAX_HEAD_DIM] = { false };
	float all = 0.0f, part = 0.0f;
	uint32_t n = 0;

	if (d > ATTN_MAX_HEAD_DIM)
		d = ATTN_MAX_HEAD_DIM;
	if (r > d)
		r = d;
	/* min-heap (worst on top) of the r best dims */
	for (uint32_t i = 0; i < d; i++) {
		struct dimv e = { fabsf(q[i]), i };

		all += e.v;
		if (n < r) {
			uint32_t c = n++;

			heap[c] = e;
			while (c && dim_worse(&heap[c], &heap[(c - 1) / 2])) {
				struct dimv tmp = heap[c];

				heap[c] = heap[(c - 1) / 2];
				heap[(c - 1) / 2] = tmp;
				c = (c - 1) / 2;
			}
		} else if (r && dim_worse(&heap[0], &e)) {
			heap[0] = e;
			heap_down(heap, n, 0);
		}
	}
	for (uint32_t i = 0; i < n; i++)
		keep[heap[i].i] = true;
	n = 0;
	for (uint32_t i = 0; i < d; i++) {
		if (keep[i]) {
			dims[n++] = i;
			part += fabsf(q[i]);
		}
	}
	if (!(all > 0.0f) || !(part > 0.0f) || !isfinite(all))
		return 1.0f;
	return part / all;
}

/* Order-preserving key of a float (larger float, larger key). */
static inline uint32_t fkey(float f)
{
	uint32_t u = attn_f32_as_u32(f);

	return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/*
 * Indices of the @k (1..n) largest s[] into @sel in ascending order; ties
 * at the threshold go to the lower indices.  Radix select over the key's
 * bits 31..21, 20..10, 9..0; @cand: n uint32 of scratch.
 */
static void topk(const float *s, uint32_t n, uint32_t k, uint32_t *sel,
		 uint32_t *cand)
{
	static const uint8_t shift[3] = { 21, 10, 0 };
	static const uint8_t width[3] = { 11, 11, 10 };
	uint32_t hist[2048];
	uint32_t prefix = 0, pmask = 0, need = k, nc = 0, m = 0;
	bool have_cand = false;

	for (int lev = 0; lev < 3; lev++) {
		const uint32_t sh = shift[lev], nb = 1u << width[lev];
		uint32_t above = 0, b;

		memset(hist, 0, nb * sizeof(hist[0]));
		if (!have_cand) {
			for (uint32_t t = 0; t < n; t++)
				hist[(fkey(s[t]) >> sh) & (nb - 1)]++;
		} else {
			for (uint32_t i = 0; i < nc; i++)
				hist[(fkey(s[cand[i]]) >> sh) & (nb - 1)]++;
		}
		for (b = nb - 1; b > 0 && above + hist[b] < need; b--)
			above += hist[b];
		need -= above;
		prefix |= b << sh;
		pmask |= (nb - 1) << sh;
		if (lev == 2)
			break;
		if (!have_cand) {
			for (uint32_t t = 0; t < n; t++)
				if ((fkey(s[t]) & pmask) == prefix)
					cand[nc++] = t;
			have_cand = true;
		} else {
			uint32_t o = 0;

			for (uint32_t i = 0; i < nc; i++)
				if ((fkey(s[cand[i]]) & pmask) == prefix)
					cand[o++] = cand[i];
			nc = o;
		}
	}
	for (uint32_t t = 0; t < n && m < k; t++) {
		uint32_t key = fkey(s[t]);

		if (key > prefix) {
			sel[m++] = t;
		} else if (key == prefix && need) {
			need--;
			sel[m++] = t;
		}
	}
}

/* ---- the group algorithm ---------------------------------------------------- */

/* Row of token @t of the @which stream of (seq, kvh); cached page lookup. */
struct rowcur {
	uint32_t pg;
	const char *page;
};

static const char *row_at(const struct attn_job *j, uint32_t seq,
			  uint32_t kvh, int which, uint32_t t,
			  size_t row_bytes, struct rowcur *rc)
{
	uint32_t pg = t / j->tpp;

	if (!rc->page || rc->pg != pg) {
		rc->page = j->page(j->cookie, seq, kvh, which, pg);
		rc->pg = pg;
		if (!rc->page)
			return NULL;
	}
	return rc->page + (size_t)(t % j->tpp) * row_bytes;
}

/*
 * Exact dense attention of the group (allocation-failure fallback), in
 * pieces of PIECE pages merged by log-sum-exp, into out / lse.
 */
#define PIECE 32
static void dense_group(attn_kernel_fn kernel, struct attn_job *j,
			uint32_t si, uint32_t kvh)
{
	const uint32_t nq = j->q_heads / j->kv_heads, d = j->head_dim;
	const uint32_t n = j->hi[si], seq = j->seqs[si];
	const size_t hoff = (size_t)si * j->q_heads + (size_t)kvh * nq;
	float *out = j->out + hoff * d;
	float m[ATTN_MAX_NQ], l[ATTN_MAX_NQ], m2[ATTN_MAX_NQ], l2[ATTN_MAX_NQ];
	float part[ATTN_MAX_NQ * ATTN_MAX_HEAD_DIM];
	const void *kp[PIECE], *vp[PIECE];

	memset(out, 0, (size_t)nq * d * sizeof(float));
	for (uint32_t h = 0; h < nq; h++) {
		m[h] = -INFINITY;
		l[h] = 0.0f;
	}
	for (uint32_t p0 = 0; (uint64_t)p0 * j->tpp < n; p0 += PIECE) {
		uint32_t b = p0 * j->tpp, e = n;
		bool ok = true;

		if ((uint64_t)(p0 + PIECE) * j->tpp < n)
			e = (p0 + PIECE) * j->tpp;
		for (uint32_t i = 0; i < (e - b + j->tpp - 1) / j->tpp; i++) {
			kp[i] = j->page(j->cookie, seq, kvh, 0, p0 + i);
			vp[i] = j->page(j->cookie, seq, kvh, 1, p0 + i);
			ok = ok && kp[i] && vp[i];
		}
		if (!ok)
			continue;

		struct attn_args a = {
			.dtype = j->dtype, .head_dim = d, .n_q = nq,
			.scale = j->scale, .q = j->q + hoff * d,
			.kpages = kp, .vpages = vp, .tpp = j->tpp,
			.tok_begin = b, .tok_end = e,
			.m = m2, .l = l2, .acc = part,
		};

		kernel(&a);
		for (uint32_t h = 0; h < nq; h++)
			attn_merge(&m[h], &l[h], out + (size_t)h * d, m2[h],
				   l2[h], part + (size_t)h * d, d);
	}
	for (uint32_t h = 0; h < nq; h++) {
		float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;

		for (uint32_t i = 0; i < d; i++)
			out[(size_t)h * d + i] *= inv;
		if (j->lse)
			j->lse[hoff + h] = l[h] > 0.0f ? m[h] + logf(l[h])
						      : -INFINITY;
	}
}

static size_t al64(size_t x)
{
	return (x + 63) & ~(size_t)63;
}

void attn_sparse_group(const struct attn_sparse_ops *ops,
		       attn_kernel_fn kernel, struct attn_job *j, uint32_t si,
		       uint32_t kvh)
{
	const uint32_t nq = j->q_heads / j->kv_heads, d = j->head_dim;
	const uint32_t n = j->hi[si], seq = j->seqs[si], ct = j->chan_tokens;
	const uint32_t nch = n / ct, tail0 = nch * ct, ntail = n - tail0;
	const uint32_t r = j->sp_r < d ? j->sp_r : d;
	const uint32_t k = attn_sparse_k(j->sp_k, j->sp_frac, n);
	const int dt = j->dtype;
	const size_t row_bytes = (size_t)d * csd_dtype_size(dt);
	const size_t hoff = (size_t)si * j->q_heads + (size_t)kvh * nq;
	const float *vsum = j->vsum + ((size_t)si * j->kv_heads + kvh) * d;
	const size_t o_cand = al64((size_t)n * sizeof(float));
	const size_t o_sel = o_cand + al64((size_t)n * sizeof(uint32_t));
	const size_t o_kp = o_sel + al64((size_t)k * sizeof(uint32_t));
	const size_t o_vp = o_kp + al64((size_t)k * sizeof(void *));
	const size_t o_tr = o_vp + al64((size_t)k * sizeof(void *));
	const size_t o_bm = o_tr + al64((size_t)ntail * sizeof(void *));
	const size_t nbm = ((size_t)n + 63) / 64;
	const size_t total = o_bm + nbm * sizeof(uint64_t);
	uint32_t dims[ATTN_MAX_HEAD_DIM], udims[ATTN_MAX_HEAD_DIM], nud = 0;
	bool dmark[ATTN_MAX_HEAD_DIM] = { false };
	float qd[ATTN_MAX_HEAD_DIM], qm[ATTN_MAX_HEAD_DIM];
	float acc[ATTN_MAX_HEAD_DIM] __attribute__((aligned(64)));
	const void *cols[ATTN_MAX_HEAD_DIM];
	const char **trows, **kp, **vp;
	uint32_t *cand, *sel;
	uint64_t *bm;
	struct rowcur rc;
	float *s;
	char *mem;

	if (k >= n || !(mem = aligned_alloc(64, al64(total)))) {
		dense_group(kernel, j, si, kvh);
		return;
	}
	s = (float *)(void *)mem;
	cand = (uint32_t *)(void *)(mem + o_cand);
	sel = (uint32_t *)(void *)(mem + o_sel);
	kp = (const char **)(void *)(mem + o_kp);
	vp = (const char **)(void *)(mem + o_vp);
	trows = (const char **)(void *)(mem + o_tr);
	bm = (uint64_t *)(void *)(mem + o_bm);
	memset(bm, 0, nbm * sizeof(uint64_t));

	/* token-indexed K rows of the tail (shared by the group's heads) */
	rc.page = NULL;
	rc.pg = 0;
	for (uint32_t t = 0; t < ntail; t++) {
		trows[t] = row_at(j, seq, kvh, 0, tail0 + t, row_bytes, &rc);
		if (!trows[t])
			goto fallback;
	}

	for (uint32_t h = 0; h < nq; h++) {
		const float *q = j->q + (hoff + h) * d;
		float *out = j->out + (hoff + h) * d;
		float ratio, sc_hat, mx, z, zk, alpha, m, l, inv, w;

		ratio = attn_sparse_topdims(q, d, r, dims);
		sc_hat = j->scale / sqrtf(ratio);
		memset(qm, 0, d * sizeof(float));
		for (uint32_t i = 0; i < r; i++) {
			qd[i] = q[dims[i]];
			qm[dims[i]] = q[dims[i]];
			if (!dmark[dims[i]]) {
				dmark[dims[i]] = true;
				nud++;
			}
		}

		/* 2. approximate scores */
		for (uint32_t c = 0; c < nch; c++) {
			for (uint32_t i = 0; i < r; i++) {
				cols[i] = j->chan(j->cookie, seq, kvh, dims[i],
						  c);
				if (!cols[i])
					goto fallback;
			}
			ops->chan_dot(dt, r, qd, cols, ct, s + (size_t)c * ct);
		}
		if (ntail)
			ops->rows_dot(dt, d, qm, trows, ntail, s + tail0);

		/* 3. top-k, in token order */
		topk(s, n, k, sel, cand);

		/* 5a. kept share of the approximate softmax */
		mx = ops->vmax(s, n);
		z = ops->expsum(s, n, sc_hat, sc_hat * mx);
		for (uint32_t i = 0; i < k; i++)
			((float *)cand)[i] = s[sel[i]];
		zk = ops->expsum((const float *)cand, k, sc_hat, sc_hat * mx);
		alpha = z > 0.0f && isfinite(z) ? zk / z : 1.0f;
		if (!(alpha > 0.0f) || alpha > 1.0f)
			alpha = 1.0f;

		/* 4. exact attention over the kept rows */
		rc.page = NULL;
		for (uint32_t i = 0; i < k; i++) {
			kp[i] = row_at(j, seq, kvh, 0, sel[i], row_bytes, &rc);
			if (!kp[i])
				goto fallback;
			bm[sel[i] / 64] |= 1ull << (sel[i] % 64);
		}
		rc.page = NULL;
		for (uint32_t i = 0; i < k; i++) {
			vp[i] = row_at(j, seq, kvh, 1, sel[i], row_bytes, &rc);
			if (!vp[i])
				goto fallback;
		}
		{
			struct attn_args a = {
				.dtype = dt, .head_dim = d, .n_q = 1,
				.scale = j->scale, .q = q,
				.kpages = (const void *const *)kp,
				.vpages = (const void *const *)vp,
				.tpp = 1, .tok_begin = 0, .tok_end = k,
				.m = &m, .l = &l, .acc = acc,
			};

			kernel(&a);
		}

		/* 5b. combine with mean(V) */
		inv = l > 0.0f ? alpha / l : 0.0f;
		w = (1.0f - alpha) / (float)n;
		for (uint32_t i = 0; i < d; i++)
			out[i] = acc[i] * inv + vsum[i] * w;
		if (j->lse)
			j->lse[hoff + h] = l > 0.0f ? m + logf(l) - logf(alpha)
						   : -INFINITY;
	}

	if (j->sp_read) {
		uint32_t nt = 0;

		nud = 0;
		for (uint32_t i = 0; i < d; i++)
			if (dmark[i])
				udims[nud++] = i;
		for (size_t wi = 0; wi < nbm; wi++)
			for (uint64_t b = bm[wi]; b; b &= b - 1)
				cand[nt++] = (uint32_t)(wi * 64 +
					(uint32_t)__builtin_ctzll(b));
		j->sp_read(j, si, kvh, udims, nud, cand, nt);
	}
	free(mem);
	return;

fallback:
	/* a page is missing (cannot happen with a consistent snapshot) */
	free(mem);
	dense_group(kernel, j, si, kvh);
}
