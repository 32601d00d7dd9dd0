/*
 * worker — the worker threads and their inboxes.
 *
 * Each worker is an event loop with an inbox (inbox.h): the main thread posts new
 * connections and the drain's orders to it, the spool's syncer posts each commit's answer.
 * The worker runs what arrives on its thread: new connections become sessions
 * (session.h), which live on that worker from the handoff to their close; the worker
 * owns its event loop and inbox, its sessions own themselves.
 *
 * workers_start, workers_handoff, workers_shutdown, workers_force, workers_stop and
 * workers_free are for the main thread; workers_sessions for any thread.
 */
#ifndef MXGATE_WORKER_H
#define MXGATE_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "base/ipaddr.h"
#include "conf/config.h"
#include "net/tls.h"
#include "queue/spool.h"
#include "smtpd/admission.h"
#include "smtpd/verify.h"

struct workers;

/* spool, adm and verify (recipient probes) are borrowed for the pool's life; stop verify
 * after workers_stop() and before workers_free().  Starts n threads; NULL after an error
 * log line (those already started are stopped). */
struct workers *workers_start(size_t n, struct spool *spool, struct admission *adm,
                              struct verify *verify);
/* Stops every thread; the sessions stay for workers_free.  Call before spool_stop(): the
 * syncer's last callbacks only post to the stopped workers' inboxes. */
void workers_stop(struct workers *ws);
/* Closes what is left (sessions, connections never started), releasing their admission;
 * after workers_stop() and spool_stop().  NULL is a no-op. */
void workers_free(struct workers *ws);

/* A new session on fd (transferred) for connector index k of cfg; cfg and tls (NULL: no
 * STARTTLS) are references transferred to the session; via (copied; NULL: direct) is the
 * balancer that relayed the client remote.  Goes to the worker with the
 * fewest sessions, round robin among equals.  Returns -1 without memory (then nothing is
 * transferred). */
int workers_handoff(struct workers *ws, int fd, const struct ipaddr *remote, uint16_t rport,
                    const struct endpoint *local, struct config *cfg, struct tls_ctx *tls, int k,
                    const struct endpoint *via);
/* The drain: sessions end after their current transaction (workers_shutdown), then at the
 * drain-timeout are closed with 421 (workers_force), except those whose message the spool
 * is committing: they get their 250 first. */
void workers_shutdown(struct workers *ws);
void workers_force(struct workers *ws);
/* Sessions handed off and not yet freed. */
long workers_sessions(struct workers *ws);
size_t workers_count(const struct workers *ws);

#endif
