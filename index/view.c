// SPDX-License-Identifier: MIT
/* placeholder until views land: an image with the full view only. */
#include "slimfs/build.h"
#include "slimfs/util.h"
#include "tree.h"

int slimfs_views_apply(struct slimfs_tree *t, const struct slimfs_build_opts *o, const char *config,
		       size_t config_len, struct slimfs_write_args *wa)
{
	(void)t;
	(void)config;
	(void)config_len;
	(void)wa;
	if (o->nviews || o->entrypoint || o->prune) {
		log_error("views are not supported by this build yet");
		return -EOPNOTSUPP;
	}
	return 0;
}

void slimfs_views_free(struct slimfs_write_args *wa)
{
	(void)wa;
}
