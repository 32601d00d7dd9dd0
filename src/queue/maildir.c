#include "queue/maildir.h"

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

size_t
maildir_encode(const char *in, size_t len, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tolower((unsigned char)in[i]);
		bool plain = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		             c == '_' || c == '+' || c == '=' || (c == '.' && i > 0);
		if (plain) {
			if (n + 1 >= size)
				return 0;
			out[n++] = (char)c;
		} else {
			if (n + 3 >= size)
				return 0;
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	if (n == 0) {
		if (size < 4)
			return 0;
		memcpy(out, "%00", 3);
		n = 3;
	}
	out[n] = '\0';
	return n;
}

int
maildir_split(const char *tmpl, char *base, size_t bsize, const char **rest)
{
	const char *pct = strchr(tmpl, '%'), *slash;
	size_t blen;

	if (tmpl[0] != '/')
		return -1;
	if (!pct) {
		/* no template at all: one Maildir for everyone */
		slash = strrchr(tmpl, '/');
	} else {
		slash = pct;
		while (slash > tmpl && *slash != '/')
			slash--;
	}
	blen = slash == tmpl ? 1 : (size_t)(slash - tmpl);
	if (blen >= bsize)
		return -1;
	memcpy(base, tmpl, blen);
	base[blen] = '\0';
	*rest = slash + 1;
	return 0;
}

int
maildir_expand(const char *rest, const char *local, const char *domain, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = rest; *p; p++) {
		if (*p == '%' && (p[1] == 'd' || p[1] == 'u')) {
			const char *v = p[1] == 'd' ? domain : local;
			size_t m = maildir_encode(v, strlen(v), out + n, size - n);
			if (m == 0)
				return -1;
			n += m;
			p++;
			continue;
		}
		if (*p == '%' && p[1] == '%')
			p++;
		if (n + 1 >= size)
			return -1;
		out[n++] = *p;
	}
	out[n] = '\0';
	return 0;
}

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

/* A component delivery opens: a file name (at most NAME_MAX bytes), neither "." nor "..". */
static bool
component_ok(const char *p, size_t len)
{
	return len <= NAME_MAX && !(len == 1 && p[0] == '.') &&
	       !(len == 2 && p[0] == '.' && p[1] == '.');
}

/* Every component of rel fits and is neither "." nor "..". */
static bool
rel_ok(const char *rel)
{
	for (const char *p = rel; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (!component_ok(p, len))
			return false;
		p += len;
		if (*p == '/')
			p++;
	}
	return true;
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

	if (!rel_ok(rel)) {
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
		if (len >= sizeof(comp) || !component_ok(p, len)) {
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

/* The template with its '.' and '..' resolved as words (a '..' takes the component before
 * it away, as realpath would without symlinks) and its empty components dropped: what the
 * writer most likely meant.  out has room for the template; starts for its components. */
static void
without_dots(const char *tmpl, char *out, size_t *starts)
{
	size_t n = 0, depth = 0;

	for (const char *p = tmpl + 1;; p++) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (depth > 0)
				n = starts[--depth];
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			starts[depth++] = n;
			out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
		if (!*p)
			break;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
}

int
maildir_check(const char *tmpl, char *err, size_t errlen)
{
	size_t tl = strlen(tmpl), len;
	char *base = NULL, *rel = NULL, *fix = NULL;
	size_t *starts = NULL;
	const char *rest, *p, *q;
	int rc = -1;

	if (tmpl[0] != '/') {
		snprintf(err, errlen,
		         "'%s' is not an absolute path; write it from the root, e.g. "
		         "/var/mail/%%d/%%u",
		         tmpl);
		return -1;
	}
	/* split and expand into buffers that always fit, then hold the results to the
	 * limits delivery has: the lengths make the messages */
	if (!(base = malloc(tl + 2)) || !(rel = malloc(tl + 2)) ||
	    maildir_split(tmpl, base, tl + 2, &rest) < 0 ||
	    maildir_expand(rest, "a", "a", rel, tl + 2) < 0) {
		snprintf(err, errlen, "cannot check the maildir template: out of memory");
		goto out;
	}
	if (strlen(base) >= MAILDIR_BASE_MAX) {
		snprintf(err, errlen,
		         "its directory part before the first %% is %zu bytes; at most %d: use a "
		         "shorter path",
		         strlen(base), MAILDIR_BASE_MAX - 1);
		goto out;
	}
	for (p = base + 1; *p; p += len + (p[len] == '/')) {
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			snprintf(err, errlen,
			         "directory name '%.40s...' is %zu bytes; a name has at most %d "
			         "(NAME_MAX): shorten it",
			         p, len, NAME_MAX);
			goto out;
		}
	}
	if (strlen(rel) >= MAILDIR_REL_MAX) {
		snprintf(err, errlen,
		         "its part from the first %% on is %zu bytes or more once expanded; at "
		         "most %d: shorten it",
		         strlen(rel), MAILDIR_REL_MAX - 1);
		goto out;
	}
	/* rest and its shortest expansion have the same components (an encoded %d or %u
	 * holds no '/'); what maildir_open refuses here it refuses for every recipient */
	for (p = rest, q = rel;;) {
		size_t pl = strcspn(p, "/"), ql = strcspn(q, "/");
		if (ql > NAME_MAX) {
			snprintf(
			        err, errlen,
			        "component '%.40s...' is %zu bytes or more once expanded (counting "
			        "%%d and %%u as one); a name has at most %d (NAME_MAX): shorten it",
			        p, ql, NAME_MAX);
			goto out;
		}
		if (!component_ok(q, ql)) {
			/* the fix is no longer than the template and has fewer components */
			if (!(fix = malloc(tl + 2)) ||
			    !(starts = calloc(tl + 1, sizeof(*starts)))) {
				snprintf(err, errlen,
				         "cannot check the maildir template: out of memory");
				goto out;
			}
			without_dots(tmpl, fix, starts);
			snprintf(err, errlen,
			         "a '%.*s' component: delivery refuses '.' and '..' in a "
			         "recipient's path, so every message would wait until it "
			         "expires; write '%s'",
			         (int)pl, p, fix);
			goto out;
		}
		if (!p[pl])
			break;
		p += pl + 1;
		q += ql + 1;
	}
	rc = rel_ok(rel) ? 0 : -1; /* the walk above is rel_ok's, message by message */
	if (rc < 0)
		snprintf(err, errlen, "delivery would refuse every recipient's path '%s'", rel);
out:
	free(base);
	free(rel);
	free(fix);
	free(starts);
	return rc;
}

void
maildir_name(char *out, size_t size, long long t, const char *id, size_t idx, const char *host)
{
	char h[128];

	/* Maildir names may not hold '/' or ':' (the info separator) */
	maildir_encode(host, strlen(host), h, sizeof(h));
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
