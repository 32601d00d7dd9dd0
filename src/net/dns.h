/*
 * dns — forward-confirmed reverse DNS (FCrDNS) of a client address, asynchronously on a
 * worker's event loop, with a bounded cache.
 *
 * A check asks for the PTR records of the address (in-addr.arpa, ip6.arpa), then for the
 * A (IPv4 client) or AAAA (IPv6 client) records of every PTR name (at most
 * DNS_MAX_NAMES), and marks each name whose addresses include the client's.  Which
 * confirmed name a connector wants is the caller's choice (dns_pick()).  c-ares does the
 * queries (libevent's evdns keeps only the first PTR name of an answer; a host with several
 * names would fail for the wrong reason), its sockets and timers driven by the worker's
 * libevent loop: a slow server delays only the sessions waiting for it.
 *
 * Outcomes: DNS_DONE (PTR names found; each confirmed or not; `trouble` when an address
 * lookup failed for DNS reasons, so a name may be unconfirmed for lack of an answer),
 * DNS_NO_PTR (NXDOMAIN, or no PTR record that is a host name: letters, digits, '-', '_'
 * and dots), DNS_TEMPFAIL (a timeout, SERVFAIL, refused, a
 * server unreachable, or the whole check past its timeout).
 *
 * Cache: per dns object (so per worker, no lock), DNS_CACHE_SLOTS slots indexed by a hash of
 * the address, a newer answer replacing an older one in its slot.  DNS_DONE without
 * trouble is kept for the smallest TTL among the records it used (at most
 * DNS_CACHE_MAX_TTL seconds); DNS_NO_PTR for DNS_CACHE_NEG_TTL seconds; trouble and
 * DNS_TEMPFAIL are never kept.
 *
 * Threads: a dns object and its checks belong to the thread running its event base.
 */
#ifndef MXGATE_DNS_H
#define MXGATE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/ipaddr.h"

#define DNS_MAX_NAMES     8   /* PTR names looked at; more are ignored */
#define DNS_NAME_MAX      253 /* a domain name in text, without the final dot */
#define DNS_CACHE_SLOTS   1024
#define DNS_CACHE_MAX_TTL 3600
#define DNS_CACHE_NEG_TTL 60

enum dns_status { DNS_DONE, DNS_NO_PTR, DNS_TEMPFAIL };

struct dns_fcrdns {
	enum dns_status status;
	unsigned n_names;                            /* DNS_DONE: at least 1 */
	char names[DNS_MAX_NAMES][DNS_NAME_MAX + 1]; /* lower case, no final dot */
	bool confirmed[DNS_MAX_NAMES];               /* resolves back to the client */
	bool trouble;                                /* an address lookup failed (DNS) */
	bool cached;                                 /* the answer came from the cache */
	const char *why;                             /* DNS_TEMPFAIL: what went wrong */
};

struct event_base;
struct dns;
struct dns_check;

/* A resolver on base.  servers: "IP:PORT" / "[IPv6]:PORT" texts (borrowed for the call);
 * n 0: /etc/resolv.conf's.  timeout_ms bounds a whole check.  Returns NULL with a
 * sentence in err. */
struct dns *dns_new(struct event_base *base, char *const *servers, size_t n, uint64_t timeout_ms,
                    char *err, size_t errlen);
/* Every check must have ended or been cancelled.  NULL is a no-op. */
void dns_free(struct dns *d);
/* True while queries are under way (a check's, or one left by a cancelled check). */
bool dns_busy(const struct dns *d);

typedef void (*dns_cb)(void *arg, const struct dns_fcrdns *r);

/* Checks address a.  Returns 1 with *out filled from the cache (no callback); 0 with
 * *pending set, cb(arg, r) coming once later on the loop (r borrowed for the call) unless
 * dns_cancel(*pending) comes first; -1 without memory. */
int dns_check(struct dns *d, const struct ipaddr *a, struct dns_fcrdns *out, dns_cb cb, void *arg,
              struct dns_check **pending);
/* The callback will not be called; the check's memory goes when its queries end. */
void dns_cancel(struct dns_check *c);

/* True when name ends with suffix at a label boundary ("a.example.com" and
 * "example.com" end with "example.com"; "badexample.com" does not); any case, a final dot
 * on either ignored; an empty suffix matches nothing. */
bool dns_suffix_match(const char *name, const char *suffix);
/* The first confirmed name of r that ends with one of the suffixes, or NULL; *unconfirmed
 * (when not NULL) is set to the first name that ends with one but is not confirmed. */
const char *dns_pick(const struct dns_fcrdns *r, char *const *suffixes, size_t n,
                     const char **unconfirmed);

#endif
