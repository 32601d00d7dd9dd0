/*
 * bench/latency — whole SMTP transactions at a fixed rate, open loop: p50, p99.
 *
 * Starts transaction i at t0 + i/RATE whatever became of the earlier ones (open loop:
 * a slow server is not given time to catch up, so its queueing shows).  A transaction is
 * connect, banner, EHLO, MAIL, RCPT, DATA, a message of BYTES, the 250 after the dot, QUIT
 * and its 221; its latency runs from its scheduled start to the 221.  Transactions
 * started during the first WARMUP seconds run but are not recorded.
 *
 * usage: latency [-r RATE] [-d SECONDS] [-w WARMUP] [-l BYTES] [-s SOURCE] [-f FROM]
 *                [-t TO] HOST:PORT
 * Prints one line of key=value figures; exits 1 when a transaction failed (the first
 * failure is printed) or none completed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum step { S_CONNECT, S_BANNER, S_EHLO, S_MAIL, S_RCPT, S_DATA, S_DOT, S_QUIT };

static const int expect[] = {0, 220, 250, 250, 250, 354, 250, 221};

struct tx {
	int fd;
	enum step st;
	int record;
	double scheduled;
	size_t len;
	char buf[2048];
};

enum { MAX_TX = 8192, DRAIN_SECONDS = 60 };

static struct tx *txs[MAX_TX];
static int epfd;
static struct sockaddr_in src, dst;
static char ehlo[] = "EHLO latency.bench.example.test\r\n", mail[300], rcpt[300], *message;
static size_t message_len;
static double *lat;
static size_t nlat, errors;
static char first_error[300];

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
end_tx(int slot, const char *error)
{
	struct tx *t = txs[slot];

	if (error) {
		errors++;
		if (!first_error[0])
			snprintf(first_error, sizeof(first_error), "%s", error);
	} else if (t->record) {
		lat[nlat++] = bench_now() - t->scheduled;
	}
	epoll_ctl(epfd, EPOLL_CTL_DEL, t->fd, NULL);
	close(t->fd);
	free(t);
	txs[slot] = NULL;
}

static int
start_tx(double scheduled, int record)
{
	int slot, one = 1;

	for (slot = 0; slot < MAX_TX && txs[slot]; slot++)
		;
	if (slot == MAX_TX)
		return -1;
	struct tx *t = calloc(1, sizeof(*t));
	t->scheduled = scheduled;
	t->record = record;
	t->st = S_CONNECT;
	t->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	txs[slot] = t;
	setsockopt(t->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((src.sin_family && bind(t->fd, (struct sockaddr *)&src, sizeof(src)) < 0) ||
	    (connect(t->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
		char e[100];
		snprintf(e, sizeof(e), "connect: %s", strerror(errno));
		close(t->fd);
		free(t);
		txs[slot] = NULL;
		errors++;
		if (!first_error[0])
			snprintf(first_error, sizeof(first_error), "%s", e);
		return 0;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)slot};
	epoll_ctl(epfd, EPOLL_CTL_ADD, t->fd, &ev);
	return 0;
}

static int
send_all(int fd, const char *p, size_t len)
{
	/* a fresh loopback socket takes a few KiB at once; anything less is an error here */
	return write(fd, p, len) == (ssize_t)len ? 0 : -1;
}

static void
advance(int slot)
{
	struct tx *t = txs[slot];
	char e[400];

	if (t->st == S_CONNECT) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			snprintf(e, sizeof(e), "connect: %s", strerror(err));
			end_tx(slot, e);
			return;
		}
		t->st = S_BANNER;
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
		epoll_ctl(epfd, EPOLL_CTL_MOD, t->fd, &ev);
		return;
	}
	ssize_t n = read(t->fd, t->buf + t->len, sizeof(t->buf) - 1 - t->len);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0) {
		snprintf(e, sizeof(e), "connection lost waiting for %d: %s", expect[t->st],
		         n == 0 ? "closed by the server" : strerror(errno));
		end_tx(slot, e);
		return;
	}
	t->len += (size_t)n;
	t->buf[t->len] = 0;
	int code = bench_reply_code(t->buf, t->len);
	if (code == 0 && t->len < sizeof(t->buf) - 1)
		return;
	if (code != expect[t->st]) {
		snprintf(e, sizeof(e), "expected %d, got: %.300s", expect[t->st], t->buf);
		e[strcspn(e, "\r\n")] = 0;
		end_tx(slot, e);
		return;
	}
	t->len = 0;
	const char *out = NULL;
	size_t out_len = 0;
	switch (t->st) {
	case S_BANNER:
		out = ehlo;
		break;
	case S_EHLO:
		out = mail;
		break;
	case S_MAIL:
		out = rcpt;
		break;
	case S_RCPT:
		out = "DATA\r\n";
		break;
	case S_DATA:
		out = message, out_len = message_len;
		break;
	case S_DOT:
		out = "QUIT\r\n";
		break;
	case S_QUIT:
		end_tx(slot, NULL);
		return;
	case S_CONNECT:
		break;
	}
	if (!out_len)
		out_len = strlen(out);
	if (send_all(t->fd, out, out_len) < 0) {
		end_tx(slot, "short write");
		return;
	}
	t->st++;
}

static void
build_message(size_t bytes, const char *from, const char *to)
{
	size_t cap = bytes + 512;
	int n;

	message = malloc(cap);
	n = snprintf(message, cap,
	             "From: <%s>\r\nTo: <%s>\r\nSubject: latency benchmark\r\n"
	             "Message-ID: <latency@bench.example.test>\r\n\r\n",
	             from, to);
	message_len = (size_t)n;
	while (message_len + 72 + 5 <= bytes) {
		memset(message + message_len, 'x', 70);
		memcpy(message + message_len + 70, "\r\n", 2);
		message_len += 72;
	}
	memcpy(message + message_len, "end\r\n.\r\n", 8);
	message_len += 8;
}

int
main(int argc, char **argv)
{
	double rate = 200, duration = 20, warmup = 2;
	size_t bytes = 1024;
	const char *from = "sender@remote.example", *to = "user@example.test";
	int opt;
	struct epoll_event evs[256];

	while ((opt = getopt(argc, argv, "r:d:w:l:s:f:t:")) != -1) {
		switch (opt) {
		case 'r':
			rate = atof(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
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
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || bench_parse_endpoint(argv[optind], &dst) < 0 || rate <= 0 ||
	    duration <= 0 || warmup < 0)
		goto usage;
	snprintf(mail, sizeof(mail), "MAIL FROM:<%s>\r\n", from);
	snprintf(rcpt, sizeof(rcpt), "RCPT TO:<%s>\r\n", to);
	build_message(bytes, from, to);

	size_t total = (size_t)((warmup + duration) * rate), started = 0, recorded = 0;
	lat = malloc((total + 1) * sizeof(*lat));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	double t0 = bench_now() + 0.01, late = 0, max_late = 0;
	int active = 0, peak = 0;

	for (;;) {
		double t = bench_now();
		while (started < total && t0 + (double)started / rate <= t) {
			double sched = t0 + (double)started / rate;
			int record = sched >= t0 + warmup;
			if (t - sched > max_late)
				max_late = t - sched;
			late += t - sched;
			if (start_tx(sched, record) < 0) {
				fprintf(stderr, "latency: more than %d transactions in flight\n",
				        MAX_TX);
				return 1;
			}
			recorded += (size_t)record;
			started++;
		}
		active = 0;
		for (int i = 0; i < MAX_TX; i++)
			active += txs[i] != NULL;
		if (active > peak)
			peak = active;
		if (started == total && active == 0)
			break;
		if (started == total && t > t0 + warmup + duration + DRAIN_SECONDS) {
			fprintf(stderr,
			        "latency: %d transactions still open %d s after the last "
			        "start\n",
			        active, DRAIN_SECONDS);
			return 1;
		}
		int timeout = 100;
		if (started < total) {
			double wait = t0 + (double)started / rate - bench_now();
			timeout = wait <= 0 ? 0 : (int)(wait * 1000) + 1;
		}
		int k = epoll_wait(epfd, evs, 256, timeout);
		for (int i = 0; i < k; i++)
			if (txs[evs[i].data.u32])
				advance((int)evs[i].data.u32);
	}

	qsort(lat, nlat, sizeof(*lat), cmp_double);
	double sum = 0;
	for (size_t i = 0; i < nlat; i++)
		sum += lat[i];
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p) + 0.5)] * 1e3 : 0.0)
	printf("count=%zu errors=%zu rate=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f "
	       "p999_ms=%.2f max_ms=%.2f mean_ms=%.2f peak_in_flight=%d max_start_late_ms=%.2f "
	       "mean_start_late_ms=%.3f",
	       nlat, errors, rate, PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999),
	       nlat ? lat[nlat - 1] * 1e3 : 0.0, nlat ? sum / (double)nlat * 1e3 : 0.0, peak,
	       max_late * 1e3, started ? late / (double)started * 1e3 : 0.0);
	if (first_error[0])
		printf(" first_error=\"%s\"", first_error);
	printf("\n");
	if (errors || nlat != recorded || nlat == 0) {
		fprintf(stderr, "latency: %zu of %zu recorded transactions failed: %s\n", errors,
		        recorded, first_error[0] ? first_error : "none completed");
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: latency [-r RATE] [-d SECONDS] [-w WARMUP] [-l BYTES] "
	                "[-s SOURCE] [-f FROM] [-t TO] HOST:PORT\n");
	return 2;
}
