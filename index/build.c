// SPDX-License-Identifier: MIT
/* slimfs_build(): sources -> tree -> (views) -> image. */
#include <stdio.h>
#include <string.h>

#include "profile.h"
#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/util.h"
#include "tree.h"

/* Fewer profile chunks than this share in the new image: warn. */
#define PROFILE_MATCH_MIN 0.5

void slimfs_build_opts_init(struct slimfs_build_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->platform = "linux/amd64";
	o->zstd_level = SLIMFS_DEFAULT_ZSTD_LEVEL;
	o->cdc_min = SLIMFS_DEFAULT_CDC_MIN;
	o->cdc_avg = SLIMFS_DEFAULT_CDC_AVG;
	o->cdc_max = SLIMFS_DEFAULT_CDC_MAX;
	o->small_file_max = SLIMFS_DEFAULT_SMALL_FILE_MAX;
}

static int check_opts(const struct slimfs_build_opts *o)
{
	if (o->cdc_min < 64 || o->cdc_min > o->cdc_avg || o->cdc_avg > o->cdc_max ||
	    o->cdc_max > (1u << 22)) {
		log_error("chunk sizes must satisfy 64 <= min <= avg <= max <= 4 MiB "
			  "(got %u, %u, %u)",
			  o->cdc_min, o->cdc_avg, o->cdc_max);
		return -EINVAL;
	}
	if (o->small_file_max > o->cdc_max) {
		log_error("--small-file-max %u is larger than the largest chunk %u",
			  o->small_file_max, o->cdc_max);
		return -EINVAL;
	}
	if (o->zstd_level < -7 || o->zstd_level > 22) {
		log_error("zstd level %d is out of range (-7..22)", o->zstd_level);
		return -EINVAL;
	}
	return 0;
}

/*
 * How many of the profile's chunks the writer placed first: the image's
 * prefetch count, read back from the index just written (the writer keeps
 * no count of its own).
 */
static int profile_report(const char *profile, size_t nids, int fd)
{
	uint8_t super[SLIMFS_SUPER_SIZE];
	_cleanup_free_ uint8_t *buf = NULL;
	struct slimfs_index *idx = NULL;
	uint64_t isz, found;
	int r;

	r = slimfs_pread_all(fd, super, sizeof(super), 0);
	if (r == 0)
		r = slimfs_index_peek(super, sizeof(super), &isz, NULL);
	if (r == 0 && isz > (1ull << 32))
		r = -EFBIG;
	if (r == 0 && !(buf = malloc((size_t)isz)))
		r = -ENOMEM;
	if (r == 0)
		r = slimfs_pread_all(fd, buf, (size_t)isz, 0);
	if (r == 0)
		r = slimfs_index_open_mem(buf, (size_t)isz, &idx);
	if (r < 0)
		return log_error_errno(r, "cannot read back the index just written");
	found = slimfs_index_info(idx)->prefetch_count;
	slimfs_index_free(idx);
	log_info("profile '%s': %llu of %zu chunks are in this image, placed first and "
		 "prefetched",
		 profile, (unsigned long long)found, nids);
	if ((double)found < PROFILE_MATCH_MIN * (double)nids)
		log_warn("profile '%s': only %llu of its %zu chunks are in this image: was it "
			 "recorded on an image of other content, or built with other --chunk-* "
			 "or --small-file-max options?",
			 profile, (unsigned long long)found, nids);
	return 0;
}

int slimfs_build(const struct slimfs_build_opts *o, const char *const *sources, size_t nsources,
		 int out_fd, struct slimfs_build_stats *stats)
{
	struct slimfs_write_args wa = {.o = o, .default_view = -1};
	struct slimfs_tree *t = NULL;
	uint8_t *prefetch = NULL;
	char *config = NULL;
	size_t config_len = 0;
	int r;

	r = check_opts(o);
	if (r < 0)
		return r;
	if (nsources == 0) {
		log_error("no source given");
		return -EINVAL;
	}
	if (o->profile) {
		r = slimfs_profile_read_chunks(o->profile, &prefetch, &wa.nprefetch);
		if (r < 0)
			return r;
		if (!wa.nprefetch)
			log_warn("profile '%s' has no '#@chunk' lines: no prefetch order",
				 o->profile);
		wa.prefetch_ids = prefetch;
	}
	r = slimfs_tree_new(&t);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < nsources; i++) {
		r = slimfs_ingest(t, sources[i], o, &config, &config_len);
		if (r < 0)
			goto out;
	}
	wa.config = config;
	wa.config_len = config_len;
	r = slimfs_views_apply(t, o, config, config_len, &wa);
	if (r < 0)
		goto out;
	r = slimfs_write_image(t, &wa, out_fd, stats);
	slimfs_views_free(&wa);
	if (r == 0 && wa.nprefetch)
		r = profile_report(o->profile, wa.nprefetch, out_fd);
out:
	free(prefetch);
	free(config);
	slimfs_tree_free(t);
	return r;
}
