#include "net/smtpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OUT_BUF 65536

/* ---- the reply parser ------------------------------------------------------------------ */

void
smtpc_parser_init(struct smtpc_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static enum smtpc_ev
bad(struct smtpc_parser *p, const char *why)
{
	p->failed = true;
	snprintf(p->error, sizeof(p->error), "malformed reply: %s", why);
	return SMTPC_BAD;
}

/* A whole line (CRLF removed) is in p->line: checks it against the reply so far. */
static enum smtpc_ev
finish_line(struct smtpc_parser *p)
{
	const char *l = p->line;
	int code;

	if (p->len < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0' ||
	    l[2] > '9')
		return bad(p, "a line must start with a code 200-559");
	if (p->len > 3 && l[3] != ' ' && l[3] != '-')
		return bad(p, "the code must be followed by a space, '-' or the end");
	for (size_t i = 3; i < p->len; i++) {
		unsigned char ch = (unsigned char)l[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			char why[64];
			snprintf(why, sizeof(why), "control character 0x%02x in a line", ch);
			return bad(p, why);
		}
	}
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (p->code && code != p->code) {
		char why[80];
		snprintf(why, sizeof(why), "a multi-line reply changes its code from %d to %d",
		         p->code, code);
		return bad(p, why);
	}
	p->code = code;
	p->lines++;
	p->line[p->len] = '\0';
	p->complete = true;
	if (p->len == 3 || l[3] == ' ') {
		p->done = true;
		return SMTPC_REPLY;
	}
	if (p->lines >= SMTPC_LINES_MAX) {
		char why[40];
		snprintf(why, sizeof(why), "more than %d lines", SMTPC_LINES_MAX);
		return bad(p, why);
	}
	return SMTPC_LINE;
}

enum smtpc_ev
smtpc_parse(struct smtpc_parser *p, const char *buf, size_t len, size_t *used)
{
	*used = 0;
	if (p->failed)
		return SMTPC_BAD;
	if (p->done) {
		p->done = false;
		p->code = 0;
		p->lines = 0;
	}
	if (p->complete) {
		p->complete = false;
		p->len = 0;
	}
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		bool cr_before = p->len > 0 && p->line[p->len - 1] == '\r';
		if (ch == '\n') {
			*used = i + 1;
			if (!cr_before)
				return bad(p, "lines must end in CRLF (RFC 5321 §2.3.8)");
			p->len--;
			return finish_line(p);
		}
		if (cr_before)
			return bad(p, "lines must end in CRLF (RFC 5321 §2.3.8)");
		if (p->len >= SMTPC_LINE_MAX - 1) {
			char why[48];
			snprintf(why, sizeof(why), "a line is longer than %d octets",
			         SMTPC_LINE_MAX);
			return bad(p, why);
		}
		p->line[p->len++] = ch;
	}
	*used = len;
	return SMTPC_MORE;
}

/* ---- the client ------------------------------------------------------------------------- */

void
smtpc_init(struct smtpc *c, uint64_t timeout_ms)
{
	memset(c, 0, sizeof(*c));
	transport_init(&c->t, timeout_ms);
	smtpc_parser_init(&c->p);
}

void
smtpc_release(struct smtpc *c)
{
	transport_close(&c->t);
	free(c->out);
	c->out = NULL;
}

static int
fail(struct smtpc *c, enum smtpc_fail f, int err, const char *why)
{
	c->fail = f;
	c->err = err;
	snprintf(c->why, sizeof(c->why), "%s", why);
	return -1;
}

/* A failed transport call: what (a reply, room to write) did not come in time, or why. */
static int
io_fail(struct smtpc *c, const char *what)
{
	int e = errno;
	char why[256];

	if (e == ETIMEDOUT)
		snprintf(why, sizeof(why), "no %s within %llus", what,
		         (unsigned long long)(c->t.timeout_ms + 999) / 1000);
	else if (e == ECONNRESET || e == EPIPE)
		snprintf(why, sizeof(why), "connection reset by the server");
	else if (e == EPROTO)
		snprintf(why, sizeof(why), "%s", c->t.error);
	else
		snprintf(why, sizeof(why), "%s", strerror(e));
	return fail(c, SMTPC_IO, e, why);
}

static void
ehlo_keyword(struct smtpc *c, const char *kw)
{
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = true;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		c->eightbit = true;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->smtputf8 = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = true;
	else if (strcasecmp(kw, "CHUNKING") == 0)
		c->chunking = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0'))
		c->size_limit = kw[4] ? strtoull(kw + 5, NULL, 10) : 0;
}

static void
got_line(struct smtpc *c, struct smtpc_reply *r)
{
	const char *text = c->p.len > 4 ? c->p.line + 4 : "";

	if (c->trace_cb)
		c->trace_cb(c->trace_arg, false, c->p.line, c->p.len);
	if (c->p.lines == 1)
		snprintf(r->text, sizeof(r->text), "%s", text);
	else if (c->in_ehlo) /* the first line names the server (RFC 5321 §4.1.1.1) */
		ehlo_keyword(c, text);
}

int
smtpc_read_reply(struct smtpc *c, struct smtpc_reply *r)
{
	r->code = 0;
	r->text[0] = '\0';
	c->fail = SMTPC_OK;
	transport_arm(&c->t);
	for (;;) {
		size_t used;
		enum smtpc_ev ev;

		if (c->in_off == c->in_len) {
			ssize_t n = c->t.read(&c->t, c->in, sizeof(c->in));
			c->in_off = c->in_len = 0;
			if (n == 0)
				return fail(c, SMTPC_CLOSED, 0,
				            c->p.len || (c->p.lines && !c->p.done)
				                    ? "connection closed by the server in the "
				                      "middle of a reply"
				                    : "connection closed by the server");
			if (n < 0)
				return io_fail(c, "reply");
			c->in_len = (size_t)n;
		}
		ev = smtpc_parse(&c->p, c->in + c->in_off, c->in_len - c->in_off, &used);
		c->in_off += used;
		if (ev == SMTPC_BAD)
			return fail(c, SMTPC_MALFORMED, 0, c->p.error);
		if (ev == SMTPC_MORE)
			continue;
		got_line(c, r);
		if (ev == SMTPC_REPLY) {
			r->code = c->p.code;
			return 0;
		}
	}
}

/* Bytes received and not yet parsed into a complete line. */
static size_t
buffered(const struct smtpc *c)
{
	return c->in_len - c->in_off + (c->p.complete ? 0 : c->p.len);
}

int
smtpc_flush(struct smtpc *c)
{
	int rc;

	if (c->out_len == 0)
		return 0;
	transport_arm(&c->t);
	rc = c->t.write(&c->t, c->out, c->out_len);
	c->out_len = 0;
	return rc < 0 ? io_fail(c, "room to write") : 0;
}

static int
out_put(struct smtpc *c, const char *p, size_t n)
{
	if (!c->out && !(c->out = malloc(OUT_BUF)))
		return fail(c, SMTPC_IO, ENOMEM, "out of memory");
	while (n > 0) {
		size_t room = OUT_BUF - c->out_len, k = n < room ? n : room;
		memcpy(c->out + c->out_len, p, k);
		c->out_len += k;
		p += k;
		n -= k;
		if (c->out_len == OUT_BUF && smtpc_flush(c) < 0)
			return -1;
	}
	return 0;
}

int
smtpc_queue(struct smtpc *c, const char *line)
{
	size_t len = strlen(line);

	c->fail = SMTPC_OK;
	if (len > SMTPC_LINE_MAX - 2)
		return fail(c, SMTPC_IO, EMSGSIZE, "command too long");
	if (c->trace_cb)
		c->trace_cb(c->trace_arg, true, line, len);
	return out_put(c, line, len) < 0 || out_put(c, "\r\n", 2) < 0 ? -1 : 0;
}

int
smtpc_send(struct smtpc *c, const char *line)
{
	return smtpc_queue(c, line) < 0 || smtpc_flush(c) < 0 ? -1 : 0;
}

int
smtpc_command(struct smtpc *c, struct smtpc_reply *r, const char *line)
{
	r->code = 0;
	r->text[0] = '\0';
	return smtpc_send(c, line) < 0 ? -1 : smtpc_read_reply(c, r);
}

int
smtpc_ehlo(struct smtpc *c, const char *helo, struct smtpc_reply *r)
{
	char line[SMTPC_LINE_MAX];
	int rc;

	c->pipelining = c->eightbit = c->smtputf8 = c->starttls = c->chunking = false;
	c->size_limit = 0;
	snprintf(line, sizeof(line), "EHLO %.500s", helo);
	c->in_ehlo = true;
	rc = smtpc_command(c, r, line);
	c->in_ehlo = false;
	if (rc < 0 || (r->code != 500 && r->code != 502))
		return rc;
	/* a server without ESMTP (RFC 5321 §3.2): HELO, and no extensions */
	c->pipelining = c->eightbit = c->smtputf8 = c->starttls = c->chunking = false;
	c->size_limit = 0;
	snprintf(line, sizeof(line), "HELO %.500s", helo);
	return smtpc_command(c, r, line);
}

int
smtpc_starttls(struct smtpc *c, struct tls_ctx *ctx, const char *host, struct smtpc_reply *r)
{
	size_t extra;

	if (smtpc_command(c, r, "STARTTLS") < 0 || r->code != 220)
		return r->code ? 0 : -1;
	if ((extra = buffered(c)) > 0) {
		char why[200];
		snprintf(why, sizeof(why),
		         "the server sent %zu bytes after its 220 to STARTTLS (RFC 3207 §4.2: "
		         "nothing may cross into the TLS session)",
		         extra);
		return fail(c, SMTPC_MALFORMED, 0, why);
	}
	if (transport_starttls(&c->t, ctx, host) < 0)
		return fail(c, SMTPC_IO, errno, c->t.error);
	c->in_off = c->in_len = 0;
	smtpc_parser_init(&c->p);
	c->pipelining = c->eightbit = c->smtputf8 = c->starttls = c->chunking = false;
	c->size_limit = 0;
	return 0;
}

int
smtpc_bdat_last(struct smtpc *c, uint64_t size)
{
	char line[64];

	snprintf(line, sizeof(line), "BDAT %llu LAST", (unsigned long long)size);
	return smtpc_queue(c, line);
}

int
smtpc_raw_write(struct smtpc *c, const char *buf, size_t len)
{
	c->fail = SMTPC_OK;
	return out_put(c, buf, len);
}

int
smtpc_data_begin(struct smtpc *c)
{
	c->out_len = 0;
	c->bol = true;
	c->last2[0] = '\r';
	c->last2[1] = '\n';
	return 0;
}

int
smtpc_data_write(struct smtpc *c, const char *buf, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		if (c->bol && buf[i] == '.') {
			if (out_put(c, buf + start, i - start) < 0 || out_put(c, ".", 1) < 0)
				return -1;
			start = i;
		}
		c->bol = buf[i] == '\n';
	}
	if (out_put(c, buf + start, n - start) < 0)
		return -1;
	if (n >= 2) {
		c->last2[0] = buf[n - 2];
		c->last2[1] = buf[n - 1];
	} else if (n == 1) {
		c->last2[0] = c->last2[1];
		c->last2[1] = buf[0];
	}
	return 0;
}

int
smtpc_data_end(struct smtpc *c)
{
	if (!(c->last2[0] == '\r' && c->last2[1] == '\n') && out_put(c, "\r\n", 2) < 0)
		return -1;
	if (out_put(c, ".\r\n", 3) < 0 || smtpc_flush(c) < 0)
		return -1;
	return 0;
}

void
smtpc_quit(struct smtpc *c)
{
	struct smtpc_reply r;

	if (smtpc_command(c, &r, "QUIT") == 0)
		transport_shutdown(&c->t);
}
