#include "base/range.h"

#include <stdio.h>
#include <string.h>

static u128
prefix_mask(int family, int len)
{
	int bits = ipaddr_bits(family);

	if (len == 0)
		return 0;
	return (ipaddr_max(family) >> (bits - len)) << (bits - len);
}

/* Returns the prefix length of a contiguous mask, or -1. */
static int
mask_len(int family, u128 mask)
{
	int bits = ipaddr_bits(family);
	int len = 0;

	while (len < bits && (mask >> (bits - 1 - len)) & 1)
		len++;
	return prefix_mask(family, len) == mask ? len : -1;
}

static int
parse_addr(const char *s, size_t len, struct ipaddr *a, char *err, size_t errlen)
{
	if (memchr(s, '%', len)) {
		snprintf(err, errlen, "zone index in '%.*s' is not supported in ranges", (int)len,
		         s);
		return -1;
	}
	if (ipaddr_parse(s, len, a) < 0) {
		snprintf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address", (int)len, s);
		return -1;
	}
	return 0;
}

/* The block of plen bits around a: shifts of the family's own width (a million ranges
 * a reload come through here). */
static int
set_masked(const struct ipaddr *a, unsigned plen, struct range *out, unsigned *flags)
{
	out->family = a->family;
	if (a->family == AF_INET) {
		uint32_t v = (uint32_t)a->v, m = plen ? ~0u << (32 - plen) : 0;
		out->lo = v & m;
		out->hi = (v & m) | ~m;
	} else {
		u128 m = plen ? ~(u128)0 << (128 - plen) : 0;
		out->lo = a->v & m;
		out->hi = (a->v & m) | ~m;
	}
	if (out->lo != a->v)
		*flags |= RANGE_HOST_BITS;
	return 0;
}

static int
parse_mask(const struct ipaddr *a, const char *ms, size_t mlen, struct range *out, unsigned *flags,
           char *err, size_t errlen)
{
	struct ipaddr m;
	int plen;

	if (parse_addr(ms, mlen, &m, err, errlen) < 0)
		return -1;
	if (m.family != a->family) {
		snprintf(err, errlen, "mask '%.*s' is not of the same family as the address",
		         (int)mlen, ms);
		return -1;
	}
	plen = mask_len(m.family, m.v);
	if (plen < 0) {
		snprintf(err, errlen,
		         "mask '%.*s' is not contiguous (it must be ones then zeros, like "
		         "255.255.255.0)",
		         (int)mlen, ms);
		return -1;
	}
	return set_masked(a, (unsigned)plen, out, flags);
}

int
range_parse(const char *text, struct range *out, unsigned *flagsp, char *err, size_t errlen)
{
	const char *s = text, *e, *p;
	struct ipaddr a, b;
	unsigned flags = 0;
	size_t len;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	len = (size_t)(e - s);
	if (len == 0) {
		snprintf(err, errlen, "empty range");
		return -1;
	}

	if ((p = memchr(s, '(', len)) != NULL) {
		/* address(mask) */
		if (e[-1] != ')' || p == s) {
			snprintf(err, errlen,
			         "'%.*s': write ADDRESS(MASK), e.g. 10.0.0.0(255.0.0.0)", (int)len,
			         s);
			return -1;
		}
		if (parse_addr(s, (size_t)(p - s), &a, err, errlen) < 0 ||
		    parse_mask(&a, p + 1, (size_t)(e - 1 - (p + 1)), out, &flags, err, errlen) < 0)
			return -1;
	} else if ((p = memchr(s, '/', len)) != NULL) {
		/* CIDR */
		const char *q;
		int plen = 0;

		if (parse_addr(s, (size_t)(p - s), &a, err, errlen) < 0)
			return -1;
		if (p + 1 == e || e - (p + 1) > 3) {
			snprintf(err, errlen, "'%.*s': prefix length after '/' must be a number",
			         (int)len, s);
			return -1;
		}
		for (q = p + 1; q < e; q++) {
			if (*q < '0' || *q > '9') {
				snprintf(err, errlen,
				         "'%.*s': prefix length after '/' must be a number",
				         (int)len, s);
				return -1;
			}
			plen = plen * 10 + (*q - '0');
		}
		if (plen > ipaddr_bits(a.family)) {
			snprintf(err, errlen, "'%.*s': prefix length %d is over %d for %s",
			         (int)len, s, plen, ipaddr_bits(a.family),
			         a.family == AF_INET ? "IPv4" : "IPv6");
			return -1;
		}
		set_masked(&a, (unsigned)plen, out, &flags);
	} else if ((p = memchr(s, '-', len)) != NULL) {
		/* start-end, blanks allowed around the dash */
		const char *ae = p, *bs = p + 1;

		while (ae > s && (ae[-1] == ' ' || ae[-1] == '\t'))
			ae--;
		while (bs < e && (*bs == ' ' || *bs == '\t'))
			bs++;
		if (ae == s || bs == e) {
			snprintf(err, errlen, "'%.*s': write START-END, e.g. 10.0.0.1-10.0.0.99",
			         (int)len, s);
			return -1;
		}
		if (parse_addr(s, (size_t)(ae - s), &a, err, errlen) < 0 ||
		    parse_addr(bs, (size_t)(e - bs), &b, err, errlen) < 0)
			return -1;
		if (a.family != b.family) {
			snprintf(err, errlen, "'%.*s': start and end are of different families",
			         (int)len, s);
			return -1;
		}
		if (a.v > b.v) {
			snprintf(err, errlen, "'%.*s': start is after end", (int)len, s);
			return -1;
		}
		out->family = a.family;
		out->lo = a.v;
		out->hi = b.v;
	} else if ((p = memchr(s, ' ', len)) != NULL || (p = memchr(s, '\t', len)) != NULL) {
		/* Exchange 2003 "subnet address" + "subnet mask" */
		const char *ms = p;

		while (ms < e && (*ms == ' ' || *ms == '\t'))
			ms++;
		if (parse_addr(s, (size_t)(p - s), &a, err, errlen) < 0)
			return -1;
		if (a.family != AF_INET) {
			snprintf(err, errlen,
			         "'%.*s': a subnet and mask pair is IPv4 only; write IPv6 as "
			         "ADDRESS/PREFIX",
			         (int)len, s);
			return -1;
		}
		if (parse_mask(&a, ms, (size_t)(e - ms), out, &flags, err, errlen) < 0)
			return -1;
	} else {
		if (parse_addr(s, len, &a, err, errlen) < 0)
			return -1;
		out->family = a.family;
		out->lo = out->hi = a.v;
		if (a.v == 0)
			flags |= RANGE_ZERO_SINGLE;
	}
	if (flagsp)
		*flagsp = flags;
	return 0;
}

bool
range_parse_cidr(const char *s, size_t len, struct range *out, unsigned *flags)
{
	size_t slash = len;
	unsigned plen = 0;
	struct ipaddr a;

	/* one to three digits after the '/', as range_parse() allows */
	while (slash > 0 && len - slash < 3 && s[slash - 1] >= '0' && s[slash - 1] <= '9')
		slash--;
	if (slash == len || slash < 2 || s[slash - 1] != '/')
		return false;
	for (size_t i = slash; i < len; i++)
		plen = plen * 10 + (unsigned)(s[i] - '0');
	/* an address with a '%', a blank or a '(' does not parse: range_parse() explains */
	if (ipaddr_parse(s, slash - 1, &a) < 0)
		return false;
	if (plen > (unsigned)ipaddr_bits(a.family))
		return false;
	*flags = 0;
	set_masked(&a, plen, out, flags);
	return true;
}

int
range_prefix_len(const struct range *r)
{
	u128 span = r->hi - r->lo;
	int bits = ipaddr_bits(r->family), host = 0;

	if (r->lo == 0 && r->hi == ipaddr_max(r->family))
		return 0;
	/* span+1 must be a power of two and lo aligned to it */
	if ((span & (span + 1)) != 0)
		return -1;
	while (host < bits && ((span >> host) & 1))
		host++;
	if (host < bits && (r->lo & span) != 0)
		return -1;
	return bits - host;
}

size_t
range_format(const struct range *r, char *buf, size_t size)
{
	struct ipaddr lo = {.family = r->family, .v = r->lo};
	struct ipaddr hi = {.family = r->family, .v = r->hi};
	char a[IPADDR_STRLEN], b[IPADDR_STRLEN];
	int plen = range_prefix_len(r);

	ipaddr_format(&lo, a, sizeof(a));
	if (plen >= 0)
		return (size_t)snprintf(buf, size, "%s/%d", a, plen);
	ipaddr_format(&hi, b, sizeof(b));
	return (size_t)snprintf(buf, size, "%s-%s", a, b);
}

bool
range_contains(const struct range *r, const struct ipaddr *a)
{
	return a->family == r->family && a->v >= r->lo && a->v <= r->hi;
}

bool
range_is_all(const struct range *r)
{
	return r->lo == 0 && r->hi == ipaddr_max(r->family);
}

int
range_each_cidr(const struct range *r, int (*cb)(const struct range *cidr, void *arg), void *arg)
{
	int bits = ipaddr_bits(r->family);
	u128 lo = r->lo;

	for (;;) {
		struct range c = {.family = r->family, .lo = lo};
		int host = 0, rc;

		/* the largest aligned block starting at lo that stays within hi */
		while (host < bits) {
			u128 span = ((u128)2 << host) - 1;
			if ((lo & span) != 0 || lo + span > r->hi || lo + span < lo)
				break;
			host++;
		}
		c.hi = host == bits ? ipaddr_max(r->family) : lo + ((((u128)1) << host) - 1);
		if ((rc = cb(&c, arg)) != 0)
			return rc;
		if (c.hi >= r->hi)
			return 0;
		lo = c.hi + 1;
	}
}
