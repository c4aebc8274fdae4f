// SPDX-License-Identifier: MIT
/* The loader of index/dl.h: a missing library or symbol fails with the
 * documented errno and one log line, a good one fills the table once, also
 * when many threads ask at the same time. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dl.h"
#include "tap.h"

struct libc_fns {
	SLIMFS_DL_SLOT(atoi)
	SLIMFS_DL_SLOT(abs)
};

static const struct slimfs_dl_sym libc_syms[] = {
	{"atoi", offsetof(struct libc_fns, atoi)},
	{"abs", offsetof(struct libc_fns, abs)},
};
static const struct slimfs_dl_sym bad_syms[] = {
	{"atoi", offsetof(struct libc_fns, atoi)},
	{"slimfs_no_such_symbol", offsetof(struct libc_fns, abs)},
};

/* Runs load(lib) twice with stderr captured; returns how many lines said
 * "cannot load", and both results. */
static int count_logged(struct slimfs_dl_lib *lib, int *r1, int *r2)
{
	char buf[4096] = "";
	FILE *f = tmpfile();
	int saved = dup(2), n = 0;
	size_t len;

	if (!f || saved < 0)
		return -1;
	fflush(stderr);
	dup2(fileno(f), 2);
	*r1 = slimfs_dl_load(lib);
	*r2 = slimfs_dl_load(lib);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	len = fread(buf, 1, sizeof(buf) - 1, f);
	buf[len] = '\0';
	fclose(f);
	for (const char *p = buf; (p = strstr(p, "cannot load ")); p++)
		n++;
	printf("# logged: %s", buf);
	return n;
}

static struct libc_fns libc_table;
static struct slimfs_dl_lib libc_lib = {
	.soname = "libc.so.6", .syms = libc_syms, .nsyms = 2, .table = &libc_table};

static void *load_thread(void *ud)
{
	(void)ud;
	return (void *)(long)slimfs_dl_load(&libc_lib);
}

/*
 * After the joins of the loading threads, only pre's read-ahead thread (no
 * files for pre_missing) may still run: it told its tid (slimfs_dl_thread);
 * every other thread of the process but this one has been joined.
 */
static void check_threads_told(void)
{
	unsigned others = 0, told = 0;
	struct dirent *e;
	DIR *dir;

	for (int i = 0; i < 5000 && slimfs_dl_threads_untold() > 0; i++)
		usleep(1000);
	CHECK_EQ(slimfs_dl_threads_untold(), 0u);
	CHECK(!slimfs_dl_thread(gettid()));
	dir = opendir("/proc/self/task");
	CHECK(dir != NULL);
	while (dir && (e = readdir(dir))) {
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid > 0 && tid != gettid()) {
			others++;
			told += slimfs_dl_thread(tid);
		}
	}
	if (dir)
		closedir(dir);
	printf("# %u other threads, %u of them told\n", others, told);
	CHECK(others <= 1);
	CHECK_EQ(told, others);
}

int main(void)
{
	struct libc_fns t1 = {0}, t2 = {0};
	struct slimfs_dl_lib missing = {.soname = "libslimfs-no-such-library.so.0",
					.syms = libc_syms,
					.nsyms = 2,
					.table = &t1};
	struct slimfs_dl_lib nosym = {
		.soname = "libc.so.6", .syms = bad_syms, .nsyms = 2, .table = &t2};
	/* preloaded: files to read ahead that exist or not, one path too long */
	static char files[PATH_MAX + 64] = "/nonexistent/libslimfs.so:/proc/self/exe::";
	/* static: the preload threads may outlive main's frame */
	static struct libc_fns t3, t4;
	static struct slimfs_dl_lib pre = {
		.soname = "libc.so.6", .syms = libc_syms, .nsyms = 2, .table = &t3, .files = files};
	static struct slimfs_dl_lib pre_missing = {.soname = "libslimfs-no-such-library.so.0",
						   .syms = libc_syms,
						   .nsyms = 2,
						   .table = &t4};
	pthread_t th[8];
	int r1, r2;

	CHECK_EQ(count_logged(&missing, &r1, &r2), 1);
	CHECK_EQ(r1, -ELIBACC);
	CHECK_EQ(r2, -ELIBACC);
	CHECK(t1.atoi == NULL);

	CHECK_EQ(count_logged(&nosym, &r1, &r2), 1);
	CHECK_EQ(r1, -ELIBBAD);
	CHECK_EQ(r2, -ELIBBAD);

	for (size_t i = 0; i < 8; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, load_thread, NULL), 0);
	for (size_t i = 0; i < 8; i++) {
		void *ret = (void *)1;

		pthread_join(th[i], &ret);
		CHECK(ret == NULL);
	}
	CHECK(libc_table.atoi && libc_table.abs);
	if (libc_table.atoi && libc_table.abs) {
		CHECK_EQ(libc_table.atoi("42"), 42);
		CHECK_EQ(libc_table.abs(-7), 7);
	}
	CHECK_EQ(slimfs_dl_load(&libc_lib), 0);

	/* A preload: the thread loads, the first load waits for it; twice is once. */
	memset(files + strlen(files), 'x', PATH_MAX + 8);
	slimfs_dl_preload(&pre);
	slimfs_dl_preload(&pre);
	CHECK_EQ(slimfs_dl_load(&pre), 0);
	CHECK(slimfs_dl_preloaded(&pre) && slimfs_dl_loaded(&pre));
	CHECK(!slimfs_dl_preloaded(&libc_lib));
	CHECK(t3.atoi && t3.abs);
	if (t3.atoi)
		CHECK_EQ(t3.atoi("17"), 17);
	slimfs_dl_preload(&pre); /* loaded: nothing to do */
	/* Joined once; again, or without a preload, nothing to wait for. */
	CHECK(atomic_load(&pre.preload_joinable));
	slimfs_dl_preload_join(&pre);
	CHECK(!atomic_load(&pre.preload_joinable));
	slimfs_dl_preload_join(&pre);
	slimfs_dl_preload_join(&libc_lib);
	/* A failed preload fails the load the same way; its thread is joined too. */
	slimfs_dl_preload(&pre_missing);
	slimfs_dl_preload_join(&pre_missing);
	CHECK(slimfs_dl_preloaded(&pre_missing));
	CHECK_EQ(slimfs_dl_load(&pre_missing), -ELIBACC);
	CHECK_EQ(slimfs_dl_load(&pre_missing), -ELIBACC);
	CHECK(t4.atoi == NULL);
	check_threads_told();
	return tap_done();
}
