// SPDX-License-Identifier: MIT
/*
 * Views: one bit per inode and named view (format.h: inode.views).
 *
 * For each view, its allow-list is evaluated over every path of the tree (the
 * last rule matching a path or one of its parent directories decides; a
 * selected directory brings its subtree), then the entrypoint closure
 * (elf.c) is added. Then:
 *   - a selected symlink to an ELF file (a program or library) brings the
 *     chain it points through (each link, the directories on the way, the
 *     file), unless the allow-list excludes one of them explicitly; a
 *     symlink to anything else is left dangling when its target is hidden
 *     (content cannot widen a view by planting links);
 *   - selected ELF files bring their loader and libraries (ELF only: no
 *     "#!" interpreters), unless explicitly excluded;
 *   - a symlink whose target is a visible directory (the merged-/usr
 *     aliases /bin, /lib, /lib64, /sbin) is visible when its own directory
 *     is, unless explicitly excluded: the name exposes nothing hidden;
 *   - every ancestor of a visible entry is visible, the root always.
 * A hardlinked inode selected under any name is visible under all of them.
 * When an entrypoint (or --prune) is given without views, a view "minimal"
 * (@runtime-base + the closure) is made and becomes the default.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "allowlist.h"
#include "elfclosure.h"
#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/util.h"
#include "tree.h"

#define CONFIG_ENV_MAX 4096

/* ---- iterative walk ---- */

struct frame {
	struct slimfs_tnode *dir;
	uint32_t slot;
	size_t path_len; /* of dir's path in the walk's buffer */
	long decision;	 /* allow-list rule deciding dir, -1: none */
	uint32_t mask;	 /* views in which dir is visible (stats) */
};

struct walk {
	struct frame *f;
	size_t n, cap;
	char *path; /* relative path of the current node, "" for the root */
	size_t path_cap;
};

static void walk_free(struct walk *w)
{
	free(w->f);
	free(w->path);
}

static int walk_push(struct walk *w, struct slimfs_tnode *dir, size_t path_len, long decision,
		     uint32_t mask)
{
	if (SLIMFS_GROW(w->f, w->cap, w->n + 1, 64) < 0)
		return -ENOMEM;
	w->f[w->n++] = (struct frame){dir, 0, path_len, decision, mask};
	return 0;
}

/*
 * Next node of a depth-first walk below the frames; its path in w->path.
 * NULL at the end. *parent is the frame of its directory.
 */
static int walk_next(struct walk *w, struct slimfs_tnode **out, struct frame **parent)
{
	while (w->n) {
		struct frame *f = &w->f[w->n - 1];
		struct slimfs_tnode *c;
		size_t len;

		if (f->slot >= f->dir->child_cap) {
			w->n--;
			continue;
		}
		c = f->dir->child[f->slot++];
		if (!c)
			continue;
		len = f->path_len + (f->path_len ? 1 : 0) + c->name_len;
		if (len + 1 > w->path_cap) {
			size_t cap = MAX(len + 1, w->path_cap * 2);
			char *p = realloc(w->path, cap);

			if (!p)
				return -ENOMEM;
			w->path = p;
			w->path_cap = cap;
		}
		if (f->path_len)
			w->path[f->path_len] = '/';
		memcpy(w->path + len - c->name_len, c->name, c->name_len);
		w->path[len] = '\0';
		*out = c;
		*parent = f;
		return 1;
	}
	return 0;
}

static int walk_start(struct walk *w, struct slimfs_tree *t, long decision, uint32_t mask)
{
	memset(w, 0, sizeof(*w));
	w->path = calloc(1, 256);
	if (!w->path)
		return -ENOMEM;
	w->path_cap = 256;
	return walk_push(w, t->root, 0, decision, mask);
}

/* ---- selection ---- */

static bool is_dir(const struct slimfs_tnode *n)
{
	return S_ISDIR(n->ino->mode);
}

/* Makes n visible in the view of bit, with its ancestors. */
static void select_node(struct slimfs_tnode *n, uint32_t bit)
{
	n->ino->views |= bit;
	for (n = n->parent; n && !(n->ino->views & bit); n = n->parent)
		n->ino->views |= bit;
}

static bool selected(const struct slimfs_allowlist *al, long decision)
{
	return decision >= 0 && !slimfs_allowlist_negated(al, (size_t)decision);
}

/* Does the allow-list exclude n explicitly (a '!' rule decides it)? */
static int excluded(const struct slimfs_allowlist *al, const struct slimfs_tnode *n, bool *out)
{
	_cleanup_free_ char *path = slimfs_tree_path(n);
	long d;
	char *p;

	if (!path)
		return -ENOMEM;
	d = slimfs_allowlist_decide(al, "", true, -1);
	for (p = path + 1; *p;) {
		char *e = strchrnul(p, '/');
		bool last = !*e;

		*e = '\0';
		d = slimfs_allowlist_decide(al, path + 1, last ? is_dir(n) : true, d);
		if (!last)
			*e = '/';
		p = last ? e : e + 1;
	}
	*out = d >= 0 && slimfs_allowlist_negated(al, (size_t)d);
	return 0;
}

/* Could n be an ELF program or library? (executable, or named like a library) */
static bool elf_candidate(const struct slimfs_tnode *n)
{
	return S_ISREG(n->ino->mode) && n->ino->data.size >= 64 &&
	       ((n->ino->mode & 0111) || memmem(n->name, n->name_len, ".so", 3));
}

struct follow {
	const struct slimfs_allowlist *al;
	uint32_t bit;
	struct slimfs_nodeset *elfs;
};

static int follow_visit(struct slimfs_tnode *n, void *ud)
{
	struct follow *f = ud;
	bool ex;
	int r;

	if (n->ino->views & f->bit)
		return 0;
	r = excluded(f->al, n, &ex);
	if (r < 0)
		return r;
	if (ex)
		return 1; /* the chain stops at what the list excludes */
	select_node(n, f->bit);
	return elf_candidate(n) ? MIN(slimfs_nodeset_add(f->elfs, n), 0) : 0;
}

/*
 * Evaluates one allow-list into bit; selected symlinks go to links, selected
 * files that may be ELF to elfs.
 */
static int apply_allowlist(struct slimfs_tree *t, const struct slimfs_allowlist *al, uint32_t bit,
			   struct slimfs_nodeset *links, struct slimfs_nodeset *elfs)
{
	struct walk w;
	struct slimfs_tnode *c;
	struct frame *f;
	long d;
	int r;

	select_node(t->root, bit);
	if (!slimfs_allowlist_count(al))
		return 0;
	d = slimfs_allowlist_decide(al, "", true, -1);
	r = walk_start(&w, t, d, 0);
	while (r >= 0 && (r = walk_next(&w, &c, &f)) > 0) {
		size_t len = strlen(w.path);

		d = slimfs_allowlist_decide(al, w.path, is_dir(c), f->decision);
		if (selected(al, d)) {
			select_node(c, bit);
			if (S_ISLNK(c->ino->mode))
				r = slimfs_nodeset_add(links, c);
			else if (elf_candidate(c))
				r = slimfs_nodeset_add(elfs, c);
			if (r < 0)
				break;
		}
		if (is_dir(c) && c->child_cap)
			r = walk_push(&w, c, len, d, 0);
	}
	walk_free(&w);
	return r < 0 ? r : 0;
}

/* Symlinks a view selected: select what they point through. */
static int follow_links(struct slimfs_tree *t, const struct slimfs_allowlist *al, uint32_t bit,
			const struct slimfs_nodeset *links, struct slimfs_nodeset *elfs)
{
	struct follow f = {al, bit, elfs};

	for (size_t i = 0; i < links->n; i++) {
		struct slimfs_tnode *l = links->v[i], *out;
		const char *target = l->ino->target ? l->ino->target : "";
		unsigned char magic[4];
		int r;

		/* only a program or library is followed: anything else dangles */
		r = slimfs_tree_resolve(t, l->parent, target, true, NULL, NULL, &out);
		if (r == 0 && (!S_ISREG(out->ino->mode) || out->ino->data.size < sizeof(magic) ||
			       slimfs_tree_read(t, out->ino, magic, sizeof(magic), 0) < 0 ||
			       memcmp(magic, "\177ELF", 4) != 0))
			continue;
		if (r == 0)
			r = slimfs_tree_resolve(t, l->parent, target, true, follow_visit, &f, &out);
		if (r == -ENOMEM)
			return r;
		if (r < 0 && r != -ECANCELED) {
			_cleanup_free_ char *p = slimfs_tree_path(l);

			log_debug("view: symlink '%s' -> '%s' dangles: %s", p ? p : "?", target,
				  strerror(-r));
		}
	}
	return 0;
}

/*
 * What the ELF files a view selected need (loader, libraries), unless the
 * allow-list excludes it explicitly: a selected Python extension brings the
 * library it links. "#!" lines of selected scripts are not followed (a
 * script of a selected tree does not bring a shell back).
 */
static int elf_deps(struct slimfs_tree *t, const struct slimfs_allowlist *al, uint32_t bit,
		    const struct slimfs_nodeset *elfs, const struct slimfs_closure_args *base,
		    const char *view)
{
	struct slimfs_closure_args ca = *base;
	struct slimfs_nodeset deps = {0};
	char **paths;
	size_t added = 0;
	int r = 0;

	if (!elfs->n)
		return 0;
	paths = calloc(elfs->n, sizeof(*paths));
	if (!paths)
		return -ENOMEM;
	for (size_t i = 0; i < elfs->n && r >= 0; i++) {
		paths[i] = slimfs_tree_path(elfs->v[i]);
		if (!paths[i])
			r = -ENOMEM;
	}
	ca.programs = (const char *const *)paths;
	ca.nprograms = elfs->n;
	ca.required = false;
	ca.elf_only = true;
	ca.optional_from = SIZE_MAX;
	if (r >= 0)
		r = slimfs_elf_closure(t, &ca, &deps);
	for (size_t i = 0; r >= 0 && i < deps.n; i++) {
		struct slimfs_tnode *n = deps.v[i];
		bool ex;

		if (n->ino->views & bit)
			continue;
		r = excluded(al, n, &ex);
		if (r >= 0 && !ex) {
			select_node(n, bit);
			added++;
		}
	}
	if (r >= 0)
		log_debug("view %s: %zu possible ELF files selected, %zu entries added for their "
			  "dependencies",
			  view, elfs->n, added);
	for (size_t i = 0; i < elfs->n; i++)
		free(paths[i]);
	free(paths);
	slimfs_nodeset_clear(&deps);
	return r;
}

/*
 * Directory aliases: a symlink in a visible directory whose target resolves
 * to a directory visible in the same view is shown there too.
 */
static int reveal_aliases(struct slimfs_tree *t, struct slimfs_allowlist *const *al,
			  unsigned nviews)
{
	uint32_t all = nviews >= 32 ? UINT32_MAX : (1u << nviews) - 1;
	struct walk w;
	struct slimfs_tnode *c, *target;
	struct frame *f;
	int r;

	r = walk_start(&w, t, -1, 0);
	while (r >= 0 && (r = walk_next(&w, &c, &f)) > 0) {
		uint32_t want = f->dir->ino->views & ~c->ino->views & all;

		if (is_dir(c) && c->child_cap) {
			r = walk_push(&w, c, strlen(w.path), -1, 0);
			continue;
		}
		if (!S_ISLNK(c->ino->mode) || !want || !c->ino->target)
			continue;
		if (slimfs_tree_resolve(t, c->parent, c->ino->target, true, NULL, NULL, &target) <
			    0 ||
		    !is_dir(target))
			continue;
		want &= target->ino->views;
		for (unsigned v = 0; v < nviews && want; v++) {
			bool ex = false;

			if (!(want & (1u << v)))
				continue;
			if (al[v] && (r = excluded(al[v], c, &ex)) < 0)
				break;
			if (!ex)
				c->ino->views |= 1u << v;
		}
	}
	walk_free(&w);
	return r < 0 ? r : 0;
}

static int clear_bits(struct slimfs_tree *t)
{
	struct walk w;
	struct slimfs_tnode *c;
	struct frame *f;
	int r;

	t->root->ino->views = 0;
	r = walk_start(&w, t, -1, 0);
	while (r >= 0 && (r = walk_next(&w, &c, &f)) > 0) {
		c->ino->views = 0;
		if (is_dir(c) && c->child_cap)
			r = walk_push(&w, c, strlen(w.path), -1, 0);
	}
	walk_free(&w);
	return r < 0 ? r : 0;
}

/* Entries and file bytes reachable in each view (an entry and all its parents visible). */
static int view_stats(struct slimfs_tree *t, unsigned nviews, uint64_t *entries, uint64_t *bytes)
{
	struct walk w;
	struct slimfs_tnode *c;
	struct frame *f;
	uint32_t rootmask = t->root->ino->views;
	int r;

	for (unsigned v = 0; v < nviews; v++) {
		entries[v] = rootmask >> v & 1;
		bytes[v] = 0;
	}
	r = walk_start(&w, t, -1, rootmask);
	while (r >= 0 && (r = walk_next(&w, &c, &f)) > 0) {
		uint32_t m = f->mask & c->ino->views;

		if (!m)
			continue;
		for (unsigned v = 0; v < nviews; v++) {
			if (!(m >> v & 1))
				continue;
			entries[v]++;
			if (S_ISREG(c->ino->mode))
				bytes[v] += c->ino->data.size;
		}
		if (is_dir(c) && c->child_cap)
			r = walk_push(&w, c, strlen(w.path), -1, m);
	}
	walk_free(&w);
	return r < 0 ? r : 0;
}

/* ---- the image's config ---- */

struct entry_cfg {
	char *programs[2];
	size_t nprograms;
	size_t optional_from; /* Cmd[0] after an Entrypoint may be an argument */
	char *path_env, *ld_library_path, *cwd;
};

static void entry_cfg_clear(struct entry_cfg *e)
{
	for (size_t i = 0; i < e->nprograms; i++)
		free(e->programs[i]);
	free(e->path_env);
	free(e->ld_library_path);
	free(e->cwd);
	memset(e, 0, sizeof(*e));
}

static int dup_to(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	return *dst ? 0 : -ENOMEM;
}

/* First string of a JSON array, or NULL. */
static const char *first_str(json_t *a)
{
	json_t *v = json_is_array(a) ? json_array_get(a, 0) : NULL;

	return json_is_string(v) && *json_string_value(v) ? json_string_value(v) : NULL;
}

/*
 * Entrypoint[0] and Cmd[0] (the entrypoint often execs the command), the PATH
 * and LD_LIBRARY_PATH of Env and WorkingDir from an OCI/docker image config.
 */
static int parse_config(const char *config, size_t len, struct entry_cfg *e)
{
	json_error_t err;
	json_t *root, *cfg, *env, *v;
	const char *s;
	size_t i;
	int r = 0;

	if (!config || !len)
		return 0;
	root = json_loadb(config, len, 0, &err);
	if (!root) {
		log_warn("image config is not JSON (%s, line %d); no entrypoint from it", err.text,
			 err.line);
		return 0;
	}
	cfg = json_object_get(root, "config");
	if (!json_is_object(cfg))
		goto out;
	for (i = 0; i < 2 && r >= 0; i++) {
		s = first_str(json_object_get(cfg, i ? "Cmd" : "Entrypoint"));
		if (!s)
			continue;
		if (e->nprograms && !strcmp(e->programs[0], s))
			continue;
		e->programs[e->nprograms] = strdup(s);
		if (!e->programs[e->nprograms])
			r = -ENOMEM;
		else
			e->nprograms++;
	}
	e->optional_from = e->nprograms > 1 ? 1 : e->nprograms;
	env = json_object_get(cfg, "Env");
	json_array_foreach(env, i, v)
	{
		s = json_string_value(v);
		if (r < 0 || !s || strlen(s) > CONFIG_ENV_MAX)
			continue;
		if (!strncmp(s, "PATH=", 5))
			r = dup_to(&e->path_env, s + 5);
		else if (!strncmp(s, "LD_LIBRARY_PATH=", 16))
			r = dup_to(&e->ld_library_path, s + 16);
	}
	v = json_object_get(cfg, "WorkingDir");
	if (r >= 0 && json_is_string(v) && json_string_value(v)[0] == '/')
		r = dup_to(&e->cwd, json_string_value(v));
out:
	json_decref(root);
	return r;
}

/* ---- apply ---- */

static bool valid_view_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

static int check_views(const struct slimfs_build_opts *o)
{
	if (o->nviews > SLIMFS_VIEWS_MAX - 1) {
		log_error("%u views given, at most %u", o->nviews, SLIMFS_VIEWS_MAX - 1);
		return -EINVAL;
	}
	for (unsigned i = 0; i < o->nviews; i++) {
		const char *name = o->views[i].name;

		if (!name || !valid_view_name(name)) {
			log_error("view name '%s' is not valid (1-64 of A-Z a-z 0-9 - _ .)",
				  name ? name : "");
			return -EINVAL;
		}
		if (!strcmp(name, "full")) {
			log_error("view name 'full' is reserved: the full view is always there");
			return -EINVAL;
		}
		for (unsigned k = 0; k < i; k++)
			if (!strcmp(o->views[k].name, name)) {
				log_error("view '%s' is given twice", name);
				return -EINVAL;
			}
	}
	return 0;
}

void slimfs_views_free(struct slimfs_write_args *wa)
{
	for (unsigned i = 0; i < wa->nviews; i++)
		free((void *)wa->view_names[i]);
	free((void *)wa->view_names);
	wa->view_names = NULL;
	wa->nviews = 0;
	wa->default_view = -1;
}

int slimfs_views_apply(struct slimfs_tree *t, const struct slimfs_build_opts *o, const char *config,
		       size_t config_len, struct slimfs_write_args *wa)
{
	struct slimfs_allowlist *al[SLIMFS_VIEWS_MAX] = {0};
	uint64_t entries[SLIMFS_VIEWS_MAX], bytes[SLIMFS_VIEWS_MAX];
	const char *progs[2];
	struct slimfs_nodeset closure = {0}, links = {0}, elfs = {0};
	struct slimfs_closure_args ca = {0};
	struct entry_cfg ec = {0};
	char **names = NULL;
	unsigned nviews = 0;
	bool minimal;
	int r;

	wa->view_names = NULL;
	wa->nviews = 0;
	wa->default_view = -1;
	wa->prune = false;
	r = check_views(o);
	if (r < 0)
		return r;
	if (!o->nviews && !o->entrypoint && !o->prune)
		return 0;
	r = parse_config(config, config_len, &ec);
	if (r < 0)
		goto out;
	if (o->entrypoint) {
		progs[0] = o->entrypoint;
	} else {
		for (size_t i = 0; i < ec.nprograms; i++)
			progs[i] = ec.programs[i];
	}
	minimal = !o->nviews;
	if (o->prune && minimal && !o->entrypoint && !ec.nprograms) {
		log_error("--prune needs a view (--view) or an entrypoint (--entrypoint, or one "
			  "in the image config)");
		r = -EINVAL;
		goto out;
	}

	/* allow-lists */
	nviews = minimal ? 1 : o->nviews;
	names = calloc(nviews, sizeof(*names));
	if (!names) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < nviews; i++) {
		names[i] = strdup(minimal ? "minimal" : o->views[i].name);
		r = names[i] ? slimfs_allowlist_new(&al[i]) : -ENOMEM;
		if (r < 0)
			goto out;
		if (minimal)
			r = slimfs_allowlist_add_preset(al[i], "runtime-base");
		else if (o->views[i].allow_file)
			r = slimfs_allowlist_add_file(al[i], o->views[i].allow_file);
		if (r < 0) {
			log_error("view '%s': cannot load its allow-list", names[i]);
			goto out;
		}
	}

	/* the entrypoint closure, shared by every view */
	ca = (struct slimfs_closure_args){
		.programs = progs,
		.nprograms = o->entrypoint ? 1 : ec.nprograms,
		.path_env = ec.path_env,
		.ld_library_path = ec.ld_library_path,
		.cwd = ec.cwd,
		.required = o->entrypoint != NULL,
		.optional_from = o->entrypoint ? 1 : ec.optional_from,
	};
	r = slimfs_elf_closure(t, &ca, &closure);
	if (r < 0)
		goto out;
	if (ca.nprograms)
		log_info("entrypoint closure: %zu entries", closure.n);

	r = clear_bits(t);
	for (unsigned v = 0; v < nviews && r >= 0; v++) {
		uint32_t bit = 1u << v;

		slimfs_nodeset_clear(&links);
		slimfs_nodeset_clear(&elfs);
		r = apply_allowlist(t, al[v], bit, &links, &elfs);
		if (r >= 0)
			r = follow_links(t, al[v], bit, &links, &elfs);
		if (r >= 0)
			r = elf_deps(t, al[v], bit, &elfs, &ca, names[v]);
		for (size_t i = 0; r >= 0 && i < closure.n; i++)
			select_node(closure.v[i], bit);
	}
	if (r >= 0)
		r = reveal_aliases(t, al, nviews);
	if (r >= 0)
		r = view_stats(t, nviews, entries, bytes);
	if (r < 0)
		goto out;
	for (unsigned v = 0; v < nviews; v++) {
		char b[32];

		log_info("view %s: %" PRIu64 " entries, %s", names[v], entries[v],
			 slimfs_fmt_bytes(bytes[v], b, sizeof(b)));
	}

	wa->view_names = (const char *const *)names;
	wa->nviews = nviews;
	for (unsigned v = 0; v < nviews; v++)
		if (!strcmp(names[v], "minimal"))
			wa->default_view = (int)v;
	wa->prune = o->prune;
	names = NULL;
out:
	if (names) {
		for (unsigned i = 0; i < nviews; i++)
			free(names[i]);
		free(names);
	}
	for (unsigned i = 0; i < SLIMFS_VIEWS_MAX; i++)
		slimfs_allowlist_free(al[i]);
	slimfs_nodeset_clear(&closure);
	slimfs_nodeset_clear(&links);
	slimfs_nodeset_clear(&elfs);
	entry_cfg_clear(&ec);
	return r;
}
