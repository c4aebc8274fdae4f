// SPDX-License-Identifier: MIT
/* FastCDC-style content-defined chunking; see cdc.h. */
#include "cdc.h"

#define MIN_SZ(a, b) ((a) < (b) ? (a) : (b))

/* Fixed seed of the gear table: changing it changes every chunk boundary. */
#define GEAR_SEED 0x736c696d66734344ull /* "slimfsCD" */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A mask of the n highest bits: with the gear hash shifted left once per
 * byte, bit k depends on the last k + 1 bytes, so the high bits see the
 * whole 64-byte window. */
static uint64_t high_mask(unsigned n)
{
	if (n == 0)
		return 0;
	if (n >= 64)
		return ~0ull;
	return ~0ull << (64 - n);
}

void slimfs_cdc_init(struct slimfs_cdc *c, uint32_t min, uint32_t avg, uint32_t max)
{
	uint64_t s = GEAR_SEED;
	unsigned bits = 0;

	if (min == 0)
		min = 1;
	if (avg < min)
		avg = min;
	if (max < avg)
		max = avg;
	c->min = min;
	c->avg = avg;
	c->max = max;
	/* round(log2(avg)): compare avg against 2^bits * sqrt(2) */
	while (bits < 40 && (1ull << bits) * 1414213ull / 1000000ull < avg)
		bits++;
	c->mask_s = high_mask(bits + 2);
	c->mask_l = high_mask(bits > 2 ? bits - 2 : 1);
	for (unsigned i = 0; i < 256; i++)
		c->gear[i] = splitmix64(&s);
}

size_t slimfs_cdc_cut(const struct slimfs_cdc *c, const uint8_t *buf, size_t len, bool eof)
{
	size_t n, normal, i;
	uint64_t h = 0;

	if (len == 0)
		return 0;
	if (len <= c->min)
		return eof || len == c->max ? len : 0;
	n = MIN_SZ(len, c->max);
	normal = MIN_SZ(n, c->avg);
	/* Warm the hash on the 64 bytes before min, so that a cut depends on
	 * the content before it and not on where the chunk started. */
	i = c->min > 64 ? c->min - 64 : 0;
	for (; i < c->min; i++)
		h = (h << 1) + c->gear[buf[i]];
	for (; i < normal; i++) {
		h = (h << 1) + c->gear[buf[i]];
		if (!(h & c->mask_s))
			return i + 1;
	}
	for (; i < n; i++) {
		h = (h << 1) + c->gear[buf[i]];
		if (!(h & c->mask_l))
			return i + 1;
	}
	if (n == c->max)
		return n;
	return eof ? len : 0;
}
