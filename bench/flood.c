/*
 * bench/flood — connections from a refused client, as fast as the server sheds them.
 *
 * Keeps IN_FLIGHT connections open at all times from SOURCE to HOST:PORT (non-blocking
 * connect, epoll).  A connection is complete when the server has closed it: the client
 * reads whatever the server sends (nothing, from mxgate; a 521 line, from postscreen) until
 * EOF or a reset, closes its end and opens the next one.  Completions are counted only in
 * the measuring window, after WARMUP seconds.  With -q the client answers the server's
 * first reply with QUIT, as a polite client turned away by a 554 banner does (Postfix's
 * smtpd refusing at connect keeps the session open until QUIT).
 *
 * usage: flood [-q] [-s SOURCE] [-c IN_FLIGHT] [-w WARMUP] [-d SECONDS] HOST:PORT
 * Prints one line of key=value figures; exits 1 when the server did no work (nothing
 * completed in the window) or a connection could not be made at all.
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

enum { MAX_INFLIGHT = 4096, STALL_SECONDS = 5 };

struct slot {
	int fd;
	int connected;
	int quit_sent;
	double started;
};

static struct sockaddr_in src, dst;
static int epfd, send_quit;
static struct slot slots[MAX_INFLIGHT];

/* figures: totals, and the part that fell inside the window */
static unsigned long long completed, in_window, connect_errors, resets, bytes, stalls;
static char first_reply[128];

static int
open_one(struct slot *s, int idx)
{
	int one = 1;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
	                         .data.u32 = (uint32_t)idx};

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		perror("flood: socket");
		return -1;
	}
	/* the port is chosen at connect(), per destination: no ephemeral-port shortage */
	setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (src.sin_family && bind(s->fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		perror("flood: bind to the source address");
		return -1;
	}
	if (connect(s->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
		connect_errors++;
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	s->connected = 0;
	s->quit_sent = 0;
	s->started = bench_now();
	epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
	return 0;
}

static void
finish(struct slot *s, int ok, double t, double w0, double w1)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	if (!ok)
		return;
	completed++;
	if (t >= w0 && t < w1)
		in_window++;
}

/* The server's side of one event: 1 when the connection is over. */
static int
service(struct slot *s, uint32_t events, int *ok)
{
	char buf[4096];

	if (!s->connected) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			connect_errors++;
			*ok = 0;
			return 1;
		}
		s->connected = 1;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP};
		ev.data.u32 = (uint32_t)(s - slots);
		epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
		if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
			return 0;
	}
	for (;;) {
		ssize_t n = read(s->fd, buf, sizeof(buf));
		if (n > 0) {
			if (!first_reply[0]) {
				size_t k = (size_t)n < sizeof(first_reply) - 1
				                   ? (size_t)n
				                   : sizeof(first_reply) - 1;
				memcpy(first_reply, buf, k);
				first_reply[strcspn(first_reply, "\r\n")] = 0;
			}
			bytes += (unsigned long long)n;
			if (send_quit && !s->quit_sent && buf[n - 1] == '\n') {
				/* the reply is whole (one packet on loopback): say goodbye */
				s->quit_sent = 1;
				if (write(s->fd, "QUIT\r\n", 6) < 0 && errno != EAGAIN) {
					resets++;
					*ok = 1;
					return 1;
				}
			}
			continue;
		}
		if (n == 0) {
			*ok = 1;
			return 1;
		}
		if (errno == EAGAIN)
			return 0;
		if (errno == EINTR)
			continue;
		/* ECONNRESET: the server closed with data unread; still a shed connection */
		resets++;
		*ok = 1;
		return 1;
	}
}

int
main(int argc, char **argv)
{
	int inflight = 50, opt;
	double warmup = 2, duration = 10;
	struct epoll_event evs[256];

	while ((opt = getopt(argc, argv, "qs:c:w:d:")) != -1) {
		switch (opt) {
		case 'q':
			send_quit = 1;
			break;
		case 's':
			src.sin_family = AF_INET;
			if (inet_pton(AF_INET, optarg, &src.sin_addr) != 1) {
				fprintf(stderr, "flood: bad source address %s\n", optarg);
				return 2;
			}
			break;
		case 'c':
			inflight = atoi(optarg);
			break;
		case 'w':
			warmup = atof(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || bench_parse_endpoint(argv[optind], &dst) < 0 || inflight < 1 ||
	    inflight > MAX_INFLIGHT || duration <= 0)
		goto usage;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	double t0 = bench_now(), w0 = t0 + warmup, w1 = w0 + duration;
	for (int i = 0; i < inflight; i++)
		if (open_one(&slots[i], i) < 0)
			return 1;
	for (;;) {
		double t = bench_now();
		if (t >= w1)
			break;
		int n = epoll_wait(epfd, evs, 256, 100);
		t = bench_now();
		for (int i = 0; i < n; i++) {
			struct slot *s = &slots[evs[i].data.u32];
			int ok = 0;
			if (s->fd < 0 || !service(s, evs[i].events, &ok))
				continue;
			finish(s, ok, t, w0, w1);
		}
		for (int i = 0; i < inflight; i++) {
			struct slot *s = &slots[i];
			if (s->fd >= 0 && t - s->started > STALL_SECONDS) {
				/* the server never answered: counted, and replaced */
				stalls++;
				finish(s, 0, t, w0, w1);
			}
			if (s->fd < 0 && t < w1 && open_one(s, i) < 0)
				return 1;
		}
	}
	for (int i = 0; i < inflight; i++)
		if (slots[i].fd >= 0)
			close(slots[i].fd);

	printf("completed=%llu seconds=%.3f rate=%.0f total=%llu connect_errors=%llu stalls=%llu "
	       "resets=%llu bytes_per_conn=%.1f first_reply=\"%s\"\n",
	       in_window, duration, (double)in_window / duration, completed, connect_errors, stalls,
	       resets, completed ? (double)bytes / (double)completed : 0.0, first_reply);
	if (in_window == 0) {
		fprintf(stderr, "flood: no connection completed in the window: the server did no "
		                "work\n");
		return 1;
	}
	return 0;
usage:
	fprintf(stderr, "usage: flood [-q] [-s SOURCE] [-c IN_FLIGHT] [-w WARMUP] [-d SECONDS] "
	                "HOST:PORT\n");
	return 2;
}
