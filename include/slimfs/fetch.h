/* SPDX-License-Identifier: MIT */
/*
 * Backends read byte ranges of an image: a local file (default), HTTP(S)
 * range requests, or an OCI registry blob. The FUSE side only sees this
 * interface. Backends are thread-safe: several workers call read at once.
 */
#ifndef SLIMFS_FETCH_H
#define SLIMFS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slimfs_backend;

struct slimfs_backend_ops {
	/* Reads exactly len bytes at off into buf. 0, or -EIO (short, HTTP
	 * error, timeout), -ERANGE (past the end), -errno. */
	int (*read)(struct slimfs_backend *b, uint64_t off, void *buf, size_t len);
	/* Optional: waits until what every later read needs is there (libcurl
	 * for HTTP, whose first reads may do without); 0, or -errno (logged). */
	int (*wait)(struct slimfs_backend *b);
	void (*free)(struct slimfs_backend *b);
};

/* Counters kept by every backend (updated atomically). */
#define SLIMFS_LAT_BUCKETS 24 /* bucket i: latency < 2^i * 16 us */
struct slimfs_fetch_stats {
	uint64_t requests; /* range requests that succeeded */
	uint64_t bytes;	   /* payload bytes received */
	uint64_t errors;   /* requests that failed after all retries */
	uint64_t retries;  /* extra attempts */
	uint64_t lat[SLIMFS_LAT_BUCKETS];
};
void slimfs_fetch_stats_add(struct slimfs_fetch_stats *s, uint64_t bytes, uint64_t ns);
/* Latency percentile (0..100) in microseconds, from the buckets (upper bound). */
uint64_t slimfs_fetch_stats_percentile(const struct slimfs_fetch_stats *s, double pct);

struct slimfs_backend {
	const struct slimfs_backend_ops *ops;
	uint64_t size; /* bytes, or 0 when unknown */
	char *name;    /* for messages, owned */
	bool remote;   /* fetched over a network: worth a disk cache */
	bool pinned;   /* index_digest is set: the source pins the index (OCI manifest) */
	uint8_t index_digest[32];
	struct slimfs_fetch_stats stats;
};

struct slimfs_fetch_opts {
	bool insecure;	     /* no TLS verification; plain HTTP to non-localhost registries */
	const char *creds;   /* "USER:PASS" for registries */
	unsigned timeout_ms; /* per request; 0 = default */
	unsigned retries;    /* 0 = default */
	uint64_t rate_bps;   /* emulated bandwidth, bytes/s, 0 = none */
	unsigned rtt_us;     /* emulated delay per request */
	const char *user_agent;
	const char *ca_file; /* PEM CA bundle to trust instead of the system's */
};

/* HTTP(S) range backend; auth_header (may be NULL) is sent with every request. */
int slimfs_backend_open_http(const char *url, const struct slimfs_fetch_opts *o,
			     const char *auth_header, struct slimfs_backend **out);
/* OCI registry: "oci://REGISTRY/REPO:TAG" or "...@sha256:HEX". */
int slimfs_backend_open_oci(const char *ref, const struct slimfs_fetch_opts *o,
			    struct slimfs_backend **out);
/*
 * Pushes the image file at path to "REGISTRY/REPO:TAG" (an "oci://" prefix is
 * accepted) as an OCI artifact; index_digest pins the index in the manifest.
 * On success, manifest_digest receives "sha256:<hex>".
 */
int slimfs_oci_push(const char *path, const char *ref, const uint8_t index_digest[32],
		    uint64_t index_size, const struct slimfs_fetch_opts *o,
		    char manifest_digest[72]);

#define SLIMFS_OCI_ARTIFACT_TYPE    "application/vnd.slimfs.image.v1"
#define SLIMFS_OCI_CONFIG_TYPE	    "application/vnd.slimfs.config.v1+json"
#define SLIMFS_OCI_ANNOTATION_INDEX "dev.slimfs.index.digest"

/* Opens "PATH", "http(s)://...", or "oci://REGISTRY/REPO:TAG|@sha256:...". */
int slimfs_backend_open(const char *src, const struct slimfs_fetch_opts *o,
			struct slimfs_backend **out);
int slimfs_backend_open_file(const char *path, struct slimfs_backend **out);
/*
 * What slimfs_backend_open(src) will need, started now on a thread of its own
 * (libcurl for a remote src): call it as early as possible in the process that
 * will open src, after its heap settings; the open then waits for it.
 */
void slimfs_backend_preload(const char *src);
/*
 * Waits until the thread of a preload started by slimfs_backend_preload has
 * ended (joined; at once without a preload). Call it, from the thread that
 * started the preload, before exit() and before fork(): while that thread runs
 * the library's initialisers (OpenSSL's, from curl_global_init) or, after
 * them, its thread-local destructors, exit() runs the library's atexit
 * handlers under it (seen: a crash 1 in 40 and, under ASan, a leak report 1 in
 * 2, of a mount failing its --digest check), and fork() copies whatever lock
 * it holds.
 */
void slimfs_backend_preload_settle(void);
static inline int slimfs_backend_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	return b->ops->read(b, off, buf, len);
}
void slimfs_backend_free(struct slimfs_backend *b);
/* ops->wait, if any: a mount calls it before it goes live, so that a missing
 * libcurl fails the mount as before, not its reads. */
int slimfs_backend_wait(struct slimfs_backend *b);
/* The local file descriptor of a file backend (to mmap the index), else -1. */
int slimfs_backend_local_fd(struct slimfs_backend *b);

/*
 * A read lease (fcntl F_SETLEASE) on a local image file: nobody can open the
 * file for writing or truncate it without the kernel telling the lease
 * holder first, and waiting for it. The daemon takes one (a process holds
 * one at most) so that a frame whose SHA-256 it checked once need not be
 * hashed again while the file cannot have changed (slimfs_backend_unchanged);
 * on a break (a writer opens the file) a signal handler gives the lease up at
 * once, the writer goes on, and every frame read from then on is verified
 * again. Only on local disk file systems (ext2/3/4, XFS, Btrfs, F2FS, tmpfs):
 * on network, FUSE or overlay file systems a file can change without an open
 * on this host. 0, or -EOPNOTSUPP (not a local file there), -EBUSY (this
 * process holds one), -EAGAIN (the file is open for writing), -errno.
 */
int slimfs_backend_lease(struct slimfs_backend *b);
/*
 * True when b holds its lease and no break has begun: no byte of the file can
 * have changed since the lease was taken. Ask after reading: bytes read
 * while this is still true after the read are those of the file at lease
 * time. One fcntl; false at once for other backends and unleased files.
 */
bool slimfs_backend_unchanged(struct slimfs_backend *b);

#endif
