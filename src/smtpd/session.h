/*
 * session — one SMTP session: the sans-I/O core (smtp.h) driven over a connection.
 *
 * A session lives on the worker thread that started it, from session_start() to its
 * close, and everything here runs on that thread.  It keeps the configuration snapshot and
 * TLS context it started with (references it owns), its connection (conn.h), its timers
 * (idle, session, tarpit, stall) and its output with backpressure; it runs the action
 * loop, drives the TLS handshake, and writes each message into the spool, whose answer
 * comes back through the worker's inbox (inbox.h) in an item the session holds, so it can
 * always be posted.
 *
 * Ownership: the host is the worker's and outlives its sessions; a session links itself
 * into host->sessions and unlinks and frees itself when it closes (or, when the spool
 * still answers for its message, on that answer).  Nothing outside this module frees a
 * session.
 */
#ifndef MXGATE_SESSION_H
#define MXGATE_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "queue/spool.h"
#include "smtpd/admission.h"
#include "smtpd/inbox.h"
#include "smtpd/verify.h"

struct event_base;
struct dns;

/* What a worker lends its sessions. */
#define SESSION_OUT_BUF  4096
#define SESSION_OUT_POOL 64 /* at most 256 KiB kept per worker */

struct session_host {
	struct event_base *base;
	struct spool *spool;      /* borrowed */
	struct admission *adm;    /* borrowed: a session releases its admission when freed */
	struct inbox *inbox;      /* the worker's: the spool's answers come back through it */
	struct verify *verify;    /* borrowed: recipient verification (verify.h) */
	struct session *sessions; /* the live ones, doubly linked; only session.c edits it */
	atomic_long n_sessions;   /* sessions of this host; any thread may read it */
	atomic_long *handed_off;  /* the pool's count of sessions handed off and not freed */
	bool shutting_down;       /* the drain began: new sessions end after one transaction */
	/* the resolver of remote-hostname-suffixes checks (net/dns.h), made by the first
	 * session that needs it and remade when resolvers or dns-timeout change (the old one
	 * retires until its lookups end); owned, freed by session_release_all() */
	struct dns *dns;
	char dns_sig[1100];         /* the settings it was made with */
	struct dns *dns_retired[4]; /* replaced ones with lookups still under way */
	/* output buffers of SESSION_OUT_BUF bytes that sessions gave back once their replies
	 * were sent, for the next to take: an idle session holds none, and a busy one does
	 * not go to malloc for each batch of replies; owned, freed by session_release_all() */
	char *out_pool[SESSION_OUT_POOL];
	size_t n_out_pool;
};

/* Starts a session for an IN_SESSION item, taking its fd and references, on host's
 * thread.  Without memory it closes the connection and releases all the item held (its
 * admission and its place in handed_off too), after an error log line.  seq names the
 * session in the log.  The item itself stays the caller's. */
void session_start(struct session_host *h, struct inbox_session *it, uint64_t seq);
/* The spool's answer to an IN_COMMITTED item: err 0 when the message is on stable
 * storage.  May free the session. */
void session_committed(struct session *s, int err);
/* A recipient probe's answer (IN_VERIFIED), in the session's verify request.  May free
 * the session. */
void session_verified(struct session *s);
/* The drain (IN_SHUTDOWN): every session ends after its current transaction. */
void session_shutdown_all(struct session_host *h);
/* drain-timeout (IN_FORCE): every session closes with 421 now, except one whose message
 * the spool is committing: it gets its 250 first. */
void session_force_all(struct session_host *h);
/* After the worker's loop stopped (and the spool's): frees every session without a word
 * to the client, aborting the messages not committed, then the host's resolver. */
void session_release_all(struct session_host *h);

#endif
