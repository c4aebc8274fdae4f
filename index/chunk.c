// SPDX-License-Identifier: MIT
/*
 * Chunk decoding: SHA-256 of the compressed frame first (an untrusted store
 * cannot feed the decompressor), then the frame's declared content size, then
 * zstd, then the XXH3-128 id of the plain bytes.
 */
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "slimfs/format.h"
#include "slimfs/index.h"
#include "slimfs/sha256.h"
#include "slimfs/util.h"

int slimfs_chunk_verify_frame(const struct slimfs_chunk *c, const void *frame, size_t frame_len)
{
	uint8_t sha[32];

	if (frame_len != c->csize) {
		log_debug("chunk: frame is %zu bytes, expected %u", frame_len, c->csize);
		return -EBADMSG;
	}
	slimfs_sha256(frame, frame_len, sha);
	if (memcmp(sha, c->sha256, sizeof(sha)) != 0) {
		log_debug("chunk at %llu: SHA-256 mismatch", (unsigned long long)c->off);
		return -EBADMSG;
	}
	return 0;
}

int slimfs_chunk_decode(const struct slimfs_chunk *c, const void *frame, size_t frame_len,
			void *out, struct ZSTD_DCtx_s *dctx)
{
	return slimfs_chunk_decode_flags(c, frame, frame_len, out, dctx, 0);
}

int slimfs_chunk_decode_flags(const struct slimfs_chunk *c, const void *frame, size_t frame_len,
			      void *out, struct ZSTD_DCtx_s *dctx, unsigned flags)
{
	XXH128_canonical_t canon;
	unsigned long long fcs;
	size_t n;
	int r;

	if (c->usize == 0 || c->usize > SLIMFS_CHUNK_MAX)
		return -EUCLEAN;
	if (!(flags & SLIMFS_DECODE_FRAME_KNOWN))
		r = slimfs_chunk_verify_frame(c, frame, frame_len);
	else
		r = frame_len == c->csize ? 0 : -EBADMSG;
	if (r < 0)
		return r;
	fcs = ZSTD_getFrameContentSize(frame, frame_len);
	if (fcs != c->usize) {
		log_debug("chunk at %llu: frame content size %llu, expected %u",
			  (unsigned long long)c->off, fcs, c->usize);
		return -EBADMSG;
	}
	n = ZSTD_decompressDCtx(dctx, out, c->usize, frame, frame_len);
	if (ZSTD_isError(n) || n != c->usize) {
		log_debug("chunk at %llu: %s", (unsigned long long)c->off,
			  ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame");
		return -EBADMSG;
	}
	if ((flags & SLIMFS_DECODE_ID_KNOWN) && !(flags & SLIMFS_DECODE_FRAME_KNOWN))
		return 0;
	XXH128_canonicalFromHash(&canon, XXH3_128bits(out, c->usize));
	if (memcmp(canon.digest, c->id, sizeof(canon.digest)) != 0) {
		log_debug("chunk at %llu: XXH3-128 id mismatch", (unsigned long long)c->off);
		return -EBADMSG;
	}
	return 0;
}
