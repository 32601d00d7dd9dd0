#include "smtpd/server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "conf/config.h"
#include "net/tls.h"
#include "obs/metrics.h"
#include "obs/metrics_http.h"
#include "obs/notify.h"
#include "obs/protolog.h"
#include "queue/deliver.h"
#include "queue/spool.h"
#include "smtpd/admission.h"
#include "smtpd/control.h"
#include "smtpd/keeper.h"
#include "smtpd/listener.h"
#include "smtpd/privileges.h"
#include "smtpd/reload.h"
#include "smtpd/status.h"
#include "smtpd/worker.h"

/* ---- shared state ----------------------------------------------------------------------- */

struct worker;

struct server {
	const char *path;
	struct event_base *base;
	pthread_mutex_t mu; /* guards cfg and tls */
	struct config *cfg;
	struct tls_ctx *tls;
	struct admission *adm;

	struct listeners *ls;
	size_t n_ls; /* sockets open */

	struct workers *workers;
	struct verify *verify; /* recipient probes (verify.h) */
	size_t n_workers;

	struct spool *spool;
	struct deliver *deliver;
	struct control *control;
	bool draining;
	struct timespec drain_deadline;
	struct event *drain_timer;

	struct event *src_sweep;

	struct reload *rl;
	struct keeper *keeper; /* the privileged reader: NULL when not started as root */

	int metrics_fd; /* bound before the privilege drop; -1 once served or when off */
	struct metrics_http *mh;
	uint64_t generation; /* configurations that became the running one */
};

static struct server S;

static struct config *
snapshot_config(void *arg)
{
	struct config *c;

	(void)arg;
	pthread_mutex_lock(&S.mu);
	c = config_ref(S.cfg);
	pthread_mutex_unlock(&S.mu);
	return c;
}

/* the admission counters' sweep (main thread) */
static void
src_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	admission_sweep(S.adm);
}

static void
control_failed_cb(const char *what, int err, void *arg)
{
	(void)arg;
	if (listeners_exhausted(err))
		listeners_pause(S.ls, what, err);
}

/* `mxgate status`, on the main thread (the control socket's) */
static void
status_cb(FILE *out, void *arg)
{
	(void)arg;
	struct status_info in = {.cfg = S.cfg,
	                         .path = S.path,
	                         .listeners = S.n_ls,
	                         .workers = S.n_workers,
	                         .draining = S.draining,
	                         .keeper_pid = S.keeper ? (pid_t)keeper_pid(S.keeper) : 0,
	                         .now = time(NULL)};
	status_write(out, &in);
}

/* the listeners pause or resume accepting: the control socket follows */
static void
accepting_cb(bool on, void *arg)
{
	(void)arg;
	control_enable(S.control, on);
}

/* An admitted connection goes to a worker with a reference to the current snapshot. */
static int
handoff_cb(int fd, const struct ipaddr *remote, uint16_t rport, const struct endpoint *local, int k,
           const struct endpoint *via, void *arg)
{
	(void)arg;
	return workers_handoff(S.workers, fd, remote, rport, local, config_ref(S.cfg),
	                       S.tls ? tls_ctx_ref(S.tls) : NULL, k, via);
}

/* ---- metrics -------------------------------------------------------------------------- */

/* A configuration about to become the running one: each connector gets its series'
 * handle before any session can see the snapshot. */
static void
config_metrics(struct config *c)
{
	for (size_t i = 0; i < c->n_connectors; i++) {
		c->connectors[i].metrics = metrics_connector(c->connectors[i].name);
		if (!c->connectors[i].metrics)
			log_msg(LOG_LVL_WARNING,
			        "metrics: connector \"%s\" has no series of its own (%s); only the "
			        "totals count its sessions",
			        c->connectors[i].name, strerror(errno));
	}
	metrics_config_loaded(++S.generation, (double)time(NULL));
}

/* Binds metrics-listen while still root (a port below 1024 needs it). */
static int
metrics_bind(void)
{
	char err[512];

	S.metrics_fd = -1;
	if (!S.cfg->metrics_listen)
		return 0;
	S.metrics_fd = metrics_http_listen(S.cfg->metrics_listen, err, sizeof(err));
	if (S.metrics_fd < 0) {
		log_msg(LOG_LVL_ERROR, "%s; not starting", err);
		return -1;
	}
	return 0;
}

static int
metrics_serve(void)
{
	char err[512];
	int fd = S.metrics_fd;

	if (fd < 0)
		return 0;
	S.metrics_fd = -1; /* the server owns it from here on, failure included */
	if (!(S.mh = metrics_http_start(fd, err, sizeof(err)))) {
		log_msg(LOG_LVL_ERROR, "%s (metrics-listen %s); not starting", err,
		        S.cfg->metrics_listen);
		return -1;
	}
	log_msg(LOG_LVL_INFO, "metrics on http://%s/metrics", S.cfg->metrics_listen);
	return 0;
}

static void
metrics_stop(void)
{
	if (S.metrics_fd >= 0)
		close(S.metrics_fd);
	S.metrics_fd = -1;
	metrics_http_stop(S.mh);
	S.mh = NULL;
}

/* ---- the snapshot's swap and the drain --------------------------------------------------------------------- */

static int protolog_apply(const struct config *c);

/* A reload's valid snapshot replaces the running one: new sessions take it, open
 * sessions keep theirs. */
static void
apply_snapshot_cb(struct config *c, struct tls_ctx *t, void *arg)
{
	struct config *old;
	struct tls_ctx *oldt;

	(void)arg;
	if (c->workers && c->workers != S.n_workers)
		log_msg(LOG_LVL_WARNING, "workers = %llu takes effect at the next start",
		        (unsigned long long)c->workers);
	const char *ml = S.cfg->metrics_listen, *nml = c->metrics_listen;
	if (ml ? !nml || strcmp(ml, nml) != 0 : nml != NULL)
		log_msg(LOG_LVL_WARNING,
		        "metrics-listen = \"%s\" takes effect at the next start; metrics stay "
		        "%s%s%s",
		        nml ? nml : "", ml ? "on http://" : "off", ml ? ml : "",
		        ml ? "/metrics" : "");
	config_metrics(c);
	pthread_mutex_lock(&S.mu);
	old = S.cfg;
	oldt = S.tls;
	S.cfg = c;
	S.tls = t;
	pthread_mutex_unlock(&S.mu);
	log_set_level((enum log_level)c->log_level);
	size_t failed;
	size_t n = S.n_ls = listeners_reconcile(S.ls, c, &failed);
	metrics_bindings_not_listening(failed);
	if (failed)
		log_msg(LOG_LVL_ERROR,
		        "reload: %zu binding%s could not be opened (see above); the "
		        "others serve",
		        failed, failed == 1 ? "" : "s");
	if (deliver_prepare(S.deliver, c, -1, -1) < 0)
		log_msg(LOG_LVL_ERROR, "reload: the new Maildir base cannot be used (see above); "
		                       "delivery into it waits until it is fixed");
	if (protolog_apply(c) < 0)
		log_msg(LOG_LVL_ERROR, "reload: the protocol log keeps its previous settings");
	log_msg(LOG_LVL_INFO,
	        "configuration reloaded: %zu connector%s, %zu listener%s; open sessions keep "
	        "the configuration they started with",
	        c->n_connectors, c->n_connectors == 1 ? "" : "s", n, n == 1 ? "" : "s");
	config_unref(old);
	tls_ctx_unref(oldt);
}

static bool force_sent;
static struct timespec force_deadline;

static bool
past(const struct timespec *now, const struct timespec *t)
{
	return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

static void
drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct timespec now;

	(void)fd, (void)what, (void)arg;
	if (workers_sessions(S.workers) == 0) {
		event_base_loopbreak(S.base);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (force_sent) {
		if (past(&now, &force_deadline))
			event_base_loopbreak(S.base); /* stop regardless */
		return;
	}
	if (!past(&now, &S.drain_deadline))
		return;
	log_msg(LOG_LVL_WARNING, "drain-timeout reached: closing %ld open session%s",
	        (long)workers_sessions(S.workers), workers_sessions(S.workers) == 1 ? "" : "s");
	workers_force(S.workers);
	force_sent = true;
	force_deadline = now;
	force_deadline.tv_sec += 5;
}

static void
start_drain(void)
{
	struct timeval tick = {0, 100000};
	struct config *c = S.cfg;

	if (S.draining)
		return;
	S.draining = true;
	reload_stop(S.rl);
	log_msg(LOG_LVL_INFO,
	        "stopping: no new connections; %ld open session%s may finish "
	        "within %llus",
	        (long)workers_sessions(S.workers), workers_sessions(S.workers) == 1 ? "" : "s",
	        (unsigned long long)c->drain_timeout_ms / 1000);
	char status[160];
	snprintf(status, sizeof(status), "draining: %ld open session%s may finish within %llus",
	         (long)workers_sessions(S.workers), workers_sessions(S.workers) == 1 ? "" : "s",
	         (unsigned long long)c->drain_timeout_ms / 1000);
	notify_stopping(status);
	listeners_close(S.ls);
	workers_shutdown(S.workers);
	S.drain_deadline = clock_deadline(CLOCK_MONOTONIC, c->drain_timeout_ms);
	S.drain_timer = event_new(S.base, -1, EV_PERSIST, drain_check, NULL);
	event_add(S.drain_timer, &tick);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what, (void)arg;
	if (sig == SIGHUP) {
		reload_request(S.rl);
	} else {
		start_drain();
	}
}

/* ---- the spool's hook ----------------------------------------------------------------- */

static void
committed_hook(struct spool_entry *e, void *arg)
{
	(void)arg;
	deliver_submit(S.deliver, e);
}

/* ---- the protocol log ------------------------------------------------------------------ */

/* Before the privilege drop: the directory exists, is a directory, belongs to the run
 * user (uid < 0: the current one) and is not writable by others, who could plant or
 * swap files in it.  Returns 0, or -1 after a log line saying what to fix. */
static int
protolog_prepare(const struct config *c, long uid, long gid)
{
	const char *dir = c->protocol_log_directory;
	struct stat st;

	if (!dir || !*dir)
		return 0;
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		log_msg(LOG_LVL_ERROR,
		        "protocol-log-directory %s cannot be created: %s; create it "
		        "or fix its parent",
		        dir, strerror(errno));
		return -1;
	}
	if (uid >= 0 && chown(dir, (uid_t)uid, (gid_t)gid) < 0) {
		log_msg(LOG_LVL_ERROR,
		        "protocol-log-directory %s cannot be given to the run user: "
		        "%s",
		        dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_msg(LOG_LVL_ERROR,
		        "protocol-log-directory %s is not a directory; point it at "
		        "one",
		        dir);
		return -1;
	}
	if (st.st_mode & S_IWOTH) {
		log_msg(LOG_LVL_ERROR,
		        "protocol-log-directory %s is writable by every user; "
		        "chmod o-w it (mxgate's files there must be its own)",
		        dir);
		return -1;
	}
	return 0;
}

/* After the privilege drop and at each reload: the writer takes the snapshot's settings.
 * Returns 0, or -1 after a log line (the settings in use before stay). */
static int
protolog_apply(const struct config *c)
{
	char err[512];
	struct protolog_params p = {.directory = c->protocol_log_directory,
	                            .max_file_size = c->protocol_log_max_file_size,
	                            .max_directory_size = c->protocol_log_max_directory_size,
	                            .max_age = c->protocol_log_max_age_ms / 1000};

	if (protolog_configure(&p, err, sizeof(err)) < 0) {
		log_msg(LOG_LVL_ERROR, "protocol log: %s", err);
		return -1;
	}
	return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

/* Every session is a descriptor (two with a relay): a soft limit of 1024, the usual
 * default, would cap the gateway far below Exchange's 5000 connections.  Raised to the hard
 * limit, as nginx's worker_rlimit_nofile would; the admin's hard limit is respected. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rlim_t want = rl.rlim_max;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_msg(LOG_LVL_WARNING, "cannot raise the open-file limit to %llu: %s",
		        (unsigned long long)want, strerror(errno));
	else if (want < 8192)
		log_msg(LOG_LVL_WARNING,
		        "open-file limit is %llu: at most about that many connections at once; "
		        "raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) for more",
		        (unsigned long long)want);
}

/* The first steps of a start: the registries, the log and the configuration.  -1 (said
 * in the log) when the configuration has errors. */
static int
start_config(const char *path)
{
	size_t errors;
	char err[512];

	metrics_init();
	memset(&S, 0, sizeof(S));
	S.metrics_fd = -1;
	S.path = path;
	pthread_mutex_init(&S.mu, NULL);
	log_init("mxgate", false, LOG_LVL_INFO);
	S.cfg = reload_read_config(path, &errors);
	if (!S.cfg) {
		log_msg(LOG_LVL_ERROR, "%zu error%s in %s; not starting", errors,
		        errors == 1 ? "" : "s", path);
		return -1;
	}
	log_init("mxgate", S.cfg->log_target == LOG_TO_SYSLOG, (enum log_level)S.cfg->log_level);
	if (notify_init(err, sizeof(err)) < 0)
		log_msg(LOG_LVL_WARNING, "%s; systemd will not hear that mxgate is ready", err);
	return 0;
}

int
server_run(const char *path)
{
	struct event *sigs[4] = {0};
	const int signums[4] = {SIGHUP, SIGTERM, SIGINT, 0};
	char err[512];
	long uid, gid;
	int rc = 1;

	if (start_config(path) < 0)
		return 1;
	if (reload_read_tls(S.cfg, &S.tls) < 0)
		goto out;
	config_metrics(S.cfg);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (evthread_use_pthreads() < 0 || !(S.adm = admission_new()) ||
	    !(S.base = event_base_new()) ||
	    !(S.ls = listeners_new(S.base, S.adm, handoff_cb, accepting_cb, NULL)) ||
	    !(S.rl = reload_new(S.base, path, apply_snapshot_cb, NULL)) ||
	    !(S.src_sweep = event_new(S.base, -1, EV_PERSIST, src_sweep_cb, NULL))) {
		log_msg(LOG_LVL_ERROR, "cannot start the event loop");
		goto out;
	}
	if (privileges_user(S.cfg, S.path, &uid, &gid) < 0)
		goto out;
	/* still one thread: the privileged reader is forked before any other starts, and
	 * before the bounding set loses the capability it keeps (it restricts itself) */
	if (uid >= 0 && (S.keeper = keeper_start(S.path)))
		reload_set_keeper(S.rl, S.keeper);
	if (privileges_restrict(CAP_NET_BIND_SERVICE) < 0)
		goto out;
	S.spool = spool_open(S.cfg->spool, uid, gid, committed_hook, NULL, err, sizeof(err));
	if (!S.spool) {
		log_msg(LOG_LVL_ERROR, "%s", err);
		goto out;
	}
	S.deliver = deliver_new(S.spool, snapshot_config, NULL,
	                        (unsigned)(S.cfg->relay ? S.cfg->relay_connections : 1));
	if (!S.deliver)
		goto out;
	if (!(S.control = control_open(S.base, S.deliver, S.cfg->spool, uid, gid, control_failed_cb,
	                               NULL)))
		goto out;
	control_set_status(S.control, status_cb, NULL);
	if (deliver_prepare(S.deliver, S.cfg, uid, gid) < 0)
		goto out; /* an unsafe Maildir base: deliver_prepare said why */
	size_t failed;
	S.n_ls = listeners_reconcile(S.ls, S.cfg, &failed);
	if (failed) {
		log_msg(LOG_LVL_ERROR, "%zu binding%s could not be opened; not starting", failed,
		        failed == 1 ? "" : "s");
		goto out;
	}
	if (protolog_prepare(S.cfg, uid, gid) < 0)
		goto out;
	if (metrics_bind() < 0 || privileges_become(uid, gid) < 0 || protolog_apply(S.cfg) < 0 ||
	    metrics_serve() < 0)
		goto out;

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	S.n_workers = S.cfg->workers ? (size_t)S.cfg->workers : (size_t)(ncpu > 0 ? ncpu : 1);
	if (!(S.verify = verify_start((size_t)S.cfg->verify_cache_size)) ||
	    !(S.workers = workers_start(S.n_workers, S.spool, S.adm, S.verify)))
		goto out;
	spool_recover(S.spool);
	struct timeval sweep = {.tv_sec = ADMISSION_SWEEP_S};
	event_add(S.src_sweep, &sweep);
	for (int i = 0; signums[i]; i++) {
		sigs[i] = evsignal_new(S.base, signums[i], signal_cb, NULL);
		event_add(sigs[i], NULL);
	}
	log_msg(LOG_LVL_INFO, "mxgate %s ready: %zu connector%s, %zu listener%s, %zu worker%s%s",
	        MXGATE_VERSION, S.cfg->n_connectors, S.cfg->n_connectors == 1 ? "" : "s", S.n_ls,
	        S.n_ls == 1 ? "" : "s", S.n_workers, S.n_workers == 1 ? "" : "s",
	        S.tls ? ", STARTTLS available" : "");
	/* every listener is open and every worker runs: systemd may start what needs us */
	notify_sendf("READY=1\nSTATUS=serving %zu connector%s on %zu listener%s, %zu worker%s",
	             S.cfg->n_connectors, S.cfg->n_connectors == 1 ? "" : "s", S.n_ls,
	             S.n_ls == 1 ? "" : "s", S.n_workers, S.n_workers == 1 ? "" : "s");
	event_base_dispatch(S.base);
	reload_free(S.rl); /* waits for a reload under way */
	S.rl = NULL;
	rc = 0;
	log_msg(LOG_LVL_INFO, "stopped");
	workers_stop(S.workers);
	/* the probe threads and the syncer finish what waits (their callbacks only post to the
	 * stopped workers' inboxes), then delivery stops after its batch */
	verify_stop(S.verify);
	S.verify = NULL;
	spool_stop(S.spool);
	deliver_free(S.deliver);
	S.deliver = NULL;
	workers_free(S.workers);
out:
	protolog_stop(); /* the session threads are gone: writes what they queued */
	notify_close();
	control_close(S.control);
	for (int i = 0; sigs[i]; i++)
		event_free(sigs[i]);
	if (S.drain_timer)
		event_free(S.drain_timer);
	reload_free(S.rl);
	keeper_stop(S.keeper); /* after the reload thread: it may be talking to the keeper */
	if (S.src_sweep)
		event_free(S.src_sweep);
	listeners_free(S.ls);
	spool_stop(S.spool);
	deliver_free(S.deliver);
	verify_stop(S.verify);
	spool_close(S.spool);
	admission_free(S.adm);
	if (S.base)
		event_base_free(S.base);
	tls_ctx_unref(S.tls);
	config_unref(S.cfg);
	metrics_stop();
	metrics_shutdown(); /* every thread that updates is joined */
	libevent_global_shutdown();
	return rc;
}
