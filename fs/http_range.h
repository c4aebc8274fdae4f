/* SPDX-License-Identifier: MIT */
/*
 * What an HTTP answer to a range request means: pure functions (no libcurl),
 * so that the decision is unit-tested and fuzzed on its own.
 */
#ifndef SLIMFS_HTTP_RANGE_H
#define SLIMFS_HTTP_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses one header line "Content-Range: bytes FIRST-LAST/TOTAL" (name in any
 * case, optional CR LF; TOTAL may be '*', giving 0). Only digits are numbers:
 * no signs, no spaces inside. Returns 0, or -ENOENT when the line is another
 * header, or -EINVAL when it is a malformed Content-Range (LAST < FIRST too).
 */
int slimfs_http_content_range(const char *line, size_t n, uint64_t *first, uint64_t *last,
			      uint64_t *total);

/* The answer to a request for bytes [off, off + len), len > 0. */
struct slimfs_http_answer {
	long status;	      /* HTTP status, 0 when none came */
	bool has_range;	      /* a valid Content-Range was seen */
	uint64_t first, last; /* from it */
	size_t got;	      /* body bytes received (at most len) */
	bool overflow;	      /* the body was longer than len */
};

/*
 * 0 only for a 206 whose Content-Range is exactly [off, off + len) and whose
 * body has exactly len bytes. Otherwise -EAGAIN (worth a retry: 5xx, 408,
 * 429, short or long 206), -ERANGE (416), -EIO (final: 200 for a range,
 * other 4xx); why receives the reason.
 */
int slimfs_http_verdict(const struct slimfs_http_answer *a, uint64_t off, size_t len, char *why,
			size_t whylen);

#endif
