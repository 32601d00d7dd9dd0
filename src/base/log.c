#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* written by a reload on the main thread while every thread reads it */
static _Atomic int min_level = LOG_LVL_INFO;
static bool to_syslog;
static const char *ident_name = "mxgate";

static _Thread_local char batch[16384];
static _Thread_local size_t batch_len;
static _Thread_local bool batching;

static const char *const names[] = {"error", "warning", "info", "debug"};
static const int prios[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

void
log_init(const char *ident, bool use_syslog, enum log_level min)
{
	ident_name = ident;
	atomic_store_explicit(&min_level, (int)min, memory_order_relaxed);
	if (use_syslog && !to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	to_syslog = use_syslog;
}

void
log_set_level(enum log_level min)
{
	atomic_store_explicit(&min_level, (int)min, memory_order_relaxed);
}

bool
log_enabled(enum log_level lvl)
{
	return (int)lvl <= atomic_load_explicit(&min_level, memory_order_relaxed);
}

static void
flush(void)
{
	size_t off = 0;

	while (off < batch_len) {
		ssize_t n = write(STDERR_FILENO, batch + off, batch_len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	batch_len = 0;
}

void
log_batch_begin(void)
{
	batching = true;
}

void
log_batch_end(void)
{
	batching = false;
	flush();
}

static void emit(enum log_level lvl, const char *prefix, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

static void
sanitize(char *s, size_t len)
{
	/* one event, one line: client text cannot forge lines or escape sequences */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
}

static void
emit(enum log_level lvl, const char *prefix, const char *fmt, va_list ap)
{
	char msg[1800], line[2048];
	struct timeval tv;
	struct tm tm;
	size_t len;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	sanitize(msg, strlen(msg));
	if (to_syslog) {
		syslog(prios[lvl], "%s: %s%s", names[lvl], prefix, msg);
		return;
	}
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ldZ %s[%d]: %s: %s%s\n",
	             (long)tv.tv_usec / 1000, ident_name, (int)getpid(), names[lvl], prefix, msg);
	if (n < 0)
		return;
	len += (size_t)n;
	if (len >= sizeof(line)) {
		len = sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	if (batching) {
		if (batch_len + len > sizeof(batch))
			flush();
		memcpy(batch + batch_len, line, len);
		batch_len += len;
		return;
	}
	if (write(STDERR_FILENO, line, len) < 0) {
		/* nowhere left to report it */
	}
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	emit(lvl, "", fmt, ap);
	va_end(ap);
}

void
log_session(const struct log_ctx *ctx, enum log_level lvl, const char *fmt, ...)
{
	char prefix[256];
	va_list ap;

	if (!log_enabled(lvl))
		return;
	snprintf(prefix, sizeof(prefix),
	         "session=%s client=%s connector=\"%s\": ", ctx->session ? ctx->session : "-",
	         ctx->client ? ctx->client : "-", ctx->connector ? ctx->connector : "-");
	va_start(ap, fmt);
	emit(lvl, prefix, fmt, ap);
	va_end(ap);
}
