/*
 * bench/idleconns — N idle SMTP sessions, held open while the caller measures the server.
 *
 * Opens N connections to HOST:PORT (at most PARALLEL being set up at once), spreading
 * them over NADDRS loopback source addresses from SOURCE (127.0.1.1, 127.0.1.2, ...) so
 * that no address runs short of ports.  Each reads the 220 banner; with -t it also sends
 * EHLO, STARTTLS and completes the TLS handshake.  Then every session idles.
 *
 * Once all N are up it prints "ready established=N ..." and waits for standard input to
 * close (or a line on it); then it checks that the server still holds every session,
 * prints "final open=K closed_by_server=M" and exits: 0 when all N stayed open, 1 when a
 * session could not be set up or the server closed one.
 *
 * usage: idleconns [-n N] [-p PARALLEL] [-b SOURCE] [-a NADDRS] [-t] [-T SECONDS] HOST:PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum state { ST_CONNECT, ST_BANNER, ST_EHLO, ST_STARTTLS, ST_HANDSHAKE, ST_IDLE, ST_DEAD };

struct sess {
	int fd;
	enum state st;
	SSL *ssl;
	size_t len;
	char *buf; /* reply buffer during set-up only */
};

enum { BUF_SIZE = 4096, STDIN_TAG = 0xffffffffu };

static struct sess *sessions;
static int epfd;
static SSL_CTX *tls_ctx;
static int use_tls;
static char failure[512];

static void
watch(struct sess *s, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(s - sessions)};
	epoll_ctl(epfd, op, s->fd, &ev);
}

static void
fail(struct sess *s, const char *what)
{
	if (!failure[0])
		snprintf(failure, sizeof(failure), "session %zu: %s", (size_t)(s - sessions), what);
	s->st = ST_DEAD;
}

static int
send_line(struct sess *s, const char *line)
{
	size_t len = strlen(line);
	return write(s->fd, line, len) == (ssize_t)len ? 0 : -1;
}

static void
handshake(struct sess *s)
{
	int r = SSL_do_handshake(s->ssl);
	if (r == 1) {
		s->st = ST_IDLE;
		watch(s, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
		return;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
	else if (e == SSL_ERROR_WANT_WRITE)
		watch(s, EPOLLOUT, EPOLL_CTL_MOD);
	else {
		char err[200];
		ERR_error_string_n(ERR_get_error(), err, sizeof(err));
		fail(s, err);
	}
}

/* One step of the set-up of s; the caller checks s->st for IDLE or DEAD. */
static void
step(struct sess *s)
{
	if (s->st == ST_CONNECT) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			fail(s, strerror(err));
			return;
		}
		s->st = ST_BANNER;
		watch(s, EPOLLIN, EPOLL_CTL_MOD);
		return;
	}
	if (s->st == ST_HANDSHAKE) {
		handshake(s);
		return;
	}
	ssize_t n = read(s->fd, s->buf + s->len, BUF_SIZE - 1 - s->len);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		fail(s, n == 0 ? "closed by the server during set-up" : strerror(errno));
		return;
	}
	s->len += (size_t)n;
	s->buf[s->len] = 0;
	int code = bench_reply_code(s->buf, s->len);
	if (code == 0 && s->len < BUF_SIZE - 1)
		return;
	if (s->st == ST_BANNER && code == 220) {
		s->len = 0;
		if (!use_tls) {
			s->st = ST_IDLE;
			watch(s, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
		} else if (send_line(s, "EHLO bench.example.test\r\n") < 0) {
			fail(s, "write failed");
		} else {
			s->st = ST_EHLO;
		}
	} else if (s->st == ST_EHLO && code == 250) {
		if (!strstr(s->buf, "STARTTLS")) {
			fail(s, "the server does not offer STARTTLS");
			return;
		}
		s->len = 0;
		if (send_line(s, "STARTTLS\r\n") < 0)
			fail(s, "write failed");
		else
			s->st = ST_STARTTLS;
	} else if (s->st == ST_STARTTLS && code == 220) {
		s->ssl = SSL_new(tls_ctx);
		SSL_set_fd(s->ssl, s->fd);
		SSL_set_connect_state(s->ssl);
		s->st = ST_HANDSHAKE;
		handshake(s);
	} else {
		char what[300];
		snprintf(what, sizeof(what), "unexpected reply: %.200s", s->buf);
		what[strcspn(what, "\r\n")] = 0;
		fail(s, what);
	}
}

/* An event on an idle session: 1 when the server closed it or spoke unasked.  TLS 1.3
 * servers send session tickets after the handshake: those are read and dropped. */
static int
idle_event(struct sess *s)
{
	char buf[512];

	if (!s->ssl) {
		ssize_t n = read(s->fd, buf, sizeof(buf));
		return !(n < 0 && errno == EAGAIN);
	}
	int r = SSL_read(s->ssl, buf, sizeof(buf));
	if (r > 0)
		return 1;
	int e = SSL_get_error(s->ssl, r);
	ERR_clear_error();
	return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
}

static int
open_one(struct sess *s, const struct sockaddr_in *src, const struct sockaddr_in *dst)
{
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		fail(s, strerror(errno));
		return -1;
	}
	setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(s->fd, (const struct sockaddr *)src, sizeof(*src)) < 0 ||
	    (connect(s->fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 &&
	     errno != EINPROGRESS)) {
		fail(s, strerror(errno));
		return -1;
	}
	s->buf = malloc(BUF_SIZE);
	s->st = ST_CONNECT;
	watch(s, EPOLLOUT, EPOLL_CTL_ADD);
	return 0;
}

int
main(int argc, char **argv)
{
	int n = 10000, parallel = 100, naddrs = 8, opt;
	double timeout = 300;
	struct sockaddr_in base = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
	struct epoll_event evs[512];

	inet_pton(AF_INET, "127.0.1.1", &base.sin_addr);
	while ((opt = getopt(argc, argv, "n:p:b:a:tT:")) != -1) {
		switch (opt) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'p':
			parallel = atoi(optarg);
			break;
		case 'b':
			if (inet_pton(AF_INET, optarg, &base.sin_addr) != 1)
				goto usage;
			break;
		case 'a':
			naddrs = atoi(optarg);
			break;
		case 't':
			use_tls = 1;
			break;
		case 'T':
			timeout = atof(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || n < 1 || parallel < 1 || naddrs < 1 ||
	    bench_parse_endpoint(argv[optind], &dst) < 0)
		goto usage;

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max < rl.rlim_cur)
			rl.rlim_max = rl.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			perror("idleconns: raise the fd limit (ulimit -n)");
			return 1;
		}
	}
	if (use_tls) {
		tls_ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
		/* keep the client small: the server's memory is what is measured */
		SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	sessions = calloc((size_t)n, sizeof(*sessions));
	epfd = epoll_create1(EPOLL_CLOEXEC);

	double t0 = bench_now();
	int opened = 0, settingup = 0, idle = 0;
	uint32_t base_ip = ntohl(base.sin_addr.s_addr);
	while (idle < n && !failure[0]) {
		while (opened < n && settingup < parallel) {
			struct sockaddr_in src = {.sin_family = AF_INET};
			src.sin_addr.s_addr = htonl(base_ip + (uint32_t)(opened % naddrs));
			if (open_one(&sessions[opened], &src, &dst) < 0)
				break;
			opened++;
			settingup++;
		}
		if (failure[0])
			break;
		if (bench_now() - t0 > timeout) {
			snprintf(failure, sizeof(failure),
			         "only %d of %d sessions set up in %.0f s", idle, n, timeout);
			break;
		}
		int k = epoll_wait(epfd, evs, 512, 200);
		for (int i = 0; i < k; i++) {
			struct sess *s = &sessions[evs[i].data.u32];
			if (s->st == ST_IDLE) {
				if (idle_event(s))
					fail(s, "closed or spoke while idle");
				continue;
			}
			step(s);
			if (s->st == ST_IDLE || s->st == ST_DEAD) {
				settingup--;
				free(s->buf);
				s->buf = NULL;
				if (s->st == ST_IDLE)
					idle++;
			}
		}
	}
	if (failure[0]) {
		fprintf(stderr, "idleconns: %s (%d sessions were up)\n", failure, idle);
		printf("failed established=%d\n", idle);
		return 1;
	}
	printf("ready established=%d tls=%d setup_seconds=%.2f\n", idle, use_tls, bench_now() - t0);
	fflush(stdout);

	/* idle until told to stop; any event on a session means the server closed it */
	struct epoll_event sev = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
	epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);
	int closed = 0, done = 0;
	while (!done) {
		int k = epoll_wait(epfd, evs, 512, -1);
		for (int i = 0; i < k; i++) {
			if (evs[i].data.u32 == STDIN_TAG) {
				done = 1;
				continue;
			}
			struct sess *s = &sessions[evs[i].data.u32];
			if (s->st == ST_IDLE && idle_event(s)) {
				s->st = ST_DEAD;
				epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
				closed++;
			}
		}
	}
	printf("final open=%d closed_by_server=%d\n", n - closed, closed);
	fflush(stdout);
	return closed ? 1 : 0;
usage:
	fprintf(stderr, "usage: idleconns [-n N] [-p PARALLEL] [-b SOURCE] [-a NADDRS] [-t] "
	                "[-T SECONDS] HOST:PORT\n");
	return 2;
}
