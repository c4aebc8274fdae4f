// SPDX-License-Identifier: MIT
/*
 * libelf, loaded on first use (dl.h). Include this instead of <libelf.h> and
 * <gelf.h>, and call slimfs_dl_elf_load() before the first elf_*() call
 * (slimfs_elf_closure()). Call sites keep libelf's names: each is a macro for
 * its table slot, for the reasons given in dl_archive.h.
 */
#ifndef SLIMFS_DL_ELF_H
#define SLIMFS_DL_ELF_H

#include <gelf.h>
#include <libelf.h>

#include "dl.h"

#define SLIMFS_DL_ELF_SYMS(X)                                                                      \
	X(elf_end)                                                                                 \
	X(elf_errmsg)                                                                              \
	X(elf_getdata_rawchunk)                                                                    \
	X(elf_getphdrnum)                                                                          \
	X(elf_kind)                                                                                \
	X(elf_memory)                                                                              \
	X(elf_version)                                                                             \
	X(gelf_fsize)                                                                              \
	X(gelf_getdyn)                                                                             \
	X(gelf_getehdr)                                                                            \
	X(gelf_getphdr)

struct slimfs_dl_elf {
	SLIMFS_DL_ELF_SYMS(SLIMFS_DL_SLOT)
};
/* Written once under dl.c's lock; read-only afterwards. */
extern struct slimfs_dl_elf slimfs_dl_elf;

/* 0, or -ELIBACC/-ELIBBAD after logging "cannot load libelf.so.1: ...". */
int slimfs_dl_elf_load(void);
/* Starts that load on a thread of its own (dl.h: slimfs_dl_preload()). */
void slimfs_dl_elf_preload(void);
bool slimfs_dl_elf_loaded(void);
bool slimfs_dl_elf_preloaded(void);
void slimfs_dl_elf_preload_join(void);

#ifndef SLIMFS_DL_NO_REDIRECT
#define elf_end		     (slimfs_dl_elf.elf_end)
#define elf_errmsg	     (slimfs_dl_elf.elf_errmsg)
#define elf_getdata_rawchunk (slimfs_dl_elf.elf_getdata_rawchunk)
#define elf_getphdrnum	     (slimfs_dl_elf.elf_getphdrnum)
#define elf_kind	     (slimfs_dl_elf.elf_kind)
#define elf_memory	     (slimfs_dl_elf.elf_memory)
#define elf_version	     (slimfs_dl_elf.elf_version)
#define gelf_fsize	     (slimfs_dl_elf.gelf_fsize)
#define gelf_getdyn	     (slimfs_dl_elf.gelf_getdyn)
#define gelf_getehdr	     (slimfs_dl_elf.gelf_getehdr)
#define gelf_getphdr	     (slimfs_dl_elf.gelf_getphdr)
#endif

#endif
