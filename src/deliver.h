/*
 * deliver — takes committed messages from the spool and delivers them into Maildirs, on
 * a thread of its own, with retries.
 *
 * Messages come in through deliver_submit() (from the spool's syncer thread, or its
 * recovery at start).  The thread takes every message that is due at once, delivers each
 * recipient (maildir.h: a hard link of the spooled file, or a synced copy), then
 * fsync()s each Maildir's new/ directory once for the whole batch, and only then removes
 * the messages whose recipients are all delivered from the spool.  A recipient that
 * fails is retried after 1 minute, then 2, 4, ... up to 1 hour, with each failure logged
 * with its reason.  Delivery is idempotent (fixed file names), so a message delivered
 * again after a crash is not duplicated.
 */
#ifndef MXGATE_DELIVER_H
#define MXGATE_DELIVER_H

#include <stdint.h>

#include "config.h"
#include "spool.h"

struct deliver;

/* Returns a referenced config snapshot (the caller unrefs it). */
typedef struct config *(*deliver_config_fn)(void *arg);

/* Starts the delivery thread.  sp is borrowed until deliver_free(). */
struct deliver *deliver_new(struct spool *sp, deliver_config_fn get_config, void *arg);
/* Stops the thread (a batch under way finishes; the rest stays in the spool). */
void deliver_free(struct deliver *d);

/* Opens the Maildir base of cfg now (call before dropping privileges); a base it has to
 * make is given to uid/gid (when >= 0). */
void deliver_prepare(struct deliver *d, const struct config *cfg, long uid, long gid);

/* Takes ownership of e.  Thread-safe. */
void deliver_submit(struct deliver *d, struct spool_entry *e);
/* Makes every waiting message due now. */
void deliver_flush(struct deliver *d);

struct deliver_stats {
	uint64_t delivered_msgs, delivered_rcpts, deferred, batches, queued;
};
void deliver_get_stats(struct deliver *d, struct deliver_stats *st);

#endif
