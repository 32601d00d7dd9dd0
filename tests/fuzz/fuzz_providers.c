/* libFuzzer target: the provider preset reader (providers_load: the "# key: value" header,
 * the range body, the exactness checks).  Invariants: a refused preset has a message that
 * names its file; an accepted one has every required header field, at least one source and
 * one range, and its ranges are ordered, inside their family and pairwise disjoint. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/providers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void
remove_dir(void)
{
	unlink(path);
	rmdir(dir);
}

static int
cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	struct provider *p;
	FILE *fp;

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/mxgate-fuzz-providers-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		snprintf(path, sizeof(path), "%s/acme.conf", dir);
		atexit(remove_dir);
	}
	if (!(fp = fopen(path, "w")))
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);

	p = providers_load(path, err, sizeof(err));
	if (!p) {
		if (strncmp(err, path, strlen(path)) != 0)
			abort(); /* every refusal names the file */
		return 0;
	}
	if (strcmp(p->name, "acme") != 0 || !p->provider || !p->region || !p->source_date ||
	    !p->confidence || !p->status || p->n_sources == 0 || p->n_ranges == 0)
		abort();
	for (size_t i = 0; i < p->n_sources; i++)
		if (!p->sources[i] || !*p->sources[i])
			abort();
	struct range *s = malloc(p->n_ranges * sizeof(*s));
	if (!s)
		abort();
	memcpy(s, p->ranges, p->n_ranges * sizeof(*s));
	qsort(s, p->n_ranges, sizeof(*s), cmp_range);
	for (size_t i = 0; i < p->n_ranges; i++) {
		if (s[i].lo > s[i].hi || s[i].hi > ipaddr_max(s[i].family))
			abort();
		if (i && s[i].family == s[i - 1].family && s[i].lo <= s[i - 1].hi)
			abort(); /* a preset is exact: no two ranges overlap */
	}
	free(s);
	providers_free(p);
	return 0;
}
