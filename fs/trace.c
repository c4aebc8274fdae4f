// SPDX-License-Identifier: MIT
/* Access traces (see trace.h and the trace format notes). */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include <xxhash.h>

#include "bits.h"
#include "profile.h"
#include "slimfs/format.h"
#include "slimfs/util.h"
#include "trace.h"

#define MISSING_SLOTS_MIN 1024u
#define PAGE		  SLIMFS_PROFILE_PAGE

struct slimfs_trace {
	const struct slimfs_index *idx;
	const struct slimfs_info *info;
	uint64_t start_ns;
	FILE *f;
	int err; /* first write error */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t flusher;
	bool stop, has_flusher;
	slimfs_bits *seen_inode; /* a P line written for the inode */
	slimfs_bits *seen_chunk;
	_Atomic(char *) *paths; /* per inode id: its path, once known */
	/* Per inode id: a bit per page of the file read already (R lines written). */
	_Atomic(_Atomic uint8_t *) *pages;
	/* Missing paths: a set of 64-bit hashes (open addressing), under lock. */
	uint64_t *missing;
	size_t missing_cap, missing_len;
};

static void *flusher(void *arg)
{
	struct slimfs_trace *t = arg;
	struct timespec ts;

	pthread_mutex_lock(&t->lock);
	while (!t->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&t->wake, &t->lock, &ts);
		if (fflush(t->f) != 0 && !t->err)
			t->err = -errno;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int slimfs_trace_open(const char *path, const struct slimfs_index *idx, const char *view_name,
		      int64_t kernel_readahead, uint64_t start_ns, struct slimfs_trace **out)
{
	struct slimfs_trace *t;
	char digest[72], ra[24];
	int fd, r;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->idx = idx;
	t->info = slimfs_index_info(idx);
	t->start_ns = start_ns;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	t->seen_inode = slimfs_bits_new(t->info->inode_count);
	t->seen_chunk = slimfs_bits_new(t->info->chunk_count);
	t->paths = calloc(t->info->inode_count + 1, sizeof(*t->paths));
	t->pages = calloc(t->info->inode_count + 1, sizeof(*t->pages));
	if (!t->seen_inode || !t->seen_chunk || !t->paths || !t->pages) {
		r = -ENOMEM;
		goto fail;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = log_error_errno(-errno, "cannot create trace file '%s'", path);
		goto fail;
	}
	t->f = fdopen(fd, "w");
	if (!t->f) {
		r = -errno;
		close(fd);
		goto fail;
	}
	setvbuf(t->f, NULL, _IOFBF, 1 << 16);
	slimfs_index_digest_str(idx, digest);
	if (kernel_readahead < 0)
		snprintf(ra, sizeof(ra), "default");
	else
		snprintf(ra, sizeof(ra), "%" PRId64, kernel_readahead);
	fprintf(t->f, "# slimfs-trace %d\timage=%s\tview=%s\tkernel_readahead=%s\n",
		SLIMFS_TRACE_VERSION, digest, view_name, ra);
	*out = t;
	return 0;
fail:
	slimfs_trace_close(t);
	return r;
}

int slimfs_trace_run(struct slimfs_trace *t)
{
	int r = -pthread_create(&t->flusher, NULL, flusher, t);

	t->has_flusher = r == 0;
	return r;
}

int slimfs_trace_close(struct slimfs_trace *t)
{
	int r;

	if (!t)
		return 0;
	if (t->has_flusher) {
		pthread_mutex_lock(&t->lock);
		t->stop = true;
		pthread_cond_signal(&t->wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->flusher, NULL);
	}
	if (t->f && fclose(t->f) != 0 && !t->err)
		t->err = -errno;
	r = t->err;
	if (t->paths)
		for (uint64_t i = 0; i <= t->info->inode_count; i++)
			free(atomic_load(&t->paths[i]));
	free((void *)t->paths);
	if (t->pages)
		for (uint64_t i = 0; i <= t->info->inode_count; i++)
			free((void *)atomic_load(&t->pages[i]));
	free((void *)t->pages);
	free((void *)t->seen_inode);
	free((void *)t->seen_chunk);
	free(t->missing);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->wake);
	free(t);
	return r;
}

static uint64_t usec(struct slimfs_trace *t)
{
	return (slimfs_now_ns() - t->start_ns) / 1000u;
}

static void write_path(struct slimfs_trace *t, const char *path, const char *mark)
{
	_cleanup_free_ char *esc = slimfs_tracefile_escape(path);

	if (!esc)
		return;
	pthread_mutex_lock(&t->lock);
	if (fprintf(t->f, "P\t%" PRIu64 "\t%s%s%s\n", usec(t), esc, mark ? "\t" : "",
		    mark ? mark : "") < 0 &&
	    !t->err)
		t->err = -EIO;
	pthread_mutex_unlock(&t->lock);
}

int slimfs_index_path(const struct slimfs_index *idx, uint32_t id, char *buf, size_t len)
{
	char tmp[PATH_MAX];
	size_t pos = sizeof(tmp) - 1, n;
	uint32_t d = id, depth = 0;

	tmp[pos] = '\0';
	while (d != 0) {
		struct slimfs_inode cur, parent;
		struct slimfs_dirent de;
		bool found = false;

		if (depth++ > 4096 || slimfs_index_inode(idx, d, &cur) < 0 ||
		    slimfs_index_inode(idx, cur.parent, &parent) < 0)
			return -EUCLEAN;
		for (uint32_t i = 0; i < parent.count; i++) {
			if (slimfs_index_dirent(idx, &parent, i, &de) < 0)
				return -EUCLEAN;
			if (de.ino == d) {
				found = true;
				break;
			}
		}
		if (!found)
			return -EUCLEAN;
		if (de.name_len + 1 > pos)
			return -ENAMETOOLONG;
		pos -= de.name_len;
		memcpy(tmp + pos, de.name, de.name_len);
		tmp[--pos] = '/';
		d = cur.parent;
	}
	if (pos == sizeof(tmp) - 1)
		tmp[--pos] = '/';
	n = sizeof(tmp) - 1 - pos;
	if (len)
		snprintf(buf, len, "%s", tmp + pos);
	return (int)n;
}

/* The path of inode id, remembered once known. Borrowed: lives until close. */
static const char *path_of(struct slimfs_trace *t, uint32_t id)
{
	char buf[PATH_MAX], *p, *expected = NULL;

	if (id > t->info->inode_count)
		return NULL;
	p = atomic_load_explicit(&t->paths[id], memory_order_acquire);
	if (p)
		return p;
	if (slimfs_index_path(t->idx, id, buf, sizeof(buf)) < 0)
		return NULL;
	p = strdup(buf);
	if (!p)
		return NULL;
	if (!atomic_compare_exchange_strong(&t->paths[id], &expected, p)) {
		free(p);
		return expected;
	}
	return p;
}

/* Adds h to the missing set; false if it was there. Under lock. */
static bool missing_add(struct slimfs_trace *t, uint64_t h)
{
	size_t mask, k;

	h |= 1; /* 0 marks a free slot */
	if ((t->missing_len + 1) * 2 > t->missing_cap) {
		size_t cap = t->missing_cap ? t->missing_cap * 2 : MISSING_SLOTS_MIN;
		uint64_t *n = calloc(cap, sizeof(*n));

		if (!n)
			return false;
		for (size_t i = 0; i < t->missing_cap; i++) {
			if (!t->missing[i])
				continue;
			for (k = t->missing[i] & (cap - 1); n[k]; k = (k + 1) & (cap - 1))
				;
			n[k] = t->missing[i];
		}
		free(t->missing);
		t->missing = n;
		t->missing_cap = cap;
	}
	mask = t->missing_cap - 1;
	for (k = h & mask; t->missing[k]; k = (k + 1) & mask)
		if (t->missing[k] == h)
			return false;
	t->missing[k] = h;
	t->missing_len++;
	return true;
}

void slimfs_trace_lookup(struct slimfs_trace *t, uint32_t parent, const char *name, uint32_t child,
			 enum slimfs_trace_kind kind)
{
	const char *dir = path_of(t, parent);
	_cleanup_free_ char *path = NULL;
	char *expected = NULL;
	bool fresh;

	if (!dir)
		return;
	if (kind != SLIMFS_TRACE_MISSING &&
	    (child > t->info->inode_count || slimfs_bits_test(t->seen_inode, child)))
		return; /* recorded already: the common case costs no allocation */
	if (asprintf(&path, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name) < 0)
		return;
	if (kind == SLIMFS_TRACE_MISSING) {
		uint64_t h = XXH3_64bits(path, strlen(path));

		pthread_mutex_lock(&t->lock);
		fresh = missing_add(t, h);
		pthread_mutex_unlock(&t->lock);
		if (fresh)
			write_path(t, path, "missing");
		return;
	}
	if (!slimfs_bits_set(t->seen_inode, child))
		return;
	write_path(t, path, kind == SLIMFS_TRACE_HIDDEN ? "hidden" : NULL);
	if (atomic_compare_exchange_strong(&t->paths[child], &expected, path))
		path = NULL; /* kept */
}

void slimfs_trace_inode(struct slimfs_trace *t, uint32_t id)
{
	const char *path;

	if (id > t->info->inode_count || slimfs_bits_test(t->seen_inode, id))
		return;
	path = path_of(t, id);
	if (!path || !slimfs_bits_set(t->seen_inode, id))
		return;
	write_path(t, path, NULL);
}

void slimfs_trace_chunk(struct slimfs_trace *t, uint32_t chunk)
{
	struct slimfs_chunk ch;
	char hex[33];

	if (chunk >= t->info->chunk_count || !slimfs_bits_set(t->seen_chunk, chunk))
		return;
	if (slimfs_index_chunk(t->idx, chunk, &ch) < 0)
		return;
	slimfs_hex(ch.id, 16, hex);
	pthread_mutex_lock(&t->lock);
	if (fprintf(t->f, "C\t%" PRIu64 "\t%s\t%u\n", usec(t), hex, chunk) < 0 && !t->err)
		t->err = -EIO;
	pthread_mutex_unlock(&t->lock);
}

/* The page bitmap of inode id (a file of size bytes), allocated on first use. */
static _Atomic uint8_t *pages_of(struct slimfs_trace *t, uint32_t id, uint64_t size)
{
	_Atomic uint8_t *p = atomic_load_explicit(&t->pages[id], memory_order_acquire), *expected;
	uint64_t bytes = size / PAGE / 8 + 1; /* page (size - 1) / PAGE at most */

	if (p)
		return p;
	if (bytes > SIZE_MAX)
		return NULL;
	p = calloc((size_t)bytes, 1);
	if (!p)
		return NULL;
	expected = NULL;
	if (!atomic_compare_exchange_strong(&t->pages[id], &expected, p)) {
		free((void *)p);
		return expected;
	}
	return p;
}

static void write_read(struct slimfs_trace *t, const char *esc, uint64_t off, uint64_t len,
		       uint64_t size)
{
	pthread_mutex_lock(&t->lock);
	if (fprintf(t->f, "R\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%s\n", usec(t),
		    off, len, size, esc) < 0 &&
	    !t->err)
		t->err = -EIO;
	pthread_mutex_unlock(&t->lock);
}

void slimfs_trace_read(struct slimfs_trace *t, uint32_t id, uint64_t size, uint64_t off,
		       uint64_t len)
{
	_cleanup_free_ char *esc = NULL;
	_Atomic uint8_t *pages;
	uint64_t end, run = UINT64_MAX;

	if (id > t->info->inode_count || !len || off >= size)
		return;
	end = MIN(size, off + MIN(len, size - off));
	pages = pages_of(t, id, size);
	if (!pages)
		return;
	/*
	 * Each page is claimed by one reader (an atomic bit); a run of pages
	 * this read claimed is one R line, clipped to the bytes asked for. A
	 * page read again costs one load, a read of known pages writes nothing.
	 */
	for (uint64_t pg = off / PAGE, last = (end - 1) / PAGE; pg <= last + 1; pg++) {
		bool fresh = pg <= last && slimfs_bits_set(pages, pg);
		const char *path;

		if (fresh) {
			if (run == UINT64_MAX)
				run = pg;
			continue;
		}
		if (run == UINT64_MAX)
			continue;
		if (!esc) {
			path = path_of(t, id);
			esc = path ? slimfs_tracefile_escape(path) : NULL;
			if (!esc)
				return;
		}
		write_read(t, esc, MAX(off, run * PAGE), MIN(end, pg * PAGE) - MAX(off, run * PAGE),
			   size);
		run = UINT64_MAX;
	}
}
