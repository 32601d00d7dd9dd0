/*
 * dsn — delivery status notifications: the bounce (RFC 3464 multipart/report,
 * report-type=delivery-status) for recipients that failed for good, addressed to the
 * envelope sender and sent with the null sender <> so it can never bounce itself.  For a
 * message that came with SMTPUTF8 it takes RFC 6533's forms: message/global-delivery-status,
 * message/global-headers, "utf-8;" for a recipient address that is not ASCII, a UTF-8 text
 * part.
 */
#ifndef MXGATE_DSN_H
#define MXGATE_DSN_H

#include <stddef.h>
#include <time.h>

#include "queue/spool.h"

struct dsn_rcpt {
	const char *addr;
	int code;           /* the reply code that decided it (4xx for an expired message) */
	const char *text;   /* its text, enhanced status code first where the server gave one */
	const char *remote; /* the server that answered, or NULL */
};

/* Builds the whole message (CRLF lines).  headers/hlen: the original message's header
 * section (may be NULL).  Returns a malloc'ed text and its length, or NULL. */
char *dsn_build(const struct spool_entry *e, const struct dsn_rcpt *r, size_t n,
                const char *reporting_host, const char *headers, size_t hlen, time_t now,
                size_t *len);

/* The enhanced status code in text ("5.1.1 ..."), or one made from code's class ("4.0.0"
 * for a 4xx without one); the bounce's Status: field and the tracking log's dsn=. */
void dsn_status(int code, const char *text, char *out, size_t size);

#endif
