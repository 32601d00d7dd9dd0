/*
 * transcript — golden SMTP transcripts for the sans-I/O core (docs/STYLE.md habit 11).
 *
 * A transcript is a readable text file (tests/unit/transcripts/NAME.txt) or string, one
 * item a line:
 *
 *   # text                 a comment; blank lines are ignored too
 *   config: TEXT           a top-level line added to the base config (transcript.c);
 *                          it replaces the base line with the same key; "-KEY" drops it
 *   connector: KEY = VAL   a connector setting; replaces the base one with the same KEY
 *   tls: yes               a certificate is loaded: tls section and tls_available
 *   client: IP             the client's address (default 192.0.2.1)
 *   split: every|whole|N   the feeds to try, below (default every)
 *   rate: N                rate_ok() allows N MAILs, then says no (default: no rate_ok)
 *
 *   C: TEXT                a client line; CRLF is appended
 *   R: TEXT                client bytes as written, nothing appended
 *   X: eof|idle|session|shutdown
 *                          smtp_eof(), smtp_timeout(IDLE or SESSION), smtp_shutdown()
 *
 *   S: TEXT                one line of a reply (multi-line replies: one S: each);
 *                          S(Nms): the reply carries a tarpit delay of N ms
 *   A: MSG_BEGIN ok|fail   the session asked to open a message; the answer given
 *   A: MSG_DATA TEXT       the whole text of a committed message (all MSG_DATA joined)
 *   A: MSG_END ok ID|fail  the session asked to commit; the answer (ID names it)
 *   A: MSG_ABORT           the message was discarded (its text is not shown)
 *   A: STARTTLS ok|fail    the session asked for the handshake; its outcome
 *                          Any of the three answers may end in +eof, +idle, +session
 *                          or +shutdown: that event comes while the request waits,
 *                          before its answer (a timeout during a commit)
 *   A: CLOSE               the session closed
 *   E: helo=H from=<F> to=<R>,<R>[ smtputf8][ 8bitmime]
 *                          the envelope, after every A: MSG_BEGIN
 *   E: size=N hops=N       after every A: MSG_END
 *   L: TEXT                some log line of the whole feed contains TEXT (any order)
 *
 * TEXT takes escapes: \r \n \t \0 \\ \xHH, and \{N:TEXT} for TEXT repeated N times.
 * Consecutive C:/R: lines make one turn: the client sends them together and waits for
 * the replies.  The S:, A: and E: lines are the record the session must produce, in
 * order; the A: lines also script the driver's answers.  The driver answers
 * SMTP_MSG_BEGIN at once (as the daemon does) and SMTP_MSG_END and SMTP_STARTTLS when
 * smtp_next() says SMTP_WAIT.  After SMTP_STARTTLS the rest of the turn is dropped: a
 * client that sent it in plaintext behind STARTTLS fed it to the handshake.
 *
 * Feeds: each turn whole; byte by byte; cut once at every offset of the stream; and 16
 * random multi-cut feeds with fixed seeds.  Every feed must give the same record, and
 * each is checked for the action invariants (no text outside a message, one MSG_END per
 * message, well-formed replies, nothing after SMTP_CLOSE...).  "split: whole" tries only
 * the first, for sessions whose meaning depends on what arrives together (text behind
 * DATA); "split: N" tries whole, byte by byte, and N random single and multi cuts, for
 * transcripts too long for every offset.
 */
#ifndef MXGATE_TEST_TRANSCRIPT_H
#define MXGATE_TEST_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include "smtpd/smtp.h"

struct tx_script;

/* Parses a transcript; on a syntax error prints it (with name and line) and returns NULL. */
struct tx_script *tx_parse(const char *name, const char *text);
/* Reads tests/unit/transcripts/FILE (relative to this source file, or to $MXGATE_SRCDIR)
 * and parses it; NULL (with a message) when it cannot. */
struct tx_script *tx_load(const char *file);
void tx_free(struct tx_script *sc); /* NULL is a no-op */

/* Runs every feed the script asks for.  Returns true when each gave the expected record;
 * otherwise prints the first failing feed with both records to stderr. */
bool tx_check(const struct tx_script *sc);

/* The directory of the transcript files, for the test that lists them. */
const char *tx_dir(void);

/* For tests that drive the core by hand: a session under the set-up lines of a
 * transcript (config:, connector:, tls:, client:; no rate_ok).  NULL (with a message)
 * when the config does not load.  tx_session_free() frees the session, its config and script. */
struct tx_session {
	struct smtp *smtp;
	struct tx_script *sc;
	struct config *cfg;
	struct smtp_policy policy; /* the session's, from cfg (its strings are cfg's) */
};
struct tx_session *tx_session_new(const char *setup);
void tx_session_free(struct tx_session *t); /* NULL is a no-op */

#endif
