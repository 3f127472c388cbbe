/* SPDX-License-Identifier: MIT */
/*
 * devif.h - the csd device interface, daemon side (csd-fw): shared memory
 * with the register page, per-client queue sets and data windows
 * (include/csd/csd_devif.h), doorbell processing, PRP resolution, context
 * ownership, and the event loop serving ivshmem clients.
 */
#ifndef DEVIF_H
#define DEVIF_H

#include <stdint.h>

#include "csdfw.h"

enum devif_log {
	DEVIF_LOG_ERR = 0,	/* errors only */
	DEVIF_LOG_INFO = 1,	/* + clients coming and going, claims (default) */
	DEVIF_LOG_DEBUG = 2,	/* + per-client protocol errors */
};

struct devif_opts {
	uint64_t shm_size;	/* each client's shared memory: power of two,
				 * >= 1 MiB */
	uint32_t io_queues;	/* 1 .. CSD_DEVIF_MAX_QUEUES - 1 */
	uint32_t depth;		/* CSD_DEVIF_MIN_DEPTH .. CSD_DEVIF_MAX_DEPTH */
	uint32_t max_clients;	/* 1 .. CSD_DEVIF_MAX_CLIENTS */
	uint32_t hb_ms;		/* heartbeat period */
	const char *dma_file;	/* guest RAM (memory-backend-file) or NULL */
	uint32_t poll_us;	/* busy-poll doorbells this long after the
				 * last command before sleeping (0 = never) */
	int log_level;		/* enum devif_log */
};

struct devif;

/*
 * Compute the shared-memory layout (every client gets its own memfd of
 * o->shm_size bytes at attach), clamp @cfg->max_xfer to what a client's
 * data window can carry, and create the firmware from @cfg.
 * Returns 0 or -errno (message on stderr).
 */
int devif_create(const struct devif_opts *o, struct csdfw_config *cfg,
		 struct devif **dp);
/* Shut down: clients disconnected, firmware drained and destroyed. */
void devif_destroy(struct devif *d);

/* The firmware behind the interface (tests reach it directly). */
struct csdfw *devif_fw(struct devif *d);

/*
 * Mark every context that exists in the firmware and has no owner as an
 * orphan (contexts recovered from a backing file): the first client that
 * names one in a command claims it.  devif_create() calls it once the
 * firmware is up.  Call only while devif_run() is not running.  Returns the
 * number of orphans marked or -errno.
 */
int devif_scan_orphans(struct devif *d);

/*
 * Serve clients on the listening socket @lfd until @stop_fd (a signalfd or
 * any fd, -1 for none) becomes readable.  Returns 0 or -errno.
 */
int devif_run(struct devif *d, int lfd, int stop_fd);

#endif /* DEVIF_H */
