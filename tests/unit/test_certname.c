/* Unit tests: certname, the RFC 6125 matcher behind tls-sender-certificate-name. */
#include <criterion/criterion.h>
#include <string.h>

#include "base/certname.h"

static bool
m(const char *expected, const char *presented)
{
	return certname_match(expected, presented, strlen(presented));
}

Test(certname, exact_names_match_ignoring_case_and_one_trailing_dot)
{
	cr_expect(m("mail.example.com", "mail.example.com"));
	cr_expect(m("mail.example.com", "MAIL.Example.COM"));
	cr_expect(m("mail.example.com.", "mail.example.com"));
	cr_expect(m("mail.example.com", "mail.example.com."));
	cr_expect_not(m("mail.example.com", "mail.example.co"));
	cr_expect_not(m("mail.example.com", "xmail.example.com"));
	cr_expect_not(m("mail.example.com", "mail.example.com.evil.test"));
	cr_expect_not(m("mail.example.com", ""));
}

Test(certname, an_expected_wildcard_stands_for_exactly_one_label)
{
	cr_expect(m("*.example.com", "a.example.com"));
	cr_expect(m("*.example.com", "Outbound-1.EXAMPLE.com"));
	cr_expect_not(m("*.example.com", "a.b.example.com"));
	cr_expect_not(m("*.example.com", "example.com"));
	cr_expect_not(m("*.example.com", ".example.com"));
	cr_expect_not(m("*.example.com", "a.example.org"));
	cr_expect_not(m("*.example.com", "aexample.com"));
	/* the same wildcard in the certificate */
	cr_expect(m("*.example.com", "*.example.com"));
	cr_expect_not(m("*.example.com", "*.b.example.com"));
}

Test(certname, a_presented_wildcard_counts_only_as_a_whole_leftmost_label)
{
	cr_expect(m("a.example.com", "*.example.com"));
	cr_expect_not(m("a.b.example.com", "*.example.com"));
	cr_expect_not(m("example.com", "*.example.com"));
	/* partial-label and inner wildcards, and a wildcard over a single label */
	cr_expect_not(m("foo.example.com", "f*.example.com"));
	cr_expect_not(m("foo.example.com", "*o.example.com"));
	cr_expect_not(m("a.b.example.com", "a.*.example.com"));
	cr_expect_not(m("example.com", "*.com"));
	cr_expect_not(m("a.example.com", "*"));
}

Test(certname, hostile_presented_names_match_nothing)
{
	cr_expect_not(certname_match("a.example.com", "a.example.com\0.evil", 19));
	cr_expect_not(m("a.example.com", "a.example.com\r\n250 ok"));
	cr_expect_not(m("a.example.com", "a..example.com"));
	cr_expect_not(m("a.example.com", "a example.com"));
	cr_expect_not(m("*.example.com", "\xc3\xa9.example.com"));
	char longlabel[80];
	memset(longlabel, 'a', 64);
	strcpy(longlabel + 64, ".example.com");
	cr_expect_not(m("*.example.com", longlabel));
}

Test(certname, only_dns_names_of_two_labels_may_be_configured)
{
	const char *why = NULL;

	cr_expect(certname_valid("mail.example.com", &why));
	cr_expect(certname_valid("*.example.com", &why));
	cr_expect(certname_valid("*.outbound.protection.outlook.com", &why));
	cr_expect_not(certname_valid("com", &why));
	cr_expect(strstr(why, "single label") != NULL);
	cr_expect_not(certname_valid("*.com", &why));
	cr_expect_not(certname_valid("f*.example.com", &why));
	cr_expect(strstr(why, "wildcard") != NULL);
	cr_expect_not(certname_valid("a.*.example.com", &why));
	cr_expect_not(certname_valid("", &why));
	cr_expect_not(certname_valid("a b.example.com", &why));
}

Test(certname, printable_copies_cannot_carry_a_line_break)
{
	char out[32];

	cr_expect_str_eq(certname_printable("a.example.com\r\n550 x", 20, out, sizeof(out)),
	                 "a.example.com??550?x");
	cr_expect_str_eq(certname_printable("a\0b", 3, out, sizeof(out)), "a?b");
	cr_expect_str_eq(
	        certname_printable("0123456789012345678901234567890123456789", 40, out, 12),
	        "01234567...");
}
