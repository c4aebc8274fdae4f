// SPDX-License-Identifier: MIT
/*
 * libcurl, loaded on first use (dl.h). Include this instead of <curl/curl.h>,
 * and call slimfs_dl_curl_load() before the first curl_*() call of an entry
 * point (slimfs_backend_open_http(), slimfs_backend_open_oci(),
 * slimfs_oci_push()); it also runs curl_global_init() once. Call sites keep
 * libcurl's names: each is a macro for its table slot, for the reasons given
 * in dl_archive.h.
 *
 * curl.h defines curl_easy_setopt(), curl_easy_getinfo() and
 * curl_share_setopt() as function-like macros (with gcc, typecheck-gcc.h's
 * checks of the option's argument type); they are replaced by the slots here,
 * so those argument checks are lost: the slots still check the fixed
 * arguments, and every variadic argument in fs/ is passed with its exact type
 * (long, curl_off_t, pointers) as before.
 */
#ifndef SLIMFS_DL_CURL_H
#define SLIMFS_DL_CURL_H

#include <curl/curl.h>

#include "dl.h"

#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_share_setopt

#define SLIMFS_DL_CURL_SYMS(X)                                                                     \
	X(curl_easy_cleanup)                                                                       \
	X(curl_easy_escape)                                                                        \
	X(curl_easy_getinfo)                                                                       \
	X(curl_easy_init)                                                                          \
	X(curl_easy_perform)                                                                       \
	X(curl_easy_setopt)                                                                        \
	X(curl_easy_strerror)                                                                      \
	X(curl_free)                                                                               \
	X(curl_global_init)                                                                        \
	X(curl_share_cleanup)                                                                      \
	X(curl_share_init)                                                                         \
	X(curl_share_setopt)                                                                       \
	X(curl_slist_append)                                                                       \
	X(curl_slist_free_all)

struct slimfs_dl_curl {
	SLIMFS_DL_CURL_SYMS(SLIMFS_DL_SLOT)
};
/* Written once under dl.c's lock; read-only afterwards. */
extern struct slimfs_dl_curl slimfs_dl_curl;

/* 0, or -ELIBACC/-ELIBBAD after logging "cannot load libcurl.so.4: ...". */
int slimfs_dl_curl_load(void);
/* Starts that load on a thread of its own (dl.h: slimfs_dl_preload()). */
void slimfs_dl_curl_preload(void);
bool slimfs_dl_curl_loaded(void);
bool slimfs_dl_curl_preloaded(void);
void slimfs_dl_curl_preload_join(void);

#ifndef SLIMFS_DL_NO_REDIRECT
#define curl_easy_cleanup   (slimfs_dl_curl.curl_easy_cleanup)
#define curl_easy_escape    (slimfs_dl_curl.curl_easy_escape)
#define curl_easy_getinfo   (slimfs_dl_curl.curl_easy_getinfo)
#define curl_easy_init	    (slimfs_dl_curl.curl_easy_init)
#define curl_easy_perform   (slimfs_dl_curl.curl_easy_perform)
#define curl_easy_setopt    (slimfs_dl_curl.curl_easy_setopt)
#define curl_easy_strerror  (slimfs_dl_curl.curl_easy_strerror)
#define curl_free	    (slimfs_dl_curl.curl_free)
#define curl_global_init    (slimfs_dl_curl.curl_global_init)
#define curl_share_cleanup  (slimfs_dl_curl.curl_share_cleanup)
#define curl_share_init	    (slimfs_dl_curl.curl_share_init)
#define curl_share_setopt   (slimfs_dl_curl.curl_share_setopt)
#define curl_slist_append   (slimfs_dl_curl.curl_slist_append)
#define curl_slist_free_all (slimfs_dl_curl.curl_slist_free_all)
#endif

#endif
