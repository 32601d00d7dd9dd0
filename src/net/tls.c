#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_ctx {
	atomic_uint refs;
	SSL_CTX *ctx;
};

struct tls_conn {
	SSL *ssl;
	char err[160];
};

/* The error queue as one line, emptied. */
static void
take_errors(char *buf, size_t size, const char *fallback)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last)
		ERR_error_string_n(last, buf, size);
	else
		snprintf(buf, size, "%s", fallback);
}

/*
 * Why a PEM file did not load, in words an admin can act on: the OS error when the file
 * could not be read ("Permission denied", not OpenSSL's "system lib"), a certificate and a
 * key given the wrong way round, a file with no PEM block of the kind expected, else
 * OpenSSL's reason.  Empties the error queue.
 */
static void
load_error(char *err, size_t errlen, const char *path, bool want_key)
{
	const char *what = want_key ? "key" : "certificate";
	unsigned long e, last = 0;
	char buf[65536];
	size_t n;
	FILE *fp;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last && ERR_GET_LIB(last) == ERR_LIB_SYS) {
		snprintf(err, errlen, "cannot load %s %s: %s", what, path,
		         strerror(ERR_GET_REASON(last)));
		return;
	}
	if (!(fp = fopen(path, "re"))) {
		snprintf(err, errlen, "cannot load %s %s: %s", what, path, strerror(errno));
		return;
	}
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	bool has_key = strstr(buf, "PRIVATE KEY-----") != NULL;
	bool has_cert = strstr(buf, "-----BEGIN CERTIFICATE-----") != NULL;
	if (want_key && has_cert && !has_key)
		snprintf(err, errlen,
		         "cannot load key %s: it holds a certificate, not a private key (are "
		         "certificate and key swapped?)",
		         path);
	else if (!want_key && has_key && !has_cert)
		snprintf(err, errlen,
		         "cannot load certificate %s: it holds a private key, not a certificate "
		         "(are certificate and key swapped?)",
		         path);
	else if (want_key ? !has_key : !has_cert)
		snprintf(err, errlen,
		         "cannot load %s %s: no PEM %s in it (a line -----BEGIN %s-----)", what,
		         path, want_key ? "private key" : "certificate",
		         want_key ? "PRIVATE KEY" : "CERTIFICATE");
	else
		snprintf(err, errlen, "cannot load %s %s: %s", what, path,
		         last ? ERR_reason_error_string(last) : "unreadable");
}

static SSL_CTX *
make_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		take_errors(err, errlen, "cannot make a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* idle sessions give their record buffers back (about 34 KiB each) */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		load_error(err, errlen, cert, false);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		load_error(err, errlen, key, true);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return NULL;
}

struct tls_ctx *
tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof(*t));

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (!(t->ctx = make_ctx(cert, key, err, errlen))) {
		free(t);
		return NULL;
	}
	atomic_init(&t->refs, 1);
	return t;
}

struct tls_ctx *
tls_ctx_ref(struct tls_ctx *t)
{
	atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
	return t;
}

void
tls_ctx_unref(struct tls_ctx *t)
{
	if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
		SSL_CTX_free(t->ctx);
		free(t);
	}
}

int
tls_check_pair(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx = make_ctx(cert, key, err, errlen);

	if (!ctx)
		return -1;
	SSL_CTX_free(ctx);
	return 0;
}

struct tls_ctx *
tls_client_ctx_new(bool verify, const char *cafile, char *err, size_t errlen)
{
	struct tls_ctx *t = calloc(1, sizeof(*t));

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ERR_clear_error();
	if (!(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		take_errors(err, errlen, "cannot make a TLS client context");
		free(t);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_AUTO_RETRY);
	if (verify) {
		int ok = cafile ? SSL_CTX_load_verify_locations(t->ctx, cafile, NULL)
		                : SSL_CTX_set_default_verify_paths(t->ctx);
		if (ok != 1) {
			char e[160];
			take_errors(e, sizeof(e), "unreadable");
			snprintf(err, errlen, "cannot load CA certificates %s: %s",
			         cafile ? cafile : "(system store)", e);
			SSL_CTX_free(t->ctx);
			free(t);
			return NULL;
		}
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
	}
	atomic_init(&t->refs, 1);
	return t;
}

struct tls_conn *
tls_client_conn_new(struct tls_ctx *t, int fd, const char *host)
{
	struct tls_conn *c = calloc(1, sizeof(*c));
	unsigned char buf[16];
	bool is_ip = inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;

	if (!c)
		return NULL;
	ERR_clear_error();
	if (!(c->ssl = SSL_new(t->ctx)) || SSL_set_fd(c->ssl, fd) != 1)
		goto fail;
	if (!is_ip) {
		/* the macro casts away const; give it a copy */
		char sni[256];
		snprintf(sni, sizeof(sni), "%s", host);
		if (SSL_set_tlsext_host_name(c->ssl, sni) != 1)
			goto fail;
	}
	if (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1
		          : X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
			goto fail;
	}
	SSL_set_connect_state(c->ssl);
	return c;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	free(c);
	return NULL;
}

void
tls_shutdown(struct tls_conn *c)
{
	ERR_clear_error();
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

struct tls_conn *
tls_conn_new(struct tls_ctx *t, int fd)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	ERR_clear_error();
	/* SSL_new takes its own reference on the SSL_CTX */
	if (!(c->ssl = SSL_new(t->ctx)) || SSL_set_fd(c->ssl, fd) != 1) {
		ERR_clear_error();
		SSL_free(c->ssl);
		free(c);
		return NULL;
	}
	SSL_set_accept_state(c->ssl);
	return c;
}

void
tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	ERR_clear_error();
	free(c);
}

static enum tls_io
result(struct tls_conn *c, int rc)
{
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_IO_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return TLS_IO_CLOSED;
	case SSL_ERROR_SYSCALL:
		take_errors(c->err, sizeof(c->err), "connection closed by the peer");
		return TLS_IO_ERROR;
	default:
		take_errors(c->err, sizeof(c->err), "TLS protocol error");
		return TLS_IO_ERROR;
	}
}

enum tls_io
tls_handshake(struct tls_conn *c, char *err, size_t errlen)
{
	int rc;
	enum tls_io r;

	ERR_clear_error();
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1)
		return TLS_IO_OK;
	r = result(c, rc);
	if (r == TLS_IO_ERROR || r == TLS_IO_CLOSED) {
		long v = SSL_get_verify_result(c->ssl);
		if (v != X509_V_OK && (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER))
			snprintf(c->err, sizeof(c->err), "certificate verification failed: %s",
			         X509_verify_cert_error_string(v));
		snprintf(err, errlen, "%s", r == TLS_IO_CLOSED ? "closed by the peer" : c->err);
	}
	return r;
}

enum tls_io
tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n)
{
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, buf, len, n) == 1)
		return TLS_IO_OK;
	return result(c, 0);
}

enum tls_io
tls_write(struct tls_conn *c, const void *buf, size_t len, size_t *n)
{
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, buf, len, n) == 1)
		return TLS_IO_OK;
	return result(c, 0);
}

bool
tls_pending(const struct tls_conn *c)
{
	return SSL_pending(c->ssl) > 0;
}

const char *
tls_error(const struct tls_conn *c)
{
	return c->err;
}

const char *
tls_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *
tls_cipher(const struct tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

int
tls_cipher_bits(const struct tls_conn *c)
{
	return SSL_get_cipher_bits(c->ssl, NULL);
}
