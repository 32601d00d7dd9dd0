#include "smtpd/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "conf/selector.h"
#include "obs/metrics.h"
#include "smtpd/proxywait.h"

#define ACCEPT_BURST        64
#define ACCEPT_LOG_INTERVAL 10 /* seconds between two "cannot accept" lines */

struct listeners;

struct listener {
	struct endpoint ep;
	int fd;
	struct event *ev;
	struct listeners *owner;
	const struct selector_table *table; /* in the current configuration */
	bool covers_exact; /* a wildcard that also serves exact bindings on its port */
	bool keep;         /* reconcile bookkeeping */
};

struct listeners {
	struct event_base *base;  /* borrowed */
	struct admission *adm;    /* borrowed */
	const struct config *cfg; /* borrowed: the last reconcile's */
	listener_handoff_cb *handoff;
	listener_accepting_cb *accepting;
	void *arg;
	struct listener *ls;
	size_t n;
	struct event *resume; /* the back-off timer */
	struct proxywait *pw; /* connections from balancers waiting for their header */
	bool paused;
	struct timespec logged; /* when the last "cannot accept" line was written (monotonic) */
	uint64_t unlogged;
	/* every accept() that failed for want of descriptors or memory; read by the metrics
	 * module to come, hence atomic */
	atomic_uint_fast64_t exhausted;
};

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg);
static void proxied_cb(int fd, const struct proxy_header *h, const struct endpoint *balancer,
                       const struct endpoint *lep, void *arg);

struct listeners *
listeners_new(struct event_base *base, struct admission *adm, listener_handoff_cb *handoff,
              listener_accepting_cb *accepting, void *arg)
{
	struct listeners *ls = calloc(1, sizeof(*ls));

	if (!ls)
		return NULL;
	ls->base = base;
	ls->adm = adm;
	ls->handoff = handoff;
	ls->accepting = accepting;
	ls->arg = arg;
	if (!(ls->resume = evtimer_new(base, accept_resume_cb, ls))) {
		free(ls);
		return NULL;
	}
	if (!(ls->pw = proxywait_new(base, proxied_cb, ls))) {
		event_free(ls->resume);
		free(ls);
		return NULL;
	}
	return ls;
}

static void
accepting(struct listeners *ls, bool on)
{
	for (size_t i = 0; i < ls->n; i++) {
		if (!ls->ls[i].ev)
			continue;
		if (on)
			event_add(ls->ls[i].ev, NULL);
		else
			event_del(ls->ls[i].ev);
	}
	ls->accepting(on, ls->arg);
}

bool
listeners_exhausted(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct listeners *ls = arg;

	(void)fd, (void)what;
	ls->paused = false;
	accepting(ls, true); /* closed listeners (draining) have no event */
}

void
listeners_pause(struct listeners *ls, const char *what, int err)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = LISTENER_BACKOFF_MS * 1000};
	struct timespec now;
	struct rlimit rl;
	char more[64] = "", fix[160];

	clock_gettime(CLOCK_MONOTONIC, &now);
	atomic_fetch_add(&ls->exhausted, 1);
	if (ls->logged.tv_sec &&
	    (now.tv_sec - ls->logged.tv_sec) * 1000 + (now.tv_nsec - ls->logged.tv_nsec) / 1000000 <
	            ACCEPT_LOG_INTERVAL * 1000) {
		ls->unlogged++;
	} else {
		if (ls->unlogged)
			snprintf(more, sizeof(more), " (%llu more since the last report)",
			         (unsigned long long)ls->unlogged);
		if (err == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
			snprintf(fix, sizeof(fix),
			         "open-file limit reached (%llu): raise LimitNOFILE= (systemd) or "
			         "the hard limit (ulimit -Hn)",
			         (unsigned long long)rl.rlim_cur);
		else if (err == ENFILE)
			snprintf(fix, sizeof(fix),
			         "the system's file table is full: raise "
			         "fs.file-max (sysctl) or find what holds the files");
		else
			snprintf(fix, sizeof(fix), "the kernel is short of memory");
		log_msg(LOG_LVL_ERROR,
		        "accept on %s: %s; %s; waiting clients stay in the backlog while accepting "
		        "pauses %d ms at a time%s",
		        what, strerror(err), fix, LISTENER_BACKOFF_MS, more);
		ls->logged = now;
		ls->unlogged = 0;
	}
	if (ls->paused)
		return;
	ls->paused = true;
	accepting(ls, false);
	evtimer_add(ls->resume, &tv);
}

static void
refuse(int fd, const char *text)
{
	/* best effort: the socket is fresh, a short write fits */
	(void)!send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

/* "[ip]:port", and " via [balancer]:port" for a client a balancer relayed. */
static void
client_text(const struct ipaddr *remote, uint16_t rport, const struct endpoint *via, char *buf,
            size_t size)
{
	char ip[IPADDR_STRLEN], b[IPADDR_STRLEN];

	ipaddr_format(remote, ip, sizeof(ip));
	if (!via) {
		snprintf(buf, size, "[%s]:%u", ip, rport);
		return;
	}
	ipaddr_format(&via->addr, b, sizeof(b));
	snprintf(buf, size, "[%s]:%u via [%s]:%u", ip, rport, b, via->port);
}

/* Connector k (or -1: none) was selected for remote: admission, then the handoff.  via:
 * the balancer that relayed the client, NULL for a direct one. */
static void
admit(struct listeners *ls, int fd, int k, const struct ipaddr *remote, uint16_t rport,
      const struct endpoint *lep, const struct endpoint *via)
{
	char who[IPADDR_STRLEN + ENDPOINT_STRLEN + 16], ep[ENDPOINT_STRLEN];

	if (k < 0) {
		/* no connector: closed without a byte, as Exchange does */
		close(fd);
		metrics_refused(METRICS_REFUSED_NO_CONNECTOR);
		if (log_enabled(LOG_LVL_INFO)) {
			client_text(remote, rport, via, who, sizeof(who));
			endpoint_format(lep, ep, sizeof(ep));
			log_msg(LOG_LVL_INFO, "refused %s on %s: no connector", who, ep);
		}
		return;
	}
	const struct connector *kc = &ls->cfg->connectors[k];
	enum admit ad = admission_admit(ls->adm, kc, remote);
	if (ad != ADMIT_OK) {
		client_text(remote, rport, via, who, sizeof(who));
		endpoint_format(lep, ep, sizeof(ep));
		metrics_refused(ad == ADMIT_SOURCE_FULL      ? METRICS_REFUSED_SOURCE_LIMIT
		                : ad == ADMIT_CONNECTOR_FULL ? METRICS_REFUSED_CONNECTOR_LIMIT
		                                             : METRICS_REFUSED_NO_MEMORY);
		if (ad == ADMIT_SOURCE_FULL) {
			refuse(fd, "421 4.3.2 The maximum number of concurrent server "
			           "connections has exceeded a per-source limit, closing "
			           "transmission channel\r\n");
			log_msg(LOG_LVL_INFO, "refused %s on %s: connector \"%s\" per-source limit",
			        who, ep, kc->name);
		} else {
			refuse(fd, "421 4.3.2 The maximum number of concurrent connections "
			           "has exceeded a limit, closing transmission channel\r\n");
			log_msg(LOG_LVL_INFO,
			        "refused %s on %s: connector \"%s\" is at max-inbound-connection",
			        who, ep, kc->name);
		}
		return;
	}
	if (ls->handoff(fd, remote, rport, lep, k, via, ls->arg) < 0) {
		metrics_refused(METRICS_REFUSED_NO_MEMORY);
		admission_release(ls->adm, kc->name, remote);
		close(fd);
	}
}

/* A balancer's header is in: the client it names (or, for LOCAL, the balancer itself)
 * is selected like a direct one, on the address the connection has here. */
static void
proxied_cb(int fd, const struct proxy_header *h, const struct endpoint *balancer,
           const struct endpoint *lep, void *arg)
{
	struct listeners *ls = arg;
	struct sockaddr_storage lss;
	socklen_t lsl = sizeof(lss);
	struct endpoint local = *lep;
	bool relayed = h->family != PROXY_FAM_UNSPEC;
	const struct endpoint *client = relayed ? &h->src : balancer;

	if (getsockname(fd, (struct sockaddr *)&lss, &lsl) == 0)
		ipaddr_from_sockaddr((struct sockaddr *)&lss, &local.addr, &local.port);
	int k = selector_select(ls->cfg->selector, &local, &client->addr);
	admit(ls, fd, k, &client->addr, client->port, lep, relayed ? balancer : NULL);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener *l = arg;
	struct listeners *ls = l->owner;
	char ep[ENDPOINT_STRLEN];

	(void)what;
	endpoint_format(&l->ep, ep, sizeof(ep));
	log_batch_begin();
	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct ipaddr remote;
		uint16_t rport = 0;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (listeners_exhausted(errno)) {
				metrics_refused(METRICS_REFUSED_FD_EXHAUSTED);
				metrics_accept_paused();
				listeners_pause(ls, ep, errno);
			}
			break;
		}
		if (ipaddr_from_sockaddr((struct sockaddr *)&ss, &remote, &rport) < 0) {
			close(fd);
			continue;
		}
		int one = 1;
		if (config_proxy_from(ls->cfg, &remote)) {
			/* a balancer: the client is known once its PROXY header is in */
			struct endpoint peer = {.addr = remote, .port = rport};
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			proxywait_add(ls->pw, fd, &peer, &l->ep,
			              ls->cfg->proxy_protocol_timeout_ms);
			continue;
		}
		int k;
		if (l->covers_exact) {
			/* Linux will not listen on 0.0.0.0:P and 10.0.0.5:P at once: this wildcard
			 * socket serves both, and the local address picks the table */
			struct sockaddr_storage lss;
			socklen_t lsl = sizeof(lss);
			struct endpoint local = l->ep;
			if (getsockname(fd, (struct sockaddr *)&lss, &lsl) == 0)
				ipaddr_from_sockaddr((struct sockaddr *)&lss, &local.addr,
				                     &local.port);
			k = selector_select(ls->cfg->selector, &local, &remote);
		} else {
			k = l->table ? selector_table_select(l->table, &remote) : -1;
		}
		if (k >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		admit(ls, fd, k, &remote, rport, &l->ep, NULL);
	}
	log_batch_end();
}

static int
open_listener(struct listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl = endpoint_to_sockaddr(&l->ep, &ss);
	char ep[ENDPOINT_STRLEN];
	int one = 1, fd;

	endpoint_format(&l->ep, ep, sizeof(ep));
	fd = socket(l->ep.addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* [::] means IPv6 only, so it can sit beside 0.0.0.0 on the same port */
	if (l->ep.addr.family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 4096) < 0)
		goto fail;
	l->fd = fd;
	l->ev = event_new(l->owner->base, fd, EV_READ | EV_PERSIST, accept_cb, l);
	if (!l->ev || event_add(l->ev, NULL) < 0)
		goto fail;
	log_msg(LOG_LVL_INFO, "listening on %s", ep);
	return 0;
fail:
	log_msg(LOG_LVL_ERROR, "cannot listen on %s: %s", ep, strerror(errno));
	if (fd >= 0)
		close(fd);
	l->fd = -1;
	return -1;
}

static void
close_listener(struct listener *l)
{
	char ep[ENDPOINT_STRLEN];

	if (l->ev)
		event_free(l->ev);
	if (l->fd >= 0)
		close(l->fd);
	endpoint_format(&l->ep, ep, sizeof(ep));
	log_msg(LOG_LVL_INFO, "stopped listening on %s", ep);
	l->ev = NULL;
	l->fd = -1;
}

/* True if eps holds the wildcard of ep's family on ep's port. */
static bool
has_wildcard(const struct endpoint *eps, size_t n, const struct endpoint *ep)
{
	for (size_t i = 0; i < n; i++)
		if (eps[i].port == ep->port && eps[i].addr.family == ep->addr.family &&
		    ipaddr_is_any(&eps[i].addr))
			return true;
	return false;
}

/* The listeners (moved or kept in place) take cfg's tables; returns how many are open. */
static size_t
attach(struct listeners *ls, const struct config *cfg, const struct endpoint *eps, size_t n)
{
	size_t open = 0;

	for (size_t i = 0; i < ls->n; i++) {
		struct listener *l = &ls->ls[i];
		if (l->fd < 0)
			continue;
		l->table = selector_table(cfg->selector, &l->ep);
		l->covers_exact = false;
		for (size_t j = 0; ipaddr_is_any(&l->ep.addr) && j < n; j++)
			if (!ipaddr_is_any(&eps[j].addr) && eps[j].port == l->ep.port &&
			    eps[j].addr.family == l->ep.addr.family)
				l->covers_exact = true;
		open++;
	}
	ls->cfg = cfg;
	if (ls->paused)
		accepting(ls, false); /* the back-off timer turns them on */
	return open;
}

/* Out of memory for a new listener array: the sockets stay where they are.  Those cfg
 * still binds serve it, the others close, and its new bindings count as failed (the next
 * reload tries them again).  cfg is taken whatever happens: the caller frees the old
 * snapshot, which the listeners must no longer point into. */
static size_t
reconcile_in_place(struct listeners *ls, const struct config *cfg, const struct endpoint *eps,
                   size_t n, size_t *failed)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->ls[i].fd >= 0 && !selector_table(cfg->selector, &ls->ls[i].ep))
			close_listener(&ls->ls[i]);
	for (size_t i = 0; i < n; i++) {
		bool served = false;
		if (!ipaddr_is_any(&eps[i].addr) && has_wildcard(eps, n, &eps[i]))
			continue;
		for (size_t j = 0; j < ls->n && !served; j++)
			served = ls->ls[j].fd >= 0 && ls->ls[j].ep.port == eps[i].port &&
			         ipaddr_equal(&ls->ls[j].ep.addr, &eps[i].addr);
		if (!served) {
			char ep[ENDPOINT_STRLEN];
			endpoint_format(&eps[i], ep, sizeof(ep));
			log_msg(LOG_LVL_ERROR, "cannot listen on %s: out of memory", ep);
			(*failed)++;
		}
	}
	return attach(ls, cfg, eps, n);
}

/* Makes the listener set match cfg: keeps common endpoints, opens new ones, closes the
 * rest.  An exact binding whose family's wildcard is bound on the same port is served by
 * the wildcard socket.  Returns the number of listeners open; *failed counts those that
 * could not be opened. */
size_t
listeners_reconcile(struct listeners *ls, const struct config *cfg, size_t *failed)
{
	const struct endpoint *eps;
	size_t n = selector_endpoints(cfg->selector, &eps), nn = 0;
	struct listener *nl = calloc(n ? n : 1, sizeof(*nl));

	*failed = 0;
	if (!nl)
		return reconcile_in_place(ls, cfg, eps, n, failed);
	for (size_t i = 0; i < ls->n; i++)
		ls->ls[i].keep = false;
	for (size_t i = 0; i < n; i++) {
		struct listener *old = NULL;
		if (!ipaddr_is_any(&eps[i].addr) && has_wildcard(eps, n, &eps[i]))
			continue;
		for (size_t j = 0; j < ls->n; j++)
			if (ls->ls[j].fd >= 0 && ls->ls[j].ep.port == eps[i].port &&
			    ipaddr_equal(&ls->ls[j].ep.addr, &eps[i].addr))
				old = &ls->ls[j];
		if (old) {
			old->keep = true;
			nl[nn] = *old;
		} else {
			nl[nn] = (struct listener){.ep = eps[i], .fd = -1, .owner = ls};
			if (open_listener(&nl[nn]) < 0) {
				(*failed)++;
				continue;
			}
		}
		nn++;
	}
	for (size_t i = 0; i < ls->n; i++)
		if (!ls->ls[i].keep && ls->ls[i].fd >= 0)
			close_listener(&ls->ls[i]);
	free(ls->ls);
	ls->ls = nl;
	ls->n = nn;
	for (size_t i = 0; i < nn; i++) {
		struct listener *l = &ls->ls[i];
		/* listener structs moved: their events must point at the new place */
		if (l->ev) {
			event_del(l->ev);
			event_assign(l->ev, ls->base, l->fd, EV_READ | EV_PERSIST, accept_cb, l);
			event_add(l->ev, NULL);
		}
	}
	return attach(ls, cfg, eps, n);
}

void
listeners_close(struct listeners *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		if (ls->ls[i].fd >= 0)
			close_listener(&ls->ls[i]);
	proxywait_close_all(ls->pw);
}

void
listeners_free(struct listeners *ls)
{
	if (!ls)
		return;
	listeners_close(ls);
	free(ls->ls);
	event_free(ls->resume);
	proxywait_free(ls->pw);
	free(ls);
}
