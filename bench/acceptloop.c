/*
 * bench/acceptloop — the physical limit of shedding: accept and close, nothing else.
 *
 * One thread, as mxgate's acceptor: a blocking accept4() on HOST:PORT (backlog 4096, as
 * mxgate's listeners) and close() of each connection.  Prints "listening" once it is
 * ready, and the number of connections accepted when SIGTERM or SIGINT stops it.
 *
 * usage: acceptloop HOST:PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

static volatile sig_atomic_t stop;

static void
on_signal_cb(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	unsigned long long accepted = 0;
	int one = 1, lfd;

	if (argc != 2 || bench_parse_endpoint(argv[1], &sa) < 0) {
		fprintf(stderr, "usage: acceptloop HOST:PORT (an IPv4 address)\n");
		return 2;
	}

	/* no SA_RESTART: the signal interrupts the blocking accept */
	struct sigaction act = {.sa_handler = on_signal_cb};
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
		perror("acceptloop: listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	while (!stop) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				perror("acceptloop: accept");
			continue;
		}
		close(fd);
		accepted++;
	}
	printf("accepted=%llu\n", accepted);
	return 0;
}
