// SPDX-License-Identifier: MIT
/* Opening an image through a backend, and simple uncached reads. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "image.h"
#include "slimfs/format.h"
#include "slimfs/util.h"

/* An index larger than this is refused before it is read (a hostile server). */
#define INDEX_MAX (1ull << 32)

int slimfs_image_open(const char *src, const struct slimfs_fetch_opts *fo, const uint8_t *digest,
		      struct slimfs_image **out)
{
	struct slimfs_image *img;
	uint8_t super[SLIMFS_SUPER_SIZE];
	uint64_t index_size, data_off;
	int fd, r;

	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->source = strdup(src);
	if (!img->source) {
		r = -ENOMEM;
		goto fail;
	}
	r = slimfs_backend_open(src, fo, &img->backend);
	if (r < 0)
		goto fail;
	if (img->backend->size && img->backend->size < SLIMFS_SUPER_SIZE) {
		log_error("'%s': not a slimfs image (%llu bytes is too short)", src,
			  (unsigned long long)img->backend->size);
		r = -EBADMSG;
		goto fail;
	}
	r = slimfs_backend_read(img->backend, 0, super, sizeof(super));
	if (r < 0) {
		log_error_errno(r, "'%s': cannot read the superblock", src);
		goto fail;
	}
	r = slimfs_index_peek(super, sizeof(super), &index_size, &data_off);
	if (r < 0) {
		log_error_errno(r, "'%s': not a usable slimfs image", src);
		goto fail;
	}
	if (index_size > INDEX_MAX || (img->backend->size && index_size > img->backend->size)) {
		log_error("'%s': index size %llu is larger than the image", src,
			  (unsigned long long)index_size);
		r = -EUCLEAN;
		goto fail;
	}
	img->index_len = (size_t)index_size;
	fd = slimfs_backend_local_fd(img->backend);
	if (fd >= 0) {
		img->index_buf = mmap(NULL, img->index_len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (img->index_buf == MAP_FAILED) {
			img->index_buf = NULL;
			r = log_error_errno(-errno, "'%s': cannot map the index", src);
			goto fail;
		}
		img->index_mapped = true;
	} else {
		img->index_buf = malloc(img->index_len);
		if (!img->index_buf) {
			r = -ENOMEM;
			goto fail;
		}
		r = slimfs_backend_read(img->backend, 0, img->index_buf, img->index_len);
		if (r < 0) {
			log_error_errno(r, "'%s': cannot read the index", src);
			goto fail;
		}
	}
	if (!digest && img->backend->pinned)
		digest = img->backend->index_digest;
	r = slimfs_index_open_mem(img->index_buf, img->index_len, &img->idx);
	if (r < 0) {
		log_error_errno(r, "'%s': bad index", src);
		goto fail;
	}
	if (digest && memcmp(digest, slimfs_index_digest(img->idx), 32) != 0) {
		char want[65], have[72];

		slimfs_hex(digest, 32, want);
		slimfs_index_digest_str(img->idx, have);
		log_error("'%s': index digest is %s, expected sha256:%s", src, have, want);
		r = -EBADMSG;
		goto fail;
	}
	img->info = slimfs_index_info(img->idx);
	*out = img;
	return 0;
fail:
	slimfs_image_close(img);
	return r;
}

void slimfs_image_close(struct slimfs_image *img)
{
	if (!img)
		return;
	slimfs_index_free(img->idx);
	if (img->index_mapped)
		munmap(img->index_buf, img->index_len);
	else
		free(img->index_buf);
	slimfs_backend_free(img->backend);
	free(img->source);
	free(img);
}

int slimfs_image_fetch(struct slimfs_image *img, const struct slimfs_chunk *c, void *frame)
{
	return slimfs_backend_read(img->backend, c->off, frame, c->csize);
}

int slimfs_reader_init(struct slimfs_reader *r, struct slimfs_image *img)
{
	memset(r, 0, sizeof(*r));
	r->img = img;
	r->cached = UINT32_MAX;
	r->dctx = ZSTD_createDCtx();
	r->plain = malloc(SLIMFS_CHUNK_MAX);
	r->frame_cap = ZSTD_compressBound(SLIMFS_CHUNK_MAX);
	r->frame = malloc(r->frame_cap);
	if (!r->dctx || !r->plain || !r->frame) {
		slimfs_reader_fini(r);
		return -ENOMEM;
	}
	return 0;
}

void slimfs_reader_fini(struct slimfs_reader *r)
{
	ZSTD_freeDCtx(r->dctx);
	free(r->plain);
	free(r->frame);
	memset(r, 0, sizeof(*r));
}

int slimfs_reader_chunk(struct slimfs_reader *r, uint32_t i, const uint8_t **plain)
{
	struct slimfs_chunk c;
	int ret;

	if (r->cached == i) {
		*plain = r->plain;
		return 0;
	}
	ret = slimfs_index_chunk(r->img->idx, i, &c);
	if (ret < 0)
		return ret;
	if (c.csize > r->frame_cap)
		return -EUCLEAN;
	r->cached = UINT32_MAX;
	ret = slimfs_image_fetch(r->img, &c, r->frame);
	if (ret < 0)
		return log_error_errno(ret, "'%s': chunk %u: cannot read %u bytes at %llu",
				       r->img->source, i, c.csize, (unsigned long long)c.off);
	ret = slimfs_chunk_decode(&c, r->frame, c.csize, r->plain, r->dctx);
	if (ret < 0)
		return log_error_errno(ret, "'%s': chunk %u at %llu is corrupt", r->img->source, i,
				       (unsigned long long)c.off);
	r->cached = i;
	*plain = r->plain;
	return 0;
}

ssize_t slimfs_reader_pread(struct slimfs_reader *r, const struct slimfs_inode *ino, void *buf,
			    size_t len, uint64_t off)
{
	uint8_t *out = buf;
	uint64_t end;
	uint32_t e;

	if (off >= ino->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, ino->size - off);
	end = off + len;
	memset(out, 0, len);
	for (e = slimfs_index_extent_find(r->img->idx, ino, off); e < ino->count; e++) {
		struct slimfs_extent x;
		const uint8_t *plain;
		uint64_t from, to;
		int ret;

		ret = slimfs_index_extent(r->img->idx, ino, e, &x);
		if (ret < 0)
			return ret;
		if (x.file_off >= end)
			break;
		from = MAX(off, x.file_off);
		to = MIN(end, x.file_off + x.len);
		if (from >= to)
			continue;
		ret = slimfs_reader_chunk(r, x.chunk, &plain);
		if (ret < 0)
			return ret;
		memcpy(out + (from - off), plain + x.chunk_off + (from - x.file_off), to - from);
	}
	return (ssize_t)len;
}
