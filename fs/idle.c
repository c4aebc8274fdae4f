// SPDX-License-Identifier: MIT
/* Idle release: give memory back after a spell without work (see idle.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "slimfs/util.h"
#include "idle.h"

/* Ticks: often enough that a release comes within a quarter of after_ns of
 * being due and the heap is advised for huge pages again within a second of
 * the first work after it (the refill meanwhile takes 4 KiB pages), rarely
 * enough to cost nothing (a wake-up a second: a poll timeout and 32 locks). */
#define PERIOD_MIN_MS 100u
#define PERIOD_MAX_MS 1000u

struct slimfs_idle {
	struct slimfs_idle_opts o;
	uint64_t since_ns;    /* last tick that saw activity */
	uint64_t work;	      /* the cache's counters at the last tick */
	uint64_t loads;	      /* chunks loaded (cache misses) by the last release */
	bool released;	      /* in this idle spell already */
	bool trimmed;	      /* a release ran, no work seen since (wake pending) */
	pthread_mutex_t lock; /* st: ticks write, stats read */
	struct slimfs_idle_stats st;
};

int slimfs_idle_new(const struct slimfs_idle_opts *o, struct slimfs_idle **out)
{
	struct slimfs_idle *d;

	if (!o->after_ns || !o->fs)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->o = *o;
	d->since_ns = slimfs_now_ns();
	pthread_mutex_init(&d->lock, NULL);
	*out = d;
	return 0;
}

void slimfs_idle_free(struct slimfs_idle *d)
{
	if (!d)
		return;
	pthread_mutex_destroy(&d->lock);
	free(d);
}

unsigned slimfs_idle_period_ms(const struct slimfs_idle *d)
{
	uint64_t ms = d->o.after_ns / 4 / 1000000;

	return (unsigned)MIN(MAX(ms, (uint64_t)PERIOD_MIN_MS), (uint64_t)PERIOD_MAX_MS);
}

uint64_t slimfs_rss_anon(void)
{
	unsigned long long size, resident, shared;
	FILE *f = fopen("/proc/self/statm", "re");
	int n;

	if (!f)
		return 0;
	n = fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
	fclose(f);
	if (n != 3 || shared > resident)
		return 0;
	/* resident minus file-backed and shared memory: RssAnon */
	return (uint64_t)(resident - shared) * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* What changes whenever a chunk is asked for, loaded or looked at, by a
 * request or by background work (prefetch, read-ahead, the filler). */
static uint64_t cache_work(struct slimfs_cache *c, uint64_t *loads)
{
	struct slimfs_cache_stats cs;

	slimfs_cache_stats(c, &cs);
	*loads = cs.misses;
	return cs.requests + cs.misses + cs.peek_hits + cs.edge_hits + cs.peek_misses;
}

static void release(struct slimfs_idle *d, uint64_t now, uint64_t idle_ns)
{
	struct slimfs_cache_release cr;
	uint64_t before = slimfs_rss_anon(), after, end;
	char b1[32], b2[32], b3[32];

	slimfs_cache_release(d->o.fs->cache, &cr);
	if (d->o.trim)
		d->o.trim(d->o.ud);
	d->trimmed = true;
	after = slimfs_rss_anon();
	end = slimfs_now_ns();
	pthread_mutex_lock(&d->lock);
	d->st.releases++;
	d->st.last_bytes = before > after ? before - after : 0;
	d->st.last_chunk_bytes = cr.bytes;
	d->st.last_rss_anon = after;
	d->st.last_ns = end;
	d->st.last_duration_ns = end - now;
	pthread_mutex_unlock(&d->lock);
	log_info("idle for %.1fs: released %s (%llu chunks, %llu decode buffers%s%s), "
		 "anonymous memory %s -> %s in %.1f ms",
		 (double)idle_ns / 1e9, slimfs_fmt_bytes(d->st.last_bytes, b1, sizeof(b1)),
		 (unsigned long long)cr.entries, (unsigned long long)cr.buffers,
		 cr.kept ? ", chunks in use kept" : "",
		 cr.busy_buffers ? ", buffers in use kept" : "",
		 slimfs_fmt_bytes(before, b2, sizeof(b2)), slimfs_fmt_bytes(after, b3, sizeof(b3)),
		 (double)(end - now) / 1e6);
}

void slimfs_idle_tick(void *ud)
{
	struct slimfs_idle *d = ud;
	uint64_t now = slimfs_now_ns(), loads, work = cache_work(d->o.fs->cache, &loads);
	bool active = atomic_exchange_explicit(&d->o.fs->active, false, memory_order_relaxed);

	if (work != d->work)
		active = true;
	d->work = work;
	/* A plan still being fetched is work, if waiting on a slow source. */
	if (d->o.prefetch && !slimfs_prefetch_planned_done(d->o.prefetch))
		active = true;
	if (active) {
		if (d->trimmed && d->o.wake)
			d->o.wake(d->o.ud);
		d->trimmed = false;
		d->since_ns = now;
		d->released = false;
		return;
	}
	if (d->released || now - d->since_ns < d->o.after_ns)
		return;
	d->released = true;
	/* Nothing loaded since the last release (or the mount): nothing to give. */
	if (loads == d->loads)
		return;
	d->loads = loads;
	release(d, now, now - d->since_ns);
}

void slimfs_idle_stats(struct slimfs_idle *d, struct slimfs_idle_stats *out)
{
	if (!d) {
		memset(out, 0, sizeof(*out));
		return;
	}
	pthread_mutex_lock(&d->lock);
	*out = d->st;
	pthread_mutex_unlock(&d->lock);
}
