// SPDX-License-Identifier: MIT
/*
 * Image writer: tree -> index + data (format.h, FORMAT.md).
 *
 *   1. walk: DFS pre-order from the root, children sorted by name; inode ids
 *      at first encounter (root 0), dirents of a directory contiguous.
 *   2. data: regular files in inode id order. Large files are cut by the
 *      content-defined chunker within each data segment (holes are skipped);
 *      small files are packed into shared chunks cut at file boundaries. Each
 *      chunk is named by XXH3-128 and stored once; new chunks are compressed
 *      by a thread pool (one ZSTD_CCtx per worker), which also computes the
 *      SHA-256 of each frame. Only compressed frames stay in memory.
 *   3. order: prefetch chunks first, then by first reference in id order.
 *   4. index: superblock and sections laid out in memory, checksummed,
 *      written at 0, then the frames from data_off.
 *
 * Everything that decides output bytes runs on the calling thread in a fixed
 * order; workers only fill in per-chunk results, so the image does not depend
 * on thread timing.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/util.h"
#include "cdc.h"
#include "tree.h"

#define WRITE_BUF_SIZE (8u << 20)
#define READ_WINDOW    (4u << 20)
/* Worst-case zstd frame overhead for incompressible input is a few bytes per
 * 128 KiB block; keep chunks this far below SLIMFS_CHUNK_MAX so that every
 * frame fits under it too. */
#define CHUNK_SLACK 4096u

/* ---- chunks ---------------------------------------------------------- */

struct wchunk {
	uint8_t id[16];
	uint8_t sha256[32];
	uint32_t usize, csize;
	void *frame;	      /* compressed, owned; set by a worker */
	struct wchunk *alias; /* same id as an earlier chunk (a repeated pack) */
	uint32_t order;	      /* final index, UINT32_MAX = not yet placed */
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

static struct wchunk *chunk_at(const struct chunk_store *s, size_t i)
{
	return &s->blocks[i / CHUNK_BLOCK][i % CHUNK_BLOCK];
}

static void chunk_store_free(struct chunk_store *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(chunk_at(s, i)->frame);
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

/* ---- compression pool ------------------------------------------------ */

struct job {
	struct wchunk *c;
	void *raw; /* owned, freed by the worker */
	size_t len;
};

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	struct job *q; /* ring of qcap */
	size_t qcap, qhead, qlen;
	size_t inflight; /* queued + being compressed */
	bool stop;
	int err;
	int level;
	uint64_t raw_bytes_done;
	pthread_t *th;
	unsigned nth;
};

static int compress_one(ZSTD_CCtx *cctx, struct job *j)
{
	size_t cap = ZSTD_compressBound(j->len), r;
	void *dst = malloc(cap), *shrunk;

	if (!dst)
		return -ENOMEM;
	r = ZSTD_compress2(cctx, dst, cap, j->raw, j->len);
	if (ZSTD_isError(r)) {
		free(dst);
		log_error("zstd: cannot compress a chunk of %zu bytes: %s", j->len,
			  ZSTD_getErrorName(r));
		return -EIO;
	}
	if (r > SLIMFS_CHUNK_MAX) {
		free(dst);
		log_error("compressed chunk of %zu bytes exceeds the format's %u byte limit", r,
			  SLIMFS_CHUNK_MAX);
		return -EFBIG;
	}
	shrunk = realloc(dst, r ? r : 1);
	if (shrunk)
		dst = shrunk;
	slimfs_sha256(dst, r, j->c->sha256);
	j->c->csize = (uint32_t)r;
	j->c->frame = dst;
	return 0;
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	int setup = 0;

	if (!cctx) {
		setup = -ENOMEM;
	} else if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, p->level)) ||
		   ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)) ||
		   ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0))) {
		log_error("zstd: cannot set compression level %d", p->level);
		setup = -EINVAL;
	}

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job j;
		int r;

		while (!p->qlen && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		if (!p->qlen)
			break;
		j = p->q[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
		pthread_mutex_unlock(&p->lock);

		r = setup < 0 ? setup : compress_one(cctx, &j);
		free(j.raw);

		pthread_mutex_lock(&p->lock);
		if (r < 0 && !p->err)
			p->err = r;
		p->raw_bytes_done += j.len;
		p->inflight--;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

static int pool_start(struct pool *p, unsigned nth, int level)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->level = level;
	p->qcap = 2 * (size_t)nth + 2; /* bounds raw chunks in memory */
	p->q = calloc(p->qcap, sizeof(*p->q));
	p->th = calloc(nth, sizeof(*p->th));
	if (!p->q || !p->th) {
		free(p->q);
		free(p->th);
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
			log_error_errno(-r, "cannot start a compression thread");
			pthread_mutex_destroy(&p->lock);
			pthread_cond_destroy(&p->work);
			pthread_cond_destroy(&p->done);
			free(p->q);
			free(p->th);
			return -r;
		}
	}
	return 0;
}

/* Queues raw (ownership passes to the pool, also on error). */
static int pool_submit(struct pool *p, struct wchunk *c, void *raw, size_t len)
{
	int r;

	pthread_mutex_lock(&p->lock);
	while (p->qlen == p->qcap && !p->err)
		pthread_cond_wait(&p->done, &p->lock);
	r = p->err;
	if (!r) {
		p->q[(p->qhead + p->qlen) % p->qcap] = (struct job){.c = c, .raw = raw, .len = len};
		p->qlen++;
		p->inflight++;
		pthread_cond_signal(&p->work);
	}
	pthread_mutex_unlock(&p->lock);
	if (r)
		free(raw);
	return r;
}

/* Waits for every queued job; returns the first worker error. */
static int pool_drain(struct pool *p)
{
	int r;

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
	/* jobs still queued after an error */
	while (p->qlen) {
		free(p->q[p->qhead].raw);
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qlen--;
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p->q);
	free(p->th);
	p->th = NULL;
}

/* ---- writer state ---------------------------------------------------- */

struct winode {
	struct slimfs_tinode *ti;
	struct slimfs_tnode *first; /* first link, for messages */
	uint32_t parent, nlink;
	uint32_t dirent_start, dirent_count; /* directories */
	uint32_t ext_start, ext_count;	     /* regular files */
};

struct wdirent {
	struct slimfs_tnode *node;
};

struct wextent {
	uint64_t file_off;
	struct wchunk *c;
	uint32_t chunk_off, len;
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
	struct chunk_store chunks;
	struct hmap by_id, small;
	struct slimfs_cdc cdc;
	uint32_t chunk_max;
	uint32_t small_max; /* files of 1..small_max bytes are packed */
	uint8_t *window;    /* READ_WINDOW + chunk_max */

	/* the open pack of small files */
	uint8_t *pack;
	size_t pack_len;
	struct wchunk *pack_chunk; /* reserved when the pack gets its first file */

	struct pool pool;
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

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t ncap;
	void *np;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 256;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * size);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

static int too_many(const char *what)
{
	log_error("too many %s for the image format (at most %" PRIu32 ")", what, UINT32_MAX - 1);
	return -EFBIG;
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
	r = grow((void **)&stack, &stack_cap, 1, sizeof(*stack));
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
		r = grow((void **)&w->ino, &w->ino_cap, w->nino + 1, sizeof(*w->ino));
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
			r = grow((void **)&w->dir, &w->dir_cap, w->ndir + 1, sizeof(*w->dir));
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
		r = grow((void **)&stack, &stack_cap, nstack + nvis, sizeof(*stack));
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
	r = grow((void **)&w->ext, &w->ext_cap, w->next + 1, sizeof(*w->ext));
	if (r < 0)
		return r;
	w->ext[w->next++] = (struct wextent){file_off, c, chunk_off, len};
	return 0;
}

static void chunk_id(const void *buf, size_t len, uint8_t id[16])
{
	XXH128_canonical_t canon;

	XXH128_canonicalFromHash(&canon, XXH3_128bits(buf, len));
	memcpy(id, canon.digest, 16);
}

/* A chunk with plain bytes buf: the known one with that id, or a new one
 * queued for compression. */
static int intern_chunk(struct writer *w, const void *buf, size_t len, struct wchunk **out)
{
	struct hmap_ent *he;
	struct wchunk *c;
	uint8_t id[16];
	void *raw;
	int r;

	chunk_id(buf, len, id);
	he = hmap_find(&w->by_id, id);
	if (he) {
		*out = he->c;
		return 0;
	}
	c = chunk_new(&w->chunks);
	if (!c)
		return w->chunks.n >= UINT32_MAX ? too_many("chunks") : -ENOMEM;
	memcpy(c->id, id, 16);
	c->usize = (uint32_t)len;
	r = hmap_add(&w->by_id, id, c, 0);
	if (r < 0)
		return r;
	raw = malloc(len ? len : 1);
	if (!raw)
		return -ENOMEM;
	memcpy(raw, buf, len);
	*out = c;
	return pool_submit(&w->pool, c, raw, len);
}

static int seal_pack(struct writer *w)
{
	struct wchunk *c = w->pack_chunk;
	struct hmap_ent *he;
	uint8_t *raw;
	int r;

	if (!c)
		return 0;
	w->pack_chunk = NULL;
	chunk_id(w->pack, w->pack_len, c->id);
	c->usize = (uint32_t)w->pack_len;
	he = hmap_find(&w->by_id, c->id);
	if (he) {
		c->alias = he->c;
		w->pack_len = 0;
		return 0;
	}
	r = hmap_add(&w->by_id, c->id, c, 0);
	if (r < 0)
		return r;
	/* hand the buffer to the pool, start a new one */
	raw = w->pack;
	w->pack = malloc(w->chunk_max);
	r = pool_submit(&w->pool, c, raw, w->pack_len);
	w->pack_len = 0;
	if (r < 0)
		return r;
	return w->pack ? 0 : -ENOMEM;
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

static int write_small(struct writer *w, struct winode *wi, int fd)
{
	const struct slimfs_tcontent *d = &wi->ti->data;
	size_t size = (size_t)d->size;
	_cleanup_free_ uint8_t *buf = calloc(1, size);
	struct hmap_ent *he;
	XXH128_canonical_t canon;
	uint8_t key[16];
	uint64_t h64, target;
	int r;

	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; i < d->nseg; i++) {
		r = slimfs_pread_all(fd, buf + d->seg[i].file_off, d->seg[i].len,
				     d->seg[i].src_off);
		if (r < 0)
			return read_error(wi, r);
	}
	XXH128_canonicalFromHash(&canon, XXH3_128bits(buf, size));
	memcpy(key, canon.digest, 16);
	he = hmap_find(&w->small, key);
	if (he)
		return add_extent(w, 0, he->c, he->off, (uint32_t)size);

	if (w->pack_len + size > w->chunk_max) {
		r = seal_pack(w);
		if (r < 0)
			return r;
	}
	if (!w->pack_chunk) {
		w->pack_chunk = chunk_new(&w->chunks);
		if (!w->pack_chunk)
			return w->chunks.n >= UINT32_MAX ? too_many("chunks") : -ENOMEM;
	}
	memcpy(w->pack + w->pack_len, buf, size);
	r = hmap_add(&w->small, key, w->pack_chunk, (uint32_t)w->pack_len);
	if (r < 0)
		return r;
	r = add_extent(w, 0, w->pack_chunk, (uint32_t)w->pack_len, (uint32_t)size);
	if (r < 0)
		return r;
	w->pack_len += size;

	/*
	 * Cut after this file with a probability proportional to its size
	 * (size / (avg - min)), decided by its content hash: a pack boundary
	 * depends only on the file before it, like a byte-level CDC cut, so
	 * adding or removing one file changes only the pack it lands in.
	 */
	h64 = XXH3_64bits(buf, size) >> 32;
	target = w->cdc.avg > w->cdc.min ? w->cdc.avg - w->cdc.min : w->cdc.avg;
	if (w->pack_len >= w->cdc.min && h64 * target < ((uint64_t)size << 32))
		return seal_pack(w);
	return 0;
}

static int write_large(struct writer *w, struct winode *wi, int fd)
{
	const struct slimfs_tcontent *d = &wi->ti->data;
	int r;

	for (uint32_t i = 0; i < d->nseg; i++) {
		const struct slimfs_tseg *s = &d->seg[i];
		uint64_t readpos = 0, file_off = s->file_off;
		size_t filled = 0;

		for (;;) {
			size_t start = 0, cut;
			bool eof;

			while (filled < READ_WINDOW && readpos < s->len) {
				size_t n = (size_t)MIN((uint64_t)(READ_WINDOW - filled),
						       s->len - readpos);

				r = slimfs_pread_all(fd, w->window + filled, n,
						     s->src_off + readpos);
				if (r < 0)
					return read_error(wi, r);
				filled += n;
				readpos += n;
				w->bytes_done += n;
			}
			eof = readpos == s->len;
			while ((cut = slimfs_cdc_cut(&w->cdc, w->window + start, filled - start,
						     eof)) > 0) {
				struct wchunk *c;

				r = intern_chunk(w, w->window + start, cut, &c);
				if (r < 0)
					return r;
				r = add_extent(w, file_off, c, 0, (uint32_t)cut);
				if (r < 0)
					return r;
				start += cut;
				file_off += cut;
			}
			memmove(w->window, w->window + start, filled - start);
			filled -= start;
			if (eof)
				break;
			progress(w, "chunking", w->bytes_done, w->total_bytes, false);
		}
	}
	return 0;
}

static int write_data(struct writer *w)
{
	int r = 0;

	for (size_t id = 0; id < w->nino; id++) {
		struct winode *wi = &w->ino[id];
		const struct slimfs_tcontent *d = &wi->ti->data;
		int fd = -1;

		wi->ext_start = (uint32_t)w->next;
		if (!S_ISREG(wi->ti->mode))
			continue;
		w->files_done++;
		if (!d->nseg || !d->size)
			continue;
		r = check_segments(wi);
		if (r < 0)
			return r;
		r = open_content(w, wi, &fd);
		if (r < 0)
			return r;
		if (d->size <= w->small_max) {
			r = write_small(w, wi, fd);
		} else {
			r = write_large(w, wi, fd);
		}
		if (!d->from_spool)
			close(fd);
		if (r < 0)
			return r;
		wi->ext_count = (uint32_t)(w->next - wi->ext_start);
		if (d->size <= w->small_max)
			w->bytes_done += d->size;
		progress(w, "chunking", w->bytes_done, w->total_bytes, false);
	}
	r = seal_pack(w);
	if (r < 0)
		return r;
	return pool_drain(&w->pool);
}

/* ---- 3. chunk order -------------------------------------------------- */

static struct wchunk *real(struct wchunk *c)
{
	return c->alias ? c->alias : c;
}

static int order_chunks(struct writer *w, struct wchunk ***order_out, size_t *nprefetch_out)
{
	size_t n = 0, nunique = 0, np = 0;
	struct wchunk **order;

	for (size_t i = 0; i < w->chunks.n; i++)
		if (!chunk_at(&w->chunks, i)->alias)
			nunique++;
	order = calloc(nunique ? nunique : 1, sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < w->a->nprefetch; i++) {
		struct hmap_ent *he = hmap_find(&w->by_id, w->a->prefetch_ids + 16 * i);
		struct wchunk *c;

		if (!he)
			continue;
		c = real(he->c);
		if (c->order != UINT32_MAX)
			continue;
		c->order = (uint32_t)n;
		order[n++] = c;
	}
	np = n;
	for (size_t i = 0; i < w->next; i++) {
		struct wchunk *c = real(w->ext[i].c);

		if (c->order != UINT32_MAX)
			continue;
		c->order = (uint32_t)n;
		order[n++] = c;
	}
	/* every unique chunk is referenced by some extent */
	if (n != nunique) {
		free(order);
		log_error("internal error: %zu chunks placed, %zu expected", n, nunique);
		return -EUCLEAN;
	}
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
	r = grow((void **)&s->buf, &s->cap, s->len + len + 1, 1);
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

static int build_strings(struct writer *w, struct strrefs *sr)
{
	size_t xi = 0;
	int r;

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
	uint64_t index_size, data_off, data_size;
};

static int build_index(struct writer *w, struct wchunk **order, size_t nchunks, size_t nprefetch,
		       uint8_t **out, struct layout *L)
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
	L->index_size = pos;
	L->data_off = (pos + SLIMFS_DATA_ALIGN - 1) / SLIMFS_DATA_ALIGN * SLIMFS_DATA_ALIGN;
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

	/* superblock */
	sb = b;
	memcpy(sb, SLIMFS_MAGIC, SLIMFS_MAGIC_LEN);
#define SB(field, bits, v) PUT(sb, struct slimfs_disk_super, field, bits, (v))
	SB(version_major, 16, SLIMFS_VERSION_MAJOR);
	SB(version_minor, 16, SLIMFS_VERSION_MINOR);
	SB(feature_incompat, 32, 0);
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

static int write_out(struct writer *w, int fd, const uint8_t *index, const struct layout *L,
		     struct wchunk **order, size_t nchunks)
{
	_cleanup_free_ uint8_t *buf = malloc(WRITE_BUF_SIZE);
	uint64_t pos, written = 0;
	size_t fill;
	int r;

	if (!buf)
		return -ENOMEM;
	r = slimfs_pwrite_all(fd, index, L->index_size, 0);
	if (r < 0)
		return log_error_errno(r, "cannot write the image index");
	pos = L->index_size;
	fill = (size_t)(L->data_off - L->index_size);
	memset(buf, 0, fill);
	for (size_t i = 0; i < nchunks; i++) {
		const struct wchunk *c = order[i];

		if (fill + c->csize > WRITE_BUF_SIZE) {
			r = slimfs_pwrite_all(fd, buf, fill, pos);
			if (r < 0)
				return log_error_errno(r, "cannot write the image data");
			pos += fill;
			written += fill;
			fill = 0;
			progress(w, "writing", written, L->data_off + L->data_size - L->index_size,
				 false);
		}
		memcpy(buf + fill, c->frame, c->csize);
		fill += c->csize;
	}
	if (fill) {
		r = slimfs_pwrite_all(fd, buf, fill, pos);
		if (r < 0)
			return log_error_errno(r, "cannot write the image data");
	}
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
	free(w->window);
	free(w->pack);
	free(w->str.buf);
	free(w->str.set);
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
	return 0;
}

int slimfs_write_image(struct slimfs_tree *t, const struct slimfs_write_args *a, int out_fd,
		       struct slimfs_build_stats *stats)
{
	struct writer w = {.t = t, .a = a};
	_cleanup_free_ struct wchunk **order = NULL;
	_cleanup_free_ uint8_t *index = NULL;
	struct layout L = {0};
	size_t nchunks = 0, nprefetch = 0;
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
	w.window = malloc((size_t)READ_WINDOW + w.chunk_max);
	w.pack = malloc(w.chunk_max);
	if (!w.window || !w.pack) {
		r = -ENOMEM;
		goto out;
	}
	nth = w.o->threads;
	if (nth == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		nth = n > 0 ? (unsigned)MIN(n, 256) : 1;
	}
	r = pool_start(&w.pool, nth, w.o->zstd_level);
	if (r < 0)
		goto out;

	r = walk(&w);
	if (r < 0)
		goto out;
	progress(&w, "chunking", 0, w.total_bytes, true);
	r = write_data(&w);
	if (r < 0)
		goto out;
	progress(&w, "compressing", w.total_bytes, w.total_bytes, true);
	pool_stop(&w.pool);

	r = order_chunks(&w, &order, &nprefetch);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < w.chunks.n; i++)
		if (!chunk_at(&w.chunks, i)->alias)
			nchunks++;
	r = build_index(&w, order, nchunks, nprefetch, &index, &L);
	if (r < 0)
		goto out;
	progress(&w, "writing", 0, L.data_off + L.data_size - L.index_size, true);
	r = write_out(&w, out_fd, index, &L, order, nchunks);
	if (r < 0)
		goto out;
	progress(&w, "writing", L.data_off + L.data_size - L.index_size,
		 L.data_off + L.data_size - L.index_size, true);

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
		stats->image_size = L.data_off + L.data_size;
		slimfs_sha256(index, L.index_size, stats->index_digest);
	}
out:
	writer_free(&w);
	return r;
}
