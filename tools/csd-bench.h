/* SPDX-License-Identifier: MIT */
/*
 * csd-bench.h - subcommands of csd-bench (one file each, dispatch table in
 * csd-bench.c).  Each takes the arguments after its name (argv[0] = name)
 * and returns the process exit status.
 */
#ifndef CSD_BENCH_H
#define CSD_BENCH_H

int bench_attn_main(int argc, char **argv);
int bench_matmul_main(int argc, char **argv);
int bench_e2e_main(int argc, char **argv);
int bench_rtt_main(int argc, char **argv);
int bench_sparf_main(int argc, char **argv);
int bench_drives_main(int argc, char **argv);

#endif /* CSD_BENCH_H */
