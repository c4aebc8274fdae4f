/* SPDX-License-Identifier: MIT */
/* Shared by fuzz-layer and fuzz-roundtrip: tree -> image -> reader checks. */
#ifndef SLIMFS_FUZZ_IMAGE_H
#define SLIMFS_FUZZ_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "slimfs/build.h"
#include "tree.h"

/* Build options for fuzzing: one thread, small chunks (many of them). */
void fuzz_build_opts(struct slimfs_build_opts *o);

/*
 * Writes t into a new memfd and returns the image in a malloc'd buffer of
 * its exact size. 0 or the writer's -errno (then *buf is NULL).
 */
int fuzz_write(struct slimfs_tree *t, const struct slimfs_build_opts *o, uint8_t **buf,
	       size_t *len);

/*
 * Opens the image and checks that it holds exactly the tree: every entry
 * with its type, metadata, xattrs, link target, device number and content
 * (decoded chunk by chunk and compared with the spool). FUZZ_CHECK()s.
 */
void fuzz_check_image(struct slimfs_tree *t, const uint8_t *img, size_t len);

#endif
