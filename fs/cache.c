// SPDX-License-Identifier: MIT
/* In-memory cache of decoded chunks with single-flight loads (see cache.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cache.h"
#include "slimfs/format.h"
#include "slimfs/util.h"

/* Power of two; a shard is chosen by chunk index, so neighbours spread out. */
#define NSHARDS 32u

enum { ENTRY_LOADING, ENTRY_READY, ENTRY_FAILED };

struct slimfs_cache_entry {
	struct slimfs_cache_entry *prev, *next; /* shard LRU, most recent first */
	uint8_t *data;
	uint32_t chunk, len;
	_Atomic uint32_t refs; /* the table holds one while the entry is in it */
	int state;	       /* under the shard lock */
	uint32_t uses;	       /* reads that got it since it was loaded (shard lock) */
	int err;	       /* ENTRY_FAILED: the -errno waiters get */
};

struct shard {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a load finished */
	struct slimfs_cache_entry *head, *tail;
	uint64_t bytes, entries, cap;
	/* Counted under the lock: no shared cache line on the hit path. */
	uint64_t requests, hits, waits, evictions, demoted;
} __attribute__((aligned(64)));

/* Remembered failures: few at a time, so a small table replaced LRU. */
#define BAD_SLOTS	   64u
#define HOLDOFF_FETCH_NS   1000000000ull
#define HOLDOFF_VERIFY_MAX 30000000000ull
#define LOG_INTERVAL_NS	   60000000000ull

struct bad {
	uint32_t chunk, fails; /* fails 0: a free slot */
	int err;
	uint64_t until_ns;  /* answer err until then */
	uint64_t logged_ns; /* last log line about this chunk */
	uint64_t used_ns;
	uint64_t suppressed; /* log lines not written since */
};

/* The two ends of a decoded chunk (see SLIMFS_EDGE); len 0: an empty slot. */
struct edge {
	uint32_t chunk, len; /* len: the chunk's decoded size */
	uint8_t head[SLIMFS_EDGE], tail[SLIMFS_EDGE];
};

/* Edge slots share this many locks (a copy of 4 KiB at most under one). */
#define EDGE_LOCKS 64u

/*
 * Per thread: a zstd context and a frame buffer, kept for its life, unless an
 * idle release (slimfs_cache_release) frees them in between. Who may touch
 * dctx, frame and cap is decided by state, changed only by compare-and-swap
 * from SCRATCH_FREE: the owner holds SCRATCH_BUSY from scratch_get to
 * scratch_put, a release holds SCRATCH_RELEASING while it frees them. Each
 * CAS takes the buffer from FREE to its holder and only the holder stores
 * FREE back (release order, so the next holder's acquiring CAS sees what the
 * previous one wrote): at most one thread ever uses them, a release never
 * frees a buffer under its owner (a busy one is skipped), and an owner that
 * finds a release in progress waits the few microseconds of a free().
 */
enum { SCRATCH_FREE, SCRATCH_BUSY, SCRATCH_RELEASING };

struct scratch {
	_Atomic int state;
	ZSTD_DCtx *dctx;
	uint8_t *frame;
	size_t cap;
	struct slimfs_cache *c;	     /* its cache's list of scratches */
	struct scratch *prev, *next; /* under c->scratch_lock */
};

struct slimfs_cache {
	struct slimfs_image *img; /* borrowed */
	const struct slimfs_index *idx;
	struct slimfs_diskcache *disk; /* borrowed, may be NULL */
	uint32_t nchunks;
	struct slimfs_cache_entry **slots; /* [nchunks], under the owning shard's lock */
	/* One bit per chunk: decoded once, its id checked (SLIMFS_DECODE_ID_KNOWN). */
	_Atomic uint8_t *id_known;
	/* One bit per chunk: its frame matched its SHA-256, read from the backend
	 * while slimfs_backend_unchanged (SLIMFS_DECODE_FRAME_KNOWN). */
	_Atomic uint8_t *frame_known;
	pthread_key_t scratch_key;
	pthread_mutex_t scratch_lock; /* the list of every thread's scratch */
	struct scratch *scratches;
	_Atomic uint64_t misses, fetches, bytes_fetched, verified, verify_failures;
	_Atomic uint64_t disk_hits, disk_misses, disk_stores;
	_Atomic uint64_t runs, coalesced, background, background_bytes, held_off;
	_Atomic uint64_t peek_hits, edge_hits, peek_misses, frames_reused;
	/* Ends of chunks decoded lately: slot i % nedges, under edge_locks[slot % EDGE_LOCKS]. */
	struct edge *edges;
	uint32_t nedges;
	pthread_mutex_t edge_locks[EDGE_LOCKS];
	/* Chunks whose last load failed (hold-off and log rate limit). */
	pthread_mutex_t bad_lock;
	_Atomic unsigned nbad;
	struct bad bad[BAD_SLOTS];
	struct shard shards[NSHARDS];
};

static struct shard *shard_of(struct slimfs_cache *c, uint32_t i)
{
	return &c->shards[i & (NSHARDS - 1)];
}

/* Frees the buffers of s, held by the caller (BUSY or RELEASING); returns their bytes. */
static size_t scratch_drop(struct scratch *s)
{
	size_t n = s->cap + (s->dctx ? ZSTD_sizeof_DCtx(s->dctx) : 0);

	ZSTD_freeDCtx(s->dctx);
	slimfs_huge_free(s->frame, s->cap);
	s->dctx = NULL;
	s->frame = NULL;
	s->cap = 0;
	return n;
}

/* At the exit of its thread (the key's destructor), or by slimfs_cache_free. */
static void scratch_free(void *p)
{
	struct scratch *s = p;

	if (!s)
		return;
	pthread_mutex_lock(&s->c->scratch_lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		s->c->scratches = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pthread_mutex_unlock(&s->c->scratch_lock);
	/* Out of the list: no release sees it any more. */
	scratch_drop(s);
	free(s);
}

/* The calling thread's scratch, held (SCRATCH_BUSY) until scratch_put. */
static struct scratch *scratch_take(struct slimfs_cache *c)
{
	struct scratch *s = pthread_getspecific(c->scratch_key);
	int want = SCRATCH_FREE;

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->c = c;
		atomic_init(&s->state, SCRATCH_BUSY);
		if (pthread_setspecific(c->scratch_key, s) != 0) {
			free(s);
			return NULL;
		}
		pthread_mutex_lock(&c->scratch_lock);
		s->next = c->scratches;
		if (s->next)
			s->next->prev = s;
		c->scratches = s;
		pthread_mutex_unlock(&c->scratch_lock);
		return s;
	}
	/* Only a release can hold it now (never nested: see scratch_get's callers). */
	while (!atomic_compare_exchange_weak_explicit(&s->state, &want, SCRATCH_BUSY,
						      memory_order_acquire, memory_order_relaxed)) {
		want = SCRATCH_FREE;
		sched_yield();
	}
	return s;
}

static void scratch_put(struct scratch *s)
{
	if (s)
		atomic_store_explicit(&s->state, SCRATCH_FREE, memory_order_release);
}

/* The calling thread's scratch with a frame of at least need bytes, held until
 * scratch_put; NULL (nothing held) when out of memory. */
static struct scratch *scratch_get(struct slimfs_cache *c, size_t need)
{
	struct scratch *s = scratch_take(c);

	if (!s)
		return NULL;
	if (!s->dctx)
		s->dctx = ZSTD_createDCtx();
	if (!s->dctx)
		goto fail;
	if (s->cap < need) {
		/* Grow to the format's bound at once: no repeated reallocations. */
		size_t cap = MAX(need, (size_t)SLIMFS_CHUNK_MAX);
		uint8_t *f = slimfs_huge_alloc(cap); /* a few faults per thread, not 1k */

		if (!f)
			goto fail;
		slimfs_huge_free(s->frame, s->cap);
		s->frame = f;
		s->cap = cap;
	}
	return s;
fail:
	scratch_put(s);
	return NULL;
}

static void free_tables(struct slimfs_cache *c)
{
	free((void *)c->id_known);
	free((void *)c->frame_known);
	slimfs_huge_free(c->edges, (size_t)c->nedges * sizeof(*c->edges));
	slimfs_huge_free(c->slots, MAX(c->nchunks, 1u) * sizeof(*c->slots));
}

int slimfs_cache_new(struct slimfs_image *img, const struct slimfs_cache_opts *o,
		     struct slimfs_cache **out)
{
	struct slimfs_cache *c;
	uint64_t edge_bytes;

	if (img->info->chunk_count > UINT32_MAX)
		return -EUCLEAN;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->img = img;
	c->idx = img->idx;
	c->disk = o->disk;
	c->nchunks = (uint32_t)img->info->chunk_count;
	/* No more slots than chunks; none for a cache too small to share. */
	c->nedges = (uint32_t)MIN(o->mem_bytes / SLIMFS_EDGE_SHARE / sizeof(struct edge),
				  (uint64_t)c->nchunks);
	if (c->nedges < EDGE_LOCKS)
		c->nedges = 0;
	edge_bytes = (uint64_t)c->nedges * sizeof(struct edge);
	/*
	 * Mapped, not calloc: the pages of slots never used are never touched
	 * (calloc clears what it takes from a heap grown ahead, cmd_mount.c).
	 */
	c->edges = c->nedges ? slimfs_huge_alloc((size_t)edge_bytes) : NULL;
	c->slots = slimfs_huge_alloc(MAX(c->nchunks, 1u) * sizeof(*c->slots));
	c->id_known = calloc(c->nchunks / 8 + 1, 1);
	c->frame_known = calloc(c->nchunks / 8 + 1, 1);
	if (!c->slots || !c->id_known || !c->frame_known || (c->nedges && !c->edges) ||
	    pthread_key_create(&c->scratch_key, scratch_free) != 0) {
		free_tables(c);
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->bad_lock, NULL);
	pthread_mutex_init(&c->scratch_lock, NULL);
	for (unsigned k = 0; k < EDGE_LOCKS; k++)
		pthread_mutex_init(&c->edge_locks[k], NULL);
	for (unsigned s = 0; s < NSHARDS; s++) {
		pthread_mutex_init(&c->shards[s].lock, NULL);
		pthread_cond_init(&c->shards[s].done, NULL);
		c->shards[s].cap = (o->mem_bytes - edge_bytes) / NSHARDS;
	}
	*out = c;
	return 0;
}

static void entry_free(struct slimfs_cache_entry *e)
{
	free(e->data);
	free(e);
}

void slimfs_cache_put(struct slimfs_cache *c, struct slimfs_cache_entry *e)
{
	(void)c;
	if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
		entry_free(e);
}

void slimfs_cache_free(struct slimfs_cache *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->nchunks; i++)
		if (c->slots[i])
			slimfs_cache_put(c, c->slots[i]);
	for (unsigned s = 0; s < NSHARDS; s++) {
		pthread_mutex_destroy(&c->shards[s].lock);
		pthread_cond_destroy(&c->shards[s].done);
	}
	pthread_mutex_destroy(&c->bad_lock);
	for (unsigned k = 0; k < EDGE_LOCKS; k++)
		pthread_mutex_destroy(&c->edge_locks[k]);
	/* The calling thread's scratch; workers' went with their threads. */
	scratch_free(pthread_getspecific(c->scratch_key));
	pthread_key_delete(c->scratch_key);
	pthread_mutex_destroy(&c->scratch_lock);
	free_tables(c);
	free(c);
}

static void lru_unlink(struct shard *sh, struct slimfs_cache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		sh->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		sh->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct shard *sh, struct slimfs_cache_entry *e)
{
	e->prev = NULL;
	e->next = sh->head;
	if (sh->head)
		sh->head->prev = e;
	else
		sh->tail = e;
	sh->head = e;
}

static void lru_push_back(struct shard *sh, struct slimfs_cache_entry *e)
{
	e->next = NULL;
	e->prev = sh->tail;
	if (sh->tail)
		sh->tail->next = e;
	else
		sh->head = e;
	sh->tail = e;
}

/* The remembered failure of chunk i, or NULL; under bad_lock. */
static struct bad *bad_find(struct slimfs_cache *c, uint32_t i)
{
	for (unsigned k = 0; k < BAD_SLOTS; k++)
		if (c->bad[k].fails && c->bad[k].chunk == i)
			return &c->bad[k];
	return NULL;
}

/* A remembered error of chunk i still in its hold-off, else 0. */
static int bad_holdoff(struct slimfs_cache *c, uint32_t i)
{
	struct bad *b;
	int r = 0;

	if (atomic_load_explicit(&c->nbad, memory_order_relaxed) == 0)
		return 0;
	pthread_mutex_lock(&c->bad_lock);
	b = bad_find(c, i);
	if (b && slimfs_now_ns() < b->until_ns)
		r = b->err;
	pthread_mutex_unlock(&c->bad_lock);
	if (r)
		atomic_fetch_add_explicit(&c->held_off, 1, memory_order_relaxed);
	return r;
}

/*
 * Records a failed load of chunk i; returns whether to log it (once a minute
 * per chunk), with *suppressed the lines not written since the last one.
 */
static bool bad_record(struct slimfs_cache *c, uint32_t i, int err, uint64_t *suppressed)
{
	uint64_t now = slimfs_now_ns(), hold;
	struct bad *b;
	bool say;

	pthread_mutex_lock(&c->bad_lock);
	b = bad_find(c, i);
	if (!b) {
		b = &c->bad[0];
		for (unsigned k = 0; k < BAD_SLOTS; k++) {
			if (!c->bad[k].fails) {
				b = &c->bad[k];
				atomic_fetch_add_explicit(&c->nbad, 1, memory_order_relaxed);
				break;
			}
			if (c->bad[k].used_ns < b->used_ns)
				b = &c->bad[k];
		}
		*b = (struct bad){.chunk = i};
	}
	b->fails++;
	b->err = err;
	b->used_ns = now;
	if (err == -EBADMSG)
		hold = MIN(HOLDOFF_FETCH_NS << MIN(b->fails - 1, 5u), HOLDOFF_VERIFY_MAX);
	else
		hold = HOLDOFF_FETCH_NS;
	b->until_ns = now + hold;
	say = b->logged_ns == 0 || now - b->logged_ns >= LOG_INTERVAL_NS;
	*suppressed = b->suppressed;
	if (say) {
		b->logged_ns = now;
		b->suppressed = 0;
	} else {
		b->suppressed++;
	}
	pthread_mutex_unlock(&c->bad_lock);
	return say;
}

/* Chunk i loaded: forget its failures. */
static void bad_clear(struct slimfs_cache *c, uint32_t i)
{
	struct bad *b;

	if (atomic_load_explicit(&c->nbad, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&c->bad_lock);
	b = bad_find(c, i);
	if (b) {
		b->fails = 0;
		atomic_fetch_sub_explicit(&c->nbad, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&c->bad_lock);
}

static void log_failure(struct slimfs_cache *c, uint32_t i, const struct slimfs_chunk *ch, int r,
			bool fetch)
{
	uint64_t suppressed = 0;

	if (!bad_record(c, i, r, &suppressed))
		return;
	if (fetch)
		log_error("'%s': chunk %u: cannot read %u bytes at %llu: %s (%llu more failures "
			  "not logged)",
			  c->img->source, i, ch->csize, (unsigned long long)ch->off, strerror(-r),
			  (unsigned long long)suppressed);
	else
		log_error("'%s': chunk %u at %llu failed verification (%llu more failures not "
			  "logged)",
			  c->img->source, i, (unsigned long long)ch->off,
			  (unsigned long long)suppressed);
}

static int chunk_record(struct slimfs_cache *c, uint32_t i, struct slimfs_chunk *ch)
{
	int r = slimfs_index_chunk(c->idx, i, ch);

	if (r < 0)
		return log_error_errno(r, "chunk %u: bad chunk record", i);
	if (ch->csize > SLIMFS_CHUNK_MAX || ch->usize > SLIMFS_CHUNK_MAX) {
		log_error("chunk %u: sizes %u/%u exceed the format's bound", i, ch->csize,
			  ch->usize);
		return -EUCLEAN;
	}
	return 0;
}

/*
 * Verifies frame (chunk i, record ch) and decodes it into out. The id (XXH3
 * of the decoded bytes) is checked at the chunk's first decode only: a frame
 * that matches its SHA-256 again decodes to the same bytes. fio's 4 KiB random
 * reads of a 256 MiB file decode each chunk again in every pass over it.
 *
 * unchanged: the frame was read from the backend, and it was still
 * unchanged after the read (slimfs_backend_unchanged: a local image under a
 * lease that never broke). Then a frame whose SHA-256 matched once, read so
 * too, is the same bytes again: only its id is checked (against what a disk
 * may do), not its SHA-256 (fio as above: SHA-256 was 17% of the daemon's
 * CPU with 1 job, 27% with 4).
 */
static int decode(struct slimfs_cache *c, uint32_t i, const struct slimfs_chunk *ch,
		  const uint8_t *frame, uint8_t *out, ZSTD_DCtx *dctx, bool unchanged)
{
	uint8_t bit = (uint8_t)(1u << (i % 8));
	bool known = atomic_load_explicit(&c->id_known[i / 8], memory_order_relaxed) & bit;
	bool same = unchanged &&
		    (atomic_load_explicit(&c->frame_known[i / 8], memory_order_relaxed) & bit);
	int r = slimfs_chunk_decode_flags(ch, frame, ch->csize, out, dctx,
					  (known ? SLIMFS_DECODE_ID_KNOWN : 0) |
						  (same ? SLIMFS_DECODE_FRAME_KNOWN : 0));

	if (r < 0)
		return r;
	if (!known)
		atomic_fetch_or_explicit(&c->id_known[i / 8], bit, memory_order_relaxed);
	if (same)
		atomic_fetch_add_explicit(&c->frames_reused, 1, memory_order_relaxed);
	else if (unchanged)
		atomic_fetch_or_explicit(&c->frame_known[i / 8], bit, memory_order_relaxed);
	return 0;
}

/* Chunk from the disk cache into e->data: 0, or -ENOENT (absent or bad: removed). */
static int load_disk(struct slimfs_cache *c, uint32_t i, const struct slimfs_chunk *ch,
		     struct slimfs_cache_entry *e, struct scratch *s)
{
	int r;

	r = slimfs_diskcache_get(c->disk, ch->sha256, s->frame, ch->csize);
	if (r < 0) {
		atomic_fetch_add_explicit(&c->disk_misses, 1, memory_order_relaxed);
		return -ENOENT;
	}
	r = decode(c, i, ch, s->frame, e->data, s->dctx, false);
	if (r < 0) {
		atomic_fetch_add_explicit(&c->verify_failures, 1, memory_order_relaxed);
		log_warn_errno(r, "chunk %u: disk cache entry failed verification, refetching", i);
		slimfs_diskcache_remove(c->disk, ch->sha256);
		return -ENOENT;
	}
	atomic_fetch_add_explicit(&c->disk_hits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->verified, 1, memory_order_relaxed);
	return 0;
}

/* A fetched frame: verify and decode into e->data, then store it on disk.
 * unchanged: slimfs_backend_unchanged after it was read (decode). */
static int accept_frame(struct slimfs_cache *c, uint32_t i, const struct slimfs_chunk *ch,
			const uint8_t *frame, struct slimfs_cache_entry *e, struct scratch *s,
			bool unchanged)
{
	int r;

	atomic_fetch_add_explicit(&c->bytes_fetched, ch->csize, memory_order_relaxed);
	r = decode(c, i, ch, frame, e->data, s->dctx, unchanged);
	if (r < 0) {
		atomic_fetch_add_explicit(&c->verify_failures, 1, memory_order_relaxed);
		log_failure(c, i, ch, r, false);
		return r;
	}
	atomic_fetch_add_explicit(&c->verified, 1, memory_order_relaxed);
	if (c->disk) {
		int w = slimfs_diskcache_put(c->disk, ch->sha256, frame, ch->csize);

		if (w < 0)
			log_debug("chunk %u: cannot store in the disk cache: %s", i, strerror(-w));
		else
			atomic_fetch_add_explicit(&c->disk_stores, 1, memory_order_relaxed);
	}
	return 0;
}

/* Loads chunk i (record ch) into e->data with the held scratch s; no lock held. */
static int load_with(struct slimfs_cache *c, uint32_t i, const struct slimfs_chunk *ch,
		     struct slimfs_cache_entry *e, struct scratch *s)
{
	int r;

	e->data = malloc(MAX(ch->usize, 1u));
	if (!e->data)
		return -ENOMEM;
	e->len = ch->usize;
	if (c->disk && load_disk(c, i, ch, e, s) == 0)
		return 0;
	atomic_fetch_add_explicit(&c->fetches, 1, memory_order_relaxed);
	r = slimfs_image_fetch(c->img, ch, s->frame);
	if (r < 0) {
		log_failure(c, i, ch, r, true);
		return r;
	}
	return accept_frame(c, i, ch, s->frame, e, s, slimfs_backend_unchanged(c->img->backend));
}

/* Loads chunk i into e->data; no lock held. */
static int load(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry *e)
{
	struct slimfs_chunk ch;
	struct scratch *s;
	int r;

	r = chunk_record(c, i, &ch);
	if (r < 0)
		return r;
	s = scratch_get(c, ch.csize);
	if (!s)
		return -ENOMEM;
	r = load_with(c, i, &ch, e, s);
	scratch_put(s);
	return r;
}

/* Keeps the ends of a chunk just decoded (into e->data, e->len bytes). */
static void edge_keep(struct slimfs_cache *c, const struct slimfs_cache_entry *e)
{
	uint32_t slot, n = MIN(e->len, SLIMFS_EDGE);
	struct edge *g;

	if (!c->nedges)
		return;
	slot = e->chunk % c->nedges;
	g = &c->edges[slot];
	pthread_mutex_lock(&c->edge_locks[slot % EDGE_LOCKS]);
	g->chunk = e->chunk;
	g->len = e->len;
	memcpy(g->head, e->data, n);
	memcpy(g->tail, e->data + e->len - n, n);
	pthread_mutex_unlock(&c->edge_locks[slot % EDGE_LOCKS]);
}

/* Bytes [off, off + len) of chunk i from its kept ends: 0, or -ENOENT. */
static int edge_copy(struct slimfs_cache *c, uint32_t i, uint32_t off, uint32_t len, void *out)
{
	uint32_t slot, n;
	struct edge *g;
	int r = -ENOENT;

	if (!c->nedges)
		return -ENOENT;
	slot = i % c->nedges;
	g = &c->edges[slot];
	pthread_mutex_lock(&c->edge_locks[slot % EDGE_LOCKS]);
	if (g->len && g->chunk == i) {
		n = MIN(g->len, SLIMFS_EDGE);
		if (off + len > g->len) {
			r = -EUCLEAN;
		} else if (off + len <= n) {
			memcpy(out, g->head + off, len);
			r = 0;
		} else if (off >= g->len - n) {
			memcpy(out, g->tail + (off - (g->len - n)), len);
			r = 0;
		}
	}
	pthread_mutex_unlock(&c->edge_locks[slot % EDGE_LOCKS]);
	return r;
}

/*
 * Takes e out of its shard and the table and drops the table's reference;
 * when that was the last, e goes on the list *dead, to be freed outside the
 * lock (free_list).
 */
static void remove_locked(struct slimfs_cache *c, struct shard *sh, struct slimfs_cache_entry *e,
			  struct slimfs_cache_entry **dead)
{
	lru_unlink(sh, e);
	c->slots[e->chunk] = NULL;
	sh->bytes -= e->len;
	sh->entries--;
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
		e->next = *dead;
		*dead = e;
	}
}

static void free_list(struct slimfs_cache_entry *dead)
{
	while (dead) {
		struct slimfs_cache_entry *next = dead->next;

		entry_free(dead);
		dead = next;
	}
}

/* Drops least recently used entries until the shard fits (keep is spared). */
static struct slimfs_cache_entry *evict_locked(struct slimfs_cache *c, struct shard *sh,
					       struct slimfs_cache_entry *keep)
{
	struct slimfs_cache_entry *dead = NULL;

	while (sh->bytes > sh->cap && sh->tail && sh->tail != keep) {
		sh->evictions++;
		remove_locked(c, sh, sh->tail, &dead);
	}
	return dead;
}

/* Takes the empty slot of chunk i with a LOADING entry (two references:
 * the table's and the caller's): 1, or 0 when the slot is taken, -ENOMEM. */
static int claim_locked(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry **out)
{
	struct slimfs_cache_entry *e;

	*out = NULL;
	if (c->slots[i])
		return 0;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->chunk = i;
	e->state = ENTRY_LOADING;
	atomic_init(&e->refs, 2);
	c->slots[i] = e;
	*out = e;
	return 1;
}

/*
 * Ends the load of a claimed entry with r: waiters wake up. Failures leave
 * the table (the next request tries again); with keep false, so does a
 * loaded entry (its waiters still have it). Drops the caller's reference
 * unless ref is set, where it is handed back.
 */
static void finish(struct slimfs_cache *c, struct slimfs_cache_entry *e, int r, bool keep,
		   struct slimfs_cache_entry **ref)
{
	struct shard *sh = shard_of(c, e->chunk);
	struct slimfs_cache_entry *dead = NULL;

	if (r == 0) {
		bad_clear(c, e->chunk);
		edge_keep(c, e);
	}
	pthread_mutex_lock(&sh->lock);
	if (r < 0 || !keep) {
		e->state = r < 0 ? ENTRY_FAILED : ENTRY_READY;
		e->err = r;
		c->slots[e->chunk] = NULL;
		atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel); /* ours remains */
	} else {
		e->state = ENTRY_READY;
		e->uses += ref != NULL; /* a reader's own load */
		lru_push_front(sh, e);
		sh->bytes += e->len;
		sh->entries++;
		dead = evict_locked(c, sh, e);
	}
	pthread_cond_broadcast(&sh->done);
	pthread_mutex_unlock(&sh->lock);
	free_list(dead);
	if (ref && r == 0)
		*ref = e;
	else
		slimfs_cache_put(c, e);
}

int slimfs_cache_get(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry **ref,
		     const uint8_t **data, uint32_t *len)
{
	struct slimfs_cache_entry *e;
	struct shard *sh;
	bool counted = false;
	int r;

	if (i >= c->nchunks)
		return -EUCLEAN;
	sh = shard_of(c, i);
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		if (!counted)
			sh->requests++;
		counted = true;
		e = c->slots[i];
		if (e)
			break;
		pthread_mutex_unlock(&sh->lock);
		/* A miss: a chunk that just failed answers its error for a while. */
		r = bad_holdoff(c, i);
		if (r < 0)
			return r;
		pthread_mutex_lock(&sh->lock);
		r = claim_locked(c, i, &e);
		pthread_mutex_unlock(&sh->lock);
		if (r < 0)
			return r;
		if (r == 0)
			continue; /* claimed by another thread meanwhile: wait for it */
		atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
		r = load(c, i, e);
		finish(c, e, r, true, ref);
		if (r < 0)
			return r;
		*data = e->data;
		*len = e->len;
		return 0;
	}
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	e->uses++;
	if (e->state == ENTRY_LOADING) {
		sh->waits++;
		while (e->state == ENTRY_LOADING)
			pthread_cond_wait(&sh->done, &sh->lock);
	} else {
		sh->hits++;
		if (sh->head != e) {
			lru_unlink(sh, e);
			lru_push_front(sh, e);
		}
	}
	r = e->state == ENTRY_FAILED ? e->err : 0;
	pthread_mutex_unlock(&sh->lock);
	if (r < 0) {
		slimfs_cache_put(c, e);
		return r;
	}
	*ref = e;
	*data = e->data;
	*len = e->len;
	return 0;
}

/* Whether chunk i is in the table (ready: and loaded). */
static bool in_table(struct slimfs_cache *c, uint32_t i, bool ready)
{
	struct shard *sh;
	bool has;

	if (i >= c->nchunks)
		return false;
	sh = shard_of(c, i);
	pthread_mutex_lock(&sh->lock);
	has = c->slots[i] && (!ready || c->slots[i]->state == ENTRY_READY);
	pthread_mutex_unlock(&sh->lock);
	return has;
}

void slimfs_cache_stored(struct slimfs_cache *c, struct slimfs_cache_entry *e)
{
	struct shard *sh = shard_of(c, e->chunk);

	pthread_mutex_lock(&sh->lock);
	if (c->slots[e->chunk] == e && e->state == ENTRY_READY && e->uses <= 1 && sh->tail != e) {
		lru_unlink(sh, e);
		lru_push_back(sh, e);
		sh->demoted++;
	}
	pthread_mutex_unlock(&sh->lock);
}

bool slimfs_cache_has(struct slimfs_cache *c, uint32_t i)
{
	return in_table(c, i, false);
}

bool slimfs_cache_ready(struct slimfs_cache *c, uint32_t i)
{
	return in_table(c, i, true);
}

int slimfs_cache_peek(struct slimfs_cache *c, uint32_t i, uint32_t off, uint32_t len, void *out)
{
	struct slimfs_cache_entry *e = NULL;
	struct shard *sh;
	int r;

	if (i >= c->nchunks || len > UINT32_MAX - off)
		return -EUCLEAN;
	sh = shard_of(c, i);
	pthread_mutex_lock(&sh->lock);
	if (c->slots[i] && c->slots[i]->state == ENTRY_READY) {
		e = c->slots[i];
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&sh->lock);
	if (e) {
		r = off + len <= e->len ? 0 : -EUCLEAN;
		if (r == 0)
			memcpy(out, e->data + off, len);
		slimfs_cache_put(c, e);
		atomic_fetch_add_explicit(&c->peek_hits, 1, memory_order_relaxed);
		return r;
	}
	r = edge_copy(c, i, off, len, out);
	atomic_fetch_add_explicit(r == 0 ? &c->edge_hits : &c->peek_misses, 1,
				  memory_order_relaxed);
	return r;
}

struct claim {
	uint32_t chunk;
	struct slimfs_chunk ch;
	struct slimfs_cache_entry *e;
};

static int cmp_claim_off(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;

	return (x->ch.off > y->ch.off) - (x->ch.off < y->ch.off);
}

/* On disk already, and its frame verifies (SHA-256)? A bad entry is removed. */
static bool on_disk(struct slimfs_cache *c, const struct slimfs_chunk *ch, struct scratch *s)
{
	if (slimfs_diskcache_get(c->disk, ch->sha256, s->frame, ch->csize) < 0)
		return false;
	if (slimfs_chunk_verify_frame(ch, s->frame, ch->csize) == 0)
		return true;
	atomic_fetch_add_explicit(&c->verify_failures, 1, memory_order_relaxed);
	slimfs_diskcache_remove(c->disk, ch->sha256);
	return false;
}

/* One range request for claims[0, n) (adjacent in the data area), then each chunk. */
static int load_run(struct slimfs_cache *c, struct claim *cl, size_t n, bool keep, unsigned flags,
		    struct scratch *s)
{
	uint64_t off = cl[0].ch.off, len = cl[n - 1].ch.off + cl[n - 1].ch.csize - off, pos;
	_cleanup_free_ uint8_t *buf = NULL;
	bool unchanged;
	int r, first = 0;

	atomic_fetch_add_explicit(&c->fetches, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->runs, 1, memory_order_relaxed);
	if (n > 1)
		atomic_fetch_add_explicit(&c->coalesced, n, memory_order_relaxed);
	buf = n > 1 ? malloc(len) : NULL;
	r = n > 1 && !buf ? -ENOMEM
			  : slimfs_backend_read(c->img->backend, off, n > 1 ? buf : s->frame, len);
	if (r < 0) {
		log_failure(c, cl[0].chunk, &cl[0].ch, r, true);
		for (size_t k = 0; k < n; k++) {
			if (k)
				bad_record(c, cl[k].chunk, r, &(uint64_t){0});
			finish(c, cl[k].e, r, keep, NULL);
		}
		return r;
	}
	unchanged = slimfs_backend_unchanged(c->img->backend);
	for (size_t k = 0; k < n; k++) {
		pos = cl[k].ch.off - off;
		r = accept_frame(c, cl[k].chunk, &cl[k].ch, (n > 1 ? buf : s->frame) + pos, cl[k].e,
				 s, unchanged);
		if (r == 0 && (flags & SLIMFS_LOAD_BACKGROUND)) {
			atomic_fetch_add_explicit(&c->background, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&c->background_bytes, cl[k].ch.csize,
						  memory_order_relaxed);
		}
		if (r < 0 && !first)
			first = r;
		finish(c, cl[k].e, r, keep, NULL);
	}
	return first;
}

/*
 * What coalescing bought (and why decoding stays in the calling thread),
 * measured on the bookworm rootfs image, cold tar of the whole tree, see
 * the comment in ops.c (op_read) for the numbers.
 */
static int load_chunks(struct slimfs_cache *c, const uint32_t *chunks, size_t n, uint64_t max_run,
		       unsigned flags, size_t *loaded, struct scratch *s)
{
	_cleanup_free_ struct claim *cl = NULL;
	bool disk_only = (flags & SLIMFS_LOAD_DISK_ONLY) && c->disk;
	size_t m = 0, done = 0, a, b;
	uint64_t bytes;
	int r, first = 0;

	cl = calloc(n, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		uint32_t i = chunks[k];
		struct slimfs_cache_entry *e;
		struct shard *sh;
		struct slimfs_chunk ch;

		if (i >= c->nchunks)
			return -EUCLEAN;
		r = bad_holdoff(c, i);
		if (r < 0) {
			first = first ? first : r;
			continue;
		}
		r = chunk_record(c, i, &ch);
		if (r < 0) {
			first = first ? first : r;
			continue;
		}
		if (disk_only && on_disk(c, &ch, s))
			continue;
		sh = shard_of(c, i);
		pthread_mutex_lock(&sh->lock);
		r = claim_locked(c, i, &e);
		pthread_mutex_unlock(&sh->lock);
		if (r <= 0) {
			first = first ? first : r;
			continue; /* 0: in memory or being loaded by another thread */
		}
		atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
		e->data = malloc(MAX(ch.usize, 1u));
		e->len = ch.usize;
		if (!e->data) {
			finish(c, e, -ENOMEM, false, NULL);
			first = first ? first : -ENOMEM;
			continue;
		}
		if (!disk_only && c->disk && load_disk(c, i, &ch, e, s) == 0) {
			finish(c, e, 0, true, NULL);
			done++;
			continue;
		}
		cl[m++] = (struct claim){.chunk = i, .ch = ch, .e = e};
	}
	qsort(cl, m, sizeof(*cl), cmp_claim_off);
	for (a = 0; a < m; a = b) {
		uint64_t gap_max = (flags & SLIMFS_LOAD_GAPS) ? SLIMFS_LOAD_GAP_MAX : 0;

		/* bytes: the span the range request reads, gaps included. */
		bytes = cl[a].ch.csize;
		for (b = a + 1; b < m; b++)
			if (!slimfs_run_extend(&bytes, cl[b - 1].ch.off + cl[b - 1].ch.csize,
					       cl[b].ch.off, cl[b].ch.csize, gap_max, max_run))
				break;
		r = load_run(c, cl + a, b - a, !disk_only, flags, s);
		if (r < 0)
			first = first ? first : r;
		else
			done += b - a;
	}
	if (loaded)
		*loaded = done;
	return first;
}

int slimfs_cache_load(struct slimfs_cache *c, const uint32_t *chunks, size_t n, uint64_t max_run,
		      unsigned flags, size_t *loaded)
{
	struct scratch *s;
	int r;

	if (loaded)
		*loaded = 0;
	if (n == 0)
		return 0;
	s = scratch_get(c, SLIMFS_CHUNK_MAX);
	if (!s)
		return -ENOMEM;
	r = load_chunks(c, chunks, n, max_run, flags, loaded, s);
	scratch_put(s);
	return r;
}

/* Drops the shard's entries no reader holds; returns them (to free) in a list. */
static struct slimfs_cache_entry *drop_locked(struct slimfs_cache *c, struct shard *sh,
					      struct slimfs_cache_release *out)
{
	struct slimfs_cache_entry *dead = NULL, *e, *next;

	for (e = sh->head; e; e = next) {
		next = e->next;
		/*
		 * Only the table's reference: nobody else can take one while we
		 * hold the lock (get and peek take theirs under it), so it is
		 * unused and stays so.
		 */
		if (atomic_load_explicit(&e->refs, memory_order_acquire) != 1) {
			out->kept++;
			continue;
		}
		out->entries++;
		out->bytes += e->len;
		remove_locked(c, sh, e, &dead);
	}
	return dead;
}

void slimfs_cache_release(struct slimfs_cache *c, struct slimfs_cache_release *out)
{
	size_t edges_len = (size_t)c->nedges * sizeof(*c->edges);

	memset(out, 0, sizeof(*out));
	for (unsigned k = 0; k < NSHARDS; k++) {
		struct shard *sh = &c->shards[k];
		struct slimfs_cache_entry *dead;

		pthread_mutex_lock(&sh->lock);
		dead = drop_locked(c, sh, out);
		pthread_mutex_unlock(&sh->lock);
		free_list(dead);
	}
	/*
	 * The kept ends: with every slot's lock held no copy is half done, and
	 * the pages given back read as zeros again, i.e. empty slots (len 0).
	 * The locks are leaves (nobody holds one while taking another), so
	 * taking them all in order cannot deadlock.
	 */
	if (c->nedges) {
		for (unsigned k = 0; k < EDGE_LOCKS; k++)
			pthread_mutex_lock(&c->edge_locks[k]);
		if (slimfs_huge_release(c->edges, edges_len) == 0)
			out->edge_bytes = edges_len;
		for (unsigned k = EDGE_LOCKS; k-- > 0;)
			pthread_mutex_unlock(&c->edge_locks[k]);
	}
	/* Decode buffers: those of threads not decoding now (see struct scratch). */
	pthread_mutex_lock(&c->scratch_lock);
	for (struct scratch *s = c->scratches; s; s = s->next) {
		int want = SCRATCH_FREE;

		if (!s->cap && !s->dctx)
			continue;
		if (!atomic_compare_exchange_strong_explicit(&s->state, &want, SCRATCH_RELEASING,
							     memory_order_acquire,
							     memory_order_relaxed)) {
			out->busy_buffers++;
			continue;
		}
		out->buffer_bytes += scratch_drop(s);
		out->buffers++;
		atomic_store_explicit(&s->state, SCRATCH_FREE, memory_order_release);
	}
	pthread_mutex_unlock(&c->scratch_lock);
}

void slimfs_cache_stats(struct slimfs_cache *c, struct slimfs_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned s = 0; s < NSHARDS; s++) {
		struct shard *sh = &c->shards[s];

		pthread_mutex_lock(&sh->lock);
		out->requests += sh->requests;
		out->hits += sh->hits;
		out->waits += sh->waits;
		out->evictions += sh->evictions;
		out->demoted += sh->demoted;
		out->mem_bytes += sh->bytes;
		out->mem_entries += sh->entries;
		pthread_mutex_unlock(&sh->lock);
	}
	out->misses = atomic_load(&c->misses);
	out->fetches = atomic_load(&c->fetches);
	out->bytes_fetched = atomic_load(&c->bytes_fetched);
	out->verified = atomic_load(&c->verified);
	out->verify_failures = atomic_load(&c->verify_failures);
	out->disk_hits = atomic_load(&c->disk_hits);
	out->disk_misses = atomic_load(&c->disk_misses);
	out->disk_stores = atomic_load(&c->disk_stores);
	out->runs = atomic_load(&c->runs);
	out->coalesced = atomic_load(&c->coalesced);
	out->background = atomic_load(&c->background);
	out->background_bytes = atomic_load(&c->background_bytes);
	out->held_off = atomic_load(&c->held_off);
	out->peek_hits = atomic_load(&c->peek_hits);
	out->edge_hits = atomic_load(&c->edge_hits);
	out->peek_misses = atomic_load(&c->peek_misses);
	out->frames_reused = atomic_load(&c->frames_reused);
}
