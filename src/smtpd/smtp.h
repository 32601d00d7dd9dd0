/*
 * smtp — the SMTP server side as a sans-I/O state machine.
 *
 * RFC 5321 with EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY, HELP, STARTTLS and
 * the extensions SIZE (1870), ENHANCEDSTATUSCODES (2034), PIPELINING (2920), STARTTLS
 * (3207), 8BITMIME (6152), SMTPUTF8 (6531) and CHUNKING (3030, BDAT; not BINARYMIME),
 * each as the connector's settings say.
 * Replies use Exchange's wording.  No sockets, clocks, files, logging or unbounded
 * allocation in here: bytes go in, actions come out.
 *
 * Driving it:
 *   1. smtp_input_space() gives a buffer to read client bytes into; smtp_input_commit()
 *      says how many arrived; smtp_eof() says the client closed.
 *   2. smtp_next() returns the next action until it returns SMTP_NONE (needs more input)
 *      or SMTP_WAIT (needs the answer to a request it made).  Execute each in order.
 *   3. Answer requests with smtp_msg_begun(), smtp_msg_committed(), smtp_tls_done() and
 *      smtp_rcpt_verified().
 *      smtp_timeout() and smtp_shutdown() inject the server's own events.
 * Pointers in an action stay valid until the next call into this module.
 *
 * Security properties it guarantees:
 *   - CRLF is the only line ending.  A bare CR or LF anywhere — command, header or body —
 *     ends the session with 421 4.5.0, so no framing trick can end DATA early or make two
 *     messages out of one (SMTP smuggling).  With bare_lf_normalize a bare LF ends a line
 *     too (the text is stored with CRLF), and the end of data is CRLF.CRLF, or LF.LF in a
 *     message whose first line ended in a bare LF (as Exim decides); any other dot line is
 *     text (\n.\n after CRLF lines, \n.\r\n, \r\n.\n), so a message relayed by an MTA
 *     that writes CRLF can hide no second one; a bare CR still closes the session.
 *   - BDAT: the chunk size is checked against max-message-size before the chunk is read;
 *     a refused chunk is still read (and dropped), so the stream stays in sync; BDAT and
 *     DATA never mix in one transaction (503 5.5.1).  Chunk text has the same line, NUL,
 *     header and hop checks as DATA, without dot-stuffing.
 *   - Command lines are at most 512 octets and text lines 1000, both with CRLF (RFC 5321
 *     §4.5.3.1); longer ones are refused without being buffered.
 *   - After STARTTLS every byte already buffered is dropped and all state is reset
 *     (RFC 3207 §4.2): commands pipelined behind STARTTLS never run.
 *   - DATA must end a pipelined group (RFC 2920 §3.1): bytes already sent behind DATA
 *     before the 354 reply end the session with 421.
 *   - Recipients outside accepted domains, and local parts with routing characters
 *     (%, !, @) or source routes that would reroute them, are refused unless the
 *     connector grants exchange-servers.
 *   - The tarpit (Exchange's TarpitInterval): failure replies (4xx and 5xx, not the
 *     goodbyes before a close) wait tarpit-interval, and only in anonymous sessions from
 *     IPv4 or global IPv6 sources.  A session is authenticated when its connector grants
 *     partners or exchange-servers without anonymous-users (the trust comes from the
 *     connector, as Exchange's Partners and ExchangeServers groups come from
 *     authentication); link-local (fe80::/10) and site-local (fec0::/10) IPv6 sources
 *     are exempt, as in Exchange 2013.
 *   - Memory is fixed per session besides the transaction (its sender and at most
 *     max-recipients-per-message recipients): a queue of 16 actions and a 4 KiB text
 *     arena, whose bounds smtp.c proves.  A reply line is at most 512 octets with CRLF
 *     (RFC 5321 §4.5.3.1.5), a log line at most 512 (a longer one is cut and ends in
 *     "...").  Nothing is dropped in silence: should a bound be broken (say a banner or
 *     fqdn longer than config.c allows), every action queued before goes out, then
 *     "421 4.3.0 Internal server limit reached", an error log line and SMTP_CLOSE.
 */
#ifndef MXGATE_SMTP_H
#define MXGATE_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_kind {
	SMTP_NONE,        /* nothing until more input arrives */
	SMTP_WAIT,        /* waiting for smtp_msg_begun/committed, smtp_tls_done or
	                   * smtp_rcpt_verified */
	SMTP_REPLY,       /* send text (whole CRLF-ended lines); delay_ms > 0: tarpit first */
	SMTP_STARTTLS,    /* send what is queued, then begin the TLS handshake */
	SMTP_MSG_BEGIN,   /* a message starts: open it in the spool, answer smtp_msg_begun() */
	SMTP_MSG_DATA,    /* append text/len to the message */
	SMTP_MSG_END,     /* the message is complete: commit it, answer smtp_msg_committed() */
	SMTP_MSG_ABORT,   /* discard the message begun */
	SMTP_LOG,         /* a line for the log: text, with level (enum log_level) */
	SMTP_COMMAND,     /* with policy log_commands: a command line as received, for the
	                   * protocol log (text, no CRLF; AUTH's arguments replaced by "****") */
	SMTP_CLOSE,       /* send what is queued and close the connection */
	SMTP_MAILCHECK,   /* with policy mail_check: MAIL passed every check of the core; ask
	                   * the server's own (forward-confirmed reverse DNS), answer
	                   * smtp_mail_checked() */
	SMTP_RCPT_VERIFY, /* policy verify_recipients: ask whether the recipient text
	                   * (local@domain) exists, answer smtp_rcpt_verified() */
};

struct smtp_action {
	enum smtp_kind kind;
	const char *text;
	size_t len;
	unsigned delay_ms; /* SMTP_REPLY: tarpit delay before sending */
	int level;         /* SMTP_LOG */
	/* SMTP_REPLY: it answers MAIL, RCPT, DATA or the end of the data (what the
	 * metrics count as a refused transaction when the code is 4xx or 5xx) */
	bool transaction;
};

struct smtp_rcpt {
	char *addr; /* local@domain, as it will be delivered; domain in lower case */
	size_t local_len;
};

/* The transaction, valid from SMTP_MSG_BEGIN until the message is answered. */
struct smtp_envelope {
	const char *helo;
	const char *mail_from; /* "" for the null sender <> */
	const struct smtp_rcpt *rcpts;
	size_t n_rcpts;
	bool smtputf8;          /* SMTPUTF8 was given */
	bool body_8bit;         /* BODY=8BITMIME */
	uint64_t size;          /* at SMTP_MSG_END: the message's size in bytes */
	unsigned received_hops; /* at SMTP_MSG_END: Received: headers it carried */
	const char *message_id; /* at SMTP_MSG_END: the first Message-ID: header's first word,
	                         * printable ASCII (others '?'), at most SMTP_MSGID_MAX bytes;
	                         * "" when the header has none */
};

#define SMTP_MSGID_MAX 200

#define SMTP_UNLIMITED UINT64_MAX /* max_protocol_errors without a limit */

/*
 * What the core needs of the connector and the configuration, and nothing more: the
 * session code fills it from the config snapshot (smtpd/policy.h), tests and the fuzzer
 * build it directly.  smtp_new() copies the struct; the strings it points to and the
 * callbacks' arguments are borrowed for the session's life.
 */
struct smtp_policy {
	const char *banner; /* the greeting line without CRLF, "220 ..."; longer than a reply
	                     * line (510 octets): the 421 of a broken bound */
	const char *fqdn;   /* the server's name in the HELO/EHLO reply */
	const char *postmaster_domain; /* completes RCPT TO:<postmaster> (RFC 5321 §4.5.1) */
	uint64_t max_message_size;     /* bytes; not for exchange_servers */
	uint64_t max_header_size;      /* bytes */
	uint64_t max_recipients;       /* per message */
	uint64_t max_protocol_errors;  /* tolerated; the next closes; or SMTP_UNLIMITED */
	uint64_t max_hop_count;        /* Received: headers a message may carry */
	uint64_t message_rate_limit;   /* a minute: only named in the log when rate_ok says no */
	uint64_t tarpit_interval_ms;   /* before failure replies to anonymous sessions */
	/* permission groups: none at all refuses MAIL (530) */
	bool anonymous_users, partners, exchange_servers;
	bool starttls;    /* the connector offers STARTTLS (with tls_available) */
	bool require_tls; /* MAIL only after STARTTLS */
	/* MAIL only once smtp_tls_peer() said the client certificate proves the tenant */
	bool require_client_cert;
	bool pipelining, enhanced_status_codes, eight_bit_mime, smtp_utf8; /* extensions */
	bool log_commands; /* protocol logging: each command (AUTH's argument hidden) as SMTP_COMMAND */
	bool mail_check;        /* each MAIL that passes waits for SMTP_MAILCHECK's answer */
	bool chunking;          /* CHUNKING: BDAT (RFC 3030) */
	bool bare_lf_normalize; /* a bare LF ends a line (stored as CRLF); else it closes */
	/* RCPT to an accepted domain (but postmaster, RFC 5321 §4.5.1) that passed every
	 * other check is answered only after SMTP_RCPT_VERIFY's answer */
	bool verify_recipients;

	/* An accepted domain (any case, no literal): RCPT outside them is relaying. */
	bool (*domain_accepted)(const void *arg, const char *domain, size_t len);
	/* For an accepted domain: 1 if the local part (any case) is a known recipient, 0 if
	 * not, -1 when the domain takes every local part. */
	int (*recipient_known)(const void *arg, const char *domain, size_t dlen, const char *local,
	                       size_t llen);
	const void *lookup_arg;     /* for domain_accepted and recipient_known */
	bool (*rate_ok)(void *arg); /* message-rate-limit check at MAIL; NULL: none */
	void *rate_arg;
};

struct smtp_params {
	const struct smtp_policy *policy; /* copied by smtp_new() */
	const char *client_ip;            /* for the greeting ("[ip]" is added) and the tarpit */
	bool tls_available;               /* a certificate is loaded */
};

struct smtp;

/* Returns NULL without memory.  The first action is the banner. */
struct smtp *smtp_new(const struct smtp_params *p);
void smtp_free(struct smtp *s); /* NULL is a no-op */

/* Where to read client bytes into; *space is never 0 while the session reads, but when
 * there is no memory for the buffer: then smtp_next() ends the session. */
char *smtp_input_space(struct smtp *s, size_t *space);
void smtp_input_commit(struct smtp *s, size_t n);
/* True when the session wants no more input (waiting, closing, or buffer full of
 * unprocessed commands). */
bool smtp_input_paused(const struct smtp *s);
void smtp_eof(struct smtp *s);

enum smtp_kind smtp_next(struct smtp *s, struct smtp_action *a);

/* The envelope of the current message (after SMTP_MSG_BEGIN). */
const struct smtp_envelope *smtp_envelope(const struct smtp *s);

void smtp_msg_begun(struct smtp *s, bool ok);
/* ok: on stable storage; queue_id (borrowed for the call, not NULL when ok) names it in
 * the 250 reply, at most 64 characters of it. */
void smtp_msg_committed(struct smtp *s, bool ok, const char *queue_id);
/* After SMTP_MAILCHECK: refusal NULL accepts the sender (250 2.1.0), else it is the
 * whole reply line without CRLF ("550 5.7.1 ..."; borrowed for the call, at most 510
 * octets), sent like every failure reply (tarpit included).  A timeout while the check
 * runs ends the session at once: nothing is at stake. */
void smtp_mail_checked(struct smtp *s, const char *refusal);
/* The answer to SMTP_RCPT_VERIFY.  OK takes the recipient (250); UNKNOWN refuses it with
 * "550 5.1.1" and text (the next hop's reply text, borrowed for the call: its own
 * enhanced code dropped, control characters replaced, cut to fit a reply line);
 * UNAVAILABLE answers "450 4.4.3".  A timeout that came meanwhile follows the answer. */
enum smtp_verdict { SMTP_VERIFY_OK, SMTP_VERIFY_UNKNOWN, SMTP_VERIFY_UNAVAILABLE };
void smtp_rcpt_verified(struct smtp *s, enum smtp_verdict v, const char *text);
/* After SMTP_STARTTLS: ok when the handshake completed.  A failed handshake closes. */
void smtp_tls_done(struct smtp *s, bool ok);
/* After a handshake, for require_client_cert: refusal is the reply every MAIL gets (one
 * line without CRLF, copied, cut at 400 bytes), or NULL when the client certificate proved
 * the tenant.  Without the call, MAIL is refused too. */
void smtp_tls_peer(struct smtp *s, const char *refusal);

/* The idle timeout answers 451 4.7.0, the session timeout 421 4.4.1; either closes, and
 * aborts a message being received.  Actions already queued go out before it.  While a
 * message is being opened or committed (after SMTP_MSG_BEGIN or SMTP_MSG_END, before its
 * answer) the timeout waits for the answer: the message's outcome goes out first (250 or
 * 452), then the timeout's reply and SMTP_CLOSE.  A 421 for a message that commits
 * anyway would make the sender send it again, and it would be delivered twice. */
enum smtp_timeout { SMTP_TIMEOUT_IDLE, SMTP_TIMEOUT_SESSION };
void smtp_timeout(struct smtp *s, enum smtp_timeout which);
/* The server is stopping: close now when idle, else after the current transaction. */
void smtp_shutdown(struct smtp *s);

/* What the session counted so far, for the metrics (they only grow). */
struct smtp_stats {
	uint64_t bdat_chunks, bdat_bytes; /* BDAT chunks read (taken or refused), their octets */
	uint64_t bare_refused;            /* sessions closed for a bare CR or LF */
	uint64_t bare_normalized;         /* bare LFs taken as line ends */
};
const struct smtp_stats *smtp_stats(const struct smtp *s);

/* Whether the session is in TLS, said HELO/EHLO, and what it said. */
bool smtp_in_tls(const struct smtp *s);
const char *smtp_helo(const struct smtp *s);
bool smtp_esmtp(const struct smtp *s);

#endif
