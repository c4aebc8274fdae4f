// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "slimfs/util.h"

/* The one piece of process-wide state of the libraries: where logs go. */
static int log_level = SLIMFS_LOG_INFO;
static bool log_syslog;

void slimfs_log_set_level(int level)
{
	log_level = level;
}

int slimfs_log_get_level(void)
{
	return log_level;
}

void slimfs_log_use_syslog(bool on)
{
	log_syslog = on;
	if (on)
		openlog("slimfs", LOG_PID, LOG_DAEMON);
}

void slimfs_logv(int level, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
	char buf[4096];

	if (level > log_level)
		return;
	if (level < 0 || level > SLIMFS_LOG_DEBUG)
		level = SLIMFS_LOG_ERROR;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (log_syslog)
		syslog(prio[level], "%s", buf);
	else
		fprintf(stderr, "slimfs: %s%s\n", prefix[level], buf);
}

void slimfs_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	slimfs_logv(level, fmt, ap);
	va_end(ap);
}

int slimfs_log_errno(int level, int r, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	slimfs_log(level, "%s: %s", buf, strerror(r < 0 ? -r : r));
	return r;
}

/*
 * Moves len bytes: pread, or when wr pwrite, or write at the file position
 * when off < 0. Retries short transfers and EINTR; a read that meets the end
 * of the file is -EIO.
 */
static int io_all(int fd, uint8_t *p, size_t len, int64_t off, bool wr)
{
	while (len > 0) {
		ssize_t n = !wr	      ? pread(fd, p, len, (off_t)off)
			    : off < 0 ? write(fd, p, len)
				      : pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0 && !wr)
			return -EIO;
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return 0;
}

int slimfs_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	return io_all(fd, buf, len, (int64_t)off, false);
}

int slimfs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	return io_all(fd, (void *)buf, len, (int64_t)off, true);
}

int slimfs_tmpfile_open(const char *dir, const char *what)
{
	char tmpl[PATH_MAX];
	int fd;

	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return log_error_errno(-errno, "cannot create a %s file in '%s'", what, dir);
	/* file systems without O_TMPFILE: create and unlink at once */
	if (snprintf(tmpl, sizeof(tmpl), "%s/.slimfs-%s-XXXXXX", dir, what) >= (int)sizeof(tmpl))
		return -ENAMETOOLONG;
	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot create a %s file in '%s'", what, dir);
	unlink(tmpl);
	return fd;
}

int slimfs_write_all(int fd, const void *buf, size_t len)
{
	return io_all(fd, (void *)buf, len, -1, true);
}

int slimfs_write_file_replace(const char *path, const void *buf, size_t len, mode_t mode)
{
	_cleanup_free_ char *tmp = NULL;
	int fd, r;

	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return -ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot create '%s'", tmp);
	r = slimfs_write_all(fd, buf, len);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return log_error_errno(r, "cannot write '%s'", path);
	}
	return 0;
}

void slimfs_base64(const void *in, size_t n, char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const uint8_t *p = in;

	for (; n >= 3; n -= 3, p += 3, out += 4) {
		uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];

		out[0] = alphabet[v >> 18];
		out[1] = alphabet[(v >> 12) & 63];
		out[2] = alphabet[(v >> 6) & 63];
		out[3] = alphabet[v & 63];
	}
	if (n) {
		uint32_t v = (uint32_t)p[0] << 16 | (n == 2 ? (uint32_t)p[1] << 8 : 0);

		out[0] = alphabet[v >> 18];
		out[1] = alphabet[(v >> 12) & 63];
		out[2] = n == 2 ? alphabet[(v >> 6) & 63] : '=';
		out[3] = '=';
		out += 4;
	}
	*out = '\0';
}

void slimfs_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int slimfs_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int slimfs_unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi = slimfs_hexval((unsigned char)s[2 * i]);
		int lo = hi < 0 ? -1 : slimfs_hexval((unsigned char)s[2 * i + 1]);

		if (lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int slimfs_parse_digest(const char *s, uint8_t out[32])
{
	if (strncmp(s, "sha256:", 7) == 0)
		s += 7;
	if (strlen(s) != 64)
		return -EINVAL;
	return slimfs_unhex(s, 32, out);
}

const char *slimfs_fmt_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(unit)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", n);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
	return buf;
}

int slimfs_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

uint64_t slimfs_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool slimfs_path_next(const char **p, const char **name, size_t *len)
{
	const char *s = *p;

	for (;;) {
		const char *e;

		while (*s == '/')
			s++;
		if (!*s) {
			*p = s;
			return false;
		}
		e = strchrnul(s, '/');
		if (e - s == 1 && s[0] == '.') {
			s = e;
			continue;
		}
		*name = s;
		*len = (size_t)(e - s);
		*p = e;
		return true;
	}
}

int slimfs_grow(void **v, size_t *cap, size_t need, size_t elem, size_t min)
{
	size_t c = *cap ? *cap : (min ? min : 1);
	void *p;

	if (need <= *cap)
		return 0;
	while (c < need) {
		if (c > SIZE_MAX / 2)
			return -ENOMEM;
		c *= 2;
	}
	if (c > SIZE_MAX / elem)
		return -ENOMEM;
	p = realloc(*v, c * elem);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

int slimfs_unix_connect(const char *path, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

int slimfs_is_fuse(const char *path)
{
	struct statfs sf;

	if (statfs(path, &sf) < 0)
		return -errno;
	return sf.f_type == SLIMFS_FUSE_SUPER_MAGIC;
}
