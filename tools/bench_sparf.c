// SPDX-License-Identifier: MIT
/* bench_sparf.c - csd-bench sparf (placeholder: being written). */
#include <stdio.h>

#include "csd-bench.h"

int bench_sparf_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "csd-bench sparf: not implemented yet\n");
	return 1;
}
