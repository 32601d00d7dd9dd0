/*
 * diag — collects configuration errors and warnings as "FILE:LINE: message".
 *
 * Loaders report every problem they find instead of stopping at the first; the caller
 * prints the lot (sorted by file, then line) and decides by diag_errors().  The diag owns
 * copies of every file name and message.
 */
#ifndef MXGATE_DIAG_H
#define MXGATE_DIAG_H

#include <stddef.h>
#include <stdio.h>

enum diag_severity { DIAG_ERROR, DIAG_WARNING };

struct diag_msg {
	enum diag_severity severity;
	int file;   /* index into diag.files */
	int line;   /* 0 when the message is about the file as a whole */
	size_t seq; /* insertion order, for a stable sort */
	char *text;
};

struct diag {
	struct diag_msg *msgs;
	size_t n, cap;
	char **files;
	size_t nfiles, files_cap;
	size_t errors, warnings;
	size_t max_errors; /* 0: unlimited; past it, further errors are counted, not stored */
	size_t dropped;
};

void diag_init(struct diag *d);
void diag_release(struct diag *d);

void diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
void diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static inline size_t
diag_errors(const struct diag *d)
{
	return d->errors;
}

/* Prints every message, sorted, as "FILE:LINE: error: text" / "... warning: text". */
void diag_print(struct diag *d, FILE *fp);

/* Calls fn for each message in print order (e.g. to log them); line is 0 for none. */
void diag_each(struct diag *d,
               void (*fn)(enum diag_severity, const char *file, int line, const char *text,
                          void *arg),
               void *arg);

#endif
