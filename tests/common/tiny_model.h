/* SPDX-License-Identifier: MIT */
/*
 * tiny_model.h - tests only: the runtime's synthetic "tiny" model, written
 * to a temporary GGUF file (in $TMPDIR or /tmp), opened and unlinked.
 * Include after rt_model.h and rt_synth.h.
 */
#ifndef CSD_TEST_TINY_MODEL_H
#define CSD_TEST_TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open a fresh tiny model made with @seed; 0 or -1 (reason on stderr). */
static inline int test_tiny_model_open(const char *tag, uint64_t seed,
				       struct rt_model **m)
{
	const char *tmp = getenv("TMPDIR");
	struct rt_synth_opts so;
	char path[512], err[256] = "";
	int fd;

	snprintf(path, sizeof(path), "%s/%s-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp", tag);
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	memset(&so, 0, sizeof(so));
	so.preset = "tiny";
	so.wtype = -1;
	so.seed = seed;
	so.threads = 2;
	if (rt_synth_write(path, &so, err, sizeof(err)) < 0 ||
	    rt_model_open(path, m, err, sizeof(err)) < 0) {
		fprintf(stderr, "tiny model: %s\n", err);
		unlink(path);
		return -1;
	}
	unlink(path);
	return 0;
}

#endif /* CSD_TEST_TINY_MODEL_H */
