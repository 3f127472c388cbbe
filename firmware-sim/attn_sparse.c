// SPDX-License-Identifier: MIT
/*
 * attn_sparse.c - SparF sparse attention (command set v0.2): the scalar
 * reference of its hot loops and the per-(sequence, kv head) algorithm.
 *
 * Per (sequence, kv head) group of q heads, selection shared by the group
 * (SparQ's GQA variant; for one q head per group it is plain SparQ /
 * InstInfer SparF):
 *  1. D = the r dims with the largest sum over the group's heads of |q_i|
 *     (ties: lower index);
 *  2. per head h, approximate scores s^_h,t = sum_{i in D} q_h,i K_t,i,
 *     from the channel-indexed K pages (one page per dim and complete
 *     chunk: a dim-major axpy over the chunk's tokens, each column block
 *     loaded once for all heads) and, for the tokens of the incomplete tail
 *     chunk, from their token-indexed K rows; the SparQ temperature
 *     correction scale^_h = scale / sqrt(||q_h,D||_1 / ||q_h||_1);
 *  3. the k tokens with the largest P_t = sum_h softmax(scale^_h s^_h)_t
 *     (one head: the largest s^_t, the same order), by radix select on the
 *     order-keyed float bits (ties: lower index), in token order;
 *  4. exact attention of every head over the kept tokens' K/V rows with
 *     the caller's scale (the dense kernel, fed one row pointer per "page";
 *     it prefetches the rows of later blocks);
 *  5. alpha_h = sum over the kept tokens of softmax(scale^_h s^_h), and
 *     out_h = alpha_h * attn_h + (1 - alpha_h) * mean(V), mean(V) = vsum /
 *     n; lse_h = ln(sum over kept of exp(s_h,t)) - ln(alpha_h), an estimate
 *     of the dense log-sum-exp.
 * Scratch comes from the worker's struct attn_scratch (no allocation per
 * group once it has grown).
 */
#include <math.h>
#include <stdlib.h>

#include "attn_internal.h"

/* ---- scalar reference of the hot loops ---------------------------------- */

static void chan_dot_scalar(int dt, uint32_t r, uint32_t nq,
			    const float *qd, const void *const *cols,
			    const void *const *next, uint32_t n, float *s,
			    size_t ss)
{
	(void)next;
	for (uint32_t h = 0; h < nq; h++) {
		float *sh = s + h * ss;

		for (uint32_t t = 0; t < n; t++)
			sh[t] = 0.0f;
		for (uint32_t j = 0; j < r; j++)
			for (uint32_t t = 0; t < n; t++)
				sh[t] += qd[h * r + j] *
					 attn_load_elem(cols[j], dt, t);
	}
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

static float expput_scalar(float *s, uint32_t n, float a, float b)
{
	float sum = 0.0f;

	for (uint32_t t = 0; t < n; t++) {
		s[t] = expf(a * s[t] - b);
		sum += s[t];
	}
	return sum;
}

void attn_sparse_wsum_scalar(const float *e, size_t ss, uint32_t nq,
			     const float *w, uint32_t n, float *g)
{
	for (uint32_t t = 0; t < n; t++)
		g[t] = w[0] * e[t];
	for (uint32_t h = 1; h < nq; h++)
		for (uint32_t t = 0; t < n; t++)
			g[t] += w[h] * e[h * ss + t];
}

const struct attn_sparse_ops attn_sparse_scalar = {
	.chan_dot = chan_dot_scalar,
	.rows_dot = rows_dot_scalar,
	.vmax = vmax_scalar,
	.expsum = expsum_scalar,
	.expput = expput_scalar,
	.wsum = attn_sparse_wsum_scalar,
	.split = attn_sparse_split_scalar,
};

void *attn_scratch_get(struct attn_scratch *sc, size_t n)
{
	n = (n + 63) & ~(size_t)63;
	if (sc->size >= n)
		return sc->mem;
	free(sc->mem);
	n += n / 4;			/* some room to grow */
	n = (n + 63) & ~(size_t)63;
	sc->mem = aligned_alloc(64, n);
	sc->size = sc->mem ? n : 0;
	return sc->mem;
}

void attn_scratch_free(struct attn_scratch *sc)
{
	free(sc->mem);
	sc->mem = NULL;
	sc->size = 0;
}

const struct attn_sparse_ops *attn_sparse_ops_get(int simd)
{
	if (!attn_cpu_supports(simd))
		return NULL;
	switch (simd) {
	case CSD_SIMD_AVX512BF16:
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
			while (c > 0) {
				uint32_t p = (c - 1) / 2;
				struct dimv tmp;

				if (!dim_worse(&heap[c], &heap[p]))
					break;
				tmp = heap[c];
				heap[c] = heap[p];
				heap[p] = tmp;
				c = p;
			}
		} else if (r && dim_worse(&heap[0], &e)) {
			heap[0] = e;
			heap_down(heap, n, 0);
		}
	}
	/* heap[0..n) were all written above (n counts the pushes) */
	for (uint32_t i = 0; i < n; i++)
		keep[heap[i].i] = true; /* cppcheck-suppress uninitvar */
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
	return attn_fkey_u(attn_f32_as_u32(f));
}

void attn_sparse_split_scalar(const float *s, uint32_t n, uint32_t kb,
			      uint32_t *hi, uint32_t *nhi, uint32_t *eq,
			      uint32_t *neq)
{
	uint32_t nh = 0, ne = 0;

	for (uint32_t t = 0; t < n; t++) {
		uint32_t b = fkey(s[t]) >> 24;

		hi[nh] = t;
		nh += b > kb;
		eq[ne] = t;
		ne += b == kb;
	}
	*nhi = nh;
	*neq = ne;
}

/*
 * Indices of the @k (1..n-1) largest s[] into @sel (n + 16 entries of room)
 * in ascending order; ties at the threshold go to the lower indices.
 * Radix select over the key's bytes, most significant first: one pass over
 * all n keys builds the first histogram, a second splits the tokens into
 * those surely kept (into @sel) and the candidates of the threshold bin
 * (into @cand, n + 16 entries of room); later bytes only look at
 * candidates.
 * The kept candidates are merged into @sel at the end.
 */
static void topk(const struct attn_sparse_ops *ops, const float *s,
		 uint32_t n, uint32_t k, uint32_t *sel, uint32_t *cand)
{
	uint32_t hist[4][256];
	uint32_t need = k, above = 0, nd = 0, nc = 0, b, prefix, pmask;

	/* byte 3: four interleaved histograms (keys cluster in few bins) */
	memset(hist, 0, sizeof(hist));
	{
		uint32_t t = 0;

		for (; t + 4 <= n; t += 4) {
			hist[0][fkey(s[t]) >> 24]++;
			hist[1][fkey(s[t + 1]) >> 24]++;
			hist[2][fkey(s[t + 2]) >> 24]++;
			hist[3][fkey(s[t + 3]) >> 24]++;
		}
		for (; t < n; t++)
			hist[0][fkey(s[t]) >> 24]++;
	}
	for (b = 0; b < 256; b++)
		hist[0][b] += hist[1][b] + hist[2][b] + hist[3][b];
	for (b = 255; b > 0 && above + hist[0][b] < need; b--)
		above += hist[0][b];
	need -= above;
	/* split: above the bin -> kept, in the bin -> candidates */
	ops->split(s, n, b, sel, &nd, cand, &nc);
	prefix = b << 24;
	pmask = 0xff000000u;
	/* bytes 2..0 over the candidates (which keep all keys >= prefix) */
	for (int sh = 16; sh >= 0; sh -= 8) {
		uint32_t o = 0, ab = 0;

		memset(hist[0], 0, sizeof(hist[0]));
		for (uint32_t i = 0; i < nc; i++) {
			uint32_t key = fkey(s[cand[i]]);

			if ((key & pmask) == prefix)
				hist[0][(key >> sh) & 255]++;
		}
		for (b = 255; b > 0 && ab + hist[0][b] < need; b--)
			ab += hist[0][b];
		need -= ab;
		prefix |= b << sh;
		pmask |= 255u << sh;
		for (uint32_t i = 0; i < nc; i++) {
			uint32_t key = fkey(s[cand[i]]);

			cand[o] = cand[i];
			o += (key & pmask) >= prefix;
		}
		nc = o;
	}
	/* candidates: key > prefix all kept, key == prefix the first need */
	{
		uint32_t o = 0;

		for (uint32_t i = 0; i < nc; i++) {
			uint32_t key = fkey(s[cand[i]]);
			bool take = key > prefix || (key == prefix && need);

			need -= key == prefix && take;
			cand[o] = cand[i];
			o += take;
		}
		nc = o;
	}
	/* merge (from the back, in place): nd + nc == k */
	for (uint32_t o = nd + nc; nc;) {
		if (nd && sel[nd - 1] > cand[nc - 1])
			sel[--o] = sel[--nd];
		else
			sel[--o] = cand[--nc];
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

/* kept rows prefetched while their pointers are looked up */
#ifndef PF_ROWS
#define PF_ROWS 64
#endif

static size_t al64(size_t x)
{
	return (x + 63) & ~(size_t)63;
}

/*
 * z[h] = sum over i < k of e[h * ss + sel[i]] for h < nq, each head's sum
 * in ascending i (as one head at a time would add them), four heads per
 * pass over sel[] (four independent add chains, one index load).
 */
static void kept_sums(const float *e, size_t ss, uint32_t nq,
		      const uint32_t *sel, uint32_t k, float *z)
{
	uint32_t h = 0;

	for (; h + 4 <= nq; h += 4) {
		const float *e0 = e + h * ss, *e1 = e0 + ss, *e2 = e1 + ss;
		const float *e3 = e2 + ss;
		float z0 = 0.0f, z1 = 0.0f, z2 = 0.0f, z3 = 0.0f;

		for (uint32_t i = 0; i < k; i++) {
			const uint32_t t = sel[i];

			z0 += e0[t];
			z1 += e1[t];
			z2 += e2[t];
			z3 += e3[t];
		}
		z[h] = z0;
		z[h + 1] = z1;
		z[h + 2] = z2;
		z[h + 3] = z3;
	}
	for (; h < nq; h++) {
		const float *eh = e + h * ss;
		float z0 = 0.0f;

		for (uint32_t i = 0; i < k; i++)
			z0 += eh[sel[i]];
		z[h] = z0;
	}
}

/* distinct pages of kept rows looked up per batch */
#define PG_BATCH 64

/*
 * Row pointers kp[i], vp[i] of the K and V rows of the @k kept tokens
 * sel[] (ascending): the distinct pages are looked up PG_BATCH at a time
 * (one j->pages call, or j->page per page without it), the first PF_ROWS
 * rows prefetched.  0, or -1 when a page is missing.
 */
static int kept_rows(const struct attn_job *j, uint32_t seq, uint32_t kvh,
		     const uint32_t *sel, uint32_t k, size_t row_bytes,
		     const char **kp, const char **vp)
{
	const uint32_t tpp = j->tpp;
	/* tpp is a power of two in practice: shift instead of divide */
	const bool p2 = !(tpp & (tpp - 1));
	const unsigned int tsh = (unsigned int)__builtin_ctz(tpp);
	uint32_t upg[PG_BATCH];
	const void *kpg[PG_BATCH], *vpg[PG_BATCH];

	for (uint32_t i = 0; i < k;) {
		uint32_t i0 = i, nu = 0, u;

		for (; i < k; i++) {
			uint32_t pg = p2 ? sel[i] >> tsh : sel[i] / tpp;

			if (!nu || upg[nu - 1] != pg) {
				if (nu == PG_BATCH)
					break;
				upg[nu++] = pg;
			}
		}
		if (j->pages) {
			if (j->pages(j->cookie, seq, kvh, upg, nu, kpg, vpg) !=
			    nu)
				return -1;
		} else {
			for (u = 0; u < nu; u++) {
				kpg[u] = j->page(j->cookie, seq, kvh, 0, upg[u]);
				vpg[u] = j->page(j->cookie, seq, kvh, 1, upg[u]);
				if (!kpg[u] || !vpg[u])
					return -1;
			}
		}
		for (u = 0; i0 < i; i0++) {
			uint32_t t = sel[i0];
			uint32_t pg = p2 ? t >> tsh : t / tpp;
			size_t off = (size_t)(t - pg * tpp) * row_bytes;

			u += pg != upg[u];
			kp[i0] = (const char *)kpg[u] + off;
			vp[i0] = (const char *)vpg[u] + off;
			if (i0 < PF_ROWS)	/* the kernel prefetches later ones */
				for (size_t o = 0; o < row_bytes; o += 64) {
					__builtin_prefetch(kp[i0] + o, 0, 2);
					__builtin_prefetch(vp[i0] + o, 0, 2);
				}
		}
	}
	return 0;
}

void attn_sparse_group(const struct attn_sparse_ops *ops,
		       attn_kernel_fn kernel, struct attn_job *j, uint32_t si,
		       uint32_t kvh, struct attn_scratch *sc)
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
	const float *q = j->q + hoff * d;
	float *out = j->out + hoff * d;
	/* scratch: scores [nq][ss], group P / gathered scores [ss], cand and
	 * sel [n + 16], K and V row pointers [k], tail rows [ntail], the
	 * heads' q on D [nq][r] */
	const size_t ss = (n + 15) & ~(size_t)15;
	const size_t o_g = al64((size_t)nq * ss * sizeof(float));
	const size_t o_cand = o_g + al64(ss * sizeof(float));
	const size_t o_sel = o_cand + al64(((size_t)n + 16) * sizeof(uint32_t));
	const size_t o_kp = o_sel + al64(((size_t)n + 16) * sizeof(uint32_t));
	const size_t o_vp = o_kp + al64((size_t)k * sizeof(void *));
	const size_t o_tr = o_vp + al64((size_t)k * sizeof(void *));
	const size_t o_qd = o_tr + al64((size_t)ntail * sizeof(void *));
	const size_t total = o_qd + (size_t)nq * r * sizeof(float);
	uint32_t dims[ATTN_MAX_HEAD_DIM];
	float qa[ATTN_MAX_HEAD_DIM], qm[ATTN_MAX_HEAD_DIM];
	float sch[ATTN_MAX_NQ], mxh[ATTN_MAX_NQ], zh[ATTN_MAX_NQ];
	float m[ATTN_MAX_NQ], l[ATTN_MAX_NQ], zkh[ATTN_MAX_NQ];
	float *qd;
	const void *cols[2][ATTN_MAX_HEAD_DIM];
	const char **trows, **kp, **vp;
	uint32_t *cand, *sel;
	struct rowcur rc;
	float *s, *g;
	char *mem;

	if (k >= n || !(mem = attn_scratch_get(sc, total))) {
		dense_group(kernel, j, si, kvh);
		return;
	}
	s = (float *)(void *)mem;
	g = (float *)(void *)(mem + o_g);
	cand = (uint32_t *)(void *)(mem + o_cand);
	sel = (uint32_t *)(void *)(mem + o_sel);
	kp = (const char **)(void *)(mem + o_kp);
	vp = (const char **)(void *)(mem + o_vp);
	trows = (const char **)(void *)(mem + o_tr);
	qd = (float *)(void *)(mem + o_qd);

	/* 1. the group's dims; each head's temperature */
	for (uint32_t i = 0; i < d; i++) {
		float v = 0.0f;

		for (uint32_t h = 0; h < nq; h++)
			v += fabsf(q[(size_t)h * d + i]);
		qa[i] = v;
	}
	attn_sparse_topdims(qa, d, r, dims);
	for (uint32_t h = 0; h < nq; h++) {
		const float *qh = q + (size_t)h * d;
		float all = 0.0f, part = 0.0f, ratio = 1.0f;

		for (uint32_t i = 0; i < d; i++)
			all += fabsf(qh[i]);
		for (uint32_t i = 0; i < r; i++) {
			part += fabsf(qh[dims[i]]);
			qd[h * r + i] = qh[dims[i]];
		}
		if (all > 0.0f && part > 0.0f && isfinite(all))
			ratio = part / all;
		sch[h] = j->scale / sqrtf(ratio);
	}

	/* 2. approximate scores, all heads; chunk c + 1's columns are
	 * looked up first so that their start is prefetched in time */
	for (uint32_t c = 0; c < nch; c++) {
		const void **cur = cols[c & 1], **nxt = cols[(c + 1) & 1];

		for (uint32_t i = 0; i < r && c == 0; i++) {
			cur[i] = j->chan(j->cookie, seq, kvh, dims[i], 0);
			if (!cur[i])
				goto fallback;
		}
		for (uint32_t i = 0; i < r && c + 1 < nch; i++) {
			nxt[i] = j->chan(j->cookie, seq, kvh, dims[i], c + 1);
			if (!nxt[i])
				goto fallback;
		}
		ops->chan_dot(dt, r, nq, qd, cur, c + 1 < nch ? nxt : NULL, ct,
			      s + (size_t)c * ct, ss);
	}
	if (ntail) {
		rc.page = NULL;
		rc.pg = 0;
		for (uint32_t t = 0; t < ntail; t++) {
			trows[t] = row_at(j, seq, kvh, 0, tail0 + t, row_bytes,
					  &rc);
			if (!trows[t])
				goto fallback;
		}
		memset(qm, 0, d * sizeof(float));
		for (uint32_t h = 0; h < nq; h++) {
			for (uint32_t i = 0; i < r; i++)
				qm[dims[i]] = qd[h * r + i];
			ops->rows_dot(dt, d, qm, trows, ntail,
				      s + h * ss + tail0);
		}
	}

	/* 3. the kept tokens: by s^ for one head, else by the summed
	 * approximate probabilities (each head's scores are replaced by
	 * their exponentials exp(scale^ (s^ - max)), summing to z) */
	for (uint32_t h = 0; h < nq; h++)
		mxh[h] = ops->vmax(s + h * ss, n);
	if (nq == 1) {
		zh[0] = ops->expsum(s, n, sch[0], sch[0] * mxh[0]);
		topk(ops, s, n, k, sel, cand);
	} else {
		for (uint32_t h = 0; h < nq; h++)
			zh[h] = ops->expput(s + h * ss, n, sch[h],
					    sch[h] * mxh[h]);
		for (uint32_t h = 0; h < nq; h++)
			m[h] = zh[h] > 0.0f && isfinite(zh[h]) ? 1.0f / zh[h]
							       : 0.0f;
		ops->wsum(s, ss, nq, m, n, g);
		topk(ops, g, n, k, sel, cand);
	}

	/* 4. exact attention of the group over the kept rows */
	if (kept_rows(j, seq, kvh, sel, k, row_bytes, kp, vp))
		goto fallback;
	/* report the reads now: the page table entries are in cache */
	if (j->sp_read)
		j->sp_read(j, si, kvh, dims, r, sel, k);
	{
		struct attn_args a = {
			.dtype = dt, .head_dim = d, .n_q = nq,
			.scale = j->scale, .q = q,
			.kpages = (const void *const *)kp,
			.vpages = (const void *const *)vp,
			.tpp = 1, .tok_begin = 0, .tok_end = k,
			.m = m, .l = l, .acc = out,
		};

		kernel(&a);
	}

	/* 5. kept share of each head's approximate softmax; mean(V) */
	if (nq > 1)
		kept_sums(s, ss, nq, sel, k, zkh);
	for (uint32_t h = 0; h < nq; h++) {
		const float *sh = s + h * ss;
		float *oh = out + (size_t)h * d;
		float zk, alpha, inv, w;

		if (nq == 1) {
			for (uint32_t i = 0; i < k; i++)
				g[i] = sh[sel[i]];
			zk = ops->expsum(g, k, sch[h], sch[h] * mxh[h]);
		} else {
			zk = zkh[h];
		}
		alpha = zh[h] > 0.0f && isfinite(zh[h]) ? zk / zh[h] : 1.0f;
		if (!(alpha > 0.0f) || alpha > 1.0f)
			alpha = 1.0f;
		inv = l[h] > 0.0f ? alpha / l[h] : 0.0f;
		w = (1.0f - alpha) / (float)n;
		for (uint32_t i = 0; i < d; i++)
			oh[i] = oh[i] * inv + vsum[i] * w;
		if (j->lse)
			j->lse[hoff + h] = l[h] > 0.0f ?
				m[h] + logf(l[h]) - logf(alpha) : -INFINITY;
	}

	return;

fallback:
	/* a page is missing (cannot happen with a consistent snapshot) */
	dense_group(kernel, j, si, kvh);
}
