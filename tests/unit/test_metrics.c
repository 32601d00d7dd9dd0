/* Unit tests: metrics (the registry and its text format) and metrics_http (the scrape
 * endpoint).  The page is checked by a small parser of the text exposition format 0.0.4
 * written here, and by prometheus_client's own parser (Debian's python3-prometheus-client)
 * for the known sequence below.  Criterion runs each test in its own process, so each
 * starts with a registry at zero. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "obs/metrics.h"
#include "obs/metrics_http.h"

/* ---- a checker of the text format 0.0.4 ----------------------------------------------- */

#define MAX_SAMPLES 1024

struct sample {
	char name[128];
	char labels[512]; /* unescaped, "k=v" joined by '|' in the order written */
	double value;
};

struct page {
	struct sample s[MAX_SAMPLES];
	size_t n;
	char err[512];
};

static bool
name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
	       (!first && c >= '0' && c <= '9');
}

/* A metric or label name at *p; advances past it.  Returns its length (0: none). */
static size_t
parse_name(const char **p, char *out, size_t size)
{
	size_t n = 0;

	while (name_char((*p)[n], n == 0) && n + 1 < size) {
		out[n] = (*p)[n];
		n++;
	}
	out[n] = '\0';
	*p += n;
	return n;
}

static bool
fail(struct page *pg, int line, const char *why)
{
	snprintf(pg->err, sizeof(pg->err), "line %d: %s", line, why);
	return false;
}

/* The families and their types, for the order checks. */
struct fam {
	char name[128], type[16];
	bool help, sampled, closed;
};

static struct fam *
fam_get(struct fam *f, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(f[i].name, name) == 0)
			return &f[i];
	if (*n >= 128)
		return NULL;
	memset(&f[*n], 0, sizeof(f[*n]));
	snprintf(f[*n].name, sizeof(f[*n].name), "%s", name);
	return &f[(*n)++];
}

/* The family a sample belongs to: a histogram's _bucket, _sum and _count are its own. */
static struct fam *
fam_of(struct fam *f, size_t n, const char *sample)
{
	static const char *const sfx[] = {"_bucket", "_sum", "_count"};

	for (size_t i = 0; i < n; i++) {
		if (strcmp(f[i].name, sample) == 0)
			return &f[i];
		size_t l = strlen(f[i].name);
		if (strcmp(f[i].type, "histogram") == 0 && strncmp(sample, f[i].name, l) == 0)
			for (int k = 0; k < 3; k++)
				if (strcmp(sample + l, sfx[k]) == 0)
					return &f[i];
	}
	return NULL;
}

static bool
parse_labels(struct page *pg, int line, const char **p, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	if (**p != '{')
		return true;
	(*p)++;
	while (**p != '}') {
		char ln[128];
		if (!parse_name(p, ln, sizeof(ln)))
			return fail(pg, line, "bad label name");
		if (**p != '=' || (*p)[1] != '"')
			return fail(pg, line, "label name not followed by =\"");
		*p += 2;
		o += (size_t)snprintf(out + o, size - o, "%s%s=", o ? "|" : "", ln);
		while (**p != '"') {
			char c = **p;
			if (c == '\0' || c == '\n')
				return fail(pg, line, "label value not closed");
			if (c == '\\') {
				char e = (*p)[1];
				if (e != '\\' && e != '"' && e != 'n')
					return fail(pg, line, "bad escape in a label value");
				c = e == 'n' ? '\n' : e;
				(*p)++;
			}
			if (o + 1 < size)
				out[o++] = c;
			(*p)++;
		}
		out[o] = '\0';
		(*p)++;
		if (**p == ',')
			(*p)++;
		else if (**p != '}')
			return fail(pg, line, "labels not separated by ','");
	}
	(*p)++;
	return true;
}

static bool
parse_comment(struct page *pg, int line, const char *p, struct fam *f, size_t *nf)
{
	char name[128];
	bool help = strncmp(p, "# HELP ", 7) == 0, type = strncmp(p, "# TYPE ", 7) == 0;

	if (!help && !type)
		return true; /* a plain comment */
	p += 7;
	if (!parse_name(&p, name, sizeof(name)) || *p != ' ')
		return fail(pg, line, "HELP/TYPE without a metric name");
	struct fam *fm = fam_get(f, nf, name);
	if (!fm)
		return fail(pg, line, "too many families");
	if (fm->sampled)
		return fail(pg, line, "HELP/TYPE after the family's samples");
	if (help) {
		if (fm->help)
			return fail(pg, line, "second HELP");
		fm->help = true;
		for (p++; *p; p++)
			if (*p == '\\' && *++p != '\\' && *p != 'n')
				return fail(pg, line, "bad escape in HELP");
		return true;
	}
	if (fm->type[0])
		return fail(pg, line, "second TYPE");
	p++;
	if (strcmp(p, "counter") && strcmp(p, "gauge") && strcmp(p, "histogram") &&
	    strcmp(p, "summary") && strcmp(p, "untyped"))
		return fail(pg, line, "unknown TYPE");
	snprintf(fm->type, sizeof(fm->type), "%s", p);
	return true;
}

static bool
parse_sample(struct page *pg, int line, const char *p, struct fam *f, size_t nf, struct fam **last)
{
	struct sample *s;
	char *end;

	if (pg->n >= MAX_SAMPLES)
		return fail(pg, line, "too many samples");
	s = &pg->s[pg->n];
	if (!parse_name(&p, s->name, sizeof(s->name)))
		return fail(pg, line, "bad metric name");
	if (!parse_labels(pg, line, &p, s->labels, sizeof(s->labels)))
		return false;
	if (*p != ' ')
		return fail(pg, line, "no space before the value");
	p++;
	if (strcmp(p, "+Inf") == 0 || strcmp(p, "-Inf") == 0 || strcmp(p, "NaN") == 0) {
		s->value = p[0] == 'N' ? NAN : p[0] == '+' ? INFINITY : -INFINITY;
	} else {
		errno = 0;
		s->value = strtod(p, &end);
		if (end == p || errno || (*end && *end != ' '))
			return fail(pg, line, "bad value");
	}
	struct fam *fm = fam_of(f, nf, s->name);
	if (!fm || !fm->type[0])
		return fail(pg, line, "a sample without a TYPE before it");
	if (fm->closed || (*last && *last != fm && fm->sampled))
		return fail(pg, line, "a family's samples are not together");
	if (*last && *last != fm)
		(*last)->closed = true;
	fm->sampled = true;
	*last = fm;
	for (size_t i = 0; i < pg->n; i++)
		if (!strcmp(pg->s[i].name, s->name) && !strcmp(pg->s[i].labels, s->labels))
			return fail(pg, line, "a series twice");
	pg->n++;
	return true;
}

/* Parses text[0..len) into pg; false with pg->err on the first fault. */
static bool
prom_parse(const char *text, size_t len, struct page *pg)
{
	static struct fam f[128];
	size_t nf = 0;
	struct fam *last = NULL;
	char line[4096];
	int no = 0;

	pg->n = 0;
	if (len == 0 || text[len - 1] != '\n')
		return fail(pg, 0, "the page does not end with a newline");
	for (size_t off = 0; off < len;) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = (size_t)(nl - (text + off));
		no++;
		if (n >= sizeof(line))
			return fail(pg, no, "line too long");
		memcpy(line, text + off, n);
		line[n] = '\0';
		off += n + 1;
		if (memchr(line, '\0', n))
			return fail(pg, no, "NUL in a line");
		if (n == 0)
			continue;
		if (line[0] == '#' ? !parse_comment(pg, no, line, f, &nf)
		                   : !parse_sample(pg, no, line, f, nf, &last))
			return false;
	}
	return true;
}

/* The value of the series name{labels}; NAN when it is not on the page. */
static double
value(const struct page *pg, const char *name, const char *labels)
{
	for (size_t i = 0; i < pg->n; i++)
		if (!strcmp(pg->s[i].name, name) && !strcmp(pg->s[i].labels, labels))
			return pg->s[i].value;
	return NAN;
}

static struct page PG;

static void
render_and_parse(void)
{
	char *text;
	size_t len;

	cr_assert_eq(metrics_render(&text, &len), 0);
	bool ok = prom_parse(text, len, &PG);
	if (!ok)
		fprintf(stderr, "%.*s\n", (int)len, text);
	cr_assert(ok, "%s", PG.err);
	free(text);
}

#define expect_value(name, labels, v)                                                              \
	cr_expect_eq(value(&PG, name, labels), (double)(v), "%s{%s} = %g, not %g", name, labels,   \
	             value(&PG, name, labels), (double)(v))

/* ---- the checker catches what it must ----------------------------------------------------- */

Test(metrics, the_format_checker_refuses_broken_pages)
{
	static const char *const bad[] = {
	        "x 1",                                       /* no final newline */
	        "x 1\n",                                     /* no TYPE */
	        "# TYPE x counter\nx{a=\"b} 1\n",            /* label not closed */
	        "# TYPE x counter\nx{a=\"\\t\"} 1\n",        /* bad escape */
	        "# TYPE x counter\nx one\n",                 /* bad value */
	        "# TYPE x counter\nx 1\nx 2\n",              /* same series twice */
	        "# TYPE x counter\n# TYPE x gauge\nx 1\n",   /* second TYPE */
	        "# TYPE x counter\nx 1\n# TYPE x counter\n", /* TYPE after samples */
	        "# TYPE x counter\n# TYPE y counter\nx{a=\"1\"} 1\ny 1\nx{a=\"2\"} 1\n",
	        "# TYPE 1x counter\n1x 1\n", /* bad name */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_not(prom_parse(bad[i], strlen(bad[i]), &PG), "accepted: %s", bad[i]);
	const char *good = "# HELP x a \\\\ help\n# TYPE x counter\nx{a=\"q\\\"\\n\\\\\"} 1.5\n";
	cr_expect(prom_parse(good, strlen(good), &PG), "%s", PG.err);
	expect_value("x", "a=q\"\n\\", 1.5);
}

/* ---- the registry ------------------------------------------------------------------------- */

/* A connector named with everything a label value must escape, and a byte that is not
 * UTF-8 (which becomes U+FFFD). */
#define HOSTILE_NAME    "we\"ird\\name\nx, \xc3\xbc\xff"
#define HOSTILE_PARSED  "we\"ird\\name\nx, \xc3\xbc\xef\xbf\xbd"
#define HOSTILE_ON_PAGE "we\\\"ird\\\\name\\nx, \xc3\xbc\xef\xbf\xbd"

/* The known sequence both parsers check. */
static void
known_sequence(void)
{
	metrics_init();
	struct metrics_connector *edge = metrics_connector("edge");
	struct metrics_connector *odd = metrics_connector(HOSTILE_NAME);
	cr_assert(edge && odd);
	for (int i = 0; i < 3; i++)
		metrics_session_opened(edge);
	metrics_session_closed(edge);
	metrics_session_opened(odd);
	metrics_session_opened(NULL);
	metrics_message_queued(edge, 1000);
	metrics_message_queued(edge, 234);
	metrics_message_rejected(edge, 550);
	metrics_message_rejected(edge, 550);
	metrics_message_rejected(edge, 451);
	metrics_message_rejected(odd, 421);
	metrics_message_rejected(edge, 250); /* not a refusal: not counted */
	metrics_message_rejected(edge, 600);
	metrics_message_rejected(NULL, 550);
	metrics_refused(METRICS_REFUSED_NO_CONNECTOR);
	metrics_refused(METRICS_REFUSED_NO_CONNECTOR);
	metrics_refused(METRICS_REFUSED_SOURCE_LIMIT);
	metrics_refused(METRICS_REFUSED_FD_EXHAUSTED);
	metrics_accept_paused();
	metrics_tls_session("TLSv1.3");
	metrics_tls_session("TLSv1.3");
	metrics_tls_session("TLSv1.2");
	metrics_tls_session("SSLv3");
	metrics_tls_session(NULL);
	metrics_tls_failed();
	metrics_tls_resumed();
	metrics_commit_observe(500000);      /* 0.0005 s: le 0.001 */
	metrics_commit_observe(1000000);     /* 0.001 s exactly: le 0.001 */
	metrics_commit_observe(3000000);     /* le 0.005 */
	metrics_commit_observe(200000000);   /* le 0.25 */
	metrics_commit_observe(20000000000); /* 20 s: +Inf only */
	metrics_spool_sync_failure();
	metrics_spool_sync(METRICS_SYNC_DATA);
	metrics_spool_sync(METRICS_SYNC_DATA);
	metrics_spool_sync(METRICS_SYNC_DIRECTORY);
	metrics_spool_sync(METRICS_SYNC_N); /* out of range: ignored */
	metrics_queue_set(5);
	metrics_queue_add(-2);
	metrics_queue_oldest(1700000000.25);
	metrics_delivery(METRICS_DELIVERED);
	metrics_delivery(METRICS_DELIVERED);
	metrics_delivery(METRICS_DEFERRED);
	metrics_config_reload(true);
	metrics_config_reload(false);
	metrics_config_reload_took(0.25);
	metrics_config_reload(false);
	metrics_config_loaded(7, 1700000000.5);
	metrics_verification("ok", false);
	metrics_verification("ok", true);
	metrics_verification("ok", true);
	metrics_verification("unknown", false);
	metrics_verification("unavailable", false);
	metrics_verification("bogus", true); /* not a result: not counted */
}

Test(metrics, a_known_sequence_renders_exactly)
{
	known_sequence();
	render_and_parse();
	expect_value("mxgate_build_info", "version=" MXGATE_VERSION, 1);
	cr_expect_gt(value(&PG, "mxgate_start_time_seconds", ""), 1.6e9);
	expect_value("mxgate_config_generation", "", 7);
	expect_value("mxgate_config_load_time_seconds", "", 1700000000.5);
	expect_value("mxgate_config_reloads_total", "result=ok", 1);
	expect_value("mxgate_config_reloads_total", "result=error", 2);
	expect_value("mxgate_config_reload_duration_seconds", "", 0.25);
	expect_value("mxgate_connections_total", "connector=edge", 3);
	expect_value("mxgate_connections_total", "connector=" HOSTILE_PARSED, 1);
	expect_value("mxgate_connector_sessions_active", "connector=edge", 2);
	expect_value("mxgate_sessions_active", "", 4);
	expect_value("mxgate_messages_queued_total", "connector=edge", 2);
	expect_value("mxgate_messages_queued_total", "connector=" HOSTILE_PARSED, 0);
	expect_value("mxgate_messages_queued_bytes_total", "connector=edge", 1234);
	expect_value("mxgate_messages_rejected_total", "connector=edge|code=550", 2);
	expect_value("mxgate_messages_rejected_total", "connector=edge|code=451", 1);
	expect_value("mxgate_messages_rejected_total", "connector=" HOSTILE_PARSED "|code=421", 1);
	cr_expect(isnan(value(&PG, "mxgate_messages_rejected_total", "connector=edge|code=250")));
	expect_value("mxgate_connections_refused_total", "reason=no_connector", 2);
	expect_value("mxgate_connections_refused_total", "reason=connector_limit", 0);
	expect_value("mxgate_connections_refused_total", "reason=source_limit", 1);
	expect_value("mxgate_connections_refused_total", "reason=fd_exhausted", 1);
	expect_value("mxgate_connections_refused_total", "reason=no_memory", 0);
	expect_value("mxgate_accept_paused_total", "", 1);
	expect_value("mxgate_tls_sessions_total", "version=TLSv1.3", 2);
	expect_value("mxgate_tls_sessions_total", "version=TLSv1.2", 1);
	expect_value("mxgate_tls_sessions_total", "version=TLSv1", 0);
	expect_value("mxgate_tls_sessions_total", "version=other", 2);
	expect_value("mxgate_tls_handshake_failures_total", "", 1);
	expect_value("mxgate_tls_sessions_resumed_total", "", 1);
	expect_value("mxgate_commit_seconds_bucket", "le=0.001", 2);
	expect_value("mxgate_commit_seconds_bucket", "le=0.0025", 2);
	expect_value("mxgate_commit_seconds_bucket", "le=0.005", 3);
	expect_value("mxgate_commit_seconds_bucket", "le=0.1", 3);
	expect_value("mxgate_commit_seconds_bucket", "le=0.25", 4);
	expect_value("mxgate_commit_seconds_bucket", "le=10", 4);
	expect_value("mxgate_commit_seconds_bucket", "le=+Inf", 5);
	expect_value("mxgate_commit_seconds_count", "", 5);
	expect_value("mxgate_commit_seconds_sum", "", 20.2045);
	expect_value("mxgate_spool_sync_failures_total", "", 1);
	expect_value("mxgate_spool_syncs_total", "step=data", 2);
	expect_value("mxgate_spool_syncs_total", "step=directory", 1);
	expect_value("mxgate_spool_syncs_total", "step=barrier", 0);
	expect_value("mxgate_queue_messages", "", 3);
	expect_value("mxgate_queue_oldest_message_timestamp_seconds", "", 1700000000.25);
	expect_value("mxgate_deliveries_total", "result=delivered", 2);
	expect_value("mxgate_deliveries_total", "result=deferred", 1);
	expect_value("mxgate_deliveries_total", "result=failed", 0);
	expect_value("mxgate_protocol_log_dropped_total", "reason=queue_full", 0);
	expect_value("mxgate_protocol_log_dropped_total", "reason=write_error", 0);
	expect_value("mxgate_recipient_verifications_total", "result=ok|cache=miss", 1);
	expect_value("mxgate_recipient_verifications_total", "result=ok|cache=hit", 2);
	expect_value("mxgate_recipient_verifications_total", "result=unknown|cache=miss", 1);
	expect_value("mxgate_recipient_verifications_total", "result=unknown|cache=hit", 0);
	expect_value("mxgate_recipient_verifications_total", "result=unavailable|cache=miss", 1);
	expect_value("mxgate_recipient_verifications_total", "result=unavailable|cache=hit", 0);
	cr_expect_gt(value(&PG, "process_open_fds", ""), 2);
	cr_expect_gt(value(&PG, "process_max_fds", ""), 2);
	cr_expect_gt(value(&PG, "process_resident_memory_bytes", ""), 0);
	cr_expect(!isnan(value(&PG, "process_cpu_seconds_total", "")));
}

Test(metrics, label_values_are_escaped_on_the_page)
{
	char *text;
	size_t len;

	metrics_connector(HOSTILE_NAME);
	cr_assert_eq(metrics_render(&text, &len), 0);
	char *page = strndup(text, len);
	free(text);
	cr_expect_not_null(
	        strstr(page, "mxgate_connections_total{connector=\"" HOSTILE_ON_PAGE "\"} 0\n"),
	        "%s", page);
	cr_expect_null(strstr(page, "\xff"), "a byte that is not UTF-8 reached the page");
	free(page);
}

Test(metrics, prometheus_client_parses_the_page_to_the_same_values)
{
	char path[] = "/tmp/mxgate-metrics-XXXXXX", cmd[4096], out[4096] = "";
	char *text;
	size_t len;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	known_sequence();
	cr_assert_eq(metrics_render(&text, &len), 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	free(text);
	/* every value the known sequence sets, read by the reference parser */
	snprintf(cmd, sizeof(cmd),
	         "/usr/bin/python3 - '%s' 2>&1 <<'EOF'\n"
	         "import sys\n"
	         "from prometheus_client.parser import text_string_to_metric_families as p\n"
	         "got = {}\n"
	         "for f in p(open(sys.argv[1], encoding='utf-8').read()):\n"
	         "    for s in f.samples:\n"
	         "        got[(s.name, tuple(sorted(s.labels.items())))] = s.value\n"
	         "odd = 'we\"ird\\\\name\\nx, \\u00fc\\ufffd'\n"
	         "want = {\n"
	         " ('mxgate_connections_total', (('connector', 'edge'),)): 3,\n"
	         " ('mxgate_connections_total', (('connector', odd),)): 1,\n"
	         " ('mxgate_messages_rejected_total', (('code', '421'), ('connector', odd))): 1,\n"
	         " ('mxgate_messages_rejected_total', (('code', '550'), ('connector', 'edge'))): "
	         "2,\n"
	         " ('mxgate_commit_seconds_bucket', (('le', '0.005'),)): 3,\n"
	         " ('mxgate_commit_seconds_count', ()): 5,\n"
	         " ('mxgate_config_reloads_total', (('result', 'error'),)): 2,\n"
	         " ('mxgate_queue_messages', ()): 3,\n"
	         " ('mxgate_tls_sessions_total', (('version', 'other'),)): 2,\n"
	         "}\n"
	         "bad = [(k, v, got.get(k)) for k, v in want.items() if got.get(k) != v]\n"
	         "print('ok %%d samples' %% len(got) if not bad else 'mismatch %%r' %% bad)\n"
	         "EOF",
	         path);
	FILE *fp = popen(cmd, "r");
	cr_assert_not_null(fp);
	size_t n = fread(out, 1, sizeof(out) - 1, fp);
	out[n] = '\0';
	int rc = pclose(fp);
	unlink(path);
	cr_assert_eq(rc, 0, "python3: %s", out);
	cr_expect_eq(strncmp(out, "ok ", 3), 0, "%s", out);
}

Test(metrics, a_name_gives_one_handle_and_the_registry_is_bounded)
{
	char name[32];

	struct metrics_connector *a = metrics_connector("a");
	cr_assert_not_null(a);
	cr_expect_eq(metrics_connector("a"), a);
	cr_expect_neq(metrics_connector("b"), a);
	for (int i = 2; i < METRICS_MAX_CONNECTORS; i++) {
		snprintf(name, sizeof(name), "c%d", i);
		cr_assert_not_null(metrics_connector(name), "%s", name);
	}
	errno = 0;
	cr_expect_null(metrics_connector("one too many"));
	cr_expect_eq(errno, ENOSPC);
	cr_expect_eq(metrics_connector("a"), a, "known names still resolve when full");
	metrics_shutdown();
}

/* The hot path takes no lock, and loses no update: threads hammering the same handle and
 * the same histogram end on the exact totals. */
#define THREADS 4
#define ROUNDS  50000

static void *
hammer(void *arg)
{
	struct metrics_connector *c = arg;

	for (int i = 0; i < ROUNDS; i++) {
		metrics_session_opened(c);
		metrics_message_queued(c, 10);
		metrics_message_rejected(c, 550);
		metrics_commit_observe((uint64_t)(i % 3) * 1000000u);
		metrics_session_closed(c);
	}
	return NULL;
}

Test(metrics, concurrent_updates_add_up_exactly)
{
	pthread_t t[THREADS];
	struct metrics_connector *c = metrics_connector("busy");

	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer, c), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	render_and_parse();
	expect_value("mxgate_connections_total", "connector=busy", THREADS * ROUNDS);
	expect_value("mxgate_connector_sessions_active", "connector=busy", 0);
	expect_value("mxgate_sessions_active", "", 0);
	expect_value("mxgate_messages_queued_bytes_total", "connector=busy", 10 * THREADS * ROUNDS);
	expect_value("mxgate_messages_rejected_total", "connector=busy|code=550", THREADS * ROUNDS);
	expect_value("mxgate_commit_seconds_count", "", THREADS * ROUNDS);
	/* i % 3 == 0 (0 s) and == 1 (0.001 s) land in le=0.001: ROUNDS = 3k + 2 per thread */
	expect_value("mxgate_commit_seconds_bucket", "le=0.001",
	             THREADS * ((ROUNDS / 3) * 2 + (ROUNDS % 3 >= 1) + (ROUNDS % 3 >= 2)));
}

/* ---- the HTTP endpoint -------------------------------------------------------------------- */

struct reply {
	int status;
	char headers[2048];
	char *body;
	size_t body_len;
};

/* Sends req to 127.0.0.1:port on a plain socket and reads the reply to EOF. */
static void
http(uint16_t port, const char *req, size_t req_len, struct reply *r)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {30, 0}; /* a hang fails the test instead of stalling the suite */
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "%s", strerror(errno));
	cr_assert_eq(send(fd, req, req_len, MSG_NOSIGNAL), (ssize_t)req_len);
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap * 2 + 8192;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
		if (k < 0 && errno == ECONNRESET)
			break;
		cr_assert_geq(k, 0, "recv: %s", strerror(errno));
		if (k == 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	buf[len] = '\0';
	memset(r, 0, sizeof(*r));
	r->status = -1;
	char *end = strstr(buf, "\r\n\r\n");
	if (len && sscanf(buf, "HTTP/1.%*d %d", &r->status) == 1 && end) {
		snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(end - buf), buf);
		r->body_len = len - (size_t)(end + 4 - buf);
		r->body = malloc(r->body_len + 1);
		memcpy(r->body, end + 4, r->body_len);
		r->body[r->body_len] = '\0';
	}
	free(buf);
}

static struct metrics_http *
serve(void)
{
	struct endpoint ep = {.port = 0};
	char err[256] = "";

	cr_assert_eq(endpoint_parse("127.0.0.1:1", &ep, err, sizeof(err)), 0);
	ep.port = 0; /* the kernel picks */
	int fd = metrics_http_listen_ep(&ep, err, sizeof(err));
	cr_assert_geq(fd, 0, "%s", err);
	struct metrics_http *h = metrics_http_start(fd, err, sizeof(err));
	cr_assert_not_null(h, "%s", err);
	cr_assert_gt(metrics_http_port(h), 0);
	return h;
}

#define GET(h, req, r) http(metrics_http_port(h), req, strlen(req), r)

Test(metrics_http, get_metrics_serves_the_page)
{
	struct metrics_http *h = serve();
	struct reply r;

	metrics_refused(METRICS_REFUSED_CONNECTOR_LIMIT);
	metrics_session_opened(metrics_connector("edge, \"one\""));
	GET(h, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n", &r);
	cr_assert_eq(r.status, 200, "%s", r.headers);
	cr_expect_not_null(strcasestr(r.headers, "\r\nContent-Type: " METRICS_CONTENT_TYPE));
	cr_assert(prom_parse(r.body, r.body_len, &PG), "%s", PG.err);
	expect_value("mxgate_connections_refused_total", "reason=connector_limit", 1);
	expect_value("mxgate_connections_total", "connector=edge, \"one\"", 1);
	free(r.body);
	/* HTTP/1.1 and a query string: the same page */
	GET(h, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
	cr_expect_eq(r.status, 200);
	cr_expect(prom_parse(r.body, r.body_len, &PG), "%s", PG.err);
	free(r.body);
	/* HEAD: the headers, with the page's length, and no body */
	GET(h, "HEAD /metrics HTTP/1.0\r\n\r\n", &r);
	cr_expect_eq(r.status, 200);
	cr_expect_eq(r.body_len, 0);
	cr_expect_not_null(strcasestr(r.headers, "\r\nContent-Length: "), "%s", r.headers);
	cr_expect_null(strcasestr(r.headers, "\r\nContent-Length: 0\r"), "%s", r.headers);
	free(r.body);
	metrics_http_stop(h);
}

Test(metrics_http, other_paths_are_404_and_other_methods_405)
{
	struct metrics_http *h = serve();
	struct reply r;

	GET(h, "GET / HTTP/1.0\r\n\r\n", &r);
	cr_expect_eq(r.status, 404);
	free(r.body);
	GET(h, "GET /metrics/x HTTP/1.0\r\n\r\n", &r);
	cr_expect_eq(r.status, 404);
	free(r.body);
	static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char req[128];
		snprintf(req, sizeof(req), "%s /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		         methods[i]);
		GET(h, req, &r);
		cr_expect_eq(r.status, 405, "%s: %d", methods[i], r.status);
		cr_expect_not_null(strcasestr(r.headers, "\r\nAllow: GET, HEAD"), "%s", r.headers);
		free(r.body);
	}
	metrics_http_stop(h);
}

Test(metrics_http, oversized_requests_are_refused)
{
	struct metrics_http *h = serve();
	struct reply r;
	size_t big = METRICS_HTTP_MAX_HEADERS + 1024;
	char *req = malloc(big + 64);

	int n = snprintf(req, 64, "GET /metrics HTTP/1.0\r\nX-Pad: ");
	memset(req + n, 'a', big);
	memcpy(req + n + big, "\r\n\r\n", 4);
	http(metrics_http_port(h), req, (size_t)n + big + 4, &r);
	cr_expect_neq(r.status, 200, "headers past the limit were served");
	free(r.body);
	n = snprintf(req, 128, "GET /metrics HTTP/1.0\r\nContent-Length: %d\r\n\r\n",
	             METRICS_HTTP_MAX_BODY + 1);
	memset(req + n, 'b', METRICS_HTTP_MAX_BODY + 1);
	http(metrics_http_port(h), req, (size_t)n + METRICS_HTTP_MAX_BODY + 1, &r);
	cr_expect_eq(r.status, 413, "a body past the limit: %d", r.status);
	free(r.body);
	free(req);
	metrics_http_stop(h);
}

/* A scraper that sends half a request and waits holds its connection, not the server. */
Test(metrics_http, a_stalled_client_does_not_hold_up_another)
{
	struct metrics_http *h = serve();
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(metrics_http_port(h)),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct reply r;
	int slow = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(connect(slow, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_gt(send(slow, "GET /met", 8, 0), 0);
	GET(h, "GET /metrics HTTP/1.0\r\n\r\n", &r);
	cr_expect_eq(r.status, 200);
	free(r.body);
	close(slow);
	metrics_http_stop(h);
}

Test(metrics_http, stop_closes_the_socket)
{
	struct metrics_http *h = serve();
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(metrics_http_port(h)),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	metrics_http_stop(h);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_expect_neq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_expect_eq(errno, ECONNREFUSED);
	close(fd);
	metrics_http_stop(NULL);
}

Test(metrics_http, listen_errors_name_the_address_and_the_reason)
{
	char err[256] = "";
	struct metrics_http *h = serve();
	char addr[64];

	cr_expect_eq(metrics_http_listen("127.0.0.1", err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, "metrics-listen \"127.0.0.1\""), "%s", err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", metrics_http_port(h));
	cr_expect_eq(metrics_http_listen(addr, err, sizeof(err)), -1);
	cr_expect_not_null(strstr(err, addr), "%s", err);
	cr_expect_not_null(strstr(err, strerror(EADDRINUSE)), "%s", err);
	metrics_http_stop(h);
}
