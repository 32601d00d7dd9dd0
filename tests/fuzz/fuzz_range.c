/* libFuzzer target: the remote-range, address and endpoint parsers.
 * Invariants: a parsed range is ordered and inside its family; its canonical text parses
 * back to the same range; every CIDR of its cover lies inside it and they tile it; the
 * hand-written address parser accepts exactly what inet_pton() does (IPv4 leading zeros
 * refused), with the same value. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/range.h"

struct tile {
	const struct range *r;
	u128 next;
	int ok;
};

static int
tile_cb(const struct range *c, void *arg)
{
	struct tile *t = arg;

	if (c->lo != t->next || c->hi < c->lo || c->hi > t->r->hi || range_prefix_len(c) < 0)
		t->ok = 0;
	t->next = c->hi + 1;
	return 0;
}

/* inet_pton() with IPv4 leading zeros refused: the parser before it was hand-written */
static int
ref_parse(const char *s, size_t len, struct ipaddr *out)
{
	uint8_t b[16];

	if (len == 0 || len > INET6_ADDRSTRLEN || strlen(s) != len ||
	    strspn(s, "0123456789abcdefABCDEF.:") != len)
		return -1;
	if (!strchr(s, ':')) {
		struct in_addr in;
		for (size_t i = 0; i < len; i++)
			if (s[i] == '0' && (i == 0 || s[i - 1] == '.') && i + 1 < len &&
			    s[i + 1] != '.')
				return -1;
		if (inet_pton(AF_INET, s, &in) != 1)
			return -1;
		out->family = AF_INET;
		out->v = ntohl(in.s_addr);
		return 0;
	}
	if (inet_pton(AF_INET6, s, b) != 1)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[300], err[256], canon[128];
	struct range r, r2;
	struct endpoint ep;
	struct ipaddr a;
	unsigned flags;

	if (size >= sizeof(text))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	struct ipaddr ra;
	int got = ipaddr_parse(text, size, &a), want = ref_parse(text, size, &ra);
	if (got != want || (got == 0 && (a.family != ra.family || a.v != ra.v)))
		abort();
	(void)endpoint_parse(text, &ep, err, sizeof(err));
	if (range_parse(text, &r, &flags, err, sizeof(err)) != 0)
		return 0;
	if (r.lo > r.hi || r.hi > ipaddr_max(r.family))
		abort();
	range_format(&r, canon, sizeof(canon));
	if (range_parse(canon, &r2, NULL, err, sizeof(err)) != 0 || r2.lo != r.lo ||
	    r2.hi != r.hi || r2.family != r.family)
		abort();
	struct tile t = {.r = &r, .next = r.lo, .ok = 1};
	range_each_cidr(&r, tile_cb, &t);
	if (!t.ok || (r.hi != ipaddr_max(r.family) && t.next != r.hi + 1))
		abort();
	return 0;
}
