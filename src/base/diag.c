#include "base/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/vec.h"

void
diag_init(struct diag *d)
{
	memset(d, 0, sizeof(*d));
	d->max_errors = 1000;
}

void
diag_release(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i].text);
	for (size_t i = 0; i < d->nfiles; i++)
		free(d->files[i]);
	free(d->msgs);
	free(d->files);
	memset(d, 0, sizeof(*d));
}

static int
file_index(struct diag *d, const char *file)
{
	for (size_t i = 0; i < d->nfiles; i++)
		if (strcmp(d->files[i], file) == 0)
			return (int)i;
	if (VEC_RESERVE(d->files, d->files_cap, d->nfiles + 1) < 0)
		return -1;
	if (!(d->files[d->nfiles] = strdup(file)))
		return -1;
	return (int)d->nfiles++;
}

static void add(struct diag *d, enum diag_severity sev, const char *file, int line, const char *fmt,
                va_list ap) __attribute__((format(printf, 5, 0)));

static void
add(struct diag *d, enum diag_severity sev, const char *file, int line, const char *fmt, va_list ap)
{
	char *text;
	int fi;

	if (sev == DIAG_ERROR)
		d->errors++;
	else
		d->warnings++;
	if (d->max_errors && d->n >= d->max_errors) {
		d->dropped++;
		return;
	}
	if (vasprintf(&text, fmt, ap) < 0)
		return;
	fi = file_index(d, file ? file : "-");
	if (fi < 0 || VEC_RESERVE(d->msgs, d->cap, d->n + 1) < 0) {
		free(text);
		return;
	}
	d->msgs[d->n] = (struct diag_msg){
	        .severity = sev, .file = fi, .line = line, .seq = d->n, .text = text};
	d->n++;
}

void
diag_error(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add(d, DIAG_ERROR, file, line, fmt, ap);
	va_end(ap);
}

void
diag_warn(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add(d, DIAG_WARNING, file, line, fmt, ap);
	va_end(ap);
}

static int
msg_cmp(const void *pa, const void *pb)
{
	const struct diag_msg *a = pa, *b = pb;

	if (a->file != b->file)
		return a->file - b->file;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

void
diag_each(struct diag *d,
          void (*fn)(enum diag_severity, const char *file, int line, const char *text, void *arg),
          void *arg)
{
	if (d->n > 1)
		qsort(d->msgs, d->n, sizeof(*d->msgs), msg_cmp);
	for (size_t i = 0; i < d->n; i++)
		fn(d->msgs[i].severity, d->files[d->msgs[i].file], d->msgs[i].line, d->msgs[i].text,
		   arg);
}

static void
print_one(enum diag_severity sev, const char *file, int line, const char *text, void *arg)
{
	FILE *fp = arg;
	const char *what = sev == DIAG_ERROR ? "error" : "warning";

	if (line > 0)
		fprintf(fp, "%s:%d: %s: %s\n", file, line, what, text);
	else
		fprintf(fp, "%s: %s: %s\n", file, what, text);
}

void
diag_print(struct diag *d, FILE *fp)
{
	diag_each(d, print_one, fp);
	if (d->dropped)
		fprintf(fp, "... and %zu more problems not shown\n", d->dropped);
}
