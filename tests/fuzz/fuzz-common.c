// SPDX-License-Identifier: MIT
/* Helpers linked into every fuzz target. */
#include <stdlib.h>

#include "slimfs/util.h"
#include "fuzz.h"

void fuzz_quiet(void)
{
	const char *v = getenv("SLIMFS_FUZZ_VERBOSE");

	slimfs_log_set_level(v && *v ? SLIMFS_LOG_DEBUG : -1);
}

void fuzz_spool_in_memory(void)
{
	/* the spool is an unlinked O_TMPFILE either way */
	if (!getenv("TMPDIR") && access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 1);
}
