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

void slimfs_build_opts_init(struct slimfs_build_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->platform = "linux/amd64";
	o->zstd_level = SLIMFS_DEFAULT_ZSTD_LEVEL;
	o->prefetch_level = SLIMFS_DEFAULT_PREFETCH_LEVEL;
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
	if (o->prefetch_level < -7 || o->prefetch_level > 22) {
		log_error("prefetch zstd level %d is out of range (-7..22)", o->prefetch_level);
		return -EINVAL;
	}
	return 0;
}

int slimfs_build(const struct slimfs_build_opts *o, const char *const *sources, size_t nsources,
		 int out_fd, struct slimfs_build_stats *stats)
{
	struct slimfs_write_args wa = {.o = o, .default_view = -1};
	struct slimfs_tree *t = NULL;
	uint8_t *prefetch = NULL;
	char **ppaths = NULL;
	size_t nppaths = 0;
	struct slimfs_profile_range *ranges = NULL;
	size_t nranges = 0;
	char *config = NULL;
	size_t config_len = 0;
	uint64_t t0;
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
		wa.prefetch_ids = prefetch;
		r = slimfs_profile_read_paths(o->profile, &ppaths, &nppaths);
		if (r < 0)
			goto out;
		wa.profile_paths = (const char *const *)ppaths;
		wa.nprofile_paths = nppaths;
		r = slimfs_profile_read_ranges(o->profile, &ranges, &nranges);
		if (r < 0)
			goto out;
		wa.hot_ranges = ranges;
		wa.nhot_ranges = nranges;
		if (!wa.nprefetch && !nranges)
			log_warn("profile '%s' has no '#@chunk' or '#@range' lines: no prefetch "
				 "order",
				 o->profile);
	}
	r = slimfs_tree_new(&t);
	if (r < 0)
		goto out;
	t0 = slimfs_now_ns();
	for (size_t i = 0; i < nsources; i++) {
		r = slimfs_ingest(t, sources[i], o, &config, &config_len);
		if (r < 0)
			goto out;
	}
	log_debug("build: ingest %.3f s", (double)(slimfs_now_ns() - t0) / 1e9);
	wa.config = config;
	wa.config_len = config_len;
	t0 = slimfs_now_ns();
	r = slimfs_views_apply(t, o, config, config_len, &wa);
	if (r < 0)
		goto out;
	log_debug("build: views %.3f s", (double)(slimfs_now_ns() - t0) / 1e9);
	r = slimfs_write_image(t, &wa, out_fd, stats);
	slimfs_views_free(&wa);
out:
	free(prefetch);
	slimfs_profile_paths_free(ppaths, nppaths);
	slimfs_profile_ranges_free(ranges, nranges);
	free(config);
	slimfs_tree_free(t);
	return r;
}
