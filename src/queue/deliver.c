#include "queue/deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mailpath.h"
#include "base/vec.h"
#include "net/tls.h"
#include "obs/metrics.h"
#include "queue/dsn.h"
#include "queue/maildir.h"
#include "queue/relay.h"

#define MAILDIR_BATCH   256
#define RELAY_BATCH     64
#define RETRY_MAX_S     3600
#define BASE_CACHE_SIZE 8

struct job {
	struct spool_entry *e; /* e->rcpt_state always allocated */
	time_t due;
	bool busy;         /* in a batch being delivered */
	struct job *next;  /* in ready, waiting, or a batch */
	struct job *bnext; /* in busy, while busy */
};

struct base {
	char path[1024];
	int fd;
};

/* The outcome of one attempt for one recipient. */
struct outcome {
	int code; /* 2xx, 4xx, 5xx; 0: not attempted / connection lost */
	char text[600];
	const char *remote; /* the server that answered, or NULL (Maildir) */
};

struct deliver {
	struct spool *sp;
	deliver_config_fn get_config;
	void *arg;
	pthread_t *threads;
	unsigned n_threads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *ready, *ready_tail;
	struct job *waiting; /* sorted by due */
	struct job *busy;    /* being delivered; listed but not touched */
	struct job *held;    /* held by the administrator (e->held): never taken */
	bool maildir_busy;   /* one Maildir batch at a time (its fsyncs are shared) */
	time_t oldest_at;    /* when mxgate_queue_oldest_... was last computed */
	time_t oldest;       /* what it found (0: the queue was empty) */
	bool maildir_failed; /* a Maildir sync failed: no Maildir delivery is settled again */
	bool stop;

	pthread_mutex_t base_mu;
	struct base bases[BASE_CACHE_SIZE];
	size_t n_bases;

	pthread_mutex_t tls_mu;
	struct tls_ctx *tls; /* relay client context, for tls_key */
	char tls_key[1100];  /* "verify|cafile" it was made for */
};

static void *deliver_main(void *arg);
static void queue_oldest(struct deliver *d, time_t now, bool force);

struct deliver *
deliver_new(struct spool *sp, deliver_config_fn get_config, void *arg, unsigned threads)
{
	struct deliver *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->sp = sp;
	d->get_config = get_config;
	d->arg = arg;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	pthread_mutex_init(&d->base_mu, NULL);
	pthread_mutex_init(&d->tls_mu, NULL);
	if (threads < 1)
		threads = 1;
	if (!(d->threads = calloc(threads, sizeof(*d->threads)))) {
		free(d);
		return NULL;
	}
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&d->threads[i], NULL, deliver_main, d) != 0)
			break;
		d->n_threads++;
	}
	if (d->n_threads == 0) {
		free(d->threads);
		free(d);
		return NULL;
	}
	return d;
}

static void
free_job(struct job *j)
{
	spool_entry_free(j->e);
	free(j);
}

static void
free_list(struct job *j)
{
	for (struct job *n; j; j = n) {
		n = j->next;
		free_job(j);
	}
}

void
deliver_free(struct deliver *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	for (unsigned i = 0; i < d->n_threads; i++)
		pthread_join(d->threads[i], NULL);
	free(d->threads);
	free_list(d->ready);
	free_list(d->waiting);
	free_list(d->held);
	for (size_t i = 0; i < d->n_bases; i++)
		close(d->bases[i].fd);
	tls_ctx_unref(d->tls);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->base_mu);
	pthread_mutex_destroy(&d->tls_mu);
	free(d);
}

/* ---- Maildir base directories -------------------------------------------------------------- */

/* A Maildir base inside the spool is part of it (spool.h, TRUST): every directory from
 * the spool down to the base (open at bfd) must be the run user's alone.  0, or -1 with
 * the problem in err. */
static int
check_base_in_spool(struct deliver *d, const char *base, int bfd, long uid, long gid, char *err,
                    size_t errlen)
{
	const char *sp = spool_path(d->sp);
	size_t n = strlen(sp);
	char path[1024];

	while (n > 1 && sp[n - 1] == '/')
		n--;
	if (strncmp(base, sp, n) != 0 || base[n] != '/')
		return 0;
	for (const char *p = base + n + 1;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			return spool_check_dir(bfd, base, uid, gid, err, errlen);
		snprintf(path, sizeof(path), "%.*s", (int)(slash - base), base);
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0) {
			snprintf(err, errlen, "cannot open %.900s: %s", path, strerror(errno));
			return -1;
		}
		int rc = spool_check_dir(fd, path, uid, gid, err, errlen);
		close(fd);
		if (rc < 0)
			return -1;
		p = slash + 1;
	}
}

/* The fd of a Maildir base directory, opened once and kept (so it still works after
 * privileges are dropped).  -1 with errno; EPERM (and an error line) when the base is
 * inside the spool and others could write it. */
static int
base_fd(struct deliver *d, const char *path, long uid, long gid)
{
	bool made = false;
	int fd = -1;
	char err[1024];

	pthread_mutex_lock(&d->base_mu);
	for (size_t i = 0; i < d->n_bases; i++) {
		if (strcmp(d->bases[i].path, path) == 0) {
			fd = d->bases[i].fd;
			goto out;
		}
	}
	if (mkdir(path, 0700) == 0)
		made = true;
	else if (errno != EEXIST)
		goto out;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	if (check_base_in_spool(d, path, fd, uid, gid, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERROR, "maildir base refused, no delivery into it: %s", err);
		close(fd);
		fd = -1;
		errno = EPERM;
		goto out;
	}
	if (made && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0) {
		close(fd);
		fd = -1;
		goto out;
	}
	if (d->n_bases == BASE_CACHE_SIZE) {
		close(d->bases[0].fd);
		memmove(d->bases, d->bases + 1, (BASE_CACHE_SIZE - 1) * sizeof(d->bases[0]));
		d->n_bases--;
	}
	snprintf(d->bases[d->n_bases].path, sizeof(d->bases[0].path), "%s", path);
	d->bases[d->n_bases++].fd = fd;
out:
	pthread_mutex_unlock(&d->base_mu);
	return fd;
}

int
deliver_prepare(struct deliver *d, const struct config *cfg, long uid, long gid)
{
	char base[1024];
	const char *rest;

	if (cfg->relay)
		return 0;
	if (mailpath_split(cfg->maildir, base, sizeof(base), &rest) == 0 &&
	    base_fd(d, base, uid, gid) < 0) {
		if (errno == EPERM)
			return -1;
		log_msg(LOG_LVL_WARNING, "maildir base %s cannot be opened: %s", base,
		        strerror(errno));
	}
	return 0;
}

/* ---- the queue ---------------------------------------------------------------------------- */

/* Appends j (its next NULL) to the jobs ready to be delivered.  Under d->mu. */
static void
ready_push(struct deliver *d, struct job *j)
{
	if (d->ready_tail)
		d->ready_tail->next = j;
	else
		d->ready = j;
	d->ready_tail = j;
}

void
deliver_submit(struct deliver *d, struct spool_entry *e)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j || (!e->rcpt_state && !(e->rcpt_state = calloc(e->n_rcpts ? e->n_rcpts : 1, 1)))) {
		/* stays in the spool; the next start delivers it */
		log_msg(LOG_LVL_ERROR, "out of memory: message %s waits for the next start", e->id);
		free(j);
		spool_entry_free(e);
		return;
	}
	j->e = e;
	metrics_queue_add(1);
	pthread_mutex_lock(&d->mu);
	if (e->held) { /* held before a restart: it stays held */
		metrics_queue_held_add(1);
		j->next = d->held;
		d->held = j;
		pthread_mutex_unlock(&d->mu);
		return;
	}
	ready_push(d, j);
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void
deliver_flush(struct deliver *d)
{
	pthread_mutex_lock(&d->mu);
	for (struct job *j = d->waiting; j; j = j->next)
		j->due = 0;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static bool
unlink_job(struct job **list, struct job **tail, const char *id, struct job **out)
{
	struct job *prev = NULL;

	for (struct job *j = *list; j; prev = j, j = j->next) {
		if (strcmp(j->e->id, id) != 0)
			continue;
		if (prev)
			prev->next = j->next;
		else
			*list = j->next;
		if (tail && *tail == j)
			*tail = prev;
		j->next = NULL;
		*out = j;
		return true;
	}
	return false;
}

int
deliver_remove(struct deliver *d, const char *id, char *err, size_t errlen)
{
	struct job *j = NULL;

	pthread_mutex_lock(&d->mu);
	for (struct job *b = d->busy; b; b = b->bnext) {
		if (strcmp(b->e->id, id) == 0) {
			pthread_mutex_unlock(&d->mu);
			snprintf(err, errlen, "message %s is being delivered right now; try again",
			         id);
			return -1;
		}
	}
	if (!unlink_job(&d->ready, &d->ready_tail, id, &j) &&
	    !unlink_job(&d->waiting, NULL, id, &j) && unlink_job(&d->held, NULL, id, &j))
		metrics_queue_held_add(-1);
	if (j)
		queue_oldest(d, time(NULL), true);
	pthread_mutex_unlock(&d->mu);
	if (!j) {
		snprintf(err, errlen, "no message %s in the queue", id);
		return -1;
	}
	if (spool_remove(d->sp, j->e) < 0 || spool_sync(d->sp) < 0) {
		snprintf(err, errlen, "cannot remove message %s: %s", id, strerror(errno));
		free_job(j);
		return -1;
	}
	metrics_queue_add(-1);
	log_msg(LOG_LVL_INFO,
	        "message %s removed from the queue by the administrator (from <%s>, "
	        "%zu recipient%s)",
	        id, j->e->sender, j->e->n_rcpts, j->e->n_rcpts == 1 ? "" : "s");
	free_job(j);
	return 0;
}

/* Holds (hold) or releases a message: its state line first, then the list it is on. */
int
deliver_hold(struct deliver *d, const char *id, bool hold, char *err, size_t errlen)
{
	struct job *j = NULL;
	bool found;

	pthread_mutex_lock(&d->mu);
	for (struct job *b = d->busy; b; b = b->bnext) {
		if (strcmp(b->e->id, id) == 0) {
			pthread_mutex_unlock(&d->mu);
			snprintf(err, errlen, "message %s is being delivered right now; try again",
			         id);
			return -1;
		}
	}
	if (hold)
		found = unlink_job(&d->ready, &d->ready_tail, id, &j) ||
		        unlink_job(&d->waiting, NULL, id, &j);
	else
		found = unlink_job(&d->held, NULL, id, &j);
	pthread_mutex_unlock(&d->mu);
	if (!found) {
		snprintf(err, errlen, "no %s message %s in the queue", hold ? "unheld" : "held",
		         id);
		return -1;
	}
	/* off every list: no other thread touches j->e now */
	int rc = spool_state_append(d->sp, j->e, hold ? "hold" : "release") == 0 &&
	                         spool_sync(d->sp) == 0
	                 ? 0
	                 : -1;
	if (rc < 0)
		snprintf(err, errlen, "cannot %s message %s: %s", hold ? "hold" : "release", id,
		         strerror(errno));
	else
		j->e->held = hold;
	pthread_mutex_lock(&d->mu);
	if (j->e->held) {
		j->next = d->held;
		d->held = j;
	} else {
		j->due = 0;
		ready_push(d, j);
		pthread_cond_signal(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	if (rc == 0) {
		metrics_queue_held_add(hold ? 1 : -1);
		log_msg(LOG_LVL_INFO,
		        hold ? "message %s held by the administrator: not delivered until `mxgate "
		               "queue release %s`"
		             : "message %s released by the administrator: delivery is due now%.0s",
		        id, id);
	}
	return rc;
}

size_t
deliver_foreach(struct deliver *d, deliver_item_cb fn, void *arg)
{
	struct deliver_item it;
	size_t n = 0;

	pthread_mutex_lock(&d->mu);
	for (struct job *j = d->busy; j; j = j->bnext, n++) {
		it = (struct deliver_item){.e = j->e, .due = 0, .busy = true};
		fn(&it, arg);
	}
	for (struct job *j = d->ready; j; j = j->next, n++) {
		it = (struct deliver_item){.e = j->e, .due = 0, .busy = false};
		fn(&it, arg);
	}
	for (struct job *j = d->waiting; j; j = j->next, n++) {
		it = (struct deliver_item){.e = j->e, .due = j->due, .busy = false};
		fn(&it, arg);
	}
	for (struct job *j = d->held; j; j = j->next, n++) {
		it = (struct deliver_item){.e = j->e, .due = 0, .busy = false, .held = true};
		fn(&it, arg);
	}
	pthread_mutex_unlock(&d->mu);
	return n;
}

/* ---- settling a message after an attempt ----------------------------------------------- */

/* Takes j off the busy list (it is about to be freed or requeued). */
static void
unbusy(struct deliver *d, struct job *j)
{
	pthread_mutex_lock(&d->mu);
	if (j->busy) {
		for (struct job **p = &d->busy; *p; p = &(*p)->bnext) {
			if (*p == j) {
				*p = j->bnext;
				break;
			}
		}
		j->busy = false;
		j->bnext = NULL;
	}
	pthread_mutex_unlock(&d->mu);
}

static void
reschedule(struct deliver *d, struct job *j, const struct config *cfg)
{
	time_t delay = (time_t)(cfg->retry_interval_ms / 1000);
	struct job **p;

	unbusy(d, j);
	if (delay < 1)
		delay = 1;
	for (unsigned a = 1; a < j->e->attempts && delay < RETRY_MAX_S; a++)
		delay *= 2;
	if (delay > RETRY_MAX_S)
		delay = RETRY_MAX_S;
	j->due = time(NULL) + delay;
	log_msg(LOG_LVL_WARNING, "message %s deferred (attempt %u): %s; next try in %lds", j->e->id,
	        j->e->attempts, j->e->last_error ? j->e->last_error : "?", (long)delay);
	pthread_mutex_lock(&d->mu);
	for (p = &d->waiting; *p && (*p)->due <= j->due; p = &(*p)->next)
		;
	j->next = *p;
	*p = j;
	pthread_mutex_unlock(&d->mu);
}

/* The header section of a queued message (for the bounce), at most 64 KiB. */
static char *
read_headers(struct deliver *d, const struct spool_entry *e, size_t *len)
{
	int fd = spool_open_data(d->sp, e->id);
	size_t cap = 65536, n = 0;
	char *buf;

	*len = 0;
	if (fd < 0 || !(buf = malloc(cap))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (lseek(fd, (off_t)e->prefix_len, SEEK_SET) < 0) {
		close(fd);
		free(buf);
		return NULL;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	/* up to the empty line that ends the header */
	for (size_t i = 0; i + 3 < n; i++) {
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
		    buf[i + 3] == '\n') {
			*len = i + 2;
			return buf;
		}
	}
	/* a header longer than the buffer: up to its last whole line (cut between a CR and
	 * its LF, the bounce held a bare CR) */
	while (n >= 2 && !(buf[n - 2] == '\r' && buf[n - 1] == '\n'))
		n--;
	*len = n < 2 ? 0 : n;
	return buf;
}

/* Queues the bounce for the failed recipients.  Returns 0 when it is safely queued (or
 * when there is nobody to return it to), -1 when it could not be queued. */
static int
bounce(struct deliver *d, const struct config *cfg, struct job *j, const struct dsn_rcpt *r,
       size_t n)
{
	struct spool_entry *e = j->e, b = {0};
	const char *at = strrchr(e->sender, '@');
	char *rcpts[1];
	size_t hlen, len;
	char *hdrs, *text;

	if (!e->sender[0]) {
		log_msg(LOG_LVL_WARNING,
		        "message %s: %zu recipient%s failed; no bounce for the "
		        "null sender",
		        e->id, n, n == 1 ? "" : "s");
		return 0;
	}
	if (!cfg->relay && (!at || !config_accepts_domain(cfg, at + 1, strlen(at + 1)))) {
		log_msg(LOG_LVL_WARNING,
		        "message %s: %zu recipient%s failed; not returned to <%s>: "
		        "not in an accepted domain and no relay is configured",
		        e->id, n, n == 1 ? "" : "s", e->sender);
		return 0;
	}
	hdrs = read_headers(d, e, &hlen);
	text = dsn_build(e, r, n, cfg->hostname, hdrs, hlen, time(NULL), &len);
	free(hdrs);
	if (!text)
		return -1;
	rcpts[0] = e->sender;
	b.sender = (char *)(uintptr_t) "";
	b.rcpts = rcpts;
	b.n_rcpts = 1;
	b.connector = (char *)(uintptr_t) "(bounce)";
	b.client = (char *)(uintptr_t) "127.0.0.1";
	b.helo = cfg->hostname;
	/* it goes to the message's sender and returns its header: what needed SMTPUTF8 (a
	 * sender é@…) needs it again, or the next hop refuses the address (RFC 6531 §3.4) */
	b.smtputf8 = e->smtputf8;
	b.body_8bit = e->smtputf8 || e->body_8bit;
	int rc = spool_inject(d->sp, &b, text, len);
	free(text);
	if (rc < 0) {
		log_msg(LOG_LVL_ERROR, "message %s: cannot queue the bounce to <%s>: %s", e->id,
		        e->sender, strerror(errno));
		return -1;
	}
	log_msg(LOG_LVL_INFO, "message %s: bounce %s queued to <%s> for %zu failed recipient%s",
	        e->id, b.id, e->sender, n, n == 1 ? "" : "s");
	struct spool_entry *copy = spool_entry_new();
	if (copy) {
		*copy = b;
		copy->sender = strdup("");
		copy->rcpts = calloc(1, sizeof(char *));
		if (copy->rcpts && (copy->rcpts[0] = strdup(e->sender)))
			copy->n_rcpts = 1;
		copy->connector = strdup("(bounce)");
		copy->client = strdup("127.0.0.1");
		copy->helo = strdup(cfg->hostname);
		copy->rcpt_state = NULL;
		copy->rcpt_note = NULL;
		copy->last_error = NULL;
		if (copy->sender && copy->n_rcpts && copy->connector && copy->client && copy->helo)
			deliver_submit(d, copy);
		else
			spool_entry_free(copy); /* queued on disk: the next start delivers it */
	}
	return 0;
}

static void
clean_text(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			*s = '?';
}

/* Turns a temporary failure into RFC 3463's 4.4.7: delivery time expired. */
static void
expire(struct outcome *o, time_t age)
{
	char t[sizeof(o->text)];

	snprintf(t, sizeof(t), "4.4.7 message expired after %llus in the queue; last error: %.400s",
	         (unsigned long long)age, o->text[0] ? o->text : "none");
	snprintf(o->text, sizeof(o->text), "%s", t);
	if (o->code == 0)
		o->code = 451;
}

/* Records a settled attempt in the spool: removes the message when no recipient is
 * pending, else appends its state lines (dlines, the "delivered" ones, unless already
 * recorded, then lines).  Returns true when the message was removed. */
static bool
record(struct deliver *d, struct spool_entry *e, size_t n_pend, const char *dlines,
       const char *lines)
{
	char *all = NULL;

	if (n_pend == 0) {
		metrics_queue_add(-1);
		if (spool_remove(d->sp, e) < 0)
			log_msg(LOG_LVL_ERROR,
			        "message %s settled but not removed from the spool: %s", e->id,
			        strerror(errno));
		return true;
	}
	if (!lines || (dlines && asprintf(&all, "%s%s", dlines, lines) < 0)) {
		all = NULL;
		errno = ENOMEM;
	} else if (spool_state_append(d->sp, e, all ? all : lines) == 0) {
		free(all);
		return false;
	}
	log_msg(LOG_LVL_ERROR,
	        "message %s: cannot record its delivery state: %s; recipients already "
	        "delivered may be sent again",
	        e->id, strerror(errno));
	free(all);
	return false;
}

/*
 * Message tracking, the way Postfix logs it: one line per recipient per attempt, with the
 * queue id, the recipient, where it went, how long it has been queued, the attempt, the
 * status (sent, deferred or bounced) and the reply that decided it, which carries the
 * next hop's own queue id when it gives one ("250 2.0.0 Ok: queued as 4Qx...").  size is
 * the message as delivered (without the Return-Path a Maildir copy gets), the number the
 * "queued" line of the session gives.
 */
static void
track(const struct spool_entry *e, const struct outcome *o, const bool *tried, const bool *bounced,
      time_t now, const char *relay)
{
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!tried[i])
			continue;
		const char *status = e->rcpt_state[i] == SPOOL_RCPT_DELIVERED ? "sent"
		                     : bounced && bounced[i]                  ? "bounced"
		                                                              : "deferred";
		metrics_delivery(status[0] == 's'   ? METRICS_DELIVERED
		                 : status[0] == 'b' ? METRICS_FAILED
		                                    : METRICS_DEFERRED);
		/* code 0: no reply at all (the next hop not reached, the connection lost), which
		 * is only ever a deferral: a temporary network status, not dsn_status()'s 5.0.0 */
		char dsn[32], reply[640];
		if (o[i].code)
			dsn_status(o[i].code, o[i].text, dsn, sizeof(dsn));
		else
			snprintf(dsn, sizeof(dsn), "4.4.0");
		if (o[i].code)
			snprintf(reply, sizeof(reply), "%d %s", o[i].code, o[i].text);
		else
			snprintf(reply, sizeof(reply), "%s", o[i].text);
		log_msg(strcmp(status, "sent") == 0 ? LOG_LVL_INFO : LOG_LVL_WARNING,
		        "message %s: to=<%s>, relay=%s, delay=%llds, attempt=%u, size=%llu, "
		        "dsn=%s, status=%s (%s)",
		        e->id, e->rcpts[i],
		        o[i].remote ? o[i].remote
		        : relay     ? relay
		                    : "maildir",
		        (long long)(now - e->received), e->attempts,
		        (unsigned long long)(e->size - e->prefix_len), dsn, status, reply);
	}
}

/*
 * Records one attempt's outcomes (see deliver.h) and decides the message's fate.
 * Returns true when the message left the spool (the caller syncs the queue directory
 * once for the batch).
 */
static bool
settle(struct deliver *d, const struct config *cfg, struct job *j, struct outcome *o,
       const char *how)
{
	struct spool_entry *e = j->e;
	time_t now = time(NULL);
	/* a clock set back since the message came (an NTP step, a VM restored) makes its age
	 * negative: not the 584 million years of the same number unsigned */
	time_t age = now > e->received ? now - e->received : 0;
	bool expired = (uint64_t)age * 1000 >= cfg->message_expiration_timeout_ms;
	struct dsn_rcpt *failed = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(*failed));
	bool *newly_failed = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool));
	bool *tried = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool));
	char *lines = NULL, *dlines = NULL, last[700] = "ok";
	size_t nf = 0, n_del = 0, n_pend = 0, llen = 0, dlen = 0;
	FILE *fp = NULL, *dfp = NULL; /* the other lines; the "delivered" lines */
	bool del_recorded = false;

	if (!failed || !newly_failed || !tried || !(fp = open_memstream(&lines, &llen)) ||
	    !(dfp = open_memstream(&dlines, &dlen))) {
		if (fp)
			fclose(fp);
		free(lines);
		free(failed);
		free(newly_failed);
		free(tried);
		reschedule(d, j, cfg);
		return false;
	}
	e->attempts++;
	e->last_attempt = now;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (e->rcpt_state[i] != SPOOL_RCPT_PENDING)
			continue;
		tried[i] = true;
		clean_text(o[i].text);
		if (o[i].code >= 200 && o[i].code < 300) {
			e->rcpt_state[i] = SPOOL_RCPT_DELIVERED;
			fprintf(dfp, "delivered %zu %lld %d %s\n", i, (long long)now, o[i].code,
			        o[i].text);
			n_del++;
			continue;
		}
		if (o[i].code >= 500 || expired) {
			if (o[i].code < 500)
				expire(&o[i], age);
			failed[nf++] = (struct dsn_rcpt){.addr = e->rcpts[i],
			                                 .code = o[i].code,
			                                 .text = o[i].text,
			                                 .remote = o[i].remote};
			newly_failed[i] = true;
			continue;
		}
		snprintf(last, sizeof(last), "%s%s%d %s", o[i].remote ? o[i].remote : "",
		         o[i].remote ? ": " : "", o[i].code, o[i].text);
		if (o[i].code == 0)
			snprintf(last, sizeof(last), "%s", o[i].text);
		n_pend++;
	}
	if (fclose(dfp) != 0) {
		free(dlines);
		dlines = NULL;
		dlen = 0;
	}
	/* What was accepted is recorded before the bounce is queued (its syncs take
	 * milliseconds): a crash meanwhile must not deliver it again (deliver.h). */
	if (nf > 0 && n_del > 0 && dlines && dlen > 0) {
		dlines[dlen - 1] = '\0'; /* spool_state_append() ends the line itself */
		if (spool_state_append(d->sp, e, dlines) == 0)
			del_recorded = true;
		else
			dlines[dlen - 1] = '\n';
	}
	/* the bounce is queued before the failures are recorded: a crash in between
	 * retries the recipient rather than losing its bounce */
	if (nf > 0 && bounce(d, cfg, j, failed, nf) < 0) {
		for (size_t i = 0; i < e->n_rcpts; i++)
			if (newly_failed[i])
				n_pend++;
		nf = 0;
		memset(newly_failed, 0, e->n_rcpts * sizeof(bool));
		snprintf(last, sizeof(last), "cannot queue a bounce");
	}
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!newly_failed[i])
			continue;
		e->rcpt_state[i] = SPOOL_RCPT_FAILED;
		fprintf(fp, "failed %zu %lld %d %s\n", i, (long long)now, o[i].code, o[i].text);
	}
	fprintf(fp, "attempt %lld %s", (long long)now, n_pend ? last : "ok");
	fclose(fp);
	free(e->last_error);
	e->last_error = n_pend ? strdup(last) : NULL;

	/* the record first (the window deliver.h describes), then the log line */
	bool removed =
	        record(d, e, n_pend, del_recorded || !dlines || !dlen ? NULL : dlines, lines);
	track(e, o, tried, nf > 0 ? newly_failed : NULL, now, cfg->relay);
	free(tried);

	if (n_del || nf)
		log_msg(LOG_LVL_INFO,
		        "message %s %s: %zu delivered, %zu failed, %zu waiting (from "
		        "<%s>, %llu bytes)",
		        e->id, how, n_del, nf, n_pend, e->sender,
		        (unsigned long long)(e->size - e->prefix_len));
	free(failed);
	free(newly_failed);
	free(lines);
	free(dlines);
	if (removed) {
		unbusy(d, j);
		free_job(j);
		return true;
	}
	reschedule(d, j, cfg);
	return false;
}

/* ---- Maildir --------------------------------------------------------------------------- */

struct syncdir {
	int fd;
	dev_t dev;
	ino_t ino;
};

/* One Maildir batch: its base, and what must be synced before its messages leave the
 * spool. */
struct mdbatch {
	struct deliver *d;
	const struct config *cfg;
	char base[1024];
	const char *rest; /* the template after the base */
	int bfd, base_err;
	struct syncdir *dirs; /* new/ of each copy, fsync()ed once */
	size_t n_dirs, cap_dirs;
	size_t links; /* hard links, made durable by one syncfs() */
};

/* True when every name in rel fits a directory entry.  A template with %u and %d in one
 * name ("/var/mail/%d.%u") can make it too long for one recipient alone: that is for good,
 * not an error of the file system to retry. */
static bool
components_fit(const char *rel)
{
	for (const char *p = rel; *p;) {
		size_t len = strcspn(p, "/");
		if (len > NAME_MAX)
			return false;
		p += len + (p[len] == '/');
	}
	return true;
}

/* Delivers recipient i of e into its Maildir; o says how it went. */
static void
maildir_rcpt(struct mdbatch *b, struct spool_entry *e, size_t i, struct outcome *o)
{
	char rel[2048], name[256], local[200];
	const char *at = strrchr(e->rcpts[i], '@');
	int mdfd = -1, newfd;
	struct stat st;

	o->code = 451;
	if (b->bfd < 0) {
		snprintf(o->text, sizeof(o->text), "4.3.0 Maildir base %.300s cannot be opened: %s",
		         b->base, strerror(b->base_err));
		return;
	}
	if (!at || (size_t)(at - e->rcpts[i]) >= sizeof(local)) {
		o->code = 550;
		snprintf(o->text, sizeof(o->text), "5.1.3 bad recipient address");
		return;
	}
	memcpy(local, e->rcpts[i], (size_t)(at - e->rcpts[i]));
	local[at - e->rcpts[i]] = '\0';
	/* a quoted local part is delivered by its content */
	if (local[0] == '"') {
		size_t l = strlen(local), w = 0;
		for (size_t q = 1; q + 1 < l; q++) {
			if (local[q] == '\\' && q + 2 < l)
				q++;
			local[w++] = local[q];
		}
		local[w] = '\0';
	}
	if (mailpath_expand(b->rest, local, at + 1, rel, sizeof(rel)) < 0) {
		o->code = 550;
		snprintf(o->text, sizeof(o->text),
		         "5.1.3 Maildir path for the recipient is too long");
		return;
	}
	if (!components_fit(rel)) { /* this recipient's, for good: bounce, do not retry */
		o->code = 550;
		snprintf(o->text, sizeof(o->text),
		         "5.1.3 Maildir path for the recipient has a name longer than %d bytes",
		         NAME_MAX);
		return;
	}
	newfd = maildir_open(b->bfd, rel, &mdfd);
	if (newfd < 0) {
		int e2 = errno;
		snprintf(o->text, sizeof(o->text), "4.3.0 cannot open Maildir %.200s/%.200s: %s%s",
		         b->base, rel, strerror(e2),
		         e2 == EACCES ? " (the Maildir tree must be writable by the user mxgate "
		                        "runs as)"
		                      : "");
		return;
	}
	maildir_name(name, sizeof(name), (long long)e->received, e->id, i, b->cfg->hostname);
	int how = maildir_deliver(mdfd, newfd, spool_queue_fd(b->d->sp), e->id, name, e->recovered);
	int derr = errno;
	close(mdfd);
	if (how < 0) {
		snprintf(o->text, sizeof(o->text),
		         "4.3.0 cannot deliver to Maildir %.200s/%.200s: %s", b->base, rel,
		         strerror(derr));
		close(newfd);
		return;
	}
	o->code = 250;
	snprintf(o->text, sizeof(o->text), "2.0.0 delivered to Maildir %.200s/%.200s", b->base,
	         rel);
	if (how == 0) {
		/* a link: made durable by one syncfs() for the batch */
		b->links++;
		close(newfd);
		return;
	}
	/* a copy: new/ is synced once per batch, before the spool file goes */
	if (fstat(newfd, &st) < 0) {
		o->code = 451;
		snprintf(o->text, sizeof(o->text), "4.3.0 cannot stat new/: %s", strerror(errno));
		close(newfd);
		return;
	}
	for (size_t x = 0; x < b->n_dirs; x++) {
		if (b->dirs[x].dev == st.st_dev && b->dirs[x].ino == st.st_ino) {
			close(newfd);
			return;
		}
	}
	if (VEC_RESERVE(b->dirs, b->cap_dirs, b->n_dirs + 1) < 0) {
		o->code = 451; /* cannot promise its sync */
		snprintf(o->text, sizeof(o->text), "4.3.0 out of memory");
		close(newfd);
		return;
	}
	b->dirs[b->n_dirs++] = (struct syncdir){newfd, st.st_dev, st.st_ino};
}

/* Makes the batch's deliveries durable.  Returns 0, or the errno of a failed sync (or
 * -1 when a sync failed in an earlier batch: see below). */
static int
maildir_sync(struct mdbatch *b)
{
	int err = 0;

	if (b->links > 0 && b->bfd >= 0) {
		/* the spool's next group commit syncs the Maildirs too when they share its
		 * file system: one sync for both, instead of two competing */
		struct stat bst;
		dev_t sdev;
		bool shared = fstat(b->bfd, &bst) == 0 && spool_dev(b->d->sp, &sdev) == 0 &&
		              bst.st_dev == sdev;
		if ((shared ? spool_barrier(b->d->sp) : syncfs(b->bfd)) < 0)
			err = errno ? errno : EIO;
	}
	for (size_t x = 0; x < b->n_dirs; x++) {
		if (fsync(b->dirs[x].fd) < 0 && !err)
			err = errno ? errno : EIO;
		close(b->dirs[x].fd);
	}
	/* A failed sync may have dropped what it could not write, and a repeat finds the
	 * links in place and syncs nothing new (spool.h, FAILED SYNCS): no Maildir delivery
	 * counts as done again until a restart. */
	pthread_mutex_lock(&b->d->mu);
	bool first = err && !b->d->maildir_failed;
	if (err)
		b->d->maildir_failed = true;
	else if (b->d->maildir_failed)
		err = -1;
	pthread_mutex_unlock(&b->d->mu);
	if (first)
		log_msg(LOG_LVL_ERROR,
		        "maildir: the disk failed: syncing the Maildirs under %s failed: %s.  No "
		        "delivery into a Maildir is confirmed (the messages stay queued) until "
		        "mxgate is restarted.  Check the disk (dmesg, smartctl), then restart "
		        "mxgate",
		        b->base, strerror(err));
	return err;
}

static void
maildir_batch(struct deliver *d, const struct config *cfg, struct job *jobs)
{
	struct mdbatch b = {.d = d, .cfg = cfg, .bfd = -1};
	size_t n_jobs = 0, k = 0;

	for (struct job *j = jobs; j; j = j->next)
		n_jobs++;
	struct outcome **outs = calloc(n_jobs ? n_jobs : 1, sizeof(*outs));
	if (!outs)
		return;
	if (mailpath_split(cfg->maildir, b.base, sizeof(b.base), &b.rest) == 0) {
		b.bfd = base_fd(d, b.base, -1, -1);
		b.base_err = b.bfd < 0 ? errno : 0;
	} else {
		snprintf(b.base, sizeof(b.base), "%s", cfg->maildir);
		b.base_err = EINVAL; /* not an absolute path: config.c makes sure it is */
	}
	for (struct job *j = jobs; j; j = j->next, k++) {
		struct spool_entry *e = j->e;
		if (!(outs[k] = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(**outs))))
			continue;
		for (size_t i = 0; i < e->n_rcpts; i++)
			if (e->rcpt_state[i] == SPOOL_RCPT_PENDING)
				maildir_rcpt(&b, e, i, &outs[k][i]);
	}
	int sync_err = maildir_sync(&b);
	free(b.dirs);
	k = 0;
	for (struct job *j = jobs, *next; j; j = next, k++) {
		next = j->next;
		struct outcome *o = outs[k];
		if (!o) {
			reschedule(d, j, cfg);
			continue;
		}
		/* which links are durable is unknown: all again (idempotent) */
		for (size_t i = 0; sync_err && i < j->e->n_rcpts; i++) {
			if (o[i].code / 100 == 2) {
				o[i].code = 451;
				snprintf(o[i].text, sizeof(o[i].text), "%s",
				         sync_err > 0
				                 ? "4.3.0 syncing the Maildir file system failed"
				                 : "4.3.0 a sync of the Maildir file system failed "
				                   "earlier; waiting for mxgate to be restarted");
			}
		}
		/* No sync of the removals: a Maildir delivery repeated after a crash finds
		 * its fixed name and does nothing, so a lost unlink costs only a retry. */
		settle(d, cfg, j, o, "delivered by maildir");
		free(o);
	}
	free(outs);
}

/* ---- relay ----------------------------------------------------------------------------- */

static struct tls_ctx *
relay_tls_ctx(struct deliver *d, const struct config *cfg, char *err, size_t errlen)
{
	char key[1100];
	struct tls_ctx *t = NULL;

	if (cfg->relay_tls == RELAY_TLS_NONE)
		return NULL;
	snprintf(key, sizeof(key), "%d|%s", cfg->relay_tls_verify,
	         cfg->relay_ca_file ? cfg->relay_ca_file : "");
	pthread_mutex_lock(&d->tls_mu);
	if (!d->tls || strcmp(key, d->tls_key) != 0) {
		struct tls_ctx *n =
		        tls_client_ctx_new(cfg->relay_tls_verify, cfg->relay_ca_file, err, errlen);
		if (n) {
			tls_ctx_unref(d->tls);
			d->tls = n;
			snprintf(d->tls_key, sizeof(d->tls_key), "%s", key);
		}
	}
	if (d->tls && strcmp(key, d->tls_key) == 0)
		t = tls_ctx_ref(d->tls);
	pthread_mutex_unlock(&d->tls_mu);
	return t;
}

/* A delivery thread's connection to the next hop, kept open between batches for
 * relay-idle-timeout (one per thread, so at most relay-connections of them). */
struct keep {
	struct relay_conn *c;  /* NULL: none kept */
	struct timespec until; /* CLOCK_REALTIME: closed (QUIT) when idle past it */
	char key[1400];        /* the settings it was opened with (keep_key) */
};

static void
keep_key(const struct config *cfg, char *key, size_t len)
{
	snprintf(key, len, "%s|%u|%d|%s|%s|%llu", cfg->relay, cfg->relay_tls, cfg->relay_tls_verify,
	         cfg->relay_ca_file ? cfg->relay_ca_file : "", cfg->hostname,
	         (unsigned long long)cfg->relay_timeout_ms);
}

/* Closes the kept connection (QUIT) with a line saying why. */
static void
keep_close(struct keep *k, const char *why)
{
	if (!k->c)
		return;
	log_msg(LOG_LVL_DEBUG, "relay: closing the kept connection to %s: %s", relay_peer(k->c),
	        why);
	relay_close(k->c);
	k->c = NULL;
}

/* The kept connection when it is for cfg and answers RSET; NULL otherwise (closed). */
static struct relay_conn *
keep_take(struct keep *k, const struct config *cfg)
{
	char key[sizeof(k->key)], err[600];
	struct relay_conn *c = k->c;

	if (!c)
		return NULL;
	keep_key(cfg, key, sizeof(key));
	if (strcmp(key, k->key) != 0) {
		keep_close(k, "the relay settings were reloaded");
		return NULL;
	}
	k->c = NULL;
	if (relay_reset(c, err, sizeof(err)) == 0) {
		metrics_relay_connection(METRICS_RELAY_REUSED);
		return c;
	}
	/* the next hop closed it while idle (a timeout of its own, a restart): not a failed
	 * attempt, a new connection is opened at once */
	metrics_relay_connection(METRICS_RELAY_STALE);
	log_msg(LOG_LVL_INFO,
	        "relay: the kept connection to %s is no longer usable (%s); opening a new one "
	        "(if this repeats, set relay-idle-timeout below the next hop's idle timeout)",
	        relay_peer(c), err);
	relay_abort(c);
	return NULL;
}

/* After a batch: keeps c for the next one, or closes it (relay-idle-timeout = 0). */
static void
keep_put(struct keep *k, const struct config *cfg, struct relay_conn *c)
{
	if (!c)
		return;
	if (cfg->relay_idle_timeout_ms == 0) {
		relay_close(c);
		return;
	}
	k->c = c;
	keep_key(cfg, k->key, sizeof(k->key));
	k->until = clock_deadline(CLOCK_REALTIME, cfg->relay_idle_timeout_ms);
}

static struct relay_conn *
relay_connect(struct deliver *d, const struct config *cfg, struct keep *k, char *err, size_t errlen)
{
	struct relay_conn *c = keep_take(k, cfg);
	struct tls_ctx *tctx;

	if (c)
		return c;
	tctx = relay_tls_ctx(d, cfg, err, errlen);
	if (cfg->relay_tls == RELAY_TLS_NONE || tctx) {
		struct relay_opts o = {.host = cfg->relay_host,
		                       .port = cfg->relay_port,
		                       .helo = cfg->hostname,
		                       .tls = cfg->relay_tls,
		                       .tls_ctx = tctx,
		                       .timeout_ms = cfg->relay_timeout_ms};
		c = relay_open(&o, err, errlen);
	}
	tls_ctx_unref(tctx);
	metrics_relay_connection(c ? METRICS_RELAY_OPENED : METRICS_RELAY_FAILED);
	if (c)
		log_msg(LOG_LVL_DEBUG, "relay: connected to %s (TLS %s, %s)", relay_peer(c),
		        relay_tls_info(c), relay_chunking(c) ? "BDAT" : "DATA");
	return c;
}

static void
relay_batch(struct deliver *d, const struct config *cfg, struct job *jobs, struct keep *k)
{
	char err[600] = "", peer[320] = "";
	struct relay_conn *c = relay_connect(d, cfg, k, err, sizeof(err));
	bool removed = false, broken = false;

	if (c)
		snprintf(peer, sizeof(peer), "%s", relay_peer(c));
	for (struct job *j = jobs, *next; j; j = next) {
		struct spool_entry *e = j->e;
		struct outcome *o = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(*o));
		bool *pending = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool));
		struct relay_result *res = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(*res));
		next = j->next;
		if (!o || !pending || !res) {
			free(o), free(pending), free(res);
			reschedule(d, j, cfg);
			continue;
		}
		for (size_t i = 0; i < e->n_rcpts; i++)
			pending[i] = e->rcpt_state[i] == SPOOL_RCPT_PENDING;
		if (c && !broken) {
			int fd = spool_open_data(d->sp, e->id);
			if (fd < 0) {
				snprintf(err, sizeof(err),
				         "cannot open message %s in the spool: %s", e->id,
				         strerror(errno));
			} else {
				if (relay_send(c, e, fd, pending, res, err, sizeof(err)) < 0)
					broken = true;
				close(fd);
			}
		}
		for (size_t i = 0; i < e->n_rcpts; i++) {
			if (!pending[i])
				continue;
			if (res[i].code) {
				o[i].code = res[i].code;
				snprintf(o[i].text, sizeof(o[i].text), "%s", res[i].text);
				o[i].remote = peer[0] ? peer : NULL;
			} else {
				o[i].code = 0;
				snprintf(o[i].text, sizeof(o[i].text), "%s",
				         err[0] ? err : "not attempted");
			}
		}
		char how[400];
		snprintf(how, sizeof(how), "relayed to %s (TLS %s)", peer[0] ? peer : cfg->relay,
		         c ? relay_tls_info(c) : "none");
		removed |= settle(d, cfg, j, o, how);
		free(o);
		free(pending);
		free(res);
	}
	if (broken)
		relay_abort(c);
	else
		keep_put(k, cfg, c);
	if (removed)
		spool_sync(d->sp);
}

/* ---- the threads ----------------------------------------------------------------------- */

/* Sets mxgate_queue_oldest_message_timestamp_seconds (0: empty) from every listed
 * message; under d->mu.  A walk of the queue, so at most once a second while batches
 * run (a long queue costs a millisecond), but always when it was empty (a first message
 * shows before its first attempt) and before the thread sleeps, so an idle gauge is
 * never stale. */
static void
queue_oldest(struct deliver *d, time_t now, bool force)
{
	time_t oldest = 0;

	if (!force && now == d->oldest_at && d->oldest)
		return;
	d->oldest_at = now;
	for (struct job *j = d->ready; j; j = j->next)
		if (!oldest || j->e->received < oldest)
			oldest = j->e->received;
	for (struct job *j = d->waiting; j; j = j->next)
		if (!oldest || j->e->received < oldest)
			oldest = j->e->received;
	for (struct job *j = d->busy; j; j = j->bnext)
		if (!oldest || j->e->received < oldest)
			oldest = j->e->received;
	for (struct job *j = d->held; j; j = j->next)
		if (!oldest || j->e->received < oldest)
			oldest = j->e->received;
	d->oldest = oldest;
	metrics_queue_oldest((double)oldest);
}

static bool
keep_expired(const struct keep *k)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return now.tv_sec > k->until.tv_sec ||
	       (now.tv_sec == k->until.tv_sec && now.tv_nsec >= k->until.tv_nsec);
}

/* Sleeps (under d->mu) until signalled, the next waiting message is due, or the kept
 * connection's idle time is up, whichever comes first. */
static void
idle_wait(struct deliver *d, const struct keep *k)
{
	struct timespec ts = {0};
	bool timed = false;

	if (d->waiting && !d->ready) {
		ts.tv_sec = d->waiting->due;
		timed = true;
	}
	if (k->c && (!timed || k->until.tv_sec < ts.tv_sec ||
	             (k->until.tv_sec == ts.tv_sec && k->until.tv_nsec < ts.tv_nsec))) {
		ts = k->until;
		timed = true;
	}
	if (timed)
		pthread_cond_timedwait(&d->cv, &d->mu, &ts);
	else
		pthread_cond_wait(&d->cv, &d->mu);
}

static void *
deliver_main(void *arg)
{
	struct deliver *d = arg;
	struct keep keep = {.c = NULL};
	pthread_setname_np(pthread_self(), "mxgate-deliver"); /* top(1), perf, /proc */

	pthread_mutex_lock(&d->mu);
	for (;;) {
		time_t now = time(NULL);
		while (d->waiting && d->waiting->due <= now) {
			struct job *j = d->waiting;
			d->waiting = j->next;
			j->next = NULL;
			ready_push(d, j);
		}
		if (d->stop)
			break;
		pthread_mutex_unlock(&d->mu);
		struct config *cfg = d->get_config(d->arg);
		pthread_mutex_lock(&d->mu);
		bool relay = cfg && cfg->relay;
		if (!cfg || !d->ready || (!relay && d->maildir_busy)) {
			config_unref(cfg);
			queue_oldest(d, now, true);
			if (keep.c && (!relay || keep_expired(&keep))) {
				pthread_mutex_unlock(&d->mu);
				keep_close(&keep, relay ? "idle for relay-idle-timeout"
				                        : "delivery is no longer by relay");
				pthread_mutex_lock(&d->mu);
				continue;
			}
			idle_wait(d, &keep);
			continue;
		}
		queue_oldest(d, now, false);
		/* take a batch; list it as busy (copies of the entries' pointers) */
		size_t max = relay ? RELAY_BATCH : MAILDIR_BATCH, n = 1;
		struct job *batch = d->ready, *last = batch;
		while (last->next && n < max) {
			last = last->next;
			n++;
		}
		d->ready = last->next;
		if (!d->ready)
			d->ready_tail = NULL;
		last->next = NULL;
		for (struct job *j = batch; j; j = j->next) {
			j->busy = true;
			j->bnext = d->busy;
			d->busy = j;
		}
		if (!relay)
			d->maildir_busy = true;
		pthread_mutex_unlock(&d->mu);
		if (relay)
			relay_batch(d, cfg, batch, &keep);
		else
			maildir_batch(d, cfg, batch);
		config_unref(cfg);
		pthread_mutex_lock(&d->mu);
		if (!relay)
			d->maildir_busy = false;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	keep_close(&keep, "mxgate is stopping");
	return NULL;
}
