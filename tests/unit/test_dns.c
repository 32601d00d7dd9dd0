/* Unit tests: forward-confirmed reverse DNS (net/dns): suffix matching at label
 * boundaries, the choice of a confirmed name, and the cache, against a scripted DNS
 * responder on a loopback UDP socket driven by the same event loop. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/dns.h"

static const struct suffix_case {
	const char *name, *suffix;
	bool match;
} suffix_cases[] = {
        {"mx1.pphosted.com", "pphosted.com", true},
        {"pphosted.com", "pphosted.com", true},
        {"MX1.PPHOSTED.COM", "pphosted.com", true},
        {"mx1.pphosted.com.", "pphosted.com", true},
        {"mx1.pphosted.com", ".pphosted.com", true},
        {"mx1.pphosted.com", "pphosted.com.", true},
        {"a.b.c.pphosted.com", "c.pphosted.com", true},
        {"evilpphosted.com", "pphosted.com", false},
        {"mx.evilpphosted.com", "pphosted.com", false},
        {"pphosted.com.evil.example", "pphosted.com", false},
        {"hosted.com", "pphosted.com", false},
        {"mx1.pphosted.com", "", false},
        {"mx1.pphosted.com", ".", false},
        {"", "pphosted.com", false},
        {"com", "pphosted.com", false},
};

Test(dns, suffix_match_at_label_boundaries)
{
	for (size_t i = 0; i < sizeof(suffix_cases) / sizeof(suffix_cases[0]); i++) {
		const struct suffix_case *c = &suffix_cases[i];
		cr_expect_eq(dns_suffix_match(c->name, c->suffix), c->match,
		             "'%s' ends with '%s': %d", c->name, c->suffix, c->match);
	}
}

Test(dns, pick_takes_a_confirmed_name_with_a_suffix)
{
	struct dns_fcrdns r = {.status = DNS_DONE, .n_names = 3};
	char s1[] = "example.net", s2[] = "pphosted.com";
	char *suffixes[] = {s1, s2};
	const char *unconf;

	snprintf(r.names[0], sizeof(r.names[0]), "host.other.example");
	snprintf(r.names[1], sizeof(r.names[1]), "mx1.pphosted.com");
	snprintf(r.names[2], sizeof(r.names[2]), "mx2.pphosted.com");
	r.confirmed[0] = true;
	cr_expect_null(dns_pick(&r, suffixes, 2, &unconf), "no confirmed name with a suffix");
	cr_expect_str_eq(unconf, "mx1.pphosted.com");
	r.confirmed[2] = true;
	cr_expect_str_eq(dns_pick(&r, suffixes, 2, &unconf), "mx2.pphosted.com");
	cr_expect_null(dns_pick(&r, suffixes, 1, NULL));
	r.status = DNS_NO_PTR;
	cr_expect_null(dns_pick(&r, suffixes, 2, NULL));
}

/* ---- a scripted responder ------------------------------------------------------------- */

struct responder {
	int fd;
	unsigned queries;
	uint32_t ttl;
	const char *ptr;       /* the PTR name of every address */
	unsigned char addr[4]; /* the A record of every name */
	struct event_base *base;
	struct dns_fcrdns got;
	int answers;
};

static size_t
put_name(unsigned char *p, const char *name)
{
	size_t off = 0;

	while (*name && off < 200) {
		const char *dot = strchr(name, '.');
		size_t n = dot ? (size_t)(dot - name) : strlen(name);
		if (n > 63)
			n = 63;
		p[off++] = (unsigned char)n;
		memcpy(p + off, name, n);
		off += n;
		name += n + (dot ? 1 : 0);
	}
	p[off++] = 0;
	return off;
}

static void
respond_cb(evutil_socket_t fd, short what, void *arg)
{
	struct responder *R = arg;
	unsigned char q[512], a[1024];
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&peer, &pl);
	size_t off = 12, len;

	(void)what;
	if (n < 17)
		return;
	R->queries++;
	while (off < (size_t)n && q[off])
		off += q[off] + 1u;
	off += 5; /* the root label, type, class */
	if (off > 300)
		return;
	int type = q[off - 4] << 8 | q[off - 3];
	memcpy(a, q, off);
	a[2] = 0x81; /* QR, RD */
	a[3] = 0x80; /* RA, NOERROR */
	a[6] = 0, a[7] = 1;
	a[8] = a[9] = a[10] = a[11] = 0;
	len = off;
	unsigned char rr[10] = {0xC0,
	                        12,
	                        0,
	                        (unsigned char)type,
	                        0,
	                        1,
	                        (unsigned char)(R->ttl >> 24),
	                        (unsigned char)(R->ttl >> 16),
	                        (unsigned char)(R->ttl >> 8),
	                        (unsigned char)R->ttl};
	memcpy(a + len, rr, 10);
	len += 10;
	if (type == 12) {
		size_t rl = put_name(a + len + 2, R->ptr);
		a[len] = (unsigned char)(rl >> 8), a[len + 1] = (unsigned char)rl;
		len += 2 + rl;
	} else {
		a[len] = 0, a[len + 1] = 4;
		memcpy(a + len + 2, R->addr, 4);
		len += 6;
	}
	sendto(fd, a, len, 0, (struct sockaddr *)&peer, pl);
}

static void
done_cb(void *arg, const struct dns_fcrdns *r)
{
	struct responder *R = arg;

	R->got = *r;
	R->answers++;
	event_base_loopbreak(R->base);
}

/* Runs one check of 127.0.0.10; returns what dns_check returned. */
static int
check_once(struct dns *d, struct responder *R)
{
	struct ipaddr a;
	struct dns_check *pending = NULL;
	int rc;

	cr_assert_eq(ipaddr_parse("127.0.0.10", 10, &a), 0);
	memset(&R->got, 0, sizeof(R->got));
	rc = dns_check(d, &a, &R->got, done_cb, R, &pending);
	cr_assert_geq(rc, 0);
	if (rc == 0)
		event_base_dispatch(R->base);
	return rc;
}

static struct dns *
setup(struct responder *R, struct event **ev)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	char server[64], err[256];
	char *servers[] = {server};
	struct dns *d;

	R->fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert(R->fd >= 0);
	cr_assert_eq(bind(R->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(R->fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sa.sin_port));
	cr_assert_not_null(R->base = event_base_new());
	*ev = event_new(R->base, R->fd, EV_READ | EV_PERSIST, respond_cb, R);
	event_add(*ev, NULL);
	d = dns_new(R->base, servers, 1, 5000, err, sizeof(err));
	cr_assert_not_null(d, "%s", err);
	return d;
}

/* c-ares calls the callback of a query it cannot send (send(2) failed: a full socket
 * buffer, an ICMP error queued on its socket) before ares_query() returns.  While set,
 * sending an A query fails here: the executable's send() comes before libc's (and the
 * sanitizer's) for libcares too, and passes everything else on. */
static bool fail_a_queries;

ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	static ssize_t (*next)(int, const void *, size_t, int);
	const unsigned char *q = buf;
	size_t off = 12;

	if (!next)
		next = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
	while (fail_a_queries && off < len && q[off])
		off += q[off] + 1u;
	if (fail_a_queries && off + 2 < len && q[off + 1] == 0 && q[off + 2] == 1) {
		errno = ECONNREFUSED;
		return -1;
	}
	return next(fd, buf, len, flags);
}

static void
teardown(struct dns *d, struct responder *R, struct event *ev)
{
	dns_free(d);
	event_free(ev);
	event_base_free(R->base);
	close(R->fd);
}

Test(dns, confirmed_answer_is_cached_for_its_ttl)
{
	struct responder R = {.ttl = 300, .ptr = "MX1.pphosted.com", .addr = {127, 0, 0, 10}};
	struct event *ev;
	struct dns *d = setup(&R, &ev);

	cr_expect_eq(check_once(d, &R), 0);
	cr_expect_eq(R.answers, 1);
	cr_expect_eq(R.got.status, DNS_DONE);
	cr_expect_eq(R.got.n_names, 1);
	cr_expect_str_eq(R.got.names[0], "mx1.pphosted.com");
	cr_expect(R.got.confirmed[0] && !R.got.trouble && !R.got.cached);
	cr_expect_eq(R.queries, 2, "PTR, then A");
	cr_expect_eq(check_once(d, &R), 1, "the second check is answered from the cache");
	cr_expect(R.got.cached && R.got.confirmed[0]);
	cr_expect_eq(R.queries, 2);
	teardown(d, &R, ev);
}

Test(dns, not_confirmed_and_zero_ttl_are_not_reused)
{
	struct responder R = {.ttl = 0, .ptr = "mx1.pphosted.com", .addr = {127, 0, 0, 99}};
	struct event *ev;
	struct dns *d = setup(&R, &ev);

	cr_expect_eq(check_once(d, &R), 0);
	cr_expect_eq(R.got.status, DNS_DONE);
	cr_expect(!R.got.confirmed[0], "the A record names another address");
	cr_expect_eq(check_once(d, &R), 0, "TTL 0: asked again");
	cr_expect_eq(R.queries, 4);
	teardown(d, &R, ev);
}

Test(dns, an_address_query_answered_before_it_is_sent_ends_the_check_once)
{
	struct responder R = {.ttl = 300, .ptr = "mx1.pphosted.com", .addr = {127, 0, 0, 10}};
	struct event *ev;
	struct dns *d = setup(&R, &ev);

	fail_a_queries = true;
	cr_expect_eq(check_once(d, &R), 0);
	fail_a_queries = false;
	cr_expect_eq(R.answers, 1);
	cr_expect_eq(R.got.status, DNS_DONE);
	cr_expect(R.got.trouble && !R.got.confirmed[0], "the A lookup failed: DNS trouble");
	cr_expect_eq(R.queries, 1, "only the PTR query reached the server");
	cr_expect(!dns_busy(d));
	teardown(d, &R, ev);
}
