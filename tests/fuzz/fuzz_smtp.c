/* libFuzzer target: the sans-I/O SMTP session.
 *
 * Input: 4 bytes of set-up (connector settings, a seed; b3 & 128 bare_lf_normalize,
 * b2 & 128 turns CHUNKING off, b2 & 64 makes each MAIL wait for a reverse DNS verdict,
 * b2 & 32 each RCPT for a verification), then the client's byte stream.
 * The seed cuts the stream into turns (the client waits for replies after each), places
 * events (EOF, timeouts, shutdown) between turns, or timeouts while the next message is
 * being opened or committed, and scripts every answer (message begun or not, committed
 * or not, handshake ok or not).  The session runs twice: each turn whole, then with
 * extra cuts at seed-derived points and answers given at another moment.
 *
 * Invariants, each run: no MSG_DATA outside a begun message or after its MSG_ABORT, one
 * MSG_END or MSG_ABORT per message, no open message at SMTP_CLOSE and nothing after it;
 * replies are whole CRLF lines with the same code, tarpitted only when failures to an
 * anonymous session from IPv4 or a global IPv6 address (Exchange's rule), and never the
 * 421 of a broken internal bound (smtp.c); a commit answered ok gets its 250 before
 * anything else, timeout or not; a committed message is CRLF lines of at most 1000
 * octets without NUL, bare CR or LF, and its envelope size is the text given; STARTTLS
 * forgets the greeting; the input never stalls.  Across runs: the same record
 * (replies, requests, committed text), unless a run met the 421 for text sent behind
 * DATA, which depends on what arrives together.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/vec.h"
#include "smtpd/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TURNS    512
#define SYNC_421     "SMTP synchronization error" /* with or without 4.5.0 */
#define INTERNAL_421 "Internal server limit reached"

static const char *const clients[] = {"192.0.2.1", "2001:db8::1", "fe80::1", "fec0::1"};

static bool
name_is(const char *p, size_t len, const char *name)
{
	return len == strlen(name) && strncasecmp(p, name, len) == 0;
}

/* The domains: example.com, any proper subdomain of example.net, and corp.example, whose
 * recipients are alice and bob (the others take every local part). */
static bool
domain_accepted(const void *arg, const char *d, size_t len)
{
	(void)arg;
	while (len > 0 && d[len - 1] == '.')
		len--;
	return name_is(d, len, "example.com") || name_is(d, len, "corp.example") ||
	       (len > 12 && name_is(d + len - 12, 12, ".example.net"));
}

static int
recipient_known(const void *arg, const char *d, size_t dlen, const char *local, size_t llen)
{
	(void)arg;
	while (dlen > 0 && d[dlen - 1] == '.')
		dlen--;
	if (!name_is(d, dlen, "corp.example"))
		return -1;
	return name_is(local, llen, "alice") || name_is(local, llen, "bob");
}

struct rec {
	char *p;
	size_t len, cap;
};

static void
rec_add(struct rec *r, char tag, const void *p, size_t n)
{
	if (VEC_RESERVE(r->p, r->cap, r->len + 1 + sizeof(n) + n) < 0)
		abort();
	r->p[r->len++] = tag;
	memcpy(r->p + r->len, &n, sizeof(n));
	r->len += sizeof(n);
	if (n) /* actions without text (SMTP_MAILCHECK, ...) have p NULL */
		memcpy(r->p + r->len, p, n);
	r->len += n;
}

/* Prints a record readably, for the crash report. */
static void
rec_print(const char *title, const struct rec *r)
{
	fprintf(stderr, "%s:\n", title);
	for (size_t i = 0; i < r->len;) {
		char tag = r->p[i];
		size_t n;
		memcpy(&n, r->p + i + 1, sizeof(n));
		const unsigned char *p = (const unsigned char *)r->p + i + 1 + sizeof(n);
		fprintf(stderr, "  %c ", tag);
		if (tag == 'd' || tag == 'h') {
			unsigned u;
			memcpy(&u, p, sizeof(u));
			fprintf(stderr, "%u", u);
		} else if (tag == 'b' || tag == 'E' || tag == 'T')
			fprintf(stderr, "%s", *p ? "ok" : "fail");
		for (size_t j = 0; tag != 'd' && tag != 'h' && tag != 'b' && tag != 'E' &&
		                   tag != 'T' && j < n && j < 300;
		     j++)
			fprintf(stderr, p[j] >= 0x20 && p[j] < 0x7f ? "%c" : "\\x%02x", p[j]);
		fprintf(stderr, "\n");
		i += 1 + sizeof(n) + n;
	}
}

static uint64_t
rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* EV_LATE_*: the timeout comes while the next message is being opened or committed,
 * before the answer (in both runs, whenever the answer is given). */
enum event { EV_NONE, EV_EOF, EV_IDLE, EV_SESSION, EV_SHUTDOWN, EV_LATE_IDLE, EV_LATE_SESSION };

struct plan {
	const char *in;
	size_t len;
	size_t turn_end[MAX_TURNS]; /* offsets where turns end */
	enum event after[MAX_TURNS];
	size_t n_turns;
	uint64_t answers; /* bit i: the answer to the i-th request */
	long rate;        /* MAILs allowed; -1: no rate_ok */
	bool tls_available;
	unsigned tarpit;
};

struct run {
	const struct plan *pl;
	struct smtp *s;
	struct rec rec;
	char *body;
	size_t body_len, body_cap;
	unsigned requests;
	long mails;
	enum smtp_kind pending;
	bool pending_ok;
	bool answer_at_once; /* MSG_END and STARTTLS answered when seen, not at SMTP_WAIT */
	bool in_msg, closed, drop_turn, sync421;
	bool expect_250; /* a commit was answered ok: its 250 is the next reply */
	enum event late; /* armed EV_LATE_*, or EV_NONE */
	unsigned long actions;
};

static bool
rate_cb(void *arg)
{
	struct run *r = arg;
	return r->mails++ < r->pl->rate;
}

static bool
next_answer(struct run *r)
{
	return (r->pl->answers >> (r->requests++ % 64)) & 1;
}

static void
check_reply(struct run *r, const struct smtp_action *a)
{
	const char *p = a->text, *end = a->text + a->len;

	if (!a->text || a->len < 6 || memcmp(end - 2, "\r\n", 2) != 0)
		abort();
	if (r->expect_250 && memcmp(a->text, "250 ", 4) != 0)
		abort();
	r->expect_250 = false;
	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		if (!eol || eol + 1 >= end || eol[1] != '\n' || memchr(p, '\n', (size_t)(eol - p)))
			abort();
		bool last = eol + 2 == end;
		if (eol - p < 4 || memcmp(p, a->text, 3) != 0 || p[3] != (last ? ' ' : '-') ||
		    p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' ||
		    p[2] > '9')
			abort();
		p = eol + 2;
	}
	if (a->delay_ms != 0 &&
	    (a->delay_ms != r->pl->tarpit || a->text[0] < '4' || memcmp(a->text, "421", 3) == 0))
		abort();
	if (memcmp(a->text, "421", 3) == 0 && memmem(a->text, a->len, SYNC_421, strlen(SYNC_421)))
		r->sync421 = true;
	/* the queue and arena bounds hold for every connector config.c accepts */
	if (memmem(a->text, a->len, INTERNAL_421, strlen(INTERNAL_421)))
		abort();
}

/* A committed message: CRLF lines of at most 1000 octets, no NUL, no bare CR or LF. */
static void
check_body(const char *b, size_t n)
{
	size_t start = 0;

	if (n && (n < 2 || b[n - 2] != '\r' || b[n - 1] != '\n'))
		abort();
	for (size_t i = 0; i < n; i++) {
		if (b[i] == '\0')
			abort();
		if (b[i] == '\r' && (i + 1 >= n || b[i + 1] != '\n'))
			abort();
		if (b[i] == '\n') {
			if (i == 0 || b[i - 1] != '\r' || i + 1 - start > 1000)
				abort();
			start = i + 1;
		}
	}
}

/* An armed EV_LATE_* timeout, just before the answer to a message request. */
static void
late_event(struct run *r)
{
	if (r->late != EV_NONE)
		smtp_timeout(r->s,
		             r->late == EV_LATE_IDLE ? SMTP_TIMEOUT_IDLE : SMTP_TIMEOUT_SESSION);
	r->late = EV_NONE;
}

static void
answer(struct run *r, enum smtp_kind k, bool ok)
{
	if (k == SMTP_MSG_END) {
		late_event(r);
		/* a committed message is always told: a 421 instead makes the sender send
		 * it again (a duplicate) */
		r->expect_250 = ok;
		smtp_msg_committed(r->s, ok, "QID");
	} else {
		smtp_tls_done(r->s, ok);
		if (ok && (!smtp_in_tls(r->s) || smtp_helo(r->s) || smtp_esmtp(r->s)))
			abort();
	}
}

static void
drain(struct run *r)
{
	struct smtp_action a;

	for (;;) {
		if (++r->actions > 1000000)
			abort(); /* runaway */
		a = (struct smtp_action){0};
		enum smtp_kind k = smtp_next(r->s, &a);
		if (k != SMTP_NONE && k != SMTP_WAIT && k != a.kind)
			abort();
		if (r->closed && k != SMTP_WAIT)
			abort();
		switch (k) {
		case SMTP_NONE:
			return;
		case SMTP_WAIT:
			if (r->pending != SMTP_NONE) {
				enum smtp_kind p = r->pending;
				r->pending = SMTP_NONE;
				answer(r, p, r->pending_ok);
				continue;
			}
			if (!r->closed)
				abort(); /* waiting for nothing */
			return;
		case SMTP_REPLY:
			check_reply(r, &a);
			rec_add(&r->rec, 'S', a.text, a.len);
			rec_add(&r->rec, 'd', &a.delay_ms, sizeof(a.delay_ms));
			break;
		case SMTP_STARTTLS:
		case SMTP_MSG_END: {
			bool ok = next_answer(r);
			if (k == SMTP_MSG_END) {
				const struct smtp_envelope *e = smtp_envelope(r->s);
				if (!r->in_msg || e->size != r->body_len)
					abort();
				check_body(r->body, r->body_len);
				rec_add(&r->rec, 'D', r->body, r->body_len);
				rec_add(&r->rec, 'h', &e->received_hops, sizeof(e->received_hops));
				r->in_msg = false;
			} else {
				r->drop_turn = true;
			}
			rec_add(&r->rec, k == SMTP_MSG_END ? 'E' : 'T', &ok, 1);
			if (r->answer_at_once) {
				answer(r, k, ok);
			} else {
				r->pending = k;
				r->pending_ok = ok;
			}
			break;
		}
		case SMTP_MSG_BEGIN: {
			const struct smtp_envelope *e = smtp_envelope(r->s);
			bool ok = next_answer(r);
			if (r->in_msg || !e->mail_from || e->n_rcpts == 0)
				abort();
			rec_add(&r->rec, 'B', e->mail_from, strlen(e->mail_from));
			for (size_t i = 0; i < e->n_rcpts; i++) {
				const struct smtp_rcpt *rc = &e->rcpts[i];
				if (strlen(rc->addr) <= rc->local_len ||
				    rc->addr[rc->local_len] != '@')
					abort();
				rec_add(&r->rec, 'r', rc->addr, strlen(rc->addr));
			}
			rec_add(&r->rec, 'b', &ok, 1);
			r->in_msg = ok;
			r->body_len = 0;
			late_event(r);
			smtp_msg_begun(r->s, ok);
			break;
		}
		case SMTP_MSG_DATA:
			if (!r->in_msg || !a.text || a.len == 0)
				abort();
			if (VEC_RESERVE(r->body, r->body_cap, r->body_len + a.len) < 0)
				abort();
			memcpy(r->body + r->body_len, a.text, a.len);
			r->body_len += a.len;
			break;
		case SMTP_MSG_ABORT:
			if (!r->in_msg)
				abort();
			r->in_msg = false;
			rec_add(&r->rec, 'A', "", 0);
			break;
		case SMTP_MAILCHECK: {
			bool ok = next_answer(r);
			rec_add(&r->rec, 'M', &ok, 1);
			smtp_mail_checked(r->s, ok ? NULL : "550 5.7.1 Not forward-confirmed");
			break;
		}
		case SMTP_LOG:
			if (!a.text)
				abort();
			break;
		case SMTP_COMMAND: /* one line, a credential never shown */
			if (!a.text || memchr(a.text, '\n', a.len) || a.len > 512 ||
			    (a.len > 5 && strncasecmp(a.text, "AUTH ", 5) == 0 &&
			     strcasecmp(a.text, "AUTH ****") != 0))
				abort();
			break;
		case SMTP_RCPT_VERIFY: /* an address; the verdict from its length (the same in
		                        * both runs), with a hostile text for the 550 */
			if (!a.text || a.len == 0 || !memchr(a.text, '@', a.len))
				abort();
			smtp_rcpt_verified(r->s, (enum smtp_verdict)(a.len % 3),
			                   "5.1.1 <x@y>: no\r\n421 injected\x01");
			break;
		case SMTP_CLOSE:
			if (r->in_msg || r->expect_250)
				abort(); /* a begun message must be aborted first, a committed one told */
			r->closed = true;
			rec_add(&r->rec, 'C', "", 0);
			break;
		}
	}
}

static void
feed(struct run *r, const char *p, size_t n)
{
	while (n > 0 && !r->closed && !r->drop_turn) {
		size_t space = 0;
		if (smtp_input_paused(r->s))
			abort(); /* stalled: no action pending, yet no input taken */
		char *in = smtp_input_space(r->s, &space);
		if (space == 0)
			abort();
		size_t k = n < space ? n : space;
		memcpy(in, p, k);
		smtp_input_commit(r->s, k);
		p += k;
		n -= k;
		drain(r);
	}
}

/* cut_seed 0: turns whole; else extra cuts, one in every 2^(1..8) bytes. */
static void
run(struct run *r, const struct plan *pl, const struct smtp_params *prm0, uint64_t cut_seed)
{
	struct smtp_params prm = *prm0;
	struct smtp_policy pol = *prm0->policy;
	uint64_t x = cut_seed * 0x9e3779b97f4a7c15ull + 7;
	unsigned shift = 1 + (unsigned)(cut_seed % 8);
	size_t pos = 0;

	*r = (struct run){.pl = pl, .pending = SMTP_NONE, .answer_at_once = cut_seed & 1};
	pol.rate_arg = r;
	prm.policy = &pol;
	r->s = smtp_new(&prm);
	if (!r->s)
		return;
	drain(r);
	for (size_t t = 0; t < pl->n_turns && !r->closed; t++) {
		r->drop_turn = false;
		while (pos < pl->turn_end[t] && !r->closed && !r->drop_turn) {
			size_t stop = pl->turn_end[t];
			if (cut_seed) {
				size_t step = 1 + (size_t)(rnd(&x) % (2u << shift));
				if (pos + step < stop)
					stop = pos + step;
			}
			feed(r, pl->in + pos, stop - pos);
			pos = stop;
		}
		pos = pl->turn_end[t];
		switch (pl->after[t]) {
		case EV_NONE:
			break;
		case EV_EOF:
			smtp_eof(r->s);
			break;
		case EV_IDLE:
			smtp_timeout(r->s, SMTP_TIMEOUT_IDLE);
			break;
		case EV_SESSION:
			smtp_timeout(r->s, SMTP_TIMEOUT_SESSION);
			break;
		case EV_SHUTDOWN:
			smtp_shutdown(r->s);
			break;
		case EV_LATE_IDLE:
		case EV_LATE_SESSION:
			r->late = pl->after[t];
			break;
		}
		drain(r);
	}
	smtp_free(r->s);
	free(r->body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t errs[] = {0, 1, 3, SMTP_UNLIMITED};
	struct smtp_policy k = {.banner = "220 mx.example.com ESMTP ready",
	                        .fqdn = "mx.example.com",
	                        .postmaster_domain = "corp.example",
	                        .domain_accepted = domain_accepted,
	                        .recipient_known = recipient_known};
	struct plan pl = {0};
	struct run a, b;

	if (size < 4)
		return 0;
	uint8_t b0 = data[0], b1 = data[1], b2 = data[2], b3 = data[3];
	k.enhanced_status_codes = b0 & 1;
	k.pipelining = b0 & 2;
	/* permission groups: none, anonymous-users, partners or exchange-servers; b3 & 64
	 * adds anonymous-users */
	unsigned group = (b0 >> 2) & 3;
	k.anonymous_users = group == 1 || (b3 & 64);
	k.partners = group == 2;
	k.exchange_servers = group == 3;
	k.require_tls = b0 & 16;
	k.starttls = b0 & 32;
	pl.tls_available = b0 & 64;
	k.smtp_utf8 = b0 & 128;
	k.eight_bit_mime = b1 & 1;
	k.max_message_size = b1 & 2 ? 300 : 37748736;
	k.max_header_size = b1 & 4 ? 64 : 262144;
	k.max_recipients = b1 & 8 ? 2 : 200;
	k.max_protocol_errors = errs[(b1 >> 4) & 3];
	k.max_hop_count = b1 & 64 ? 1 : 60;
	k.tarpit_interval_ms = b1 & 128 ? 5000 : 0;
	k.log_commands = b3 & 1;
	k.mail_check = b2 & 64; /* remote-hostname-suffixes: each MAIL waits for a verdict */
	k.bare_lf_normalize = b3 & 128;
	k.chunking = !(b2 & 128);
	k.verify_recipients = b2 & 32;
	pl.rate = b3 & 2 ? (b3 >> 2) & 3 : -1;
	k.rate_ok = pl.rate >= 0 ? rate_cb : NULL;
	const char *client = clients[(b3 >> 4) & 3];
	/* the oracle of Exchange's rule: anonymous sessions from IPv4 or global IPv6 only */
	bool authenticated = (k.partners || k.exchange_servers) && !k.anonymous_users;
	bool exempt_source = strncmp(client, "fe80:", 5) == 0 || strncmp(client, "fec0:", 5) == 0;
	pl.tarpit = authenticated || exempt_source ? 0 : (unsigned)k.tarpit_interval_ms;

	pl.in = (const char *)data + 4;
	pl.len = size - 4;
	uint64_t x = ((uint64_t)b2 << 8 | b3) * 0x2545f4914f6cdd1dull + 1;
	pl.answers = rnd(&x) | rnd(&x) << 1; /* mostly ok */
	/* turns end after some LFs; the last one at the end of the input */
	for (size_t i = 0; i < pl.len && pl.n_turns < MAX_TURNS - 1; i++) {
		if (pl.in[i] == '\n' && rnd(&x) % 4 != 0) {
			pl.turn_end[pl.n_turns] = i + 1;
			uint64_t ev = rnd(&x) % 128;
			pl.after[pl.n_turns++] = ev == 0   ? EV_IDLE
			                         : ev == 1 ? EV_SESSION
			                         : ev == 2 ? EV_SHUTDOWN
			                         : ev <= 4 ? EV_LATE_SESSION
			                         : ev == 5 ? EV_LATE_IDLE
			                                   : EV_NONE;
		}
	}
	pl.turn_end[pl.n_turns] = pl.len;
	pl.after[pl.n_turns++] = rnd(&x) % 2 ? EV_EOF : EV_NONE;

	struct smtp_params prm = {
	        .policy = &k, .client_ip = client, .tls_available = pl.tls_available};
	run(&a, &pl, &prm, 0);
	run(&b, &pl, &prm, 1 + (rnd(&x) % 1000));
	if (!a.sync421 && !b.sync421 &&
	    (a.rec.len != b.rec.len || (a.rec.len && memcmp(a.rec.p, b.rec.p, a.rec.len) != 0))) {
		fprintf(stderr, "the record depends on how the input was cut\n");
		for (size_t t = 0; t < pl.n_turns; t++)
			fprintf(stderr, "turn %zu ends at %zu, then event %d\n", t, pl.turn_end[t],
			        (int)pl.after[t]);
		rec_print("whole turns", &a.rec);
		rec_print("cut", &b.rec);
		abort();
	}
	free(a.rec.p);
	free(b.rec.p);
	return 0;
}
