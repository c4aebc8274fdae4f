/* SPDX-License-Identifier: MIT */
/*
 * Traces and profiles (internal to index/ and the CLI), formats in
 * index/FORMAT.md ("Traces and profiles"):
 *
 *   trace    what `slimfs mount --trace FILE` records: each path looked up,
 *            opened or read (found, hidden by the view, or missing), each
 *            chunk read for a reader, and (version 2) the byte ranges the
 *            kernel read of each file, once each, with microseconds since mount;
 *   profile  traces merged by time of first access: an allow-list file whose
 *            path lines select what the workload touched, whose "#@chunk"
 *            comment lines give the chunk order `build --profile` puts first
 *            in the data and records as the PREFETCH section, and whose
 *            "#@range" lines give the page-aligned byte ranges read of each file.
 *
 * All functions return 0 or a negative errno; parse errors are logged with
 * file:line and return -EINVAL.
 */
#ifndef SLIMFS_PROFILE_H
#define SLIMFS_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLIMFS_TRACE_VERSION   2 /* 2: R records, kernel_readahead= */
#define SLIMFS_PROFILE_VERSION 1
#define SLIMFS_CHUNK_ID_LEN    16
/* The unit "#@range" lines are rounded to (offsets down, ends up). */
#define SLIMFS_PROFILE_PAGE 4096u

/* Ordered best first: a path found in one trace and hidden in another is found. */
enum slimfs_path_state {
	SLIMFS_PATH_FOUND = 0,
	SLIMFS_PATH_HIDDEN = 1,	 /* in the image, not in the traced view */
	SLIMFS_PATH_MISSING = 2, /* not in the image */
};

struct slimfs_tracefile_path {
	char *path; /* owned, unescaped, absolute and canonical ("/usr/bin/x") */
	uint64_t usec;
	enum slimfs_path_state state;
};

struct slimfs_tracefile_chunk {
	uint8_t id[SLIMFS_CHUNK_ID_LEN];
	uint64_t usec;
	uint64_t index; /* chunk index in the traced image */
};

/* An R record: bytes [off, off + len) of a file of size bytes were read. */
struct slimfs_tracefile_read {
	char *path; /* owned, unescaped, absolute and canonical */
	uint64_t usec;
	uint64_t off, len, size;
};

struct slimfs_tracefile {
	char *origin;	  /* owned: the file name, for messages */
	unsigned version; /* of the header: 1 or 2 */
	/* Header's kernel_readahead=: bytes, -1 when "default" or absent (version 1). */
	int64_t kernel_readahead;
	bool has_image; /* the header names the image */
	uint8_t image[32];
	char *view;			     /* owned: the header's view, NULL when none */
	struct slimfs_tracefile_path *paths; /* owned, in file order */
	size_t npaths;
	struct slimfs_tracefile_chunk *chunks; /* owned, in file order */
	size_t nchunks;
	struct slimfs_tracefile_read *reads; /* owned, in file order (version 2) */
	size_t nreads;
	bool truncated; /* an unterminated last line was dropped */
};

/*
 * Parses a trace held in buf[0, len). origin names it in messages. A
 * record seen twice keeps its first time. An unterminated last line (a trace
 * whose writer was killed) is dropped with a warning. -EINVAL (logged with
 * origin:line) for anything else that is not the format.
 */
int slimfs_tracefile_parse(const char *buf, size_t len, const char *origin,
			   struct slimfs_tracefile **out);
/* Reads and parses a trace file. */
int slimfs_tracefile_load(const char *path, struct slimfs_tracefile **out);
void slimfs_tracefile_free(struct slimfs_tracefile *t);

/*
 * Unescapes a trace path field (\\ \t \n \xHH): *out is malloc'd and
 * NUL-terminated. -EINVAL with *why set for a bad escape, a NUL byte or a
 * raw control byte.
 */
int slimfs_tracefile_unescape(const char *s, size_t len, char **out, const char **why);
/* The inverse: s escaped as a trace path field, malloc'd; NULL on ENOMEM. */
char *slimfs_tracefile_escape(const char *s);

struct slimfs_profile_path {
	char *path; /* owned */
	uint64_t usec;
	enum slimfs_path_state state; /* the best over the traces */
	bool implied;		      /* a traced path lies below it (so it is a directory) */
};

/* Merged bytes of one file: page-aligned, clipped to its size, disjoint. */
struct slimfs_profile_span {
	const char *path; /* borrowed from the profile's span_paths */
	uint64_t usec;	  /* earliest first access of any read inside */
	uint64_t off, len;
};

struct slimfs_profile {
	size_t ntraces;
	struct slimfs_profile_path *paths; /* owned, earliest first access first */
	size_t npaths;
	uint8_t *chunk_ids; /* owned, 16 bytes each, earliest first access first */
	size_t nchunks;
	struct slimfs_profile_span *spans; /* owned, earliest first access first */
	size_t nspans;
	char **span_paths; /* owned: the distinct paths spans point to */
	size_t nspan_paths;
	/* The traces' kernel_readahead when they agree, -1 when unknown, -2 when mixed. */
	int64_t kernel_readahead;
};

/*
 * Merges traces: each path and chunk once, ordered by its earliest time
 * over all traces (ties: the earlier trace on the command line, then the
 * earlier record). Does not compare the traces' images (the caller does).
 * The traces' read ranges are rounded to SLIMFS_PROFILE_PAGE (offset down,
 * end up, clipped to the file size) and united per file (overlapping and
 * touching ranges become one span, timed by its earliest read).
 */
int slimfs_profile_merge(struct slimfs_tracefile *const *traces, size_t n,
			 struct slimfs_profile **out);
void slimfs_profile_free(struct slimfs_profile *p);

/*
 * The anchored allow-list pattern that matches exactly the absolute path and
 * nothing else (glob metacharacters, a trailing blank and a leading '#' or
 * '@' escaped; a newline, which no escape can express, as the class
 * "[!\x01-\x09\x0b-\xff]", which only it matches). malloc'd, NULL on ENOMEM.
 */
char *slimfs_profile_escape(const char *path);

struct slimfs_profile_counts {
	size_t paths;	      /* path lines */
	size_t implied;	      /* found directories left to their traced descendants */
	size_t hidden;	      /* "# hidden:" comments */
	size_t missing;	      /* "# missing:" comments */
	size_t too_long;      /* found paths whose pattern the allow-list parser would refuse */
	size_t chunks;	      /* "#@chunk" lines */
	size_t ranges;	      /* "#@range" lines */
	uint64_t range_bytes; /* their total length */
};

/*
 * The profile's text: a header comment, one pattern per found path that no
 * other traced path lies below (a directory line selects its whole subtree,
 * and the view brings the ancestors of what it selects anyway), "# hidden:"
 * and "# missing:" comments holding the pattern of each hidden and missing
 * path, then one "#@chunk <32 hex>" line per chunk, then one line per span,
 * in first-access order:
 *   "#@range" TAB offset TAB length TAB path
 * (decimal; the path absolute and escaped as in traces). *text is malloc'd.
 */
int slimfs_profile_format(const struct slimfs_profile *p, char **text, size_t *len,
			  struct slimfs_profile_counts *counts);

/* Writes buf to path through a temporary file in its directory and rename(2). */
int slimfs_write_file_atomic(const char *path, const void *buf, size_t len);

/*
 * The chunk ids of a profile's "#@chunk" lines, in order, each once
 * (everything else is ignored). *ids is malloc'd (16 bytes each), NULL when
 * there is none. A malformed "#@chunk" line is -EINVAL, logged with
 * origin:line.
 */
int slimfs_profile_parse_chunks(const char *text, size_t len, const char *origin, uint8_t **ids,
				size_t *n);
int slimfs_profile_read_chunks(const char *path, uint8_t **ids, size_t *n);

/*
 * A byte range of a file that a profiled run read: "#@range<TAB>offset<TAB>
 * length<TAB>path" lines (path absolute and escaped as in traces).
 */
struct slimfs_profile_range {
	char *path; /* owned, unescaped */
	uint64_t off, len;
};

/*
 * The "#@range" lines of a profile, in file order (repeats kept; everything
 * else is ignored). *out is malloc'd (slimfs_profile_ranges_free()), NULL
 * when there is none. A malformed "#@range" line is -EINVAL, logged with
 * origin:line.
 */
int slimfs_profile_parse_ranges(const char *text, size_t len, const char *origin,
				struct slimfs_profile_range **out, size_t *n);
int slimfs_profile_read_ranges(const char *path, struct slimfs_profile_range **out, size_t *n);
void slimfs_profile_ranges_free(struct slimfs_profile_range *v, size_t n);

/*
 * The literal paths of a profile's path lines, in file order (repeats kept):
 * absolute ("/usr/bin/x"), unescaped (the newline class back to '\n').
 * Comments, blank lines, directives, negated lines and lines that are real
 * globs (an unescaped '*', '?' or '[') or unanchored names are skipped, so
 * any allow-list reads as the literal paths it names. *paths is a malloc'd
 * array of malloc'd strings (slimfs_profile_paths_free()), NULL when none.
 */
int slimfs_profile_parse_paths(const char *text, size_t len, char ***paths, size_t *n);
int slimfs_profile_read_paths(const char *path, char ***paths, size_t *n);
void slimfs_profile_paths_free(char **paths, size_t n);

#endif
