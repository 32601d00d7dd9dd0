/*
 * reload — reading a new configuration on SIGHUP without holding up the daemon.
 *
 * Reload runs in two halves so that accepting never waits for a parse (a 1M-range file
 * takes most of a second): a reload thread reads the file and loads the TLS pair (files
 * only root may read handed over by the privileged reader, keeper.h), then
 * wakes the main thread (event_active), which joins it and hands a valid snapshot to the
 * owner's apply callback, which swaps it in.  One reload at a time (config_load() is
 * reentrant now, but two reloads racing would apply in either order; one after the other
 * the last SIGHUP always wins).  A request during a reload asks for one more after it.  A configuration with errors, or whose TLS pair cannot be loaded, is refused
 * with a log line and the running one stays.
 *
 * Everything here but the reload thread itself runs on the main thread.
 */
#ifndef MXGATE_RELOAD_H
#define MXGATE_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "conf/config.h"
#include "net/tls.h"
#include "smtpd/keeper.h"

/* A valid new snapshot (both transferred to the callee; t is NULL without a certificate). */
typedef void reload_apply_cb(struct config *c, struct tls_ctx *t, void *arg);

struct reload;

/* base and path are borrowed for the reload's life.  Returns NULL without memory. */
struct reload *reload_new(struct event_base *base, const char *path, reload_apply_cb *apply,
                          void *arg);
/* Waits for a reload under way and discards its result.  NULL is a no-op. */
void reload_free(struct reload *r);

/* From now on reloads take the files from k (borrowed; outlives the reload): called on the
 * main thread before the first reload. */
void reload_set_keeper(struct reload *r, struct keeper *k);

/* SIGHUP: starts a reload, or asks for one more after the one under way. */
void reload_request(struct reload *r);
/* From now on a finished reload is discarded (the daemon is stopping). */
void reload_stop(struct reload *r);

/* Loading, shared with start-up; each logs what is wrong, at FILE:LINE.
 * reload_read_config: NULL on errors, *errors says how many.
 * reload_read_tls: 0 with *t (NULL without a certificate), or -1. */
struct config *reload_read_config(const char *path, size_t *errors);
int reload_read_tls(const struct config *c, struct tls_ctx **t);

#endif
