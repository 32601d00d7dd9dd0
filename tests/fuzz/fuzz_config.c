/* libFuzzer target: the configuration loader (libConfuse syntax, every value parser,
 * range files, connector selection build).  Loads the input as a config file; whatever
 * happens must be reported as diagnostics, never crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct config *c;
	struct diag d;
	FILE *fp;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/mxgate-fuzz-config-%d.conf", (int)getpid());
	if (!(fp = fopen(path, "w")))
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	diag_init(&d);
	c = config_load(path, &d);
	if (c && diag_errors(&d) != 0)
		abort(); /* a config with errors must never be returned */
	config_unref(c);
	diag_release(&d);
	return 0;
}
