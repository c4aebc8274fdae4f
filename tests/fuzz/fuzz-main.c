// SPDX-License-Identifier: MIT
/*
 * Replays inputs through a fuzz target without libFuzzer: each argument is a
 * file or a directory of files (read whole, in name order). Used by the
 * `fuzz-regression` suite of `meson test`, so every corpus file and every
 * regress-* find runs in every build (with ASan/UBSan in CI).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slimfs/util.h"
#include "fuzz.h"

static unsigned long ran;

static int run_file(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ uint8_t *buf = NULL;
	struct stat st;
	int r;

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "fuzz-main: cannot open '%s': %s\n", path, strerror(errno));
		return -errno;
	}
	/* exactly the file's size: ASan sees any read past the input */
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		return -ENOMEM;
	if (st.st_size) {
		r = slimfs_pread_all(fd, buf, (size_t)st.st_size, 0);
		if (r < 0) {
			fprintf(stderr, "fuzz-main: cannot read '%s': %s\n", path, strerror(-r));
			return r;
		}
	}
	fprintf(stderr, "fuzz-main: %s (%lld bytes)\n", path, (long long)st.st_size);
	LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
	ran++;
	return 0;
}

static int run_dir(const char *dir)
{
	struct dirent **ents = NULL;
	int n, r = 0;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "fuzz-main: cannot read directory '%s': %s\n", dir,
			strerror(errno));
		return -errno;
	}
	for (int i = 0; i < n; i++) {
		char *p = NULL;
		struct stat st;

		if (ents[i]->d_name[0] != '.' && asprintf(&p, "%s/%s", dir, ents[i]->d_name) >= 0 &&
		    stat(p, &st) == 0 && S_ISREG(st.st_mode) && r == 0)
			r = run_file(p);
		free(p);
		free(ents[i]);
	}
	free(ents);
	return r;
}

int main(int argc, char **argv)
{
	int r = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc && r == 0; i++) {
		struct stat st;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "fuzz-main: '%s': %s\n", argv[i], strerror(errno));
			return 1;
		}
		r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
	}
	if (r < 0)
		return 1;
	if (ran == 0) {
		fprintf(stderr, "fuzz-main: no input given or found\n");
		return 1;
	}
	fprintf(stderr, "fuzz-main: %lu inputs ran\n", ran);
	return 0;
}
