/*
 * spool — the durable message store.  No message is answered 250 before this module has
 * said it is on stable storage.
 *
 * Layout under the spool directory (made at start, mode 0700; see TRUST below):
 *   queue/   messages: <id> (the message exactly as it will be delivered, written there
 *            as it arrives) and, once committed, <id>.env (sender, recipients, size,
 *            origin; see spool.c) and maybe <id>.state (delivery progress)
 *   tmp/     envelopes being written when free/ has none to reuse
 *   free/    envelope and data files of settled messages, kept to be rewritten (see
 *            spool.c; a data file a Maildir links is never kept)
 *   corrupt/ queued messages recovery could not read, set aside for the admin
 *
 * DURABILITY PROTOCOL
 *   1. spool_msg_new() creates queue/<id> with O_EXCL, mode 0600; the session appends the
 *      message with spool_msg_write() as it arrives.  Without an envelope it is not a
 *      queued message: nothing reads it but its own session.
 *   2. spool_msg_commit() closes it, writes its envelope (into a recycled free/ file, or
 *      a new tmp/ one) and hands both to the syncer thread, where other sessions' messages
 *      wait with it.
 *      (Where the kernel has no syncfs(), the syncer does the writing, with an
 *      fdatasync/fsync per file.)
 *   3. Group commit: the syncer takes every waiting message at once; it makes every data
 *      file and envelope of the group durable with one syncfs(), renames each envelope to queue/<id>.env — the
 *      commit record —, then fsync()s queue/ once for the whole group.  Only after that
 *      fsync returns does any of those sessions learn its message is committed — and
 *      only then does it reply 250.  Pipelined: the syncer thread does the syncfs() and
 *      the renames, then hands the group to the directory syncer thread for the fsync of
 *      queue/ and the answers, and takes the next group at once (spool.c says why).
 *   4. A failure at any step (ENOSPC, EIO, ...) fails that message alone: its files are
 *      removed and its session replies 452 4.3.1.  Nothing answered 250 depends on it.
 *      A failed sync is worse (FAILED SYNCS below): it fails the whole group, and the
 *      spool with it.
 *   Invariant: a message is queued iff queue/<id>.env exists, and then its data is
 *   complete and synced; the data file's size must match the envelope.
 *   RECOVERY (spool_recover(), at start): tmp/ is emptied and data files in queue/
 *   without an envelope are removed — none was ever answered 250 (or it was settled and
 *   its removal interrupted).  Every envelope in queue/ is read and handed to delivery
 *   again; an envelope that does not parse, or whose data is missing or of the wrong
 *   size, is moved aside to corrupt/ and logged, never silently deleted.
 *   REMOVAL: when every recipient is delivered, spool_remove() moves <id>.env to free/
 *   (or unlinks it), then unlinks <id>.state, and moves <id> to free/ too when no other
 *   name links it (else unlinks it).  spool_msg_new() renames a free/ file to queue/<id>
 *   (rewritten from its start, cut to the message at the commit) before it creates one;
 *   like a new one, it is no message without its envelope.  (Delivery must be idempotent: a
 *   crash before the removal is durable delivers again; see deliver.h.)
 *
 * FAILED SYNCS
 *   When fsync(), fdatasync() or syncfs() of the spool fails, Linux may already have
 *   dropped the pages it could not write, marked clean, and it reports the error once: a
 *   sync retried afterwards succeeds and proves nothing (PostgreSQL's "fsyncgate").  So
 *   the first failure, on any thread, puts the spool in the failed state until the
 *   process ends: every message of the group being committed fails (452 4.3.1, its
 *   files removed), and so does every later one (spool_msg_new() and spool_inject() fail
 *   with the errno, spool_barrier() and spool_sync() too, spool_state_append() writes
 *   but does not sync and fails).  One error line says the disk failed and mxgate must
 *   be restarted after checking it; mxgate_spool_sync_failures_total counts the failed
 *   syncs (obs/metrics.h) and the shutdown line the messages refused.  Removals still work, so delivery of what was queued before goes
 *   on (a Maildir delivery needs the spool's sync, so it waits for the restart).
 *
 * Threads: the session thread owns a spool_msg until spool_msg_commit() or
 * spool_msg_abort(); the syncer threads own it afterwards and free it after calling the
 * done callback.  The done callback and the committed hook run on the directory syncer's
 * thread (step 3 above; the syncer does steps 1 and 2 of the next group meanwhile) and
 * must only post work elsewhere.
 */
#ifndef MXGATE_SPOOL_H
#define MXGATE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define SPOOL_ID_LEN 16

enum spool_rcpt_state { SPOOL_RCPT_PENDING, SPOOL_RCPT_DELIVERED, SPOOL_RCPT_FAILED };

/* What is known about a queued message; owned by whoever holds it. */
struct spool_entry {
	char id[SPOOL_ID_LEN + 1];
	time_t received;
	uint64_t size;       /* bytes of the data file */
	uint64_t prefix_len; /* leading bytes only a Maildir delivery keeps
	                             (Return-Path:); a relay skips them */
	char *sender;        /* "" for the null sender */
	char **rcpts;        /* local@domain */
	size_t n_rcpts;
	char *connector, *client, *helo;
	bool smtputf8, body_8bit;
	bool recovered; /* found at start, not received by this process */
	bool has_state; /* queue/<id>.state exists (spool_state_append, or recovered) */
	/* delivery state, kept in queue/<id>.state (spool_state_append) */
	uint8_t *rcpt_state; /* enum spool_rcpt_state per recipient; NULL: all pending */
	char **rcpt_note;    /* last reply per recipient, or NULL entries */
	unsigned attempts;
	time_t last_attempt;
	char *last_error; /* NULL: none */
	bool held;        /* held by the administrator: a "hold" state line not yet followed by
	                   * "release" (mxgate queue hold); never delivered while set */
};

struct spool_entry *spool_entry_new(void);
void spool_entry_free(struct spool_entry *e); /* NULL is a no-op */

struct spool;
struct spool_msg;

/* Called once per committed message on the directory syncer's thread; takes ownership of
 * e. */
typedef void (*spool_committed_hook)(struct spool_entry *e, void *arg);
/* Called once per spool_msg_commit() on the directory syncer's thread: err 0 or an
 * errno. */
typedef void (*spool_done_cb)(void *arg, int err);

/*
 * TRUST.  Whoever can write a spool directory can plant a queued message (an envelope and
 * its data) that the next start delivers, or rename queue/ away and put another in its
 * place.  So the spool and every directory of it belong to the run user alone, as Postfix
 * wants of its queue (`postfix check`):
 *   - the directories are made mode 0700;
 *   - the spool, queue/, tmp/, free/ and corrupt/ are refused at start when they are
 *     writable by group or others, or owned by anyone but the run user (a directory owned
 *     by root, which only root could have filled, is given to the run user instead, mode
 *     0700); the error says what is wrong and the chmod or chown that fixes it;
 *   - recovery trusts only envelopes, data and state files owned by the run user; others
 *     are quarantined in corrupt/ with an error line.
 */

/* Opens (creating as needed) the spool at path for a daemon that runs as uid/gid (-1: as
 * this process), checking its directories (TRUST above).  Starts the syncer threads.  NULL
 * with a reason in err. */
struct spool *spool_open(const char *path, long uid, long gid, spool_committed_hook hook,
                         void *hook_arg, char *err, size_t errlen);
/* Checks the directory open at fd (path names it in err) as TRUST above says: owned by
 * uid (-1: this process's) and writable by no one else; a directory owned by root, when
 * this process is root, is given to uid/gid with mode 0700.  0, or -1 with what is wrong
 * and the command that fixes it in err.  For the spool and directories under it (a
 * Maildir base inside the spool). */
int spool_check_dir(int fd, const char *path, long uid, long gid, char *err, size_t errlen);
/* The spool's path, as given to spool_open(); borrowed. */
const char *spool_path(const struct spool *sp);
/* Stops the syncer after it has committed (or failed) every waiting message.  The
 * spool's directories stay usable (delivery can still remove messages). */
void spool_stop(struct spool *sp);
/* spool_stop(), then frees the spool.  NULL is a no-op. */
void spool_close(struct spool *sp);

/* Empties tmp/ and hands every queued message to the committed hook (recovered = true).
 * Returns the number of messages handed over. */
size_t spool_recover(struct spool *sp);

/* Starts a message in queue/.  NULL with errno set (the session replies 452); EIO (or the
 * failed sync's errno) once the spool has failed. */
struct spool_msg *spool_msg_new(struct spool *sp);
const char *spool_msg_id(const struct spool_msg *m);
/* Appends; failures are remembered and reported by the commit. */
void spool_msg_write(struct spool_msg *m, const void *data, size_t len);
/* Marks the first prefix bytes written as delivery-only (see spool_entry.prefix_len). */
void spool_msg_set_prefix(struct spool_msg *m, uint64_t prefix);
/* Queues the message for the next group commit; env is copied (its id and size are
 * filled in).  done runs once with the outcome; m is then gone. */
void spool_msg_commit(struct spool_msg *m, const struct spool_entry *env, spool_done_cb done,
                      void *arg);
void spool_msg_abort(struct spool_msg *m);

/* Deletes a settled message (envelope first, then its state and data).  The removal is
 * durable after the next spool_sync(). */
int spool_remove(struct spool *sp, const struct spool_entry *e);
/* fsync()s queue/: makes removals and state files created since durable. */
int spool_sync(struct spool *sp);
/* Blocks until the syncer's next syncfs() of the spool's file system has completed, so
 * that changes made before the call anywhere on that file system (Maildir links) are
 * durable; shares the sync with the messages committing meanwhile.  0, or -1 with errno.
 * Any thread but the syncer. */
int spool_barrier(struct spool *sp);
/* The device of the spool's file system (to know what spool_barrier() covers). */
int spool_dev(const struct spool *sp, dev_t *dev);

/*
 * Per-recipient delivery state survives restarts in queue/<id>.state, one line appended
 * (and fsync()ed) per event:
 *   attempt TIME TEXT          an attempt ended (TEXT: the last error, or "ok")
 *   delivered INDEX TIME TEXT  recipient INDEX accepted by the next hop / Maildir
 *   failed INDEX TIME TEXT     recipient INDEX failed for good (its bounce is queued)
 *   hold                       held by the administrator: not delivered (spool_entry.held)
 *   release                    released: delivered again (the last of the two counts)
 * line may hold several lines separated by '\n' (one write, one fsync).  Returns 0 or -1
 * with errno.  A recipient recorded as delivered or failed is never tried again after a
 * restart.
 */
int spool_state_append(struct spool *sp, struct spool_entry *e, const char *line);

/*
 * The files on disk, for recovery, `mxgate queue` and the fuzzer.  The envelope file is
 * "key value" lines (the format is at spool_envelope_format() in spool.c), each ended by
 * LF.  The parsers take any bytes: a file may be damaged by a crash or planted.
 */
/* Parses a whole envelope file of len bytes.  Strict: the magic line first, each key
 * once (rcpt once or more), numbers that fit, an id of 16 hex digits, no NUL, CR,
 * unknown line or text after "end".  NULL when it is not exactly an envelope (the caller
 * quarantines the message).  The entry is the caller's. */
struct spool_entry *spool_envelope_parse(const char *buf, size_t len);
/* Writes e as an envelope file (malloc'ed, *len bytes).  NULL with EINVAL when a value
 * holds CR or LF or a recipient is empty, ENOMEM. */
char *spool_envelope_format(const struct spool_entry *e, size_t *len);
/* Applies a state file of len bytes to e (lines above).  A last line without its LF (torn
 * by a crash) and lines that do not parse are ignored; a recipient they do not mark
 * stays pending, so the worst a damaged state does is deliver again. */
void spool_state_apply(struct spool_entry *e, const char *buf, size_t len);

/* Queues a message made here (a bounce): e gives sender and recipients; its id, size and
 * received time are filled in.  Synchronous: durable when it returns 0. */
int spool_inject(struct spool *sp, struct spool_entry *e, const char *data, size_t len);

/* Opens the data file of a queued message read-only, for delivery. */
int spool_open_data(struct spool *sp, const char *id);
/* The queue directory fd (for linkat()); borrowed. */
int spool_queue_fd(const struct spool *sp);

/* Reads every queued envelope (for `mxgate queue list` with the daemon stopped).
 * Calls fn for each; returns the count, or -1 when the spool cannot be read. */
long spool_scan(const char *path, void (*fn)(const struct spool_entry *e, void *arg), void *arg,
                char *err, size_t errlen);

#endif
