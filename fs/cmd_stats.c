// SPDX-License-Identifier: MIT
/*
 * slimfs stats: ask a mount's daemon for its statistics (unix socket).
 * slimfs pull: fill the disk cache with an image (index and chunks) without
 * mounting it, so that a later mount runs without the network.
 */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "cache.h"
#include "cliopt.h"
#include "cmds.h"
#include "diskcache.h"
#include "image.h"
#include "prefetch.h"
#include "slimfs/util.h"
#include "stats.h"

#define DEFAULT_CACHE_DIR  "/var/cache/slimfs"
#define DEFAULT_CACHE_SIZE (2ull << 30)
#define PULL_THREADS	   4u
#define PULL_MEM_CACHE	   (64ull << 20)

static void stats_usage(FILE *f)
{
	fprintf(f, "usage: slimfs stats [--json | --prometheus] [--socket PATH] MOUNTPOINT\n"
		   "\n"
		   "Prints the statistics of the slimfs mount at MOUNTPOINT: bytes and requests\n"
		   "fetched, fetch latency, memory and disk cache hits, chunks verified and\n"
		   "failed, prefetch progress, lookups hidden by the view (with the last paths).\n"
		   "\n"
		   "options:\n"
		   "      --json          as JSON\n"
		   "      --prometheus    in the Prometheus text exposition format\n"
		   "      --socket PATH   the daemon's socket (default: derived from MOUNTPOINT,\n"
		   "                      see 'slimfs mount --stats-socket')\n"
		   "  -h, --help          this help\n");
}

int cmd_stats(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"prometheus", no_argument, NULL, 'p'},
		{"socket", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "h", .longopts = longopts, .usage = stats_usage};
	const char *req = "text\n", *sock = NULL;
	char path[PATH_MAX], buf[65536];
	_cleanup_close_ int fd = -1;
	int c, r;

	optind = 1;
	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0) {
		switch (c) {
		case 'j':
			req = "json\n";
			break;
		case 'p':
			req = "prometheus\n";
			break;
		case 's':
			sock = optarg;
			break;
		}
	}
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
		return EXIT_USAGE;
	if (sock) {
		snprintf(path, sizeof(path), "%s", sock);
	} else {
		r = slimfs_stats_socket_path(argv[optind], path, sizeof(path));
		if (r < 0) {
			log_error_errno(r, "'%s'", argv[optind]);
			return 1;
		}
	}
	r = slimfs_unix_connect(path, &fd);
	if (r == -ENAMETOOLONG) {
		log_error("socket path '%s' is too long", path);
		return 1;
	}
	if (r < 0) {
		log_error_errno(r, "no slimfs daemon answers for '%s' at '%s'", argv[optind], path);
		return 1;
	}
	r = slimfs_write_all(fd, req, strlen(req));
	if (r < 0) {
		log_error_errno(r, "cannot send to '%s'", path);
		return 1;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error_errno(-errno, "cannot read from '%s'", path);
			return 1;
		}
		if (n == 0)
			break;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return 1;
	}
	if (strcmp(req, "json\n") == 0)
		putchar('\n');
	return fflush(stdout) == 0 ? 0 : 1;
}

static void pull_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs pull [options] IMAGE\n"
		"\n"
		"Fills the disk cache with IMAGE (an http(s):// URL, oci:// reference or path):\n"
		"its index and every chunk, each verified, fetched in large range requests.\n"
		"A later 'slimfs mount --cache DIR IMAGE' then needs no network. Exits 0 only\n"
		"when everything asked for is in the cache.\n"
		"\n"
		"options:\n"
		"      --cache DIR         the disk cache (default %s)\n"
		"      --cache-size SIZE   its bound (default 2G)\n"
		"      --profile-only      only the image's prefetch list (the profile)\n"
		"      --digest sha256:HEX the image's index must have this digest\n"
		"      --insecure, --cacert FILE, --creds USER:PASS, --timeout SECONDS, --retries "
		"N,\n"
		"      --rate RATE, --rtt TIME   as for 'slimfs mount'\n"
		"  -j, --jobs N            requests in flight (default %u)\n"
		"      --progress          progress bar even when stderr is not a terminal\n"
		"      --no-progress       no progress bar\n"
		"  -q, --quiet             print errors only\n"
		"  -h, --help              this help\n",
		DEFAULT_CACHE_DIR, PULL_THREADS);
}

static void show_progress(const struct slimfs_prefetch_progress *p, bool final)
{
	double secs = (double)(slimfs_now_ns() - p->start_ns) / 1e9;
	double rate = secs > 0 ? (double)p->done_bytes / secs : 0;
	double frac = p->total_bytes ? (double)p->done_bytes / (double)p->total_bytes : 1;
	char done[32], total[32], speed[32], eta[32] = "";
	int width = 30, fill = (int)(frac * width + 0.5);

	slimfs_fmt_bytes(p->done_bytes, done, sizeof(done));
	slimfs_fmt_bytes(p->total_bytes, total, sizeof(total));
	slimfs_fmt_bytes((uint64_t)rate, speed, sizeof(speed));
	if (!final && rate > 0 && p->total_bytes > p->done_bytes)
		snprintf(eta, sizeof(eta), " ETA %.0fs",
			 (double)(p->total_bytes - p->done_bytes) / rate);
	fprintf(stderr, "\r[%.*s%*s] %3.0f%% %s / %s  %s/s%s\033[K", fill,
		"##############################", width - fill, "", frac * 100, done, total, speed,
		eta);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

int cmd_pull(int argc, char **argv)
{
	enum {
		OPT_CACHE = 0x100,
		OPT_CACHE_SIZE,
		OPT_PROFILE_ONLY,
	};
	static const struct option longopts[] = {
		{"cache", required_argument, NULL, OPT_CACHE},
		{"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
		{"profile-only", no_argument, NULL, OPT_PROFILE_ONLY},
		SLIMFS_CLI_LONGOPT_DIGEST,
		SLIMFS_CLI_LONGOPTS_REGISTRY,
		SLIMFS_CLI_LONGOPTS_NET,
		{"jobs", required_argument, NULL, 'j'},
		SLIMFS_CLI_LONGOPTS_PROGRESS,
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli_fetch f = {.fo.timeout_ms = 10000};
	struct slimfs_cli cli = {
		.shortopts = "j:qh", .longopts = longopts, .usage = pull_usage, .fetch = &f};
	struct slimfs_prefetch_opts po = {.mode = SLIMFS_PREFETCH_ALL,
					  .threads = PULL_THREADS,
					  .disk_only = true,
					  .has_disk = true};
	struct slimfs_cache_opts co = {.mem_bytes = PULL_MEM_CACHE};
	struct slimfs_prefetch_progress pp;
	struct slimfs_cache_stats cs;
	struct slimfs_image *img = NULL;
	struct slimfs_diskcache *dc = NULL;
	struct slimfs_cache *cache = NULL;
	struct slimfs_prefetch *pf = NULL;
	const char *cache_dir = DEFAULT_CACHE_DIR;
	uint64_t cache_size = DEFAULT_CACHE_SIZE;
	bool quiet = false, progress;
	int c, r, ret = 1;
	char b1[32], b2[32];
	unsigned long jobs;
	char *end;

	optind = 1;
	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0) {
		switch (c) {
		case OPT_CACHE:
			cache_dir = optarg;
			break;
		case OPT_CACHE_SIZE:
			if (slimfs_parse_size(optarg, &cache_size) < 0) {
				log_error("--cache-size: '%s' is not a size (e.g. 4G)", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_PROFILE_ONLY:
			po.mode = SLIMFS_PREFETCH_PROFILE;
			break;
		case 'j':
			errno = 0;
			jobs = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || jobs < 1 || jobs > 64) {
				log_error("--jobs: '%s' is not a number in 1..64", optarg);
				return EXIT_USAGE;
			}
			po.threads = (unsigned)jobs;
			break;
		case 'q':
			quiet = true;
			break;
		}
	}
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
		return EXIT_USAGE;
	if (quiet)
		slimfs_log_set_level(SLIMFS_LOG_ERROR);
	progress = slimfs_cli_show_progress(&cli, quiet);

	r = slimfs_cli_open_image(argv[optind], &f, cache_dir, &img);
	if (r < 0) {
		log_error_errno(r, "cannot open image '%s'", argv[optind]);
		goto out;
	}
	r = slimfs_diskcache_open(cache_dir, cache_size, &dc);
	if (r < 0)
		goto out;
	slimfs_diskcache_scan(dc);
	if (img->info->data_size > cache_size)
		log_warn("the image's data (%s) exceeds the cache bound (%s): the cache will "
			 "evict what it pulls",
			 slimfs_fmt_bytes(img->info->data_size, b1, sizeof(b1)),
			 slimfs_fmt_bytes(cache_size, b2, sizeof(b2)));
	co.disk = dc;
	r = slimfs_cache_new(img, &co, &cache);
	if (r < 0)
		goto out;
	r = slimfs_prefetch_start(cache, img, &po, &pf);
	if (r < 0)
		goto out;
	for (;;) {
		struct timespec ts = {.tv_nsec = 200000000};

		slimfs_prefetch_progress(pf, &pp);
		if (pp.finished)
			break;
		if (progress)
			show_progress(&pp, false);
		nanosleep(&ts, NULL);
	}
	if (progress)
		show_progress(&pp, true);
	slimfs_cache_stats(cache, &cs);
	if (pp.failed) {
		log_error("'%s': %" PRIu64 " of %" PRIu64 " chunks could not be pulled",
			  argv[optind], pp.failed, pp.total);
		goto out;
	}
	if (!quiet)
		printf("pulled '%s' into '%s': %" PRIu64 " chunks (%s), %" PRIu64
		       " fetched (%s in %" PRIu64 " requests), %" PRIu64 " already cached\n",
		       argv[optind], cache_dir, pp.total,
		       slimfs_fmt_bytes(pp.total_bytes, b1, sizeof(b1)), cs.background,
		       slimfs_fmt_bytes(cs.background_bytes, b2, sizeof(b2)), cs.runs,
		       pp.total - cs.background);
	ret = 0;
out:
	slimfs_prefetch_stop(pf);
	slimfs_cache_free(cache);
	slimfs_diskcache_free(dc);
	slimfs_image_close(img);
	return ret;
}
