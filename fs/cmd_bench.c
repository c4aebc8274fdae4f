// SPDX-License-Identifier: MIT
/*
 * slimfs bench: how long a command takes to get going from an image, cold,
 * in several ways of getting the image's bytes: lazily (on demand), with a
 * profile prefetched, from the minimal view with a profile, and pulled whole
 * before running (the baseline a registry pull gives).
 *
 * Each run starts from nothing local: a fresh empty disk cache directory of
 * its own, a fresh daemon (no memory cache carried over), the page cache
 * dropped. The daemon is 'slimfs mount -f --ready-fd' of this very binary;
 * the command runs chrooted into the mount in private mount and PID
 * namespaces (so that nothing it starts survives the run), or under runc.
 * Counters come from 'slimfs stats --json' taken just before unmounting, or
 * from the daemon's summary line when stats is not available.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <regex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "cmds.h"
#include "image.h"
#include "slimfs/util.h"

#define SELF_EXE	   "/proc/self/exe"
#define DEFAULT_RUNS	   5u
#define DEFAULT_TIMEOUT_NS (600ull * 1000000000ull)
#define STOP_GRACE_NS	   (5ull * 1000000000ull)
#define UNMOUNT_WAIT_NS	   (30ull * 1000000000ull)
#define LINE_MAX_BYTES	   65536u
#define SPREAD_WARN	   1.2 /* max/min of the times of one mode */
#define DEFAULT_PATH	   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum mode { MODE_LAZY, MODE_PROFILE, MODE_MINIMAL, MODE_FULL, MODE_COUNT };
static const char *const mode_names[MODE_COUNT] = {"lazy", "profile", "minimal", "full"};
static const char *const mode_colors[MODE_COUNT] = {"#4e79a7", "#59a14f", "#f28e2b", "#e15759"};

/* Set by SIGINT/SIGTERM/SIGHUP: every wait loop gives up, the run is cleaned up. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- growable argv ---- */

struct strv {
	char **v; /* NULL-terminated; owned strings */
	size_t n, cap;
};

static int strv_push(struct strv *s, const char *str)
{
	if (SLIMFS_GROW(s->v, s->cap, s->n + 2, 16) < 0)
		return -ENOMEM;
	s->v[s->n] = strdup(str);
	if (!s->v[s->n])
		return -ENOMEM;
	s->v[++s->n] = NULL;
	return 0;
}

static int strv_pushf(struct strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int strv_pushf(struct strv *s, const char *fmt, ...)
{
	_cleanup_free_ char *str = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&str, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return strv_push(s, str);
}

/* Appends every argument up to a NULL. */
static int strv_add(struct strv *s, ...)
{
	const char *str;
	va_list ap;
	int r = 0;

	va_start(ap, s);
	while (!r && (str = va_arg(ap, const char *)))
		r = strv_push(s, str);
	va_end(ap);
	return r;
}

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct strv){0};
}

/* ---- options and results ---- */

struct bench_opts {
	const char *image;
	char **cmd; /* borrowed from argv, NULL-terminated */
	unsigned runs;
	bool modes[MODE_COUNT];
	bool record, json, markdown, keep, show_output, runc;
	const char *chart, *ready, *rate, *rtt, *profile, *profile_out, *view, *minimal_view,
		*workdir;
	uint64_t rate_bps, rtt_ns, timeout_ns;
	struct strv mount_args; /* --mount-arg, passed to every mount */
	int verbosity;
};

/* What this slimfs binary's sub-commands offer (they are being extended). */
struct caps {
	bool rate, rtt, prefetch, prefetch_profile, trace, cache_size;
	bool pull, pull_json, pull_rate, pull_cache_size, stats, profile;
};

/* -1: unknown */
struct counters {
	int64_t bytes, requests, chunks_fetched, chunks_verified, hits, misses;
	double lat_p50_ms, lat_p99_ms; /* < 0: unknown */
};

struct run_result {
	bool done;	      /* mounted and ran CMD (whatever its exit) */
	int exit_code;	      /* CMD: exit code, 128 + signal, -1 unknown */
	bool ready_matched;   /* --ready: a line matched */
	bool stopped;	      /* stopped by bench (ready line or timeout) */
	bool timed_out;	      /* --timeout passed */
	bool cache_was_empty; /* the fresh cache dir was empty at the start */
	double total_s;	      /* pull + mount + CMD until exit or ready line */
	double pull_s, mount_s, cmd_s;
	int daemon_status; /* exit code of the daemon, -1 unknown */
	struct counters c;
	const char *source; /* where the counters came from */
	json_t *stats;	    /* owned: the stats object as the daemon gave it */
	json_t *pull_stats; /* owned */
	char *error;	    /* owned: why the run did not complete */
	char *dir;	    /* owned: the run's scratch dir */
};

struct bench {
	struct bench_opts *o;
	struct caps caps;
	char *work;	    /* owned: scratch dir */
	char *profile_path; /* owned: what --prefetch-profile gets, or NULL */
	bool use_stored_profile;
	uint64_t image_size, data_size, chunk_count, prefetch_count;
	char digest[72];
	bool has_minimal_view;
	char **env;	   /* owned: the CMD's environment */
	char *cwd;	   /* owned */
	json_t *runc_tmpl; /* owned: config.json for runc runs */
	regex_t ready_re;
	bool ready_compiled;
	bool dropped_warned, can_drop;
	json_t *warnings;		    /* owned: array of strings */
	struct run_result record;	    /* the traced run of --record */
	struct run_result *res[MODE_COUNT]; /* owned: o->runs each */
};

static void bench_usage(FILE *f)
{
	fprintf(f, "usage: slimfs bench [options] IMAGE|URL -- CMD [ARGS...]\n"
		   "\n"
		   "Measures how long CMD takes to get going from IMAGE, cold, in several modes,\n"
		   "and what each mode fetched. Each run starts from nothing local: a fresh\n"
		   "empty disk cache directory, a fresh 'slimfs mount' daemon (no memory cache\n"
		   "carried over), the page cache dropped (root only). CMD runs chrooted into the\n"
		   "mount (the image's Env, or a default PATH; its WorkingDir, or /) in private\n"
		   "mount and PID namespaces with /dev, /proc and a tmpfs /tmp mounted where the\n"
		   "view has those directories; nothing it starts outlives the run. The clock\n"
		   "runs from the start of the run (pull, mount) until CMD exits, or with\n"
		   "--ready until a line of its output matches; CMD is then stopped (SIGTERM,\n"
		   "SIGKILL after 5 s). Needs root (FUSE, chroot, namespaces).\n"
		   "\n");
	fprintf(f,
		"modes:\n"
		"  lazy      on-demand fetching only (mount --prefetch none)\n"
		"  profile   the profile prefetched (mount --prefetch-profile FILE with\n"
		"            --record or --profile, else the image's stored profile:\n"
		"            mount --prefetch profile; 'build --profile' stores one)\n"
		"  minimal   as profile, from the minimal view (mount --view minimal)\n"
		"  full      the baseline: 'slimfs pull' of the whole image into the run's\n"
		"            cache, then mount from it and run; time = pull + mount + run\n"
		"\n"
		"options:\n"
		"  -n, --runs N            runs per mode (default %u); modes take turns\n",
		DEFAULT_RUNS);
	fprintf(f,
		"  -m, --modes LIST        comma-separated modes (default\n"
		"                          lazy,profile,minimal,full)\n"
		"      --record            first a traced lazy run (mount --trace, not counted),\n"
		"                          turned into a profile (slimfs profile) that the\n"
		"                          profile and minimal modes prefetch\n"
		"      --profile-out FILE  with --record: also write the profile to FILE\n"
		"                          (for 'build --profile' or '--view NAME=FILE')\n"
		"      --profile FILE      prefetch this profile file (slimfs profile -o) in the\n"
		"                          profile and minimal modes\n"
		"      --ready REGEX       stop the clock at the first line of CMD's stdout or\n"
		"                          stderr that matches REGEX (POSIX extended), then\n"
		"                          stop CMD; a run whose CMD exits first is a failure\n"
		"      --rate RATE         emulated bandwidth for mount and pull, e.g. 100mbit,\n"
		"                          12.5MB/s (inside slimfs, any backend, no root)\n"
		"      --rtt TIME          emulated delay per request, e.g. 20ms\n"
		"      --runtime NAME      chroot (default) or runc: an OCI container whose\n"
		"                          config.json comes from 'slimfs bundle' (the image's\n"
		"                          Env, WorkingDir, User) and whose root is the mount\n"
		"      --view NAME         view of the lazy, profile and full modes\n"
		"                          (default full)\n"
		"      --minimal-view NAME view of the minimal mode (default minimal)\n"
		"      --timeout TIME      limit on each step of a run: pull, mount, CMD\n"
		"                          (default 10m; 0: none); CMD is stopped then\n"
		"      --mount-arg ARG     pass ARG to every 'slimfs mount' (repeatable),\n"
		"                          e.g. --mount-arg=--threads=4\n");
	fprintf(f,
		"      --json              one JSON object on standard output: image, size,\n"
		"                          options, per-mode runs and summaries, warnings\n"
		"      --markdown          the table as Markdown on standard output\n"
		"      --chart FILE        draw the comparison as SVG: median time to ready\n"
		"                          with min-max whiskers, and bytes fetched, per mode\n"
		"      --workdir DIR       where the scratch directory (slimfs-bench.XXXXXX) is\n"
		"                          made (default $TMPDIR or /var/tmp): caches, logs,\n"
		"                          traces, the profile; removed at the end\n"
		"      --keep              keep the scratch directory (logs: mount.log,\n"
		"                          output.log, pull.log of each run)\n"
		"      --show-output       copy CMD's output to standard error\n"
		"  -q, --quiet             print errors and warnings only\n"
		"  -v, --verbose           print more\n"
		"  -h, --help              this help\n"
		"\n"
		"Reported per mode: time to ready (median, min, max), time to mount and to\n"
		"pull, bytes and range requests fetched, chunks fetched and verified, the\n"
		"share of the image fetched. Warnings: times of a mode vary by more than 20%%,\n"
		"CMD failed in a run, a cache was not empty at the start, the page cache\n"
		"could not be dropped.\n"
		"\n"
		"Exit status: 0 every run completed, 1 a failure (a run could not mount,\n"
		"CMD failed or never printed the --ready line), 2 usage error.\n");
}

static void warnf(struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(struct bench *b, const char *fmt, ...)
{
	_cleanup_free_ char *msg = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	log_warn("%s", msg);
	json_array_append_new(b->warnings, json_string(msg));
}

static double ns_to_s(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* ---- processes ---- */

/* Child side: puts fds[i] on fd i (-1: /dev/null for 0-2, closed above), execs. */
static void __attribute__((noreturn))
child_exec(const char *path, char *const argv[], const int fds[4], bool newpg)
{
	int hi[4];
	sigset_t all;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (newpg)
		setpgid(0, 0);
	/* Move everything out of the way first so that no dup2 clobbers a source. */
	for (int i = 0; i < 4; i++) {
		int fd = fds[i];

		if (fd < 0 && i < 3)
			fd = open("/dev/null", i ? O_WRONLY : O_RDONLY);
		hi[i] = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 10) : -1;
	}
	for (int i = 0; i < 4; i++) {
		if (hi[i] >= 0)
			dup2(hi[i], i);
		else if (i == 3)
			close(3);
	}
	if (strchr(path, '/'))
		execv(path, argv);
	else
		execvp(path, argv);
	dprintf(2, "slimfs bench: cannot run '%s': %s\n", path, strerror(errno));
	_exit(127);
}

static int spawn(const char *path, char *const argv[], const int fds[4], bool newpg, pid_t *pid)
{
	pid_t p = fork();

	if (p < 0)
		return log_error_errno(-errno, "cannot fork");
	if (p == 0)
		child_exec(path, argv, fds, newpg);
	if (newpg)
		setpgid(p, p);
	*pid = p;
	return 0;
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}

/* Waits for pid until deadline (0: forever). 1 exited (*status set), 0 deadline,
 * -errno. Not cut short by ^C: cleanup uses it, and every caller has a deadline. */
static int wait_until(pid_t pid, uint64_t deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (deadline && slimfs_now_ns() >= deadline)
			return 0;
		nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
}

/* Exit code of a wait status: the code, or 128 + signal. */
static int status_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Kills pid (and its group) with SIGTERM, then SIGKILL after the grace time. */
static void stop_pid(pid_t pid, uint64_t grace_ns, int *status)
{
	int st = 0;

	kill(pid, SIGTERM);
	if (wait_until(pid, slimfs_now_ns() + grace_ns, &st) != 1) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	if (status)
		*status = st;
}

/*
 * Runs argv (SELF_EXE when self), stdout into *out (NUL-terminated; may be
 * NULL to drop it), stderr to err_fd (-1: /dev/null). Returns the exit code
 * (>= 0) or -errno. Gives up after timeout_ns (0: none).
 */
static int run_capture(const char *path, char *const argv[], char **out, int err_fd,
		       uint64_t timeout_ns, bool interruptible)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	int p[2], st = 0, r;
	uint64_t deadline = timeout_ns ? slimfs_now_ns() + timeout_ns : 0;
	pid_t pid = -1;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	r = spawn(path, argv, (int[4]){-1, p[1], err_fd, -1}, true, &pid);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	for (;;) {
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		int64_t left = deadline ? (int64_t)(deadline - slimfs_now_ns()) : 1000000000;
		ssize_t n;

		if ((interruptible && interrupted) || left <= 0) {
			close(p[0]);
			stop_pid(pid, STOP_GRACE_NS, NULL);
			return left > 0 ? -EINTR : -ETIMEDOUT;
		}
		if (poll(&pfd, 1, (int)MIN(left / 1000000 + 1, 1000)) <= 0)
			continue;
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 65536);

			if (!nb) {
				close(p[0]);
				stop_pid(pid, STOP_GRACE_NS, NULL);
				return -ENOMEM;
			}
			buf = nb;
		}
		n = read(p[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(p[0]);
	r = wait_until(pid, deadline, &st);
	if (r != 1) {
		stop_pid(pid, STOP_GRACE_NS, NULL);
		return r < 0 ? r : -ETIMEDOUT;
	}
	if (out) {
		if (!buf && !(buf = malloc(1)))
			return -ENOMEM;
		buf[len] = '\0';
		*out = steal_ptr(&buf);
	}
	return status_code(st);
}

/* Runs "slimfs ARGS..." (NULL-terminated) of this binary quietly, stdout into *out
 * (may be NULL); its exit code or -errno. */
static int run_self(char **out, ...)
{
	struct strv a = {0};
	const char *str;
	va_list ap;
	int r;

	r = strv_push(&a, "slimfs");
	va_start(ap, out);
	while (!r && (str = va_arg(ap, const char *)))
		r = strv_push(&a, str);
	va_end(ap);
	if (r == 0)
		r = run_capture(SELF_EXE, a.v, out, -1, 60ull * 1000000000ull, true);
	strv_free(&a);
	return r;
}

/* Runs a program (looked up in PATH) with the arguments up to a NULL, quietly, and
 * waits at most timeout_ns; its exit code or -errno. */
static int run_quiet(uint64_t timeout_ns, const char *prog, ...)
{
	struct strv a = {0};
	const char *str;
	va_list ap;
	int r;

	r = strv_push(&a, prog);
	va_start(ap, prog);
	while (!r && (str = va_arg(ap, const char *)))
		r = strv_push(&a, str);
	va_end(ap);
	if (r == 0)
		r = run_capture(prog, a.v, NULL, -1, timeout_ns, false);
	strv_free(&a);
	return r;
}

/* ---- what the sub-commands offer ---- */

static bool help_has(const char *help, const char *opt)
{
	size_t n = strlen(opt);

	for (const char *p = help; (p = strstr(p, opt)); p += n)
		if (p[n] == ' ' || p[n] == '=' || p[n] == ',' || p[n] == '\n' || p[n] == '[')
			return true;
	return false;
}

static void detect_caps(struct caps *c)
{
	_cleanup_free_ char *mount = NULL, *pull = NULL;
	if (run_self(&mount, "mount", "--help", NULL) == 0) {
		c->rate = help_has(mount, "--rate");
		c->rtt = help_has(mount, "--rtt");
		c->prefetch = help_has(mount, "--prefetch");
		c->prefetch_profile = help_has(mount, "--prefetch-profile");
		c->trace = help_has(mount, "--trace");
		c->cache_size = help_has(mount, "--cache-size");
	}
	if (run_self(&pull, "pull", "--help", NULL) == 0) {
		c->pull = true;
		c->pull_json = help_has(pull, "--json");
		c->pull_rate = help_has(pull, "--rate");
		c->pull_cache_size = help_has(pull, "--cache-size");
	}
	c->stats = run_self(NULL, "stats", "--help", NULL) == 0;
	c->profile = run_self(NULL, "profile", "--help", NULL) == 0;
	log_debug("capabilities: mount rate=%d rtt=%d prefetch=%d prefetch-profile=%d trace=%d; "
		  "pull=%d (json %d), stats=%d, profile=%d",
		  c->rate, c->rtt, c->prefetch, c->prefetch_profile, c->trace, c->pull,
		  c->pull_json, c->stats, c->profile);
}

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP ? rmdir(path) : unlink(path))
		log_debug("cannot remove '%s': %s", path, strerror(errno));
	return 0;
}

/* Removes a tree without crossing into mounts (a stuck mount stays untouched). */
static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* 1 when dir has no entries, 0 when it has some, -errno. */
static int dir_is_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int r = 1;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			r = 0;
			break;
		}
	closedir(d);
	return r;
}

/* Sums the regular files under dir/chunks: what a disk cache holds. */
static uint64_t du_bytes, du_files;
static int du_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F && S_ISREG(st->st_mode)) {
		du_bytes += (uint64_t)st->st_size;
		du_files++;
	}
	return 0;
}

static void cache_usage(const char *cache, uint64_t *bytes, uint64_t *files)
{
	_cleanup_free_ char *chunks = NULL;

	du_bytes = du_files = 0;
	if (asprintf(&chunks, "%s/chunks", cache) >= 0)
		nftw(chunks, du_entry, 16, FTW_PHYS | FTW_MOUNT);
	*bytes = du_bytes;
	*files = du_files;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Drops the page cache (root), else warns once. */
static void drop_caches(struct bench *b)
{
	int fd;

	sync();
	if (b->can_drop) {
		fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
		if (fd >= 0 && write(fd, "3\n", 2) == 2) {
			close(fd);
			return;
		}
		if (fd >= 0)
			close(fd);
		if (!b->dropped_warned)
			warnf(b,
			      "cannot drop the page cache (/proc/sys/vm/drop_caches: %s): "
			      "runs may be warm",
			      strerror(errno));
	} else if (!b->dropped_warned) {
		warnf(b, "not root: the page cache is not dropped between runs, runs may be warm");
	}
	b->dropped_warned = true;
}

/* ---- the image ---- */

static int load_image(struct bench *b)
{
	struct slimfs_image *img = NULL;
	const struct slimfs_info *info;
	_cleanup_json_ json_t *root = NULL;
	json_t *cfg, *env, *v;
	json_error_t jerr;
	bool has_path = false;
	size_t i, n = 0;
	uint32_t view;
	int r;

	r = slimfs_image_open(b->o->image, NULL, NULL, &img);
	if (r < 0)
		return log_error_errno(r, "cannot open image '%s'", b->o->image);
	info = slimfs_index_info(img->idx);
	b->image_size = img->backend->size ? img->backend->size : info->data_off + info->data_size;
	b->data_size = info->data_size;
	b->chunk_count = info->chunk_count;
	b->prefetch_count = info->prefetch_count;
	slimfs_index_digest_str(img->idx, b->digest);
	b->has_minimal_view = slimfs_index_view_find(img->idx, b->o->minimal_view, &view) == 0;
	if (strcmp(b->o->view, "full") != 0 &&
	    slimfs_index_view_find(img->idx, b->o->view, &view) < 0) {
		log_error("'%s' has no view '%s'", b->o->image, b->o->view);
		slimfs_image_close(img);
		return -ENOENT;
	}

	/* The environment and working directory of CMD: the image config's. */
	if (info->config && info->config_len) {
		root = json_loadb(info->config, info->config_len, 0, &jerr);
		if (!root)
			log_warn("'%s': the image config is not valid JSON (%s): default "
				 "environment",
				 b->o->image, jerr.text);
	}
	cfg = json_object_get(root, "config");
	if (!json_is_object(cfg))
		cfg = root;
	env = json_object_get(cfg, "Env");
	b->env = calloc(json_array_size(env) + 2, sizeof(*b->env));
	if (!b->env) {
		slimfs_image_close(img);
		return -ENOMEM;
	}
	json_array_foreach(env, i, v)
	{
		if (!json_is_string(v) || !strchr(json_string_value(v), '='))
			continue;
		b->env[n] = strdup(json_string_value(v));
		if (!b->env[n])
			break;
		has_path |= strncmp(b->env[n], "PATH=", 5) == 0;
		n++;
	}
	if (!has_path)
		b->env[n++] = strdup(DEFAULT_PATH);
	v = json_object_get(cfg, "WorkingDir");
	b->cwd = strdup(json_is_string(v) && json_string_value(v)[0] == '/' ? json_string_value(v)
									    : "/");
	slimfs_image_close(img);
	if (!b->cwd || !b->env[n - 1])
		return -ENOMEM;
	return 0;
}

/* ---- runc ---- */

/* config.json for the runc runs, from 'slimfs bundle' over a throwaway mount. */
static int make_runc_template(struct bench *b)
{
	struct strv a = {0};
	_cleanup_free_ char *dir = NULL, *cache = NULL, *config = NULL, *log = NULL;
	_cleanup_close_ int logfd = -1;
	json_error_t jerr;
	json_t *proc, *root;
	int r;

	if (asprintf(&dir, "%s/bundle-template", b->work) < 0 ||
	    asprintf(&cache, "%s/bundle-cache", b->work) < 0 ||
	    asprintf(&config, "%s/config.json", dir) < 0 ||
	    asprintf(&log, "%s/bundle.log", b->work) < 0)
		return -ENOMEM;
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	r = strv_add(&a, "slimfs", "bundle", "-q", "--view", "full", "--cache", cache, b->o->image,
		     dir, "--", NULL);
	for (char **c = b->o->cmd; !r && *c; c++)
		r = strv_push(&a, *c);
	if (r < 0) {
		strv_free(&a);
		return r;
	}
	r = run_capture(SELF_EXE, a.v, NULL, logfd, b->o->timeout_ns, true);
	strv_free(&a);
	if (r != 0) {
		log_error("slimfs bundle failed (%s); see '%s'",
			  r < 0 ? strerror(-r) : "non-zero exit", log);
		return -EIO;
	}
	b->runc_tmpl = json_load_file(config, 0, &jerr);
	r = strv_add(&a, "slimfs", "bundle", "--remove", dir, NULL);
	if (r == 0 && run_capture(SELF_EXE, a.v, NULL, logfd, b->o->timeout_ns, false) != 0)
		log_warn("slimfs bundle --remove '%s' failed; see '%s'", dir, log);
	strv_free(&a);
	rm_tree(cache);
	if (!b->runc_tmpl) {
		log_error("'%s': %s", config, jerr.text);
		return -EBADMSG;
	}
	proc = json_object_get(b->runc_tmpl, "process");
	root = json_object_get(b->runc_tmpl, "root");
	if (!json_is_object(proc) || !json_is_object(root)) {
		log_error("'%s' has no process or root object", config);
		return -EBADMSG;
	}
	json_object_set_new(proc, "terminal", json_false());
	json_object_set_new(root, "path", json_string("rootfs"));
	json_object_set_new(root, "readonly", json_true());
	return 0;
}

/* ---- one run ---- */

struct running_cmd {
	pid_t pid;
	int out;   /* read end of CMD's stdout+stderr, -1 after EOF */
	int pidfd; /* -1 when pidfd_open is not available */
	char *runc_id;
};

/*
 * The chroot runtime: the first process of new mount and PID namespaces
 * (PID 1 there). It mounts /dev, /proc and /tmp, chroots, starts CMD and
 * forwards SIGTERM/SIGINT/SIGHUP to every process of the namespace; when it
 * exits, the kernel kills whatever is left in the namespace.
 */
static void __attribute__((noreturn)) chroot_init(struct bench *b, const char *mnt, int out)
{
	struct sigaction sa = {.sa_handler = SIG_IGN};
	_cleanup_free_ char *dev = NULL, *proc = NULL, *tmp = NULL;
	int st = 0, code = 127;
	sigset_t all;
	pid_t c;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	setpgid(0, 0);
	if (out != 2 && dup2(out, 2) < 0)
		_exit(127);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		dprintf(2, "slimfs bench: cannot make the mounts private: %s\n", strerror(errno));
		_exit(127);
	}
	if (asprintf(&dev, "%s/dev", mnt) < 0 || asprintf(&proc, "%s/proc", mnt) < 0 ||
	    asprintf(&tmp, "%s/tmp", mnt) < 0)
		_exit(127);
	/* The mount is nodev: the host's /dev, as container runtimes give one. */
	if (is_dir(dev) && mount("/dev", dev, NULL, MS_BIND | MS_REC, NULL) < 0)
		dprintf(2, "slimfs bench: cannot bind /dev on '%s': %s\n", dev, strerror(errno));
	if (is_dir(proc) && mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		dprintf(2, "slimfs bench: cannot mount proc on '%s': %s\n", proc, strerror(errno));
	if (is_dir(tmp) && mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0)
		dprintf(2, "slimfs bench: cannot mount a tmpfs on '%s': %s\n", tmp,
			strerror(errno));
	if (chroot(mnt) < 0) {
		dprintf(2, "slimfs bench: cannot chroot to '%s': %s\n", mnt, strerror(errno));
		_exit(127);
	}
	if (chdir(b->cwd) < 0 && chdir("/") < 0)
		_exit(127);
	c = fork();
	if (c < 0) {
		dprintf(2, "slimfs bench: cannot fork: %s\n", strerror(errno));
		_exit(127);
	}
	if (c == 0) {
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (dup2(nul >= 0 ? nul : out, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		if (out > 2)
			close(out);
		clearenv();
		for (char **e = b->env; *e; e++)
			putenv(*e);
		execvp(b->o->cmd[0], b->o->cmd);
		dprintf(2, "slimfs bench: cannot run '%s' in the image: %s\n", b->o->cmd[0],
			strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(out);
	close(0);
	/* PID 1 gets only the signals it handles: pass them on to everyone. */
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	for (;;) {
		pid_t w = waitpid(-1, &st, 0);

		if (w == c) {
			code = status_code(st);
			break;
		}
		if (w < 0 && errno == EINTR && interrupted) {
			interrupted = 0;
			kill(-1, SIGTERM);
		} else if (w < 0 && errno != EINTR) {
			break;
		}
	}
	_exit(code < 0 ? 127 : code);
}

static int start_cmd(struct bench *b, const char *mnt, const char *bundle, unsigned seq,
		     struct running_cmd *rc)
{
	int p[2], r = 0;
	pid_t pid = -1;

	if (pipe2(p, O_CLOEXEC) < 0)
		return log_error_errno(-errno, "cannot make a pipe");
	if (!b->o->runc) {
		pid = (pid_t)syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
		if (pid < 0) {
			r = log_error_errno(-errno, "cannot start CMD in new mount and PID "
						    "namespaces (needs root)");
			goto out;
		}
		if (pid == 0) {
			close(p[0]);
			chroot_init(b, mnt, p[1]);
		}
		setpgid(pid, pid);
	} else {
		struct strv a = {0};
		_cleanup_free_ char *state = NULL;

		if (asprintf(&rc->runc_id, "slimfs-bench-%d-%u", (int)getpid(), seq) < 0 ||
		    asprintf(&state, "%s/runc", b->work) < 0) {
			rc->runc_id = NULL;
			r = -ENOMEM;
			goto out;
		}
		r = strv_add(&a, "runc", "--root", state, "run", "--bundle", bundle, rc->runc_id,
			     NULL);
		if (r == 0) {
			pid_t f = fork();

			if (f < 0) {
				r = log_error_errno(-errno, "cannot fork");
			} else if (f == 0) {
				int fds[4] = {-1, p[1], p[1], -1};
				int hi[4];

				setpgid(0, 0);
				for (int i = 0; i < 3; i++)
					hi[i] = fds[i] >= 0 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 10)
							    : open("/dev/null", O_RDONLY);
				for (int i = 0; i < 3; i++)
					dup2(hi[i], i);
				execvp("runc", a.v);
				dprintf(2, "slimfs bench: cannot run runc: %s\n", strerror(errno));
				_exit(127);
			} else {
				pid = f;
				setpgid(pid, pid);
			}
		}
		strv_free(&a);
		if (r < 0)
			goto out;
	}
	rc->pid = pid;
	rc->out = p[0];
	p[0] = -1;
	rc->pidfd = pidfd_open_(pid);
out:
	if (p[0] >= 0)
		close(p[0]);
	close(p[1]);
	return r;
}

static void runc_cmd(struct bench *b, const char *id, const char *verb, const char *arg)
{
	_cleanup_free_ char *state = NULL;

	if (asprintf(&state, "%s/runc", b->work) < 0)
		return;
	if (strcmp(verb, "delete") == 0)
		run_quiet(10000000000ull, "runc", "--root", state, "delete", "-f", id, NULL);
	else
		run_quiet(10000000000ull, "runc", "--root", state, verb, id, arg, NULL);
}

/* Line-matching state for --ready. */
struct out_state {
	int log;
	char line[LINE_MAX_BYTES];
	size_t len;
	bool matched;
};

/* Feeds CMD output; true when a complete line matched the --ready regex. */
static bool feed_output(struct bench *b, struct out_state *s, const char *buf, size_t n)
{
	if (s->log >= 0)
		slimfs_write_all(s->log, buf, n);
	if (b->o->show_output)
		slimfs_write_all(2, buf, n);
	if (!b->ready_compiled || s->matched)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] != '\n') {
			if (s->len < sizeof(s->line) - 1)
				s->line[s->len++] = buf[i];
			continue;
		}
		s->line[s->len] = '\0';
		s->len = 0;
		if (regexec(&b->ready_re, s->line, 0, NULL, 0) == 0) {
			s->matched = true;
			return true;
		}
	}
	return false;
}

/* Stops CMD: SIGTERM (forwarded to the namespace or the container), SIGKILL after 5 s. */
static void stop_cmd(struct bench *b, struct running_cmd *rc, struct out_state *os, int *status)
{
	uint64_t deadline = slimfs_now_ns() + STOP_GRACE_NS;
	char buf[4096];
	int st = 0;

	kill(rc->pid, SIGTERM);
	for (;;) {
		int r = wait_until(rc->pid, slimfs_now_ns() + 20000000, &st);
		ssize_t n;

		if (r == 1)
			break;
		/* Keep the pipe drained so that a writer cannot block its exit. */
		while (rc->out >= 0 && (n = read(rc->out, buf, sizeof(buf))) != 0) {
			if (n < 0)
				break;
			feed_output(b, os, buf, (size_t)n);
		}
		if (slimfs_now_ns() >= deadline) {
			log_debug("CMD did not stop within 5 s of SIGTERM: SIGKILL");
			if (rc->runc_id)
				runc_cmd(b, rc->runc_id, "kill", "KILL");
			kill(-rc->pid, SIGKILL);
			kill(rc->pid, SIGKILL);
			waitpid(rc->pid, &st, 0);
			break;
		}
	}
	*status = st;
}

/*
 * Waits for CMD's exit, or its --ready line, or the timeout. Sets the end
 * time (exit or ready line) and the exit code.
 */
static int watch_cmd(struct bench *b, struct running_cmd *rc, struct run_result *res,
		     const char *logpath, uint64_t *t_end)
{
	struct out_state *os = calloc(1, sizeof(*os));
	uint64_t deadline = b->o->timeout_ns ? slimfs_now_ns() + b->o->timeout_ns : 0;
	bool exited = false, stop = false;
	char buf[8192];
	int st = 0;

	if (!os)
		return -ENOMEM;
	os->log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	fcntl(rc->out, F_SETFL, O_NONBLOCK);
	while (!exited && !stop) {
		struct pollfd pfd[2] = {{.fd = rc->out, .events = POLLIN},
					{.fd = rc->pidfd, .events = POLLIN}};
		int timeout = rc->pidfd >= 0 ? 1000 : 1;

		if (deadline) {
			uint64_t now = slimfs_now_ns();

			if (now >= deadline) {
				res->timed_out = true;
				*t_end = now;
				break;
			}
			timeout = (int)MIN((uint64_t)timeout, (deadline - now) / 1000000 + 1);
		}
		if (interrupted)
			break;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents) {
			ssize_t n = read(rc->out, buf, sizeof(buf));

			if (n > 0 && feed_output(b, os, buf, (size_t)n)) {
				*t_end = slimfs_now_ns();
				res->ready_matched = stop = true;
				break;
			}
			if (n == 0) {
				close(rc->out);
				rc->out = -1;
			}
		}
		if (rc->pidfd < 0 || pfd[1].revents) {
			pid_t w = waitpid(rc->pid, &st, WNOHANG);

			if (w == rc->pid) {
				*t_end = slimfs_now_ns();
				exited = true;
			}
		}
	}
	if (exited) {
		/* What it wrote before exiting: drain (briefly; a leftover writer is killed). */
		uint64_t until = slimfs_now_ns() + 200000000;

		while (rc->out >= 0 && slimfs_now_ns() < until) {
			struct pollfd pfd = {.fd = rc->out, .events = POLLIN};
			ssize_t n;

			if (poll(&pfd, 1, 20) <= 0)
				continue;
			n = read(rc->out, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (feed_output(b, os, buf, (size_t)n))
				res->ready_matched = true;
		}
		res->exit_code = status_code(st);
	} else {
		if (!stop && !res->timed_out)
			*t_end = slimfs_now_ns();
		res->stopped = true;
		stop_cmd(b, rc, os, &st);
		res->exit_code = status_code(st);
		if (res->timed_out)
			res->exit_code = 124;
	}
	if (rc->runc_id)
		runc_cmd(b, rc->runc_id, "delete", NULL);
	if (os->log >= 0)
		close(os->log);
	free(os);
	if (rc->out >= 0)
		close(rc->out);
	if (rc->pidfd >= 0)
		close(rc->pidfd);
	rc->out = rc->pidfd = -1;
	return interrupted ? -EINTR : 0;
}

/* ---- counters ---- */

/* root["a"]["b"] for "a.b". */
static json_t *jpath(json_t *root, const char *path)
{
	char key[64];

	while (root && *path) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);

		if (n >= sizeof(key))
			return NULL;
		memcpy(key, path, n);
		key[n] = '\0';
		root = json_object_get(root, key);
		path += n + (dot ? 1 : 0);
	}
	return root;
}

static int64_t jint(json_t *root, const char *const *paths)
{
	for (; *paths; paths++) {
		json_t *v = jpath(root, *paths);

		if (json_is_integer(v))
			return json_integer_value(v);
		if (json_is_real(v))
			return (int64_t)json_real_value(v);
	}
	return -1;
}

static double jnum(json_t *root, const char *const *paths)
{
	for (; *paths; paths++) {
		json_t *v = jpath(root, *paths);

		if (json_is_number(v))
			return json_number_value(v);
	}
	return -1;
}

/*
 * The counters of 'slimfs stats --json': {"fetch": {"requests", "bytes",
 * "latency_p50_us", ...}, "cache": {"mem_hits", "disk_hits", ...}, "verify":
 * {"ok", "failed"}, ...}. Chunks fetched = verified minus those that came from
 * the disk cache.
 */
static void counters_from_json(json_t *s, struct counters *c)
{
	static const char *const bytes[] = {"fetch.bytes", "cache.fetched_bytes", NULL};
	static const char *const req[] = {"fetch.requests", NULL};
	static const char *const verified[] = {"verify.ok", NULL};
	static const char *const disk[] = {"cache.disk_hits", NULL};
	static const char *const hits[] = {"cache.mem_hits", NULL};
	static const char *const misses[] = {"cache.mem_misses", NULL};
	static const char *const p50[] = {"fetch.latency_p50_us", NULL};
	static const char *const p99[] = {"fetch.latency_p99_us", NULL};
	int64_t dh;
	double v;

	c->bytes = jint(s, bytes);
	c->requests = jint(s, req);
	c->chunks_verified = jint(s, verified);
	dh = jint(s, disk);
	c->chunks_fetched = c->chunks_verified >= 0 && dh >= 0 ? c->chunks_verified - dh : -1;
	c->hits = jint(s, hits);
	c->misses = jint(s, misses);
	v = jnum(s, p50);
	c->lat_p50_ms = v >= 0 ? v / 1000 : -1;
	v = jnum(s, p99);
	c->lat_p99_ms = v >= 0 ? v / 1000 : -1;
}

/* "1.5 MiB" -> bytes (approximate). */
static int64_t parse_fmt_bytes(const char *s)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	char unit[8] = "";
	double v;

	if (sscanf(s, "%lf %7s", &v, unit) < 1)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++, v *= 1024)
		if (strcmp(unit, units[i]) == 0)
			return (int64_t)v;
	return -1;
}

/* The number right before label in s ("141 verified"), or -1. */
static int64_t num_before(const char *s, const char *label)
{
	const char *p = strstr(s, label), *q;

	if (!p)
		return -1;
	for (q = p; q > s && q[-1] >= '0' && q[-1] <= '9'; q--)
		;
	return q < p ? strtoll(q, NULL, 10) : -1;
}

/*
 * The daemon's last words, when 'slimfs stats' could not be asked: "unmounted
 * 'MNT' after Ns: ...; fetched SIZE in N requests (...); chunks: N memory hits,
 * N misses, N disk hits, N verified, N failed; ...". Bytes are rounded.
 */
static bool counters_from_summary(const char *log, struct counters *c)
{
	const char *p = NULL, *q = log;
	int64_t disk;
	char unit[8], size[32];
	double v;

	while ((q = strstr(q, "unmounted '")))
		p = q++;
	if (!p)
		return false;
	q = strstr(p, "fetched ");
	if (q &&
	    sscanf(q, "fetched %lf %7s in %" SCNd64 " requests", &v, unit, &c->requests) == 3) {
		snprintf(size, sizeof(size), "%f %s", v, unit);
		c->bytes = parse_fmt_bytes(size);
	}
	c->chunks_verified = num_before(p, " verified");
	disk = num_before(p, " disk hits");
	c->chunks_fetched = c->chunks_verified >= 0 && disk >= 0 ? c->chunks_verified - disk : -1;
	c->hits = num_before(p, " memory hits");
	c->misses = num_before(p, " misses");
	return c->bytes >= 0 || c->chunks_verified >= 0;
}

static char *read_file_str(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > (64 << 20))
		return NULL;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return NULL;
	n = read(fd, buf, (size_t)st.st_size);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Last lines of a file, for messages. */
static void log_tail(const char *path, const char *what)
{
	_cleanup_free_ char *s = read_file_str(path);
	size_t len, lines = 0;
	char *p;

	if (!s || !*s)
		return;
	len = strlen(s);
	p = s + len;
	while (p > s && lines < 6)
		if (*--p == '\n' && p + 1 < s + len)
			lines++;
	if (*p == '\n')
		p++;
	fprintf(stderr, "--- last lines of %s (%s):\n%s%s", what, path, p,
		s[len - 1] == '\n' ? "" : "\n");
}

/* ---- mount and unmount ---- */

struct daemon {
	pid_t pid;
	char *log; /* owned */
};

static int start_daemon(struct bench *b, enum mode m, bool trace, const char *dir, const char *mnt,
			struct daemon *d, uint64_t *mount_ns)
{
	struct strv a = {0};
	const char *view = m == MODE_MINIMAL ? b->o->minimal_view : b->o->view;
	uint64_t t0 = slimfs_now_ns(), deadline;
	char line[64];
	size_t got = 0;
	int p[2], r, st = 0;

	if (asprintf(&d->log, "%s/mount.log", dir) < 0) {
		d->log = NULL;
		return -ENOMEM;
	}
	r = strv_add(&a, "slimfs", "mount", "-f", "--ready-fd", "3", "--view", view, "--cache",
		     NULL);
	if (!r)
		r = strv_pushf(&a, "%s/cache", dir);
	if (!r && b->caps.cache_size)
		r = strv_pushf(&a, "--cache-size=%" PRIu64,
			       (uint64_t)MAX(b->image_size * 2, 2ull << 30));
	if (!r && b->o->rate)
		r = strv_add(&a, "--rate", b->o->rate, NULL);
	if (!r && b->o->rtt)
		r = strv_add(&a, "--rtt", b->o->rtt, NULL);
	if (!r && (m == MODE_PROFILE || m == MODE_MINIMAL)) {
		if (b->profile_path)
			r = strv_add(&a, "--prefetch-profile", b->profile_path, NULL);
		else if (b->caps.prefetch)
			r = strv_add(&a, "--prefetch", "profile", NULL);
	} else if (!r && b->caps.prefetch) {
		r = strv_add(&a, "--prefetch", "none", NULL);
	}
	if (!r && trace)
		r = strv_pushf(&a, "--trace=%s/trace", dir);
	if (!r && b->o->runc && getuid() == 0)
		r = strv_add(&a, "-o", "allow_other,default_permissions", NULL);
	for (size_t i = 0; !r && i < b->o->mount_args.n; i++)
		r = strv_push(&a, b->o->mount_args.v[i]);
	if (!r)
		r = strv_add(&a, b->o->image, mnt, NULL);
	if (r < 0) {
		strv_free(&a);
		return r;
	}
	if (b->o->verbosity > 1) {
		_cleanup_free_ char *cmdline = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&cmdline, &len);

		for (size_t i = 0; f && i < a.n; i++)
			fprintf(f, "%s%s", i ? " " : "", a.v[i]);
		if (f)
			fclose(f);
		log_debug("%s", cmdline ? cmdline : "");
	}

	_cleanup_close_ int logfd =
		open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
	if (logfd < 0 || pipe2(p, O_CLOEXEC) < 0) {
		strv_free(&a);
		return log_error_errno(-errno, "cannot set up the daemon's log or ready pipe");
	}
	t0 = slimfs_now_ns();
	/* Its own process group: a ^C reaches bench, which unmounts in order. */
	r = spawn(SELF_EXE, a.v, (int[4]){-1, logfd, logfd, p[1]}, true, &d->pid);
	strv_free(&a);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	deadline = b->o->timeout_ns ? t0 + b->o->timeout_ns : 0;
	while (got < sizeof(line) - 1) {
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		ssize_t n;

		if (interrupted || (deadline && slimfs_now_ns() >= deadline))
			break;
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(p[0], line + got, sizeof(line) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(line, '\n', got))
			break;
	}
	close(p[0]);
	line[got] = '\0';
	*mount_ns = slimfs_now_ns() - t0;
	if (strcmp(line, "READY\n") == 0)
		return 0;
	if (wait_until(d->pid, slimfs_now_ns() + 2000000000ull, &st) == 1) {
		log_error("slimfs mount of '%s' on '%s' failed (exit %d)", b->o->image, mnt,
			  status_code(st));
		d->pid = 0;
	} else {
		log_error("slimfs mount of '%s' on '%s': %s", b->o->image, mnt,
			  interrupted ? "interrupted" : "no READY in time");
	}
	log_tail(d->log, "the daemon's log");
	return -EIO;
}

static bool is_mounted(const char *mnt)
{
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, n = strlen(mnt);
	FILE *f = fopen("/proc/self/mounts", "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		char *p = strchr(line, ' ');

		found = p && strncmp(p + 1, mnt, n) == 0 && p[1 + n] == ' ';
	}
	fclose(f);
	return found;
}

/* Unmounts and waits for the daemon; its exit code, or -1. */
static int stop_daemon(struct bench *b, struct daemon *d, const char *mnt)
{
	int st = 0;

	(void)b;
	if (is_mounted(mnt)) {
		if (getuid() == 0) {
			for (int i = 0; i < 50 && umount2(mnt, 0) < 0 && errno == EBUSY; i++) {
				struct timespec ts = {0, 100000000};
				nanosleep(&ts, NULL);
			}
		}
		if (is_mounted(mnt)) {
			run_quiet(10000000000ull, "fusermount3", "-u", mnt, NULL);
			if (is_mounted(mnt)) {
				log_warn("'%s' is busy: detaching it", mnt);
				if (getuid() == 0)
					umount2(mnt, MNT_DETACH);
				else
					run_quiet(10000000000ull, "fusermount3", "-uz", mnt, NULL);
			}
		}
	}
	if (d->pid <= 0)
		return -1;
	if (wait_until(d->pid, slimfs_now_ns() + UNMOUNT_WAIT_NS, &st) != 1) {
		log_warn("the daemon of '%s' (pid %d) did not exit after unmount: stopping it", mnt,
			 (int)d->pid);
		stop_pid(d->pid, STOP_GRACE_NS, &st);
		d->pid = 0;
		return -1;
	}
	d->pid = 0;
	return status_code(st);
}

/* ---- pull ---- */

static int do_pull(struct bench *b, const char *dir, struct run_result *res)
{
	struct strv a = {0};
	_cleanup_free_ char *log = NULL, *out = NULL, *cache = NULL;
	_cleanup_close_ int logfd = -1;
	uint64_t t0, bytes, files;
	int r;

	if (asprintf(&log, "%s/pull.log", dir) < 0 || asprintf(&cache, "%s/cache", dir) < 0)
		return -ENOMEM;
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	r = strv_add(&a, "slimfs", "pull", "--no-progress", "--cache", cache, NULL);
	if (!r && b->caps.pull_cache_size)
		r = strv_pushf(&a, "--cache-size=%" PRIu64,
			       (uint64_t)MAX(b->image_size * 2, 2ull << 30));
	if (!r && b->caps.pull_json)
		r = strv_push(&a, "--json");
	if (!r && b->o->rate)
		r = strv_add(&a, "--rate", b->o->rate, NULL);
	if (!r && b->o->rtt)
		r = strv_add(&a, "--rtt", b->o->rtt, NULL);
	if (!r)
		r = strv_push(&a, b->o->image);
	if (r < 0) {
		strv_free(&a);
		return r;
	}
	t0 = slimfs_now_ns();
	r = run_capture(SELF_EXE, a.v, &out, logfd, b->o->timeout_ns, true);
	res->pull_s = ns_to_s(slimfs_now_ns() - t0);
	strv_free(&a);
	if (out && logfd >= 0)
		slimfs_write_all(logfd, out, strlen(out));
	if (r != 0) {
		log_error("slimfs pull of '%s' failed (%s)", b->o->image,
			  r < 0 ? strerror(-r) : "non-zero exit");
		log_tail(log, "the pull's log");
		return -EIO;
	}
	if (b->caps.pull_json && out) {
		json_error_t jerr;

		res->pull_stats = json_loads(out, 0, &jerr);
		if (!res->pull_stats)
			log_debug("slimfs pull --json: %s", jerr.text);
	}
	if (!res->pull_stats) {
		/* "pulled 'IMG' into 'DIR': N chunks (SIZE), F fetched (SIZE in R requests),
		 * C already cached": chunks and requests from there, bytes from what the
		 * fresh cache holds now (exact, where SIZE is rounded). */
		const char *p = out ? strstr(out, " fetched (") : NULL, *q;
		uint64_t fetched = 0, req = 0;
		bool parsed = false;

		if (p) {
			for (q = p; q > out && q[-1] >= '0' && q[-1] <= '9'; q--)
				;
			parsed = sscanf(q, "%" SCNu64, &fetched) == 1 && (q = strstr(p, " in ")) &&
				 sscanf(q, " in %" SCNu64 " requests", &req) == 1;
		}
		cache_usage(cache, &bytes, &files);
		res->pull_stats = json_pack("{s:I, s:I, s:I, s:o, s:s}", "bytes", (json_int_t)bytes,
					    "chunks", (json_int_t)(parsed ? fetched : files),
					    "chunks_verified", (json_int_t)files, "requests",
					    parsed ? json_integer((json_int_t)req) : json_null(),
					    "source", "pull output and cache dir");
	}
	return 0;
}

/* ---- one run, start to end ---- */

static const char *exit_desc(int code, char *buf, size_t len)
{
	if (code > 128 && code < 128 + NSIG)
		snprintf(buf, len, "killed by signal %d", code - 128);
	else
		snprintf(buf, len, "exit %d", code);
	return buf;
}

static int do_run(struct bench *b, enum mode m, unsigned idx, bool trace, struct run_result *res)
{
	_cleanup_free_ char *cache = NULL, *mnt = NULL, *bundle = NULL, *outlog = NULL,
			    *stats_out = NULL, *cfgpath = NULL;
	struct daemon d = {0};
	struct running_cmd rc = {.pid = 0, .out = -1, .pidfd = -1};
	uint64_t t0, t_end = 0, mount_ns = 0, t_cmd;
	int r;

	res->exit_code = -1;
	res->daemon_status = -1;
	res->c = (struct counters){-1, -1, -1, -1, -1, -1, -1, -1};
	if (asprintf(&res->dir, "%s/%s-%u", b->work, trace ? "record" : mode_names[m], idx + 1) <
		    0 ||
	    asprintf(&cache, "%s/cache", res->dir) < 0 ||
	    asprintf(&outlog, "%s/output.log", res->dir) < 0) {
		res->dir = NULL;
		return -ENOMEM;
	}
	if (b->o->runc) {
		if (asprintf(&bundle, "%s/bundle", res->dir) < 0 ||
		    asprintf(&mnt, "%s/rootfs", bundle) < 0 ||
		    asprintf(&cfgpath, "%s/config.json", bundle) < 0)
			return -ENOMEM;
	} else if (asprintf(&mnt, "%s/mnt", res->dir) < 0) {
		return -ENOMEM;
	}
	if (mkdir(res->dir, 0755) < 0 || mkdir(cache, 0700) < 0 ||
	    (bundle && mkdir(bundle, 0755) < 0) || mkdir(mnt, 0755) < 0)
		return log_error_errno(-errno, "cannot make the run directory '%s'", res->dir);
	if (cfgpath && json_dump_file(b->runc_tmpl, cfgpath, JSON_INDENT(2)) < 0)
		return log_error_errno(-EIO, "cannot write '%s'", cfgpath);
	r = dir_is_empty(cache);
	res->cache_was_empty = r == 1;
	if (r != 1)
		warnf(b, "%s run %u: the cache '%s' was not empty at the start", mode_names[m],
		      idx + 1, cache);
	drop_caches(b);

	t0 = slimfs_now_ns();
	if (m == MODE_FULL) {
		r = do_pull(b, res->dir, res);
		if (r < 0) {
			res->error = strdup("pull failed");
			return r;
		}
	}
	r = start_daemon(b, m, trace, res->dir, mnt, &d, &mount_ns);
	res->mount_s = ns_to_s(mount_ns);
	if (r < 0) {
		res->error = strdup("mount failed");
		if (d.pid > 0)
			stop_daemon(b, &d, mnt);
		free(d.log);
		return r;
	}
	t_cmd = slimfs_now_ns();
	r = start_cmd(b, mnt, bundle, (unsigned)m * 1000 + idx, &rc);
	if (r == 0) {
		r = watch_cmd(b, &rc, res, outlog, &t_end);
		free(rc.runc_id);
		res->cmd_s = ns_to_s(t_end - t_cmd);
		res->total_s = ns_to_s(t_end - t0);
		res->done = r == 0;
	}

	/* Counters, just before unmounting. */
	if (b->caps.stats) {
		json_error_t jerr;

		if (run_self(&stats_out, "stats", "--json", mnt, NULL) == 0 && stats_out &&
		    (res->stats = json_loads(stats_out, 0, &jerr))) {
			counters_from_json(res->stats, &res->c);
			res->source = "slimfs stats";
		} else {
			log_warn("slimfs stats --json '%s' failed: using the daemon's summary",
				 mnt);
		}
	}
	res->daemon_status = stop_daemon(b, &d, mnt);
	if (!res->source) {
		_cleanup_free_ char *log = read_file_str(d.log);

		if (log && counters_from_summary(log, &res->c))
			res->source = "daemon summary";
	}
	if (res->daemon_status != 0)
		warnf(b, "%s run %u: the daemon exited with status %d; see '%s'",
		      trace ? "record" : mode_names[m], idx + 1, res->daemon_status, d.log);
	free(d.log);
	rmdir(mnt);

	if (r < 0) {
		if (!res->error)
			res->error = strdup(r == -EINTR ? "interrupted" : "CMD could not start");
		return r;
	}
	if (b->ready_compiled && !res->ready_matched) {
		char e[48];

		res->error = strdup(res->timed_out ? "timed out before the ready line"
						   : "CMD exited before printing the ready line");
		warnf(b, "%s run %u: no line matched --ready (%s); see '%s'",
		      trace ? "record" : mode_names[m], idx + 1,
		      res->timed_out ? "timed out" : exit_desc(res->exit_code, e, sizeof(e)),
		      outlog);
		log_tail(outlog, "CMD's output");
	} else if (res->timed_out) {
		res->error = strdup("timed out");
		warnf(b, "%s run %u: CMD did not finish within the timeout",
		      trace ? "record" : mode_names[m], idx + 1);
	} else if (res->exit_code != 0 && !res->ready_matched) {
		char e[48];

		warnf(b, "%s run %u: CMD failed (%s); see '%s'", trace ? "record" : mode_names[m],
		      idx + 1, exit_desc(res->exit_code, e, sizeof(e)), outlog);
		log_tail(outlog, "CMD's output");
	}
	/* Everything of the run but its logs and trace goes now: caches are large. */
	rm_tree(cache);
	if (bundle) {
		rmdir(mnt);
		if (cfgpath)
			unlink(cfgpath);
		rmdir(bundle);
	}
	return 0;
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct agg {
	unsigned n;
	double median, min, max;
};

/* Aggregates v[0, n), skipping values < 0 (unknown). */
static struct agg aggregate(const double *v, unsigned n)
{
	double *s = calloc(n ? n : 1, sizeof(*s));
	struct agg a = {0, -1, -1, -1};
	unsigned k = 0;

	if (!s)
		return a;
	for (unsigned i = 0; i < n; i++)
		if (v[i] >= 0)
			s[k++] = v[i];
	if (k) {
		qsort(s, k, sizeof(*s), cmp_double);
		a.n = k;
		a.min = s[0];
		a.max = s[k - 1];
		a.median = k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
	}
	free(s);
	return a;
}

enum field {
	F_TOTAL,
	F_MOUNT,
	F_PULL,
	F_CMD,
	F_BYTES,
	F_REQUESTS,
	F_FETCHED,
	F_VERIFIED,
	F_SHARE,
	F_COUNT
};
static const char *const field_names[F_COUNT] = {"time_s",	   "mount_s",	      "pull_s",
						 "cmd_s",	   "bytes_fetched",   "requests",
						 "chunks_fetched", "chunks_verified", "share"};

/* Bytes of a full-mode run: what pull fetched plus what the mount did. */
static double run_bytes(const struct run_result *r)
{
	int64_t pulled = jint(r->pull_stats,
			      (const char *const[]){"bytes", "bytes_fetched", "fetch.bytes", NULL});
	if (r->pull_stats && pulled >= 0)
		return (double)pulled + (double)MAX(r->c.bytes, 0);
	return (double)r->c.bytes;
}

static double run_field(const struct bench *b, const struct run_result *r, enum field f)
{
	if (!r->done)
		return -1;
	switch (f) {
	case F_TOTAL:
		return r->total_s;
	case F_MOUNT:
		return r->mount_s;
	case F_PULL:
		return r->pull_stats ? r->pull_s : -1;
	case F_CMD:
		return r->cmd_s;
	case F_BYTES:
		return run_bytes(r);
	case F_REQUESTS: {
		int64_t pr = jint(r->pull_stats,
				  (const char *const[]){"requests", "fetch.requests", NULL});
		if (r->c.requests < 0 || (r->pull_stats && pr < 0))
			return -1;
		return (double)r->c.requests + (pr > 0 ? (double)pr : 0);
	}
	case F_FETCHED: {
		int64_t pc = jint(r->pull_stats, (const char *const[]){"chunks", "chunks_fetched",
								       "chunks.fetched", NULL});
		if (r->c.chunks_fetched < 0 && pc < 0)
			return -1;
		return (double)MAX(r->c.chunks_fetched, 0) + (pc > 0 ? (double)pc : 0);
	}
	case F_VERIFIED: {
		int64_t pv = jint(r->pull_stats,
				  (const char *const[]){"chunks_verified", "chunks.verified",
							"verified", "chunks", NULL});
		if (r->c.chunks_verified < 0 && pv < 0)
			return -1;
		return (double)MAX(r->c.chunks_verified, 0) + (pv > 0 ? (double)pv : 0);
	}
	case F_SHARE: {
		double by = run_bytes(r);

		return by >= 0 && b->image_size ? by / (double)b->image_size : -1;
	}
	case F_COUNT:
		break;
	}
	return -1;
}

static struct agg mode_agg(const struct bench *b, enum mode m, enum field f)
{
	double v[256];
	unsigned n = MIN(b->o->runs, (unsigned)ARRAY_SIZE(v));

	for (unsigned i = 0; i < n; i++)
		v[i] = run_field(b, &b->res[m][i], f);
	return aggregate(v, n);
}

static unsigned mode_ok(const struct bench *b, enum mode m)
{
	unsigned k = 0;

	for (unsigned i = 0; i < b->o->runs; i++)
		k += b->res[m][i].done && !b->res[m][i].error;
	return k;
}

/* ---- output ---- */

static json_t *jnum_or_null(double v, bool integer)
{
	if (v < 0)
		return json_null();
	return integer ? json_integer((json_int_t)(v + 0.5)) : json_real(v);
}

static json_t *run_json(const struct bench *b, const struct run_result *r)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "ok", json_boolean(r->done && !r->error));
	json_object_set_new(o, "exit_code",
			    r->exit_code >= 0 ? json_integer(r->exit_code) : json_null());
	json_object_set_new(o, "ready_matched", json_boolean(r->ready_matched));
	json_object_set_new(o, "stopped", json_boolean(r->stopped));
	json_object_set_new(o, "timed_out", json_boolean(r->timed_out));
	json_object_set_new(o, "cache_was_empty", json_boolean(r->cache_was_empty));
	for (enum field f = 0; f < F_COUNT; f++)
		json_object_set_new(
			o, field_names[f],
			jnum_or_null(run_field(b, r, f), f >= F_BYTES && f <= F_VERIFIED));
	json_object_set_new(o, "cache_hits", jnum_or_null((double)r->c.hits, true));
	json_object_set_new(o, "cache_misses", jnum_or_null((double)r->c.misses, true));
	json_object_set_new(o, "latency_p50_ms", jnum_or_null(r->c.lat_p50_ms, false));
	json_object_set_new(o, "latency_p99_ms", jnum_or_null(r->c.lat_p99_ms, false));
	json_object_set_new(o, "counters_from", r->source ? json_string(r->source) : json_null());
	json_object_set_new(o, "daemon_exit",
			    r->daemon_status >= 0 ? json_integer(r->daemon_status) : json_null());
	json_object_set_new(o, "error", r->error ? json_string(r->error) : json_null());
	if (r->stats)
		json_object_set(o, "stats", r->stats);
	if (r->pull_stats)
		json_object_set(o, "pull", r->pull_stats);
	return o;
}

static json_t *agg_json(struct agg a, bool integer)
{
	if (!a.n)
		return json_null();
	return json_pack("{s:o, s:o, s:o}", "median", jnum_or_null(a.median, integer), "min",
			 jnum_or_null(a.min, integer), "max", jnum_or_null(a.max, integer));
}

static void print_json(struct bench *b)
{
	_cleanup_json_ json_t *root = json_object(), *opts = json_object(), *modes = json_object(),
			      *cmd = json_array();
	const struct bench_opts *o = b->o;

	if (!root || !opts || !modes || !cmd)
		return;
	for (char **c = o->cmd; *c; c++)
		json_array_append_new(cmd, json_string(*c));
	json_object_set_new(root, "image", json_string(o->image));
	json_object_set_new(root, "digest", json_string(b->digest));
	json_object_set_new(root, "size", json_integer((json_int_t)b->image_size));
	json_object_set_new(root, "data_size", json_integer((json_int_t)b->data_size));
	json_object_set_new(root, "chunks", json_integer((json_int_t)b->chunk_count));
	json_object_set_new(root, "stored_profile_chunks",
			    json_integer((json_int_t)b->prefetch_count));
	json_object_set(root, "command", cmd);
	json_object_set_new(opts, "runs", json_integer(o->runs));
	json_object_set_new(opts, "runtime", json_string(o->runc ? "runc" : "chroot"));
	json_object_set_new(opts, "view", json_string(o->view));
	json_object_set_new(opts, "minimal_view", json_string(o->minimal_view));
	json_object_set_new(opts, "ready", o->ready ? json_string(o->ready) : json_null());
	json_object_set_new(opts, "record", json_boolean(o->record));
	json_object_set_new(opts, "profile",
			    b->profile_path ? json_string(b->profile_path) : json_null());
	json_object_set_new(opts, "profile_source",
			    json_string(b->profile_path		? "file"
					: b->use_stored_profile ? "image"
								: "none"));
	json_object_set_new(opts, "emulated", json_boolean(o->rate || o->rtt));
	json_object_set_new(opts, "rate", o->rate ? json_string(o->rate) : json_null());
	json_object_set_new(opts, "rate_bytes_per_s",
			    o->rate ? json_integer((json_int_t)o->rate_bps) : json_null());
	json_object_set_new(opts, "rtt", o->rtt ? json_string(o->rtt) : json_null());
	json_object_set_new(opts, "rtt_ms",
			    o->rtt ? json_real((double)o->rtt_ns / 1e6) : json_null());
	json_object_set_new(opts, "timeout_s",
			    o->timeout_ns ? json_real(ns_to_s(o->timeout_ns)) : json_null());
	json_object_set_new(opts, "page_cache_dropped", json_boolean(b->can_drop));
	json_object_set(root, "options", opts);
	if (o->record && b->record.dir)
		json_object_set_new(root, "record", run_json(b, &b->record));
	for (enum mode m = 0; m < MODE_COUNT; m++) {
		json_t *mj, *runs, *sum;

		if (!b->res[m])
			continue;
		mj = json_object();
		runs = json_array();
		sum = json_object();
		for (unsigned i = 0; i < o->runs; i++)
			json_array_append_new(runs, run_json(b, &b->res[m][i]));
		json_object_set_new(sum, "runs_ok", json_integer(mode_ok(b, m)));
		for (enum field f = 0; f < F_COUNT; f++)
			json_object_set_new(
				sum, field_names[f],
				agg_json(mode_agg(b, m, f), f >= F_BYTES && f <= F_VERIFIED));
		json_object_set_new(mj, "runs", runs);
		json_object_set_new(mj, "summary", sum);
		json_object_set_new(modes, mode_names[m], mj);
	}
	json_object_set(root, "modes", modes);
	json_object_set(root, "warnings", b->warnings);
	json_dumpf(root, stdout, JSON_INDENT(2));
	putchar('\n');
}

static const char *fmt_s(double v, char *buf, size_t len)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v < 10)
		snprintf(buf, len, "%.3f", v);
	else
		snprintf(buf, len, "%.1f", v);
	return buf;
}

static const char *fmt_int(double v, char *buf, size_t len)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

static const char *fmt_b(double v, char *buf, size_t len)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		slimfs_fmt_bytes((uint64_t)v, buf, len);
	return buf;
}

/* An argument as a shell would need it: bare when safe, else in single quotes. */
static void print_arg(FILE *f, const char *a)
{
	bool safe = *a != '\0';

	for (const char *p = a; *p && safe; p++)
		safe = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9') || strchr("_./=:,+-@%", *p);
	if (safe) {
		fputs(a, f);
		return;
	}
	fputc('\'', f);
	for (; *a; a++)
		if (*a == '\'')
			fputs("'\\''", f);
		else
			fputc(*a, f);
	fputc('\'', f);
}

static void header_line(struct bench *b, FILE *f, bool md)
{
	const struct bench_opts *o = b->o;
	const char *q = md ? "`" : "";
	char size[32];

	slimfs_fmt_bytes(b->image_size, size, sizeof(size));
	fprintf(f, "%s %s: %s, %" PRIu64 " chunks; %u run%s per mode, %s runtime; network %s",
		md ? "**slimfs bench**" : "slimfs bench", o->image, size, b->chunk_count, o->runs,
		o->runs == 1 ? "" : "s", o->runc ? "runc" : "chroot",
		o->rate || o->rtt ? "emulated" : "not emulated");
	if (o->rate)
		fprintf(f, ", rate %s", o->rate);
	if (o->rtt)
		fprintf(f, ", rtt %s", o->rtt);
	if (o->rate && o->rate_bps)
		fprintf(f, " (whole image >= %.2f s)", (double)b->image_size / (double)o->rate_bps);
	fprintf(f, "%s\ncommand: %s", md ? "  " : "", q);
	for (char **c = o->cmd; *c; c++) {
		if (c != o->cmd)
			fputc(' ', f);
		print_arg(f, *c);
	}
	fputs(q, f);
	if (o->ready)
		fprintf(f, ", clock stops at a line matching %s%s%s", md ? "`" : "'", o->ready,
			md ? "`" : "'");
	fputc('\n', f);
}

static void cell(FILE *f, bool md, int width, const char *s, bool first)
{
	if (md)
		fprintf(f, "| %s ", s);
	else
		fprintf(f, "%s%*s", first ? "" : " ", width, s);
}

static void print_table(struct bench *b, FILE *f, bool md)
{
	static const char *const cols[] = {"mode",     "ok",	 "time median", "min",
					   "max",      "mount",	 "pull",	"fetched",
					   "requests", "chunks", "verified",	"share"};
	static const int width[] = {-8, 5, 12, 8, 8, 7, 7, 11, 8, 7, 8, 7};

	header_line(b, f, md);
	fputc('\n', f);
	for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
		cell(f, md, width[i], cols[i], i == 0);
	fprintf(f, "%s\n", md ? "|" : "");
	if (md) {
		for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
			fprintf(f, "|%s", i ? "---:" : "---");
		fprintf(f, "|\n");
	}
	for (enum mode m = 0; m < MODE_COUNT; m++) {
		char c[ARRAY_SIZE(cols)][32];
		struct agg t, sh;

		if (!b->res[m])
			continue;
		t = mode_agg(b, m, F_TOTAL);
		sh = mode_agg(b, m, F_SHARE);
		snprintf(c[0], 32, "%s", mode_names[m]);
		snprintf(c[1], 32, "%u/%u", mode_ok(b, m), b->o->runs);
		fmt_s(t.median, c[2], 32);
		if (t.median >= 0)
			strcat(c[2], " s");
		fmt_s(t.min, c[3], 32);
		fmt_s(t.max, c[4], 32);
		fmt_s(mode_agg(b, m, F_MOUNT).median, c[5], 32);
		fmt_s(mode_agg(b, m, F_PULL).median, c[6], 32);
		fmt_b(mode_agg(b, m, F_BYTES).median, c[7], 32);
		fmt_int(mode_agg(b, m, F_REQUESTS).median, c[8], 32);
		fmt_int(mode_agg(b, m, F_FETCHED).median, c[9], 32);
		fmt_int(mode_agg(b, m, F_VERIFIED).median, c[10], 32);
		if (sh.median >= 0)
			snprintf(c[11], 32, "%.1f%%", sh.median * 100);
		else
			snprintf(c[11], 32, "-");
		for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
			cell(f, md, width[i], c[i], i == 0);
		fprintf(f, "%s\n", md ? "|" : "");
	}
	fprintf(f,
		"\n%stimes in seconds, medians over the runs that completed; fetched = bytes "
		"over the network (pull + mount)%s\n",
		md ? "_" : "", md ? "_" : "");
	if (json_array_size(b->warnings)) {
		size_t i;
		json_t *w;

		fprintf(f, "\n%swarnings:%s\n", md ? "**" : "", md ? "**" : "");
		json_array_foreach(b->warnings, i, w)
			fprintf(f, "%s %s\n", md ? "-" : "  !", json_string_value(w));
	}
}

static void xml_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			/* Control characters are not allowed in XML 1.0. */
			fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
		}
	}
}

/* A "nice" axis maximum: 1, 2, 2.5 or 5 times a power of ten at or above v. */
static double nice_max(double v)
{
	double p = 1, m;

	if (v <= 0)
		return 1;
	while (v / p >= 10)
		p *= 10;
	while (v / p < 1)
		p /= 10;
	m = v / p;
	return p * (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10);
}

static int write_chart(struct bench *b, const char *path)
{
	const int W = 760, left = 110, right = 150, row = 34, bar = 18;
	const int plot = W - left - right;
	enum mode shown[MODE_COUNT];
	unsigned n = 0;
	double tmax = 0, bmax = (double)b->image_size;
	int panel_h, H, y;
	_cleanup_free_ char *tmp = NULL;
	FILE *f;

	for (enum mode m = 0; m < MODE_COUNT; m++) {
		if (!b->res[m])
			continue;
		shown[n++] = m;
		tmax = MAX(tmax, mode_agg(b, m, F_TOTAL).max);
		bmax = MAX(bmax, mode_agg(b, m, F_BYTES).max);
	}
	tmax = nice_max(tmax);
	bmax = nice_max(bmax / 1048576.0) * 1048576.0;
	panel_h = 40 + (int)n * row + 30;
	H = 70 + 2 * panel_h;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	f = fopen(tmp, "we");
	if (!f)
		return log_error_errno(-errno, "cannot write '%s'", tmp);
	fprintf(f,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		"<text x=\"%d\" y=\"24\" font-size=\"15\" font-weight=\"bold\">slimfs bench: ",
		W, H, W, H, 10);
	xml_escape(f, b->o->image);
	fprintf(f, "</text>\n<text x=\"10\" y=\"44\" fill=\"#555\">");
	{
		char size[32];

		slimfs_fmt_bytes(b->image_size, size, sizeof(size));
		fprintf(f, "image %s, %u run%s per mode, network %s", size, b->o->runs,
			b->o->runs == 1 ? "" : "s",
			b->o->rate || b->o->rtt ? "emulated" : "not emulated");
		if (b->o->rate) {
			fputs(": rate ", f);
			xml_escape(f, b->o->rate);
		}
		if (b->o->rtt) {
			fputs(", rtt ", f);
			xml_escape(f, b->o->rtt);
		}
	}
	fprintf(f, "</text>\n");

	for (int panel = 0; panel < 2; panel++) {
		int top = 70 + panel * panel_h;
		double vmax = panel ? bmax : tmax;

		fprintf(f, "<text x=\"10\" y=\"%d\" font-weight=\"bold\">%s</text>\n", top + 14,
			panel ? "bytes fetched (median; dashed: image size)"
			      : "time to ready, seconds (median; whiskers: min to max)");
		/* Axis with 5 ticks. */
		for (int t = 0; t <= 4; t++) {
			int x = left + plot * t / 4;
			double v = vmax * t / 4;

			fprintf(f,
				"<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n"
				"<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">",
				x, top + 26, x, top + 30 + (int)n * row, x,
				top + 44 + (int)n * row);
			if (panel)
				fprintf(f, "%.4g MiB", v / 1048576.0);
			else
				fprintf(f, "%.4g", v);
			fprintf(f, "</text>\n");
		}
		for (unsigned i = 0; i < n; i++) {
			enum mode m = shown[i];
			struct agg a = mode_agg(b, m, panel ? F_BYTES : F_TOTAL);
			char label[48];

			y = top + 30 + (int)i * row;
			fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n",
				left - 8, y + bar / 2 + 4, mode_names[m]);
			if (!a.n) {
				fprintf(f,
					"<text x=\"%d\" y=\"%d\" fill=\"#a00\">no completed "
					"run</text>\n",
					left + 4, y + bar / 2 + 4);
				continue;
			}
			double w = plot * a.median / vmax;
			fprintf(f,
				"<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
				"fill=\"%s\"/>\n",
				left, y, w, bar, mode_colors[m]);
			if (!panel && a.max > a.min) {
				double x1 = left + plot * a.min / vmax,
				       x2 = left + plot * a.max / vmax;
				int ym = y + bar / 2;

				fprintf(f,
					"<path d=\"M%.1f %d H%.1f M%.1f %d V%d M%.1f %d V%d\" "
					"stroke=\"#222\" stroke-width=\"1.5\" fill=\"none\"/>\n",
					x1, ym, x2, x1, ym - 6, ym + 6, x2, ym - 6, ym + 6);
			}
			if (panel) {
				slimfs_fmt_bytes((uint64_t)a.median, label, sizeof(label));
				struct agg sh = mode_agg(b, m, F_SHARE);

				if (sh.n)
					snprintf(label + strlen(label),
						 sizeof(label) - strlen(label), " (%.1f%%)",
						 sh.median * 100);
			} else {
				snprintf(label, sizeof(label), "%.3f s", a.median);
			}
			fprintf(f, "<text x=\"%.1f\" y=\"%d\">%s</text>\n",
				left + plot * (panel ? a.median : a.max) / vmax + 6,
				y + bar / 2 + 4, label);
		}
		if (panel && b->image_size) {
			double x = left + plot * (double)b->image_size / vmax;

			fprintf(f,
				"<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#000\" "
				"stroke-dasharray=\"4 3\"/>\n",
				x, top + 24, x, top + 32 + (int)n * row);
		}
	}
	fprintf(f, "</svg>\n");
	if (fflush(f) != 0 || ferror(f)) {
		fclose(f);
		unlink(tmp);
		return log_error_errno(-EIO, "cannot write '%s'", tmp);
	}
	fclose(f);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return log_error_errno(-errno, "cannot rename '%s' to '%s'", tmp, path);
	}
	return 0;
}

/* ---- the whole benchmark ---- */

static int parse_modes(const char *s, bool modes[MODE_COUNT])
{
	_cleanup_free_ char *dup = strdup(s);
	char *save = NULL, *tok;
	bool any = false;

	if (!dup)
		return -ENOMEM;
	memset(modes, 0, MODE_COUNT * sizeof(bool));
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		enum mode m;

		if (strcmp(tok, "all") == 0) {
			for (m = 0; m < MODE_COUNT; m++)
				modes[m] = true;
			any = true;
			continue;
		}
		for (m = 0; m < MODE_COUNT; m++)
			if (strcmp(tok, mode_names[m]) == 0)
				break;
		if (m == MODE_COUNT) {
			log_error("--modes: unknown mode '%s' (lazy, profile, minimal, full)", tok);
			return -EINVAL;
		}
		modes[m] = any = true;
	}
	if (!any) {
		log_error("--modes: no mode given");
		return -EINVAL;
	}
	return 0;
}

/* Checks what the options need of the sub-commands; may drop modes. */
static int check_caps(struct bench *b)
{
	struct bench_opts *o = b->o;
	const struct caps *c = &b->caps;

	if ((o->rate && !c->rate) || (o->rtt && !c->rtt)) {
		log_error("this slimfs mount has no %s: network emulation is not available",
			  o->rate && !c->rate ? "--rate" : "--rtt");
		return -ENOTSUP;
	}
	if (o->record && (!c->trace || !c->profile)) {
		log_error("--record needs 'slimfs mount --trace' and 'slimfs profile', which this "
			  "slimfs lacks");
		return -ENOTSUP;
	}
	if (o->modes[MODE_FULL] && !c->pull) {
		log_error("mode full needs 'slimfs pull', which this slimfs lacks");
		return -ENOTSUP;
	}
	if (o->modes[MODE_FULL] && o->rate && !c->pull_rate)
		warnf(b, "slimfs pull has no --rate: the full mode's pull is not emulated");
	if (!c->stats)
		warnf(b, "no 'slimfs stats': counters come from the daemon's summary "
			 "(approximate bytes, no request counts)");
	if (o->modes[MODE_MINIMAL] && !b->has_minimal_view) {
		warnf(b, "the image has no view '%s': mode minimal skipped (build --view %s=ALLOW)",
		      o->minimal_view, o->minimal_view);
		o->modes[MODE_MINIMAL] = false;
	}
	if (o->modes[MODE_PROFILE] || o->modes[MODE_MINIMAL]) {
		bool given = o->record || o->profile;

		if (given && !c->prefetch_profile) {
			free(b->profile_path);
			b->profile_path = NULL;
		}
		if (!given || !c->prefetch_profile)
			b->use_stored_profile = c->prefetch && b->prefetch_count > 0;
		if (given && !c->prefetch_profile)
			warnf(b,
			      "this slimfs mount has no --prefetch-profile: the %s profile is not "
			      "used; the profile and minimal modes prefetch %s",
			      o->record ? "recorded" : "given",
			      b->use_stored_profile ? "the image's stored profile" : "nothing");
		else if (!given && !c->prefetch)
			warnf(b, "this slimfs mount has no --prefetch: the profile and minimal "
				 "modes prefetch nothing");
		else if (!given && !b->prefetch_count)
			warnf(b, "the image has no stored profile (build --profile) and neither "
				 "--record nor --profile was given: the profile and minimal modes "
				 "prefetch nothing");
	}
	for (enum mode m = 0; m < MODE_COUNT; m++)
		if (o->modes[m])
			return 0;
	log_error("no mode left to run");
	return -EINVAL;
}

static void report_run(struct bench *b, const char *what, unsigned i, const struct run_result *r)
{
	char by[32], e[48], num[32];
	double bytes = run_field(b, r, F_BYTES), req = run_field(b, r, F_REQUESTS);

	if (b->o->verbosity < 0)
		return;
	if (strcmp(what, "record") == 0)
		snprintf(num, sizeof(num), "(traced)");
	else
		snprintf(num, sizeof(num), "%u/%u", i + 1, b->o->runs);
	if (!r->done) {
		fprintf(stderr, "bench: %s run %s: %s\n", what, num,
			r->error ? r->error : "failed");
		return;
	}
	fprintf(stderr, "bench: %s run %s: %s in %.3f s (mount %.3f s", what, num,
		r->ready_matched    ? "ready"
		: r->exit_code == 0 ? "done"
				    : exit_desc(r->exit_code, e, sizeof(e)),
		r->total_s, r->mount_s);
	if (r->pull_stats)
		fprintf(stderr, ", pull %.3f s", r->pull_s);
	fprintf(stderr, "), fetched %s", fmt_b(bytes, by, sizeof(by)));
	if (req >= 0)
		fprintf(stderr, " in %.0f requests", req);
	fprintf(stderr, "\n");
}

/* Copies src to dst through a temporary file and a rename. */
static int copy_file(const char *src, const char *dst)
{
	_cleanup_free_ char *data = read_file_str(src);

	if (!data)
		return log_error_errno(-EIO, "cannot read '%s'", src);
	return slimfs_write_file_replace(dst, data, strlen(data), 0644);
}

static int make_profile(struct bench *b)
{
	_cleanup_free_ char *trace = NULL, *out = NULL, *log = NULL;
	_cleanup_close_ int logfd = -1;
	struct strv a = {0};
	int r;

	if (asprintf(&trace, "%s/trace", b->record.dir) < 0 ||
	    asprintf(&out, "%s/profile", b->work) < 0 ||
	    asprintf(&log, "%s/profile.log", b->work) < 0)
		return -ENOMEM;
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	r = strv_add(&a, "slimfs", "profile", trace, "-o", out, NULL);
	if (r == 0)
		r = run_capture(SELF_EXE, a.v, NULL, logfd, b->o->timeout_ns, true);
	strv_free(&a);
	if (r != 0) {
		log_error("slimfs profile '%s' failed (%s)", trace,
			  r < 0 ? strerror(-r) : "non-zero exit");
		log_tail(log, "slimfs profile's output");
		return -EIO;
	}
	free(b->profile_path);
	b->profile_path = steal_ptr(&out);
	return 0;
}

static int bench_run(struct bench *b)
{
	struct bench_opts *o = b->o;
	int r, ret = 0;

	if (o->record) {
		if (o->verbosity >= 0)
			fprintf(stderr, "bench: recording a profile (traced lazy run)\n");
		r = do_run(b, MODE_LAZY, 0, true, &b->record);
		if (r == -EINTR || interrupted)
			return -EINTR;
		report_run(b, "record", 0, &b->record);
		if (r < 0 || !b->record.done)
			return log_error_errno(r < 0 ? r : -EIO, "the recording run failed");
		r = make_profile(b);
		if (r < 0)
			return r;
		if (o->profile_out && copy_file(b->profile_path, o->profile_out) < 0)
			return -EIO;
		if (o->verbosity >= 0)
			fprintf(stderr, "bench: profile written to '%s'\n",
				o->profile_out ? o->profile_out : b->profile_path);
		if (!b->caps.prefetch_profile) {
			free(b->profile_path);
			b->profile_path = NULL;
		}
	}
	for (unsigned i = 0; i < o->runs; i++)
		for (enum mode m = 0; m < MODE_COUNT; m++) {
			if (!b->res[m])
				continue;
			r = do_run(b, m, i, false, &b->res[m][i]);
			if (r == -EINTR || interrupted)
				return -EINTR;
			report_run(b, mode_names[m], i, &b->res[m][i]);
			if (r < 0 || b->res[m][i].error)
				ret = -EIO;
		}
	/* Sanity: spread and failures. */
	for (enum mode m = 0; m < MODE_COUNT; m++) {
		struct agg t;
		unsigned failed = 0;

		if (!b->res[m])
			continue;
		t = mode_agg(b, m, F_TOTAL);
		if (t.n > 1 && t.min > 0 && t.max / t.min > SPREAD_WARN)
			warnf(b,
			      "%s: times vary by %.0f%% (%.3f to %.3f s): a noisy machine or a "
			      "workload that varies; more runs help",
			      mode_names[m], (t.max / t.min - 1) * 100, t.min, t.max);
		for (unsigned i = 0; i < o->runs; i++)
			failed += b->res[m][i].done && b->res[m][i].exit_code != 0 &&
				  !b->res[m][i].ready_matched;
		if (failed)
			warnf(b, "%s: CMD failed in %u of %u runs", mode_names[m], failed, o->runs);
		if (mode_ok(b, m) < o->runs)
			ret = -EIO;
	}
	return ret;
}

static void bench_free(struct bench *b)
{
	for (enum mode m = 0; m < MODE_COUNT; m++) {
		for (unsigned i = 0; b->res[m] && i < b->o->runs; i++) {
			json_decref(b->res[m][i].stats);
			json_decref(b->res[m][i].pull_stats);
			free(b->res[m][i].error);
			free(b->res[m][i].dir);
		}
		free(b->res[m]);
	}
	json_decref(b->record.stats);
	json_decref(b->record.pull_stats);
	free(b->record.error);
	free(b->record.dir);
	for (char **e = b->env; e && *e; e++)
		free(*e);
	free(b->env);
	free(b->cwd);
	free(b->profile_path);
	json_decref(b->runc_tmpl);
	json_decref(b->warnings);
	if (b->ready_compiled)
		regfree(&b->ready_re);
	free(b->work);
}

int cmd_bench(int argc, char **argv)
{
	enum {
		OPT_RECORD = 256,
		OPT_PROFILE,
		OPT_PROFILE_OUT,
		OPT_READY,
		OPT_RATE,
		OPT_RTT,
		OPT_RUNTIME,
		OPT_VIEW,
		OPT_MINVIEW,
		OPT_TIMEOUT,
		OPT_MOUNT_ARG,
		OPT_JSON,
		OPT_MARKDOWN,
		OPT_CHART,
		OPT_WORKDIR,
		OPT_KEEP,
		OPT_SHOW,
	};
	static const struct option longopts[] = {
		{"runs", required_argument, NULL, 'n'},
		{"modes", required_argument, NULL, 'm'},
		{"record", no_argument, NULL, OPT_RECORD},
		{"profile", required_argument, NULL, OPT_PROFILE},
		{"profile-out", required_argument, NULL, OPT_PROFILE_OUT},
		{"ready", required_argument, NULL, OPT_READY},
		{"rate", required_argument, NULL, OPT_RATE},
		{"rtt", required_argument, NULL, OPT_RTT},
		{"runtime", required_argument, NULL, OPT_RUNTIME},
		{"view", required_argument, NULL, OPT_VIEW},
		{"minimal-view", required_argument, NULL, OPT_MINVIEW},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"mount-arg", required_argument, NULL, OPT_MOUNT_ARG},
		{"json", no_argument, NULL, OPT_JSON},
		{"markdown", no_argument, NULL, OPT_MARKDOWN},
		{"chart", required_argument, NULL, OPT_CHART},
		{"workdir", required_argument, NULL, OPT_WORKDIR},
		{"keep", no_argument, NULL, OPT_KEEP},
		{"show-output", no_argument, NULL, OPT_SHOW},
		{"quiet", no_argument, NULL, 'q'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct bench_opts o = {.runs = DEFAULT_RUNS,
			       .modes = {true, true, true, true},
			       .view = "full",
			       .minimal_view = "minimal",
			       .timeout_ns = DEFAULT_TIMEOUT_NS};
	struct bench b = {.o = &o};
	struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term, old_hup;
	const char *runtime = "chroot";
	unsigned long v;
	char *end;
	int c, r, dd, ret = 1;

	/* CMD is what follows the first '--': its options are its own. Before it,
	 * options may come before or after IMAGE. */
	for (dd = 1; dd < argc && strcmp(argv[dd], "--") != 0; dd++)
		;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(dd, argv, "n:m:qvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 || v > 100) {
				log_error("--runs: '%s' is not a number in 1..100", optarg);
				goto usage;
			}
			o.runs = (unsigned)v;
			break;
		case 'm':
			if (parse_modes(optarg, o.modes) < 0)
				goto usage;
			break;
		case OPT_RECORD:
			o.record = true;
			break;
		case OPT_PROFILE:
			o.profile = optarg;
			break;
		case OPT_PROFILE_OUT:
			o.profile_out = optarg;
			break;
		case OPT_READY:
			o.ready = optarg;
			break;
		case OPT_RATE:
			if (slimfs_parse_rate(optarg, &o.rate_bps) < 0 || !o.rate_bps) {
				log_error("--rate: '%s' is not a rate (e.g. 100mbit, 12.5MB/s)",
					  optarg);
				goto usage;
			}
			o.rate = optarg;
			break;
		case OPT_RTT:
			if (slimfs_parse_duration(optarg, 1000000, &o.rtt_ns) < 0) {
				log_error("--rtt: '%s' is not a duration (e.g. 20ms)", optarg);
				goto usage;
			}
			o.rtt = optarg;
			break;
		case OPT_RUNTIME:
			runtime = optarg;
			if (strcmp(optarg, "runc") != 0 && strcmp(optarg, "chroot") != 0) {
				log_error("--runtime: '%s' is not chroot or runc", optarg);
				goto usage;
			}
			o.runc = strcmp(optarg, "runc") == 0;
			break;
		case OPT_VIEW:
			o.view = optarg;
			break;
		case OPT_MINVIEW:
			o.minimal_view = optarg;
			break;
		case OPT_TIMEOUT:
			if (slimfs_parse_duration(optarg, 1000000000, &o.timeout_ns) < 0) {
				log_error("--timeout: '%s' is not a duration (e.g. 90s, 10m)",
					  optarg);
				goto usage;
			}
			break;
		case OPT_MOUNT_ARG:
			if (strv_push(&o.mount_args, optarg) < 0)
				goto out;
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_MARKDOWN:
			o.markdown = true;
			break;
		case OPT_CHART:
			o.chart = optarg;
			break;
		case OPT_WORKDIR:
			o.workdir = optarg;
			break;
		case OPT_KEEP:
			o.keep = true;
			break;
		case OPT_SHOW:
			o.show_output = true;
			break;
		case 'q':
			o.verbosity = -1;
			slimfs_log_set_level(SLIMFS_LOG_WARN);
			break;
		case 'v':
			o.verbosity++;
			slimfs_log_set_level(o.verbosity > 1 ? SLIMFS_LOG_DEBUG : SLIMFS_LOG_INFO);
			break;
		case 'h':
			bench_usage(stdout);
			ret = 0;
			goto out;
		default:
			log_error("bench: unknown option or missing argument '%s'",
				  argv[optind - 1]);
			goto usage;
		}
	}
	if (optind >= dd) {
		log_error("bench: no IMAGE given");
		goto usage;
	}
	o.image = argv[optind++];
	if (optind < dd) {
		log_error("bench: '%s' after IMAGE: one IMAGE, and CMD after '--'", argv[optind]);
		goto usage;
	}
	if (dd + 1 >= argc) {
		log_error("bench: no CMD given (slimfs bench IMAGE -- CMD [ARGS...])");
		goto usage;
	}
	o.cmd = argv + dd + 1;
	if (o.json && o.markdown) {
		log_error("bench: --json and --markdown are exclusive");
		goto usage;
	}
	if (o.profile_out && !o.record) {
		log_error("bench: --profile-out needs --record");
		goto usage;
	}
	if (o.record && o.profile) {
		log_error("bench: --record and --profile are exclusive");
		goto usage;
	}
	if (o.record && !o.modes[MODE_PROFILE] && !o.modes[MODE_MINIMAL])
		log_warn("--record without the profile or minimal mode: the profile is made but "
			 "not used");
	(void)runtime;

	b.warnings = json_array();
	if (!b.warnings)
		goto out;
	if (o.ready) {
		char err[128];

		r = regcomp(&b.ready_re, o.ready, REG_EXTENDED | REG_NOSUB);
		if (r) {
			regerror(r, &b.ready_re, err, sizeof(err));
			log_error("--ready: '%s' is not a POSIX extended regex: %s", o.ready, err);
			goto usage;
		}
		b.ready_compiled = true;
	}
	if (o.profile) {
		if (access(o.profile, R_OK) < 0) {
			log_error_errno(-errno, "--profile: cannot read '%s'", o.profile);
			goto out;
		}
		b.profile_path = realpath(o.profile, NULL);
		if (!b.profile_path)
			goto out;
	}
	if (geteuid() != 0) {
		log_error("slimfs bench needs root: FUSE mounts, chroot, mount and PID namespaces, "
			  "dropping the page cache");
		goto out;
	}
	b.can_drop = true;
	if (o.runc) {
		if (run_quiet(10000000000ull, "runc", "--version", NULL) != 0) {
			log_error("--runtime runc: 'runc --version' failed: is runc installed?");
			goto out;
		}
	}

	detect_caps(&b.caps);
	r = load_image(&b);
	if (r < 0)
		goto out;
	if (check_caps(&b) < 0)
		goto out;

	{
		/* Always a new directory of our own, in --workdir, $TMPDIR or /var/tmp. */
		const char *t = o.workdir ? o.workdir : getenv("TMPDIR");

		if (asprintf(&b.work, "%s/slimfs-bench.XXXXXX", t && *t ? t : "/var/tmp") < 0) {
			b.work = NULL;
			goto out;
		}
		if (!mkdtemp(b.work)) {
			log_error_errno(-errno, "cannot make a scratch directory '%s'", b.work);
			goto out;
		}
	}
	if (!b.work)
		goto out;
	for (enum mode m = 0; m < MODE_COUNT; m++)
		if (o.modes[m] && !(b.res[m] = calloc(o.runs, sizeof(**b.res))))
			goto out_work;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	if (o.runc && make_runc_template(&b) < 0)
		goto out_signals;
	if (o.verbosity >= 0) {
		char size[32];

		slimfs_fmt_bytes(b.image_size, size, sizeof(size));
		fprintf(stderr, "bench: %s (%s, %" PRIu64 " chunks), scratch '%s'%s%s%s%s%s\n",
			o.image, size, b.chunk_count, b.work, o.rate || o.rtt ? ", emulated" : "",
			o.rate ? " rate " : "", o.rate ? o.rate : "", o.rtt ? " rtt " : "",
			o.rtt ? o.rtt : "");
	}
	r = bench_run(&b);
	if (r == -EINTR) {
		log_error("interrupted");
		goto out_signals;
	}
	if (o.json)
		print_json(&b);
	else
		print_table(&b, stdout, o.markdown);
	fflush(stdout);
	if (o.chart && write_chart(&b, o.chart) < 0)
		r = -EIO;
	ret = r < 0 ? 1 : 0;
out_signals:
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
out_work:
	if (b.work && !o.keep) {
		rm_tree(b.work);
	} else if (b.work && o.verbosity >= 0) {
		fprintf(stderr, "bench: kept '%s'\n", b.work);
	}
out:
	bench_free(&b);
	strv_free(&o.mount_args);
	return ret;
usage:
	fprintf(stderr, "see 'slimfs bench --help'\n");
	bench_free(&b);
	strv_free(&o.mount_args);
	return EXIT_USAGE;
}
