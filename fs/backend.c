// SPDX-License-Identifier: MIT
/* Backend dispatch and the local-file backend. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "slimfs/fetch.h"
#include "slimfs/util.h"

struct file_backend {
	struct slimfs_backend b;
	int fd;
};

static int file_read(struct slimfs_backend *b, uint64_t off, void *buf, size_t len)
{
	struct file_backend *f = (struct file_backend *)b;

	if (off > b->size || len > b->size - off)
		return -ERANGE;
	return slimfs_pread_all(f->fd, buf, len, off);
}

static void file_free(struct slimfs_backend *b)
{
	struct file_backend *f = (struct file_backend *)b;

	close(f->fd);
}

static const struct slimfs_backend_ops file_ops = {
	.read = file_read,
	.free = file_free,
};

int slimfs_backend_open_file(const char *path, struct slimfs_backend **out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct file_backend *f;
	struct stat st;

	if (fd < 0)
		return log_error_errno(-errno, "cannot open '%s'", path);
	if (fstat(fd, &st) < 0)
		return log_error_errno(-errno, "cannot stat '%s'", path);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("'%s': not a regular file", path);
		return -EINVAL;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->b.name = strdup(path);
	if (!f->b.name) {
		free(f);
		return -ENOMEM;
	}
	f->b.ops = &file_ops;
	f->b.size = (uint64_t)st.st_size;
	f->fd = steal_fd(&fd);
	*out = &f->b;
	return 0;
}

int slimfs_backend_open(const char *src, const struct slimfs_fetch_opts *o,
			struct slimfs_backend **out)
{
	(void)o;
	if (strncmp(src, "http://", 7) == 0 || strncmp(src, "https://", 8) == 0 ||
	    strncmp(src, "oci://", 6) == 0) {
		log_error("'%s': remote images are not supported by this build yet", src);
		return -EPROTONOSUPPORT;
	}
	return slimfs_backend_open_file(src, out);
}

void slimfs_backend_free(struct slimfs_backend *b)
{
	if (!b)
		return;
	b->ops->free(b);
	free(b->name);
	free(b);
}

/* Local file descriptor behind a backend, or -1 (lets callers mmap the index). */
int slimfs_backend_local_fd(struct slimfs_backend *b)
{
	return b->ops == &file_ops ? ((struct file_backend *)b)->fd : -1;
}
