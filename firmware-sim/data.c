// SPDX-License-Identifier: MIT
/* data.c - scatter/gather helpers for command data buffers. */
#include <string.h>

#include "csdfw.h"

static int locate(const struct csdfw_data *d, size_t off, size_t len,
		  unsigned int *segp, size_t *segoff)
{
	unsigned int i;

	if (!d || off > d->len || len > d->len - off)
		return -1;
	for (i = 0; i < d->nseg; i++) {
		if (off < d->seg[i].len || (len == 0 && off == d->seg[i].len))
			break;
		off -= d->seg[i].len;
	}
	*segp = i;
	*segoff = off;
	return 0;
}

/* Copy between @d's segments at @off and the flat buffer @buf. */
static int data_copy(const struct csdfw_data *d, size_t off, void *buf,
		     size_t len, bool to_data)
{
	unsigned int i;
	size_t so;
	char *p = buf;

	if (len == 0)
		return (d && off <= d->len) || off == 0 ? 0 : -1;
	if (locate(d, off, len, &i, &so))
		return -1;
	for (; len && i < d->nseg; i++, so = 0) {
		char *seg = (char *)d->seg[i].addr + so;
		size_t n = d->seg[i].len - so;

		if (n > len)
			n = len;
		if (to_data)
			memcpy(seg, p, n);
		else
			memcpy(p, seg, n);
		p += n;
		len -= n;
	}
	return len ? -1 : 0;
}

int csdfw_data_read(const struct csdfw_data *d, size_t off, void *dst,
		    size_t len)
{
	return data_copy(d, off, dst, len, false);
}

int csdfw_data_write(const struct csdfw_data *d, size_t off, const void *src,
		     size_t len)
{
	return data_copy(d, off, (void *)src, len, true);
}

void *csdfw_data_ptr(const struct csdfw_data *d, size_t off, size_t len)
{
	unsigned int i;
	size_t so;

	if (locate(d, off, len, &i, &so) || i >= d->nseg)
		return NULL;
	if (len > d->seg[i].len - so)
		return NULL;
	return (char *)d->seg[i].addr + so;
}
