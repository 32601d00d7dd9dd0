/*
 * benchutil — the little the load tools in bench/ share: a monotonic clock and
 * HOST:PORT parsing.  Header-only (each tool is one .c file linked on its own).
 */
#ifndef MXGATE_BENCHUTIL_H
#define MXGATE_BENCHUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "127.0.0.1:2525" into *sa (IPv4 only: every tool runs on loopback).  0, or -1. */
static inline int
bench_parse_endpoint(const char *text, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	char *end;
	long port;

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

/* The code of the SMTP reply at the start of buf[0..len), once its last line is complete:
 * 0 while it is incomplete, -1 when it is not a reply. */
static inline int
bench_reply_code(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	for (;;) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			return 0;
		if (eol - p < 4 || p[0] < '2' || p[0] > '5')
			return -1;
		if (p[3] == ' ' || p[3] == '\r')
			return atoi(p);
		p = eol + 1;
	}
}

#endif
