/* SPDX-License-Identifier: MIT */
/* Small helpers shared by index/ and fs/: logging, cleanup, byte order. */
#ifndef SLIMFS_UTIL_H
#define SLIMFS_UTIL_H

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum slimfs_log_level {
	SLIMFS_LOG_ERROR = 0,
	SLIMFS_LOG_WARN = 1,
	SLIMFS_LOG_INFO = 2,
	SLIMFS_LOG_DEBUG = 3,
};

/* Messages at or below this level are printed (default: INFO). */
void slimfs_log_set_level(int level);
int slimfs_log_get_level(void);
/* Sends messages to syslog instead of stderr (daemon mode). */
void slimfs_log_use_syslog(bool on);
void slimfs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void slimfs_logv(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) slimfs_log(SLIMFS_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  slimfs_log(SLIMFS_LOG_WARN, __VA_ARGS__)
#define log_info(...)  slimfs_log(SLIMFS_LOG_INFO, __VA_ARGS__)
#define log_debug(...) slimfs_log(SLIMFS_LOG_DEBUG, __VA_ARGS__)
/* Logs "<message>: <strerror(-r)>" and returns r (a negative errno). */
int slimfs_log_errno(int level, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define log_error_errno(r, ...) slimfs_log_errno(SLIMFS_LOG_ERROR, (r), __VA_ARGS__)
#define log_warn_errno(r, ...)	slimfs_log_errno(SLIMFS_LOG_WARN, (r), __VA_ARGS__)

/* Cleanup attributes (gcc and clang). */
static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define _cleanup_(f)	__attribute__((cleanup(f)))
#define _cleanup_free_	_cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

static inline void *steal_ptr_(void *pp)
{
	void **p = pp, *v = *p;
	*p = NULL;
	return v;
}
#define steal_ptr(pp) (0 ? *(pp) : steal_ptr_(pp))

static inline int steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)     ((a) < (b) ? (a) : (b))
#define MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Little-endian loads and stores of possibly unaligned fields. */
static inline uint16_t get_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}
static inline uint32_t get_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}
static inline uint64_t get_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* Full-length I/O: retry short transfers and EINTR. 0 or -errno; -EIO on EOF. */
int slimfs_pread_all(int fd, void *buf, size_t len, uint64_t off);
int slimfs_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
int slimfs_write_all(int fd, const void *buf, size_t len);

/*
 * Opens an unlinked temporary file for reading and writing in dir (NULL:
 * $TMPDIR, else /var/tmp): O_TMPFILE, or on file systems without it a
 * mkstemp() file unlinked at once. what names it in messages ("spool").
 * Returns the fd, or -errno (logged).
 */
int slimfs_tmpfile_open(const char *dir, const char *what);

/*
 * Replaces path with len bytes of buf, all or nothing: a temporary file next
 * to it, written, chmod'ed to mode, fsync'ed, then renamed over path.
 * 0 or -errno (logged).
 */
int slimfs_write_file_replace(const char *path, const void *buf, size_t len, mode_t mode);

/*
 * Base64 (RFC 4648 section 4, with padding) of n bytes into out, which holds
 * 4 * ((n + 2) / 3) + 1 bytes, NUL-terminated.
 */
void slimfs_base64(const void *in, size_t n, char *out);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void slimfs_hex(const uint8_t *in, size_t n, char *out);
/* The value of hex digit c (either case), or -1. */
int slimfs_hexval(int c);
/* Exactly 2n hex digits at s (stops at the first bad one) into n bytes. 0 or -EINVAL. */
int slimfs_unhex(const char *s, size_t n, uint8_t *out);
/* Parses "sha256:<64 hex>" (or bare hex). 0 or -EINVAL. */
int slimfs_parse_digest(const char *s, uint8_t out[32]);

/* "1.5 MiB" style, into buf. */
const char *slimfs_fmt_bytes(uint64_t n, char *buf, size_t len);
/* Parses "64K", "1M", "2G", "123" (binary units). 0 or -EINVAL. */
int slimfs_parse_size(const char *s, uint64_t *out);

/* Monotonic clock, nanoseconds. */
uint64_t slimfs_now_ns(void);

/*
 * Makes room for need elements of size elem in the array *v of capacity *cap:
 * the capacity doubles, from min. 0, or -ENOMEM with *v and *cap unchanged.
 * SLIMFS_GROW(arr, cap, need, min) for an array variable and its size_t cap.
 */
/* Connects a stream socket to the unix socket at path: 0 with *fd, or -errno. */
int slimfs_unix_connect(const char *path, int *fd);

/* The statfs magic of FUSE file systems, and whether path is on one: 1, 0 or -errno. */
#define SLIMFS_FUSE_SUPER_MAGIC 0x65735546
int slimfs_is_fuse(const char *path);

/*
 * Large buffers (the plain index, decode scratch) in their own mapping, aligned
 * to and a multiple of 2 MiB, and advised for transparent huge pages once
 * slimfs_huge_pages(true) was called (the mount daemon: a first touch of a
 * 4 KiB page costs 10-40 us on a VM, of a 2 MiB page ~150 us). Zeroed; freed
 * with slimfs_huge_free and the same len. NULL when out of memory.
 */
void slimfs_huge_pages(bool on);
bool slimfs_huge_pages_on(void);
void *slimfs_huge_alloc(size_t len);
void slimfs_huge_free(void *p, size_t len);
/* Gives the pages of a slimfs_huge_alloc buffer back to the kernel; they read
 * as zeros again on next touch. The caller makes sure nobody uses them
 * meanwhile. 0 or -errno. */
int slimfs_huge_release(void *p, size_t len);
/*
 * Zeroed memory of its own mapping, in 4 KiB pages taken on first touch: for
 * tables mostly never written (per inode, per chunk), where calloc would clear
 * them whole from a reused heap. Freed with slimfs_zmap_free and the same len.
 */
void *slimfs_zmap(size_t len);
void slimfs_zmap_free(void *p, size_t len);

int slimfs_grow(void **v, size_t *cap, size_t need, size_t elem, size_t min);
#define SLIMFS_GROW(arr, cap, need, min)                                                           \
	slimfs_grow((void **)&(arr), &(cap), (need), sizeof(*(arr)), (min))

/*
 * Splits the next component off path *p ("a//./b/" gives "a" then "b"): true
 * with (*name, *len) and *p past it, false at the end. Empty and "."
 * components are skipped; ".." is returned like any name, for the caller to
 * refuse or resolve.
 */
bool slimfs_path_next(const char **p, const char **name, size_t *len);

#endif
