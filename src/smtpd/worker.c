#include "smtpd/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "smtpd/inbox.h"
#include "smtpd/session.h"

struct workers {
	struct worker *w;
	size_t n, next;
	struct spool *spool;   /* borrowed */
	struct admission *adm; /* borrowed */
	atomic_long sessions;  /* handed off, not yet freed */
	atomic_uint_fast64_t session_seq;
};

struct worker {
	struct workers *pool;
	unsigned index;
	pthread_t thread;
	struct event_base *base;
	struct inbox inbox;
	struct session_host host; /* its sessions */
};

static void
inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct inbox_item *items;

	(void)fd, (void)what;
	items = inbox_take(&w->inbox);
	for (struct inbox_item *it = items, *next; it; it = next) {
		next = it->next;
		switch (it->kind) {
		case IN_SESSION:
			session_start(&w->host, (struct inbox_session *)it,
			              atomic_fetch_add(&w->pool->session_seq, 1));
			break;
		case IN_COMMITTED:
			/* embedded in the session, which this may free: never free(it) */
			session_committed(it->sess, it->err);
			continue;
		case IN_VERIFIED:
			/* embedded in the session too */
			session_verified(it->sess);
			continue;
		case IN_SHUTDOWN:
			session_shutdown_all(&w->host);
			break;
		case IN_FORCE:
			session_force_all(&w->host);
			break;
		case IN_STOP:
			event_base_loopbreak(w->base);
			break;
		}
		free(it);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_setname_np(pthread_self(), "mxgate-worker"); /* top(1), perf, /proc */

	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void
post_kind(struct worker *w, enum inbox_kind kind)
{
	struct inbox_item *it = calloc(1, sizeof(*it));

	if (it) {
		it->kind = kind;
		inbox_post(&w->inbox, it);
	}
}

/* Threads [0, n) of ws run; stops and joins them. */
static void
stop_threads(struct workers *ws, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		post_kind(&ws->w[i], IN_STOP);
		pthread_join(ws->w[i].thread, NULL);
	}
}

/* Session ids are unique across restarts: the sequence starts at the start time, seconds
 * in the high 32 bits and microseconds << 12 below, so a run would need 2^32 sessions a
 * second since the previous start (4096 a microsecond) to reach the next run's ids.  Only
 * a clock set back between two runs can repeat one. */
static uint64_t
session_seq_seed(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return 0;
	return ((uint64_t)ts.tv_sec << 32) | ((uint64_t)(ts.tv_nsec / 1000) << 12);
}

struct workers *
workers_start(size_t n, struct spool *spool, struct admission *adm, struct verify *verify)
{
	struct workers *ws = calloc(1, sizeof(*ws));

	if (!ws || !(ws->w = calloc(n, sizeof(*ws->w)))) {
		log_msg(LOG_LVL_ERROR, "cannot start the workers: %s", strerror(errno));
		free(ws);
		return NULL;
	}
	ws->spool = spool;
	ws->adm = adm;
	atomic_store(&ws->session_seq, session_seq_seed());
	for (size_t i = 0; i < n; i++) {
		struct worker *w = &ws->w[i];
		w->pool = ws;
		w->index = (unsigned)i;
		w->host = (struct session_host){.spool = spool,
		                                .adm = adm,
		                                .inbox = &w->inbox,
		                                .verify = verify,
		                                .handed_off = &ws->sessions};
		pthread_mutex_init(&w->inbox.mu, NULL);
		ws->n = i + 1; /* workers_free releases it */
		if (!(w->base = w->host.base = event_base_new()) ||
		    !(w->inbox.ev = event_new(w->base, -1, EV_READ, inbox_cb, w)) ||
		    pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			log_msg(LOG_LVL_ERROR, "cannot start worker %zu", i);
			stop_threads(ws, i);
			workers_free(ws);
			return NULL;
		}
	}
	return ws;
}

void
workers_stop(struct workers *ws)
{
	stop_threads(ws, ws->n);
}

/* Frees what a stopped worker leaves: its inbox and its sessions. */
static void
worker_release(struct worker *w)
{
	for (struct inbox_item *it = inbox_take(&w->inbox), *n; it; it = n) {
		n = it->next;
		if (it->kind == IN_COMMITTED || it->kind == IN_VERIFIED)
			continue; /* embedded in its session, freed below */
		if (it->kind == IN_SESSION) {
			struct inbox_session *is = (struct inbox_session *)it;
			close(is->fd);
			admission_release(w->pool->adm, is->cfg->connectors[is->connector].name,
			                  &is->remote);
			config_unref(is->cfg);
			tls_ctx_unref(is->tls);
			atomic_fetch_sub(&w->pool->sessions, 1);
		}
		free(it);
	}
	session_release_all(&w->host);
	if (w->inbox.ev)
		event_free(w->inbox.ev);
	if (w->base)
		event_base_free(w->base);
	pthread_mutex_destroy(&w->inbox.mu);
}

void
workers_free(struct workers *ws)
{
	if (!ws)
		return;
	for (size_t i = 0; i < ws->n; i++)
		worker_release(&ws->w[i]);
	free(ws->w);
	free(ws);
}

int
workers_handoff(struct workers *ws, int fd, const struct ipaddr *remote, uint16_t rport,
                const struct endpoint *local, struct config *cfg, struct tls_ctx *tls, int k,
                const struct endpoint *via)
{
	struct inbox_session *it = calloc(1, sizeof(*it));

	if (!it)
		return -1;
	*it = (struct inbox_session){.item.kind = IN_SESSION,
	                             .fd = fd,
	                             .remote = *remote,
	                             .rport = rport,
	                             .local = *local,
	                             .cfg = cfg,
	                             .tls = tls,
	                             .connector = k};
	if (via) {
		it->proxied = true;
		it->via = *via;
	}
	atomic_fetch_add(&ws->sessions, 1);
	size_t best = ws->next;
	for (size_t j = 0; j < ws->n; j++) {
		size_t c = (ws->next + j) % ws->n;
		if (atomic_load(&ws->w[c].host.n_sessions) <
		    atomic_load(&ws->w[best].host.n_sessions))
			best = c;
	}
	ws->next = (best + 1) % ws->n;
	inbox_post(&ws->w[best].inbox, &it->item);
	return 0;
}

void
workers_shutdown(struct workers *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		post_kind(&ws->w[i], IN_SHUTDOWN);
}

void
workers_force(struct workers *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		post_kind(&ws->w[i], IN_FORCE);
}

long
workers_sessions(struct workers *ws)
{
	return atomic_load(&ws->sessions);
}

size_t
workers_count(const struct workers *ws)
{
	return ws->n;
}
