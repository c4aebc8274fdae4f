/* SPDX-License-Identifier: MIT */
/*
 * Idle release (--idle-release): a mount that has served no FUSE request and
 * done no background work for a while gives its memory back. The decoded
 * chunks go (their bytes stay in the kernel's page cache and, for remote
 * images, in the disk cache), so do the kept chunk ends and the threads'
 * decode buffers (slimfs_cache_release), and the freed heap returns to the
 * kernel (the caller's trim; its wake undoes what must not stay while
 * working). The next request simply loads again.
 *
 * No thread of its own: slimfs_idle_tick runs in the stats thread every
 * slimfs_idle_period_ms. The request path pays one relaxed store (and only
 * when the flag was clear: slimfs_fs_touch); background work shows as change
 * in the cache's counters, a prefetch plan not done yet counts as work.
 */
#ifndef SLIMFS_IDLE_H
#define SLIMFS_IDLE_H

#include <stdint.h>

#include "ops.h"
#include "prefetch.h"

struct slimfs_idle_opts {
	uint64_t after_ns;		  /* idle this long: release (> 0) */
	struct slimfs_fs *fs;		  /* borrowed */
	struct slimfs_prefetch *prefetch; /* borrowed, may be NULL */
	/* After the cache's release: gives the freed heap back (may be NULL). */
	void (*trim)(void *ud);
	/* At the first tick that sees work after a release (may be NULL). */
	void (*wake)(void *ud);
	void *ud;
};

/* A snapshot of what the releases did. */
struct slimfs_idle_stats {
	uint64_t releases;	   /* how many */
	uint64_t last_bytes;	   /* the daemon's anonymous memory the last one gave back */
	uint64_t last_chunk_bytes; /* ... of it decoded chunks dropped */
	uint64_t last_rss_anon;	   /* anonymous memory after the last one, bytes */
	uint64_t last_ns;	   /* when (slimfs_now_ns), 0: never */
	uint64_t last_duration_ns; /* how long the last one took */
};

struct slimfs_idle;

int slimfs_idle_new(const struct slimfs_idle_opts *o, struct slimfs_idle **out);
void slimfs_idle_free(struct slimfs_idle *d);
/* How often slimfs_idle_tick should run. */
unsigned slimfs_idle_period_ms(const struct slimfs_idle *d);
/* Checks for activity since the last tick, releases once idle long enough
 * (once per idle spell). ud: the struct slimfs_idle. */
void slimfs_idle_tick(void *ud);
/* NULL gives zeros. */
void slimfs_idle_stats(struct slimfs_idle *d, struct slimfs_idle_stats *out);
/* The calling process's anonymous resident memory (bytes), 0 if unknown. */
uint64_t slimfs_rss_anon(void);

#endif
