#include "base/ipaddr.h"

#include <arpa/inet.h>
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
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	u128 v = 0;

	if (memcmp(b, mapped, sizeof(mapped)) == 0) {
		out->family = AF_INET;
		out->v = ((u128)b[12] << 24) | ((u128)b[13] << 16) | ((u128)b[14] << 8) | b[15];
		return;
	}
	for (int i = 0; i < 16; i++)
		v = (v << 8) | b[i];
	out->family = AF_INET6;
	out->v = v;
}

static void
to_v6_bytes(u128 v, uint8_t b[16])
{
	for (int i = 15; i >= 0; i--) {
		b[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

int
ipaddr_parse(const char *s, size_t len, struct ipaddr *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	uint8_t b[16];
	bool colon = false;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == ':')
			colon = true;
		else if (!((c >= '0' && c <= '9') || c == '.' || (c >= 'a' && c <= 'f') ||
		           (c >= 'A' && c <= 'F')))
			return -1;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!colon) {
		struct in_addr in;
		/* inet_pton() takes only the four-part dotted decimal form; refuse leading
		 * zeros too, which other stacks read as octal. */
		for (size_t i = 0; i < len; i++)
			if (buf[i] == '0' && (i == 0 || buf[i - 1] == '.') && i + 1 < len &&
			    buf[i + 1] != '.')
				return -1;
		if (inet_pton(AF_INET, buf, &in) != 1)
			return -1;
		out->family = AF_INET;
		out->v = ntohl(in.s_addr);
		return 0;
	}
	if (inet_pton(AF_INET6, buf, b) != 1)
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
