/* SPDX-License-Identifier: MIT */
/*
 * An opened image: its backend (local file, HTTP, registry), its index held
 * in memory (mmap for local files) and checked, and simple uncached reads for
 * the CLI. The FUSE daemon layers its caches on top of slimfs_image_fetch().
 */
#ifndef SLIMFS_IMAGE_H
#define SLIMFS_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zstd.h>

#include "slimfs/fetch.h"
#include "slimfs/index.h"

struct slimfs_image {
	struct slimfs_backend *backend; /* owned */
	void *index_buf;		/* owned: mmap'd or malloc'd */
	size_t index_len;
	bool index_mapped;
	struct slimfs_index *idx;	/* owned */
	const struct slimfs_info *info; /* borrowed from idx */
	char *source;			/* owned: what was opened */
	/* The backend could not be opened: the index came from the cache dir and
	 * every backend read fails with -EIO (only cached chunks are served). */
	bool offline;
};

/*
 * Opens src (path or URL, see slimfs_backend_open), reads and checks the index.
 * When digest is not NULL, the index's SHA-256 must equal it (-EBADMSG).
 */
int slimfs_image_open(const char *src, const struct slimfs_fetch_opts *fo, const uint8_t *digest,
		      struct slimfs_image **out);
void slimfs_image_close(struct slimfs_image *img);

/*
 * As slimfs_image_open, with an index cache in cache_dir (may be NULL):
 * DIR/index/<sha256 of src> holds the index of a remote image once it has
 * been opened. When the backend cannot be opened (server gone) and a cached
 * index exists, that index is checked (its own checksums, and digest or the
 * digest an OCI reference pinned when it was cached) and the image opens
 * offline (img->offline).
 */
int slimfs_image_open_cached(const char *src, const struct slimfs_fetch_opts *fo,
			     const uint8_t *digest, const char *cache_dir,
			     struct slimfs_image **out);
/*
 * The same, but a fetched index is stored in cache_dir only by
 * slimfs_image_store_index(img, cache_dir), which the caller calls later:
 * the mount does once it is live (mkdir, write, rename: ~3 ms of a cold
 * remote mount's critical path). A no-op for a local or offline image.
 */
int slimfs_image_open_cached_deferred(const char *src, const struct slimfs_fetch_opts *fo,
				      const uint8_t *digest, const char *cache_dir,
				      struct slimfs_image **out);
void slimfs_image_store_index(struct slimfs_image *img, const char *cache_dir);

/* "100mbit", "1gbit", "8Mbps" (bits/s, decimal); "12.5MB/s", "500K", "2MiB/s",
 * "1000" (bytes/s; k/M/G decimal, Ki/Mi/Gi binary) -> bytes per second. */
int slimfs_parse_rate(const char *s, uint64_t *bytes_per_s);
/* "20ms", "1.5s", "500us", "2m"; a bare number is in unit_ns. -> nanoseconds */
int slimfs_parse_duration(const char *s, uint64_t unit_ns, uint64_t *ns);
/* Fetch option key ("timeout" in seconds, "retries", "rate", "rtt" in ms when
 * bare) = v into f; what names it in messages. 0, -EINVAL, -ENOENT (no such key). */
int slimfs_parse_fetch_opt(const char *what, const char *key, const char *v,
			   struct slimfs_fetch_opts *f);

/* Reads the compressed frame of chunk i (csize bytes) from the backend, unverified. */
int slimfs_image_fetch(struct slimfs_image *img, const struct slimfs_chunk *c, void *frame);

/* Per-thread scratch for slimfs_image_pread: a decoded-chunk slot and a zstd context. */
struct slimfs_reader {
	struct slimfs_image *img; /* borrowed */
	ZSTD_DCtx *dctx;
	uint8_t *frame, *plain; /* SLIMFS_CHUNK_MAX-sized buffers */
	size_t frame_cap;
	uint32_t cached;    /* chunk index in plain, UINT32_MAX when none */
	uint32_t plain_len; /* its decoded size */
};
int slimfs_reader_init(struct slimfs_reader *r, struct slimfs_image *img);
void slimfs_reader_fini(struct slimfs_reader *r);
/* Decoded chunk i (verified, *len bytes), valid until the next call. */
int slimfs_reader_chunk(struct slimfs_reader *r, uint32_t i, const uint8_t **plain, uint32_t *len);
/* File bytes [off, off + len) of ino (holes read as zeros); returns bytes read
 * (short only at EOF) or -errno (-EIO on a bad chunk). */
ssize_t slimfs_reader_pread(struct slimfs_reader *r, const struct slimfs_inode *ino, void *buf,
			    size_t len, uint64_t off);

#endif
