#include "providers.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MXGATE_DATADIR
#define MXGATE_DATADIR "/usr/local/share/mxgate"
#endif

const char *
providers_dir(void)
{
	static char dir[PATH_MAX];
	const char *env = getenv("MXGATE_PROVIDERS_DIR");
	char exe[PATH_MAX - 32];
	struct stat st;
	ssize_t n;

	if (env && *env)
		return env;
	if (dir[0])
		return dir;
	/* running from build/<variant>/mxgate in the source tree */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(dir, sizeof(dir), "%s/../../providers", exe);
			if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
				return dir;
		}
	}
	snprintf(dir, sizeof(dir), "%s/providers", MXGATE_DATADIR);
	return dir;
}

int
providers_find(const char *name, char *path, size_t size)
{
	struct stat st;

	if (!*name || strlen(name) > 64)
		return -1;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return -1;
	if ((size_t)snprintf(path, size, "%s/%s.conf", providers_dir(), name) >= size)
		return -1;
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	return 0;
}
