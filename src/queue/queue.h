/*
 * queue — `mxgate queue`: what is in the spool, for people.
 *
 * The running daemon answers on a UNIX socket, <spool>/control (mode 0600, owned by the
 * daemon's user), one command a connection: "list", "list json", "flush", "remove ID",
 * "remove all", "hold ID", "hold all", "release ID" or "release all".  With the daemon
 * stopped, all but flush work on the spool's files directly (hold and release append a
 * line to the message's state file, spool.h).
 *
 * `--json` ("list json") is one JSON object, stable fields for scripts:
 *   {"daemon_running": bool, "count": N, "messages": [{
 *     "id", "state" ("due", "waiting", "sending", "held", or "stopped" without a daemon),
 *     "received" (Unix time), "size" (bytes, the number of the log lines), "sender",
 *     "connector", "client", "attempts" (null while sending), "next_attempt" (Unix time, or
 *     null when held, sending or stopped), "last_error" (or null),
 *     "recipients": [{"address", "state" ("pending", "delivered", "failed", "sending"),
 *                     "reply" (the last reply, or null)}]}]}
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
 * with its line and a line per recipient with its state, then the count; or all of it as
 * JSON (above).  Returns the number of messages. */
size_t queue_list_running(struct deliver *d, FILE *fp, bool json);

/* Client side: runs command (one of the above) against the spool at path,
 * through the daemon when it runs, else on the files.  Writes the answer to out and
 * problems to err.  Returns an exit status (0 ok, 1 error). */
int queue_command(const char *spool, const char *command, FILE *out, FILE *err);

/* Client side of `mxgate status`: the running daemon's answer to out.  Returns 0, 3 when
 * no daemon runs on that spool (as `systemctl status` does), 1 on other errors (err says
 * which). */
int queue_status(const char *spool, FILE *out, FILE *err);

#endif
