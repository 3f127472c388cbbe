// SPDX-License-Identifier: MIT
/*
 * attn.c - the attention engine: batch jobs on a pool of worker threads.
 *
 * A job is split into tasks over (sequence, kv head, token block).  Token
 * blocks are page aligned and sized so that there are a few tasks per
 * thread but each streams at least ~256 KiB of K+V.  Each task computes a
 * partial (m, l, acc) of its GQA group with the kernel; the thread that
 * finishes the last task of a (sequence, kv head) group merges the group's
 * partials in task order (deterministic) with attn_merge() and writes the
 * normalized output and lse; the thread finishing the last group calls
 * job->done(job).
 *
 * Jobs are served FIFO: workers take tasks from the oldest queued job until
 * all its tasks are handed out, so jobs complete roughly in order.
 *
 * A SparF job (sp_r != 0) has one task per (sequence, kv head) for every
 * sequence that keeps fewer tokens than it has (attn_sparse_group() writes
 * the group's outputs itself, in its worker's reusable scratch); sequences
 * that keep all their tokens get the dense tasks, so k >= n is
 * bit-identical to a dense call.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn_internal.h"

#define TASK_MAX_TOKENS		4096
#define TASK_MIN_BYTES		(256u << 10)
#define TASKS_PER_THREAD	4
/* a worker keeps at most this much SparF scratch between groups */
#define SCRATCH_KEEP		(64u << 20)

struct attn_task {
	uint32_t si;			/* sequence index in the job */
	uint32_t kvh;
	uint32_t begin, end;
	uint32_t group;
	uint32_t pg_off;		/* first page pointer slot */
	bool sparse;			/* SparF group task */
	float *acc;			/* [n_q][head_dim] */
};

struct attn_group {
	atomic_uint left;		/* tasks not finished */
	uint32_t first, ntasks;
};

struct attn_jstate {
	struct attn_job *job;
	struct attn_jstate *next;	/* engine queue */
	uint32_t ntasks, next_task;	/* next_task under the engine lock */
	uint32_t ngroups, nq;
	atomic_uint groups_left;
	struct attn_task *tasks;
	struct attn_group *groups;
	float *ml;			/* per task: m[n_q], l[n_q] */
	const void **pages;		/* per task: K pages then V pages */
};

struct attn_engine {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct attn_jstate *head, *tail;
	bool stop;
	int simd;
	attn_kernel_fn kernel;
	const struct attn_sparse_ops *sops;
	unsigned int nthreads;
	pthread_t *threads;
};

static int job_check(const struct attn_job *j)
{
	if (!j || j->dtype < 0 || j->dtype >= CSD_DTYPE_COUNT ||
	    j->head_dim < 16 || j->head_dim > ATTN_MAX_HEAD_DIM ||
	    j->head_dim % 16 || !j->kv_heads || !j->q_heads ||
	    j->q_heads % j->kv_heads ||
	    j->q_heads / j->kv_heads > ATTN_MAX_NQ || !j->tpp ||
	    !j->nseq || !j->seqs || !j->lo || !j->hi || !j->q || !j->out ||
	    !j->page || !isfinite(j->scale))
		return -EINVAL;
	for (uint32_t i = 0; i < j->nseq; i++)
		if (j->hi[i] <= j->lo[i])
			return -EINVAL;
	if (!j->sp_r)
		return 0;
	if (j->sp_r > j->head_dim || !j->sp_k || !j->chan || !j->vsum ||
	    !j->chan_tokens || j->chan_tokens % j->tpp)
		return -EINVAL;
	for (uint32_t i = 0; i < j->nseq; i++)
		if (j->lo[i])
			return -EINVAL;
	return 0;
}

/* Whether sequence @i of @j is attended sparsely (keeps < all tokens). */
static bool seq_sparse(const struct attn_job *j, uint32_t i)
{
	return j->sp_r && attn_sparse_k(j->sp_k, j->sp_frac, j->hi[i]) <
			  j->hi[i];
}

static uint32_t task_tokens(const struct attn_job *j, unsigned int threads)
{
	size_t row = (size_t)j->head_dim * csd_dtype_size(j->dtype);
	uint64_t total = 0, chunk, min_tok;

	for (uint32_t i = 0; i < j->nseq; i++)
		if (!seq_sparse(j, i))
			total += (uint64_t)(j->hi[i] - j->lo[i]) * j->kv_heads;
	chunk = total / ((uint64_t)threads * TASKS_PER_THREAD);
	min_tok = (TASK_MIN_BYTES + 2 * row - 1) / (2 * row);
	if (chunk < min_tok)
		chunk = min_tok;
	if (chunk > TASK_MAX_TOKENS)
		chunk = TASK_MAX_TOKENS;
	chunk = (chunk + j->tpp - 1) / j->tpp * j->tpp;
	return chunk > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)chunk;
}

static uint32_t npages(uint32_t begin, uint32_t end, uint32_t tpp)
{
	return (end - 1) / tpp - begin / tpp + 1;
}

/* Build the task list and scratch of @j; NULL on allocation failure. */
static struct attn_jstate *jstate_new(struct attn_job *j,
				      unsigned int threads)
{
	const uint32_t nq = j->q_heads / j->kv_heads, d = j->head_dim;
	const uint32_t chunk = task_tokens(j, threads);
	uint64_t ntasks = 0, nptr = 0, nextra = 0;
	struct attn_jstate *js;
	size_t off, sz;
	char *mem;
	float *extra;

	for (uint32_t i = 0; i < j->nseq; i++) {
		uint32_t n = 0, p = 0;

		if (seq_sparse(j, i)) {
			ntasks += j->kv_heads;
			continue;
		}
		for (uint32_t b = j->lo[i]; b < j->hi[i];) {
			uint32_t e = (b / chunk + 1) * chunk;

			if (e > j->hi[i] || e < b)
				e = j->hi[i];
			p += npages(b, e, j->tpp);
			n++;
			b = e;
		}
		ntasks += (uint64_t)n * j->kv_heads;
		nextra += (uint64_t)(n - 1) * j->kv_heads;
		nptr += 2ull * p * j->kv_heads;
	}
	if (ntasks > UINT32_MAX / 2)
		return NULL;

	/* one allocation: state, tasks, groups, m/l, extra acc, page ptrs */
	off = sizeof(*js);
	off = (off + 63) & ~(size_t)63;
	size_t o_tasks = off;

	off += ntasks * sizeof(struct attn_task);
	off = (off + 63) & ~(size_t)63;
	size_t o_groups = off;

	off += (size_t)j->nseq * j->kv_heads * sizeof(struct attn_group);
	off = (off + 63) & ~(size_t)63;
	size_t o_ml = off;

	off += ntasks * 2 * nq * sizeof(float);
	off = (off + 63) & ~(size_t)63;
	size_t o_extra = off;

	off += nextra * nq * d * sizeof(float);
	off = (off + 63) & ~(size_t)63;
	size_t o_pages = off;

	sz = off + nptr * sizeof(void *);
	mem = aligned_alloc(64, (sz + 63) & ~(size_t)63);
	if (!mem)
		return NULL;
	js = (struct attn_jstate *)mem;
	memset(js, 0, sizeof(*js));
	js->job = j;
	js->nq = nq;
	js->ntasks = (uint32_t)ntasks;
	js->ngroups = j->nseq * j->kv_heads;
	js->tasks = (struct attn_task *)(mem + o_tasks);
	js->groups = (struct attn_group *)(mem + o_groups);
	js->ml = (float *)(mem + o_ml);
	js->pages = (const void **)(mem + o_pages);
	extra = (float *)(mem + o_extra);
	atomic_init(&js->groups_left, js->ngroups);

	/* tasks grouped by (sequence, kv head); page slots follow them */
	uint32_t ti = 0, pslot = 0;

	for (uint32_t i = 0; i < j->nseq; i++) {
		for (uint32_t h = 0; h < j->kv_heads; h++) {
			uint32_t g = i * j->kv_heads + h, first = ti;
			float *out = j->out +
				((size_t)i * j->q_heads + (size_t)h * nq) * d;

			if (seq_sparse(j, i)) {
				struct attn_task *t = &js->tasks[ti++];

				memset(t, 0, sizeof(*t));
				t->si = i;
				t->kvh = h;
				t->end = j->hi[i];
				t->group = g;
				t->sparse = true;
				t->acc = out;
			}
			for (uint32_t b = j->lo[i]; b < j->hi[i] &&
			     !seq_sparse(j, i);) {
				uint32_t e = (b / chunk + 1) * chunk;
				struct attn_task *t = &js->tasks[ti];

				if (e > j->hi[i] || e < b)
					e = j->hi[i];
				t->si = i;
				t->kvh = h;
				t->begin = b;
				t->end = e;
				t->group = g;
				t->pg_off = pslot;
				t->sparse = false;
				if (ti == first) {
					t->acc = out;
				} else {
					t->acc = extra;
					extra += (size_t)nq * d;
				}
				pslot += 2 * npages(b, e, j->tpp);
				ti++;
				b = e;
			}
			js->groups[g].first = first;
			js->groups[g].ntasks = ti - first;
			atomic_init(&js->groups[g].left, ti - first);
		}
	}
	return js;
}

static void finish_group(struct attn_jstate *js, struct attn_group *g)
{
	struct attn_job *j = js->job;
	const uint32_t nq = js->nq, d = j->head_dim;
	struct attn_task *t0 = &js->tasks[g->first];
	float *m = js->ml + (size_t)g->first * 2 * nq, *l = m + nq;

	if (t0->sparse)		/* attn_sparse_group() wrote out and lse */
		return;
	for (uint32_t k = 1; k < g->ntasks; k++) {
		struct attn_task *t = &js->tasks[g->first + k];
		const float *m2 = js->ml + (size_t)(g->first + k) * 2 * nq;

		for (uint32_t h = 0; h < nq; h++)
			attn_merge(&m[h], &l[h], t0->acc + (size_t)h * d,
				   m2[h], m2[nq + h], t->acc + (size_t)h * d,
				   d);
	}
	for (uint32_t h = 0; h < nq; h++) {
		float *o = t0->acc + (size_t)h * d;
		float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;

		for (uint32_t i = 0; i < d; i++)
			o[i] *= inv;
		if (j->lse)
			j->lse[(size_t)t0->si * j->q_heads + t0->kvh * nq + h] =
				l[h] > 0.0f ? m[h] + logf(l[h]) : -INFINITY;
	}
}

/*
 * Runs task @ti of @js.  Returns true when it was the job's last task: @js
 * has then been freed and job->done called, so the caller must not touch @js.
 */
static bool run_task(attn_kernel_fn kernel,
		     const struct attn_sparse_ops *sops,
		     struct attn_jstate *js, uint32_t ti,
		     struct attn_scratch *sc)
{
	struct attn_job *j = js->job;
	struct attn_task *t = &js->tasks[ti];
	struct attn_group *g = &js->groups[t->group];
	const uint32_t nq = js->nq, d = j->head_dim;
	const uint32_t np = npages(t->begin, t->end, j->tpp);
	const uint32_t p0 = t->begin / j->tpp, seq = j->seqs[t->si];
	const void **kp = js->pages + t->pg_off, **vp = kp + np;
	float *m = js->ml + (size_t)ti * 2 * nq;
	bool ok = !t->sparse;

	for (uint32_t i = 0; i < np && ok; i++) {
		kp[i] = j->page(j->cookie, seq, t->kvh, 0, p0 + i);
		vp[i] = j->page(j->cookie, seq, t->kvh, 1, p0 + i);
		ok = kp[i] && vp[i];
	}
	if (t->sparse) {
		attn_sparse_group(sops, kernel, j, t->si, t->kvh, sc);
		if (sc->size > SCRATCH_KEEP)
			attn_scratch_free(sc);
	} else if (ok) {
		struct attn_args a = {
			.dtype = j->dtype,
			.head_dim = d,
			.n_q = nq,
			.scale = j->scale,
			.q = j->q + ((size_t)t->si * j->q_heads +
				     (size_t)t->kvh * nq) * d,
			.kpages = kp,
			.vpages = vp,
			.tpp = j->tpp,
			.tok_begin = t->begin,
			.tok_end = t->end,
			.m = m,
			.l = m + nq,
			.acc = t->acc,
		};

		kernel(&a);
	} else {
		/* missing page: the task contributes nothing */
		for (uint32_t h = 0; h < nq; h++) {
			m[h] = -INFINITY;
			m[nq + h] = 0.0f;
		}
		memset(t->acc, 0, (size_t)nq * d * sizeof(float));
	}

	if (atomic_fetch_sub(&g->left, 1) != 1)
		return false;
	finish_group(js, g);
	if (atomic_fetch_sub(&js->groups_left, 1) != 1)
		return false;
	j->internal = NULL;
	free(js);
	if (j->done)
		j->done(j);
	return true;
}

static void *worker(void *arg)
{
	struct attn_engine *e = arg;
	struct attn_scratch sc = { NULL, 0 };

	pthread_mutex_lock(&e->lock);
	for (;;) {
		struct attn_jstate *js;
		uint32_t ti;

		while (!e->head && !e->stop)
			pthread_cond_wait(&e->cond, &e->lock);
		js = e->head;
		if (!js)
			break;
		ti = js->next_task++;
		if (js->next_task == js->ntasks) {
			e->head = js->next;
			if (!e->head)
				e->tail = NULL;
		}
		pthread_mutex_unlock(&e->lock);
		run_task(e->kernel, e->sops, js, ti, &sc);
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	attn_scratch_free(&sc);
	return NULL;
}

int attn_engine_create(unsigned int threads, int simd,
		       struct attn_engine **ep)
{
	struct attn_engine *e;
	int rc;

	if (!ep)
		return -EINVAL;
	*ep = NULL;
	if (simd == CSD_SIMD_AUTO)
		simd = attn_simd_detect();
	if (simd < 0 || simd >= CSD_SIMD_COUNT)
		return -EINVAL;
	if (!attn_simd_supported(simd))
		return -EOPNOTSUPP;
	if (!threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		threads = n > 0 ? (unsigned int)n : 1;
	}
	if (threads > 1024)
		return -EINVAL;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->simd = simd;
	e->kernel = attn_kernel_get(simd);
	e->sops = attn_sparse_ops_get(simd);
	e->threads = calloc(threads, sizeof(*e->threads));
	if (!e->threads) {
		rc = -ENOMEM;
		goto err_free;
	}
	rc = -pthread_mutex_init(&e->lock, NULL);
	if (rc)
		goto err_threads;
	rc = -pthread_cond_init(&e->cond, NULL);
	if (rc)
		goto err_mutex;
	for (; e->nthreads < threads; e->nthreads++) {
		rc = -pthread_create(&e->threads[e->nthreads], NULL, worker, e);
		if (rc)
			goto err_join;
	}
	*ep = e;
	return 0;

err_join:
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	for (unsigned int i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	pthread_cond_destroy(&e->cond);
err_mutex:
	pthread_mutex_destroy(&e->lock);
err_threads:
	free(e->threads);
err_free:
	free(e);
	return rc;
}

void attn_engine_destroy(struct attn_engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	for (unsigned int i = 0; i < e->nthreads; i++)
		pthread_join(e->threads[i], NULL);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	free(e->threads);
	free(e);
}

int attn_engine_simd(const struct attn_engine *e)
{
	return e->simd;
}

unsigned int attn_engine_threads(const struct attn_engine *e)
{
	return e->nthreads;
}

int attn_engine_submit(struct attn_engine *e, struct attn_job *job)
{
	struct attn_jstate *js;
	int rc;

	if (!e)
		return -EINVAL;
	rc = job_check(job);
	if (rc)
		return rc;
	js = jstate_new(job, e->nthreads);
	if (!js)
		return -ENOMEM;
	job->internal = js;
	pthread_mutex_lock(&e->lock);
	if (e->tail)
		e->tail->next = js;
	else
		e->head = js;
	e->tail = js;
	if (js->ntasks > 1)
		pthread_cond_broadcast(&e->cond);
	else
		pthread_cond_signal(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return 0;
}

/*
 * Runs every task on the calling thread; job->done (if set) is called
 * before returning, exactly as the engine would.
 */
int attn_run_single(struct attn_job *job, int simd)
{
	const struct attn_sparse_ops *sops;
	struct attn_scratch sc = { NULL, 0 };
	struct attn_jstate *js;
	attn_kernel_fn kernel;
	uint32_t n;
	int rc;

	if (simd == CSD_SIMD_AUTO)
		simd = attn_simd_detect();
	if (simd < 0 || simd >= CSD_SIMD_COUNT)
		return -EINVAL;
	kernel = attn_kernel_get(simd);
	sops = attn_sparse_ops_get(simd);
	if (!kernel || !sops)
		return -EOPNOTSUPP;
	rc = job_check(job);
	if (rc)
		return rc;
	js = jstate_new(job, 1);
	if (!js)
		return -ENOMEM;
	job->internal = js;
	n = js->ntasks;
	/* the last run_task frees js and calls done */
	for (uint32_t i = 0; i < n; i++)
		if (run_task(kernel, sops, js, i, &sc))
			break;
	attn_scratch_free(&sc);
	return 0;
}
