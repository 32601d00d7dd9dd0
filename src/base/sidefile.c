#include "base/sidefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/vec.h"

#define CHUNK 65536

struct sidefile_set {
	struct {
		char *path;
		int fd;
	} * v;
	size_t n, cap;
};

/* The set this thread opens from (use) or records its opens into (record): a thread reads
 * one configuration at a time, so the choice is the thread's, not the process's. */
static _Thread_local struct sidefile_set *use_set, *record_set;

struct sidefile_set *
sidefile_set_new(void)
{
	return calloc(1, sizeof(struct sidefile_set));
}

void
sidefile_set_free(struct sidefile_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		close(s->v[i].fd);
	}
	free(s->v);
	free(s);
}

static int
set_find(const struct sidefile_set *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i].path, path) == 0)
			return (int)i;
	return -1;
}

int
sidefile_set_add(struct sidefile_set *s, const char *path, int fd)
{
	char *copy;

	if (set_find(s, path) >= 0) {
		close(fd);
		return 0;
	}
	if (s->n >= SIDEFILE_SET_MAX) {
		close(fd);
		errno = EMFILE;
		return -1;
	}
	if (VEC_RESERVE(s->v, s->cap, s->n + 1) < 0 || !(copy = strdup(path))) {
		close(fd);
		return -1;
	}
	s->v[s->n].path = copy;
	s->v[s->n].fd = fd;
	s->n++;
	return 0;
}

size_t
sidefile_set_count(const struct sidefile_set *s)
{
	return s->n;
}

void
sidefile_set_get(const struct sidefile_set *s, size_t i, const char **path, int *fd)
{
	*path = s->v[i].path;
	*fd = s->v[i].fd;
}

void
sidefile_use(struct sidefile_set *s)
{
	use_set = s;
}

void
sidefile_record(struct sidefile_set *s)
{
	record_set = s;
}

/* open(path, O_RDONLY | flags), or a descriptor of it that the privileged reader handed over
 * (its own offset rewound: the same file may be read twice in one load). */
int
sidefile_open(const char *path, int flags)
{
	int i, fd;

	if (use_set && (i = set_find(use_set, path)) >= 0) {
		fd = fcntl(use_set->v[i].fd, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0 && lseek(fd, 0, SEEK_SET) < 0 && errno != ESPIPE) {
			close(fd);
			return -1;
		}
		return fd;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | flags);
	if (fd >= 0 && record_set) {
		int keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (keep >= 0)
			(void)sidefile_set_add(record_set, path, keep);
	}
	return fd;
}

static void set_error(struct sidefile_error *err, int line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
set_error(struct sidefile_error *err, int line, const char *fmt, ...)
{
	va_list ap;

	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

/* "256MB", "4KB" or "1000 bytes", as the config file writes sizes */
static void
size_text(uint64_t n, char *buf, size_t size)
{
	if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
		snprintf(buf, size, "%lluMB", (unsigned long long)(n / (1024 * 1024)));
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(buf, size, "%lluKB", (unsigned long long)(n / 1024));
	else
		snprintf(buf, size, "%llu bytes", (unsigned long long)n);
}

static const char *
kind_of(mode_t m)
{
	return S_ISDIR(m)    ? "a directory"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	                     : "not a plain file";
}

static void
raise_hint(const char *option, char *buf, size_t size)
{
	if (option)
		snprintf(buf, size, " (raise %s if the file is right)", option);
	else
		buf[0] = '\0';
}

/* Opens path for reading if it is a regular file within the size limit: an fd, or -1. */
static int
open_checked(const char *path, const struct sidefile_limits *lim, struct sidefile_error *err,
             uint64_t *size)
{
	char limit[32], hint[96];
	struct stat st;
	int fd;

	fd = sidefile_open(path, O_NONBLOCK);
	if (fd < 0) {
		set_error(err, 0, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		set_error(err, 0, "%s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		set_error(err, 0, "not a regular file (%s)", kind_of(st.st_mode));
		goto fail;
	}
	if ((uint64_t)st.st_size > lim->max_size) {
		size_text(lim->max_size, limit, sizeof(limit));
		raise_hint(lim->size_option, hint, sizeof(hint));
		set_error(err, 0, "it is %llu bytes, over the limit of %s%s",
		          (unsigned long long)st.st_size, limit, hint);
		goto fail;
	}
	if (size)
		*size = (uint64_t)st.st_size;
	return fd;
fail:
	close(fd);
	return -1;
}

int
sidefile_check(const char *path, const struct sidefile_limits *lim, struct sidefile_error *err)
{
	int fd = open_checked(path, lim, err, NULL);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

int
sidefile_read(const char *path, const struct sidefile_limits *lim, sidefile_line_cb cb, void *arg,
              struct sidefile_error *err)
{
	return sidefile_read_sized(path, lim, NULL, cb, arg, err);
}

int
sidefile_read_sized(const char *path, const struct sidefile_limits *lim, sidefile_size_cb size_cb,
                    sidefile_line_cb cb, void *arg, struct sidefile_error *err)
{
	char *chunk = NULL, *line = NULL, limit[32], hint[96];
	size_t cap = 0, len = 0;
	uint64_t total = 0;
	int fd, lineno = 1, rc = -1;

	err->line = 0;
	err->text[0] = '\0';
	uint64_t size = 0;

	if ((fd = open_checked(path, lim, err, &size)) < 0)
		return -1;
	if (record_set) { /* the recorder wants the descriptor, not the lines */
		close(fd);
		return 0;
	}
	if (size_cb)
		size_cb(size, arg);
	if (!(chunk = malloc(CHUNK))) {
		set_error(err, 0, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, CHUNK);
		char *p = chunk, *end;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_error(err, lineno, "%s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		bool first = total == 0;
		total += (uint64_t)n;
		/* a UTF-8 byte order mark (Notepad, PowerShell's Out-File -Encoding utf8) is not
		 * part of the first line */
		if (first && n >= 3 && memcmp(chunk, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		if (total > lim->max_size) {
			/* it grew since fstat() */
			size_text(lim->max_size, limit, sizeof(limit));
			raise_hint(lim->size_option, hint, sizeof(hint));
			set_error(err, lineno,
			          "the file grows past the limit of %s as it is read%s", limit,
			          hint);
			goto out;
		}
		/* one scan of the chunk for a NUL; the lines are searched only if it has one */
		bool nul = memchr(chunk, '\0', (size_t)n) != NULL;
		for (end = chunk + n; p < end;) {
			char *nl = memchr(p, '\n', (size_t)(end - p)), *whole;
			size_t seg = (size_t)((nl ? nl : end) - p);
			if (nul && memchr(p, '\0', seg)) {
				if (lineno == 1 && n >= 2 && p == chunk &&
				    (memcmp(chunk, "\xff\xfe", 2) == 0 ||
				     memcmp(chunk, "\xfe\xff", 2) == 0))
					set_error(err, lineno,
					          "UTF-16 text (as Windows PowerShell's Out-File "
					          "writes it): save it as UTF-8 or ASCII (Out-File "
					          "-Encoding ascii)");
				else
					set_error(err, lineno,
					          "a NUL byte: this is not a text file");
				goto out;
			}
			if (len + seg > lim->max_line) {
				raise_hint(lim->line_option, hint, sizeof(hint));
				set_error(err, lineno, "the line is longer than %zu bytes%s",
				          lim->max_line, hint);
				goto out;
			}
			if (len == 0 && nl) {
				/* the whole line is in the chunk: handed over in place, its newline
				 * made the NUL after it */
				whole = p;
				*nl = '\0';
			} else {
				if (VEC_RESERVE(line, cap, len + seg + 1) < 0) {
					set_error(err, lineno, "out of memory");
					goto out;
				}
				memcpy(line + len, p, seg);
				len += seg;
				if (!nl)
					break;
				line[len] = '\0';
				whole = line;
				seg = len;
			}
			if (cb(whole, seg, lineno, arg) < 0) {
				err->line = lineno;
				goto out;
			}
			if (lineno == INT_MAX) {
				set_error(err, lineno, "too many lines");
				goto out;
			}
			lineno++;
			len = 0;
			p = nl + 1;
		}
	}
	if (len > 0) {
		line[len] = '\0';
		if (cb(line, len, lineno, arg) < 0) {
			err->line = lineno;
			goto out;
		}
	}
	rc = 0;
out:
	free(chunk);
	free(line);
	close(fd);
	return rc;
}

int
sidefile_slurp(const char *path, const struct sidefile_limits *lim, char **text, size_t *len,
               struct sidefile_error *err)
{
	char limit[32], hint[96];
	size_t cap = 0, n = 0;
	char *buf = NULL;
	int fd;

	*text = NULL;
	*len = 0;
	err->line = 0;
	err->text[0] = '\0';
	if ((fd = open_checked(path, lim, err, NULL)) < 0)
		return -1;
	for (;;) {
		if (VEC_RESERVE(buf, cap, n + CHUNK + 1) < 0) {
			set_error(err, 0, "out of memory");
			goto fail;
		}
		ssize_t got = read(fd, buf + n, CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			set_error(err, 0, "%s", strerror(errno));
			goto fail;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > lim->max_size) {
			size_text(lim->max_size, limit, sizeof(limit));
			raise_hint(lim->size_option, hint, sizeof(hint));
			set_error(err, 0, "the file grows past the limit of %s as it is read%s",
			          limit, hint);
			goto fail;
		}
	}
	close(fd);
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}
