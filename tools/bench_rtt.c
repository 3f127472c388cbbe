// SPDX-License-Identifier: MIT
/*
 * bench_rtt.c - `csd-bench rtt`: round trip of a small admin command (Get
 * Features, pacing) through the embedded transport, the shm: transport in
 * interrupt mode and in polled mode against a csd-fw daemon this program
 * starts, beside two baselines measured in the same run: an eventfd
 * ping-pong between two threads and an io_uring NOP.  Then attention
 * throughput (tokens/s) through shm: against embedded: on the same firmware
 * configuration, batch of sequences x tokens each.
 *
 * Goals (issue 7): shm interrupt <= 1.5x the eventfd ping-pong, shm polled
 * <= 0.5x it, attention through shm within 10% of embedded.
 */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csd.h"
#include "csd/csd_spec.h"
#include "csd-bench.h"

struct rtt_opts {
	unsigned int iters;
	unsigned int warmup;
	uint32_t tokens, batch, attn_iters;
	const char *json;
	const char *fw;
	bool no_attn;
};

struct lat {
	const char *name;
	bool ok;
	double med, p99, mean;		/* ns */
};

struct attn_res {
	const char *name;
	bool ok;
	double tok_s;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void summarize(struct lat *l, uint64_t *ns, unsigned int n)
{
	double sum = 0;
	unsigned int i;

	qsort(ns, n, sizeof(*ns), cmp_u64);
	for (i = 0; i < n; i++)
		sum += (double)ns[i];
	l->med = (double)ns[n / 2];
	l->p99 = (double)ns[(size_t)((n - 1) * 0.99)];
	l->mean = sum / n;
	l->ok = true;
}

/* ---- the drive: one small admin command ------------------------------- */

static int rtt_dev(const char *spec, const struct rtt_opts *o, struct lat *l,
		   uint64_t *ns)
{
	struct csd_dev *dev = NULL;
	unsigned int i;
	int rc;

	rc = csd_dev_open(spec, &dev);
	if (rc) {
		fprintf(stderr, "csd-bench rtt: open %s: %s\n", spec,
			strerror(-rc));
		return rc;
	}
	for (i = 0; i < o->warmup + o->iters; i++) {
		struct csd_passthru pt = {
			.opcode = CSD_ADM_GET_FEATURES,
			.cdw10 = CSD_FEAT_ID_PACING,
		};
		uint64_t t0 = now_ns();

		rc = csd_dev_passthru(dev, 1, &pt);
		if (!rc && pt.status)
			rc = csd_status_to_errno(pt.status);
		if (rc) {
			fprintf(stderr, "csd-bench rtt: %s: get features: %s\n",
				spec, strerror(-rc));
			break;
		}
		if (i >= o->warmup)
			ns[i - o->warmup] = now_ns() - t0;
	}
	csd_dev_close(dev);
	if (!rc)
		summarize(l, ns, o->iters);
	return rc;
}

/* ---- baseline: eventfd ping-pong between two threads ------------------ */

struct pingpong {
	int to_peer, to_main;
	unsigned int n;
	int cpu;			/* pin the peer here, -1 = no */
};

static void pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *pong_thread(void *arg)
{
	struct pingpong *p = arg;
	eventfd_t v;
	unsigned int i;

	pin_self(p->cpu);
	for (i = 0; i < p->n; i++) {
		if (eventfd_read(p->to_peer, &v) < 0 ||
		    eventfd_write(p->to_main, 1) < 0)
			break;
	}
	return NULL;
}

/*
 * @cpu_main, @cpu_peer: pin the two threads (-1: leave placement to the
 * scheduler, which on a small machine flips between "same CPU" -- a
 * context switch each way -- and "two CPUs" -- a cross-CPU wakeup each way,
 * an order of magnitude apart in a VM).
 */
static int rtt_eventfd(const struct rtt_opts *o, struct lat *l, uint64_t *ns,
		       int cpu_main, int cpu_peer)
{
	struct pingpong p = { .n = o->warmup + o->iters, .cpu = cpu_peer };
	cpu_set_t saved;
	pthread_t th;
	eventfd_t v;
	unsigned int i;
	int rc = 0;

	pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
	pin_self(cpu_main);
	p.to_peer = eventfd(0, EFD_CLOEXEC);
	p.to_main = eventfd(0, EFD_CLOEXEC);
	if (p.to_peer < 0 || p.to_main < 0 ||
	    pthread_create(&th, NULL, pong_thread, &p)) {
		rc = -errno;
		goto out;
	}
	for (i = 0; i < p.n; i++) {
		uint64_t t0 = now_ns();

		if (eventfd_write(p.to_peer, 1) < 0 ||
		    eventfd_read(p.to_main, &v) < 0) {
			rc = -errno;
			break;
		}
		if (i >= o->warmup)
			ns[i - o->warmup] = now_ns() - t0;
	}
	pthread_join(th, NULL);
	if (!rc)
		summarize(l, ns, o->iters);
out:
	pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	if (p.to_peer >= 0)
		close(p.to_peer);
	if (p.to_main >= 0)
		close(p.to_main);
	return rc;
}

/* ---- baseline: io_uring NOP --------------------------------------------- */

static int rtt_uring(const struct rtt_opts *o, struct lat *l, uint64_t *ns)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	unsigned int i;
	int rc;

	rc = io_uring_queue_init(8, &ring, 0);
	if (rc) {
		fprintf(stderr, "csd-bench rtt: io_uring: %s\n", strerror(-rc));
		return rc;
	}
	for (i = 0; i < o->warmup + o->iters; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		uint64_t t0 = now_ns();

		io_uring_prep_nop(sqe);
		rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0)
			break;
		rc = io_uring_wait_cqe(&ring, &cqe);
		if (rc)
			break;
		io_uring_cqe_seen(&ring, cqe);
		if (i >= o->warmup)
			ns[i - o->warmup] = now_ns() - t0;
	}
	io_uring_queue_exit(&ring);
	if (rc < 0) {
		fprintf(stderr, "csd-bench rtt: io_uring nop: %s\n",
			strerror(-rc));
		return rc;
	}
	summarize(l, ns, o->iters);
	return 0;
}

/* ---- attention throughput ---------------------------------------------- */

static int attn_tput(const char *spec, const struct rtt_opts *o,
		     struct attn_res *a)
{
	const struct csd_ctx_params p = {
		.layers = 1, .kv_heads = 2, .q_heads = 16, .head_dim = 128,
		.dtype = CSD_KV_F16, .max_seqs = o->batch,
		.max_tokens = o->tokens,
	};
	const size_t row = (size_t)p.kv_heads * p.head_dim * 2;
	const uint32_t chunk = 2048;
	struct csd_dev *dev = NULL;
	struct csd_ctx *ctx = NULL;
	struct csd_attn_result res;
	uint64_t tokens = 0, t0 = now_ns();
	uint16_t *kv = NULL;
	float *q = NULL, *out = NULL;
	uint32_t *seqs = NULL, s, t;
	size_t i, qn = (size_t)o->batch * p.q_heads * p.head_dim;
	unsigned int it;
	int rc;

	rc = csd_dev_open(spec, &dev);
	if (rc)
		goto out;
	rc = csd_ctx_create(dev, &p, &ctx);
	if (rc)
		goto out;
	kv = malloc(chunk * row);
	q = malloc(qn * sizeof(*q));
	out = malloc(qn * sizeof(*out));
	seqs = malloc(o->batch * sizeof(*seqs));
	if (!kv || !q || !out || !seqs) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < chunk * row / 2; i++)	/* small f16 values */
		kv[i] = (uint16_t)(0x2c00 + (i * 2654435761u >> 22) % 0x400);
	for (i = 0; i < qn; i++)
		q[i] = (float)((i * 7) % 13) * 0.05f - 0.3f;
	for (s = 0; s < o->batch; s++) {
		seqs[s] = s;
		for (t = 0; t < o->tokens && !rc; t += chunk) {
			uint32_t n = o->tokens - t < chunk ? o->tokens - t : chunk;

			rc = csd_kv_append(ctx, s, 0, t, n, kv, kv);
		}
	}
	if (rc)
		goto out;
	for (it = 0; it < o->attn_iters + 1; it++) {
		struct csd_attn_req req = {
			.layer = 0, .nseq = o->batch, .seqs = seqs, .q = q,
			.out = out,
		};

		if (it == 1) {		/* the first call warms up */
			t0 = now_ns();
			tokens = 0;
		}
		rc = csd_attn_run(ctx, &req, &res);
		if (rc)
			goto out;
		tokens += res.tokens;
	}
	a->tok_s = (double)tokens / ((double)(now_ns() - t0) / 1e9);
	a->ok = true;
out:
	if (rc)
		fprintf(stderr, "csd-bench rtt: attention through %s: %s\n",
			spec, strerror(-rc));
	if (ctx)
		csd_ctx_destroy(ctx);
	if (dev)
		csd_dev_close(dev);
	free(kv);
	free(q);
	free(out);
	free(seqs);
	return rc;
}

/* ---- the daemon ----------------------------------------------------------- */

struct daemon {
	pid_t pid;
	char dir[64];
	char sock[96];
};

/* csd-fw next to this program: ../firmware-sim/csd-fw in the build tree,
 * ./csd-fw where both are installed. */
static int find_fw(const struct rtt_opts *o, char *path, size_t len)
{
	static const char *const rel[] = { "../firmware-sim/csd-fw",
					   "csd-fw" };
	char self[PATH_MAX];
	ssize_t n;
	char *slash;
	unsigned int i;

	if (o->fw) {
		snprintf(path, len, "%s", o->fw);
		return access(path, X_OK) ? -ENOENT : 0;
	}
	if (getenv("CSD_FW")) {
		snprintf(path, len, "%s", getenv("CSD_FW"));
		return access(path, X_OK) ? -ENOENT : 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -ENOENT;
	self[n] = 0;
	slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	slash[1] = 0;
	for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		if ((size_t)snprintf(path, len, "%s%s", self, rel[i]) >= len)
			continue;
		if (!access(path, X_OK))
			return 0;
	}
	return -ENOENT;
}

static int daemon_start(struct daemon *d, const char *fw)
{
	struct stat st;
	int i, status;

	snprintf(d->dir, sizeof(d->dir), "/tmp/csd-bench-rtt.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
	d->pid = fork();
	if (d->pid < 0)
		return -errno;
	if (d->pid == 0) {
		execl(fw, fw, "--socket", d->sock, "--foreground",
		      "--log-level", "error", (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 500; i++) {
		if (!stat(d->sock, &st) && S_ISSOCK(st.st_mode))
			return 0;
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return -ECHILD;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static void daemon_stop(struct daemon *d)
{
	int i;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		for (i = 0; i < 500; i++) {
			if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
				break;
			usleep(10000);
		}
		if (i == 500) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
		}
	}
	unlink(d->sock);
	rmdir(d->dir);
}

/* ---- output ---------------------------------------------------------------- */

static double ratio(const struct lat *a, const struct lat *b)
{
	return a->ok && b->ok && b->med > 0 ? a->med / b->med : NAN;
}

static void json_num(FILE *f, double v)
{
	if (isnan(v))
		fputs("null", f);
	else
		fprintf(f, "%.4g", v);
}

static int write_json(const char *path, const struct rtt_opts *o,
		      const struct lat *l, unsigned int nl,
		      const struct attn_res *a, unsigned int na,
		      double r_irq, double r_poll, double r_attn,
		      double r_irq2, double r_poll2)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	unsigned int i;

	if (!f) {
		fprintf(stderr, "csd-bench rtt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"bench\": \"rtt\",\n  \"iters\": %u,\n"
		"  \"command\": \"get-features pacing (admin)\",\n"
		"  \"rtt_ns\": {\n", o->iters);
	for (i = 0; i < nl; i++) {
		fprintf(f, "    \"%s\": { \"median\": ", l[i].name);
		json_num(f, l[i].ok ? l[i].med : NAN);
		fputs(", \"p99\": ", f);
		json_num(f, l[i].ok ? l[i].p99 : NAN);
		fputs(", \"mean\": ", f);
		json_num(f, l[i].ok ? l[i].mean : NAN);
		fprintf(f, " }%s\n", i + 1 < nl ? "," : "");
	}
	fputs("  },\n  \"ratios\": {\n    \"shm_irq_over_eventfd\": ", f);
	json_num(f, r_irq);
	fputs(",\n    \"shm_poll_over_eventfd\": ", f);
	json_num(f, r_poll);
	fputs(",\n    \"shm_irq_over_eventfd_two_cpus\": ", f);
	json_num(f, r_irq2);
	fputs(",\n    \"shm_poll_over_eventfd_two_cpus\": ", f);
	json_num(f, r_poll2);
	fputs(",\n    \"attn_shm_over_embedded\": ", f);
	json_num(f, r_attn);
	fprintf(f, "\n  },\n  \"goals\": { \"shm_irq_over_eventfd\": 1.5, "
		"\"shm_poll_over_eventfd\": 0.5, "
		"\"attn_shm_over_embedded_min\": 0.9 },\n"
		"  \"attention\": { \"batch\": %u, \"tokens\": %u, "
		"\"iters\": %u", o->batch, o->tokens, o->attn_iters);
	for (i = 0; i < na; i++) {
		fprintf(f, ", \"%s_tokens_per_s\": ", a[i].name);
		json_num(f, a[i].ok ? a[i].tok_s : NAN);
	}
	fputs(" }\n}\n", f);
	if (f != stdout && fclose(f)) {
		fprintf(stderr, "csd-bench rtt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: csd-bench rtt [--iters N] [--json FILE] [--csd-fw PATH]\n"
"                     [--tokens N] [--batch N] [--attn-iters N] [--no-attn]\n"
"  Round trip of an admin command (Get Features) through embedded:, shm:\n"
"  (interrupts) and shm:,poll against a csd-fw daemon started here, beside\n"
"  an eventfd ping-pong between two threads and an io_uring NOP; then\n"
"  attention tokens/s through shm: vs embedded: (batch x tokens).\n"
"  --iters N        round trips per variant [20000]\n"
"  --json FILE      also write the results as JSON (- = stdout)\n"
"  --csd-fw PATH    the daemon [$CSD_FW, else next to csd-bench]\n"
"  --tokens N       attention: tokens per sequence [16384]\n"
"  --batch N        attention: sequences per call (>= 8 for the goal) [8]\n"
"  --attn-iters N   attention calls per transport [20]\n");
}

int bench_rtt_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "json", required_argument, NULL, 'j' },
		{ "csd-fw", required_argument, NULL, 'f' },
		{ "tokens", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'b' },
		{ "attn-iters", required_argument, NULL, 'a' },
		{ "no-attn", no_argument, NULL, 'N' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct rtt_opts o = {
		.iters = 20000, .tokens = 16384, .batch = 8, .attn_iters = 20,
	};
	enum { L_EVENTFD, L_EV_SAME, L_EV_CROSS, L_URING, L_EMB, L_IRQ, L_POLL,
	       L_N };
	struct lat l[L_N] = {
		{ .name = "eventfd_pingpong" },
		{ .name = "eventfd_pingpong_same_cpu" },
		{ .name = "eventfd_pingpong_two_cpus" },
		{ .name = "io_uring_nop" },
		{ .name = "embedded" }, { .name = "shm_irq" },
		{ .name = "shm_poll" },
	};
	struct attn_res a[3] = {
		{ .name = "embedded" }, { .name = "shm_irq" },
		{ .name = "shm_poll" },
	};
	char fw[PATH_MAX], spec[160];
	struct daemon d = { 0 };
	double r_irq, r_poll, r_attn, r_irq2, r_poll2;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t *ns;
	unsigned int i;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:j:f:t:b:a:Nh", lopts,
				NULL)) != -1) {
		switch (c) {
		case 'n': o.iters = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'j': o.json = optarg; break;
		case 'f': o.fw = optarg; break;
		case 't': o.tokens = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'b': o.batch = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'a':
			o.attn_iters = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'N': o.no_attn = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || o.iters < 10 || o.iters > 10000000 ||
	    !o.tokens || !o.batch || o.batch > 256 || !o.attn_iters) {
		usage(stderr);
		return 2;
	}
	o.warmup = o.iters / 10 < 1000 ? o.iters / 10 : 1000;
	if (find_fw(&o, fw, sizeof(fw))) {
		fprintf(stderr, "csd-bench rtt: csd-fw not found (--csd-fw)\n");
		return 1;
	}
	ns = malloc(o.iters * sizeof(*ns));
	if (!ns)
		return 1;
	rc = daemon_start(&d, fw);
	if (rc) {
		fprintf(stderr, "csd-bench rtt: starting %s: %s\n", fw,
			strerror(-rc));
		daemon_stop(&d);
		free(ns);
		return 1;
	}
	/* interleave nothing: each variant runs alone on a quiet daemon */
	rc |= rtt_eventfd(&o, &l[L_EVENTFD], ns, -1, -1);
	rc |= rtt_eventfd(&o, &l[L_EV_SAME], ns, 0, 0);
	if (ncpu > 1)
		rc |= rtt_eventfd(&o, &l[L_EV_CROSS], ns, 0, 1);
	rc |= rtt_uring(&o, &l[L_URING], ns);
	rc |= rtt_dev("embedded:", &o, &l[L_EMB], ns);
	snprintf(spec, sizeof(spec), "shm:%s", d.sock);
	rc |= rtt_dev(spec, &o, &l[L_IRQ], ns);
	snprintf(spec, sizeof(spec), "shm:%s,poll", d.sock);
	rc |= rtt_dev(spec, &o, &l[L_POLL], ns);
	if (!o.no_attn) {
		rc |= attn_tput("embedded:", &o, &a[0]);
		snprintf(spec, sizeof(spec), "shm:%s", d.sock);
		rc |= attn_tput(spec, &o, &a[1]);
		snprintf(spec, sizeof(spec), "shm:%s,poll", d.sock);
		rc |= attn_tput(spec, &o, &a[2]);
	}
	daemon_stop(&d);
	free(ns);

	printf("round trip, %u iterations (ns)       median       p99      mean\n",
	       o.iters);
	for (i = 0; i < L_N; i++) {
		if (l[i].ok)
			printf("  %-32s %9.0f %9.0f %9.0f\n", l[i].name,
			       l[i].med, l[i].p99, l[i].mean);
		else
			printf("  %-32s    failed\n", l[i].name);
	}
	r_irq = ratio(&l[L_IRQ], &l[L_EVENTFD]);
	r_poll = ratio(&l[L_POLL], &l[L_EVENTFD]);
	r_attn = a[0].ok && a[1].ok ? a[1].tok_s / a[0].tok_s : NAN;
	r_irq2 = ratio(&l[L_IRQ], &l[L_EV_CROSS]);
	r_poll2 = ratio(&l[L_POLL], &l[L_EV_CROSS]);
	printf("shm interrupt / eventfd ping-pong: %.2fx (goal <= 1.5x; "
	       "vs two pinned CPUs %.2fx)\n", r_irq, r_irq2);
	printf("shm polled / eventfd ping-pong:    %.2fx (goal <= 0.5x; "
	       "vs two pinned CPUs %.2fx)\n", r_poll, r_poll2);
	if (!o.no_attn) {
		printf("attention, batch %u x %u tokens (tokens/s):\n", o.batch,
		       o.tokens);
		for (i = 0; i < 3; i++)
			printf("  %-10s %.4g\n", a[i].name, a[i].tok_s);
		printf("attention shm / embedded:          %.3f (goal >= 0.9)\n",
		       r_attn);
	}
	if (o.json && write_json(o.json, &o, l, L_N, a, o.no_attn ? 0 : 3,
				 r_irq, r_poll, r_attn, r_irq2, r_poll2))
		rc = -1;
	return rc ? 1 : 0;
}
