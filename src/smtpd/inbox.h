/*
 * inbox — a worker's queue of orders, shared by the worker threads (worker.c) and their
 * sessions (session.c).
 *
 * Any thread posts; the worker's loop wakes on ev and takes the whole list at once.  An
 * item belongs to the inbox from inbox_post() until inbox_take(), then to whoever took it,
 * who frees it with free(), except IN_COMMITTED and IN_VERIFIED: those live inside their
 * session, or its recipient probe (so the answer can always be posted), and are never
 * freed on their own.
 */
#ifndef MXGATE_INBOX_H
#define MXGATE_INBOX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/ipaddr.h"

struct config;
struct event;
struct session;
struct tls_ctx;

enum inbox_kind {
	IN_SESSION,   /* a new connection for a session */
	IN_COMMITTED, /* the spool's answer for a session's message */
	IN_SHUTDOWN,  /* the drain: sessions end after their transaction */
	IN_FORCE,     /* drain-timeout: sessions close now */
	IN_STOP,      /* the worker's loop ends */
	IN_VERIFIED,  /* a recipient probe's answer for a session (smtpd/verify.h) */
};

struct inbox_item {
	enum inbox_kind kind;
	int err;              /* IN_COMMITTED: 0, or the errno of the failed commit */
	struct session *sess; /* IN_COMMITTED, IN_VERIFIED */
	struct inbox_item *next;
};

/* IN_SESSION: a new connection.  The item is its first member, so the one free() of the
 * item releases it all; the other kinds stay this small because a session embeds its
 * answers' items. */
struct inbox_session {
	struct inbox_item item;
	int fd; /* the connection, transferred */
	struct ipaddr remote;
	uint16_t rport;
	struct endpoint local;
	struct config *cfg;  /* a reference for the session */
	struct tls_ctx *tls; /* a reference, or NULL */
	int connector;       /* index into cfg->connectors */
	bool proxied;        /* remote came in a PROXY header from via */
	struct endpoint via; /* proxied: the balancer */
};

struct inbox {
	pthread_mutex_t mu;
	struct inbox_item *head, *tail;
	struct event *ev; /* the owner's wake-up, made active by every post */
};

/* Appends it (owned by the inbox until taken) and wakes the owner; any thread. */
void inbox_post(struct inbox *in, struct inbox_item *it);
/* Empties the inbox: the items posted so far, oldest first, now the caller's. */
struct inbox_item *inbox_take(struct inbox *in);

#endif
