/*
 * bench/tlsload — whole SMTP transactions, one message a connection, SESSIONS at a time,
 * in plaintext or over STARTTLS (smtp-source has no TLS).
 *
 * Keeps SESSIONS connections busy until MESSAGES messages have been acknowledged.  Each
 * connection: banner, EHLO, with -T STARTTLS and a full TLS 1.3 handshake (no session
 * resumption: every connection pays for its own) and EHLO again, MAIL, RCPT, then DATA and
 * a message of BYTES (dot-stuffing-free lines of 72 octets) or, with -B, `BDAT n LAST`
 * and the same message in one chunk (RFC 3030), then QUIT and its 221.  A message counts
 * when its 250 has come back; any other reply, a connection lost or a session stuck for
 * 60 s ends the run at once with the session's transcript step and the reply.
 *
 * usage: tlsload [-T] [-B] [-c SESSIONS] [-m MESSAGES] [-l BYTES] [-s SOURCE] [-f FROM]
 *                [-t TO] [-n SERVERNAME] HOST:PORT
 * Prints one line of key=value figures; start= is the wall clock (epoch seconds) of the
 * first connect, so a caller can time the run up to an event elsewhere (a next hop's last
 * message).  Exits 1 on the first failure, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* The reply each step waits for; S_HANDSHAKE waits for the TLS handshake instead. */
enum step {
	S_CONNECT,
	S_BANNER,
	S_EHLO,
	S_STARTTLS,
	S_HANDSHAKE,
	S_EHLO2,
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_DOT,
	S_QUIT
};

static const char *const step_name[] = {
        "connect", "banner", "EHLO", "STARTTLS",    "handshake", "EHLO after STARTTLS",
        "MAIL",    "RCPT",   "DATA", "end of data", "QUIT"};
static const int expect[] = {0, 220, 250, 220, 0, 250, 250, 250, 354, 250, 221};

enum { MAX_SESSIONS = 4096, BUF_SIZE = 4096, STALL_SECONDS = 60 };

struct sess {
	int fd;
	enum step st;
	uint32_t events; /* what epoll watches for now */
	SSL *ssl;
	double started;
	const char *out; /* what is left to send */
	size_t out_len;
	size_t len;
	char buf[BUF_SIZE];
};

static struct sess sessions[MAX_SESSIONS];
static int epfd, use_tls, use_bdat;
static SSL_CTX *tls_ctx;
static const char *servername = "mx.example.test";
static struct sockaddr_in src, dst;
static char mail[300], rcpt[300], *message, *bdat;
static size_t message_len, bdat_len;
static unsigned long long started, acked, handshakes;
static char tls_info[128];

static void
die(struct sess *s, const char *what, const char *detail)
{
	char clean[400];
	size_t i;

	snprintf(clean, sizeof(clean), "%s", detail ? detail : "");
	for (i = 0; clean[i]; i++)
		if (clean[i] == '\r' || clean[i] == '\n')
			clean[i] = ' ';
	fprintf(stderr, "tlsload: session %zu, at %s: %s%s%s\n", (size_t)(s - sessions),
	        step_name[s->st], what, clean[0] ? ": " : "", clean);
	printf("messages=%llu failed=1\n", acked);
	exit(1);
}

/* A change of what epoll watches; none when it is the same (a syscall saved each step:
 * most steps wait for EPOLLIN, as the one before). */
static void
watch(struct sess *s, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(s - sessions)};

	if (op == EPOLL_CTL_MOD && s->events == events)
		return;
	s->events = events;
	epoll_ctl(epfd, op, s->fd, &ev);
}

static void
tls_die(struct sess *s, const char *what)
{
	char err[256];
	unsigned long e = ERR_get_error();

	ERR_error_string_n(e, err, sizeof(err));
	die(s, what, e ? err : strerror(errno));
}

/* Sends what is left of s->out: 1 when all of it went, 0 when the socket is full (the
 * caller waits for EPOLLOUT). */
static int
flush_out(struct sess *s)
{
	while (s->out_len) {
		ssize_t n;
		if (s->ssl) {
			size_t w = 0;
			int r = SSL_write_ex(s->ssl, s->out, s->out_len, &w);
			if (!r) {
				int e = SSL_get_error(s->ssl, 0);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 0;
				tls_die(s, "TLS write failed");
			}
			n = (ssize_t)w;
		} else {
			n = write(s->fd, s->out, s->out_len);
			if (n < 0 && errno == EAGAIN)
				return 0;
			if (n < 0)
				die(s, "write failed", strerror(errno));
		}
		s->out += n;
		s->out_len -= (size_t)n;
	}
	return 1;
}

static void
send_out(struct sess *s, const char *p, size_t len)
{
	s->out = p;
	s->out_len = len;
	watch(s, flush_out(s) ? EPOLLIN : EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
}

static void
open_one(struct sess *s)
{
	int one = 1;

	memset(s, 0, offsetof(struct sess, buf));
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		die(s, "socket", strerror(errno));
	setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (src.sin_family && bind(s->fd, (struct sockaddr *)&src, sizeof(src)) < 0)
		die(s, "bind to the source address", strerror(errno));
	if (connect(s->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
		die(s, "connect", strerror(errno));
	s->st = S_CONNECT;
	s->started = bench_now();
	started++;
	watch(s, EPOLLOUT, EPOLL_CTL_ADD);
}

static void
close_one(struct sess *s)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	if (s->ssl) {
		SSL_shutdown(s->ssl); /* close_notify, as a polite client sends; no wait */
		SSL_free(s->ssl);
	}
	close(s->fd);
	s->fd = -1;
	s->ssl = NULL;
}

static void
handshake(struct sess *s)
{
	int r = SSL_connect(s->ssl);
	if (r == 1) {
		handshakes++;
		if (!tls_info[0])
			snprintf(tls_info, sizeof(tls_info), "%s %s", SSL_get_version(s->ssl),
			         SSL_get_cipher_name(s->ssl));
		s->st = S_EHLO2;
		send_out(s, "EHLO tlsload.bench.example.test\r\n", 33);
		return;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
	else if (e == SSL_ERROR_WANT_WRITE)
		watch(s, EPOLLOUT, EPOLL_CTL_MOD);
	else
		tls_die(s, "TLS handshake failed");
}

static void
start_tls(struct sess *s)
{
	s->ssl = SSL_new(tls_ctx);
	if (!s->ssl || !SSL_set_fd(s->ssl, s->fd))
		tls_die(s, "SSL_new");
	SSL_set_tlsext_host_name(s->ssl, servername);
	s->st = S_HANDSHAKE;
	handshake(s);
}

/* Whether the EHLO reply in buf lists the extension ext (RFC 5321 4.1.1.1: one a line). */
static int
offers(const char *buf, const char *ext)
{
	size_t n = strlen(ext);

	for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strlen(p) > 4 + n && strncasecmp(p + 4, ext, n) == 0 &&
		    (p[4 + n] == '\r' || p[4 + n] == ' ' || p[4 + n] == '\n'))
			return 1;
	return 0;
}

/* The reply that completed at the start of s->buf was the expected one: next step.
 * Returns 1 when the session is over. */
static int
advance(struct sess *s)
{
	switch (s->st) {
	case S_BANNER:
		s->st = S_EHLO;
		send_out(s, "EHLO tlsload.bench.example.test\r\n", 33);
		return 0;
	case S_EHLO:
		if (use_tls) {
			if (!offers(s->buf, "STARTTLS"))
				die(s, "the server does not offer STARTTLS", s->buf);
			s->st = S_STARTTLS;
			send_out(s, "STARTTLS\r\n", 10);
			return 0;
		}
		/* without TLS the first EHLO is the last */
		/* fall through */
	case S_EHLO2:
		if (use_bdat && !offers(s->buf, "CHUNKING"))
			die(s, "the server does not offer CHUNKING (RFC 3030): no BDAT", s->buf);
		s->st = S_MAIL;
		send_out(s, mail, strlen(mail));
		return 0;
	case S_STARTTLS:
		start_tls(s);
		return 0;
	case S_MAIL:
		s->st = S_RCPT;
		send_out(s, rcpt, strlen(rcpt));
		return 0;
	case S_RCPT:
		if (use_bdat) {
			/* BDAT and its chunk go at once: no 354 to wait for (RFC 3030 2) */
			s->st = S_DOT;
			send_out(s, bdat, bdat_len);
		} else {
			s->st = S_DATA;
			send_out(s, "DATA\r\n", 6);
		}
		return 0;
	case S_DATA:
		s->st = S_DOT;
		send_out(s, message, message_len);
		return 0;
	case S_DOT:
		acked++;
		s->st = S_QUIT;
		send_out(s, "QUIT\r\n", 6);
		return 0;
	case S_QUIT:
		return 1;
	case S_CONNECT:
	case S_HANDSHAKE:
		break;
	}
	return 0;
}

/* The length of the whole reply at the start of buf (bench_reply_code() found it). */
static size_t
reply_len(const char *buf, size_t len)
{
	const char *p = buf, *eol;

	while ((eol = memchr(p, '\n', len - (size_t)(p - buf))) && p[3] == '-')
		p = eol + 1;
	return eol ? (size_t)(eol + 1 - buf) : len;
}

/* Reads what the server sent; acts on every whole reply.  1 when the session is over. */
static int
receive(struct sess *s)
{
	for (;;) {
		ssize_t n;
		if (s->ssl) {
			size_t r = 0;
			if (!SSL_read_ex(s->ssl, s->buf + s->len, BUF_SIZE - 1 - s->len, &r)) {
				int e = SSL_get_error(s->ssl, 0);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return 0;
				if (e == SSL_ERROR_ZERO_RETURN)
					die(s, "closed by the server (TLS close_notify)", NULL);
				tls_die(s, "TLS read failed");
			}
			n = (ssize_t)r;
		} else {
			n = read(s->fd, s->buf + s->len, BUF_SIZE - 1 - s->len);
			if (n < 0 && errno == EAGAIN)
				return 0;
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die(s, "connection lost",
				    n == 0 ? "closed by the server" : strerror(errno));
		}
		s->len += (size_t)n;
		s->buf[s->len] = 0;
		int code = bench_reply_code(s->buf, s->len);
		if (code == 0 && s->len < BUF_SIZE - 1)
			continue;
		if (code != expect[s->st])
			die(s, "unexpected reply", s->buf);
		/* one command at a time: a whole reply is all the server may have sent */
		if (reply_len(s->buf, s->len) != s->len)
			die(s, "more than one reply at once", s->buf);
		s->len = 0;
		if (advance(s))
			return 1;
		if (s->st == S_HANDSHAKE)
			return 0; /* the TLS layer owns the socket now */
	}
}

/* One epoll event for s.  1 when the session is over. */
static int
service(struct sess *s, uint32_t events)
{
	if (s->st == S_CONNECT) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err)
			die(s, "connect", strerror(err));
		s->st = S_BANNER;
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
		return 0;
	}
	if (s->st == S_HANDSHAKE) {
		handshake(s);
		return 0;
	}
	(void)events;
	if (s->out_len) {
		if (!flush_out(s))
			return 0;
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
	}
	return receive(s);
}

static void
build_message(size_t bytes, const char *from, const char *to)
{
	size_t cap = bytes + 512;
	int n;

	message = malloc(cap);
	bdat = malloc(cap + 64);
	if (!message || !bdat) {
		fprintf(stderr, "tlsload: out of memory\n");
		exit(1);
	}
	n = snprintf(message, cap,
	             "From: <%s>\r\nTo: <%s>\r\nSubject: tlsload benchmark\r\n"
	             "Message-ID: <tlsload@bench.example.test>\r\n\r\n",
	             from, to);
	message_len = (size_t)n;
	while (message_len + 72 + 5 <= bytes) {
		memset(message + message_len, 'x', 70);
		memcpy(message + message_len + 70, "\r\n", 2);
		message_len += 72;
	}
	memcpy(message + message_len, "end\r\n", 5);
	message_len += 5;
	/* BDAT carries the message as it is (no dot-stuffing, no final dot) */
	n = snprintf(bdat, 64, "BDAT %zu LAST\r\n", message_len);
	memcpy(bdat + n, message, message_len);
	bdat_len = (size_t)n + message_len;
	memcpy(message + message_len, ".\r\n", 3);
	message_len += 3;
}

static int
setup_tls(void)
{
	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (!tls_ctx)
		return -1;
	/* TLS 1.3 only; the benchmark's self-signed certificate is not verified (a load tool
	 * on loopback; both servers get the same treatment) */
	SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION);
	SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
	/* every connection a full handshake, as a sending MTA without a session cache */
	SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(tls_ctx,
	                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* one read(2) for all the socket holds, not a record's header and then its body: the
	 * client shares the cores with the server it measures, so its own syscalls count
	 * against both servers (receive() reads until OpenSSL wants more, so nothing read ahead
	 * waits for a socket event) */
	SSL_CTX_set_read_ahead(tls_ctx, 1);
	return 0;
}

int
main(int argc, char **argv)
{
	int nsess = 20, opt;
	unsigned long long total = 2000;
	size_t bytes = 1024;
	const char *from = "sender@remote.example", *to = "user@example.test";
	struct epoll_event evs[256];
	struct timespec wall;

	while ((opt = getopt(argc, argv, "TBc:m:l:s:f:t:n:")) != -1) {
		switch (opt) {
		case 'T':
			use_tls = 1;
			break;
		case 'B':
			use_bdat = 1;
			break;
		case 'c':
			nsess = atoi(optarg);
			break;
		case 'm':
			total = strtoull(optarg, NULL, 10);
			break;
		case 'l':
			bytes = (size_t)atol(optarg);
			break;
		case 's':
			src.sin_family = AF_INET;
			if (inet_pton(AF_INET, optarg, &src.sin_addr) != 1)
				goto usage;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'n':
			servername = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || bench_parse_endpoint(argv[optind], &dst) < 0 || nsess < 1 ||
	    nsess > MAX_SESSIONS || total < 1 || bytes < 256 || bytes > 64 << 20)
		goto usage;
	snprintf(mail, sizeof(mail), "MAIL FROM:<%s>\r\n", from);
	snprintf(rcpt, sizeof(rcpt), "RCPT TO:<%s>\r\n", to);
	build_message(bytes, from, to);
	if (use_tls && setup_tls() < 0) {
		fprintf(stderr, "tlsload: no TLS client context\n");
		return 1;
	}

	epfd = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < MAX_SESSIONS; i++)
		sessions[i].fd = -1;
	clock_gettime(CLOCK_REALTIME, &wall);
	double t0 = bench_now();
	for (int i = 0; i < nsess && started < total; i++)
		open_one(&sessions[i]);
	unsigned long long closed = 0;
	while (closed < total) {
		int k = epoll_wait(epfd, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			struct sess *s = &sessions[evs[i].data.u32];
			if (s->fd < 0 || !service(s, evs[i].events))
				continue;
			close_one(s);
			closed++;
			if (started < total)
				open_one(s);
		}
		double t = bench_now();
		for (int i = 0; i < nsess; i++)
			if (sessions[i].fd >= 0 && t - sessions[i].started > STALL_SECONDS)
				die(&sessions[i], "no progress", "the server stopped answering");
	}
	double secs = bench_now() - t0;
	printf("messages=%llu seconds=%.3f rate=%.1f sessions=%d bytes=%zu mode=%s%s "
	       "handshakes=%llu start=%.6f tls=\"%s\"\n",
	       acked, secs, (double)acked / secs, nsess, bytes, use_tls ? "starttls" : "plain",
	       use_bdat ? "+bdat" : "+data", handshakes,
	       (double)wall.tv_sec + (double)wall.tv_nsec / 1e9, tls_info);
	if (acked != total) {
		fprintf(stderr, "tlsload: %llu of %llu messages acknowledged\n", acked, total);
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: tlsload [-T] [-B] [-c SESSIONS] [-m MESSAGES] [-l BYTES] "
	                "[-s SOURCE] [-f FROM] [-t TO] [-n SERVERNAME] HOST:PORT\n");
	return 2;
}
