/* SPDX-License-Identifier: MIT */
/*
 * `mount --trace FILE`: records, per index/FORMAT.md ("Traces and profiles"),
 * each path the first time it is looked up (found, hidden or missing), opened
 * or read, each chunk the first time a reader needs it, and each byte range
 * the kernel reads of a file (the pages no earlier read asked for), with
 * microseconds since the mount. Buffered, flushed every second and at close.
 * Thread-safe; the FUSE side calls these only when tracing (one branch when
 * off).
 */
#ifndef SLIMFS_TRACE_H
#define SLIMFS_TRACE_H

#include <stdint.h>

#include "slimfs/index.h"

struct slimfs_trace;

enum slimfs_trace_kind {
	SLIMFS_TRACE_FOUND,
	SLIMFS_TRACE_HIDDEN,
	SLIMFS_TRACE_MISSING,
};

/*
 * Creates (truncates) path and writes the header, which names the image, the
 * view and kernel_readahead (the FUSE max_readahead asked for, in bytes; < 0:
 * the kernel's default). 0 or -errno.
 */
int slimfs_trace_open(const char *path, const struct slimfs_index *idx, const char *view_name,
		      int64_t kernel_readahead, uint64_t start_ns, struct slimfs_trace **out);
/*
 * Starts the thread that flushes the trace every second, so that it can be
 * read while the mount lives; once the daemon has forked to the background (a
 * thread does not cross a fork). 0 or -errno: the trace is then written when
 * its buffer fills and at close.
 */
int slimfs_trace_run(struct slimfs_trace *t);
/* Flushes and closes; 0 or the first write error. NULL is a no-op. */
int slimfs_trace_close(struct slimfs_trace *t);

/* A lookup of name in directory parent (inode id); child is the entry's inode
 * id (ignored for SLIMFS_TRACE_MISSING). */
void slimfs_trace_lookup(struct slimfs_trace *t, uint32_t parent, const char *name, uint32_t child,
			 enum slimfs_trace_kind kind);
/* Inode id opened or read. */
void slimfs_trace_inode(struct slimfs_trace *t, uint32_t id);
/* Chunk index read on behalf of a reader. */
void slimfs_trace_chunk(struct slimfs_trace *t, uint32_t chunk);
/*
 * The kernel read bytes [off, off + len) of inode id, a file of size bytes:
 * writes the pages of the range no earlier read touched, as R records (one
 * per run of such pages, clipped to the range). Lock-free when nothing is new.
 */
void slimfs_trace_read(struct slimfs_trace *t, uint32_t id, uint64_t size, uint64_t off,
		       uint64_t len);

/* Writes the path of inode id (from the root, "/" for the root) into buf;
 * bytes needed without the NUL, or -errno. Also used for hidden-path hints. */
int slimfs_index_path(const struct slimfs_index *idx, uint32_t id, char *buf, size_t len);

#endif
