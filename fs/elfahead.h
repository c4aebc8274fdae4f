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

/*
 * Sets up ELF-ahead for fs (fs->prefetch and fs->miss_ahead_bytes set): notes
 * are queued from now on. 0 or -errno. Its thread starts with
 * slimfs_elfahead_run, once the daemon has forked to the background (a
 * thread does not cross a fork).
 */
int slimfs_elfahead_new(struct slimfs_fs *fs, struct slimfs_elfahead **out);
/* Starts the thread that works the queue. 0 or -errno (then notes wait unheard). */
int slimfs_elfahead_run(struct slimfs_elfahead *e);
/* Stops the thread (after the job at hand) and frees e; NULL is a no-op. */
void slimfs_elfahead_stop(struct slimfs_elfahead *e);
/* Inode id's first bytes are an ELF header: queue it, once per file (never
 * blocks; dropped when the queue is full). */
void slimfs_elfahead_note(struct slimfs_elfahead *e, uint32_t id);

#endif
