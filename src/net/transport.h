/*
 * transport — a blocking client byte stream, plain or TLS, for the SMTP client (smtpc.h).
 *
 * read and write are function pointers: transport_starttls() swaps them for their TLS
 * versions once the handshake is done, so smtpc never knows which it has (the shape of
 * Redis's connection.h).  The socket itself is non-blocking; every call waits with poll()
 * and gives up at the deadline that transport_arm() last set (timeout_ms from then), so
 * no wait is unbounded however slowly the peer drips bytes.
 *
 * Failures return -1 with errno (ETIMEDOUT at the deadline, ECONNRESET, EPIPE; EPROTO
 * for a TLS error) and a line in error, for the caller to log or print.  Writes never
 * raise SIGPIPE (MSG_NOSIGNAL; OpenSSL writes through the same socket, so callers that
 * use TLS ignore SIGPIPE as well).
 *
 * The transport owns its socket and its tls_conn; the tls_ctx is borrowed for the call
 * to transport_starttls() and referenced by the connection it makes.
 */
#ifndef MXGATE_TRANSPORT_H
#define MXGATE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "net/tls.h"

struct transport {
	int fd;
	struct tls_conn *tls; /* NULL until STARTTLS */
	uint64_t timeout_ms;
	struct timespec deadline;
	char error[200]; /* why the last call failed */
	/* >0 bytes read, 0 at the end of the stream, -1 with errno */
	ssize_t (*read)(struct transport *t, void *buf, size_t len);
	/* writes all of buf: 0, or -1 with errno */
	int (*write)(struct transport *t, const void *buf, size_t len);
};

/* A transport with no socket yet (fd -1); timeout_ms bounds each armed wait. */
void transport_init(struct transport *t, uint64_t timeout_ms);
/* Closes the socket and frees the TLS state.  Safe on an initialised transport. */
void transport_close(struct transport *t);

/* Makes a socket of family, bound to src when it is not NULL.  0, or -1 with errno. */
int transport_socket(struct transport *t, int family, const struct sockaddr *src, socklen_t srclen);
/* Connects the socket to sa within the timeout (arms it).  0, or -1 with errno
 * (ETIMEDOUT, ECONNREFUSED, ...).  After a failure transport_socket() may be called again. */
int transport_connect(struct transport *t, const struct sockaddr *sa, socklen_t len);

/* Starts the deadline for the next waits: now + timeout_ms. */
void transport_arm(struct transport *t);

/* Client-side TLS on the connection (after the peer's 220 to STARTTLS): handshakes within
 * the timeout, host is the SNI name (and the name checked when ctx verifies).  0, or -1
 * with error; the transport is then unusable. */
int transport_starttls(struct transport *t, struct tls_ctx *ctx, const char *host);

/* Best-effort close_notify when TLS is up. */
void transport_shutdown(struct transport *t);

#endif
