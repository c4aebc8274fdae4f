// SPDX-License-Identifier: MIT
/*
 * Traces (from `slimfs mount --trace`) and profiles (`slimfs profile`,
 * `build --profile`): parsing, merging by time of first access, escaping
 * paths into allow-list patterns, the "#@chunk" prefetch order, and the
 * "#@range" lines (the traces' read ranges, page-aligned, united per file).
 *
 * A profile is an allow-list, so a path line must select exactly that path.
 * The allow-list syntax (allowlist.h) escapes any byte with a backslash,
 * except a newline, which ends the line: a name holding one is written with
 * the class "[!\x01-\x09\x0b-\xff]", which matches no byte but the newline
 * (names hold no NUL). A directory line would select its whole subtree, so a
 * directory below which the workload touched something is left out: the
 * view brings the ancestors of what it shows anyway.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "profile.h"
#include "slimfs/util.h"

#define TRACE_FILE_MAX	 (1ull << 30)
#define PROFILE_FILE_MAX (256ull << 20)
/* Longest pattern the allow-list parser takes (allowlist.c: PATTERN_MAX). */
#define PATTERN_MAX 4096

/* ---- small helpers ---- */

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_add(struct buf *b, const void *data, size_t n)
{
	if (n > b->cap - b->len) {
		size_t cap = MAX(b->cap * 2, b->len + n + 256);
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

/* Exactly 32 hex digits in s[0, len) into id. */
static bool parse_id(const char *s, size_t len, uint8_t id[SLIMFS_CHUNK_ID_LEN])
{
	return len == 2 * SLIMFS_CHUNK_ID_LEN && slimfs_unhex(s, SLIMFS_CHUNK_ID_LEN, id) == 0;
}

/* A decimal number in s[0, len), no sign, no blanks. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (!len || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool field_is(const char *f, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(f, s, len) == 0;
}

static int read_file(const char *path, const char *what, uint64_t max, char **out, size_t *len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return log_error_errno(-errno, "cannot open %s '%s'", what, path);
	if (fstat(fd, &st) < 0)
		return log_error_errno(-errno, "cannot stat %s '%s'", what, path);
	if (!S_ISREG(st.st_mode)) {
		log_error("%s '%s' is not a regular file", what, path);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size > max) {
		log_error("%s '%s' is larger than %llu MiB", what, path,
			  (unsigned long long)(max >> 20));
		return -EFBIG;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	if (st.st_size) {
		r = slimfs_pread_all(fd, buf, (size_t)st.st_size, 0);
		if (r < 0)
			return log_error_errno(r, "cannot read %s '%s'", what, path);
	}
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	*out = steal_ptr(&buf);
	return 0;
}

/* ---- traces ---- */

int slimfs_tracefile_unescape(const char *s, size_t len, char **out, const char **why)
{
	_cleanup_free_ char *p = malloc(len + 1);
	size_t n = 0;

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (c < 0x20 || c == 0x7f) {
			*why = "unescaped control byte in the path";
			return -EINVAL;
		}
		if (c != '\\') {
			p[n++] = (char)c;
			continue;
		}
		if (++i == len) {
			*why = "backslash at the end of the path";
			return -EINVAL;
		}
		switch (s[i]) {
		case '\\':
			c = '\\';
			break;
		case 't':
			c = '\t';
			break;
		case 'n':
			c = '\n';
			break;
		case 'x':
			if (len - i < 3 || (hi = slimfs_hexval((unsigned char)s[i + 1])) < 0 ||
			    (lo = slimfs_hexval((unsigned char)s[i + 2])) < 0) {
				*why = "'\\x' needs two hex digits";
				return -EINVAL;
			}
			c = (unsigned char)(hi << 4 | lo);
			if (!c) {
				*why = "NUL byte in the path";
				return -EINVAL;
			}
			i += 2;
			break;
		default:
			*why = "unknown escape in the path (\\\\, \\t, \\n, \\xHH)";
			return -EINVAL;
		}
		p[n++] = (char)c;
	}
	p[n] = '\0';
	*out = steal_ptr(&p);
	return 0;
}

char *slimfs_tracefile_escape(const char *s)
{
	struct buf b = {0};

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[5];
		int r;

		if (c == '\\')
			r = buf_add(&b, "\\\\", 2);
		else if (c == '\t')
			r = buf_add(&b, "\\t", 2);
		else if (c == '\n')
			r = buf_add(&b, "\\n", 2);
		else if (c < 0x20 || c == 0x7f)
			r = buf_add(&b, esc, (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c));
		else
			r = buf_add(&b, &c, 1);
		if (r < 0)
			goto oom;
	}
	if (buf_add(&b, "", 1) < 0)
		goto oom;
	return b.p;
oom:
	free(b.p);
	return NULL;
}

/* Absolute, no empty, "." or ".." component, no trailing '/' (but "/"). */
static const char *check_canonical(const char *p)
{
	if (p[0] != '/')
		return "path is not absolute";
	if (!p[1])
		return NULL;
	for (const char *c = p + 1;;) {
		const char *e = strchrnul(c, '/');
		size_t n = (size_t)(e - c);

		if (n == 0)
			return "empty path component ('//' or a trailing '/')";
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return "'.' or '..' in the path";
		if (!*e)
			return NULL;
		c = e + 1;
	}
}

void slimfs_tracefile_free(struct slimfs_tracefile *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->npaths; i++)
		free(t->paths[i].path);
	free(t->paths);
	free(t->chunks);
	for (size_t i = 0; i < t->nreads; i++)
		free(t->reads[i].path);
	free(t->reads);
	free(t->view);
	free(t->origin);
	free(t);
}

/* Splits a line at TABs: the number of fields, max + 1 when there are more. */
static unsigned split_tabs(const char *s, size_t len, const char **f, size_t *flen, unsigned max)
{
	unsigned n = 0;

	for (;;) {
		const char *e = memchr(s, '\t', len);
		size_t k = e ? (size_t)(e - s) : len;

		if (n == max)
			return max + 1;
		f[n] = s;
		flen[n++] = k;
		if (!e)
			return n;
		s = e + 1;
		len -= k + 1;
	}
}

static int parse_header(struct slimfs_tracefile *t, const char *s, size_t len)
{
	static const char magic[] = "# slimfs-trace ";
	const char *f[16];
	size_t fl[16];
	unsigned n = split_tabs(s, len, f, fl, 16);
	uint64_t version;

	if (fl[0] < sizeof(magic) - 1 || memcmp(f[0], magic, sizeof(magic) - 1) != 0) {
		log_error(
			"%s:1: not a slimfs trace (the first line is not '# slimfs-trace %d ...')",
			t->origin, SLIMFS_TRACE_VERSION);
		return -EINVAL;
	}
	if (!parse_u64(f[0] + sizeof(magic) - 1, fl[0] - (sizeof(magic) - 1), &version)) {
		log_error("%s:1: bad trace version '%.*s'", t->origin, (int)fl[0], f[0]);
		return -EINVAL;
	}
	if (version < 1 || version > SLIMFS_TRACE_VERSION) {
		log_error("%s:1: trace format version %llu is not supported (this slimfs reads "
			  "1 to %d)",
			  t->origin, (unsigned long long)version, SLIMFS_TRACE_VERSION);
		return -EPROTONOSUPPORT;
	}
	t->version = (unsigned)version;
	for (unsigned i = 1; i < MIN(n, 16u); i++) {
		if (fl[i] > 6 && memcmp(f[i], "image=", 6) == 0) {
			_cleanup_free_ char *d = strndup(f[i] + 6, fl[i] - 6);

			if (!d)
				return -ENOMEM;
			if (slimfs_parse_digest(d, t->image) < 0) {
				log_error("%s:1: bad image digest '%s' (sha256:<64 hex>)",
					  t->origin, d);
				return -EINVAL;
			}
			t->has_image = true;
		} else if (fl[i] >= 17 && memcmp(f[i], "kernel_readahead=", 17) == 0) {
			uint64_t ra;

			if (field_is(f[i] + 17, fl[i] - 17, "default")) {
				t->kernel_readahead = -1;
			} else if (parse_u64(f[i] + 17, fl[i] - 17, &ra) && ra <= INT64_MAX) {
				t->kernel_readahead = (int64_t)ra;
			} else {
				log_error("%s:1: bad kernel_readahead '%.*s' (bytes or 'default')",
					  t->origin, (int)MIN(fl[i] - 17, 64u), f[i] + 17);
				return -EINVAL;
			}
		} else if (fl[i] > 5 && memcmp(f[i], "view=", 5) == 0) {
			free(t->view);
			t->view = strndup(f[i] + 5, fl[i] - 5);
			if (!t->view)
				return -ENOMEM;
		}
		/* other keys: later versions of the header, ignored */
	}
	return 0;
}

static int add_path(struct slimfs_tracefile *t, size_t *cap, char *path, uint64_t usec,
		    enum slimfs_path_state state)
{
	if (SLIMFS_GROW(t->paths, *cap, t->npaths + 1, 256) < 0)
		return -ENOMEM;
	t->paths[t->npaths++] = (struct slimfs_tracefile_path){path, usec, state};
	return 0;
}

static int add_chunk(struct slimfs_tracefile *t, size_t *cap,
		     const struct slimfs_tracefile_chunk *c)
{
	if (SLIMFS_GROW(t->chunks, *cap, t->nchunks + 1, 256) < 0)
		return -ENOMEM;
	t->chunks[t->nchunks++] = *c;
	return 0;
}

static int add_read(struct slimfs_tracefile *t, size_t *cap, const struct slimfs_tracefile_read *r)
{
	if (SLIMFS_GROW(t->reads, *cap, t->nreads + 1, 256) < 0)
		return -ENOMEM;
	t->reads[t->nreads++] = *r;
	return 0;
}

/* A path field: unescaped and canonical into *out, or -EINVAL (logged). */
static int parse_path_field(struct slimfs_tracefile *t, const char *s, size_t len, unsigned line,
			    char **out)
{
	const char *why = NULL;
	char *path = NULL;
	int r;

	r = slimfs_tracefile_unescape(s, len, &path, &why);
	if (r == -EINVAL || (r == 0 && (why = check_canonical(path)))) {
		free(path);
		log_error("%s:%u: %s", t->origin, line, why);
		return -EINVAL;
	}
	if (r < 0)
		return r;
	*out = path;
	return 0;
}

/* "R<TAB>usec<TAB>offset<TAB>length<TAB>size<TAB>path" (version 2). */
static int parse_read(struct slimfs_tracefile *t, const char **f, const size_t *fl, unsigned n,
		      unsigned line, size_t *rcap)
{
	static const char *const what[] = {NULL, "time", "offset", "length", "file size"};
	uint64_t v[5];
	struct slimfs_tracefile_read rd;
	int r;

	if (t->version < 2) {
		log_error("%s:%u: an 'R' record in a version 1 trace", t->origin, line);
		return -EINVAL;
	}
	if (n != 6) {
		log_error("%s:%u: an 'R' record has 6 TAB-separated fields", t->origin, line);
		return -EINVAL;
	}
	for (unsigned i = 1; i < 5; i++) {
		if (!parse_u64(f[i], fl[i], &v[i])) {
			log_error("%s:%u: bad %s '%.*s' (a decimal number)", t->origin, line,
				  what[i], (int)MIN(fl[i], 64u), f[i]);
			return -EINVAL;
		}
	}
	if (!v[3] || v[2] > v[4] || v[3] > v[4] - v[2]) {
		log_error("%s:%u: range %" PRIu64 "+%" PRIu64 " is empty or not inside the "
			  "file's %" PRIu64 " bytes",
			  t->origin, line, v[2], v[3], v[4]);
		return -EINVAL;
	}
	rd = (struct slimfs_tracefile_read){NULL, v[1], v[2], v[3], v[4]};
	r = parse_path_field(t, f[5], fl[5], line, &rd.path);
	if (r < 0)
		return r;
	r = add_read(t, rcap, &rd);
	if (r < 0)
		free(rd.path);
	return r;
}

/* One record line (not the header, not a comment). */
static int parse_record(struct slimfs_tracefile *t, const char *s, size_t len, unsigned line,
			size_t *pcap, size_t *ccap, size_t *rcap)
{
	const char *f[7];
	size_t fl[7];
	unsigned n = split_tabs(s, len, f, fl, 6);
	uint64_t usec;

	if (field_is(f[0], fl[0], "P")) {
		enum slimfs_path_state state = SLIMFS_PATH_FOUND;
		char *path = NULL;
		int r;

		if (n < 3 || n > 4) {
			log_error("%s:%u: a 'P' record has 3 or 4 TAB-separated fields, not %s",
				  t->origin, line,
				  n > 4	   ? "more"
				  : n == 2 ? "2"
					   : "1");
			return -EINVAL;
		}
		if (!parse_u64(f[1], fl[1], &usec)) {
			log_error("%s:%u: bad time '%.*s' (microseconds)", t->origin, line,
				  (int)MIN(fl[1], 64u), f[1]);
			return -EINVAL;
		}
		if (n == 4) {
			if (field_is(f[3], fl[3], "hidden")) {
				state = SLIMFS_PATH_HIDDEN;
			} else if (field_is(f[3], fl[3], "missing")) {
				state = SLIMFS_PATH_MISSING;
			} else {
				log_error("%s:%u: unknown path state '%.*s' (hidden, missing)",
					  t->origin, line, (int)MIN(fl[3], 64u), f[3]);
				return -EINVAL;
			}
		}
		r = parse_path_field(t, f[2], fl[2], line, &path);
		if (r < 0)
			return r;
		r = add_path(t, pcap, path, usec, state);
		if (r < 0)
			free(path);
		return r;
	}
	if (field_is(f[0], fl[0], "C")) {
		struct slimfs_tracefile_chunk c;

		if (n != 4) {
			log_error("%s:%u: a 'C' record has 4 TAB-separated fields", t->origin,
				  line);
			return -EINVAL;
		}
		if (!parse_u64(f[1], fl[1], &c.usec)) {
			log_error("%s:%u: bad time '%.*s' (microseconds)", t->origin, line,
				  (int)MIN(fl[1], 64u), f[1]);
			return -EINVAL;
		}
		if (!parse_id(f[2], fl[2], c.id)) {
			log_error("%s:%u: bad chunk id '%.*s' (32 hex digits)", t->origin, line,
				  (int)MIN(fl[2], 64u), f[2]);
			return -EINVAL;
		}
		if (!parse_u64(f[3], fl[3], &c.index) || c.index > UINT32_MAX) {
			log_error("%s:%u: bad chunk index '%.*s'", t->origin, line,
				  (int)MIN(fl[3], 64u), f[3]);
			return -EINVAL;
		}
		return add_chunk(t, ccap, &c);
	}
	if (field_is(f[0], fl[0], "R"))
		return parse_read(t, f, fl, n, line, rcap);
	if (!len)
		log_error("%s:%u: empty line", t->origin, line);
	else
		log_error("%s:%u: unknown record type '%.*s' (P, C, R)", t->origin, line,
			  (int)MIN(fl[0], 16u), f[0]);
	return -EINVAL;
}

int slimfs_tracefile_parse(const char *buf, size_t len, const char *origin,
			   struct slimfs_tracefile **out)
{
	struct slimfs_tracefile *t = calloc(1, sizeof(*t));
	size_t pcap = 0, ccap = 0, rcap = 0, i = 0;
	unsigned line = 0;
	int r = 0;

	if (!t)
		return -ENOMEM;
	t->kernel_readahead = -1;
	t->origin = strdup(origin);
	if (!t->origin) {
		r = -ENOMEM;
		goto fail;
	}
	if (!len) {
		log_error("%s: empty file, not a slimfs trace", origin);
		r = -EINVAL;
		goto fail;
	}
	while (i < len) {
		const char *s = buf + i, *e = memchr(s, '\n', len - i);
		size_t n = e ? (size_t)(e - s) : len - i;

		line++;
		i += n + 1;
		if (memchr(s, '\0', n)) {
			log_error("%s:%u: NUL byte (not a text file?)", origin, line);
			r = -EINVAL;
			goto fail;
		}
		if (line == 1) {
			r = parse_header(t, s, n);
			if (r < 0)
				goto fail;
			continue;
		}
		if (!e) {
			/* a writer killed mid-line: what is there may be cut short */
			log_warn("%s:%u: unterminated last line dropped (was the tracer killed?)",
				 origin, line);
			t->truncated = true;
			break;
		}
		if (n && s[0] == '#')
			continue; /* comments: notes of later versions */
		r = parse_record(t, s, n, line, &pcap, &ccap, &rcap);
		if (r < 0)
			goto fail;
	}
	*out = t;
	return 0;
fail:
	slimfs_tracefile_free(t);
	return r;
}

int slimfs_tracefile_load(const char *path, struct slimfs_tracefile **out)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_file(path, "trace", TRACE_FILE_MAX, &buf, &len);
	if (r < 0)
		return r;
	return slimfs_tracefile_parse(buf, len, path, out);
}

/* ---- merging ---- */

struct mrec {
	const void *key; /* path, or 16-byte id */
	uint64_t usec;
	size_t trace, seq;
	enum slimfs_path_state state;
};

static int cmp_time(const struct mrec *a, const struct mrec *b)
{
	if (a->usec != b->usec)
		return a->usec < b->usec ? -1 : 1;
	if (a->trace != b->trace)
		return a->trace < b->trace ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

static int cmp_path_rec(const void *x, const void *y)
{
	const struct mrec *a = x, *b = y;
	int c = strcmp(a->key, b->key);

	return c ? c : cmp_time(a, b);
}

static int cmp_id_rec(const void *x, const void *y)
{
	const struct mrec *a = x, *b = y;
	int c = memcmp(a->key, b->key, SLIMFS_CHUNK_ID_LEN);

	return c ? c : cmp_time(a, b);
}

static int cmp_time_rec(const void *x, const void *y)
{
	return cmp_time(x, y);
}

/* Sorts by key then time, keeps the earliest of each key (best state); returns the count. */
static size_t dedup(struct mrec *r, size_t n, int (*cmp)(const void *, const void *), bool paths)
{
	size_t m = 0;

	qsort(r, n, sizeof(*r), cmp);
	for (size_t i = 0; i < n; i++) {
		bool same = m && (paths ? strcmp(r[m - 1].key, r[i].key) == 0
					: memcmp(r[m - 1].key, r[i].key, SLIMFS_CHUNK_ID_LEN) == 0);

		if (same) {
			r[m - 1].state = MIN(r[m - 1].state, r[i].state);
			continue;
		}
		r[m++] = r[i];
	}
	qsort(r, m, sizeof(*r), cmp_time_rec);
	return m;
}

void slimfs_profile_free(struct slimfs_profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->npaths; i++)
		free(p->paths[i].path);
	free(p->paths);
	free(p->chunk_ids);
	free(p->spans);
	for (size_t i = 0; i < p->nspan_paths; i++)
		free(p->span_paths[i]);
	free(p->span_paths);
	free(p);
}

/* A read range, page-aligned, while merging. */
struct rrec {
	const char *path;
	uint64_t off, end;
	struct mrec t; /* time, trace and record: first access */
};

static int cmp_rrec_place(const void *x, const void *y)
{
	const struct rrec *a = x, *b = y;
	int c = strcmp(a->path, b->path);

	if (c)
		return c;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return cmp_time(&a->t, &b->t);
}

static int cmp_rrec_time(const void *x, const void *y)
{
	return cmp_time(&((const struct rrec *)x)->t, &((const struct rrec *)y)->t);
}

/* Unites the traces' read ranges per file into p->spans. */
static int merge_spans(struct slimfs_profile *p, struct slimfs_tracefile *const *traces, size_t n)
{
	_cleanup_free_ struct rrec *v = NULL;
	size_t nr = 0, m = 0, npaths = 0;

	for (size_t t = 0; t < n; t++)
		nr += traces[t]->nreads;
	v = calloc(nr ? nr : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	nr = 0;
	for (size_t t = 0; t < n; t++) {
		for (size_t i = 0; i < traces[t]->nreads; i++) {
			const struct slimfs_tracefile_read *r = &traces[t]->reads[i];
			const uint64_t pg = SLIMFS_PROFILE_PAGE;
			uint64_t end = r->off + r->len; /* <= size: checked by the parser */

			end = end > r->size - r->size % pg ? r->size : (end + pg - 1) / pg * pg;
			v[nr++] = (struct rrec){r->path,
						r->off / pg * pg,
						end,
						{NULL, r->usec, t, i, SLIMFS_PATH_FOUND}};
		}
	}
	qsort(v, nr, sizeof(*v), cmp_rrec_place);
	/* One pass: a range that overlaps or touches the previous span joins it. */
	for (size_t i = 0; i < nr; i++) {
		struct rrec *last = m ? &v[m - 1] : NULL;

		if (last && strcmp(last->path, v[i].path) == 0 && v[i].off <= last->end) {
			last->end = MAX(last->end, v[i].end);
			if (cmp_time(&v[i].t, &last->t) < 0)
				last->t = v[i].t;
			continue;
		}
		if (!last || strcmp(last->path, v[i].path) != 0)
			npaths++;
		v[m++] = v[i];
	}
	p->spans = calloc(m ? m : 1, sizeof(*p->spans));
	p->span_paths = calloc(npaths ? npaths : 1, sizeof(*p->span_paths));
	if (!p->spans || !p->span_paths)
		return -ENOMEM;
	/* Own the paths (still sorted by path), then order by first access. */
	for (size_t i = 0; i < m; i++) {
		if (!i || strcmp(v[i - 1].path, v[i].path) != 0) {
			char *c = strdup(v[i].path);

			if (!c)
				return -ENOMEM;
			p->span_paths[p->nspan_paths++] = c;
		}
		v[i].path = p->span_paths[p->nspan_paths - 1];
	}
	qsort(v, m, sizeof(*v), cmp_rrec_time);
	for (size_t i = 0; i < m; i++)
		p->spans[i] = (struct slimfs_profile_span){v[i].path, v[i].t.usec, v[i].off,
							   v[i].end - v[i].off};
	p->nspans = m;
	return 0;
}

/* The traces' kernel_readahead when they agree, -1 when unknown, -2 when mixed. */
static int64_t merged_readahead(struct slimfs_tracefile *const *traces, size_t n)
{
	int64_t ra = -1;

	for (size_t t = 0; t < n; t++) {
		if (t && traces[t]->kernel_readahead != ra)
			return -2;
		ra = traces[t]->kernel_readahead;
	}
	return ra;
}

struct pent {
	const char *path;
	size_t idx; /* into the profile's paths */
};

static int cmp_pent(const void *x, const void *y)
{
	return strcmp(((const struct pent *)x)->path, ((const struct pent *)y)->path);
}

/* The entry whose path is exactly s[0, len), or NULL. */
static struct pent *find_path(const char *s, size_t len, struct pent *v, size_t n)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strncmp(s, v[mid].path, len);

		if (c == 0 && v[mid].path[len])
			c = -1; /* s[0, len) is a proper prefix: it sorts first */
		if (c == 0)
			return &v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Marks every path that has another traced path below it. */
static int mark_implied(struct slimfs_profile *p)
{
	_cleanup_free_ struct pent *v = calloc(p->npaths ? p->npaths : 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < p->npaths; i++)
		v[i] = (struct pent){p->paths[i].path, i};
	qsort(v, p->npaths, sizeof(*v), cmp_pent);
	for (size_t i = 0; i < p->npaths; i++) {
		const char *s = p->paths[i].path;
		struct pent *hit;

		if (!s[1])
			continue; /* the root has no ancestor */
		/* "/" is the root, then each proper prefix ending before a '/' */
		hit = find_path(s, 1, v, p->npaths);
		if (hit)
			p->paths[hit->idx].implied = true;
		for (size_t k = 1; s[k]; k++) {
			if (s[k] != '/')
				continue;
			hit = find_path(s, k, v, p->npaths);
			if (hit)
				p->paths[hit->idx].implied = true;
		}
	}
	return 0;
}

int slimfs_profile_merge(struct slimfs_tracefile *const *traces, size_t n,
			 struct slimfs_profile **out)
{
	struct slimfs_profile *p = calloc(1, sizeof(*p));
	_cleanup_free_ struct mrec *pr = NULL, *cr = NULL;
	size_t np = 0, nc = 0;
	int r = -ENOMEM;

	if (!p)
		return -ENOMEM;
	p->ntraces = n;
	for (size_t t = 0; t < n; t++) {
		np += traces[t]->npaths;
		nc += traces[t]->nchunks;
	}
	pr = calloc(np ? np : 1, sizeof(*pr));
	cr = calloc(nc ? nc : 1, sizeof(*cr));
	if (!pr || !cr)
		goto fail;
	np = nc = 0;
	for (size_t t = 0; t < n; t++) {
		for (size_t i = 0; i < traces[t]->npaths; i++) {
			const struct slimfs_tracefile_path *tp = &traces[t]->paths[i];

			pr[np++] = (struct mrec){tp->path, tp->usec, t, i, tp->state};
		}
		for (size_t i = 0; i < traces[t]->nchunks; i++) {
			const struct slimfs_tracefile_chunk *tc = &traces[t]->chunks[i];

			cr[nc++] = (struct mrec){tc->id, tc->usec, t, i, SLIMFS_PATH_FOUND};
		}
	}
	np = dedup(pr, np, cmp_path_rec, true);
	nc = dedup(cr, nc, cmp_id_rec, false);

	p->paths = calloc(np ? np : 1, sizeof(*p->paths));
	p->chunk_ids = malloc(nc ? nc * SLIMFS_CHUNK_ID_LEN : 1);
	if (!p->paths || !p->chunk_ids)
		goto fail;
	for (size_t i = 0; i < np; i++) {
		p->paths[i].path = strdup(pr[i].key);
		if (!p->paths[i].path)
			goto fail;
		p->paths[i].usec = pr[i].usec;
		p->paths[i].state = pr[i].state;
		p->npaths++;
	}
	for (size_t i = 0; i < nc; i++)
		memcpy(p->chunk_ids + SLIMFS_CHUNK_ID_LEN * i, cr[i].key, SLIMFS_CHUNK_ID_LEN);
	p->nchunks = nc;
	p->kernel_readahead = merged_readahead(traces, n);
	r = mark_implied(p);
	if (r == 0)
		r = merge_spans(p, traces, n);
	if (r < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	slimfs_profile_free(p);
	return r;
}

/* ---- writing ---- */

/* The one class that matches a newline and nothing else: [!\x01-\x09\x0b-\xff] */
static const char newline_class[] = {'[', '!', 0x01, '-', 0x09, 0x0b, '-', (char)0xff, ']'};

char *slimfs_profile_escape(const char *path)
{
	size_t len = strlen(path);
	struct buf b = {0};

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];
		bool esc = false;
		int r;

		if (c == '\n') {
			if (buf_add(&b, newline_class, sizeof(newline_class)) < 0)
				goto oom;
			continue;
		}
		if (strchr("*?[]\\!", c))
			esc = true;
		else if (i == 0 && (c == '#' || c == '@'))
			esc = true;
		/* the parser strips trailing blanks that are not escaped */
		else if (i + 1 == len && (c == ' ' || c == '\t' || c == '\r'))
			esc = true;
		r = esc ? buf_add(&b, "\\", 1) : 0;
		if (r < 0 || buf_add(&b, &c, 1) < 0)
			goto oom;
	}
	if (buf_add(&b, "", 1) < 0)
		goto oom;
	return b.p;
oom:
	free(b.p);
	return NULL;
}

static int add_comment(struct buf *b, const char *label, const char *path)
{
	_cleanup_free_ char *pat = slimfs_profile_escape(path);
	int r;

	if (!pat)
		return -ENOMEM;
	if ((r = buf_adds(b, label)) < 0 || (r = buf_adds(b, pat)) < 0 ||
	    (r = buf_add(b, "\n", 1)) < 0)
		return r;
	return 0;
}

int slimfs_profile_format(const struct slimfs_profile *p, char **text, size_t *len,
			  struct slimfs_profile_counts *counts)
{
	struct slimfs_profile_counts cnt = {0};
	struct buf b = {0};
	char line[128];
	int r;

	snprintf(line, sizeof(line), "# slimfs-profile %d (from %zu trace%s)\n",
		 SLIMFS_PROFILE_VERSION, p->ntraces, p->ntraces == 1 ? "" : "s");
	r = buf_adds(&b, line);
	if (r < 0)
		goto fail;
	for (size_t i = 0; i < p->npaths; i++) {
		const struct slimfs_profile_path *pp = &p->paths[i];
		_cleanup_free_ char *pat = NULL;

		if (pp->state != SLIMFS_PATH_FOUND)
			continue;
		if (pp->implied || !pp->path[1]) {
			cnt.implied++;
			continue;
		}
		pat = slimfs_profile_escape(pp->path);
		if (!pat) {
			r = -ENOMEM;
			goto fail;
		}
		if (strlen(pat) > PATTERN_MAX) {
			r = add_comment(&b, "# too long: ", pp->path);
			cnt.too_long++;
		} else {
			r = buf_adds(&b, pat);
			if (r == 0)
				r = buf_add(&b, "\n", 1);
			cnt.paths++;
		}
		if (r < 0)
			goto fail;
	}
	for (int s = SLIMFS_PATH_HIDDEN; s <= SLIMFS_PATH_MISSING; s++) {
		for (size_t i = 0; i < p->npaths; i++) {
			if (p->paths[i].state != (enum slimfs_path_state)s)
				continue;
			r = add_comment(&b, s == SLIMFS_PATH_HIDDEN ? "# hidden: " : "# missing: ",
					p->paths[i].path);
			if (r < 0)
				goto fail;
			if (s == SLIMFS_PATH_HIDDEN)
				cnt.hidden++;
			else
				cnt.missing++;
		}
	}
	for (size_t i = 0; i < p->nchunks; i++) {
		char hex[2 * SLIMFS_CHUNK_ID_LEN + 1];

		slimfs_hex(p->chunk_ids + SLIMFS_CHUNK_ID_LEN * i, SLIMFS_CHUNK_ID_LEN, hex);
		snprintf(line, sizeof(line), "#@chunk %s\n", hex);
		r = buf_adds(&b, line);
		if (r < 0)
			goto fail;
		cnt.chunks++;
	}
	for (size_t i = 0; i < p->nspans; i++) {
		const struct slimfs_profile_span *sp = &p->spans[i];
		_cleanup_free_ char *esc = slimfs_tracefile_escape(sp->path);

		if (!esc) {
			r = -ENOMEM;
			goto fail;
		}
		snprintf(line, sizeof(line), "#@range\t%" PRIu64 "\t%" PRIu64 "\t", sp->off,
			 sp->len);
		if ((r = buf_adds(&b, line)) < 0 || (r = buf_adds(&b, esc)) < 0 ||
		    (r = buf_add(&b, "\n", 1)) < 0)
			goto fail;
		cnt.ranges++;
		cnt.range_bytes += sp->len;
	}
	*text = b.p;
	*len = b.len;
	if (counts)
		*counts = cnt;
	return 0;
fail:
	free(b.p);
	return r;
}

int slimfs_write_file_atomic(const char *path, const void *buf, size_t len)
{
	mode_t mask = umask(0);

	umask(mask);
	return slimfs_write_file_replace(path, buf, len, 0666 & ~mask);
}

/* ---- reading a profile's chunk order ---- */

struct ident {
	const uint8_t *id;
	size_t pos;
};

static int cmp_ident(const void *x, const void *y)
{
	const struct ident *a = x, *b = y;
	int c = memcmp(a->id, b->id, SLIMFS_CHUNK_ID_LEN);

	return c ? c : a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Drops repeated ids, keeping the first of each; *out is the new count. */
static int dedup_ids(uint8_t *ids, size_t n, size_t *out)
{
	_cleanup_free_ struct ident *v = calloc(n ? n : 1, sizeof(*v));
	_cleanup_free_ bool *dup = calloc(n ? n : 1, sizeof(*dup));
	size_t m = 0;

	if (!v || !dup)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i] = (struct ident){ids + SLIMFS_CHUNK_ID_LEN * i, i};
	qsort(v, n, sizeof(*v), cmp_ident);
	for (size_t i = 1; i < n; i++)
		if (memcmp(v[i - 1].id, v[i].id, SLIMFS_CHUNK_ID_LEN) == 0)
			dup[v[i].pos] = true;
	for (size_t i = 0; i < n; i++) {
		if (dup[i])
			continue;
		memmove(ids + SLIMFS_CHUNK_ID_LEN * m, ids + SLIMFS_CHUNK_ID_LEN * i,
			SLIMFS_CHUNK_ID_LEN);
		m++;
	}
	*out = m;
	return 0;
}

/*
 * The next "#@TAG" comment line of text from *pos on (the tag followed by
 * a blank or the end of the line; "#@TAGx" is no such line): *arg and
 * *arglen are what follows the tag and its one separator, without a
 * trailing '\r'; *line counts lines. false at the end of the text.
 */
static bool next_tag_line(const char *text, size_t len, size_t *pos, unsigned *line,
			  const char *tag, const char **arg, size_t *arglen, char *sep)
{
	size_t tl = strlen(tag);

	while (*pos < len) {
		const char *s = text + *pos, *e = memchr(s, '\n', len - *pos);
		size_t k = e ? (size_t)(e - s) : len - *pos;

		++*line;
		*pos += k + 1;
		if (k && s[k - 1] == '\r')
			k--;
		if (k < tl || memcmp(s, tag, tl) != 0 || (k > tl && s[tl] != ' ' && s[tl] != '\t'))
			continue;
		*sep = k > tl ? s[tl] : 0;
		*arg = s + MIN(k, tl + 1);
		*arglen = k - MIN(k, tl + 1);
		return true;
	}
	return false;
}

int slimfs_profile_parse_chunks(const char *text, size_t len, const char *origin, uint8_t **ids,
				size_t *n)
{
	_cleanup_free_ uint8_t *v = NULL;
	size_t cap = 0, cnt = 0, pos = 0, k, a, b;
	unsigned line = 0;
	const char *s;
	char sep;
	int r;

	while (next_tag_line(text, len, &pos, &line, "#@chunk", &s, &k, &sep)) {
		for (a = 0; a < k && (s[a] == ' ' || s[a] == '\t'); a++)
			;
		for (b = k; b > a && (s[b - 1] == ' ' || s[b - 1] == '\t');)
			b--;
		if (cnt == cap) {
			size_t c = cap ? cap * 2 : 1024;
			uint8_t *nv = realloc(v, c * SLIMFS_CHUNK_ID_LEN);

			if (!nv)
				return -ENOMEM;
			v = nv;
			cap = c;
		}
		if (!parse_id(s + a, b - a, v + SLIMFS_CHUNK_ID_LEN * cnt)) {
			log_error(
				"%s:%u: bad '#@chunk' line (expected '#@chunk' and 32 hex digits)",
				origin, line);
			return -EINVAL;
		}
		cnt++;
	}
	r = dedup_ids(v, cnt, &cnt);
	if (r < 0)
		return r;
	*ids = cnt ? steal_ptr(&v) : NULL;
	*n = cnt;
	return 0;
}

int slimfs_profile_read_chunks(const char *path, uint8_t **ids, size_t *n)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_file(path, "profile", PROFILE_FILE_MAX, &buf, &len);
	if (r < 0)
		return r;
	return slimfs_profile_parse_chunks(buf, len, path, ids, n);
}

/* ---- reading a profile's byte ranges ---- */

void slimfs_profile_ranges_free(struct slimfs_profile_range *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

int slimfs_profile_parse_ranges(const char *text, size_t len, const char *origin,
				struct slimfs_profile_range **out, size_t *n)
{
	struct slimfs_profile_range *v = NULL;
	size_t cap = 0, cnt = 0, pos = 0, k;
	unsigned line = 0;
	const char *s;
	char sep;
	int r = 0;

	while (next_tag_line(text, len, &pos, &line, "#@range", &s, &k, &sep)) {
		const char *f[3], *why = "expected '#@range', offset, length and path, "
					 "TAB-separated";
		size_t flen[3];
		uint64_t off, rlen;
		char *path = NULL;

		if (sep != '\t' || split_tabs(s, k, f, flen, 3) != 3)
			goto bad;
		why = "offset and length must be decimal numbers, the range within 2^64";
		if (!parse_u64(f[0], flen[0], &off) || !parse_u64(f[1], flen[1], &rlen) ||
		    rlen > UINT64_MAX - off)
			goto bad;
		why = "the path must be absolute";
		if (!flen[2] || f[2][0] != '/')
			goto bad;
		r = slimfs_tracefile_unescape(f[2], flen[2], &path, &why);
		if (r == -ENOMEM)
			goto fail;
		if (r < 0)
			goto bad;
		if (SLIMFS_GROW(v, cap, cnt + 1, 256) < 0) {
			free(path);
			r = -ENOMEM;
			goto fail;
		}
		v[cnt++] = (struct slimfs_profile_range){path, off, rlen};
		continue;
bad:
		log_error("%s:%u: bad '#@range' line: %s", origin, line, why);
		r = -EINVAL;
		goto fail;
	}
	*out = v;
	*n = cnt;
	return 0;
fail:
	slimfs_profile_ranges_free(v, cnt);
	return r;
}

int slimfs_profile_read_ranges(const char *path, struct slimfs_profile_range **out, size_t *n)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r = read_file(path, "profile", PROFILE_FILE_MAX, &buf, &len);

	return r < 0 ? r : slimfs_profile_parse_ranges(buf, len, path, out, n);
}

/* ---- reading a profile's paths ---- */

/*
 * One path line as the literal path it selects: *out malloc'd, or NULL
 * when the line selects no single literal path (a glob, an unanchored name,
 * a comment, a directive or a negation).
 */
static int literal_path(const char *s, size_t k, char **out)
{
	struct buf b = {0};
	size_t i;

	*out = NULL;
	while (k && (*s == ' ' || *s == '\t')) {
		s++;
		k--;
	}
	while (k && (s[k - 1] == '\r' || s[k - 1] == ' ' || s[k - 1] == '\t') &&
	       !(k >= 2 && s[k - 2] == '\\'))
		k--;
	if (!k || s[0] == '#' || s[0] == '@' || s[0] == '!')
		return 0;
	if (s[0] != '/' && buf_add(&b, "/", 1) < 0)
		goto oom;
	for (i = 0; i < k; i++) {
		char c = s[i];

		if (c == '\\') {
			if (++i == k)
				goto skip;
			c = s[i];
		} else if (c == '[' && k - i >= sizeof(newline_class) &&
			   !memcmp(s + i, newline_class, sizeof(newline_class))) {
			c = '\n';
			i += sizeof(newline_class) - 1;
		} else if (c == '*' || c == '?' || c == '[') {
			goto skip;
		}
		if (buf_add(&b, &c, 1) < 0)
			goto oom;
	}
	/* "name" alone matches at any depth: not one path */
	if (s[0] != '/' && !memchr(s, '/', k))
		goto skip;
	if (buf_add(&b, "", 1) < 0)
		goto oom;
	*out = b.p;
	return 0;
skip:
	free(b.p);
	return 0;
oom:
	free(b.p);
	return -ENOMEM;
}

void slimfs_profile_paths_free(char **paths, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int slimfs_profile_parse_paths(const char *text, size_t len, char ***paths, size_t *n)
{
	char **v = NULL;
	size_t cap = 0, cnt = 0, i = 0;
	int r;

	while (i < len) {
		const char *s = text + i, *e = memchr(s, '\n', len - i);
		size_t k = e ? (size_t)(e - s) : len - i;
		char *p;

		i += k + 1;
		r = literal_path(s, k, &p);
		if (r < 0)
			goto fail;
		if (!p)
			continue;
		if (SLIMFS_GROW(v, cap, cnt + 1, 256) < 0) {
			free(p);
			r = -ENOMEM;
			goto fail;
		}
		v[cnt++] = p;
	}
	*paths = v;
	*n = cnt;
	return 0;
fail:
	slimfs_profile_paths_free(v, cnt);
	return r;
}

int slimfs_profile_read_paths(const char *path, char ***paths, size_t *n)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	int r;

	r = read_file(path, "profile", PROFILE_FILE_MAX, &buf, &len);
	if (r < 0)
		return r;
	return slimfs_profile_parse_paths(buf, len, paths, n);
}
