#include "smtpd/verify.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "net/tls.h"
#include "queue/relay.h"
#include "smtpd/rcache.h"

struct prober {
	struct verify *v;
	pthread_t thread;
	bool started;
	struct relay_conn *conn; /* pooled, or NULL */
	char key[600];           /* the relay settings conn was opened with */
	uint64_t last_ms;        /* its last use */
	unsigned probes;         /* made on it */
	unsigned refusals;       /* 5xx answers on it */
	struct tls_ctx *tls;     /* for relay-tls, made with tls_key's settings */
	char tls_key[1100];
};

struct verify {
	pthread_mutex_t mu; /* the queue, stop and both caches */
	pthread_cond_t cv;
	struct verify_req *head, *tail;
	bool stop;
	struct rcache *pos, *neg;
	char relay[300];        /* "host|port" the caches hold answers of */
	uint64_t down_until_ms; /* see VERIFY_DOWN_MS */
	char down_why[400];
	struct prober p[VERIFY_THREADS];
};

static void
cache_key(const char *addr, char *key, size_t size)
{
	size_t i = 0;

	for (; addr[i] && i + 1 < size; i++)
		key[i] = (char)tolower((unsigned char)addr[i]);
	key[i] = '\0';
}

const char *
verify_verdict_name(enum verify_verdict v)
{
	return v == VERIFY_OK ? "ok" : v == VERIFY_UNKNOWN ? "unknown" : "unavailable";
}

/* Which next hop the caches speak for. */
static void
relay_id(const struct config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%s|%u", cfg->relay_host ? cfg->relay_host : "", cfg->relay_port);
}

/* Under v->mu. */
static bool
lookup_locked(struct verify *v, struct verify_req *r)
{
	char key[VERIFY_ADDR_MAX];
	uint64_t now = clock_mono_ms();

	char relay[sizeof(v->relay)];
	relay_id(r->cfg, relay, sizeof(relay));
	if (strcmp(relay, v->relay) != 0) {
		/* another next hop: what the last one said is no answer */
		rcache_clear(v->pos);
		rcache_clear(v->neg);
		v->down_until_ms = 0;
		memcpy(v->relay, relay, sizeof(relay));
	}
	cache_key(r->addr, key, sizeof(key));
	if (rcache_get(v->pos, key, now, NULL, 0)) {
		r->verdict = VERIFY_OK;
		r->code = 250;
		r->text[0] = '\0';
	} else if (rcache_get(v->neg, key, now, r->text, sizeof(r->text))) {
		r->verdict = VERIFY_UNKNOWN;
		r->code = atoi(r->text);
		memmove(r->text, r->text + 4, strlen(r->text + 4) + 1); /* "550 text" */
	} else if (now < v->down_until_ms) {
		r->verdict = VERIFY_UNAVAILABLE;
		r->code = 0;
		r->skipped = true;
		snprintf(r->text, sizeof(r->text), "not probed, the last probe %llus ago: %s",
		         (unsigned long long)(now + VERIFY_DOWN_MS - v->down_until_ms) / 1000,
		         v->down_why);
		return true;
	} else {
		return false;
	}
	r->cached = true;
	return true;
}

bool
verify_lookup(struct verify *v, struct verify_req *r)
{
	pthread_mutex_lock(&v->mu);
	bool hit = lookup_locked(v, r);
	pthread_mutex_unlock(&v->mu);
	return hit;
}

void
verify_submit(struct verify *v, struct verify_req *r)
{
	r->next = NULL;
	r->cached = false;
	pthread_mutex_lock(&v->mu);
	if (v->tail)
		v->tail->next = r;
	else
		v->head = r;
	v->tail = r;
	pthread_cond_signal(&v->cv);
	pthread_mutex_unlock(&v->mu);
}

/* ---- probing (on a probe thread) --------------------------------------------------------- */

static struct tls_ctx *
prober_tls(struct prober *p, const struct config *cfg, char *err, size_t errlen)
{
	char key[1100];

	snprintf(key, sizeof(key), "%d|%s", cfg->relay_tls_verify,
	         cfg->relay_ca_file ? cfg->relay_ca_file : "");
	if (!p->tls || strcmp(key, p->tls_key) != 0) {
		struct tls_ctx *n =
		        tls_client_ctx_new(cfg->relay_tls_verify, cfg->relay_ca_file, err, errlen);
		if (!n)
			return NULL;
		tls_ctx_unref(p->tls);
		p->tls = n;
		snprintf(p->tls_key, sizeof(p->tls_key), "%s", key);
	}
	return p->tls;
}

static void
prober_close(struct prober *p)
{
	relay_close(p->conn);
	p->conn = NULL;
}

/* A connection for cfg's relay settings: the pooled one when it still fits. */
static struct relay_conn *
prober_conn(struct prober *p, const struct config *cfg, bool *reused, char *err, size_t errlen)
{
	char key[600];
	uint64_t now = clock_mono_ms();

	snprintf(key, sizeof(key), "%s|%u|%u|%d|%s|%llu", cfg->relay_host, cfg->relay_port,
	         cfg->relay_tls, cfg->relay_tls_verify,
	         cfg->relay_ca_file ? cfg->relay_ca_file : "",
	         (unsigned long long)cfg->verify_timeout_ms);
	if (p->conn &&
	    (strcmp(key, p->key) != 0 || p->probes >= VERIFY_PROBES_PER_CONN ||
	     p->refusals >= VERIFY_REFUSALS_PER_CONN || now - p->last_ms > VERIFY_IDLE_MS))
		prober_close(p);
	*reused = p->conn != NULL;
	if (p->conn)
		return p->conn;
	struct tls_ctx *tctx = NULL;
	if (cfg->relay_tls != RELAY_TLS_NONE && !(tctx = prober_tls(p, cfg, err, errlen)))
		return NULL;
	struct relay_opts o = {.host = cfg->relay_host,
	                       .port = cfg->relay_port,
	                       .helo = cfg->hostname,
	                       .tls = cfg->relay_tls,
	                       .tls_ctx = tctx,
	                       .timeout_ms = cfg->verify_timeout_ms};
	if ((p->conn = relay_open(&o, err, errlen))) {
		snprintf(p->key, sizeof(p->key), "%s", key);
		p->probes = p->refusals = 0;
	}
	return p->conn;
}

/* One probe; a kept connection that broke before an answer is tried once more afresh. */
static void
probe(struct prober *p, struct verify_req *r)
{
	const struct config *cfg = r->cfg;
	struct relay_result res = {0};
	char err[600] = "";

	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = false;
		struct relay_conn *c = prober_conn(p, cfg, &reused, err, sizeof(err));
		if (!c)
			break;
		p->probes++;
		int rc = relay_probe(c, r->addr, &res, err, sizeof(err));
		p->last_ms = clock_mono_ms();
		p->refusals += res.code >= 500;
		if (rc < 0) {
			relay_abort(c);
			p->conn = NULL;
		}
		if (res.code != 0 || rc == 0 || !reused)
			break;
	}
	if (!p->conn && !err[0])
		snprintf(err, sizeof(err), "no answer from the next hop");
	r->code = res.code;
	if (res.code >= 200 && res.code < 300) {
		r->verdict = VERIFY_OK;
		r->text[0] = '\0';
	} else if (res.code >= 500 && res.code < 600) {
		r->verdict = VERIFY_UNKNOWN;
		snprintf(r->text, sizeof(r->text), "%s", res.text);
	} else {
		r->verdict = VERIFY_UNAVAILABLE;
		if (res.code)
			snprintf(r->text, sizeof(r->text), "the next hop answered %d %.400s",
			         res.code, res.text);
		else
			snprintf(r->text, sizeof(r->text), "%.500s", err);
	}
}

/* started: when the probe began (clock_mono_ms()).  An answer of a next hop a reload moved away
 * from is not kept. */
static void
remember(struct verify *v, const struct verify_req *r, uint64_t started)
{
	char key[VERIFY_ADDR_MAX], text[sizeof(r->text) + 8], relay[sizeof(v->relay)];
	uint64_t now = clock_mono_ms();
	const struct config *cfg = r->cfg;

	cache_key(r->addr, key, sizeof(key));
	relay_id(cfg, relay, sizeof(relay));
	pthread_mutex_lock(&v->mu);
	if (strcmp(relay, v->relay) != 0) {
		pthread_mutex_unlock(&v->mu);
		return;
	}
	if (r->verdict == VERIFY_UNAVAILABLE && now - started >= cfg->verify_timeout_ms) {
		/* a whole verify-timeout without an answer: see VERIFY_DOWN_MS (a quick
		 * failure, such as a refused connection, costs the next request nothing) */
		v->down_until_ms = now + VERIFY_DOWN_MS;
		snprintf(v->down_why, sizeof(v->down_why), "%.390s", r->text);
	} else if (r->verdict != VERIFY_UNAVAILABLE) {
		rcache_remove(v->pos, key);
		rcache_remove(v->neg, key);
	}
	if (r->verdict == VERIFY_OK && cfg->verify_positive_ttl_ms > 0) {
		rcache_put(v->pos, key, now + cfg->verify_positive_ttl_ms, "");
	} else if (r->verdict == VERIFY_UNKNOWN && cfg->verify_negative_ttl_ms > 0) {
		snprintf(text, sizeof(text), "%03d %s", r->code, r->text);
		rcache_put(v->neg, key, now + cfg->verify_negative_ttl_ms, text);
	}
	pthread_mutex_unlock(&v->mu);
}

static void *
prober_main(void *arg)
{
	struct prober *p = arg;
	struct verify *v = p->v;

	pthread_mutex_lock(&v->mu);
	for (;;) {
		while (!v->stop && !v->head)
			pthread_cond_wait(&v->cv, &v->mu);
		if (v->stop)
			break;
		struct verify_req *r = v->head;
		v->head = r->next;
		if (!v->head)
			v->tail = NULL;
		/* another thread may have answered the same address meanwhile */
		bool hit = lookup_locked(v, r);
		pthread_mutex_unlock(&v->mu);
		if (!hit) {
			uint64_t started = clock_mono_ms();
			probe(p, r);
			remember(v, r, started);
		}
		r->done_cb(r);
		pthread_mutex_lock(&v->mu);
	}
	pthread_mutex_unlock(&v->mu);
	prober_close(p);
	tls_ctx_unref(p->tls);
	return NULL;
}

/* ---- life ------------------------------------------------------------------------------- */

struct verify *
verify_start(size_t cache_size)
{
	struct verify *v = calloc(1, sizeof(*v));

	if (!v || !(v->pos = rcache_new(cache_size)) || !(v->neg = rcache_new(cache_size))) {
		log_msg(LOG_LVL_ERROR, "recipient verification: out of memory");
		goto fail;
	}
	pthread_mutex_init(&v->mu, NULL);
	pthread_cond_init(&v->cv, NULL);
	for (size_t i = 0; i < VERIFY_THREADS; i++) {
		v->p[i].v = v;
		int e = pthread_create(&v->p[i].thread, NULL, prober_main, &v->p[i]);
		if (e != 0) {
			log_msg(LOG_LVL_ERROR, "recipient verification: cannot start a thread: %s",
			        strerror(e));
			verify_stop(v);
			return NULL;
		}
		v->p[i].started = true;
	}
	return v;
fail:
	if (v) {
		rcache_free(v->pos);
		rcache_free(v->neg);
	}
	free(v);
	return NULL;
}

void
verify_stop(struct verify *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	for (size_t i = 0; i < VERIFY_THREADS; i++)
		if (v->p[i].started)
			pthread_join(v->p[i].thread, NULL);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->cv);
	rcache_free(v->pos);
	rcache_free(v->neg);
	free(v);
}
