/* SPDX-License-Identifier: MIT */
/*
 * Sets of bits that any thread sets and none clears: one bit per inode or
 * directory entry of an image ("the kernel knows this inode", "logged once",
 * "examined"). Relaxed atomics: a bit only ever goes from 0 to 1, and a
 * reader that sees it late merely does again what was done once already.
 */
#ifndef SLIMFS_BITS_H
#define SLIMFS_BITS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef _Atomic uint8_t slimfs_bits;

/* n bits, all clear; NULL when out of memory. Free with free(). */
static inline slimfs_bits *slimfs_bits_new(uint64_t n)
{
	return calloc(n / 8 + 1, 1);
}

static inline bool slimfs_bits_test(slimfs_bits *b, uint64_t i)
{
	return atomic_load_explicit(&b[i / 8], memory_order_relaxed) & (1u << (i % 8));
}

/* Sets bit i; whether this call set it (it was clear). */
static inline bool slimfs_bits_set(slimfs_bits *b, uint64_t i)
{
	uint8_t bit = (uint8_t)(1u << (i % 8));

	if (atomic_load_explicit(&b[i / 8], memory_order_relaxed) & bit)
		return false; /* the common case: no write to a shared line */
	return !(atomic_fetch_or_explicit(&b[i / 8], bit, memory_order_relaxed) & bit);
}

#endif
