/*
 * bench/tlsheap — where the heap of an idle STARTTLS session goes inside OpenSSL.
 *
 * Makes mxgate's own server context (tls_ctx_new() from src/net/tls.c, so its options and
 * modes are the daemon's), then N server sessions (tls_conn_new(), tls_handshake()) over
 * socket pairs, each against an OpenSSL client with its defaults (TLS 1.3, as
 * bench/idleconns) in a child process.  Each server reads the client's one byte, as an
 * idle session that has seen a command, and stays open.  OpenSSL's allocations are
 * counted by the file and line that made them (CRYPTO_set_mem_functions), only while
 * the sessions are made, and what is still held is printed per session: the bytes
 * OpenSSL keeps for an idle TLS session, without mxgate's own state (src/smtpd).
 *
 * usage: tlsheap CERT KEY [N]       (N: sessions, 200 by default, at most 1000)
 */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/net/tls.h"

#define MAX_SESSIONS 1000
#define MAX_SITES    4096
#define HDR          16 /* room before each block: its site and its size */

struct site {
	const char *file;
	int line;
	long bytes, blocks;
};

static struct site sites[MAX_SITES + 1]; /* the last one: every site past the table */
static int nsites;
static int counting;

static struct site *
site_of(const char *file, int line)
{
	for (int i = 0; i < nsites; i++)
		if (sites[i].line == line && sites[i].file == file)
			return &sites[i];
	if (nsites == MAX_SITES) {
		sites[MAX_SITES].file = "(other sites)";
		return &sites[MAX_SITES];
	}
	sites[nsites] = (struct site){.file = file, .line = line};
	return &sites[nsites++];
}

static void *
heap_malloc(size_t n, const char *file, int line)
{
	char *p = malloc(n + HDR);

	if (!p)
		return NULL;
	struct site *s = counting ? site_of(file, line) : NULL;
	memcpy(p, &s, sizeof(s));
	memcpy(p + sizeof(s), &n, sizeof(n));
	if (s) {
		s->bytes += (long)n;
		s->blocks++;
	}
	return p + HDR;
}

static void
heap_free(void *q, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!q)
		return;
	char *p = (char *)q - HDR;
	struct site *s;
	size_t n;
	memcpy(&s, p, sizeof(s));
	memcpy(&n, p + sizeof(s), sizeof(n));
	if (s) {
		s->bytes -= (long)n;
		s->blocks--;
	}
	free(p);
}

static void *
heap_realloc(void *q, size_t n, const char *file, int line)
{
	if (!q)
		return heap_malloc(n, file, line);
	char *p = (char *)q - HDR;
	struct site *s;
	size_t old;
	memcpy(&s, p, sizeof(s));
	memcpy(&old, p + sizeof(s), sizeof(old));
	if (!(p = realloc(p, n + HDR)))
		return NULL;
	memcpy(p + sizeof(s), &n, sizeof(n));
	if (s)
		s->bytes += (long)n - (long)old;
	return p + HDR;
}

/* The child: N clients, one byte each after the handshake, then open until stdin ends. */
static void
clients(int (*fds)[2], int n, int hold)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	for (int i = 0; i < n; i++) {
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fds[i][1]);
		if (SSL_connect(ssl) != 1 || SSL_write(ssl, "x", 1) != 1) {
			ERR_print_errors_fp(stderr);
			_exit(1);
		}
	}
	char c;
	while (read(hold, &c, 1) > 0)
		;
	_exit(0);
}

static int
by_bytes(const void *a, const void *b)
{
	long x = ((const struct site *)a)->bytes, y = ((const struct site *)b)->bytes;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void
print_sites(int n)
{
	long total = 0, blocks = 0;

	qsort(sites, (size_t)nsites + 1, sizeof(*sites), by_bytes);
	for (int i = 0; i <= nsites; i++) {
		total += sites[i].bytes;
		blocks += sites[i].blocks;
	}
	/* malloc adds a header of 8 bytes and rounds each block up to 16 */
	printf("openssl_bytes_per_session=%.0f blocks_per_session=%.1f sessions=%d\n",
	       (double)total / n, (double)blocks / n, n);
	for (int i = 0; i <= nsites && sites[i].bytes >= n * 16; i++)
		printf("%8.0f B %5.2f blocks  %s:%d\n", (double)sites[i].bytes / n,
		       (double)sites[i].blocks / n, sites[i].file, sites[i].line);
}

int
main(int argc, char **argv)
{
	static int fds[MAX_SESSIONS][2];
	static struct tls_conn *conns[MAX_SESSIONS];
	char err[256] = "", c;
	int n = argc > 3 ? atoi(argv[3]) : 200, hold[2];

	if (argc < 3 || n < 1 || n > MAX_SESSIONS) {
		fprintf(stderr, "usage: tlsheap CERT KEY [N]   (1 <= N <= %d)\n", MAX_SESSIONS);
		return 2;
	}
	if (!CRYPTO_set_mem_functions(heap_malloc, heap_realloc, heap_free)) {
		fprintf(stderr, "tlsheap: OpenSSL allocated before main()\n");
		return 1;
	}
	struct tls_ctx *t = tls_ctx_new(argv[1], argv[2], err, sizeof(err));
	if (!t) {
		fprintf(stderr, "tlsheap: %s\n", err);
		return 1;
	}
	for (int i = 0; i < n; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]) < 0) {
			perror("tlsheap: socketpair");
			return 1;
		}
	if (pipe(hold) < 0) {
		perror("tlsheap: pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(hold[1]);
		clients(fds, n, hold[0]);
	}
	close(hold[0]);
	counting = 1;
	for (int i = 0; i < n; i++) {
		size_t got;
		if (!(conns[i] = tls_conn_new(t, fds[i][0])) ||
		    tls_handshake(conns[i], err, sizeof(err)) != TLS_IO_OK ||
		    tls_read(conns[i], &c, 1, &got) != TLS_IO_OK) {
			fprintf(stderr, "tlsheap: session %d failed: %s\n", i, err);
			return 1;
		}
	}
	counting = 0;
	print_sites(n);
	close(hold[1]);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < n; i++)
		tls_conn_free(conns[i]);
	tls_ctx_unref(t);
	return 0;
}
