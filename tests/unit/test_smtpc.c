/* Unit tests: the SMTP client's reply parser (RFC 5321 §4.2), whole, byte by byte and
 * split at every point, and the dot-stuffing data writer over a socketpair. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/smtpc.h"

/* Feeds in as chunks cut at split (0: whole) and writes each reply as "CODE|line|line;"
 * into out; returns the parser's error, or "" when every byte made whole replies. */
static const char *
run(const char *in, size_t split, char *out, size_t size)
{
	static struct smtpc_parser p;
	size_t len = strlen(in), off = 0, o = 0;

	smtpc_parser_init(&p);
	out[0] = '\0';
	while (off < len) {
		size_t end = split && off < split && split < len ? split : len;
		size_t n = end - off, used;
		char *chunk = malloc(n); /* exactly the chunk: ASan catches a read past it */
		cr_assert_not_null(chunk);
		memcpy(chunk, in + off, n);
		size_t coff = 0;
		while (coff < n) {
			enum smtpc_ev ev = smtpc_parse(&p, chunk + coff, n - coff, &used);
			coff += used;
			if (ev == SMTPC_BAD) {
				free(chunk);
				return p.error;
			}
			if (ev == SMTPC_MORE)
				break;
			if (p.lines == 1)
				o += (size_t)snprintf(out + o, size - o, "%d", p.code);
			o += (size_t)snprintf(out + o, size - o, "|%s%s", p.line,
			                      ev == SMTPC_REPLY ? ";" : "");
		}
		cr_assert_eq(coff, n);
		free(chunk);
		off = end;
	}
	return (!p.complete && p.len) || (p.lines && !p.done) ? "incomplete" : "";
}

static void
check(const char *in, const char *want_out, const char *want_err)
{
	char out[4096], ref[4096];
	const char *err = run(in, 0, ref, sizeof(ref));

	cr_assert(strstr(err, want_err) != NULL && (*want_err || !*err), "%s: error '%s'", in, err);
	if (!*want_err)
		cr_assert_str_eq(ref, want_out, "%s", in);
	for (size_t split = 1; split < strlen(in); split++) {
		err = run(in, split, out, sizeof(out));
		cr_assert(strstr(err, want_err) != NULL && (*want_err || !*err),
		          "%s split at %zu: error '%s'", in, split, err);
		if (!*want_err)
			cr_assert_str_eq(out, ref, "%s split at %zu", in, split);
	}
}

Test(smtpc, well_formed_replies)
{
	check("220 mx.example ESMTP\r\n", "220|220 mx.example ESMTP;", "");
	check("220\r\n", "220|220;", "");
	check("250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
	      "250|250-mx|250-PIPELINING|250 SIZE 100;", "");
	check("250-\r\n250 \r\n", "250|250-|250 ;", "");
	check("250 ok\r\n354 go\r\n", "250|250 ok;354|354 go;", "");
	check("250 tab\there \xc3\xa9t\xc3\xa9\r\n", "250|250 tab\there \xc3\xa9t\xc3\xa9;", "");
	check("559 last code\r\n", "559|559 last code;", "");
}

Test(smtpc, malformed_replies)
{
	check("220 ok\n", "", "lines must end in CRLF");
	check("220 a\rb\r\n", "", "lines must end in CRLF");
	check("22O ok\r\n", "", "must start with a code");
	check("600 no\r\n", "", "must start with a code");
	check("260 no\r\n", "", "must start with a code");
	check("199 no\r\n", "", "must start with a code");
	check("25\r\n", "", "must start with a code");
	check("\r\n", "", "must start with a code");
	check("220ok\r\n", "", "followed by a space");
	check("220-one\r\n250 two\r\n", "", "changes its code from 220 to 250");
	check("220 bell\x07\r\n", "", "control character 0x07");
	check("220 del\x7f\r\n", "", "control character 0x7f");
}

Test(smtpc, line_and_reply_limits)
{
	char line[SMTPC_LINE_MAX + 8], many[(SMTPC_LINES_MAX + 1) * 8 + 1], out[8192];

	/* 512 octets with the CRLF is the longest line; 513 is too long */
	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	memcpy(line + SMTPC_LINE_MAX - 2, "\r\n", 3);
	cr_assert_str_eq(run(line, 0, out, sizeof(out)), "");
	memset(line, 'x', sizeof(line));
	memcpy(line, "250 ", 4);
	memcpy(line + SMTPC_LINE_MAX - 1, "\r\n", 3);
	cr_assert(strstr(run(line, 0, out, sizeof(out)), "longer than 512 octets"));

	/* SMTPC_LINES_MAX lines make a reply; one more is refused */
	size_t o = 0;
	for (int i = 0; i < SMTPC_LINES_MAX - 1; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "250-x\r\n");
	snprintf(many + o, sizeof(many) - o, "250 x\r\n");
	cr_assert_str_eq(run(many, 0, out, sizeof(out)), "");
	o = 0;
	for (int i = 0; i < SMTPC_LINES_MAX; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "250-x\r\n");
	snprintf(many + o, sizeof(many) - o, "250 x\r\n");
	cr_assert(strstr(run(many, 0, out, sizeof(out)), "more than 100 lines"));
}

Test(smtpc, parser_stays_failed)
{
	struct smtpc_parser p;
	size_t used;

	smtpc_parser_init(&p);
	cr_assert_eq(smtpc_parse(&p, "xx\r\n", 4, &used), SMTPC_BAD);
	cr_assert_eq(smtpc_parse(&p, "250 ok\r\n", 8, &used), SMTPC_BAD);
	cr_assert_eq(used, 0);
}

/* ---- the client over a socketpair ---------------------------------------------------- */

static void
pair(struct smtpc *c, int *peer)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	smtpc_init(c, 5000);
	c->t.fd = sv[0];
	/* the transport's plain functions, as transport_socket() sets them */
	struct transport tmp;
	transport_init(&tmp, 5000);
	cr_assert_eq(transport_socket(&tmp, AF_UNIX, NULL, 0), 0);
	c->t.read = tmp.read;
	c->t.write = tmp.write;
	transport_close(&tmp);
	*peer = sv[1];
}

static size_t
drain(int fd, char *buf, size_t size)
{
	size_t n = 0;
	ssize_t r;

	while (n < size && (r = read(fd, buf + n, size - n)) > 0)
		n += (size_t)r;
	return n;
}

Test(smtpc, data_writer_dot_stuffs_and_ends_the_text)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	        {"a\r\n", "a\r\n.\r\n"},
	        {".a\r\n..b\r\nc.\r\n", "..a\r\n...b\r\nc.\r\n.\r\n"},
	        {"no end", "no end\r\n.\r\n"},
	        {"", ".\r\n"},
	        {"x\r\n.", "x\r\n..\r\n.\r\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* whole, and one byte at a time: the line state crosses the writes */
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			struct smtpc c;
			int peer;
			char got[256];
			size_t len = strlen(cases[i].in);

			pair(&c, &peer);
			cr_assert_eq(smtpc_data_begin(&c), 0);
			if (bytewise)
				for (size_t k = 0; k < len; k++)
					cr_assert_eq(smtpc_data_write(&c, cases[i].in + k, 1), 0);
			else
				cr_assert_eq(smtpc_data_write(&c, cases[i].in, len), 0);
			cr_assert_eq(smtpc_data_end(&c), 0);
			smtpc_release(&c);
			size_t n = drain(peer, got, sizeof(got) - 1);
			got[n] = '\0';
			cr_assert_str_eq(got, cases[i].want, "case %zu bytewise %d", i, bytewise);
			close(peer);
		}
	}
}

Test(smtpc, ehlo_collects_extensions_and_falls_back_to_helo)
{
	struct smtpc c;
	struct smtpc_reply r;
	int peer;
	char got[512];
	const char *ehlo = "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n"
	                   "250 STARTTLS\r\n";

	pair(&c, &peer);
	cr_assert_eq(write(peer, ehlo, strlen(ehlo)), (ssize_t)strlen(ehlo));
	cr_assert_eq(smtpc_ehlo(&c, "me.example", &r), 0);
	cr_assert_eq(r.code, 250);
	cr_assert_str_eq(r.text, "mx.example");
	cr_assert(c.pipelining && c.eightbit && c.starttls && !c.smtputf8);
	cr_assert_eq(c.size_limit, 1000);
	smtpc_release(&c);
	close(peer);

	/* an old server refuses EHLO with 502: HELO, and no extensions */
	pair(&c, &peer);
	const char *old = "502 what\r\n250 old\r\n";
	cr_assert_eq(write(peer, old, strlen(old)), (ssize_t)strlen(old));
	cr_assert_eq(smtpc_ehlo(&c, "me.example", &r), 0);
	cr_assert_eq(r.code, 250);
	cr_assert(!c.pipelining && !c.starttls);
	size_t n = drain(peer, got, sizeof(got) - 1);
	got[n] = '\0';
	cr_assert_str_eq(got, "EHLO me.example\r\nHELO me.example\r\n");
	smtpc_release(&c);
	close(peer);

	/* any other refusal is the answer: no HELO */
	pair(&c, &peer);
	cr_assert_eq(write(peer, "554 no\r\n", 8), 8);
	cr_assert_eq(smtpc_ehlo(&c, "me.example", &r), 0);
	cr_assert_eq(r.code, 554);
	smtpc_release(&c);
	n = drain(peer, got, sizeof(got) - 1);
	got[n] = '\0';
	cr_assert_str_eq(got, "EHLO me.example\r\n");
	close(peer);
}

Test(smtpc, closed_and_malformed_are_told_apart)
{
	struct smtpc c;
	struct smtpc_reply r;
	int peer;

	pair(&c, &peer);
	cr_assert_eq(write(peer, "250-half\r\n", 10), 10);
	close(peer);
	cr_assert_eq(smtpc_read_reply(&c, &r), -1);
	cr_assert_eq(c.fail, SMTPC_CLOSED);
	cr_assert(strstr(c.why, "in the middle of a reply"));
	smtpc_release(&c);

	pair(&c, &peer);
	cr_assert_eq(write(peer, "250 ok\n", 7), 7);
	cr_assert_eq(smtpc_read_reply(&c, &r), -1);
	cr_assert_eq(c.fail, SMTPC_MALFORMED);
	smtpc_release(&c);
	close(peer);
}
