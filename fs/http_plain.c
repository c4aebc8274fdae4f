// SPDX-License-Identifier: MIT
/* The plain HTTP/1.1 range client of http_plain.h. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_plain.h"
#include "http_range.h"
#include "slimfs/util.h"

#define HEADERS_MAX 16384u

struct slimfs_plain_http {
	char *host, *port; /* for getaddrinfo */
	char *authority;   /* Host: header, as in the URL */
	char *target;	   /* path and query, at least "/" */
	char *user_agent;
	int fd; /* -1: not connected */
	char hdr[HEADERS_MAX];
};

/* Environment variables by which libcurl would send http:// through a proxy. */
static bool proxied(void)
{
	static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};

	for (size_t i = 0; i < ARRAY_SIZE(vars); i++) {
		const char *v = getenv(vars[i]);

		if (v && *v)
			return true;
	}
	return false;
}

int slimfs_plain_http_new(const char *url, const char *user_agent, struct slimfs_plain_http **out)
{
	struct slimfs_plain_http *p;
	const char *a, *end, *host, *hend, *port = NULL;
	size_t alen;

	if (strncmp(url, "http://", 7) != 0 || proxied())
		return -ENOTSUP;
	for (const char *s = url; *s; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || *s == '#')
			return -ENOTSUP;
	a = url + 7;
	end = a + strcspn(a, "/?");
	alen = (size_t)(end - a);
	if (alen == 0 || memchr(a, '@', alen))
		return -ENOTSUP;
	host = a;
	if (*a == '[') {
		hend = memchr(a, ']', alen);
		if (!hend)
			return -ENOTSUP;
		host = a + 1;
		if (hend + 1 < end && hend[1] != ':')
			return -ENOTSUP;
		port = hend + 1 < end ? hend + 2 : NULL;
	} else {
		hend = memchr(a, ':', alen);
		if (hend)
			port = hend + 1;
		else
			hend = end;
	}
	if (hend == host || (port && (port == end || (size_t)(end - port) > 5 ||
				      strspn(port, "0123456789") < (size_t)(end - port) ||
				      atoi(port) < 1 || atoi(port) > 65535)))
		return -ENOTSUP;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = -1;
	p->host = strndup(host, (size_t)(hend - host));
	p->port = port ? strndup(port, (size_t)(end - port)) : strdup("80");
	p->authority = strndup(a, alen);
	if (asprintf(&p->target, "%s%s", *end == '/' ? "" : "/", end) < 0)
		p->target = NULL;
	p->user_agent = strdup(user_agent);
	if (!p->host || !p->port || !p->authority || !p->target || !p->user_agent) {
		slimfs_plain_http_free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

static void disconnect(struct slimfs_plain_http *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

/* Waits until fd is ready for events, or the deadline (-ETIMEDOUT). */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		uint64_t now = slimfs_now_ns();
		int n;

		if (now >= deadline)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, (int)MIN((deadline - now) / 1000000u + 1, (uint64_t)INT_MAX));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_to(struct slimfs_plain_http *p, uint64_t deadline)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *res, *ai;
	int r = -ECONNREFUSED;

	/* An address needs no resolver (its netlink query, nscd, NSS: ~2 ms cold). */
	if (getaddrinfo(p->host, p->port, &hints, &res) != 0) {
		hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
		if (getaddrinfo(p->host, p->port, &hints, &res) != 0)
			return -EHOSTUNREACH;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int one = 1, err = 0;
		socklen_t elen = sizeof(err);

		if (fd < 0) {
			r = -errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
			r = -errno;
		else if ((r = wait_fd(fd, POLLOUT, deadline)) == 0 &&
			 getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0) {
			p->fd = fd;
			break;
		} else if (r == 0) {
			r = -(err ? err : EIO);
		}
		close(fd);
	}
	freeaddrinfo(res);
	return p->fd >= 0 ? 0 : r;
}

static int send_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		int r;

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -errno;
		} else if ((r = wait_fd(fd, POLLOUT, deadline)) < 0) {
			return r;
		}
	}
	return 0;
}

/* Some bytes into buf (at most len): their count, or -errno (-EPIPE at EOF). */
static ssize_t recv_some(int fd, void *buf, size_t len, uint64_t deadline)
{
	for (;;) {
		ssize_t n = recv(fd, buf, len, 0);
		int r;

		if (n > 0)
			return n;
		if (n == 0)
			return -EPIPE;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
			return r;
	}
}

/* Digits only, no overflow: the value of [s, e), or -1. */
static int64_t parse_u63(const char *s, const char *e)
{
	int64_t v = 0;

	if (s == e)
		return -1;
	for (; s < e; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

/* The value of header line [s, e) if it is "name: value", trimmed; else NULL. */
static const char *header_value(const char *s, const char *e, const char *name, const char **vend)
{
	size_t n = strlen(name);

	if ((size_t)(e - s) <= n || strncasecmp(s, name, n) != 0 || s[n] != ':')
		return NULL;
	for (s += n + 1; s < e && (*s == ' ' || *s == '\t'); s++)
		;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*vend = e;
	return s;
}

/*
 * Whether [s, s + n), headers ending in CR LF, has what RFC 9112 lets a
 * client read another way than line by line (libcurl does): a NUL, a CR or LF
 * not in CR LF, a line folded onto the one before (obs-fold).
 */
static bool ambiguous(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\0' || (s[i] == '\r' && (i + 1 == n || s[i + 1] != '\n')) ||
		    (s[i] == '\n' && (i == 0 || s[i - 1] != '\r' ||
				      (i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')))))
			return true;
	return false;
}

/*
 * Parses the status line and headers in [p->hdr, p->hdr + n): status 206,
 * one Content-Range (first, last, total), one Content-Length equal to its
 * length, no Transfer-Encoding, nothing ambiguous(); *keep: the connection
 * stays open. A second Content-Range or Content-Length, even an equal one, is
 * refused like any answer a reader could frame two ways (RFC 9112 6.3).
 */
static int parse_headers(struct slimfs_plain_http *p, size_t n, uint64_t *first, uint64_t *last,
			 uint64_t *total, bool *keep)
{
	const char *s = p->hdr, *end = p->hdr + n, *eol;
	int64_t clen = -1;
	bool range = false, have_clen = false;

	eol = memmem(s, (size_t)(end - s), "\r\n", 2);
	if (!eol || ambiguous(s, n) || eol - s < 12 || strncmp(s, "HTTP/1.", 7) != 0 ||
	    (s[7] != '0' && s[7] != '1') || strncmp(s + 8, " 206", 4) != 0 ||
	    (eol - s > 12 && s[12] != ' '))
		return -EPROTO;
	*keep = s[7] == '1';
	for (s = eol + 2; s < end && (eol = memmem(s, (size_t)(end - s), "\r\n", 2)) && eol > s;
	     s = eol + 2) {
		const char *v, *ve;
		int r = slimfs_http_content_range(s, (size_t)(eol - s), first, last, total);

		if (r == 0) {
			if (range)
				return -EPROTO;
			range = true;
		} else if (r == -EINVAL) {
			return -EPROTO;
		} else if ((v = header_value(s, eol, "content-length", &ve))) {
			if (have_clen)
				return -EPROTO;
			have_clen = true;
			clen = parse_u63(v, ve);
		} else if (header_value(s, eol, "transfer-encoding", &ve)) {
			return -EPROTO;
		} else if ((v = header_value(s, eol, "connection", &ve))) {
			*keep = (ve - v == 10 && strncasecmp(v, "keep-alive", 10) == 0) ||
				(*keep && !(ve - v == 5 && strncasecmp(v, "close", 5) == 0));
		}
	}
	if (!range || clen < 0 || (uint64_t)clen != *last - *first + 1)
		return -EPROTO;
	return 0;
}

static int get_once(struct slimfs_plain_http *p, uint64_t off, uint8_t *buf, size_t *len,
		    bool up_to_end, uint64_t deadline, uint64_t *total)
{
	char req[1024];
	size_t have = 0, body, got;
	uint64_t first = 0, last = 0;
	const char *hend = NULL;
	bool keep = false;
	int n, r;

	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s\r\nRange: bytes=%" PRIu64 "-%" PRIu64
		     "\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n",
		     p->target, p->authority, off, off + *len - 1, p->user_agent);
	if (n < 0 || (size_t)n >= sizeof(req))
		return -ENAMETOOLONG;
	if (p->fd < 0 && (r = connect_to(p, deadline)) < 0)
		return r;
	r = send_all(p->fd, req, (size_t)n, deadline);
	if (r < 0)
		return r;
	while (!hend) {
		ssize_t k;

		if (have == sizeof(p->hdr))
			return -EPROTO;
		k = recv_some(p->fd, p->hdr + have, sizeof(p->hdr) - have, deadline);
		if (k < 0)
			return (int)k;
		hend = memmem(p->hdr + (have > 3 ? have - 3 : 0),
			      have + (size_t)k - (have > 3 ? have - 3 : 0), "\r\n\r\n", 4);
		have += (size_t)k;
	}
	r = parse_headers(p, (size_t)(hend - p->hdr) + 2, &first, &last, total, &keep);
	if (r < 0)
		return r;
	body = (size_t)(last - first + 1);
	if (first != off || body > *len ||
	    (body < *len && !(up_to_end && *total && last + 1 == *total)))
		return -EPROTO;
	got = have - (size_t)(hend + 4 - p->hdr);
	if (got > body) /* nothing may follow: we sent one request */
		return -EPROTO;
	memcpy(buf, hend + 4, got);
	while (got < body) {
		ssize_t k = recv_some(p->fd, buf + got, body - got, deadline);

		if (k < 0)
			return (int)k;
		got += (size_t)k;
	}
	*len = body;
	if (!keep)
		disconnect(p);
	return 0;
}

int slimfs_plain_http_get(struct slimfs_plain_http *p, uint64_t off, void *buf, size_t *len,
			  bool up_to_end, unsigned timeout_ms, uint64_t *total)
{
	uint64_t deadline = slimfs_now_ns() + (uint64_t)timeout_ms * 1000000u;
	int r;

	if (*len == 0 || off > UINT64_MAX - *len)
		return -EINVAL;
	for (int attempt = 0;; attempt++) {
		bool reused = p->fd >= 0;
		size_t want = *len;

		*total = 0;
		r = get_once(p, off, buf, &want, up_to_end, deadline, total);
		if (r == 0) {
			*len = want;
			return 0;
		}
		disconnect(p);
		/* a kept connection the server has closed meanwhile: once more, afresh */
		if (!reused || attempt || (r != -EPIPE && r != -ECONNRESET))
			return r;
	}
}

void slimfs_plain_http_adopt(struct slimfs_plain_http *p, int fd)
{
	disconnect(p);
	p->fd = fd;
}

void slimfs_plain_http_free(struct slimfs_plain_http *p)
{
	if (!p)
		return;
	disconnect(p);
	free(p->host);
	free(p->port);
	free(p->authority);
	free(p->target);
	free(p->user_agent);
	free(p);
}
