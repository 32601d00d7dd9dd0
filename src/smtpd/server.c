#include "smtpd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
/* embedded struct event: one allocation per session instead of six */
#include <event2/event_struct.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/vec.h"
#include "conf/config.h"
#include "conf/selector.h"
#include "net/conn.h"
#include "net/tls.h"
#include "queue/deliver.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtpd/admission.h"
#include "smtpd/control.h"
#include "smtpd/listener.h"
#include "smtpd/privileges.h"
#include "smtpd/reload.h"
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

	struct worker *workers;
	size_t n_workers, next_worker;
	atomic_long sessions;

	struct spool *spool;
	struct deliver *deliver;
	struct control *control;
	bool draining;
	struct timespec drain_deadline;
	struct event *drain_timer;
	atomic_uint_fast64_t session_seq;

	struct event *src_sweep;

	struct reload *rl;
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

/* ---- workers and sessions --------------------------------------------------------------- */

enum inbox_kind { IN_SESSION, IN_COMMITTED, IN_SHUTDOWN, IN_FORCE, IN_STOP };

struct session;

struct inbox_item {
	enum inbox_kind kind;
	int fd;
	struct ipaddr remote;
	uint16_t rport;
	struct endpoint local;
	struct config *cfg;  /* IN_SESSION: a reference for the session */
	struct tls_ctx *tls; /* IN_SESSION: a reference, or NULL */
	int connector;
	struct session *sess; /* IN_COMMITTED */
	int err;
	struct inbox_item *next;
};

struct worker {
	unsigned index;
	pthread_t thread;
	struct event_base *base;
	struct event *ev_inbox;
	pthread_mutex_t mu;
	struct inbox_item *head, *tail;
	struct session *sessions; /* doubly linked */
	atomic_long n_sessions;
	bool shutting_down;
};

struct session {
	struct worker *w;
	struct config *cfg;
	const struct connector *k;
	struct tls_ctx *tls;
	struct conn c;
	struct smtp *smtp;
	struct event ev_read, ev_write, ev_idle, ev_life, ev_tarpit, ev_stall;
	bool read_on, write_on, idle_on, stall_on;
	char id[20];
	char client[IPADDR_STRLEN + 8]; /* "[ip]:port" */
	char client_ip[IPADDR_STRLEN];
	char local_text[ENDPOINT_STRLEN];
	struct ipaddr remote;
	struct endpoint local;
	struct log_ctx lc;

	char *out;
	size_t out_len, out_cap, out_off;
	bool out_paused, out_warned; /* backpressure (OUT_HIGH_WATER) */
	char *tarpit_text;           /* a delayed reply: one reply, at most the core's arena */
	size_t tarpit_len;
	bool tarpit_wait, closing, closed, handshake, commit_pending, zombie, eof;

	struct spool_msg *msg;
	char msg_id[SPOOL_ID_LEN + 1];
	bool maildir_prefix;
	unsigned messages;
	struct session *prev, *next;
	/* the spool's answer travels in this item: posting it can never fail for lack of
	 * memory (a session has at most one commit under way) */
	struct inbox_item commit_it;
};

static void session_run(struct session *s);
static void session_free(struct session *s);

static void
post(struct worker *w, struct inbox_item *it)
{
	pthread_mutex_lock(&w->mu);
	it->next = NULL;
	if (w->tail)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	pthread_mutex_unlock(&w->mu);
	event_active(w->ev_inbox, EV_READ, 0);
}

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
	if (VEC_RESERVE(s->out, s->out_cap, s->out_len + len) < 0)
		return -1;
	memcpy(s->out + s->out_len, text, len);
	s->out_len += len;
	return 0;
}

static void
want_write(struct session *s, bool on)
{
	if (on && !s->write_on)
		event_add(&s->ev_write, NULL);
	else if (!on && s->write_on)
		event_del(&s->ev_write);
	s->write_on = on;
}

static void
want_read(struct session *s, bool on)
{
	if (on && !s->read_on)
		event_add(&s->ev_read, NULL);
	else if (!on && s->read_on)
		event_del(&s->ev_read);
	s->read_on = on;
}

static void
idle_timer(struct session *s, bool on)
{
	if (on) {
		struct timeval tv = {
		        .tv_sec = (time_t)(s->k->connection_inactivity_timeout_ms / 1000),
		        .tv_usec = (suseconds_t)(s->k->connection_inactivity_timeout_ms % 1000 *
		                                 1000)};
		event_add(&s->ev_idle, &tv);
	} else if (s->idle_on) {
		event_del(&s->ev_idle);
	}
	s->idle_on = on;
}

/* Armed while replies wait for a client that does not read them, and restarted by every
 * byte it takes: after connection-inactivity-timeout without progress the session ends
 * (stall_cb).  The idle timer cannot do this: its goodbye would wait behind the backlog. */
static void
stall_timer(struct session *s, bool on)
{
	if (on) {
		struct timeval tv = {
		        .tv_sec = (time_t)(s->k->connection_inactivity_timeout_ms / 1000),
		        .tv_usec = (suseconds_t)(s->k->connection_inactivity_timeout_ms % 1000 *
		                                 1000)};
		event_add(&s->ev_stall, &tv);
	} else if (s->stall_on) {
		event_del(&s->ev_stall);
	}
	s->stall_on = on;
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
			if (moved || !s->stall_on)
				stall_timer(s, true);
			return 0;
		}
		if (n <= 0)
			return -1;
		s->out_off += (size_t)n;
		moved = true;
	}
	s->out_off = s->out_len = 0;
	if (s->out_cap > 4096) {
		free(s->out);
		s->out = NULL;
		s->out_cap = 0;
	}
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
	if (s->msg && !s->commit_pending) {
		spool_msg_abort(s->msg);
		s->msg = NULL;
	}
	want_read(s, false);
	want_write(s, false);
	idle_timer(s, false);
	stall_timer(s, false);
	event_del(&s->ev_life);
	event_del(&s->ev_tarpit);
	conn_release(&s->c);
	if (s->c.fd >= 0)
		close(s->c.fd);
	s->c.fd = -1;
	if (s->commit_pending) {
		/* the spool still answers for a message: free on its callback */
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
	if (out_append(s, bye, sizeof(bye) - 1, true) == 0)
		(void)flush_out(s);
	session_close(s, why);
}

static void
session_free(struct session *s)
{
	struct worker *w = s->w;

	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	admission_release(S.adm, s->k->name, &s->remote);
	smtp_free(s->smtp);
	tls_ctx_unref(s->tls);
	config_unref(s->cfg);
	free(s->out);
	free(s->tarpit_text);
	free(s);
	atomic_fetch_sub(&w->n_sessions, 1);
	atomic_fetch_sub(&S.sessions, 1);
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

	s->msg = spool_msg_new(S.spool);
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
	             "Received: from %s ([%s])\r\n\tby %s (mxgate, connector \"%s\") with %s id "
	             "%s%s%s%s%s;"
	             "\r\n\t%s\r\n",
	             env->helo, s->client_ip, s->k->fqdn, s->k->name, proto, s->msg_id, tlsinfo,
	             env->n_rcpts == 1 ? "\r\n\tfor <" : "",
	             env->n_rcpts == 1 ? env->rcpts[0].addr : "", env->n_rcpts == 1 ? ">" : "",
	             date);
	if (n > 0 && (size_t)n < sizeof(hdr))
		spool_msg_write(s->msg, hdr, (size_t)n);
	spool_msg_set_prefix(s->msg, prefix);
	return true;
}

static void
committed_cb(void *arg, int err)
{
	struct session *s = arg;

	s->commit_it = (struct inbox_item){.kind = IN_COMMITTED, .sess = s, .err = err};
	post(s->w, &s->commit_it);
}

static void
end_message(struct session *s)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);
	struct spool_entry e = {0};
	char *rcpts[1];
	char **list = env->n_rcpts <= 1 ? rcpts : calloc(env->n_rcpts, sizeof(char *));

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

static void
message_committed(struct session *s, int err)
{
	const struct smtp_envelope *env = smtp_envelope(s->smtp);

	s->commit_pending = false;
	if (s->zombie) {
		log_session(&s->lc, LOG_LVL_INFO, "message %s %s after the client left", s->msg_id,
		            err ? "failed" : "committed");
		session_free(s);
		return;
	}
	if (err) {
		log_session(&s->lc, LOG_LVL_ERROR,
		            "message %s from <%s> not queued: %s; replied 452 4.3.1", s->msg_id,
		            env->mail_from, strerror(err));
	} else {
		s->messages++;
		log_session(&s->lc, LOG_LVL_INFO,
		            "message %s queued: from=<%s> rcpts=%zu size=%llu tls=%s", s->msg_id,
		            env->mail_from, env->n_rcpts, (unsigned long long)env->size,
		            smtp_in_tls(s->smtp) ? tls_version(s->c.tls) : "no");
	}
	smtp_msg_committed(s->smtp, err == 0, s->msg_id);
	session_run(s);
}

/* -- TLS -- */

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
		log_session(&s->lc, LOG_LVL_INFO, "TLS handshake failed: %s", s->c.error);
		smtp_tls_done(s->smtp, false);
	} else {
		log_session(&s->lc, LOG_LVL_INFO, "TLS established: %s %s", tls_version(s->c.tls),
		            tls_cipher(s->c.tls));
		smtp_tls_done(s->smtp, true);
	}
	idle_timer(s, false);
	session_run(s);
}

/* -- the action loop -- */

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
				event_active(&s->ev_read, EV_READ, 0);
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
			if (a.delay_ms > 0) {
				free(s->tarpit_text);
				s->tarpit_text = malloc(a.len);
				if (s->tarpit_text) {
					memcpy(s->tarpit_text, a.text, a.len);
					s->tarpit_len = a.len;
					s->tarpit_wait = true;
					struct timeval tv = {.tv_sec = a.delay_ms / 1000,
					                     .tv_usec = (a.delay_ms % 1000) * 1000};
					if (flush_out(s) < 0) {
						session_close(s, "write failed");
						return;
					}
					idle_timer(s, false);
					want_read(s, false);
					event_add(&s->ev_tarpit, &tv);
					return;
				}
			}
			if (s->k->protocol_logging_level == PROTOLOG_VERBOSE)
				log_session(&s->lc, LOG_LVL_INFO, "> %.*s", (int)(a.len - 2),
				            a.text);
			if (out_append(s, a.text, a.len, false) < 0) {
				out_failed(s);
				return;
			}
			break;
		case SMTP_STARTTLS:
			if (flush_out(s) != 1) {
				/* 220 must leave in plaintext before the handshake */
				session_close(s, "client did not read the STARTTLS reply");
				return;
			}
			if (!s->tls || conn_start_tls(&s->c, s->tls) < 0) {
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
		case SMTP_CLOSE:
			s->closing = true;
			want_read(s, false);
			idle_timer(s, false);
			int r = s->eof ? 1 : flush_out(s);
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
		session_close(s, s->c.error[0] ? s->c.error : "read failed");
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

static void
idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd, (void)what;
	s->idle_on = false;
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
life_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd, (void)what;
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
tarpit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd, (void)what;
	s->tarpit_wait = false;
	if (s->k->protocol_logging_level == PROTOLOG_VERBOSE)
		log_session(&s->lc, LOG_LVL_INFO, "> %.*s (after tarpit)", (int)(s->tarpit_len - 2),
		            s->tarpit_text);
	if (out_append(s, s->tarpit_text, s->tarpit_len, false) < 0) {
		out_failed(s);
		return;
	}
	free(s->tarpit_text);
	s->tarpit_text = NULL;
	session_run(s);
}

static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	char why[160];

	(void)fd, (void)what;
	s->stall_on = false;
	snprintf(why, sizeof(why),
	         "client read none of its replies for %llus (connection-inactivity-timeout); "
	         "%zu bytes unsent",
	         (unsigned long long)s->k->connection_inactivity_timeout_ms / 1000, out_pending(s));
	session_close(s, why);
}

static bool
rate_cb(void *arg)
{
	struct session *s = arg;
	return admission_rate_allows(S.adm, s->k, &s->remote);
}

static void
start_session(struct worker *w, struct inbox_item *it)
{
	struct session *s = calloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[IPADDR_STRLEN];

	if (!s) {
		close(it->fd);
		config_unref(it->cfg);
		tls_ctx_unref(it->tls);
		return;
	}
	s->w = w;
	s->cfg = it->cfg;
	s->tls = it->tls;
	s->k = &s->cfg->connectors[it->connector];
	s->remote = it->remote;
	s->local = it->local;
	if (getsockname(it->fd, (struct sockaddr *)&ss, &sl) == 0)
		ipaddr_from_sockaddr((struct sockaddr *)&ss, &s->local.addr, &s->local.port);
	conn_init(&s->c, it->fd);
	ipaddr_format(&s->remote, ip, sizeof(ip));
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", ip);
	snprintf(s->client, sizeof(s->client), "[%s]:%u", ip, it->rport);
	endpoint_format(&s->local, s->local_text, sizeof(s->local_text));
	snprintf(s->id, sizeof(s->id), "%08llX",
	         (unsigned long long)atomic_fetch_add(&S.session_seq, 1));
	s->lc = (struct log_ctx){.session = s->id, .client = s->client, .connector = s->k->name};

	struct smtp_params p = {.cfg = s->cfg,
	                        .conn = s->k,
	                        .client_ip = s->client_ip,
	                        .tls_available = s->tls != NULL,
	                        .rate_ok = rate_cb,
	                        .arg = s};
	s->smtp = smtp_new(&p);
	if (!s->smtp) {
		admission_release(S.adm, s->k->name, &s->remote);
		close(it->fd);
		config_unref(s->cfg);
		tls_ctx_unref(s->tls);
		free(s);
		return;
	}
	event_assign(&s->ev_read, w->base, it->fd, EV_READ | EV_PERSIST, read_cb, s);
	event_assign(&s->ev_write, w->base, it->fd, EV_WRITE | EV_PERSIST, write_cb, s);
	evtimer_assign(&s->ev_idle, w->base, idle_cb, s);
	evtimer_assign(&s->ev_life, w->base, life_cb, s);
	evtimer_assign(&s->ev_tarpit, w->base, tarpit_cb, s);
	evtimer_assign(&s->ev_stall, w->base, stall_cb, s);
	struct timeval life = {.tv_sec = (time_t)(s->k->connection_timeout_ms / 1000),
	                       .tv_usec = (suseconds_t)(s->k->connection_timeout_ms % 1000 * 1000)};
	event_add(&s->ev_life, &life);
	s->next = w->sessions;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	atomic_fetch_add(&w->n_sessions, 1);
	log_session(&s->lc, LOG_LVL_INFO, "accepted on %s", s->local_text);
	if (w->shutting_down)
		smtp_shutdown(s->smtp);
	session_run(s);
}

static void
inbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct inbox_item *items;

	(void)fd, (void)what;
	pthread_mutex_lock(&w->mu);
	items = w->head;
	w->head = w->tail = NULL;
	pthread_mutex_unlock(&w->mu);
	for (struct inbox_item *it = items, *next; it; it = next) {
		next = it->next;
		switch (it->kind) {
		case IN_SESSION:
			start_session(w, it);
			break;
		case IN_COMMITTED:
			/* embedded in the session, which this may free: never free(it) */
			message_committed(it->sess, it->err);
			continue;
		case IN_SHUTDOWN:
			w->shutting_down = true;
			for (struct session *s = w->sessions, *n; s; s = n) {
				n = s->next;
				if (s->closed)
					continue;
				smtp_shutdown(s->smtp);
				if (!s->tarpit_wait && !s->handshake)
					session_run(s);
			}
			break;
		case IN_FORCE:
			for (struct session *s = w->sessions, *n; s; s = n) {
				n = s->next;
				if (s->closed)
					continue;
				/* a message being committed gets its 250 first (then the
				 * shutdown's 421): closing now would make the sender send again
				 * a message that is queued; the final deadline still applies */
				if (s->commit_pending)
					continue;
				static const char bye[] = "421 4.3.2 Service shutting down, "
				                          "closing transmission channel\r\n";
				/* never in the middle of a reply the client has not read yet */
				if (!s->c.tls && !s->handshake && s->out_off == s->out_len)
					(void)!write(s->c.fd, bye, sizeof(bye) - 1);
				session_close(s, "drain-timeout reached");
			}
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

/* the listeners pause or resume accepting: the control socket follows */
static void
accepting_cb(bool on, void *arg)
{
	(void)arg;
	control_enable(S.control, on);
}

/* An admitted connection goes to the worker with the fewest sessions, round robin among
 * equals, with a reference to the current snapshot. */
static int
handoff_cb(int fd, const struct ipaddr *remote, uint16_t rport, const struct endpoint *local, int k,
           void *arg)
{
	struct inbox_item *it = calloc(1, sizeof(*it));

	(void)arg;
	if (!it)
		return -1;
	*it = (struct inbox_item){.kind = IN_SESSION,
	                          .fd = fd,
	                          .remote = *remote,
	                          .rport = rport,
	                          .local = *local,
	                          .cfg = config_ref(S.cfg),
	                          .tls = S.tls ? tls_ctx_ref(S.tls) : NULL,
	                          .connector = k};
	atomic_fetch_add(&S.sessions, 1);
	size_t best = S.next_worker;
	for (size_t j = 0; j < S.n_workers; j++) {
		size_t c = (S.next_worker + j) % S.n_workers;
		if (atomic_load(&S.workers[c].n_sessions) <
		    atomic_load(&S.workers[best].n_sessions))
			best = c;
	}
	S.next_worker = (best + 1) % S.n_workers;
	post(&S.workers[best], it);
	return 0;
}

/* ---- the snapshot's swap and the drain --------------------------------------------------------------------- */

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
	pthread_mutex_lock(&S.mu);
	old = S.cfg;
	oldt = S.tls;
	S.cfg = c;
	S.tls = t;
	pthread_mutex_unlock(&S.mu);
	log_set_level((enum log_level)c->log_level);
	size_t failed;
	size_t n = S.n_ls = listeners_reconcile(S.ls, c, &failed);
	if (failed)
		log_msg(LOG_LVL_ERROR,
		        "reload: %zu binding%s could not be opened (see above); the "
		        "others serve",
		        failed, failed == 1 ? "" : "s");
	if (deliver_prepare(S.deliver, c, -1, -1) < 0)
		log_msg(LOG_LVL_ERROR, "reload: the new Maildir base cannot be used (see above); "
		                       "delivery into it waits until it is fixed");
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
	if (atomic_load(&S.sessions) == 0) {
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
	        (long)atomic_load(&S.sessions), atomic_load(&S.sessions) == 1 ? "" : "s");
	for (size_t i = 0; i < S.n_workers; i++) {
		struct inbox_item *it = calloc(1, sizeof(*it));
		if (it) {
			it->kind = IN_FORCE;
			post(&S.workers[i], it);
		}
	}
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
	        (long)atomic_load(&S.sessions), atomic_load(&S.sessions) == 1 ? "" : "s",
	        (unsigned long long)c->drain_timeout_ms / 1000);
	listeners_close(S.ls);
	for (size_t i = 0; i < S.n_workers; i++) {
		struct inbox_item *it = calloc(1, sizeof(*it));
		if (it) {
			it->kind = IN_SHUTDOWN;
			post(&S.workers[i], it);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &S.drain_deadline);
	S.drain_deadline.tv_sec += (time_t)(c->drain_timeout_ms / 1000);
	S.drain_deadline.tv_nsec += (long)(c->drain_timeout_ms % 1000) * 1000000;
	if (S.drain_deadline.tv_nsec >= 1000000000) {
		S.drain_deadline.tv_sec++;
		S.drain_deadline.tv_nsec -= 1000000000;
	}
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

int
server_run(const char *path)
{
	size_t errors;
	struct event *sigs[4] = {0};
	const int signums[4] = {SIGHUP, SIGTERM, SIGINT, 0};
	char err[512];
	long uid, gid;
	int rc = 1;

	memset(&S, 0, sizeof(S));
	S.path = path;
	pthread_mutex_init(&S.mu, NULL);
	log_init("mxgate", false, LOG_LVL_INFO);
	S.cfg = reload_read_config(path, &errors);
	if (!S.cfg) {
		log_msg(LOG_LVL_ERROR, "%zu error%s in %s; not starting", errors,
		        errors == 1 ? "" : "s", path);
		return 1;
	}
	log_init("mxgate", S.cfg->log_target == LOG_TO_SYSLOG, (enum log_level)S.cfg->log_level);
	if (reload_read_tls(S.cfg, &S.tls) < 0)
		goto out;
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
	if (privileges_user(S.cfg, S.path, &uid, &gid) < 0 || privileges_restrict() < 0)
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
	if (deliver_prepare(S.deliver, S.cfg, uid, gid) < 0)
		goto out; /* an unsafe Maildir base: deliver_prepare said why */
	size_t failed;
	S.n_ls = listeners_reconcile(S.ls, S.cfg, &failed);
	if (failed) {
		log_msg(LOG_LVL_ERROR, "%zu binding%s could not be opened; not starting", failed,
		        failed == 1 ? "" : "s");
		goto out;
	}
	if (privileges_become(uid, gid) < 0)
		goto out;

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	S.n_workers = S.cfg->workers ? (size_t)S.cfg->workers : (size_t)(ncpu > 0 ? ncpu : 1);
	S.workers = calloc(S.n_workers, sizeof(*S.workers));
	if (!S.workers)
		goto out;
	for (size_t i = 0; i < S.n_workers; i++) {
		struct worker *w = &S.workers[i];
		w->index = (unsigned)i;
		pthread_mutex_init(&w->mu, NULL);
		if (!(w->base = event_base_new()) ||
		    !(w->ev_inbox = event_new(w->base, -1, EV_READ, inbox_cb, w)) ||
		    pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			log_msg(LOG_LVL_ERROR, "cannot start worker %zu", i);
			S.n_workers = i;
			goto stop;
		}
	}
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
	event_base_dispatch(S.base);
	reload_free(S.rl); /* waits for a reload under way */
	S.rl = NULL;
	rc = 0;
	log_msg(LOG_LVL_INFO, "stopped");
stop:
	for (size_t i = 0; i < S.n_workers; i++) {
		struct inbox_item *it = calloc(1, sizeof(*it));
		if (it) {
			it->kind = IN_STOP;
			post(&S.workers[i], it);
		}
		pthread_join(S.workers[i].thread, NULL);
	}
	/* the syncer finishes what waits (its callbacks only post to the stopped workers'
	 * inboxes), then delivery stops after its batch */
	spool_stop(S.spool);
	deliver_free(S.deliver);
	S.deliver = NULL;
	for (size_t i = 0; i < S.n_workers; i++) {
		struct worker *w = &S.workers[i];
		for (struct inbox_item *it = w->head, *n; it; it = n) {
			n = it->next;
			if (it->kind == IN_SESSION) {
				close(it->fd);
				admission_release(S.adm, it->cfg->connectors[it->connector].name,
				                  &it->remote);
				config_unref(it->cfg);
				tls_ctx_unref(it->tls);
				atomic_fetch_sub(&S.sessions, 1);
			} else if (it->kind == IN_COMMITTED) {
				it->sess->commit_pending = false;
				continue; /* embedded in its session */
			}
			free(it);
		}
		w->head = w->tail = NULL;
		while (w->sessions) {
			struct session *s = w->sessions;
			s->commit_pending = false;
			if (s->msg)
				spool_msg_abort(s->msg);
			s->msg = NULL;
			conn_release(&s->c);
			if (s->c.fd >= 0)
				close(s->c.fd);
			event_del(&s->ev_read);
			event_del(&s->ev_write);
			event_del(&s->ev_idle);
			event_del(&s->ev_life);
			event_del(&s->ev_tarpit);
			event_del(&s->ev_stall);
			session_free(s);
		}
		if (w->ev_inbox)
			event_free(w->ev_inbox);
		if (w->base)
			event_base_free(w->base);
		pthread_mutex_destroy(&w->mu);
	}
	free(S.workers);
out:
	control_close(S.control);
	for (int i = 0; sigs[i]; i++)
		event_free(sigs[i]);
	if (S.drain_timer)
		event_free(S.drain_timer);
	reload_free(S.rl);
	if (S.src_sweep)
		event_free(S.src_sweep);
	listeners_free(S.ls);
	spool_stop(S.spool);
	deliver_free(S.deliver);
	spool_close(S.spool);
	admission_free(S.adm);
	if (S.base)
		event_base_free(S.base);
	tls_ctx_unref(S.tls);
	config_unref(S.cfg);
	libevent_global_shutdown();
	return rc;
}
