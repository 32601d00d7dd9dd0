/*
 * bench/tlssink — an SMTP sink that offers STARTTLS: the next hop of the relay scenarios
 * over TLS, where Postfix's smtp-sink (no TLS) cannot serve.
 *
 * One thread, epoll, non-blocking.  Answers every session as a fast, accepting server:
 * EHLO (PIPELINING, 8BITMIME, SIZE, CHUNKING, and STARTTLS with -t), HELO, MAIL, RCPT,
 * DATA, BDAT (RFC 3030), RSET, NOOP, QUIT; commands may be pipelined (RFC 2920).  It keeps
 * nothing: a message counts when its final "." (or its BDAT ... LAST chunk) has arrived
 * and is answered with 250; its size is kept as the smallest and largest seen, so the
 * caller can check that whole messages arrived.
 *
 * usage: tlssink [-t CERT -k KEY] [-n EXPECT] HOST:PORT
 * Prints "listening" once bound; with -n, "done messages=EXPECT t=EPOCH" at the moment the
 * EXPECT-th message arrives (the wall clock, for a caller timing a run end to end); on
 * SIGTERM or SIGINT one line of key=value figures, then exits 0 (1 when a session broke
 * the protocol or a handshake failed: the figures are then not to be trusted).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

enum mode { M_CMD, M_DATA, M_BDAT };
enum { IN_SIZE = 16384, OUT_SIZE = 16384, MAX_FD = 65536, LISTEN_TAG = 0xffffffffu };

struct conn {
	int fd;
	SSL *ssl;
	int handshaking;
	int quitting;
	enum mode mode;
	int dot;          /* how much of "\r\n.\r\n" the data has matched */
	size_t msg_bytes; /* of the message under way */
	unsigned long long bdat_left;
	int bdat_last;
	size_t in_len, out_len;
	char in[IN_SIZE];
	char out[OUT_SIZE];
};

static struct conn *conns[MAX_FD];
static int epfd;
static SSL_CTX *tls_ctx;
static volatile sig_atomic_t stop;
static unsigned long long messages, expected, connections, handshakes, errors;
static size_t min_bytes = (size_t)-1, max_bytes;
static char first_error[300];

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
note_error(struct conn *c, const char *what)
{
	(void)c;
	errors++;
	if (!first_error[0])
		snprintf(first_error, sizeof(first_error), "%.200s", what);
}

static void
close_conn(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	conns[c->fd] = NULL;
	free(c);
}

static void
reply(struct conn *c, const char *text)
{
	size_t len = strlen(text);
	if (c->out_len + len > OUT_SIZE) {
		note_error(c, "output buffer full: the client does not read its replies");
		c->quitting = 1;
		return;
	}
	memcpy(c->out + c->out_len, text, len);
	c->out_len += len;
}

/* Sends c->out.  0 when all of it went or the socket is full; -1 when the session broke. */
static int
flush_out(struct conn *c)
{
	size_t off = 0;
	while (off < c->out_len) {
		ssize_t n;
		if (c->ssl) {
			size_t w = 0;
			if (!SSL_write_ex(c->ssl, c->out + off, c->out_len - off, &w)) {
				int e = SSL_get_error(c->ssl, 0);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					break;
				return -1;
			}
			n = (ssize_t)w;
		} else {
			n = write(c->fd, c->out + off, c->out_len - off);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0)
				return -1;
		}
		off += (size_t)n;
	}
	memmove(c->out, c->out + off, c->out_len - off);
	c->out_len -= off;
	struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0),
	                         .data.u32 = (uint32_t)c->fd};
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
	return 0;
}

static void
message_done(struct conn *c)
{
	struct timespec wall;

	messages++;
	if (c->msg_bytes < min_bytes)
		min_bytes = c->msg_bytes;
	if (c->msg_bytes > max_bytes)
		max_bytes = c->msg_bytes;
	c->msg_bytes = 0;
	if (expected && messages == expected) {
		clock_gettime(CLOCK_REALTIME, &wall);
		printf("done messages=%llu t=%.6f\n", messages,
		       (double)wall.tv_sec + (double)wall.tv_nsec / 1e9);
		fflush(stdout);
	}
}

/* Data bytes of a DATA transaction: the number of them consumed (up to and including the
 * end-of-data line). */
static size_t
eat_data(struct conn *c, const char *p, size_t len)
{
	static const char end[] = "\r\n.\r\n";
	size_t i;

	for (i = 0; i < len; i++) {
		if (p[i] == end[c->dot])
			c->dot++;
		else
			c->dot = p[i] == '\r' ? 1 : 0;
		if (c->dot == 5) {
			c->msg_bytes += i + 1;
			c->msg_bytes -= 3; /* ".\r\n" is not the message's */
			c->mode = M_CMD;
			reply(c, "250 2.0.0 Ok: queued\r\n");
			message_done(c);
			return i + 1;
		}
	}
	c->msg_bytes += len;
	return len;
}

static int
starts(const char *line, const char *verb)
{
	return strncasecmp(line, verb, strlen(verb)) == 0;
}

/* One command line (without its CRLF); pending: the bytes that came after it.  -1 when the
 * session is to end after the replies now queued. */
static int
command(struct conn *c, const char *line, size_t pending)
{
	if (starts(line, "EHLO")) {
		reply(c, "250-sink.example.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
		         "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n");
		reply(c,
		      tls_ctx && !c->ssl ? "250-STARTTLS\r\n250 SMTPUTF8\r\n" : "250 SMTPUTF8\r\n");
	} else if (starts(line, "HELO")) {
		reply(c, "250 sink.example.test\r\n");
	} else if (starts(line, "MAIL")) {
		reply(c, "250 2.1.0 Ok\r\n");
	} else if (starts(line, "RCPT")) {
		reply(c, "250 2.1.5 Ok\r\n");
	} else if (starts(line, "DATA")) {
		reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->mode = M_DATA;
		c->dot = 2; /* the data starts at the beginning of a line */
		c->msg_bytes = 0;
	} else if (starts(line, "BDAT ")) {
		char *end;
		c->bdat_left = strtoull(line + 5, &end, 10);
		if (end == line + 5) {
			reply(c, "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
			note_error(c, "BDAT without a size");
			return 0;
		}
		while (*end == ' ')
			end++;
		c->bdat_last = strncasecmp(end, "LAST", 4) == 0;
		c->mode = M_BDAT;
	} else if (starts(line, "RSET") || starts(line, "NOOP")) {
		c->msg_bytes = 0;
		reply(c, "250 2.0.0 Ok\r\n");
	} else if (starts(line, "QUIT")) {
		reply(c, "221 2.0.0 Bye\r\n");
		return -1;
	} else if (starts(line, "STARTTLS") && tls_ctx && !c->ssl) {
		reply(c, "220 2.0.0 Ready to start TLS\r\n");
		if (pending) {
			/* RFC 3207 4: nothing may follow STARTTLS in the same packet */
			note_error(c, "commands pipelined after STARTTLS");
			return -1;
		}
		if (flush_out(c) < 0 || c->out_len) {
			note_error(c, "could not send the 220 to STARTTLS");
			return -1;
		}
		c->ssl = SSL_new(tls_ctx);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_accept_state(c->ssl);
		c->handshaking = 1;
	} else {
		reply(c, "502 5.5.2 Error: command not recognized\r\n");
		note_error(c, line);
	}
	return 0;
}

/* Acts on what c->in holds.  -1 when the session is to end after the replies. */
static int
process(struct conn *c)
{
	size_t off = 0;
	int rc = 0;

	while (off < c->in_len && !c->handshaking && rc == 0) {
		char *p = c->in + off;
		size_t left = c->in_len - off;
		if (c->mode == M_DATA) {
			off += eat_data(c, p, left);
		} else if (c->mode == M_BDAT) {
			size_t n = left < c->bdat_left ? left : (size_t)c->bdat_left;
			off += n;
			c->bdat_left -= n;
			c->msg_bytes += n;
			if (c->bdat_left == 0) {
				c->mode = M_CMD;
				reply(c, "250 2.0.0 Ok: chunk accepted\r\n");
				if (c->bdat_last)
					message_done(c);
			}
		} else {
			char line[1024];
			char *nl = memchr(p, '\n', left);
			if (!nl)
				break;
			size_t len = (size_t)(nl - p);
			if (len && p[len - 1] == '\r')
				len--;
			if (len >= sizeof(line))
				len = sizeof(line) - 1; /* only the verb and a size matter */
			memcpy(line, p, len);
			line[len] = 0;
			off += (size_t)(nl + 1 - p);
			rc = command(c, line, c->in_len - off);
		}
		if (c->quitting)
			rc = -1;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	if (c->in_len == IN_SIZE) {
		note_error(c, "command line too long");
		return -1;
	}
	return rc;
}

static int
handshake(struct conn *c)
{
	int r = SSL_accept(c->ssl);
	if (r == 1) {
		c->handshaking = 0;
		c->mode = M_CMD;
		handshakes++;
		return 0;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		struct epoll_event ev = {.events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT,
		                         .data.u32 = (uint32_t)c->fd};
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		return 0;
	}
	char err[256];
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	note_error(c, err);
	return -1;
}

/* One event on a session.  -1 when it is over. */
static int
service(struct conn *c)
{
	if (c->handshaking && handshake(c) < 0)
		return -1;
	if (c->handshaking)
		return 0;
	if (c->out_len && flush_out(c) < 0)
		return -1;
	if (c->out_len)
		return 0; /* the client reads its replies first */
	for (;;) {
		ssize_t n;
		if (c->ssl) {
			size_t r = 0;
			if (!SSL_read_ex(c->ssl, c->in + c->in_len, IN_SIZE - c->in_len, &r)) {
				int e = SSL_get_error(c->ssl, 0);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					break;
				return -1; /* closed or broken: the client's business */
			}
			n = (ssize_t)r;
		} else {
			n = read(c->fd, c->in + c->in_len, IN_SIZE - c->in_len);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		c->in_len += (size_t)n;
		int was_plain = !c->ssl;
		if (process(c) < 0) {
			flush_out(c);
			return -1;
		}
		if (c->handshaking)
			return handshake(c);
		if (was_plain && c->ssl)
			break;
	}
	return flush_out(c);
}

static void
accept_all(int lfd)
{
	for (;;) {
		int one = 1;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		if (fd >= MAX_FD) {
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		conns[fd] = c;
		connections++;
		reply(c, "220 sink.example.test ESMTP\r\n");
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)fd};
		epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
		if (flush_out(c) < 0)
			close_conn(c);
	}
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	struct sockaddr_in addr;
	struct epoll_event evs[256];
	struct sigaction sa = {.sa_handler = on_signal};
	int opt, one = 1;

	while ((opt = getopt(argc, argv, "t:k:n:")) != -1) {
		switch (opt) {
		case 't':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'n':
			expected = strtoull(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || bench_parse_endpoint(argv[optind], &addr) < 0 || !cert != !key)
		goto usage;
	if (cert) {
		tls_ctx = SSL_CTX_new(TLS_server_method());
		if (!tls_ctx || SSL_CTX_use_certificate_chain_file(tls_ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(tls_ctx, key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(tls_ctx) != 1) {
			fprintf(stderr, "tlssink: cannot load %s / %s\n", cert, key);
			return 1;
		}
		SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
		SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(lfd, 4096) < 0) {
		perror("tlssink: listen");
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = {.events = EPOLLIN, .data.u32 = LISTEN_TAG};
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
	printf("listening\n");
	fflush(stdout);

	while (!stop) {
		int k = epoll_wait(epfd, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			if (evs[i].data.u32 == LISTEN_TAG) {
				accept_all(lfd);
				continue;
			}
			struct conn *c = conns[evs[i].data.u32];
			if (c && service(c) < 0)
				close_conn(c);
		}
	}
	printf("messages=%llu min_bytes=%zu max_bytes=%zu connections=%llu handshakes=%llu "
	       "errors=%llu first_error=\"%s\"\n",
	       messages, messages ? min_bytes : 0, max_bytes, connections, handshakes, errors,
	       first_error);
	return errors ? 1 : 0;
usage:
	fprintf(stderr, "usage: tlssink [-t CERT -k KEY] [-n EXPECT] HOST:PORT\n");
	return 2;
}
