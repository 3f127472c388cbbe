// SPDX-License-Identifier: MIT
/*
 * csd-bench - benchmarks of the CSD stack.  `csd-bench <command> [options]`;
 * `csd-bench --help` lists the commands, `csd-bench <command> --help` their
 * options.
 */
#include <stdio.h>
#include <string.h>

#include "csd-bench.h"

struct bench_cmd {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
};

static const struct bench_cmd cmds[] = {
	{ "attn", bench_attn_main,
	  "attention kernels (scalar/avx2/avx512) vs a STREAM read of the same bytes" },
	{ "matmul", bench_matmul_main,
	  "runtime matmul GFLOP/s and weight GB/s per type x ISA x batch" },
	{ "e2e", bench_e2e_main,
	  "csd vs flexgen decode tokens/s over a batch sweep, measured + modeled" },
	{ "rtt", bench_rtt_main,
	  "admin round trip: embedded, shm (irq/polled), eventfd ping-pong, io_uring NOP" },
	{ "sparf", bench_sparf_main,
	  "SparF accuracy (NMSE, greedy agreement) and speed vs dense" },
	{ "drives", bench_drives_main,
	  "modeled decode throughput with 1, 2, 4, 8 drives" },
	{ NULL, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: csd-bench <command> [options]\n\ncommands:\n");
	for (const struct bench_cmd *c = cmds; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->help);
	fprintf(f, "\n`csd-bench <command> --help` shows a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (const struct bench_cmd *c = cmds; c->name; c++)
		if (!strcmp(argv[1], c->name))
			return c->main(argc - 1, argv + 1);
	fprintf(stderr, "csd-bench: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
