/* SPDX-License-Identifier: MIT */
/* Minimal TAP for unit tests: CHECK() is always on (never assert()). */
#ifndef SLIMFS_TAP_H
#define SLIMFS_TAP_H

#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		tap_n++;                                                                           \
		if (cond) {                                                                        \
			printf("ok %d - %s\n", tap_n, #cond);                                      \
		} else {                                                                           \
			tap_failed++;                                                              \
			printf("not ok %d - %s (%s:%d)\n", tap_n, #cond, __FILE__, __LINE__);      \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		tap_n++;                                                                           \
		if (a_ == b_) {                                                                    \
			printf("ok %d - %s == %s\n", tap_n, #a, #b);                               \
		} else {                                                                           \
			tap_failed++;                                                              \
			printf("not ok %d - %s == %s: %lld != %lld (%s:%d)\n", tap_n, #a, #b, a_,  \
			       b_, __FILE__, __LINE__);                                            \
		}                                                                                  \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
