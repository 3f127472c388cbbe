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

int csdfw_data_read(const struct csdfw_data *d, size_t off, void *dst,
		    size_t len)
{
	unsigned int i;
	size_t so;
	char *p = dst;

	if (len == 0)
		return (d && off <= d->len) || off == 0 ? 0 : -1;
	if (locate(d, off, len, &i, &so))
		return -1;
	for (; len && i < d->nseg; i++, so = 0) {
		size_t n = d->seg[i].len - so;

		if (n > len)
			n = len;
		memcpy(p, (const char *)d->seg[i].addr + so, n);
		p += n;
		len -= n;
	}
	return len ? -1 : 0;
}

int csdfw_data_write(const struct csdfw_data *d, size_t off, const void *src,
		     size_t len)
{
	unsigned int i;
	size_t so;
	const char *p = src;

	if (len == 0)
		return (d && off <= d->len) || off == 0 ? 0 : -1;
	if (locate(d, off, len, &i, &so))
		return -1;
	for (; len && i < d->nseg; i++, so = 0) {
		size_t n = d->seg[i].len - so;

		if (n > len)
			n = len;
		memcpy((char *)d->seg[i].addr + so, p, n);
		p += n;
		len -= n;
	}
	return len ? -1 : 0;
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
