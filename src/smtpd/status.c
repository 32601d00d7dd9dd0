#include "smtpd/status.h"

#include <inttypes.h>
#include <unistd.h>

#include "obs/metrics.h"

/* "2026-12-04T20:51:17Z" */
static void
utc(char *buf, size_t size, double t)
{
	time_t s = (time_t)t;
	struct tm tm;

	if (t <= 0 || !gmtime_r(&s, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "-");
}

/* "3d 4h", "1h 2m", "5m 3s", "12s" */
static void
span(char *buf, size_t size, double secs)
{
	uint64_t s = secs > 0 ? (uint64_t)secs : 0;

	if (s >= 86400)
		snprintf(buf, size, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, size, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, size, "%" PRIu64 "s", s);
}

/* "1.2 MB", "340 KB", "12 bytes" */
static void
bytes(char *buf, size_t size, uint64_t n)
{
	if (n >= 10 * 1000 * 1000)
		snprintf(buf, size, "%" PRIu64 " MB", n / (1000 * 1000));
	else if (n >= 1000 * 1000)
		snprintf(buf, size, "%.1f MB", (double)n / (1000.0 * 1000.0));
	else if (n >= 10 * 1000)
		snprintf(buf, size, "%" PRIu64 " KB", n / 1000);
	else
		snprintf(buf, size, "%" PRIu64 " byte%s", n, n == 1 ? "" : "s");
}

static const char *
plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

static void
write_process(FILE *out, const struct status_info *in, const struct metrics_view *m)
{
	char t1[32], t2[32], up[32], ago[32];

	utc(t1, sizeof(t1), m->start_time);
	span(up, sizeof(up), (double)in->now - m->start_time);
	fprintf(out, "mxgate %s (pid %ld): up %s, since %s\n", MXGATE_VERSION, (long)getpid(), up,
	        t1);
	utc(t2, sizeof(t2), m->config_load_time);
	span(ago, sizeof(ago), (double)in->now - m->config_load_time);
	fprintf(out,
	        "configuration: %s, generation %" PRIu64 ", loaded %s (%s ago); reloads since "
	        "start: %" PRIu64 " accepted, %" PRIu64 " refused\n",
	        in->path, m->config_generation, t2, ago, m->reloads_ok, m->reloads_error);
	fprintf(out, "configuration sha256: ");
	for (size_t i = 0; i < sizeof(in->cfg->sha256); i++)
		fprintf(out, "%02x", in->cfg->sha256[i]);
	fprintf(out, " (the file as loaded; mxgate audit compares it)\n");
	fprintf(out, "state: %s, %zu listener%s", in->draining ? "draining" : "serving",
	        in->listeners, plural(in->listeners));
	if (m->bindings_not_listening > 0)
		fprintf(out,
		        " (%" PRId64 " binding%s of the configuration not open: the last "
		        "reload could not open %s, see the log)",
		        m->bindings_not_listening, plural((uint64_t)m->bindings_not_listening),
		        m->bindings_not_listening == 1 ? "it" : "them");
	fprintf(out, ", %zu worker%s", in->workers, plural(in->workers));
	if (in->keeper_pid == 0)
		fprintf(out, ", no privileged reader (not started as root)\n");
	else if (m->privileged_reader)
		fprintf(out, ", privileged reader running (pid %ld)\n", (long)in->keeper_pid);
	else
		fprintf(out,
		        ", privileged reader GONE (pid %ld): reloads read as the run user; "
		        "restart mxgate\n",
		        (long)in->keeper_pid);
}

static void
write_sessions(FILE *out, const struct status_info *in, const struct metrics_view *m)
{
	fprintf(out, "sessions: %" PRId64 " open; closed before a session since start:",
	        m->sessions_active);
	for (int i = 0; i < METRICS_REFUSAL_N; i++)
		fprintf(out, "%s %" PRIu64 " %s", i ? "," : "", m->refused[i],
		        metrics_refusal_label((enum metrics_refusal)i));
	fprintf(out, "\n");
	for (size_t i = 0; i < in->cfg->n_connectors; i++) {
		const struct connector *k = &in->cfg->connectors[i];
		struct metrics_connector_view v;
		char size[32];
		metrics_connector_read(k->metrics, &v);
		bytes(size, sizeof(size), v.queued_bytes);
		fprintf(out,
		        "connector \"%s\": %" PRId64 " open, %" PRIu64 " session%s, %" PRIu64
		        " message%s queued (%s), %" PRIu64 " command%s refused\n",
		        k->name, v.active, v.connections, plural(v.connections), v.queued,
		        plural(v.queued), size, v.rejected, plural(v.rejected));
	}
}

static void
write_queue(FILE *out, const struct status_info *in, const struct metrics_view *m)
{
	const struct config *c = in->cfg;
	char t[32], ago[32];

	if (m->queue_messages > 0 && m->queue_oldest > 0) {
		utc(t, sizeof(t), m->queue_oldest);
		span(ago, sizeof(ago), (double)in->now - m->queue_oldest);
		fprintf(out, "queue: %" PRId64 " message%s, the oldest from %s (%s ago)\n",
		        m->queue_messages, plural((uint64_t)m->queue_messages), t, ago);
	} else {
		fprintf(out, "queue: %" PRId64 " message%s\n", m->queue_messages,
		        plural((uint64_t)(m->queue_messages > 0 ? m->queue_messages : 0)));
	}
	if (m->queue_held > 0)
		fprintf(out,
		        "queue: %" PRId64 " held (not delivered until `mxgate queue release`)\n",
		        m->queue_held);
	if (c->relay)
		fprintf(out, "delivery: relay to %s (%s), up to %" PRIu64 " connection%s", c->relay,
		        c->relay_tls == RELAY_TLS_REQUIRED        ? "STARTTLS required"
		        : c->relay_tls == RELAY_TLS_OPPORTUNISTIC ? "STARTTLS when offered"
		                                                  : "no TLS",
		        c->relay_connections, plural(c->relay_connections));
	else
		fprintf(out, "delivery: Maildir");
	fprintf(out, "; attempts since start:");
	for (int i = 0; i < METRICS_DELIVERY_N; i++)
		fprintf(out, "%s %" PRIu64 " %s", i ? "," : "", m->deliveries[i],
		        metrics_delivery_label((enum metrics_delivery)i));
	fprintf(out, "\n");
}

void
status_write(FILE *out, const struct status_info *in)
{
	struct metrics_view m;

	metrics_read(&m);
	write_process(out, in, &m);
	write_sessions(out, in, &m);
	write_queue(out, in, &m);
}
