/* SPDX-License-Identifier: MIT */
/* Helpers the unit tests share: repeatable random bytes, tree entries. */
#ifndef SLIMFS_TESTUTIL_H
#define SLIMFS_TESTUTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tree.h"

/* xorshift64 over *state: the same sequence on every run for a given seed. */
static inline uint64_t test_rng(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

static inline void test_fill_random(uint64_t *state, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(test_rng(state) >> 24);
}

/* A symlink path -> target in t. 0 or -errno. */
static inline int test_tree_symlink(struct slimfs_tree *t, const char *path, const char *target)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFLNK | 0777);
	int r;

	ino->target = strdup(target);
	r = slimfs_tree_set(t, path, ino, NULL);
	if (r < 0)
		slimfs_tinode_unref(ino);
	return r;
}

#endif
