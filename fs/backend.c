// SPDX-License-Identifier: MIT
/* Backend dispatch and the local-file backend. */
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "dl_curl.h"
#include "slimfs/fetch.h"
#include "slimfs/util.h"

struct file_backend {
	struct slimfs_backend b;
	int fd;
	bool leased;	     /* slimfs_backend_lease took one on fd */
	_Atomic bool broken; /* ... and slimfs_backend_unchanged saw it break */
};

/* The descriptor whose lease the SIGIO handler gives up (one per process; a
 * global: a signal handler has no other way in). */
static _Atomic int lease_fd = -1;

void slimfs_fetch_stats_add(struct slimfs_fetch_stats *s, uint64_t bytes, uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned i = 0;

	while (i + 1 < SLIMFS_LAT_BUCKETS && us >= (16ull << i))
		i++;
	__atomic_fetch_add(&s->requests, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->bytes, bytes, __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->lat[i], 1, __ATOMIC_RELAXED);
}

uint64_t slimfs_fetch_stats_percentile(const struct slimfs_fetch_stats *s, double pct)
{
	uint64_t total = 0, seen = 0, want;

	for (unsigned i = 0; i < SLIMFS_LAT_BUCKETS; i++)
		total += __atomic_load_n(&s->lat[i], __ATOMIC_RELAXED);
	if (!total)
		return 0;
	want = (uint64_t)((double)total * pct / 100.0 + 0.5);
	want = MAX(want, 1u);
	for (unsigned i = 0; i < SLIMFS_LAT_BUCKETS; i++) {
		seen += __atomic_load_n(&s->lat[i], __ATOMIC_RELAXED);
		if (seen >= want)
			return 16ull << i;
	}
	return 16ull << (SLIMFS_LAT_BUCKETS - 1);
}

static int file_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	struct file_backend *f = (struct file_backend *)b;
	uint64_t start = slimfs_now_ns();
	int r;

	if (off > b->size || len > b->size - off)
		return -ERANGE;
	r = slimfs_pread_all(f->fd, buf, len, off);
	if (r == 0)
		slimfs_fetch_stats_add(&b->stats, len, slimfs_now_ns() - start);
	else
		__atomic_fetch_add(&b->stats.errors, 1, __ATOMIC_RELAXED);
	return r;
}

static void file_free(struct slimfs_backend *b)
{
	struct file_backend *f = (struct file_backend *)b;

	if (f->leased) /* the handler must not touch a number reused later */
		atomic_store(&lease_fd, -1);
	close(f->fd);
}

static const struct slimfs_backend_ops file_ops = {
	.read = file_read,
	.free = file_free,
};

int slimfs_backend_open_file(const char *path, struct slimfs_backend **out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct file_backend *f;
	struct stat st;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0)
		return log_error_errno(-errno, "cannot stat '%s'", path);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("'%s': not a regular file", path);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->b.name = strdup(path);
	if (!f->b.name) {
		free(f);
		return -ENOMEM;
	}
	f->b.ops = &file_ops;
	f->b.size = (uint64_t)st.st_size;
	f->fd = steal_fd(&fd);
	*out = &f->b;
	return 0;
}

/*
 * Network emulation (--rate, --rtt): a wrapper that delays each request by
 * the round-trip time and passes bytes through one token bucket shared by all
 * requests, as one link would. Works for every backend, without root.
 */
struct shaped_backend {
	struct slimfs_backend b;
	struct slimfs_backend *inner;
	uint64_t rate_bps, rtt_ns;
	pthread_mutex_t lock;
	uint64_t link_free_ns; /* when the emulated link has sent what it was given */
};

static void sleep_until(uint64_t t)
{
	uint64_t now = slimfs_now_ns();
	struct timespec ts;

	if (t <= now)
		return;
	ts.tv_sec = (time_t)((t - now) / 1000000000u);
	ts.tv_nsec = (long)((t - now) % 1000000000u);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int shaped_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	struct shaped_backend *s = (struct shaped_backend *)b;
	uint64_t start = slimfs_now_ns(), done;
	int r;

	sleep_until(start + s->rtt_ns);
	r = slimfs_backend_read(s->inner, off, buf, len);
	if (r < 0) {
		__atomic_fetch_add(&b->stats.errors, 1, __ATOMIC_RELAXED);
		return r;
	}
	if (s->rate_bps) {
		uint64_t xfer_ns = (uint64_t)((double)len * 1e9 / (double)s->rate_bps);

		pthread_mutex_lock(&s->lock);
		s->link_free_ns = MAX(s->link_free_ns, start + s->rtt_ns) + xfer_ns;
		done = s->link_free_ns;
		pthread_mutex_unlock(&s->lock);
		sleep_until(done);
	}
	slimfs_fetch_stats_add(&b->stats, len, slimfs_now_ns() - start);
	return 0;
}

static void shaped_free(struct slimfs_backend *b)
{
	struct shaped_backend *s = (struct shaped_backend *)b;

	slimfs_backend_free(s->inner);
	pthread_mutex_destroy(&s->lock);
}

static int shaped_wait(struct slimfs_backend *b)
{
	return slimfs_backend_wait(((struct shaped_backend *)b)->inner);
}

static const struct slimfs_backend_ops shaped_ops = {
	.read = shaped_read,
	.wait = shaped_wait,
	.free = shaped_free,
};

static int shape(struct slimfs_backend *inner, const struct slimfs_fetch_opts *o,
		 struct slimfs_backend **out)
{
	struct shaped_backend *s = calloc(1, sizeof(*s));

	if (!s || asprintf(&s->b.name, "%s (emulated link)", inner->name) < 0) {
		free(s);
		slimfs_backend_free(inner);
		return -ENOMEM;
	}
	s->b.ops = &shaped_ops;
	s->b.size = inner->size;
	s->b.remote = true;
	s->inner = inner;
	s->rate_bps = o->rate_bps;
	s->rtt_ns = (uint64_t)o->rtt_us * 1000u;
	pthread_mutex_init(&s->lock, NULL);
	*out = &s->b;
	return 0;
}

static bool is_http(const char *src)
{
	return strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0;
}

static bool is_oci(const char *src)
{
	return strncmp(src, "oci://", 6) == 0;
}

void slimfs_backend_preload(const char *src)
{
	if (is_http(src) || is_oci(src))
		slimfs_dl_curl_preload();
}

void slimfs_backend_preload_settle(void)
{
	slimfs_dl_curl_preload_join();
}

int slimfs_backend_open(const char *src, const struct slimfs_fetch_opts *o,
			struct slimfs_backend **out)
{
	struct slimfs_backend *b;
	int r;

	if (is_http(src))
		r = slimfs_backend_open_http(src, o, NULL, &b);
	else if (is_oci(src))
		r = slimfs_backend_open_oci(src, o, &b);
	else
		r = slimfs_backend_open_file(src, &b);
	if (r < 0)
		return r;
	if (o && (o->rate_bps || o->rtt_us))
		return shape(b, o, out);
	*out = b;
	return 0;
}

int slimfs_backend_wait(struct slimfs_backend *b)
{
	return b->ops->wait ? b->ops->wait(b) : 0;
}

void slimfs_backend_free(struct slimfs_backend *b)
{
	if (!b)
		return;
	b->ops->free(b);
	free(b->name);
	free(b);
}

/* Local file descriptor behind a backend, or -1 (lets callers mmap the index). */
int slimfs_backend_local_fd(struct slimfs_backend *b)
{
	return b->ops == &file_ops ? ((struct file_backend *)b)->fd : -1;
}

/* A writer opens the leased file: give the lease up at once (fcntl is
 * async-signal-safe), so that it need not wait for lease-break-time. */
static void on_lease_break(int sig)
{
	int fd = atomic_load(&lease_fd), saved = errno;

	(void)sig;
	if (fd >= 0)
		(void)fcntl(fd, F_SETLEASE, F_UNLCK);
	errno = saved;
}

/* File systems where every change of a file's bytes goes through this
 * kernel's VFS, which breaks leases. */
static bool lease_fs(long type)
{
	return type == EXT4_SUPER_MAGIC || type == XFS_SUPER_MAGIC || type == BTRFS_SUPER_MAGIC ||
	       type == F2FS_SUPER_MAGIC || type == TMPFS_MAGIC;
}

int slimfs_backend_lease(struct slimfs_backend *b)
{
	struct sigaction sa = {.sa_handler = on_lease_break, .sa_flags = SA_RESTART};
	struct file_backend *f;
	struct statfs st;
	int none = -1, r;

	if (b->ops != &file_ops)
		return -EOPNOTSUPP;
	f = (struct file_backend *)b;
	if (fstatfs(f->fd, &st) < 0)
		return -errno;
	if (!lease_fs((long)st.f_type))
		return -EOPNOTSUPP;
	if (!atomic_compare_exchange_strong(&lease_fd, &none, f->fd))
		return -EBUSY;
	/* The break is signalled with SIGIO, whose default action ends us. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGIO, &sa, NULL) < 0 || fcntl(f->fd, F_SETLEASE, F_RDLCK) < 0) {
		r = -errno;
		atomic_store(&lease_fd, -1);
		return r;
	}
	f->leased = true;
	return 0;
}

bool slimfs_backend_unchanged(struct slimfs_backend *b)
{
	struct file_backend *f = (struct file_backend *)b;

	if (b->ops != &file_ops || !f->leased ||
	    atomic_load_explicit(&f->broken, memory_order_relaxed))
		return false;
	/* F_GETLEASE says F_UNLCK as soon as a break has begun (and after). */
	if (fcntl(f->fd, F_GETLEASE) == F_RDLCK)
		return true;
	atomic_store(&f->broken, true); /* never taken again */
	return false;
}
