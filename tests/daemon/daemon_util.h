/* SPDX-License-Identifier: MIT */
/*
 * daemon_util.h - shared helpers of the daemon tests (tests/daemon/).
 *
 * One copy of what test_devif.c, test_restart.c and test_orphans.c need
 * around a csd-fw daemon:
 *
 *   sleep_ms()                  bounded-wait building block
 *   struct daemon               a daemon's directory, socket, client spec,
 *                               log file and process
 *   daemon_dir_make/_remove()   a private /tmp directory holding the socket
 *                               (also for tests that serve in-process)
 *   daemon_start[_log]()        spawn $CSD_FW in a fresh private directory
 *   daemon_spawn()              spawn $CSD_FW in an existing directory
 *                               (restart on the same backing file)
 *   daemon_stop()               signal and reap, bounded
 *   kill_leftovers()            kill what a FATAL assertion left running
 *   log_has[_quiet]()           grep the daemon's stderr (all of it)
 *   dev_io()                    one I/O passthru command on queue 0
 *   ctx_listed()                whether a context id is listed
 *
 * Everything is static inline (each test is one translation unit; unused
 * helpers cost nothing), independent of CUnit, and every wait is bounded
 * by WAIT_MS.  Like cu_main.h, include it once per test program.
 */
#ifndef CSD_TESTS_DAEMON_UTIL_H
#define CSD_TESTS_DAEMON_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csd.h"
#include "csd/csd_spec.h"

/* Bound of every wait (start-up, reaping, ...), in milliseconds. */
#ifndef WAIT_MS
#define WAIT_MS 10000
#endif

/* Directory name (/tmp/csd-<name>.XXXXXX) of daemon_start()'s daemons;
 * define it before including this header to name them after the test. */
#ifndef DAEMON_DIR_NAME
#define DAEMON_DIR_NAME "daemon"
#endif

static inline void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- daemon directory ------------------------------------------------- */

struct daemon {
	pid_t pid;		/* the running daemon, 0 when none */
	char dir[64];		/* directory holding the socket (and log) */
	char sock[128];		/* its listening socket: <dir>/sock */
	char spec[160];		/* "shm:<sock>", for csd_dev_open() */
	char log[128];		/* its stderr (<dir>/log) when asked for, or "" */
	int own_dir;		/* daemon_stop() removes dir (daemon_start*) */
};

/*
 * Clear @d and make a private directory /tmp/csd-<name>.XXXXXX for it:
 * fills dir, sock and spec (nothing is spawned).  Remove it with
 * daemon_dir_remove() (after removing any file of the caller's in it).
 * Returns 0 or -1.
 */
static inline int daemon_dir_make(struct daemon *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/csd-%s.XXXXXX", name);
	if (!mkdtemp(d->dir)) {
		d->dir[0] = 0;
		return -1;
	}
	snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
	snprintf(d->spec, sizeof(d->spec), "shm:%s", d->sock);
	return 0;
}

/* Remove @d's socket, log and (then empty) directory; harmless when some
 * or all of them do not exist. */
static inline void daemon_dir_remove(const struct daemon *d)
{
	if (d->sock[0])
		unlink(d->sock);
	if (d->log[0])
		unlink(d->log);
	if (d->dir[0])
		rmdir(d->dir);
}

/* ---- daemon process --------------------------------------------------- */

/*
 * Daemons still running when the program exits (a FATAL assertion leaves
 * its test early) are killed by kill_leftovers() (call it from the suites'
 * cleanup and/or atexit()), so none outlives the test and holds its output
 * pipe open; children also get SIGKILL if this process dies.
 *
 * A slot holds a daemon's pid from its spawn until daemon_stop() (or
 * daemon_spawn() itself, for a daemon that exited early) reaps it and
 * clears the slot.  Nothing else reaps: a daemon that exited on its own
 * stays a zombie, so its pid cannot be recycled while a struct daemon
 * still names it.
 */
static pid_t daemon_started[64];
#define DAEMON_SLOTS (sizeof(daemon_started) / sizeof(daemon_started[0]))

/* Whether @pid is a child of ours not reaped yet (running, stopped or a
 * zombie).  Never reaps. */
static inline int daemon_unreaped(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	return pid > 0 &&
	       waitid(P_PID, (id_t)pid, &si,
		      WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* Kill (SIGCONT, then SIGKILL: a stopped one too) and reap every daemon
 * started and not yet reaped. */
static inline void kill_leftovers(void)
{
	unsigned int i;

	for (i = 0; i < DAEMON_SLOTS; i++) {
		pid_t pid = daemon_started[i];

		if (daemon_unreaped(pid)) {
			kill(pid, SIGCONT);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		daemon_started[i] = 0;
	}
}

/* Record @pid for kill_leftovers(), in a free slot or one whose pid is no
 * child of ours any more (reaped by someone else; never a zombie, which
 * the struct daemon naming it still has to reap).  Returns 0, or -1 when
 * every slot holds an unreaped child. */
static inline int daemon_remember(pid_t pid)
{
	unsigned int i;

	for (i = 0; i < DAEMON_SLOTS; i++) {
		if (!daemon_unreaped(daemon_started[i])) {
			daemon_started[i] = pid;
			return 0;
		}
	}
	fprintf(stderr, "daemon_util: more than %zu daemons unreaped\n",
		DAEMON_SLOTS);
	return -1;
}

/* Clear @pid's slot: it has been reaped. */
static inline void daemon_forget(pid_t pid)
{
	unsigned int i;

	for (i = 0; i < DAEMON_SLOTS; i++)
		if (daemon_started[i] == pid)
			daemon_started[i] = 0;
}

/* Most @extra arguments daemon_spawn() takes. */
#define DAEMON_MAX_EXTRA 16

/*
 * Spawn $CSD_FW in @d's directory (set up by daemon_dir_make(), possibly
 * used by an earlier daemon):
 *
 *   $CSD_FW --socket <sock> --foreground --shm-size 32M [extra...]
 *
 * @extra: NULL or a NULL-terminated list of further arguments (at most
 * DAEMON_MAX_EXTRA; more is a test bug: reported, -1, nothing spawned).
 * @log: the daemon's stderr goes to <dir>/log (truncated; d->log) instead
 * of this process's stderr.  A stale socket (a killed daemon's) is
 * removed first.  Waits (bounded) until the socket exists.  Returns 0, or
 * -1 when $CSD_FW is not set, the daemon exits early or never listens
 * (then it may still run: daemon_stop() or kill_leftovers() end it).
 */
static inline int daemon_spawn(struct daemon *d, const char *const *extra,
			       int log)
{
	const char *fw = getenv("CSD_FW");
	const char *argv[6 + DAEMON_MAX_EXTRA + 1];
	pid_t parent = getpid();
	int n = 0, i;

	d->pid = 0;
	d->log[0] = 0;
	if (!fw)
		return -1;
	for (i = 0; extra && extra[i]; i++) {
		if (i == DAEMON_MAX_EXTRA) {
			fprintf(stderr, "daemon_spawn: more than %d extra "
				"arguments\n", DAEMON_MAX_EXTRA);
			return -1;
		}
	}
	if (log)
		snprintf(d->log, sizeof(d->log), "%s/log", d->dir);
	unlink(d->sock);
	argv[n++] = fw;
	argv[n++] = "--socket";
	argv[n++] = d->sock;
	argv[n++] = "--foreground";
	argv[n++] = "--shm-size";
	argv[n++] = "32M";
	for (i = 0; extra && extra[i]; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	d->pid = fork();
	if (d->pid < 0) {
		d->pid = 0;
		return -1;
	}
	if (d->pid == 0) {
		/* SIGKILL when this process dies -- also if it died before
		 * the prctl (we were reparented already: it would never
		 * come) */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
		    getppid() != parent)
			_exit(125);
		if (log) {
			int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC,
				      0600);

			if (fd < 0 || dup2(fd, 2) < 0)
				_exit(126);
			close(fd);
		}
		execv(fw, (char *const *)argv);
		_exit(127);
	}
	if (daemon_remember(d->pid)) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
		return -1;
	}
	for (i = 0; i < WAIT_MS / 20; i++) {
		struct stat st;
		int status;

		if (stat(d->sock, &st) == 0 && S_ISSOCK(st.st_mode))
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			daemon_forget(d->pid);
			d->pid = 0;
			return -1;
		}
		sleep_ms(20);
	}
	return -1;
}

/*
 * Start a daemon in a fresh private directory (/tmp/csd-DAEMON_DIR_NAME.*,
 * removed by daemon_stop()); @extra and @log as for daemon_spawn().
 * Returns 0 or -1; either way, end it with daemon_stop().
 */
static inline int daemon_start_log(struct daemon *d, const char *const *extra,
				   int log)
{
	const char *fw = getenv("CSD_FW");

	memset(d, 0, sizeof(*d));
	if (!fw || daemon_dir_make(d, DAEMON_DIR_NAME))
		return -1;
	d->own_dir = 1;
	return daemon_spawn(d, extra, log);
}

/* daemon_start_log() with the daemon's stderr inherited. */
static inline int daemon_start(struct daemon *d, const char *const *extra)
{
	return daemon_start_log(d, extra, 0);
}

/*
 * Stop @d's daemon with @sig and reap it (bounded: after WAIT_MS, SIGKILL
 * and -1).  Removes its socket, and its log and directory when
 * daemon_start*() made them.  Returns the wait status, or -1 (also when
 * no daemon runs, or when it was reaped elsewhere, e.g. by
 * kill_leftovers(): then it is not signalled, its pid may be another
 * process's by now).
 */
static inline int daemon_stop(struct daemon *d, int sig)
{
	int status = -1, i;
	pid_t r;

	if (d->pid > 0 && daemon_unreaped(d->pid)) {
		kill(d->pid, sig);
		for (i = 0; i < WAIT_MS / 20; i++) {
			r = waitpid(d->pid, &status, WNOHANG);
			if (r == d->pid)
				break;
			if (r < 0 && errno != EINTR) {	/* ECHILD: gone */
				status = -1;
				break;
			}
			sleep_ms(20);
		}
		if (i == WAIT_MS / 20) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &status, 0);
			status = -1;
		}
	}
	if (d->pid > 0)
		daemon_forget(d->pid);
	d->pid = 0;
	if (d->own_dir)
		daemon_dir_remove(d);
	else if (d->sock[0])
		unlink(d->sock);
	return status;
}

/* Whether the daemon's log (daemon_spawn() with @log) contains @what --
 * anywhere in it, the whole file is read; @loud: print the log when it
 * does not. */
static inline int log_find(const struct daemon *d, const char *what, int loud)
{
	size_t len = 0, cap = 65536;
	char *buf, *nb;
	ssize_t n;
	int fd = open(d->log, O_RDONLY), found;

	if (fd < 0)
		return 0;
	buf = malloc(cap);
	for (;;) {
		if (!buf)
			break;
		if (cap - len < 2) {
			nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			buf = NULL;
		}
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!buf) {
		fprintf(stderr, "daemon log %s: cannot read it\n", d->log);
		return 0;
	}
	buf[len] = 0;
	found = strstr(buf, what) != NULL;
	if (!found && loud)
		fprintf(stderr, "daemon log lacks \"%s\":\n%s", what, buf);
	free(buf);
	return found;
}

static inline int log_has(const struct daemon *d, const char *what)
{
	return log_find(d, what, 1);
}

static inline int log_has_quiet(const struct daemon *d, const char *what)
{
	return log_find(d, what, 0);
}

/* ---- client side -------------------------------------------------------- */

/*
 * Issue I/O command @opc through csd_dev_passthru() on queue 0: nsid
 * CSD_NSID, cdw12 = @ctx (the context id), cdw13..15 as given, @len bytes
 * of data at @buf (cdw10 = @len / 4).  @result, when not NULL, gets the
 * command's result (CQE dw0 | dw1 << 32; 0 when it never completed).
 * Returns a negative errno when the command did not reach the device, else
 * its whole NVMe status field (0 = success; compare with CSD_STATUS(...),
 * | CSD_STATUS_DNR where set, or mask with CSD_STATUS_CODE()).
 */
static inline int dev_io(struct csd_dev *dev, uint8_t opc, uint32_t ctx,
			 uint32_t cdw13, uint32_t cdw14, uint32_t cdw15,
			 void *buf, uint32_t len, uint64_t *result)
{
	struct csd_passthru pt;
	int rc;

	memset(&pt, 0, sizeof(pt));
	pt.opcode = opc;
	pt.nsid = CSD_NSID;
	pt.cdw10 = len / 4;
	pt.cdw12 = ctx;
	pt.cdw13 = cdw13;
	pt.cdw14 = cdw14;
	pt.cdw15 = cdw15;
	pt.addr = buf;
	pt.data_len = len;
	rc = csd_dev_passthru(dev, 0, &pt);
	if (result)
		*result = pt.result;
	return rc ? rc : pt.status;
}

/* Whether context @id is among the first 64 csd_dev_list_ctx() lists. */
static inline int ctx_listed(struct csd_dev *dev, uint32_t id)
{
	struct csd_ctx_entry e[64];
	int n = csd_dev_list_ctx(dev, e, 64), i;

	for (i = 0; i < n; i++)
		if (e[i].id == id)
			return 1;
	return 0;
}

#endif /* CSD_TESTS_DAEMON_UTIL_H */
