/*
 * notify — sd_notify(3)'s datagram protocol; see notify.h.
 */
#include "obs/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct {
	int fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
	bool connected;
} N = {.fd = -1};

int
notify_init(char *err, size_t errlen)
{
	const char *e = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len;

	notify_close();
	if (!e || !*e)
		return 0;
	len = strlen(e);
	if (e[0] != '/' && e[0] != '@') {
		snprintf(err, errlen,
		         "NOTIFY_SOCKET=%.200s: neither an absolute path nor an abstract socket "
		         "('@name'); not telling the service manager anything",
		         e);
		return -1;
	}
	/* a path needs its terminating NUL inside sun_path; an abstract name's leading NUL
	 * takes the place of the '@', and its length is given by the address length */
	if (len >= sizeof(sun.sun_path) || (e[0] == '@' && len < 2)) {
		snprintf(err, errlen,
		         "NOTIFY_SOCKET=%.200s: %s; not telling the service manager anything", e,
		         len < 2 ? "an empty abstract name" : "longer than a socket address");
		return -1;
	}
	memcpy(sun.sun_path, e, len);
	if (e[0] == '@')
		sun.sun_path[0] = '\0';
	N.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (N.fd < 0) {
		snprintf(err, errlen, "cannot open a socket for NOTIFY_SOCKET=%.200s: %s", e,
		         strerror(errno));
		return -1;
	}
	N.addr = sun;
	N.addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (e[0] == '/'));
	/* connected now, while the daemon may still be root: a socket path the run user
	 * could not write to still takes the messages sent after the privilege drop.  When
	 * the connection breaks (the manager re-executed and made the socket anew), each
	 * message goes by address instead. */
	N.connected = connect(N.fd, (const struct sockaddr *)&N.addr, N.addrlen) == 0;
	return 0;
}

bool
notify_enabled(void)
{
	return N.fd >= 0;
}

int
notify_send(const char *state)
{
	if (N.fd < 0)
		return 0;
	if (N.connected && send(N.fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
		return 0;
	if (N.connected && errno == EAGAIN)
		return -1;
	if (sendto(N.fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
	           (const struct sockaddr *)&N.addr, N.addrlen) < 0)
		return -1;
	return 0;
}

static int vsendf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

static int
vsendf(const char *fmt, va_list ap)
{
	char buf[NOTIFY_MAX];
	int n;

	if (N.fd < 0)
		return 0;
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		errno = EMSGSIZE;
		return -1;
	}
	return notify_send(buf);
}

int
notify_sendf(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsendf(fmt, ap);
	va_end(ap);
	return rc;
}

int
notify_reloading(const char *status)
{
	struct timespec ts;

	if (N.fd < 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return notify_sendf("RELOADING=1\nMONOTONIC_USEC=%llu%s%s",
	                    (unsigned long long)ts.tv_sec * 1000000ULL +
	                            (unsigned long long)ts.tv_nsec / 1000ULL,
	                    status ? "\nSTATUS=" : "", status ? status : "");
}

int
notify_stopping(const char *status)
{
	return notify_sendf("STOPPING=1%s%s", status ? "\nSTATUS=" : "", status ? status : "");
}

void
notify_close(void)
{
	if (N.fd >= 0)
		close(N.fd);
	N.fd = -1;
}
