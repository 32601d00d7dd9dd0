/*
 * sidefile — the one reader of the files a configuration names: the main file, ranges
 * files, recipients files, provider presets and the TLS files (sidefile_slurp(),
 * sidefile_open()).
 *
 * Whoever can write a path into the config can name /dev/zero, /dev/urandom, a FIFO or a
 * huge file, and a loader that reads "until the end" then never returns while it eats the
 * memory (check, start and every reload).  So a side file must be a regular file: it is
 * opened with O_NONBLOCK (a FIFO without a writer cannot block the open) and checked with
 * fstat() before a byte is read.  Its size and the length of each of its lines are
 * bounded, by stat and again while reading (a file may grow); past a bound, or at a NUL
 * byte (a text file has none), reading stops with an error that names the line and the
 * bound.  Memory use is one buffer of at most the longest line allowed.
 */
#ifndef MXGATE_SIDEFILE_H
#define MXGATE_SIDEFILE_H

#include <stddef.h>
#include <stdint.h>

/* The defaults of max-side-file-size and max-side-file-line-length: a provider list of 1M
 * ranges is about 20 MB with lines under 100 bytes. */
#define SIDEFILE_DEFAULT_MAX_SIZE (256ull * 1024 * 1024)
#define SIDEFILE_DEFAULT_MAX_LINE 4096u

struct sidefile_limits {
	uint64_t max_size; /* bytes in the file */
	size_t max_line;   /* bytes in a line, without its '\n' */
	/* how the reader raises each bound, for the messages (e.g. the config option), or
	 * NULL: none named.  Borrowed for the call. */
	const char *size_option, *line_option;
};

/* Why a file could not be read. */
struct sidefile_error {
	int line;       /* the line at fault, or 0: the file as a whole */
	char text[256]; /* a sentence; empty when the line callback stopped the reading */
};

/* Called for each line, in order: line holds len bytes without the '\n' (a '\r' before it
 * stays) and a NUL after them; the callback may change them in place until it returns.
 * lineno counts from 1.  Returns 0 to go on, -1 to stop (its own reason, e.g. ENOMEM). */
typedef int (*sidefile_line_cb)(char *line, size_t len, int lineno, void *arg);

/* Reads path line by line into cb.  Returns 0 after the last line (a last line without
 * '\n' is a line), or -1 with *err filled: the text says why the file cannot be read (it
 * does not open, is not a regular file, is too big, has a line too long or a NUL byte, a
 * read fails), or is empty when cb returned -1. */
int sidefile_read(const char *path, const struct sidefile_limits *lim, sidefile_line_cb cb,
                  void *arg, struct sidefile_error *err);

/* Told the file's size (fstat) before its first line, so the reader can size its arrays
 * once: a ranges file's million records then land in one block the kernel can back with
 * huge pages, not in a chain of doublings.  A hint only: the file may change as it is read. */
typedef void (*sidefile_size_cb)(uint64_t size, void *arg);

/* As sidefile_read(), calling size_cb (with arg) first. */
int sidefile_read_sized(const char *path, const struct sidefile_limits *lim,
                        sidefile_size_cb size_cb, sidefile_line_cb cb, void *arg,
                        struct sidefile_error *err);

/* Only the checks made before reading (opens, a regular file, not too big): 0, or -1 with
 * *err filled.  For files read by another parser (the main config file). */
int sidefile_check(const char *path, const struct sidefile_limits *lim, struct sidefile_error *err);

/* The whole file (checked as sidefile_check() does, and bounded again while read) in a
 * malloc'd buffer with a NUL after its *len bytes (the file may hold NULs: binary formats).
 * 0, or -1 with *err filled and *text NULL. */
int sidefile_slurp(const char *path, const struct sidefile_limits *lim, char **text, size_t *len,
                   struct sidefile_error *err);

/* open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | flags) for the readers above and for any
 * other file a configuration names: -1 with errno on failure.
 *
 * Privilege separation (smtpd/keeper.h): after the daemon gives up root, the files only
 * root may read are opened by a privileged process and their descriptors handed over, by
 * path, as a set.  A thread that calls sidefile_use(set) opens from the set first (a fresh
 * descriptor of the same file, rewound) and from the file system otherwise; a thread that
 * calls sidefile_record(set) adds a descriptor of each file it opens to the set, and its
 * sidefile_read() calls only open (no line reaches the callback: a million ranges are
 * parsed once, by the thread that uses the set, not twice).  NULL
 * stops either.  Neither affects other threads; the set is the caller's. */
int sidefile_open(const char *path, int flags);

/* At most this many files in a set (a configuration names a few dozen). */
#define SIDEFILE_SET_MAX 4096

struct sidefile_set;
/* NULL without memory. */
struct sidefile_set *sidefile_set_new(void);
/* Closes every descriptor in it.  NULL is a no-op. */
void sidefile_set_free(struct sidefile_set *s);
/* Takes fd (closed on failure, or when path is in the set already: the first one stays).
 * 0, or -1 with errno (ENOMEM; EMFILE past SIDEFILE_SET_MAX). */
int sidefile_set_add(struct sidefile_set *s, const char *path, int fd);
size_t sidefile_set_count(const struct sidefile_set *s);
/* Borrowed: valid until the set is freed. */
void sidefile_set_get(const struct sidefile_set *s, size_t i, const char **path, int *fd);
void sidefile_use(struct sidefile_set *s);
void sidefile_record(struct sidefile_set *s);

#endif
