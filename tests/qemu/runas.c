// SPDX-License-Identifier: MIT
/*
 * runas.c - "runas UID GID CMD [ARG...]": drop every group and privilege,
 * become UID:GID and exec CMD (the guest's busybox has no su without a
 * password database).  Built statically by tests/qemu/run.sh.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static int parse_id(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno || end == s || *end || *v > 0xfffffffeul ? -1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long uid, gid;

	if (argc < 4 || parse_id(argv[1], &uid) || parse_id(argv[2], &gid)) {
		fprintf(stderr, "usage: runas UID GID CMD [ARG...]\n");
		return 2;
	}
	if (setgroups(0, NULL) || setgid((gid_t)gid) || setuid((uid_t)uid)) {
		perror("runas");
		return 2;
	}
	/* no way back: setuid(0) must fail now */
	if (uid && setuid(0) == 0) {
		fprintf(stderr, "runas: still privileged\n");
		return 2;
	}
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	execvp(argv[3], argv + 3);
	fprintf(stderr, "runas: %s: %s\n", argv[3], strerror(errno));
	return 127;
}
