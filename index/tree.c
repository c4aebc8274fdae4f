// SPDX-License-Identifier: MIT
/*
 * The builder's in-memory tree.
 *
 * Each directory keeps its children in an open-addressing hash table
 * (linear probing, XXH3-64 of the name, power-of-two capacity, load <= 3/4,
 * backward-shift deletion so there are no tombstones). Whole-subtree walks
 * (free, whiteout pruning) are post-order and stackless: they climb back up
 * through the parent pointers and find where they were in the parent's table
 * by probing for the child pointer, so a 10,000-deep tree costs no stack.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "slimfs/util.h"
#include "tree.h"

#define NAME_MAX_LEN 255

/* ---- inodes ---- */

struct slimfs_tinode *slimfs_tinode_new(uint32_t mode)
{
	struct slimfs_tinode *ino = calloc(1, sizeof(*ino));

	if (!ino)
		return NULL;
	ino->mode = mode;
	ino->views = UINT32_MAX;
	ino->id = UINT32_MAX;
	return ino;
}

static void tinode_free(struct slimfs_tinode *ino)
{
	for (uint32_t i = 0; i < ino->nxattrs; i++) {
		free(ino->xattrs[i].name);
		free(ino->xattrs[i].value);
	}
	free(ino->xattrs);
	free(ino->target);
	free(ino->data.path);
	free(ino->data.seg);
	free(ino);
}

void slimfs_tinode_unref(struct slimfs_tinode *ino)
{
	if (!ino)
		return;
	/* nlink 0: never linked into the tree; the caller's reference is the last */
	if (ino->nlink > 1) {
		ino->nlink--;
		return;
	}
	tinode_free(ino);
}

int slimfs_tinode_add_xattr(struct slimfs_tinode *ino, const char *name, const void *value,
			    size_t len)
{
	struct slimfs_txattr *x;
	void *v;

	if (!name || !*name || len > UINT32_MAX)
		return -EINVAL;
	v = malloc(len ? len : 1);
	if (!v)
		return -ENOMEM;
	if (len)
		memcpy(v, value, len);
	/* the same name again replaces the value (last wins, like setxattr) */
	for (uint32_t i = 0; i < ino->nxattrs; i++) {
		if (strcmp(ino->xattrs[i].name, name) == 0) {
			free(ino->xattrs[i].value);
			ino->xattrs[i].value = v;
			ino->xattrs[i].value_len = (uint32_t)len;
			return 0;
		}
	}
	if (ino->nxattrs == UINT32_MAX) {
		free(v);
		return -E2BIG;
	}
	x = realloc(ino->xattrs, (ino->nxattrs + 1) * sizeof(*x));
	if (!x) {
		free(v);
		return -ENOMEM;
	}
	ino->xattrs = x;
	x = &ino->xattrs[ino->nxattrs];
	x->name = strdup(name);
	if (!x->name) {
		free(v);
		return -ENOMEM;
	}
	x->value = v;
	x->value_len = (uint32_t)len;
	ino->nxattrs++;
	return 0;
}

static int cmp_xattr(const void *a, const void *b)
{
	const struct slimfs_txattr *x = a, *y = b;

	return strcmp(x->name, y->name);
}

void slimfs_tinode_sort_xattrs(struct slimfs_tinode *ino)
{
	if (ino->nxattrs > 1)
		qsort(ino->xattrs, ino->nxattrs, sizeof(*ino->xattrs), cmp_xattr);
}

/* ---- per-directory hash table ---- */

static uint64_t name_hash(const char *name, size_t len)
{
	return XXH3_64bits(name, len);
}

static struct slimfs_tnode *table_find(const struct slimfs_tnode *dir, const char *name, size_t len)
{
	uint32_t mask, i;

	if (!dir->child_cap)
		return NULL;
	mask = dir->child_cap - 1;
	for (i = (uint32_t)name_hash(name, len) & mask;; i = (i + 1) & mask) {
		struct slimfs_tnode *c = dir->child[i];

		if (!c)
			return NULL;
		if (c->name_len == len && memcmp(c->name, name, len) == 0)
			return c;
	}
}

/* Slot of a child known to be in the table; NULL slots are skipped so this
 * also works while a subtree walk is emptying the table. */
static uint32_t table_slot_of(const struct slimfs_tnode *dir, const struct slimfs_tnode *c)
{
	uint32_t mask = dir->child_cap - 1;
	uint32_t i = (uint32_t)name_hash(c->name, c->name_len) & mask;

	while (dir->child[i] != c)
		i = (i + 1) & mask;
	return i;
}

static void table_put(struct slimfs_tnode **tab, uint32_t cap, struct slimfs_tnode *c)
{
	uint32_t mask = cap - 1;
	uint32_t i = (uint32_t)name_hash(c->name, c->name_len) & mask;

	while (tab[i])
		i = (i + 1) & mask;
	tab[i] = c;
}

static int table_insert(struct slimfs_tnode *dir, struct slimfs_tnode *c)
{
	/* grow at 3/4 load */
	if ((uint64_t)(dir->nchild + 1) * 4 > (uint64_t)dir->child_cap * 3) {
		uint32_t ncap = dir->child_cap ? dir->child_cap * 2 : 8;
		struct slimfs_tnode **tab;

		if (dir->child_cap >= (1u << 31))
			return -ENOSPC;
		tab = calloc(ncap, sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		for (uint32_t i = 0; i < dir->child_cap; i++)
			if (dir->child[i])
				table_put(tab, ncap, dir->child[i]);
		free(dir->child);
		dir->child = tab;
		dir->child_cap = ncap;
	}
	table_put(dir->child, dir->child_cap, c);
	dir->nchild++;
	c->parent = dir;
	return 0;
}

/* Backward-shift deletion: entries after the hole that may move into it do. */
static void table_delete_at(struct slimfs_tnode *dir, uint32_t hole)
{
	uint32_t mask = dir->child_cap - 1, j = hole;

	dir->child[hole] = NULL;
	dir->nchild--;
	for (;;) {
		struct slimfs_tnode *c;
		uint32_t home;

		j = (j + 1) & mask;
		c = dir->child[j];
		if (!c)
			return;
		home = (uint32_t)name_hash(c->name, c->name_len) & mask;
		/* c may move to the hole when home is not cyclically in (hole, j] */
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			dir->child[hole] = c;
			dir->child[j] = NULL;
			hole = j;
		}
	}
}

/* ---- nodes ---- */

static struct slimfs_tnode *node_new(const char *name, size_t len)
{
	struct slimfs_tnode *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->name = malloc(len + 1);
	if (!n->name) {
		free(n);
		return NULL;
	}
	memcpy(n->name, name, len);
	n->name[len] = '\0';
	n->name_len = (uint32_t)len;
	return n;
}

static void node_free(struct slimfs_tree *t, struct slimfs_tnode *n)
{
	slimfs_tinode_unref(n->ino);
	free(n->child);
	free(n->name);
	free(n);
	t->nodes--;
}

/*
 * Frees top and everything below it. top must already be detached from its
 * parent's table (or be the root). Post-order without a stack: after a node
 * is freed, the walk resumes in its parent right after the node's slot.
 */
static void subtree_free(struct slimfs_tree *t, struct slimfs_tnode *top)
{
	struct slimfs_tnode *n = top;
	uint32_t i = 0;

	for (;;) {
		struct slimfs_tnode *p;

		while (i < n->child_cap && !n->child[i])
			i++;
		if (i < n->child_cap) {
			n = n->child[i];
			i = 0;
			continue;
		}
		if (n == top) {
			node_free(t, n);
			return;
		}
		p = n->parent;
		i = table_slot_of(p, n);
		p->child[i++] = NULL;
		p->nchild--;
		node_free(t, n);
		n = p;
	}
}

static void detach(struct slimfs_tnode *n)
{
	struct slimfs_tnode *p = n->parent;

	table_delete_at(p, table_slot_of(p, n));
	n->parent = NULL;
}

static bool is_dir(const struct slimfs_tnode *n)
{
	return S_ISDIR(n->ino->mode);
}

/* After pruning, a node stays when it belongs to this layer, or when it is a
 * directory that still holds something of this layer. */
static bool keep_after_prune(const struct slimfs_tnode *n, uint32_t layer)
{
	return n->layer >= layer || (is_dir(n) && n->nchild > 0);
}

/* Removes from dir the children keep_after_prune() rejects. Their subtrees
 * have been pruned already, so a removed directory is empty. */
static void compact(struct slimfs_tree *t, struct slimfs_tnode *dir)
{
	uint32_t s = 0;

	while (s < dir->child_cap) {
		struct slimfs_tnode *c = dir->child[s];

		if (!c || keep_after_prune(c, t->layer)) {
			s++;
			continue;
		}
		/* the hole may be refilled by backward shift: look at s again */
		table_delete_at(dir, s);
		c->parent = NULL;
		subtree_free(t, c);
	}
}

/*
 * Removes everything below top that came from layers before t->layer,
 * keeping directories that lead to entries of this layer. Post-order and
 * stackless like subtree_free(); a directory's table is compacted only when
 * all its children are done, so the parent's slots stay valid meanwhile.
 */
static void subtree_prune(struct slimfs_tree *t, struct slimfs_tnode *top)
{
	struct slimfs_tnode *n = top;
	uint32_t i = 0;

	if (!is_dir(top))
		return;
	for (;;) {
		while (i < n->child_cap && !(n->child[i] && is_dir(n->child[i])))
			i++;
		if (i < n->child_cap) {
			n = n->child[i];
			i = 0;
			continue;
		}
		compact(t, n);
		if (n == top)
			return;
		i = table_slot_of(n->parent, n) + 1;
		n = n->parent;
	}
}

/* ---- tree ---- */

int slimfs_tree_new(struct slimfs_tree **out)
{
	struct slimfs_tree *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->spool_fd = -1;
	t->root = node_new("", 0);
	if (!t->root) {
		free(t);
		return -ENOMEM;
	}
	t->root->ino = slimfs_tinode_new(S_IFDIR | 0755);
	if (!t->root->ino) {
		free(t->root->name);
		free(t->root);
		free(t);
		return -ENOMEM;
	}
	t->root->ino->nlink = 1;
	t->nodes = 1;
	*out = t;
	return 0;
}

void slimfs_tree_free(struct slimfs_tree *t)
{
	if (!t)
		return;
	subtree_free(t, t->root);
	if (t->spool_fd >= 0)
		close(t->spool_fd);
	free(t);
}

/* ---- paths ---- */

/*
 * Splits off the next component of *p: 1 with (*name, *len), 0 at the end,
 * -EINVAL for ".." or a component longer than 255 bytes.
 */
static int next_component(const char **p, const char **name, size_t *len)
{
	if (!slimfs_path_next(p, name, len))
		return 0;
	if ((*len == 2 && (*name)[0] == '.' && (*name)[1] == '.') || *len > NAME_MAX_LEN)
		return -EINVAL;
	return 1;
}

/* Every component valid? */
static int check_path(const char *p)
{
	const char *name;
	size_t len;
	int r;

	while ((r = next_component(&p, &name, &len)) > 0)
		;
	return r;
}

/* Does a component follow? (path already checked) */
static bool has_more(const char *p)
{
	const char *name;
	size_t len;

	return next_component(&p, &name, &len) > 0;
}

/*
 * Resolves path. w->node is the entry or NULL when missing; then w->dir is
 * the deepest existing directory and w->rest the first missing component.
 * Intermediate symlinks give -ELOOP, other non-directories -ENOTDIR.
 */
struct walk {
	struct slimfs_tnode *dir, *node;
	const char *rest;
};

static int walk_path(struct slimfs_tree *t, const char *path, struct walk *w)
{
	struct slimfs_tnode *cur = t->root;
	const char *p = path;
	int r;

	r = check_path(path);
	if (r < 0)
		return r;
	w->dir = NULL;
	w->rest = NULL;
	for (;;) {
		const char *name, *before = p;
		struct slimfs_tnode *c;
		size_t len;

		r = next_component(&p, &name, &len);
		if (r < 0)
			return r; /* not reached: check_path() passed */
		if (r == 0) {
			w->node = cur;
			return 0;
		}
		if (S_ISLNK(cur->ino->mode))
			return -ELOOP;
		if (!is_dir(cur))
			return -ENOTDIR;
		w->dir = cur;
		c = table_find(cur, name, len);
		if (!c) {
			w->node = NULL;
			w->rest = before;
			return 0;
		}
		cur = c;
	}
}

int slimfs_tree_lookup(struct slimfs_tree *t, const char *path, struct slimfs_tnode **out)
{
	struct walk w;
	int r = walk_path(t, path, &w);

	if (r < 0)
		return r;
	if (!w.node)
		return -ENOENT;
	if (out)
		*out = w.node;
	return 0;
}

static int mkdir_child(struct slimfs_tree *t, struct slimfs_tnode *dir, const char *name,
		       size_t len, struct slimfs_tnode **out)
{
	struct slimfs_tnode *c = node_new(name, len);
	int r;

	if (!c)
		return -ENOMEM;
	c->ino = slimfs_tinode_new(S_IFDIR | 0755);
	if (!c->ino) {
		free(c->name);
		free(c);
		return -ENOMEM;
	}
	c->ino->nlink = 1;
	c->layer = t->layer;
	r = table_insert(dir, c);
	if (r < 0) {
		slimfs_tinode_unref(c->ino);
		free(c->name);
		free(c);
		return r;
	}
	t->nodes++;
	*out = c;
	return 0;
}

/*
 * Puts ino at the existing node n: a directory over a directory keeps the
 * children, anything else drops the old subtree (the node keeps its slot).
 */
static int replace_node(struct slimfs_tree *t, struct slimfs_tnode *n, struct slimfs_tinode *ino)
{
	struct slimfs_tinode *old = n->ino;

	if (n == t->root && !S_ISDIR(ino->mode))
		return -EISDIR;
	/* referenced first: ino may live in the subtree dropped below */
	ino->nlink++;
	if (!(is_dir(n) && S_ISDIR(ino->mode))) {
		for (uint32_t i = 0; i < n->child_cap; i++) {
			struct slimfs_tnode *ch = n->child[i];

			if (!ch)
				continue;
			n->child[i] = NULL;
			ch->parent = NULL;
			subtree_free(t, ch);
		}
		free(n->child);
		n->child = NULL;
		n->child_cap = 0;
		n->nchild = 0;
	}
	n->ino = ino;
	n->layer = t->layer;
	slimfs_tinode_unref(old);
	return 0;
}

/* A new entry name -> ino in dir (name not present). */
static int add_child(struct slimfs_tree *t, struct slimfs_tnode *dir, const char *name, size_t len,
		     struct slimfs_tinode *ino, struct slimfs_tnode **out)
{
	struct slimfs_tnode *c = node_new(name, len);
	int r;

	if (!c)
		return -ENOMEM;
	r = table_insert(dir, c);
	if (r < 0) {
		free(c->name);
		free(c);
		return r;
	}
	t->nodes++;
	ino->nlink++;
	c->ino = ino;
	c->layer = t->layer;
	*out = c;
	return 0;
}

int slimfs_tree_set(struct slimfs_tree *t, const char *path, struct slimfs_tinode *ino,
		    struct slimfs_tnode **out)
{
	struct slimfs_tnode *dir, *c;
	struct walk w;
	const char *p;
	int r;

	if (!ino)
		return -EINVAL;
	r = walk_path(t, path, &w);
	if (r < 0)
		return r;
	if (w.node) {
		r = replace_node(t, w.node, ino);
		if (r < 0)
			return r;
		if (out)
			*out = w.node;
		return 0;
	}

	/* create the missing directories, then the entry */
	dir = w.dir;
	p = w.rest;
	for (;;) {
		const char *name;
		size_t len;

		r = next_component(&p, &name, &len);
		if (r < 0)
			return r;
		if (r == 0)
			break; /* not reached: the last one is created below */
		if (has_more(p)) {
			r = mkdir_child(t, dir, name, len, &dir);
			if (r < 0)
				return r;
			continue;
		}
		r = add_child(t, dir, name, len, ino, &c);
		if (r < 0)
			return r;
		if (out)
			*out = c;
		return 0;
	}
	return -EINVAL;
}

int slimfs_tree_set_at(struct slimfs_tree *t, struct slimfs_tnode *dir, const char *name,
		       struct slimfs_tinode *ino, struct slimfs_tnode **out)
{
	struct slimfs_tnode *c;
	size_t len;
	int r;

	if (!dir || !name || !ino)
		return -EINVAL;
	len = strlen(name);
	if (len == 0 || len > NAME_MAX_LEN || memchr(name, '/', len) ||
	    (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))))
		return -EINVAL;
	if (S_ISLNK(dir->ino->mode))
		return -ELOOP;
	if (!is_dir(dir))
		return -ENOTDIR;
	c = table_find(dir, name, len);
	if (c)
		r = replace_node(t, c, ino);
	else
		r = add_child(t, dir, name, len, ino, &c);
	if (r < 0)
		return r;
	if (out)
		*out = c;
	return 0;
}

int slimfs_tree_link(struct slimfs_tree *t, const char *path, const char *target)
{
	struct slimfs_tnode *tn;
	int r;

	r = slimfs_tree_lookup(t, target, &tn);
	if (r < 0)
		return r;
	if (is_dir(tn))
		return -EPERM;
	return slimfs_tree_set(t, path, tn->ino, NULL);
}

int slimfs_tree_remove(struct slimfs_tree *t, const char *path, bool lower_only)
{
	struct slimfs_tnode *n;
	int r;

	r = slimfs_tree_lookup(t, path, &n);
	if (r < 0)
		return r;
	if (n == t->root)
		return -EINVAL;
	if (lower_only) {
		subtree_prune(t, n);
		if (keep_after_prune(n, t->layer))
			return 0;
	}
	detach(n);
	subtree_free(t, n);
	return 0;
}

int slimfs_tree_clear_lower(struct slimfs_tree *t, const char *path)
{
	struct slimfs_tnode *n;
	int r;

	r = slimfs_tree_lookup(t, path, &n);
	if (r < 0)
		return r;
	if (!is_dir(n))
		return -ENOTDIR;
	subtree_prune(t, n);
	return 0;
}

/* ---- spool ---- */

int slimfs_tree_spool(struct slimfs_tree *t, const void *buf, size_t len, uint64_t *off)
{
	int r;

	if (t->spool_fd < 0) {
		r = slimfs_tmpfile_open(NULL, "spool");
		if (r < 0)
			return r;
		t->spool_fd = r;
	}
	r = slimfs_pwrite_all(t->spool_fd, buf, len, t->spool_size);
	if (r < 0)
		return log_error_errno(r, "cannot write to the spool file");
	*off = t->spool_size;
	t->spool_size += len;
	return 0;
}

/* ---- listing ---- */

static int cmp_node(const void *a, const void *b)
{
	const struct slimfs_tnode *x = *(struct slimfs_tnode *const *)a;
	const struct slimfs_tnode *y = *(struct slimfs_tnode *const *)b;
	int c = memcmp(x->name, y->name, MIN(x->name_len, y->name_len));

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

int slimfs_tree_sorted_children(const struct slimfs_tnode *dir, struct slimfs_tnode ***out,
				uint32_t *n)
{
	struct slimfs_tnode **v = malloc((dir->nchild ? dir->nchild : 1) * sizeof(*v));
	uint32_t k = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < dir->child_cap; i++)
		if (dir->child[i])
			v[k++] = dir->child[i];
	qsort(v, k, sizeof(*v), cmp_node);
	*out = v;
	*n = k;
	return 0;
}

char *slimfs_tree_path(const struct slimfs_tnode *n)
{
	const struct slimfs_tnode *p;
	size_t len = 0;
	char *s, *e;

	for (p = n; p->parent; p = p->parent)
		len += 1 + p->name_len;
	s = malloc(len ? len + 1 : 2);
	if (!s)
		return NULL;
	if (!len) {
		strcpy(s, "/");
		return s;
	}
	e = s + len;
	*e = '\0';
	for (p = n; p->parent; p = p->parent) {
		e -= p->name_len;
		memcpy(e, p->name, p->name_len);
		*--e = '/';
	}
	return s;
}
