/*
 * protolog — Exchange's SMTP Receive protocol log, written by a thread of its own; see
 * protolog.h.
 */
#include "obs/protolog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/vec.h"
#include "obs/utf8.h"

#define FIELDS                                                                                     \
	"date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,"  \
	"data,context"
#define NOTE_CONTEXT   "protocol-log"
#define FLUSH_BYTES    (64 * 1024)
#define RETENTION_S    3600 /* the age and size limits are checked hourly too */
#define REOPEN_S       1    /* after a failed open or write, rows wait this long before a retry */
#define WARN_S         60   /* at most one warning a minute about dropped rows */
#define MAX_OPEN_TRIES 1000 /* names RECVyyyymmdd-N.LOG tried when others race us */

/* A row as the sessions queue it: this header, then the six texts back to back, the
 * whole padded to 8 bytes. */
enum { T_CONNECTOR, T_ID, T_LOCAL, T_REMOTE, T_DATA, T_CONTEXT, T_N };
enum { REC_CUT = 1, REC_NOTE = 2 };
struct rec {
	uint32_t size;
	uint32_t seq;
	int64_t sec;
	int32_t nsec;
	char event;
	uint8_t flags;
	uint16_t len[T_N];
};

/* Escaping makes a text at most 4 times longer (a byte becomes \xHH), quoting adds 2. */
#define ESC(n) (4 * (size_t)(n) + 2)
#define ROW_MAX                                                                                    \
	(32 + ESC(PROTOLOG_NAME_MAX) + ESC(PROTOLOG_ID_MAX) + 12 +                                 \
	 2 * ESC(PROTOLOG_ENDPOINT_MAX) + 2 + ESC(PROTOLOG_DATA_MAX + 3) +                         \
	 ESC(PROTOLOG_CONTEXT_MAX) + 12)

struct settings {
	char *dir;
	uint64_t max_file, max_dir, max_age;
	void (*hook)(void);
};

/* Shared between the sessions and the writer, under mu. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started, stopping, on, writer_waiting;
	_Atomic bool enabled; /* on, read without the lock to make a disabled call cheap */
	char *in;             /* the queue: records, in_len bytes of in_cap */
	size_t in_len, in_cap;
	char *spare;           /* the writer's half, swapped with in */
	uint64_t full_unnoted; /* dropped for a full queue, not yet told */
	struct settings *next; /* new settings for the writer, or NULL */
	bool next_set;
	size_t next_at; /* with next_set: the queued bytes written before it took effect */
	pthread_t thread;
	_Atomic uint64_t dropped[2];
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The writer's own state; only its thread touches it. */
struct writer {
	struct settings *set;
	int fd;         /* the file being written, or -1 */
	char name[32];  /* its name */
	char day[9];    /* its UTC date, yyyymmdd */
	uint64_t size;  /* bytes in it, whole rows only */
	uint64_t first; /* its header's length: a file holds at least one row */
	char *out;      /* rows formatted, not yet written */
	size_t out_len, out_cap;
	size_t note_end;                  /* the end of a note row in out, or 0 */
	uint64_t lost_full, lost_write;   /* not yet told in the file */
	uint64_t noted_full, noted_write; /* told in a note still in out */
	uint64_t warn_full, warn_write;   /* not yet told in the log */
	int last_errno;
	time_t retry_at, retention_at, warn_at; /* CLOCK_MONOTONIC seconds */
	int64_t tm_sec;                         /* the second tm_cache holds */
	struct tm tm_cache;
	char row[ROW_MAX];
};

static struct writer W;

/* ---- the sessions' side ---------------------------------------------------------------- */

static time_t
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
push(struct protolog_session *s, char event, const char *data, size_t dlen, const char *ctx,
     size_t clen)
{
	const char *t[T_N] = {s->connector, s->id, s->local, s->remote, data, ctx};
	size_t len[T_N] = {strlen(s->connector), strlen(s->id), strlen(s->local),
	                   strlen(s->remote),    dlen,          clen};
	struct rec r = {.seq = s->seq++, .event = event};
	struct timespec ts;
	size_t size = sizeof(r);

	if (!atomic_load_explicit(&P.enabled, memory_order_relaxed))
		return;
	if (len[T_DATA] > PROTOLOG_DATA_MAX) {
		len[T_DATA] = PROTOLOG_DATA_MAX;
		r.flags |= REC_CUT;
	}
	if (len[T_CONTEXT] > PROTOLOG_CONTEXT_MAX)
		len[T_CONTEXT] = PROTOLOG_CONTEXT_MAX;
	for (int i = 0; i < T_N; i++) {
		r.len[i] = (uint16_t)len[i];
		size += len[i];
	}
	r.size = (uint32_t)((size + 7) & ~(size_t)7);
	clock_gettime(CLOCK_REALTIME, &ts);
	r.sec = ts.tv_sec;
	r.nsec = (int32_t)ts.tv_nsec;

	pthread_mutex_lock(&P.mu);
	if (!P.on) {
		pthread_mutex_unlock(&P.mu);
		return;
	}
	if (P.in_cap - P.in_len < r.size) {
		P.full_unnoted++;
		pthread_mutex_unlock(&P.mu);
		atomic_fetch_add_explicit(&P.dropped[PROTOLOG_DROP_QUEUE_FULL], 1,
		                          memory_order_relaxed);
		return;
	}
	char *p = P.in + P.in_len;
	memcpy(p, &r, sizeof(r));
	p += sizeof(r);
	for (int i = 0; i < T_N; i++) {
		memcpy(p, t[i], len[i]);
		p += len[i];
	}
	P.in_len += r.size;
	bool wake = P.writer_waiting;
	pthread_mutex_unlock(&P.mu);
	if (wake)
		pthread_cond_signal(&P.cv);
}

void
protolog_session_init(struct protolog_session *s, bool verbose, const char *connector,
                      const char *session_id, const char *local, const char *remote)
{
	s->on = verbose;
	s->seq = 0;
	snprintf(s->connector, sizeof(s->connector), "%s", connector ? connector : "");
	snprintf(s->id, sizeof(s->id), "%s", session_id ? session_id : "");
	snprintf(s->local, sizeof(s->local), "%s", local ? local : "");
	snprintf(s->remote, sizeof(s->remote), "%s", remote ? remote : "");
}

void
protolog_connect(struct protolog_session *s)
{
	if (s && s->on)
		push(s, '+', "", 0, "", 0);
}

/* len less a trailing CRLF (or LF) */
static size_t
chomp(const char *t, size_t len)
{
	if (len > 0 && t[len - 1] == '\n')
		len--;
	if (len > 0 && t[len - 1] == '\r')
		len--;
	return len;
}

void
protolog_command(struct protolog_session *s, const char *line, size_t len)
{
	if (!s || !s->on)
		return;
	len = chomp(line, len);
	/* AUTH <mechanism> [initial-response] (RFC 4954 §4): the response is a credential */
	if (len > 5 && strncasecmp(line, "AUTH ", 5) == 0) {
		size_t m = 5;
		while (m < len && line[m] != ' ')
			m++;
		if (m < len) {
			char buf[64];
			int n = snprintf(buf, sizeof(buf), "%.*s ****", (int)(m < 48 ? m : 48),
			                 line);
			push(s, '<', buf, (size_t)n, "", 0);
			return;
		}
	}
	push(s, '<', line, len, "", 0);
}

void
protolog_reply(struct protolog_session *s, const char *text, size_t len)
{
	if (!s || !s->on)
		return;
	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t n = nl ? (size_t)(nl - text) + 1 : len;
		push(s, '>', text, chomp(text, n), "", 0);
		text += n;
		len -= n;
	}
}

void
protolog_info(struct protolog_session *s, const char *context, const char *data)
{
	if (s && s->on)
		push(s, '*', data ? data : "", data ? strlen(data) : 0, context ? context : "",
		     context ? strlen(context) : 0);
}

void
protolog_infof(struct protolog_session *s, const char *context, const char *fmt, ...)
{
	char buf[PROTOLOG_DATA_MAX + 1];
	va_list ap;
	int n;

	if (!s || !s->on)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* a longer text was cut by vsnprintf; push() cuts at the same place and marks it */
	push(s, '*', buf, (size_t)n, context ? context : "", context ? strlen(context) : 0);
}

void
protolog_tls(struct protolog_session *s, const char *protocol, const char *cipher,
             const char *client_subject)
{
	protolog_infof(s, "TLS", "TLS protocol %s negotiation succeeded using cipher %s%s%s",
	               protocol ? protocol : "(unknown)", cipher ? cipher : "(unknown)",
	               client_subject ? "; client certificate " : "",
	               client_subject ? client_subject : "");
}

void
protolog_disconnect(struct protolog_session *s, bool by_client)
{
	if (s && s->on)
		push(s, '-', "", 0, by_client ? "Remote" : "Local", by_client ? 6 : 5);
}

uint64_t
protolog_dropped(enum protolog_drop why)
{
	if ((unsigned)why > PROTOLOG_DROP_WRITE_ERROR)
		return 0;
	return atomic_load_explicit(&P.dropped[why], memory_order_relaxed);
}

/* ---- formatting ------------------------------------------------------------------------ */

static size_t
hex_byte(char *d, unsigned char c)
{
	static const char hex[] = "0123456789ABCDEF";

	d[0] = '\\';
	d[1] = 'x';
	d[2] = hex[c >> 4];
	d[3] = hex[c & 15];
	return 4;
}

/* Writes s[0..n) as one CSV field at d (room: ESC(n) bytes); returns its length.  Control
 * characters, U+2028/U+2029 and bytes that are not UTF-8 become \xHH; a field holding a
 * comma or a quote is quoted, its quotes doubled (RFC 4180 §2.6-2.7).  CR and LF cannot
 * remain, so a row is one line. */
static size_t
csv_field(char *d, const char *src, size_t n)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 1, i = 0;
	bool quote = false;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp = 0;
		size_t k;

		if (c < 0x20 || c == 0x7F) {
			o += hex_byte(d + o, c);
			i++;
		} else if (c < 0x80) {
			if (c == '"' || c == ',')
				quote = true;
			if (c == '"')
				d[o++] = '"';
			d[o++] = (char)c;
			i++;
		} else if ((k = utf8_seq(s + i, n - i, &cp)) == 0) {
			o += hex_byte(d + o, c);
			i++;
		} else if (cp <= 0x9F || cp == 0x2028 || cp == 0x2029) {
			/* C1 controls (NEL among them) and the Unicode line separators */
			for (size_t j = 0; j < k; j++)
				o += hex_byte(d + o, s[i + j]);
			i += k;
		} else {
			memcpy(d + o, s + i, k);
			o += k;
			i += k;
		}
	}
	if (!quote) {
		memmove(d, d + 1, o - 1);
		return o - 1;
	}
	d[0] = '"';
	d[o++] = '"';
	return o;
}

static const struct tm *
utc(struct writer *w, int64_t sec)
{
	if (sec != w->tm_sec) {
		time_t t = (time_t)sec;
		gmtime_r(&t, &w->tm_cache);
		w->tm_sec = sec;
	}
	return &w->tm_cache;
}

/* date-time as Exchange writes it: 2024-05-01T12:34:56.789Z */
static size_t
iso8601(struct writer *w, char *d, size_t size, int64_t sec, int32_t nsec)
{
	const struct tm *tm = utc(w, sec);
	int n = snprintf(d, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm->tm_year + 1900,
	                 tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min, tm->tm_sec,
	                 (int)(nsec / 1000000));
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* Formats r as one CRLF-ended row into w->row; returns its length. */
static size_t
format_row(struct writer *w, const struct rec *r)
{
	const char *t = (const char *)(r + 1);
	const char *text[T_N];
	char *d = w->row;
	size_t o;

	for (int i = 0; i < T_N; i++) {
		text[i] = t;
		t += r->len[i];
	}
	o = iso8601(w, d, 32, r->sec, r->nsec);
	for (int i = 0; i < T_N; i++) {
		d[o++] = ',';
		if (i == T_REMOTE + 1) {
			/* after remote-endpoint: event, then data */
			d[o++] = r->event;
			d[o++] = ',';
		}
		if (i == T_DATA && (r->flags & REC_CUT)) {
			char cut[PROTOLOG_DATA_MAX + 3];
			memcpy(cut, text[i], r->len[i]);
			memcpy(cut + r->len[i], "...", 3);
			o += csv_field(d + o, cut, r->len[i] + 3u);
		} else {
			o += csv_field(d + o, text[i], r->len[i]);
		}
		if (i == T_ID) {
			/* sequence-number; the writer's own notes have none */
			d[o++] = ',';
			if (!(r->flags & REC_NOTE))
				o += (size_t)snprintf(d + o, 12, "%" PRIu32, r->seq);
		}
	}
	d[o++] = '\r';
	d[o++] = '\n';
	return o;
}

/* ---- files ------------------------------------------------------------------------------ */

/* True for RECVyyyymmdd-N.LOG; fills day and n. */
static bool
parse_name(const char *name, char day[9], unsigned long *n)
{
	char *end;

	if (strncmp(name, "RECV", 4) != 0)
		return false;
	for (int i = 0; i < 8; i++)
		if (name[4 + i] < '0' || name[4 + i] > '9')
			return false;
	if (name[12] != '-' || name[13] < '1' || name[13] > '9')
		return false;
	errno = 0;
	*n = strtoul(name + 13, &end, 10);
	if (errno || strcmp(end, ".LOG") != 0)
		return false;
	memcpy(day, name + 4, 8);
	day[8] = '\0';
	return true;
}

struct logfile {
	char day[9];
	unsigned long n;
	uint64_t size;
	time_t mtime;
	char name[32];
};

/* opendir(), by way of open(2): ThreadSanitizer sees the descriptor made by open() but not
 * by opendir(), and would take its reuse of a number another thread just closed for a
 * race. */
static DIR *
open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0) {
		int err = errno;
		close(fd);
		errno = err;
	}
	return d;
}

/* The directory's protocol log files, in *out (malloc'ed; *count of them).  Returns 0, or
 * -1 with errno. */
static int
list_files(const char *dir, struct logfile **out, size_t *count)
{
	struct logfile *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d = open_dir(dir);

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		struct logfile f;
		struct stat st;
		if (strlen(e->d_name) >= sizeof(f.name) || !parse_name(e->d_name, f.day, &f.n) ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		f.size = (uint64_t)st.st_size;
		f.mtime = st.st_mtime;
		memcpy(f.name, e->d_name, strlen(e->d_name) + 1);
		if (VEC_RESERVE(v, cap, n + 1) < 0) {
			int err = errno;
			closedir(d);
			free(v);
			errno = err;
			return -1;
		}
		v[n++] = f;
	}
	closedir(d);
	*out = v;
	*count = n;
	return 0;
}

static int
older_first(const void *a, const void *b)
{
	const struct logfile *x = a, *y = b;
	int c = strcmp(x->day, y->day);

	if (c)
		return c;
	return x->n < y->n ? -1 : x->n > y->n;
}

static void
remove_file(struct writer *w, const struct logfile *f, const char *why)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", w->set->dir, f->name);
	if (unlink(path) < 0 && errno != ENOENT)
		log_msg(LOG_LVL_WARNING, "protocol log: cannot delete %s (%s): %s", path, why,
		        strerror(errno));
	else
		log_msg(LOG_LVL_INFO, "protocol log: deleted %s (%s)", path, why);
}

/* Exchange's MaxAge, then MaxDirectorySize: the oldest files go first, never the one being
 * written. */
static void
retention(struct writer *w)
{
	struct logfile *v;
	size_t n, kept = 0;
	uint64_t total = 0;
	time_t now = time(NULL);

	w->retention_at = mono() + RETENTION_S;
	if (list_files(w->set->dir, &v, &n) < 0) {
		log_msg(LOG_LVL_WARNING, "protocol log: cannot read the directory %s: %s",
		        w->set->dir, strerror(errno));
		return;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), older_first);
	for (size_t i = 0; i < n; i++) {
		bool current = w->fd >= 0 && strcmp(v[i].name, w->name) == 0;
		if (!current && w->set->max_age && (uint64_t)(now - v[i].mtime) > w->set->max_age &&
		    now > v[i].mtime) {
			remove_file(w, &v[i], "older than protocol-log-max-age");
			continue;
		}
		total += v[i].size;
		v[kept++] = v[i];
	}
	for (size_t i = 0; i < kept && w->set->max_dir && total > w->set->max_dir; i++) {
		if (w->fd >= 0 && strcmp(v[i].name, w->name) == 0)
			continue;
		remove_file(w, &v[i], "protocol-log-max-directory-size reached");
		total -= v[i].size;
	}
	free(v);
}

/* The next N for day: one more than the highest there. */
static unsigned long
next_n(struct writer *w, const char *day)
{
	struct logfile *v;
	size_t n;
	unsigned long max = 0;

	if (list_files(w->set->dir, &v, &n) < 0)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].day, day) == 0 && v[i].n > max)
			max = v[i].n;
	free(v);
	return max + 1;
}

static void
close_file(struct writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->name[0] = '\0';
}

/* Writes p[0..len); returns 0, or -1 with errno and the bytes that were written in
 * *done (when done is not NULL). */
static int
write_all(int fd, const char *p, size_t len, size_t *done)
{
	size_t o = 0;

	while (o < len) {
		ssize_t k = write(fd, p + o, len - o);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = ENOSPC;
			if (done)
				*done = o;
			return -1;
		}
		o += (size_t)k;
	}
	return 0;
}

/* Starts RECV<day>-N.LOG with its header.  Returns 0, or -1 with errno (no file open). */
static int
open_file(struct writer *w, const char *day)
{
	char path[PATH_MAX], hdr[512], date[32];
	unsigned long n = next_n(w, day);
	struct timespec now;
	int fd = -1, len;

	close_file(w);
	for (int tries = 0; fd < 0 && tries < MAX_OPEN_TRIES; tries++, n++) {
		snprintf(w->name, sizeof(w->name), "RECV%s-%lu.LOG", day, n);
		snprintf(path, sizeof(path), "%s/%s", w->set->dir, w->name);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
		          0640);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0)
		goto fail;
	clock_gettime(CLOCK_REALTIME, &now);
	iso8601(w, date, sizeof(date), now.tv_sec, (int32_t)now.tv_nsec);
	len = snprintf(hdr, sizeof(hdr),
	               "#Software: mxgate %s\r\n#Version: 15.0.0.0\r\n#Log-type: SMTP Receive "
	               "Protocol Log\r\n#Date: %s\r\n#Fields: " FIELDS "\r\n",
	               MXGATE_VERSION, date);
	if (write_all(fd, hdr, (size_t)len, NULL) < 0) {
		int err = errno;
		unlink(path);
		close(fd);
		errno = err;
		goto fail;
	}
	w->fd = fd;
	w->size = w->first = (uint64_t)len;
	memcpy(w->day, day, 9);
	retention(w);
	return 0;
fail:
	w->name[0] = '\0';
	return -1;
}

/* ---- the writer ------------------------------------------------------------------------- */

static void
lost(struct writer *w, uint64_t rows, int err)
{
	if (!rows)
		return;
	atomic_fetch_add_explicit(&P.dropped[PROTOLOG_DROP_WRITE_ERROR], rows,
	                          memory_order_relaxed);
	w->lost_write += rows;
	w->warn_write += rows;
	w->last_errno = err;
}

/* One warning a minute at most, with what was dropped since the last. */
static void
warn_drops(struct writer *w, bool now)
{
	if ((!w->warn_full && !w->warn_write) || (!now && mono() < w->warn_at))
		return;
	w->warn_at = mono() + WARN_S;
	if (w->warn_full)
		log_msg(LOG_LVL_WARNING,
		        "protocol log: %" PRIu64
		        " row%s dropped: the queue was full (the disk under "
		        "%s is slower than the sessions); see mxgate_protocol_log_dropped_total",
		        w->warn_full, w->warn_full == 1 ? "" : "s",
		        w->set ? w->set->dir : "the log directory");
	if (w->warn_write)
		log_msg(LOG_LVL_WARNING,
		        "protocol log: %" PRIu64
		        " row%s dropped: cannot write to %s: %s; SMTP goes "
		        "on, free space or fix the directory",
		        w->warn_write, w->warn_write == 1 ? "" : "s",
		        w->set ? w->set->dir : "the log directory", strerror(w->last_errno));
	w->warn_full = w->warn_write = 0;
}

/* Writes the rows formatted.  When a write fails, the rows that reached the file whole
 * stay, the file is cut back after the last of them and closed, and the rest are counted
 * as dropped. */
static void
flush(struct writer *w)
{
	size_t done = 0;

	if (!w->out_len)
		return;
	if (w->set->hook)
		w->set->hook();
	if (write_all(w->fd, w->out, w->out_len, &done) == 0) {
		w->size += w->out_len;
	} else {
		int err = errno;
		uint64_t rows = 0;
		/* every row ends in CRLF, and none holds a CR or LF before it */
		while (done > 0 && w->out[done - 1] != '\n')
			done--;
		if (ftruncate(w->fd, (off_t)(w->size + done)) < 0) {
			/* the file may end in a cut row: it is closed, the next row starts a new one */
		}
		w->size += done;
		for (size_t i = done; i < w->out_len; i++)
			rows += w->out[i] == '\n';
		if (w->note_end > done) {
			/* the note went down too: the next one tells all of it */
			rows--;
			w->lost_full += w->noted_full;
			w->lost_write += w->noted_write;
		}
		close_file(w);
		w->retry_at = mono() + REOPEN_S;
		lost(w, rows, err);
	}
	w->noted_full = w->noted_write = 0;
	w->note_end = 0;
	w->out_len = 0;
}

/* Adds a row to out; a session's row (counted) that does not fit in memory is dropped. */
static bool
append(struct writer *w, const char *row, size_t n, bool counted)
{
	if (VEC_RESERVE(w->out, w->out_cap, w->out_len + n) < 0) {
		if (counted)
			lost(w, 1, errno);
		return false;
	}
	memcpy(w->out + w->out_len, row, n);
	w->out_len += n;
	return true;
}

/* A "*" row of the writer's own where rows are missing. */
static void
note(struct writer *w)
{
	struct {
		struct rec r;
		char text[160];
	} m = {{.event = '*', .flags = REC_NOTE}, {0}};
	struct timespec ts;
	int n;

	if (!w->lost_full && !w->lost_write)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	m.r.sec = ts.tv_sec;
	m.r.nsec = (int32_t)ts.tv_nsec;
	if (w->lost_full && w->lost_write)
		n = snprintf(m.text, sizeof(m.text),
		             "%" PRIu64 " row%s dropped: the queue was full; %" PRIu64
		             " row%s dropped: write failed (%s)",
		             w->lost_full, w->lost_full == 1 ? "" : "s", w->lost_write,
		             w->lost_write == 1 ? "" : "s", strerror(w->last_errno));
	else if (w->lost_full)
		n = snprintf(m.text, sizeof(m.text),
		             "%" PRIu64 " row%s dropped: the queue was full", w->lost_full,
		             w->lost_full == 1 ? "" : "s");
	else
		n = snprintf(m.text, sizeof(m.text), "%" PRIu64 " row%s dropped: write failed (%s)",
		             w->lost_write, w->lost_write == 1 ? "" : "s", strerror(w->last_errno));
	if (n < 0 || (size_t)n >= sizeof(m.text) - sizeof(NOTE_CONTEXT))
		return;
	memcpy(m.text + n, NOTE_CONTEXT, sizeof(NOTE_CONTEXT) - 1);
	m.r.len[T_DATA] = (uint16_t)n;
	m.r.len[T_CONTEXT] = sizeof(NOTE_CONTEXT) - 1;
	if (!append(w, w->row, format_row(w, &m.r), false))
		return;
	w->note_end = w->out_len;
	w->noted_full += w->lost_full;
	w->noted_write += w->lost_write;
	w->lost_full = w->lost_write = 0;
}

/* Makes sure a file is open that can take a row of n bytes dated day. */
static bool
ready_for(struct writer *w, const char *day, size_t n)
{
	uint64_t used = w->size + w->out_len;

	if (w->fd >= 0 && strcmp(day, w->day) <= 0 &&
	    (!w->set->max_file || used + n <= w->set->max_file || used <= w->first))
		return true;
	flush(w);
	if (w->fd < 0 && mono() < w->retry_at)
		return false;
	if (open_file(w, day) < 0) {
		w->last_errno = errno;
		w->retry_at = mono() + REOPEN_S;
		return false;
	}
	return true;
}

static void
day_of(struct writer *w, int64_t sec, char day[9])
{
	const struct tm *tm = utc(w, sec);
	char t[32];

	snprintf(t, sizeof(t), "%04d%02d%02d", tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday);
	memcpy(day, t, 8);
	day[8] = '\0';
}

static void
emit(struct writer *w, const struct rec *r)
{
	size_t n = format_row(w, r);
	char day[9];

	day_of(w, r->sec, day);
	if (!ready_for(w, day, n)) {
		lost(w, 1, w->last_errno);
		return;
	}
	if (w->lost_full || w->lost_write) {
		note(w);
		n = format_row(w, r); /* note() used the row buffer */
	}
	append(w, w->row, n, true);
	if (w->out_len >= FLUSH_BYTES)
		flush(w);
}

static void
write_batch(struct writer *w, const char *batch, size_t len)
{
	for (size_t off = 0; off < len;) {
		const struct rec *r = (const struct rec *)(batch + off);
		if (w->set)
			emit(w, r);
		off += r->size;
	}
	if (w->fd >= 0)
		flush(w);
}

static void
settings_free(struct settings *s)
{
	if (s) {
		free(s->dir);
		free(s);
	}
}

/* New settings take effect between batches: a new directory closes the file. */
static void
apply(struct writer *w, struct settings *s)
{
	bool moved = !w->set || !s || strcmp(w->set->dir, s->dir) != 0;

	if (moved)
		close_file(w);
	settings_free(w->set);
	w->set = s;
	w->retention_at = 0;
}

static void
wait_for_work(struct writer *w)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WARN_S;
	P.writer_waiting = true;
	while (!P.in_len && !P.stopping && !P.next_set && !P.full_unnoted)
		if (pthread_cond_timedwait(&P.cv, &P.mu, &until) == ETIMEDOUT)
			break;
	P.writer_waiting = false;
	(void)w;
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&P.mu);
	for (;;) {
		wait_for_work(w);
		char *batch = P.in;
		size_t len = P.in_len;
		P.in = P.spare;
		P.in_len = 0;
		P.spare = batch;
		w->lost_full += P.full_unnoted;
		w->warn_full += P.full_unnoted;
		P.full_unnoted = 0;
		struct settings *s = P.next;
		bool change = P.next_set, stop = P.stopping;
		size_t before = change ? P.next_at : len;
		P.next = NULL;
		P.next_set = false;
		pthread_mutex_unlock(&P.mu);

		/* rows queued before a reload go to the directory the log had then, rows queued
		 * after it to the new one: a session that ended before a reload is whole in the
		 * old files */
		write_batch(w, batch, before);
		if (change)
			apply(w, s);
		write_batch(w, batch + before, len - before);
		if (w->set && w->lost_full && !len) {
			/* drops and nothing else to write: say so now */
			struct timespec ts;
			char day[9];
			clock_gettime(CLOCK_REALTIME, &ts);
			day_of(w, ts.tv_sec, day);
			if (ready_for(w, day, 0)) {
				note(w);
				flush(w);
			}
		}
		if (w->set && mono() >= w->retention_at)
			retention(w);
		warn_drops(w, stop);

		pthread_mutex_lock(&P.mu);
		if (stop && !P.in_len)
			break;
	}
	pthread_mutex_unlock(&P.mu);
	close_file(w);
	return NULL;
}

/* ---- control ---------------------------------------------------------------------------- */

static int
check_directory(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (strlen(dir) > PATH_MAX - 32) {
		snprintf(err, errlen, "protocol-log-directory %.200s...: too long", dir);
		return -1;
	}
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "protocol-log-directory %s: cannot create it: %s", dir,
		         strerror(errno));
		return -1;
	}
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "protocol-log-directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "protocol-log-directory %s: not a directory", dir);
		return -1;
	}
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0) {
		snprintf(err, errlen,
		         "protocol-log-directory %s: not writable by the user mxgate runs as "
		         "(uid %ld): %s",
		         dir, (long)geteuid(), strerror(errno));
		return -1;
	}
	return 0;
}

static int
start(size_t queue_bytes, char *err, size_t errlen)
{
	int e;

	P.in_cap = queue_bytes ? queue_bytes : PROTOLOG_DEFAULT_QUEUE_BYTES;
	P.in = malloc(P.in_cap);
	P.spare = malloc(P.in_cap);
	W = (struct writer){.fd = -1, .tm_sec = INT64_MIN};
	if (!P.in || !P.spare) {
		e = ENOMEM;
		goto fail;
	}
	P.in_len = 0;
	P.stopping = false;
	if ((e = pthread_create(&P.thread, NULL, writer_main, &W)) != 0)
		goto fail;
	P.started = true;
	return 0;
fail:
	free(P.in);
	free(P.spare);
	P.in = P.spare = NULL;
	snprintf(err, errlen, "cannot start the protocol log's writer: %s", strerror(e));
	return -1;
}

int
protolog_configure(const struct protolog_params *p, char *err, size_t errlen)
{
	bool on = p && p->directory && *p->directory;
	struct settings *s = NULL;

	if (on) {
		if (check_directory(p->directory, err, errlen) < 0)
			return -1;
		if (!(s = calloc(1, sizeof(*s))) || !(s->dir = strdup(p->directory))) {
			free(s);
			snprintf(err, errlen, "protocol log: out of memory");
			return -1;
		}
		s->max_file = p->max_file_size;
		s->max_dir = p->max_directory_size;
		s->max_age = p->max_age;
		s->hook = p->before_write_hook;
	}
	if (!P.started && on && start(p->queue_bytes, err, errlen) < 0) {
		settings_free(s);
		return -1;
	}
	if (!P.started)
		return 0;
	pthread_mutex_lock(&P.mu);
	settings_free(P.next);
	P.next = s;
	if (!P.next_set)
		P.next_at = P.in_len; /* what is queued now was written under the old settings */
	P.next_set = true;
	P.on = on;
	atomic_store(&P.enabled, on);
	pthread_mutex_unlock(&P.mu);
	pthread_cond_signal(&P.cv);
	return 0;
}

void
protolog_stop(void)
{
	if (!P.started)
		return;
	pthread_mutex_lock(&P.mu);
	P.stopping = true;
	P.on = false;
	atomic_store(&P.enabled, false);
	pthread_mutex_unlock(&P.mu);
	pthread_cond_signal(&P.cv);
	pthread_join(P.thread, NULL);
	settings_free(P.next);
	P.next = NULL;
	P.next_set = false;
	settings_free(W.set);
	free(W.out);
	W = (struct writer){.fd = -1, .tm_sec = INT64_MIN};
	free(P.in);
	free(P.spare);
	P.in = P.spare = NULL;
	P.in_len = P.in_cap = 0;
	P.full_unnoted = 0;
	P.started = false;
}
