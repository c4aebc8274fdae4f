// SPDX-License-Identifier: MIT
/*
 * Allow-lists: parsing (files, text, built-in presets) and gitignore-like
 * glob matching of image paths. See allowlist.h for the syntax.
 *
 * A pattern is compiled to components; "**" matches any run of path
 * components and every other component matches exactly one. Both levels use
 * the classic single-backtrack wildcard algorithm, so matching is linear-ish
 * in the path length whatever the pattern (no exponential "**" cases).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "allowlist.h"
#include "slimfs/util.h"

#define INCLUDE_DEPTH_MAX 16
#define ALLOW_FILE_MAX	  (16u << 20)
#define PATTERN_MAX	  4096

struct comp {
	char *glob; /* owned, NUL-terminated; NULL for "**" */
};

struct rule {
	bool negated, dir_only;
	uint32_t ncomp;
	struct comp *comp; /* owned */
};

struct slimfs_allowlist {
	struct rule *rules;
	size_t n, cap;
	unsigned depth; /* @include nesting while parsing */
};

/* ---- built-in presets ---- */

struct preset {
	const char *name;
	const char *text;
};

static const struct preset presets[] = {
	{"runtime-base",
	 "# dynamic loaders (merged-/usr and classic layouts) and their configuration\n"
	 "/lib64/ld-linux-*.so*\n"
	 "/usr/lib64/ld-linux-*.so*\n"
	 "/lib*/ld-*.so*\n"
	 "/usr/lib*/ld-*.so*\n"
	 "/lib/*-linux-*/ld-*.so*\n"
	 "/usr/lib/*-linux-*/ld-*.so*\n"
	 "/etc/ld.so.cache\n"
	 "/etc/ld.so.conf\n"
	 "/etc/ld.so.conf.d/\n"
	 "/etc/ld-musl-*.path\n"
	 "# users, name service, network configuration\n"
	 "/etc/passwd\n"
	 "/etc/group\n"
	 "/etc/nsswitch.conf\n"
	 "/etc/hosts\n"
	 "/etc/resolv.conf\n"
	 "/etc/host.conf\n"
	 "/etc/hostname\n"
	 "/etc/services\n"
	 "/etc/protocols\n"
	 "# TLS trust\n"
	 "/etc/ssl/certs/\n"
	 "/usr/share/ca-certificates/\n"
	 "/etc/ca-certificates.conf\n"
	 "/etc/pki/tls/certs/\n"
	 "/etc/pki/ca-trust/extracted/\n"
	 "# time zones\n"
	 "/usr/share/zoneinfo/\n"
	 "/etc/localtime\n"
	 "/etc/timezone\n"
	 "# mount points and scratch directories, visible as directories\n"
	 "/tmp/\n"
	 "/dev/\n"
	 "/proc/\n"
	 "/sys/\n"
	 "/run/\n"
	 "/var/tmp/\n"
	 "# libc's character set conversions and the C.UTF-8 locale\n"
	 "/usr/lib/*-linux-*/gconv/\n"
	 "/usr/lib64/gconv/\n"
	 "/usr/lib/locale/C.*/\n"},
	{"no-shell", "# shells, in every bin and sbin directory\n"
		     "!/**/*bin/sh\n"
		     "!/**/*bin/bash\n"
		     "!/**/*bin/rbash\n"
		     "!/**/*bin/dash\n"
		     "!/**/*bin/ash\n"
		     "!/**/*bin/busybox\n"
		     "!/**/*bin/ksh*\n"
		     "!/**/*bin/mksh*\n"
		     "!/**/*bin/lksh\n"
		     "!/**/*bin/pdksh\n"
		     "!/**/*bin/zsh*\n"
		     "!/**/*bin/csh\n"
		     "!/**/*bin/bsd-csh\n"
		     "!/**/*bin/tcsh\n"
		     "!/**/*bin/fish\n"
		     "!/**/*bin/yash\n"
		     "!/**/*bin/posh\n"
		     "!/etc/alternatives/*sh\n"},
	{"no-package-manager", "# Debian\n"
			       "!/**/*bin/dpkg\n"
			       "!/**/*bin/dpkg-*\n"
			       "!/**/*bin/apt\n"
			       "!/**/*bin/apt-*\n"
			       "!/**/*bin/aptitude*\n"
			       "!/var/lib/dpkg/\n"
			       "!/var/lib/apt/\n"
			       "!/var/cache/apt/\n"
			       "!/var/cache/debconf/\n"
			       "!/etc/apt/\n"
			       "!/etc/dpkg/\n"
			       "!/usr/lib/apt/\n"
			       "!/usr/lib/dpkg/\n"
			       "!/usr/share/dpkg/\n"
			       "# Alpine\n"
			       "!/**/*bin/apk\n"
			       "!/lib/apk/\n"
			       "!/etc/apk/\n"
			       "# RPM based\n"
			       "!/**/*bin/rpm*\n"
			       "!/**/*bin/yum*\n"
			       "!/**/*bin/dnf*\n"
			       "!/**/*bin/microdnf\n"
			       "!/**/*bin/tdnf\n"
			       "!/**/*bin/zypper\n"
			       "!/var/lib/rpm/\n"
			       "!/var/lib/dnf/\n"
			       "!/var/lib/yum/\n"
			       "!/var/cache/dnf/\n"
			       "!/var/cache/yum/\n"
			       "!/etc/yum/\n"
			       "!/etc/yum.repos.d/\n"
			       "!/etc/dnf/\n"
			       "!/usr/lib/rpm/\n"},
	{"no-docs", "!/usr/share/man/\n"
		    "!/usr/share/doc/\n"
		    "!/usr/share/info/\n"
		    "!/usr/share/gtk-doc/\n"
		    "!/usr/share/lintian/\n"
		    "!/usr/share/linda/\n"
		    "!/usr/local/share/man/\n"
		    "!/usr/local/share/doc/\n"
		    "# message catalogs of every locale but C (C, C.UTF-8, C.utf8)\n"
		    "!/usr/share/locale/[!C]*/\n"},
};

const char *const slimfs_allowlist_presets[] = {"runtime-base", "no-shell", "no-package-manager",
						"no-docs", NULL};

/* ---- glob matching ---- */

/* After the '[' of a class: the character after its closing ']', or NULL. */
static const char *class_end(const char *p)
{
	if (*p == '!' || *p == '^')
		p++;
	if (*p == ']')
		p++;
	for (; *p && *p != ']'; p++)
		if (*p == '\\' && !*++p)
			return NULL;
	return *p == ']' ? p + 1 : NULL;
}

/* Class starting after '[' (well-formed, checked at compile) against c. */
static bool class_match(const char *p, unsigned char c)
{
	bool neg = false, hit = false;

	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	for (bool first = true; first || *p != ']'; first = false) {
		unsigned char lo, hi;

		if (*p == '\\')
			p++;
		lo = hi = (unsigned char)*p++;
		if (p[0] == '-' && p[1] && p[1] != ']') {
			p++;
			if (*p == '\\')
				p++;
			hi = (unsigned char)*p++;
		}
		if (c >= lo && c <= hi)
			hit = true;
	}
	return hit != neg;
}

/* One token at p against c: the token's end when it matches, else NULL. */
static const char *token_match(const char *p, unsigned char c)
{
	const char *e;

	switch (*p) {
	case '\0':
		return NULL;
	case '?':
		return p + 1;
	case '[':
		e = class_end(p + 1);
		return e && class_match(p + 1, c) ? e : NULL;
	case '\\':
		return (unsigned char)p[1] == c ? p + 2 : NULL;
	default:
		return (unsigned char)*p == c ? p + 1 : NULL;
	}
}

/* A one-component glob against name[0, len). */
static bool glob_one(const char *p, const char *name, size_t len)
{
	const char *star_p = NULL;
	size_t i = 0, star_i = 0;

	while (i < len) {
		const char *np;

		if (*p == '*') {
			while (*p == '*')
				p++;
			star_p = p;
			star_i = i;
			continue;
		}
		np = token_match(p, (unsigned char)name[i]);
		if (np) {
			p = np;
			i++;
			continue;
		}
		if (!star_p)
			return false;
		p = star_p;
		i = ++star_i;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

static const char *next_comp(const char *s)
{
	const char *e = strchrnul(s, '/');

	return *e ? e + 1 : e;
}

static bool rule_match(const struct rule *r, const char *path, bool is_dir)
{
	const char *s = path, *star_s = NULL;
	uint32_t pi = 0, star_pi = 0;
	bool star = false;

	if (r->dir_only && !is_dir)
		return false;
	while (*s) {
		if (pi < r->ncomp && !r->comp[pi].glob) {
			star = true;
			star_pi = ++pi;
			star_s = s;
			continue;
		}
		if (pi < r->ncomp &&
		    glob_one(r->comp[pi].glob, s, (size_t)(strchrnul(s, '/') - s))) {
			pi++;
			s = next_comp(s);
			continue;
		}
		if (!star)
			return false;
		pi = star_pi;
		star_s = next_comp(star_s);
		s = star_s;
	}
	while (pi < r->ncomp && !r->comp[pi].glob)
		pi++;
	return pi == r->ncomp;
}

/* ---- compiling ---- */

static void rule_free(struct rule *r)
{
	for (uint32_t i = 0; i < r->ncomp; i++)
		free(r->comp[i].glob);
	free(r->comp);
}

static int rule_push(struct rule *r, const char *glob, size_t len)
{
	struct comp *c;

	if (!glob && r->ncomp && !r->comp[r->ncomp - 1].glob)
		return 0; /* "**" twice in a row is one "**" */
	c = realloc(r->comp, (r->ncomp + 1) * sizeof(*c));
	if (!c)
		return -ENOMEM;
	r->comp = c;
	c[r->ncomp].glob = NULL;
	if (glob) {
		c[r->ncomp].glob = strndup(glob, len);
		if (!c[r->ncomp].glob)
			return -ENOMEM;
	}
	r->ncomp++;
	return 0;
}

/* Checks one component: classes closed, no dangling backslash. */
static const char *check_glob(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\') {
			if (++i == len)
				return "trailing backslash";
		} else if (s[i] == '[') {
			_cleanup_free_ char *tmp = strndup(s + i + 1, len - i - 1);
			const char *e;

			if (!tmp)
				return "out of memory";
			e = class_end(tmp);
			if (!e)
				return "unbalanced '['";
			i += (size_t)(e - tmp);
		}
	}
	return NULL;
}

/*
 * Compiles pattern (negation already stripped) into r; *why says what is
 * wrong on -EINVAL.
 */
static int compile(const char *pat, struct rule *r, const char **why)
{
	size_t len = strlen(pat), i;
	bool anchored;
	int ret;

	memset(r, 0, sizeof(*r));
	while (len && pat[len - 1] == '/') {
		r->dir_only = true;
		len--;
	}
	/* "/" alone is the root (and so, as a directory, everything). */
	anchored = pat[0] == '/' || memchr(pat, '/', len) != NULL;
	if (!anchored && (ret = rule_push(r, NULL, 0)) < 0)
		return ret;
	for (i = 0; i < len;) {
		const char *s = pat + i, *e = memchr(s, '/', len - i);
		size_t n = e ? (size_t)(e - s) : len - i;

		i += n + 1;
		if (!n)
			continue;
		if (n == 2 && s[0] == '*' && s[1] == '*') {
			ret = rule_push(r, NULL, 0);
		} else {
			*why = check_glob(s, n);
			if (*why)
				return -EINVAL;
			ret = rule_push(r, s, n);
		}
		if (ret < 0)
			return ret;
	}
	/* A trailing "**" matches one component or more: "*" then "**". */
	if (r->ncomp && !r->comp[r->ncomp - 1].glob) {
		r->ncomp--;
		if ((ret = rule_push(r, "*", 1)) < 0 || (ret = rule_push(r, NULL, 0)) < 0)
			return ret;
	}
	return 0;
}

int slimfs_glob_match(const char *pattern, const char *path, bool is_dir)
{
	struct rule r;
	const char *why = NULL;
	int ret;

	ret = compile(pattern, &r, &why);
	if (ret == 0) {
		while (*path == '/')
			path++;
		ret = rule_match(&r, path, is_dir);
	}
	rule_free(&r);
	return ret;
}

/* ---- the list ---- */

int slimfs_allowlist_new(struct slimfs_allowlist **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void slimfs_allowlist_free(struct slimfs_allowlist *al)
{
	if (!al)
		return;
	for (size_t i = 0; i < al->n; i++)
		rule_free(&al->rules[i]);
	free(al->rules);
	free(al);
}

size_t slimfs_allowlist_count(const struct slimfs_allowlist *al)
{
	return al->n;
}

bool slimfs_allowlist_negated(const struct slimfs_allowlist *al, size_t rule)
{
	return rule < al->n && al->rules[rule].negated;
}

long slimfs_allowlist_last_match(const struct slimfs_allowlist *al, const char *path, bool is_dir,
				 long after)
{
	for (size_t i = al->n; i-- > 0 && (long)i > after;)
		if (rule_match(&al->rules[i], path, is_dir))
			return (long)i;
	return -1;
}

static int append_rule(struct slimfs_allowlist *al, struct rule *r)
{
	if (SLIMFS_GROW(al->rules, al->cap, al->n + 1, 32) < 0)
		return -ENOMEM;
	al->rules[al->n++] = *r;
	return 0;
}

static const struct preset *find_preset(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(presets); i++)
		if (strcmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}

static int add_preset(struct slimfs_allowlist *al, const char *name, bool quiet)
{
	const struct preset *p = find_preset(name);
	char origin[64];

	if (!p) {
		if (!quiet)
			log_error("no allow-list preset '%s' (presets: runtime-base, no-shell, "
				  "no-package-manager, no-docs)",
				  name);
		return -ENOENT;
	}
	snprintf(origin, sizeof(origin), "preset '%s'", name);
	return slimfs_allowlist_add_text(al, p->text, strlen(p->text), origin, NULL);
}

int slimfs_allowlist_add_preset(struct slimfs_allowlist *al, const char *name)
{
	return add_preset(al, name, false);
}

static int do_include(struct slimfs_allowlist *al, const char *name, const char *origin,
		      unsigned line, const char *basedir)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;

	if (!*name) {
		log_error("%s line %u: @include needs a name", origin, line);
		return -EINVAL;
	}
	if (name[0] != '/' && basedir) {
		if (asprintf(&path, "%s/%s", basedir, name) < 0)
			return -ENOMEM;
	} else {
		path = strdup(name);
		if (!path)
			return -ENOMEM;
	}
	if (strchr(name, '/') || (basedir && stat(path, &st) == 0))
		return slimfs_allowlist_add_file(al, path);
	if (find_preset(name))
		return add_preset(al, name, true);
	log_error("%s line %u: '@include %s': no such preset (runtime-base, no-shell, "
		  "no-package-manager, no-docs) or file",
		  origin, line, name);
	return -EINVAL;
}

/* One line (NUL-terminated, modifiable) of an allow-list. */
static int parse_line(struct slimfs_allowlist *al, char *s, const char *origin, unsigned line,
		      const char *basedir)
{
	size_t len;
	struct rule r;
	const char *why = NULL;
	bool neg = false;
	int ret;

	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t') &&
	       !(len >= 2 && s[len - 2] == '\\'))
		s[--len] = '\0';
	if (!len || s[0] == '#')
		return 0;
	if (s[0] == '@') {
		char *arg = s + strcspn(s, " \t");

		if (*arg)
			*arg++ = '\0';
		while (*arg == ' ' || *arg == '\t')
			arg++;
		if (strcmp(s, "@include") != 0) {
			log_error("%s line %u: unknown directive '%s' (write '\\@' for a name "
				  "starting with '@')",
				  origin, line, s);
			return -EINVAL;
		}
		ret = do_include(al, arg, origin, line, basedir);
		if (ret == -EINVAL || ret == -ELOOP || ret == -ENOMEM)
			return ret;
		if (ret < 0) {
			log_error("%s line %u: cannot include '%s'", origin, line, arg);
			return ret;
		}
		return 0;
	}
	if (s[0] == '!') {
		neg = true;
		s++;
		len--;
	}
	if (!len) {
		log_error("%s line %u: '!' without a pattern", origin, line);
		return -EINVAL;
	}
	if (len > PATTERN_MAX) {
		log_error("%s line %u: pattern longer than %u bytes", origin, line, PATTERN_MAX);
		return -EINVAL;
	}
	ret = compile(s, &r, &why);
	if (ret < 0) {
		rule_free(&r);
		if (ret == -EINVAL)
			log_error("%s line %u: %s in '%s'", origin, line, why, s);
		return ret;
	}
	r.negated = neg;
	ret = append_rule(al, &r);
	if (ret < 0)
		rule_free(&r);
	return ret;
}

int slimfs_allowlist_add_text(struct slimfs_allowlist *al, const char *text, size_t len,
			      const char *origin, const char *basedir)
{
	unsigned line = 0;
	size_t i = 0;
	int ret = 0;

	if (al->depth >= INCLUDE_DEPTH_MAX) {
		log_error("%s: @include nested more than %u deep (a cycle?)", origin,
			  INCLUDE_DEPTH_MAX);
		return -ELOOP;
	}
	al->depth++;
	while (i < len && ret == 0) {
		const char *e = memchr(text + i, '\n', len - i);
		size_t n = e ? (size_t)(e - (text + i)) : len - i;
		_cleanup_free_ char *s = NULL;

		line++;
		if (memchr(text + i, '\0', n)) {
			log_error("%s line %u: NUL byte (not a text file?)", origin, line);
			ret = -EINVAL;
			break;
		}
		s = strndup(text + i, n);
		if (!s) {
			ret = -ENOMEM;
			break;
		}
		ret = parse_line(al, s, origin, line, basedir);
		i += n + 1;
	}
	al->depth--;
	return ret;
}

int slimfs_allowlist_add_file(struct slimfs_allowlist *al, const char *path)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL, *dircopy = NULL, *origin = NULL;
	struct stat st;
	int ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open allow-list '%s'", path);
	if (fstat(fd, &st) < 0)
		return log_error_errno(-errno, "cannot stat allow-list '%s'", path);
	if (!S_ISREG(st.st_mode)) {
		log_error("allow-list '%s' is not a regular file", path);
		return -EINVAL;
	}
	if (st.st_size > ALLOW_FILE_MAX) {
		log_error("allow-list '%s' is larger than %u MiB", path, ALLOW_FILE_MAX >> 20);
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	dircopy = strdup(path);
	if (!buf || !dircopy || asprintf(&origin, "allow-list '%s'", path) < 0)
		return -ENOMEM;
	if (st.st_size) {
		ret = slimfs_pread_all(fd, buf, (size_t)st.st_size, 0);
		if (ret < 0)
			return log_error_errno(ret, "cannot read allow-list '%s'", path);
	}
	return slimfs_allowlist_add_text(al, buf, (size_t)st.st_size, origin, dirname(dircopy));
}
