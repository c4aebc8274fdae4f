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
