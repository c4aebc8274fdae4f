// SPDX-License-Identifier: MIT
/* Persistent, content-addressed chunk cache shared by all mounts (see diskcache.h). */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "diskcache.h"
#include "slimfs/util.h"

/* Evict down to this share of max_bytes, so scans stay rare. */
#define EVICT_TARGET_PCT 90u
/* Temporary files older than this are leftovers of a crash. */
#define STALE_TMP_SECS 3600

struct slimfs_diskcache {
	int dirfd; /* DIR/chunks */
	uint64_t max_bytes;
	_Atomic uint64_t bytes;
	_Atomic uint64_t evictions;
	_Atomic unsigned tmp_seq;   /* names of temporary files without O_TMPFILE */
	pthread_mutex_t evict_lock; /* one evicting thread at a time */
	/*
	 * What the cache held at open is summed by a thread of its own, so the
	 * mount does not wait for it: opening a fresh cache (256 directories) or
	 * stat'ing a populated one cost 20-30 ms of a cold mount on its critical
	 * path. Until it is done, `bytes` counts only this process's puts and
	 * nothing is evicted; entries put meanwhile may be counted twice, which
	 * only makes the next eviction (a full rescan) come early.
	 */
	pthread_t scanner;
	bool scanner_started;
	atomic_bool scanned; /* bytes includes what the cache held at open */
	atomic_bool stop;    /* freeing: the scanner gives up */
};

struct dc_entry {
	int64_t mtime_ns;
	uint64_t size;
	uint8_t sub;
	char name[65];
};

/* Space an entry takes, roughly (whole 4 KiB blocks). */
static uint64_t entry_cost(uint64_t size)
{
	return (size + 4095) & ~(uint64_t)4095;
}

static void entry_path(const uint8_t sha256[32], char out[68])
{
	char hex[65];

	slimfs_hex(sha256, 32, hex);
	snprintf(out, 68, "%.2s/%s", hex, hex);
}

static bool is_hex64(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 64;
}

/*
 * Walks every entry. With list set, collects them (for eviction); always
 * removes stale temporary files and returns the bytes held.
 */
static int scan(struct slimfs_diskcache *dc, struct dc_entry **list, size_t *n, uint64_t *bytes)
{
	size_t cap = 0;
	time_t now = time(NULL);

	*bytes = 0;
	if (list) {
		*list = NULL;
		*n = 0;
	}
	for (unsigned sub = 0; sub < 256; sub++) {
		char subname[3];
		struct dirent *de;
		DIR *d;
		int fd;

		if (atomic_load(&dc->stop))
			break;
		snprintf(subname, sizeof(subname), "%02x", sub);
		fd = openat(dc->dirfd, subname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			continue;
		}
		while ((de = readdir(d))) {
			struct stat st;

			if (de->d_name[0] == '.' && (!de->d_name[1] || de->d_name[1] == '.'))
				continue;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			if (!S_ISREG(st.st_mode))
				continue;
			if (!is_hex64(de->d_name) || strncmp(de->d_name, subname, 2) != 0) {
				if (strncmp(de->d_name, ".tmp-", 5) == 0 &&
				    now - st.st_mtime > STALE_TMP_SECS)
					unlinkat(dirfd(d), de->d_name, 0);
				continue;
			}
			*bytes += entry_cost((uint64_t)st.st_size);
			if (!list)
				continue;
			if (*n == cap) {
				size_t ncap = cap ? cap * 2 : 1024;
				struct dc_entry *nl = realloc(*list, ncap * sizeof(**list));

				if (!nl) {
					closedir(d);
					free(*list);
					*list = NULL;
					return -ENOMEM;
				}
				*list = nl;
				cap = ncap;
			}
			(*list)[*n] = (struct dc_entry){
				.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
					    st.st_mtim.tv_nsec,
				.size = (uint64_t)st.st_size,
				.sub = (uint8_t)sub,
			};
			memcpy((*list)[*n].name, de->d_name, 65);
			(*n)++;
		}
		closedir(d);
	}
	return 0;
}

static void evict(struct slimfs_diskcache *dc);

/*
 * A new unnamed file in subdirectory sub (O_TMPFILE), else a named temporary
 * one (its name in tmp, for the rename). An fd or -errno.
 */
static int open_tmp(struct slimfs_diskcache *dc, const char *sub, const char *path, char *tmp,
		    size_t tmplen)
{
	int fd = openat(dc->dirfd, sub, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);

	tmp[0] = '\0';
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		snprintf(tmp, tmplen, "%s/.tmp-%s-%d-%u", sub, path + 3, (int)getpid(),
			 atomic_fetch_add(&dc->tmp_seq, 1));
		fd = openat(dc->dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
	}
	return fd < 0 ? -errno : fd;
}

static void *scanner_main(void *arg)
{
	struct slimfs_diskcache *dc = arg;
	uint64_t held;

	if (scan(dc, NULL, NULL, &held) < 0 || atomic_load(&dc->stop))
		return NULL;
	atomic_fetch_add(&dc->bytes, held);
	atomic_store(&dc->scanned, true);
	if (atomic_load(&dc->bytes) > dc->max_bytes)
		evict(dc); /* the bound may have shrunk since the last mount */
	return NULL;
}

int slimfs_diskcache_open(const char *dir, uint64_t max_bytes, struct slimfs_diskcache **out)
{
	struct slimfs_diskcache *dc;
	_cleanup_close_ int dfd = -1;
	int r;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create cache directory '%s'", dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return log_error_errno(-errno, "cannot open cache directory '%s'", dir);
	if (mkdirat(dfd, "chunks", 0755) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s/chunks'", dir);
	dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -ENOMEM;
	dc->dirfd = openat(dfd, "chunks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dc->dirfd < 0) {
		r = log_error_errno(-errno, "cannot open '%s/chunks'", dir);
		free(dc);
		return r;
	}
	pthread_mutex_init(&dc->evict_lock, NULL);
	dc->max_bytes = max_bytes;
	*out = dc;
	return 0;
}

void slimfs_diskcache_scan(struct slimfs_diskcache *dc)
{
	if (!dc || dc->scanner_started)
		return;
	dc->scanner_started = pthread_create(&dc->scanner, NULL, scanner_main, dc) == 0;
	if (!dc->scanner_started)
		scanner_main(dc); /* no thread: sum it here */
}

void slimfs_diskcache_free(struct slimfs_diskcache *dc)
{
	if (!dc)
		return;
	atomic_store(&dc->stop, true);
	if (dc->scanner_started)
		pthread_join(dc->scanner, NULL);
	close(dc->dirfd);
	pthread_mutex_destroy(&dc->evict_lock);
	free(dc);
}

uint64_t slimfs_diskcache_bytes(struct slimfs_diskcache *dc)
{
	return atomic_load(&dc->bytes);
}

uint64_t slimfs_diskcache_evictions(struct slimfs_diskcache *dc)
{
	return atomic_load(&dc->evictions);
}

int slimfs_diskcache_remove(struct slimfs_diskcache *dc, const uint8_t sha256[32])
{
	char path[68];
	struct stat st;

	entry_path(sha256, path);
	if (fstatat(dc->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (unlinkat(dc->dirfd, path, 0) < 0)
		return errno == ENOENT ? 0 : -errno;
	atomic_fetch_sub(&dc->bytes,
			 MIN(atomic_load(&dc->bytes), entry_cost((uint64_t)st.st_size)));
	return 0;
}

int slimfs_diskcache_get(struct slimfs_diskcache *dc, const uint8_t sha256[32], void *buf,
			 size_t len)
{
	_cleanup_close_ int fd = -1;
	char path[68];
	struct stat st;
	int r;

	entry_path(sha256, path);
	fd = openat(dc->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != len) {
		log_warn("disk cache entry '%s' has %lld bytes, expected %zu: removed", path,
			 (long long)st.st_size, len);
		slimfs_diskcache_remove(dc, sha256);
		return -EUCLEAN;
	}
	r = slimfs_pread_all(fd, buf, len, 0);
	if (r < 0)
		return r;
	/* Recently used: eviction goes by mtime. Best effort. */
	(void)futimens(fd, NULL);
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct dc_entry *x = a, *y = b;

	return (x->mtime_ns > y->mtime_ns) - (x->mtime_ns < y->mtime_ns);
}

static void evict(struct slimfs_diskcache *dc)
{
	_cleanup_free_ struct dc_entry *list = NULL;
	uint64_t bytes, target = dc->max_bytes / 100 * EVICT_TARGET_PCT;
	size_t n = 0, removed = 0;

	if (pthread_mutex_trylock(&dc->evict_lock) != 0)
		return; /* another thread is at it */
	if (scan(dc, &list, &n, &bytes) < 0)
		goto out;
	qsort(list, n, sizeof(*list), cmp_entry);
	for (size_t i = 0; i < n && bytes > target; i++) {
		char path[68];

		snprintf(path, sizeof(path), "%02x/%s", list[i].sub, list[i].name);
		if (unlinkat(dc->dirfd, path, 0) < 0)
			continue;
		bytes -= MIN(bytes, entry_cost(list[i].size));
		removed++;
	}
	atomic_store(&dc->bytes, bytes);
	atomic_fetch_add(&dc->evictions, removed);
	log_debug("disk cache: evicted %zu entries", removed);
out:
	pthread_mutex_unlock(&dc->evict_lock);
}

int slimfs_diskcache_put(struct slimfs_diskcache *dc, const uint8_t sha256[32], const void *buf,
			 size_t len)
{
	char path[68], sub[3], tmp[128];
	_cleanup_close_ int fd = -1;
	int r;

	entry_path(sha256, path);
	memcpy(sub, path, 2);
	sub[2] = '\0';
	fd = open_tmp(dc, sub, path, tmp, sizeof(tmp));
	if (fd == -ENOENT) {
		/* The 256 subdirectories are made as entries first land in them. */
		if (mkdirat(dc->dirfd, sub, 0755) < 0 && errno != EEXIST)
			return -errno;
		fd = open_tmp(dc, sub, path, tmp, sizeof(tmp));
	}
	if (fd < 0)
		return fd;
	r = slimfs_write_all(fd, buf, len);
	if (r < 0)
		goto fail;
	if (tmp[0]) {
		if (renameat(dc->dirfd, tmp, dc->dirfd, path) < 0) {
			r = -errno;
			goto fail;
		}
	} else {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, proc, dc->dirfd, path, AT_SYMLINK_FOLLOW) < 0) {
			if (errno == EEXIST)
				return 0; /* same digest, same bytes: stored by someone else */
			return -errno;
		}
	}
	if (atomic_fetch_add(&dc->bytes, entry_cost(len)) + entry_cost(len) > dc->max_bytes &&
	    atomic_load(&dc->scanned))
		evict(dc);
	return 0;
fail:
	if (tmp[0])
		unlinkat(dc->dirfd, tmp, 0);
	return r;
}
