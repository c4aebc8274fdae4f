// SPDX-License-Identifier: MIT
/*
 * Libraries loaded on first use (issue #3: mount time).
 *
 * libcurl, libarchive and libelf pull ~40 shared objects into the process
 * (TLS, Kerberos, LDAP, ICU, libstdc++...). Mounting a local image needs
 * none of them, and reading them from a cold disk was most of a cold mount.
 * So slimfs compiles against their headers but does not link them: each is
 * dlopen()ed by its soname the first time a path needs it, and its functions
 * are called through a table of pointers whose types come from the headers
 * (__typeof__), so the compiler checks every call as before.
 *
 * This header is the generic part; each library has a private header that
 * replaces its public one in the .c files using it (dl_archive.h, dl_curl.h,
 * dl_elf.h) and one load function, to be called by every entry point before
 * the first call into the library.
 */
#ifndef SLIMFS_DL_H
#define SLIMFS_DL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct slimfs_dl_sym {
	const char *name;
	size_t off; /* of its pointer in the library's table */
};

struct slimfs_dl_lib {
	const char *soname;
	const struct slimfs_dl_sym *syms;
	size_t nsyms;
	void *table;	     /* struct of function pointers, filled once */
	void (*after)(void); /* run once after a successful load, or NULL */
	const char *files;   /* "PATH:PATH...": what a load maps (meson), or NULL */
	_Atomic int state;   /* 0 not tried, 1 loaded, -errno failed */
	_Atomic bool preloading;
	pthread_t preloader; /* valid while preload_joinable */
	_Atomic bool preload_joinable;
};

/* Loads lib once (thread-safe; the first failure is logged, once:
 * "cannot load SONAME: <dlerror>"). Cheap after the first call.
 * Returns 0, -ELIBACC (library not found or not loadable) or -ELIBBAD (a
 * symbol is missing). */
int slimfs_dl_load(struct slimfs_dl_lib *lib);

/*
 * Starts loading lib on a thread of its own, so that the caller's next steps
 * overlap the load (libcurl: ~20 ms of relocations and constructors warm,
 * ~40 ms with the page cache dropped, before a remote mount can send its
 * first request), and meanwhile asks the kernel to read lib->files ahead: a
 * cold load otherwise reads ~30 files one after another (~10 ms less). The
 * first slimfs_dl_load() waits for that thread; a failure is logged by it as
 * usual. Call it in the process that will use the library (no thread crosses
 * a fork) and after its heap settings (the threads allocate). The read-ahead
 * requests are made by a second thread (opening ~30 cold files takes ~10 ms):
 * the caller goes on at once. Without a thread, loads on first use as before.
 */
void slimfs_dl_preload(struct slimfs_dl_lib *lib);

/*
 * Waits until the preload thread has ended, load and thread exit included, by
 * joining it (once; nothing to do without a preload). A load that returned is
 * not enough before exit() or fork(): the thread then still runs its exit,
 * where the library's thread-local destructors free what it allocated
 * (OpenSSL's per-thread state, after curl_global_init). An exit() under them
 * runs the library's atexit cleanup concurrently (LeakSanitizer reported
 * OpenSSL's 904 bytes as leaked: a mount failing its --digest check, ASan
 * build, 1 in 2 runs). Call it from the thread that called slimfs_dl_preload.
 */
void slimfs_dl_preload_join(struct slimfs_dl_lib *lib);

/*
 * The read-ahead thread of slimfs_dl_preload() is detached and may outlive
 * its work (~30 cold files; the loading thread is joined:
 * slimfs_dl_preload_join). For a check that counts the process' threads:
 * whether tid is such a thread, and how many of them have started without
 * having told their tid yet (any unknown thread may be one of those: ask for
 * that count before listing the threads).
 */
bool slimfs_dl_thread(pid_t tid);
unsigned slimfs_dl_threads_untold(void);

/* The library is loaded / a preload was started (cheap checks, no waiting). */
bool slimfs_dl_loaded(struct slimfs_dl_lib *lib);
bool slimfs_dl_preloaded(struct slimfs_dl_lib *lib);

/* One slot of a table: `X(archive_read_new)` -> a pointer of its exact type. */
#define SLIMFS_DL_SLOT(sym) __typeof__(sym) *sym;

#endif
