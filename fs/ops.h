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

#include "bits.h"
#include "cache.h"
#include "image.h"
#include "prefetch.h"
#include "trace.h"

/* Hidden-path hints kept for `slimfs stats` (the last few, newest last). */
#define SLIMFS_HINTS 8
/* Sequential-read detection slots (hashed by inode). */
#define SLIMFS_RA_SLOTS 64

struct slimfs_ra_slot {
	pthread_mutex_t lock;
	uint64_t ino, next_off, ra_end;
	unsigned streak;
};

struct slimfs_notify;

struct slimfs_fs_stats {
	_Atomic uint64_t lookups, negative_lookups;
	_Atomic uint64_t hidden_by_view; /* lookups of entries the view hides */
	_Atomic uint64_t reads, read_bytes;
	_Atomic uint64_t io_errors;	  /* corruption turned into EIO */
	_Atomic uint64_t read_errors;	  /* reads answered with an error */
	_Atomic uint64_t hidden_paths;	  /* distinct inodes hidden by the view and looked up */
	_Atomic uint64_t readaheads;	  /* read-ahead jobs queued */
	_Atomic uint64_t pushed_files;	  /* files queued whole by push-ahead */
	_Atomic uint64_t elf_ahead_files; /* libraries fetched ahead by ELF-ahead */
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
	/* Capabilities op_init settled on (want); with inherit_want, the ones a
	 * previous daemon negotiated on this connection (a takeover) instead. */
	bool inherit_want;
	unsigned want;
	struct slimfs_fs_stats stats;
	slimfs_bits *hidden_logged; /* one bit per dirent: "hidden by view" said */
	/* Optional parts, set by the caller after slimfs_fs_init (NULL: off). */
	struct slimfs_trace *trace;	  /* borrowed: --trace */
	struct slimfs_prefetch *prefetch; /* borrowed: read-ahead goes there */
	bool coalesce;			  /* one range request for a read's adjacent chunks */
	uint64_t readahead_bytes;	  /* window of sequential read-ahead, 0: off */
	int64_t kernel_readahead;	  /* FUSE max_readahead, bytes; < 0: the kernel's */
	uint64_t miss_ahead_bytes;	  /* chunks fetched after a miss (remote), 0: off */
	struct slimfs_notify *notify;	  /* borrowed: page-cache filler */
	/* Owned: libraries ahead (elfahead.h), one bit per inode queued or examined; NULL: off. */
	slimfs_bits *elf_seen;
	pthread_mutex_t hints_lock;
	char *hints[SLIMFS_HINTS]; /* owned, under hints_lock */
	unsigned hints_next;
	_Atomic unsigned last_error_log; /* second of the last EIO log line */
	_Atomic uint64_t errors_not_logged;
	struct slimfs_ra_slot ra[SLIMFS_RA_SLOTS];
	/* Read-ahead in data order: misses that walk the data area forward. */
	pthread_mutex_t data_ra_lock;
	uint32_t data_last_miss, data_ra_end;
	unsigned data_streak;
	/* One bit per inode: handed to the kernel (lookup, readdirplus). */
	slimfs_bits *announced;
	/* Push-ahead of whole files into the page cache (ops.c, push_ahead). */
	pthread_mutex_t push_lock;
	uint32_t push_last, push_end; /* last first read; first inode not pushed */
	uint64_t push_window;	      /* bytes; 0: no walk seen */
	/* Per directory inode: its regular files' bytes + 1, capped (miss_ahead_dir);
	 * 0: not counted yet. */
	_Atomic uint64_t *dir_bytes;
	/* Set by every request (slimfs_fs_touch), cleared by the idle check (idle.h). */
	_Atomic bool active;
};

/* A FUSE request came: the mount is not idle. One relaxed load per request,
 * and a store only when the idle check cleared the flag (every few seconds):
 * the cache line stays shared between the workers' cores. */
static inline void slimfs_fs_touch(struct slimfs_fs *fs)
{
	if (!atomic_load_explicit(&fs->active, memory_order_relaxed))
		atomic_store_explicit(&fs->active, true, memory_order_relaxed);
}

/* Copies the hidden-path hints (oldest first) into out[]; returns how many.
 * The strings are the caller's to free. */
unsigned slimfs_fs_hints(struct slimfs_fs *fs, char *out[SLIMFS_HINTS]);

/* Fills fs for img, cache and view; 0 or -ENOMEM. */
int slimfs_fs_init(struct slimfs_fs *fs, struct slimfs_image *img, struct slimfs_cache *cache,
		   uint32_t view, const char *view_name);
void slimfs_fs_fini(struct slimfs_fs *fs);

/* Bytes [off, off + len) of regular file in (within its size) into buf, through
 * the chunk cache (fetching what is missing). 0 or -errno. */
int slimfs_fs_read_file(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t off,
			size_t len, void *buf);
/* The chunks of in from its start that are not in memory (into out, at most
 * max), as a miss at its start would fetch them ahead: up to MIN(budget,
 * twice fs->miss_ahead_bytes) compressed bytes, counting the chunks present
 * (*bytes). Returns how many. */
size_t slimfs_fs_window(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t budget,
			uint32_t *out, size_t max, uint64_t *bytes);

/* Whether a read of ino's bytes [off, off + size) would be answered without
 * waiting: their chunks decoded in memory, or an error (a hint; a chunk may be
 * evicted meanwhile). */
bool slimfs_fs_read_ready(struct slimfs_fs *fs, fuse_ino_t ino, uint64_t off, uint64_t size);

extern const struct fuse_lowlevel_ops slimfs_fuse_ops;

#endif
