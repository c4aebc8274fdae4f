// SPDX-License-Identifier: MIT
/*
 * measure-packing: image size and build time of one directory tree under
 * several chunker / small-file settings, to justify the defaults in
 * include/slimfs/build.h (numbers in index/FORMAT.md).
 *
 *   measure-packing DIR [MIN:AVG:MAX:SMALL ...]
 *
 * Sizes are in KiB; with no settings given, a fixed set is measured. Each
 * line: settings, image bytes, index bytes, chunks, extents, seconds.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slimfs/build.h"
#include "slimfs/util.h"
#include "tree.h"

static const char *const default_sets[] = {
	"16:64:256:16", /* defaults */
	"16:64:256:0",	/* no packing */
	"16:64:256:4",	"16:64:256:64",	 "4:16:64:16",
	"8:32:128:16",	"32:128:512:16", "64:256:1024:16",
};

static int measure(struct slimfs_tree *t, const char *set)
{
	struct slimfs_build_opts o;
	struct slimfs_write_args wa = {.o = &o, .default_view = -1};
	struct slimfs_build_stats st;
	unsigned mn, avg, mx, small;
	uint64_t t0;
	int fd, r;

	if (sscanf(set, "%u:%u:%u:%u", &mn, &avg, &mx, &small) != 4) {
		fprintf(stderr, "bad setting '%s' (want MIN:AVG:MAX:SMALL in KiB)\n", set);
		return -EINVAL;
	}
	slimfs_build_opts_init(&o);
	o.cdc_min = mn << 10;
	o.cdc_avg = avg << 10;
	o.cdc_max = mx << 10;
	o.small_file_max = small << 10;
	fd = memfd_create("measure", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	t0 = slimfs_now_ns();
	r = slimfs_write_image(t, &wa, fd, &st);
	close(fd);
	if (r < 0)
		return r;
	printf("%-16s %12" PRIu64 " %10" PRIu64 " %8" PRIu64 " %8" PRIu64 " %7.2f\n", set,
	       st.image_size, st.index_size, st.chunks, st.chunk_refs,
	       (double)(slimfs_now_ns() - t0) / 1e9);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct slimfs_tree *t = NULL;
	int r;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [MIN:AVG:MAX:SMALL ...] (KiB)\n", argv[0]);
		return 2;
	}
	r = slimfs_tree_new(&t);
	if (r == 0)
		r = slimfs_ingest_dir(t, argv[1]);
	if (r < 0) {
		fprintf(stderr, "cannot read '%s': %s\n", argv[1], strerror(-r));
		slimfs_tree_free(t);
		return 1;
	}
	printf("%-16s %12s %10s %8s %8s %7s\n", "min:avg:max:sm", "image", "index", "chunks",
	       "extents", "secs");
	if (argc > 2) {
		for (int i = 2; i < argc && r == 0; i++)
			r = measure(t, argv[i]);
	} else {
		for (size_t i = 0; i < sizeof(default_sets) / sizeof(default_sets[0]) && r == 0;
		     i++)
			r = measure(t, default_sets[i]);
	}
	slimfs_tree_free(t);
	return r < 0 ? 1 : 0;
}
