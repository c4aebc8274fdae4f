/* SPDX-License-Identifier: MIT */
/*
 * Reader API for slimfs images. The index is untrusted input: open checks
 * the superblock, every section bound and every record (offsets, counts,
 * sort order, tree shape) once, so that the accessors below are O(1) or
 * O(log n) and cannot read outside the buffer. All functions return 0 or a
 * negative errno:
 *   -EBADMSG          bad magic or checksum
 *   -EPROTONOSUPPORT  another major version, or an unknown incompat feature
 *   -EUCLEAN          a structure is corrupt (out of bounds, unsorted, cycle)
 *   -ENOENT           no such entry (lookup), -ENODATA no such xattr
 *   -ENOMEM
 */
#ifndef SLIMFS_INDEX_H
#define SLIMFS_INDEX_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct slimfs_index;

/* Decoded superblock. */
struct slimfs_info {
	uint16_t version_major, version_minor;
	uint32_t feature_incompat, feature_compat;
	uint32_t cdc_min, cdc_avg, cdc_max;
	int32_t zstd_level;
	uint32_t small_file_max;
	uint32_t default_view;			  /* SLIMFS_VIEW_NONE: no default, full view */
	uint64_t index_size, data_off, data_size; /* index_size: stored bytes */
	uint64_t index_plain_size;		  /* decompressed (ZINDEX), else index_size */
	uint64_t total_bytes, entry_count;
	uint64_t inode_count, dirent_count, xattr_count, chunk_count;
	uint64_t extent_count, view_count, prefetch_count;
	const char *config; /* borrowed; OCI config JSON, not NUL-terminated */
	size_t config_len;
};

struct slimfs_inode {
	uint32_t id;
	uint32_t mode, uid, gid, nlink;
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_ns;
	uint32_t views;
	uint64_t rdev;	       /* devices */
	uint32_t first, count; /* extents (REG) or dirents (DIR) */
	uint32_t xattr_start, xattr_count;
	uint32_t parent;
	const char *target; /* borrowed, symlinks only, not NUL-terminated */
	uint32_t target_len;
};

struct slimfs_dirent {
	const char *name; /* borrowed, not NUL-terminated */
	uint32_t name_len;
	uint32_t ino;
};

struct slimfs_xattr {
	const char *name, *value; /* borrowed, not NUL-terminated */
	uint32_t name_len, value_len;
};

struct slimfs_chunk {
	const uint8_t *id;     /* 16 bytes, borrowed */
	const uint8_t *sha256; /* 32 bytes, borrowed */
	uint64_t off;	       /* absolute offset in the image file */
	uint32_t csize, usize;
};

struct slimfs_extent {
	uint64_t file_off;
	uint32_t chunk, chunk_off, len;
};

struct slimfs_view {
	const char *name; /* borrowed, not NUL-terminated */
	uint32_t name_len;
	uint32_t flags;
};

/* Size of the superblock: read this much first to learn index_size. */
#define SLIMFS_SUPER_SIZE 256u

/*
 * Peek at a superblock (len >= SLIMFS_SUPER_SIZE): checks magic and version,
 * returns the index size and data offset. No checksum check (that needs the
 * whole index).
 */
int slimfs_index_peek(const void *buf, size_t len, uint64_t *index_size, uint64_t *data_off);

/*
 * Opens an index held in buf[0, len) (len >= index_size). buf is borrowed and
 * must outlive the index. A compressed index (SLIMFS_FEATURE_INCOMPAT_ZINDEX)
 * is checked (checksum of the stored bytes, frame and size limits), then
 * decompressed into memory the index owns. *out is set only on success.
 */
int slimfs_index_open_mem(const void *buf, size_t len, struct slimfs_index **out);
/*
 * The same, from a caller that has computed the SHA-256 of buf[0, len) already
 * (to check a pinned digest before anything is parsed): sha256, if not NULL,
 * becomes the index's digest when len is the index size.
 */
int slimfs_index_open_mem_hashed(const void *buf, size_t len, const uint8_t *sha256,
				 struct slimfs_index **out);
void slimfs_index_free(struct slimfs_index *idx);

const struct slimfs_info *slimfs_index_info(const struct slimfs_index *idx);
/* SHA-256 of the stored index bytes (computed on the first call; thread-safe),
 * and as "sha256:<64 hex>". */
const uint8_t *slimfs_index_digest(const struct slimfs_index *idx);
void slimfs_index_digest_str(const struct slimfs_index *idx, char out[72]);

int slimfs_index_inode(const struct slimfs_index *idx, uint32_t id, struct slimfs_inode *out);
/* i-th entry of directory dir, i < dir's count. */
int slimfs_index_dirent(const struct slimfs_index *idx, const struct slimfs_inode *dir, uint32_t i,
			struct slimfs_dirent *out);
/* Binary search in dir; -ENOTDIR if dir is not a directory, -ENOENT. */
int slimfs_index_lookup(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			const char *name, size_t name_len, uint32_t *ino);
/* The same, also giving the entry's index in the DIRENTS section (unique per path). */
int slimfs_index_lookup_pos(const struct slimfs_index *idx, const struct slimfs_inode *dir,
			    const char *name, size_t name_len, uint32_t *ino, uint64_t *pos);
/* Resolves an absolute or root-relative path without following symlinks. */
int slimfs_index_resolve(const struct slimfs_index *idx, const char *path, uint32_t *ino);
/* The same, following symlinks (the last one too) as the kernel would with the
 * image as the root: absolute targets from the root, ".." at the root stays
 * there; -ELOOP past SLIMFS_RESOLVE_HOPS_MAX symlinks, -ENAMETOOLONG. */
#define SLIMFS_RESOLVE_HOPS_MAX 40
#define SLIMFS_RESOLVE_PATH_MAX 4096
int slimfs_index_resolve_follow(const struct slimfs_index *idx, const char *path, uint32_t *ino);

int slimfs_index_xattr(const struct slimfs_index *idx, const struct slimfs_inode *ino, uint32_t i,
		       struct slimfs_xattr *out);
int slimfs_index_getxattr(const struct slimfs_index *idx, const struct slimfs_inode *ino,
			  const char *name, struct slimfs_xattr *out);

int slimfs_index_chunk(const struct slimfs_index *idx, uint32_t i, struct slimfs_chunk *out);
int slimfs_index_extent(const struct slimfs_index *idx, const struct slimfs_inode *ino, uint32_t i,
			struct slimfs_extent *out);
/*
 * Index (relative to the file's first extent) of the first extent that ends
 * after off; equals ino->count when none does.
 */
uint32_t slimfs_index_extent_find(const struct slimfs_index *idx, const struct slimfs_inode *ino,
				  uint64_t off);

/*
 * The pieces of file bytes [off, end) of a regular file (end is clipped to
 * its size), in file order: each extent that overlaps the range, clipped to
 * it, and with SLIMFS_EXTENT_HOLES also the holes between them (zeros: no
 * extent covers them). The first extent is found by binary search.
 *
 *	struct slimfs_extent_iter it;
 *
 *	slimfs_extent_iter_init(&it, idx, ino, off, end, 0);
 *	while ((r = slimfs_extent_next(&it)) > 0)
 *		copy it.to - it.from bytes from chunk it.x.chunk at it.chunk_from
 *
 * The extents are as the index has them: before the bytes of x.chunk are
 * used, check x against the chunk's decoded size (slimfs_extent_check).
 */
#define SLIMFS_EXTENT_HOLES 0x1u
struct slimfs_extent_iter {
	/* The piece slimfs_extent_next returned 1 for. */
	uint64_t from, to;	/* file bytes [from, to), within [off, end) */
	bool hole;		/* zeros; x and chunk_from are not set */
	struct slimfs_extent x; /* the extent (whole, unclipped) */
	uint32_t chunk_from;	/* where from is in x.chunk */
	/* Private. */
	const struct slimfs_index *idx;
	const struct slimfs_inode *ino;
	uint64_t pos, end;
	uint32_t i;	/* next extent to look at */
	bool holes;	/* SLIMFS_EXTENT_HOLES */
	bool x_pending; /* x (extent i) was read, a hole before it returned */
};
void slimfs_extent_iter_init(struct slimfs_extent_iter *it, const struct slimfs_index *idx,
			     const struct slimfs_inode *ino, uint64_t off, uint64_t end,
			     unsigned flags);
/*
 * 1 with the next piece in it, 0 when the range is done (at once when off >=
 * end or off >= the size), or -EINVAL when an extent cannot be read. An inode
 * whose extents are not in the index (not a regular file, a bogus range) has
 * none: all its bytes are a hole.
 */
int slimfs_extent_next(struct slimfs_extent_iter *it);

/*
 * Whether extent x lies within its chunk, whose decoded size is chunk_len
 * (the chunk's usize, or the length of its decoded bytes at hand): 0, or
 * -EUCLEAN when not (a corrupt image: the bytes must not be used). Open
 * refuses an index with such an extent; readers check again before they
 * copy from a decoded chunk.
 */
static inline int slimfs_extent_check(const struct slimfs_extent *x, uint64_t chunk_len)
{
	return (uint64_t)x->chunk_off + x->len <= chunk_len ? 0 : -EUCLEAN;
}

int slimfs_index_view(const struct slimfs_index *idx, uint32_t i, struct slimfs_view *out);
/* View by name: "full" gives SLIMFS_VIEW_NONE; -ENOENT when unknown. */
int slimfs_index_view_find(const struct slimfs_index *idx, const char *name, uint32_t *view);
/* i-th chunk index of the prefetch order. */
int slimfs_index_prefetch(const struct slimfs_index *idx, uint64_t i, uint32_t *chunk);

static inline bool slimfs_inode_in_view(const struct slimfs_inode *ino, uint32_t view)
{
	return view >= 32 || (ino->views >> view) & 1u;
}

/*
 * Chunk decoding. Verifies the compressed frame against the chunk's SHA-256,
 * checks the frame's content size, decompresses into out (>= usize bytes)
 * and checks the XXH3-128 id. dctx is the caller's (one per thread).
 * Returns 0, -EBADMSG (digest or id mismatch, corrupt frame) or -EUCLEAN.
 */
struct ZSTD_DCtx_s;
int slimfs_chunk_decode(const struct slimfs_chunk *c, const void *frame, size_t frame_len,
			void *out, struct ZSTD_DCtx_s *dctx);
/*
 * With SLIMFS_DECODE_ID_KNOWN, as slimfs_chunk_decode without the id check:
 * for a chunk whose decoding passed it before, in the same process. The frame
 * still has to match its SHA-256, so it is the same frame, and zstd decodes
 * the same frame to the same bytes: the id would match again. A memory cache
 * that decodes a chunk again after evicting it saves hashing every byte again.
 */
#define SLIMFS_DECODE_ID_KNOWN 0x1u
/*
 * With SLIMFS_DECODE_FRAME_KNOWN, without the SHA-256 check of the frame, and
 * always with the id check (SLIMFS_DECODE_ID_KNOWN then does nothing): for
 * bytes that are known to be those of a frame whose SHA-256 matched before
 * (a local image file under a lease that never broke, fetch.h). The id
 * still catches what a disk may do to them.
 */
#define SLIMFS_DECODE_FRAME_KNOWN 0x2u
int slimfs_chunk_decode_flags(const struct slimfs_chunk *c, const void *frame, size_t frame_len,
			      void *out, struct ZSTD_DCtx_s *dctx, unsigned flags);
/* Only the SHA-256 check of a compressed frame (for caches). */
int slimfs_chunk_verify_frame(const struct slimfs_chunk *c, const void *frame, size_t frame_len);

#endif
