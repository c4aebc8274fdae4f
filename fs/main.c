// SPDX-License-Identifier: MIT
/* slimfs: one binary, git-style subcommands. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "slimfs/util.h"
#include "watchdog.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"build", cmd_build, "build an image from directories, tar layers, OCI layouts"},
	{"mount", cmd_mount, "mount an image as a read-only filesystem"},
	{"restart", cmd_restart, "new daemon for a live mount (upgrade) without unmounting"},
	{"inspect", cmd_inspect, "show an image's summary, chunk statistics and config"},
	{"ls", cmd_ls, "list directories of an image"},
	{"cat", cmd_cat, "write a file of an image to standard output"},
	{"extract", cmd_extract, "restore an image's tree into a directory"},
	{"verify", cmd_verify, "check an image's index and every chunk"},
	{"push", cmd_push, "store an image in an OCI registry"},
	{"bundle", cmd_bundle, "make an OCI runtime bundle (runc, crun) over a mount"},
	{"report", cmd_report, "attack surface of a view, and SBOMs (SPDX, CycloneDX)"},
	{"pull", cmd_pull, "fill the disk cache with an image, for offline mounts"},
	{"stats", cmd_stats, "statistics of a mount (fetches, caches, prefetch, hints)"},
	{"bench", cmd_bench, "time a command's cold start from an image, per fetch mode"},
	{"profile", cmd_profile, "merge mount traces into a profile (allow-list + chunk order)"},
};

/*
 * A mount daemon's heap (decoded chunks, coalesced reads) in one arena and on
 * transparent huge pages: on this project's benchmark VM a first touch of a
 * 4 KiB page costs ~15 us (64 MiB: 0.24 s; 5 ms on huge pages), and a cold
 * full-tree read of the bookworm rootfs (tar | wc -c) faulted ~27k pages.
 * With these and the thresholds run_daemon() sets with mallopt() (freed
 * chunks stay in the heap), 357 faults; daemon CPU 1.56 -> 0.61 s, tar
 * 1.45 -> 0.79 s (kernel squashfs 0.85-0.92 s), one run each on an idle
 * machine. glibc reads these two only at startup, so a daemon command
 * executes itself again once with them in GLIBC_TUNABLES (the user's own
 * settings come after, and win); it costs ~3 ms of mount time.
 */
#define DAEMON_TUNABLES "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=1"

static void daemon_heap(char **argv)
{
	const char *old = getenv("GLIBC_TUNABLES");
	char *saved = old ? strdup(old) : NULL, *v, self[PATH_MAX];
	ssize_t n;

	if ((old && !saved) || (old && strncmp(old, DAEMON_TUNABLES, strlen(DAEMON_TUNABLES)) == 0))
		goto out; /* done already (or no memory: run as is) */
	if (asprintf(&v, "%s%s%s", DAEMON_TUNABLES, old ? ":" : "", old ? old : "") < 0)
		goto out;
	/* By its own name, not /proc/self/exe: the process keeps its name (ps, pgrep). */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0 && (size_t)n < sizeof(self) - 1 && setenv("GLIBC_TUNABLES", v, 1) == 0) {
		self[n] = '\0';
		execv(self, argv);
	}
	/* Cannot: go on with the default heap. */
	free(v);
	if (saved)
		setenv("GLIBC_TUNABLES", saved, 1);
	else
		unsetenv("GLIBC_TUNABLES");
out:
	free(saved);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: slimfs [--version] [--help] COMMAND [ARGS...]\n\n"
		   "slimfs mounts container images as lazily fetched, minimal read-only root\n"
		   "filesystems.\n\ncommands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'slimfs COMMAND --help' describes a command; man slimfs has it all.\n");
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/');

	prog = prog ? prog + 1 : argv[0];
	if (strcmp(prog, "mount.slimfs") == 0 || strcmp(prog, "mount.fuse.slimfs") == 0) {
		daemon_heap(argv);
		return cmd_mount_helper(argc, argv);
	}
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("slimfs %s\n", SLIMFS_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "__watchdog") == 0) /* internal: see watchdog.h */
		return slimfs_watchdog_main(argc - 1, argv + 1);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0) {
			if (commands[i].fn == cmd_mount || commands[i].fn == cmd_restart)
				daemon_heap(argv);
			return commands[i].fn(argc - 1, argv + 1);
		}
	/*
	 * mount.fuse(8) runs "slimfs IMAGE DIR -o OPTS" for 'mount -t fuse.slimfs'
	 * and fstab lines of type fuse.slimfs: act as the mount helper then.
	 */
	if (argc >= 3 && argv[1][0] != '-' &&
	    (strstr(argv[1], "://") || access(argv[1], F_OK) == 0)) {
		daemon_heap(argv);
		return cmd_mount_helper(argc, argv);
	}
	fprintf(stderr, "slimfs: '%s' is not a slimfs command; see 'slimfs --help'\n", argv[1]);
	return EXIT_USAGE;
}
