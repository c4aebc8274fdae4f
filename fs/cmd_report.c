// SPDX-License-Identifier: MIT
/*
 * slimfs report: the attack surface a view exposes, measured against the
 * full image: entries, regular files and bytes, shells, package managers,
 * setuid and setgid files, file capabilities, world-writable entries and the
 * installed packages (dpkg, apk) that still have a file in the view. Printed
 * as a table, as one JSON object, or as an SPDX 2.3 / CycloneDX 1.5 SBOM of
 * the packages present in the view.
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "cmds.h"
#include "image.h"
#include "slimfs/format.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"

#define ROOT_INO	 0u
#define SYMLINK_HOPS_MAX 40u
#define RESOLVE_PATH_MAX (64u << 10)
#define DB_FILE_MAX	 (256ull << 20) /* dpkg status, apk installed, .list files */
#define SCAN_FILE_MAX	 (64ull << 20)	/* executables scanned for shell signatures */
#define SCAN_WINDOW	 (1u << 20)

/* Shells, matched by the name of an executable (or of a link to one). */
static const char *const shell_names[] = {
	"sh",	"bash",	 "rbash", "dash", "ash",  "zsh",  "ksh",  "ksh93",   "mksh",
	"lksh", "pdksh", "csh",	  "tcsh", "fish", "yash", "posh", "busybox",
};

/* Package managers and language package installers. "pip3.N" is matched too. */
static const char *const pkgmgr_names[] = {
	"dpkg",	  "dpkg-deb", "dpkg-query", "apt",	"apt-get", "apt-cache", "aptitude", "apk",
	"rpm",	  "yum",      "dnf",	    "microdnf", "tdnf",	   "zypper",	"pacman",   "opkg",
	"emerge", "pip",      "pip2",	    "pip3",	"npm",	   "gem",
};

/* Byte strings that only these shells' executables carry (checked in ELF files only). */
static const struct {
	const char *name, *sig;
} shell_sigs[] = {
	{"bash", "GNU bash, version "},
	{"busybox", "BusyBox v"},
};
#define SIG_MAX 32u

/* Linux capability numbers (include/uapi/linux/capability.h), as getcap names them. */
static const char *const cap_names[] = {
	"cap_chown",
	"cap_dac_override",
	"cap_dac_read_search",
	"cap_fowner",
	"cap_fsetid",
	"cap_kill",
	"cap_setgid",
	"cap_setuid",
	"cap_setpcap",
	"cap_linux_immutable",
	"cap_net_bind_service",
	"cap_net_broadcast",
	"cap_net_admin",
	"cap_net_raw",
	"cap_ipc_lock",
	"cap_ipc_owner",
	"cap_sys_module",
	"cap_sys_rawio",
	"cap_sys_chroot",
	"cap_sys_ptrace",
	"cap_sys_pacct",
	"cap_sys_admin",
	"cap_sys_boot",
	"cap_sys_nice",
	"cap_sys_resource",
	"cap_sys_time",
	"cap_sys_tty_config",
	"cap_mknod",
	"cap_lease",
	"cap_audit_write",
	"cap_audit_control",
	"cap_setfcap",
	"cap_mac_override",
	"cap_mac_admin",
	"cap_syslog",
	"cap_wake_alarm",
	"cap_block_suspend",
	"cap_audit_read",
	"cap_perfmon",
	"cap_bpf",
	"cap_checkpoint_restore",
};

/* vfs_cap_data (include/uapi/linux/capability.h) */
#define VFS_CAP_REVISION_MASK	0xff000000u
#define VFS_CAP_REVISION_1	0x01000000u
#define VFS_CAP_REVISION_2	0x02000000u
#define VFS_CAP_REVISION_3	0x03000000u
#define VFS_CAP_FLAGS_EFFECTIVE 0x000001u

struct finding {
	char *path;	  /* owned */
	char *target;	  /* owned or NULL: a symlink's target */
	const char *how;  /* static: "name", "content", "signature" */
	const char *tool; /* static: the shell or package manager found */
	uint32_t ino, mode, uid, gid;
	/* security.capability */
	uint64_t cap_perm, cap_inh;
	uint32_t cap_version, cap_rootid;
	bool cap_eff, cap_bad;
};

struct findings {
	struct finding *v;
	size_t n, cap;
};

struct package {
	char *name, *version, *arch; /* owned */
	const char *type;	     /* "deb" or "apk" */
	uint32_t *inos;		     /* owned: its regular files' inode ids */
	size_t ninos, cap;
	uint64_t files, visible;
	bool present;
};

struct shell_key {
	uint8_t key[32]; /* content key of an executable named like a shell */
	uint64_t size;
	const char *name;
};

struct candidate {
	uint32_t ino;
	char *path; /* owned */
};

struct walk_frame {
	struct slimfs_inode dir;
	uint32_t next;
	size_t path_len;
	bool visible;
};

struct report {
	struct slimfs_image *img; /* borrowed */
	const struct slimfs_index *idx;
	struct slimfs_reader rd;
	uint32_t view; /* SLIMFS_VIEW_NONE: the full view */
	char *view_name;
	bool scan;
	uint64_t inode_count;
	uint8_t *seen_full, *seen_view, *dir_seen; /* bitmaps by inode id */
	uint64_t entries[2], files[2], bytes[2];   /* [0] full image, [1] view */
	struct findings shells, pkgmgrs, setuid, setgid, caps, ww;
	struct shell_key *keys;
	size_t nkeys, keys_cap;
	struct candidate *cands;
	size_t ncands, cands_cap;
	struct package *pkgs;
	size_t npkgs, pkgs_cap;
	char *os_id, *os_version, *os_like; /* /etc/os-release ID, VERSION_ID, ID_LIKE */
	char *path;			    /* walk: current path */
	size_t path_cap;
};

static void report_usage(FILE *f)
{
	fprintf(f,
		"usage: slimfs report IMAGE [--view NAME] [--json | --sbom spdx|cyclonedx] [-o "
		"FILE]\n"
		"\n"
		"Reports the attack surface of a view of IMAGE against the full image: entries,\n"
		"regular files and bytes exposed, shells, package managers, setuid and setgid\n"
		"files, file capabilities, world-writable entries without the sticky bit, and the\n"
		"installed packages (dpkg, apk) that keep at least one regular file in the view.\n"
		"\n"
		"options:\n"
		"      --view NAME        view to report (default: the image's default view,\n"
		"                         else 'full')\n"
		"      --json             one JSON object with every figure and list\n"
		"      --sbom FORMAT      SBOM of the packages present in the view: 'spdx'\n"
		"                         (SPDX 2.3 JSON) or 'cyclonedx' (CycloneDX 1.5 JSON)\n"
		"      --no-scan          do not read executables' contents to find renamed "
		"shells\n"
		"  -o, --output FILE      write to FILE (replaced atomically) instead of stdout\n"
		"  -q, --quiet            print errors only\n"
		"  -h, --help             this help\n"
		"\n"
		"SOURCE_DATE_EPOCH, when set, fixes the SBOM creation time.\n");
}

static bool test_bit(const uint8_t *bm, uint32_t i)
{
	return (bm[i >> 3] >> (i & 7)) & 1u;
}

static void set_bit(uint8_t *bm, uint32_t i)
{
	bm[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static bool is_exec(uint32_t mode)
{
	return S_ISREG(mode) && (mode & 0111);
}

/*
 * Resolves path (absolute, or relative to directory dir) following symlinks
 * in every component, and in the last one too when follow_last. Every entry
 * on the way must be visible in view (SLIMFS_VIEW_NONE: any). Returns 0,
 * -ENOENT, -ENOTDIR, -ELOOP, -ENAMETOOLONG, -ENOMEM or a reader error.
 */
static int resolve(const struct slimfs_index *idx, uint32_t dir, const char *path, bool follow_last,
		   uint32_t view, uint32_t *out)
{
	_cleanup_free_ char *rest = strdup(path);
	struct slimfs_inode cur, ino;
	uint32_t cur_id = path[0] == '/' ? ROOT_INO : dir, id;
	unsigned hops = 0;
	size_t p = 0;
	int r;

	if (!rest)
		return -ENOMEM;
	r = slimfs_index_inode(idx, cur_id, &cur);
	if (r < 0)
		return r;
	for (;;) {
		size_t e, q, clen;
		bool last;

		while (rest[p] == '/')
			p++;
		if (!rest[p])
			break;
		for (e = p; rest[e] && rest[e] != '/'; e++)
			;
		for (q = e; rest[q] == '/'; q++)
			;
		clen = e - p;
		last = !rest[q];
		if (!S_ISDIR(cur.mode))
			return -ENOTDIR;
		if (clen == 1 && rest[p] == '.') {
			p = e;
			continue;
		}
		if (clen == 2 && rest[p] == '.' && rest[p + 1] == '.') {
			cur_id = cur.parent;
			r = slimfs_index_inode(idx, cur_id, &cur);
			if (r < 0)
				return r;
			p = e;
			continue;
		}
		r = slimfs_index_lookup(idx, &cur, rest + p, clen, &id);
		if (r < 0)
			return r;
		r = slimfs_index_inode(idx, id, &ino);
		if (r < 0)
			return r;
		if (!slimfs_inode_in_view(&ino, view))
			return -ENOENT;
		if (S_ISLNK(ino.mode) && (!last || follow_last)) {
			size_t tail = strlen(rest + e);
			char *n;

			if (++hops > SYMLINK_HOPS_MAX)
				return -ELOOP;
			if (memchr(ino.target, '\0', ino.target_len))
				return -ENOENT;
			if (ino.target_len + tail + 2 > RESOLVE_PATH_MAX)
				return -ENAMETOOLONG;
			n = malloc(ino.target_len + tail + 2);
			if (!n)
				return -ENOMEM;
			memcpy(n, ino.target, ino.target_len);
			n[ino.target_len] = '/';
			memcpy(n + ino.target_len + 1, rest + e, tail + 1);
			free(rest);
			rest = n;
			p = 0;
			if (ino.target_len && ino.target[0] == '/') {
				cur_id = ROOT_INO;
				r = slimfs_index_inode(idx, cur_id, &cur);
				if (r < 0)
					return r;
			}
			continue;
		}
		cur_id = id;
		cur = ino;
		p = e;
	}
	*out = cur_id;
	return 0;
}

/* Reads a regular file of the full image (symlinks followed), NUL-terminated. */
static int read_image_file(struct report *r, const char *path, char **out, size_t *len)
{
	_cleanup_free_ char *buf = NULL;
	struct slimfs_inode ino;
	uint64_t off = 0;
	uint32_t id;
	int ret;

	ret = resolve(r->idx, ROOT_INO, path, true, SLIMFS_VIEW_NONE, &id);
	if (ret < 0)
		return ret;
	ret = slimfs_index_inode(r->idx, id, &ino);
	if (ret < 0)
		return ret;
	if (!S_ISREG(ino.mode))
		return -ENOENT;
	if (ino.size > DB_FILE_MAX) {
		log_warn("'%s': %" PRIu64 " bytes is too large to be read, skipped", path,
			 ino.size);
		return -EFBIG;
	}
	buf = malloc((size_t)ino.size + 1);
	if (!buf)
		return -ENOMEM;
	while (off < ino.size) {
		ssize_t n =
			slimfs_reader_pread(&r->rd, &ino, buf + off, (size_t)(ino.size - off), off);
		if (n < 0)
			return log_error_errno((int)n, "'%s': cannot read", path);
		if (n == 0)
			return log_error_errno(-EIO, "'%s': short read at %" PRIu64, path, off);
		off += (uint64_t)n;
	}
	buf[ino.size] = '\0';
	*len = (size_t)ino.size;
	*out = steal_ptr(&buf);
	return 0;
}

static int add_finding(struct findings *fs, const char *path, const struct slimfs_inode *ino,
		       const char *how, const char *tool, struct finding **out)
{
	struct finding *f;
	int r;

	r = SLIMFS_GROW(fs->v, fs->cap, fs->n + 1, 16);
	if (r < 0)
		return r;
	f = &fs->v[fs->n];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	if (S_ISLNK(ino->mode))
		f->target = strndup(ino->target, ino->target_len);
	if (!f->path || (S_ISLNK(ino->mode) && !f->target)) {
		free(f->path);
		free(f->target);
		return -ENOMEM;
	}
	f->how = how;
	f->tool = tool;
	f->ino = ino->id;
	f->mode = ino->mode;
	f->uid = ino->uid;
	f->gid = ino->gid;
	fs->n++;
	if (out)
		*out = f;
	return 0;
}

static void findings_free(struct findings *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->v[i].path);
		free(fs->v[i].target);
	}
	free(fs->v);
}

static const char *match_name(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return names[i];
	return NULL;
}

static const char *match_pkgmgr(const char *name)
{
	const char *m = match_name(pkgmgr_names, ARRAY_SIZE(pkgmgr_names), name);

	if (!m && strncmp(name, "pip3.", 5) == 0 && name[5] &&
	    strspn(name + 5, "0123456789") == strlen(name + 5))
		m = "pip3";
	return m;
}

static void decode_caps(const uint8_t *v, size_t len, struct finding *f)
{
	uint32_t magic;

	f->cap_bad = true;
	if (len < 4)
		return;
	magic = get_le32(v);
	f->cap_version = magic >> 24;
	f->cap_eff = magic & VFS_CAP_FLAGS_EFFECTIVE;
	switch (magic & VFS_CAP_REVISION_MASK) {
	case VFS_CAP_REVISION_1:
		if (len != 12)
			return;
		f->cap_perm = get_le32(v + 4);
		f->cap_inh = get_le32(v + 8);
		break;
	case VFS_CAP_REVISION_2:
	case VFS_CAP_REVISION_3:
		if (len != ((magic & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_2 ? 20u : 24u))
			return;
		f->cap_perm = get_le32(v + 4) | (uint64_t)get_le32(v + 12) << 32;
		f->cap_inh = get_le32(v + 8) | (uint64_t)get_le32(v + 16) << 32;
		if (len == 24)
			f->cap_rootid = get_le32(v + 20);
		break;
	default:
		return;
	}
	f->cap_bad = false;
}

static void put_cap_name(FILE *f, unsigned i)
{
	if (i < ARRAY_SIZE(cap_names))
		fputs(cap_names[i], f);
	else
		fprintf(f, "cap_%u", i);
}

/* getcap-style text: "cap_net_bind_service,cap_net_raw=ep cap_kill=i". */
static char *caps_text(const struct finding *c)
{
	static const char *const flagstr[8] = {"", "p", "i", "ip", "e", "ep", "ei", "eip"};
	static const unsigned order[] = {5, 7, 1, 3, 6, 2, 4};
	char *s = NULL;
	size_t len = 0;
	FILE *f;
	bool first_group = true;

	if (c->cap_bad)
		return strdup("malformed");
	f = open_memstream(&s, &len);
	if (!f)
		return NULL;
	for (size_t o = 0; o < ARRAY_SIZE(order); o++) {
		bool first = true;

		for (unsigned i = 0; i < 64; i++) {
			bool p = (c->cap_perm >> i) & 1, in = (c->cap_inh >> i) & 1;
			unsigned fl =
				(p ? 1u : 0) | (in ? 2u : 0) | (c->cap_eff && (p || in) ? 4u : 0);

			if (!fl || fl != order[o])
				continue;
			if (first && !first_group)
				fputc(' ', f);
			if (!first)
				fputc(',', f);
			put_cap_name(f, i);
			first = false;
		}
		if (!first) {
			fprintf(f, "=%s", flagstr[order[o]]);
			first_group = false;
		}
	}
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

/*
 * Content identity of a regular file: its size and extent list (chunk ids and
 * offsets). Two files with the same bytes share chunks, so they share the key
 * without a byte being read.
 */
static int content_key(const struct slimfs_index *idx, const struct slimfs_inode *ino,
		       uint8_t key[32])
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t n = 8;
	int r;

	if (ino->count > (1u << 24))
		return -EFBIG;
	buf = malloc(8 + (size_t)ino->count * 32);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, &ino->size, 8);
	for (uint32_t i = 0; i < ino->count; i++) {
		struct slimfs_extent e;
		struct slimfs_chunk c;

		r = slimfs_index_extent(idx, ino, i, &e);
		if (r < 0)
			return r;
		r = slimfs_index_chunk(idx, e.chunk, &c);
		if (r < 0)
			return r;
		memcpy(buf + n, &e.file_off, 8);
		memcpy(buf + n + 8, c.id, 16);
		memcpy(buf + n + 24, &e.chunk_off, 4);
		memcpy(buf + n + 28, &e.len, 4);
		n += 32;
	}
	slimfs_sha256(buf, n, key);
	return 0;
}

/* Whether a symlink in directory dir leads, inside the view, to an executable. */
static bool link_to_exec(struct report *r, uint32_t dir, const struct slimfs_inode *lnk)
{
	_cleanup_free_ char *target = strndup(lnk->target, lnk->target_len);
	struct slimfs_inode ino;
	uint32_t id;

	if (!target || strlen(target) != lnk->target_len)
		return false;
	if (resolve(r->idx, dir, target, true, r->view, &id) < 0)
		return false;
	if (slimfs_index_inode(r->idx, id, &ino) < 0)
		return false;
	return is_exec(ino.mode);
}

/* Whether the entry named name (inside path) sits in a directory called bin or sbin. */
static bool in_bin_dir(const char *path, const char *name)
{
	const char *end = name - 1, *start = end; /* end: the '/' before name */

	while (start > path && start[-1] != '/')
		start--;
	return (end - start == 3 && memcmp(start, "bin", 3) == 0) ||
	       (end - start == 4 && memcmp(start, "sbin", 4) == 0);
}

/* One path of the image: counts it, and records what it exposes when visible. */
static int examine(struct report *r, uint32_t dir, const struct slimfs_inode *ino, const char *path,
		   const char *name, bool visible)
{
	const char *shell = match_name(shell_names, ARRAY_SIZE(shell_names), name);
	/* Package managers in bin directories only: /etc/cron.daily/dpkg is a cron job. */
	const char *pm = in_bin_dir(path, name) ? match_pkgmgr(name) : NULL;
	struct slimfs_xattr x;
	struct finding *f;
	int ret;

	r->entries[0]++;
	if (visible)
		r->entries[1]++;
	if (S_ISREG(ino->mode)) {
		if (!test_bit(r->seen_full, ino->id)) {
			set_bit(r->seen_full, ino->id);
			r->files[0]++;
			r->bytes[0] += ino->size;
			if (shell && is_exec(ino->mode)) {
				ret = SLIMFS_GROW(r->keys, r->keys_cap, r->nkeys + 1, 16);
				if (ret < 0)
					return ret;
				ret = content_key(r->idx, ino, r->keys[r->nkeys].key);
				if (ret < 0)
					return log_error_errno(ret, "'%s': bad extents", path);
				r->keys[r->nkeys].size = ino->size;
				r->keys[r->nkeys++].name = shell;
			}
		}
		if (visible && !test_bit(r->seen_view, ino->id)) {
			set_bit(r->seen_view, ino->id);
			r->files[1]++;
			r->bytes[1] += ino->size;
		}
	}
	if (!visible)
		return 0;

	if (shell || pm) {
		bool exe = is_exec(ino->mode);

		if (!exe && S_ISLNK(ino->mode))
			exe = link_to_exec(r, dir, ino);
		if (exe) {
			ret = add_finding(shell ? &r->shells : &r->pkgmgrs, path, ino, "name",
					  shell ? shell : pm, NULL);
			if (ret < 0)
				return ret;
		}
	} else if (is_exec(ino->mode)) {
		ret = SLIMFS_GROW(r->cands, r->cands_cap, r->ncands + 1, 16);
		if (ret < 0)
			return ret;
		r->cands[r->ncands].path = strdup(path);
		if (!r->cands[r->ncands].path)
			return -ENOMEM;
		r->cands[r->ncands++].ino = ino->id;
	}

	if (S_ISREG(ino->mode)) {
		if (ino->mode & S_ISUID) {
			ret = add_finding(&r->setuid, path, ino, NULL, NULL, NULL);
			if (ret < 0)
				return ret;
		}
		if (ino->mode & S_ISGID) {
			ret = add_finding(&r->setgid, path, ino, NULL, NULL, NULL);
			if (ret < 0)
				return ret;
		}
		if (ino->xattr_count) {
			ret = slimfs_index_getxattr(r->idx, ino, "security.capability", &x);
			if (ret == 0) {
				ret = add_finding(&r->caps, path, ino, NULL, NULL, &f);
				if (ret < 0)
					return ret;
				decode_caps((const uint8_t *)x.value, x.value_len, f);
			} else if (ret != -ENODATA) {
				return log_error_errno(ret, "'%s': cannot read xattrs", path);
			}
		}
	}
	if ((S_ISREG(ino->mode) && (ino->mode & S_IWOTH)) ||
	    (S_ISDIR(ino->mode) && (ino->mode & S_IWOTH) && !(ino->mode & S_ISVTX))) {
		ret = add_finding(&r->ww, path, ino, NULL, NULL, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Depth-first walk of every path of the image, with an explicit stack. */
static int walk(struct report *r)
{
	_cleanup_free_ struct walk_frame *stack = NULL;
	size_t n = 0, cap = 0;
	int ret;

	ret = SLIMFS_GROW(stack, cap, n + 1, 16);
	if (ret < 0)
		return ret;
	ret = slimfs_index_inode(r->idx, ROOT_INO, &stack[0].dir);
	if (ret < 0)
		return log_error_errno(ret, "cannot read the root directory");
	if (!S_ISDIR(stack[0].dir.mode))
		return log_error_errno(-EUCLEAN, "the root is not a directory");
	stack[0].next = 0;
	stack[0].path_len = 0;
	stack[0].visible = slimfs_inode_in_view(&stack[0].dir, r->view);
	set_bit(r->dir_seen, ROOT_INO);
	n = 1;
	r->path[0] = '\0';
	while (n) {
		struct walk_frame *fr = &stack[n - 1];
		struct slimfs_dirent de;
		struct slimfs_inode ino;
		size_t len;
		bool visible;

		if (fr->next >= fr->dir.count) {
			n--;
			continue;
		}
		ret = slimfs_index_dirent(r->idx, &fr->dir, fr->next++, &de);
		if (ret < 0)
			return log_error_errno(ret, "'%s/': cannot read entry %u", r->path,
					       fr->next - 1);
		r->path[fr->path_len] = '\0';
		if (!de.name_len || memchr(de.name, '/', de.name_len) ||
		    memchr(de.name, '\0', de.name_len))
			return log_error_errno(-EUCLEAN, "'%s/': corrupt entry name", r->path);
		len = fr->path_len + 1 + de.name_len;
		ret = SLIMFS_GROW(r->path, r->path_cap, len + 2, 16);
		if (ret < 0)
			return ret;
		r->path[fr->path_len] = '/';
		memcpy(r->path + fr->path_len + 1, de.name, de.name_len);
		r->path[len] = '\0';
		ret = slimfs_index_inode(r->idx, de.ino, &ino);
		if (ret < 0)
			return log_error_errno(ret, "'%s': cannot read its inode", r->path);
		visible = fr->visible && slimfs_inode_in_view(&ino, r->view);
		ret = examine(r, fr->dir.id, &ino, r->path, r->path + fr->path_len + 1, visible);
		if (ret < 0)
			return ret;
		if (!S_ISDIR(ino.mode))
			continue;
		if (test_bit(r->dir_seen, ino.id))
			return log_error_errno(-EUCLEAN, "'%s': directory linked twice", r->path);
		set_bit(r->dir_seen, ino.id);
		ret = SLIMFS_GROW(stack, cap, n + 1, 16);
		if (ret < 0)
			return ret;
		stack[n].dir = ino;
		stack[n].next = 0;
		stack[n].path_len = len;
		stack[n].visible = visible;
		n++;
	}
	return 0;
}

static bool has_sig(const uint8_t *buf, size_t len, const char **name)
{
	for (size_t i = 0; i < ARRAY_SIZE(shell_sigs); i++)
		if (memmem(buf, len, shell_sigs[i].sig, strlen(shell_sigs[i].sig))) {
			*name = shell_sigs[i].name;
			return true;
		}
	return false;
}

/* Looks for a shell signature in an ELF executable; 1 found, 0 not, -errno. */
static int scan_exec(struct report *r, const struct slimfs_inode *ino, const char **name)
{
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t off = 0;
	size_t keep = 0;

	if (ino->size < 4 || ino->size > SCAN_FILE_MAX)
		return 0;
	buf = malloc(SCAN_WINDOW + SIG_MAX);
	if (!buf)
		return -ENOMEM;
	while (off < ino->size) {
		ssize_t n = slimfs_reader_pread(&r->rd, ino, buf + keep, SCAN_WINDOW, off);
		size_t total;

		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		if (off == 0 && (n < 4 || memcmp(buf, "\177ELF", 4) != 0))
			return 0;
		total = keep + (size_t)n;
		if (has_sig(buf, total, name))
			return 1;
		off += (uint64_t)n;
		keep = MIN(total, (size_t)SIG_MAX - 1);
		memmove(buf, buf + total - keep, keep);
	}
	return 0;
}

/* Executables of the view not named like a shell but holding one (same chunks, or a signature). */
static int find_renamed_shells(struct report *r)
{
	for (size_t i = 0; i < r->ncands; i++) {
		struct slimfs_inode ino;
		const char *name = NULL;
		const char *how = NULL;
		uint8_t key[32];
		bool have_key = false;
		int ret;

		ret = slimfs_index_inode(r->idx, r->cands[i].ino, &ino);
		if (ret < 0)
			return ret;
		for (size_t k = 0; k < r->nkeys && !how; k++) {
			if (r->keys[k].size != ino.size)
				continue;
			if (!have_key) {
				ret = content_key(r->idx, &ino, key);
				if (ret < 0)
					return log_error_errno(ret, "'%s': bad extents",
							       r->cands[i].path);
				have_key = true;
			}
			if (memcmp(key, r->keys[k].key, 32) == 0) {
				how = "content";
				name = r->keys[k].name;
			}
		}
		if (!how && r->scan) {
			ret = scan_exec(r, &ino, &name);
			if (ret < 0)
				return log_error_errno(ret, "'%s': cannot read", r->cands[i].path);
			if (ret > 0)
				how = "signature";
		}
		if (how) {
			ret = add_finding(&r->shells, r->cands[i].path, &ino, how, name, NULL);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* Packages */

static bool next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *llen)
{
	const char *nl;

	if (*pos >= len)
		return false;
	*line = buf + *pos;
	nl = memchr(*line, '\n', len - *pos);
	*llen = nl ? (size_t)(nl - *line) : len - *pos;
	*pos += *llen + (nl ? 1 : 0);
	while (*llen && ((*line)[*llen - 1] == '\r' || (*line)[*llen - 1] == ' ' ||
			 (*line)[*llen - 1] == '\t'))
		(*llen)--;
	return true;
}

struct span {
	const char *v;
	size_t len;
};

/* "Key: value" (key case-insensitive, as dpkg has it). */
static bool field_is(const char *line, size_t len, const char *key, struct span *val)
{
	size_t k = strlen(key);

	if (len <= k || strncasecmp(line, key, k) != 0 || line[k] != ':')
		return false;
	val->v = line + k + 1;
	val->len = len - k - 1;
	while (val->len && (val->v[0] == ' ' || val->v[0] == '\t')) {
		val->v++;
		val->len--;
	}
	return true;
}

static int new_package(struct report *r, const char *type, size_t *idx)
{
	int ret = SLIMFS_GROW(r->pkgs, r->pkgs_cap, r->npkgs + 1, 16);

	if (ret < 0)
		return ret;
	memset(&r->pkgs[r->npkgs], 0, sizeof(r->pkgs[0]));
	r->pkgs[r->npkgs].type = type;
	*idx = r->npkgs++;
	return 0;
}

static void package_free(struct package *p)
{
	free(p->name);
	free(p->version);
	free(p->arch);
	free(p->inos);
}

static int set_str(char **dst, struct span v)
{
	char *s = v.v ? strndup(v.v, v.len) : strdup("");

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* A path the package owns: kept when it is a regular file of the image. */
static int pkg_add_path(struct report *r, struct package *p, const char *dir, size_t dir_len,
			const char *name, size_t name_len)
{
	_cleanup_free_ char *path = NULL;
	struct slimfs_inode ino;
	uint32_t id;
	int ret;

	if (asprintf(&path, "/%.*s/%.*s", (int)MIN(dir_len, (size_t)INT32_MAX), dir,
		     (int)MIN(name_len, (size_t)INT32_MAX), name) < 0)
		return -ENOMEM;
	if (strlen(path) != dir_len + name_len + 2)
		return 0; /* a NUL inside */
	ret = resolve(r->idx, ROOT_INO, path, false, SLIMFS_VIEW_NONE, &id);
	if (ret < 0)
		return ret == -ENOMEM ? ret : 0; /* listed but not in the image */
	ret = slimfs_index_inode(r->idx, id, &ino);
	if (ret < 0)
		return ret;
	if (!S_ISREG(ino.mode))
		return 0;
	ret = SLIMFS_GROW(p->inos, p->cap, p->ninos + 1, 16);
	if (ret < 0)
		return ret;
	p->inos[p->ninos++] = id;
	return 0;
}

/* dpkg's PKG.list (one path a line) or status.d's PKG.md5sums ("md5  relative/path"). */
static int pkg_add_list(struct report *r, struct package *p, const char *path, bool md5sums)
{
	_cleanup_free_ char *buf = NULL;
	const char *line;
	size_t len, pos = 0, ll;
	int ret;

	ret = read_image_file(r, path, &buf, &len);
	if (ret < 0)
		return ret;
	while (next_line(buf, len, &pos, &line, &ll)) {
		if (md5sums) {
			const char *sp = memchr(line, ' ', ll);

			if (!sp)
				continue;
			while (sp < line + ll && *sp == ' ')
				sp++;
			ll -= (size_t)(sp - line);
			line = sp;
		}
		while (ll && line[0] == '/') {
			line++;
			ll--;
		}
		if (!ll || (ll == 1 && line[0] == '.'))
			continue;
		ret = pkg_add_path(r, p, "", 0, line, ll);
		if (ret < 0)
			return ret;
	}
	return 0;
}

struct deb_fields {
	struct span name, version, arch, status;
};

static int add_deb(struct report *r, const struct deb_fields *d, const char *md5dir,
		   const char *entry)
{
	_cleanup_free_ char *list = NULL;
	struct package *p;
	size_t i;
	int ret;

	if (d->status.len) {
		/* "install ok installed": the last word is the state. */
		size_t n = strlen("installed");

		if (d->status.len < n || memcmp(d->status.v + d->status.len - n, "installed", n) ||
		    (d->status.len > n && d->status.v[d->status.len - n - 1] != ' '))
			return 0;
	} else if (!md5dir) {
		return 0;
	}
	ret = new_package(r, "deb", &i);
	if (ret < 0)
		return ret;
	p = &r->pkgs[i];
	if (set_str(&p->name, d->name) < 0 || set_str(&p->version, d->version) < 0 ||
	    set_str(&p->arch, d->arch) < 0)
		return -ENOMEM;
	if (md5dir) {
		if (asprintf(&list, "%s/%s.md5sums", md5dir, entry) < 0)
			return -ENOMEM;
		ret = pkg_add_list(r, p, list, true);
		if (ret == -ENOENT) {
			free(list);
			if (asprintf(&list, "%s/%s.md5sums", md5dir, p->name) < 0)
				return -ENOMEM;
			ret = pkg_add_list(r, p, list, true);
		}
	} else {
		if (asprintf(&list, "/var/lib/dpkg/info/%s.list", p->name) < 0)
			return -ENOMEM;
		ret = pkg_add_list(r, p, list, false);
		if (ret == -ENOENT) {
			free(list);
			if (asprintf(&list, "/var/lib/dpkg/info/%s:%s.list", p->name, p->arch) < 0)
				return -ENOMEM;
			ret = pkg_add_list(r, p, list, false);
		}
	}
	if (ret == -ENOENT) {
		log_debug("package '%s': no file list", p->name);
		ret = 0;
	}
	return ret == -ENOMEM || ret == -EIO || ret == -EUCLEAN ? ret : 0;
}

/* dpkg status (or one status.d file: no Status field, files in md5dir/ENTRY.md5sums). */
static int parse_dpkg(struct report *r, const char *buf, size_t len, const char *md5dir,
		      const char *entry)
{
	struct deb_fields d = {0};
	const char *line;
	size_t pos = 0, ll;
	bool more = true;
	int ret;

	while (more) {
		more = next_line(buf, len, &pos, &line, &ll);
		if (!more || ll == 0) {
			if (d.name.len) {
				ret = add_deb(r, &d, md5dir, entry);
				if (ret < 0)
					return ret;
			}
			memset(&d, 0, sizeof(d));
			continue;
		}
		if (line[0] == ' ' || line[0] == '\t')
			continue;
		if (!field_is(line, ll, "Package", &d.name) &&
		    !field_is(line, ll, "Version", &d.version) &&
		    !field_is(line, ll, "Architecture", &d.arch))
			field_is(line, ll, "Status", &d.status);
	}
	return 0;
}

/* distroless-style /var/lib/dpkg/status.d/: one stanza file per package. */
static int parse_dpkg_statusd(struct report *r, const char *dir)
{
	struct slimfs_inode dino;
	uint32_t id;
	int ret;

	ret = resolve(r->idx, ROOT_INO, dir, true, SLIMFS_VIEW_NONE, &id);
	if (ret < 0)
		return ret == -ENOMEM ? ret : 0;
	ret = slimfs_index_inode(r->idx, id, &dino);
	if (ret < 0)
		return ret;
	if (!S_ISDIR(dino.mode))
		return 0;
	for (uint32_t i = 0; i < dino.count; i++) {
		_cleanup_free_ char *entry = NULL, *path = NULL, *buf = NULL;
		struct slimfs_dirent de;
		size_t len;

		ret = slimfs_index_dirent(r->idx, &dino, i, &de);
		if (ret < 0)
			return ret;
		entry = strndup(de.name, de.name_len);
		if (!entry)
			return -ENOMEM;
		len = strlen(entry);
		if (len != de.name_len || (len >= 8 && strcmp(entry + len - 8, ".md5sums") == 0))
			continue;
		if (asprintf(&path, "%s/%s", dir, entry) < 0)
			return -ENOMEM;
		ret = read_image_file(r, path, &buf, &len);
		if (ret == -ENOMEM)
			return ret;
		if (ret < 0)
			continue;
		ret = parse_dpkg(r, buf, len, dir, entry);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* apk's installed database: P: name, V: version, A: arch, F: directory, R: file in it. */
static int parse_apk(struct report *r, const char *buf, size_t len)
{
	struct span dir = {"", 0};
	const char *line;
	size_t pos = 0, ll, cur = SIZE_MAX;
	bool more = true;
	int ret;

	while (more) {
		struct span v;

		more = next_line(buf, len, &pos, &line, &ll);
		if (!more || ll == 0) {
			if (cur != SIZE_MAX && !r->pkgs[cur].name) {
				package_free(&r->pkgs[cur]);
				r->npkgs--;
			}
			cur = SIZE_MAX;
			dir.v = "";
			dir.len = 0;
			continue;
		}
		if (ll < 2 || line[1] != ':' || !strchr("PVAFR", line[0]))
			continue;
		v.v = line + 2;
		v.len = ll - 2;
		if (line[0] == 'F') {
			dir = v;
			continue;
		}
		if (cur == SIZE_MAX) {
			ret = new_package(r, "apk", &cur);
			if (ret < 0)
				return ret;
		}
		switch (line[0]) {
		case 'P':
			ret = set_str(&r->pkgs[cur].name, v);
			break;
		case 'V':
			ret = set_str(&r->pkgs[cur].version, v);
			break;
		case 'A':
			ret = set_str(&r->pkgs[cur].arch, v);
			break;
		default:
			ret = pkg_add_path(r, &r->pkgs[cur], dir.v, dir.len, v.v, v.len);
			break;
		}
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int strcmp0(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "");
}

static int cmp_pkg(const void *a, const void *b)
{
	const struct package *x = a, *y = b;
	int c = strcmp(x->type, y->type);

	if (!c)
		c = strcmp0(x->name, y->name);
	if (!c)
		c = strcmp0(x->arch, y->arch);
	if (!c)
		c = strcmp0(x->version, y->version);
	return c;
}

static int cmp_finding(const void *a, const void *b)
{
	return strcmp(((const struct finding *)a)->path, ((const struct finding *)b)->path);
}

static int read_packages(struct report *r)
{
	_cleanup_free_ char *buf = NULL;
	size_t len;
	int ret;

	ret = read_image_file(r, "/var/lib/dpkg/status", &buf, &len);
	if (ret == 0) {
		ret = parse_dpkg(r, buf, len, NULL, NULL);
		free(steal_ptr(&buf));
	}
	if (ret == -ENOMEM || ret == -EIO || ret == -EUCLEAN)
		return ret;
	ret = parse_dpkg_statusd(r, "/var/lib/dpkg/status.d");
	if (ret < 0)
		return ret;
	ret = read_image_file(r, "/lib/apk/db/installed", &buf, &len);
	if (ret == 0)
		ret = parse_apk(r, buf, len);
	if (ret == -ENOMEM || ret == -EIO || ret == -EUCLEAN)
		return ret;

	for (size_t i = 0; i < r->npkgs; i++) {
		struct package *p = &r->pkgs[i];
		size_t n = 0;

		if (p->ninos)
			qsort(p->inos, p->ninos, sizeof(p->inos[0]), cmp_u32);
		for (size_t k = 0; k < p->ninos; k++)
			if (!n || p->inos[k] != p->inos[n - 1])
				p->inos[n++] = p->inos[k];
		p->ninos = n;
		p->files = n;
		for (size_t k = 0; k < n; k++)
			if (test_bit(r->seen_view, p->inos[k]))
				p->visible++;
		/* A package without regular files is present in the full view only. */
		p->present = p->visible > 0 || r->view == SLIMFS_VIEW_NONE;
	}
	if (r->npkgs)
		qsort(r->pkgs, r->npkgs, sizeof(r->pkgs[0]), cmp_pkg);
	return 0;
}

static void unquote(char **s)
{
	size_t n = strlen(*s);

	if (n >= 2 && ((*s)[0] == '"' || (*s)[0] == '\'') && (*s)[n - 1] == (*s)[0]) {
		memmove(*s, *s + 1, n - 2);
		(*s)[n - 2] = '\0';
	}
}

static int read_os_release(struct report *r)
{
	_cleanup_free_ char *buf = NULL;
	const char *line;
	size_t len, pos = 0, ll;
	int ret;

	ret = read_image_file(r, "/etc/os-release", &buf, &len);
	if (ret == -ENOENT)
		ret = read_image_file(r, "/usr/lib/os-release", &buf, &len);
	if (ret < 0)
		return ret == -ENOMEM ? ret : 0;
	while (next_line(buf, len, &pos, &line, &ll)) {
		char **dst = NULL;
		size_t k = 0;

		if (ll > 3 && memcmp(line, "ID=", 3) == 0) {
			dst = &r->os_id;
			k = 3;
		} else if (ll > 11 && memcmp(line, "VERSION_ID=", 11) == 0) {
			dst = &r->os_version;
			k = 11;
		} else if (ll > 8 && memcmp(line, "ID_LIKE=", 8) == 0) {
			dst = &r->os_like;
			k = 8;
		}
		if (!dst)
			continue;
		free(*dst);
		*dst = strndup(line + k, ll - k);
		if (!*dst)
			return -ENOMEM;
		unquote(dst);
	}
	return 0;
}

/* Output helpers */

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "dir";
	case S_IFLNK:
		return "symlink";
	default:
		return "other";
	}
}

/* A JSON string; bytes that are not UTF-8 (file names are bytes) become '?'. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j || !s)
		return j;
	copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static json_t *jfigure(uint64_t view, uint64_t full)
{
	json_t *o = json_object();

	json_object_set_new(o, "view", json_integer((json_int_t)view));
	json_object_set_new(o, "full", json_integer((json_int_t)full));
	json_object_set_new(o, "share", json_real(full ? (double)view / (double)full : 0.0));
	return o;
}

static json_t *jcaps(uint64_t set)
{
	json_t *a = json_array();
	char buf[32];

	for (unsigned i = 0; i < 64; i++) {
		if (!((set >> i) & 1))
			continue;
		if (i < ARRAY_SIZE(cap_names))
			json_array_append_new(a, json_string(cap_names[i]));
		else {
			snprintf(buf, sizeof(buf), "cap_%u", i);
			json_array_append_new(a, json_string(buf));
		}
	}
	return a;
}

static json_t *jfindings(const struct findings *fs, bool caps)
{
	json_t *a = json_array();

	for (size_t i = 0; i < fs->n; i++) {
		const struct finding *f = &fs->v[i];
		json_t *o = json_object();
		char mode[8];

		snprintf(mode, sizeof(mode), "%04o", f->mode & 07777);
		json_object_set_new(o, "path", jstr(f->path));
		json_object_set_new(o, "type", json_string(type_name(f->mode)));
		json_object_set_new(o, "mode", json_string(mode));
		json_object_set_new(o, "uid", json_integer(f->uid));
		json_object_set_new(o, "gid", json_integer(f->gid));
		if (f->tool)
			json_object_set_new(o, "name", json_string(f->tool));
		if (f->how)
			json_object_set_new(o, "found_by", json_string(f->how));
		if (f->target)
			json_object_set_new(o, "target", jstr(f->target));
		if (caps) {
			char *text = caps_text(f);

			json_object_set_new(o, "capabilities", text ? json_string(text) : NULL);
			free(text);
			json_object_set_new(o, "valid", json_boolean(!f->cap_bad));
			json_object_set_new(o, "version", json_integer(f->cap_version));
			json_object_set_new(o, "effective", json_boolean(f->cap_eff));
			json_object_set_new(o, "permitted", jcaps(f->cap_perm));
			json_object_set_new(o, "inheritable", jcaps(f->cap_inh));
			if (f->cap_version == 3 && !f->cap_bad)
				json_object_set_new(o, "rootid", json_integer(f->cap_rootid));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static void put_pct(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			fputc(c, f);
		else
			fprintf(f, "%%%02X", c);
	}
}

/*
 * The purl namespace: the distribution's ID when it belongs to the package's
 * family (Debian and derivatives for deb, anything else for apk: alpine,
 * wolfi, postmarketos), else "debian" or "alpine".
 */
static const char *purl_namespace(const struct report *r, bool deb)
{
	bool debian_like = r->os_id && (strcmp(r->os_id, "debian") == 0 ||
					(r->os_like && strstr(r->os_like, "debian")));

	if (!r->os_id)
		return deb ? "debian" : "alpine";
	if (deb)
		return debian_like ? r->os_id : "debian";
	return debian_like ? "alpine" : r->os_id;
}

/* pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12 (purl-spec). */
static char *make_purl(const struct report *r, const struct package *p)
{
	bool deb = strcmp(p->type, "deb") == 0;
	char *s = NULL, *lower = NULL;
	size_t len = 0;
	char sep = '?';
	FILE *f;

	lower = strdup(purl_namespace(r, deb));
	if (!lower)
		return NULL;
	for (char *c = lower; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	f = open_memstream(&s, &len);
	if (!f) {
		free(lower);
		return NULL;
	}
	fprintf(f, "pkg:%s/", p->type);
	put_pct(f, lower);
	fputc('/', f);
	put_pct(f, p->name);
	if (p->version && *p->version) {
		fputc('@', f);
		put_pct(f, p->version);
	}
	if (p->arch && *p->arch) {
		fprintf(f, "%carch=", sep);
		put_pct(f, p->arch);
		sep = '&';
	}
	if (r->os_id && r->os_version && strcmp(r->os_id, purl_namespace(r, deb)) == 0) {
		fprintf(f, "%cdistro=", sep);
		put_pct(f, lower);
		fputc('-', f);
		put_pct(f, r->os_version);
	}
	free(lower);
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static json_t *jpackages(const struct report *r, bool present_only)
{
	json_t *a = json_array();

	for (size_t i = 0; i < r->npkgs; i++) {
		const struct package *p = &r->pkgs[i];
		json_t *o = json_object();
		char *purl = make_purl(r, p);

		if (present_only && !p->present) {
			json_decref(o);
			free(purl);
			continue;
		}
		json_object_set_new(o, "name", jstr(p->name));
		json_object_set_new(o, "version", jstr(p->version ? p->version : ""));
		json_object_set_new(o, "arch", jstr(p->arch ? p->arch : ""));
		json_object_set_new(o, "type", json_string(p->type));
		json_object_set_new(o, "purl", purl ? jstr(purl) : NULL);
		json_object_set_new(o, "files", json_integer((json_int_t)p->files));
		json_object_set_new(o, "files_visible", json_integer((json_int_t)p->visible));
		json_object_set_new(o, "present", json_boolean(p->present));
		json_array_append_new(a, o);
		free(purl);
	}
	return a;
}

static uint64_t packages_present(const struct report *r)
{
	uint64_t n = 0;

	for (size_t i = 0; i < r->npkgs; i++)
		n += r->pkgs[i].present;
	return n;
}

static json_t *report_json(const struct report *r)
{
	const struct slimfs_info *info = r->img->info;
	json_t *o = json_object(), *views = json_array(), *sum = json_object(), *os;
	char digest[72];

	slimfs_index_digest_str(r->idx, digest);
	json_object_set_new(o, "image", jstr(r->img->source));
	json_object_set_new(o, "digest", json_string(digest));
	json_object_set_new(o, "view", jstr(r->view_name));
	for (uint64_t i = 0; i < info->view_count; i++) {
		struct slimfs_view v;
		char *name;

		if (slimfs_index_view(r->idx, (uint32_t)i, &v) < 0)
			continue;
		name = strndup(v.name, v.name_len);
		if (!name)
			continue;
		json_array_append_new(views, jstr(name));
		if (i == info->default_view)
			json_object_set_new(o, "default_view", jstr(name));
		free(name);
	}
	if (!json_object_get(o, "default_view"))
		json_object_set_new(o, "default_view", json_null());
	json_object_set_new(o, "views", views);
	json_object_set_new(sum, "entries", jfigure(r->entries[1], r->entries[0]));
	json_object_set_new(sum, "regular_files", jfigure(r->files[1], r->files[0]));
	json_object_set_new(sum, "bytes", jfigure(r->bytes[1], r->bytes[0]));
	json_object_set_new(sum, "packages", jfigure(packages_present(r), r->npkgs));
	json_object_set_new(o, "summary", sum);
	json_object_set_new(o, "shells", jfindings(&r->shells, false));
	json_object_set_new(o, "package_managers", jfindings(&r->pkgmgrs, false));
	json_object_set_new(o, "setuid", jfindings(&r->setuid, false));
	json_object_set_new(o, "setgid", jfindings(&r->setgid, false));
	json_object_set_new(o, "capabilities", jfindings(&r->caps, true));
	json_object_set_new(o, "world_writable", jfindings(&r->ww, false));
	json_object_set_new(o, "packages", jpackages(r, false));
	os = json_object();
	json_object_set_new(os, "id", r->os_id ? jstr(r->os_id) : json_null());
	json_object_set_new(os, "version_id", r->os_version ? jstr(r->os_version) : json_null());
	json_object_set_new(o, "os", os);
	return o;
}

/* Deterministic UUID (version and variant bits of a name-based UUID) from the digest and view. */
static void derived_uuid(const struct report *r, const char *purpose, char out[37])
{
	_cleanup_free_ char *name = NULL;
	char digest[72];
	uint8_t h[32];

	slimfs_index_digest_str(r->idx, digest);
	if (asprintf(&name, "slimfs:%s:%s:%s", purpose, digest, r->view_name) < 0)
		name = NULL;
	slimfs_sha256(name ? name : digest, strlen(name ? name : digest), h);
	h[6] = (uint8_t)((h[6] & 0x0f) | 0x50);
	h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12],
		 h[13], h[14], h[15]);
}

static void created_time(char out[32])
{
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	time_t t = time(NULL);
	struct tm tm;

	if (sde && *sde) {
		char *end;
		long long v = strtoll(sde, &end, 10);

		if (!*end && v >= 0)
			t = (time_t)v;
		else
			log_warn("SOURCE_DATE_EPOCH: '%s' is not a time, ignored", sde);
	}
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *image_basename(const struct report *r)
{
	const char *s = r->img->source, *b = strrchr(s, '/');

	return b && b[1] ? b + 1 : s;
}

static json_t *spdx_json(const struct report *r)
{
	json_t *o = json_object(), *ci = json_object(), *creators = json_array();
	json_t *pkgs = json_array(), *rels = json_array(), *img = json_object(), *sums, *sum, *rel;
	_cleanup_free_ char *docname = NULL, *ns = NULL, *tool = NULL;
	char digest[72], hex[65], created[32], uuid[37];

	slimfs_index_digest_str(r->idx, digest);
	slimfs_hex(slimfs_index_digest(r->idx), 32, hex);
	derived_uuid(r, "spdx", uuid);
	created_time(created);
	if (asprintf(&docname, "%s (view %s)", image_basename(r), r->view_name) < 0)
		docname = NULL;
	if (asprintf(&ns, "https://slimfs.invalid/spdx/sha256-%s/%s", hex, uuid) < 0)
		ns = NULL;
	if (asprintf(&tool, "Tool: slimfs-%s", SLIMFS_VERSION) < 0)
		tool = NULL;

	json_object_set_new(o, "spdxVersion", json_string("SPDX-2.3"));
	json_object_set_new(o, "dataLicense", json_string("CC0-1.0"));
	json_object_set_new(o, "SPDXID", json_string("SPDXRef-DOCUMENT"));
	json_object_set_new(o, "name", docname ? jstr(docname) : NULL);
	json_object_set_new(o, "documentNamespace", ns ? json_string(ns) : NULL);
	json_array_append_new(creators, tool ? json_string(tool) : NULL);
	json_object_set_new(ci, "creators", creators);
	json_object_set_new(ci, "created", json_string(created));
	json_object_set_new(o, "creationInfo", ci);

	json_object_set_new(img, "name", jstr(image_basename(r)));
	json_object_set_new(img, "SPDXID", json_string("SPDXRef-Image"));
	json_object_set_new(img, "versionInfo", json_string(digest));
	json_object_set_new(img, "downloadLocation", json_string("NOASSERTION"));
	json_object_set_new(img, "filesAnalyzed", json_false());
	json_object_set_new(img, "primaryPackagePurpose", json_string("CONTAINER"));
	sums = json_array();
	sum = json_object();
	json_object_set_new(sum, "algorithm", json_string("SHA256"));
	json_object_set_new(sum, "checksumValue", json_string(hex));
	json_array_append_new(sums, sum);
	json_object_set_new(img, "checksums", sums);
	json_object_set_new(img, "comment",
			    json_string("checksum: SHA-256 of the slimfs index, the image's root "
					"of trust; packages: those present in the view"));
	json_array_append_new(pkgs, img);
	rel = json_object();
	json_object_set_new(rel, "spdxElementId", json_string("SPDXRef-DOCUMENT"));
	json_object_set_new(rel, "relationshipType", json_string("DESCRIBES"));
	json_object_set_new(rel, "relatedSpdxElement", json_string("SPDXRef-Image"));
	json_array_append_new(rels, rel);

	for (size_t i = 0; i < r->npkgs; i++) {
		const struct package *p = &r->pkgs[i];
		_cleanup_free_ char *id = NULL, *purl = NULL, *comment = NULL;
		json_t *pk, *refs, *ref;

		if (!p->present)
			continue;
		if (asprintf(&id, "SPDXRef-Package-%s-%s-%zu", p->type, p->name, i) < 0)
			return json_decref(o), json_decref(pkgs), json_decref(rels), NULL;
		for (char *c = id + strlen("SPDXRef-"); *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			      (*c >= '0' && *c <= '9') || *c == '.' || *c == '-'))
				*c = '-';
		purl = make_purl(r, p);
		if (asprintf(&comment,
			     "%" PRIu64 " of %" PRIu64 " regular files visible in view %s",
			     p->visible, p->files, r->view_name) < 0)
			comment = NULL;
		pk = json_object();
		json_object_set_new(pk, "name", jstr(p->name));
		json_object_set_new(pk, "SPDXID", json_string(id));
		json_object_set_new(pk, "versionInfo", jstr(p->version ? p->version : ""));
		json_object_set_new(pk, "downloadLocation", json_string("NOASSERTION"));
		json_object_set_new(pk, "filesAnalyzed", json_false());
		json_object_set_new(pk, "licenseConcluded", json_string("NOASSERTION"));
		json_object_set_new(pk, "licenseDeclared", json_string("NOASSERTION"));
		json_object_set_new(pk, "copyrightText", json_string("NOASSERTION"));
		if (comment)
			json_object_set_new(pk, "comment", jstr(comment));
		refs = json_array();
		ref = json_object();
		json_object_set_new(ref, "referenceCategory", json_string("PACKAGE-MANAGER"));
		json_object_set_new(ref, "referenceType", json_string("purl"));
		json_object_set_new(ref, "referenceLocator", purl ? json_string(purl) : NULL);
		json_array_append_new(refs, ref);
		json_object_set_new(pk, "externalRefs", refs);
		json_array_append_new(pkgs, pk);
		rel = json_object();
		json_object_set_new(rel, "spdxElementId", json_string("SPDXRef-Image"));
		json_object_set_new(rel, "relationshipType", json_string("CONTAINS"));
		json_object_set_new(rel, "relatedSpdxElement", json_string(id));
		json_array_append_new(rels, rel);
	}
	json_object_set_new(o, "packages", pkgs);
	json_object_set_new(o, "relationships", rels);
	return o;
}

static json_t *prop(const char *name, const char *value)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "value", jstr(value));
	return o;
}

static json_t *cyclonedx_json(const struct report *r)
{
	json_t *o = json_object(), *md = json_object(), *tools = json_object(), *tc = json_array();
	json_t *t = json_object(), *img = json_object(), *hashes = json_array(), *h;
	json_t *props = json_array(), *comps = json_array();
	_cleanup_free_ char *serial = NULL;
	char digest[72], hex[65], created[32], uuid[37];

	slimfs_index_digest_str(r->idx, digest);
	slimfs_hex(slimfs_index_digest(r->idx), 32, hex);
	derived_uuid(r, "cyclonedx", uuid);
	created_time(created);
	if (asprintf(&serial, "urn:uuid:%s", uuid) < 0)
		serial = NULL;

	json_object_set_new(o, "bomFormat", json_string("CycloneDX"));
	json_object_set_new(o, "specVersion", json_string("1.5"));
	json_object_set_new(o, "serialNumber", serial ? json_string(serial) : NULL);
	json_object_set_new(o, "version", json_integer(1));
	json_object_set_new(md, "timestamp", json_string(created));
	json_object_set_new(t, "type", json_string("application"));
	json_object_set_new(t, "name", json_string("slimfs"));
	json_object_set_new(t, "version", json_string(SLIMFS_VERSION));
	json_array_append_new(tc, t);
	json_object_set_new(tools, "components", tc);
	json_object_set_new(md, "tools", tools);
	json_object_set_new(img, "type", json_string("container"));
	json_object_set_new(img, "bom-ref", json_string(digest));
	json_object_set_new(img, "name", jstr(image_basename(r)));
	json_object_set_new(img, "version", json_string(digest));
	h = json_object();
	json_object_set_new(h, "alg", json_string("SHA-256"));
	json_object_set_new(h, "content", json_string(hex));
	json_array_append_new(hashes, h);
	json_object_set_new(img, "hashes", hashes);
	json_array_append_new(props, prop("slimfs:view", r->view_name));
	json_object_set_new(img, "properties", props);
	json_object_set_new(md, "component", img);
	json_object_set_new(o, "metadata", md);

	for (size_t i = 0; i < r->npkgs; i++) {
		const struct package *p = &r->pkgs[i];
		_cleanup_free_ char *purl = NULL, *ref = NULL;
		char n1[24], n2[24];
		json_t *c, *cp;

		if (!p->present)
			continue;
		purl = make_purl(r, p);
		if (asprintf(&ref, "%s#%zu", purl ? purl : "pkg", i) < 0)
			ref = NULL;
		c = json_object();
		json_object_set_new(c, "type", json_string("library"));
		json_object_set_new(c, "bom-ref", ref ? jstr(ref) : NULL);
		json_object_set_new(c, "name", jstr(p->name));
		json_object_set_new(c, "version", jstr(p->version ? p->version : ""));
		json_object_set_new(c, "purl", purl ? json_string(purl) : NULL);
		snprintf(n1, sizeof(n1), "%" PRIu64, p->files);
		snprintf(n2, sizeof(n2), "%" PRIu64, p->visible);
		cp = json_array();
		json_array_append_new(cp, prop("slimfs:files", n1));
		json_array_append_new(cp, prop("slimfs:files_visible", n2));
		json_object_set_new(c, "properties", cp);
		json_array_append_new(comps, c);
	}
	json_object_set_new(o, "components", comps);
	return o;
}

/* Prints s with control bytes escaped (file names come from the image). */
static void put_safe(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void put_row(FILE *f, const char *what, const char *view, const char *full, uint64_t v,
		    uint64_t n)
{
	fprintf(f, "%-16s %14s %14s", what, view, full);
	if (n)
		fprintf(f, " %6.1f%%\n", 100.0 * (double)v / (double)n);
	else
		fprintf(f, " %7s\n", "-");
}

static void put_count_row(FILE *f, const char *what, uint64_t v, uint64_t n)
{
	char a[24], b[24];

	snprintf(a, sizeof(a), "%" PRIu64, v);
	snprintf(b, sizeof(b), "%" PRIu64, n);
	put_row(f, what, a, b, v, n);
}

static void put_findings(FILE *f, const char *title, const struct findings *fs, bool caps)
{
	if (!fs->n) {
		fprintf(f, "%s: none\n", title);
		return;
	}
	fprintf(f, "%s (%zu):\n", title, fs->n);
	for (size_t i = 0; i < fs->n; i++) {
		const struct finding *x = &fs->v[i];

		fputs("  ", f);
		put_safe(f, x->path);
		if (x->target) {
			fputs(" -> ", f);
			put_safe(f, x->target);
		}
		if (x->tool && x->how && strcmp(x->how, "name") != 0)
			fprintf(f, "  (%s, by %s)", x->tool, x->how);
		if (caps) {
			char *text = caps_text(x);

			fprintf(f, "  %s", text ? text : "?");
			free(text);
		} else if (!x->tool) {
			fprintf(f, "  %s %04o uid %u gid %u", type_name(x->mode), x->mode & 07777,
				x->uid, x->gid);
		}
		fputc('\n', f);
	}
}

static void report_text(const struct report *r, FILE *f)
{
	char digest[72], a[32], b[32];
	uint64_t present = packages_present(r);

	slimfs_index_digest_str(r->idx, digest);
	fputs("image   ", f);
	put_safe(f, r->img->source);
	fprintf(f, "\ndigest  %s\nview    ", digest);
	put_safe(f, r->view_name);
	fprintf(f, "\n\n%-16s %14s %14s %7s\n", "", "view", "full", "share");
	put_count_row(f, "entries", r->entries[1], r->entries[0]);
	put_count_row(f, "regular files", r->files[1], r->files[0]);
	put_row(f, "bytes", slimfs_fmt_bytes(r->bytes[1], a, sizeof(a)),
		slimfs_fmt_bytes(r->bytes[0], b, sizeof(b)), r->bytes[1], r->bytes[0]);
	put_count_row(f, "packages", present, r->npkgs);
	fputc('\n', f);
	put_findings(f, "shells", &r->shells, false);
	put_findings(f, "package managers", &r->pkgmgrs, false);
	put_findings(f, "setuid files", &r->setuid, false);
	put_findings(f, "setgid files", &r->setgid, false);
	put_findings(f, "file capabilities", &r->caps, true);
	put_findings(f, "world-writable (no sticky bit)", &r->ww, false);
	if (!r->npkgs) {
		fprintf(f, "packages: none found (no dpkg or apk database)\n");
		return;
	}
	fprintf(f, "packages in the view (%" PRIu64 " of %zu):\n", present, r->npkgs);
	for (size_t i = 0; i < r->npkgs; i++) {
		const struct package *p = &r->pkgs[i];

		if (!p->present)
			continue;
		fputs("  ", f);
		put_safe(f, p->name);
		fputc(' ', f);
		put_safe(f, p->version);
		fputc(' ', f);
		put_safe(f, p->arch);
		fprintf(f, "  %" PRIu64 "/%" PRIu64 " files\n", p->visible, p->files);
	}
}

/* Writes data to path (a temporary file renamed over it), or to stdout. */
static int write_output(const char *path, const char *data, size_t len)
{
	if (!path) {
		if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
			return log_error_errno(-EIO, "cannot write to standard output");
		return 0;
	}
	return slimfs_write_file_replace(path, data, len, 0644);
}

static void report_free(struct report *r)
{
	findings_free(&r->shells);
	findings_free(&r->pkgmgrs);
	findings_free(&r->setuid);
	findings_free(&r->setgid);
	findings_free(&r->caps);
	findings_free(&r->ww);
	for (size_t i = 0; i < r->ncands; i++)
		free(r->cands[i].path);
	free(r->cands);
	free(r->keys);
	for (size_t i = 0; i < r->npkgs; i++)
		package_free(&r->pkgs[i]);
	free(r->pkgs);
	free(r->seen_full);
	free(r->seen_view);
	free(r->dir_seen);
	free(r->path);
	free(r->view_name);
	free(r->os_id);
	free(r->os_version);
	free(r->os_like);
	if (r->rd.dctx)
		slimfs_reader_fini(&r->rd);
}

static int pick_view(struct report *r, const char *name)
{
	const struct slimfs_info *info = r->img->info;
	struct slimfs_view v;
	int ret;

	if (name) {
		ret = slimfs_index_view_find(r->idx, name, &r->view);
		if (ret == -ENOENT) {
			char *names = NULL;
			size_t len = 0;
			FILE *f = open_memstream(&names, &len);

			if (f) {
				fputs("full", f);
				for (uint64_t i = 0; i < info->view_count; i++)
					if (slimfs_index_view(r->idx, (uint32_t)i, &v) == 0)
						fprintf(f, ", %.*s", (int)v.name_len, v.name);
				if (fclose(f) != 0) {
					free(names);
					names = NULL;
				}
			}
			log_error("'%s': no view '%s' (views: %s)", r->img->source, name,
				  names ? names : "?");
			free(names);
			return ret;
		}
		if (ret < 0)
			return log_error_errno(ret, "'%s': cannot look up view '%s'",
					       r->img->source, name);
	} else {
		r->view = info->default_view;
	}
	if (r->view == SLIMFS_VIEW_NONE || r->view >= SLIMFS_VIEWS_MAX) {
		r->view = SLIMFS_VIEW_NONE;
		r->view_name = strdup("full");
	} else {
		ret = slimfs_index_view(r->idx, r->view, &v);
		if (ret < 0)
			return log_error_errno(ret, "'%s': cannot read view %u", r->img->source,
					       r->view);
		r->view_name = strndup(v.name, v.name_len);
	}
	return r->view_name ? 0 : -ENOMEM;
}

int cmd_report(int argc, char **argv)
{
	enum {
		OPT_VIEW = 256,
		OPT_JSON,
		OPT_SBOM,
		OPT_NO_SCAN,
	};
	static const struct option longopts[] = {
		{"view", required_argument, NULL, OPT_VIEW},
		{"json", no_argument, NULL, OPT_JSON},
		{"sbom", required_argument, NULL, OPT_SBOM},
		{"no-scan", no_argument, NULL, OPT_NO_SCAN},
		{"output", required_argument, NULL, 'o'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *view = NULL, *sbom = NULL, *output = NULL;
	struct report r = {0};
	struct slimfs_image *img = NULL;
	_cleanup_free_ char *out = NULL;
	size_t out_len = 0;
	bool json = false;
	int c, ret;

	r.scan = true;
	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_VIEW:
			view = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_SBOM:
			if (strcmp(optarg, "spdx") != 0 && strcmp(optarg, "cyclonedx") != 0) {
				log_error("--sbom: '%s' is not a format (spdx, cyclonedx)", optarg);
				return EXIT_USAGE;
			}
			sbom = optarg;
			break;
		case OPT_NO_SCAN:
			r.scan = false;
			break;
		case 'o':
			output = optarg;
			break;
		case 'q':
			slimfs_log_set_level(SLIMFS_LOG_ERROR);
			break;
		case 'h':
			report_usage(stdout);
			return 0;
		default:
			report_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		log_error(optind >= argc ? "no image given" : "more than one image given");
		report_usage(stderr);
		return EXIT_USAGE;
	}
	if (json && sbom) {
		log_error("--json and --sbom are exclusive");
		return EXIT_USAGE;
	}

	if (slimfs_image_open(argv[optind], NULL, NULL, &img) < 0)
		return 1;
	r.img = img;
	r.idx = img->idx;
	ret = pick_view(&r, view);
	if (ret < 0)
		goto out;
	ret = slimfs_reader_init(&r.rd, img);
	if (ret < 0)
		goto out;
	r.inode_count = img->info->inode_count;
	if (!r.inode_count || r.inode_count > UINT32_MAX) {
		ret = log_error_errno(-EUCLEAN, "'%s': %" PRIu64 " inodes", img->source,
				      r.inode_count);
		goto out;
	}
	r.seen_full = calloc((size_t)(r.inode_count + 7) / 8, 1);
	r.seen_view = calloc((size_t)(r.inode_count + 7) / 8, 1);
	r.dir_seen = calloc((size_t)(r.inode_count + 7) / 8, 1);
	ret = SLIMFS_GROW(r.path, r.path_cap, 1, 16);
	if (!r.seen_full || !r.seen_view || !r.dir_seen || ret < 0) {
		ret = -ENOMEM;
		goto out;
	}
	ret = walk(&r);
	if (ret >= 0)
		ret = find_renamed_shells(&r);
	if (ret >= 0)
		ret = read_packages(&r);
	if (ret >= 0)
		ret = read_os_release(&r);
	if (ret < 0)
		goto out;
	if (r.shells.n)
		qsort(r.shells.v, r.shells.n, sizeof(r.shells.v[0]), cmp_finding);

	if (json || sbom) {
		json_t *j = !sbom			? report_json(&r)
			    : strcmp(sbom, "spdx") == 0 ? spdx_json(&r)
							: cyclonedx_json(&r);

		out = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
		json_decref(j);
		if (!out) {
			ret = -ENOMEM;
			goto out;
		}
		out_len = strlen(out);
		/* json_dumps has no final newline */
		{
			char *n = realloc(out, out_len + 2);

			if (!n) {
				ret = -ENOMEM;
				goto out;
			}
			out = n;
			out[out_len++] = '\n';
			out[out_len] = '\0';
		}
	} else {
		FILE *f = open_memstream(&out, &out_len);

		if (!f) {
			ret = -ENOMEM;
			goto out;
		}
		report_text(&r, f);
		if (fclose(f) != 0) {
			ret = -ENOMEM;
			goto out;
		}
	}
	ret = write_output(output, out, out_len);
out:
	if (ret == -ENOMEM)
		log_error_errno(ret, "report");
	report_free(&r);
	slimfs_image_close(img);
	return ret < 0 ? 1 : 0;
}
