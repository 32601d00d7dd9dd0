/*
 * relay — the SMTP client that hands messages to the protected next hop.
 *
 * RFC 5321 client side with PIPELINING (2920; MAIL, every RCPT and DATA in one write
 * where offered), CHUNKING (3030; where offered, the message goes as one
 * "BDAT <size> LAST" chunk, not dot-stuffed, and with PIPELINING the envelope, the BDAT
 * command and the chunk share one write), SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531)
 * and STARTTLS (3207, as relay-tls says), over the shared client core (net/smtpc.h: its strict reply parser,
 * its EHLO/HELO fallback).  All recipients of a message go in one transaction, and a
 * connection carries several messages.  Blocking I/O on the caller's (delivery) thread;
 * every step — connect, each reply, each write — is bounded by the relay timeout.
 *
 * Outcomes are per recipient: the reply code and text of the step that decided it.
 * Code 0 means "not decided" (the connection broke first): a temporary failure.  If the
 * connection breaks after the final "." and before its reply, the outcome is unknown and
 * reported as 0: the message is sent again later, so it may arrive twice (RFC 1047; the
 * delivery is at-least-once, see deliver.h); the same holds after a BDAT chunk.
 * relay_send() returns as soon as the reply to the final "." (or the chunk) is read, so the caller records it before the next message is sent.
 */
#ifndef MXGATE_RELAY_H
#define MXGATE_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "net/tls.h"
#include "queue/spool.h"

struct relay_opts {
	const char *host; /* an address or a name */
	uint16_t port;
	const char *helo;        /* our hostname for EHLO */
	unsigned tls;            /* enum relay_tls (config.h) */
	struct tls_ctx *tls_ctx; /* client context; borrowed for the call */
	uint64_t timeout_ms;
};

struct relay_result {
	int code; /* reply code for this recipient, or 0 */
	char text[512];
};

struct relay_conn;

/* Connects, greets (EHLO, falling back to HELO), and starts TLS as opts->tls says.
 * NULL with the reason in err (always a temporary failure). */
struct relay_conn *relay_open(const struct relay_opts *opts, char *err, size_t errlen);

/* Relays message e (its data file is datafd; the first e->prefix_len bytes are skipped)
 * to the recipients whose pending[i] is true, filling res[i] for those.  Returns 0 when
 * the connection can carry another message, -1 when it broke (err says why). */
int relay_send(struct relay_conn *c, const struct spool_entry *e, int datafd, const bool *pending,
               struct relay_result *res, char *err, size_t errlen);

/* Before a kept connection carries another batch: RSET, which must be answered 250.
 * 0 when it can; -1 when it cannot (the server closed it, timed it out, or answered
 * otherwise: err says how); then relay_abort() it and open a new one. */
int relay_reset(struct relay_conn *c, char *err, size_t errlen);

/* Whether the last EHLO offered CHUNKING, so messages go with BDAT (RFC 3030). */
bool relay_chunking(const struct relay_conn *c);
/* Recipient verification (smtpd/verify.h): MAIL FROM:<>, RCPT TO:<rcpt>, RSET.  res is
 * RCPT's reply; code 0 when there is none (the connection broke first, or MAIL was
 * refused: err says why).  Returns 0 when the connection can carry another probe, -1 when
 * not (err says why; res may still hold RCPT's reply).  rcpt is local@domain, at most
 * 500 octets; one with octets above 0x7f is probed with SMTPUTF8 (RFC 6531), and not at
 * all (code 0) when the next hop lacks it. */
int relay_probe(struct relay_conn *c, const char *rcpt, struct relay_result *res, char *err,
                size_t errlen);

/* "host[address]:port", and whether TLS is up, for logs and bounces. */
const char *relay_peer(const struct relay_conn *c);
const char *relay_tls_info(const struct relay_conn *c);

/* QUIT and close.  NULL is a no-op. */
void relay_close(struct relay_conn *c);
/* Close without QUIT (after relay_send() returned -1).  NULL is a no-op. */
void relay_abort(struct relay_conn *c);

#endif
