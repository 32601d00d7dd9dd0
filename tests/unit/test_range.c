/* Unit tests: ipaddr and range parsing, every Exchange form, valid and invalid. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/range.h"
#include "ipaddr_ref.h"

static struct range
must_parse(const char *text, unsigned *flags)
{
	struct range r;
	char err[256];
	unsigned f = 0;

	cr_assert_eq(range_parse(text, &r, &f, err, sizeof(err)), 0, "'%s' refused: %s", text, err);
	if (flags)
		*flags = f;
	return r;
}

static void
expect_canon(const char *text, const char *canon, unsigned want_flags)
{
	unsigned flags;
	struct range r = must_parse(text, &flags);
	char buf[128];

	range_format(&r, buf, sizeof(buf));
	cr_expect_str_eq(buf, canon, "'%s' became '%s', expected '%s'", text, buf, canon);
	cr_expect_eq(flags, want_flags, "'%s' flags %u, expected %u", text, flags, want_flags);
}

Test(range, every_valid_form)
{
	static const struct {
		const char *text, *canon;
		unsigned flags;
	} cases[] = {
	        {"192.168.1.75", "192.168.1.75/32", 0},
	        {"  192.168.1.75\t", "192.168.1.75/32", 0},
	        {"67.231.152.0/24", "67.231.152.0/24", 0},
	        {"148.163.128.0/19", "148.163.128.0/19", 0},
	        {"0.0.0.0/0", "0.0.0.0/0", 0},
	        {"10.1.2.3/32", "10.1.2.3/32", 0},
	        {"192.168.1.1/24", "192.168.1.0/24", RANGE_HOST_BITS},
	        {"0.0.0.0-255.255.255.255", "0.0.0.0/0", 0},
	        {"67.231.153.0-67.231.153.255", "67.231.153.0/24", 0},
	        {"192.168.1.1-192.168.1.254", "192.168.1.1-192.168.1.254", 0},
	        {"10.0.0.5 - 10.0.0.9", "10.0.0.5-10.0.0.9", 0},
	        {"10.0.0.7-10.0.0.7", "10.0.0.7/32", 0},
	        {"10.1.0.0 255.255.0.0", "10.1.0.0/16", 0},
	        {"67.231.152.0 255.255.255.0", "67.231.152.0/24", 0},
	        {"10.1.2.3 255.255.0.0", "10.1.0.0/16", RANGE_HOST_BITS},
	        {"10.0.0.0\t255.0.0.0", "10.0.0.0/8", 0},
	        {"10.0.0.0(255.0.0.0)", "10.0.0.0/8", 0},
	        {"192.0.2.0(255.255.255.128)", "192.0.2.0/25", 0},
	        {"2001:db8::7", "2001:db8::7/128", 0},
	        {"2001:DB8::/32", "2001:db8::/32", 0},
	        {"2001:0DB8::CD3/60", "2001:db8::/60", RANGE_HOST_BITS},
	        {"::/0", "::/0", 0},
	        {"::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0", 0},
	        {"2a01:111:f400::/48", "2a01:111:f400::/48", 0},
	        {"2001:db8::1-2001:db8::ff", "2001:db8::1-2001:db8::ff", 0},
	        {"2001:DB8::2AA:FF:C0A8:640A(FFFF:FFFF:FFFF:FFFF::)", "2001:db8::/64",
	         RANGE_HOST_BITS},
	        {"0.0.0.0", "0.0.0.0/32", RANGE_ZERO_SINGLE},
	        {"::", "::/128", RANGE_ZERO_SINGLE},
	        /* IPv4-mapped IPv6 is IPv4 */
	        {"::ffff:192.0.2.1", "192.0.2.1/32", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_canon(cases[i].text, cases[i].canon, cases[i].flags);
}

Test(range, every_invalid_form_says_why)
{
	static const struct {
		const char *text, *why;
	} cases[] = {
	        {"", "empty"},
	        {"   ", "empty"},
	        {"10.0.0", "not an IPv4 or IPv6 address"},
	        {"10.0.0.256", "not an IPv4 or IPv6 address"},
	        {"010.0.0.1", "not an IPv4 or IPv6 address"},
	        {"10.0.0.1.", "not an IPv4 or IPv6 address"},
	        {"example.com", "not an IPv4 or IPv6 address"},
	        {"10.0.0.0/33", "prefix length 33 is over 32"},
	        {"2001:db8::/129", "prefix length 129 is over 128"},
	        {"10.0.0.0/", "prefix length"},
	        {"10.0.0.0/x", "prefix length"},
	        {"10.0.0.0/-1", "prefix length"},
	        {"10.0.0.0/1234", "prefix length"},
	        {"10.0.0.9-10.0.0.1", "start is after end"},
	        {"10.0.0.1-2001:db8::1", "different families"},
	        {"10.0.0.1-", "START-END"},
	        {"-10.0.0.1", "START-END"},
	        {"10.0.0.0 255.0.255.0", "not contiguous"},
	        {"10.0.0.0 0.255.255.255", "not contiguous"},
	        {"10.0.0.0(255.0.0.255)", "not contiguous"},
	        {"10.0.0.0(ffff::)", "same family"},
	        {"10.0.0.0(255.0.0.0", "ADDRESS(MASK)"},
	        {"(255.0.0.0)", "ADDRESS(MASK)"},
	        {"2001:db8:: ffff::", "IPv4 only"},
	        {"fe80::1%11", "zone index"},
	        {"fe80::1%eth0/64", "zone index"},
	        {"10.0.0.0 255.255.255.0 extra", "not an IPv4 or IPv6 address"},
	        {"10.0.0.1\n", "not an IPv4 or IPv6 address"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct range r;
		char err[256] = "";
		int rc = range_parse(cases[i].text, &r, NULL, err, sizeof(err));
		cr_expect_eq(rc, -1, "'%s' was accepted", cases[i].text);
		cr_expect(strstr(err, cases[i].why) != NULL, "'%s': reason '%s' lacks '%s'",
		          cases[i].text, err, cases[i].why);
	}
}

/* range_parse_cidr() reads text as range_parse() does, or declines it */
static void
cidr_agrees(const char *s, size_t len, bool must_take)
{
	char text[96], err[256];
	struct range fast, slow;
	unsigned ffast = 99, fslow = 99;
	bool took;
	int rc;

	memcpy(text, s, len);
	text[len] = '\0';
	took = range_parse_cidr(text, len, &fast, &ffast);
	rc = range_parse(text, &slow, &fslow, err, sizeof(err));
	if (must_take)
		cr_assert(took, "'%s' is ADDRESS/PREFIX but range_parse_cidr declined it", text);
	if (!took)
		return;
	cr_assert_eq(rc, 0, "'%s': range_parse_cidr took it, range_parse refused: %s", text, err);
	cr_assert(fast.family == slow.family && fast.lo == slow.lo && fast.hi == slow.hi &&
	                  ffast == fslow,
	          "'%s': range_parse_cidr and range_parse disagree", text);
}

Test(range, cidr_fast_path_reads_as_range_parse)
{
	static const char *const taken[] = {
	        "0.0.0.0/0",      "192.0.2.0/24",      "192.0.2.7/24", "10.0.0.1/32",
	        "1.2.3.4/0",      "2001:db8::/32",     "::/0",         "::1/128",
	        "2001:DB8::7/64", "::ffff:1.2.3.4/24", "fe80::1/10",   "1::/1",
	};
	static const char *const other[] = {
	        "192.0.2.0/33",
	        "192.0.2.0/024",
	        "192.0.2.0/",
	        "/24",
	        "192.0.2.0 /24",
	        " 192.0.2.0/24",
	        "192.0.2.0/24 ",
	        "192.0.2.0/24#x",
	        "192.0.2.0/24\r",
	        "fe80::1%eth0/64",
	        "::/129",
	        "::/1280",
	        "192.0.2.0//24",
	        "192.0.2.0/2a4",
	        "10.0.0.0(255.0.0.0)/8",
	        "10.0.0.1-10.0.0.9/8",
	        "01.2.3.4/8",
	        "",
	        "/",
	        "1/1",
	};
	static const char alpha[] = "0123456789abcdefABCDEF.::./// %(-#\t..0019fF";
	uint64_t x = 0x2545f4914f6cdd1dull;
	char s[80];

	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		cidr_agrees(taken[i], strlen(taken[i]), true);
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
		cidr_agrees(other[i], strlen(other[i]), false);
	for (int k = 0; k < 300000; k++) {
		size_t len;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		len = (size_t)(x % 50);
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			s[i] = alpha[x % (sizeof(alpha) - 1)];
		}
		cidr_agrees(s, len, false);
		/* a valid CIDR block, then mutated at one place */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (x % 2)
			len = (size_t)snprintf(s, sizeof(s), "%u.%u.%u.%u/%u",
			                       (unsigned)(x >> 8) & 255, (unsigned)(x >> 16) & 255,
			                       (unsigned)(x >> 24) & 255, (unsigned)(x >> 32) & 255,
			                       (unsigned)(x >> 40) % 33);
		else
			len = (size_t)snprintf(
			        s, sizeof(s), "%x:%x::%x/%u", (unsigned)(x >> 8) & 0xffff,
			        (unsigned)(x >> 24) & 0xffff, (unsigned)(x >> 40) & 0xff,
			        (unsigned)(x >> 48) % 129);
		cidr_agrees(s, len, true);
		s[(x >> 5) % len] = alpha[(x >> 11) % (sizeof(alpha) - 1)];
		cidr_agrees(s, len, false);
	}
}

Test(range, contains_and_span)
{
	struct range r = must_parse("192.168.1.0/24", NULL);
	struct ipaddr a;

	cr_assert_eq(ipaddr_parse("192.168.1.255", 13, &a), 0);
	cr_expect(range_contains(&r, &a));
	cr_assert_eq(ipaddr_parse("192.168.2.0", 11, &a), 0);
	cr_expect(!range_contains(&r, &a));
	cr_expect(range_span(&r) == 255);
	/* a mapped client is IPv4 and is contained */
	cr_assert_eq(ipaddr_parse("::ffff:192.168.1.7", 18, &a), 0);
	cr_expect_eq(a.family, AF_INET);
	cr_expect(range_contains(&r, &a));
	/* an IPv6 range never contains an IPv4 address */
	r = must_parse("::/0", NULL);
	cr_expect(!range_contains(&r, &a));
	cr_expect(range_is_all(&r));
}

static int
collect_cb(const struct range *c, void *arg)
{
	char *out = arg, buf[64];

	range_format(c, buf, sizeof(buf));
	strcat(out, buf);
	strcat(out, " ");
	return 0;
}

Test(range, cidr_cover)
{
	static const struct {
		const char *text, *cidrs;
	} cases[] = {
	        {"10.0.0.0/8", "10.0.0.0/8 "},
	        {"192.168.1.1-192.168.1.254",
	         "192.168.1.1/32 192.168.1.2/31 192.168.1.4/30 192.168.1.8/29 192.168.1.16/28 "
	         "192.168.1.32/27 192.168.1.64/26 192.168.1.128/26 192.168.1.192/27 "
	         "192.168.1.224/28 192.168.1.240/29 192.168.1.248/30 192.168.1.252/31 "
	         "192.168.1.254/32 "},
	        {"0.0.0.0-255.255.255.255", "0.0.0.0/0 "},
	        {"255.255.255.255", "255.255.255.255/32 "},
	        {"::/0", "::/0 "},
	        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127 "},
	        {"10.0.0.0-10.0.2.255", "10.0.0.0/23 10.0.2.0/24 "},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[1024] = "";
		struct range r = must_parse(cases[i].text, NULL);
		range_each_cidr(&r, collect_cb, out);
		cr_expect_str_eq(out, cases[i].cidrs, "%s", cases[i].text);
	}
}

Test(ipaddr, endpoints)
{
	static const struct {
		const char *text, *canon, *err;
	} cases[] = {
	        {"0.0.0.0:25", "0.0.0.0:25", NULL},
	        {"127.0.0.1:2525", "127.0.0.1:2525", NULL},
	        {"[::]:25", "[::]:25", NULL},
	        {"[2001:db8::1]:587", "[2001:db8::1]:587", NULL},
	        {"1.2.3.4", NULL, "missing :PORT"},
	        {"1.2.3.4:", NULL, "missing port"},
	        {"1.2.3.4:0", NULL, "1 to 65535"},
	        {"1.2.3.4:65536", NULL, "1 to 65535"},
	        {"1.2.3.4:2x", NULL, "1 to 65535"},
	        {"::1:25", NULL, "[ADDRESS]:PORT"},
	        {"[::1]25", NULL, "[ADDRESS]:PORT"},
	        {"[1.2.3.4]:25", NULL, "must be an IPv6"},
	        {"host:25", NULL, "not an IP address"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct endpoint ep;
		char err[256] = "", buf[ENDPOINT_STRLEN];
		int rc = endpoint_parse(cases[i].text, &ep, err, sizeof(err));
		if (cases[i].canon) {
			cr_expect_eq(rc, 0, "%s: %s", cases[i].text, err);
			endpoint_format(&ep, buf, sizeof(buf));
			cr_expect_str_eq(buf, cases[i].canon);
		} else {
			cr_expect_eq(rc, -1, "%s accepted", cases[i].text);
			cr_expect(strstr(err, cases[i].err) != NULL, "%s: '%s' lacks '%s'",
			          cases[i].text, err, cases[i].err);
		}
	}
}

/* ---- ipaddr_parse against inet_pton() (ipaddr_ref.h) ------------------------------- */

static void
same_as_inet_pton(const char *s, size_t len)
{
	struct ipaddr a = {0}, b = {0};
	int got = ipaddr_parse(s, len, &a), want = ref_parse(s, len, &b);

	cr_assert_eq(got, want, "'%.*s': ipaddr_parse %d, inet_pton %d", (int)len, s, got, want);
	if (got == 0)
		cr_assert(a.family == b.family && a.v == b.v, "'%.*s': values differ", (int)len, s);
}

Test(ipaddr, parse_edges_as_inet_pton)
{
	static const char *cases[] = {
	        "0.0.0.0",
	        "255.255.255.255",
	        "256.0.0.0",
	        "1.2.3",
	        "1.2.3.4.5",
	        "1.2.3.4.",
	        ".1.2.3.4",
	        "1..2.3",
	        "01.2.3.4",
	        "1.2.3.04",
	        "1.2.3.0",
	        "0.0.0.00",
	        "1.2.3.4a",
	        "1.2.3.-4",
	        "999.1.1.1",
	        "1.2.3.2555",
	        "10.1",
	        "1",
	        "",
	        "a.b.c.d",
	        "1 .2.3.4",
	        "::",
	        ":::",
	        "::1",
	        "1::",
	        ":1",
	        "1:",
	        "1:::2",
	        "::1::",
	        "1:2:3:4:5:6:7:8",
	        "1:2:3:4:5:6:7:8:9",
	        "1:2:3:4:5:6:7::",
	        "::2:3:4:5:6:7:8",
	        "1::3:4:5:6:7:8",
	        "1:2:3:4:5:6:7:8::",
	        "::1:2:3:4:5:6:7:8",
	        "1:2:3:4::5:6:7:8",
	        "12345::",
	        "1234::",
	        "01234::",
	        "0000:0000:0000:0000:0000:0000:0000:0000",
	        "ABCD:ef01::",
	        "g::",
	        "::ffff:1.2.3.4",
	        "::ffff:01.2.3.4",
	        "::ffff:1.2.3",
	        "::ffff:1.2.3.4.5",
	        "::1.2.3.4",
	        "1.2.3.4::",
	        "::1.2.3.4:1",
	        "1:2:3:4:5:6:1.2.3.4",
	        "1:2:3:4:5:6:7:1.2.3.4",
	        "1:2:3:4:5::1.2.3.4",
	        "::abc.1.2.3",
	        "::1234.1.2.3",
	        "::ffff:255.255.255.256",
	        "::ffff:0.0.0.0",
	        "fe80::1%eth0",
	        "::ffff:1.2.3.4:",
	        "2001:db8::/32",
	        "2001:db8:::1",
	        "0:0:0:0:0:ffff:c000:0207",
	        "::0.0.0.1",
	        "0000:0000:0000:0000:0000:0000:255.255.255.255",
	        "1.2.3.4:",
	        ":1.2.3.4",
	        "::.",
	        "::1.",
	        ":.",
	        ".",
	        "..",
	        "::ffff:1.2.3.4 ",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		same_as_inet_pton(cases[i], strlen(cases[i]));
	/* a length shorter than the text: the parser reads no further */
	same_as_inet_pton("1.2.3.45", 7);
	same_as_inet_pton("::1:2", 3);
}

Test(ipaddr, parse_random_texts_as_inet_pton)
{
	/* texts of the address alphabet, most of them near-addresses */
	static const char alpha[] = "0123456789abcdefABCDEF.:::....0019fF";
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char s[64];

	for (int k = 0; k < 400000; k++) {
		size_t len;
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		len = (size_t)(x % 48);
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			s[i] = alpha[x % (sizeof(alpha) - 1)];
		}
		same_as_inet_pton(s, len);
		/* and a valid address, mutated at one place */
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		if (x % 2)
			len = (size_t)snprintf(s, sizeof(s), "%u.%u.%u.%u",
			                       (unsigned)(x >> 8) & 255, (unsigned)(x >> 16) & 255,
			                       (unsigned)(x >> 24) & 255,
			                       (unsigned)(x >> 32) & 511);
		else
			len = (size_t)snprintf(
			        s, sizeof(s), "%x:%x::%x:%u.%u.%u.%u", (unsigned)(x >> 8) & 0xffff,
			        (unsigned)(x >> 24) & 0x1ffff, (unsigned)(x >> 40) & 0xff,
			        (unsigned)(x >> 48) & 255, (unsigned)(x >> 52) & 255,
			        (unsigned)(x >> 56) & 255, (unsigned)(x >> 3) & 255);
		same_as_inet_pton(s, len);
		s[(x >> 5) % len] = alpha[(x >> 11) % (sizeof(alpha) - 1)];
		same_as_inet_pton(s, len);
	}
}
