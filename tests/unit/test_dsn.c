/* Unit tests: the bounce (RFC 3464): the status taken from the reply's enhanced code or
 * made from its class, hostile reply text kept out of the headers, and the parts. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/dsn.h"

static char sender[] = "s@x.example", id[] = "0123456789abcdef";

static char *
build_as(const struct dsn_rcpt *r, size_t n, const char *headers, bool smtputf8)
{
	struct spool_entry e;
	size_t len = 0;
	char *out;

	memset(&e, 0, sizeof(e));
	snprintf(e.id, sizeof(e.id), "%s", id);
	e.sender = sender;
	e.received = 1700000000;
	e.smtputf8 = smtputf8;
	out = dsn_build(&e, r, n, "gw.example", headers, headers ? strlen(headers) : 0, 1700000100,
	                &len);
	cr_assert_not_null(out);
	cr_assert_eq(strlen(out), len);
	return out;
}

static char *
build(const struct dsn_rcpt *r, size_t n, const char *headers)
{
	return build_as(r, n, headers, false);
}

Test(dsn, status_from_the_enhanced_code_or_the_class)
{
	static const struct {
		int code;
		const char *text, *want;
	} cases[] = {
	        {550, "5.1.1 no such user", "Status: 5.1.1\r\n"},
	        {554, "5.7.1", "Status: 5.7.1\r\n"},
	        {451, "4.3.0 later", "Status: 4.3.0\r\n"},
	        {550, "no enhanced code", "Status: 5.0.0\r\n"},
	        {451, "4.3 short", "Status: 4.0.0\r\n"},
	        {550, "5.1.1000 too long a part", "Status: 5.0.0\r\n"},
	        {550, "3.1.1 not a class", "Status: 5.0.0\r\n"},
	        {0, "", "Status: 5.0.0\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dsn_rcpt r = {
		        .addr = "a@example.com", .code = cases[i].code, .text = cases[i].text};
		char *out = build(&r, 1, NULL);
		cr_assert(strstr(out, cases[i].want), "case %zu: %s", i, out);
		free(out);
	}
}

Test(dsn, parts_and_hostile_text)
{
	struct dsn_rcpt r[2] = {
	        {.addr = "a@example.com",
	         .code = 550,
	         .text = "5.1.1 x\r\nBcc: evil",
	         .remote = "mx"},
	        {.addr = "b@example.com", .code = 452, .text = "4.2.2 full"},
	};
	char *out = build(r, 2, "Subject: hi\r\n");

	cr_assert(strstr(out, "To: <s@x.example>\r\n"));
	cr_assert(strstr(out, "report-type=delivery-status"));
	cr_assert(strstr(out, "recipients.\r\n"));
	cr_assert(strstr(out, "<a@example.com>: host mx said: 550 5.1.1 x??Bcc: evil\r\n"));
	cr_assert_null(strstr(out, "\r\nBcc:"));
	cr_assert(strstr(out, "Final-Recipient: rfc822; b@example.com\r\n"));
	cr_assert(strstr(out, "Remote-MTA: dns; mx\r\n"));
	cr_assert(strstr(out, "text/rfc822-headers\r\n\r\nSubject: hi\r\n"));
	cr_assert(strstr(out, "--0123456789abcdef/gw.example--\r\n"));
	free(out);
}

/* RFC 6533: an SMTPUTF8 message's bounce in the global types, its UTF-8 address as it is */
Test(dsn, an_smtputf8_message_bounces_in_the_global_types)
{
	struct dsn_rcpt r[] = {{"j\xc3\xb8rn@example.com", 550, "5.1.1 unknown", NULL},
	                       {"b@example.com", 550, "5.1.1 unknown", NULL}};
	char *out = build_as(r, 2, "Subject: hi\r\n", true);

	cr_expect(strstr(out, "report-type=delivery-status"), "%s", out);
	cr_expect(strstr(out, "Content-Type: text/plain; charset=utf-8\r\n"), "%s", out);
	cr_expect(strstr(out, "Content-Type: message/global-delivery-status\r\n"), "%s", out);
	cr_expect(strstr(out, "Final-Recipient: utf-8; j\xc3\xb8rn@example.com\r\n"), "%s", out);
	cr_expect(strstr(out, "Final-Recipient: rfc822; b@example.com\r\n"), "%s", out);
	cr_expect(strstr(out, "Content-Type: message/global-headers\r\n\r\nSubject: hi\r\n"), "%s",
	          out);
	free(out);
	/* the same recipients of a message without SMTPUTF8: the classic types */
	out = build_as(r + 1, 1, "Subject: hi\r\n", false);
	cr_expect(strstr(out, "charset=us-ascii"), "%s", out);
	cr_expect(strstr(out, "Content-Type: message/delivery-status\r\n"), "%s", out);
	cr_expect(strstr(out, "text/rfc822-headers"), "%s", out);
	free(out);
}
