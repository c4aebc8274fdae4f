// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "http_range.h"

/* Digits at *p (at least one, no overflow) up to end; advances *p. */
static int number(const char **p, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (s >= end || *s < '0' || *s > '9')
		return -EINVAL;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

int slimfs_http_content_range(const char *line, size_t n, uint64_t *first, uint64_t *last,
			      uint64_t *total)
{
	static const char name[] = "content-range:";
	const char *p = line, *end = line + n;
	uint64_t a, b, t = 0;

	if (n < sizeof(name) - 1 || strncasecmp(line, name, sizeof(name) - 1) != 0)
		return -ENOENT;
	while (end > p && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	p += sizeof(name) - 1;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 6 || strncasecmp(p, "bytes ", 6) != 0)
		return -EINVAL;
	p += 6;
	while (p < end && *p == ' ')
		p++;
	if (number(&p, end, &a) < 0 || p >= end || *p++ != '-' || number(&p, end, &b) < 0 ||
	    p >= end || *p++ != '/')
		return -EINVAL;
	if (p < end && *p == '*')
		p++;
	else if (number(&p, end, &t) < 0)
		return -EINVAL;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p != end || b < a || (t && b >= t))
		return -EINVAL;
	*first = a;
	*last = b;
	*total = t;
	return 0;
}

int slimfs_http_verdict(const struct slimfs_http_answer *a, uint64_t off, size_t len, char *why,
			size_t whylen)
{
	bool exact = a->has_range && a->first == off && a->last - a->first + 1 == (uint64_t)len;

	if (a->status == 206 && a->overflow) {
		snprintf(why, whylen, "HTTP 206: body longer than the %zu bytes asked", len);
		return -EAGAIN;
	}
	if (a->status == 206 && exact && a->got == len)
		return 0;
	if (a->status == 206) {
		snprintf(why, whylen, "HTTP 206: %zu of %zu bytes%s", a->got, len,
			 exact ? "" : ", wrong Content-Range");
		return -EAGAIN;
	}
	if (a->status == 416) {
		snprintf(why, whylen, "HTTP 416: range not satisfiable");
		return -ERANGE;
	}
	if (a->status == 200) {
		snprintf(why, whylen, "HTTP 200: the server ignores Range requests");
		return -EIO;
	}
	snprintf(why, whylen, "HTTP %ld", a->status);
	return a->status >= 500 || a->status == 408 || a->status == 429 || a->status == 0 ? -EAGAIN
											  : -EIO;
}
