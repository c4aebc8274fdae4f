/* SPDX-License-Identifier: MIT */
/*
 * ELF-ahead (remote images, no profile): the first read of an ELF file's
 * header queues the file for the prefetch workers, which parse it ahead of
 * their other jobs and fetch ahead the libraries it will load (PT_INTERP and
 * DT_NEEDED, recursively, found the way ld.so finds them inside the image:
 * elfclosure.h), so that ld.so, which opens them one after another, finds
 * them in memory instead of waiting a round trip for each.
 */
#ifndef SLIMFS_ELFAHEAD_H
#define SLIMFS_ELFAHEAD_H

#include <stdint.h>

struct slimfs_fs;

/* Turns ELF-ahead on for fs (fs->prefetch, not yet running, and
 * fs->miss_ahead_bytes set). 0 or -ENOMEM. */
int slimfs_elfahead_enable(struct slimfs_fs *fs);
/* Inode id's first bytes are an ELF header: queue it, once per file (never
 * blocks; dropped when the queue is full). */
void slimfs_elfahead_note(struct slimfs_fs *fs, uint32_t id);

#endif
