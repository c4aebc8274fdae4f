// SPDX-License-Identifier: MIT
/*
 * Traces and profiles: trace parsing (escapes, bad lines named file:line),
 * merging two traces with interleaved times, the profile text, the escaping
 * of nasty names checked through the allow-list parser and matcher (each
 * line matches its path and no near miss), "#@chunk" reading, atomic
 * writes, and build --profile placing the chunks first.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "allowlist.h"
#include "profile.h"
#include "slimfs/build.h"
#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/util.h"
#include "tap.h"

#define HDR                                                                                        \
	"# slimfs-trace 1\timage=sha256:"                                                          \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\tview=full\n"
#define HDR2                                                                                       \
	"# slimfs-trace 2\timage=sha256:"                                                          \
	"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\tview=full\t"            \
	"kernel_readahead=0\n"
#define ID1 "0123456789abcdef0123456789abcdef"
#define ID2 "fedcba9876543210fedcba9876543210"
#define ID3 "00000000000000000000000000000003"

static struct slimfs_tracefile *parse(const char *text, const char *origin)
{
	struct slimfs_tracefile *t = NULL;

	if (slimfs_tracefile_parse(text, strlen(text), origin, &t) < 0)
		return NULL;
	return t;
}

/*
 * Runs a parse that must fail; returns its error and puts what it logged in
 * msg (stderr is redirected to a temporary file for the call).
 */
static int parse_fails(const char *text, size_t len, char *msg, size_t msglen)
{
	struct slimfs_tracefile *t = NULL;
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO), r;
	size_t n = 0;

	msg[0] = '\0';
	if (!tmp || saved < 0)
		return 0;
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	r = slimfs_tracefile_parse(text, len, "t.trace", &t);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(msg, 1, msglen - 1, tmp);
	msg[n] = '\0';
	fclose(tmp);
	slimfs_tracefile_free(t);
	return r;
}

/* ---- parsing ---- */

static void test_parse(void)
{
	static const char text[] = HDR "P\t10\t/usr/bin/python3\n"
				       "# a comment line\n"
				       "C\t11\t" ID1 "\t7\n"
				       "P\t12\t/a\\\\b\\tc\\nd\\x01\\xffe\thidden\n"
				       "P\t13\t/gone\tmissing\n"
				       "P\t14\t/\n"
				       "C\t15\t" ID2 "\t0\n";
	struct slimfs_tracefile *t = parse(text, "ok.trace");
	uint8_t want_image[32];

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK(t->has_image);
	slimfs_parse_digest("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
			    want_image);
	CHECK(memcmp(t->image, want_image, 32) == 0);
	CHECK(t->view && strcmp(t->view, "full") == 0);
	CHECK_EQ(t->npaths, 4);
	CHECK_EQ(t->nchunks, 2);
	CHECK(!t->truncated);
	CHECK(strcmp(t->paths[0].path, "/usr/bin/python3") == 0);
	CHECK_EQ(t->paths[0].usec, 10);
	CHECK_EQ(t->paths[0].state, SLIMFS_PATH_FOUND);
	CHECK(strcmp(t->paths[1].path, "/a\\b\tc\nd\x01\xff"
				       "e") == 0);
	CHECK_EQ(t->paths[1].state, SLIMFS_PATH_HIDDEN);
	CHECK_EQ(t->paths[2].state, SLIMFS_PATH_MISSING);
	CHECK(strcmp(t->paths[3].path, "/") == 0);
	CHECK_EQ(t->chunks[0].usec, 11);
	CHECK_EQ(t->chunks[0].index, 7);
	CHECK_EQ(t->chunks[0].id[0], 0x01);
	CHECK_EQ(t->chunks[0].id[15], 0xef);
	CHECK_EQ(t->chunks[1].id[0], 0xfe);
	slimfs_tracefile_free(t);

	/* a header alone, without image or view, is a trace of nothing */
	t = parse("# slimfs-trace 1\n", "empty.trace");
	CHECK(t && !t->has_image && !t->view && !t->npaths && !t->nchunks);
	slimfs_tracefile_free(t);

	/* a killed writer: the unterminated last line is dropped, not misread */
	t = parse(HDR "P\t1\t/usr/lib/x\nP\t2\t/usr/lib/pyth", "killed.trace");
	CHECK(t && t->truncated && t->npaths == 1);
	slimfs_tracefile_free(t);
	t = parse(HDR "P\t1\t/usr/lib/x\nC\t2\t0123", "killed2.trace");
	CHECK(t && t->truncated && t->npaths == 1 && t->nchunks == 0);
	slimfs_tracefile_free(t);

	/* uppercase hex, and later header keys are taken */
	t = parse("# slimfs-trace 1\tview=minimal\tfuture=1\nC\t1\t" ID1 "\t1\n", "up.trace");
	CHECK(t && t->nchunks == 1 && t->view && strcmp(t->view, "minimal") == 0);
	slimfs_tracefile_free(t);
}

/* Version 2: R records and kernel_readahead=; version 1 and 2 both read. */
static void test_parse_v2(void)
{
	static const char text[] = HDR2 "P\t10\t/usr/bin/python3\n"
					"R\t11\t0\t4096\t6834488\t/usr/bin/python3\n"
					"C\t12\t" ID1 "\t7\n"
					"R\t13\t8192\t3\t8195\t/a\\tb\\x01\n"
					"R\t14\t0\t1\t1\t/\n";
	struct slimfs_tracefile *t = parse(text, "v2.trace");

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK_EQ(t->version, 2);
	CHECK_EQ(t->kernel_readahead, 0);
	CHECK_EQ(t->npaths, 1);
	CHECK_EQ(t->nchunks, 1);
	CHECK_EQ(t->nreads, 3);
	if (t->nreads == 3) {
		CHECK(strcmp(t->reads[0].path, "/usr/bin/python3") == 0);
		CHECK_EQ(t->reads[0].usec, 11);
		CHECK_EQ(t->reads[0].off, 0);
		CHECK_EQ(t->reads[0].len, 4096);
		CHECK_EQ(t->reads[0].size, 6834488);
		CHECK(strcmp(t->reads[1].path, "/a\tb\x01") == 0);
		CHECK_EQ(t->reads[1].off, 8192);
		CHECK_EQ(t->reads[1].len, 3);
		CHECK_EQ(t->reads[1].size, 8195);
	}
	slimfs_tracefile_free(t);

	t = parse("# slimfs-trace 2\tkernel_readahead=default\n", "d.trace");
	CHECK(t && t->version == 2 && t->kernel_readahead == -1 && !t->nreads);
	slimfs_tracefile_free(t);
	t = parse("# slimfs-trace 2\tkernel_readahead=131072\n", "k.trace");
	CHECK(t && t->kernel_readahead == 131072);
	slimfs_tracefile_free(t);
	/* version 1: no read-ahead recorded */
	t = parse(HDR "P\t1\t/a\n", "v1.trace");
	CHECK(t && t->version == 1 && t->kernel_readahead == -1 && !t->nreads);
	slimfs_tracefile_free(t);
}

/* The trace path escape, back through the parser's unescape. */
static void test_trace_escape(void)
{
	static const char *const names[] = {
		"/plain",	    "/a\\b",
		"/tab\there",	    "/new\nline",
		"/ctl\x01\x1f\x7f", "/utf8 \xc3\xa9 \xff",
	};
	static const char *const want[] = {
		"/plain",
		"/a\\\\b",
		"/tab\\there",
		"/new\\nline",
		"/ctl\\x01\\x1f\\x7f",
		"/utf8 \xc3\xa9 \xff",
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char *e = slimfs_tracefile_escape(names[i]), *back = NULL;
		const char *why = NULL;

		CHECK(e && strcmp(e, want[i]) == 0);
		CHECK(e && slimfs_tracefile_unescape(e, strlen(e), &back, &why) == 0);
		CHECK(back && strcmp(back, names[i]) == 0);
		if (e && strcmp(e, want[i]) != 0)
			printf("# escape %zu: got '%s'\n", i, e);
		free(e);
		free(back);
	}
}

struct bad_case {
	const char *text;
	const char *line; /* "t.trace:N:" expected in the message */
};

static const struct bad_case bad_cases[] = {
	{"hello\n", "t.trace:1:"},
	{"# slimfs-trace 3\n", "t.trace:1:"},
	{"# slimfs-trace 0\n", "t.trace:1:"},
	{"# slimfs-trace 2\tkernel_readahead=x\n", "t.trace:1:"},
	{"# slimfs-trace 2\tkernel_readahead=\n", "t.trace:1:"},
	{HDR "R\t1\t0\t4096\t8192\t/a\n", "t.trace:2:"}, /* R is version 2 */
	{HDR2 "R\t1\t0\t4096\t8192\n", "t.trace:2:"},
	{HDR2 "R\t1\t0\t4096\t8192\t/a\textra\n", "t.trace:2:"},
	{HDR2 "R\t1\t0\t0\t8192\t/a\n", "t.trace:2:"},	     /* empty */
	{HDR2 "R\t1\t4096\t4097\t8192\t/a\n", "t.trace:2:"}, /* past the end */
	{HDR2 "R\t1\t8193\t1\t8192\t/a\n", "t.trace:2:"},
	{HDR2 "R\t1\t18446744073709551615\t2\t18446744073709551615\t/a\n", "t.trace:2:"},
	{HDR2 "R\t1\tx\t1\t8192\t/a\n", "t.trace:2:"},
	{HDR2 "R\t1\t0\t1\t-1\t/a\n", "t.trace:2:"},
	{HDR2 "R\tx\t0\t1\t1\t/a\n", "t.trace:2:"},
	{HDR2 "R\t1\t0\t1\t1\trel\n", "t.trace:2:"},
	{HDR2 "R\t1\t0\t1\t1\t/a\\q\n", "t.trace:2:"},
	{"# slimfs-trace x\n", "t.trace:1:"},
	{"# slimfs-trace 1\timage=sha256:12\n", "t.trace:1:"},
	{HDR "X\t1\t/a\n", "t.trace:2:"},
	{HDR "P\t1\t/a\nP\t1\n", "t.trace:3:"},
	{HDR "P\tx\t/a\n", "t.trace:2:"},
	{HDR "P\t-1\t/a\n", "t.trace:2:"},
	{HDR "P\t99999999999999999999\t/a\n", "t.trace:2:"},
	{HDR "P\t1\trelative\n", "t.trace:2:"},
	{HDR "P\t1\t\n", "t.trace:2:"},
	{HDR "P\t1\t/a//b\n", "t.trace:2:"},
	{HDR "P\t1\t/a/\n", "t.trace:2:"},
	{HDR "P\t1\t/a/../b\n", "t.trace:2:"},
	{HDR "P\t1\t/a/./b\n", "t.trace:2:"},
	{HDR "P\t1\t/a\\q\n", "t.trace:2:"},
	{HDR "P\t1\t/a\\\n", "t.trace:2:"},
	{HDR "P\t1\t/a\\x0\n", "t.trace:2:"},
	{HDR "P\t1\t/a\\x00b\n", "t.trace:2:"},
	{HDR "P\t1\t/a\\xzz\n", "t.trace:2:"},
	{HDR "P\t1\t/a\rb\n", "t.trace:2:"},
	{HDR "P\t1\t/a\tgone\n", "t.trace:2:"},
	{HDR "P\t1\t/a\thidden\textra\n", "t.trace:2:"},
	{HDR "C\t1\t" ID1 "\n", "t.trace:2:"},
	{HDR "C\t1\t" ID1 "\t1\t2\n", "t.trace:2:"},
	{HDR "C\t1\t0123456789abcdef0123456789abcde\t1\n", "t.trace:2:"},
	{HDR "C\t1\t0123456789abcdef0123456789abcdeg\t1\n", "t.trace:2:"},
	{HDR "C\t1\t" ID1 "\tx\n", "t.trace:2:"},
	{HDR "C\t1\t" ID1 "\t4294967296\n", "t.trace:2:"},
	{HDR "P\t1\t/a\n\nP\t2\t/b\n", "t.trace:3:"},
	{HDR "P 1 /a\n", "t.trace:2:"},
};

static void test_bad_lines(void)
{
	char msg[4096];
	int r;

	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		r = parse_fails(bad_cases[i].text, strlen(bad_cases[i].text), msg, sizeof(msg));
		CHECK(r == -EINVAL || r == -EPROTONOSUPPORT);
		CHECK(strstr(msg, bad_cases[i].line) != NULL);
		if (r >= 0 || !strstr(msg, bad_cases[i].line))
			printf("# case %zu: r=%d, logged: %s\n", i, r, msg);
	}
	r = parse_fails("", 0, msg, sizeof(msg));
	CHECK_EQ(r, -EINVAL);
	r = parse_fails(HDR "P\t1\t/a\0b\n", sizeof(HDR "P\t1\t/a\0b\n") - 1, msg, sizeof(msg));
	CHECK_EQ(r, -EINVAL);
	CHECK(strstr(msg, "t.trace:2:") != NULL);
}

/* ---- merging ---- */

static bool id_is(const uint8_t *id, const char *hex)
{
	char s[33];

	slimfs_hex(id, 16, s);
	return strcmp(s, hex) == 0;
}

/* Parses traces a and b into t and merges them; NULL (checked) on failure. */
static struct slimfs_profile *merge_two(const char *a, const char *b, struct slimfs_tracefile *t[2])
{
	struct slimfs_profile *p = NULL;

	t[0] = parse(a, "a.trace");
	t[1] = parse(b, "b.trace");
	CHECK(t[0] && t[1]);
	if (!t[0] || !t[1])
		return NULL;
	CHECK_EQ(slimfs_profile_merge(t, 2, &p), 0);
	return p;
}

/* The profile's text is want; *text (malloc'd) stays for more checks. */
static void check_format(const struct slimfs_profile *p, const char *want, char **text, size_t *len,
			 struct slimfs_profile_counts *cnt)
{
	CHECK_EQ(slimfs_profile_format(p, text, len, cnt), 0);
	CHECK(*text && *len == strlen(want) && memcmp(*text, want, *len) == 0);
	if (*text && (*len != strlen(want) || memcmp(*text, want, *len) != 0))
		printf("# got:\n%.*s# want:\n%s", (int)*len, *text, want);
}

static void test_merge(void)
{
	/* two traces whose records interleave in time */
	static const char a[] = HDR "P\t10\t/usr\n"
				    "P\t11\t/usr/bin\n"
				    "P\t12\t/usr/bin/a\n"
				    "C\t13\t" ID1 "\t1\n"
				    "P\t30\t/usr/bin/c\n"
				    "C\t40\t" ID3 "\t3\n"
				    "P\t50\t/opt/d\thidden\n"
				    "P\t60\t/etc/hidden-only\thidden\n"
				    "P\t70\t/nope\tmissing\n"
				    "P\t80\t/usr/share\n"
				    "P\t81\t/usr/share/x\tmissing\n";
	static const char b[] = HDR "P\t5\t/etc\n"
				    "P\t20\t/usr/bin/b\n"
				    "P\t25\t/usr/bin/a\n"
				    "C\t15\t" ID2 "\t2\n"
				    "C\t16\t" ID1 "\t1\n"
				    "C\t3\t" ID3 "\t3\n"
				    "P\t30\t/usr/bin/tie\n"
				    "P\t35\t/opt/d\n"
				    "P\t36\t/opt\n"
				    "P\t65\t/etc/hidden-only\tmissing\n"
				    "P\t90\t/etc/leaf-dir\n";
	static const char want_text[] = "# slimfs-profile 1 (from 2 traces)\n"
					"/usr/bin/a\n"
					"/usr/bin/b\n"
					"/usr/bin/c\n"
					"/usr/bin/tie\n"
					"/opt/d\n"
					"/etc/leaf-dir\n"
					"# hidden: /etc/hidden-only\n"
					"# missing: /nope\n"
					"# missing: /usr/share/x\n"
					"#@chunk " ID3 "\n"
					"#@chunk " ID1 "\n"
					"#@chunk " ID2 "\n";
	static const char *const want_order[] = {
		"/etc",	      "/usr",	      "/usr/bin",     "/usr/bin/a",    "/usr/bin/b",
		"/usr/bin/c", "/usr/bin/tie", "/opt/d",	      "/opt",	       "/etc/hidden-only",
		"/nope",      "/usr/share",   "/usr/share/x", "/etc/leaf-dir",
	};
	struct slimfs_tracefile *t[2] = {NULL, NULL};
	struct slimfs_profile *p = merge_two(a, b, t);
	struct slimfs_profile_counts cnt;
	char *text = NULL;
	size_t len = 0;

	if (!p)
		goto out;
	CHECK_EQ(p->ntraces, 2);
	CHECK_EQ(p->npaths, ARRAY_SIZE(want_order));
	for (size_t i = 0; i < p->npaths && i < ARRAY_SIZE(want_order); i++) {
		CHECK(strcmp(p->paths[i].path, want_order[i]) == 0);
		if (strcmp(p->paths[i].path, want_order[i]) != 0)
			printf("# path %zu: '%s', want '%s'\n", i, p->paths[i].path, want_order[i]);
	}
	/* earliest time over the traces; the best state; directories implied */
	CHECK_EQ(p->paths[3].usec, 12);			 /* /usr/bin/a: 12 in a, 25 in b */
	CHECK_EQ(p->paths[7].state, SLIMFS_PATH_FOUND);	 /* /opt/d: hidden in a, found in b */
	CHECK_EQ(p->paths[9].state, SLIMFS_PATH_HIDDEN); /* hidden beats missing */
	CHECK_EQ(p->paths[10].state, SLIMFS_PATH_MISSING);
	CHECK(p->paths[0].implied && p->paths[1].implied && p->paths[2].implied);
	CHECK(p->paths[8].implied);  /* /opt, below which /opt/d was traced */
	CHECK(p->paths[11].implied); /* /usr/share: only a missing path below */
	CHECK(!p->paths[3].implied && !p->paths[13].implied);
	/* chunks: ID3 at 3 (b), ID1 at 13 (a), ID2 at 15 (b) */
	CHECK_EQ(p->nchunks, 3);
	if (p->nchunks == 3) {
		CHECK(id_is(p->chunk_ids, ID3));
		CHECK(id_is(p->chunk_ids + 16, ID1));
		CHECK(id_is(p->chunk_ids + 32, ID2));
	}

	check_format(p, want_text, &text, &len, &cnt);
	CHECK_EQ(cnt.paths, 6);
	CHECK_EQ(cnt.hidden, 1);
	CHECK_EQ(cnt.missing, 2);
	CHECK_EQ(cnt.chunks, 3);
	CHECK_EQ(cnt.implied, 5);
	if (text) {
		/* the profile is an allow-list: it loads and selects what it lists */
		struct slimfs_allowlist *al = NULL;
		uint8_t *ids = NULL;
		size_t n = 0;

		CHECK_EQ(slimfs_allowlist_new(&al), 0);
		CHECK_EQ(slimfs_allowlist_add_text(al, text, len, "profile", NULL), 0);
		CHECK_EQ(slimfs_allowlist_count(al), 6);
		CHECK(slimfs_allowlist_last_match(al, "usr/bin/tie", false, -1) == 3);
		CHECK(slimfs_allowlist_last_match(al, "usr/bin", true, -1) == -1);
		CHECK(slimfs_allowlist_last_match(al, "etc/hidden-only", false, -1) == -1);
		slimfs_allowlist_free(al);
		/* and its chunk lines read back in order */
		CHECK_EQ(slimfs_profile_parse_chunks(text, len, "profile", &ids, &n), 0);
		CHECK_EQ(n, 3);
		CHECK(n == 3 && memcmp(ids, p->chunk_ids, 48) == 0);
		free(ids);
	}
	free(text);

	/* ties across traces: the trace given first wins */
	slimfs_profile_free(p);
	p = NULL;
	slimfs_tracefile_free(t[0]);
	slimfs_tracefile_free(t[1]);
	p = merge_two(HDR "P\t7\t/y\n", HDR "P\t7\t/x\n", t);
	CHECK(p && p->npaths == 2 && strcmp(p->paths[0].path, "/y") == 0);
out:
	slimfs_profile_free(p);
	slimfs_tracefile_free(t[0]);
	slimfs_tracefile_free(t[1]);
}

/*
 * Ranges of two traces: rounded to pages (offsets down, ends up), clipped to
 * the file size, united per file when they overlap or touch, ordered by the
 * earliest read inside, written as "#@range" lines after the "#@chunk" ones.
 */
static void test_merge_ranges(void)
{
	static const char a[] = HDR2 "R\t10\t0\t4096\t10000\t/usr/lib/libx.so\n"
				     "C\t11\t" ID1 "\t1\n"
				     "R\t20\t8192\t100\t10000\t/usr/lib/libx.so\n"
				     "R\t30\t100\t50\t5000\t/etc/a\\tb\n"
				     "R\t40\t20480\t4096\t1048576\t/big\n";
	static const char b[] = HDR2 "R\t5\t4000\t200\t10000\t/usr/lib/libx.so\n"
				     "R\t35\t4096\t904\t5000\t/etc/a\\tb\n"
				     "R\t15\t16384\t4096\t1048576\t/big\n"
				     "R\t50\t40960\t1\t1048576\t/big\n"
				     "R\t12\t0\t1\t1\t/tiny\n"
				     "R\t60\t8192\t1808\t10000\t/usr/lib/libx.so\n";
	static const char want_text[] = "# slimfs-profile 1 (from 2 traces)\n"
					"#@chunk " ID1 "\n"
					"#@range\t0\t10000\t/usr/lib/libx.so\n"
					"#@range\t0\t1\t/tiny\n"
					"#@range\t16384\t8192\t/big\n"
					"#@range\t0\t5000\t/etc/a\\tb\n"
					"#@range\t40960\t4096\t/big\n";
	struct slimfs_tracefile *t[2] = {NULL, NULL};
	struct slimfs_profile *p = merge_two(a, b, t);
	struct slimfs_profile_counts cnt;
	char *text = NULL;
	size_t len = 0;

	if (!p)
		goto out;
	CHECK_EQ(p->kernel_readahead, 0);
	CHECK_EQ(p->nspans, 5);
	CHECK_EQ(p->nspan_paths, 4);
	if (p->nspans == 5) {
		CHECK_EQ(p->spans[0].usec, 5);
		CHECK_EQ(p->spans[2].usec, 15);
		CHECK_EQ(p->spans[3].usec, 30);
		CHECK(strcmp(p->spans[3].path, "/etc/a\tb") == 0);
		CHECK(p->spans[2].path == p->spans[4].path); /* one copy per file */
	}
	check_format(p, want_text, &text, &len, &cnt);
	CHECK_EQ(cnt.ranges, 5);
	CHECK_EQ(cnt.range_bytes, 10000 + 1 + 8192 + 5000 + 4096);
	CHECK_EQ(cnt.chunks, 1);
	if (text) {
		/* "#@range" lines are comments to the allow-list and the chunk reader */
		struct slimfs_allowlist *al = NULL;
		uint8_t *ids = NULL;
		char **paths = NULL;
		size_t n = 0;

		CHECK_EQ(slimfs_allowlist_new(&al), 0);
		CHECK_EQ(slimfs_allowlist_add_text(al, text, len, "profile", NULL), 0);
		CHECK_EQ(slimfs_allowlist_count(al), 0);
		slimfs_allowlist_free(al);
		CHECK_EQ(slimfs_profile_parse_chunks(text, len, "profile", &ids, &n), 0);
		CHECK_EQ(n, 1);
		free(ids);
		CHECK_EQ(slimfs_profile_parse_paths(text, len, &paths, &n), 0);
		CHECK_EQ(n, 0);
		slimfs_profile_paths_free(paths, n);
	}
	free(text);
	slimfs_profile_free(p);
	p = NULL;

	/* a version 1 trace adds no range; read-ahead settings that differ are "mixed" */
	slimfs_tracefile_free(t[0]);
	slimfs_tracefile_free(t[1]);
	p = merge_two(HDR "P\t1\t/x\n", HDR2 "R\t1\t4095\t2\t8193\t/x\n", t);
	CHECK(p && p->kernel_readahead == -2 && p->nspans == 1);
	CHECK(p && p->nspans == 1 && p->spans[0].off == 0 && p->spans[0].len == 8192);
out:
	slimfs_profile_free(p);
	slimfs_tracefile_free(t[0]);
	slimfs_tracefile_free(t[1]);
}

/* ---- escaping through the allow-list matcher ---- */

static const char *const nasty[] = {
	"/usr/bin/python3",
	"/a b",
	"/trailing ",
	"/trailing  ",
	"/tab\t",
	"/tab\tin",
	"/cr\r",
	"/cr\rin",
	"/star*",
	"/*",
	"/**",
	"/a/**/b",
	"/q?",
	"/[abc]",
	"/[",
	"/]",
	"/[!a]",
	"/back\\slash",
	"/back\\",
	"/\\ ",
	"/a\\*",
	"/#hash",
	"/dir/#x",
	"/@at",
	"/dir/@include",
	"/!bang",
	"/dir/!x",
	"/new\nline",
	"/\n",
	"/x/\n\n",
	"/nl-end\n",
	"/non-utf8-\xff\xfe",
	"/\x80\xc3(",
	"/ lead",
	"/dir/ *",
	"/ctl\x01\x1f\x7f",
	"/{a,b}",
	"/long/deep/path/with many/ spaces / x",
	"/-",
	"/^x",
};

static const unsigned char mutant_bytes[] = {'a',  'x', '*', '?', '[',	']',  '\\', '\n', ' ',
					     '\t', '/', '#', '!', 0x01, 0x09, 0x0b, 0x7f, 0xff};

static long match(const struct slimfs_allowlist *al, const char *abs, bool is_dir)
{
	return slimfs_allowlist_last_match(al, abs + 1, is_dir, -1);
}

/* Does the pattern of path match path, and no near miss? Mismatches counted. */
static unsigned check_exact(const struct slimfs_allowlist *al, const char *path)
{
	size_t len = strlen(path);
	char buf[512];
	unsigned bad = 0;

	if (match(al, path, false) != 0 || match(al, path, true) != 0)
		bad++;
	for (size_t i = 1; i <= len && len + 2 < sizeof(buf); i++) {
		for (size_t k = 0; k < sizeof(mutant_bytes); k++) {
			char c = (char)mutant_bytes[k];

			/* replace byte i */
			if (i < len && path[i] != c) {
				memcpy(buf, path, len + 1);
				buf[i] = c;
				if (match(al, buf, false) >= 0) {
					printf("# '%s' matched by the pattern of a neighbour\n",
					       buf);
					bad++;
				}
			}
			/* insert before byte i ("x/" is x itself, not a near miss) */
			if (i == len && c == '/')
				continue;
			memcpy(buf, path, i);
			buf[i] = c;
			memcpy(buf + i + 1, path + i, len - i + 1);
			if (match(al, buf, false) >= 0) {
				printf("# inserted '%s' matched\n", buf);
				bad++;
			}
		}
		/* delete byte i */
		if (i < len) {
			memcpy(buf, path, i);
			memcpy(buf + i, path + i + 1, len - i);
			if (buf[1] && match(al, buf, false) >= 0) {
				printf("# deleted '%s' matched\n", buf);
				bad++;
			}
		}
	}
	return bad;
}

static void test_escape(void)
{
	struct slimfs_profile p = {0};
	struct slimfs_profile_path pp[ARRAY_SIZE(nasty)];
	char *text = NULL;
	size_t len = 0;

	for (size_t i = 0; i < ARRAY_SIZE(nasty); i++) {
		char *pat = slimfs_profile_escape(nasty[i]);
		struct slimfs_allowlist *al = NULL;
		unsigned bad;

		CHECK(pat != NULL);
		if (!pat)
			continue;
		/* one line: no raw newline, and the parser takes it as one rule */
		CHECK(strchr(pat, '\n') == NULL);
		CHECK(pat[0] == '/');
		CHECK(slimfs_allowlist_new(&al) == 0);
		CHECK(slimfs_allowlist_add_text(al, pat, strlen(pat), "escape", NULL) == 0);
		CHECK_EQ(slimfs_allowlist_count(al), 1);
		CHECK(!slimfs_allowlist_negated(al, 0));
		bad = check_exact(al, nasty[i]);
		CHECK_EQ(bad, 0);
		if (bad)
			printf("# path %zu, pattern '%s'\n", i, pat);
		/* the one-pattern matcher agrees */
		CHECK_EQ(slimfs_glob_match(pat, nasty[i], false), 1);
		slimfs_allowlist_free(al);
		free(pat);
		pp[i] = (struct slimfs_profile_path){(char *)nasty[i], i, SLIMFS_PATH_FOUND, false};
	}
	/* a whole profile of them: each line is the rule of its own path */
	p.ntraces = 1;
	p.paths = pp;
	p.npaths = ARRAY_SIZE(nasty);
	CHECK_EQ(slimfs_profile_format(&p, &text, &len, NULL), 0);
	if (text) {
		struct slimfs_allowlist *al = NULL;

		CHECK(slimfs_allowlist_new(&al) == 0);
		CHECK(slimfs_allowlist_add_text(al, text, len, "profile", NULL) == 0);
		CHECK_EQ(slimfs_allowlist_count(al), ARRAY_SIZE(nasty));
		for (size_t i = 0; i < ARRAY_SIZE(nasty); i++) {
			long m = match(al, nasty[i], false);

			CHECK_EQ(m, (long)i);
		}
		slimfs_allowlist_free(al);
		free(text);
	}
	/* hidden and missing paths become comments, whatever their bytes */
	for (size_t i = 0; i < ARRAY_SIZE(nasty); i++)
		pp[i].state = i % 2 ? SLIMFS_PATH_HIDDEN : SLIMFS_PATH_MISSING;
	text = NULL;
	CHECK_EQ(slimfs_profile_format(&p, &text, &len, NULL), 0);
	if (text) {
		struct slimfs_allowlist *al = NULL;

		CHECK(slimfs_allowlist_new(&al) == 0);
		CHECK(slimfs_allowlist_add_text(al, text, len, "profile", NULL) == 0);
		CHECK_EQ(slimfs_allowlist_count(al), 0);
		slimfs_allowlist_free(al);
		free(text);
	}
	/* a path whose pattern the parser would refuse (> 4096 bytes) is a comment */
	{
		char longp[3000];
		struct slimfs_profile_path lp = {longp, 0, SLIMFS_PATH_FOUND, false};
		struct slimfs_profile_counts cnt;
		struct slimfs_allowlist *al = NULL;

		longp[0] = '/';
		memset(longp + 1, '*', sizeof(longp) - 2);
		longp[sizeof(longp) - 1] = '\0';
		p.paths = &lp;
		p.npaths = 1;
		text = NULL;
		CHECK_EQ(slimfs_profile_format(&p, &text, &len, &cnt), 0);
		CHECK_EQ(cnt.too_long, 1);
		CHECK_EQ(cnt.paths, 0);
		CHECK(slimfs_allowlist_new(&al) == 0);
		CHECK(text && slimfs_allowlist_add_text(al, text, len, "profile", NULL) == 0);
		slimfs_allowlist_free(al);
		free(text);
	}
}

/* ---- #@chunk lines, atomic writes ---- */

static void test_chunks_and_files(void)
{
	static const char text[] = "# slimfs-profile 1 (from 1 trace)\n"
				   "/usr/bin/x\n"
				   "#@chunk " ID2 "\n"
				   "#@chunks are ignored\n"
				   "#@chunk\t" ID1 " \r\n"
				   "#@chunk " ID2 "\n"
				   "#@other " ID3 "\n"
				   "  #@chunk " ID3 "\n"
				   "#@chunk FEDCBA9876543210FEDCBA987654321F";
	char dir[] = "/tmp/test-profile.XXXXXX", path[256];
	uint8_t *ids = NULL;
	size_t n = 0;
	DIR *d;
	struct dirent *de;
	int entries = 0;

	CHECK_EQ(slimfs_profile_parse_chunks(text, strlen(text), "p", &ids, &n), 0);
	CHECK_EQ(n, 3); /* ID2 once, ID1, the uppercase one */
	if (n == 3) {
		CHECK(id_is(ids, ID2));
		CHECK(id_is(ids + 16, ID1));
		CHECK(id_is(ids + 32, "fedcba9876543210fedcba987654321f"));
	}
	free(ids);
	ids = NULL;
	CHECK_EQ(slimfs_profile_parse_chunks("#@chunk 12\n", 11, "p", &ids, &n), -EINVAL);
	CHECK_EQ(slimfs_profile_parse_chunks("#@chunk\n", 8, "p", &ids, &n), -EINVAL);
	CHECK_EQ(slimfs_profile_parse_chunks("/a\n", 3, "p", &ids, &n), 0);
	CHECK(n == 0 && ids == NULL);

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/p.profile", dir);
	CHECK_EQ(slimfs_write_file_atomic(path, "old\n", 4), 0);
	CHECK_EQ(slimfs_write_file_atomic(path, text, strlen(text)), 0);
	CHECK_EQ(slimfs_profile_read_chunks(path, &ids, &n), 0);
	CHECK_EQ(n, 3);
	free(ids);
	d = opendir(dir);
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			entries++;
	if (d)
		closedir(d);
	CHECK_EQ(entries, 1); /* no temporary file left */
	snprintf(path, sizeof(path), "%s/no/such/dir/p", dir);
	CHECK(slimfs_write_file_atomic(path, "x", 1) < 0);
	snprintf(path, sizeof(path), "%s/p.profile", dir);
	unlink(path);
	rmdir(dir);
}

/* ---- build --profile ---- */

static void chunk_id_hex(const void *data, size_t len, char out[33])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	slimfs_hex(c.digest, 16, out);
}

static void test_build(void)
{
	char dir[] = "/tmp/test-profile-build.XXXXXX", path[512], hex[3][33];
	static uint8_t data[3][24 << 10];
	struct slimfs_build_opts o;
	struct slimfs_index *idx = NULL;
	const char *src[1];
	char *prof_text = NULL;
	int fd = -1, r;
	uint64_t x = 99;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/src", dir);
	CHECK(mkdir(path, 0755) == 0);
	/* three files larger than small_file_max, smaller than a chunk: one chunk each */
	for (int f = 0; f < 3; f++) {
		for (size_t i = 0; i < sizeof(data[f]); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			data[f][i] = (uint8_t)(x >> 32);
		}
		snprintf(path, sizeof(path), "%s/src/f%d", dir, f);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK(fd >= 0 && write(fd, data[f], sizeof(data[f])) == (ssize_t)sizeof(data[f]));
		close(fd);
		chunk_id_hex(data[f], sizeof(data[f]), hex[f]);
	}
	/* f2 then f0 first, plus an id this image does not have */
	if (asprintf(&prof_text,
		     "# slimfs-profile 1 (from 1 trace)\n/f2\n/f0\n#@chunk %s\n#@chunk %s\n"
		     "#@chunk " ID3 "\n",
		     hex[2], hex[0]) < 0)
		prof_text = NULL;
	snprintf(path, sizeof(path), "%s/p.profile", dir);
	CHECK(prof_text && slimfs_write_file_atomic(path, prof_text, strlen(prof_text)) == 0);
	free(prof_text);

	slimfs_build_opts_init(&o);
	o.threads = 1;
	o.small_file_max = 16 << 10; /* the 24 KiB files are chunks of their own */
	o.profile = path;
	o.views[0].name = "minimal";
	o.views[0].allow_file = path; /* the profile is the allow-list too */
	o.nviews = 1;
	o.entrypoint = NULL;
	snprintf(path, sizeof(path), "%s/src", dir);
	src[0] = path;
	fd = memfd_create("image", MFD_CLOEXEC);
	CHECK(fd >= 0);
	{
		char pbuf[512];

		snprintf(pbuf, sizeof(pbuf), "%s/p.profile", dir);
		o.profile = pbuf;
		o.views[0].allow_file = pbuf;
		r = slimfs_build(&o, src, 1, fd, NULL);
	}
	CHECK_EQ(r, 0);
	if (r == 0) {
		struct stat st;
		void *m = NULL;

		CHECK(fstat(fd, &st) == 0);
		m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		CHECK(m != MAP_FAILED);
		if (m != MAP_FAILED && slimfs_index_open_mem(m, (size_t)st.st_size, &idx) == 0) {
			const struct slimfs_info *in = slimfs_index_info(idx);
			struct slimfs_chunk c0, c1;
			uint32_t p0 = 9, p1 = 9, ino, view;
			struct slimfs_inode inode;

			CHECK_EQ(in->prefetch_count, 2);
			CHECK(slimfs_index_chunk(idx, 0, &c0) == 0 && id_is(c0.id, hex[2]));
			CHECK(slimfs_index_chunk(idx, 1, &c1) == 0 && id_is(c1.id, hex[0]));
			CHECK(slimfs_index_prefetch(idx, 0, &p0) == 0 && p0 == 0);
			CHECK(slimfs_index_prefetch(idx, 1, &p1) == 0 && p1 == 1);
			/* the view from the same file: f0 and f2, not f1 */
			CHECK(slimfs_index_view_find(idx, "minimal", &view) == 0);
			CHECK(slimfs_index_resolve(idx, "/f1", &ino) == 0 &&
			      slimfs_index_inode(idx, ino, &inode) == 0 &&
			      !slimfs_inode_in_view(&inode, view));
			CHECK(slimfs_index_resolve(idx, "/f2", &ino) == 0 &&
			      slimfs_index_inode(idx, ino, &inode) == 0 &&
			      slimfs_inode_in_view(&inode, view));
			slimfs_index_free(idx);
		} else {
			CHECK(!"image opens");
		}
		if (m != MAP_FAILED)
			munmap(m, (size_t)st.st_size);
	}
	if (fd >= 0)
		close(fd);
	for (int f = 0; f < 3; f++) {
		snprintf(path, sizeof(path), "%s/src/f%d", dir, f);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/src", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/p.profile", dir);
	unlink(path);
	rmdir(dir);
}

/* "#@range" lines: fields, escapes, order and repeats kept, bad lines refused. */
static void test_ranges(void)
{
	static const char text[] = "# slimfs-profile 1\n"
				   "/usr/bin/x\n"
				   "#@chunk " ID1 "\n"
				   "#@range\t8192\t4096\t/usr/bin/x\n"
				   "#@ranges\tare\tignored\n"
				   "#@range\t0\t123\t/a\\tb\\x20c\\\\d\r\n"
				   "  #@range\t0\t1\t/indented is no range line\n"
				   "#@range\t0\t4096\t/usr/bin/x";
	static const char *const bad[] = {
		"#@range\n",
		"#@range 0\t1\t/a\n",
		"#@range\t0\t1\n",
		"#@range\t-1\t1\t/a\n",
		"#@range\t0\t1x\t/a\n",
		"#@range\t0\t\t/a\n",
		"#@range\t18446744073709551615\t2\t/a\n",
		"#@range\t0\t1\trelative\n",
		"#@range\t0\t1\t/a\\q\n",
		"#@range\t0\t1\t/a\tb\n",
	};
	static const char none[] = "/a\n#@chunk " ID1 "\n";
	struct slimfs_profile_range *v = NULL;
	size_t n = 0;

	CHECK_EQ(slimfs_profile_parse_ranges(text, strlen(text), "p", &v, &n), 0);
	CHECK_EQ(n, 3);
	if (n == 3) {
		CHECK(!strcmp(v[0].path, "/usr/bin/x") && v[0].off == 8192 && v[0].len == 4096);
		CHECK(!strcmp(v[1].path, "/a\tb c\\d") && v[1].off == 0 && v[1].len == 123);
		CHECK(!strcmp(v[2].path, "/usr/bin/x") && v[2].off == 0 && v[2].len == 4096);
	}
	slimfs_profile_ranges_free(v, n);
	v = NULL;
	CHECK_EQ(slimfs_profile_parse_ranges(none, strlen(none), "p", &v, &n), 0);
	CHECK(n == 0 && v == NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		n = 7;
		CHECK_EQ(slimfs_profile_parse_ranges(bad[i], strlen(bad[i]), "p", &v, &n), -EINVAL);
		CHECK_EQ(n, 7); /* untouched */
	}
	/* the range lines do not disturb the chunk parser, and back */
	{
		uint8_t *ids = NULL;

		CHECK_EQ(slimfs_profile_parse_chunks(text, strlen(text), "p", &ids, &n), 0);
		CHECK(n == 1 && id_is(ids, ID1));
		free(ids);
	}
}

int main(void)
{
	test_parse();
	test_parse_v2();
	test_trace_escape();
	test_bad_lines();
	test_merge();
	test_merge_ranges();
	test_escape();
	test_chunks_and_files();
	test_ranges();
	test_build();
	return tap_done();
}
