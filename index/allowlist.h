/* SPDX-License-Identifier: MIT */
/*
 * Allow-lists (internal to index/): gitignore-like rules that select paths
 * of the image for a view.
 *
 *   PATTERN        select what matches (a directory: its whole subtree)
 *   !PATTERN       exclude it again; the last rule that matches a path or
 *                  one of its parent directories decides
 *   # comment, blank lines, \ escapes (\#, \!, \*, "\ " ...)
 *   @include NAME  a built-in preset, or a file when NAME contains a '/' or
 *                  names a file next to the including one
 *
 * Globs: '*' and '?' never match '/', "[a-z]" "[!x]" "[^x]" classes, "**" as
 * a whole component matches any number of components (a trailing "**" at
 * least one). A pattern with a '/' at its start or inside is anchored at the
 * image root, otherwise it matches at any depth. A trailing '/' matches
 * directories only.
 */
#ifndef SLIMFS_ALLOWLIST_H
#define SLIMFS_ALLOWLIST_H

#include <stdbool.h>
#include <stddef.h>

struct slimfs_allowlist;

int slimfs_allowlist_new(struct slimfs_allowlist **out);
void slimfs_allowlist_free(struct slimfs_allowlist *al);

/*
 * Appends the rules of a file / of text (origin names it in errors; basedir,
 * may be NULL, is where relative @include files are looked up). Errors are
 * logged with the origin and line: -EINVAL (syntax, unknown preset),
 * -ELOOP (includes nested too deep), -errno from reading files.
 */
int slimfs_allowlist_add_file(struct slimfs_allowlist *al, const char *path);
int slimfs_allowlist_add_text(struct slimfs_allowlist *al, const char *text, size_t len,
			      const char *origin, const char *basedir);
/* Appends a built-in preset; -ENOENT (logged) when there is no such preset. */
int slimfs_allowlist_add_preset(struct slimfs_allowlist *al, const char *name);
/* Names of the built-in presets, NULL-terminated. */
extern const char *const slimfs_allowlist_presets[];

size_t slimfs_allowlist_count(const struct slimfs_allowlist *al);
bool slimfs_allowlist_negated(const struct slimfs_allowlist *al, size_t rule);

/*
 * Index of the last rule after rule `after` (-1: all rules) that matches the
 * path, or -1. path is relative to the root, without leading '/' ("" is the
 * root, "usr/bin/sh").
 */
long slimfs_allowlist_last_match(const struct slimfs_allowlist *al, const char *path, bool is_dir,
				 long after);

/*
 * Decision for a path, given the decision of its parent directory (-1 for
 * none): the index of the last rule matching it or an ancestor. selected when
 * that rule exists and is not negated.
 */
static inline long slimfs_allowlist_decide(const struct slimfs_allowlist *al, const char *path,
					   bool is_dir, long parent)
{
	long own = slimfs_allowlist_last_match(al, path, is_dir, parent);

	return own >= 0 ? own : parent;
}

/* One pattern against one path (tests): 1 match, 0 no match, -EINVAL bad pattern. */
int slimfs_glob_match(const char *pattern, const char *path, bool is_dir);

#endif
