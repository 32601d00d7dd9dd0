/*
 * metrics — the Prometheus registry and its text exposition format 0.0.4; see metrics.h.
 */
#include "obs/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/vec.h"
#include "net/tls.h"
#include "net/tlsmem.h"
#include "obs/protolog.h"
#include "obs/utf8.h"

#define CODE_MIN 400
#define CODE_N   200 /* 400..599 */

typedef _Atomic uint64_t counter;

struct metrics_connector {
	struct metrics_connector *next;
	char *name;
	counter connections, queued, queued_bytes;
	_Atomic int64_t active;
	counter rejected[CODE_N];
	counter certs[TLS_PEER_VERDICT_N];
};

/* in the order of enum tls_peer_verdict */
static const char *const cert_label[TLS_PEER_VERDICT_N] = {"ok", "none", "untrusted", "expired",
                                                           "mismatch"};

static const char *const refusal_label[METRICS_REFUSAL_N] = {
        "no_connector", "connector_limit", "source_limit", "fd_exhausted", "no_memory"};
static const char *const proxy_label[METRICS_PROXY_N] = {"ok", "local", "invalid", "timeout"};
static const char *const delivery_label[METRICS_DELIVERY_N] = {"delivered", "deferred", "failed"};
static const char *const relay_conn_label[METRICS_RELAY_CONN_N] = {"opened", "reused", "stale",
                                                                   "failed"};
static const char *const spool_sync_label[METRICS_SYNC_N] = {"data", "directory", "barrier"};
/* OpenSSL's SSL_get_version() names; the last slot counts the rest */
static const char *const tls_label[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"};
#define TLS_N (sizeof(tls_label) / sizeof(tls_label[0]))
static const double commit_le[METRICS_COMMIT_BUCKETS_N] = METRICS_COMMIT_BUCKETS;

static struct {
	pthread_mutex_t mu; /* the connector list and its count */
	struct metrics_connector *head, *tail;
	size_t n_connectors;

	_Atomic double start_time, config_load_time, queue_oldest, reload_seconds;
	counter config_generation;
	counter reloads[2]; /* ok, error */
	counter refused[METRICS_REFUSAL_N];
	_Atomic int64_t sessions_active;
	counter accept_paused;
	_Atomic int64_t privileged_reader;
	_Atomic int64_t bindings_not_listening;
	counter tls[TLS_N];
	counter tls_failed;
	counter tls_resumed;
	/* per bucket, not cumulative: one add per observation; rendering sums them */
	counter commit_bucket[METRICS_COMMIT_BUCKETS_N + 1];
	counter commit_sum_ns;
	counter spool_sync_failures;
	_Atomic int64_t queue_messages;
	_Atomic int64_t queue_held; /* of them, held by the administrator */
	counter deliveries[METRICS_DELIVERY_N];
	counter fcrdns[METRICS_FCRDNS_N];
	counter bdat_chunks, bdat_bytes;
	counter bare_line_ends[2]; /* refused, normalized */
	counter proxy[METRICS_PROXY_N];
	counter relay_conns[METRICS_RELAY_CONN_N];
	counter verifications[3][2]; /* result (verify_label), miss/hit */
	counter spool_syncs[METRICS_SYNC_N];
} R = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void
inc(counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
get(counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void
metrics_init(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	atomic_store(&R.start_time, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

struct metrics_connector *
metrics_connector(const char *name)
{
	struct metrics_connector *c;

	pthread_mutex_lock(&R.mu);
	for (c = R.head; c; c = c->next)
		if (strcmp(c->name, name) == 0)
			goto out;
	if (R.n_connectors >= METRICS_MAX_CONNECTORS) {
		errno = ENOSPC;
		goto out;
	}
	if (!(c = calloc(1, sizeof(*c))))
		goto out;
	if (!(c->name = strdup(name))) {
		free(c);
		c = NULL;
		goto out;
	}
	if (R.tail)
		R.tail->next = c;
	else
		R.head = c;
	R.tail = c;
	R.n_connectors++;
out:
	pthread_mutex_unlock(&R.mu);
	return c;
}

void
metrics_session_opened(struct metrics_connector *c)
{
	atomic_fetch_add_explicit(&R.sessions_active, 1, memory_order_relaxed);
	if (c) {
		inc(&c->connections, 1);
		atomic_fetch_add_explicit(&c->active, 1, memory_order_relaxed);
	}
}

void
metrics_session_closed(struct metrics_connector *c)
{
	atomic_fetch_sub_explicit(&R.sessions_active, 1, memory_order_relaxed);
	if (c)
		atomic_fetch_sub_explicit(&c->active, 1, memory_order_relaxed);
}

void
metrics_message_queued(struct metrics_connector *c, uint64_t size)
{
	if (c) {
		inc(&c->queued, 1);
		inc(&c->queued_bytes, size);
	}
}

void
metrics_message_rejected(struct metrics_connector *c, unsigned code)
{
	if (c && code >= CODE_MIN && code < CODE_MIN + CODE_N)
		inc(&c->rejected[code - CODE_MIN], 1);
}

void
metrics_client_certificate(struct metrics_connector *c, int verdict)
{
	if (c && verdict >= 0 && verdict < TLS_PEER_VERDICT_N)
		inc(&c->certs[verdict], 1);
}

void
metrics_refused(enum metrics_refusal why)
{
	if ((unsigned)why < METRICS_REFUSAL_N)
		inc(&R.refused[why], 1);
}

void
metrics_proxy_header(enum metrics_proxy result)
{
	if ((unsigned)result < METRICS_PROXY_N)
		inc(&R.proxy[result], 1);
}

void
metrics_accept_paused(void)
{
	inc(&R.accept_paused, 1);
}

void
metrics_connector_read(struct metrics_connector *c, struct metrics_connector_view *v)
{
	*v = (struct metrics_connector_view){0};
	if (!c)
		return;
	v->connections = get(&c->connections);
	v->active = atomic_load_explicit(&c->active, memory_order_relaxed);
	v->queued = get(&c->queued);
	v->queued_bytes = get(&c->queued_bytes);
	for (size_t i = 0; i < CODE_N; i++)
		v->rejected += get(&c->rejected[i]);
}

void
metrics_read(struct metrics_view *v)
{
	*v = (struct metrics_view){
	        .start_time = atomic_load_explicit(&R.start_time, memory_order_relaxed),
	        .config_load_time = atomic_load_explicit(&R.config_load_time, memory_order_relaxed),
	        .queue_oldest = atomic_load_explicit(&R.queue_oldest, memory_order_relaxed),
	        .config_generation = get(&R.config_generation),
	        .reloads_ok = get(&R.reloads[0]),
	        .reloads_error = get(&R.reloads[1]),
	        .sessions_active = atomic_load_explicit(&R.sessions_active, memory_order_relaxed),
	        .queue_messages = atomic_load_explicit(&R.queue_messages, memory_order_relaxed),
	        .queue_held = atomic_load_explicit(&R.queue_held, memory_order_relaxed),
	        .privileged_reader =
	                atomic_load_explicit(&R.privileged_reader, memory_order_relaxed),
	        .bindings_not_listening =
	                atomic_load_explicit(&R.bindings_not_listening, memory_order_relaxed),
	};
	for (size_t i = 0; i < METRICS_REFUSAL_N; i++)
		v->refused[i] = get(&R.refused[i]);
	for (size_t i = 0; i < METRICS_DELIVERY_N; i++)
		v->deliveries[i] = get(&R.deliveries[i]);
}

const char *
metrics_refusal_label(enum metrics_refusal why)
{
	return (unsigned)why < METRICS_REFUSAL_N ? refusal_label[why] : "?";
}

const char *
metrics_delivery_label(enum metrics_delivery result)
{
	return (unsigned)result < METRICS_DELIVERY_N ? delivery_label[result] : "?";
}

void
metrics_privileged_reader(bool up)
{
	atomic_store_explicit(&R.privileged_reader, up ? 1 : 0, memory_order_relaxed);
}

void
metrics_bindings_not_listening(size_t n)
{
	atomic_store_explicit(&R.bindings_not_listening, (int64_t)n, memory_order_relaxed);
}

void
metrics_tls_session(const char *version)
{
	size_t i = 0;

	while (i < TLS_N - 1 && (!version || strcmp(version, tls_label[i]) != 0))
		i++;
	inc(&R.tls[i], 1);
}

static const char *const verify_label[] = {"ok", "unknown", "unavailable"};

void
metrics_verification(const char *result, bool cache_hit)
{
	for (size_t i = 0; i < 3; i++)
		if (strcmp(result, verify_label[i]) == 0)
			inc(&R.verifications[i][cache_hit ? 1 : 0], 1);
}

void
metrics_fcrdns(enum metrics_fcrdns result)
{
	if ((unsigned)result < METRICS_FCRDNS_N)
		inc(&R.fcrdns[result], 1);
}

void
metrics_bdat(uint64_t chunks, uint64_t bytes)
{
	inc(&R.bdat_chunks, chunks);
	inc(&R.bdat_bytes, bytes);
}

void
metrics_bare_line_ends(uint64_t refused, uint64_t normalized)
{
	inc(&R.bare_line_ends[0], refused);
	inc(&R.bare_line_ends[1], normalized);
}

void
metrics_tls_failed(void)
{
	inc(&R.tls_failed, 1);
}

void
metrics_tls_resumed(void)
{
	inc(&R.tls_resumed, 1);
}

void
metrics_commit_observe(uint64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i = 0;

	while (i < METRICS_COMMIT_BUCKETS_N && s > commit_le[i])
		i++;
	inc(&R.commit_bucket[i], 1);
	inc(&R.commit_sum_ns, ns);
}

void
metrics_spool_sync_failure(void)
{
	inc(&R.spool_sync_failures, 1);
}

void
metrics_queue_set(uint64_t messages)
{
	atomic_store_explicit(&R.queue_messages, (int64_t)messages, memory_order_relaxed);
}

void
metrics_queue_add(int64_t delta)
{
	atomic_fetch_add_explicit(&R.queue_messages, delta, memory_order_relaxed);
}

void
metrics_queue_held_add(int64_t delta)
{
	atomic_fetch_add_explicit(&R.queue_held, delta, memory_order_relaxed);
}

void
metrics_queue_oldest(double unix_time)
{
	atomic_store_explicit(&R.queue_oldest, unix_time, memory_order_relaxed);
}

void
metrics_delivery(enum metrics_delivery result)
{
	if ((unsigned)result < METRICS_DELIVERY_N)
		inc(&R.deliveries[result], 1);
}

void
metrics_relay_connection(enum metrics_relay_conn result)
{
	if ((unsigned)result < METRICS_RELAY_CONN_N)
		inc(&R.relay_conns[result], 1);
}

void
metrics_spool_sync(enum metrics_spool_sync step)
{
	if ((unsigned)step < METRICS_SYNC_N)
		inc(&R.spool_syncs[step], 1);
}

void
metrics_config_reload(bool ok)
{
	inc(&R.reloads[ok ? 0 : 1], 1);
}

void
metrics_config_reload_took(double seconds)
{
	atomic_store_explicit(&R.reload_seconds, seconds, memory_order_relaxed);
}

void
metrics_config_loaded(uint64_t generation, double unix_time)
{
	atomic_store_explicit(&R.config_generation, generation, memory_order_relaxed);
	atomic_store_explicit(&R.config_load_time, unix_time, memory_order_relaxed);
}

/* ---- rendering -------------------------------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
	int failed; /* ENOMEM once an append failed; later appends do nothing */
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->failed = EINVAL;
		return;
	}
	if (!o->p || o->len + (size_t)n >= o->cap) {
		/* room for this line and the NUL vsnprintf writes, and some to spare */
		if (VEC_RESERVE(o->p, o->cap, o->len + (size_t)n + 1 + 4096) < 0) {
			o->failed = errno;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
	}
	o->len += (size_t)n;
}

/* A label value: backslash, double quote and line feed escaped as the format asks; a byte
 * that does not start well-formed UTF-8 becomes U+FFFD, so the page stays UTF-8. */
static void
put_label_value(struct out *o, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n = strlen(v);

	while (n > 0) {
		size_t k = utf8_seq(s, n, NULL);
		if (k == 0) {
			put(o, "\xEF\xBF\xBD");
			k = 1;
		} else if (*s == '\\') {
			put(o, "\\\\");
		} else if (*s == '"') {
			put(o, "\\\"");
		} else if (*s == '\n') {
			put(o, "\\n");
		} else {
			put(o, "%.*s", (int)k, (const char *)s);
		}
		s += k;
		n -= k;
	}
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Whole unlabelled families of one sample. */
static void
single(struct out *o, const char *name, const char *type, const char *help, double v)
{
	family(o, name, type, help);
	put(o, "%s %.3f\n", name, v);
}

static void
single_u64(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
	family(o, name, type, help);
	put(o, "%s %" PRIu64 "\n", name, v);
}

static void
single_i64(struct out *o, const char *name, const char *type, const char *help, int64_t v)
{
	family(o, name, type, help);
	put(o, "%s %" PRId64 "\n", name, v);
}

/* A counter with one fixed label whose values are labels[0..n), counts in v. */
static void
enum_family(struct out *o, const char *name, const char *help, const char *label,
            const char *const *labels, counter *v, size_t n)
{
	family(o, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		put(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, labels[i], get(&v[i]));
}

static void
connector_sample(struct out *o, const char *name, const struct metrics_connector *c)
{
	put(o, "%s{connector=\"", name);
	put_label_value(o, c->name);
	put(o, "\"} ");
}

static void
render_connectors(struct out *o)
{
	struct metrics_connector *c;

	family(o, "mxgate_connections_total", "counter",
	       "Sessions accepted, by the connector that took them.");
	for (c = R.head; c; c = c->next) {
		connector_sample(o, "mxgate_connections_total", c);
		put(o, "%" PRIu64 "\n", get(&c->connections));
	}
	family(o, "mxgate_connector_sessions_active", "gauge", "Sessions open now, by connector.");
	for (c = R.head; c; c = c->next) {
		connector_sample(o, "mxgate_connector_sessions_active", c);
		put(o, "%" PRId64 "\n", atomic_load_explicit(&c->active, memory_order_relaxed));
	}
	family(o, "mxgate_messages_queued_total", "counter",
	       "Messages committed to the spool and answered 250, by connector.");
	for (c = R.head; c; c = c->next) {
		connector_sample(o, "mxgate_messages_queued_total", c);
		put(o, "%" PRIu64 "\n", get(&c->queued));
	}
	family(o, "mxgate_messages_queued_bytes_total", "counter",
	       "Bytes of the messages counted in mxgate_messages_queued_total, by connector.");
	for (c = R.head; c; c = c->next) {
		connector_sample(o, "mxgate_messages_queued_bytes_total", c);
		put(o, "%" PRIu64 "\n", get(&c->queued_bytes));
	}
	family(o, "mxgate_messages_rejected_total", "counter",
	       "MAIL, RCPT, DATA and end-of-data commands refused, by connector and reply code.");
	for (c = R.head; c; c = c->next)
		for (unsigned i = 0; i < CODE_N; i++) {
			uint64_t v = get(&c->rejected[i]);
			if (!v)
				continue;
			put(o, "mxgate_messages_rejected_total{connector=\"");
			put_label_value(o, c->name);
			put(o, "\",code=\"%u\"} %" PRIu64 "\n", CODE_MIN + i, v);
		}
	family(o, "mxgate_tls_client_certificates_total", "counter",
	       "Client certificates judged after STARTTLS on connectors with "
	       "tls-sender-certificate-name, by connector and result.");
	for (c = R.head; c; c = c->next)
		for (unsigned i = 0; i < TLS_PEER_VERDICT_N; i++) {
			put(o, "mxgate_tls_client_certificates_total{connector=\"");
			put_label_value(o, c->name);
			put(o, "\",result=\"%s\"} %" PRIu64 "\n", cert_label[i], get(&c->certs[i]));
		}
}

static void
render_commit(struct out *o)
{
	uint64_t cum = 0;

	family(o, "mxgate_commit_seconds", "histogram",
	       "Seconds from the end of a message's DATA to its 250 reply (the spool's commit).");
	for (size_t i = 0; i <= METRICS_COMMIT_BUCKETS_N; i++) {
		cum += get(&R.commit_bucket[i]);
		if (i < METRICS_COMMIT_BUCKETS_N)
			put(o, "mxgate_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
			    commit_le[i], cum);
		else
			put(o, "mxgate_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	uint64_t ns = get(&R.commit_sum_ns);
	put(o, "mxgate_commit_seconds_sum %" PRIu64 ".%09" PRIu64 "\n", ns / 1000000000u,
	    ns % 1000000000u);
	put(o, "mxgate_commit_seconds_count %" PRIu64 "\n", cum);
}

/* What an admin sees of the process in every client library: CPU, memory, descriptors
 * (the last is what runs out first under a connection flood). */
static void
render_process(struct out *o)
{
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	unsigned long ut = 0, st = 0;
	long rss = 0;
	char buf[1024];
	FILE *fp = fopen("/proc/self/stat", "re");
	size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;

	if (fp)
		fclose(fp);
	buf[n] = '\0';
	/* the fields after the command name, which may hold anything but ends at the last ')' */
	char *p = strrchr(buf, ')');
	if (p &&
	    sscanf(p + 2,
	           "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d "
	           "%*d %*d %*d %*u %*u %ld",
	           &ut, &st, &rss) == 3 &&
	    tck > 0) {
		single(o, "process_cpu_seconds_total", "counter",
		       "User and system CPU time spent, in seconds.",
		       (double)(ut + st) / (double)tck);
		single_u64(o, "process_resident_memory_bytes", "gauge", "Resident memory in bytes.",
		           (uint64_t)rss * (uint64_t)page);
	}
	/* open() then fdopendir(): ThreadSanitizer does not see the descriptor opendir() makes,
	 * and would take its reuse of a number another thread just closed for a race */
	int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d && dfd >= 0)
		close(dfd);
	if (d) {
		uint64_t fds = 0;
		struct dirent *e;
		while ((e = readdir(d)))
			if (e->d_name[0] != '.')
				fds++;
		closedir(d);
		/* less the descriptor the listing itself holds */
		single_u64(o, "process_open_fds", "gauge", "Open file descriptors.",
		           fds ? fds - 1 : 0);
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		single_u64(o, "process_max_fds", "gauge",
		           "The limit on open file descriptors (RLIMIT_NOFILE).",
		           (uint64_t)rl.rlim_cur);
}

static void
render_process_info(struct out *o)
{
	family(o, "mxgate_build_info", "gauge", "Always 1; the version is in the label.");
	put(o, "mxgate_build_info{version=\"");
	put_label_value(o, MXGATE_VERSION);
	put(o, "\"} 1\n");
	single(o, "mxgate_start_time_seconds", "gauge", "When the daemon started, in Unix time.",
	       atomic_load(&R.start_time));
	single_u64(o, "mxgate_config_generation", "gauge",
	           "The running configuration's generation (1 at start, +1 per accepted reload).",
	           get(&R.config_generation));
	single(o, "mxgate_config_load_time_seconds", "gauge",
	       "When the running configuration was loaded, in Unix time.",
	       atomic_load(&R.config_load_time));
	single(o, "mxgate_config_reload_duration_seconds", "gauge",
	       "How long the last reload (accepted or refused) took from its start (the SIGHUP, "
	       "or the end of the reload it came during) to its result; 0 before the first.",
	       atomic_load(&R.reload_seconds));
	static const char *const ok_error[] = {"ok", "error"};
	enum_family(o, "mxgate_config_reloads_total",
	            "Reloads (SIGHUP), by whether the new configuration was accepted.", "result",
	            ok_error, R.reloads, 2);
}

static void
render_global(struct out *o)
{
	enum_family(o, "mxgate_connections_refused_total",
	            "Connections closed before a session began, by reason.", "reason",
	            refusal_label, R.refused, METRICS_REFUSAL_N);
	single_i64(o, "mxgate_sessions_active", "gauge", "Sessions open now.",
	           atomic_load_explicit(&R.sessions_active, memory_order_relaxed));
	single_u64(o, "mxgate_accept_paused_total", "counter",
	           "Times the listeners paused because accept(2) ran out of descriptors or memory.",
	           get(&R.accept_paused));
	single_i64(o, "mxgate_privileged_reader_up", "gauge",
	           "1 while reloads read root-only files through the privileged reader; 0 when "
	           "there is none (not started as root) or it is gone (restart to get it back).",
	           atomic_load_explicit(&R.privileged_reader, memory_order_relaxed));
	single_i64(o, "mxgate_bindings_not_listening", "gauge",
	           "Bindings of the running configuration that are not open: a reload that "
	           "could not open one (address in use, not on this host) applied the rest.",
	           atomic_load_explicit(&R.bindings_not_listening, memory_order_relaxed));
	enum_family(o, "mxgate_tls_sessions_total",
	            "TLS handshakes completed (STARTTLS), by protocol version.", "version",
	            tls_label, R.tls, TLS_N);
	single_u64(o, "mxgate_tls_handshake_failures_total", "counter",
	           "TLS handshakes that failed.", get(&R.tls_failed));
	struct tlsmem_stats tm = tlsmem_stats();
	if (tm.installed) {
		family(o, "mxgate_tls_buffer_slots", "gauge",
		       "OpenSSL's record and handshake buffers (net/tlsmem): slots in use, and "
		       "free ones kept resident for the next handshakes.");
		put(o, "mxgate_tls_buffer_slots{state=\"used\"} %" PRIu64 "\n", tm.used);
		put(o, "mxgate_tls_buffer_slots{state=\"hot\"} %" PRIu64 "\n", tm.hot);
		single_u64(o, "mxgate_tls_buffer_fallbacks_total", "counter",
		           "Buffer requests that found every slot taken and went to malloc.",
		           tm.fallbacks);
	}
	single_u64(o, "mxgate_tls_sessions_resumed_total", "counter",
	           "TLS handshakes completed by resuming a session (a ticket: tls { "
	           "session-tickets }), counted in mxgate_tls_sessions_total too.",
	           get(&R.tls_resumed));
	single_u64(o, "mxgate_spool_sync_failures_total", "counter",
	           "Spool commits whose sync failed (the sessions were answered 452).",
	           get(&R.spool_sync_failures));
	single_i64(o, "mxgate_queue_messages", "gauge", "Messages in the queue.",
	           atomic_load_explicit(&R.queue_messages, memory_order_relaxed));
	single_i64(o, "mxgate_queue_held_messages", "gauge",
	           "Queued messages held by the administrator (mxgate queue hold): not "
	           "delivered until released.",
	           atomic_load_explicit(&R.queue_held, memory_order_relaxed));
	single(o, "mxgate_queue_oldest_message_timestamp_seconds", "gauge",
	       "When the oldest queued message arrived, in Unix time; 0 when the queue is empty.",
	       atomic_load_explicit(&R.queue_oldest, memory_order_relaxed));
	enum_family(o, "mxgate_deliveries_total", "Delivery attempts, by outcome.", "result",
	            delivery_label, R.deliveries, METRICS_DELIVERY_N);
	static const char *const fcrdns_label[METRICS_FCRDNS_N] = {
	        "pass", "no_ptr", "not_confirmed", "wrong_suffix", "tempfail"};
	enum_family(o, "mxgate_fcrdns_checks_total",
	            "Forward-confirmed reverse DNS verdicts (remote-hostname-suffixes), one per "
	            "session that sent MAIL, by result.",
	            "result", fcrdns_label, R.fcrdns, METRICS_FCRDNS_N);
	single_u64(o, "mxgate_bdat_chunks_total", "counter",
	           "BDAT chunks read (RFC 3030), taken or refused.", get(&R.bdat_chunks));
	single_u64(o, "mxgate_bdat_bytes_total", "counter", "Octets of the BDAT chunks read.",
	           get(&R.bdat_bytes));
	static const char *const bare[] = {"refused", "normalized"};
	enum_family(o, "mxgate_bare_line_ends_total",
	            "Bare line ends: sessions closed for a bare CR or LF (refused), bare LFs taken "
	            "as CRLF under bare-line-feed = normalize (normalized).",
	            "action", bare, R.bare_line_ends, 2);
	enum_family(o, "mxgate_proxy_headers_total",
	            "PROXY protocol headers awaited from proxy-protocol-from peers, by outcome.",
	            "result", proxy_label, R.proxy, METRICS_PROXY_N);
	enum_family(o, "mxgate_relay_connections_total",
	            "Connections to the next hop: opened, reused for another batch, found broken "
	            "at reuse (stale), or failed to open.",
	            "result", relay_conn_label, R.relay_conns, METRICS_RELAY_CONN_N);
	enum_family(o, "mxgate_spool_syncs_total",
	            "Syncs of the spool: a group commit's syncfs (data), its fsync of queue/ "
	            "(directory), a syncfs for delivery's Maildir links alone (barrier). Messages "
	            "queued per data sync is the group commit's size.",
	            "step", spool_sync_label, R.spool_syncs, METRICS_SYNC_N);
	family(o, "mxgate_recipient_verifications_total", "counter",
	       "Recipients verified at the next hop (verify-recipients), by verdict and whether "
	       "the cache answered.");
	for (size_t i = 0; i < 3; i++)
		for (int h = 0; h < 2; h++)
			put(o,
			    "mxgate_recipient_verifications_total{result=\"%s\",cache=\"%s\"} "
			    "%" PRIu64 "\n",
			    verify_label[i], h ? "hit" : "miss", get(&R.verifications[i][h]));
	static const char *const why[] = {"queue_full", "write_error"};
	family(o, "mxgate_protocol_log_dropped_total", "counter",
	       "Protocol log rows not written: the writer fell behind (queue_full) or the disk "
	       "refused them (write_error).");
	for (int i = 0; i < 2; i++)
		put(o, "mxgate_protocol_log_dropped_total{reason=\"%s\"} %" PRIu64 "\n", why[i],
		    protolog_dropped(i ? PROTOLOG_DROP_WRITE_ERROR : PROTOLOG_DROP_QUEUE_FULL));
}

int
metrics_render(char **out, size_t *len)
{
	struct out o = {0};

	render_process_info(&o);
	pthread_mutex_lock(&R.mu);
	render_connectors(&o);
	pthread_mutex_unlock(&R.mu);
	render_global(&o);
	render_commit(&o);
	render_process(&o);
	if (o.failed) {
		free(o.p);
		errno = o.failed;
		return -1;
	}
	*out = o.p;
	*len = o.len;
	return 0;
}

void
metrics_shutdown(void)
{
	pthread_mutex_lock(&R.mu);
	while (R.head) {
		struct metrics_connector *c = R.head;
		R.head = c->next;
		free(c->name);
		free(c);
	}
	R.tail = NULL;
	R.n_connectors = 0;
	pthread_mutex_unlock(&R.mu);
}
