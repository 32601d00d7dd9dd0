#include "smtpd/proxywait.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "obs/metrics.h"

struct waiter {
	struct proxywait *pw;
	int fd;
	struct event *ev_read, *ev_timeout;
	struct endpoint balancer, listener;
	uint64_t timeout_ms;
	size_t have; /* header bytes consumed into buf */
	unsigned char buf[PROXY_HEADER_MAX];
	struct waiter *prev, *next;
};

struct proxywait {
	struct event_base *base; /* borrowed */
	proxywait_done_cb *done;
	void *arg;
	struct waiter *head;
	size_t n;
};

struct proxywait *
proxywait_new(struct event_base *base, proxywait_done_cb *done, void *arg)
{
	struct proxywait *pw = calloc(1, sizeof(*pw));

	if (pw) {
		pw->base = base;
		pw->done = done;
		pw->arg = arg;
	}
	return pw;
}

/* Unlinks and frees w; closes its fd unless it was handed on (fd < 0). */
static void
waiter_free(struct waiter *w)
{
	struct proxywait *pw = w->pw;

	if (w->prev)
		w->prev->next = w->next;
	else
		pw->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pw->n--;
	if (w->ev_read)
		event_free(w->ev_read);
	if (w->ev_timeout)
		event_free(w->ev_timeout);
	if (w->fd >= 0)
		close(w->fd);
	free(w);
}

void
proxywait_close_all(struct proxywait *pw)
{
	if (!pw)
		return;
	while (pw->head)
		waiter_free(pw->head);
}

void
proxywait_free(struct proxywait *pw)
{
	proxywait_close_all(pw);
	free(pw);
}

size_t
proxywait_count(const struct proxywait *pw)
{
	return pw ? pw->n : 0;
}

/* The connection closes without a byte: why, and what the admin should do. */
static void
waiter_fail(struct waiter *w, enum metrics_proxy result, const char *why)
{
	char b[IPADDR_STRLEN], l[ENDPOINT_STRLEN];

	metrics_proxy_header(result);
	ipaddr_format(&w->balancer.addr, b, sizeof(b));
	endpoint_format(&w->listener, l, sizeof(l));
	log_msg(LOG_LVL_WARNING,
	        "closed [%s]:%u on %s without a reply: %s; a proxy-protocol-from peer must open "
	        "every connection with a PROXY header (HAProxy: send-proxy or send-proxy-v2 "
	        "on the server line, and check-send-proxy for its checks), or be removed from "
	        "proxy-protocol-from",
	        b, w->balancer.port, l, why);
	waiter_free(w);
}

/* The header is in (out->len bytes, all consumed): hand the connection on. */
static void
waiter_done(struct waiter *w, const struct proxy_header *h)
{
	char b[ENDPOINT_STRLEN], text[PROXY_STRLEN];
	struct proxywait *pw = w->pw;
	int fd = w->fd;

	metrics_proxy_header(h->family == PROXY_FAM_UNSPEC ? METRICS_PROXY_LOCAL
	                                                   : METRICS_PROXY_OK);
	if (log_enabled(LOG_LVL_DEBUG)) {
		endpoint_format(&w->balancer, b, sizeof(b));
		proxy_format(h, text, sizeof(text));
		log_msg(LOG_LVL_DEBUG, "PROXY header from %s: %s", b, text);
	}
	struct endpoint balancer = w->balancer, listener = w->listener;
	w->fd = -1;
	waiter_free(w);
	pw->done(fd, h, &balancer, &listener, pw->arg);
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;
	struct proxy_header h;
	char why[160];

	(void)what;
	/* peek: the bytes past the header must stay in the socket for the session */
	ssize_t n = recv(fd, w->buf + w->have, sizeof(w->buf) - w->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		snprintf(why, sizeof(why), "%s before a whole PROXY header",
		         n == 0 ? "the connection was closed" : strerror(errno));
		waiter_fail(w, METRICS_PROXY_INVALID, why);
		return;
	}
	enum proxy_status st = proxy_parse(w->buf, w->have + (size_t)n, &h);
	if (st == PROXY_ERROR) {
		snprintf(why, sizeof(why), "invalid PROXY header (%s)", proxy_error_text(h.error));
		waiter_fail(w, METRICS_PROXY_INVALID, why);
		return;
	}
	/* NEED_MORE: every byte so far is the header's; DONE: those up to h.len */
	size_t take = st == PROXY_DONE ? h.len - w->have : (size_t)n;
	if (recv(fd, w->buf + w->have, take, 0) != (ssize_t)take) {
		waiter_fail(w, METRICS_PROXY_INVALID, "the header could not be read");
		return;
	}
	w->have += take;
	if (st == PROXY_DONE)
		waiter_done(w, &h);
	else if (w->have == sizeof(w->buf)) /* the parser decides before: never */
		waiter_fail(w, METRICS_PROXY_INVALID, "PROXY header too long");
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;
	char why[96];

	(void)fd, (void)what;
	snprintf(why, sizeof(why), "no whole PROXY header within proxy-protocol-timeout (%llu ms)",
	         (unsigned long long)w->timeout_ms);
	waiter_fail(w, METRICS_PROXY_TIMEOUT, why);
}

void
proxywait_add(struct proxywait *pw, int fd, const struct endpoint *balancer,
              const struct endpoint *listener, uint64_t timeout_ms)
{
	char b[ENDPOINT_STRLEN];
	struct waiter *w = NULL;

	bool full = pw->n >= PROXYWAIT_MAX;
	if (full || !(w = calloc(1, sizeof(*w)))) {
		endpoint_format(balancer, b, sizeof(b));
		metrics_refused(full ? METRICS_REFUSED_CONNECTOR_LIMIT : METRICS_REFUSED_NO_MEMORY);
		if (full)
			log_msg(LOG_LVL_WARNING,
			        "closed %s: %d connections already wait for their PROXY header; "
			        "lower proxy-protocol-timeout or find the balancer that opens "
			        "connections without sending",
			        b, PROXYWAIT_MAX);
		else
			log_msg(LOG_LVL_ERROR, "closed %s: no memory to wait for its PROXY header",
			        b);
		close(fd);
		return;
	}
	*w = (struct waiter){.pw = pw,
	                     .fd = fd,
	                     .balancer = *balancer,
	                     .listener = *listener,
	                     .timeout_ms = timeout_ms,
	                     .next = pw->head};
	if (pw->head)
		pw->head->prev = w;
	pw->head = w;
	pw->n++;
	struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
	                     .tv_usec = (suseconds_t)(timeout_ms % 1000 * 1000)};
	if (!(w->ev_read = event_new(pw->base, fd, EV_READ | EV_PERSIST, read_cb, w)) ||
	    !(w->ev_timeout = evtimer_new(pw->base, timeout_cb, w)) ||
	    event_add(w->ev_read, NULL) < 0 || evtimer_add(w->ev_timeout, &tv) < 0) {
		metrics_refused(METRICS_REFUSED_NO_MEMORY);
		endpoint_format(balancer, b, sizeof(b));
		log_msg(LOG_LVL_ERROR, "closed %s: no memory to wait for its PROXY header", b);
		waiter_free(w);
	}
}
