/* SPDX-License-Identifier: MIT */
/*
 * `mount --trace FILE`: records, per /work/notes/trace-format.md, each path
 * the first time it is looked up (found, hidden or missing), opened or read,
 * and each chunk the first time a reader needs it, with microseconds since
 * the mount. Buffered, flushed every second and at close. Thread-safe; the
 * FUSE side calls these only when tracing (one branch when off).
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

/* Creates (truncates) path and writes the header. 0 or -errno. */
int slimfs_trace_open(const char *path, const struct slimfs_index *idx, const char *view_name,
		      uint64_t start_ns, struct slimfs_trace **out);
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

/* Writes the path of inode id (from the root, "/" for the root) into buf;
 * bytes needed without the NUL, or -errno. Also used for hidden-path hints. */
int slimfs_index_path(const struct slimfs_index *idx, uint32_t id, char *buf, size_t len);

#endif
