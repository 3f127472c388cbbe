// SPDX-License-Identifier: MIT
/* bench_rtt.c - csd-bench rtt (placeholder: being written). */
#include <stdio.h>

#include "csd-bench.h"

int bench_rtt_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "csd-bench rtt: not implemented yet\n");
	return 1;
}
