#include "base/mailaddr.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/ipaddr.h"

static bool
is_atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Length of one valid UTF-8 sequence of a non-ASCII character at s, or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t len)
{
	size_t n;
	unsigned cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* no overlong forms, no surrogates, nothing past U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

struct cur {
	const unsigned char *s;
	size_t len, i;
	bool utf8_ok, saw_utf8;
};

/* Consumes one UTF-8 character if present; returns false when not allowed or invalid. */
static int
take_utf8(struct cur *c)
{
	size_t n;

	if (c->s[c->i] < 0x80)
		return 0;
	n = utf8_seq(c->s + c->i, c->len - c->i);
	if (n == 0)
		return -1;
	c->saw_utf8 = true;
	c->i += n;
	return 1;
}

/* Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str], or U-labels. */
static int
parse_domain(struct cur *c, char *out, size_t outsize)
{
	size_t start = c->i, label = 0;
	bool last_hyphen = false;

	for (;;) {
		if (c->i >= c->len)
			break;
		unsigned char ch = c->s[c->i];
		if (ch == '.') {
			if (label == 0 || last_hyphen)
				return -1;
			label = 0;
			c->i++;
			continue;
		}
		if (isalnum(ch)) {
			c->i++;
		} else if (ch == '-' && label > 0) {
			c->i++;
		} else if (ch >= 0x80) {
			if (take_utf8(c) < 0)
				return -1;
		} else {
			break;
		}
		last_hyphen = ch == '-';
		label++;
		if (label > 63)
			return -1;
	}
	if (label == 0 || last_hyphen)
		return -1;
	size_t n = c->i - start;
	if (n > MAILADDR_DOMAIN_MAX || n >= outsize)
		return -2;
	for (size_t k = 0; k < n; k++)
		out[k] = (char)tolower(c->s[start + k]);
	out[n] = '\0';
	return 0;
}

/* What is inside the brackets (RFC 5321 §4.1.3): an IPv4 address, "IPv6:" and an IPv6
 * address, or Standardized-tag ":" 1*dcontent with the tag an Ldh-str. */
static bool
valid_literal(const char *p, size_t n)
{
	const char *colon = memchr(p, ':', n);
	struct ipaddr a;
	size_t tl;

	if (!colon)
		return ipaddr_parse(p, n, &a) == 0 && a.family == AF_INET;
	tl = (size_t)(colon - p);
	if (tl == 4 && strncasecmp(p, "IPv6", 4) == 0)
		return ipaddr_parse(colon + 1, n - 5, &a) == 0 && memchr(colon + 1, ':', n - 5);
	if (tl == 0 || tl + 1 == n || p[tl - 1] == '-')
		return false;
	for (size_t i = 0; i < tl; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '-')
			return false;
	return true;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 / tag ":" dcontent ) "]" */
static int
parse_literal(struct cur *c, char *out, size_t outsize)
{
	size_t start = c->i;

	c->i++; /* '[' */
	while (c->i < c->len && c->s[c->i] != ']') {
		unsigned char ch = c->s[c->i];
		if (ch < 33 || ch > 126 || ch == '[' || ch == '\\')
			return -1;
		c->i++;
	}
	if (c->i >= c->len || !valid_literal((const char *)c->s + start + 1, c->i - start - 1))
		return -1;
	c->i++; /* ']' */
	size_t n = c->i - start;
	if (n > MAILADDR_DOMAIN_MAX || n >= outsize)
		return -2;
	for (size_t k = 0; k < n; k++)
		out[k] = (char)tolower(c->s[start + k]);
	out[n] = '\0';
	return 0;
}

/* Quoted-string (RFC 5321 §4.1.2) from the opening quote, into local[*ln...]. */
static enum mailaddr_err
parse_quoted_local(struct cur *c, char *local, size_t *lnp)
{
	size_t ln = 0;

	c->i++;
	for (;;) {
		if (c->i >= c->len)
			return MAILADDR_SYNTAX;
		unsigned char ch = c->s[c->i];
		if (ch == '"')
			break;
		if (ch == '\\') {
			/* quoted-pairSMTP = %d92 %d32-126 */
			if (c->i + 1 >= c->len || c->s[c->i + 1] < 32 || c->s[c->i + 1] > 126)
				return MAILADDR_SYNTAX;
			ch = c->s[c->i + 1];
			c->i += 2;
		} else if (ch >= 32 && ch <= 126) {
			c->i++;
		} else if (ch >= 0x80) {
			size_t at = c->i;
			if (take_utf8(c) < 0)
				return MAILADDR_SYNTAX;
			if (ln + (c->i - at) > MAILADDR_LOCAL_MAX)
				return MAILADDR_TOO_LONG;
			memcpy(local + ln, c->s + at, c->i - at);
			ln += c->i - at;
			continue;
		} else {
			return MAILADDR_SYNTAX;
		}
		if (ln >= MAILADDR_LOCAL_MAX)
			return MAILADDR_TOO_LONG;
		local[ln++] = (char)ch;
	}
	c->i++; /* closing quote */
	*lnp = ln;
	return ln == 0 ? MAILADDR_SYNTAX : MAILADDR_OK;
}

/* Dot-string (RFC 5321 §4.1.2), into local[0...*ln). */
static enum mailaddr_err
parse_dot_local(struct cur *c, char *local, size_t *lnp)
{
	bool need_atom = true;
	size_t ln = 0;

	for (;;) {
		if (c->i >= c->len)
			return MAILADDR_SYNTAX;
		unsigned char ch = c->s[c->i];
		size_t at = c->i;
		if (is_atext(ch)) {
			c->i++;
		} else if (ch >= 0x80) {
			if (take_utf8(c) < 0)
				return MAILADDR_SYNTAX;
		} else if (ch == '.' && !need_atom) {
			need_atom = true;
			c->i++;
			if (ln >= MAILADDR_LOCAL_MAX)
				return MAILADDR_TOO_LONG;
			local[ln++] = '.';
			continue;
		} else {
			break;
		}
		if (ln + (c->i - at) > MAILADDR_LOCAL_MAX)
			return MAILADDR_TOO_LONG;
		memcpy(local + ln, c->s + at, c->i - at);
		ln += c->i - at;
		need_atom = false;
	}
	*lnp = ln;
	return need_atom ? MAILADDR_SYNTAX : MAILADDR_OK; /* empty, or ends with '.' */
}

enum mailaddr_err
mailaddr_parse(const char *s, size_t len, bool allow_null, bool utf8, struct mailaddr *out,
               size_t *used)
{
	struct cur c = {.s = (const unsigned char *)s, .len = len, .utf8_ok = utf8};
	size_t ln = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len == 0 || s[0] != '<')
		return MAILADDR_SYNTAX;
	c.i = 1;
	if (c.i < len && s[c.i] == '>') {
		if (!allow_null)
			return MAILADDR_SYNTAX;
		out->null = true;
		*used = 2;
		return MAILADDR_OK;
	}
	/* A-d-l ":"  — a source route, parsed and dropped */
	if (c.i < len && s[c.i] == '@') {
		char skip[MAILADDR_DOMAIN_MAX + 1];
		for (;;) {
			c.i++; /* '@' */
			if ((rc = parse_domain(&c, skip, sizeof(skip))) < 0)
				return rc == -2 ? MAILADDR_TOO_LONG : MAILADDR_SYNTAX;
			if (c.i < len && s[c.i] == ',' && c.i + 1 < len && s[c.i + 1] == '@') {
				c.i++;
				continue;
			}
			break;
		}
		if (c.i >= len || s[c.i] != ':')
			return MAILADDR_SYNTAX;
		c.i++;
		out->routed = true;
	}
	size_t mailbox = c.i; /* what is kept: the path without its route */
	/* Local-part */
	if (c.i < len && s[c.i] == '"') {
		out->quoted = true;
		rc = parse_quoted_local(&c, out->local, &ln);
	} else {
		rc = parse_dot_local(&c, out->local, &ln);
	}
	if (rc != MAILADDR_OK)
		return (enum mailaddr_err)rc;
	out->local[ln] = '\0';
	if (c.i >= len || s[c.i] != '@')
		return MAILADDR_SYNTAX;
	c.i++;
	if (c.i < len && s[c.i] == '[') {
		out->literal = true;
		rc = parse_literal(&c, out->domain, sizeof(out->domain));
	} else {
		rc = parse_domain(&c, out->domain, sizeof(out->domain));
	}
	if (rc < 0)
		return rc == -2 ? MAILADDR_TOO_LONG : MAILADDR_SYNTAX;
	if (c.i >= len || s[c.i] != '>')
		return MAILADDR_SYNTAX;
	c.i++;
	/* §4.5.3.1.3: 256 octets with the brackets for the path as kept, relayed and logged
	 * (the route dropped); a route may add its own domains (§4.5.3.1.2 each) */
	if (1 + (c.i - mailbox) > 256 || c.i > 256 + (out->routed ? MAILADDR_DOMAIN_MAX * 4 : 0))
		return MAILADDR_TOO_LONG;
	out->utf8 = c.saw_utf8;
	if (c.saw_utf8 && !utf8)
		return MAILADDR_NEED_UTF8;
	*used = c.i;
	return MAILADDR_OK;
}

bool
mailaddr_has_routing(const struct mailaddr *a)
{
	return strpbrk(a->local, "%!@") != NULL;
}

size_t
mailaddr_format(const struct mailaddr *a, char *buf, size_t size)
{
	bool needq = false;
	size_t n = 0;

	if (a->null) {
		if (size)
			buf[0] = '\0';
		return 0;
	}
	for (const unsigned char *p = (const unsigned char *)a->local; *p; p++)
		if (!is_atext(*p) && *p != '.' && *p < 0x80)
			needq = true;
	if (a->local[0] == '.' || strstr(a->local, "..") ||
	    (a->local[0] && a->local[strlen(a->local) - 1] == '.'))
		needq = true;
#define PUT(ch)                                                                                    \
	do {                                                                                       \
		if (n + 1 < size)                                                                  \
			buf[n] = (ch);                                                             \
		n++;                                                                               \
	} while (0)
	if (needq)
		PUT('"');
	for (const char *p = a->local; *p; p++) {
		if (needq && (*p == '"' || *p == '\\'))
			PUT('\\');
		PUT(*p);
	}
	if (needq)
		PUT('"');
	PUT('@');
	for (const char *p = a->domain; *p; p++)
		PUT(*p);
#undef PUT
	if (size)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}
