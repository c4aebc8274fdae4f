/* SPDX-License-Identifier: MIT */
/*
 * SHA-256 (FIPS 180-4): content addresses of chunks, indexes and OCI blobs.
 * Written here instead of linking libcrypto, whose relocation and start-up
 * cost every exec of slimfs paid for these few calls (index/sha256.c).
 */
#ifndef SLIMFS_SHA256_H
#define SLIMFS_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLIMFS_SHA256_LEN 32

/* Streaming state: init, update any number of times, final once. */
struct slimfs_sha256_ctx {
	uint32_t h[8];
	uint64_t len;	 /* bytes hashed so far */
	uint8_t buf[64]; /* the partial block */
};

void slimfs_sha256_init(struct slimfs_sha256_ctx *c);
void slimfs_sha256_update(struct slimfs_sha256_ctx *c, const void *buf, size_t len);
/* Writes the digest; c must be initialised again before further use. */
void slimfs_sha256_final(struct slimfs_sha256_ctx *c, uint8_t out[SLIMFS_SHA256_LEN]);

/* One shot. */
void slimfs_sha256(const void *buf, size_t len, uint8_t out[SLIMFS_SHA256_LEN]);

/*
 * The block function in use: "sha-ni" (x86 SHA extensions, chosen when the
 * CPU has them) or "portable".
 */
const char *slimfs_sha256_impl(void);
/* Tests and benchmarks: force the portable code (true), or back to the CPU's choice (false). */
void slimfs_sha256_force_portable(bool on);

#endif
