/* SPDX-License-Identifier: MIT */
/*
 * Persistent chunk cache shared by every mount on the host: compressed
 * frames stored under DIR/chunks/ab/<64 hex> by their SHA-256. The key is
 * the strong digest, so one image cannot plant bytes that another image's
 * mount reads; callers still verify every hit against the chunk they asked
 * for (and remove a failing entry). Entries are written to an unnamed or
 * temporary file and linked/renamed into place, so a crash leaves either a
 * whole entry or none. The cache is bounded: when the bytes it holds pass
 * max_bytes, the least recently used entries (mtime, touched on every hit)
 * are removed by one thread at a time.
 */
#ifndef SLIMFS_DISKCACHE_H
#define SLIMFS_DISKCACHE_H

#include <stddef.h>
#include <stdint.h>

struct slimfs_diskcache;

/* Creates DIR/chunks if needed. 0 or -errno. */
int slimfs_diskcache_open(const char *dir, uint64_t max_bytes, struct slimfs_diskcache **out);
/* Sums what the cache holds, in the background (a mount: once it is live, a
 * walk of 256 directories would compete with its set-up); until then the
 * bound is not enforced. */
void slimfs_diskcache_scan(struct slimfs_diskcache *dc);
void slimfs_diskcache_free(struct slimfs_diskcache *dc);

/* Reads the entry for sha256 into buf; it must be exactly len bytes.
 * 0, -ENOENT (absent), -EUCLEAN (wrong size: the entry is removed), -errno. */
int slimfs_diskcache_get(struct slimfs_diskcache *dc, const uint8_t sha256[32], void *buf,
			 size_t len);
/* Stores buf[0, len) as the entry for sha256 (already verified by the caller). */
int slimfs_diskcache_put(struct slimfs_diskcache *dc, const uint8_t sha256[32], const void *buf,
			 size_t len);
/* Removes the entry (a failed verification). 0 or -errno (-ENOENT is 0). */
int slimfs_diskcache_remove(struct slimfs_diskcache *dc, const uint8_t sha256[32]);

/* Bytes the cache holds as far as this process knows (rescanned on eviction). */
uint64_t slimfs_diskcache_bytes(struct slimfs_diskcache *dc);
/* Entries removed by eviction since open. */
uint64_t slimfs_diskcache_evictions(struct slimfs_diskcache *dc);

#endif
