#include "net/dns.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SOCKETS 16 /* c-ares sockets at once: one UDP per server, TCP after truncation */

struct dns_sock {
	ares_socket_t fd;
	struct event *ev;
	short what;
};

struct cache_entry {
	struct ipaddr addr;
	time_t expires; /* CLOCK_MONOTONIC seconds */
	struct dns_fcrdns r;
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct event *timer; /* c-ares's own retransmission timeouts */
	struct dns_sock socks[MAX_SOCKETS];
	uint64_t timeout_ms;
	unsigned queries; /* under way */
	struct cache_entry *cache[DNS_CACHE_SLOTS];
};

/* One address lookup of a check: which name it confirms. */
struct sub {
	struct dns_check *c;
	unsigned i;
};

struct dns_check {
	struct dns *d;
	struct ipaddr addr;
	dns_cb cb; /* NULL once cancelled */
	void *arg;
	struct event *deadline;
	unsigned pending; /* queries not answered yet */
	bool finished;
	uint32_t ttl;
	struct dns_fcrdns r;
	struct sub subs[DNS_MAX_NAMES];
};

static time_t
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* ---- c-ares on libevent ------------------------------------------------------------- */

static void arm_timer(struct dns *d);

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	arm_timer(d);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;

	(void)fd, (void)what;
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	arm_timer(d);
}

static void
arm_timer(struct dns *d)
{
	struct timeval tv, *t;

	if (!d->timer)
		return;
	t = ares_timeout(d->ch, NULL, &tv);
	if (t)
		evtimer_add(d->timer, t);
	else
		evtimer_del(d->timer);
}

/* c-ares opens, watches and closes its sockets: mirror that in events. */
static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *slot = NULL, *free_slot = NULL;
	short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

	for (size_t i = 0; i < MAX_SOCKETS; i++) {
		if (d->socks[i].ev && d->socks[i].fd == fd)
			slot = &d->socks[i];
		else if (!d->socks[i].ev && !free_slot)
			free_slot = &d->socks[i];
	}
	if (slot && (what == 0 || what != slot->what)) {
		event_free(slot->ev);
		slot->ev = NULL;
	}
	if (what == 0)
		return;
	if (!slot || !slot->ev) {
		slot = slot ? slot : free_slot;
		if (!slot)
			return; /* more sockets than slots: c-ares's timeout ends the query */
		slot->fd = fd;
		slot->what = what;
		slot->ev = event_new(d->base, fd, (short)(what | EV_PERSIST), sock_cb, d);
		if (slot->ev)
			event_add(slot->ev, NULL);
	}
}

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void
ares_init_once(void)
{
	ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

struct dns *
dns_new(struct event_base *base, char *const *servers, size_t n, uint64_t timeout_ms, char *err,
        size_t errlen)
{
	struct dns *d = calloc(1, sizeof(*d));
	struct ares_options o = {0};
	char csv[1024] = "";
	size_t used = 0;
	int rc;

	pthread_once(&ares_once, ares_init_once);
	if (!d || ares_init_rc != ARES_SUCCESS) {
		snprintf(err, errlen, "cannot start the resolver: %s",
		         d ? ares_strerror(ares_init_rc) : "out of memory");
		free(d);
		return NULL;
	}
	d->base = base;
	d->timeout_ms = timeout_ms;
	/* two tries a server within the check's time; the check's own deadline is the bound */
	o.timeout = (int)(timeout_ms / 4 > 250 ? timeout_ms / 4 : 250);
	o.tries = 2;
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = d;
	rc = ares_init_options(&d->ch, &o,
	                       ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "cannot start the resolver: %s", ares_strerror(rc));
		free(d);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(csv + used, sizeof(csv) - used, "%s%s", i ? "," : "", servers[i]);
		if (w < 0 || (size_t)w >= sizeof(csv) - used) {
			snprintf(err, errlen, "too many resolvers");
			goto fail;
		}
		used += (size_t)w;
	}
	if (n && (rc = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS) {
		snprintf(err, errlen, "resolvers '%s': %s", csv, ares_strerror(rc));
		goto fail;
	}
	if (!(d->timer = evtimer_new(base, timer_cb, d))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return d;
fail:
	ares_destroy(d->ch);
	free(d);
	return NULL;
}

void
dns_free(struct dns *d)
{
	if (!d)
		return;
	ares_destroy(d->ch); /* answers every query with ARES_EDESTRUCTION */
	for (size_t i = 0; i < MAX_SOCKETS; i++)
		if (d->socks[i].ev)
			event_free(d->socks[i].ev);
	if (d->timer)
		event_free(d->timer);
	for (size_t i = 0; i < DNS_CACHE_SLOTS; i++)
		free(d->cache[i]);
	free(d);
}

bool
dns_busy(const struct dns *d)
{
	return d->queries > 0;
}

/* ---- the cache ---------------------------------------------------------------------- */

static size_t
slot_of(const struct ipaddr *a)
{
	uint64_t h = (uint64_t)a->v ^ (uint64_t)(a->v >> 64) ^ a->family;
	h *= 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 54) % DNS_CACHE_SLOTS;
}

static bool
cache_get(struct dns *d, const struct ipaddr *a, struct dns_fcrdns *out)
{
	struct cache_entry *e = d->cache[slot_of(a)];

	if (!e || !ipaddr_equal(&e->addr, a) || e->expires <= now_s())
		return false;
	*out = e->r;
	out->cached = true;
	return true;
}

static void
cache_put(struct dns *d, const struct ipaddr *a, const struct dns_fcrdns *r, uint32_t ttl)
{
	size_t i = slot_of(a);

	if (ttl == 0)
		return;
	if (!d->cache[i] && !(d->cache[i] = malloc(sizeof(*d->cache[i]))))
		return;
	d->cache[i]->addr = *a;
	d->cache[i]->r = *r;
	d->cache[i]->expires = now_s() + (time_t)ttl;
}

/* ---- answers -------------------------------------------------------------------------- */

struct rr {
	int type;
	uint32_t ttl;
	const unsigned char *data;
	int len;
};

/* Calls each() for every answer record of a raw reply.  Returns 0, or -1 when malformed. */
static int
walk_answers(const unsigned char *buf, int len,
             void (*each)(void *, const unsigned char *, int, const struct rr *), void *arg)
{
	int qd, an, off = 12;
	long enc;
	char *name;

	if (len < 12)
		return -1;
	qd = buf[4] << 8 | buf[5];
	an = buf[6] << 8 | buf[7];
	for (int i = 0; i < qd; i++) {
		if (ares_expand_name(buf + off, buf, len, &name, &enc) != ARES_SUCCESS)
			return -1;
		ares_free_string(name);
		off += (int)enc + 4;
		if (off > len)
			return -1;
	}
	for (int i = 0; i < an; i++) {
		struct rr r;
		if (ares_expand_name(buf + off, buf, len, &name, &enc) != ARES_SUCCESS)
			return -1;
		ares_free_string(name);
		off += (int)enc;
		if (off + 10 > len)
			return -1;
		const unsigned char *p = buf + off;
		r.type = p[0] << 8 | p[1];
		r.ttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
		r.len = p[8] << 8 | p[9];
		r.data = p + 10;
		off += 10 + r.len;
		if (off > len)
			return -1;
		each(arg, buf, len, &r);
	}
	return 0;
}

static void
lower_copy(char *dst, const char *src)
{
	size_t n = strlen(src);

	while (n > 0 && src[n - 1] == '.')
		n--;
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[n] = '\0';
}

static void
ttl_min(struct dns_check *c, uint32_t ttl)
{
	if (ttl < c->ttl)
		c->ttl = ttl;
}

/* Only host names (letters, digits, '-', '_', dots) are kept: anything else can match no
 * suffix, and the names go into replies and logs. */
static bool
host_name(const char *s)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

static void
ptr_each(void *arg, const unsigned char *buf, int len, const struct rr *r)
{
	struct dns_check *c = arg;
	char *name;
	long enc;

	if (r->type != T_PTR || c->r.n_names == DNS_MAX_NAMES)
		return;
	if (ares_expand_name(r->data, buf, len, &name, &enc) != ARES_SUCCESS)
		return;
	if (strlen(name) <= DNS_NAME_MAX && name[0] && host_name(name)) {
		lower_copy(c->r.names[c->r.n_names], name);
		for (unsigned i = 0; i < c->r.n_names; i++)
			if (strcmp(c->r.names[i], c->r.names[c->r.n_names]) == 0)
				goto out; /* listed twice */
		c->r.n_names++;
		ttl_min(c, r->ttl);
	}
out:
	ares_free_string(name);
}

struct addr_walk {
	struct dns_check *c;
	unsigned i;
};

static void
addr_each(void *arg, const unsigned char *buf, int len, const struct rr *r)
{
	struct addr_walk *w = arg;
	struct dns_check *c = w->c;
	struct ipaddr a = {0};

	(void)buf, (void)len;
	if (r->type == T_A && r->len == 4) {
		a.family = AF_INET;
		for (int i = 0; i < 4; i++)
			a.v = a.v << 8 | r->data[i];
	} else if (r->type == T_AAAA && r->len == 16) {
		a.family = AF_INET6;
		for (int i = 0; i < 16; i++)
			a.v = a.v << 8 | r->data[i];
	} else {
		return;
	}
	ttl_min(c, r->ttl);
	if (ipaddr_equal(&a, &c->addr))
		c->r.confirmed[w->i] = true;
}

/* ---- a check -------------------------------------------------------------------------- */

static void
check_free_if_done(struct dns_check *c)
{
	if (c->pending > 0 || (!c->finished && c->cb))
		return;
	if (c->deadline)
		event_free(c->deadline);
	free(c);
}

static void
finish(struct dns_check *c, enum dns_status st, const char *why)
{
	if (c->finished)
		return;
	c->finished = true;
	evtimer_del(c->deadline);
	c->r.status = st;
	c->r.why = why;
	if (st == DNS_NO_PTR)
		cache_put(c->d, &c->addr, &c->r, DNS_CACHE_NEG_TTL);
	else if (st == DNS_DONE && !c->r.trouble)
		cache_put(c->d, &c->addr, &c->r,
		          c->ttl < DNS_CACHE_MAX_TTL ? c->ttl : DNS_CACHE_MAX_TTL);
	if (c->cb) {
		dns_cb cb = c->cb;
		c->cb = NULL;
		cb(c->arg, &c->r);
	}
}

static const char *
trouble_text(int status)
{
	switch (status) {
	case ARES_ETIMEOUT:
		return "no answer from the DNS servers (timeout)";
	case ARES_ESERVFAIL:
		return "the DNS server failed (SERVFAIL)";
	case ARES_EREFUSED:
		return "the DNS server refused the query";
	case ARES_ECONNREFUSED:
		return "the DNS servers are unreachable";
	default:
		return ares_strerror(status);
	}
}

static void
addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct sub *s = arg;
	struct dns_check *c = s->c;

	(void)timeouts;
	c->pending--;
	c->d->queries--;
	if (!c->finished && c->cb) {
		struct addr_walk w = {c, s->i};
		if (status == ARES_SUCCESS) {
			if (walk_answers(abuf, alen, addr_each, &w) < 0)
				c->r.trouble = true;
		} else if (status != ARES_ENOTFOUND && status != ARES_ENODATA) {
			c->r.trouble = true;
		}
		if (c->pending == 0)
			finish(c, DNS_DONE, NULL);
	}
	check_free_if_done(c);
}

static void
ptr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_check *c = arg;

	(void)timeouts;
	c->pending--;
	c->d->queries--;
	if (c->finished || !c->cb) {
		check_free_if_done(c);
		return;
	}
	if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		finish(c, DNS_NO_PTR, NULL);
	} else if (status != ARES_SUCCESS) {
		finish(c, DNS_TEMPFAIL, trouble_text(status));
	} else if (walk_answers(abuf, alen, ptr_each, c) < 0) {
		finish(c, DNS_TEMPFAIL, "a malformed PTR answer");
	} else if (c->r.n_names == 0) {
		finish(c, DNS_NO_PTR, NULL);
	} else {
		int type = c->addr.family == AF_INET ? T_A : T_AAAA;
		/* c-ares answers a query it cannot send (send(2) failed) before ares_query()
		 * returns: this hold keeps such an answer from finishing, and freeing, the
		 * check while the loop still starts the others */
		c->pending++;
		for (unsigned i = 0; i < c->r.n_names; i++) {
			c->subs[i] = (struct sub){c, i};
			c->pending++;
			c->d->queries++;
			ares_query(c->d->ch, c->r.names[i], C_IN, type, addr_cb, &c->subs[i]);
		}
		if (--c->pending == 0)
			finish(c, DNS_DONE, NULL); /* every lookup was answered already */
		arm_timer(c->d);
	}
	check_free_if_done(c);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_check *c = arg;

	(void)fd, (void)what;
	finish(c, DNS_TEMPFAIL, "the check took longer than dns-timeout");
	check_free_if_done(c);
}

/* The reverse name: d.c.b.a.in-addr.arpa, or the 32 nibbles of ip6.arpa (RFC 3596). */
static void
reverse_name(const struct ipaddr *a, char *buf, size_t size)
{
	size_t off = 0;

	if (a->family == AF_INET) {
		uint32_t v = (uint32_t)a->v;
		snprintf(buf, size, "%u.%u.%u.%u.in-addr.arpa", v & 255, (v >> 8) & 255,
		         (v >> 16) & 255, v >> 24);
		return;
	}
	for (int i = 0; i < 32; i++)
		off += (size_t)snprintf(buf + off, size - off, "%x.",
		                        (unsigned)(a->v >> (4 * i)) & 15);
	snprintf(buf + off, size - off, "ip6.arpa");
}

int
dns_check(struct dns *d, const struct ipaddr *a, struct dns_fcrdns *out, dns_cb cb, void *arg,
          struct dns_check **pending)
{
	struct dns_check *c;
	char rev[80];

	if (cache_get(d, a, out))
		return 1;
	if (!(c = calloc(1, sizeof(*c))))
		return -1;
	if (!(c->deadline = evtimer_new(d->base, deadline_cb, c))) {
		free(c);
		return -1;
	}
	c->d = d;
	c->addr = *a;
	c->cb = cb;
	c->arg = arg;
	c->ttl = UINT32_MAX;
	struct timeval tv = {.tv_sec = (time_t)(d->timeout_ms / 1000),
	                     .tv_usec = (suseconds_t)(d->timeout_ms % 1000 * 1000)};
	evtimer_add(c->deadline, &tv);
	*pending = c;
	reverse_name(a, rev, sizeof(rev));
	c->pending++;
	d->queries++;
	/* may answer at once (a server list it cannot use): the callback then runs before
	 * this returns, so the caller must be ready for it */
	ares_query(d->ch, rev, C_IN, T_PTR, ptr_cb, c);
	arm_timer(d);
	return 0;
}

void
dns_cancel(struct dns_check *c)
{
	if (!c)
		return;
	c->cb = NULL;
	evtimer_del(c->deadline);
	check_free_if_done(c);
}

/* ---- matching ------------------------------------------------------------------------- */

bool
dns_suffix_match(const char *name, const char *suffix)
{
	size_t nl = strlen(name), sl = strlen(suffix);

	while (nl > 0 && name[nl - 1] == '.')
		nl--;
	while (sl > 0 && suffix[sl - 1] == '.')
		sl--;
	if (sl > 0 && suffix[0] == '.')
		suffix++, sl--;
	if (sl == 0 || sl > nl || strncasecmp(name + nl - sl, suffix, sl) != 0)
		return false;
	return nl == sl || name[nl - sl - 1] == '.';
}

const char *
dns_pick(const struct dns_fcrdns *r, char *const *suffixes, size_t n, const char **unconfirmed)
{
	if (unconfirmed)
		*unconfirmed = NULL;
	if (r->status != DNS_DONE)
		return NULL;
	for (unsigned i = 0; i < r->n_names; i++) {
		for (size_t j = 0; j < n; j++) {
			if (!dns_suffix_match(r->names[i], suffixes[j]))
				continue;
			if (r->confirmed[i])
				return r->names[i];
			if (unconfirmed && !*unconfirmed)
				*unconfirmed = r->names[i];
		}
	}
	return NULL;
}
