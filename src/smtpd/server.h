/*
 * server — the daemon behind `mxgate run`.
 *
 * Threads:
 *   main (acceptor)  listeners, the accept decision, signals (SIGHUP reload, SIGTERM and
 *                    SIGINT drain), the config snapshot.  A refused client costs one
 *                    accept(), one table lookup and one close(): nothing is sent.
 *   workers (N)      each an event loop running SMTP sessions handed over by the
 *                    acceptor; a session keeps the config snapshot it started with.
 *   reload           one at a time, started by SIGHUP: reads the config file and the TLS
 *                    pair, then hands the snapshot to the main thread, which swaps it in
 *                    (a parse of a large ranges file never holds up accepting).
 *   spool syncer     group commits (spool.h).
 *   delivery         Maildir delivery with retries (deliver.h).
 *
 * Start-up order: load the config, set no_new_privs and cut the capability bounding set
 * to CAP_NET_BIND_SERVICE (before any thread exists: threads inherit both), bind every
 * listener and open the spool and Maildir base while still root, drop to the config's
 * user (keeping only CAP_NET_BIND_SERVICE so a reload can bind new low ports), recover the
 * spool, then serve.
 */
#ifndef MXGATE_SERVER_H
#define MXGATE_SERVER_H

/* Runs until SIGTERM/SIGINT have drained the sessions.  Returns the exit status. */
int server_run(const char *config_path);

#endif
