// SPDX-License-Identifier: MIT
/*
 * Index reader. The index is hostile input: slimfs_index_open_mem() checks the
 * superblock, every section bound, every record and the shape of the tree
 * once, so that the accessors below only need to check their arguments.
 *
 * Validation runs in three passes, all linear: the records of each section
 * on their own (names, string ranges, chunk bounds), then every inode with
 * what it points at (extent order, dirent order, xattrs), then the directory
 * tree (each directory referenced once, parent fields, no cycle).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"

#define INODE_SIZE    sizeof(struct slimfs_disk_inode)
#define DIRENT_SIZE   sizeof(struct slimfs_disk_dirent)
#define XATTR_SIZE    sizeof(struct slimfs_disk_xattr)
#define CHUNK_SIZE    sizeof(struct slimfs_disk_chunk)
#define EXTENT_SIZE   sizeof(struct slimfs_disk_extent)
#define VIEW_SIZE     sizeof(struct slimfs_disk_view)
#define PREFETCH_SIZE sizeof(slimfs_le32)
#define TARGET_MAX    4095u

struct slimfs_index {
	const uint8_t *buf; /* [0, size) is the plain index: the caller's, or plain */
	uint64_t size;
	uint8_t *plain; /* owned: the decompressed index (ZINDEX), else NULL */
	struct slimfs_info info;
	/*
	 * SHA-256 of the stored bytes stored[0, stored_len), computed on first
	 * use: a mount needs it only once live (control socket, stats), and 1
	 * MiB of it is ~0.6 ms of a cold mount's critical path.
	 */
	const uint8_t *stored; /* borrowed: the caller's buf */
	size_t stored_len;
	pthread_mutex_t digest_lock;
	atomic_bool have_digest;
	uint8_t digest[32];
	const uint8_t *sec[SLIMFS_SEC_COUNT]; /* borrowed, into buf */
	uint64_t cnt[SLIMFS_SEC_COUNT];
};

static const char *const sec_names[SLIMFS_SEC_COUNT] = {
	"inodes", "dirents", "strings", "xattrs", "chunks", "extents", "views", "prefetch",
};

static const size_t sec_rec_size[SLIMFS_SEC_COUNT] = {
	INODE_SIZE, DIRENT_SIZE, 1, XATTR_SIZE, CHUNK_SIZE, EXTENT_SIZE, VIEW_SIZE, PREFETCH_SIZE,
};

static int corrupt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int corrupt(const char *fmt, ...)
{
	va_list ap;

	if (slimfs_log_get_level() >= SLIMFS_LOG_DEBUG) {
		char msg[256];

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		log_debug("index: %s", msg);
	}
	return -EUCLEAN;
}

/* Record i of section s: callers have checked i against the section count. */
static inline const uint8_t *rec(const struct slimfs_index *idx, enum slimfs_section s, uint64_t i)
{
	return idx->sec[s] + i * sec_rec_size[s];
}

#define FIELD(rec, type, field) ((rec) + offsetof(struct type, field))
#define INO32(p, f)		get_le32(FIELD(p, slimfs_disk_inode, f))
#define INO64(p, f)		get_le64(FIELD(p, slimfs_disk_inode, f))

static inline bool in_strings(const struct slimfs_index *idx, uint64_t off, uint64_t len)
{
	uint64_t n = idx->cnt[SLIMFS_SEC_STRINGS];

	return off <= n && len <= n - off;
}

static inline const char *str_at(const struct slimfs_index *idx, uint64_t off)
{
	return (const char *)idx->sec[SLIMFS_SEC_STRINGS] + off;
}

/* Whether records [first, first + count) all lie in section s. */
static inline bool in_section(const struct slimfs_index *idx, enum slimfs_section s, uint64_t first,
			      uint64_t count)
{
	return first <= idx->cnt[s] && count <= idx->cnt[s] - first;
}

/* A string of STRINGS that names something: 1..max bytes inside the section, no NUL. */
static bool name_ok(const struct slimfs_index *idx, uint64_t off, uint32_t len, uint32_t max)
{
	return len != 0 && len <= max && in_strings(idx, off, len) &&
	       !memchr(str_at(idx, off), '\0', len);
}

/* memcmp on the common prefix, the shorter name first. */
static inline int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, MIN(alen, blen));

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static bool type_known(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
	case S_IFSOCK:
		return true;
	default:
		return false;
	}
}

int slimfs_index_peek(const void *buf, size_t len, uint64_t *index_size, uint64_t *data_off)
{
	const uint8_t *b = buf;
	uint64_t isz, doff;

	if (!buf || len < SLIMFS_SUPER_SIZE)
		return -EBADMSG;
	if (memcmp(b, SLIMFS_MAGIC, SLIMFS_MAGIC_LEN) != 0) {
		log_debug("index: bad magic");
		return -EBADMSG;
	}
	if (get_le16(FIELD(b, slimfs_disk_super, version_major)) != SLIMFS_VERSION_MAJOR) {
		log_debug("index: format version %u.%u, this reader supports %u.x",
			  get_le16(FIELD(b, slimfs_disk_super, version_major)),
			  get_le16(FIELD(b, slimfs_disk_super, version_minor)),
			  SLIMFS_VERSION_MAJOR);
		return -EPROTONOSUPPORT;
	}
	isz = get_le64(FIELD(b, slimfs_disk_super, index_size));
	doff = get_le64(FIELD(b, slimfs_disk_super, data_off));
	if (isz < SLIMFS_SUPER_SIZE)
		return corrupt("index size %" PRIu64 " is smaller than the superblock", isz);
	if (doff < isz || doff % SLIMFS_DATA_ALIGN)
		return corrupt("data offset %" PRIu64 " is before the end of the index (%" PRIu64
			       ") or not %u-aligned",
			       doff, isz, SLIMFS_DATA_ALIGN);
	if (index_size)
		*index_size = isz;
	if (data_off)
		*data_off = doff;
	return 0;
}

static uint64_t checksum(const uint8_t *b, uint64_t size)
{
	static const uint8_t zero[8];
	const size_t coff = offsetof(struct slimfs_disk_super, checksum);
	XXH3_state_t st;

	XXH3_INITSTATE(&st);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, b, coff);
	XXH3_64bits_update(&st, zero, sizeof(zero));
	XXH3_64bits_update(&st, b + coff + 8, (size_t)(size - coff - 8));
	return XXH3_64bits_digest(&st);
}

static int check_super(struct slimfs_index *idx)
{
	const uint8_t *b = idx->buf;
	struct slimfs_info *in = &idx->info;
	static const struct {
		size_t off, want;
		const char *what;
	} sizes[] = {
		{offsetof(struct slimfs_disk_super, inode_size), INODE_SIZE, "inode"},
		{offsetof(struct slimfs_disk_super, dirent_size), DIRENT_SIZE, "dirent"},
		{offsetof(struct slimfs_disk_super, xattr_size), XATTR_SIZE, "xattr"},
		{offsetof(struct slimfs_disk_super, chunk_size), CHUNK_SIZE, "chunk"},
		{offsetof(struct slimfs_disk_super, extent_size), EXTENT_SIZE, "extent"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		uint32_t v = get_le32(b + sizes[i].off);

		if (v != sizes[i].want)
			return corrupt("%s record size %u, expected %zu", sizes[i].what, v,
				       sizes[i].want);
	}

	in->version_major = get_le16(FIELD(b, slimfs_disk_super, version_major));
	in->version_minor = get_le16(FIELD(b, slimfs_disk_super, version_minor));
	in->feature_incompat = get_le32(FIELD(b, slimfs_disk_super, feature_incompat));
	in->feature_compat = get_le32(FIELD(b, slimfs_disk_super, feature_compat));
	in->cdc_min = get_le32(FIELD(b, slimfs_disk_super, cdc_min));
	in->cdc_avg = get_le32(FIELD(b, slimfs_disk_super, cdc_avg));
	in->cdc_max = get_le32(FIELD(b, slimfs_disk_super, cdc_max));
	in->zstd_level = (int32_t)get_le32(FIELD(b, slimfs_disk_super, zstd_level));
	in->small_file_max = get_le32(FIELD(b, slimfs_disk_super, small_file_max));
	in->default_view = get_le32(FIELD(b, slimfs_disk_super, default_view));
	in->index_size = get_le64(FIELD(b, slimfs_disk_super, index_size));
	in->index_plain_size = idx->size;
	in->data_off = get_le64(FIELD(b, slimfs_disk_super, data_off));
	in->data_size = get_le64(FIELD(b, slimfs_disk_super, data_size));
	in->total_bytes = get_le64(FIELD(b, slimfs_disk_super, total_bytes));
	in->entry_count = get_le64(FIELD(b, slimfs_disk_super, entry_count));
	if (in->data_size > UINT64_MAX - in->data_off)
		return corrupt("data size %" PRIu64 " overflows", in->data_size);

	for (int s = 0; s < SLIMFS_SEC_COUNT; s++) {
		const uint8_t *p = FIELD(b, slimfs_disk_super, sections) +
				   (size_t)s * sizeof(struct slimfs_disk_section);
		uint64_t off = get_le64(p), n = get_le64(p + 8);
		uint64_t rs = sec_rec_size[s];

		/* An empty section may sit at the very end of the index. */
		if (off < SLIMFS_SUPER_SIZE || off > idx->size || (n && off == idx->size) ||
		    off % 8)
			return corrupt("section %s at %" PRIu64 " is outside [%u, %" PRIu64
				       ") or not 8-aligned",
				       sec_names[s], off, SLIMFS_SUPER_SIZE, idx->size);
		if (n > (idx->size - off) / rs)
			return corrupt("section %s: %" PRIu64 " records at %" PRIu64
				       " overrun the index (%" PRIu64 " bytes)",
				       sec_names[s], n, off, idx->size);
		/* Records are referenced by 32-bit indices. */
		if (s != SLIMFS_SEC_STRINGS && n > UINT32_MAX)
			return corrupt("section %s: %" PRIu64 " records", sec_names[s], n);
		idx->sec[s] = b + off;
		idx->cnt[s] = n;
	}
	in->inode_count = idx->cnt[SLIMFS_SEC_INODES];
	in->dirent_count = idx->cnt[SLIMFS_SEC_DIRENTS];
	in->xattr_count = idx->cnt[SLIMFS_SEC_XATTRS];
	in->chunk_count = idx->cnt[SLIMFS_SEC_CHUNKS];
	in->extent_count = idx->cnt[SLIMFS_SEC_EXTENTS];
	in->view_count = idx->cnt[SLIMFS_SEC_VIEWS];
	in->prefetch_count = idx->cnt[SLIMFS_SEC_PREFETCH];

	if (in->inode_count == 0)
		return corrupt("no inodes (the root is missing)");
	if (in->view_count > SLIMFS_VIEWS_MAX)
		return corrupt("%" PRIu64 " views, at most %u", in->view_count, SLIMFS_VIEWS_MAX);
	if (in->default_view != SLIMFS_VIEW_NONE && in->default_view >= in->view_count)
		return corrupt("default view %u of %" PRIu64, in->default_view, in->view_count);

	{
		uint64_t coff = get_le64(FIELD(b, slimfs_disk_super, config_off));
		uint64_t clen = get_le64(FIELD(b, slimfs_disk_super, config_len));

		if (!in_strings(idx, coff, clen))
			return corrupt("config [%" PRIu64 ", +%" PRIu64 ") is outside the strings",
				       coff, clen);
		in->config = clen ? str_at(idx, coff) : NULL;
		in->config_len = (size_t)clen;
	}
	return 0;
}

/* Pass 1: every record of every section on its own. */
static int check_records(const struct slimfs_index *idx)
{
	const uint64_t ndirents = idx->cnt[SLIMFS_SEC_DIRENTS];
	const uint64_t ninodes = idx->cnt[SLIMFS_SEC_INODES];
	const uint64_t nchunks = idx->cnt[SLIMFS_SEC_CHUNKS];
	const uint64_t data_size = idx->info.data_size;
	const size_t csize_max = ZSTD_compressBound(SLIMFS_CHUNK_MAX);
	uint64_t prev_end = 0;

	for (uint64_t i = 0; i < ndirents; i++) {
		const uint8_t *d = rec(idx, SLIMFS_SEC_DIRENTS, i);
		uint64_t off = get_le64(FIELD(d, slimfs_disk_dirent, name_off));
		uint32_t len = get_le32(FIELD(d, slimfs_disk_dirent, name_len));
		uint32_t ino = get_le32(FIELD(d, slimfs_disk_dirent, ino));
		const char *name;

		if (len == 0 || len > SLIMFS_NAME_MAX || !in_strings(idx, off, len))
			return corrupt("dirent %" PRIu64 ": name [%" PRIu64 ", +%u) out of range",
				       i, off, len);
		name = str_at(idx, off);
		if (memchr(name, '/', len) || memchr(name, '\0', len) ||
		    (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))))
			return corrupt("dirent %" PRIu64 ": invalid name '%.*s'", i, (int)len,
				       name);
		if (ino >= ninodes)
			return corrupt("dirent %" PRIu64 " '%.*s': inode %u of %" PRIu64, i,
				       (int)len, name, ino, ninodes);
	}

	for (uint64_t i = 0; i < idx->cnt[SLIMFS_SEC_XATTRS]; i++) {
		const uint8_t *x = rec(idx, SLIMFS_SEC_XATTRS, i);
		uint64_t noff = get_le64(FIELD(x, slimfs_disk_xattr, name_off));
		uint64_t voff = get_le64(FIELD(x, slimfs_disk_xattr, value_off));
		uint32_t nlen = get_le32(FIELD(x, slimfs_disk_xattr, name_len));
		uint32_t vlen = get_le32(FIELD(x, slimfs_disk_xattr, value_len));

		if (!name_ok(idx, noff, nlen, SLIMFS_XATTR_NAME_MAX))
			return corrupt("xattr %" PRIu64 ": bad name [%" PRIu64 ", +%u)", i, noff,
				       nlen);
		if (vlen > SLIMFS_XATTR_VALUE_MAX || !in_strings(idx, voff, vlen))
			return corrupt("xattr %" PRIu64 ": bad value [%" PRIu64 ", +%u)", i, voff,
				       vlen);
	}

	for (uint64_t i = 0; i < nchunks; i++) {
		const uint8_t *c = rec(idx, SLIMFS_SEC_CHUNKS, i);
		uint64_t off = get_le64(FIELD(c, slimfs_disk_chunk, off));
		uint32_t cs = get_le32(FIELD(c, slimfs_disk_chunk, csize));
		uint32_t us = get_le32(FIELD(c, slimfs_disk_chunk, usize));

		if (cs == 0 || cs > csize_max || us == 0 || us > SLIMFS_CHUNK_MAX)
			return corrupt("chunk %" PRIu64 ": sizes %u/%u out of range", i, cs, us);
		if (off > data_size || cs > data_size - off)
			return corrupt("chunk %" PRIu64 ": [%" PRIu64
				       ", +%u) beyond the data (%" PRIu64 " bytes)",
				       i, off, cs, data_size);
		if (off < prev_end)
			return corrupt("chunk %" PRIu64 " at %" PRIu64
				       " overlaps the previous one (ends at %" PRIu64 ")",
				       i, off, prev_end);
		prev_end = off + cs;
	}

	for (uint64_t i = 0; i < idx->cnt[SLIMFS_SEC_EXTENTS]; i++) {
		const uint8_t *e = rec(idx, SLIMFS_SEC_EXTENTS, i);
		struct slimfs_extent x = {
			.chunk = get_le32(FIELD(e, slimfs_disk_extent, chunk)),
			.chunk_off = get_le32(FIELD(e, slimfs_disk_extent, chunk_off)),
			.len = get_le32(FIELD(e, slimfs_disk_extent, len)),
		};
		uint32_t us;

		if (x.chunk >= nchunks)
			return corrupt("extent %" PRIu64 ": chunk %u of %" PRIu64, i, x.chunk,
				       nchunks);
		us = get_le32(
			FIELD(rec(idx, SLIMFS_SEC_CHUNKS, x.chunk), slimfs_disk_chunk, usize));
		if (x.len == 0 || slimfs_extent_check(&x, us) < 0)
			return corrupt("extent %" PRIu64 ": [%u, +%u) outside chunk %u (%u bytes)",
				       i, x.chunk_off, x.len, x.chunk, us);
	}

	for (uint64_t i = 0; i < idx->cnt[SLIMFS_SEC_VIEWS]; i++) {
		const uint8_t *v = rec(idx, SLIMFS_SEC_VIEWS, i);
		uint64_t off = get_le64(FIELD(v, slimfs_disk_view, name_off));
		uint32_t len = get_le32(FIELD(v, slimfs_disk_view, name_len));

		if (!name_ok(idx, off, len, SLIMFS_NAME_MAX))
			return corrupt("view %" PRIu64 ": bad name [%" PRIu64 ", +%u)", i, off,
				       len);
	}

	for (uint64_t i = 0; i < idx->cnt[SLIMFS_SEC_PREFETCH]; i++) {
		uint32_t c = get_le32(idx->sec[SLIMFS_SEC_PREFETCH] + i * PREFETCH_SIZE);

		if (c >= nchunks)
			return corrupt("prefetch entry %" PRIu64 ": chunk %u of %" PRIu64, i, c,
				       nchunks);
	}
	return 0;
}

static int check_extents(const struct slimfs_index *idx, uint32_t id, uint64_t first,
			 uint32_t count, uint64_t size)
{
	uint64_t prev_end = 0;

	if (!in_section(idx, SLIMFS_SEC_EXTENTS, first, count))
		return corrupt("inode %u: extents [%" PRIu64 ", +%u) out of range", id, first,
			       count);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = rec(idx, SLIMFS_SEC_EXTENTS, first + i);
		uint64_t off = get_le64(FIELD(e, slimfs_disk_extent, file_off));
		uint32_t len = get_le32(FIELD(e, slimfs_disk_extent, len));

		if (off < prev_end)
			return corrupt("inode %u: extent %u at %" PRIu64
				       " is unsorted or overlaps the previous one",
				       id, i, off);
		if (off > size || len > size - off)
			return corrupt("inode %u: extent %u [%" PRIu64
				       ", +%u) beyond the size %" PRIu64,
				       id, i, off, len, size);
		prev_end = off + len;
	}
	return 0;
}

/* state: per inode, number of dirents referencing it (directories only). */
static int check_dirents(const struct slimfs_index *idx, uint32_t id, uint64_t first,
			 uint32_t count, uint8_t *refs)
{
	const char *prev = NULL;
	uint32_t prev_len = 0;

	if (!in_section(idx, SLIMFS_SEC_DIRENTS, first, count))
		return corrupt("directory %u: entries [%" PRIu64 ", +%u) out of range", id, first,
			       count);
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *d = rec(idx, SLIMFS_SEC_DIRENTS, first + i);
		const char *name = str_at(idx, get_le64(FIELD(d, slimfs_disk_dirent, name_off)));
		uint32_t len = get_le32(FIELD(d, slimfs_disk_dirent, name_len));
		uint32_t child = get_le32(FIELD(d, slimfs_disk_dirent, ino));
		const uint8_t *c = rec(idx, SLIMFS_SEC_INODES, child);

		if (prev && name_cmp(prev, prev_len, name, len) >= 0)
			return corrupt("directory %u: entry '%.*s' is not sorted after '%.*s'", id,
				       (int)len, name, (int)prev_len, prev);
		prev = name;
		prev_len = len;
		if ((INO32(c, mode) & S_IFMT) != S_IFDIR)
			continue;
		if (child == 0)
			return corrupt("directory %u: entry '%.*s' points at the root", id,
				       (int)len, name);
		if (refs[child])
			return corrupt("directory %u is referenced twice (again by '%.*s' in %u)",
				       child, (int)len, name, id);
		refs[child] = 1;
		if (INO32(c, parent) != id)
			return corrupt("directory %u ('%.*s' in %u) has parent %u", child, (int)len,
				       name, id, INO32(c, parent));
	}
	return 0;
}

static int check_xattrs(const struct slimfs_index *idx, uint32_t id, uint32_t first, uint32_t count)
{
	if (!in_section(idx, SLIMFS_SEC_XATTRS, first, count))
		return corrupt("inode %u: xattrs [%u, +%u) out of range", id, first, count);
	for (uint32_t i = 1; i < count; i++) {
		const uint8_t *a = rec(idx, SLIMFS_SEC_XATTRS, (uint64_t)first + i - 1);
		const uint8_t *b = rec(idx, SLIMFS_SEC_XATTRS, (uint64_t)first + i);

		if (name_cmp(str_at(idx, get_le64(FIELD(a, slimfs_disk_xattr, name_off))),
			     get_le32(FIELD(a, slimfs_disk_xattr, name_len)),
			     str_at(idx, get_le64(FIELD(b, slimfs_disk_xattr, name_off))),
			     get_le32(FIELD(b, slimfs_disk_xattr, name_len))) >= 0)
			return corrupt("inode %u: xattr %u is unsorted or a duplicate", id, i);
	}
	return 0;
}

/* Pass 2: every inode and the records it points at. */
static int check_inodes(const struct slimfs_index *idx, uint8_t *refs)
{
	const uint64_t n = idx->cnt[SLIMFS_SEC_INODES];
	int r;

	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *p = rec(idx, SLIMFS_SEC_INODES, i);
		const uint32_t id = (uint32_t)i;
		uint32_t mode = INO32(p, mode), count = INO32(p, count);
		uint32_t parent = INO32(p, parent);
		uint64_t data = INO64(p, data);

		if (!type_known(mode) || (mode & ~(uint32_t)(S_IFMT | 07777)))
			return corrupt("inode %u: bad mode 0%o", id, mode);
		if (INO32(p, mtime_ns) >= 1000000000u)
			return corrupt("inode %u: mtime_ns %u", id, INO32(p, mtime_ns));
		if (parent >= n ||
		    (INO32(rec(idx, SLIMFS_SEC_INODES, parent), mode) & S_IFMT) != S_IFDIR)
			return corrupt("inode %u: parent %u is not a directory", id, parent);
		r = check_xattrs(idx, id, INO32(p, xattr_start), INO32(p, xattr_count));
		if (r < 0)
			return r;

		switch (mode & S_IFMT) {
		case S_IFREG:
			r = check_extents(idx, id, data, count, INO64(p, size));
			break;
		case S_IFDIR:
			r = check_dirents(idx, id, data, count, refs);
			break;
		case S_IFLNK:
			if (!name_ok(idx, data, count, TARGET_MAX))
				r = corrupt("inode %u: bad symlink target [%" PRIu64 ", +%u)", id,
					    data, count);
			break;
		default:
			if (count)
				r = corrupt("inode %u: count %u for a special file", id, count);
			break;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Pass 3: tree shape. Pass 2 made sure that a directory is referenced by at
 * most one dirent, never the root, and that its parent field names the
 * directory holding that dirent. Here: every other directory is referenced,
 * and following parent fields from any directory reaches the root (no cycle,
 * so every directory is reachable from the root, exactly once).
 */
static int check_tree(const struct slimfs_index *idx, uint8_t *st)
{
	const uint64_t n = idx->cnt[SLIMFS_SEC_INODES];
	enum { UNSEEN = 1, WALKING = 2, ROOTED = 3 };

	if ((INO32(rec(idx, SLIMFS_SEC_INODES, 0), mode) & S_IFMT) != S_IFDIR)
		return corrupt("the root (inode 0) is not a directory");
	if (INO32(rec(idx, SLIMFS_SEC_INODES, 0), parent) != 0)
		return corrupt("the root's parent is %u",
			       INO32(rec(idx, SLIMFS_SEC_INODES, 0), parent));
	for (uint64_t i = 1; i < n; i++)
		if ((INO32(rec(idx, SLIMFS_SEC_INODES, i), mode) & S_IFMT) == S_IFDIR && !st[i])
			return corrupt("directory %" PRIu64 " is not referenced by any entry", i);
	st[0] = ROOTED;
	for (uint64_t i = 1; i < n; i++) {
		uint32_t x = (uint32_t)i;

		if (st[i] != UNSEEN)
			continue;
		while (st[x] == UNSEEN) {
			st[x] = WALKING;
			x = INO32(rec(idx, SLIMFS_SEC_INODES, x), parent);
		}
		if (st[x] == WALKING)
			return corrupt("directory %u is in a cycle", x);
		for (x = (uint32_t)i; st[x] == WALKING;
		     x = INO32(rec(idx, SLIMFS_SEC_INODES, x), parent))
			st[x] = ROOTED;
	}
	return 0;
}

/*
 * The compressed index (SLIMFS_FEATURE_INCOMPAT_ZINDEX): buf[0, isz) holds the
 * superblock and one zstd frame. Its content size is bounded before anything
 * is allocated; *out is the plain index, the superblock then the content.
 */
static int inflate_index(const uint8_t *buf, uint64_t isz, uint8_t **out, uint64_t *out_size)
{
	const uint8_t *frame = buf + SLIMFS_SUPER_SIZE;
	const size_t flen = (size_t)(isz - SLIMFS_SUPER_SIZE);
	uint8_t *plain;
	unsigned long long csize;
	size_t n, len;

	csize = ZSTD_getFrameContentSize(frame, flen);
	if (csize == ZSTD_CONTENTSIZE_ERROR || flen < 4 || get_le32(frame) != ZSTD_MAGICNUMBER)
		return corrupt("compressed index: no zstd frame header at %u (%zu bytes)",
			       SLIMFS_SUPER_SIZE, flen);
	if (csize == ZSTD_CONTENTSIZE_UNKNOWN)
		return corrupt("compressed index: the frame does not record its content size");
	if (csize == 0 || csize > SLIMFS_ZINDEX_PLAIN_MAX - SLIMFS_SUPER_SIZE ||
	    csize / SLIMFS_ZINDEX_RATIO_MAX > flen)
		return corrupt("compressed index: content size %llu from a %zu-byte frame is "
			       "empty or beyond the limits (%llu bytes, ratio %u)",
			       csize, flen, SLIMFS_ZINDEX_PLAIN_MAX, SLIMFS_ZINDEX_RATIO_MAX);
	n = ZSTD_findFrameCompressedSize(frame, flen);
	if (ZSTD_isError(n))
		return corrupt("compressed index: frame: %s", ZSTD_getErrorName(n));
	if (n != flen)
		return corrupt("compressed index: the frame ends at %zu, the index at %" PRIu64,
			       SLIMFS_SUPER_SIZE + n, isz);
	/* On huge pages in the mount daemon: ~300 first touches fewer per MiB. */
	len = SLIMFS_SUPER_SIZE + (size_t)csize;
	plain = slimfs_huge_alloc(len);
	if (!plain)
		return -ENOMEM;
	memcpy(plain, buf, SLIMFS_SUPER_SIZE);
	n = ZSTD_decompress(plain + SLIMFS_SUPER_SIZE, (size_t)csize, frame, flen);
	if (ZSTD_isError(n) || n != csize) {
		slimfs_huge_free(plain, len);
		if (ZSTD_isError(n))
			return corrupt("compressed index: %s", ZSTD_getErrorName(n));
		return corrupt("compressed index: %zu bytes, the frame header says %llu", n, csize);
	}
	*out = plain;
	*out_size = len;
	return 0;
}

int slimfs_index_open_mem(const void *buf, size_t len, struct slimfs_index **out)
{
	return slimfs_index_open_mem_hashed(buf, len, NULL, out);
}

int slimfs_index_open_mem_hashed(const void *buf, size_t len, const uint8_t *sha256,
				 struct slimfs_index **out)
{
	_cleanup_free_ struct slimfs_index *idx = NULL;
	_cleanup_free_ uint8_t *refs = NULL;
	uint64_t isz, want;
	uint32_t incompat;
	int r;

	r = slimfs_index_peek(buf, len, &isz, NULL);
	if (r < 0)
		return r;
	if (isz > len)
		return corrupt("index is %" PRIu64 " bytes, only %zu available", isz, len);
	want = get_le64(FIELD((const uint8_t *)buf, slimfs_disk_super, checksum));
	if (checksum(buf, isz) != want) {
		log_debug("index: checksum mismatch");
		return -EBADMSG;
	}

	incompat = get_le32(FIELD((const uint8_t *)buf, slimfs_disk_super, feature_incompat));
	if (incompat & ~SLIMFS_FEATURE_INCOMPAT_SUPPORTED) {
		log_debug("index: unknown incompatible features 0x%x",
			  incompat & ~SLIMFS_FEATURE_INCOMPAT_SUPPORTED);
		return -EPROTONOSUPPORT;
	}

	idx = calloc(1, sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	idx->buf = buf;
	idx->size = isz;
	if (incompat & SLIMFS_FEATURE_INCOMPAT_ZINDEX) {
		r = inflate_index(buf, isz, &idx->plain, &idx->size);
		if (r < 0)
			goto fail;
		idx->buf = idx->plain;
	}
	r = check_super(idx);
	if (r < 0)
		goto fail;
	r = check_records(idx);
	if (r < 0)
		goto fail;
	refs = calloc((size_t)idx->cnt[SLIMFS_SEC_INODES], 1);
	if (!refs) {
		r = -ENOMEM;
		goto fail;
	}
	r = check_inodes(idx, refs);
	if (r < 0)
		goto fail;
	r = check_tree(idx, refs);
	if (r < 0)
		goto fail;

	idx->stored = buf;
	idx->stored_len = (size_t)isz;
	pthread_mutex_init(&idx->digest_lock, NULL);
	if (sha256 && isz == len) {
		memcpy(idx->digest, sha256, sizeof(idx->digest));
		atomic_store_explicit(&idx->have_digest, true, memory_order_release);
	}
	*out = steal_ptr(&idx);
	return 0;
fail:
	slimfs_huge_free(idx->plain, (size_t)idx->size);
	return r;
}

void slimfs_index_free(struct slimfs_index *idx)
{
	if (!idx)
		return;
	slimfs_huge_free(idx->plain, (size_t)idx->size);
	pthread_mutex_destroy(&idx->digest_lock);
	free(idx);
}

const struct slimfs_info *slimfs_index_info(const struct slimfs_index *idx)
{
	return &idx->info;
}

const uint8_t *slimfs_index_digest(const struct slimfs_index *idx)
{
	/* Computed once, then read only: the lock and flag are not the index's
	 * contents, so the accessors keep taking a const index. */
	struct slimfs_index *w = (struct slimfs_index *)idx;

	if (atomic_load_explicit(&w->have_digest, memory_order_acquire))
		return idx->digest;
	pthread_mutex_lock(&w->digest_lock);
	if (!atomic_load_explicit(&w->have_digest, memory_order_relaxed)) {
		slimfs_sha256(w->stored, w->stored_len, w->digest);
		atomic_store_explicit(&w->have_digest, true, memory_order_release);
	}
	pthread_mutex_unlock(&w->digest_lock);
	return idx->digest;
}

void slimfs_index_digest_str(const struct slimfs_index *idx, char out[72])
{
	memcpy(out, "sha256:", 7);
	slimfs_hex(slimfs_index_digest(idx), 32, out + 7);
}

int slimfs_index_inode(const struct slimfs_index *idx, uint32_t id, struct slimfs_inode *out)
{
	const uint8_t *p;
	uint64_t data;

	if (id >= idx->cnt[SLIMFS_SEC_INODES])
		return -ENOENT;
	p = rec(idx, SLIMFS_SEC_INODES, id);
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->mode = INO32(p, mode);
	out->uid = INO32(p, uid);
	out->gid = INO32(p, gid);
	out->nlink = INO32(p, nlink);
	out->size = INO64(p, size);
	out->mtime = (int64_t)INO64(p, mtime);
	out->mtime_ns = INO32(p, mtime_ns);
	out->views = INO32(p, views);
	out->xattr_start = INO32(p, xattr_start);
	out->xattr_count = INO32(p, xattr_count);
	out->parent = INO32(p, parent);
	data = INO64(p, data);
	switch (out->mode & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
		out->first = (uint32_t)data; /* checked: <= a 32-bit record count */
		out->count = INO32(p, count);
		break;
	case S_IFLNK:
		out->target = str_at(idx, data);
		out->target_len = INO32(p, count);
		break;
	case S_IFCHR:
	case S_IFBLK:
		out->rdev = data;
		break;
	default:
		break;
	}
	return 0;
}

static bool range_ok(uint32_t first, uint32_t count, uint32_t i, uint64_t n)
{
	return i < count && (uint64_t)first + i < n;
}

int slimfs_index_dirent(const struct slimfs_index *idx, const struct slimfs_inode *dir, uint32_t i,
			struct slimfs_dirent *out)
{
	const uint8_t *d;

	if ((dir->mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	if (!range_ok(dir->first, dir->count, i, idx->cnt[SLIMFS_SEC_DIRENTS]))
		return -EINVAL;
	d = rec(idx, SLIMFS_SEC_DIRENTS, (uint64_t)dir->first + i);
	out->name = str_at(idx, get_le64(FIELD(d, slimfs_disk_dirent, name_off)));
	out->name_len = get_le32(FIELD(d, slimfs_disk_dirent, name_len));
	out->ino = get_le32(FIELD(d, slimfs_disk_dirent, ino));
	return 0;
}

int slimfs_index_lookup(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			const char *name, size_t name_len, uint32_t *ino)
{
	uint64_t pos;

	return slimfs_index_lookup_pos(idx, dir, name, name_len, ino, &pos);
}

int slimfs_index_lookup_pos(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			    const char *name, size_t name_len, uint32_t *ino, uint64_t *pos)
{
	uint64_t lo, hi;

	if ((dir->mode & S_IFMT) != S_IFDIR)
		return -ENOTDIR;
	if (name_len > SLIMFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!in_section(idx, SLIMFS_SEC_DIRENTS, dir->first, dir->count))
		return -EINVAL;
	lo = dir->first;
	hi = (uint64_t)dir->first + dir->count;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const uint8_t *d = rec(idx, SLIMFS_SEC_DIRENTS, mid);
		int c = name_cmp(str_at(idx, get_le64(FIELD(d, slimfs_disk_dirent, name_off))),
				 get_le32(FIELD(d, slimfs_disk_dirent, name_len)), name, name_len);

		if (c == 0) {
			*ino = get_le32(FIELD(d, slimfs_disk_dirent, ino));
			*pos = mid;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int slimfs_index_resolve(const struct slimfs_index *idx, const char *path, uint32_t *ino)
{
	struct slimfs_inode cur;
	const char *p = path, *name;
	size_t len;
	int r;

	if (!path)
		return -EINVAL;
	r = slimfs_index_inode(idx, 0, &cur);
	if (r < 0)
		return r;
	while (slimfs_path_next(&p, &name, &len)) {
		uint32_t next;

		if ((cur.mode & S_IFMT) != S_IFDIR) {
			return -ENOTDIR;
		} else if (len == 2 && name[0] == '.' && name[1] == '.') {
			r = slimfs_index_inode(idx, cur.parent, &cur);
			if (r < 0)
				return r;
		} else {
			r = slimfs_index_lookup(idx, &cur, name, len, &next);
			if (r < 0)
				return r;
			r = slimfs_index_inode(idx, next, &cur);
			if (r < 0)
				return r;
		}
	}
	*ino = cur.id;
	return 0;
}

int slimfs_index_resolve_follow(const struct slimfs_index *idx, const char *path, uint32_t *ino)
{
	char buf[2][SLIMFS_RESOLVE_PATH_MAX];
	struct slimfs_inode cur, next;
	const char *p, *name;
	unsigned hops = 0, which = 0;
	size_t len;
	int r;

	if (!path)
		return -EINVAL;
	if (strlen(path) >= sizeof(buf[0]))
		return -ENAMETOOLONG;
	strcpy(buf[0], path);
	p = buf[0];
	r = slimfs_index_inode(idx, 0, &cur);
	while (r == 0 && slimfs_path_next(&p, &name, &len)) {
		uint32_t id;

		if ((cur.mode & S_IFMT) != S_IFDIR)
			return -ENOTDIR;
		if (len == 2 && name[0] == '.' && name[1] == '.') {
			r = slimfs_index_inode(idx, cur.parent, &cur);
			continue;
		}
		r = slimfs_index_lookup(idx, &cur, name, len, &id);
		if (r == 0)
			r = slimfs_index_inode(idx, id, &next);
		if (r < 0)
			return r;
		if ((next.mode & S_IFMT) != S_IFLNK) {
			cur = next;
			continue;
		}
		/* A symlink: its target, then the rest of the path, from the
		 * root or from the directory that holds it. */
		if (++hops > SLIMFS_RESOLVE_HOPS_MAX)
			return -ELOOP;
		if (next.target_len + 1 + strlen(p) >= sizeof(buf[0]))
			return -ENAMETOOLONG;
		which ^= 1;
		memcpy(buf[which], next.target, next.target_len);
		strcpy(buf[which] + next.target_len, p);
		p = buf[which];
		if (next.target_len && next.target[0] == '/')
			r = slimfs_index_inode(idx, 0, &cur);
	}
	if (r == 0)
		*ino = cur.id;
	return r;
}

int slimfs_index_xattr(const struct slimfs_index *idx, const struct slimfs_inode *ino, uint32_t i,
		       struct slimfs_xattr *out)
{
	const uint8_t *x;

	if (!range_ok(ino->xattr_start, ino->xattr_count, i, idx->cnt[SLIMFS_SEC_XATTRS]))
		return -EINVAL;
	x = rec(idx, SLIMFS_SEC_XATTRS, (uint64_t)ino->xattr_start + i);
	out->name = str_at(idx, get_le64(FIELD(x, slimfs_disk_xattr, name_off)));
	out->value = str_at(idx, get_le64(FIELD(x, slimfs_disk_xattr, value_off)));
	out->name_len = get_le32(FIELD(x, slimfs_disk_xattr, name_len));
	out->value_len = get_le32(FIELD(x, slimfs_disk_xattr, value_len));
	return 0;
}

int slimfs_index_getxattr(const struct slimfs_index *idx, const struct slimfs_inode *ino,
			  const char *name, struct slimfs_xattr *out)
{
	size_t len = strlen(name);

	for (uint32_t i = 0; i < ino->xattr_count; i++) {
		struct slimfs_xattr x;
		int r = slimfs_index_xattr(idx, ino, i, &x);

		if (r < 0)
			return r;
		if (x.name_len == len && memcmp(x.name, name, len) == 0) {
			*out = x;
			return 0;
		}
	}
	return -ENODATA;
}

int slimfs_index_chunk(const struct slimfs_index *idx, uint32_t i, struct slimfs_chunk *out)
{
	const uint8_t *c;

	if (i >= idx->cnt[SLIMFS_SEC_CHUNKS])
		return -EINVAL;
	c = rec(idx, SLIMFS_SEC_CHUNKS, i);
	out->id = FIELD(c, slimfs_disk_chunk, id);
	out->sha256 = FIELD(c, slimfs_disk_chunk, sha256);
	out->off = idx->info.data_off + get_le64(FIELD(c, slimfs_disk_chunk, off));
	out->csize = get_le32(FIELD(c, slimfs_disk_chunk, csize));
	out->usize = get_le32(FIELD(c, slimfs_disk_chunk, usize));
	return 0;
}

int slimfs_index_extent(const struct slimfs_index *idx, const struct slimfs_inode *ino, uint32_t i,
			struct slimfs_extent *out)
{
	const uint8_t *e;

	if ((ino->mode & S_IFMT) != S_IFREG ||
	    !range_ok(ino->first, ino->count, i, idx->cnt[SLIMFS_SEC_EXTENTS]))
		return -EINVAL;
	e = rec(idx, SLIMFS_SEC_EXTENTS, (uint64_t)ino->first + i);
	out->file_off = get_le64(FIELD(e, slimfs_disk_extent, file_off));
	out->chunk = get_le32(FIELD(e, slimfs_disk_extent, chunk));
	out->chunk_off = get_le32(FIELD(e, slimfs_disk_extent, chunk_off));
	out->len = get_le32(FIELD(e, slimfs_disk_extent, len));
	return 0;
}

uint32_t slimfs_index_extent_find(const struct slimfs_index *idx, const struct slimfs_inode *ino,
				  uint64_t off)
{
	uint32_t lo = 0, hi = ino->count;

	if ((ino->mode & S_IFMT) != S_IFREG ||
	    !in_section(idx, SLIMFS_SEC_EXTENTS, ino->first, ino->count))
		return ino->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const uint8_t *e = rec(idx, SLIMFS_SEC_EXTENTS, (uint64_t)ino->first + mid);
		uint64_t end = get_le64(FIELD(e, slimfs_disk_extent, file_off)) +
			       get_le32(FIELD(e, slimfs_disk_extent, len));

		if (end <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void slimfs_extent_iter_init(struct slimfs_extent_iter *it, const struct slimfs_index *idx,
			     const struct slimfs_inode *ino, uint64_t off, uint64_t end,
			     unsigned flags)
{
	memset(it, 0, sizeof(*it));
	it->idx = idx;
	it->ino = ino;
	it->pos = off;
	it->end = MIN(end, ino->size);
	it->holes = flags & SLIMFS_EXTENT_HOLES;
	it->i = off < it->end ? slimfs_index_extent_find(idx, ino, off) : ino->count;
}

int slimfs_extent_next(struct slimfs_extent_iter *it)
{
	struct slimfs_extent *x = &it->x;
	uint64_t hole_to = it->end;

	for (; it->pos < it->end && it->i < it->ino->count; it->i++) {
		if (!it->x_pending) {
			int r = slimfs_index_extent(it->idx, it->ino, it->i, x);

			if (r < 0)
				return r;
		}
		it->x_pending = false;
		if (x->file_off >= it->end)
			break;
		if (x->len == 0 || x->file_off + x->len <= it->pos)
			continue; /* empty or unsorted: open refuses such a list */
		if (it->holes && x->file_off > it->pos) {
			it->x_pending = true; /* the hole first, then x */
			hole_to = x->file_off;
			break;
		}
		it->i++;
		it->hole = false;
		it->from = MAX(it->pos, x->file_off);
		it->to = MIN(it->end, x->file_off + x->len);
		it->chunk_from = x->chunk_off + (uint32_t)(it->from - x->file_off);
		it->pos = it->to;
		return 1;
	}
	if (!it->holes || it->pos >= it->end)
		return 0;
	it->hole = true;
	it->from = it->pos;
	it->to = it->pos = hole_to;
	return 1;
}

int slimfs_index_view(const struct slimfs_index *idx, uint32_t i, struct slimfs_view *out)
{
	const uint8_t *v;

	if (i >= idx->cnt[SLIMFS_SEC_VIEWS])
		return -EINVAL;
	v = rec(idx, SLIMFS_SEC_VIEWS, i);
	out->name = str_at(idx, get_le64(FIELD(v, slimfs_disk_view, name_off)));
	out->name_len = get_le32(FIELD(v, slimfs_disk_view, name_len));
	out->flags = get_le32(FIELD(v, slimfs_disk_view, flags));
	return 0;
}

int slimfs_index_view_find(const struct slimfs_index *idx, const char *name, uint32_t *view)
{
	size_t len = strlen(name);

	if (strcmp(name, "full") == 0) {
		*view = SLIMFS_VIEW_NONE;
		return 0;
	}
	for (uint32_t i = 0; i < idx->cnt[SLIMFS_SEC_VIEWS]; i++) {
		struct slimfs_view v;

		slimfs_index_view(idx, i, &v);
		if (v.name_len == len && memcmp(v.name, name, len) == 0) {
			*view = i;
			return 0;
		}
	}
	return -ENOENT;
}

int slimfs_index_prefetch(const struct slimfs_index *idx, uint64_t i, uint32_t *chunk)
{
	if (i >= idx->cnt[SLIMFS_SEC_PREFETCH])
		return -EINVAL;
	*chunk = get_le32(idx->sec[SLIMFS_SEC_PREFETCH] + i * PREFETCH_SIZE);
	return 0;
}
