/*
 * control — the daemon's control socket, which `mxgate queue` talks to.
 *
 * A Unix socket at <spool>/QUEUE_CONTROL_NAME (queue.h), mode 0600 and owned by the
 * daemon's user: one command line per connection ("list", "flush", "remove ID",
 * "status"), one
 * answer ending in "ok" or "error: ...".  Served on the main thread's event loop with
 * short blocking reads and writes (a local administrator's tool, 1 s to send the command).
 */
#ifndef MXGATE_CONTROL_H
#define MXGATE_CONTROL_H

#include <stdbool.h>
#include <stdio.h>

#include <event2/event.h>

#include "queue/deliver.h"

/* accept() on the control socket (named by what, borrowed for the call) failed with err:
 * the owner decides whether to pause accepting (the connection waits in the backlog). */
typedef void control_accept_failed_cb(const char *what, int err, void *arg);

struct control;

/* base and d are borrowed for the control socket's life.  Opens the socket; a spool path
 * too long for a socket name opens none (a warning: `mxgate queue` then reads the spool
 * directly).  uid >= 0: chown to uid:gid.  Returns NULL after an error log line. */
struct control *control_open(struct event_base *base, struct deliver *d, const char *spool,
                             long uid, long gid, control_accept_failed_cb *cb, void *arg);
/* Writes the daemon's state for "status" (`mxgate status`) into out, on the main thread. */
typedef void control_status_cb(FILE *out, void *arg);
/* Until set, "status" answers an error. */
void control_set_status(struct control *c, control_status_cb *cb, void *arg);

/* Serve (or not, while accepting is paused). */
void control_enable(struct control *c, bool on);
/* Closes and unlinks the socket.  NULL is a no-op. */
void control_close(struct control *c);

#endif
