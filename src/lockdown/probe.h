/*
 * probe — "then test it with telnet", as a command: does a server take mail from a
 * given source address, and if not, where does it refuse?
 *
 * The walk: connect (bound to the source address) -> banner -> EHLO -> [STARTTLS ->
 * EHLO] -> MAIL -> RCPT -> RSET -> QUIT.  No DATA is ever sent: nothing is delivered.
 * Every command and every reply line goes to the transcript, one line each:
 *
 *   connect   203.0.113.25:25 from 67.231.152.10:40312: connected
 *   banner    < 220 mx.example.com ESMTP ready
 *   EHLO      > EHLO [67.231.152.10]
 *   EHLO      < 250-mx.example.com
 *   ...
 *   verdict: open                        (or "verdict: refused at RCPT", ...)
 *
 * Verdicts: open when RCPT got 250 or 251; refused at the first step that did not get
 * its success reply (connect: refused, unreachable or no answer in time — a firewall that
 * drops; banner: closed, reset or timed out before a 220, or another code; EHLO, when
 * HELO does not stand in for it either; STARTTLS: no 220 or a failed handshake; MAIL;
 * RCPT), including a server that closes the connection at that step; error when the
 * probe cannot run (unknown host, the source address is not local) or the server breaks
 * the protocol (a malformed reply, RFC 5321 §4.2: three digits, then SP, '-' or the end,
 * one code per reply, CRLF, lines of at most 512 octets; or bytes after its STARTTLS 220,
 * RFC 3207 §4.2, which could be an injection).
 *
 * TLS: the server's certificate is not verified (the probe asks whether the server takes
 * mail, not whom to trust); the transcript says so.  Every wait (connect, each reply,
 * each write, the handshake) is bounded by the timeout.  Writes may raise SIGPIPE on a
 * connection the server reset: the caller ignores SIGPIPE.
 */
#ifndef MXGATE_PROBE_H
#define MXGATE_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum probe_step {
	PROBE_CONNECT,
	PROBE_BANNER,
	PROBE_EHLO,
	PROBE_STARTTLS,
	PROBE_MAIL,
	PROBE_RCPT,
};

enum probe_verdict { PROBE_OPEN, PROBE_REFUSED, PROBE_ERROR };

/* All strings borrowed for the call. */
struct probe_opts {
	const char *host;      /* an address or a name, without brackets */
	uint16_t port;         /* 25 by default (probe_parse_target) */
	const char *source;    /* local address to connect from, or NULL for any */
	const char *helo;      /* NULL: the host name when it is a FQDN, else [source] */
	const char *mail_from; /* reverse-path without <>; "" or NULL: the null path <> */
	const char *rcpt_to;   /* NULL: postmaster@ the host name, or the banner's name */
	bool starttls;
	unsigned timeout_ms; /* for each wait */
};

struct probe_result {
	enum probe_verdict verdict;
	enum probe_step step; /* where it was refused, or failed */
	char why[256];        /* for refused and error: what happened, one line */
};

/* Splits "HOST", "HOST:PORT", "[IPv6]" or "[IPv6]:PORT" (a bare IPv6 address is a host
 * without a port).  Returns 0, or -1 with a reason in err. */
int probe_parse_target(const char *arg, char *host, size_t hostsize, uint16_t *port, char *err,
                       size_t errlen);

/* Checks a --mail-from/--rcpt-to value ("a@b", "<a@b>", "<>" or ""), writing it
 * without the brackets into out.  Returns 0, or -1 with a reason in err. */
int probe_parse_path(const char *arg, char *out, size_t size, char *err, size_t errlen);

/* Runs the walk, writing the transcript and the verdict line to out.  Fills res and
 * returns its verdict. */
enum probe_verdict probe_run(const struct probe_opts *o, FILE *out, struct probe_result *res);

#endif
