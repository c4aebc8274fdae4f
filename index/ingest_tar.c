// SPDX-License-Identifier: MIT
/*
 * One tar layer (any format and compression libarchive reads) into the tree.
 *
 * libarchive's own path checks only apply to extraction, so every check is
 * done here: ".." components, over-long names, entries below a symlink
 * (the tree refuses those with -ELOOP), absurd sizes, hardlinks that do not
 * resolve inside the tree. OCI whiteouts (.wh.NAME, .wh..wh..opq) remove
 * entries of the layers below and never appear in the tree themselves.
 */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dl_archive.h"
#include "slimfs/util.h"
#include "tree.h"

#define NAME_MAX_LEN	   255
#define FILE_SIZE_MAX	   (1ull << 40) /* 1 TiB: anything bigger is a hostile header */
#define XATTR_NAME_MAX_LEN 255
#define XATTR_VALUE_MAX	   (64u << 10)
#define WH_PREFIX	   ".wh."
#define WH_OPAQUE	   ".wh..wh..opq"
#define ZERO_RUN	   4096u /* zero pieces of this size (aligned in the file) are holes */

/* libarchive's errno for the failure; format problems become -EBADMSG. */
static int archive_err(struct archive *a)
{
	int e = archive_errno(a);

	switch (e) {
	case ENOMEM:
	case EIO:
	case ENOSPC:
	case EACCES:
	case EPERM:
	case ENOENT:
	case EFBIG:
	case EMFILE:
	case ENFILE:
	case EBADMSG:
	case EISDIR:
		return -e;
	default:
		return -EBADMSG;
	}
}

static const char *archive_msg(struct archive *a)
{
	const char *s = archive_error_string(a);

	return s ? s : "unknown archive error";
}

/*
 * Normalises an archive path into buf: components joined by '/', no leading
 * slash, "." and empty components dropped. ".." and components longer than
 * 255 bytes are refused (with why). Returns the number of components.
 */
static int normalize(const char *path, char *buf, size_t size, const char **why)
{
	const char *p = path, *s;
	size_t o = 0, len;
	int n = 0;

	while (slimfs_path_next(&p, &s, &len)) {
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			*why = "'..' component: the path would escape the image root";
			return -EINVAL;
		}
		if (len > NAME_MAX_LEN) {
			*why = "name component longer than 255 bytes";
			return -ENAMETOOLONG;
		}
		if (o + (o ? 1 : 0) + len + 1 > size) {
			*why = "path too long";
			return -ENAMETOOLONG;
		}
		if (o)
			buf[o++] = '/';
		memcpy(buf + o, s, len);
		o += len;
		n++;
	}
	buf[o] = '\0';
	return n;
}

static const char *tree_why(int r)
{
	switch (r) {
	case -ELOOP:
		return "a parent directory is a symlink: the entry would land outside the tree";
	case -ENOTDIR:
		return "a parent is not a directory";
	case -ENOENT:
		return "not found";
	case -EPERM:
		return "cannot hardlink a directory";
	case -EISDIR:
		return "the root must stay a directory";
	case -EINVAL:
		return "invalid path";
	default:
		return strerror(-r);
	}
}

struct layer_ctx {
	struct slimfs_tree *t;
	struct archive *a;
	const char *layer;
	const char *path; /* as in the archive, for messages */
	char *norm;	  /* normalised */
	char *prev;	  /* the last good entry, for messages about the next */
	size_t norm_size;
};

static int fail(struct layer_ctx *c, int r, const char *why)
{
	log_error("layer %s: '%s': %s", c->layer, c->path, why);
	return r;
}

static int apply_whiteout(struct layer_ctx *c, const char *base)
{
	struct slimfs_tree *t = c->t;
	char *dir = c->norm;
	char *slash = strrchr(dir, '/');
	const char *name = base + strlen(WH_PREFIX);
	int r;

	/* dir: the directory that holds the whiteout ("" = root) */
	if (slash)
		*slash = '\0';
	else
		dir = (char *)"";

	if (strcmp(base, WH_OPAQUE) == 0) {
		r = slimfs_tree_clear_lower(t, dir);
		if (r == -ENOENT || r == -ENOTDIR)
			return 0; /* nothing below to hide */
		if (r < 0)
			return fail(c, r, tree_why(r));
		return 0;
	}
	if (strncmp(name, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
		/* other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content */
		log_debug("layer %s: '%s': aufs metadata skipped", c->layer, c->path);
		return 0;
	}
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
		return fail(c, -EINVAL,
			    *dir ? "invalid whiteout name" : "whiteout of the root directory");
	{
		size_t dl = strlen(dir), nl = strlen(name);
		_cleanup_free_ char *victim = malloc(dl + 1 + nl + 1);

		if (!victim)
			return -ENOMEM;
		memcpy(victim, dir, dl);
		victim[dl] = '/';
		memcpy(victim + dl + 1, name, nl + 1);
		r = slimfs_tree_remove(t, victim, true);
	}
	if (r == -ENOENT || r == -ENOTDIR)
		return 0; /* whiteouts of absent entries are common and harmless */
	if (r < 0)
		return fail(c, r, tree_why(r));
	return 0;
}

/* Appends file bytes [off, off + len) to the spool and to the file's segments. */
static int add_segment(struct layer_ctx *c, struct slimfs_tcontent *d, uint32_t *cap, uint64_t off,
		       const uint8_t *buf, size_t len)
{
	struct slimfs_tseg *last = d->nseg ? &d->seg[d->nseg - 1] : NULL;
	uint64_t soff;
	int r;

	r = slimfs_tree_spool(c->t, buf, len, &soff);
	if (r < 0)
		return r;
	if (last && last->file_off + last->len == off && last->src_off + last->len == soff) {
		last->len += len;
		return 0;
	}
	if (d->nseg == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 4;
		struct slimfs_tseg *s;

		if (*cap >= UINT32_MAX / 2)
			return fail(c, -E2BIG, "too many data segments");
		s = realloc(d->seg, ncap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		d->seg = s;
		*cap = ncap;
	}
	d->seg[d->nseg++] = (struct slimfs_tseg){.file_off = off, .len = len, .src_off = soff};
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/*
 * Reads the entry's data into the spool, one segment per run of data. Runs
 * of zeros (whole ZERO_RUN-aligned pieces) become holes instead: they read
 * back as zeros all the same, cost no spool space and no chunks, and a
 * "zstd bomb" (a tiny layer that expands to gigabytes of zeros, which is a
 * legitimate file) costs decompression time only, not disk.
 */
static int read_data(struct layer_ctx *c, struct slimfs_tinode *ino, uint64_t size)
{
	struct slimfs_tcontent *d = &ino->data;
	uint32_t cap = 0;
	uint64_t end = 0;
	int r;

	d->from_spool = true;
	d->size = size;
	for (;;) {
		const uint8_t *buf;
		size_t len, i = 0;
		la_int64_t off;

		r = archive_read_data_block(c->a, (const void **)&buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r == ARCHIVE_WARN) {
			log_warn("layer %s: '%s': %s", c->layer, c->path, archive_msg(c->a));
		} else if (r != ARCHIVE_OK) {
			log_error("layer %s: '%s': cannot read data: %s", c->layer, c->path,
				  archive_msg(c->a));
			return archive_err(c->a);
		}
		if (len == 0)
			continue;
		if (off < 0 || (uint64_t)off < end || len > size || (uint64_t)off > size - len)
			return fail(c, -EBADMSG,
				    "data block outside the file (corrupt sparse map)");
		while (i < len) {
			uint64_t at = (uint64_t)off + i;
			size_t n = MIN(len - i, ZERO_RUN - (size_t)(at % ZERO_RUN)), j;

			if (all_zero(buf + i, n)) {
				i += n;
				continue;
			}
			/* one segment for this piece and the non-zero pieces after it */
			for (j = i + n; j < len; j += n) {
				n = MIN(len - j, (size_t)ZERO_RUN);
				if (all_zero(buf + j, n))
					break;
			}
			r = add_segment(c, d, &cap, at, buf + i, j - i);
			if (r < 0)
				return r;
			i = j;
		}
		end = (uint64_t)off + len;
	}
	return 0;
}

static int add_xattrs(struct layer_ctx *c, struct archive_entry *e, struct slimfs_tinode *ino)
{
	const char *name;
	const void *value;
	size_t len;
	int r;

	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &len) == ARCHIVE_OK) {
		if (!name || !*name || strlen(name) > XATTR_NAME_MAX_LEN)
			return fail(c, -EINVAL, "invalid xattr name");
		if (len > XATTR_VALUE_MAX) {
			log_error("layer %s: '%s': xattr '%s' value of %zu bytes is too large",
				  c->layer, c->path, name, len);
			return -E2BIG;
		}
		r = slimfs_tinode_add_xattr(ino, name, value, len);
		if (r < 0)
			return r;
	}
	slimfs_tinode_sort_xattrs(ino);
	return 0;
}

static int set_meta(struct layer_ctx *c, struct archive_entry *e, struct slimfs_tinode *ino)
{
	la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	int64_t sec = 0;
	long nsec = 0;

	if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
		return fail(c, -EOVERFLOW, "uid or gid out of range");
	ino->uid = (uint32_t)uid;
	ino->gid = (uint32_t)gid;
	if (archive_entry_mtime_is_set(e)) {
		sec = archive_entry_mtime(e);
		nsec = archive_entry_mtime_nsec(e);
#if ARCHIVE_VERSION_NUMBER < 3008000
		/*
		 * libarchive before 3.8 parses a negative pax time "-S.F" as
		 * (-S, +F) instead of -(S + F): undo that. The sign of "-0.F"
		 * is lost inside libarchive and cannot be recovered here.
		 */
		if (sec < 0 && nsec > 0 &&
		    (archive_format(c->a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_TAR) {
			sec--;
			nsec = 1000000000 - nsec;
		}
#endif
		if (nsec < 0 || nsec > 999999999) {
			/* normalise to 0 <= nsec < 1e9, the seconds carry the sign */
			sec += nsec / 1000000000;
			nsec %= 1000000000;
			if (nsec < 0) {
				sec--;
				nsec += 1000000000;
			}
		}
	}
	ino->mtime = sec;
	ino->mtime_ns = (uint32_t)nsec;
	return add_xattrs(c, e, ino);
}

static int do_entry(struct layer_ctx *c, struct archive_entry *e)
{
	struct slimfs_tree *t = c->t;
	_cleanup_free_ char *lnorm = NULL;
	struct slimfs_tinode *ino;
	const char *why = NULL, *base, *hl;
	mode_t type;
	int r, n;

	c->path = archive_entry_pathname(e);
	if (!c->path)
		c->path = archive_entry_pathname_utf8(e);
	if (!c->path) {
		c->path = "?";
		return fail(c, -EBADMSG, "entry without a readable path name");
	}
	/* the normalised path is never longer than the original */
	if (strlen(c->path) + 1 > c->norm_size) {
		size_t ns = MAX(strlen(c->path) + 1, 2 * c->norm_size);
		char *nb = realloc(c->norm, ns);

		if (!nb)
			return -ENOMEM;
		c->norm = nb;
		c->norm_size = ns;
	}
	n = normalize(c->path, c->norm, c->norm_size, &why);
	if (n < 0)
		return fail(c, n, why);

	base = strrchr(c->norm, '/');
	base = base ? base + 1 : c->norm;
	if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
		return apply_whiteout(c, base);

	hl = archive_entry_hardlink(e);
	if (hl) {
		size_t hl_size = strlen(hl) + 1;

		lnorm = malloc(hl_size);
		if (!lnorm)
			return -ENOMEM;
		r = normalize(hl, lnorm, hl_size, &why);
		if (r < 0) {
			log_error("layer %s: '%s': hardlink target '%s': %s", c->layer, c->path, hl,
				  why);
			return r;
		}
		if (n == 0)
			return fail(c, -EINVAL, "hardlink in place of the root directory");
		r = slimfs_tree_link(t, c->norm, lnorm);
		if (r < 0) {
			log_error("layer %s: '%s': hardlink to '%s': %s", c->layer, c->path, hl,
				  r == -ENOENT ? "target missing" : tree_why(r));
			return r == -ENOENT ? -ENOENT : r;
		}
		return 0;
	}

	type = archive_entry_filetype(e);
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFLNK:
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
		break;
	case AE_IFSOCK:
		log_warn("layer %s: '%s': socket skipped", c->layer, c->path);
		return 0;
	default: {
		char msg[64];

		snprintf(msg, sizeof(msg), "unsupported entry type %o", (unsigned)type);
		return fail(c, -EOPNOTSUPP, msg);
	}
	}
	if (n == 0 && type != AE_IFDIR)
		return fail(c, -EISDIR, "non-directory in place of the root directory");

	ino = slimfs_tinode_new((uint32_t)(type | (archive_entry_perm(e) & 07777)));
	if (!ino)
		return -ENOMEM;
	r = set_meta(c, e, ino);
	if (r < 0)
		goto out;

	switch (type) {
	case AE_IFREG: {
		la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;

		if (size < 0 || (uint64_t)size > FILE_SIZE_MAX) {
			char msg[96];

			snprintf(msg, sizeof(msg), "absurd file size %" PRId64 " (limit 1 TiB)",
				 (int64_t)size);
			r = fail(c, -EFBIG, msg);
			goto out;
		}
		r = read_data(c, ino, (uint64_t)size);
		if (r < 0)
			goto out;
		break;
	}
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);

		if (!target)
			target = archive_entry_symlink_utf8(e);
		if (!target || !*target) {
			r = fail(c, -EBADMSG, "symlink without a target");
			goto out;
		}
		if (strlen(target) >= 4096) {
			r = fail(c, -ENAMETOOLONG, "symlink target longer than 4095 bytes");
			goto out;
		}
		ino->target = strdup(target);
		if (!ino->target) {
			r = -ENOMEM;
			goto out;
		}
		break;
	}
	case AE_IFCHR:
	case AE_IFBLK:
		ino->rdev = archive_entry_rdev(e);
		break;
	default:
		break;
	}

	r = slimfs_tree_set(t, c->norm, ino, NULL);
	if (r < 0) {
		fail(c, r, tree_why(r));
		goto out;
	}
	return 0;
out:
	slimfs_tinode_unref(ino);
	return r;
}

int slimfs_ingest_archive(struct slimfs_tree *t, struct archive *a, const char *layer_name)
{
	struct layer_ctx c = {.t = t, .a = a, .layer = layer_name ? layer_name : "?"};
	int r;

	r = slimfs_dl_archive_load(); /* a was made by our caller: loaded, unless by tests */
	if (r < 0)
		return r;
	for (;;) {
		struct archive_entry *e;

		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r == ARCHIVE_WARN) {
			log_warn("layer %s: %s", c.layer, archive_msg(a));
		} else if (r != ARCHIVE_OK) {
			if (c.prev)
				log_error("layer %s: entry after '%s': truncated or corrupt "
					  "archive: %s",
					  c.layer, c.prev, archive_msg(a));
			else
				log_error("layer %s: first entry: truncated or corrupt archive: %s",
					  c.layer, archive_msg(a));
			r = archive_err(a);
			break;
		}
		r = do_entry(&c, e);
		if (r < 0)
			break;
		free(c.prev);
		c.prev = strdup(c.path);
	}
	free(c.norm);
	free(c.prev);
	return r < 0 ? r : 0;
}
