"""CHUNKING/BDAT (RFC 3030) on the real daemon, with two clients: a raw socket client for
the edge cases (chunks cut anywhere, pipelining, refusals whose chunk must still be read,
the size checked before reading, DATA and BDAT mixed, BDAT 0 LAST) and Exim, a real
sending MTA whose smtp transport sends BDAT whenever CHUNKING is offered
(scripts/peer-exim).  Also openssl s_client without -crlf on an internal connector
(bare-line-feed = normalize by default there)."""
import os
import subprocess
import threading
import time
import urllib.request

from daemon import ALLOWED, free_port, message
from helpers_security import (THIRD, connector, deliver_barrier, expect, expect_close,
                              session, start)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def mail_rcpt(c, rcpt="user@example.test"):
    expect(c, 250, "2.1.0", cmd="MAIL FROM:<sender@remote.example>")
    expect(c, 250, "2.1.5", cmd=f"RCPT TO:<{rcpt}>")


def bdat(data, last=False):
    if isinstance(data, str):
        data = data.encode()
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def test_ehlo_offers_chunking_and_chunks_make_one_message(daemon):
    start(daemon)
    text = message("chunks", body="..kept as sent\r\n.\r\nline\r\n").encode()
    with daemon.connect() as c:
        expect(c, 220)
        code, ehlo = c.cmd("EHLO client.example")
        assert code == 250 and "CHUNKING" in ehlo.split("\n")[-2], ehlo
        assert "BINARYMIME" not in ehlo
        mail_rcpt(c)
        # cut in the middle of a line and between its CR and LF
        cut = text.index(b"\r\n") + 1
        c.send(bdat(text[:cut]))
        expect(c, 250, f"2.0.0 {cut} octets received")
        c.send(bdat(text[cut:], last=True))
        expect(c, 250, "2.6.0 <")
        expect(c, 221, cmd="QUIT")
    msg = daemon.wait_messages(1)[0]
    # no dot-stuffing: the text is stored as sent, after the Received: line
    assert msg.endswith(text), msg
    assert b"Received: from client.example" in msg
    # the size logged is the message as stored: mxgate's Received: line and the text
    # (the Maildir's Return-Path: line is not counted)
    stored = msg[msg.index(b"Received: from client.example"):]
    daemon.wait_log(r"message \S+ queued: from=<sender@remote.example>, size=%d, nrcpt=1,"
                    % len(stored))


def test_pipelined_transactions_with_chunks_in_one_packet(daemon):
    start(daemon)
    one = message("one", body="QUIT\r\nRSET\r\n").encode()
    two = message("two").encode()
    with session(daemon) as c:
        c.send(b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<user@example.test>\r\n"
               + bdat(one, last=True)
               + b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<user@example.test>\r\n"
               + bdat(two[:10]) + bdat(two[10:], last=True) + b"QUIT\r\n")
        for code, text in ((250, "2.1.0"), (250, "2.1.5"), (250, "2.6.0 <"),
                           (250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0 10 octets"),
                           (250, "2.6.0 <"), (221, "2.0.0")):
            expect(c, code, text)
    msgs = daemon.wait_messages(2)
    assert sorted(m[m.index(b"From: "):] for m in msgs) == sorted([one, two])


def test_bdat_0_last_ends_the_message(daemon):
    start(daemon)
    text = message("zero").encode()
    with session(daemon) as c:
        mail_rcpt(c)
        c.send(bdat(text))
        expect(c, 250, f"2.0.0 {len(text)} octets")
        c.send(b"BDAT 0 LAST\r\n")
        expect(c, 250, "2.6.0 <")
    assert daemon.wait_messages(1)[0].endswith(text)


def test_refused_chunks_are_read_and_never_run_as_commands(daemon):
    start(daemon, connector(max_protocol_errors="unlimited"))
    hidden = (b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<smuggled@example.test>\r\n"
              b"DATA\r\n")
    with session(daemon) as c:
        c.send(bdat(hidden, last=True))
        expect(c, 503, "5.5.1 Need MAIL command")
        expect(c, 250, "2.1.0", cmd="MAIL FROM:<sender@remote.example>")
        c.send(bdat(hidden))
        expect(c, 503, "5.5.2 Need rcpt command")
        expect(c, 250, "2.1.5", cmd="RCPT TO:<user@example.test>")
        c.send(bdat(b"Subject: x\r\n"))
        expect(c, 250, "2.0.0 12 octets")
        # RFC 3030 §3: no DATA in a BDAT transaction
        expect(c, 503, "5.5.1 Bad sequence of commands", cmd="DATA")
        expect(c, 250, "2.0.0 Resetting", cmd="RSET")
        expect(c, 221, cmd="QUIT")
    deliver_barrier(daemon)
    assert not os.path.exists(daemon.maildir("smuggled"))
    assert not os.path.exists(daemon.maildir("user"))


def test_size_is_checked_before_the_chunk_is_read(daemon):
    start(daemon, connector(max_message_size="64KB"))
    with session(daemon) as c:
        mail_rcpt(c)
        c.send(bdat(b"a" * 998 + b"\r\n"))
        expect(c, 250, "2.0.0 1000 octets")
        # the BDAT line alone says it is too big; its chunk (with a hidden command) is
        # still read and dropped, then 552, and the stream is in step again
        big = (b"b" * 998 + b"\r\n") * 65 + b"NOOP\r\n"
        c.send(bdat(big))
        expect(c, 552, "5.3.4 Message size exceeds fixed maximum message size")
        expect(c, 250, "2.0.0 OK", cmd="NOOP")
        c.send(bdat(b"x\r\n", last=True))
        expect(c, 503, "5.5.1 Need MAIL command")   # the transaction ended
    daemon.wait_log(r"refused at BDAT: a chunk of 65006 octets after 1000 is over "
                    r"max-message-size \(65536\)")
    deliver_barrier(daemon)
    assert not os.path.exists(daemon.maildir("user"))


def test_bad_bdat_size_closes(daemon):
    start(daemon)
    with session(daemon) as c:
        mail_rcpt(c)
        c.send(b"BDAT 12x LAST\r\nQUIT\r\n")
        expect_close(c, 501, "5.5.4 Syntax: BDAT chunk-size [LAST]")


def test_chunking_disabled_is_not_offered(daemon):
    start(daemon, connector(chunking_enabled="false"))
    with daemon.connect() as c:
        expect(c, 220)
        code, ehlo = c.cmd("EHLO client.example")
        assert "CHUNKING" not in ehlo
        mail_rcpt(c)
        c.send(bdat(b"QUIT\r\n", last=True))
        expect(c, 502, "5.3.3 Command not implemented")
        expect(c, 250, cmd="NOOP")


def test_metrics_count_chunks_and_bare_line_ends(daemon):
    mport = free_port()
    start(daemon, connector(), connector(name="Internal", ranges=(THIRD,), usage="internal"),
          top=f'metrics-listen = "127.0.0.1:{mport}"')
    with session(daemon) as c:
        mail_rcpt(c)
        c.send(bdat(b"Subject: m\r\n\r\n") + bdat(b"hi\r\n", last=True))
        expect(c, 250, "2.0.0 14 octets")
        expect(c, 250, "2.6.0 <")
        expect(c, 221, cmd="QUIT")
    with daemon.connect(source=THIRD) as c:
        expect(c, 220)
        c.send("NOOP\nNOOP\n")
        expect(c, 250)
        expect(c, 250)
        c.send("QUIT\r\n")
        expect(c, 221)
    with daemon.connect() as c:
        expect(c, 220)
        c.send("NOOP\n")
        expect_close(c, 421, "4.5.0 Bare CR or LF")
    want = {"mxgate_bdat_chunks_total": 2, "mxgate_bdat_bytes_total": 18,
            'mxgate_bare_line_ends_total{action="normalized"}': 2,
            'mxgate_bare_line_ends_total{action="refused"}': 1}
    deadline = time.monotonic() + 10
    while True:   # the sessions' counts are added when they end
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            text = r.read().decode()
        got = {k: float(v) for k, v in (l.rsplit(" ", 1) for l in text.splitlines()
                                        if l.split(" ")[0] in want)}
        if got == {k: float(v) for k, v in want.items()} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == {k: float(v) for k, v in want.items()}, text


# ---- openssl s_client without -crlf ----------------------------------------------------


class Lines:
    """Reads a process's stdout in a thread, so a test can wait for a reply."""

    def __init__(self, stream):
        self.text = ""
        self.cv = threading.Condition()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream):
        for line in stream:
            with self.cv:
                self.text += line
                self.cv.notify_all()

    def wait(self, what, timeout=15):
        with self.cv:
            ok = self.cv.wait_for(lambda: what in self.text, timeout)
        assert ok, f"no {what!r} in {self.text!r}"


def test_openssl_s_client_without_crlf_on_an_internal_connector(daemon):
    # an admin typing into s_client sends LF only; usage internal normalizes by default
    start(daemon, connector(name="Internal", ranges=(THIRD,), usage="internal"))
    p = subprocess.Popen(["openssl", "s_client", "-starttls", "smtp", "-quiet", "-ign_eof",
                          "-connect", f"127.0.0.1:{daemon.port}", "-bind", f"{THIRD}:0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    out = Lines(p.stdout)
    try:
        for line, reply in (("EHLO admin.example", "250 SMTPUTF8"),
                            ("MAIL FROM:<admin@remote.example>", "250 2.1.0"),
                            ("RCPT TO:<user@example.test>", "250 2.1.5"),
                            ("DATA", "354 "),
                            ("Subject: typed\n\nhello\n.", "250 2.6.0"),
                            ("QUIT", "221 ")):
            p.stdin.write(line + "\n")
            p.stdin.flush()
            out.wait(reply)
    finally:
        p.stdin.close()
        p.wait(timeout=15)
    msg = daemon.wait_messages(1)[0]
    assert msg.endswith(b"Subject: typed\r\n\r\nhello\r\n"), msg


# ---- Exim, a real sending MTA --------------------------------------------------------

PEER_EXIM = os.path.join(ROOT, "scripts", "peer-exim")


def exim_send(daemon, msg, rcpt="user@example.test", source=ALLOWED):
    d = os.path.join(daemon.dir, "exim")
    r = subprocess.run([PEER_EXIM, "send", d, str(daemon.port), source, rcpt], input=msg,
                       capture_output=True, timeout=120)
    mainlog = os.path.join(d, "log", "mainlog")
    log = open(mainlog).read() if os.path.exists(mainlog) else ""
    return r, log


def test_exim_sends_with_bdat(daemon):
    # Exim's smtp transport sends BDAT whenever CHUNKING is offered (hosts_try_chunking);
    # its log marks such a delivery with K.  Its message ends in a line with a lone dot
    # and lines with leading dots, which BDAT carries unstuffed.
    start(daemon)
    body = b"".join(b"line %d with some text to fill it up ....\n" % i for i in range(3000))
    msg = b"From: sender@remote.example\nSubject: from exim\n\n.leading dot\n..two\n" + body
    r, log = exim_send(daemon, msg)
    assert r.returncode == 0, (r.stdout, r.stderr, log)
    assert " K C=\"250 2.6.0 <" in log, log   # K: delivered with CHUNKING
    got = daemon.wait_messages(1)[0]
    assert b"Subject: from exim\r\n" in got
    assert got.endswith(b"\r\n.leading dot\r\n..two\r\n" + body.replace(b"\n", b"\r\n")), \
        got[-200:]
    daemon.wait_log(r"message \S+ queued: from=<sender@remote.example>, size=\d+, nrcpt=1,")


def test_exim_message_over_the_size_limit_is_refused(daemon):
    start(daemon, connector(max_message_size="64KB"))
    msg = b"Subject: big\n\n" + (b"x" * 70 + b"\n") * 2000
    r, log = exim_send(daemon, msg)
    # Exim declares SIZE= at MAIL already, or meets the 552 at BDAT: either way refused
    assert "552 5.3.4" in log or "552-5.3.4" in log, log
    deliver_barrier(daemon)
    assert not os.path.exists(daemon.maildir("user"))


def test_tls_close_notify_in_a_chunk_then_cleartext_delivers_nothing(daemon):
    # the class of Exim's CVE-2026-45185: the TLS layer ends in the middle of a chunk and
    # cleartext follows; the chunk can no longer be completed, so the message is dropped
    # and nothing of the cleartext is read as a command or as text
    start(daemon)
    with session(daemon) as c:
        expect(c, 220, cmd="STARTTLS")
        raw = c.sock
        c.starttls()
        expect(c, 250, cmd="EHLO client.example")
        mail_rcpt(c)
        c.send(b"BDAT 100 LAST\r\nSubject: cut\r\n\r\n")
        try:
            c.sock.settimeout(3)
            raw = c.sock.unwrap()           # close_notify, mid-chunk
        except (OSError, ValueError):
            pass
        try:
            raw.sendall(b"x" * 80 + b"\r\nMAIL FROM:<a@remote.example>\r\n"
                        b"RCPT TO:<smuggled@example.test>\r\nBDAT 2 LAST\r\nhi")
        except OSError:
            pass
    deliver_barrier(daemon)
    assert not os.path.exists(daemon.maildir("smuggled"))
    assert not os.path.exists(daemon.maildir("user"))
