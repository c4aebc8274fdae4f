// SPDX-License-Identifier: MIT
/* In-memory cache of decoded chunks with single-flight loads (see cache.h). */
#include <pthread.h>
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
	int err;	       /* ENTRY_FAILED: the -errno waiters get */
};

struct shard {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a load finished */
	struct slimfs_cache_entry *head, *tail;
	uint64_t bytes, entries, cap;
	/* Counted under the lock: no shared cache line on the hit path. */
	uint64_t requests, hits, waits, evictions;
} __attribute__((aligned(64)));

/* Per worker thread: a zstd context and a frame buffer, kept for its life. */
struct scratch {
	ZSTD_DCtx *dctx;
	uint8_t *frame;
	size_t cap;
};

struct slimfs_cache {
	struct slimfs_image *img; /* borrowed */
	const struct slimfs_index *idx;
	struct slimfs_diskcache *disk; /* borrowed, may be NULL */
	uint32_t nchunks;
	struct slimfs_cache_entry **slots; /* [nchunks], under the owning shard's lock */
	pthread_key_t scratch_key;
	_Atomic uint64_t misses, fetches, bytes_fetched, verified, verify_failures;
	_Atomic uint64_t disk_hits, disk_misses, disk_stores;
	struct shard shards[NSHARDS];
};

static struct shard *shard_of(struct slimfs_cache *c, uint32_t i)
{
	return &c->shards[i & (NSHARDS - 1)];
}

static void scratch_free(void *p)
{
	struct scratch *s = p;

	if (!s)
		return;
	ZSTD_freeDCtx(s->dctx);
	free(s->frame);
	free(s);
}

static struct scratch *scratch_get(struct slimfs_cache *c, size_t need)
{
	struct scratch *s = pthread_getspecific(c->scratch_key);

	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		s->dctx = ZSTD_createDCtx();
		if (!s->dctx || pthread_setspecific(c->scratch_key, s) != 0) {
			scratch_free(s);
			return NULL;
		}
	}
	if (s->cap < need) {
		/* Grow to the format's bound at once: no repeated reallocations. */
		size_t cap = MAX(need, (size_t)SLIMFS_CHUNK_MAX);
		uint8_t *f = realloc(s->frame, cap);

		if (!f)
			return NULL;
		s->frame = f;
		s->cap = cap;
	}
	return s;
}

int slimfs_cache_new(struct slimfs_image *img, const struct slimfs_cache_opts *o,
		     struct slimfs_cache **out)
{
	struct slimfs_cache *c;

	if (img->info->chunk_count > UINT32_MAX)
		return -EUCLEAN;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->img = img;
	c->idx = img->idx;
	c->disk = o->disk;
	c->nchunks = (uint32_t)img->info->chunk_count;
	c->slots = calloc(MAX(c->nchunks, 1u), sizeof(*c->slots));
	if (!c->slots || pthread_key_create(&c->scratch_key, scratch_free) != 0) {
		free(c->slots);
		free(c);
		return -ENOMEM;
	}
	for (unsigned s = 0; s < NSHARDS; s++) {
		pthread_mutex_init(&c->shards[s].lock, NULL);
		pthread_cond_init(&c->shards[s].done, NULL);
		c->shards[s].cap = o->mem_bytes / NSHARDS;
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
	/* The calling thread's scratch; workers' went with their threads. */
	scratch_free(pthread_getspecific(c->scratch_key));
	pthread_key_delete(c->scratch_key);
	free(c->slots);
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

/* Loads chunk i into e->data; no lock held. */
static int load(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry *e)
{
	struct slimfs_chunk ch;
	struct scratch *s;
	int r;

	r = slimfs_index_chunk(c->idx, i, &ch);
	if (r < 0)
		return log_error_errno(r, "chunk %u: bad chunk record", i);
	if (ch.csize > SLIMFS_CHUNK_MAX || ch.usize > SLIMFS_CHUNK_MAX) {
		log_error("chunk %u: sizes %u/%u exceed the format's bound", i, ch.csize, ch.usize);
		return -EUCLEAN;
	}
	s = scratch_get(c, ch.csize);
	e->data = malloc(MAX(ch.usize, 1u));
	if (!s || !e->data)
		return -ENOMEM;
	e->len = ch.usize;

	if (c->disk) {
		r = slimfs_diskcache_get(c->disk, ch.sha256, s->frame, ch.csize);
		if (r == 0) {
			r = slimfs_chunk_decode(&ch, s->frame, ch.csize, e->data, s->dctx);
			if (r == 0) {
				atomic_fetch_add_explicit(&c->disk_hits, 1, memory_order_relaxed);
				atomic_fetch_add_explicit(&c->verified, 1, memory_order_relaxed);
				return 0;
			}
			atomic_fetch_add_explicit(&c->verify_failures, 1, memory_order_relaxed);
			log_warn_errno(
				r, "chunk %u: disk cache entry failed verification, refetching", i);
			slimfs_diskcache_remove(c->disk, ch.sha256);
		} else {
			atomic_fetch_add_explicit(&c->disk_misses, 1, memory_order_relaxed);
		}
	}

	atomic_fetch_add_explicit(&c->fetches, 1, memory_order_relaxed);
	r = slimfs_image_fetch(c->img, &ch, s->frame);
	if (r < 0)
		return log_error_errno(r, "'%s': chunk %u: cannot read %u bytes at %llu",
				       c->img->source, i, ch.csize, (unsigned long long)ch.off);
	atomic_fetch_add_explicit(&c->bytes_fetched, ch.csize, memory_order_relaxed);
	r = slimfs_chunk_decode(&ch, s->frame, ch.csize, e->data, s->dctx);
	if (r < 0) {
		atomic_fetch_add_explicit(&c->verify_failures, 1, memory_order_relaxed);
		return log_error_errno(r, "'%s': chunk %u at %llu failed verification",
				       c->img->source, i, (unsigned long long)ch.off);
	}
	atomic_fetch_add_explicit(&c->verified, 1, memory_order_relaxed);
	if (c->disk) {
		int w = slimfs_diskcache_put(c->disk, ch.sha256, s->frame, ch.csize);

		if (w < 0)
			log_debug("chunk %u: cannot store in the disk cache: %s", i, strerror(-w));
		else
			atomic_fetch_add_explicit(&c->disk_stores, 1, memory_order_relaxed);
	}
	return 0;
}

/* Drops least recently used entries until the shard fits (keep is spared). */
static struct slimfs_cache_entry *evict_locked(struct slimfs_cache *c, struct shard *sh,
					       struct slimfs_cache_entry *keep)
{
	struct slimfs_cache_entry *dead = NULL;

	while (sh->bytes > sh->cap && sh->tail && sh->tail != keep) {
		struct slimfs_cache_entry *e = sh->tail;

		lru_unlink(sh, e);
		c->slots[e->chunk] = NULL;
		sh->bytes -= e->len;
		sh->entries--;
		sh->evictions++;
		/* Drop the table's reference; free outside the lock if it was the last. */
		if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
			e->next = dead;
			dead = e;
		}
	}
	return dead;
}

int slimfs_cache_get(struct slimfs_cache *c, uint32_t i, struct slimfs_cache_entry **ref,
		     const uint8_t **data, uint32_t *len)
{
	struct slimfs_cache_entry *e, *dead;
	struct shard *sh;
	int r;

	if (i >= c->nchunks)
		return -EUCLEAN;
	sh = shard_of(c, i);
	pthread_mutex_lock(&sh->lock);
	sh->requests++;
	e = c->slots[i];
	if (e) {
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
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

	e = calloc(1, sizeof(*e));
	if (!e) {
		pthread_mutex_unlock(&sh->lock);
		return -ENOMEM;
	}
	e->chunk = i;
	e->state = ENTRY_LOADING;
	atomic_init(&e->refs, 2); /* the table's and ours */
	c->slots[i] = e;
	pthread_mutex_unlock(&sh->lock);
	atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);

	r = load(c, i, e);

	pthread_mutex_lock(&sh->lock);
	dead = NULL;
	if (r < 0) {
		/* Waiters share the error; the next request tries again. */
		e->state = ENTRY_FAILED;
		e->err = r;
		c->slots[i] = NULL;
		atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel); /* ours remains */
	} else {
		e->state = ENTRY_READY;
		lru_push_front(sh, e);
		sh->bytes += e->len;
		sh->entries++;
		dead = evict_locked(c, sh, e);
	}
	pthread_cond_broadcast(&sh->done);
	pthread_mutex_unlock(&sh->lock);
	while (dead) {
		struct slimfs_cache_entry *next = dead->next;

		entry_free(dead);
		dead = next;
	}
	if (r < 0) {
		slimfs_cache_put(c, e);
		return r;
	}
	*ref = e;
	*data = e->data;
	*len = e->len;
	return 0;
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
}
