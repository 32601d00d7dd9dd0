#include "smtpd/keeper.h"

#include <errno.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/diag.h"
#include "base/log.h"
#include "conf/config.h"
#include "smtpd/privileges.h"

/* The messages, each one SOCK_SEQPACKET record that starts with a header: the daemon sends
 * REQ_LOAD with a new sequence number; the keeper answers with one MSG_FILE per file (the
 * path after the header, the descriptor as SCM_RIGHTS) and one MSG_END, each carrying the
 * request's number, so that the late answer to a request that timed out is told apart
 * and dropped. */
enum { REQ_LOAD = 'L', MSG_FILE = 'F', MSG_END = 'E' };

struct header {
	char type;
	uint32_t seq;
} __attribute__((packed));

struct keeper {
	int fd;
	pid_t pid;
	uint32_t seq;
	const char *path;
};

/* What the keeper keeps of root: reading any file, no more — its bounding set, with
 * no_new_privs, is that one capability, and its permitted and effective sets hold it alone.
 * Without CAP_DAC_READ_SEARCH to start with (a service manager that withholds it) it keeps
 * nothing, and reads what root owns. */
static void
keeper_drop_caps(void)
{
	if (privileges_restrict(CAP_DAC_READ_SEARCH) < 0)
		_exit(1);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2] = {{0}};

	if (prctl(PR_CAPBSET_READ, CAP_DAC_READ_SEARCH, 0, 0, 0) == 1)
		data[0].permitted = data[0].effective = 1u << CAP_DAC_READ_SEARCH;
	if (syscall(SYS_capset, &hdr, data) < 0)
		log_msg(LOG_LVL_WARNING, "keeper: cannot drop its capabilities: %s",
		        strerror(errno));
}

static int
send_file(int sock, uint32_t seq, const char *path, int fd)
{
	struct header h = {.type = MSG_FILE, .seq = seq};
	char buf[sizeof(h) + 4096];
	char ctl[CMSG_SPACE(sizeof(int))] = {0};
	size_t n = strlen(path);
	struct iovec iov;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *cm;

	if (n >= sizeof(buf) - sizeof(h))
		return 0; /* no such path reaches here: PATH_MAX is 4096 with its NUL */
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), path, n);
	iov = (struct iovec){.iov_base = buf, .iov_len = sizeof(h) + n};
	m.msg_control = ctl;
	m.msg_controllen = sizeof(ctl);
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

/* One load, as the daemon's reload does it, recording every file opened; then the
 * descriptors go to the daemon. */
static int
keeper_serve_load(int sock, uint32_t seq, const char *path)
{
	struct sidefile_set *set = sidefile_set_new();
	struct header end = {.type = MSG_END, .seq = seq};
	struct diag d;
	struct config *c;
	int rc = 0;

	if (!set)
		return -1;
	diag_init(&d);
	/* the load opens every file the configuration names (the TLS pair included: the
	 * loader checks both); line files are opened, not read (sidefile_record()), so the
	 * diagnostics are meaningless here and dropped: the daemon makes its own */
	sidefile_record(set);
	c = config_load(path, &d);
	sidefile_record(NULL);
	config_unref(c);
	diag_release(&d);
	for (size_t i = 0; i < sidefile_set_count(set) && rc == 0; i++) {
		const char *p;
		int fd;
		sidefile_set_get(set, i, &p, &fd);
		rc = send_file(sock, seq, p, fd);
	}
	sidefile_set_free(set);
	if (rc == 0 && send(sock, &end, sizeof(end), MSG_NOSIGNAL) < 0)
		rc = -1;
	return rc;
}

static void __attribute__((noreturn)) keeper_main(int sock, const char *path)
{
	struct header req;
	ssize_t n;

	prctl(PR_SET_NAME, "mxgate-keeper");
	/* the daemon's signals are the daemon's: a keeper ends with its channel or its parent */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (dup2(sock, 3) < 0)
		_exit(1);
	syscall(SYS_close_range, 4u, ~0u, 0u);
	sock = 3;
	keeper_drop_caps();
	for (;;) {
		n = recv(sock, &req, sizeof(req), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		if (n == sizeof(req) && req.type == REQ_LOAD &&
		    keeper_serve_load(sock, req.seq, path) < 0) {
			log_msg(LOG_LVL_ERROR, "keeper: cannot hand the files of %s over: %s", path,
			        strerror(errno));
			_exit(1);
		}
	}
}

struct keeper *
keeper_start(const char *config_path)
{
	struct keeper *k = calloc(1, sizeof(*k));
	int sv[2];

	if (!k || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_msg(LOG_LVL_ERROR,
		        "cannot start the privileged reader: %s; reloads will read files as the "
		        "run user",
		        strerror(errno));
		free(k);
		return NULL;
	}
	fflush(NULL);
	k->pid = fork();
	if (k->pid < 0) {
		log_msg(LOG_LVL_ERROR,
		        "cannot start the privileged reader: fork: %s; reloads will read files "
		        "as the run user",
		        strerror(errno));
		close(sv[0]);
		close(sv[1]);
		free(k);
		return NULL;
	}
	if (k->pid == 0) {
		close(sv[0]);
		keeper_main(sv[1], config_path);
	}
	close(sv[1]);
	k->fd = sv[0];
	k->path = config_path;
	struct timeval tv = {.tv_sec = KEEPER_TIMEOUT_S};
	setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	log_msg(LOG_LVL_INFO,
	        "privileged reader started (pid %ld): reloads read %s and the files "
	        "it names as root",
	        (long)k->pid, config_path);
	return k;
}

/* One record: its header, the path after it (NUL-terminated in buf) and the descriptor
 * it carries (or -1).  The length received, 0 at the end of the channel, -1 on error. */
static ssize_t
recv_record(int sock, struct header *h, char *buf, size_t size, int *fd)
{
	char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof(*h)},
	                       {.iov_base = buf, .iov_len = size - 1}};
	struct msghdr m = {
	        .msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	if ((size_t)n < sizeof(*h)) {
		h->type = 0;
		buf[0] = '\0';
	} else {
		buf[(size_t)n - sizeof(*h)] = '\0';
	}
	return n;
}

struct sidefile_set *
keeper_fetch(struct keeper *k, char *err, size_t errlen)
{
	struct header req = {.type = REQ_LOAD, .seq = ++k->seq}, h;
	struct sidefile_set *set;
	char path[4096 + 1];
	ssize_t n = -1;
	int fd;

	if (!(set = sidefile_set_new())) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (send(k->fd, &req, sizeof(req), MSG_NOSIGNAL) < 0)
		goto gone;
	for (;;) {
		n = recv_record(k->fd, &h, path, sizeof(path), &fd);
		if (n <= 0)
			goto gone;
		if (h.seq != req.seq) { /* the rest of an answer that came too late */
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (h.type == MSG_END && fd < 0)
			return set;
		if (h.type != MSG_FILE || fd < 0 || !path[0]) {
			if (fd >= 0)
				close(fd);
			snprintf(err, errlen,
			         "the privileged reader (pid %ld) sent a malformed "
			         "message",
			         (long)k->pid);
			sidefile_set_free(set);
			return NULL;
		}
		if (sidefile_set_add(set, path, fd) < 0) {
			snprintf(err, errlen, "cannot keep the files handed over: %s",
			         strerror(errno));
			sidefile_set_free(set);
			return NULL;
		}
	}
gone:
	if (n == 0 || errno == EPIPE || errno == ECONNRESET)
		snprintf(err, errlen, "the privileged reader (pid %ld) is gone", (long)k->pid);
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		snprintf(err, errlen, "the privileged reader (pid %ld) did not answer in %d s",
		         (long)k->pid, KEEPER_TIMEOUT_S);
	else
		snprintf(err, errlen, "the privileged reader (pid %ld): %s", (long)k->pid,
		         strerror(errno));
	sidefile_set_free(set);
	return NULL;
}

long
keeper_pid(const struct keeper *k)
{
	return (long)k->pid;
}

void
keeper_stop(struct keeper *k)
{
	if (!k)
		return;
	close(k->fd);
	while (waitpid(k->pid, NULL, 0) < 0 && errno == EINTR)
		;
	free(k);
}
