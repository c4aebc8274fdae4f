// SPDX-License-Identifier: MIT
/*
 * The page-cache filler: one thread, a bounded queue of jobs, each "store
 * these bytes of this inode". See notify.h.
 *
 * Why skip the request's pages: the kernel locks the pages of a read until
 * its reply has been processed (and, for a synchronous read, until the
 * reader woke up), and notify_store locks each page it fills, so storing
 * into them waits for the reader. Other readers' locked pages can make the
 * filler wait too, never a FUSE worker. But notify_store holds the
 * connection's killsb lock while it waits, and unmount takes that lock
 * before it aborts the connection: the filler must be stopped while the
 * workers still answer reads, or the connection aborted (slimfs_notify_stop).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "notify.h"
#include "slimfs/util.h"
#include "watchdog.h"

#define PAGE	  4096u
#define QUEUE_MAX 64u
/* Bound on the chunk bytes queued jobs keep from eviction. */
#define PINNED_MAX (32ull << 20)
/*
 * Chunk extents the filler stored lately (hashed, newest wins). A read of a
 * page that straddles two chunks misses again after both were stored (only
 * whole pages are stored): without this, each such miss stored both chunks
 * again (fio, 1 job, 4 KiB random reads of a 256 MiB file for 5 s: 3677
 * misses stored 223k pages, more than 3x the file).
 */
#define DONE_SLOTS 4096u
/* A walk this many inodes past a file pushed ahead has overtaken it. */
#define OVERTAKEN_SPAN 4096u
#define STOP_WAIT_S    3
#define ABORT_WAIT_S   10

struct job {
	fuse_ino_t ino;
	uint64_t size;		     /* of the file */
	uint64_t from, to;	     /* file bytes to store (whole file: data NULL) */
	uint64_t skip_from, skip_to; /* pages of the request, never stored */
	const uint8_t *data;	     /* bytes [from, to), held by ref */
	struct slimfs_cache_entry *ref;
	bool whole_file;
	bool ahead;	  /* pushed ahead of a walk (slimfs_notify_file) */
	bool whole_chunk; /* data is all of ref's chunk */
};

struct slimfs_notify {
	struct slimfs_fs *fs;	 /* borrowed */
	struct fuse_session *se; /* borrowed */
	enum slimfs_fill_mode mode;
	char *mountpoint;
	bool remote;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	struct job q[QUEUE_MAX]; /* ring, under lock */
	unsigned head, count;
	uint64_t pinned;   /* bytes of queued chunk jobs */
	bool stop, exited; /* under lock */
	bool joined;
	_Atomic uint8_t *filled; /* file mode: one bit per inode, "whole file queued" */
	_Atomic uint64_t stored_ext[DONE_SLOTS]; /* done_key() of stored chunk extents */
	/* Filler thread only. */
	uint8_t *filebuf;
	_Atomic fuse_ino_t walk_at; /* slimfs_notify_walk_at */
	_Atomic uint64_t stored_pages, stored_bytes, dropped_jobs, dropped_pages, coalesced, failed;
	_Atomic uint64_t seam_pages, seams_missed;
};

int slimfs_fill_mode_parse(const char *s, enum slimfs_fill_mode *out)
{
	if (strcmp(s, "off") == 0)
		*out = SLIMFS_FILL_OFF;
	else if (strcmp(s, "chunk") == 0)
		*out = SLIMFS_FILL_CHUNK;
	else if (strcmp(s, "file") == 0)
		*out = SLIMFS_FILL_FILE;
	else if (strcmp(s, "auto") == 0)
		*out = SLIMFS_FILL_AUTO;
	else
		return -EINVAL;
	return 0;
}

const char *slimfs_fill_mode_name(enum slimfs_fill_mode m)
{
	return m == SLIMFS_FILL_CHUNK  ? "chunk"
	       : m == SLIMFS_FILL_FILE ? "file"
	       : m == SLIMFS_FILL_AUTO ? "auto"
				       : "off";
}

static uint64_t round_up(uint64_t x)
{
	return (x + PAGE - 1) / PAGE * PAGE;
}

static uint64_t round_down(uint64_t x)
{
	return x / PAGE * PAGE;
}

/*
 * The part of [from, to) the filler may store: whole pages, or the file's
 * last page up to EOF (the kernel zeroes the rest of a new page that ends
 * at the file size). *a == *b when nothing is left.
 */
static void storable(uint64_t size, uint64_t from, uint64_t to, uint64_t *a, uint64_t *b)
{
	*a = round_up(from);
	*b = to >= size ? size : round_down(to);
	if (*b < *a)
		*b = *a;
}

static uint64_t pages_of(uint64_t bytes)
{
	return (bytes + PAGE - 1) / PAGE;
}

/* Pages of [from, to) outside [skip_from, skip_to), storable ones only. */
static uint64_t job_pages(const struct job *j)
{
	uint64_t a, b, n = 0;

	storable(j->size, j->from, j->to, &a, &b);
	if (a < MIN(b, j->skip_from))
		n += pages_of(MIN(b, j->skip_from) - a);
	if (MAX(a, j->skip_to) < b)
		n += pages_of(b - MAX(a, j->skip_to));
	return n;
}

static uint64_t done_key(fuse_ino_t ino, uint64_t from)
{
	uint64_t k = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ from * 0xc2b2ae3d27d4eb4full;

	return k ? k : 1; /* 0 is an empty slot */
}

static _Atomic uint64_t *done_slot(struct slimfs_notify *n, uint64_t key)
{
	return &n->stored_ext[(key ^ key >> 29) % DONE_SLOTS];
}

static void job_drop(struct slimfs_notify *n, struct job *j)
{
	slimfs_cache_put(n->fs->cache, j->ref);
	j->ref = NULL;
}

/* Queues j (its ref moves to the queue) or drops it; returns whether queued. */
static bool enqueue(struct slimfs_notify *n, struct job *j)
{
	bool queued = false, dup = false;
	uint64_t bytes = j->whole_file ? 0 : j->to - j->from;

	pthread_mutex_lock(&n->lock);
	for (unsigned k = 0; k < n->count && !dup; k++) {
		const struct job *o = &n->q[(n->head + k) % QUEUE_MAX];

		dup = o->ino == j->ino && o->from == j->from && o->whole_file == j->whole_file;
	}
	if (!dup && !n->stop && n->count < QUEUE_MAX && n->pinned + bytes <= PINNED_MAX) {
		n->q[(n->head + n->count) % QUEUE_MAX] = *j;
		n->count++;
		n->pinned += bytes;
		queued = true;
		pthread_cond_signal(&n->wake);
	}
	pthread_mutex_unlock(&n->lock);
	if (queued) {
		j->ref = NULL;
		return true;
	}
	if (dup) {
		atomic_fetch_add_explicit(&n->coalesced, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&n->dropped_jobs, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&n->dropped_pages, job_pages(j), memory_order_relaxed);
	}
	return false;
}

/*
 * Queues all of a small file (but the skipped pages) unless it was queued
 * before: 1 when queued now, 0 when before (or nothing to store), -ENOBUFS
 * when the queue is full, -EINVAL when the file is larger than
 * SLIMFS_FILL_FILE_MAX or ino no inode of the image.
 */
static int whole_file_job(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size,
			  uint64_t skip_from, uint64_t skip_to, bool ahead)
{
	uint64_t id = ino - 1;
	uint8_t bit = (uint8_t)(1u << (id % 8));
	struct job j;

	if (size > SLIMFS_FILL_FILE_MAX || id >= n->fs->info->inode_count)
		return -EINVAL;
	if (atomic_fetch_or(&n->filled[id / 8], bit) & bit)
		return 0;
	j = (struct job){.ino = ino,
			 .size = size,
			 .from = 0,
			 .to = size,
			 .skip_from = skip_from,
			 .skip_to = skip_to,
			 .whole_file = true,
			 .ahead = ahead};
	if (job_pages(&j) == 0)
		return 0;
	if (enqueue(n, &j))
		return 1;
	atomic_fetch_and(&n->filled[id / 8], (uint8_t)~bit); /* a later read tries again */
	return -ENOBUFS;
}

/* File mode: the first read of a small file queues all of it. True when the
 * file is (being) filled whole, so its chunks need no jobs of their own. */
static bool queue_whole_file(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size,
			     uint64_t skip_from, uint64_t skip_to)
{
	return n->mode == SLIMFS_FILL_FILE &&
	       whole_file_job(n, ino, size, skip_from, skip_to, false) != -EINVAL;
}

void slimfs_notify_walk_at(struct slimfs_notify *n, fuse_ino_t ino)
{
	if (n)
		atomic_store_explicit(&n->walk_at, ino, memory_order_relaxed);
}

/* A file pushed ahead that the walk has reached: it read the file itself. */
static bool overtaken(struct slimfs_notify *n, const struct job *j)
{
	fuse_ino_t at = atomic_load_explicit(&n->walk_at, memory_order_relaxed);

	return j->ahead && j->ino <= at && at - j->ino < OVERTAKEN_SPAN;
}

void slimfs_notify_read(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size, uint64_t off,
			uint64_t len, struct slimfs_notify_piece *pieces, unsigned npieces)
{
	uint64_t skip_from = round_down(off), skip_to = round_up(off + len);

	if (!n || n->mode == SLIMFS_FILL_OFF)
		return;
	if (queue_whole_file(n, ino, size, skip_from, skip_to))
		return;
	for (unsigned k = 0; k < npieces; k++) {
		struct slimfs_notify_piece *p = &pieces[k];
		struct job j = {.ino = ino,
				.size = size,
				.from = p->file_off,
				.to = MIN(size, p->file_off + p->len),
				.skip_from = skip_from,
				.skip_to = skip_to,
				.data = p->data,
				.ref = p->ref,
				.whole_chunk = p->whole_chunk};

		uint64_t key = done_key(ino, p->file_off), a, b;

		/* Pieces inside the request (all but the first and last) have nothing. */
		if (!p->ref || job_pages(&j) == 0)
			continue;
		/*
		 * A miss on pages the filler could have stored means they are
		 * gone (evicted, invalidated): store again. A miss only on a
		 * page the chunk shares with its neighbour: skip a chunk that
		 * was just stored.
		 */
		storable(size, j.from, j.to, &a, &b);
		if ((skip_to <= a || skip_from >= b) &&
		    atomic_load_explicit(done_slot(n, key), memory_order_relaxed) == key) {
			atomic_fetch_add_explicit(&n->coalesced, 1, memory_order_relaxed);
			continue;
		}
		if (enqueue(n, &j))
			p->ref = NULL;
	}
}

/* Stores bytes [p, e) of ino (whole pages, or up to EOF) from data: 0 or -errno. */
static int store(struct slimfs_notify *n, fuse_ino_t ino, uint64_t p, uint64_t e,
		 const uint8_t *data)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(e - p);
	int r;

	/* One buffer: libfuse writes it as it is (several would be copied first). */
	bv.buf[0].mem = (void *)data;
	r = fuse_lowlevel_notify_store(n->se, ino, (off_t)p, &bv, 0);
	if (r < 0) {
		atomic_fetch_add_explicit(&n->failed, 1, memory_order_relaxed);
		log_debug("page cache fill: inode %llu at %llu: %s", (unsigned long long)(ino - 1),
			  (unsigned long long)p, strerror(-r));
		return r;
	}
	atomic_fetch_add_explicit(&n->stored_pages, pages_of(e - p), memory_order_relaxed);
	atomic_fetch_add_explicit(&n->stored_bytes, e - p, memory_order_relaxed);
	return 0;
}

/* Stores bytes [from, to) of ino, given in data, less the skipped pages:
 * true when the kernel took them all. */
static bool store_run(struct slimfs_notify *n, const struct job *j, uint64_t from, uint64_t to,
		      const uint8_t *data)
{
	uint64_t a, b, part[2][2];
	bool all = true;

	storable(j->size, from, to, &a, &b);
	part[0][0] = a;
	part[0][1] = MIN(b, j->skip_from);
	part[1][0] = MAX(a, j->skip_to);
	part[1][1] = b;
	for (unsigned k = 0; k < 2; k++)
		if (part[k][0] < part[k][1] &&
		    store(n, j->ino, part[k][0], part[k][1], data + (part[k][0] - from)) < 0)
			all = false;
	return all;
}

/*
 * The page of j's file at p (PAGE bytes, or up to EOF) into page, from what
 * is decoded in memory: j's own bytes, the other extents' from the memory
 * cache (slimfs_cache_peek: their chunks whole, or the ends kept of them),
 * zeros for holes. Never fetches or decodes. False when a byte is missing.
 */
static bool assemble_page(struct slimfs_notify *n, const struct job *j,
			  const struct slimfs_inode *in, uint64_t p, uint8_t *page)
{
	struct slimfs_fs *fs = n->fs;
	uint64_t end = MIN(p + PAGE, j->size);
	struct slimfs_extent_iter it;
	int r;

	memset(page, 0, end - p);
	slimfs_extent_iter_init(&it, fs->idx, in, p, end, 0);
	while ((r = slimfs_extent_next(&it)) > 0) {
		struct slimfs_chunk ch;

		if (it.x.file_off == j->from) {
			memcpy(page + (it.from - p), j->data + (it.from - j->from),
			       it.to - it.from);
			continue;
		}
		/* An extent past its chunk is an error for readers (read_range):
		 * never make any of its pages readable. */
		if (slimfs_index_chunk(fs->idx, it.x.chunk, &ch) < 0 ||
		    slimfs_extent_check(&it.x, ch.usize) < 0 ||
		    slimfs_cache_peek(fs->cache, it.x.chunk, it.chunk_from,
				      (uint32_t)(it.to - it.from), page + (it.from - p)) < 0)
			return false;
	}
	return r == 0;
}

/*
 * The pages j's extent shares with its neighbours (another chunk's extent,
 * or a hole): store_run stores whole pages of one extent only, so without
 * these a reader's first touch of a shared page is a FUSE read that needs
 * two chunks, and 4 KiB random reads of a large file keep decoding chunks
 * that were evicted since (fio, 1 job, 256 MiB file, 64M memory cache:
 * 45% of the FUSE reads, 2.8 chunk decodes per chunk and pass of the file).
 */
static bool store_seams(struct slimfs_notify *n, const struct job *j)
{
	uint64_t seam[2] = {round_down(j->from), round_down(j->to)};
	uint8_t page[PAGE];
	struct slimfs_inode in;

	/* The last page of the file is stored whole by store_run (up to EOF). */
	bool want[2] = {j->from % PAGE != 0, j->to % PAGE != 0 && j->to < j->size}, all = true;

	if (!want[0] && !want[1])
		return true;
	if (slimfs_index_inode(n->fs->idx, (uint32_t)(j->ino - 1), &in) < 0 || in.size != j->size)
		return false;
	if (want[0] && want[1] && seam[0] == seam[1])
		want[1] = false; /* an extent within one page */
	for (unsigned k = 0; k < 2; k++) {
		uint64_t p = seam[k];

		if (!want[k] || (p >= j->skip_from && p < j->skip_to))
			continue;
		if (!assemble_page(n, j, &in, p, page)) {
			atomic_fetch_add_explicit(&n->seams_missed, 1, memory_order_relaxed);
			all = false;
			continue;
		}
		if (store(n, j->ino, p, MIN(p + PAGE, j->size), page) == 0)
			atomic_fetch_add_explicit(&n->seam_pages, 1, memory_order_relaxed);
		else
			all = false;
	}
	return all;
}

/*
 * A file that is one extent from offset 0 to its end (most small files) is
 * stored straight from its chunk, without the copy into filebuf. False when
 * the file is not like that (fill_file does it).
 */
static bool fill_one_extent(struct slimfs_notify *n, const struct job *j,
			    const struct slimfs_inode *in)
{
	struct slimfs_fs *fs = n->fs;
	struct slimfs_cache_entry *ref;
	struct slimfs_extent x;
	const uint8_t *data;
	uint32_t clen;

	if (in->count != 1 || slimfs_index_extent(fs->idx, in, 0, &x) < 0 || x.file_off != 0 ||
	    x.len != in->size)
		return false;
	if ((n->remote && !slimfs_cache_has(fs->cache, x.chunk)) ||
	    slimfs_cache_get(fs->cache, x.chunk, &ref, &data, &clen) < 0)
		return true; /* nothing to store */
	if (slimfs_extent_check(&x, clen) == 0)
		store_run(n, j, 0, in->size, data + x.chunk_off);
	slimfs_cache_put(fs->cache, ref);
	return true;
}

/*
 * A whole small file: its extents decoded into one buffer (holes stay zero),
 * stored in runs. For a remote image, extents whose chunk is not in memory
 * end a run: file mode never fetches.
 */
static void fill_file(struct slimfs_notify *n, const struct job *j)
{
	struct slimfs_fs *fs = n->fs;
	struct slimfs_extent_iter it;
	struct slimfs_inode in;
	uint64_t run = 0;
	int r;

	if (slimfs_index_inode(fs->idx, (uint32_t)(j->ino - 1), &in) < 0 || !S_ISREG(in.mode) ||
	    in.size != j->size || in.size > SLIMFS_FILL_FILE_MAX)
		return;
	if (fill_one_extent(n, j, &in))
		return;
	memset(n->filebuf, 0, in.size);
	slimfs_extent_iter_init(&it, fs->idx, &in, 0, in.size, 0);
	while ((r = slimfs_extent_next(&it)) > 0) {
		struct slimfs_cache_entry *ref;
		const uint8_t *data;
		uint32_t clen;

		if ((n->remote && !slimfs_cache_has(fs->cache, it.x.chunk)) ||
		    slimfs_cache_get(fs->cache, it.x.chunk, &ref, &data, &clen) < 0) {
			if (run < it.from)
				store_run(n, j, run, it.from, n->filebuf + run);
			run = it.to;
			continue;
		}
		if (slimfs_extent_check(&it.x, clen) == 0)
			memcpy(n->filebuf + it.from, data + it.chunk_from, it.to - it.from);
		else
			run = it.to; /* corrupt record: never store it */
		slimfs_cache_put(fs->cache, ref);
	}
	if (r == 0 && run < in.size)
		store_run(n, j, run, in.size, n->filebuf + run);
}

/*
 * A whole small file stored from the calling thread when it is one extent
 * (most are), unless it was queued or stored before; others are queued.
 */
static int file_now(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size)
{
	uint64_t id = ino - 1;
	uint8_t bit = (uint8_t)(1u << (id % 8));
	struct job j = {.ino = ino, .size = size, .to = size, .whole_file = true, .ahead = true};
	struct slimfs_inode in;

	if (size > SLIMFS_FILL_FILE_MAX || id >= n->fs->info->inode_count ||
	    slimfs_index_inode(n->fs->idx, (uint32_t)id, &in) < 0 || !S_ISREG(in.mode) ||
	    in.size != size)
		return -EINVAL;
	if (atomic_fetch_or(&n->filled[id / 8], bit) & bit)
		return 0;
	if (fill_one_extent(n, &j, &in))
		return 1;
	atomic_fetch_and(&n->filled[id / 8], (uint8_t)~bit);
	return whole_file_job(n, ino, size, 0, 0, true);
}

int slimfs_notify_file(struct slimfs_notify *n, fuse_ino_t ino, uint64_t size, bool now)
{
	if (!n || n->mode == SLIMFS_FILL_OFF)
		return -EINVAL;
	return now ? file_now(n, ino, size) : whole_file_job(n, ino, size, 0, 0, true);
}

static void *filler(void *arg)
{
	struct slimfs_notify *n = arg;

	pthread_mutex_lock(&n->lock);
	for (;;) {
		struct job j;

		while (!n->stop && n->count == 0)
			pthread_cond_wait(&n->wake, &n->lock);
		if (n->stop)
			break;
		j = n->q[n->head];
		n->head = (n->head + 1) % QUEUE_MAX;
		n->count--;
		pthread_mutex_unlock(&n->lock);
		if (overtaken(n, &j)) {
			atomic_fetch_add_explicit(&n->dropped_jobs, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&n->dropped_pages, job_pages(&j),
						  memory_order_relaxed);
		} else if (j.whole_file) {
			fill_file(n, &j);
		} else {
			uint64_t key = done_key(j.ino, j.from);
			bool all = store_run(n, &j, j.from, j.to, j.data);

			/* Both: the seams are stored even when a run failed. */
			all = store_seams(n, &j) && all;
			/* All of the chunk is in the page cache: see slimfs_cache_stored. */
			if (all && j.whole_chunk)
				slimfs_cache_stored(n->fs->cache, j.ref);
			atomic_store_explicit(done_slot(n, key), key, memory_order_relaxed);
		}
		job_drop(n, &j);
		pthread_mutex_lock(&n->lock);
		if (!j.whole_file)
			n->pinned -= j.to - j.from;
	}
	n->exited = true;
	pthread_cond_broadcast(&n->done);
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int slimfs_notify_start(struct slimfs_fs *fs, struct fuse_session *se, enum slimfs_fill_mode mode,
			const char *mountpoint, struct slimfs_notify **out)
{
	struct slimfs_notify *n = calloc(1, sizeof(*n));
	pthread_condattr_t ca;
	int r;

	if (!n)
		return -ENOMEM;
	n->fs = fs;
	n->se = se;
	n->mode = mode;
	n->remote = fs->img->backend->remote;
	n->mountpoint = strdup(mountpoint);
	/* Whole files: file mode, and push-ahead (slimfs_notify_file) in any mode. */
	if (mode != SLIMFS_FILL_OFF) {
		n->filled = calloc(fs->info->inode_count / 8 + 1, 1);
		n->filebuf = malloc(SLIMFS_FILL_FILE_MAX);
	}
	if (!n->mountpoint || (mode != SLIMFS_FILL_OFF && (!n->filled || !n->filebuf))) {
		r = -ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->wake, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->done, &ca);
	pthread_condattr_destroy(&ca);
	r = -pthread_create(&n->thread, NULL, filler, n);
	if (r < 0) {
		pthread_mutex_destroy(&n->lock);
		pthread_cond_destroy(&n->wake);
		pthread_cond_destroy(&n->done);
		goto fail;
	}
	*out = n;
	return 0;
fail:
	free((void *)n->filled);
	free(n->filebuf);
	free(n->mountpoint);
	free(n);
	return r;
}

void slimfs_notify_stats(struct slimfs_notify *n, struct slimfs_notify_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	out->stored_pages = atomic_load(&n->stored_pages);
	out->stored_bytes = atomic_load(&n->stored_bytes);
	out->dropped_jobs = atomic_load(&n->dropped_jobs);
	out->dropped_pages = atomic_load(&n->dropped_pages);
	out->coalesced = atomic_load(&n->coalesced);
	out->failed = atomic_load(&n->failed);
	out->seam_pages = atomic_load(&n->seam_pages);
	out->seams_missed = atomic_load(&n->seams_missed);
}

enum slimfs_fill_mode slimfs_notify_mode(struct slimfs_notify *n)
{
	return n ? n->mode : SLIMFS_FILL_OFF;
}

/* Aborts the connection of the mount: every pending read ends, its pages unlock. */
static void abort_connection(const char *mountpoint)
{
	unsigned conn;
	int r = slimfs_fuse_conn_of(mountpoint, &conn);

	if (r < 0) {
		log_warn_errno(r, "cannot find the FUSE connection of '%s' to abort", mountpoint);
		return;
	}
	r = slimfs_fuse_conn_abort(conn);
	if (r < 0)
		log_warn_errno(r, "cannot abort FUSE connection %u through fusectl", conn);
}

/* Waits up to secs for the filler to exit; true if it did. Under n->lock. */
static bool wait_exited(struct slimfs_notify *n, int secs)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += secs;
	while (!n->exited)
		if (pthread_cond_timedwait(&n->done, &n->lock, &until) == ETIMEDOUT)
			break;
	return n->exited;
}

int slimfs_notify_stop(struct slimfs_notify *n)
{
	bool exited;

	if (!n || n->joined)
		return 0;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_broadcast(&n->wake);
	exited = wait_exited(n, STOP_WAIT_S);
	if (!exited) {
		pthread_mutex_unlock(&n->lock);
		log_warn("page cache filler blocked in the kernel: aborting the FUSE connection");
		abort_connection(n->mountpoint);
		pthread_mutex_lock(&n->lock);
		exited = wait_exited(n, ABORT_WAIT_S);
	}
	pthread_mutex_unlock(&n->lock);
	if (!exited) {
		log_error("cannot stop the page cache filler");
		return -ETIMEDOUT;
	}
	pthread_join(n->thread, NULL);
	n->joined = true;
	while (n->count) {
		job_drop(n, &n->q[n->head]);
		n->head = (n->head + 1) % QUEUE_MAX;
		n->count--;
	}
	return 0;
}

void slimfs_notify_free(struct slimfs_notify *n)
{
	if (!n || slimfs_notify_stop(n) < 0)
		return;
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->wake);
	pthread_cond_destroy(&n->done);
	free((void *)n->filled);
	free(n->filebuf);
	free(n->mountpoint);
	free(n);
}
