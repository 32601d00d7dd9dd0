/*
 * listener — the listening sockets and the accept decision (main thread only).
 *
 * listener_reconcile() makes the set of sockets match a configuration's bindings: keeps
 * the common ones, opens the new ones, closes the rest.  Linux will not listen on
 * 0.0.0.0:P and 10.0.0.5:P at once, so an exact binding whose family's wildcard is bound
 * on the same port is served by the wildcard socket, and the local address picks the
 * connector.
 *
 * The accept decision: the connector selector picks a connector from the local and remote
 * address; without one the connection is closed without a byte, as Exchange does.  Then
 * admission (admission.h) counts it or it is refused with 421; an admitted connection is
 * handed to the owner's callback.  A refused client costs one accept(), one table lookup
 * and one close().
 *
 * A peer in the top-level proxy-protocol-from is a load balancer: it goes to the PROXY
 * stage (proxywait.h) without selection; once its header is in, the header's client (or,
 * for a LOCAL header, the balancer itself) goes through the same decision, on the local
 * address the connection has here.  Every other peer is decided at accept, as before.
 *
 * Out of descriptors (or kernel memory) at accept: the sockets are level-triggered and
 * the waiting connection stays in the backlog, so accepting pauses LISTENER_BACKOFF_MS
 * instead of spinning, as nginx does; the log line, rate-limited, says what to raise.
 */
#ifndef MXGATE_LISTENER_H
#define MXGATE_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "base/ipaddr.h"
#include "conf/config.h"
#include "smtpd/admission.h"

#define LISTENER_BACKOFF_MS 250

/* An admitted connection: fd (transferred), for connector index k of the configuration
 * given to the last listener_reconcile().  via: the balancer (proxy-protocol-from) that
 * relayed the client remote, NULL for a direct client.  Returns 0, or -1 when it cannot
 * be taken (the listener then closes fd and releases the admission). */
typedef int listener_handoff_cb(int fd, const struct ipaddr *remote, uint16_t rport,
                                const struct endpoint *local, int k, const struct endpoint *via,
                                void *arg);
/* Accepting pauses (on = false) or resumes: the owner's other sockets follow. */
typedef void listener_accepting_cb(bool on, void *arg);

struct listeners;

/* base and adm are borrowed for the listeners' life.  Returns NULL without memory. */
struct listeners *listeners_new(struct event_base *base, struct admission *adm,
                                listener_handoff_cb *handoff, listener_accepting_cb *accepting,
                                void *arg);
/* Closes every socket.  NULL is a no-op. */
void listeners_free(struct listeners *ls);

/* cfg is borrowed until the next call (or listeners_free).  Returns the number of sockets
 * open; *failed counts bindings that could not be opened (each logged). */
size_t listeners_reconcile(struct listeners *ls, const struct config *cfg, size_t *failed);
/* Stops listening for good (the drain). */
void listeners_close(struct listeners *ls);

/* True when accept() failed with err for want of resources. */
bool listeners_exhausted(int err);
/* accept() on what (borrowed for the call) failed with such an err: pause accepting. */
void listeners_pause(struct listeners *ls, const char *what, int err);

#endif
