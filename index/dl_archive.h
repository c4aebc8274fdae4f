// SPDX-License-Identifier: MIT
/*
 * libarchive, loaded on first use (dl.h). Include this instead of
 * <archive.h> and <archive_entry.h>, and call slimfs_dl_archive_load() before
 * the first archive_*() call of an entry point (slimfs_ingest(),
 * slimfs_ingest_archive()).
 *
 * Call sites keep libarchive's own names: each name used is a macro for its
 * slot in the table (`archive_read_new(a)` is
 * `(slimfs_dl_archive.archive_read_new)(a)`), so the code reads like every
 * libarchive example and the diff against a linked build is the #include.
 * Explicit `A.read_new()` calls would change ~70 lines for no gain in checking:
 * the slots have the headers' exact types either way. A function used but not
 * listed here fails the link of slimfs (the library is not linked); a name
 * listed here but missing from the library fails the load with -ELIBBAD.
 */
#ifndef SLIMFS_DL_ARCHIVE_H
#define SLIMFS_DL_ARCHIVE_H

#include <archive.h>
#include <archive_entry.h>

#include "dl.h"

#define SLIMFS_DL_ARCHIVE_SYMS(X)                                                                  \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_gid)                                                                       \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_mtime)                                                                     \
	X(archive_entry_mtime_is_set)                                                              \
	X(archive_entry_mtime_nsec)                                                                \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_pathname_utf8)                                                             \
	X(archive_entry_perm)                                                                      \
	X(archive_entry_rdev)                                                                      \
	X(archive_entry_size)                                                                      \
	X(archive_entry_size_is_set)                                                               \
	X(archive_entry_symlink)                                                                   \
	X(archive_entry_symlink_utf8)                                                              \
	X(archive_entry_uid)                                                                       \
	X(archive_entry_xattr_next)                                                                \
	X(archive_entry_xattr_reset)                                                               \
	X(archive_errno)                                                                           \
	X(archive_error_string)                                                                    \
	X(archive_format)                                                                          \
	X(archive_read_data)                                                                       \
	X(archive_read_data_block)                                                                 \
	X(archive_read_free)                                                                       \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open)                                                                       \
	X(archive_read_open_fd)                                                                    \
	X(archive_read_support_filter_bzip2)                                                       \
	X(archive_read_support_filter_compress)                                                    \
	X(archive_read_support_filter_gzip)                                                        \
	X(archive_read_support_filter_lz4)                                                         \
	X(archive_read_support_filter_lzma)                                                        \
	X(archive_read_support_filter_none)                                                        \
	X(archive_read_support_filter_xz)                                                          \
	X(archive_read_support_filter_zstd)                                                        \
	X(archive_read_support_format_cpio)                                                        \
	X(archive_read_support_format_empty)                                                       \
	X(archive_read_support_format_gnutar)                                                      \
	X(archive_read_support_format_tar)                                                         \
	X(archive_set_error)

struct slimfs_dl_archive {
	SLIMFS_DL_ARCHIVE_SYMS(SLIMFS_DL_SLOT)
};
/* Process-wide like the library itself: written once under dl.c's lock, before
 * slimfs_dl_archive_load() first returns 0; read-only afterwards. */
extern struct slimfs_dl_archive slimfs_dl_archive;

/* 0, or -ELIBACC/-ELIBBAD after logging "cannot load libarchive.so.13: ...". */
int slimfs_dl_archive_load(void);
/* Starts that load on a thread of its own (dl.h: slimfs_dl_preload()). */
void slimfs_dl_archive_preload(void);
bool slimfs_dl_archive_loaded(void);
bool slimfs_dl_archive_preloaded(void);
void slimfs_dl_archive_preload_join(void);

#ifndef SLIMFS_DL_NO_REDIRECT
#define archive_entry_filetype		  (slimfs_dl_archive.archive_entry_filetype)
#define archive_entry_gid		  (slimfs_dl_archive.archive_entry_gid)
#define archive_entry_hardlink		  (slimfs_dl_archive.archive_entry_hardlink)
#define archive_entry_mtime		  (slimfs_dl_archive.archive_entry_mtime)
#define archive_entry_mtime_is_set	  (slimfs_dl_archive.archive_entry_mtime_is_set)
#define archive_entry_mtime_nsec	  (slimfs_dl_archive.archive_entry_mtime_nsec)
#define archive_entry_pathname		  (slimfs_dl_archive.archive_entry_pathname)
#define archive_entry_pathname_utf8	  (slimfs_dl_archive.archive_entry_pathname_utf8)
#define archive_entry_perm		  (slimfs_dl_archive.archive_entry_perm)
#define archive_entry_rdev		  (slimfs_dl_archive.archive_entry_rdev)
#define archive_entry_size		  (slimfs_dl_archive.archive_entry_size)
#define archive_entry_size_is_set	  (slimfs_dl_archive.archive_entry_size_is_set)
#define archive_entry_symlink		  (slimfs_dl_archive.archive_entry_symlink)
#define archive_entry_symlink_utf8	  (slimfs_dl_archive.archive_entry_symlink_utf8)
#define archive_entry_uid		  (slimfs_dl_archive.archive_entry_uid)
#define archive_entry_xattr_next	  (slimfs_dl_archive.archive_entry_xattr_next)
#define archive_entry_xattr_reset	  (slimfs_dl_archive.archive_entry_xattr_reset)
#define archive_errno			  (slimfs_dl_archive.archive_errno)
#define archive_error_string		  (slimfs_dl_archive.archive_error_string)
#define archive_format			  (slimfs_dl_archive.archive_format)
#define archive_read_data		  (slimfs_dl_archive.archive_read_data)
#define archive_read_data_block		  (slimfs_dl_archive.archive_read_data_block)
#define archive_read_free		  (slimfs_dl_archive.archive_read_free)
#define archive_read_new		  (slimfs_dl_archive.archive_read_new)
#define archive_read_next_header	  (slimfs_dl_archive.archive_read_next_header)
#define archive_read_open		  (slimfs_dl_archive.archive_read_open)
#define archive_read_open_fd		  (slimfs_dl_archive.archive_read_open_fd)
#define archive_read_support_filter_bzip2 (slimfs_dl_archive.archive_read_support_filter_bzip2)
#define archive_read_support_filter_compress                                                       \
	(slimfs_dl_archive.archive_read_support_filter_compress)
#define archive_read_support_filter_gzip   (slimfs_dl_archive.archive_read_support_filter_gzip)
#define archive_read_support_filter_lz4	   (slimfs_dl_archive.archive_read_support_filter_lz4)
#define archive_read_support_filter_lzma   (slimfs_dl_archive.archive_read_support_filter_lzma)
#define archive_read_support_filter_none   (slimfs_dl_archive.archive_read_support_filter_none)
#define archive_read_support_filter_xz	   (slimfs_dl_archive.archive_read_support_filter_xz)
#define archive_read_support_filter_zstd   (slimfs_dl_archive.archive_read_support_filter_zstd)
#define archive_read_support_format_cpio   (slimfs_dl_archive.archive_read_support_format_cpio)
#define archive_read_support_format_empty  (slimfs_dl_archive.archive_read_support_format_empty)
#define archive_read_support_format_gnutar (slimfs_dl_archive.archive_read_support_format_gnutar)
#define archive_read_support_format_tar	   (slimfs_dl_archive.archive_read_support_format_tar)
#define archive_set_error		   (slimfs_dl_archive.archive_set_error)
#endif

#endif
