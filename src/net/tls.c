#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/certname.h"
#include "base/sidefile.h"

struct tls_ctx {
	atomic_uint refs;
	SSL_CTX *ctx;
	bool client_ca; /* a verify store for client certificates is set */
};

struct tls_conn {
	SSL *ssl;
	char *err;      /* the last error, for the log: allocated when one happens */
	int verify_err; /* the first error of the client's chain (X509_V_OK: none) */
	bool starved;   /* the last read wanted more from the socket */
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

/* A PEM file is small: a chain of a few certificates, a key, a CA bundle (the system's is
 * about 200 KB). */
#define PEM_MAX_SIZE (4u * 1024 * 1024)

/*
 * Reads a PEM file named by the configuration through sidefile (so that, after the
 * privileges are dropped, a root-only key comes from the privileged reader: smtpd/keeper.h)
 * into a memory BIO.  NULL with a reason an admin can act on: the OS error ("Permission
 * denied", not OpenSSL's "system lib").
 */
static BIO *
pem_open(const char *path, const char *what, char **text, char *err, size_t errlen)
{
	const struct sidefile_limits lim = {.max_size = PEM_MAX_SIZE,
	                                    .max_line = SIDEFILE_DEFAULT_MAX_LINE};
	struct sidefile_error serr;
	size_t len;
	BIO *bio;

	if (sidefile_slurp(path, &lim, text, &len, &serr) < 0) {
		snprintf(err, errlen, "cannot load %s %s: %s", what, path, serr.text);
		return NULL;
	}
	if (len > INT_MAX || !(bio = BIO_new_mem_buf(*text, (int)len))) {
		snprintf(err, errlen, "cannot load %s %s: out of memory", what, path);
		free(*text);
		*text = NULL;
		return NULL;
	}
	return bio;
}

/* Never asks for a passphrase on a terminal: an encrypted key is refused. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
	(void)buf, (void)size, (void)rwflag, (void)arg;
	return -1;
}

/*
 * Why a PEM file that was read did not parse: a certificate and a key given the wrong way
 * round, a file with no PEM block of the kind expected, an encrypted key, else OpenSSL's
 * reason.  Empties the error queue.
 */
static void
parse_error(char *err, size_t errlen, const char *path, const char *text, bool want_key)
{
	const char *what = want_key ? "key" : "certificate";
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	bool has_key = strstr(text, "PRIVATE KEY-----") != NULL;
	bool has_cert = strstr(text, "-----BEGIN CERTIFICATE-----") != NULL;
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
	else if (want_key && ERR_GET_LIB(last) == ERR_LIB_X509 &&
	         ERR_GET_REASON(last) == X509_R_KEY_VALUES_MISMATCH)
		snprintf(err, errlen,
		         "cannot load key %s: it does not match the certificate (another "
		         "certificate's key, or a renewed certificate with the old key?)",
		         path);
	else if (want_key && strstr(text, "ENCRYPTED"))
		snprintf(err, errlen,
		         "cannot load key %s: it is encrypted with a passphrase; mxgate needs "
		         "it unencrypted (`openssl pkey -in KEY -out NEW`), readable by root only",
		         path);
	else
		snprintf(err, errlen, "cannot load %s %s: %s", what, path,
		         last ? ERR_reason_error_string(last) : "unreadable");
}

/* The leaf and the chain after it, as SSL_CTX_use_certificate_chain_file() would. */
static int
use_chain(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	BIO *bio = pem_open(path, "certificate", &text, err, errlen);
	X509 *x;
	int rc = -1;

	if (!bio)
		return -1;
	if (!(x = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL)) ||
	    SSL_CTX_use_certificate(ctx, x) != 1) {
		parse_error(err, errlen, path, text, false);
		goto out;
	}
	X509_free(x);
	SSL_CTX_clear_chain_certs(ctx);
	while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL))) {
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
			X509_free(x);
			parse_error(err, errlen, path, text, false);
			goto out;
		}
	}
	/* the end of the file is "no start line"; anything else is a broken certificate */
	unsigned long e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		snprintf(err, errlen,
		         "cannot load certificate %s: a certificate after the first "
		         "does not parse: %s",
		         path, ERR_reason_error_string(e));
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(bio);
	free(text);
	return rc;
}

static int
use_key(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	BIO *bio = pem_open(path, "key", &text, err, errlen);
	EVP_PKEY *k;
	int rc = -1;

	if (!bio)
		return -1;
	if (!(k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) ||
	    SSL_CTX_use_PrivateKey(ctx, k) != 1)
		parse_error(err, errlen, path, text, true);
	else
		rc = 0;
	EVP_PKEY_free(k);
	ERR_clear_error();
	BIO_free(bio);
	/* the key's text leaves no copy behind in the heap */
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}

/* Every certificate in a PEM bundle into a trust store. */
static int
use_cafile(X509_STORE *store, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	BIO *bio = pem_open(path, "CA certificates", &text, err, errlen);
	X509 *x;
	int n = 0, rc = -1;

	if (!bio)
		return -1;
	while ((x = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL))) {
		int ok = X509_STORE_add_cert(store, x);
		X509_free(x);
		if (ok != 1) {
			char e[160];
			take_errors(e, sizeof(e), "cannot add it");
			snprintf(err, errlen, "cannot load CA certificates %s: %s", path, e);
			goto out;
		}
		n++;
	}
	if (n == 0) {
		snprintf(err, errlen,
		         "cannot load CA certificates %s: no PEM certificate in it (a line "
		         "-----BEGIN CERTIFICATE-----)",
		         path);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(bio);
	free(text);
	return rc;
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
	/* idle sessions give their record buffers back (about 34 KiB each); the chain sent is
	 * the file's as loaded: without NO_AUTO_CHAIN, a file without intermediates (a
	 * self-signed certificate, a leaf alone) has OpenSSL build a chain from the context's
	 * store, which is empty, on every handshake (an X509_STORE_CTX and a verification),
	 * for the same leaf alone on the wire */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
	/* each read takes what the socket holds, not a record's 5-byte header and then its
	 * body: half the read(2) calls of a session (tls_pending() sees the bytes kept) */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (use_chain(ctx, cert, err, errlen) < 0 || use_key(ctx, key, err, errlen) < 0)
		goto fail;
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
	SSL_CTX_set_app_data(t->ctx, t);
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

void
tls_ctx_set_tickets(struct tls_ctx *t, unsigned n)
{
	(void)SSL_CTX_set_num_tickets(t->ctx, n); /* cannot fail for a server context */
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
		int ok = cafile ? use_cafile(SSL_CTX_get_cert_store(t->ctx), cafile, err, errlen)
		         : SSL_CTX_set_default_verify_paths(t->ctx) == 1 ? 0
		                                                         : -1;
		if (ok < 0) {
			if (!cafile) {
				char e[160];
				take_errors(e, sizeof(e), "unreadable");
				snprintf(err, errlen,
				         "cannot load the system's CA certificates: %s", e);
			}
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
	free(c->err);
	free(c);
}

/* Keeps text as the connection's error (a connection that never fails holds no room for
 * one). */
static void
set_err(struct tls_conn *c, const char *text)
{
	free(c->err);
	c->err = strdup(text);
}

static void
set_err_queue(struct tls_conn *c, const char *fallback)
{
	char buf[160];

	take_errors(buf, sizeof(buf), fallback);
	set_err(c, buf);
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
		set_err_queue(c, "connection closed by the peer");
		return TLS_IO_ERROR;
	default:
		set_err_queue(c, "TLS protocol error");
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
		if (v != X509_V_OK && (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER)) {
			char buf[160];
			snprintf(buf, sizeof(buf), "certificate verification failed: %s",
			         X509_verify_cert_error_string(v));
			set_err(c, buf);
		}
		snprintf(err, errlen, "%s",
		         r == TLS_IO_CLOSED ? "closed by the peer" : tls_error(c));
	}
	return r;
}

enum tls_io
tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n)
{
	enum tls_io r = TLS_IO_OK;

	ERR_clear_error();
	if (SSL_read_ex(c->ssl, buf, len, n) != 1)
		r = result(c, 0);
	c->starved = r == TLS_IO_WANT_READ;
	return r;
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
	/* what is left after a read that wanted more is part of a record: the socket's next
	 * bytes, which raise an event, complete it */
	return !c->starved && SSL_has_pending(c->ssl) == 1;
}

const char *
tls_error(const struct tls_conn *c)
{
	return c->err ? c->err : "TLS error (no memory to say which)";
}

bool
tls_resumed(const struct tls_conn *c)
{
	return SSL_session_reused(c->ssl) == 1;
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

/* -- client certificates -- */

int
tls_ctx_set_client_ca(struct tls_ctx *t, const char *cafile, char *err, size_t errlen)
{
	X509_STORE *store = X509_STORE_new();
	int rc = -1;

	ERR_clear_error();
	if (!store) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (use_cafile(store, cafile, err, errlen) == 0) {
		if (SSL_CTX_set1_verify_cert_store(t->ctx, store) == 1) {
			t->client_ca = true;
			rc = 0;
		} else {
			take_errors(err, errlen, "cannot set the client CA store");
		}
	}
	X509_STORE_free(store);
	ERR_clear_error();
	return rc;
}

int
tls_check_cafile(const char *cafile, char *err, size_t errlen)
{
	X509_STORE *store = X509_STORE_new();
	int rc;

	if (!store) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = use_cafile(store, cafile, err, errlen);
	X509_STORE_free(store);
	return rc;
}

/* Never fails the handshake: the first error is kept for tls_peer_check().  The purpose
 * is overlooked for the client's own certificate only (tls.h): a CA of its chain kept to
 * other uses (an S/MIME-only sub-CA) is an error like any other. */
static int
peer_verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
	int e = X509_STORE_CTX_get_error(x);
	bool leaf_purpose =
	        e == X509_V_ERR_INVALID_PURPOSE && X509_STORE_CTX_get_error_depth(x) == 0;

	if (!ok && c && c->verify_err == X509_V_OK && !leaf_purpose)
		c->verify_err = e;
	return 1;
}

int
tls_conn_ask_peer_cert(struct tls_conn *c)
{
	static atomic_ullong next_sid;
	SSL_CTX *ctx = SSL_get_SSL_CTX(c->ssl);
	struct tls_ctx *t = SSL_CTX_get_app_data(ctx);
	char sid[SSL_MAX_SID_CTX_LENGTH];

	if (!t || !t->client_ca)
		return -1;
	/* a context of its own: no TLS 1.2 session id resumes into it either (tickets are off
	 * below), so every connection shows its certificate again; a resumed session would
	 * bring back only the last verify error, not at which depth (peer_verify_cb) */
	int sl = snprintf(sid, sizeof(sid), "mxgate-cc-%ld-%llu", (long)getpid(),
	                  (unsigned long long)atomic_fetch_add(&next_sid, 1));
	if (sl < 0 || (size_t)sl >= sizeof(sid))
		sl = (int)sizeof(sid) - 1; /* as snprintf cut it (not before 10^13 connections) */
	ERR_clear_error();
	c->verify_err = X509_V_OK;
	SSL_set_app_data(c->ssl, c);
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, peer_verify_cb);
	SSL_set_options(c->ssl, SSL_OP_NO_TICKET);
	if (SSL_set_num_tickets(c->ssl, 0) != 1 ||
	    SSL_set_session_id_context(c->ssl, (const unsigned char *)sid, (unsigned)sl) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/* An X509_NAME in RFC 2253 form (control and non-ASCII bytes escaped), cut to fit. */
static void
name_text(const X509_NAME *n, char *out, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	int len;

	out[0] = '\0';
	if (!b)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (len = BIO_read(b, out, (int)size - 1)) > 0)
		out[len] = '\0';
	BIO_free(b);
}

static void
add_name(struct tls_peer *p, const char *name, size_t len)
{
	size_t used = strlen(p->names);
	char buf[CERTNAME_MAX + 4];

	if (used + 3 >= sizeof(p->names))
		return;
	certname_printable(name, len, buf, sizeof(buf));
	if (used) {
		memcpy(p->names + used, ", ", 3);
		used += 2;
	}
	size_t n = strlen(buf);
	if (n > sizeof(p->names) - 1 - used)
		n = sizeof(p->names) - 1 - used;
	memcpy(p->names + used, buf, n);
	p->names[used + n] = '\0';
}

/* Compares the dNSNames, or the CNs when there is none (RFC 6125 §6.4.4); fills names. */
static bool
names_match(X509 *x, const char *expected, struct tls_peer *p)
{
	GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool any_dns = false, match = false;

	for (int i = 0; san && i < sk_GENERAL_NAME_num(san); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
		if (g->type != GEN_DNS)
			continue;
		const char *d = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
		size_t len = (size_t)ASN1_STRING_length(g->d.dNSName);
		any_dns = true;
		add_name(p, d, len);
		match = match || certname_match(expected, d, len);
	}
	GENERAL_NAMES_free(san);
	if (any_dns)
		return match;
	const X509_NAME *subj = X509_get_subject_name(x);
	for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
		unsigned char *cn = NULL;
		int len = ASN1_STRING_to_UTF8(
		        &cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
		if (len < 0)
			continue;
		add_name(p, (const char *)cn, (size_t)len);
		match = match || certname_match(expected, (const char *)cn, (size_t)len);
		OPENSSL_free(cn);
	}
	return match;
}

enum tls_peer_verdict
tls_peer_check(const struct tls_conn *c, const char *expected, struct tls_peer *p)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	enum tls_peer_verdict v;

	memset(p, 0, sizeof(*p));
	ERR_clear_error();
	if (!x)
		return TLS_PEER_NONE;
	name_text(X509_get_subject_name(x), p->subject, sizeof(p->subject));
	name_text(X509_get_issuer_name(x), p->issuer, sizeof(p->issuer));
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
		for (unsigned i = 0, o = 0; i < mdlen && o + 4 <= sizeof(p->sha256); i++)
			o += (unsigned)snprintf(p->sha256 + o, sizeof(p->sha256) - o, "%s%02X",
			                        i ? ":" : "", md[i]);
	long e = c->verify_err != X509_V_OK ? c->verify_err : SSL_get_verify_result(c->ssl);
	if (c->verify_err == X509_V_OK && e == X509_V_ERR_INVALID_PURPOSE)
		e = X509_V_OK; /* the client's own certificate's purpose alone (peer_verify_cb) */
	bool match = names_match(x, expected, p);
	if (e != X509_V_OK) {
		snprintf(p->reason, sizeof(p->reason), "%s", X509_verify_cert_error_string(e));
		v = e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID
		            ? TLS_PEER_EXPIRED
		            : TLS_PEER_UNTRUSTED;
	} else {
		v = match ? TLS_PEER_OK : TLS_PEER_MISMATCH;
	}
	ERR_clear_error();
	return v;
}
