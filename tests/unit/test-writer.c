// SPDX-License-Identifier: MIT
/*
 * Image writer: trees built with the tree API are written to a memfd and the
 * result is checked against format.h by hand (superblock, checksum, sections,
 * frames), then opened with the reader.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "profile.h"
#include "tap.h"
#include "testutil.h"
#include "tree.h"

static uint64_t rng_state = 7;

/* ---- building trees ---- */

static struct slimfs_tree *new_tree(void)
{
	struct slimfs_tree *t = NULL;

	if (slimfs_tree_new(&t) < 0)
		return NULL;
	/* an explicit root inode with fixed metadata */
	return t;
}

static int add_dir(struct slimfs_tree *t, const char *path)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFDIR | 0755);

	if (!ino)
		return -ENOMEM;
	ino->mtime = 1700000000;
	return slimfs_tree_set(t, path, ino, NULL);
}

/* A regular file whose data segments come from the spool: segs pairs of
 * (file_off, len) out of content[0, size). */
static int add_file_segs(struct slimfs_tree *t, const char *path, const uint8_t *content,
			 uint64_t size, const uint64_t *segs, uint32_t nseg)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFREG | 0644);
	int r;

	if (!ino)
		return -ENOMEM;
	ino->mtime = 1700000001;
	ino->mtime_ns = 5;
	ino->uid = 1000;
	ino->gid = 100;
	ino->data.size = size;
	ino->data.from_spool = true;
	ino->data.nseg = nseg;
	ino->data.seg = calloc(nseg ? nseg : 1, sizeof(*ino->data.seg));
	if (!ino->data.seg)
		return -ENOMEM;
	for (uint32_t i = 0; i < nseg; i++) {
		ino->data.seg[i].file_off = segs[2 * i];
		ino->data.seg[i].len = segs[2 * i + 1];
		r = slimfs_tree_spool(t, content + segs[2 * i], segs[2 * i + 1],
				      &ino->data.seg[i].src_off);
		if (r < 0)
			return r;
	}
	return slimfs_tree_set(t, path, ino, NULL);
}

static int add_file(struct slimfs_tree *t, const char *path, const uint8_t *content, uint64_t size)
{
	uint64_t seg[2] = {0, size};

	return add_file_segs(t, path, content, size, seg, size ? 1 : 0);
}

/* A regular file read from disk at write time (directory ingest). */
static int add_file_path(struct slimfs_tree *t, const char *path, const char *src, uint64_t size)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFREG | 0755);

	if (!ino)
		return -ENOMEM;
	ino->data.size = size;
	ino->data.path = strdup(src);
	ino->data.nseg = 1;
	ino->data.seg = calloc(1, sizeof(*ino->data.seg));
	if (!ino->data.path || !ino->data.seg)
		return -ENOMEM;
	ino->data.seg[0].len = size;
	return slimfs_tree_set(t, path, ino, NULL);
}

static int add_symlink(struct slimfs_tree *t, const char *path, const char *target)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFLNK | 0777);

	if (!ino)
		return -ENOMEM;
	ino->target = strdup(target);
	if (!ino->target)
		return -ENOMEM;
	return slimfs_tree_set(t, path, ino, NULL);
}

/* ---- writing and parsing ---- */

struct img {
	uint8_t *buf;
	size_t len;
	uint8_t *zplain;      /* the decompressed index (ZINDEX), or NULL */
	const uint8_t *plain; /* [0, plain_len): the plain index, buf or zplain */
	size_t plain_len;
	struct slimfs_disk_super sb;
	const uint8_t *sec[SLIMFS_SEC_COUNT];
	uint64_t count[SLIMFS_SEC_COUNT];
	struct slimfs_build_stats stats;
};

static void img_free(struct img *m)
{
	free(m->buf);
	free(m->zplain);
	memset(m, 0, sizeof(*m));
}

static int write_img(struct slimfs_tree *t, const struct slimfs_write_args *a, struct img *m)
{
	int fd = memfd_create("slimfs-test", MFD_CLOEXEC);
	struct stat st;
	int r;

	memset(m, 0, sizeof(*m));
	if (fd < 0)
		return -errno;
	r = slimfs_write_image(t, a, fd, &m->stats);
	if (r < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	m->len = (size_t)st.st_size;
	m->buf = malloc(m->len ? m->len : 1);
	if (!m->buf) {
		r = -ENOMEM;
		goto out;
	}
	r = slimfs_pread_all(fd, m->buf, m->len, 0);
	if (r < 0)
		goto out;
	memcpy(&m->sb, m->buf, sizeof(m->sb));
	m->plain = m->buf;
	m->plain_len = le64toh(m->sb.index_size);
	if (le32toh(m->sb.feature_incompat) & SLIMFS_FEATURE_INCOMPAT_ZINDEX) {
		/* format.h: the sections are one zstd frame after the superblock */
		const uint8_t *frame = m->buf + sizeof(m->sb);
		size_t flen = m->plain_len - sizeof(m->sb);
		unsigned long long n = ZSTD_getFrameContentSize(frame, flen);

		if (n > SLIMFS_ZINDEX_PLAIN_MAX || !(m->zplain = malloc(sizeof(m->sb) + n))) {
			r = -EBADMSG;
			goto out;
		}
		memcpy(m->zplain, m->buf, sizeof(m->sb));
		if (ZSTD_decompress(m->zplain + sizeof(m->sb), n, frame, flen) != n) {
			r = -EBADMSG;
			goto out;
		}
		m->plain = m->zplain;
		m->plain_len = sizeof(m->sb) + n;
	}
	for (int s = 0; s < SLIMFS_SEC_COUNT; s++) {
		m->sec[s] = m->plain + le64toh(m->sb.sections[s].off);
		m->count[s] = le64toh(m->sb.sections[s].count);
	}
out:
	close(fd);
	return r;
}

static struct slimfs_disk_inode get_inode(const struct img *m, uint32_t id)
{
	struct slimfs_disk_inode d;

	memcpy(&d, m->sec[SLIMFS_SEC_INODES] + (size_t)id * sizeof(d), sizeof(d));
	return d;
}

static struct slimfs_disk_dirent get_dirent(const struct img *m, uint64_t i)
{
	struct slimfs_disk_dirent d;

	memcpy(&d, m->sec[SLIMFS_SEC_DIRENTS] + i * sizeof(d), sizeof(d));
	return d;
}

static struct slimfs_disk_chunk get_chunk(const struct img *m, uint32_t i)
{
	struct slimfs_disk_chunk d;

	memcpy(&d, m->sec[SLIMFS_SEC_CHUNKS] + (size_t)i * sizeof(d), sizeof(d));
	return d;
}

static struct slimfs_disk_extent get_extent(const struct img *m, uint64_t i)
{
	struct slimfs_disk_extent d;

	memcpy(&d, m->sec[SLIMFS_SEC_EXTENTS] + i * sizeof(d), sizeof(d));
	return d;
}

/* Resolves "a/b/c" by linear scans over dirents; UINT32_MAX if missing. */
static uint32_t resolve(const struct img *m, const char *path)
{
	uint32_t id = 0;

	while (*path) {
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);
		struct slimfs_disk_inode d = get_inode(m, id);
		uint32_t found = UINT32_MAX;

		if (!S_ISDIR(le32toh(d.mode)))
			return UINT32_MAX;
		for (uint32_t i = 0; i < le32toh(d.count); i++) {
			struct slimfs_disk_dirent e = get_dirent(m, le64toh(d.data) + i);
			const uint8_t *name = m->sec[SLIMFS_SEC_STRINGS] + le64toh(e.name_off);

			if (le32toh(e.name_len) == len && !memcmp(name, path, len))
				found = le32toh(e.ino);
		}
		if (found == UINT32_MAX)
			return UINT32_MAX;
		id = found;
		path += len;
		if (*path == '/')
			path++;
	}
	return id;
}

/* Decompresses every chunk (checking digests and ids); NULL on any mismatch. */
static uint8_t **decode_chunks(const struct img *m)
{
	uint32_t n = (uint32_t)m->count[SLIMFS_SEC_CHUNKS];
	uint8_t **out = calloc(n + 1, sizeof(*out));
	uint64_t data_off = le64toh(m->sb.data_off);

	if (!out)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		struct slimfs_disk_chunk c = get_chunk(m, i);
		const uint8_t *frame = m->buf + data_off + le64toh(c.off);
		uint8_t sha[32];
		XXH128_canonical_t canon;
		size_t r;

		slimfs_sha256(frame, le32toh(c.csize), sha);
		out[i] = malloc(le32toh(c.usize) + 1);
		if (!out[i] || memcmp(sha, c.sha256, 32) ||
		    ZSTD_getFrameContentSize(frame, le32toh(c.csize)) != le32toh(c.usize))
			goto fail;
		r = ZSTD_decompress(out[i], le32toh(c.usize), frame, le32toh(c.csize));
		if (ZSTD_isError(r) || r != le32toh(c.usize))
			goto fail;
		XXH128_canonicalFromHash(&canon, XXH3_128bits(out[i], r));
		if (memcmp(canon.digest, c.id, 16))
			goto fail;
	}
	return out;
fail:
	for (uint32_t i = 0; i < n; i++)
		free(out[i]);
	free(out);
	return NULL;
}

static void free_chunks(const struct img *m, uint8_t **c)
{
	if (!c)
		return;
	for (uint64_t i = 0; i < m->count[SLIMFS_SEC_CHUNKS]; i++)
		free(c[i]);
	free(c);
}

/* File content through its extents (holes as zeros), malloc'd. */
static uint8_t *read_file(const struct img *m, uint8_t **chunks, uint32_t id, uint64_t *size)
{
	struct slimfs_disk_inode d = get_inode(m, id);
	uint8_t *out;

	*size = le64toh(d.size);
	out = calloc(1, *size + 1);
	if (!out)
		return NULL;
	for (uint32_t i = 0; i < le32toh(d.count); i++) {
		struct slimfs_disk_extent e = get_extent(m, le64toh(d.data) + i);

		if (le64toh(e.file_off) + le32toh(e.len) > *size ||
		    le32toh(e.chunk) >= m->count[SLIMFS_SEC_CHUNKS]) {
			free(out);
			return NULL;
		}
		memcpy(out + le64toh(e.file_off), chunks[le32toh(e.chunk)] + le32toh(e.chunk_off),
		       le32toh(e.len));
	}
	return out;
}

static bool file_is(const struct img *m, uint8_t **chunks, const char *path, const uint8_t *want,
		    uint64_t want_size)
{
	uint32_t id = resolve(m, path);
	uint64_t size;
	uint8_t *got;
	bool ok;

	if (id == UINT32_MAX || !chunks)
		return false;
	got = read_file(m, chunks, id, &size);
	ok = got && size == want_size && !memcmp(got, want, size);
	free(got);
	return ok;
}

/* Structural checks every image must pass. */
static void check_image(const struct img *m)
{
	uint64_t index_size = le64toh(m->sb.index_size), data_off = le64toh(m->sb.data_off);
	uint64_t data_size = le64toh(m->sb.data_size), sum = 0, usum = 0;
	struct slimfs_disk_super sb = m->sb;
	uint8_t *copy, *plain;
	size_t r;
	bool sorted = true, aligned = true;

	CHECK(m->len >= sizeof(sb));
	CHECK(!memcmp(sb.magic, SLIMFS_MAGIC, SLIMFS_MAGIC_LEN));
	CHECK_EQ(le16toh(sb.version_major), SLIMFS_VERSION_MAJOR);
	CHECK_EQ(le32toh(sb.inode_size), sizeof(struct slimfs_disk_inode));
	CHECK_EQ(le32toh(sb.dirent_size), sizeof(struct slimfs_disk_dirent));
	CHECK_EQ(le32toh(sb.xattr_size), sizeof(struct slimfs_disk_xattr));
	CHECK_EQ(le32toh(sb.chunk_size), sizeof(struct slimfs_disk_chunk));
	CHECK_EQ(le32toh(sb.extent_size), sizeof(struct slimfs_disk_extent));
	CHECK_EQ(data_off % SLIMFS_DATA_ALIGN, 0);
	CHECK(data_off >= index_size && data_off - index_size < SLIMFS_DATA_ALIGN);
	CHECK_EQ(data_off + data_size, m->len);
	CHECK_EQ(m->stats.index_size, index_size);
	CHECK_EQ(m->stats.index_plain_size, m->plain_len);
	CHECK(m->zplain ? index_size < m->plain_len : index_size == m->plain_len);
	CHECK_EQ(m->stats.image_size, m->len);
	CHECK_EQ(le64toh(sb.entry_count), m->count[SLIMFS_SEC_DIRENTS] + 1);

	/* checksum and digest */
	copy = malloc(index_size);
	if (copy) {
		uint8_t sha[32];

		memcpy(copy, m->buf, index_size);
		memset(copy + offsetof(struct slimfs_disk_super, checksum), 0, 8);
		CHECK_EQ(XXH3_64bits(copy, index_size), le64toh(sb.checksum));
		slimfs_sha256(m->buf, index_size, sha);
		CHECK(!memcmp(sha, m->stats.index_digest, 32));
		free(copy);
	}
	/* sections in order, aligned, inside the index */
	for (int s = 0; s < SLIMFS_SEC_COUNT; s++) {
		uint64_t off = le64toh(sb.sections[s].off);

		if (off % 8 || off < sizeof(sb) || off > m->plain_len)
			aligned = false;
		if (s && off < le64toh(sb.sections[s - 1].off))
			aligned = false;
	}
	CHECK(aligned);
	/* padding is zeros */
	for (uint64_t i = index_size; i < data_off; i++)
		if (m->buf[i])
			aligned = false;
	CHECK(aligned);
	/* chunks in data order, contiguous */
	for (uint32_t i = 0; i < m->count[SLIMFS_SEC_CHUNKS]; i++) {
		struct slimfs_disk_chunk c = get_chunk(m, i);

		if (le64toh(c.off) != sum || le32toh(c.usize) > SLIMFS_CHUNK_MAX)
			sorted = false;
		sum += le32toh(c.csize);
		usum += le32toh(c.usize);
	}
	CHECK(sorted);
	CHECK_EQ(sum, data_size);
	/* the data area is one valid multi-frame zstd stream */
	plain = malloc(usum + 1);
	if (plain) {
		r = ZSTD_decompress(plain, usum + 1, m->buf + data_off, data_size);
		CHECK(!ZSTD_isError(r) && r == usum);
		free(plain);
	}
	/* dirents sorted within each directory, ids in range */
	for (uint32_t id = 0; id < m->count[SLIMFS_SEC_INODES]; id++) {
		struct slimfs_disk_inode d = get_inode(m, id);

		if (!S_ISDIR(le32toh(d.mode)))
			continue;
		for (uint32_t i = 0; i < le32toh(d.count); i++) {
			struct slimfs_disk_dirent e = get_dirent(m, le64toh(d.data) + i);

			if (le32toh(e.ino) >= m->count[SLIMFS_SEC_INODES] || le32toh(e.ino) == 0)
				sorted = false;
			if (i) {
				struct slimfs_disk_dirent p =
					get_dirent(m, le64toh(d.data) + i - 1);
				const uint8_t *st = m->sec[SLIMFS_SEC_STRINGS];
				uint32_t pl = le32toh(p.name_len), el = le32toh(e.name_len);
				int c = memcmp(st + le64toh(p.name_off), st + le64toh(e.name_off),
					       MIN(pl, el));

				if (c > 0 || (c == 0 && pl >= el))
					sorted = false;
			}
		}
	}
	CHECK(sorted);

	/* the reader accepts it */
	{
		struct slimfs_index *idx = NULL;
		int rr = slimfs_index_open_mem(m->buf, m->len, &idx);

		CHECK_EQ(rr, 0);
		if (idx) {
			const struct slimfs_info *info = slimfs_index_info(idx);

			CHECK(!memcmp(slimfs_index_digest(idx), m->stats.index_digest, 32));
			CHECK_EQ(info->inode_count, m->count[SLIMFS_SEC_INODES]);
			CHECK_EQ(info->chunk_count, m->count[SLIMFS_SEC_CHUNKS]);
			slimfs_index_free(idx);
		}
	}
}

static struct slimfs_build_opts opts;

static struct slimfs_write_args args(void)
{
	return (struct slimfs_write_args){.o = &opts, .default_view = -1};
}

/* ---- tests ---- */

#define MIB (1u << 20)

static void test_basic(void)
{
	struct slimfs_tree *t = new_tree();
	uint8_t *big = malloc(3 * MIB), small[5000], small2[300];
	struct slimfs_write_args a = args();
	struct img m1 = {0}, m2 = {0};
	uint8_t **chunks;
	uint32_t id;
	int r;

	CHECK(t && big);
	if (!t || !big)
		return;
	test_fill_random(&rng_state, big, 3 * MIB);
	test_fill_random(&rng_state, small, sizeof(small));
	test_fill_random(&rng_state, small2, sizeof(small2));
	CHECK_EQ(add_dir(t, "etc"), 0);
	CHECK_EQ(add_dir(t, "usr/lib"), 0);
	CHECK_EQ(add_file(t, "usr/lib/big", big, 3 * MIB), 0);
	CHECK_EQ(add_file(t, "etc/small", small, sizeof(small)), 0);
	CHECK_EQ(add_file(t, "etc/small.copy", small, sizeof(small)), 0);
	CHECK_EQ(add_file(t, "etc/b", small2, sizeof(small2)), 0);
	CHECK_EQ(add_file(t, "etc/empty", small, 0), 0);
	CHECK_EQ(add_file(t, "etc/ab", small2, 10), 0);
	CHECK_EQ(add_file(t, "etc/a", small2, 20), 0);
	CHECK_EQ(add_symlink(t, "bin", "usr/bin"), 0);
	CHECK_EQ(slimfs_tree_link(t, "etc/hard", "etc/small"), 0);
	{
		struct slimfs_tinode *dev = slimfs_tinode_new(S_IFCHR | 0600);

		dev->rdev = makedev(1, 3);
		CHECK_EQ(slimfs_tinode_add_xattr(dev, "user.z", "zz", 2), 0);
		CHECK_EQ(slimfs_tinode_add_xattr(dev, "security.selinux", "ctx", 3), 0);
		CHECK_EQ(slimfs_tree_set(t, "dev/null", dev, NULL), 0);
	}
	a.config = "{\"config\":{}}";
	a.config_len = strlen(a.config);

	opts.threads = 1;
	r = write_img(t, &a, &m1);
	CHECK_EQ(r, 0);
	opts.threads = 3;
	r = write_img(t, &a, &m2);
	CHECK_EQ(r, 0);
	opts.threads = 0;
	CHECK(m1.len == m2.len && m1.len && !memcmp(m1.buf, m2.buf, m1.len));
	if (!m1.buf)
		goto out;
	check_image(&m1);

	chunks = decode_chunks(&m1);
	CHECK(chunks != NULL);
	CHECK(file_is(&m1, chunks, "usr/lib/big", big, 3 * MIB));
	CHECK(file_is(&m1, chunks, "etc/small", small, sizeof(small)));
	CHECK(file_is(&m1, chunks, "etc/small.copy", small, sizeof(small)));
	CHECK(file_is(&m1, chunks, "etc/hard", small, sizeof(small)));
	CHECK(file_is(&m1, chunks, "etc/b", small2, sizeof(small2)));
	CHECK(file_is(&m1, chunks, "etc/a", small2, 20));
	CHECK(file_is(&m1, chunks, "etc/ab", small2, 10));
	CHECK(file_is(&m1, chunks, "etc/empty", small, 0));
	free_chunks(&m1, chunks);

	/* ids: DFS pre-order over sorted names: bin dev dev/null etc etc/a ... */
	CHECK_EQ(resolve(&m1, "bin"), 1);
	CHECK_EQ(resolve(&m1, "dev"), 2);
	CHECK_EQ(resolve(&m1, "dev/null"), 3);
	CHECK_EQ(resolve(&m1, "etc"), 4);
	CHECK_EQ(resolve(&m1, "etc/a"), 5);
	CHECK_EQ(resolve(&m1, "etc/ab"), 6);
	CHECK_EQ(resolve(&m1, "etc/hard"), 9);
	CHECK_EQ(resolve(&m1, "etc/small"), 9); /* hardlink: first encounter */
	CHECK_EQ(resolve(&m1, "etc/small.copy"), 10);
	CHECK_EQ(m1.count[SLIMFS_SEC_INODES], 14);
	CHECK_EQ(m1.count[SLIMFS_SEC_DIRENTS], 14);
	CHECK_EQ(m1.stats.entries, 15);
	CHECK_EQ(m1.stats.files, 7);
	{
		struct slimfs_disk_inode root = get_inode(&m1, 0), etc = get_inode(&m1, 4);
		struct slimfs_disk_inode hard = get_inode(&m1, 9), lnk = get_inode(&m1, 1);
		struct slimfs_disk_inode dev = get_inode(&m1, 3), cp = get_inode(&m1, 10);
		struct slimfs_disk_inode a5 = get_inode(&m1, 5);
		struct slimfs_disk_extent e1, e2;
		const uint8_t *st = m1.sec[SLIMFS_SEC_STRINGS];

		CHECK_EQ(le32toh(root.nlink), 5); /* 2 + dev etc usr */
		CHECK_EQ(le32toh(root.parent), 0);
		CHECK_EQ(le32toh(etc.nlink), 2);
		CHECK_EQ(le32toh(etc.count), 7);
		CHECK_EQ(le32toh(etc.parent), 0);
		CHECK_EQ(le32toh(hard.nlink), 2);
		CHECK_EQ(le32toh(hard.parent), 4);
		CHECK_EQ(le32toh(hard.uid), 1000);
		CHECK_EQ(le32toh(hard.gid), 100);
		CHECK_EQ(le64toh(hard.mtime), 1700000001);
		CHECK_EQ(le32toh(hard.mtime_ns), 5);
		CHECK_EQ(le32toh(lnk.count), 7);
		CHECK_EQ(le64toh(lnk.size), 7);
		CHECK(!memcmp(st + le64toh(lnk.data), "usr/bin", 7));
		CHECK_EQ(le64toh(dev.data), makedev(1, 3));
		/* xattrs sorted by name */
		CHECK_EQ(le32toh(dev.xattr_count), 2);
		{
			struct slimfs_disk_xattr x;

			memcpy(&x,
			       m1.sec[SLIMFS_SEC_XATTRS] + 24 * (size_t)le32toh(dev.xattr_start),
			       sizeof(x));
			CHECK(le32toh(x.name_len) == 16 &&
			      !memcmp(st + le64toh(x.name_off), "security.selinux", 16));
			CHECK(le32toh(x.value_len) == 3 &&
			      !memcmp(st + le64toh(x.value_off), "ctx", 3));
		}
		/* identical small files share the extent; small files are packed */
		CHECK_EQ(le32toh(cp.count), 1);
		CHECK_EQ(le32toh(hard.count), 1);
		e1 = get_extent(&m1, le64toh(hard.data));
		e2 = get_extent(&m1, le64toh(cp.data));
		CHECK(!memcmp(&e1, &e2, sizeof(e1)));
		e2 = get_extent(&m1, le64toh(a5.data));
		CHECK_EQ(le32toh(e1.chunk), le32toh(e2.chunk));
		CHECK(le32toh(e1.chunk_off) != le32toh(e2.chunk_off));
		/* config */
		CHECK_EQ(le64toh(m1.sb.config_len), a.config_len);
		CHECK(!memcmp(st + le64toh(m1.sb.config_off), a.config, a.config_len));
		CHECK_EQ(le32toh(m1.sb.default_view), SLIMFS_VIEW_NONE);
		CHECK_EQ(le64toh(m1.sb.total_bytes), 3 * MIB + 5000 + 5000 + 300 + 10 + 20);
	}
	/* the same tree again, with a spare write of another image in between:
	 * scratch fields must not leak between writes */
	id = resolve(&m1, "usr/lib/big");
	CHECK(id != UINT32_MAX);
out:
	img_free(&m1);
	img_free(&m2);
	free(big);
	slimfs_tree_free(t);
}

static void test_dedup(void)
{
	uint8_t *buf = malloc(MIB);
	struct slimfs_tree *t1 = new_tree(), *t2 = new_tree();
	struct slimfs_write_args a = args();
	struct img m1 = {0}, m2 = {0};

	CHECK(buf && t1 && t2);
	if (!buf || !t1 || !t2)
		goto out;
	test_fill_random(&rng_state, buf, MIB);
	CHECK_EQ(add_file(t1, "one", buf, MIB), 0);
	CHECK_EQ(add_file(t2, "one", buf, MIB), 0);
	CHECK_EQ(add_file(t2, "two", buf, MIB), 0);
	CHECK_EQ(write_img(t1, &a, &m1), 0);
	CHECK_EQ(write_img(t2, &a, &m2), 0);
	if (!m1.buf || !m2.buf)
		goto out;
	check_image(&m2);
	CHECK(m1.count[SLIMFS_SEC_CHUNKS] > 4);
	CHECK_EQ(m1.count[SLIMFS_SEC_CHUNKS], m2.count[SLIMFS_SEC_CHUNKS]);
	CHECK_EQ(m2.count[SLIMFS_SEC_EXTENTS], 2 * m1.count[SLIMFS_SEC_EXTENTS]);
	CHECK_EQ(m2.stats.chunk_refs, 2 * m1.stats.chunk_refs);
	CHECK_EQ(m1.stats.unique_bytes, MIB);
	CHECK_EQ(m2.stats.unique_bytes, MIB);
	CHECK_EQ(le64toh(m2.sb.data_size), le64toh(m1.sb.data_size));
	/* every chunk within [min, max] but the last of a file */
	{
		bool ok = true;

		for (uint32_t i = 0; i + 1 < m1.count[SLIMFS_SEC_CHUNKS]; i++) {
			struct slimfs_disk_chunk c = get_chunk(&m1, i);

			if (le32toh(c.usize) < opts.cdc_min || le32toh(c.usize) > opts.cdc_max)
				ok = false;
		}
		CHECK(ok);
	}
out:
	img_free(&m1);
	img_free(&m2);
	free(buf);
	slimfs_tree_free(t1);
	slimfs_tree_free(t2);
}

static void test_sparse(void)
{
	uint64_t size = 4 * MIB;
	uint8_t *buf = calloc(1, size), *zeros = calloc(1, size);
	uint64_t segs[] = {0, 100000, 2 * MIB, 300000};
	struct slimfs_tree *t = new_tree();
	struct slimfs_write_args a = args();
	struct img m = {0};
	uint8_t **chunks = NULL;

	CHECK(buf && zeros && t);
	if (!buf || !zeros || !t)
		goto out;
	test_fill_random(&rng_state, buf, 100000);
	test_fill_random(&rng_state, buf + 2 * MIB, 300000);
	CHECK_EQ(add_file_segs(t, "sparse", buf, size, segs, 2), 0);
	CHECK_EQ(add_file_segs(t, "allhole", buf, size, segs, 0), 0);
	/* a small sparse file is packed whole */
	CHECK_EQ(add_file_segs(t, "smallsparse", buf + 2 * MIB - 1000, 3000,
			       (uint64_t[]){1000, 2000}, 1),
		 0);
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf)
		goto out;
	check_image(&m);
	chunks = decode_chunks(&m);
	CHECK(file_is(&m, chunks, "sparse", buf, size));
	CHECK(file_is(&m, chunks, "allhole", zeros, size));
	CHECK(file_is(&m, chunks, "smallsparse", buf + 2 * MIB - 1000, 3000));
	{
		struct slimfs_disk_inode d = get_inode(&m, resolve(&m, "sparse"));
		struct slimfs_disk_inode h = get_inode(&m, resolve(&m, "allhole"));
		uint64_t covered = 0;
		bool in_hole = false;

		for (uint32_t i = 0; i < le32toh(d.count); i++) {
			struct slimfs_disk_extent e = get_extent(&m, le64toh(d.data) + i);
			uint64_t s = le64toh(e.file_off), end = s + le32toh(e.len);

			covered += le32toh(e.len);
			if (end > 100000 && s < 2 * MIB)
				in_hole = true;
			if (end > 2 * MIB + 300000)
				in_hole = true;
		}
		CHECK(!in_hole);
		CHECK_EQ(covered, 400000);
		CHECK_EQ(le32toh(h.count), 0);
		CHECK_EQ(le64toh(h.size), size);
	}
out:
	if (chunks)
		free_chunks(&m, chunks);
	img_free(&m);
	free(buf);
	free(zeros);
	slimfs_tree_free(t);
}

/* Many small files: packed into few chunks; adding one file changes one pack. */
static void test_packing(void)
{
	enum { N = 2000 };
	uint8_t *content = malloc((size_t)N * 4096);
	struct slimfs_tree *t1 = new_tree(), *t2 = new_tree();
	struct slimfs_write_args a = args();
	struct img m1 = {0}, m2 = {0};
	uint8_t **chunks = NULL;
	char path[64];
	uint64_t n1, n2, common = 0;
	int nfail = 0;

	CHECK(content && t1 && t2);
	if (!content || !t1 || !t2)
		goto out;
	test_fill_random(&rng_state, content, (size_t)N * 4096);
	for (int i = 0; i < N; i++) {
		size_t len = 100 + (size_t)(test_rng(&rng_state) % 3900);

		snprintf(path, sizeof(path), "d%02d/f%05d", i % 7, i);
		if (add_file(t1, path, content + (size_t)i * 4096, len) < 0 ||
		    add_file(t2, path, content + (size_t)i * 4096, len) < 0)
			nfail++;
	}
	CHECK_EQ(nfail, 0);
	/* t2 has one more file in the middle */
	CHECK_EQ(add_file(t2, "d03/f01000x", content + 7, 3000), 0);
	CHECK_EQ(write_img(t1, &a, &m1), 0);
	CHECK_EQ(write_img(t2, &a, &m2), 0);
	if (!m1.buf || !m2.buf)
		goto out;
	check_image(&m1);
	chunks = decode_chunks(&m1);
	CHECK(chunks != NULL);
	CHECK(file_is(&m1, chunks, "d03/f00003", content + 3 * 4096,
		      le64toh(get_inode(&m1, resolve(&m1, "d03/f00003")).size)));
	n1 = m1.count[SLIMFS_SEC_CHUNKS];
	n2 = m2.count[SLIMFS_SEC_CHUNKS];
	printf("# %d small files: %" PRIu64 " packs\n", N, n1);
	CHECK(n1 < N / 10);
	CHECK(n1 > 1);
	/* packs respect cdc_max */
	for (uint32_t i = 0; i < n1; i++)
		if (le32toh(get_chunk(&m1, i).usize) > opts.cdc_max)
			common = UINT64_MAX;
	CHECK(common == 0);
	/* all but one or two packs are shared between the two images */
	for (uint32_t i = 0; i < n1; i++) {
		struct slimfs_disk_chunk c = get_chunk(&m1, i);

		for (uint32_t j = 0; j < n2; j++) {
			struct slimfs_disk_chunk c2 = get_chunk(&m2, j);

			if (!memcmp(c.id, c2.id, 16)) {
				common++;
				break;
			}
		}
	}
	printf("# one file added: %" PRIu64 " of %" PRIu64 " packs unchanged\n", common, n1);
	CHECK(common + 2 >= n1);
out:
	if (chunks)
		free_chunks(&m1, chunks);
	img_free(&m1);
	img_free(&m2);
	free(content);
	slimfs_tree_free(t1);
	slimfs_tree_free(t2);
}

static void test_views_prefetch(void)
{
	uint8_t *buf = malloc(MIB);
	struct slimfs_tree *t = new_tree();
	struct slimfs_write_args a = args();
	const char *names[] = {"minimal", "debug"};
	struct slimfs_tnode *n;
	struct img m = {0}, full = {0};
	uint8_t ids[3 * 16];

	CHECK(buf && t);
	if (!buf || !t)
		goto out;
	test_fill_random(&rng_state, buf, MIB);
	CHECK_EQ(add_file(t, "app/bin", buf, MIB / 2), 0);
	CHECK_EQ(add_file(t, "app/data", buf + MIB / 2, MIB / 2), 0);
	CHECK_EQ(add_file(t, "usr/sh", buf, 1000), 0);
	/* views: app/bin in minimal (and its ancestors), everything in debug */
	CHECK_EQ(slimfs_tree_lookup(t, "usr/sh", &n), 0);
	n->ino->views = 0x2;
	CHECK_EQ(slimfs_tree_lookup(t, "usr", &n), 0);
	n->ino->views = 0x2;
	CHECK_EQ(slimfs_tree_lookup(t, "app/data", &n), 0);
	n->ino->views = 0x2;
	a.view_names = names;
	a.nviews = 2;
	a.default_view = 0;
	CHECK_EQ(write_img(t, &a, &full), 0);
	if (!full.buf)
		goto out;
	check_image(&full);
	CHECK_EQ(full.count[SLIMFS_SEC_VIEWS], 2);
	CHECK_EQ(le32toh(full.sb.default_view), 0);
	CHECK_EQ(le32toh(get_inode(&full, resolve(&full, "usr/sh")).views), 2);
	CHECK_EQ(le32toh(get_inode(&full, resolve(&full, "app/bin")).views), 3);
	{
		struct slimfs_disk_view v0, v1;
		const uint8_t *st = full.sec[SLIMFS_SEC_STRINGS];

		memcpy(&v0, full.sec[SLIMFS_SEC_VIEWS], sizeof(v0));
		memcpy(&v1, full.sec[SLIMFS_SEC_VIEWS] + sizeof(v0), sizeof(v1));
		CHECK(le32toh(v0.name_len) == 7 &&
		      !memcmp(st + le64toh(v0.name_off), "minimal", 7));
		CHECK_EQ(le32toh(v0.flags), SLIMFS_VIEW_DEFAULT);
		CHECK_EQ(le32toh(v1.flags), 0);
	}
	/* prefetch: the last chunk of app/data, an unknown id, the first chunk
	 * of app/data: those that exist come first in the data, in order */
	{
		struct slimfs_disk_inode d = get_inode(&full, resolve(&full, "app/data"));
		struct slimfs_disk_extent e0 = get_extent(&full, le64toh(d.data));
		struct slimfs_disk_extent el =
			get_extent(&full, le64toh(d.data) + le32toh(d.count) - 1);

		CHECK(le32toh(d.count) >= 2);
		memcpy(ids, get_chunk(&full, le32toh(el.chunk)).id, 16);
		memset(ids + 16, 0xab, 16);
		memcpy(ids + 32, get_chunk(&full, le32toh(e0.chunk)).id, 16);
	}
	a.prefetch_ids = ids;
	a.nprefetch = 3;
	a.prune = true;
	a.nviews = 1; /* only "minimal": prune to it */
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf)
		goto out;
	check_image(&m);
	CHECK_EQ(le32toh(m.sb.feature_compat), SLIMFS_FEATURE_COMPAT_PRUNED);
	CHECK(resolve(&m, "usr") == UINT32_MAX);
	CHECK(resolve(&m, "app/data") == UINT32_MAX);
	CHECK(resolve(&m, "app/bin") != UINT32_MAX);
	CHECK_EQ(m.count[SLIMFS_SEC_INODES], 3);
	CHECK_EQ(le32toh(get_inode(&m, 0).nlink), 3);
	/* app/data is gone, so its chunks are too: no prefetch entries */
	CHECK_EQ(m.count[SLIMFS_SEC_PREFETCH], 0);
	img_free(&m);

	a.prune = false;
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf)
		goto out;
	check_image(&m);
	CHECK_EQ(m.count[SLIMFS_SEC_PREFETCH], 2);
	CHECK_EQ(get_le32(m.sec[SLIMFS_SEC_PREFETCH]), 0);
	CHECK_EQ(get_le32(m.sec[SLIMFS_SEC_PREFETCH] + 4), 1);
	CHECK(!memcmp(get_chunk(&m, 0).id, ids, 16));
	CHECK(!memcmp(get_chunk(&m, 1).id, ids + 32, 16));
	CHECK_EQ(m.count[SLIMFS_SEC_CHUNKS], full.count[SLIMFS_SEC_CHUNKS]);
out:
	img_free(&m);
	img_free(&full);
	free(buf);
	slimfs_tree_free(t);
}

/* Profile paths read from a profile / allow-list text. */
static void test_profile_paths(void)
{
	static const char text[] = "# slimfs-profile 1 (from 1 trace)\n"
				   "/usr/bin/python3\n"
				   "  /a/b\\*c  \n"
				   "/tab\\ \n"
				   "/new[!\x01-\x09\x0b-\xff]line\n"
				   "/glob/*.py\n"
				   "!/neg\n"
				   "@include runtime-base\n"
				   "name-only\n"
				   "rel/path\n"
				   "\\#hash/x\n"
				   "# hidden: /h\n"
				   "#@chunk 00112233445566778899aabbccddeeff\n"
				   "/usr/bin/python3\n"
				   "/last";
	static const char *const want[] = {"/usr/bin/python3", "/a/b*c",    "/tab ",
					   "/new\nline",       "/rel/path", "/#hash/x",
					   "/usr/bin/python3", "/last"};
	char **paths = NULL;
	size_t n = 0;
	bool same = true;

	CHECK_EQ(slimfs_profile_parse_paths(text, sizeof(text) - 1, &paths, &n), 0);
	CHECK_EQ(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n && i < sizeof(want) / sizeof(want[0]); i++)
		if (strcmp(paths[i], want[i])) {
			printf("# path %zu: got '%s', want '%s'\n", i, paths[i], want[i]);
			same = false;
		}
	CHECK(same);
	slimfs_profile_paths_free(paths, n);
	CHECK_EQ(slimfs_profile_parse_paths("", 0, &paths, &n), 0);
	CHECK(n == 0 && paths == NULL);
}

/* Extent of a single-extent (packed) file: its chunk and offset. */
static bool packed_at(const struct img *m, const char *path, uint32_t *chunk, uint32_t *off)
{
	uint32_t id = resolve(m, path);
	struct slimfs_disk_inode d;
	struct slimfs_disk_extent e;

	if (id == UINT32_MAX)
		return false;
	d = get_inode(m, id);
	if (le32toh(d.count) != 1)
		return false;
	e = get_extent(m, le64toh(d.data));
	*chunk = le32toh(e.chunk);
	*off = le32toh(e.chunk_off);
	return true;
}

/*
 * build --profile: the small files a profile names are packed first, in
 * profile order, in packs without other files; then the profile's chunk ids;
 * the PREFETCH section lists both; the result is deterministic and the
 * profiled packs do not change when an unprofiled file is added.
 */
static void test_profile_packing(void)
{
	enum { N = 300, NP = 40 };
	uint8_t *content = malloc((size_t)N * 4096 + MIB);
	uint8_t *big;
	struct slimfs_tree *t = new_tree(), *t2 = new_tree();
	struct slimfs_write_args a = args();
	struct img plain = {0}, m = {0}, m2 = {0}, m3 = {0};
	uint8_t **chunks = NULL;
	size_t sizes[N];
	bool profiled[N] = {false};
	int order[NP], nfail = 0;
	char *paths[NP + 6];
	const char *cpaths[NP + 6];
	uint8_t ids[2 * 16];
	uint32_t npacks = 0, last_chunk = 0, last_off = 0;
	bool only_profiled = true, in_order = true, all_first = true, same = true;
	unsigned threads = opts.threads;

	CHECK(content && t && t2);
	if (!content || !t || !t2)
		goto out;
	test_fill_random(&rng_state, content, (size_t)N * 4096 + MIB);
	big = content + (size_t)N * 4096;
	for (int i = 0; i < N; i++) {
		char path[64];

		sizes[i] = 200 + (size_t)(test_rng(&rng_state) % 3800);
		snprintf(path, sizeof(path), "d%d/f%03d", i % 5, i);
		if (add_file(t, path, content + (size_t)i * 4096, sizes[i]) < 0 ||
		    add_file(t2, path, content + (size_t)i * 4096, sizes[i]) < 0)
			nfail++;
	}
	CHECK_EQ(nfail, 0);
	CHECK_EQ(add_file(t, "big", big, MIB), 0);
	CHECK_EQ(add_file(t2, "big", big, MIB), 0);
	CHECK_EQ(add_symlink(t, "lnk", "d2"), 0);
	CHECK_EQ(add_symlink(t2, "lnk", "d2"), 0);
	/* t2: one more, unprofiled file */
	CHECK_EQ(add_file(t2, "d1/f150x", content + 5, 3000), 0);

	/* profile: NP distinct files in a scrambled order (one through the
	 * symlink), then a repeat, a missing path, a directory, the big file */
	for (int i = 0; i < NP; i++) {
		int k;

		do
			k = (int)(test_rng(&rng_state) % N);
		while (profiled[k]);
		profiled[k] = true;
		order[i] = k;
		if (k % 5 == 2)
			CHECK(asprintf(&paths[i], "/lnk/../lnk/f%03d", k) > 0);
		else
			CHECK(asprintf(&paths[i], "/d%d/f%03d", k % 5, k) > 0);
	}
	CHECK(asprintf(&paths[NP], "/d%d/f%03d", order[0] % 5, order[0]) > 0);
	CHECK(asprintf(&paths[NP + 1], "/nope/f") > 0);
	CHECK(asprintf(&paths[NP + 2], "/d3") > 0);
	CHECK(asprintf(&paths[NP + 3], "/big") > 0);
	CHECK(asprintf(&paths[NP + 4], "/lnk") > 0); /* a directory, through a symlink */
	CHECK(asprintf(&paths[NP + 5], "/d0/f000/x") > 0);
	for (int i = 0; i < NP + 6; i++)
		cpaths[i] = paths[i];

	/* chunk ids: the big file's second chunk and an unknown one */
	CHECK_EQ(write_img(t, &a, &plain), 0);
	if (!plain.buf)
		goto out;
	{
		struct slimfs_disk_inode d = get_inode(&plain, resolve(&plain, "big"));

		CHECK(le32toh(d.count) >= 3);
		memcpy(ids,
		       get_chunk(&plain, le32toh(get_extent(&plain, le64toh(d.data) + 1).chunk)).id,
		       16);
		memset(ids + 16, 0x5a, 16);
	}
	a.profile_paths = cpaths;
	a.nprofile_paths = NP + 6;
	a.prefetch_ids = ids;
	a.nprefetch = 2;
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf)
		goto out;
	check_image(&m);
	chunks = decode_chunks(&m);
	CHECK(chunks != NULL);

	/* the profiled files sit in the first packs, in profile order */
	for (int i = 0; i < NP; i++) {
		char path[64];
		uint32_t c, off;

		snprintf(path, sizeof(path), "d%d/f%03d", order[i] % 5, order[i]);
		if (!packed_at(&m, path, &c, &off)) {
			all_first = false;
			continue;
		}
		if (i && (c < last_chunk || (c == last_chunk && off <= last_off)))
			in_order = false;
		last_chunk = c;
		last_off = off;
		npacks = MAX(npacks, c + 1);
		if (!file_is(&m, chunks, path, content + (size_t)order[i] * 4096, sizes[order[i]]))
			same = false;
	}
	CHECK(all_first);
	CHECK(in_order);
	CHECK(same);
	printf("# %d profiled small files in %" PRIu32 " packs\n", NP, npacks);
	CHECK(npacks >= 1 && npacks < NP / 4);
	/* ... and nothing else does */
	for (int i = 0; i < N; i++) {
		char path[64];
		uint32_t c, off;

		snprintf(path, sizeof(path), "d%d/f%03d", i % 5, i);
		if (!packed_at(&m, path, &c, &off) ||
		    !file_is(&m, chunks, path, content + (size_t)i * 4096, sizes[i]))
			same = false;
		else if (!profiled[i] && c < npacks)
			only_profiled = false;
	}
	CHECK(same);
	CHECK(only_profiled);
	CHECK(file_is(&m, chunks, "big", big, MIB));
	/* PREFETCH: the packs, then the big file's chunk; data in that order */
	CHECK_EQ(m.count[SLIMFS_SEC_PREFETCH], npacks + 1);
	for (uint32_t i = 0; i < m.count[SLIMFS_SEC_PREFETCH]; i++)
		if (get_le32(m.sec[SLIMFS_SEC_PREFETCH] + 4 * i) != i)
			same = false;
	CHECK(same);
	CHECK(!memcmp(get_chunk(&m, npacks).id, ids, 16));
	CHECK_EQ(m.count[SLIMFS_SEC_CHUNKS] > npacks + 1, true);

	/* deterministic: again, and with another thread count */
	opts.threads = threads == 1 ? 3 : 1;
	CHECK_EQ(write_img(t, &a, &m3), 0);
	opts.threads = threads;
	CHECK(m3.len == m.len && !memcmp(m3.buf, m.buf, m.len));
	img_free(&m3);
	CHECK_EQ(write_img(t, &a, &m3), 0);
	CHECK(m3.len == m.len && !memcmp(m3.buf, m.buf, m.len));

	/* one unprofiled file more: the profiled packs are the same chunks */
	CHECK_EQ(write_img(t2, &a, &m2), 0);
	if (!m2.buf)
		goto out;
	check_image(&m2);
	CHECK_EQ(m2.count[SLIMFS_SEC_PREFETCH], npacks + 1);
	for (uint32_t i = 0; i <= npacks; i++)
		if (memcmp(get_chunk(&m, i).id, get_chunk(&m2, i).id, 16))
			same = false;
	CHECK(same);
	/* without a profile the same tree packs by inode order: the profile
	 * packs are new chunks, the rest mostly the same */
	CHECK(memcmp(get_chunk(&plain, 0).id, get_chunk(&m, 0).id, 16));
out:
	for (int i = 0; i < NP + 6; i++)
		free(paths[i]);
	if (chunks)
		free_chunks(&m, chunks);
	img_free(&plain);
	img_free(&m);
	img_free(&m2);
	img_free(&m3);
	free(content);
	slimfs_tree_free(t);
	slimfs_tree_free(t2);
}

/* The extent of path that covers file offset off: its chunk and chunk_off. */
static bool extent_at(const struct img *m, const char *path, uint64_t off, uint32_t *chunk,
		      uint32_t *chunk_off)
{
	uint32_t id = resolve(m, path);
	struct slimfs_disk_inode d;

	if (id == UINT32_MAX)
		return false;
	d = get_inode(m, id);
	for (uint32_t i = 0; i < le32toh(d.count); i++) {
		struct slimfs_disk_extent e = get_extent(m, le64toh(d.data) + i);
		uint64_t fo = le64toh(e.file_off);

		if (off >= fo && off - fo < le32toh(e.len)) {
			*chunk = le32toh(e.chunk);
			*chunk_off = le32toh(e.chunk_off) + (uint32_t)(off - fo);
			return true;
		}
	}
	return false;
}

/* Whether the extents of path switch between chunks < nfront and the rest
 * exactly nswitch times, in order, without overlap, within the file. */
static bool alternates(const struct img *m, const char *path, uint32_t nfront, unsigned nswitch)
{
	uint32_t id = resolve(m, path);
	struct slimfs_disk_inode d;
	uint64_t pos = 0;
	unsigned n = 0;
	bool prev = false;

	if (id == UINT32_MAX)
		return false;
	d = get_inode(m, id);
	for (uint32_t i = 0; i < le32toh(d.count); i++) {
		struct slimfs_disk_extent e = get_extent(m, le64toh(d.data) + i);
		bool front = le32toh(e.chunk) < nfront;

		if (le64toh(e.file_off) < pos)
			return false;
		pos = le64toh(e.file_off) + le32toh(e.len);
		if (i && front != prev)
			n++;
		prev = front;
	}
	return pos <= le64toh(d.size) && n == nswitch;
}

/*
 * build --profile with "#@range" lines: the hot ranges of large files are
 * packed first, in profile order (through symlinks, clipped, overlaps and
 * small or missing files ignored), listed in PREFETCH; the files' other
 * bytes are chunked around them and dedup still works there; the profile's
 * chunk ids of such cold parts are not prefetched; content reads back
 * exact; deterministic; no range in this image changes nothing.
 */
static void test_hot_ranges(void)
{
	enum { BIG = MIB, SP = 300000, OTHER = 200000 };
	uint8_t *big = malloc(BIG), *sp = calloc(1, SP), *other = malloc(OTHER), small[8000];
	uint64_t spsegs[4] = {0, 100000, 200000, 100000};
	struct slimfs_tree *t = new_tree();
	struct slimfs_write_args a = args();
	struct img plain = {0}, m = {0}, m2 = {0}, none = {0};
	uint8_t **chunks = NULL, ids[3 * 16];
	uint32_t c, off, c2, off2, nfront;
	unsigned threads = opts.threads;
	bool found = false, ordered = true;
	char lnk[] = "/lnk", pbig[] = "/big", pbig2[] = "/big2", psmall[] = "/small",
	     psparse[] = "/sparse", nope[] = "/nope";
	struct slimfs_profile_range r[] = {
		{lnk, 300000, 50000},	 /* big, through the symlink */
		{pbig, 40960, 8192},	 /* */
		{psmall, 0, 4096},	 /* a small file: packed as always */
		{psparse, 90112, 20480}, /* into the hole */
		{pbig, 1040000, 99999},	 /* clipped at the end */
		{nope, 0, 4096},	 /* missing */
		{pbig, 302000, 1000},	 /* inside the first one */
		{pbig2, 300000, 50000},	 /* an identical file, same ranges */
		{pbig2, 40960, 8192},	 /* */
		{pbig, BIG, 4096},	 /* past the end */
	};

	CHECK(big && sp && other && t);
	if (!big || !sp || !other || !t)
		goto out;
	test_fill_random(&rng_state, big, BIG);
	test_fill_random(&rng_state, other, OTHER);
	test_fill_random(&rng_state, small, sizeof(small));
	test_fill_random(&rng_state, sp, 100000);
	test_fill_random(&rng_state, sp + 200000, 100000);
	CHECK_EQ(add_file(t, "big", big, BIG), 0);
	CHECK_EQ(add_file(t, "big2", big, BIG), 0);
	CHECK_EQ(add_file(t, "other", other, OTHER), 0);
	CHECK_EQ(add_file(t, "small", small, sizeof(small)), 0);
	CHECK_EQ(add_file_segs(t, "sparse", sp, SP, spsegs, 2), 0);
	CHECK_EQ(add_symlink(t, "lnk", "big"), 0);

	/* chunk ids: big's chunk at 700000 (cold here), other's first */
	CHECK_EQ(write_img(t, &a, &plain), 0);
	if (!plain.buf)
		goto out;
	CHECK(extent_at(&plain, "big", 700000, &c, &off));
	memcpy(ids, get_chunk(&plain, c).id, 16);
	CHECK(extent_at(&plain, "other", 0, &c, &off));
	memcpy(ids + 16, get_chunk(&plain, c).id, 16);
	memset(ids + 32, 0x5a, 16);
	a.prefetch_ids = ids;
	a.nprefetch = 3;

	/* ranges that name no large file of the image change nothing */
	a.hot_ranges = r + 2;
	a.nhot_ranges = 1;
	CHECK_EQ(write_img(t, &a, &none), 0);
	a.hot_ranges = r;
	a.nhot_ranges = sizeof(r) / sizeof(*r);
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf || !none.buf)
		goto out;
	check_image(&m);
	chunks = decode_chunks(&m);
	CHECK(chunks != NULL);
	CHECK(file_is(&m, chunks, "big", big, BIG));
	CHECK(file_is(&m, chunks, "big2", big, BIG));
	CHECK(file_is(&m, chunks, "sparse", sp, SP));
	CHECK(file_is(&m, chunks, "other", other, OTHER));
	CHECK(file_is(&m, chunks, "small", small, sizeof(small)));

	/* PREFETCH: the hot packs, then other's chunk (big's cold one is not) */
	nfront = (uint32_t)m.count[SLIMFS_SEC_PREFETCH] - 1;
	printf("# %" PRIu32 " hot packs\n", nfront);
	CHECK(nfront >= 2 && nfront <= 4);
	for (uint32_t i = 0; i <= nfront; i++)
		if (get_le32(m.sec[SLIMFS_SEC_PREFETCH] + 4 * i) != i)
			ordered = false;
	CHECK(ordered);
	CHECK(!memcmp(get_chunk(&m, nfront).id, ids + 16, 16));
	for (uint32_t i = 0; i < m.count[SLIMFS_SEC_CHUNKS]; i++)
		found |= !memcmp(get_chunk(&m, i).id, ids, 16);
	CHECK(found); /* big's cold chunk is in the image, just not prefetched */

	/* profile order in the packs: the first range at 0, the second after it */
	CHECK(extent_at(&m, "big", 300000, &c, &off) && c == 0 && off == 0);
	CHECK(extent_at(&m, "big", 349999, &c, &off) && c == 0 && off == 49999);
	CHECK(extent_at(&m, "big", 40960, &c, &off) && c == 0 && off == 50000);
	CHECK(extent_at(&m, "sparse", 90112, &c, &off) && c == 0 && off == 58192);
	CHECK(!extent_at(&m, "sparse", 100000, &c, &off)); /* the hole stays one */
	CHECK(extent_at(&m, "big", 1040000, &c, &off) && c < nfront);
	CHECK(extent_at(&m, "big", BIG - 1, &c, &off) && c < nfront);
	/* cold bytes around them in later chunks */
	CHECK(extent_at(&m, "big", 40959, &c, &off) && c > nfront);
	CHECK(extent_at(&m, "big", 49152, &c, &off) && c > nfront);
	CHECK(extent_at(&m, "big", 350000, &c, &off) && c > nfront);
	CHECK(extent_at(&m, "small", 0, &c, &off) && c > nfront);
	/* cold, hot, cold, hot, cold, hot: 5 switches; sparse: cold, hot, cold */
	CHECK(alternates(&m, "big", nfront, 5));
	CHECK(alternates(&m, "big2", nfront, 4));
	CHECK(alternates(&m, "sparse", nfront, 2));
	/* the identical file's cold parts are the same chunks; its hot ones its own */
	CHECK(extent_at(&m, "big", 700000, &c, &off) && extent_at(&m, "big2", 700000, &c2, &off2) &&
	      c == c2 && off == off2);
	CHECK(extent_at(&m, "big2", 300000, &c2, &off2) && c2 < nfront && (c2 || off2 == 76656));

	/* deterministic, with any thread count */
	opts.threads = threads == 1 ? 3 : 1;
	CHECK_EQ(write_img(t, &a, &m2), 0);
	opts.threads = threads;
	CHECK(m2.len == m.len && !memcmp(m2.buf, m.buf, m.len));
	/* no hot range: the same image as without any */
	a.hot_ranges = NULL;
	a.nhot_ranges = 0;
	img_free(&m2);
	CHECK_EQ(write_img(t, &a, &m2), 0);
	CHECK(m2.len == none.len && !memcmp(m2.buf, none.buf, none.len));
out:
	if (chunks)
		free_chunks(&m, chunks);
	img_free(&plain);
	img_free(&m);
	img_free(&m2);
	img_free(&none);
	free(big);
	free(sp);
	free(other);
	slimfs_tree_free(t);
}

static void test_deep_and_disk(void)
{
	struct slimfs_tree *t = new_tree();
	struct slimfs_write_args a = args();
	char tmpl[] = "/tmp/slimfs-test-writer-XXXXXX";
	int fd = mkstemp(tmpl);
	uint8_t data[70000];
	char *path = malloc(10000 * 2 + 16);
	struct img m = {0};
	uint8_t **chunks = NULL;

	CHECK(t && fd >= 0 && path);
	if (!t || fd < 0 || !path)
		goto out;
	test_fill_random(&rng_state, data, sizeof(data));
	CHECK_EQ(slimfs_write_all(fd, data, sizeof(data)), 0);
	CHECK_EQ(add_file_path(t, "ondisk", tmpl, sizeof(data)), 0);
	/* 10,000 levels */
	path[0] = 0;
	for (int i = 0; i < 10000; i++)
		strcat(path, i ? "/d" : "d");
	CHECK_EQ(add_file(t, path, data, 10), 0);
	CHECK_EQ(write_img(t, &a, &m), 0);
	if (!m.buf)
		goto out;
	check_image(&m);
	/* root, ondisk, 9,999 directories and the file */
	CHECK_EQ(m.count[SLIMFS_SEC_INODES], 1 + 1 + 9999 + 1);
	chunks = decode_chunks(&m);
	CHECK(file_is(&m, chunks, "ondisk", data, sizeof(data)));
	CHECK(file_is(&m, chunks, path, data, 10));
	free_chunks(&m, chunks);
	chunks = NULL;
	img_free(&m);

	/* a file that shrank after ingest: a clear error, no image */
	CHECK_EQ(ftruncate(fd, 1000), 0);
	CHECK_EQ(write_img(t, &a, &m), -EIO);
out:
	if (chunks)
		free_chunks(&m, chunks);
	img_free(&m);
	free(path);
	if (fd >= 0) {
		close(fd);
		unlink(tmpl);
	}
	slimfs_tree_free(t);
}

static void test_refuse(void)
{
	struct slimfs_tree *t = new_tree();
	struct slimfs_write_args a = args();
	const char *names[] = {"minimal"};
	struct img m = {0};

	CHECK(t != NULL);
	if (!t)
		return;
	a.default_view = 2;
	a.view_names = names;
	a.nviews = 1;
	CHECK_EQ(write_img(t, &a, &m), -EINVAL);
	a.default_view = -1;
	a.nviews = 33;
	CHECK_EQ(write_img(t, &a, &m), -EFBIG);
	a.nviews = 1;
	{
		struct slimfs_tinode *f = slimfs_tinode_new(S_IFREG | 0644);
		char big[300];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		memcpy(big, "user.", 5);
		CHECK_EQ(slimfs_tinode_add_xattr(f, big, "v", 1), 0);
		CHECK_EQ(slimfs_tree_set(t, "f", f, NULL), 0);
	}
	CHECK_EQ(write_img(t, &a, &m), -EFBIG);
	img_free(&m);
	slimfs_tree_free(t);
}

int main(void)
{
	slimfs_build_opts_init(&opts);
	/* smaller chunks than the defaults: more of them in small tests */
	opts.cdc_min = 16 << 10;
	opts.cdc_avg = 64 << 10;
	opts.cdc_max = 256 << 10;
	opts.small_file_max = 16 << 10;

	test_basic();
	test_dedup();
	test_sparse();
	test_packing();
	test_views_prefetch();
	test_profile_paths();
	test_profile_packing();
	test_hot_ranges();
	test_deep_and_disk();
	test_refuse();
	return tap_done();
}
