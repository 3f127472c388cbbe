// SPDX-License-Identifier: MIT
/* status.c - NVMe/CSD status field to errno and to a name. */
#include <errno.h>

#include "csd_internal.h"

struct status_map {
	uint16_t code;		/* CSD_STATUS(sct, sc) */
	int err;
	const char *name;
};

static const struct status_map status_map[] = {
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_SUCCESS), 0, "SUCCESS" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_OPCODE), -EOPNOTSUPP,
	  "INVALID_OPCODE" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_FIELD), -EINVAL,
	  "INVALID_FIELD" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_DATA_XFER_ERROR), -EIO,
	  "DATA_XFER_ERROR" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INTERNAL), -EIO, "INTERNAL" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_ABORT_REQ), -ECANCELED,
	  "ABORT_REQ" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_INVALID_NS), -EINVAL,
	  "INVALID_NS" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_SGL_INVALID), -EFAULT,
	  "SGL_INVALID" },
	{ CSD_STATUS(CSD_SCT_GENERIC, CSD_SC_OP_DENIED), -EACCES,
	  "OPERATION_DENIED" },
	{ CSD_STATUS(CSD_SCT_CMD_SPECIFIC, CSD_SC_INVALID_LOG_PAGE), -EINVAL,
	  "INVALID_LOG_PAGE" },
	{ CSD_STATUS(CSD_SCT_CMD_SPECIFIC, CSD_SC_FEATURE_NOT_SAVEABLE), -EIO,
	  "FEATURE_NOT_SAVEABLE" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_INVALID), -ENOENT,
	  "CTX_INVALID" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_FULL), -EFBIG, "CTX_FULL" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_NO_SPACE), -ENOSPC, "NO_SPACE" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_LENGTH), -EINVAL, "LENGTH" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_TOKEN_ORDER), -EILSEQ,
	  "TOKEN_ORDER" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_SEQ_RANGE), -ERANGE, "SEQ_RANGE" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_LAYER_RANGE), -ERANGE,
	  "LAYER_RANGE" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_TAG_BUSY), -EBUSY, "TAG_BUSY" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_TAG_INVALID), -EINVAL,
	  "TAG_INVALID" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_CTX_LIMIT), -EMFILE, "CTX_LIMIT" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_UNSUPPORTED), -EOPNOTSUPP,
	  "UNSUPPORTED" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_BUSY), -EBUSY, "BUSY" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_TOKEN_RANGE), -ERANGE,
	  "TOKEN_RANGE" },
	{ CSD_STATUS(CSD_SCT_VENDOR, CSD_VSC_EMPTY_SEQ), -ENODATA,
	  "EMPTY_SEQ" },
};

static const struct status_map *status_find(uint16_t status)
{
	uint16_t code = CSD_STATUS_CODE(status);
	size_t i;

	for (i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++)
		if (status_map[i].code == code)
			return &status_map[i];
	return NULL;
}

CSD_EXPORT int csd_status_to_errno(uint16_t status)
{
	const struct status_map *m = status_find(status);

	return m ? m->err : -EIO;
}

CSD_EXPORT const char *csd_status_str(uint16_t status)
{
	const struct status_map *m = status_find(status);

	if (m)
		return m->name;
	switch (CSD_STATUS_SCT(status)) {
	case CSD_SCT_GENERIC:
		return "GENERIC_UNKNOWN";
	case CSD_SCT_CMD_SPECIFIC:
		return "CMD_SPECIFIC_UNKNOWN";
	case CSD_SCT_MEDIA:
		return "MEDIA_ERROR";
	case CSD_SCT_VENDOR:
		return "VENDOR_UNKNOWN";
	default:
		return "UNKNOWN";
	}
}
