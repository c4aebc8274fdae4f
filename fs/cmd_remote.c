// SPDX-License-Identifier: MIT
/* slimfs push: an image file -> an OCI registry, as an artifact. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cliopt.h"
#include "cmds.h"
#include "image.h"
#include "slimfs/util.h"

static void push_usage(FILE *f)
{
	fprintf(f, "usage: slimfs push [options] IMAGE REGISTRY/REPO:TAG\n"
		   "\n"
		   "Stores a slimfs image in an OCI registry as an artifact (one manifest, one\n"
		   "blob that is the image file, the index digest in an annotation). Mount it\n"
		   "lazily with 'slimfs mount oci://REGISTRY/REPO:TAG MNT' or, pinned,\n"
		   "'oci://REGISTRY/REPO@sha256:...' (printed on success).\n"
		   "\n"
		   "options:\n"
		   "      --creds USER:PASS  registry credentials (default: the Docker config\n"
		   "                         file, $DOCKER_CONFIG/config.json or ~/.docker/)\n"
		   "      --cacert FILE      trust the CAs in FILE (PEM) instead of the system's\n"
		   "      --insecure         plain HTTP or unverified TLS to a registry that is\n"
		   "                         not on localhost\n"
		   "  -q, --quiet            print only the pinned reference\n"
		   "  -h, --help             this help\n");
}

int cmd_push(int argc, char **argv)
{
	static const struct option longopts[] = {
		SLIMFS_CLI_LONGOPTS_REGISTRY,
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct slimfs_cli_fetch f = {0};
	struct slimfs_cli cli = {
		.shortopts = "qh", .longopts = longopts, .usage = push_usage, .fetch = &f};
	struct slimfs_image *img = NULL;
	char mdigest[72], idx[72];
	const char *ref;
	bool quiet = false;
	int c, r;

	while ((c = slimfs_cli_next(&cli, argc, argv)) >= 0)
		if (c == 'q')
			quiet = true;
	if (c == SLIMFS_CLI_EXIT)
		return cli.exit_code;
	if (!slimfs_cli_nargs(&cli, argc, 2, 2))
		return EXIT_USAGE;
	ref = argv[optind + 1];
	if (strncmp(ref, "oci://", 6) == 0)
		ref += 6;
	r = slimfs_cli_open_image(argv[optind], NULL, NULL, &img);
	if (r < 0)
		return 1;
	if (slimfs_backend_local_fd(img->backend) < 0) {
		log_error("'%s': push takes a local image file", argv[optind]);
		slimfs_image_close(img);
		return EXIT_USAGE;
	}
	r = slimfs_oci_push(argv[optind], ref, slimfs_index_digest(img->idx), img->info->index_size,
			    &f.fo, mdigest);
	slimfs_index_digest_str(img->idx, idx);
	slimfs_image_close(img);
	if (r < 0) {
		log_error("cannot push '%s' to '%s'", argv[optind], ref);
		return 1;
	}
	if (!quiet)
		printf("pushed %s (index %s)\n", ref, idx);
	{
		/* REGISTRY/REPO without the tag: the tag's ':' follows the last '/' */
		const char *slash = strrchr(ref, '/'), *colon = slash ? strchr(slash, ':') : NULL;
		int n = colon ? (int)(colon - ref) : (int)strcspn(ref, "@");

		printf("oci://%.*s@%s\n", n, ref, mdigest);
	}
	return 0;
}
