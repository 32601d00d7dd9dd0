/* Unit tests: relay against a scripted next hop on loopback (a thread that answers each
 * command from a table): the envelope pipelined and one step at a time, refusals at
 * each step, dot-stuffing, the SIZE limit, a connection lost after the final dot, BDAT
 * when CHUNKING is offered, and RSET before a kept connection is reused. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/config.h"
#include "queue/relay.h"

struct script {
	const char *ehlo;    /* the whole EHLO reply */
	const char *mail;    /* reply to MAIL */
	const char *rcpt[3]; /* replies to the RCPTs, in order */
	const char *data;    /* reply to DATA */
	const char *dot;     /* reply to the final dot or the BDAT chunk; NULL: hang up */
	const char *rset;    /* reply to RSET; NULL: "250 reset" */
	int lfd;
	uint16_t port;
	pthread_t thread;
	char got[16384]; /* every line received, commands and data */
	size_t got_len;
};

static const char *
answer(struct script *s, const char *line, size_t *n_rcpt, bool *in_data)
{
	if (strncmp(line, "EHLO", 4) == 0)
		return s->ehlo;
	if (strncmp(line, "MAIL", 4) == 0)
		return s->mail;
	if (strncmp(line, "RCPT", 4) == 0)
		return s->rcpt[(*n_rcpt)++ % 3];
	if (strncmp(line, "DATA", 4) == 0) {
		*in_data = strncmp(s->data, "354", 3) == 0;
		return s->data;
	}
	if (strncmp(line, "RSET", 4) == 0)
		return s->rset ? s->rset : "250 reset\r\n";
	if (strncmp(line, "QUIT", 4) == 0)
		return "221 bye\r\n";
	return "500 what\r\n";
}

static void *
server_main(void *arg)
{
	struct script *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	FILE *in = fdopen(dup(fd), "r");
	char line[2048];
	size_t n_rcpt = 0;
	bool in_data = false;

	dprintf(fd, "220 scripted ESMTP\r\n");
	while (fgets(line, sizeof(line), in)) {
		size_t len = strlen(line);
		if (s->got_len + len < sizeof(s->got)) {
			memcpy(s->got + s->got_len, line, len);
			s->got_len += len;
		}
		if (in_data) {
			if (strcmp(line, ".\r\n") != 0)
				continue;
			in_data = false;
			if (!s->dot)
				break;
			dprintf(fd, "%s", s->dot);
			continue;
		}
		if (strncmp(line, "BDAT ", 5) == 0) {
			/* the chunk, exactly its size in octets, goes into got as it is */
			size_t n = strtoul(line + 5, NULL, 10), k;
			cr_assert(n < sizeof(s->got) - s->got_len);
			k = fread(s->got + s->got_len, 1, n, in);
			s->got_len += k;
			if (k < n || !s->dot)
				break;
			dprintf(fd, "%s",
			        n_rcpt && strncmp(s->mail, "250", 3) == 0
			                ? s->dot
			                : "554 5.5.1 no valid recipients\r\n");
			continue;
		}
		dprintf(fd, "%s", answer(s, line, &n_rcpt, &in_data));
		if (strncmp(line, "QUIT", 4) == 0)
			break;
	}
	fclose(in);
	close(fd);
	return NULL;
}

static void
start(struct script *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(s->lfd >= 0);
	cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(s->lfd, 1), 0);
	cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void
finish(struct script *s)
{
	pthread_join(s->thread, NULL);
	close(s->lfd);
	s->got[s->got_len] = '\0';
}

/* A message file: a prefix the relay skips, then text with lines that start with dots. */
static int
message(struct spool_entry *e, const char *prefix, const char *text)
{
	char path[] = "/tmp/mxgate-relay-XXXXXX";
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	unlink(path);
	cr_assert_eq(write(fd, prefix, strlen(prefix)), (ssize_t)strlen(prefix));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", "0123456789abcdef");
	e->size = strlen(prefix) + strlen(text);
	e->prefix_len = strlen(prefix);
	return fd;
}

static char r0[] = "a@example.com", r1[] = "b@example.com", r2[] = "c@example.com";
static char *rcpts[] = {r0, r1, r2};
static char sender[] = "s@x.example", null_sender[] = "";

/* Runs one message through a fresh connection; returns relay_send's result. */
static int
relay_one(struct script *s, struct spool_entry *e, int fd, struct relay_result *res)
{
	struct relay_opts o = {.host = "127.0.0.1",
	                       .port = s->port,
	                       .helo = "gw.example",
	                       .tls = RELAY_TLS_NONE,
	                       .timeout_ms = 5000};
	bool pending[3] = {true, true, true};
	char err[512];
	struct relay_conn *c = relay_open(&o, err, sizeof(err));
	int rc;

	cr_assert_not_null(c, "%s", err);
	rc = relay_send(c, e, fd, pending, res, err, sizeof(err));
	if (rc == 0)
		relay_close(c);
	else
		relay_abort(c);
	return rc;
}

static void
run_case(bool pipelining)
{
	struct script s = {.ehlo = pipelining ? "250-scripted\r\n250 PIPELINING\r\n"
	                                      : "250-scripted\r\n250 8BITMIME\r\n",
	                   .mail = "250 ok\r\n",
	                   .rcpt = {"250 ok\r\n", "550 5.1.1 no such user\r\n", "250 ok\r\n"},
	                   .data = "354 go\r\n",
	                   .dot = "250 2.0.0 queued as X\r\n"};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "Return-Path: <s@x>\r\n", ".lead\r\nmid\r\n..two\r\nend");

	e.sender = sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), 0);
	finish(&s);
	close(fd);
	cr_assert_eq(res[0].code, 250);
	cr_assert_str_eq(res[0].text, "2.0.0 queued as X");
	cr_assert_eq(res[1].code, 550);
	cr_assert_str_eq(res[1].text, "5.1.1 no such user");
	cr_assert_eq(res[2].code, 250);
	cr_assert_str_eq(s.got, "EHLO gw.example\r\n"
	                        "MAIL FROM:<s@x.example> SIZE=22\r\n"
	                        "RCPT TO:<a@example.com>\r\n"
	                        "RCPT TO:<b@example.com>\r\n"
	                        "RCPT TO:<c@example.com>\r\n"
	                        "DATA\r\n"
	                        "..lead\r\nmid\r\n...two\r\nend\r\n.\r\n"
	                        "QUIT\r\n");
}

Test(relay, pipelined_envelope)
{
	run_case(true);
}

Test(relay, stepwise_envelope)
{
	run_case(false);
}

Test(relay, refused_mail_decides_every_recipient_without_rcpt)
{
	struct script s = {.ehlo = "250 scripted\r\n", .mail = "451 4.3.0 try later\r\n"};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "", "x\r\n");

	e.sender = null_sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), 0);
	finish(&s);
	close(fd);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(res[i].code, 451);
		cr_assert_str_eq(res[i].text, "4.3.0 try later");
	}
	cr_assert_str_eq(s.got, "EHLO gw.example\r\nMAIL FROM:<> SIZE=3\r\nRSET\r\nQUIT\r\n");
}

Test(relay, refused_data_goes_to_the_accepted_recipients_only)
{
	for (int pipelining = 0; pipelining < 2; pipelining++) {
		struct script s = {.ehlo = pipelining ? "250-s\r\n250 PIPELINING\r\n" : "250 s\r\n",
		                   .mail = "250 ok\r\n",
		                   .rcpt = {"250 ok\r\n", "550 no\r\n", "250 ok\r\n"},
		                   .data = "554 5.3.0 no data today\r\n"};
		struct spool_entry e;
		struct relay_result res[3];
		int fd = message(&e, "", "x\r\n");

		e.sender = sender;
		e.rcpts = rcpts;
		e.n_rcpts = 3;
		start(&s);
		cr_assert_eq(relay_one(&s, &e, fd, res), 0);
		finish(&s);
		close(fd);
		cr_assert_eq(res[0].code, 554);
		cr_assert_eq(res[1].code, 550);
		cr_assert_eq(res[2].code, 554);
		cr_assert(strstr(s.got, "RSET\r\n"), "%s", s.got);
	}
}

Test(relay, lost_after_the_dot_is_undecided)
{
	struct script s = {.ehlo = "250-s\r\n250 PIPELINING\r\n",
	                   .mail = "250 ok\r\n",
	                   .rcpt = {"250 ok\r\n", "250 ok\r\n", "250 ok\r\n"},
	                   .data = "354 go\r\n",
	                   .dot = NULL};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "", "x\r\n");

	e.sender = sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), -1);
	finish(&s);
	close(fd);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(res[i].code, 0);
}

Test(relay, size_limit_refuses_before_mail)
{
	struct script s = {.ehlo = "250-s\r\n250 SIZE 10\r\n"};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "", "more than ten bytes\r\n");

	e.sender = sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), 0);
	finish(&s);
	close(fd);
	cr_assert_eq(res[1].code, 552);
	cr_assert(strstr(res[1].text, "exceeds the 10 bytes"));
	cr_assert_str_eq(s.got, "EHLO gw.example\r\nQUIT\r\n");
}

/* The reply parser is smtpc's strict one: a next hop that ends its lines in a bare LF
 * breaks framing, and nothing is sent to it (the old lenient parser took it). */
Test(relay, a_bare_lf_reply_is_a_broken_next_hop)
{
	struct script s = {.ehlo = "250-s\n250 PIPELINING\n"};
	struct relay_opts o = {.host = "127.0.0.1",
	                       .helo = "gw.example",
	                       .tls = RELAY_TLS_NONE,
	                       .timeout_ms = 5000};
	char err[512];

	start(&s);
	o.port = s.port;
	struct relay_conn *c = relay_open(&o, err, sizeof(err));
	cr_assert_null(c);
	cr_assert(strstr(err, "lines must end in CRLF"), "%s", err);
	finish(&s);
	cr_assert_str_eq(s.got, "EHLO gw.example\r\n");
}

/* CHUNKING offered: the message goes as one "BDAT <size> LAST" chunk, exactly the bytes
 * of the file after the prefix (no dot-stuffing, no CRLF added), after the envelope;
 * pipelined in one write when PIPELINING is offered too, else one step at a time. */
static void
bdat_case(bool pipelining)
{
	struct script s = {.ehlo = pipelining ? "250-scripted\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
	                                      : "250-scripted\r\n250 CHUNKING\r\n",
	                   .mail = "250 ok\r\n",
	                   .rcpt = {"250 ok\r\n", "550 5.1.1 no such user\r\n", "250 ok\r\n"},
	                   .data = "500 not DATA\r\n",
	                   .dot = "250 2.0.0 queued as B\r\n"};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "Return-Path: <s@x>\r\n", ".lead\r\nmid\r\n..two\r\nend");

	e.sender = sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), 0);
	finish(&s);
	close(fd);
	cr_assert_eq(res[0].code, 250);
	cr_assert_str_eq(res[0].text, "2.0.0 queued as B");
	cr_assert_eq(res[1].code, 550);
	cr_assert_eq(res[2].code, 250);
	cr_assert_str_eq(s.got, "EHLO gw.example\r\n"
	                        "MAIL FROM:<s@x.example> SIZE=22\r\n"
	                        "RCPT TO:<a@example.com>\r\n"
	                        "RCPT TO:<b@example.com>\r\n"
	                        "RCPT TO:<c@example.com>\r\n"
	                        "BDAT 22 LAST\r\n"
	                        ".lead\r\nmid\r\n..two\r\nend"
	                        "QUIT\r\n");
}

Test(relay, bdat_pipelined)
{
	bdat_case(true);
}

Test(relay, bdat_stepwise)
{
	bdat_case(false);
}

/* Pipelined BDAT when MAIL is refused: the chunk was sent and is refused too; every
 * recipient gets MAIL's reply, not BDAT's. */
Test(relay, bdat_pipelined_refused_mail_decides)
{
	struct script s = {.ehlo = "250-s\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
	                   .mail = "451 4.3.0 try later\r\n",
	                   .rcpt = {"503 5.5.1 MAIL first\r\n", "503 5.5.1 MAIL first\r\n",
	                            "503 5.5.1 MAIL first\r\n"},
	                   .dot = "250 never\r\n"};
	struct spool_entry e;
	struct relay_result res[3];
	int fd = message(&e, "", "x\r\n");

	e.sender = sender;
	e.rcpts = rcpts;
	e.n_rcpts = 3;
	start(&s);
	cr_assert_eq(relay_one(&s, &e, fd, res), 0);
	finish(&s);
	close(fd);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(res[i].code, 451);
		cr_assert_str_eq(res[i].text, "4.3.0 try later");
	}
}

/* A kept connection is checked with RSET before it carries more: 250 says go on, anything
 * else (the next hop's idle timeout: 421) says it is no use. */
Test(relay, reset_before_reuse)
{
	const char *answers[] = {"250 2.0.0 ok\r\n", "421 4.4.2 idle too long\r\n"};

	for (int i = 0; i < 2; i++) {
		struct script s = {.ehlo = "250 s\r\n", .rset = answers[i]};
		struct relay_opts o = {.host = "127.0.0.1",
		                       .helo = "gw.example",
		                       .tls = RELAY_TLS_NONE,
		                       .timeout_ms = 5000};
		char err[512] = "";

		start(&s);
		o.port = s.port;
		struct relay_conn *c = relay_open(&o, err, sizeof(err));
		cr_assert_not_null(c, "%s", err);
		int rc = relay_reset(c, err, sizeof(err));
		relay_close(c);
		finish(&s);
		cr_assert_eq(rc, i == 0 ? 0 : -1);
		if (i == 1)
			cr_assert(strstr(err, "421 4.4.2 idle too long"), "%s", err);
		cr_assert_str_eq(s.got, "EHLO gw.example\r\nRSET\r\nQUIT\r\n");
	}
}
