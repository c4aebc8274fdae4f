/* SPDX-License-Identifier: MIT */
/*
 * A minimal HTTP/1.1 range client for http:// (no TLS), with no libcurl: the
 * first requests of a remote mount (size probe, index) go over it while
 * libcurl is still loading on its own thread (~20-40 ms, dl.h), so that the
 * two overlap. It takes only the plain case: one connection, kept alive, a
 * 206 whose Content-Range and Content-Length say exactly the bytes asked.
 * Anything else (redirect, other status, chunked body, a proxy set in the
 * environment, userinfo in the URL...) is an error, and the caller asks
 * libcurl instead, which also gives the messages users see.
 */
#ifndef SLIMFS_HTTP_PLAIN_H
#define SLIMFS_HTTP_PLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slimfs_plain_http;

/* No I/O. -ENOTSUP when url is not one it takes (see above), or -ENOMEM. */
int slimfs_plain_http_new(const char *url, const char *user_agent, struct slimfs_plain_http **out);

/*
 * GET bytes [off, off + *len) into buf within timeout_ms (connecting first
 * if needed). 0 when a 206 brought exactly those bytes, or, with up_to_end,
 * fewer where the resource ends (*len is then what came); *total receives
 * the resource's size from Content-Range (0 when the server said '*').
 * Otherwise -errno, and the connection is closed (the next call reconnects).
 */
int slimfs_plain_http_get(struct slimfs_plain_http *p, uint64_t off, void *buf, size_t *len,
			  bool up_to_end, unsigned timeout_ms, uint64_t *total);

/*
 * Takes over fd, a connected nonblocking stream socket, as p's connection (in
 * place of any it had), as if connected to the URL's server. For the fuzzer
 * (tests/fuzz/fuzz-http-plain.c): the exchange over it is slimfs_plain_http_get's.
 */
void slimfs_plain_http_adopt(struct slimfs_plain_http *p, int fd);

void slimfs_plain_http_free(struct slimfs_plain_http *p);

#endif
