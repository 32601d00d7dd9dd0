/*
 * ipaddr_ref — the address parser as it was before it was written by hand, the oracle of
 * tests/unit/test_range.c and tests/fuzz/fuzz_range.c.
 */
#ifndef MXGATE_TEST_IPADDR_REF_H
#define MXGATE_TEST_IPADDR_REF_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/ipaddr.h"

/* The parser as it was before it was written by hand: inet_pton(), with leading zeros of
 * IPv4 refused.  The hand-written one must accept exactly the same texts, with the same
 * value. */
static inline int
ref_parse(const char *s, size_t len, struct ipaddr *out)
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
	out->v = 0;
	for (int i = 0; i < 16; i++)
		out->v = (out->v << 8) | b[i];
	out->family = AF_INET6;
	if (out->v >> 32 == 0xffff) {
		out->family = AF_INET;
		out->v &= 0xffffffffu;
	}
	return 0;
}

#endif
