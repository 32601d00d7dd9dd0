"""The connector limits of the real daemon, with raw sockets from chosen loopback sources:
sizes, recipients, header size, hop count, line lengths, protocol errors, the tarpit,
concurrent connections, timeouts, the message rate, require-tls and permission groups.

Timing is only ever asserted from below (a delay at least as long as configured); every
wait for the daemon has a generous ceiling that is a hang guard, not a measurement.
"""
import os
import select
import time

import pytest

from daemon import ALLOWED, message
from helpers_security import (OTHER, THIRD, connector, expect, expect_close, mail_files,
                              queued_lines, read_to_close, send_message, session, start,
                              wait_spool_empty)

SIZE_TEXT = "5.3.4 Message size exceeds fixed maximum message size"


def exact_message(size, subject="size"):
    """Message text of exactly `size` bytes, CRLF-terminated, lines under 80 bytes."""
    head = f"Subject: {subject}\r\n\r\n".encode()
    body_len = size - len(head)
    lines, left = [], body_len
    while left > 0:
        n = min(80, left)
        if n == 1:              # a line needs at least CRLF: grow the previous one
            lines[-1] = b"y" + lines[-1]
            break
        lines.append(b"x" * (n - 2) + b"\r\n")
        left -= n
    text = head + b"".join(lines)
    assert len(text) == size
    return text


# ---- message size, recipients, header, hops, lines ------------------------------------


def test_declared_size_over_max_message_size_is_refused_at_mail(daemon):
    start(daemon, connector(max_message_size="64KB"))
    with session(daemon) as c:
        code, ehlo = c.cmd("EHLO client.example")
        assert "250-SIZE 65536" in ehlo.split("\n"), ehlo
        expect(c, 552, SIZE_TEXT, cmd="MAIL FROM:<sender@remote.example> SIZE=65537")
        expect(c, 552, SIZE_TEXT, cmd="MAIL FROM:<sender@remote.example> SIZE=999999999999")
        # the refused MAIL left no sender behind
        expect(c, 503, "5.5.1 Need MAIL command", cmd="RCPT TO:<user@example.test>")
        expect(c, 250, "2.1.0", cmd="MAIL FROM:<sender@remote.example> SIZE=65536")


def test_actual_size_over_max_message_size_is_refused_after_data(daemon):
    start(daemon, connector(max_message_size="64KB"))
    with session(daemon) as c:
        # declared small, sent one byte too big
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example> SIZE=100")
        expect(c, 250, cmd="RCPT TO:<big@example.test>")
        expect(c, 354, cmd="DATA")
        c.send(exact_message(65537, "big") + b".\r\n")
        expect(c, 552, SIZE_TEXT)
        # the session goes on; exactly the limit is accepted
        code, text = send_message(c, exact_message(65536, "fits"), rcpts=("fits@example.test",))
        assert code == 250, text
        expect(c, 221, cmd="QUIT")
    msg = daemon.wait_messages(1, user="fits")[0]
    assert msg.endswith(exact_message(65536, "fits"))
    assert all(f.startswith(os.path.join("example.test", "fits", "new")) for f in
               mail_files(daemon)), mail_files(daemon)
    assert not os.path.exists(daemon.maildir("big"))
    daemon.wait_log(r"refused after DATA: too big")


def test_max_recipients_per_message(daemon):
    start(daemon, connector(max_recipients_per_message=3))
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        for i in range(1, 4):
            expect(c, 250, "2.1.5", cmd=f"RCPT TO:<r{i}@example.test>")
        for i in range(4, 6):
            expect(c, 452, "4.5.3 Too many recipients", cmd=f"RCPT TO:<r{i}@example.test>")
        expect(c, 354, cmd="DATA")
        c.send(message("many") + "\r\n.\r\n")
        expect(c, 250, "2.6.0")
        expect(c, 221, cmd="QUIT")
    for i in range(1, 4):
        assert b"Subject: many" in daemon.wait_messages(1, user=f"r{i}")[0]
    assert sorted(os.listdir(os.path.join(daemon.mail, "example.test"))) == ["r1", "r2", "r3"]
    queued = queued_lines(daemon, wait_for=1)
    assert len(queued) == 1 and "nrcpt=3," in queued[0], queued


def header_of(size):
    """Header lines (without the empty line) of exactly `size` bytes."""
    head = b"Subject: header\r\n"
    left = size - len(head)
    lines = []
    while left > 0:
        n = min(70, left)
        if n < 11:
            lines[-1] = b"y" * n + lines[-1]
            break
        lines.append(b"X-Fill: " + b"f" * (n - 10) + b"\r\n")
        left -= n
    h = head + b"".join(lines)
    assert len(h) == size
    return h


def test_max_header_size_refuses_and_closes(daemon):
    start(daemon, connector(max_header_size=1024))
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 250, cmd="RCPT TO:<bighead@example.test>")
        expect(c, 354, cmd="DATA")
        c.send(header_of(1025) + b"\r\nbody\r\n.\r\n")
        expect_close(c, 552, "5.3.4 Message header size exceeds fixed maximum size")
    daemon.wait_log(r"header over max-header-size \(1024 bytes\)")
    with session(daemon) as c:
        code, text = send_message(c, header_of(1024) + b"\r\nbody\r\n",
                                  rcpts=("fits@example.test",))
        assert code == 250, text
    daemon.wait_messages(1, user="fits")
    assert not os.path.exists(daemon.maildir("bighead"))
    assert len(queued_lines(daemon, wait_for=1)) == 1


def test_max_hop_count(daemon):
    start(daemon, connector(max_hop_count=3))
    hops = "".join(f"Received: from hop{i}.example by hop{i + 1}.example; "
                   f"Thu, 1 Jan 2026 00:00:0{i} +0000\r\n" for i in range(4))
    with session(daemon) as c:
        code, text = send_message(c, hops + message("looping"), rcpts=("loop@example.test",))
        assert (code, text) == (554, "554 5.4.6 Hop count exceeded - possible mail loop")
        three = hops.split("\r\n", 1)[1]
        code, text = send_message(c, three + message("three hops"), rcpts=("ok@example.test",))
        assert code == 250, text
    assert b"Subject: three hops" in daemon.wait_messages(1, user="ok")[0]
    assert not os.path.exists(daemon.maildir("loop"))
    daemon.wait_log(r"refused after DATA: hops")


@pytest.mark.parametrize("length", [999, 5000, 100000])
def test_text_line_over_1000_octets_is_refused(daemon, length):
    start(daemon)
    with session(daemon) as c:
        long_line = b"L" * length + b"\r\n"       # 1001 octets and more, CRLF included
        code, text = send_message(c, b"Subject: long\r\n\r\n" + long_line + b"after\r\n",
                                  rcpts=("long@example.test",))
        assert (code, text) == (554, "554 5.6.0 Message has a line longer than 998 characters")
        # 998 + CRLF is the longest line allowed
        code, text = send_message(c, b"Subject: ok\r\n\r\n" + b"L" * 998 + b"\r\n",
                                  rcpts=("ok@example.test",))
        assert code == 250, text
    assert daemon.wait_messages(1, user="ok")[0].endswith(b"L" * 998 + b"\r\n")
    assert not os.path.exists(daemon.maildir("long"))


def test_command_line_over_512_octets(daemon):
    start(daemon, connector(max_protocol_errors="unlimited"))
    with session(daemon) as c:
        expect(c, 250, "2.0.0 OK", cmd="NOOP " + "x" * (512 - 7))     # 512 with CRLF
        expect(c, 500, "5.5.2 Line too long", cmd="NOOP " + "x" * (512 - 6))
        expect(c, 500, "5.5.2 Line too long", cmd="NOOP " + "x" * 5000)
        # the tail of an over-long line is never run as a command
        expect(c, 500, "5.5.2 Line too long", cmd="X" * 1000 + "QUIT")
        expect(c, 250, "2.0.0 OK", cmd="NOOP")


# ---- protocol errors and the tarpit ---------------------------------------------------


TOO_MANY = "4.7.0 Too many errors on this connection, closing transmission channel"


@pytest.mark.parametrize("limit", [0, 3])
def test_max_protocol_errors_closes_with_421(daemon, limit):
    # "Protocol errors a session may make before it is closed with 421" (mxgate
    # reference): `limit` errors are answered and the session goes on; the next one is
    # answered and followed by 421 and the close.
    start(daemon, connector(max_protocol_errors=limit))
    errors = [("FOO", 500, "5.3.3 Unrecognized command"),
              ("EXPN staff", 502, "5.3.3 Command not implemented"),
              ("RCPT TO:<user@example.test>", 503, "5.5.1 Need MAIL command")]
    with session(daemon) as c:
        for i in range(limit):
            cmd, code, text = errors[i % len(errors)]
            expect(c, code, text, cmd=cmd)
            expect(c, 250, "2.0.0 OK", cmd="NOOP")      # still open
        expect(c, 500, "5.3.3 Unrecognized command", cmd="BAR")
        expect_close(c, 421, TOO_MANY)
    plural = "error" if limit == 0 else "errors"          # "1 protocol error"
    daemon.wait_log(rf"closed after {limit + 1} protocol {plural}\b")


def test_tarpit_delays_failure_replies(daemon):
    start(daemon, connector(tarpit_interval="1s"))
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        t0 = time.monotonic()
        expect(c, 550, "5.7.54", cmd="RCPT TO:<relaytest@other.example>")
        assert time.monotonic() - t0 >= 0.95
        t0 = time.monotonic()
        expect(c, 500, "5.3.3 Unrecognized command", cmd="FOO")
        assert time.monotonic() - t0 >= 0.95
        # success replies come through, and the message is taken
        expect(c, 250, "2.1.5", cmd="RCPT TO:<user@example.test>")
        expect(c, 354, cmd="DATA")
        c.send(message("tarpit") + "\r\n.\r\n")
        expect(c, 250, "2.6.0")
    daemon.wait_messages(1)


# ---- concurrent connections -----------------------------------------------------------

PER_SOURCE = ("421 4.3.2 The maximum number of concurrent server connections has exceeded "
              "a per-source limit, closing transmission channel\r\n")
PER_CONNECTOR = ("421 4.3.2 The maximum number of concurrent connections has exceeded a "
                 "limit, closing transmission channel\r\n")


def refused_with(daemon, source, text):
    c = daemon.connect(source=source)
    data, closed = read_to_close(c)
    c.close()
    assert closed and data == text.encode(), data


def greeted(daemon, source):
    c = daemon.connect(source=source)
    expect(c, 220)
    return c


def closed_count(daemon):
    return len([l for l in daemon.log().splitlines() if "closed: client disconnected" in l])


def close_and_wait(daemon, c):
    n = closed_count(daemon)
    c.close()
    daemon.wait_log("closed: client disconnected", count=n + 1)
    time.sleep(0.2)     # the slot is released right after that line is logged


def test_max_inbound_connection_per_source(daemon):
    start(daemon, connector(ranges=("127.0.0.2-127.0.0.9",),
                            max_inbound_connection_per_source=2))
    a, b = greeted(daemon, ALLOWED), greeted(daemon, ALLOWED)
    try:
        refused_with(daemon, ALLOWED, PER_SOURCE)
        daemon.wait_log(r'refused \[127\.0\.0\.2\]:\d+ on 127\.0\.0\.1:\d+: connector "Test" '
                        r"per-source limit")
        other = greeted(daemon, OTHER)          # another source is not affected
        close_and_wait(daemon, other)
        expect(a, 250, cmd="NOOP")              # the admitted ones are unaffected
        close_and_wait(daemon, a)
        c = greeted(daemon, ALLOWED)            # a freed slot takes a new connection
        expect(c, 250, cmd="NOOP")
        refused_with(daemon, ALLOWED, PER_SOURCE)
        c.close()
    finally:
        a.close()
        b.close()


def test_max_inbound_connection(daemon):
    start(daemon, connector(ranges=("127.0.0.2-127.0.0.9",), max_inbound_connection=3,
                            max_inbound_connection_percentage_per_source=100))
    cs = [greeted(daemon, src) for src in (ALLOWED, OTHER, THIRD)]
    try:
        refused_with(daemon, "127.0.0.6", PER_CONNECTOR)
        refused_with(daemon, ALLOWED, PER_CONNECTOR)
        daemon.wait_log(r'connector "Test" is at max-inbound-connection')
        close_and_wait(daemon, cs.pop(1))
        c = greeted(daemon, "127.0.0.6")
        expect(c, 250, cmd="NOOP")
        cs.append(c)
        refused_with(daemon, "127.0.0.7", PER_CONNECTOR)
    finally:
        for c in cs:
            c.close()


# ---- timeouts ----------------------------------------------------------------------------


def timeouts_connector():
    return connector(ranges=("127.0.0.2-127.0.0.9",), connection_inactivity_timeout="2s",
                     connection_timeout="3s")


IDLE = "4.7.0 Timeout waiting for client input"


def test_connection_inactivity_timeout(daemon):
    start(daemon, timeouts_connector())
    with daemon.connect() as c, session(daemon, source=OTHER) as d:
        expect(c, 220)
        t0 = time.monotonic()
        expect(c, 250, cmd="EHLO client.example")
        # d falls silent in the middle of a message
        expect(d, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(d, 250, cmd="RCPT TO:<halfway@example.test>")
        expect(d, 354, cmd="DATA")
        d.send("Subject: halfway\r\n\r\nthe first line\r\nand half a sec")
        expect_close(c, 451, IDLE, timeout=20)
        assert time.monotonic() - t0 >= 1.9
        expect_close(d, 451, IDLE, timeout=20)
    daemon.wait_log(r"connection-inactivity-timeout \(2s\) reached", count=2)
    wait_spool_empty(daemon)            # the half message is gone from the spool's tmp/
    assert mail_files(daemon) == [] and queued_lines(daemon) == []


def test_connection_timeout_ends_a_busy_session(daemon):
    start(daemon, timeouts_connector())
    with daemon.connect() as c:
        t0 = time.monotonic()
        expect(c, 220)
        noops = 0
        while True:
            elapsed = time.monotonic() - t0
            assert elapsed < 20, "no 421 4.4.1 within 20s"
            # keep the session busy with a NOOP every 0.4s (well inside the 2s inactivity
            # timeout, even on a loaded host) while under 2.2s have passed, then only wait
            # for the server.  A NOOP sent near 3s would cross the 421 and get it instead
            # of its 250 (with 0.5s steps the sixth NOOP was due within a few ms of
            # connection-timeout, on either side).  The last NOOP goes by about 2.6s and
            # after 1.8s, so the inactivity deadline it sets is past 3s and
            # connection-timeout still comes first.
            busy = elapsed < 2.2
            ready, _, _ = select.select([c.sock], [], [], 0.4 if busy else 20 - elapsed)
            if ready:
                break
            if busy:
                expect(c, 250, "2.0.0 OK", cmd="NOOP")
                noops += 1
        expect_close(c, 421, "4.4.1 Connection timed out")
        assert time.monotonic() - t0 >= 2.9
        assert noops >= 4           # the NOOPs kept the 2s inactivity timeout away
    daemon.wait_log(r"connection-timeout \(3s\) reached")


def test_slow_clients_do_not_delay_others(daemon):
    start(daemon, connector(ranges=("127.0.0.2-127.0.0.9",)))
    slow = []
    try:
        for i in range(20):
            c = greeted(daemon, ALLOWED if i % 2 else THIRD)
            if i % 4 == 1:
                c.send("EHLO sl")                       # half a command
            elif i % 4 == 2:
                expect(c, 250, cmd="EHLO slow.example")
                expect(c, 250, cmd="MAIL FROM:<slow@remote.example>")
                expect(c, 250, cmd=f"RCPT TO:<slow{i}@example.test>")
                expect(c, 354, cmd="DATA")
                c.send("Subject: slow\r\n\r\nhalf a li")  # half a line of message text
            slow.append(c)                              # i % 4 in (0, 3): idle
        # meanwhile another client does a whole transaction
        with session(daemon, source=OTHER) as c:
            code, text = send_message(c, message("fast"))
            assert code == 250, text
            expect(c, 221, cmd="QUIT")
        assert b"Subject: fast" in daemon.wait_messages(1)[0]
        # the slow ones were only waited for: each finishes now
        for i, c in enumerate(slow):
            if i % 4 == 1:
                c.send("ow.example\r\n")
                expect(c, 250)
            elif i % 4 == 2:
                c.send("ne\r\n.\r\n")
                expect(c, 250, "2.6.0")
            else:
                expect(c, 250, cmd="NOOP")
        for i in range(2, 20, 4):
            daemon.wait_messages(1, user=f"slow{i}")
    finally:
        for c in slow:
            c.close()


# ---- message rate, TLS, permission ------------------------------------------------------

RATE = "4.4.2 Message submission rate for this client has exceeded the configured limit"


def test_message_rate_limit(daemon):
    start(daemon, connector(ranges=(ALLOWED, OTHER), message_rate_limit=2))
    with session(daemon) as c:
        for i in range(2):
            code, text = send_message(c, message(f"rate {i}"))
            assert code == 250, text
        c.send("MAIL FROM:<sender@remote.example>\r\n")
        expect_close(c, 421, RATE)
    daemon.wait_log(r"message-rate-limit of 2 a minute exceeded")
    with session(daemon) as c:                     # the count is per source, not session
        c.send("MAIL FROM:<sender@remote.example>\r\n")
        expect_close(c, 421, RATE)
    with session(daemon, source=OTHER) as c:       # and per source address
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
    msgs = daemon.wait_messages(2)
    assert len(msgs) == 2
    assert len(queued_lines(daemon, wait_for=2)) == 2


def test_require_tls(daemon):
    start(daemon, connector(require_tls="true"))
    with session(daemon) as c:
        expect(c, 451, "5.7.3 Must issue a STARTTLS command first",
               cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 503, "5.5.1 Need MAIL command", cmd="RCPT TO:<user@example.test>")
        expect(c, 220, cmd="STARTTLS")
        c.starttls()
        expect(c, 250, cmd="EHLO client.example")
        code, text = send_message(c, message("over tls"))
        assert code == 250, text
        expect(c, 221, cmd="QUIT")
    msg = daemon.wait_messages(1)[0]
    assert b"Subject: over tls" in msg and b"with ESMTPS id" in msg


@pytest.mark.parametrize("settings", [
    {"usage": "custom"},
    {"usage": "internet", "permission_groups": "{ none }"},
], ids=["custom", "groups-none"])
def test_no_permission_group_refuses_mail(daemon, settings):
    start(daemon, connector(**settings))
    daemon.wait_log(r"connector 'Test' has no permission group")
    with session(daemon) as c:
        for _ in range(2):
            expect(c, 530, "5.7.1 Client was not authenticated",
                   cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 503, "5.5.1 Need MAIL command", cmd="RCPT TO:<user@example.test>")
        expect(c, 503, "5.5.1 Need MAIL command", cmd="DATA")
        expect(c, 221, cmd="QUIT")
    assert mail_files(daemon) == [] and daemon.queued() == []
