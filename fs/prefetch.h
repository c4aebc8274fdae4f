/* SPDX-License-Identifier: MIT */
/*
 * Background fetching for a mount (and for `slimfs pull`): a few threads
 * that load, in order of priority, (1) read-ahead jobs queued by readers of
 * sequential files, (2) the image's PREFETCH section (the profile) in order,
 * and with SLIMFS_PREFETCH_ALL (3) every other chunk in data order; calls
 * (slimfs_prefetch_set_call) come before all of these. Work
 * goes through slimfs_cache_load, so chunks adjacent in the data area are
 * fetched as one large range request, each chunk is verified, and a reader
 * that needs a chunk being prefetched waits for it instead of fetching it
 * twice. Stopping (unmount) waits for the requests in flight.
 */
#ifndef SLIMFS_PREFETCH_H
#define SLIMFS_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"

enum slimfs_prefetch_mode {
	SLIMFS_PREFETCH_NONE,
	SLIMFS_PREFETCH_PROFILE,
	SLIMFS_PREFETCH_ALL,
};

struct slimfs_prefetch_opts {
	enum slimfs_prefetch_mode mode;
	unsigned threads; /* workers (default 2) */
	uint64_t max_run; /* bytes per range request (default 8 MiB) */
	bool disk_only;	  /* everything to the disk cache only (pull) */
	bool has_disk;	  /* a disk cache exists (else 'all' stops after the profile) */
	bool readahead;	  /* accept read-ahead jobs */
	bool deferred;	  /* the workers start at slimfs_prefetch_run (jobs wait) */
	/* chunk ids (16 bytes each) to prefetch instead of the image's list
	 * (--prefetch-profile); borrowed, used only by slimfs_prefetch_start */
	const uint8_t *profile_ids;
	size_t nprofile_ids;
};

struct slimfs_prefetch_progress {
	enum slimfs_prefetch_mode mode;
	uint64_t total, done;		  /* chunks planned, processed */
	uint64_t total_bytes, done_bytes; /* their compressed bytes */
	uint64_t failed;		  /* chunks that could not be loaded */
	uint64_t readahead_jobs, readahead_dropped;
	bool finished;		   /* the plan is done (read-ahead may go on) */
	uint64_t start_ns, end_ns; /* end_ns: when finished */
};

struct slimfs_prefetch;

int slimfs_prefetch_start(struct slimfs_cache *c, struct slimfs_image *img,
			  const struct slimfs_prefetch_opts *o, struct slimfs_prefetch **out);
/* Starts the workers of a deferred start (after the mount is live). 0 or -errno. */
int slimfs_prefetch_run(struct slimfs_prefetch *p);
/* Stops the workers (after their requests in flight) and frees p; NULL is a no-op. */
void slimfs_prefetch_stop(struct slimfs_prefetch *p);
/* Queues chunks[0, n) for loading in the background; dropped when the queue is full. */
void slimfs_prefetch_readahead(struct slimfs_prefetch *p, const uint32_t *chunks, size_t n);
/*
 * Queues chunks[0, n) that a reader is likely to want next (miss-ahead) ahead
 * of the read-ahead jobs, in order, as range requests of up to 256 KiB
 * compressed each, reading through small gaps; pieces that do not fit in
 * the queue are dropped.
 */
void slimfs_prefetch_miss_ahead(struct slimfs_prefetch *p, const uint32_t *chunks, size_t n);
/* Compressed bytes per request of a miss-ahead window: about what a round
 * trip costs at 100 Mbit/s + 20 ms. */
#define SLIMFS_MISS_AHEAD_PIECE (256ull << 10)
/*
 * A job kind for work that must not wait for the loads queued or in flight
 * and may queue some itself (ELF-ahead, elfahead.h): fn(ud, arg) for each
 * arg given to slimfs_prefetch_call, ahead of every other job, one at a
 * time. Set before slimfs_prefetch_run, which then starts one more worker:
 * loads still take at most opts.threads workers at a time, so a call starts
 * at once. Calls still queued at slimfs_prefetch_stop are dropped.
 */
typedef void slimfs_prefetch_fn(void *ud, uint32_t arg);
void slimfs_prefetch_set_call(struct slimfs_prefetch *p, slimfs_prefetch_fn *fn, void *ud);
/* Queues a call (never blocks; dropped when 32 wait, or with no fn or workers). */
void slimfs_prefetch_call(struct slimfs_prefetch *p, uint32_t arg);
/* Whether the plan starts with a profile (the image's or --prefetch-profile). */
bool slimfs_prefetch_profiled(const struct slimfs_prefetch *p);
void slimfs_prefetch_progress(struct slimfs_prefetch *p, struct slimfs_prefetch_progress *out);
/*
 * Whether the plan (the profile, or the whole image with --prefetch all) is
 * done. Until then readers do not guess (read-ahead, miss-ahead): what the
 * plan holds is on its way, and what it lacks the profile says the workload
 * does not read; a guess would only take the link from the plan.
 */
bool slimfs_prefetch_planned_done(struct slimfs_prefetch *p);
/*
 * Whether chunk is one of the profile's (the first part of the plan). A read
 * of such chunks only is one the profile foresaw: readers do not guess from
 * it after the plan either, since the profile also says what the workload
 * reads next (its cold neighbours it does not).
 */
bool slimfs_prefetch_in_profile(const struct slimfs_prefetch *p, uint32_t chunk);
/* Blocks until the plan is done (or the prefetcher is stopped). */
void slimfs_prefetch_wait(struct slimfs_prefetch *p);

const char *slimfs_prefetch_mode_name(enum slimfs_prefetch_mode m);

#endif
