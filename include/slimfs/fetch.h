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
	void (*free)(struct slimfs_backend *b);
};

struct slimfs_backend {
	const struct slimfs_backend_ops *ops;
	uint64_t size; /* bytes, or 0 when unknown */
	char *name;    /* for messages, owned */
};

struct slimfs_fetch_opts {
	bool insecure;	     /* no TLS verification; plain HTTP to non-localhost registries */
	const char *creds;   /* "USER:PASS" for registries */
	unsigned timeout_ms; /* per request; 0 = default */
	unsigned retries;    /* 0 = default */
	uint64_t rate_bps;   /* emulated bandwidth, bytes/s, 0 = none */
	unsigned rtt_us;     /* emulated delay per request */
};

/* Opens "PATH", "http(s)://...", or "oci://REGISTRY/REPO:TAG|@sha256:...". */
int slimfs_backend_open(const char *src, const struct slimfs_fetch_opts *o,
			struct slimfs_backend **out);
int slimfs_backend_open_file(const char *path, struct slimfs_backend **out);
static inline int slimfs_backend_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	return b->ops->read(b, off, buf, len);
}
void slimfs_backend_free(struct slimfs_backend *b);
/* The local file descriptor of a file backend (to mmap the index), else -1. */
int slimfs_backend_local_fd(struct slimfs_backend *b);

#endif
