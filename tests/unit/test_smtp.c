/* Unit tests: the sans-I/O SMTP core, driven by golden transcripts
 * (tests/unit/transcripts/, run whole, byte by byte and cut at every offset) and by
 * tables of hostile input. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "smtpd/smtp.h"
#include "transcript.h"

#if defined(__SANITIZE_ADDRESS__)
/* ASan's allocator (libasan; its header is not always installed) */
size_t __sanitizer_get_current_allocated_bytes(void);
#define heap_in_use() __sanitizer_get_current_allocated_bytes()
#else
#define heap_in_use() mallinfo2().uordblks
#endif

static void
check_file(const char *file)
{
	struct tx_script *sc = tx_load(file);

	cr_assert_not_null(sc, "%s does not parse", file);
	cr_expect(tx_check(sc), "%s: see the record above", file);
	tx_free(sc);
}

/* Every file in tests/unit/transcripts/, one test each. */
#define TRANSCRIPTS(X)                                                                             \
	X(esmtp_basic)                                                                             \
	X(helo_basic)                                                                              \
	X(pipelining)                                                                              \
	X(ehlo_minimal)                                                                            \
	X(ehlo_exchange_servers)                                                                   \
	X(mail_params)                                                                             \
	X(message_answers)                                                                         \
	X(command_errors)                                                                          \
	X(protocol_error_limit)                                                                    \
	X(protocol_error_zero)                                                                     \
	X(protocol_error_one)                                                                      \
	X(quit_pipelined)                                                                          \
	X(eof_cases)                                                                               \
	X(eof_in_data)                                                                             \
	X(eof_in_long_line)                                                                        \
	X(eof_in_long_text_line)                                                                   \
	X(timeouts)                                                                                \
	X(timeout_idle)                                                                            \
	X(shutdown)                                                                                \
	X(shutdown_idle)                                                                           \
	X(shutdown_between_mail_and_data)                                                          \
	X(rate_limit)                                                                              \
	X(bare_lf_command)                                                                         \
	X(bare_cr_command)                                                                         \
	X(bare_cr_before_crlf)                                                                     \
	X(bare_lf_header)                                                                          \
	X(bare_cr_body)                                                                            \
	X(bare_lf_in_long_command)                                                                 \
	X(bare_cr_in_long_command)                                                                 \
	X(bare_lf_in_long_text_line)                                                               \
	X(bare_cr_in_long_text_line)                                                               \
	X(smuggle_lf_dot_lf)                                                                       \
	X(dot_stuffing)                                                                            \
	X(text_line_limit)                                                                         \
	X(command_line_limit)                                                                      \
	X(message_size)                                                                            \
	X(message_size_long_line)                                                                  \
	X(message_size_exchange)                                                                   \
	X(header_size)                                                                             \
	X(max_recipients)                                                                          \
	X(hop_count)                                                                               \
	X(no_permission)                                                                           \
	X(require_tls)                                                                             \
	X(starttls_injection)                                                                      \
	X(starttls_failed)                                                                         \
	X(starttls_syntax)                                                                         \
	X(data_sync_error)                                                                         \
	X(data_then_quit_sync)                                                                     \
	X(tarpit)                                                                                  \
	X(tarpit_bare_lf)                                                                          \
	X(tarpit_exchange_servers)                                                                 \
	X(recipients_file)                                                                         \
	X(numeric_fqdn)                                                                            \
	X(postmaster_without_domains)                                                              \
	X(helo_literals)                                                                           \
	X(queue_bound_data)                                                                        \
	X(timeout_in_commit)                                                                       \
	X(timeout_in_commit_failed)                                                                \
	X(timeout_in_begin)                                                                        \
	X(timeout_in_begin_failed)                                                                 \
	X(shutdown_in_commit)                                                                      \
	X(tarpit_partners)                                                                         \
	X(tarpit_anonymous_and_trusted)                                                            \
	X(tarpit_ipv6_link_local)                                                                  \
	X(bdat_basic)                                                                              \
	X(bdat_pipelined)                                                                          \
	X(bdat_errors)                                                                             \
	X(bdat_disabled)                                                                           \
	X(bdat_size)                                                                               \
	X(bdat_text_checks)                                                                        \
	X(bdat_bare_lf_normalize)                                                                  \
	X(bare_lf_normalize)                                                                       \
	X(smuggle_normalize)

#define TRANSCRIPT_TEST(name)                                                                      \
	Test(smtp_transcript, name)                                                                \
	{                                                                                          \
		check_file(#name ".txt");                                                          \
	}
TRANSCRIPTS(TRANSCRIPT_TEST)

#define TRANSCRIPT_NAME(name) #name ".txt",
static const char *const listed[] = {TRANSCRIPTS(TRANSCRIPT_NAME)};

Test(smtp_transcript, every_file_is_run)
{
	DIR *dir = opendir(tx_dir());
	struct dirent *e;
	size_t seen = 0;

	cr_assert_not_null(dir, "cannot open %s", tx_dir());
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		bool found = false;
		for (size_t i = 0; i < sizeof(listed) / sizeof(listed[0]); i++)
			found = found || strcmp(listed[i], e->d_name) == 0;
		cr_expect(found, "%s/%s is not run by any test (add it to TRANSCRIPTS)", tx_dir(),
		          e->d_name);
		seen++;
	}
	closedir(dir);
	cr_expect_eq(seen, sizeof(listed) / sizeof(listed[0]), "a listed transcript is missing");
}

/* ---- tables, each case a small transcript run with every feed ---------------------- */

static void
check_text(const char *name, const char *text)
{
	struct tx_script *sc = tx_parse(name, text);

	cr_assert_not_null(sc, "%s does not parse:\n%s", name, text);
	cr_expect(tx_check(sc), "%s: see the record above", name);
	tx_free(sc);
}

#define GREETING                                                                                   \
	"S: 220 mx.example.com ESMTP ready\n"                                                      \
	"C: HELO c.example\n"                                                                      \
	"S: 250 mx.example.com Hello [192.0.2.1]\n"
#define BEGIN_MESSAGE                                                                              \
	"A: MSG_BEGIN ok\n"                                                                        \
	"E: helo=c.example from=<a@c.example> to=<%s>\n"                                           \
	"S: 354 Start mail input; end with <CRLF>.<CRLF>\n"

static const char relay_denied[] = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted "
                                   "domain";
static const char routing[] = "550 5.1.3 Routing characters (%, !, @) in the local part are not "
                              "accepted";
static const char bad_address[] = "501 5.1.3 Invalid address";

/* RCPT TO forms that try to make the gateway relay: none may reach the envelope of an
 * anonymous session except as a local recipient of an accepted domain.  `rcpt` is in
 * transcript syntax; `delivered` is the envelope address, or NULL when refused. */
static const struct relay_case {
	const char *rcpt, *reply, *delivered;
} relay_cases[] = {
        {"<user@example.com>", NULL, "user@example.com"},
        {"<User@EXAMPLE.Com>", NULL, "User@example.com"},
        {"<user@example.com>   ", NULL, "user@example.com"},
        {"<user+tag@example.com>", NULL, "user+tag@example.com"},
        {"<user@deep.sub.example.net>", NULL, "user@deep.sub.example.net"},
        {"<\"user\"@example.com>", NULL, "user@example.com"},
        {"<\"us er\"@example.com>", NULL, "\"us er\"@example.com"},
        {"<@other.example:user@example.com>", NULL, "user@example.com"},
        {"<@a.example,@b.example:user@example.com>", NULL, "user@example.com"},
        {"<postmaster>", NULL, "postmaster@corp.example"},
        {"<PostMaster>", NULL, "postmaster@corp.example"},
        {"<user@other.example>", relay_denied, NULL},
        {"<user@example.net>", relay_denied, NULL},
        {"<user@sub.example.com>", relay_denied, NULL},
        {"<user@example.com.other.example>", relay_denied, NULL},
        {"<user@xexample.com>", relay_denied, NULL},
        {"<user@localhost>", relay_denied, NULL},
        {"<user@127.0.0.1>", relay_denied, NULL},
        {"<user@[192.0.2.1]>", relay_denied, NULL},
        {"<user@[127.0.0.1]>", relay_denied, NULL},
        {"<user@[IPv6:2001:db8::1]>", relay_denied, NULL},
        {"<postmaster@other.example>", relay_denied, NULL},
        {"<@example.com:user@other.example>", relay_denied, NULL},
        {"<@example.com,@example.com:user@other.example>", relay_denied, NULL},
        {"<user%other.example@example.com>", routing, NULL},
        {"<%user@example.com>", routing, NULL},
        {"<other.example!user@example.com>", routing, NULL},
        {"<\"user@other.example\"@example.com>", routing, NULL},
        {"<\"user\\\\@other.example\"@example.com>", routing, NULL},
        {"<\"user%other.example\"@example.com>", routing, NULL},
        {"<\"user\\\\\"@other.example\"@example.com>", routing, NULL},
        {"<\"@other.example:user\"@example.com>", routing, NULL},
        {"<user@other.example@example.com>", bad_address, NULL},
        {"<user@example.com@other.example>", bad_address, NULL},
        {"<user@example.com.>", bad_address, NULL},
        {"<user@.example.com>", bad_address, NULL},
        {"<user@-example.com>", bad_address, NULL},
        {"<user@exa_mple.com>", bad_address, NULL},
        {"<user@exam ple.com>", bad_address, NULL},
        {"<us er@example.com>", bad_address, NULL},
        {"<user\\\\@other.example@example.com>", bad_address, NULL},
        {"<user@example.com", bad_address, NULL},
        {"user@example.com", bad_address, NULL},
        {"<>", bad_address, NULL},
        {"<@other.example>", bad_address, NULL},
        {"<@[192.0.2.1]:user@example.com>", bad_address, NULL},
        {"<user@[192.0.2.1>", bad_address, NULL},
        {"<user@ex\\xc3\\xa4mple.com>", "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter",
         NULL},
        {"<user@example.com> NOTIFY=SUCCESS", "555 5.5.4 Unsupported parameter", NULL},
        {"<user@example.com>\\0", "500 5.5.2 NUL in command", NULL},
};

static void
relay_case(const char *connector, size_t i, const struct relay_case *c)
{
	char text[4096], name[200];
	int n;

	snprintf(name, sizeof(name), "relay case %zu: RCPT TO:%s (%s)", i, c->rcpt,
	         connector ? connector : "anonymous-users\n");
	n = snprintf(text, sizeof(text),
	             "%s"
	             "connector: max-protocol-errors = unlimited\n" GREETING
	             "C: MAIL FROM:<a@c.example>\n"
	             "S: 250 2.1.0 Sender OK\n"
	             "C: RCPT TO:%s\n"
	             "S: %s\n"
	             "C: DATA\n",
	             connector ? connector : "", c->rcpt,
	             c->reply ? c->reply : "250 2.1.5 Recipient OK");
	if (c->delivered)
		snprintf(text + n, sizeof(text) - (size_t)n, BEGIN_MESSAGE, c->delivered);
	else
		snprintf(text + n, sizeof(text) - (size_t)n, "S: 503 5.5.2 Need rcpt command\n");
	check_text(name, text);
}

Test(smtp_relay, anonymous_never_relays)
{
	for (size_t i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++)
		relay_case(NULL, i, &relay_cases[i]);
}

Test(smtp_relay, partners_never_relay)
{
	for (size_t i = 0; i < sizeof(relay_cases) / sizeof(relay_cases[0]); i++)
		relay_case("connector: permission-groups = { partners }\n", i, &relay_cases[i]);
}

/* exchange-servers may relay anywhere, routing characters and literals included; the
 * syntax rules still hold. */
static const struct relay_case trusted_cases[] = {
        {"<user@other.example>", NULL, "user@other.example"},
        {"<user%other.example@example.com>", NULL, "user%other.example@example.com"},
        {"<other.example!user@relay.example>", NULL, "other.example!user@relay.example"},
        {"<\"user@other.example\"@example.com>", NULL, "\"user@other.example\"@example.com"},
        {"<user@[192.0.2.1]>", NULL, "user@[192.0.2.1]"},
        {"<@hop.example:user@other.example>", NULL, "user@other.example"},
        {"<carol@corp.example>", "550 5.1.1 User unknown", NULL},
        {"<user@other.example@example.com>", bad_address, NULL},
};

Test(smtp_relay, exchange_servers_may_relay)
{
	for (size_t i = 0; i < sizeof(trusted_cases) / sizeof(trusted_cases[0]); i++)
		relay_case("connector: permission-groups = { exchange-servers }\n", i,
		           &trusted_cases[i]);
}

/* SMTP smuggling (smtpsmug and the 2023 "SMTP smuggling" variants): each end of data that
 * is not CRLF "." CRLF, followed by a hidden second transaction.  None may end the message
 * early or make two messages: a bare CR or LF closes the session (421, message aborted),
 * and a NUL near the dot keeps it text (the one message is refused for the NUL). */
static const struct smuggle_case {
	const char *end; /* in transcript syntax */
	enum { BARE, NUL, TEXT } outcome;
} smuggle_cases[] = {
        {"\\n.\\n", BARE},
        {"\\n.\\r\\n", BARE},
        {"\\r.\\r", BARE},
        {"\\r.\\n", BARE},
        {"\\r\\n.\\r", BARE},
        {"\\r\\n.\\n", BARE},
        {"\\n.\\r", BARE},
        {"\\r.\\r\\n", BARE},
        {"\\r\\n.\\r\\r\\n", BARE},
        {"\\r\\r\\n.\\r\\r\\n", BARE},
        {"\\n\\r\\n.\\r\\n", BARE},
        {"\\r\\n.\\n\\r\\n", BARE},
        {"\\r\\n\\0.\\r\\n", NUL},
        {"\\r\\n.\\0\\r\\n", NUL},
        {"\\r\\n\\0.\\0\\r\\n", NUL},
        {"\\r\\n..\\r\\n", TEXT},
        {"\\r\\n .\\r\\n", TEXT},
        {"\\r\\n.x\\r\\n", TEXT},
};

/* Length of transcript text with only one-character escapes (\\r, \\n, \\0, \\\\). */
static size_t
unescaped_len(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++)
		if (*s == '\\')
			s++;
	return n;
}

Test(smtp_framing, smuggling_never_makes_two_messages)
{
	static const char hidden[] = "MAIL FROM:<admin@example.com>\\r\\n"
	                             "RCPT TO:<victim@example.com>\\r\\n"
	                             "DATA\\r\\n"
	                             "From: admin@example.com\\r\\n\\r\\nforged\\r\\n";

	for (size_t i = 0; i < sizeof(smuggle_cases) / sizeof(smuggle_cases[0]); i++) {
		const struct smuggle_case *c = &smuggle_cases[i];
		char text[4096], name[64];
		int n;

		snprintf(name, sizeof(name), "smuggling case %zu (%s)", i, c->end);
		n = snprintf(text, sizeof(text),
		             GREETING "C: MAIL FROM:<a@c.example>\n"
		                      "C: RCPT TO:<b@example.com>\n"
		                      "C: DATA\n"
		                      "S: 250 2.1.0 Sender OK\n"
		                      "S: 250 2.1.5 Recipient OK\n" BEGIN_MESSAGE
		                      "R: Subject: x\\r\\n\\r\\nfirst%s%s.\\r\\n\n",
		             "b@example.com", c->end, hidden);
		if (c->outcome == BARE)
			snprintf(text + n, sizeof(text) - (size_t)n,
			         "S: 421 4.5.0 Bare CR or LF in the SMTP stream; only CRLF ends a "
			         "line, closing transmission channel\n"
			         "A: MSG_ABORT\nA: CLOSE\n");
		else if (c->outcome == NUL)
			snprintf(text + n, sizeof(text) - (size_t)n,
			         "S: 554 5.6.0 Message contains NUL characters\n"
			         "A: MSG_ABORT\n"
			         "C: NOOP\nS: 250 2.0.0 OK\n");
		else {
			/* the whole is one message; the hidden commands are its text */
			char body[1024];
			snprintf(body, sizeof(body), "Subject: x\\r\\n\\r\\nfirst%s%s",
			         strstr(c->end, "..")   ? "\\r\\n.\\r\\n"
			         : strstr(c->end, " .") ? "\\r\\n .\\r\\n"
			                                : "\\r\\nx\\r\\n",
			         hidden);
			snprintf(text + n, sizeof(text) - (size_t)n,
			         "A: MSG_DATA %s\n"
			         "A: MSG_END ok ONE\n"
			         "E: size=%zu hops=0\n"
			         "S: 250 2.6.0 <ONE> Queued mail for delivery\n"
			         "C: NOOP\nS: 250 2.0.0 OK\n",
			         body, unescaped_len(body));
		}
		check_text(name, text);
	}
}

/* Exchange's TarpitInterval rule: who gets the delay on a failure reply.  Authenticated
 * (partners or exchange-servers without anonymous-users): never.  Anonymous: from IPv4
 * and global IPv6 sources, not from link-local (fe80::/10) or site-local (fec0::/10). */
static const struct tarpit_case {
	const char *groups, *client;
	bool delayed;
} tarpit_cases[] = {
        {"anonymous-users", "192.0.2.1", true},
        {"anonymous-users", "2001:db8::1", true},
        {"anonymous-users", "fe80::1", false},
        {"anonymous-users", "febf:ffff::1", false}, /* the top of fe80::/10 */
        {"anonymous-users", "fec0::1", false},      /* site-local */
        {"anonymous-users", "feff:ffff::1", false}, /* the top of fec0::/10 */
        {"anonymous-users", "fe7f:ffff::1", true},  /* just below fe80::/10 */
        {"anonymous-users", "fc00::1", true},       /* unique local: not exempt */
        {"anonymous-users", "::1", true},
        {"anonymous-users", "127.0.0.1", true},
        {"none", "192.0.2.1", true},
        {"partners", "192.0.2.1", false},
        {"exchange-servers", "192.0.2.1", false},
        {"partners, exchange-servers", "2001:db8::1", false},
        {"anonymous-users, partners", "192.0.2.1", true},
        {"anonymous-users, exchange-servers", "192.0.2.1", true},
        {"anonymous-users, exchange-servers", "fe80::2", false},
};

Test(smtp_tarpit, exchange_rule)
{
	for (size_t i = 0; i < sizeof(tarpit_cases) / sizeof(tarpit_cases[0]); i++) {
		const struct tarpit_case *c = &tarpit_cases[i];
		char text[1024], name[128];

		snprintf(name, sizeof(name), "tarpit case %zu: { %s } from %s", i, c->groups,
		         c->client);
		snprintf(text, sizeof(text),
		         "connector: tarpit-interval = 7s\n"
		         "connector: permission-groups = { %s }\n"
		         "connector: max-protocol-errors = unlimited\n"
		         "client: %s\n"
		         "S: 220 mx.example.com ESMTP ready\n"
		         "C: HELO c.example\n"
		         "S: 250 mx.example.com Hello [%s]\n"
		         "C: FOO\n"
		         "S%s: 500 5.3.3 Unrecognized command\n"
		         "C: NOOP\n"
		         "S: 250 2.0.0 OK\n",
		         c->groups, c->client, c->client, c->delayed ? "(7000ms)" : "");
		check_text(name, text);
	}
}

/* ---- the interface, driven by hand ------------------------------------------------- */

static void
put(struct smtp *s, const char *text)
{
	size_t n = strlen(text), space;
	char *p = smtp_input_space(s, &space);

	cr_assert_geq(space, n);
	memcpy(p, text, n);
	smtp_input_commit(s, n);
}

/* The next action, which must be of kind k (and, for a reply, start with text). */
static struct smtp_action
expect_action(struct smtp *s, enum smtp_kind k, const char *text)
{
	struct smtp_action a = {0};
	enum smtp_kind got = smtp_next(s, &a);

	cr_assert_eq(got, k, "action %d, expected %d (%.*s)", got, k, a.text ? (int)a.len : 0,
	             a.text ? a.text : "");
	if (text)
		cr_assert(a.len >= strlen(text) && memcmp(a.text, text, strlen(text)) == 0,
		          "got %.*s, expected %s", (int)a.len, a.text, text);
	return a;
}

/* Skips the banner and greets. */
static void
greet(struct smtp *s, const char *cmds)
{
	expect_action(s, SMTP_REPLY, "220 ");
	expect_action(s, SMTP_NONE, NULL);
	put(s, cmds);
}

Test(smtp_api, free_null_and_first_action)
{
	struct tx_session *t = tx_session_new("client: 203.0.113.9\n");

	smtp_free(NULL);
	cr_assert_not_null(t);
	cr_expect(smtp_input_paused(t->smtp), "the banner is queued: paused");
	expect_action(t->smtp, SMTP_REPLY, "220 mx.example.com ESMTP ready\r\n");
	expect_action(t->smtp, SMTP_NONE, NULL);
	cr_expect(!smtp_input_paused(t->smtp));
	cr_expect_null(smtp_helo(t->smtp));
	cr_expect(!smtp_in_tls(t->smtp) && !smtp_esmtp(t->smtp));
	put(t->smtp, "EHLO c.example\r\n");
	struct smtp_action a = expect_action(t->smtp, SMTP_REPLY, "250-mx.example.com Hello");
	cr_expect(strstr(a.text, "[203.0.113.9]") != NULL);
	cr_expect_str_eq(smtp_helo(t->smtp), "c.example");
	cr_expect(smtp_esmtp(t->smtp));
	tx_session_free(t);
}

/* An idle session holds neither its input buffer nor its text arena (4 KiB): both are
 * given back once the queue is empty, and taken again by the next command. */
Test(smtp_api, idle_session_gives_its_buffers_back)
{
	struct tx_session *t = tx_session_new("client: 203.0.113.9\n");

	cr_assert_not_null(t);
	greet(t->smtp, "EHLO c.example\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250-");
	size_t busy = heap_in_use();
	expect_action(t->smtp, SMTP_NONE, NULL);
	size_t idle = heap_in_use();
	cr_expect_geq(busy - idle, 2048 + 4096, "idle gave back %zu bytes", busy - idle);
	put(t->smtp, "NOOP\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 2.0.0");
	expect_action(t->smtp, SMTP_NONE, NULL);
	tx_session_free(t);
}

/* A daemon that read while the handshake was pending (against smtp_input_paused()) must
 * not get those bytes run: smtp_tls_done() drops them too. */
Test(smtp_api, bytes_read_during_the_handshake_are_dropped)
{
	struct tx_session *t = tx_session_new("tls: yes\nconnector: auth-mechanism = { tls }\n");

	cr_assert_not_null(t);
	greet(t->smtp, "EHLO c.example\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250-");
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "STARTTLS\r\n");
	expect_action(t->smtp, SMTP_REPLY, "220 2.0.0");
	expect_action(t->smtp, SMTP_STARTTLS, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	cr_expect(smtp_input_paused(t->smtp));
	put(t->smtp, "EHLO evil.example\r\nMAIL FROM:<evil@evil.example>\r\n");
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_tls_done(t->smtp, true);
	cr_expect(smtp_in_tls(t->smtp));
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "MAIL FROM:<a@c.example>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "503 5.5.2 Send hello first");
	tx_session_free(t);
}

/* tls-sender-certificate-name: MAIL waits for the session's verdict on the client
 * certificate, and is refused when none came (fail closed), with the refusal given, and
 * accepted once the certificate proved the tenant. */
Test(smtp_api, client_certificate_verdict_gates_mail)
{
	for (int step = 0; step < 3; step++) {
		struct tx_session *t = tx_session_new(
		        "tls: yes\nconnector: auth-mechanism = { tls }\n"
		        "connector: tls-sender-certificate-name = \"*.example.net\"\n"
		        "connector: tarpit-interval = 0s\n");
		cr_assert_not_null(t);
		greet(t->smtp, "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n");
		expect_action(t->smtp, SMTP_REPLY, "250-");
		expect_action(t->smtp, SMTP_REPLY, "451 5.7.3 Must issue a STARTTLS command first");
		expect_action(t->smtp, SMTP_NONE, NULL);
		put(t->smtp, "STARTTLS\r\n");
		expect_action(t->smtp, SMTP_REPLY, "220 2.0.0");
		expect_action(t->smtp, SMTP_STARTTLS, NULL);
		expect_action(t->smtp, SMTP_WAIT, NULL);
		if (step == 1)
			smtp_tls_peer(t->smtp, "550 5.7.1 Client certificate name mismatch: "
			                       "presented a.example.org");
		else if (step == 2)
			smtp_tls_peer(t->smtp, NULL);
		smtp_tls_done(t->smtp, true);
		expect_action(t->smtp, SMTP_NONE, NULL);
		put(t->smtp, "EHLO c.example\r\nMAIL FROM:<a@c.example>\r\n");
		expect_action(t->smtp, SMTP_REPLY, "250-");
		expect_action(t->smtp, SMTP_REPLY,
		              step == 0   ? "530 5.7.1 Client was not authenticated"
		              : step == 1 ? "550 5.7.1 Client certificate name mismatch: presented "
		                            "a.example.org\r\n"
		                          : "250 2.1.0");
		tx_session_free(t);
	}
}

static void
to_data(struct smtp *s)
{
	greet(s,
	      "HELO c.example\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
	expect_action(s, SMTP_REPLY, "250 ");
	expect_action(s, SMTP_REPLY, "250 2.1.0");
	expect_action(s, SMTP_REPLY, "250 2.1.5");
	expect_action(s, SMTP_MSG_BEGIN, NULL);
	cr_expect(smtp_input_paused(s), "no input while the message is being opened");
	expect_action(s, SMTP_WAIT, NULL);
	smtp_msg_begun(s, true);
	expect_action(s, SMTP_REPLY, "354 ");
	expect_action(s, SMTP_NONE, NULL);
}

/* The replies the metrics count as refused transactions are marked: answers to MAIL, RCPT,
 * DATA and the end of data (and a failed commit), never the banner, EHLO or other
 * commands. */
Test(smtp_api, transaction_replies_are_marked)
{
	struct tx_session *t = tx_session_new("");
	struct smtp_action a;

	cr_assert_not_null(t);
	a = expect_action(t->smtp, SMTP_REPLY, "220 ");
	cr_expect(!a.transaction);
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "EHLO c.example\r\n");
	cr_expect(!expect_action(t->smtp, SMTP_REPLY, "250-").transaction);
	put(t->smtp, "MAIL FROM:<a@c.example>\r\n");
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "250 2.1.0").transaction);
	put(t->smtp, "RCPT TO:<x@elsewhere.example>\r\n");
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "550 ").transaction);
	cr_expect(!expect_action(t->smtp, SMTP_LOG, NULL).transaction); /* relay denied */
	put(t->smtp, "NOOP\r\n");
	cr_expect(!expect_action(t->smtp, SMTP_REPLY, "250 ").transaction);
	put(t->smtp, "FOO\r\n");
	cr_expect(!expect_action(t->smtp, SMTP_REPLY, "500 ").transaction);
	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "250 2.1.5").transaction);
	put(t->smtp, "DATA\r\n");
	expect_action(t->smtp, SMTP_MSG_BEGIN, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_msg_begun(t->smtp, true);
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "354 ").transaction);
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "Subject: x\r\n\r\nbody\r\n.\r\n");
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	expect_action(t->smtp, SMTP_MSG_END, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_msg_committed(t->smtp, false, NULL);
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "452 4.3.1").transaction);
	put(t->smtp, "QUIT\r\n");
	cr_expect(!expect_action(t->smtp, SMTP_REPLY, "221 ").transaction);
	tx_session_free(t);
}

/* A timeout while the daemon commits waits for the commit's outcome: a 421 for a message
 * that commits anyway makes the sender send it again, a duplicate.  The 250 goes first,
 * then the 421; no MSG_ABORT follows the MSG_END (the commit is the daemon's to finish). */
Test(smtp_api, timeout_while_committing)
{
	struct tx_session *t = tx_session_new("connector: tarpit-interval = 5s\n");

	cr_assert_not_null(t);
	to_data(t->smtp);
	put(t->smtp, "Subject: x\r\n\r\nbody\r\n.\r\n");
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	expect_action(t->smtp, SMTP_MSG_END, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_SESSION);
	expect_action(t->smtp, SMTP_WAIT, NULL); /* nothing before the commit's outcome */
	smtp_timeout(t->smtp, SMTP_TIMEOUT_IDLE);
	smtp_shutdown(t->smtp);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	cr_expect(smtp_input_paused(t->smtp));
	smtp_msg_committed(t->smtp, true, "Q1");
	expect_action(t->smtp, SMTP_REPLY, "250 2.6.0 <Q1> Queued mail for delivery\r\n");
	struct smtp_action a = expect_action(t->smtp, SMTP_LOG, NULL);
	cr_expect(strstr(a.text, "session timeout while the message was being committed") != NULL,
	          "%s", a.text);
	a = expect_action(t->smtp, SMTP_REPLY, "421 4.4.1 Connection timed out\r\n");
	cr_expect_eq(a.delay_ms, 0u);
	expect_action(t->smtp, SMTP_CLOSE, NULL);
	smtp_msg_committed(t->smtp, true, "LATE"); /* closed: nothing more */
	for (int i = 0; i < 3; i++)
		expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_IDLE);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	tx_session_free(t);
}

/* A failed commit after a timeout: its 452 is not tarpitted, the session closes next. */
Test(smtp_api, timeout_while_a_commit_fails)
{
	struct tx_session *t = tx_session_new("connector: tarpit-interval = 5s\n");

	cr_assert_not_null(t);
	to_data(t->smtp);
	put(t->smtp, "body\r\n.\r\n");
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	expect_action(t->smtp, SMTP_MSG_END, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_IDLE);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_msg_committed(t->smtp, false, NULL);
	struct smtp_action a = expect_action(t->smtp, SMTP_REPLY, "452 4.3.1");
	cr_expect_eq(a.delay_ms, 0u);
	expect_action(t->smtp, SMTP_LOG, "idle timeout while the message was being committed");
	a = expect_action(t->smtp, SMTP_REPLY, "451 4.7.0 Timeout waiting for client input");
	cr_expect_eq(a.delay_ms, 0u);
	expect_action(t->smtp, SMTP_CLOSE, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	tx_session_free(t);
}

/* A timeout while actions of a step are still queued: they go out first, in order, then
 * the goodbye as a step of its own; the text still buffered is never run. */
Test(smtp_api, timeout_while_actions_are_queued)
{
	struct tx_session *t = tx_session_new("");
	size_t space, n = 0, data = 0;

	cr_assert_not_null(t);
	to_data(t->smtp);
	char *p = smtp_input_space(t->smtp, &space);
	for (int i = 0; i < 20; i++) { /* a run ended by a stuffed dot line: one MSG_DATA each */
		memcpy(p + n, "a\r\n.b\r\n", 8);
		n += 8;
	}
	smtp_input_commit(t->smtp, n);
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_SESSION);
	cr_expect(smtp_input_paused(t->smtp));
	struct smtp_action a;
	enum smtp_kind k;
	while ((k = smtp_next(t->smtp, &a)) == SMTP_MSG_DATA)
		data++;
	cr_expect_gt(data, 5u, "the step's queued text went out first");
	cr_expect_lt(data, 18u, "no further step ran");
	cr_assert_eq(k, SMTP_REPLY);
	cr_expect(a.len > 9 && memcmp(a.text, "421 4.4.1", 9) == 0);
	expect_action(t->smtp, SMTP_MSG_ABORT, NULL);
	expect_action(t->smtp, SMTP_CLOSE, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	tx_session_free(t);
}

/* The session freed in the middle of a message (the daemon drops a connection). */
Test(smtp_api, free_in_the_middle_of_a_message)
{
	struct tx_session *t = tx_session_new("");

	cr_assert_not_null(t);
	to_data(t->smtp);
	put(t->smtp, "Subject: x\r\n\r\npartial li");
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	const struct smtp_envelope *e = smtp_envelope(t->smtp);
	cr_expect_str_eq(e->mail_from, "a@c.example");
	cr_expect_eq(e->n_rcpts, 1u);
	tx_session_free(t);
}

/* Thousands of pipelined commands in reads as large as the core allows: every one is
 * answered, in order, and the input never stalls. */
Test(smtp_api, long_pipeline)
{
	struct tx_session *t = tx_session_new("");
	size_t sent = 0, answered = 0, total = 5000;
	char cmd[32];

	cr_assert_not_null(t);
	greet(t->smtp, "");
	while (answered < total) {
		struct smtp_action a;
		enum smtp_kind k;
		while ((k = smtp_next(t->smtp, &a)) == SMTP_REPLY) {
			snprintf(cmd, sizeof(cmd), "250 2.0.0 OK\r\n");
			cr_assert(a.len == strlen(cmd) && memcmp(a.text, cmd, a.len) == 0);
			answered++;
		}
		cr_assert_eq(k, SMTP_NONE);
		cr_assert(!smtp_input_paused(t->smtp));
		size_t space;
		char *p = smtp_input_space(t->smtp, &space);
		size_t n = 0;
		cr_assert_gt(space, 0u);
		while (sent < total && n + 6 <= space) {
			memcpy(p + n, "NOOP\r\n", 6);
			n += 6;
			sent++;
		}
		if (n == 0 && sent == total && answered < total)
			cr_assert_fail("%zu commands sent, %zu answered", sent, answered);
		smtp_input_commit(t->smtp, n);
	}
	tx_session_free(t);
}

/* protocol-logging-level verbose logs each command, but never an AUTH argument: it is a
 * credential even though AUTH is refused (docs/STYLE.md habit 10). */
Test(smtp_api, verbose_log_hides_credentials)
{
	struct tx_session *t = tx_session_new("connector: protocol-logging-level = verbose\n");
	char logs[4096] = "";
	struct smtp_action a;
	enum smtp_kind k;

	cr_assert_not_null(t);
	greet(t->smtp, "NOOP hello\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nauth login\r\n");
	while ((k = smtp_next(t->smtp, &a)) != SMTP_NONE) {
		cr_assert_neq(k, SMTP_WAIT);
		if (k == SMTP_COMMAND)
			snprintf(logs + strlen(logs), sizeof(logs) - strlen(logs), "< %.*s\n",
			         (int)a.len, a.text);
	}
	cr_expect(strstr(logs, "< NOOP hello\n") != NULL, "%s", logs);
	cr_expect(strstr(logs, "AGFsaWNlAHNlY3JldA==") == NULL, "a credential was logged:\n%s",
	          logs);
	cr_expect(strstr(logs, "< AUTH") != NULL, "%s", logs);
	cr_expect(strstr(logs, "< auth") != NULL, "%s", logs);
	tx_session_free(t);
}

/* ---- the fixed queue and text arena: nothing is lost in silence ---------------------- */

/* A session on the transcript base config whose policy differs as set (for values
 * config.c would refuse, as a caller that builds its own policy could pass). */
struct raw_session {
	struct tx_session *t;
	struct smtp_policy pol;
	struct smtp *smtp;
};

static void
raw_open(struct raw_session *r, const char *banner, const char *fqdn)
{
	r->t = tx_session_new("");
	cr_assert_not_null(r->t);
	r->pol = r->t->policy;
	if (banner)
		r->pol.banner = banner;
	if (fqdn)
		r->pol.fqdn = fqdn;
	struct smtp_params prm = {.policy = &r->pol, .client_ip = "192.0.2.1"};
	r->smtp = smtp_new(&prm);
	cr_assert_not_null(r->smtp);
}

static void
raw_close(struct raw_session *r)
{
	smtp_free(r->smtp);
	tx_session_free(r->t);
}

/* The loud end: 421 4.3.0, an error log line naming the limit, CLOSE, then nothing. */
static void
expect_internal_limit(struct smtp *s, const char *what)
{
	expect_action(s, SMTP_REPLY,
	              "421 4.3.0 Internal server limit reached, closing transmission channel\r\n");
	struct smtp_action a = expect_action(s, SMTP_LOG, NULL);
	cr_expect_eq(a.level, LOG_LVL_ERROR);
	cr_expect(strstr(a.text, what) != NULL && strstr(a.text, "421 4.3.0") != NULL, "%s",
	          a.text);
	expect_action(s, SMTP_CLOSE, NULL);
	expect_action(s, SMTP_WAIT, NULL);
	cr_expect(smtp_input_paused(s));
}

static char *
repeat(char c, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	char *p = malloc(pl + n + 1);

	cr_assert_not_null(p);
	memcpy(p, prefix, pl);
	memset(p + pl, c, n);
	p[pl + n] = '\0';
	return p;
}

/* A banner larger than the arena was dropped: the client waited for a greeting that
 * never came. */
Test(smtp_limits, banner_larger_than_the_arena)
{
	struct raw_session r;
	char *banner = repeat('b', 5000, "220 ");

	raw_open(&r, banner, NULL);
	expect_internal_limit(r.smtp, "banner");
	raw_close(&r);
	free(banner);
}

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with CRLF. */
Test(smtp_limits, banner_longer_than_a_reply_line)
{
	struct raw_session r;
	char *ok = repeat('b', 510 - 4, "220 "), *over = repeat('b', 511 - 4, "220 ");

	raw_open(&r, ok, NULL);
	struct smtp_action a = expect_action(r.smtp, SMTP_REPLY, "220 bbb");
	cr_expect_eq(a.len, 512u);
	raw_close(&r);
	raw_open(&r, over, NULL);
	expect_internal_limit(r.smtp, "banner");
	raw_close(&r);
	free(ok);
	free(over);
}

/* An EHLO reply over its buffer was dropped: EHLO went unanswered. */
Test(smtp_limits, ehlo_reply_over_its_bound)
{
	struct raw_session r;
	char *fqdn = repeat('h', 1100, "mx.");

	raw_open(&r, NULL, fqdn);
	greet(r.smtp, "EHLO c.example\r\nNOOP\r\n");
	expect_internal_limit(r.smtp, "EHLO");
	raw_close(&r);
	free(fqdn);
}

/* A HELO reply over the reply buffer was cut short, its "Hello" lost. */
Test(smtp_limits, helo_reply_over_a_line)
{
	struct raw_session r;
	char *fqdn = repeat('h', 700, "mx.");

	raw_open(&r, NULL, fqdn);
	greet(r.smtp, "HELO c.example\r\n");
	expect_internal_limit(r.smtp, "reply line");
	raw_close(&r);
	free(fqdn);
}

/* The queue id is the daemon's; the reply shows at most 64 characters of it. */
Test(smtp_limits, queue_id_is_shown_cut)
{
	struct tx_session *t = tx_session_new("");
	char *id = repeat('Q', 300, "");

	cr_assert_not_null(t);
	to_data(t->smtp);
	put(t->smtp, "x\r\n.\r\n");
	expect_action(t->smtp, SMTP_MSG_DATA, NULL);
	expect_action(t->smtp, SMTP_MSG_END, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_msg_committed(t->smtp, true, id);
	struct smtp_action a = expect_action(t->smtp, SMTP_REPLY, "250 2.6.0 <QQQ");
	cr_expect_eq(a.len, strlen("250 2.6.0 <> Queued mail for delivery\r\n") + 64);
	tx_session_free(t);
	free(id);
}

/* The largest replies and log lines config.c allows (a 253-character fqdn, a 510-character
 * banner, verbose protocol logging, addresses at their limits), thousands of pipelined
 * commands of every kind in reads as large as the core takes: every command gets exactly
 * one reply, in order, and the session never ends on an internal limit. */
Test(smtp_limits, every_command_answered_at_the_largest_settings)
{
	char setup[2048], mail[600], rcpt_far[600];
	char *banner = repeat('b', 506, "220 "), *long_line = repeat('x', 700, "NOOP ");
	char domain[256], *label = repeat('d', 63, ""), *local = repeat('l', 64, "");

	snprintf(domain, sizeof(domain), "%s.%s.%s.%.61s", label, label, label, label);
	cr_assert_eq(strlen(domain), 253u);
	cr_assert_eq(strlen(local), 64u);
	snprintf(setup, sizeof(setup),
	         "connector: fqdn = \"%s\"\n"
	         "connector: banner = \"%s\"\n"
	         "connector: protocol-logging-level = verbose\n"
	         "connector: max-protocol-errors = unlimited\n"
	         "connector: tarpit-interval = 5s\n",
	         domain, banner);
	struct tx_session *t = tx_session_new(setup);
	cr_assert_not_null(t);
	snprintf(mail, sizeof(mail), "MAIL FROM:<%s@%s> SIZE=1000 BODY=8BITMIME\r\n", local,
	         domain);
	snprintf(rcpt_far, sizeof(rcpt_far), "RCPT TO:<%s@%s>\r\n", local, domain);
	long_line[strlen(long_line) - 2] = '\r'; /* refused without being run */
	long_line[strlen(long_line) - 1] = '\n';
	const char *cmds[] = {"EHLO c.example\r\n",
	                      mail,
	                      rcpt_far,
	                      "RCPT TO:<b@example.com>\r\n",
	                      "HELP\r\n",
	                      "VRFY someone\r\n",
	                      "NOOP\r\n",
	                      "RSET\r\n",
	                      "FOO bar\r\n",
	                      "HELO c.example\r\n",
	                      long_line,
	                      "MAIL FROM:<bad\r\n",
	                      "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	                      "DATA\r\n"};
	size_t n_cmds = sizeof(cmds) / sizeof(cmds[0]);
	size_t sent = 0, answered = 0, total = 3000, pending = 0;
	struct smtp_action a;
	enum smtp_kind k;

	expect_action(t->smtp, SMTP_REPLY, "220 bbb");
	while (answered < total) {
		while ((k = smtp_next(t->smtp, &a)) != SMTP_NONE) {
			cr_assert(k == SMTP_REPLY || k == SMTP_LOG || k == SMTP_COMMAND,
			          "action %d", k);
			if (k == SMTP_LOG || k == SMTP_COMMAND) {
				cr_assert(a.len > 0 && a.len <= 512, "log line of %zu", a.len);
				continue;
			}
			cr_assert(memcmp(a.text, "421", 3) != 0, "%.*s", (int)a.len, a.text);
			answered++;
			pending--;
		}
		size_t space;
		char *p = smtp_input_space(t->smtp, &space);
		size_t n = 0;
		cr_assert(!smtp_input_paused(t->smtp));
		while (sent < total) {
			const char *c = cmds[sent % n_cmds];
			size_t cl = strlen(c);
			if (n + cl > space)
				break;
			memcpy(p + n, c, cl);
			n += cl;
			sent++;
			pending++;
		}
		if (n == 0 && pending > 0 && sent == total)
			cr_assert_fail("%zu commands sent, %zu answered", sent, answered);
		smtp_input_commit(t->smtp, n);
	}
	cr_expect_eq(answered, total);
	tx_session_free(t);
	free(label);
	free(local);
	free(banner);
	free(long_line);
}

/* remote-hostname-suffixes (policy mail_check): a MAIL that passes the core's checks
 * waits for the daemon's verdict; a refusal is sent as given and leaves no sender; a
 * timeout during the check ends the session at once. */
Test(smtp_api, mail_check_waits_for_the_verdict)
{
	struct tx_session *t =
	        tx_session_new("connector: remote-hostname-suffixes = { \"pphosted.com\" }\n");
	struct smtp_action a;

	cr_assert_not_null(t);
	greet(t->smtp, "EHLO c.example\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250-");
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "MAIL FROM:<a@c.example>\r\nRCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_MAILCHECK, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	cr_expect(smtp_input_paused(t->smtp), "no command runs while the check runs");
	smtp_mail_checked(t->smtp, "550 5.7.1 Reverse DNS name x.example of [192.0.2.1] does not "
	                           "resolve back to it (not forward-confirmed)");
	a = expect_action(t->smtp, SMTP_REPLY, "550 5.7.1 Reverse DNS name x.example");
	cr_expect(a.transaction);
	cr_expect(a.text[a.len - 2] == '\r' && a.text[a.len - 1] == '\n');
	expect_action(t->smtp, SMTP_REPLY, "503 5.5.1 Need MAIL command");
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "MAIL FROM:<a@c.example>\r\n");
	expect_action(t->smtp, SMTP_MAILCHECK, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_mail_checked(t->smtp, NULL);
	cr_expect(expect_action(t->smtp, SMTP_REPLY, "250 2.1.0 Sender OK").transaction);
	smtp_mail_checked(t->smtp, NULL); /* not waiting: ignored */
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.5");
	tx_session_free(t);
}

Test(smtp_api, timeout_during_mail_check)
{
	struct tx_session *t =
	        tx_session_new("connector: remote-hostname-suffixes = { \"pphosted.com\" }\n");

	cr_assert_not_null(t);
	greet(t->smtp, "HELO c.example\r\nMAIL FROM:<a@c.example>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 ");
	expect_action(t->smtp, SMTP_MAILCHECK, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_IDLE);
	expect_action(t->smtp, SMTP_REPLY, "451 4.7.0");
	expect_action(t->smtp, SMTP_CLOSE, NULL);
	smtp_mail_checked(t->smtp, NULL); /* too late: ignored */
	expect_action(t->smtp, SMTP_WAIT, NULL);
	tx_session_free(t);
}

/* Without remote-hostname-suffixes no check is asked for. */
Test(smtp_api, no_mail_check_without_suffixes)
{
	struct tx_session *t = tx_session_new("");

	cr_assert_not_null(t);
	greet(t->smtp, "HELO c.example\r\nMAIL FROM:<a@c.example>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 ");
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.0");
	tx_session_free(t);
}

/* The message-id of the accepted message's log line: the first Message-ID: header's first
 * word, case-insensitive, found on a folded line too, bytes other than printable ASCII as
 * '?', none in the body, at most SMTP_MSGID_MAX bytes; "" without one. */
static const char *
message_id_of(const char *text)
{
	static char got[SMTP_MSGID_MAX + 1];
	struct tx_session *t = tx_session_new("");
	struct smtp_action a;

	cr_assert_not_null(t);
	to_data(t->smtp);
	put(t->smtp, text);
	put(t->smtp, "\r\n.\r\n");
	while (smtp_next(t->smtp, &a) != SMTP_MSG_END)
		;
	snprintf(got, sizeof(got), "%s", smtp_envelope(t->smtp)->message_id);
	tx_session_free(t);
	return got;
}

Test(smtp_api, message_id_for_the_log)
{
	cr_expect_str_eq(message_id_of("Subject: x\r\nMessage-ID: <a.1@b.example>\r\n\r\nhi"),
	                 "<a.1@b.example>");
	cr_expect_str_eq(message_id_of("message-id:\r\n\t<f@b.example> (c)\r\nX: y\r\n\r\nhi"),
	                 "<f@b.example>");
	cr_expect_str_eq(message_id_of("Message-ID: <\x01\xc3\xa9@b>\r\nMessage-ID: <2@b>\r\n\r\n"),
	                 "<???@b>");
	cr_expect_str_eq(message_id_of("Subject: x\r\n\r\nMessage-ID: <body@b>"), "");
	cr_expect_str_eq(message_id_of("Message-ID:\r\nSubject: <not@it>\r\n\r\n"), "");
	char big[400];
	snprintf(big, sizeof(big), "Message-ID: <%0300d>\r\n\r\n", 0);
	cr_expect_eq(strlen(message_id_of(big)), (size_t)SMTP_MSGID_MAX);
}

/* ---- recipient verification (policy verify_recipients) ------------------------------- */

static struct tx_session *
verify_session(void)
{
	struct tx_session *t = tx_session_new("connector: tarpit-interval = 0s\n");

	cr_assert_not_null(t);
	t->policy.verify_recipients = true;
	smtp_free(t->smtp);
	struct smtp_params prm = {.policy = &t->policy, .client_ip = "192.0.2.1"};
	cr_assert_not_null(t->smtp = smtp_new(&prm));
	greet(t->smtp, "HELO c.example\r\nMAIL FROM:<a@c.example>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 ");
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.0");
	expect_action(t->smtp, SMTP_NONE, NULL);
	return t;
}

/* RCPT waits for the answer; commands pipelined behind it wait too, in order. */
Test(smtp_verify, known_recipient_waits_for_the_answer)
{
	struct tx_session *t = verify_session();

	put(t->smtp, "RCPT TO:<B@Example.COM>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n");
	struct smtp_action a = expect_action(t->smtp, SMTP_RCPT_VERIFY, "B@example.com");
	cr_expect_eq(a.len, strlen("B@example.com"));
	expect_action(t->smtp, SMTP_WAIT, NULL);
	cr_expect(smtp_input_paused(t->smtp));
	smtp_msg_committed(t->smtp, true, "X"); /* another request's answer: ignored */
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_OK, NULL);
	a = expect_action(t->smtp, SMTP_REPLY, "250 2.1.5 Recipient OK\r\n");
	cr_expect(a.transaction);
	expect_action(t->smtp, SMTP_RCPT_VERIFY, "c@example.com");
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_UNKNOWN,
	                   "5.1.1 <c@example.com>: Recipient address rejected: User\r\nunknown");
	a = expect_action(
	        t->smtp, SMTP_REPLY,
	        "550 5.1.1 <c@example.com>: Recipient address rejected: User??unknown\r\n");
	cr_expect(a.transaction);
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_OK, NULL); /* not asked: ignored */
	expect_action(t->smtp, SMTP_MSG_BEGIN, NULL);
	cr_expect_eq(smtp_envelope(t->smtp)->n_rcpts, 1u);
	cr_expect_str_eq(smtp_envelope(t->smtp)->rcpts[0].addr, "B@example.com");
	tx_session_free(t);
}

Test(smtp_verify, unavailable_and_unknown_without_text)
{
	struct tx_session *t = verify_session();

	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_RCPT_VERIFY, "b@example.com");
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_UNAVAILABLE, "ignored");
	expect_action(t->smtp, SMTP_REPLY,
	              "450 4.4.3 Recipient verification unavailable, try again later\r\n");
	expect_action(t->smtp, SMTP_NONE, NULL);
	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_RCPT_VERIFY, "b@example.com");
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_UNKNOWN, "");
	expect_action(t->smtp, SMTP_REPLY, "550 5.1.1 User unknown\r\n");
	put(t->smtp, "DATA\r\n");
	expect_action(t->smtp, SMTP_REPLY, "503 5.5.2 Need rcpt command");
	tx_session_free(t);
}

/* Postmaster (RFC 5321 §4.5.1) and refused recipients are never asked about. */
Test(smtp_verify, postmaster_and_refused_are_not_asked)
{
	struct tx_session *t = verify_session();

	put(t->smtp, "RCPT TO:<postmaster@example.com>\r\nRCPT TO:<x@elsewhere.example>\r\n"
	             "RCPT TO:<postmaster>\r\n");
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.5");
	expect_action(t->smtp, SMTP_REPLY, "550 5.7.54");
	expect_action(t->smtp, SMTP_LOG, "relay denied");
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.5");
	expect_action(t->smtp, SMTP_NONE, NULL);
	tx_session_free(t);
}

/* A timeout while the recipient is verified waits for the answer, then ends the session. */
Test(smtp_verify, timeout_while_verifying)
{
	struct tx_session *t = verify_session();

	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_RCPT_VERIFY, NULL);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_timeout(t->smtp, SMTP_TIMEOUT_SESSION);
	expect_action(t->smtp, SMTP_WAIT, NULL);
	smtp_rcpt_verified(t->smtp, SMTP_VERIFY_OK, NULL);
	expect_action(t->smtp, SMTP_REPLY, "250 2.1.5");
	expect_action(t->smtp, SMTP_LOG, "session timeout while the recipient was being verified");
	expect_action(t->smtp, SMTP_REPLY, "421 4.4.1");
	expect_action(t->smtp, SMTP_CLOSE, NULL);
	tx_session_free(t);
}

/* Freed while a recipient is being verified: nothing leaks (ASan). */
Test(smtp_verify, free_while_verifying)
{
	struct tx_session *t = verify_session();

	put(t->smtp, "RCPT TO:<b@example.com>\r\n");
	expect_action(t->smtp, SMTP_RCPT_VERIFY, NULL);
	tx_session_free(t);
}
