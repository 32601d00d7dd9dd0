/* libFuzzer target: the configuration loader (tokenizer and parser, every value parser, ranges
 * files, recipients files, provider presets, connector selection build).
 *
 * The input is the main config file, optionally followed by side files, each one opened by
 * a marker line of its own:
 *
 *     === NAME
 *
 * NAME is a file name ([A-Za-z0-9._-], not "." or "..") written beside the main file, where
 * remote-ip-ranges-file = "NAME" and recipients-file = "NAME" find it, or providers/NAME,
 * where remote-ip-ranges = { "@P" } finds providers/P.conf (the target points
 * MXGATE_PROVIDERS_DIR at its own providers directory).  An input without a marker is a
 * main file alone.  Every file lives in a private temporary directory, emptied before each
 * input.  Whatever happens must be reported as diagnostics, never crash, hang or leak; a
 * config with errors is never returned. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"

#define MARKER    "=== "
#define MAX_FILES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char written[MAX_FILES + 1][128];
static size_t n_written;

static void
remove_files(void)
{
	for (size_t i = 0; i < n_written; i++)
		unlink(written[i]);
	n_written = 0;
}

static void
remove_dir(void)
{
	char sub[96];

	remove_files();
	snprintf(sub, sizeof(sub), "%s/providers", dir);
	rmdir(sub);
	rmdir(dir);
}

static int
setup(void)
{
	char sub[96];

	snprintf(dir, sizeof(dir), "/tmp/mxgate-fuzz-config-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sub, sizeof(sub), "%s/providers", dir);
	if (mkdir(sub, 0700) < 0 || setenv("MXGATE_PROVIDERS_DIR", sub, 1) < 0)
		return -1;
	atexit(remove_dir);
	return 0;
}

/* The file a marker line names (the text after the marker, up to the end of the line), or
 * NULL when the line is not a marker. */
static const char *
marker_name(const uint8_t *line, size_t len, char *name, size_t size)
{
	size_t ml = strlen(MARKER), n, skip = 0;

	if (len < ml || memcmp(line, MARKER, ml) != 0)
		return NULL;
	line += ml;
	len -= ml;
	if (len && line[len - 1] == '\r')
		len--;
	if (len > 10 && memcmp(line, "providers/", 10) == 0)
		skip = 10;
	n = len - skip;
	if (n == 0 || len >= size || (n == 1 && line[skip] == '.') ||
	    (n == 2 && line[skip] == '.' && line[skip + 1] == '.'))
		return NULL;
	for (size_t i = skip; i < len; i++) {
		uint8_t c = line[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return NULL;
	}
	memcpy(name, line, len);
	name[len] = '\0';
	return name;
}

static int
write_file(const char *name, const uint8_t *data, size_t size)
{
	char *path = written[n_written];
	FILE *fp;

	snprintf(path, sizeof(written[0]), "%s/%s", dir, name);
	if (!(fp = fopen(path, "w")))
		return -1;
	n_written++;
	fwrite(data, 1, size, fp);
	return fclose(fp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = "mxgate.conf";
	char names[MAX_FILES + 1][96];
	size_t start = 0, pos = 0, files = 0;
	struct config *c;
	struct diag d;

	if (!dir[0] && setup() < 0)
		abort();
	remove_files();
	/* split at marker lines; past MAX_FILES side files, markers are plain text */
	while (pos < size) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t end = nl ? (size_t)(nl - data) : size;
		if (files < MAX_FILES &&
		    marker_name(data + pos, end - pos, names[files + 1], sizeof(names[0]))) {
			if (write_file(name, data + start, pos - start) < 0)
				return 0;
			name = names[++files];
			start = nl ? end + 1 : size;
		}
		pos = nl ? end + 1 : size;
	}
	if (write_file(name, data + start, size - start) < 0)
		return 0;

	char path[96];
	snprintf(path, sizeof(path), "%s/mxgate.conf", dir);
	diag_init(&d);
	c = config_load(path, &d);
	if (c && diag_errors(&d) != 0)
		abort(); /* a config with errors must never be returned */
	config_unref(c);
	diag_release(&d);
	return 0;
}
