#include "net/conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void __attribute__((format(printf, 2, 3))) conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	char *text = NULL;

	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0)
		text = NULL;
	va_end(ap);
	free(c->error);
	c->error = text;
}

const char *
conn_error(const struct conn *c)
{
	return c->error ? c->error : "";
}

static ssize_t
plain_read(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	c->want = CONN_WANT_NONE;
	do
		n = read(c->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		c->want = CONN_WANT_READ;
	else if (n < 0)
		conn_fail(c, "read: %s", strerror(errno));
	return n;
}

static ssize_t
plain_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	c->want = CONN_WANT_NONE;
	do
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		c->want = CONN_WANT_WRITE;
	else if (n < 0)
		conn_fail(c, "write: %s", strerror(errno));
	return n;
}

static ssize_t
tls_io_result(struct conn *c, enum tls_io r, size_t n)
{
	c->want = CONN_WANT_NONE;
	switch (r) {
	case TLS_IO_OK:
		return (ssize_t)n;
	case TLS_IO_WANT_READ:
		c->want = CONN_WANT_READ;
		errno = EAGAIN;
		return -1;
	case TLS_IO_WANT_WRITE:
		c->want = CONN_WANT_WRITE;
		errno = EAGAIN;
		return -1;
	case TLS_IO_CLOSED:
		return 0;
	case TLS_IO_ERROR:
		break;
	}
	conn_fail(c, "TLS: %s", tls_error(c->tls));
	errno = EPROTO;
	return -1;
}

static ssize_t
tls_read_fn(struct conn *c, void *buf, size_t len)
{
	size_t n = 0;
	enum tls_io r = tls_read(c->tls, buf, len, &n);
	return tls_io_result(c, r, n);
}

static ssize_t
tls_write_fn(struct conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	enum tls_io r = tls_write(c->tls, buf, len, &n);
	return tls_io_result(c, r, n);
}

void
conn_init(struct conn *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->read = plain_read;
	c->write = plain_write;
}

void
conn_release(struct conn *c)
{
	tls_conn_free(c->tls);
	c->tls = NULL;
	free(c->error);
	c->error = NULL;
}

int
conn_start_tls(struct conn *c, struct tls_ctx *ctx)
{
	if (!(c->tls = tls_conn_new(ctx, c->fd)))
		return -1;
	c->handshaking = true;
	return 0;
}

int
conn_handshake(struct conn *c)
{
	char err[160];
	enum tls_io r = tls_handshake(c->tls, err, sizeof(err));

	c->want = CONN_WANT_NONE;
	switch (r) {
	case TLS_IO_OK:
		c->handshaking = false;
		c->read = tls_read_fn;
		c->write = tls_write_fn;
		return 1;
	case TLS_IO_WANT_READ:
		c->want = CONN_WANT_READ;
		return 0;
	case TLS_IO_WANT_WRITE:
		c->want = CONN_WANT_WRITE;
		return 0;
	default:
		conn_fail(c, "%s", err);
		return -1;
	}
}

bool
conn_pending(const struct conn *c)
{
	return c->tls && !c->handshaking && tls_pending(c->tls);
}
