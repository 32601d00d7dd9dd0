#include "base/ipaddr.h"

#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

u128
ipaddr_max(int family)
{
	return family == AF_INET ? (u128)0xffffffffu : ~(u128)0;
}

int
ipaddr_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

static void
from_v6_bytes(const uint8_t b[16], struct ipaddr *out)
{
	uint64_t hi, lo;

	memcpy(&hi, b, 8);
	memcpy(&lo, b + 8, 8);
	hi = be64toh(hi);
	lo = be64toh(lo);
	if (hi == 0 && lo >> 32 == 0xffff) { /* ::ffff:a.b.c.d */
		out->family = AF_INET;
		out->v = lo & 0xffffffffu;
		return;
	}
	out->family = AF_INET6;
	out->v = (u128)hi << 64 | lo;
}

static void
to_v6_bytes(u128 v, uint8_t b[16])
{
	for (int i = 15; i >= 0; i--) {
		b[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

/* Hand-written for speed (a 1M-line ranges file is parsed at every reload), accepting
 * exactly what inet_pton() accepts, and for IPv4 refusing leading zeros as well, which
 * other stacks read as octal: tests/unit/test_range.c checks it against inet_pton(). */
static int
parse_v4(const char *s, const char *e, uint32_t *out)
{
	uint32_t v = 0;

	for (int octets = 1;; octets++) {
		unsigned o;

		if (s == e || *s < '0' || *s > '9')
			return -1;
		o = (unsigned)(*s++ - '0');
		if (o == 0 && s < e && *s >= '0' && *s <= '9')
			return -1;
		while (s < e && *s >= '0' && *s <= '9') {
			o = o * 10 + (unsigned)(*s++ - '0');
			if (o > 255)
				return -1;
		}
		v = v << 8 | o;
		if (octets == 4) {
			if (s != e)
				return -1;
			*out = v;
			return 0;
		}
		if (s == e || *s != '.')
			return -1;
		s++;
	}
}

/* hex digit values plus one; 0 for every other byte */
static const uint8_t hex1[256] = {
        ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
        ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
        ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
        ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16};

static int
hex_value(char c)
{
	return (int)hex1[(unsigned char)c] - 1;
}

/* RFC 4291 section 2.2 text forms, as glibc's inet_pton6() reads them: groups of at most
 * four hex digits, one "::" standing for at least one zero group, a dotted IPv4 tail. */
static int
parse_v6(const char *s, const char *e, uint8_t out[16])
{
	uint8_t b[16] = {0};
	const char *tok;
	unsigned val = 0, tp = 0, digits = 0;
	int gap = -1;

	if (*s == ':' && (++s == e || *s != ':'))
		return -1;
	tok = s;
	while (s < e) {
		char ch = *s++;
		int d = hex_value(ch);
		uint32_t v4;

		if (d >= 0) {
			if (digits == 4)
				return -1;
			val = val << 4 | (unsigned)d;
			digits++;
		} else if (ch == ':') {
			tok = s;
			if (digits == 0) {
				if (gap >= 0)
					return -1;
				gap = (int)tp;
				continue;
			}
			if (s == e || tp + 2 > 16)
				return -1;
			b[tp++] = (uint8_t)(val >> 8);
			b[tp++] = (uint8_t)val;
			digits = 0;
			val = 0;
		} else if (ch == '.' && tp + 4 <= 16 && parse_v4(tok, e, &v4) == 0) {
			b[tp++] = (uint8_t)(v4 >> 24);
			b[tp++] = (uint8_t)(v4 >> 16);
			b[tp++] = (uint8_t)(v4 >> 8);
			b[tp++] = (uint8_t)v4;
			digits = 0;
			break;
		} else {
			return -1;
		}
	}
	if (digits > 0) {
		if (tp + 2 > 16)
			return -1;
		b[tp++] = (uint8_t)(val >> 8);
		b[tp++] = (uint8_t)val;
	}
	if (gap >= 0) {
		unsigned n = tp - (unsigned)gap;
		if (tp == 16)
			return -1; /* "::" would stand for no group at all */
		memmove(b + 16 - n, b + gap, n);
		memset(b + gap, 0, 16 - n - (unsigned)gap);
		tp = 16;
	}
	if (tp != 16)
		return -1;
	memcpy(out, b, 16);
	return 0;
}

int
ipaddr_parse(const char *s, size_t len, struct ipaddr *out)
{
	const char *e = s + len;
	uint8_t b[16];
	uint32_t v4;

	if (len == 0 || len > INET6_ADDRSTRLEN)
		return -1;
	/* An IPv6 address has a ':' within its first five bytes (a group is at most four
	 * digits) and a dotted quad has none, so those bytes say which reader can succeed,
	 * sooner than a search of the whole text. */
	for (size_t i = 0; i < len && i < 5; i++)
		if (s[i] == ':')
			goto v6;
	if (parse_v4(s, e, &v4) < 0)
		return -1;
	out->family = AF_INET;
	out->v = v4;
	return 0;
v6:
	if (parse_v6(s, e, b) < 0)
		return -1;
	from_v6_bytes(b, out);
	return 0;
}

size_t
ipaddr_format(const struct ipaddr *a, char *buf, size_t size)
{
	char tmp[INET6_ADDRSTRLEN];

	if (a->family == AF_INET) {
		struct in_addr in = {.s_addr = htonl((uint32_t)a->v)};
		inet_ntop(AF_INET, &in, tmp, sizeof(tmp));
	} else {
		uint8_t b[16];
		to_v6_bytes(a->v, b);
		inet_ntop(AF_INET6, b, tmp, sizeof(tmp));
	}
	return (size_t)snprintf(buf, size, "%s", tmp);
}

int
ipaddr_from_sockaddr(const struct sockaddr *sa, struct ipaddr *out, uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
		out->family = AF_INET;
		out->v = ntohl(sin->sin_addr.s_addr);
		if (port)
			*port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		from_v6_bytes(sin6->sin6_addr.s6_addr, out);
		if (port)
			*port = ntohs(sin6->sin6_port);
		return 0;
	}
	return -1;
}

socklen_t
endpoint_to_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->addr.family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(ep->port);
		sin->sin_addr.s_addr = htonl((uint32_t)ep->addr.v);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(ep->port);
	to_v6_bytes(ep->addr.v, sin6->sin6_addr.s6_addr);
	return sizeof(*sin6);
}

bool
ipaddr_equal(const struct ipaddr *a, const struct ipaddr *b)
{
	return a->family == b->family && a->v == b->v;
}

bool
ipaddr_is_any(const struct ipaddr *a)
{
	return a->v == 0;
}

int
endpoint_parse(const char *s, struct endpoint *out, char *err, size_t errlen)
{
	const char *host, *colon, *p;
	size_t hostlen;
	unsigned long port = 0;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen, "an IPv6 endpoint is written [ADDRESS]:PORT");
			return -1;
		}
		host = s + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			snprintf(err, errlen,
			         "missing :PORT (write ADDRESS:PORT, e.g. 0.0.0.0:25)");
			return -1;
		}
		host = s;
		hostlen = (size_t)(colon - s);
		if (memchr(host, ':', hostlen)) {
			snprintf(err, errlen, "an IPv6 endpoint is written [ADDRESS]:PORT");
			return -1;
		}
	}
	if (ipaddr_parse(host, hostlen, &out->addr) < 0) {
		snprintf(err, errlen, "'%.*s' is not an IP address", (int)hostlen, host);
		return -1;
	}
	if (s[0] == '[' && out->addr.family != AF_INET6) {
		snprintf(err, errlen, "'%.*s' in brackets must be an IPv6 address", (int)hostlen,
		         host);
		return -1;
	}
	p = colon + 1;
	if (*p == '\0') {
		snprintf(err, errlen, "missing port number after ':'");
		return -1;
	}
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || port > 65535) {
			snprintf(err, errlen, "port '%s' is not a number from 1 to 65535",
			         colon + 1);
			return -1;
		}
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port == 0 || port > 65535) {
		snprintf(err, errlen, "port '%s' is not a number from 1 to 65535", colon + 1);
		return -1;
	}
	out->port = (uint16_t)port;
	return 0;
}

size_t
endpoint_format(const struct endpoint *ep, char *buf, size_t size)
{
	char a[IPADDR_STRLEN];

	ipaddr_format(&ep->addr, a, sizeof(a));
	if (ep->addr.family == AF_INET6)
		return (size_t)snprintf(buf, size, "[%s]:%u", a, ep->port);
	return (size_t)snprintf(buf, size, "%s:%u", a, ep->port);
}

bool
ipaddr_is_local_scope(const struct ipaddr *a)
{
	unsigned top10 = (unsigned)(a->v >> 118);

	return a->family == AF_INET6 && (top10 == 0x3fa || top10 == 0x3fb);
}
