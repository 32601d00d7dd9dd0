#include "smtpd/rcache.h"

#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *hnext;       /* the bucket's chain */
	struct entry *prev, *next; /* the use list: head is the most recent */
	uint64_t expires_ms;
	uint32_t hash;
	char *text; /* inside the same allocation, after the key */
	char key[];
};

struct rcache {
	struct entry **buckets;
	size_t mask; /* buckets - 1, a power of two */
	size_t len, cap;
	struct entry *head, *tail;
};

static uint32_t
hash_key(const char *k)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *k; k++)
		h = (h ^ (unsigned char)*k) * 16777619u;
	return h;
}

struct rcache *
rcache_new(size_t cap)
{
	struct rcache *c = calloc(1, sizeof(*c));
	size_t n = 16;

	if (!c)
		return NULL;
	c->cap = cap ? cap : 1;
	while (n < c->cap && n < ((size_t)1 << 30))
		n <<= 1;
	if (!(c->buckets = calloc(n, sizeof(*c->buckets)))) {
		free(c);
		return NULL;
	}
	c->mask = n - 1;
	return c;
}

void
rcache_free(struct rcache *c)
{
	if (!c)
		return;
	for (struct entry *e = c->head, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	free(c->buckets);
	free(c);
}

static void
unlink_use(struct rcache *c, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void
push_front(struct rcache *c, struct entry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

/* The link that points at key's entry (or at the NULL ending its chain). */
static struct entry **
find(struct rcache *c, const char *key, uint32_t h)
{
	struct entry **pp = &c->buckets[h & c->mask];

	while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
		pp = &(*pp)->hnext;
	return pp;
}

static void
drop(struct rcache *c, struct entry **pp)
{
	struct entry *e = *pp;

	*pp = e->hnext;
	unlink_use(c, e);
	c->len--;
	free(e);
}

int
rcache_get(struct rcache *c, const char *key, uint64_t now_ms, char *text, size_t textlen)
{
	uint32_t h = hash_key(key);
	struct entry **pp = find(c, key, h);

	if (!*pp)
		return 0;
	if (now_ms >= (*pp)->expires_ms) {
		drop(c, pp);
		return 0;
	}
	unlink_use(c, *pp);
	push_front(c, *pp);
	if (text && textlen > 0) {
		size_t n = strlen((*pp)->text);
		if (n >= textlen)
			n = textlen - 1;
		memcpy(text, (*pp)->text, n);
		text[n] = '\0';
	}
	return 1;
}

int
rcache_put(struct rcache *c, const char *key, uint64_t expires_ms, const char *text)
{
	size_t kl = strlen(key), tl = text ? strlen(text) : 0;
	struct entry *e = malloc(sizeof(*e) + kl + 1 + tl + 1);

	if (!e)
		return -1;
	memcpy(e->key, key, kl + 1);
	e->text = e->key + kl + 1;
	memcpy(e->text, text ? text : "", tl + 1);
	e->expires_ms = expires_ms;
	e->hash = hash_key(key);
	rcache_remove(c, key);
	if (c->len == c->cap) {
		struct entry *old = c->tail;
		drop(c, find(c, old->key, old->hash));
	}
	struct entry **pp = &c->buckets[e->hash & c->mask];
	e->hnext = *pp;
	*pp = e;
	push_front(c, e);
	c->len++;
	return 0;
}

void
rcache_remove(struct rcache *c, const char *key)
{
	uint32_t h = hash_key(key);
	struct entry **pp = find(c, key, h);

	if (*pp)
		drop(c, pp);
}

size_t
rcache_len(const struct rcache *c)
{
	return c->len;
}

void
rcache_clear(struct rcache *c)
{
	while (c->tail) {
		struct entry *old = c->tail;
		drop(c, find(c, old->key, old->hash));
	}
}
