/* SPDX-License-Identifier: MIT */
/*
 * The daemon's request loop, and the handover of a live mount to a new
 * daemon (`slimfs restart`, `slimfs mount --takeover`).
 *
 * The loop: N workers, each reads a request from /dev/fuse and answers it.
 * A stop lets every worker finish the request it holds and read no more
 * (SIGUSR1, installed without SA_RESTART, interrupts a blocking read), so no
 * request is lost between two daemons.
 *
 * The handover: each daemon listens on a control socket next to its stats
 * socket (same path, ".ctl" for ".sock"; owner only). A new daemon that has
 * opened the same image (same index digest: inode numbers are index ids)
 * asks "TAKEOVER"; the old one stops its workers and sends the kernel's
 * FUSE_INIT request it answered, the capabilities it negotiated, and the
 * /dev/fuse descriptor (SCM_RIGHTS). The new daemon replays that INIT into
 * its own session (the kernel rejects the reply harmlessly: it sends INIT
 * once per connection), starts its workers and says "SERVING"; the old one
 * then exits without unmounting. Until "SERVING", a failure on either side
 * leaves the old daemon serving. Nothing else is transferred: slimfs keeps no
 * per-inode or per-open state towards the kernel.
 */
#ifndef SLIMFS_TAKEOVER_H
#define SLIMFS_TAKEOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "ops.h"

/* What `slimfs restart` needs to start the same daemon again. */
struct slimfs_daemon_info {
	const char *cwd; /* the first daemon's working directory */
	bool helper;	 /* argv is mount.slimfs's, else slimfs mount's */
	int argc;	 /* arguments after the command name */
	char *const *argv;
};

struct slimfs_serve_opts {
	struct fuse_session *se;
	unsigned threads;
	/* Started by slimfs_serve_start (0: all): the mount needs one to come
	 * live; slimfs_serve_more starts the rest. */
	unsigned first_threads;
	/* None started: the caller answers INIT with slimfs_serve_init. */
	bool caller_inits;
	const char *ctl_path; /* slimfs_ctl_path of the mountpoint */
	/* the image's index: its digest (computed when first asked for) names it */
	const struct slimfs_index *idx;
	const char *no_handover; /* why a handover is refused, or NULL */
	const unsigned *want;	 /* capabilities op_init settled on */
	/* A leader answers a read itself when slimfs_fs_read_ready says it
	 * need not wait (NULL: every read is handed to another worker). */
	struct slimfs_fs *fs;
	const struct slimfs_daemon_info *info;
	/* Around a handover: stop what two daemons must not both run (the
	 * stats socket), and start it again if the handover fails. */
	void (*pause)(void *ud);
	void (*resume)(void *ud);
	void *ud;
};

enum slimfs_serve_end {
	SLIMFS_SERVE_UNMOUNTED,	  /* the kernel ended the connection */
	SLIMFS_SERVE_STOPPED,	  /* SIGTERM, SIGINT, SIGHUP */
	SLIMFS_SERVE_HANDED_OVER, /* a new daemon serves the mount */
	SLIMFS_SERVE_FAILED,
};

struct slimfs_serve;
struct slimfs_takeover;

/* The control socket of the mount at mountpoint. 0 or -errno. */
int slimfs_ctl_path(const char *mountpoint, char *out, size_t len);

/*
 * New daemon, before anything touches the mount: asks the daemon behind
 * ctl_path for the mount. On success the old daemon has stopped reading
 * requests: *fd is the /dev/fuse descriptor (ours) and the caller must mount
 * the session on /dev/fd/<fd>, set fs->inherit_want and fs->want from
 * slimfs_takeover_want, then call slimfs_takeover_init. Errors are logged.
 */
int slimfs_takeover_request(const char *ctl_path, const uint8_t digest[32],
			    struct slimfs_takeover **out, int *fd);
unsigned slimfs_takeover_want(const struct slimfs_takeover *t);
/* Replays the connection's INIT into se. 0 or -errno. */
int slimfs_takeover_init(struct slimfs_takeover *t, struct fuse_session *se);
/* Drops a takeover that did not come to serving: the old daemon resumes. */
void slimfs_takeover_abort(struct slimfs_takeover *t);

/*
 * Starts the workers on se. With t (takes it): says "SERVING" to the old
 * daemon and waits for it to exit. Then listens on the control socket.
 */
int slimfs_serve_start(const struct slimfs_serve_opts *o, struct slimfs_takeover *t,
		       struct slimfs_serve **out);
/* Starts the workers slimfs_serve_start left (first_threads). 0 or -errno. */
int slimfs_serve_more(struct slimfs_serve *s);
/*
 * With caller_inits: reads the kernel's INIT and answers it in the calling
 * thread (op_init runs), so that the mount is live with no thread started:
 * a daemon that forks to the background then forks a single thread. 0,
 * -ETIMEDOUT after timeout_ms, -EINTR (a signal ended the session), -ENODEV
 * (unmounted meanwhile) or another -errno.
 */
int slimfs_serve_init(struct slimfs_serve *s, int timeout_ms);
/* Then (caller_inits): starts the first_threads workers. 0 or -errno. */
int slimfs_serve_first(struct slimfs_serve *s);
/* Serves until unmount, a signal or a handover; the workers are stopped. */
enum slimfs_serve_end slimfs_serve_run(struct slimfs_serve *s);
/* Closes the control socket (removes it unless a new daemon has it). */
void slimfs_serve_free(struct slimfs_serve *s);

/*
 * After a handover: points se's descriptor at an unconnected /dev/fuse, so
 * that fuse_session_unmount frees libfuse's mount state without unmounting
 * (the kernel says POLLERR, as for an unmounted connection). 0 or -errno.
 */
int slimfs_takeover_detach(struct fuse_session *se);

/* A session mounted on /dev/fd/N does not unmount itself: detach mnt unless
 * the kernel already ended the connection on fd. */
void slimfs_takeover_unmount(const char *mnt, int fd);

/*
 * `slimfs restart`: the daemon behind ctl_path describes itself. *buf holds
 * the strings (free it); *pid is the daemon's. Errors are logged.
 */
int slimfs_daemon_query(const char *ctl_path, struct slimfs_daemon_info *info, char ***argv,
			char **buf, int *pid);

#endif
