/*
 * utf8 — how long the UTF-8 sequence at a byte is, for the modules that copy untrusted
 * text into a format that must stay valid UTF-8 (the metrics' label values, the protocol
 * log's rows).
 *
 * Strict RFC 3629 §4: no overlong forms, no surrogates (U+D800..U+DFFF), nothing past
 * U+10FFFF, no truncated sequence.  Nothing here allocates.
 */
#ifndef MXGATE_UTF8_H
#define MXGATE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1 to 4) of the well-formed sequence that starts s[0..n), with its code
 * point in *cp when cp is not NULL; 0 when s[0] does not start one (n == 0 included). */
size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp);

#endif
