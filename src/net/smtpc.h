/*
 * smtpc — the SMTP client core shared by relay (queue/relay.h) and probe
 * (lockdown/probe.h), after OpenSMTPD's smtp_client.c, which smtpd and smtpc share.
 *
 * Two layers.  The reply parser is sans-I/O: it takes bytes and says when a reply line,
 * and a whole reply, is complete.  The client steps (greeting, EHLO with the HELO
 * fallback, STARTTLS, commands with or without pipelining, the dot-stuffed data writer,
 * QUIT) drive a transport (net/transport.h) and that parser.
 *
 * ONE STRICTNESS, RFC 5321 §4.2 and §4.5.3.1.5, for every caller:
 *   - a line is a code of three digits, the first 2-5 and the second 0-5, then SP, '-'
 *     or the end of the line (a bare "250" is a whole last line: the grammar's text is
 *     optional);
 *   - every line of a reply has the same code; '-' says another line follows;
 *   - lines end in CRLF: a bare LF, or a CR inside a line, is an error (§2.3.8);
 *   - a line is at most 512 octets with its CRLF; a reply at most SMTPC_LINES_MAX lines;
 *   - the text holds no control characters but TAB (textstring, §4.2).
 * Leniency kept, and why: octets of 0x80 and above are taken in the text, because servers
 * localise their replies in UTF-8 (RFC 6531 §3.7.4.2 allows it once SMTPUTF8 is used, and
 * real servers send it earlier) and nothing in mxgate interprets reply text beyond the
 * EHLO keywords.  Anything else fails the reply, and the caller treats the connection
 * as broken: a peer that breaks framing cannot be trusted to agree on where a reply ends.
 */
#ifndef MXGATE_SMTPC_H
#define MXGATE_SMTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/transport.h"

#define SMTPC_LINE_MAX  512 /* octets with the CRLF, RFC 5321 §4.5.3.1.5 */
#define SMTPC_LINES_MAX 100 /* lines in one reply: EHLO lists are the longest, ~20 */

/* ---- the reply parser (sans-I/O) ------------------------------------------------------ */

enum smtpc_ev {
	SMTPC_MORE,  /* every byte taken; feed more */
	SMTPC_LINE,  /* a line is complete and more lines of the reply follow */
	SMTPC_REPLY, /* the last line of a reply is complete */
	SMTPC_BAD,   /* malformed: error says why; the parser stays failed */
};

struct smtpc_parser {
	char line[SMTPC_LINE_MAX]; /* the line being read; after LINE/REPLY, without CRLF */
	size_t len;
	int code;      /* the reply's code once its first line is complete, else 0 */
	size_t lines;  /* lines of the current reply completed so far */
	bool complete; /* the last event was LINE or REPLY: the next byte starts a line */
	bool done;     /* the last event was REPLY: the next byte starts a new reply */
	bool failed;
	char error[120];
};

void smtpc_parser_init(struct smtpc_parser *p);
/* Takes bytes from buf until a line completes or they run out; *used says how many
 * were taken (bytes after a complete reply belong to the next).  After LINE or REPLY,
 * p->line[0..p->len) is the line without CRLF and p->code its code, until the next call. */
enum smtpc_ev smtpc_parse(struct smtpc_parser *p, const char *buf, size_t len, size_t *used);

/* ---- the client ----------------------------------------------------------------------- */

struct smtpc_reply {
	int code;
	char text[SMTPC_LINE_MAX]; /* the first line's text, after "ddd " */
};

enum smtpc_fail {
	SMTPC_OK,
	SMTPC_CLOSED,    /* the peer closed the connection */
	SMTPC_IO,        /* a read or write failed; errno in err (ETIMEDOUT, ECONNRESET, ...) */
	SMTPC_MALFORMED, /* the peer broke the protocol */
};

/* Called with every command sent (out) and every reply line read, without CRLF. */
typedef void (*smtpc_trace_cb)(void *arg, bool out, const char *line, size_t len);

struct smtpc {
	struct transport t; /* owned; connect it before smtpc_greeting() */
	struct smtpc_parser p;
	char in[4096];
	size_t in_off, in_len;
	/* what the last EHLO reply offered (RFC 2920, 1870, 6152, 6531, 3207, 3030) */
	bool pipelining, eightbit, smtputf8, starttls, chunking;
	bool in_ehlo;        /* the reply being read is EHLO's: collect the keywords */
	uint64_t size_limit; /* 0: none announced */
	/* the last failure */
	enum smtpc_fail fail;
	int err;
	char why[256];
	smtpc_trace_cb trace_cb;
	void *trace_arg;
	/* the data writer */
	char *out;
	size_t out_len;
	bool bol;
	char last2[2];
};

void smtpc_init(struct smtpc *c, uint64_t timeout_ms);
/* Closes the transport and frees the buffers (not c itself). */
void smtpc_release(struct smtpc *c);

/* Every call below returns 0, or -1 with c->fail, c->err and c->why set. */

/* Reads the next reply (its lines go to the trace). */
int smtpc_read_reply(struct smtpc *c, struct smtpc_reply *r);
/* Sends one command line (CRLF added; at most 510 octets) without reading. */
int smtpc_send(struct smtpc *c, const char *line);
/* Queues a command line for one write with the ones after it (PIPELINING, RFC 2920);
 * smtpc_flush() sends the queue (a full queue is sent on its own). */
int smtpc_queue(struct smtpc *c, const char *line);
int smtpc_flush(struct smtpc *c);
/* Sends a command and reads its reply. */
int smtpc_command(struct smtpc *c, struct smtpc_reply *r, const char *line);
/* EHLO; when the server does not know it (500 or 502, RFC 5321 §3.2) HELO, and no
 * extensions.  r is the reply that decided: 2xx means greeted. */
int smtpc_ehlo(struct smtpc *c, const char *helo, struct smtpc_reply *r);
/* STARTTLS (RFC 3207); on 220, checks the server sent nothing behind it (§4.2: it could
 * be an injection; MALFORMED) and handshakes; the extensions are forgotten, as every
 * byte read before.  0 with r->code != 220 when refused; -1 when TLS broke. */
int smtpc_starttls(struct smtpc *c, struct tls_ctx *ctx, const char *host, struct smtpc_reply *r);

/* Message data after a 354: the text is dot-stuffed (RFC 5321 §4.5.2) and buffered;
 * smtpc_data_end() adds a CRLF when the text does not end with one, then ".". */
int smtpc_data_begin(struct smtpc *c);
int smtpc_data_write(struct smtpc *c, const char *buf, size_t len);
int smtpc_data_end(struct smtpc *c);

/* CHUNKING (RFC 3030): queues "BDAT <size> LAST" (one chunk, the whole message); the
 * size octets follow with smtpc_raw_write(), exactly as they are (no dot-stuffing, no
 * CRLF added), then smtpc_flush().  The caller writes exactly size octets: the server
 * counts them to know where the next command starts. */
int smtpc_bdat_last(struct smtpc *c, uint64_t size);
int smtpc_raw_write(struct smtpc *c, const char *buf, size_t len);

/* QUIT; the reply does not matter.  Then close_notify when TLS is up. */
void smtpc_quit(struct smtpc *c);

#endif
