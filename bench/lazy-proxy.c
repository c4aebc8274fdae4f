/* SPDX-License-Identifier: MIT */
/*
 * lazy-proxy: a TCP proxy that adds a fixed delay to every HTTP request, for
 * bench/lazy.sh (this kernel has no netem).
 *
 *   lazy-proxy LISTEN_IP:PORT UPSTREAM_IP:PORT DELAY_MS [STATS_FILE]
 *
 * What it does, exactly:
 * - Each accepted connection gets its own upstream connection (TCP_NODELAY on
 *   both). Connection setup is not delayed.
 * - Client -> upstream: a reader thread reads what the client sends and cuts
 *   it at HTTP/1.x request boundaries, roughly: a request starts with the
 *   first byte that arrives after the previous request ended; its header ends
 *   at the first CRLF CRLF; a Content-Length header (if any) adds that many
 *   body bytes. Chunked request bodies are not parsed (nobody here sends
 *   any). Every byte of a request is held until the time its first byte
 *   arrived plus DELAY_MS, then forwarded in order by a writer thread; the
 *   reader keeps reading meanwhile, so pipelined requests are each delayed
 *   from their own arrival, not one after the other.
 * - Upstream -> client: copied as it comes, no delay (the bandwidth cap is
 *   tc's job).
 * So one request/response exchange costs DELAY_MS more, as a round trip of
 * DELAY_MS would; unlike a real long path it does not slow TCP's slow start or
 * limit the window (the link itself is a veth pair with sub-millisecond RTT).
 *
 * On SIGTERM/SIGINT it writes "connections N requests R bytes_up U
 * bytes_down D" to STATS_FILE (or stderr) and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define UP_BUF	 (64 * 1024)
#define DOWN_BUF (256 * 1024)
#define HDR_MAX	 16384

static uint64_t delay_ns;
static uint64_t n_conns, n_requests, n_up, n_down;
static struct sockaddr_in upstream;

struct seg {
	struct seg *next;
	uint64_t release_ns;
	size_t len;
	char data[];
};

struct conn {
	int cfd, ufd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct seg *head, *tail;
	bool eof; /* the client finished sending */
	int refs; /* threads still using the connection */
	/* request parser (reader thread only) */
	bool in_request;
	char hdr[HDR_MAX];
	size_t hdr_len;
	bool hdr_done;
	uint64_t body_left;
	uint64_t release_ns;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(t / 1000000000u);
	ts.tv_nsec = (long)(t % 1000000000u);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void conn_put(struct conn *c)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	while (c->head) {
		struct seg *s = c->head;

		c->head = s->next;
		free(s);
	}
	close(c->cfd);
	close(c->ufd);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

static void enqueue(struct conn *c, const char *p, size_t n, uint64_t release)
{
	struct seg *s = malloc(sizeof(*s) + n);

	if (!s) {
		perror("lazy-proxy: malloc");
		exit(1);
	}
	s->next = NULL;
	s->release_ns = release;
	s->len = n;
	memcpy(s->data, p, n);
	pthread_mutex_lock(&c->lock);
	if (c->tail)
		c->tail->next = s;
	else
		c->head = s;
	c->tail = s;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* The header of the current request is complete: its Content-Length, if any. */
static uint64_t content_length(const struct conn *c)
{
	const char *p = c->hdr, *end = c->hdr + c->hdr_len;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);

		if (len > 15 && strncasecmp(p, "content-length:", 15) == 0)
			return strtoull(p + 15, NULL, 10);
		p += len + 1;
	}
	return 0;
}

/*
 * Cuts buf into pieces that belong to one request each and queues them with
 * their release times; t is when buf arrived.
 */
static void parse_and_queue(struct conn *c, const char *buf, size_t n, uint64_t t)
{
	size_t i = 0;

	while (i < n) {
		size_t start = i;

		if (!c->in_request) {
			c->in_request = true;
			c->hdr_len = 0;
			c->hdr_done = false;
			c->body_left = 0;
			c->release_ns = t + delay_ns;
			__atomic_fetch_add(&n_requests, 1, __ATOMIC_RELAXED);
		}
		if (!c->hdr_done) {
			while (i < n && !c->hdr_done) {
				char ch = buf[i++];

				if (c->hdr_len < HDR_MAX)
					c->hdr[c->hdr_len] = ch;
				c->hdr_len++;
				if (c->hdr_len >= 4 && c->hdr_len <= HDR_MAX &&
				    memcmp(c->hdr + c->hdr_len - 4, "\r\n\r\n", 4) == 0) {
					c->hdr_done = true;
					c->hdr_len -= 4;
					c->body_left = content_length(c);
				} else if (c->hdr_len > HDR_MAX) {
					/* not HTTP as we know it: one request per read */
					c->hdr_done = true;
					c->body_left = n - i;
				}
			}
		}
		if (c->hdr_done) {
			size_t take = (size_t)((uint64_t)(n - i) < c->body_left ? (uint64_t)(n - i)
										: c->body_left);

			i += take;
			c->body_left -= take;
			if (c->body_left == 0)
				c->in_request = false;
		}
		enqueue(c, buf + start, i - start, c->release_ns);
	}
}

static void *client_reader(void *arg)
{
	struct conn *c = arg;
	char *buf = malloc(UP_BUF);

	for (;;) {
		ssize_t r;

		if (!buf)
			break;
		r = read(c->cfd, buf, UP_BUF);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		__atomic_fetch_add(&n_up, (uint64_t)r, __ATOMIC_RELAXED);
		parse_and_queue(c, buf, (size_t)r, now_ns());
	}
	free(buf);
	pthread_mutex_lock(&c->lock);
	c->eof = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	conn_put(c);
	return NULL;
}

static void *upstream_writer(void *arg)
{
	struct conn *c = arg;

	for (;;) {
		struct seg *s;

		pthread_mutex_lock(&c->lock);
		while (!c->head && !c->eof)
			pthread_cond_wait(&c->cond, &c->lock);
		s = c->head;
		if (s) {
			c->head = s->next;
			if (!c->head)
				c->tail = NULL;
		}
		pthread_mutex_unlock(&c->lock);
		if (!s)
			break;
		sleep_until(s->release_ns);
		if (write_all(c->ufd, s->data, s->len) < 0) {
			free(s);
			shutdown(c->cfd, SHUT_RD);
			break;
		}
		free(s);
	}
	shutdown(c->ufd, SHUT_WR);
	conn_put(c);
	return NULL;
}

static void *downstream(void *arg)
{
	struct conn *c = arg;
	char *buf = malloc(DOWN_BUF);

	for (;;) {
		ssize_t r;

		if (!buf)
			break;
		r = read(c->ufd, buf, DOWN_BUF);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		__atomic_fetch_add(&n_down, (uint64_t)r, __ATOMIC_RELAXED);
		if (write_all(c->cfd, buf, (size_t)r) < 0)
			break;
	}
	free(buf);
	shutdown(c->cfd, SHUT_WR);
	shutdown(c->ufd, SHUT_RD);
	conn_put(c);
	return NULL;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)atoi(colon + 1));
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

static void spawn(void *(*fn)(void *), struct conn *c)
{
	pthread_t t;
	pthread_attr_t at;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 * 1024);
	if (pthread_create(&t, &at, fn, c) != 0) {
		perror("lazy-proxy: pthread_create");
		exit(1);
	}
	pthread_attr_destroy(&at);
}

static void handle(int cfd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1, ufd;

	ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!c || ufd < 0 || connect(ufd, (struct sockaddr *)&upstream, sizeof(upstream)) < 0) {
		perror("lazy-proxy: upstream");
		if (ufd >= 0)
			close(ufd);
		close(cfd);
		free(c);
		return;
	}
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->cfd = cfd;
	c->ufd = ufd;
	c->refs = 3;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	__atomic_fetch_add(&n_conns, 1, __ATOMIC_RELAXED);
	spawn(client_reader, c);
	spawn(upstream_writer, c);
	spawn(downstream, c);
}

static int lfd_global = -1;

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int cfd = accept4(lfd_global, NULL, NULL, SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EMFILE)
				usleep(1000);
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			perror("lazy-proxy: accept");
			exit(1);
		}
		handle(cfd);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in listen_addr;
	sigset_t set;
	int lfd, one = 1, sig;
	FILE *out = stderr;

	if (argc < 4 || argc > 5 || parse_addr(argv[1], &listen_addr) < 0 ||
	    parse_addr(argv[2], &upstream) < 0) {
		fprintf(stderr, "usage: lazy-proxy LISTEN_IP:PORT UPSTREAM_IP:PORT DELAY_MS "
				"[STATS_FILE]\n");
		return 2;
	}
	delay_ns = (uint64_t)(strtod(argv[3], NULL) * 1e6);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads inherit the mask */

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&listen_addr, sizeof(listen_addr)) < 0 ||
	    listen(lfd, 128) < 0) {
		fprintf(stderr, "lazy-proxy: cannot listen on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (argc == 5) {
		out = fopen(argv[4], "w");
		if (!out) {
			fprintf(stderr, "lazy-proxy: cannot write '%s': %s\n", argv[4],
				strerror(errno));
			return 1;
		}
	}
	lfd_global = lfd;
	spawn(acceptor, NULL);
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(out, "connections %llu requests %llu bytes_up %llu bytes_down %llu\n",
		(unsigned long long)__atomic_load_n(&n_conns, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&n_requests, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&n_up, __ATOMIC_RELAXED),
		(unsigned long long)__atomic_load_n(&n_down, __ATOMIC_RELAXED));
	fclose(out);
	return 0;
}
