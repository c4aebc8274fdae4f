// SPDX-License-Identifier: MIT
/* FUSE connections and the connection watchdog (see watchdog.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "slimfs/util.h"
#include "watchdog.h"

#define FUSECTL "/sys/fs/fuse/connections"

struct slimfs_watchdog {
	pid_t pid;
	bool dismissed; /* SIGTERM sent */
};

/* Undoes mountinfo's octal escapes (\040 for a blank, ...) in place. */
static void unescape_mountinfo(char *s)
{
	char *w = s;

	for (const char *p = s; *p; p++) {
		unsigned c;

		if (p[0] == '\\' && sscanf(p + 1, "%3o", &c) == 1) {
			*w++ = (char)c;
			p += 3;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

int slimfs_fuse_conn_of(const char *mountpoint, unsigned *conn)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], mnt[4096], fstype[256];
	unsigned maj, min;
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3 ||
		    sscanf(sep + 3, "%255s", fstype) != 1)
			continue;
		unescape_mountinfo(mnt);
		if (strcmp(mnt, mountpoint) != 0)
			continue;
		/* The last line for a mount point is the mount on top. */
		if (strcmp(fstype, "fuse") == 0 || strncmp(fstype, "fuse.", 5) == 0) {
			*conn = min;
			r = 0;
		} else {
			r = -ENOENT;
		}
	}
	fclose(f);
	return r;
}

/* Writes to the file "abort" of a fusectl connection directory (dir: AT_FDCWD or its fd). */
static int conn_abort_at(int dir, const char *path)
{
	int fd = openat(dir, path, O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = slimfs_write_all(fd, "1\n", 2);
	close(fd);
	return r < 0 ? r : 0;
}

int slimfs_fuse_conn_abort(unsigned conn)
{
	char path[128];

	snprintf(path, sizeof(path), FUSECTL "/%u/abort", conn);
	return conn_abort_at(AT_FDCWD, path);
}

/* fusectl holds a directory per connection; mounts it when it is not mounted. */
static int fusectl_ready(unsigned conn)
{
	char path[128];

	snprintf(path, sizeof(path), FUSECTL "/%u", conn);
	if (access(path, F_OK) == 0)
		return 0;
	if (mount("fusectl", FUSECTL, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return errno == EBUSY ? -ENOENT : -errno;
	log_debug("mounted fusectl on " FUSECTL);
	return access(path, F_OK) == 0 ? 0 : -ENOENT;
}

int slimfs_watchdog_start(const char *mountpoint, bool use_syslog, struct slimfs_watchdog **out)
{
	struct slimfs_watchdog *w;
	char ppid[24], conn_s[16];
	unsigned conn;
	sigset_t set, old;
	pid_t parent = getpid(), pid;
	int r;

	*out = NULL;
	r = slimfs_fuse_conn_of(mountpoint, &conn);
	if (r < 0)
		return r;
	r = fusectl_ready(conn);
	if (r < 0)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	snprintf(ppid, sizeof(ppid), "%d", (int)parent);
	snprintf(conn_s, sizeof(conn_s), "%u", conn);
	/* Blocked before the fork, so no signal can kill it before it waits. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec: the daemon has threads. */
		char *argv[] = {(char *)"slimfs",
				(char *)"__watchdog",
				ppid,
				conn_s,
				(char *)mountpoint,
				use_syslog ? (char *)"syslog" : NULL,
				NULL};
		int null = open("/dev/null", O_RDWR);

		/* None of the daemon's standard streams but a foreground daemon's
		 * stderr: a parent reading them (a mount helper waiting for the
		 * daemon's status pipe) would wait for this process too. */
		if (null < 0)
			_exit(127);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (use_syslog)
			dup2(null, STDERR_FILENO);
		sigprocmask(SIG_SETMASK, &set, NULL);
		setsid(); /* no job-control signals of the daemon's terminal */
		if (prctl(PR_SET_PDEATHSIG, SIGUSR2) < 0)
			_exit(127);
		/* No descriptor of the daemon, /dev/fuse above all. */
		close_range(3, ~0u, 0);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	r = -errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		free(w);
		return r;
	}
	w->pid = pid;
	log_debug("watchdog %d for FUSE connection %u of '%s'", (int)pid, conn, mountpoint);
	*out = w;
	return 0;
}

void slimfs_watchdog_dismiss(struct slimfs_watchdog *w)
{
	if (!w || w->dismissed)
		return;
	kill(w->pid, SIGTERM);
	w->dismissed = true;
}

void slimfs_watchdog_stop(struct slimfs_watchdog *w)
{
	if (!w)
		return;
	slimfs_watchdog_dismiss(w);
	while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(w);
}

int slimfs_watchdog_main(int argc, char **argv)
{
	sigset_t set;
	siginfo_t si;
	unsigned conn, now;
	char *end, path[128];
	long parent;
	int sig, r, dir;

	if (argc != 4 && !(argc == 5 && strcmp(argv[4], "syslog") == 0)) {
		fprintf(stderr, "usage: slimfs __watchdog PARENT-PID CONN MOUNTPOINT [syslog] "
				"(internal)\n");
		return 2;
	}
	if (argc == 5)
		slimfs_log_use_syslog(true);
	parent = strtol(argv[1], &end, 10);
	conn = (unsigned)strtoul(argv[2], NULL, 10);
	if (*end || parent <= 1)
		return 2;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/*
	 * The connection's own fusectl directory, held from now on, while the
	 * daemon lives and its mount point shows that connection: when the
	 * connection ends, the directory goes with it, and "abort" is no longer
	 * found through it, even if a new mount gets the same number. Unlike the
	 * mount point, it stays after a lazy unmount (fusermount3 -u -z), while
	 * readers of files still open may wait on the connection.
	 */
	snprintf(path, sizeof(path), FUSECTL "/%u", conn);
	dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir >= 0 &&
	    (getppid() != (pid_t)parent || slimfs_fuse_conn_of(argv[3], &now) < 0 || now != conn)) {
		close(dir); /* not known to be the daemon's: the mount point decides */
		dir = -1;
	}
	/* The daemon's main thread may have ended before PR_SET_PDEATHSIG. */
	if (getppid() == (pid_t)parent) {
		do
			sig = sigwaitinfo(&set, &si);
		while (sig < 0 && errno == EINTR);
		if (sig != SIGUSR2) {
			if (dir >= 0)
				close(dir);
			return 0; /* stood down */
		}
	}
	if (dir >= 0) {
		r = conn_abort_at(dir, "abort");
		close(dir);
		if (r == -ENOENT || r == -ENOTCONN)
			return 0; /* the connection ended before its daemon */
	} else if (slimfs_fuse_conn_of(argv[3], &now) < 0 || now != conn) {
		return 0; /* not the connection of this mount point any more */
	} else {
		r = slimfs_fuse_conn_abort(conn);
	}
	if (r < 0) {
		log_error_errno(r, "daemon %ld of '%s' died: cannot abort FUSE connection %u",
				parent, argv[3], conn);
		return 1;
	}
	log_warn("daemon %ld of '%s' died: aborted its FUSE connection %u (readers get ENOTCONN; "
		 "unmount with umount or fusermount3 -u)",
		 parent, argv[3], conn);
	return 0;
}
