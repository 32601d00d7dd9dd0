#include "smtpd/session.h"

#include <errno.h>
#include <event2/event.h>
/* embedded struct event: one allocation per session instead of six */
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/vec.h"
#include "conf/config.h"
#include "net/conn.h"
#include "net/dns.h"
#include "net/tls.h"
#include "obs/metrics.h"
#include "obs/protolog.h"
#include "smtpd/policy.h"
#include "smtpd/smtp.h"

/* Replies a client has not read.  Past the high-water mark the session stops reading and
 * stops running commands (each command can only add one reply, of at most the core's 4 KiB
 * text arena) until the client has read the backlog down to the low-water mark: a client
 * that pipelines without reading costs at most OUT_HIGH_WATER plus one reply, as with
 * Postfix's and nginx's blocked writes.  OUT_CAP is the hard bound whatever path appends
 * (none of today's can pass it: it stands behind the marks): past it the session closes
 * with 421.  Replies leave in batches of OUT_BATCH (one send for
 * a pipelined group, RFC 2920 §3.2), which also keeps a reading client's buffer small. */
#define OUT_BATCH      (2 * 1024)
#define OUT_HIGH_WATER (16 * 1024)
#define OUT_LOW_WATER  (4 * 1024)
#define OUT_CAP        (64 * 1024)

struct session {
	struct session_host *h;
	struct config *cfg;
	const struct connector *k;
	struct tls_ctx *tls;
	struct conn c;
	struct smtp *smtp;
	/* the socket: one event, registered for what read_on and write_on ask (io_flags) */
	struct event ev_io;
	bool read_on, write_on;
	short io_flags;
	/* One timer serves four deadlines (CLOCK_MONOTONIC ms, 0: off): connection-timeout
	 * (life), connection-inactivity-timeout while waiting for a command (idle) or for the
	 * client to read (stall), and a tarpitted reply.  timer_arm() keeps ev_timer at the
	 * earliest; a deadline moved later or taken off is found at the next expiry (armed_at),
	 * so reading a command costs no event_del/event_add. */
	struct event ev_timer;
	uint64_t armed_at, life_at, idle_at, stall_at, tarpit_at;
	char id[20];
	struct ipaddr remote;
	struct endpoint local;
	struct log_ctx lc;
	struct protolog_session
	        *pl; /* the protocol log's rows; NULL when the connector logs none */

	char *out;
	size_t out_len, out_cap, out_off;
	bool out_paused, out_warned; /* backpressure (OUT_HIGH_WATER) */
	char *tarpit_text;           /* a delayed reply: one reply, at most the core's arena */
	size_t tarpit_len;
	bool tarpit_wait, closing, closed, handshake, commit_pending, zombie, eof;
	bool verify_pending; /* a probe thread holds verify: free on its answer */

	struct spool_msg *msg;
	char msg_id[SPOOL_ID_LEN + 1];
	bool maildir_prefix;
	uint64_t added; /* bytes mxgate put before the client's text: its Received: header */
	/* once STARTTLS completed, for the log: libssl's own constant names, which outlive the
	 * connection (a client may be gone before its message is committed) */
	const char *tls_protocol, *tls_cipher;
	struct timespec data_end; /* CLOCK_MONOTONIC at the end of data */
	unsigned messages;
	struct session *prev, *next;
	/* the spool's answer travels in this item: posting it can never fail for lack of
	 * memory (a session has at most one commit under way) */
	struct inbox_item commit_it;

	/* remote-hostname-suffixes: the check starts at connect, MAIL waits for it */
	struct dns_check *dns_pending; /* under way */
	struct dns_fcrdns *fcrdns;     /* its result once fcrdns_known */
	bool fcrdns_known, fcrdns_waiting, fcrdns_counted;
	const char *fcrdns_name; /* the confirmed name, for Received: (in fcrdns), or NULL */
	/* a recipient probe (verify.h), from the RCPT that asks until its verdict is taken */
	struct session_verify *verify;
	/* allocated with the session, to their length: "ip", then "[ip]:port" and for a
	 * balancer's client " via=[b]:port" (the log's client=) */
	char *client_ip, *client;
	char names[];
};

/* A probe's request and the item its answer comes back in (allocated for the probe: an
 * idle session holds none of its 1 KiB). */
struct session_verify {
	struct verify_req req;
	struct inbox_item it;
};

static void session_run(struct session *s);
static void session_free(struct session *s);

/* -- output -- */

static size_t
out_pending(const struct session *s)
{
	return s->out_len - s->out_off;
}

/* Queues reply text.  Returns 0, or -1 with errno ENOBUFS past OUT_CAP (unless force:
 * the closing 421 itself) or ENOMEM. */
static int
out_append(struct session *s, const char *text, size_t len, bool force)
{
	if (!force && out_pending(s) + len > OUT_CAP) {
		errno = ENOBUFS;
		return -1;
	}
	if (s->out_off > 0 && s->out_len + len > s->out_cap) {
		/* reuse what the client has read before growing */
		memmove(s->out, s->out + s->out_off, out_pending(s));
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	if (!s->out && s->out_len + len <= SESSION_OUT_BUF) {
		/* the usual case: a buffer from the worker's pool, given back once sent */
		struct session_host *h = s->h;
		s->out = h->n_out_pool ? h->out_pool[--h->n_out_pool] : malloc(SESSION_OUT_BUF);
		if (!s->out)
			return -1;
		s->out_cap = SESSION_OUT_BUF;
	}
	if (VEC_RESERVE(s->out, s->out_cap, s->out_len + len) < 0)
		return -1;
	memcpy(s->out + s->out_len, text, len);
	s->out_len += len;
	return 0;
}

static void io_cb(evutil_socket_t fd, short what, void *arg);

/* Registers ev_io for what read_on and write_on ask, when that changed. */
static void
io_update(struct session *s)
{
	short want = (short)((s->read_on ? EV_READ : 0) | (s->write_on ? EV_WRITE : 0));

	if (want == s->io_flags)
		return;
	event_del(&s->ev_io); /* registered, or made active by hand (session_run) */
	s->io_flags = want;
	if (!want)
		return;
	event_assign(&s->ev_io, s->h->base, s->c.fd, want | EV_PERSIST, io_cb, s);
	event_add(&s->ev_io, NULL);
}

static void
want_write(struct session *s, bool on)
{
	s->write_on = on;
	io_update(s);
}

static void
want_read(struct session *s, bool on)
{
	s->read_on = on;
	io_update(s);
}

/* Arms ev_timer at the earliest deadline when it is not armed at or before it already. */
static void
timer_arm(struct session *s)
{
	uint64_t next = 0;
	const uint64_t at[] = {s->life_at, s->idle_at, s->stall_at, s->tarpit_at};

	if (s->closed)
		return;
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		if (at[i] && (!next || at[i] < next))
			next = at[i];
	if (!next || (s->armed_at && s->armed_at <= next))
		return;
	uint64_t now = clock_mono_ms(), ms = next > now ? next - now : 0;
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000 * 1000)};
	event_add(&s->ev_timer, &tv);
	s->armed_at = next;
}

/* Sets one deadline ms from now (on), or takes it off. */
static void
deadline(struct session *s, uint64_t *at, bool on, uint64_t ms)
{
	*at = on ? clock_mono_ms() + ms : 0;
	if (on)
		timer_arm(s);
}

static void
idle_timer(struct session *s, bool on)
{
	deadline(s, &s->idle_at, on, s->k->connection_inactivity_timeout_ms);
}

/* Armed while replies wait for a client that does not read them, and restarted by every
 * byte it takes: after connection-inactivity-timeout without progress the session ends
 * (stall_cb).  The idle timer cannot do this: its goodbye would wait behind the backlog. */
static void
stall_timer(struct session *s, bool on)
{
	deadline(s, &s->stall_at, on, s->k->connection_inactivity_timeout_ms);
}

/* The output buffer, all sent, goes back to the worker's pool (or to malloc when it grew
 * or the pool is full): an idle session holds none. */
static void
out_give_back(struct session *s)
{
	struct session_host *h = s->h;

	if (s->out && s->out_cap == SESSION_OUT_BUF && h->n_out_pool < SESSION_OUT_POOL)
		h->out_pool[h->n_out_pool++] = s->out;
	else
		free(s->out);
	s->out = NULL;
	s->out_cap = 0;
}

/* Sends what is buffered.  Returns 1 when all is sent, 0 when the socket is full, -1 on
 * a broken connection. */
static int
flush_out(struct session *s)
{
	bool moved = false;

	while (s->out_off < s->out_len) {
		ssize_t n = s->c.write(&s->c, s->out + s->out_off, s->out_len - s->out_off);
		if (n < 0 && errno == EAGAIN) {
			/* a TLS write may need the socket readable; both wake us */
			want_write(s, s->c.want == CONN_WANT_WRITE);
			if (s->c.want == CONN_WANT_READ)
				want_read(s, true);
			if (moved || !s->stall_at)
				stall_timer(s, true);
			return 0;
		}
		if (n <= 0)
			return -1;
		s->out_off += (size_t)n;
		moved = true;
	}
	s->out_off = s->out_len = 0;
	out_give_back(s);
	want_write(s, false);
	stall_timer(s, false);
	return 1;
}

/* Backpressure: 1 when the session must wait for the client to read its replies (reading
 * and commands stop), 0 to go on, -1 on a broken connection. */
static int
out_backpressure(struct session *s)
{
	size_t mark = s->out_paused ? OUT_LOW_WATER : OUT_HIGH_WATER;

	/* write_on: the socket was full at the last try; write_cb says when it drains */
	if (out_pending(s) >= OUT_BATCH && !s->write_on && flush_out(s) < 0)
		return -1;
	if (out_pending(s) < mark) {
		s->out_paused = false;
		return 0;
	}
	if (!s->out_paused && !s->out_warned) {
		log_session(&s->lc, LOG_LVL_INFO,
		            "client does not read its replies: %zu bytes unsent; reading paused "
		            "until it does (connection-inactivity-timeout ends the wait)",
		            out_pending(s));
		s->out_warned = true;
	}
	s->out_paused = true;
	/* the stall timer (armed by flush_out) takes over from the idle timer */
	idle_timer(s, false);
	want_read(s, s->c.want == CONN_WANT_READ);
	return 1;
}

/* -- closing -- */

static void
session_close(struct session *s, const char *why)
{
	if (s->closed)
		return;
	s->closed = true;
	if (why)
		log_session(&s->lc, LOG_LVL_INFO, "closed: %s (%u message%s)", why, s->messages,
		            s->messages == 1 ? "" : "s");
	protolog_disconnect(s->pl, s->eof);
	if (s->msg && !s->commit_pending) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
	}
	want_read(s, false);
	want_write(s, false);
	event_del(&s->ev_timer);
	s->armed_at = s->life_at = s->idle_at = s->stall_at = s->tarpit_at = 0;
	conn_release(&s->c);
	if (s->c.fd >= 0)
		close(s->c.fd);
	s->c.fd = -1;
	if (s->commit_pending || s->verify_pending) {
		/* the spool or a probe thread still answers: free on its callback */
		s->zombie = true;
		return;
	}
	session_free(s);
}

/* A reply could not be queued (errno from out_append): past OUT_CAP the client is told
 * why, behind what it has not read, and the session ends. */
static void
out_failed(struct session *s)
{
	static const char bye[] = "421 4.3.2 Too much unread output, closing transmission "
	                          "channel\r\n";
	char why[160];

	if (errno != ENOBUFS) {
		session_close(s, "out of memory");
		return;
	}
	log_session(&s->lc, LOG_LVL_WARNING,
	            "client does not read its replies: %zu bytes unsent, past the cap of %u; "
	            "replied 421 4.3.2",
	            out_pending(s), (unsigned)OUT_CAP);
	snprintf(why, sizeof(why), "%u bytes of unread replies", (unsigned)OUT_CAP);
	if (out_append(s, bye, sizeof(bye) - 1, true) == 0) {
		protolog_reply(s->pl, bye, sizeof(bye) - 1);
		(void)flush_out(s);
	}
	session_close(s, why);
}

static void
session_free(struct session *s)
{
	struct session_host *h = s->h;

	if (s->prev)
		s->prev->next = s->next;
	else
		h->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	admission_release(h->adm, s->k->name, &s->remote);
	metrics_session_closed(s->k->metrics);
	dns_cancel(s->dns_pending);
	free(s->fcrdns);
	if (s->smtp) {
		const struct smtp_stats *st = smtp_stats(s->smtp);
		metrics_bdat(st->bdat_chunks, st->bdat_bytes);
		metrics_bare_line_ends(st->bare_refused, st->bare_normalized);
		if (st->bare_normalized)
			log_session(
			        &s->lc, LOG_LVL_INFO,
			        "%llu bare LF line ends taken as CRLF (bare-line-feed = normalize)",
			        (unsigned long long)st->bare_normalized);
	}
	smtp_free(s->smtp);
	tls_ctx_unref(s->tls);
	config_unref(s->cfg);
	out_give_back(s);
	free(s->tarpit_text);
	free(s->pl);
	free(s->verify);
	free(s);
	atomic_fetch_sub(&h->n_sessions, 1);
	atomic_fetch_sub(h->handed_off, 1);
}

/* -- the message -- */

static void
rfc5322_date(char *buf, size_t size)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(buf, size, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

static bool
begin_message(struct session *s)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);
	char date[64], hdr[2048], tlsinfo[160] = "";
	int n;

	s->msg = spool_msg_new(s->h->spool);
	if (!s->msg) {
		log_session(&s->lc, LOG_LVL_ERROR, "cannot start a message in the spool: %s",
		            strerror(errno));
		return false;
	}
	memcpy(s->msg_id, spool_msg_id(s->msg), SPOOL_ID_LEN + 1);
	rfc5322_date(date, sizeof(date));
	if (smtp_in_tls(s->smtp))
		snprintf(tlsinfo, sizeof(tlsinfo), "\r\n\t(using %s with cipher %s (%d/%d bits))",
		         tls_version(s->c.tls), tls_cipher(s->c.tls), tls_cipher_bits(s->c.tls),
		         tls_cipher_bits(s->c.tls));
	const char *proto = env->smtputf8 ? (smtp_in_tls(s->smtp) ? "UTF8SMTPS" : "UTF8SMTP")
	                    : smtp_esmtp(s->smtp) ? (smtp_in_tls(s->smtp) ? "ESMTPS" : "ESMTP")
	                                          : "SMTP";
	/* Maildir delivery keeps the envelope sender in the message (RFC 5321 §4.4) */
	s->maildir_prefix = s->cfg->relay == NULL;
	size_t prefix = 0;
	if (s->maildir_prefix) {
		n = snprintf(hdr, sizeof(hdr), "Return-Path: <%s>\r\n", env->mail_from);
		if (n > 0 && (size_t)n < sizeof(hdr)) {
			spool_msg_write(s->msg, hdr, (size_t)n);
			prefix = (size_t)n;
		}
	}
	n = snprintf(hdr, sizeof(hdr),
	             "Received: from %s (%s%s[%s])\r\n\tby %s (mxgate, connector \"%s\") with %s "
	             "id %s%s%s%s%s;"
	             "\r\n\t%s\r\n",
	             env->helo, s->fcrdns_name ? s->fcrdns_name : "", s->fcrdns_name ? " " : "",
	             s->client_ip, s->k->fqdn, s->k->name, proto, s->msg_id, tlsinfo,
	             env->n_rcpts == 1 ? "\r\n\tfor <" : "",
	             env->n_rcpts == 1 ? env->rcpts[0].addr : "", env->n_rcpts == 1 ? ">" : "",
	             date);
	s->added = 0;
	if (n > 0 && (size_t)n < sizeof(hdr)) {
		spool_msg_write(s->msg, hdr, (size_t)n);
		s->added = (uint64_t)n;
	}
	spool_msg_set_prefix(s->msg, prefix);
	return true;
}

static void
committed_cb(void *arg, int err)
{
	struct session *s = arg;

	s->commit_it = (struct inbox_item){.kind = IN_COMMITTED, .sess = s, .err = err};
	inbox_post(s->h->inbox, &s->commit_it);
}

static void
end_message(struct session *s)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);
	struct spool_entry e = {0};
	char *rcpts[1];
	char **list = env->n_rcpts <= 1 ? rcpts : calloc(env->n_rcpts, sizeof(char *));

	clock_gettime(CLOCK_MONOTONIC, &s->data_end);
	if (!list) {
		smtp_msg_committed(s->smtp, false, NULL);
		spool_msg_abort(s->msg);
		s->msg = NULL;
		return;
	}
	for (size_t i = 0; i < env->n_rcpts; i++)
		list[i] = env->rcpts[i].addr;
	e.received = time(NULL);
	e.sender = (char *)(uintptr_t)env->mail_from;
	e.rcpts = list;
	e.n_rcpts = env->n_rcpts;
	e.connector = s->k->name;
	e.client = s->client_ip;
	e.helo = (char *)(uintptr_t)env->helo;
	e.smtputf8 = env->smtputf8;
	e.body_8bit = env->body_8bit;
	s->commit_pending = true;
	spool_msg_commit(s->msg, &e, committed_cb, s);
	s->msg = NULL;
	if (list != rcpts)
		free(list);
}

/* The message tracking line of an accepted message, once it is on disk (Postfix's
 * cleanup and qmgr lines in one): the session prefix names the client and connector. */
static void
log_accepted(struct session *s, uint64_t size)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);

	log_session(&s->lc, LOG_LVL_INFO,
	            "message %s queued: from=<%s>, size=%llu, nrcpt=%zu, message-id=%s, "
	            "helo=%s, tls=%s%s%s",
	            s->msg_id, env->mail_from, (unsigned long long)size, env->n_rcpts,
	            env->message_id && env->message_id[0] ? env->message_id : "none", env->helo,
	            s->tls_protocol ? s->tls_protocol : "no", s->tls_protocol ? " " : "",
	            s->tls_protocol ? s->tls_cipher : "");
}

void
session_committed(struct session *s, int err)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);

	s->commit_pending = false;
	if (s->zombie) {
		if (!err) /* queued all the same: it is delivered */
			log_accepted(s, env->size + s->added);
		log_session(&s->lc, LOG_LVL_INFO, "message %s %s after the client left", s->msg_id,
		            err ? "failed" : "committed");
		session_free(s);
		return;
	}
	if (err) {
		log_session(&s->lc, LOG_LVL_ERROR,
		            "message %s from <%s> not queued: %s; replied 452 4.3.1", s->msg_id,
		            env->mail_from, strerror(err));
		protolog_infof(s->pl, "not queued", "%s %s", s->msg_id, strerror(err));
	} else {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t ns = (int64_t)(now.tv_sec - s->data_end.tv_sec) * 1000000000 +
		             (now.tv_nsec - s->data_end.tv_nsec);
		metrics_commit_observe(ns > 0 ? (uint64_t)ns : 0);
		/* the message's size, the same number in every log line, the queue list and
		 * the relayed bytes: as stored, with mxgate's Received: header, without the
		 * Return-Path line a Maildir delivery adds */
		uint64_t size = env->size + s->added;
		metrics_message_queued(s->k->metrics, size);
		s->messages++;
		log_accepted(s, size);
		protolog_infof(s->pl, "queued", "%s %llu", s->msg_id, (unsigned long long)size);
	}
	smtp_msg_committed(s->smtp, err == 0, s->msg_id);
	session_run(s);
}

/* -- recipient verification -- */

/* On a probe thread: only hand the answer to the session's worker. */
static void
verify_done_cb(struct verify_req *r)
{
	struct session *s = r->arg;

	s->verify->it = (struct inbox_item){.kind = IN_VERIFIED, .sess = s};
	inbox_post(s->h->inbox, &s->verify->it);
}

/* The verdict in s->verify: logged, counted and given to the core; then the request goes. */
static void
verify_finish(struct session *s)
{
	const struct verify_req *r = &s->verify->req;
	const char *cache = r->cached ? "cached" : r->skipped ? "next hop marked down" : "probed";
	bool accept = s->k->verify_unavailable == VERIFY_UNAVAILABLE_ACCEPT;

	metrics_verification(verify_verdict_name(r->verdict), r->cached);
	protolog_infof(s->pl, "verify", "<%s> %s", r->addr, verify_verdict_name(r->verdict));
	switch (r->verdict) {
	case VERIFY_OK:
		log_session(&s->lc, LOG_LVL_INFO, "recipient <%s> verified at the next hop (%s)",
		            r->addr, cache);
		smtp_rcpt_verified(s->smtp, SMTP_VERIFY_OK, NULL);
		break;
	case VERIFY_UNKNOWN:
		log_session(&s->lc, LOG_LVL_INFO,
		            "recipient <%s> unknown at the next hop (%s): %d %s; replied 550 5.1.1",
		            r->addr, cache, r->code, r->text);
		smtp_rcpt_verified(s->smtp, SMTP_VERIFY_UNKNOWN, r->text);
		break;
	case VERIFY_UNAVAILABLE:
		log_session(&s->lc, LOG_LVL_WARNING,
		            "recipient <%s> not verified, the next hop is unavailable (%s): %s; %s",
		            r->addr, cache, r->text,
		            accept ? "accepted unverified (verify-unavailable = accept)"
		                   : "replied 450 4.4.3 (verify-unavailable = defer); check the "
		                     "relay host and verify-timeout");
		smtp_rcpt_verified(s->smtp, accept ? SMTP_VERIFY_OK : SMTP_VERIFY_UNAVAILABLE,
		                   NULL);
		break;
	}
	free(s->verify);
	s->verify = NULL;
}

/* SMTP_RCPT_VERIFY: from the cache now, else a probe thread answers (session_verified). */
static void
verify_begin(struct session *s, const struct smtp_action *a)
{
	if (!s->h->verify || !s->cfg->relay) {
		smtp_rcpt_verified(s->smtp, SMTP_VERIFY_OK, NULL); /* policy.c prevents it */
		return;
	}
	if (!s->verify && !(s->verify = malloc(sizeof(*s->verify)))) {
		log_session(&s->lc, LOG_LVL_WARNING,
		            "recipient <%.*s> not verified: out of memory; replied 450 4.4.3",
		            (int)a->len, a->text);
		smtp_rcpt_verified(s->smtp, SMTP_VERIFY_UNAVAILABLE, NULL);
		return;
	}
	struct verify_req *r = &s->verify->req;
	*r = (struct verify_req){.cfg = s->cfg, .done_cb = verify_done_cb, .arg = s};
	snprintf(r->addr, sizeof(r->addr), "%.*s", (int)a->len, a->text);
	if (verify_lookup(s->h->verify, r)) {
		verify_finish(s);
		return;
	}
	s->verify_pending = true;
	verify_submit(s->h->verify, r);
}

void
session_verified(struct session *s)
{
	s->verify_pending = false;
	if (s->zombie) {
		session_free(s);
		return;
	}
	verify_finish(s);
	session_run(s);
}

/* -- TLS -- */

/* What to do about each verdict, for the log line. */
static const char *const cert_advice[TLS_PEER_VERDICT_N] = {
        "MAIL is accepted", "MAIL is refused: the sender must present a certificate for that name",
        "MAIL is refused: if the sender is the provider, add its CA to tls { client-ca-file }",
        "MAIL is refused: the sender must renew its certificate (or fix its clock)",
        "MAIL is refused: the certificate is not for that name (another tenant?)"};
static const char *const cert_word[TLS_PEER_VERDICT_N] = {"ok", "none", "untrusted", "expired",
                                                          "mismatch"};

/* tls-sender-certificate-name: the verdict on the client's certificate, for the core (the
 * MAIL reply), the log, the protocol log and the metrics. */
static void
judge_client_cert(struct session *s)
{
	const char *want = s->k->tls_sender_certificate_name;
	struct tls_peer p;
	char refusal[400] = "";

	if (!want)
		return;
	enum tls_peer_verdict v = tls_peer_check(s->c.tls, want, &p);
	if (v == TLS_PEER_NONE)
		snprintf(refusal, sizeof(refusal),
		         "530 5.7.1 Client was not authenticated: no client certificate was "
		         "presented");
	else if (v == TLS_PEER_UNTRUSTED || v == TLS_PEER_EXPIRED)
		snprintf(refusal, sizeof(refusal), "550 5.7.1 Client certificate not trusted: %s",
		         p.reason);
	else if (v == TLS_PEER_MISMATCH)
		snprintf(refusal, sizeof(refusal),
		         "550 5.7.1 Client certificate name mismatch: presented %s",
		         p.names[0] ? p.names : "no DNS name");
	smtp_tls_peer(s->smtp, v == TLS_PEER_OK ? NULL : refusal);
	metrics_client_certificate(s->k->metrics, (int)v);
	if (v == TLS_PEER_NONE) {
		log_session(&s->lc, LOG_LVL_INFO,
		            "client certificate: none presented, tls-sender-certificate-name %s "
		            "wants one: %s",
		            want, cert_advice[v]);
		protolog_infof(s->pl, "TLS", "client certificate: none; verdict=none");
		return;
	}
	log_session(&s->lc, v == TLS_PEER_OK ? LOG_LVL_INFO : LOG_LVL_WARNING,
	            "client certificate: subject \"%s\", issuer \"%s\", sha256 %s, names %s; "
	            "verdict %s%s%s%s for tls-sender-certificate-name %s: %s",
	            p.subject, p.issuer, p.sha256, p.names, cert_word[v], p.reason[0] ? " (" : "",
	            p.reason, p.reason[0] ? ")" : "", want, cert_advice[v]);
	protolog_infof(s->pl, "TLS",
	               "client certificate: subject=%s; issuer=%s; sha256=%s; names=%s; "
	               "verdict=%s%s%s",
	               p.subject, p.issuer, p.sha256, p.names, cert_word[v],
	               p.reason[0] ? "; " : "", p.reason);
}

static void
drive_handshake(struct session *s)
{
	int r = conn_handshake(&s->c);

	if (r == 0) {
		want_read(s, s->c.want == CONN_WANT_READ);
		want_write(s, s->c.want == CONN_WANT_WRITE);
		return;
	}
	s->handshake = false;
	want_write(s, false);
	if (r < 0) {
		log_session(&s->lc, LOG_LVL_INFO, "TLS handshake failed: %s", conn_error(&s->c));
		protolog_infof(s->pl, "TLS", "handshake failed: %s", conn_error(&s->c));
		metrics_tls_failed();
		smtp_tls_done(s->smtp, false);
	} else {
		bool resumed = tls_resumed(s->c.tls);
		log_session(&s->lc, LOG_LVL_INFO, "TLS established: %s %s%s", tls_version(s->c.tls),
		            tls_cipher(s->c.tls), resumed ? " (resumed session)" : "");
		s->tls_protocol = tls_version(s->c.tls);
		s->tls_cipher = tls_cipher(s->c.tls);
		protolog_tls(s->pl, tls_version(s->c.tls), tls_cipher(s->c.tls), NULL);
		metrics_tls_session(tls_version(s->c.tls));
		if (resumed)
			metrics_tls_resumed();
		judge_client_cert(s);
		smtp_tls_done(s->smtp, true);
	}
	idle_timer(s, false);
	session_run(s);
}

/* -- forward-confirmed reverse DNS (remote-hostname-suffixes) -- */

/* The worker's resolver for this session's settings; NULL after an error line. */
static struct dns *
host_dns(struct session *s)
{
	struct session_host *h = s->h;
	char sig[sizeof(h->dns_sig)], err[256];
	size_t used;

	used = (size_t)snprintf(sig, sizeof(sig), "%llu",
	                        (unsigned long long)s->cfg->dns_timeout_ms);
	for (size_t i = 0; i < s->cfg->n_resolvers && used < sizeof(sig); i++)
		used += (size_t)snprintf(sig + used, sizeof(sig) - used, " %s",
		                         s->cfg->resolvers[i]);
	for (size_t i = 0; i < sizeof(h->dns_retired) / sizeof(h->dns_retired[0]); i++) {
		if (h->dns_retired[i] && !dns_busy(h->dns_retired[i])) {
			dns_free(h->dns_retired[i]);
			h->dns_retired[i] = NULL;
		}
	}
	if (h->dns && strcmp(sig, h->dns_sig) == 0)
		return h->dns;
	if (h->dns && dns_busy(h->dns)) {
		/* its lookups under way end on it; new ones go to the new resolver */
		size_t i = 0;
		while (i < sizeof(h->dns_retired) / sizeof(h->dns_retired[0]) && h->dns_retired[i])
			i++;
		if (i == sizeof(h->dns_retired) / sizeof(h->dns_retired[0]))
			return h->dns; /* four retiring already: the change waits */
		h->dns_retired[i] = h->dns;
		h->dns = NULL;
	}
	dns_free(h->dns);
	h->dns = dns_new(h->base, s->cfg->resolvers, s->cfg->n_resolvers, s->cfg->dns_timeout_ms,
	                 err, sizeof(err));
	if (!h->dns) {
		h->dns_sig[0] = '\0';
		log_session(
		        &s->lc, LOG_LVL_ERROR,
		        "remote-hostname-suffixes: %s; MAIL gets 451 4.4.3 until a resolver works "
		        "(check resolvers and /etc/resolv.conf)",
		        err);
		return NULL;
	}
	snprintf(h->dns_sig, sizeof(h->dns_sig), "%s", sig);
	return h->dns;
}

static void fcrdns_cb(void *arg, const struct dns_fcrdns *r);

static void
fcrdns_start(struct session *s)
{
	struct dns *d;
	int r;

	if (!(s->fcrdns = calloc(1, sizeof(*s->fcrdns))))
		goto tempfail;
	if (!(d = host_dns(s)))
		goto tempfail;
	r = dns_check(d, &s->remote, s->fcrdns, fcrdns_cb, s, &s->dns_pending);
	if (r == 1)
		s->fcrdns_known = true;
	if (r >= 0)
		return;
	s->dns_pending = NULL;
tempfail:
	if (s->fcrdns)
		*s->fcrdns = (struct dns_fcrdns){.status = DNS_TEMPFAIL, .why = "no resolver"};
	s->fcrdns_known = true;
}

/* The verdict: NULL (pass) or the refusal, with its metric. */
static const char *
fcrdns_verdict(struct session *s, char *buf, size_t size, enum metrics_fcrdns *m)
{
	const struct dns_fcrdns *r = s->fcrdns;
	const char *unconf = NULL, *name, *confirmed = NULL;

	if (!r || r->status == DNS_TEMPFAIL ||
	    (r->status == DNS_DONE && r->trouble &&
	     !dns_pick(r, s->k->hostname_suffixes, s->k->n_hostname_suffixes, NULL))) {
		*m = METRICS_FCRDNS_TEMPFAIL;
		snprintf(buf, size,
		         "451 4.4.3 Cannot check the reverse DNS of [%s] now: %s; try again later",
		         s->client_ip,
		         !r       ? "out of memory"
		         : r->why ? r->why
		                  : "an address lookup failed");
		return buf;
	}
	if (r->status == DNS_NO_PTR) {
		*m = METRICS_FCRDNS_NO_PTR;
		snprintf(buf, size,
		         "550 5.7.1 Client [%s] has no reverse DNS (PTR) name; this connector "
		         "takes mail only from hosts named in its remote-hostname-suffixes",
		         s->client_ip);
		return buf;
	}
	name = dns_pick(r, s->k->hostname_suffixes, s->k->n_hostname_suffixes, &unconf);
	if (name) {
		*m = METRICS_FCRDNS_PASS;
		s->fcrdns_name = name; /* in s->fcrdns, which stays until the session ends */
		return NULL;
	}
	for (unsigned i = 0; i < r->n_names && !confirmed; i++)
		if (r->confirmed[i])
			confirmed = r->names[i];
	if (unconf || !confirmed) {
		*m = METRICS_FCRDNS_NOT_CONFIRMED;
		snprintf(buf, size,
		         "550 5.7.1 Reverse DNS name %.200s of [%s] does not resolve back to it "
		         "(not forward-confirmed)",
		         unconf ? unconf : r->names[0], s->client_ip);
		return buf;
	}
	*m = METRICS_FCRDNS_WRONG_SUFFIX;
	snprintf(buf, size,
	         "550 5.7.1 Forward-confirmed name %.200s of [%s] is not in this connector's "
	         "remote-hostname-suffixes",
	         confirmed, s->client_ip);
	return buf;
}

static void
fcrdns_answer(struct session *s)
{
	static const char *const label[METRICS_FCRDNS_N] = {
	        "pass", "no PTR", "not forward-confirmed", "wrong suffix", "DNS trouble"};
	char buf[512];
	enum metrics_fcrdns m;
	const char *refusal = fcrdns_verdict(s, buf, sizeof(buf), &m);

	if (!s->fcrdns_counted) {
		s->fcrdns_counted = true;
		metrics_fcrdns(m);
		if (refusal)
			log_session(
			        &s->lc, LOG_LVL_INFO,
			        "forward-confirmed reverse DNS: %s%s; MAIL refused: %s (check the "
			        "client's PTR and A/AAAA records, or remote-hostname-suffixes)",
			        label[m], s->fcrdns && s->fcrdns->cached ? " (cached)" : "",
			        refusal);
		else
			log_session(&s->lc, LOG_LVL_INFO,
			            "forward-confirmed reverse DNS: %s is %s%s", s->client_ip,
			            s->fcrdns_name,
			            s->fcrdns && s->fcrdns->cached ? " (cached)" : "");
		protolog_infof(s->pl, "FCrDNS", "%s %s", label[m],
		               refusal ? refusal : s->fcrdns_name);
	}
	smtp_mail_checked(s->smtp, refusal);
}

/* MAIL waits for the check: answered now, or by fcrdns_cb. */
static void
fcrdns_mail(struct session *s)
{
	if (s->fcrdns_known)
		fcrdns_answer(s);
	else
		s->fcrdns_waiting = true;
}

static void
fcrdns_cb(void *arg, const struct dns_fcrdns *r)
{
	struct session *s = arg;

	s->dns_pending = NULL;
	*s->fcrdns = *r;
	s->fcrdns_known = true;
	if (!s->fcrdns_waiting)
		return;
	s->fcrdns_waiting = false;
	fcrdns_answer(s);
	session_run(s);
}

/* -- the action loop -- */

/* A 4xx/5xx answer to MAIL, RCPT, DATA or the end of data counts against the connector. */
static void
count_refusal(struct session *s, const struct smtp_action *a)
{
	if (!a->transaction || a->len < 3 || (a->text[0] != '4' && a->text[0] != '5'))
		return;
	unsigned code = (unsigned)(a->text[0] - '0') * 100 + (unsigned)(a->text[1] - '0') * 10 +
	                (unsigned)(a->text[2] - '0');
	metrics_message_rejected(s->k->metrics, code);
}

/* A failure reply the tarpit delays by a->delay_ms: kept, and the session waits for its
 * timer.  Returns true when it waits (or closed), false to send it now (no memory). */
static bool
tarpit_hold(struct session *s, const struct smtp_action *a)
{
	free(s->tarpit_text);
	if (!(s->tarpit_text = malloc(a->len)))
		return false;
	memcpy(s->tarpit_text, a->text, a->len);
	s->tarpit_len = a->len;
	s->tarpit_wait = true;
	if (flush_out(s) < 0) {
		session_close(s, "write failed");
		return true;
	}
	idle_timer(s, false);
	want_read(s, false);
	deadline(s, &s->tarpit_at, true, a->delay_ms);
	return true;
}

static void
session_run(struct session *s)
{
	struct smtp_action a;

	if (s->closed)
		return;
	while (!s->tarpit_wait && !s->handshake && !s->closing) {
		int bp = out_backpressure(s);
		if (bp != 0) {
			if (bp < 0)
				session_close(s, "write failed");
			return;
		}
		enum smtp_kind k = smtp_next(s->smtp, &a);
		switch (k) {
		case SMTP_NONE:
			if (flush_out(s) < 0) {
				session_close(s, "write failed");
				return;
			}
			idle_timer(s, true);
			want_read(s, !s->eof && !smtp_input_paused(s->smtp));
			/* decrypted bytes already inside TLS raise no socket event */
			if (conn_pending(&s->c) && !smtp_input_paused(s->smtp)) {
				event_active(&s->ev_io, EV_READ, 0);
			}
			return;
		case SMTP_WAIT:
			if (flush_out(s) < 0) {
				session_close(s, "write failed");
				return;
			}
			idle_timer(s, false);
			want_read(s, false);
			return;
		case SMTP_REPLY:
			if (a.delay_ms > 0 && tarpit_hold(s, &a))
				return;
			if (s->k->protocol_logging_level == PROTOLOG_VERBOSE)
				log_session(&s->lc, LOG_LVL_INFO, "> %.*s", (int)(a.len - 2),
				            a.text);
			count_refusal(s, &a);
			if (out_append(s, a.text, a.len, false) < 0) {
				out_failed(s);
				return;
			}
			protolog_reply(s->pl, a.text, a.len);
			break;
		case SMTP_STARTTLS:
			if (flush_out(s) != 1) {
				/* 220 must leave in plaintext before the handshake */
				session_close(s, "client did not read the STARTTLS reply");
				return;
			}
			if (!s->tls || conn_start_tls(&s->c, s->tls) < 0 ||
			    (s->k->tls_sender_certificate_name &&
			     tls_conn_ask_peer_cert(s->c.tls) < 0)) {
				session_close(s, "cannot start TLS");
				return;
			}
			s->handshake = true;
			idle_timer(s, true);
			drive_handshake(s);
			return;
		case SMTP_MSG_BEGIN:
			smtp_msg_begun(s->smtp, begin_message(s));
			break;
		case SMTP_MSG_DATA:
			if (s->msg)
				spool_msg_write(s->msg, a.text, a.len);
			break;
		case SMTP_MSG_END:
			end_message(s);
			break;
		case SMTP_MSG_ABORT:
			if (s->msg) {
				spool_msg_abort(s->msg);
				s->msg = NULL;
			}
			break;
		case SMTP_LOG:
			log_session(&s->lc, (enum log_level)a.level, "%.*s", (int)a.len, a.text);
			break;
		case SMTP_COMMAND: /* only for verbose connectors (policy log_commands) */
			log_session(&s->lc, LOG_LVL_INFO, "< %.*s",
			            (int)(a.len < 200 ? a.len : 200), a.text);
			protolog_command(s->pl, a.text, a.len);
			break;
		case SMTP_MAILCHECK:
			fcrdns_mail(s);
			break;
		case SMTP_RCPT_VERIFY:
			verify_begin(s, &a);
			break;
		case SMTP_CLOSE:
			s->closing = true;
			want_read(s, false);
			idle_timer(s, false);
			/* after the client's end of stream too: a client that closed only its
			 * sending side (TLS 1.3's close_notify, RFC 8446 §6.1) still reads, and
			 * what is queued may be the 250 of a message it sent last; a connection
			 * that is gone fails the write */
			int r = flush_out(s);
			if (r != 0)
				session_close(s, s->eof  ? "client disconnected"
				                 : r < 0 ? "write failed"
				                         : "closed by the server");
			return;
		}
	}
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	bool got = false;

	(void)fd, (void)what;
	if (s->handshake) {
		drive_handshake(s);
		return;
	}
	if (s->out_off < s->out_len && s->c.want == CONN_WANT_READ) {
		/* a TLS write that waited for the socket to be readable */
		if (flush_out(s) < 0) {
			session_close(s, "write failed");
			return;
		}
	}
	if (s->out_paused) {
		/* no input while the client owes us a read (backpressure) */
		session_run(s);
		return;
	}
	for (int rounds = 0; rounds < 4; rounds++) {
		size_t space;
		char *buf;
		if (smtp_input_paused(s->smtp))
			break;
		buf = smtp_input_space(s->smtp, &space);
		if (space == 0)
			break;
		ssize_t n = s->c.read(&s->c, buf, space);
		int rerr = errno;
		if (n > 0) {
			smtp_input_commit(s->smtp, (size_t)n);
			got = true;
			if ((size_t)n < space && !conn_pending(&s->c))
				break;
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			if (s->c.want == CONN_WANT_WRITE)
				want_write(s, true);
			break;
		}
		if (n == 0) {
			/* what was sent before the close still runs; then the core closes */
			smtp_eof(s->smtp);
			s->eof = true;
			want_read(s, false);
			break;
		}
		/* a reset is the client's doing too: the protocol log says "Remote" */
		if (rerr == ECONNRESET || rerr == EPIPE || rerr == ETIMEDOUT)
			s->eof = true;
		session_close(s, conn_error(&s->c)[0] ? conn_error(&s->c) : "read failed");
		return;
	}
	if (got)
		idle_timer(s, false);
	session_run(s);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	int r;

	(void)fd, (void)what;
	if (s->handshake) {
		drive_handshake(s);
		return;
	}
	r = flush_out(s);
	if (r < 0) {
		session_close(s, "write failed");
		return;
	}
	if (r == 1 && s->closing) {
		session_close(s, "closed by the server");
		return;
	}
	if (r == 1 || (s->out_paused && out_pending(s) < OUT_LOW_WATER))
		session_run(s);
}

/* The socket is ready: a write that waited goes first; a read ready too is reported
 * again by the next loop (the event is level-triggered), as the write may have ended the
 * session. */
static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	if (what & EV_WRITE)
		write_cb(fd, what, arg);
	else
		read_cb(fd, what, arg);
}

static void
idle_fire(struct session *s)
{
	if (s->handshake) {
		session_close(s, "TLS handshake timed out");
		return;
	}
	log_session(&s->lc, LOG_LVL_INFO, "connection-inactivity-timeout (%llus) reached",
	            (unsigned long long)s->k->connection_inactivity_timeout_ms / 1000);
	smtp_timeout(s->smtp, SMTP_TIMEOUT_IDLE);
	session_run(s);
}

static void
life_fire(struct session *s)
{
	log_session(&s->lc, LOG_LVL_INFO, "connection-timeout (%llus) reached",
	            (unsigned long long)s->k->connection_timeout_ms / 1000);
	if (s->handshake || s->tarpit_wait || s->closing) {
		session_close(s, "connection-timeout");
		return;
	}
	smtp_timeout(s->smtp, SMTP_TIMEOUT_SESSION);
	session_run(s);
}

static void
tarpit_fire(struct session *s)
{
	s->tarpit_wait = false;
	if (s->k->protocol_logging_level == PROTOLOG_VERBOSE)
		log_session(&s->lc, LOG_LVL_INFO, "> %.*s (after tarpit)", (int)(s->tarpit_len - 2),
		            s->tarpit_text);
	if (out_append(s, s->tarpit_text, s->tarpit_len, false) < 0) {
		out_failed(s);
		return;
	}
	protolog_reply(s->pl, s->tarpit_text, s->tarpit_len);
	free(s->tarpit_text);
	s->tarpit_text = NULL;
	session_run(s);
}

static void
stall_fire(struct session *s)
{
	char why[160];

	snprintf(why, sizeof(why),
	         "client read none of its replies for %llus (connection-inactivity-timeout); "
	         "%zu bytes unsent",
	         (unsigned long long)s->k->connection_inactivity_timeout_ms / 1000, out_pending(s));
	session_close(s, why);
}

/* ev_timer: the earliest deadline that has passed is taken off, the timer is armed for the
 * rest, and only then is it acted on (which may free the session).  A deadline moved or
 * taken off since the timer was armed is not acted on. */
static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	uint64_t now = clock_mono_ms(), *due = NULL;
	uint64_t *at[] = {&s->life_at, &s->idle_at, &s->stall_at, &s->tarpit_at};
	void (*const fire[])(struct session *) = {life_fire, idle_fire, stall_fire, tarpit_fire};
	size_t which = 0;

	(void)fd, (void)what;
	s->armed_at = 0;
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
		if (*at[i] && *at[i] <= now && (!due || *at[i] < *due)) {
			due = at[i];
			which = i;
		}
	if (due)
		*due = 0;
	timer_arm(s);
	if (due)
		fire[which](s);
}

static bool
rate_cb(void *arg)
{
	struct session *s = arg;
	return admission_rate_allows(s->h->adm, s->k, &s->remote);
}

/* Everything but the events and the core: names, addresses, the log context.  -1 when
 * out of memory. */
static int
session_init(struct session *s, struct session_host *h, struct inbox_session *it, uint64_t seq)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	s->h = h;
	s->cfg = it->cfg;
	s->tls = it->tls;
	s->k = &s->cfg->connectors[it->connector];
	s->remote = it->remote;
	s->local = it->local;
	/* a listener on one address knows it; on a wildcard the socket says which (the logs
	 * and the Received: line name it) */
	if (ipaddr_is_any(&s->local.addr) && getsockname(it->fd, (struct sockaddr *)&ss, &sl) == 0)
		ipaddr_from_sockaddr((struct sockaddr *)&ss, &s->local.addr, &s->local.port);
	conn_init(&s->c, it->fd);
	snprintf(s->id, sizeof(s->id), "%016llX", (unsigned long long)seq);
	s->lc = (struct log_ctx){.session = s->id, .client = s->client, .connector = s->k->name};
	char remote[ENDPOINT_STRLEN];
	struct endpoint rep = {.addr = s->remote, .port = it->rport};
	endpoint_format(&rep, remote, sizeof(remote));
	/* most connectors log no protocol: their sessions keep no row state at all */
	if (s->k->protocol_logging_level == PROTOLOG_VERBOSE) {
		if (!(s->pl = malloc(sizeof(*s->pl))))
			return -1;
		char local[ENDPOINT_STRLEN];
		endpoint_format(&s->local, local, sizeof(local));
		protolog_session_init(s->pl, true, s->k->name, s->id, local, remote);
	}
	return 0;
}

/* A session with room for its client's names (see struct session), or NULL. */
static struct session *
session_alloc(const struct inbox_session *it)
{
	char ip[IPADDR_STRLEN], client[IPADDR_STRLEN * 2 + 32];
	struct session *s;

	ipaddr_format(&it->remote, ip, sizeof(ip));
	int n = snprintf(client, sizeof(client), "[%s]:%u", ip, it->rport);
	if (it->proxied) { /* the log lines name the balancer too: "client=[c]:p via=[b]:p" */
		char via[IPADDR_STRLEN];
		ipaddr_format(&it->via.addr, via, sizeof(via));
		n += snprintf(client + n, sizeof(client) - (size_t)n, " via=[%s]:%u", via,
		              it->via.port);
	}
	size_t iplen = strlen(ip) + 1, clen = (size_t)n + 1;
	if (!(s = calloc(1, sizeof(*s) + iplen + clen)))
		return NULL;
	s->client_ip = memcpy(s->names, ip, iplen);
	s->client = memcpy(s->names + iplen, client, clen);
	return s;
}

void
session_start(struct session_host *h, struct inbox_session *it, uint64_t seq)
{
	struct session *s = session_alloc(it);

	if (!s || session_init(s, h, it, seq) < 0)
		goto fail;
	struct smtp_policy pol;
	policy_from_config(&pol, s->cfg, s->k);
	pol.rate_ok = rate_cb;
	pol.rate_arg = s;
	struct smtp_params p = {
	        .policy = &pol, .client_ip = s->client_ip, .tls_available = s->tls != NULL};
	if (!(s->smtp = smtp_new(&p)))
		goto fail;
	event_assign(&s->ev_io, h->base, it->fd, EV_READ | EV_PERSIST, io_cb, s);
	evtimer_assign(&s->ev_timer, h->base, timer_cb, s);
	deadline(s, &s->life_at, true, s->k->connection_timeout_ms);
	s->next = h->sessions;
	if (h->sessions)
		h->sessions->prev = s;
	h->sessions = s;
	atomic_fetch_add(&h->n_sessions, 1);
	metrics_session_opened(s->k->metrics);
	char local[ENDPOINT_STRLEN];
	endpoint_format(&s->local, local, sizeof(local));
	log_session(&s->lc, LOG_LVL_INFO, "accepted on %s", local);
	protolog_connect(s->pl);
	protolog_info(s->pl, "connector", s->k->name);
	if (s->k->n_hostname_suffixes > 0)
		fcrdns_start(s);
	if (h->shutting_down)
		smtp_shutdown(s->smtp);
	session_run(s);
	return;
fail:
	if (s)
		free(s->pl);
	free(s);
	const char *name = it->cfg->connectors[it->connector].name;
	char ip[IPADDR_STRLEN];
	ipaddr_format(&it->remote, ip, sizeof(ip));
	log_msg(LOG_LVL_ERROR,
	        "out of memory: connection from [%s] to connector \"%s\" closed without a "
	        "reply; the daemon needs more memory (workers, max-inbound-connection)",
	        ip, name);
	admission_release(h->adm, name, &it->remote);
	close(it->fd);
	config_unref(it->cfg);
	tls_ctx_unref(it->tls);
	atomic_fetch_sub(h->handed_off, 1);
}

void
session_shutdown_all(struct session_host *h)
{
	h->shutting_down = true;
	for (struct session *s = h->sessions, *n; s; s = n) {
		n = s->next;
		if (s->closed)
			continue;
		smtp_shutdown(s->smtp);
		if (!s->tarpit_wait && !s->handshake)
			session_run(s);
	}
}

void
session_force_all(struct session_host *h)
{
	static const char bye[] = "421 4.3.2 Service shutting down, closing transmission "
	                          "channel\r\n";

	for (struct session *s = h->sessions, *n; s; s = n) {
		n = s->next;
		if (s->closed)
			continue;
		/* a message being committed gets its 250 first (then the shutdown's 421):
		 * closing now would make the sender send again a message that is queued; the
		 * final deadline still applies */
		if (s->commit_pending)
			continue;
		/* never in the middle of a reply the client has not read yet */
		if (!s->c.tls && !s->handshake && s->out_off == s->out_len)
			(void)!write(s->c.fd, bye, sizeof(bye) - 1);
		session_close(s, "drain-timeout reached");
	}
}

void
session_release_all(struct session_host *h)
{
	while (h->sessions) {
		struct session *s = h->sessions;
		s->commit_pending = s->verify_pending = false;
		if (s->msg)
			spool_msg_abort(s->msg);
		s->msg = NULL;
		conn_release(&s->c);
		if (s->c.fd >= 0)
			close(s->c.fd);
		event_del(&s->ev_io);
		event_del(&s->ev_timer);
		protolog_disconnect(s->pl, false);
		session_free(s);
	}
	while (h->n_out_pool)
		free(h->out_pool[--h->n_out_pool]);
	dns_free(h->dns);
	h->dns = NULL;
	for (size_t i = 0; i < sizeof(h->dns_retired) / sizeof(h->dns_retired[0]); i++) {
		dns_free(h->dns_retired[i]);
		h->dns_retired[i] = NULL;
	}
}
