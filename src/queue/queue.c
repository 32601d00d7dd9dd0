#include "queue/queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void
age(char *buf, size_t size, long secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, size, "%lds", secs);
	else if (secs < 7200)
		snprintf(buf, size, "%ldm", secs / 60);
	else if (secs < 172800)
		snprintf(buf, size, "%ldh%02ldm", secs / 3600, secs % 3600 / 60);
	else
		snprintf(buf, size, "%ldd%02ldh", secs / 86400, secs % 86400 / 3600);
}

static void
format_header(FILE *fp)
{
	fprintf(fp, "%-16s %7s %9s %4s  %-9s %s\n", "ID", "AGE", "SIZE", "TRY", "NEXT", "SENDER");
}

/* One queued message as the list shows it. */
struct entry_view {
	const struct spool_entry *e;
	time_t now, due; /* due: when the next attempt is (0: now or unknown) */
	bool busy;       /* being delivered right now */
	bool held;       /* held by the administrator */
	bool running;    /* the daemon runs */
};

/* The message's size, the same number the log lines give: as stored, with mxgate's
 * Received: line, without the Return-Path line only a Maildir delivery keeps. */
static unsigned long long
entry_size(const struct spool_entry *e)
{
	return (unsigned long long)(e->size - e->prefix_len);
}

static const char *
rcpt_state(const struct spool_entry *e, size_t i)
{
	if (e->rcpt_state && e->rcpt_state[i] == SPOOL_RCPT_DELIVERED)
		return "delivered";
	if (e->rcpt_state && e->rcpt_state[i] == SPOOL_RCPT_FAILED)
		return "failed";
	return "pending";
}

/* One message: its line, then a line per recipient with its state. */
/* Text from clients and next hops for a terminal: a control character, C0 or C1 (UTF-8
 * C2 80-9F: U+009B is a terminal's CSI), shows as '?' and cannot move the cursor, recolour
 * or retitle the administrator's terminal.  The rest, UTF-8 included, as it is. */
static void
put_safe(FILE *fp, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			fputc('?', fp);
			p++;
		} else {
			fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, fp);
		}
	}
}

static void
format_entry(FILE *fp, const struct entry_view *v)
{
	const struct spool_entry *e = v->e;
	char a[32], next[40];

	age(a, sizeof(a), (long)(v->now - e->received));
	if (v->busy)
		snprintf(next, sizeof(next), "sending");
	else if (v->held)
		snprintf(next, sizeof(next), "held");
	else if (!v->running)
		snprintf(next, sizeof(next), "stopped");
	else if (v->due <= v->now)
		snprintf(next, sizeof(next), "now");
	else {
		char in[32];
		age(in, sizeof(in), (long)(v->due - v->now));
		snprintf(next, sizeof(next), "in %s", in);
	}
	/* a message being delivered: its delivery thread owns the attempt count, the last
	 * error and the recipients' states (deliver.h), so only what never changes is read */
	if (v->busy) {
		fprintf(fp, "%-16s %7s %9llu %4s  %-9s <", e->id, a, entry_size(e), "-", next);
		put_safe(fp, e->sender);
		fputs(">\n", fp);
		for (size_t i = 0; i < e->n_rcpts; i++) {
			fprintf(fp, "    %-9s <", "sending");
			put_safe(fp, e->rcpts[i]);
			fputs(">\n", fp);
		}
		return;
	}
	fprintf(fp, "%-16s %7s %9llu %4u  %-9s <", e->id, a, entry_size(e), e->attempts, next);
	put_safe(fp, e->sender);
	fputs(">\n", fp);
	if (e->last_error) {
		fputs("    last error: ", fp);
		put_safe(fp, e->last_error);
		fputc('\n', fp);
	}
	for (size_t i = 0; i < e->n_rcpts; i++) {
		fprintf(fp, "    %-9s <", rcpt_state(e, i));
		put_safe(fp, e->rcpts[i]);
		fputc('>', fp);
		if (e->rcpt_note && e->rcpt_note[i]) {
			fputc(' ', fp);
			put_safe(fp, e->rcpt_note[i]);
		}
		fputc('\n', fp);
	}
}

/* A JSON string (RFC 8259): quotes, backslashes and control characters escaped; NULL is
 * null. */
static void
json_str(FILE *fp, const char *s)
{
	if (!s) {
		fputs("null", fp);
		return;
	}
	fputc('"', fp);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(fp, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(fp, "\\u%04x", *p);
		else
			fputc(*p, fp);
	}
	fputc('"', fp);
}

/* One message as a JSON object, on one line (the fields are in queue.h). */
static void
format_json(FILE *fp, const struct entry_view *v, bool first)
{
	const struct spool_entry *e = v->e;
	const char *state = v->busy            ? "sending"
	                    : v->held          ? "held"
	                    : !v->running      ? "stopped"
	                    : v->due <= v->now ? "due"
	                                       : "waiting";

	fprintf(fp, "%s\n{\"id\":\"%s\",\"state\":\"%s\",\"received\":%lld,\"size\":%llu,",
	        first ? "" : ",", e->id, state, (long long)e->received, entry_size(e));
	fputs("\"sender\":", fp);
	json_str(fp, e->sender);
	fputs(",\"connector\":", fp);
	json_str(fp, e->connector);
	fputs(",\"client\":", fp);
	json_str(fp, e->client);
	if (v->busy)
		fputs(",\"attempts\":null,\"next_attempt\":null,\"last_error\":null", fp);
	else {
		fprintf(fp, ",\"attempts\":%u,\"next_attempt\":", e->attempts);
		if (v->held || !v->running)
			fputs("null", fp);
		else
			fprintf(fp, "%lld", (long long)(v->due > v->now ? v->due : v->now));
		fputs(",\"last_error\":", fp);
		json_str(fp, e->last_error);
	}
	fputs(",\"recipients\":[", fp);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		fprintf(fp, "%s{\"address\":", i ? "," : "");
		json_str(fp, e->rcpts[i]);
		fprintf(fp, ",\"state\":\"%s\",\"reply\":", v->busy ? "sending" : rcpt_state(e, i));
		json_str(fp, !v->busy && e->rcpt_note ? e->rcpt_note[i] : NULL);
		fputc('}', fp);
	}
	fputs("]}", fp);
}

struct lister {
	FILE *out;
	time_t now;
	bool json, running;
	size_t n;
};

static void
list_one(struct lister *l, struct entry_view *v)
{
	v->now = l->now;
	v->running = l->running;
	if (l->json)
		format_json(l->out, v, l->n == 0);
	else
		format_entry(l->out, v);
	l->n++;
}

static void
running_cb(const struct deliver_item *it, void *arg)
{
	struct entry_view v = {.e = it->e, .due = it->due, .busy = it->busy, .held = it->held};

	list_one(arg, &v);
}

static void
list_begin(const struct lister *l)
{
	if (l->json)
		fprintf(l->out, "{\"daemon_running\":%s,\"messages\":[",
		        l->running ? "true" : "false");
	else
		format_header(l->out);
}

static void
list_end(const struct lister *l)
{
	if (l->json)
		fprintf(l->out, "%s],\"count\":%zu}\n", l->n ? "\n" : "", l->n);
	else
		fprintf(l->out, "%zu message%s%s\n", l->n, l->n == 1 ? "" : "s",
		        l->running ? "" : " (the daemon is not running)");
}

size_t
queue_list_running(struct deliver *d, FILE *fp, bool json)
{
	struct lister l = {.out = fp, .now = time(NULL), .json = json, .running = true};

	list_begin(&l);
	deliver_foreach(d, running_cb, &l);
	list_end(&l);
	return l.n;
}

static void
offline_cb(const struct spool_entry *e, void *arg)
{
	struct entry_view v = {.e = e, .held = e->held};

	list_one(arg, &v);
}

/* Connects to the daemon's control socket; -1 with errno when it does not answer. */
static int
control_connect(const char *spool)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", spool,
	                     QUEUE_CONTROL_NAME) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static bool
valid_id(const char *id)
{
	if (strlen(id) != SPOOL_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'F')))
			return false;
	return true;
}

static int
offline_remove(const char *spool, const char *id, FILE *out, FILE *err)
{
	char path[4096];
	static const char *const suffix[] = {".env", ".state", ""};
	bool found = false;

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/queue/%s%s", spool, id, suffix[i]);
		if (unlink(path) == 0)
			found = true;
		else if (errno != ENOENT) {
			fprintf(err, "mxgate queue: cannot remove %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	if (!found) {
		fprintf(err, "mxgate queue: no message %s in %s/queue\n", id, spool);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/queue", spool);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	fprintf(out, "removed %s\n", id);
	return 0;
}

/* Sends command on fd (closed here) and copies the answer's text to out; its last line,
 * "ok" or "error: ...", gives the result (the error to err, after prog). */
static int
control_exchange(int fd, const char *command, const char *prog, FILE *out, FILE *err)
{
	char buf[4096];

	size_t len = strlen(command);
	if (write(fd, command, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
		fprintf(err, "%s: cannot talk to the daemon: %s\n", prog, strerror(errno));
		close(fd);
		return 1;
	}
	shutdown(fd, SHUT_WR);
	/* the answer: text, then a last line "ok" or "error: ..." */
	char *all = NULL;
	size_t alen = 0;
	FILE *mem = open_memstream(&all, &alen);
	ssize_t n;
	while (mem && (n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, mem);
	close(fd);
	if (!mem || fclose(mem) != 0) {
		fprintf(err, "%s: out of memory\n", prog);
		free(all);
		return 1;
	}
	int rc = 1;
	char *last = alen > 1 ? memrchr(all, '\n', alen - 1) : NULL;
	char *status = last ? last + 1 : all;
	if (strncmp(status, "ok", 2) == 0) {
		fwrite(all, 1, (size_t)(status - all), out);
		rc = 0;
	} else if (strncmp(status, "error: ", 7) == 0) {
		fwrite(all, 1, (size_t)(status - all), out);
		fprintf(err, "%s: %s", prog, status + 7);
	} else {
		fprintf(err, "%s: the daemon gave no answer\n", prog);
	}
	free(all);
	return rc;
}

/* With the daemon stopped: a "hold" or "release" line appended to the message's state
 * file, owned like its envelope (recovery trusts only the run user's files). */
static int
offline_hold(const char *spool, const char *id, bool hold, FILE *out, FILE *err)
{
	char path[4096];
	struct stat st;
	const char *line = hold ? "hold\n" : "release\n";
	int fd, rc = 1;

	snprintf(path, sizeof(path), "%s/queue/%s.env", spool, id);
	if (stat(path, &st) < 0) {
		fprintf(err, "mxgate queue: no message %s in %s/queue\n", id, spool);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/queue/%s.state", spool, id);
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && (geteuid() != 0 || fchown(fd, st.st_uid, st.st_gid) == 0) &&
	    write(fd, line, strlen(line)) == (ssize_t)strlen(line) && fsync(fd) == 0)
		rc = 0;
	if (rc)
		fprintf(err, "mxgate queue: cannot %s %s: %s: %s\n", hold ? "hold" : "release", id,
		        path, strerror(errno));
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "%s/queue", spool);
	if (!rc && (fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
	if (!rc)
		fprintf(out, "%s %s\n", hold ? "held" : "released", id);
	return rc;
}

struct idlist {
	char (*id)[SPOOL_ID_LEN + 1];
	bool *held;
	size_t n, cap;
	bool failed;
};

static void
collect_cb(const struct spool_entry *e, void *arg)
{
	struct idlist *l = arg;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *ids = realloc(l->id, cap * sizeof(*l->id));
		if (ids)
			l->id = ids;
		void *held = ids ? realloc(l->held, cap * sizeof(*l->held)) : NULL;
		if (held)
			l->held = held;
		if (!ids || !held) {
			l->failed = true;
			return;
		}
		l->cap = cap;
	}
	memcpy(l->id[l->n], e->id, SPOOL_ID_LEN + 1);
	l->held[l->n++] = e->held;
}

/* With the daemon stopped: "remove all", "hold all" or "release all" on the files. */
static int
offline_all(const char *spool, const char *verb, FILE *out, FILE *err)
{
	struct idlist l = {0};
	char e2[512];
	size_t done = 0;
	int rc = 0;

	if (spool_scan(spool, collect_cb, &l, e2, sizeof(e2)) < 0 || l.failed) {
		fprintf(err, "mxgate queue: %s\n", l.failed ? "out of memory" : e2);
		free(l.id);
		free(l.held);
		return 1;
	}
	for (size_t i = 0; i < l.n; i++) {
		int r;
		if (verb[0] == 'r' && verb[2] == 'm')
			r = offline_remove(spool, l.id[i], out, err);
		else if ((verb[0] == 'h') == l.held[i])
			continue; /* already held, or not held */
		else
			r = offline_hold(spool, l.id[i], verb[0] == 'h', out, err);
		rc |= r;
		done += r == 0;
	}
	fprintf(out, "%zu message%s %s (the daemon is not running)\n", done, done == 1 ? "" : "s",
	        verb[0] == 'h'   ? "held"
	        : verb[2] == 'm' ? "removed"
	                         : "released");
	free(l.id);
	free(l.held);
	return rc;
}

/* "VERB ID|all" for remove, hold and release: *arg is set to what follows. */
static bool
id_command(const char *command, const char *verb, const char **arg)
{
	size_t n = strlen(verb);

	if (strncmp(command, verb, n) != 0 || command[n] != ' ')
		return false;
	*arg = command + n + 1;
	return true;
}

/* what to do about an errno from control_connect(): the socket is the daemon's user's alone */
static const char *
access_hint(int e)
{
	return e == EACCES || e == EPERM
	               ? " (the control socket is for root and the user mxgate runs as: run this "
	                 "command as one of them, e.g. with sudo)"
	               : "";
}

int
queue_command(const char *spool, const char *command, FILE *out, FILE *err)
{
	static const char *const verbs[] = {"remove", "hold", "release"};
	const char *id = NULL, *verb = NULL;
	int fd;

	for (size_t i = 0; i < 3 && !verb; i++)
		if (id_command(command, verbs[i], &id))
			verb = verbs[i];
	if (verb && strcmp(id, "all") != 0 && !valid_id(id)) {
		fprintf(err, "mxgate queue: '%s' is not a queue id (16 hex digits) or all\n", id);
		return 1;
	}
	if (!verb && strcmp(command, "list") != 0 && strcmp(command, "list json") != 0 &&
	    strcmp(command, "flush") != 0) {
		fprintf(err, "mxgate queue: unknown command '%s'\n", command);
		return 1;
	}
	fd = control_connect(spool);
	if (fd >= 0)
		return control_exchange(fd, command, "mxgate queue", out, err);
	int e = errno;
	if (e != ENOENT && e != ECONNREFUSED) {
		fprintf(err, "mxgate queue: cannot reach the daemon at %s/%s: %s%s\n", spool,
		        QUEUE_CONTROL_NAME, strerror(e), access_hint(e));
		return 1;
	}
	/* the daemon is not running: work on the files */
	if (strcmp(command, "flush") == 0) {
		fprintf(err,
		        "mxgate queue: the daemon is not running (no %s/%s); queued mail "
		        "is delivered when it starts\n",
		        spool, QUEUE_CONTROL_NAME);
		return 1;
	}
	if (verb && strcmp(id, "all") == 0)
		return offline_all(spool, verb, out, err);
	if (verb)
		return verb[0] == 'r' && verb[2] == 'm'
		               ? offline_remove(spool, id, out, err)
		               : offline_hold(spool, id, verb[0] == 'h', out, err);
	struct lister l = {.out = out, .now = time(NULL), .json = command[4] != '\0'};
	char e2[512];
	list_begin(&l);
	if (spool_scan(spool, offline_cb, &l, e2, sizeof(e2)) < 0) {
		fprintf(err, "mxgate queue: %s\n", e2);
		return 1;
	}
	list_end(&l);
	return 0;
}

int
queue_status(const char *spool, FILE *out, FILE *err)
{
	int fd = control_connect(spool);

	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(err,
			        "mxgate status: mxgate is not running (nothing answers on %s/%s); "
			        "start it, or see `journalctl -u mxgate` for why it stopped\n",
			        spool, QUEUE_CONTROL_NAME);
		else
			fprintf(err, "mxgate status: cannot reach the daemon at %s/%s: %s%s\n",
			        spool, QUEUE_CONTROL_NAME, strerror(e), access_hint(e));
		return e == ENOENT || e == ECONNREFUSED ? 3 : 1;
	}
	return control_exchange(fd, "status", "mxgate status", out, err);
}
