/*
 * mailaddr — RFC 5321 §4.1.2 reverse-path and forward-path syntax, strictly.
 *
 *   Path = "<" [ A-d-l ":" ] Mailbox ">"        (source routes are parsed and dropped,
 *   Mailbox = Local-part "@" ( Domain / address-literal )   as §3.6.1 recommends)
 *   Local-part = Dot-string / Quoted-string
 *
 * With utf8 (the client gave SMTPUTF8, RFC 6531) non-ASCII UTF-8 may appear in atoms and
 * domain labels; without it, it is an error of its own so the caller can answer 553 5.6.7.
 * Limits: local part 64 octets, domain 255, whole path 256 (§4.5.3.1).
 * Nothing allocates; the result lives in the struct.
 */
#ifndef MXGATE_MAILADDR_H
#define MXGATE_MAILADDR_H

#include <stdbool.h>
#include <stddef.h>

#define MAILADDR_LOCAL_MAX  64
#define MAILADDR_DOMAIN_MAX 255

struct mailaddr {
	char local[MAILADDR_LOCAL_MAX + 1];   /* dequoted; "" for the null path <> */
	char domain[MAILADDR_DOMAIN_MAX + 1]; /* lower case; "[...]" for an address literal */
	bool null;                            /* the path was <> */
	bool quoted;                          /* the local part was a quoted string */
	bool literal;                         /* the domain is an address literal */
	bool utf8;                            /* non-ASCII characters appear */
	bool routed;                          /* a source route was given (and dropped) */
};

enum mailaddr_err {
	MAILADDR_OK,
	MAILADDR_SYNTAX,   /* not a path */
	MAILADDR_TOO_LONG, /* over a §4.5.3.1 limit */
	MAILADDR_NEED_UTF8 /* non-ASCII without SMTPUTF8 */
};

/* Parses the path at s[0..len), which must start with '<'.  On MAILADDR_OK, *used is the
 * number of bytes up to and including '>'.  allow_null: "<>" is accepted (MAIL FROM). */
enum mailaddr_err mailaddr_parse(const char *s, size_t len, bool allow_null, bool utf8,
                                 struct mailaddr *out, size_t *used);

/* True if the local part holds a routing character (%, ! or @), which some servers
 * behind a gateway would act on. */
bool mailaddr_has_routing(const struct mailaddr *a);

/* Writes local@domain, quoting the local part again where it needs it.  Returns the
 * length (or the length it would need). */
size_t mailaddr_format(const struct mailaddr *a, char *buf, size_t size);

#endif
