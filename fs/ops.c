// SPDX-License-Identifier: MIT
/*
 * fuse_lowlevel_ops for an immutable image. Only the op functions reply, and
 * exactly once; helpers return -errno. -EBADMSG/-EUCLEAN (corruption) become
 * EIO at the boundary, with a log line: a reader never sees wrong bytes.
 */
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#include "elfahead.h"
#include "notify.h"
#include "ops.h"
#include "slimfs/format.h"
#include "slimfs/util.h"

/* Iovecs one read reply may carry; a read that needs more is copied. */
#define READ_IOV_MAX 64
#define ZEROS_LEN    65536u
static const uint8_t zeros[ZEROS_LEN];

static struct slimfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static size_t dir_bytes_len(const struct slimfs_fs *fs)
{
	return (size_t)(fs->info->inode_count + 1) * sizeof(*fs->dir_bytes);
}

int slimfs_fs_init(struct slimfs_fs *fs, struct slimfs_image *img, struct slimfs_cache *cache,
		   uint32_t view, const char *view_name)
{
	memset(fs, 0, sizeof(*fs));
	fs->img = img;
	fs->idx = img->idx;
	fs->info = img->info;
	fs->cache = cache;
	fs->view = view;
	fs->view_name = view_name;
	fs->timeout = 365.0 * 86400; /* immutable: a year is forever */
	fs->coalesce = true;
	fs->kernel_readahead = -1;
	fs->hidden_logged = slimfs_bits_new(fs->info->dirent_count);
	fs->announced = slimfs_bits_new(fs->info->inode_count);
	/* Mapped: the pages of directories never swept are never touched (a
	 * calloc'd 80 KiB of the bookworm rootfs was 20 page faults at mount). */
	fs->dir_bytes = slimfs_zmap(dir_bytes_len(fs));
	if (!fs->hidden_logged || !fs->announced || !fs->dir_bytes) {
		free((void *)fs->hidden_logged);
		free((void *)fs->announced);
		slimfs_zmap_free((void *)fs->dir_bytes, dir_bytes_len(fs));
		return -ENOMEM;
	}
	pthread_mutex_init(&fs->hints_lock, NULL);
	pthread_mutex_init(&fs->push_lock, NULL);
	pthread_mutex_init(&fs->data_ra_lock, NULL);
	for (unsigned i = 0; i < SLIMFS_RA_SLOTS; i++)
		pthread_mutex_init(&fs->ra[i].lock, NULL);
	return 0;
}

void slimfs_fs_fini(struct slimfs_fs *fs)
{
	free((void *)fs->hidden_logged);
	fs->hidden_logged = NULL;
	free((void *)fs->announced);
	fs->announced = NULL;
	free((void *)fs->elf_seen);
	fs->elf_seen = NULL;
	slimfs_zmap_free((void *)fs->dir_bytes, dir_bytes_len(fs));
	fs->dir_bytes = NULL;
	pthread_mutex_destroy(&fs->push_lock);
	for (unsigned i = 0; i < SLIMFS_HINTS; i++) {
		free(fs->hints[i]);
		fs->hints[i] = NULL;
	}
	pthread_mutex_destroy(&fs->hints_lock);
	pthread_mutex_destroy(&fs->data_ra_lock);
	for (unsigned i = 0; i < SLIMFS_RA_SLOTS; i++)
		pthread_mutex_destroy(&fs->ra[i].lock);
}

unsigned slimfs_fs_hints(struct slimfs_fs *fs, char *out[SLIMFS_HINTS])
{
	unsigned n = 0;

	pthread_mutex_lock(&fs->hints_lock);
	for (unsigned k = 0; k < SLIMFS_HINTS; k++) {
		const char *h = fs->hints[(fs->hints_next + k) % SLIMFS_HINTS];

		if (h && (out[n] = strdup(h)))
			n++;
	}
	pthread_mutex_unlock(&fs->hints_lock);
	return n;
}

/* At most one error line a second: a failing server must not flood the log. */
static bool error_log_ok(struct slimfs_fs *fs)
{
	unsigned now = (unsigned)(slimfs_now_ns() / 1000000000u);
	unsigned last = atomic_load_explicit(&fs->last_error_log, memory_order_relaxed);

	if (last == now || !atomic_compare_exchange_strong(&fs->last_error_log, &last, now)) {
		atomic_fetch_add_explicit(&fs->errors_not_logged, 1, memory_order_relaxed);
		return false;
	}
	return true;
}

/* The only place errors are replied: corruption becomes EIO, with a log line. */
static void reply_err(fuse_req_t req, int r, const char *op, fuse_ino_t ino)
{
	struct slimfs_fs *fs = fs_of(req);

	if (r == -EBADMSG || r == -EUCLEAN) {
		atomic_fetch_add_explicit(&fs->stats.io_errors, 1, memory_order_relaxed);
		if (error_log_ok(fs))
			log_error("%s: inode %llu: %s, returning EIO (%llu similar lines not "
				  "logged)",
				  op, (unsigned long long)(ino - 1),
				  r == -EBADMSG ? "data failed verification"
						: "corrupt image structure",
				  (unsigned long long)atomic_exchange(&fs->errors_not_logged, 0));
		r = -EIO;
	}
	fuse_reply_err(req, -r);
}

/* Inode behind a FUSE inode number, if it exists and is in the view. */
static int get_inode(struct slimfs_fs *fs, fuse_ino_t ino, struct slimfs_inode *out)
{
	int r;

	if (ino == 0 || ino - 1 >= fs->info->inode_count)
		return -ESTALE;
	r = slimfs_index_inode(fs->idx, (uint32_t)(ino - 1), out);
	if (r < 0)
		return r;
	if (!slimfs_inode_in_view(out, fs->view))
		return -ESTALE; /* a guessed number outside the view */
	return 0;
}

/*
 * The inode of a request on ino, of type fmt (S_IFDIR, S_IFREG, S_IFLNK; 0:
 * any). Otherwise replies the error and returns false: that of get_inode, or
 * for another type -ENOTDIR (a directory wanted), -EISDIR (a directory given
 * where a regular file is wanted) or -EINVAL.
 */
static bool req_inode(fuse_req_t req, fuse_ino_t ino, mode_t fmt, const char *op,
		      struct slimfs_inode *out)
{
	int r = get_inode(fs_of(req), ino, out);

	if (r == 0 && fmt && (out->mode & S_IFMT) != fmt) {
		if (fmt == S_IFDIR)
			r = -ENOTDIR;
		else if (fmt == S_IFREG && S_ISDIR(out->mode))
			r = -EISDIR;
		else
			r = -EINVAL;
	}
	if (r < 0) {
		reply_err(req, r, op, ino);
		return false;
	}
	return true;
}

static uint64_t blocks_of(struct slimfs_fs *fs, const struct slimfs_inode *in)
{
	uint64_t bytes = 0;

	if (!S_ISREG(in->mode))
		return (in->size + 511) / 512;
	/* Bytes the extents cover: sparse files look sparse. */
	for (uint32_t i = 0; i < in->count; i++) {
		struct slimfs_extent x;

		if (slimfs_index_extent(fs->idx, in, i, &x) < 0)
			break;
		bytes += x.len;
	}
	return (bytes + 511) / 512;
}

static void fill_stat(struct slimfs_fs *fs, const struct slimfs_inode *in, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)in->id + 1;
	st->st_mode = in->mode;
	st->st_nlink = in->nlink ? in->nlink : 1;
	st->st_uid = in->uid;
	st->st_gid = in->gid;
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
		st->st_rdev = (dev_t)in->rdev;
	st->st_size = (off_t)in->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)blocks_of(fs, in);
	st->st_mtim.tv_sec = (time_t)in->mtime;
	st->st_mtim.tv_nsec = in->mtime_ns;
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
}

/* The kernel has an inode for id (until it forgets it: stores then fail). */
static void announce(struct slimfs_fs *fs, uint32_t id)
{
	slimfs_bits_set(fs->announced, id);
}

static bool announced(struct slimfs_fs *fs, uint32_t id)
{
	return slimfs_bits_test(fs->announced, id);
}

static void fill_entry(struct slimfs_fs *fs, const struct slimfs_inode *in,
		       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = (fuse_ino_t)in->id + 1;
	e->generation = 1;
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
	fill_stat(fs, in, &e->attr);
}

/* init */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct slimfs_fs *fs = userdata;
	const unsigned wanted = FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS |
				FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_PARALLEL_DIROPS;

	conn->want |= conn->capable & wanted;
	/*
	 * Always readdirplus: a walk stats what it lists, and attributes come
	 * from the same records. Nothing ever changes: no cache invalidation.
	 */
	conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_AUTO_INVAL_DATA);
	/*
	 * Except when tracing: readdirplus hands the kernel every entry of a
	 * listed directory, so later lookups of those names never reach us
	 * and would be missing from the trace (python lists encodings/, then
	 * stats aliases.py).
	 */
	if (fs->trace)
		conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS;
	if (!(conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) ||
	    !(conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT))
		fs->no_open = false;
	/* Readahead of several files at once, and parallel cold reads. */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	/* --kernel-readahead: the kernel takes at most what it offered (128K). */
	if (fs->kernel_readahead >= 0)
		conn->max_readahead = (unsigned)MIN(fs->kernel_readahead, (int64_t)UINT32_MAX);
	/* A takeover: the kernel keeps what it negotiated with the first daemon. */
	if (fs->inherit_want)
		conn->want = fs->want & conn->capable;
	fs->want = conn->want;
	if (fs->on_ready)
		fs->on_ready(fs->ready_ud);
}

/* metadata */

/* Logs a lookup the view hides, once per path (pos: its DIRENTS index). */
static void log_hidden(struct slimfs_fs *fs, const struct slimfs_inode *dir, uint64_t pos,
		       const char *name)
{
	char path[PATH_MAX], *old;
	int n;

	atomic_fetch_add_explicit(&fs->stats.hidden_by_view, 1, memory_order_relaxed);
	if (pos >= fs->info->dirent_count || !slimfs_bits_set(fs->hidden_logged, pos))
		return; /* said once already */
	atomic_fetch_add_explicit(&fs->stats.hidden_paths, 1, memory_order_relaxed);
	n = slimfs_index_path(fs->idx, dir->id, path, sizeof(path));
	if (n < 0 || (size_t)n + strlen(name) + 2 > sizeof(path))
		return;
	snprintf(path + n, sizeof(path) - (size_t)n, "%s%s", n == 1 ? "" : "/", name);
	pthread_mutex_lock(&fs->hints_lock);
	old = fs->hints[fs->hints_next];
	fs->hints[fs->hints_next] = strdup(path);
	fs->hints_next = (fs->hints_next + 1) % SLIMFS_HINTS;
	pthread_mutex_unlock(&fs->hints_lock);
	free(old);
	log_info("hidden by view %s: %s", fs->view_name, path);
}

static void reply_negative(fuse_req_t req, struct slimfs_fs *fs)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.entry_timeout = fs->timeout; /* ino 0: a cached "no such entry" */
	atomic_fetch_add_explicit(&fs->stats.negative_lookups, 1, memory_order_relaxed);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode dir, child;
	struct fuse_entry_param e;
	size_t len = strlen(name);
	uint64_t pos = UINT64_MAX; /* DIRENTS index of name, when looked up */
	uint32_t id;
	int r;

	atomic_fetch_add_explicit(&fs->stats.lookups, 1, memory_order_relaxed);
	r = get_inode(fs, parent, &dir);
	if (r < 0) {
		reply_err(req, r == -ESTALE ? -ENOENT : r, "lookup", parent);
		return;
	}
	if (!S_ISDIR(dir.mode)) {
		reply_err(req, -ENOTDIR, "lookup", parent);
		return;
	}
	if (len > SLIMFS_NAME_MAX) {
		reply_err(req, -ENAMETOOLONG, "lookup", parent);
		return;
	}
	if (strcmp(name, ".") == 0)
		id = dir.id;
	else if (strcmp(name, "..") == 0)
		id = dir.parent;
	else {
		r = slimfs_index_lookup_pos(fs->idx, &dir, name, len, &id, &pos);
		if (r == -ENOENT) {
			if (fs->trace)
				slimfs_trace_lookup(fs->trace, dir.id, name, 0,
						    SLIMFS_TRACE_MISSING);
			reply_negative(req, fs);
			return;
		}
		if (r < 0) {
			reply_err(req, r, "lookup", parent);
			return;
		}
	}
	r = slimfs_index_inode(fs->idx, id, &child);
	if (r < 0) {
		reply_err(req, r, "lookup", parent);
		return;
	}
	if (!slimfs_inode_in_view(&child, fs->view)) {
		if (fs->trace)
			slimfs_trace_lookup(fs->trace, dir.id, name, child.id, SLIMFS_TRACE_HIDDEN);
		log_hidden(fs, &dir, pos, name);
		reply_negative(req, fs);
		return;
	}
	if (fs->trace && id != dir.id && id != dir.parent)
		slimfs_trace_lookup(fs->trace, dir.id, name, child.id, SLIMFS_TRACE_FOUND);
	fill_entry(fs, &child, &e);
	announce(fs, child.id);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req); /* inodes live in the index: nothing to free */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode in;
	struct stat st;

	(void)fi;
	if (!req_inode(req, ino, 0, "getattr", &in))
		return;
	fill_stat(fs, &in, &st);
	fuse_reply_attr(req, &st, fs->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct slimfs_inode in;
	char target[PATH_MAX];

	if (!req_inode(req, ino, S_IFLNK, "readlink", &in))
		return;
	if (in.target_len >= sizeof(target) || !in.target) {
		reply_err(req, -EUCLEAN, "readlink", ino);
		return;
	}
	memcpy(target, in.target, in.target_len);
	target[in.target_len] = '\0';
	fuse_reply_readlink(req, target);
}

/* directories */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode in;

	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	} /* the kernel stops asking */
	if (!req_inode(req, ino, S_IFDIR, "opendir", &in))
		return;
	fi->keep_cache = 1;
	fi->cache_readdir = 1;
	fuse_reply_open(req, fi);
}

static void push_listed(struct slimfs_fs *fs, const struct slimfs_inode *dir);

/*
 * Offsets: position p is ".", "..", then entry p - 2; the offset given with
 * each entry is p + 1, where the next call resumes. Hidden entries keep
 * their positions, so offsets stay stable.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode dir;
	_cleanup_free_ char *buf = NULL;
	size_t used = 0;
	uint64_t pos, total;
	int r;

	if (!req_inode(req, ino, S_IFDIR, "readdir", &dir))
		return;
	size = MIN(size, (size_t)(1u << 20));
	buf = malloc(MAX(size, 1u));
	if (!buf) {
		reply_err(req, -ENOMEM, "readdir", ino);
		return;
	}
	total = 2 + (uint64_t)dir.count;
	for (pos = off < 0 ? total : (uint64_t)off; pos < total; pos++) {
		char name[SLIMFS_NAME_MAX + 1];
		struct fuse_entry_param e;
		struct slimfs_inode child;
		size_t ent;

		memset(&e, 0, sizeof(e));
		if (pos < 2) {
			/* No entry_param for "." and "..": the kernel skips them. */
			strcpy(name, pos == 0 ? "." : "..");
			e.attr.st_ino = pos == 0 ? ino : (fuse_ino_t)dir.parent + 1;
			e.attr.st_mode = S_IFDIR;
		} else {
			struct slimfs_dirent de;

			r = slimfs_index_dirent(fs->idx, &dir, (uint32_t)(pos - 2), &de);
			if (r < 0) {
				reply_err(req, r, "readdir", ino);
				return;
			}
			r = slimfs_index_inode(fs->idx, de.ino, &child);
			if (r < 0) {
				reply_err(req, r, "readdir", ino);
				return;
			}
			if (!slimfs_inode_in_view(&child, fs->view))
				continue;
			if (de.name_len > SLIMFS_NAME_MAX) {
				reply_err(req, -EUCLEAN, "readdir", ino);
				return;
			}
			memcpy(name, de.name, de.name_len);
			name[de.name_len] = '\0';
			if (plus) {
				fill_entry(fs, &child, &e);
			} else {
				e.attr.st_ino = (ino_t)child.id + 1;
				e.attr.st_mode = child.mode;
			}
		}
		if (plus)
			ent = fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
						     (off_t)(pos + 1));
		else
			ent = fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
						(off_t)(pos + 1));
		if (ent > size - used)
			break;
		if (plus && pos >= 2)
			announce(fs, child.id);
		used += ent;
	}
	if (plus && used == 0 && (off < 0 || (uint64_t)off >= total))
		push_listed(fs, &dir);
	fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* files */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode in;

	/* The mount is MS_RDONLY, so the VFS refuses writable opens before we could. */
	if (fs->no_open) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (!req_inode(req, ino, 0, "open", &in))
		return;
	if (S_ISDIR(in.mode)) {
		reply_err(req, -EISDIR, "open", ino);
		return;
	}
	if (fs->trace)
		slimfs_trace_inode(fs->trace, in.id);
	fi->keep_cache = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

struct read_state {
	struct iovec iov[READ_IOV_MAX];
	/* The chunks the iovecs point into (each its extent's bytes, for the filler). */
	struct slimfs_notify_piece refs[READ_IOV_MAX];
	unsigned niov, nrefs;
};

static void read_state_release(struct slimfs_fs *fs, struct read_state *s)
{
	for (unsigned i = 0; i < s->nrefs; i++)
		slimfs_cache_put(fs->cache, s->refs[i].ref);
	s->nrefs = 0;
	s->niov = 0;
}

/* Zeros for file bytes [from, to) of a read from off: into out, or iovecs in s. */
static int read_hole(struct read_state *s, uint8_t *out, uint64_t off, uint64_t from, uint64_t to)
{
	if (out) {
		memset(out + (from - off), 0, to - from);
		return 0;
	}
	while (from < to) {
		size_t z = (size_t)MIN(to - from, (uint64_t)ZEROS_LEN);

		if (s->niov == READ_IOV_MAX)
			return -E2BIG;
		s->iov[s->niov++] = (struct iovec){(void *)zeros, z};
		from += z;
	}
	return 0;
}

/*
 * Bytes [off, off + len) of a regular file (within its size). With out set,
 * copies into out; otherwise points iovecs at cached chunks (references kept
 * in s) and returns -E2BIG when more iovecs would be needed.
 */
static int read_range(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t off, size_t len,
		      struct read_state *s, uint8_t *out)
{
	struct slimfs_extent_iter it;
	int r;

	slimfs_extent_iter_init(&it, fs->idx, in, off, off + len, SLIMFS_EXTENT_HOLES);
	while ((r = slimfs_extent_next(&it)) > 0) {
		struct slimfs_cache_entry *ref;
		const uint8_t *data;
		uint32_t clen;

		if (it.hole) {
			r = read_hole(s, out, off, it.from, it.to);
			if (r < 0)
				return r;
			continue;
		}
		if (!out && (s->niov == READ_IOV_MAX || s->nrefs == READ_IOV_MAX))
			return -E2BIG;
		if (fs->trace)
			slimfs_trace_chunk(fs->trace, it.x.chunk);
		r = slimfs_cache_get(fs->cache, it.x.chunk, &ref, &data, &clen);
		if (r < 0)
			return r;
		r = slimfs_extent_check(&it.x, clen);
		if (r < 0) {
			slimfs_cache_put(fs->cache, ref);
			return r;
		}
		if (out) {
			memcpy(out + (it.from - off), data + it.chunk_from, it.to - it.from);
			slimfs_cache_put(fs->cache, ref);
		} else {
			s->refs[s->nrefs++] = (struct slimfs_notify_piece){
				it.x.file_off, it.x.len, data + it.x.chunk_off, ref,
				it.x.chunk_off == 0 && it.x.len == clen};
			s->iov[s->niov++] =
				(struct iovec){(void *)(data + it.chunk_from), it.to - it.from};
		}
	}
	return r;
}

/*
 * What the remote read path bought, measured on the bookworm rootfs image
 * (10k entries, 87 MiB in 4558 chunks) with a cold `tar -cf - -C MNT . | wc -c`,
 * --cache none --prefetch none, on a noisy 2-vCPU VM, 1-2 runs each:
 *
 *                                        local file   HTTP, --rtt 20ms
 *   each chunk its own request           3.8-4.2 s    90.9 s (4560 requests)
 *   + coalescing (one request per run)   3.7 s        76.6 s (3802 requests)
 *   + per-file sequential read-ahead     15 s (!)     66-73 s (2919 requests)
 *   + read-ahead in data order           -            47-51 s (2950 requests)
 *
 * (HTTP without the emulated delay: 13.0 s with neither, 10.2 s with both.)
 * tar reads one file at a time, so with a 20 ms round trip a walk over small
 * files is bound by misses in series; read-ahead in data order helps as far
 * as the data order follows tar's. On a local file it decodes ahead on the
 * other core: cold tar 4.4-4.6 s with, 5.1-6.1 s without (cmd_mount.c). Decoding
 * stays in the fetching thread: a 64 KiB chunk decodes and verifies in well
 * under 0.1 ms against a 20 ms request, and the FUSE workers and the two
 * background workers already decode in parallel.
 */
/* Bytes one coalesced read of a FUSE request may fetch (max_read is 1 MiB). */
#define COALESCE_MAX (4ull << 20)
/* Chunks looked at per request or read-ahead job. */
#define WANT_MAX 128u
/*
 * A read at most this far past (or before) where the last one ended is
 * sequential. Ahead: 256 KiB, plus up to a chunk (512 KiB at most) that the
 * page-cache filler stored after the last read, which the next one skips.
 */
#define SEQ_AHEAD (768u << 10)
#define SEQ_BACK  (2u << 20)

/*
 * Chunks of in's extents that overlap [from, to) and are not in memory. With
 * foreseen, also whether all those chunks are the profile's.
 */
static size_t missing_chunks(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t from,
			     uint64_t to, uint32_t *out, size_t max, bool *foreseen)
{
	struct slimfs_extent_iter it;
	uint32_t last = UINT32_MAX;
	size_t n = 0;

	if (foreseen)
		*foreseen = fs->prefetch != NULL;

	slimfs_extent_iter_init(&it, fs->idx, in, from, to, 0);
	while (n < max && slimfs_extent_next(&it) > 0) {
		if (it.x.chunk == last)
			continue;
		last = it.x.chunk;
		if (foreseen && *foreseen && !slimfs_prefetch_in_profile(fs->prefetch, last))
			*foreseen = false;
		if (!slimfs_cache_has(fs->cache, last))
			out[n++] = last;
	}
	return n;
}

/*
 * Sequential read-ahead: the second read in a row that continues where the
 * last one of the same file ended queues the next readahead_bytes of the file
 * for the background workers, and again each time the reader has consumed
 * half of that window.
 */
static void read_ahead(struct slimfs_fs *fs, const struct slimfs_inode *in, fuse_ino_t ino,
		       uint64_t off, size_t len)
{
	struct slimfs_ra_slot *sl = &fs->ra[ino % SLIMFS_RA_SLOTS];
	uint64_t end = off + len, from = 0, to = 0;
	uint32_t want[WANT_MAX];
	size_t n;

	if (end >= in->size)
		return;
	pthread_mutex_lock(&sl->lock);
	if (sl->ino == ino && off <= sl->next_off + SEQ_AHEAD && off + SEQ_BACK >= sl->next_off) {
		sl->streak++;
		sl->next_off = MAX(sl->next_off, end);
	} else {
		sl->ino = ino;
		sl->next_off = end;
		sl->ra_end = 0;
		sl->streak = off == 0;
	}
	if (sl->streak >= 2 && sl->ra_end < end + fs->readahead_bytes / 2) {
		from = MAX(sl->ra_end, end);
		to = MIN(in->size, end + fs->readahead_bytes);
		sl->ra_end = to;
	}
	pthread_mutex_unlock(&sl->lock);
	if (to <= from)
		return;
	n = missing_chunks(fs, in, from, to, want, WANT_MAX, NULL);
	if (n) {
		atomic_fetch_add_explicit(&fs->stats.readaheads, 1, memory_order_relaxed);
		slimfs_prefetch_readahead(fs->prefetch, want, n);
	}
}

/* Misses this many chunks apart or less walk the data area forward. */
#define DATA_SEQ_GAP 16u

/*
 * Read-ahead in data order: the builder lays chunks out in tree order, so a
 * walk over many small files (tar, cp -a, a scan) misses chunks that follow
 * each other in the data area, one small file at a time, where per-file
 * read-ahead sees nothing sequential. Two misses in a row at most
 * DATA_SEQ_GAP chunks forward queue the next readahead_bytes of the data
 * area, and again when the walk has used half of it.
 */
static void data_ahead(struct slimfs_fs *fs, uint32_t miss)
{
	uint32_t want[WANT_MAX], from = 0, to = 0;
	uint64_t bytes = 0;
	size_t n = 0;

	pthread_mutex_lock(&fs->data_ra_lock);
	if (miss > fs->data_last_miss && miss - fs->data_last_miss <= DATA_SEQ_GAP)
		fs->data_streak++;
	else if (miss != fs->data_last_miss)
		fs->data_streak = 0;
	fs->data_last_miss = miss;
	if (fs->data_streak >= 2 &&
	    (fs->data_ra_end <= miss || fs->data_ra_end - miss < WANT_MAX / 2)) {
		from = MAX(fs->data_ra_end, miss + 1);
		to = (uint32_t)MIN((uint64_t)from + WANT_MAX, fs->info->chunk_count);
	}
	pthread_mutex_unlock(&fs->data_ra_lock);
	for (uint32_t i = from; i < to && bytes < fs->readahead_bytes; i++) {
		struct slimfs_chunk ch;

		if (slimfs_index_chunk(fs->idx, i, &ch) < 0)
			break;
		bytes += ch.csize;
		if (!slimfs_cache_has(fs->cache, i))
			want[n++] = i;
		to = i + 1;
	}
	if (to <= from)
		return;
	pthread_mutex_lock(&fs->data_ra_lock);
	fs->data_ra_end = MAX(fs->data_ra_end, to);
	pthread_mutex_unlock(&fs->data_ra_lock);
	if (n) {
		atomic_fetch_add_explicit(&fs->stats.readaheads, 1, memory_order_relaxed);
		slimfs_prefetch_readahead(fs->prefetch, want, n);
	}
}

/* Miss-ahead crosses into the next files only while they are this small. */
#define MISS_AHEAD_SMALL (64u << 10)
/* Inodes miss-ahead looks at past the file read (directories, links, ...). */
#define MISS_AHEAD_INODES 64u
/* Directories whose regular files add up to this many bytes or fewer are
 * swept by a miss in one of them (without a profile: see miss_ahead_dir), */
#define MISS_AHEAD_DIR_MAX (8ull << 20)
/* taking their files of up to this size. */
#define MISS_AHEAD_DIR_FILE (256u << 10)

struct miss_ahead {
	uint32_t *out;
	size_t n, max;
	uint32_t after;	 /* only chunks past the read's last missing one (UINT32_MAX: any) */
	uint64_t bytes;	 /* compressed bytes of the window, present chunks too */
	uint64_t budget; /* fs->miss_ahead_bytes */
};

/*
 * Adds the chunks of in's extents from file offset from on; false when the
 * budget or the list is full.
 */
static bool miss_ahead_file(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t from,
			    struct miss_ahead *m)
{
	uint32_t last = UINT32_MAX;

	for (uint32_t i = slimfs_index_extent_find(fs->idx, in, from); i < in->count; i++) {
		struct slimfs_extent x;
		struct slimfs_chunk ch;

		if (slimfs_index_extent(fs->idx, in, i, &x) < 0)
			return false;
		/* Chunks before the read's are elsewhere in the data area. */
		if (x.chunk == last || (m->after != UINT32_MAX && x.chunk <= m->after))
			continue;
		last = x.chunk;
		if (slimfs_index_chunk(fs->idx, x.chunk, &ch) < 0 ||
		    m->bytes + ch.csize > m->budget)
			return false;
		m->bytes += ch.csize;
		if (slimfs_cache_has(fs->cache, x.chunk))
			continue;
		if (m->n == m->max)
			return false;
		m->out[m->n++] = x.chunk;
	}
	return true;
}

/*
 * The directory sweep of miss_ahead: when in's directory (that of its first
 * link) holds at most MISS_AHEAD_DIR_MAX bytes of regular files, its other
 * files of up to MISS_AHEAD_DIR_FILE join the window, in name order from the
 * one after in's entry on, then from the first entry (the modules of a
 * package, a __pycache__ or lib-dynload directory: a program that loads one
 * of them loads more, in an order of its own). false: not such a directory
 * (miss_ahead walks on in inode order instead).
 */
/*
 * The bytes of dir's regular files, counted once per directory (a directory
 * of the image never changes): MISS_AHEAD_DIR_MAX + 1 when over the sweep's
 * limit or unreadable. Racing readers may both count; they store the same.
 */
static uint64_t dir_bytes(struct slimfs_fs *fs, const struct slimfs_inode *dir)
{
	uint64_t total = atomic_load_explicit(&fs->dir_bytes[dir->id], memory_order_relaxed);
	struct slimfs_inode f;
	struct slimfs_dirent de;

	if (total)
		return total - 1;
	for (uint32_t i = 0; i < dir->count && total <= MISS_AHEAD_DIR_MAX; i++) {
		if (slimfs_index_dirent(fs->idx, dir, i, &de) < 0 ||
		    slimfs_index_inode(fs->idx, de.ino, &f) < 0)
			total = MISS_AHEAD_DIR_MAX + 1;
		else if (S_ISREG(f.mode))
			total += f.size;
	}
	total = MIN(total, MISS_AHEAD_DIR_MAX + 1);
	atomic_store_explicit(&fs->dir_bytes[dir->id], total + 1, memory_order_relaxed);
	return total;
}

static bool miss_ahead_dir(struct slimfs_fs *fs, const struct slimfs_inode *in,
			   struct miss_ahead *m)
{
	struct slimfs_inode dir, f;
	struct slimfs_dirent de;
	uint32_t pos = 0;

	if (slimfs_index_inode(fs->idx, in->parent, &dir) < 0 || !S_ISDIR(dir.mode) ||
	    dir_bytes(fs, &dir) > MISS_AHEAD_DIR_MAX)
		return false;
	for (uint32_t i = 0; i < dir.count; i++) {
		if (slimfs_index_dirent(fs->idx, &dir, i, &de) < 0)
			return false;
		if (de.ino == in->id) {
			pos = i;
			break;
		}
	}
	/* The files before in's are before its chunks in the data area. */
	m->after = UINT32_MAX;
	for (uint32_t k = 1; k < dir.count; k++) {
		if (slimfs_index_dirent(fs->idx, &dir, (pos + k) % dir.count, &de) < 0 ||
		    slimfs_index_inode(fs->idx, de.ino, &f) < 0)
			break;
		if (!S_ISREG(f.mode) || f.parent != dir.id || f.size > MISS_AHEAD_DIR_FILE)
			continue;
		if (!miss_ahead_file(fs, &f, 0, m))
			break;
	}
	return true;
}

/*
 * Miss-ahead (remote images): a read that misses waits a round trip, which
 * at 100 Mbit/s and 20 ms is worth ~250 KB of transfer, and the next miss of
 * the same reader usually follows: the next pages of a mapped library or
 * binary, the next module of a package. So the read's range request also
 * fetches the rest of the file after the read, then the small files
 * (<= MISS_AHEAD_SMALL) that follow it in inode order, i.e. in data order
 * (the same directory first), up to fs->miss_ahead_bytes compressed, and
 * stopping at the first larger file. Chunks in memory or being loaded count
 * in that window but are not fetched again (slimfs_cache_load reads through
 * small gaps), so reads racing on a miss ask for the same window.
 *
 * The reader needs only its own chunks: those come in its own request, and
 * the chunks ahead in a second one that a background worker issues at the
 * same time (first in its queue), so the round trips overlap and the
 * reader does not wait for the bytes ahead; a later read that wants one of
 * them waits for that request instead of making its own. Without the
 * background workers, the chunks ahead join the reader's request.
 *
 * Measured on the bookworm rootfs without a profile (python3 importing json,
 * sqlite3, urllib.request; slimfs bench --modes lazy, 100 Mbit/s + 20 ms,
 * medians of 5 on a loaded 2-vCPU VM, same session): none 97 requests,
 * 11.1 MB, 4.0-4.2 s; plain data order (the next chunks, whatever file they
 * hold), 512K: 40 requests but 19.3 MB (most of the extra, parts of the
 * large files that follow a library), 3.5 s; this policy, 1M, in the
 * reader's request: 57 requests, 12.0 MB, 3.8-4.3 s (the reader waits for
 * up to 1M more at each miss); in a request of its own: 3.3-3.5 s (82
 * requests, 12.0 MB). Later, less loaded: none 3.0-3.4 s, this 2.4-2.9 s;
 * 2M or 512K no better; also fetching the small files past a larger one
 * (instead of stopping) 2.4 s for 15.0 MB.
 *
 * Without a profile (dir_sweep) the window is twice the budget, and the
 * files after in's are those of its directory when it is small enough
 * (miss_ahead_dir). With one, the profile says what comes next, and a miss
 * is a read it did not foresee: no more bytes than before. Same workload,
 * slimfs bench 100 Mbit/s + 20 ms, medians of 3, the window fetched in
 * pieces (slimfs_prefetch_miss_ahead): inode order 2.14 s, 116 requests,
 * 10.5 MiB; the directory sweep 1.90 s, 130 requests, 12.2 MiB (python's
 * 171 stdlib modules are 5.9 MB: one miss there loads most of the ~30 the
 * workload imports); sweeping directories of up to 16 MB (the shared
 * libraries too) 2.11 s; a window of 4M 1.94 s, of 1M 2.0 s.
 * Appends the chunks to out (at most max); returns how many.
 */
static size_t miss_ahead(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t end,
			 const uint32_t *want, size_t n, uint32_t *out, size_t max, bool dir_sweep)
{
	struct miss_ahead m = {.out = out, .max = max, .budget = fs->miss_ahead_bytes};
	struct slimfs_inode next;

	if (dir_sweep)
		m.budget *= 2;
	for (size_t k = 0; k < n; k++)
		m.after = MAX(m.after, want[k]);
	if (!miss_ahead_file(fs, in, end, &m) || (dir_sweep && miss_ahead_dir(fs, in, &m)))
		return m.n;
	for (uint32_t id = in->id + 1, k = 0;
	     k < MISS_AHEAD_INODES && slimfs_index_inode(fs->idx, id, &next) == 0; id++, k++) {
		if (!S_ISREG(next.mode))
			continue;
		if (next.size > MISS_AHEAD_SMALL || !miss_ahead_file(fs, &next, 0, &m))
			break;
	}
	return m.n;
}

size_t slimfs_fs_window(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t budget,
			uint32_t *out, size_t max, uint64_t *bytes)
{
	struct miss_ahead m = {.out = out,
			       .max = max,
			       .after = UINT32_MAX,
			       .budget = MIN(budget, 2 * fs->miss_ahead_bytes)};

	miss_ahead_file(fs, in, 0, &m);
	*bytes = m.bytes;
	return m.n;
}

int slimfs_fs_read_file(struct slimfs_fs *fs, const struct slimfs_inode *in, uint64_t off,
			size_t len, void *buf)
{
	return read_range(fs, in, off, len, NULL, buf);
}

/* A first read this few inodes past the last one (or the pushed ones) walks on. */
#define PUSH_GAP 64u
/* The window of file bytes pushed ahead: starts small, doubles at each frontier. */
#define PUSH_MIN (256u << 10)
#define PUSH_MAX (8u << 20)
/* Files and inodes one push looks at (the filler's queue holds 64 jobs). */
#define PUSH_FILES 32u
#define PUSH_SCAN  512u
/* Bytes of a listed directory's first files stored before the listing ends. */
#define PUSH_NOW (64u << 10)

/*
 * Push-ahead (local images, page-cache filler on): a reader that walks the
 * tree reading whole files (tar, cp -r, rsync, grep -r) opens files in
 * directory order, which is inode order (the builder numbers inodes depth
 * first) and data order. Each such file costs a FUSE round trip or two,
 * where kernel squashfs decodes in the reader's own read. So when first
 * reads (offset 0) come in increasing inode order, the files that follow
 * the one read are queued whole for the filler (notify.h), their chunks
 * decoded by the background workers, and the reader finds them in the page
 * cache: the next read the daemon sees is the first file not pushed (the
 * frontier), and each one there doubles the window (PUSH_MIN to PUSH_MAX
 * bytes, at most PUSH_FILES files). A push stops at a file larger than
 * SLIMFS_FILL_FILE_MAX (the kernel's read-ahead does well on those) and at
 * one the kernel has no inode for yet (a directory the reader has not
 * listed: a store would fail), where push_listed takes over once it is
 * listed; the chunks of the files past that one, up to the window, are
 * decoded ahead all the same, so that they are in memory by then. Chunks
 * are verified on the way into the memory cache, as for any read.
 *
 * push_ahead pushes the files from inode from on, the first now_bytes of
 * them (at least the first file) stored from the calling thread before it
 * returns.
 */
static void push_ahead(struct slimfs_fs *fs, uint32_t from, uint64_t window, uint64_t now_bytes)
{
	uint32_t ids[PUSH_FILES], want[WANT_MAX], end, id;
	uint64_t sizes[PUSH_FILES], bytes = 0;
	size_t files = 0, nnow = 0, n = 0;
	bool past = false; /* past the frontier: decoded ahead, not pushed */

	end = from;
	for (id = from; id - from < PUSH_SCAN && files < PUSH_FILES && n < WANT_MAX; id++) {
		struct slimfs_inode f;

		if (slimfs_index_inode(fs->idx, id, &f) < 0)
			break;
		if (!past)
			end = id;
		if (!slimfs_inode_in_view(&f, fs->view) || !S_ISREG(f.mode) || f.size == 0)
			continue;
		if (f.size > SLIMFS_FILL_FILE_MAX || ((files || past) && bytes + f.size > window))
			break;
		if (!past && !announced(fs, id))
			past = true;
		if (!past) {
			if (files == 0 ? now_bytes > 0 : bytes + f.size <= now_bytes)
				nnow++;
			ids[files] = id;
			sizes[files++] = f.size;
			end = id + 1;
		}
		bytes += f.size;
		for (uint32_t i = 0; i < f.count && n < WANT_MAX; i++) {
			struct slimfs_extent x;

			if (slimfs_index_extent(fs->idx, &f, i, &x) < 0)
				break;
			if ((!n || want[n - 1] != x.chunk) && !slimfs_cache_has(fs->cache, x.chunk))
				want[n++] = x.chunk;
		}
	}
	/* The first nnow files are stored at once, their chunks decoded here
	 * (a worker would read and decode its whole job first); then the
	 * workers decode the rest while the filler stores. */
	for (size_t k = 0; k <= files; k++) {
		int r;

		if (k == nnow && n && fs->prefetch)
			slimfs_prefetch_readahead(fs->prefetch, want, n);
		if (k == files)
			break;
		r = slimfs_notify_file(fs->notify, (fuse_ino_t)ids[k] + 1, sizes[k], k < nnow);
		if (r < 0) {
			end = ids[k]; /* queue full: the frontier is here */
			if (k < nnow && n && fs->prefetch)
				slimfs_prefetch_readahead(fs->prefetch, want, n);
			break;
		}
		if (r > 0)
			atomic_fetch_add_explicit(&fs->stats.pushed_files, 1, memory_order_relaxed);
	}
	pthread_mutex_lock(&fs->push_lock);
	fs->push_window = window;
	fs->push_end = MAX(fs->push_end, end);
	pthread_mutex_unlock(&fs->push_lock);
}

/* A first read of in: pushes the files after it when it walks on. */
static void push_after_read(struct slimfs_fs *fs, const struct slimfs_inode *in)
{
	uint64_t window = 0;

	pthread_mutex_lock(&fs->push_lock);
	if (in->id >= fs->push_end && in->id - fs->push_end <= PUSH_GAP && fs->push_window)
		window = MIN(fs->push_window * 2, (uint64_t)PUSH_MAX); /* at the frontier */
	else if (in->id > fs->push_last && in->id - fs->push_last <= PUSH_GAP &&
		 in->id >= fs->push_end)
		window = PUSH_MIN; /* a walk starts */
	else if (in->id < fs->push_last || in->id >= fs->push_end)
		fs->push_window = 0; /* elsewhere: not a walk */
	else
		slimfs_notify_walk_at(fs->notify, (fuse_ino_t)in->id + 1); /* overtook the filler */
	fs->push_last = in->id;
	pthread_mutex_unlock(&fs->push_lock);
	if (window)
		push_ahead(fs, in->id + 1, window, 0);
}

/*
 * The end of a READDIRPLUS listing of dir (the kernel's last call, which
 * finds no more entries): the kernel now has an inode for each of its
 * entries, and a walk lists a directory right before it reads its files.
 * When dir is where the walk's push stopped (its first entry is the
 * frontier), its files are pushed now, the first PUSH_NOW bytes of them
 * stored before the reply (the walk wants those at once), the rest queued.
 * A walk then reads no file at a directory's start.
 */
static void push_listed(struct slimfs_fs *fs, const struct slimfs_inode *dir)
{
	uint64_t window = 0;
	uint32_t first = dir->id + 1;

	if (!fs->notify || fs->trace || fs->img->backend->remote ||
	    !slimfs_prefetch_planned_done(fs->prefetch))
		return;
	pthread_mutex_lock(&fs->push_lock);
	if (fs->push_window && first >= fs->push_end && first - fs->push_end <= PUSH_GAP &&
	    dir->id > fs->push_last)
		window = MIN(fs->push_window * 2, (uint64_t)PUSH_MAX);
	pthread_mutex_unlock(&fs->push_lock);
	if (window)
		push_ahead(fs, first, window, PUSH_NOW);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode in;
	struct read_state s;
	size_t len;
	bool guess;
	int r;

	(void)fi;
	if (!req_inode(req, ino, S_IFREG, "read", &in))
		return;
	if (off < 0) {
		reply_err(req, -EINVAL, "read", ino);
		return;
	}
	if ((uint64_t)off >= in.size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = (size_t)MIN((uint64_t)size, in.size - (uint64_t)off);
	atomic_fetch_add_explicit(&fs->stats.reads, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&fs->stats.read_bytes, len, memory_order_relaxed);
	if (fs->trace) {
		slimfs_trace_inode(fs->trace, in.id);
		slimfs_trace_read(fs->trace, in.id, in.size, (uint64_t)off, len);
	}
	/*
	 * No guessing while the profile is being prefetched, nor after it from
	 * a read of its chunks only (prefetch.h): a file's hot ranges are its
	 * profile's chunks, and the cold ones around them it did not read.
	 */
	guess = slimfs_prefetch_planned_done(fs->prefetch);
	if (fs->coalesce || fs->readahead_bytes) {
		uint32_t want[WANT_MAX];
		bool foreseen;
		size_t n = missing_chunks(fs, &in, (uint64_t)off, (uint64_t)off + len, want,
					  WANT_MAX, &foreseen);
		size_t need = n;

		guess = guess && !foreseen;
		if (guess && fs->readahead_bytes && fs->prefetch)
			read_ahead(fs, &in, ino, (uint64_t)off, len);

		if (n && guess && fs->readahead_bytes && fs->prefetch)
			data_ahead(fs, want[n - 1]);
		if (n && guess && fs->miss_ahead_bytes && fs->coalesce) {
			size_t m =
				miss_ahead(fs, &in, (uint64_t)off + len, want, n, want + n,
					   WANT_MAX - n, !slimfs_prefetch_profiled(fs->prefetch));

			/* In a request of its own, at once: see miss_ahead. */
			if (m && fs->prefetch)
				slimfs_prefetch_miss_ahead(fs->prefetch, want + n, m);
			else
				n += m;
		}
		/* Several chunks missing: one range request for each adjacent run. */
		if (n >= 2 && fs->coalesce) {
			r = slimfs_cache_load(fs->cache, want, n, COALESCE_MAX,
					      n > need ? SLIMFS_LOAD_GAPS : 0, NULL);
			/* A chunk only fetched ahead may fail: read_range answers
			 * for the ones this read needs (their failure is held). */
			if (r < 0 && n == need) {
				atomic_fetch_add_explicit(&fs->stats.read_errors, 1,
							  memory_order_relaxed);
				if (r != -ENOMEM && r != -EBADMSG && r != -EUCLEAN)
					r = -EIO;
				reply_err(req, r, "read", ino);
				return;
			}
		}
	}

	s.niov = s.nrefs = 0;
	r = read_range(fs, &in, (uint64_t)off, len, &s, NULL);
	if (r == 0) {
		/* Zero copy from the chunk cache to the kernel. */
		fuse_reply_iov(req, s.iov, (int)s.niov);
		/* An ELF header: its libraries next (elfahead.h). */
		if (off == 0 && guess && fs->elf_seen && s.iov[0].iov_len >= SELFMAG &&
		    !memcmp(s.iov[0].iov_base, ELFMAG, SELFMAG))
			slimfs_elfahead_note(fs, in.id);
		/* Then the rest of those chunks into the page cache. */
		slimfs_notify_read(fs->notify, ino, in.size, (uint64_t)off, len, s.refs, s.nrefs);
		read_state_release(fs, &s);
		if (off == 0 && guess && fs->notify && !fs->trace && !fs->img->backend->remote)
			push_after_read(fs, &in);
		return;
	}
	read_state_release(fs, &s);
	if (r == -E2BIG) {
		/* Too many pieces (many tiny extents): copy them. Rare. */
		_cleanup_free_ uint8_t *buf = malloc(len);

		if (!buf) {
			reply_err(req, -ENOMEM, "read", ino);
			return;
		}
		r = read_range(fs, &in, (uint64_t)off, len, NULL, buf);
		if (r == 0) {
			fuse_reply_buf(req, (const char *)buf, len);
			return;
		}
	}
	atomic_fetch_add_explicit(&fs->stats.read_errors, 1, memory_order_relaxed);
	/* Whatever the source answered (416, refused, timed out): EIO to the reader. */
	if (r != -ENOMEM && r != -EBADMSG && r != -EUCLEAN)
		r = -EIO;
	reply_err(req, r, "read", ino);
}

bool slimfs_fs_read_ready(struct slimfs_fs *fs, fuse_ino_t ino, uint64_t off, uint64_t size)
{
	struct slimfs_extent_iter it;
	struct slimfs_inode in;
	int r;

	/* Errors and reads at or past the end are answered at once too. */
	if (get_inode(fs, ino, &in) < 0 || !S_ISREG(in.mode) || off >= in.size)
		return true;
	slimfs_extent_iter_init(&it, fs->idx, &in, off, off + MIN(size, in.size - off), 0);
	while ((r = slimfs_extent_next(&it)) > 0)
		if (!slimfs_cache_ready(fs->cache, it.x.chunk))
			return false;
	return r == 0;
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct slimfs_fs *fs = fs_of(req);
	struct statvfs st;

	(void)ino;
	memset(&st, 0, sizeof(st));
	st.f_bsize = 4096;
	st.f_frsize = 4096;
	st.f_blocks = (fsblkcnt_t)((fs->info->total_bytes + 4095) / 4096);
	st.f_files = (fsfilcnt_t)fs->info->inode_count;
	st.f_namemax = SLIMFS_NAME_MAX;
	st.f_flag = ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

/* xattrs */

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct slimfs_fs *fs = fs_of(req);
	struct slimfs_inode in;
	struct slimfs_xattr x;
	int r;

	/* No xattrs anywhere: ENOSYS once, and the kernel stops asking (exec, ls). */
	if (fs->info->xattr_count == 0) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
	if (!req_inode(req, ino, 0, "getxattr", &in))
		return;
	if (in.xattr_count == 0) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	r = slimfs_index_getxattr(fs->idx, &in, name, &x);
	if (r < 0) {
		reply_err(req, r, "getxattr", ino);
		return;
	}
	if (size == 0) {
		fuse_reply_xattr(req, x.value_len);
		return;
	}
	if (size < x.value_len) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	fuse_reply_buf(req, x.value, x.value_len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct slimfs_fs *fs = fs_of(req);
	_cleanup_free_ char *buf = NULL;
	struct slimfs_inode in;
	size_t total = 0, pos = 0;
	int r;

	if (!req_inode(req, ino, 0, "listxattr", &in))
		return;
	for (uint32_t i = 0; i < in.xattr_count; i++) {
		struct slimfs_xattr x;

		r = slimfs_index_xattr(fs->idx, &in, i, &x);
		if (r < 0) {
			reply_err(req, r, "listxattr", ino);
			return;
		}
		total += x.name_len + 1;
	}
	if (size == 0) {
		fuse_reply_xattr(req, total);
		return;
	}
	if (size < total) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	buf = malloc(MAX(total, 1u));
	if (!buf) {
		reply_err(req, -ENOMEM, "listxattr", ino);
		return;
	}
	for (uint32_t i = 0; i < in.xattr_count; i++) {
		struct slimfs_xattr x;

		r = slimfs_index_xattr(fs->idx, &in, i, &x);
		if (r < 0) {
			reply_err(req, r, "listxattr", ino);
			return;
		}
		memcpy(buf + pos, x.name, x.name_len);
		pos += x.name_len;
		buf[pos++] = '\0';
	}
	fuse_reply_buf(req, buf, total);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct slimfs_inode in;

	if (!req_inode(req, ino, 0, "access", &in))
		return;
	fuse_reply_err(req, (mask & W_OK) ? EROFS : 0);
}

/* Everything that writes: EROFS. */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)ino, (void)attr, (void)to_set, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino, (void)buf, (void)size, (void)off, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	fuse_reply_err(req, EROFS);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	(void)ino, (void)mode, (void)offset, (void)length, (void)fi;
	fuse_reply_err(req, EROFS);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in, (void)off_in, (void)fi_in, (void)ino_out, (void)off_out, (void)fi_out,
		(void)len, (void)flags;
	fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops slimfs_fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.statfs = op_statfs,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.access = op_access,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.create = op_create,
	.write = op_write,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
};
