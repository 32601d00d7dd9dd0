#include "queue/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/log.h"
#include "conf/config.h"

#define REPLY_MAX_LINES 100
#define IO_BUF          65536

struct relay_conn {
	int fd;
	struct tls_conn *tls;
	char peer[320];
	char tlsinfo[128];
	char in[4096];
	size_t in_len, in_off;
	/* what the next hop offers */
	bool pipelining, eightbit, smtputf8, starttls;
	uint64_t size_limit; /* 0: none announced */
	char *out;           /* write buffer for message data */
	size_t out_len;
};

/* ---- low-level I/O ------------------------------------------------------------------ */

static int
raw_write(struct relay_conn *c, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n;
		if (c->tls) {
			size_t w = 0;
			enum tls_io r = tls_write(c->tls, buf, len, &w);
			if (r != TLS_IO_OK)
				return -1;
			n = (ssize_t)w;
		} else {
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
fill(struct relay_conn *c)
{
	ssize_t n;

	if (c->in_off > 0) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len == sizeof(c->in))
		return -1; /* a reply line longer than we accept */
	if (c->tls) {
		size_t r = 0;
		if (tls_read(c->tls, c->in + c->in_len, sizeof(c->in) - c->in_len, &r) != TLS_IO_OK)
			return -1;
		n = (ssize_t)r;
	} else {
		do
			n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return -1;
	}
	c->in_len += (size_t)n;
	return 0;
}

/* Reads one whole reply; text gets the last line's text (after "ddd "), the others
 * joined with spaces up to size.  For EHLO, lines is called with each line.  Returns the
 * code, or -1 when the connection broke or the reply was malformed. */
static int
read_reply(struct relay_conn *c, char *text, size_t size,
           void (*line_cb)(struct relay_conn *, const char *))
{
	int code = -1;
	size_t tl = 0;

	if (size)
		text[0] = '\0';
	for (int lines = 0; lines < REPLY_MAX_LINES; lines++) {
		char *nl;
		while (!(nl = memchr(c->in + c->in_off, '\n', c->in_len - c->in_off)))
			if (fill(c) < 0)
				return -1;
		char *line = c->in + c->in_off;
		size_t len = (size_t)(nl - line);
		c->in_off += len + 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		line[len] = '\0';
		if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
		    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-'))
			return -1;
		int this = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (code >= 0 && this != code)
			return -1;
		code = this;
		if (line_cb && len > 4)
			line_cb(c, line + 4);
		if (size && len > 4 && tl + 2 < size) {
			int n = snprintf(text + tl, size - tl, "%s%s", tl ? " " : "", line + 4);
			if (n > 0)
				tl = tl + (size_t)n < size ? tl + (size_t)n : size - 1;
		}
		if (len == 3 || line[3] == ' ')
			return code;
	}
	return -1;
}

static int
command(struct relay_conn *c, const char *line, char *text, size_t size)
{
	char buf[1100];
	int n = snprintf(buf, sizeof(buf), "%s\r\n", line);

	if (n < 0 || (size_t)n >= sizeof(buf) || raw_write(c, buf, (size_t)n) < 0)
		return -1;
	return read_reply(c, text, size, NULL);
}

static void
ehlo_line(struct relay_conn *c, const char *kw)
{
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = true;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		c->eightbit = true;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->smtputf8 = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = true;
	else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == ' ' || kw[4] == '\0'))
		c->size_limit = kw[4] ? strtoull(kw + 5, NULL, 10) : 0;
}

static int
greet(struct relay_conn *c, const char *helo, char *err, size_t errlen)
{
	char line[300], text[512];
	int code;

	c->pipelining = c->eightbit = c->smtputf8 = c->starttls = false;
	c->size_limit = 0;
	snprintf(line, sizeof(line), "EHLO %s", helo);
	if (raw_write(c, line, strlen(line)) < 0 || raw_write(c, "\r\n", 2) < 0)
		goto broken;
	code = read_reply(c, text, sizeof(text), ehlo_line);
	if (code < 0)
		goto broken;
	if (code / 100 == 2)
		return 0;
	/* an old server: HELO, and no extensions */
	snprintf(line, sizeof(line), "HELO %s", helo);
	code = command(c, line, text, sizeof(text));
	if (code < 0)
		goto broken;
	if (code / 100 == 2)
		return 0;
	snprintf(err, errlen, "%s refused EHLO and HELO: %d %s", c->peer, code, text);
	return -1;
broken:
	snprintf(err, errlen, "%s: connection lost during EHLO", c->peer);
	return -1;
}

/* ---- connecting ---------------------------------------------------------------------- */

static int
connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int flags = fcntl(fd, F_GETFL), rc;
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	rc = connect(fd, sa, len);
	if (rc < 0 && errno == EINPROGRESS) {
		rc = poll(&p, 1, timeout_ms);
		if (rc == 0) {
			errno = ETIMEDOUT;
			rc = -1;
		} else if (rc > 0) {
			int e = 0;
			socklen_t el = sizeof(e);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
			if (e) {
				errno = e;
				rc = -1;
			} else {
				rc = 0;
			}
		}
	}
	fcntl(fd, F_SETFL, flags);
	return rc;
}

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
	c->fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		void *a =
		        ai->ai_family == AF_INET
		                ? (void *)&((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr
		                : (void *)&((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
		inet_ntop(ai->ai_family, a, addr, sizeof(addr));
		if (connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, (int)o->timeout_ms) == 0) {
			c->fd = fd;
			break;
		}
		last = errno;
		close(fd);
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		snprintf(err, errlen, "cannot connect to %s[%s]:%u: %s", o->host, addr, o->port,
		         strerror(last));
		free(c);
		return NULL;
	}
	struct timeval tv = {.tv_sec = (time_t)(o->timeout_ms / 1000),
	                     .tv_usec = (suseconds_t)(o->timeout_ms % 1000 * 1000)};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (strcmp(o->host, addr) == 0)
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", addr, o->port);
	else
		snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", o->host, addr, o->port);
	return c;
}

static void
drop(struct relay_conn *c)
{
	if (c->tls) {
		tls_conn_free(c->tls);
		c->tls = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	free(c);
}

/* One attempt; *tls_broke says a handshake failed (worth a plaintext retry). */
static struct relay_conn *
open_once(const struct relay_opts *o, bool use_tls, bool *tls_broke, char *err, size_t errlen)
{
	struct relay_conn *c = dial(o, err, errlen);
	char text[512];
	int code;

	*tls_broke = false;
	if (!c)
		return NULL;
	code = read_reply(c, text, sizeof(text), NULL);
	if (code < 0) {
		snprintf(err, errlen, "%s: no greeting (connection closed or garbled)", c->peer);
		goto fail;
	}
	if (code != 220) {
		snprintf(err, errlen, "%s greeted with %d %s", c->peer, code, text);
		goto fail;
	}
	if (greet(c, o->helo, err, errlen) < 0)
		goto fail;
	if (!use_tls)
		return c;
	if (!c->starttls) {
		if (o->tls == RELAY_TLS_REQUIRED) {
			snprintf(
			        err, errlen,
			        "%s does not offer STARTTLS and relay-tls = required: nothing sent",
			        c->peer);
			goto fail;
		}
		return c;
	}
	code = command(c, "STARTTLS", text, sizeof(text));
	if (code != 220) {
		if (o->tls == RELAY_TLS_REQUIRED || code < 0) {
			snprintf(err, errlen, "%s refused STARTTLS: %d %s", c->peer, code, text);
			*tls_broke = code >= 0;
			goto fail;
		}
		return c; /* opportunistic: carry on in plaintext */
	}
	c->in_len = c->in_off = 0; /* nothing read before the handshake survives it */
	if (!(c->tls = tls_client_conn_new(o->tls_ctx, c->fd, o->host))) {
		snprintf(err, errlen, "%s: cannot start TLS", c->peer);
		goto fail;
	}
	char herr[200];
	if (tls_handshake(c->tls, herr, sizeof(herr)) != TLS_IO_OK) {
		snprintf(err, errlen, "%s: TLS handshake failed: %s", c->peer, herr);
		*tls_broke = true;
		goto fail;
	}
	snprintf(c->tlsinfo, sizeof(c->tlsinfo), "%s %s", tls_version(c->tls), tls_cipher(c->tls));
	if (greet(c, o->helo, err, errlen) < 0)
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
	return c->tls ? c->tlsinfo : "none";
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
	char text[128];

	if (!c)
		return;
	if (command(c, "QUIT", text, sizeof(text)) >= 0 && c->tls)
		tls_shutdown(c->tls);
	drop(c);
}

/* ---- one message --------------------------------------------------------------------- */

static int
out_flush(struct relay_conn *c)
{
	int rc = raw_write(c, c->out, c->out_len);
	c->out_len = 0;
	return rc;
}

static int
out_put(struct relay_conn *c, const char *p, size_t n)
{
	while (n > 0) {
		size_t room = IO_BUF - c->out_len, k = n < room ? n : room;
		memcpy(c->out + c->out_len, p, k);
		c->out_len += k;
		p += k;
		n -= k;
		if (c->out_len == IO_BUF && out_flush(c) < 0)
			return -1;
	}
	return 0;
}

/* Streams the message with dot-stuffing (RFC 5321 §4.5.2) and the final ".". */
static int
send_data(struct relay_conn *c, int fd, uint64_t offset, uint64_t size)
{
	char buf[IO_BUF];
	bool bol = true; /* at the beginning of a line */
	char last2[2] = {'\r', '\n'};
	uint64_t left = size;

	if (!c->out && !(c->out = malloc(IO_BUF)))
		return -1;
	c->out_len = 0;
	while (left > 0) {
		ssize_t n = pread(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf),
		                  (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -2; /* our own file: not the connection's fault */
		offset += (uint64_t)n;
		left -= (uint64_t)n;
		size_t start = 0;
		for (size_t i = 0; i < (size_t)n; i++) {
			if (bol && buf[i] == '.') {
				if (out_put(c, buf + start, i - start) < 0 ||
				    out_put(c, ".", 1) < 0)
					return -1;
				start = i;
			}
			bol = buf[i] == '\n';
		}
		if (out_put(c, buf + start, (size_t)n - start) < 0)
			return -1;
		if (n >= 2) {
			last2[0] = buf[n - 2];
			last2[1] = buf[n - 1];
		} else {
			last2[0] = last2[1];
			last2[1] = buf[0];
		}
	}
	if (!(last2[0] == '\r' && last2[1] == '\n') && out_put(c, "\r\n", 2) < 0)
		return -1;
	if (out_put(c, ".\r\n", 3) < 0 || out_flush(c) < 0)
		return -1;
	return 0;
}

static void
set_all(const struct spool_entry *e, const bool *pending, struct relay_result *res, int code,
        const char *text, bool only_accepted, const bool *accepted)
{
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i] || (only_accepted && !accepted[i]))
			continue;
		res[i].code = code;
		snprintf(res[i].text, sizeof(res[i].text), "%s", text);
	}
}

/* The envelope when the next hop pipelines (RFC 2920): MAIL, every RCPT and DATA in one
 * write, the replies read in order.  Returns 1 to send the data (354, and a recipient
 * accepted), 0 when the message is decided without it (res filled), -1 when the
 * connection broke. */
static int
envelope_pipelined(struct relay_conn *c, const struct spool_entry *e, const bool *pending,
                   struct relay_result *res, bool *accepted, const char *cmds, size_t clen)
{
	char text[512], mail_text[512];
	size_t n_acc = 0;
	int code, mail_code;

	if (raw_write(c, cmds, clen) < 0 ||
	    (mail_code = read_reply(c, text, sizeof(text), NULL)) < 0)
		return -1;
	snprintf(mail_text, sizeof(mail_text), "%s", text);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i])
			continue;
		if ((code = read_reply(c, text, sizeof(text), NULL)) < 0)
			return -1;
		if (mail_code / 100 != 2) {
			res[i].code = mail_code;
			snprintf(res[i].text, sizeof(res[i].text), "%s", mail_text);
		} else if (code / 100 == 2) {
			accepted[i] = true;
			n_acc++;
		} else {
			res[i].code = code;
			snprintf(res[i].text, sizeof(res[i].text), "%s", text);
		}
	}
	if ((code = read_reply(c, text, sizeof(text), NULL)) < 0)
		return -1;
	if (code != 354) {
		set_all(e, pending, res, code, text, true, accepted);
		return command(c, "RSET", text, sizeof(text)) < 0 ? -1 : 0;
	}
	if (n_acc == 0) {
		/* 354 with no recipient: end the empty message at once */
		if (raw_write(c, ".\r\n", 3) < 0 || read_reply(c, text, sizeof(text), NULL) < 0)
			return -1;
		return 0;
	}
	return 1;
}

/* The envelope one command at a time (mail_line is the MAIL command); returns as
 * envelope_pipelined() does. */
static int
envelope_stepwise(struct relay_conn *c, const struct spool_entry *e, const bool *pending,
                  struct relay_result *res, bool *accepted, const char *mail_line)
{
	char line[1100], text[512];
	size_t n_acc = 0;
	int code;

	if ((code = command(c, mail_line, text, sizeof(text))) < 0)
		return -1;
	if (code / 100 != 2) {
		set_all(e, pending, res, code, text, false, NULL);
		return command(c, "RSET", text, sizeof(text)) < 0 ? -1 : 0;
	}
	for (size_t i = 0; i < e->n_rcpts; i++) {
		if (!pending[i])
			continue;
		snprintf(line, sizeof(line), "RCPT TO:<%s>", e->rcpts[i]);
		if ((code = command(c, line, text, sizeof(text))) < 0)
			return -1;
		if (code / 100 == 2) {
			accepted[i] = true;
			n_acc++;
		} else {
			res[i].code = code;
			snprintf(res[i].text, sizeof(res[i].text), "%s", text);
		}
	}
	if (n_acc == 0)
		return command(c, "RSET", text, sizeof(text)) < 0 ? -1 : 0;
	if ((code = command(c, "DATA", text, sizeof(text))) < 0)
		return -1;
	if (code != 354) {
		set_all(e, pending, res, code, text, true, accepted);
		return command(c, "RSET", text, sizeof(text)) < 0 ? -1 : 0;
	}
	return 1;
}

int
relay_send(struct relay_conn *c, const struct spool_entry *e, int datafd, const bool *pending,
           struct relay_result *res, char *err, size_t errlen)
{
	uint64_t size = e->size - e->prefix_len;
	char line[1100], text[512];
	bool *accepted = calloc(e->n_rcpts ? e->n_rcpts : 1, sizeof(bool));
	int code, rc = -1, go;

	if (!accepted) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < e->n_rcpts; i++) {
		res[i].code = 0;
		res[i].text[0] = '\0';
	}
	if (e->smtputf8 && !c->smtputf8) {
		snprintf(text, sizeof(text),
		         "5.6.7 %s does not support SMTPUTF8, which the "
		         "message needs",
		         c->peer);
		set_all(e, pending, res, 553, text, false, NULL);
		rc = 0;
		goto out;
	}
	if (c->size_limit && size > c->size_limit) {
		snprintf(text, sizeof(text),
		         "5.3.4 message of %llu bytes exceeds the %llu bytes "
		         "%s accepts",
		         (unsigned long long)size, (unsigned long long)c->size_limit, c->peer);
		set_all(e, pending, res, 552, text, false, NULL);
		rc = 0;
		goto out;
	}
	/* MAIL, every RCPT and DATA: one write when the next hop pipelines */
	char *cmds = NULL;
	size_t clen = 0;
	FILE *fp = open_memstream(&cmds, &clen);
	if (!fp) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	fprintf(fp, "MAIL FROM:<%s>", e->sender);
	fprintf(fp, " SIZE=%llu", (unsigned long long)size);
	if (e->body_8bit && c->eightbit)
		fprintf(fp, " BODY=8BITMIME");
	if (e->smtputf8)
		fprintf(fp, " SMTPUTF8");
	fprintf(fp, "\r\n");
	size_t first_len = 0;
	fflush(fp);
	first_len = clen;
	for (size_t i = 0; i < e->n_rcpts; i++)
		if (pending[i])
			fprintf(fp, "RCPT TO:<%s>\r\n", e->rcpts[i]);
	fprintf(fp, "DATA\r\n");
	fclose(fp);

	if (c->pipelining) {
		go = envelope_pipelined(c, e, pending, res, accepted, cmds, clen);
	} else {
		memcpy(line, cmds, first_len - 2);
		line[first_len - 2] = '\0';
		go = envelope_stepwise(c, e, pending, res, accepted, line);
	}
	free(cmds);
	if (go < 0)
		goto broken;
	if (go == 0) {
		rc = 0;
		goto out;
	}
	int sd = send_data(c, datafd, e->prefix_len, size);
	if (sd == -2) {
		snprintf(err, errlen, "cannot read message %s from the spool: %s", e->id,
		         strerror(errno));
		goto out; /* the connection is mid-DATA: unusable */
	}
	if (sd < 0)
		goto broken;
	code = read_reply(c, text, sizeof(text), NULL);
	if (code < 0)
		goto broken; /* after ".": the outcome is unknown */
	set_all(e, pending, res, code, text, true, accepted);
	rc = 0;
	goto out;
broken:
	snprintf(err, errlen, "connection to %s lost", c->peer);
	rc = -1;
out:
	free(accepted);
	return rc;
}
