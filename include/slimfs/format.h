/* SPDX-License-Identifier: MIT */
/*
 * slimfs on-disk format, version 1.1. This header is the specification in
 * code; index/FORMAT.md explains it in prose. All integers are little-endian
 * and fixed-width; no structure has implicit padding (a unit test compiles
 * this header with -Werror=padded).
 *
 * An image file is
 *
 *   [ index: superblock | sections ... ][ zero pad to 4096 ][ data ]
 *
 * The index is everything in [0, index_size). Its SHA-256 is the image's
 * root of trust ("sha256:<hex>", printed by build and inspect). With
 * SLIMFS_FEATURE_INCOMPAT_ZINDEX the sections are stored as one zstd frame
 * after the superblock (see there); SHA-256, checksum and index_size are
 * then of the stored, compressed bytes. The data
 * area [data_off, data_off + data_size) is a concatenation of independent
 * zstd frames, one per chunk, so it is also a valid multi-frame .zst file.
 *
 * Chunk ids are XXH3-128 of the uncompressed chunk (dedup key, and a check
 * after decompression). Chunk digests are SHA-256 of the compressed frame:
 * a fetched frame is verified before it is decompressed or cached, so an
 * untrusted store (HTTP server, registry, shared cache) cannot make a reader
 * see wrong bytes.
 *
 * Version history: 1.0 initial. 1.1 adds SLIMFS_FEATURE_INCOMPAT_ZINDEX (the
 * compressed index); an image without the bit is a 1.0 image, and writers
 * set version_minor to 0 for it.
 */
#ifndef SLIMFS_FORMAT_H
#define SLIMFS_FORMAT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

typedef uint16_t slimfs_le16;
typedef uint32_t slimfs_le32;
typedef uint64_t slimfs_le64;

#define SLIMFS_MAGIC	     "SLIMFS\x89\n"
#define SLIMFS_MAGIC_LEN     8
#define SLIMFS_VERSION_MAJOR 1
#define SLIMFS_VERSION_MINOR 1

/* Incompatible features: a reader refuses an image with a bit it does not know. */
#define SLIMFS_FEATURE_INCOMPAT_ZINDEX	  0x1u /* since 1.1: sections in one zstd frame */
#define SLIMFS_FEATURE_INCOMPAT_SUPPORTED SLIMFS_FEATURE_INCOMPAT_ZINDEX
/* Compatible features: a reader may ignore them. */
#define SLIMFS_FEATURE_COMPAT_PRUNED 0x1u /* built with --prune */

#define SLIMFS_DATA_ALIGN      4096u	  /* data_off is a multiple of this */
#define SLIMFS_CHUNK_MAX       (4u << 20) /* no chunk is larger, plain or compressed */
#define SLIMFS_NAME_MAX	       255u	  /* bytes in one directory entry name */
#define SLIMFS_VIEWS_MAX       32u	  /* named views (one bit each in inode.views) */
#define SLIMFS_XATTR_NAME_MAX  255u
#define SLIMFS_XATTR_VALUE_MAX 65536u

/*
 * Compressed index (SLIMFS_FEATURE_INCOMPAT_ZINDEX). The stored index is
 *
 *   [0, 256)           the superblock, plain (as without the bit)
 *   [256, index_size)  exactly one zstd frame (RFC 8878), nothing after it;
 *                      its header records the content size, which is
 *                      plain_size - 256, and it may carry a content checksum
 *
 * and the plain index is the superblock followed by the frame's content:
 * [0, plain_size). Section offsets, config_off and every record refer to the
 * plain index, which is laid out exactly as an index without the bit
 * (sections 8-aligned from 256 on). index_size, data_off, checksum and the
 * image digest are of the stored bytes. A reader checks the checksum, then
 * bounds the content size before it allocates: at most
 * SLIMFS_ZINDEX_PLAIN_MAX bytes of plain index, and at most
 * SLIMFS_ZINDEX_RATIO_MAX times the frame's size (no writer produces more;
 * a writer stores the index plain when it would).
 */
#define SLIMFS_ZINDEX_PLAIN_MAX (1ull << 30)
#define SLIMFS_ZINDEX_RATIO_MAX 256u

/* Sections, in the order they are written; each starts 8-byte aligned. */
enum slimfs_section {
	SLIMFS_SEC_INODES = 0,	 /* struct slimfs_disk_inode[count]; id 0 is the root */
	SLIMFS_SEC_DIRENTS = 1,	 /* struct slimfs_disk_dirent[count] */
	SLIMFS_SEC_STRINGS = 2,	 /* bytes[count]: names, link targets, xattrs, json */
	SLIMFS_SEC_XATTRS = 3,	 /* struct slimfs_disk_xattr[count] */
	SLIMFS_SEC_CHUNKS = 4,	 /* struct slimfs_disk_chunk[count], in data order */
	SLIMFS_SEC_EXTENTS = 5,	 /* struct slimfs_disk_extent[count] */
	SLIMFS_SEC_VIEWS = 6,	 /* struct slimfs_disk_view[count] */
	SLIMFS_SEC_PREFETCH = 7, /* slimfs_le32[count]: chunk indices, fetch order */
	SLIMFS_SEC_COUNT = 8,
};

struct slimfs_disk_section {
	slimfs_le64 off;   /* from the start of the file */
	slimfs_le64 count; /* records (bytes for STRINGS) */
};

/*
 * Superblock at offset 0, 256 bytes.
 *   OFF SIZE FIELD
 *     0    8 magic "SLIMFS\x89\n"
 *     8    2 version_major (readers refuse another major)
 *    10    2 version_minor (1 with ZINDEX, else 0; informative)
 *    12    4 feature_incompat (SLIMFS_FEATURE_INCOMPAT_*)
 *    16    4 feature_compat
 *    20   20 record sizes: inode, dirent, xattr, chunk, extent
 *    40   12 cdc_min, cdc_avg, cdc_max: chunker parameters (bytes)
 *    52    4 zstd_level (signed)
 *    56    4 small_file_max: regular files up to this size are packed
 *    60    4 default_view: index into VIEWS, or SLIMFS_VIEW_NONE (full view)
 *    64    8 index_size (stored), 72 data_off, 80 data_size
 *    88    8 total_bytes (sum of regular file sizes), 96 entry_count
 *   104    8 config_off, 112 config_len: OCI image config JSON (in STRINGS)
 *   120  128 sections[8]: (offset, count) each, offsets in the plain index
 *   248    8 checksum: XXH3-64 of the stored [0, index_size) with this field
 *            zeroed
 */
struct slimfs_disk_super {
	uint8_t magic[SLIMFS_MAGIC_LEN];
	slimfs_le16 version_major;
	slimfs_le16 version_minor;
	slimfs_le32 feature_incompat;
	slimfs_le32 feature_compat;
	slimfs_le32 inode_size;
	slimfs_le32 dirent_size;
	slimfs_le32 xattr_size;
	slimfs_le32 chunk_size;
	slimfs_le32 extent_size;
	slimfs_le32 cdc_min;
	slimfs_le32 cdc_avg;
	slimfs_le32 cdc_max;
	slimfs_le32 zstd_level;
	slimfs_le32 small_file_max;
	slimfs_le32 default_view;
	slimfs_le64 index_size;
	slimfs_le64 data_off;
	slimfs_le64 data_size;
	slimfs_le64 total_bytes;
	slimfs_le64 entry_count;
	slimfs_le64 config_off; /* into STRINGS */
	slimfs_le64 config_len;
	struct slimfs_disk_section sections[SLIMFS_SEC_COUNT];
	slimfs_le64 checksum;
};
static_assert(sizeof(struct slimfs_disk_super) == 256, "super is 256 bytes");
static_assert(offsetof(struct slimfs_disk_super, index_size) == 64, "layout");
static_assert(offsetof(struct slimfs_disk_super, sections) == 120, "layout");
static_assert(offsetof(struct slimfs_disk_super, checksum) == 248, "layout");

/*
 * Inode, 64 bytes. The meaning of data/count depends on the type:
 *   S_IFREG: data = first extent index, count = extent count (sorted by file_off)
 *   S_IFDIR: data = first dirent index, count = entry count (sorted by name)
 *   S_IFLNK: data = target offset in STRINGS, count = target length
 *   S_IFCHR, S_IFBLK: data = rdev (Linux dev_t encoding), count = 0
 *   S_IFIFO, S_IFSOCK: data = 0, count = 0
 * parent: for directories, the id of the parent directory (root: 0);
 * for other types, the id of the directory of the first link.
 * views: bit i set = visible in view i (the full view shows everything).
 */
struct slimfs_disk_inode {
	slimfs_le32 mode; /* S_IFMT | permission bits incl. suid/sgid/sticky */
	slimfs_le32 uid;
	slimfs_le32 gid;
	slimfs_le32 nlink;
	slimfs_le64 size;
	slimfs_le64 mtime;    /* seconds since the epoch, signed */
	slimfs_le32 mtime_ns; /* < 1e9 */
	slimfs_le32 views;
	slimfs_le64 data;
	slimfs_le32 count;
	slimfs_le32 xattr_start; /* index into XATTRS */
	slimfs_le32 xattr_count;
	slimfs_le32 parent;
};
static_assert(sizeof(struct slimfs_disk_inode) == 64, "inode is 64 bytes");

/* Directory entry, 16 bytes; "." and ".." are not stored. */
struct slimfs_disk_dirent {
	slimfs_le64 name_off; /* into STRINGS */
	slimfs_le32 name_len; /* 1..SLIMFS_NAME_MAX */
	slimfs_le32 ino;      /* inode id */
};
static_assert(sizeof(struct slimfs_disk_dirent) == 16, "dirent is 16 bytes");

/* Extended attribute, 24 bytes; sorted by name within an inode. */
struct slimfs_disk_xattr {
	slimfs_le64 name_off; /* into STRINGS, full name ("security.capability") */
	slimfs_le64 value_off;
	slimfs_le32 name_len;
	slimfs_le32 value_len;
};
static_assert(sizeof(struct slimfs_disk_xattr) == 24, "xattr is 24 bytes");

/* Chunk, 64 bytes. Chunks are stored in data order: data_off[i] ascending. */
struct slimfs_disk_chunk {
	uint8_t id[16];	    /* XXH3-128 of the plain bytes, big-endian canonical */
	uint8_t sha256[32]; /* of the compressed frame */
	slimfs_le64 off;    /* from data_off */
	slimfs_le32 csize;  /* compressed frame size */
	slimfs_le32 usize;  /* plain size, <= SLIMFS_CHUNK_MAX */
};
static_assert(sizeof(struct slimfs_disk_chunk) == 64, "chunk is 64 bytes");

/*
 * Extent, 24 bytes: bytes [file_off, file_off + len) of a file are bytes
 * [chunk_off, chunk_off + len) of chunk `chunk`. A file's extents are sorted
 * by file_off and do not overlap; what no extent covers is a hole (zeros).
 */
struct slimfs_disk_extent {
	slimfs_le64 file_off;
	slimfs_le32 chunk;
	slimfs_le32 chunk_off;
	slimfs_le32 len;
	slimfs_le32 reserved; /* 0 */
};
static_assert(sizeof(struct slimfs_disk_extent) == 24, "extent is 24 bytes");

/* Named view, 16 bytes; the view's bit is its index in this table. */
struct slimfs_disk_view {
	slimfs_le64 name_off; /* into STRINGS */
	slimfs_le32 name_len;
	slimfs_le32 flags; /* SLIMFS_VIEW_DEFAULT */
};
static_assert(sizeof(struct slimfs_disk_view) == 16, "view is 16 bytes");
#define SLIMFS_VIEW_DEFAULT 0x1u
#define SLIMFS_VIEW_NONE    0xffffffffu

#endif
