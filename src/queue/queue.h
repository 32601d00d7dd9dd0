/*
 * queue — `mxgate queue`: what is in the spool, for people.
 *
 * The running daemon answers on a UNIX socket, <spool>/control (mode 0600, owned by the
 * daemon's user), one command a connection: "list", "flush" or "remove ID".  With the
 * daemon stopped, `list` and `remove` work on the spool's files directly.
 */
#ifndef MXGATE_QUEUE_H
#define MXGATE_QUEUE_H

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "queue/deliver.h"
#include "queue/spool.h"

#define QUEUE_CONTROL_NAME "control"

/* The daemon's side of "list": writes the header, then each message of d (deliver.h)
 * with its line and a line per recipient with its state.  Returns the number of
 * messages. */
size_t queue_list_running(struct deliver *d, FILE *fp);

/* Client side: runs command ("list", "flush", "remove ID") against the spool at path,
 * through the daemon when it runs, else on the files.  Writes the answer to out and
 * problems to err.  Returns an exit status (0 ok, 1 error). */
int queue_command(const char *spool, const char *command, FILE *out, FILE *err);

/* Client side of `mxgate status`: the running daemon's answer to out.  Returns 0, 3 when
 * no daemon runs on that spool (as `systemctl status` does), 1 on other errors (err says
 * which). */
int queue_status(const char *spool, FILE *out, FILE *err);

#endif
