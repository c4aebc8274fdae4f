/* SPDX-License-Identifier: MIT */
/*
 * The FUSE side of a mount: fuse_lowlevel_ops over an opened image, its
 * chunk cache and a view. fuse_ino_t = inode id + 1. Every op that takes an
 * inode checks that it is in the view; lookup and readdir hide what the view
 * leaves out.
 */
#ifndef SLIMFS_OPS_H
#define SLIMFS_OPS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "image.h"

struct slimfs_fs_stats {
	_Atomic uint64_t lookups, negative_lookups;
	_Atomic uint64_t hidden_by_view; /* lookups of entries the view hides */
	_Atomic uint64_t reads, read_bytes;
	_Atomic uint64_t io_errors; /* corruption turned into EIO */
};

struct slimfs_fs {
	struct slimfs_image *img; /* borrowed */
	const struct slimfs_index *idx;
	const struct slimfs_info *info;
	struct slimfs_cache *cache; /* borrowed */
	uint32_t view;		    /* view bit, or SLIMFS_VIEW_NONE (full) */
	const char *view_name;	    /* borrowed */
	double timeout;		    /* entry and attr timeouts, seconds */
	/* Reply ENOSYS to open/opendir (the kernel then skips them). */
	bool no_open;
	/* Called once the kernel's INIT has been answered (mount live). */
	void (*on_ready)(void *ud);
	void *ready_ud;
	struct slimfs_fs_stats stats;
	_Atomic uint8_t *hidden_logged; /* one bit per inode: "hidden by view" said */
};

/* Fills fs for img, cache and view; 0 or -ENOMEM. */
int slimfs_fs_init(struct slimfs_fs *fs, struct slimfs_image *img, struct slimfs_cache *cache,
		   uint32_t view, const char *view_name);
void slimfs_fs_fini(struct slimfs_fs *fs);

extern const struct fuse_lowlevel_ops slimfs_fuse_ops;

#endif
