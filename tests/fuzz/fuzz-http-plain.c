// SPDX-License-Identifier: MIT
/*
 * The plain HTTP/1.1 range client (fs/http_plain.c) against a hostile
 * server: one or two whole exchanges of slimfs_plain_http_get() over a
 * socketpair whose other end holds the server's answer. Input:
 *
 *   0     flags: 1 up to end, 2 offset counted down from UINT64_MAX,
 *         4 a second exchange on the same client
 *   1..4  offset (le32)
 *   5..7  length - 1 (le24, at most 1 MiB)
 *   8..9  with flag 4: the first answer's size (le16), the rest is the second
 *   10..  the answer(s)
 *
 * The first answer waits in the socket with the connection left open
 * (timeout 0: whatever is missing is a timeout at once); the last one is
 * followed by EOF. A reconnect (after a failure, or when the first answer
 * closed the connection) goes to a port where nothing listens.
 *
 * On success the client must have sent one well-formed request for the
 * range, returned exactly the answer's body bytes after its headers, no more
 * than asked (fewer only up to the end the server gave), left the rest of
 * the buffer alone, and reported a total that the range fits in.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../fs/http_plain.h"
#include "fuzz.h"
#include "slimfs/util.h"

#define ANSWER_MAX (64u * 1024) /* fits a socketpair's buffer: no writer thread */
#define CANARY	   0xa5

static char url[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t salen = sizeof(sa);
	int fd;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	/* bound, never listening, kept open: connecting to it is refused */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	FUZZ_CHECK(getsockname(fd, (struct sockaddr *)&sa, &salen) == 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/f", ntohs(sa.sin_port));
	return 0;
}

/* Checks that [req, req + n) is one request for bytes [off, off + len). */
static void check_request(const char *req, size_t n, uint64_t off, size_t len)
{
	char range[64];
	const char *end;

	snprintf(range, sizeof(range), "\r\nRange: bytes=%" PRIu64 "-%" PRIu64 "\r\n", off,
		 off + len - 1);
	end = memmem(req, n, "\r\n\r\n", 4);
	FUZZ_CHECK(end && (size_t)(end + 4 - req) == n);
	FUZZ_CHECK(n > 17 && memcmp(req, "GET /f HTTP/1.1\r\n", 17) == 0);
	FUZZ_CHECK(memmem(req, n, range, strlen(range)) != NULL);
}

/* Reads what the client sent so far from the server end s. */
static size_t drain(int s, char *buf, size_t size)
{
	size_t n = 0;
	ssize_t k;

	while (n < size && (k = recv(s, buf + n, size - n, MSG_DONTWAIT)) > 0)
		n += (size_t)k;
	return n;
}

/*
 * After a successful exchange over the socketpair: [ans, ans + n) is what
 * the server end held unread, the body must be its bytes after the headers.
 * Returns how many bytes of it the exchange consumed.
 */
static size_t check_answer(const uint8_t *ans, size_t n, const uint8_t *buf, size_t asked,
			   size_t got, bool up_to_end, uint64_t off, uint64_t total)
{
	const uint8_t *hend = memmem(ans, n, "\r\n\r\n", 4);
	char hdr[ANSWER_MAX + 1];
	size_t hlen;

	FUZZ_CHECK(got > 0 && got <= asked);
	FUZZ_CHECK(got == asked || (up_to_end && total != 0 && off + got == total));
	FUZZ_CHECK(total == 0 || (off < total && got <= total - off));
	FUZZ_CHECK(hend != NULL);
	hlen = (size_t)(hend - ans);
	FUZZ_CHECK(n - hlen - 4 >= got && memcmp(buf, hend + 4, got) == 0);
	for (size_t i = got; i < asked; i++)
		FUZZ_CHECK(buf[i] == CANARY);
	FUZZ_CHECK(hlen >= 12 && memcmp(ans, "HTTP/1.", 7) == 0 && memcmp(ans + 8, " 206", 4) == 0);
	memcpy(hdr, ans, hlen);
	hdr[hlen] = '\0';
	/* lines as libcurl reads them: no NUL, CR and LF only as CR LF, no obs-fold */
	FUZZ_CHECK(strlen(hdr) == hlen);
	for (size_t i = 0; i < hlen; i++)
		FUZZ_CHECK((hdr[i] == '\r') == (hdr[i + 1] == '\n') &&
			   (hdr[i] != '\n' || (hdr[i + 1] != ' ' && hdr[i + 1] != '\t')));
	FUZZ_CHECK(strcasestr(hdr, "\r\ncontent-range:") && strcasestr(hdr, "\r\ncontent-length:"));
	FUZZ_CHECK(!strcasestr(hdr, "\r\ntransfer-encoding:"));
	return hlen + 4 + got;
}

static bool expected_error(int r)
{
	return r == -EPROTO || r == -EPIPE || r == -ETIMEDOUT || r == -ECONNREFUSED ||
	       r == -ECONNRESET;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slimfs_plain_http *p = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	const uint8_t *ans;
	size_t n, split, len, want, used = 0;
	uint64_t off, total;
	bool up_to_end, two;
	char req[4096];
	int sv[2], r;

	if (size < 10)
		return 0;
	up_to_end = data[0] & 1;
	off = get_le32(data + 1);
	if (data[0] & 2)
		off = UINT64_MAX - off;
	len = (get_le32(data + 4) >> 8 & 0xfffff) + 1;
	two = data[0] & 4;
	ans = data + 10; /* both answers: at most ANSWER_MAX bytes wait in the socket */
	n = MIN(size - 10, ANSWER_MAX);
	split = two ? MIN(n, (size_t)get_le16(data + 8)) : n;

	buf = malloc(len); /* exactly len: ASan sees any write past it */
	FUZZ_CHECK(buf != NULL);
	FUZZ_CHECK(slimfs_plain_http_new(url, "fuzz", &p) == 0);
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
	slimfs_plain_http_adopt(p, sv[0]);
	for (int x = 0; x < (two ? 2 : 1); x++) {
		size_t from = x ? split : 0, to = x || !two ? n : split, sent;
		ssize_t k = 0;

		/* the client's end may be closed already (then a reconnect is refused) */
		if (to > from)
			k = send(sv[1], ans + from, to - from, MSG_NOSIGNAL);
		FUZZ_CHECK(k == (ssize_t)(to - from) || (k < 0 && errno == EPIPE));
		if (to == n)
			shutdown(sv[1], SHUT_WR);
		memset(buf, CANARY, len);
		want = len;
		total = UINT64_MAX;
		r = slimfs_plain_http_get(p, off, buf, &want, up_to_end, to == n ? 10000 : 0,
					  &total);
		if (off > UINT64_MAX - len) {
			FUZZ_CHECK(r == -EINVAL && want == len);
			break;
		}
		FUZZ_CHECK(r == 0 || expected_error(r));
		/* each exchange sends its request first, on the open connection or none */
		sent = drain(sv[1], req, sizeof(req));
		if (sent)
			check_request(req, sent, off, len);
		if (r == 0 && sent)
			used += check_answer(ans + used, to - used, buf, len, want, up_to_end, off,
					     total);
		else
			FUZZ_CHECK(r < 0 && want == len);
	}
	slimfs_plain_http_free(p);
	close(sv[1]);
	return 0;
}
