// SPDX-License-Identifier: MIT
/* Opening an image through a backend, and simple uncached reads. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "image.h"
#include "slimfs/format.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"

/* An index larger than this is refused before it is read (a hostile server). */
#define INDEX_MAX (1ull << 32)

/*
 * Opens the index in img->index_buf and, when digest is not NULL, first
 * checks that the bytes as fetched have that SHA-256 (-EBADMSG), before the
 * reader parses (and decompresses) them. name and what ("index", "cached
 * index") say which in messages. Takes img: *out on success, closed on
 * failure.
 */
static int open_index(struct slimfs_image *img, const uint8_t *digest, const char *name,
		      const char *what, struct slimfs_image **out)
{
	uint8_t sum[32];
	char want[65], have[65];
	int r;

	if (digest) {
		slimfs_sha256(img->index_buf, img->index_len, sum);
		if (memcmp(digest, sum, 32) != 0) {
			slimfs_hex(digest, 32, want);
			slimfs_hex(sum, 32, have);
			log_error("'%s': %s digest is sha256:%s, expected sha256:%s", name, what,
				  have, want);
			r = -EBADMSG;
			goto fail;
		}
	}
	r = slimfs_index_open_mem_hashed(img->index_buf, img->index_len, digest ? sum : NULL,
					 &img->idx);
	if (r < 0) {
		log_error_errno(r, "'%s': bad %s", name, what);
		goto fail;
	}
	img->info = slimfs_index_info(img->idx);
	*out = img;
	return 0;
fail:
	slimfs_image_close(img);
	return r;
}

int slimfs_image_open(const char *src, const struct slimfs_fetch_opts *fo, const uint8_t *digest,
		      struct slimfs_image **out)
{
	struct slimfs_image *img;
	uint8_t super[SLIMFS_SUPER_SIZE];
	uint64_t index_size, data_off;
	int fd, r;

	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->source = strdup(src);
	if (!img->source) {
		r = -ENOMEM;
		goto fail;
	}
	r = slimfs_backend_open(src, fo, &img->backend);
	if (r < 0)
		goto fail;
	if (img->backend->size && img->backend->size < SLIMFS_SUPER_SIZE) {
		log_error("'%s': not a slimfs image (%llu bytes is too short)", src,
			  (unsigned long long)img->backend->size);
		r = -EBADMSG;
		goto fail;
	}
	r = slimfs_backend_read(img->backend, 0, super, sizeof(super));
	if (r < 0) {
		log_error_errno(r, "'%s': cannot read the superblock", src);
		goto fail;
	}
	r = slimfs_index_peek(super, sizeof(super), &index_size, &data_off);
	if (r < 0) {
		log_error_errno(r, "'%s': not a usable slimfs image", src);
		goto fail;
	}
	if (index_size > INDEX_MAX || (img->backend->size && index_size > img->backend->size)) {
		log_error("'%s': index size %llu is larger than the image", src,
			  (unsigned long long)index_size);
		r = -EUCLEAN;
		goto fail;
	}
	img->index_len = (size_t)index_size;
	fd = slimfs_backend_local_fd(img->backend);
	if (fd >= 0) {
		/*
		 * The index and nothing more, at once, mapped whole. A first fault
		 * in a plain mapping reads around it by the device's read-ahead
		 * (8 MiB on a virtio disk: blob data, 20x the index of the bookworm
		 * rootfs) and each 64 KiB costs a fault more; every page taken or
		 * touched costs 15-70 us in a VM. Mount: 10 faults fewer.
		 */
		(void)posix_fadvise(fd, 0, (off_t)img->index_len, POSIX_FADV_WILLNEED);
		img->index_buf =
			mmap(NULL, img->index_len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
		if (img->index_buf == MAP_FAILED) {
			img->index_buf = NULL;
			r = log_error_errno(-errno, "'%s': cannot map the index", src);
			goto fail;
		}
		img->index_mapped = true;
	} else {
		img->index_buf = malloc(img->index_len);
		if (!img->index_buf) {
			r = -ENOMEM;
			goto fail;
		}
		r = slimfs_backend_read(img->backend, 0, img->index_buf, img->index_len);
		if (r < 0) {
			log_error_errno(r, "'%s': cannot read the index", src);
			goto fail;
		}
	}
	if (!digest && img->backend->pinned)
		digest = img->backend->index_digest;
	return open_index(img, digest, src, "index", out);
fail:
	slimfs_image_close(img);
	return r;
}

void slimfs_image_close(struct slimfs_image *img)
{
	if (!img)
		return;
	slimfs_index_free(img->idx);
	if (img->index_mapped)
		munmap(img->index_buf, img->index_len);
	else
		free(img->index_buf);
	slimfs_backend_free(img->backend);
	free(img->source);
	free(img);
}

int slimfs_image_fetch(struct slimfs_image *img, const struct slimfs_chunk *c, void *frame)
{
	return slimfs_backend_read(img->backend, c->off, frame, c->csize);
}

int slimfs_reader_init(struct slimfs_reader *r, struct slimfs_image *img)
{
	memset(r, 0, sizeof(*r));
	r->img = img;
	r->cached = UINT32_MAX;
	r->dctx = ZSTD_createDCtx();
	r->plain = malloc(SLIMFS_CHUNK_MAX);
	r->frame_cap = ZSTD_compressBound(SLIMFS_CHUNK_MAX);
	r->frame = malloc(r->frame_cap);
	if (!r->dctx || !r->plain || !r->frame) {
		slimfs_reader_fini(r);
		return -ENOMEM;
	}
	return 0;
}

void slimfs_reader_fini(struct slimfs_reader *r)
{
	ZSTD_freeDCtx(r->dctx);
	free(r->plain);
	free(r->frame);
	memset(r, 0, sizeof(*r));
}

int slimfs_reader_chunk(struct slimfs_reader *r, uint32_t i, const uint8_t **plain, uint32_t *len)
{
	struct slimfs_chunk c;
	int ret;

	if (r->cached == i) {
		*plain = r->plain;
		*len = r->plain_len;
		return 0;
	}
	ret = slimfs_index_chunk(r->img->idx, i, &c);
	if (ret < 0)
		return ret;
	if (c.csize > r->frame_cap)
		return -EUCLEAN;
	r->cached = UINT32_MAX;
	ret = slimfs_image_fetch(r->img, &c, r->frame);
	if (ret < 0)
		return log_error_errno(ret, "'%s': chunk %u: cannot read %u bytes at %llu",
				       r->img->source, i, c.csize, (unsigned long long)c.off);
	ret = slimfs_chunk_decode(&c, r->frame, c.csize, r->plain, r->dctx);
	if (ret < 0)
		return log_error_errno(ret, "'%s': chunk %u at %llu is corrupt", r->img->source, i,
				       (unsigned long long)c.off);
	r->cached = i;
	r->plain_len = c.usize;
	*plain = r->plain;
	*len = r->plain_len;
	return 0;
}

ssize_t slimfs_reader_pread(struct slimfs_reader *r, const struct slimfs_inode *ino, void *buf,
			    size_t len, uint64_t off)
{
	struct slimfs_extent_iter it;
	uint8_t *out = buf;
	int ret;

	if (off >= ino->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, ino->size - off);
	memset(out, 0, len);
	slimfs_extent_iter_init(&it, r->img->idx, ino, off, off + len, 0);
	while ((ret = slimfs_extent_next(&it)) > 0) {
		const uint8_t *plain;
		uint32_t plain_len;

		ret = slimfs_reader_chunk(r, it.x.chunk, &plain, &plain_len);
		if (ret == 0)
			ret = slimfs_extent_check(&it.x, plain_len);
		if (ret < 0)
			return ret;
		memcpy(out + (it.from - off), plain + it.chunk_from, it.to - it.from);
	}
	return ret < 0 ? ret : (ssize_t)len;
}

/* --- the index cache, and images opened from it when offline */

static bool is_remote_src(const char *src)
{
	return strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0 ||
	       strncmp(src, "oci://", 6) == 0;
}

/* DIR/index/<sha256(src) hex><suffix> */
static char *index_cache_path(const char *dir, const char *src, const char *suffix)
{
	uint8_t key[32];
	char hex[65], *p;

	slimfs_sha256(src, strlen(src), key);
	slimfs_hex(key, 32, hex);
	if (asprintf(&p, "%s/index/%s%s", dir, hex, suffix) < 0)
		return NULL;
	return p;
}

/* Writes buf to path atomically (temporary file + rename). */
static int write_atomic(const char *path, const void *buf, size_t len)
{
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -1;
	int r;

	if (asprintf(&tmp, "%s.tmp-%d", path, (int)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = slimfs_write_all(fd, buf, len);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

static void index_cache_store(struct slimfs_image *img, const char *dir)
{
	_cleanup_free_ char *sub = NULL, *path = NULL, *pin = NULL;
	int r;

	if (asprintf(&sub, "%s/index", dir) < 0)
		return;
	if ((mkdir(dir, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(sub, 0755) < 0 && errno != EEXIST)) {
		log_warn_errno(-errno, "cannot create '%s': the index is not cached", sub);
		return;
	}
	path = index_cache_path(dir, img->source, "");
	pin = index_cache_path(dir, img->source, ".pin");
	if (!path || !pin)
		return;
	r = write_atomic(path, img->index_buf, img->index_len);
	if (r < 0) {
		log_warn_errno(r, "cannot cache the index in '%s'", path);
		return;
	}
	if (img->backend->pinned) {
		char hex[66];

		slimfs_hex(img->backend->index_digest, 32, hex);
		hex[64] = '\n';
		r = write_atomic(pin, hex, 65);
		if (r < 0)
			log_warn_errno(r, "cannot write '%s'", pin);
	} else {
		unlink(pin);
	}
	log_debug("index of '%s' cached in '%s'", img->source, path);
}

/* A backend for an image whose source is unreachable: every read fails. */
static int offline_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	(void)off, (void)buf, (void)len;
	__atomic_fetch_add(&b->stats.errors, 1, __ATOMIC_RELAXED);
	return -EIO;
}

static void offline_free(struct slimfs_backend *b)
{
	(void)b;
}

static const struct slimfs_backend_ops offline_ops = {
	.read = offline_read,
	.free = offline_free,
};

static int open_offline(const char *src, const uint8_t *digest, const char *dir,
			struct slimfs_image **out)
{
	_cleanup_free_ char *path = index_cache_path(dir, src, "");
	_cleanup_free_ char *pin = index_cache_path(dir, src, ".pin");
	_cleanup_close_ int fd = -1;
	struct slimfs_image *img;
	uint8_t pinned[32];
	struct stat st;
	char hex[66];
	int r;

	if (!path || !pin)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size < (off_t)SLIMFS_SUPER_SIZE || (uint64_t)st.st_size > INDEX_MAX) {
		log_error("'%s': cached index has a bad size", path);
		return -EUCLEAN;
	}
	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->offline = true;
	img->source = strdup(src);
	img->backend = calloc(1, sizeof(*img->backend));
	img->index_len = (size_t)st.st_size;
	img->index_buf = malloc(img->index_len);
	if (!img->source || !img->backend || !img->index_buf) {
		r = -ENOMEM;
		goto fail;
	}
	img->backend->ops = &offline_ops;
	img->backend->remote = true;
	if (asprintf(&img->backend->name, "%s (offline)", src) < 0) {
		img->backend->name = NULL;
		r = -ENOMEM;
		goto fail;
	}
	r = slimfs_pread_all(fd, img->index_buf, img->index_len, 0);
	if (r < 0) {
		log_error_errno(r, "cannot read '%s'", path);
		goto fail;
	}
	if (!digest) {
		_cleanup_close_ int pfd = open(pin, O_RDONLY | O_CLOEXEC);

		if (pfd >= 0 && read(pfd, hex, 65) == 65 && hex[64] == '\n') {
			hex[64] = '\0';
			if (slimfs_parse_digest(hex, pinned) == 0)
				digest = pinned;
		}
	}
	return open_index(img, digest, path, "cached index", out);
fail:
	slimfs_image_close(img);
	return r;
}

void slimfs_image_store_index(struct slimfs_image *img, const char *cache_dir)
{
	if (cache_dir && img->backend->remote && !img->offline)
		index_cache_store(img, cache_dir);
}

static int open_cached(const char *src, const struct slimfs_fetch_opts *fo, const uint8_t *digest,
		       const char *cache_dir, bool store, struct slimfs_image **out)
{
	struct slimfs_image *img;
	int r, o;

	r = slimfs_image_open(src, fo, digest, &img);
	if (r == 0) {
		if (store)
			slimfs_image_store_index(img, cache_dir);
		*out = img;
		return 0;
	}
	/* Not when the source answered with the wrong or a broken image. */
	if (!cache_dir || !is_remote_src(src) || r == -EBADMSG || r == -EUCLEAN ||
	    r == -EPROTONOSUPPORT || r == -ENOMEM)
		return r;
	o = open_offline(src, digest, cache_dir, &img);
	if (o < 0) {
		if (o != -ENOENT)
			log_error_errno(o, "'%s': cannot use the cached index either", src);
		return r;
	}
	log_warn("'%s' is unreachable: serving what the cache holds (offline)", src);
	*out = img;
	return 0;
}

int slimfs_image_open_cached(const char *src, const struct slimfs_fetch_opts *fo,
			     const uint8_t *digest, const char *cache_dir,
			     struct slimfs_image **out)
{
	return open_cached(src, fo, digest, cache_dir, true, out);
}

int slimfs_image_open_cached_deferred(const char *src, const struct slimfs_fetch_opts *fo,
				      const uint8_t *digest, const char *cache_dir,
				      struct slimfs_image **out)
{
	return open_cached(src, fo, digest, cache_dir, false, out);
}

/* --- option values */

/* Number with an optional fraction: value in *v, the rest in *end. */
static int parse_decimal(const char *s, double *v, const char **end)
{
	char *e;

	errno = 0;
	if (!(*s >= '0' && *s <= '9') && *s != '.')
		return -EINVAL;
	*v = strtod(s, &e);
	if (errno || e == s || *v < 0 || *v != *v)
		return -EINVAL;
	*end = e;
	return 0;
}

int slimfs_parse_rate(const char *s, uint64_t *out)
{
	const char *u;
	double v, mul = 1;
	bool bits;

	if (parse_decimal(s, &v, &u) < 0)
		return -EINVAL;
	switch (*u) {
	case 'k':
	case 'K':
		mul = 1e3;
		u++;
		break;
	case 'm':
	case 'M':
		mul = 1e6;
		u++;
		break;
	case 'g':
	case 'G':
		mul = 1e9;
		u++;
		break;
	default:
		break;
	}
	if (*u == 'i' && mul > 1) {
		mul = mul == 1e3 ? 1024.0 : mul == 1e6 ? 1048576.0 : 1073741824.0;
		u++;
	}
	if (strcasecmp(u, "bit") == 0 || strcasecmp(u, "bit/s") == 0 ||
	    strcasecmp(u, "bits") == 0 || strcmp(u, "bps") == 0)
		bits = true;
	else if (!*u || strcmp(u, "B") == 0 || strcmp(u, "B/s") == 0 || strcmp(u, "Bps") == 0)
		bits = false;
	else
		return -EINVAL;
	v *= mul;
	if (bits)
		v /= 8;
	if (v < 1 || v > 1e15)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int slimfs_parse_duration(const char *s, uint64_t unit_ns, uint64_t *out)
{
	const char *u;
	double v, mul;

	if (parse_decimal(s, &v, &u) < 0)
		return -EINVAL;
	if (!*u)
		mul = (double)unit_ns;
	else if (strcmp(u, "ns") == 0)
		mul = 1;
	else if (strcmp(u, "us") == 0)
		mul = 1e3;
	else if (strcmp(u, "ms") == 0)
		mul = 1e6;
	else if (strcmp(u, "s") == 0)
		mul = 1e9;
	else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
		mul = 60e9;
	else
		return -EINVAL;
	v *= mul;
	if (v > 1e15)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int slimfs_parse_fetch_opt(const char *what, const char *key, const char *v,
			   struct slimfs_fetch_opts *f)
{
	uint64_t x;
	char *end;
	unsigned long n;

	if (strcmp(key, "timeout") == 0) {
		if (slimfs_parse_duration(v, 1000000000ull, &x) < 0 || x < 1000000 ||
		    x > 86400000000000ull) {
			log_error("%s: '%s' is not a timeout (seconds, or e.g. 500ms)", what, v);
			return -EINVAL;
		}
		f->timeout_ms = (unsigned)(x / 1000000);
	} else if (strcmp(key, "retries") == 0) {
		errno = 0;
		n = strtoul(v, &end, 10);
		if (errno || end == v || *end || n < 1 || n > 100) {
			log_error("%s: '%s' is not a number in 1..100", what, v);
			return -EINVAL;
		}
		f->retries = (unsigned)n;
	} else if (strcmp(key, "rate") == 0) {
		if (slimfs_parse_rate(v, &f->rate_bps) < 0) {
			log_error("%s: '%s' is not a rate (e.g. 100mbit or 12.5MB/s)", what, v);
			return -EINVAL;
		}
	} else if (strcmp(key, "cacert") == 0) {
		if (access(v, R_OK) < 0) {
			log_error("%s: cannot read '%s': %s", what, v, strerror(errno));
			return -EINVAL;
		}
		f->ca_file = v; /* the caller keeps v alive */
	} else if (strcmp(key, "rtt") == 0) {
		if (slimfs_parse_duration(v, 1000000ull, &x) < 0 || x > 60000000000ull) {
			log_error("%s: '%s' is not a delay (e.g. 20ms)", what, v);
			return -EINVAL;
		}
		f->rtt_us = (unsigned)(x / 1000);
	} else {
		return -ENOENT;
	}
	return 0;
}
