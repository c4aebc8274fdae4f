// SPDX-License-Identifier: MIT
/*
 * slimfs mount: the FUSE daemon. In the background by default: the child
 * sets everything up and mounts, then tells the parent through a pipe that
 * the mount is live (or why it failed); the parent exits only then.
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "cliopt.h"
#include "cmds.h"
#include "diskcache.h"
#include "dl.h"
#include "elfahead.h"
#include "image.h"
#include "notify.h"
#include "watchdog.h"
#include "ops.h"
#include "prefetch.h"
#include "profile.h"
#include "slimfs/format.h"
#include "slimfs/util.h"
#include "stats.h"
#include "idle.h"
#include "takeover.h"
#include "trace.h"

#define DEFAULT_CACHE_DIR  "/var/cache/slimfs"
#define DEFAULT_CACHE_SIZE (2ull << 30)
/*
 * Decoded chunks in memory. The page cache filler puts what was decoded into
 * the kernel's page cache, so this only has to hold chunks between a read and
 * the next reads near it. Cold tar of the bookworm rootfs (local image, page
 * cache dropped, RT priority on a loaded 2-vCPU VM, 3-4 runs each):
 * 256M 4.36-4.57 s, 64M 3.71-4.31 s, 32M 3.74-4.01 s, 16M 3.55-4.16 s: a large
 * cache costs a fresh page fault per 4 KiB decoded until it is full.
 */
#define DEFAULT_MEM_CACHE (64ull << 20)
#define DEFAULT_THREADS	  8u
#define DEFAULT_TIMEOUT_S 10u
/*
 * --idle-release: after this long without a FUSE request or background work
 * the daemon drops its decoded chunks and decode buffers and trims its heap
 * (idle.h): ~110 MiB of anonymous memory after a full-tree read, ~13 MiB after.
 * A minute: a workload that pauses for less keeps its memory cache. What a
 * release costs is paid only by reads that miss the page cache (its bytes
 * stay there): their chunk's decode, as after an eviction, and the page faults
 * of refilling the heap (a cold full-tree read: ~1.5 s more of 3-5 s on a
 * loaded machine, see README). bench/run.sh's mount rows pause for far less
 * within a mount (tar and fio back to back; the longest gap is the start of
 * the next command, milliseconds), so none of them ever sees a release.
 */
#define DEFAULT_IDLE_RELEASE_NS (60ull * 1000000000)
/*
 * Sequential read-ahead window (per file and in data order). Local images
 * too: the background workers then decode ahead on the other core. Cold tar
 * of the bookworm rootfs from a local image (as for DEFAULT_MEM_CACHE, 256M
 * cache): 0 5.12-6.10 s, 4M 4.36-4.57 s; 16M no better than 4M.
 */
#define READAHEAD_BYTES (4ull << 20)
/*
 * Chunks a miss also fetches after its own, in data order, for remote
 * images (see miss_ahead in ops.c; local files: a miss costs no round trip).
 */
#define MISS_AHEAD_BYTES (1ull << 20)
/* What the daemon child writes to the parent once the mount is live. */
#define READY_MARK "\001READY\n"

struct mount_opts {
	const char *image, *mountpoint;
	bool foreground, debug, cache_explicit, have_digest;
	const char *view;      /* NULL: the image's default view */
	const char *cache_dir; /* "none": no disk cache */
	uint64_t cache_size, mem_cache;
	unsigned threads;
	uint8_t digest[32];
	int ready_fd;
	int verbosity;
	char *fuse_opts;	    /* owned: comma-separated, passed to FUSE */
	char *view_buf, *cache_buf; /* owned: view= and cache= from -o */
	bool has_fsname, has_subtype;
	struct slimfs_fetch_opts fetch;
	enum slimfs_prefetch_mode prefetch;
	const char *trace, *stats_socket;
	const char *prefetch_profile; /* profile file whose chunks to prefetch */
	char *pprofile_buf;
	int64_t readahead;	  /* bytes, -1: the default */
	int64_t kernel_readahead; /* FUSE max_readahead, bytes; -1: the kernel's */
	int64_t miss_ahead;	  /* bytes, -1: the default */
	bool no_coalesce;
	enum slimfs_fill_mode fill;		 /* --page-cache-fill */
	char *creds_buf, *trace_buf, *stats_buf; /* owned: from -o */
	bool takeover;				 /* --takeover: the mount is live, take it over */
	uint64_t idle_release_ns;		 /* --idle-release, 0: never */
	struct slimfs_daemon_info info;		 /* for `slimfs restart` */
	char *cwd_buf;
};

static void mount_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs mount [options] IMAGE MOUNTPOINT\n"
		"\n"
		"Mounts IMAGE (a path, http(s):// URL or oci:// reference) read-only at\n"
		"MOUNTPOINT with FUSE. Runs in the background once the mount is live, unless -f.\n"
		"Unmount with 'fusermount3 -u MOUNTPOINT' or 'umount MOUNTPOINT'.\n"
		"\n"
		"options:\n"
		"  -f, --foreground        stay in the foreground, log to stderr\n"
		"  -o OPTS                 FUSE mount options: allow_other, default_permissions,\n"
		"                          fsname=NAME (default IMAGE), subtype=NAME (default\n"
		"                          slimfs); ro is implied. Also view=, cache=, "
		"cache_size=,\n"
		"                          mem_cache=, threads=, digest=, insecure, creds=,\n"
		"                          timeout=, retries=, rate=, rtt=, prefetch=, trace=,\n"
		"                          stats_socket=, readahead=, kernel_readahead=,\n"
		"                          miss_ahead=, idle_release=,\n"
		"                          page_cache_fill= (as below)\n"
		"      --view NAME         view to show (default: the image's default view, or\n"
		"                          'full' when it has none); 'full' shows everything\n"
		"      --cache DIR         disk chunk cache shared by all mounts (default %s;\n"
		"                          'none' disables it; off for local image files\n"
		"                          unless given)\n"
		"      --cache-size SIZE   bound on the disk cache (default 2G)\n"
		"      --mem-cache SIZE    decoded chunks held in memory (default 64M; a\n"
		"                          quarter keeps the first and last 4 KiB of more)\n"
		"      --idle-release TIME after TIME without requests or background work,\n"
		"                          give memory back: drop the decoded chunks, free the\n"
		"                          decode buffers, trim the heap (default 60s; 0 is\n"
		"                          never; also 500ms, 2m); the next reads load again\n"
		"      --threads N         FUSE worker threads (default %u)\n"
		"      --digest sha256:HEX the image's index must have this digest\n"
		"\n",
		DEFAULT_CACHE_DIR, DEFAULT_THREADS);
	/* Several calls: one string literal may be at most 4095 bytes (C99). */
	fprintf(f,
		"remote images (http(s)://, oci://):\n"
		"      --insecure          no TLS verification; plain HTTP to a registry that\n"
		"                          is not on localhost\n"
		"      --cacert FILE       trust the CAs in FILE (PEM) instead of the system's\n"
		"      --creds USER:PASS   registry credentials (default: the Docker config)\n"
		"      --timeout SECONDS   bound on one read, retries included (default %u;\n"
		"                          also 500ms, 1.5s); past it the reader gets EIO\n"
		"      --retries N         extra attempts of a failed request (default 4)\n"
		"      --rate RATE         emulate a link of this bandwidth: '100mbit', '1gbit',\n"
		"                          '8Mbps' are bits/s; '12.5MB/s', '500K', '2MiB/s' are\n"
		"                          bytes/s (k, M, G: powers of 1000; Ki, Mi, Gi: 1024)\n"
		"      --rtt TIME          emulate this delay per request (e.g. 20ms)\n"
		"      --prefetch MODE     at mount, fetch in the background: 'profile' (the\n"
		"                          image's prefetch list, the default), 'all' (the\n"
		"                          profile, then the rest of the image into the disk\n"
		"                          cache), 'none'\n"
		"      --prefetch-profile FILE  prefetch the chunks of a profile file ('slimfs\n"
		"                          profile'), in its order, instead of the image's own\n"
		"                          list: try a profile on any image without rebuilding\n"
		"      --readahead SIZE    read ahead of sequential readers, per file and in\n"
		"                          data order, by background workers (default 4M; 0 is\n"
		"                          off); with --prefetch, neither it nor --miss-ahead\n"
		"                          while the profile is fetched, nor for reads of the\n"
		"                          profile's chunks only\n"
		"      --kernel-readahead SIZE  the kernel's read-ahead and mmap read-around\n"
		"                          on this mount (FUSE max_readahead; default: the\n"
		"                          kernel's, 128K; 0 reads only the pages asked for);\n"
		"                          recorded in --trace files\n"
		"      --miss-ahead SIZE   a read that misses also fetches, in requests of up\n"
		"                          to 256K issued at once, the rest of its file and the\n"
		"                          small files (<= 64K) that follow it in the image, up\n"
		"                          to SIZE (default 1M; 0 is off; never for local\n"
		"                          files); without a profile up to twice SIZE, and in a\n"
		"                          directory of up to 8M the files (<= 256K) of that\n"
		"                          directory, from the next one on; also without a\n"
		"                          profile, the first read of an ELF file's header\n"
		"                          fetches the start of the libraries it needs\n"
		"                          (PT_INTERP, DT_NEEDED as ld.so finds them)\n"
		"      --page-cache-fill MODE  after a read, push more of what was decoded into\n"
		"                          the kernel's page cache, so nearby reads need no\n"
		"                          FUSE request: 'chunk' (the rest of each chunk read;\n"
		"                          never fetches more), 'file' (also whole files up to\n"
		"                          1M on their first read; remote: only chunks already\n"
		"                          fetched), 'off', 'auto' (the default: chunk when a\n"
		"                          connection watchdog can run, which needs root and\n"
		"                          fusectl, and not with --trace; else off)\n",
		DEFAULT_TIMEOUT_S);
	fputs("      --trace FILE        record the paths looked up and read, the chunks read\n"
	      "                          and the byte ranges read, in order (input of 'slimfs\n"
	      "                          profile'); trace with the --kernel-readahead the\n"
	      "                          profiled runs will use\n"
	      "      --stats-socket PATH where 'slimfs stats MOUNTPOINT' asks (default\n"
	      "                          /run/slimfs/<mountpoint escaped>.sock)\n"
	      "   A fully cached image (slimfs pull, or read once with a disk cache) mounts\n"
	      "   and runs when its source is unreachable.\n"
	      "      --ready-fd N        write \"READY\\n\" to fd N once the mount is live\n"
	      "      --takeover          MOUNTPOINT is a live slimfs mount of the same image\n"
	      "                          (same index digest): take it over from its daemon\n"
	      "                          (which exits without unmounting) with these options,\n"
	      "                          e.g. a new --mem-cache, without a reader noticing.\n"
	      "                          'slimfs restart' does it with the running options.\n"
	      "                          Not for mounts with -o auto_unmount\n"
	      "  -v, --verbose           log more (repeat for debug)\n"
	      "  -q, --quiet             log errors only\n"
	      "      --debug             FUSE debug output (implies -f)\n"
	      "  -h, --help              this help\n"
	      "\n"
	      "As mount(8) helper (mount.slimfs, 'mount -t fuse.slimfs', fstab):\n"
	      "  mount.slimfs IMAGE DIR [-o OPTS]\n",
	      f);
}

/* Appends opt to the FUSE option string. */
static int add_fuse_opt(struct mount_opts *o, const char *opt, size_t len)
{
	size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
	char *n = realloc(o->fuse_opts, old + len + 2);

	if (!n)
		return -ENOMEM;
	if (old)
		n[old++] = ',';
	memcpy(n + old, opt, len);
	n[old + len] = '\0';
	o->fuse_opts = n;
	return 0;
}

static int parse_size_opt(const char *what, const char *arg, uint64_t *out)
{
	if (slimfs_parse_size(arg, out) < 0) {
		log_error("%s: '%s' is not a size (e.g. 256M)", what, arg);
		return -EINVAL;
	}
	return 0;
}

/* A size option kept in an int64_t (-1 is "the default"), at most max. */
static int parse_capped_size(const char *what, const char *arg, uint64_t max, int64_t *out)
{
	uint64_t v;

	if (parse_size_opt(what, arg, &v) < 0)
		return -EINVAL;
	*out = (int64_t)MIN(v, max);
	return 0;
}

static int parse_uint_opt(const char *what, const char *arg, unsigned min, unsigned max,
			  unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max) {
		log_error("%s: '%s' is not a number in %u..%u", what, arg, min, max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_prefetch(const char *what, const char *v, enum slimfs_prefetch_mode *out)
{
	if (strcmp(v, "none") == 0)
		*out = SLIMFS_PREFETCH_NONE;
	else if (strcmp(v, "profile") == 0)
		*out = SLIMFS_PREFETCH_PROFILE;
	else if (strcmp(v, "all") == 0)
		*out = SLIMFS_PREFETCH_ALL;
	else {
		log_error("%s: '%s' is not none, profile or all", what, v);
		return -EINVAL;
	}
	return 0;
}

static int parse_fill(const char *what, const char *v, enum slimfs_fill_mode *out)
{
	if (slimfs_fill_mode_parse(v, out) < 0) {
		log_error("%s: '%s' is not auto, chunk, file or off", what, v);
		return -EINVAL;
	}
	return 0;
}

/* A time as --timeout takes it (seconds, or e.g. 500ms, 2m), 0 allowed: never. */
static int parse_idle_release(const char *what, const char *v, uint64_t *out)
{
	if (slimfs_parse_duration(v, 1000000000ull, out) < 0 || *out > 86400000000000ull) {
		log_error("%s: '%s' is not a time (seconds, or e.g. 500ms; 0 is never)", what, v);
		return -EINVAL;
	}
	return 0;
}

static int dup_opt(char **buf, const char **dst, const char *v)
{
	free(*buf);
	*dst = *buf = strdup(v);
	return *buf ? 0 : -ENOMEM;
}

/* --view/--cache/... given as -o key=value (fstab lines); 1 if handled. */
static int apply_slimfs_key(struct mount_opts *o, const char *opt)
{
	const char *v = strchr(opt, '=');
	size_t k = v ? (size_t)(v - opt) : strlen(opt);

	if (!v) {
		if (strcmp(opt, "insecure") == 0) {
			o->fetch.insecure = true;
			return 1;
		}
		return 0;
	}
	v++;
#define KEY(s) (k == strlen(s) && strncmp(opt, s, k) == 0)
	if (KEY("view")) {
		free(o->view_buf);
		o->view = o->view_buf = strdup(v);
		if (!o->view_buf)
			return -ENOMEM;
	} else if (KEY("cache")) {
		free(o->cache_buf);
		o->cache_dir = o->cache_buf = strdup(v);
		if (!o->cache_buf)
			return -ENOMEM;
		o->cache_explicit = true;
	} else if (KEY("cache_size")) {
		if (parse_size_opt("cache_size", v, &o->cache_size) < 0)
			return -EINVAL;
	} else if (KEY("mem_cache")) {
		if (parse_size_opt("mem_cache", v, &o->mem_cache) < 0)
			return -EINVAL;
	} else if (KEY("threads")) {
		if (parse_uint_opt("threads", v, 1, 1024, &o->threads) < 0)
			return -EINVAL;
	} else if (KEY("digest")) {
		if (slimfs_parse_digest(v, o->digest) < 0) {
			log_error("digest: '%s' is not sha256:<64 hex digits>", v);
			return -EINVAL;
		}
		o->have_digest = true;
	} else if (KEY("creds")) {
		if (dup_opt(&o->creds_buf, &o->fetch.creds, v) < 0)
			return -ENOMEM;
	} else if (KEY("prefetch_profile")) {
		if (dup_opt(&o->pprofile_buf, &o->prefetch_profile, v) < 0)
			return -ENOMEM;
	} else if (KEY("trace")) {
		if (dup_opt(&o->trace_buf, &o->trace, v) < 0)
			return -ENOMEM;
	} else if (KEY("stats_socket")) {
		if (dup_opt(&o->stats_buf, &o->stats_socket, v) < 0)
			return -ENOMEM;
	} else if (KEY("readahead")) {
		if (parse_capped_size("readahead", v, 1ull << 30, &o->readahead) < 0)
			return -EINVAL;
	} else if (KEY("kernel_readahead")) {
		if (parse_capped_size("kernel_readahead", v, UINT32_MAX, &o->kernel_readahead) < 0)
			return -EINVAL;
	} else if (KEY("miss_ahead")) {
		if (parse_capped_size("miss_ahead", v, 1ull << 30, &o->miss_ahead) < 0)
			return -EINVAL;
	} else if (KEY("coalesce")) {
		/* For measurements: coalesce=0 fetches each chunk on its own. */
		o->no_coalesce = strcmp(v, "0") == 0;
	} else if (KEY("idle_release")) {
		if (parse_idle_release("idle_release", v, &o->idle_release_ns) < 0)
			return -EINVAL;
	} else if (KEY("page_cache_fill")) {
		if (parse_fill("page_cache_fill", v, &o->fill) < 0)
			return -EINVAL;
	} else if (KEY("prefetch")) {
		if (parse_prefetch("prefetch", v, &o->prefetch) < 0)
			return -EINVAL;
	} else if (KEY("timeout") || KEY("retries") || KEY("rate") || KEY("rtt")) {
		char key[16];

		snprintf(key, sizeof(key), "%.*s", (int)k, opt);
		if (slimfs_parse_fetch_opt(key, key, v, &o->fetch) < 0)
			return -EINVAL;
	} else {
		return 0;
	}
#undef KEY
	return 1;
}

/* Options only mount(8) cares about, dropped before FUSE sees them. */
static bool is_mount8_only(const char *opt, size_t len)
{
	static const char *const drop[] = {"defaults", "ro",	"rw",	  "noauto", "auto",
					   "user",     "users", "nouser", "nofail", "_netdev"};

	if (len >= 2 && strncmp(opt, "x-", 2) == 0)
		return true;
	if (len >= 8 && strncmp(opt, "comment=", 8) == 0)
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(drop); i++)
		if (strlen(drop[i]) == len && strncmp(opt, drop[i], len) == 0)
			return true;
	return false;
}

/* One -o argument: split at commas, take slimfs' keys, pass the rest to FUSE. */
static int apply_o(struct mount_opts *o, const char *arg)
{
	_cleanup_free_ char *copy = strdup(arg);
	char *save = NULL;

	if (!copy)
		return -ENOMEM;
	for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		size_t len = strlen(opt);
		int r;

		if (is_mount8_only(opt, len))
			continue;
		r = apply_slimfs_key(o, opt);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		if (strncmp(opt, "fsname=", 7) == 0)
			o->has_fsname = true;
		if (strncmp(opt, "subtype=", 8) == 0)
			o->has_subtype = true;
		r = add_fuse_opt(o, opt, len);
		if (r < 0)
			return r;
	}
	return 0;
}

/* A dead FUSE mount (daemon killed) gives ENOTCONN: detach it so we can mount again. */
static int check_mountpoint(const char *mnt)
{
	struct stat st;

	if (stat(mnt, &st) < 0) {
		if (errno != ENOTCONN)
			return log_error_errno(-errno, "cannot access mountpoint '%s'", mnt);
		log_warn("'%s' is a dead FUSE mount: detaching it", mnt);
		if (umount2(mnt, MNT_DETACH) < 0) {
			pid_t pid = fork();
			int status;

			if (pid < 0)
				return log_error_errno(-errno, "cannot fork");
			if (pid == 0) {
				execlp("fusermount3", "fusermount3", "-u", "-z", "--", mnt,
				       (char *)NULL);
				_exit(127);
			}
			if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0) {
				log_error("cannot detach the dead mount at '%s'", mnt);
				return -ENOTCONN;
			}
		}
		if (stat(mnt, &st) < 0)
			return log_error_errno(-errno, "cannot access mountpoint '%s'", mnt);
	}
	if (!S_ISDIR(st.st_mode)) {
		log_error("mountpoint '%s' is not a directory", mnt);
		return -ENOTDIR;
	}
	return 0;
}

/* fuse_opt values escape ',' and '\\'. */
static char *escape_opt(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 1), *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

static void fuse_log_cb(enum fuse_log_level level, const char *fmt, va_list ap)
{
	int l = level <= FUSE_LOG_ERR	    ? SLIMFS_LOG_ERROR
		: level == FUSE_LOG_WARNING ? SLIMFS_LOG_WARN
		: level <= FUSE_LOG_INFO    ? SLIMFS_LOG_INFO
					    : SLIMFS_LOG_DEBUG;
	char buf[1024];
	size_t n;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = '\0';
	slimfs_log(l, "fuse: %s", buf);
}

struct daemon_ctx {
	int ready_fd;	     /* --ready-fd, or -1 */
	int status_fd;	     /* pipe to the waiting parent, or -1 */
	bool fork_when_live; /* to the background once live (go_background) */
	bool background;     /* forked off: logs to syslog once live */
	pid_t parent;	     /* background: the process waiting for READY */
	sem_t live;	     /* posted by on_ready */
};

/* From op_init: the kernel's INIT is being answered, the mount is live. */
static void on_ready(void *ud)
{
	struct daemon_ctx *d = ud;

	if (d->ready_fd >= 0) {
		(void)slimfs_write_all(d->ready_fd, "READY\n", 6);
		close(d->ready_fd);
		d->ready_fd = -1;
	}
	if (d->status_fd >= 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		slimfs_log_use_syslog(true);
		(void)slimfs_write_all(d->status_fd, READY_MARK, strlen(READY_MARK));
		if (null >= 0) {
			dup2(null, STDERR_FILENO);
			close(null);
		}
		close(d->status_fd);
		d->status_fd = -1;
	}
	sem_post(&d->live);
}

#ifndef NDEBUG
/*
 * Debug builds (CI's: debugoptimized keeps NDEBUG off): a thread started
 * before go_background's fork does not exist in the daemon (903edb6 lost the
 * ELF-ahead thread and the trace flusher that way), so each is started once
 * live. Only this thread and the loader's detached read-ahead thread may run
 * here (dl.h: libcurl's loading thread is joined, slimfs_backend_preload_settle,
 * but its read-ahead of cold files may still be busy; the parent that keeps it
 * only _exits). The readdir of /proc/self/task costs ~40 us of a ~25 ms cold
 * mount. Not in release builds: a thread of some library (an LD_PRELOAD, libcurl's resolver
 * left behind by a lookup that timed out) must not fail a user's mount.
 * -EBUSY when another thread runs.
 */
static int check_lone_thread(void)
{
	unsigned untold = slimfs_dl_threads_untold(); /* before the listing: dl.h */
	unsigned others = 0;
	pid_t self = gettid(), other = 0;
	struct dirent *e;
	DIR *dir;

	dir = opendir("/proc/self/task");
	if (!dir)
		return 0; /* no /proc: nothing to check with */
	while ((e = readdir(dir))) {
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid > 0 && tid != self && !slimfs_dl_thread(tid)) {
			others++;
			other = tid;
		}
	}
	closedir(dir);
	if (others <= untold)
		return 0;
	log_error("%u thread%s (tid %d) started before the fork to the background: "
		  "it would not exist in the daemon (start it once live, after go_background)",
		  others - untold, others - untold == 1 ? "" : "s", (int)other);
	return -EBUSY;
}
#endif

/*
 * A mount in the background: this process, the one its caller waits for,
 * opened the image, mounted and answered the kernel's INIT itself (the mount
 * is live), and now forks: it exits 0 and the child goes on as the daemon.
 * Forking first and waiting for the child to say READY through a pipe put
 * the child's copy-on-write faults and the parent's wake-up on the mount's
 * critical path (3-5 ms of a ~25 ms cold mount on a VM); errors before now
 * go straight to the caller's stderr. Returns in the child, 0 or -errno (no
 * fork: the caller unmounts and fails).
 */
static int go_background(struct daemon_ctx *d)
{
	pid_t pid;
	int null;

#ifndef NDEBUG
	if (check_lone_thread() < 0)
		return -EBUSY;
#endif
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return log_error_errno(-errno, "cannot fork");
	if (pid > 0)
		_exit(0); /* nothing to clean: the child holds it all */
	setsid();
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		close(null);
	}
	slimfs_log_use_syslog(true);
	d->background = true;
	if (chdir("/") < 0)
		log_warn_errno(-errno, "cannot chdir to /");
	return 0;
}

/*
 * Until the mount is live (INIT answered by the first worker) and, in the
 * background, until the parent waiting for it has exited: what the daemon
 * starts next (the other workers, the watchdog's fork and exec) would compete
 * with both for the CPU (all of it at RT priority under chrt). Bounded waits.
 */
#define LIVE_WAIT_S	    2
#define PARENT_EXIT_WAIT_MS 200
static void wait_live(struct daemon_ctx *d)
{
	struct timespec ts;
	struct pollfd pfd = {.events = POLLIN};

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += LIVE_WAIT_S;
	while (sem_timedwait(&d->live, &ts) < 0 && errno == EINTR)
		;
	if (!d->background || d->parent <= 0)
		return;
	pfd.fd = (int)syscall(SYS_pidfd_open, d->parent, 0);
	if (pfd.fd < 0) /* gone already */
		return;
	while (poll(&pfd, 1, PARENT_EXIT_WAIT_MS) < 0 && errno == EINTR)
		;
	close(pfd.fd);
}

static int select_view(struct slimfs_image *img, const char *want, uint32_t *view, char **name)
{
	struct slimfs_view v;
	int r;

	if (!want) {
		*view = img->info->default_view;
		if (*view == SLIMFS_VIEW_NONE) {
			*name = strdup("full");
			return *name ? 0 : -ENOMEM;
		}
	} else {
		r = slimfs_index_view_find(img->idx, want, view);
		if (r == -ENOENT) {
			log_error("'%s' has no view '%s'", img->source, want);
			for (uint64_t i = 0; i < img->info->view_count; i++)
				if (slimfs_index_view(img->idx, (uint32_t)i, &v) == 0)
					log_error("  available: %.*s", (int)v.name_len, v.name);
			log_error("  available: full");
			return r;
		}
		if (r < 0)
			return log_error_errno(r, "'%s': cannot look up view '%s'", img->source,
					       want);
		if (*view == SLIMFS_VIEW_NONE) {
			*name = strdup("full");
			return *name ? 0 : -ENOMEM;
		}
	}
	r = slimfs_index_view(img->idx, *view, &v);
	if (r < 0)
		return log_error_errno(r, "'%s': bad view %u", img->source, *view);
	*name = strndup(v.name, v.name_len);
	return *name ? 0 : -ENOMEM;
}

/* What handing the mount over pauses, and resumes if the handover fails. */
struct handover_ctx {
	const struct mount_opts *o;
	const struct slimfs_stats_src *src;
	struct slimfs_stats_server *stats;
	struct slimfs_fs *fs;
	struct fuse_session *se;
	const char *mnt;
	struct slimfs_notify **notify;
	struct slimfs_notify *stopped; /* by a failed handover; workers may hold it */
	struct slimfs_idle *idle;      /* NULL: no idle release */
};

/* run: answer at once; else once slimfs_stats_run() (a mount not live yet). */
static int start_stats(struct handover_ctx *h, bool run)
{
	int r = slimfs_stats_serve(h->o->stats_socket, h->src, &h->stats);

	if (r == 0 && h->idle) /* its thread checks for idleness too */
		slimfs_stats_every(h->stats, slimfs_idle_period_ms(h->idle), slimfs_idle_tick,
				   h->idle);
	if (r == 0 && run)
		r = slimfs_stats_run(h->stats);
	if (r < 0 && !h->o->stats_socket) {
		log_warn("continuing without a stats socket%s",
			 h->idle ? " (and without the idle release, which its thread runs)" : "");
		r = 0;
	}
	return r;
}

static void handover_pause(void *ud)
{
	struct handover_ctx *h = ud;

	/* The filler stops while the workers still answer reads (notify.c). */
	(void)slimfs_notify_stop(*h->notify);
	/* The new daemon listens on the same stats socket. */
	slimfs_stats_stop(h->stats);
	h->stats = NULL;
}

static void handover_resume(void *ud)
{
	struct handover_ctx *h = ud;

	(void)start_stats(h, true);
	if (*h->notify) {
		/* The workers were all stopped since the previous one stopped. */
		slimfs_notify_free(h->stopped);
		h->stopped = *h->notify;
		if (slimfs_notify_start(h->fs, h->se, h->o->fill, h->mnt, h->notify) < 0)
			*h->notify = NULL;
		__atomic_store_n(&h->fs->notify, *h->notify, __ATOMIC_RELEASE);
	}
}

#ifdef __GLIBC__
/* Whether the user's GLIBC_TUNABLES set the tunable name: glibc did as told then. */
static bool user_tunable(const char *name)
{
	const char *t = getenv("GLIBC_TUNABLES");
	size_t n = strlen(name);

	while (t) {
		if (strncmp(t, name, n) == 0 && t[n] == '=')
			return true;
		t = strchr(t, ':');
		t = t ? t + 1 : NULL;
	}
	return false;
}
#endif

/*
 * The daemon's heap, set before it allocates much or starts a thread.
 *
 * The memory cache frees and allocates decoded chunks all the time: let malloc
 * reuse what it freed instead of handing it back to the kernel (glibc's default
 * trims the heap past ~2x its last mmap threshold, and mmaps buffers above a
 * threshold that keeps moving) and taking fresh pages again, a page fault per
 * 4 KiB, each costing 10-40 us in this VM. fio 4 KiB random reads, 256 MiB
 * file, 5 s, 2 paired rounds: 1 job 43k -> 25k minor faults in the daemon,
 * 92-95k -> 105-107k IOPS; 4 jobs 171-174k -> 173-212k. Peak RSS after 4 jobs
 * 119 -> 128 MB.
 *
 * One arena, and on transparent huge pages (64 MiB touched: 0.24 s in 4 KiB
 * pages, 5 ms in 2 MiB ones): a cold full-tree read of the bookworm rootfs
 * (tar | wc -c) faulted ~27k pages in the daemon, ~300 so. The heap grows once,
 * by the memory cache's bound and some working room (M_TOP_PAD, which trimming
 * then keeps too), and that range is advised; the plain index and the decode
 * buffers are mapped on huge pages of their own (slimfs_huge_alloc). These
 * used to be glibc tunables, set by executing slimfs again (~3 ms and ~170
 * page faults of relocations per mount). The user's GLIBC_TUNABLES
 * glibc.malloc.hugetlb (0: no huge pages) and glibc.malloc.arena_max win.
 *
 * daemon_heap() sets the arena and thresholds, first thing; daemon_heap_grow()
 * grows and advises the heap once the mount is live: what is allocated before
 * is small, and a huge page taken then (~0.1-1 ms each in a VM, the first
 * after the page cache was dropped the slowest) would delay the mount.
 */
#define HEAP_ROOM_MIN	       (32u << 20)
#define HEAP_GROWTH_MAX	       (1u << 30)
#define GLIBC_DEFAULT_PAD      (128u << 10)
#define GLIBC_DEFAULT_MMAP_MAX 65536
static void daemon_heap(uint64_t mem_cache)
{
#ifdef __GLIBC__
	if (!user_tunable("glibc.malloc.arena_max"))
		mallopt(M_ARENA_MAX, 1);
	mallopt(M_MMAP_THRESHOLD, (int)SLIMFS_CHUNK_MAX);
	mallopt(M_TRIM_THRESHOLD, (int)MIN(mem_cache, (uint64_t)INT_MAX));
	if (!user_tunable("glibc.malloc.hugetlb"))
		slimfs_huge_pages(true);
#else
	(void)mem_cache;
#endif
}

/* Returns the start of the range it advised, or NULL. */
static uint8_t *daemon_heap_grow(uint64_t mem_cache)
{
#ifdef __GLIBC__
	size_t pad = (size_t)MIN(mem_cache + MAX(mem_cache / 2, (uint64_t)HEAP_ROOM_MIN),
				 (uint64_t)HEAP_GROWTH_MAX),
	       free_bytes;
	uint8_t *before, *after;
	void *volatile p; /* else the compiler drops malloc() and free() */

	if (!slimfs_huge_pages_on())
		return NULL;
	/*
	 * An allocation larger than all the heap has free (top and bins) grows
	 * it by about the pad: that range is advised.
	 */
	free_bytes = mallinfo2().fordblks;
	before = sbrk(0);
	if (before == (void *)-1 || free_bytes >= pad)
		return NULL;
	mallopt(M_TOP_PAD, (int)pad);
	mallopt(M_MMAP_MAX, 0); /* from the heap, however large */
	p = malloc(free_bytes + 1);
	mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX);
	after = sbrk(0);
	if (after >= before + pad) {
		(void)madvise(before, (size_t)(after - before), MADV_HUGEPAGE);
	} else { /* no heap to grow (ASan, no memory): as before, without huge pages */
		mallopt(M_TOP_PAD, (int)GLIBC_DEFAULT_PAD);
		before = NULL;
	}
	free(p);
	return before;
#else
	(void)mem_cache;
	return NULL;
#endif
}

/* The heap daemon_heap_grow advised, for the idle release. */
struct daemon_heap {
	uint64_t mem_cache;
	uint8_t *advised; /* start of the advised range; NULL: none (atomic) */
};

/*
 * After an idle release dropped the decoded chunks (idle.h): gives the heap's
 * free memory back to the kernel, all of it (malloc_trim's pad 0, not the
 * M_TOP_PAD daemon_heap_grow set, which glibc's own trims keep). glibc gives
 * back the free pages inside the heap too, and that splits its huge pages:
 * what stays in use is a few 4 KiB pages per 2 MiB. Advised for huge pages,
 * khugepaged would collapse those ranges into huge pages again (it takes a
 * range with a single page present: max_ptes_none 511), and did: 13 -> 66 MiB
 * within 45 s of a release. So the heap is advised NOHUGEPAGE while idle, and
 * daemon_heap_wake advises it again at the first work.
 * Runs in the stats thread, concurrently with requests: malloc_trim holds
 * malloc's lock, and advice changes no byte of a range in use.
 */
static void daemon_heap_trim(void *ud)
{
#ifdef __GLIBC__
	struct daemon_heap *h = ud;
	uint8_t *start = __atomic_load_n(&h->advised, __ATOMIC_ACQUIRE), *end;

	malloc_trim(0);
	end = sbrk(0);
	if (start && end != (void *)-1 && end > start)
		(void)madvise(start, (size_t)(end - start), MADV_NOHUGEPAGE);
#else
	(void)ud;
#endif
}

/*
 * Work again after a release: the heap on huge pages again as at the start,
 * the range trimmed and what it grows by (a new mapping: brk space the kernel
 * adds has no advice). Growing reserves address space only.
 */
static void daemon_heap_wake(void *ud)
{
#ifdef __GLIBC__
	struct daemon_heap *h = ud;
	uint8_t *start = __atomic_load_n(&h->advised, __ATOMIC_ACQUIRE), *end = sbrk(0), *grown;

	if (start && end != (void *)-1 && end > start)
		(void)madvise(start, (size_t)(end - start), MADV_HUGEPAGE);
	grown = daemon_heap_grow(h->mem_cache);
	if (!start)
		__atomic_store_n(&h->advised, grown, __ATOMIC_RELEASE);
#else
	(void)ud;
#endif
}

/* Opens, mounts and serves until unmounted. Returns the exit code. */
static int run_daemon(struct mount_opts *o, struct daemon_ctx *d)
{
	struct slimfs_image *img = NULL;
	struct slimfs_diskcache *dc = NULL;
	struct slimfs_cache *cache = NULL;
	struct fuse_session *se = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct slimfs_cache_opts co;
	struct slimfs_fs fs;
	struct slimfs_trace *trace = NULL;
	struct slimfs_prefetch *pf = NULL;
	struct slimfs_notify *notify = NULL;
	struct slimfs_watchdog *wd = NULL;
	struct slimfs_idle *idle = NULL;
	struct daemon_heap heap = {.mem_cache = o->mem_cache};
	_cleanup_free_ uint8_t *profile_ids = NULL; /* read by slimfs_prefetch_start only */
	struct slimfs_stats_src src;
	struct handover_ctx hc = {.o = o, .src = &src, .fs = &fs, .notify = &notify};
	struct slimfs_takeover *tk = NULL;
	struct slimfs_serve *srv = NULL;
	struct slimfs_serve_opts so;
	enum slimfs_serve_end end;
	char ctl_path[PATH_MAX];
	_cleanup_free_ char *trace_path = NULL;
	struct slimfs_prefetch_opts po;
	_cleanup_free_ char *view_name = NULL, *fsname = NULL, *optstr = NULL, *mnt_abs = NULL;
	_cleanup_free_ char *summary = NULL;
	uint64_t start_ns = slimfs_now_ns();
	bool fill_auto, fs_ready = false, use_cache = strcmp(o->cache_dir, "none") != 0;
	uint32_t view;
	int r, ret = 1;

	daemon_heap(o->mem_cache);
	slimfs_backend_preload(o->image); /* remote: libcurl loads meanwhile */
	mnt_abs = realpath(o->mountpoint, NULL);
	if (!mnt_abs) {
		log_error_errno(-errno, "cannot resolve mountpoint '%s'", o->mountpoint);
		goto out;
	}
	r = slimfs_image_open_cached_deferred(o->image, &o->fetch,
					      o->have_digest ? o->digest : NULL,
					      use_cache ? o->cache_dir : NULL, &img);
	if (r < 0) {
		log_error_errno(r, "cannot open image '%s'", o->image);
		goto out;
	}
	/* Before any chunk is read: frames are then hashed once while nobody can
	 * write the file (fetch.h). */
	r = slimfs_backend_lease(img->backend);
	if (r < 0 && r != -EOPNOTSUPP)
		log_debug("no lease on '%s' (%s): every frame read is hashed", o->image,
			  strerror(-r));
	r = select_view(img, o->view, &view, &view_name);
	if (r < 0)
		goto out;

	if (use_cache && (o->cache_explicit || slimfs_backend_local_fd(img->backend) < 0)) {
		r = slimfs_diskcache_open(o->cache_dir, o->cache_size, &dc);
		if (r < 0) {
			if (o->cache_explicit)
				goto out;
			log_warn("continuing without a disk cache");
			dc = NULL;
		}
	}
	co = (struct slimfs_cache_opts){.mem_bytes = o->mem_cache, .disk = dc};
	r = slimfs_cache_new(img, &co, &cache);
	if (r < 0) {
		log_error_errno(r, "cannot create the chunk cache");
		goto out;
	}
	r = slimfs_fs_init(&fs, img, cache, view, view_name);
	if (r < 0)
		goto out;
	fs_ready = true;
	/*
	 * ENOSYS from open/opendir (the kernel skips them and keeps the page and
	 * directory caches) beat keep_cache + cache_readdir replies here, on the
	 * bookworm rootfs (10k entries), warm, min of 5 on a loaded 2-vCPU VM:
	 * tar of the tree 443 vs 1134 ms, cat of every file < 64K 660 vs 905 ms.
	 * op_init turns it off if the kernel lacks the capability.
	 */
	fs.no_open = true;
	fs.kernel_readahead = o->kernel_readahead;
	fs.on_ready = on_ready;
	fs.ready_ud = d;
	src = (struct slimfs_stats_src){.fs = &fs, .mountpoint = mnt_abs, .start_ns = start_ns};

	if (o->trace && o->takeover && access(o->trace, F_OK) == 0) {
		/* The old daemon writes o->trace until it exits: ours goes beside. */
		if (asprintf(&trace_path, "%s.%d", o->trace, (int)getpid()) < 0) {
			trace_path = NULL;
			goto out;
		}
		log_info("tracing to '%s'", trace_path);
	}
	if (o->trace) {
		r = slimfs_trace_open(trace_path ? trace_path : o->trace, img->idx, view_name,
				      o->kernel_readahead, start_ns, &trace);
		if (r < 0)
			goto out;
		fs.trace = trace;
	}
	po = (struct slimfs_prefetch_opts){
		.mode = o->prefetch,
		.has_disk = dc != NULL,
		/* remote: also the workers that fetch ahead of misses (--miss-ahead) */
		.readahead = img->backend->remote || o->readahead != 0,
		.deferred = true, /* started once the mount is live */
	};
	if (o->prefetch_profile) {
		r = slimfs_profile_read_chunks(o->prefetch_profile, &profile_ids, &po.nprofile_ids);
		if (r < 0) {
			log_error_errno(r, "cannot read the profile '%s'", o->prefetch_profile);
			goto out;
		}
		po.profile_ids = profile_ids;
		if (po.mode == SLIMFS_PREFETCH_NONE)
			po.mode = SLIMFS_PREFETCH_PROFILE;
	}
	r = slimfs_prefetch_start(cache, img, &po, &pf);
	if (r < 0)
		goto out;
	fs.prefetch = pf;
	src.prefetch = pf;
	if (o->readahead >= 0)
		fs.readahead_bytes = (uint64_t)o->readahead;
	else if (!img->offline)
		fs.readahead_bytes = READAHEAD_BYTES;
	fs.coalesce = !o->no_coalesce;
	if (img->backend->remote && !img->offline)
		fs.miss_ahead_bytes =
			o->miss_ahead >= 0 ? (uint64_t)o->miss_ahead : MISS_AHEAD_BYTES;
	/* Without a profile, the libraries of an ELF file ahead of ld.so (not
	 * while tracing: its reads would join the trace). */
	if (fs.miss_ahead_bytes && fs.coalesce && !o->trace && !slimfs_prefetch_profiled(pf)) {
		r = slimfs_elfahead_enable(&fs);
		if (r < 0)
			goto out;
	}
	if (o->idle_release_ns) {
		struct slimfs_idle_opts io = {.after_ns = o->idle_release_ns,
					      .fs = &fs,
					      .prefetch = pf,
					      .trim = daemon_heap_trim,
					      .wake = daemon_heap_wake,
					      .ud = &heap};

		r = slimfs_idle_new(&io, &idle);
		if (r < 0)
			goto out;
		hc.idle = idle;
		src.idle = idle;
	}
	/* Taking over: once the old daemon (and its socket) is gone. */
	if (!o->takeover && start_stats(&hc, false) < 0)
		goto out;

	fsname = escape_opt(o->image);
	if (!fsname || asprintf(&optstr, "ro%s%s%s%s%s",
				o->has_fsname ? "" : ",fsname=", o->has_fsname ? "" : fsname,
				o->has_subtype ? "" : ",subtype=slimfs", o->fuse_opts ? "," : "",
				o->fuse_opts ? o->fuse_opts : "") < 0) {
		optstr = NULL;
		goto out;
	}
	if (fuse_opt_add_arg(&args, "slimfs") < 0 || fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, optstr) < 0 || (o->debug && fuse_opt_add_arg(&args, "-d") < 0))
		goto out;
	se = fuse_session_new(&args, &slimfs_fuse_ops, sizeof(slimfs_fuse_ops), &fs);
	if (!se) {
		log_error("cannot create the FUSE session (options '%s')", optstr);
		goto out;
	}
	if (fuse_set_signal_handlers(se) < 0)
		goto out_session;
	r = slimfs_ctl_path(mnt_abs, ctl_path, sizeof(ctl_path));
	if (r < 0) {
		log_error_errno(r, "cannot derive the control socket of '%s'", mnt_abs);
		goto out_signals;
	}
	/* Remote: the index may have come without libcurl, still loading (backend_http.c). */
	if (slimfs_backend_wait(img->backend) < 0)
		goto out_signals;
	slimfs_backend_preload_settle(); /* its thread gone before the fork */
	if (o->takeover) {
		char dev[32];
		int fd;

		r = slimfs_takeover_request(ctl_path, slimfs_index_digest(img->idx), &tk, &fd);
		if (r < 0)
			goto out_signals;
		/* libfuse takes /dev/fd/N as mounted already (se has no mountpoint). */
		snprintf(dev, sizeof(dev), "/dev/fd/%d", fd);
		fs.inherit_want = true;
		fs.want = slimfs_takeover_want(tk);
		fs.on_ready = NULL; /* ready once serving, below */
		if (fuse_session_mount(se, dev) < 0) {
			close(fd);
			goto out_takeover;
		}
		if (slimfs_takeover_init(tk, se) < 0)
			goto out_takeover;
		if (fs.want != slimfs_takeover_want(tk))
			log_warn("other capabilities than the old daemon's (0x%x, not 0x%x)",
				 fs.want, slimfs_takeover_want(tk));
	} else if (fuse_session_mount(se, o->mountpoint) < 0) {
		log_error("cannot mount '%s' at '%s'", o->image, o->mountpoint);
		goto out_signals;
	}
	log_debug("mounted '%s' at '%s' (view %s, %s disk cache)", o->image, o->mountpoint,
		  view_name, dc ? "with" : "no");
	if (d->status_fd >= 0 && chdir("/") < 0)
		log_warn_errno(-errno, "cannot chdir to /");

	hc.se = se;
	hc.mnt = mnt_abs;
	/* Workers stay: each keeps its zstd context and buffers for the mount's life. */
	so = (struct slimfs_serve_opts){
		.se = se,
		.threads = o->threads,
		.ctl_path = ctl_path,
		.idx = img->idx,
		.no_handover = o->fuse_opts && strstr(o->fuse_opts, "auto_unmount")
				       ? "the mount has -o auto_unmount: fusermount3 would "
					 "unmount it when this daemon exits"
				       : NULL,
		.want = &fs.want,
		.fs = &fs,
		.info = &o->info,
		.pause = handover_pause,
		.resume = handover_resume,
		.ud = &hc,
	};
	so.first_threads = o->takeover ? 0 : 1;
	so.caller_inits = d->fork_when_live;
	r = slimfs_serve_start(&so, tk, &srv);
	tk = NULL;
	if (r < 0) {
		log_error_errno(r, "cannot start the FUSE workers");
		goto out_unmount;
	}
	if (d->fork_when_live) {
		r = slimfs_serve_init(srv, LIVE_WAIT_S * 1000);
		if (r < 0) {
			log_error_errno(r, "the kernel's INIT of '%s' was not answered", mnt_abs);
			goto out_unmount;
		}
		if (go_background(d) < 0)
			goto out_unmount;
		/* The first requests (a stat of the mountpoint) come at once. */
		r = slimfs_serve_first(srv);
		if (r < 0) {
			log_error_errno(r, "cannot start the FUSE workers");
			goto out_unmount;
		}
	}
	if (o->takeover) {
		log_debug("took over '%s'", mnt_abs);
		if (start_stats(&hc, true) < 0)
			log_warn("continuing without the stats socket");
		on_ready(d);
	}
	if (!o->takeover) /* its parent, `slimfs restart`, asks the ctl socket next */
		wait_live(d);
	if (slimfs_stats_run(hc.stats) < 0) { /* no socket rather than one never answered */
		slimfs_stats_stop(hc.stats);
		hc.stats = NULL;
	}
	/* The stats thread (idle release) may run already (a takeover): atomic. */
	__atomic_store_n(&heap.advised, daemon_heap_grow(o->mem_cache), __ATOMIC_RELEASE);
	/* The filler first: the first reads may come at once. */
	fill_auto = o->fill == SLIMFS_FILL_AUTO;
	if (fill_auto) /* a trace must see every read */
		o->fill = o->trace ? SLIMFS_FILL_OFF : SLIMFS_FILL_CHUNK;
	if (o->fill != SLIMFS_FILL_OFF) {
		/* A background daemon's stderr is its parent's pipe, then /dev/null
		 * (on_ready): it logs to syslog, and so does its watchdog. */
		r = slimfs_watchdog_start(mnt_abs, d->status_fd >= 0 || d->background, &wd);
		if (r < 0 && fill_auto) {
			log_debug("no page cache filler without a connection watchdog (%s)",
				  strerror(-r));
			o->fill = SLIMFS_FILL_OFF;
		} else if (r < 0) {
			log_warn_errno(r,
				       "no connection watchdog: if this daemon is killed while it "
				       "fills the page cache, readers may wait until the mount is "
				       "aborted (umount -f)");
		}
	}
	if (o->fill != SLIMFS_FILL_OFF) {
		r = slimfs_notify_start(&fs, se, o->fill, mnt_abs, &notify);
		if (r < 0)
			log_warn_errno(r, "continuing without the page cache filler");
		__atomic_store_n(&fs.notify, notify, __ATOMIC_RELEASE); /* stats reads it */
	}
	r = slimfs_serve_more(srv);
	if (r < 0)
		log_warn_errno(r, "not all FUSE workers started");
	/* Threads start here, not before the mount: a daemon in the background
	 * forked once live, and a thread does not cross a fork. */
	if (slimfs_prefetch_run(pf) < 0)
		log_warn("no prefetch or read-ahead workers");
	if (trace && (r = slimfs_trace_run(trace)) < 0)
		log_warn_errno(r, "no trace flusher: the trace is written when its buffer fills");
	slimfs_diskcache_scan(dc);
	/* After the prefetch's start: the next mount offline finds the index. */
	slimfs_image_store_index(img, use_cache ? o->cache_dir : NULL);
	end = slimfs_serve_run(srv);
	/* The page cache filler stops first: see slimfs_notify_stop. */
	if (slimfs_notify_stop(notify) < 0)
		_exit(1); /* stuck in the kernel, using se and the cache */
	/* Nothing can hang in the kernel now: let it exit while we clean up
	 * (waiting for it at once cost the unmount 4-8 ms). */
	slimfs_watchdog_dismiss(wd);
	ret = end == SLIMFS_SERVE_FAILED;
	if (end == SLIMFS_SERVE_HANDED_OVER) {
		/* The connection lives on, served by the new daemon (and its watchdog). */
		slimfs_watchdog_stop(wd);
		wd = NULL;
		/* The mount is the new daemon's: fuse_session_unmount only frees. */
		if (slimfs_takeover_detach(se) == 0)
			goto out_unmount;
		goto out_signals;
	}
	summary = slimfs_stats_summary(&src);
	if (summary)
		log_info("%s", summary);
	if (o->takeover) /* no mountpoint in se: libfuse would not unmount */
		slimfs_takeover_unmount(mnt_abs, fuse_session_fd(se));
out_unmount:
	fuse_session_unmount(se);
	goto out_signals;
out_takeover:
	slimfs_takeover_abort(tk); /* the old daemon serves on */
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	/* A failure may come before the open waited for libcurl's preload, and
	 * returning means exit(): see slimfs_backend_preload_settle. */
	slimfs_backend_preload_settle();
	fuse_opt_free_args(&args);
	slimfs_stats_stop(hc.stats);
	slimfs_idle_free(idle); /* the stats thread called it */
	slimfs_notify_free(notify);
	slimfs_notify_free(hc.stopped);
	/* After the unmount: it finds no connection of ours to abort any more. */
	slimfs_watchdog_stop(wd);
	slimfs_prefetch_stop(pf);
	if (slimfs_trace_close(trace) < 0) {
		log_error("cannot write the trace '%s'", o->trace);
		ret = 1;
	}
	if (fs_ready)
		slimfs_fs_fini(&fs);
	slimfs_cache_free(cache);
	slimfs_diskcache_free(dc);
	slimfs_image_close(img);
	/* Last: a new daemon waits for this connection to close. */
	slimfs_serve_free(srv);
	return ret;
}

/* Parent side of background mode: wait for READY or the child's error text. */
static int wait_child(pid_t pid, int rfd)
{
	char buf[4096];
	_cleanup_free_ char *all = NULL;
	size_t len = 0, mark = strlen(READY_MARK);
	int status;

	for (;;) {
		ssize_t n = read(rfd, buf, sizeof(buf));
		char *na;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		na = realloc(all, len + (size_t)n + 1);
		if (!na)
			break;
		all = na;
		memcpy(all + len, buf, (size_t)n);
		len += (size_t)n;
		all[len] = '\0';
	}
	close(rfd);
	if (len >= mark && memcmp(all + len - mark, READY_MARK, mark) == 0) {
		fwrite(all, 1, len - mark, stderr); /* warnings on the way */
		return 0;
	}
	if (len)
		fwrite(all, 1, len, stderr);
	if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status))
		log_error("mount daemon killed by signal %d", WTERMSIG(status));
	else if (!len)
		log_error("mount daemon exited before the mount was live");
	return 1;
}

static int do_mount(struct mount_opts *o)
{
	struct daemon_ctx d = {.ready_fd = o->ready_fd, .status_fd = -1, .parent = getpid()};
	int p[2], null;
	pid_t pid;

	if (check_mountpoint(o->mountpoint) < 0)
		return 1;
	if (sem_init(&d.live, 0, 0) < 0)
		return 1;
	if (o->foreground)
		return run_daemon(o, &d);
	if (!o->takeover) {
		d.fork_when_live = true;
		return run_daemon(o, &d);
	}

	/* Taking over: its caller, `slimfs restart`, goes on once the child serves. */
	if (pipe2(p, O_CLOEXEC) < 0) {
		log_error_errno(-errno, "cannot create a pipe");
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		log_error_errno(-errno, "cannot fork");
		return 1;
	}
	if (pid > 0) {
		close(p[1]);
		return wait_child(pid, p[0]);
	}
	/* The daemon: its own session, errors to the parent until live. */
	close(p[0]);
	setsid();
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close(null);
	}
	dup2(p[1], STDERR_FILENO);
	d.status_fd = p[1];
	d.background = true;
	_exit(run_daemon(o, &d));
}

static void opts_init(struct mount_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cache_dir = DEFAULT_CACHE_DIR;
	o->cache_size = DEFAULT_CACHE_SIZE;
	o->mem_cache = DEFAULT_MEM_CACHE;
	o->threads = DEFAULT_THREADS;
	o->ready_fd = -1;
	o->prefetch = SLIMFS_PREFETCH_PROFILE;
	o->readahead = -1;
	o->kernel_readahead = -1;
	o->miss_ahead = -1;
	/* chunk when a connection watchdog can run (watchdog.h says why it must),
	 * off when not (no fusectl, not root) or with --trace */
	o->fill = SLIMFS_FILL_AUTO;
	o->fetch.timeout_ms = DEFAULT_TIMEOUT_S * 1000u;
	o->idle_release_ns = DEFAULT_IDLE_RELEASE_NS;
}

static void opts_free(struct mount_opts *o)
{
	free(o->fuse_opts);
	free(o->view_buf);
	free(o->cache_buf);
	free(o->creds_buf);
	free(o->trace_buf);
	free(o->pprofile_buf);
	free(o->stats_buf);
	free(o->cwd_buf);
}

static void apply_verbosity(struct mount_opts *o)
{
	if (o->verbosity < 0)
		slimfs_log_set_level(SLIMFS_LOG_ERROR);
	else if (o->verbosity > 0)
		slimfs_log_set_level(SLIMFS_LOG_DEBUG);
	fuse_set_log_func(fuse_log_cb);
}

/*
 * The daemon describes itself for `slimfs restart` (args: after the command
 * name); restart != NULL: we are that restart, with the old daemon's options.
 */
static int set_info(struct mount_opts *o, bool helper, int argc, char **argv,
		    const struct slimfs_daemon_info *restart)
{
	if (restart) {
		o->info = *restart;
		o->takeover = true;
		o->foreground = o->debug = false; /* in the background, whatever the old did */
		o->ready_fd = -1;		  /* the old daemon's */
		return 0;
	}
	o->cwd_buf = getcwd(NULL, 0);
	if (!o->cwd_buf)
		return log_error_errno(-errno, "cannot get the working directory");
	o->info = (struct slimfs_daemon_info){
		.cwd = o->cwd_buf, .helper = helper, .argc = argc, .argv = argv};
	return 0;
}

static int mount_main(int argc, char **argv, const struct slimfs_daemon_info *restart)
{
	enum {
		OPT_VIEW = 0x100,
		OPT_CACHE,
		OPT_CACHE_SIZE,
		OPT_MEM_CACHE,
		OPT_THREADS,
		OPT_DIGEST,
		OPT_READY_FD,
		OPT_TAKEOVER,
		OPT_DEBUG,
		OPT_INSECURE,
		OPT_CACERT,
		OPT_CREDS,
		OPT_TIMEOUT,
		OPT_RETRIES,
		OPT_RATE,
		OPT_RTT,
		OPT_PREFETCH,
		OPT_TRACE,
		OPT_PREFETCH_PROFILE,
		OPT_STATS_SOCKET,
		OPT_READAHEAD,
		OPT_MISS_AHEAD,
		OPT_PAGE_CACHE_FILL,
		OPT_KERNEL_READAHEAD,
		OPT_IDLE_RELEASE,
	};
	static const struct option longopts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"view", required_argument, NULL, OPT_VIEW},
		{"cache", required_argument, NULL, OPT_CACHE},
		{"cache-size", required_argument, NULL, OPT_CACHE_SIZE},
		{"mem-cache", required_argument, NULL, OPT_MEM_CACHE},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"digest", required_argument, NULL, OPT_DIGEST},
		{"ready-fd", required_argument, NULL, OPT_READY_FD},
		{"takeover", no_argument, NULL, OPT_TAKEOVER},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"debug", no_argument, NULL, OPT_DEBUG},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"cacert", required_argument, NULL, OPT_CACERT},
		{"creds", required_argument, NULL, OPT_CREDS},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"retries", required_argument, NULL, OPT_RETRIES},
		{"rate", required_argument, NULL, OPT_RATE},
		{"rtt", required_argument, NULL, OPT_RTT},
		{"prefetch", required_argument, NULL, OPT_PREFETCH},
		{"trace", required_argument, NULL, OPT_TRACE},
		{"prefetch-profile", required_argument, NULL, OPT_PREFETCH_PROFILE},
		{"stats-socket", required_argument, NULL, OPT_STATS_SOCKET},
		{"readahead", required_argument, NULL, OPT_READAHEAD},
		{"miss-ahead", required_argument, NULL, OPT_MISS_AHEAD},
		{"page-cache-fill", required_argument, NULL, OPT_PAGE_CACHE_FILL},
		{"kernel-readahead", required_argument, NULL, OPT_KERNEL_READAHEAD},
		{"idle-release", required_argument, NULL, OPT_IDLE_RELEASE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct mount_opts o;
	unsigned fd;
	int c, ret;

	opts_init(&o);
	optind = 1;
	while ((c = getopt_long(argc, argv, "fo:vqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o.foreground = true;
			break;
		case 'o':
			if (apply_o(&o, optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_VIEW:
			o.view = optarg;
			break;
		case OPT_CACHE:
			o.cache_dir = optarg;
			o.cache_explicit = true;
			break;
		case OPT_CACHE_SIZE:
			if (parse_size_opt("--cache-size", optarg, &o.cache_size) < 0)
				return EXIT_USAGE;
			break;
		case OPT_MEM_CACHE:
			if (parse_size_opt("--mem-cache", optarg, &o.mem_cache) < 0)
				return EXIT_USAGE;
			break;
		case OPT_THREADS:
			if (parse_uint_opt("--threads", optarg, 1, 1024, &o.threads) < 0)
				return EXIT_USAGE;
			break;
		case OPT_DIGEST:
			if (slimfs_parse_digest(optarg, o.digest) < 0) {
				log_error("--digest: '%s' is not sha256:<64 hex digits>", optarg);
				return EXIT_USAGE;
			}
			o.have_digest = true;
			break;
		case OPT_TAKEOVER:
			o.takeover = true;
			break;
		case OPT_READY_FD:
			if (parse_uint_opt("--ready-fd", optarg, 0, INT_MAX, &fd) < 0)
				return EXIT_USAGE;
			o.ready_fd = (int)fd;
			break;
		case 'v':
			o.verbosity++;
			break;
		case 'q':
			o.verbosity = -1;
			break;
		case OPT_DEBUG:
			o.debug = true;
			o.foreground = true;
			o.verbosity = 2; /* libfuse's request trace comes at debug level */
			break;
		case OPT_CACERT:
			if (slimfs_parse_fetch_opt("--cacert", "cacert", optarg, &o.fetch) < 0)
				return EXIT_USAGE;
			break;
		case OPT_INSECURE:
			o.fetch.insecure = true;
			break;
		case OPT_CREDS:
			o.fetch.creds = optarg;
			break;
		case OPT_TIMEOUT:
		case OPT_RETRIES:
		case OPT_RATE:
		case OPT_RTT: {
			const char *key = c == OPT_TIMEOUT   ? "timeout"
					  : c == OPT_RETRIES ? "retries"
					  : c == OPT_RATE    ? "rate"
							     : "rtt";
			char what[16];

			snprintf(what, sizeof(what), "--%s", key);
			if (slimfs_parse_fetch_opt(what, key, optarg, &o.fetch) < 0)
				return EXIT_USAGE;
			break;
		}
		case OPT_PREFETCH:
			if (parse_prefetch("--prefetch", optarg, &o.prefetch) < 0)
				return EXIT_USAGE;
			break;
		case OPT_TRACE:
			o.trace = optarg;
			break;
		case OPT_PREFETCH_PROFILE:
			o.prefetch_profile = optarg;
			break;
		case OPT_STATS_SOCKET:
			o.stats_socket = optarg;
			break;
		case OPT_READAHEAD:
			if (parse_capped_size("--readahead", optarg, 1ull << 30, &o.readahead) < 0)
				return EXIT_USAGE;
			break;
		case OPT_MISS_AHEAD:
			if (parse_capped_size("--miss-ahead", optarg, 1ull << 30, &o.miss_ahead) <
			    0)
				return EXIT_USAGE;
			break;
		case OPT_PAGE_CACHE_FILL:
			if (parse_fill("--page-cache-fill", optarg, &o.fill) < 0)
				return EXIT_USAGE;
			break;
		case OPT_IDLE_RELEASE:
			if (parse_idle_release("--idle-release", optarg, &o.idle_release_ns) < 0)
				return EXIT_USAGE;
			break;
		case OPT_KERNEL_READAHEAD:
			if (parse_capped_size("--kernel-readahead", optarg, UINT32_MAX,
					      &o.kernel_readahead) < 0)
				return EXIT_USAGE;
			break;
		case 'h':
			mount_usage(stdout);
			return 0;
		default:
			mount_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		mount_usage(stderr);
		return EXIT_USAGE;
	}
	o.image = argv[optind];
	o.mountpoint = argv[optind + 1];
	apply_verbosity(&o);
	ret = set_info(&o, false, argc - 1, argv + 1, restart) < 0 ? 1 : do_mount(&o);
	opts_free(&o);
	return ret;
}

int cmd_mount(int argc, char **argv)
{
	return mount_main(argc, argv, NULL);
}

static int helper_main(int argc, char **argv, const struct slimfs_daemon_info *restart)
{
	struct mount_opts o;
	int i, npos = 0, ret;
	bool fake = false;

	opts_init(&o);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			if (apply_o(&o, argv[++i]) < 0)
				return EXIT_USAGE;
		} else if (strncmp(a, "-o", 2) == 0 && a[2]) {
			if (apply_o(&o, a + 2) < 0)
				return EXIT_USAGE;
		} else if (strcmp(a, "-t") == 0 && i + 1 < argc) {
			i++; /* the type: we know it */
		} else if (strcmp(a, "-f") == 0) {
			fake = true; /* mount(8) -f: do everything but mount */
		} else if (strcmp(a, "-v") == 0) {
			o.verbosity++;
		} else if (strcmp(a, "-n") == 0 || strcmp(a, "-s") == 0) {
			/* no mtab; sloppy: nothing to do */
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			mount_usage(stdout);
			return 0;
		} else if (a[0] == '-' && a[1]) {
			log_error("mount helper: unknown option '%s'", a);
			return EXIT_USAGE;
		} else if (npos == 0) {
			o.image = a;
			npos++;
		} else if (npos == 1) {
			o.mountpoint = a;
			npos++;
		} else {
			log_error("mount helper: unexpected argument '%s'", a);
			return EXIT_USAGE;
		}
	}
	if (npos != 2) {
		fprintf(stderr, "usage: mount.slimfs IMAGE DIR [-o OPTS]\n");
		return EXIT_USAGE;
	}
	apply_verbosity(&o);
	if (fake)
		return 0;
	ret = set_info(&o, true, argc - 1, argv + 1, restart) < 0 ? 1 : do_mount(&o);
	opts_free(&o);
	return ret;
}

int cmd_mount_helper(int argc, char **argv)
{
	return helper_main(argc, argv, NULL);
}

static void restart_usage(FILE *f)
{
	fprintf(f, "usage: slimfs restart [options] MOUNTPOINT\n"
		   "\n"
		   "Replaces the daemon of the slimfs mount at MOUNTPOINT with a new one, started\n"
		   "from the slimfs binary on disk now (an upgrade), with the running daemon's\n"
		   "image and options, without unmounting: readers do not notice. The old daemon\n"
		   "hands the live FUSE connection over and exits 0. Returns 0 once the new\n"
		   "daemon serves, and prints 'MOUNTPOINT: pid OLD -> NEW'. On any failure (the\n"
		   "image cannot be opened, its index is not the mounted one, ...) the old daemon\n"
		   "serves on and the command fails with the reason. The new daemon runs in the\n"
		   "background, even if the old one ran with -f. Not for mounts with -o\n"
		   "auto_unmount. Root or the mount's owner only. Other options: 'slimfs mount\n"
		   "--takeover [options] IMAGE MOUNTPOINT'.\n"
		   "\n"
		   "options:\n"
		   "  -v, --verbose           log more (repeat for debug)\n"
		   "  -h, --help              this help\n");
}

int cmd_restart(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "vh", .longopts = longopts, .usage = restart_usage};
	struct slimfs_daemon_info info, now;
	_cleanup_free_ char *buf = NULL, *buf2 = NULL;
	_cleanup_free_ char **args = NULL, **args2 = NULL, **av = NULL;
	char ctl[PATH_MAX];
	const char *mnt;
	int c, r, old_pid, new_pid;

	optind = 1;
	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
		return EXIT_USAGE;
	mnt = argv[optind];
	r = slimfs_is_fuse(mnt);
	if (r < 0) {
		log_error_errno(r, "cannot access '%s'", mnt);
		return 1;
	}
	if (r == 0) {
		log_error("'%s' is not a FUSE mount, so not a slimfs mount", mnt);
		return 1;
	}
	r = slimfs_ctl_path(mnt, ctl, sizeof(ctl));
	if (r < 0) {
		log_error_errno(r, "cannot derive the control socket of '%s'", mnt);
		return 1;
	}
	if (access(ctl, F_OK) < 0) {
		log_error("no slimfs daemon serves '%s' (no control socket '%s')", mnt, ctl);
		return 1;
	}
	if (slimfs_daemon_query(ctl, &info, &args, &buf, &old_pid) < 0)
		return 1;
	av = calloc((size_t)info.argc + 2, sizeof(*av));
	if (!av)
		return 1;
	av[0] = (char *)(info.helper ? "mount.slimfs" : "mount");
	memcpy(av + 1, info.argv, (size_t)info.argc * sizeof(*av));
	if (chdir(info.cwd) < 0) {
		log_error_errno(-errno, "cannot enter the daemon's directory '%s'", info.cwd);
		return 1;
	}
	log_debug("restarting pid %d: %s", old_pid, info.helper ? "mount.slimfs" : "slimfs mount");
	r = info.helper ? helper_main(info.argc + 1, av, &info)
			: mount_main(info.argc + 1, av, &info);
	if (r != 0)
		return r;
	if (slimfs_daemon_query(ctl, &now, &args2, &buf2, &new_pid) < 0)
		return 1;
	printf("%s: pid %d -> %d\n", mnt, old_pid, new_pid);
	return 0;
}
