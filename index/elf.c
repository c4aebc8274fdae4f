// SPDX-License-Identifier: MIT
/*
 * The closure of programs inside the builder's tree: symlink resolution,
 * "#!" interpreters, and ELF dependencies found like ld.so finds them
 * (DT_RPATH of the object and its loaders when it has no DT_RUNPATH, the
 * image's LD_LIBRARY_PATH, DT_RUNPATH, /etc/ld.so.conf of the image standing
 * in for ld.so.cache, then the default directories of the object's machine).
 *
 * ELF files are parsed with libelf from their bytes read out of the tree; only
 * program headers are used (section headers may be stripped), and every
 * offset read from the file is bounds-checked: image contents are untrusted.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "allowlist.h"
#include "dl_elf.h"
#include "elfclosure.h"
#include "slimfs/util.h"

#define ELF_FILE_MAX	 (1ull << 30) /* larger files are not parsed (warning) */
#define CONF_FILE_MAX	 (1u << 20)
#define SCRIPT_DEPTH_MAX 8   /* interpreters of interpreters (the kernel allows 4) */
#define CONF_DEPTH_MAX	 8   /* ld.so.conf include nesting */
#define PATHLIST_MAX	 256 /* entries of one search path list */
#define RESOLVE_PATH_MAX (64u << 10)

/* ---- node sets ---- */

static size_t ptr_hash(const void *p)
{
	uintptr_t v = (uintptr_t)p;

	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdull;
	v ^= v >> 33;
	return (size_t)v;
}

bool slimfs_nodeset_has(const struct slimfs_nodeset *s, const struct slimfs_tnode *n)
{
	if (!s->tab_cap)
		return false;
	for (size_t i = ptr_hash(n) & (s->tab_cap - 1);; i = (i + 1) & (s->tab_cap - 1)) {
		if (!s->tab[i])
			return false;
		if (s->tab[i] == n)
			return true;
	}
}

static void tab_put(struct slimfs_tnode **tab, size_t cap, struct slimfs_tnode *n)
{
	size_t i = ptr_hash(n) & (cap - 1);

	while (tab[i])
		i = (i + 1) & (cap - 1);
	tab[i] = n;
}

int slimfs_nodeset_add(struct slimfs_nodeset *s, struct slimfs_tnode *n)
{
	if (slimfs_nodeset_has(s, n))
		return 0;
	if ((s->n + 1) * 2 > s->tab_cap) {
		size_t cap = s->tab_cap ? s->tab_cap * 2 : 64;
		struct slimfs_tnode **tab = calloc(cap, sizeof(*tab));

		if (!tab)
			return -ENOMEM;
		for (size_t i = 0; i < s->n; i++)
			tab_put(tab, cap, s->v[i]);
		free(s->tab);
		s->tab = tab;
		s->tab_cap = cap;
	}
	if (SLIMFS_GROW(s->v, s->cap, s->n + 1, 64) < 0)
		return -ENOMEM;
	s->v[s->n++] = n;
	tab_put(s->tab, s->tab_cap, n);
	return 1;
}

void slimfs_nodeset_clear(struct slimfs_nodeset *s)
{
	free(s->v);
	free(s->tab);
	memset(s, 0, sizeof(*s));
}

/* ---- resolution ---- */

struct strbuf {
	char *s;
	size_t len, cap;
};

static void sb_free(struct strbuf *b)
{
	free(b->s);
}

static int sb_reserve(struct strbuf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need > b->cap) {
		size_t cap = MAX(need, b->cap * 2);
		char *s = realloc(b->s, cap);

		if (!s)
			return -ENOMEM;
		b->s = s;
		b->cap = cap;
	}
	return 0;
}

static int sb_append(struct strbuf *b, const char *s, size_t n)
{
	int r = sb_reserve(b, n);

	if (r < 0)
		return r;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

/* b = physical path of n ("" for the root, else "/a/b"). */
static int sb_set_path(struct strbuf *b, const struct slimfs_tnode *n)
{
	_cleanup_free_ char *p = slimfs_tree_path(n);

	if (!p)
		return -ENOMEM;
	b->len = 0;
	if (sb_reserve(b, 0) < 0)
		return -ENOMEM;
	b->s[0] = '\0';
	return n->parent ? sb_append(b, p, strlen(p)) : 0;
}

static bool is_dir(const struct slimfs_tnode *n)
{
	return S_ISDIR(n->ino->mode);
}

static int do_visit(slimfs_visit_fn visit, void *ud, struct slimfs_tnode *n)
{
	int r;

	if (!visit)
		return 0;
	r = visit(n, ud);
	return r > 0 ? -ECANCELED : r;
}

int slimfs_tree_resolve(struct slimfs_tree *t, struct slimfs_tnode *at, const char *path,
			bool follow_last, slimfs_visit_fn visit, void *ud,
			struct slimfs_tnode **out)
{
	_cleanup_free_ char *rest = strdup(path);
	_cleanup_(sb_free) struct strbuf pb = {0};
	struct slimfs_tnode *cur = path[0] == '/' || !at ? t->root : at;
	unsigned hops = 0;
	const char *p;
	int r;

	if (!rest)
		return -ENOMEM;
	r = sb_set_path(&pb, cur);
	if (r < 0)
		return r;
	r = do_visit(visit, ud, cur);
	if (r < 0)
		return r;
	p = rest;
	for (;;) {
		const char *name, *e;
		struct slimfs_tnode *c;
		size_t len, save;
		bool last;

		while (*p == '/')
			p++;
		if (!*p) {
			*out = cur;
			return 0;
		}
		name = p;
		e = strchrnul(p, '/');
		len = (size_t)(e - p);
		last = e[strspn(e, "/")] == '\0';
		p = e;
		if (len == 1 && name[0] == '.')
			continue;
		if (!is_dir(cur))
			return -ENOTDIR;
		if (len == 2 && name[0] == '.' && name[1] == '.') {
			if (cur->parent) {
				cur = cur->parent;
				pb.len = (size_t)(strrchr(pb.s, '/') - pb.s);
				pb.s[pb.len] = '\0';
			}
			continue;
		}
		if (len > 255)
			return -ENAMETOOLONG;
		save = pb.len;
		r = sb_append(&pb, "/", 1);
		if (r >= 0)
			r = sb_append(&pb, name, len);
		if (r < 0)
			return r;
		r = slimfs_tree_lookup(t, pb.s, &c);
		if (r < 0)
			return r == -ENOENT || r == -EINVAL ? -ENOENT : r;
		r = do_visit(visit, ud, c);
		if (r < 0)
			return r;
		if (S_ISLNK(c->ino->mode) && (!last || follow_last)) {
			const char *target = c->ino->target;
			char *nrest;

			pb.len = save;
			pb.s[pb.len] = '\0';
			if (++hops > SLIMFS_SYMLINK_HOPS_MAX)
				return -ELOOP;
			if (!target || !*target)
				return -ENOENT;
			if (strlen(target) + strlen(p) + 2 > RESOLVE_PATH_MAX)
				return -ENAMETOOLONG;
			if (asprintf(&nrest, "%s/%s", target, p) < 0)
				return -ENOMEM;
			free(rest);
			rest = nrest;
			p = rest;
			if (target[0] == '/') {
				cur = t->root;
				pb.len = 0;
				pb.s[0] = '\0';
			}
			continue;
		}
		cur = c;
	}
}

int slimfs_tree_read(struct slimfs_tree *t, const struct slimfs_tinode *ino, void *buf, size_t len,
		     uint64_t off)
{
	const struct slimfs_tcontent *d = &ino->data;
	_cleanup_close_ int own_fd = -1;
	int fd, r;

	if (off > d->size || len > d->size - off)
		return -EINVAL;
	memset(buf, 0, len);
	if (!len)
		return 0;
	if (d->from_spool) {
		fd = t->spool_fd;
	} else if (d->path) {
		own_fd = open(d->path, O_RDONLY | O_CLOEXEC);
		if (own_fd < 0)
			return -errno;
		fd = own_fd;
	} else {
		return d->nseg ? -EIO : 0;
	}
	for (uint32_t i = 0; i < d->nseg; i++) {
		const struct slimfs_tseg *s = &d->seg[i];
		uint64_t a = MAX(s->file_off, off), b = MIN(s->file_off + s->len, off + len);

		if (a >= b)
			continue;
		r = slimfs_pread_all(fd, (char *)buf + (a - off), (size_t)(b - a),
				     s->src_off + (a - s->file_off));
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- ELF ---- */

void slimfs_elf_info_clear(struct slimfs_elf_info *ei)
{
	free(ei->interp);
	for (size_t i = 0; i < ei->nneeded; i++)
		free(ei->needed[i]);
	free(ei->needed);
	free(ei->rpath);
	free(ei->runpath);
	memset(ei, 0, sizeof(*ei));
}

/* Class and machine from the first bytes; false when not ELF. */
static bool elf_ident(const unsigned char *h, size_t n, int *cls, unsigned *machine)
{
	if (n < 20 || memcmp(h, ELFMAG, SELFMAG) != 0)
		return false;
	if (h[EI_CLASS] != ELFCLASS32 && h[EI_CLASS] != ELFCLASS64)
		return false;
	*cls = h[EI_CLASS];
	if (h[EI_DATA] == ELFDATA2LSB)
		*machine = (unsigned)h[18] | (unsigned)h[19] << 8;
	else if (h[EI_DATA] == ELFDATA2MSB)
		*machine = (unsigned)h[18] << 8 | (unsigned)h[19];
	else
		return false;
	return true;
}

/* File offset of a virtual address, through the PT_LOAD segments. */
static bool vaddr_to_off(Elf *e, size_t phnum, uint64_t vaddr, uint64_t *off)
{
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr - ph.p_vaddr < ph.p_filesz) {
			*off = ph.p_offset + (vaddr - ph.p_vaddr);
			return true;
		}
	}
	return false;
}

/* NUL-terminated string at [off, limit) of buf, copied; NULL when out of bounds. */
static char *bounded_str(const char *buf, size_t size, uint64_t off, uint64_t limit)
{
	size_t n;

	limit = MIN(limit, (uint64_t)size);
	if (off >= limit)
		return NULL;
	n = strnlen(buf + off, (size_t)(limit - off));
	if (off + n >= limit)
		return NULL; /* no terminator inside the table */
	return strndup(buf + off, n);
}

static int push_str(char ***v, size_t *n, char *s)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(**v));

	if (!nv) {
		free(s);
		return -ENOMEM;
	}
	*v = nv;
	(*v)[(*n)++] = s;
	return 0;
}

/*
 * The bytes of a file, read on demand into a zeroed buffer of the file's size
 * (calloc: untouched pages cost nothing), so that only the headers, the
 * dynamic segment and its string table of a large library are ever read.
 */
struct elf_src {
	slimfs_elf_read_fn read;
	void *ud;
	char *buf;
	size_t size;
};

static int fill(struct elf_src *s, uint64_t off, uint64_t len)
{
	if (off >= s->size)
		return 0;
	len = MIN(len, s->size - off);
	return s->read(s->ud, s->buf + off, (size_t)len, off);
}

static uint64_t get_uint(const unsigned char *p, unsigned n, bool msb)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[msb ? i : n - 1 - i] << (8 * (n - 1 - i));
	return v;
}

/* Reads the program headers (and section header 0, for PN_XNUM counts). */
static int fill_headers(struct elf_src *s)
{
	const unsigned char *h = (const unsigned char *)s->buf;
	bool is64 = h[EI_CLASS] == ELFCLASS64, msb = h[EI_DATA] == ELFDATA2MSB;
	uint64_t phoff, shoff, phentsize, phnum;
	int r;

	if (s->size < (is64 ? 64u : 52u))
		return 0;
	phoff = get_uint(h + (is64 ? 32 : 28), is64 ? 8 : 4, msb);
	shoff = get_uint(h + (is64 ? 40 : 32), is64 ? 8 : 4, msb);
	phentsize = get_uint(h + (is64 ? 54 : 42), 2, msb);
	phnum = get_uint(h + (is64 ? 56 : 44), 2, msb);
	r = fill(s, phoff, phentsize * phnum);
	if (r >= 0 && phnum == PN_XNUM)
		r = fill(s, shoff, is64 ? 64 : 40);
	return r;
}

/* Parses the dynamic information of an ELF image. 0, -ENOEXEC (not ELF or
 * malformed: what is wrong goes to *why), -ENOMEM, the read's error. */
static int parse_elf(struct elf_src *src, struct slimfs_elf_info *ei, const char **why)
{
	char *buf = src->buf;
	size_t size = src->size;
	Elf *e;
	GElf_Ehdr eh;
	size_t phnum = 0;
	uint64_t dyn_off = 0, dyn_size = 0, strtab = 0, strsz = 0, str_off;
	uint64_t rpath = UINT64_MAX, runpath = UINT64_MAX;
	bool have_dyn = false, have_strtab = false;
	_cleanup_free_ uint64_t *needed = NULL;
	size_t nneeded = 0;
	int r = 0;

	memset(ei, 0, sizeof(*ei));
	r = fill(src, 0, 4096);
	if (r < 0)
		return r;
	if (!elf_ident((const unsigned char *)buf, size, &ei->cls, &ei->machine)) {
		*why = "not an ELF file";
		return -ENOEXEC;
	}
	r = fill_headers(src);
	if (r < 0)
		return r;
	e = elf_memory(buf, size);
	if (!e) {
		*why = elf_errmsg(-1);
		return -ENOEXEC;
	}
	if (elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh) || elf_getphdrnum(e, &phnum) != 0) {
		*why = "bad ELF header";
		r = -ENOEXEC;
		goto out;
	}
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(e, (int)i, &ph))
			continue;
		if (ph.p_type == PT_INTERP && !ei->interp) {
			if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset) {
				*why = "PT_INTERP outside the file";
				r = -ENOEXEC;
				goto out;
			}
			ph.p_filesz = MIN(ph.p_filesz, (uint64_t)PATH_MAX);
			r = fill(src, ph.p_offset, ph.p_filesz);
			if (r < 0)
				goto out;
			ei->interp = strndup(buf + ph.p_offset,
					     strnlen(buf + ph.p_offset, (size_t)ph.p_filesz));
			if (!ei->interp) {
				r = -ENOMEM;
				goto out;
			}
		} else if (ph.p_type == PT_DYNAMIC && !have_dyn) {
			dyn_off = ph.p_offset;
			dyn_size = ph.p_filesz;
			have_dyn = true;
		}
	}
	if (have_dyn) {
		Elf_Data *d;
		size_t ent = gelf_fsize(e, ELF_T_DYN, 1, EV_CURRENT);

		if (dyn_off > size || dyn_size > size - dyn_off) {
			*why = "PT_DYNAMIC outside the file";
			r = -ENOEXEC;
			goto out;
		}
		r = fill(src, dyn_off, dyn_size);
		if (r < 0)
			goto out;
		d = elf_getdata_rawchunk(e, (int64_t)dyn_off, (size_t)dyn_size, ELF_T_DYN);

		if (!d || !ent) {
			*why = "PT_DYNAMIC outside the file";
			r = -ENOEXEC;
			goto out;
		}
		for (size_t i = 0; i < d->d_size / ent; i++) {
			GElf_Dyn dyn;

			if (!gelf_getdyn(d, (int)i, &dyn) || dyn.d_tag == DT_NULL)
				break;
			switch (dyn.d_tag) {
			case DT_STRTAB:
				strtab = dyn.d_un.d_ptr;
				have_strtab = true;
				break;
			case DT_STRSZ:
				strsz = dyn.d_un.d_val;
				break;
			case DT_RPATH:
				rpath = dyn.d_un.d_val;
				break;
			case DT_RUNPATH:
				runpath = dyn.d_un.d_val;
				break;
			case DT_NEEDED: {
				uint64_t *nv = realloc(needed, (nneeded + 1) * sizeof(*nv));

				if (!nv) {
					r = -ENOMEM;
					goto out;
				}
				needed = nv;
				needed[nneeded++] = dyn.d_un.d_val;
				break;
			}
			default:
				break;
			}
		}
	}
	if (!nneeded && rpath == UINT64_MAX && runpath == UINT64_MAX)
		goto out;
	if (!have_strtab || !vaddr_to_off(e, phnum, strtab, &str_off) || str_off >= size) {
		*why = "DT_STRTAB missing or outside the file";
		r = -ENOEXEC;
		goto out;
	}
	strsz = MIN(strsz, size - str_off);
	r = fill(src, str_off, strsz);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < nneeded; i++) {
		char *s = needed[i] < strsz
				  ? bounded_str(buf, size, str_off + needed[i], str_off + strsz)
				  : NULL;

		if (!s) {
			*why = "DT_NEEDED outside the string table";
			r = -ENOEXEC;
			goto out;
		}
		r = push_str(&ei->needed, &ei->nneeded, s);
		if (r < 0)
			goto out;
	}
	if (rpath != UINT64_MAX && rpath < strsz)
		ei->rpath = bounded_str(buf, size, str_off + rpath, str_off + strsz);
	if (runpath != UINT64_MAX && runpath < strsz)
		ei->runpath = bounded_str(buf, size, str_off + runpath, str_off + strsz);
out:
	elf_end(e);
	if (r < 0)
		slimfs_elf_info_clear(ei);
	return r;
}

int slimfs_elf_parse(slimfs_elf_read_fn read, void *ud, uint64_t size, struct slimfs_elf_info *ei,
		     const char **why)
{
	_cleanup_free_ char *buf = NULL;
	struct elf_src src;

	memset(ei, 0, sizeof(*ei));
	if (size > ELF_FILE_MAX)
		return -EFBIG;
	buf = calloc(1, size ? (size_t)size : 1);
	if (!buf)
		return -ENOMEM;
	src = (struct elf_src){read, ud, buf, (size_t)size};
	return parse_elf(&src, ei, why);
}

int slimfs_elf_init(void)
{
	int r = slimfs_dl_elf_load();

	if (r < 0)
		return r;
	if (elf_version(EV_CURRENT) == EV_NONE) {
		log_error("libelf: %s", elf_errmsg(-1));
		return -ENOSYS;
	}
	return 0;
}

/* ---- the closure ---- */

struct closure {
	struct slimfs_tree *t;
	const struct slimfs_closure_args *a;
	struct slimfs_nodeset *out;
	struct slimfs_nodeset done; /* files already examined */
	struct slimfs_elf_obj *objs;
	size_t nobj;
	char **loaded; /* DT_NEEDED names already looked for */
	size_t nloaded;
	char **conf_dirs; /* from the image's /etc/ld.so.conf */
	size_t nconf_dirs;
	bool conf_read;
};

static int add_node(struct slimfs_tnode *n, void *ud)
{
	struct closure *c = ud;
	int r = slimfs_nodeset_add(c->out, n);

	return r < 0 ? r : 0;
}

static char *dir_of(const char *path)
{
	const char *s = strrchr(path, '/');

	if (!s)
		return strdup("/");
	if (s == path)
		return strdup("/");
	return strndup(path, (size_t)(s - path));
}

static const char *base_of(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* Reads a whole small file of the tree (NUL-terminated). */
static int read_small(struct slimfs_tree *t, struct slimfs_tnode *n, size_t max, char **out,
		      size_t *len)
{
	uint64_t size = n->ino->data.size;
	char *buf;
	int r;

	if (!S_ISREG(n->ino->mode))
		return -EINVAL;
	if (size > max)
		return -EFBIG;
	buf = malloc((size_t)size + 1);
	if (!buf)
		return -ENOMEM;
	r = slimfs_tree_read(t, n->ino, buf, (size_t)size, 0);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[size] = '\0';
	*out = buf;
	*len = (size_t)size;
	return 0;
}

/* Regular executable file at path (symlinks followed)? *out = it. */
static bool find_exec(struct closure *c, const char *path, struct slimfs_tnode **out)
{
	struct slimfs_tnode *n;

	if (slimfs_tree_resolve(c->t, NULL, path, true, NULL, NULL, &n) < 0)
		return false;
	if (!S_ISREG(n->ino->mode) || !(n->ino->mode & 0111))
		return false;
	*out = n;
	return true;
}

/* NAME on PATH (or a path): the path found, malloc'd, or NULL. */
static char *search_path(struct closure *c, const char *name)
{
	const char *path = c->a->path_env ? c->a->path_env : SLIMFS_DEFAULT_PATH;
	struct slimfs_tnode *n;

	if (strchr(name, '/'))
		return strdup(name);
	while (*path) {
		size_t len = strcspn(path, ":");
		char *cand;

		if (asprintf(&cand, "%.*s/%s", (int)len, len ? path : ".", name) < 0)
			return NULL;
		if (find_exec(c, cand, &n))
			return cand;
		free(cand);
		path += len;
		if (*path == ':')
			path++;
	}
	return NULL;
}

static int add_file(struct closure *c, const char *path, const char *who, unsigned depth,
		    bool required);

/*
 * "#!" line (kernel rules: the interpreter, then at most one argument, the
 * rest of the line). "/usr/bin/env [-S] [-i] [-u NAME] [VAR=x] NAME" adds NAME
 * found on PATH too.
 */
static int add_shebang(struct closure *c, const char *script, const char *hdr, size_t n,
		       unsigned depth)
{
	_cleanup_free_ char *line = NULL, *found = NULL;
	char *interp, *arg, *s;
	int r;

	line = strndup(hdr + 2, n - 2);
	if (!line)
		return -ENOMEM;
	line[strcspn(line, "\n")] = '\0';
	interp = line + strspn(line, " \t");
	arg = interp + strcspn(interp, " \t");
	if (*arg)
		*arg++ = '\0';
	if (!*interp) {
		log_warn("closure: '%s': empty '#!' line", script);
		return 0;
	}
	r = add_file(c, interp, script, depth + 1, false);
	if (r < 0 || strcmp(base_of(interp), "env") != 0)
		return r;
	/* env's own options come first: split like "env -S" would */
	for (s = strtok(arg, " \t"); s; s = strtok(NULL, " \t")) {
		if (!strcmp(s, "-u") || !strcmp(s, "--unset") || !strcmp(s, "-C") ||
		    !strcmp(s, "--chdir")) {
			s = strtok(NULL, " \t");
			if (!s)
				break;
			continue;
		}
		if (s[0] == '-' || strchr(s, '='))
			continue;
		break;
	}
	if (!s) {
		log_warn("closure: '%s': '#!%s' names no program", script, interp);
		return 0;
	}
	found = search_path(c, s);
	if (!found) {
		log_warn("closure: '%s' runs '%s' through env: not found on PATH in the image",
			 script, s);
		return 0;
	}
	return add_file(c, found, script, depth + 1, false);
}

static int push_obj(struct closure *c, struct slimfs_tnode *n, const char *path, long loader,
		    struct slimfs_elf_info *ei)
{
	struct slimfs_elf_obj *v = realloc(c->objs, (c->nobj + 1) * sizeof(*v));
	char *dir;

	if (!v)
		return -ENOMEM;
	c->objs = v;
	dir = dir_of(path);
	if (!dir)
		return -ENOMEM;
	v[c->nobj].node = n;
	v[c->nobj].dir = dir;
	v[c->nobj].loader = loader;
	v[c->nobj].ei = *ei;
	memset(ei, 0, sizeof(*ei));
	c->nobj++;
	return 0;
}

struct tree_file {
	struct slimfs_tree *t;
	const struct slimfs_tinode *ino;
};

static int tree_file_read(void *ud, void *buf, size_t len, uint64_t off)
{
	const struct tree_file *f = ud;

	return slimfs_tree_read(f->t, f->ino, buf, len, off);
}

/* Reads and parses an ELF file of the tree. 0, 1 when not (usable) ELF, -errno. */
static int load_elf(struct closure *c, struct slimfs_tnode *n, const char *path,
		    struct slimfs_elf_info *ei)
{
	struct tree_file f = {c->t, n->ino};
	const char *why = NULL;
	int r;

	r = slimfs_elf_parse(tree_file_read, &f, n->ino->data.size, ei, &why);
	if (r == -EFBIG) {
		log_warn("closure: '%s' is too large to examine (%" PRIu64 " bytes)", path,
			 n->ino->data.size);
		return 1;
	}
	if (r < 0 && r != -ENOEXEC && r != -ENOMEM)
		return log_error_errno(r, "closure: cannot read '%s'", path);
	if (r == -ENOEXEC) {
		log_warn("closure: '%s': %s; its dependencies are not followed", path, why);
		return 1;
	}
	return r;
}

/* A program, interpreter or loader: the file, its "#!" or its ELF object. */
static int add_file(struct closure *c, const char *path, const char *who, unsigned depth,
		    bool required)
{
	struct slimfs_tnode *n;
	char hdr[256];
	size_t hn;
	int r;

	if (depth > SCRIPT_DEPTH_MAX) {
		log_warn("closure: '%s': interpreters nested more than %u deep", path,
			 SCRIPT_DEPTH_MAX);
		return 0;
	}
	r = slimfs_tree_resolve(c->t, NULL, path, true, add_node, c, &n);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		if (required) {
			log_error("entrypoint '%s' is not in the image: %s", path, strerror(-r));
			return -ENOENT;
		}
		if (who)
			log_warn("closure: '%s' needs '%s': %s in the image", who, path,
				 strerror(-r));
		else
			log_warn("closure: entrypoint '%s': %s in the image", path, strerror(-r));
		return 0;
	}
	if (!S_ISREG(n->ino->mode))
		return 0;
	r = slimfs_nodeset_add(&c->done, n);
	if (r <= 0)
		return r;
	hn = (size_t)MIN(n->ino->data.size, (uint64_t)sizeof(hdr));
	r = slimfs_tree_read(c->t, n->ino, hdr, hn, 0);
	if (r < 0)
		return log_error_errno(r, "closure: cannot read '%s'", path);
	if (hn >= 2 && hdr[0] == '#' && hdr[1] == '!')
		return c->a->elf_only ? 0 : add_shebang(c, path, hdr, hn, depth);
	if (hn >= SELFMAG && memcmp(hdr, ELFMAG, SELFMAG) == 0) {
		struct slimfs_elf_info ei;
		_cleanup_free_ char *interp = NULL;

		r = load_elf(c, n, path, &ei);
		if (r != 0)
			return r < 0 ? r : 0;
		interp = ei.interp ? strdup(ei.interp) : NULL;
		if (ei.interp && !interp) {
			slimfs_elf_info_clear(&ei);
			return -ENOMEM;
		}
		r = push_obj(c, n, path, -1, &ei);
		slimfs_elf_info_clear(&ei);
		if (r < 0 || !interp)
			return r;
		return add_file(c, interp, path, depth + 1, false);
	}
	return 0;
}

static const char *triplet(unsigned machine, int cls)
{
	switch (machine) {
	case EM_X86_64:
		return cls == ELFCLASS64 ? "x86_64-linux-gnu" : "x86_64-linux-gnux32";
	case EM_386:
		return "i386-linux-gnu";
	case EM_AARCH64:
		return "aarch64-linux-gnu";
	case EM_ARM:
		return "arm-linux-gnueabihf";
	case EM_PPC64:
		return "powerpc64le-linux-gnu";
	case EM_S390:
		return "s390x-linux-gnu";
	case EM_RISCV:
		return "riscv64-linux-gnu";
	case EM_MIPS:
		return cls == ELFCLASS64 ? "mips64el-linux-gnuabi64" : "mipsel-linux-gnu";
	default:
		return NULL;
	}
}

static const char *platform(unsigned machine)
{
	switch (machine) {
	case EM_X86_64:
		return "x86_64";
	case EM_386:
		return "i686";
	case EM_AARCH64:
		return "aarch64";
	case EM_ARM:
		return "v7l";
	case EM_PPC64:
		return "power8";
	case EM_S390:
		return "z13";
	case EM_RISCV:
		return "riscv64";
	default:
		return "unknown";
	}
}

/* Replaces $NAME / ${NAME} in s by val; a new string. */
static char *subst(const char *s, const char *name, const char *val)
{
	struct strbuf b = {0};
	size_t nlen = strlen(name);

	if (sb_append(&b, "", 0) < 0)
		return NULL;
	while (*s) {
		size_t skip = 0;

		if (s[0] == '$' && !strncmp(s + 1, name, nlen) &&
		    !(isalnum((unsigned char)s[1 + nlen]) || s[1 + nlen] == '_'))
			skip = 1 + nlen;
		else if (s[0] == '$' && s[1] == '{' && !strncmp(s + 2, name, nlen) &&
			 s[2 + nlen] == '}')
			skip = 3 + nlen;
		if (skip ? sb_append(&b, val, strlen(val)) : sb_append(&b, s, 1)) {
			free(b.s);
			return NULL;
		}
		s += skip ? skip : 1;
	}
	return b.s;
}

void slimfs_dirlist_clear(struct slimfs_dirlist *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->v[i]);
	free(d->v);
	memset(d, 0, sizeof(*d));
}

static int dirlist_add(struct slimfs_dirlist *d, const char *dir)
{
	char *s;

	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->v[i], dir))
			return 0;
	s = strdup(dir);
	return s ? push_str(&d->v, &d->n, s) : -ENOMEM;
}

/* A ':'-separated list, with $ORIGIN, $LIB and $PLATFORM expanded. */
static int add_pathlist(struct slimfs_dirlist *d, const char *list, const struct slimfs_elf_obj *o)
{
	static const char *const libs64[] = {"lib64", "lib", NULL};
	static const char *const libs32[] = {"lib32", "lib", NULL};
	const char *tri = triplet(o->ei.machine, o->ei.cls);
	unsigned count = 0;
	int r = 0;

	while (*list && count++ < PATHLIST_MAX) {
		size_t len = strcspn(list, ":");
		_cleanup_free_ char *item = strndup(list, len);
		_cleanup_free_ char *a = NULL, *b = NULL;
		const char *const *libs = o->ei.cls == ELFCLASS64 ? libs64 : libs32;
		char tlib[64];

		list += len;
		if (*list == ':')
			list++;
		if (!item)
			return -ENOMEM;
		if (!len)
			continue;
		a = subst(item, "ORIGIN", o->dir);
		b = a ? subst(a, "PLATFORM", platform(o->ei.machine)) : NULL;
		if (!b)
			return -ENOMEM;
		if (!strstr(b, "$LIB") && !strstr(b, "${LIB}")) {
			r = dirlist_add(d, b);
			if (r < 0)
				return r;
			continue;
		}
		/* $LIB: Debian's multiarch directory first, then the classic ones */
		if (tri) {
			_cleanup_free_ char *x = NULL;

			snprintf(tlib, sizeof(tlib), "lib/%s", tri);
			x = subst(b, "LIB", tlib);
			if (!x || (r = dirlist_add(d, x)) < 0)
				return x ? r : -ENOMEM;
		}
		for (; *libs; libs++) {
			_cleanup_free_ char *x = subst(b, "LIB", *libs);

			if (!x || (r = dirlist_add(d, x)) < 0)
				return x ? r : -ENOMEM;
		}
	}
	return 0;
}

static int conf_file(struct closure *c, const char *path, unsigned depth);

/* "include GLOB": the glob is only allowed in the last component. */
static int conf_include(struct closure *c, const char *conf, const char *pat, unsigned depth)
{
	_cleanup_free_ char *full = NULL, *dir = NULL;
	_cleanup_free_ struct slimfs_tnode **kids = NULL;
	struct slimfs_tnode *d;
	const char *base;
	uint32_t nk;
	int r;

	if (pat[0] == '/') {
		full = strdup(pat);
	} else {
		_cleanup_free_ char *cd = dir_of(conf);

		if (!cd || asprintf(&full, "%s/%s", cd, pat) < 0)
			full = NULL;
	}
	if (!full)
		return -ENOMEM;
	dir = dir_of(full);
	if (!dir)
		return -ENOMEM;
	base = base_of(full);
	if (strpbrk(dir, "*?["))
		return 0; /* not supported: wildcards above the last component */
	if (slimfs_tree_resolve(c->t, NULL, dir, true, NULL, NULL, &d) < 0 || !is_dir(d))
		return 0;
	r = slimfs_tree_sorted_children(d, &kids, &nk);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < nk; i++) {
		_cleanup_free_ char *p = NULL;

		if (slimfs_glob_match(base, kids[i]->name, false) != 1)
			continue;
		if (asprintf(&p, "%s/%s", dir, kids[i]->name) < 0)
			return -ENOMEM;
		r = conf_file(c, p, depth + 1);
		if (r < 0)
			return r;
	}
	return 0;
}

static int conf_file(struct closure *c, const char *path, unsigned depth)
{
	_cleanup_free_ char *text = NULL;
	struct slimfs_tnode *n;
	char *line, *save = NULL;
	size_t len;
	int r;

	if (depth > CONF_DEPTH_MAX) {
		log_warn("closure: '%s': ld.so.conf includes nested more than %u deep", path,
			 CONF_DEPTH_MAX);
		return 0;
	}
	if (slimfs_tree_resolve(c->t, NULL, path, true, NULL, NULL, &n) < 0)
		return 0;
	r = read_small(c->t, n, CONF_FILE_MAX, &text, &len);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		log_warn_errno(r, "closure: cannot read '%s'", path);
		return 0;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *s, *w, *wsave = NULL;

		line[strcspn(line, "#")] = '\0';
		s = line + strspn(line, " \t\r");
		if (!strncmp(s, "include", 7) && (s[7] == ' ' || s[7] == '\t')) {
			for (w = strtok_r(s + 8, " \t\r", &wsave); w;
			     w = strtok_r(NULL, " \t\r", &wsave)) {
				r = conf_include(c, path, w, depth);
				if (r < 0)
					return r;
			}
			continue;
		}
		if (!strncmp(s, "hwcap", 5) && (s[5] == ' ' || s[5] == '\t'))
			continue;
		for (w = strtok_r(s, " \t\r,:", &wsave); w; w = strtok_r(NULL, " \t\r,:", &wsave)) {
			struct slimfs_dirlist d = {.v = c->conf_dirs, .n = c->nconf_dirs};

			w[strcspn(w, "=")] = '\0';
			if (w[0] != '/')
				continue;
			r = dirlist_add(&d, w);
			c->conf_dirs = d.v;
			c->nconf_dirs = d.n;
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Is n an ELF file of the same class and machine as o? */
static bool compatible(struct closure *c, struct slimfs_tnode *n, const struct slimfs_elf_obj *o)
{
	unsigned char h[20];
	unsigned machine;
	int cls;

	if (!S_ISREG(n->ino->mode) || n->ino->data.size < sizeof(h))
		return false;
	if (slimfs_tree_read(c->t, n->ino, h, sizeof(h), 0) < 0)
		return false;
	return elf_ident(h, sizeof(h), &cls, &machine) && cls == o->ei.cls &&
	       machine == o->ei.machine;
}

int slimfs_elf_search_dirs(const struct slimfs_elf_obj *objs, size_t i, const char *ld_library_path,
			   char *const *conf_dirs, size_t nconf, struct slimfs_dirlist *d)
{
	const struct slimfs_elf_obj *o = &objs[i];
	const char *tri = triplet(o->ei.machine, o->ei.cls);
	char buf[128];
	int r = 0;

	if (!o->ei.runpath)
		for (long l = (long)i; l >= 0 && r >= 0; l = objs[l].loader)
			if (objs[l].ei.rpath)
				r = add_pathlist(d, objs[l].ei.rpath, &objs[l]);
	if (r >= 0 && ld_library_path)
		r = add_pathlist(d, ld_library_path, o);
	if (r >= 0 && o->ei.runpath)
		r = add_pathlist(d, o->ei.runpath, o);
	for (size_t k = 0; r >= 0 && k < nconf; k++)
		r = dirlist_add(d, conf_dirs[k]);
	if (r >= 0 && tri) {
		snprintf(buf, sizeof(buf), "/lib/%s", tri);
		r = dirlist_add(d, buf);
		snprintf(buf, sizeof(buf), "/usr/lib/%s", tri);
		if (r >= 0)
			r = dirlist_add(d, buf);
	}
	if (r >= 0)
		r = dirlist_add(d, o->ei.cls == ELFCLASS64 ? "/lib64" : "/lib32");
	if (r >= 0)
		r = dirlist_add(d, o->ei.cls == ELFCLASS64 ? "/usr/lib64" : "/usr/lib32");
	if (r >= 0)
		r = dirlist_add(d, "/lib");
	if (r >= 0)
		r = dirlist_add(d, "/usr/lib");
	return r;
}

/* The search path of object i for its DT_NEEDED entries, in ld.so's order
 * (/etc/ld.so.conf of the image read on first use). */
static int search_dirs(struct closure *c, size_t i, struct slimfs_dirlist *d)
{
	if (!c->conf_read) {
		int r;

		c->conf_read = true;
		r = conf_file(c, "/etc/ld.so.conf", 0);
		if (r < 0)
			return r;
	}
	return slimfs_elf_search_dirs(c->objs, i, c->a->ld_library_path, c->conf_dirs,
				      c->nconf_dirs, d);
}

static int add_needed(struct closure *c, size_t i, const char *name)
{
	_cleanup_free_ char *who = slimfs_tree_path((struct slimfs_tnode *)c->objs[i].node);
	struct slimfs_dirlist d = {0};
	struct slimfs_tnode *n;
	char *found = NULL, *copy;
	struct slimfs_elf_info ei;
	int r;

	if (!who)
		return -ENOMEM;
	for (size_t k = 0; k < c->nloaded; k++)
		if (!strcmp(c->loaded[k], name))
			return 0;
	copy = strdup(name);
	if (!copy || (r = push_str(&c->loaded, &c->nloaded, copy)) < 0)
		return -ENOMEM;
	if (strchr(name, '/')) {
		found = strdup(name);
		if (!found)
			return -ENOMEM;
	} else {
		r = search_dirs(c, i, &d);
		for (size_t k = 0; r >= 0 && k < d.n && !found; k++) {
			char *cand;

			if (asprintf(&cand, "%s/%s", d.v[k], name) < 0) {
				r = -ENOMEM;
				break;
			}
			if (slimfs_tree_resolve(c->t, NULL, cand, true, NULL, NULL, &n) == 0 &&
			    compatible(c, n, &c->objs[i]))
				found = cand;
			else
				free(cand);
		}
		slimfs_dirlist_clear(&d);
		if (r < 0)
			return r;
	}
	if (!found) {
		log_warn("closure: '%s' needs '%s': not found in the image", who, name);
		return 0;
	}
	/* a path in DT_NEEDED must be a library too, not any file of the image */
	if (strchr(name, '/') &&
	    (slimfs_tree_resolve(c->t, NULL, found, true, NULL, NULL, &n) < 0 ||
	     !compatible(c, n, &c->objs[i]))) {
		log_warn("closure: '%s' needs '%s': not a compatible ELF file in the image", who,
			 name);
		free(found);
		return 0;
	}
	r = slimfs_tree_resolve(c->t, NULL, found, true, add_node, c, &n);
	if (r < 0 || !S_ISREG(n->ino->mode)) {
		if (r == -ENOMEM)
			goto out;
		log_warn("closure: '%s' needs '%s': '%s' is not a usable file", who, name, found);
		r = 0;
		goto out;
	}
	r = slimfs_nodeset_add(&c->done, n);
	if (r <= 0)
		goto out;
	r = load_elf(c, n, found, &ei);
	if (r != 0) {
		r = r < 0 ? r : 0;
		goto out;
	}
	r = push_obj(c, n, found, (long)i, &ei);
	slimfs_elf_info_clear(&ei);
out:
	free(found);
	return r;
}

int slimfs_elf_closure(struct slimfs_tree *t, const struct slimfs_closure_args *a,
		       struct slimfs_nodeset *out)
{
	struct closure c = {.t = t, .a = a, .out = out};
	int r;

	r = slimfs_elf_init();
	if (r < 0)
		return r;
	for (size_t i = 0; i < a->nprograms && r >= 0; i++) {
		const char *prog = a->programs[i];
		_cleanup_free_ char *path = NULL;

		if (!strchr(prog, '/')) {
			path = search_path(&c, prog);
			if (!path) {
				if (i >= a->optional_from) {
					log_debug("closure: '%s' is not a program on PATH", prog);
				} else if (a->required) {
					log_error("entrypoint '%s' is not on PATH in the image",
						  prog);
					r = -ENOENT;
				} else {
					log_warn("closure: entrypoint '%s' is not on PATH in the "
						 "image",
						 prog);
				}
				continue;
			}
		} else if (prog[0] != '/' && a->cwd) {
			if (asprintf(&path, "%s/%s", a->cwd, prog) < 0)
				r = -ENOMEM;
		} else {
			path = strdup(prog);
		}
		if (!path) {
			r = -ENOMEM;
			break;
		}
		if (i >= a->optional_from && !find_exec(&c, path, &(struct slimfs_tnode *){NULL})) {
			log_debug("closure: '%s' is not a program in the image", path);
			continue;
		}
		r = add_file(&c, path, NULL, 0, a->required);
	}
	/* Breadth first: objs grows while it is walked. */
	for (size_t i = 0; i < c.nobj && r >= 0; i++)
		for (size_t k = 0; k < c.objs[i].ei.nneeded && r >= 0; k++)
			r = add_needed(&c, i, c.objs[i].ei.needed[k]);
	for (size_t i = 0; i < c.nobj; i++) {
		free(c.objs[i].dir);
		slimfs_elf_info_clear(&c.objs[i].ei);
	}
	free(c.objs);
	for (size_t i = 0; i < c.nloaded; i++)
		free(c.loaded[i]);
	free(c.loaded);
	for (size_t i = 0; i < c.nconf_dirs; i++)
		free(c.conf_dirs[i]);
	free(c.conf_dirs);
	slimfs_nodeset_clear(&c.done);
	return r;
}
