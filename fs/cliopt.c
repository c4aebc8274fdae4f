// SPDX-License-Identifier: MIT
/* Command-line parts the subcommands share (see cliopt.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cliopt.h"
#include "cmds.h"
#include "slimfs/util.h"

/* The fetch options: getopt code and key (the long option's name, the -o key). */
static const struct {
	int code;
	const char *key;
} fetch_keys[] = {
	{SLIMFS_CLI_OPT_DIGEST, "digest"},   {SLIMFS_CLI_OPT_INSECURE, "insecure"},
	{SLIMFS_CLI_OPT_CACERT, "cacert"},   {SLIMFS_CLI_OPT_CREDS, "creds"},
	{SLIMFS_CLI_OPT_TIMEOUT, "timeout"}, {SLIMFS_CLI_OPT_RETRIES, "retries"},
	{SLIMFS_CLI_OPT_RATE, "rate"},	     {SLIMFS_CLI_OPT_RTT, "rtt"},
};

int slimfs_cli_fetch_set(struct slimfs_cli_fetch *f, const char *what, const char *key,
			 const char *v)
{
	if (strcmp(key, "digest") == 0) {
		if (slimfs_parse_digest(v, f->digest) < 0) {
			log_error("%s: '%s' is not sha256:<64 hex digits>", what, v);
			return -EINVAL;
		}
		f->have_digest = true;
	} else if (strcmp(key, "insecure") == 0) {
		f->fo.insecure = true;
	} else if (strcmp(key, "creds") == 0) {
		f->fo.creds = v;
	} else {
		return slimfs_parse_fetch_opt(what, key, v, &f->fo);
	}
	return 0;
}

int slimfs_cli_open_image(const char *src, const struct slimfs_cli_fetch *f, const char *cache_dir,
			  struct slimfs_image **out)
{
	static const struct slimfs_cli_fetch defaults;

	if (!f)
		f = &defaults;
	return slimfs_image_open_cached(src, &f->fo, f->have_digest ? f->digest : NULL, cache_dir,
					out);
}

static int fetch_option(struct slimfs_cli *cli, int c)
{
	char what[16];

	for (size_t i = 0; i < ARRAY_SIZE(fetch_keys); i++) {
		if (fetch_keys[i].code != c)
			continue;
		snprintf(what, sizeof(what), "--%s", fetch_keys[i].key);
		return slimfs_cli_fetch_set(cli->fetch, what, fetch_keys[i].key, optarg);
	}
	return -ENOENT;
}

int slimfs_cli_next(struct slimfs_cli *cli, int argc, char **argv)
{
	int c, r;

	for (;;) {
		c = getopt_long(argc, argv, cli->shortopts, cli->longopts, NULL);
		switch (c) {
		case -1:
			return SLIMFS_CLI_END;
		case 'h':
			cli->usage(stdout);
			cli->exit_code = 0;
			return SLIMFS_CLI_EXIT;
		case '?':
		case ':':
			cli->usage(stderr);
			cli->exit_code = EXIT_USAGE;
			return SLIMFS_CLI_EXIT;
		case 'v':
			if (cli->keep_verbose)
				return c;
			slimfs_log_set_level(slimfs_log_get_level() + 1);
			continue;
		case SLIMFS_CLI_OPT_PROGRESS:
			cli->progress = SLIMFS_CLI_PROGRESS_ON;
			continue;
		case SLIMFS_CLI_OPT_NO_PROGRESS:
			cli->progress = SLIMFS_CLI_PROGRESS_OFF;
			continue;
		default:
			break;
		}
		if (!cli->fetch)
			return c;
		r = fetch_option(cli, c);
		if (r == -ENOENT)
			return c;
		if (r < 0) {
			cli->exit_code = EXIT_USAGE;
			return SLIMFS_CLI_EXIT;
		}
	}
}

bool slimfs_cli_nargs(const struct slimfs_cli *cli, int argc, int min, int max)
{
	int n = argc - optind;

	if (n >= min && n <= max)
		return true;
	cli->usage(stderr);
	return false;
}

bool slimfs_cli_show_progress(const struct slimfs_cli *cli, bool quiet)
{
	if (cli->progress != SLIMFS_CLI_PROGRESS_AUTO)
		return cli->progress == SLIMFS_CLI_PROGRESS_ON;
	return !quiet && isatty(STDERR_FILENO);
}
