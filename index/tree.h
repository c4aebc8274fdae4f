/* SPDX-License-Identifier: MIT */
/*
 * In-memory tree of the builder (internal to index/). Ingest fills it layer
 * by layer; views mark inodes; the writer serialises it.
 *
 * Ownership: the tree owns every node, inode, name and buffer reachable from
 * it. A tnode is one directory entry; a tinode is one inode (hardlinks: many
 * tnodes, one tinode, refcounted by nlink).
 */
#ifndef SLIMFS_TREE_H
#define SLIMFS_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A run of non-hole file data and where to read it. */
struct slimfs_tseg {
	uint64_t file_off, len;
	uint64_t src_off; /* offset in the spool (fd) or in the source file (path) */
};

/*
 * Content of a regular file. Exactly one source: the tree's spool file
 * (from_spool: tar data appended by ingest) or a file on disk (path: directory
 * ingest, read when the image is written). Segments are sorted, disjoint,
 * non-empty; bytes of [0, size) outside every segment are holes (zeros).
 */
struct slimfs_tcontent {
	uint64_t size;
	bool from_spool;
	char *path; /* owned, or NULL */
	uint32_t nseg;
	struct slimfs_tseg *seg; /* owned */
};

struct slimfs_txattr {
	char *name;  /* owned, NUL-terminated */
	void *value; /* owned */
	uint32_t value_len;
};

struct slimfs_tinode {
	uint32_t mode; /* S_IFMT | perms */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_ns;
	uint64_t rdev;
	char *target; /* symlink target, owned, NUL-terminated */
	struct slimfs_tcontent data;
	struct slimfs_txattr *xattrs; /* owned, sorted by name (slimfs_tinode_sort_xattrs) */
	uint32_t nxattrs;
	bool xattrs_later; /* not read yet: the writer reads them from data.path */
	uint32_t nlink;	   /* tnodes that reference it; maintained by the tree */
	uint32_t views;	   /* view bits, set by views code; all ones by default */
	uint32_t id;	   /* writer scratch: inode id, UINT32_MAX = unassigned */
	void *wpriv;	   /* writer scratch */
};

struct slimfs_tnode {
	char *name; /* owned, NUL-terminated; "" for the root */
	uint32_t name_len;
	uint32_t layer;		     /* layer that last created or replaced it */
	struct slimfs_tnode *parent; /* NULL for the root */
	struct slimfs_tinode *ino;   /* shared among hardlinks */
	/* directories: children, an open-addressing hash table keyed by name */
	struct slimfs_tnode **child;
	uint32_t nchild, child_cap;
};

struct slimfs_tree {
	struct slimfs_tnode *root;
	int spool_fd; /* unlinked temporary file holding tar file data, -1 until used */
	uint64_t spool_size;
	uint32_t layer; /* current layer number, set by ingest before each layer */
	uint64_t nodes;
};

int slimfs_tree_new(struct slimfs_tree **out);
void slimfs_tree_free(struct slimfs_tree *t);

/* New inode with defaults (mode given, root-owned, views all ones, nlink 0). */
struct slimfs_tinode *slimfs_tinode_new(uint32_t mode);
void slimfs_tinode_unref(struct slimfs_tinode *ino); /* frees when nlink drops to 0 */
int slimfs_tinode_add_xattr(struct slimfs_tinode *ino, const char *name, const void *value,
			    size_t len);
void slimfs_tinode_sort_xattrs(struct slimfs_tinode *ino);

/*
 * Paths are relative to the image root: "a/b", "./a/b", "/a/b" all name the
 * same entry. Empty components and "." are skipped; ".." is refused with
 * -EINVAL, as is a component longer than 255 bytes. A path whose parent
 * resolves through a symlink is refused with -ELOOP (an archive entry under a
 * symlinked directory would land outside the tree).
 */
int slimfs_tree_lookup(struct slimfs_tree *t, const char *path, struct slimfs_tnode **out);

/*
 * Creates or replaces the entry at path with ino (the tree takes a reference:
 * nlink++), creating missing parent directories (0755, root, mtime 0). When
 * both the existing entry and ino are directories, the existing directory
 * keeps its children and takes ino's metadata. Marks the node with t->layer.
 * *out (may be NULL) is the node.
 */
int slimfs_tree_set(struct slimfs_tree *t, const char *path, struct slimfs_tinode *ino,
		    struct slimfs_tnode **out);
/*
 * Like slimfs_tree_set() for the single component name in directory dir (a
 * node of this tree), without resolving a path from the root: deep sources
 * cost O(1) per entry. -EINVAL for "", ".", "..", a '/' or more than 255
 * bytes; -ELOOP when dir is a symlink, -ENOTDIR when not a directory.
 */
int slimfs_tree_set_at(struct slimfs_tree *t, struct slimfs_tnode *dir, const char *name,
		       struct slimfs_tinode *ino, struct slimfs_tnode **out);
/* Hardlink: path becomes another name of target's inode. -ENOENT when target
 * is missing, -EPERM when it is a directory. */
int slimfs_tree_link(struct slimfs_tree *t, const char *path, const char *target);
/* Removes the entry (and subtree); only entries of layers before t->layer when
 * lower_only. -ENOENT is not an error for whiteouts: callers ignore it. */
int slimfs_tree_remove(struct slimfs_tree *t, const char *path, bool lower_only);
/* Opaque whiteout: removes the children of path that came from earlier layers. */
int slimfs_tree_clear_lower(struct slimfs_tree *t, const char *path);

/* Appends data to the spool; *off is where it landed. */
int slimfs_tree_spool(struct slimfs_tree *t, const void *buf, size_t len, uint64_t *off);

/* Children of dir sorted by name (memcmp, then length), in a new array (free()). */
int slimfs_tree_sorted_children(const struct slimfs_tnode *dir, struct slimfs_tnode ***out,
				uint32_t *n);
/* Full path of a node ("/a/b"), malloc'd. */
char *slimfs_tree_path(const struct slimfs_tnode *n);

/*
 * Ingest: applies one source (detected by content) as one or more layers.
 * A directory, an OCI layout directory (index.json + oci-layout), a
 * docker-save tarball (manifest.json), or a tar layer in any compression
 * libarchive reads. The image config JSON of an OCI layout or docker-save
 * source replaces *config (malloc'd, may stay NULL).
 */
struct slimfs_build_opts;
int slimfs_ingest(struct slimfs_tree *t, const char *source, const struct slimfs_build_opts *o,
		  char **config, size_t *config_len);
/* A tar layer from an open archive stream (used by ingest and the fuzzer). */
struct archive;
int slimfs_ingest_archive(struct slimfs_tree *t, struct archive *a, const char *layer_name);
int slimfs_ingest_dir(struct slimfs_tree *t, const char *dir);

/* Scratch buffer of slimfs_read_xattrs. */
struct slimfs_xbuf {
	char *buf;
	size_t cap;
};

/* Adds the extended attributes of the file open as fd (when >= 0) or at path
 * (not followed) to ino; "not supported" is none. what names it in errors. */
int slimfs_read_xattrs(int fd, const char *path, const char *what, struct slimfs_xbuf *x,
		       struct slimfs_tinode *ino);

/*
 * Writer: serialises the tree (inodes visible in some view when prune) into
 * an image at out_fd. prefetch: chunk ids (16 bytes each) to place first in
 * the data, in order.
 */
struct slimfs_build_stats;
struct slimfs_profile_range;
struct slimfs_write_args {
	const struct slimfs_build_opts *o;
	const char *config;
	size_t config_len;
	const char *const *view_names; /* nviews names; bit i = view_names[i] */
	unsigned nviews;
	int default_view; /* -1: none */
	bool prune;
	const uint8_t *prefetch_ids; /* 16 bytes each */
	size_t nprefetch;
	/* absolute paths a profiled run touched, first access first: their
	 * small files are packed first, apart, and prefetched (symlinks on the
	 * way are followed; paths that are no regular file are ignored) */
	const char *const *profile_paths;
	size_t nprofile_paths;
	/* byte ranges a profiled run read, first access first: the ranges of
	 * large files are packed first, apart, and prefetched; the rest of
	 * such a file is chunked around them (paths resolved as above; ranges
	 * clipped to the file; small files are left to profile_paths) */
	const struct slimfs_profile_range *hot_ranges;
	size_t nhot_ranges;
};
int slimfs_write_image(struct slimfs_tree *t, const struct slimfs_write_args *a, int out_fd,
		       struct slimfs_build_stats *stats);

/*
 * Views (index/view.c): evaluates o->views (allow-lists, presets) and the
 * entrypoint closure (o->entrypoint, else the OCI config's Entrypoint+Cmd)
 * over the tree, sets tinode->views bits (ancestors of a visible entry are
 * visible too) and fills wa's view_names/nviews/default_view/prune. The
 * strings in wa stay valid until slimfs_views_free(wa).
 */
int slimfs_views_apply(struct slimfs_tree *t, const struct slimfs_build_opts *o, const char *config,
		       size_t config_len, struct slimfs_write_args *wa);
void slimfs_views_free(struct slimfs_write_args *wa);

#endif
