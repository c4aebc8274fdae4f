// SPDX-License-Identifier: MIT
/*
 * Source detection and the image formats around tar layers:
 *   directory with oci-layout + index.json   OCI image layout
 *   other directory                          a rootfs tree (ingest_dir.c)
 *   tar stream with manifest.json            'docker save' tarball
 *   tar stream with oci-layout + index.json  OCI layout archive (oci-archive)
 *   any other file                           one tar layer (any compression)
 *
 * Blobs named by a sha256 digest are verified while they are read: the
 * hash covers every byte of the blob, including what libarchive does not
 * need (it is drained after the layer), and a mismatch fails the build.
 * Members of an outer tarball are copied to unlinked temporary files first
 * (their order in the tarball is not the layer order, and a layer may be
 * listed twice), then read like files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "dl_archive.h"
#include "slimfs/build.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "tree.h"

#define JSON_MAX   (16u << 20) /* index.json, manifests */
#define CONFIG_MAX (64u << 20) /* image config */
#define READ_BUF   (256u << 10)

/* ---- members of an outer tarball, or files of a layout directory ---- */

struct member {
	char *name;  /* normalised path in the tarball */
	char *alias; /* symlink or hardlink: normalised target, or NULL */
	int fd;	     /* unlinked temporary copy, -1 until extracted */
	uint64_t size;
};

struct blobs {
	const char *source; /* for messages */
	int dirfd;	    /* OCI layout directory, or -1 */
	struct member *m;   /* tarball members */
	size_t n;
	bool all; /* extract every regular member (OCI archive) */
};

/*
 * The decompressors libarchive runs in-process. Not _filter_all(): for lrzip,
 * lzop and grzip it would run external programs on hostile input.
 */
static void support_filters(struct archive *a)
{
	archive_read_support_filter_none(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_lz4(a);
	archive_read_support_filter_compress(a);
}
static void blobs_clear(struct blobs *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->m[i].name);
		free(b->m[i].alias);
		if (b->m[i].fd >= 0)
			close(b->m[i].fd);
	}
	free(b->m);
	b->m = NULL;
	b->n = 0;
	if (b->dirfd >= 0)
		close(b->dirfd);
	b->dirfd = -1;
}

/* "./a//b/" -> "a/b"; ".." components resolve within the tarball, or fail. */
static char *norm_member(const char *base_dir, const char *path)
{
	size_t bl = base_dir ? strlen(base_dir) : 0, pl = strlen(path);
	char *in = malloc(bl + 1 + pl + 1), *out;
	size_t o = 0, len;
	const char *p, *s;

	if (!in)
		return NULL;
	snprintf(in, bl + 1 + pl + 1, "%s%s%s", bl && path[0] != '/' ? base_dir : "",
		 bl && path[0] != '/' ? "/" : "", path);
	out = malloc(strlen(in) + 1);
	if (!out) {
		free(in);
		return NULL;
	}
	p = in;
	while (slimfs_path_next(&p, &s, &len)) {
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			char *slash;

			if (o == 0) {
				free(in);
				free(out);
				errno = EINVAL;
				return NULL;
			}
			out[o] = '\0';
			slash = strrchr(out, '/');
			o = slash ? (size_t)(slash - out) : 0;
			continue;
		}
		if (o)
			out[o++] = '/';
		memcpy(out + o, s, len);
		o += len;
	}
	out[o] = '\0';
	free(in);
	return out;
}

static struct member *member_find(struct blobs *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->m[i].name, name) == 0)
			return &b->m[i];
	return NULL;
}

static int member_want(struct blobs *b, const char *name)
{
	struct member *m;

	if (member_find(b, name))
		return 0;
	m = realloc(b->m, (b->n + 1) * sizeof(*m));
	if (!m)
		return -ENOMEM;
	b->m = m;
	m = &b->m[b->n];
	*m = (struct member){.fd = -1};
	m->name = strdup(name);
	if (!m->name)
		return -ENOMEM;
	b->n++;
	return 0;
}

static struct archive *outer_open(const char *source, int fd)
{
	struct archive *a = archive_read_new();

	if (!a)
		return NULL;
	support_filters(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	if (lseek(fd, 0, SEEK_SET) < 0 || archive_read_open_fd(a, fd, READ_BUF) != ARCHIVE_OK) {
		log_error("cannot read '%s' as an archive: %s", source,
			  archive_error_string(a) ? archive_error_string(a) : strerror(errno));
		archive_read_free(a);
		return NULL;
	}
	return a;
}

static int copy_member(struct blobs *b, struct archive *a, struct member *m)
{
	_cleanup_close_ int fd = slimfs_tmpfile_open(NULL, "temporary");
	uint64_t end = 0;

	if (fd < 0)
		return fd;
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int r = archive_read_data_block(a, &buf, &len, &off);

		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			log_error("'%s': member '%s': %s", b->source, m->name,
				  archive_error_string(a));
			return -EBADMSG;
		}
		if (off < 0)
			return -EBADMSG;
		r = slimfs_pwrite_all(fd, buf, len, (uint64_t)off);
		if (r < 0)
			return log_error_errno(r, "cannot write a temporary file");
		end = MAX(end, (uint64_t)off + len);
	}
	m->size = end;
	m->fd = steal_fd(&fd);
	return 0;
}

/* One pass over the tarball: extracts the wanted members not yet there. */
static int extract_pass(struct blobs *b, int outer_fd)
{
	struct archive *a = outer_open(b->source, outer_fd);
	struct archive_entry *e;
	int r = 0;

	if (!a)
		return -EBADMSG;
	for (;;) {
		_cleanup_free_ char *name = NULL;
		struct member *m;
		const char *p;

		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF) {
			r = 0;
			break;
		}
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			log_error("'%s': %s", b->source, archive_error_string(a));
			r = -EBADMSG;
			break;
		}
		p = archive_entry_pathname(e);
		if (!p)
			continue;
		name = norm_member(NULL, p);
		if (!name)
			continue;
		if (b->all && archive_entry_filetype(e) == AE_IFREG && !member_find(b, name)) {
			r = member_want(b, name);
			if (r < 0)
				break;
		}
		m = member_find(b, name);
		if (!m || m->fd >= 0 || m->alias)
			continue;
		if (archive_entry_hardlink(e)) {
			m->alias = norm_member(NULL, archive_entry_hardlink(e));
		} else if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e)) {
			char *dir = strdup(name), *slash = dir ? strrchr(dir, '/') : NULL;

			if (slash)
				*slash = '\0';
			m->alias = dir ? norm_member(slash ? dir : NULL, archive_entry_symlink(e))
				       : NULL;
			free(dir);
		} else if (archive_entry_filetype(e) == AE_IFREG) {
			r = copy_member(b, a, m);
			if (r < 0)
				break;
			continue;
		} else {
			continue;
		}
		if (!m->alias) {
			log_error("'%s': member '%s': link leads outside the archive", b->source,
				  name);
			r = -EINVAL;
			break;
		}
		r = member_want(b, m->alias);
		if (r < 0)
			break;
	}
	archive_read_free(a);
	return r;
}

static int extract_members(struct blobs *b, int outer_fd)
{
	for (int pass = 0; pass < 4; pass++) {
		bool missing = false;
		int r = extract_pass(b, outer_fd);

		if (r < 0)
			return r;
		b->all = false;
		for (size_t i = 0; i < b->n; i++)
			if (b->m[i].fd < 0 && !b->m[i].alias)
				missing = true;
		if (!missing)
			return 0;
	}
	return 0; /* still missing ones are reported when opened */
}

/* Opens a file of the layout: fd (borrowed for members) and size. */
static int blob_open(struct blobs *b, const char *rel, int *fd, bool *owned, uint64_t *size)
{
	struct stat st;

	if (b->dirfd >= 0) {
		int f = openat(b->dirfd, rel, O_RDONLY | O_CLOEXEC);

		if (f < 0)
			return log_error_errno(-errno, "'%s': cannot open '%s'", b->source, rel);
		if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(f);
			log_error("'%s': '%s' is not a regular file", b->source, rel);
			return -EINVAL;
		}
		*fd = f;
		*owned = true;
		*size = (uint64_t)st.st_size;
		return 0;
	}
	{
		_cleanup_free_ char *name = norm_member(NULL, rel);
		struct member *m = name ? member_find(b, name) : NULL;

		for (int hops = 0; m && m->alias && hops < 8; hops++)
			m = member_find(b, m->alias);
		if (!m || m->fd < 0) {
			log_error("'%s': '%s' is missing from the archive", b->source, rel);
			return -ENOENT;
		}
		*fd = m->fd;
		*owned = false;
		*size = m->size;
		return 0;
	}
}

/* ---- reading blobs, verified ---- */

struct reader {
	int fd;
	bool owned;
	uint64_t pos, size;
	struct slimfs_sha256_ctx *md; /* NULL: not content-addressed */
	uint8_t *buf;
};

static void reader_close(struct reader *rd)
{
	if (rd->owned && rd->fd >= 0)
		close(rd->fd);
	free(rd->md);
	free(rd->buf);
	*rd = (struct reader){.fd = -1};
}

/* digest "sha256:<64 hex>" -> path "blobs/sha256/<hex>" and the bytes */
static int parse_digest(const char *d, char path[80], uint8_t bin[32])
{
	if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		return -EINVAL;
	for (int i = 7; i < 7 + 64; i++)
		if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
			return -EINVAL;
	if (slimfs_parse_digest(d, bin) < 0)
		return -EINVAL;
	snprintf(path, 80, "blobs/sha256/%s", d + 7);
	return 0;
}

static int reader_open(struct blobs *b, const char *rel, bool verify, struct reader *rd)
{
	int r;

	*rd = (struct reader){.fd = -1};
	r = blob_open(b, rel, &rd->fd, &rd->owned, &rd->size);
	if (r < 0)
		return r;
	rd->buf = malloc(READ_BUF);
	if (!rd->buf) {
		reader_close(rd);
		return -ENOMEM;
	}
	if (verify) {
		rd->md = malloc(sizeof(*rd->md));
		if (!rd->md) {
			reader_close(rd);
			return -ENOMEM;
		}
		slimfs_sha256_init(rd->md);
	}
	return 0;
}

static ssize_t reader_read(struct reader *rd, const void **out)
{
	size_t want = (size_t)MIN((uint64_t)READ_BUF, rd->size - rd->pos);
	ssize_t n;

	if (!want)
		return 0;
	do
		n = pread(rd->fd, rd->buf, want, (off_t)rd->pos);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO; /* shrank under us */
	if (rd->md)
		slimfs_sha256_update(rd->md, rd->buf, (size_t)n);
	rd->pos += (uint64_t)n;
	*out = rd->buf;
	return n;
}

/* Hashes what is left, then checks size and digest. */
static int reader_finish(struct reader *rd, const char *what, const char *digest, int64_t want_size)
{
	uint8_t want[32], got[32];
	char hex[65], path[80];
	const void *p;
	ssize_t n;

	while ((n = reader_read(rd, &p)) > 0)
		;
	if (n < 0)
		return log_error_errno((int)n, "%s: read error", what);
	if (want_size >= 0 && (uint64_t)want_size != rd->size) {
		log_error("%s: size %" PRIu64 " does not match the descriptor's %" PRId64, what,
			  rd->size, want_size);
		return -EBADMSG;
	}
	if (!rd->md)
		return 0;
	if (parse_digest(digest, path, want) < 0)
		return -EINVAL;
	slimfs_sha256_final(rd->md, got);
	if (memcmp(want, got, 32) != 0) {
		slimfs_hex(got, 32, hex);
		log_error("%s: digest mismatch: expected %s, content is sha256:%s", what, digest,
			  hex);
		return -EBADMSG;
	}
	return 0;
}

/* Reads a whole blob (at most max bytes) into a NUL-terminated buffer. */
static int read_all(struct blobs *b, const char *rel, const char *digest, int64_t want_size,
		    uint64_t max, char **out, size_t *out_len)
{
	struct reader rd;
	_cleanup_free_ char *buf = NULL;
	size_t o = 0;
	const void *p;
	ssize_t n;
	int r;

	r = reader_open(b, rel, digest != NULL, &rd);
	if (r < 0)
		return r;
	if (rd.size > max) {
		log_error("'%s': '%s' is too large (%" PRIu64 " bytes)", b->source, rel, rd.size);
		reader_close(&rd);
		return -EFBIG;
	}
	buf = malloc(rd.size + 1);
	if (!buf) {
		reader_close(&rd);
		return -ENOMEM;
	}
	while ((n = reader_read(&rd, &p)) > 0) {
		memcpy(buf + o, p, (size_t)n);
		o += (size_t)n;
	}
	if (n < 0) {
		reader_close(&rd);
		return log_error_errno((int)n, "'%s': cannot read '%s'", b->source, rel);
	}
	buf[o] = '\0';
	{
		char what[256];

		snprintf(what, sizeof(what), "'%s': blob '%s'", b->source, rel);
		r = reader_finish(&rd, what, digest, want_size);
	}
	reader_close(&rd);
	if (r < 0)
		return r;
	*out = steal_ptr(&buf);
	*out_len = o;
	return 0;
}

static int read_json(struct blobs *b, const char *rel, const char *digest, int64_t size,
		     json_t **out)
{
	_cleanup_free_ char *buf = NULL;
	json_error_t err;
	size_t len;
	int r;

	r = read_all(b, rel, digest, size, JSON_MAX, &buf, &len);
	if (r < 0)
		return r;
	*out = json_loadb(buf, len, 0, &err);
	if (!*out) {
		log_error("'%s': '%s': invalid JSON at line %d: %s", b->source, rel, err.line,
			  err.text);
		return -EBADMSG;
	}
	return 0;
}

/* ---- layers ---- */

static la_ssize_t layer_read_cb(struct archive *a, void *ud, const void **buf)
{
	ssize_t n = reader_read(ud, buf);

	if (n < 0) {
		archive_set_error(a, (int)-n, "read error");
		return -1;
	}
	return n;
}

static int apply_layer(struct slimfs_tree *t, struct blobs *b, const char *rel, const char *digest,
		       int64_t size, const char *name)
{
	struct reader rd;
	struct archive *a;
	char what[256];
	int r;

	r = reader_open(b, rel, digest != NULL, &rd);
	if (r < 0)
		return r;
	a = archive_read_new();
	if (!a) {
		reader_close(&rd);
		return -ENOMEM;
	}
	support_filters(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_format_cpio(a);
	archive_read_support_format_empty(a);
	t->layer++;
	if (archive_read_open(a, &rd, NULL, layer_read_cb, NULL) != ARCHIVE_OK) {
		log_error("layer %s: cannot open: %s", name,
			  archive_error_string(a) ? archive_error_string(a) : "unknown error");
		r = -EBADMSG;
	} else {
		r = slimfs_ingest_archive(t, a, name);
	}
	archive_read_free(a);
	/* even when ingest failed: a digest mismatch is the better message */
	snprintf(what, sizeof(what), "layer %s ('%s/%s')", name, b->source, rel);
	{
		int v = reader_finish(&rd, what, digest, size);

		if (v < 0)
			r = v;
	}
	reader_close(&rd);
	return r;
}

/* ---- OCI layout ---- */

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static const char *annotation(json_t *desc, const char *key)
{
	return jstr(json_object_get(desc, "annotations"), key);
}

static bool is_index_type(const char *mt)
{
	return mt && (strcmp(mt, "application/vnd.oci.image.index.v1+json") == 0 ||
		      strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0);
}

static bool platform_matches(json_t *desc, const char *want)
{
	json_t *p = json_object_get(desc, "platform");
	char os[64] = "", arch[64] = "", variant[64] = "";
	const char *dos, *darch, *dvar;

	if (!json_is_object(p))
		return false;
	sscanf(want, "%63[^/]/%63[^/]/%63s", os, arch, variant);
	dos = jstr(p, "os");
	darch = jstr(p, "architecture");
	dvar = jstr(p, "variant");
	if (!dos || !darch || strcmp(dos, os) != 0 || strcmp(darch, arch) != 0)
		return false;
	return !variant[0] || (dvar && strcmp(dvar, variant) == 0);
}

static int desc_fields(struct blobs *b, json_t *desc, const char **digest, char path[80],
		       int64_t *size)
{
	uint8_t bin[32];
	json_t *s = json_object_get(desc, "size");

	*digest = jstr(desc, "digest");
	if (parse_digest(*digest, path, bin) < 0) {
		log_error("'%s': unsupported or invalid digest '%s' (sha256 only)", b->source,
			  *digest ? *digest : "(none)");
		return -EINVAL;
	}
	*size = json_is_integer(s) ? json_integer_value(s) : -1;
	if (json_is_integer(s) && *size < 0) {
		log_error("'%s': negative blob size for '%s'", b->source, *digest);
		return -EINVAL;
	}
	return 0;
}

/* Picks a descriptor from an index's manifests. */
static json_t *pick_manifest(struct blobs *b, json_t *index, const char *ref, const char *platform)
{
	json_t *ms = json_object_get(index, "manifests"), *d, *found = NULL;
	size_t i, nplat = 0;

	if (!json_is_array(ms) || json_array_size(ms) == 0) {
		log_error("'%s': image index lists no manifests", b->source);
		return NULL;
	}
	if (ref) {
		json_array_foreach(ms, i, d)
		{
			const char *rn = annotation(d, "org.opencontainers.image.ref.name");
			const char *cn = annotation(d, "io.containerd.image.name");

			if ((rn && strcmp(rn, ref) == 0) || (cn && strcmp(cn, ref) == 0))
				return d;
		}
		log_error("'%s': no manifest with ref '%s'", b->source, ref);
		json_array_foreach(ms, i, d)
		{
			const char *rn = annotation(d, "org.opencontainers.image.ref.name");

			if (rn)
				log_info("'%s': available ref: '%s'", b->source, rn);
		}
		return NULL;
	}
	if (json_array_size(ms) == 1)
		return json_array_get(ms, 0);
	json_array_foreach(ms, i, d)
	{
		if (json_is_object(json_object_get(d, "platform")))
			nplat++;
		if (!found && platform_matches(d, platform))
			found = d;
	}
	if (found)
		return found;
	if (nplat)
		log_error("'%s': no manifest for platform '%s' (use --platform)", b->source,
			  platform);
	else
		log_error("'%s': index lists %zu manifests: choose one with --ref", b->source,
			  json_array_size(ms));
	return NULL;
}

static int apply_oci_manifest(struct slimfs_tree *t, struct blobs *b, json_t *man, char **config,
			      size_t *config_len)
{
	json_t *layers = json_object_get(man, "layers"), *cfg = json_object_get(man, "config");
	json_t *l;
	size_t i;
	int r;

	if (!json_is_array(layers) || !json_is_object(cfg)) {
		log_error("'%s': manifest without layers or config", b->source);
		return -EBADMSG;
	}
	{
		const char *digest;
		char path[80];
		int64_t size;
		char *buf;
		size_t len;

		r = desc_fields(b, cfg, &digest, path, &size);
		if (r < 0)
			return r;
		r = read_all(b, path, digest, size, CONFIG_MAX, &buf, &len);
		if (r < 0)
			return r;
		if (config) {
			free(*config);
			*config = buf;
			if (config_len)
				*config_len = len;
		} else {
			free(buf);
		}
	}
	json_array_foreach(layers, i, l)
	{
		const char *digest, *mt = jstr(l, "mediaType");
		char path[80];
		int64_t size;

		r = desc_fields(b, l, &digest, path, &size);
		if (r < 0)
			return r;
		if (mt && strstr(mt, "encrypted")) {
			log_error("layer %.12s: encrypted layers are not supported (%s)",
				  digest + 7, mt);
			return -EOPNOTSUPP;
		}
		{
			char name[16];

			snprintf(name, sizeof(name), "%.12s", digest + 7);
			r = apply_layer(t, b, path, digest, size, name);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int ingest_oci(struct slimfs_tree *t, struct blobs *b, const struct slimfs_build_opts *o,
		      char **config, size_t *config_len)
{
	const char *platform = o && o->platform ? o->platform : "linux/amd64";
	const char *ref = o ? o->ref : NULL;
	json_t *cur = NULL;
	int r;

	r = read_json(b, "index.json", NULL, -1, &cur);
	if (r < 0)
		return r;
	/* index -> (nested indexes) -> manifest, at most a few levels */
	for (int depth = 0;; depth++) {
		json_t *d, *next = NULL;
		const char *digest, *mt;
		char path[80];
		int64_t size;

		if (depth > 4) {
			log_error("'%s': image indexes nested too deep", b->source);
			r = -ELOOP;
			break;
		}
		d = pick_manifest(b, cur, depth == 0 ? ref : NULL, platform);
		if (!d) {
			r = -ENOENT;
			break;
		}
		r = desc_fields(b, d, &digest, path, &size);
		if (r < 0)
			break;
		r = read_json(b, path, digest, size, &next);
		if (r < 0)
			break;
		json_decref(cur);
		cur = next;
		mt = jstr(cur, "mediaType");
		if (!mt)
			mt = jstr(d, "mediaType");
		if (is_index_type(mt) || (!mt && json_is_array(json_object_get(cur, "manifests"))))
			continue;
		r = apply_oci_manifest(t, b, cur, config, config_len);
		break;
	}
	json_decref(cur);
	return r;
}

/* ---- docker save ---- */

static int ingest_docker(struct slimfs_tree *t, struct blobs *b, int outer_fd, json_t *manifest,
			 const struct slimfs_build_opts *o, char **config, size_t *config_len)
{
	const char *ref = o ? o->ref : NULL;
	json_t *img = NULL, *e, *layers, *l;
	const char *cfgpath;
	size_t i;
	int r;

	if (!json_is_array(manifest) || json_array_size(manifest) == 0) {
		log_error("'%s': manifest.json lists no images", b->source);
		return -EBADMSG;
	}
	if (ref) {
		json_array_foreach(manifest, i, e)
		{
			json_t *tags = json_object_get(e, "RepoTags"), *tag;
			size_t k;

			json_array_foreach(tags, k, tag)
			{
				const char *s = json_string_value(tag);
				size_t rl = strlen(ref);

				if (s && (strcmp(s, ref) == 0 || (strncmp(s, ref, rl) == 0 &&
								  strcmp(s + rl, ":latest") == 0)))
					img = e;
			}
			if (img)
				break;
		}
		if (!img) {
			log_error("'%s': no image tagged '%s' in manifest.json", b->source, ref);
			return -ENOENT;
		}
	} else {
		img = json_array_get(manifest, 0);
		if (json_array_size(manifest) > 1)
			log_warn("'%s': %zu images, taking the first (choose with --ref)",
				 b->source, json_array_size(manifest));
	}
	cfgpath = jstr(img, "Config");
	layers = json_object_get(img, "Layers");
	if (!cfgpath || !json_is_array(layers)) {
		log_error("'%s': manifest.json entry without Config or Layers", b->source);
		return -EBADMSG;
	}
	{
		_cleanup_free_ char *n = norm_member(NULL, cfgpath);

		r = n ? member_want(b, n) : -EINVAL;
	}
	json_array_foreach(layers, i, l)
	{
		_cleanup_free_ char *n = NULL;

		if (r < 0)
			return r;
		if (!json_string_value(l)) {
			log_error("'%s': manifest.json: layer %zu is not a path", b->source, i);
			return -EBADMSG;
		}
		n = norm_member(NULL, json_string_value(l));
		r = n ? member_want(b, n) : -EINVAL;
	}
	if (r < 0)
		return r;
	r = extract_members(b, outer_fd);
	if (r < 0)
		return r;
	{
		char *buf;
		size_t len;
		char path[80];
		uint8_t bin[32];
		_cleanup_free_ char *digest = NULL;
		const char *slash = strrchr(cfgpath, '/');

		/* Docker >= 25: blobs/sha256/<hex>; older: <hex>.json */
		if (slash && asprintf(&digest, "sha256:%s", slash + 1) > 0 &&
		    parse_digest(digest, path, bin) < 0) {
			free(digest);
			digest = NULL;
		}
		r = read_all(b, cfgpath, digest, -1, CONFIG_MAX, &buf, &len);
		if (r < 0)
			return r;
		if (config) {
			free(*config);
			*config = buf;
			if (config_len)
				*config_len = len;
		} else {
			free(buf);
		}
	}
	json_array_foreach(layers, i, l)
	{
		const char *p = json_string_value(l);
		_cleanup_free_ char *digest = NULL;
		char path[80], name[64];
		uint8_t bin[32];
		const char *slash = strrchr(p, '/');

		if (!(slash && strncmp(p, "blobs/sha256/", 13) == 0 &&
		      asprintf(&digest, "sha256:%s", slash + 1) > 0 &&
		      parse_digest(digest, path, bin) == 0)) {
			free(digest);
			digest = NULL;
		}
		if (digest)
			snprintf(name, sizeof(name), "%.12s", digest + 7);
		else
			snprintf(name, sizeof(name), "%.63s", p);
		r = apply_layer(t, b, p, digest, -1, name);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- detection ---- */

enum kind { KIND_LAYER, KIND_DOCKER, KIND_OCI_ARCHIVE };

/* Could this entry be part of a docker-save or OCI archive? Those hold
 * top-level "*.json", "repositories", "oci-layout", directories, "blobs/..."
 * and "<id>/{layer.tar,json,VERSION}", nothing else. */
static bool image_archive_name(const char *n, mode_t type)
{
	const char *slash = strchr(n, '/');
	size_t len = strlen(n);

	if (!*n || strcmp(n, "blobs") == 0 || strncmp(n, "blobs/", 6) == 0)
		return true;
	if (!slash)
		return type == AE_IFDIR || strcmp(n, "repositories") == 0 ||
		       strcmp(n, "oci-layout") == 0 ||
		       (len > 5 && strcmp(n + len - 5, ".json") == 0);
	if (strchr(slash + 1, '/'))
		return false;
	return strcmp(slash, "/VERSION") == 0 || strcmp(slash, "/json") == 0 ||
	       strcmp(slash, "/layer.tar") == 0;
}

/* Scans the headers while they look like an image archive (stops at the
 * first that cannot be, so a plain layer costs one header). */
static enum kind detect(const char *source, int fd, json_t **manifest)
{
	struct archive *a = archive_read_new();
	bool oci_layout = false, index = false;
	enum kind k = KIND_LAYER;

	if (!a)
		return KIND_LAYER;
	support_filters(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	if (archive_read_open_fd(a, fd, READ_BUF) != ARCHIVE_OK)
		goto out;
	for (;;) {
		struct archive_entry *e;
		_cleanup_free_ char *n = NULL;
		int r = archive_read_next_header(a, &e);

		if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
			break;
		n = archive_entry_pathname(e) ? norm_member(NULL, archive_entry_pathname(e)) : NULL;
		if (!n || !image_archive_name(n, archive_entry_filetype(e)))
			break;
		if (strcmp(n, "oci-layout") == 0)
			oci_layout = true;
		if (strcmp(n, "index.json") == 0)
			index = true;
		if (strcmp(n, "manifest.json") == 0 && archive_entry_filetype(e) == AE_IFREG) {
			la_int64_t size = archive_entry_size(e);
			_cleanup_free_ char *buf = NULL;
			json_error_t err;
			la_ssize_t got;

			if (size < 0 || size > JSON_MAX)
				break;
			buf = malloc((size_t)size + 1);
			if (!buf)
				break;
			got = archive_read_data(a, buf, (size_t)size);
			if (got != size)
				break;
			*manifest = json_loadb(buf, (size_t)size, 0, &err);
			if (!*manifest)
				log_warn("'%s': manifest.json: invalid JSON at line %d: %s", source,
					 err.line, err.text);
			else
				k = KIND_DOCKER;
			break;
		}
	}
	if (k == KIND_LAYER && oci_layout && index)
		k = KIND_OCI_ARCHIVE;
out:
	archive_read_free(a);
	return k;
}

/* ---- entry point ---- */

static int ingest_file(struct slimfs_tree *t, const char *source, int fd,
		       const struct slimfs_build_opts *o, char **config, size_t *config_len)
{
	struct blobs b = {.source = source, .dirfd = -1};
	json_t *manifest = NULL;
	enum kind k = detect(source, fd, &manifest);
	int r;

	switch (k) {
	case KIND_DOCKER:
		log_debug("'%s': docker-save tarball", source);
		r = ingest_docker(t, &b, fd, manifest, o, config, config_len);
		break;
	case KIND_OCI_ARCHIVE:
		log_debug("'%s': OCI layout archive", source);
		b.all = true;
		r = member_want(&b, "index.json");
		if (r >= 0)
			r = extract_members(&b, fd);
		if (r >= 0)
			r = ingest_oci(t, &b, o, config, config_len);
		break;
	default: {
		struct archive *a = archive_read_new();

		if (!a)
			return -ENOMEM;
		support_filters(a);
		archive_read_support_format_tar(a);
		archive_read_support_format_gnutar(a);
		archive_read_support_format_cpio(a);
		archive_read_support_format_empty(a);
		t->layer++;
		if (lseek(fd, 0, SEEK_SET) < 0 ||
		    archive_read_open_fd(a, fd, READ_BUF) != ARCHIVE_OK) {
			log_error("layer %s: cannot open: %s", source,
				  archive_error_string(a) ? archive_error_string(a)
							  : "unknown error");
			r = -EBADMSG;
		} else {
			r = slimfs_ingest_archive(t, a, source);
		}
		archive_read_free(a);
		break;
	}
	}
	json_decref(manifest);
	blobs_clear(&b);
	return r;
}

int slimfs_ingest(struct slimfs_tree *t, const char *source, const struct slimfs_build_opts *o,
		  char **config, size_t *config_len)
{
	_cleanup_close_ int fd = open(source, O_RDONLY | O_CLOEXEC);
	struct stat st;
	int r;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", source);
	if (fstat(fd, &st) < 0)
		return log_error_errno(-errno, "cannot stat '%s'", source);
	if (S_ISDIR(st.st_mode)) {
		struct blobs b = {.source = source, .dirfd = steal_fd(&fd)};

		if (faccessat(b.dirfd, "oci-layout", F_OK, 0) == 0 &&
		    faccessat(b.dirfd, "index.json", F_OK, 0) == 0) {
			log_debug("'%s': OCI image layout", source);
			r = slimfs_dl_archive_load();
			if (r >= 0)
				r = ingest_oci(t, &b, o, config, config_len);
		} else {
			t->layer++;
			r = slimfs_ingest_dir(t, source);
		}
		blobs_clear(&b);
		return r;
	}
	r = slimfs_dl_archive_load(); /* a plain directory does without libarchive */
	if (r < 0)
		return r;
	return ingest_file(t, source, fd, o, config, config_len);
}
