/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * csd_devif.h - the csd device interface (version 1.2): the shared-memory
 * layout and doorbell protocol spoken between the csd-fw daemon and its
 * clients (libcsd's shm: transport; QEMU's ivshmem-doorbell device driven by
 * the csd.ko guest driver, where this memory is BAR2).
 *
 * Documentation/device-interface.md is the prose half of this header.
 * Plain C, usable from the kernel: no userspace-only dependencies.  All
 * multi-byte fields are little-endian.
 *
 * Shared memory (each client gets its own: since v1.1 it holds the register
 * page and that client's area only, and client_stride is 0):
 *
 *   0                       struct csd_devif_regs (4 KiB register page)
 *   client_off + k*stride   client area of client slot k (peer id k + 1);
 *                           it ends at client_off + stride, or at shm_size
 *                           when stride is 0:
 *     +0                      struct csd_devif_client (4 KiB: doorbells)
 *     +q_off + q*q_stride     queue q (0 admin, 1..nr_io_queues I/O):
 *        +sq_off                SQ ring:  queue_depth x struct csd_sqe
 *        +sqx_off               SQX ring: queue_depth x struct csd_devif_sqx
 *        +cq_off                CQ ring:  queue_depth x struct csd_cqe
 *     +win_off                data window, win_size bytes
 *
 * Every offset is read from the register page; none is implied.
 */
#ifndef CSD_DEVIF_H
#define CSD_DEVIF_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/stddef.h>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#include "csd_spec.h"

#define CSD_DEVIF_MAGIC		0x56445343u	/* "CSDV" little-endian */
#define CSD_DEVIF_MAJOR		1
#define CSD_DEVIF_MINOR		2
#define CSD_DEVIF_VERSION	((CSD_DEVIF_MAJOR << 16) | CSD_DEVIF_MINOR)

#define CSD_DEVIF_PAGE		4096u		/* PRP page size, alignment */
#define CSD_DEVIF_MAX_QUEUES	17		/* admin + up to 16 I/O */
#define CSD_DEVIF_MAX_DEPTH	4096
#define CSD_DEVIF_MIN_DEPTH	2
#define CSD_DEVIF_MAX_CLIENTS	64

/* ivshmem peer id of the daemon: clients ring the daemon with
 * doorbell (CSD_DEVIF_DAEMON_PEER << 16 | vector).  Client slot k has peer
 * id k + 1 (= IVPosition in the guest). */
#define CSD_DEVIF_DAEMON_PEER	0

/*
 * Data pointers (PRP1/PRP2, PRP list entries).  Bit 63 set: bits 62:0 are an
 * offset into the client's own data window.  Bit 63 clear: a guest-physical
 * address (only when the daemon maps guest RAM, CSD_DEVIF_CAP_DMA_RAM).
 */
#define CSD_DEVIF_ADDR_WINDOW	(1ull << 63)
#define CSD_DEVIF_ADDR_MASK	(~CSD_DEVIF_ADDR_WINDOW)

/* csd_devif_regs.caps */
enum csd_devif_caps {
	CSD_DEVIF_CAP_WINDOW	= 1u << 0,	/* data window addressing */
	CSD_DEVIF_CAP_DMA_RAM	= 1u << 1,	/* guest-physical PRPs */
	CSD_DEVIF_CAP_CTX_OWNER	= 1u << 2,	/* per-client context ownership */
	CSD_DEVIF_CAP_RESET	= 1u << 3,	/* v1.2: per-client controller
						 * reset (reset_req/reset_ack) */
};

/* csd_devif_regs.status */
enum csd_devif_status {
	CSD_DEVIF_STS_RDY	= 1u << 0,	/* queues accepted */
	CSD_DEVIF_STS_CFS	= 1u << 1,	/* controller fatal status */
	CSD_DEVIF_STS_SHST	= 1u << 2,	/* shut down (daemon exiting) */
};

/* Register page, offset 0 of the shared memory.  Written by the daemon only;
 * read-only for clients. */
struct csd_devif_regs {
	uint32_t magic;		/*   0 CSD_DEVIF_MAGIC */
	uint32_t version;	/*   4 CSD_DEVIF_VERSION */
	uint32_t caps;		/*   8 enum csd_devif_caps */
	uint32_t status;	/*  12 enum csd_devif_status */
	uint64_t heartbeat;	/*  16 incremented every hb_period_ms */
	uint32_t hb_period_ms;	/*  24 */
	uint32_t max_clients;	/*  28 client slots */
	uint32_t nr_io_queues;	/*  32 I/O queues per client (1..16) */
	uint32_t queue_depth;	/*  36 entries per SQ and CQ */
	uint32_t nr_vectors;	/*  40 = nr_io_queues + 1 */
	uint32_t max_xfer;	/*  44 bytes per command (= Identify max_xfer) */
	uint64_t shm_size;	/*  48 */
	uint64_t client_off;	/*  56 client area of slot 0 */
	uint64_t client_stride;	/*  64 0 since v1.1: one client per memory */
	/* the rest are relative to the start of a client area */
	uint64_t q_off;		/*  72 queue 0 */
	uint64_t q_stride;	/*  80 */
	uint64_t sq_off;	/*  88 within a queue */
	uint64_t sqx_off;	/*  96 within a queue */
	uint64_t cq_off;	/* 104 within a queue */
	uint64_t win_off;	/* 112 data window */
	uint64_t win_size;	/* 120 */
	uint64_t dma_size;	/* 128 guest RAM bytes mapped (CAP_DMA_RAM) */
	uint8_t  rsvd[3960];
};

/*
 * Per-queue doorbells: one cache line each so the client's writes and the
 * daemon's reads of different words never share a line.
 */
struct csd_devif_qdb {
	uint32_t sq_tail;	/* client writes (release), daemon reads */
	uint32_t cq_poll;	/* v1.1, client writes: non-zero while it polls
				 * this CQ; the daemon may skip the interrupt.
				 * Hint: 1 + the polling CPU (~0 unknown) */
	uint32_t rsvd0[14];
	uint32_t cq_head;	/* client writes (release), daemon reads */
	uint32_t rsvd1[15];
};

/* csd_devif_client.state */
enum csd_devif_client_state {
	CSD_DEVIF_CLIENT_FREE	= 0,
	CSD_DEVIF_CLIENT_ACTIVE	= 1,
};

/* csd_devif_client.error bits: sticky diagnostics set by the daemon when a
 * client broke the protocol.  An out-of-range doorbell value is ignored
 * (nothing is fetched from a queue while its CQ head is out of range); a
 * command with a bad SQX entry completes with INVALID_FIELD. */
enum csd_devif_client_error {
	CSD_DEVIF_ERR_SQ_TAIL	= 1u << 0,	/* sq_tail >= queue_depth */
	CSD_DEVIF_ERR_CQ_HEAD	= 1u << 1,	/* cq_head >= queue_depth */
	CSD_DEVIF_ERR_SQX	= 1u << 2,	/* bad SQX entry */
};

/*
 * First page of a client area.
 *
 * Controller reset (v1.2, caps CSD_DEVIF_CAP_RESET; Documentation/
 * device-interface.md section 4.4): the client stores reset_ack + 1 in
 * reset_req (release) and rings vector 0.  The daemon stops fetching this
 * client's SQEs, waits until every command it fetched from the client has
 * completed in the firmware, discards their completions (no CQE, no
 * interrupt, no buffer access), zeroes the client's rings, doorbell words
 * and error word, then stores reset_ack = reset_req (release) and signals
 * vector 0.  The client then fails what it had submitted (ABORT_REQ) and
 * starts again at index 0 with phase 1.  Contexts are kept.
 */
struct csd_devif_client {
	uint32_t state;		/* daemon writes: enum csd_devif_client_state */
	uint32_t peer_id;	/* daemon writes: = slot + 1 */
	uint32_t generation;	/* daemon writes: bumped at every attach */
	uint32_t error;		/* daemon writes: enum csd_devif_client_error */
	uint32_t db_poll;	/* v1.1, daemon writes: non-zero while it
				 * busy-polls this client's sq_tail doorbells;
				 * the eventfd kick may be skipped */
	uint32_t reset_req;	/* v1.2, client writes: controller reset
				 * request; store reset_ack + 1 (release),
				 * then ring vector 0 */
	uint32_t reset_ack;	/* v1.2, daemon writes: = the reset_req it
				 * acted on (release) once the reset is
				 * complete, then it signals vector 0 */
	uint8_t  rsvd[100];
	struct csd_devif_qdb db[CSD_DEVIF_MAX_QUEUES];	/* offset 128 */
	uint8_t  rsvd2[4096 - 128 - CSD_DEVIF_MAX_QUEUES * 128];
};

/*
 * SQ extension entry, parallel to the SQ ring (entry i describes SQE i):
 * the number of bytes the command's PRPs describe (0 = no data).  NVMe
 * derives it from the command; this command set checks NDT against the
 * transport's buffer length, so the transport states it here.
 */
struct csd_devif_sqx {
	uint32_t data_len;
	uint32_t flags;		/* must be 0 */
};

_Static_assert(sizeof(struct csd_devif_regs) == 4096, "devif regs size");
_Static_assert(offsetof(struct csd_devif_regs, heartbeat) == 16, "devif hb");
_Static_assert(offsetof(struct csd_devif_regs, max_xfer) == 44,
	       "devif max_xfer");
_Static_assert(offsetof(struct csd_devif_regs, client_off) == 56,
	       "devif client_off");
_Static_assert(offsetof(struct csd_devif_regs, dma_size) == 128,
	       "devif dma_size");
_Static_assert(sizeof(struct csd_devif_qdb) == 128, "devif qdb size");
_Static_assert(offsetof(struct csd_devif_qdb, cq_head) == 64, "devif cq_head");
_Static_assert(offsetof(struct csd_devif_qdb, cq_poll) == 4, "devif cq_poll");
_Static_assert(offsetof(struct csd_devif_client, db_poll) == 16,
	       "devif db_poll");
_Static_assert(offsetof(struct csd_devif_client, reset_req) == 20,
	       "devif reset_req");
_Static_assert(offsetof(struct csd_devif_client, reset_ack) == 24,
	       "devif reset_ack");
_Static_assert(sizeof(struct csd_devif_client) == 4096, "devif client size");
_Static_assert(offsetof(struct csd_devif_client, db) == 128, "devif db");
_Static_assert(sizeof(struct csd_devif_sqx) == 8, "devif sqx size");

#endif /* CSD_DEVIF_H */
