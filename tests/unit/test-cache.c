// SPDX-License-Identifier: MIT
/*
 * Memory cache: slimfs_cache_release (the idle release) drops what no reader
 * holds, keeps what one does, empties the kept chunk ends and frees the
 * decode buffers, and what is read after it (or while it runs, from other
 * threads) is the same bytes.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/util.h"
#include "cache.h"
#include "image.h"
#include "tap.h"
#include "testutil.h"

#define FILE_BYTES (3u << 20)
#define MEM_BYTES  (4u << 20)

static uint64_t rng_state = 11;

struct reader_ctx {
	struct slimfs_cache *c;
	const uint64_t *sums; /* XXH3 of each chunk's decoded bytes */
	uint32_t nchunks;
	atomic_bool stop;
	unsigned long gets, bad;
};

/* Gets chunks over and over while the main thread releases. */
static void *reader_main(void *arg)
{
	struct reader_ctx *r = arg;
	uint64_t seed = 99;

	while (!atomic_load(&r->stop)) {
		uint32_t i = (uint32_t)(test_rng(&seed) % r->nchunks);
		struct slimfs_cache_entry *e = NULL;
		const uint8_t *d;
		uint32_t len;

		if (slimfs_cache_get(r->c, i, &e, &d, &len) < 0 ||
		    XXH3_64bits(d, len) != r->sums[i])
			r->bad++;
		slimfs_cache_put(r->c, e);
		r->gets++;
	}
	return NULL;
}

static int build_image(const char *dir, char *img, size_t len)
{
	struct slimfs_build_opts o;
	const char *src[1];
	char path[512];
	uint8_t *data = malloc(FILE_BYTES);
	int fd, r;

	if (!data)
		return -ENOMEM;
	test_fill_random(&rng_state, data, FILE_BYTES);
	snprintf(path, sizeof(path), "%s/src", dir);
	if (mkdir(path, 0755) < 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/src/f", dir);
	r = slimfs_write_file_replace(path, data, FILE_BYTES, 0644);
	free(data);
	if (r < 0)
		return r;
	slimfs_build_opts_init(&o);
	o.threads = 1;
	o.cdc_min = 8u << 10; /* ~190 chunks: enough for a table of kept ends */
	o.cdc_avg = 16u << 10;
	o.cdc_max = 64u << 10;
	snprintf(path, sizeof(path), "%s/src", dir);
	src[0] = path;
	snprintf(img, len, "%s/img", dir);
	fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = slimfs_build(&o, src, 1, fd, NULL);
	close(fd);
	return r;
}

int main(void)
{
	char dir[] = "/tmp/slimfs-test-cache-XXXXXX", img_path[600], cmd[700];
	struct slimfs_fetch_opts fo = {.timeout_ms = 10000};
	struct slimfs_image *img = NULL;
	struct slimfs_cache *c = NULL;
	struct slimfs_cache_opts co = {.mem_bytes = MEM_BYTES};
	struct slimfs_cache_release rel;
	struct slimfs_cache_stats st;
	struct slimfs_cache_entry *held = NULL;
	struct reader_ctx rc = {0};
	pthread_t th[2];
	uint64_t *sums = NULL, total = 0;
	uint32_t n, held_chunk, len;
	const uint8_t *d;
	uint8_t edge[16];
	int r;

	CHECK(mkdtemp(dir) != NULL);
	r = build_image(dir, img_path, sizeof(img_path));
	CHECK_EQ(r, 0);
	r = slimfs_image_open(img_path, &fo, NULL, &img);
	CHECK_EQ(r, 0);
	if (r < 0)
		return tap_done();
	CHECK(slimfs_cache_new(img, &co, &c) == 0);
	n = (uint32_t)img->info->chunk_count;
	CHECK(n > 64);
	sums = calloc(n, sizeof(*sums));

	/* Load every chunk once (the last ones stay), hold one of them. */
	for (uint32_t i = 0; i < n; i++) {
		struct slimfs_cache_entry *e;

		r = slimfs_cache_get(c, i, &e, &d, &len);
		if (r < 0)
			break;
		sums[i] = XXH3_64bits(d, len);
		total += len;
		slimfs_cache_put(c, e);
	}
	CHECK_EQ(r, 0);
	held_chunk = n - 1;
	CHECK(slimfs_cache_get(c, held_chunk, &held, &d, &len) == 0);
	slimfs_cache_stats(c, &st);
	CHECK(st.mem_entries > 1);
	CHECK(slimfs_cache_peek(c, 0, 0, sizeof(edge), edge) == 0); /* evicted: its kept end */

	slimfs_cache_release(c, &rel);
	CHECK_EQ(rel.entries, st.mem_entries - 1);
	CHECK_EQ(rel.kept, 1);
	CHECK(rel.bytes > 0 && rel.bytes + len == st.mem_bytes);
	CHECK(rel.edge_bytes > 0);
	CHECK_EQ(rel.buffers, 1); /* this thread's */
	CHECK(rel.buffer_bytes >= SLIMFS_CHUNK_MAX);
	CHECK_EQ(rel.busy_buffers, 0);
	slimfs_cache_stats(c, &st);
	CHECK_EQ(st.mem_entries, 1);
	CHECK_EQ(st.mem_bytes, len);
	/* The held chunk is intact and in memory; the kept ends are gone. */
	CHECK(XXH3_64bits(d, len) == sums[held_chunk]);
	CHECK(slimfs_cache_ready(c, held_chunk));
	CHECK(!slimfs_cache_ready(c, 0));
	CHECK_EQ(slimfs_cache_peek(c, 0, 0, sizeof(edge), edge), -ENOENT);
	slimfs_cache_put(c, held);

	/* A second release has nothing but the held chunk (now unheld) to give. */
	slimfs_cache_release(c, &rel);
	CHECK_EQ(rel.entries, 1);
	CHECK_EQ(rel.buffers, 0);

	/* Everything reads back the same, loading again (a new decode buffer). */
	{
		bool same = true;

		for (uint32_t i = 0; i < n; i++) {
			struct slimfs_cache_entry *e;

			if (slimfs_cache_get(c, i, &e, &d, &len) < 0 ||
			    XXH3_64bits(d, len) != sums[i])
				same = false;
			slimfs_cache_put(c, e);
		}
		CHECK(same);
	}

	/* Releases while two threads read: every byte they get is right. */
	rc.c = c;
	rc.sums = sums;
	rc.nchunks = n;
	CHECK(pthread_create(&th[0], NULL, reader_main, &rc) == 0);
	CHECK(pthread_create(&th[1], NULL, reader_main, &rc) == 0);
	for (unsigned k = 0; k < 300; k++) {
		slimfs_cache_release(c, &rel);
		usleep(500);
	}
	atomic_store(&rc.stop, true);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	CHECK(rc.gets > 300);
	CHECK_EQ(rc.bad, 0);

	free(sums);
	slimfs_cache_free(c);
	slimfs_image_close(img);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	(void)total;
	return tap_done();
}
