// SPDX-License-Identifier: MIT
/*
 * attn_simd.c - run-time kernel selection and the log-sum-exp merge.
 *
 * CPU features come from cpuid + xgetbv (the OS must save the YMM/ZMM
 * state, not only the CPU support it).  No state is cached: the probe is
 * cheap and only runs when an engine is created.
 */
#include <cpuid.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "attn_internal.h"

static const char *const simd_names[CSD_SIMD_COUNT] = {
	[CSD_SIMD_SCALAR] = "scalar",
	[CSD_SIMD_AVX2] = "avx2",
	[CSD_SIMD_AVX512] = "avx512",
	[CSD_SIMD_AVX512BF16] = "avx512bf16",
};

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

int attn_cpu_supports(int simd)
{
	unsigned int a, b, c, d, b7, max;
	uint64_t xcr0;

	if (simd == CSD_SIMD_SCALAR)
		return 1;
	if (simd != CSD_SIMD_AVX2 && simd != CSD_SIMD_AVX512 &&
	    simd != CSD_SIMD_AVX512BF16)
		return 0;
	max = __get_cpuid_max(0, NULL);
	if (max < 7 || !__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	/* OSXSAVE, AVX, FMA, F16C */
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_FMA) ||
	    !(c & bit_F16C))
		return 0;
	xcr0 = xgetbv0();
	if ((xcr0 & 0x6) != 0x6)		/* XMM + YMM state */
		return 0;
	__cpuid_count(7, 0, a, b7, c, d);
	if (!(b7 & bit_AVX2))
		return 0;
	if (simd == CSD_SIMD_AVX2)
		return 1;
	if ((xcr0 & 0xe0) != 0xe0)		/* opmask + ZMM state */
		return 0;
	if (!(b7 & bit_AVX512F) || !(b7 & bit_AVX512BW) ||
	    !(b7 & bit_AVX512VL) || !(b7 & bit_AVX512DQ))
		return 0;
	if (simd == CSD_SIMD_AVX512)
		return 1;
#ifdef CSD_NO_AVX512BF16
	return 0;		/* the compiler could not build the kernel */
#else
	/* CPUID.(7,1):EAX AVX512_BF16; leaf 7's EAX = last subleaf */
	__cpuid_count(7, 0, a, b, c, d);
	if (a < 1)
		return 0;
	__cpuid_count(7, 1, a, b, c, d);
	return !!(a & bit_AVX512BF16);
#endif
}

int attn_simd_supported(int simd)
{
	return attn_cpu_supports(simd);
}

const char *attn_simd_name(int simd)
{
	if (simd == CSD_SIMD_AUTO)
		return "auto";
	if (simd < 0 || simd >= CSD_SIMD_COUNT)
		return "unknown";
	return simd_names[simd];
}

int attn_simd_parse(const char *s, int *simd)
{
	if (!s || !simd) {
		errno = EINVAL;
		return -1;
	}
	if (!strcasecmp(s, "auto")) {
		*simd = CSD_SIMD_AUTO;
		return 0;
	}
	for (int i = 0; i < CSD_SIMD_COUNT; i++)
		if (!strcasecmp(s, simd_names[i])) {
			*simd = i;
			return 0;
		}
	errno = EINVAL;
	return -1;
}

/*
 * Best exact kernel: auto never picks avx512bf16, whose bf16 products
 * trade accuracy (NMSE ~1e-5) for speed -- that is the user's choice.
 */
static int simd_best(void)
{
	if (attn_cpu_supports(CSD_SIMD_AVX512))
		return CSD_SIMD_AVX512;
	if (attn_cpu_supports(CSD_SIMD_AVX2))
		return CSD_SIMD_AVX2;
	return CSD_SIMD_SCALAR;
}

int attn_simd_detect(void)
{
	const char *env = getenv("CSD_SIMD");
	int best = simd_best(), want;

	if (!env || !*env)
		return best;
	if (attn_simd_parse(env, &want) < 0) {
		fprintf(stderr,
			"csd: CSD_SIMD=%s is not one of scalar|avx2|avx512|avx512bf16|auto; using %s\n",
			env, simd_names[best]);
		return best;
	}
	if (want == CSD_SIMD_AUTO)
		return best;
	if (!attn_cpu_supports(want)) {
		fprintf(stderr,
			"csd: CSD_SIMD=%s is not supported by this CPU; using %s\n",
			env, simd_names[best]);
		return best;
	}
	return want;
}

attn_kernel_fn attn_kernel_get(int simd)
{
	if (!attn_cpu_supports(simd))
		return NULL;
	switch (simd) {
#ifndef CSD_NO_AVX512BF16
	case CSD_SIMD_AVX512BF16:
		return attn_kernel_avx512bf16;
#endif
	case CSD_SIMD_AVX512:
		return attn_kernel_avx512;
	case CSD_SIMD_AVX2:
		return attn_kernel_avx2;
	default:
		return attn_kernel_scalar;
	}
}

void attn_merge(float *m1, float *l1, float *acc1, float m2, float l2,
		const float *acc2, uint32_t head_dim)
{
	float m, a1, a2;

	if (m2 == -INFINITY || l2 == 0.0f)
		return;
	if (*m1 == -INFINITY || *l1 == 0.0f) {
		*m1 = m2;
		*l1 = l2;
		memcpy(acc1, acc2, head_dim * sizeof(float));
		return;
	}
	m = fmaxf(*m1, m2);
	a1 = expf(*m1 - m);
	a2 = expf(m2 - m);
	*m1 = m;
	*l1 = *l1 * a1 + l2 * a2;
	for (uint32_t i = 0; i < head_dim; i++)
		acc1[i] = acc1[i] * a1 + acc2[i] * a2;
}
