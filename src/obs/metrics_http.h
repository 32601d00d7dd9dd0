/*
 * metrics_http — serves metrics_render()'s page at GET /metrics (and HEAD), with
 * libevent's evhttp on a thread and event base of its own: a slow or hostile scraper
 * costs that thread, never a session's.
 *
 * Answers: 200 with Content-Type METRICS_CONTENT_TYPE for /metrics (any query string
 * ignored); 404 for every other path; 405 with "Allow: GET, HEAD" for /metrics with another
 * method; 500 when rendering ran out of memory.  Requests are bounded: headers at most
 * METRICS_HTTP_MAX_HEADERS bytes, a body at most METRICS_HTTP_MAX_BODY (evhttp answers
 * 413 past it), and a connection idle or stalled for METRICS_HTTP_TIMEOUT_S seconds is
 * closed.  libevent 2.1 cannot cap the number of connections (2.2's
 * evhttp_set_max_connections() is used when built against it): give metrics-listen a
 * loopback or management address, or firewall it.  When accept(2) runs out of descriptors
 * the listener pauses for a second instead of spinning.
 *
 * Wiring it into the daemon:
 *   config key (top level): metrics-listen = "IP:PORT" (unset: no metrics endpoint);
 *     check it at load with endpoint_parse() (base/ipaddr.h).
 *   - start, while still root (a port below 1024 needs it), beside the SMTP listeners:
 *       fd = metrics_http_listen(cfg->metrics_listen, err, sizeof(err));
 *     then, once the process is set up (after privileges are dropped is fine):
 *       mh = metrics_http_start(fd, err, sizeof(err));
 *     and log "metrics on http://IP:PORT/metrics".  A failure is a start-up error that
 *     names the address and the reason (EADDRINUSE ...).
 *   - reload: if metrics-listen changed, bind the new one first (metrics_http_listen; as
 *     the run user, so a port below 1024 fails and the reload keeps the old endpoint with
 *     a warning), then metrics_http_stop(old) and metrics_http_start(new fd).  Unchanged:
 *     nothing to do.
 *   - exit: metrics_http_stop(mh), before metrics_shutdown().
 *
 * Threads: metrics_http_start() and metrics_http_stop() from one thread (the main one);
 * the server runs on the thread metrics_http_start() creates.
 */
#ifndef MXGATE_METRICS_HTTP_H
#define MXGATE_METRICS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/ipaddr.h"

#define METRICS_HTTP_MAX_HEADERS 8192
#define METRICS_HTTP_MAX_BODY    1024
#define METRICS_HTTP_TIMEOUT_S   10
#define METRICS_HTTP_BACKLOG     16

struct metrics_http;

/* Parses "IP:PORT" / "[IPv6]:PORT" (as endpoint_parse()), then as
 * metrics_http_listen_ep().  Returns the listening socket, or -1 with a sentence in err
 * naming the address and the reason. */
int metrics_http_listen(const char *ip_port, char *err, size_t errlen);

/* A listening TCP socket bound to ep (port 0: the kernel picks one), non-blocking,
 * close-on-exec, SO_REUSEADDR, IPV6_V6ONLY for IPv6.  Returns it, or -1 with err. */
int metrics_http_listen_ep(const struct endpoint *ep, char *err, size_t errlen);

/* Serves on fd, a bound TCP socket (listen(2) is called on it again, harmless when it
 * already listens); the server owns fd from this call on, failure included.  Returns the
 * server, or NULL with a sentence in err. */
struct metrics_http *metrics_http_start(int fd, char *err, size_t errlen);

/* The port the server listens on (what port 0 became). */
uint16_t metrics_http_port(const struct metrics_http *h);

/* Stops the thread, closes the socket and every connection, frees h.  NULL: no-op. */
void metrics_http_stop(struct metrics_http *h);

#endif
