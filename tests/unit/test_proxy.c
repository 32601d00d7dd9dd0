/* Unit tests: the PROXY protocol parser (net/proxy).
 *
 * Every valid header is parsed whole, then as a reader would receive it: split in two at
 * every offset and byte by byte, each call on all bytes so far, always followed by SMTP
 * bytes that must be left alone.  Each call gets an exact-size heap copy, so under ASan a
 * read past len fails the test.  Every error class has cases; each is checked whole and
 * at every prefix (NEED_MORE, then the same error from the first byte that shows it on),
 * and where the case says so, that the error comes at that byte and not later.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxy.h"

#define SMTP_AFTER "EHLO client.example\r\n"

struct bytes {
	uint8_t b[PROXY_V2_MAX + 256];
	size_t n;
};

static void
put(struct bytes *b, const void *p, size_t n)
{
	if (b->n + n > sizeof(b->b))
		cr_assert_fail("test header too long");
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void
put_str(struct bytes *b, const char *s)
{
	put(b, s, strlen(s));
}

static void
put_u8(struct bytes *b, uint8_t v)
{
	put(b, &v, 1);
}

static void
put_be16(struct bytes *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(b, x, 2);
}

static const uint8_t SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* A v2 header with its length field left at len; v2_close() sets the real one. */
static struct bytes
v2_open(uint8_t ver_cmd, uint8_t fam, uint16_t len)
{
	struct bytes b = {.n = 0};

	put(&b, SIG, sizeof(SIG));
	put_u8(&b, ver_cmd);
	put_u8(&b, fam);
	put_be16(&b, len);
	return b;
}

static void
v2_close(struct bytes *b)
{
	size_t len = b->n - 16;
	b->b[14] = (uint8_t)(len >> 8);
	b->b[15] = (uint8_t)len;
}

static void
put_v4(struct bytes *b, uint8_t a, uint8_t b2, uint8_t c, uint8_t d)
{
	uint8_t x[4] = {a, b2, c, d};
	put(b, x, 4);
}

/* 16 bytes of an IPv6 address from its text. */
static void
put_v6(struct bytes *b, const char *text)
{
	struct ipaddr a;
	uint8_t x[16];

	cr_assert_eq(ipaddr_parse(text, strlen(text), &a), 0, "%s", text);
	if (a.family == AF_INET) /* ::ffff:a.b.c.d, as it is on the wire */
		a.v |= (u128)0xffff << 32;
	for (int i = 15; i >= 0; i--, a.v >>= 8)
		x[i] = (uint8_t)a.v;
	put(b, x, 16);
}

static void
put_tlv(struct bytes *b, uint8_t type, const void *v, uint16_t len)
{
	put_u8(b, type);
	put_be16(b, len);
	put(b, v, len);
}

/* CRC32c written independently of proxy.c: table-driven (RFC 3720 §B.4 polynomial). */
static uint32_t
test_crc32c(const uint8_t *p, size_t n)
{
	static uint32_t table[256];
	uint32_t crc = 0xffffffffu;

	if (!table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
			table[i] = c;
		}
	for (size_t i = 0; i < n; i++)
		crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* Appends a CRC32C TLV and fills it in over the closed header. */
static void
put_crc_tlv(struct bytes *b)
{
	size_t at = b->n + 3;
	uint32_t crc;

	put_tlv(b, 0x03, "\0\0\0\0", 4);
	v2_close(b);
	crc = test_crc32c(b->b, b->n);
	b->b[at] = (uint8_t)(crc >> 24);
	b->b[at + 1] = (uint8_t)(crc >> 16);
	b->b[at + 2] = (uint8_t)(crc >> 8);
	b->b[at + 3] = (uint8_t)crc;
}

/* proxy_parse() on an exact-size heap copy of p[0..n): ASan sees any read past n. */
static enum proxy_status
parse_copy(const uint8_t *p, size_t n, struct proxy_header *h)
{
	uint8_t *copy = malloc(n ? n : 1);
	enum proxy_status st;

	if (!copy)
		cr_assert_fail("out of memory");
	memcpy(copy, p, n);
	st = proxy_parse(copy, n, h);
	free(copy);
	return st;
}

struct want {
	int version;
	enum proxy_command command;
	enum proxy_family family;
	const char *src, *dst; /* endpoint_format(); NULL: zeroed */
	unsigned tlvs;
	bool crc32c;
};

/* The hot loops below check with plain ifs: Criterion reports every assertion to its
 * runner, and tens of thousands of passing ones cost seconds. */
static void
expect_header(const struct proxy_header *h, const struct want *w, size_t len, const char *what)
{
	static const struct endpoint zero;
	char s[ENDPOINT_STRLEN], d[ENDPOINT_STRLEN];
	bool ok;

	endpoint_format(&h->src, s, sizeof(s));
	endpoint_format(&h->dst, d, sizeof(d));
	ok = h->len == len && h->version == w->version && h->command == w->command &&
	     h->family == w->family && h->tlvs == w->tlvs && h->crc32c == w->crc32c &&
	     h->error == PROXY_E_NONE;
	if (w->src)
		ok = ok && strcmp(s, w->src) == 0 && strcmp(d, w->dst) == 0;
	else
		ok = ok && memcmp(&h->src, &zero, sizeof(zero)) == 0 &&
		     memcmp(&h->dst, &zero, sizeof(zero)) == 0;
	if (!ok)
		cr_assert_fail("%s: got len %zu version %d command %d family %d tlvs %u crc32c %d "
		               "error %d src %s dst %s; expected len %zu version %d command %d "
		               "family %d tlvs %u crc32c %d src %s dst %s",
		               what, h->len, h->version, h->command, h->family, h->tlvs, h->crc32c,
		               h->error, s, d, len, w->version, w->command, w->family, w->tlvs,
		               w->crc32c, w->src ? w->src : "(zero)", w->dst ? w->dst : "(zero)");
}

/* Reads hdr (followed by SMTP bytes) as a daemon would, in chunks that end at the
 * offsets in cuts[] (ascending, the last one the total), calling the parser on all
 * bytes so far after each: NEED_MORE until the header is complete, then DONE. */
static void
feed_chunks(const struct bytes *in, size_t hdr_len, const size_t *cuts, size_t n_cuts,
            const struct want *w, const char *what)
{
	struct proxy_header h;

	for (size_t k = 0; k < n_cuts; k++) {
		enum proxy_status st = parse_copy(in->b, cuts[k], &h);
		if (cuts[k] < hdr_len) {
			if (st != PROXY_NEED_MORE)
				cr_assert_fail("%s: %zu of %zu bytes gave %d (error: %s)", what,
				               cuts[k], hdr_len, st, proxy_error_text(h.error));
			continue;
		}
		if (st != PROXY_DONE)
			cr_assert_fail("%s: %zu bytes gave %d (error: %s)", what, cuts[k], st,
			               proxy_error_text(h.error));
		expect_header(&h, w, hdr_len, what);
		return;
	}
	cr_assert_fail("%s: never complete", what);
}

/* Whole, split in two at every offset, and byte by byte; SMTP bytes always follow. */
static void
check_valid(const struct bytes *hdr, const struct want *w, const char *what)
{
	struct bytes in = *hdr;
	size_t cuts[sizeof(in.b)];
	char name[200];

	put_str(&in, SMTP_AFTER);
	cuts[0] = in.n;
	feed_chunks(&in, hdr->n, cuts, 1, w, what);
	for (size_t at = 1; at < in.n; at++) {
		size_t two[2] = {at, in.n};
		snprintf(name, sizeof(name), "%s (split at %zu)", what, at);
		feed_chunks(&in, hdr->n, two, 2, w, name);
	}
	for (size_t k = 0; k < in.n; k++)
		cuts[k] = k + 1;
	snprintf(name, sizeof(name), "%s (byte by byte)", what);
	feed_chunks(&in, hdr->n, cuts, in.n, w, name);
}

static void
check_v1(const char *line, const struct want *w)
{
	struct bytes b = {.n = 0};

	put_str(&b, line);
	check_valid(&b, w, line);
}

/* ---- valid headers ----------------------------------------------------------------- */

Test(proxy, v1_tcp4)
{
	struct want w = {.version = 1,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET,
	                 .src = "192.0.2.1:56324",
	                 .dst = "198.51.100.2:25"};
	check_v1("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", &w);

	w.src = "255.255.255.255:65535";
	w.dst = "255.255.255.255:65535";
	check_v1("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", &w);

	w.src = "0.0.0.0:0";
	w.dst = "10.0.0.1:0";
	check_v1("PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", &w);
}

Test(proxy, v1_tcp6)
{
	struct want w = {.version = 1,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET6,
	                 .src = "[2001:db8::1]:4000",
	                 .dst = "[2001:db8::25]:25"};
	check_v1("PROXY TCP6 2001:db8::1 2001:db8::25 4000 25\r\n", &w);

	/* the longest TCP6 line of §2.1: 104 bytes */
	w.src = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
	w.dst = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
	check_v1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	         "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n",
	         &w);

	/* HAProxy writes a v4 side as mapped when the other is IPv6: the family stays
	 * what the line says, the address is IPv4 as everywhere in mxgate */
	w.src = "192.0.2.7:1";
	w.dst = "[2001:db8::25]:25";
	check_v1("PROXY TCP6 ::ffff:192.0.2.7 2001:db8::25 1 25\r\n", &w);
}

Test(proxy, v1_unknown)
{
	struct want w = {.version = 1, .command = PROXY_CMD_PROXY, .family = PROXY_FAM_UNSPEC};

	check_v1("PROXY UNKNOWN\r\n", &w);
	check_v1("PROXY UNKNOWN anything the sender likes 1 2 3\r\n", &w);
	/* §2.1's worst case: exactly 107 bytes */
	check_v1("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	         &w);
}

Test(proxy, v2_proxy_inet)
{
	struct bytes b = v2_open(0x21, 0x11, 0);
	struct want w = {.version = 2,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET,
	                 .src = "192.0.2.1:56324",
	                 .dst = "198.51.100.2:25"};

	put_v4(&b, 192, 0, 2, 1);
	put_v4(&b, 198, 51, 100, 2);
	put_be16(&b, 56324);
	put_be16(&b, 25);
	v2_close(&b);
	cr_assert_eq(b.n, 28);
	check_valid(&b, &w, "v2 PROXY TCP4");
}

Test(proxy, v2_proxy_inet6)
{
	struct bytes b = v2_open(0x21, 0x21, 0);
	struct want w = {.version = 2,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET6,
	                 .src = "[2001:db8::1]:4000",
	                 .dst = "[2001:db8::25]:25"};

	put_v6(&b, "2001:db8::1");
	put_v6(&b, "2001:db8::25");
	put_be16(&b, 4000);
	put_be16(&b, 25);
	v2_close(&b);
	cr_assert_eq(b.n, 52);
	check_valid(&b, &w, "v2 PROXY TCP6");

	/* mixed families, as HAProxy sends them: the IPv4 side mapped */
	b = v2_open(0x21, 0x21, 0);
	put_v6(&b, "::ffff:192.0.2.7");
	put_v6(&b, "2001:db8::25");
	put_be16(&b, 1);
	put_be16(&b, 25);
	v2_close(&b);
	w.src = "192.0.2.7:1";
	check_valid(&b, &w, "v2 PROXY TCP6 mapped");
}

Test(proxy, v2_local)
{
	struct want w = {.version = 2, .command = PROXY_CMD_LOCAL, .family = PROXY_FAM_UNSPEC};
	struct bytes b = v2_open(0x20, 0x00, 0);

	/* HAProxy's health check: LOCAL, UNSPEC, no address */
	check_valid(&b, &w, "v2 LOCAL UNSPEC");

	/* a LOCAL header's addresses are discarded, family included (§2.2) */
	b = v2_open(0x20, 0x11, 0);
	put_v4(&b, 10, 0, 0, 1);
	put_v4(&b, 10, 0, 0, 2);
	put_be16(&b, 1000);
	put_be16(&b, 25);
	v2_close(&b);
	check_valid(&b, &w, "v2 LOCAL TCP4");

	/* and a PROXY with family UNSPEC keeps the connection's own endpoints too */
	w.command = PROXY_CMD_PROXY;
	b = v2_open(0x21, 0x00, 0);
	check_valid(&b, &w, "v2 PROXY UNSPEC");
}

Test(proxy, v2_tlvs_are_skipped)
{
	static const uint8_t ssl[] = {0x01, 0,   0,   0,   0,    0x21, 0, 7,   'T', 'L', 'S',
	                              'v',  '1', '.', '3', 0x23, 0,    4, 'A', 'E', 'S', '!'};
	struct bytes b = v2_open(0x21, 0x11, 0);
	struct want w = {.version = 2,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET,
	                 .src = "192.0.2.1:56324",
	                 .dst = "198.51.100.2:25",
	                 .tlvs = 5};

	put_v4(&b, 192, 0, 2, 1);
	put_v4(&b, 198, 51, 100, 2);
	put_be16(&b, 56324);
	put_be16(&b, 25);
	put_tlv(&b, 0x04, "", 0);                     /* NOOP, zero-length */
	put_tlv(&b, 0x01, "smtp", 4);                 /* ALPN */
	put_tlv(&b, 0xea, "\x01vpce-0123456789", 16); /* a cloud's custom TLV */
	put_tlv(&b, 0x20, ssl, sizeof(ssl));          /* SSL with sub-TLVs, skipped whole */
	put_tlv(&b, 0x05, "", 0);                     /* a zero-length TLV last */
	v2_close(&b);
	check_valid(&b, &w, "v2 with TLVs");

	/* with family UNSPEC the TLVs start right after the fixed 16 bytes */
	b = v2_open(0x20, 0x00, 0);
	put_tlv(&b, 0x04, "xx", 2);
	v2_close(&b);
	struct want local = {
	        .version = 2, .command = PROXY_CMD_LOCAL, .family = PROXY_FAM_UNSPEC, .tlvs = 1};
	check_valid(&b, &local, "v2 LOCAL with a TLV");
}

Test(proxy, v2_crc32c_is_verified)
{
	struct bytes b = v2_open(0x21, 0x21, 0);
	struct want w = {.version = 2,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET6,
	                 .src = "[2001:db8::1]:4000",
	                 .dst = "[2001:db8::25]:25",
	                 .tlvs = 2,
	                 .crc32c = true};

	cr_assert_eq(test_crc32c((const uint8_t *)"123456789", 9), 0xe3069283u,
	             "the test's own CRC32c is wrong");
	put_v6(&b, "2001:db8::1");
	put_v6(&b, "2001:db8::25");
	put_be16(&b, 4000);
	put_be16(&b, 25);
	put_tlv(&b, 0x05, "id-1", 4);
	put_crc_tlv(&b);
	check_valid(&b, &w, "v2 with CRC32C");
}

Test(proxy, v2_longest_accepted)
{
	static uint8_t pad[PROXY_V2_MAX];
	struct bytes b = v2_open(0x21, 0x11, 0);
	struct want w = {.version = 2,
	                 .command = PROXY_CMD_PROXY,
	                 .family = PROXY_FAM_INET,
	                 .src = "192.0.2.1:1",
	                 .dst = "192.0.2.2:2",
	                 .tlvs = 1};

	put_v4(&b, 192, 0, 2, 1);
	put_v4(&b, 192, 0, 2, 2);
	put_be16(&b, 1);
	put_be16(&b, 2);
	put_tlv(&b, 0x04, pad, (uint16_t)(PROXY_V2_MAX - b.n - 3));
	v2_close(&b);
	cr_assert_eq(b.n, PROXY_V2_MAX);
	check_valid(&b, &w, "v2 of PROXY_V2_MAX bytes");
}

/* Headers HAProxy 2.6 sent (captured with tests/e2e/haproxy.py): send-proxy-v2 with
 * proxy-v2-options crc32c,unique-id; send-proxy-v2 and send-proxy over IPv6; the v2 LOCAL
 * header of a health check. */
Test(proxy, headers_haproxy_sent)
{
	static const struct {
		const char *what, *bytes;
		size_t len;
		struct want w;
	} cases[] = {
	        {"crc32c,unique-id",
	         "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x25\x7f\x00\x00\x02"
	         "\x7f\x00\x00\x01\xe6\x8d\x66\x25\x03\x00\x04\x32\x27\xef\xf0\x05\x00\x0f\x31\x32"
	         "\x37\x2e\x30\x2e\x30\x2e\x32\x3a\x35\x39\x30\x32\x31",
	         53,
	         {.version = 2,
	          .command = PROXY_CMD_PROXY,
	          .family = PROXY_FAM_INET,
	          .src = "127.0.0.2:59021",
	          .dst = "127.0.0.1:26149",
	          .tlvs = 2,
	          .crc32c = true}},
	        {"v2 over IPv6",
	         "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x21\x00\x24\x00\x00\x00\x00"
	         "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"
	         "\x00\x00\x00\x00\x00\x00\x00\x01\xc4\x8b\x77\x5a",
	         52,
	         {.version = 2,
	          .command = PROXY_CMD_PROXY,
	          .family = PROXY_FAM_INET6,
	          .src = "[::1]:50315",
	          .dst = "[::1]:30554"}},
	        {"v1 over IPv6",
	         "PROXY TCP6 ::1 ::1 46845 32235\r\n",
	         32,
	         {.version = 1,
	          .command = PROXY_CMD_PROXY,
	          .family = PROXY_FAM_INET6,
	          .src = "[::1]:46845",
	          .dst = "[::1]:32235"}},
	        {"health check",
	         "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x20\x00\x00\x00",
	         16,
	         {.version = 2, .command = PROXY_CMD_LOCAL, .family = PROXY_FAM_UNSPEC}},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bytes b = {.n = 0};
		put(&b, cases[i].bytes, cases[i].len);
		check_valid(&b, &cases[i].w, cases[i].what);
	}
}

/* Only the first header is one: a second PROXY line after it is the client's data. */
Test(proxy, only_the_first_header_counts)
{
	static const char two[] = "PROXY TCP4 192.0.2.1 198.51.100.2 1 25\r\n"
	                          "PROXY TCP4 203.0.113.9 198.51.100.2 2 25\r\n";
	struct proxy_header h;
	char s[ENDPOINT_STRLEN];

	cr_assert_eq(proxy_parse(two, strlen(two), &h), PROXY_DONE);
	cr_expect_eq(h.len, strlen("PROXY TCP4 192.0.2.1 198.51.100.2 1 25\r\n"));
	endpoint_format(&h.src, s, sizeof(s));
	cr_expect_str_eq(s, "192.0.2.1:1");
}

/* ---- errors ----------------------------------------------------------------------- */

struct bad {
	const char *what;
	struct bytes b;
	enum proxy_error error;
	size_t at; /* the error shows at exactly this many bytes; 0: not checked */
};

/* Whole: ERROR with the class.  Every prefix: NEED_MORE, then from the first byte that
 * shows the error, that same error. */
static void
check_bad(const struct bad *c)
{
	struct proxy_header h;
	enum proxy_status st = parse_copy(c->b.b, c->b.n, &h);
	size_t first = 0;

	cr_assert_eq(st, PROXY_ERROR, "%s: status %d, expected an error", c->what, st);
	cr_expect_eq(h.error, c->error, "%s: error %d (%s), expected %d (%s)", c->what, h.error,
	             proxy_error_text(h.error), c->error, proxy_error_text(c->error));
	cr_expect_eq(h.len, 0, "%s", c->what);
	for (size_t k = 0; k <= c->b.n; k++) {
		st = parse_copy(c->b.b, k, &h);
		if (!first && st == PROXY_NEED_MORE)
			continue;
		if (!first)
			first = k;
		if (st != PROXY_ERROR || h.error != c->error)
			cr_assert_fail(
			        "%s: %zu bytes gave status %d error %d after error %d at %zu",
			        c->what, k, st, h.error, c->error, first);
	}
	if (c->at)
		cr_expect_eq(first, c->at, "%s: error at %zu bytes, expected at %zu", c->what,
		             first, c->at);
}

static struct bad
bad_text(const char *what, const char *text, enum proxy_error e, size_t at)
{
	struct bad c = {.what = what, .error = e, .at = at};

	put(&c.b, text, strlen(text));
	return c;
}

static void
check_bad_texts(const struct bad *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_bad(&cases[i]);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

Test(proxy, garbage)
{
	struct bad cases[] = {
	        bad_text("SMTP", "EHLO client.example\r\n", PROXY_E_GARBAGE, 1),
	        bad_text("HTTP", "GET / HTTP/1.1\r\n", PROXY_E_GARBAGE, 1),
	        bad_text("lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_GARBAGE, 1),
	        bad_text("almost PROXY", "PROXZ TCP4", PROXY_E_GARBAGE, 5),
	        bad_text("PRX", "PRXY", PROXY_E_GARBAGE, 3),
	        bad_text("CRLF, not v2", "\r\n\r\nEHLO x\r\n", PROXY_E_GARBAGE, 5),
	};
	check_bad_texts(cases, N(cases));

	struct bad nul = {.what = "NUL", .error = PROXY_E_GARBAGE, .at = 1};
	put(&nul.b, "\0abc", 4);
	check_bad(&nul);

	struct bad sig = {
	        .what = "v2 signature, last byte wrong", .error = PROXY_E_GARBAGE, .at = 12};
	put(&sig.b, SIG, 11);
	put_str(&sig.b, "\x0b\x21\x11\x00\x0c");
	check_bad(&sig);
}

Test(proxy, v1_syntax)
{
	struct bad cases[] = {
	        bad_text("no space", "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_V1_SYNTAX, 6),
	        bad_text("two spaces", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_V1_SYNTAX, 7),
	        bad_text("TCP5", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_V1_SYNTAX, 10),
	        bad_text("UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_V1_SYNTAX, 8),
	        bad_text("tcp4", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", PROXY_E_V1_SYNTAX, 7),
	        bad_text("TCP4 without space", "PROXY TCP4\r\n", PROXY_E_V1_SYNTAX, 11),
	        bad_text("two spaces between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
	                 PROXY_E_V1_SYNTAX, 20),
	        bad_text("tab", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", PROXY_E_V1_ADDRESS, 19),
	        bad_text("line ends after the source", "PROXY TCP4 1.2.3.4\r\n", PROXY_E_V1_SYNTAX,
	                 19),
	        bad_text("line ends after the source port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
	                 PROXY_E_V1_SYNTAX, 29),
	        bad_text("extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", PROXY_E_V1_SYNTAX,
	                 31),
	        bad_text("UNKNOWNX", "PROXY UNKNOWNX\r\n", PROXY_E_V1_SYNTAX, 14),
	        bad_text("control byte after UNKNOWN", "PROXY UNKNOWN a\x01\r\n", PROXY_E_V1_SYNTAX,
	                 16),
	        bad_text("8-bit byte after UNKNOWN", "PROXY UNKNOWN \xc3\xa9\r\n",
	                 PROXY_E_V1_SYNTAX, 15),
	        bad_text("trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", PROXY_E_V1_SYNTAX,
	                 31),
	};
	check_bad_texts(cases, N(cases));
}

Test(proxy, v1_address)
{
	struct bad cases[] = {
	        bad_text("leading zero", "PROXY TCP4 192.0.2.01 5.6.7.8 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 22),
	        bad_text("octet over 255", "PROXY TCP4 256.0.0.1 5.6.7.8 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 21),
	        bad_text("three parts", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", PROXY_E_V1_ADDRESS, 17),
	        bad_text("five parts", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", PROXY_E_V1_ADDRESS,
	                 21),
	        bad_text("IPv6 in TCP4", "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 16),
	        bad_text("IPv6 destination in TCP4", "PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 20),
	        bad_text("IPv4 in TCP6", "PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 21),
	        bad_text("two ::", "PROXY TCP6 1::2::3 ::1 1 2\r\n", PROXY_E_V1_ADDRESS, 19),
	        bad_text("zone id", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", PROXY_E_V1_ADDRESS, 19),
	        bad_text("too long for IPv4", "PROXY TCP4 1111111111111111 5.6.7.8 1 2\r\n",
	                 PROXY_E_V1_ADDRESS, 27),
	        bad_text("hex in TCP4", "PROXY TCP4 1.2.3.a 5.6.7.8 1 2\r\n", PROXY_E_V1_ADDRESS,
	                 18),
	        bad_text("name", "PROXY TCP4 mx.example 5.6.7.8 1 2\r\n", PROXY_E_V1_ADDRESS, 12),
	};
	check_bad_texts(cases, N(cases));
}

Test(proxy, v1_port)
{
	struct bad cases[] = {
	        bad_text("leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 025 25\r\n", PROXY_E_V1_PORT,
	                 29),
	        bad_text("00", "PROXY TCP4 1.2.3.4 5.6.7.8 25 00\r\n", PROXY_E_V1_PORT, 32),
	        bad_text("65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n", PROXY_E_V1_PORT, 32),
	        bad_text("six digits", "PROXY TCP4 1.2.3.4 5.6.7.8 25 100000\r\n", PROXY_E_V1_PORT,
	                 36),
	        bad_text("negative", "PROXY TCP4 1.2.3.4 5.6.7.8 25 -1\r\n", PROXY_E_V1_PORT, 31),
	        bad_text("not decimal", "PROXY TCP4 1.2.3.4 5.6.7.8 0x19 25\r\n", PROXY_E_V1_PORT,
	                 29),
	        bad_text("empty", "PROXY TCP4 1.2.3.4 5.6.7.8 25 \r\n", PROXY_E_V1_PORT, 31),
	};
	check_bad_texts(cases, N(cases));
}

Test(proxy, v1_line_ends)
{
	struct bad cases[] = {
	        bad_text("bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", PROXY_E_V1_EOL, 31),
	        bad_text("CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", PROXY_E_V1_EOL, 32),
	        bad_text("CR then text", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rEHLO", PROXY_E_V1_EOL,
	                 32),
	        bad_text("UNKNOWN LF", "PROXY UNKNOWN\n", PROXY_E_V1_EOL, 14),
	        bad_text("UNKNOWN text LF", "PROXY UNKNOWN a b\n", PROXY_E_V1_EOL, 18),
	        bad_text("LF in an address", "PROXY TCP4 1.2.3.4\n", PROXY_E_V1_EOL, 19),
	};
	check_bad_texts(cases, N(cases));
}

Test(proxy, v1_too_long)
{
	char line[300];

	/* no CRLF at all: the error comes at byte 107, not later */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %0200d", 0);
	struct bad nocrlf = bad_text("no CRLF", line, PROXY_E_V1_TOO_LONG, PROXY_V1_MAX);
	check_bad(&nocrlf);

	/* 108 bytes with the CRLF: one too many */
	snprintf(line, sizeof(line), "PROXY UNKNOWN %092d\r\n", 0);
	cr_assert_eq(strlen(line), 108);
	struct bad over = bad_text("108 bytes", line, PROXY_E_V1_TOO_LONG, PROXY_V1_MAX);
	check_bad(&over);

	/* TCP6 with two long mapped addresses: valid fields, too long a line */
	struct bad mapped = bad_text("long TCP6",
	                             "PROXY TCP6 0000:0000:0000:0000:0000:ffff:192.168.100.200 "
	                             "0000:0000:0000:0000:0000:ffff:192.168.100.201 65535 "
	                             "65535\r\n",
	                             PROXY_E_V1_TOO_LONG, PROXY_V1_MAX);
	check_bad(&mapped);
}

static struct bad
bad_v2(const char *what, uint8_t ver_cmd, uint8_t fam, uint16_t len, enum proxy_error e, size_t at)
{
	struct bad c = {.what = what, .error = e, .at = at};

	c.b = v2_open(ver_cmd, fam, len);
	for (size_t i = 0; i < len && c.b.n < sizeof(c.b.b); i++)
		put_u8(&c.b, 0);
	return c;
}

Test(proxy, v2_fixed_part)
{
	struct bad cases[] = {
	        bad_v2("version 1", 0x11, 0x11, 12, PROXY_E_V2_VERSION, 13),
	        bad_v2("version 3", 0x31, 0x11, 12, PROXY_E_V2_VERSION, 13),
	        bad_v2("command 2", 0x22, 0x11, 12, PROXY_E_V2_COMMAND, 13),
	        bad_v2("command 15", 0x2f, 0x11, 12, PROXY_E_V2_COMMAND, 13),
	        bad_v2("family 4", 0x21, 0x41, 12, PROXY_E_V2_FAMILY, 14),
	        bad_v2("transport 3", 0x21, 0x13, 12, PROXY_E_V2_FAMILY, 14),
	        bad_v2("UNSPEC over STREAM", 0x21, 0x01, 0, PROXY_E_V2_FAMILY, 14),
	        bad_v2("INET over UNSPEC", 0x21, 0x10, 12, PROXY_E_V2_FAMILY, 14),
	        bad_v2("0xff", 0x21, 0xff, 12, PROXY_E_V2_FAMILY, 14),
	        bad_v2("UDP over IPv4", 0x21, 0x12, 12, PROXY_E_V2_UNSUPPORTED, 14),
	        bad_v2("UDP over IPv6", 0x21, 0x22, 36, PROXY_E_V2_UNSUPPORTED, 14),
	        bad_v2("UNIX stream", 0x21, 0x31, 216, PROXY_E_V2_UNSUPPORTED, 14),
	        bad_v2("UNIX datagram", 0x21, 0x32, 216, PROXY_E_V2_UNSUPPORTED, 14),
	        bad_v2("LOCAL over UDP", 0x20, 0x12, 12, PROXY_E_V2_UNSUPPORTED, 14),
	        bad_v2("one byte too long", 0x21, 0x11, PROXY_V2_MAX - 15, PROXY_E_V2_TOO_LONG, 16),
	        bad_v2("65535", 0x21, 0x11, 65535, PROXY_E_V2_TOO_LONG, 16),
	        bad_v2("IPv4 block short", 0x21, 0x11, 11, PROXY_E_V2_SHORT, 16),
	        bad_v2("IPv6 block short", 0x21, 0x21, 35, PROXY_E_V2_SHORT, 16),
	        bad_v2("IPv6 with an IPv4 block", 0x21, 0x21, 12, PROXY_E_V2_SHORT, 16),
	        bad_v2("LOCAL block short", 0x20, 0x11, 0, PROXY_E_V2_SHORT, 16),
	};
	check_bad_texts(cases, N(cases));
}

static struct bad
inet_with(const char *what, enum proxy_error e)
{
	struct bad c = {.what = what, .error = e};

	c.b = v2_open(0x21, 0x11, 0);
	put_v4(&c.b, 192, 0, 2, 1);
	put_v4(&c.b, 198, 51, 100, 2);
	put_be16(&c.b, 56324);
	put_be16(&c.b, 25);
	return c;
}

Test(proxy, v2_tlv_errors)
{
	struct bad c = inet_with("2 bytes after the addresses", PROXY_E_V2_TLV);
	put_str(&c.b, "\x04\x00");
	v2_close(&c.b);
	c.at = c.b.n;
	check_bad(&c);

	c = inet_with("TLV value one byte short", PROXY_E_V2_TLV);
	put_tlv(&c.b, 0x04, "", 0);
	put_tlv(&c.b, 0x01, "smtp", 4);
	c.b.n--; /* the header ends one byte into the value */
	v2_close(&c.b);
	c.at = c.b.n;
	check_bad(&c);

	c = inet_with("TLV length 65535", PROXY_E_V2_TLV);
	put_str(&c.b, "\x05\xff\xff"
	              "abc");
	v2_close(&c.b);
	check_bad(&c);

	c = inet_with("CRC32C TLV of 3 bytes", PROXY_E_V2_TLV);
	put_tlv(&c.b, 0x03, "abc", 3);
	v2_close(&c.b);
	check_bad(&c);

	/* the first one matches (computed with the second in place), the second is one
	 * too many */
	c = inet_with("two CRC32C TLVs", PROXY_E_V2_TLV);
	put_tlv(&c.b, 0x03, "\0\0\0\0", 4);
	put_tlv(&c.b, 0x03, "abcd", 4);
	v2_close(&c.b);
	uint32_t crc = test_crc32c(c.b.b, c.b.n);
	for (int i = 0; i < 4; i++)
		c.b.b[28 + 3 + i] = (uint8_t)(crc >> (24 - 8 * i));
	c.at = c.b.n;
	check_bad(&c);

	c = inet_with("wrong CRC32C", PROXY_E_V2_CRC);
	put_crc_tlv(&c.b);
	c.b.b[20] ^= 1; /* the destination address changed in transit */
	c.at = c.b.n;
	check_bad(&c);

	/* a truncated TLV in an UNSPEC header too */
	c = (struct bad){.what = "LOCAL with a truncated TLV", .error = PROXY_E_V2_TLV};
	c.b = v2_open(0x20, 0x00, 0);
	put_str(&c.b, "\x04\x00\x05xx");
	v2_close(&c.b);
	check_bad(&c);
}

/* ---- the rest of the interface ----------------------------------------------------- */

Test(proxy, empty_input_needs_more)
{
	struct proxy_header h;

	cr_expect_eq(proxy_parse("", 0, &h), PROXY_NEED_MORE);
	cr_expect_eq(proxy_parse(NULL, 0, &h), PROXY_NEED_MORE);
	cr_expect_eq(h.version, 0);
	cr_expect_eq(proxy_parse("P", 1, &h), PROXY_NEED_MORE);
	cr_expect_eq(proxy_parse("\r", 1, &h), PROXY_NEED_MORE);
	/* the version is known before the header is complete, nothing else */
	cr_expect_eq(proxy_parse("PROXY TCP4 192.0.2.1 ", 21, &h), PROXY_NEED_MORE);
	cr_expect_eq(h.version, 1);
	cr_expect_eq(h.family, PROXY_FAM_UNSPEC);
	cr_expect_eq(h.src.addr.v, 0);
	cr_expect_eq(h.len, 0);
}

Test(proxy, error_texts)
{
	for (int e = PROXY_E_NONE; e <= PROXY_E_V2_CRC; e++) {
		const char *t = proxy_error_text((enum proxy_error)e);
		cr_expect(strcmp(t, "unknown error") != 0, "error %d has no text", e);
		for (int f = PROXY_E_NONE; f < e; f++)
			cr_expect_str_neq(t, proxy_error_text((enum proxy_error)f));
	}
	cr_expect_str_eq(proxy_error_text((enum proxy_error)99), "unknown error");
}

static void
expect_format(const char *input, size_t len, const char *want)
{
	struct proxy_header h;
	char buf[PROXY_STRLEN];

	cr_assert_eq(proxy_parse(input, len, &h), PROXY_DONE, "%s", want);
	cr_expect_eq(proxy_format(&h, buf, sizeof(buf)), strlen(want));
	cr_expect_str_eq(buf, want);
}

Test(proxy, format_for_logs)
{
	struct bytes b = v2_open(0x20, 0x00, 0);
	char small[8];
	struct proxy_header h;

	expect_format("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", 44,
	              "v1 PROXY TCP4 192.0.2.1:56324 -> 198.51.100.2:25");
	expect_format("PROXY TCP6 2001:db8::1 2001:db8::25 4000 25\r\n", 45,
	              "v1 PROXY TCP6 [2001:db8::1]:4000 -> [2001:db8::25]:25");
	expect_format("PROXY UNKNOWN\r\n", 15, "v1 PROXY UNKNOWN");
	expect_format((const char *)b.b, b.n, "v2 LOCAL");
	b.b[12] = 0x21;
	expect_format((const char *)b.b, b.n, "v2 PROXY UNSPEC");

	cr_assert_eq(proxy_parse("PROXY UNKNOWN\r\n", 15, &h), PROXY_DONE);
	cr_expect_eq(proxy_format(&h, small, sizeof(small)), sizeof(small) - 1);
	cr_expect_str_eq(small, "v1 PROX");
}
