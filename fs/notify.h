/* SPDX-License-Identifier: MIT */
/*
 * Page-cache filler (--page-cache-fill). A read answered from a decoded chunk
 * leaves the rest of that chunk in memory; one dedicated thread pushes it into
 * the kernel's page cache of the inode with fuse_lowlevel_notify_store(), so
 * the next read of those pages (a 4 KiB random read, most often) is a page
 * cache hit instead of a FUSE round trip.
 *
 * FUSE workers only queue work (bounded, duplicates coalesced, dropped when
 * full): they never wait for the filler. A queued job holds a reference to
 * its chunk in the memory cache, so eviction never frees bytes the filler is
 * about to store, and the cache only holds chunks that passed verification.
 * The filler stores whole pages only, plus the file's last page up to EOF,
 * and never the pages of the request just answered: the kernel keeps those
 * locked until it has processed the reply.
 */
#ifndef SLIMFS_NOTIFY_H
#define SLIMFS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "ops.h"

enum slimfs_fill_mode {
	SLIMFS_FILL_OFF,
	/* The rest of each decoded chunk a read used (never fetches anything). */
	SLIMFS_FILL_CHUNK,
	/* As chunk, and files of at most SLIMFS_FILL_FILE_MAX whole on their
	 * first read (decodes their other chunks; remote: only chunks in memory). */
	SLIMFS_FILL_FILE,
	/* The default: chunk when a connection watchdog runs (watchdog.h), off
	 * without one or when tracing. Resolved before the filler starts. */
	SLIMFS_FILL_AUTO,
};

#define SLIMFS_FILL_FILE_MAX (1u << 20)

/* "off", "chunk", "file", "auto": 0, or -EINVAL. */
int slimfs_fill_mode_parse(const char *s, enum slimfs_fill_mode *out);
const char *slimfs_fill_mode_name(enum slimfs_fill_mode m);

/* A piece of a read answered from a chunk: file bytes [file_off, file_off +
 * len) are data[0, len), valid while ref is held. */
struct slimfs_notify_piece {
	uint64_t file_off;
	uint32_t len;
	const uint8_t *data;
	struct slimfs_cache_entry *ref; /* owned by whoever holds the piece */
	bool whole_chunk;		/* data is all of ref's chunk (file_off: its start) */
};

struct slimfs_notify_stats {
	uint64_t stored_pages, stored_bytes;  /* pushed into the page cache */
	uint64_t dropped_jobs, dropped_pages; /* queue full: not stored */
	uint64_t coalesced;		      /* jobs already queued or just done */
	uint64_t failed;		      /* stores the kernel refused (inode gone) */
	uint64_t seam_pages;		      /* pages shared with a neighbour, stored */
	uint64_t seams_missed;		      /* ... not stored: its bytes not in memory */
};

struct slimfs_notify;

/*
 * Starts the filler thread for fs's mount, served by se, mounted at
 * mountpoint (absolute; used to abort the connection if the thread is stuck
 * at shutdown). 0, -ENOMEM or -errno of pthread_create.
 */
int slimfs_notify_start(struct slimfs_fs *fs, struct fuse_session *se, enum slimfs_fill_mode mode,
			const char *mountpoint, struct slimfs_notify **out);

/*
 * From op_read, after the reply to [off, off + len) of inode ino (file size
 * size) has been sent: queues what pieces[] hold beyond the request. Takes
 * the references it keeps (their ref becomes NULL); the caller puts the rest.
 */
void slimfs_notify_read(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size, uint64_t off,
			uint64_t len, struct slimfs_notify_piece *pieces, unsigned npieces);

/*
 * Push-ahead (ops.c): queues all of inode ino, a regular file of size bytes
 * (at most SLIMFS_FILL_FILE_MAX), decoding the chunks not in memory, unless
 * it was queued before. With now, a file of one extent (most small files) is
 * stored from the calling thread instead, before this returns (a reader is
 * about to want it). Any mode but off. 1 when queued or stored now, 0 when
 * before, -ENOBUFS when the queue is full, -EINVAL when the filler is off
 * (NULL) or the file too large.
 */
int slimfs_notify_file(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size, bool now);
/*
 * The walk that files are pushed ahead of has just read ino itself: queued
 * push-ahead jobs for ino and the files before it are dropped (counted in
 * dropped_jobs), so the filler catches up instead of storing what the
 * reader already has.
 */
void slimfs_notify_walk_at(struct slimfs_notify *n, fuse_ino_t ino);

void slimfs_notify_stats(struct slimfs_notify *n, struct slimfs_notify_stats *out);
enum slimfs_fill_mode slimfs_notify_mode(struct slimfs_notify *n);

/*
 * Stops and joins the filler, before the FUSE session goes away. A filler
 * blocked in the kernel on a page that a never-answered read keeps locked
 * (the loop stopped on a signal) is freed by aborting the FUSE connection
 * after a few seconds. Queued jobs are dropped; the counters stay readable.
 * 0, or -ETIMEDOUT when the thread could not be joined (it may still use n,
 * the session and the cache). NULL or a stopped filler is a no-op.
 */
int slimfs_notify_stop(struct slimfs_notify *n);
/* Stops (if need be) and frees; NULL is a no-op. */
void slimfs_notify_free(struct slimfs_notify *n);

#endif
