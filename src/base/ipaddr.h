/*
 * ipaddr — IPv4 and IPv6 addresses and IP:PORT endpoints as plain values.
 *
 * An address is held as a 128-bit unsigned integer in host order plus its family, so
 * ranges compare and subtract with ordinary arithmetic.  IPv4 addresses use the low 32
 * bits.  IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) are IPv4: every
 * constructor here turns them into AF_INET, so a mapped client matches IPv4 ranges.
 *
 * Nothing here allocates.  Parsers are strict: no zone ids, no leading/trailing blanks, no
 * shortened IPv4 forms ("10.1"), no octal.
 */
#ifndef MXGATE_IPADDR_H
#define MXGATE_IPADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

__extension__ typedef unsigned __int128 u128;

struct ipaddr {
	u128 v;         /* the address as an integer; IPv4 in the low 32 bits */
	uint8_t family; /* AF_INET or AF_INET6 */
};

struct endpoint {
	struct ipaddr addr;
	uint16_t port;
};

/* Longest text ipaddr_format() and endpoint_format() write, with the NUL. */
#define IPADDR_STRLEN   46
#define ENDPOINT_STRLEN 56

/* The largest value of an address of this family: 2^32-1 or 2^128-1. */
u128 ipaddr_max(int family);

/* Family width in bits: 32 or 128. */
int ipaddr_bits(int family);

/* Parses s[0..len) as one IPv4 or IPv6 address.  Returns 0, or -1 if it is not one. */
int ipaddr_parse(const char *s, size_t len, struct ipaddr *out);

/* Writes the canonical text form (RFC 5952 for IPv6).  Returns the length written. */
size_t ipaddr_format(const struct ipaddr *a, char *buf, size_t size);

/* Fills out from a sockaddr_in/sockaddr_in6 (mapped IPv6 becomes IPv4); port may be NULL.
 * Returns 0, or -1 for another address family. */
int ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out, uint16_t *port);

/* Builds a sockaddr for connect()/bind(); returns its length. */
socklen_t endpoint_to_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss);

bool ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b);

/* True for 0.0.0.0 and :: — the family's wildcard in a binding. */
bool ipaddr_is_any(const struct ipaddr *a);

/* Parses "IPv4:PORT" or "[IPv6]:PORT" (PORT 1..65535).  Returns 0, or -1 with a reason
 * in err. */
int endpoint_parse(const char *s, struct endpoint *out, char *err, size_t errlen);

/* Writes "a.b.c.d:port" or "[v6]:port".  Returns the length written. */
size_t endpoint_format(const struct endpoint *ep, char *buf, size_t size);

/* True for IPv6 link-local (fe80::/10) and site-local (fec0::/10) addresses, which
 * Exchange exempts from tarpitting and the per-source connection limits: they cannot come
 * from the internet. */
bool ipaddr_is_local_scope(const struct ipaddr *a);

#endif
