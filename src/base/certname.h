/*
 * certname — does a certificate's DNS name prove the name a connector expects?
 *
 * The expected name is the connector's tls-sender-certificate-name, written as Exchange
 * Online's TlsSenderCertificateName: a DNS name ("mail.example.com") or a wildcard
 * ("*.example.com") that stands for exactly one more label on the left ("a.example.com",
 * not "example.com" nor "a.b.example.com").  The presented names are a certificate's
 * subjectAltName dNSNames, or its subject CN when it has no dNSName (RFC 6125 §6.4.4).
 *
 * Matching follows RFC 6125 §6.4: ASCII case is ignored, one trailing dot is ignored on
 * either side, and a presented wildcard counts only as the whole left-most label
 * ("*.example.com"), with at least two labels after it; "f*.example.com",
 * "a.*.example.com" and "*.com" match nothing.  A presented name with bytes outside
 * letters, digits, '-', '.' (and the one '*') matches nothing: a certificate is client
 * data.  Internationalised names are compared in their A-label (xn--) form.  Pure
 * functions; no allocation.
 */
#ifndef MXGATE_CERTNAME_H
#define MXGATE_CERTNAME_H

#include <stdbool.h>
#include <stddef.h>

/* Longest name compared (RFC 1035's 253 octets, and the trailing dot). */
#define CERTNAME_MAX 254

/* Whether expected may be configured: a DNS name of two labels or more, or "*." and such
 * a name.  NULL or false with the reason (a sentence) in *why. */
bool certname_valid(const char *expected, const char **why);

/* Whether the presented name (len bytes, not NUL-terminated: a certificate's IA5String,
 * which may hold a NUL) proves expected (a name certname_valid() accepts). */
bool certname_match(const char *expected, const char *presented, size_t len);

/* Copies a presented name for a log line or an SMTP reply: every byte that may not
 * appear in a DNS name (control bytes, spaces, CR, LF, non-ASCII) becomes '?', and it
 * is cut to fit size (with "..." when cut).  Returns out. */
char *certname_printable(const char *presented, size_t len, char *out, size_t size);

#endif
