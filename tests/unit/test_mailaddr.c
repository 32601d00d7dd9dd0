/* Unit tests: RFC 5321 path syntax (mailaddr_parse), routing characters, and
 * mailaddr_format round trips.  Every input is parsed from a heap copy of exactly its
 * length, so a read past the end is caught under ASan. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mailaddr.h"

#define OK        MAILADDR_OK
#define SYNTAX    MAILADDR_SYNTAX
#define TOO_LONG  MAILADDR_TOO_LONG
#define NEED_UTF8 MAILADDR_NEED_UTF8

/* flags for a case */
#define F_NULL   1  /* allow_null */
#define F_UTF8   2  /* utf8 */
#define F_QUOTED 4  /* expected: quoted */
#define F_LIT    8  /* expected: literal */
#define F_ROUTED 16 /* expected: routed */
#define F_HASU   32 /* expected: utf8 */

static enum mailaddr_err
parse(const char *s, size_t len, unsigned flags, struct mailaddr *a, size_t *used)
{
	char *copy = malloc(len ? len : 1);
	enum mailaddr_err e;

	cr_assert_not_null(copy);
	memcpy(copy, s, len);
	e = mailaddr_parse(copy, len, flags & F_NULL, flags & F_UTF8, a, used);
	free(copy);
	return e;
}

static const struct pcase {
	const char *in; /* the path, maybe followed by what comes after it */
	unsigned flags;
	enum mailaddr_err err;
	const char *local, *domain; /* on OK */
	size_t used;                /* on OK; 0: strlen(in) */
} cases[] = {
        /* dot-atoms */
        {"<a@b>", 0, OK, "a", "b", 0},
        {"<user@example.com>", 0, OK, "user", "example.com", 0},
        {"<First.Last@Example.COM>", 0, OK, "First.Last", "example.com", 0},
        {"<!#$%&'*+-/=?^_`{|}~@x.example>", 0, OK, "!#$%&'*+-/=?^_`{|}~", "x.example", 0},
        {"<a.b.c@x-y.example>", 0, OK, "a.b.c", "x-y.example", 0},
        {"<1@2.3>", 0, OK, "1", "2.3", 0},
        {"<a@b> SIZE=10", 0, OK, "a", "b", 5},
        {"<a@b>>", 0, OK, "a", "b", 5},
        {"<a..b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<.a@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a.@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a(b)@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a,b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a;b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a:b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a\\b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a[b]@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a<b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@b", 0, SYNTAX, NULL, NULL, 0},
        {"a@b", 0, SYNTAX, NULL, NULL, 0},
        {" <a@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@b@c>", 0, SYNTAX, NULL, NULL, 0},
        {"<a @b>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@ b>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@b >", 0, SYNTAX, NULL, NULL, 0},
        {"", 0, SYNTAX, NULL, NULL, 0},
        {"<", 0, SYNTAX, NULL, NULL, 0},
        /* the null path */
        {"<>", F_NULL, OK, "", "", 0},
        {"<> BODY=8BITMIME", F_NULL, OK, "", "", 2},
        {"<>", 0, SYNTAX, NULL, NULL, 0},
        {"< >", F_NULL, SYNTAX, NULL, NULL, 0},
        {"<@a:>", F_NULL, SYNTAX, NULL, NULL, 0},
        /* domains */
        {"<a@b.c.d.e>", 0, OK, "a", "b.c.d.e", 0},
        {"<a@x--y.example>", 0, OK, "a", "x--y.example", 0},
        {"<a@123.example>", 0, OK, "a", "123.example", 0},
        {"<a@-x.example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x-.example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x.example->", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x..example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@.example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@example.>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x_y.example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x y.example>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x%y.example>", 0, SYNTAX, NULL, NULL, 0},
        /* quoted local parts (RFC 5321 §4.1.2: qtextSMTP and quoted-pairSMTP) */
        {"<\"a b\"@x>", F_QUOTED, OK, "a b", "x", 0},
        {"<\"a\\\"b\"@x>", F_QUOTED, OK, "a\"b", "x", 0},
        {"<\"a\\\\b\"@x>", F_QUOTED, OK, "a\\b", "x", 0},
        {"<\"\\a\\b\"@x>", F_QUOTED, OK, "ab", "x", 0},
        {"<\"a@b\"@x>", F_QUOTED, OK, "a@b", "x", 0},
        {"<\"..\"@x>", F_QUOTED, OK, "..", "x", 0},
        {"<\"<>\"@x>", F_QUOTED, OK, "<>", "x", 0},
        {"<\" \"@x>", F_QUOTED, OK, " ", "x", 0},
        {"<\"\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\"b@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a\"b\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\tb\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\\\tb\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\x7f\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\\\x7f\"@x>", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\\", 0, SYNTAX, NULL, NULL, 0},
        {"<\"a\r\n\"@x>", 0, SYNTAX, NULL, NULL, 0},
        /* address literals (RFC 5321 §4.1.3) */
        {"<a@[192.0.2.1]>", F_LIT, OK, "a", "[192.0.2.1]", 0},
        {"<a@[IPv6:2001:DB8::1]>", F_LIT, OK, "a", "[ipv6:2001:db8::1]", 0},
        {"<a@[ipv6:::1]>", F_LIT, OK, "a", "[ipv6:::1]", 0},
        {"<a@[IPv6:::ffff:192.0.2.1]>", F_LIT, OK, "a", "[ipv6:::ffff:192.0.2.1]", 0},
        {"<a@[x-tag:any!thing]>", F_LIT, OK, "a", "[x-tag:any!thing]", 0},
        {"<a@[]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[foo]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[300.1.1.1]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.3]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.3.4.5]>", 0, SYNTAX, NULL, NULL, 0},
        /* "2001" is an Ldh-str: a General-address-literal by the ABNF */
        {"<a@[2001:db8::1]>", F_LIT, OK, "a", "[2001:db8::1]", 0},
        {"<a@[IPv6:1.2.3.4]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[IPv6:zz::1]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[IPv6:]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[tag:]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[:x]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[tag-:x]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[t_g:x]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.3.4>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.3.4]x>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.3.4 ]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2.[3].4]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@[1.2\\.3.4]>", 0, SYNTAX, NULL, NULL, 0},
        {"<a@x.[1.2.3.4]>", 0, SYNTAX, NULL, NULL, 0},
        /* source routes: parsed and dropped */
        {"<@r.example:a@b>", F_ROUTED, OK, "a", "b", 0},
        {"<@r1.example,@r2.example:a@b>", F_ROUTED, OK, "a", "b", 0},
        {"<@r.example:\"a b\"@b>", F_ROUTED | F_QUOTED, OK, "a b", "b", 0},
        {"<@r.example,r2.example:a@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<@r.example;a@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<@:a@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<@r.example:>", 0, SYNTAX, NULL, NULL, 0},
        {"<@r.example:@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<@[192.0.2.1]:a@b>", 0, SYNTAX, NULL, NULL, 0},
        {"<@r.example,:a@b>", 0, SYNTAX, NULL, NULL, 0},
        /* UTF-8 (RFC 6531): only with the flag; never when invalid */
        {"<j\xc3\xb6rg@x>", F_UTF8 | F_HASU, OK, "j\xc3\xb6rg", "x", 0},
        {"<j\xc3\xb6rg@x>", 0, NEED_UTF8, NULL, NULL, 0},
        {"<a@b\xc3\xbc"
         "cher.example>",
         F_UTF8 | F_HASU, OK, "a",
         "b\xc3\xbc"
         "cher.example",
         0},
        {"<a@b\xc3\xbc"
         "cher.example>",
         0, NEED_UTF8, NULL, NULL, 0},
        {"<\"\xe2\x9c\x93 x\"@x>", F_UTF8 | F_HASU | F_QUOTED, OK, "\xe2\x9c\x93 x", "x", 0},
        {"<\"\xe2\x9c\x93 x\"@x>", 0, NEED_UTF8, NULL, NULL, 0},
        {"<\xf0\x9f\x93\xa7@x>", F_UTF8 | F_HASU, OK, "\xf0\x9f\x93\xa7", "x", 0},
        {"<@r\xc3\xa9.example:a@x>", F_UTF8 | F_HASU | F_ROUTED, OK, "a", "x", 0},
        {"<@r\xc3\xa9.example:a@x>", 0, NEED_UTF8, NULL, NULL, 0},
        {"<\xc3@x>", F_UTF8, SYNTAX, NULL, NULL, 0},             /* truncated */
        {"<\xc3(@x>", F_UTF8, SYNTAX, NULL, NULL, 0},            /* bad continuation */
        {"<\x80@x>", F_UTF8, SYNTAX, NULL, NULL, 0},             /* lone continuation */
        {"<\xc0\x80@x>", F_UTF8, SYNTAX, NULL, NULL, 0},         /* overlong NUL */
        {"<\xc1\xbf@x>", F_UTF8, SYNTAX, NULL, NULL, 0},         /* overlong */
        {"<\xe0\x80\xaf@x>", F_UTF8, SYNTAX, NULL, NULL, 0},     /* overlong '/' */
        {"<\xed\xa0\x80@x>", F_UTF8, SYNTAX, NULL, NULL, 0},     /* surrogate */
        {"<\xf4\x90\x80\x80@x>", F_UTF8, SYNTAX, NULL, NULL, 0}, /* past U+10FFFF */
        {"<\xf8\x88\x80\x80\x80@x>", F_UTF8, SYNTAX, NULL, NULL, 0},
        {"<\xff@x>", F_UTF8, SYNTAX, NULL, NULL, 0},
        {"<a@x\xc3>", F_UTF8, SYNTAX, NULL, NULL, 0},
        {"<\xc3\x80@x>", 0, NEED_UTF8, NULL, NULL, 0},
        {"<\xc3@x>", 0, SYNTAX, NULL, NULL, 0},
};

static void
check_case(size_t i, const struct pcase *c)
{
	struct mailaddr a;
	size_t used = 12345, len = strlen(c->in);
	enum mailaddr_err e = parse(c->in, len, c->flags, &a, &used);

	cr_expect_eq(e, c->err, "case %zu %s: error %d, expected %d", i, c->in, e, c->err);
	if (e != OK || c->err != OK)
		return;
	cr_expect_str_eq(a.local, c->local, "case %zu %s: local part", i, c->in);
	cr_expect_str_eq(a.domain, c->domain, "case %zu %s: domain", i, c->in);
	cr_expect_eq(used, c->used ? c->used : len, "case %zu %s: used %zu", i, c->in, used);
	cr_expect_eq(a.null, c->local[0] == '\0', "case %zu %s: null", i, c->in);
	cr_expect_eq(a.quoted, !!(c->flags & F_QUOTED), "case %zu %s: quoted", i, c->in);
	cr_expect_eq(a.literal, !!(c->flags & F_LIT), "case %zu %s: literal", i, c->in);
	cr_expect_eq(a.routed, !!(c->flags & F_ROUTED), "case %zu %s: routed", i, c->in);
	cr_expect_eq(a.utf8, !!(c->flags & F_HASU), "case %zu %s: utf8", i, c->in);
	/* no shorter input is a path: the '>' is what ends it */
	for (size_t n = 0; n < used; n++)
		cr_expect_neq(parse(c->in, n, c->flags, &a, &used), OK, "case %zu: prefix %zu", i,
		              n);
}

Test(mailaddr, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_case(i, &cases[i]);
}

Test(mailaddr, utf8_flag_only_widens)
{
	/* whatever parses without utf8 parses the same with it */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		struct mailaddr a, b;
		size_t ua = 0, ub = 0, len = strlen(c->in);
		enum mailaddr_err ea = parse(c->in, len, c->flags & ~F_UTF8, &a, &ua);
		enum mailaddr_err eb = parse(c->in, len, c->flags | F_UTF8, &b, &ub);
		if (ea == OK) {
			cr_expect_eq(eb, OK, "case %zu %s", i, c->in);
			cr_expect_str_eq(a.local, b.local);
			cr_expect_str_eq(a.domain, b.domain);
			cr_expect_eq(ua, ub);
		}
		if (ea == NEED_UTF8)
			cr_expect_eq(eb, OK, "case %zu %s: NEED_UTF8 but not OK with utf8", i,
			             c->in);
		if (eb == OK && !b.utf8)
			cr_expect_eq(ea, OK, "case %zu %s: ASCII needs no utf8", i, c->in);
	}
}

/* "<" local "@" domain ">" from repeated characters. */
static size_t
make_path(char *buf, size_t size, size_t local, char lc, size_t domain_labels, size_t last_label)
{
	size_t n = 0;

	buf[n++] = '<';
	for (size_t i = 0; i < local; i++)
		buf[n++] = lc;
	buf[n++] = '@';
	for (size_t l = 0; l < domain_labels; l++) {
		size_t ll = l + 1 == domain_labels ? last_label : 63;
		for (size_t i = 0; i < ll; i++)
			buf[n++] = 'd';
		if (l + 1 < domain_labels)
			buf[n++] = '.';
	}
	buf[n++] = '>';
	cr_assert_lt(n, size);
	buf[n] = '\0';
	return n;
}

Test(mailaddr, length_limits)
{
	char buf[2048];
	struct mailaddr a;
	size_t used, n;

	/* RFC 5321 §4.5.3.1.1: local part 64 octets */
	n = make_path(buf, sizeof(buf), 64, 'l', 1, 10);
	cr_expect_eq(parse(buf, n, 0, &a, &used), OK);
	cr_expect_eq(strlen(a.local), 64u);
	n = make_path(buf, sizeof(buf), 65, 'l', 1, 10);
	cr_expect_eq(parse(buf, n, 0, &a, &used), TOO_LONG);
	/* 64 octets of UTF-8 (32 two-octet characters), then 66 */
	n = (size_t)snprintf(buf, sizeof(buf), "<%s@x>",
	                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	cr_expect_eq(parse(buf, n, F_UTF8, &a, &used), OK);
	char longer[300];
	n = (size_t)snprintf(longer, sizeof(longer), "<\xc3\xa9%s", buf + 1);
	cr_expect_eq(parse(longer, n, F_UTF8, &a, &used), TOO_LONG);
	/* a quoted local part counts its octets once unquoted: 64 escaped pairs pass */
	n = 0;
	buf[n++] = '<';
	buf[n++] = '"';
	for (int i = 0; i < 64; i++)
		buf[n++] = '\\', buf[n++] = 'q';
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\"@x>");
	cr_expect_eq(parse(buf, n, 0, &a, &used), OK);
	cr_expect_eq(strlen(a.local), 64u);
	memmove(buf + 4, buf + 2, n - 2);
	buf[2] = '\\', buf[3] = 'q';
	cr_expect_eq(parse(buf, n + 2, 0, &a, &used), TOO_LONG);

	/* §4.5.3.1.3: the whole path 256 octets, brackets included.  A domain label is at
	 * most 63 (syntax); 1 + 64 + 1 + 189 + 1 = 256 */
	n = make_path(buf, sizeof(buf), 64, 'l', 3, 61);
	cr_expect_eq(n, 256u);
	cr_expect_eq(parse(buf, n, 0, &a, &used), OK);
	cr_expect_eq(used, 256u);
	n = make_path(buf, sizeof(buf), 64, 'l', 3, 62);
	cr_expect_eq(n, 257u);
	cr_expect_eq(parse(buf, n, 0, &a, &used), TOO_LONG);
	n = make_path(buf, sizeof(buf), 1, 'l', 1, 63);
	cr_expect_eq(parse(buf, n, 0, &a, &used), OK);
	n = make_path(buf, sizeof(buf), 1, 'l', 1, 64);
	cr_expect_eq(parse(buf, n, 0, &a, &used), SYNTAX, "a label of 64");

	/* §4.5.3.1.2: a domain is at most 255 octets, even in a source route (which does not
	 * count to the 256 of the path: it is dropped) */
	static const char r63[] = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";
	char route[600];
	n = (size_t)snprintf(route, sizeof(route), "<@%s.%s.%s.%s:a@b>", r63, r63, r63, r63);
	cr_expect_eq(n, 2 + 255 + 5u);
	cr_expect_eq(parse(route, n, 0, &a, &used), OK);
	cr_expect(a.routed);
	cr_expect_str_eq(a.domain, "b");
	n = (size_t)snprintf(route, sizeof(route), "<@%s.%s.%s.%.62s.x:a@b>", r63, r63, r63, r63);
	cr_expect_eq(n, 2 + 256 + 5u);
	cr_expect_eq(parse(route, n, 0, &a, &used), TOO_LONG, "a route domain of 256");
	/* the path kept (route dropped) is held to 256 too: a route in front of a mailbox of
	 * 257 octets with its brackets does not make it fit */
	n = make_path(buf, sizeof(buf), 64, 'l', 3, 61);
	n = (size_t)snprintf(route, sizeof(route), "<@b:%s", buf + 1);
	cr_expect_eq(parse(route, n, 0, &a, &used), OK, "a mailbox of 256 behind a route");
	n = make_path(buf, sizeof(buf), 64, 'l', 3, 62);
	n = (size_t)snprintf(route, sizeof(route), "<@b:%s", buf + 1);
	cr_expect_eq(parse(route, n, 0, &a, &used), TOO_LONG, "a mailbox of 257 behind a route");
	/* and the domain of the mailbox: 255 is over the path limit already */
	n = (size_t)snprintf(route, sizeof(route), "<a@%s.%s.%s.%s>", r63, r63, r63, r63);
	cr_expect_eq(parse(route, n, 0, &a, &used), TOO_LONG);
}

Test(mailaddr, routing_characters)
{
	static const struct {
		const char *in;
		bool routing;
	} t[] = {
	        {"<user@x>", false},           {"<user%y@x>", true},    {"<y!user@x>", true},
	        {"<\"user@y\"@x>", true},      {"<\"a\\@b\"@x>", true}, {"<@y:user@x>", false},
	        {"<\"us er\"@x>", false},      {"<\"%\"@x>", true},     {"<user+tag@x>", false},
	        {"<user@[192.0.2.1]>", false},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct mailaddr a;
		size_t used;
		cr_assert_eq(parse(t[i].in, strlen(t[i].in), 0, &a, &used), OK, "%s", t[i].in);
		cr_expect_eq(mailaddr_has_routing(&a), t[i].routing, "%s", t[i].in);
	}
}

/* Formats a, and checks that the text parses back to the same mailbox and that any
 * smaller buffer gets a NUL-terminated prefix and the same length. */
static void
round_trip(const char *in, unsigned flags, const char *want)
{
	struct mailaddr a, b;
	char buf[600], path[610], small[600];
	size_t used, n;

	cr_assert_eq(parse(in, strlen(in), flags, &a, &used), OK, "%s", in);
	n = mailaddr_format(&a, buf, sizeof(buf));
	cr_expect_eq(n, strlen(buf), "%s", in);
	if (want)
		cr_expect_str_eq(buf, want, "%s", in);
	if (a.null)
		return;
	snprintf(path, sizeof(path), "<%s>", buf);
	cr_assert_eq(parse(path, strlen(path), flags, &b, &used), OK, "%s -> %s", in, path);
	cr_expect_eq(used, strlen(path));
	cr_expect_str_eq(b.local, a.local, "%s -> %s", in, path);
	cr_expect_str_eq(b.domain, a.domain, "%s -> %s", in, path);
	cr_expect_eq(b.literal, a.literal);
	if (!a.routed) /* non-ASCII in a dropped route is gone with it */
		cr_expect_eq(b.utf8, a.utf8, "%s -> %s", in, path);
	cr_expect(!b.routed);
	for (size_t size = 0; size <= n; size++) {
		memset(small, 'Z', sizeof(small));
		cr_expect_eq(mailaddr_format(&a, small, size), n, "%s: size %zu", in, size);
		if (size > 0) {
			cr_expect_eq(strlen(small), size - 1, "%s: size %zu", in, size);
			cr_expect(strncmp(small, buf, size - 1) == 0, "%s: size %zu", in, size);
		} else {
			cr_expect_eq(small[0], 'Z', "size 0 writes nothing");
		}
	}
}

Test(mailaddr, format_round_trips)
{
	static const struct {
		const char *in, *out;
		unsigned flags;
	} t[] = {
	        {"<user@example.com>", "user@example.com", 0},
	        {"<User@EXAMPLE.com>", "User@example.com", 0},
	        {"<>", "", F_NULL},
	        {"<\"user\"@x>", "user@x", 0},
	        {"<\"a.b\"@x>", "a.b@x", 0},
	        {"<\"a b\"@x>", "\"a b\"@x", 0},
	        {"<\"a\\\"b\"@x>", "\"a\\\"b\"@x", 0},
	        {"<\"a\\\\b\"@x>", "\"a\\\\b\"@x", 0},
	        {"<\"a..b\"@x>", "\"a..b\"@x", 0},
	        {"<\".a\"@x>", "\".a\"@x", 0},
	        {"<\"a.\"@x>", "\"a.\"@x", 0},
	        {"<\".\"@x>", "\".\"@x", 0},
	        {"<\"a@b\"@x>", "\"a@b\"@x", 0},
	        {"<\"a,b\"@x>", "\"a,b\"@x", 0},
	        {"<\"(c)\"@x>", "\"(c)\"@x", 0},
	        {"<\"\\a\"@x>", "a@x", 0},
	        {"<@r.example:a@x>", "a@x", 0},
	        {"<a@[IPv6:2001:DB8::1]>", "a@[ipv6:2001:db8::1]", 0},
	        {"<a@[192.0.2.1]>", "a@[192.0.2.1]", 0},
	        {"<a@[tag:Content]>", "a@[tag:content]", 0},
	        {"<j\xc3\xb6rg@b\xc3\xbc"
	         "cher.example>",
	         "j\xc3\xb6rg@b\xc3\xbc"
	         "cher.example",
	         F_UTF8},
	        {"<\"j\xc3\xb6 rg\"@x>", "\"j\xc3\xb6 rg\"@x", F_UTF8},
	        {"<!#$%&'*+-/=?^_`{|}~@x>", "!#$%&'*+-/=?^_`{|}~@x", 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		round_trip(t[i].in, t[i].flags, t[i].out);
	/* every OK case of the table */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (cases[i].err == OK)
			round_trip(cases[i].in, cases[i].flags, NULL);
}

Test(mailaddr, format_longest_local_part)
{
	/* 64 octets that all need escaping: the buffer smtp.c sizes for it is enough */
	char in[300];
	size_t n = 0;
	struct mailaddr a;
	char buf[MAILADDR_LOCAL_MAX * 2 + MAILADDR_DOMAIN_MAX + 8];

	in[n++] = '<';
	in[n++] = '"';
	for (int i = 0; i < 64; i++)
		in[n++] = '\\', in[n++] = i % 2 ? '"' : '\\';
	n += (size_t)snprintf(in + n, sizeof(in) - n, "\"@x>");
	cr_assert_eq(parse(in, n, 0, &a, &n), OK);
	cr_expect_eq(mailaddr_format(&a, buf, sizeof(buf)), 2 + 128 + 2);
	round_trip(in, 0, NULL);
}
