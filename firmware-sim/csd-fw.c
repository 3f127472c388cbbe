// SPDX-License-Identifier: MIT
/*
 * csd-fw - the emulated CSD as a daemon.  Serves the csd device interface
 * (Documentation/device-interface.md) to ivshmem clients on a unix socket:
 * QEMU's ivshmem-doorbell device and libcsd's "shm:" transport.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "csdfw.h"
#include "devif.h"
#include "ivshm_server.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: csd-fw --socket PATH [options]\n"
"  --socket PATH         ivshmem server socket (QEMU: -chardev socket,path=PATH)\n"
"  --shm-size SIZE       each client's shared memory (BAR2), power of two\n"
"                        1M..1T [128M]\n"
"  --queues N            I/O queues per client, 1..16 [2]\n"
"  --depth N             entries per queue, 2..4096 [64]\n"
"  --max-clients N       client slots, 1..64 [4]\n"
"  --heartbeat-ms N      heartbeat period, 1..10000 [100]\n"
"  --poll-us N           busy-poll doorbells N us after the last command\n"
"                        before sleeping, 0 = never [50]\n"
"  --dma-file PATH       guest RAM file (memory-backend-file,share=on):\n"
"                        PRP addresses without bit 63 are offsets into it\n"
"  --device-opts OPTS    firmware options key=val,... (as embedded:OPTS)\n"
"  --foreground          do not detach\n"
"  --pidfile FILE        write the daemon's pid\n"
"  --log-level LEVEL     error, info or debug [info]\n"
"  -h, --help            this text\n"
"QEMU: -device ivshmem-doorbell,chardev=ID,vectors=<queues + 1>\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	if (*s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;	/* --shm-size 1T */
	default: break;
	}
	if (*end || v > (~0ull >> shift))
		return -1;
	v <<= shift;
	*out = v;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_size(s, &v) || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "shm-size", required_argument, NULL, 'm' },
		{ "queues", required_argument, NULL, 'q' },
		{ "depth", required_argument, NULL, 'd' },
		{ "max-clients", required_argument, NULL, 'c' },
		{ "heartbeat-ms", required_argument, NULL, 'b' },
		{ "dma-file", required_argument, NULL, 'D' },
		{ "device-opts", required_argument, NULL, 'o' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "poll-us", required_argument, NULL, 'P' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct devif_opts o = {
		.shm_size = 128u << 20, .io_queues = 2, .depth = 64,
		.max_clients = 4, .hb_ms = 100, .poll_us = 50,
		.log_level = DEVIF_LOG_INFO,
	};
	const char *sock_path = NULL, *dev_opts = NULL, *pidfile = NULL;
	struct csdfw_config cfg;
	struct devif *d = NULL;
	int fg = 0, c, lfd, sfd, rc;
	char err[256] = "";
	int ready[2] = { -1, -1 };
	sigset_t ss;

	while ((c = getopt_long(argc, argv, "s:m:q:d:c:b:D:o:fp:P:l:h", lopts,
				NULL)) != -1) {
		int bad = 0;

		switch (c) {
		case 's': sock_path = optarg; break;
		case 'm': bad = parse_size(optarg, &o.shm_size); break;
		case 'q': bad = parse_u32(optarg, &o.io_queues); break;
		case 'd': bad = parse_u32(optarg, &o.depth); break;
		case 'c': bad = parse_u32(optarg, &o.max_clients); break;
		case 'b': bad = parse_u32(optarg, &o.hb_ms); break;
		case 'D': o.dma_file = optarg; break;
		case 'o': dev_opts = optarg; break;
		case 'f': fg = 1; break;
		case 'p': pidfile = optarg; break;
		case 'P': bad = parse_u32(optarg, &o.poll_us); break;
		case 'l':
			if (!strcmp(optarg, "error"))
				o.log_level = DEVIF_LOG_ERR;
			else if (!strcmp(optarg, "info"))
				o.log_level = DEVIF_LOG_INFO;
			else if (!strcmp(optarg, "debug"))
				o.log_level = DEVIF_LOG_DEBUG;
			else
				bad = 1;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (bad) {
			fprintf(stderr, "csd-fw: bad value \"%s\"\n", optarg);
			return 2;
		}
	}
	if (!sock_path || optind != argc) {
		usage(stderr);
		return 2;
	}
	csdfw_config_default(&cfg);
	if (dev_opts && *dev_opts &&
	    csdfw_config_parse(&cfg, dev_opts, err, sizeof(err))) {
		fprintf(stderr, "csd-fw: --device-opts: %s\n", err);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	/* blocked before any thread exists, so every thread inherits it */
	pthread_sigmask(SIG_BLOCK, &ss, NULL);
	sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		perror("csd-fw: signalfd");
		return 1;
	}
	lfd = ivshm_listen(sock_path);
	if (lfd < 0) {
		fprintf(stderr, "csd-fw: %s: %s\n", sock_path, strerror(-lfd));
		return 1;
	}
	/*
	 * Detach: the parent exits once the child reports the device is up
	 * (0) or failed (1), so a daemon that was started is connectable.
	 */
	if (!fg) {
		pid_t pid;
		char ok;

		if (pipe2(ready, O_CLOEXEC) < 0) {
			perror("csd-fw: pipe");
			goto err_sock;
		}
		pid = fork();
		if (pid < 0) {
			perror("csd-fw: fork");
			goto err_sock;
		}
		if (pid > 0) {
			close(ready[1]);
			_exit(read(ready[0], &ok, 1) == 1 ? 0 : 1);
		}
		close(ready[0]);
		setsid();
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f)) {
			fprintf(stderr, "csd-fw: pidfile %s: %s\n", pidfile,
				strerror(errno));
			goto err_sock;
		}
	}
	rc = devif_create(&o, &cfg, &d);
	if (rc)
		goto err_pid;
	if (o.log_level >= DEVIF_LOG_INFO)
		fprintf(stderr, "csd-fw: serving %s (shm %llu bytes per "
			"client, %u I/O queues x %u, %u clients, max_xfer "
			"%u)\n", sock_path, (unsigned long long)o.shm_size,
			o.io_queues, o.depth, o.max_clients, cfg.max_xfer);
	if (ready[1] >= 0) {
		if (write(ready[1], "", 1) != 1)
			perror("csd-fw: ready pipe");
		close(ready[1]);
		ready[1] = -1;
	}
	rc = devif_run(d, lfd, sfd);
	if (o.log_level >= DEVIF_LOG_INFO)
		fprintf(stderr, "csd-fw: shutting down\n");
	close(lfd);
	unlink(sock_path);
	devif_destroy(d);
	if (pidfile)
		unlink(pidfile);
	close(sfd);
	return rc ? 1 : 0;

err_pid:
	if (pidfile)
		unlink(pidfile);
err_sock:
	close(lfd);
	unlink(sock_path);
	close(sfd);
	return 1;
}
