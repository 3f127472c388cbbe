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
 *
 * Placement.  On a small (virtual) machine a round trip between two threads
 * costs an order of magnitude more when they sit on two CPUs (a cross-CPU
 * wake-up of an idle, halted vCPU) than on one (a context switch), and left
 * alone the scheduler flips between the two.  So the ping-pong and the shm
 * round trips are measured under the same three placements: "unpinned"
 * (the scheduler's choice), "same_cpu" (ping-pong: both threads on CPU A;
 * shm: this process and the daemon on CPU A) and "two_cpus" (ping-pong
 * thread and daemon on CPU B, this process on CPU A).  The daemon of each
 * placement is started with that affinity (all its threads inherit it);
 * this process pins the measuring thread before opening the device, so
 * libcsd's completion thread inherits the pin.  The goals compare figures
 * of the SAME placement, judged on the two pinned ones (unpinned, the
 * scheduler may well put the ping-pong on one CPU and client and daemon on
 * two, or the reverse).  Samples are taken in rounds, every variant once per
 * round, so that load from elsewhere hits all of them alike.
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
	unsigned int iters;		/* samples per variant, all rounds */
	unsigned int rounds;
	unsigned int warmup;		/* per variant and round */
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
	l->med = (double)ns[n >> 1];
	l->p99 = (double)ns[(size_t)((n - 1) * 0.99)];
	l->mean = sum / n;
	l->ok = true;
}

/* ---- the drive: one small admin command ------------------------------- */

static void pin_self(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* @n samples into @ns (after the warm-up), this thread (and the device's
 * threads, created at open) on @cpu (-1: unpinned). */
static int rtt_dev(const char *spec, const struct rtt_opts *o, int cpu,
		   uint64_t *ns, unsigned int n)
{
	struct csd_dev *dev = NULL;
	cpu_set_t saved;
	unsigned int i;
	int rc;

	pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
	pin_self(cpu);
	rc = csd_dev_open(spec, &dev);
	if (rc) {
		fprintf(stderr, "csd-bench rtt: open %s: %s\n", spec,
			strerror(-rc));
		goto out;
	}
	for (i = 0; i < o->warmup + n; i++) {
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
out:
	pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	return rc;
}

/* ---- baseline: eventfd ping-pong between two threads ------------------ */

struct pingpong {
	int to_peer, to_main;
	unsigned int n;
	int cpu;			/* pin the peer here, -1 = no */
};

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
static int rtt_eventfd(const struct rtt_opts *o, int cpu_main, int cpu_peer,
		       uint64_t *ns, unsigned int n)
{
	struct pingpong p = { .n = o->warmup + n, .cpu = cpu_peer };
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
out:
	pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
	if (p.to_peer >= 0)
		close(p.to_peer);
	if (p.to_main >= 0)
		close(p.to_main);
	return rc;
}

/* ---- baseline: io_uring NOP --------------------------------------------- */

static int rtt_uring(const struct rtt_opts *o, uint64_t *ns, unsigned int n)
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
	for (i = 0; i < o->warmup + n; i++) {
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
	return 0;
}

/* ---- attention throughput ---------------------------------------------- */

/* One transport's attention setup: a context holding the batch. */
struct attn_dev {
	struct csd_dev *dev;
	struct csd_ctx *ctx;
	uint64_t tokens, ns;
};

static const struct csd_ctx_params *attn_params(const struct rtt_opts *o,
						struct csd_ctx_params *p)
{
	*p = (struct csd_ctx_params){
		.layers = 1, .kv_heads = 2, .q_heads = 16, .head_dim = 128,
		.dtype = CSD_KV_F16, .max_seqs = o->batch,
		.max_tokens = o->tokens,
	};
	return p;
}

static int attn_setup(const char *spec, const struct rtt_opts *o,
		      const uint16_t *kv, uint32_t chunk, struct attn_dev *ad)
{
	struct csd_ctx_params p;
	uint32_t s, t;
	int rc;

	rc = csd_dev_open(spec, &ad->dev);
	if (!rc)
		rc = csd_ctx_create(ad->dev, attn_params(o, &p), &ad->ctx);
	for (s = 0; s < o->batch && !rc; s++) {
		for (t = 0; t < o->tokens && !rc; t += chunk) {
			uint32_t n = o->tokens - t < chunk ? o->tokens - t : chunk;

			rc = csd_kv_append(ad->ctx, s, 0, t, n, kv, kv);
		}
	}
	if (rc)
		fprintf(stderr, "csd-bench rtt: attention through %s: %s\n",
			spec, strerror(-rc));
	return rc;
}

/*
 * Attention tokens/s through each of @n transports on the same batch: the
 * calls are interleaved (one per transport per round, the first round a
 * warm-up), so that load from elsewhere hits every transport alike.
 */
static int attn_tput(const char *const *specs, unsigned int n,
		     const struct rtt_opts *o, struct attn_res *a)
{
	struct csd_ctx_params p;
	const uint32_t chunk = 2048;
	struct attn_dev ad[3] = { { 0 } };
	uint16_t *kv = NULL;
	float *q = NULL, *out = NULL;
	uint32_t *seqs = NULL, s;
	size_t i, qn, row;
	unsigned int it, k;
	int rc = 0;

	attn_params(o, &p);
	qn = (size_t)o->batch * p.q_heads * p.head_dim;
	row = (size_t)p.kv_heads * p.head_dim * 2;	/* f16 */
	kv = malloc(chunk * row);
	q = malloc(qn * sizeof(*q));
	out = malloc(qn * sizeof(*out));
	seqs = malloc(o->batch * sizeof(*seqs));
	if (!kv || !q || !out || !seqs || n > 3) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < chunk * row / 2; i++)	/* small f16 values */
		kv[i] = (uint16_t)(0x2c00 + (i * 2654435761u >> 22) % 0x400);
	for (i = 0; i < qn; i++)
		q[i] = (float)((i * 7) % 13) * 0.05f - 0.3f;
	for (s = 0; s < o->batch; s++)
		seqs[s] = s;
	for (k = 0; k < n && !rc; k++)
		rc = attn_setup(specs[k], o, kv, chunk, &ad[k]);
	for (it = 0; it < o->attn_iters + 1 && !rc; it++) {
		for (k = 0; k < n && !rc; k++) {
			struct csd_attn_req req = {
				.layer = 0, .nseq = o->batch, .seqs = seqs,
				.q = q, .out = out,
			};
			struct csd_attn_result res;
			uint64_t t0 = now_ns();

			rc = csd_attn_run(ad[k].ctx, &req, &res);
			if (rc) {
				fprintf(stderr, "csd-bench rtt: attention "
					"through %s: %s\n", specs[k],
					strerror(-rc));
			} else if (it) {	/* the first round warms up */
				ad[k].tokens += res.tokens;
				ad[k].ns += now_ns() - t0;
			}
		}
	}
	for (k = 0; k < n && !rc; k++) {
		a[k].tok_s = (double)ad[k].tokens / ((double)ad[k].ns / 1e9);
		a[k].ok = true;
	}
out:
	for (k = 0; k < n; k++) {
		if (ad[k].ctx)
			csd_ctx_destroy(ad[k].ctx);
		if (ad[k].dev)
			csd_dev_close(ad[k].dev);
	}
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

/* @cpu >= 0: the daemon (every thread of it) runs on that CPU only. */
static int daemon_start(struct daemon *d, const char *fw, int cpu)
{
	struct stat st;
	cpu_set_t set;
	int i, status;

	snprintf(d->dir, sizeof(d->dir), "/tmp/csd-bench-rtt.XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
	d->pid = fork();
	if (d->pid < 0)
		return -errno;
	if (d->pid == 0) {
		if (cpu >= 0) {
			CPU_ZERO(&set);
			CPU_SET(cpu, &set);
			if (sched_setaffinity(0, sizeof(set), &set))
				_exit(126);
		}
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

/* ---- variants, placements -------------------------------------------------- */

enum { PL_UNPINNED, PL_SAME, PL_TWO, PL_N };

struct placement {
	const char *name;	/* JSON key */
	const char *label;
	int cpu_client;		/* this process / the ping-pong's main thread */
	int cpu_peer;		/* the daemon / the ping-pong's peer thread */
	bool ok;		/* measurable here (two CPUs: needs two) */
	struct daemon d;
};

/* per placement: eventfd ping-pong, shm interrupt, shm polled */
enum { V_URING, V_EMB, V_PL0, V_N = V_PL0 + 3 * PL_N };
enum { K_PP, K_IRQ, K_POLL };

static unsigned int var_of(unsigned int pl, unsigned int k)
{
	return V_PL0 + 3 * pl + k;
}

static const char *const var_names[V_N] = {
	"io_uring_nop", "embedded",
	"eventfd_pingpong", "shm_irq", "shm_poll",
	"eventfd_pingpong_same_cpu", "shm_irq_same_cpu", "shm_poll_same_cpu",
	"eventfd_pingpong_two_cpus", "shm_irq_two_cpus", "shm_poll_two_cpus",
};

/* The first two CPUs this process may run on (*b = -1 if only one). */
static void pick_cpus(int *a, int *b)
{
	cpu_set_t set;
	int c;

	*a = 0;
	*b = -1;
	if (sched_getaffinity(0, sizeof(set), &set))
		return;
	for (c = 0, *a = -1; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &set))
			continue;
		if (*a < 0) {
			*a = c;
		} else {
			*b = c;
			return;
		}
	}
	if (*a < 0)
		*a = 0;
}

/* One round of variant @v: @n samples into @ns. */
static int run_variant(unsigned int v, const struct rtt_opts *o,
		       const struct placement *pl, uint64_t *ns,
		       unsigned int n)
{
	const struct placement *p;
	char spec[160];

	if (v == V_URING)
		return rtt_uring(o, ns, n);
	if (v == V_EMB)
		return rtt_dev("embedded:", o, -1, ns, n);
	p = &pl[(v - V_PL0) / 3];
	switch ((v - V_PL0) % 3) {
	case K_PP:
		return rtt_eventfd(o, p->cpu_client, p->cpu_peer, ns, n);
	case K_IRQ:
		snprintf(spec, sizeof(spec), "shm:%s", p->d.sock);
		return rtt_dev(spec, o, p->cpu_client, ns, n);
	default:
		snprintf(spec, sizeof(spec), "shm:%s,poll", p->d.sock);
		return rtt_dev(spec, o, p->cpu_client, ns, n);
	}
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

static void json_bool(FILE *f, double r, double goal, bool le)
{
	if (isnan(r))
		fputs("null", f);
	else
		fputs((le ? r <= goal : r >= goal) ? "true" : "false", f);
}

static void json_cpu(FILE *f, int cpu)
{
	if (cpu < 0)
		fputs("null", f);
	else
		fprintf(f, "%d", cpu);
}

#define GOAL_IRQ	1.5
#define GOAL_POLL	0.5
#define GOAL_ATTN	0.9

static int write_json(const char *path, const struct rtt_opts *o,
		      const struct lat *l, const struct placement *pl,
		      const double (*r)[2], const struct attn_res *a,
		      unsigned int na, double r_attn, double r_attn_poll)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	static const char *const rn[2] = { "shm_irq_over_eventfd",
					   "shm_poll_over_eventfd" };
	static const double goal[2] = { GOAL_IRQ, GOAL_POLL };
	unsigned int i, k;

	if (!f) {
		fprintf(stderr, "csd-bench rtt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"bench\": \"rtt\",\n  \"iters\": %u,\n"
		"  \"rounds\": %u,\n"
		"  \"command\": \"get-features pacing (admin)\",\n"
		"  \"rtt_ns\": {\n", o->iters, o->rounds);
	for (i = 0; i < V_N; i++) {
		fprintf(f, "    \"%s\": { \"median\": ", l[i].name);
		json_num(f, l[i].ok ? l[i].med : NAN);
		fputs(", \"p99\": ", f);
		json_num(f, l[i].ok ? l[i].p99 : NAN);
		fputs(", \"mean\": ", f);
		json_num(f, l[i].ok ? l[i].mean : NAN);
		fprintf(f, " }%s\n", i + 1 < V_N ? "," : "");
	}
	fputs("  },\n  \"placements\": {\n", f);
	for (i = 0; i < PL_N; i++) {
		fprintf(f, "    \"%s\": { \"client_cpu\": ", pl[i].name);
		json_cpu(f, pl[i].cpu_client);
		fputs(", \"peer_cpu\": ", f);
		json_cpu(f, pl[i].cpu_peer);
		fputs(", \"eventfd_pingpong_ns\": ", f);
		json_num(f, l[var_of(i, K_PP)].ok ?
			 l[var_of(i, K_PP)].med : NAN);
		fputs(", \"shm_irq_ns\": ", f);
		json_num(f, l[var_of(i, K_IRQ)].ok ?
			 l[var_of(i, K_IRQ)].med : NAN);
		fputs(", \"shm_poll_ns\": ", f);
		json_num(f, l[var_of(i, K_POLL)].ok ?
			 l[var_of(i, K_POLL)].med : NAN);
		for (k = 0; k < 2; k++) {
			fprintf(f, ", \"%s\": ", rn[k]);
			json_num(f, r[i][k]);
		}
		fprintf(f, " }%s\n", i + 1 < PL_N ? "," : "");
	}
	/* flat ratios: the unpinned ones keep their old names */
	fputs("  },\n  \"ratios\": {\n", f);
	for (i = 0; i < PL_N; i++) {
		for (k = 0; k < 2; k++) {
			fprintf(f, "    \"%s%s%s\": ", rn[k],
				i == PL_UNPINNED ? "" : "_", i == PL_UNPINNED ?
				"" : pl[i].name);
			json_num(f, r[i][k]);
			fputs(",\n", f);
		}
	}
	fputs("    \"attn_shm_over_embedded\": ", f);
	json_num(f, r_attn);
	fputs(",\n    \"attn_shm_poll_over_embedded\": ", f);
	json_num(f, r_attn_poll);
	fprintf(f, "\n  },\n  \"goals\": { \"comparison\": \"same placement: "
		"each shm median over the eventfd ping-pong median measured "
		"with the same CPU placement; judged on the pinned placements "
		"(unpinned: the scheduler may place the two differently)\", "
		"\"placements_judged\": [\"same_cpu\", \"two_cpus\"], "
		"\"shm_irq_over_eventfd\": %g, "
		"\"shm_poll_over_eventfd\": %g, "
		"\"attn_shm_over_embedded_min\": %g },\n  \"goal_met\": {\n",
		GOAL_IRQ, GOAL_POLL, GOAL_ATTN);
	for (k = 0; k < 2; k++) {
		fprintf(f, "    \"%s\": { ", rn[k]);
		for (i = 0; i < PL_N; i++) {
			fprintf(f, "\"%s\": ", pl[i].name);
			json_bool(f, r[i][k], goal[k], true);
			fputs(i + 1 < PL_N ? ", " : " },\n", f);
		}
	}
	fputs("    \"attn_shm_over_embedded\": ", f);
	json_bool(f, r_attn, GOAL_ATTN, false);
	fprintf(f, "\n  },\n"
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
"usage: csd-bench rtt [--iters N] [--rounds N] [--json FILE] [--csd-fw PATH]\n"
"                     [--tokens N] [--batch N] [--attn-iters N] [--no-attn]\n"
"  Round trip of an admin command (Get Features) through embedded:, shm:\n"
"  (interrupts) and shm:,poll against csd-fw daemons started here, beside\n"
"  an eventfd ping-pong between two threads and an io_uring NOP; the\n"
"  ping-pong and shm figures under three CPU placements (unpinned; client\n"
"  and peer on one CPU; on two CPUs), compared placement by placement;\n"
"  then attention tokens/s through shm: vs embedded: (batch x tokens).\n"
"  --iters N        round trips per variant, all rounds [20000]\n"
"  --rounds N       interleave the variants in N rounds [5]\n"
"  --json FILE      also write the results as JSON (- = stdout)\n"
"  --csd-fw PATH    the daemon [$CSD_FW, else next to csd-bench]\n"
"  --tokens N       attention: tokens per sequence [16384]\n"
"  --batch N        attention: sequences per call (>= 8 for the goal) [8]\n"
"  --attn-iters N   attention calls per transport, interleaved [20]\n");
}

static const char *verdict(double r, double goal)
{
	return isnan(r) ? "n/a" : r <= goal ? "ok" : "MISSED";
}

int bench_rtt_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
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
		.iters = 20000, .rounds = 5, .tokens = 16384, .batch = 8,
		.attn_iters = 20,
	};
	struct placement pl[PL_N] = {
		{ .name = "unpinned", .label = "unpinned" },
		{ .name = "same_cpu", .label = "same CPU" },
		{ .name = "two_cpus", .label = "two CPUs" },
	};
	struct lat l[V_N];
	struct attn_res a[3] = {
		{ .name = "embedded" }, { .name = "shm_irq" },
		{ .name = "shm_poll" },
	};
	double r[PL_N][2], r_attn = NAN, r_attn_poll = NAN;
	char fw[PATH_MAX], spec[160], spec_poll[160];
	uint64_t *ns[V_N] = { NULL };
	unsigned int i, v, round, done = 0;
	int c, rc = 0, cpu_a, cpu_b;
	bool vrc[V_N] = { false };

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:r:j:f:t:b:a:Nh", lopts,
				NULL)) != -1) {
		switch (c) {
		case 'n': o.iters = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'r': o.rounds = (unsigned int)strtoul(optarg, NULL, 0); break;
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
	    !o.rounds || o.rounds > o.iters / 10 ||
	    !o.tokens || !o.batch || o.batch > 256 || !o.attn_iters) {
		usage(stderr);
		return 2;
	}
	/* per variant and round */
	o.warmup = o.iters / o.rounds / 10;
	if (o.warmup < 100)
		o.warmup = 100;
	if (o.warmup > 1000)
		o.warmup = 1000;
	if (find_fw(&o, fw, sizeof(fw))) {
		fprintf(stderr, "csd-bench rtt: csd-fw not found (--csd-fw)\n");
		return 1;
	}
	pick_cpus(&cpu_a, &cpu_b);
	pl[PL_UNPINNED].cpu_client = pl[PL_UNPINNED].cpu_peer = -1;
	pl[PL_SAME].cpu_client = pl[PL_SAME].cpu_peer = cpu_a;
	pl[PL_TWO].cpu_client = cpu_a;
	pl[PL_TWO].cpu_peer = cpu_b;
	for (i = 0; i < V_N; i++) {
		l[i] = (struct lat){ .name = var_names[i] };
		ns[i] = malloc(o.iters * sizeof(*ns[i]));
		if (!ns[i]) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < PL_N; i++) {
		if (i == PL_TWO && cpu_b < 0)
			continue;	/* one CPU: no such placement */
		rc = daemon_start(&pl[i].d, fw, pl[i].cpu_peer);
		if (rc) {
			fprintf(stderr, "csd-bench rtt: starting %s: %s\n", fw,
				strerror(-rc));
			goto out;
		}
		pl[i].ok = true;
	}
	/* rounds: every variant once per round, alone */
	for (round = 0; round < o.rounds; round++) {
		unsigned int n = o.iters / o.rounds +
				 (round < o.iters % o.rounds);

		for (v = 0; v < V_N; v++) {
			if (vrc[v] || (v >= V_PL0 && !pl[(v - V_PL0) / 3].ok))
				continue;
			if (run_variant(v, &o, pl, ns[v] + done, n))
				vrc[v] = true;	/* failed: stop measuring it */
		}
		done += n;
	}
	for (v = 0; v < V_N; v++) {
		if (vrc[v])
			rc = -EIO;
		else if (v < V_PL0 || pl[(v - V_PL0) / 3].ok)
			summarize(&l[v], ns[v], o.iters);
	}
	if (!o.no_attn && pl[PL_UNPINNED].ok) {
		const char *specs[3] = { "embedded:", spec, spec_poll };

		snprintf(spec, sizeof(spec), "shm:%s", pl[PL_UNPINNED].d.sock);
		snprintf(spec_poll, sizeof(spec_poll), "shm:%s,poll",
			 pl[PL_UNPINNED].d.sock);
		rc |= attn_tput(specs, 3, &o, a);
	}

	printf("round trip, %u iterations in %u rounds (ns)  median       p99"
	       "      mean\n", o.iters, o.rounds);
	for (i = 0; i < V_N; i++) {
		if (l[i].ok)
			printf("  %-32s %9.0f %9.0f %9.0f\n", l[i].name,
			       l[i].med, l[i].p99, l[i].mean);
		else
			printf("  %-32s    not measured\n", l[i].name);
	}
	printf("placement  client/peer CPU  ping-pong    shm irq   shm poll"
	       "   irq/pp (<= %.1f)   poll/pp (<= %.1f)\n", GOAL_IRQ,
	       GOAL_POLL);
	for (i = 0; i < PL_N; i++) {
		const struct lat *pp = &l[var_of(i, K_PP)];
		const struct lat *irq = &l[var_of(i, K_IRQ)];
		const struct lat *poll = &l[var_of(i, K_POLL)];
		char cpus[32];

		r[i][0] = ratio(irq, pp);
		r[i][1] = ratio(poll, pp);
		if (pl[i].cpu_client < 0)
			snprintf(cpus, sizeof(cpus), "any/any");
		else
			snprintf(cpus, sizeof(cpus), "%d/%d",
				 pl[i].cpu_client, pl[i].cpu_peer);
		printf("  %-9s %-14s %9.0f %10.0f %10.0f   %5.2fx %-9s  "
		       "%5.2fx %s\n", pl[i].label, cpus,
		       pp->ok ? pp->med : NAN, irq->ok ? irq->med : NAN,
		       poll->ok ? poll->med : NAN, r[i][0],
		       verdict(r[i][0], GOAL_IRQ), r[i][1],
		       verdict(r[i][1], GOAL_POLL));
	}
	printf("goals compare the same placement: the same_cpu and two_cpus "
	       "rows (client and peer -- the daemon / the ping-pong's second "
	       "thread -- pinned alike); the unpinned row is the scheduler's "
	       "choice, which may differ between the two\n");
	if (!o.no_attn) {
		r_attn = a[0].ok && a[1].ok ? a[1].tok_s / a[0].tok_s : NAN;
		r_attn_poll = a[0].ok && a[2].ok ?
			      a[2].tok_s / a[0].tok_s : NAN;
		printf("attention, batch %u x %u tokens (tokens/s):\n", o.batch,
		       o.tokens);
		for (i = 0; i < 3; i++)
			printf("  %-10s %.4g\n", a[i].name, a[i].tok_s);
		printf("attention shm / embedded:          %.3f (goal >= %.1f; "
		       "polled %.3f)\n", r_attn, GOAL_ATTN, r_attn_poll);
	}
	if (o.json && write_json(o.json, &o, l, pl, (const double (*)[2])r,
				 a, o.no_attn ? 0 : 3, r_attn, r_attn_poll))
		rc = -1;
out:
	for (i = 0; i < PL_N; i++)
		if (pl[i].d.dir[0])
			daemon_stop(&pl[i].d);
	for (i = 0; i < V_N; i++)
		free(ns[i]);
	return rc ? 1 : 0;
}
