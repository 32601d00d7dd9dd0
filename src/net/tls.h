/*
 * tls — OpenSSL behind a small interface.  Nothing else in mxgate calls OpenSSL.
 *
 * A tls_ctx is a reference-counted server context made from the config's certificate and
 * key: TLS 1.2 and up, no renegotiation, compression off, OpenSSL's default cipher list
 * for the protocol.  A reload builds a new one; connections keep the one they started
 * with.  Every call below clears OpenSSL's per-thread error queue before and after, and
 * errors come back as text for the caller to log.
 */
#ifndef MXGATE_TLS_H
#define MXGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct tls_ctx;
struct tls_conn;

/* Loads cert (a PEM chain, leaf first) and key and checks they match.  Returns NULL with
 * a reason in err. */
struct tls_ctx *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen);
struct tls_ctx *tls_ctx_ref(struct tls_ctx *t);
void tls_ctx_unref(struct tls_ctx *t); /* NULL is a no-op */

/* For `mxgate check`: 0 if the pair loads and matches, else -1 with a reason. */
int tls_check_pair(const char *cert, const char *key, char *err, size_t errlen);

/* A client context for relaying: TLS 1.2 and up; with verify, the peer's chain must lead
 * to a CA in cafile (or the system store when NULL) and name the host given to
 * tls_client_conn_new().  NULL with a reason in err. */
struct tls_ctx *tls_client_ctx_new(bool verify, const char *cafile, char *err, size_t errlen);

enum tls_io { TLS_IO_OK, TLS_IO_WANT_READ, TLS_IO_WANT_WRITE, TLS_IO_CLOSED, TLS_IO_ERROR };

/* A server-side TLS connection on fd (borrowed: the caller closes it). */
struct tls_conn *tls_conn_new(struct tls_ctx *t, int fd);
void tls_conn_free(struct tls_conn *c); /* NULL is a no-op */
/* A client-side TLS connection; host is sent as SNI (when a name) and checked when the
 * context verifies. */
struct tls_conn *tls_client_conn_new(struct tls_ctx *t, int fd, const char *host);
/* Sends close_notify (best effort). */
void tls_shutdown(struct tls_conn *c);

enum tls_io tls_handshake(struct tls_conn *c, char *err, size_t errlen);
/* Reads up to len bytes; *n is set on TLS_IO_OK. */
enum tls_io tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n);
enum tls_io tls_write(struct tls_conn *c, const void *buf, size_t len, size_t *n);
/* Bytes decrypted and waiting inside OpenSSL (no socket event will announce them). */
bool tls_pending(const struct tls_conn *c);
/* The last error as text (after TLS_IO_ERROR). */
const char *tls_error(const struct tls_conn *c);

/* "TLSv1.3", "TLS_AES_256_GCM_SHA384" and the cipher's secret bits, once handshaken. */
const char *tls_version(const struct tls_conn *c);
const char *tls_cipher(const struct tls_conn *c);
int tls_cipher_bits(const struct tls_conn *c);

#endif
