/*
 * deliver — takes committed messages from the spool and delivers them: into Maildirs, or
 * to the next hop when deliver { relay } is set; with retries, bounces and expiry.
 *
 * Messages come in through deliver_submit() (from the spool's syncer thread, or its
 * recovery at start).  Delivery threads take every due message at once:
 *   Maildir  one thread at a time delivers the batch (maildir.h: a hard link of the
 *            spooled file, or a synced copy), then fsync()s each Maildir's new/ once.
 *   relay    relay-connections threads each take a batch, open one connection, and send
 *            the messages one after the other (relay.h).  Each thread keeps its
 *            connection for relay-idle-timeout after the batch; the next batch checks it
 *            with RSET first and, when the next hop has closed it meanwhile, opens a new
 *            one at once (not a failed attempt).  Idle past the timeout, on a reload that
 *            changes the relay settings, and at stop, it is closed with QUIT.
 * Then each message is settled per recipient: accepted (2xx) → delivered; refused for good
 * (5xx), or still failing when message-expiration-timeout has passed → failed; otherwise
 * it waits, retry-interval after the first failure, doubling up to 1 hour.  For failed
 * recipients a bounce (dsn.h) is queued to the sender first — none for the null sender,
 * and in Maildir mode only for senders in an accepted domain (there is no route to others).
 * The outcome is recorded in the spool (spool_state_append, or the removal) before
 * anything else happens — the log line comes after — and a message leaves the spool only
 * when every recipient is settled.  When some recipients were accepted and others failed,
 * the accepted ones are recorded before the bounce is queued (its syncs take
 * milliseconds).
 *
 * AT-LEAST-ONCE.  Delivery never loses a queued message, but a crash at the wrong moment
 * delivers it twice — as with every MTA: Postfix and Exchange repeat a delivery in the
 * same window (RFC 1047 describes it).
 *   Maildir  idempotent: the file name is fixed by queue id and recipient, and a repeat
 *            after a crash finds it and does nothing.
 *   relay    a message's outcome is recorded right after the next hop's reply to its
 *            final dot, before the next message goes on that connection.  Two windows
 *            remain, each holding at most one message per relay connection:
 *            - the next hop has taken the message and its reply is on its way: a round
 *              trip plus the next hop's own commit.  No client can close it;
 *            - the reply is read and not yet recorded: about 25 µs from the reply to the
 *              envelope's rename out of queue/ (median, loopback to smtp-sink; p99 under
 *              0.2 ms, a few ms when a journal commit is in the way).
 *            A process crash (kill -9) in either sends that message again, so one crash
 *            costs at most relay-connections duplicates.  A power loss can also repeat
 *            the messages settled since the batch's directory fsync (removals are made
 *            durable once per batch of at most 64 messages; state lines are fsync()ed
 *            one by one).
 */
#ifndef MXGATE_DELIVER_H
#define MXGATE_DELIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "conf/config.h"
#include "queue/spool.h"

struct deliver;

/* Returns a referenced config snapshot (the caller unrefs it). */
typedef struct config *(*deliver_config_fn)(void *arg);

/* Starts threads threads (at least 1).  sp is borrowed until deliver_free(). */
struct deliver *deliver_new(struct spool *sp, deliver_config_fn get_config, void *arg,
                            unsigned threads);
/* Stops the threads (batches under way finish; the rest stays in the spool). */
void deliver_free(struct deliver *d);

/* Opens the Maildir base of cfg now (call before dropping privileges); a base it has to
 * make is given to uid/gid (when >= 0).  A base inside the spool is checked as the spool
 * is (spool.h, TRUST): -1 (and an error line saying what to fix) when another user could
 * write it; the daemon must not start.  Any other problem is logged, and 0 returned. */
int deliver_prepare(struct deliver *d, const struct config *cfg, long uid, long gid);

/* Takes ownership of e.  Thread-safe. */
void deliver_submit(struct deliver *d, struct spool_entry *e);
/* Makes every waiting message due now. */
void deliver_flush(struct deliver *d);
/* Removes a queued message that is not being delivered right now.  Returns 0, or -1
 * with a reason in err. */
int deliver_remove(struct deliver *d, const char *id, char *err, size_t errlen);
/* Holds a queued message that is not being delivered right now (hold: it is never
 * delivered until released, across restarts: a "hold" state line), or releases a held one
 * (due now).  Returns 0, or -1 with a reason in err. */
int deliver_hold(struct deliver *d, const char *id, bool hold, char *err, size_t errlen);

/* One queued message as the delivery sees it; e is borrowed for the callback only. */
struct deliver_item {
	const struct spool_entry *e;
	time_t due; /* the next attempt; 0: now */
	bool busy;  /* being delivered right now */
	bool held;  /* held by the administrator (deliver_hold) */
};
typedef void (*deliver_item_cb)(const struct deliver_item *it, void *arg);

/* Calls fn for every queued message (those being delivered, then the due ones, then the
 * waiting ones) under the queue's lock: fn must be quick and must not call into d.
 * Returns the number of messages.  The queue as data: queue.h formats it.  Of a busy
 * message fn may read only what never changes (id, received, size, sender, recipients):
 * its delivery thread updates the attempt count, last error and recipient states without
 * the lock while it sends. */
size_t deliver_foreach(struct deliver *d, deliver_item_cb fn, void *arg);

#endif
