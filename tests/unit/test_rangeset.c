/* Unit tests: the compiled most-specific-match table and its conflict checks, including a
 * randomized comparison against a brute-force reference (fixed seed, printed on failure). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "allocfail.h"
#include "base/rangeset.h"

static struct rangeset_entry
ent(const char *text, uint16_t owner, uint8_t prio)
{
	struct rangeset_entry e = {.owner = owner, .prio = prio};
	char err[256];

	cr_assert_eq(range_parse(text, &e.r, NULL, err, sizeof(err)), 0, "%s: %s", text, err);
	return e;
}

static unsigned
look(const struct rangeset *rs, const char *addr)
{
	struct ipaddr a;

	cr_assert_eq(ipaddr_parse(addr, strlen(addr), &a), 0, "%s", addr);
	return rangeset_lookup(rs, &a);
}

struct seen {
	int partial, identical;
	size_t a[16], b[16];
	int n;
};

static void
record_cb(enum rangeset_conflict kind, size_t a, size_t b, void *arg)
{
	struct seen *s = arg;

	if (kind == RANGESET_PARTIAL)
		s->partial++;
	else
		s->identical++;
	if (s->n < 16) {
		s->a[s->n] = a;
		s->b[s->n] = b;
		s->n++;
	}
}

/* Exchange's documented example: three connectors on one binding. */
Test(rangeset, exchange_documented_example)
{
	struct rangeset_entry e[] = {
	        ent("0.0.0.0-255.255.255.255", 0, 0),
	        ent("192.168.1.0-192.168.1.255", 1, 0),
	        ent("192.168.1.75", 2, 0),
	};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, 3, record_cb, &s);

	cr_assert_not_null(rs);
	cr_expect_eq(s.partial + s.identical, 0);
	cr_expect_eq(look(rs, "192.168.1.75"), 2);
	cr_expect_eq(look(rs, "192.168.1.100"), 1);
	cr_expect_eq(look(rs, "10.0.0.1"), 0);
	cr_expect_eq(look(rs, "192.168.1.74"), 1);
	cr_expect_eq(look(rs, "192.168.1.76"), 1);
	cr_expect_eq(look(rs, "192.168.0.255"), 0);
	cr_expect_eq(look(rs, "192.168.2.0"), 0);
	cr_expect_eq(look(rs, "255.255.255.255"), 0);
	cr_expect_eq(look(rs, "0.0.0.0"), 0);
	/* no IPv6 range was given */
	cr_expect_eq(look(rs, "2001:db8::1"), RANGESET_NONE);
	/* a mapped client is IPv4 */
	cr_expect_eq(look(rs, "::ffff:192.168.1.75"), 2);
	rangeset_free(rs);
}

Test(rangeset, empty_and_none)
{
	struct rangeset *rs = rangeset_build(NULL, 0, NULL, NULL);

	cr_assert_not_null(rs);
	cr_expect_eq(look(rs, "1.2.3.4"), RANGESET_NONE);
	cr_expect_eq(look(rs, "::1"), RANGESET_NONE);
	rangeset_free(rs);
	rangeset_free(NULL);
}

Test(rangeset, ipv6_and_edges_of_the_space)
{
	struct rangeset_entry e[] = {
	        ent("::/0", 0, 0),
	        ent("2001:db8::/32", 1, 0),
	        ent("2001:db8:1::/48", 2, 0),
	        ent("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", 3, 0),
	        ent("::/127", 4, 0),
	};
	struct rangeset *rs = rangeset_build(e, 5, NULL, NULL);

	cr_expect_eq(look(rs, "2001:db8:1::5"), 2);
	cr_expect_eq(look(rs, "2001:db8:2::5"), 1);
	cr_expect_eq(look(rs, "2001:db9::"), 0);
	cr_expect_eq(look(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 3);
	cr_expect_eq(look(rs, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff"), 0);
	cr_expect_eq(look(rs, "::1"), 4);
	cr_expect_eq(look(rs, "::2"), 0);
	cr_expect_eq(look(rs, "10.0.0.1"), RANGESET_NONE);
	rangeset_free(rs);
}

Test(rangeset, tie_goes_to_the_lower_priority)
{
	struct rangeset_entry e[] = {
	        ent("10.0.0.0/8", 0, 1), /* wildcard binding */
	        ent("10.0.0.0/8", 1, 0), /* exact binding */
	};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, 2, record_cb, &s);

	cr_expect_eq(s.partial + s.identical, 0);
	cr_expect_eq(look(rs, "10.1.2.3"), 1);
	rangeset_free(rs);
}

Test(rangeset, identical_ranges_with_equal_priority_conflict)
{
	struct rangeset_entry e[] = {ent("10.0.0.0/8", 0, 0), ent("10.0.0.0-10.255.255.255", 1, 0)};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, 2, record_cb, &s);

	cr_expect_eq(s.identical, 1);
	cr_expect_eq(s.partial, 0);
	rangeset_free(rs);
}

Test(rangeset, partial_overlaps_between_owners_conflict)
{
	struct rangeset_entry e[] = {
	        ent("10.0.0.0/16", 0, 0), ent("10.0.128.0-10.1.0.255", 1, 0),
	        ent("10.0.5.0/24", 1, 0), /* nested: fine */
	};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, 3, record_cb, &s);

	cr_expect_eq(s.partial, 1);
	cr_expect_eq(s.identical, 0);
	cr_expect((s.a[0] == 0 && s.b[0] == 1) || (s.a[0] == 1 && s.b[0] == 0));
	rangeset_free(rs);
}

Test(rangeset, overlaps_within_one_owner_are_fine)
{
	struct rangeset_entry e[] = {
	        ent("10.0.0.0-10.0.0.100", 0, 0),
	        ent("10.0.0.50-10.0.0.200", 0, 0),
	        ent("10.0.0.60-10.0.0.70", 1, 0),
	};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, 3, record_cb, &s);

	cr_expect_eq(s.partial + s.identical, 0);
	cr_expect_eq(look(rs, "10.0.0.65"), 1);
	cr_expect_eq(look(rs, "10.0.0.150"), 0);
	cr_expect_eq(look(rs, "10.0.0.201"), RANGESET_NONE);
	rangeset_free(rs);
}

/* ---- randomized comparison against a brute-force reference -------------------------- */

static uint64_t rng_state;

static uint64_t
rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static u128
rand_addr(int family, u128 base, unsigned spread_bits)
{
	u128 r = ((u128)rng() << 64) | rng();
	u128 m = spread_bits >= 128 ? ~(u128)0 : (((u128)1 << spread_bits) - 1);
	u128 v = base + (r & m);
	return v & ipaddr_max(family);
}

static unsigned
brute_lookup(const struct rangeset_entry *e, size_t n, const struct ipaddr *a)
{
	long best = -1;

	for (size_t i = 0; i < n; i++) {
		if (!range_contains(&e[i].r, a))
			continue;
		if (best < 0)
			best = (long)i;
		else {
			const struct rangeset_entry *x = &e[i], *y = &e[best];
			u128 sx = range_span(&x->r), sy = range_span(&y->r);
			if (sx < sy || (sx == sy && (x->prio < y->prio ||
			                             (x->prio == y->prio && x->owner < y->owner))))
				best = (long)i;
		}
	}
	return best < 0 ? RANGESET_NONE : e[best].owner;
}

static bool
partial(const struct range *a, const struct range *b)
{
	bool overlap = a->family == b->family && a->lo <= b->hi && b->lo <= a->hi;
	bool nested = (a->lo <= b->lo && b->hi <= a->hi) || (b->lo <= a->lo && a->hi <= b->hi);
	return overlap && !nested;
}

static bool
brute_identical(const struct rangeset_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int best = 256;
		for (size_t j = 0; j < n; j++)
			if (e[j].r.family == e[i].r.family && e[j].r.lo == e[i].r.lo &&
			    e[j].r.hi == e[i].r.hi && e[j].prio < best)
				best = e[j].prio;
		for (size_t j = 0; j < n; j++)
			if (e[i].prio == best && e[j].prio == best && e[i].owner != e[j].owner &&
			    e[j].r.family == e[i].r.family && e[j].r.lo == e[i].r.lo &&
			    e[j].r.hi == e[i].r.hi)
				return true;
	}
	return false;
}

static void
check_one(uint64_t seed)
{
	struct rangeset_entry e[48];
	size_t n;
	struct seen s = {0};
	bool want_partial = false;
	int family;
	u128 base;
	unsigned spread;

	rng_state = seed;
	n = 1 + rng() % 40;
	family = (rng() & 1) ? AF_INET : AF_INET6;
	/* small spaces provoke overlaps; bases near 0 and near the top test the edges */
	switch (rng() % 4) {
	case 0:
		base = 0;
		break;
	case 1:
		base = ipaddr_max(family) - 511;
		break;
	default:
		base = rand_addr(family, 0, 128) & ~(u128)0xffff;
		break;
	}
	spread = (rng() % 3 == 0) ? (unsigned)ipaddr_bits(family) : 9;
	uint16_t owners = (uint16_t)(1 + rng() % 4);
	for (size_t i = 0; i < n; i++) {
		u128 a = rand_addr(family, base, spread), b;
		switch (rng() % 3) {
		case 0: /* CIDR-aligned block */ {
			int plen = (int)(rng() % (unsigned)(ipaddr_bits(family) + 1));
			if (spread < 128 && plen < ipaddr_bits(family) - (int)spread)
				plen = ipaddr_bits(family) - (int)spread;
			unsigned host = (unsigned)(ipaddr_bits(family) - plen);
			u128 m = host >= 128 ? ~(u128)0 : (((u128)1 << host) - 1);
			a &= ~m;
			b = a | (m & ipaddr_max(family));
			break;
		}
		case 1:
			b = a;
			break;
		default:
			b = rand_addr(family, base, spread);
			if (b < a) {
				u128 t = a;
				a = b;
				b = t;
			}
		}
		e[i] = (struct rangeset_entry){.r = {.family = (uint8_t)family, .lo = a, .hi = b},
		                               .owner = (uint16_t)(rng() % owners),
		                               .prio = (uint8_t)(rng() % 2)};
		/* now and then an exact duplicate of an earlier range */
		if (i > 0 && rng() % 8 == 0)
			e[i].r = e[rng() % i].r;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			if (e[i].owner != e[j].owner && partial(&e[i].r, &e[j].r))
				want_partial = true;

	struct rangeset *rs = rangeset_build(e, n, record_cb, &s);
	cr_assert_not_null(rs);
	cr_assert_eq(s.partial > 0, want_partial, "seed %llu: partial conflict %d, expected %d",
	             (unsigned long long)seed, s.partial, want_partial);
	cr_assert_eq(s.identical > 0, brute_identical(e, n),
	             "seed %llu: identical conflict %d, expected %d", (unsigned long long)seed,
	             s.identical, brute_identical(e, n));
	for (int k = 0; k < s.n; k++) {
		const struct rangeset_entry *x = &e[s.a[k]], *y = &e[s.b[k]];
		cr_assert_neq(x->owner, y->owner, "seed %llu: conflict within one owner",
		              (unsigned long long)seed);
	}
	/* every boundary, its neighbours, and random points */
	for (size_t i = 0; i < n; i++) {
		u128 pts[6] = {e[i].r.lo,
		               e[i].r.hi,
		               e[i].r.lo - 1,
		               e[i].r.hi + 1,
		               rand_addr(family, base, spread),
		               rand_addr(family, 0, 128)};
		for (int p = 0; p < 6; p++) {
			struct ipaddr a = {.family = (uint8_t)family,
			                   .v = pts[p] & ipaddr_max(family)};
			unsigned got = rangeset_lookup(rs, &a), want = brute_lookup(e, n, &a);
			cr_assert_eq(got, want,
			             "seed %llu: lookup of point %d of entry %zu: %u, "
			             "expected %u",
			             (unsigned long long)seed, p, i, got, want);
		}
	}
	rangeset_free(rs);
}

Test(rangeset, randomized_against_brute_force)
{
	const uint64_t seed0 = 20261128;

	for (uint64_t i = 0; i < 5000; i++)
		check_one(seed0 + i * 7919);
}

/* Large sets exercise the radix index (many buckets, shared prefixes). */
Test(rangeset, large_sets_against_brute_force_samples)
{
	enum { N = 20000 };
	struct rangeset_entry *e = calloc(N, sizeof(*e));

	cr_assert_not_null(e);
	rng_state = 77;
	for (size_t i = 0; i < N; i++) {
		/* disjoint /28 blocks of one owner each, inside 10.0.0.0/8 or 2001:db8::/32 */
		int family = i % 2 ? AF_INET : AF_INET6;
		u128 base = family == AF_INET ? (u128)0x0a000000u : ((u128)0x20010db8u << 96);
		u128 blk = base + (((u128)(i / 2) * 97 % 65536) << 4);
		e[i] = (struct rangeset_entry){
		        .r = {.family = (uint8_t)family, .lo = blk, .hi = blk + 15},
		        .owner = (uint16_t)(i % 7)};
	}
	struct seen s = {0};
	struct rangeset *rs = rangeset_build(e, N, record_cb, &s);
	cr_assert_not_null(rs);
	for (int k = 0; k < 20000; k++) {
		size_t i = rng() % N;
		struct ipaddr a = {.family = e[i].r.family, .v = e[i].r.lo + (rng() % 40) - 12};
		cr_assert_eq(rangeset_lookup(rs, &a), brute_lookup(e, N, &a), "sample %d", k);
	}
	rangeset_free(rs);
	free(e);
}

/* ---- the build's order: the same table and conflict reports as before ------------- */

struct trace {
	uint64_t h; /* FNV-1a over every report (kind, a, b) in order */
	size_t reports;
};

static void
fnv(uint64_t *h, const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		*h = (*h ^ b[i]) * 1099511628211ull;
}

static void
trace_cb(enum rangeset_conflict kind, size_t a, size_t b, void *arg)
{
	struct trace *t = arg;
	uint64_t v[3] = {(uint64_t)kind, (uint64_t)a, (uint64_t)b};

	fnv(&t->h, v, sizeof(v));
	t->reports++;
}

/* The segments of both families, hashed. */
static uint64_t
table_hash(const struct rangeset *rs)
{
	uint64_t h = 14695981039346656037ull;

	for (int f = 0; f < 2; f++) {
		int family = f ? AF_INET6 : AF_INET;
		size_t n = rangeset_export(rs, family, NULL, NULL, 0);
		u128 *k = calloc(n + 1, sizeof(*k));
		uint16_t *v = calloc(n + 1, sizeof(*v));
		cr_assert(k && v);
		rangeset_export(rs, family, k, v, n);
		fnv(&h, k, n * sizeof(*k));
		fnv(&h, v, n * sizeof(*v));
		free(k);
		free(v);
	}
	return h;
}

/* Dense, clustered ranges of both families: partial overlaps, duplicates, equal ranges of
 * several owners and priorities, so that every key of the build's sort decides. */
static struct rangeset_entry *
dense_entries(size_t n, uint64_t seed)
{
	struct rangeset_entry *e = calloc(n, sizeof(*e));

	cr_assert_not_null(e);
	rng_state = seed;
	for (size_t i = 0; i < n; i++) {
		int family = rng() % 3 ? AF_INET : AF_INET6;
		u128 base = family == AF_INET ? (u128)0xc0000000u : ((u128)0x2a00u << 112);
		u128 a = rand_addr(family, base, 1 + (unsigned)(rng() % 20)), b;
		if (rng() % 2) {
			unsigned host = (unsigned)(rng() % 12);
			a &= ~(((u128)1 << host) - 1);
			b = a + (((u128)1 << host) - 1);
		} else {
			b = a + rng() % 3000;
		}
		e[i] = (struct rangeset_entry){.r = {.family = (uint8_t)family, .lo = a, .hi = b},
		                               .owner = (uint16_t)(rng() % 5),
		                               .prio = (uint8_t)(rng() % 2)};
		if (i > 0 && rng() % 6 == 0)
			e[i].r = e[rng() % i].r;
	}
	return e;
}

/* The figures were taken with the comparison sort alone (before the radix pass): the
 * build must give the same segments and report the same conflicts, in the same order. */
Test(rangeset, same_table_and_reports_as_the_comparison_sort)
{
	enum { N = 60000 };
	struct rangeset_entry *e = dense_entries(N, 4242);
	struct trace t = {.h = 14695981039346656037ull};
	struct rangeset *rs = rangeset_build(e, N, trace_cb, &t);

	cr_assert_not_null(rs);
	uint64_t th = table_hash(rs);
	cr_expect_eq(th, 0x951e2febce772621ull, "table hash %#llx", (unsigned long long)th);
	cr_expect_eq(t.h, 0x44f65a8ba3893d0aull, "reports hash %#llx (%zu reports)",
	             (unsigned long long)t.h, t.reports);
	rangeset_free(rs);
	free(e);
}

/* Runs read in place (a stride over larger records) build what entries build, and number
 * the ranges across the runs in order. */
struct rec {
	char pad[24];
	struct range r;
	int line;
};

Test(rangeset, runs_build_what_entries_build)
{
	enum { N = 30000, RUNS = 4 };
	struct rangeset_entry *e = dense_entries(N, 99);
	struct rec *recs = calloc(N, sizeof(*recs));
	struct rangeset_run runs[RUNS];
	struct trace te = {.h = 1}, tr = {.h = 1};

	cr_assert_not_null(recs);
	/* runs of one owner and priority each: give the entries those */
	for (size_t i = 0; i < N; i++) {
		e[i].owner = (uint16_t)(i * RUNS / N);
		e[i].prio = (uint8_t)(e[i].owner % 2);
		recs[i].r = e[i].r;
	}
	for (size_t k = 0; k < RUNS; k++)
		runs[k] = (struct rangeset_run){&recs[k * N / RUNS].r, N / RUNS, sizeof(struct rec),
		                                (uint16_t)k, (uint8_t)(k % 2)};
	struct rangeset *a = rangeset_build(e, N, trace_cb, &te);
	struct rangeset *b = rangeset_build_runs(runs, RUNS, 0, trace_cb, &tr);
	cr_assert(a && b);
	cr_expect_eq(table_hash(a), table_hash(b));
	cr_expect_gt(te.reports, 0);
	cr_expect_eq(te.reports, tr.reports);
	cr_expect_eq(te.h, tr.h);
	rangeset_free(a);
	rangeset_free(b);
	free(recs);
	free(e);
}

/* A family given: only its ranges are compiled (conflicts too), numbered as before. */
Test(rangeset, runs_of_one_family)
{
	struct rangeset_entry e[] = {
	        ent("10.0.0.0/8", 0, 0),           ent("2001:db8::/32", 0, 0),
	        ent("10.0.0.0/16", 0, 0),          ent("2001:db8::/48", 0, 0),
	        ent("10.0.0.0/12", 1, 0),          ent("2001:db8:0:8000::-2001:db8:1::", 1, 0),
	        ent("10.0.128.0-10.1.0.255", 1, 0)};
	struct rangeset_run runs[] = {{&e[0].r, 4, sizeof(e[0]), 0, 0},
	                              {&e[4].r, 3, sizeof(e[0]), 1, 0}};
	struct seen s = {0};
	struct rangeset *rs = rangeset_build_runs(runs, 2, AF_INET, record_cb, &s);

	cr_assert_not_null(rs);
	cr_expect_eq(look(rs, "10.0.0.1"), 0);
	cr_expect_eq(look(rs, "10.0.200.1"), 1);
	cr_expect_eq(look(rs, "10.1.1.0"), 1);
	cr_expect_eq(look(rs, "10.200.0.0"), 0);
	cr_expect_eq(look(rs, "2001:db8::1"), RANGESET_NONE);
	/* 10.0.0.0/16 (entry 2) and 10.0.128.0-10.1.0.255 (entry 6); not the IPv6 pair */
	cr_expect_eq(s.partial, 1);
	cr_expect_eq(s.identical, 0);
	cr_expect(s.n == 1 && ((s.a[0] == 2 && s.b[0] == 6) || (s.a[0] == 6 && s.b[0] == 2)));
	rangeset_free(rs);
	s = (struct seen){0};
	rs = rangeset_build_runs(runs, 2, 0, record_cb, &s);
	cr_assert_not_null(rs);
	cr_expect_eq(look(rs, "2001:db8::1"), 0);
	cr_expect_eq(s.partial, 2);
	rangeset_free(rs);
}

/* Both families large enough to be built in parallel: every report still comes from the
 * calling thread, the IPv4 ones before the IPv6 ones. */
struct origin {
	pthread_t self;
	const struct rangeset_entry *e;
	size_t reports, other_thread, v4_after_v6;
	bool seen_v6;
};

static void
origin_cb(enum rangeset_conflict kind, size_t a, size_t b, void *arg)
{
	struct origin *o = arg;
	bool v6 = o->e[b].r.family == AF_INET6;

	(void)kind, (void)a;
	o->reports++;
	if (!pthread_equal(pthread_self(), o->self))
		o->other_thread++;
	if (!v6 && o->seen_v6)
		o->v4_after_v6++;
	o->seen_v6 |= v6;
}

Test(rangeset, reports_come_from_the_calling_thread_ipv4_first)
{
	enum { N = 60000 };
	struct rangeset_entry *e = dense_entries(N, 99);
	struct origin o = {.self = pthread_self(), .e = e};
	struct rangeset *rs = rangeset_build(e, N, origin_cb, &o);

	cr_assert_not_null(rs);
	cr_expect_gt(o.reports, 0);
	cr_expect_eq(o.other_thread, 0, "%zu reports from another thread", o.other_thread);
	cr_expect_eq(o.v4_after_v6, 0, "%zu IPv4 reports after an IPv6 one", o.v4_after_v6);
	cr_expect(o.seen_v6);
	rangeset_free(rs);
	free(e);
}

/* One family alone (its sort split between two threads) builds the segments that both
 * families together (each sorted on a thread of its own) build for it. */
Test(rangeset, one_family_builds_what_both_build)
{
	enum { N = 60000 };
	struct rangeset_entry *e = dense_entries(N, 4242);
	struct rangeset_run run = {.first = &e[0].r, .n = N, .stride = sizeof(*e)};
	struct rangeset *rs = rangeset_build_runs(&run, 1, 0, NULL, NULL);

	cr_assert_not_null(rs);
	for (int f = 0; f < 2; f++) {
		int family = f ? AF_INET6 : AF_INET;
		struct rangeset *one = rangeset_build_runs(&run, 1, family, NULL, NULL);
		size_t n = rangeset_export(rs, family, NULL, NULL, 0);
		u128 *k = calloc(n + 1, sizeof(*k)), *k1 = calloc(n + 1, sizeof(*k1));
		uint16_t *v = calloc(n + 1, sizeof(*v)), *v1 = calloc(n + 1, sizeof(*v1));

		cr_assert(one && k && k1 && v && v1);
		cr_assert_eq(rangeset_export(one, family, NULL, NULL, 0), n);
		rangeset_export(rs, family, k, v, n);
		rangeset_export(one, family, k1, v1, n);
		cr_expect(memcmp(k, k1, n * sizeof(*k)) == 0 && memcmp(v, v1, n * sizeof(*v)) == 0,
		          "family %d", family);
		rangeset_free(one);
		free(k), free(k1), free(v), free(v1);
	}
	rangeset_free(rs);
	free(e);
}

/* No thread to be had (a process at its limit): both families, then one family alone, are
 * built on the calling thread, to the same table and the same reports as with threads. */
Test(rangeset, without_threads_builds_what_threads_build)
{
	enum { N = 60000 };
	struct rangeset_entry *e = dense_entries(N, 4242);
	struct rangeset_run run = {.first = &e[0].r, .n = N, .stride = sizeof(*e)};
	struct trace t[2] = {{.h = 14695981039346656037ull}, {.h = 14695981039346656037ull}};
	struct rangeset *rs[2], *one[2];

	cr_assert(allocfail_linked(), "unit-tests was linked without the wraps (Makefile)");
	for (int off = 0; off < 2; off++) {
		allocfail_threads(off == 1);
		rs[off] = rangeset_build(e, N, trace_cb, &t[off]);
		one[off] = rangeset_build_runs(&run, 1, AF_INET, NULL, NULL);
		unsigned long refused = allocfail_threads(false);
		cr_assert(rs[off] && one[off]);
		if (off)
			cr_expect_geq(refused, 2, "only %lu thread starts refused", refused);
	}
	cr_expect_eq(table_hash(rs[1]), table_hash(rs[0]));
	cr_expect_eq(table_hash(rs[1]), 0x951e2febce772621ull);
	cr_expect_eq(t[1].h, t[0].h);
	cr_expect_eq(t[1].reports, t[0].reports);
	cr_expect_eq(table_hash(one[1]), table_hash(one[0]));
	for (int i = 0; i < 2; i++) {
		rangeset_free(rs[i]);
		rangeset_free(one[i]);
	}
	free(e);
}
