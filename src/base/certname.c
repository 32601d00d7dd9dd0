#include "base/certname.h"

#include <string.h>
#include <strings.h>

static bool
ldh(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/* A run of labels of letters, digits and '-', none empty, none over 63 octets; the number
 * of labels in *labels. */
static bool
dns_labels(const char *s, size_t len, unsigned *labels)
{
	size_t run = 0;

	*labels = 0;
	if (len == 0 || len > CERTNAME_MAX - 1)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (run == 0)
				return false;
			run = 0;
			continue;
		}
		if (!ldh(s[i]) || ++run > 63)
			return false;
		if (run == 1)
			(*labels)++;
	}
	return run > 0;
}

/* len without one trailing dot. */
static size_t
trim_dot(const char *s, size_t len)
{
	return len > 0 && s[len - 1] == '.' ? len - 1 : len;
}

bool
certname_valid(const char *expected, const char **why)
{
	size_t len = trim_dot(expected, strlen(expected));
	const char *s = expected;
	unsigned labels;

	if (len >= 2 && s[0] == '*' && s[1] == '.') {
		s += 2;
		len -= 2;
	}
	if (!dns_labels(s, len, &labels)) {
		*why = "not a DNS name: letters, digits and '-' in dot-separated labels of at most "
		       "63 characters, and a wildcard only as the whole first label (\"*.example."
		       "com\")";
		return false;
	}
	if (labels < 2) {
		*why = "a single label would match names under a top-level domain; give the "
		       "provider's domain (\"*.example.com\")";
		return false;
	}
	return true;
}

/* Equal ignoring ASCII case. */
static bool
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

bool
certname_match(const char *expected, const char *presented, size_t len)
{
	size_t elen = trim_dot(expected, strlen(expected));
	unsigned labels;

	if (memchr(presented, '\0', len))
		return false;
	len = trim_dot(presented, len);
	bool e_wild = elen >= 2 && expected[0] == '*' && expected[1] == '.';
	bool p_wild = len >= 2 && presented[0] == '*' && presented[1] == '.';
	if (!dns_labels(p_wild ? presented + 2 : presented, p_wild ? len - 2 : len, &labels))
		return false;
	if (p_wild && labels < 2)
		return false;
	/* the same name, or the same wildcard */
	if (e_wild == p_wild)
		return same(expected, elen, presented, len);
	/* one side stands for exactly one label of the other: "*.example.com" and
	 * "a.example.com" */
	const char *w = e_wild ? expected + 1 : presented + 1; /* ".example.com" */
	size_t wl = e_wild ? elen - 1 : len - 1;
	const char *n = e_wild ? presented : expected;
	size_t nl = e_wild ? len : elen;
	const char *dot = memchr(n, '.', nl);
	if (!dot || dot == n)
		return false;
	return same(dot, nl - (size_t)(dot - n), w, wl);
}

char *
certname_printable(const char *presented, size_t len, char *out, size_t size)
{
	size_t o = 0;

	if (size == 0)
		return out;
	for (size_t i = 0; i < len && o + 1 < size; i++) {
		char c = presented[i];
		out[o++] = ldh(c) || c == '.' || c == '*' || c == '_' ? c : '?';
	}
	if (o < len && size >= 4 && o + 1 >= size) {
		o = size - 4;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}
