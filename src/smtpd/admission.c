#include "smtpd/admission.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"

#define SRC_BUCKETS 4096

/* Concurrent sessions and message rate, per connector and client address. */
struct src {
	char *connector;
	struct ipaddr addr;
	uint64_t sessions;
	time_t rate_window; /* start of the message-rate window, monotonic seconds (now_s) */
	uint64_t rate_count;
	struct src *next;
};

struct conncount {
	char *connector;
	uint64_t sessions;
	struct conncount *next;
};

struct admission {
	pthread_mutex_t mu; /* guards everything below */
	struct src *srcs[SRC_BUCKETS];
	struct conncount *conns;
};

struct admission *
admission_new(void)
{
	struct admission *a = calloc(1, sizeof(*a));

	if (a)
		pthread_mutex_init(&a->mu, NULL);
	return a;
}

void
admission_free(struct admission *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < SRC_BUCKETS; i++)
		for (struct src *s = a->srcs[i], *n; s; s = n) {
			n = s->next;
			free(s->connector);
			free(s);
		}
	for (struct conncount *c = a->conns, *n; c; c = n) {
		n = c->next;
		free(c->connector);
		free(c);
	}
	pthread_mutex_destroy(&a->mu);
	free(a);
}
static unsigned
src_hash(const char *connector, const struct ipaddr *a)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = connector; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h ^= (uint64_t)a->v ^ (uint64_t)(a->v >> 64) ^ a->family;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 52) % SRC_BUCKETS;
}

static struct src *
src_get(struct admission *ad, const char *connector, const struct ipaddr *a, bool create)
{
	unsigned h = src_hash(connector, a);
	struct src *s;

	for (s = ad->srcs[h]; s; s = s->next)
		if (ipaddr_equal(&s->addr, a) && strcmp(s->connector, connector) == 0)
			return s;
	if (!create || !(s = calloc(1, sizeof(*s))) || !(s->connector = strdup(connector))) {
		free(s);
		return NULL;
	}
	s->addr = *a;
	s->next = ad->srcs[h];
	ad->srcs[h] = s;
	return s;
}

/* The rate windows run on the monotonic clock: a wall clock set back (an NTP step) would
 * otherwise keep a source's window from ever ending, refusing it until the clock caught up. */
static time_t
now_s(void)
{
	return (time_t)(clock_mono_ms() / 1000);
}

static void
src_maybe_free(struct admission *ad, struct src *s)
{
	unsigned h;
	struct src **p;

	if (s->sessions || now_s() - s->rate_window < ADMISSION_RATE_WINDOW_S)
		return;
	h = src_hash(s->connector, &s->addr);
	for (p = &ad->srcs[h]; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			free(s->connector);
			free(s);
			return;
		}
	}
}

/* Without it a source that sent mail under message-rate-limit and never
 * came back kept its entry for good: one for every address ever seen, unbounded with
 * IPv6.  Connector counters at zero go too (a reload may have renamed the connector). */
void
admission_sweep(struct admission *ad)
{
	time_t now = now_s();
	size_t freed = 0, kept = 0;

	pthread_mutex_lock(&ad->mu);
	for (size_t i = 0; i < SRC_BUCKETS; i++) {
		for (struct src **p = &ad->srcs[i]; *p;) {
			struct src *s = *p;
			if (!s->sessions && now - s->rate_window >= ADMISSION_RATE_WINDOW_S) {
				*p = s->next;
				free(s->connector);
				free(s);
				freed++;
			} else {
				p = &s->next;
				kept++;
			}
		}
	}
	for (struct conncount **p = &ad->conns; *p;) {
		struct conncount *c = *p;
		if (!c->sessions) {
			*p = c->next;
			free(c->connector);
			free(c);
		} else {
			p = &c->next;
		}
	}
	pthread_mutex_unlock(&ad->mu);
	if (freed)
		log_msg(LOG_LVL_DEBUG, "freed %zu idle per-source counter%s; %zu in use", freed,
		        freed == 1 ? "" : "s", kept);
}

static struct conncount *
conncount_get(struct admission *ad, const char *connector)
{
	struct conncount *c;

	for (c = ad->conns; c; c = c->next)
		if (strcmp(c->connector, connector) == 0)
			return c;
	if (!(c = calloc(1, sizeof(*c))) || !(c->connector = strdup(connector))) {
		free(c);
		return NULL;
	}
	c->next = ad->conns;
	ad->conns = c;
	return c;
}

enum admit
admission_admit(struct admission *ad, const struct connector *k, const struct ipaddr *a)
{
	enum admit r = ADMIT_OK;

	pthread_mutex_lock(&ad->mu);
	struct conncount *cc = conncount_get(ad, k->name);
	struct src *s = src_get(ad, k->name, a, true);
	if (!cc || !s) {
		r = ADMIT_NOMEM;
		goto out;
	}
	if (k->max_inbound_connection != CONFIG_UNLIMITED &&
	    cc->sessions >= k->max_inbound_connection) {
		r = ADMIT_CONNECTOR_FULL;
		goto out;
	}
	uint64_t cap = k->max_inbound_connection_per_source;
	if (k->max_inbound_connection != CONFIG_UNLIMITED) {
		uint64_t free_slots = k->max_inbound_connection - cc->sessions;
		uint64_t pct = free_slots * k->max_inbound_connection_percentage_per_source / 100;
		if (pct < 1)
			pct = 1;
		if (cap == CONFIG_UNLIMITED || pct < cap)
			cap = pct;
	}
	/* Exchange exempts link-local and site-local IPv6 sources from the per-source limits */
	if (cap != CONFIG_UNLIMITED && s->sessions >= cap && !ipaddr_is_local_scope(a)) {
		r = ADMIT_SOURCE_FULL;
		goto out;
	}
	cc->sessions++;
	s->sessions++;
out:
	if (s && r != ADMIT_OK)
		src_maybe_free(ad, s);
	pthread_mutex_unlock(&ad->mu);
	return r;
}

void
admission_release(struct admission *ad, const char *connector, const struct ipaddr *a)
{
	pthread_mutex_lock(&ad->mu);
	struct conncount *cc = conncount_get(ad, connector);
	struct src *s = src_get(ad, connector, a, false);
	if (cc && cc->sessions)
		cc->sessions--;
	if (s) {
		if (s->sessions)
			s->sessions--;
		src_maybe_free(ad, s);
	}
	pthread_mutex_unlock(&ad->mu);
}

bool
admission_rate_allows(struct admission *ad, const struct connector *k, const struct ipaddr *a)
{
	bool ok = true;
	time_t now = now_s();

	if (k->message_rate_limit == CONFIG_UNLIMITED)
		return true;
	pthread_mutex_lock(&ad->mu);
	struct src *s = src_get(ad, k->name, a, true);
	if (s) {
		if (now - s->rate_window >= ADMISSION_RATE_WINDOW_S) {
			s->rate_window = now;
			s->rate_count = 0;
		}
		if (s->rate_count >= k->message_rate_limit)
			ok = false;
		else
			s->rate_count++;
	}
	pthread_mutex_unlock(&ad->mu);
	return ok;
}
