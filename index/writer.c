// SPDX-License-Identifier: MIT
/*
 * Image writer: tree -> index + data (format.h, FORMAT.md).
 *
 *   1. walk: DFS pre-order from the root, children sorted by name; inode ids
 *      at first encounter (root 0), dirents of a directory contiguous.
 *   2. data: first the calling thread packs the hot byte ranges a profile
 *      names in large files ("#@range"), in profile order, into packs of
 *      their own. Then worker threads prepare regular files in parallel, a
 *      window ahead of the calling thread: a large file is read, cut by the
 *      content-defined chunker within each data segment (holes skipped) and,
 *      when it has hot ranges, within each gap between them,
 *      each chunk named by XXH3-128 and, the first time its id is seen,
 *      compressed (one ZSTD_CCtx per worker) and digested (SHA-256) right
 *      there, so identical chunks are compressed once; a small file is read
 *      and hashed. The calling thread takes the files in a fixed order and
 *      packs the small ones into shared chunks cut at file boundaries (packs
 *      are compressed by the workers too): first the small files a profile
 *      names, in profile order, in packs of their own; then every other
 *      file in inode id order. A worker appends each frame to the spill
 *      file as soon as it is compressed (an unlinked temporary file, at an
 *      offset reserved by one atomic add, written with no lock held); a
 *      chunk keeps only (spill offset, csize), so memory does not grow
 *      with the image: buffers, queues and per-chunk records only.
 *   3. order: hot packs, profiled packs, then the profile's chunk ids (but
 *      for the cold parts of files with hot ranges), then by first
 *      reference in id order.
 *   4. index: superblock and sections laid out in memory, the sections
 *      compressed into one zstd frame (unless --index-compression none),
 *      checksummed, written at 0, then the frames in the final order copied
 *      from the spill file to data_off (copy_file_range, runs of adjacent frames in
 *      one call). Early copy (no profile, output on ext4 or XFS): the final
 *      order is then known during step 2, so the calling thread copies each
 *      frame to the output (from offset 0) as soon as it and all before it
 *      are compressed, and hands the output to writeback as it goes; step 4
 *      then inserts data_off bytes in front of the frames
 *      (FALLOC_FL_INSERT_RANGE: no data moves) and writes the index there.
 *      The caller's out_fd is its temporary file, so an error
 *      anywhere leaves no image, and the spill file is unlinked from the
 *      start (O_TMPFILE where the file system has it).
 *
 * Everything that decides output bytes runs on the calling thread in a fixed
 * order; workers only fill in per-chunk results (and the spill file, whose
 * layout does depend on timing but is never output as it is), so the image
 * does not depend on thread timing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "cdc.h"
#include "profile.h"
#include "tree.h"

/* Buffer of the copy from the spill file when copy_file_range cannot. */
#define COPY_BUF_SIZE (1u << 20)
#define READ_WINDOW   (4u << 20)
/* Worst-case zstd frame overhead for incompressible input is a few bytes per
 * 128 KiB block; keep chunks this far below SLIMFS_CHUNK_MAX so that every
 * frame fits under it too. */
#define CHUNK_SLACK 4096u
/* Files prepared ahead of the calling thread, per worker. */
#define FILE_WINDOW_PER_THREAD 256u
/* Chunks queued for compression, in largest chunks per worker: beyond it a
 * worker compresses what it cuts itself. */
#define COMPRESS_BACKLOG_PER_THREAD 4u
/*
 * Hot range packs hold this many average chunks (or the largest chunk). All
 * are prefetched, so larger packs over-fetch nothing then and compress
 * better: on the bookworm rootfs, the prefetch of W2 of bench/lazy.sh was
 * 1.11, 1.10, 1.07 and 1.08 x Z with packs of 64, 128, 256 and 512 KiB, W1's
 * 1.13 and 1.10 x Z with 64 and 256 KiB (128 KiB average chunks).
 */
#define HOT_PACK_CHUNKS 2u

/* ---- chunks ---------------------------------------------------------- */

struct wchunk {
	uint8_t id[16];
	uint8_t sha256[32];
	uint32_t usize, csize;
	uint64_t spill_off;   /* its frame in the spill file; set by a worker */
	_Atomic bool ready;   /* compressed and in the spill file (a worker's release) */
	struct wchunk *alias; /* same id as an earlier chunk (a repeated pack) */
	uint32_t order;	      /* final index, UINT32_MAX = not yet placed */
	bool hot;	      /* a pack of hot ranges */
	bool dense;	      /* a profile's pack: compressed at prefetch_level */
	bool cold_ranged;     /* holds cold bytes of a file with hot ranges */
	bool other_ref;	      /* referenced by an extent of any other kind */
};

#define CHUNK_BLOCK 4096u

/* Chunks live in fixed blocks so that workers can hold pointers while the
 * main thread adds more. */
struct chunk_store {
	struct wchunk **blocks;
	size_t nblocks, n;
};

static struct wchunk *chunk_new(struct chunk_store *s)
{
	size_t b = s->n / CHUNK_BLOCK;

	if (s->n >= UINT32_MAX)
		return NULL;
	if (b == s->nblocks) {
		struct wchunk **nb = realloc(s->blocks, (s->nblocks + 1) * sizeof(*nb));

		if (!nb)
			return NULL;
		s->blocks = nb;
		nb[b] = calloc(CHUNK_BLOCK, sizeof(struct wchunk));
		if (!nb[b])
			return NULL;
		s->nblocks++;
	}
	struct wchunk *c = &s->blocks[b][s->n % CHUNK_BLOCK];
	c->order = UINT32_MAX;
	s->n++;
	return c;
}

static struct wchunk *real(struct wchunk *c)
{
	return c->alias ? c->alias : c;
}

static struct wchunk *chunk_at(const struct chunk_store *s, size_t i)
{
	return &s->blocks[i / CHUNK_BLOCK][i % CHUNK_BLOCK];
}

static void chunk_store_free(struct chunk_store *s)
{
	for (size_t b = 0; b < s->nblocks; b++)
		free(s->blocks[b]);
	free(s->blocks);
}

/* Open-addressing map from a 16-byte hash to (chunk, offset). */
struct hmap_ent {
	uint8_t key[16];
	struct wchunk *c; /* NULL: empty slot */
	uint32_t off;
};

struct hmap {
	struct hmap_ent *e;
	size_t cap, n; /* cap: power of two */
};

static struct hmap_ent *hmap_find(const struct hmap *m, const uint8_t key[16])
{
	size_t i;

	if (!m->cap)
		return NULL;
	i = get_le64(key) & (m->cap - 1);
	for (;; i = (i + 1) & (m->cap - 1)) {
		if (!m->e[i].c)
			return NULL;
		if (!memcmp(m->e[i].key, key, 16))
			return &m->e[i];
	}
}

static int hmap_add(struct hmap *m, const uint8_t key[16], struct wchunk *c, uint32_t off)
{
	size_t i;

	if ((m->n + 1) * 4 > m->cap * 3) {
		size_t ncap = m->cap ? m->cap * 2 : 1024;
		struct hmap_ent *ne = calloc(ncap, sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		for (size_t j = 0; j < m->cap; j++) {
			if (!m->e[j].c)
				continue;
			i = get_le64(m->e[j].key) & (ncap - 1);
			while (ne[i].c)
				i = (i + 1) & (ncap - 1);
			ne[i] = m->e[j];
		}
		free(m->e);
		m->e = ne;
		m->cap = ncap;
	}
	i = get_le64(key) & (m->cap - 1);
	while (m->e[i].c)
		i = (i + 1) & (m->cap - 1);
	memcpy(m->e[i].key, key, 16);
	m->e[i].c = c;
	m->e[i].off = off;
	m->n++;
	return 0;
}

/* ---- writer state ---------------------------------------------------- */

struct winode {
	struct slimfs_tinode *ti;
	struct slimfs_tnode *first; /* first link, for messages */
	uint32_t parent, nlink;
	uint32_t dirent_start, dirent_count; /* directories */
	uint32_t ext_start, ext_count;	     /* regular files */
	/* profiled small files: packed first, extent kept here until the
	 * extents are written in inode order */
	bool profiled;
	struct wchunk *pchunk;
	uint32_t poff;
	/* large files with hot ranges: their packed extents, w->hot[hot_start,
	 * + hot_count) in file order; the rest is chunked around them */
	uint32_t hot_start, hot_count;
};

struct wdirent {
	struct slimfs_tnode *node;
};

struct wextent {
	uint64_t file_off;
	struct wchunk *c;
	uint32_t chunk_off, len;
};

/* A packed extent of a hot range, of inode ino. */
struct hotext {
	uint32_t ino;
	struct wextent e;
};

/* Packs sealed in order, for the front of the data. */
struct packlist {
	struct wchunk **v;
	size_t n, cap;
};

struct strent {
	uint64_t off;
	uint32_t len;
	uint32_t used;
};

struct strtab {
	uint8_t *buf;
	size_t len, cap;
	struct strent *set; /* dedup: open addressing over XXH3-64 */
	size_t set_cap, set_n;
};

/*
 * One regular file prepared by a worker: a small file's content and hashes,
 * or a large file's chunks (cut, named, deduplicated and, when new,
 * compressed right away). The calling thread consumes these in a fixed
 * order, so what it decides does not depend on which worker finished first.
 */
struct fjob {
	struct winode *wi;
	bool done; /* under pool.lock */
	int err;
	uint8_t *buf; /* small: owned, the content with holes as zeros */
	uint8_t key[16];
	uint64_t h64;
	struct wextent *ext; /* large: owned, in file order */
	size_t next, ext_cap;
};

/* A chunk to compress: its plain bytes follow the header. */
struct cjob {
	struct cjob *next;
	struct wchunk *c;
	size_t len;
	uint8_t data[];
};

struct writer;

/*
 * Two queues: chunks to compress (taken first, so that compression keeps
 * up and its backlog stays small) and files to prepare (a ring, at most
 * one window of them).
 */
struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct cjob *chead, **ctail;
	size_t cbytes, cbytes_max; /* queued plain bytes, and the bound */
	struct fjob **fq;	   /* ring of fqcap */
	size_t fqcap, fqhead, fqlen;
	size_t inflight; /* queued + being worked on, both kinds */
	unsigned idle;	 /* workers waiting for work */
	size_t ncj;	 /* chunks queued */
	bool stop;
	int err;
	pthread_t *th;
	unsigned nth;
	struct writer *w;
};

/*
 * The spill file: compressed frames in the order workers finish them, until
 * the final order is known. A worker reserves its range with one atomic add
 * and writes it without any lock held.
 */
struct spill {
	int fd;
	_Atomic uint64_t end;
};

/*
 * Copies between the spill file and the image: in the kernel while it can
 * (copy_file_range: no bytes through user space; same file system when the
 * spill file sits next to the output), else through one buffer, for good
 * once the kernel says it cannot (another file system, an old kernel).
 */
struct copier {
	int in, out;
	bool no_cfr;
	uint8_t *buf; /* COPY_BUF_SIZE, allocated on the first buffered copy */
	size_t calls;
};

/*
 * Frames copied into the output while the data is still being compressed
 * (write_out): from the spill file, in their final order, at output offset
 * 0 for now; the index is inserted in front of them at the end.
 */
struct early {
	bool on;
	struct copier cp;
	struct wchunk **v; /* placed chunks, in order: a prefix of the final order */
	size_t n, cap;
	size_t next_ext;	  /* first extent not yet looked at */
	uint64_t pos, synced;	  /* bytes copied, bytes handed to writeback */
	uint64_t run_in, run_len; /* pending run of adjacent frames */
	size_t runs;
};

struct writer {
	struct slimfs_tree *t;
	const struct slimfs_write_args *a;
	const struct slimfs_build_opts *o;
	uint32_t view_mask;

	struct winode *ino;
	size_t nino, ino_cap;
	struct wdirent *dir;
	size_t ndir, dir_cap;
	uint32_t nxattr;

	struct wextent *ext;
	size_t next, ext_cap;
	/* chunks and by_id are shared with the workers, under chunk_lock */
	pthread_mutex_t chunk_lock;
	struct chunk_store chunks;
	struct hmap by_id;
	struct hmap small; /* calling thread only */
	struct slimfs_cdc cdc;
	uint32_t chunk_max;
	uint32_t small_max; /* files of 1..small_max bytes are packed */

	/* the open pack of small files */
	uint8_t *pack;
	size_t pack_len;
	struct wchunk *pack_chunk; /* reserved when the pack gets its first file */
	struct packlist *seal_to;  /* packs sealed now are listed there */
	struct packlist ppacks;	   /* packs of profiled files, in order */
	size_t nprofiled, nprofile_found;

	/* hot ranges: packed extents (sorted by inode, then offset, once all
	 * are packed) and their packs in profile order */
	struct hotext *hot;
	size_t nhot, hot_cap;
	struct packlist hpacks;
	uint32_t hot_max; /* bytes per hot pack */
	size_t nranges_used, nhot_files, ncold_skipped;
	uint64_t hot_bytes;

	struct pool pool;
	struct spill spill;
	struct early early;
	ZSTD_CCtx *icctx; /* the index's, set up in step 2 (index_cctx_warm) */
	bool icctx_tried;
	uint64_t total_bytes, files, files_done, bytes_done, last_progress;
	struct strtab str;
};

static void progress(struct writer *w, const char *phase, uint64_t done, uint64_t total, bool force)
{
	struct slimfs_progress p = {.phase = phase, .bytes_done = done, .bytes_total = total};
	uint64_t now;

	if (!w->o->progress)
		return;
	now = slimfs_now_ns();
	if (!force && now - w->last_progress < 100000000ull)
		return;
	w->last_progress = now;
	p.files_done = w->files_done;
	p.files_total = w->files;
	w->o->progress(&p, w->o->progress_ud);
}

static int too_many(const char *what)
{
	log_error("too many %s for the image format (at most %" PRIu32 ")", what, UINT32_MAX - 1);
	return -EFBIG;
}

/* ---- worker pool ----------------------------------------------------- */

/* Per worker: one compression context and buffers reused for every job. */
struct wctx {
	ZSTD_CCtx *cctx;
	uint8_t *dst; /* ZSTD_compressBound(chunk_max) */
	size_t dst_cap;
	uint8_t *window; /* READ_WINDOW + chunk_max */
	struct spill *spill;
	int level, dense_level, cur_level; /* cur_level: what cctx is set to */
	struct slimfs_xbuf xbuf;
};

static void chunk_id(const void *buf, size_t len, uint8_t id[16])
{
	XXH128_canonical_t canon;

	XXH128_canonicalFromHash(&canon, XXH3_128bits(buf, len));
	memcpy(id, canon.digest, 16);
}

/* Compresses src into c's frame, digests it and appends it to the spill file. */
static int compress_chunk(struct wctx *x, struct wchunk *c, const void *src, size_t len)
{
	int want = c->dense ? x->dense_level : x->level, err;
	size_t r;

	if (want != x->cur_level) {
		r = ZSTD_CCtx_setParameter(x->cctx, ZSTD_c_compressionLevel, want);
		if (ZSTD_isError(r)) {
			log_error("zstd: cannot set compression level %d", want);
			return -EINVAL;
		}
		x->cur_level = want;
	}
	r = ZSTD_compress2(x->cctx, x->dst, x->dst_cap, src, len);

	if (ZSTD_isError(r)) {
		log_error("zstd: cannot compress a chunk of %zu bytes: %s", len,
			  ZSTD_getErrorName(r));
		return -EIO;
	}
	if (r > SLIMFS_CHUNK_MAX) {
		log_error("compressed chunk of %zu bytes exceeds the format's %u byte limit", r,
			  SLIMFS_CHUNK_MAX);
		return -EFBIG;
	}
	slimfs_sha256(x->dst, r, c->sha256);
	c->csize = (uint32_t)r;
	c->spill_off = atomic_fetch_add(&x->spill->end, (uint64_t)r);
	err = slimfs_pwrite_all(x->spill->fd, x->dst, r, c->spill_off);
	if (err < 0)
		return log_error_errno(err, "cannot write to the spill file");
	atomic_store_explicit(&c->ready, true, memory_order_release);
	return 0;
}

static int wctx_init(struct wctx *x, struct writer *w)
{
	int level = w->o->zstd_level;

	memset(x, 0, sizeof(*x));
	x->spill = &w->spill;
	x->level = x->cur_level = level;
	x->dense_level = w->o->prefetch_level;
	x->cctx = ZSTD_createCCtx();
	x->dst_cap = ZSTD_compressBound(w->chunk_max);
	x->dst = malloc(x->dst_cap);
	x->window = malloc((size_t)READ_WINDOW + w->chunk_max);
	if (!x->cctx || !x->dst || !x->window)
		return -ENOMEM;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(x->cctx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(x->cctx, ZSTD_c_contentSizeFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(x->cctx, ZSTD_c_checksumFlag, 0))) {
		log_error("zstd: cannot set compression level %d", level);
		return -EINVAL;
	}
	return 0;
}

static void wctx_free(struct wctx *x)
{
	ZSTD_freeCCtx(x->cctx);
	free(x->dst);
	free(x->window);
	free(x->xbuf.buf);
}

static int prepare_file(struct writer *w, struct wctx *x, struct fjob *f);

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	struct wctx x;
	int setup = wctx_init(&x, p->w);

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct cjob *cj = NULL;
		struct fjob *f = NULL;
		int r;

		while (!p->chead && !p->fqlen && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->work, &p->lock);
			p->idle--;
		}
		if (p->chead) {
			cj = p->chead;
			p->chead = cj->next;
			if (!p->chead)
				p->ctail = &p->chead;
			p->cbytes -= cj->len;
			p->ncj--;
		} else if (p->fqlen) {
			f = p->fq[p->fqhead];
			p->fqhead = (p->fqhead + 1) % p->fqcap;
			p->fqlen--;
		} else {
			break;
		}
		pthread_mutex_unlock(&p->lock);

		if (setup < 0)
			r = setup;
		else if (f)
			r = prepare_file(p->w, &x, f);
		else
			r = compress_chunk(&x, cj->c, cj->data, cj->len);
		free(cj);

		pthread_mutex_lock(&p->lock);
		if (f) {
			f->err = r;
			f->done = true;
		} else if (r < 0 && !p->err) {
			p->err = r;
		}
		p->inflight--;
		/* the calling thread waits for files and for the end only */
		if (f || !p->inflight || p->err)
			pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	wctx_free(&x);
	return NULL;
}

static int pool_start(struct pool *p, struct writer *w, unsigned nth, size_t fqcap,
		      size_t cbytes_max)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->w = w;
	p->ctail = &p->chead;
	p->cbytes_max = cbytes_max;
	p->fqcap = fqcap;
	p->fq = calloc(p->fqcap, sizeof(*p->fq));
	p->th = calloc(nth, sizeof(*p->th));
	if (!p->fq || !p->th) {
		free(p->fq);
		free(p->th);
		p->th = NULL;
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (p->nth = 0; p->nth < nth; p->nth++) {
		r = pthread_create(&p->th[p->nth], NULL, worker_main, p);
		if (r) {
			if (p->nth > 0)
				break;
			log_error_errno(-r, "cannot start a worker thread");
			pthread_mutex_destroy(&p->lock);
			pthread_cond_destroy(&p->work);
			pthread_cond_destroy(&p->done);
			free(p->fq);
			free(p->th);
			p->th = NULL;
			return -r;
		}
	}
	return 0;
}

/*
 * Queues a copy of buf for compression into c. With force false (a worker
 * asking), refuses with -EAGAIN unless another worker waits for work and
 * the backlog is under its bound: the caller then compresses it itself,
 * which saves the copy while every worker is busy (most of the build),
 * bounds memory and work queued, and still spreads the chunks of one large
 * file over idle workers (the end of the build).
 */
static int pool_compress(struct pool *p, struct wchunk *c, const void *buf, size_t len, bool force)
{
	struct cjob *cj;
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->err;
	if (!r && !force && (p->cbytes + len > p->cbytes_max || p->idle <= p->ncj))
		r = -EAGAIN;
	if (!r)
		p->cbytes += len; /* reserved */
	pthread_mutex_unlock(&p->lock);
	if (r)
		return r;
	cj = malloc(sizeof(*cj) + (len ? len : 1));
	pthread_mutex_lock(&p->lock);
	if (!cj) {
		p->cbytes -= len;
		pthread_mutex_unlock(&p->lock);
		return -ENOMEM;
	}
	cj->next = NULL;
	cj->c = c;
	cj->len = len;
	memcpy(cj->data, buf, len);
	*p->ctail = cj;
	p->ctail = &cj->next;
	p->ncj++;
	p->inflight++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* Queues a file to prepare (the window keeps the ring from overflowing). */
static int pool_prepare(struct pool *p, struct fjob *f)
{
	int r;

	pthread_mutex_lock(&p->lock);
	r = p->err;
	if (!r && p->fqlen == p->fqcap)
		r = -EOVERFLOW;
	if (!r) {
		p->fq[(p->fqhead + p->fqlen) % p->fqcap] = f;
		p->fqlen++;
		p->inflight++;
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Waits until a file job is done; returns its error. */
static int pool_wait_file(struct pool *p, struct fjob *f)
{
	int r;

	pthread_mutex_lock(&p->lock);
	while (!f->done)
		pthread_cond_wait(&p->done, &p->lock);
	r = f->err;
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Waits for every queued job; returns the first compression error. */
static int pool_drain(struct pool *p)
{
	int r;

	if (!p->th)
		return 0;
	pthread_mutex_lock(&p->lock);
	while (p->inflight)
		pthread_cond_wait(&p->done, &p->lock);
	r = p->err;
	pthread_mutex_unlock(&p->lock);
	return r;
}

static void pool_stop(struct pool *p)
{
	if (!p->th)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	/* workers drain both queues before they stop; this is only a guard */
	while (p->chead) {
		struct cjob *cj = p->chead;

		p->chead = cj->next;
		free(cj);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->fq);
	free(p->th);
	p->th = NULL;
}

/* ---- 1. walk ------------------------------------------------------------- */

struct walk_ent {
	struct slimfs_tnode *node;
	uint32_t parent;
};

static bool visible(const struct writer *w, const struct slimfs_tinode *ti)
{
	return !w->a->prune || (ti->views & w->view_mask);
}

static bool assigned(const struct writer *w, const struct slimfs_tinode *ti)
{
	return ti->id < w->nino && w->ino[ti->id].ti == ti;
}

static int walk(struct writer *w)
{
	_cleanup_free_ struct walk_ent *stack = NULL;
	size_t nstack = 0, stack_cap = 0;
	int r;

	if (!w->t->root || !w->t->root->ino || !S_ISDIR(w->t->root->ino->mode)) {
		log_error("image root is not a directory");
		return -EINVAL;
	}
	r = SLIMFS_GROW(stack, stack_cap, 1, 256);
	if (r < 0)
		return r;
	stack[nstack++] = (struct walk_ent){w->t->root, 0};

	while (nstack) {
		struct walk_ent e = stack[--nstack];
		struct slimfs_tinode *ti = e.node->ino;
		_cleanup_free_ struct slimfs_tnode **kids = NULL;
		struct winode *wi;
		uint32_t nkids = 0, id, nvis = 0, subdirs = 0;

		if (assigned(w, ti)) {
			if (S_ISDIR(ti->mode)) {
				_cleanup_free_ char *path = slimfs_tree_path(e.node);

				log_error("'%s': directory linked twice", path ? path : "?");
				return -EUCLEAN;
			}
			w->ino[ti->id].nlink++;
			continue;
		}
		if (w->nino >= UINT32_MAX - 1)
			return too_many("inodes");
		r = SLIMFS_GROW(w->ino, w->ino_cap, w->nino + 1, 256);
		if (r < 0)
			return r;
		id = (uint32_t)w->nino++;
		ti->id = id;
		wi = &w->ino[id];
		*wi = (struct winode){.ti = ti, .first = e.node, .parent = e.parent, .nlink = 1};
		if (S_ISREG(ti->mode)) {
			w->files++;
			w->total_bytes += ti->data.size;
		}
		if (!S_ISDIR(ti->mode))
			continue;

		r = slimfs_tree_sorted_children(e.node, &kids, &nkids);
		if (r < 0)
			return log_error_errno(r, "cannot list a directory");
		wi->dirent_start = (uint32_t)w->ndir;
		for (uint32_t i = 0; i < nkids; i++) {
			if (!kids[i]->ino || !visible(w, kids[i]->ino))
				continue;
			if (kids[i]->name_len == 0 || kids[i]->name_len > SLIMFS_NAME_MAX ||
			    memchr(kids[i]->name, '/', kids[i]->name_len)) {
				_cleanup_free_ char *path = slimfs_tree_path(kids[i]);

				log_error("'%s': invalid entry name (%" PRIu32 " bytes)",
					  path ? path : "?", kids[i]->name_len);
				return -EINVAL;
			}
			if (w->ndir >= UINT32_MAX - 1)
				return too_many("directory entries");
			r = SLIMFS_GROW(w->dir, w->dir_cap, w->ndir + 1, 256);
			if (r < 0)
				return r;
			w->dir[w->ndir++].node = kids[i];
			nvis++;
			if (S_ISDIR(kids[i]->ino->mode))
				subdirs++;
		}
		wi = &w->ino[id]; /* (not moved: no grow since) */
		wi->dirent_count = nvis;
		wi->nlink = 2 + subdirs;
		/* push in reverse so the first child is visited first */
		r = SLIMFS_GROW(stack, stack_cap, nstack + nvis, 256);
		if (r < 0)
			return r;
		for (uint32_t i = nvis; i-- > 0;)
			stack[nstack++] = (struct walk_ent){w->dir[wi->dirent_start + i].node, id};
	}
	return 0;
}

/* ---- 2. data ----------------------------------------------------------- */

static int add_extent(struct writer *w, uint64_t file_off, struct wchunk *c, uint32_t chunk_off,
		      uint32_t len)
{
	int r;

	if (w->next >= UINT32_MAX - 1)
		return too_many("extents");
	r = SLIMFS_GROW(w->ext, w->ext_cap, w->next + 1, 256);
	if (r < 0)
		return r;
	w->ext[w->next++] = (struct wextent){file_off, c, chunk_off, len};
	return 0;
}

static struct wchunk *new_chunk_locked(struct writer *w, int *err)
{
	struct wchunk *c = chunk_new(&w->chunks);

	if (!c)
		*err = w->chunks.n >= UINT32_MAX ? too_many("chunks") : -ENOMEM;
	return c;
}

static int seal_pack(struct writer *w)
{
	struct wchunk *c = w->pack_chunk;
	struct packlist *l = w->seal_to;
	struct hmap_ent *he;
	int r = 0;

	if (!c)
		return 0;
	w->pack_chunk = NULL;
	if (l) {
		r = SLIMFS_GROW(l->v, l->cap, l->n + 1, 256);
		if (r < 0)
			return r;
		l->v[l->n++] = c;
		c->dense = true; /* every cold start fetches it */
	}
	chunk_id(w->pack, w->pack_len, c->id);
	c->usize = (uint32_t)w->pack_len;
	pthread_mutex_lock(&w->chunk_lock);
	he = hmap_find(&w->by_id, c->id);
	if (he)
		c->alias = he->c;
	else
		r = hmap_add(&w->by_id, c->id, c, 0);
	pthread_mutex_unlock(&w->chunk_lock);
	if (he || r < 0) {
		w->pack_len = 0;
		return r;
	}
	r = pool_compress(&w->pool, c, w->pack, w->pack_len, true);
	w->pack_len = 0;
	return r;
}

/* The open pack's chunk, reserved when it gets its first bytes. */
static int pack_reserve(struct writer *w)
{
	int r = -ENOMEM;

	if (w->pack_chunk)
		return 0;
	if (!w->pack)
		return -ENOMEM;
	pthread_mutex_lock(&w->chunk_lock);
	w->pack_chunk = new_chunk_locked(w, &r);
	pthread_mutex_unlock(&w->chunk_lock);
	return w->pack_chunk ? 0 : r;
}

static int open_content(struct writer *w, const struct winode *wi, int *fd)
{
	const struct slimfs_tcontent *d = &wi->ti->data;

	if (d->from_spool) {
		if (w->t->spool_fd < 0) {
			_cleanup_free_ char *path = slimfs_tree_path(wi->first);

			log_error("'%s': file data is in a spool that does not exist",
				  path ? path : "?");
			return -EINVAL;
		}
		*fd = w->t->spool_fd;
		return 0;
	}
	if (!d->path) {
		_cleanup_free_ char *path = slimfs_tree_path(wi->first);

		log_error("'%s': file has data but no source", path ? path : "?");
		return -EINVAL;
	}
	*fd = open(d->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", d->path);
	return 0;
}

static int read_error(const struct winode *wi, int r)
{
	_cleanup_free_ char *path = slimfs_tree_path(wi->first);
	const char *src = wi->ti->data.from_spool ? "spool" : wi->ti->data.path;

	if (r == -EIO)
		log_error("'%s': short read from '%s' (did the file change during the build?)",
			  path ? path : "?", src);
	else
		log_error_errno(r, "'%s': cannot read from '%s'", path ? path : "?", src);
	return r;
}

static int check_segments(const struct winode *wi)
{
	const struct slimfs_tcontent *d = &wi->ti->data;
	uint64_t end = 0;

	for (uint32_t i = 0; i < d->nseg; i++) {
		const struct slimfs_tseg *s = &d->seg[i];

		if (!s->len || s->file_off < end || s->file_off > d->size ||
		    s->len > d->size - s->file_off) {
			_cleanup_free_ char *path = slimfs_tree_path(wi->first);

			log_error("'%s': data segment %" PRIu32 " is out of order or past the end",
				  path ? path : "?", i);
			return -EUCLEAN;
		}
		end = s->file_off + s->len;
	}
	return 0;
}

/* Worker: a small file's content (holes as zeros) and its hashes. */
static int prepare_small(struct fjob *f, int fd)
{
	const struct slimfs_tcontent *d = &f->wi->ti->data;
	size_t size = (size_t)d->size;
	int r;

	f->buf = calloc(1, size);
	if (!f->buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->nseg; i++) {
		r = slimfs_pread_all(fd, f->buf + d->seg[i].file_off, d->seg[i].len,
				     d->seg[i].src_off);
		if (r < 0)
			return read_error(f->wi, r);
	}
	chunk_id(f->buf, size, f->key);
	f->h64 = XXH3_64bits(f->buf, size) >> 32;
	return 0;
}

/* Worker: the chunk named by buf's content, compressed here if it is new. */
static int intern_chunk(struct writer *w, struct wctx *x, const uint8_t *buf, size_t len,
			struct wchunk **out)
{
	struct hmap_ent *he;
	struct wchunk *c;
	uint8_t id[16];
	int r = 0;

	chunk_id(buf, len, id);
	pthread_mutex_lock(&w->chunk_lock);
	he = hmap_find(&w->by_id, id);
	if (he) {
		*out = he->c;
		pthread_mutex_unlock(&w->chunk_lock);
		return 0;
	}
	c = new_chunk_locked(w, &r);
	if (c) {
		memcpy(c->id, id, 16);
		c->usize = (uint32_t)len;
		r = hmap_add(&w->by_id, id, c, 0);
	}
	pthread_mutex_unlock(&w->chunk_lock);
	if (r < 0)
		return r;
	*out = c;
	/* first to name it: nobody else compresses it; queued for any worker
	 * unless the backlog is full, then here */
	r = pool_compress(&w->pool, c, buf, len, false);
	return r == -EAGAIN ? compress_chunk(x, c, buf, len) : r;
}

static int fjob_add_extent(struct fjob *f, uint64_t file_off, struct wchunk *c, uint32_t len)
{
	int r = SLIMFS_GROW(f->ext, f->ext_cap, f->next + 1, 256);

	if (r < 0)
		return r;
	f->ext[f->next++] = (struct wextent){file_off, c, 0, len};
	return 0;
}

/* Worker: file bytes [file_off, + len) at src_off cut by the chunker. */
static int chunk_span(struct writer *w, struct wctx *x, struct fjob *f, int fd, uint64_t file_off,
		      uint64_t src_off, uint64_t len)
{
	uint64_t readpos = 0;
	size_t filled = 0;
	int r;

	for (;;) {
		size_t start = 0, cut;
		bool eof;

		while (filled < READ_WINDOW && readpos < len) {
			size_t n = (size_t)MIN((uint64_t)(READ_WINDOW - filled), len - readpos);

			r = slimfs_pread_all(fd, x->window + filled, n, src_off + readpos);
			if (r < 0)
				return read_error(f->wi, r);
			filled += n;
			readpos += n;
		}
		eof = readpos == len;
		while ((cut = slimfs_cdc_cut(&w->cdc, x->window + start, filled - start, eof)) >
		       0) {
			struct wchunk *c;

			r = intern_chunk(w, x, x->window + start, cut, &c);
			if (r < 0)
				return r;
			r = fjob_add_extent(f, file_off, c, (uint32_t)cut);
			if (r < 0)
				return r;
			start += cut;
			file_off += cut;
		}
		memmove(x->window, x->window + start, filled - start);
		filled -= start;
		if (eof)
			return 0;
	}
}

/*
 * Worker: a large file cut by the chunker within each data segment, and
 * within each gap between its hot extents when it has any (a file without
 * hot ranges is cut as it always was).
 */
static int prepare_large(struct writer *w, struct wctx *x, struct fjob *f, int fd)
{
	const struct slimfs_tcontent *d = &f->wi->ti->data;
	const struct hotext *hot = w->hot + f->wi->hot_start;
	uint32_t nhot = f->wi->hot_count, h = 0;
	int r;

	for (uint32_t i = 0; i < d->nseg; i++) {
		const struct slimfs_tseg *s = &d->seg[i];
		uint64_t pos = s->file_off, end = s->file_off + s->len;

		while (pos < end) {
			uint64_t stop = end;

			while (h < nhot && hot[h].e.file_off + hot[h].e.len <= pos)
				h++;
			if (h < nhot && hot[h].e.file_off <= pos) {
				pos = MIN(end, hot[h].e.file_off + hot[h].e.len);
				continue;
			}
			if (h < nhot)
				stop = MIN(end, hot[h].e.file_off);
			r = chunk_span(w, x, f, fd, pos, s->src_off + (pos - s->file_off),
				       stop - pos);
			if (r < 0)
				return r;
			pos = stop;
		}
	}
	return 0;
}

static int prepare_file(struct writer *w, struct wctx *x, struct fjob *f)
{
	const struct slimfs_tcontent *d = &f->wi->ti->data;
	int fd = -1, r;

	r = check_segments(f->wi);
	if (r < 0)
		return r;
	r = open_content(w, f->wi, &fd);
	if (r < 0)
		return r;
	if (f->wi->ti->xattrs_later && !d->from_spool) {
		/* only this worker has this inode now */
		r = slimfs_read_xattrs(fd, NULL, d->path, &x->xbuf, f->wi->ti);
		f->wi->ti->xattrs_later = false;
		if (r < 0) {
			close(fd);
			return r;
		}
	}
	if (d->size <= w->small_max)
		r = prepare_small(f, fd);
	else
		r = prepare_large(w, x, f, fd);
	if (!d->from_spool)
		close(fd);
	return r;
}

static void fjob_clear(struct fjob *f)
{
	free(f->buf);
	free(f->ext);
	memset(f, 0, sizeof(*f));
}

/*
 * Calling thread: appends a prepared small file to the open pack (or finds
 * an identical file packed before) and says where it landed.
 */
static int place_small(struct writer *w, struct fjob *f, struct wchunk **pc, uint32_t *poff)
{
	size_t size = (size_t)f->wi->ti->data.size;
	struct hmap_ent *he = hmap_find(&w->small, f->key);
	uint64_t target;
	int r;

	if (he) {
		*pc = he->c;
		*poff = he->off;
		return 0;
	}
	if (w->pack_len + size > w->chunk_max) {
		r = seal_pack(w);
		if (r < 0)
			return r;
	}
	r = pack_reserve(w);
	if (r < 0)
		return r;
	memcpy(w->pack + w->pack_len, f->buf, size);
	r = hmap_add(&w->small, f->key, w->pack_chunk, (uint32_t)w->pack_len);
	if (r < 0)
		return r;
	*pc = w->pack_chunk;
	*poff = (uint32_t)w->pack_len;
	w->pack_len += size;

	/*
	 * Cut after this file with a probability proportional to its size
	 * (size / (avg - min)), decided by its content hash: a pack boundary
	 * depends only on the file before it, like a byte-level CDC cut, so
	 * adding or removing one file changes only the pack it lands in.
	 */
	target = w->cdc.avg > w->cdc.min ? w->cdc.avg - w->cdc.min : w->cdc.avg;
	if (w->pack_len >= w->cdc.min && f->h64 * target < ((uint64_t)size << 32))
		return seal_pack(w);
	return 0;
}

/* ---- profiled files ---- */

/*
 * The entry a profile path names, following symlinks on the way and at the
 * end (at most 40 in all), "." and ".." taken on the real tree; NULL when
 * there is none.
 */
static struct slimfs_tinode *resolve_profile_path(struct slimfs_tree *t, const char *path)
{
	_cleanup_free_ char *rest = strdup(path);
	struct slimfs_tnode *n = t->root;
	unsigned hops = 0;
	char *p = rest;

	if (!rest || !n)
		return NULL;
	while (*p) {
		char *comp = p, *slash = strchr(p, '/');
		struct slimfs_tnode *child = NULL;

		if (slash) {
			*slash = 0;
			p = slash + 1;
		} else {
			p += strlen(p);
		}
		if (!*comp || !strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			if (n->parent)
				n = n->parent;
			continue;
		}
		if (!n->ino || !S_ISDIR(n->ino->mode))
			return NULL;
		{
			_cleanup_free_ char *dir = slimfs_tree_path(n), *full = NULL;

			if (!dir || asprintf(&full, "%s/%s", dir, comp) < 0)
				return NULL;
			if (slimfs_tree_lookup(t, full, &child) < 0 || !child || !child->ino)
				return NULL;
		}
		if (S_ISLNK(child->ino->mode)) {
			const char *tg = child->ino->target ? child->ino->target : "";
			char *next = NULL;

			if (++hops > 40 || asprintf(&next, "%s/%s", tg, p) < 0)
				return NULL;
			free(rest);
			rest = p = next;
			if (*tg == '/')
				n = t->root;
			continue;
		}
		n = child;
	}
	return n->ino;
}

static bool has_data(const struct slimfs_tinode *ti)
{
	return S_ISREG(ti->mode) && ti->data.nseg && ti->data.size;
}

/*
 * The files in the order they are prepared: the profiled small files in
 * profile order (each once), then every other file with data in inode id
 * order. *nprof is how many of the first are profiled.
 */
static int file_sequence(struct writer *w, struct winode ***out, size_t *n, size_t *nprof)
{
	_cleanup_free_ struct winode **seq = NULL;
	size_t cap = 0, cnt = 0;
	int r;

	for (size_t i = 0; i < w->a->nprofile_paths; i++) {
		const char *path = w->a->profile_paths[i];
		struct slimfs_tinode *ti = path ? resolve_profile_path(w->t, path) : NULL;
		struct winode *wi;

		if (!ti || ti->id >= w->nino || w->ino[ti->id].ti != ti)
			continue;
		w->nprofile_found++;
		if (!S_ISREG(ti->mode))
			continue;
		wi = &w->ino[ti->id];
		if (wi->profiled || !has_data(ti) || ti->data.size > w->small_max)
			continue;
		wi->profiled = true;
		r = SLIMFS_GROW(seq, cap, cnt + 1, 256);
		if (r < 0)
			return r;
		seq[cnt++] = wi;
	}
	*nprof = cnt;
	for (size_t id = 0; id < w->nino; id++) {
		struct winode *wi = &w->ino[id];

		if (wi->profiled || !has_data(wi->ti))
			continue;
		r = SLIMFS_GROW(seq, cap, cnt + 1, 256);
		if (r < 0)
			return r;
		seq[cnt++] = wi;
	}
	*out = steal_ptr(&seq);
	*n = cnt;
	return 0;
}

/* ---- hot ranges ---- */

/* A profile range of a large file, clipped; seq is its place in the profile. */
struct hotpiece {
	uint32_t ino;
	size_t seq;
	uint64_t off, len;
};

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_piece_file(const void *x, const void *y)
{
	const struct hotpiece *a = x, *b = y;

	return a->ino != b->ino	  ? cmp_u64(a->ino, b->ino)
	       : a->off != b->off ? cmp_u64(a->off, b->off)
				  : cmp_u64(a->seq, b->seq);
}

static int cmp_piece_seq(const void *x, const void *y)
{
	return cmp_u64(((const struct hotpiece *)x)->seq, ((const struct hotpiece *)y)->seq);
}

static int cmp_hotext(const void *x, const void *y)
{
	const struct hotext *a = x, *b = y;

	return a->ino != b->ino ? cmp_u64(a->ino, b->ino) : cmp_u64(a->e.file_off, b->e.file_off);
}

/*
 * The profile's ranges that lie in large files of this image, in profile
 * order: clipped to the file, and to what the ranges before them in the
 * file left (the profile's ranges of one path do not overlap, but two
 * paths may name one file).
 */
static int hot_pieces(struct writer *w, struct hotpiece **out, size_t *n)
{
	_cleanup_free_ struct hotpiece *v = NULL;
	struct slimfs_tinode *ti = NULL;
	const char *last_path = NULL;
	size_t cap = 0, cnt = 0, m = 0;
	uint64_t end = 0;
	int r;

	for (size_t i = 0; i < w->a->nhot_ranges; i++) {
		const struct slimfs_profile_range *pr = &w->a->hot_ranges[i];

		if (!pr->path)
			continue;
		if (!last_path || strcmp(last_path, pr->path) != 0)
			ti = resolve_profile_path(w->t, pr->path);
		last_path = pr->path;
		if (!ti || !assigned(w, ti) || !has_data(ti) || ti->data.size <= w->small_max ||
		    pr->off >= ti->data.size || !pr->len)
			continue;
		r = SLIMFS_GROW(v, cap, cnt + 1, 256);
		if (r < 0)
			return r;
		v[cnt++] = (struct hotpiece){ti->id, i, pr->off,
					     MIN(pr->len, ti->data.size - pr->off)};
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), cmp_piece_file);
	for (size_t i = 0; i < cnt; i++) {
		struct hotpiece p = v[i];

		if (i == 0 || p.ino != v[i - 1].ino)
			end = 0;
		if (p.off + p.len <= end)
			continue;
		if (p.off < end) {
			p.len -= end - p.off;
			p.off = end;
		}
		end = p.off + p.len;
		v[m++] = p;
	}
	if (m)
		qsort(v, m, sizeof(*v), cmp_piece_seq);
	*out = steal_ptr(&v);
	*n = m;
	return 0;
}

static void close_content(const struct winode *wi, int fd)
{
	if (fd >= 0 && !wi->ti->data.from_spool)
		close(fd);
}

/*
 * Calling thread: appends the part of a hot piece within data segment s to
 * the hot packs (split where one is full; holes stay holes).
 */
static int pack_piece(struct writer *w, const struct hotpiece *p, const struct slimfs_tseg *s,
		      int fd)
{
	const struct winode *wi = &w->ino[p->ino];
	uint64_t off = MAX(p->off, s->file_off);
	uint64_t end = MIN(p->off + p->len, s->file_off + s->len);
	uint64_t left = end > off ? end - off : 0;
	int r;

	while (left) {
		size_t k = (size_t)MIN((uint64_t)(w->hot_max - w->pack_len), left);

		if (!k) {
			r = seal_pack(w);
			if (r < 0)
				return r;
			continue;
		}
		r = pack_reserve(w);
		if (r < 0)
			return r;
		r = slimfs_pread_all(fd, w->pack + w->pack_len, k,
				     s->src_off + (off - s->file_off));
		if (r < 0)
			return read_error(wi, r);
		if (w->nhot >= UINT32_MAX - 1)
			return too_many("hot extents");
		r = SLIMFS_GROW(w->hot, w->hot_cap, w->nhot + 1, 256);
		if (r < 0)
			return r;
		w->hot[w->nhot++] = (struct hotext){
			p->ino, {off, w->pack_chunk, (uint32_t)w->pack_len, (uint32_t)k}};
		w->pack_len += k;
		w->hot_bytes += k;
		off += k;
		left -= k;
	}
	return 0;
}

/*
 * Calling thread, before any file is prepared: the hot ranges of large
 * files (their data segments: holes stay holes) packed in profile order
 * into packs of hot_max bytes (w->hpacks),
 * and each such file's packed extents sorted for its preparation.
 */
static int pack_hot_ranges(struct writer *w)
{
	_cleanup_free_ struct hotpiece *v = NULL;
	uint32_t cur = UINT32_MAX;
	size_t n = 0;
	int fd = -1, r;

	r = hot_pieces(w, &v, &n);
	if (r < 0 || !n)
		return r;
	w->nranges_used = n;
	w->seal_to = &w->hpacks;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (v[i].ino != cur) {
			if (cur != UINT32_MAX)
				close_content(&w->ino[cur], fd);
			fd = -1;
			cur = v[i].ino;
			r = check_segments(&w->ino[cur]);
			if (r == 0)
				r = open_content(w, &w->ino[cur], &fd);
			if (r < 0)
				break;
		}
		for (uint32_t k = 0; r == 0 && k < w->ino[cur].ti->data.nseg; k++)
			r = pack_piece(w, &v[i], &w->ino[cur].ti->data.seg[k], fd);
	}
	if (cur != UINT32_MAX)
		close_content(&w->ino[cur], fd);
	if (r == 0)
		r = seal_pack(w);
	w->seal_to = NULL;
	if (r < 0)
		return r;
	for (size_t i = 0; i < w->hpacks.n; i++)
		real(w->hpacks.v[i])->hot = true;
	qsort(w->hot, w->nhot, sizeof(*w->hot), cmp_hotext);
	for (size_t i = 0; i < w->nhot; i++) {
		struct winode *wi = &w->ino[w->hot[i].ino];

		if (!wi->hot_count++) {
			wi->hot_start = (uint32_t)i;
			w->nhot_files++;
		}
	}
	return 0;
}

static int copy_range(struct copier *cp, uint64_t in_off, uint64_t out_off, uint64_t len);
static void index_cctx_warm(struct writer *w);

/* Early copy: runs of adjacent frames up to this size go in one call, and
 * the output is handed to writeback this many bytes at a time. */
#define EARLY_RUN	(1u << 20)
#define EARLY_WRITEBACK (8u << 20)

static int early_flush(struct early *e)
{
	int r;

	if (!e->run_len)
		return 0;
	r = copy_range(&e->cp, e->run_in, e->pos, e->run_len);
	if (r < 0)
		return log_error_errno(r, "cannot write the image data");
	e->pos += e->run_len;
	e->run_len = 0;
	e->runs++;
	if (e->pos - e->synced >= EARLY_WRITEBACK) {
		/* only a hint (errors show in the final fsync): the disk writes
		 * while the rest compresses, so that fsync has little left */
		(void)sync_file_range(e->cp.out, (off_t)e->synced, (off_t)(e->pos - e->synced),
				      SYNC_FILE_RANGE_WRITE);
		e->synced = e->pos;
	}
	return 0;
}

/*
 * Calling thread, early copy on (no profile): the final order is then the
 * order of first reference by the extents (order_chunks, step 3), so the
 * extents are taken in turn, and each new chunk placed and its frame copied
 * to the output, until one whose chunk is the open pack (its id, and so
 * whether it repeats an earlier chunk, is not known yet) or is still being
 * compressed. With all set, copies everything that is left.
 */
static int early_copy(struct writer *w, bool all)
{
	struct early *e = &w->early;
	int r;

	if (!e->on)
		return 0;
	for (; e->next_ext < w->next; e->next_ext++) {
		struct wchunk *c = w->ext[e->next_ext].c;

		if (c == w->pack_chunk)
			break;
		c = real(c);
		if (c->order != UINT32_MAX)
			continue;
		if (!atomic_load_explicit(&c->ready, memory_order_acquire))
			break;
		r = SLIMFS_GROW(e->v, e->cap, e->n + 1, 256);
		if (r < 0)
			return r;
		c->order = (uint32_t)e->n;
		e->v[e->n++] = c;
		if (e->run_len && c->spill_off == e->run_in + e->run_len &&
		    e->run_len < EARLY_RUN) {
			e->run_len += c->csize;
			continue;
		}
		r = early_flush(e);
		if (r < 0)
			return r;
		e->run_in = c->spill_off;
		e->run_len = c->csize;
	}
	if (!all)
		return e->run_len >= EARLY_RUN ? early_flush(e) : 0;
	if (e->next_ext != w->next) {
		log_error("internal error: %zu of %zu extents copied early", e->next_ext, w->next);
		return -EUCLEAN;
	}
	return early_flush(e);
}

/* A window of file jobs ahead of the calling thread. */
struct fwindow {
	struct winode **seq;
	size_t nseq, next_submit, next_take, size;
	struct fjob *jobs; /* ring of size */
};

/* The next file's job, once prepared (submitting more as slots free up). */
static int take_file(struct writer *w, struct fwindow *fw, struct fjob **out)
{
	struct fjob *f;
	int r;

	while (fw->next_submit < fw->nseq && fw->next_submit < fw->next_take + fw->size) {
		f = &fw->jobs[fw->next_submit % fw->size];
		fjob_clear(f);
		f->wi = fw->seq[fw->next_submit++];
		r = pool_prepare(&w->pool, f);
		if (r < 0) {
			f->done = true; /* never queued */
			return r;
		}
	}
	f = &fw->jobs[fw->next_take++ % fw->size];
	r = pool_wait_file(&w->pool, f);
	if (r < 0)
		return r;
	*out = f;
	return 0;
}

static int write_data(struct writer *w)
{
	struct fwindow fw = {0};
	size_t nprof = 0;
	int r;

	r = file_sequence(w, &fw.seq, &fw.nseq, &nprof);
	if (r < 0)
		return r;
	fw.size = FILE_WINDOW_PER_THREAD * (size_t)w->pool.nth;
	fw.jobs = calloc(fw.size, sizeof(*fw.jobs));
	if (!fw.jobs) {
		r = -ENOMEM;
		goto out;
	}
	w->nprofiled = nprof;

	/* 0. hot ranges of large files, in profile order, in packs of their own */
	r = pack_hot_ranges(w);
	if (r < 0)
		goto out;

	/* 1. profiled small files, in profile order, in packs of their own */
	w->seal_to = &w->ppacks;
	for (size_t i = 0; i < nprof; i++) {
		struct fjob *f;

		r = take_file(w, &fw, &f);
		if (r < 0)
			goto out;
		r = place_small(w, f, &f->wi->pchunk, &f->wi->poff);
		if (r < 0)
			goto out;
		w->bytes_done += f->wi->ti->data.size;
		fjob_clear(f);
	}
	r = seal_pack(w);
	if (r < 0)
		goto out;
	w->seal_to = NULL;

	/* 2. extents in inode id order, every other file prepared in turn */
	for (size_t id = 0; id < w->nino; id++) {
		struct winode *wi = &w->ino[id];
		struct fjob *f;

		wi->ext_start = (uint32_t)w->next;
		if (!S_ISREG(wi->ti->mode))
			continue;
		w->files_done++;
		if (!has_data(wi->ti))
			continue;
		if (wi->profiled) {
			r = add_extent(w, 0, wi->pchunk, wi->poff, (uint32_t)wi->ti->data.size);
			if (r < 0)
				goto out;
			wi->ext_count = 1;
			continue;
		}
		r = take_file(w, &fw, &f);
		if (r < 0)
			goto out;
		index_cctx_warm(w); /* once, with the workers busy */
		if (f->wi != wi) {
			log_error("internal error: file %zu prepared out of turn", id);
			r = -EUCLEAN;
			goto out;
		}
		if (f->buf) {
			struct wchunk *pc;
			uint32_t poff;

			r = place_small(w, f, &pc, &poff);
			if (r == 0)
				r = add_extent(w, 0, pc, poff, (uint32_t)wi->ti->data.size);
		} else {
			/* the chunker's extents and the packed hot ones, by offset */
			const struct hotext *hot = w->hot + wi->hot_start;
			size_t k = 0, h = 0;

			while (r == 0 && (k < f->next || h < wi->hot_count)) {
				bool take_hot =
					h < wi->hot_count &&
					(k == f->next || hot[h].e.file_off < f->ext[k].file_off);
				const struct wextent *e = take_hot ? &hot[h++].e : &f->ext[k++];

				r = add_extent(w, e->file_off, e->c, e->chunk_off, e->len);
			}
		}
		if (r < 0)
			goto out;
		wi->ext_count = (uint32_t)(w->next - wi->ext_start);
		w->bytes_done += wi->ti->data.size;
		fjob_clear(f);
		r = early_copy(w, false);
		if (r < 0)
			goto out;
		progress(w, "chunking", w->bytes_done, w->total_bytes, false);
	}
	r = seal_pack(w);
out:
	/* no job may outlive the window it points into */
	{
		int r2 = pool_drain(&w->pool);

		if (r == 0)
			r = r2;
	}
	for (size_t i = 0; fw.jobs && i < fw.size; i++)
		fjob_clear(&fw.jobs[i]);
	free(fw.jobs);
	free(fw.seq);
	return r;
}

/* ---- 3. chunk order -------------------------------------------------- */

static void place(struct wchunk *c, struct wchunk **order, size_t *n)
{
	c = real(c);
	if (c->order != UINT32_MAX)
		return;
	c->order = (uint32_t)*n;
	order[(*n)++] = c;
}

/*
 * Marks the chunks that hold cold bytes of files with hot ranges, and those
 * that other extents (other files, or a cold part another file shares) use.
 */
static void mark_cold_chunks(struct writer *w)
{
	if (!w->nhot)
		return;
	for (size_t id = 0; id < w->nino; id++) {
		const struct winode *wi = &w->ino[id];

		for (uint32_t k = 0; k < wi->ext_count; k++) {
			struct wchunk *c = real(w->ext[wi->ext_start + k].c);

			if (c->hot)
				continue;
			if (wi->hot_count)
				c->cold_ranged = true;
			else
				c->other_ref = true;
		}
	}
}

/*
 * Data order: (0) the packs of hot ranges, in profile order; (1) the packs
 * of profiled small files, in profile order; (2) the profile's chunk ids
 * that exist here, in order, but for chunks that only files with hot ranges
 * use (the ranges tell what of them was read); (3) every other chunk in the
 * order of its first reference. PREFETCH is (0) + (1) + (2).
 */
static int order_chunks(struct writer *w, struct wchunk ***order_out, size_t *nprefetch_out)
{
	size_t n = 0, nunique = 0, np, found = 0;
	struct wchunk **order;

	for (size_t i = 0; i < w->chunks.n; i++)
		if (!chunk_at(&w->chunks, i)->alias)
			nunique++;
	order = calloc(nunique ? nunique : 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	/* placed during the data phase (no profile: none of (0)-(2) exist) */
	if (w->early.n) {
		memcpy(order, w->early.v, w->early.n * sizeof(*order));
		n = w->early.n;
	}
	mark_cold_chunks(w);
	for (size_t i = 0; i < w->hpacks.n; i++)
		place(w->hpacks.v[i], order, &n);
	for (size_t i = 0; i < w->ppacks.n; i++)
		place(w->ppacks.v[i], order, &n);
	for (size_t i = 0; i < w->a->nprefetch; i++) {
		struct hmap_ent *he = hmap_find(&w->by_id, w->a->prefetch_ids + 16 * i);

		if (!he)
			continue;
		found++;
		/* the hot ranges say which bytes of such a file were read */
		if (real(he->c)->cold_ranged && !real(he->c)->other_ref) {
			w->ncold_skipped++;
			continue;
		}
		place(he->c, order, &n);
	}
	np = n - w->early.n; /* early: none of (0)-(2) */
	for (size_t i = 0; i < w->next; i++)
		place(w->ext[i].c, order, &n);
	/* every unique chunk is referenced by some extent */
	if (n != nunique) {
		free(order);
		log_error("internal error: %zu chunks placed, %zu expected", n, nunique);
		return -EUCLEAN;
	}
	if (w->a->nhot_ranges) {
		char hb[32];

		log_info("profile: %zu of %zu ranges in %zu large files packed first: %s in %zu "
			 "chunks; %zu chunk ids of their cold parts not prefetched",
			 w->nranges_used, w->a->nhot_ranges, w->nhot_files,
			 slimfs_fmt_bytes(w->hot_bytes, hb, sizeof(hb)), w->hpacks.n,
			 w->ncold_skipped);
	}
	if (w->a->nprofile_paths || w->a->nprefetch)
		log_info("profile: %zu of %zu paths found, %zu small files packed first in %zu "
			 "chunks, %zu of %zu chunk ids found; %zu chunks prefetched",
			 w->nprofile_found, w->a->nprofile_paths, w->nprofiled, w->ppacks.n, found,
			 w->a->nprefetch, np);
	if (w->a->nprofile_paths && w->nprofile_found * 2 < w->a->nprofile_paths)
		log_warn("profile: only %zu of its %zu paths are in this image: was it recorded "
			 "on an image of other content?",
			 w->nprofile_found, w->a->nprofile_paths);
	else if (!w->a->nprofile_paths && w->a->nprefetch && found * 2 < w->a->nprefetch)
		log_warn("profile: only %zu of its %zu chunks are in this image: was it recorded "
			 "on an image of other content, or built with other --chunk-* or "
			 "--small-file-max options?",
			 found, w->a->nprefetch);
	*order_out = order;
	*nprefetch_out = np;
	return 0;
}

/* ---- 4. index ------------------------------------------------------- */

static int str_add(struct strtab *s, const void *p, size_t len, bool dedup, uint64_t *off)
{
	uint64_t h = 0;
	size_t i = 0;
	int r;

	if (dedup && len) {
		if ((s->set_n + 1) * 4 > s->set_cap * 3) {
			size_t ncap = s->set_cap ? s->set_cap * 2 : 4096;
			struct strent *ns = calloc(ncap, sizeof(*ns));

			if (!ns)
				return -ENOMEM;
			for (size_t j = 0; j < s->set_cap; j++) {
				if (!s->set[j].used)
					continue;
				i = XXH3_64bits(s->buf + s->set[j].off, s->set[j].len) & (ncap - 1);
				while (ns[i].used)
					i = (i + 1) & (ncap - 1);
				ns[i] = s->set[j];
			}
			free(s->set);
			s->set = ns;
			s->set_cap = ncap;
		}
		h = XXH3_64bits(p, len);
		for (i = h & (s->set_cap - 1); s->set[i].used; i = (i + 1) & (s->set_cap - 1)) {
			if (s->set[i].len == len && !memcmp(s->buf + s->set[i].off, p, len)) {
				*off = s->set[i].off;
				return 0;
			}
		}
	}
	r = SLIMFS_GROW(s->buf, s->cap, s->len + len + 1, 256);
	if (r < 0)
		return r;
	memcpy(s->buf + s->len, p, len);
	*off = s->len;
	if (dedup && len) {
		s->set[i].off = s->len;
		s->set[i].len = (uint32_t)len;
		s->set[i].used = 1;
		s->set_n++;
	}
	s->len += len;
	return 0;
}

static size_t align8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}
static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}
static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}
#define PUT(rec, type, field, bits, v) put##bits((uint8_t *)(rec) + offsetof(type, field), (v))

/* Strings first (their size fixes the layout), in a fixed order: names in
 * dirent order, then per inode symlink target and xattrs, views, config. */
struct strrefs {
	uint64_t *dirent_name; /* ndir */
	uint64_t *ino_target;  /* nino */
	uint64_t *xattr;       /* 2 per xattr: name, value */
	uint64_t view[SLIMFS_VIEWS_MAX];
	uint64_t config;
};

/* Xattrs the walk left to the workers of files that no worker read (each
 * file with data is read, so none): through the path. */
static int late_xattrs(struct writer *w)
{
	struct slimfs_xbuf xb = {0};
	int r = 0;

	for (size_t i = 0; i < w->nino && r == 0; i++) {
		struct slimfs_tinode *ti = w->ino[i].ti;

		if (ti->xattrs_later) {
			r = slimfs_read_xattrs(-1, ti->data.path, ti->data.path, &xb, ti);
			ti->xattrs_later = false;
		}
	}
	free(xb.buf);
	return r;
}

static int build_strings(struct writer *w, struct strrefs *sr)
{
	size_t xi = 0;
	int r;

	r = late_xattrs(w);
	if (r < 0)
		return r;

	sr->dirent_name = calloc(w->ndir ? w->ndir : 1, sizeof(uint64_t));
	sr->ino_target = calloc(w->nino, sizeof(uint64_t));
	if (!sr->dirent_name || !sr->ino_target)
		return -ENOMEM;
	for (size_t i = 0; i < w->ndir; i++) {
		r = str_add(&w->str, w->dir[i].node->name, w->dir[i].node->name_len, true,
			    &sr->dirent_name[i]);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < w->nino; i++) {
		struct slimfs_tinode *ti = w->ino[i].ti;

		if (S_ISLNK(ti->mode)) {
			const char *tg = ti->target ? ti->target : "";
			size_t len = strlen(tg);

			if (len >= UINT32_MAX) {
				log_error("symlink target of %zu bytes is too long", len);
				return -EFBIG;
			}
			r = str_add(&w->str, tg, len, true, &sr->ino_target[i]);
			if (r < 0)
				return r;
		}
		if (ti->nxattrs) {
			slimfs_tinode_sort_xattrs(ti);
			if ((uint64_t)w->nxattr + ti->nxattrs >= UINT32_MAX)
				return too_many("extended attributes");
			w->nxattr += ti->nxattrs;
		}
	}
	sr->xattr = calloc(2 * (size_t)w->nxattr + 1, sizeof(uint64_t));
	if (!sr->xattr)
		return -ENOMEM;
	for (size_t i = 0; i < w->nino; i++) {
		struct slimfs_tinode *ti = w->ino[i].ti;

		for (uint32_t k = 0; k < ti->nxattrs; k++, xi++) {
			const struct slimfs_txattr *x = &ti->xattrs[k];
			size_t nlen = strlen(x->name);

			if (nlen == 0 || nlen > SLIMFS_XATTR_NAME_MAX ||
			    x->value_len > SLIMFS_XATTR_VALUE_MAX) {
				_cleanup_free_ char *path = slimfs_tree_path(w->ino[i].first);

				log_error("'%s': xattr '%.64s' exceeds the format's limits "
					  "(name %zu of %u bytes, value %" PRIu32 " of %u bytes)",
					  path ? path : "?", x->name, nlen, SLIMFS_XATTR_NAME_MAX,
					  x->value_len, SLIMFS_XATTR_VALUE_MAX);
				return -EFBIG;
			}
			r = str_add(&w->str, x->name, nlen, true, &sr->xattr[2 * xi]);
			if (r < 0)
				return r;
			r = str_add(&w->str, x->value, x->value_len, true, &sr->xattr[2 * xi + 1]);
			if (r < 0)
				return r;
		}
	}
	for (unsigned v = 0; v < w->a->nviews; v++) {
		const char *name = w->a->view_names[v] ? w->a->view_names[v] : "";

		r = str_add(&w->str, name, strlen(name), true, &sr->view[v]);
		if (r < 0)
			return r;
	}
	sr->config = 0;
	if (w->a->config && w->a->config_len) {
		r = str_add(&w->str, w->a->config, w->a->config_len, false, &sr->config);
		if (r < 0)
			return r;
	}
	return 0;
}

static void strrefs_free(struct strrefs *sr)
{
	free(sr->dirent_name);
	free(sr->ino_target);
	free(sr->xattr);
}

struct layout {
	uint64_t off[SLIMFS_SEC_COUNT], count[SLIMFS_SEC_COUNT];
	uint64_t index_size, data_off, data_size; /* index_size: as stored */
	uint64_t plain_size;			  /* of the index before compression */
	bool zindex;				  /* SLIMFS_FEATURE_INCOMPAT_ZINDEX */
};

/*
 * Level of the compressed index, whatever the image's level: the index is
 * fetched whole at every cold mount, and level 9 takes ~18 ms for the
 * 1.25 MB bookworm index, 7% smaller than level 3 (FORMAT.md).
 */
#define ZINDEX_LEVEL 9

/* A context for the index: level ZINDEX_LEVEL, checksum on. */
static ZSTD_CCtx *index_cctx_new(void)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();

	if (c && (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, ZINDEX_LEVEL)) ||
		  ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)))) {
		ZSTD_freeCCtx(c);
		c = NULL;
	}
	return c;
}

/*
 * Calling thread, early in step 2: the index's context, with its tables
 * allocated and cleared for an index of about the size it will have, now
 * while the workers compress rather than in step 4: at level 9 they are
 * ~13 MB for the ~1.25 MB bookworm index, and faulting them in at the end
 * took as long as compressing the index. A stream begun with no input sets
 * them up; ZSTD_compress2 later reuses them when they are large enough,
 * else allocates its own (the frame is the same either way). Best effort.
 */
static void index_cctx_warm(struct writer *w)
{
	uint64_t names = 0, chunks = w->total_bytes / w->cdc.avg + 1, guess;
	uint8_t sink[64];
	ZSTD_outBuffer out = {sink, sizeof(sink), 0};
	ZSTD_inBuffer in = {sink, 0, 0};

	if (w->icctx_tried || w->o->index_plain)
		return;
	w->icctx_tried = true;
	for (size_t i = 0; i < w->ndir; i++)
		names += w->dir[i].node->name_len;
	guess = w->nino * sizeof(struct slimfs_disk_inode) +
		w->ndir * sizeof(struct slimfs_disk_dirent) + names +
		chunks * sizeof(struct slimfs_disk_chunk) +
		(w->files + chunks) * sizeof(struct slimfs_disk_extent);
	if (guess > SLIMFS_ZINDEX_PLAIN_MAX)
		return;
	w->icctx = index_cctx_new();
	if (!w->icctx)
		return;
	if (ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(w->icctx, guess)) ||
	    ZSTD_isError(ZSTD_compressStream2(w->icctx, &out, &in, ZSTD_e_continue)) ||
	    ZSTD_isError(ZSTD_CCtx_reset(w->icctx, ZSTD_reset_session_only))) {
		ZSTD_freeCCtx(w->icctx);
		w->icctx = NULL;
	}
}

/*
 * The index's sections, (*b)[256, L->index_size), into one zstd frame
 * (content size and checksum in it) after the superblock's 256 bytes: *b is
 * replaced and L updated. The index stays plain when that is not smaller,
 * or when a reader would refuse the frame (format.h, SLIMFS_ZINDEX_*).
 */
static int compress_index(ZSTD_CCtx *cctx, uint8_t **b, struct layout *L)
{
	const size_t plain = (size_t)(L->index_size - sizeof(struct slimfs_disk_super));
	const size_t cap = ZSTD_compressBound(plain);
	ZSTD_CCtx *own = NULL;
	uint8_t *z;
	size_t n;

	if (L->index_size > SLIMFS_ZINDEX_PLAIN_MAX)
		return 0;
	z = malloc(sizeof(struct slimfs_disk_super) + cap);
	if (!cctx)
		cctx = own = index_cctx_new();
	if (!z || !cctx) {
		free(z);
		return -ENOMEM;
	}
	n = ZSTD_compress2(cctx, z + sizeof(struct slimfs_disk_super), cap,
			   *b + sizeof(struct slimfs_disk_super), plain);
	ZSTD_freeCCtx(own);
	if (ZSTD_isError(n)) {
		free(z);
		log_error("cannot compress the index: %s", ZSTD_getErrorName(n));
		return -EIO;
	}
	if (n >= plain || plain / SLIMFS_ZINDEX_RATIO_MAX > n) {
		free(z);
		return 0;
	}
	memcpy(z, *b, sizeof(struct slimfs_disk_super));
	free(*b);
	*b = z;
	L->zindex = true;
	L->index_size = sizeof(struct slimfs_disk_super) + n;
	return 0;
}

static int build_index(struct writer *w, struct wchunk **order, size_t nchunks, size_t nprefetch,
		       bool compress, uint8_t **out, struct layout *L)
{
	static const size_t recsize[SLIMFS_SEC_COUNT] = {
		sizeof(struct slimfs_disk_inode),
		sizeof(struct slimfs_disk_dirent),
		1,
		sizeof(struct slimfs_disk_xattr),
		sizeof(struct slimfs_disk_chunk),
		sizeof(struct slimfs_disk_extent),
		sizeof(struct slimfs_disk_view),
		sizeof(slimfs_le32),
	};
	struct strrefs sr = {0};
	uint8_t *b, *sb;
	uint64_t pos, doff = 0;
	size_t xi = 0;
	int r;

	r = build_strings(w, &sr);
	if (r < 0)
		goto out;

	L->count[SLIMFS_SEC_INODES] = w->nino;
	L->count[SLIMFS_SEC_DIRENTS] = w->ndir;
	L->count[SLIMFS_SEC_STRINGS] = w->str.len;
	L->count[SLIMFS_SEC_XATTRS] = w->nxattr;
	L->count[SLIMFS_SEC_CHUNKS] = nchunks;
	L->count[SLIMFS_SEC_EXTENTS] = w->next;
	L->count[SLIMFS_SEC_VIEWS] = w->a->nviews;
	L->count[SLIMFS_SEC_PREFETCH] = nprefetch;
	pos = sizeof(struct slimfs_disk_super);
	for (int s = 0; s < SLIMFS_SEC_COUNT; s++) {
		pos = align8(pos);
		L->off[s] = pos;
		pos += L->count[s] * recsize[s];
	}
	L->index_size = L->plain_size = pos;
	L->data_size = 0;
	for (size_t i = 0; i < nchunks; i++)
		L->data_size += order[i]->csize;

	b = calloc(1, L->index_size);
	if (!b) {
		r = -ENOMEM;
		goto out;
	}

	/* inodes */
	for (size_t i = 0; i < w->nino; i++) {
		const struct winode *wi = &w->ino[i];
		const struct slimfs_tinode *ti = wi->ti;
		uint8_t *rec = b + L->off[SLIMFS_SEC_INODES] + i * sizeof(struct slimfs_disk_inode);
		uint64_t size = 0, data = 0;
		uint32_t count = 0;

		switch (ti->mode & S_IFMT) {
		case S_IFREG:
			size = ti->data.size;
			data = wi->ext_start;
			count = wi->ext_count;
			break;
		case S_IFDIR:
			size = 4096;
			data = wi->dirent_start;
			count = wi->dirent_count;
			break;
		case S_IFLNK:
			size = ti->target ? strlen(ti->target) : 0;
			data = sr.ino_target[i];
			count = (uint32_t)size;
			break;
		case S_IFCHR:
		case S_IFBLK:
			data = ti->rdev;
			break;
		default:
			break;
		}
		PUT(rec, struct slimfs_disk_inode, mode, 32, ti->mode);
		PUT(rec, struct slimfs_disk_inode, uid, 32, ti->uid);
		PUT(rec, struct slimfs_disk_inode, gid, 32, ti->gid);
		PUT(rec, struct slimfs_disk_inode, nlink, 32, wi->nlink);
		PUT(rec, struct slimfs_disk_inode, size, 64, size);
		PUT(rec, struct slimfs_disk_inode, mtime, 64, (uint64_t)ti->mtime);
		PUT(rec, struct slimfs_disk_inode, mtime_ns, 32, ti->mtime_ns);
		PUT(rec, struct slimfs_disk_inode, views, 32, ti->views & w->view_mask);
		PUT(rec, struct slimfs_disk_inode, data, 64, data);
		PUT(rec, struct slimfs_disk_inode, count, 32, count);
		PUT(rec, struct slimfs_disk_inode, xattr_start, 32, (uint32_t)xi);
		PUT(rec, struct slimfs_disk_inode, xattr_count, 32, ti->nxattrs);
		PUT(rec, struct slimfs_disk_inode, parent, 32, wi->parent);
		for (uint32_t k = 0; k < ti->nxattrs; k++, xi++) {
			uint8_t *x = b + L->off[SLIMFS_SEC_XATTRS] +
				     xi * sizeof(struct slimfs_disk_xattr);

			PUT(x, struct slimfs_disk_xattr, name_off, 64, sr.xattr[2 * xi]);
			PUT(x, struct slimfs_disk_xattr, value_off, 64, sr.xattr[2 * xi + 1]);
			PUT(x, struct slimfs_disk_xattr, name_len, 32,
			    (uint32_t)strlen(ti->xattrs[k].name));
			PUT(x, struct slimfs_disk_xattr, value_len, 32, ti->xattrs[k].value_len);
		}
	}
	/* dirents */
	for (size_t i = 0; i < w->ndir; i++) {
		uint8_t *rec =
			b + L->off[SLIMFS_SEC_DIRENTS] + i * sizeof(struct slimfs_disk_dirent);

		PUT(rec, struct slimfs_disk_dirent, name_off, 64, sr.dirent_name[i]);
		PUT(rec, struct slimfs_disk_dirent, name_len, 32, w->dir[i].node->name_len);
		PUT(rec, struct slimfs_disk_dirent, ino, 32, w->dir[i].node->ino->id);
	}
	if (w->str.len)
		memcpy(b + L->off[SLIMFS_SEC_STRINGS], w->str.buf, w->str.len);
	/* chunks */
	for (size_t i = 0; i < nchunks; i++) {
		uint8_t *rec = b + L->off[SLIMFS_SEC_CHUNKS] + i * sizeof(struct slimfs_disk_chunk);

		memcpy(rec + offsetof(struct slimfs_disk_chunk, id), order[i]->id, 16);
		memcpy(rec + offsetof(struct slimfs_disk_chunk, sha256), order[i]->sha256, 32);
		PUT(rec, struct slimfs_disk_chunk, off, 64, doff);
		PUT(rec, struct slimfs_disk_chunk, csize, 32, order[i]->csize);
		PUT(rec, struct slimfs_disk_chunk, usize, 32, order[i]->usize);
		doff += order[i]->csize;
	}
	/* extents */
	for (size_t i = 0; i < w->next; i++) {
		uint8_t *rec =
			b + L->off[SLIMFS_SEC_EXTENTS] + i * sizeof(struct slimfs_disk_extent);

		PUT(rec, struct slimfs_disk_extent, file_off, 64, w->ext[i].file_off);
		PUT(rec, struct slimfs_disk_extent, chunk, 32, real(w->ext[i].c)->order);
		PUT(rec, struct slimfs_disk_extent, chunk_off, 32, w->ext[i].chunk_off);
		PUT(rec, struct slimfs_disk_extent, len, 32, w->ext[i].len);
	}
	/* views */
	for (unsigned v = 0; v < w->a->nviews; v++) {
		uint8_t *rec = b + L->off[SLIMFS_SEC_VIEWS] + v * sizeof(struct slimfs_disk_view);
		const char *name = w->a->view_names[v] ? w->a->view_names[v] : "";

		PUT(rec, struct slimfs_disk_view, name_off, 64, sr.view[v]);
		PUT(rec, struct slimfs_disk_view, name_len, 32, (uint32_t)strlen(name));
		PUT(rec, struct slimfs_disk_view, flags, 32,
		    (int)v == w->a->default_view ? SLIMFS_VIEW_DEFAULT : 0);
	}
	/* prefetch: the prefetch chunks were placed first */
	for (size_t i = 0; i < nprefetch; i++)
		put32(b + L->off[SLIMFS_SEC_PREFETCH] + 4 * i, (uint32_t)i);

	if (compress) {
		r = compress_index(w->icctx, &b, L);
		if (r < 0) {
			free(b);
			goto out;
		}
	}
	L->data_off =
		(L->index_size + SLIMFS_DATA_ALIGN - 1) / SLIMFS_DATA_ALIGN * SLIMFS_DATA_ALIGN;

	/* superblock */
	sb = b;
	memcpy(sb, SLIMFS_MAGIC, SLIMFS_MAGIC_LEN);
#define SB(field, bits, v) PUT(sb, struct slimfs_disk_super, field, bits, (v))
	SB(version_major, 16, SLIMFS_VERSION_MAJOR);
	SB(version_minor, 16, L->zindex ? SLIMFS_VERSION_MINOR : 0);
	SB(feature_incompat, 32, L->zindex ? SLIMFS_FEATURE_INCOMPAT_ZINDEX : 0);
	SB(feature_compat, 32, w->a->prune ? SLIMFS_FEATURE_COMPAT_PRUNED : 0);
	SB(inode_size, 32, sizeof(struct slimfs_disk_inode));
	SB(dirent_size, 32, sizeof(struct slimfs_disk_dirent));
	SB(xattr_size, 32, sizeof(struct slimfs_disk_xattr));
	SB(chunk_size, 32, sizeof(struct slimfs_disk_chunk));
	SB(extent_size, 32, sizeof(struct slimfs_disk_extent));
	SB(cdc_min, 32, w->cdc.min);
	SB(cdc_avg, 32, w->cdc.avg);
	SB(cdc_max, 32, w->cdc.max);
	SB(zstd_level, 32, (uint32_t)w->o->zstd_level);
	SB(small_file_max, 32, w->small_max);
	SB(default_view, 32,
	   w->a->default_view >= 0 ? (uint32_t)w->a->default_view : SLIMFS_VIEW_NONE);
	SB(index_size, 64, L->index_size);
	SB(data_off, 64, L->data_off);
	SB(data_size, 64, L->data_size);
	SB(total_bytes, 64, w->total_bytes);
	SB(entry_count, 64, (uint64_t)w->ndir + 1);
	SB(config_off, 64, sr.config);
	SB(config_len, 64, w->a->config ? (uint64_t)w->a->config_len : 0);
#undef SB
	for (int s = 0; s < SLIMFS_SEC_COUNT; s++) {
		uint8_t *sec = sb + offsetof(struct slimfs_disk_super, sections) +
			       s * sizeof(struct slimfs_disk_section);

		put64(sec + offsetof(struct slimfs_disk_section, off), L->off[s]);
		put64(sec + offsetof(struct slimfs_disk_section, count), L->count[s]);
	}
	put64(sb + offsetof(struct slimfs_disk_super, checksum), XXH3_64bits(b, L->index_size));
	*out = b;
	r = 0;
out:
	strrefs_free(&sr);
	return r;
}

static int copy_range(struct copier *cp, uint64_t in_off, uint64_t out_off, uint64_t len)
{
	int r;

	while (len > 0) {
		size_t n = (size_t)MIN(len, (uint64_t)COPY_BUF_SIZE);

		cp->calls++;
		if (!cp->no_cfr) {
			loff_t i = (loff_t)in_off, o = (loff_t)out_off;
			ssize_t got = copy_file_range(cp->in, &i, cp->out, &o,
						      (size_t)MIN(len, 1u << 30), 0);

			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS ||
					errno == EINVAL)) {
				log_debug("writer: copy_file_range: %s; copying through a buffer",
					  strerror(errno));
				cp->no_cfr = true;
				continue;
			}
			if (got < 0)
				return -errno;
			if (got == 0)
				return -EIO; /* the spill file is shorter than written */
			n = (size_t)got;
		} else {
			if (!cp->buf) {
				cp->buf = malloc(COPY_BUF_SIZE);
				if (!cp->buf)
					return -ENOMEM;
			}
			r = slimfs_pread_all(cp->in, cp->buf, n, in_off);
			if (r < 0)
				return r;
			r = slimfs_pwrite_all(cp->out, cp->buf, n, out_off);
			if (r < 0)
				return r;
		}
		in_off += n;
		out_off += n;
		len -= n;
	}
	return 0;
}

/*
 * Early copy is on when the final order can be known during the data phase
 * (no profile: order_chunks) and the output is an empty regular file on a
 * file system that can insert a range in front of a file's data
 * (FALLOC_FL_INSERT_RANGE: ext4, XFS), so the index can go in front of the
 * frames at the end.
 */
static bool early_possible(const struct slimfs_write_args *a, int fd)
{
	struct statfs sf;
	struct stat st;

	if (a->nprefetch || a->nhot_ranges || a->nprofile_paths)
		return false;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != 0)
		return false;
	if (fstatfs(fd, &sf) < 0)
		return false;
	return sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC;
}

/*
 * 4. The image: the index at 0, zeros up to data_off, then the frames in
 * their final order. With early copy the frames are already in the output
 * from offset 0 (and mostly on disk); inserting data_off bytes in front of
 * them moves no data, only the file's extent map. Otherwise (or when the
 * insert fails) the frames are copied from the spill file now; frames that
 * are adjacent there (long runs, often) go in one call.
 */
static int write_out(struct writer *w, int fd, const uint8_t *index, const struct layout *L,
		     struct wchunk **order, size_t nchunks)
{
	static const uint8_t zeros[SLIMFS_DATA_ALIGN];
	struct copier cp = {.in = w->spill.fd, .out = fd};
	uint64_t pos = L->data_off, total = L->data_off + L->data_size - L->index_size;
	const char *how = "copy_file_range";
	size_t runs = 0, i = 0;
	int r;

	if (w->early.on) {
		if (w->early.pos != L->data_size) {
			log_error("internal error: %" PRIu64 " of %" PRIu64
				  " data bytes copied early",
				  w->early.pos, L->data_size);
			return -EUCLEAN;
		}
		if (!L->data_size ||
		    fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, (off_t)L->data_off) == 0) {
			i = nchunks; /* all there */
			runs = w->early.runs;
			cp.calls = w->early.cp.calls;
			how = w->early.cp.no_cfr ? "early, buffered" : "early, copy_file_range";
		} else {
			log_debug("writer: cannot insert the index in front of the data (%s); "
				  "copying the data again",
				  strerror(errno));
			if (ftruncate(fd, 0) < 0)
				return log_error_errno(-errno, "cannot write the image");
		}
	}
	r = slimfs_pwrite_all(fd, index, L->index_size, 0);
	if (r == 0)
		r = slimfs_pwrite_all(fd, zeros, (size_t)(L->data_off - L->index_size),
				      L->index_size);
	if (r < 0)
		return log_error_errno(r, "cannot write the image index");
	while (i < nchunks) {
		uint64_t start = order[i]->spill_off, len = 0;

		do
			len += order[i++]->csize;
		while (i < nchunks && order[i]->spill_off == start + len);
		r = copy_range(&cp, start, pos, len);
		if (r < 0) {
			free(cp.buf);
			return log_error_errno(r, "cannot write the image data");
		}
		pos += len;
		runs++;
		progress(w, "writing", pos - L->index_size, total, false);
	}
	if (cp.no_cfr)
		how = "buffered";
	log_debug("writer: %zu frames in %zu runs, %zu copies (%s)", nchunks, runs, cp.calls, how);
	free(cp.buf);
	return 0;
}

static void writer_free(struct writer *w)
{
	pool_stop(&w->pool);
	for (size_t i = 0; i < w->nino; i++)
		w->ino[i].ti->id = UINT32_MAX;
	free(w->ino);
	free(w->dir);
	free(w->ext);
	chunk_store_free(&w->chunks);
	free(w->by_id.e);
	free(w->small.e);
	free(w->pack);
	free(w->ppacks.v);
	free(w->hpacks.v);
	free(w->hot);
	free(w->early.v);
	ZSTD_freeCCtx(w->icctx);
	free(w->early.cp.buf);
	if (w->spill.fd >= 0)
		close(w->spill.fd);
	free(w->str.buf);
	free(w->str.set);
	pthread_mutex_destroy(&w->chunk_lock);
}

static int check_args(const struct slimfs_write_args *a)
{
	const struct slimfs_build_opts *o = a->o;

	if (!o) {
		log_error("no build options given to the writer");
		return -EINVAL;
	}
	if (o->cdc_min == 0 || o->cdc_min > o->cdc_avg || o->cdc_avg > o->cdc_max ||
	    o->cdc_max > SLIMFS_CHUNK_MAX) {
		log_error("chunk sizes must satisfy 0 < min <= avg <= max <= %u (got %u, %u, %u)",
			  SLIMFS_CHUNK_MAX, o->cdc_min, o->cdc_avg, o->cdc_max);
		return -EINVAL;
	}
	if (o->small_file_max > o->cdc_max) {
		log_error("small file limit %u is larger than the largest chunk %u",
			  o->small_file_max, o->cdc_max);
		return -EINVAL;
	}
	if (a->nviews > SLIMFS_VIEWS_MAX) {
		log_error("%u views given, the format holds at most %u", a->nviews,
			  SLIMFS_VIEWS_MAX);
		return -EFBIG;
	}
	if (a->nviews && !a->view_names) {
		log_error("%u views without names", a->nviews);
		return -EINVAL;
	}
	for (unsigned v = 0; v < a->nviews; v++) {
		size_t len = a->view_names[v] ? strlen(a->view_names[v]) : 0;

		if (len == 0 || len > SLIMFS_NAME_MAX) {
			log_error("view %u: name must be 1..%u bytes", v, SLIMFS_NAME_MAX);
			return -EINVAL;
		}
	}
	if (a->default_view >= (int)a->nviews || a->default_view < -1) {
		log_error("default view %d does not exist (%u views)", a->default_view, a->nviews);
		return -EINVAL;
	}
	if (a->prune && a->nviews == 0) {
		log_error("pruning needs at least one view");
		return -EINVAL;
	}
	if (a->nprefetch && !a->prefetch_ids) {
		log_error("%zu prefetch ids without data", a->nprefetch);
		return -EINVAL;
	}
	if (a->nprofile_paths && !a->profile_paths) {
		log_error("%zu profile paths without data", a->nprofile_paths);
		return -EINVAL;
	}
	return 0;
}

int slimfs_write_image(struct slimfs_tree *t, const struct slimfs_write_args *a, int out_fd,
		       struct slimfs_build_stats *stats)
{
	struct writer w = {.t = t, .a = a, .spill = {.fd = -1}};
	_cleanup_free_ struct wchunk **order = NULL;
	_cleanup_free_ uint8_t *index = NULL;
	struct layout L = {0};
	size_t nchunks = 0, nprefetch = 0;
	uint64_t t0, t1, t2, t3, t4;
	unsigned nth;
	int r;

	r = check_args(a);
	if (r < 0)
		return r;
	w.o = a->o;
	w.view_mask = a->nviews >= 32 ? UINT32_MAX : (1u << a->nviews) - 1;
	w.chunk_max = MIN(w.o->cdc_max, SLIMFS_CHUNK_MAX - CHUNK_SLACK);
	w.small_max = MIN(w.o->small_file_max, w.chunk_max);
	slimfs_cdc_init(&w.cdc, MIN(w.o->cdc_min, w.chunk_max), MIN(w.o->cdc_avg, w.chunk_max),
			w.chunk_max);
	w.hot_max = HOT_PACK_CHUNKS * w.cdc.avg > w.chunk_max ? w.chunk_max
							      : HOT_PACK_CHUNKS * w.cdc.avg;
	pthread_mutex_init(&w.chunk_lock, NULL);
	w.pack = malloc(w.chunk_max);
	if (!w.pack) {
		r = -ENOMEM;
		goto out;
	}
	nth = w.o->threads;
	if (nth == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nth = n > 0 ? (unsigned)MIN(n, 256) : 1;
	}
	r = slimfs_tmpfile_open(w.o->spill_dir, "spill");
	if (r < 0)
		goto out;
	w.spill.fd = r;
	w.early = (struct early){.on = early_possible(a, out_fd), .cp = {.in = r, .out = out_fd}};
	r = pool_start(&w.pool, &w, nth, FILE_WINDOW_PER_THREAD * (size_t)nth,
		       COMPRESS_BACKLOG_PER_THREAD * (size_t)nth * w.chunk_max);
	if (r < 0)
		goto out;

	t0 = slimfs_now_ns();
	r = walk(&w);
	if (r < 0)
		goto out;
	t1 = slimfs_now_ns();
	progress(&w, "chunking", 0, w.total_bytes, true);
	r = write_data(&w);
	if (r == 0)
		r = early_copy(&w, true);
	if (r < 0)
		goto out;
	progress(&w, "compressing", w.total_bytes, w.total_bytes, true);
	pool_stop(&w.pool);
	t2 = slimfs_now_ns();

	r = order_chunks(&w, &order, &nprefetch);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < w.chunks.n; i++)
		if (!chunk_at(&w.chunks, i)->alias)
			nchunks++;
	r = build_index(&w, order, nchunks, nprefetch, !w.o->index_plain, &index, &L);
	if (r < 0)
		goto out;
	t3 = slimfs_now_ns();
	progress(&w, "writing", 0, L.data_off + L.data_size - L.index_size, true);
	r = write_out(&w, out_fd, index, &L, order, nchunks);
	if (r < 0)
		goto out;
	progress(&w, "writing", L.data_off + L.data_size - L.index_size,
		 L.data_off + L.data_size - L.index_size, true);
	t4 = slimfs_now_ns();
	log_debug("writer: walk %.3f s, data %.3f s (%u threads), index %.3f s, write %.3f s",
		  (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, nth, (double)(t3 - t2) / 1e9,
		  (double)(t4 - t3) / 1e9);

	if (stats) {
		memset(stats, 0, sizeof(*stats));
		stats->entries = (uint64_t)w.ndir + 1;
		stats->files = w.files;
		stats->total_bytes = w.total_bytes;
		stats->chunks = nchunks;
		stats->chunk_refs = w.next;
		for (size_t i = 0; i < nchunks; i++) {
			stats->unique_bytes += order[i]->usize;
			stats->compressed_bytes += order[i]->csize;
		}
		stats->index_size = L.index_size;
		stats->index_plain_size = L.plain_size;
		stats->image_size = L.data_off + L.data_size;
		slimfs_sha256(index, L.index_size, stats->index_digest);
	}
out:
	writer_free(&w);
	return r;
}
