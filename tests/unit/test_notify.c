/* Unit tests: notify, sd_notify's datagram protocol.  Each test owns the receiving socket,
 * as systemd would, bound to a file system path or to an abstract name, and reads the
 * exact datagrams back. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "obs/notify.h"

static char dir[64];
static char path[96];

/* A datagram socket bound where NOTIFY_SOCKET will point: a path when abstract is false,
 * else the abstract name "\0mxgate-notify-<pid>".  Sets NOTIFY_SOCKET. */
static int
listener(bool abstract)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char env[128];
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (abstract) {
		int n = snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "mxgate-notify-%d",
		                 (int)getpid());
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
		snprintf(env, sizeof(env), "@%s", sun.sun_path + 1);
	} else {
		snprintf(dir, sizeof(dir), "/tmp/mxgate-notify-XXXXXX");
		cr_assert_not_null(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/notify", dir);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		len = sizeof(sun);
		snprintf(env, sizeof(env), "%s", path);
	}
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, len), 0, "bind: %s", strerror(errno));
	cr_assert_eq(setenv("NOTIFY_SOCKET", env, 1), 0);
	return fd;
}

static void
cleanup(int fd)
{
	close(fd);
	if (path[0]) {
		unlink(path);
		rmdir(dir);
		path[0] = '\0';
	}
}

/* The next datagram, NUL-terminated, or NULL when none is waiting. */
static char *
next(int fd)
{
	static char buf[NOTIFY_MAX + 1];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (n < 0)
		return NULL;
	buf[n] = '\0';
	return buf;
}

static void
init_ok(void)
{
	char err[256] = "";

	cr_assert_eq(notify_init(err, sizeof(err)), 0, "%s", err);
	cr_assert(notify_enabled());
}

static void
exchange(bool abstract)
{
	int fd = listener(abstract);

	init_ok();
	cr_assert_eq(notify_send("READY=1\nSTATUS=serving 2 listeners"), 0, "%s", strerror(errno));
	cr_expect_str_eq(next(fd), "READY=1\nSTATUS=serving 2 listeners");
	cr_assert_eq(notify_sendf("STATUS=%d sessions", 7), 0);
	cr_expect_str_eq(next(fd), "STATUS=7 sessions");
	cr_assert_eq(notify_stopping("draining 7 sessions"), 0);
	cr_expect_str_eq(next(fd), "STOPPING=1\nSTATUS=draining 7 sessions");
	cr_assert_eq(notify_stopping(NULL), 0);
	cr_expect_str_eq(next(fd), "STOPPING=1");
	cr_expect_null(next(fd), "one datagram per call");
	notify_close();
	cr_expect_not(notify_enabled());
	cr_expect_eq(notify_send("READY=1"), 0);
	cr_expect_null(next(fd), "nothing is sent after notify_close()");
	cleanup(fd);
}

Test(notify, path_socket_gets_the_exact_datagrams)
{
	exchange(false);
}

Test(notify, abstract_socket_gets_the_exact_datagrams)
{
	exchange(true);
}

/* RELOADING=1 carries CLOCK_MONOTONIC in microseconds: no earlier than a reading taken
 * before the call, no later than one taken after it. */
static void
reloading(bool abstract)
{
	int fd = listener(abstract);
	struct timespec a, b;
	unsigned long long usec, lo, hi;
	char status[64];
	int end = 0;

	init_ok();
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(notify_reloading("reloading /etc/mxgate/mxgate.conf"), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	char *m = next(fd);
	cr_assert_not_null(m);
	cr_assert_eq(sscanf(m, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%63[^\n]%n", &usec, status,
	                    &end),
	             2, "%s", m);
	cr_expect_eq((size_t)end, strlen(m), "nothing after the status: %s", m);
	cr_expect_str_eq(status, "reloading /etc/mxgate/mxgate.conf");
	lo = (unsigned long long)a.tv_sec * 1000000 + (unsigned long long)a.tv_nsec / 1000;
	hi = (unsigned long long)b.tv_sec * 1000000 + (unsigned long long)b.tv_nsec / 1000;
	cr_expect(usec >= lo && usec <= hi, "MONOTONIC_USEC=%llu outside [%llu, %llu]", usec, lo,
	          hi);
	cr_assert_eq(notify_reloading(NULL), 0);
	m = next(fd);
	cr_assert_not_null(m);
	cr_expect_eq(strncmp(m, "RELOADING=1\nMONOTONIC_USEC=", 27), 0, "%s", m);
	cr_expect_eq(strspn(m + 27, "0123456789"), strlen(m + 27), "digits only: %s", m);
	cleanup(fd);
}

Test(notify, reloading_carries_the_monotonic_clock_on_a_path_socket)
{
	reloading(false);
}

Test(notify, reloading_carries_the_monotonic_clock_on_an_abstract_socket)
{
	reloading(true);
}

Test(notify, unset_or_empty_notify_socket_sends_nothing)
{
	int fd = listener(false);
	char err[256] = "";

	for (int i = 0; i < 2; i++) {
		if (i == 0)
			unsetenv("NOTIFY_SOCKET");
		else
			setenv("NOTIFY_SOCKET", "", 1);
		cr_assert_eq(notify_init(err, sizeof(err)), 0);
		cr_expect_not(notify_enabled());
		cr_expect_eq(notify_send("READY=1"), 0);
		cr_expect_eq(notify_reloading("x"), 0);
		cr_expect_eq(notify_stopping(NULL), 0);
		cr_expect_null(next(fd));
	}
	cleanup(fd);
}

Test(notify, the_variable_stays_in_the_environment)
{
	int fd = listener(true);
	char want[128];

	snprintf(want, sizeof(want), "%s", getenv("NOTIFY_SOCKET"));
	init_ok();
	cr_assert_not_null(getenv("NOTIFY_SOCKET"));
	cr_expect_str_eq(getenv("NOTIFY_SOCKET"), want);
	cleanup(fd);
}

Test(notify, malformed_values_are_refused_with_a_sentence)
{
	static const char *bad[] = {"run/notify", "notify", "@", "vsock:2:1234"};
	char err[256], big[200];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("NOTIFY_SOCKET", bad[i], 1);
		err[0] = '\0';
		cr_expect_eq(notify_init(err, sizeof(err)), -1, "%s", bad[i]);
		cr_expect_not(notify_enabled());
		cr_expect(strstr(err, "NOTIFY_SOCKET=") != NULL, "%s: '%s'", bad[i], err);
	}
	/* sun_path is 108 bytes: a path of 107 bytes plus its NUL fits, 108 does not */
	memset(big, 'a', sizeof(big));
	big[0] = '/';
	big[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
	setenv("NOTIFY_SOCKET", big, 1);
	cr_expect_eq(notify_init(err, sizeof(err)), -1);
	cr_expect(strstr(err, "longer than a socket address") != NULL, "%s", err);
	big[sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
	setenv("NOTIFY_SOCKET", big, 1);
	cr_expect_eq(notify_init(err, sizeof(err)), 0, "%s", err);
	notify_close();
}

/* A manager that stops reading must not stall the daemon: once the queue is full, a send
 * fails with EAGAIN instead of waiting (the test's timeout catches a blocking send). */
Test(notify, a_full_queue_fails_instead_of_blocking, .timeout = 10)
{
	int fd = listener(false), rc = 0, sent = 0;

	init_ok();
	for (; sent < 1000000; sent++)
		if ((rc = notify_send("STATUS=filling the queue")) < 0)
			break;
	cr_expect_eq(rc, -1, "still sending after %d datagrams", sent);
	cr_expect_eq(errno, EAGAIN, "%s", strerror(errno));
	cr_expect_gt(sent, 0);
	cr_expect_str_eq(next(fd), "STATUS=filling the queue", "what was queued is intact");
	cleanup(fd);
}

Test(notify, a_vanished_manager_is_an_error_not_a_signal)
{
	int fd = listener(false);

	init_ok();
	cleanup(fd); /* closes and unlinks the socket */
	errno = 0;
	cr_expect_eq(notify_send("READY=1"), -1);
	cr_expect(errno == ENOENT || errno == ECONNREFUSED, "%s", strerror(errno));
	fd = listener(true);
	init_ok();
	close(fd);
	errno = 0;
	cr_expect_eq(notify_send("READY=1"), -1);
	cr_expect_eq(errno, ECONNREFUSED, "%s", strerror(errno));
}

/* systemd takes the sender's PID from SCM_CREDENTIALS to accept a notification from the
 * main process only (NotifyAccess=main): the datagram must carry ours. */
Test(notify, the_manager_sees_our_pid)
{
	int fd = listener(true), one = 1;
	char buf[64], cbuf[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = cbuf,
	                    .msg_controllen = sizeof(cbuf)};
	struct ucred uc = {0};

	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	init_ok();
	cr_assert_eq(notify_send("READY=1"), 0);
	cr_assert_eq(recvmsg(fd, &mh, MSG_DONTWAIT), 7);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
	cr_expect_eq(uc.pid, getpid());
	cleanup(fd);
}

Test(notify, an_overlong_formatted_message_is_refused_whole)
{
	int fd = listener(false);
	static char text[NOTIFY_MAX];

	init_ok();
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	errno = 0;
	cr_expect_eq(notify_sendf("STATUS=%s", text), -1);
	cr_expect_eq(errno, EMSGSIZE);
	cr_expect_null(next(fd), "no truncated datagram");
	cleanup(fd);
}
