/* SPDX-License-Identifier: MIT */
/*
 * What the subcommands share on their command lines: the getopt loop's
 * --help, --verbose and unknown-option cases, the argument count check,
 * --progress/--no-progress, and the options that say how to fetch an image
 * (--digest, --insecure, --cacert, --creds, --timeout, --retries, --rate,
 * --rtt), parsed by one table whether they come as --KEY VALUE or as
 * -o KEY=VALUE (slimfs_cli_fetch_set(), meant for mount's -o).
 *
 *	static const struct option longopts[] = {
 *		{"json", no_argument, NULL, OPT_JSON},
 *		SLIMFS_CLI_LONGOPT_DIGEST,
 *		SLIMFS_CLI_LONGOPTS_REGISTRY,
 *		{"verbose", no_argument, NULL, 'v'},
 *		{"help", no_argument, NULL, 'h'},
 *		{NULL, 0, NULL, 0},
 *	};
 *	struct slimfs_cli_fetch f = {0};
 *	struct slimfs_cli cli = {.shortopts = "vh", .longopts = longopts,
 *				 .usage = usage, .fetch = &f};
 *
 *	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
 *		switch (c) { case OPT_JSON: ... }
 *	if (c == SLIMFS_CLI_EXIT)
 *		return cli.exit_code;
 *	if (!slimfs_cli_nargs(&cli, argc, 1, 1))
 *		return EXIT_USAGE;
 *	r = slimfs_cli_open_image(argv[optind], &f, NULL, &img);
 */
#ifndef SLIMFS_CLIOPT_H
#define SLIMFS_CLIOPT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "image.h"
#include "slimfs/fetch.h"

/* getopt codes of the shared options, above every command's own */
enum {
	SLIMFS_CLI_OPT_DIGEST = 0x1000,
	SLIMFS_CLI_OPT_INSECURE,
	SLIMFS_CLI_OPT_CACERT,
	SLIMFS_CLI_OPT_CREDS,
	SLIMFS_CLI_OPT_TIMEOUT,
	SLIMFS_CLI_OPT_RETRIES,
	SLIMFS_CLI_OPT_RATE,
	SLIMFS_CLI_OPT_RTT,
	SLIMFS_CLI_OPT_PROGRESS,
	SLIMFS_CLI_OPT_NO_PROGRESS,
};

/* struct option entries, for a command's longopts table */
/* clang-format off */
#define SLIMFS_CLI_LONGOPT_DIGEST {"digest", required_argument, NULL, SLIMFS_CLI_OPT_DIGEST}
/* how to reach a registry or server */
#define SLIMFS_CLI_LONGOPTS_REGISTRY                                                  \
	{"insecure", no_argument, NULL, SLIMFS_CLI_OPT_INSECURE},                     \
	{"cacert", required_argument, NULL, SLIMFS_CLI_OPT_CACERT},                   \
	{"creds", required_argument, NULL, SLIMFS_CLI_OPT_CREDS}
/* how to fetch: time limit, retries, emulated link */
#define SLIMFS_CLI_LONGOPTS_NET                                                       \
	{"timeout", required_argument, NULL, SLIMFS_CLI_OPT_TIMEOUT},                 \
	{"retries", required_argument, NULL, SLIMFS_CLI_OPT_RETRIES},                 \
	{"rate", required_argument, NULL, SLIMFS_CLI_OPT_RATE},                       \
	{"rtt", required_argument, NULL, SLIMFS_CLI_OPT_RTT}
#define SLIMFS_CLI_LONGOPTS_PROGRESS                                                  \
	{"progress", no_argument, NULL, SLIMFS_CLI_OPT_PROGRESS},                     \
	{"no-progress", no_argument, NULL, SLIMFS_CLI_OPT_NO_PROGRESS}
/* clang-format on */

/* How to open an image: what the fetch options above set. */
struct slimfs_cli_fetch {
	struct slimfs_fetch_opts fo; /* its strings are borrowed from argv (or the caller) */
	uint8_t digest[32];
	bool have_digest;
};

/*
 * Sets fetch option key ("digest", "insecure" (v unused), "creds", "cacert",
 * "timeout", "retries", "rate", "rtt") to v; what names the option in
 * messages ("--timeout" on the command line, "timeout" in -o). v must
 * outlive f. Returns 0, -EINVAL (logged), or -ENOENT (no such key).
 */
int slimfs_cli_fetch_set(struct slimfs_cli_fetch *f, const char *what, const char *key,
			 const char *v);

/*
 * Opens src (path, URL or oci:// reference) with f's options (f may be NULL:
 * the defaults) and, when f has one, checks its digest; cache_dir as for
 * slimfs_image_open_cached (NULL: no index cache). 0 or -errno (logged by
 * the image layer).
 */
int slimfs_cli_open_image(const char *src, const struct slimfs_cli_fetch *f, const char *cache_dir,
			  struct slimfs_image **out);

enum slimfs_cli_progress {
	SLIMFS_CLI_PROGRESS_AUTO,
	SLIMFS_CLI_PROGRESS_ON,
	SLIMFS_CLI_PROGRESS_OFF
};

struct slimfs_cli {
	const char *shortopts;
	const struct option *longopts;
	void (*usage)(FILE *f);
	struct slimfs_cli_fetch *fetch;	   /* where the fetch options go; NULL: none taken */
	bool keep_verbose;		   /* -v is the command's own (not one log level up) */
	enum slimfs_cli_progress progress; /* set by --progress, --no-progress */
	int exit_code;			   /* what to exit with after SLIMFS_CLI_EXIT */
};

#define SLIMFS_CLI_END	(-1) /* no more options: operands start at optind */
#define SLIMFS_CLI_EXIT (-2) /* --help or a usage error: return cli->exit_code */

/*
 * getopt_long() over cli's tables that handles the shared cases itself:
 * -h/--help (usage on stdout, exit code 0), an unknown option or a missing
 * argument (usage on stderr, EXIT_USAGE), a bad fetch option value
 * (EXIT_USAGE), -v/--verbose (one log level more, unless keep_verbose), the
 * fetch and progress options. Returns the next option the command handles,
 * SLIMFS_CLI_END, or SLIMFS_CLI_EXIT.
 */
int slimfs_cli_next(struct slimfs_cli *cli, int argc, char **argv);

/* Whether min <= operands <= max; if not, the usage goes to stderr. */
bool slimfs_cli_nargs(const struct slimfs_cli *cli, int argc, int min, int max);

/* Whether to draw a progress bar: as asked, else when not quiet and stderr is a TTY. */
bool slimfs_cli_show_progress(const struct slimfs_cli *cli, bool quiet);

#endif
