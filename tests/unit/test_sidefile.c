/* Unit tests: sidefile, the bounded reader of ranges, recipients and preset files. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sidefile.h"
#include "helpers.h"

struct collect {
	char *text; /* the lines joined again with '\n' */
	size_t len, n;
	int last_lineno;
	int stop_at; /* the callback stops at this line; 0: never */
};

static int
collect_cb(char *line, size_t len, int lineno, void *arg)
{
	struct collect *c = arg;

	cr_assert_eq(line[len], '\0');
	cr_assert_null(memchr(line, '\n', len));
	cr_assert_eq(lineno, c->last_lineno + 1);
	c->last_lineno = lineno;
	if (lineno == c->stop_at)
		return -1;
	c->text = realloc(c->text, c->len + len + 2);
	cr_assert_not_null(c->text);
	memcpy(c->text + c->len, line, len);
	c->len += len;
	c->text[c->len++] = '\n';
	c->n++;
	return 0;
}

static const struct sidefile_limits big = {.max_size = 1 << 30, .max_line = 1 << 20};

Test(sidefile, lines_come_out_whole_across_read_boundaries)
{
	/* lines of 0 to 70000 bytes, so that some span two or three 64 KiB reads */
	size_t lens[] = {0, 1, 65535, 65536, 70000, 3, 0, 131072, 5, 65534};
	size_t total = 0, pos = 0;
	char *text, *path;
	struct collect c = {0};
	struct sidefile_error err;

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		total += lens[i] + 1;
	text = malloc(total + 1);
	cr_assert_not_null(text);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (size_t j = 0; j < lens[i]; j++)
			text[pos++] = (char)('a' + (i + j) % 26);
		text[pos++] = '\n';
	}
	text[pos] = '\0';
	path = helper_write_temp("lines.txt", text);
	cr_assert_eq(sidefile_read(path, &big, collect_cb, &c, &err), 0, "%s", err.text);
	cr_expect_eq(c.n, sizeof(lens) / sizeof(lens[0]));
	cr_assert_eq(c.len, total);
	cr_expect_eq(memcmp(c.text, text, total), 0);
	free(c.text);
	free(text);
	free(path);
}

Test(sidefile, a_last_line_without_newline_and_crlf)
{
	char *path = helper_write_temp("crlf.txt", "one\r\n\r\ntwo\nthree");
	struct collect c = {0};
	struct sidefile_error err;

	cr_assert_eq(sidefile_read(path, &big, collect_cb, &c, &err), 0, "%s", err.text);
	cr_expect_eq(c.n, 4);
	cr_assert_eq(c.len, strlen("one\r\n\r\ntwo\nthree\n"));
	cr_expect_eq(memcmp(c.text, "one\r\n\r\ntwo\nthree\n", c.len), 0);
	free(c.text);
	free(path);

	/* an empty file has no line */
	path = helper_write_temp("empty.txt", "");
	c = (struct collect){0};
	cr_expect_eq(sidefile_read(path, &big, collect_cb, &c, &err), 0);
	cr_expect_eq(c.n, 0);
	free(path);
}

Test(sidefile, the_callback_stops_the_reading)
{
	char *path = helper_write_temp("stop.txt", "a\nb\nc\n");
	struct collect c = {.stop_at = 2};
	struct sidefile_error err;

	cr_expect_eq(sidefile_read(path, &big, collect_cb, &c, &err), -1);
	cr_expect_str_empty(err.text);
	cr_expect_eq(err.line, 2);
	cr_expect_eq(c.n, 1);
	free(c.text);
	free(path);
}

Test(sidefile, bounds_name_the_line_and_the_option)
{
	struct sidefile_limits lim = {.max_size = 64,
	                              .max_line = 8,
	                              .size_option = "max-side-file-size",
	                              .line_option = "max-side-file-line-length"};
	struct sidefile_error err;
	struct collect c = {0};
	char *path;

	/* exactly at both limits: read */
	path = helper_write_temp("edge.txt", "12345678\n12345678\n12345678\n12345678\n"
	                                     "12345678\n12345678\n1234567\n1\n");
	cr_expect_eq(sidefile_read(path, &lim, collect_cb, &c, &err), 0, "%s", err.text);
	cr_expect_eq(c.n, 8);
	free(c.text);
	free(path);

	path = helper_write_temp("long.txt", "12345678\n123456789\n");
	c = (struct collect){0};
	cr_expect_eq(sidefile_read(path, &lim, collect_cb, &c, &err), -1);
	cr_expect_eq(err.line, 2);
	cr_expect_str_eq(err.text, "the line is longer than 8 bytes (raise "
	                           "max-side-file-line-length if the file is right)");
	cr_expect_eq(c.n, 1);
	free(c.text);
	free(path);

	path = helper_write_temp("big.txt", "12345678\n12345678\n12345678\n12345678\n"
	                                    "12345678\n12345678\n1234567\n12\n");
	c = (struct collect){0};
	cr_expect_eq(sidefile_read(path, &lim, collect_cb, &c, &err), -1);
	cr_expect_eq(err.line, 0);
	cr_expect_str_eq(err.text, "it is 65 bytes, over the limit of 64 bytes (raise "
	                           "max-side-file-size if the file is right)");
	cr_expect_eq(c.n, 0, "nothing is read from a file over the limit");
	cr_expect_eq(sidefile_check(path, &lim, &err), -1);
	free(path);

	/* /proc files say they are empty and are not: the bound holds while reading */
	lim.max_size = 16;
	lim.max_line = 4096;
	c = (struct collect){0};
	cr_expect_eq(sidefile_read("/proc/self/status", &lim, collect_cb, &c, &err), -1);
	cr_expect(strstr(err.text, "grows past the limit of 16 bytes") != NULL, "%s", err.text);
	free(c.text);
}

Test(sidefile, only_regular_files_are_opened, .timeout = 60)
{
	struct sidefile_error err;
	struct collect c = {0};
	char fifo[512];

	cr_expect_eq(sidefile_read("/dev/zero", &big, collect_cb, &c, &err), -1);
	cr_expect_str_eq(err.text, "not a regular file (a character device)");
	cr_expect_eq(sidefile_read("/dev/urandom", &big, collect_cb, &c, &err), -1);
	cr_expect_eq(sidefile_read("/nonexistent/x", &big, collect_cb, &c, &err), -1);
	cr_expect_str_eq(err.text, strerror(ENOENT));
	free(helper_write_temp("x", ""));
	cr_expect_eq(sidefile_read(helper_tmpdir(), &big, collect_cb, &c, &err), -1);
	cr_expect_str_eq(err.text, "not a regular file (a directory)");
	snprintf(fifo, sizeof(fifo), "%s/fifo", helper_tmpdir());
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	cr_expect_eq(sidefile_read(fifo, &big, collect_cb, &c, &err), -1);
	cr_expect_str_eq(err.text, "not a regular file (a FIFO)");
	cr_expect_eq(sidefile_check(fifo, &big, &err), -1);
	unlink(fifo);
	cr_expect_eq(c.n, 0);
}

/* Privilege separation: a thread that records keeps a descriptor of each file it opens; a
 * thread that uses the set reads those descriptors (rewound, each time) even when the
 * file is gone from the file system, and falls back to the file system for the rest. */
Test(sidefile, a_recorded_set_serves_its_files_after_they_are_gone)
{
	char *a = helper_write_temp("handed-a.txt", "one\ntwo\n");
	char *b = helper_write_temp("handed-b.txt", "three\n");
	struct sidefile_set *set = sidefile_set_new();
	struct sidefile_error err;
	char *text;
	size_t len;

	cr_assert_not_null(set);
	sidefile_record(set);
	cr_assert_eq(sidefile_slurp(a, &big, &text, &len, &err), 0, "%s", err.text);
	free(text);
	cr_assert_eq(sidefile_check(a, &big, &err), 0); /* the same path is kept once */
	sidefile_record(NULL);
	cr_assert_eq(sidefile_set_count(set), 1);

	cr_assert_eq(unlink(a), 0);
	sidefile_use(set);
	for (int round = 0; round < 2; round++) {
		struct collect c = {0};
		cr_assert_eq(sidefile_read(a, &big, collect_cb, &c, &err), 0, "%s", err.text);
		cr_assert_eq(c.len, 8);
		cr_assert_eq(memcmp(c.text, "one\ntwo\n", 8), 0);
		free(c.text);
	}
	/* not in the set: the file system */
	cr_assert_eq(sidefile_slurp(b, &big, &text, &len, &err), 0, "%s", err.text);
	cr_assert_str_eq(text, "three\n");
	free(text);
	sidefile_use(NULL);
	cr_assert_eq(sidefile_check(a, &big, &err), -1, "the set is still in use");
	cr_assert_str_eq(err.text, strerror(ENOENT));
	sidefile_set_free(set);
	free(a);
	free(b);
}

Test(sidefile, slurp_refuses_what_read_refuses_and_keeps_nul_bytes_out_of_the_length)
{
	const struct sidefile_limits small = {.max_size = 4, .max_line = 100};
	struct sidefile_error err;
	char *text = NULL;
	size_t len = 99;

	cr_assert_eq(sidefile_slurp("/dev/zero", &big, &text, &len, &err), -1);
	cr_assert_null(text);
	cr_assert(strstr(err.text, "not a regular file"), "%s", err.text);
	char *p = helper_write_temp("slurp-big.txt", "12345");
	cr_assert_eq(sidefile_slurp(p, &small, &text, &len, &err), -1);
	cr_assert(strstr(err.text, "over the limit"), "%s", err.text);
	free(p);
	p = helper_write_temp("slurp-ok.txt", "1234");
	cr_assert_eq(sidefile_slurp(p, &small, &text, &len, &err), 0, "%s", err.text);
	cr_assert_eq(len, 4);
	cr_assert_eq(text[4], '\0');
	free(text);
	free(p);
}

struct sized {
	struct collect c;
	uint64_t size;
	int calls;
};

static void
size_cb(uint64_t size, void *arg)
{
	struct sized *s = arg;

	cr_assert_eq(s->c.n, 0, "the size comes before the first line");
	s->size = size;
	s->calls++;
}

/* The reader is told the file's size once, before the lines (to size its arrays). */
Test(sidefile, the_size_comes_first)
{
	char *path = helper_write_temp("sized.txt", "10.0.0.0/8\n192.0.2.0/24\n");
	struct sized s = {0};
	struct sidefile_error err;

	cr_assert_eq(sidefile_read_sized(path, &big, size_cb, collect_cb, &s, &err), 0, "%s",
	             err.text);
	cr_expect_eq(s.calls, 1);
	cr_expect_eq(s.size, strlen("10.0.0.0/8\n192.0.2.0/24\n"));
	cr_expect_eq(s.c.n, 2);
	free(s.c.text);
	free(path);
}

/* A NUL byte is found on its own line wherever it falls: in a line inside one read, in a
 * line across two reads, and only there (the lines before it are read). */
Test(sidefile, a_nul_byte_names_its_line_across_reads)
{
	struct sidefile_limits lim = {.max_size = 1 << 20, .max_line = 64};
	enum { LINES = 40000 }; /* 3 bytes each: 120,000 bytes, two reads of 64 KiB */
	/* line 21846 runs across the reads, from byte 65535 to 65537 */
	size_t at[] = {3 * 100 + 1, 3 * 30000, 65535, 65536};

	for (size_t t = 0; t < sizeof(at) / sizeof(at[0]); t++) {
		struct sidefile_error err;
		struct collect c = {0};
		char *path = helper_write_temp("nul.txt", "");
		char *text = malloc(3 * LINES);
		FILE *fp = fopen(path, "wb");

		cr_assert(text && fp);
		for (size_t i = 0; i < LINES; i++)
			memcpy(text + 3 * i, "ab\n", 3);
		text[at[t]] = '\0';
		cr_assert_eq(fwrite(text, 1, 3 * LINES, fp), 3 * LINES);
		fclose(fp);
		cr_expect_eq(sidefile_read(path, &lim, collect_cb, &c, &err), -1);
		cr_expect_eq(err.line, (int)(at[t] / 3) + 1, "NUL at %zu: line %d", at[t],
		             err.line);
		cr_expect_str_eq(err.text, "a NUL byte: this is not a text file");
		cr_expect_eq(c.n, at[t] / 3, "NUL at %zu: %zu lines read", at[t], c.n);
		free(c.text);
		free(text);
		unlink(path);
		free(path);
	}
}

/* Windows tools write a byte order mark: UTF-8's is skipped, UTF-16 is named (its NUL
 * bytes would otherwise say only "not a text file"). */
Test(sidefile, a_utf8_bom_is_skipped_and_utf16_is_named)
{
	char *path = helper_write_temp("bom.txt", "\xef\xbb\xbf"
	                                          "192.0.2.1\r\n192.0.2.2\n");
	struct collect c = {0};
	struct sidefile_error err;

	cr_assert_eq(sidefile_read(path, &big, collect_cb, &c, &err), 0, "%s", err.text);
	cr_expect_eq(c.n, 2);
	cr_assert_eq(c.len, strlen("192.0.2.1\r\n192.0.2.2\n"));
	cr_expect_eq(memcmp(c.text, "192.0.2.1\r\n192.0.2.2\n", c.len), 0);
	free(c.text);
	unlink(path);
	free(path);

	static const char utf16[] = "\xff\xfe"
	                            "1\0009\0002\000.\000\r\000\n\000";
	path = helper_write_temp("utf16.txt", "");
	FILE *fp = fopen(path, "wb");
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(utf16, 1, sizeof(utf16) - 1, fp), sizeof(utf16) - 1);
	fclose(fp);
	c = (struct collect){0};
	cr_expect_eq(sidefile_read(path, &big, collect_cb, &c, &err), -1);
	cr_expect_eq(err.line, 1);
	cr_expect(strstr(err.text, "UTF-16 text") != NULL, "%s", err.text);
	free(c.text);
	unlink(path);
	free(path);
}
