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
/* TLS 1.3 session tickets sent after each full handshake (tls { session-tickets }): with n
 * of them a client may resume n connections without a full handshake; 0 sends none.
 * OpenSSL's default, 2, is a browser's (parallel connections); each ticket costs an
 * encryption and a record on every handshake.  Tickets are sealed with keys of this
 * context, so a reload or a restart ends them (the client falls back to a full handshake).
 * TLS 1.2's tickets (RFC 5077) are not counted here. */
void tls_ctx_set_tickets(struct tls_ctx *t, unsigned n);
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
/* Bytes waiting inside OpenSSL that no socket event will announce: decrypted, or read
 * ahead from the socket (a server context reads all the socket holds, records after the
 * one asked for).  False after a read that wanted more, until the next read: what is
 * kept then is part of a record, and the socket's next bytes raise the event. */
bool tls_pending(const struct tls_conn *c);
/* The last error as text (after TLS_IO_ERROR). */
const char *tls_error(const struct tls_conn *c);

/*
 * Client certificates: the proof of the tenant (tls-sender-certificate-name).
 *
 * tls_ctx_set_client_ca() loads the CAs that verify clients into the server context, read
 * through sidefile (so a root-only bundle comes from the privileged reader at a reload);
 * they serve only that: the server's own chain is built as before.  A connection that
 * tls_conn_ask_peer_cert() marks, before its handshake, asks the client for a certificate
 * (SSL_VERIFY_PEER without FAIL_IF_NO_PEER_CERT) and verifies the chain, validity dates
 * included, but finishes the handshake whatever it finds, so that the SMTP reply can say
 * what was wrong: tls_peer_check() gives the verdict afterwards.  A certificate whose
 * extendedKeyUsage lacks clientAuth is not refused for it: public CAs now issue
 * serverAuth-only certificates, and the name is what proves the tenant; a CA of its chain
 * whose extendedKeyUsage keeps it to other uses (an S/MIME-only sub-CA) is refused.  Such
 * connections get no session tickets and a session id context of their own, so every
 * connection shows its certificate again.
 */
int tls_ctx_set_client_ca(struct tls_ctx *t, const char *cafile, char *err, size_t errlen);
/* For `mxgate check`: 0 if cafile holds at least one certificate, else -1 with a reason. */
int tls_check_cafile(const char *cafile, char *err, size_t errlen);
/* -1 when the context has no client CAs (or without memory). */
int tls_conn_ask_peer_cert(struct tls_conn *c);

enum tls_peer_verdict {
	TLS_PEER_OK,        /* the chain verified and a name matched */
	TLS_PEER_NONE,      /* the client sent no certificate */
	TLS_PEER_UNTRUSTED, /* the chain did not verify (self-signed, unknown CA, bad signature) */
	TLS_PEER_EXPIRED,   /* it verified but for its dates: expired or not yet valid */
	TLS_PEER_MISMATCH,  /* it verified, and no name matched */
	TLS_PEER_VERDICT_N
};

/* What the log says of a client certificate; every field is printable ASCII (client
 * bytes that are not come out escaped or as '?'), "" when there is nothing to say. */
struct tls_peer {
	char reason[128];  /* OpenSSL's words for a chain that did not verify */
	char subject[256]; /* RFC 2253, as OpenSSL prints it, cut to fit */
	char issuer[256];
	char sha256[100]; /* the certificate's SHA-256 fingerprint, "AB:CD:..." */
	char names[256];  /* the names compared: the dNSNames, else the CNs; ", " between */
};

/* After a handshake on a connection tls_conn_ask_peer_cert() marked: the verdict for the
 * expected name (base/certname.h), with p filled in.  The name is compared only when the
 * chain verified. */
enum tls_peer_verdict tls_peer_check(const struct tls_conn *c, const char *expected,
                                     struct tls_peer *p);

/* Whether the handshake resumed an earlier session (a ticket) instead of a full one. */
bool tls_resumed(const struct tls_conn *c);

/* "TLSv1.3", "TLS_AES_256_GCM_SHA384" and the cipher's secret bits, once handshaken.  The
 * names are libssl's constants: they stay valid after the connection is freed. */
const char *tls_version(const struct tls_conn *c);
const char *tls_cipher(const struct tls_conn *c);
int tls_cipher_bits(const struct tls_conn *c);

#endif
