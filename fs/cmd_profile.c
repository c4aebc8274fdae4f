// SPDX-License-Identifier: MIT
/*
 * slimfs profile: merges traces of `slimfs mount --trace` into a profile, an
 * allow-list (what the workload touched) that also carries the chunk order
 * (what it read first) for `slimfs build --profile`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cliopt.h"
#include "cmds.h"
#include "image.h"
#include "profile.h"
#include "slimfs/util.h"

/* Hidden paths named on stderr; the profile lists them all. */
#define HIDDEN_SHOWN 5

static void profile_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs profile -o PROFILE [--image IMAGE] [--force] TRACE...\n"
		"\n"
		"Merges traces written by 'slimfs mount --trace' into a profile: an allow-list\n"
		"of the paths the workload found (in order of first access over all traces),\n"
		"'# hidden:' and '# missing:' comments for the paths it looked for in vain, and\n"
		"'#@chunk' lines with the chunks it read, in order, and '#@range' lines with\n"
		"the byte ranges the kernel read of each file (united over the traces, in 4K\n"
		"pages, in order of first access). 'slimfs build --profile PROFILE' places\n"
		"what was read first and prefetches it; '--view NAME=PROFILE' (or '@include\n"
		"PROFILE' in an allow-list) makes a view of what was touched. The ranges are\n"
		"what the kernel asked for: trace with the 'mount --kernel-readahead' the\n"
		"profiled runs will use.\n"
		"\n"
		"options:\n"
		"  -o, --output PROFILE  file to write (replaced atomically)\n"
		"      --image IMAGE     check the chunks against IMAGE and say how much of it\n"
		"                        the profile covers\n"
		"      --force           merge traces of different images\n"
		"  -q, --quiet           print errors only\n"
		"  -v, --verbose         print more\n"
		"  -h, --help            this help\n");
}

static void digest_str(const uint8_t d[32], char out[72])
{
	memcpy(out, "sha256:", 7);
	slimfs_hex(d, 32, out + 7);
}

/* Do the traces name one image? 0, or -EINVAL (logged) unless force. */
static int check_images(struct slimfs_tracefile *const *tr, size_t n, bool force)
{
	const struct slimfs_tracefile *ref = NULL;
	char a[72], b[72];

	for (size_t i = 0; i < n; i++) {
		if (!tr[i]->has_image) {
			log_warn("trace '%s' does not name its image", tr[i]->origin);
			continue;
		}
		if (!ref) {
			ref = tr[i];
			continue;
		}
		if (memcmp(ref->image, tr[i]->image, 32) == 0)
			continue;
		digest_str(ref->image, a);
		digest_str(tr[i]->image, b);
		if (!force) {
			log_error("traces '%s' (%s) and '%s' (%s) are of different images; "
				  "--force merges them",
				  ref->origin, a, tr[i]->origin, b);
			return -EINVAL;
		}
		log_warn("traces '%s' (%s) and '%s' (%s) are of different images: merged "
			 "(--force)",
			 ref->origin, a, tr[i]->origin, b);
	}
	return 0;
}

struct image_chunk {
	const uint8_t *id; /* borrowed from the index */
	uint32_t csize, usize;
};

static int cmp_image_chunk(const void *x, const void *y)
{
	return memcmp(((const struct image_chunk *)x)->id, ((const struct image_chunk *)y)->id,
		      SLIMFS_CHUNK_ID_LEN);
}

/* --image: are the profile's chunks and paths in it, and how much data is that? */
static int check_image(const char *src, struct slimfs_tracefile *const *tr, size_t ntr,
		       const struct slimfs_profile *p)
{
	struct slimfs_image *img = NULL;
	_cleanup_free_ struct image_chunk *v = NULL;
	uint64_t nc, present = 0, csum = 0, usum = 0, absent_paths = 0, found = 0;
	char dig[72], t[72], b1[32], b2[32];
	int r;

	r = slimfs_image_open(src, NULL, NULL, &img);
	if (r < 0)
		return log_error_errno(r, "cannot open image '%s'", src);
	slimfs_index_digest_str(img->idx, dig);
	for (size_t i = 0; i < ntr; i++) {
		if (!tr[i]->has_image ||
		    memcmp(tr[i]->image, slimfs_index_digest(img->idx), 32) == 0)
			continue;
		digest_str(tr[i]->image, t);
		log_warn("trace '%s' was recorded on %s, not on '%s' (%s): chunks are compared "
			 "by content",
			 tr[i]->origin, t, src, dig);
	}
	nc = img->info->chunk_count;
	v = calloc(nc ? nc : 1, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < nc; i++) {
		struct slimfs_chunk c;

		r = slimfs_index_chunk(img->idx, (uint32_t)i, &c);
		if (r < 0) {
			log_error_errno(r, "'%s': chunk %" PRIu64, src, i);
			goto out;
		}
		v[i] = (struct image_chunk){c.id, c.csize, c.usize};
	}
	qsort(v, nc, sizeof(*v), cmp_image_chunk);
	for (size_t i = 0; i < p->nchunks; i++) {
		struct image_chunk key = {p->chunk_ids + SLIMFS_CHUNK_ID_LEN * i, 0, 0};
		const struct image_chunk *hit = bsearch(&key, v, nc, sizeof(*v), cmp_image_chunk);

		if (!hit)
			continue;
		present++;
		csum += hit->csize;
		usum += hit->usize;
	}
	for (size_t i = 0; i < p->npaths; i++) {
		uint32_t ino;

		if (p->paths[i].state != SLIMFS_PATH_FOUND)
			continue;
		found++;
		if (slimfs_index_resolve(img->idx, p->paths[i].path, &ino) < 0)
			absent_paths++;
	}
	log_info("'%s': %" PRIu64 " of %zu profile chunks present, %s compressed (%s plain), "
		 "%.1f%% of its data",
		 src, present, p->nchunks, slimfs_fmt_bytes(csum, b1, sizeof(b1)),
		 slimfs_fmt_bytes(usum, b2, sizeof(b2)),
		 img->info->data_size ? 100.0 * (double)csum / (double)img->info->data_size : 0.0);
	if (present < p->nchunks)
		log_warn("%" PRIu64 " profile chunks are not in '%s': was it built from other "
			 "content or with other --chunk-* options than the traced image?",
			 p->nchunks - present, src);
	if (absent_paths)
		log_warn("%" PRIu64 " of %" PRIu64 " found paths are not in '%s'", absent_paths,
			 found, src);
	r = 0;
out:
	slimfs_image_close(img);
	return r;
}

static void summary(const char *output, const struct slimfs_profile *p,
		    const struct slimfs_profile_counts *c)
{
	size_t shown = 0;

	log_info("'%s': %zu paths, %zu chunks from %zu trace%s (%zu directories left to what "
		 "was used below them)",
		 output, c->paths, c->chunks, p->ntraces, p->ntraces == 1 ? "" : "s", c->implied);
	if (c->hidden || c->missing)
		log_info("'%s': %zu hidden and %zu missing paths listed as '# hidden:' and "
			 "'# missing:' comments",
			 output, c->hidden, c->missing);
	for (size_t i = 0; i < p->npaths && shown < HIDDEN_SHOWN; i++) {
		if (p->paths[i].state != SLIMFS_PATH_HIDDEN)
			continue;
		log_warn("hidden by the traced view: '%s'", p->paths[i].path);
		shown++;
	}
	if (c->hidden > shown)
		log_warn("... and %zu more hidden paths (see '# hidden:' in '%s')",
			 c->hidden - shown, output);
	if (c->too_long)
		log_warn("%zu paths are too long for an allow-list pattern: listed as "
			 "'# too long:' comments",
			 c->too_long);
	if (c->ranges) {
		char b[32], ra[32];

		if (p->kernel_readahead >= 0)
			snprintf(ra, sizeof(ra), "%" PRId64, p->kernel_readahead);
		log_info("'%s': %zu byte ranges, %s read (traced with kernel read-ahead %s)",
			 output, c->ranges, slimfs_fmt_bytes(c->range_bytes, b, sizeof(b)),
			 p->kernel_readahead >= 0    ? ra
			 : p->kernel_readahead == -1 ? "default"
						     : "mixed");
	}
	if (c->ranges && p->kernel_readahead != 0)
		log_info("the ranges include the kernel's read-ahead: 'mount --kernel-readahead 0' "
			 "records only the pages read, and profiled runs should mount with the "
			 "value the trace was recorded with");
	if (p->kernel_readahead == -2)
		log_warn("the traces were recorded with different kernel read-ahead settings: "
			 "their ranges cover what the largest asked for");
	if (!c->chunks)
		log_warn("the traces read no chunk: '%s' gives no prefetch order", output);
}

int cmd_profile(int argc, char **argv)
{
	enum { OPT_IMAGE = 256, OPT_FORCE };
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"image", required_argument, NULL, OPT_IMAGE},
		{"force", no_argument, NULL, OPT_FORCE},
		{"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct slimfs_cli cli = {
		.shortopts = "o:qvh", .longopts = longopts, .usage = profile_usage};
	const char *output = NULL, *image = NULL;
	struct slimfs_tracefile **tr = NULL;
	struct slimfs_profile *p = NULL;
	struct slimfs_profile_counts cnt;
	_cleanup_free_ char *text = NULL;
	size_t ntr = 0, len = 0;
	bool force = false;
	int c, r, ret = 1;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case OPT_IMAGE:
			image = optarg;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case 'q':
			slimfs_log_set_level(SLIMFS_LOG_ERROR);
			break;
		}
	}
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!output || optind >= argc) {
		log_error(!output ? "no output given (-o PROFILE)" : "no trace given");
		profile_usage(stderr);
		return EXIT_USAGE;
	}
	tr = calloc((size_t)(argc - optind), sizeof(*tr));
	if (!tr) {
		log_error("out of memory");
		return 1;
	}
	for (int i = optind; i < argc; i++) {
		r = slimfs_tracefile_load(argv[i], &tr[ntr]);
		if (r < 0)
			goto out;
		ntr++;
	}
	if (check_images(tr, ntr, force) < 0)
		goto out;
	r = slimfs_profile_merge(tr, ntr, &p);
	if (r < 0) {
		log_error_errno(r, "cannot merge the traces");
		goto out;
	}
	if (image && check_image(image, tr, ntr, p) < 0)
		goto out;
	r = slimfs_profile_format(p, &text, &len, &cnt);
	if (r < 0) {
		log_error_errno(r, "cannot make the profile");
		goto out;
	}
	if (slimfs_write_file_atomic(output, text, len) < 0)
		goto out;
	summary(output, p, &cnt);
	ret = 0;
out:
	if (ret)
		log_error("'%s' not written", output);
	slimfs_profile_free(p);
	for (size_t i = 0; i < ntr; i++)
		slimfs_tracefile_free(tr[i]);
	free(tr);
	return ret;
}
