// SPDX-License-Identifier: MIT
/* The plain HTTP client of fs/http_plain.h against a scripted server on
 * 127.0.0.1: it takes only an exact 206 (any other answer is an error, for
 * libcurl to redo), keeps the connection, reconnects once when the server
 * closed a kept one, honours its deadline, and refuses URLs it does not take. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_plain.h"
#include "tap.h"

static const char *const *script; /* one answer per request; NULL: close */
static int lfd, accepted;

static void *server(void *arg)
{
	size_t i = 0;

	(void)arg;
	while (script[i]) {
		int fd = accept(lfd, NULL, NULL);
		char req[4096];
		size_t have = 0;

		if (fd < 0)
			break;
		accepted++;
		for (; script[i]; i++) {
			ssize_t n;

			have = 0;
			while (!memmem(req, have, "\r\n\r\n", 4) &&
			       (n = read(fd, req + have, sizeof(req) - have)) > 0)
				have += (size_t)n;
			if (!memmem(req, have, "\r\n\r\n", 4))
				break;
			if (strcmp(script[i], "HANG") == 0) {
				sleep(1);
				i++;
				break;
			}
			if (strcmp(script[i], "CLOSE") == 0) { /* the kept connection dies */
				i++;
				break;
			}
			if (write(fd, script[i], strlen(script[i])) < 0)
				break;
		}
		close(fd);
	}
	return NULL;
}

/* Runs one script; returns the URL's port. */
static int serve(const char *const *s, pthread_t *t)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);

	script = s;
	accepted = 0;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0 ||
	    pthread_create(t, NULL, server, NULL) != 0)
		return -1;
	return ntohs(a.sin_port);
}

static void done(pthread_t t)
{
	shutdown(lfd, SHUT_RDWR);
	pthread_join(t, NULL);
	close(lfd);
}

/* A client of a server answering with s (NULL if it cannot be made). */
static struct slimfs_plain_http *client(const char *const *s, pthread_t *t)
{
	struct slimfs_plain_http *p = NULL;
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/img", serve(s, t));
	CHECK_EQ(slimfs_plain_http_new(url, "test", &p), 0);
	return p;
}

/* GET [off, off + len) from a server answering with s; the result, bytes in out. */
static int get(const char *const *s, uint64_t off, size_t *len, bool up_to_end, char *out,
	       uint64_t *total)
{
	pthread_t t;
	struct slimfs_plain_http *p = client(s, &t);
	int r = p ? slimfs_plain_http_get(p, off, out, len, up_to_end, 500, total) : -ENOMEM;

	slimfs_plain_http_free(p);
	done(t);
	return r;
}

int main(void)
{
	struct slimfs_plain_http *p = NULL;
	char buf[64];
	size_t len;
	uint64_t total;
	pthread_t t;

	/* URLs it leaves to libcurl */
	CHECK_EQ(slimfs_plain_http_new("https://h/x", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://u:p@h/x", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://h/x#f", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://h/a b", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://h:99999/x", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://h:/x", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http:///x", "t", &p), -ENOTSUP);
	CHECK_EQ(slimfs_plain_http_new("http://[::1/x", "t", &p), -ENOTSUP);
	setenv("http_proxy", "http://proxy:3128", 1);
	CHECK_EQ(slimfs_plain_http_new("http://h/x", "t", &p), -ENOTSUP);
	unsetenv("http_proxy");
	CHECK_EQ(slimfs_plain_http_new("http://[::1]:8080?q", "t", &p), 0);
	slimfs_plain_http_free(p);

	/* exact answers, on one kept connection; when the server has closed it,
	 * once more on a new one */
	{
		static const char *const s[] = {
			"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-5/10\r\n"
			"Content-Length: 4\r\n\r\ncdef",
			"HTTP/1.1 206 Partial Content\r\ncontent-range: bytes 0-9/10\r\n"
			"content-length: 10\r\nConnection: keep-alive\r\n\r\nabcdefghij",
			"CLOSE",
			"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-3/10\r\n"
			"Content-Length: 2\r\n\r\ncd",
			NULL};

		p = client(s, &t);
		len = 4;
		CHECK_EQ(slimfs_plain_http_get(p, 2, buf, &len, false, 500, &total), 0);
		CHECK(len == 4 && memcmp(buf, "cdef", 4) == 0 && total == 10);
		len = 20; /* up to the end: fewer bytes where the resource ends */
		CHECK_EQ(slimfs_plain_http_get(p, 0, buf, &len, true, 500, &total), 0);
		CHECK(len == 10 && memcmp(buf, "abcdefghij", 10) == 0);
		CHECK_EQ(accepted, 1);
		len = 2;
		CHECK_EQ(slimfs_plain_http_get(p, 2, buf, &len, false, 500, &total), 0);
		CHECK(memcmp(buf, "cd", 2) == 0);
		slimfs_plain_http_free(p);
		done(t);
		CHECK_EQ(accepted, 2);
	}
	/* anything but an exact 206 is an error */
	{
#define H206 "HTTP/1.1 206 Partial Content\r\n"
		static const struct {
			const char *answer;
			bool up_to_end;
			int want; /* 1: any error */
		} cases[] = {
			{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcdefghij", false, -EPROTO},
			{H206 "Content-Range: bytes 0-3/10\r\nTransfer-Encoding: chunked\r\n\r\n"
			      "4\r\nabcd\r\n0\r\n\r\n",
			 false, -EPROTO},
			{H206 "Content-Range: bytes 1-4/10\r\nContent-Length: 4\r\n\r\nbcde", false,
			 -EPROTO},
			{H206 "Content-Range: bytes 0-3/10\r\nContent-Length: 5\r\n\r\nabcde",
			 false, -EPROTO},
			{H206 "Content-Range: bytes 0-3/10\r\n\r\nabcd", false, -EPROTO},
			/* a header a reader could take two ways: twice, even equal */
			{H206 "Content-Range: bytes 0-3/10\r\nContent-Length: 4\r\n"
			      "Content-Length: 4\r\n\r\nabcd",
			 false, -EPROTO},
			{H206 "Content-Length: 4\r\nContent-Length: 9\r\n"
			      "Content-Range: bytes 0-3/10\r\n\r\nabcd",
			 false, -EPROTO},
			{H206 "Content-Range: bytes 0-3/10\r\nContent-Range: bytes 0-3/20\r\n"
			      "Content-Length: 4\r\n\r\nabcd",
			 false, -EPROTO},
			{H206 "Content-Range: bytes 0-3/10\r\nContent-Length: 4\r\n"
			      "Connection: close\r\n\r\nab",
			 false, 1},
			{H206 "Content-Range: bytes 3-0/10\r\nContent-Length: 4\r\n\r\nabcd", false,
			 -EPROTO},
			/* fewer bytes, but not where the resource ends */
			{H206 "Content-Range: bytes 0-1/10\r\nContent-Length: 2\r\n\r\nab", true,
			 -EPROTO},
			{"HTTP/1.1 302 Found\r\nLocation: /other\r\nContent-Length: 0\r\n\r\n",
			 false, -EPROTO},
			{"HANG", false, -ETIMEDOUT},
		};
#undef H206

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			const char *one[] = {cases[i].answer, NULL};
			int r;

			len = 4;
			r = get(one, 0, &len, cases[i].up_to_end, buf, &total);
			if (cases[i].want == 1)
				CHECK(r < 0);
			else
				CHECK_EQ(r, cases[i].want);
		}
	}
	/* nothing listens */
	{
		static const char *const none[] = {NULL};

		p = client(none, &t);
		done(t);
		len = 4;
		CHECK(slimfs_plain_http_get(p, 0, buf, &len, false, 500, &total) < 0);
		slimfs_plain_http_free(p);
	}
	return tap_done();
}
