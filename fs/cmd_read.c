// SPDX-License-Identifier: MIT
/*
 * Read-only subcommands: inspect, ls, cat, extract, verify. They open an
 * image with slimfs_image_open() and read file data through a plain
 * struct slimfs_reader (no caches: each command reads most chunks once).
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

#include <jansson.h>

#include "cliopt.h"
#include "cmds.h"
#include "image.h"
#include "slimfs/format.h"
#include "slimfs/util.h"

#define SYMLINK_HOPS_MAX 40

/* ---- shared helpers ---- */

/*
 * The reader explains what is corrupt at debug level only; for a local file,
 * read the index again with debug logging on so that the user sees why.
 */
static void explain_index(const char *src)
{
	uint8_t super[SLIMFS_SUPER_SIZE];
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	struct slimfs_index *idx = NULL;
	uint64_t isz;
	struct stat st;
	int level;

	if (strstr(src, "://"))
		return;
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	if (slimfs_pread_all(fd, super, sizeof(super), 0) < 0)
		return;
	level = slimfs_log_get_level();
	if (level < SLIMFS_LOG_DEBUG)
		slimfs_log_set_level(SLIMFS_LOG_DEBUG);
	if (slimfs_index_peek(super, sizeof(super), &isz, NULL) == 0 &&
	    isz <= (uint64_t)st.st_size && isz <= (1ull << 32)) {
		buf = malloc((size_t)isz);
		if (buf && slimfs_pread_all(fd, buf, (size_t)isz, 0) == 0 &&
		    slimfs_index_open_mem(buf, (size_t)isz, &idx) == 0)
			slimfs_index_free(idx);
	}
	slimfs_log_set_level(level);
}

static int open_image(const char *src, const struct slimfs_cli_fetch *f, struct slimfs_image **img)
{
	int r = slimfs_cli_open_image(src, f, NULL, img);

	if (r == -EUCLEAN || r == -EBADMSG || r == -EPROTONOSUPPORT)
		explain_index(src);
	return r;
}

static bool is_dir(const struct slimfs_inode *ino)
{
	return S_ISDIR(ino->mode);
}

/* "/a" + "b" -> "/a/b"; "" + "b" -> "b". malloc'd, NULL on ENOMEM. */
static char *path_join(const char *dir, const char *name, size_t name_len)
{
	size_t dl = strlen(dir);
	bool slash = dl && dir[dl - 1] != '/';
	char *p = malloc(dl + slash + name_len + 1);

	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	if (slash)
		p[dl] = '/';
	memcpy(p + dl + slash, name, name_len);
	p[dl + slash + name_len] = '\0';
	return p;
}

static const char *view_label(const struct slimfs_index *idx, uint32_t view, char *buf, size_t len)
{
	struct slimfs_view v;

	if (view == SLIMFS_VIEW_NONE || slimfs_index_view(idx, view, &v) < 0)
		return "full";
	snprintf(buf, len, "%.*s", (int)v.name_len, v.name);
	return buf;
}

static int parse_view(const struct slimfs_index *idx, const char *name, uint32_t *view)
{
	int r = slimfs_index_view_find(idx, name, view);

	if (r < 0) {
		const struct slimfs_info *in = slimfs_index_info(idx);
		char names[1024] = "full";
		size_t n = strlen(names);

		for (uint32_t i = 0; i < in->view_count; i++) {
			struct slimfs_view v;

			if (slimfs_index_view(idx, i, &v) == 0 && n < sizeof(names))
				n += (size_t)snprintf(names + n, sizeof(names) - n, ", %.*s",
						      (int)v.name_len, v.name);
		}
		log_error("no view '%s' in this image (views: %s)", name, names);
	}
	return r;
}

/*
 * Resolves path inside the image: absolute and relative paths both start at
 * the image root, symlinks are followed (targets resolved inside the image
 * root, at most SYMLINK_HOPS_MAX of them), the last component only when
 * follow_last or when it is followed by a slash. Every component must be
 * visible in view; *hidden tells whether a failure was due to the view.
 */
static int resolve_path(const struct slimfs_index *idx, const char *path, bool follow_last,
			uint32_t view, uint32_t *out, bool *hidden)
{
	_cleanup_free_ char *rest = strdup(path);
	struct slimfs_inode cur;
	unsigned hops = 0;
	size_t pos = 0;
	int r;

	if (hidden)
		*hidden = false;
	if (!rest)
		return -ENOMEM;
	r = slimfs_index_inode(idx, 0, &cur);
	if (r < 0)
		return r;
	for (;;) {
		struct slimfs_inode child;
		size_t len, after;
		uint32_t id;
		bool last, slash;

		while (rest[pos] == '/')
			pos++;
		if (!rest[pos])
			break;
		len = strcspn(rest + pos, "/");
		after = pos + len;
		slash = rest[after] == '/';
		last = rest[after + strspn(rest + after, "/")] == '\0';
		if (len == 1 && rest[pos] == '.') {
			pos = after;
			continue;
		}
		if (!is_dir(&cur))
			return -ENOTDIR;
		if (len == 2 && rest[pos] == '.' && rest[pos + 1] == '.') {
			r = slimfs_index_inode(idx, cur.parent, &cur);
			if (r < 0)
				return r;
			pos = after;
			continue;
		}
		r = slimfs_index_lookup(idx, &cur, rest + pos, len, &id);
		if (r < 0)
			return r;
		r = slimfs_index_inode(idx, id, &child);
		if (r < 0)
			return r;
		if (!slimfs_inode_in_view(&child, view)) {
			if (hidden)
				*hidden = true;
			return -ENOENT;
		}
		if (S_ISLNK(child.mode) && (!last || follow_last || slash)) {
			size_t tail = strlen(rest + after);
			char *n;

			if (++hops > SYMLINK_HOPS_MAX)
				return -ELOOP;
			/* the rest keeps its leading slash: "target" + "/more" or "" */
			n = malloc(child.target_len + tail + 1);
			if (!n)
				return -ENOMEM;
			memcpy(n, child.target, child.target_len);
			memcpy(n + child.target_len, rest + after, tail + 1);
			if (child.target[0] == '/') {
				r = slimfs_index_inode(idx, 0, &cur);
				if (r < 0) {
					free(n);
					return r;
				}
			}
			free(rest);
			rest = n;
			pos = 0;
			continue;
		}
		if (slash && !is_dir(&child) && last)
			return -ENOTDIR;
		cur = child;
		pos = after;
	}
	*out = cur.id;
	return 0;
}

static int resolve_or_complain(const struct slimfs_index *idx, const char *path, bool follow_last,
			       uint32_t view, uint32_t *out)
{
	bool hidden;
	int r = resolve_path(idx, path, follow_last, view, out, &hidden);

	if (r < 0) {
		char vb[256];

		if (hidden)
			log_error("'%s' is not in view '%s' (try --view full)", path,
				  view_label(idx, view, vb, sizeof(vb)));
		else
			log_error_errno(r, "'%s'", path);
	}
	return r;
}

/* Prints a name from the image; control bytes become '?' on a terminal. */
static void put_name(const char *s, size_t len, bool tty)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		putchar(tty && (c < 0x20 || c == 0x7f) ? '?' : c);
	}
}

/* Stack of directories for pre-order walks without recursion. */
struct dstack {
	struct dframe {
		uint32_t id;
		char *path;
	} * v;
	size_t n, cap;
};

static int dstack_push(struct dstack *s, uint32_t id, char *path)
{
	if (!path)
		return -ENOMEM;
	if (SLIMFS_GROW(s->v, s->cap, s->n + 1, 64) < 0) {
		free(path);
		return -ENOMEM;
	}
	s->v[s->n].id = id;
	s->v[s->n].path = path;
	s->n++;
	return 0;
}

static void dstack_free(struct dstack *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].path);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/*
 * Calls fn for dir and every directory below it visible in view, in pre-order
 * with entries in name order. path is dir's display path.
 */
static int walk_dirs(const struct slimfs_index *idx, uint32_t dir, const char *path, uint32_t view,
		     int (*fn)(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			       const char *path, void *ud),
		     void *ud)
{
	struct dstack st = {0};
	int r;

	r = dstack_push(&st, dir, strdup(path));
	while (r == 0 && st.n) {
		struct dframe f = st.v[--st.n];
		struct slimfs_inode ino;
		size_t base;

		r = slimfs_index_inode(idx, f.id, &ino);
		if (r == 0)
			r = fn(idx, &ino, f.path, ud);
		base = st.n;
		for (uint32_t i = 0; r == 0 && i < ino.count; i++) {
			struct slimfs_dirent d;
			struct slimfs_inode c;

			r = slimfs_index_dirent(idx, &ino, i, &d);
			if (r == 0)
				r = slimfs_index_inode(idx, d.ino, &c);
			if (r == 0 && is_dir(&c) && slimfs_inode_in_view(&c, view))
				r = dstack_push(&st, d.ino, path_join(f.path, d.name, d.name_len));
		}
		/* children were pushed in name order: reverse them to pop in name order */
		for (size_t a = base, b = st.n; a + 1 < b; a++, b--) {
			struct dframe t = st.v[a];

			st.v[a] = st.v[b - 1];
			st.v[b - 1] = t;
		}
		free(f.path);
	}
	dstack_free(&st);
	return r;
}

/* ---- inspect ---- */

static void inspect_usage(FILE *f)
{
	fprintf(f, "usage: slimfs inspect [--json] IMAGE\n"
		   "\n"
		   "Shows an image's format, digest, sizes, entries, chunk statistics, views,\n"
		   "prefetch list and OCI config summary.\n"
		   "\n"
		   "options:\n"
		   "      --json     one JSON object on standard output\n"
		   "  -v, --verbose  print more (why an index is corrupt)\n"
		   "  -h, --help     this help\n");
}

enum { T_REG, T_DIR, T_LNK, T_CHR, T_BLK, T_FIFO, T_SOCK, T_COUNT };
static const char *const type_names[T_COUNT] = {
	"regular", "directory", "symlink", "char_device", "block_device", "fifo", "socket",
};

static int type_index(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return T_REG;
	case S_IFDIR:
		return T_DIR;
	case S_IFLNK:
		return T_LNK;
	case S_IFCHR:
		return T_CHR;
	case S_IFBLK:
		return T_BLK;
	case S_IFIFO:
		return T_FIFO;
	default:
		return T_SOCK;
	}
}

struct view_stats {
	uint64_t inodes, files, bytes;
};

struct image_stats {
	uint64_t types[T_COUNT];
	uint64_t files, file_bytes, hardlinked;
	uint64_t plain, comp, cmin, cmax;
	uint64_t prefetch_plain, prefetch_comp; /* the PREFETCH chunks */
	uint64_t extent_bytes;
	struct view_stats views[SLIMFS_VIEWS_MAX + 1]; /* last: full */
};

static int gather_stats(const struct slimfs_index *idx, struct image_stats *s)
{
	const struct slimfs_info *in = slimfs_index_info(idx);
	int r;

	memset(s, 0, sizeof(*s));
	for (uint32_t id = 0; id < in->inode_count; id++) {
		struct slimfs_inode ino;

		r = slimfs_index_inode(idx, id, &ino);
		if (r < 0)
			return r;
		s->types[type_index(ino.mode)]++;
		if (S_ISREG(ino.mode)) {
			s->files++;
			s->file_bytes += ino.size;
			for (uint32_t e = 0; e < ino.count; e++) {
				struct slimfs_extent x;

				if (slimfs_index_extent(idx, &ino, e, &x) == 0)
					s->extent_bytes += x.len;
			}
			if (ino.nlink > 1)
				s->hardlinked++;
		}
		for (uint32_t v = 0; v <= in->view_count; v++) {
			uint32_t bit = v == in->view_count ? SLIMFS_VIEW_NONE : v;
			struct view_stats *vs =
				&s->views[v == in->view_count ? SLIMFS_VIEWS_MAX : v];

			if (!slimfs_inode_in_view(&ino, bit))
				continue;
			vs->inodes++;
			if (S_ISREG(ino.mode)) {
				vs->files++;
				vs->bytes += ino.size;
			}
		}
	}
	s->cmin = in->chunk_count ? UINT64_MAX : 0;
	for (uint32_t i = 0; i < in->chunk_count; i++) {
		struct slimfs_chunk c;

		r = slimfs_index_chunk(idx, i, &c);
		if (r < 0)
			return r;
		s->plain += c.usize;
		s->comp += c.csize;
		s->cmin = MIN(s->cmin, (uint64_t)c.usize);
		s->cmax = MAX(s->cmax, (uint64_t)c.usize);
	}
	for (uint64_t i = 0; i < in->prefetch_count; i++) {
		struct slimfs_chunk c;
		uint32_t ci;

		r = slimfs_index_prefetch(idx, i, &ci);
		if (r == 0)
			r = slimfs_index_chunk(idx, ci, &c);
		if (r < 0)
			return r;
		s->prefetch_plain += c.usize;
		s->prefetch_comp += c.csize;
	}
	return 0;
}

/* OCI image config: {"config": {...}} (image config) or the inner object itself. */
static json_t *config_object(json_t *root)
{
	json_t *c = json_object_get(root, "config");

	if (json_is_object(c))
		return c;
	c = json_object_get(root, "Config"); /* docker inspect style */
	if (json_is_object(c))
		return c;
	return json_is_object(root) ? root : NULL;
}

static json_t *config_summary(const struct slimfs_info *in)
{
	json_t *root, *c, *out;
	json_error_t err;

	if (!in->config || !in->config_len)
		return NULL;
	root = json_loadb(in->config, in->config_len, 0, &err);
	if (!root) {
		log_warn("image config is not valid JSON: %s (line %d)", err.text, err.line);
		return NULL;
	}
	out = json_object();
	c = config_object(root);
	if (c) {
		static const struct {
			const char *from, *to;
		} keys[] = {
			{"Entrypoint", "entrypoint"},  {"Cmd", "cmd"},	 {"Env", "env"},
			{"WorkingDir", "working_dir"}, {"User", "user"},
		};

		for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
			json_t *v = json_object_get(c, keys[i].from);

			json_object_set(out, keys[i].to, v ? v : json_null());
		}
	}
	{
		json_t *a = json_object_get(root, "architecture"), *o = json_object_get(root, "os");

		if (json_is_string(a))
			json_object_set(out, "architecture", a);
		if (json_is_string(o))
			json_object_set(out, "os", o);
	}
	json_decref(root);
	return out;
}

static json_t *jint(uint64_t v)
{
	return json_integer((json_int_t)MIN(v, (uint64_t)INT64_MAX));
}

static int inspect_json(struct slimfs_image *img, const struct image_stats *s)
{
	const struct slimfs_index *idx = img->idx;
	const struct slimfs_info *in = img->info;
	json_t *o = json_object(), *t = json_object(), *ch = json_object(), *cdc = json_object();
	json_t *views = json_array(), *cfg;
	char dig[72], vb[256], ver[32];
	int r;

	slimfs_index_digest_str(idx, dig);
	snprintf(ver, sizeof(ver), "%u.%u", in->version_major, in->version_minor);
	json_object_set_new(o, "image", json_string(img->source));
	json_object_set_new(o, "version", json_string(ver));
	json_object_set_new(o, "digest", json_string(dig));
	json_object_set_new(o, "feature_compat", jint(in->feature_compat));
	json_object_set_new(o, "pruned",
			    json_boolean(in->feature_compat & SLIMFS_FEATURE_COMPAT_PRUNED));
	json_object_set_new(o, "index_size", jint(in->index_size));
	json_object_set_new(o, "index_plain_size", jint(in->index_plain_size));
	json_object_set_new(o, "index_compression",
			    json_string(in->feature_incompat & SLIMFS_FEATURE_INCOMPAT_ZINDEX
						? "zstd"
						: "none"));
	json_object_set_new(o, "data_offset", jint(in->data_off));
	json_object_set_new(o, "data_size", jint(in->data_size));
	json_object_set_new(o, "image_size", jint(in->data_off + in->data_size));
	json_object_set_new(o, "entries", jint(in->dirent_count + 1));
	json_object_set_new(o, "inodes", jint(in->inode_count));
	for (int i = 0; i < T_COUNT; i++)
		json_object_set_new(t, type_names[i], jint(s->types[i]));
	json_object_set_new(o, "types", t);
	json_object_set_new(o, "files", jint(s->files));
	json_object_set_new(o, "total_bytes", jint(s->file_bytes));
	json_object_set_new(o, "hardlinked_files", jint(s->hardlinked));
	json_object_set_new(ch, "count", jint(in->chunk_count));
	json_object_set_new(ch, "unique_bytes", jint(s->plain));
	json_object_set_new(ch, "compressed_bytes", jint(s->comp));
	json_object_set_new(ch, "ratio",
			    json_real(s->comp ? (double)s->plain / (double)s->comp : 0));
	json_object_set_new(ch, "min", jint(s->cmin));
	json_object_set_new(ch, "avg", jint(in->chunk_count ? s->plain / in->chunk_count : 0));
	json_object_set_new(ch, "max", jint(s->cmax));
	json_object_set_new(o, "chunks", ch);
	json_object_set_new(o, "extents", jint(in->extent_count));
	json_object_set_new(o, "extent_bytes", jint(s->extent_bytes));
	json_object_set_new(cdc, "min", jint(in->cdc_min));
	json_object_set_new(cdc, "avg", jint(in->cdc_avg));
	json_object_set_new(cdc, "max", jint(in->cdc_max));
	json_object_set_new(o, "cdc", cdc);
	json_object_set_new(o, "small_file_max", jint(in->small_file_max));
	json_object_set_new(o, "zstd_level", json_integer(in->zstd_level));
	for (uint32_t v = 0; v <= in->view_count; v++) {
		bool full = v == in->view_count;
		const struct view_stats *vs = &s->views[full ? SLIMFS_VIEWS_MAX : v];
		json_t *j = json_object();

		json_object_set_new(
			j, "name",
			json_string(view_label(idx, full ? SLIMFS_VIEW_NONE : v, vb, sizeof(vb))));
		json_object_set_new(j, "default",
				    json_boolean(full ? in->default_view == SLIMFS_VIEW_NONE
						      : in->default_view == v));
		json_object_set_new(j, "entries", jint(vs->inodes));
		json_object_set_new(j, "files", jint(vs->files));
		json_object_set_new(j, "bytes", jint(vs->bytes));
		json_array_append_new(views, j);
	}
	json_object_set_new(o, "views", views);
	json_object_set_new(o, "default_view",
			    json_string(view_label(idx, in->default_view, vb, sizeof(vb))));
	json_object_set_new(o, "prefetch", jint(in->prefetch_count));
	json_object_set_new(o, "prefetch_bytes", jint(s->prefetch_comp));
	json_object_set_new(o, "prefetch_plain_bytes", jint(s->prefetch_plain));
	cfg = config_summary(in);
	json_object_set_new(o, "config", cfg ? cfg : json_null());
	r = json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	putchar('\n');
	json_decref(o);
	return r < 0 ? -EIO : 0;
}

static void print_json_field(const char *label, json_t *v)
{
	char *s;

	if (!v || json_is_null(v))
		return;
	if (json_is_string(v)) {
		if (json_string_length(v))
			printf("  %-12s %s\n", label, json_string_value(v));
		return;
	}
	s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (s)
		printf("  %-12s %s\n", label, s);
	free(s);
}

static int inspect_text(struct slimfs_image *img, const struct image_stats *s)
{
	const struct slimfs_index *idx = img->idx;
	const struct slimfs_info *in = img->info;
	char dig[72], b1[32], b2[32], b3[32], vb[256];
	json_t *cfg;

	slimfs_index_digest_str(idx, dig);
	printf("image:       %s\n", img->source);
	printf("format:      %u.%u%s\n", in->version_major, in->version_minor,
	       in->feature_compat & SLIMFS_FEATURE_COMPAT_PRUNED ? " (pruned)" : "");
	printf("digest:      %s\n", dig);
	printf("index:       %s (%" PRIu64 " bytes)",
	       slimfs_fmt_bytes(in->index_size, b1, sizeof(b1)), in->index_size);
	if (in->feature_incompat & SLIMFS_FEATURE_INCOMPAT_ZINDEX)
		printf(", zstd; %s (%" PRIu64 " bytes) plain\n",
		       slimfs_fmt_bytes(in->index_plain_size, b2, sizeof(b2)),
		       in->index_plain_size);
	else
		printf(", not compressed\n");
	printf("data:        %s (%" PRIu64 " bytes at offset %" PRIu64 ")\n",
	       slimfs_fmt_bytes(in->data_size, b1, sizeof(b1)), in->data_size, in->data_off);
	printf("entries:     %" PRIu64 " (%" PRIu64 " inodes: %" PRIu64 " regular, %" PRIu64
	       " directories, %" PRIu64 " symlinks",
	       in->dirent_count + 1, in->inode_count, s->types[T_REG], s->types[T_DIR],
	       s->types[T_LNK]);
	if (s->types[T_CHR] || s->types[T_BLK])
		printf(", %" PRIu64 " char and %" PRIu64 " block devices", s->types[T_CHR],
		       s->types[T_BLK]);
	if (s->types[T_FIFO])
		printf(", %" PRIu64 " fifos", s->types[T_FIFO]);
	if (s->types[T_SOCK])
		printf(", %" PRIu64 " sockets", s->types[T_SOCK]);
	printf(")\n");
	printf("files:       %" PRIu64 ", %s apparent", s->files,
	       slimfs_fmt_bytes(s->file_bytes, b1, sizeof(b1)));
	if (s->hardlinked)
		printf(", %" PRIu64 " with hardlinks", s->hardlinked);
	printf("\n");
	printf("chunks:      %" PRIu64 ", %s unique plain, %s compressed, ratio %.2f\n",
	       in->chunk_count, slimfs_fmt_bytes(s->plain, b1, sizeof(b1)),
	       slimfs_fmt_bytes(s->comp, b2, sizeof(b2)),
	       s->comp ? (double)s->plain / (double)s->comp : 0.0);
	printf("dedup:       %s of file data in extents, %s unique (%.2fx)\n",
	       slimfs_fmt_bytes(s->extent_bytes, b1, sizeof(b1)),
	       slimfs_fmt_bytes(s->plain, b2, sizeof(b2)),
	       s->plain ? (double)s->extent_bytes / (double)s->plain : 0.0);
	if (in->chunk_count)
		printf("chunk size:  min %s, avg %s, max %s\n",
		       slimfs_fmt_bytes(s->cmin, b1, sizeof(b1)),
		       slimfs_fmt_bytes(s->plain / in->chunk_count, b2, sizeof(b2)),
		       slimfs_fmt_bytes(s->cmax, b3, sizeof(b3)));
	printf("extents:     %" PRIu64 "\n", in->extent_count);
	printf("chunking:    FastCDC min %s, avg %s, max %s; files up to %s packed\n",
	       slimfs_fmt_bytes(in->cdc_min, b1, sizeof(b1)),
	       slimfs_fmt_bytes(in->cdc_avg, b2, sizeof(b2)),
	       slimfs_fmt_bytes(in->cdc_max, b3, sizeof(b3)),
	       slimfs_fmt_bytes(in->small_file_max, vb, sizeof(vb)));
	printf("zstd level:  %d\n", in->zstd_level);
	printf("views:\n");
	for (uint32_t v = 0; v <= in->view_count; v++) {
		bool full = v == in->view_count;
		const struct view_stats *vs = &s->views[full ? SLIMFS_VIEWS_MAX : v];
		bool def = full ? in->default_view == SLIMFS_VIEW_NONE : in->default_view == v;

		printf("  %-20s %" PRIu64 " entries, %" PRIu64 " files, %s%s\n",
		       view_label(idx, full ? SLIMFS_VIEW_NONE : v, vb, sizeof(vb)), vs->inodes,
		       vs->files, slimfs_fmt_bytes(vs->bytes, b1, sizeof(b1)),
		       def ? " (default)" : "");
	}
	printf("prefetch:    %" PRIu64 " chunks, %s (%s plain)\n", in->prefetch_count,
	       slimfs_fmt_bytes(s->prefetch_comp, b1, sizeof(b1)),
	       slimfs_fmt_bytes(s->prefetch_plain, b2, sizeof(b2)));
	cfg = config_summary(in);
	if (cfg) {
		json_t *env = json_object_get(cfg, "env");

		printf("config:\n");
		if (json_is_string(json_object_get(cfg, "os")))
			printf("  %-12s %s/%s\n", "platform",
			       json_string_value(json_object_get(cfg, "os")),
			       json_is_string(json_object_get(cfg, "architecture"))
				       ? json_string_value(json_object_get(cfg, "architecture"))
				       : "?");
		print_json_field("entrypoint", json_object_get(cfg, "entrypoint"));
		print_json_field("cmd", json_object_get(cfg, "cmd"));
		print_json_field("working dir", json_object_get(cfg, "working_dir"));
		print_json_field("user", json_object_get(cfg, "user"));
		if (json_is_array(env)) {
			size_t i;
			json_t *e;

			json_array_foreach(env, i, e)
			{
				if (json_is_string(e))
					printf("  %-12s %s\n", i ? "" : "env",
					       json_string_value(e));
			}
		}
		json_decref(cfg);
	} else {
		printf("config:      none\n");
	}
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	enum { OPT_JSON = 256 };
	static const struct option longopts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "vh", .longopts = longopts, .usage = inspect_usage};
	struct slimfs_image *img = NULL;
	struct image_stats *s;
	bool json = false;
	int c, r;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		if (c == OPT_JSON)
			json = true;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
		return EXIT_USAGE;
	if (open_image(argv[optind], NULL, &img) < 0)
		return 1;
	s = malloc(sizeof(*s));
	r = s ? gather_stats(img->idx, s) : -ENOMEM;
	if (r == 0)
		r = json ? inspect_json(img, s) : inspect_text(img, s);
	if (r < 0)
		log_error_errno(r, "'%s': inspect failed", argv[optind]);
	free(s);
	slimfs_image_close(img);
	if (fflush(stdout) != 0)
		return 1;
	return r < 0 ? 1 : 0;
}

/* ---- ls ---- */

static void ls_usage(FILE *f)
{
	fprintf(f, "usage: slimfs ls [-l] [-R] [--view NAME] IMAGE [PATH]\n"
		   "\n"
		   "Lists a directory of an image (default: the root), in name order.\n"
		   "\n"
		   "options:\n"
		   "  -l, --long       mode, links, uid, gid, size, mtime, name, symlink target\n"
		   "  -R, --recursive  list subdirectories too, each under a 'PATH:' header\n"
		   "      --view NAME  list only what view NAME shows (default: full)\n"
		   "  -v, --verbose    print more (why an index is corrupt)\n"
		   "  -h, --help       this help\n");
}

struct ls_opts {
	bool lng, recursive, tty, first;
	uint32_t view;
};

static void mode_string(uint32_t mode, char out[11])
{
	static const char types[] = {[T_REG] = '-', [T_DIR] = 'd',  [T_LNK] = 'l', [T_CHR] = 'c',
				     [T_BLK] = 'b', [T_FIFO] = 'p', [T_SOCK] = 's'};

	out[0] = types[type_index(mode)];
	out[1] = mode & S_IRUSR ? 'r' : '-';
	out[2] = mode & S_IWUSR ? 'w' : '-';
	out[3] = mode & S_ISUID ? (mode & S_IXUSR ? 's' : 'S') : (mode & S_IXUSR ? 'x' : '-');
	out[4] = mode & S_IRGRP ? 'r' : '-';
	out[5] = mode & S_IWGRP ? 'w' : '-';
	out[6] = mode & S_ISGID ? (mode & S_IXGRP ? 's' : 'S') : (mode & S_IXGRP ? 'x' : '-');
	out[7] = mode & S_IROTH ? 'r' : '-';
	out[8] = mode & S_IWOTH ? 'w' : '-';
	out[9] = mode & S_ISVTX ? (mode & S_IXOTH ? 't' : 'T') : (mode & S_IXOTH ? 'x' : '-');
	out[10] = '\0';
}

static void size_string(const struct slimfs_inode *ino, char *buf, size_t len)
{
	if (S_ISCHR(ino->mode) || S_ISBLK(ino->mode))
		snprintf(buf, len, "%u, %u", major((dev_t)ino->rdev), minor((dev_t)ino->rdev));
	else
		snprintf(buf, len, "%" PRIu64, ino->size);
}

struct ls_widths {
	int nlink, uid, gid, size;
};

static void ls_measure(const struct slimfs_inode *ino, struct ls_widths *w)
{
	char b[64];

	w->nlink = MAX(w->nlink, snprintf(b, sizeof(b), "%u", ino->nlink));
	w->uid = MAX(w->uid, snprintf(b, sizeof(b), "%u", ino->uid));
	w->gid = MAX(w->gid, snprintf(b, sizeof(b), "%u", ino->gid));
	size_string(ino, b, sizeof(b));
	w->size = MAX(w->size, (int)strlen(b));
}

static void ls_entry(const struct ls_opts *o, const struct ls_widths *w,
		     const struct slimfs_inode *ino, const char *name, size_t name_len)
{
	if (o->lng) {
		char mode[11], size[64], when[32] = "?";
		time_t t = (time_t)ino->mtime;
		struct tm tm;

		mode_string(ino->mode, mode);
		size_string(ino, size, sizeof(size));
		if (localtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
		printf("%s %*u %*u %*u %*s %s ", mode, w->nlink, ino->nlink, w->uid, ino->uid,
		       w->gid, ino->gid, w->size, size, when);
	}
	put_name(name, name_len, o->tty);
	if (o->lng && S_ISLNK(ino->mode)) {
		fputs(" -> ", stdout);
		put_name(ino->target, ino->target_len, o->tty);
	}
	putchar('\n');
}

static int ls_dir(const struct slimfs_index *idx, const struct slimfs_inode *dir, const char *path,
		  void *ud)
{
	struct ls_opts *o = ud;
	struct ls_widths w = {0};
	int r;

	if (o->recursive) {
		if (!o->first)
			putchar('\n');
		put_name(path, strlen(path), o->tty);
		fputs(":\n", stdout);
	}
	o->first = false;
	for (int pass = o->lng ? 0 : 1; pass < 2; pass++) {
		for (uint32_t i = 0; i < dir->count; i++) {
			struct slimfs_dirent d;
			struct slimfs_inode c;

			r = slimfs_index_dirent(idx, dir, i, &d);
			if (r == 0)
				r = slimfs_index_inode(idx, d.ino, &c);
			if (r < 0)
				return r;
			if (!slimfs_inode_in_view(&c, o->view))
				continue;
			if (pass == 0)
				ls_measure(&c, &w);
			else
				ls_entry(o, &w, &c, d.name, d.name_len);
		}
	}
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	enum { OPT_VIEW = 256 };
	static const struct option longopts[] = {
		{"long", no_argument, NULL, 'l'},
		{"recursive", no_argument, NULL, 'R'},
		{"view", required_argument, NULL, OPT_VIEW},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "lRvh", .longopts = longopts, .usage = ls_usage};
	struct ls_opts o = {.first = true, .view = SLIMFS_VIEW_NONE};
	struct slimfs_image *img = NULL;
	struct slimfs_inode ino;
	const char *view = NULL, *path;
	uint32_t id;
	int c, r;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0) {
		switch (c) {
		case 'l':
			o.lng = true;
			break;
		case 'R':
			o.recursive = true;
			break;
		case OPT_VIEW:
			view = optarg;
			break;
		}
	}
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 2))
		return EXIT_USAGE;
	path = argc - optind == 2 ? argv[optind + 1] : "/";
	o.tty = isatty(STDOUT_FILENO);
	if (open_image(argv[optind], NULL, &img) < 0)
		return 1;
	r = view ? parse_view(img->idx, view, &o.view) : 0;
	if (r == 0)
		r = resolve_or_complain(img->idx, path, !o.lng || path[strlen(path) - 1] == '/',
					o.view, &id);
	if (r == 0)
		r = slimfs_index_inode(img->idx, id, &ino);
	if (r == 0) {
		if (is_dir(&ino)) {
			r = o.recursive ? walk_dirs(img->idx, id, path, o.view, ls_dir, &o)
					: ls_dir(img->idx, &ino, path, &o);
		} else {
			struct ls_widths w = {0};

			ls_measure(&ino, &w);
			ls_entry(&o, &w, &ino, path, strlen(path));
		}
		if (r < 0)
			log_error_errno(r, "'%s': cannot list '%s'", argv[optind], path);
	}
	slimfs_image_close(img);
	if (fflush(stdout) != 0)
		return 1;
	return r < 0 ? 1 : 0;
}

/* ---- cat ---- */

static void cat_usage(FILE *f)
{
	fprintf(f, "usage: slimfs cat IMAGE PATH...\n"
		   "\n"
		   "Writes files of an image to standard output. Symlinks are followed inside\n"
		   "the image (absolute targets start at the image root).\n"
		   "\n"
		   "options:\n"
		   "  -v, --verbose  print more\n"
		   "  -h, --help     this help\n");
}

static int cat_one(struct slimfs_reader *rd, const char *path)
{
	const size_t bufsz = 1u << 20;
	_cleanup_free_ uint8_t *buf = NULL;
	struct slimfs_inode ino;
	uint64_t off = 0;
	uint32_t id;
	int r;

	r = resolve_or_complain(rd->img->idx, path, true, SLIMFS_VIEW_NONE, &id);
	if (r < 0)
		return r;
	r = slimfs_index_inode(rd->img->idx, id, &ino);
	if (r < 0)
		return r;
	if (!S_ISREG(ino.mode)) {
		r = is_dir(&ino) ? -EISDIR : -EINVAL;
		return log_error_errno(r, "'%s': not a regular file", path);
	}
	buf = malloc(bufsz);
	if (!buf)
		return -ENOMEM;
	while (off < ino.size) {
		ssize_t n = slimfs_reader_pread(rd, &ino, buf, bufsz, off);

		if (n < 0)
			return log_error_errno((int)n, "'%s': read at %" PRIu64 " failed", path,
					       off);
		if (n == 0)
			break;
		r = slimfs_write_all(STDOUT_FILENO, buf, (size_t)n);
		if (r < 0)
			return log_error_errno(r, "cannot write to standard output");
		off += (uint64_t)n;
	}
	return 0;
}

int cmd_cat(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "vh", .longopts = longopts, .usage = cat_usage};
	struct slimfs_image *img = NULL;
	struct slimfs_reader rd;
	int c, r, ret = 0;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 2, INT_MAX))
		return EXIT_USAGE;
	if (open_image(argv[optind], NULL, &img) < 0)
		return 1;
	r = slimfs_reader_init(&rd, img);
	if (r < 0) {
		log_error_errno(r, "cannot allocate read buffers");
		slimfs_image_close(img);
		return 1;
	}
	for (int i = optind + 1; i < argc; i++)
		if (cat_one(&rd, argv[i]) < 0)
			ret = 1;
	slimfs_reader_fini(&rd);
	slimfs_image_close(img);
	return ret;
}

/* ---- extract ---- */

static void extract_usage(FILE *f)
{
	fprintf(f, "usage: slimfs extract [--view NAME] IMAGE DIR\n"
		   "\n"
		   "Recreates an image's tree in DIR (which must not exist or be empty), with\n"
		   "owners, modes, xattrs, mtimes, hardlinks, devices and fifos. Holes stay\n"
		   "holes. Without root, what cannot be restored (owners, devices, some xattrs)\n"
		   "is skipped with a warning.\n"
		   "\n"
		   "options:\n"
		   "      --view NAME  extract only what view NAME shows (default: full)\n"
		   "  -v, --verbose    print more\n"
		   "  -h, --help       this help\n");
}

enum { LOST_OWNER, LOST_DEVICE, LOST_XATTR, LOST_COUNT };
static const char *const lost_what[LOST_COUNT] = {
	"file owners (uid/gid)",
	"device nodes",
	"extended attributes",
};

struct xctx {
	struct slimfs_image *img;
	const struct slimfs_index *idx;
	struct slimfs_reader rd;
	uint32_t view;
	int rootfd;	/* the output directory */
	uint32_t *refs; /* per inode: dirents referencing it (non-directories) */
	char **first;	/* per inode: path of its first extracted link, when refs > 1 */
	uint64_t lost[LOST_COUNT];
	uint64_t files, dirs, links, others;
};

static bool perm_error(int e)
{
	return e == EPERM || e == EACCES || e == ENOTSUP || e == EOPNOTSUPP;
}

/* Records metadata that cannot be restored; warns once per kind. */
static int lost(struct xctx *x, int kind, int e, const char *path)
{
	/* EINVAL from chown: the id is not mapped in this user namespace */
	if (!perm_error(e) && !(kind == LOST_OWNER && e == EINVAL))
		return -e;
	if (!x->lost[kind]++)
		log_warn("'%s': cannot restore %s: %s (warning once; continuing)", path,
			 lost_what[kind], strerror(e));
	return 0;
}

/* Owner first, then mode (chown clears suid/sgid), then xattrs (chown drops capabilities). */
static int set_meta(struct xctx *x, int dirfd, const char *name, int fd,
		    const struct slimfs_inode *ino, const char *path)
{
	bool lnk = S_ISLNK(ino->mode);
	struct timespec ts[2];
	int r;

	r = fd >= 0 ? fchown(fd, ino->uid, ino->gid)
		    : fchownat(dirfd, name, ino->uid, ino->gid, AT_SYMLINK_NOFOLLOW);
	if (r < 0 && (r = lost(x, LOST_OWNER, errno, path)) < 0)
		return log_error_errno(r, "'%s': cannot change the owner", path);
	if (!lnk) {
		r = fd >= 0 ? fchmod(fd, ino->mode & 07777)
			    : fchmodat(dirfd, name, ino->mode & 07777, 0);
		if (r < 0)
			return log_error_errno(-errno, "'%s': cannot change the mode", path);
	}
	for (uint32_t i = 0; i < ino->xattr_count; i++) {
		struct slimfs_xattr xa;
		char xname[SLIMFS_XATTR_NAME_MAX + 1];

		r = slimfs_index_xattr(x->idx, ino, i, &xa);
		if (r < 0)
			return log_error_errno(r, "'%s': cannot read xattr %u", path, i);
		memcpy(xname, xa.name, xa.name_len);
		xname[xa.name_len] = '\0';
		if (fd >= 0) {
			r = fsetxattr(fd, xname, xa.value, xa.value_len, 0);
		} else {
			/* no fd for symlinks and special files: lsetxattr relative to dirfd */
			r = fchdir(dirfd);
			if (r == 0)
				r = lsetxattr(name, xname, xa.value, xa.value_len, 0);
		}
		if (r < 0 && (r = lost(x, LOST_XATTR, errno, path)) < 0)
			return log_error_errno(r, "'%s': cannot set xattr '%s'", path, xname);
	}
	ts[0].tv_sec = ts[1].tv_sec = (time_t)ino->mtime;
	ts[0].tv_nsec = ts[1].tv_nsec = ino->mtime_ns;
	r = fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
	if (r < 0)
		return log_error_errno(-errno, "'%s': cannot set the mtime", path);
	return 0;
}

static int write_file(struct xctx *x, int fd, const struct slimfs_inode *ino, const char *path)
{
	int r;

	if (ftruncate(fd, (off_t)ino->size) < 0)
		return log_error_errno(-errno, "'%s': cannot set the size", path);
	for (uint32_t i = 0; i < ino->count; i++) {
		struct slimfs_extent e;
		const uint8_t *plain;
		uint32_t plain_len;

		r = slimfs_index_extent(x->idx, ino, i, &e);
		if (r < 0)
			return log_error_errno(r, "'%s': extent %u", path, i);
		r = slimfs_reader_chunk(&x->rd, e.chunk, &plain, &plain_len);
		if (r < 0)
			return log_error_errno(r, "'%s': cannot read chunk %u", path, e.chunk);
		r = slimfs_extent_check(&e, plain_len);
		if (r < 0)
			return log_error_errno(r, "'%s': extent %u lies outside chunk %u", path, i,
					       e.chunk);
		r = slimfs_pwrite_all(fd, plain + e.chunk_off, e.len, e.file_off);
		if (r < 0)
			return log_error_errno(r, "'%s': cannot write", path);
	}
	return 0;
}

/* Opens the directory holding rel (relative to rootfd) without following symlinks. */
static int open_parent(int rootfd, const char *rel, const char **base)
{
	_cleanup_free_ char *p = strdup(rel);
	char *s, *slash;
	int fd;

	if (!p)
		return -ENOMEM;
	fd = dup(rootfd);
	if (fd < 0)
		return -errno;
	*base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
	for (s = p; (slash = strchr(s, '/')); s = slash + 1) {
		int n;

		*slash = '\0';
		n = openat(fd, s, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		if (n < 0)
			return -errno;
		fd = n;
	}
	return fd;
}

static int extract_entry(struct xctx *x, int dirfd, const char *name, uint32_t id,
			 const struct slimfs_inode *ino, const char *path)
{
	int r = 0;

	if (x->first && x->first[id]) {
		const char *base = NULL;
		_cleanup_close_ int src = open_parent(x->rootfd, x->first[id], &base);

		if (src < 0)
			return log_error_errno(src, "'%s': cannot open the directory of '%s'", path,
					       x->first[id]);
		if (linkat(src, base, dirfd, name, 0) < 0)
			return log_error_errno(-errno, "'%s': cannot link to '%s'", path,
					       x->first[id]);
		x->links++;
		return 0;
	}
	switch (ino->mode & S_IFMT) {
	case S_IFREG: {
		_cleanup_close_ int fd = openat(
			dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

		if (fd < 0)
			return log_error_errno(-errno, "'%s': cannot create", path);
		r = write_file(x, fd, ino, path);
		if (r == 0)
			r = set_meta(x, dirfd, name, fd, ino, path);
		x->files++;
		break;
	}
	case S_IFLNK: {
		_cleanup_free_ char *t = strndup(ino->target, ino->target_len);

		if (!t)
			return -ENOMEM;
		if (symlinkat(t, dirfd, name) < 0)
			return log_error_errno(-errno, "'%s': cannot create the symlink", path);
		r = set_meta(x, dirfd, name, -1, ino, path);
		x->others++;
		break;
	}
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		if (mknodat(dirfd, name, (ino->mode & S_IFMT) | 0600, (dev_t)ino->rdev) < 0) {
			int e = errno;

			if ((S_ISCHR(ino->mode) || S_ISBLK(ino->mode)) && perm_error(e))
				return lost(x, LOST_DEVICE, e, path);
			return log_error_errno(-e, "'%s': cannot create the node", path);
		}
		r = set_meta(x, dirfd, name, -1, ino, path);
		x->others++;
		break;
	default:
		return log_error_errno(-EUCLEAN, "'%s': unknown type 0%o", path, ino->mode);
	}
	if (r == 0 && x->first && x->refs[id] > 1) {
		x->first[id] = strdup(path);
		if (!x->first[id])
			return -ENOMEM;
	}
	return r;
}

struct xframe {
	int fd;
	uint32_t id, next;
	char *path; /* relative to the output directory, "" for it */
};

static int count_refs(struct xctx *x)
{
	const struct slimfs_info *in = x->img->info;
	bool any = false;
	int r;

	x->refs = calloc((size_t)in->inode_count, sizeof(*x->refs));
	if (!x->refs)
		return -ENOMEM;
	for (uint32_t id = 0; id < in->inode_count; id++) {
		struct slimfs_inode dir;

		r = slimfs_index_inode(x->idx, id, &dir);
		if (r < 0)
			return r;
		if (!is_dir(&dir))
			continue;
		for (uint32_t i = 0; i < dir.count; i++) {
			struct slimfs_dirent d;

			r = slimfs_index_dirent(x->idx, &dir, i, &d);
			if (r < 0)
				return r;
			if (x->refs[d.ino]++ == 1)
				any = true;
		}
	}
	if (any) {
		x->first = calloc((size_t)in->inode_count, sizeof(*x->first));
		if (!x->first)
			return -ENOMEM;
	}
	return 0;
}

static int extract_tree(struct xctx *x)
{
	struct xframe *st = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	st = malloc(16 * sizeof(*st));
	if (!st)
		return -ENOMEM;
	cap = 16;
	st[0] = (struct xframe){.fd = x->rootfd, .id = 0, .next = 0, .path = strdup("")};
	n = 1;
	if (!st[0].path)
		r = -ENOMEM;
	while (r == 0 && n) {
		struct xframe *f = &st[n - 1];
		struct slimfs_inode dir, ino;
		struct slimfs_dirent d;
		char name[SLIMFS_NAME_MAX + 1];
		_cleanup_free_ char *path = NULL;

		r = slimfs_index_inode(x->idx, f->id, &dir);
		if (r < 0)
			break;
		if (f->next == dir.count) {
			/* all entries done: the directory's own metadata, deepest first */
			r = set_meta(x, -1, NULL, f->fd, &dir, *f->path ? f->path : ".");
			if (f->fd != x->rootfd)
				close(f->fd);
			free(f->path);
			n--;
			x->dirs++;
			continue;
		}
		r = slimfs_index_dirent(x->idx, &dir, f->next++, &d);
		if (r == 0)
			r = slimfs_index_inode(x->idx, d.ino, &ino);
		if (r < 0)
			break;
		if (!slimfs_inode_in_view(&ino, x->view))
			continue;
		memcpy(name, d.name, d.name_len);
		name[d.name_len] = '\0';
		path = path_join(f->path, name, d.name_len);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		if (!is_dir(&ino)) {
			r = extract_entry(x, f->fd, name, d.ino, &ino, path);
			continue;
		}
		if (mkdirat(f->fd, name, 0700) < 0) {
			r = log_error_errno(-errno, "'%s': cannot create the directory", path);
			break;
		}
		if (n == cap) {
			struct xframe *v = realloc(st, cap * 2 * sizeof(*st));

			if (!v) {
				r = -ENOMEM;
				break;
			}
			st = v;
			cap *= 2;
		}
		st[n].fd =
			openat(st[n - 1].fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (st[n].fd < 0) {
			r = log_error_errno(-errno, "'%s': cannot open the directory", path);
			break;
		}
		st[n].id = d.ino;
		st[n].next = 0;
		st[n].path = steal_ptr(&path);
		n++;
	}
	while (n) {
		n--;
		if (st[n].fd != x->rootfd)
			close(st[n].fd);
		free(st[n].path);
	}
	free(st);
	return r;
}

/* DIR must not exist (it is created) or be an empty directory. */
static int open_output(const char *dir)
{
	_cleanup_close_ int fd = -1;
	struct dirent *de;
	DIR *d;
	int dfd;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return log_error_errno(-errno, "cannot create '%s'", dir);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", dir);
	dfd = dup(fd);
	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			closedir(d);
			log_error("'%s' is not empty", dir);
			return -ENOTEMPTY;
		}
	closedir(d);
	return steal_fd(&fd);
}

int cmd_extract(int argc, char **argv)
{
	enum { OPT_VIEW = 256 };
	static const struct option longopts[] = {
		{"view", required_argument, NULL, OPT_VIEW},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct slimfs_cli cli = {.shortopts = "vh", .longopts = longopts, .usage = extract_usage};
	struct xctx x;
	const char *view = NULL;
	_cleanup_close_ int cwd = -1;
	struct rlimit rl;
	int c, r;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		if (c == OPT_VIEW)
			view = optarg;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 2, 2))
		return EXIT_USAGE;
	memset(&x, 0, sizeof(x));
	x.view = SLIMFS_VIEW_NONE;
	x.rootfd = -1;
	/* one descriptor per directory level is held open */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (open_image(argv[optind], NULL, &x.img) < 0)
		return 1;
	x.idx = x.img->idx;
	r = view ? parse_view(x.idx, view, &x.view) : 0;
	if (r == 0) {
		r = slimfs_reader_init(&x.rd, x.img);
		if (r < 0)
			log_error_errno(r, "cannot allocate read buffers");
	}
	if (r == 0)
		r = count_refs(&x);
	if (r == 0) {
		x.rootfd = open_output(argv[optind + 1]);
		r = x.rootfd < 0 ? x.rootfd : 0;
	}
	if (r == 0)
		r = extract_tree(&x);
	if (cwd >= 0 && fchdir(cwd) < 0)
		log_warn_errno(-errno, "cannot return to the working directory");
	if (r == -ENOMEM)
		log_error("out of memory");
	if (r == 0) {
		log_info("extracted %" PRIu64 " files, %" PRIu64 " directories, %" PRIu64
			 " hardlinks, %" PRIu64 " other entries into '%s'",
			 x.files, x.dirs, x.links, x.others, argv[optind + 1]);
		for (int k = 0; k < LOST_COUNT; k++)
			if (x.lost[k])
				log_warn("not restored (not root?): %s, %" PRIu64 " times",
					 lost_what[k], x.lost[k]);
	} else if (x.rootfd >= 0) {
		log_error("extraction into '%s' is incomplete", argv[optind + 1]);
	}
	if (x.rootfd >= 0)
		close(x.rootfd);
	if (x.first)
		for (uint64_t i = 0; i < x.img->info->inode_count; i++)
			free(x.first[i]);
	free(x.first);
	free(x.refs);
	if (x.rd.img)
		slimfs_reader_fini(&x.rd);
	slimfs_image_close(x.img);
	return r < 0 ? 1 : 0;
}

/* ---- verify ---- */

static void verify_usage(FILE *f)
{
	fprintf(f, "usage: slimfs verify [--quiet] [--digest sha256:HEX] IMAGE\n"
		   "\n"
		   "Checks an image: the index (checksum, bounds, tree shape), then every chunk\n"
		   "(fetched, SHA-256, decompressed, XXH3-128 id) and every file's extents.\n"
		   "Exits 0 only when everything is good; otherwise lists the bad chunks and\n"
		   "the files they belong to.\n"
		   "\n"
		   "options:\n"
		   "      --digest D  the index must have this digest (sha256:HEX)\n"
		   "  -q, --quiet     print only problems\n"
		   "  -v, --verbose   print more\n"
		   "  -h, --help      this help\n");
}

struct bad_chunk {
	uint32_t i;
	int err;
	const char *why;
};

struct verify_ctx {
	uint8_t *bad; /* per chunk: 1 when bad */
	uint64_t affected;
	bool quiet;
};

static int verify_list_files(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			     const char *path, void *ud)
{
	struct verify_ctx *v = ud;
	int r;

	for (uint32_t i = 0; i < dir->count; i++) {
		struct slimfs_dirent d;
		struct slimfs_inode ino;

		r = slimfs_index_dirent(idx, dir, i, &d);
		if (r == 0)
			r = slimfs_index_inode(idx, d.ino, &ino);
		if (r < 0)
			return r;
		if (!S_ISREG(ino.mode))
			continue;
		for (uint32_t e = 0; e < ino.count; e++) {
			struct slimfs_extent x;

			if (slimfs_index_extent(idx, &ino, e, &x) == 0 && v->bad[x.chunk]) {
				printf("  damaged file: %s%s%.*s (chunk %u)\n", path,
				       strcmp(path, "/") ? "/" : "", (int)d.name_len, d.name,
				       x.chunk);
				v->affected++;
				break;
			}
		}
	}
	return 0;
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"quiet", no_argument, NULL, 'q'},
		SLIMFS_CLI_LONGOPT_DIGEST,
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct verify_ctx v = {0};
	struct slimfs_image *img = NULL;
	const struct slimfs_info *in;
	struct slimfs_cli_fetch f = {0};
	struct slimfs_cli cli = {
		.shortopts = "qvh", .longopts = longopts, .usage = verify_usage, .fetch = &f};
	uint8_t *frame = NULL, *plain = NULL;
	ZSTD_DCtx *dctx = NULL;
	struct bad_chunk *bad = NULL;
	uint64_t nbad = 0, files = 0, extents = 0, bytes = 0, unref = 0, t0;
	uint64_t plain_bytes = 0, comp_bytes = 0;
	uint32_t *refs = NULL;
	char dig[72], b1[32], b2[32];
	int c, r = 0, ret = 1;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		if (c == 'q')
			v.quiet = true;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
		return EXIT_USAGE;
	t0 = slimfs_now_ns();
	if (open_image(argv[optind], &f, &img) < 0) {
		printf("%s: index is bad\n", argv[optind]);
		return 1;
	}
	in = img->info;
	slimfs_index_digest_str(img->idx, dig);
	if (!v.quiet)
		printf("index: ok, %s, %" PRIu64 " inodes, %" PRIu64 " chunks, %" PRIu64
		       " extents\n",
		       dig, in->inode_count, in->chunk_count, in->extent_count);
	if (img->backend->size && in->data_off + in->data_size > img->backend->size) {
		printf("image is truncated: %" PRIu64 " bytes, the data ends at %" PRIu64 "\n",
		       img->backend->size, in->data_off + in->data_size);
		r = -EIO; /* keep going: list the chunks that are missing */
	}

	frame = malloc(ZSTD_compressBound(SLIMFS_CHUNK_MAX));
	plain = malloc(SLIMFS_CHUNK_MAX);
	dctx = ZSTD_createDCtx();
	v.bad = calloc((size_t)in->chunk_count + 1, 1);
	refs = calloc((size_t)in->chunk_count + 1, sizeof(*refs));
	bad = calloc((size_t)in->chunk_count + 1, sizeof(*bad));
	if (!frame || !plain || !dctx || !v.bad || !refs || !bad) {
		log_error("out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < in->chunk_count; i++) {
		struct slimfs_chunk ch;
		const char *why = NULL;
		int e;

		e = slimfs_index_chunk(img->idx, i, &ch);
		if (e == 0) {
			plain_bytes += ch.usize;
			comp_bytes += ch.csize;
			e = slimfs_image_fetch(img, &ch, frame);
			if (e < 0)
				why = "cannot read";
		}
		if (e == 0) {
			e = slimfs_chunk_decode(&ch, frame, ch.csize, plain, dctx);
			if (e < 0)
				why = slimfs_chunk_verify_frame(&ch, frame, ch.csize) < 0
					      ? "SHA-256 mismatch"
					      : "bad zstd frame or id mismatch";
		}
		if (e < 0) {
			bad[nbad].i = i;
			bad[nbad].err = e;
			bad[nbad].why = why ? why : "bad record";
			nbad++;
			v.bad[i] = 1;
		}
	}
	for (uint32_t id = 0; id < in->inode_count; id++) {
		struct slimfs_inode ino;
		uint64_t end = 0;

		if (slimfs_index_inode(img->idx, id, &ino) < 0 || !S_ISREG(ino.mode))
			continue;
		files++;
		for (uint32_t e = 0; e < ino.count; e++) {
			struct slimfs_extent x;
			struct slimfs_chunk ch;

			if (slimfs_index_extent(img->idx, &ino, e, &x) < 0 ||
			    slimfs_index_chunk(img->idx, x.chunk, &ch) < 0 ||
			    slimfs_extent_check(&x, ch.usize) < 0 || x.file_off < end ||
			    x.file_off + x.len > ino.size) {
				printf("inode %u: extent %u is inconsistent\n", id, e);
				r = -EUCLEAN;
				continue;
			}
			end = x.file_off + x.len;
			refs[x.chunk]++;
			extents++;
			bytes += x.len;
		}
	}
	for (uint32_t i = 0; i < in->chunk_count; i++)
		if (!refs[i])
			unref++;

	if (nbad) {
		printf("%" PRIu64 " of %" PRIu64 " chunks are bad:\n", nbad, in->chunk_count);
		for (uint64_t k = 0; k < nbad; k++) {
			struct slimfs_chunk ch;

			slimfs_index_chunk(img->idx, bad[k].i, &ch);
			printf("  chunk %u at offset %" PRIu64 " (%u bytes, %u plain): %s: %s\n",
			       bad[k].i, ch.off, ch.csize, ch.usize, bad[k].why,
			       strerror(-bad[k].err));
		}
		walk_dirs(img->idx, 0, "/", SLIMFS_VIEW_NONE, verify_list_files, &v);
		printf("%" PRIu64 " files are damaged\n", v.affected);
		r = -EBADMSG;
	}
	if (!v.quiet) {
		printf("chunks: %" PRIu64 " checked, %" PRIu64
		       " bad; %s plain from %s compressed\n",
		       in->chunk_count, nbad, slimfs_fmt_bytes(plain_bytes, b1, sizeof(b1)),
		       slimfs_fmt_bytes(comp_bytes, b2, sizeof(b2)));
		printf("files: %" PRIu64 ", %" PRIu64 " extents, %s of data", files, extents,
		       slimfs_fmt_bytes(bytes, b1, sizeof(b1)));
		if (unref)
			printf(", %" PRIu64 " chunks used by no file", unref);
		printf("\n");
		printf("%s in %.2f s\n", r < 0 ? "BAD" : "ok",
		       (double)(slimfs_now_ns() - t0) / 1e9);
	} else if (r < 0) {
		printf("%s: BAD\n", argv[optind]);
	}
	ret = r < 0 ? 1 : 0;
out:
	ZSTD_freeDCtx(dctx);
	free(frame);
	free(plain);
	free(v.bad);
	free(refs);
	free(bad);
	slimfs_image_close(img);
	return ret;
}
