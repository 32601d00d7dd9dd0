/* Shared helpers for the unit tests: temporary files and diag inspection. */
#ifndef MXGATE_TEST_HELPERS_H
#define MXGATE_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

/* Writes text to a new file in a fresh temporary directory; returns its malloc'ed path. */
char *helper_write_temp(const char *name, const char *text);

/* The temporary directory helper_write_temp() last used. */
const char *helper_tmpdir(void);

/* True if d holds a message of severity sev at line (any line if 0) whose text contains
 * needle (any if NULL), in a file whose name ends with file (any if NULL). */
bool helper_has(struct diag *d, enum diag_severity sev, const char *file, int line,
                const char *needle);

/* Prints d to stderr (for failure context). */
void helper_dump(struct diag *d);

/* Writes a self-signed certificate and its key (mode 0600) into the temporary directory as
 * cert_name and key_name. */
void helper_make_cert(const char *cert_name, const char *key_name);

/* Loads text as a config file; returns the snapshot (or NULL) and fills d. */
struct config *helper_load(const char *text, struct diag *d);

#endif
