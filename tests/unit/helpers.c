#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmpdir[256];

const char *
helper_tmpdir(void)
{
	return tmpdir;
}

char *
helper_write_temp(const char *name, const char *text)
{
	char *path;
	FILE *fp;

	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/mxgate-unit-XXXXXX");
		if (!mkdtemp(tmpdir))
			abort();
	}
	if (asprintf(&path, "%s/%s", tmpdir, name) < 0)
		abort();
	if (!(fp = fopen(path, "w")))
		abort();
	fputs(text, fp);
	fclose(fp);
	return path;
}

struct find {
	enum diag_severity sev;
	const char *file;
	int line;
	const char *needle;
	bool found;
};

static void
find_cb(enum diag_severity sev, const char *file, int line, const char *text, void *arg)
{
	struct find *f = arg;
	size_t fl = f->file ? strlen(f->file) : 0, l = strlen(file);

	if (sev == f->sev && (!f->line || line == f->line) &&
	    (!f->needle || strstr(text, f->needle)) &&
	    (!f->file || (l >= fl && strcmp(file + l - fl, f->file) == 0)))
		f->found = true;
}

bool
helper_has(struct diag *d, enum diag_severity sev, const char *file, int line, const char *needle)
{
	struct find f = {sev, file, line, needle, false};

	diag_each(d, find_cb, &f);
	return f.found;
}

void
helper_dump(struct diag *d)
{
	diag_print(d, stderr);
}

struct config *
helper_load(const char *text, struct diag *d)
{
	char *path = helper_write_temp("mxgate.conf", text);
	struct config *c = config_load(path, d);

	free(path);
	return c;
}
