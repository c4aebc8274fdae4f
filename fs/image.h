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
	struct slimfs_index *idx; /* owned */
	const struct slimfs_info *info; /* borrowed from idx */
	char *source;			/* owned: what was opened */
};

/*
 * Opens src (path or URL, see slimfs_backend_open), reads and checks the index.
 * When digest is not NULL, the index's SHA-256 must equal it (-EBADMSG).
 */
int slimfs_image_open(const char *src, const struct slimfs_fetch_opts *fo, const uint8_t *digest,
		      struct slimfs_image **out);
void slimfs_image_close(struct slimfs_image *img);

/* Reads the compressed frame of chunk i (csize bytes) from the backend, unverified. */
int slimfs_image_fetch(struct slimfs_image *img, const struct slimfs_chunk *c, void *frame);

/* Per-thread scratch for slimfs_image_pread: a decoded-chunk slot and a zstd context. */
struct slimfs_reader {
	struct slimfs_image *img; /* borrowed */
	ZSTD_DCtx *dctx;
	uint8_t *frame, *plain; /* SLIMFS_CHUNK_MAX-sized buffers */
	size_t frame_cap;
	uint32_t cached; /* chunk index in plain, UINT32_MAX when none */
};
int slimfs_reader_init(struct slimfs_reader *r, struct slimfs_image *img);
void slimfs_reader_fini(struct slimfs_reader *r);
/* Decoded chunk i (verified), valid until the next call. */
int slimfs_reader_chunk(struct slimfs_reader *r, uint32_t i, const uint8_t **plain);
/* File bytes [off, off + len) of ino (holes read as zeros); returns bytes read
 * (short only at EOF) or -errno (-EIO on a bad chunk). */
ssize_t slimfs_reader_pread(struct slimfs_reader *r, const struct slimfs_inode *ino, void *buf,
			    size_t len, uint64_t off);

#endif
