/*
 * log — the one logging module.  Lines go to stderr (with a UTC timestamp) or to
 * syslog(3) (facility mail).  Session lines carry the session id, the client and the
 * connector; callers never pass credentials (mxgate has none to log).
 *
 * Thread-safe: every line is one write(2) (or one syslog call).  A thread may batch its
 * lines between log_batch_begin() and log_batch_end() (the accept loop does, to keep a
 * flood of refused connections cheap); the batch is flushed at the end or when full.
 */
#ifndef MXGATE_LOG_H
#define MXGATE_LOG_H

#include <stdbool.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARNING, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Session context for log_session(); all strings borrowed for the call. */
struct log_ctx {
	const char *session; /* queue-id-like session id */
	const char *client;  /* "[ip]:port" */
	const char *connector;
};

void log_init(const char *ident, bool use_syslog, enum log_level min);
void log_set_level(enum log_level min);
bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_session(const struct log_ctx *ctx, enum log_level lvl, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

void log_batch_begin(void);
void log_batch_end(void);

#endif
