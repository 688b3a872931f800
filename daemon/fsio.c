/* fsio.c (base): writing a buffer whole, syncing a path. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "kiln/err.h"
#include "kiln/fsio.h"

int fsio_write_all(int fd, const void *p, size_t n, const char *path, struct kiln_err *err)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return kiln_err_set(err, -errno, "cannot write '%s': %s", path,
					    strerror(errno));
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return 0;
}

int fsio_sync_path(const char *path, int flags, struct kiln_err *err)
{
	int fd = open(path, flags | O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return kiln_err_set(err, -errno, "cannot open '%s': %s", path, strerror(errno));
	if (fsync(fd) < 0)
		r = kiln_err_set(err, -errno, "cannot sync '%s': %s", path, strerror(errno));
	close(fd);
	return r;
}
