/* SPDX-License-Identifier: MIT */
/*
 * Shared by the fuzz targets: FUZZ_CHECK() is always on (never assert()),
 * and the libFuzzer entry points. Built with -fsanitize=fuzzer when the
 * meson option `fuzzing` is set; otherwise fuzz-main.c replays files.
 */
#ifndef SLIMFS_FUZZ_H
#define SLIMFS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed\n", __FILE__, __LINE__,      \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Quiet logging unless SLIMFS_FUZZ_VERBOSE is set (messages slow fuzzing). */
void fuzz_quiet(void);
/* The tree builder's spool in /dev/shm (tmpfs is fastest), unless TMPDIR is set. */
void fuzz_spool_in_memory(void);

#endif
