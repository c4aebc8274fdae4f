// SPDX-License-Identifier: MIT
/* Tree -> image -> reader, with every difference a FUZZ_CHECK failure. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/util.h"
#include "fuzz-image.h"
#include "fuzz.h"

/* Files above this are compared by metadata only (sparse giants). */
#define CONTENT_CHECK_MAX (8u << 20)

void fuzz_build_opts(struct slimfs_build_opts *o)
{
	slimfs_build_opts_init(o);
	o->threads = 1;
	o->zstd_level = 1;
	o->cdc_min = 64;
	o->cdc_avg = 256;
	o->cdc_max = 1024;
	o->small_file_max = 128;
}

int fuzz_write(struct slimfs_tree *t, const struct slimfs_build_opts *o, uint8_t **buf, size_t *len)
{
	struct slimfs_write_args wa = {.o = o, .default_view = -1};
	_cleanup_close_ int fd = memfd_create("slimfs-fuzz", MFD_CLOEXEC);
	struct slimfs_build_stats st;
	struct stat sb;
	uint8_t *b;
	int r;

	*buf = NULL;
	FUZZ_CHECK(fd >= 0);
	r = slimfs_write_image(t, &wa, fd, &st);
	if (r < 0)
		return r;
	FUZZ_CHECK(fstat(fd, &sb) == 0);
	FUZZ_CHECK((uint64_t)sb.st_size == st.image_size);
	b = malloc(sb.st_size ? (size_t)sb.st_size : 1);
	FUZZ_CHECK(b);
	FUZZ_CHECK(slimfs_pread_all(fd, b, (size_t)sb.st_size, 0) == 0);
	*buf = b;
	*len = (size_t)sb.st_size;
	return 0;
}

/* The whole content of a regular file of the image. */
static uint8_t *read_file(const struct slimfs_index *idx, const struct slimfs_inode *ino,
			  const uint8_t *img, size_t len, ZSTD_DCtx *dctx)
{
	static uint8_t *plain; /* one buffer for the whole run: big mallocs are slow under ASan */
	uint8_t *out = calloc(1, ino->size ? (size_t)ino->size : 1);

	if (!plain)
		plain = malloc(SLIMFS_CHUNK_MAX);
	FUZZ_CHECK(out && plain);
	for (uint32_t i = 0; i < ino->count; i++) {
		struct slimfs_extent e;
		struct slimfs_chunk c;

		FUZZ_CHECK(slimfs_index_extent(idx, ino, i, &e) == 0);
		FUZZ_CHECK(slimfs_index_chunk(idx, e.chunk, &c) == 0);
		FUZZ_CHECK(c.off <= len && c.csize <= len - c.off);
		FUZZ_CHECK(slimfs_chunk_decode(&c, img + c.off, c.csize, plain,
					       (struct ZSTD_DCtx_s *)dctx) == 0);
		memcpy(out + e.file_off, plain + e.chunk_off, e.len);
	}
	return out;
}

static uint8_t *tree_content(struct slimfs_tree *t, const struct slimfs_tinode *ti)
{
	uint8_t *out = calloc(1, ti->data.size ? (size_t)ti->data.size : 1);

	FUZZ_CHECK(out);
	for (uint32_t i = 0; i < ti->data.nseg; i++) {
		const struct slimfs_tseg *s = &ti->data.seg[i];

		FUZZ_CHECK(ti->data.from_spool && t->spool_fd >= 0);
		FUZZ_CHECK(slimfs_pread_all(t->spool_fd, out + s->file_off, (size_t)s->len,
					    s->src_off) == 0);
	}
	return out;
}

static void check_node(struct slimfs_tree *t, const struct slimfs_index *idx,
		       const struct slimfs_tinode *ti, const struct slimfs_inode *ino,
		       const uint8_t *img, size_t len, ZSTD_DCtx *dctx)
{
	FUZZ_CHECK(ino->mode == ti->mode);
	FUZZ_CHECK(ino->uid == ti->uid && ino->gid == ti->gid);
	FUZZ_CHECK(ino->mtime == ti->mtime && ino->mtime_ns == ti->mtime_ns);
	FUZZ_CHECK(ino->xattr_count == ti->nxattrs);
	for (uint32_t i = 0; i < ti->nxattrs; i++) {
		struct slimfs_xattr x;

		FUZZ_CHECK(slimfs_index_getxattr(idx, ino, ti->xattrs[i].name, &x) == 0);
		FUZZ_CHECK(x.value_len == ti->xattrs[i].value_len);
		FUZZ_CHECK(!x.value_len || memcmp(x.value, ti->xattrs[i].value, x.value_len) == 0);
	}
	switch (ti->mode & S_IFMT) {
	case S_IFREG:
		FUZZ_CHECK(ino->size == ti->data.size);
		if (ino->size <= CONTENT_CHECK_MAX) {
			uint8_t *a = read_file(idx, ino, img, len, dctx);
			uint8_t *b = tree_content(t, ti);

			FUZZ_CHECK(memcmp(a, b, (size_t)ino->size) == 0);
			free(a);
			free(b);
		}
		break;
	case S_IFLNK:
		FUZZ_CHECK(ti->target && ino->target_len == strlen(ti->target));
		FUZZ_CHECK(memcmp(ino->target, ti->target, ino->target_len) == 0);
		break;
	case S_IFCHR:
	case S_IFBLK:
		FUZZ_CHECK(ino->rdev == ti->rdev);
		break;
	default:
		break;
	}
}

struct pair {
	struct slimfs_tnode *node;
	uint32_t id;
};

void fuzz_check_image(struct slimfs_tree *t, const uint8_t *img, size_t len)
{
	struct slimfs_index *idx = NULL;
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct pair *stack = NULL;
	size_t n = 0, cap = 0;
	uint64_t seen = 0;
	int r;

	FUZZ_CHECK(dctx);
	r = slimfs_index_open_mem(img, len, &idx);
	if (r < 0)
		fprintf(stderr, "fuzz: the writer's image does not open: %s\n", strerror(-r));
	FUZZ_CHECK(r == 0);
	stack = malloc(sizeof(*stack) * (cap = 64));
	FUZZ_CHECK(stack);
	stack[n++] = (struct pair){t->root, 0};
	while (n) {
		struct pair p = stack[--n];
		struct slimfs_tnode **kids = NULL;
		struct slimfs_inode ino;
		uint32_t nk = 0;

		seen++;
		FUZZ_CHECK(slimfs_index_inode(idx, p.id, &ino) == 0);
		check_node(t, idx, p.node->ino, &ino, img, len, dctx);
		if (!S_ISDIR(p.node->ino->mode))
			continue;
		FUZZ_CHECK(slimfs_tree_sorted_children(p.node, &kids, &nk) == 0);
		FUZZ_CHECK(ino.count == nk);
		for (uint32_t i = 0; i < nk; i++) {
			struct slimfs_dirent de;

			FUZZ_CHECK(slimfs_index_dirent(idx, &ino, i, &de) == 0);
			FUZZ_CHECK(de.name_len == kids[i]->name_len &&
				   memcmp(de.name, kids[i]->name, de.name_len) == 0);
			if (n == cap) {
				stack = realloc(stack, sizeof(*stack) * (cap *= 2));
				FUZZ_CHECK(stack);
			}
			stack[n++] = (struct pair){kids[i], de.ino};
		}
		free(kids);
	}
	FUZZ_CHECK(seen == t->nodes);
	free(stack);
	slimfs_index_free(idx);
	ZSTD_freeDCtx(dctx);
}
