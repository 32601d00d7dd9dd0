"""Relay to the protected next hop (deliver { relay }), against real peers: a private
Postfix instance and Postfix's smtp-sink."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from daemon import ALLOWED, BIN, free_port, message
from peers import Postfix, SmtpSink

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fault"))
import failsync as fault  # noqa: E402  (tests/fault/failsync.py, the shim's driver)


@pytest.fixture
def postfix(daemon):
    p = Postfix(tls=(daemon.cert, daemon.key))
    yield p
    p.cleanup()


@pytest.fixture
def sink():
    s = SmtpSink()
    yield s
    s.cleanup()


def relay_conf(daemon, port, **deliver):
    opts = {"relay": f'"127.0.0.1:{port}"', "retry-interval": "1s", **deliver}
    body = "\n".join(f"  {k} = {v}" for k, v in opts.items())
    daemon.configure(connectors="""
        connector "Relay" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.1", "127.0.0.2" }
          tarpit-interval = 0s
        }
    """, extra=f"deliver {{\n{body}\n}}\n")
    # the deliver section above replaces the harness's maildir one
    text = open(daemon.conf).read()
    text = re.sub(r'deliver \{ maildir = "[^"]*" \}\n', "", text, count=1)
    with open(daemon.conf, "w") as f:
        f.write(text)


def send(daemon, rcpts, subject="relayed", sender="sender@example.test"):
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(subject, to=", ".join(rcpts), sender=sender) + ".\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.cmd("QUIT")
    c.close()
    return re.search(r"<([0-9A-F]{16})>", text).group(1)


def queue(daemon, *args):
    r = subprocess.run([BIN, "queue", "-c", daemon.conf, *args], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def test_relay_to_a_real_postfix_with_starttls(daemon, postfix):
    postfix.start()
    relay_conf(daemon, postfix.port, **{"relay-tls": "required"})
    daemon.start()
    qid = send(daemon, ["user@example.test"], subject="via postfix")
    msg = postfix.wait_messages(1)[0]
    assert b"Subject: via postfix" in msg
    assert f"(mxgate, connector \"Relay\") with ESMTP id {qid}".encode() in msg
    # Postfix's own Received: line says the hop from mxgate used TLS
    assert re.search(rb"by next\.example\.test \(Postfix\) with ESMTPS", msg), msg[:600]
    # the gateway's Maildir-only Return-Path is not sent to a next hop
    assert not msg.startswith(b"Return-Path: <sender@example.test>\r\nReceived: from client")
    daemon.wait_log(rf"message {qid} relayed to \[127\.0\.0\.1\]:{postfix.port} \(TLS TLSv1\.[23]")
    assert daemon.wait_queue_empty() == []


def test_refused_recipient_bounces_for_that_recipient_only(daemon, postfix):
    postfix.start()
    relay_conf(daemon, postfix.port)
    daemon.start()
    qid = send(daemon, ["user@example.test", "nobody-here@example.test"], subject="half")
    assert b"Subject: half" in postfix.wait_messages(1, "user")[0]
    bounce = postfix.wait_messages(1, "sender")[0]
    assert b"Subject: Undelivered Mail Returned to Sender" in bounce
    assert b"Content-Type: multipart/report; report-type=delivery-status" in bounce
    assert b"Final-Recipient: rfc822; nobody-here@example.test" in bounce
    assert b"Final-Recipient: rfc822; user@example.test" not in bounce
    assert b"Status: 5.1.1" in bounce
    assert b"Action: failed" in bounce
    assert b"Subject: half" in bounce  # the original headers come back
    assert f"X-Mxgate-Queue-ID: {qid}".encode() in bounce
    daemon.wait_log(rf"message {qid} relayed to .*: 1 delivered, 1 failed, 0 waiting")
    # message tracking: one line per recipient with where it went, the status and the
    # reply that decided it (Postfix's own reply carries its queue id)
    sent = daemon.wait_log(rf"message {qid}: to=<user@example\.test>, relay=\S+, delay=\d+s, "
                           rf"attempt=1, size=\d+, dsn=2\.0\.0, status=sent \(250 ")[0]
    assert "queued as" in sent, sent
    daemon.wait_log(rf"message {qid}: to=<nobody-here@example\.test>, relay=\S+, .*"
                    rf"dsn=5\.1\.1, status=bounced \(550 ")
    # the bounce itself has the null sender
    assert b"Return-Path: <>" in bounce or b"MAILER-DAEMON" in bounce


def test_soft_refusal_is_retried_until_accepted(daemon, sink):
    sink.start("-r", "rcpt")
    relay_conf(daemon, sink.port)
    daemon.start()
    qid = send(daemon, ["user@example.test"])
    daemon.wait_log(rf"message {qid} deferred \(attempt 1\): .*4\d\d")
    daemon.wait_log(rf"message {qid}: to=<user@example\.test>, .*attempt=1, .*status=deferred "
                    rf"\(4\d\d ")
    for _ in range(100):  # not while a retry is under way (listed "sending")
        rc, out, _ = queue(daemon, "list")
        if "sending" not in out:
            break
        time.sleep(0.1)
    assert rc == 0 and qid in out and "pending" in out and "last error" in out, out
    assert sink.queue_ids() == []
    sink.stop()
    sink.start()
    rc, out, _ = queue(daemon, "flush")
    assert rc == 0
    daemon.wait_log(rf"message {qid} relayed to .*: 1 delivered", timeout=30)
    assert sink.queue_ids() == [qid]
    assert daemon.wait_queue_empty() == []


def test_hard_refusal_bounces_and_null_sender_does_not(daemon, sink):
    sink.start("-f", "rcpt")
    relay_conf(daemon, sink.port)
    daemon.start()
    qid = send(daemon, ["user@example.test"])
    daemon.wait_log(rf"message {qid}: bounce [0-9A-F]{{16}} queued to <sender@example\.test>")
    # the bounce goes to the same next hop, which refuses it too: no bounce of a bounce
    daemon.wait_log(r"no bounce for the null sender")
    deadline = time.time() + 15
    while daemon.queued() and time.time() < deadline:
        time.sleep(0.1)
    assert daemon.queued() == []


def test_connection_dropped_mid_data_is_retried_and_delivered_once(daemon, sink):
    sink.start("-q", "data")
    relay_conf(daemon, sink.port)
    daemon.start()
    qid = send(daemon, ["user@example.test"])
    daemon.wait_log(rf"message {qid} deferred \(attempt 1\): .*connection to .* lost")
    sink.stop()
    sink.start()
    queue(daemon, "flush")
    daemon.wait_log(rf"message {qid} relayed to .*: 1 delivered", timeout=30)
    time.sleep(1)
    assert sink.queue_ids() == [qid]


def test_relay_tls_required_without_starttls_sends_nothing(daemon, sink):
    sink.start()  # smtp-sink offers no STARTTLS
    relay_conf(daemon, sink.port, **{"relay-tls": "required"})
    daemon.start()
    qid = send(daemon, ["user@example.test"])
    daemon.wait_log(rf"message {qid} deferred .*does not offer STARTTLS and relay-tls = required")
    # a message being retried at that moment is listed as "sending", without its last
    # error (the delivery thread owns it): list until it is between attempts
    for _ in range(100):
        rc, out, _ = queue(daemon, "list")
        if "sending" not in out:
            break
        time.sleep(0.1)
    assert rc == 0 and qid in out and "does not offer STARTTLS" in out, out
    assert sink.dumps() == []
    assert len([f for f in daemon.queued() if f == qid]) == 1


def test_queue_list_flush_remove_running_and_stopped(daemon, sink):
    relay_conf(daemon, sink.port)  # nothing listens yet: every attempt fails
    daemon.start()
    a = send(daemon, ["user@example.test"], subject="a")
    b = send(daemon, ["user@example.test", "other@example.test"], subject="b")
    daemon.wait_log(rf"message {b} deferred")
    # message tracking for a next hop never reached: the relay as configured, a temporary
    # network status (not dsn_status()'s 5.0.0 for "no reply"), the error without a code
    daemon.wait_log(rf"message {b}: to=<other@example\.test>, relay=127\.0\.0\.1:{sink.port}, "
                    rf".*dsn=4\.4\.0, status=deferred \(cannot connect to ")
    rc, out, err = queue(daemon, "list")
    assert rc == 0, err
    assert a in out and b in out and "<other@example.test>" in out
    assert re.search(r"last error: cannot connect to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+", out), out
    assert "2 messages" in out
    rc, out, err = queue(daemon, "remove", a)
    assert (rc, out.strip()) == (0, f"removed {a}"), err
    rc, out, _ = queue(daemon, "list")
    assert a not in out and b in out
    assert not any(f.startswith(a) for f in daemon.queued())
    rc, _, err = queue(daemon, "remove", a)
    assert rc == 1 and "no message" in err
    daemon.stop()
    # stopped: the spool's files answer
    rc, out, err = queue(daemon, "list")
    assert rc == 0 and b in out and "the daemon is not running" in out, err
    rc, _, err = queue(daemon, "flush")
    assert rc == 1 and "not running" in err
    rc, out, err = queue(daemon, "remove", b)
    assert rc == 0, err
    assert daemon.queued() == []
    rc, _, err = queue(daemon, "remove", "nothex")
    assert rc == 1 and "not a queue id" in err


def sink_ids(sink):
    """queue ids of the messages in smtp-sink's dumps. A dump file exists from the start
    of its transaction and goes when the transaction is cut short (a kill): files that
    vanish while read are skipped."""
    ids = []
    for name in os.listdir(sink.dir):
        try:
            with open(os.path.join(sink.dir, name), "rb") as f:
                d = f.read()
        except FileNotFoundError:
            continue
        m = re.search(rb"\(mxgate, connector \"[^\"]*\"\) with \w+ id ([0-9A-F]{16})", d)
        if m:
            ids.append(m.group(1).decode())
    return ids


def test_kill9_during_a_relay_burst_loses_nothing(daemon, sink):
    """kill -9 three times while 1000 queued messages are relayed over two connections:
    nothing is lost, and duplicates stay within the window deliver.h describes. A message
    goes twice only when a kill falls after the next hop took its final "." and before
    mxgate recorded the reply; each connection records a message's outcome before it
    sends the next, so each kill can cost at most one duplicate per connection."""
    n, conns, kills = 1000, 2, 3
    relay_conf(daemon, sink.port, **{"relay-connections": str(conns)})
    daemon.start()
    # the next hop is down: the burst is accepted and queued
    r = subprocess.run(["smtp-source", "-s", "10", "-m", str(n), "-f", "sender@example.test",
                        "-t", "user@example.test", f"127.0.0.1:{daemon.port}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    accepted = len(daemon.wait_log(r"message [0-9A-F]{16} queued", count=n, timeout=60))
    assert accepted == n
    sink.start()
    subprocess.run([BIN, "queue", "-c", daemon.conf, "flush"], capture_output=True, timeout=30)
    # kill -9 while the messages are being relayed; each start relays what is left
    for k in range(kills):
        deadline = time.time() + 60
        while len(os.listdir(sink.dir)) < 100 * (k + 1) and time.time() < deadline:
            time.sleep(0.005)
        daemon.kill9()
        relayed_before = len(set(sink_ids(sink)))
        assert relayed_before < n, \
            f"the relay finished before kill {k + 1}; the test proves nothing"
        daemon.start()
    # every message settled: no transaction is open at the next hop any more
    deadline = time.time() + 120
    while daemon.queued() and time.time() < deadline:
        time.sleep(0.1)
    assert daemon.queued() == []
    ids = sink_ids(sink)
    assert len(set(ids)) == n, f"{len(set(ids))} of {n} messages reached the next hop"
    dups = len(ids) - n
    print(f"relay burst: {n} messages, {kills} kills, {conns} connections: "
          f"{dups} duplicates")
    assert dups <= conns * kills, f"{dups} duplicates in {kills} kills"


class NextHop:
    """A minimal SMTP server that records every message it accepts (recipients and
    data) the moment it answers 250 to the final dot; recipients in `refuse` get 550."""

    def __init__(self, refuse=()):
        self.port = free_port()
        self.refuse = set(refuse)
        self.accepted = []   # (rcpts, data)
        self.lock = threading.Lock()
        self.sock = None

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        say = lambda line: conn.sendall(line.encode() + b"\r\n")  # noqa: E731
        try:
            say("220 nexthop.example ESMTP")
            rcpts = []
            for raw in f:
                cmd = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = cmd.split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250 nexthop.example")
                elif verb == "MAIL" or verb == "RSET":
                    rcpts = []
                    say("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = re.search(r"<([^>]*)>", cmd).group(1)
                    if addr in self.refuse:
                        say(f"550 5.1.1 <{addr}>: no such user")
                    else:
                        rcpts.append(addr)
                        say("250 2.1.5 ok")
                elif verb == "DATA":
                    say("354 go on")
                    data = b""
                    for line in f:
                        if line == b".\r\n":
                            break
                        data += line
                    with self.lock:
                        self.accepted.append((list(rcpts), data))
                    say("250 2.0.0 queued")
                elif verb == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("502 5.5.2 no")
        except OSError:
            return
        finally:
            conn.close()

    def copies(self, rcpt, subject):
        with self.lock:
            return sum(1 for rcpts, data in self.accepted
                       if rcpt in rcpts and f"Subject: {subject}".encode() in data)

    def stop(self):
        if self.sock:
            self.sock.close()


@pytest.fixture(scope="module")
def failsync(tmp_path_factory):
    return fault.build(tmp_path_factory.mktemp("fault"))


def test_accepted_recipients_are_recorded_before_the_bounce_is_queued(daemon, failsync,
                                                                     monkeypatch):
    """One recipient accepted by the next hop, one refused: the acceptance is recorded
    before the bounce for the other is queued (its syncs take milliseconds). The disk
    stalls in the first sync after the next hop's replies and the daemon is killed
    there: after the restart the accepted recipient is not sent the message again; the
    refused one is retried and bounced."""
    hop = NextHop(refuse={"nobody-here@example.test"})
    try:
        relay_conf(daemon, hop.port)
        trigger, flog = fault.start(daemon, failsync, monkeypatch, stall="1")
        qid = send(daemon, ["user@example.test", "nobody-here@example.test"],
                   subject="mixed")
        daemon.wait_log(rf"message {qid} deferred \(attempt 1\)")   # the hop is down
        open(trigger, "w").close()
        hop.start()
        rc, _, err = queue(daemon, "flush")
        assert rc == 0, err
        deadline = time.time() + 30
        while not any(l.startswith("stall ") for l in fault.fired(flog)):
            assert time.time() < deadline, f"no sync stalled\n{daemon.log()}"
            time.sleep(0.01)
        assert hop.copies("user@example.test", "mixed") == 1
        daemon.kill9()
        os.unlink(trigger)
        daemon.check_sanitizers()
        daemon.start()
        daemon.wait_log(rf"message {qid}: bounce [0-9A-F]{{16}} queued to "
                        rf"<sender@example\.test>", timeout=30)
        deadline = time.time() + 30
        while daemon.queued() and time.time() < deadline:
            time.sleep(0.05)
        assert daemon.queued() == [], daemon.log()
        assert hop.copies("user@example.test", "mixed") == 1, \
            f"the accepted recipient got the message again\n{daemon.log()}"
        assert hop.copies("sender@example.test", "Undelivered Mail Returned to Sender") == 1
    finally:
        hop.stop()



class RawNextHop:
    """A next hop that keeps the raw bytes of each message's DATA (Postfix strips every
    CR at the end of a line, so it cannot show a bare one) and refuses RCPT for
    nobody-here@."""

    def __init__(self, extensions=()):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.extensions = extensions
        self.data = []
        self.commands = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        buf = b""
        conn.sendall(b"220 raw.example.test\r\n")
        with conn:
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                self.commands.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"".join(b"250-%s\r\n" % e.encode() for e in
                                          ("raw.example.test", *self.extensions)) +
                                 b"250 HELP\r\n")
                elif verb == b"RCPT" and b"nobody-here@" in line:
                    conn.sendall(b"550 5.1.1 no such user\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while b"\r\n.\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    msg, buf = buf.split(b"\r\n.\r\n", 1)
                    self.data.append(msg + b"\r\n")
                    conn.sendall(b"250 2.0.0 kept\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self):
        self.srv.close()


def test_a_bounce_returns_a_long_header_cut_at_a_line_end(daemon):
    """The bounce returns at most 64 KiB of the original header (text/rfc822-headers); a
    header longer than that (max-header-size allows 256 KiB) is cut after its last whole
    line there, never between a CR and its LF: that left a bare CR in the bounce, which
    a strict next hop (mxgate itself) refuses.  Three paddings put each octet of a
    3-octet line at the cut."""
    hop = RawNextHop()
    relay_conf(daemon, hop.port)
    daemon.start()
    for pad in range(3):
        c = daemon.connect(source=ALLOWED)
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("MAIL FROM:<sender@example.test>")[0] == 250
        assert c.cmd("RCPT TO:<nobody-here@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(f"Subject: long header {pad}\r\nX-Pad: {'p' * pad}\r\n" + "a\r\n" * 23000 +
               "\r\nbody\r\n.\r\n")
        assert c.reply()[0] == 250
        c.cmd("QUIT")
        c.close()
    deadline = time.time() + 30
    while len(hop.data) < 3 and time.time() < deadline:
        time.sleep(0.1)
    hop.close()
    assert len(hop.data) == 3, "three bounces"
    for b in hop.data:
        assert b"Subject: Undelivered Mail Returned to Sender" in b
        assert re.search(rb"\r(?!\n)", b) is None, "a bare CR in the bounce"
        assert re.search(rb"(?<!\r)\n", b) is None, "a bare LF in the bounce"


def test_a_bounce_to_an_smtputf8_sender_is_sent_with_smtputf8(daemon):
    """A message that needed SMTPUTF8 (a sender é@…) bounces with SMTPUTF8 too: its
    bounce goes to that non-ASCII address, which a next hop takes only in an SMTPUTF8
    transaction (RFC 6531 §3.4; Postfix and mxgate answer 553 5.6.7 without it), and a
    refused bounce is dropped (no bounce for the null sender): the sender never learnt."""
    hop = RawNextHop(extensions=("8BITMIME", "SMTPUTF8"))
    relay_conf(daemon, hop.port)
    daemon.start()
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<s\u00e9nder@example.test> SMTPUTF8")[0] == 250
    assert c.cmd("RCPT TO:<nobody-here@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<j\u00f8rn.nobody-here@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: utf8\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    c.close()
    deadline = time.time() + 30
    while not hop.data and time.time() < deadline:
        time.sleep(0.1)
    hop.close()
    assert hop.data, "the bounce was not sent"
    bounce_rcpt = "RCPT TO:<s\u00e9nder@example.test>".encode()
    i = hop.commands.index(bounce_rcpt)
    assert hop.commands[i - 1].startswith(b"MAIL FROM:<> ")
    assert b" SMTPUTF8" in hop.commands[i - 1], hop.commands
    # and in RFC 6533's global types: the UTF-8 address as it is, typed utf-8
    bounce = hop.data[-1]
    assert b"Content-Type: message/global-delivery-status\r\n" in bounce, bounce
    assert "Final-Recipient: utf-8; j\u00f8rn.nobody-here@example.test\r\n".encode() in bounce
    assert b"Final-Recipient: rfc822; nobody-here@example.test\r\n" in bounce
    assert b"Content-Type: message/global-headers\r\n" in bounce


def test_a_clock_set_back_does_not_expire_queued_mail(daemon):
    """A message received at T, then the clock set back before T (an NTP step at boot, a
    VM restored from a snapshot): its age was computed as an unsigned number, some 584
    million years, so its next temporary failure expired it at once and bounced it (every
    message in the queue received after the new time, whatever message-expiration-timeout
    says). It must be deferred as before."""
    closed = free_port()  # the next hop is down: a temporary failure
    relay_conf(daemon, closed)
    daemon.start()
    qid = send(daemon, ["user@example.test"], subject="clock")
    daemon.wait_log(rf"message {qid} deferred \(attempt 1\)")
    assert daemon.stop() == 0
    env = os.path.join(daemon.spool, "queue", qid + ".env")
    with open(env) as f:
        text = f.read()
    text = re.sub(r"(?m)^received \d+$", f"received {int(time.time()) + 3600}", text)
    with open(env, "r+") as f:  # in place: the owner stays the run user
        f.write(text)
        f.truncate()
    daemon.start()  # its log starts afresh
    daemon.wait_log(rf"message {qid} deferred \(attempt \d+\)")
    assert f"message {qid}: bounce" not in daemon.log(), daemon.log()
    assert "message expired" not in daemon.log(), daemon.log()
