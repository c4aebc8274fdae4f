// SPDX-License-Identifier: MIT
/*
 * Tar layers: arbitrary bytes through archive_read_open_memory() (any
 * compression, tar/gnutar/cpio like an OCI layer) into slimfs_ingest_archive()
 * on a fresh tree. Anything ingest accepts must write (slimfs_write_image
 * into a memfd) and read back as exactly that tree.
 *
 * Tar header checksums would stop most mutations at the first header, so
 * each input also runs with the checksum of every ustar header fixed (in a
 * copy, following the size fields from block 0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>

#include "slimfs/util.h"
#include "fuzz-image.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	fuzz_spool_in_memory();
	return 0;
}

static uint64_t octal(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (p[i] - '0');
	return v;
}

static void fix_tar_checksums(uint8_t *b, size_t size)
{
	uint64_t off = 0;

	while (off + 512 <= size) {
		uint8_t *h = b + off;
		unsigned sum = 0;
		uint64_t len;

		if (memcmp(h + 257, "ustar", 5) != 0)
			break;
		memset(h + 148, ' ', 8);
		for (size_t i = 0; i < 512; i++)
			sum += h[i];
		snprintf((char *)h + 148, 8, "%06o", sum & 0777777);
		h[155] = ' ';
		len = (h[124] & 0x80) ? 0 : octal(h + 124, 12);
		if (len > size)
			break;
		off += 512 + ((len + 511) & ~(uint64_t)511);
	}
}

static void one(const uint8_t *data, size_t size)
{
	struct slimfs_build_opts o;
	struct slimfs_tree *t = NULL;
	struct archive *a;
	uint8_t *img = NULL;
	size_t len = 0;
	int r;

	a = archive_read_new();
	FUZZ_CHECK(a);
	/* the in-process filters of filter_all (no external programs) */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_compress(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_format_cpio(a);
	archive_read_support_format_empty(a);
	if (archive_read_open_memory(a, data, size) != ARCHIVE_OK) {
		archive_read_free(a);
		return;
	}
	FUZZ_CHECK(slimfs_tree_new(&t) == 0);
	t->layer = 1;
	r = slimfs_ingest_archive(t, a, "fuzz");
	archive_read_free(a);
	FUZZ_CHECK(r <= 0);
	if (r == 0) {
		fuzz_build_opts(&o);
		r = fuzz_write(t, &o, &img, &len);
		if (r < 0)
			fprintf(stderr, "fuzz: ingest accepted the layer, the writer refused: %s\n",
				strerror(-r));
		FUZZ_CHECK(r == 0);
		fuzz_check_image(t, img, len);
		free(img);
	}
	slimfs_tree_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	one(data, size);
	if (size < 512 || memcmp(data + 257, "ustar", 5) != 0)
		return 0;
	copy = malloc(size);
	FUZZ_CHECK(copy);
	memcpy(copy, data, size);
	fix_tar_checksums(copy, size);
	if (memcmp(copy, data, size) != 0)
		one(copy, size);
	free(copy);
	return 0;
}
