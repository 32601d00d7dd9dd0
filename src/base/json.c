#include "base/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/vec.h"

struct reader {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
	bool failed;
};

static void fail(struct reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(struct reader *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->failed)
		return;
	r->failed = true;
	n = snprintf(r->err, r->errlen, "at byte %zu: ", r->pos);
	if (n < 0 || (size_t)n >= r->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static void
skip_blanks(struct reader *r)
{
	while (r->pos < r->len && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
	                           r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
		r->pos++;
}

static struct json *
node(struct reader *r, enum json_type t)
{
	struct json *j = calloc(1, sizeof(*j));

	if (!j)
		fail(r, "out of memory");
	else
		j->type = t;
	return j;
}

static int
hex4(struct reader *r, unsigned *out)
{
	unsigned v = 0;

	if (r->len - r->pos < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = r->s[r->pos++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* \uXXXX (after the backslash and u), a surrogate pair joined */
static int
unicode_escape(struct reader *r, char *o, size_t *n)
{
	unsigned cp, lo;

	if (hex4(r, &cp) < 0)
		return -1;
	if (cp >= 0xd800 && cp < 0xdc00) {
		if (r->len - r->pos < 6 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u')
			return -1;
		r->pos += 2;
		if (hex4(r, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
			return -1;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	} else if (cp >= 0xdc00 && cp < 0xe000) {
		return -1;
	}
	if (cp == 0)
		return -1;
	*n += utf8_put(o + *n, cp);
	return 0;
}

/* After the opening quote; the decoded text is never longer than the escaped one. */
static char *
string_body(struct reader *r)
{
	size_t start = r->pos, n = 0;
	char *o;

	while (r->pos < r->len && r->s[r->pos] != '"')
		r->pos += r->s[r->pos] == '\\' ? 2 : 1;
	if (r->pos >= r->len) {
		fail(r, "unterminated string");
		return NULL;
	}
	if (!(o = malloc(r->pos - start + 1))) {
		fail(r, "out of memory");
		return NULL;
	}
	r->pos = start;
	while (r->s[r->pos] != '"') {
		unsigned char c = (unsigned char)r->s[r->pos++];
		if (c < 0x20) {
			fail(r, "control character in a string");
			goto bad;
		}
		if (c != '\\') {
			o[n++] = (char)c;
			continue;
		}
		c = (unsigned char)r->s[r->pos++];
		switch (c) {
		case '"':
		case '\\':
		case '/':
			o[n++] = (char)c;
			break;
		case 'b':
			o[n++] = '\b';
			break;
		case 'f':
			o[n++] = '\f';
			break;
		case 'n':
			o[n++] = '\n';
			break;
		case 'r':
			o[n++] = '\r';
			break;
		case 't':
			o[n++] = '\t';
			break;
		case 'u':
			if (unicode_escape(r, o, &n) < 0) {
				fail(r, "bad \\u escape");
				goto bad;
			}
			break;
		default:
			fail(r, "bad escape \\%c", c);
			goto bad;
		}
	}
	r->pos++;
	o[n] = '\0';
	return o;
bad:
	free(o);
	return NULL;
}

static struct json *value(struct reader *r, int depth);

static int
push(struct reader *r, struct json *a, char *key, struct json *item)
{
	if (VEC_RESERVE(a->items, a->cap, a->n + 1) < 0 ||
	    (a->type == JSON_OBJECT && VEC_RESERVE(a->keys, a->kcap, a->n + 1) < 0)) {
		fail(r, "out of memory");
		return -1;
	}
	if (a->type == JSON_OBJECT)
		a->keys[a->n] = key;
	a->items[a->n++] = item;
	return 0;
}

static struct json *
container(struct reader *r, int depth, bool object)
{
	struct json *a = node(r, object ? JSON_OBJECT : JSON_ARRAY);
	char close = object ? '}' : ']';

	if (!a)
		return NULL;
	skip_blanks(r);
	if (r->pos < r->len && r->s[r->pos] == close) {
		r->pos++;
		return a;
	}
	for (;;) {
		char *key = NULL;
		struct json *v;
		skip_blanks(r);
		if (object) {
			if (r->pos >= r->len || r->s[r->pos] != '"') {
				fail(r, "expected a key");
				break;
			}
			r->pos++;
			if (!(key = string_body(r)))
				break;
			skip_blanks(r);
			if (r->pos >= r->len || r->s[r->pos] != ':') {
				free(key);
				fail(r, "expected ':'");
				break;
			}
			r->pos++;
		}
		if (!(v = value(r, depth + 1)) || push(r, a, key, v) < 0) {
			free(key);
			json_free(v);
			break;
		}
		skip_blanks(r);
		if (r->pos < r->len && r->s[r->pos] == ',') {
			r->pos++;
			continue;
		}
		if (r->pos < r->len && r->s[r->pos] == close) {
			r->pos++;
			return a;
		}
		fail(r, "expected ',' or '%c'", close);
		break;
	}
	json_free(a);
	return NULL;
}

static struct json *
number(struct reader *r)
{
	size_t start = r->pos;
	char buf[64], *end;
	struct json *j;

	while (r->pos < r->len && strchr("+-0123456789.eE", r->s[r->pos]))
		r->pos++;
	if (r->pos - start == 0 || r->pos - start >= sizeof(buf)) {
		fail(r, "bad value");
		return NULL;
	}
	memcpy(buf, r->s + start, r->pos - start);
	buf[r->pos - start] = '\0';
	errno = 0;
	double d = strtod(buf, &end);
	if (*end || (buf[0] != '-' && (buf[0] < '0' || buf[0] > '9'))) {
		r->pos = start;
		fail(r, "bad number");
		return NULL;
	}
	if ((j = node(r, JSON_NUMBER)))
		j->num = d;
	return j;
}

static struct json *
literal(struct reader *r, const char *word, enum json_type t, bool b)
{
	size_t n = strlen(word);
	struct json *j;

	if (r->len - r->pos < n || memcmp(r->s + r->pos, word, n) != 0) {
		fail(r, "bad value");
		return NULL;
	}
	r->pos += n;
	if ((j = node(r, t)))
		j->b = b;
	return j;
}

static struct json *
value(struct reader *r, int depth)
{
	struct json *j;

	if (depth > JSON_MAX_DEPTH) {
		fail(r, "nested deeper than %d", JSON_MAX_DEPTH);
		return NULL;
	}
	skip_blanks(r);
	if (r->pos >= r->len) {
		fail(r, "unexpected end of text");
		return NULL;
	}
	switch (r->s[r->pos]) {
	case '{':
		r->pos++;
		return container(r, depth, true);
	case '[':
		r->pos++;
		return container(r, depth, false);
	case '"':
		r->pos++;
		if (!(j = node(r, JSON_STRING)))
			return NULL;
		if (!(j->str = string_body(r))) {
			free(j);
			return NULL;
		}
		return j;
	case 't':
		return literal(r, "true", JSON_BOOL, true);
	case 'f':
		return literal(r, "false", JSON_BOOL, false);
	case 'n':
		return literal(r, "null", JSON_NULL, false);
	default:
		return number(r);
	}
}

struct json *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct reader r = {.s = text, .len = len, .err = err, .errlen = errlen};
	struct json *j;

	if (errlen)
		err[0] = '\0';
	if (len > JSON_MAX_TEXT) {
		fail(&r, "text longer than %u bytes", JSON_MAX_TEXT);
		return NULL;
	}
	if (!(j = value(&r, 0)))
		return NULL;
	skip_blanks(&r);
	if (r.pos != r.len) {
		fail(&r, "trailing bytes after the value");
		json_free(j);
		return NULL;
	}
	return j;
}

void
json_free(struct json *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++) {
		json_free(j->items[i]);
		if (j->keys)
			free(j->keys[i]);
	}
	free(j->items);
	free(j->keys);
	free(j->str);
	free(j);
}

const struct json *
json_get(const struct json *o, const char *key)
{
	if (!o || o->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->keys[i], key) == 0)
			return o->items[i];
	return NULL;
}

const char *
json_str(const struct json *o)
{
	return o && o->type == JSON_STRING ? o->str : NULL;
}
