// SPDX-License-Identifier: MIT
/*
 * The image index reader: slimfs_index_open_mem() on arbitrary bytes, then,
 * when it accepts them, every accessor over every record. open promises that
 * the accessors cannot fail or read outside the buffer afterwards, so any
 * error from them on an accepted index is a bug (FUZZ_CHECK), and any
 * out-of-bounds read is caught by ASan (the input buffer has its exact size).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/util.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

/* Touches every byte of a borrowed string (ASan checks the range). */
static unsigned touch(const char *s, size_t len)
{
	unsigned h = 0;

	for (size_t i = 0; i < len; i++)
		h = h * 31 + (unsigned char)s[i];
	return h;
}

static void walk_dir(const struct slimfs_index *idx, const struct slimfs_inode *dir,
		     uint64_t ninodes)
{
	for (uint32_t i = 0; i < dir->count; i++) {
		struct slimfs_dirent de;
		struct slimfs_inode child;
		uint32_t found;

		FUZZ_CHECK(slimfs_index_dirent(idx, dir, i, &de) == 0);
		FUZZ_CHECK(de.name_len >= 1 && de.name_len <= SLIMFS_NAME_MAX);
		FUZZ_CHECK(!memchr(de.name, '/', de.name_len) && !memchr(de.name, 0, de.name_len));
		FUZZ_CHECK(de.ino < ninodes);
		touch(de.name, de.name_len);
		/* names are sorted and unique: lookup finds exactly this entry */
		FUZZ_CHECK(slimfs_index_lookup(idx, dir, de.name, de.name_len, &found) == 0);
		FUZZ_CHECK(found == de.ino);
		FUZZ_CHECK(slimfs_index_inode(idx, de.ino, &child) == 0);
		if (S_ISDIR(child.mode))
			FUZZ_CHECK(child.parent == dir->id);
	}
	FUZZ_CHECK(slimfs_index_dirent(idx, dir, dir->count, &(struct slimfs_dirent){0}) < 0);
}

static void walk_file(const struct slimfs_index *idx, const struct slimfs_inode *ino,
		      uint64_t nchunks)
{
	uint64_t prev_end = 0;

	for (uint32_t i = 0; i < ino->count; i++) {
		struct slimfs_extent e;
		struct slimfs_chunk c;

		FUZZ_CHECK(slimfs_index_extent(idx, ino, i, &e) == 0);
		FUZZ_CHECK(e.chunk < nchunks);
		FUZZ_CHECK(e.len > 0 && e.file_off >= prev_end);
		FUZZ_CHECK(e.file_off <= ino->size && e.len <= ino->size - e.file_off);
		FUZZ_CHECK(slimfs_index_chunk(idx, e.chunk, &c) == 0);
		FUZZ_CHECK(e.chunk_off <= c.usize && e.len <= c.usize - e.chunk_off);
		/* the first extent that ends after its own start is itself */
		FUZZ_CHECK(slimfs_index_extent_find(idx, ino, e.file_off) == i);
		prev_end = e.file_off + e.len;
	}
	FUZZ_CHECK(slimfs_index_extent_find(idx, ino, prev_end) == ino->count);
	FUZZ_CHECK(slimfs_index_extent_find(idx, ino, UINT64_MAX) == ino->count);
	/* the iterator tiles the file with every extent and the holes between */
	{
		struct slimfs_extent_iter it;
		uint64_t pos = 0;
		uint32_t n = 0;
		struct slimfs_chunk c;

		slimfs_extent_iter_init(&it, idx, ino, 0, UINT64_MAX, SLIMFS_EXTENT_HOLES);
		while (slimfs_extent_next(&it) > 0) {
			FUZZ_CHECK(it.from == pos && it.to > it.from && it.to <= ino->size);
			if (!it.hole) {
				FUZZ_CHECK(slimfs_index_chunk(idx, it.x.chunk, &c) == 0);
				FUZZ_CHECK(slimfs_extent_check(&it.x, c.usize) == 0);
				n++;
			}
			pos = it.to;
		}
		FUZZ_CHECK(pos == ino->size && n == ino->count);
	}
}

static void walk_xattrs(const struct slimfs_index *idx, const struct slimfs_inode *ino)
{
	for (uint32_t i = 0; i < ino->xattr_count; i++) {
		struct slimfs_xattr x, y;
		char name[SLIMFS_XATTR_NAME_MAX + 1];

		FUZZ_CHECK(slimfs_index_xattr(idx, ino, i, &x) == 0);
		FUZZ_CHECK(x.name_len >= 1 && x.name_len <= SLIMFS_XATTR_NAME_MAX);
		FUZZ_CHECK(x.value_len <= SLIMFS_XATTR_VALUE_MAX);
		touch(x.value, x.value_len);
		memcpy(name, x.name, x.name_len);
		name[x.name_len] = '\0';
		FUZZ_CHECK(slimfs_index_getxattr(idx, ino, name, &y) == 0);
		FUZZ_CHECK(y.name == x.name && y.value == x.value); /* unique names */
	}
	{
		struct slimfs_xattr x;
		int r = slimfs_index_getxattr(idx, ino, "user.fuzz-absent\xff", &x);

		/* (the fuzzer learns that name from this very comparison) */
		FUZZ_CHECK(r == -ENODATA || (r == 0 && x.name_len == 17));
	}
}

static void walk_everything(const struct slimfs_index *idx)
{
	const struct slimfs_info *in = slimfs_index_info(idx);
	char digest[72];
	uint32_t v;

	FUZZ_CHECK(in->inode_count >= 1);
	slimfs_index_digest_str(idx, digest);
	FUZZ_CHECK(strlen(digest) == 71);
	if (in->config_len)
		touch(in->config, in->config_len);

	for (uint64_t id = 0; id < in->inode_count; id++) {
		struct slimfs_inode ino;

		FUZZ_CHECK(slimfs_index_inode(idx, (uint32_t)id, &ino) == 0);
		FUZZ_CHECK(ino.id == id && ino.mtime_ns < 1000000000u);
		FUZZ_CHECK(ino.parent < in->inode_count);
		walk_xattrs(idx, &ino);
		switch (ino.mode & S_IFMT) {
		case S_IFDIR:
			walk_dir(idx, &ino, in->inode_count);
			break;
		case S_IFREG:
			walk_file(idx, &ino, in->chunk_count);
			break;
		case S_IFLNK:
			FUZZ_CHECK(ino.target_len >= 1 && ino.target_len <= 4095);
			touch(ino.target, ino.target_len);
			break;
		default:
			break;
		}
	}
	FUZZ_CHECK(slimfs_index_inode(idx, (uint32_t)in->inode_count, &(struct slimfs_inode){0}) ==
		   -ENOENT);

	for (uint64_t i = 0; i < in->chunk_count; i++) {
		struct slimfs_chunk c;

		FUZZ_CHECK(slimfs_index_chunk(idx, (uint32_t)i, &c) == 0);
		FUZZ_CHECK(c.csize > 0 && c.usize > 0 && c.usize <= SLIMFS_CHUNK_MAX);
		FUZZ_CHECK(c.off >= in->data_off && c.off - in->data_off <= in->data_size &&
			   c.csize <= in->data_size - (c.off - in->data_off));
		touch((const char *)c.id, 16);
		touch((const char *)c.sha256, 32);
	}
	for (uint64_t i = 0; i < in->prefetch_count; i++) {
		uint32_t c;

		FUZZ_CHECK(slimfs_index_prefetch(idx, i, &c) == 0);
		FUZZ_CHECK(c < in->chunk_count);
	}
	FUZZ_CHECK(slimfs_index_prefetch(idx, in->prefetch_count, &v) < 0);
	for (uint32_t i = 0; i < in->view_count; i++) {
		struct slimfs_view vw;
		char name[SLIMFS_NAME_MAX + 1];

		FUZZ_CHECK(slimfs_index_view(idx, i, &vw) == 0);
		FUZZ_CHECK(vw.name_len >= 1 && vw.name_len <= SLIMFS_NAME_MAX);
		memcpy(name, vw.name, vw.name_len);
		name[vw.name_len] = '\0';
		/* "full" is the built-in name; duplicates find the first */
		if (strcmp(name, "full") != 0) {
			FUZZ_CHECK(slimfs_index_view_find(idx, name, &v) == 0);
			FUZZ_CHECK(v <= i);
		}
	}
	FUZZ_CHECK(slimfs_index_view_find(idx, "full", &v) == 0 && v == SLIMFS_VIEW_NONE);
	if (in->default_view != SLIMFS_VIEW_NONE)
		FUZZ_CHECK(in->default_view < in->view_count);

	/* path resolution: the root, "..", and every entry of the root */
	{
		static const char *const paths[] = {"",		"/",	 ".",		"..",
						    "/./..//.", "a/b/c", "/etc/passwd", "x/../y"};
		struct slimfs_inode root;

		for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
			uint32_t ino;
			int r = slimfs_index_resolve(idx, paths[i], &ino);

			FUZZ_CHECK(r == 0 || r == -ENOENT || r == -ENOTDIR);
			if (r == 0)
				FUZZ_CHECK(ino < in->inode_count);
			if (i < 5)
				FUZZ_CHECK(r == 0 && ino == 0);
		}
		FUZZ_CHECK(slimfs_index_inode(idx, 0, &root) == 0 && S_ISDIR(root.mode));
		for (uint32_t i = 0; i < root.count && i < 64; i++) {
			struct slimfs_dirent de;
			char path[SLIMFS_NAME_MAX + 8];
			uint32_t ino;

			FUZZ_CHECK(slimfs_index_dirent(idx, &root, i, &de) == 0);
			path[0] = '/';
			memcpy(path + 1, de.name, de.name_len);
			path[1 + de.name_len] = '\0';
			FUZZ_CHECK(slimfs_index_resolve(idx, path, &ino) == 0 && ino == de.ino);
		}
	}
}

/*
 * A mutated index almost never keeps a valid checksum, which would stop the
 * fuzzer at the first check. So each input runs twice: as is, and with the
 * checksum recomputed (in a copy of the exact size), which reaches the
 * structure checks and the accessors.
 */
static void fix_checksum(uint8_t *b, size_t size)
{
	const size_t coff = offsetof(struct slimfs_disk_super, checksum);
	uint64_t isz, sum;

	if (size < SLIMFS_SUPER_SIZE)
		return;
	isz = get_le64(b + offsetof(struct slimfs_disk_super, index_size));
	if (isz < SLIMFS_SUPER_SIZE || isz > size)
		return;
	memset(b + coff, 0, 8);
	sum = htole64(XXH3_64bits(b, (size_t)isz));
	memcpy(b + coff, &sum, 8);
}

static void one(const uint8_t *data, size_t size)
{
	struct slimfs_index *idx = NULL;
	uint64_t isz, doff;
	int r;

	r = slimfs_index_peek(data, size, &isz, &doff);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EUCLEAN);
	r = slimfs_index_open_mem(data, size, &idx);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EUCLEAN ||
		   r == -ENOMEM);
	FUZZ_CHECK((r == 0) == (idx != NULL));
	if (r == 0)
		walk_everything(idx);
	slimfs_index_free(idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	one(data, size);
	if (size < SLIMFS_SUPER_SIZE)
		return 0;
	copy = malloc(size);
	FUZZ_CHECK(copy);
	memcpy(copy, data, size);
	fix_checksum(copy, size);
	if (memcmp(copy, data, size) != 0)
		one(copy, size);
	free(copy);
	return 0;
}
