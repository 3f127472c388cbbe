// SPDX-License-Identifier: MIT
/*
 * test_sparse.c - SparF sparse attention (command set v0.2).
 *
 * Engine level, on a synthetic paged store with token- and channel-indexed
 * K: k >= n equals dense attention exactly; the full SparF formula
 * (group-shared selection for GQA) against a straightforward double
 * precision implementation; scalar vs AVX2 vs
 * AVX-512 (hot loops and whole jobs); helpers; the read report; the
 * batched page lookup (attn_job.pages) gives bit-identical outputs.
 * Device level: validation of the new fields (nothing changes on error),
 * k = all through the drive equals dense, modeled bytes drop with the
 * ratio and the statistics log counts them, also with GQA (the group
 * shares its selection, so bytes stay about the ratio of dense).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_internal.h"
#include "csd/csd_spec.h"
#include "csdfw.h"
#include "cu_main.h"
#include "fw_helpers.h"

#define PAGE 4096

static uint64_t rs = 0x243f6a8885a308d3ull;

static float rndf(void)
{
	return (float)((double)(fwt_rand(&rs) >> 11) / 4503599627370496.0 -
		       1.0);
}

/* ---- a synthetic store: token pages, channel pages, vsum ---------------- */

struct sps {
	int dt;
	uint32_t d, kvh, nseq, maxn, tpp, ct, pps, cps;
	uint32_t n[8];
	size_t row;
	char *pool;		/* pages, shuffled */
	uint32_t *kslot, *vslot;	/* [seq][kvh][pps] */
	uint32_t *cslot;	/* [seq][kvh][cps][d] */
	float *kf, *vf;		/* quantized values [seq][kvh][maxn][d] */
	float *vsum;		/* [seq][kvh][d] */
};

static const void *sps_page(void *cookie, uint32_t seq, uint32_t kvh,
			    int which, uint32_t idx)
{
	struct sps *s = cookie;
	const uint32_t *sl = which ? s->vslot : s->kslot;

	if (seq >= s->nseq || kvh >= s->kvh || idx >= s->pps ||
	    (uint64_t)idx * s->tpp >= s->n[seq])
		return NULL;
	return s->pool + (size_t)sl[((size_t)seq * s->kvh + kvh) * s->pps +
				    idx] * PAGE;
}

static const void *sps_chan(void *cookie, uint32_t seq, uint32_t kvh,
			    uint32_t dim, uint32_t chunk)
{
	struct sps *s = cookie;

	if (seq >= s->nseq || kvh >= s->kvh || dim >= s->d ||
	    (uint64_t)(chunk + 1) * s->ct > s->n[seq])
		return NULL;
	return s->pool + (size_t)s->cslot[(((size_t)seq * s->kvh + kvh) *
					   s->cps + chunk) * s->d + dim] * PAGE;
}

static float *kf_at(struct sps *s, float *base, uint32_t seq, uint32_t h,
		    uint32_t t)
{
	return base + (((size_t)seq * s->kvh + h) * s->maxn + t) * s->d;
}

/* amp scales K (peakier attention) */
static struct sps *sps_new(int dt, uint32_t d, uint32_t kvh, uint32_t nseq,
			   const uint32_t *n, float amp)
{
	struct sps *s = calloc(1, sizeof(*s));
	size_t npg, nk, nc, i;
	uint32_t *perm;

	CU_ASSERT_FATAL(s != NULL && nseq <= 8);
	s->dt = dt;
	s->d = d;
	s->kvh = kvh;
	s->nseq = nseq;
	for (i = 0; i < nseq; i++) {
		s->n[i] = n[i];
		if (n[i] > s->maxn)
			s->maxn = n[i];
	}
	s->row = (size_t)d * csd_dtype_size(dt);
	s->tpp = PAGE / (uint32_t)s->row;
	s->ct = PAGE / csd_dtype_size(dt);
	s->pps = (s->maxn + s->tpp - 1) / s->tpp;
	s->cps = s->maxn / s->ct + 1;
	nk = (size_t)nseq * kvh * s->pps;
	nc = (size_t)nseq * kvh * s->cps * d;
	npg = 2 * nk + nc;
	s->pool = calloc(npg, PAGE);
	perm = malloc(npg * sizeof(*perm));
	s->kslot = perm;
	s->kf = calloc((size_t)nseq * kvh * s->maxn * d, sizeof(float));
	s->vf = calloc((size_t)nseq * kvh * s->maxn * d, sizeof(float));
	s->vsum = calloc((size_t)nseq * kvh * d, sizeof(float));
	CU_ASSERT_FATAL(s->pool && perm && s->kf && s->vf && s->vsum);
	for (i = 0; i < npg; i++)
		perm[i] = (uint32_t)i;
	for (i = npg; i > 1; i--) {
		size_t j = fwt_rand(&rs) % i;
		uint32_t x = perm[i - 1];

		perm[i - 1] = perm[j];
		perm[j] = x;
	}
	s->vslot = perm + nk;
	s->cslot = perm + 2 * nk;
	for (uint32_t q = 0; q < nseq; q++) {
		for (uint32_t h = 0; h < kvh; h++) {
			double vs[ATTN_MAX_HEAD_DIM] = { 0 };

			for (uint32_t t = 0; t < s->n[q]; t++) {
				char *kr = (char *)sps_page(s, q, h, 0,
							    t / s->tpp) +
					   (t % s->tpp) * s->row;
				char *vr = (char *)sps_page(s, q, h, 1,
							    t / s->tpp) +
					   (t % s->tpp) * s->row;
				float *kq = kf_at(s, s->kf, q, h, t);
				float *vq = kf_at(s, s->vf, q, h, t);

				for (uint32_t e = 0; e < d; e++) {
					/* a few dims carry most of K */
					float a = e % 8 == 3 ? 4.0f * amp : amp;

					attn_store_elem(kr, dt, e, a * rndf());
					attn_store_elem(vr, dt, e, rndf());
					kq[e] = attn_load_elem(kr, dt, e);
					vq[e] = attn_load_elem(vr, dt, e);
					vs[e] += vq[e];
				}
				if ((t + 1) % s->ct)
					continue;
				for (uint32_t e = 0; e < d; e++) {
					char *cp = (char *)sps_chan(s, q, h, e,
								    t / s->ct);

					for (uint32_t u = 0; u < s->ct; u++)
						attn_store_elem(cp, dt, u,
							*(kf_at(s, s->kf, q, h,
								t + 1 - s->ct +
								u) + e));
				}
			}
			for (uint32_t e = 0; e < d; e++)
				s->vsum[((size_t)q * kvh + h) * d + e] =
					(float)vs[e];
		}
	}
	return s;
}

static void sps_free(struct sps *s)
{
	if (!s)
		return;
	free(s->pool);
	free(s->kslot);
	free(s->kf);
	free(s->vf);
	free(s->vsum);
	free(s);
}

/* A job over all sequences of @s; outputs [nseq][qh][d], lse [nseq][qh]. */
struct jb {
	struct attn_job j;
	uint32_t seqs[8], lo[8], hi[8];
	float *q, *out, *lse;
};

static void jb_init(struct jb *b, struct sps *s, uint32_t qh,
		    const float *q)
{
	size_t nq = (size_t)s->nseq * qh * s->d;

	memset(b, 0, sizeof(*b));
	b->out = calloc(nq, sizeof(float));
	b->lse = calloc((size_t)s->nseq * qh, sizeof(float));
	CU_ASSERT_FATAL(b->out && b->lse);
	for (uint32_t i = 0; i < s->nseq; i++) {
		b->seqs[i] = i;
		b->hi[i] = s->n[i];
	}
	b->j.dtype = s->dt;
	b->j.head_dim = s->d;
	b->j.q_heads = qh;
	b->j.kv_heads = s->kvh;
	b->j.tpp = s->tpp;
	b->j.scale = 1.0f / sqrtf((float)s->d);
	b->j.nseq = s->nseq;
	b->j.seqs = b->seqs;
	b->j.lo = b->lo;
	b->j.hi = b->hi;
	b->j.q = q;
	b->j.out = b->out;
	b->j.lse = b->lse;
	b->j.page = sps_page;
	b->j.cookie = s;
	b->j.chan_tokens = s->ct;
	b->j.chan = sps_chan;
	b->j.vsum = s->vsum;
}

static void jb_sparse(struct jb *b, uint32_t r, uint32_t k, bool frac)
{
	b->j.sp_r = r;
	b->j.sp_k = k;
	b->j.sp_frac = frac;
}

static void jb_free(struct jb *b)
{
	free(b->out);
	free(b->lse);
}

static float *rand_q(uint32_t nseq, uint32_t qh, uint32_t d)
{
	size_t n = (size_t)nseq * qh * d;
	float *q = malloc(n * sizeof(float));

	CU_ASSERT_FATAL(q != NULL);
	for (size_t i = 0; i < n; i++)
		q[i] = rndf() * (i % 5 == 0 ? 3.0f : 1.0f);
	return q;
}

static double nmse(const float *a, const float *ref, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
		den += (double)ref[i] * ref[i];
	}
	return den > 0 ? num / den : num;
}

static const int dtypes[3] = { CSD_DTYPE_F32, CSD_DTYPE_F16, CSD_DTYPE_BF16 };

/* ---- engine: k >= n is dense ------------------------------------------- */

static void test_k_all_is_dense(void)
{
	static const uint32_t lens[] = { 1, 17, 2047, 2048, 2049, 5000 };
	static const uint32_t gqa[] = { 1, 4 };

	for (int di = 0; di < 3; di++) {
		for (unsigned int gi = 0; gi < 2; gi++) {
			const uint32_t d = dtypes[di] == CSD_DTYPE_F32 ? 64 : 128;
			const uint32_t kvh = 2, qh = kvh * gqa[gi];
			struct sps *s = sps_new(dtypes[di], d, kvh, 6, lens,
						1.0f);
			float *q = rand_q(6, qh, d);
			struct jb dn, sp, fr;
			size_t no = (size_t)6 * qh * d;
			double md = 0;

			jb_init(&dn, s, qh, q);
			jb_init(&sp, s, qh, q);
			jb_init(&fr, s, qh, q);
			jb_sparse(&sp, d / 8, 5000, false);
			jb_sparse(&fr, 1, CSD_SPARSE_MAX_K, true);
			CU_ASSERT_EQUAL(attn_run_single(&dn.j, CSD_SIMD_AUTO), 0);
			CU_ASSERT_EQUAL(attn_run_single(&sp.j, CSD_SIMD_AUTO), 0);
			CU_ASSERT_EQUAL(attn_run_single(&fr.j, CSD_SIMD_AUTO), 0);
			for (size_t i = 0; i < no; i++) {
				md = fmax(md, fabs(sp.out[i] - dn.out[i]));
				md = fmax(md, fabs(fr.out[i] - dn.out[i]));
			}
			for (size_t i = 0; i < (size_t)6 * qh; i++) {
				md = fmax(md, fabs(sp.lse[i] - dn.lse[i]));
				md = fmax(md, fabs(fr.lse[i] - dn.lse[i]));
			}
			CU_ASSERT(md <= 1e-6);
			if (md > 1e-6)
				fprintf(stderr, "dtype %d gqa %u: max diff %g\n",
					dtypes[di], gqa[gi], md);
			jb_free(&dn);
			jb_free(&sp);
			jb_free(&fr);
			free(q);
			sps_free(s);
		}
	}
}

/* ---- engine: the formula against a double reference ---------------------- */

/*
 * SparF of the @nq q heads @q ([nq][d]) of kv head @kvh of sequence @seq
 * in double, group-shared selection: D = top-r of sum_h |q_h|; per head
 * s^_h and scale^_h; kept = top-k of P_t = sum_h softmax(scale^_h s^_h)_t
 * (one head: of s^_t); alpha_h = kept share of head h's softmax.  Outputs
 * out [nq][d], lse [nq].  Returns the relative gap between the k-th and
 * (k+1)-th ranking values (selection robustness).
 */
static double ref_group(struct sps *s, uint32_t seq, uint32_t kvh,
			const float *q, uint32_t nq, double scale, uint32_t r,
			uint32_t k, double *out, double *lse)
{
	const uint32_t d = s->d, n = s->n[seq];
	uint32_t dims[ATTN_MAX_HEAD_DIM];
	bool used[ATTN_MAX_HEAD_DIM] = { false };
	double qa[ATTN_MAX_HEAD_DIM] = { 0 }, mean[ATTN_MAX_HEAD_DIM] = { 0 };
	double *sc = malloc((size_t)nq * n * sizeof(double));
	double *pr = calloc(n, sizeof(double));
	double *sh = malloc(nq * sizeof(double)), *mx = malloc(nq * sizeof(double));
	double *z = calloc(nq, sizeof(double));
	uint32_t *ord = malloc(n * sizeof(uint32_t));
	double gap;

	CU_ASSERT_FATAL(sc && pr && sh && mx && z && ord);
	for (uint32_t h = 0; h < nq; h++)
		for (uint32_t i = 0; i < d; i++)
			qa[i] += fabs(q[h * d + i]);
	for (uint32_t j = 0; j < r; j++) {	/* largest, lowest index */
		uint32_t best = UINT32_MAX;

		for (uint32_t i = 0; i < d; i++)
			if (!used[i] && (best == UINT32_MAX || qa[i] > qa[best]))
				best = i;
		used[best] = true;
	}
	for (uint32_t i = 0, j = 0; i < d; i++)
		if (used[i])
			dims[j++] = i;
	for (uint32_t h = 0; h < nq; h++) {
		const float *qh = q + h * d;
		double l1 = 0, l1r = 0;

		for (uint32_t i = 0; i < d; i++)
			l1 += fabs(qh[i]);
		for (uint32_t j = 0; j < r; j++)
			l1r += fabs(qh[dims[j]]);
		sh[h] = scale / sqrt(l1r / l1);
		mx[h] = -INFINITY;
		for (uint32_t t = 0; t < n; t++) {
			const float *kr = kf_at(s, s->kf, seq, kvh, t);
			double a = 0;

			for (uint32_t j = 0; j < r; j++)
				a += (double)qh[dims[j]] * kr[dims[j]];
			sc[(size_t)h * n + t] = a;
			mx[h] = fmax(mx[h], a);
		}
		for (uint32_t t = 0; t < n; t++)
			z[h] += exp(sh[h] * (sc[(size_t)h * n + t] - mx[h]));
	}
	for (uint32_t t = 0; t < n; t++) {
		ord[t] = t;
		if (nq == 1) {
			pr[t] = sc[t];
			continue;
		}
		for (uint32_t h = 0; h < nq; h++)
			pr[t] += exp(sh[h] * (sc[(size_t)h * n + t] - mx[h])) /
				 z[h];
	}
	/* order by the ranking value, desc (the top k + 1 only) */
	for (uint32_t i = 0; i <= k && i < n; i++) {
		uint32_t b = i;

		for (uint32_t t = i + 1; t < n; t++)
			if (pr[ord[t]] > pr[ord[b]])
				b = t;
		uint32_t x = ord[i];

		ord[i] = ord[b];
		ord[b] = x;
	}
	gap = k < n ? (pr[ord[k - 1]] - pr[ord[k]]) /
		      (fabs(pr[ord[0]]) + 1e-30) : 1.0;
	for (uint32_t t = 0; t < n; t++) {
		const float *vr = kf_at(s, s->vf, seq, kvh, t);

		for (uint32_t e = 0; e < d; e++)
			mean[e] += vr[e];
	}
	for (uint32_t h = 0; h < nq; h++) {
		const float *qh = q + h * d;
		double acc[ATTN_MAX_HEAD_DIM] = { 0 };
		double m = -INFINITY, l = 0, zk = 0, alpha;

		for (uint32_t i = 0; i < k; i++)
			zk += exp(sh[h] * (sc[(size_t)h * n + ord[i]] - mx[h]));
		alpha = zk / z[h];
		for (uint32_t i = 0; i < k; i++) {
			const float *kr = kf_at(s, s->kf, seq, kvh, ord[i]);
			double a = 0;

			for (uint32_t e = 0; e < d; e++)
				a += (double)qh[e] * kr[e];
			pr[i] = a * scale;	/* reuse: exact scores */
			m = fmax(m, pr[i]);
		}
		for (uint32_t i = 0; i < k; i++) {
			const float *vr = kf_at(s, s->vf, seq, kvh, ord[i]);
			double p = exp(pr[i] - m);

			l += p;
			for (uint32_t e = 0; e < d; e++)
				acc[e] += p * vr[e];
		}
		for (uint32_t e = 0; e < d; e++)
			out[h * d + e] = alpha * acc[e] / l +
					 (1 - alpha) * mean[e] / n;
		lse[h] = m + log(l) - log(alpha);
	}
	free(sc);
	free(pr);
	free(sh);
	free(mx);
	free(z);
	free(ord);
	return gap;
}

static void test_formula_vs_double(void)
{
	static const uint32_t lens[] = { 700, 2348, 2048, 4096 + 37 };
	static const uint32_t gqa[] = { 1, 2, 4 };
	const uint32_t kvh = 2, d = 64, r = 8, k = 50;
	uint32_t checked = 0, total = 0;

	for (int di = 0; di < 3; di++) {
		for (unsigned int gi = 0; gi < 3; gi++) {
			const uint32_t nq = gqa[gi], qh = kvh * nq;
			struct sps *s = sps_new(dtypes[di], d, kvh, 4, lens,
						2.0f);
			float *q = rand_q(4, qh, d);
			double ref[4 * ATTN_MAX_HEAD_DIM], lse[4];
			struct jb sp;

			jb_init(&sp, s, qh, q);
			jb_sparse(&sp, r, k, false);
			CU_ASSERT_EQUAL(attn_run_single(&sp.j, CSD_SIMD_SCALAR),
					0);
			for (uint32_t i = 0; i < 4; i++) {
				for (uint32_t g = 0; g < kvh; g++) {
					size_t o = ((size_t)i * qh + g * nq);
					double gap, err = 0, lerr = 0;

					gap = ref_group(s, i, g, q + o * d, nq,
							sp.j.scale, r, k, ref,
							lse);
					total++;
					if (gap < 1e-4)
						continue;	/* near-tie */
					checked++;
					for (uint32_t e = 0; e < nq * d; e++)
						err = fmax(err, fabs(sp.out[o * d + e] -
								     ref[e]));
					for (uint32_t h = 0; h < nq; h++)
						lerr = fmax(lerr, fabs(sp.lse[o + h] -
								       lse[h]));
					CU_ASSERT(err < 2e-5);
					CU_ASSERT(lerr < 1e-4);
					if (err >= 2e-5 || lerr >= 1e-4)
						fprintf(stderr, "dt %d gqa %u seq %u g %u: err %g lse %g\n",
							dtypes[di], nq, i, g, err,
							lerr);
				}
			}
			jb_free(&sp);
			free(q);
			sps_free(s);
		}
	}
	CU_ASSERT(checked * 10 >= total * 8);
}

/* Hand-computed: 4 tokens, d 16, r 1, k 2 (f32, all tail). */
static void test_formula_by_hand(void)
{
	const uint32_t n4[1] = { 4 };
	struct sps *s = sps_new(CSD_DTYPE_F32, 16, 1, 1, n4, 1.0f);
	float q[16] = { 0 };
	struct jb sp;
	double s_hat[4], z = 0, zk, alpha, lse, sc[2], m, l, o;

	/* K: dim 0 = 3, 1, 2, 0 for tokens 0..3; dim 1 = 1 for all;
	 * V: dim 0 = token index; q = (2, 1, 0...) -> D = {0} */
	for (uint32_t t = 0; t < 4; t++) {
		float *kr = (float *)((char *)sps_page(s, 0, 0, 0, 0) +
				      t * s->row);
		float *vr = (float *)((char *)sps_page(s, 0, 0, 1, 0) +
				      t * s->row);
		static const float k0[4] = { 3, 1, 2, 0 };

		memset(kr, 0, s->row);
		memset(vr, 0, s->row);
		kr[0] = k0[t];
		kr[1] = 1;
		vr[0] = (float)t;
	}
	s->vsum[0] = 0 + 1 + 2 + 3;
	for (uint32_t e = 1; e < 16; e++)
		s->vsum[e] = 0;
	q[0] = 2;
	q[1] = 1;
	jb_init(&sp, s, 1, q);
	jb_sparse(&sp, 1, 2, false);
	sp.j.scale = 0.5f;
	CU_ASSERT_EQUAL(attn_run_single(&sp.j, CSD_SIMD_SCALAR), 0);
	/* ratio ||q_D||_1 / ||q||_1 = 2/3: scale^ = 0.5 / sqrt(2/3) */
	const double shat = 0.5 / sqrt(2.0 / 3.0);

	s_hat[0] = 6;
	s_hat[1] = 2;
	s_hat[2] = 4;
	s_hat[3] = 0;
	for (int t = 0; t < 4; t++)
		z += exp(shat * (s_hat[t] - 6));
	zk = exp(0) + exp(shat * (4 - 6.0));	/* tokens 0 and 2 */
	alpha = zk / z;
	sc[0] = 0.5 * (2 * 3 + 1);		/* exact scores */
	sc[1] = 0.5 * (2 * 2 + 1);
	m = sc[0];
	l = 1 + exp(sc[1] - m);
	o = (0 * 1 + 2 * exp(sc[1] - m)) / l;	/* attn over V dim 0 */
	o = alpha * o + (1 - alpha) * 6.0 / 4;
	lse = m + log(l) - log(alpha);
	CU_ASSERT(fabs(sp.out[0] - o) < 1e-6);
	CU_ASSERT(fabs(sp.out[1]) < 1e-7);
	CU_ASSERT(fabs(sp.lse[0] - lse) < 1e-5);
	jb_free(&sp);
	sps_free(s);
}

/* ---- engine: SIMD ------------------------------------------------------ */

static void test_ops_simd(void)
{
	const struct attn_sparse_ops *ref = &attn_sparse_scalar;
	enum { N = 2048 + 13, R = 13, D = 128, NQ = 7, SS = N + 3 };
	static char cols[R][N * 4];
	static char rows[64][D * 4];
	static float s0[NQ * SS], s1[NQ * SS];
	static uint32_t h0[N + 16], e0[N + 16], h1[N + 16], e1[N + 16];
	const void *cp[R];
	const char *rp[64];
	float qd[NQ * R], q[D], w[NQ];

	for (int simd = CSD_SIMD_AVX2; simd < CSD_SIMD_COUNT; simd++) {
		const struct attn_sparse_ops *o = attn_sparse_ops_get(simd);

		if (!attn_simd_supported(simd)) {
			cu_skip(attn_simd_name(simd));
			continue;
		}
		CU_ASSERT_FATAL(o != NULL);
		for (int di = 0; di < 3; di++) {
			const int dt = dtypes[di];
			double e;

			for (int j = 0; j < NQ * R; j++)
				qd[j] = rndf();
			for (int j = 0; j < R; j++) {
				cp[j] = cols[j];
				for (int t = 0; t < N; t++)
					attn_store_elem(cols[j], dt, t, rndf());
			}
			for (int t = 0; t < 64; t++) {
				rp[t] = rows[t];
				for (int i = 0; i < D; i++)
					attn_store_elem(rows[t], dt, i, rndf());
			}
			for (int i = 0; i < D; i++)
				q[i] = rndf();
			/* 1..7 heads (blocks of 4, 2 and 1), with and
			 * without the next chunk's columns to prefetch */
			for (uint32_t n = 1; n <= N; n += n < 40 ? 1 : 997) {
				for (uint32_t nq = 1; nq <= NQ; nq += 1 + (n > 40)) {
					ref->chan_dot(dt, R, nq, qd, cp, NULL, n,
						      s0, SS);
					o->chan_dot(dt, R, nq, qd, cp,
						    n % 2 ? cp : NULL, n, s1, SS);
					for (uint32_t h = 0; h < nq; h++) {
						e = nmse(s1 + h * SS, s0 + h * SS,
							 n);
						CU_ASSERT(e < 1e-10);
					}
				}
			}
			for (uint32_t n = 1; n <= 64; n++) {
				ref->rows_dot(dt, D, q, rp, n, s0);
				o->rows_dot(dt, D, q, rp, n, s1);
				CU_ASSERT(nmse(s1, s0, n) < 1e-10);
			}
		}
		for (uint32_t n = 1; n < 100; n++) {
			for (uint32_t t = 0; t < n; t++)
				s0[t] = 5 * rndf();
			s0[n / 2] = NAN;
			CU_ASSERT_EQUAL(o->vmax(s0, n), ref->vmax(s0, n));
			s0[n / 2] = -INFINITY;
			float a = ref->expsum(s0, n, 0.7f, 1.5f);
			float b = o->expsum(s0, n, 0.7f, 1.5f);

			CU_ASSERT(fabsf(a - b) <= 1e-5f * a);
			/* expput: the same sum, the exponentials in place */
			memcpy(s1, s0, n * sizeof(float));
			b = o->expput(s1, n, 0.7f, 1.5f);
			CU_ASSERT(fabsf(a - b) <= 1e-5f * a);
			for (uint32_t t = 0; t < n; t++)
				CU_ASSERT(fabsf(s1[t] - expf(0.7f * s0[t] - 1.5f)) <=
					  1e-6f * (1 + s1[t]));
		}
		/* wsum: weighted sum of head rows */
		for (uint32_t nq = 1; nq <= NQ; nq++) {
			for (uint32_t t = 0; t < NQ * SS; t++)
				s0[t] = rndf();
			for (uint32_t h = 0; h < nq; h++)
				w[h] = rndf();
			for (uint32_t n = 1; n <= N; n += n < 40 ? 1 : 997) {
				ref->wsum(s0, SS, nq, w, n, s1);
				o->wsum(s0, SS, nq, w, n, s1 + SS);
				for (uint32_t t = 0; t < n; t++)
					CU_ASSERT(fabsf(s1[t] - s1[SS + t]) <= 1e-6f);
			}
		}
		/* split by the order key's top byte: exactly the scalar's */
		for (uint32_t n = 1; n <= N; n += n < 40 ? 1 : 331) {
			uint32_t nh0, ne0, nh1, ne1;

			for (uint32_t t = 0; t < n; t++)
				s0[t] = (t % 7 == 0 ? 1e-3f : 8.0f) * rndf();
			s0[0] = -0.0f;
			s0[n - 1] = 0.0f;
			for (uint32_t kb = 0x3c; kb <= 0xc4; kb += 4) {
				attn_sparse_split_scalar(s0, n, kb, h0, &nh0,
							 e0, &ne0);
				o->split(s0, n, kb, h1, &nh1, e1, &ne1);
				CU_ASSERT_EQUAL(nh0, nh1);
				CU_ASSERT_EQUAL(ne0, ne1);
				CU_ASSERT(!memcmp(h0, h1, nh0 * 4));
				CU_ASSERT(!memcmp(e0, e1, ne0 * 4));
			}
		}
	}
}

static void test_jobs_simd(void)
{
	static const uint32_t lens[] = { 3000, 4096, 700, 5000 };

	for (int di = 0; di < 3; di++) {
		const uint32_t d = 128, kvh = 2, qh = 8;
		struct sps *s = sps_new(dtypes[di], d, kvh, 4, lens, 2.0f);
		float *q = rand_q(4, qh, d);
		struct jb ref;

		jb_init(&ref, s, qh, q);
		jb_sparse(&ref, 16, 1u << 20, true);	/* 1/16 of tokens */
		CU_ASSERT_EQUAL(attn_run_single(&ref.j, CSD_SIMD_SCALAR), 0);
		for (int simd = CSD_SIMD_AVX2; simd < CSD_SIMD_COUNT; simd++) {
			struct jb b;
			double e;

			if (!attn_simd_supported(simd))
				continue;
			jb_init(&b, s, qh, q);
			jb_sparse(&b, 16, 1u << 20, true);
			CU_ASSERT_EQUAL(attn_run_single(&b.j, simd), 0);
			e = nmse(b.out, ref.out, (size_t)4 * qh * d);
			CU_ASSERT(e <= 5e-4);
			if (dtypes[di] == CSD_DTYPE_F32)
				CU_ASSERT(e <= 1e-6);
			jb_free(&b);
		}
		/* the engine on a pool gives the single-thread result */
		{
			struct attn_engine *eng;
			struct jb b;

			CU_ASSERT_EQUAL_FATAL(attn_engine_create(2, CSD_SIMD_SCALAR,
								 &eng), 0);
			jb_init(&b, s, qh, q);
			jb_sparse(&b, 16, 1u << 20, true);
			CU_ASSERT_EQUAL(attn_engine_submit(eng, &b.j), 0);
			attn_engine_destroy(eng);
			CU_ASSERT_EQUAL(memcmp(b.out, ref.out,
					       (size_t)4 * qh * d * 4), 0);
			jb_free(&b);
		}
		jb_free(&ref);
		free(q);
		sps_free(s);
	}
}

/* ---- engine: helpers, report, checks ------------------------------------- */

static void test_helpers(void)
{
	uint32_t dims[8];
	float q[16] = { 0 };

	CU_ASSERT_EQUAL(attn_sparse_k(5, false, 100), 5);
	CU_ASSERT_EQUAL(attn_sparse_k(500, false, 100), 100);
	CU_ASSERT_EQUAL(attn_sparse_k(0, true, 100), 1);
	CU_ASSERT_EQUAL(attn_sparse_k(1u << 23, true, 101), 51);	/* ceil */
	CU_ASSERT_EQUAL(attn_sparse_k(1u << 20, true, 32768), 2048);
	CU_ASSERT_EQUAL(attn_sparse_k(CSD_SPARSE_MAX_K, true, 1000000), 1000000);
	CU_ASSERT_EQUAL(attn_sparse_k(1, true, 1), 1);

	/* ties go to the lower index; ratio ||q_D||_1 / ||q||_1 */
	for (int i = 0; i < 16; i++)
		q[i] = 1.0f;
	CU_ASSERT_DOUBLE_EQUAL(attn_sparse_topdims(q, 16, 4, dims), 0.25, 1e-6);
	CU_ASSERT(dims[0] == 0 && dims[1] == 1 && dims[2] == 2 && dims[3] == 3);
	q[9] = -5.0f;
	q[15] = 2.0f;
	CU_ASSERT_DOUBLE_EQUAL(attn_sparse_topdims(q, 16, 3, dims),
			       8.0 / 21.0, 1e-6);
	CU_ASSERT(dims[0] == 0 && dims[1] == 9 && dims[2] == 15);
	memset(q, 0, sizeof(q));
	CU_ASSERT_DOUBLE_EQUAL(attn_sparse_topdims(q, 16, 2, dims), 1.0, 0);
	CU_ASSERT(dims[0] == 0 && dims[1] == 1);
}

struct rep {
	uint32_t calls, nd, nt, bad;
};

static void rep_read(struct attn_job *job, uint32_t si, uint32_t kvh,
		     const uint32_t *dims, uint32_t nd, const uint32_t *toks,
		     uint32_t nt)
{
	struct rep *r = job->priv;

	(void)kvh;
	r->calls++;
	r->nd += nd;
	r->nt += nt;
	for (uint32_t i = 1; i < nd; i++)
		r->bad += dims[i] <= dims[i - 1];
	for (uint32_t i = 0; i < nt; i++)
		r->bad += toks[i] >= job->hi[si] ||
			  (i && toks[i] <= toks[i - 1]);
}

static void test_read_report(void)
{
	static const uint32_t lens[] = { 5000, 100 };
	struct sps *s = sps_new(CSD_DTYPE_F16, 128, 2, 2, lens, 1.0f);
	float *q = rand_q(2, 2, 128);
	struct rep rp = { 0 };
	struct jb b;

	/* MHA: one q head per group -> exactly r dims and k tokens */
	jb_init(&b, s, 2, q);
	jb_sparse(&b, 16, 300, false);
	b.j.sp_read = rep_read;
	b.j.priv = &rp;
	CU_ASSERT_EQUAL(attn_run_single(&b.j, CSD_SIMD_AUTO), 0);
	/* sequence 1 keeps all its 100 tokens: dense, no report */
	CU_ASSERT_EQUAL(rp.calls, 2);
	CU_ASSERT_EQUAL(rp.nd, 2 * 16);
	CU_ASSERT_EQUAL(rp.nt, 2 * 300);
	CU_ASSERT_EQUAL(rp.bad, 0);
	jb_free(&b);
	/* GQA 4: the group shares its selection -> still r dims, k tokens */
	free(q);
	q = rand_q(2, 8, 128);
	memset(&rp, 0, sizeof(rp));
	jb_init(&b, s, 8, q);
	jb_sparse(&b, 16, 300, false);
	b.j.sp_read = rep_read;
	b.j.priv = &rp;
	CU_ASSERT_EQUAL(attn_run_single(&b.j, CSD_SIMD_AUTO), 0);
	CU_ASSERT_EQUAL(rp.calls, 2);
	CU_ASSERT_EQUAL(rp.nd, 2 * 16);
	CU_ASSERT_EQUAL(rp.nt, 2 * 300);
	CU_ASSERT_EQUAL(rp.bad, 0);
	/* invalid sparse jobs */
	b.lo[0] = 1;
	CU_ASSERT_EQUAL(attn_run_single(&b.j, CSD_SIMD_AUTO), -EINVAL);
	b.lo[0] = 0;
	b.j.sp_r = 129;
	CU_ASSERT_EQUAL(attn_run_single(&b.j, CSD_SIMD_AUTO), -EINVAL);
	b.j.sp_r = 16;
	b.j.chan = NULL;
	CU_ASSERT_EQUAL(attn_run_single(&b.j, CSD_SIMD_AUTO), -EINVAL);
	jb_free(&b);
	free(q);
	sps_free(s);
}

/* batched page lookup (attn_job.pages): stops at the first missing page */
static uint32_t sps_pages(void *cookie, uint32_t seq, uint32_t kvh,
			  const uint32_t *pg, uint32_t n, const void **kpg,
			  const void **vpg)
{
	for (uint32_t i = 0; i < n; i++) {
		kpg[i] = sps_page(cookie, seq, kvh, 0, pg[i]);
		vpg[i] = sps_page(cookie, seq, kvh, 1, pg[i]);
		if (!kpg[i] || !vpg[i])
			return i;
	}
	return n;
}

/* the batched lookup gives bit-identical outputs, every ISA and GQA factor
 * (kept rows spanning more than one batch of 64 pages) */
static void test_pages_batched(void)
{
	static const uint32_t lens[] = { 20000, 3000, 2049 };

	for (uint32_t g = 1; g <= 4; g *= 2) {
		struct sps *s = sps_new(CSD_DTYPE_F16, 128, 2, 3, lens, 2.0f);
		float *q = rand_q(3, 2 * g, 128);

		for (int simd = 0; simd < CSD_SIMD_COUNT; simd++) {
			struct jb a, b;

			if (!attn_simd_supported(simd))
				continue;
			jb_init(&a, s, 2 * g, q);
			jb_sparse(&a, 16, 1u << 21, true);	/* 1/8 */
			CU_ASSERT_EQUAL(attn_run_single(&a.j, simd), 0);
			jb_init(&b, s, 2 * g, q);
			jb_sparse(&b, 16, 1u << 21, true);
			b.j.pages = sps_pages;
			CU_ASSERT_EQUAL(attn_run_single(&b.j, simd), 0);
			CU_ASSERT(!memcmp(a.out, b.out,
					  (size_t)3 * 2 * g * 128 * 4));
			CU_ASSERT(!memcmp(a.lse, b.lse, (size_t)3 * 2 * g * 4));
			jb_free(&a);
			jb_free(&b);
		}
		free(q);
		sps_free(s);
	}
}

/* ---- device ------------------------------------------------------------- */

#define OPTS "profile=instinfer,capacity=1G,threads=2,tags=16,attn_seqs=4," \
	     "contexts=4,xfer=8M,seqs=8,tokens=65536"

static struct csdfw *open_dev(void)
{
	struct csdfw_config cfg;
	struct csdfw *fw = NULL;
	char err[128];

	csdfw_config_default(&cfg);
	if (csdfw_config_parse(&cfg, OPTS, err, sizeof(err)))
		return NULL;
	if (csdfw_create(&cfg, &fw))
		return NULL;
	return fw;
}

static int get_stats(struct csdfw *fw, struct csd_log_stats *st)
{
	struct csd_sqe s;
	uint32_t numd = sizeof(*st) / 4 - 1;

	memset(&s, 0, sizeof(s));
	s.opcode = CSD_ADM_GET_LOG_PAGE;
	s.cdw10 = CSD_LOG_STATS | numd << 16;
	return fwt_run(fw, CSDFW_Q_ADMIN, &s, st, sizeof(*st), NULL);
}

/* Fill (seq, layer 0) with @n random tokens. */
static void dev_fill(struct csdfw *fw, uint32_t ctx, uint32_t seq, uint32_t n,
		     uint32_t kvh, uint32_t d, int dt)
{
	const uint32_t chunk = 1024;
	size_t row = (size_t)kvh * d * csd_dtype_size(dt);
	char *buf = malloc(2 * chunk * row);

	CU_ASSERT_FATAL(buf != NULL);
	for (uint32_t t = 0; t < n; t += chunk) {
		uint32_t m = n - t < chunk ? n - t : chunk;

		for (size_t i = 0; i < 2 * m * row / csd_dtype_size(dt); i++)
			fwt_store(buf, i, dt, rndf() * (i % 8 == 3 ? 4 : 1));
		CU_ASSERT_EQUAL(fwt_kv(fw, CSD_IO_KV_APPEND, ctx, seq, 0, t, m,
				       buf, 2 * m * row, NULL), 0);
	}
	free(buf);
}

/* Submit (cdw2, cdw3, flags) then read; returns the submit status. */
static uint16_t dev_attn(struct csdfw *fw, uint32_t ctx, uint32_t nseq,
			 const uint32_t *seqs, const float *q, size_t qlen,
			 uint32_t flags, uint32_t window, uint32_t cdw3,
			 float *out, size_t olen, uint32_t *read_ns)
{
	size_t len = nseq * 4 + qlen;
	char *buf = malloc(len);
	struct csd_sqe s = fwt_attn_sqe(ctx, 3, 0, nseq, flags, 0.0f, window,
					len);
	struct csd_cqe cqe;
	uint16_t st;

	CU_ASSERT_FATAL(buf != NULL);
	memcpy(buf, seqs, nseq * 4);
	memcpy(buf + nseq * 4, q, qlen);
	s.cdw3 = cdw3;
	st = fwt_run(fw, CSDFW_Q_IO, &s, buf, len, NULL);
	free(buf);
	if (st)
		return st;
	CU_ASSERT_EQUAL(fwt_attn_read(fw, ctx, 3, out, olen, &cqe), 0);
	if (read_ns)
		*read_ns = cqe.dw1;
	return 0;
}

static void test_dev_validation(void)
{
	struct csdfw *fw = open_dev();
	const uint32_t seq = 0, qh = 4, d = 64;
	float q[4 * 64], out[4 * 64 + 4];
	struct csd_log_stats a, b;
	uint32_t ctx;

	CU_ASSERT_FATAL(fw != NULL);
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 1, 2, qh, d, CSD_DTYPE_F16, 8,
					 65536, &ctx), 0);
	dev_fill(fw, ctx, seq, 3000, 2, d, CSD_DTYPE_F16);
	for (int i = 0; i < 4 * 64; i++)
		q[i] = rndf();
	CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
	/* SPARSE + window */
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE, 100,
				 CSD_CDW3_SPARSE(8, 100), out, sizeof(q),
				 NULL), fwt_err(ST_IF));
	/* CDW3 without SPARSE; FRAC without SPARSE */
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q), 0, 0,
				 CSD_CDW3_SPARSE(8, 100), out, sizeof(q),
				 NULL), fwt_err(ST_IF));
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE_FRAC, 0, 0, out, sizeof(q),
				 NULL), fwt_err(ST_IF));
	/* k = 0, absolute and fraction */
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE, 0, CSD_CDW3_SPARSE(8, 0),
				 out, sizeof(q), NULL), fwt_err(ST_IF));
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE | CSD_ATTN_F_SPARSE_FRAC, 0,
				 CSD_CDW3_SPARSE(8, 0), out, sizeof(q), NULL),
			fwt_err(ST_IF));
	/* r > head_dim (a range check, after the context) */
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE, 0, CSD_CDW3_SPARSE(65, 10),
				 out, sizeof(q), NULL), fwt_err(ST_IF));
	CU_ASSERT_EQUAL(dev_attn(fw, 99, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE, 0, CSD_CDW3_SPARSE(65, 10),
				 out, sizeof(q), NULL),
			fwt_err(VS(CTX_INVALID)));
	/* undefined flag bit 4 */
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q), 1u << 4, 0, 0,
				 out, sizeof(q), NULL), fwt_err(ST_IF));
	/* nothing changed: no call counted, the tag is free */
	CU_ASSERT_EQUAL(get_stats(fw, &b), 0);
	CU_ASSERT_EQUAL(a.attn_calls, b.attn_calls);
	CU_ASSERT_EQUAL(a.flash_bytes_read, b.flash_bytes_read);
	CU_ASSERT_EQUAL(a.kv_bytes_stored, b.kv_bytes_stored);
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, sizeof(q),
				 CSD_ATTN_F_SPARSE | CSD_ATTN_F_LSE, 0,
				 CSD_CDW3_SPARSE(64, 10), out, sizeof(out),
				 NULL), 0);
	for (int i = 0; i < 4 * 64 + 4; i++)
		CU_ASSERT(isfinite(out[i]));
	csdfw_destroy(fw);
}

static void test_dev_dense_and_bytes(void)
{
	struct csdfw *fw = open_dev();
	const uint32_t kvh = 4, qh = 4, d = 128, n = 16384 + 1000;
	const uint32_t seqs[2] = { 0, 1 };
	size_t qn = (size_t)2 * qh * d, on = qn + 2 * qh;
	float *q = malloc(qn * 4), *o1 = malloc(on * 4), *o2 = malloc(on * 4);
	struct csd_log_stats a, b;
	uint64_t dense_bytes, prev = UINT64_MAX;
	uint32_t ctx, ns_dense, ns_sp, ns_prev = UINT32_MAX;
	static const uint32_t inv[3] = { 4, 8, 16 };

	CU_ASSERT_FATAL(fw && q && o1 && o2);
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 1, kvh, qh, d, CSD_DTYPE_F16, 8,
					 65536, &ctx), 0);
	dev_fill(fw, ctx, 0, n, kvh, d, CSD_DTYPE_F16);
	dev_fill(fw, ctx, 1, 2049, kvh, d, CSD_DTYPE_F16);
	for (size_t i = 0; i < qn; i++)
		q[i] = rndf();

	/* dense vs k = all (absolute and fraction): identical */
	CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 2, seqs, q, qn * 4, CSD_ATTN_F_LSE,
				 0, 0, o1, on * 4, &ns_dense), 0);
	CU_ASSERT_EQUAL(get_stats(fw, &b), 0);
	dense_bytes = b.flash_bytes_read - a.flash_bytes_read;
	CU_ASSERT(dense_bytes >= 2ull * kvh * (n + 2049) * d * 2);
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 2, seqs, q, qn * 4,
				 CSD_ATTN_F_LSE | CSD_ATTN_F_SPARSE, 0,
				 CSD_CDW3_SPARSE(16, CSD_SPARSE_MAX_K), o2,
				 on * 4, NULL), 0);
	CU_ASSERT_EQUAL(memcmp(o1, o2, on * 4), 0);
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 2, seqs, q, qn * 4,
				 CSD_ATTN_F_LSE | CSD_ATTN_F_SPARSE |
				 CSD_ATTN_F_SPARSE_FRAC, 0,
				 CSD_CDW3_SPARSE(1, CSD_SPARSE_MAX_K), o2,
				 on * 4, NULL), 0);
	CU_ASSERT_EQUAL(memcmp(o1, o2, on * 4), 0);
	CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
	CU_ASSERT_EQUAL(a.flash_bytes_read - b.flash_bytes_read,
			2 * dense_bytes);

	/* ratio 1/4, 1/8, 1/16: r = d * ratio, k = ratio / 2 of the tokens */
	for (int i = 0; i < 3; i++) {
		uint64_t sb;
		double frac;

		CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
		CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, seqs, q, qn * 2,
					 CSD_ATTN_F_SPARSE |
					 CSD_ATTN_F_SPARSE_FRAC, 0,
					 CSD_CDW3_SPARSE(d / inv[i],
						(1u << 24) / (2 * inv[i])),
					 o2, qn * 2, &ns_sp), 0);
		CU_ASSERT_EQUAL(get_stats(fw, &b), 0);
		sb = b.flash_bytes_read - a.flash_bytes_read;
		/* dense bytes of seq 0 alone: 2 * kvh * n * d * 2 (+ pages) */
		frac = (double)sb / (2.0 * kvh * n * d * 2);
		CU_ASSERT(frac < 1.5 / inv[i] && frac > 0.5 / inv[i]);
		CU_ASSERT(sb < prev);
		CU_ASSERT(ns_sp < ns_prev);
		CU_ASSERT(ns_sp < ns_dense);
		prev = sb;
		ns_prev = ns_sp;
		if (frac >= 1.5 / inv[i] || frac <= 0.5 / inv[i])
			fprintf(stderr, "ratio 1/%u: bytes %.4f of dense\n",
				inv[i], frac);
	}
	free(q);
	free(o1);
	free(o2);
	csdfw_destroy(fw);
}

/*
 * GQA 4: the group shares its dims and tokens, so the flash bytes of a
 * sparse call at ratio R are about R of dense (within 1.3 R; the short
 * tail chunk is read whole).
 */
static void test_dev_gqa_bytes(void)
{
	struct csdfw *fw = open_dev();
	const uint32_t kvh = 2, qh = 8, d = 128, n = 16384 + 100;
	const uint32_t seq = 0;
	size_t qn = (size_t)qh * d;
	float *q = malloc(qn * 4), *o = malloc(qn * 4);
	struct csd_log_stats a, b;
	uint64_t dense;
	uint32_t ctx;
	static const uint32_t inv[3] = { 4, 8, 16 };

	CU_ASSERT_FATAL(fw && q && o);
	CU_ASSERT_EQUAL_FATAL(fwt_create(fw, 1, kvh, qh, d, CSD_DTYPE_F16, 8,
					 65536, &ctx), 0);
	dev_fill(fw, ctx, seq, n, kvh, d, CSD_DTYPE_F16);
	for (size_t i = 0; i < qn; i++)
		q[i] = rndf() * (i % 16 == 3 ? 3.0f : 1.0f);
	CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
	CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, qn * 4, 0, 0, 0, o,
				 qn * 4, NULL), 0);
	CU_ASSERT_EQUAL(get_stats(fw, &b), 0);
	dense = b.flash_bytes_read - a.flash_bytes_read;
	CU_ASSERT(dense >= 2ull * kvh * n * d * 2);
	for (int i = 0; i < 3; i++) {
		double frac;

		CU_ASSERT_EQUAL(get_stats(fw, &a), 0);
		CU_ASSERT_EQUAL(dev_attn(fw, ctx, 1, &seq, q, qn * 4,
					 CSD_ATTN_F_SPARSE |
					 CSD_ATTN_F_SPARSE_FRAC, 0,
					 CSD_CDW3_SPARSE(d / inv[i],
						(1u << 24) / (2 * inv[i])),
					 o, qn * 4, NULL), 0);
		CU_ASSERT_EQUAL(get_stats(fw, &b), 0);
		frac = (double)(b.flash_bytes_read - a.flash_bytes_read) /
		       (double)dense;
		CU_ASSERT(frac <= 1.3 / inv[i] && frac >= 0.7 / inv[i]);
		if (frac > 1.3 / inv[i] || frac < 0.7 / inv[i])
			fprintf(stderr, "GQA 4, ratio 1/%u: bytes %.4f of dense\n",
				inv[i], frac);
		for (size_t e = 0; e < qn; e++)
			CU_ASSERT(isfinite(o[e]));
	}
	free(q);
	free(o);
	csdfw_destroy(fw);
}

static CU_TestInfo engine_tests[] = {
	{ "k >= n equals dense", test_k_all_is_dense },
	{ "formula vs double reference", test_formula_vs_double },
	{ "formula by hand", test_formula_by_hand },
	{ "hot loops: scalar vs SIMD", test_ops_simd },
	{ "jobs: scalar vs SIMD vs pool", test_jobs_simd },
	{ "helpers", test_helpers },
	{ "read report and job checks", test_read_report },
	{ "batched page lookup", test_pages_batched },
	CU_TEST_INFO_NULL,
};

static CU_TestInfo device_tests[] = {
	{ "validation", test_dev_validation },
	{ "k = all is dense; bytes drop with the ratio",
	  test_dev_dense_and_bytes },
	{ "GQA 4: bytes about the ratio of dense", test_dev_gqa_bytes },
	CU_TEST_INFO_NULL,
};

int main(int argc, char **argv)
{
	static const struct cu_suite suites[] = {
		{ "engine", NULL, NULL, engine_tests },
		{ "device", NULL, NULL, device_tests },
		{ NULL, NULL, NULL, NULL },
	};

	return cu_run(argc, argv, suites);
}
