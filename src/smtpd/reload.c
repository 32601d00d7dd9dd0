#include "smtpd/reload.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/diag.h"
#include "base/log.h"
#include "base/sidefile.h"
#include "obs/metrics.h"
#include "obs/notify.h"

struct reload {
	struct event_base *base; /* borrowed */
	const char *path;        /* borrowed */
	struct keeper *keeper;   /* borrowed; NULL: none */
	bool keeper_lost;        /* said once that reloads read as the run user now */
	reload_apply_cb *apply;
	void *arg;
	pthread_t thread;
	bool running, again, stopping;
	struct event *done; /* activated by the reload thread when it has finished */
	/* the result: written by the reload thread, read after joining it */
	struct config *cfg; /* NULL: refused */
	struct tls_ctx *tls;
	size_t errors;
	bool tls_failed;
	struct timespec t0; /* CLOCK_MONOTONIC at the start: the SIGHUP, or for one that came
	                     * during a reload, the end of that reload */
	double cpu;         /* the reload thread's CPU seconds */
};

static void
log_diag(enum diag_severity sev, const char *file, int line, const char *text, void *arg)
{
	(void)arg;
	if (line > 0)
		log_msg(sev == DIAG_ERROR ? LOG_LVL_ERROR : LOG_LVL_WARNING, "%s:%d: %s", file,
		        line, text);
	else
		log_msg(sev == DIAG_ERROR ? LOG_LVL_ERROR : LOG_LVL_WARNING, "%s: %s", file, text);
}

struct config *
reload_read_config(const char *path, size_t *errors)
{
	struct diag d;
	struct config *c;

	diag_init(&d);
	c = config_load_compiled(path, &d);
	diag_each(&d, log_diag, NULL);
	*errors = d.errors;
	diag_release(&d);
	return c;
}

int
reload_read_tls(const struct config *c, struct tls_ctx **t)
{
	char err[512];

	*t = NULL;
	if (!c->tls_certificate)
		return 0;
	*t = tls_ctx_new(c->tls_certificate, c->tls_key, err, sizeof(err));
	if (*t)
		tls_ctx_set_tickets(*t, (unsigned)c->tls_session_tickets);
	if (*t && c->tls_client_ca_file &&
	    tls_ctx_set_client_ca(*t, c->tls_client_ca_file, err, sizeof(err)) < 0) {
		tls_ctx_unref(*t);
		*t = NULL;
	}
	if (!*t) {
		log_msg(LOG_LVL_ERROR, "%s:%d: %s", c->tls_at.file, c->tls_at.line, err);
		return -1;
	}
	return 0;
}

static void *
reload_main(void *arg)
{
	struct reload *r = arg;

	pthread_setname_np(pthread_self(), "mxgate-reload");
	struct sidefile_set *handed = NULL;
	if (r->keeper && !r->keeper_lost) {
		char err[256];
		if (!(handed = keeper_fetch(r->keeper, err, sizeof(err)))) {
			log_msg(LOG_LVL_ERROR,
			        "%s: this reload and the next read the files as the run user, and "
			        "a "
			        "file only root may read is refused; restart mxgate to have them "
			        "read "
			        "as root again",
			        err);
			r->keeper_lost = true;
			metrics_privileged_reader(false);
		}
	}
	sidefile_use(handed);
	r->cfg = reload_read_config(r->path, &r->errors);
	if (r->cfg)
		r->tls_failed = reload_read_tls(r->cfg, &r->tls) < 0;
	sidefile_use(NULL);
	sidefile_set_free(handed);
	/* parsing a large ranges file leaves its temporaries free inside the heap (the trim
	 * threshold is raised in main.c): give them back now, once per reload */
	malloc_trim(0);
	struct timespec cpu;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
	r->cpu = (double)cpu.tv_sec + (double)cpu.tv_nsec / 1e9;
	event_active(r->done, EV_READ, 0);
	return NULL;
}

static void
reload_start(struct reload *r)
{
	int err;

	log_msg(LOG_LVL_INFO, "SIGHUP: reloading %s", r->path);
	char status[256];
	snprintf(status, sizeof(status), "reloading %s", r->path);
	notify_reloading(status);
	r->cfg = NULL;
	r->tls = NULL;
	r->errors = 0;
	r->tls_failed = false;
	r->cpu = 0;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	err = pthread_create(&r->thread, NULL, reload_main, r);
	if (err) {
		log_msg(LOG_LVL_ERROR,
		        "reload refused: cannot start a thread to read %s: %s; the running "
		        "configuration stays",
		        r->path, strerror(err));
		metrics_config_reload(false);
		notify_send("READY=1\nSTATUS=reload refused (cannot start a thread); the running "
		            "configuration stays");
		return;
	}
	r->running = true;
}

/* Waits for a reload under way and takes its result.  Returns false when none was
 * running. */
static bool
reload_join(struct reload *r, struct config **c, struct tls_ctx **t)
{
	if (!r->running)
		return false;
	pthread_join(r->thread, NULL);
	r->running = false;
	*c = r->cfg;
	*t = r->tls;
	r->cfg = NULL;
	r->tls = NULL;
	return true;
}

static void
reload_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct reload *r = arg;
	struct config *c;
	struct tls_ctx *t;

	(void)fd, (void)what;
	if (!reload_join(r, &c, &t))
		return;
	/* the time an admin waits for a reload, and how much of it was the reading itself:
	 * far less CPU than time means the machine was busy */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double took =
	        (double)(now.tv_sec - r->t0.tv_sec) + (double)(now.tv_nsec - r->t0.tv_nsec) / 1e9;
	metrics_config_reload_took(took);
	log_msg(LOG_LVL_INFO, "reload: read %s in %.3f s (%.3f s of CPU on the reload thread)",
	        r->path, took, r->cpu);
	if (r->stopping) {
		log_msg(LOG_LVL_INFO, "reload discarded: mxgate is stopping");
		config_unref(c);
		tls_ctx_unref(t);
		return;
	}
	if (!c) {
		metrics_config_reload(false);
		log_msg(LOG_LVL_ERROR,
		        "reload refused: %zu error%s in %s; the running configuration stays",
		        r->errors, r->errors == 1 ? "" : "s", r->path);
		notify_sendf("READY=1\nSTATUS=reload refused: %zu error%s in %s (see the log); "
		             "the running configuration stays",
		             r->errors, r->errors == 1 ? "" : "s", r->path);
	} else if (r->tls_failed) {
		metrics_config_reload(false);
		log_msg(LOG_LVL_ERROR, "reload refused: the TLS certificate or key cannot be "
		                       "loaded; the running configuration stays");
		notify_send("READY=1\nSTATUS=reload refused: the TLS certificate or key cannot be "
		            "loaded (see the log); the running configuration stays");
		config_unref(c);
		tls_ctx_unref(t);
	} else {
		size_t n = c->n_connectors;
		metrics_config_reload(true);
		r->apply(c, t, r->arg);
		notify_sendf("READY=1\nSTATUS=configuration reloaded: %zu connector%s", n,
		             n == 1 ? "" : "s");
	}
	if (r->again) {
		r->again = false;
		reload_start(r);
	}
}

struct reload *
reload_new(struct event_base *base, const char *path, reload_apply_cb *apply, void *arg)
{
	struct reload *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	*r = (struct reload){.base = base, .path = path, .apply = apply, .arg = arg};
	if (!(r->done = event_new(base, -1, EV_READ, reload_done_cb, r))) {
		free(r);
		return NULL;
	}
	return r;
}

void
reload_free(struct reload *r)
{
	struct config *c;
	struct tls_ctx *t;

	if (!r)
		return;
	if (reload_join(r, &c, &t)) {
		config_unref(c);
		tls_ctx_unref(t);
	}
	event_free(r->done);
	free(r);
}

void
reload_request(struct reload *r)
{
	if (r->stopping)
		return;
	if (!r->running) {
		reload_start(r);
	} else if (!r->again) {
		log_msg(LOG_LVL_INFO, "SIGHUP during a reload: one more reload follows it");
		r->again = true;
	}
}

void
reload_set_keeper(struct reload *r, struct keeper *k)
{
	r->keeper = k;
	metrics_privileged_reader(k != NULL);
}

void
reload_stop(struct reload *r)
{
	r->stopping = true;
}
