/*
 * rcache — a bounded cache of recipient verdicts (smtpd/verify.h): string keys, each with
 * a short text and an expiry, least recently used first out.
 *
 * At most cap entries; rcache_put() on a full cache drops the least recently used one, so
 * memory is bounded by cap * (key + text) whatever clients send.  Expired entries are
 * dropped when met.  Not thread-safe: the caller locks.  Keys and texts are copied.
 */
#ifndef MXGATE_RCACHE_H
#define MXGATE_RCACHE_H

#include <stddef.h>
#include <stdint.h>

struct rcache;

/* NULL without memory; cap is at least 1. */
struct rcache *rcache_new(size_t cap);
void rcache_free(struct rcache *c); /* NULL is a no-op */

/* 1 when key is cached and now_ms is before its expiry (its text copied to text, cut to
 * textlen with a NUL; it becomes the most recently used), else 0 (an expired entry is
 * dropped).  text may be NULL. */
int rcache_get(struct rcache *c, const char *key, uint64_t now_ms, char *text, size_t textlen);
/* Adds or replaces key until expires_ms.  0, or -1 without memory (the cache unchanged). */
int rcache_put(struct rcache *c, const char *key, uint64_t expires_ms, const char *text);
/* Drops key if cached. */
void rcache_remove(struct rcache *c, const char *key);
size_t rcache_len(const struct rcache *c);
/* Drops every entry. */
void rcache_clear(struct rcache *c);

#endif
