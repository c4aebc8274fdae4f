/* SPDX-License-Identifier: MIT */
/*
 * FUSE connections and the connection watchdog.
 *
 * The page-cache filler (notify.c) stores pages with notify_store, which
 * locks each page uninterruptibly. If the daemon is killed (kill -9, a
 * crash) while a store waits on a page that a pending read keeps locked,
 * the dying process never finishes exiting: its stuck thread keeps the
 * /dev/fuse file open, the kernel never aborts the connection, and readers
 * wait for good. The watchdog breaks that cycle from outside the daemon's
 * file table: a small process ('slimfs __watchdog', forked and exec'd by the
 * daemon's main thread, holding no descriptor of the daemon) that the kernel
 * signals when that thread exits (PR_SET_PDEATHSIG). Unless the daemon stood
 * it down first (a clean unmount, a handover to a new daemon), it aborts the
 * connection through fusectl (/sys/fs/fuse/connections/N/abort): every
 * pending read ends with an error, its pages unlock, the stuck store
 * returns, the process exits and readers see ENOTCONN.
 */
#ifndef SLIMFS_WATCHDOG_H
#define SLIMFS_WATCHDOG_H

#include <stdbool.h>

/*
 * The FUSE connection number (the minor of the device) of the filesystem
 * mounted on top at mountpoint (absolute, as in /proc/self/mountinfo).
 * -ENOENT when nothing is mounted there.
 */
int slimfs_fuse_conn_of(const char *mountpoint, unsigned *conn);

/* Writes to /sys/fs/fuse/connections/<conn>/abort: 0 or -errno. */
int slimfs_fuse_conn_abort(unsigned conn);

struct slimfs_watchdog;

/*
 * Starts the watchdog of the mount at mountpoint (it logs to syslog if
 * use_syslog, else to the daemon's stderr), from the thread whose exit
 * is to set it off (the daemon's main thread, which lives until the daemon
 * ends). Mounts fusectl when it is not mounted yet. -EPERM, -ENOENT (no
 * fusectl), -errno of fork: the caller then goes on without one.
 */
int slimfs_watchdog_start(const char *mountpoint, bool use_syslog, struct slimfs_watchdog **out);

/*
 * Stands the watchdog down without waiting for it: once nothing can get stuck
 * in the kernel any more (the filler stopped), so that it exits while the
 * daemon cleans up. slimfs_watchdog_stop must still follow: the daemon's main
 * thread may end only once the watchdog is gone, or its death signal could
 * reach a watchdog that has not taken the stand-down yet (a lower signal
 * number is taken first) and abort a new mount that got the same connection.
 */
void slimfs_watchdog_dismiss(struct slimfs_watchdog *w);

/* Stands the watchdog down and reaps it (before a clean exit or a handover). */
void slimfs_watchdog_stop(struct slimfs_watchdog *w);

/* The watchdog process: slimfs __watchdog PARENT-PID CONN MOUNTPOINT [syslog]. */
int slimfs_watchdog_main(int argc, char **argv);

#endif
