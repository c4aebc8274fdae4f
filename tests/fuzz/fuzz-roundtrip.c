// SPDX-License-Identifier: MIT
/*
 * Builder round trip: the input is a little program that builds a tree
 * (entries of every type, metadata, xattrs, sparse file data, hardlinks,
 * layers with whiteouts and opaque directories, slimfs_tree_set_at). The
 * tree is written twice, the two images must be byte-equal (determinism),
 * and the image must read back as exactly the tree.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "slimfs/util.h"
#include "fuzz-image.h"
#include "fuzz.h"

#define DATA_MAX (512u << 10) /* bytes of file data per input (CDC is slow instrumented) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	fuzz_spool_in_memory();
	return 0;
}

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t u16(struct in *in)
{
	uint32_t lo = u8(in);

	return lo | (uint32_t)u8(in) << 8;
}

static uint32_t u32(struct in *in)
{
	uint32_t lo = u16(in);

	return lo | u16(in) << 16;
}

static const char *name_of(uint8_t b)
{
	static char longname[256];
	static const char *const names[] = {
		"a", "b", "c", "dir", "f.txt", "\xff\x01", ".hidden", NULL,
	};

	if (!longname[0])
		memset(longname, 'n', 255);
	return names[b % 8] ? names[b % 8] : longname;
}

/* 1 to 3 components */
static void path_of(struct in *in, char *buf)
{
	uint8_t b = u8(in);
	unsigned n = 1 + b % 3;

	buf[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		if (i)
			strcat(buf, "/");
		strcat(buf, name_of(u8(in)));
	}
}

static void file_data(struct slimfs_tree *t, struct in *in, struct slimfs_tinode *ino,
		      size_t *budget)
{
	uint8_t nseg = u8(in) % 4;
	uint64_t off = 0;
	uint8_t *buf;

	ino->data.from_spool = true;
	for (uint8_t s = 0; s < nseg; s++) {
		uint64_t hole = 0;
		uint32_t len = u16(in);
		uint8_t mode = u8(in);
		uint64_t soff;
		struct slimfs_tseg *seg;

		if (u16(in) % 4 == 0) {
			hole = u16(in);
			hole <<= u8(in) % 12;
		}
		if (mode & 1)
			len <<= mode >> 5; /* up to 128 x */
		if (!len || len > *budget)
			break;
		*budget -= len;
		buf = malloc(len);
		FUZZ_CHECK(buf);
		if ((mode & 2) && in->n >= len) {
			memcpy(buf, in->p, len);
			in->p += len;
			in->n -= len;
		} else {
			/* a pattern: compressible, and repeated runs dedup */
			for (uint32_t i = 0; i < len; i++)
				buf[i] = (uint8_t)(mode + (mode & 4 ? i : i / 64));
		}
		FUZZ_CHECK(slimfs_tree_spool(t, buf, len, &soff) == 0);
		free(buf);
		seg = realloc(ino->data.seg, (ino->data.nseg + 1) * sizeof(*seg));
		FUZZ_CHECK(seg);
		ino->data.seg = seg;
		off += hole;
		seg[ino->data.nseg++] =
			(struct slimfs_tseg){.file_off = off, .len = len, .src_off = soff};
		off += len;
	}
	ino->data.size = off + (u8(in) % 8 == 0 ? u16(in) : 0); /* trailing hole */
}

static void build(struct slimfs_tree *t, struct in *in)
{
	char path[3 * 256 + 4], other[3 * 256 + 4];
	size_t budget = DATA_MAX;
	unsigned steps = 0;

	while (in->n && steps++ < 256) {
		uint8_t op = u8(in);
		struct slimfs_tinode *ino = NULL;
		struct slimfs_tnode *dir;
		uint32_t type = 0;

		path_of(in, path);
		switch (op % 12) {
		case 0:
		case 1:
			type = S_IFDIR;
			break;
		case 2:
		case 3:
		case 4:
			type = S_IFREG;
			break;
		case 5:
			type = S_IFLNK;
			break;
		case 6:
			type = u8(in) & 1 ? S_IFCHR : S_IFBLK;
			break;
		case 7:
			type = S_IFIFO;
			break;
		case 8:
			path_of(in, other);
			(void)slimfs_tree_link(t, path, other);
			continue;
		case 9:
			(void)slimfs_tree_remove(t, path, u8(in) & 1);
			continue;
		case 10:
			(void)slimfs_tree_clear_lower(t, path);
			continue;
		case 11:
			t->layer++;
			continue;
		}
		ino = slimfs_tinode_new(type | (u16(in) & 07777));
		FUZZ_CHECK(ino);
		ino->uid = u8(in);
		ino->gid = u8(in) % 2 ? u32(in) : 0;
		ino->mtime = (int64_t)((uint64_t)u32(in) << 32);
		ino->mtime |= u32(in);
		ino->mtime_ns = u32(in) % 1000000000u;
		for (uint8_t x = u8(in) % 4; x > 0; x--) {
			static const char *const xn[] = {"user.a", "security.capability",
							 "trusted.overlay.opaque", "user.b"};
			uint8_t vlen = u8(in);
			uint8_t v[255];

			for (unsigned i = 0; i < vlen; i++)
				v[i] = (uint8_t)(i * 7 + x);
			FUZZ_CHECK(slimfs_tinode_add_xattr(ino, xn[u8(in) % 4], v, vlen) == 0);
		}
		slimfs_tinode_sort_xattrs(ino);
		if (type == S_IFREG) {
			file_data(t, in, ino, &budget);
		} else if (type == S_IFLNK) {
			path_of(in, other);
			ino->target = strdup(other);
			FUZZ_CHECK(ino->target);
		} else if (type == S_IFCHR || type == S_IFBLK) {
			uint32_t major = u32(in);

			ino->rdev = makedev(major, u32(in));
		}
		/* half the entries through set_at on the looked-up parent */
		if (op & 0x80) {
			char *slash = strrchr(path, '/');

			dir = t->root;
			if (slash) {
				*slash = '\0';
				if (slimfs_tree_lookup(t, path, &dir) < 0)
					dir = NULL;
			}
			if (!dir ||
			    slimfs_tree_set_at(t, dir, slash ? slash + 1 : path, ino, NULL) < 0)
				slimfs_tinode_unref(ino);
		} else if (slimfs_tree_set(t, path, ino, NULL) < 0) {
			slimfs_tinode_unref(ino);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t cdc[][4] = {
		{64, 256, 1024, 128},
		{64, 64, 64, 0},
		{1024, 4096, 65536, 4096},
		{16384, 65536, 262144, 16384},
	};
	struct in in = {data, size};
	struct slimfs_build_opts o;
	struct slimfs_tree *t = NULL;
	uint8_t *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	uint8_t sel = u8(&in);
	int r;

	FUZZ_CHECK(slimfs_tree_new(&t) == 0);
	build(t, &in);

	fuzz_build_opts(&o);
	o.cdc_min = cdc[sel % 4][0];
	o.cdc_avg = cdc[sel % 4][1];
	o.cdc_max = cdc[sel % 4][2];
	o.small_file_max = cdc[sel % 4][3];
	o.zstd_level = (sel >> 2) % 4 - 1;
	r = fuzz_write(t, &o, &a, &alen);
	if (r < 0)
		fprintf(stderr, "fuzz: the writer refused a valid tree: %s\n", strerror(-r));
	FUZZ_CHECK(r == 0);
	o.threads = 2; /* output must not depend on threads */
	FUZZ_CHECK(fuzz_write(t, &o, &b, &blen) == 0);
	FUZZ_CHECK(alen == blen && memcmp(a, b, alen) == 0);
	fuzz_check_image(t, a, alen);
	free(a);
	free(b);
	slimfs_tree_free(t);
	return 0;
}
