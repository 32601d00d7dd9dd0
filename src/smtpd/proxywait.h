/*
 * proxywait — the PROXY stage: a connection from a load balancer (a peer in the top-level
 * proxy-protocol-from) waits here for its PROXY protocol header before any session begins
 * (main thread only).
 *
 * The header is read with the sans-I/O parser (net/proxy.h) without taking a byte past
 * it: each read peeks at what the kernel holds, and only the bytes the parser has placed
 * inside the header are consumed (all of them while it needs more, exactly out->len - have
 * once it is done), so whatever the client sent after the header stays in the socket for
 * the session.  Nothing is ever written here: the balancer gets no byte until a session
 * begins.
 *
 * Outcomes, each with a log line and mxgate_proxy_headers_total{result}:
 *   ok / local  the header is in: done_cb gets the connection (fd transferred) and the
 *               parsed header; the caller selects the connector for the header's client
 *               (family INET/INET6) or for the balancer itself (UNSPEC: v2 LOCAL, v1
 *               UNKNOWN);
 *   invalid     bytes that are no header, or EOF before one: closed;
 *   timeout     no whole header within the timeout: closed.
 * At most PROXYWAIT_MAX connections wait at once; past it a new one is closed at once,
 * logged and counted in mxgate_connections_refused_total{reason="connector_limit"}.
 *
 * Ownership: the stage owns every waiting connection (its fd, its buffer) until done_cb
 * or its close; proxywait_close_all() and proxywait_free() close those still waiting.
 */
#ifndef MXGATE_PROXYWAIT_H
#define MXGATE_PROXYWAIT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "base/ipaddr.h"
#include "net/proxy.h"

/* Connections waiting for their header at once; more are closed at accept. */
#define PROXYWAIT_MAX 4096

/* The header h (PROXY_DONE) of the connection fd (transferred) from balancer, accepted on
 * the listening endpoint listener.  Borrowed pointers, for the call. */
typedef void proxywait_done_cb(int fd, const struct proxy_header *h,
                               const struct endpoint *balancer, const struct endpoint *listener,
                               void *arg);

struct proxywait;

/* base is borrowed for the stage's life.  NULL without memory. */
struct proxywait *proxywait_new(struct event_base *base, proxywait_done_cb *done, void *arg);
/* Closes every waiting connection.  NULL is a no-op. */
void proxywait_free(struct proxywait *pw);
/* Closes every waiting connection (the drain). */
void proxywait_close_all(struct proxywait *pw);

/* fd (non-blocking, transferred) from balancer on listener must send its header within
 * timeout_ms.  On any failure (memory, PROXYWAIT_MAX) fd is closed after a log line. */
void proxywait_add(struct proxywait *pw, int fd, const struct endpoint *balancer,
                   const struct endpoint *listener, uint64_t timeout_ms);
/* Connections waiting now. */
size_t proxywait_count(const struct proxywait *pw);

#endif
