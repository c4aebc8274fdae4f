// SPDX-License-Identifier: MIT
/* Background prefetch and read-ahead (see prefetch.h). */
#include <pthread.h>
#include <stdio.h>

#include "prefetch.h"
#include "slimfs/format.h"
#include "slimfs/util.h"

#define DEFAULT_THREADS 2u
#define DEFAULT_MAX_RUN (8ull << 20)
#define RA_QUEUE	32u
#define RA_MAX		128u /* chunks per read-ahead job */
#define CALL_QUEUE	32u
/*
 * The profile's first batch is this large, and each next one twice the last,
 * up to max_run: a batch's chunks reach readers only once its whole body is
 * in, and the workload, started at mount, wants the profile's first chunks
 * first. At 100 Mbit/s + 20 ms one 3.9 MB request (python3's profile) kept
 * every reader waiting ~0.33 s; in batches the first ones arrive after a round
 * trip and ~0.05 s, and the workload runs while the rest comes in.
 */
#define PROFILE_FIRST_RUN (256ull << 10)

struct ra_job {
	uint32_t n;
	unsigned flags; /* SLIMFS_LOAD_* besides SLIMFS_LOAD_BACKGROUND */
	uint32_t chunks[RA_MAX];
};

struct slimfs_prefetch {
	struct slimfs_cache *cache; /* borrowed */
	struct slimfs_image *img;   /* borrowed */
	struct slimfs_prefetch_opts o;
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	bool stop;
	/* The plan: chunk indices in order; [0, nprofile) keep in memory too. */
	uint32_t *plan;
	size_t nplan, nprofile, cursor, busy;
	unsigned loading;	  /* workers in a load (at most o.threads) */
	unsigned profile_batches; /* taken so far */
	/* Bitmap of the chunks of [0, nprofile), or NULL when there are none. */
	uint8_t *in_profile;
	uint64_t done, done_bytes, total_bytes, failed, end_ns, start_ns;
	bool finished;
	/* The profile part of the plan is sorted by data offset and its batches
	 * read through small gaps (a profile given at mount: its chunks are
	 * scattered in an image not built with it). */
	bool gaps;
	/* Read-ahead ring. */
	struct ra_job ra[RA_QUEUE];
	unsigned ra_head, ra_len;
	uint64_t ra_jobs, ra_dropped;
	/* Calls (slimfs_prefetch_set_call): before all else, one at a time. */
	slimfs_prefetch_fn *call_fn;
	void *call_ud;
	uint32_t calls[CALL_QUEUE];
	unsigned call_head, call_len;
	bool calling;
	pthread_t *threads;
	unsigned nthreads;
};

const char *slimfs_prefetch_mode_name(enum slimfs_prefetch_mode m)
{
	return m == SLIMFS_PREFETCH_ALL ? "all" : m == SLIMFS_PREFETCH_PROFILE ? "profile" : "none";
}

/*
 * --prefetch-profile: the profile's chunk ids, in its order, mapped to this
 * image's chunk indices through a hash table of the image's ids (ids are
 * content hashes, so a profile recorded on another build of the same content
 * maps onto this one). Ids the image lacks are skipped and counted.
 */
static int plan_profile_ids(struct slimfs_prefetch *p, uint8_t *seen)
{
	uint64_t n = p->img->info->chunk_count, cap = 16, missing = 0;
	_cleanup_free_ uint32_t *table = NULL;
	struct slimfs_chunk ch;

	while (cap < 2 * n)
		cap <<= 1;
	table = malloc(cap * sizeof(*table));
	if (!table)
		return -ENOMEM;
	memset(table, 0xff, cap * sizeof(*table));
	for (uint64_t i = 0; i < n; i++) {
		uint64_t h;

		if (slimfs_index_chunk(p->img->idx, (uint32_t)i, &ch) < 0)
			continue;
		memcpy(&h, ch.id, sizeof(h));
		while (table[h & (cap - 1)] != UINT32_MAX)
			h++;
		table[h & (cap - 1)] = (uint32_t)i;
	}
	for (size_t k = 0; k < p->o.nprofile_ids; k++) {
		const uint8_t *id = p->o.profile_ids + 16 * k;
		uint64_t h;
		uint32_t i;

		memcpy(&h, id, sizeof(h));
		for (;; h++) {
			i = table[h & (cap - 1)];
			if (i == UINT32_MAX || (slimfs_index_chunk(p->img->idx, i, &ch) == 0 &&
						memcmp(ch.id, id, 16) == 0))
				break;
		}
		if (i == UINT32_MAX) {
			missing++;
			continue;
		}
		if (seen[i / 8] & (1u << (i & 7)))
			continue;
		seen[i / 8] |= (uint8_t)(1u << (i & 7));
		p->plan[p->nplan++] = i;
	}
	log_info("prefetch profile: %zu of %zu chunks are in this image", p->nplan,
		 p->o.nprofile_ids);
	if (missing && missing * 2 >= p->o.nprofile_ids)
		log_warn("prefetch profile: %llu of its chunks are not in this image "
			 "(another image, or other --chunk-* options)",
			 (unsigned long long)missing);
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Profile order first, then (mode all) the other chunks in data order. */
static int make_plan(struct slimfs_prefetch *p)
{
	const struct slimfs_info *info = p->img->info;
	uint64_t n = info->chunk_count;
	_cleanup_free_ uint8_t *seen = NULL;
	struct slimfs_chunk ch;

	if (p->o.mode == SLIMFS_PREFETCH_NONE || n == 0)
		return 0;
	seen = calloc(n / 8 + 1, 1);
	p->plan = malloc(n * sizeof(*p->plan));
	if (!seen || !p->plan)
		return -ENOMEM;
	if (p->o.profile_ids) {
		int r = plan_profile_ids(p, seen);

		if (r < 0)
			return r;
	}
	for (uint64_t k = 0; !p->o.profile_ids && k < info->prefetch_count; k++) {
		uint32_t i;

		if (slimfs_index_prefetch(p->img->idx, k, &i) < 0 || i >= n)
			continue;
		if (seen[i / 8] & (1u << (i & 7)))
			continue;
		seen[i / 8] |= (uint8_t)(1u << (i & 7));
		p->plan[p->nplan++] = i;
	}
	p->nprofile = p->nplan;
	if (p->o.profile_ids) {
		/*
		 * The chunks of a profile given at mount lie wherever the image's
		 * builder put them: fetched in profile order, nearly each one costs
		 * a request (a round trip). In data order, with small gaps read
		 * through, they take a few. Chunk indices follow data offsets.
		 */
		qsort(p->plan, p->nprofile, sizeof(*p->plan), cmp_u32);
		p->gaps = true;
	}
	if (p->o.mode == SLIMFS_PREFETCH_ALL) {
		if (!p->o.has_disk && !p->o.disk_only)
			log_warn("--prefetch all needs a disk cache: prefetching the profile only");
		else
			for (uint64_t i = 0; i < n; i++)
				if (!(seen[i / 8] & (1u << (i & 7))))
					p->plan[p->nplan++] = (uint32_t)i;
	}
	for (size_t k = 0; k < p->nplan; k++)
		if (slimfs_index_chunk(p->img->idx, p->plan[k], &ch) == 0)
			p->total_bytes += ch.csize;
	/* seen holds the profile's chunks only (the --prefetch all part is not in it) */
	if (p->nprofile)
		p->in_profile = steal_ptr(&seen);
	return 0;
}

/*
 * Next batch of the plan: entries adjacent in the data area (or, for a profile
 * given at mount, up to SLIMFS_LOAD_GAP_MAX apart), up to max_run (growing
 * from PROFILE_FIRST_RUN in the profile). Locked.
 */
static size_t take_batch(struct slimfs_prefetch *p, size_t *start, bool *profile)
{
	struct slimfs_chunk prev = {0}, ch;
	uint64_t bytes = 0, gap_max, max_run = p->o.max_run;
	bool have = false;
	size_t k = p->cursor;

	*start = k;
	*profile = k < p->nprofile;
	gap_max = p->gaps && *profile ? SLIMFS_LOAD_GAP_MAX : 0;
	if (*profile)
		max_run = MIN(max_run, PROFILE_FIRST_RUN << MIN(p->profile_batches++, 8u));
	while (k < p->nplan) {
		if (slimfs_index_chunk(p->img->idx, p->plan[k], &ch) < 0) {
			k++;
			continue;
		}
		if (!have)
			bytes = ch.csize;
		else if ((k < p->nprofile) != *profile ||
			 !slimfs_run_extend(&bytes, prev.off + prev.csize, ch.off, ch.csize,
					    gap_max, max_run))
			break;
		prev = ch;
		have = true;
		k++;
	}
	p->cursor = k;
	return k - *start;
}

static void *worker(void *arg)
{
	struct slimfs_prefetch *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (p->call_len && !p->calling) {
			uint32_t call = p->calls[p->call_head];

			p->call_head = (p->call_head + 1) % CALL_QUEUE;
			p->call_len--;
			p->calling = true;
			pthread_mutex_unlock(&p->lock);
			p->call_fn(p->call_ud, call);
			pthread_mutex_lock(&p->lock);
			p->calling = false;
			continue;
		}
		if (p->ra_len && p->loading < p->o.threads) {
			struct ra_job job = p->ra[p->ra_head];

			p->ra_head = (p->ra_head + 1) % RA_QUEUE;
			p->ra_len--;
			p->loading++;
			pthread_mutex_unlock(&p->lock);
			(void)slimfs_cache_load(p->cache, job.chunks, job.n, p->o.max_run,
						SLIMFS_LOAD_BACKGROUND | job.flags, NULL);
			pthread_mutex_lock(&p->lock);
			p->loading--;
			continue;
		}
		if (p->cursor < p->nplan && p->loading < p->o.threads) {
			size_t start, n, failed = 0;
			uint64_t bytes = 0;
			bool profile;
			unsigned flags = SLIMFS_LOAD_BACKGROUND;
			struct slimfs_chunk ch;

			n = take_batch(p, &start, &profile);
			p->busy++;
			p->loading++;
			pthread_mutex_unlock(&p->lock);
			if (p->o.disk_only || !profile)
				flags |= SLIMFS_LOAD_DISK_ONLY;
			if (p->gaps && profile)
				flags |= SLIMFS_LOAD_GAPS;
			for (size_t k = 0; k < n; k++)
				if (slimfs_index_chunk(p->img->idx, p->plan[start + k], &ch) == 0)
					bytes += ch.csize;
			if (slimfs_cache_load(p->cache, p->plan + start, n, p->o.max_run, flags,
					      NULL) < 0) {
				/* Which ones failed: those neither in memory nor on disk now
				 * are not known cheaply; count the batch's chunks again one by
				 * one through the cache (each answers its remembered error). */
				for (size_t k = 0; k < n; k++)
					if (slimfs_cache_load(p->cache, p->plan + start + k, 1,
							      p->o.max_run, flags, NULL) < 0)
						failed++;
			}
			pthread_mutex_lock(&p->lock);
			p->busy--;
			p->loading--;
			p->done += n;
			p->done_bytes += bytes;
			p->failed += failed;
			if (p->cursor >= p->nplan && p->busy == 0 && !p->finished) {
				__atomic_store_n(&p->finished, true, __ATOMIC_RELEASE);
				p->end_ns = slimfs_now_ns();
				pthread_cond_broadcast(&p->idle);
			}
			continue;
		}
		pthread_cond_wait(&p->work, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int slimfs_prefetch_start(struct slimfs_cache *c, struct slimfs_image *img,
			  const struct slimfs_prefetch_opts *o, struct slimfs_prefetch **out)
{
	struct slimfs_prefetch *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->cache = c;
	p->img = img;
	p->o = *o;
	if (!p->o.threads)
		p->o.threads = DEFAULT_THREADS;
	if (!p->o.max_run)
		p->o.max_run = DEFAULT_MAX_RUN;
	p->start_ns = slimfs_now_ns();
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	r = make_plan(p);
	if (r < 0)
		goto fail;
	if (p->nplan == 0) {
		p->finished = true;
		p->end_ns = p->start_ns;
		if (!p->o.readahead) {
			*out = p;
			return 0;
		}
	}
	p->threads = calloc(p->o.threads + 1, sizeof(*p->threads));
	if (!p->threads) {
		r = -ENOMEM;
		goto fail;
	}
	if (!o->deferred) {
		r = slimfs_prefetch_run(p);
		if (r < 0) {
			slimfs_prefetch_stop(p);
			return r;
		}
	}
	if (p->nplan)
		log_debug("prefetching %zu chunks (%zu of the profile, mode %s)", p->nplan,
			  p->nprofile, slimfs_prefetch_mode_name(o->mode));
	*out = p;
	return 0;
fail:
	slimfs_prefetch_stop(p);
	return r;
}

int slimfs_prefetch_run(struct slimfs_prefetch *p)
{
	int r;

	if (!p || !p->threads)
		return 0;
	for (; p->nthreads < p->o.threads + (p->call_fn ? 1 : 0); p->nthreads++) {
		r = -pthread_create(&p->threads[p->nthreads], NULL, worker, p);
		if (r < 0)
			return log_error_errno(r, "cannot start a prefetch thread");
	}
	return 0;
}

void slimfs_prefetch_stop(struct slimfs_prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->idle);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	free(p->threads);
	free(p->plan);
	free(p->in_profile);
	free(p);
}

/* Queues a job at the back of the ring (read-ahead) or at its front (miss-ahead). */
static void queue_job(struct slimfs_prefetch *p, const uint32_t *chunks, size_t n, bool front,
		      unsigned flags)
{
	struct ra_job *j;

	if (!p || !p->o.readahead || n == 0)
		return;
	n = MIN(n, (size_t)RA_MAX);
	pthread_mutex_lock(&p->lock);
	if (p->ra_len == RA_QUEUE || p->stop) {
		p->ra_dropped++;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	if (front) {
		p->ra_head = (p->ra_head + RA_QUEUE - 1) % RA_QUEUE;
		j = &p->ra[p->ra_head];
	} else {
		j = &p->ra[(p->ra_head + p->ra_len) % RA_QUEUE];
	}
	j->n = (uint32_t)n;
	j->flags = flags;
	memcpy(j->chunks, chunks, n * sizeof(*chunks));
	p->ra_len++;
	p->ra_jobs++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

void slimfs_prefetch_readahead(struct slimfs_prefetch *p, const uint32_t *chunks, size_t n)
{
	queue_job(p, chunks, n, false, 0);
}

/*
 * A window ahead of a miss goes in pieces of at most SLIMFS_MISS_AHEAD_PIECE
 * compressed bytes, each a job of its own, the first piece first in the
 * queue: a request's chunks reach readers only once all of it is in, so a
 * reader that wants a chunk of the window waits for its piece, not for the
 * whole window, and the workers keep a few pieces in flight. python3
 * importing json, sqlite3 and urllib.request without a profile (slimfs bench
 * --modes lazy, medians of 3): 2.30 -> 2.14 s at 100 Mbit/s + 20 ms (87 ->
 * 116 requests, the same 10.5 MiB), 0.48 -> 0.45 s at 1 Gbit/s + 1 ms;
 * pieces of 128K 2.04 s, of 512K 1.95 s with the directory sweep (256K:
 * 1.94 s; one piece 2.0 s).
 */
void slimfs_prefetch_miss_ahead(struct slimfs_prefetch *p, const uint32_t *chunks, size_t n)
{
	size_t cut[RA_QUEUE + 1], ncut = 0, room;
	uint64_t bytes = 0;
	struct slimfs_chunk ch;

	if (!p)
		return;
	for (size_t k = 0; k < n; k++) {
		if (slimfs_index_chunk(p->img->idx, chunks[k], &ch) < 0)
			continue;
		if (k == 0 || (bytes + ch.csize > SLIMFS_MISS_AHEAD_PIECE && ncut < RA_QUEUE)) {
			cut[ncut++] = k;
			bytes = 0;
		}
		bytes += ch.csize;
	}
	cut[ncut] = n;
	/* The first pieces when not all fit (room may shrink meanwhile: then
	 * queue_job drops and counts the first ones queued, the last pieces). */
	pthread_mutex_lock(&p->lock);
	room = RA_QUEUE - p->ra_len;
	if (ncut > room) {
		p->ra_dropped += ncut - room;
		ncut = room;
	}
	pthread_mutex_unlock(&p->lock);
	/* Each at the front of the queue: the last piece first. */
	for (size_t i = ncut; i-- > 0;)
		queue_job(p, chunks + cut[i], cut[i + 1] - cut[i], true, SLIMFS_LOAD_GAPS);
}

void slimfs_prefetch_set_call(struct slimfs_prefetch *p, slimfs_prefetch_fn *fn, void *ud)
{
	if (!p || p->nthreads)
		return;
	p->call_fn = fn;
	p->call_ud = ud;
}

void slimfs_prefetch_call(struct slimfs_prefetch *p, uint32_t arg)
{
	if (!p || !p->call_fn || !p->threads)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->call_len < CALL_QUEUE && !p->stop) {
		p->calls[(p->call_head + p->call_len++) % CALL_QUEUE] = arg;
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->lock);
}

bool slimfs_prefetch_profiled(const struct slimfs_prefetch *p)
{
	return p && p->in_profile;
}

bool slimfs_prefetch_planned_done(struct slimfs_prefetch *p)
{
	return !p || __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE);
}

bool slimfs_prefetch_in_profile(const struct slimfs_prefetch *p, uint32_t chunk)
{
	/* set before the workers start, never changed after */
	return p && p->in_profile && chunk < p->img->info->chunk_count &&
	       (p->in_profile[chunk / 8] & (1u << (chunk & 7)));
}

void slimfs_prefetch_progress(struct slimfs_prefetch *p, struct slimfs_prefetch_progress *out)
{
	memset(out, 0, sizeof(*out));
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	out->mode = p->o.mode;
	out->total = p->nplan;
	out->done = p->done;
	out->total_bytes = p->total_bytes;
	out->done_bytes = p->done_bytes;
	out->failed = p->failed;
	out->readahead_jobs = p->ra_jobs;
	out->readahead_dropped = p->ra_dropped;
	out->finished = p->finished;
	out->start_ns = p->start_ns;
	out->end_ns = p->end_ns;
	pthread_mutex_unlock(&p->lock);
}

void slimfs_prefetch_wait(struct slimfs_prefetch *p)
{
	pthread_mutex_lock(&p->lock);
	while (!p->finished && !p->stop)
		pthread_cond_wait(&p->idle, &p->lock);
	pthread_mutex_unlock(&p->lock);
}
