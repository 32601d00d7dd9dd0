#include "smtpd/smtp.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/ipaddr.h"
#include "base/log.h"
#include "base/mailaddr.h"
#include "base/vec.h"

#define CMD_LINE_MAX  512  /* RFC 5321 §4.5.3.1.4, with CRLF */
#define TEXT_LINE_MAX 1000 /* RFC 5321 §4.5.3.1.6, with CRLF */
#define REPLY_LINE    510  /* RFC 5321 §4.5.3.1.5: 512 octets with CRLF */
#define REPLY_MAX     1024 /* one reply, all its lines with their CRLFs (EHLO's is longest) */
#define LOG_MAX       512  /* one log line; a longer one is cut and ends in "..." */
#define HELO_MAX      255  /* a domain, or an address literal within a command line */
#define IN_CMD_SIZE   2048 /* input buffer between messages */
#define IN_DATA_SIZE  32768

/*
 * The action queue and the text arena are fixed; these are their bounds.
 *
 * A step (what one smtp_next() runs, one of the smtp_msg_begun(), smtp_msg_committed(),
 * smtp_tls_done() answers, or a timeout's goodbye) begins with the queue empty:
 * smtp_next() starts one only when everything queued was taken; each request is the last
 * action of its step, so its answer comes with the queue empty too; and smtp_timeout()
 * with actions queued waits for them.  The arena is emptied at the start of a step.
 *
 * Queue: a command step queues at most 5 actions (a verbose log line, its reply, the 421
 * of too many errors, a log line, SMTP_CLOSE); an answer or a timeout at most 4 (the
 * outcome, a log line, a timeout's goodbye, SMTP_CLOSE).  A data step queues one SMTP_MSG_DATA per
 * run of lines before each stuffed dot line; after each it stops when fewer than
 * DATA_TAIL + 1 slots are free.  Between two such checks at most DATA_TAIL actions follow
 * (SMTP_MSG_ABORT once per message, then a reply, a log line and SMTP_CLOSE, or the next
 * run), so a data step leaves the queue at most MAX_ACTIONS - 1 full.  A data step under
 * bare_lf_normalize queues two more per LF-ended line (the line, then CRLF), after a check
 * for DATA_TAIL + 3 free.  A chunk step (BDAT) checks for DATA_TAIL + 8 free before each
 * line end (which queues at most 6: two runs, the abort, a reply, a log line, the close),
 * and ends its chunk (at most 6 more) only with DATA_TAIL + 4 free, else in a step of its own.
 *
 * Arena: a step writes at most 2 replies (an error reply or a message's outcome, and the
 * 421 that follows it) and 2 log lines (the verbose copy of the command and one more),
 * each within REPLY_MAX and LOG_MAX.
 *
 * Should either bound ever be broken, nothing is dropped in silence: push() and the
 * arena refuse the action, every later one of the step is refused too, and once the
 * queue is empty the session ends with "421 4.3.0", an error log line and SMTP_CLOSE.
 */
#define MAX_ACTIONS 16
#define DATA_TAIL   4
#define TEXT_ARENA  4096
_Static_assert(MAX_ACTIONS >= DATA_TAIL + 2 && MAX_ACTIONS >= 5,
               "the action queue must hold one step");
_Static_assert(TEXT_ARENA >= 2 * (REPLY_MAX + 1) + 2 * (LOG_MAX + 1),
               "the text arena must hold one step");
_Static_assert(REPLY_LINE + 3 <= REPLY_MAX, "a reply line fits a reply");

enum state {
	ST_CMD,    /* reading commands */
	ST_BEGIN,  /* waiting for smtp_msg_begun() */
	ST_DATA,   /* reading message text */
	ST_COMMIT, /* waiting for smtp_msg_committed() */
	ST_TLS,    /* waiting for smtp_tls_done() */
	ST_MAIL,   /* waiting for smtp_mail_checked() */
	ST_CHUNK,  /* reading a BDAT chunk (RFC 3030) */
	ST_VERIFY, /* waiting for smtp_rcpt_verified() */
	ST_CLOSED, /* closing: nothing more is read */
};

struct smtp {
	struct smtp_params p;
	struct smtp_policy pol; /* a copy: p.policy points here */
	enum state st;
	bool tls, esmtp, eof, shutdown, close_queued;
	bool timeout_pending; /* a timeout came while a message was being opened or committed */
	enum smtp_timeout timeout_which;
	unsigned tarpit_ms; /* delay of failure replies: session_tarpit() */
	char *helo;         /* what HELO/EHLO said, when has_helo (allocated to its length) */
	bool has_helo;
	bool cert_ok;       /* smtp_tls_peer() without a refusal */
	bool cert_checked;  /* smtp_tls_peer() was called */
	char *cert_refusal; /* its refusal (allocated), or NULL */

	/* input */
	char *in;
	size_t in_cap, in_len, in_off;
	bool discarding; /* inside an over-long line */
	bool discard_cr; /* its last byte was CR */
	bool line_too_long;

	/* transaction */
	char *mail_from;
	bool have_mail, smtputf8, body_8bit;
	uint64_t declared_size;
	struct smtp_rcpt *rcpts;
	size_t n_rcpts, cap_rcpts;
	struct smtp_rcpt verifying; /* ST_VERIFY: the recipient asked about */
	struct smtp_envelope env;

	/* message text */
	bool txn_step; /* the step answers MAIL, RCPT, DATA or the end of data */
	bool msg_open; /* begun, and no SMTP_MSG_END or SMTP_MSG_ABORT queued yet */
	bool in_header, aborted, too_big, long_line, has_nul, header_too_big;
	uint64_t msg_size, header_size;
	unsigned hops;
	struct msg_text *mt; /* from a message's beginning until the session waits for input */
	bool msgid_wanted;   /* in a Message-ID: header with no word yet */

	/* accounting */
	uint64_t errors;

	/* line ends and BDAT (RFC 3030) */
	bool lf_end;                     /* the last line, command or text, ended in a bare LF */
	bool lf_mode;                    /* the message's first text line ended in a bare LF */
	bool first_line;                 /* no text line of the message yet */
	bool bdat;                       /* the transaction's text comes by BDAT */
	bool chunk_last;                 /* the chunk being read ends the message */
	bool chunk_protoerr;             /* its refusal is a protocol error */
	const char *chunk_refusal;       /* the chunk is read and dropped, then this is the reply */
	uint64_t chunk_size, chunk_left; /* octets of the chunk, and still to read */
	size_t bline;                    /* octets of the text line so far, without CR and LF */
	bool bline_cr;                   /* the last chunk octet was a CR */
	struct smtp_stats stats;

	/* queued actions and the text they point into: step_mem while actions are queued,
	 * else NULL (step_mem_release()): an idle session holds neither */
	struct step_mem *mem;
	size_t qhead, qlen;
	size_t arena_len;
	unsigned oom; /* no memory for a step: the goodbye's actions given out so far */
	/* a bound above was broken: what, and its size; the session ends (see above) */
	const char *failed;
	size_t failed_size;
};

/* ---- action queue ------------------------------------------------------------------- */

/* What the action queue and the text arena need, taken together by the first action of
 * a step. */
struct step_mem {
	struct smtp_action q[MAX_ACTIONS];
	char arena[TEXT_ARENA];
};

/* A message's own text state. */
struct msg_text {
	char message_id[SMTP_MSGID_MAX + 1]; /* for the log: see smtp_envelope.message_id */
	char bhead[12 +
	           SMTP_MSGID_MAX]; /* a BDAT line's first octets ("Received:", "Message-ID:") */
};

/* The step's memory, taken now if it is not yet: false when there is none (then the
 * session ends with a goodbye that needs none: smtp_next()). */
static bool
step_mem(struct smtp *s)
{
	/* once it failed, nothing more is queued, even if memory is back: an action after
	 * a dropped one (a MSG_END after a lost MSG_DATA) would be wrong */
	if (s->oom)
		return false;
	if (!s->mem && !(s->mem = malloc(sizeof(*s->mem)))) {
		if (!s->oom)
			s->oom = 1;
		return false;
	}
	return true;
}

/* A step begins (see the bounds above): text of actions already taken can go. */
static void
step_begin(struct smtp *s)
{
	if (s->qlen == 0)
		s->arena_len = 0;
	s->txn_step = false;
}

/* Records that a bound was broken; the first reason is kept.  From here on nothing is
 * queued until smtp_next() has given out what was queued before and ends the session. */
static void
fail(struct smtp *s, const char *what, size_t size)
{
	if (!s->failed) {
		s->failed = what;
		s->failed_size = size;
	}
}

static void
push(struct smtp *s, enum smtp_kind kind, const char *text, size_t len, unsigned delay, int level)
{
	if (s->failed)
		return; /* ending: see fail() */
	if (s->qlen == MAX_ACTIONS) {
		fail(s, "the action queue is full", MAX_ACTIONS);
		return;
	}
	if (!step_mem(s))
		return;
	if (kind == SMTP_MSG_END || kind == SMTP_MSG_ABORT)
		s->msg_open = false;
	if (kind == SMTP_CLOSE)
		s->close_queued = true;
	s->mem->q[(s->qhead + s->qlen) % MAX_ACTIONS] =
	        (struct smtp_action){.kind = kind,
	                             .text = text,
	                             .len = len,
	                             .delay_ms = delay,
	                             .level = level,
	                             .transaction = kind == SMTP_REPLY && s->txn_step};
	s->qlen++;
}

/* Room for len bytes of text in the arena, which is taken at the first text of a step:
 * NULL (and fail()) when the step's text would not fit or there is no memory. */
static char *
arena_room(struct smtp *s, size_t len)
{
	if (len > TEXT_ARENA - s->arena_len) {
		fail(s, "the text arena is full", s->arena_len + len);
		return NULL;
	}
	if (!step_mem(s))
		return NULL;
	return s->mem->arena + s->arena_len;
}

/* An idle session gives its queue and arena back, as its input buffer (input_release()):
 * once the queue is empty no action points into them.  About 4.6 KiB a connection; and a
 * message's text state, once the session waits for a command (the accepted message's
 * Message-ID has been logged). */
static void
step_mem_release(struct smtp *s)
{
	free(s->mem);
	s->mem = NULL;
	s->arena_len = 0;
	s->qhead = 0;
	if (s->st == ST_CMD && !s->msg_open) {
		free(s->mt);
		s->mt = NULL;
		s->env.message_id = NULL;
	}
}

/* Queues a reply: text (whole lines, the last without its CRLF) is copied to the arena
 * and ended with CRLF. */
static void
reply_text(struct smtp *s, const char *text, size_t len, unsigned delay)
{
	if (s->failed)
		return;
	if (len + 2 > REPLY_MAX) {
		fail(s, "a reply is longer than its bound", len + 2);
		return;
	}
	char *p = arena_room(s, len + 3);
	if (!p)
		return;
	memcpy(p, text, len);
	memcpy(p + len, "\r\n", 3);
	s->arena_len += len + 3;
	push(s, SMTP_REPLY, p, len + 2, delay, 0);
}

/*
 * The tarpit delay of this session (Exchange's TarpitInterval rule): failure replies are
 * delayed only to anonymous sessions, and (as Exchange 2013 on) only from IPv4 and
 * global IPv6 sources.  A session is authenticated when its connector grants partners
 * or exchange-servers without anonymous-users: the trust comes from the connector, as
 * Exchange's Partners and ExchangeServers groups come from authentication.  Link-local
 * (fe80::/10) and site-local (fec0::/10) IPv6 sources are never delayed.
 */
static unsigned
session_tarpit(const struct smtp_params *p)
{
	const struct smtp_policy *pol = p->policy;
	struct ipaddr a;

	if ((pol->partners || pol->exchange_servers) && !pol->anonymous_users)
		return 0;
	if (p->client_ip && ipaddr_parse(p->client_ip, strlen(p->client_ip), &a) == 0 &&
	    ipaddr_is_local_scope(&a))
		return 0;
	return (unsigned)pol->tarpit_interval_ms;
}

/* Length of the RFC 3463 code "class.subject.detail " at p, or 0 when there is none (a
 * host name after the reply code may start with a digit too). */
static size_t
enhanced_code_len(const char *p)
{
	size_t i = 2;

	if (p[0] < '2' || p[0] > '5' || p[1] != '.')
		return 0;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (isdigit((unsigned char)p[i]) && i - start < 3)
			i++;
		if (i == start || p[i] != (part == 0 ? '.' : ' '))
			return 0;
		i++;
	}
	return i;
}

static void vreply(struct smtp *s, bool may_tarpit, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

static void
vreply(struct smtp *s, bool may_tarpit, const char *fmt, va_list ap)
{
	char line[REPLY_LINE + 1];
	unsigned delay = 0;
	int n = vsnprintf(line, sizeof(line), fmt, ap);

	if (n < 0 || (size_t)n > REPLY_LINE) {
		fail(s, "a reply line is longer than RFC 5321 allows", n < 0 ? 0 : (size_t)n + 2);
		return;
	}
	size_t len = (size_t)n;
	size_t el = len > 4 ? enhanced_code_len(line + 4) : 0;
	if (!s->pol.enhanced_status_codes && el > 0) {
		/* "550 5.7.1 text" -> "550 text" */
		memmove(line + 4, line + 4 + el, len - 4 - el + 1);
		len -= el;
	}
	if (may_tarpit && (line[0] == '4' || line[0] == '5') && strncmp(line, "421", 3) != 0)
		delay = s->tarpit_ms;
	reply_text(s, line, len, delay);
}

/*
 * Queues one reply line.  fmt is "CODE ENHANCED text" ("250 2.1.0 Sender OK"); without
 * ENHANCEDSTATUSCODES the enhanced code is dropped.  Failure replies get the session's
 * tarpit delay (session_tarpit()); 421 goodbyes do not.
 */
static void reply(struct smtp *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct smtp *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, true, fmt, ap);
	va_end(ap);
}

/* A reply the session closes after: never tarpitted, whatever its code. */
static void goodbye(struct smtp *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
goodbye(struct smtp *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, false, fmt, ap);
	va_end(ap);
}

static void slog(struct smtp *s, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Queues an action whose text (at most LOG_MAX bytes) is copied to the arena. */
static void
push_text(struct smtp *s, enum smtp_kind kind, const char *text, size_t len, int level)
{
	if (s->failed)
		return;
	char *p = arena_room(s, len + 1);
	if (!p)
		return;
	memcpy(p, text, len);
	p[len] = '\0';
	s->arena_len += len + 1;
	push(s, kind, p, len, 0, level);
}

static void
slog(struct smtp *s, int level, const char *fmt, ...)
{
	char line[LOG_MAX + 1];
	va_list ap;
	int n;

	if (s->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0) {
		fail(s, "a log line cannot be formatted", 0);
		return;
	}
	size_t len = (size_t)n;
	if (len > LOG_MAX) {
		len = LOG_MAX; /* cut, and says so */
		memcpy(line + len - 3, "...", 3);
	}
	push_text(s, SMTP_LOG, line, len, level);
}

static void
close_session(struct smtp *s)
{
	/* a message not begun needs no abort; one whose SMTP_MSG_END went out is the
	 * daemon's to finish: each begun message gets one SMTP_MSG_END or SMTP_MSG_ABORT */
	if (s->msg_open)
		push(s, SMTP_MSG_ABORT, NULL, 0, 0, 0);
	s->st = ST_CLOSED;
	push(s, SMTP_CLOSE, NULL, 0, 0, 0);
}

/* After a broken bound (fail()), with the queue empty: the session ends, loudly. */
static void
end_failed(struct smtp *s)
{
	const char *what = s->failed;
	size_t size = s->failed_size;

	s->failed = NULL;
	if (s->close_queued)
		return; /* what was refused came after the end: nothing to tell */
	if (!step_mem(s))
		return; /* smtp_next() says goodbye without memory */
	goodbye(s, "421 4.3.0 Internal server limit reached, closing transmission channel");
	slog(s, LOG_LVL_ERROR,
	     "internal limit: %s (%zu); the session is closed with 421 4.3.0 in place of "
	     "what did not fit. This is a bug in mxgate: please report this line",
	     what, size);
	close_session(s);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

/* The input buffer of a session that has read nothing yet or has used all it read: never
 * written (its capacity is 0), shared by every such session. */
static char no_input[1];

struct smtp *
smtp_new(const struct smtp_params *p)
{
	struct smtp *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->p = *p;
	s->pol = *p->policy;
	s->p.policy = &s->pol;
	s->in = no_input; /* the buffer is taken at the first read: input_release() */
	s->st = ST_CMD;
	s->tarpit_ms = session_tarpit(p);
	size_t blen = strlen(s->pol.banner);
	if (blen > REPLY_LINE)
		fail(s, "the banner is longer than a reply line", blen + 2);
	else
		reply_text(s, s->pol.banner, blen, 0);
	return s;
}

static void
reset_transaction(struct smtp *s)
{
	for (size_t i = 0; i < s->n_rcpts; i++)
		free(s->rcpts[i].addr);
	s->n_rcpts = 0;
	free(s->verifying.addr);
	s->verifying.addr = NULL;
	free(s->mail_from);
	s->mail_from = NULL;
	s->have_mail = s->smtputf8 = s->body_8bit = false;
	s->declared_size = 0;
	/* between BDAT chunks the message is open: RSET, EHLO or STARTTLS drop it */
	if (s->msg_open)
		push(s, SMTP_MSG_ABORT, NULL, 0, 0, 0);
	s->bdat = false;
}

void
smtp_free(struct smtp *s)
{
	if (!s)
		return;
	reset_transaction(s);
	free(s->rcpts);
	if (s->in != no_input)
		free(s->in);
	free(s->mem);
	free(s->mt);
	free(s->helo);
	free(s->cert_refusal);
	free(s);
}

/* ---- input ---------------------------------------------------------------------------- */

/* An idle session gives its input buffer back (2 KiB between commands, 32 KiB in message
 * text): most of a gateway's connections are idle at any moment.  smtp_input_space()
 * takes one again when the socket has bytes to read. */
static void
input_release(struct smtp *s)
{
	if (s->in != no_input && s->in_off == s->in_len) {
		free(s->in);
		s->in = no_input;
		s->in_cap = s->in_len = s->in_off = 0;
	}
}

char *
smtp_input_space(struct smtp *s, size_t *space)
{
	if (s->in_off > 0) {
		memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
		s->in_len -= s->in_off;
		s->in_off = 0;
	}
	/* message text streams through a larger buffer; commands need little */
	size_t want = s->st == ST_DATA || s->st == ST_CHUNK ? IN_DATA_SIZE : IN_CMD_SIZE;
	if (want != s->in_cap && s->in_len <= want) { /* if it fails, both sizes hold a line */
		char *n = realloc(s->in == no_input ? NULL : s->in, want);
		if (n) {
			s->in = n;
			s->in_cap = want;
		} else if (s->in == no_input) {
			fail(s, "no memory for the input buffer", want);
		}
	}
	*space = s->in_cap - s->in_len;
	return s->in + s->in_len;
}

void
smtp_input_commit(struct smtp *s, size_t n)
{
	s->in_len += n;
}

bool
smtp_input_paused(const struct smtp *s)
{
	if ((s->st != ST_CMD && s->st != ST_DATA && s->st != ST_CHUNK) || s->failed ||
	    s->timeout_pending)
		return true; /* waiting for an answer, or closing */
	return s->qlen > 0 || (s->in_cap > 0 && s->in_off == 0 && s->in_len == s->in_cap);
}

void
smtp_eof(struct smtp *s)
{
	s->eof = true;
}

/* ---- command helpers ------------------------------------------------------------------ */

static void
protocol_error(struct smtp *s)
{
	/* max-protocol-errors are tolerated; the one after them closes */
	if (++s->errors > s->pol.max_protocol_errors &&
	    s->pol.max_protocol_errors != SMTP_UNLIMITED) {
		reply(s, "421 4.7.0 Too many errors on this connection, closing transmission "
		         "channel");
		slog(s, LOG_LVL_INFO, "closed after %llu protocol error%s",
		     (unsigned long long)s->errors, s->errors == 1 ? "" : "s");
		close_session(s);
	}
}

static bool
word_is(const char *arg, size_t len, const char *word)
{
	size_t wl = strlen(word);
	return len >= wl && strncasecmp(arg, word, wl) == 0;
}

static bool
valid_helo(const char *a, size_t len)
{
	if (len == 0 || len > HELO_MAX)
		return false;
	if (a[0] == '[') {
		/* it goes verbatim into "Received: from": an address literal by the grammar
		 * mailaddr checks (RFC 5321 §4.1.3), not any text in brackets */
		char path[MAILADDR_DOMAIN_MAX + 8];
		struct mailaddr m;
		size_t used;
		int n = snprintf(path, sizeof(path), "<x@%.*s>", (int)len, a);
		return mailaddr_parse(path, (size_t)n, false, false, &m, &used) == MAILADDR_OK &&
		       used == (size_t)n;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static void
cmd_helo(struct smtp *s, const char *arg, size_t len, bool ehlo)
{
	while (len > 0 && arg[len - 1] == ' ')
		len--;
	if (!valid_helo(arg, len)) {
		reply(s, "501 5.5.4 Invalid domain name");
		protocol_error(s);
		return;
	}
	/* taken before anything changes: no allocation can fail after the 250 */
	char *helo = malloc(len + 1);
	if (!helo) {
		reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	reset_transaction(s);
	memcpy(helo, arg, len);
	helo[len] = '\0';
	free(s->helo);
	s->helo = helo;
	s->has_helo = true;
	s->esmtp = ehlo;
	if (!ehlo) {
		reply(s, "250 %s Hello [%s]", s->pol.fqdn, s->p.client_ip);
		return;
	}
	/* One reply, several lines: build it whole. */
	const struct smtp_policy *k = &s->pol;
	char buf[REPLY_MAX - 2];
	size_t n;
	const char *kw[8];
	char sizekw[32];
	size_t nk = 0;

	if (k->exchange_servers)
		snprintf(sizekw, sizeof(sizekw), "SIZE");
	else
		snprintf(sizekw, sizeof(sizekw), "SIZE %llu",
		         (unsigned long long)k->max_message_size);
	kw[nk++] = sizekw;
	if (k->pipelining)
		kw[nk++] = "PIPELINING";
	if (k->enhanced_status_codes)
		kw[nk++] = "ENHANCEDSTATUSCODES";
	if (k->starttls && s->p.tls_available && !s->tls)
		kw[nk++] = "STARTTLS";
	if (k->eight_bit_mime)
		kw[nk++] = "8BITMIME";
	if (k->chunking)
		kw[nk++] = "CHUNKING";
	if (k->smtp_utf8)
		kw[nk++] = "SMTPUTF8";
	int first = snprintf(buf, sizeof(buf), "250%c%s Hello [%s]", nk ? '-' : ' ', k->fqdn,
	                     s->p.client_ip);
	if (first < 0 || (size_t)first > REPLY_LINE) {
		fail(s, "the EHLO greeting line is longer than RFC 5321 allows",
		     first < 0 ? 0 : (size_t)first + 2);
		return;
	}
	n = (size_t)first;
	for (size_t i = 0; i < nk; i++) {
		/* each keyword line is short: the whole reply stays within REPLY_MAX */
		int m = snprintf(buf + n, sizeof(buf) - n, "\r\n250%c%s", i + 1 < nk ? '-' : ' ',
		                 kw[i]);
		if (m < 0 || (size_t)m >= sizeof(buf) - n) {
			fail(s, "the EHLO reply is longer than its bound", sizeof(buf));
			return;
		}
		n += (size_t)m;
	}
	reply_text(s, buf, n, 0);
}

/* Parses " KEY=VALUE KEY" ESMTP parameters after a path.  Returns 0, or -1 after it has
 * replied. */
static int
mail_params(struct smtp *s, const char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		while (i < len && p[i] == ' ')
			i++;
		if (i >= len)
			break;
		size_t start = i;
		while (i < len && p[i] != ' ')
			i++;
		const char *kv = p + start;
		size_t kl = i - start;
		const char *eq = memchr(kv, '=', kl);
		size_t nl = eq ? (size_t)(eq - kv) : kl;
		const char *val = eq ? eq + 1 : NULL;
		size_t vl = eq ? kl - nl - 1 : 0;

		if (nl == 4 && strncasecmp(kv, "SIZE", 4) == 0 && val) {
			uint64_t v = 0;
			if (vl == 0 || vl > 15) {
				reply(s, "501 5.5.4 Invalid SIZE parameter");
				return -1;
			}
			for (size_t j = 0; j < vl; j++) {
				if (!isdigit((unsigned char)val[j])) {
					reply(s, "501 5.5.4 Invalid SIZE parameter");
					return -1;
				}
				v = v * 10 + (uint64_t)(val[j] - '0');
			}
			s->declared_size = v;
		} else if (nl == 4 && strncasecmp(kv, "BODY", 4) == 0 && val) {
			if (vl == 4 && strncasecmp(val, "7BIT", 4) == 0)
				s->body_8bit = false;
			else if (vl == 8 && strncasecmp(val, "8BITMIME", 8) == 0 &&
			         s->pol.eight_bit_mime)
				s->body_8bit = true;
			else {
				reply(s, "555 5.5.4 Unsupported BODY type");
				return -1;
			}
		} else if (kl == 8 && strncasecmp(kv, "SMTPUTF8", 8) == 0 && s->pol.smtp_utf8) {
			s->smtputf8 = true;
		} else {
			reply(s, "555 5.5.4 Unsupported parameter %.*s", (int)(nl < 40 ? nl : 40),
			      kv);
			return -1;
		}
	}
	return 0;
}

/* Finds the path after "FROM:" / "TO:" (one space of slack, as real clients send). */
static const char *
path_start(const char *arg, size_t len, size_t prefix, size_t *rest)
{
	size_t i = prefix;
	if (i < len && arg[i] == ' ')
		i++;
	*rest = len - i;
	return arg + i;
}

static void
cmd_mail(struct smtp *s, const char *arg, size_t len)
{
	const struct smtp_policy *k = &s->pol;
	struct mailaddr a;
	size_t used, rest;
	const char *path;

	if (!s->has_helo) {
		reply(s, "503 5.5.2 Send hello first");
		protocol_error(s);
		return;
	}
	if (s->have_mail) {
		reply(s, "503 5.5.1 Sender already specified");
		protocol_error(s);
		return;
	}
	if (k->require_tls && !s->tls) {
		reply(s, "451 5.7.3 Must issue a STARTTLS command first");
		return;
	}
	if (k->require_client_cert && !s->cert_ok) {
		reply(s, "%s",
		      s->cert_refusal   ? s->cert_refusal
		      : s->cert_checked ? "550 5.7.1 Client certificate not accepted"
		                        : "530 5.7.1 Client was not authenticated: no client "
		                          "certificate was checked");
		return;
	}
	if (!k->anonymous_users && !k->partners && !k->exchange_servers) {
		reply(s, "530 5.7.1 Client was not authenticated");
		return;
	}
	if (!word_is(arg, len, "FROM:")) {
		reply(s, "501 5.5.4 Invalid arguments");
		protocol_error(s);
		return;
	}
	path = path_start(arg, len, 5, &rest);
	s->smtputf8 = false;
	s->declared_size = 0;
	s->body_8bit = false;
	switch (mailaddr_parse(path, rest, true, true, &a, &used)) {
	case MAILADDR_OK:
		break;
	case MAILADDR_TOO_LONG:
		reply(s, "550 5.1.7 Invalid address: too long");
		return;
	default:
		reply(s, "550 5.1.7 Invalid address");
		protocol_error(s);
		return;
	}
	if (used < rest && path[used] != ' ') {
		reply(s, "501 5.5.4 Invalid arguments");
		protocol_error(s);
		return;
	}
	if (mail_params(s, path + used, rest - used) < 0) {
		protocol_error(s);
		return;
	}
	if (a.utf8 && !s->smtputf8) {
		reply(s, "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter");
		return;
	}
	if (!(k->exchange_servers) && s->declared_size > k->max_message_size) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	if (k->rate_ok && !k->rate_ok(k->rate_arg)) {
		reply(s, "421 4.4.2 Message submission rate for this client has exceeded the "
		         "configured limit");
		slog(s, LOG_LVL_INFO, "message-rate-limit of %llu a minute exceeded",
		     (unsigned long long)k->message_rate_limit);
		close_session(s);
		return;
	}
	char buf[MAILADDR_LOCAL_MAX * 2 + MAILADDR_DOMAIN_MAX + 8];
	mailaddr_format(&a, buf, sizeof(buf));
	if (!(s->mail_from = strdup(buf))) {
		reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	if (k->mail_check) {
		s->st = ST_MAIL;
		push(s, SMTP_MAILCHECK, NULL, 0, 0, 0);
		return;
	}
	s->have_mail = true;
	reply(s, "250 2.1.0 Sender OK");
}

static void
cmd_rcpt(struct smtp *s, const char *arg, size_t len)
{
	const struct smtp_policy *k = &s->pol;
	bool trusted = (k->exchange_servers) != 0;
	struct mailaddr a;
	size_t used, rest;
	const char *path;

	if (!s->have_mail) {
		reply(s, "503 5.5.1 Need MAIL command");
		protocol_error(s);
		return;
	}
	if (!word_is(arg, len, "TO:")) {
		reply(s, "501 5.5.4 Invalid arguments");
		protocol_error(s);
		return;
	}
	path = path_start(arg, len, 3, &rest);
	if (rest >= 12 && strncasecmp(path, "<postmaster>", 12) == 0 &&
	    (rest == 12 || path[12] == ' ')) {
		/* RFC 5321 §4.5.1: <postmaster> without a domain must be taken */
		memset(&a, 0, sizeof(a));
		snprintf(a.local, sizeof(a.local), "postmaster");
		snprintf(a.domain, sizeof(a.domain), "%s", k->postmaster_domain);
		used = 12;
	} else {
		switch (mailaddr_parse(path, rest, false, s->smtputf8, &a, &used)) {
		case MAILADDR_OK:
			break;
		case MAILADDR_NEED_UTF8:
			reply(s, "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter");
			return;
		case MAILADDR_TOO_LONG:
			reply(s, "501 5.1.3 Invalid address: too long");
			return;
		default:
			reply(s, "501 5.1.3 Invalid address");
			protocol_error(s);
			return;
		}
	}
	for (size_t i = used; i < rest; i++) {
		if (path[i] != ' ') {
			reply(s, "555 5.5.4 Unsupported parameter");
			protocol_error(s);
			return;
		}
	}
	bool accepted = !a.literal && k->domain_accepted(k->lookup_arg, a.domain, strlen(a.domain));
	if (!trusted) {
		if (!accepted) {
			reply(s,
			      "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain");
			slog(s, LOG_LVL_INFO, "relay denied for <%s@%s>", a.local, a.domain);
			return;
		}
		if (mailaddr_has_routing(&a)) {
			reply(s,
			      "550 5.1.3 Routing characters (%%, !, @) in the local part are not "
			      "accepted");
			return;
		}
	}
	/* RFC 5321 §4.5.1: postmaster of a domain served here is taken, listed or not */
	if (accepted && strcasecmp(a.local, "postmaster") != 0 &&
	    k->recipient_known(k->lookup_arg, a.domain, strlen(a.domain), a.local,
	                       strlen(a.local)) == 0) {
		reply(s, "550 5.1.1 User unknown");
		return;
	}
	char buf[MAILADDR_LOCAL_MAX * 2 + MAILADDR_DOMAIN_MAX + 8];
	size_t n = mailaddr_format(&a, buf, sizeof(buf));
	for (size_t i = 0; i < s->n_rcpts; i++) {
		if (strcasecmp(s->rcpts[i].addr, buf) == 0) {
			reply(s, "250 2.1.5 Recipient OK"); /* a duplicate: delivered once */
			return;
		}
	}
	if (s->n_rcpts >= k->max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	/* at most max-recipients-per-message of them (checked above) */
	if (VEC_RESERVE(s->rcpts, s->cap_rcpts, s->n_rcpts + 1) < 0) {
		reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	char *addr = strdup(buf);
	if (!addr) {
		reply(s, "452 4.3.1 Insufficient system resources");
		return;
	}
	if (k->verify_recipients && accepted && strcasecmp(a.local, "postmaster") != 0) {
		s->verifying = (struct smtp_rcpt){addr, n - strlen(a.domain) - 1};
		s->st = ST_VERIFY;
		push(s, SMTP_RCPT_VERIFY, addr, n, 0, 0);
		return;
	}
	s->rcpts[s->n_rcpts++] = (struct smtp_rcpt){addr, n - strlen(a.domain) - 1};
	reply(s, "250 2.1.5 Recipient OK");
}

/* DATA's 354 or the first BDAT chunk: the envelope is handed over and a message opened
 * (SMTP_MSG_BEGIN, answered by smtp_msg_begun()).  False, with nothing changed, when there
 * is no memory for the message's text state. */
static bool
begin_message(struct smtp *s)
{
	if (!s->mt && !(s->mt = malloc(sizeof(*s->mt))))
		return false;
	s->env = (struct smtp_envelope){.helo = s->helo,
	                                .mail_from = s->mail_from,
	                                .rcpts = s->rcpts,
	                                .n_rcpts = s->n_rcpts,
	                                .smtputf8 = s->smtputf8,
	                                .body_8bit = s->body_8bit};
	s->st = ST_BEGIN;
	push(s, SMTP_MSG_BEGIN, NULL, 0, 0, 0);
	return true;
}

static void
cmd_data(struct smtp *s, bool has_more)
{
	if (!s->have_mail) {
		reply(s, "503 5.5.1 Need MAIL command");
		protocol_error(s);
		return;
	}
	if (s->n_rcpts == 0) {
		reply(s, "503 5.5.2 Need rcpt command");
		protocol_error(s);
		return;
	}
	if (has_more) {
		/* RFC 2920 §3.1: DATA ends a group; text sent before 354 is an attack or a
		 * broken client, and cannot be told apart from commands */
		reply(s, "421 4.5.0 SMTP synchronization error: data sent before the 354 reply, "
		         "closing transmission channel");
		slog(s, LOG_LVL_WARNING, "client sent text behind DATA before the 354 reply");
		close_session(s);
		return;
	}
	if (!begin_message(s))
		reply(s, "452 4.3.1 Insufficient system resources");
}

/* The chunk after a BDAT that is refused is still read, and dropped: then reply. */
static void
refuse_chunk(struct smtp *s, const char *text, bool protoerr)
{
	s->chunk_refusal = text;
	s->chunk_protoerr = protoerr;
	s->st = ST_CHUNK;
}

/* BDAT n [LAST] (RFC 3030): the chunk's n octets follow the line at once. */
static void
cmd_bdat(struct smtp *s, const char *arg, size_t len)
{
	const struct smtp_policy *k = &s->pol;
	uint64_t n = 0;
	size_t i = 0;

	while (i < len && i < 15 && isdigit((unsigned char)arg[i]))
		n = n * 10 + (uint64_t)(arg[i++] - '0');
	bool last = i > 0 && len - i == 5 && strncasecmp(arg + i, " LAST", 5) == 0;
	if (i == 0 || (i != len && !last)) {
		/* without its size the chunk cannot be told from the commands after it */
		goodbye(s, "501 5.5.4 Syntax: BDAT chunk-size [LAST]; the chunk cannot be "
		           "found, closing transmission channel");
		slog(s, LOG_LVL_INFO, "BDAT with a bad size or argument: session closed");
		close_session(s);
		return;
	}
	s->stats.bdat_chunks++;
	s->chunk_size = s->chunk_left = n;
	s->chunk_last = last;
	s->chunk_refusal = NULL;
	uint64_t sofar = s->bdat ? s->msg_size : 0;
	if (!k->chunking)
		refuse_chunk(s, "502 5.3.3 Command not implemented", true);
	else if (!s->have_mail)
		refuse_chunk(s, "503 5.5.1 Need MAIL command", true);
	else if (s->n_rcpts == 0)
		refuse_chunk(s, "503 5.5.2 Need rcpt command", true);
	else if (!k->exchange_servers && n > k->max_message_size - sofar) {
		/* checked before the chunk is read; the transaction ends (RFC 3030 §2) */
		slog(s, LOG_LVL_INFO,
		     "message from <%s> refused at BDAT: a chunk of %llu octets after %llu is over "
		     "max-message-size (%llu); the chunk is read and dropped",
		     s->mail_from, (unsigned long long)n, (unsigned long long)sofar,
		     (unsigned long long)k->max_message_size);
		reset_transaction(s);
		refuse_chunk(s, "552 5.3.4 Message size exceeds fixed maximum message size", false);
	} else if (!s->bdat) {
		/* the first chunk opens the message, as DATA does, without a 354 */
		s->bdat = true;
		if (!begin_message(s)) {
			reset_transaction(s);
			refuse_chunk(s, "452 4.3.1 Insufficient system resources", false);
		}
	} else {
		s->st = ST_CHUNK;
	}
}

static void
cmd_starttls(struct smtp *s, const char *arg, size_t len, bool has_more)
{
	const struct smtp_policy *k = &s->pol;

	if (len > 0) {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		protocol_error(s);
		return;
	}
	if (s->tls) {
		reply(s, "503 5.5.1 TLS already active");
		protocol_error(s);
		return;
	}
	if (!k->starttls || !s->p.tls_available) {
		reply(s, "454 4.7.0 TLS not available");
		return;
	}
	(void)arg;
	if (has_more) {
		/* RFC 3207 §4.2 / CVE-2011-0411: plaintext behind STARTTLS is never run */
		slog(s, LOG_LVL_WARNING,
		     "dropped %zu bytes the client sent behind STARTTLS (command injection?)",
		     s->in_len - s->in_off);
	}
	s->in_off = s->in_len = 0;
	reply(s, "220 2.0.0 SMTP server ready");
	s->st = ST_TLS;
	push(s, SMTP_STARTTLS, NULL, 0, 0, 0);
}

/* Runs one complete command line (without CRLF). */
static void
command(struct smtp *s, const char *line, size_t len, bool has_more)
{
	size_t vl = 0;
	const char *arg;
	size_t alen;

	while (vl < len && line[vl] != ' ')
		vl++;
	arg = line + vl + (vl < len ? 1 : 0);
	alen = len - (size_t)(arg - line);

	if (s->pol.log_commands) {
		/* an AUTH argument is a credential, refused or not: never logged (RFC 4954 §4) */
		bool auth = vl == 4 && strncasecmp(line, "AUTH", 4) == 0 && vl < len;
		if (auth) {
			char hidden[] = "AUTH ****"; /* the verb as the client wrote it */
			memcpy(hidden, line, 4);
			push_text(s, SMTP_COMMAND, hidden, sizeof(hidden) - 1, 0);
		} else
			push_text(s, SMTP_COMMAND, line, len < LOG_MAX ? len : LOG_MAX, 0);
	}

	s->txn_step = false;
	if (memchr(line, '\0', len)) {
		reply(s, "500 5.5.2 NUL in command");
		protocol_error(s);
		return;
	}
#define VERB(w) (vl == sizeof(w) - 1 && strncasecmp(line, w, vl) == 0)
	s->txn_step = VERB("MAIL") || VERB("RCPT") || VERB("DATA") || VERB("BDAT");
	if (VERB("EHLO"))
		cmd_helo(s, arg, alen, true);
	else if (VERB("HELO"))
		cmd_helo(s, arg, alen, false);
	else if (VERB("MAIL"))
		cmd_mail(s, arg, alen);
	else if (VERB("RCPT"))
		cmd_rcpt(s, arg, alen);
	else if (VERB("BDAT"))
		cmd_bdat(s, arg, alen);
	else if (VERB("DATA")) {
		if (s->bdat) {
			/* RFC 3030 §3: DATA and BDAT never mix in one transaction */
			reply(s, "503 5.5.1 Bad sequence of commands: DATA after BDAT");
			protocol_error(s);
		} else if (alen) {
			reply(s, "501 5.5.4 Syntax: DATA");
			protocol_error(s);
		} else {
			cmd_data(s, has_more);
		}
	} else if (VERB("RSET")) {
		reset_transaction(s);
		reply(s, "250 2.0.0 Resetting");
	} else if (VERB("NOOP")) {
		reply(s, "250 2.0.0 OK");
	} else if (VERB("QUIT")) {
		reply(s, "221 2.0.0 Service closing transmission channel");
		close_session(s);
	} else if (VERB("VRFY")) {
		reply(s, "252 2.1.5 Cannot VRFY user, but will accept message for delivery");
	} else if (VERB("HELP")) {
		/* one action holds the whole reply, as for EHLO */
		static const char help[] =
		        "214-This server supports the following commands:\r\n"
		        "214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP NOOP VRFY";
		reply_text(s, help, sizeof(help) - 1, 0);
	} else if (VERB("STARTTLS")) {
		cmd_starttls(s, arg, alen, has_more);
	} else if (VERB("EXPN") || VERB("TURN") || VERB("ETRN") || VERB("AUTH") || VERB("ATRN")) {
		reply(s, "502 5.3.3 Command not implemented");
		protocol_error(s);
	} else {
		reply(s, "500 5.3.3 Unrecognized command");
		protocol_error(s);
	}
#undef VERB
}

static void
bare_newline(struct smtp *s)
{
	s->stats.bare_refused++;
	reply(s, "421 4.5.0 Bare CR or LF in the SMTP stream; only CRLF ends a line, closing "
	         "transmission channel");
	slog(s, LOG_LVL_WARNING,
	     "bare CR or LF from the client (SMTP smuggling attempt?); closed with 421. A "
	     "trusted client that cannot send CRLF needs bare-line-feed = normalize on its "
	     "connector");
	close_session(s);
}

static void count_text(struct smtp *s, size_t n);

/*
 * Continues an over-long line that is being skipped: looks for its end in the buffer,
 * still insisting on CRLF.  Returns true when the line ended (or the session closed),
 * false when more input is needed.  Skipped message text still counts to its size.
 */
static bool
skip_long_line(struct smtp *s)
{
	const char *b = s->in + s->in_off;
	size_t avail = s->in_len - s->in_off;

	for (size_t i = 0; i < avail; i++) {
		bool after_cr = i > 0 ? b[i - 1] == '\r' : s->discard_cr;
		if (after_cr && b[i] != '\n') {
			bare_newline(s);
			return true;
		}
		if (b[i] == '\n') {
			if (!after_cr && !s->pol.bare_lf_normalize) {
				bare_newline(s);
				return true;
			}
			s->in_off += i + 1;
			s->discarding = false;
			if (s->st == ST_DATA)
				count_text(s, i + 1);
			return true;
		}
	}
	if (avail > 0) /* called again with nothing new: the last byte is still the last */
		s->discard_cr = b[avail - 1] == '\r';
	s->in_off = s->in_len;
	if (s->st == ST_DATA)
		count_text(s, avail);
	return false;
}

/* Processes buffered commands until an action is queued or input runs out. */
static void
run_commands(struct smtp *s)
{
	while (s->st == ST_CMD && s->qlen == 0 && !s->failed) {
		if (s->discarding) {
			if (!skip_long_line(s)) {
				if (s->eof)
					close_session(s); /* its end can no longer come */
				return;
			}
			if (s->st == ST_CLOSED)
				return;
			reply(s, "500 5.5.2 Line too long");
			protocol_error(s);
			continue;
		}
		const char *b = s->in + s->in_off;
		size_t avail = s->in_len - s->in_off;
		const char *nl = memchr(b, '\n', avail);
		const char *cr = memchr(b, '\r', nl ? (size_t)(nl - b) : avail);

		if (cr && (cr + 1 < b + avail) && cr[1] != '\n') {
			bare_newline(s);
			return;
		}
		if (!nl) {
			if (avail >= CMD_LINE_MAX) {
				s->discarding = true;
				s->discard_cr = b[avail - 1] == '\r';
				s->in_off = s->in_len;
			} else if (s->eof) {
				close_session(s);
			}
			return;
		}
		size_t linelen = (size_t)(nl - b) + 1;
		bool lf_only = linelen < 2 || nl[-1] != '\r';
		if (lf_only && !s->pol.bare_lf_normalize) {
			bare_newline(s);
			return;
		}
		s->in_off += linelen;
		s->lf_end = lf_only;
		s->stats.bare_normalized += lf_only;
		if (linelen + lf_only > CMD_LINE_MAX) {
			reply(s, "500 5.5.2 Line too long");
			protocol_error(s);
			continue;
		}
		command(s, b, linelen - (lf_only ? 1 : 2), s->in_off < s->in_len);
	}
}

/* ---- message text ----------------------------------------------------------------- */

static void
stop_message(struct smtp *s)
{
	if (!s->aborted) {
		s->aborted = true;
		push(s, SMTP_MSG_ABORT, NULL, 0, 0, 0);
	}
}

/* Message text counts to its size; past max-message-size the message is refused. */
static void
count_text(struct smtp *s, size_t n)
{
	const struct smtp_policy *k = &s->pol;

	s->msg_size += n;
	if (!(k->exchange_servers) && s->msg_size > k->max_message_size && !s->too_big) {
		s->too_big = true;
		stop_message(s);
	}
}

static void
end_of_data(struct smtp *s)
{
	const struct smtp_policy *k = &s->pol;

	s->txn_step = true;
	s->env.size = s->msg_size;
	s->env.received_hops = s->hops;
	s->env.message_id = s->mt->message_id;
	if (s->too_big) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
	} else if (s->long_line) {
		reply(s, "554 5.6.0 Message has a line longer than %d characters",
		      TEXT_LINE_MAX - 2);
	} else if (s->has_nul) {
		reply(s, "554 5.6.0 Message contains NUL characters");
	} else if (s->hops > k->max_hop_count) {
		reply(s, "554 5.4.6 Hop count exceeded - possible mail loop");
	} else {
		s->st = ST_COMMIT;
		push(s, SMTP_MSG_END, NULL, 0, 0, 0);
		return;
	}
	slog(s, LOG_LVL_INFO, "message from <%s> refused after %s: %s", s->mail_from,
	     s->bdat ? "BDAT LAST" : "DATA",
	     s->too_big     ? "too big"
	     : s->long_line ? "line too long"
	     : s->has_nul   ? "NUL"
	                    : "hops");
	stop_message(s);
	reset_transaction(s);
	s->st = ST_CMD;
}

/* The first Message-ID: header's first word, for the log line of the accepted message
 * (the id may follow on a folded line); bytes that are not printable ASCII become '?'. */
static void
header_message_id(struct smtp *s, const char *line, size_t len)
{
	size_t i = 0, n = 0;

	if (!s->mt->message_id[0] && len >= 11 && strncasecmp(line, "Message-ID:", 11) == 0) {
		s->msgid_wanted = true;
		i = 11;
	} else if (!s->msgid_wanted || (line[0] != ' ' && line[0] != '\t')) {
		s->msgid_wanted = false;
		return;
	}
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	while (i < len && n < SMTP_MSGID_MAX && line[i] != ' ' && line[i] != '\t' &&
	       line[i] != '\r' && line[i] != '\n') {
		unsigned char c = (unsigned char)line[i++];
		s->mt->message_id[n++] = c > 0x20 && c < 0x7f ? (char)c : '?';
	}
	s->mt->message_id[n] = '\0';
	if (n)
		s->msgid_wanted = false;
}

/* A line of len octets (as stored, with CRLF) ended, its first seen octets at line: the
 * header's checks.  Returns false when the session closed. */
static bool
header_line(struct smtp *s, const char *line, size_t seen, size_t len, bool received)
{
	const struct smtp_policy *k = &s->pol;

	if (s->in_header) {
		if (len == 2) {
			s->in_header = false;
		} else {
			s->header_size += len;
			if (received)
				s->hops++;
			if (seen)
				header_message_id(s, line, seen);
			if (s->header_size > k->max_header_size) {
				stop_message(s);
				reply(s,
				      "552 5.3.4 Message header size exceeds fixed maximum size");
				slog(s, LOG_LVL_INFO, "header over max-header-size (%llu bytes)",
				     (unsigned long long)k->max_header_size);
				close_session(s);
				return false;
			}
		}
	}
	return true;
}

/* One complete line of message text, unstuffed and not over-long: CRLF included, or with
 * lf_only its LF (the line is stored with CRLF). */
static bool
text_line(struct smtp *s, const char *line, size_t len, bool lf_only)
{
	if (memchr(line, '\0', len))
		s->has_nul = true;
	if (lf_only && len + 1 > TEXT_LINE_MAX && !s->long_line) {
		s->long_line = true; /* within the limit as read, over it with its CR */
		stop_message(s);
	}
	count_text(s, len + lf_only);
	return header_line(s, line, len, len + lf_only,
	                   len >= 9 && strncasecmp(line, "Received:", 9) == 0);
}

/* Streams buffered message text: emits runs of lines as SMTP_MSG_DATA pointing into the
 * input buffer, unstuffing dots, until the end of data or the end of the buffer. */
static void
run_data(struct smtp *s)
{
	while (s->st == ST_DATA && s->qlen == 0 && !s->failed) {
		if (s->discarding) {
			if (!skip_long_line(s)) {
				if (s->eof)
					close_session(s);
				return;
			}
			continue;
		}
		const char *b = s->in + s->in_off, *run = NULL;
		size_t avail = s->in_len - s->in_off, i = 0, runlen = 0;

		while (i < avail) {
			const char *line = b + i;
			/* RFC 5321 §4.5.3.1.6: 1000 octets with CRLF, not counting a stuffed dot.
			 * A line is over-long once that many octets came without LF, however the
			 * input was cut, so it is handled in one way only. */
			size_t limit = TEXT_LINE_MAX + (line[0] == '.' ? 1 : 0);
			const char *nl = memchr(line, '\n', avail - i < limit ? avail - i : limit);
			if (!nl) {
				if (avail - i >= limit) {
					/* refuse the message, skip the line without keeping it */
					if (memchr(line, '\r', limit - 1)) {
						bare_newline(s);
						return;
					}
					s->long_line = true;
					stop_message(s);
					s->discarding = true;
					s->discard_cr = line[limit - 1] == '\r';
					count_text(s, limit - (line[0] == '.' ? 1 : 0));
					i += limit;
				}
				break;
			}
			size_t len = (size_t)(nl - line) + 1;
			const char *cr = memchr(line, '\r', len - 1);
			bool lf_only = false;
			if (len < 2 || nl[-1] != '\r' || cr != nl - 1) {
				if (!s->pol.bare_lf_normalize || cr) {
					bare_newline(s); /* a bare CR never ends a line */
					return;
				}
				lf_only = true; /* bare-line-feed = normalize */
			}
			if (line[0] == '.' || lf_only) {
				/* flush the run before this line */
				if (runlen) {
					if (!s->aborted)
						push(s, SMTP_MSG_DATA, run, runlen, 0, 0);
					run = NULL;
					runlen = 0;
				}
				/* room for this line's own two (lf_only) and the tail */
				if (MAX_ACTIONS - s->qlen < DATA_TAIL + 3) {
					s->in_off += i; /* this line again next time */
					return;
				}
			}
			bool was_lf = s->lf_end;
			s->lf_end = lf_only;
			if (s->first_line) /* the first line sets the message's line ends */
				s->lf_mode = lf_only;
			s->first_line = false;
			s->stats.bare_normalized += lf_only;
			if (line[0] == '.') {
				/* CRLF.CRLF, or LF.LF in a message whose lines end in LF (as
				 * its first did); anything else is text: no smuggling */
				if (len == (lf_only ? 2u : 3u) && lf_only == was_lf &&
				    lf_only == s->lf_mode) {
					s->in_off += i + len;
					end_of_data(s);
					return;
				}
				line++, len--; /* RFC 5321 §4.5.2: a leading dot is removed */
				i++;
			}
			if (!text_line(s, line, len, lf_only))
				return;
			if (lf_only) {
				/* stored with CRLF: the line without its LF, then CRLF */
				if (!s->aborted) {
					if (len > 1)
						push(s, SMTP_MSG_DATA, line, len - 1, 0, 0);
					push(s, SMTP_MSG_DATA, "\r\n", 2, 0, 0);
				}
				i += len;
				continue;
			}
			if (!run)
				run = line;
			runlen += len;
			i += len;
		}
		s->in_off += i;
		if (runlen && !s->aborted)
			push(s, SMTP_MSG_DATA, run, runlen, 0, 0);
		if (s->qlen == 0 && s->discarding)
			continue; /* the rest of an over-long line may be buffered */
		if (s->qlen == 0 && s->eof)
			close_session(s);
		return;
	}
}

/* ---- BDAT chunks (RFC 3030) ------------------------------------------------------- */

/* Queues chunk text (when the message is still kept). */
static void
chunk_run(struct smtp *s, const char *p, size_t n)
{
	if (n && !s->aborted)
		push(s, SMTP_MSG_DATA, p, n, 0, 0);
}

/* A chunk line ended (CRLF, or a bare LF normalized): DATA's line checks.  Returns false
 * when the session closed. */
static bool
chunk_line_end(struct smtp *s)
{
	size_t len = s->bline + 2;
	size_t seen = s->bline < sizeof(s->mt->bhead) ? s->bline : sizeof(s->mt->bhead);
	bool received = s->bline >= 9 && strncasecmp(s->mt->bhead, "Received:", 9) == 0;

	s->bline = 0;
	s->bline_cr = false;
	if (len > TEXT_LINE_MAX && !s->long_line) {
		s->long_line = true;
		stop_message(s);
	}
	return header_line(s, s->mt->bhead, seen, len, received);
}

/* Chunk octets at p, at most n: checked line by line as DATA's text is (the line carries
 * over chunk ends), queued as SMTP_MSG_DATA without unstuffing.  Returns how many were
 * taken: fewer when the queue must empty first or the session closed. */
static size_t
chunk_text(struct smtp *s, const char *p, size_t n)
{
	size_t i = 0, run = 0, counted = 0;

	while (i < n) {
		char c = p[i];
		if (s->bline_cr && c != '\n') {
			bare_newline(s); /* a bare CR is never a line end */
			return i;
		}
		if (c == '\n') {
			/* at most 6 actions per line end: 2 runs, the abort, a reply, a log line
			 * and the close; and room for the end of the chunk after it */
			if (MAX_ACTIONS - s->qlen < DATA_TAIL + 8)
				break;
			bool lf_only = !s->bline_cr;
			if (lf_only && !s->pol.bare_lf_normalize) {
				bare_newline(s);
				return i;
			}
			count_text(s, i + 1 - counted + lf_only);
			counted = i + 1;
			if (lf_only) {
				chunk_run(s, p + run, i - run);
				chunk_run(s, "\r\n", 2);
				run = i + 1;
				s->stats.bare_normalized++;
			}
			i++;
			if (!chunk_line_end(s))
				return i;
			continue;
		}
		i++;
		if (c == '\r') {
			s->bline_cr = true;
			continue;
		}
		if (c == '\0')
			s->has_nul = true;
		if (s->bline < sizeof(s->mt->bhead))
			s->mt->bhead[s->bline] = c;
		s->bline++;
	}
	count_text(s, i - counted);
	chunk_run(s, p + run, i - run);
	return i;
}

/* The chunk is read: its reply, or the end of the message after LAST. */
static void
chunk_done(struct smtp *s)
{
	s->txn_step = true;
	s->st = ST_CMD;
	if (s->chunk_refusal) {
		reply(s, "%s", s->chunk_refusal);
		s->chunk_refusal = NULL;
		if (s->chunk_protoerr)
			protocol_error(s);
		return;
	}
	if (!s->chunk_last) {
		reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->chunk_size);
		return;
	}
	if (s->bline_cr) {
		bare_newline(s); /* the text ended in a bare CR */
		return;
	}
	if (s->bline > 0) {
		/* the last line has no CRLF: one is added (RFC 3030 §2 allows any end) */
		count_text(s, 2);
		chunk_run(s, "\r\n", 2);
		if (!chunk_line_end(s))
			return;
	}
	end_of_data(s);
}

/* Reads the chunk's octets from the buffer. */
static void
run_chunk(struct smtp *s)
{
	while (s->st == ST_CHUNK && s->qlen == 0 && !s->failed) {
		size_t avail = s->in_len - s->in_off;
		size_t n = s->chunk_left < avail ? (size_t)s->chunk_left : avail;
		size_t used = n;

		if (!s->chunk_refusal)
			used = chunk_text(s, s->in + s->in_off, n);
		s->in_off += used;
		s->chunk_left -= used;
		s->stats.bdat_bytes += used;
		if (s->st != ST_CHUNK || used < n)
			return; /* closed, or the queue must empty first */
		/* the end of the chunk queues at most 6 (see chunk_done) */
		if (s->chunk_left == 0 && MAX_ACTIONS - s->qlen >= DATA_TAIL + 4) {
			chunk_done(s);
			return;
		}
		if (s->chunk_left > 0 && s->eof && avail == n)
			close_session(s); /* the rest of the chunk can no longer come */
		return;
	}
}

/* Ends the session for a timeout: 451 (idle) or 421 (session), never tarpitted. */
static void
timeout_goodbye(struct smtp *s, enum smtp_timeout which)
{
	if (which == SMTP_TIMEOUT_IDLE)
		goodbye(s, "451 4.7.0 Timeout waiting for client input");
	else
		goodbye(s, "421 4.4.1 Connection timed out");
	close_session(s);
}

/* A timeout that waited for the queue to empty, or came with it empty. */
static void
timeout_now(struct smtp *s)
{
	s->timeout_pending = false;
	step_begin(s);
	timeout_goodbye(s, s->timeout_which);
}

/* The request a timeout waited for is answered (its reply queued): now the timeout. */
static void
late_timeout(struct smtp *s, const char *what, const char *answered)
{
	slog(s, LOG_LVL_INFO,
	     "%s timeout while the message was being %s: %s, then closed the session",
	     s->timeout_which == SMTP_TIMEOUT_IDLE ? "idle" : "session", what, answered);
	timeout_goodbye(s, s->timeout_which);
}

/* ---- the driver ----------------------------------------------------------------------- */

/* No memory for a step's queue (step_mem()): the session ends with fixed words, given out
 * one by one without the queue, and what was refused is dropped (an open message is
 * aborted: each begun message gets its SMTP_MSG_ABORT). */
static enum smtp_kind
oom_goodbye(struct smtp *s, struct smtp_action *a)
{
	static const char bye[] = "421 4.3.0 Out of memory, closing transmission channel\r\n";
	static const char line[] = "out of memory for a session's replies: the session is "
	                           "closed with 421 4.3.0";

	switch (s->oom++) {
	case 1:
		*a = (struct smtp_action){.kind = SMTP_REPLY, .text = bye, .len = sizeof(bye) - 1};
		return a->kind;
	case 2:
		*a = (struct smtp_action){.kind = SMTP_LOG,
		                          .text = line,
		                          .len = sizeof(line) - 1,
		                          .level = LOG_LVL_ERROR};
		return a->kind;
	case 3:
		if (s->msg_open) {
			s->msg_open = false;
			*a = (struct smtp_action){.kind = SMTP_MSG_ABORT};
			return a->kind;
		}
		return oom_goodbye(s, a); /* s->oom is 4 already: the close */
	case 4:
		s->st = ST_CLOSED;
		s->close_queued = true;
		*a = (struct smtp_action){.kind = SMTP_CLOSE};
		return a->kind;
	default:
		s->oom = 5;
		return SMTP_WAIT;
	}
}

enum smtp_kind
smtp_next(struct smtp *s, struct smtp_action *a)
{
	if (s->qlen == 0 && s->timeout_pending && !s->failed &&
	    (s->st == ST_CMD || s->st == ST_DATA || s->st == ST_CHUNK || s->st == ST_TLS ||
	     s->st == ST_MAIL))
		timeout_now(s);
	/* a step may only change the state (BDAT to its chunk): then it goes on, as the
	 * bytes may be buffered already */
	enum state was = s->st;
	bool again = s->qlen == 0;
	while (again && !s->oom) {
		was = s->st;
		step_begin(s);
		switch (s->failed ? ST_CLOSED : s->st) {
		case ST_CMD:
			/* stopping: close between transactions, never in the middle of one */
			if (s->shutdown && !s->have_mail) {
				reply(s, "421 4.3.2 Service shutting down, closing transmission "
				         "channel");
				close_session(s);
				break;
			}
			run_commands(s);
			break;
		case ST_DATA:
			run_data(s);
			break;
		case ST_CHUNK:
			run_chunk(s);
			break;
		case ST_BEGIN:
		case ST_COMMIT:
		case ST_TLS:
		case ST_MAIL:
		case ST_VERIFY:
			return SMTP_WAIT;
		case ST_CLOSED:
			break;
		}
		if (s->failed && s->qlen == 0)
			end_failed(s);
		again = s->qlen == 0 && s->st != was;
	}
	if (s->oom && s->qlen == 0)
		return oom_goodbye(s, a);
	if (s->qlen == 0) {
		if (s->st == ST_CLOSED)
			return SMTP_WAIT;
		input_release(s);    /* waiting for input: no action points into the buffer */
		step_mem_release(s); /* nor into the arena */
		return SMTP_NONE;
	}
	*a = s->mem->q[s->qhead];
	s->qhead = (s->qhead + 1) % MAX_ACTIONS;
	s->qlen--;
	return a->kind;
}

const struct smtp_envelope *
smtp_envelope(const struct smtp *s)
{
	return &s->env;
}

void
smtp_msg_begun(struct smtp *s, bool ok)
{
	if (s->st != ST_BEGIN)
		return;
	step_begin(s);
	s->txn_step = true;
	if (!ok) {
		if (s->timeout_pending)
			goodbye(s, "452 4.3.1 Insufficient system resources");
		else if (s->bdat) {
			/* the chunk is still read, then 452 */
			reset_transaction(s);
			refuse_chunk(s, "452 4.3.1 Insufficient system resources", false);
			return;
		} else
			reply(s, "452 4.3.1 Insufficient system resources");
		reset_transaction(s);
		s->st = ST_CMD;
		if (s->timeout_pending)
			late_timeout(s, "opened", "replied 452 first");
		return;
	}
	s->msg_open = s->in_header = true;
	s->aborted = s->too_big = s->long_line = s->has_nul = false;
	s->msg_size = s->header_size = 0;
	s->hops = 0;
	s->bline = 0;
	s->bline_cr = false;
	s->first_line = true;
	s->mt->message_id[0] = '\0';
	s->msgid_wanted = false;
	s->st = s->bdat ? ST_CHUNK : ST_DATA;
	if (s->timeout_pending) {
		/* no 354 to a client about to be sent away: the message is dropped unread */
		s->aborted = true;
		push(s, SMTP_MSG_ABORT, NULL, 0, 0, 0);
		late_timeout(s, "opened", "dropped it without a 354");
		return;
	}
	if (!s->bdat)
		reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

void
smtp_msg_committed(struct smtp *s, bool ok, const char *queue_id)
{
	if (s->st != ST_COMMIT)
		return;
	step_begin(s);
	s->txn_step = true;
	if (ok)
		reply(s, "250 2.6.0 <%.64s> Queued mail for delivery", queue_id ? queue_id : "");
	else if (s->timeout_pending)
		goodbye(s, "452 4.3.1 Insufficient system resources");
	else
		reply(s, "452 4.3.1 Insufficient system resources");
	reset_transaction(s);
	s->st = ST_CMD;
	if (s->timeout_pending)
		late_timeout(s, "committed", ok ? "replied 250 first" : "replied 452 first");
}

void
smtp_mail_checked(struct smtp *s, const char *refusal)
{
	if (s->st != ST_MAIL)
		return;
	step_begin(s);
	s->txn_step = true;
	s->st = ST_CMD;
	if (refusal) {
		reply(s, "%.510s", refusal);
		free(s->mail_from);
		s->mail_from = NULL;
		return;
	}
	s->have_mail = true;
	reply(s, "250 2.1.0 Sender OK");
}

void
smtp_rcpt_verified(struct smtp *s, enum smtp_verdict v, const char *text)
{
	char why[REPLY_LINE - 16];
	size_t n = 0;

	if (s->st != ST_VERIFY)
		return;
	step_begin(s);
	s->txn_step = true;
	s->st = ST_CMD;
	if (v == SMTP_VERIFY_OK) {
		/* room was made before asking (cmd_rcpt) */
		s->rcpts[s->n_rcpts++] = s->verifying;
		s->verifying.addr = NULL;
		reply(s, "250 2.1.5 Recipient OK");
	} else {
		free(s->verifying.addr);
		s->verifying.addr = NULL;
		if (text && enhanced_code_len(text) > 0)
			text += enhanced_code_len(text);
		for (; v == SMTP_VERIFY_UNKNOWN && text && *text && n + 4 < sizeof(why); text++)
			why[n++] = (*text >= 0x20 && *text < 0x7f) ? *text : '?';
		why[n] = '\0';
		if (v == SMTP_VERIFY_UNKNOWN)
			reply(s, "550 5.1.1 %s", n ? why : "User unknown");
		else
			reply(s, "450 4.4.3 Recipient verification unavailable, try again later");
	}
	if (s->timeout_pending) {
		slog(s, LOG_LVL_INFO, "%s timeout while the recipient was being verified",
		     s->timeout_which == SMTP_TIMEOUT_IDLE ? "idle" : "session");
		timeout_goodbye(s, s->timeout_which);
	}
}

void
smtp_tls_done(struct smtp *s, bool ok)
{
	if (s->st != ST_TLS)
		return;
	step_begin(s);
	if (!ok) {
		s->st = ST_CLOSED;
		push(s, SMTP_CLOSE, NULL, 0, 0, 0);
		return;
	}
	/* RFC 3207 §4.2: forget everything learnt before the handshake */
	reset_transaction(s);
	s->has_helo = false;
	s->esmtp = false;
	s->in_off = s->in_len = 0;
	s->discarding = false;
	s->tls = true;
	s->st = ST_CMD;
}

void
smtp_tls_peer(struct smtp *s, const char *refusal)
{
	s->cert_ok = refusal == NULL;
	s->cert_checked = true;
	free(s->cert_refusal);
	/* without memory for the words the refusal still stands, in general terms (MAIL) */
	s->cert_refusal = refusal ? strdup(refusal) : NULL;
}

void
smtp_timeout(struct smtp *s, enum smtp_timeout which)
{
	if (s->st == ST_CLOSED || s->timeout_pending)
		return;
	/* the message's outcome goes first: a 421 while it commits anyway would make the
	 * client send it again, and it would be delivered twice.  Actions still queued go
	 * first too: the goodbye then starts a step of its own (see the bounds above). */
	s->timeout_pending = true;
	s->timeout_which = which;
	if (s->st != ST_BEGIN && s->st != ST_COMMIT && s->st != ST_VERIFY && s->qlen == 0)
		timeout_now(s);
}

void
smtp_shutdown(struct smtp *s)
{
	s->shutdown = true;
}

const struct smtp_stats *
smtp_stats(const struct smtp *s)
{
	return &s->stats;
}

bool
smtp_in_tls(const struct smtp *s)
{
	return s->tls;
}

const char *
smtp_helo(const struct smtp *s)
{
	return s->has_helo ? s->helo : NULL;
}

bool
smtp_esmtp(const struct smtp *s)
{
	return s->esmtp;
}
