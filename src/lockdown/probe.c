#include "lockdown/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/ipaddr.h"
#include "net/tls.h"

#define REPLY_LINE_MAX  512 /* octets with the CRLF, RFC 5321 §4.5.3.1.5 */
#define REPLY_LINES_MAX 100
#define PATH_LEN_MAX    254 /* RFC 5321 §4.5.3.1.3, without the brackets */

static const char *const step_names[] = {
        [PROBE_CONNECT] = "connect",   [PROBE_BANNER] = "banner", [PROBE_EHLO] = "EHLO",
        [PROBE_STARTTLS] = "STARTTLS", [PROBE_MAIL] = "MAIL",     [PROBE_RCPT] = "RCPT",
};

const char *
probe_step_name(enum probe_step s)
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
	int fd;
	struct tls_ctx *tls_ctx;
	struct tls_conn *tls;
	struct timespec deadline;
	char why[256]; /* the last I/O or parse failure */
	int io_errno;  /* and its errno, for I/O */
	char in[4096];
	size_t in_len;
	/* the last reply */
	int code;
	char first[REPLY_LINE_MAX]; /* its first line's text, after the code */
	bool starttls_offered;      /* in the last EHLO reply */
};

enum io { IO_OK, IO_CLOSED, IO_FAILED, IO_MALFORMED };

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

static void
arm(struct session *s)
{
	unsigned ms = s->o->timeout_ms;

	clock_gettime(CLOCK_MONOTONIC, &s->deadline);
	s->deadline.tv_sec += ms / 1000;
	s->deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (s->deadline.tv_nsec >= 1000000000L) {
		s->deadline.tv_sec++;
		s->deadline.tv_nsec -= 1000000000L;
	}
}

/* Waits for events on the socket until the deadline.  0, or -1 with errno (ETIMEDOUT). */
static int
wait_fd(struct session *s, short events)
{
	for (;;) {
		struct timespec now;
		struct pollfd pfd = {.fd = s->fd, .events = events};
		long long ms;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (long long)(s->deadline.tv_sec - now.tv_sec) * 1000 +
		     (s->deadline.tv_nsec - now.tv_nsec) / 1000000;
		if (ms <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		rc = poll(&pfd, 1, ms > 60000 ? 60000 : (int)ms);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

static void
io_why(struct session *s, const char *what)
{
	s->io_errno = errno;
	if (errno == ETIMEDOUT)
		snprintf(s->why, sizeof(s->why), "no %s within %us", what,
		         (s->o->timeout_ms + 999) / 1000);
	else if (errno == ECONNRESET)
		snprintf(s->why, sizeof(s->why), "connection reset by the server");
	else if (errno != EPROTO)
		snprintf(s->why, sizeof(s->why), "%s", strerror(errno));
}

/* Reads some bytes: >0, 0 at the end of the stream, -1 with errno and s->why. */
static ssize_t
read_some(struct session *s, void *buf, size_t len)
{
	for (;;) {
		short ev = POLLIN;

		if (s->tls) {
			size_t n = 0;
			switch (tls_read(s->tls, buf, len, &n)) {
			case TLS_IO_OK:
				return (ssize_t)n;
			case TLS_IO_CLOSED:
				return 0;
			case TLS_IO_WANT_READ:
				break;
			case TLS_IO_WANT_WRITE:
				ev = POLLOUT;
				break;
			case TLS_IO_ERROR:
				snprintf(s->why, sizeof(s->why), "TLS: %s", tls_error(s->tls));
				errno = EPROTO;
				return -1;
			}
		} else {
			ssize_t n = recv(s->fd, buf, len, 0);
			if (n >= 0)
				return n;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
		}
		if (wait_fd(s, ev) < 0)
			return -1;
	}
}

static int
write_all(struct session *s, const char *buf, size_t len)
{
	while (len) {
		short ev = POLLOUT;
		size_t n = 0;

		if (s->tls) {
			switch (tls_write(s->tls, buf, len, &n)) {
			case TLS_IO_OK:
				break;
			case TLS_IO_WANT_READ:
				ev = POLLIN;
				break;
			case TLS_IO_WANT_WRITE:
				break;
			case TLS_IO_CLOSED:
				errno = ECONNRESET;
				return -1;
			case TLS_IO_ERROR:
				snprintf(s->why, sizeof(s->why), "TLS: %s", tls_error(s->tls));
				errno = EPROTO;
				return -1;
			}
		} else {
			ssize_t w = send(s->fd, buf, len, MSG_NOSIGNAL);
			if (w >= 0)
				n = (size_t)w;
			else if (errno == EINTR)
				continue;
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -1;
		}
		if (n) {
			buf += n;
			len -= n;
		} else if (wait_fd(s, ev) < 0) {
			return -1;
		}
	}
	return 0;
}

/* Checks one reply line (without CRLF) strictly; returns its code or -1 with s->why. */
static int
check_line(struct session *s, const char *line, size_t len, int want_code, bool *last)
{
	int code;

	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    line[2] < '0' || line[2] > '9') {
		snprintf(s->why, sizeof(s->why),
		         "malformed reply: a line must start with a code 200-559");
		return -1;
	}
	if (len > 3 && line[3] != ' ' && line[3] != '-') {
		snprintf(s->why, sizeof(s->why),
		         "malformed reply: the code must be followed by a space, '-' or the end");
		return -1;
	}
	for (size_t i = 3; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			snprintf(s->why, sizeof(s->why),
			         "malformed reply: control character 0x%02x in a line", c);
			return -1;
		}
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (want_code && code != want_code) {
		snprintf(s->why, sizeof(s->why),
		         "malformed reply: a multi-line reply changes its code from %d to %d",
		         want_code, code);
		return -1;
	}
	*last = len == 3 || line[3] == ' ';
	return code;
}

/* Reads one whole reply into s->code (and s->first), printing each line under label. */
static enum io
read_reply(struct session *s, const char *label)
{
	int lines = 0;

	s->code = 0;
	s->first[0] = '\0';
	arm(s);
	for (;;) {
		char *lf = memchr(s->in, '\n', s->in_len), *cr;
		size_t len;
		bool last = false;
		int code;

		if (!lf) {
			ssize_t n;
			if (s->in_len >= REPLY_LINE_MAX) {
				snprintf(s->why, sizeof(s->why),
				         "malformed reply: a line is longer than %d octets",
				         REPLY_LINE_MAX);
				return IO_MALFORMED;
			}
			n = read_some(s, s->in + s->in_len, sizeof(s->in) - s->in_len);
			if (n == 0) {
				if (s->in_len)
					snprintf(s->why, sizeof(s->why),
					         "connection closed by the server in the middle "
					         "of a reply");
				else
					snprintf(s->why, sizeof(s->why),
					         "connection closed by the server");
				return IO_CLOSED;
			}
			if (n < 0) {
				io_why(s, "reply");
				return IO_FAILED;
			}
			s->in_len += (size_t)n;
			continue;
		}
		len = (size_t)(lf - s->in);
		if (len + 1 > REPLY_LINE_MAX) {
			snprintf(s->why, sizeof(s->why),
			         "malformed reply: a line is longer than %d octets",
			         REPLY_LINE_MAX);
			return IO_MALFORMED;
		}
		if (len == 0 || s->in[len - 1] != '\r' ||
		    ((cr = memchr(s->in, '\r', len - 1)) != NULL)) {
			snprintf(s->why, sizeof(s->why),
			         "malformed reply: lines must end in CRLF (RFC 5321 §2.3.8)");
			return IO_MALFORMED;
		}
		len--;
		code = check_line(s, s->in, len, s->code, &last);
		if (code < 0)
			return IO_MALFORMED;
		say(s, label, "< %.*s", (int)len, s->in);
		if (lines == 0) {
			size_t tl = len > 4 ? len - 4 : 0;
			memcpy(s->first, s->in + (len > 4 ? 4 : len), tl);
			s->first[tl] = '\0';
		}
		if (len >= 12 && strncasecmp(s->in + 4, "STARTTLS", 8) == 0 &&
		    (len == 12 || s->in[12] == ' '))
			s->starttls_offered = true;
		s->code = code;
		memmove(s->in, lf + 1, s->in_len - (size_t)(lf + 1 - s->in));
		s->in_len -= (size_t)(lf + 1 - s->in);
		if (last)
			return IO_OK;
		if (++lines >= REPLY_LINES_MAX) {
			snprintf(s->why, sizeof(s->why), "malformed reply: more than %d lines",
			         REPLY_LINES_MAX);
			return IO_MALFORMED;
		}
	}
}

/* Sends one command line (CRLF added), printing it. */
static enum io command(struct session *s, const char *label, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

static enum io
command(struct session *s, const char *label, const char *fmt, va_list ap)
{
	char line[REPLY_LINE_MAX + 2];
	int n;

	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		snprintf(s->why, sizeof(s->why), "command too long");
		return IO_FAILED;
	}
	say(s, label, "> %s", line);
	memcpy(line + n, "\r\n", 3);
	arm(s);
	if (write_all(s, line, (size_t)n + 2) < 0) {
		io_why(s, "room to write");
		return IO_FAILED;
	}
	return IO_OK;
}

/* A command and its reply.  IO_OK means a well-formed reply is in s->code. */
static enum io exchange(struct session *s, const char *label, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum io
exchange(struct session *s, const char *label, const char *fmt, ...)
{
	va_list ap;
	enum io r;

	va_start(ap, fmt);
	r = command(s, label, fmt, ap);
	va_end(ap);
	if (r != IO_OK)
		return r;
	return read_reply(s, label);
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
	if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0 &&
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
	socklen_t sl;
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
	s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->fd < 0) {
		v = verdict(s, PROBE_ERROR, PROBE_CONNECT, "socket: %s", strerror(errno));
		goto done;
	}
	if (o->source) {
		sl = endpoint_to_sockaddr(&src, &ss);
		if (bind(s->fd, (struct sockaddr *)&ss, sl) < 0) {
			v = verdict(s, PROBE_ERROR, PROBE_CONNECT,
			            "cannot use source address %s: %s", o->source, strerror(errno));
			goto done;
		}
		snprintf(from, sizeof(from), " from %s", o->source);
	}
	arm(s);
	if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			soerr = errno;
		} else if (wait_fd(s, POLLOUT) < 0) {
			soerr = errno;
		} else {
			sl = sizeof(soerr);
			if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
				soerr = errno;
		}
	}
	switch (soerr) {
	case 0:
		sl = sizeof(ss);
		if (getsockname(s->fd, (struct sockaddr *)&ss, &sl) == 0) {
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

/* The verdict for a step whose exchange did not give a well-formed reply. */
static enum probe_verdict
io_verdict(struct session *s, enum io r, enum probe_step step)
{
	const char *label = probe_step_name(step);

	say(s, label, "%s", s->why);
	if (r == IO_MALFORMED)
		return verdict(s, PROBE_ERROR, step, "%s", s->why);
	if (r == IO_FAILED && s->io_errno != ETIMEDOUT && s->io_errno != ECONNRESET &&
	    s->io_errno != EPIPE && s->io_errno != EPROTO)
		return verdict(s, PROBE_ERROR, step, "%s", s->why);
	return verdict(s, PROBE_REFUSED, step, "%s", s->why);
}

static enum probe_verdict
refused(struct session *s, enum probe_step step)
{
	return verdict(s, PROBE_REFUSED, step, "%d %s", s->code, s->first);
}

static enum probe_verdict
do_ehlo(struct session *s, const char *helo)
{
	enum io r;

	s->starttls_offered = false;
	if ((r = exchange(s, "EHLO", "EHLO %s", helo)) != IO_OK)
		return io_verdict(s, r, PROBE_EHLO);
	if (s->code == 250)
		return PROBE_OPEN;
	if (s->code != 500 && s->code != 502)
		return refused(s, PROBE_EHLO);
	/* a server without ESMTP (RFC 5321 §3.2): HELO stands in */
	if ((r = exchange(s, "EHLO", "HELO %s", helo)) != IO_OK)
		return io_verdict(s, r, PROBE_EHLO);
	return s->code == 250 ? PROBE_OPEN : refused(s, PROBE_EHLO);
}

static enum probe_verdict
do_starttls(struct session *s)
{
	char err[256];
	enum io r;

	if (!s->starttls_offered)
		say(s, "STARTTLS", "(not offered in the EHLO reply; trying anyway)");
	if ((r = exchange(s, "STARTTLS", "%s", "STARTTLS")) != IO_OK)
		return io_verdict(s, r, PROBE_STARTTLS);
	if (s->code != 220)
		return refused(s, PROBE_STARTTLS);
	if (s->in_len) {
		snprintf(s->why, sizeof(s->why),
		         "the server sent %zu bytes after its 220 to STARTTLS (RFC 3207 §4.2: "
		         "nothing may cross into the TLS session)",
		         s->in_len);
		return io_verdict(s, IO_MALFORMED, PROBE_STARTTLS);
	}
	if (!(s->tls_ctx = tls_client_ctx_new(false, NULL, err, sizeof(err))) ||
	    !(s->tls = tls_client_conn_new(s->tls_ctx, s->fd, s->o->host))) {
		snprintf(s->why, sizeof(s->why), "cannot set up TLS: %.200s",
		         s->tls_ctx ? "out of memory" : err);
		say(s, "STARTTLS", "%s", s->why);
		return verdict(s, PROBE_ERROR, PROBE_STARTTLS, "%s", s->why);
	}
	arm(s);
	for (;;) {
		enum tls_io t = tls_handshake(s->tls, err, sizeof(err));
		if (t == TLS_IO_OK)
			break;
		if (t == TLS_IO_WANT_READ || t == TLS_IO_WANT_WRITE) {
			if (wait_fd(s, t == TLS_IO_WANT_READ ? POLLIN : POLLOUT) == 0)
				continue;
			io_why(s, "TLS handshake");
		} else {
			snprintf(s->why, sizeof(s->why), "TLS handshake failed: %.200s", err);
		}
		tls_conn_free(s->tls);
		s->tls = NULL;
		say(s, "STARTTLS", "%s", s->why);
		return verdict(s, PROBE_REFUSED, PROBE_STARTTLS, "%s", s->why);
	}
	say(s, "TLS", "%s, %s (%d bits); the server's certificate was not verified",
	    tls_version(s->tls), tls_cipher(s->tls), tls_cipher_bits(s->tls));
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
	char helo[300], banner_name[REPLY_LINE_MAX], rcpt[PATH_LEN_MAX + 16];
	enum probe_verdict v;
	enum io r;

	if ((v = do_connect(s)) != PROBE_OPEN)
		return v;

	if ((r = read_reply(s, "banner")) != IO_OK) {
		if (r == IO_CLOSED && s->code == 0 && !s->in_len)
			snprintf(s->why, sizeof(s->why), "connection closed without a banner");
		return io_verdict(s, r, PROBE_BANNER);
	}
	if (s->code != 220)
		return refused(s, PROBE_BANNER);
	snprintf(banner_name, sizeof(banner_name), "%.*s", (int)strcspn(s->first, " \t"), s->first);

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

	if ((r = exchange(s, "MAIL", "MAIL FROM:<%s>", o->mail_from ? o->mail_from : "")) != IO_OK)
		return io_verdict(s, r, PROBE_MAIL);
	if (s->code != 250)
		return refused(s, PROBE_MAIL);

	if (o->rcpt_to) {
		snprintf(rcpt, sizeof(rcpt), "%s", o->rcpt_to);
	} else {
		default_rcpt(s, banner_name, rcpt, sizeof(rcpt));
		say(s, "note", "no --rcpt-to: trying %s; give an address the server takes", rcpt);
	}
	if ((r = exchange(s, "RCPT", "RCPT TO:<%s>", rcpt)) != IO_OK)
		return io_verdict(s, r, PROBE_RCPT);
	if (s->code != 250 && s->code != 251)
		return refused(s, PROBE_RCPT);
	s->res->verdict = PROBE_OPEN;
	s->res->step = PROBE_RCPT;
	return PROBE_OPEN;
}

/* RSET and QUIT when the session is still usable; what they get does not matter. */
static void
leave(struct session *s, enum probe_verdict v)
{
	bool usable = s->fd >= 0 && v != PROBE_ERROR && s->why[0] == '\0' && s->code != 0 &&
	              s->code != 421;

	if (!usable)
		return;
	if (v == PROBE_OPEN && exchange(s, "RSET", "%s", "RSET") != IO_OK)
		return;
	if (exchange(s, "QUIT", "%s", "QUIT") != IO_OK)
		return;
	if (s->tls)
		tls_shutdown(s->tls);
}

enum probe_verdict
probe_run(const struct probe_opts *o, FILE *out, struct probe_result *res)
{
	struct session s = {.o = o, .out = out, .res = res, .fd = -1};
	enum probe_verdict v;

	memset(res, 0, sizeof(*res));
	fprintf(out, "probe     %s port %u%s%s, timeout %us%s\n", o->host, o->port,
	        o->source ? " from " : "", o->source ? o->source : "", (o->timeout_ms + 999) / 1000,
	        o->starttls ? ", STARTTLS" : "");
	v = walk(&s);
	leave(&s, v);
	if (v == PROBE_OPEN)
		fprintf(out, "verdict: open\n");
	else if (v == PROBE_REFUSED)
		fprintf(out, "verdict: refused at %s\n", probe_step_name(res->step));
	else
		fprintf(out, "verdict: error at %s: %s\n", probe_step_name(res->step), res->why);
	fflush(out);
	tls_conn_free(s.tls);
	tls_ctx_unref(s.tls_ctx);
	if (s.fd >= 0)
		close(s.fd);
	return v;
}
