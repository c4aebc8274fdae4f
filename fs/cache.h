/* SPDX-License-Identifier: MIT */
/*
 * Bounded in-memory cache of decoded chunks, keyed by chunk index. Sharded
 * locks (none held while fetching or decoding), refcounted entries (eviction
 * never frees a buffer a reader holds) and single-flight: however many
 * readers want a chunk at once, one of them fetches it and the others wait
 * for its result or its error.
 *
 * Miss path: disk cache (if any) -> backend (slimfs_image_fetch) -> SHA-256
 * check of the frame + decompression + id check (slimfs_chunk_decode, one
 * ZSTD_DCtx per thread) -> disk cache store -> memory. A disk cache entry that
 * fails verification is removed and the chunk fetched again.
 *
 * Errors are not cached, with one bound: a chunk whose load just failed
 * answers that error for a short hold-off (1 s after a fetch error; after a
 * verification failure 1 s, doubling per failed refetch up to 30 s) instead
 * of being refetched by every request, and is logged at most once a minute.
 */
#ifndef SLIMFS_CACHE_H
#define SLIMFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diskcache.h"
#include "image.h"

struct slimfs_cache;
struct slimfs_cache_entry;

struct slimfs_cache_opts {
	uint64_t mem_bytes;	       /* bound on decoded bytes held (entries in use excepted) */
	struct slimfs_diskcache *disk; /* borrowed, may be NULL */
};

/* A snapshot of the counters. */
struct slimfs_cache_stats {
	uint64_t requests;	  /* slimfs_cache_get calls */
	uint64_t hits;		  /* found decoded in memory */
	uint64_t waits;		  /* found being loaded by another thread, waited */
	uint64_t misses;	  /* loads started */
	uint64_t fetches;	  /* backend reads */
	uint64_t bytes_fetched;	  /* compressed bytes read from the backend */
	uint64_t verified;	  /* frames that passed verification */
	uint64_t verify_failures; /* frames that did not (backend or disk) */
	uint64_t disk_hits, disk_misses, disk_stores;
	uint64_t evictions;		 /* memory entries dropped */
	uint64_t demoted;		 /* slimfs_cache_stored moved to the LRU end */
	uint64_t mem_bytes, mem_entries; /* held now */
	uint64_t runs;			 /* backend reads made by slimfs_cache_load */
	uint64_t coalesced;		 /* chunks that shared a read with another */
	uint64_t background;		 /* chunks loaded by prefetch or read-ahead */
	uint64_t background_bytes;	 /* their compressed bytes */
	uint64_t held_off;		 /* requests answered by a remembered error */
	uint64_t peek_hits;		 /* slimfs_cache_peek answered from a decoded chunk */
	uint64_t edge_hits;		 /* ... from the edges kept of an evicted one */
	uint64_t peek_misses;		 /* ... not at all */
	uint64_t frames_reused;		 /* frames not hashed again (local image, leased) */
};

int slimfs_cache_new(struct slimfs_image *img, const struct slimfs_cache_opts *o,
		     struct slimfs_cache **out);
/* Every reference must have been put back. */
void slimfs_cache_free(struct slimfs_cache *c);

/*
 * Decoded bytes of chunk i: *data (*len = usize bytes) stays valid until
 * slimfs_cache_put(c, *ref). 0, or -EBADMSG (verification failed), -EUCLEAN
 * (bad chunk record), -EIO and other -errno from the backend, -ENOMEM.
 */
int slimfs_cache_get(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry **ref,
		     const uint8_t **data, uint32_t *len);
void slimfs_cache_put(struct slimfs_cache *c, struct slimfs_cache_entry *ref);

void slimfs_cache_stats(struct slimfs_cache *c, struct slimfs_cache_stats *out);

enum {
	/* With a disk cache: store there and keep nothing in memory (prefetch all,
	 * pull); a chunk already on disk whose frame verifies is skipped. */
	SLIMFS_LOAD_DISK_ONLY = 1u << 0,
	/* On behalf of prefetch or read-ahead (counted as such). */
	SLIMFS_LOAD_BACKGROUND = 1u << 1,
	/* Chunks up to SLIMFS_LOAD_GAP_MAX bytes apart in the data area share a
	 * range request too (the bytes between are read and dropped). */
	SLIMFS_LOAD_GAPS = 1u << 2,
};

/*
 * The largest gap SLIMFS_LOAD_GAPS reads through. A request costs a round
 * trip, a gap its bytes: reading through pays while the gap is below the
 * link's bandwidth-delay product, 250 KB at 100 Mbit/s and 20 ms, 125 KB at
 * 1 Gbit/s and 1 ms.
 */
#define SLIMFS_LOAD_GAP_MAX (128u << 10)

/*
 * One rule for what shares a range request, for slimfs_cache_load and the
 * prefetch plan: a run of chunks that spans *span bytes and ends at end takes
 * the chunk [off, off + csize) when it starts at end or at most gap_max past
 * it, and the span stays within max_run. Adds the gap and the chunk to *span.
 */
static inline bool slimfs_run_extend(uint64_t *span, uint64_t end, uint64_t off, uint64_t csize,
				     uint64_t gap_max, uint64_t max_run)
{
	if (off < end || off - end > gap_max || *span + (off - end) + csize > max_run)
		return false;
	*span += (off - end) + csize;
	return true;
}

/*
 * Loads chunks[0, n) ahead of their use: chunks held in memory or being
 * loaded by another thread are skipped, the rest come from the disk cache or
 * from the backend, in as few reads as possible: chunks adjacent in the data
 * area (or, with SLIMFS_LOAD_GAPS, close to each other) share one range
 * request of up to max_run bytes. Each chunk is
 * verified; readers that want one meanwhile wait for it (single-flight).
 * Returns 0 when every chunk is (or was) available, else the first -errno;
 * *loaded (may be NULL) receives how many chunks this call loaded.
 */
int slimfs_cache_load(struct slimfs_cache *c, const uint32_t *chunks, size_t n, uint64_t max_run,
		      unsigned flags, size_t *loaded);

/*
 * The bytes of ref's chunk are all in the kernel's page cache now (the
 * page-cache filler stored them): a read of them will not come back here
 * while they stay there. If no read but the one that loaded it used the
 * chunk, it goes to the end of the LRU order, the first to be evicted.
 *
 * What that buys: fio's 4 KiB random reads with --invalidate=1 touch every
 * chunk once per pass over the file, in random order, each pass after the
 * page cache was dropped. With plain LRU each new chunk pushes out the oldest,
 * which this pass has not touched yet, so almost none survive until its next
 * touch (256 MiB file, 1437 chunks, 64M cache: 1.0 decode per chunk and pass).
 * Evicting the chunks read once (and stored) first keeps the chunks that were
 * read again: the cache holds a steady set that every pass finds there.
 */
void slimfs_cache_stored(struct slimfs_cache *c, struct slimfs_cache_entry *ref);

/* Whether chunk i is decoded in memory now or being loaded (a hint: no waiting). */
bool slimfs_cache_has(struct slimfs_cache *c, uint32_t i);
/* Whether chunk i is decoded in memory now, loaded (a hint: a get would not wait,
 * unless it is evicted meanwhile). */
bool slimfs_cache_ready(struct slimfs_cache *c, uint32_t i);

/*
 * Bytes kept of each end of every chunk decoded lately, after its entry was
 * evicted: the page a file shares between two chunks (chunk boundaries fall
 * anywhere in a page) needs the last bytes of one and the first bytes of the
 * next, and without them a read of that page decodes both chunks whole. They
 * take 1/SLIMFS_EDGE_SHARE of mem_bytes (the rest holds whole chunks), in a
 * table indexed by chunk index (the newest of the chunks that share a slot),
 * of at most one slot per chunk of the image.
 *
 * fio 4 KiB random reads of a 256 MiB file (1437 chunks of ~185 KiB),
 * --invalidate=1, 1 job, 5 s, default 64M, decodes per chunk and pass over
 * the file: 2.8 before seams were stored (notify.c), 1.15-1.3 with 1/8 here
 * (1024 slots; ~1000 shared pages a pass missed), 1.0 with 1/4 (a slot for
 * every chunk; 235 missed); whole chunks: 52M instead of 56M hold a fifth of
 * the file either way.
 */
#define SLIMFS_EDGE	  4096u
#define SLIMFS_EDGE_SHARE 4u

/*
 * Copies bytes [off, off + len) of chunk i into out if they are in memory
 * now: in its decoded entry, or within the first or last SLIMFS_EDGE bytes of
 * it kept since it was decoded. Never fetches, decodes or waits for a load;
 * what it copies passed verification like every chunk in the cache.
 * 0, or -ENOENT (not in memory), -EUCLEAN (beyond the chunk).
 */
int slimfs_cache_peek(struct slimfs_cache *c, uint32_t i, uint32_t off, uint32_t len, void *out);

/* What slimfs_cache_release gave back. */
struct slimfs_cache_release {
	uint64_t entries, bytes; /* decoded chunks dropped, their bytes */
	uint64_t kept;		 /* entries a reader held: left in place */
	uint64_t edge_bytes;	 /* the table of kept ends, emptied */
	uint64_t buffers;	 /* threads' decode buffers (frame + zstd context) freed */
	uint64_t buffer_bytes;	 /* ... their bytes */
	uint64_t busy_buffers;	 /* ... in use: left alone */
};

/*
 * Gives memory back while the mount is idle: drops every decoded chunk no
 * reader holds, empties the kept ends (SLIMFS_EDGE) and frees the decode
 * buffers of threads that are not decoding (each thread allocates its own
 * again at its next load). Safe at any time, concurrently with gets and
 * loads: chunks being loaded and buffers in use are left alone; what is
 * dropped is loaded again when next read. The freed heap is the caller's to
 * trim (malloc_trim).
 */
void slimfs_cache_release(struct slimfs_cache *c, struct slimfs_cache_release *out);

#endif
