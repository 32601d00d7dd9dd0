/*
 * privileges — what the daemon may do, cut down before it serves.
 *
 * The start-up order (server.h) uses these three in turn:
 *   privileges_user()      finds the account to run as (root must name one);
 *   privileges_restrict()  sets no_new_privs and, as root, cuts the capability bounding
 *                          set to CAP_NET_BIND_SERVICE; before any thread exists, since
 *                          each thread keeps the copy it inherited at creation;
 *   privileges_become()    switches to that account once every root-only resource
 *                          (listeners, spool, Maildir base) is open, keeping only
 *                          CAP_NET_BIND_SERVICE so a reload can bind new low ports.
 * Each returns 0, or -1 after an error log line that says what to change; the daemon then
 * refuses to start.  Main thread, start-up only.
 */
#ifndef MXGATE_PRIVILEGES_H
#define MXGATE_PRIVILEGES_H

#include "conf/config.h"

/* *uid and *gid: the account of c->user, or -1 when not started as root (nothing to
 * switch).  config_path (borrowed for the call) names the file to fix in the message. */
int privileges_user(const struct config *c, const char *config_path, long *uid, long *gid);
/* keep: the one capability left in the bounding set (CAP_NET_BIND_SERVICE for the daemon,
 * CAP_DAC_READ_SEARCH for the privileged reader, keeper.h). */
int privileges_restrict(int keep);
/* uid < 0: nothing to do. */
int privileges_become(long uid, long gid);

#endif
