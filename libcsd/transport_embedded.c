// SPDX-License-Identifier: MIT
/*
 * transport_embedded.c - the emulated drive (libcsdfw) linked in-process.
 *
 * Commands go straight to csdfw_submit(); data segments are handed over as
 * a scatter list, so K/V/q/out buffers are never copied by the transport.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "csd_internal.h"
#include "csdfw.h"

struct emb_req {
	csd_cpl_fn done;
	void *arg;
	struct csdfw_seg seg[CSD_MAX_SEGS];
	struct csdfw_data data;
};

static int emb_open(struct csd_dev *dev, const char *opts)
{
	struct csdfw_config cfg;
	struct csdfw *fw;
	char err[256] = "";
	int rc;

	csdfw_config_default(&cfg);
	if (opts && *opts) {
		rc = csdfw_config_parse(&cfg, opts, err, sizeof(err));
		if (rc) {
			csd_debug("embedded: bad options \"%s\": %s\n", opts,
				  err);
			return rc < 0 ? rc : -EINVAL;
		}
	}
	rc = csdfw_create(&cfg, &fw);
	if (rc) {
		csd_debug("embedded: csdfw_create failed: %d\n", rc);
		return rc < 0 ? rc : -EIO;
	}
	dev->tp = fw;
	return 0;
}

static void emb_close(struct csd_dev *dev)
{
	if (dev->tp)
		csdfw_destroy(dev->tp);
	dev->tp = NULL;
}

static void emb_done(void *arg, const struct csd_cqe *cqe)
{
	struct emb_req *r = arg;
	struct csd_cpl cpl = {
		.dw0 = cqe->dw0,
		.dw1 = cqe->dw1,
		.status = (uint16_t)(cqe->status >> 1),
	};
	csd_cpl_fn done = r->done;
	void *darg = r->arg;

	free(r);
	done(darg, &cpl);
}

static int emb_submit(struct csd_dev *dev, int admin,
		      const struct csd_sqe *sqe, const struct csd_seg *seg,
		      unsigned int nseg, csd_cpl_fn done, void *arg)
{
	struct emb_req *r;
	unsigned int i;

	if (nseg > CSD_MAX_SEGS)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->done = done;
	r->arg = arg;
	for (i = 0; i < nseg; i++) {
		r->seg[i].addr = seg[i].addr;
		r->seg[i].len = seg[i].len;
		r->data.len += seg[i].len;
	}
	r->data.seg = r->seg;
	r->data.nseg = nseg;
	csdfw_submit(dev->tp, admin ? CSDFW_Q_ADMIN : CSDFW_Q_IO, sqe,
		     nseg ? &r->data : NULL, emb_done, r);
	return 0;
}

const struct csd_transport_ops csd_transport_embedded = {
	.name = "embedded",
	.open = emb_open,
	.close = emb_close,
	.submit = emb_submit,
	/* no .reset: the in-process drive has no controller to reset
	 * (commands are function calls); csd_dev_reset() -> -EOPNOTSUPP */
};
