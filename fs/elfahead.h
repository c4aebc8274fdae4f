/* SPDX-License-Identifier: MIT */
/*
 * ELF-ahead (remote images, no profile): the first read of an ELF file's
 * header queues the file for a background thread that parses it and fetches
 * ahead the libraries it will load (PT_INTERP and DT_NEEDED, recursively,
 * found the way ld.so finds them inside the image: elfclosure.h), so that
 * ld.so, which opens them one after another, finds them in memory instead of
 * waiting a round trip for each.
 */
#ifndef SLIMFS_ELFAHEAD_H
#define SLIMFS_ELFAHEAD_H

#include <stdint.h>

struct slimfs_fs;
struct slimfs_elfahead;

/* Starts the thread for fs (fs->prefetch and fs->miss_ahead_bytes set). 0 or -errno. */
int slimfs_elfahead_start(struct slimfs_fs *fs, struct slimfs_elfahead **out);
/* Stops the thread (after the job at hand) and frees e; NULL is a no-op. */
void slimfs_elfahead_stop(struct slimfs_elfahead *e);
/* Inode id's first bytes are an ELF header: queue it, once per file (never
 * blocks; dropped when the queue is full). */
void slimfs_elfahead_note(struct slimfs_elfahead *e, uint32_t id);

#endif
