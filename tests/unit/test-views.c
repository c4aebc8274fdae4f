// SPDX-License-Identifier: MIT
/*
 * Views: allow-list glob semantics, presets, @include, errors with line
 * numbers; the entrypoint closure over real ELF files of this machine
 * (/usr/bin/true, env, dash, libc, the loader) laid out like the host.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "allowlist.h"
#include "elfclosure.h"
#include "slimfs/build.h"
#include "slimfs/util.h"
#include "tap.h"
#include "testutil.h"
#include "tree.h"

/* ---- globs ---- */

struct glob_case {
	const char *pattern, *path;
	bool is_dir;
	int want;
};

static const struct glob_case glob_cases[] = {
	/* plain names match at any depth */
	{"sh", "bin/sh", false, 1},
	{"sh", "sh", false, 1},
	{"sh", "usr/local/bin/sh", false, 1},
	{"sh", "bin/bash", false, 0},
	{"sh", "bin/shx", false, 0},
	/* a leading or inner '/' anchors at the root */
	{"/sh", "sh", false, 1},
	{"/sh", "bin/sh", false, 0},
	{"bin/sh", "bin/sh", false, 1},
	{"bin/sh", "usr/bin/sh", false, 0},
	{"/usr/bin/sh", "usr/bin/sh", false, 1},
	/* '*' and '?' stay inside one component */
	{"/usr/*/sh", "usr/bin/sh", false, 1},
	{"/usr/*/sh", "usr/local/bin/sh", false, 0},
	{"/usr/bin/*", "usr/bin/a/b", false, 0},
	{"*.so*", "usr/lib/libc.so.6", false, 1},
	{"/lib64/ld-linux-*.so*", "lib64/ld-linux-x86-64.so.2", false, 1},
	{"lib?.so", "libc.so", false, 1},
	{"lib?.so", "libcc.so", false, 0},
	{"a*b*c", "aXbYc", false, 1},
	{"a*b*c", "aXbY", false, 0},
	{"*", ".hidden", false, 1},
	/* "**" */
	{"/**/sh", "sh", false, 1},
	{"/**/sh", "a/b/c/sh", false, 1},
	{"/usr/**/sh", "usr/sh", false, 1},
	{"/usr/**/sh", "usr/a/b/sh", false, 1},
	{"/usr/**/sh", "opt/usr/a/sh", false, 0},
	{"/usr/**", "usr/a", false, 1},
	{"/usr/**", "usr/a/b/c", false, 1},
	{"/usr/**", "usr", true, 0},
	{"**/doc/*.txt", "x/y/doc/a.txt", false, 1},
	{"/a/**/b/**/c", "a/b/c", false, 1},
	{"/a/**/b/**/c", "a/x/b/y/z/c", false, 1},
	{"/a/**/b/**/c", "a/x/c", false, 0},
	{"/**/**/**/z", "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y", false, 0},
	/* trailing '/': directories only */
	{"doc/", "usr/share/doc", true, 1},
	{"doc/", "usr/share/doc", false, 0},
	{"/tmp/", "tmp", true, 1},
	{"/", "", true, 1},
	/* brackets */
	{"[abc]x", "bx", false, 1},
	{"[abc]x", "dx", false, 0},
	{"[a-c]x", "cx", false, 1},
	{"[!a-c]x", "cx", false, 0},
	{"[^a-c]x", "dx", false, 1},
	{"[]]x", "]x", false, 1},
	{"[!C]*", "de", false, 1},
	{"[!C]*", "C.UTF-8", false, 0},
	{"lib[0-9].so", "lib7.so", false, 1},
	/* escapes */
	{"\\*", "*", false, 1},
	{"\\*", "a", false, 0},
	{"a\\?b", "a?b", false, 1},
	{"a\\?b", "axb", false, 0},
	{"\\[x]", "[x]", false, 1},
	{"\\!important", "!important", false, 1},
	{"\\#x", "#x", false, 1},
	/* bad patterns */
	{"[abc", "a", false, -EINVAL},
	{"/usr/[/x", "usr/[/x", false, -EINVAL},
	{"abc\\", "abc", false, -EINVAL},
};

static void test_globs(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(glob_cases); i++) {
		const struct glob_case *c = &glob_cases[i];
		int got = slimfs_glob_match(c->pattern, c->path, c->is_dir);

		if (got != c->want)
			printf("# glob '%s' on '%s'%s: got %d, want %d\n", c->pattern, c->path,
			       c->is_dir ? " (dir)" : "", got, c->want);
		CHECK(got == c->want);
	}
}

/* ---- allow-lists ---- */

/* Decision of the list for path (and its parents), like the view walk. */
static int decide(const struct slimfs_allowlist *al, const char *path, bool is_dir)
{
	char buf[512];
	long d = slimfs_allowlist_decide(al, "", true, -1);
	char *p;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf; *p;) {
		char *e = strchrnul(p, '/');
		bool last = !*e;

		*e = '\0';
		d = slimfs_allowlist_decide(al, buf, last ? is_dir : true, d);
		if (!last)
			*e = '/';
		p = last ? e : e + 1;
	}
	return d >= 0 && !slimfs_allowlist_negated(al, (size_t)d);
}

static struct slimfs_allowlist *from_text(const char *text)
{
	struct slimfs_allowlist *al = NULL;

	if (slimfs_allowlist_new(&al) < 0)
		return NULL;
	if (slimfs_allowlist_add_text(al, text, strlen(text), "test", NULL) < 0) {
		slimfs_allowlist_free(al);
		return NULL;
	}
	return al;
}

static void test_rules(void)
{
	struct slimfs_allowlist *al = from_text("# a comment\n"
						"\n"
						"/usr/share/\n"
						"!/usr/share/man/\n"
						"/usr/share/man/man1/ls.1.gz\n"
						"!*.pyc\n"
						"/etc/passwd   \n"
						"/file\\ with\\ space\\ \n"
						"/usr/share/man/man1/\n"
						"!/usr/share/man/man1/rm.1.gz\n");

	CHECK(al != NULL);
	if (!al)
		return;
	CHECK_EQ(slimfs_allowlist_count(al), 8);
	CHECK(decide(al, "usr/share/zoneinfo/UTC", false));
	CHECK(decide(al, "usr/share", true));
	CHECK(!decide(al, "usr", true));
	CHECK(!decide(al, "usr/share/man/man8/x.8.gz", false));
	CHECK(decide(al, "usr/share/man/man1/ls.1.gz", false));
	/* the later "/usr/share/man/man1/" brings back the rest of man1 ... */
	CHECK(decide(al, "usr/share/man/man1/cp.1.gz", false));
	/* ... but the '!' after it wins for rm */
	CHECK(!decide(al, "usr/share/man/man1/rm.1.gz", false));
	CHECK(!decide(al, "usr/share/python/x.pyc", false));
	CHECK(decide(al, "etc/passwd", false));
	CHECK(!decide(al, "etc/group", false));
	CHECK(decide(al, "file with space ", false));
	CHECK(!decide(al, "file with space", false));
	slimfs_allowlist_free(al);

	/* everything, then exclusions */
	al = from_text("/\n!/usr/bin/\n/usr/bin/python3\n");
	CHECK(al && decide(al, "etc/x", false));
	CHECK(al && !decide(al, "usr/bin/sh", false));
	CHECK(al && decide(al, "usr/bin/python3", false));
	slimfs_allowlist_free(al);
}

static void test_presets(void)
{
	struct slimfs_allowlist *al = NULL;

	for (const char *const *p = slimfs_allowlist_presets; *p; p++) {
		size_t before;

		if (!al && slimfs_allowlist_new(&al) < 0)
			break;
		before = slimfs_allowlist_count(al);
		CHECK_EQ(slimfs_allowlist_add_preset(al, *p), 0);
		CHECK(slimfs_allowlist_count(al) > before);
	}
	if (!al)
		return;
	CHECK(decide(al, "usr/lib64/ld-linux-x86-64.so.2", false));
	CHECK(decide(al, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", false));
	CHECK(decide(al, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", false));
	CHECK(decide(al, "etc/ssl/certs/ca-certificates.crt", false));
	CHECK(decide(al, "tmp", true));
	CHECK(decide(al, "usr/lib/x86_64-linux-gnu/gconv/UTF-16.so", false));
	CHECK(!decide(al, "usr/lib/x86_64-linux-gnu/libc.so.6", false));
	CHECK(!decide(al, "etc/shadow", false));
	slimfs_allowlist_free(al);

	/* the negative presets after a broad selection */
	al = from_text("/\n@include no-shell\n@include no-package-manager\n@include no-docs\n");
	CHECK(al != NULL);
	if (!al)
		return;
	CHECK(!decide(al, "bin/sh", false));
	CHECK(!decide(al, "usr/bin/bash", false));
	CHECK(!decide(al, "usr/bin/dash", false));
	CHECK(!decide(al, "bin/busybox", false));
	CHECK(decide(al, "usr/bin/ssh", false));
	CHECK(decide(al, "usr/bin/python3", false));
	CHECK(!decide(al, "usr/bin/dpkg", false));
	CHECK(!decide(al, "usr/bin/apt-get", false));
	CHECK(!decide(al, "usr/sbin/apk", false));
	CHECK(!decide(al, "var/lib/dpkg/status", false));
	CHECK(!decide(al, "etc/apt/sources.list", false));
	CHECK(!decide(al, "usr/share/man/man1/ls.1.gz", false));
	CHECK(!decide(al, "usr/share/doc/x/copyright", false));
	CHECK(!decide(al, "usr/share/locale/de/LC_MESSAGES/x.mo", false));
	CHECK(decide(al, "usr/share/locale/C.UTF-8/LC_MESSAGES/x.mo", false));
	CHECK(decide(al, "usr/share/locale/locale.alias", false));
	slimfs_allowlist_free(al);
}

/* Runs f with stderr captured into buf. */
static int captured(char *buf, size_t len, int (*f)(void *), void *ud)
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO), r;
	size_t n;

	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	r = f(ud);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, len - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return r;
}

static int load_file(void *ud)
{
	struct slimfs_allowlist *al = NULL;
	int r = slimfs_allowlist_new(&al);

	if (r == 0)
		r = slimfs_allowlist_add_file(al, ud);
	slimfs_allowlist_free(al);
	return r;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_files(const char *dir)
{
	char path[4096], err[4096];
	struct slimfs_allowlist *al = NULL;

	write_file(dir, "main.allow", "/app/\n@include extra.allow\n@include no-shell\n/opt/\n");
	write_file(dir, "extra.allow", "# extra\n!/app/cache/\n/srv/x\n");
	snprintf(path, sizeof(path), "%s/main.allow", dir);
	CHECK_EQ(slimfs_allowlist_new(&al), 0);
	CHECK_EQ(slimfs_allowlist_add_file(al, path), 0);
	CHECK(decide(al, "app/run", false));
	CHECK(!decide(al, "app/cache/x", false));
	CHECK(decide(al, "srv/x", false));
	CHECK(decide(al, "opt/a/b", false));
	CHECK(!decide(al, "bin/sh", false));
	slimfs_allowlist_free(al);

	/* errors name the file and the line */
	write_file(dir, "bad.allow", "/ok\n# fine\n/foo[abc\n");
	snprintf(path, sizeof(path), "%s/bad.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -EINVAL);
	CHECK(strstr(err, "bad.allow' line 3") != NULL);
	CHECK(strstr(err, "unbalanced '['") != NULL);

	write_file(dir, "preset.allow", "/ok\n@include no-such-preset\n");
	snprintf(path, sizeof(path), "%s/preset.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -EINVAL);
	CHECK(strstr(err, "preset.allow' line 2") != NULL);
	CHECK(strstr(err, "no-such-preset") != NULL);

	/* an error inside an included file names that file */
	write_file(dir, "outer.allow", "/a\n/b\n@include inner.allow\n");
	write_file(dir, "inner.allow", "\n\n\n!\n");
	snprintf(path, sizeof(path), "%s/outer.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -EINVAL);
	CHECK(strstr(err, "inner.allow' line 4") != NULL);

	write_file(dir, "dir.allow", "@frobnicate x\n");
	snprintf(path, sizeof(path), "%s/dir.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -EINVAL);
	CHECK(strstr(err, "dir.allow' line 1") != NULL);

	write_file(dir, "loop.allow", "/x\n@include loop.allow\n");
	snprintf(path, sizeof(path), "%s/loop.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -ELOOP);

	snprintf(path, sizeof(path), "%s/missing.allow", dir);
	CHECK_EQ(captured(err, sizeof(err), load_file, path), -ENOENT);
	CHECK(strstr(err, "missing.allow") != NULL);
}

/* ---- closure ---- */

#define MULTIARCH "x86_64-linux-gnu"

static int tree_file(struct slimfs_tree *t, const char *path, const char *src, bool spool)
{
	struct slimfs_tinode *ino;
	struct stat st;
	_cleanup_free_ char *buf = NULL;
	_cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
	uint64_t off = 0;
	int r;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	ino = slimfs_tinode_new(S_IFREG | (st.st_mode & 07777));
	ino->data.size = (uint64_t)st.st_size;
	if (st.st_size) {
		ino->data.nseg = 1;
		ino->data.seg = calloc(1, sizeof(*ino->data.seg));
		ino->data.seg[0].len = (uint64_t)st.st_size;
	}
	if (spool && st.st_size) {
		buf = malloc((size_t)st.st_size);
		if (slimfs_pread_all(fd, buf, (size_t)st.st_size, 0) < 0 ||
		    slimfs_tree_spool(t, buf, (size_t)st.st_size, &off) < 0)
			return -EIO;
		ino->data.from_spool = true;
		ino->data.seg[0].src_off = off;
	} else {
		ino->data.path = strdup(src);
	}
	r = slimfs_tree_set(t, path, ino, NULL);
	if (r < 0)
		slimfs_tinode_unref(ino);
	return r;
}

static int tree_text(struct slimfs_tree *t, const char *path, const char *text, uint32_t mode)
{
	struct slimfs_tinode *ino = slimfs_tinode_new(S_IFREG | mode);
	size_t len = strlen(text);
	uint64_t off;
	int r;

	ino->data.size = len;
	ino->data.nseg = 1;
	ino->data.seg = calloc(1, sizeof(*ino->data.seg));
	ino->data.seg[0].len = len;
	ino->data.from_spool = true;
	r = slimfs_tree_spool(t, text, len, &off);
	ino->data.seg[0].src_off = off;
	if (r == 0)
		r = slimfs_tree_set(t, path, ino, NULL);
	if (r < 0)
		slimfs_tinode_unref(ino);
	return r;
}

static const char *const host_libdir = "/usr/lib/" MULTIARCH;

static bool host_ok(void)
{
	return access("/usr/bin/true", R_OK) == 0 && access("/usr/bin/env", R_OK) == 0 &&
	       access("/usr/bin/dash", R_OK) == 0 &&
	       access("/usr/lib/" MULTIARCH "/libc.so.6", R_OK) == 0 &&
	       access("/usr/lib/" MULTIARCH "/ld-linux-x86-64.so.2", R_OK) == 0;
}

static void disk_copy(const char *root, const char *path, const char *src)
{
	char dst[2048], cmd[8192];

	snprintf(dst, sizeof(dst), "%s/%s", root, path);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && cp -p '%s' '%s'", dst, src,
		 dst);
	if (system(cmd) != 0)
		printf("# cannot copy %s\n", src);
}

static void disk_link(const char *root, const char *path, const char *target)
{
	char dst[2048], cmd[8192];

	snprintf(dst, sizeof(dst), "%s/%s", root, path);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && ln -sfn '%s' '%s'", dst, target,
		 dst);
	if (system(cmd) != 0)
		printf("# cannot link %s\n", dst);
}

static void disk_text(const char *root, const char *path, const char *text, mode_t mode)
{
	char dst[2048], cmd[8192];

	snprintf(dst, sizeof(dst), "%s/%s", root, path);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", dst);
	if (system(cmd) != 0)
		printf("# cannot mkdir for %s\n", dst);
	write_file(root, path, text);
	chmod(dst, mode);
}

/*
 * A rootfs directory laid out like this host (merged /usr, as `ldd
 * /usr/bin/true` shows it): /bin -> usr/bin, /lib -> usr/lib,
 * /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2,
 * libc.so.6 in the multiarch directory; the real ELF files of this machine.
 * Decoys that nothing needs: libm, bash, /etc/shadow, docs.
 */
static void make_rootfs(const char *root, bool with_libc)
{
	char src[256];

	disk_link(root, "bin", "usr/bin");
	disk_link(root, "lib", "usr/lib");
	disk_link(root, "sbin", "usr/sbin");
	disk_text(root, "usr/sbin/.keep", "", 0644);
	disk_link(root, "lib64/ld-linux-x86-64.so.2", "/lib/" MULTIARCH "/ld-linux-x86-64.so.2");
	disk_copy(root, "usr/bin/true", "/usr/bin/true");
	disk_copy(root, "usr/bin/env", "/usr/bin/env");
	disk_copy(root, "usr/bin/dash", "/usr/bin/dash");
	disk_link(root, "usr/bin/sh", "dash");
	disk_text(root, "usr/bin/bash", "not really bash\n", 0755);
	snprintf(src, sizeof(src), "%s/ld-linux-x86-64.so.2", host_libdir);
	disk_copy(root, "usr/lib/" MULTIARCH "/ld-linux-x86-64.so.2", src);
	if (with_libc) {
		snprintf(src, sizeof(src), "%s/libc.so.6", host_libdir);
		disk_copy(root, "usr/lib/" MULTIARCH "/libc.so.6", src);
	}
	snprintf(src, sizeof(src), "%s/libm.so.6", host_libdir);
	if (access(src, R_OK) == 0)
		disk_copy(root, "usr/lib/" MULTIARCH "/libm.so.6", src);
	disk_text(root, "etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n", 0644);
	disk_text(root, "etc/ld.so.conf.d/" MULTIARCH ".conf",
		  "# Multiarch support\n/usr/local/lib/" MULTIARCH "\n/lib/" MULTIARCH
		  "\n/usr/lib/" MULTIARCH "\n",
		  0644);
	disk_text(root, "etc/ld.so.conf.d/README", "/not/a/dir\n", 0644);
	disk_text(root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644);
	disk_text(root, "etc/shadow", "root:*:1::::::\n", 0600);
	disk_text(root, "app/run.sh", "#!/usr/bin/env sh\necho hi\n", 0755);
	disk_text(root, "app/data.txt", "data\n", 0644);
	disk_link(root, "app/secret-link", "/etc/shadow");
	disk_text(root, "usr/share/doc/x/copyright", "x\n", 0644);
	disk_text(root, "tmp/.keep", "", 0644);
}

/*
 * The tree of make_rootfs() through directory ingest; env is then replaced
 * by a copy held in the spool (both ways of reading content get used).
 */
static struct slimfs_tree *fixture(const char *dir, bool with_libc)
{
	struct slimfs_tree *t = NULL;
	char root[4096], cmd[8192];

	snprintf(root, sizeof(root), "%s/rootfs-%d", dir, with_libc);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return NULL;
	make_rootfs(root, with_libc);
	if (slimfs_tree_new(&t) < 0)
		return NULL;
	if (slimfs_ingest_dir(t, root) < 0 ||
	    tree_file(t, "usr/bin/env", "/usr/bin/env", true) < 0 ||
	    slimfs_tree_remove(t, "usr/sbin/.keep", false) < 0 ||
	    slimfs_tree_remove(t, "tmp/.keep", false) < 0) {
		slimfs_tree_free(t);
		return NULL;
	}
	return t;
}

/* The visible paths of view v ("/a/b", parents visible too), one per line, sorted. */
static void visible(struct slimfs_tnode *n, uint32_t bit, char *out, size_t len)
{
	struct slimfs_tnode **kids = NULL;
	uint32_t nk = 0;

	if (!(n->ino->views & bit))
		return;
	if (n->parent) {
		_cleanup_free_ char *p = slimfs_tree_path(n);

		strncat(out, p, len - strlen(out) - 1);
		strncat(out, "\n", len - strlen(out) - 1);
	}
	if (slimfs_tree_sorted_children(n, &kids, &nk) < 0)
		return;
	for (uint32_t i = 0; i < nk; i++)
		visible(kids[i], bit, out, len);
	free(kids);
}

static bool same(const char *got, const char *want)
{
	if (!strcmp(got, want))
		return true;
	printf("# got:\n%s# want:\n%s", got, want);
	return false;
}

#define LD   "/usr/lib/" MULTIARCH "/ld-linux-x86-64.so.2\n"
#define LIBC "/usr/lib/" MULTIARCH "/libc.so.6\n"

static void test_closure(const char *dir)
{
	struct slimfs_build_opts o;
	struct slimfs_write_args wa = {.default_view = -1};
	struct slimfs_tree *t;
	char got[8192], path[4096];

	if (!host_ok()) {
		printf("ok %d # skip no x86_64 Debian layout on this host\n", ++tap_n);
		return;
	}

	/* a script through "/usr/bin/env sh", in a closure-only view */
	t = fixture(dir, true);
	CHECK(t != NULL);
	if (!t)
		return;
	slimfs_build_opts_init(&o);
	o.entrypoint = "/app/run.sh";
	o.views[0].name = "app";
	o.nviews = 1;
	CHECK_EQ(slimfs_views_apply(t, &o, NULL, 0, &wa), 0);
	CHECK_EQ(wa.nviews, 1);
	CHECK(wa.nviews == 1 && !strcmp(wa.view_names[0], "app"));
	CHECK_EQ(wa.default_view, -1);
	got[0] = '\0';
	visible(t->root, 1, got, sizeof(got));
	CHECK(same(got, "/app\n/app/run.sh\n/bin\n/lib\n/lib64\n/lib64/ld-linux-x86-64.so.2\n"
			"/usr\n/usr/bin\n/usr/bin/dash\n/usr/bin/env\n/usr/bin/sh\n/usr/lib\n"
			"/usr/lib/" MULTIARCH "\n" LD LIBC));
	slimfs_views_free(&wa);
	slimfs_tree_free(t);

	/* /usr/bin/true alone: the automatic "minimal" view = runtime-base + closure */
	t = fixture(dir, true);
	slimfs_build_opts_init(&o);
	o.entrypoint = "true"; /* a name, found on the default PATH */
	CHECK_EQ(slimfs_views_apply(t, &o, NULL, 0, &wa), 0);
	CHECK(wa.nviews == 1 && !strcmp(wa.view_names[0], "minimal"));
	CHECK_EQ(wa.default_view, 0);
	CHECK(!wa.prune);
	got[0] = '\0';
	visible(t->root, 1, got, sizeof(got));
	CHECK(same(got, "/bin\n/etc\n/etc/ld.so.conf\n/etc/ld.so.conf.d\n/etc/ld.so.conf.d/README\n"
			"/etc/ld.so.conf.d/" MULTIARCH ".conf\n/etc/passwd\n/lib\n/lib64\n"
			"/lib64/ld-linux-x86-64.so.2\n/tmp\n/usr\n/usr/bin\n/usr/bin/true\n"
			"/usr/lib\n/usr/lib/" MULTIARCH "\n" LD LIBC));
	slimfs_views_free(&wa);
	slimfs_tree_free(t);

	/* an allow-list view: closure wins over no-shell, symlinks bring their targets */
	write_file(dir, "app.allow", "/app/\n!/app/data.txt\n/etc/passwd\n@include no-shell\n");
	write_file(dir, "links.allow", "/lib64/\n/usr/bin/sh\n");
	write_file(dir, "nodash.allow", "/usr/bin/sh\n!/usr/bin/dash\n");
	t = fixture(dir, true);
	slimfs_build_opts_init(&o);
	o.entrypoint = "/app/run.sh";
	snprintf(path, sizeof(path), "%s/app.allow", dir);
	o.views[0] = (struct slimfs_view_spec){"app", strdup(path)};
	o.nviews = 3;
	snprintf(path, sizeof(path), "%s/links.allow", dir);
	o.views[1] = (struct slimfs_view_spec){"links", strdup(path)};
	snprintf(path, sizeof(path), "%s/nodash.allow", dir);
	o.views[2] = (struct slimfs_view_spec){"nodash", strdup(path)};
	o.entrypoint = NULL; /* from the config below */
	{
		static const char config[] =
			"{\"config\":{\"Entrypoint\":[\"run.sh\"],\"Cmd\":[\"--flag\"],"
			"\"Env\":[\"PATH=/app:/usr/bin\"],\"WorkingDir\":\"/app\"}}";

		CHECK_EQ(slimfs_views_apply(t, &o, config, strlen(config), &wa), 0);
	}
	CHECK_EQ(wa.nviews, 3);
	CHECK_EQ(wa.default_view, -1);
	got[0] = '\0';
	visible(t->root, 1, got, sizeof(got));
	/* /app/secret-link is there, /etc/shadow not: a link to a non-ELF file dangles */
	CHECK(same(got,
		   "/app\n/app/run.sh\n/app/secret-link\n/bin\n/etc\n/etc/passwd\n/lib\n/lib64\n"
		   "/lib64/ld-linux-x86-64.so.2\n/usr\n/usr/bin\n/usr/bin/dash\n"
		   "/usr/bin/env\n/usr/bin/sh\n/usr/lib\n/usr/lib/" MULTIARCH "\n" LD LIBC));
	/* the closure is in every view; the links view adds nothing new but /lib64's dir */
	got[0] = '\0';
	visible(t->root, 2, got, sizeof(got));
	CHECK(strstr(got, "/usr/bin/sh\n") && strstr(got, "/usr/bin/dash\n") && strstr(got, LD) &&
	      !strstr(got, "/etc"));
	slimfs_views_free(&wa);
	for (unsigned i = 0; i < 3; i++)
		free((void *)o.views[i].allow_file);
	slimfs_tree_free(t);

	/* without an entrypoint: the symlink chain follows, unless excluded */
	t = fixture(dir, true);
	slimfs_build_opts_init(&o);
	snprintf(path, sizeof(path), "%s/links.allow", dir);
	o.views[0] = (struct slimfs_view_spec){"links", path};
	o.views[1] = (struct slimfs_view_spec){"nodash", NULL};
	o.views[2] = (struct slimfs_view_spec){"nolibc", NULL};
	o.nviews = 3;
	{
		char p2[4096], p3[4096];

		snprintf(p2, sizeof(p2), "%s/nodash.allow", dir);
		o.views[1].allow_file = p2;
		write_file(dir, "nolibc.allow", "/usr/bin/true\n!libc.so*\n");
		snprintf(p3, sizeof(p3), "%s/nolibc.allow", dir);
		o.views[2].allow_file = p3;
		CHECK_EQ(slimfs_views_apply(t, &o, NULL, 0, &wa), 0);
	}
	/* sh -> dash, and what dash needs */
	got[0] = '\0';
	visible(t->root, 1, got, sizeof(got));
	CHECK(same(got, "/bin\n/lib\n/lib64\n/lib64/ld-linux-x86-64.so.2\n/usr\n/usr/bin\n"
			"/usr/bin/dash\n/usr/bin/sh\n/usr/lib\n/usr/lib/" MULTIARCH "\n" LD LIBC));
	got[0] = '\0';
	visible(t->root, 2, got, sizeof(got));
	CHECK(same(got, "/bin\n/usr\n/usr/bin\n/usr/bin/sh\n"));
	/* a selected program brings its loader and libraries, but not what is excluded */
	got[0] = '\0';
	visible(t->root, 4, got, sizeof(got));
	CHECK(same(got, "/bin\n/lib\n/lib64\n/lib64/ld-linux-x86-64.so.2\n/usr\n/usr/bin\n"
			"/usr/bin/true\n/usr/lib\n/usr/lib/" MULTIARCH "\n" LD));
	slimfs_views_free(&wa);
	slimfs_tree_free(t);
}

struct apply_args {
	struct slimfs_tree *t;
	struct slimfs_build_opts *o;
	struct slimfs_write_args *wa;
};

static int do_apply(void *ud)
{
	struct apply_args *a = ud;

	return slimfs_views_apply(a->t, a->o, NULL, 0, a->wa);
}

static void test_apply_errors(const char *dir)
{
	struct slimfs_build_opts o;
	struct slimfs_write_args wa = {.default_view = -1};
	struct apply_args a = {.o = &o, .wa = &wa};
	char err[8192];

	if (!host_ok())
		return;
	a.t = fixture(dir, false);
	if (!a.t)
		return;
	/* missing libc: a warning naming the program and the library */
	slimfs_build_opts_init(&o);
	o.entrypoint = "/usr/bin/true";
	o.prune = true;
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), 0);
	CHECK(strstr(err, "'/usr/bin/true' needs 'libc.so.6'") != NULL);
	CHECK(wa.prune);
	CHECK_EQ(wa.default_view, 0);
	slimfs_views_free(&wa);

	/* an entrypoint given explicitly must exist */
	o.entrypoint = "/usr/bin/python3";
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), -ENOENT);
	CHECK(strstr(err, "python3") != NULL);

	/* prune without any view or entrypoint */
	slimfs_build_opts_init(&o);
	o.prune = true;
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), -EINVAL);

	/* "full" is reserved, names are checked, no duplicates */
	slimfs_build_opts_init(&o);
	o.views[0].name = "full";
	o.nviews = 1;
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), -EINVAL);
	CHECK(strstr(err, "reserved") != NULL);
	o.views[0].name = "a/b";
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), -EINVAL);
	o.views[0].name = "x";
	o.views[1].name = "x";
	o.nviews = 2;
	CHECK_EQ(captured(err, sizeof(err), do_apply, &a), -EINVAL);

	/* no views asked: bits untouched, nothing allocated */
	slimfs_tree_free(a.t);
	a.t = fixture(dir, false);
	if (!a.t)
		return;
	slimfs_build_opts_init(&o);
	CHECK_EQ(slimfs_views_apply(a.t, &o, NULL, 0, &wa), 0);
	CHECK_EQ(wa.nviews, 0);
	CHECK_EQ(a.t->root->ino->views, UINT32_MAX);
	slimfs_tree_free(a.t);
}

/* Resolution: relative and absolute links, "..", loops. */
static void test_resolve(void)
{
	struct slimfs_tree *t = NULL;
	struct slimfs_tnode *n = NULL, *want = NULL;

	if (slimfs_tree_new(&t) < 0)
		return;
	tree_text(t, "usr/lib/x/libz.so.1.2", "z", 0644);
	test_tree_symlink(t, "usr/lib/x/libz.so.1", "libz.so.1.2");
	test_tree_symlink(t, "lib", "usr/lib");
	test_tree_symlink(t, "usr/lib/up", "../../lib/x/libz.so.1");
	test_tree_symlink(t, "loop1", "loop2");
	test_tree_symlink(t, "loop2", "/loop1");
	test_tree_symlink(t, "dotdot", "../../../../usr");
	slimfs_tree_lookup(t, "usr/lib/x/libz.so.1.2", &want);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/lib/x/libz.so.1", true, NULL, NULL, &n), 0);
	CHECK(n == want);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/usr/lib/up", true, NULL, NULL, &n), 0);
	CHECK(n == want);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "dotdot/lib/x/../x/libz.so.1", true, NULL, NULL, &n),
		 0);
	CHECK(n == want);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/lib/x/libz.so.1", false, NULL, NULL, &n), 0);
	CHECK(n != want && S_ISLNK(n->ino->mode));
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/loop1", true, NULL, NULL, &n), -ELOOP);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/lib/nope", true, NULL, NULL, &n), -ENOENT);
	CHECK_EQ(slimfs_tree_resolve(t, NULL, "/lib/x/libz.so.1/a", true, NULL, NULL, &n),
		 -ENOTDIR);
	slimfs_tree_free(t);
}

int main(void)
{
	char dir[] = "/tmp/test-views.XXXXXX";

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_globs();
	test_rules();
	test_presets();
	test_files(dir);
	test_resolve();
	test_closure(dir);
	test_apply_errors(dir);
	{
		char cmd[256];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", dir);
	}
	return tap_done();
}
