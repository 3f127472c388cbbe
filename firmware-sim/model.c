// SPDX-License-Identifier: MIT
/*
 * model.c - flash / host-link timing model of the emulated drive.
 *
 * A command's modeled duration (ns) is
 *
 *   cost = cmd_overhead + max(T_link_in, T_flash, T_compute) + T_link_out
 *
 *   T_link_in  = link_in  / link_bytes_per_s
 *   T_link_out = link_out / link_bytes_per_s
 *   T_compute  = flops / compute_flops
 *   T_flash    = max over channels c of
 *                chan(rd_pages[c] + rd_part_pages[c],
 *                     rd_pages[c] * page_size + rd_part_bytes[c], read_lat)
 *                + chan(wr_pages[c], wr_pages[c] * page_size, prog_lat)
 *
 * with the time of n page operations moving b bytes over the channel bus,
 * of array latency `lat`
 *
 *   chan(0, b, lat) = 0
 *   chan(n, b, lat) = lat + max(b / chan_bytes_per_s,
 *                               (ceil(n / ways) - 1) * lat)
 *
 * A partial-page read (SparF's selected rows: a NAND column read) senses a
 * whole page (tR, one operation) but moves only the bytes asked for.
 *
 * i.e. the first access pays the full array latency (tR or tPROG); after
 * that the `ways` dies of the channel work in parallel, so further latency
 * is hidden behind the channel bus transfers except when there are so few
 * bytes per die wave that the waves themselves are the bottleneck.  One page
 * therefore costs lat + page/bw (36 us + 2.9 us for a 4 KiB read with the
 * "instinfer" profile), a full wave of `ways` pages lat + ways*page/bw.
 * A bandwidth <= 0 counts as infinite.  The result is rounded to the
 * nearest ns and saturates at UINT64_MAX.
 *
 * The device clock serializes commands: a command of duration d arriving at
 * host time `now` completes at max(now, dev_free) + d, which becomes the new
 * dev_free.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "model.h"

struct profile {
	const char *name;
	double chan_bps;
	double link_bps;
	uint32_t read_ns;
	uint32_t prog_ns;
	uint32_t ways;
	uint32_t overhead_ns;
	double flops;
};

static const struct profile profiles[] = {
	{ "instinfer", 1.4e9, 7.0e9, 36000, 185000, 16, 5000, 2e12 },
	{ "nvmevirt", 0.8e9, 3.2e9, 36000, 185000, 16, 5000, 2e12 },
	{ "fast", 1e15, 1e15, 0, 0, 16, 0, 1e18 },
};

int csdfw_timing_profile(struct csdfw_timing *t, const char *name)
{
	const struct profile *p = NULL;
	size_t i;

	if (!name || !*name)
		name = "instinfer";
	for (i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
		if (strcmp(profiles[i].name, name) == 0) {
			p = &profiles[i];
			break;
		}
	}
	if (!p)
		return -ENOENT;
	if (!t)
		return 0;
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", p->name);
	t->chan_bytes_per_s = p->chan_bps;
	t->link_bytes_per_s = p->link_bps;
	t->read_lat_ns = p->read_ns;
	t->prog_lat_ns = p->prog_ns;
	t->ways = p->ways;
	t->cmd_overhead_ns = p->overhead_ns;
	t->compute_flops = p->flops;
	return 0;
}

void model_init(struct model *m, const struct csdfw_timing *t,
		uint32_t channels, uint32_t page_size)
{
	memset(m, 0, sizeof(*m));
	if (t)
		m->t = *t;
	else
		csdfw_timing_profile(&m->t, "instinfer");
	m->channels = channels;
	m->page_size = page_size;
	pthread_mutex_init(&m->lock, NULL);
	m->dev_free_ns = 0;
}

void model_fini(struct model *m)
{
	pthread_mutex_destroy(&m->lock);
}

/* ns to move @bytes at @bps (bytes per second); bps <= 0 means infinite. */
static double xfer_ns(double bytes, double bps)
{
	if (!(bps > 0.0) || bytes <= 0.0)
		return 0.0;
	return bytes * 1e9 / bps;
}

static double chan_ns(const struct model *m, uint64_t n, double bytes,
		      double lat)
{
	uint32_t ways = m->t.ways ? m->t.ways : 1;
	uint64_t nwaves;
	double waves, xfer, hidden;

	if (!n)
		return 0.0;
	/* whole waves of @ways page operations: integer ceiling on purpose */
	nwaves = (n + (uint64_t)ways - 1) / ways;
	waves = (double)nwaves;
	xfer = xfer_ns(bytes, m->t.chan_bytes_per_s);
	hidden = (waves - 1.0) * lat;
	return lat + (xfer > hidden ? xfer : hidden);
}

static double dmax(double a, double b)
{
	return a > b ? a : b;
}

uint64_t model_cost(const struct model *m, const struct model_work *w)
{
	uint32_t nch = m->channels, c;
	double flash = 0.0, total;

	if (nch == 0 || nch > CSDFW_MAX_CHANNELS)
		nch = CSDFW_MAX_CHANNELS;
	for (c = 0; c < nch; c++) {
		uint64_t rd = (uint64_t)w->rd_pages[c] + w->rd_part_pages[c];
		double t = chan_ns(m, rd, (double)w->rd_pages[c] *
				   m->page_size + (double)w->rd_part_bytes[c],
				   m->t.read_lat_ns) +
			   chan_ns(m, w->wr_pages[c], (double)w->wr_pages[c] *
				   m->page_size, m->t.prog_lat_ns);

		flash = dmax(flash, t);
	}
	total = dmax(dmax(xfer_ns((double)w->link_in, m->t.link_bytes_per_s),
			  flash),
		     xfer_ns((double)w->flops, m->t.compute_flops));
	total += xfer_ns((double)w->link_out, m->t.link_bytes_per_s);
	total += m->t.cmd_overhead_ns;
	total = nearbyint(total);
	if (!(total < 18446744073709551616.0))	/* 2^64, also catches NaN */
		return UINT64_MAX;
	return (uint64_t)total;
}

uint64_t model_schedule(struct model *m, uint64_t now_ns, uint64_t dur_ns)
{
	uint64_t start, end;

	pthread_mutex_lock(&m->lock);
	start = now_ns > m->dev_free_ns ? now_ns : m->dev_free_ns;
	end = dur_ns > UINT64_MAX - start ? UINT64_MAX : start + dur_ns;
	m->dev_free_ns = end;
	pthread_mutex_unlock(&m->lock);
	return end;
}

uint64_t model_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
