/*
 * range — one remote IP range as Exchange writes it, parsed into [lo, hi].
 *
 * Accepted forms (Exchange 2013+ RemoteIPRanges, 2007/2010 lists, 2003 connection control):
 *   192.0.2.7            2001:db8::7             a single address
 *   192.0.2.0/24         2001:db8::/48           CIDR, prefix 0..32 or 0..128
 *   192.0.2.0-192.0.2.99 (blanks around '-' allowed)  an inclusive start-end range
 *   192.0.2.0(255.255.255.0)  2001:db8::(ffff:ffff::)  address with a mask in parentheses
 *   192.0.2.0 255.255.255.0                       Exchange 2003 "subnet address + mask"
 * Masks must be contiguous.  A CIDR or mask with host bits set is accepted (as Exchange
 * does) and flagged so the caller can warn.  Zone ids (%eth0) are refused: a range means
 * the same on every interface.
 */
#ifndef MXGATE_RANGE_H
#define MXGATE_RANGE_H

#include "base/ipaddr.h"

struct range {
	u128 lo, hi; /* inclusive */
	uint8_t family;
};

enum range_flag {
	RANGE_HOST_BITS = 1 << 0,   /* CIDR or mask form had bits set below the mask */
	RANGE_ZERO_SINGLE = 1 << 1, /* the single address 0.0.0.0 or ::, likely meant as "all" */
};

/* Parses text (surrounding blanks ignored).  Returns 0 and sets *out and *flags (may be
 * NULL), or -1 with a sentence saying why in err (errlen >= 128 recommended). */
int range_parse(const char *text, struct range *out, unsigned *flags, char *err, size_t errlen);

/* The form a large ranges file holds line after line, "ADDRESS/PREFIX" and nothing else
 * (no blank, no comment), read in one pass without range_parse()'s search for the other
 * forms.  Returns true with *out and *flags set as range_parse() sets them, or false when
 * s[0..len) is anything else: range_parse() then reads it, or says what is wrong. */
bool range_parse_cidr(const char *s, size_t len, struct range *out, unsigned *flags);

/* Writes the range canonically: "a.b.c.d/n" when it is a CIDR block, else "lo-hi". */
size_t range_format(const struct range *r, char *buf, size_t size);

bool range_contains(const struct range *r, const struct ipaddr *a);

/* Number of addresses minus one (hi - lo): the size key for most-specific matching. */
static inline u128
range_span(const struct range *r)
{
	return r->hi - r->lo;
}

/* True if r covers the whole of its family (0.0.0.0/0 or ::/0). */
bool range_is_all(const struct range *r);

/* If r is one CIDR block, returns its prefix length; else -1. */
int range_prefix_len(const struct range *r);

/* Calls cb for each CIDR block of the minimal cover of r, in address order (for
 * firewalls that take only CIDR).  Stops and returns cb's value if it is non-zero. */
int range_each_cidr(const struct range *r, int (*cb)(const struct range *cidr, void *arg),
                    void *arg);

#endif
