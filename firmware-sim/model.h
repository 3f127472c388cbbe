/* SPDX-License-Identifier: MIT */
/*
 * model.h - flash / host-link timing model of the emulated drive.
 *
 * Every command is charged a modeled device time from what it really moved:
 * pages read or programmed on each channel, bytes over the host link and
 * attention FLOPs.  The model also keeps a device clock so that pacing mode
 * can complete commands when the modeled drive would have.
 */
#ifndef CSDFW_MODEL_H
#define CSDFW_MODEL_H

#include <pthread.h>
#include <stdint.h>

#include "csdfw.h"

/* What one command did, filled by the handlers, priced by model_cost(). */
struct model_work {
	uint64_t link_in;		/* bytes host -> device */
	uint64_t link_out;		/* bytes device -> host */
	uint64_t flops;			/* attention arithmetic */
	uint32_t rd_pages[CSDFW_MAX_CHANNELS];	/* pages read per channel */
	uint32_t wr_pages[CSDFW_MAX_CHANNELS];	/* pages programmed per channel */
	/*
	 * Partial-page reads (SparF): a page sensed (tR) of which only some
	 * bytes cross the channel bus (NAND column read).  Priced as
	 * rd_part_pages senses plus rd_part_bytes of transfer per channel.
	 */
	uint32_t rd_part_pages[CSDFW_MAX_CHANNELS];
	uint64_t rd_part_bytes[CSDFW_MAX_CHANNELS];
};

struct model {
	struct csdfw_timing t;
	uint32_t channels;
	uint32_t page_size;
	pthread_mutex_t lock;
	uint64_t dev_free_ns;		/* modeled time the device becomes idle */
};

void model_init(struct model *m, const struct csdfw_timing *t,
		uint32_t channels, uint32_t page_size);
void model_fini(struct model *m);

/*
 * Modeled duration of @w in ns: cmd_overhead + max(link_in, flash, compute)
 * + link_out, where flash = max over channels of the channel's time
 * (pages x page_size / chan_bw, with tR/tPROG latency hidden across `ways`
 * except for the first page of a channel).
 */
uint64_t model_cost(const struct model *m, const struct model_work *w);

/*
 * Place a command of duration @dur_ns that arrived at host time @now_ns on
 * the device clock (commands are serialized on the modeled device).
 * Returns the modeled completion time (host clock, ns).
 */
uint64_t model_schedule(struct model *m, uint64_t now_ns, uint64_t dur_ns);

/* CLOCK_MONOTONIC in ns. */
uint64_t model_now_ns(void);

#endif /* CSDFW_MODEL_H */
