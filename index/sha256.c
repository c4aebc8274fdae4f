// SPDX-License-Identifier: MIT
/*
 * SHA-256 as FIPS 180-4 defines it (sections 4.1.2, 4.2.2, 5.1.1, 5.3.3,
 * 6.2), with two block functions: the portable one, written as the standard
 * states the computation, and one for the x86 SHA extensions (SHA256RNDS2,
 * SHA256MSG1, SHA256MSG2 as the Intel SDM describes them), chosen at first
 * use when the CPU has them.
 */
#include <stdatomic.h>
#include <string.h>

#include "slimfs/sha256.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* 4.2.2: the first 32 bits of the fractional parts of the cube roots of the first 64 primes */
static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

/* 5.3.3: the first 32 bits of the fractional parts of the square roots of the first 8 primes */
static const uint32_t H0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* ---- portable ---- */

static inline uint32_t rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32 - n));
}

/* 4.1.2 */
#define CH(x, y, z)  (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x)     (rotr((x), 2) ^ rotr((x), 13) ^ rotr((x), 22))
#define BSIG1(x)     (rotr((x), 6) ^ rotr((x), 11) ^ rotr((x), 25))
#define SSIG0(x)     (rotr((x), 7) ^ rotr((x), 18) ^ ((x) >> 3))
#define SSIG1(x)     (rotr((x), 17) ^ rotr((x), 19) ^ ((x) >> 10))

static inline uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* 6.2.2, for each of n 64-byte blocks at p */
static void blocks_portable(uint32_t h[8], const uint8_t *p, size_t n)
{
	uint32_t w[64];

	for (; n; n--, p += 64) {
		uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
		uint32_t e = h[4], f = h[5], g = h[6], hh = h[7];

		for (int t = 0; t < 16; t++)
			w[t] = load_be32(p + 4 * t);
		for (int t = 16; t < 64; t++)
			w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
		for (int t = 0; t < 64; t++) {
			uint32_t t1 = hh + BSIG1(e) + CH(e, f, g) + K[t] + w[t];
			uint32_t t2 = BSIG0(a) + MAJ(a, b, c);

			hh = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
		h[5] += f;
		h[6] += g;
		h[7] += hh;
	}
}

/* ---- x86 SHA extensions ---- */

#if defined(__x86_64__)
/*
 * SHA256RNDS2 runs two rounds on the state split in two registers, dwords
 * from high to low: {A, B, E, F} and {C, D, G, H}; it returns the new
 * {A, B, E, F}, and the old one is the new {C, D, G, H}. The two W[t] + K[t]
 * come in the low two dwords of the third operand. SHA256MSG1 and SHA256MSG2
 * compute the sigma0 and sigma1 halves of four schedule words (4.2 of the
 * standard, W[t] for t >= 16).
 */
__attribute__((target("sha,ssse3"))) static void blocks_shani(uint32_t h[8], const uint8_t *p,
							      size_t n)
{
	/* byte swap of each dword: the message words are big-endian */
	const __m128i bswap = _mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
	__m128i abcd = _mm_loadu_si128((const __m128i *)&h[0]); /* dwords low to high: a b c d */
	__m128i efgh = _mm_loadu_si128((const __m128i *)&h[4]);
	__m128i badc = _mm_shuffle_epi32(abcd, 0xb1), fehg = _mm_shuffle_epi32(efgh, 0xb1);
	/* low to high: f e b a, h g d c */
	__m128i abef = _mm_unpacklo_epi64(fehg, badc);
	__m128i cdgh = _mm_unpackhi_epi64(fehg, badc);

	for (; n; n--, p += 64) {
		__m128i abef0 = abef, cdgh0 = cdgh, m[4], wk;

		for (int i = 0; i < 4; i++)
			m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)),
						bswap);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++) {
			if (g >= 4) {
				/* W[4g..4g+3] from the sixteen before: m[g & 3] holds W[4g-16..] */
				__m128i x = _mm_sha256msg1_epu32(m[g & 3], m[(g + 1) & 3]);
				__m128i w7 = _mm_alignr_epi8(m[(g + 3) & 3], m[(g + 2) & 3], 4);

				x = _mm_add_epi32(x, w7); /* + W[t-7] */
				m[g & 3] = _mm_sha256msg2_epu32(x, m[(g + 3) & 3]);
			}
			wk = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&K[4 * g]));
			cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
			wk = _mm_shuffle_epi32(wk, 0x0e);
			abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
		}
		abef = _mm_add_epi32(abef, abef0);
		cdgh = _mm_add_epi32(cdgh, cdgh0);
	}
	/* back to a b c d, e f g h */
	_mm_storeu_si128((__m128i *)&h[0], _mm_shuffle_epi32(_mm_unpackhi_epi64(abef, cdgh), 0xb1));
	_mm_storeu_si128((__m128i *)&h[4], _mm_shuffle_epi32(_mm_unpacklo_epi64(abef, cdgh), 0xb1));
}
#endif

/* ---- choice ---- */

enum { IMPL_UNSET, IMPL_PORTABLE, IMPL_SHANI };
static atomic_int impl_forced; /* IMPL_UNSET: the CPU's choice */
static atomic_int impl_cpu;

/* CPUID rather than __builtin_cpu_supports(): clang 14 does not know "sha" */
static bool cpu_has_shani(void)
{
#if defined(__x86_64__)
	unsigned int a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSSE3) &&
	       __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
#else
	return false;
#endif
}

static int impl(void)
{
	int f = atomic_load_explicit(&impl_forced, memory_order_relaxed);
	int c;

	if (f != IMPL_UNSET)
		return f;
	c = atomic_load_explicit(&impl_cpu, memory_order_relaxed);
	if (c == IMPL_UNSET) {
		c = cpu_has_shani() ? IMPL_SHANI : IMPL_PORTABLE;
		atomic_store_explicit(&impl_cpu, c, memory_order_relaxed);
	}
	return c;
}

static void blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
#if defined(__x86_64__)
	if (impl() == IMPL_SHANI) {
		blocks_shani(h, p, n);
		return;
	}
#endif
	blocks_portable(h, p, n);
}

const char *slimfs_sha256_impl(void)
{
	return impl() == IMPL_SHANI ? "sha-ni" : "portable";
}

void slimfs_sha256_force_portable(bool on)
{
	atomic_store_explicit(&impl_forced, on ? IMPL_PORTABLE : IMPL_UNSET, memory_order_relaxed);
}

/* ---- the message: 5.1.1 padding, 6.2 ---- */

void slimfs_sha256_init(struct slimfs_sha256_ctx *c)
{
	memcpy(c->h, H0, sizeof(c->h));
	c->len = 0;
}

void slimfs_sha256_update(struct slimfs_sha256_ctx *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t fill = (size_t)(c->len & 63);

	c->len += len;
	if (fill) {
		size_t take = 64 - fill < len ? 64 - fill : len;

		memcpy(c->buf + fill, p, take);
		p += take;
		len -= take;
		if (fill + take < 64)
			return;
		blocks(c->h, c->buf, 1);
	}
	if (len >= 64) {
		blocks(c->h, p, len / 64);
		p += len & ~(size_t)63;
		len &= 63;
	}
	if (len)
		memcpy(c->buf, p, len);
}

void slimfs_sha256_final(struct slimfs_sha256_ctx *c, uint8_t out[SLIMFS_SHA256_LEN])
{
	size_t fill = (size_t)(c->len & 63);
	uint64_t bits = c->len * 8;

	/* a 1 bit, zeros up to 56 mod 64, the length in bits as 64-bit big-endian */
	c->buf[fill++] = 0x80;
	if (fill > 56) {
		memset(c->buf + fill, 0, 64 - fill);
		blocks(c->h, c->buf, 1);
		fill = 0;
	}
	memset(c->buf + fill, 0, 56 - fill);
	store_be32(c->buf + 56, (uint32_t)(bits >> 32));
	store_be32(c->buf + 60, (uint32_t)bits);
	blocks(c->h, c->buf, 1);
	for (int i = 0; i < 8; i++)
		store_be32(out + 4 * i, c->h[i]);
}

void slimfs_sha256(const void *buf, size_t len, uint8_t out[SLIMFS_SHA256_LEN])
{
	struct slimfs_sha256_ctx c;

	slimfs_sha256_init(&c);
	slimfs_sha256_update(&c, buf, len);
	slimfs_sha256_final(&c, out);
}
