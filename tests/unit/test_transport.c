/* Unit tests: the client transport on loopback: a connection refused, a source address,
 * a peer that never answers (the armed deadline ends the wait), the end of the stream. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/transport.h"

/* A listening socket on 127.0.0.1; its address in sa. */
static int
listener(struct sockaddr_in *sa)
{
	socklen_t sl = sizeof(*sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)sa, &sl), 0);
	return fd;
}

Test(transport, connection_refused)
{
	struct sockaddr_in sa;
	struct transport t;
	int l = listener(&sa);

	close(l); /* nothing listens on that port now */
	transport_init(&t, 2000);
	cr_assert_eq(transport_socket(&t, AF_INET, NULL, 0), 0);
	cr_assert_eq(transport_connect(&t, (struct sockaddr *)&sa, sizeof(sa)), -1);
	cr_assert_eq(errno, ECONNREFUSED);
	cr_assert(strstr(t.error, "connect: "), "%s", t.error);
	transport_close(&t);
}

Test(transport, source_address_is_used)
{
	struct sockaddr_in sa, src = {.sin_family = AF_INET}, me;
	socklen_t sl = sizeof(me);
	struct transport t;
	int l = listener(&sa);
	char text[INET_ADDRSTRLEN];

	inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
	transport_init(&t, 2000);
	cr_assert_eq(transport_socket(&t, AF_INET, (struct sockaddr *)&src, sizeof(src)), 0);
	cr_assert_eq(transport_connect(&t, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(t.fd, (struct sockaddr *)&me, &sl), 0);
	cr_assert_str_eq(inet_ntop(AF_INET, &me.sin_addr, text, sizeof(text)), "127.0.0.2");
	transport_close(&t);
	close(l);
}

Test(transport, a_silent_peer_ends_at_the_deadline_and_eof_reads_zero)
{
	struct sockaddr_in sa;
	struct transport t;
	int l = listener(&sa), peer;
	char buf[16];

	transport_init(&t, 100);
	cr_assert_eq(transport_socket(&t, AF_INET, NULL, 0), 0);
	cr_assert_eq(transport_connect(&t, (struct sockaddr *)&sa, sizeof(sa)), 0);
	peer = accept(l, NULL, NULL);
	cr_assert(peer >= 0);

	transport_arm(&t);
	cr_assert_eq(t.read(&t, buf, sizeof(buf)), -1);
	cr_assert_eq(errno, ETIMEDOUT);

	cr_assert_eq(write(peer, "hi", 2), 2);
	transport_arm(&t);
	cr_assert_eq(t.read(&t, buf, sizeof(buf)), 2);
	cr_assert_eq(memcmp(buf, "hi", 2), 0);
	cr_assert_eq(t.write(&t, "ok\r\n", 4), 0);
	cr_assert_eq(read(peer, buf, sizeof(buf)), 4);

	close(peer);
	transport_arm(&t);
	cr_assert_eq(t.read(&t, buf, sizeof(buf)), 0);
	transport_close(&t);
	transport_close(&t); /* twice is harmless */
	close(l);
}
