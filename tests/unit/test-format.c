// SPDX-License-Identifier: MIT
/*
 * Index reader and chunk decoder against hand-made indexes: a tiny writer
 * below encodes a model (root dir, a file with holes and an xattr, a
 * symlink, a subdir holding a hardlink, one chunk, one view, a prefetch
 * list, a config) and every test mutates the model or the bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>
#include <zstd.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "tap.h"

/* ---- model and writer ---- */

struct model {
	struct slimfs_disk_inode *ino;
	struct slimfs_disk_dirent *de;
	char *str;
	struct slimfs_disk_xattr *xa;
	struct slimfs_disk_chunk *ch;
	struct slimfs_disk_extent *ex;
	struct slimfs_disk_view *vw;
	uint32_t *pf;
	size_t nino, nde, nstr, nxa, nch, nex, nvw, npf;
	uint64_t config_off, config_len;
	uint64_t data_size;
	uint32_t default_view;
};

#define PUSH(arr, n)                                                                               \
	(arr = realloc(arr, (n + 1) * sizeof(*arr)), memset(&arr[n], 0, sizeof(*arr)), &arr[n++])

static void model_free(struct model *m)
{
	free(m->ino);
	free(m->de);
	free(m->str);
	free(m->xa);
	free(m->ch);
	free(m->ex);
	free(m->vw);
	free(m->pf);
	memset(m, 0, sizeof(*m));
}

static uint64_t add_str(struct model *m, const char *s, size_t len)
{
	uint64_t off = m->nstr;

	m->str = realloc(m->str, m->nstr + len + 1);
	memcpy(m->str + m->nstr, s, len);
	m->nstr += len;
	return off;
}

static uint32_t add_inode(struct model *m, uint32_t mode, uint64_t size, uint64_t data,
			  uint32_t count, uint32_t parent)
{
	struct slimfs_disk_inode *i = PUSH(m->ino, m->nino);

	i->mode = htole32(mode);
	i->uid = htole32(1000);
	i->gid = htole32(100);
	i->nlink = htole32(1);
	i->size = htole64(size);
	i->mtime = htole64(1700000000);
	i->mtime_ns = htole32(123456789);
	i->views = htole32(1);
	i->data = htole64(data);
	i->count = htole32(count);
	i->parent = htole32(parent);
	return (uint32_t)(m->nino - 1);
}

static void add_dirent(struct model *m, const char *name, uint32_t ino)
{
	struct slimfs_disk_dirent *d = PUSH(m->de, m->nde);

	d->name_off = htole64(add_str(m, name, strlen(name)));
	d->name_len = htole32((uint32_t)strlen(name));
	d->ino = htole32(ino);
}

static void add_extent(struct model *m, uint64_t file_off, uint32_t chunk, uint32_t coff,
		       uint32_t len)
{
	struct slimfs_disk_extent *e = PUSH(m->ex, m->nex);

	e->file_off = htole64(file_off);
	e->chunk = htole32(chunk);
	e->chunk_off = htole32(coff);
	e->len = htole32(len);
}

static void put_section(uint8_t *sup, int s, uint64_t off, uint64_t count)
{
	struct slimfs_disk_section sec = {htole64(off), htole64(count)};

	memcpy(sup + offsetof(struct slimfs_disk_super, sections) + (size_t)s * sizeof(sec), &sec,
	       sizeof(sec));
}

static void fix_checksum(uint8_t *b, size_t len)
{
	XXH3_state_t st;
	uint64_t zero = 0, h;

	XXH3_INITSTATE(&st);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, b, 248);
	XXH3_64bits_update(&st, &zero, 8);
	XXH3_64bits_update(&st, b + 256, len - 256);
	h = htole64(XXH3_64bits_digest(&st));
	memcpy(b + 248, &h, 8);
}

/* Serialises m; returns a malloc'd buffer of exactly *len (= index_size) bytes. */
static uint8_t *model_write(const struct model *m, size_t *len)
{
	struct {
		const void *p;
		size_t n, rs;
	} secs[SLIMFS_SEC_COUNT] = {
		{m->ino, m->nino, sizeof(*m->ino)},
		{m->de, m->nde, sizeof(*m->de)},
		{m->str, m->nstr, 1},
		{m->xa, m->nxa, sizeof(*m->xa)},
		{m->ch, m->nch, sizeof(*m->ch)},
		{m->ex, m->nex, sizeof(*m->ex)},
		{m->vw, m->nvw, sizeof(*m->vw)},
		{m->pf, m->npf, sizeof(*m->pf)},
	};
	struct slimfs_disk_super s;
	size_t off = 256;
	uint8_t *b;

	for (int i = 0; i < SLIMFS_SEC_COUNT; i++)
		off = (off + secs[i].n * secs[i].rs + 7) & ~(size_t)7;
	b = calloc(1, off);
	memset(&s, 0, sizeof(s));
	memcpy(s.magic, SLIMFS_MAGIC, SLIMFS_MAGIC_LEN);
	s.version_major = htole16(SLIMFS_VERSION_MAJOR);
	s.version_minor = htole16(SLIMFS_VERSION_MINOR);
	s.inode_size = htole32(sizeof(struct slimfs_disk_inode));
	s.dirent_size = htole32(sizeof(struct slimfs_disk_dirent));
	s.xattr_size = htole32(sizeof(struct slimfs_disk_xattr));
	s.chunk_size = htole32(sizeof(struct slimfs_disk_chunk));
	s.extent_size = htole32(sizeof(struct slimfs_disk_extent));
	s.cdc_min = htole32(16384);
	s.cdc_avg = htole32(65536);
	s.cdc_max = htole32(262144);
	s.zstd_level = htole32((uint32_t)-3);
	s.small_file_max = htole32(16384);
	s.default_view = htole32(m->default_view);
	s.index_size = htole64(off);
	s.data_off = htole64((off + 4095) & ~(uint64_t)4095);
	s.data_size = htole64(m->data_size);
	s.entry_count = htole64(m->nino);
	s.config_off = htole64(m->config_off);
	s.config_len = htole64(m->config_len);
	memcpy(b, &s, sizeof(s));
	off = 256;
	for (int i = 0; i < SLIMFS_SEC_COUNT; i++) {
		put_section(b, i, off, secs[i].n);
		if (secs[i].n)
			memcpy(b + off, secs[i].p, secs[i].n * secs[i].rs);
		off = (off + secs[i].n * secs[i].rs + 7) & ~(size_t)7;
	}
	*len = off;
	fix_checksum(b, off);
	return b;
}

/* ---- the sample image ---- */

static uint8_t plain[64];
static uint8_t frame[256];
static size_t frame_len;

enum { ROOT, FILE_, LINK, SUB, NSAMPLE };

static void make_chunk(struct model *m)
{
	struct slimfs_disk_chunk *c = PUSH(m->ch, m->nch);
	XXH128_canonical_t canon;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)("hello, slimfs! "[i % 15]);
	frame_len = ZSTD_compress(frame, sizeof(frame), plain, sizeof(plain), 3);
	XXH128_canonicalFromHash(&canon, XXH3_128bits(plain, sizeof(plain)));
	memcpy(c->id, canon.digest, 16);
	slimfs_sha256(frame, frame_len, c->sha256);
	c->off = htole64(0);
	c->csize = htole32((uint32_t)frame_len);
	c->usize = htole32(sizeof(plain));
	m->data_size = frame_len;
}

/*
 * /            dir: file, link, sub
 * /file        100 bytes: [0,20) = chunk[0,20), [50,70) = chunk[20,40), rest holes
 * /link        -> file
 * /sub/hard    hardlink of /file
 */
static void sample(struct model *m)
{
	static const char cfg[] = "{\"config\":{\"Cmd\":[\"/file\"]}}";
	struct slimfs_disk_xattr *x;
	struct slimfs_disk_view *v;

	memset(m, 0, sizeof(*m));
	m->default_view = 0;
	make_chunk(m);
	add_inode(m, S_IFDIR | 0755, 0, 0, 3, 0);
	add_inode(m, S_IFREG | 04755, 100, 0, 2, 0);
	add_inode(m, S_IFLNK | 0777, 4, add_str(m, "file", 4), 4, 0);
	add_inode(m, S_IFDIR | 0700, 0, 3, 1, 0);
	m->ino[FILE_].nlink = htole32(2);
	m->ino[FILE_].xattr_start = 0;
	m->ino[FILE_].xattr_count = htole32(1);
	add_dirent(m, "file", FILE_);
	add_dirent(m, "link", LINK);
	add_dirent(m, "sub", SUB);
	add_dirent(m, "hard", FILE_);
	add_extent(m, 0, 0, 0, 20);
	add_extent(m, 50, 0, 20, 20);
	x = PUSH(m->xa, m->nxa);
	x->name_off = htole64(add_str(m, "user.test", 9));
	x->name_len = htole32(9);
	x->value_off = htole64(add_str(m, "v", 1));
	x->value_len = htole32(1);
	v = PUSH(m->vw, m->nvw);
	v->name_off = htole64(add_str(m, "minimal", 7));
	v->name_len = htole32(7);
	v->flags = htole32(SLIMFS_VIEW_DEFAULT);
	*PUSH(m->pf, m->npf) = htole32(0);
	m->config_off = add_str(m, cfg, sizeof(cfg) - 1);
	m->config_len = sizeof(cfg) - 1;
}

static int open_model(const struct model *m, struct slimfs_index **idx, uint8_t **buf)
{
	size_t len;
	int r;

	*buf = model_write(m, &len);
	r = slimfs_index_open_mem(*buf, len, idx);
	return r;
}

/* Opens a mutated sample; returns open's result (index freed). */
static int try_open(const struct model *m)
{
	struct slimfs_index *idx = NULL;
	uint8_t *buf;
	int r = open_model(m, &idx, &buf);

	slimfs_index_free(idx);
	free(buf);
	return r;
}

/* ---- walking everything (for the corruption sweep) ---- */

struct bounds {
	const uint8_t *lo, *hi;
	int bad;
};

static void in_buf(struct bounds *b, const void *p, uint64_t len)
{
	const uint8_t *q = p;

	if (len && (q < b->lo || q > b->hi || len > (uint64_t)(b->hi - q)))
		b->bad++;
}

static void walk(const struct slimfs_index *idx, struct bounds *b)
{
	const struct slimfs_info *in = slimfs_index_info(idx);
	char dig[72];

	slimfs_index_digest_str(idx, dig);
	in_buf(b, in->config, in->config_len);
	for (uint32_t id = 0; id < in->inode_count; id++) {
		struct slimfs_inode ino;

		if (slimfs_index_inode(idx, id, &ino) < 0) {
			b->bad++;
			continue;
		}
		if (S_ISLNK(ino.mode))
			in_buf(b, ino.target, ino.target_len);
		for (uint32_t i = 0; i < ino.xattr_count; i++) {
			struct slimfs_xattr x;

			if (slimfs_index_xattr(idx, &ino, i, &x) < 0) {
				b->bad++;
				continue;
			}
			in_buf(b, x.name, x.name_len);
			in_buf(b, x.value, x.value_len);
		}
		if (S_ISDIR(ino.mode)) {
			for (uint32_t i = 0; i < ino.count; i++) {
				struct slimfs_dirent d;
				uint32_t found;

				if (slimfs_index_dirent(idx, &ino, i, &d) < 0) {
					b->bad++;
					continue;
				}
				in_buf(b, d.name, d.name_len);
				if (slimfs_index_lookup(idx, &ino, d.name, d.name_len, &found) <
					    0 ||
				    found != d.ino || d.ino >= in->inode_count)
					b->bad++;
			}
		}
		if (S_ISREG(ino.mode)) {
			uint64_t end = 0;

			for (uint32_t i = 0; i < ino.count; i++) {
				struct slimfs_extent e;
				struct slimfs_chunk c;

				if (slimfs_index_extent(idx, &ino, i, &e) < 0 ||
				    slimfs_index_chunk(idx, e.chunk, &c) < 0 ||
				    e.chunk_off + (uint64_t)e.len > c.usize || e.file_off < end ||
				    e.file_off + e.len > ino.size) {
					b->bad++;
					continue;
				}
				end = e.file_off + e.len;
			}
			(void)slimfs_index_extent_find(idx, &ino, ino.size / 2);
		}
	}
	for (uint32_t i = 0; i < in->chunk_count; i++) {
		struct slimfs_chunk c;

		if (slimfs_index_chunk(idx, i, &c) < 0) {
			b->bad++;
			continue;
		}
		in_buf(b, c.id, 16);
		in_buf(b, c.sha256, 32);
		if (c.off + c.csize > in->data_off + in->data_size)
			b->bad++;
	}
	for (uint32_t i = 0; i < in->view_count; i++) {
		struct slimfs_view v;

		if (slimfs_index_view(idx, i, &v) < 0)
			b->bad++;
		else
			in_buf(b, v.name, v.name_len);
	}
	for (uint64_t i = 0; i < in->prefetch_count; i++) {
		uint32_t c;

		if (slimfs_index_prefetch(idx, i, &c) < 0 || c >= in->chunk_count)
			b->bad++;
	}
	{
		uint32_t x;

		(void)slimfs_index_resolve(idx, "/sub/../sub/hard", &x);
		(void)slimfs_index_resolve(idx, "link/..", &x);
	}
}

static bool errno_ok(int r)
{
	return r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EUCLEAN;
}

/* ---- tests ---- */

static void test_good(void)
{
	struct model m;
	struct slimfs_index *idx = NULL;
	const struct slimfs_info *in;
	struct slimfs_inode root, file, lnk, sub;
	struct slimfs_dirent d;
	struct slimfs_xattr x;
	struct slimfs_extent e;
	struct slimfs_chunk c;
	struct slimfs_view v;
	uint8_t *buf, sha[32];
	uint64_t isz, doff;
	uint32_t id;
	char dig[72], hex[65];
	size_t len;

	sample(&m);
	buf = model_write(&m, &len);
	CHECK_EQ(slimfs_index_peek(buf, len, &isz, &doff), 0);
	CHECK_EQ(isz, len);
	CHECK_EQ(doff, 4096);
	CHECK_EQ(slimfs_index_peek(buf, 255, &isz, &doff), -EBADMSG);
	CHECK_EQ(slimfs_index_open_mem(buf, len - 1, &idx), -EUCLEAN);
	CHECK(idx == NULL);
	CHECK_EQ(slimfs_index_open_mem(buf, len, &idx), 0);
	if (!idx) {
		free(buf);
		model_free(&m);
		return;
	}
	in = slimfs_index_info(idx);
	CHECK_EQ(in->inode_count, NSAMPLE);
	CHECK_EQ(in->dirent_count, 4);
	CHECK_EQ(in->chunk_count, 1);
	CHECK_EQ(in->extent_count, 2);
	CHECK_EQ(in->view_count, 1);
	CHECK_EQ(in->prefetch_count, 1);
	CHECK_EQ(in->zstd_level, -3);
	CHECK_EQ(in->default_view, 0);
	CHECK(in->config_len == m.config_len && memcmp(in->config, "{\"config\"", 9) == 0);

	slimfs_sha256(buf, len, sha);
	CHECK(memcmp(slimfs_index_digest(idx), sha, 32) == 0);
	slimfs_index_digest_str(idx, dig);
	slimfs_hex(sha, 32, hex);
	CHECK(strncmp(dig, "sha256:", 7) == 0 && strcmp(dig + 7, hex) == 0);

	CHECK_EQ(slimfs_index_inode(idx, ROOT, &root), 0);
	CHECK(S_ISDIR(root.mode) && root.count == 3 && root.parent == 0);
	CHECK_EQ(slimfs_index_inode(idx, NSAMPLE, &file), -ENOENT);
	CHECK_EQ(slimfs_index_inode(idx, FILE_, &file), 0);
	CHECK(S_ISREG(file.mode) && (file.mode & 07777) == 04755 && file.size == 100);
	CHECK(file.uid == 1000 && file.gid == 100 && file.nlink == 2);
	CHECK(file.mtime == 1700000000 && file.mtime_ns == 123456789);
	CHECK_EQ(slimfs_index_inode(idx, LINK, &lnk), 0);
	CHECK(S_ISLNK(lnk.mode) && lnk.target_len == 4 && memcmp(lnk.target, "file", 4) == 0);
	CHECK_EQ(slimfs_index_inode(idx, SUB, &sub), 0);

	CHECK_EQ(slimfs_index_dirent(idx, &root, 1, &d), 0);
	CHECK(d.name_len == 4 && memcmp(d.name, "link", 4) == 0 && d.ino == LINK);
	CHECK_EQ(slimfs_index_dirent(idx, &root, 3, &d), -EINVAL);
	CHECK_EQ(slimfs_index_dirent(idx, &file, 0, &d), -ENOTDIR);
	CHECK_EQ(slimfs_index_lookup(idx, &root, "sub", 3, &id), 0);
	CHECK_EQ(id, SUB);
	CHECK_EQ(slimfs_index_lookup(idx, &root, "su", 2, &id), -ENOENT);
	CHECK_EQ(slimfs_index_lookup(idx, &root, "subx", 4, &id), -ENOENT);
	CHECK_EQ(slimfs_index_lookup(idx, &root, "a", 1, &id), -ENOENT);
	CHECK_EQ(slimfs_index_lookup(idx, &root, "zzz", 3, &id), -ENOENT);
	CHECK_EQ(slimfs_index_lookup(idx, &file, "x", 1, &id), -ENOTDIR);

	CHECK_EQ(slimfs_index_resolve(idx, "/", &id), 0);
	CHECK_EQ(id, ROOT);
	CHECK_EQ(slimfs_index_resolve(idx, "", &id), 0);
	CHECK_EQ(id, ROOT);
	CHECK_EQ(slimfs_index_resolve(idx, "/sub/hard", &id), 0);
	CHECK_EQ(id, FILE_);
	CHECK_EQ(slimfs_index_resolve(idx, "./sub//./../link", &id), 0);
	CHECK_EQ(id, LINK);
	CHECK_EQ(slimfs_index_resolve(idx, "/../../sub/", &id), 0);
	CHECK_EQ(id, SUB);
	CHECK_EQ(slimfs_index_resolve(idx, "/file/x", &id), -ENOTDIR);
	CHECK_EQ(slimfs_index_resolve(idx, "/link/x", &id), -ENOTDIR);
	CHECK_EQ(slimfs_index_resolve(idx, "/missing", &id), -ENOENT);

	CHECK_EQ(slimfs_index_xattr(idx, &file, 0, &x), 0);
	CHECK(x.name_len == 9 && memcmp(x.name, "user.test", 9) == 0);
	CHECK_EQ(slimfs_index_xattr(idx, &file, 1, &x), -EINVAL);
	CHECK_EQ(slimfs_index_getxattr(idx, &file, "user.test", &x), 0);
	CHECK(x.value_len == 1 && x.value[0] == 'v');
	CHECK_EQ(slimfs_index_getxattr(idx, &file, "user.tes", &x), -ENODATA);
	CHECK_EQ(slimfs_index_getxattr(idx, &root, "user.test", &x), -ENODATA);

	CHECK_EQ(slimfs_index_chunk(idx, 0, &c), 0);
	CHECK(c.off == 4096 && c.csize == frame_len && c.usize == sizeof(plain));
	CHECK_EQ(slimfs_index_chunk(idx, 1, &c), -EINVAL);
	CHECK_EQ(slimfs_index_extent(idx, &file, 1, &e), 0);
	CHECK(e.file_off == 50 && e.chunk == 0 && e.chunk_off == 20 && e.len == 20);
	CHECK_EQ(slimfs_index_extent(idx, &file, 2, &e), -EINVAL);
	CHECK_EQ(slimfs_index_extent(idx, &root, 0, &e), -EINVAL);
	CHECK_EQ(slimfs_index_extent_find(idx, &file, 0), 0);
	CHECK_EQ(slimfs_index_extent_find(idx, &file, 19), 0);
	CHECK_EQ(slimfs_index_extent_find(idx, &file, 20), 1);
	CHECK_EQ(slimfs_index_extent_find(idx, &file, 69), 1);
	CHECK_EQ(slimfs_index_extent_find(idx, &file, 70), 2);

	CHECK_EQ(slimfs_index_view(idx, 0, &v), 0);
	CHECK(v.name_len == 7 && memcmp(v.name, "minimal", 7) == 0 &&
	      v.flags == SLIMFS_VIEW_DEFAULT);
	CHECK_EQ(slimfs_index_view(idx, 1, &v), -EINVAL);
	CHECK_EQ(slimfs_index_view_find(idx, "minimal", &id), 0);
	CHECK_EQ(id, 0);
	CHECK_EQ(slimfs_index_view_find(idx, "full", &id), 0);
	CHECK_EQ(id, SLIMFS_VIEW_NONE);
	CHECK_EQ(slimfs_index_view_find(idx, "minima", &id), -ENOENT);
	CHECK_EQ(slimfs_index_prefetch(idx, 0, &id), 0);
	CHECK_EQ(id, 0);
	CHECK_EQ(slimfs_index_prefetch(idx, 1, &id), -EINVAL);

	/* A hand-made inode struct with a bogus range stays in bounds. */
	{
		struct slimfs_inode bogus = root;

		bogus.first = UINT32_MAX - 1;
		bogus.count = 5;
		CHECK_EQ(slimfs_index_dirent(idx, &bogus, 3, &d), -EINVAL);
		CHECK_EQ(slimfs_index_lookup(idx, &bogus, "a", 1, &id), -EINVAL);
		bogus = file;
		bogus.first = 1;
		bogus.count = UINT32_MAX;
		CHECK_EQ(slimfs_index_extent(idx, &bogus, 1, &e), -EINVAL);
		CHECK_EQ(slimfs_index_extent_find(idx, &bogus, 0), UINT32_MAX);
		bogus.xattr_start = UINT32_MAX;
		bogus.xattr_count = 2;
		CHECK_EQ(slimfs_index_xattr(idx, &bogus, 1, &x), -EINVAL);
	}
	slimfs_index_free(idx);
	slimfs_index_free(NULL);
	free(buf);
	model_free(&m);
}

/* Every byte of the index, several values, checksum fixed: clean error or bounded walk. */
struct sweep {
	unsigned opened, failed, weird, oob;
};

/* Opens the damaged index buf[0, len) (what says which) and walks it if it opens. */
static void sweep_one(struct sweep *s, const uint8_t *buf, size_t len, const char *what)
{
	struct slimfs_index *idx = NULL;
	int r = slimfs_index_open_mem(buf, len, &idx);

	if (r == 0) {
		struct bounds b = {buf, buf + len, 0};

		s->opened++;
		walk(idx, &b);
		s->oob += b.bad ? 1 : 0;
		if (b.bad)
			printf("# %s: walk found %d problems\n", what, b.bad);
	} else if (errno_ok(r)) {
		s->failed++;
	} else {
		s->weird++;
		printf("# %s: unexpected error %d\n", what, r);
	}
	slimfs_index_free(idx);
}

static void test_sweep(void)
{
	static const uint8_t xors[] = {0x01, 0x02, 0x10, 0x80, 0xff};
	struct model m;
	uint8_t *good, *buf;
	size_t len;
	struct sweep sw = {0};
	char what[64];
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	sample(&m);
	good = model_write(&m, &len);
	buf = malloc(len);
	for (size_t off = 0; off < len; off++) {
		for (size_t k = 0; k < ARRAY_SIZE(xors) + 2; k++) {
			memcpy(buf, good, len);
			if (k < ARRAY_SIZE(xors))
				buf[off] ^= xors[k];
			else
				buf[off] = k == ARRAY_SIZE(xors) ? 0 : 0xff;
			if (off < 248 || off >= 256)
				fix_checksum(buf, len);
			snprintf(what, sizeof(what), "offset %zu variant %zu", off, k);
			sweep_one(&sw, buf, len, what);
		}
	}
	/* Random multi-byte damage. */
	for (int it = 0; it < 20000; it++) {
		int nb;

		memcpy(buf, good, len);
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		nb = 1 + (int)((rng >> 60) & 3);
		for (int j = 0; j < nb; j++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			buf[(rng >> 33) % len] = (uint8_t)(rng >> 20);
		}
		fix_checksum(buf, len);
		snprintf(what, sizeof(what), "random damage %d", it);
		sweep_one(&sw, buf, len, what);
	}
	printf("# sweep: %u opened and walked, %u refused\n", sw.opened, sw.failed);
	CHECK(sw.opened > 0 && sw.failed > 0);
	CHECK_EQ(sw.weird, 0);
	CHECK_EQ(sw.oob, 0);

	/* Corruption without a checksum fix-up is always caught by the checksum. */
	memcpy(buf, good, len);
	buf[len / 2] ^= 0x40;
	{
		struct slimfs_index *idx = NULL;

		CHECK_EQ(slimfs_index_open_mem(buf, len, &idx), -EBADMSG);
	}
	free(buf);
	free(good);
	model_free(&m);
}

static int open_bytes_with(const struct model *m, void (*mut)(uint8_t *b, size_t len))
{
	struct slimfs_index *idx = NULL;
	size_t len;
	uint8_t *b = model_write(m, &len);
	int r;

	mut(b, len);
	r = slimfs_index_open_mem(b, len, &idx);
	slimfs_index_free(idx);
	free(b);
	return r;
}

static void mut_magic(uint8_t *b, size_t len)
{
	b[0] = 'X';
	fix_checksum(b, len);
}
static void mut_major(uint8_t *b, size_t len)
{
	b[8] = SLIMFS_VERSION_MAJOR + 1;
	fix_checksum(b, len);
}
static void mut_incompat(uint8_t *b, size_t len)
{
	b[12] |= 0x4;
	fix_checksum(b, len);
}
static void mut_checksum(uint8_t *b, size_t len)
{
	(void)len;
	b[250] ^= 1;
}
static void mut_recsize(uint8_t *b, size_t len)
{
	b[offsetof(struct slimfs_disk_super, dirent_size)] = 24;
	fix_checksum(b, len);
}
static void mut_section_range(uint8_t *b, size_t len)
{
	put_section(b, SLIMFS_SEC_EXTENTS, ((len + 8) & ~(size_t)7), 1);
	fix_checksum(b, len);
}
static void mut_section_below(uint8_t *b, size_t len)
{
	put_section(b, SLIMFS_SEC_STRINGS, 128, 16);
	fix_checksum(b, len);
}
static void mut_section_align(uint8_t *b, size_t len)
{
	uint64_t off =
		get_le64(b + offsetof(struct slimfs_disk_super, sections) + SLIMFS_SEC_CHUNKS * 16);

	put_section(b, SLIMFS_SEC_CHUNKS, off + 4, 1);
	fix_checksum(b, len);
}
static void mut_count_overflow(uint8_t *b, size_t len)
{
	uint64_t off =
		get_le64(b + offsetof(struct slimfs_disk_super, sections) + SLIMFS_SEC_CHUNKS * 16);

	put_section(b, SLIMFS_SEC_CHUNKS, off, UINT64_MAX / 64 + 2);
	fix_checksum(b, len);
}
static void mut_index_small(uint8_t *b, size_t len)
{
	uint64_t v = htole64(200);

	memcpy(b + 64, &v, 8);
	fix_checksum(b, len);
}
static void mut_data_unaligned(uint8_t *b, size_t len)
{
	uint64_t v = htole64(4096 + 512);

	memcpy(b + 72, &v, 8);
	fix_checksum(b, len);
}

static void test_targeted(void)
{
	struct model m;

	sample(&m);
	CHECK_EQ(try_open(&m), 0);
	CHECK_EQ(open_bytes_with(&m, mut_magic), -EBADMSG);
	CHECK_EQ(open_bytes_with(&m, mut_major), -EPROTONOSUPPORT);
	CHECK_EQ(open_bytes_with(&m, mut_incompat), -EPROTONOSUPPORT);
	CHECK_EQ(open_bytes_with(&m, mut_checksum), -EBADMSG);
	CHECK_EQ(open_bytes_with(&m, mut_recsize), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_section_range), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_section_below), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_section_align), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_count_overflow), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_index_small), -EUCLEAN);
	CHECK_EQ(open_bytes_with(&m, mut_data_unaligned), -EUCLEAN);
	model_free(&m);

#define MUTATE(stmt, want)                                                                         \
	do {                                                                                       \
		sample(&m);                                                                        \
		stmt;                                                                              \
		CHECK_EQ(try_open(&m), want);                                                      \
		model_free(&m);                                                                    \
	} while (0)

	/* dirents */
	MUTATE(m.de[1].ino = htole32(NSAMPLE), -EUCLEAN);
	MUTATE(m.de[1].name_off = htole64(m.nstr), -EUCLEAN);
	MUTATE(m.de[1].name_len = 0, -EUCLEAN);
	MUTATE(m.de[1].name_len = htole32(256), -EUCLEAN);
	MUTATE(m.str[le64toh(m.de[1].name_off)] = '/', -EUCLEAN);
	MUTATE(m.str[le64toh(m.de[1].name_off) + 1] = '\0', -EUCLEAN);
	MUTATE(m.de[1].name_len = htole32(1); m.str[le64toh(m.de[1].name_off)] = '.', -EUCLEAN);
	MUTATE(memcpy(&m.str[le64toh(m.de[1].name_off)], "..", 2);
	       m.de[1].name_len = htole32(2), -EUCLEAN);
	/* unsorted: "link" before "file" */
	MUTATE(
		{
			struct slimfs_disk_dirent t = m.de[0];
			m.de[0] = m.de[1];
			m.de[1] = t;
		},
		-EUCLEAN);
	/* duplicate name */
	MUTATE(m.de[1].name_off = m.de[0].name_off, -EUCLEAN);
	/* prefix sorts first: "fil" < "file" is fine, "file" then "fil" is not */
	MUTATE(m.de[1].name_off = m.de[0].name_off; m.de[0].name_len = htole32(4);
	       m.de[1].name_len = htole32(3), -EUCLEAN);
	MUTATE(m.ino[ROOT].count = htole32(5), -EUCLEAN);
	MUTATE(m.ino[ROOT].data = htole64(UINT64_MAX - 1), -EUCLEAN);

	/* tree shape */
	MUTATE(m.de[3].ino = htole32(ROOT), -EUCLEAN); /* sub/hard -> / */
	MUTATE(m.de[3].ino = htole32(SUB), -EUCLEAN);  /* sub/hard -> sub */
	MUTATE(m.ino[SUB].parent = htole32(SUB), -EUCLEAN);
	MUTATE(m.ino[SUB].parent = htole32(FILE_), -EUCLEAN);
	MUTATE(m.ino[FILE_].parent = htole32(FILE_), -EUCLEAN);
	MUTATE(m.ino[ROOT].parent = htole32(SUB), -EUCLEAN);
	MUTATE(m.ino[ROOT].mode = htole32(S_IFREG | 0644); m.ino[ROOT].count = 0, -EUCLEAN);
	/* an unreferenced directory */
	MUTATE(add_inode(&m, S_IFDIR | 0755, 0, 0, 0, 0), -EUCLEAN);
	/* two directories holding each other, unreachable from the root */
	MUTATE(
		{
			uint32_t a = add_inode(&m, S_IFDIR | 0755, 0, m.nde, 1, NSAMPLE + 1);
			uint32_t bb = add_inode(&m, S_IFDIR | 0755, 0, m.nde + 1, 1, NSAMPLE);

			add_dirent(&m, "b", bb);
			add_dirent(&m, "a", a);
		},
		-EUCLEAN);
	/* a reachable extra directory is fine */
	MUTATE(
		{
			uint32_t d = add_inode(&m, S_IFDIR | 0755, 0, 0, 0, SUB);

			m.ino[SUB].count = htole32(2);
			add_dirent(&m, "zdir", d); /* dirent 4 follows sub's dirent 3 */
		},
		0);

	/* inodes */
	MUTATE(m.ino[FILE_].mode = htole32(0170000 | 0644), -EUCLEAN);
	MUTATE(m.ino[FILE_].mode = htole32(S_IFREG | 0644 | 0x10000), -EUCLEAN);
	MUTATE(m.ino[FILE_].mtime_ns = htole32(1000000000), -EUCLEAN);
	MUTATE(m.ino[LINK].count = 0, -EUCLEAN);
	MUTATE(m.ino[LINK].count = htole32(4096), -EUCLEAN);
	MUTATE(m.ino[LINK].data = htole64(m.nstr - 2), -EUCLEAN);
	MUTATE(m.ino[FILE_].xattr_count = htole32(2), -EUCLEAN);
	MUTATE(m.ino[ROOT].xattr_start = htole32(1);
	       m.ino[ROOT].xattr_count = htole32(1), -EUCLEAN);
	MUTATE(m.xa[0].value_len = htole32(SLIMFS_XATTR_VALUE_MAX + 1), -EUCLEAN);
	MUTATE(m.xa[0].name_len = 0, -EUCLEAN);
	MUTATE(add_inode(&m, S_IFCHR | 0600, 0, 0x0103, 1, 0), -EUCLEAN);

	/* extents */
	MUTATE(m.ex[1].chunk_off = htole32(50), -EUCLEAN); /* 50 + 20 > 64 */
	MUTATE(m.ex[1].chunk = htole32(1), -EUCLEAN);
	MUTATE(m.ex[1].len = 0, -EUCLEAN);
	MUTATE(m.ex[1].file_off = htole64(90), -EUCLEAN); /* beyond size 100 */
	MUTATE(m.ex[1].file_off = htole64(10), -EUCLEAN); /* overlaps */
	MUTATE(m.ex[1].file_off = 0, -EUCLEAN);		  /* unsorted */
	MUTATE(m.ino[FILE_].size = htole64(60), -EUCLEAN);
	MUTATE(m.ino[FILE_].count = htole32(3), -EUCLEAN);
	MUTATE(m.ex[1].file_off = htole64(UINT64_MAX - 5), -EUCLEAN);

	/* chunks, views, prefetch, config */
	MUTATE(m.ch[0].usize = 0, -EUCLEAN);
	MUTATE(m.ch[0].usize = htole32(SLIMFS_CHUNK_MAX + 1), -EUCLEAN);
	MUTATE(m.ch[0].off = htole64(1), -EUCLEAN); /* beyond data_size */
	MUTATE(m.data_size = frame_len - 1, -EUCLEAN);
	MUTATE(m.ch[0].csize = htole32((uint32_t)ZSTD_compressBound(SLIMFS_CHUNK_MAX) + 1);
	       m.data_size = 1u << 24, -EUCLEAN);
	MUTATE(
		{
			struct slimfs_disk_chunk *c = PUSH(m.ch, m.nch);

			*c = m.ch[0]; /* same offset: overlaps */
		},
		-EUCLEAN);
	MUTATE(
		{
			struct slimfs_disk_chunk *c = PUSH(m.ch, m.nch);

			*c = m.ch[0];
			c->off = htole64(frame_len);
			m.data_size = 2 * frame_len;
		},
		0);
	MUTATE(m.pf[0] = htole32(1), -EUCLEAN);
	MUTATE(m.default_view = 1, -EUCLEAN);
	MUTATE(m.default_view = SLIMFS_VIEW_NONE, 0);
	MUTATE(m.vw[0].name_len = htole32(1000), -EUCLEAN);
	MUTATE(
		for (int i = 0; i < 32; i++) {
			struct slimfs_disk_view *v = PUSH(m.vw, m.nvw);
			*v = m.vw[0];
		},
		-EUCLEAN);
	MUTATE(m.config_len = m.nstr, -EUCLEAN);
	MUTATE(m.config_off = UINT64_MAX, -EUCLEAN);
#undef MUTATE
}

static void test_chunk(void)
{
	struct model m;
	struct slimfs_chunk c;
	uint8_t out[sizeof(plain)], bad[sizeof(frame)];
	ZSTD_DCtx *dctx = ZSTD_createDCtx();

	sample(&m);
	c.id = m.ch[0].id;
	c.sha256 = m.ch[0].sha256;
	c.off = 4096;
	c.csize = (uint32_t)frame_len;
	c.usize = sizeof(plain);

	CHECK_EQ(slimfs_chunk_verify_frame(&c, frame, frame_len), 0);
	CHECK_EQ(slimfs_chunk_decode(&c, frame, frame_len, out, dctx), 0);
	CHECK(memcmp(out, plain, sizeof(plain)) == 0);
	CHECK_EQ(slimfs_chunk_decode(&c, frame, frame_len - 1, out, dctx), -EBADMSG);

	/* flipped frame byte: the SHA-256 catches it */
	memcpy(bad, frame, frame_len);
	bad[frame_len / 2] ^= 0x20;
	CHECK_EQ(slimfs_chunk_verify_frame(&c, bad, frame_len), -EBADMSG);
	CHECK_EQ(slimfs_chunk_decode(&c, bad, frame_len, out, dctx), -EBADMSG);

	/* wrong id with a good frame */
	{
		uint8_t id[16];
		struct slimfs_chunk w = c;

		memcpy(id, c.id, 16);
		id[3] ^= 1;
		w.id = id;
		CHECK_EQ(slimfs_chunk_decode(&w, frame, frame_len, out, dctx), -EBADMSG);
		/* SLIMFS_DECODE_ID_KNOWN skips the id check, and only that */
		memset(out, 0, sizeof(out));
		CHECK_EQ(slimfs_chunk_decode_flags(&w, frame, frame_len, out, dctx,
						   SLIMFS_DECODE_ID_KNOWN),
			 0);
		CHECK(memcmp(out, plain, sizeof(plain)) == 0);
		CHECK_EQ(slimfs_chunk_decode_flags(&w, bad, frame_len, out, dctx,
						   SLIMFS_DECODE_ID_KNOWN),
			 -EBADMSG);
		CHECK_EQ(slimfs_chunk_decode_flags(&w, frame, frame_len - 1, out, dctx,
						   SLIMFS_DECODE_ID_KNOWN),
			 -EBADMSG);
	}
	/* a frame whose declared size differs from usize */
	{
		struct slimfs_chunk w = c;

		w.usize = sizeof(plain) - 1;
		CHECK_EQ(slimfs_chunk_decode(&w, frame, frame_len, out, dctx), -EBADMSG);
	}
	/* damaged frame content with a matching SHA-256 (a buggy writer) */
	{
		uint8_t sha[32];
		struct slimfs_chunk w = c;

		memcpy(bad, frame, frame_len);
		bad[frame_len - 1] ^= 0x55;
		slimfs_sha256(bad, frame_len, sha);
		w.sha256 = sha;
		CHECK_EQ(slimfs_chunk_decode(&w, bad, frame_len, out, dctx), -EBADMSG);
	}
	/* not a zstd frame at all */
	{
		uint8_t sha[32], junk[16] = "not zstd at all";
		struct slimfs_chunk w = c;

		slimfs_sha256(junk, sizeof(junk), sha);
		w.sha256 = sha;
		w.csize = sizeof(junk);
		CHECK_EQ(slimfs_chunk_decode(&w, junk, sizeof(junk), out, dctx), -EBADMSG);
	}
	ZSTD_freeDCtx(dctx);
	model_free(&m);
}

/* ---- the extent iterator ---- */

/*
 * Adds a regular file /name (sorting after "sub") of size bytes with n
 * extents of chunk 0, ext[3 * i ...] = {file_off, chunk_off, len}; its id.
 */
static uint32_t add_root_file(struct model *m, const char *name, uint64_t size, const uint32_t *ext,
			      size_t n)
{
	uint32_t id = add_inode(m, S_IFREG | 0644, size, m->nex, (uint32_t)n, 0);
	uint32_t at = le32toh(m->ino[ROOT].count);
	struct slimfs_disk_dirent d;

	for (size_t i = 0; i < n; i++)
		add_extent(m, ext[3 * i], 0, ext[3 * i + 1], ext[3 * i + 2]);
	/* root's entries come first, then sub's: insert at the end of root's */
	add_dirent(m, name, id);
	d = m->de[m->nde - 1];
	memmove(&m->de[at + 1], &m->de[at], (m->nde - 1 - at) * sizeof(*m->de));
	m->de[at] = d;
	m->ino[ROOT].count = htole32(at + 1);
	m->ino[SUB].data = htole64(le64toh(m->ino[SUB].data) + 1);
	return id;
}

/* The pieces of [off, end) of ino, at most max, into p[]; how many, or -errno. */
struct piece {
	uint64_t from, to;
	bool hole;
	uint64_t file_off; /* of the extent */
	uint32_t chunk_from;
};
static int pieces(const struct slimfs_index *idx, const struct slimfs_inode *ino, uint64_t off,
		  uint64_t end, unsigned flags, struct piece *p, int max)
{
	struct slimfs_extent_iter it;
	int n = 0, r;

	slimfs_extent_iter_init(&it, idx, ino, off, end, flags);
	while ((r = slimfs_extent_next(&it)) > 0) {
		if (n == max)
			return -E2BIG;
		p[n++] = (struct piece){it.from, it.to, it.hole, it.hole ? 0 : it.x.file_off,
					it.hole ? 0 : it.chunk_from};
	}
	return r < 0 ? r : n;
}

/*
 * Every range [off, end) of ino, end up to past EOF, with and without
 * holes, against a byte map: the pieces are non-empty, in order, within
 * [off, min(end, size)); with holes they cover it without a gap, without
 * they cover exactly its bytes that an extent holds; each byte of an extent
 * piece is that extent's at chunk_from + its distance from `from`, each
 * byte of a hole no extent's. Returns the number of wrong ranges.
 */
static int sweep_ranges(const struct slimfs_index *idx, const struct slimfs_inode *ino)
{
	uint64_t size = ino->size;
	int64_t *ext = malloc(size * sizeof(*ext)); /* extent's file_off, or -1 */
	uint32_t *coff = calloc(size, sizeof(*coff));
	struct piece p[64];
	int bad = 0;

	for (uint64_t b = 0; b < size; b++)
		ext[b] = -1;
	for (uint32_t i = 0; i < ino->count; i++) {
		struct slimfs_extent x;

		if (slimfs_index_extent(idx, ino, i, &x) < 0) {
			bad++;
			break;
		}
		for (uint32_t k = 0; k < x.len; k++) {
			ext[x.file_off + k] = (int64_t)x.file_off;
			coff[x.file_off + k] = x.chunk_off + k;
		}
	}
	for (uint64_t off = 0; off <= size + 2 && !bad; off++) {
		for (uint64_t end = off; end <= size + 3; end++) {
			for (unsigned flags = 0; flags <= SLIMFS_EXTENT_HOLES; flags++) {
				uint64_t lim = MIN(end, size), pos = off, want = 0, got = 0;
				int n = pieces(idx, ino, off, end, flags, p, 64);
				bool ok = n >= 0;

				for (uint64_t b = off; b < lim; b++)
					want += flags || ext[b] >= 0;
				for (int k = 0; ok && k < n; k++) {
					ok = p[k].from < p[k].to && p[k].from >= pos &&
					     p[k].to <= lim && (!flags || p[k].from == pos) &&
					     (flags || !p[k].hole);
					for (uint64_t b = p[k].from; ok && b < p[k].to; b++)
						ok = p[k].hole
							     ? ext[b] < 0
							     : ext[b] == (int64_t)p[k].file_off &&
								       coff[b] ==
									       p[k].chunk_from +
										       (b -
											p[k].from);
					got += p[k].to - p[k].from;
					pos = p[k].to;
				}
				if (!ok || got != want)
					bad++;
			}
		}
	}
	free(ext);
	free(coff);
	return bad;
}

static void test_extent_iter(void)
{
	/* {file_off, chunk_off, len}: adjacent extents, holes inside and at the end */
	static const uint32_t f[][3] = {{0, 0, 10},  {10, 30, 5},  {40, 63, 1},
					{41, 5, 19}, {100, 0, 64}, {164, 1, 6}};
	uint32_t g[30][3]; /* 30 extents of 3 bytes, a hole of 2 before each */
	struct slimfs_index *idx = NULL;
	struct slimfs_inode root, fi, gi, bogus;
	struct slimfs_extent_iter it;
	struct piece p[64];
	struct model m;
	uint32_t fid, gid;
	uint8_t *buf;

	for (uint32_t i = 0; i < 30; i++) {
		g[i][0] = 2 + 5 * i;
		g[i][1] = (7 * i) % 60;
		g[i][2] = 3;
	}
	sample(&m);
	fid = add_root_file(&m, "x", 200, f[0], sizeof(f) / sizeof(f[0]));
	gid = add_root_file(&m, "y", 160, g[0], 30);
	CHECK_EQ(open_model(&m, &idx, &buf), 0);
	if (!idx)
		goto out;
	CHECK_EQ(slimfs_index_inode(idx, ROOT, &root), 0);
	CHECK_EQ(slimfs_index_inode(idx, fid, &fi), 0);
	CHECK_EQ(slimfs_index_inode(idx, gid, &gi), 0);

	/* inside one extent: clipped, in file and chunk coordinates */
	CHECK_EQ(pieces(idx, &fi, 42, 50, 0, p, 64), 1);
	CHECK(p[0].from == 42 && p[0].to == 50 && p[0].file_off == 41 && p[0].chunk_from == 6);
	/* at boundaries: an extent exactly, and the next one from its start */
	CHECK_EQ(pieces(idx, &fi, 0, 10, SLIMFS_EXTENT_HOLES, p, 64), 1);
	CHECK(p[0].from == 0 && p[0].to == 10 && !p[0].hole && p[0].chunk_from == 0);
	CHECK_EQ(pieces(idx, &fi, 10, 15, 0, p, 64), 1);
	CHECK(p[0].from == 10 && p[0].to == 15 && p[0].file_off == 10 && p[0].chunk_from == 30);
	/* starting in one extent, ending in another, holes between */
	CHECK_EQ(pieces(idx, &fi, 5, 110, SLIMFS_EXTENT_HOLES, p, 64), 7);
	CHECK(p[0].from == 5 && p[0].to == 10 && p[0].chunk_from == 5);
	CHECK(p[1].from == 10 && p[1].to == 15 && !p[1].hole);
	CHECK(p[2].from == 15 && p[2].to == 40 && p[2].hole);
	CHECK(p[3].from == 40 && p[3].to == 41 && p[3].chunk_from == 63);
	CHECK(p[4].from == 41 && p[4].to == 60 && p[4].chunk_from == 5);
	CHECK(p[5].from == 60 && p[5].to == 100 && p[5].hole);
	CHECK(p[6].from == 100 && p[6].to == 110 && p[6].chunk_from == 0);
	/* the same without holes */
	CHECK_EQ(pieces(idx, &fi, 5, 110, 0, p, 64), 5);
	/* only a hole */
	CHECK_EQ(pieces(idx, &fi, 20, 30, 0, p, 64), 0);
	CHECK_EQ(pieces(idx, &fi, 20, 30, SLIMFS_EXTENT_HOLES, p, 64), 1);
	CHECK(p[0].from == 20 && p[0].to == 30 && p[0].hole);
	/* zero-length */
	CHECK_EQ(pieces(idx, &fi, 50, 50, SLIMFS_EXTENT_HOLES, p, 64), 0);
	CHECK_EQ(pieces(idx, &fi, 50, 40, SLIMFS_EXTENT_HOLES, p, 64), 0);
	/* past EOF, and a range that ends past it (clipped to the size) */
	CHECK_EQ(pieces(idx, &fi, 200, 300, SLIMFS_EXTENT_HOLES, p, 64), 0);
	CHECK_EQ(pieces(idx, &fi, UINT64_MAX - 1, UINT64_MAX, SLIMFS_EXTENT_HOLES, p, 64), 0);
	CHECK_EQ(pieces(idx, &fi, 160, UINT64_MAX, SLIMFS_EXTENT_HOLES, p, 64), 3);
	CHECK(p[0].from == 160 && p[0].to == 164 && p[0].chunk_from == 60);
	CHECK(p[1].from == 164 && p[1].to == 170 && p[1].chunk_from == 1);
	CHECK(p[2].from == 170 && p[2].to == 200 && p[2].hole);
	CHECK_EQ(pieces(idx, &fi, 160, 1000, 0, p, 64), 2);
	/* many extents: the whole file */
	CHECK_EQ(pieces(idx, &gi, 0, 160, 0, p, 64), 30);
	CHECK(p[29].from == 147 && p[29].to == 150 && p[29].chunk_from == (7 * 29) % 60);
	CHECK_EQ(pieces(idx, &gi, 0, 160, SLIMFS_EXTENT_HOLES, p, 64), 61);
	CHECK(p[60].from == 150 && p[60].to == 160 && p[60].hole);
	/* every range, against a byte map */
	CHECK_EQ(sweep_ranges(idx, &fi), 0);
	CHECK_EQ(sweep_ranges(idx, &gi), 0);
	/* no extents: a directory, an inode whose range is outside the index */
	CHECK_EQ(pieces(idx, &root, 0, 10, 0, p, 64), 0);
	bogus = gi;
	bogus.first = UINT32_MAX - 1;
	CHECK_EQ(pieces(idx, &bogus, 0, 100, 0, p, 64), 0);
	CHECK_EQ(pieces(idx, &bogus, 0, 100, SLIMFS_EXTENT_HOLES, p, 64), 1);
	CHECK(p[0].from == 0 && p[0].to == 100 && p[0].hole);
	/* the iterator leaves x as the index has it, for slimfs_extent_check */
	slimfs_extent_iter_init(&it, idx, &fi, 45, 46, 0);
	CHECK_EQ(slimfs_extent_next(&it), 1);
	CHECK(it.x.file_off == 41 && it.x.chunk_off == 5 && it.x.len == 19 && it.x.chunk == 0);
	CHECK_EQ(slimfs_extent_next(&it), 0);
	CHECK_EQ(slimfs_extent_next(&it), 0);

	/* an extent beyond its chunk: refused by open, and by the check readers repeat */
	{
		struct slimfs_extent x = {.chunk_off = 60, .len = 4};

		CHECK_EQ(slimfs_extent_check(&x, 64), 0);
		CHECK_EQ(slimfs_extent_check(&x, 63), -EUCLEAN);
		x.chunk_off = 0;
		x.len = 0;
		CHECK_EQ(slimfs_extent_check(&x, 0), 0);
		x.chunk_off = UINT32_MAX; /* no wrap-around */
		x.len = 2;
		CHECK_EQ(slimfs_extent_check(&x, UINT32_MAX), -EUCLEAN);
		x.chunk_off = 1;
		x.len = UINT32_MAX;
		CHECK_EQ(slimfs_extent_check(&x, UINT32_MAX), -EUCLEAN);
	}
	{
		struct model b;
		static const uint32_t past[][3] = {{0, 60, 5}};

		sample(&b);
		add_root_file(&b, "x", 5, past[0], 1);
		CHECK_EQ(try_open(&b), -EUCLEAN);
		model_free(&b);
	}
out:
	slimfs_index_free(idx);
	free(buf);
	model_free(&m);
}

/* ~10k inodes: open stays well under a millisecond plus the SHA-256. */
/* ---- the compressed index (SLIMFS_FEATURE_INCOMPAT_ZINDEX) ---- */

/*
 * The stored form of a plain index b[0, len) (format.h): its superblock
 * with the bit set, then body[0, body_len) compressed as one frame
 * (content size flag and checksum flag as given); body is the sections
 * unless the caller passes other bytes. index_size, data_off and the
 * checksum are fixed up. Returns a malloc'd buffer of *zlen bytes.
 */
static uint8_t *zpack_body(const uint8_t *b, const void *body, size_t body_len, int size_flag,
			   int sum_flag, size_t *zlen)
{
	size_t cap = ZSTD_compressBound(body_len), n;
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	uint8_t *z = malloc(256 + cap);
	uint32_t incompat;
	uint64_t v;

	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 9);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, size_flag);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, sum_flag);
	n = ZSTD_compress2(cctx, z + 256, cap, body, body_len);
	ZSTD_freeCCtx(cctx);
	CHECK(!ZSTD_isError(n));
	memcpy(z, b, 256);
	incompat = htole32(SLIMFS_FEATURE_INCOMPAT_ZINDEX);
	memcpy(z + offsetof(struct slimfs_disk_super, feature_incompat), &incompat, 4);
	v = htole64(256 + n);
	memcpy(z + offsetof(struct slimfs_disk_super, index_size), &v, 8);
	v = htole64((256 + n + 4095) & ~(uint64_t)4095);
	memcpy(z + offsetof(struct slimfs_disk_super, data_off), &v, 8);
	fix_checksum(z, 256 + n);
	*zlen = 256 + n;
	return z;
}

static uint8_t *zpack(const uint8_t *b, size_t len, size_t *zlen)
{
	return zpack_body(b, b + 256, len - 256, 1, 1, zlen);
}

/* Sets index_size (the stored bytes are cut to, or extended with zeros to, it). */
static void set_index_size(uint8_t *z, size_t len)
{
	uint64_t v = htole64(len);

	memcpy(z + offsetof(struct slimfs_disk_super, index_size), &v, 8);
	fix_checksum(z, len);
}

/* Offset and width of the frame content size field of the frame at f. */
static size_t fcs_field(const uint8_t *f, size_t *width)
{
	static const size_t did[4] = {0, 1, 2, 4}, fcs[4] = {0, 2, 4, 8};
	uint8_t fhd = f[4];
	bool single = fhd & 0x20;

	*width = fcs[fhd >> 6] ? fcs[fhd >> 6] : single;
	return 5 + !single + did[fhd & 3];
}

static bool same_content(const uint8_t *f, size_t flen, const uint8_t *want, size_t want_len)
{
	uint8_t *got = malloc(want_len + 1);
	size_t n = ZSTD_decompress(got, want_len + 1, f, flen);
	bool same = n == want_len && memcmp(got, want, want_len) == 0;

	free(got);
	return same;
}

static int open_z(const uint8_t *z, size_t len)
{
	struct slimfs_index *idx = NULL;
	int r = slimfs_index_open_mem(z, len, &idx);

	slimfs_index_free(idx);
	return r;
}

static void test_zindex(void)
{
	struct model m;
	struct slimfs_index *pidx = NULL, *zidx = NULL;
	uint8_t *b, *z, *t, sha[32];
	size_t len, zlen, w, fo, refused = 0, nflips = 0;
	int r;

	sample(&m);
	b = model_write(&m, &len);
	z = zpack(b, len, &zlen);

	/* round trip: the same index through both forms */
	CHECK_EQ(slimfs_index_open_mem(b, len, &pidx), 0);
	CHECK_EQ(slimfs_index_open_mem(z, zlen, &zidx), 0);
	if (pidx && zidx) {
		const struct slimfs_info *pi = slimfs_index_info(pidx),
					 *zi = slimfs_index_info(zidx);
		struct slimfs_inode a, c;
		struct slimfs_dirent da, dc;
		uint32_t id;

		CHECK_EQ(pi->feature_incompat, 0);
		CHECK_EQ(pi->index_plain_size, len);
		CHECK_EQ(zi->feature_incompat, SLIMFS_FEATURE_INCOMPAT_ZINDEX);
		CHECK_EQ(zi->index_size, zlen);
		CHECK_EQ(zi->index_plain_size, len);
		CHECK_EQ(zi->data_off, (zlen + 4095) & ~(size_t)4095);
		CHECK(pi->inode_count == zi->inode_count && pi->dirent_count == zi->dirent_count &&
		      pi->chunk_count == zi->chunk_count && pi->extent_count == zi->extent_count &&
		      pi->view_count == zi->view_count && pi->prefetch_count == zi->prefetch_count);
		CHECK(zi->config_len == pi->config_len &&
		      memcmp(zi->config, pi->config, pi->config_len) == 0);
		for (uint32_t i = 0; i < pi->inode_count; i++) {
			CHECK(slimfs_index_inode(pidx, i, &a) == 0 &&
			      slimfs_index_inode(zidx, i, &c) == 0 && a.mode == c.mode &&
			      a.size == c.size && a.first == c.first && a.count == c.count &&
			      a.parent == c.parent && a.target_len == c.target_len &&
			      (!a.target_len || memcmp(a.target, c.target, a.target_len) == 0));
		}
		CHECK(slimfs_index_inode(zidx, ROOT, &c) == 0 &&
		      slimfs_index_dirent(zidx, &c, 2, &dc) == 0 &&
		      slimfs_index_inode(pidx, ROOT, &a) == 0 &&
		      slimfs_index_dirent(pidx, &a, 2, &da) == 0 && dc.name_len == da.name_len &&
		      memcmp(dc.name, da.name, da.name_len) == 0);
		CHECK(slimfs_index_resolve(zidx, "/sub/hard", &id) == 0 && id == FILE_);
		/* the digest is of the stored bytes */
		slimfs_sha256(z, zlen, sha);
		CHECK(memcmp(slimfs_index_digest(zidx), sha, 32) == 0);
		CHECK(memcmp(slimfs_index_digest(pidx), slimfs_index_digest(zidx), 32) != 0);
	}
	slimfs_index_free(pidx);
	slimfs_index_free(zidx);

	/* a frame without its checksum is fine; without its content size it is not */
	t = zpack_body(b, b + 256, len - 256, 1, 0, &w);
	CHECK_EQ(open_z(t, w), 0);
	free(t);
	t = zpack_body(b, b + 256, len - 256, 0, 1, &w);
	CHECK_EQ(open_z(t, w), -EUCLEAN);
	free(t);
	/* the bit on a plain index: no frame there */
	t = malloc(len);
	memcpy(t, b, len);
	t[offsetof(struct slimfs_disk_super, feature_incompat)] |= SLIMFS_FEATURE_INCOMPAT_ZINDEX;
	fix_checksum(t, len);
	CHECK_EQ(open_z(t, len), -EUCLEAN);
	free(t);
	/* an empty frame, and a superblock alone */
	t = zpack_body(b, "", 0, 1, 1, &w);
	CHECK_EQ(open_z(t, w), -EUCLEAN);
	set_index_size(t, 256);
	CHECK_EQ(open_z(t, 256), -EUCLEAN);
	free(t);

	/* truncated frame: index_size cut (checksum fixed), and the buffer short */
	t = malloc(zlen + 64);
	for (size_t cut = 1; cut < zlen - 256; cut += cut < 16 ? 1 : 37) {
		memcpy(t, z, zlen);
		set_index_size(t, zlen - cut);
		r = open_z(t, zlen - cut);
		CHECK(r == -EUCLEAN);
	}
	CHECK_EQ(open_z(z, zlen - 1), -EUCLEAN);
	/* bytes after the frame */
	memcpy(t, z, zlen);
	memset(t + zlen, 0, 64);
	set_index_size(t, zlen + 8);
	CHECK_EQ(open_z(t, zlen + 8), -EUCLEAN);
	memcpy(t + zlen, z + 256, 8); /* the frame's own start: a second frame */
	set_index_size(t, zlen + 8);
	CHECK_EQ(open_z(t, zlen + 8), -EUCLEAN);

	/* a content size that lies, by one either way, and by a lot */
	fo = 256 + fcs_field(z + 256, &w);
	CHECK(w == 1 || w == 2 || w == 4);
	for (int d = -1; d <= 1; d += 2) {
		uint64_t v = 0;

		memcpy(t, z, zlen);
		memcpy(&v, t + fo, w);
		v = htole64(le64toh(v) + (uint64_t)(int64_t)d);
		memcpy(t + fo, &v, w);
		fix_checksum(t, zlen);
		CHECK_EQ(open_z(t, zlen), -EUCLEAN);
	}
	memcpy(t, z, zlen);
	memset(t + fo, 0xff, w);
	fix_checksum(t, zlen);
	CHECK_EQ(open_z(t, zlen), -EUCLEAN);

	/* a flipped byte anywhere in the frame: refused, checksum fixed or not */
	for (size_t i = 256; i < zlen; i++) {
		for (int fix = 0; fix < 2; fix++) {
			memcpy(t, z, zlen);
			t[i] ^= (uint8_t)(1u << (i % 8));
			if (fix)
				fix_checksum(t, zlen);
			r = open_z(t, zlen);
			CHECK(fix || r == -EBADMSG);
			if (fix) {
				nflips++;
				refused += r != 0;
				if (r != 0 && !errno_ok(r))
					CHECK_EQ(r, -EUCLEAN);
				/* accepted (an unused header bit, an equivalent
				 * table): then it means the same bytes */
				if (r == 0)
					CHECK(same_content(t + 256, zlen - 256, b + 256,
							   len - 256));
			}
		}
	}
	printf("# %zu of %zu flipped frame bytes refused, the rest decode the same\n", refused,
	       nflips);
	CHECK(refused >= nflips * 9 / 10);
	free(t);
	free(z);

	/* the plain size bound: 2 MiB of zeros in a frame of a few hundred bytes */
	{
		size_t big = 2u << 20;
		uint8_t *zeros = calloc(1, big);

		z = zpack_body(b, zeros, big, 1, 1, &zlen);
		printf("# %zu zero bytes in a %zu-byte frame\n", big, zlen - 256);
		CHECK(big / SLIMFS_ZINDEX_RATIO_MAX > zlen - 256);
		CHECK_EQ(open_z(z, zlen), -EUCLEAN);
		/* and a content size beyond SLIMFS_ZINDEX_PLAIN_MAX */
		fo = 256 + fcs_field(z + 256, &w);
		CHECK_EQ(w, 4);
		memset(z + fo, 0xff, w);
		fix_checksum(z, zlen);
		CHECK_EQ(open_z(z, zlen), -EUCLEAN);
		free(zeros);
		free(z);
	}
	free(b);
	model_free(&m);
}

static void test_speed(void)
{
	struct model m;
	struct slimfs_index *idx = NULL;
	uint8_t *buf;
	size_t len;
	uint64_t t0, t1;
	const uint32_t nfiles = 10000;
	int r;

	sample(&m);
	/* root gets 10000 more files "f00000".."f09999" after "sub" */
	for (uint32_t i = 0; i < nfiles; i++) {
		char name[16];
		uint32_t id;

		snprintf(name, sizeof(name), "z%05u", i);
		id = add_inode(&m, S_IFREG | 0644, 64, m.nex, 1, 0);
		add_extent(&m, 0, 0, 0, 64);
		/* root's dirents must be contiguous: append after sub/hard and move */
		add_dirent(&m, name, id);
	}
	/* move sub's one entry ("hard", index 3) to the end and let root cover 0..2 + 4.. */
	{
		struct slimfs_disk_dirent hard = m.de[3];

		memmove(&m.de[3], &m.de[4], nfiles * sizeof(*m.de));
		m.de[3 + nfiles] = hard;
		m.ino[ROOT].count = htole32(3 + nfiles);
		m.ino[SUB].data = htole64(3 + nfiles);
	}
	buf = model_write(&m, &len);
	t0 = slimfs_now_ns();
	r = slimfs_index_open_mem(buf, len, &idx);
	t1 = slimfs_now_ns();
	CHECK_EQ(r, 0);
	printf("# open of %zu inodes (%zu bytes): %.3f ms\n", m.nino, len, (double)(t1 - t0) / 1e6);
	/* no bound on the time: CI runs this under valgrind on a loaded machine */
	{
		uint8_t sha[32];
		uint64_t t2 = slimfs_now_ns();

		slimfs_sha256(buf, len, sha);
		printf("# of which SHA-256: %.3f ms\n", (double)(slimfs_now_ns() - t2) / 1e6);
	}
	{
		struct slimfs_index *zidx = NULL;
		size_t zlen;
		uint8_t *z = zpack(buf, len, &zlen);

		t0 = slimfs_now_ns();
		CHECK_EQ(slimfs_index_open_mem(z, zlen, &zidx), 0);
		t1 = slimfs_now_ns();
		printf("# open of the same compressed (%zu bytes): %.3f ms\n", zlen,
		       (double)(t1 - t0) / 1e6);
		slimfs_index_free(zidx);
		free(z);
	}
	if (idx) {
		uint32_t id;

		CHECK_EQ(slimfs_index_resolve(idx, "/z04242", &id), 0);
		CHECK_EQ(id, NSAMPLE + 4242);
		CHECK_EQ(slimfs_index_resolve(idx, "/sub/hard", &id), 0);
		CHECK_EQ(id, FILE_);
	}
	slimfs_index_free(idx);
	free(buf);
	model_free(&m);
}

int main(void)
{
	test_good();
	test_targeted();
	test_chunk();
	test_extent_iter();
	test_sweep();
	test_zindex();
	test_speed();
	return tap_done();
}
