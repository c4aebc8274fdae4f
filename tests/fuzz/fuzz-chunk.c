// SPDX-License-Identifier: MIT
/*
 * Chunk decoding: slimfs_chunk_verify_frame() and slimfs_chunk_decode() with
 * a chunk record taken from the input.
 *
 *   input = flags (1) | struct slimfs_disk_chunk (64) | frame (rest)
 *
 * flags bit 0: replace the record's SHA-256 and csize by those of the frame,
 * so that the fuzzer gets past the digest check into zstd (a store cannot do
 * that, but a bug in the decompressor path must not hide behind the digest).
 * bit 1: also set usize to the frame's declared content size.
 * bit 2: also set the id to the XXH3-128 of what plain zstd decodes.
 * The output buffer has exactly usize bytes (ASan sees any overrun). A frame
 * that decodes must be exactly what plain zstd makes of it, and its XXH3-128
 * must be the record's id.
 */
#include <errno.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "fuzz.h"

#define HDR (1 + sizeof(struct slimfs_disk_chunk))

static ZSTD_DCtx *dctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	dctx = ZSTD_createDCtx();
	FUZZ_CHECK(dctx);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rec = data + 1; /* a struct slimfs_disk_chunk, unaligned */
	uint8_t id[16], sha[32];
	struct slimfs_chunk c;
	const uint8_t *frame;
	size_t flen;
	uint8_t *out;
	int r;

	if (size < HDR)
		return 0;
	frame = data + HDR;
	flen = size - HDR;
	memcpy(id, rec + offsetof(struct slimfs_disk_chunk, id), sizeof(id));
	memcpy(sha, rec + offsetof(struct slimfs_disk_chunk, sha256), sizeof(sha));
	c.id = id;
	c.sha256 = sha;
	c.off = get_le64(rec + offsetof(struct slimfs_disk_chunk, off));
	c.csize = get_le32(rec + offsetof(struct slimfs_disk_chunk, csize));
	c.usize = get_le32(rec + offsetof(struct slimfs_disk_chunk, usize));
	if (data[0] & 1) {
		slimfs_sha256(frame, flen, sha);
		c.csize = (uint32_t)MIN(flen, UINT32_MAX);
	}
	if (data[0] & 2) {
		unsigned long long fcs = ZSTD_getFrameContentSize(frame, flen);

		if (fcs <= SLIMFS_CHUNK_MAX)
			c.usize = (uint32_t)fcs;
	}
	if ((data[0] & 4) && c.usize && c.usize <= SLIMFS_CHUNK_MAX) {
		uint8_t *ref = malloc(c.usize);
		size_t n;

		FUZZ_CHECK(ref);
		n = ZSTD_decompress(ref, c.usize, frame, flen);
		if (!ZSTD_isError(n)) {
			XXH128_canonical_t canon;

			XXH128_canonicalFromHash(&canon, XXH3_128bits(ref, n));
			memcpy(id, canon.digest, sizeof(id));
		}
		free(ref);
	}

	r = slimfs_chunk_verify_frame(&c, frame, flen);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (data[0] & 1)
		FUZZ_CHECK(flen > UINT32_MAX || r == 0);

	/* only as much output as the record says; a lying usize must not overrun */
	out = malloc(c.usize && c.usize <= SLIMFS_CHUNK_MAX ? c.usize : 1);
	FUZZ_CHECK(out);
	r = slimfs_chunk_decode(&c, frame, flen, out, (struct ZSTD_DCtx_s *)dctx);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EUCLEAN);
	if (r == 0) {
		XXH128_canonical_t canon;
		uint8_t *ref = malloc(c.usize);
		size_t n;

		FUZZ_CHECK(c.usize > 0 && c.usize <= SLIMFS_CHUNK_MAX);
		FUZZ_CHECK(ref);
		n = ZSTD_decompress(ref, c.usize, frame, flen);
		FUZZ_CHECK(!ZSTD_isError(n) && n == c.usize);
		FUZZ_CHECK(memcmp(ref, out, c.usize) == 0);
		XXH128_canonicalFromHash(&canon, XXH3_128bits(out, c.usize));
		FUZZ_CHECK(memcmp(canon.digest, id, 16) == 0);
		free(ref);
	}
	free(out);
	return 0;
}
