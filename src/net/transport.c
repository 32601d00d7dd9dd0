#include "net/transport.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
void
transport_init(struct transport *t, uint64_t timeout_ms)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	t->timeout_ms = timeout_ms;
}

void
transport_close(struct transport *t)
{
	tls_conn_free(t->tls);
	t->tls = NULL;
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

void
transport_arm(struct transport *t)
{
	t->deadline = clock_deadline(CLOCK_MONOTONIC, t->timeout_ms);
}

/* Waits for events on the socket until the deadline.  0, or -1 with errno (ETIMEDOUT). */
static int
wait_fd(struct transport *t, short events)
{
	for (;;) {
		struct timespec now;
		struct pollfd pfd = {.fd = t->fd, .events = events};
		long long ms;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (long long)(t->deadline.tv_sec - now.tv_sec) * 1000 +
		     (t->deadline.tv_nsec - now.tv_nsec) / 1000000;
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
set_error(struct transport *t, const char *what)
{
	int e = errno;

	snprintf(t->error, sizeof(t->error), "%s: %s", what, strerror(e));
	errno = e;
}

static ssize_t
plain_read(struct transport *t, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(t->fd, buf, len, 0);
		if (n >= 0)
			return n;
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		if (errno != EINTR && wait_fd(t, POLLIN) < 0)
			break;
	}
	set_error(t, "read");
	return -1;
}

static int
plain_write(struct transport *t, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
		    wait_fd(t, POLLOUT) < 0) {
			set_error(t, "write");
			return -1;
		}
	}
	return 0;
}

/* A TLS call that wants the socket: waits for it, or fails with errno and error. */
static int
tls_wait(struct transport *t, enum tls_io r)
{
	switch (r) {
	case TLS_IO_WANT_READ:
	case TLS_IO_WANT_WRITE:
		if (wait_fd(t, r == TLS_IO_WANT_READ ? POLLIN : POLLOUT) == 0)
			return 0;
		set_error(t, "TLS");
		return -1;
	case TLS_IO_CLOSED:
		errno = ECONNRESET;
		snprintf(t->error, sizeof(t->error), "TLS: the peer closed the session");
		return -1;
	default:
		snprintf(t->error, sizeof(t->error), "TLS: %.190s", tls_error(t->tls));
		errno = EPROTO;
		return -1;
	}
}

static ssize_t
tls_read_cb(struct transport *t, void *buf, size_t len)
{
	for (;;) {
		size_t n = 0;
		enum tls_io r = tls_read(t->tls, buf, len, &n);
		if (r == TLS_IO_OK)
			return (ssize_t)n;
		if (r == TLS_IO_CLOSED)
			return 0;
		if (tls_wait(t, r) < 0)
			return -1;
	}
}

static int
tls_write_cb(struct transport *t, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		size_t n = 0;
		enum tls_io r = tls_write(t->tls, p, len, &n);
		if (r == TLS_IO_OK) {
			p += n;
			len -= n;
		} else if (tls_wait(t, r) < 0) {
			return -1;
		}
	}
	return 0;
}

int
transport_socket(struct transport *t, int family, const struct sockaddr *src, socklen_t srclen)
{
	transport_close(t);
	t->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (t->fd < 0) {
		set_error(t, "socket");
		return -1;
	}
	if (src && bind(t->fd, src, srclen) < 0) {
		set_error(t, "bind");
		int e = errno;
		close(t->fd);
		t->fd = -1;
		errno = e;
		return -1;
	}
	t->read = plain_read;
	t->write = plain_write;
	return 0;
}

int
transport_connect(struct transport *t, const struct sockaddr *sa, socklen_t len)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	transport_arm(t);
	if (connect(t->fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			soerr = errno;
		else if (wait_fd(t, POLLOUT) < 0)
			soerr = errno;
		else if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
	}
	if (soerr) {
		errno = soerr;
		set_error(t, "connect");
		return -1;
	}
	return 0;
}

int
transport_starttls(struct transport *t, struct tls_ctx *ctx, const char *host)
{
	char err[160];

	if (!(t->tls = tls_client_conn_new(ctx, t->fd, host))) {
		snprintf(t->error, sizeof(t->error), "cannot set up TLS (out of memory)");
		errno = ENOMEM;
		return -1;
	}
	transport_arm(t);
	for (;;) {
		enum tls_io r = tls_handshake(t->tls, err, sizeof(err));
		if (r == TLS_IO_OK)
			break;
		if (r == TLS_IO_WANT_READ || r == TLS_IO_WANT_WRITE) {
			if (tls_wait(t, r) == 0)
				continue;
			set_error(t, "TLS handshake");
		} else {
			snprintf(t->error, sizeof(t->error), "TLS handshake failed: %.160s", err);
			errno = EPROTO;
		}
		return -1;
	}
	t->read = tls_read_cb;
	t->write = tls_write_cb;
	return 0;
}

void
transport_shutdown(struct transport *t)
{
	if (t->tls)
		tls_shutdown(t->tls);
}
