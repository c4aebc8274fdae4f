// SPDX-License-Identifier: MIT
/*
 * ELF-ahead (elfahead.h). Without a profile, a cold `python3 -c ...` over a
 * remote image starts with a chain of misses that ld.so takes one after
 * another: python3's header, ld.so, then libm, libz, libexpat and libc, each
 * opened only once the previous one is mapped; later each extension module
 * (_sqlite3, _ssl, _hashlib) and then its libraries (libsqlite3, libssl,
 * libcrypto). Miss-ahead (ops.c) fetches the rest of a file after its first
 * miss but cannot know the next file. Here a prefetch worker, ahead of its
 * other jobs (slimfs_prefetch_call), parses the ELF file whose header was
 * just read (its bytes come through the chunk cache: usually the
 * chunk just read), resolves its PT_INTERP and DT_NEEDED entries as ld.so
 * would (slimfs_elf_search_dirs: RPATH/RUNPATH with $ORIGIN, then the
 * default directories of its machine; the image's ld.so.conf is not read)
 * and queues the miss-ahead window of each library found
 * (slimfs_fs_window: what a miss at its start would fetch ahead), all of
 * one object's at once, first pieces first (follow), then does the same for
 * those libraries, breadth first. Each file is examined once per mount (a
 * bit per inode, fs->elf_seen, set also when ld.so reads the header of a
 * library already fetched ahead), a job looks at most EA_OBJS objects and
 * fetches at most EA_BYTES.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "elfahead.h"
#include "elfclosure.h"
#include "ops.h"
#include "prefetch.h"
#include "slimfs/util.h"

/* Objects one job parses (the program and the libraries it pulls in). */
#define EA_OBJS 32u
/* Compressed bytes one job fetches ahead. */
#define EA_BYTES (32ull << 20)
/* Chunks of one library's window (2 MiB in chunks of 16 KiB and more). */
#define EA_WINDOW 128u
/* Compressed bytes past the first pieces that one object's libraries queue
 * (16 pieces: half the workers' queue). */
#define EA_REST (16 * SLIMFS_MISS_AHEAD_PIECE)
/* Directories from the program up to the root (for $ORIGIN). */
#define EA_DEPTH 64u

/* Sets id's bit; whether it was clear. */
static bool first_time(struct slimfs_fs *fs, uint32_t id)
{
	return id < fs->info->inode_count && slimfs_bits_set(fs->elf_seen, id);
}

struct file_src {
	struct slimfs_fs *fs;
	const struct slimfs_inode *in;
};

static int file_read(void *ud, void *buf, size_t len, uint64_t off)
{
	const struct file_src *f = ud;

	return slimfs_fs_read_file(f->fs, f->in, off, len, buf);
}

/* The directory holding inode id, as a path of the image (for $ORIGIN); NULL: unknown. */
static char *dir_path(struct slimfs_fs *fs, uint32_t id)
{
	char path[SLIMFS_RESOLVE_PATH_MAX], *at = path + sizeof(path) - 1;
	struct slimfs_inode in;

	*at = '\0';
	if (slimfs_index_inode(fs->idx, id, &in) < 0)
		return NULL;
	for (unsigned depth = 0; in.id != 0; depth++) {
		struct slimfs_inode dir;
		struct slimfs_dirent de;
		uint32_t i;

		if (depth == EA_DEPTH || slimfs_index_inode(fs->idx, in.parent, &dir) < 0)
			return NULL;
		if (depth) { /* the file's own name is not part of its directory */
			for (i = 0; i < dir.count; i++)
				if (slimfs_index_dirent(fs->idx, &dir, i, &de) < 0 ||
				    de.ino == in.id)
					break;
			if (i == dir.count || de.ino != in.id ||
			    (size_t)(at - path) < de.name_len + 1)
				return NULL;
			at -= de.name_len;
			memcpy(at, de.name, de.name_len);
			*--at = '/';
		}
		in = dir;
	}
	return strdup(*at ? at : "/");
}

struct job {
	struct slimfs_fs *fs;
	struct slimfs_elf_obj objs[EA_OBJS];
	uint32_t ids[EA_OBJS];
	size_t nobj;
	uint64_t bytes;
};

/* Parses inode id as an object loaded by objs[loader] (-1: the program) from dir (owned). */
static void add_obj(struct job *j, uint32_t id, char *dir, long loader)
{
	struct slimfs_fs *fs = j->fs;
	struct slimfs_elf_obj *o = &j->objs[j->nobj];
	struct slimfs_inode in;
	struct file_src f = {fs, &in};
	const char *why = NULL;

	if (!dir || j->nobj == EA_OBJS || slimfs_index_inode(fs->idx, id, &in) < 0 ||
	    slimfs_elf_parse(file_read, &f, in.size, &o->ei, &why) < 0 ||
	    (loader >= 0 && (o->ei.cls != j->objs[loader].ei.cls ||
			     o->ei.machine != j->objs[loader].ei.machine))) {
		free(dir);
		return;
	}
	o->node = NULL;
	o->dir = dir;
	o->loader = loader;
	j->ids[j->nobj++] = id;
}

/* The library called name, searched in d: its inode and directory, or false. */
static bool find_lib(struct job *j, const char *name, const struct slimfs_dirlist *d, uint32_t *id,
		     char **dir)
{
	struct slimfs_fs *fs = j->fs;
	struct slimfs_inode in;

	for (size_t k = 0; k < (strchr(name, '/') ? 1 : d->n); k++) {
		char *path = NULL;
		int r;

		if (strchr(name, '/'))
			r = asprintf(&path, "%s", name);
		else
			r = asprintf(&path, "%s/%s", d->v[k], name);
		if (r < 0)
			return false;
		if (slimfs_index_resolve_follow(fs->idx, path, id) == 0 &&
		    slimfs_index_inode(fs->idx, *id, &in) == 0 && S_ISREG(in.mode) &&
		    slimfs_inode_in_view(&in, fs->view)) {
			*strrchr(path, '/') = '\0';
			*dir = path;
			return true;
		}
		free(path);
	}
	return false;
}

/*
 * Queues the windows of the libraries objs[i] needs, then parses them. The
 * workers serve the first piece of each library first, in the order ld.so
 * opens them (PT_INTERP, then DT_NEEDED), then the rest of the windows in
 * that order: a window queued goes to the front of the queue, so the rests
 * are queued first, last library first, then the first pieces likewise. The
 * rests are bounded by EA_REST (the queue holds 32 pieces).
 */
static void follow(struct job *j, size_t i)
{
	struct slimfs_fs *fs = j->fs;
	const struct slimfs_elf_info *ei = &j->objs[i].ei;
	size_t n = ei->nneeded + (ei->interp ? 1 : 0), nf = 0;
	uint32_t found[EA_OBJS], win[EA_OBJS][EA_WINDOW];
	size_t nwin[EA_OBJS], nhead[EA_OBJS];
	char *dirs[EA_OBJS];
	struct slimfs_dirlist d = {0};
	uint64_t rest = 0;

	if (slimfs_elf_search_dirs(j->objs, i, NULL, NULL, 0, &d) < 0) {
		slimfs_dirlist_clear(&d);
		return;
	}
	for (size_t k = 0; k < n && nf < EA_OBJS - j->nobj; k++) {
		/* ld.so itself first: the kernel maps it right after the program */
		const char *name =
			k == 0 && ei->interp ? ei->interp : ei->needed[k - (ei->interp ? 1 : 0)];
		struct slimfs_inode in;
		uint64_t bytes, head = 0;

		if (!find_lib(j, name, &d, &found[nf], &dirs[nf]))
			continue;
		if (!first_time(fs, found[nf]) || j->bytes >= EA_BYTES ||
		    slimfs_index_inode(fs->idx, found[nf], &in) < 0) {
			free(dirs[nf]);
			continue;
		}
		nwin[nf] =
			slimfs_fs_window(fs, &in, EA_BYTES - j->bytes, win[nf], EA_WINDOW, &bytes);
		j->bytes += bytes;
		for (nhead[nf] = 0; nhead[nf] < nwin[nf]; nhead[nf]++) {
			struct slimfs_chunk ch;

			if (slimfs_index_chunk(fs->idx, win[nf][nhead[nf]], &ch) < 0 ||
			    (nhead[nf] && head + ch.csize > SLIMFS_MISS_AHEAD_PIECE))
				break;
			head += ch.csize;
		}
		atomic_fetch_add_explicit(&fs->stats.elf_ahead_files, 1, memory_order_relaxed);
		nf++;
	}
	slimfs_dirlist_clear(&d);
	for (size_t k = 0; k < nf; k++) {
		for (size_t c = nhead[k]; c < nwin[k]; c++) {
			struct slimfs_chunk ch;

			if (slimfs_index_chunk(fs->idx, win[k][c], &ch) < 0 ||
			    rest + ch.csize > EA_REST) {
				nwin[k] = c;
				break;
			}
			rest += ch.csize;
		}
	}
	for (size_t k = nf; k-- > 0;)
		slimfs_prefetch_miss_ahead(fs->prefetch, win[k] + nhead[k], nwin[k] - nhead[k]);
	for (size_t k = nf; k-- > 0;)
		slimfs_prefetch_miss_ahead(fs->prefetch, win[k], nhead[k]);
	for (size_t k = 0; k < nf; k++)
		add_obj(j, found[k], dirs[k], (long)i);
}

/* A prefetch call (slimfs_prefetch_fn): the job of inode id. */
static void run_job(void *fs, uint32_t id)
{
	struct job j = {.fs = fs};

	/* libelf is loaded on the first ELF file, here, off the readers' path. */
	if (slimfs_elf_init() < 0)
		return;
	add_obj(&j, id, dir_path(fs, id), -1);
	for (size_t i = 0; i < j.nobj; i++)
		follow(&j, i);
	for (size_t i = 0; i < j.nobj; i++) {
		free(j.objs[i].dir);
		slimfs_elf_info_clear(&j.objs[i].ei);
	}
}

int slimfs_elfahead_enable(struct slimfs_fs *fs)
{
	fs->elf_seen = slimfs_bits_new(fs->info->inode_count);
	if (!fs->elf_seen)
		return -ENOMEM;
	slimfs_prefetch_set_call(fs->prefetch, run_job, fs);
	return 0;
}

void slimfs_elfahead_note(struct slimfs_fs *fs, uint32_t id)
{
	if (fs->elf_seen && first_time(fs, id))
		slimfs_prefetch_call(fs->prefetch, id);
}
