// SPDX-License-Identifier: MIT
/* Content-defined chunker: bounds, determinism, locality of edits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cdc.h"
#include "tap.h"
#include "testutil.h"

#define ARRAY_SIZE_(a) (sizeof(a) / sizeof((a)[0]))

#define BUF_LEN (4u << 20)

static uint64_t rng_state = 42;

/* Chunks buf in one call per chunk over the whole buffer. Returns the count. */
static size_t chunk_all(const struct slimfs_cdc *c, const uint8_t *buf, size_t len, size_t *out,
			size_t cap)
{
	size_t n = 0, off = 0;

	while (off < len && n < cap) {
		size_t cut = slimfs_cdc_cut(c, buf + off, len - off, true);

		if (cut == 0)
			break;
		out[n++] = cut;
		off += cut;
	}
	return n;
}

/* The same, fed through a window of win bytes as a streaming caller would. */
static size_t chunk_stream(const struct slimfs_cdc *c, const uint8_t *buf, size_t len, size_t win,
			   size_t *out, size_t cap)
{
	size_t n = 0, start = 0, end = 0;

	for (;;) {
		bool eof;
		size_t cut;

		end = start + win < len ? start + win : len;
		eof = end == len;
		cut = slimfs_cdc_cut(c, buf + start, end - start, eof);
		if (cut == 0) {
			if (eof)
				break;
			/* a real caller refills; the window must have been short */
			if (end - start >= c->max)
				return (size_t)-1;
			win *= 2;
			continue;
		}
		if (n == cap)
			return (size_t)-1;
		out[n++] = cut;
		start += cut;
	}
	return n;
}

static size_t cuts_a[4096], cuts_b[4096];

static void test_bounds(uint32_t min, uint32_t avg, uint32_t max, const uint8_t *buf)
{
	struct slimfs_cdc c;
	size_t n, total = 0, bad = 0;

	slimfs_cdc_init(&c, min, avg, max);
	n = chunk_all(&c, buf, BUF_LEN, cuts_a, ARRAY_SIZE_(cuts_a));
	for (size_t i = 0; i < n; i++) {
		total += cuts_a[i];
		if (cuts_a[i] > max || (cuts_a[i] < min && i + 1 != n))
			bad++;
	}
	CHECK(n > 0);
	CHECK_EQ(total, BUF_LEN);
	CHECK_EQ(bad, 0);
	/* normalized chunking: the mean lands near avg (loosely: within 2x) */
	CHECK(total / n >= avg / 2 && total / n <= avg * 2);
	printf("# min %u avg %u max %u: %zu chunks, mean %zu\n", min, avg, max, n, total / n);
}

int main(void)
{
	uint8_t *buf = malloc(BUF_LEN), *ins = malloc(BUF_LEN + 100), *zero;
	struct slimfs_cdc c, c2;
	size_t na, nb, same, i, off;

	CHECK(buf && ins);
	if (!buf || !ins)
		return tap_done();
	test_fill_random(&rng_state, buf, BUF_LEN);

	test_bounds(16 << 10, 64 << 10, 256 << 10, buf);
	test_bounds(2 << 10, 8 << 10, 32 << 10, buf);
	test_bounds(4 << 10, 16 << 10, 64 << 10, buf);
	test_bounds(100, 3000, 5000, buf);		/* avg not a power of two */
	test_bounds(64 << 10, 64 << 10, 64 << 10, buf); /* fixed size */

	/* determinism: two chunkers, whole buffer vs streaming windows */
	slimfs_cdc_init(&c, 16 << 10, 64 << 10, 256 << 10);
	slimfs_cdc_init(&c2, 16 << 10, 64 << 10, 256 << 10);
	/* field by field: the struct has padding, whose bytes are not set */
	CHECK(c.min == c2.min && c.avg == c2.avg && c.max == c2.max && c.mask_s == c2.mask_s &&
	      c.mask_l == c2.mask_l && memcmp(c.gear, c2.gear, sizeof(c.gear)) == 0);
	na = chunk_all(&c, buf, BUF_LEN, cuts_a, ARRAY_SIZE_(cuts_a));
	nb = chunk_stream(&c2, buf, BUF_LEN, 300 << 10, cuts_b, ARRAY_SIZE_(cuts_b));
	CHECK_EQ(na, nb);
	CHECK(na == nb && memcmp(cuts_a, cuts_b, na * sizeof(cuts_a[0])) == 0);
	nb = chunk_stream(&c2, buf, BUF_LEN, 1 << 20, cuts_b, ARRAY_SIZE_(cuts_b));
	CHECK(na == nb && memcmp(cuts_a, cuts_b, na * sizeof(cuts_a[0])) == 0);

	/* more input needed: no cut in a short non-final buffer */
	zero = calloc(1, 256 << 10);
	CHECK(zero != NULL);
	if (zero) {
		CHECK_EQ(slimfs_cdc_cut(&c, zero, 100 << 10, false), 0);
		CHECK_EQ(slimfs_cdc_cut(&c, zero, 100 << 10, true), 100 << 10);
		/* zeros never match the mask: cut at max */
		CHECK_EQ(slimfs_cdc_cut(&c, zero, 256 << 10, false), 256 << 10);
		CHECK_EQ(slimfs_cdc_cut(&c, zero, 10, true), 10);
		CHECK_EQ(slimfs_cdc_cut(&c, zero, 0, true), 0);
		free(zero);
	}

	/* locality: insert 100 bytes at offset 1000; only the first chunks change */
	memcpy(ins, buf, 1000);
	test_fill_random(&rng_state, ins + 1000, 100);
	memcpy(ins + 1100, buf + 1000, BUF_LEN - 1000);
	nb = chunk_all(&c, ins, BUF_LEN + 100, cuts_b, ARRAY_SIZE_(cuts_b));
	/* compare from the end: chunks are identical when their lengths match
	 * back to front (same trailing bytes) */
	same = 0;
	while (same < na && same < nb && cuts_a[na - 1 - same] == cuts_b[nb - 1 - same])
		same++;
	printf("# insertion: %zu of %zu chunks unchanged\n", same, na);
	CHECK(same + 2 >= na);
	CHECK(nb + 2 >= na && na + 2 >= nb);
	/* and the unchanged chunks hold the same bytes */
	for (i = 0, off = 0; i < na - same; i++)
		off += cuts_a[i];
	CHECK(memcmp(buf + off, ins + off + 100, BUF_LEN - off) == 0);

	free(buf);
	free(ins);
	return tap_done();
}
