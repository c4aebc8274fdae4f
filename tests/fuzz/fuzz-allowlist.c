// SPDX-License-Identifier: MIT
/*
 * Allow-lists (index/allowlist.h): the input is the text of an allow-list.
 * It is parsed (basedir NULL: "@include" of a name with a '/' reads that
 * file, as `slimfs build --view` would), then a few fixed paths and every
 * line of the input, as a path, are decided against it; the first lines are
 * also matched against each other with slimfs_glob_match() (pattern blowups
 * show up as libFuzzer timeouts).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "slimfs/util.h"
#include "allowlist.h"
#include "fuzz.h"

#define LINES_MAX    16
#define LINE_MAX_LEN 512

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

/* A plain relative path (no glob or escape syntax) matches itself. */
static bool literal(const char *s)
{
	size_t n = strlen(s);

	if (!n || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//"))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '/' ||
		      *p == '_' || *p == '-'))
			return false;
	return true;
}

static void decide_path(const struct slimfs_allowlist *al, const char *path, bool is_dir)
{
	size_t n = slimfs_allowlist_count(al);
	char buf[LINE_MAX_LEN + 1];
	long parent = -1, d;
	size_t len = strlen(path);

	/* the decision of each ancestor, then of the path itself */
	FUZZ_CHECK(len <= LINE_MAX_LEN);
	memcpy(buf, path, len + 1);
	for (size_t i = 0; i <= len; i++) {
		char c = buf[i];

		if (c != '/' && c != '\0')
			continue;
		buf[i] = '\0';
		d = slimfs_allowlist_decide(al, buf, c == '/' || is_dir, parent);
		FUZZ_CHECK(d >= -1 && d < (long)n);
		FUZZ_CHECK(d >= parent);
		if (d >= 0)
			(void)slimfs_allowlist_negated(al, (size_t)d);
		parent = d;
		buf[i] = c;
	}
	d = slimfs_allowlist_last_match(al, path, is_dir, -1);
	FUZZ_CHECK(d >= -1 && d < (long)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {
		"", "usr", "usr/bin/sh", "etc/passwd", "a/b/c/d/e/f", ".wh.x", "lib64/ld.so",
	};
	struct slimfs_allowlist *al = NULL;
	char *lines[LINES_MAX];
	size_t nlines = 0, i = 0;
	int r;

	FUZZ_CHECK(slimfs_allowlist_new(&al) == 0);
	r = slimfs_allowlist_add_text(al, (const char *)data, size, "fuzz", NULL);
	FUZZ_CHECK(r <= 0);

	while (i < size && nlines < LINES_MAX) {
		const uint8_t *e = memchr(data + i, '\n', size - i);
		size_t n = e ? (size_t)(e - (data + i)) : size - i;

		if (n <= LINE_MAX_LEN && !memchr(data + i, '\0', n)) {
			lines[nlines] = strndup((const char *)data + i, n);
			FUZZ_CHECK(lines[nlines]);
			nlines++;
		}
		i += n + 1;
	}

	for (size_t k = 0; k < ARRAY_SIZE(fixed); k++) {
		decide_path(al, fixed[k], false);
		decide_path(al, fixed[k], true);
	}
	for (size_t k = 0; k < nlines; k++) {
		const char *p = lines[k];

		while (*p == '/')
			p++;
		decide_path(al, p, false);
		decide_path(al, p, true);
	}
	for (size_t k = 0; k < nlines && k < 4; k++) {
		for (size_t j = 0; j < nlines && j < 4; j++) {
			r = slimfs_glob_match(lines[k], lines[j], false);
			FUZZ_CHECK(r == 0 || r == 1 || r == -EINVAL || r == -ENOMEM);
		}
		if (literal(lines[k])) {
			r = slimfs_glob_match(lines[k], lines[k], false);
			if (r != 1)
				fprintf(stderr, "fuzz: '%s' does not match itself (%d)\n", lines[k],
					r);
			FUZZ_CHECK(r == 1);
		}
	}
	for (size_t k = 0; k < nlines; k++)
		free(lines[k]);
	slimfs_allowlist_free(al);
	return 0;
}
