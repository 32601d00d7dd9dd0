#include "queue/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "conf/config.h"
#include "net/smtpc.h"

#define READ_BUF 65536

struct relay_conn {
	struct smtpc c;
	char peer[320];
	char tlsinfo[128];
};

/* ---- connecting ---------------------------------------------------------------------- */

static struct relay_conn *
dial(const struct relay_opts *o, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[8], addr[64] = "?";
	struct relay_conn *c;
	int last = 0, rc;

	snprintf(port, sizeof(port), "%u", o->port);
	rc = getaddrinfo(o->host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve the relay host %s: %s", o->host,
		         gai_strerror(rc));
		return NULL;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		freeaddrinfo(res);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	smtpc_init(&c->c, o->timeout_ms);
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		void *a =
		        ai->ai_family == AF_INET
		                ? (void *)&((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr
		                : (void *)&((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
		inet_ntop(ai->ai_family, a, addr, sizeof(addr));
		if (transport_socket(&c->c.t, ai->ai_family, NULL, 0) == 0 &&
		    transport_connect(&c->c.t, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		last = errno;
		transport_close(&c->c.t);
	}
	freeaddrinfo(res);
	if (c->c.t.fd < 0) {
		snprintf(err, errlen, "cannot connect to %s[%s]:%u: %s", o->host, addr, o->port,
		         strerror(last));
		smtpc_release(&c->c);
		free(c);
		return NULL;
	}
	if (strcmp(o->host, addr) == 0)
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", addr, o->port);
	else
		snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", o->host, addr, o->port);
	return c;
}

static void
drop(struct relay_conn *c)
{
	smtpc_release(&c->c);
	free(c);
}

static int
greet(struct relay_conn *c, const char *helo, char *err, size_t errlen)
{
	struct smtpc_reply r;

	if (smtpc_ehlo(&c->c, helo, &r) < 0) {
		snprintf(err, errlen, "%s: connection lost during EHLO: %s", c->peer, c->c.why);
		return -1;
	}
	if (r.code / 100 != 2) {
		snprintf(err, errlen, "%s refused EHLO/HELO: %d %s", c->peer, r.code, r.text);
		return -1;
	}
	return 0;
}

/* STARTTLS as o->tls says.  -1 when the connection is no use (*tls_broke: because TLS
 * failed, worth a plaintext retry). */
static int
start_tls(struct relay_conn *c, const struct relay_opts *o, bool *tls_broke, char *err,
          size_t errlen)
{
	struct smtpc_reply r;

	if (!c->c.starttls) {
		if (o->tls != RELAY_TLS_REQUIRED)
			return 0;
		snprintf(err, errlen,
		         "%s does not offer STARTTLS and relay-tls = required: nothing sent",
		         c->peer);
		return -1;
	}
	if (smtpc_starttls(&c->c, o->tls_ctx, o->host, &r) < 0) {
		*tls_broke = r.code == 220; /* the handshake, not the connection, failed */
		snprintf(err, errlen, "%s: %s%s", c->peer,
		         r.code == 220 ? "" : "STARTTLS: ", c->c.why);
		return -1;
	}
	if (r.code != 220) {
		if (o->tls != RELAY_TLS_REQUIRED)
			return 0; /* opportunistic: carry on in plaintext */
		snprintf(err, errlen, "%s refused STARTTLS: %d %s", c->peer, r.code, r.text);
		return -1;
	}
	snprintf(c->tlsinfo, sizeof(c->tlsinfo), "%s %s", tls_version(c->c.t.tls),
	         tls_cipher(c->c.t.tls));
	return greet(c, o->helo, err, errlen);
}

/* One attempt; *tls_broke says a handshake failed (worth a plaintext retry). */
static struct relay_conn *
open_once(const struct relay_opts *o, bool use_tls, bool *tls_broke, char *err, size_t errlen)
{
	struct relay_conn *c = dial(o, err, errlen);
	struct smtpc_reply r;

	*tls_broke = false;
	if (!c)
		return NULL;
	if (smtpc_read_reply(&c->c, &r) < 0) {
		snprintf(err, errlen, "%s: no greeting: %s", c->peer, c->c.why);
		goto fail;
	}
	if (r.code != 220) {
		snprintf(err, errlen, "%s greeted with %d %s", c->peer, r.code, r.text);
		goto fail;
	}
	if (greet(c, o->helo, err, errlen) < 0)
		goto fail;
	if (use_tls && start_tls(c, o, tls_broke, err, errlen) < 0)
		goto fail;
	return c;
fail:
	drop(c);
	return NULL;
}
struct relay_conn *
relay_open(const struct relay_opts *o, char *err, size_t errlen)
{
	bool broke;
	struct relay_conn *c = open_once(o, o->tls != RELAY_TLS_NONE, &broke, err, errlen);

	if (!c && broke && o->tls == RELAY_TLS_OPPORTUNISTIC) {
		/* opportunistic TLS that fails is not worth a bounce: plaintext instead */
		log_msg(LOG_LVL_WARNING,
		        "relay: %s; retrying without TLS (relay-tls = "
		        "opportunistic)",
		        err);
		c = open_once(o, false, &broke, err, errlen);
	}
	return c;
}

const char *
relay_peer(const struct relay_conn *c)
{
	return c->peer;
}

const char *
relay_tls_info(const struct relay_conn *c)
{
	return c->c.t.tls ? c->tlsinfo : "none";
}

int
relay_reset(struct relay_conn *c, char *err, size_t errlen)
{
	struct smtpc_reply r;

	if (smtpc_command(&c->c, &r, "RSET") < 0) {
		snprintf(err, errlen, "%s", c->c.why);
		return -1;
	}
	if (r.code != 250) {
		snprintf(err, errlen, "RSET answered %d %s", r.code, r.text);
		return -1;
	}
	return 0;
}

bool
relay_chunking(const struct relay_conn *c)
{
	return c->c.chunking;
}

void
relay_abort(struct relay_conn *c)
{
	if (c)
		drop(c);
}

void
relay_close(struct relay_conn *c)
{
	if (!c)
		return;
	smtpc_quit(&c->c);
	drop(c);
}

/* ---- one message --------------------------------------------------------------------- */

/* Streams the message: dot-stuffed after DATA's 354, or as it is behind a queued
 * "BDAT <size> LAST" (bdat; then flushed).  -2 when our own file cannot be read (the
 * connection is mid-DATA or mid-chunk), -1 when the connection broke. */
static int
send_data(struct relay_conn *c, int fd, uint64_t offset, uint64_t size, bool bdat)
{
	char *buf = malloc(READ_BUF);
	uint64_t left = size;
	int rc = -1;

	if (!buf)
		return -2;
	if (!bdat)
		smtpc_data_begin(&c->c);
	while (left > 0) {
		ssize_t n =
		        pread(fd, buf, left < READ_BUF ? (size_t)left : READ_BUF, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -2;
			goto out;
		}
		offset += (uint64_t)n;
		left -= (uint64_t)n;
		if ((bdat ? smtpc_raw_write(&c->c, buf, (size_t)n)
		          : smtpc_data_write(&c->c, buf, (size_t)n)) < 0)
			goto out;
	}
	rc = bdat ? smtpc_flush(&c->c) : smtpc_data_end(&c->c);
out:
	free(buf);
	return rc;
}

/* A recipient's fate from MAIL's reply and its RCPT's reply r: refused by MAIL's refusal
 * if there was one, else by r's; a refusal goes into res.  Returns 1 when accepted. */
static int
rcpt_outcome(const struct smtpc_reply *mail, const struct smtpc_reply *r, bool *accepted,
             struct relay_result *res)
{
	const struct smtpc_reply *d = mail->code / 100 != 2 ? mail : r;

	if (d->code / 100 == 2) {
		*accepted = true;
		return 1;
	}
	res->code = d->code;
	snprintf(res->text, sizeof(res->text), "%s", d->text);
	return 0;
}

static void
set_all(const struct spool_entry *e, const bool *pending, struct relay_result *res, int code,
        const char *text, const bool *only)
{
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i] || (only && !only[i]))
			continue;
		res[i].code = code;
		snprintf(res[i].text, sizeof(res[i].text), "%s", text);
	}
}

static int
rset(struct relay_conn *c)
{
	struct smtpc_reply r;

	return smtpc_command(&c->c, &r, "RSET") < 0 ? -1 : 0;
}

static void
mail_line(const struct smtpc *s, const struct spool_entry *e, uint64_t size, char *line, size_t len)
{
	snprintf(line, len, "MAIL FROM:<%s> SIZE=%llu%s%s", e->sender, (unsigned long long)size,
	         e->body_8bit && s->eightbit ? " BODY=8BITMIME" : "",
	         e->smtputf8 ? " SMTPUTF8" : "");
}

/* MAIL, every RCPT and DATA: when the next hop pipelines (RFC 2920) in one write, the
 * replies read in order; else one command at a time, stopping at the first refusal that
 * decides the message.  Returns 1 to send the data (354, and a recipient accepted), 2 to
 * send it with BDAT instead (stepwise, CHUNKING offered, a recipient accepted), 0 when
 * the message is decided without it (res filled), -1 when the connection broke. */
static int
envelope(struct relay_conn *c, const struct spool_entry *e, const bool *pending,
         struct relay_result *res, bool *accepted, uint64_t size)
{
	struct smtpc *s = &c->c;
	bool pipe = s->pipelining;
	int (*put)(struct smtpc *, const char *) = pipe ? smtpc_queue : smtpc_send;
	struct smtpc_reply mail, r;
	char line[SMTPC_LINE_MAX];
	size_t n_acc = 0;

	mail_line(s, e, size, line, sizeof(line));
	if (put(s, line) < 0)
		return -1;
	for (size_t i = 0; pipe && i < e->n_rcpts; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<%s>", e->rcpts[i]);
		if (pending[i] && smtpc_queue(s, line) < 0)
			return -1;
	}
	if ((pipe && (smtpc_queue(s, "DATA") < 0 || smtpc_flush(s) < 0)) ||
	    smtpc_read_reply(s, &mail) < 0)
		return -1;
	if (!pipe && mail.code / 100 != 2) {
		set_all(e, pending, res, mail.code, mail.text, NULL);
		return rset(c);
	}
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i])
			continue;
		snprintf(line, sizeof(line), "RCPT TO:<%s>", e->rcpts[i]);
		if ((!pipe && smtpc_send(s, line) < 0) || smtpc_read_reply(s, &r) < 0)
			return -1;
		n_acc += rcpt_outcome(&mail, &r, &accepted[i], &res[i]);
	}
	if (!pipe && n_acc == 0)
		return rset(c);
	if (!pipe && s->chunking)
		return 2; /* the caller sends BDAT <size> LAST and the message */
	if ((!pipe && smtpc_send(s, "DATA") < 0) || smtpc_read_reply(s, &r) < 0)
		return -1;
	if (r.code != 354) {
		set_all(e, pending, res, r.code, r.text, accepted);
		return rset(c);
	}
	if (n_acc == 0) /* 354 with no recipient: end the empty message at once */
		return smtpc_send(s, ".") < 0 || smtpc_read_reply(s, &r) < 0 ? -1 : 0;
	return 1;
}

/* A next hop with PIPELINING and CHUNKING (RFC 2920, RFC 3030 §4.2: BDAT may be
 * pipelined): MAIL, every RCPT, "BDAT <size> LAST" and the message itself in one stream,
 * then the replies in order.  When MAIL or every RCPT is refused, the server reads and
 * drops the chunk and refuses BDAT (503 or 554), which decides nothing more.  0 when the
 * replies are in (res filled), -2 when our file cannot be read, -1 when the connection
 * broke (after the chunk was sent, the outcome is unknown, as after DATA's dot). */
static int
transaction_bdat(struct relay_conn *c, const struct spool_entry *e, int fd, const bool *pending,
                 struct relay_result *res, bool *accepted, uint64_t offset, uint64_t size)
{
	struct smtpc *s = &c->c;
	struct smtpc_reply mail, r;
	char line[SMTPC_LINE_MAX];
	size_t n_acc = 0;
	int rc = -1;

	mail_line(s, e, size, line, sizeof(line));
	if (smtpc_queue(s, line) < 0)
		return -1;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		snprintf(line, sizeof(line), "RCPT TO:<%s>", e->rcpts[i]);
		if (pending[i] && smtpc_queue(s, line) < 0)
			return -1;
	}
	if (smtpc_bdat_last(s, size) < 0 || (rc = send_data(c, fd, offset, size, true)) < 0)
		return rc;
	if (smtpc_read_reply(s, &mail) < 0)
		return -1;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i])
			continue;
		if (smtpc_read_reply(s, &r) < 0)
			return -1;
		n_acc += rcpt_outcome(&mail, &r, &accepted[i], &res[i]);
	}
	if (smtpc_read_reply(s, &r) < 0)
		return -1;
	if (n_acc > 0)
		set_all(e, pending, res, r.code, r.text, accepted);
	return 0;
}

/* What the next hop said it cannot take, decided before any command: 1 (res filled). */
static int
refuse_early(struct relay_conn *c, const struct spool_entry *e, const bool *pending,
             struct relay_result *res, uint64_t size)
{
	char text[512];

	if (e->smtputf8 && !c->c.smtputf8) {
		snprintf(text, sizeof(text),
		         "5.6.7 %s does not support SMTPUTF8, which the message needs", c->peer);
		set_all(e, pending, res, 553, text, NULL);
		return 1;
	}
	if (c->c.size_limit && size > c->c.size_limit) {
		snprintf(text, sizeof(text),
		         "5.3.4 message of %llu bytes exceeds the %llu bytes %s accepts",
		         (unsigned long long)size, (unsigned long long)c->c.size_limit, c->peer);
		set_all(e, pending, res, 552, text, NULL);
		return 1;
	}
	return 0;
}

/* The message after the envelope (envelope() returned 1: DATA's 354, or 2: BDAT).  -2 when
 * our file cannot be read, -1 when the connection broke, 0 with res filled. */
static int
message(struct relay_conn *c, const struct spool_entry *e, int fd, const bool *pending,
        struct relay_result *res, const bool *accepted, uint64_t size, bool bdat)
{
	struct smtpc_reply r;
	int go;

	if (bdat && smtpc_bdat_last(&c->c, size) < 0)
		return -1;
	if ((go = send_data(c, fd, e->prefix_len, size, bdat)) < 0)
		return go;
	/* after "." or the chunk, a broken connection leaves the outcome unknown (relay.h) */
	if (smtpc_read_reply(&c->c, &r) < 0)
		return -1;
	set_all(e, pending, res, r.code, r.text, accepted);
	return 0;
}

int
relay_send(struct relay_conn *c, const struct spool_entry *e, int datafd, const bool *pending,
           struct relay_result *res, char *err, size_t errlen)
{
	uint64_t size = e->size - e->prefix_len;
	bool *accepted = NULL;
	int rc;

	for (size_t i = 0; i < e->n_rcpts; i++) {
		res[i].code = 0;
		res[i].text[0] = '\0';
	}
	if (refuse_early(c, e, pending, res, size))
		return 0;
	if (!(accepted = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (c->c.pipelining && c->c.chunking)
		rc = transaction_bdat(c, e, datafd, pending, res, accepted, e->prefix_len, size);
	else if ((rc = envelope(c, e, pending, res, accepted, size)) > 0)
		rc = message(c, e, datafd, pending, res, accepted, size, rc == 2);
	if (rc == -2) /* the connection is mid-DATA or mid-chunk: unusable */
		snprintf(err, errlen, "cannot read message %s from the spool: %s", e->id,
		         strerror(errno));
	else if (rc < 0)
		snprintf(err, errlen, "connection to %s lost: %s", c->peer, c->c.why);
	free(accepted);
	return rc < 0 ? -1 : 0;
}

/* ---- recipient probes ---------------------------------------------------------------- */

int
relay_probe(struct relay_conn *c, const char *rcpt, struct relay_result *res, char *err,
            size_t errlen)
{
	struct smtpc_reply r;
	char line[SMTPC_LINE_MAX];
	bool utf8 = false;

	res->code = 0;
	res->text[0] = '\0';
	for (const char *p = rcpt; *p; p++)
		utf8 |= (unsigned char)*p >= 0x80;
	if (utf8 && !c->c.smtputf8) {
		snprintf(err, errlen, "%s does not offer SMTPUTF8 for <%s>", c->peer, rcpt);
		return 0;
	}
	if (strlen(rcpt) > 500) {
		snprintf(err, errlen, "recipient too long to probe");
		return 0;
	}
	if (smtpc_command(&c->c, &r, utf8 ? "MAIL FROM:<> SMTPUTF8" : "MAIL FROM:<>") < 0)
		goto broke;
	if (r.code / 100 != 2) {
		/* not the recipient's fault: nothing is known of it */
		snprintf(err, errlen, "%s refused MAIL FROM:<>: %d %s", c->peer, r.code, r.text);
		return rset(c);
	}
	snprintf(line, sizeof(line), "RCPT TO:<%s>", rcpt);
	if (smtpc_command(&c->c, &r, line) < 0)
		goto broke;
	res->code = r.code;
	snprintf(res->text, sizeof(res->text), "%s", r.text);
	if (rset(c) < 0) {
		snprintf(err, errlen, "%s: connection lost at RSET: %s", c->peer, c->c.why);
		return -1;
	}
	return 0;
broke:
	snprintf(err, errlen, "%s: connection lost during the probe: %s", c->peer, c->c.why);
	return -1;
}
