// SPDX-License-Identifier: MIT
/*
 * HTTP range-response handling (fs/http_range.c): the input is an answer as a
 * server could send it, the requested range, status and body length in the
 * first 16 bytes, then one header line. Whatever the bytes, the parser must
 * stay inside the line, and the verdict must accept an answer only when it
 * is exactly what was asked: a 206 with that Content-Range and that many
 * bytes (a wrong answer accepted would let wrong bytes reach a verifier and,
 * worse, mis-size a buffer).
 */
#include <errno.h>
#include <string.h>

#include "../../fs/http_range.h"
#include "fuzz.h"
#include "slimfs/util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slimfs_http_answer a = {0};
	uint64_t off, first = 0, last = 0, total = 0;
	size_t len;
	char why[256];
	int r, v;

	if (size < 16)
		return 0;
	off = get_le32(data) & 0xffffff;
	len = (get_le32(data + 4) & 0xfffff) + 1;
	a.status = (long)(get_le16(data + 8) % 600);
	a.got = MIN((size_t)get_le32(data + 10) & 0xfffff, len);
	a.overflow = data[14] & 1;
	r = slimfs_http_content_range((const char *)data + 16, size - 16, &first, &last, &total);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOENT);
	if (r == 0) {
		FUZZ_CHECK(last >= first);
		FUZZ_CHECK(total == 0 || last < total);
		a.has_range = true;
		a.first = first;
		a.last = last;
	} else if (data[15] & 1) {
		/* also judge a well-formed range that may or may not match */
		a.has_range = true;
		a.first = off + (data[15] >> 4);
		a.last = a.first + len - 1 - (data[15] >> 5 & 1);
	}
	v = slimfs_http_verdict(&a, off, len, why, sizeof(why));
	FUZZ_CHECK(v == 0 || v == -EAGAIN || v == -ERANGE || v == -EIO);
	if (v == 0) {
		FUZZ_CHECK(a.status == 206 && a.has_range && !a.overflow);
		FUZZ_CHECK(a.first == off && a.last == off + len - 1 && a.got == len);
	} else {
		FUZZ_CHECK(memchr(why, '\0', sizeof(why)) != NULL && why[0] != '\0');
	}
	return 0;
}
