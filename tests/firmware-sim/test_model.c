// SPDX-License-Identifier: MIT
/* test_model.c - unit tests of the timing model (firmware-sim/model.c). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "model.h"
#include "cu_main.h"

#define PG	4096u

static void init_profile(struct model *m, const char *name, uint32_t ch)
{
	struct csdfw_timing t;

	CU_ASSERT_FATAL(csdfw_timing_profile(&t, name) == 0);
	model_init(m, &t, ch, PG);
}

/* Independent statement of the documented channel equation. */
static double ref_chan(double n, double lat, double bw, double ways)
{
	double waves, xfer, hidden;

	if (n == 0)
		return 0;
	waves = ceil(n / ways);
	xfer = n * PG / bw * 1e9;
	hidden = (waves - 1) * lat;
	return lat + fmax(xfer, hidden);
}

static int near(uint64_t got, double want)
{
	return fabs((double)got - want) <= 1.0;
}

static void test_profiles(void)
{
	struct csdfw_timing t;

	memset(&t, 0xa5, sizeof(t));
	CU_ASSERT(csdfw_timing_profile(&t, "instinfer") == 0);
	CU_ASSERT_STRING_EQUAL(t.name, "instinfer");
	CU_ASSERT(t.chan_bytes_per_s == 1.4e9);
	CU_ASSERT(t.link_bytes_per_s == 7.0e9);
	CU_ASSERT(t.read_lat_ns == 36000);
	CU_ASSERT(t.prog_lat_ns == 185000);
	CU_ASSERT(t.ways == 16);
	CU_ASSERT(t.cmd_overhead_ns == 5000);
	CU_ASSERT(t.compute_flops == 2e12);

	CU_ASSERT(csdfw_timing_profile(&t, "nvmevirt") == 0);
	CU_ASSERT_STRING_EQUAL(t.name, "nvmevirt");
	CU_ASSERT(t.chan_bytes_per_s == 0.8e9);
	CU_ASSERT(t.link_bytes_per_s == 3.2e9);
	CU_ASSERT(t.read_lat_ns == 36000);
	CU_ASSERT(t.prog_lat_ns == 185000);
	CU_ASSERT(t.ways == 16);
	CU_ASSERT(t.cmd_overhead_ns == 5000);
	CU_ASSERT(t.compute_flops == 2e12);

	CU_ASSERT(csdfw_timing_profile(&t, "fast") == 0);
	CU_ASSERT_STRING_EQUAL(t.name, "fast");
	CU_ASSERT(t.read_lat_ns == 0 && t.prog_lat_ns == 0);
	CU_ASSERT(t.cmd_overhead_ns == 0);
	CU_ASSERT(t.chan_bytes_per_s >= 1e15 && t.link_bytes_per_s >= 1e15);
	CU_ASSERT(t.compute_flops >= 1e18);

	/* unknown -> -ENOENT, output untouched */
	CU_ASSERT(csdfw_timing_profile(&t, "bogus") == -ENOENT);
	CU_ASSERT_STRING_EQUAL(t.name, "fast");
	CU_ASSERT(csdfw_timing_profile(&t, "INSTINFER") == -ENOENT);
	CU_ASSERT(csdfw_timing_profile(&t, "instinfer2") == -ENOENT);
	/* default */
	CU_ASSERT(csdfw_timing_profile(&t, "") == 0);
	CU_ASSERT_STRING_EQUAL(t.name, "instinfer");
}

static void test_zero_work(void)
{
	struct model_work w;
	struct model m;

	memset(&w, 0, sizeof(w));
	init_profile(&m, "instinfer", 8);
	CU_ASSERT(model_cost(&m, &w) == 5000);
	model_fini(&m);
	init_profile(&m, "fast", 8);
	CU_ASSERT(model_cost(&m, &w) == 0);
	w.rd_pages[3] = 1000;
	w.link_in = 1 << 20;
	CU_ASSERT(model_cost(&m, &w) < 100);
	model_fini(&m);
}

static void test_link_bound(void)
{
	struct model_work w;
	struct model m;

	memset(&w, 0, sizeof(w));
	init_profile(&m, "instinfer", 8);
	w.link_in = 7000000;		/* 1 ms at 7 GB/s */
	CU_ASSERT(model_cost(&m, &w) == 5000 + 1000000);
	w.rd_pages[0] = 8;		/* far less than 1 ms of flash */
	w.flops = 1000000;
	CU_ASSERT(model_cost(&m, &w) == 5000 + 1000000);
	w.link_out = 700000;		/* output is serial: +100 us */
	CU_ASSERT(model_cost(&m, &w) == 5000 + 1000000 + 100000);
	model_fini(&m);

	init_profile(&m, "nvmevirt", 8);
	memset(&w, 0, sizeof(w));
	w.link_out = 3200000;		/* 1 ms at 3.2 GB/s */
	CU_ASSERT(model_cost(&m, &w) == 5000 + 1000000);
	model_fini(&m);
}

static void test_flash_bound(void)
{
	struct model_work w;
	struct model m;
	double want;
	uint32_t c;

	init_profile(&m, "instinfer", 8);
	/* one page: first access latency + transfer */
	memset(&w, 0, sizeof(w));
	w.rd_pages[0] = 1;
	want = 5000 + 36000 + 4096 / 1.4e9 * 1e9;
	CU_ASSERT(near(model_cost(&m, &w), want));
	CU_ASSERT(near(model_cost(&m, &w), 5000 + ref_chan(1, 36000, 1.4e9, 16)));

	/* 160 pages on every channel: bandwidth bound */
	for (c = 0; c < 8; c++)
		w.rd_pages[c] = 160;
	want = 5000 + 36000 + 160.0 * 4096 / 1.4e9 * 1e9;
	CU_ASSERT(near(model_cost(&m, &w), want));
	w.link_in = 1000;		/* small link time does not add */
	CU_ASSERT(near(model_cost(&m, &w), want));

	/* program latency for writes, read + program add on a channel */
	memset(&w, 0, sizeof(w));
	w.wr_pages[2] = 1;
	CU_ASSERT(near(model_cost(&m, &w),
		       5000 + 185000 + 4096 / 1.4e9 * 1e9));
	w.rd_pages[2] = 4;
	CU_ASSERT(near(model_cost(&m, &w), 5000 + ref_chan(1, 185000, 1.4e9, 16) +
		       ref_chan(4, 36000, 1.4e9, 16)));
	/* compute bound */
	memset(&w, 0, sizeof(w));
	w.rd_pages[0] = 1;
	w.flops = 4000000000ull;	/* 2 ms at 2 TFLOP/s */
	CU_ASSERT(model_cost(&m, &w) == 5000 + 2000000);
	model_fini(&m);
}

static void test_skewed_channels(void)
{
	struct model_work w, one;
	struct model m;

	init_profile(&m, "instinfer", 8);
	memset(&w, 0, sizeof(w));
	memset(&one, 0, sizeof(one));
	one.rd_pages[5] = 64;
	w.rd_pages[5] = 64;
	w.rd_pages[0] = 3;
	w.rd_pages[7] = 10;
	/* the slowest channel decides */
	CU_ASSERT(model_cost(&m, &w) == model_cost(&m, &one));
	CU_ASSERT(near(model_cost(&m, &w), 5000 + ref_chan(64, 36000, 1.4e9, 16)));
	/* the same pages spread evenly are faster than on one channel */
	memset(&w, 0, sizeof(w));
	for (int c = 0; c < 8; c++)
		w.rd_pages[c] = 8;
	CU_ASSERT(model_cost(&m, &w) < model_cost(&m, &one));
	/* channels beyond the configured count are not part of the device */
	memset(&w, 0, sizeof(w));
	w.rd_pages[8] = 1000;
	w.wr_pages[63] = 1000;
	CU_ASSERT(model_cost(&m, &w) == 5000);
	model_fini(&m);
}

static void test_ways_overlap(void)
{
	struct csdfw_timing t;
	struct model_work w;
	struct model m;

	CU_ASSERT_FATAL(csdfw_timing_profile(&t, "instinfer") == 0);
	t.read_lat_ns = 1000000;	/* latency bound */
	t.ways = 16;
	model_init(&m, &t, 8, PG);
	memset(&w, 0, sizeof(w));
	w.rd_pages[1] = 16;		/* one wave: one latency */
	CU_ASSERT(near(model_cost(&m, &w),
		       5000 + 1000000 + 16 * 4096 / 1.4e9 * 1e9));
	w.rd_pages[1] = 17;		/* two waves */
	CU_ASSERT(model_cost(&m, &w) == 5000 + 2000000);
	w.rd_pages[1] = 32;
	CU_ASSERT(model_cost(&m, &w) == 5000 + 2000000);
	w.rd_pages[1] = 33;
	CU_ASSERT(model_cost(&m, &w) == 5000 + 3000000);
	model_fini(&m);

	t.ways = 1;			/* no overlap at all */
	model_init(&m, &t, 8, PG);
	w.rd_pages[1] = 32;
	CU_ASSERT(model_cost(&m, &w) == 5000 + 32000000);
	model_fini(&m);

	t.ways = 0;			/* treated as 1 */
	model_init(&m, &t, 8, PG);
	CU_ASSERT(model_cost(&m, &w) == 5000 + 32000000);
	model_fini(&m);

	/* page size matters for the transfer part */
	CU_ASSERT_FATAL(csdfw_timing_profile(&t, "instinfer") == 0);
	model_init(&m, &t, 8, 16384);
	memset(&w, 0, sizeof(w));
	w.rd_pages[0] = 100;
	CU_ASSERT(near(model_cost(&m, &w),
		       5000 + 36000 + 100.0 * 16384 / 1.4e9 * 1e9));
	model_fini(&m);
}

static void test_monotonic_cost(void)
{
	struct model_work w;
	struct model m;
	uint64_t prev = 0, cur;
	uint32_t n;

	init_profile(&m, "instinfer", 8);
	memset(&w, 0, sizeof(w));
	for (n = 0; n < 2000; n += 7) {
		w.rd_pages[n % 8] = n;
		w.wr_pages[(n / 8) % 8] = n / 3;
		w.link_in = (uint64_t)n * 1000;
		w.link_out = (uint64_t)n * 10;
		w.flops = (uint64_t)n * 100000;
		cur = model_cost(&m, &w);
		CU_ASSERT(cur >= prev);
		prev = cur;
	}
	/* saturation */
	w.link_in = UINT64_MAX;
	w.link_out = UINT64_MAX;
	m.t.link_bytes_per_s = 1;
	CU_ASSERT(model_cost(&m, &w) == UINT64_MAX);
	model_fini(&m);
}

static void test_schedule_serial(void)
{
	struct model m;

	init_profile(&m, "instinfer", 8);
	CU_ASSERT(model_schedule(&m, 1000, 500) == 1500);
	/* arrives while busy: queued behind */
	CU_ASSERT(model_schedule(&m, 1200, 100) == 1600);
	CU_ASSERT(model_schedule(&m, 0, 0) == 1600);
	/* arrives when idle: starts at arrival */
	CU_ASSERT(model_schedule(&m, 5000, 10) == 5010);
	CU_ASSERT(model_schedule(&m, 5005, 10) == 5020);
	/* saturates instead of wrapping */
	CU_ASSERT(model_schedule(&m, 10, UINT64_MAX) == UINT64_MAX);
	CU_ASSERT(model_schedule(&m, 10, 1) == UINT64_MAX);
	model_fini(&m);
}

#define SCHED_THREADS	4
#define SCHED_ITERS	20000

struct sched_arg {
	struct model *m;
	uint64_t max_end;
	int ok;
};

static void *sched_thread(void *p)
{
	struct sched_arg *a = p;
	uint64_t prev = 0, end;
	int i;

	a->ok = 1;
	for (i = 0; i < SCHED_ITERS; i++) {
		end = model_schedule(a->m, 0, 3);
		if (end <= prev || end % 3)
			a->ok = 0;
		prev = end;
	}
	a->max_end = prev;
	return NULL;
}

static void test_schedule_threads(void)
{
	struct sched_arg a[SCHED_THREADS];
	pthread_t th[SCHED_THREADS];
	struct model m;
	uint64_t mx = 0;
	int i;

	init_profile(&m, "fast", 8);
	for (i = 0; i < SCHED_THREADS; i++) {
		a[i].m = &m;
		CU_ASSERT_FATAL(pthread_create(&th[i], NULL, sched_thread,
					       &a[i]) == 0);
	}
	for (i = 0; i < SCHED_THREADS; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT(a[i].ok);
		if (a[i].max_end > mx)
			mx = a[i].max_end;
	}
	/* every command got its own slot on the device clock */
	CU_ASSERT(mx == 3ull * SCHED_THREADS * SCHED_ITERS);
	CU_ASSERT(m.dev_free_ns == mx);
	model_fini(&m);
}

static void test_now(void)
{
	uint64_t a = model_now_ns(), b = model_now_ns();

	CU_ASSERT(a > 0);
	CU_ASSERT(b >= a);
}

/* SparF partial-page reads: one tR per page sensed, only the bytes moved. */
static void test_partial_pages(void)
{
	struct model m;
	struct model_work w, f;
	const double lat = 36000, bw = 1.4e9, ovh = 5000;

	init_profile(&m, "instinfer", 8);
	/* 1 page sensed, 512 bytes moved */
	memset(&w, 0, sizeof(w));
	w.rd_part_pages[0] = 1;
	w.rd_part_bytes[0] = 512;
	CU_ASSERT(near(model_cost(&m, &w), ovh + lat + 512 / bw * 1e9));
	/* a partial read of a whole page costs what a page read does */
	memset(&f, 0, sizeof(f));
	w.rd_part_bytes[0] = PG;
	f.rd_pages[0] = 1;
	CU_ASSERT_EQUAL(model_cost(&m, &w), model_cost(&m, &f));
	/* 64 senses of 256 bytes: latency waves dominate (16 ways) */
	w.rd_part_pages[0] = 64;
	w.rd_part_bytes[0] = 64 * 256;
	CU_ASSERT(near(model_cost(&m, &w), ovh + lat + 3 * lat));
	/* mixed with whole pages on the channel: operations and bytes add */
	w.rd_pages[0] = 100;
	CU_ASSERT(near(model_cost(&m, &w),
		       ovh + lat + fmax((100.0 * PG + 64 * 256) / bw * 1e9,
					(ceil(164 / 16.0) - 1) * lat)));
	CU_ASSERT(model_cost(&m, &w) < ovh + ref_chan(164, lat, bw, 16));
	model_fini(&m);
}

static CU_TestInfo model_tests[] = {
	{ "partial_pages", test_partial_pages },
	{ "profiles", test_profiles },
	{ "zero_work", test_zero_work },
	{ "link_bound", test_link_bound },
	{ "flash_bound", test_flash_bound },
	{ "skewed_channels", test_skewed_channels },
	{ "ways_overlap", test_ways_overlap },
	{ "monotonic_cost", test_monotonic_cost },
	{ "schedule_serial", test_schedule_serial },
	{ "schedule_threads", test_schedule_threads },
	{ "now", test_now },
	CU_TEST_INFO_NULL,
};

static const struct cu_suite suites[] = {
	{ "model", NULL, NULL, model_tests },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_run(argc, argv, suites);
}
