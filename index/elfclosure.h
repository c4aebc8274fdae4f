/* SPDX-License-Identifier: MIT */
/*
 * Path resolution inside the builder's tree and the closure of programs
 * (internal to index/): what a program needs to start, found the way the
 * kernel and ld.so would find it inside the image (script interpreters,
 * PT_INTERP, DT_NEEDED through RPATH/RUNPATH, ld.so.conf and the default
 * directories, every symlink on the way).
 */
#ifndef SLIMFS_ELFCLOSURE_H
#define SLIMFS_ELFCLOSURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tree.h"

/* Called for every node a resolution passes: directories, symlinks, the
 * result. 0 continues, a negative errno aborts, > 0 stops (-ECANCELED). */
typedef int (*slimfs_visit_fn)(struct slimfs_tnode *n, void *ud);

#define SLIMFS_SYMLINK_HOPS_MAX 40

/*
 * Resolves path with the tree as the root directory: absolute paths and
 * absolute symlink targets start at the root, relative ones at `at` (NULL:
 * the root), ".." at the root stays there, at most SLIMFS_SYMLINK_HOPS_MAX
 * symlinks. follow_last: a final symlink is followed too.
 * Returns 0 and *out, or -ENOENT, -ENOTDIR, -ELOOP, -ENAMETOOLONG, -ENOMEM,
 * -ECANCELED (visit stopped it), visit's error.
 */
int slimfs_tree_resolve(struct slimfs_tree *t, struct slimfs_tnode *at, const char *path,
			bool follow_last, slimfs_visit_fn visit, void *ud,
			struct slimfs_tnode **out);

/* Reads len bytes at off of a regular file's content (holes read as zeros;
 * the range must lie inside the file). 0 or -errno. */
int slimfs_tree_read(struct slimfs_tree *t, const struct slimfs_tinode *ino, void *buf, size_t len,
		     uint64_t off);

/* A set of nodes (no duplicates, insertion order). */
struct slimfs_nodeset {
	struct slimfs_tnode **v; /* owned array, nodes borrowed from the tree */
	size_t n, cap;
	struct slimfs_tnode **tab; /* hash set of the same nodes */
	size_t tab_cap;
};
/* 1 added, 0 already there, -ENOMEM. */
int slimfs_nodeset_add(struct slimfs_nodeset *s, struct slimfs_tnode *n);
bool slimfs_nodeset_has(const struct slimfs_nodeset *s, const struct slimfs_tnode *n);
void slimfs_nodeset_clear(struct slimfs_nodeset *s);

struct slimfs_closure_args {
	const char *const *programs; /* paths, or names looked up on path_env */
	size_t nprograms;
	const char *path_env;	     /* PATH; NULL: the default PATH */
	const char *ld_library_path; /* LD_LIBRARY_PATH of the image's environment, or NULL */
	const char *cwd;	     /* for relative program paths; NULL: "/" */
	bool required;		     /* a missing program is an error, not a warning */
	bool elf_only;		     /* ELF dependencies only: "#!" lines are not followed */
	size_t optional_from;	     /* programs from here on may be mere arguments (Cmd[0] after an
				      * Entrypoint): missing ones are not worth a warning */
};

#define SLIMFS_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/*
 * Adds to out every node the programs need: the programs, script
 * interpreters (incl. "/usr/bin/env NAME"), PT_INTERP and DT_NEEDED
 * libraries recursively, and every directory and symlink on their paths.
 * Missing libraries and interpreters are warnings naming who needs them.
 * 0 or -errno (-ENOENT: a required program is missing).
 */
int slimfs_elf_closure(struct slimfs_tree *t, const struct slimfs_closure_args *a,
		       struct slimfs_nodeset *out);

/* ---- ELF objects, also for the mount (miss-ahead of DT_NEEDED, fs/ops.c) ---- */

/* The dynamic information of an ELF file. */
struct slimfs_elf_info {
	int cls;	  /* ELFCLASS32/64 */
	unsigned machine; /* EM_* */
	char *interp;	  /* PT_INTERP */
	char **needed;	  /* DT_NEEDED */
	size_t nneeded;
	char *rpath, *runpath; /* NULL when absent */
};
void slimfs_elf_info_clear(struct slimfs_elf_info *ei);

/* Reads len bytes at off of the file being parsed (within its size). 0 or -errno. */
typedef int (*slimfs_elf_read_fn)(void *ud, void *buf, size_t len, uint64_t off);

/* Loads libelf (dl_elf.h) and sets its version, once per caller; 0 or -errno. */
int slimfs_elf_init(void);

/*
 * Parses an ELF file of size bytes, reading only its headers, PT_INTERP,
 * PT_DYNAMIC and the dynamic string table through read (every offset is
 * bounds-checked: the bytes are untrusted). Needs slimfs_elf_init(). 0,
 * -ENOEXEC (not ELF or malformed: what is wrong goes to *why), -EFBIG (too
 * large to examine), -ENOMEM, read's error.
 */
int slimfs_elf_parse(slimfs_elf_read_fn read, void *ud, uint64_t size, struct slimfs_elf_info *ei,
		     const char **why);

/* An object loaded, as ld.so keeps it. */
struct slimfs_elf_obj {
	void *node;  /* the caller's handle on the file */
	char *dir;   /* directory it was loaded from, for $ORIGIN */
	long loader; /* index of the object that needed it, -1 for programs */
	struct slimfs_elf_info ei;
};

/* A list of directories (no duplicates). */
struct slimfs_dirlist {
	char **v;
	size_t n;
};
void slimfs_dirlist_clear(struct slimfs_dirlist *d);

/*
 * Appends to d the directories ld.so searches for the DT_NEEDED entries of
 * objs[i], in its order: DT_RPATH of the object and its loaders (when it has
 * no DT_RUNPATH), ld_library_path, DT_RUNPATH, conf_dirs (those of the
 * image's ld.so.conf, standing in for ld.so.cache), then the default
 * directories of the object's machine; $ORIGIN, $LIB and $PLATFORM expanded.
 * 0 or -ENOMEM.
 */
int slimfs_elf_search_dirs(const struct slimfs_elf_obj *objs, size_t i, const char *ld_library_path,
			   char *const *conf_dirs, size_t nconf, struct slimfs_dirlist *d);

#endif
