/* libFuzzer target: sidefile, the bounded line reader of ranges, recipients and preset
 * files.  The first input byte sets the line limit (1 to 256), the second the size limit
 * (in 16-byte steps, 0: none), the rest is the file.  Invariants: lines come out in order,
 * without '\n', never longer than the limit and without a NUL; a file read to the end
 * comes out whole (the lines joined by '\n' give it back, but for a leading UTF-8 byte
 * order mark, which is skipped); a refused one was refused for
 * a reason the file really has, at the line that has it, after every line before it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/sidefile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void
remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

struct seen {
	const uint8_t *file;
	size_t size, pos; /* where the next line must start in file */
	size_t max_line;
	int lines;
};

static int
line_cb(char *line, size_t len, int lineno, void *arg)
{
	struct seen *s = arg;

	if (lineno != s->lines + 1 || len > s->max_line || line[len] != '\0' ||
	    memchr(line, '\0', len) || memchr(line, '\n', len))
		abort();
	if (s->pos + len > s->size || memcmp(s->file + s->pos, line, len) != 0)
		abort();
	s->pos += len;
	if (s->pos < s->size) {
		if (s->file[s->pos] != '\n')
			abort(); /* a line ends at a newline or at the end of the file */
		s->pos++;
	}
	s->lines++;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sidefile_limits lim;
	struct sidefile_error err;
	struct seen s;
	FILE *fp;

	if (size < 2)
		return 0;
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/mxgate-fuzz-sidefile-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof(path), "%s/side.txt", dir);
		atexit(remove_dir);
	}
	lim = (struct sidefile_limits){.max_line = (size_t)data[0] + 1,
	                               .max_size = data[1] ? (uint64_t)data[1] * 16 : UINT64_MAX};
	s = (struct seen){.file = data + 2, .size = size - 2, .max_line = lim.max_line};
	if (s.size >= 3 && memcmp(s.file, "\xef\xbb\xbf", 3) == 0)
		s.pos = 3; /* a UTF-8 byte order mark is not part of the first line */
	if (!(fp = fopen(path, "w")))
		return 0;
	fwrite(s.file, 1, s.size, fp);
	fclose(fp);

	if (sidefile_read(path, &lim, line_cb, &s, &err) == 0) {
		if (s.pos != s.size)
			abort(); /* read to the end: every byte came out */
		return 0;
	}
	if (!err.text[0])
		abort(); /* line_cb never stops */
	if (err.line == 0) {
		if (s.size <= lim.max_size || s.lines != 0)
			abort(); /* refused as a whole only when too big, before any line */
		return 0;
	}
	/* the line at fault is the next one, and it has a NUL or is too long */
	const uint8_t *line = s.file + s.pos, *nl;
	size_t rest = s.size - s.pos, len;
	nl = memchr(line, '\n', rest);
	len = nl ? (size_t)(nl - line) : rest;
	if (err.line != s.lines + 1 || (len <= lim.max_line && !memchr(line, '\0', len)))
		abort();
	return 0;
}
