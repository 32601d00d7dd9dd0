/* Unit tests: connector selection — wildcard versus exact bindings, IPv6, mapped clients,
 * disabled connectors — and a randomized comparison with a brute-force reference over
 * thousands of random configurations (fixed seed, printed on failure). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "conf/selector.h"
#include "helpers.h"

static struct endpoint
ep(const char *s)
{
	struct endpoint e;
	char err[128];

	cr_assert_eq(endpoint_parse(s, &e, err, sizeof(err)), 0, "%s: %s", s, err);
	return e;
}

static struct ipaddr
ip(const char *s)
{
	struct ipaddr a;

	cr_assert_eq(ipaddr_parse(s, strlen(s), &a), 0, "%s", s);
	return a;
}

static const char *
pick(const struct config *c, const char *local, const char *remote)
{
	struct endpoint l = ep(local);
	struct ipaddr r = ip(remote);
	int k = selector_select(c->selector, &l, &r);

	return k < 0 ? "none" : c->connectors[k].name;
}

static struct config *
load_ok(const char *text)
{
	struct diag d;
	struct config *c;

	diag_init(&d);
	c = helper_load(text, &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	diag_release(&d);
	return c;
}

#define ANON "  usage = custom\n  permission-groups = { anonymous-users }\n"

Test(selector, exchange_documented_example_through_the_config)
{
	struct config *c =
	        load_ok("connector \"Default\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                "  remote-ip-ranges = { \"0.0.0.0-255.255.255.255\" }\n}\n"
	                "connector \"Subnet\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                "  remote-ip-ranges = { \"192.168.1.0-192.168.1.255\" }\n}\n"
	                "connector \"Host\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                "  remote-ip-ranges = { \"192.168.1.75\" }\n}\n");
	cr_expect_str_eq(pick(c, "10.0.0.5:25", "192.168.1.75"), "Host");
	cr_expect_str_eq(pick(c, "10.0.0.5:25", "192.168.1.100"), "Subnet");
	cr_expect_str_eq(pick(c, "10.0.0.5:25", "10.0.0.1"), "Default");
	cr_expect_str_eq(pick(c, "0.0.0.0:25", "10.0.0.1"), "Default");
	cr_expect_str_eq(pick(c, "10.0.0.5:26", "10.0.0.1"), "none");
	cr_expect_str_eq(pick(c, "[::1]:25", "::1"), "none");
	config_unref(c);
}

Test(selector, exact_binding_beats_wildcard_on_a_tie)
{
	struct config *c =
	        load_ok("connector \"Wild\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                "  remote-ip-ranges = { \"10.0.0.0/8\" }\n}\n"
	                "connector \"Exact\" {\n" ANON "  bindings = { \"192.0.2.10:25\" }\n"
	                "  remote-ip-ranges = { \"10.0.0.0/8\" }\n}\n"
	                "connector \"Narrow\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                "  remote-ip-ranges = { \"10.1.0.0/16\" }\n}\n");
	cr_expect_str_eq(pick(c, "192.0.2.10:25", "10.9.9.9"), "Exact");
	cr_expect_str_eq(pick(c, "192.0.2.11:25", "10.9.9.9"), "Wild");
	/* more specific beats exact */
	cr_expect_str_eq(pick(c, "192.0.2.10:25", "10.1.2.3"), "Narrow");
	cr_expect_str_eq(pick(c, "192.0.2.10:25", "11.0.0.1"), "none");
	config_unref(c);
}

Test(selector, ipv6_mapped_and_families)
{
	struct config *c = load_ok("connector \"v4\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  remote-ip-ranges = { \"67.231.152.0/24\" }\n}\n"
	                           "connector \"v6\" {\n" ANON "  bindings = { \"[::]:25\" }\n"
	                           "  remote-ip-ranges = { \"2a01:111:f400::/48\" }\n}\n"
	                           "connector \"both\" {\n" ANON
	                           "  bindings = { \"0.0.0.0:587\", \"[::]:587\" }\n}\n");
	cr_expect_str_eq(pick(c, "127.0.0.1:25", "67.231.152.10"), "v4");
	cr_expect_str_eq(pick(c, "127.0.0.1:25", "::ffff:67.231.152.10"), "v4");
	cr_expect_str_eq(pick(c, "127.0.0.1:25", "67.231.153.10"), "none");
	cr_expect_str_eq(pick(c, "[::1]:25", "2a01:111:f400::1"), "v6");
	cr_expect_str_eq(pick(c, "[::1]:25", "2a01:111:f401::1"), "none");
	/* no ranges: every address of both families */
	cr_expect_str_eq(pick(c, "127.0.0.1:587", "203.0.113.9"), "both");
	cr_expect_str_eq(pick(c, "[::1]:587", "2001:db8::9"), "both");
	config_unref(c);
}

Test(selector, disabled_connectors_take_no_part)
{
	struct config *c = load_ok("connector \"off\" {\n" ANON "  enabled = false\n"
	                           "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  remote-ip-ranges = { \"10.0.0.0/24\" }\n}\n"
	                           "connector \"on\" {\n" ANON "  bindings = { \"0.0.0.0:25\" }\n"
	                           "  remote-ip-ranges = { \"10.0.0.0/8\" }\n}\n"
	                           "connector \"off2\" {\n" ANON "  enabled = no\n"
	                           "  bindings = { \"0.0.0.0:26\" }\n}\n");
	const struct endpoint *eps;
	cr_expect_str_eq(pick(c, "127.0.0.1:25", "10.0.0.1"), "on");
	cr_expect_str_eq(pick(c, "127.0.0.1:26", "10.0.0.1"), "none");
	cr_expect_eq(selector_endpoints(c->selector, &eps), 1);
	config_unref(c);
}

/* ---- randomized comparison ----------------------------------------------------------- */

static uint64_t rs;

static uint64_t
rnd(void)
{
	rs ^= rs >> 12;
	rs ^= rs << 25;
	rs ^= rs >> 27;
	return rs * 2685821657736338717ull;
}

static const char *const local_pool[] = {"0.0.0.0:25", "10.0.0.1:25", "10.0.0.2:25",
                                         "0.0.0.0:26", "[::]:25",     "[2001:db8::1]:25"};

struct bf_conn {
	struct selector_input k;
	struct endpoint b[3];
	struct conf_range r[6];
};

/* Brute force: docs/DESIGN.md §4 read literally. */
static int
brute(const struct bf_conn *cs, size_t n, const struct endpoint *local, const struct ipaddr *a,
      bool *tie)
{
	long best = -1;
	u128 bspan = 0;
	int bprio = 0;

	*tie = false;
	if (a->family != local->addr.family)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const struct selector_input *k = &cs[i].k;
		int prio = -1;
		if (!k->enabled)
			continue;
		for (size_t j = 0; j < k->n_bindings; j++) {
			const struct endpoint *b = &k->bindings[j];
			if (b->port != local->port || b->addr.family != local->addr.family)
				continue;
			if (ipaddr_equal(&b->addr, &local->addr))
				prio = 0;
			else if (ipaddr_is_any(&b->addr) && prio < 0)
				prio = 1;
		}
		if (prio < 0)
			continue;
		bool found = false;
		u128 span = 0;
		if (k->all_remote) {
			found = true;
			span = ipaddr_max(a->family);
		}
		for (size_t j = 0; j < k->n_ranges; j++)
			if (range_contains(&k->ranges[j].r, a) &&
			    (!found || range_span(&k->ranges[j].r) < span)) {
				found = true;
				span = range_span(&k->ranges[j].r);
			}
		if (!found)
			continue;
		if (best < 0 || span < bspan || (span == bspan && prio < bprio)) {
			best = (long)i;
			bspan = span;
			bprio = prio;
			*tie = false;
		} else if (span == bspan && prio == bprio) {
			*tie = true;
		}
	}
	return (int)best;
}

static void
one_config(uint64_t seed)
{
	struct bf_conn cs[5];
	struct selector_input ks[5];
	size_t n;
	struct diag d;

	rs = seed;
	n = 1 + rnd() % 5;
	memset(cs, 0, sizeof(cs));
	for (size_t i = 0; i < n; i++) {
		struct selector_input *k = &cs[i].k;
		k->name = "k";
		k->enabled = rnd() % 6 != 0;
		k->bindings = cs[i].b;
		k->n_bindings = 1 + rnd() % 3;
		for (size_t j = 0; j < k->n_bindings; j++)
			cs[i].b[j] = ep(local_pool[rnd() % 6]);
		k->ranges = cs[i].r;
		k->all_remote = rnd() % 5 == 0;
		k->n_ranges = k->all_remote ? 0 : rnd() % 6;
		for (size_t j = 0; j < k->n_ranges; j++) {
			int fam = rnd() % 3 ? AF_INET : AF_INET6;
			u128 base = fam == AF_INET ? 0x0a000000u : ((u128)0x20010db8u << 96);
			int plen = ipaddr_bits(fam) - (int)(rnd() % 9);
			u128 m = (((u128)1 << (ipaddr_bits(fam) - plen)) - 1);
			u128 lo = (base + (rnd() % 512)) & ~m;
			cs[i].r[j].r =
			        (struct range){.family = (uint8_t)fam, .lo = lo, .hi = lo | m};
			cs[i].r[j].at = (struct origin){"random", (int)j + 1};
		}
		ks[i] = *k;
	}
	diag_init(&d);
	struct selector *s = selector_build(ks, n, &d);
	cr_assert_not_null(s);
	for (int q = 0; q < 200; q++) {
		struct endpoint local = ep(local_pool[rnd() % 6]);
		if (rnd() % 4 == 0)
			local = local.addr.family == AF_INET ? ep("10.0.0.3:25")
			                                     : ep("[2001:db8::9]:25");
		int fam = rnd() % 3 ? AF_INET : AF_INET6;
		struct ipaddr a = {.family = (uint8_t)fam,
		                   .v = (fam == AF_INET ? 0x0a000000u : ((u128)0x20010db8u << 96)) +
		                        (rnd() % 600)};
		bool tie;
		int want = brute(cs, n, &local, &a, &tie);
		int got = selector_select(s, &local, &a);
		if (tie) {
			/* a tie nothing breaks must have been reported as an error */
			cr_assert(diag_errors(&d) > 0, "seed %llu: unbroken tie not reported",
			          (unsigned long long)seed);
			continue;
		}
		if (diag_errors(&d) > 0)
			continue; /* the config is rejected; its answers do not matter */
		cr_assert_eq(got, want, "seed %llu query %d: selected %d, expected %d",
		             (unsigned long long)seed, q, got, want);
	}
	selector_free(s);
	diag_release(&d);
}

Test(selector, randomized_against_brute_force)
{
	for (uint64_t i = 0; i < 3000; i++)
		one_config(4242 + i * 104729);
}
