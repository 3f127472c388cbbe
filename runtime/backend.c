/* SPDX-License-Identifier: MIT */
/*
 * backend.c - attention backend lookup.
 */
#include <string.h>

#include "backend.h"

static const struct rt_backend_ops *const rt_backends[] = {
	&rt_backend_host,
	&rt_backend_flexgen,
	&rt_backend_csd,
};

const struct rt_backend_ops *rt_backend_find(const char *name)
{
	size_t i;

	if (!name)
		return NULL;
	for (i = 0; i < sizeof(rt_backends) / sizeof(rt_backends[0]); i++)
		if (strcmp(rt_backends[i]->name, name) == 0)
			return rt_backends[i];
	return NULL;
}
