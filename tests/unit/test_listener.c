/* listener: the set of listening sockets follows each snapshot, and never keeps pointing
 * into one the caller has freed, out of memory included. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "allocfail.h"
#include "helpers.h"
#include "smtpd/listener.h"

static int
handoff(int fd, const struct ipaddr *remote, uint16_t rport, const struct endpoint *local, int k,
        const struct endpoint *via, void *arg)
{
	(void)remote, (void)rport, (void)local, (void)via;
	*(int *)arg = k;
	close(fd);
	return 0;
}

static void
accepting(bool on, void *arg)
{
	(void)on, (void)arg;
}

/* A loopback port nothing listens on now. */
static uint16_t
free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* A configuration whose connector "name" binds 127.0.0.1 on each port of ports. */
static struct config *
load(const char *name, const uint16_t *ports, size_t n)
{
	char text[1024], bindings[256] = "";
	struct diag d;

	for (size_t i = 0; i < n; i++)
		snprintf(bindings + strlen(bindings), sizeof(bindings) - strlen(bindings),
		         "%s\"127.0.0.1:%u\"", i ? ", " : "", ports[i]);
	snprintf(text, sizeof(text),
	         "accepted-domains = { \"example.com\" }\n"
	         "connector \"%s\" {\n  usage = custom\n  permission-groups = { anonymous-users }\n"
	         "  bindings = { %s }\n  remote-ip-ranges = { \"127.0.0.0/8\" }\n}\n",
	         name, bindings);
	diag_init(&d);
	struct config *c = helper_load(text, &d);
	if (!c)
		helper_dump(&d);
	cr_assert_not_null(c);
	diag_release(&d);
	return c;
}

/* Connects to port and runs the loop until the listener has handed the connection over:
 * returns the connector index it was selected for. */
static int
connect_and_select(struct event_base *base, uint16_t port, int *k)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	*k = -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -2;
	}
	for (int i = 0; i < 200 && *k < 0; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
	close(fd);
	return *k;
}

/* Out of memory for the new listener array at a reload: the old socket keeps serving,
 * now with the new snapshot (the old one is freed, as the server does), and the new
 * binding counts as failed; the next reload opens it. */
Test(listener, a_reload_out_of_memory_serves_the_new_snapshot)
{
	struct event_base *base = event_base_new();
	struct admission *adm = admission_new();
	int k = -1;
	struct listeners *ls = listeners_new(base, adm, handoff, accepting, &k);
	uint16_t ports[3] = {free_port(), 0, 0};
	size_t failed;

	cr_assert(base && adm && ls);
	struct config *one = load("one", ports, 1);
	cr_assert_eq(listeners_reconcile(ls, one, &failed), 1);
	cr_assert_eq(failed, 0);
	cr_assert_eq(connect_and_select(base, ports[0], &k), 0);

	ports[1] = free_port();
	struct config *two = load("two", ports, 2);
	allocfail_arm(0, false);
	allocfail_enter();
	size_t open = listeners_reconcile(ls, two, &failed);
	allocfail_leave();
	cr_assert_eq(allocfail_failed(), 1, "the listener array was not the one refused");
	allocfail_disarm();
	config_unref(one); /* as apply_snapshot_cb does: nothing may point into it now */
	cr_expect_eq(open, 1);
	cr_expect_eq(failed, 1);
	cr_expect_eq(connect_and_select(base, ports[0], &k), 0);
	cr_expect_eq(connect_and_select(base, ports[1], &k), -2, "not opened out of memory");

	/* out of memory again, into a snapshot without the first port: it closes */
	ports[2] = free_port();
	struct config *three = load("three", ports + 2, 1);
	allocfail_arm(0, false);
	allocfail_enter();
	open = listeners_reconcile(ls, three, &failed);
	allocfail_leave();
	allocfail_disarm();
	config_unref(two);
	cr_expect_eq(open, 0);
	cr_expect_eq(failed, 1);
	cr_expect_eq(connect_and_select(base, ports[0], &k), -2, "a binding no longer configured");

	/* memory back: the next reload opens what is missing */
	cr_expect_eq(listeners_reconcile(ls, three, &failed), 1);
	cr_expect_eq(failed, 0);
	cr_expect_eq(connect_and_select(base, ports[2], &k), 0);

	listeners_free(ls);
	config_unref(three);
	admission_free(adm);
	event_base_free(base);
}
