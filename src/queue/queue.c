#include "queue/queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

/* One message: its line, then a line per recipient with its state.  due: when the next
 * attempt is (0: now or unknown); busy: being delivered right now. */
static void
format_entry(FILE *fp, const struct spool_entry *e, time_t now, time_t due, bool busy,
             bool daemon_running)
{
	char a[32], next[40];

	age(a, sizeof(a), (long)(now - e->received));
	if (busy)
		snprintf(next, sizeof(next), "sending");
	else if (!daemon_running)
		snprintf(next, sizeof(next), "stopped");
	else if (due <= now)
		snprintf(next, sizeof(next), "now");
	else {
		char in[32];
		age(in, sizeof(in), (long)(due - now));
		snprintf(next, sizeof(next), "in %s", in);
	}
	/* a message being delivered: its delivery thread owns the attempt count, the last
	 * error and the recipients' states (deliver.h), so only what never changes is read */
	if (busy) {
		fprintf(fp, "%-16s %7s %9llu %4s  %-9s <%s>\n", e->id, a,
		        (unsigned long long)(e->size - e->prefix_len), "-", next, e->sender);
		for (size_t i = 0; i < e->n_rcpts; i++)
			fprintf(fp, "    %-9s <%s>\n", "sending", e->rcpts[i]);
		return;
	}
	fprintf(fp, "%-16s %7s %9llu %4u  %-9s <%s>\n", e->id, a,
	        (unsigned long long)(e->size - e->prefix_len), e->attempts, next, e->sender);
	if (e->last_error)
		fprintf(fp, "    last error: %s\n", e->last_error);
	for (size_t i = 0; i < e->n_rcpts; i++) {
		const char *st = "pending";
		if (e->rcpt_state && e->rcpt_state[i] == SPOOL_RCPT_DELIVERED)
			st = "delivered";
		else if (e->rcpt_state && e->rcpt_state[i] == SPOOL_RCPT_FAILED)
			st = "failed";
		fprintf(fp, "    %-9s <%s>", st, e->rcpts[i]);
		if (e->rcpt_note && e->rcpt_note[i])
			fprintf(fp, " %s", e->rcpt_note[i]);
		fputc('\n', fp);
	}
}

struct running {
	FILE *out;
	time_t now;
};

static void
running_cb(const struct deliver_item *it, void *arg)
{
	struct running *r = arg;

	format_entry(r->out, it->e, r->now, it->due, it->busy, true);
}

size_t
queue_list_running(struct deliver *d, FILE *fp)
{
	struct running r = {.out = fp, .now = time(NULL)};

	format_header(fp);
	return deliver_foreach(d, running_cb, &r);
}

struct offline {
	FILE *out;
	time_t now;
	size_t n;
};

static void
offline_cb(const struct spool_entry *e, void *arg)
{
	struct offline *o = arg;

	format_entry(o->out, e, o->now, 0, false, false);
	o->n++;
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

int
queue_command(const char *spool, const char *command, FILE *out, FILE *err)
{
	const char *id = NULL;
	int fd;

	if (strncmp(command, "remove ", 7) == 0) {
		id = command + 7;
		if (!valid_id(id)) {
			fprintf(err, "mxgate queue: '%s' is not a queue id (16 hex digits)\n", id);
			return 1;
		}
	} else if (strcmp(command, "list") != 0 && strcmp(command, "flush") != 0) {
		fprintf(err, "mxgate queue: unknown command '%s'\n", command);
		return 1;
	}
	fd = control_connect(spool);
	if (fd < 0) {
		int e = errno;
		if (e != ENOENT && e != ECONNREFUSED) {
			fprintf(err, "mxgate queue: cannot reach the daemon at %s/%s: %s\n", spool,
			        QUEUE_CONTROL_NAME, strerror(e));
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
		if (id)
			return offline_remove(spool, id, out, err);
		struct offline o = {.out = out, .now = time(NULL)};
		char e2[512];
		format_header(out);
		if (spool_scan(spool, offline_cb, &o, e2, sizeof(e2)) < 0) {
			fprintf(err, "mxgate queue: %s\n", e2);
			return 1;
		}
		fprintf(out, "%zu message%s (the daemon is not running)\n", o.n,
		        o.n == 1 ? "" : "s");
		return 0;
	}
	return control_exchange(fd, command, "mxgate queue", out, err);
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
			fprintf(err, "mxgate status: cannot reach the daemon at %s/%s: %s\n", spool,
			        QUEUE_CONTROL_NAME, strerror(e));
		return e == ENOENT || e == ECONNREFUSED ? 3 : 1;
	}
	return control_exchange(fd, "status", "mxgate status", out, err);
}
