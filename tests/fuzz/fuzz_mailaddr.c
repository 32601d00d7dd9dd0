/* libFuzzer target: the RFC 5321 path parser.  The first byte picks allow_null and utf8,
 * the rest is the path.  Invariants: a parsed path starts with '<' and ends with the
 * '>' at used; the parts are within their limits, hold no control characters and no
 * non-ASCII without utf8; the utf8 flag only widens what parses; the formatted address
 * is never longer than the path, parses back to the same mailbox, and is cut cleanly
 * into any smaller buffer. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mailaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(const char *s, bool utf8)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailaddr a, b;
	char buf[MAILADDR_LOCAL_MAX * 2 + MAILADDR_DOMAIN_MAX + 8], path[sizeof(buf) + 2];
	char small[sizeof(buf)];
	size_t used = 0, used2 = 0, n;
	enum mailaddr_err e, e2;

	if (size < 1)
		return 0;
	bool allow_null = data[0] & 1, utf8 = data[0] & 2;
	const char *s = (const char *)data + 1;
	size--;

	e = mailaddr_parse(s, size, allow_null, utf8, &a, &used);
	e2 = mailaddr_parse(s, size, allow_null, !utf8, &b, &used2);
	/* utf8 only widens: OK without it is OK with it, the same; NEED_UTF8 becomes OK */
	const struct mailaddr *narrow = utf8 ? &b : &a, *wide = utf8 ? &a : &b;
	enum mailaddr_err en = utf8 ? e2 : e, ew = utf8 ? e : e2;
	if (en == MAILADDR_OK && (ew != MAILADDR_OK || strcmp(narrow->local, wide->local) != 0 ||
	                          strcmp(narrow->domain, wide->domain) != 0 || used != used2))
		abort();
	if (en == MAILADDR_NEED_UTF8 && ew != MAILADDR_OK)
		abort();
	if (ew == MAILADDR_OK && !wide->utf8 && en != MAILADDR_OK)
		abort();
	if (e != MAILADDR_OK)
		return 0;

	if (used < 2 || used > size || s[0] != '<' || s[used - 1] != '>')
		abort();
	if (strlen(a.local) > MAILADDR_LOCAL_MAX || strlen(a.domain) > MAILADDR_DOMAIN_MAX)
		abort();
	check_text(a.local, utf8);
	check_text(a.domain, utf8);
	if (a.null != (a.local[0] == '\0') || (a.null && (!allow_null || a.domain[0] || used != 2)))
		abort();
	if (!a.null && !a.domain[0])
		abort();
	if (a.literal != (a.domain[0] == '['))
		abort();
	if (a.literal && a.domain[strlen(a.domain) - 1] != ']')
		abort();
	if (mailaddr_has_routing(&a) != (strpbrk(a.local, "%!@") != NULL))
		abort();
	/* a path is ended by its '>': no shorter input is one */
	if (mailaddr_parse(s, used - 1, allow_null, utf8, &b, &used2) == MAILADDR_OK)
		abort();

	n = mailaddr_format(&a, buf, sizeof(buf));
	if (n >= sizeof(buf) || strlen(buf) != n)
		abort();
	for (size_t sz = 0; sz <= n + 1; sz += 1 + sz / 3) {
		memset(small, 'Z', sizeof(small));
		if (mailaddr_format(&a, small, sz) != n)
			abort();
		if (sz == 0 ? small[0] != 'Z'
		            : strlen(small) != (sz <= n ? sz - 1 : n) ||
		                      memcmp(small, buf, strlen(small)) != 0)
			abort();
	}
	if (a.null) {
		if (n != 0)
			abort();
		return 0;
	}
	snprintf(path, sizeof(path), "<%s>", buf);
	if (strlen(path) > used)
		abort(); /* the canonical form is never longer: it stays within the limits */
	if (mailaddr_parse(path, strlen(path), false, utf8, &b, &used2) != MAILADDR_OK)
		abort();
	if (used2 != strlen(path) || strcmp(a.local, b.local) != 0 ||
	    strcmp(a.domain, b.domain) != 0 || a.literal != b.literal || b.routed || b.null)
		abort();
	if (!a.routed && a.utf8 != b.utf8)
		abort();
	return 0;
}
