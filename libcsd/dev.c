// SPDX-License-Identifier: MIT
/*
 * dev.c - device handles: open (device string parsing, transport choice),
 * Identify, statistics, contexts log, features, flush and passthrough.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csd_internal.h"

/* transport_shm.c: the csd-fw daemon over the device interface */
extern const struct csd_transport_ops csd_transport_shm;

void csd_debug(const char *fmt, ...)
{
	const char *e = getenv("CSD_DEBUG");
	va_list ap;

	if (!e || !*e || !strcmp(e, "0"))
		return;
	va_start(ap, fmt);
	fputs("libcsd: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* ---- synchronous execution ------------------------------------------- */

struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	struct csd_cpl cpl;
};

static void sync_done(void *arg, const struct csd_cpl *cpl)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->lock);
	w->cpl = *cpl;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int csd_exec(struct csd_dev *dev, int admin, struct csd_sqe *sqe,
	     const struct csd_seg *seg, unsigned int nseg, struct csd_cpl *cpl)
{
	struct sync_wait w = { .done = 0 };
	int rc;

	sqe->cid = (uint16_t)atomic_fetch_add(&dev->cid, 1);
	if (dev->ops->exec)	/* the transport waits in this thread */
		return dev->ops->exec(dev, admin, sqe, seg, nseg, cpl);
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	rc = dev->ops->submit(dev, admin, sqe, seg, nseg, sync_done, &w);
	if (!rc) {
		pthread_mutex_lock(&w.lock);
		while (!w.done)
			pthread_cond_wait(&w.cond, &w.lock);
		pthread_mutex_unlock(&w.lock);
		*cpl = w.cpl;
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return rc;
}

int csd_exec_status(struct csd_dev *dev, int admin, struct csd_sqe *sqe,
		    const struct csd_seg *seg, unsigned int nseg,
		    struct csd_cpl *cpl)
{
	struct csd_cpl c;
	int rc;

	rc = csd_exec(dev, admin, sqe, seg, nseg, &c);
	if (rc)
		return rc;
	if (cpl)
		*cpl = c;
	if (c.status) {
		csd_debug("opcode 0x%02x %s: status 0x%04x (%s)\n", sqe->opcode,
			  admin ? "admin" : "io", c.status,
			  csd_status_str(c.status));
		return csd_status_to_errno(c.status);
	}
	return 0;
}

int csd_get_log(struct csd_dev *dev, uint8_t lid, void *buf, uint32_t len)
{
	struct csd_sqe sqe = { 0 };
	struct csd_seg seg = { buf, len };
	uint32_t numd;

	if (len < 4 || len % 4)
		return -EINVAL;
	numd = len / 4 - 1;
	sqe.opcode = CSD_ADM_GET_LOG_PAGE;
	sqe.nsid = 0xffffffffu;
	sqe.cdw10 = lid | (numd & 0xffff) << 16;
	sqe.cdw11 = numd >> 16;
	return csd_exec_status(dev, 1, &sqe, &seg, 1, NULL);
}

/* ---- open / close ---------------------------------------------------- */

static void copy_trim(char *dst, size_t dlen, const char *src, size_t slen)
{
	size_t n = slen < dlen - 1 ? slen : dlen - 1;

	memcpy(dst, src, n);
	dst[n] = 0;
	while (n && (dst[n - 1] == ' ' || dst[n - 1] == 0))
		dst[--n] = 0;
}

static int dev_identify(struct csd_dev *dev)
{
	struct csd_dev_info *in = &dev->info;
	const struct csd_id_vs *vs;
	struct csd_sqe sqe = { 0 };
	struct csd_seg seg;
	int rc;

	dev->id = calloc(1, sizeof(*dev->id));
	if (!dev->id)
		return -ENOMEM;
	seg.addr = dev->id;
	seg.len = sizeof(*dev->id);
	sqe.opcode = CSD_ADM_IDENTIFY;
	sqe.cdw10 = CSD_ID_CNS_CTRL;
	rc = csd_exec_status(dev, 1, &sqe, &seg, 1, NULL);
	if (rc)
		return rc;
	vs = &dev->id->vs;
	if (vs->magic != CSD_ID_MAGIC) {
		csd_debug("identify: bad magic 0x%08x\n", vs->magic);
		return -ENODEV;
	}
	if ((vs->spec_version >> 16) != CSD_SPEC_MAJOR) {
		csd_debug("identify: spec version 0x%08x not supported\n",
			  vs->spec_version);
		return -EPROTO;
	}
	copy_trim(in->model, sizeof(in->model), dev->id->mn,
		  sizeof(dev->id->mn));
	copy_trim(in->serial, sizeof(in->serial), dev->id->sn,
		  sizeof(dev->id->sn));
	copy_trim(in->firmware, sizeof(in->firmware), dev->id->fr,
		  sizeof(dev->id->fr));
	copy_trim(in->fw_version, sizeof(in->fw_version), vs->fw_version,
		  sizeof(vs->fw_version));
	copy_trim(in->simd, sizeof(in->simd), vs->simd, sizeof(vs->simd));
	copy_trim(in->profile, sizeof(in->profile), vs->profile,
		  sizeof(vs->profile));
	snprintf(in->transport, sizeof(in->transport), "%s", dev->ops->name);
	in->spec_version = vs->spec_version;
	in->dtypes = vs->dtypes;
	in->features = vs->features;
	in->min_head_dim = vs->min_head_dim;
	in->max_head_dim = vs->max_head_dim;
	in->head_dim_align = vs->head_dim_align;
	in->max_layers = vs->max_layers;
	in->max_kv_heads = vs->max_kv_heads;
	in->max_q_heads = vs->max_q_heads;
	in->max_contexts = vs->max_contexts;
	in->max_seqs = vs->max_seqs;
	in->max_tokens = vs->max_tokens;
	in->max_tags = vs->max_tags;
	in->max_attn_seqs = vs->max_attn_seqs;
	in->max_xfer = vs->max_xfer;
	in->channels = vs->nchannels;
	in->page_size = vs->page_size;
	in->pages_per_block = vs->pages_per_block;
	in->threads = vs->threads;
	in->capacity = vs->capacity;
	in->chan_mbps = vs->chan_mbps;
	in->link_mbps = vs->link_mbps;
	in->read_lat_ns = vs->read_lat_ns;
	in->prog_lat_ns = vs->prog_lat_ns;
	if (in->max_xfer < 4096 || in->max_tags == 0) {
		csd_debug("identify: implausible limits (max_xfer %u tags %u)\n",
			  in->max_xfer, in->max_tags);
		return -EPROTO;
	}
	return 0;
}

static int parse_spec(const char *spec, const struct csd_transport_ops **ops,
		      const char **opts)
{
	const char *env;

	if (!spec || !*spec) {
		env = getenv("CSD_DEVICE");
		spec = env && *env ? env : "embedded:";
	}
	if (!strncmp(spec, "embedded", 8) && (spec[8] == 0 || spec[8] == ':')) {
		*ops = &csd_transport_embedded;
		*opts = spec[8] ? spec + 9 : "";
		return 0;
	}
	if (!strncmp(spec, "shm:", 4)) {
		*ops = &csd_transport_shm;
		*opts = spec + 4;
		return 0;
	}
	if (!strncmp(spec, "/dev/", 5)) {
		/* transport_kernel.c: NVMe passthrough char device */
		*ops = &csd_transport_kernel;
		*opts = spec;
		return 0;
	}
	csd_debug("\"%s\": unknown device string\n", spec);
	return -EINVAL;
}

CSD_EXPORT int csd_dev_open(const char *spec, struct csd_dev **devp)
{
	const struct csd_transport_ops *ops;
	struct csd_dev *dev;
	const char *opts;
	int rc;

	if (csd_group_is_spec(spec))	/* "A,B,..." (group.c) */
		return csd_group_open_spec(spec, devp);
	if (!devp)
		return -EINVAL;
	*devp = NULL;
	rc = parse_spec(spec, &ops, &opts);
	if (rc)
		return rc;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->ops = ops;
	atomic_init(&dev->cid, 0);
	rc = pthread_mutex_init(&dev->lock, NULL);
	if (rc) {
		free(dev);
		return -rc;
	}
	rc = ops->open(dev, opts);
	if (rc)
		goto err_free;
	rc = dev_identify(dev);
	if (rc)
		goto err_close;
	*devp = dev;
	return 0;

err_close:
	ops->close(dev);
err_free:
	free(dev->id);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
	return rc;
}

/* Contexts still open through a handle are destroyed when it closes. */
void csd_dev_destroy_contexts(struct csd_dev *dev)
{
	struct csd_ctx *ctx;

	for (;;) {
		pthread_mutex_lock(&dev->lock);
		ctx = dev->ctx_list;
		pthread_mutex_unlock(&dev->lock);
		if (!ctx)
			break;
		csd_ctx_destroy(ctx);
	}
}

CSD_EXPORT void csd_dev_close(struct csd_dev *dev)
{
	if (!dev)
		return;
	if (dev->grp) {
		csd_group_close(dev);
		return;
	}
	csd_dev_destroy_contexts(dev);
	dev->ops->close(dev);
	free(dev->id);
	pthread_mutex_destroy(&dev->lock);
	free(dev);
}

CSD_EXPORT int csd_dev_get_info(struct csd_dev *dev, struct csd_dev_info *info)
{
	if (!dev || !info)
		return -EINVAL;
	*info = dev->info;
	return 0;
}

CSD_EXPORT int csd_dev_get_stats(struct csd_dev *dev, struct csd_dev_stats *st)
{
	struct csd_log_stats ls = { 0 };	/* the log read fills it */
	int rc;

	if (!dev || !st)
		return -EINVAL;
	if (dev->grp)
		return csd_group_get_stats(dev, st);
	rc = csd_get_log(dev, CSD_LOG_STATS, &ls, sizeof(ls));
	if (rc)
		return rc;
	st->kv_bytes_stored = ls.kv_bytes_stored;
	st->flash_bytes_used = ls.flash_bytes_used;
	st->flash_bytes_read = ls.flash_bytes_read;
	st->flash_bytes_written = ls.flash_bytes_written;
	st->host_bytes_in = ls.host_bytes_in;
	st->host_bytes_out = ls.host_bytes_out;
	st->attn_calls = ls.attn_calls;
	st->attn_seqs = ls.attn_seqs;
	st->attn_tokens = ls.attn_tokens;
	st->commands = ls.commands;
	st->errors = ls.errors;
	st->modeled_ns = ls.modeled_ns;
	st->busy_ns = ls.busy_ns;
	st->contexts = ls.contexts;
	st->blocks_free = ls.blocks_free;
	st->blocks_total = ls.blocks_total;
	return 0;
}

CSD_EXPORT int csd_dev_set_pacing(struct csd_dev *dev, int on)
{
	struct csd_sqe sqe = { 0 };

	if (!dev)
		return -EINVAL;
	if (dev->grp)
		return csd_group_set_pacing(dev, on);
	sqe.opcode = CSD_ADM_SET_FEATURES;
	sqe.cdw10 = CSD_FEAT_ID_PACING;
	sqe.cdw11 = on ? 1 : 0;
	return csd_exec_status(dev, 1, &sqe, NULL, 0, NULL);
}

CSD_EXPORT int csd_dev_flush(struct csd_dev *dev)
{
	struct csd_sqe sqe;

	if (!dev)
		return -EINVAL;
	if (dev->grp)
		return csd_group_flush(dev);
	csd_sqe_io(&sqe, CSD_IO_FLUSH, 0, 0);
	return csd_exec_status(dev, 0, &sqe, NULL, 0, NULL);
}

/*
 * Controller reset of this handle's queues: the transport fails every
 * command in flight with ABORT_REQ (-ECANCELED to its caller); contexts are
 * kept.  A group resets every member.
 */
CSD_EXPORT int csd_dev_reset(struct csd_dev *dev)
{
	if (!dev)
		return -EINVAL;
	if (dev->grp)
		return csd_group_reset(dev);
	if (!dev->ops->reset)
		return -EOPNOTSUPP;
	return dev->ops->reset(dev);
}

CSD_EXPORT int csd_dev_list_ctx(struct csd_dev *dev, struct csd_ctx_entry *ents,
				size_t max)
{
	const struct csd_log_ctx_hdr *hdr;
	const struct csd_log_ctx_entry *e;
	uint64_t len;
	size_t i, n;
	void *buf;
	int rc;

	if (!dev || (max && !ents))
		return -EINVAL;
	if (dev->grp)
		return csd_group_list_ctx(dev, ents, max);
	len = ((uint64_t)dev->info.max_contexts + 1) * sizeof(*e);
	if (len > UINT32_MAX / 2)
		return -EOVERFLOW;
	buf = calloc(1, len);
	if (!buf)
		return -ENOMEM;
	rc = csd_get_log(dev, CSD_LOG_CONTEXTS, buf, (uint32_t)len);
	if (rc)
		goto out;
	hdr = buf;
	e = (const struct csd_log_ctx_entry *)(hdr + 1);
	n = hdr->count;
	if (n > dev->info.max_contexts)
		n = dev->info.max_contexts;
	for (i = 0; i < n && i < max; i++) {
		ents[i] = (struct csd_ctx_entry){
			.id = e[i].ctx_id,
			.layers = e[i].layers,
			.kv_heads = e[i].kv_heads,
			.q_heads = e[i].q_heads,
			.head_dim = e[i].head_dim,
			.dtype = (enum csd_kv_dtype)e[i].dtype,
			.max_seqs = e[i].max_seqs,
			.max_tokens = e[i].max_tokens,
			.seqs_used = e[i].seqs_used,
			.bytes_used = e[i].bytes_used,
			.tokens = e[i].tokens,
		};
	}
	rc = (int)n;
out:
	free(buf);
	return rc;
}

CSD_EXPORT int csd_dev_passthru(struct csd_dev *dev, int admin,
				struct csd_passthru *cmd)
{
	struct csd_sqe sqe = { 0 };
	struct csd_seg seg;
	struct csd_cpl cpl;
	int rc;

	if (!dev || !cmd || (cmd->data_len && !cmd->addr))
		return -EINVAL;
	sqe.opcode = cmd->opcode;
	sqe.flags = cmd->flags;
	sqe.nsid = cmd->nsid;
	sqe.cdw2 = cmd->cdw2;
	sqe.cdw3 = cmd->cdw3;
	sqe.cdw10 = cmd->cdw10;
	sqe.cdw11 = cmd->cdw11;
	sqe.cdw12 = cmd->cdw12;
	sqe.cdw13 = cmd->cdw13;
	sqe.cdw14 = cmd->cdw14;
	sqe.cdw15 = cmd->cdw15;
	seg.addr = cmd->addr;
	seg.len = cmd->data_len;
	rc = csd_exec(dev, admin ? 1 : 0, &sqe, &seg, cmd->data_len ? 1 : 0,
		      &cpl);
	if (rc)
		return rc;
	cmd->result = cpl.dw0 | (uint64_t)cpl.dw1 << 32;
	cmd->status = cpl.status;
	return 0;
}
