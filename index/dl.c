// SPDX-License-Identifier: MIT
/*
 * The loader of dl.h and the three lazily loaded libraries. The sonames come
 * from meson (SLIMFS_SONAME_*: read at configure time from the SONAME of the
 * .so the linker would have used), so they follow the -dev packages.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define SLIMFS_DL_NO_REDIRECT
#include "dl.h"
#include "dl_archive.h"
#include "dl_curl.h"
#include "dl_elf.h"
#include "slimfs/util.h"

#if !defined(SLIMFS_SONAME_ARCHIVE) || !defined(SLIMFS_SONAME_CURL) || !defined(SLIMFS_SONAME_ELF)
#error "meson passes SLIMFS_SONAME_ARCHIVE, SLIMFS_SONAME_CURL and SLIMFS_SONAME_ELF"
#endif

/* Serialises first loads (dlopen is process-wide, so is this lock). */
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

static int load_locked(struct slimfs_dl_lib *lib)
{
	void *h;

	/* RTLD_NOW: a broken dependency fails here, not at some later call. */
	h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_error("cannot load %s: %s", lib->soname, dlerror());
		return -ELIBACC;
	}
	for (size_t i = 0; i < lib->nsyms; i++) {
		void *p;

		dlerror();
		p = dlsym(h, lib->syms[i].name);
		if (!p) {
			const char *e = dlerror();

			log_error("cannot load %s: %s", lib->soname,
				  e ? e : "a function is a NULL symbol");
			dlclose(h);
			return -ELIBBAD;
		}
		/* POSIX guarantees the object -> function pointer conversion;
		 * memcpy keeps it out of ISO C's sight (-Wpedantic). */
		memcpy((char *)lib->table + lib->syms[i].off, &p, sizeof(p));
	}
	/* h is never closed: the table points into it for the process' life. */
	if (lib->after)
		lib->after();
	return 1;
}

int slimfs_dl_load(struct slimfs_dl_lib *lib)
{
	int s = atomic_load_explicit(&lib->state, memory_order_acquire);

	if (s == 0) {
		pthread_mutex_lock(&load_lock);
		s = atomic_load_explicit(&lib->state, memory_order_relaxed);
		if (s == 0) {
			s = load_locked(lib);
			atomic_store_explicit(&lib->state, s, memory_order_release);
		}
		pthread_mutex_unlock(&load_lock);
	}
	return s > 0 ? 0 : s;
}

/* slimfs_dl_thread(): the preload threads started, and those that told their tid */
#define TOLD_MAX 8
static atomic_uint threads_started, threads_told;
static _Atomic pid_t told_tids[TOLD_MAX];

/* First thing in each thread of spawn_detached(). */
static void tell_tid(void)
{
	/* threads tell at once: each takes a free slot, then counts itself
	 * (none free: it stays untold, which only loosens the check) */
	for (unsigned i = 0; i < TOLD_MAX; i++) {
		pid_t none = 0;

		if (atomic_compare_exchange_strong(&told_tids[i], &none, gettid())) {
			atomic_fetch_add(&threads_told, 1);
			return;
		}
	}
}

bool slimfs_dl_thread(pid_t tid)
{
	for (unsigned i = 0; i < TOLD_MAX; i++)
		if (atomic_load(&told_tids[i]) == tid)
			return true;
	return false;
}

unsigned slimfs_dl_threads_untold(void)
{
	/* told first: a thread that tells in between is counted as untold */
	unsigned told = atomic_load(&threads_told);

	return atomic_load(&threads_started) - told;
}

static void *preload_main(void *arg)
{
	(void)slimfs_dl_load(arg); /* its entry point's own call returns the result */
	return NULL;
}

/* posix_fadvise(WILLNEED) of each file in "PATH:PATH...": the reads are queued at once. */
static void *read_ahead(void *arg)
{
	const char *files = arg;
	char path[PATH_MAX];

	tell_tid();
	while (files && *files) {
		const char *end = strchrnul(files, ':');
		size_t n = (size_t)(end - files);

		if (n < sizeof(path)) {
			int fd;

			memcpy(path, files, n);
			path[n] = '\0';
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
				close(fd);
			}
		}
		files = *end ? end + 1 : end;
	}
	return NULL;
}

static int spawn_detached(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (pthread_attr_init(&attr) != 0)
		return -ENOMEM;
	(void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	atomic_fetch_add(&threads_started, 1); /* before it can run */
	r = pthread_create(&t, &attr, fn, arg);
	if (r != 0)
		atomic_fetch_sub(&threads_started, 1);
	pthread_attr_destroy(&attr);
	return -r;
}

void slimfs_dl_preload_join(struct slimfs_dl_lib *lib)
{
	if (atomic_exchange(&lib->preload_joinable, false))
		(void)pthread_join(lib->preloader, NULL);
}

bool slimfs_dl_loaded(struct slimfs_dl_lib *lib)
{
	return atomic_load_explicit(&lib->state, memory_order_acquire) > 0;
}

bool slimfs_dl_preloaded(struct slimfs_dl_lib *lib)
{
	return atomic_load(&lib->preloading);
}

void slimfs_dl_preload(struct slimfs_dl_lib *lib)
{
	if (atomic_load_explicit(&lib->state, memory_order_acquire) != 0 ||
	    atomic_exchange(&lib->preloading, true))
		return;
	/* The caller goes on at once: its first requests need no library. Joined
	 * (slimfs_dl_preload_join); the read-ahead thread touches no library. */
	if (pthread_create(&lib->preloader, NULL, preload_main, lib) != 0)
		return;
	atomic_store(&lib->preload_joinable, true);
	if (lib->files && *lib->files)
		(void)spawn_detached(read_ahead, (void *)lib->files);
}

/* The table of one library: its symbols' names and slots, its loader. */
#define SYM_ENTRY(tab, sym) {#sym, offsetof(struct tab, sym)},
#define DEFINE_LIB(name, so, paths, sym_list, after_fn)                                            \
	struct slimfs_dl_##name slimfs_dl_##name;                                                  \
	static const struct slimfs_dl_sym name##_syms[] = {sym_list(name##_SYM)};                  \
	static struct slimfs_dl_lib name##_lib = {.soname = so,                                    \
						  .syms = name##_syms,                             \
						  .nsyms = ARRAY_SIZE(name##_syms),                \
						  .table = &slimfs_dl_##name,                      \
						  .after = after_fn,                               \
						  .files = paths};                                 \
	int slimfs_dl_##name##_load(void)                                                          \
	{                                                                                          \
		return slimfs_dl_load(&name##_lib);                                                \
	}                                                                                          \
	void slimfs_dl_##name##_preload(void)                                                      \
	{                                                                                          \
		slimfs_dl_preload(&name##_lib);                                                    \
	}                                                                                          \
	bool slimfs_dl_##name##_loaded(void)                                                       \
	{                                                                                          \
		return slimfs_dl_loaded(&name##_lib);                                              \
	}                                                                                          \
	bool slimfs_dl_##name##_preloaded(void)                                                    \
	{                                                                                          \
		return slimfs_dl_preloaded(&name##_lib);                                           \
	}                                                                                          \
	void slimfs_dl_##name##_preload_join(void)                                                 \
	{                                                                                          \
		slimfs_dl_preload_join(&name##_lib);                                               \
	}

#define archive_SYM(sym) SYM_ENTRY(slimfs_dl_archive, sym)
#define curl_SYM(sym)	 SYM_ENTRY(slimfs_dl_curl, sym)
#define elf_SYM(sym)	 SYM_ENTRY(slimfs_dl_elf, sym)

/* libcurl wants its global init before any other thread uses it; once. */
static void curl_after_load(void)
{
	slimfs_dl_curl.curl_global_init(CURL_GLOBAL_DEFAULT);
}

#ifndef SLIMFS_FILES_ARCHIVE /* meson defines them; an empty list reads nothing ahead */
#define SLIMFS_FILES_ARCHIVE ""
#endif
#ifndef SLIMFS_FILES_CURL
#define SLIMFS_FILES_CURL ""
#endif
#ifndef SLIMFS_FILES_ELF
#define SLIMFS_FILES_ELF ""
#endif

DEFINE_LIB(archive, SLIMFS_SONAME_ARCHIVE, SLIMFS_FILES_ARCHIVE, SLIMFS_DL_ARCHIVE_SYMS, NULL)
DEFINE_LIB(curl, SLIMFS_SONAME_CURL, SLIMFS_FILES_CURL, SLIMFS_DL_CURL_SYMS, curl_after_load)
DEFINE_LIB(elf, SLIMFS_SONAME_ELF, SLIMFS_FILES_ELF, SLIMFS_DL_ELF_SYMS, NULL)
