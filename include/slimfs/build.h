/* SPDX-License-Identifier: MIT */
/* Builder API: sources (directories, tar layers, OCI layouts, docker-save
 * tarballs) -> one slimfs image file. */
#ifndef SLIMFS_BUILD_H
#define SLIMFS_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLIMFS_DEFAULT_ZSTD_LEVEL 3
/*
 * zstd level of the packs a profile puts first (its byte ranges and small
 * files), which every cold start fetches: see --prefetch-level in
 * cmd_build.c and FORMAT.md for what it buys.
 */
#define SLIMFS_DEFAULT_PREFETCH_LEVEL 15
#define SLIMFS_DEFAULT_CDC_MIN	      (32u << 10)
#define SLIMFS_DEFAULT_CDC_AVG	      (128u << 10)
#define SLIMFS_DEFAULT_CDC_MAX	      (512u << 10)
#define SLIMFS_DEFAULT_SMALL_FILE_MAX (64u << 10)

struct slimfs_view_spec {
	const char *name;	/* "minimal", ... */
	const char *allow_file; /* allow-list file, or NULL (entrypoint closure only) */
};

/* Progress callback: called from the building thread, at most ~10 times a second. */
struct slimfs_progress {
	const char *phase;		  /* "reading", "chunking", "compressing", "writing" */
	uint64_t bytes_done, bytes_total; /* total 0 when unknown */
	uint64_t files_done, files_total;
};
typedef void (*slimfs_progress_fn)(const struct slimfs_progress *p, void *ud);

struct slimfs_build_opts {
	const char *ref;      /* OCI layout: tag (org.opencontainers.image.ref.name) */
	const char *platform; /* "linux/amd64" default */
	int zstd_level;
	int prefetch_level; /* packs of a profile's ranges and small files */
	uint32_t cdc_min, cdc_avg, cdc_max;
	uint32_t small_file_max;
	unsigned threads; /* 0: one per online CPU */
	/* views, closure and profile (allow-lists, ELF closure) */
	struct slimfs_view_spec views[32];
	unsigned nviews;
	const char *entrypoint; /* NULL: from the OCI config */
	bool prune;
	const char *profile; /* profile file: chunk order first in data, prefetch list */
	bool index_plain;    /* store the index uncompressed (format 1.0 layout) */
	/* directory of the spill file, an unlinked temporary file where the
	 * compressed frames wait for their final order (about the image's size);
	 * NULL: $TMPDIR, else /var/tmp. `slimfs build` passes the output's
	 * directory unless --spill-dir is given. */
	const char *spill_dir;
	slimfs_progress_fn progress;
	void *progress_ud;
};

void slimfs_build_opts_init(struct slimfs_build_opts *o);

struct slimfs_build_stats {
	uint64_t entries, files, total_bytes; /* apparent sizes */
	uint64_t chunks, chunk_refs, unique_bytes, compressed_bytes;
	uint64_t index_size, image_size; /* index_size: stored (compressed) */
	uint64_t index_plain_size;
	uint8_t index_digest[32];
};

/*
 * Builds an image from sources (layers in order) and writes it to out_fd
 * (positioned at 0, regular file, empty). The caller does the temporary
 * file and the rename. Errors are logged with where they happened and
 * returned as -errno.
 */
int slimfs_build(const struct slimfs_build_opts *o, const char *const *sources, size_t nsources,
		 int out_fd, struct slimfs_build_stats *stats);

#endif
