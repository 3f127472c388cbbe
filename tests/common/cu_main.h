/* SPDX-License-Identifier: MIT */
/*
 * cu_main.h - shared CUnit runner for every test program.
 *
 * A test program defines
 *     static const struct cu_suite cu_suites[] = { {"name", init, fini, tests}, ... , {NULL} };
 * with each `tests` a {NULL}-terminated CU_TestInfo array, then includes this
 * header after it with CU_MAIN defined... simply: call cu_run(argc, argv, cu_suites).
 *
 * Output ends with the machine-readable line
 *     CSDTEST <program>: <P> passed, <F> failed, <S> skipped
 * which scripts/count-tests.sh sums up for `make check`.  A test skips by
 * calling cu_skip("reason") and returning (counted once per test).
 * Exit status: 0 all passed, 1 failures, 77 everything skipped.
 */
#ifndef CSD_CU_MAIN_H
#define CSD_CU_MAIN_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cu_suite {
	const char *name;
	CU_InitializeFunc init;
	CU_CleanupFunc fini;
	CU_TestInfo *tests;
};

static unsigned int cu_skipped;

static inline void cu_skip(const char *why)
{
	cu_skipped++;
	fprintf(stderr, "  SKIP: %s\n", why);
}

static inline int cu_run(int argc, char **argv, const struct cu_suite *suites)
{
	const char *prog = strrchr(argv[0], '/');
	const char *only = argc > 1 ? argv[1] : NULL;
	unsigned int run, failed, passed;
	int rc;

	prog = prog ? prog + 1 : argv[0];
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	for (const struct cu_suite *s = suites; s->name; s++) {
		CU_pSuite cs;

		if (only && strcmp(only, s->name) != 0)
			continue;
		cs = CU_add_suite(s->name, s->init, s->fini);
		if (!cs)
			return 2;
		for (CU_TestInfo *t = s->tests; t->pName; t++)
			if (!CU_add_test(cs, t->pName, t->pTestFunc))
				return 2;
	}
	CU_basic_set_mode(getenv("CU_VERBOSE") ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
	CU_basic_run_tests();
	run = CU_get_number_of_tests_run();
	failed = CU_get_number_of_tests_failed() +
		 CU_get_number_of_suites_failed();
	passed = run > failed + cu_skipped ? run - failed - cu_skipped : 0;
	printf("\nCSDTEST %s: %u passed, %u failed, %u skipped\n", prog,
	       passed, failed, cu_skipped);
	rc = failed ? 1 : (run && run == cu_skipped ? 77 : 0);
	CU_cleanup_registry();
	return rc;
}

#endif /* CSD_CU_MAIN_H */
