// SPDX-License-Identifier: MIT
/* slimfs: one binary, git-style subcommands. */
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
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	/*
	 * mount.fuse(8) runs "slimfs IMAGE DIR -o OPTS" for 'mount -t fuse.slimfs'
	 * and fstab lines of type fuse.slimfs: act as the mount helper then.
	 */
	if (argc >= 3 && argv[1][0] != '-' &&
	    (strstr(argv[1], "://") || access(argv[1], F_OK) == 0))
		return cmd_mount_helper(argc, argv);
	fprintf(stderr, "slimfs: '%s' is not a slimfs command; see 'slimfs --help'\n", argv[1]);
	return EXIT_USAGE;
}
