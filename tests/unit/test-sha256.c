// SPDX-License-Identifier: MIT
/*
 * SHA-256 (index/sha256.c): the FIPS 180-2 example vectors, streaming at
 * every split point, and every length 0..4096 at odd alignments against
 * python3's hashlib; each on the x86 SHA extensions (when the CPU has them)
 * and on the forced portable code. Base64 against RFC 4648 section 10.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slimfs/sha256.h"
#include "slimfs/util.h"
#include "tap.h"
#include "testutil.h"

#define REF_MAX 4096
#define REF_PAD 64 /* the bytes hashed for length L start at offset ref_off(L) */

static uint8_t ref_buf[REF_MAX + REF_PAD];
static char ref_hex[REF_MAX + 1][65]; /* python3's digests, "" when it could not run */

static size_t ref_off(size_t len)
{
	return (len * 37) % REF_PAD;
}

static bool hex_is(const uint8_t d[32], const char *want)
{
	char hex[65];

	slimfs_hex(d, 32, hex);
	if (strcmp(hex, want) == 0)
		return true;
	printf("# got %s\n# want %s\n", hex, want);
	return false;
}

/* Digests of ref_buf's slices from an independent implementation: python3's hashlib. */
static bool load_reference(void)
{
	char path[] = "/tmp/slimfs-test-sha256-XXXXXX", cmd[512];
	uint64_t rng = 0x5a5a1234;
	FILE *p;
	int fd;
	size_t n = 0;

	test_fill_random(&rng, ref_buf, sizeof(ref_buf));
	fd = mkstemp(path);
	if (fd < 0)
		return false;
	if (write(fd, ref_buf, sizeof(ref_buf)) != (ssize_t)sizeof(ref_buf)) {
		close(fd);
		unlink(path);
		return false;
	}
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import hashlib,sys\n"
		 "b=open(sys.argv[1],\"rb\").read()\n"
		 "for n in range(%d):\n"
		 "  o=(n*37)%%%d\n"
		 "  print(hashlib.sha256(b[o:o+n]).hexdigest())' %s",
		 REF_MAX + 1, REF_PAD, path);
	p = popen(cmd, "r");
	if (p) {
		while (n <= REF_MAX && fgets(ref_hex[n], sizeof(ref_hex[n]), p) &&
		       strlen(ref_hex[n]) == 64) {
			fgetc(p); /* the newline */
			n++;
		}
		pclose(p);
	}
	unlink(path);
	return n == REF_MAX + 1;
}

static void test_vectors(void)
{
	static const struct {
		const char *msg, *hex;
	} v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		/* 448 bits: the padding needs a second block */
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		/* 896 bits */
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		 "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	struct slimfs_sha256_ctx c;
	uint8_t d[32], a[1000];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		slimfs_sha256(v[i].msg, strlen(v[i].msg), d);
		CHECK(hex_is(d, v[i].hex));
	}
	/* one million 'a', fed 1000 at a time */
	memset(a, 'a', sizeof(a));
	slimfs_sha256_init(&c);
	for (int i = 0; i < 1000; i++)
		slimfs_sha256_update(&c, a, sizeof(a));
	slimfs_sha256_final(&c, d);
	CHECK(hex_is(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

/* Every split of 1000 bytes into two updates, and into three at (i, i + 7). */
static void test_streaming(void)
{
	uint8_t buf[1000], want[32], got[32];
	uint64_t rng = 7;
	int bad2 = 0, bad3 = 0;

	test_fill_random(&rng, buf, sizeof(buf));
	slimfs_sha256(buf, sizeof(buf), want);
	for (size_t i = 0; i <= sizeof(buf); i++) {
		struct slimfs_sha256_ctx c;
		size_t j = i + 7 < sizeof(buf) ? i + 7 : sizeof(buf);

		slimfs_sha256_init(&c);
		slimfs_sha256_update(&c, buf, i);
		slimfs_sha256_update(&c, buf + i, sizeof(buf) - i);
		slimfs_sha256_final(&c, got);
		bad2 += memcmp(got, want, 32) != 0;

		slimfs_sha256_init(&c);
		slimfs_sha256_update(&c, buf, i);
		slimfs_sha256_update(&c, buf + i, j - i);
		slimfs_sha256_update(&c, buf + j, sizeof(buf) - j);
		slimfs_sha256_final(&c, got);
		bad3 += memcmp(got, want, 32) != 0;
	}
	CHECK_EQ(bad2, 0);
	CHECK_EQ(bad3, 0);
}

static void test_reference(bool have_ref)
{
	int bad = 0;

	if (!have_ref) {
		printf("ok %d # SKIP python3 did not run\n", ++tap_n);
		return;
	}
	for (size_t n = 0; n <= REF_MAX; n++) {
		uint8_t d[32];
		char hex[65];

		slimfs_sha256(ref_buf + ref_off(n), n, d);
		slimfs_hex(d, 32, hex);
		if (strcmp(hex, ref_hex[n]) != 0 && bad++ < 5)
			printf("# length %zu: got %s, python3 %s\n", n, hex, ref_hex[n]);
	}
	CHECK_EQ(bad, 0);
}

static void test_base64(void)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		/* RFC 4648 section 10 */
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
		/* the last two letters of the alphabet, and bytes above 0x7f */
		{"\xfb\xff\xbf", "+/+/"},
		{"tester:s3cret", "dGVzdGVyOnMzY3JldA=="},
	};
	char out[32];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(out, 'X', sizeof(out));
		slimfs_base64(v[i].in, strlen(v[i].in), out);
		CHECK(strcmp(out, v[i].out) == 0);
	}
}

#if defined(__x86_64__)
/* "sha_ni" among the flags of /proc/cpuinfo */
static bool cpu_has_sha_ni(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[8192];
	bool yes = false;

	while (f && !yes && fgets(line, sizeof(line), f))
		yes = strncmp(line, "flags", 5) == 0 && strstr(line, " sha_ni");
	if (f)
		fclose(f);
	return yes;
}

/* Valgrind's simulated CPU offers no SHA extensions (its CPUID says so). */
static bool under_valgrind(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	bool yes = false;

	while (f && !yes && fgets(line, sizeof(line), f))
		yes = strstr(line, "vgpreload") != NULL;
	if (f)
		fclose(f);
	return yes;
}
#endif

int main(void)
{
	bool have_ref = load_reference();

#if defined(__x86_64__)
	/* the choice follows the CPU, as the kernel sees it (valgrind's CPU has no SHA) */
	CHECK(strcmp(slimfs_sha256_impl(),
		     cpu_has_sha_ni() && !under_valgrind() ? "sha-ni" : "portable") == 0);
#endif
	printf("# %s\n", slimfs_sha256_impl());
	test_vectors();
	test_streaming();
	test_reference(have_ref);

	slimfs_sha256_force_portable(true);
	CHECK(strcmp(slimfs_sha256_impl(), "portable") == 0);
	test_vectors();
	test_streaming();
	test_reference(have_ref);
	slimfs_sha256_force_portable(false);

	test_base64();
	return tap_done();
}
