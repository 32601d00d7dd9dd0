/*
 * metrics_http — GET /metrics over libevent's evhttp, on its own thread; see
 * metrics_http.h.
 */
#include "obs/metrics_http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "obs/metrics.h"

#define ACCEPT_PAUSE_S 1

struct metrics_http {
	int fd, stop_fd;
	uint16_t port;
	struct event_base *base;
	struct evhttp *http;
	struct event *ev_stop;
	pthread_t thread;
	bool bound, running; /* bound: evhttp owns fd */
};

int
metrics_http_listen(const char *ip_port, char *err, size_t errlen)
{
	struct endpoint ep;
	char why[160];

	if (endpoint_parse(ip_port, &ep, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "metrics-listen \"%s\": %s", ip_port, why);
		return -1;
	}
	return metrics_http_listen_ep(&ep, err, errlen);
}

int
metrics_http_listen_ep(const struct endpoint *ep, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = endpoint_to_sockaddr(ep, &ss);
	char text[ENDPOINT_STRLEN];
	int one = 1, fd;

	endpoint_format(ep, text, sizeof(text));
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	/* [::]:P serves IPv6 only, as the SMTP listeners do */
	if (ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, METRICS_HTTP_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "metrics-listen %s: cannot listen: %s", text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void
free_page_cb(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)(uintptr_t)data);
}

/* A short text/plain answer; evhttp_send_error() would drop the headers added (Allow). */
static void
send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; charset=utf-8");
	if (body)
		evbuffer_add(body, text, strlen(text));
	evhttp_send_reply(req, code, reason, body);
	if (body)
		evbuffer_free(body);
}

static void
request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
	struct evbuffer *body;
	char *page, clen[24];
	size_t len;

	(void)arg;
	if (!path || strcmp(path, "/metrics") != 0) {
		send_text(req, HTTP_NOTFOUND, "Not Found",
		          "404 Not Found: the metrics are at /metrics\n");
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(hdrs, "Allow", "GET, HEAD");
		send_text(req, HTTP_BADMETHOD, "Method Not Allowed",
		          "405 Method Not Allowed: GET or HEAD\n");
		return;
	}
	if (metrics_render(&page, &len) < 0) {
		log_msg(LOG_LVL_WARNING, "metrics: cannot render the page for a scrape: %s",
		        strerror(errno));
		send_text(req, HTTP_INTERNAL, "Internal Server Error", "500 out of memory\n");
		return;
	}
	if (m == EVHTTP_REQ_HEAD) {
		/* evhttp 2.1 would send a HEAD reply's body: send the length alone */
		snprintf(clen, sizeof(clen), "%zu", len);
		free(page);
		page = NULL;
		evhttp_add_header(hdrs, "Content-Length", clen);
		len = 0;
	}
	if (!(body = evbuffer_new()) ||
	    (page && evbuffer_add_reference(body, page, len, free_page_cb, NULL) < 0)) {
		free(page);
		if (body)
			evbuffer_free(body);
		send_text(req, HTTP_INTERNAL, "Internal Server Error", "500 out of memory\n");
		return;
	}
	evhttp_add_header(hdrs, "Content-Type", METRICS_CONTENT_TYPE);
	evhttp_add_header(hdrs, "Cache-Control", "no-store");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

/* accept(2) failed for a reason other than a vanished client (EMFILE, ENFILE, ENOBUFS):
 * the socket stays readable, so pause instead of failing again at once, forever */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct timeval pause = {ACCEPT_PAUSE_S, 0};
	int err = EVUTIL_SOCKET_ERROR();

	(void)arg;
	log_msg(LOG_LVL_WARNING, "metrics: accept failed: %s; not accepting scrapes for %d s",
	        strerror(err), ACCEPT_PAUSE_S);
	evconnlistener_disable(lev);
	event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, resume_cb, lev, &pause);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	uint64_t v;

	(void)what;
	(void)!read(fd, &v, sizeof(v));
	event_base_loopbreak(h->base);
}

static void *
serve_main(void *arg)
{
	struct metrics_http *h = arg;

	event_base_dispatch(h->base);
	return NULL;
}

/* Frees what metrics_http_start() made; the thread is not running. */
static void
release(struct metrics_http *h)
{
	if (h->http)
		evhttp_free(h->http); /* its listener closes h->fd (LEV_OPT_CLOSE_ON_FREE) */
	if (!h->bound && h->fd >= 0)
		close(h->fd);
	if (h->ev_stop)
		event_free(h->ev_stop);
	if (h->base)
		event_base_free(h->base);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	free(h);
}

static int
setup(struct metrics_http *h)
{
	struct evhttp_bound_socket *bound;

	if (!(h->base = event_base_new()) || !(h->http = evhttp_new(h->base)))
		return -1;
	evhttp_set_max_headers_size(h->http, METRICS_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->http, METRICS_HTTP_MAX_BODY);
	evhttp_set_timeout(h->http, METRICS_HTTP_TIMEOUT_S);
	/* every method evhttp knows reaches request_cb, which answers 405 (not evhttp's 501) */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
#if LIBEVENT_VERSION_NUMBER >= 0x02020000
	evhttp_set_max_connections(h->http, 64);
#endif
	evhttp_set_gencb(h->http, request_cb, h);
	if (!(bound = evhttp_accept_socket_with_handle(h->http, h->fd)))
		return -1;
	h->bound = true;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), accept_error_cb);
	h->ev_stop = event_new(h->base, h->stop_fd, EV_READ | EV_PERSIST, stop_cb, h);
	if (!h->ev_stop || event_add(h->ev_stop, NULL) < 0)
		return -1;
	return 0;
}

struct metrics_http *
metrics_http_start(int fd, char *err, size_t errlen)
{
	struct metrics_http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int e;

	if (!h) {
		close(fd);
		snprintf(err, errlen, "metrics: out of memory");
		return NULL;
	}
	h->fd = fd;
	h->stop_fd = -1;
	if (listen(fd, METRICS_HTTP_BACKLOG) < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(err, errlen, "metrics: cannot listen on the socket given: %s",
		         strerror(errno));
		goto fail;
	}
	h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                                         : ((struct sockaddr_in *)&ss)->sin_port);
	if ((h->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 || setup(h) < 0) {
		snprintf(err, errlen, "metrics: cannot set up the HTTP server: %s",
		         errno ? strerror(errno) : "libevent failed");
		goto fail;
	}
	if ((e = pthread_create(&h->thread, NULL, serve_main, h)) != 0) {
		snprintf(err, errlen, "metrics: cannot start its thread: %s", strerror(e));
		goto fail;
	}
	h->running = true;
	return h;
fail:
	release(h);
	return NULL;
}

uint16_t
metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

void
metrics_http_stop(struct metrics_http *h)
{
	uint64_t one = 1;

	if (!h)
		return;
	if (h->running) {
		(void)!write(h->stop_fd, &one, sizeof(one));
		pthread_join(h->thread, NULL);
	}
	release(h);
}
