/* SPDX-License-Identifier: MIT */
/*
 * Content-defined chunking (internal to index/), FastCDC style: a gear
 * rolling hash (one table lookup, a shift and an add per byte) with
 * normalized chunking, i.e. a harder mask before cdc_avg and an easier one
 * after it, so that chunk sizes cluster around avg. A cut depends only on the
 * 64 bytes before it, so an edit moves the cut points near it and no others.
 *
 * The gear table is derived from a fixed seed (splitmix64), so the same
 * parameters cut the same bytes at the same places on every machine.
 */
#ifndef SLIMFS_CDC_H
#define SLIMFS_CDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slimfs_cdc {
	uint32_t min, avg, max;
	uint64_t mask_s; /* before avg: bits + 2 high bits must be zero */
	uint64_t mask_l; /* after avg: bits - 2 high bits */
	uint64_t gear[256];
};

/*
 * Sets up a chunker. Requires 1 <= min <= avg <= max (the builder checks its
 * options; out-of-order values are clamped here). avg need not be a power of
 * two: the masks use round(log2(avg)) bits.
 */
void slimfs_cdc_init(struct slimfs_cdc *c, uint32_t min, uint32_t avg, uint32_t max);

/*
 * Length of the next chunk at the start of buf[0, len): in [min, max], or
 * less than min only for the last chunk of the input (eof and len < min).
 * Returns 0 when more input is needed to decide (!eof and no cut found in
 * fewer than max bytes), and 0 for len == 0.
 */
size_t slimfs_cdc_cut(const struct slimfs_cdc *c, const uint8_t *buf, size_t len, bool eof);

#endif
