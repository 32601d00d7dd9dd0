#include "queue/maildir.h"

#include "base/mailpath.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

/* Opens a directory component under dirfd, making it if missing, never following a
 * symlink. */
static int
open_dir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
			return -1;
		fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	return fd;
}

/* The common case, an existing Maildir, in two system calls: openat2() resolves the whole
 * path at once and refuses any symlink on the way or an escape from basefd.  -1 (and the
 * walk below) when the kernel lacks openat2 or the Maildir is not complete yet. */
static int
open_existing(int basefd, const char *rel, int *dirfd)
{
#ifdef SYS_openat2
	struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
	                       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
	                                  RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, basefd, rel, &how, sizeof(how));
	if (fd < 0)
		return -1;
	int nw = openat(fd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (nw < 0) {
		close(fd);
		return -1;
	}
	*dirfd = fd;
	return nw;
#else
	(void)basefd;
	(void)rel;
	(void)dirfd;
	return -1;
#endif
}

int
maildir_open(int basefd, const char *rel, int *dirfd)
{
	char comp[256];
	const char *p = rel;

	if (!mailpath_rel_ok(rel)) {
		errno = EINVAL;
		return -1;
	}
	if (*rel) {
		int nw = open_existing(basefd, rel, dirfd);
		if (nw >= 0)
			return nw;
	}
	int fd = dup(basefd);

	if (fd < 0)
		return -1;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(comp) || !mailpath_component_ok(p, len)) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		int next = open_dir(fd, comp);
		close(fd);
		if (next < 0)
			return -1;
		fd = next;
		p += len;
	}
	int tmp = open_dir(fd, "tmp"), cur = open_dir(fd, "cur"), nw = open_dir(fd, "new");
	if (tmp >= 0)
		close(tmp);
	if (cur >= 0)
		close(cur);
	if (tmp < 0 || cur < 0 || nw < 0) {
		int e = errno;
		if (nw >= 0)
			close(nw);
		close(fd);
		errno = e;
		return -1;
	}
	*dirfd = fd;
	return nw;
}

void
maildir_name(char *out, size_t size, long long t, const char *id, size_t idx, const char *host)
{
	char h[128];

	/* Maildir names may not hold '/' or ':' (the info separator) */
	mailpath_encode(host, strlen(host), h, sizeof(h));
	snprintf(out, size, "%lld.M%sR%zu.%s", t, id, idx, h);
}

/* True if cur/ holds name (possibly with ":2,FLAGS" appended by a reader). */
static bool
in_cur(int maildirfd, const char *name)
{
	int fd = openat(maildirfd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t len = strlen(name);
	bool found = false;
	struct dirent *de;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (!found && (de = readdir(d)))
		found = strncmp(de->d_name, name, len) == 0 &&
		        (de->d_name[len] == '\0' || de->d_name[len] == ':');
	closedir(d);
	return found;
}

static int
copy_into(int maildirfd, int newfd, int queuefd, const char *id, const char *name)
{
	int in = openat(queuefd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1, tmpfd = -1;
	int err = 0;
	char buf[65536];

	if (in < 0)
		return -1;
	tmpfd = open_dir(maildirfd, "tmp"); /* made here if someone removed it */
	if (tmpfd < 0)
		goto fail;
	out = openat(tmpfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0)
		goto fail;
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf)), off = 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		while (off < n) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto fail;
			off += w;
		}
	}
	if (fsync(out) < 0 || close(out) < 0) {
		out = -1;
		goto fail;
	}
	out = -1;
	if (renameat(tmpfd, name, newfd, name) < 0)
		goto fail;
	close(tmpfd);
	close(in);
	return 0;
fail:
	err = errno;
	if (out >= 0)
		close(out);
	if (tmpfd >= 0) {
		unlinkat(tmpfd, name, 0);
		close(tmpfd);
	}
	close(in);
	errno = err;
	return -1;
}

int
maildir_deliver(int maildirfd, int newfd, int queuefd, const char *id, const char *name,
                bool check_cur)
{
	if (check_cur && in_cur(maildirfd, name))
		return 0; /* delivered before a crash, and already seen by a reader */
	if (linkat(queuefd, id, newfd, name, 0) == 0)
		return 0;
	if (errno == EEXIST)
		return 0; /* delivered before a crash */
	if (errno != EXDEV && errno != EPERM && errno != EMLINK)
		return -1;
	return copy_into(maildirfd, newfd, queuefd, id, name) < 0 ? -1 : 1;
}
