/* SPDX-License-Identifier: MIT */
/*
 * Statistics of a mount, served on a unix socket for `slimfs stats`. A
 * client connects, writes one line ("text", "json" or "prometheus") and
 * reads the answer until EOF. The socket's default path derives from the
 * mountpoint (slimfs_stats_socket_path); with --stats-socket elsewhere, a
 * symlink at the default path leads to it, so `stats MNT` always finds it.
 */
#ifndef SLIMFS_STATS_H
#define SLIMFS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "prefetch.h"

enum slimfs_stats_format {
	SLIMFS_STATS_TEXT,
	SLIMFS_STATS_JSON,
	SLIMFS_STATS_PROMETHEUS,
};

struct slimfs_idle;

struct slimfs_stats_src {
	struct slimfs_fs *fs;		  /* borrowed */
	struct slimfs_prefetch *prefetch; /* borrowed, may be NULL */
	struct slimfs_idle *idle;	  /* borrowed, may be NULL (--idle-release 0) */
	const char *mountpoint;		  /* absolute */
	uint64_t start_ns;
};

/* The runtime directory: /run/slimfs for root, else $XDG_RUNTIME_DIR/slimfs
 * or /tmp/slimfs-UID. */
int slimfs_stats_dir(char *out, size_t len);
/* Default socket of the mount at mountpoint (made absolute and canonical):
 * DIR/<mountpoint escaped as systemd-escape --path does>.sock. */
int slimfs_stats_socket_path(const char *mountpoint, char *out, size_t len);

/* Rendered statistics (malloc'd), or NULL. */
char *slimfs_stats_render(const struct slimfs_stats_src *src, enum slimfs_stats_format f);
/* The one-line summary logged at unmount (malloc'd), or NULL. */
char *slimfs_stats_summary(const struct slimfs_stats_src *src);

struct slimfs_stats_server;
/*
 * Listens on path (NULL: the default); src must outlive the server. Clients
 * wait in the listen queue until slimfs_stats_run() starts the thread that
 * answers them: a mount binds the socket before it is live (`slimfs stats`
 * right after `slimfs mount` finds it) and starts the thread after.
 */
int slimfs_stats_serve(const char *path, const struct slimfs_stats_src *src,
		       struct slimfs_stats_server **out);
/*
 * Also calls fn(ud) every period_ms (roughly: between clients) in the
 * server's thread, the daemon's one thread that wakes up on a clock (the idle
 * release's check). Set before slimfs_stats_run; NULL s is a no-op.
 */
void slimfs_stats_every(struct slimfs_stats_server *s, unsigned period_ms, void (*fn)(void *),
			void *ud);
/* Starts answering (once; NULL is a no-op). 0 or -errno. */
int slimfs_stats_run(struct slimfs_stats_server *s);
/* Stops serving, removes the socket (and the symlink). NULL is a no-op. */
void slimfs_stats_stop(struct slimfs_stats_server *s);

#endif
