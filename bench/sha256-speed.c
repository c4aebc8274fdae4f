// SPDX-License-Identifier: MIT
/*
 * SHA-256 throughput of each block function in 64 KiB buffers (as the OCI
 * blob digests hash them), and of OpenSSL's EVP_Digest when libcrypto.so.3
 * can be dlopen()ed: rounds of 8 MiB per contender, interleaved, best round
 * of each, so that a noisy shared machine slows all of them alike.
 * usage: sha256-speed [ROUNDS, default 40]
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slimfs/sha256.h"
#include "dl.h"
#include "slimfs/util.h"

#define BLOCK (64 << 10)
#define ROUND (8 << 20)

/* the two OpenSSL calls, declared here: the build has no OpenSSL headers */
static struct {
	const void *(*EVP_sha256)(void);
	int (*EVP_Digest)(const void *, size_t, unsigned char *, unsigned int *, const void *,
			  void *);
} evp;
static const struct slimfs_dl_sym evp_syms[] = {
	{"EVP_sha256", offsetof(__typeof__(evp), EVP_sha256)},
	{"EVP_Digest", offsetof(__typeof__(evp), EVP_Digest)},
};
static struct slimfs_dl_lib libcrypto = {
	.soname = "libcrypto.so.3", .syms = evp_syms, .nsyms = 2, .table = &evp};

static uint8_t buf[BLOCK];

/* MB/s (10^6 bytes) of one round of contender i: 0 sha-ni/CPU's choice, 1 portable, 2 OpenSSL */
static double round_of(int i)
{
	uint64_t t0 = slimfs_now_ns();
	uint8_t d[32];
	unsigned int len;

	slimfs_sha256_force_portable(i == 1);
	for (int n = 0; n < ROUND / BLOCK; n++) {
		if (i == 2)
			evp.EVP_Digest(buf, sizeof(buf), d, &len, evp.EVP_sha256(), NULL);
		else
			slimfs_sha256(buf, sizeof(buf), d);
		buf[n] ^= d[0]; /* keep every digest live */
	}
	return (double)ROUND / ((double)(slimfs_now_ns() - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 40;
	int k = slimfs_dl_load(&libcrypto) < 0 ? 2 : 3;
	double best[3] = {0, 0, 0};
	const char *name[3];

	name[0] = slimfs_sha256_impl();
	name[1] = "portable";
	name[2] = "openssl";
	memset(buf, 0x5a, sizeof(buf));
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < k; i++) {
			double v = round_of(i);

			if (v > best[i])
				best[i] = v;
		}
	for (int i = 0; i < k; i++)
		printf("%-8s %8.1f MB/s (best of %d rounds of 8 MiB in 64 KiB calls)\n", name[i],
		       best[i], rounds);
	return 0;
}
