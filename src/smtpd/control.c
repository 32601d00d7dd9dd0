#include "smtpd/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "queue/queue.h"

struct control {
	int fd;
	struct event *ev;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct deliver *deliver; /* borrowed */
	control_accept_failed_cb *failed_cb;
	void *arg;
	control_status_cb *status_cb;
	void *status_arg;
};

/* One message: remove, hold or release (verb's first letters tell them apart). */
static int
one_message(struct control *c, const char *verb, const char *id, char *err, size_t errlen)
{
	if (verb[2] == 'm')
		return deliver_remove(c->deliver, id, err, errlen);
	return deliver_hold(c->deliver, id, verb[0] == 'h', err, errlen);
}

struct ids {
	char (*v)[SPOOL_ID_LEN + 1];
	size_t n, cap;
	bool failed;
	const char *verb;
	size_t busy;
};

/* The ids "VERB all" acts on: not being delivered, and for hold (release) not held
 * (held). */
static void
collect_cb(const struct deliver_item *it, void *arg)
{
	struct ids *l = arg;

	if (it->busy) {
		l->busy++;
		return;
	}
	if ((l->verb[0] == 'h' && it->held) ||
	    (l->verb[0] == 'r' && l->verb[2] == 'l' && !it->held))
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 64;
		void *v = realloc(l->v, cap * sizeof(*l->v));
		if (!v) {
			l->failed = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	memcpy(l->v[l->n++], it->e->id, SPOOL_ID_LEN + 1);
}

/* "remove|hold|release ID|all": false when cmd is none of them. */
static bool
run_per_message(struct control *c, const char *cmd, FILE *fp)
{
	static const char *const verbs[] = {"remove", "hold", "release"};
	static const char *const done[] = {"removed", "held", "released"};
	const char *verb = NULL, *id = NULL, *past = NULL;
	char err[256];

	for (size_t i = 0; i < 3 && !verb; i++) {
		size_t n = strlen(verbs[i]);
		if (strncmp(cmd, verbs[i], n) == 0 && cmd[n] == ' ')
			verb = verbs[i], past = done[i], id = cmd + n + 1;
	}
	if (!verb)
		return false;
	if (strcmp(id, "all") != 0) {
		if (one_message(c, verb, id, err, sizeof(err)) == 0)
			fprintf(fp, "%s %s\nok\n", past, id);
		else
			fprintf(fp, "error: %s\n", err);
		return true;
	}
	struct ids l = {.verb = verb};
	size_t ok = 0, bad = 0;
	deliver_foreach(c->deliver, collect_cb, &l);
	for (size_t i = 0; i < l.n; i++) {
		if (one_message(c, verb, l.v[i], err, sizeof(err)) == 0) {
			fprintf(fp, "%s %s\n", past, l.v[i]);
			ok++;
		} else if (strncmp(err, "no ", 3) != 0) { /* gone meanwhile: delivered */
			fprintf(fp, "%s\n", err);
			bad++;
		}
	}
	free(l.v);
	fprintf(fp, "%zu message%s %s", ok, ok == 1 ? "" : "s", past);
	if (l.busy)
		fprintf(fp, "; %zu being delivered right now %s left as %s (try again)", l.busy,
		        l.busy == 1 ? "was" : "were", l.busy == 1 ? "it is" : "they are");
	fputc('\n', fp);
	if (l.failed || bad)
		fprintf(fp, "error: %s\n",
		        l.failed ? "out of memory: not every message was seen"
		                 : "some messages could not be changed");
	else
		fprintf(fp, "ok\n");
	return true;
}

static void
control_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct control *c = arg;
	char cmd[128], *answer = NULL;
	size_t len = 0, alen = 0;
	struct timeval tv = {1, 0};
	FILE *fp;
	int fd;

	(void)what;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		c->failed_cb(c->path, errno, c->arg);
		return;
	}
	/* a local administrator's tool: short blocking reads and writes are fine */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	tv.tv_sec = 10;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (len < sizeof(cmd) - 1) {
		ssize_t n = read(fd, cmd + len, sizeof(cmd) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (memchr(cmd, '\n', len))
			break;
	}
	cmd[len] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';
	if (!(fp = open_memstream(&answer, &alen))) {
		close(fd);
		return;
	}
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "list json") == 0) {
		queue_list_running(c->deliver, fp, cmd[4] != '\0');
		fprintf(fp, "ok\n");
	} else if (run_per_message(c, cmd, fp)) {
		/* remove, hold or release: answered */
	} else if (strcmp(cmd, "flush") == 0) {
		deliver_flush(c->deliver);
		log_msg(LOG_LVL_INFO, "queue flush requested: every waiting message is due now");
		fprintf(fp, "every waiting message is due now\nok\n");
	} else if (strcmp(cmd, "status") == 0 && c->status_cb) {
		c->status_cb(fp, c->status_arg);
		fprintf(fp, "ok\n");
	} else {
		fprintf(fp, "error: unknown command '%.60s'\n", cmd);
	}
	fclose(fp);
	for (size_t off = 0; off < alen;) {
		ssize_t n = write(fd, answer + off, alen - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(answer);
	close(fd);
}

struct control *
control_open(struct event_base *base, struct deliver *d, const char *spool, long uid, long gid,
             control_accept_failed_cb *cb, void *arg)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct control *c = calloc(1, sizeof(*c));
	int fd;

	if (!c) {
		log_msg(LOG_LVL_ERROR, "cannot open the control socket: %s", strerror(errno));
		return NULL;
	}
	*c = (struct control){.fd = -1, .deliver = d, .failed_cb = cb, .arg = arg};
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", spool,
	                     QUEUE_CONTROL_NAME) >= sizeof(sun.sun_path)) {
		log_msg(LOG_LVL_WARNING, "spool path too long for the control socket; `mxgate "
		                         "queue` will read the spool directly");
		return c;
	}
	unlink(sun.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177);
	int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0 ||
	    (uid >= 0 && chown(sun.sun_path, (uid_t)uid, (gid_t)gid) < 0))
		goto fail;
	c->fd = fd;
	snprintf(c->path, sizeof(c->path), "%s", sun.sun_path);
	if (!(c->ev = event_new(base, fd, EV_READ | EV_PERSIST, control_cb, c)) ||
	    event_add(c->ev, NULL) < 0)
		goto fail;
	return c;
fail:
	log_msg(LOG_LVL_ERROR, "cannot open the control socket %s: %s", sun.sun_path,
	        strerror(errno));
	if (fd >= 0 && c->fd < 0)
		close(fd);
	control_close(c);
	return NULL;
}

void
control_set_status(struct control *c, control_status_cb *cb, void *arg)
{
	c->status_cb = cb;
	c->status_arg = arg;
}

void
control_enable(struct control *c, bool on)
{
	if (!c || !c->ev)
		return;
	if (on)
		event_add(c->ev, NULL);
	else
		event_del(c->ev);
}

void
control_close(struct control *c)
{
	if (!c)
		return;
	if (c->ev)
		event_free(c->ev);
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	free(c);
}
