/* libFuzzer target: the remote-range, address and endpoint parsers.
 * Invariants: a parsed range is ordered and inside its family; its canonical text parses
 * back to the same range; every CIDR of its cover lies inside it and they tile it; the
 * hand-written address parser accepts exactly what inet_pton() does (IPv4 leading zeros
 * refused), with the same value; the one-pass CIDR reader reads what it takes as
 * range_parse() does. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/ipaddr_ref.h"
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
	struct range fast;
	unsigned fast_flags;
	bool took = range_parse_cidr(text, size, &fast, &fast_flags);
	if (range_parse(text, &r, &flags, err, sizeof(err)) != 0) {
		if (took)
			abort();
		return 0;
	}
	if (took &&
	    (fast.family != r.family || fast.lo != r.lo || fast.hi != r.hi || fast_flags != flags))
		abort();
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
