/*
 * metrics — the daemon's Prometheus metrics: one process-wide registry of counters,
 * gauges and one histogram, rendered in the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).  metrics_http serves it.
 *
 * Cost on the session threads: every update below is one relaxed atomic add or store on
 * memory that already exists; none takes a lock, allocates or makes a system call.  The
 * series with a free-text label (the connector's name) live in a struct metrics_connector
 * that metrics_connector() finds or creates under the registry's mutex, once per connector
 * per configuration load; sessions then update it through the pointer.  Every other label
 * takes its values from a fixed set (an enum, an SMTP code, a TLS version), so all of its
 * series exist from the start: a rate() over them starts at zero instead of at the first
 * event.  Only metrics_connector(), metrics_render() and metrics_shutdown() take the
 * mutex, and neither runs on a session thread in the daemon.
 *
 * The registry needs no set-up: every update works from the first instruction of main().
 * metrics_init() records the start time and is called once, early.  Counters never go
 * back (a reload keeps them; a connector that a reload removes keeps its series, frozen,
 * until the process ends), as Prometheus expects of a counter.
 *
 * Series (HELP texts in metrics.c):
 *   mxgate_build_info{version}                         gauge, always 1
 *   mxgate_start_time_seconds                          gauge, Unix time of metrics_init()
 *   mxgate_config_generation                           gauge, metrics_config_loaded()
 *   mxgate_config_load_time_seconds                    gauge, metrics_config_loaded()
 *   mxgate_config_reload_duration_seconds              gauge, metrics_config_reload_took()
 *   mxgate_config_reloads_total{result=ok|error}       counter
 *   mxgate_connections_total{connector}                counter, sessions accepted
 *   mxgate_connections_refused_total{reason}           counter, enum metrics_refusal
 *   mxgate_sessions_active                             gauge
 *   mxgate_connector_sessions_active{connector}        gauge
 *   mxgate_accept_paused_total                         counter
 *   mxgate_privileged_reader_up                        gauge, metrics_privileged_reader()
 *   mxgate_bindings_not_listening                      gauge, metrics_bindings_not_listening()
 *   mxgate_tls_sessions_total{version}                 counter, handshakes completed
 *   mxgate_tls_handshake_failures_total                counter
 *   mxgate_tls_buffer_slots{state=used|hot}            gauge, net/tlsmem (when installed)
 *   mxgate_tls_buffer_fallbacks_total                  counter, net/tlsmem
 *   mxgate_tls_sessions_resumed_total                  counter, of those completed: resumed
 *   mxgate_messages_queued_total{connector}            counter
 *   mxgate_messages_queued_bytes_total{connector}      counter
 *   mxgate_messages_rejected_total{connector,code}     counter (a series per code seen)
 *   mxgate_tls_client_certificates_total{connector,result=ok|none|untrusted|expired|mismatch}
 *       counter, the client certificate checks of tls-sender-certificate-name
 *   mxgate_commit_seconds                              histogram, end of DATA to 250
 *   mxgate_spool_sync_failures_total                   counter
 *   mxgate_queue_messages                              gauge
 *   mxgate_queue_oldest_message_timestamp_seconds      gauge, 0 when the queue is empty
 *   mxgate_queue_held_messages                         gauge, of mxgate_queue_messages
 *   mxgate_deliveries_total{result=delivered|deferred|failed}  counter
 *   mxgate_fcrdns_checks_total{result=pass|no_ptr|not_confirmed|wrong_suffix|tempfail}
 *       counter, one per session whose MAIL a connector's remote-hostname-suffixes judged
 *   mxgate_bdat_chunks_total, mxgate_bdat_bytes_total  counters, metrics_bdat()
 *   mxgate_bare_line_ends_total{action=refused|normalized}  counter, metrics_bare_line_ends()
 *   mxgate_proxy_headers_total{result=ok|local|invalid|timeout}  counter, enum
 *       metrics_proxy: one per connection from a proxy-protocol-from peer
 *   mxgate_relay_connections_total{result=opened|reused|stale|failed}  counter,
 *       metrics_relay_connection() from the relay delivery threads
 *   mxgate_spool_syncs_total{step=data|directory|barrier}  counter,
 *       metrics_spool_sync() from the spool's syncer threads: a group commit's syncfs()
 *       (data), its fsync of queue/ (directory, one for every group handed over
 *       meanwhile), a syncfs() for delivery's spool_barrier() alone (barrier)
 *   mxgate_protocol_log_dropped_total{reason=queue_full|write_error}  counter, read
 *       from protolog at each rendering (nothing to wire)
 *   process_cpu_seconds_total, process_open_fds, process_max_fds,
 *   process_resident_memory_bytes                      read from the kernel at rendering
 *
 * Wiring it into the daemon (every call is cheap enough for the place named):
 *   - main(), first thing: metrics_init().  At exit, after every thread that updates is
 *     joined: metrics_shutdown().
 *   - At each configuration load (start and every accepted reload), for each connector:
 *     mc[i] = metrics_connector(cfg->connectors[i].name), kept beside the snapshot (an
 *     array parallel to cfg->connectors, freed with it; the handles themselves are never
 *     freed).  Then metrics_config_loaded(generation, load time).
 *     Every reload, accepted or refused: metrics_config_reload(ok).
 *   - accept loop: a connection no connector takes, METRICS_REFUSED_NO_CONNECTOR; refused
 *     at max-inbound-connection, _CONNECTOR_LIMIT; at the per-source limit, _SOURCE_LIMIT;
 *     calloc of the hand-over failed, _NO_MEMORY: metrics_refused(reason).  accept(2)
 *     failing with EMFILE/ENFILE/ENOBUFS/ENOMEM (the listeners pause):
 *     metrics_refused(METRICS_REFUSED_FD_EXHAUSTED) and metrics_accept_paused().
 *   - session start (start_session(), once the session exists):
 *     metrics_session_opened(mc[connector]); session_free(): metrics_session_closed() with
 *     the same handle.  Both accept NULL (metrics_connector() failed): the global series
 *     still count.
 *   - TLS handshake done: metrics_tls_session(SSL_get_version() text, e.g. "TLSv1.3");
 *     failed: metrics_tls_failed().
 *   - a message committed (the 250 after DATA): metrics_message_queued(mc, size) and
 *     metrics_commit_observe(nanoseconds from the end-of-data line to the 250 being
 *     queued for sending: CLOCK_MONOTONIC read at SMTP_MSG_END and in message_committed).
 *   - every 4xx/5xx reply to MAIL, RCPT, DATA or the end of data:
 *     metrics_message_rejected(mc, code) — one count per refused command, so a message
 *     refused for 3 recipients counts 3; a 452 for a failed commit counts too.
 *   - spool syncer: a failed syncfs/fsync batch, metrics_spool_sync_failure().
 *   - queue: whenever the count changes, metrics_queue_set(n) (or metrics_queue_add(±1));
 *     metrics_queue_oldest(Unix time of the oldest message, 0 when empty) when known.
 *   - delivery/relay: each attempt's outcome, metrics_delivery(METRICS_DELIVERED, ...).
 *
 * Threads: everything may be called from any thread, at any time, except metrics_shutdown()
 * (after every other call has returned, and none follows).
 */
#ifndef MXGATE_METRICS_H
#define MXGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Distinct connector names the registry holds; metrics_connector() returns NULL past it
 * (only reloads that keep renaming connectors could get there). */
#define METRICS_MAX_CONNECTORS 1024

/* Why a connection was closed before it became a session (the label "reason"). */
enum metrics_refusal {
	METRICS_REFUSED_NO_CONNECTOR,    /* "no_connector": no connector covers the pair */
	METRICS_REFUSED_CONNECTOR_LIMIT, /* "connector_limit": max-inbound-connection */
	METRICS_REFUSED_SOURCE_LIMIT,    /* "source_limit": the per-source limit */
	METRICS_REFUSED_FD_EXHAUSTED,    /* "fd_exhausted": accept(2) ran out of descriptors */
	METRICS_REFUSED_NO_MEMORY,       /* "no_memory": the session could not be set up */
	METRICS_REFUSAL_N
};

/* A delivery attempt's outcome (the label "result"). */
enum metrics_delivery {
	METRICS_DELIVERED, /* "delivered": the message reached its recipient(s) */
	METRICS_DEFERRED,  /* "deferred": a temporary failure; it stays queued */
	METRICS_FAILED,    /* "failed": a permanent failure (a bounce follows) */
	METRICS_DELIVERY_N
};

/* What became of a PROXY protocol header from a balancer (the label "result"). */
enum metrics_proxy {
	METRICS_PROXY_OK,    /* "ok": a header with the client's address */
	METRICS_PROXY_LOCAL, /* "local": v2 LOCAL, v1 UNKNOWN or family UNSPEC: the balancer's own */
	METRICS_PROXY_INVALID, /* "invalid": not a valid header (or EOF before one): closed */
	METRICS_PROXY_TIMEOUT, /* "timeout": no whole header within proxy-protocol-timeout */
	METRICS_PROXY_N
};

/* What became of a connection to the next hop (mxgate_relay_connections_total{result}). */
enum metrics_relay_conn {
	METRICS_RELAY_OPENED, /* "opened": a new connection, greeted (and TLS up when asked) */
	METRICS_RELAY_REUSED, /* "reused": a kept connection carried another batch */
	METRICS_RELAY_STALE,  /* "stale": a kept connection was found broken at reuse */
	METRICS_RELAY_FAILED, /* "failed": a new connection could not be opened */
	METRICS_RELAY_CONN_N
};

/* A sync the spool did (mxgate_spool_syncs_total{step}); spool.c's pipeline says which. */
enum metrics_spool_sync {
	METRICS_SYNC_DATA,      /* "data": a group's syncfs() (or per-file syncs) */
	METRICS_SYNC_DIRECTORY, /* "directory": an fsync of queue/ for the groups handed over */
	METRICS_SYNC_BARRIER,   /* "barrier": a syncfs() for spool_barrier() requests alone */
	METRICS_SYNC_N
};

/* The upper bounds (seconds) of mxgate_commit_seconds's buckets, then +Inf. */
#define METRICS_COMMIT_BUCKETS                                                                     \
	{                                                                                          \
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0       \
	}
#define METRICS_COMMIT_BUCKETS_N 13

/* The per-connector series; opaque. */
struct metrics_connector;

/* mxgate_proxy_headers_total{result}: one per connection from a proxy-protocol-from peer. */
void metrics_proxy_header(enum metrics_proxy result);

/* Records the start time (CLOCK_REALTIME) for mxgate_start_time_seconds. */
void metrics_init(void);

/* The handle of the connector named name (borrowed for the call; any bytes: label values
 * are escaped when rendered), created on first use with its series at zero.  The same
 * name always gives the same handle, valid until metrics_shutdown().  Returns NULL with
 * errno ENOMEM, or ENOSPC past METRICS_MAX_CONNECTORS.  Takes the registry's mutex:
 * call it at configuration load, not per session. */
struct metrics_connector *metrics_connector(const char *name);

/* -- per connector; c may be NULL (then only the unlabelled series move) -- */

/* A session began: mxgate_connections_total{connector} and both sessions_active gauges
 * go up.  Pair each with one metrics_session_closed(c) on the same handle. */
void metrics_session_opened(struct metrics_connector *c);
void metrics_session_closed(struct metrics_connector *c);
/* A message was committed (answered 250); size in bytes. */
void metrics_message_queued(struct metrics_connector *c, uint64_t size);
/* A transaction command was refused with code (400..599; other values are not counted). */
void metrics_message_rejected(struct metrics_connector *c, unsigned code);

/* A client certificate was judged after STARTTLS (tls-sender-certificate-name): verdict
 * is a net/tls.h enum tls_peer_verdict (the label "result": ok, none, untrusted, expired,
 * mismatch); others are not counted. */
void metrics_client_certificate(struct metrics_connector *c, int verdict);

/* -- process-wide -- */

void metrics_refused(enum metrics_refusal why);
void metrics_accept_paused(void);
/* Whether reloads go through the privileged reader (smtpd/keeper.h): set when it starts and
 * when it is found gone. */
void metrics_privileged_reader(bool up);
/* The bindings of the running configuration that are not open: set after each reload
 * (one that cannot be opened then is logged, and the others serve). */
void metrics_bindings_not_listening(size_t n);
/* version: the protocol's name as OpenSSL gives it ("TLSv1.2", "TLSv1.3"; "TLSv1",
 * "TLSv1.1" are counted too); anything else counts as "other". */
void metrics_tls_session(const char *version);
void metrics_tls_failed(void);
/* A completed handshake resumed a session (a ticket of tls { session-tickets }). */
void metrics_tls_resumed(void);
/* At session end, what the SMTP core counted (smtp_stats()). */
void metrics_bdat(uint64_t chunks, uint64_t bytes);
void metrics_bare_line_ends(uint64_t refused, uint64_t normalized);
/* One observation of mxgate_commit_seconds, in nanoseconds. */
void metrics_commit_observe(uint64_t ns);
void metrics_spool_sync_failure(void);
void metrics_queue_set(uint64_t messages);
void metrics_queue_add(int64_t delta);
void metrics_queue_oldest(double unix_time);
/* Held messages (mxgate queue hold), counted in the queue's messages too. */
void metrics_queue_held_add(int64_t delta);
void metrics_delivery(enum metrics_delivery result);

/* The forward-confirmed reverse DNS verdict of a session (smtpd/session.c). */
enum metrics_fcrdns {
	METRICS_FCRDNS_PASS,
	METRICS_FCRDNS_NO_PTR,
	METRICS_FCRDNS_NOT_CONFIRMED,
	METRICS_FCRDNS_WRONG_SUFFIX,
	METRICS_FCRDNS_TEMPFAIL,
	METRICS_FCRDNS_N
};
void metrics_fcrdns(enum metrics_fcrdns result);
void metrics_relay_connection(enum metrics_relay_conn result);
void metrics_spool_sync(enum metrics_spool_sync step);
/* A recipient verification's verdict (smtpd/verify.h): result "ok", "unknown" or
 * "unavailable"; cache_hit when the cache answered (the label cache="hit"|"miss"). */
void metrics_verification(const char *result, bool cache_hit);
/* A reload was accepted (ok) or refused. */
void metrics_config_reload(bool ok);
/* The last reload, accepted or refused, took this long from its start to its result. */
void metrics_config_reload_took(double seconds);
/* A configuration became the running one: its generation and Unix load time. */
void metrics_config_loaded(uint64_t generation, double unix_time);

/* -- reading them back, for `mxgate status` (values read one by one, relaxed) -- */

struct metrics_connector_view {
	uint64_t connections;  /* sessions accepted since start */
	int64_t active;        /* sessions open now */
	uint64_t queued;       /* messages committed */
	uint64_t queued_bytes; /* their sizes */
	uint64_t rejected;     /* refused transaction commands, every code */
};

struct metrics_view {
	double start_time, config_load_time, queue_oldest; /* Unix times; 0: none */
	uint64_t config_generation, reloads_ok, reloads_error;
	int64_t sessions_active, queue_messages, privileged_reader, bindings_not_listening;
	int64_t queue_held;
	uint64_t refused[METRICS_REFUSAL_N];
	uint64_t deliveries[METRICS_DELIVERY_N];
};

/* c may be NULL: every count 0. */
void metrics_connector_read(struct metrics_connector *c, struct metrics_connector_view *v);
void metrics_read(struct metrics_view *v);
/* "no_connector", "delivered": the label of each. */
const char *metrics_refusal_label(enum metrics_refusal why);
const char *metrics_delivery_label(enum metrics_delivery result);

/* Content-Type of what metrics_render() writes. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Renders every series into *out (malloc'ed, owned by the caller, not NUL-terminated;
 * *len bytes).  Values are read one by one, relaxed: a scrape racing a session may see a
 * counter from just before an update and its neighbour from just after, as any client
 * library's would; a histogram's count always equals its +Inf bucket.  Returns 0, or -1
 * with errno ENOMEM (*out untouched). */
int metrics_render(char **out, size_t *len);

/* Frees the connector handles.  Only after every thread that updates has stopped. */
void metrics_shutdown(void);

#endif
