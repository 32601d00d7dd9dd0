/*
 * origin — where a configuration value came from (FILE:LINE), and a remote range with its
 * origin: the small types the configuration and the connector selection share.
 */
#ifndef MXGATE_ORIGIN_H
#define MXGATE_ORIGIN_H

#include "base/range.h"

/* Where a value came from, for messages.  file points into config.files. */
struct origin {
	const char *file;
	int line;
};

struct conf_range {
	struct range r;
	struct origin at;
};

#endif
