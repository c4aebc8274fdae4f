// SPDX-License-Identifier: MIT
/* Mount statistics: collection, text/JSON/Prometheus rendering, unix socket server. */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "idle.h"
#include "notify.h"
#include "stats.h"

/* How long a stats socket that still answers may take to go (see slimfs_stats_serve). */
#define STATS_BUSY_WAIT_MS 2000u

int slimfs_stats_dir(char *out, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (geteuid() == 0)
		n = snprintf(out, len, "/run/slimfs");
	else if (xdg && xdg[0] == '/')
		n = snprintf(out, len, "%s/slimfs", xdg);
	else
		n = snprintf(out, len, "/tmp/slimfs-%u", (unsigned)geteuid());
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int slimfs_stats_socket_path(const char *mountpoint, char *out, size_t len)
{
	char real[PATH_MAX], dir[PATH_MAX], name[PATH_MAX * 4 + 8];
	size_t k = 0;
	const char *p;
	int r, n;

	if (!realpath(mountpoint, real))
		return -errno;
	r = slimfs_stats_dir(dir, sizeof(dir));
	if (r < 0)
		return r;
	/* systemd-escape --path: no leading/trailing '/', '/' -> '-', others \xHH */
	for (p = real; *p == '/'; p++)
		;
	if (!*p)
		name[k++] = '-';
	for (; *p; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch == '/') {
			if (p[1] && p[1] != '/')
				name[k++] = '-';
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			   (ch >= '0' && ch <= '9') || ch == '_' || (ch == '.' && k > 0) ||
			   ch == ':') {
			name[k++] = (char)ch;
		} else {
			k += (size_t)snprintf(name + k, 5, "\\x%02x", ch);
		}
	}
	name[k] = '\0';
	n = snprintf(out, len, "%s/%s.sock", dir, name);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		/* Too long for a socket address: a digest of the path instead. */
		uint8_t d[32];
		char hex[65];

		slimfs_sha256(real, strlen(real), d);
		slimfs_hex(d, 16, hex);
		n = snprintf(out, len, "%s/h-%s.sock", dir, hex);
		if (n < 0 || (size_t)n >= len)
			return -ENAMETOOLONG;
	}
	return 0;
}

/* --- collection */

struct metric {
	const char *section, *key; /* JSON: section.key; Prometheus: slimfs_<section>_<key> */
	const char *type;	   /* "counter" or "gauge" */
	const char *help;
	double value;
};

struct snapshot {
	struct metric m[72];
	unsigned n;
	char *hints[SLIMFS_HINTS];
	unsigned nhints;
	struct slimfs_prefetch_progress pp;
	char digest[72];
	double uptime;
};

static void add(struct snapshot *s, const char *section, const char *key, const char *type,
		const char *help, double v)
{
	if (s->n < ARRAY_SIZE(s->m))
		s->m[s->n++] = (struct metric){section, key, type, help, v};
}

static uint64_t ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void collect(const struct slimfs_stats_src *src, struct snapshot *s)
{
	struct slimfs_fs *fs = src->fs;
	struct slimfs_backend *b = fs->img->backend;
	struct slimfs_cache_stats cs;
	struct slimfs_notify_stats ns;
	struct slimfs_idle_stats is;
	const char *C = "counter", *G = "gauge";

	memset(s, 0, sizeof(*s));
	slimfs_idle_stats(src->idle, &is);
	slimfs_cache_stats(fs->cache, &cs);
	/* Set once the session exists, while this server already runs. */
	slimfs_notify_stats(__atomic_load_n(&fs->notify, __ATOMIC_ACQUIRE), &ns);
	slimfs_prefetch_progress(src->prefetch, &s->pp);
	slimfs_index_digest_str(fs->idx, s->digest);
	s->uptime = (double)(slimfs_now_ns() - src->start_ns) / 1e9;
	s->nhints = slimfs_fs_hints(fs, s->hints);

	add(s, "fetch", "requests", C, "range requests that succeeded",
	    (double)ld(&b->stats.requests));
	add(s, "fetch", "bytes", C, "bytes received from the source", (double)ld(&b->stats.bytes));
	add(s, "fetch", "errors", C, "requests that failed after all retries",
	    (double)ld(&b->stats.errors));
	add(s, "fetch", "retries", C, "extra attempts", (double)ld(&b->stats.retries));
	add(s, "fetch", "latency_p50_us", G, "request latency, 50th percentile (bucket bound)",
	    (double)slimfs_fetch_stats_percentile(&b->stats, 50));
	add(s, "fetch", "latency_p90_us", G, "request latency, 90th percentile (bucket bound)",
	    (double)slimfs_fetch_stats_percentile(&b->stats, 90));
	add(s, "fetch", "latency_p99_us", G, "request latency, 99th percentile (bucket bound)",
	    (double)slimfs_fetch_stats_percentile(&b->stats, 99));
	add(s, "cache", "requests", C, "chunk requests", (double)cs.requests);
	add(s, "cache", "mem_hits", C, "chunks found decoded in memory", (double)cs.hits);
	add(s, "cache", "mem_waits", C, "chunks being loaded by another thread, waited for",
	    (double)cs.waits);
	add(s, "cache", "mem_misses", C, "chunk loads started", (double)cs.misses);
	add(s, "cache", "mem_bytes", G, "decoded bytes held in memory", (double)cs.mem_bytes);
	add(s, "cache", "mem_entries", G, "chunks held in memory", (double)cs.mem_entries);
	add(s, "cache", "mem_evictions", C, "chunks dropped from memory", (double)cs.evictions);
	add(s, "cache", "mem_demoted", C,
	    "chunks read once and stored in the page cache, evicted first", (double)cs.demoted);
	add(s, "cache", "disk_hits", C, "chunks read from the disk cache", (double)cs.disk_hits);
	add(s, "cache", "disk_misses", C, "chunks not in the disk cache", (double)cs.disk_misses);
	add(s, "cache", "disk_stores", C, "chunks stored in the disk cache",
	    (double)cs.disk_stores);
	add(s, "cache", "fetches", C, "backend reads for chunks", (double)cs.fetches);
	add(s, "cache", "fetched_bytes", C, "compressed chunk bytes fetched",
	    (double)cs.bytes_fetched);
	add(s, "cache", "coalesced_chunks", C, "chunks that shared a range request",
	    (double)cs.coalesced);
	add(s, "cache", "held_off", C, "requests answered by a recent error", (double)cs.held_off);
	add(s, "cache", "peek_hits", C, "bytes looked up without loading: in a decoded chunk",
	    (double)cs.peek_hits);
	add(s, "cache", "edge_hits", C, "... in the ends kept of an evicted chunk",
	    (double)cs.edge_hits);
	add(s, "cache", "peek_misses", C, "... not in memory", (double)cs.peek_misses);
	add(s, "verify", "ok", C, "chunks that passed verification", (double)cs.verified);
	add(s, "verify", "frames_reused", C,
	    "... of them frames of a leased local image that had matched their SHA-256",
	    (double)cs.frames_reused);
	add(s, "verify", "failed", C, "chunks that failed verification",
	    (double)cs.verify_failures);
	add(s, "prefetch", "planned_chunks", G, "chunks the prefetcher plans to load",
	    (double)s->pp.total);
	add(s, "prefetch", "done_chunks", G, "planned chunks processed", (double)s->pp.done);
	add(s, "prefetch", "planned_bytes", G, "compressed bytes planned",
	    (double)s->pp.total_bytes);
	add(s, "prefetch", "done_bytes", G, "compressed bytes processed", (double)s->pp.done_bytes);
	add(s, "prefetch", "failed_chunks", C, "planned chunks that failed", (double)s->pp.failed);
	add(s, "prefetch", "finished", G, "1 once the plan is done", s->pp.finished ? 1 : 0);
	add(s, "prefetch", "loaded_chunks", C, "chunks loaded by prefetch or read-ahead",
	    (double)cs.background);
	add(s, "prefetch", "loaded_bytes", C, "their compressed bytes",
	    (double)cs.background_bytes);
	add(s, "prefetch", "readahead_jobs", C, "read-ahead jobs queued",
	    (double)s->pp.readahead_jobs);
	add(s, "prefetch", "readahead_dropped", C, "read-ahead jobs dropped (queue full)",
	    (double)s->pp.readahead_dropped);
	add(s, "prefetch", "elf_ahead_files", C, "libraries fetched ahead of ld.so (no profile)",
	    (double)atomic_load(&fs->stats.elf_ahead_files));
	add(s, "pagecache", "stored_pages", C, "pages pushed into the kernel's page cache",
	    (double)ns.stored_pages);
	add(s, "pagecache", "stored_bytes", C, "their bytes", (double)ns.stored_bytes);
	add(s, "pagecache", "dropped_jobs", C, "fills dropped (queue full)",
	    (double)ns.dropped_jobs);
	add(s, "pagecache", "dropped_pages", C, "pages those would have stored",
	    (double)ns.dropped_pages);
	add(s, "pagecache", "coalesced_jobs", C, "fills already queued or just done",
	    (double)ns.coalesced);
	add(s, "pagecache", "failed_stores", C, "stores the kernel refused", (double)ns.failed);
	add(s, "pagecache", "pushed_files", C, "files pushed whole ahead of a tree walk",
	    (double)atomic_load(&fs->stats.pushed_files));
	add(s, "pagecache", "seam_pages", C, "pages an extent shares with a neighbour, stored",
	    (double)ns.seam_pages);
	add(s, "pagecache", "seams_missed", C, "such pages not stored: a neighbour not in memory",
	    (double)ns.seams_missed);
	add(s, "fs", "lookups", C, "lookups", (double)atomic_load(&fs->stats.lookups));
	add(s, "fs", "negative_lookups", C, "lookups of missing or hidden names",
	    (double)atomic_load(&fs->stats.negative_lookups));
	add(s, "fs", "reads", C, "read requests", (double)atomic_load(&fs->stats.reads));
	add(s, "fs", "read_bytes", C, "bytes read", (double)atomic_load(&fs->stats.read_bytes));
	add(s, "fs", "read_errors", C, "reads answered with an error",
	    (double)atomic_load(&fs->stats.read_errors));
	add(s, "fs", "io_errors", C, "corruption answered with EIO",
	    (double)atomic_load(&fs->stats.io_errors));
	add(s, "hidden", "lookups", C, "lookups of entries the view hides",
	    (double)atomic_load(&fs->stats.hidden_by_view));
	add(s, "hidden", "paths", C, "distinct hidden paths looked up",
	    (double)atomic_load(&fs->stats.hidden_paths));
	add(s, "memory", "rss_anon_bytes", G, "the daemon's anonymous resident memory",
	    (double)slimfs_rss_anon());
	add(s, "memory", "idle_releases", C, "memory given back after an idle spell",
	    (double)is.releases);
	add(s, "memory", "idle_released_bytes", G, "anonymous memory the last release gave back",
	    (double)is.last_bytes);
	add(s, "memory", "idle_released_chunk_bytes", G, "... of it decoded chunks dropped",
	    (double)is.last_chunk_bytes);
	add(s, "mount", "uptime_seconds", G, "seconds since the mount", s->uptime);
	add(s, "mount", "offline", G, "1 when serving from the cache only",
	    fs->img->offline ? 1 : 0);
}

static void snapshot_free(struct snapshot *s)
{
	for (unsigned i = 0; i < s->nhints; i++)
		free(s->hints[i]);
}

/* --- rendering */

static char *render_json(const struct slimfs_stats_src *src, struct snapshot *s)
{
	json_t *root = json_object(), *hints = json_array();
	char *out;

	json_object_set_new(root, "mountpoint", json_string(src->mountpoint));
	json_object_set_new(root, "image", json_string(src->fs->img->source));
	json_object_set_new(root, "digest", json_string(s->digest));
	json_object_set_new(root, "view", json_string(src->fs->view_name));
	json_object_set_new(root, "prefetch_mode",
			    json_string(slimfs_prefetch_mode_name(s->pp.mode)));
	for (unsigned i = 0; i < s->n; i++) {
		json_t *sec = json_object_get(root, s->m[i].section);
		double v = s->m[i].value;

		if (!sec) {
			sec = json_object();
			json_object_set_new(root, s->m[i].section, sec);
		}
		if (v == (double)(uint64_t)v && v < 9e15)
			json_object_set_new(sec, s->m[i].key, json_integer((json_int_t)v));
		else
			json_object_set_new(sec, s->m[i].key, json_real(v));
	}
	for (unsigned i = 0; i < s->nhints; i++)
		json_array_append_new(hints, json_string(s->hints[i]));
	json_object_set_new(json_object_get(root, "hidden"), "last", hints);
	out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	return out;
}

/* Prometheus label value: \\, \" and \n escaped. */
static void put_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			putc(*v, f);
	}
}

static char *render_prometheus(const struct slimfs_stats_src *src, struct snapshot *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	for (unsigned i = 0; i < s->n; i++) {
		const struct metric *m = &s->m[i];
		bool counter = strcmp(m->type, "counter") == 0;

		fprintf(f, "# HELP slimfs_%s_%s%s %s\n", m->section, m->key,
			counter ? "_total" : "", m->help);
		fprintf(f, "# TYPE slimfs_%s_%s%s %s\n", m->section, m->key,
			counter ? "_total" : "", m->type);
		fprintf(f, "slimfs_%s_%s%s{mountpoint=\"", m->section, m->key,
			counter ? "_total" : "");
		put_label(f, src->mountpoint);
		fprintf(f, "\"} %.17g\n", m->value);
	}
	fprintf(f, "# HELP slimfs_mount_info the mounted image\n# TYPE slimfs_mount_info gauge\n"
		   "slimfs_mount_info{mountpoint=\"");
	put_label(f, src->mountpoint);
	fputs("\",image=\"", f);
	put_label(f, src->fs->img->source);
	fprintf(f, "\",digest=\"%s\",view=\"", s->digest);
	put_label(f, src->fs->view_name);
	fprintf(f, "\",prefetch=\"%s\"} 1\n", slimfs_prefetch_mode_name(s->pp.mode));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static char *render_text(const struct slimfs_stats_src *src, struct snapshot *s)
{
	char *buf = NULL, b1[32], b2[32];
	const char *sec = "";
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "mount     %s\nimage     %s\ndigest    %s\nview      %s%s\n", src->mountpoint,
		src->fs->img->source, s->digest, src->fs->view_name,
		src->fs->img->offline ? "\noffline   yes (serving the cache only)" : "");
	fprintf(f, "prefetch  %s: %" PRIu64 "/%" PRIu64 " chunks, %s of %s%s\n",
		slimfs_prefetch_mode_name(s->pp.mode), s->pp.done, s->pp.total,
		slimfs_fmt_bytes(s->pp.done_bytes, b1, sizeof(b1)),
		slimfs_fmt_bytes(s->pp.total_bytes, b2, sizeof(b2)),
		s->pp.finished ? " (done)" : "");
	for (unsigned i = 0; i < s->n; i++) {
		if (strcmp(sec, s->m[i].section) != 0) {
			sec = s->m[i].section;
			fprintf(f, "%s:\n", sec);
		}
		fprintf(f, "  %-20s %.17g\n", s->m[i].key, s->m[i].value);
	}
	if (s->nhints) {
		fprintf(f, "hidden by view %s (last %u):\n", src->fs->view_name, s->nhints);
		for (unsigned i = 0; i < s->nhints; i++)
			fprintf(f, "  %s\n", s->hints[i]);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *slimfs_stats_render(const struct slimfs_stats_src *src, enum slimfs_stats_format fmt)
{
	struct snapshot s;
	char *out;

	collect(src, &s);
	out = fmt == SLIMFS_STATS_JSON	       ? render_json(src, &s)
	      : fmt == SLIMFS_STATS_PROMETHEUS ? render_prometheus(src, &s)
					       : render_text(src, &s);
	snapshot_free(&s);
	return out;
}

static double value_of(const struct snapshot *s, const char *section, const char *key)
{
	for (unsigned i = 0; i < s->n; i++)
		if (strcmp(s->m[i].section, section) == 0 && strcmp(s->m[i].key, key) == 0)
			return s->m[i].value;
	return 0;
}

char *slimfs_stats_summary(const struct slimfs_stats_src *src)
{
	struct snapshot s;
	char fetched[32], read[32], *out;
	int n;

	collect(src, &s);
#define V(a, b) ((uint64_t)value_of(&s, a, b))
	slimfs_fmt_bytes(V("fetch", "bytes"), fetched, sizeof(fetched));
	slimfs_fmt_bytes(V("fs", "read_bytes"), read, sizeof(read));
	n = asprintf(&out,
		     "unmounted '%s' after %.1fs: read %s in %" PRIu64 " reads (%" PRIu64
		     " errors); fetched %s in %" PRIu64 " requests (%" PRIu64 " errors, %" PRIu64
		     " retries, p50/p90/p99 %" PRIu64 "/%" PRIu64 "/%" PRIu64
		     " us); chunks: %" PRIu64 " memory hits, %" PRIu64 " misses, %" PRIu64
		     " disk hits, %" PRIu64 " verified, %" PRIu64 " failed; prefetch %s %" PRIu64
		     "/%" PRIu64 " chunks, %" PRIu64 " loaded in the background; %" PRIu64
		     " lookups hidden by view %s",
		     src->mountpoint, s.uptime, read, V("fs", "reads"), V("fs", "read_errors"),
		     fetched, V("fetch", "requests"), V("fetch", "errors"), V("fetch", "retries"),
		     V("fetch", "latency_p50_us"), V("fetch", "latency_p90_us"),
		     V("fetch", "latency_p99_us"), V("cache", "mem_hits"), V("cache", "mem_misses"),
		     V("cache", "disk_hits"), V("verify", "ok"), V("verify", "failed"),
		     slimfs_prefetch_mode_name(s.pp.mode), s.pp.done, s.pp.total,
		     V("prefetch", "loaded_chunks"), V("hidden", "lookups"), src->fs->view_name);
#undef V
	snapshot_free(&s);
	return n < 0 ? NULL : out;
}

/* --- the socket server */

struct slimfs_stats_server {
	const struct slimfs_stats_src *src;
	int fd, stop[2];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char link[PATH_MAX]; /* the symlink at the default path, or "" */
	pthread_t thread;
	bool running;	   /* thread started */
	unsigned every_ms; /* 0: no periodic call */
	void (*every)(void *ud);
	void *every_ud;
};

static void serve_one(struct slimfs_stats_server *s, int c)
{
	struct timeval tv = {.tv_sec = 1};
	char req[64];
	size_t got = 0;
	enum slimfs_stats_format fmt = SLIMFS_STATS_TEXT;
	_cleanup_free_ char *out = NULL;

	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1) {
		ssize_t n = read(c, req + got, sizeof(req) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(req, '\n', got))
			break;
	}
	req[got] = '\0';
	req[strcspn(req, "\r\n")] = '\0';
	if (strcmp(req, "json") == 0)
		fmt = SLIMFS_STATS_JSON;
	else if (strcmp(req, "prometheus") == 0)
		fmt = SLIMFS_STATS_PROMETHEUS;
	out = slimfs_stats_render(s->src, fmt);
	if (out)
		(void)slimfs_write_all(c, out, strlen(out));
}

static void *server_main(void *arg)
{
	struct slimfs_stats_server *s = arg;
	uint64_t period_ns = (uint64_t)s->every_ms * 1000000, next = slimfs_now_ns() + period_ns;

	for (;;) {
		struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
				      {.fd = s->stop[0], .events = POLLIN}};
		int c, timeout = -1, n;

		if (s->every_ms) {
			uint64_t now = slimfs_now_ns();

			if (now >= next) {
				s->every(s->every_ud);
				now = slimfs_now_ns();
				next = MAX(next + period_ns, now);
			}
			timeout = (int)((next - now + 999999) / 1000000);
		}
		n = poll(p, 2, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (n == 0)
			continue;
		if (p[1].revents)
			break;
		c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		serve_one(s, c);
		close(c);
	}
	return NULL;
}

static int mkdir_p(const char *dir)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int parent_dir(const char *path)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	return mkdir_p(dir);
}

int slimfs_stats_serve(const char *path, const struct slimfs_stats_src *src,
		       struct slimfs_stats_server **out)
{
	struct slimfs_stats_server *s;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char def[PATH_MAX], abs[PATH_MAX], cwd[PATH_MAX];
	int r;

	r = slimfs_stats_socket_path(src->mountpoint, def, sizeof(def));
	if (r < 0)
		return log_error_errno(r, "cannot derive the stats socket of '%s'",
				       src->mountpoint);
	if (!path)
		path = def;
	if (path[0] != '/') { /* the daemon leaves its working directory */
		if (!getcwd(cwd, sizeof(cwd)) ||
		    snprintf(abs, sizeof(abs), "%s/%s", cwd, path) >= (int)sizeof(abs))
			return -ENAMETOOLONG;
		path = abs;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("stats socket path '%s' is too long", path);
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->src = src;
	s->fd = s->stop[0] = s->stop[1] = -1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	strcpy(sa.sun_path, path);
	r = parent_dir(path);
	if (r < 0) {
		log_error_errno(r, "cannot create the directory of '%s'", path);
		goto fail;
	}
	/*
	 * A socket left by a daemon that died: replace it (a live one answers).
	 * umount returns before the unmounted daemon has exited, so one that
	 * still answers gets up to STATS_BUSY_WAIT_MS to go (a mount right after
	 * an unmount of the same mountpoint) before it counts as another mount's.
	 */
	for (unsigned waited = 0;; waited += 20) {
		int live;

		if (slimfs_unix_connect(path, &live) < 0)
			break;
		close(live);
		if (waited >= STATS_BUSY_WAIT_MS) {
			log_error("stats socket '%s' is in use by another mount", path);
			r = -EADDRINUSE;
			goto fail;
		}
		(void)nanosleep(&(struct timespec){.tv_nsec = 20 * 1000000}, NULL);
	}
	unlink(path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(s->fd, 8) < 0) {
		r = log_error_errno(-errno, "cannot listen on '%s'", path);
		goto fail;
	}
	if (strcmp(path, def) != 0) {
		char target[PATH_MAX];

		/* `slimfs stats MNT` looks at the default path: point it here. */
		if (!realpath(path, target) || parent_dir(def) < 0 ||
		    ((void)unlink(def), symlink(target, def)) < 0)
			log_warn_errno(-errno, "cannot link '%s' to the stats socket", def);
		else
			snprintf(s->link, sizeof(s->link), "%s", def);
	}
	if (pipe2(s->stop, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	log_debug("stats on '%s'", path);
	*out = s;
	return 0;
fail:
	if (s->fd >= 0)
		close(s->fd);
	if (s->stop[0] >= 0) {
		close(s->stop[0]);
		close(s->stop[1]);
	}
	free(s);
	return r;
}

void slimfs_stats_every(struct slimfs_stats_server *s, unsigned period_ms, void (*fn)(void *),
			void *ud)
{
	if (!s || s->running)
		return;
	s->every_ms = fn ? MAX(period_ms, 1u) : 0;
	s->every = fn;
	s->every_ud = ud;
}

int slimfs_stats_run(struct slimfs_stats_server *s)
{
	int r;

	if (!s || s->running)
		return 0;
	r = -pthread_create(&s->thread, NULL, server_main, s);
	if (r < 0)
		return log_error_errno(r, "cannot start the stats thread");
	s->running = true;
	return 0;
}

void slimfs_stats_stop(struct slimfs_stats_server *s)
{
	if (!s)
		return;
	if (s->running) {
		(void)slimfs_write_all(s->stop[1], "x", 1);
		pthread_join(s->thread, NULL);
	}
	close(s->fd);
	close(s->stop[0]);
	close(s->stop[1]);
	unlink(s->path);
	if (s->link[0])
		unlink(s->link);
	free(s);
}
