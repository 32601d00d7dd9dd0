"""Protocol security of the real daemon, with raw sockets from chosen loopback sources:
SMTP smuggling (every smtpsmug end-of-data variant, bare CR/LF), STARTTLS command
injection, open-relay tricks, text pipelined behind DATA, and Maildir paths built from
client-chosen local parts.

"Nothing delivered" is shown with a barrier message (helpers_security.deliver_barrier):
it is sent after the attack and waited for, so whatever the attack got queued would be
in the Maildirs and the log by then.
"""
import os
import time

import pytest

from daemon import ALLOWED, message
from helpers_security import (THIRD, assert_only_barriers_delivered, connector,
                              deliver_barrier, expect, expect_close, mail_files,
                              queued_lines, read_to_close, send_message, session, start)

BARE = "421 4.5.0 Bare CR or LF in the SMTP stream; only CRLF ends a line, closing " \
       "transmission channel"

SMUGGLED = (b"MAIL FROM:<attacker@remote.example>\r\n"
            b"RCPT TO:<smuggled@example.test>\r\n"
            b"DATA\r\n"
            b"From: attacker@remote.example\r\n"
            b"To: smuggled@example.test\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"This message was smuggled.\r\n"
            b"\r\n.\r\n")

# smtpsmug's end-of-data variants that use a bare CR or LF
BARE_EOD = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CR.LF": b"\r.\n",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.LF": b"\r\n.\n",
    "LF.CR": b"\n.\r",
    "CR.CRLF": b"\r.\r\n",
}
# ... and those that hide the dot line behind a NUL
NUL_EOD = {
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
    "CRLF.NUL-CRLF": b"\r\n.\x00\r\n",
}


def open_data(daemon, rcpt="victim@example.test"):
    """A session that has got its 354."""
    c = session(daemon)
    expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
    expect(c, 250, cmd=f"RCPT TO:<{rcpt}>")
    expect(c, 354, "Start mail input", cmd="DATA")
    return c


def smuggling_payload(eod):
    return (b"From: sender@remote.example\r\nTo: victim@example.test\r\n"
            b"Subject: carrier\r\n\r\nThe carrier message." + eod + SMUGGLED)


def assert_no_smuggled_mail(daemon):
    deliver_barrier(daemon)
    assert_only_barriers_delivered(daemon)
    assert not os.path.exists(daemon.maildir("smuggled"))
    assert not os.path.exists(daemon.maildir("victim"))


# ---- SMTP smuggling ------------------------------------------------------------------


@pytest.mark.parametrize("eod", list(BARE_EOD.values()), ids=list(BARE_EOD))
def test_smuggling_bare_end_of_data_closes_with_421(daemon, eod):
    start(daemon)
    with open_data(daemon) as c:
        c.send(smuggling_payload(eod))       # the whole attack in one write
        expect_close(c, 421, BARE[4:])
    daemon.wait_log(r"bare CR or LF from the client \(SMTP smuggling attempt\?\)")
    assert_no_smuggled_mail(daemon)


@pytest.mark.parametrize("eod", list(NUL_EOD.values()), ids=list(NUL_EOD))
def test_smuggling_nul_around_the_dot_is_one_refused_message(daemon, eod):
    # A NUL next to the dot is no end of data: everything up to the real CRLF.CRLF is one
    # message, refused for its NUL; no second transaction ever starts.
    start(daemon)
    with open_data(daemon) as c:
        c.send(smuggling_payload(eod))
        expect(c, 554, "5.6.0 Message contains NUL characters")
        c.send("QUIT\r\n")
        data, closed = read_to_close(c)
        # nothing answered in between: no 250 for a first message, no 354 for a second
        assert closed and data == b"221 2.0.0 Service closing transmission channel\r\n", data
    assert_no_smuggled_mail(daemon)


@pytest.mark.parametrize("writes", [
    (b"EHLO client.example\nMAIL FROM:<a@remote.example>\r\n",),
    (b"EHLO client.example\r\nMAIL FROM:<a@remote.example>\rRCPT TO:<user@example.test>\r\n",),
    (b"NOOP\n",),
    (b"NOOP\r", b"RSET\r\n"),     # bare CR at the end of a write: decided by the next
    (b"NOOP " + b"x" * 700 + b"\n",),                 # over-long line ended by a bare LF
    (b"NOOP " + b"x" * 700 + b"\rQUIT\r\n",),         # ... with a bare CR inside
    (b"NOOP " + b"x" * 3000, b"\nQUIT\r\n"),          # ... being skipped when LF comes
    (b"NOOP " + b"x" * 3000 + b"\r", b"QUIT\r\n"),     # ... CR last, then no LF
], ids=["LF-after-EHLO", "CR-after-MAIL", "LF-alone", "CR-then-next-write",
        "long-line-LF", "long-line-CR", "skipped-long-line-LF", "skipped-long-line-CR"])
def test_bare_cr_or_lf_in_commands_closes_with_421(daemon, writes):
    start(daemon)
    with daemon.connect() as c:
        expect(c, 220)
        for i, w in enumerate(writes):
            if i:
                time.sleep(0.2)
            c.send(w)
        # one reply (after the EHLO lines, when EHLO came before the bare byte), then close;
        # no command behind the bare byte is ever answered
        data, closed = read_to_close(c)
        assert closed, data
        replies = data.decode().split("\r\n")
        assert replies[-1] == "", data
        assert [r for r in replies[:-1] if not r.startswith("250-") and r != "250 SMTPUTF8"] \
            == [BARE], data
    daemon.wait_log(r"bare CR or LF from the client")


@pytest.mark.parametrize("header", [
    b"Subject: a\nBcc: victim@example.test\r\n",
    b"Subject: a\rX-Injected: yes\r\n",
    b"X-Long: " + b"y" * 1500 + b"\n",                 # over-long header line, bare LF
], ids=["LF-in-header", "CR-in-header", "long-header-LF"])
def test_bare_cr_or_lf_in_headers_closes_with_421(daemon, header):
    start(daemon)
    with open_data(daemon) as c:
        c.send(b"From: sender@remote.example\r\n" + header + b"\r\nbody\r\n.\r\n")
        expect_close(c, 421, BARE[4:])
    assert_no_smuggled_mail(daemon)


def test_bare_lf_in_a_later_write_of_a_long_data_line(daemon):
    # the over-long line is being skipped when its bare LF arrives in the next packet
    start(daemon)
    with open_data(daemon) as c:
        c.send(b"Subject: x\r\n\r\n" + b"z" * 40000)
        time.sleep(0.3)
        c.send(b"\n.\n" + SMUGGLED)
        expect_close(c, 421, BARE[4:])
    assert_no_smuggled_mail(daemon)


def test_crlf_split_across_writes_is_not_bare(daemon):
    # the control for the tests above: CR and LF in different packets are one CRLF
    start(daemon)
    with session(daemon) as c:
        c.send("NOOP\r")
        time.sleep(0.2)
        c.send("\n")
        expect(c, 250, "2.0.0 OK")
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 250, cmd="RCPT TO:<user@example.test>")
        expect(c, 354, cmd="DATA")
        for part in (b"Subject: split\r", b"\n\r", b"\nline one\r", b"\n.", b"\r", b"\n"):
            c.send(part)
            time.sleep(0.05)
        expect(c, 250, "2.6.0 <")
    msg = daemon.wait_messages(1)[0]
    assert msg.endswith(b"Subject: split\r\n\r\nline one\r\n")


# ---- client text in the trace header ---------------------------------------------------


@pytest.mark.parametrize("helo", [
    b"[\x1b[2J\x1b[31mred\x07]",                          # terminal escapes, BEL
    b"[127.0.0.1] by trusted.example with ESMTPSA]",       # forged trace text
    b"[\xff\xfe]",                                          # 8-bit bytes
    b"[1.2.3.4\t]",
], ids=["escapes", "forged-trace", "8bit", "tab"])
def test_helo_address_literal_must_be_an_address_literal(daemon, helo):
    # EHLO's argument goes verbatim into "Received: from <helo>": an address literal is
    # RFC 5321 §4.1.3 syntax ("[" IPv4 / "IPv6:" IPv6 / tag ":" dcontent "]", dcontent
    # printable without space, "[", "\\" or "]"), nothing else in brackets
    start(daemon)
    with daemon.connect() as c:
        expect(c, 220)
        c.send(b"EHLO " + helo + b"\r\n")
        expect(c, 501, "5.5.4 Invalid domain name")
        c.send(b"HELO " + helo + b"\r\n")
        expect(c, 501, "5.5.4 Invalid domain name")
        expect(c, 250, cmd="EHLO [127.0.0.2]")
        expect(c, 250, cmd="EHLO [IPv6:::1]")


# ---- STARTTLS command injection ------------------------------------------------------


def test_commands_pipelined_behind_starttls_never_run(daemon):
    start(daemon)
    with session(daemon) as c:
        c.send("STARTTLS\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<injected@example.test>\r\n"
               "DATA\r\n")
        expect(c, 220, "2.0.0 SMTP server ready")
        assert c.buf == b"", c.buf       # no reply to the injected commands in plaintext
        c.starttls()
        # the session forgot everything: no HELO, no sender
        expect(c, 503, "5.5.2 Send hello first", cmd="MAIL FROM:<a@remote.example>")
        expect(c, 250, cmd="EHLO client.example")
        expect(c, 503, "5.5.1 Need MAIL command", cmd="RCPT TO:<user@example.test>")
        code, text = send_message(c, message("after tls"))
        assert code == 250, text
        expect(c, 221, cmd="QUIT")
    daemon.wait_log(r"dropped \d+ bytes the client sent behind STARTTLS")
    msgs = daemon.wait_messages(1)
    assert len(msgs) == 1 and b"Subject: after tls" in msgs[0]
    assert b"with ESMTPS id" in msgs[0]
    assert not os.path.exists(daemon.maildir("injected"))
    queued = queued_lines(daemon, wait_for=1)
    assert len(queued) == 1 and "from=<sender@remote.example>" in queued[0], queued


# ---- open relay ----------------------------------------------------------------------

RELAY_TRICKS = [
    ("<user%other.example@example.test>", 550, "5.1.3 Routing characters"),
    ('<"user@other.example"@example.test>', 550, "5.1.3 Routing characters"),
    ("<@example.test:user@other.example>", 550, "5.7.54 SMTP; Unable to relay recipient "
                                                 "in non-accepted domain"),
    ("<@host.example,@example.test:user@other.example>", 550, "5.7.54 SMTP; Unable to relay"),
    ("<other.example!user@example.test>", 550, "5.1.3 Routing characters"),
    ('<"other.example!user"@example.test>', 550, "5.1.3 Routing characters"),
    ("<user@other.example@example.test>", 501, "5.1.3 Invalid address"),
    ("<user@[127.0.0.1]>", 550, "5.7.54 SMTP; Unable to relay"),
    ("<user@[IPv6:::1]>", 550, "5.7.54 SMTP; Unable to relay"),
    ("<relaytest@other.example>", 550, "5.7.54 SMTP; Unable to relay"),
    ("<relaytest@example.test.other.example>", 550, "5.7.54 SMTP; Unable to relay"),
    ("<relaytest@other.example.>", 501, "5.1.3 Invalid address"),
    ("<relaytest@other-example.test>", 550, "5.7.54 SMTP; Unable to relay"),
]


def test_open_relay_tricks_from_an_anonymous_source_are_refused(daemon):
    start(daemon)
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        for rcpt, code, text in RELAY_TRICKS:
            got = expect(c, code, text, cmd=f"RCPT TO:{rcpt}")
            assert got[0] == "5", got
        # DATA with no recipient taken
        expect(c, 503, "5.5.2 Need rcpt command", cmd="DATA")
        # a legitimate recipient still works in the same transaction; a source route
        # is dropped (RFC 5321 §3.6.1), so this is the same recipient again
        expect(c, 250, cmd="RCPT TO:<user@EXAMPLE.test>")
        expect(c, 250, cmd="RCPT TO:<@other.example:user@example.test>")
        expect(c, 354, cmd="DATA")
        c.send(message("legit") + "\r\n.\r\n")
        expect(c, 250, "2.6.0")
        expect(c, 221, cmd="QUIT")
    daemon.wait_messages(1)
    daemon.wait_log(r"relay denied for <relaytest@other\.example>")
    files = mail_files(daemon)
    assert len(files) == 1 and files[0].startswith(os.path.join("example.test", "user", "new")), \
        files
    assert os.listdir(daemon.mail) == ["example.test"]
    queued = queued_lines(daemon, wait_for=1)
    assert len(queued) == 1 and "nrcpt=1," in queued[0], queued


def test_exchange_servers_connector_may_relay(daemon):
    start(daemon,
          connector("Anonymous", ranges=(ALLOWED,)),
          connector("Relay", ranges=(THIRD,), usage="internal",
                    permission_groups="{ exchange-servers }"))
    # the anonymous connector refuses the very recipient the relay connector takes
    with session(daemon, source=ALLOWED) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 550, "5.7.54", cmd="RCPT TO:<relaytest@other.example>")
    with session(daemon, source=THIRD) as c:
        code, text = send_message(c, message("relayed", to="relaytest@other.example"),
                                  rcpts=("relaytest@other.example", "user@example.test"))
        assert code == 250, text
        expect(c, 221, cmd="QUIT")
    relayed = daemon.wait_messages(1, user="relaytest", domain="other.example")
    assert b"Subject: relayed" in relayed[0]
    assert b'connector "Relay"' in relayed[0]
    daemon.wait_messages(1)
    assert sorted(os.listdir(daemon.mail)) == ["example.test", "other.example"]


# ---- DATA must end a pipelined group -------------------------------------------------

SYNC = "4.5.0 SMTP synchronization error: data sent before the 354 reply, closing " \
       "transmission channel"


def test_message_sent_with_the_whole_envelope_before_354(daemon):
    start(daemon)
    with session(daemon) as c:
        c.send("MAIL FROM:<sender@remote.example>\r\nRCPT TO:<victim@example.test>\r\n"
               "DATA\r\n" + message("early") + "\r\n.\r\n")
        expect(c, 250, "2.1.0")
        expect(c, 250, "2.1.5")
        expect_close(c, 421, SYNC)
    daemon.wait_log(r"client sent text behind DATA before the 354 reply")
    assert_no_smuggled_mail(daemon)


def test_message_sent_behind_data_before_354(daemon):
    start(daemon)
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 250, cmd="RCPT TO:<victim@example.test>")
        c.send("DATA\r\n" + message("early") + "\r\n.\r\n")
        expect_close(c, 421, SYNC)
    assert_no_smuggled_mail(daemon)


# ---- Maildir paths from client data ----------------------------------------------------

# (RCPT TO path, the Maildir directory it must land in under <mail>/example.test)
PATH_CASES = [
    ('<"../../etc/x"@example.test>', "%2E.%2F..%2Fetc%2Fx"),
    ('<"../../../../../../tmp/pwned"@example.test>', "%2E.%2F..%2F..%2F..%2F..%2F..%2Ftmp%2Fpwned"),
    ('<".hidden"@example.test>', "%2Ehidden"),
    ('<"."@example.test>', "%2E"),
    ('<".."@example.test>', "%2E."),
    ("<a/b@example.test>", "a%2Fb"),
    ('<"a/../../b"@example.test>', "a%2F..%2F..%2Fb"),
    ("<CON@example.test>", "con"),
    ('<"a b\\"c"@example.test>', "a%20b%22c"),
    ('<"x\\\\y"@example.test>', "x%5Cy"),
    ('<"a:2,S"@example.test>', "a%3A2%2Cs"),
    ("<~root%2F@example.test>", None),      # '%' is a routing character: refused
    ("<'$HOME'@example.test>", "%27%24home%27"),
    ("<\u00fcser@example.test>", "%C3%BCser"),
    ("<*@example.test>", "%2A"),
    ('<"' + "\\\\" * 64 + '"@example.test>', "%5C" * 64),     # 64 backslashes and
    ('<"' + '\\"' * 64 + '"@example.test>', "%22" * 64),      # 64 quotes: 130 quoted
]


def test_recipient_local_parts_become_safe_maildir_names(daemon):
    start(daemon)
    expected = {}
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example> SMTPUTF8")
        expect(c, 501, "5.1.3 Invalid address", cmd="RCPT TO:<.hidden@example.test>")
        expect(c, 501, "5.1.3 Invalid address", cmd='RCPT TO:<"nul\x01"@example.test>')
        for rcpt, enc in PATH_CASES:
            if enc is None:
                expect(c, 550, "5.1.3 Routing characters", cmd=f"RCPT TO:{rcpt}")
            else:
                expect(c, 250, "2.1.5 Recipient OK", cmd=f"RCPT TO:{rcpt}")
                expected[enc] = rcpt
        expect(c, 354, cmd="DATA")
        c.send(message("paths") + "\r\n.\r\n")
        expect(c, 250, "2.6.0")
        expect(c, 221, cmd="QUIT")
    deadline = time.monotonic() + 10
    while len(mail_files(daemon)) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    # exactly one message in new/ of exactly the expected Maildirs, all directly under
    # <mail>/example.test
    files = mail_files(daemon)
    assert sorted(os.listdir(daemon.mail)) == ["example.test"]
    assert sorted(os.listdir(os.path.join(daemon.mail, "example.test"))) == sorted(expected)
    assert len(files) == len(expected), files
    for f in files:
        parts = f.split(os.sep)
        assert len(parts) == 4 and parts[0] == "example.test" and parts[2] == "new", f
        assert parts[1] in expected, f
        assert not parts[1].startswith("."), f
        full = os.path.join(daemon.mail, f)
        assert os.path.realpath(full).startswith(os.path.realpath(daemon.mail) + os.sep)
        assert not os.path.islink(full) and not os.path.islink(os.path.dirname(full))
        with open(full, "rb") as fh:
            assert b"Subject: paths" in fh.read()
    for enc in expected:
        for sub in ("tmp", "new", "cur"):
            assert os.path.isdir(os.path.join(daemon.mail, "example.test", enc, sub))
    # nothing escaped: the daemon's directory holds only what it should
    assert sorted(os.listdir(daemon.dir)) == ["cert.pem", "key.pem", "mail", "mxgate.conf",
                                              "spool"]
    assert not os.path.exists(os.path.join(daemon.dir, "etc"))
    assert not os.path.exists("/etc/x")
    assert not os.path.exists("/tmp/pwned")


def test_relayed_domains_and_literals_become_safe_maildir_names(daemon):
    # an exchange-servers connector may send anywhere, address literals and routing
    # characters included: the domain is client text too, and is encoded the same way
    start(daemon, connector("Relay", ranges=(THIRD,), usage="internal",
                            permission_groups="{ exchange-servers }"))
    cases = [('<"../x"@[127.0.0.1]>', "%5B127.0.0.1%5D", "%2E.%2Fx"),
             ('<"../../y"@[IPv6:::1]>', "%5Bipv6%3A%3A%3A1%5D", "%2E.%2F..%2Fy"),
             ("<a%b!c@other.example>", "other.example", "a%25b%21c"),
             ('<@a.example:"x/y"@Other.Example>', "other.example", "x%2Fy")]
    with session(daemon, source=THIRD) as c:
        code, text = send_message(c, message("relayed paths"),
                                  rcpts=[r[1:-1] for r, _, _ in cases])
        assert code == 250, text
    deadline = time.monotonic() + 10
    while len(mail_files(daemon)) < len(cases) and time.monotonic() < deadline:
        time.sleep(0.05)
    files = mail_files(daemon)
    assert sorted(files) == sorted(f for f in files if f.split(os.sep)[:2] in
                                   [[d, u] for _, d, u in cases]), files
    assert sorted(f.split(os.sep)[:3] for f in files) == \
        sorted([d, u, "new"] for _, d, u in cases), files
    assert sorted(os.listdir(daemon.dir)) == ["cert.pem", "key.pem", "mail", "mxgate.conf",
                                              "spool"]


# ---- bare-line-feed = normalize --------------------------------------------------------

BARE_CR_EOD = ("CR.CR", "CR.LF", "CRLF.CR", "LF.CR", "CR.CRLF")


@pytest.mark.parametrize("eod", list(BARE_EOD), ids=list(BARE_EOD))
def test_smuggling_under_normalize_gives_one_message_or_421(daemon, eod):
    # bare-line-feed = normalize takes a bare LF as a line end, but the carrier's lines end
    # in CRLF: LF.LF, LF.CRLF and CRLF.LF are text there, so the hidden transaction is part
    # of the one message; a bare CR still closes.  Never a second message.
    start(daemon, connector(bare_line_feed="normalize"))
    with open_data(daemon) as c:
        c.send(smuggling_payload(BARE_EOD[eod]))
        if eod in BARE_CR_EOD:
            expect_close(c, 421, BARE[4:])
        else:
            expect(c, 250, "2.6.0 <")
            expect(c, 221, cmd="QUIT")
    deliver_barrier(daemon)
    assert not os.path.exists(daemon.maildir("smuggled"))
    if eod in BARE_CR_EOD:
        assert not os.path.exists(daemon.maildir("victim"))
        return
    msgs = daemon.wait_messages(1, user="victim")
    assert len(msgs) == 1 and b"This message was smuggled." in msgs[0], msgs
    # stored with CRLF only: relayed on, no next hop can read an end of data in it
    body = msgs[0]
    assert b"\r\n.\r\n" not in body and body.count(b"\n") == body.count(b"\r\n"), body
    assert len(queued_lines(daemon, wait_for=2)) == 2


def test_normalize_takes_lf_only_commands_and_text(daemon):
    # a client that writes LF only (scanners, scripts): its message is taken, stored with
    # CRLF, and the session says so in the log and the metrics
    start(daemon, connector(bare_line_feed="normalize"))
    with daemon.connect() as c:
        expect(c, 220)
        c.send("EHLO client.example\n")
        expect(c, 250)
        c.send("MAIL FROM:<sender@remote.example>\n")
        expect(c, 250, "2.1.0")
        c.send("RCPT TO:<user@example.test>\n")
        expect(c, 250, "2.1.5")
        c.send("DATA\n")
        expect(c, 354)
        c.send("Subject: lf\n\nline one\n..dot\n.\n")
        expect(c, 250, "2.6.0 <")
        c.send("QUIT\n")
        expect(c, 221)
    msg = daemon.wait_messages(1)[0]
    assert msg.endswith(b"Subject: lf\r\n\r\nline one\r\n.dot\r\n"), msg
    daemon.wait_log(r"bare LF line ends taken as CRLF \(bare-line-feed = normalize\)")


def test_reject_is_the_default_for_internet_and_normalize_for_internal(daemon):
    start(daemon, connector(name="Internet", ranges=("127.0.0.2",)),
          connector(name="Internal", ranges=(THIRD,), usage="internal"))
    with daemon.connect() as c:
        expect(c, 220)
        c.send("NOOP\n")
        expect_close(c, 421, BARE[4:])
    with daemon.connect(source=THIRD) as c:
        expect(c, 220)
        c.send("NOOP\n")
        expect(c, 250, "2.0.0 OK")
