// SPDX-License-Identifier: MIT
/*
 * preadcheck: compares random preads of the same files in two trees, from
 * several threads at once (a FUSE mount against the tree it was built from).
 *
 *   preadcheck [-t THREADS] [-n ITERS] [-s SEED] [-a] [-d] [-q] SRC_DIR MNT_DIR
 *
 * Lists the regular files under SRC_DIR; each thread then does ITERS rounds
 * of: pick a file, open it in both trees, do a few preads at a random offset
 * (sometimes across or past EOF) of 1 byte .. 256 KiB, compare sizes, counts
 * and bytes. -a first reads every file whole, in random-sized pieces, the
 * files shared out between the threads. -d drops the mount side's page
 * cache of a file (POSIX_FADV_DONTNEED) before half of the rounds, so that
 * the reads reach the filesystem instead of the kernel's cache. Prints a summary; exits 1 on any
 * mismatch or read error, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LEN_MAX	    (256u << 10)
#define MAX_REPORTS 20

struct file {
	char *rel;
	uint64_t size;
};

static struct {
	const char *src, *mnt;
	size_t src_len;
	struct file *files;
	size_t nfiles, cap;
	unsigned threads;
	uint64_t iters, seed;
	bool all, quiet, drop;
	atomic_uint_fast64_t reads, bytes, mismatches, errors, reports;
	atomic_size_t next_file; /* -a: next file to read whole */
} g;

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64: good enough, and the same sequence for the same seed */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&g.reports, 1) >= MAX_REPORTS)
		return;
	va_start(ap, fmt);
	fputs("preadcheck: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int add_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	if (g.nfiles == g.cap) {
		size_t ncap = g.cap ? g.cap * 2 : 1024;
		struct file *n = realloc(g.files, ncap * sizeof(*n));

		if (!n)
			return -1;
		g.files = n;
		g.cap = ncap;
	}
	g.files[g.nfiles].rel = strdup(path + g.src_len);
	if (!g.files[g.nfiles].rel)
		return -1;
	g.files[g.nfiles].size = (uint64_t)st->st_size;
	g.nfiles++;
	return 0;
}

/* Reads up to len bytes at off, retrying short reads; bytes read, or -errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* One pread of both files, compared. false on a mismatch or an error (reported). */
static bool compare_at(const struct file *f, int sfd, int mfd, uint8_t *a, uint8_t *b, size_t len,
		       uint64_t off)
{
	ssize_t na = read_full(sfd, a, len, off), nb = read_full(mfd, b, len, off);

	atomic_fetch_add(&g.reads, 1);
	if (na < 0 || nb < 0) {
		atomic_fetch_add(&g.errors, 1);
		report("'%s': pread(%zu bytes at %" PRIu64 ") failed: %s: %s", f->rel, len, off,
		       na < 0 ? "source" : "mount", strerror((int)-(na < 0 ? na : nb)));
		return false;
	}
	if (na != nb) {
		atomic_fetch_add(&g.mismatches, 1);
		report("'%s': pread(%zu bytes at %" PRIu64 "): source read %zd bytes, mount %zd",
		       f->rel, len, off, na, nb);
		return false;
	}
	if (memcmp(a, b, (size_t)na) != 0) {
		size_t i = 0;

		while (a[i] == b[i])
			i++;
		atomic_fetch_add(&g.mismatches, 1);
		report("'%s': pread(%zu bytes at %" PRIu64 "): bytes differ from offset %" PRIu64
		       " (source %02x, mount %02x)",
		       f->rel, len, off, off + i, a[i], b[i]);
		return false;
	}
	atomic_fetch_add(&g.bytes, (uint64_t)na);
	return true;
}

/* Opens the file in both trees and checks that the sizes agree. */
static bool open_pair(const struct file *f, int *sfd, int *mfd)
{
	char sp[4096], mp[4096];
	struct stat ss, ms;

	snprintf(sp, sizeof(sp), "%s%s", g.src, f->rel);
	snprintf(mp, sizeof(mp), "%s%s", g.mnt, f->rel);
	*mfd = -1;
	*sfd = open(sp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (*sfd >= 0)
		*mfd = open(mp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (*sfd < 0 || *mfd < 0) {
		atomic_fetch_add(&g.errors, 1);
		report("cannot open '%s': %s", *sfd < 0 ? sp : mp, strerror(errno));
		goto fail;
	}
	if (fstat(*sfd, &ss) < 0 || fstat(*mfd, &ms) < 0) {
		atomic_fetch_add(&g.errors, 1);
		report("'%s': fstat failed: %s", f->rel, strerror(errno));
		goto fail;
	}
	if (ss.st_size != ms.st_size) {
		atomic_fetch_add(&g.mismatches, 1);
		report("'%s': size %lld in the source, %lld in the mount", f->rel,
		       (long long)ss.st_size, (long long)ms.st_size);
		goto fail;
	}
	return true;
fail:
	if (*sfd >= 0)
		close(*sfd);
	if (*mfd >= 0)
		close(*mfd);
	return false;
}

/* Length: half the time small (1..4 KiB), else up to 256 KiB. */
static size_t rnd_len(uint64_t *s)
{
	if (rnd(s) & 1)
		return 1 + (size_t)(rnd(s) % 4096);
	return 1 + (size_t)(rnd(s) % LEN_MAX);
}

/* Offset: mostly inside, sometimes straddling EOF, sometimes past it. */
static uint64_t rnd_off(uint64_t *s, uint64_t size, size_t len)
{
	switch (rnd(s) % 8) {
	case 0: /* across EOF */
		return size > len / 2 ? size - len / 2 : 0;
	case 1: /* at or past EOF */
		return size + rnd(s) % 4096;
	case 2: /* page aligned */
		return size ? (rnd(s) % size) & ~(uint64_t)4095 : 0;
	default:
		return size ? rnd(s) % size : 0;
	}
}

static void *worker(void *arg)
{
	uint64_t s = g.seed * 1000003u + (uint64_t)(uintptr_t)arg;
	uint8_t *a = malloc(LEN_MAX), *b = malloc(LEN_MAX);

	if (!a || !b) {
		atomic_fetch_add(&g.errors, 1);
		report("out of memory");
		goto out;
	}
	if (g.all) {
		size_t i;

		while ((i = atomic_fetch_add(&g.next_file, 1)) < g.nfiles) {
			const struct file *f = &g.files[i];
			uint64_t off = 0;
			int sfd, mfd;

			if (!open_pair(f, &sfd, &mfd))
				continue;
			if (g.drop)
				posix_fadvise(mfd, 0, 0, POSIX_FADV_DONTNEED);
			for (;;) {
				size_t len = 1 + (size_t)(rnd(&s) % LEN_MAX);

				if (!compare_at(f, sfd, mfd, a, b, len, off) || off >= f->size)
					break;
				off += len;
			}
			close(sfd);
			close(mfd);
		}
	}
	for (uint64_t it = 0; it < g.iters && g.nfiles; it++) {
		const struct file *f = &g.files[rnd(&s) % g.nfiles];
		unsigned reads = 1 + (unsigned)(rnd(&s) % 4);
		int sfd, mfd;

		if (!open_pair(f, &sfd, &mfd))
			continue;
		if (g.drop && rnd(&s) & 1)
			posix_fadvise(mfd, 0, 0, POSIX_FADV_DONTNEED);
		while (reads--) {
			size_t len = rnd_len(&s);

			if (!compare_at(f, sfd, mfd, a, b, len, rnd_off(&s, f->size, len)))
				break;
		}
		close(sfd);
		close(mfd);
	}
out:
	free(a);
	free(b);
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: preadcheck [-t THREADS] [-n ITERS] [-s SEED] [-a] [-d] [-q] SRC_DIR "
		   "MNT_DIR\n"
		   "  -t THREADS  threads (default 8)\n"
		   "  -n ITERS    random rounds per thread (default 1000)\n"
		   "  -s SEED     random seed (default: time)\n"
		   "  -a          also read every file whole once\n"
		   "  -d          drop the mount side's page cache before half of the rounds\n"
		   "  -q          print the summary only when something failed\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return *s && !*end && errno == 0 && *s != '-';
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t *tids;
	uint64_t v;
	double secs;
	int c;

	g.threads = 8;
	g.iters = 1000;
	g.seed = (uint64_t)time(NULL);
	while ((c = getopt(argc, argv, "t:n:s:adqh")) != -1) {
		switch (c) {
		case 't':
			if (!parse_u64(optarg, &v) || v == 0 || v > 1024) {
				fprintf(stderr, "preadcheck: -t: 1..1024 threads\n");
				return 2;
			}
			g.threads = (unsigned)v;
			break;
		case 'n':
			if (!parse_u64(optarg, &g.iters)) {
				fprintf(stderr, "preadcheck: -n: '%s' is not a count\n", optarg);
				return 2;
			}
			break;
		case 's':
			if (!parse_u64(optarg, &g.seed)) {
				fprintf(stderr, "preadcheck: -s: '%s' is not a number\n", optarg);
				return 2;
			}
			break;
		case 'a':
			g.all = true;
			break;
		case 'd':
			g.drop = true;
			break;
		case 'q':
			g.quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	g.src = argv[optind];
	g.mnt = argv[optind + 1];
	g.src_len = strlen(g.src);
	for (int i = 0; i < 2; i++) {
		struct stat st;

		if (stat(argv[optind + i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "preadcheck: '%s' is not a directory\n", argv[optind + i]);
			return 1;
		}
	}
	if (nftw(g.src, add_file, 64, FTW_PHYS) != 0) {
		fprintf(stderr, "preadcheck: cannot list '%s': %s\n", g.src, strerror(errno));
		return 1;
	}
	if (g.nfiles == 0) {
		fprintf(stderr, "preadcheck: no regular file under '%s'\n", g.src);
		return 1;
	}
	tids = calloc(g.threads, sizeof(*tids));
	if (!tids)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < g.threads; i++) {
		int r = pthread_create(&tids[i], NULL, worker, (void *)(uintptr_t)i);

		if (r) {
			fprintf(stderr, "preadcheck: cannot start a thread: %s\n", strerror(r));
			return 1;
		}
	}
	for (unsigned i = 0; i < g.threads; i++)
		pthread_join(tids[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	if (!g.quiet || g.mismatches || g.errors)
		printf("preadcheck: %zu files, %u threads x %" PRIu64 " rounds%s, seed %" PRIu64
		       ": %" PRIu64 " preads, %.1f MiB compared in %.2f s (%.1f MiB/s); "
		       "%" PRIu64 " mismatches, %" PRIu64 " errors\n",
		       g.nfiles, g.threads, g.iters, g.all ? " + every file whole" : "", g.seed,
		       (uint64_t)g.reads, (double)g.bytes / 1048576.0, secs,
		       secs > 0 ? (double)g.bytes / 1048576.0 / secs : 0.0, (uint64_t)g.mismatches,
		       (uint64_t)g.errors);
	for (size_t i = 0; i < g.nfiles; i++)
		free(g.files[i].rel);
	free(g.files);
	free(tids);
	return g.mismatches || g.errors ? 1 : 0;
}
