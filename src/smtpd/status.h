/*
 * status — the text of `mxgate status`: what the running daemon is doing, in words, from
 * the metrics registry's counters (obs/metrics.h) and the running configuration.
 *
 * Written on the main thread into the control socket's answer (control.h); the counters
 * are read relaxed, one by one, as a scrape reads them.
 */
#ifndef MXGATE_STATUS_H
#define MXGATE_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "conf/config.h"

struct status_info {
	const struct config *cfg; /* the running configuration, borrowed */
	const char *path;         /* its file */
	size_t listeners, workers;
	bool draining;
	pid_t keeper_pid; /* the privileged reader's, or 0: none was started */
	time_t now;
};

void status_write(FILE *out, const struct status_info *in);

#endif
