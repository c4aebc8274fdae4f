// SPDX-License-Identifier: MIT
/* slimfs build: sources -> image, written to a temporary file and renamed. */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cliopt.h"
#include "cmds.h"
#include "slimfs/build.h"
#include "slimfs/util.h"

/* Named views on the command line; one bit of the 32 is kept for "minimal". */
#define MAX_VIEWS 31u

static void build_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs build -o IMAGE [options] SOURCE...\n"
		"\n"
		"Builds a slimfs image from one or more SOURCEs, applied as layers in order.\n"
		"A SOURCE is a directory (a rootfs tree), an OCI image layout directory, a\n"
		"'docker save' tarball, or a tar layer (plain, gzip, zstd, xz, bzip2).\n"
		"\n"
		"options:\n"
		"  -o, --output IMAGE      image file to write (replaced atomically)\n"
		"      --ref NAME          OCI layout or docker-save: the image to take (tag)\n"
		"      --platform OS/ARCH  OCI image index: the platform (default linux/amd64)\n"
		"  -l, --level N           zstd level, -7..22 (default %d)\n"
		"      --prefetch-level N  zstd level of the packs --profile puts first (its\n"
		"                          byte ranges and small files), which every cold\n"
		"                          start fetches (default %d; ~10%% smaller than\n"
		"                          level 3, ~20x slower to compress)\n"
		"      --index-compression zstd|none\n"
		"                          store the index as one zstd frame (default; format\n"
		"                          1.1, a remote mount fetches ~3.9x less) or plain\n"
		"                          (format 1.0, readable by older slimfs)\n"
		"      --chunk-min SIZE    smallest chunk (default %uK)\n"
		"      --chunk-avg SIZE    average chunk (default %uK)\n"
		"      --chunk-max SIZE    largest chunk (default %uK)\n"
		"      --small-file-max SIZE  files up to SIZE are packed together (default %uK)\n"
		"  -j, --threads N         compression threads (default: all cores)\n"
		"      --view NAME=ALLOW   a view: what allow-list file ALLOW selects, plus\n"
		"                          the entrypoint closure; repeatable, up to %u;\n"
		"                          --view NAME alone: the closure only ('full' is taken)\n"
		"      --entrypoint PATH   the image's program (a path, or a name on its PATH);\n"
		"                          default: the config's Entrypoint and Cmd. It, its\n"
		"                          interpreters and libraries join every view; without\n"
		"                          --view, view 'minimal' (runtime-base + closure) is\n"
		"                          made and mounted by default. Given once.\n"
		"      --prune             keep only what some view shows (a smaller image; the\n"
		"                          full view is then the union of the views)\n"
		"      --profile PROFILE   put what PROFILE ('slimfs profile') says a run reads\n"
		"                          first in the data, in its order, and prefetch it at\n"
		"                          mount: the byte ranges of its '#@range' lines in\n"
		"                          large files (their other bytes are chunked around\n"
		"                          them), the small files it names, then the chunks of\n"
		"                          its '#@chunk' lines (these match by content, so build\n"
		"                          with the traced image's --chunk-* options)\n"
		"      --spill-dir DIR     where compressed data waits for its final order, in\n"
		"                          an unlinked temporary file about the image's size\n"
		"                          (default: the output's directory, so that the last\n"
		"                          copy stays in one file system; not TMPDIR, which\n"
		"                          is often in memory)\n"
		"  -q, --quiet             print errors only\n"
		"  -v, --verbose           print more\n"
		"      --progress          progress bar even when stderr is not a terminal\n"
		"      --no-progress       no progress bar\n"
		"  -h, --help              this help\n",
		SLIMFS_DEFAULT_ZSTD_LEVEL, SLIMFS_DEFAULT_PREFETCH_LEVEL,
		SLIMFS_DEFAULT_CDC_MIN >> 10, SLIMFS_DEFAULT_CDC_AVG >> 10,
		SLIMFS_DEFAULT_CDC_MAX >> 10, SLIMFS_DEFAULT_SMALL_FILE_MAX >> 10, MAX_VIEWS);
}

struct progress_state {
	uint64_t start_ns, last_ns;
	bool shown;
};

static void progress_cb(const struct slimfs_progress *p, void *ud)
{
	struct progress_state *s = ud;
	uint64_t now = slimfs_now_ns();
	double secs = (double)(now - s->start_ns) / 1e9;
	double rate = secs > 0 ? (double)p->bytes_done / secs : 0;
	char done[32], total[32], rbuf[32], eta[32] = "";

	if (now - s->last_ns < 100000000ull && p->bytes_done != p->bytes_total)
		return;
	s->last_ns = now;
	s->shown = true;
	slimfs_fmt_bytes(p->bytes_done, done, sizeof(done));
	slimfs_fmt_bytes(p->bytes_total, total, sizeof(total));
	slimfs_fmt_bytes((uint64_t)rate, rbuf, sizeof(rbuf));
	if (p->bytes_total && rate > 0 && p->bytes_done < p->bytes_total)
		snprintf(eta, sizeof(eta), " ETA %.0fs",
			 (double)(p->bytes_total - p->bytes_done) / rate);
	if (p->bytes_total) {
		unsigned pct = (unsigned)(100.0 * (double)p->bytes_done / (double)p->bytes_total);
		char bar[21];

		pct = MIN(pct, 100u);
		memset(bar, '#', pct / 5);
		memset(bar + pct / 5, '.', 20 - pct / 5);
		bar[20] = '\0';
		fprintf(stderr, "\r\033[K%-11s [%s] %3u%% %s / %s, %" PRIu64 " files, %s/s%s",
			p->phase, bar, pct, done, total, p->files_done, rbuf, eta);
	} else {
		fprintf(stderr, "\r\033[K%-11s %s, %" PRIu64 " files, %s/s", p->phase, done,
			p->files_done, rbuf);
	}
}

static int parse_u32_size(const char *opt, const char *arg, uint32_t *out)
{
	uint64_t v;

	if (slimfs_parse_size(arg, &v) < 0 || v > UINT32_MAX) {
		log_error("%s: '%s' is not a size (e.g. 64K)", opt, arg);
		return -EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/*
 * Opens an unnamed temporary file in the output's directory, so that a failed
 * or killed build leaves nothing behind; *tmpname is set when O_TMPFILE is not
 * available and a named temporary file had to be used.
 */
static int open_output(const char *output, char **tmpname)
{
	_cleanup_free_ char *copy = strdup(output);
	const char *dir;
	int fd;

	*tmpname = NULL;
	if (!copy)
		return -ENOMEM;
	dir = dirname(copy);
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return log_error_errno(-errno, "cannot create a file in '%s'", dir);
	if (asprintf(tmpname, "%s.tmp.XXXXXX", output) < 0)
		return -ENOMEM;
	fd = mkostemp(*tmpname, O_CLOEXEC);
	if (fd < 0) {
		int r = log_error_errno(-errno, "cannot create '%s'", *tmpname);
		free(*tmpname);
		*tmpname = NULL;
		return r;
	}
	fchmod(fd, 0644);
	return fd;
}

/* Gives the finished temporary file its name, replacing any older image. */
static int commit_output(int fd, const char *tmpname, const char *output)
{
	char procpath[64], tmp2[PATH_MAX];
	uint64_t t0 = slimfs_now_ns();

	if (fsync(fd) < 0)
		return log_error_errno(-errno, "cannot write '%s'", output);
	log_debug("build: fsync %.3f s", (double)(slimfs_now_ns() - t0) / 1e9);
	if (tmpname) {
		if (rename(tmpname, output) < 0)
			return log_error_errno(-errno, "cannot rename '%s' to '%s'", tmpname,
					       output);
		return 0;
	}
	snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", fd);
	for (unsigned i = 0;; i++) {
		if ((size_t)snprintf(tmp2, sizeof(tmp2), "%s.tmp.%d.%u", output, getpid(), i) >=
		    sizeof(tmp2))
			return -ENAMETOOLONG;
		if (linkat(AT_FDCWD, procpath, AT_FDCWD, tmp2, AT_SYMLINK_FOLLOW) == 0)
			break;
		if (errno != EEXIST || i > 100)
			return log_error_errno(-errno, "cannot create '%s'", output);
	}
	if (rename(tmp2, output) < 0) {
		int r = log_error_errno(-errno, "cannot rename '%s' to '%s'", tmp2, output);
		unlink(tmp2);
		return r;
	}
	return 0;
}

int cmd_build(int argc, char **argv)
{
	enum {
		OPT_REF = 256,
		OPT_PLATFORM,
		OPT_CMIN,
		OPT_CAVG,
		OPT_CMAX,
		OPT_SMALL,
		OPT_VIEW,
		OPT_ENTRYPOINT,
		OPT_PRUNE,
		OPT_PROFILE,
		OPT_SPILL_DIR,
		OPT_INDEX_COMPRESSION,
		OPT_PREFETCH_LEVEL,
	};
	static const struct option longopts[] = {
		{"output", required_argument, NULL, 'o'},
		{"ref", required_argument, NULL, OPT_REF},
		{"platform", required_argument, NULL, OPT_PLATFORM},
		{"level", required_argument, NULL, 'l'},
		{"prefetch-level", required_argument, NULL, OPT_PREFETCH_LEVEL},
		{"chunk-min", required_argument, NULL, OPT_CMIN},
		{"chunk-avg", required_argument, NULL, OPT_CAVG},
		{"chunk-max", required_argument, NULL, OPT_CMAX},
		{"small-file-max", required_argument, NULL, OPT_SMALL},
		{"threads", required_argument, NULL, 'j'},
		{"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'},
		SLIMFS_CLI_LONGOPTS_PROGRESS,
		{"view", required_argument, NULL, OPT_VIEW},
		{"entrypoint", required_argument, NULL, OPT_ENTRYPOINT},
		{"prune", no_argument, NULL, OPT_PRUNE},
		{"profile", required_argument, NULL, OPT_PROFILE},
		{"spill-dir", required_argument, NULL, OPT_SPILL_DIR},
		{"index-compression", required_argument, NULL, OPT_INDEX_COMPRESSION},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct slimfs_cli cli = {
		.shortopts = "o:l:j:qvh", .longopts = longopts, .usage = build_usage};
	struct slimfs_build_opts o;
	struct slimfs_build_stats st = {0};
	struct progress_state ps = {0};
	const char *output = NULL;
	_cleanup_free_ char *tmpname = NULL, *outdir = NULL;
	int c, fd, r;
	char *end;
	long v;

	slimfs_build_opts_init(&o);
	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case OPT_REF:
			o.ref = optarg;
			break;
		case OPT_PLATFORM:
			o.platform = optarg;
			break;
		case 'l':
		case OPT_PREFETCH_LEVEL:
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < -7 || v > 22) {
				log_error("--%s: '%s' is not a zstd level (-7..22)",
					  c == 'l' ? "level" : "prefetch-level", optarg);
				return EXIT_USAGE;
			}
			*(c == 'l' ? &o.zstd_level : &o.prefetch_level) = (int)v;
			break;
		case OPT_CMIN:
			if (parse_u32_size("--chunk-min", optarg, &o.cdc_min) < 0)
				return EXIT_USAGE;
			break;
		case OPT_CAVG:
			if (parse_u32_size("--chunk-avg", optarg, &o.cdc_avg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_CMAX:
			if (parse_u32_size("--chunk-max", optarg, &o.cdc_max) < 0)
				return EXIT_USAGE;
			break;
		case OPT_SMALL:
			if (parse_u32_size("--small-file-max", optarg, &o.small_file_max) < 0)
				return EXIT_USAGE;
			break;
		case 'j':
			v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 1024) {
				log_error("--threads: '%s' is not a thread count", optarg);
				return EXIT_USAGE;
			}
			o.threads = (unsigned)v;
			break;
		case 'q':
			slimfs_log_set_level(SLIMFS_LOG_ERROR);
			cli.progress = SLIMFS_CLI_PROGRESS_OFF;
			break;
		case OPT_VIEW:
			if (o.nviews >= MAX_VIEWS) {
				log_error("--view: at most %u views", MAX_VIEWS);
				return EXIT_USAGE;
			}
			/* NAME=FILE: the name ends at the first '=' (names have none) */
			end = strchr(optarg, '=');
			if (end) {
				*end = '\0';
				if (!end[1]) {
					log_error("--view %s=: no allow-list file", optarg);
					return EXIT_USAGE;
				}
			}
			if (!*optarg) {
				log_error("--view: no name (--view NAME=ALLOWFILE)");
				return EXIT_USAGE;
			}
			o.views[o.nviews].name = optarg;
			o.views[o.nviews].allow_file = end ? end + 1 : NULL;
			o.nviews++;
			break;
		case OPT_ENTRYPOINT:
			if (o.entrypoint) {
				log_error("--entrypoint given twice ('%s', '%s')", o.entrypoint,
					  optarg);
				return EXIT_USAGE;
			}
			o.entrypoint = optarg;
			break;
		case OPT_PRUNE:
			o.prune = true;
			break;
		case OPT_PROFILE:
			if (o.profile) {
				log_error("--profile given twice ('%s', '%s')", o.profile, optarg);
				return EXIT_USAGE;
			}
			o.profile = optarg;
			break;
		case OPT_SPILL_DIR:
			o.spill_dir = optarg;
			break;
		case OPT_INDEX_COMPRESSION:
			if (strcmp(optarg, "zstd") != 0 && strcmp(optarg, "none") != 0) {
				log_error("--index-compression: '%s' is not 'zstd' or 'none'",
					  optarg);
				return EXIT_USAGE;
			}
			o.index_plain = strcmp(optarg, "none") == 0;
			break;
		}
	}
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!output || optind >= argc) {
		log_error(!output ? "no output given (-o IMAGE)" : "no source given");
		build_usage(stderr);
		return EXIT_USAGE;
	}
	if (slimfs_cli_show_progress(&cli, false)) {
		ps.start_ns = slimfs_now_ns();
		o.progress = progress_cb;
		o.progress_ud = &ps;
	}

	if (!o.spill_dir) {
		outdir = strdup(output);
		if (!outdir)
			return 1;
		o.spill_dir = dirname(outdir);
	}
	fd = open_output(output, &tmpname);
	if (fd < 0)
		return 1;
	r = slimfs_build(&o, (const char *const *)argv + optind, (size_t)(argc - optind), fd, &st);
	if (ps.shown)
		fprintf(stderr, "\r\033[K");
	if (r >= 0)
		r = commit_output(fd, tmpname, output);
	if (r < 0) {
		if (tmpname)
			unlink(tmpname);
		close(fd);
		log_error("'%s' not written", output);
		return 1;
	}
	close(fd);
	if (slimfs_log_get_level() >= SLIMFS_LOG_INFO) {
		char digest[65], isz[32], tb[32], ub[32];

		slimfs_hex(st.index_digest, 32, digest);
		printf("%s: %s, %" PRIu64 " entries, %s of files (%s unique) in %" PRIu64
		       " chunks, ratio %.2f\n",
		       output, slimfs_fmt_bytes(st.image_size, isz, sizeof(isz)), st.entries,
		       slimfs_fmt_bytes(st.total_bytes, tb, sizeof(tb)),
		       slimfs_fmt_bytes(st.unique_bytes, ub, sizeof(ub)), st.chunks,
		       st.image_size ? (double)st.total_bytes / (double)st.image_size : 0.0);
		printf("digest: sha256:%s\n", digest);
	}
	return 0;
}
