/* SPDX-License-Identifier: MIT */
/*
 * fw_helpers.h - small helpers shared by test_core.c and test_storm.c:
 * building SQEs, running them synchronously, element conversions and a
 * double-precision reference attention.
 */
#ifndef FW_HELPERS_H
#define FW_HELPERS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csdfw.h"

#define ST(sct, sc)	CSD_STATUS(sct, sc)
#define ST_IF		ST(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD)
#define ST_IOPC		ST(CSD_SCT_GENERIC, CSD_SC_INVALID_OPCODE)
#define ST_INS		ST(CSD_SCT_GENERIC, CSD_SC_INVALID_NS)
#define ST_LOG		ST(CSD_SCT_CMD_SPECIFIC, CSD_SC_INVALID_LOG_PAGE)
#define ST_NSAVE	ST(CSD_SCT_CMD_SPECIFIC, CSD_SC_FEATURE_NOT_SAVEABLE)
#define VS(x)		ST(CSD_SCT_VENDOR, CSD_VSC_##x)

/* Run one command; returns the status field (without phase, with DNR). */
static inline uint16_t fwt_run(struct csdfw *fw, enum csdfw_queue q,
			       const struct csd_sqe *sqe, void *buf,
			       size_t len, struct csd_cqe *cqe_out)
{
	struct csdfw_seg seg = { buf, len };
	struct csdfw_data d = { &seg, 1, len };
	struct csd_cqe cqe;

	csdfw_exec(fw, q, sqe, len ? &d : NULL, &cqe);
	if (cqe_out)
		*cqe_out = cqe;
	return (uint16_t)(cqe.status >> 1);
}

/* Expected error status (always with DNR). */
static inline uint16_t fwt_err(uint16_t st)
{
	return st ? (uint16_t)(st | CSD_STATUS_DNR) : 0;
}

static inline struct csd_sqe fwt_io(uint8_t opc, uint32_t ctx, size_t len)
{
	struct csd_sqe s;

	memset(&s, 0, sizeof(s));
	s.opcode = opc;
	s.nsid = CSD_NSID;
	s.cdw10 = (uint32_t)(len / 4);
	s.cdw12 = ctx;
	return s;
}

/* A CTX_CREATE descriptor (flags and reserved bytes zero). */
static inline struct csd_ctx_desc fwt_desc(uint16_t layers, uint16_t kvh,
					   uint16_t qh, uint16_t hd,
					   uint8_t dtype, uint32_t seqs,
					   uint32_t toks)
{
	struct csd_ctx_desc p;

	memset(&p, 0, sizeof(p));
	p.layers = layers;
	p.kv_heads = kvh;
	p.q_heads = qh;
	p.head_dim = hd;
	p.dtype = dtype;
	p.max_seqs = seqs;
	p.max_tokens = toks;
	return p;
}

static inline uint16_t fwt_create(struct csdfw *fw, uint16_t layers,
				  uint16_t kvh, uint16_t qh, uint16_t hd,
				  uint8_t dtype, uint32_t seqs, uint32_t toks,
				  uint32_t *id)
{
	struct csd_ctx_desc p = fwt_desc(layers, kvh, qh, hd, dtype, seqs,
					 toks);
	struct csd_sqe s = fwt_io(CSD_IO_CTX_CREATE, 0, sizeof(p));
	struct csd_cqe cqe;
	uint16_t st;

	st = fwt_run(fw, CSDFW_Q_IO, &s, &p, sizeof(p), &cqe);
	if (id)
		*id = st ? 0 : cqe.dw0;
	return st;
}

static inline uint16_t fwt_simple(struct csdfw *fw, uint8_t opc, uint32_t ctx,
				  uint32_t cdw13)
{
	struct csd_sqe s = fwt_io(opc, ctx, 0);

	s.cdw13 = cdw13;
	return fwt_run(fw, CSDFW_Q_IO, &s, NULL, 0, NULL);
}

static inline uint16_t fwt_kv(struct csdfw *fw, uint8_t opc, uint32_t ctx,
			      uint32_t seq, uint32_t layer, uint32_t start,
			      uint32_t ntok, void *buf, size_t len,
			      struct csd_cqe *cqe)
{
	struct csd_sqe s = fwt_io(opc, ctx, len);

	s.cdw13 = seq | layer << 16;
	s.cdw14 = start;
	s.cdw15 = ntok;
	return fwt_run(fw, CSDFW_Q_IO, &s, buf, len, cqe);
}

static inline struct csd_sqe fwt_attn_sqe(uint32_t ctx, uint32_t tag,
					  uint32_t layer, uint32_t nseq,
					  uint32_t flags, float scale,
					  uint32_t window, size_t len)
{
	struct csd_sqe s = fwt_io(CSD_IO_ATTN_SUBMIT, ctx, len);

	s.cdw2 = window;
	s.cdw13 = tag | layer << 16;
	s.cdw14 = nseq | flags << 16;
	memcpy(&s.cdw15, &scale, 4);
	return s;
}

static inline uint16_t fwt_attn_read(struct csdfw *fw, uint32_t ctx,
				     uint32_t tag, void *buf, size_t len,
				     struct csd_cqe *cqe)
{
	struct csd_sqe s = fwt_io(CSD_IO_ATTN_READ, ctx, len);

	s.cdw13 = tag;
	return fwt_run(fw, CSDFW_Q_IO, &s, buf, len, cqe);
}

/* ---- elements ------------------------------------------------------------ */

static inline uint16_t fwt_f2h(float f)
{
	uint32_t x, sign, mant;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffff;
	if (((x >> 23) & 0xff) == 0xff)
		return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
	if (exp >= 31)
		return (uint16_t)(sign | 0x7c00);
	if (exp <= 0) {
		uint32_t m, r;
		int sh;

		if (exp < -10)
			return (uint16_t)sign;
		m = mant | 0x800000;
		sh = 14 - exp;
		r = m >> sh;
		if ((m >> (sh - 1)) & 1 && ((m & ((1u << (sh - 1)) - 1)) || (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	{
		uint32_t h = sign | (uint32_t)exp << 10 | mant >> 13;

		if ((mant & 0x1000) && ((mant & 0x2fff)))
			h++;
		return (uint16_t)h;
	}
}

static inline float fwt_h2f(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f,
		 mant = h & 0x3ff, x;
	float f;

	if (exp == 0) {
		f = ldexpf((float)mant, -24);
		return sign ? -f : f;
	}
	if (exp == 31)
		x = sign | 0x7f800000 | mant << 13;
	else
		x = sign | (exp - 15 + 127) << 23 | mant << 13;
	memcpy(&f, &x, 4);
	return f;
}

static inline uint16_t fwt_f2bf(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

static inline float fwt_bf2f(uint16_t b)
{
	uint32_t x = (uint32_t)b << 16;
	float f;

	memcpy(&f, &x, 4);
	return f;
}

static inline void fwt_store(void *dst, size_t i, int dtype, float v)
{
	if (dtype == CSD_DTYPE_F32)
		((float *)dst)[i] = v;
	else if (dtype == CSD_DTYPE_F16)
		((uint16_t *)dst)[i] = fwt_f2h(v);
	else
		((uint16_t *)dst)[i] = fwt_f2bf(v);
}

static inline float fwt_load(const void *src, size_t i, int dtype)
{
	if (dtype == CSD_DTYPE_F32)
		return ((const float *)src)[i];
	if (dtype == CSD_DTYPE_F16)
		return fwt_h2f(((const uint16_t *)src)[i]);
	return fwt_bf2f(((const uint16_t *)src)[i]);
}

/* xorshift64* */
static inline uint64_t fwt_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

/* Exactly representable in f16 and bf16: k/64, |k| <= 127. */
static inline float fwt_val(uint64_t *s)
{
	return (float)((int)(fwt_rand(s) % 255) - 127) / 64.0f;
}

/*
 * Reference attention in double for one sequence: k/v rows of all kv heads
 * ([tok][kvh][hd] as float), tokens [lo, hi).  out [qh][hd], lse [qh].
 */
static inline void fwt_ref_attn(const float *k, const float *v, uint32_t lo,
				uint32_t hi, uint32_t qh, uint32_t kvh,
				uint32_t hd, const float *q, double scale,
				double *out, double *lse)
{
	uint32_t h, t, d, g = qh / kvh;

	for (h = 0; h < qh; h++) {
		uint32_t kh = h / g;
		double m = -INFINITY, l = 0;

		for (t = lo; t < hi; t++) {
			const float *kr = k + ((size_t)t * kvh + kh) * hd;
			double s = 0;

			for (d = 0; d < hd; d++)
				s += (double)q[(size_t)h * hd + d] * kr[d];
			s *= scale;
			if (s > m)
				m = s;
		}
		for (d = 0; d < hd; d++)
			out[(size_t)h * hd + d] = 0;
		for (t = lo; t < hi; t++) {
			const float *kr = k + ((size_t)t * kvh + kh) * hd;
			const float *vr = v + ((size_t)t * kvh + kh) * hd;
			double s = 0, p;

			for (d = 0; d < hd; d++)
				s += (double)q[(size_t)h * hd + d] * kr[d];
			p = exp(s * scale - m);
			l += p;
			for (d = 0; d < hd; d++)
				out[(size_t)h * hd + d] += p * vr[d];
		}
		for (d = 0; d < hd; d++)
			out[(size_t)h * hd + d] /= l;
		if (lse)
			lse[h] = m + log(l);
	}
}

#endif /* FW_HELPERS_H */
