// SPDX-License-Identifier: MIT
/* bench_drives.c - csd-bench drives (placeholder: being written). */
#include <stdio.h>

#include "csd-bench.h"

int bench_drives_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "csd-bench drives: not implemented yet\n");
	return 1;
}
