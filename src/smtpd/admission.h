/*
 * admission — whether a client may open a session, and how fast it may send.
 *
 * Exchange's MaxInboundConnection, MaxInboundConnectionPerSource,
 * MaxInboundConnectionPercentagePerSource and MessageRateLimit: concurrent sessions per
 * connector and per (connector, client address), and messages a minute per (connector,
 * client address), counted at MAIL.  Counters are keyed by the connector's name, so a
 * reload that keeps a connector keeps its counts.
 *
 * Thread-safe: the acceptor admits, the workers release and count messages; one mutex
 * inside guards every counter.  A source's counters outlive its sessions by at most
 * ADMISSION_RATE_WINDOW_S plus one sweep: admission_sweep() frees those nobody needs
 * (call it every ADMISSION_SWEEP_S), so memory follows live sources, not every address
 * ever seen.
 */
#ifndef MXGATE_ADMISSION_H
#define MXGATE_ADMISSION_H

#include <stdbool.h>

#include "base/ipaddr.h"
#include "conf/config.h"

#define ADMISSION_RATE_WINDOW_S 60
#define ADMISSION_SWEEP_S       60

enum admit { ADMIT_OK, ADMIT_CONNECTOR_FULL, ADMIT_SOURCE_FULL, ADMIT_NOMEM };

struct admission;

/* Returns NULL without memory. */
struct admission *admission_new(void);
void admission_free(struct admission *ad); /* NULL is a no-op */

/* Counts a session of connector k from src, or says which limit refuses it (nothing is
 * counted then).  The percentage per source is of the connector's free slots and always
 * allows one; link-local and site-local IPv6 sources are exempt from the per-source
 * limits, as in Exchange. */
enum admit admission_admit(struct admission *ad, const struct connector *k,
                           const struct ipaddr *src);
/* Ends a session admission_admit() counted (connector: its name, borrowed for the call). */
void admission_release(struct admission *ad, const char *connector, const struct ipaddr *src);
/* MessageRateLimit: true, and counts the message, unless src has sent the limit this
 * minute. */
bool admission_rate_allows(struct admission *ad, const struct connector *k,
                           const struct ipaddr *src);
/* Frees the counters no session holds and no rate window needs. */
void admission_sweep(struct admission *ad);

#endif
