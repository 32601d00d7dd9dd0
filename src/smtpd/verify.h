/*
 * verify — recipient verification at the next hop (connector verify-recipients).
 *
 * Postfix's reject_unverified_recipient and Exchange Edge's recipient filtering, done as
 * Postfix's verify(8) does it: before RCPT is answered, the next hop (deliver { relay })
 * is asked "MAIL FROM:<>, RCPT TO:<addr>, RSET" over a connection kept open between
 * probes (queue/relay.h: the shared client core, relay-tls as for delivery).  Its answer
 * decides: 2xx the recipient is taken, 5xx refused with the next hop's text, anything
 * else (4xx, no connection, verify-timeout at any step, MAIL FROM:<> refused) is
 * "unavailable" and the connector's verify-unavailable decides.
 *
 * Verdicts are cached (rcache.h): 2xx for verify-positive-ttl, 5xx for
 * verify-negative-ttl, unavailable never; keys are the address in lower case; each cache
 * holds at most verify-cache-size entries (read at start), least recently used out.
 *
 * A probe that spent a whole verify-timeout and got no answer marks the next hop down for
 * VERIFY_DOWN_MS: until then every request is answered unavailable without a probe (a
 * next hop that hangs would otherwise hold each request for a verify-timeout, one after
 * another on the few probe threads).  A reload that moves relay (host or port) empties
 * the caches and forgets that mark.
 *
 * Threads.  Probes block, so they run on VERIFY_THREADS probe threads, each with its own
 * pooled connection, never on a session thread: verify_lookup() answers from the cache
 * at once (any thread); on a miss the session hands its request to verify_submit() and
 * waits; a probe thread fills it in and calls its done_cb, which posts it back to the
 * session's worker (inbox.h).  A probe connection is reopened when the relay settings of
 * the request's snapshot differ from those it was opened with (a reload), after
 * VERIFY_PROBES_PER_CONN probes (servers limit errors per connection), after
 * VERIFY_REFUSALS_PER_CONN unknown recipients (Postfix sleeps smtpd_error_sleep_time
 * before each reply once a client made smtpd_soft_error_limit = 10 errors, and RSET does
 * not forgive them; Exchange tarpits failed RCPTs alike), after VERIFY_IDLE_MS without
 * use, and once more when a kept connection broke (the next hop
 * closed it while idle).
 *
 * Ownership: the request is the caller's (embedded in its session); from verify_submit()
 * until done_cb the verifier uses it, and the snapshot it names must stay referenced.
 */
#ifndef MXGATE_VERIFY_H
#define MXGATE_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"

#define VERIFY_THREADS           2
#define VERIFY_PROBES_PER_CONN   100
#define VERIFY_REFUSALS_PER_CONN 8
#define VERIFY_IDLE_MS           60000
#define VERIFY_DOWN_MS           15000
#define VERIFY_ADDR_MAX          520

enum verify_verdict { VERIFY_OK, VERIFY_UNKNOWN, VERIFY_UNAVAILABLE };

struct verify_req {
	/* in */
	char addr[VERIFY_ADDR_MAX]; /* local@domain as it will be delivered */
	const struct config *cfg;   /* borrowed until done_cb: the relay settings, TTLs */
	void (*done_cb)(struct verify_req *r); /* on a probe thread: post it, nothing more */
	void *arg;
	/* out */
	enum verify_verdict verdict;
	bool cached;             /* answered from the cache */
	bool skipped;            /* unavailable without a probe: the next hop is marked down */
	int code;                /* the next hop's reply code, 0 when none */
	char text[512];          /* UNKNOWN: the next hop's reply text; UNAVAILABLE: why */
	struct verify_req *next; /* the verifier's queue */
};

struct verify;

/* Starts the probe threads; each cache holds cache_size entries.  NULL after an error log
 * line. */
struct verify *verify_start(size_t cache_size);
/* Stops and joins the threads, QUITs their connections; requests still queued are left
 * without done_cb (their sessions are being freed).  NULL is a no-op. */
void verify_stop(struct verify *v);

/* The cache: true with r's verdict, code and text filled on a hit (r->cached set), or
 * while the next hop is marked down (unavailable, r->skipped set). */
bool verify_lookup(struct verify *v, struct verify_req *r);
/* Queues r for a probe; done_cb follows on a probe thread. */
void verify_submit(struct verify *v, struct verify_req *r);

/* "ok", "unknown", "unavailable": the metric's and the log's words. */
const char *verify_verdict_name(enum verify_verdict v);

#endif
