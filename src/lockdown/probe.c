#include "lockdown/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/ipaddr.h"
#include "net/smtpc.h"
#include "net/tls.h"

#define PATH_LEN_MAX 254 /* RFC 5321 §4.5.3.1.3, without the brackets */

static const char *const step_names[] = {
        [PROBE_CONNECT] = "connect",   [PROBE_BANNER] = "banner", [PROBE_EHLO] = "EHLO",
        [PROBE_STARTTLS] = "STARTTLS", [PROBE_MAIL] = "MAIL",     [PROBE_RCPT] = "RCPT",
};

/* "connect", "banner", "EHLO", "STARTTLS", "MAIL", "RCPT". */
static const char *
step_name(enum probe_step s)
{
	return step_names[s];
}

/* ---- argument parsing ------------------------------------------------------------------- */

static int
parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -1;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
probe_parse_target(const char *arg, char *host, size_t hostsize, uint16_t *port, char *err,
                   size_t errlen)
{
	const char *h = arg, *ps = NULL, *colon;
	size_t hl;

	*port = 25;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (!close || close == arg + 1) {
			snprintf(err, errlen, "'%s': write [IPv6] or [IPv6]:PORT", arg);
			return -1;
		}
		h = arg + 1;
		hl = (size_t)(close - h);
		if (close[1] == ':')
			ps = close + 2;
		else if (close[1]) {
			snprintf(err, errlen, "'%s': unexpected text after ']'", arg);
			return -1;
		}
	} else if ((colon = strchr(arg, ':')) && !strchr(colon + 1, ':')) {
		hl = (size_t)(colon - arg);
		ps = colon + 1;
	} else {
		hl = strlen(arg); /* a name, an IPv4 address, or a bare IPv6 address */
	}
	if (hl == 0 || hl >= hostsize) {
		snprintf(err, errlen, "'%s': no host, or too long a one", arg);
		return -1;
	}
	for (size_t i = 0; i < hl; i++) {
		if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f || h[i] == '[' || h[i] == ']') {
			snprintf(err, errlen, "'%s': not a host name or address", arg);
			return -1;
		}
	}
	if (ps && parse_port(ps, port) < 0) {
		snprintf(err, errlen, "'%s': the port must be a number from 1 to 65535", arg);
		return -1;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	return 0;
}

int
probe_parse_path(const char *arg, char *out, size_t size, char *err, size_t errlen)
{
	size_t len = strlen(arg);
	const char *s = arg;

	if (len >= 2 && arg[0] == '<' && arg[len - 1] == '>') {
		s = arg + 1;
		len -= 2;
	}
	if (len > PATH_LEN_MAX || len >= size) {
		snprintf(err, errlen, "'%s' is longer than %d characters", arg, PATH_LEN_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == 0x7f || c == '<' || c == '>') {
			snprintf(err, errlen, "'%s' is not an address: write local@domain", arg);
			return -1;
		}
	}
	if (len && (!memchr(s, '@', len) || s[0] == '@' || s[len - 1] == '@')) {
		snprintf(err, errlen, "'%s' is not an address: write local@domain", arg);
		return -1;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

/* ---- the session ------------------------------------------------------------------------ */

struct session {
	const struct probe_opts *o;
	FILE *out;
	struct probe_result *res;
	struct smtpc c;
	struct tls_ctx *tls_ctx;
	const char *label;    /* the step the transcript lines go under */
	struct smtpc_reply r; /* the last reply */
	bool broken;          /* an exchange failed: the session is not usable */
};

static void say(struct session *s, const char *label, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void
say(struct session *s, const char *label, const char *fmt, ...)
{
	va_list ap;

	fprintf(s->out, "%-9s ", label);
	va_start(ap, fmt);
	vfprintf(s->out, fmt, ap);
	va_end(ap);
	fputc('\n', s->out);
	fflush(s->out);
}

static void
trace_cb(void *arg, bool out, const char *line, size_t len)
{
	struct session *s = arg;

	say(s, s->label, "%c %.*s", out ? '>' : '<', (int)len, line);
}

static enum probe_verdict verdict(struct session *s, enum probe_verdict v, enum probe_step step,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum probe_verdict
verdict(struct session *s, enum probe_verdict v, enum probe_step step, const char *fmt, ...)
{
	va_list ap;

	s->res->verdict = v;
	s->res->step = step;
	va_start(ap, fmt);
	vsnprintf(s->res->why, sizeof(s->res->why), fmt, ap);
	va_end(ap);
	return v;
}

/* A command and its reply.  0 means a well-formed reply is in s->r. */
static int exchange(struct session *s, const char *label, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int
exchange(struct session *s, const char *label, const char *fmt, ...)
{
	char line[SMTPC_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->label = label;
	if (n < 0 || (size_t)n >= sizeof(line)) {
		s->c.fail = SMTPC_IO;
		s->c.err = EMSGSIZE;
		snprintf(s->c.why, sizeof(s->c.why), "command too long");
		s->broken = true;
		return -1;
	}
	if (smtpc_command(&s->c, &s->r, line) < 0) {
		s->broken = true;
		return -1;
	}
	return 0;
}

/* ---- steps ------------------------------------------------------------------------------- */

static bool
is_domain(const char *s, size_t len)
{
	bool dot = false;

	if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-' || s[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '.')
			dot = true;
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		           (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return dot;
}

static bool
is_address(const char *host)
{
	unsigned char b[16];

	return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

/* The EHLO argument: the host's FQDN, else our address literal (RFC 5321 §4.1.4). */
static void
default_helo(struct session *s, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ipaddr a;
	char name[256] = "", lit[IPADDR_STRLEN];

	if (gethostname(name, sizeof(name) - 1) == 0 && is_domain(name, strlen(name))) {
		snprintf(buf, size, "%s", name);
		return;
	}
	if (getsockname(s->c.t.fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    ipaddr_from_sockaddr((struct sockaddr *)&ss, &a, NULL) == 0) {
		ipaddr_format(&a, lit, sizeof(lit));
		snprintf(buf, size, a.family == AF_INET ? "[%s]" : "[IPv6:%s]", lit);
		return;
	}
	snprintf(buf, size, "localhost");
}

static void
peer_text(const struct sockaddr *sa, char *buf, size_t size)
{
	struct endpoint ep;

	if (ipaddr_from_sockaddr(sa, &ep.addr, &ep.port) == 0)
		endpoint_format(&ep, buf, size);
	else
		snprintf(buf, size, "?");
}

static enum probe_verdict
do_connect(struct session *s)
{
	const struct probe_opts *o = s->o;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV},
	                *ai = NULL;
	struct endpoint src = {.port = 0};
	struct sockaddr_storage ss;
	socklen_t sl = 0;
	char port[8], to[ENDPOINT_STRLEN], from[ENDPOINT_STRLEN + 8] = "";
	int rc, soerr = 0;
	enum probe_verdict v;

	if (o->source) {
		if (ipaddr_parse(o->source, strlen(o->source), &src.addr) < 0)
			return verdict(s, PROBE_ERROR, PROBE_CONNECT,
			               "--source '%s' is not an IP address", o->source);
		hints.ai_family = src.addr.family;
	}
	snprintf(port, sizeof(port), "%u", o->port);
	rc = getaddrinfo(o->host, port, &hints, &ai);
	if (rc != 0)
		return verdict(s, PROBE_ERROR, PROBE_CONNECT, "cannot resolve %s%s: %s", o->host,
		               o->source ? (src.addr.family == AF_INET ? " (IPv4, as the source)"
		                                                       : " (IPv6, as the source)")
		                         : "",
		               gai_strerror(rc));
	peer_text(ai->ai_addr, to, sizeof(to));
	if (o->source) {
		sl = endpoint_to_sockaddr(&src, &ss);
		snprintf(from, sizeof(from), " from %s", o->source);
	}
	if (transport_socket(&s->c.t, ai->ai_family, o->source ? (struct sockaddr *)&ss : NULL,
	                     sl) < 0) {
		if (o->source && strncmp(s->c.t.error, "bind", 4) == 0)
			v = verdict(s, PROBE_ERROR, PROBE_CONNECT,
			            "cannot use source address %s: %s", o->source, strerror(errno));
		else
			v = verdict(s, PROBE_ERROR, PROBE_CONNECT, "%s", s->c.t.error);
		goto done;
	}
	if (transport_connect(&s->c.t, ai->ai_addr, ai->ai_addrlen) < 0)
		soerr = errno;
	switch (soerr) {
	case 0:
		sl = sizeof(ss);
		if (getsockname(s->c.t.fd, (struct sockaddr *)&ss, &sl) == 0) {
			char me[ENDPOINT_STRLEN];
			peer_text((struct sockaddr *)&ss, me, sizeof(me));
			snprintf(from, sizeof(from), " from %s", me);
		}
		say(s, "connect", "%s%s: connected", to, from);
		v = PROBE_OPEN;
		break;
	case ETIMEDOUT:
		say(s, "connect", "%s%s: no answer within %us (dropped by a firewall?)", to, from,
		    (o->timeout_ms + 999) / 1000);
		v = verdict(s, PROBE_REFUSED, PROBE_CONNECT, "no answer within %us",
		            (o->timeout_ms + 999) / 1000);
		break;
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
	case ECONNRESET:
	case EACCES:
	case EPERM:
		say(s, "connect", "%s%s: %s", to, from, strerror(soerr));
		v = verdict(s, PROBE_REFUSED, PROBE_CONNECT, "%s", strerror(soerr));
		break;
	default:
		v = verdict(s, PROBE_ERROR, PROBE_CONNECT, "connect to %s: %s", to,
		            strerror(soerr));
		break;
	}
done:
	freeaddrinfo(ai);
	return v;
}

/* The verdict for a step whose exchange did not give a well-formed reply: an error when
 * the server broke the protocol or the probe itself failed, else a refusal. */
static enum probe_verdict
io_verdict(struct session *s, enum probe_step step)
{
	const struct smtpc *c = &s->c;
	bool refusal = c->fail == SMTPC_CLOSED ||
	               (c->fail == SMTPC_IO && (c->err == ETIMEDOUT || c->err == ECONNRESET ||
	                                        c->err == EPIPE || c->err == EPROTO));

	s->broken = true;
	say(s, step_name(step), "%s", c->why);
	return verdict(s, refusal ? PROBE_REFUSED : PROBE_ERROR, step, "%s", c->why);
}

static enum probe_verdict
refused(struct session *s, enum probe_step step)
{
	return verdict(s, PROBE_REFUSED, step, "%d %s", s->r.code, s->r.text);
}

static enum probe_verdict
do_ehlo(struct session *s, const char *helo)
{
	s->label = "EHLO";
	if (smtpc_ehlo(&s->c, helo, &s->r) < 0)
		return io_verdict(s, PROBE_EHLO);
	return s->r.code == 250 ? PROBE_OPEN : refused(s, PROBE_EHLO);
}

static enum probe_verdict
do_starttls(struct session *s)
{
	char err[256];

	if (!s->c.starttls)
		say(s, "STARTTLS", "(not offered in the EHLO reply; trying anyway)");
	if (!(s->tls_ctx = tls_client_ctx_new(false, NULL, err, sizeof(err)))) {
		say(s, "STARTTLS", "cannot set up TLS: %.200s", err);
		return verdict(s, PROBE_ERROR, PROBE_STARTTLS, "cannot set up TLS: %.200s", err);
	}
	s->label = "STARTTLS";
	if (smtpc_starttls(&s->c, s->tls_ctx, s->o->host, &s->r) < 0)
		return io_verdict(s, PROBE_STARTTLS);
	if (s->r.code != 220)
		return refused(s, PROBE_STARTTLS);
	say(s, "TLS", "%s, %s (%d bits); the server's certificate was not verified",
	    tls_version(s->c.t.tls), tls_cipher(s->c.t.tls), tls_cipher_bits(s->c.t.tls));
	return PROBE_OPEN;
}

/* postmaster@ the host name, or the name the banner gives, or bare postmaster. */
static void
default_rcpt(struct session *s, const char *banner_name, char *buf, size_t size)
{
	if (!is_address(s->o->host) && is_domain(s->o->host, strlen(s->o->host)))
		snprintf(buf, size, "postmaster@%.253s", s->o->host);
	else if (is_domain(banner_name, strlen(banner_name)))
		snprintf(buf, size, "postmaster@%.253s", banner_name);
	else
		snprintf(buf, size, "postmaster");
}

static enum probe_verdict
walk(struct session *s)
{
	const struct probe_opts *o = s->o;
	char helo[300], banner_name[SMTPC_LINE_MAX], rcpt[PATH_LEN_MAX + 16];
	enum probe_verdict v;

	if ((v = do_connect(s)) != PROBE_OPEN)
		return v;

	s->label = "banner";
	if (smtpc_read_reply(&s->c, &s->r) < 0) {
		if (s->c.fail == SMTPC_CLOSED && s->c.p.lines == 0 && s->c.p.len == 0)
			snprintf(s->c.why, sizeof(s->c.why), "connection closed without a banner");
		return io_verdict(s, PROBE_BANNER);
	}
	if (s->r.code != 220)
		return refused(s, PROBE_BANNER);
	snprintf(banner_name, sizeof(banner_name), "%.*s", (int)strcspn(s->r.text, " \t"),
	         s->r.text);

	if (o->helo)
		snprintf(helo, sizeof(helo), "%s", o->helo);
	else
		default_helo(s, helo, sizeof(helo));
	if ((v = do_ehlo(s, helo)) != PROBE_OPEN)
		return v;
	if (o->starttls) {
		if ((v = do_starttls(s)) != PROBE_OPEN)
			return v;
		if ((v = do_ehlo(s, helo)) != PROBE_OPEN)
			return v;
	}

	if (exchange(s, "MAIL", "MAIL FROM:<%s>", o->mail_from ? o->mail_from : "") < 0)
		return io_verdict(s, PROBE_MAIL);
	if (s->r.code != 250)
		return refused(s, PROBE_MAIL);

	if (o->rcpt_to) {
		snprintf(rcpt, sizeof(rcpt), "%s", o->rcpt_to);
	} else {
		default_rcpt(s, banner_name, rcpt, sizeof(rcpt));
		say(s, "note", "no --rcpt-to: trying %s; give an address the server takes", rcpt);
	}
	if (exchange(s, "RCPT", "RCPT TO:<%s>", rcpt) < 0)
		return io_verdict(s, PROBE_RCPT);
	if (s->r.code != 250 && s->r.code != 251)
		return refused(s, PROBE_RCPT);
	s->res->verdict = PROBE_OPEN;
	s->res->step = PROBE_RCPT;
	return PROBE_OPEN;
}

/* RSET and QUIT when the session is still usable; what they get does not matter. */
static void
leave(struct session *s, enum probe_verdict v)
{
	if (s->c.t.fd < 0 || v == PROBE_ERROR || s->broken || s->r.code == 0 || s->r.code == 421)
		return;
	if (v == PROBE_OPEN && exchange(s, "RSET", "%s", "RSET") < 0)
		return;
	s->label = "QUIT";
	smtpc_quit(&s->c);
}

enum probe_verdict
probe_run(const struct probe_opts *o, FILE *out, struct probe_result *res)
{
	struct session s = {.o = o, .out = out, .res = res, .label = "connect"};
	enum probe_verdict v;

	memset(res, 0, sizeof(*res));
	smtpc_init(&s.c, o->timeout_ms);
	s.c.trace_cb = trace_cb;
	s.c.trace_arg = &s;
	fprintf(out, "probe     %s port %u%s%s, timeout %us%s\n", o->host, o->port,
	        o->source ? " from " : "", o->source ? o->source : "", (o->timeout_ms + 999) / 1000,
	        o->starttls ? ", STARTTLS" : "");
	v = walk(&s);
	leave(&s, v);
	if (v == PROBE_OPEN)
		fprintf(out, "verdict: open\n");
	else if (v == PROBE_REFUSED)
		fprintf(out, "verdict: refused at %s\n", step_name(res->step));
	else
		fprintf(out, "verdict: error at %s: %s\n", step_name(res->step), res->why);
	fflush(out);
	smtpc_release(&s.c);
	tls_ctx_unref(s.tls_ctx);
	return v;
}
