/*
 * conn — a client connection's byte stream, plain or TLS.
 *
 * read and write are function pointers: conn_start_tls() swaps them for their TLS
 * versions once the handshake is done, so the session code never knows which it has.
 * Both are non-blocking and return bytes moved, 0 for end of stream (read only), or -1
 * with errno (EAGAIN when the socket is not ready; then conn.want says which event the
 * TLS layer needs, which may differ from the call: a TLS read can need a write).
 *
 * The conn owns its tls_conn; the fd is owned by whoever calls conn_release().
 */
#ifndef MXGATE_CONN_H
#define MXGATE_CONN_H

#include <stdbool.h>
#include <sys/types.h>

#include "net/tls.h"

enum conn_want { CONN_WANT_NONE, CONN_WANT_READ, CONN_WANT_WRITE };

struct conn {
	int fd;
	struct tls_conn *tls; /* NULL until STARTTLS */
	bool handshaking;
	enum conn_want want;
	char *error; /* why the stream failed, for the log: conn_error() */
	ssize_t (*read)(struct conn *c, void *buf, size_t len);
	ssize_t (*write)(struct conn *c, const void *buf, size_t len);
};

void conn_init(struct conn *c, int fd);
/* Frees the TLS state and the error text; does not close the fd. */
void conn_release(struct conn *c);
/* Why the stream failed ("" when it has not; allocated only when it does, so an idle
 * connection holds no room for it). */
const char *conn_error(const struct conn *c);

/* Begins a server-side handshake on the connection.  Returns -1 without memory. */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx);
/* Drives the handshake: 1 done (read/write now speak TLS), 0 in progress (see want),
 * -1 failed (see error). */
int conn_handshake(struct conn *c);
/* True when decrypted bytes wait inside the TLS layer. */
bool conn_pending(const struct conn *c);

#endif
