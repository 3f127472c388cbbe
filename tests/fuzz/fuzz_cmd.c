// SPDX-License-Identifier: MIT
/*
 * fuzz_cmd.c - libFuzzer target for the firmware core's command decoder.
 *
 * The input is a stream of commands, each
 *
 *   u8   mode     bit 0: queue (0 admin, 1 I/O)
 *                 bit 1: "tidy": force flags = 0, mptr = 0, NDM = 0 and
 *                        NDT = data length / 4 (and nsid = 1 on the I/O
 *                        queue), so the fuzzer gets past step 2 often
 *   u8   sqe[64]  the submission entry, little endian
 *   u16  len      data bytes (LE), capped to what is left and to 64 KiB
 *   u8   data[len]
 *
 * run against a small embedded device created per input (fast timing
 * profile, 2 channels, few contexts/tags) so every input is reproducible.
 * The device must never crash, hang, leak, or complete a command twice;
 * every completion must carry the command's cid and, on error, DNR.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csdfw.h"

#define MAX_CMDS	64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct done_count {
	int n;
	uint16_t cid;
};

static void on_done(void *arg, const struct csd_cqe *cqe)
{
	struct done_count *d = arg;

	d->n++;
	if (cqe->cid != d->cid)
		abort();
	if ((cqe->status >> 1) && !((cqe->status >> 1) & CSD_STATUS_DNR))
		abort();
}

static struct csdfw *make_dev(void)
{
	struct csdfw_config cfg;
	struct csdfw *fw = NULL;

	csdfw_config_default(&cfg);
	if (csdfw_config_parse(&cfg, "profile=fast,capacity=1M,channels=2,"
			       "block=4,threads=1,contexts=3,seqs=8,"
			       "tokens=512,tags=4,attn_seqs=4,xfer=64K",
			       NULL, 0))
		abort();
	if (csdfw_create(&cfg, &fw))
		abort();
	return fw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csdfw *fw = make_dev();
	uint8_t *buf = malloc(65536 + 4);
	struct done_count dcs[MAX_CMDS];
	int ncmd = 0, nasync = 0, i;

	if (!buf)
		abort();
	while (size >= 1 + 64 + 2 && ncmd++ < MAX_CMDS) {
		uint8_t mode = data[0];
		struct csd_sqe sqe;
		struct csdfw_seg seg;
		struct csdfw_data d;
		struct csd_cqe cqe;
		size_t len;

		memcpy(&sqe, data + 1, 64);
		len = (size_t)data[65] | (size_t)data[66] << 8;
		data += 67;
		size -= 67;
		if (len > size)
			len = size;
		memcpy(buf, data, len);
		data += len;
		size -= len;
		if (mode & 2) {
			sqe.flags = 0;
			sqe.mptr = 0;
			if (mode & 1) {
				sqe.nsid = CSD_NSID;
				sqe.cdw11 = 0;
				len &= ~(size_t)3;
				sqe.cdw10 = (uint32_t)(len / 4);
			}
		}
		seg.addr = buf;
		seg.len = len;
		d.seg = &seg;
		d.nseg = 1;
		d.len = len;
		csdfw_exec(fw, (mode & 1) ? CSDFW_Q_IO : CSDFW_Q_ADMIN, &sqe,
			   len ? &d : NULL, &cqe);
		if (cqe.cid != sqe.cid)
			abort();
		/* the same through the asynchronous path */
		if (mode & 4) {
			struct done_count *dc = &dcs[nasync++];

			dc->n = 0;
			dc->cid = sqe.cid;
			/* may park (ATTN_READ): destroy waits for it */
			csdfw_submit(fw, (mode & 1) ? CSDFW_Q_IO : CSDFW_Q_ADMIN,
				     &sqe, len ? &d : NULL, on_done, dc);
		}
	}
	csdfw_destroy(fw);	/* waits for everything in flight */
	for (i = 0; i < nasync; i++)
		if (dcs[i].n != 1)
			abort();
	free(buf);
	return 0;
}
