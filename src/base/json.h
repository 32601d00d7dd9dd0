/*
 * json — a small JSON reader (RFC 8259) for the machine-readable output of other tools
 * (`nft -j list ruleset`).  Sans-I/O: text in, a tree out.
 *
 * Strict: one value, no trailing bytes but blanks; nesting deeper than JSON_MAX_DEPTH and
 * texts over JSON_MAX_TEXT are refused.  Strings are decoded (escapes, \u with surrogate
 * pairs as UTF-8); a string holding NUL is refused.  Numbers are kept as doubles.
 */
#ifndef MXGATE_JSON_H
#define MXGATE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_DEPTH 64
#define JSON_MAX_TEXT  (256u * 1024 * 1024)

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
	enum json_type type;
	bool b;
	double num;
	char *str;           /* JSON_STRING, NUL-terminated */
	char **keys;         /* JSON_OBJECT: n keys, in text order */
	struct json **items; /* JSON_ARRAY: the n elements; JSON_OBJECT: the n values */
	size_t n;
	size_t cap, kcap; /* private */
};

/* Parses text[0..len).  Returns the tree (owned by the caller, json_free), or NULL with a
 * sentence in err naming the byte offset (errlen >= 128 recommended), also when out of memory. */
struct json *json_parse(const char *text, size_t len, char *err, size_t errlen);

/* json_free(NULL) is a no-op. */
void json_free(struct json *j);

/* The value of key in object o (the first one), or NULL when o is not an object or has none. */
const struct json *json_get(const struct json *o, const char *key);

/* o's string value, or NULL when o is NULL or not a string. */
const char *json_str(const struct json *o);

#endif
