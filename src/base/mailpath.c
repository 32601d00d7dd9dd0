#include "base/mailpath.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
mailpath_encode(const char *in, size_t len, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)tolower((unsigned char)in[i]);
		bool plain = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		             c == '_' || c == '+' || c == '=' || (c == '.' && i > 0);
		if (plain) {
			if (n + 1 >= size)
				return 0;
			out[n++] = (char)c;
		} else {
			if (n + 3 >= size)
				return 0;
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	if (n == 0) {
		if (size < 4)
			return 0;
		memcpy(out, "%00", 3);
		n = 3;
	}
	out[n] = '\0';
	return n;
}

int
mailpath_split(const char *tmpl, char *base, size_t bsize, const char **rest)
{
	const char *pct = strchr(tmpl, '%'), *slash;
	size_t blen;

	if (tmpl[0] != '/')
		return -1;
	if (!pct) {
		/* no template at all: one Maildir for everyone */
		slash = strrchr(tmpl, '/');
	} else {
		slash = pct;
		while (slash > tmpl && *slash != '/')
			slash--;
	}
	blen = slash == tmpl ? 1 : (size_t)(slash - tmpl);
	if (blen >= bsize)
		return -1;
	memcpy(base, tmpl, blen);
	base[blen] = '\0';
	*rest = slash + 1;
	return 0;
}

int
mailpath_expand(const char *rest, const char *local, const char *domain, char *out, size_t size)
{
	size_t n = 0;

	for (const char *p = rest; *p; p++) {
		if (*p == '%' && (p[1] == 'd' || p[1] == 'u')) {
			const char *v = p[1] == 'd' ? domain : local;
			size_t m = mailpath_encode(v, strlen(v), out + n, size - n);
			if (m == 0)
				return -1;
			n += m;
			p++;
			continue;
		}
		if (*p == '%' && p[1] == '%')
			p++;
		if (n + 1 >= size)
			return -1;
		out[n++] = *p;
	}
	out[n] = '\0';
	return 0;
}

/* A component delivery opens: a file name (at most NAME_MAX bytes), neither "." nor "..". */
bool
mailpath_component_ok(const char *p, size_t len)
{
	return len <= NAME_MAX && !(len == 1 && p[0] == '.') &&
	       !(len == 2 && p[0] == '.' && p[1] == '.');
}

/* The template with its '.' and '..' resolved as words (a '..' takes the component before
 * it away, as realpath would without symlinks) and its empty components dropped: what the
 * writer most likely meant.  out has room for the template; starts for its components. */
static void
without_dots(const char *tmpl, char *out, size_t *starts)
{
	size_t n = 0, depth = 0;

	for (const char *p = tmpl + 1;; p++) {
		size_t len = strcspn(p, "/");
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			if (depth > 0)
				n = starts[--depth];
		} else if (len > 0 && !(len == 1 && p[0] == '.')) {
			starts[depth++] = n;
			out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p += len;
		if (!*p)
			break;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
}

int
mailpath_check(const char *tmpl, char *err, size_t errlen)
{
	size_t tl = strlen(tmpl), len;
	char *base = NULL, *rel = NULL, *fix = NULL;
	size_t *starts = NULL;
	const char *rest, *p, *q;
	int rc = -1;

	if (tmpl[0] != '/') {
		snprintf(err, errlen,
		         "'%s' is not an absolute path; write it from the root, e.g. "
		         "/var/mail/%%d/%%u",
		         tmpl);
		return -1;
	}
	/* split and expand into buffers that always fit, then hold the results to the
	 * limits delivery has: the lengths make the messages */
	if (!(base = malloc(tl + 2)) || !(rel = malloc(tl + 2)) ||
	    mailpath_split(tmpl, base, tl + 2, &rest) < 0 ||
	    mailpath_expand(rest, "a", "a", rel, tl + 2) < 0) {
		snprintf(err, errlen, "cannot check the maildir template: out of memory");
		goto out;
	}
	if (strlen(base) >= MAILPATH_BASE_MAX) {
		snprintf(err, errlen,
		         "its directory part before the first %% is %zu bytes; at most %d: use a "
		         "shorter path",
		         strlen(base), MAILPATH_BASE_MAX - 1);
		goto out;
	}
	for (p = base + 1; *p; p += len + (p[len] == '/')) {
		len = strcspn(p, "/");
		if (len > NAME_MAX) {
			snprintf(err, errlen,
			         "directory name '%.40s...' is %zu bytes; a name has at most %d "
			         "(NAME_MAX): shorten it",
			         p, len, NAME_MAX);
			goto out;
		}
	}
	if (strlen(rel) >= MAILPATH_REL_MAX) {
		snprintf(err, errlen,
		         "its part from the first %% on is %zu bytes or more once expanded; at "
		         "most %d: shorten it",
		         strlen(rel), MAILPATH_REL_MAX - 1);
		goto out;
	}
	/* rest and its shortest expansion have the same components (an encoded %d or %u
	 * holds no '/'); what maildir_open refuses here it refuses for every recipient */
	for (p = rest, q = rel;;) {
		size_t pl = strcspn(p, "/"), ql = strcspn(q, "/");
		if (ql > NAME_MAX) {
			snprintf(
			        err, errlen,
			        "component '%.40s...' is %zu bytes or more once expanded (counting "
			        "%%d and %%u as one); a name has at most %d (NAME_MAX): shorten it",
			        p, ql, NAME_MAX);
			goto out;
		}
		if (!mailpath_component_ok(q, ql)) {
			/* the fix is no longer than the template and has fewer components */
			if (!(fix = malloc(tl + 2)) ||
			    !(starts = calloc(tl + 1, sizeof(*starts)))) {
				snprintf(err, errlen,
				         "cannot check the maildir template: out of memory");
				goto out;
			}
			without_dots(tmpl, fix, starts);
			snprintf(err, errlen,
			         "a '%.*s' component: delivery refuses '.' and '..' in a "
			         "recipient's path, so every message would wait until it "
			         "expires; write '%s'",
			         (int)pl, p, fix);
			goto out;
		}
		if (!p[pl])
			break;
		p += pl + 1;
		q += ql + 1;
	}
	rc = mailpath_rel_ok(rel) ? 0 : -1; /* the walk above is rel_ok's, message by message */
	if (rc < 0)
		snprintf(err, errlen, "delivery would refuse every recipient's path '%s'", rel);
out:
	free(base);
	free(rel);
	free(fix);
	free(starts);
	return rc;
}

/* Every component of rel fits and is neither "." nor "..". */
bool
mailpath_rel_ok(const char *rel)
{
	for (const char *p = rel; *p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (!mailpath_component_ok(p, len))
			return false;
		p += len;
		if (*p == '/')
			p++;
	}
	return true;
}
