// SPDX-License-Identifier: MIT
/* Large buffers on transparent huge pages (see slimfs/util.h). */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "slimfs/util.h"

#define HUGE_SIZE ((size_t)2 << 20) /* x86-64, arm64 with 4 KiB pages */

static bool huge_on;

void slimfs_huge_pages(bool on)
{
	huge_on = on;
}

bool slimfs_huge_pages_on(void)
{
	return huge_on;
}

static size_t huge_len(size_t len)
{
	return (len + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
}

void *slimfs_huge_alloc(size_t len)
{
	size_t n = huge_len(len ? len : 1), head;
	uint8_t *p;

	if (n < len)
		return NULL;
	/* Aligned to a huge page: one more, and the ends that stick out unmapped. */
	p = mmap(NULL, n + HUGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	head = (HUGE_SIZE - ((uintptr_t)p & (HUGE_SIZE - 1))) & (HUGE_SIZE - 1);
	if (head)
		munmap(p, head);
	munmap(p + head + n, HUGE_SIZE - head);
	p += head;
	if (huge_on)
		(void)madvise(p, n, MADV_HUGEPAGE); /* a hint: EINVAL without THP */
	return p;
}

void *slimfs_zmap(size_t len)
{
	void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	return p == MAP_FAILED ? NULL : p;
}

void slimfs_zmap_free(void *p, size_t len)
{
	if (p)
		munmap(p, len ? len : 1);
}

void slimfs_huge_free(void *p, size_t len)
{
	if (p)
		munmap(p, huge_len(len ? len : 1));
}

int slimfs_huge_release(void *p, size_t len)
{
	if (!p)
		return 0;
	return madvise(p, huge_len(len ? len : 1), MADV_DONTNEED) < 0 ? -errno : 0;
}
