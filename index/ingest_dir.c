// SPDX-License-Identifier: MIT
/*
 * A directory (a rootfs tree) into the tree.
 *
 * The walk holds one directory fd at a time: each directory's names are
 * read and sorted up front (deterministic output, hardlinks get the first
 * path in sort order), subdirectories are entered with
 * openat(O_NOFOLLOW | O_DIRECTORY) and left through "..", checked against the
 * (st_dev, st_ino) recorded on the way down. So depth costs heap, not stack
 * or file descriptors; entries are added to their directory's tree node
 * (slimfs_tree_set_at), never resolved from the root, so depth costs no time
 * either. Symlinks are never followed. File data is not read:
 * the tree records the path and the data segments (SEEK_DATA/SEEK_HOLE, for
 * files with fewer blocks than their size), and the writer reads the file
 * later, and then also the xattrs of a file that has all its blocks
 * (whole_file: such files are not even opened here).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "slimfs/util.h"
#include "tree.h"

struct level {
	char **names;
	size_t n, i;
	dev_t dev;
	ino_t ino;
	size_t pathlen;		   /* length of the relative path of this directory */
	struct slimfs_tnode *node; /* borrowed: this directory in the tree */
};

struct hl_ent {
	dev_t dev;
	ino_t ino;
	struct slimfs_tinode *tino; /* borrowed: owned by the tree */
};

struct walker {
	struct slimfs_tree *t;
	const char *root;
	char *rel; /* relative path being processed */
	size_t rel_cap;
	struct hl_ent *hl; /* open addressing, (dev, ino) of files with nlink > 1 */
	size_t hl_n, hl_cap;
	struct slimfs_xbuf xbuf; /* listxattr / getxattr scratch */
};

static void free_names(struct level *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	l->names = NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads and sorts the names of the directory at fd (fd stays open). */
static int read_names(int fd, struct level *l)
{
	_cleanup_close_ int dfd = dup(fd);
	size_t cap = 0;
	DIR *d;

	if (dfd < 0)
		return -errno;
	d = fdopendir(dfd);
	if (!d)
		return -errno;
	steal_fd(&dfd);
	rewinddir(d);
	for (;;) {
		struct dirent *de;

		errno = 0;
		de = readdir(d);
		if (!de) {
			int r = -errno;

			closedir(d);
			if (r < 0)
				return r;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (l->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			char **v = realloc(l->names, ncap * sizeof(*v));

			if (!v) {
				closedir(d);
				return -ENOMEM;
			}
			l->names = v;
			cap = ncap;
		}
		l->names[l->n] = strdup(de->d_name);
		if (!l->names[l->n]) {
			closedir(d);
			return -ENOMEM;
		}
		l->n++;
	}
	if (l->n > 1)
		qsort(l->names, l->n, sizeof(*l->names), cmp_str);
	return 0;
}

static int rel_append(struct walker *w, size_t at, const char *name)
{
	size_t len = strlen(name), need = at + 1 + len + 1;

	if (need > w->rel_cap) {
		size_t ncap = MAX(need, w->rel_cap * 2);
		char *p = realloc(w->rel, ncap);

		if (!p)
			return -ENOMEM;
		w->rel = p;
		w->rel_cap = ncap;
	}
	if (at)
		w->rel[at++] = '/';
	memcpy(w->rel + at, name, len + 1);
	return 0;
}

static char *full_path(const struct walker *w)
{
	size_t rl = strlen(w->rel), ol = strlen(w->root);
	char *s = malloc(ol + 1 + rl + 1);

	if (!s)
		return NULL;
	memcpy(s, w->root, ol);
	s[ol] = '/';
	memcpy(s + ol + 1, w->rel, rl + 1);
	return s;
}

static size_t hl_slot(const struct walker *w, dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
	size_t mask = w->hl_cap - 1, i = (size_t)(h ^ (h >> 29)) & mask;

	while (w->hl[i].tino && !(w->hl[i].dev == dev && w->hl[i].ino == ino))
		i = (i + 1) & mask;
	return i;
}

static int hl_add(struct walker *w, dev_t dev, ino_t ino, struct slimfs_tinode *tino)
{
	if ((w->hl_n + 1) * 2 > w->hl_cap) {
		struct hl_ent *old = w->hl;
		size_t ocap = w->hl_cap;

		w->hl_cap = ocap ? ocap * 2 : 64;
		w->hl = calloc(w->hl_cap, sizeof(*w->hl));
		if (!w->hl) {
			w->hl = old;
			w->hl_cap = ocap;
			return -ENOMEM;
		}
		for (size_t i = 0; i < ocap; i++)
			if (old[i].tino)
				w->hl[hl_slot(w, old[i].dev, old[i].ino)] = old[i];
		free(old);
	}
	w->hl[hl_slot(w, dev, ino)] = (struct hl_ent){.dev = dev, .ino = ino, .tino = tino};
	w->hl_n++;
	return 0;
}

static int xbuf_reserve(struct slimfs_xbuf *x, size_t n)
{
	char *p;

	if (n <= x->cap)
		return 0;
	p = realloc(x->buf, n);
	if (!p)
		return -ENOMEM;
	x->buf = p;
	x->cap = n;
	return 0;
}

/* Extended attributes through fd when >= 0, else through path (symlinks,
 * devices and fifos are never opened); what names the file in messages. */
int slimfs_read_xattrs(int fd, const char *path, const char *what, struct slimfs_xbuf *x,
		       struct slimfs_tinode *ino)
{
	_cleanup_free_ char *names = NULL;
	ssize_t n;
	int r;

	for (;;) {
		n = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(path, NULL, 0);
		if (n < 0) {
			if (errno == ENOTSUP || errno == ENOSYS)
				return 0;
			return log_error_errno(-errno, "'%s': cannot list xattrs", what);
		}
		if (n == 0)
			return 0;
		free(names);
		names = malloc((size_t)n);
		if (!names)
			return -ENOMEM;
		n = fd >= 0 ? flistxattr(fd, names, (size_t)n) : llistxattr(path, names, (size_t)n);
		if (n >= 0)
			break;
		if (errno != ERANGE) /* ERANGE: grew meanwhile, again */
			return log_error_errno(-errno, "'%s': cannot list xattrs", what);
	}
	for (char *name = names; name < names + n; name += strlen(name) + 1) {
		ssize_t v;

		for (;;) {
			v = fd >= 0 ? fgetxattr(fd, name, NULL, 0) : lgetxattr(path, name, NULL, 0);
			if (v < 0)
				break;
			r = xbuf_reserve(x, (size_t)v + 1);
			if (r < 0)
				return r;
			v = fd >= 0 ? fgetxattr(fd, name, x->buf, (size_t)v)
				    : lgetxattr(path, name, x->buf, (size_t)v);
			if (v >= 0 || errno != ERANGE)
				break;
		}
		if (v < 0) {
			if (errno == ENODATA)
				continue; /* removed meanwhile */
			return log_error_errno(-errno, "'%s': cannot read xattr '%s'", what, name);
		}
		r = slimfs_tinode_add_xattr(ino, name, x->buf, (size_t)v);
		if (r < 0)
			return r;
	}
	slimfs_tinode_sort_xattrs(ino);
	return 0;
}

/* The walker's: through fd when >= 0, else through the full path. */
static int read_xattrs(struct walker *w, int fd, struct slimfs_tinode *ino)
{
	_cleanup_free_ char *path = NULL;

	if (fd < 0) {
		path = full_path(w);
		if (!path)
			return -ENOMEM;
		if (strlen(path) >= PATH_MAX) {
			log_debug("'%s': path too long to read xattrs, skipped", w->rel);
			return 0;
		}
	}
	return slimfs_read_xattrs(fd, path, w->rel, &w->xbuf, ino);
}

static void set_meta(struct slimfs_tinode *ino, const struct stat *st)
{
	ino->uid = st->st_uid;
	ino->gid = st->st_gid;
	ino->mtime = st->st_mtim.tv_sec;
	ino->mtime_ns = (uint32_t)st->st_mtim.tv_nsec;
}

/*
 * A regular file that has all the blocks its size needs, nearly every one:
 * one data segment (a hole it might still have, next to blocks reserved
 * past its end, is kept as the zeros it reads as), and its xattrs are read
 * by the writer's worker that reads its data (xattrs_later). So it is not
 * opened here: no open, lseek, listxattr or close on the walk's one thread.
 */
static bool whole_file(const struct stat *st)
{
	return S_ISREG(st->st_mode) && st->st_size > 0 &&
	       (uint64_t)st->st_blocks * 512 >= (uint64_t)st->st_size;
}

static int set_whole_file(struct walker *w, const struct stat *st, struct slimfs_tinode *ino)
{
	struct slimfs_tcontent *d = &ino->data;

	d->size = (uint64_t)st->st_size;
	d->path = full_path(w);
	d->seg = malloc(sizeof(*d->seg));
	if (!d->path || !d->seg)
		return -ENOMEM;
	d->seg[0] = (struct slimfs_tseg){.file_off = 0, .len = d->size, .src_off = 0};
	d->nseg = 1;
	ino->xattrs_later = true;
	return 0;
}

/* Data segments of an open regular file; holes from SEEK_DATA/SEEK_HOLE. */
static int map_segments(struct walker *w, int fd, uint64_t size, struct slimfs_tinode *ino)
{
	struct slimfs_tcontent *d = &ino->data;
	uint32_t cap = 0;
	off_t off = 0;

	d->size = size;
	d->path = full_path(w);
	if (!d->path)
		return -ENOMEM;
	while ((uint64_t)off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole up to the end */
			if (errno != EINVAL && errno != EOPNOTSUPP)
				return log_error_errno(-errno, "'%s': cannot map data", w->rel);
			data = off; /* no SEEK_DATA here: all data */
			hole = (off_t)size;
		} else {
			hole = lseek(fd, data, SEEK_HOLE);
			if (hole < 0)
				return log_error_errno(-errno, "'%s': cannot map holes", w->rel);
		}
		if ((uint64_t)hole > size)
			hole = (off_t)size;
		if (hole <= data)
			break;
		if (d->nseg == cap) {
			uint32_t ncap = cap ? cap * 2 : 1;
			struct slimfs_tseg *s = realloc(d->seg, ncap * sizeof(*s));

			if (!s)
				return -ENOMEM;
			d->seg = s;
			cap = ncap;
		}
		d->seg[d->nseg++] = (struct slimfs_tseg){.file_off = (uint64_t)data,
							 .len = (uint64_t)(hole - data),
							 .src_off = (uint64_t)data};
		off = hole;
	}
	return 0;
}

/* One non-directory entry (dirfd and parent: its directory, w->rel: its path). */
static int do_file(struct walker *w, int dirfd, struct slimfs_tnode *parent, const char *name,
		   const struct stat *st)
{
	struct slimfs_tinode *ino;
	_cleanup_close_ int fd = -1;
	int r;

	if (S_ISSOCK(st->st_mode)) {
		log_warn("'%s/%s': socket skipped", w->root, w->rel);
		return 0;
	}
	if (!S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode) && !S_ISCHR(st->st_mode) &&
	    !S_ISBLK(st->st_mode) && !S_ISFIFO(st->st_mode)) {
		log_error("'%s/%s': unsupported file type %o", w->root, w->rel,
			  (unsigned)(st->st_mode & S_IFMT));
		return -EOPNOTSUPP;
	}
	if (st->st_nlink > 1) {
		size_t i = w->hl_cap ? hl_slot(w, st->st_dev, st->st_ino) : 0;

		if (w->hl_cap && w->hl[i].tino)
			return slimfs_tree_set_at(w->t, parent, name, w->hl[i].tino, NULL);
	}

	ino = slimfs_tinode_new((uint32_t)(st->st_mode & (S_IFMT | 07777)));
	if (!ino)
		return -ENOMEM;
	set_meta(ino, st);
	if (whole_file(st)) {
		r = set_whole_file(w, st, ino);
		if (r < 0)
			goto fail;
	} else if (S_ISREG(st->st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			r = log_error_errno(-errno, "cannot open '%s/%s'", w->root, w->rel);
			goto fail;
		}
		r = map_segments(w, fd, (uint64_t)st->st_size, ino);
		if (r < 0)
			goto fail;
	} else if (S_ISLNK(st->st_mode)) {
		size_t cap = (size_t)st->st_size + 1;

		for (;;) {
			ssize_t n;

			free(ino->target);
			ino->target = malloc(cap);
			if (!ino->target) {
				r = -ENOMEM;
				goto fail;
			}
			n = readlinkat(dirfd, name, ino->target, cap);
			if (n < 0) {
				r = log_error_errno(-errno, "cannot read symlink '%s/%s'", w->root,
						    w->rel);
				goto fail;
			}
			if ((size_t)n < cap) {
				ino->target[n] = '\0';
				break;
			}
			cap *= 2;
		}
	} else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		ino->rdev = st->st_rdev;
	}
	r = ino->xattrs_later ? 0 : read_xattrs(w, fd, ino);
	if (r < 0)
		goto fail;
	r = slimfs_tree_set_at(w->t, parent, name, ino, NULL);
	if (r < 0) {
		log_error_errno(r, "'%s/%s': cannot add to the tree", w->root, w->rel);
		goto fail;
	}
	if (st->st_nlink > 1) {
		r = hl_add(w, st->st_dev, st->st_ino, ino);
		if (r < 0)
			return r;
	}
	return 0;
fail:
	slimfs_tinode_unref(ino);
	return r;
}

/*
 * A directory just opened as fd: its inode goes to the tree, as name in
 * parent (parent NULL: the root). *node is its tree node.
 */
static int do_dir(struct walker *w, int fd, const struct stat *st, struct slimfs_tnode *parent,
		  const char *name, struct slimfs_tnode **node)
{
	struct slimfs_tinode *ino = slimfs_tinode_new((uint32_t)(st->st_mode & (S_IFMT | 07777)));
	int r;

	if (!ino)
		return -ENOMEM;
	set_meta(ino, st);
	r = read_xattrs(w, fd, ino);
	if (r >= 0)
		r = parent ? slimfs_tree_set_at(w->t, parent, name, ino, node)
			   : slimfs_tree_set(w->t, "", ino, node);
	if (r < 0) {
		slimfs_tinode_unref(ino);
		return log_error_errno(r, "'%s/%s': cannot add the directory", w->root, w->rel);
	}
	return 0;
}

static int walk(struct walker *w)
{
	struct slimfs_tnode *node;
	struct level *lv = NULL;
	size_t depth = 0, cap = 0;
	int fd = -1, r;
	struct stat st;

	fd = open(w->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open directory '%s'", w->root);
	r = rel_append(w, 0, "");
	if (r < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		r = log_error_errno(-errno, "cannot stat '%s'", w->root);
		goto out;
	}
	r = do_dir(w, fd, &st, NULL, NULL, &node);
	if (r < 0)
		goto out;

	cap = 16;
	lv = calloc(cap, sizeof(*lv));
	if (!lv) {
		r = -ENOMEM;
		goto out;
	}
	lv[0] = (struct level){.dev = st.st_dev, .ino = st.st_ino, .pathlen = 0, .node = node};
	r = read_names(fd, &lv[0]);
	if (r < 0) {
		log_error_errno(r, "cannot read directory '%s'", w->root);
		goto out;
	}
	depth = 1;

	while (depth > 0) {
		struct level *l = &lv[depth - 1];
		const char *name;
		int cfd;

		if (l->i == l->n) {
			/* done here: back to the parent through ".." */
			free_names(l);
			depth--;
			if (depth == 0)
				break;
			cfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (cfd < 0 || fstat(cfd, &st) < 0 || st.st_dev != lv[depth - 1].dev ||
			    st.st_ino != lv[depth - 1].ino) {
				r = cfd < 0 ? -errno : -ESTALE;
				if (cfd >= 0)
					close(cfd);
				w->rel[lv[depth - 1].pathlen] = '\0';
				log_error_errno(r, "'%s/%s': directory moved during the walk",
						w->root, w->rel);
				goto out;
			}
			close(fd);
			fd = cfd;
			continue;
		}
		name = l->names[l->i++];
		r = rel_append(w, l->pathlen, name);
		if (r < 0)
			goto out;
		if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = log_error_errno(-errno, "cannot stat '%s/%s'", w->root, w->rel);
			goto out;
		}
		if (!S_ISDIR(st.st_mode)) {
			r = do_file(w, fd, l->node, name, &st);
			if (r < 0)
				goto out;
			continue;
		}
		cfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0) {
			r = log_error_errno(-errno, "cannot open directory '%s/%s'", w->root,
					    w->rel);
			goto out;
		}
		close(fd);
		fd = cfd;
		if (fstat(fd, &st) < 0) {
			r = log_error_errno(-errno, "cannot stat '%s/%s'", w->root, w->rel);
			goto out;
		}
		r = do_dir(w, fd, &st, l->node, name, &node);
		if (r < 0)
			goto out;
		if (depth == cap) {
			struct level *nl = realloc(lv, cap * 2 * sizeof(*lv));

			if (!nl) {
				r = -ENOMEM;
				goto out;
			}
			lv = nl;
			cap *= 2;
		}
		lv[depth] = (struct level){.dev = st.st_dev,
					   .ino = st.st_ino,
					   .pathlen = strlen(w->rel),
					   .node = node};
		depth++;
		r = read_names(fd, &lv[depth - 1]);
		if (r < 0) {
			log_error_errno(r, "cannot read directory '%s/%s'", w->root, w->rel);
			goto out;
		}
	}
	r = 0;
out:
	for (size_t i = 0; i < depth; i++)
		free_names(&lv[i]);
	free(lv);
	if (fd >= 0)
		close(fd);
	return r;
}

int slimfs_ingest_dir(struct slimfs_tree *t, const char *dir)
{
	struct walker w = {.t = t, .root = dir};
	int r;

	r = walk(&w);
	free(w.rel);
	free(w.hl);
	free(w.xbuf.buf);
	return r;
}
