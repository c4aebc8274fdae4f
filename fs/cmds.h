/* SPDX-License-Identifier: MIT */
/* Subcommands of the slimfs CLI. Each returns the process exit code. */
#ifndef SLIMFS_CMDS_H
#define SLIMFS_CMDS_H

int cmd_build(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_mount(int argc, char **argv);
/* slimfs restart MNT: a new daemon takes the live mount over */
int cmd_restart(int argc, char **argv);
/* slimfs bundle: an OCI runtime bundle (config.json + rootfs mounted from an image) */
int cmd_bundle(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_report(int argc, char **argv);
/* slimfs bench: cold start of a command from an image, per fetch mode */
int cmd_bench(int argc, char **argv);
/* slimfs profile: traces of mount --trace -> allow-list + prefetch order */
int cmd_profile(int argc, char **argv);
/* slimfs stats MNT: a mount's statistics; slimfs pull: fill the disk cache */
int cmd_stats(int argc, char **argv);
int cmd_pull(int argc, char **argv);
/* mount(8) helper: mount.slimfs IMAGE DIR [-o OPTS] */
int cmd_mount_helper(int argc, char **argv);

/* Exit codes: 0 success, 1 failure, 2 usage error. */
#define EXIT_USAGE 2

#endif
