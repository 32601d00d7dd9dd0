"""Relay connection reuse (relay-idle-timeout) and BDAT towards a next hop that offers
CHUNKING (RFC 3030), against a next hop written on Python's socket module: it offers
PIPELINING and CHUNKING (or not), records every connection, command and chunk, and can
close a connection behind the gateway's back, as a next hop's own idle timeout does."""
import os
import re
import socket
import threading
import time
import urllib.request

import pytest

from daemon import ALLOWED, free_port


class ChunkSink:
    """A next hop on 127.0.0.1: answers every command, reads BDAT chunks by their size
    and DATA up to the dot, and keeps what it got per connection."""

    def __init__(self, chunking=True):
        self.chunking = chunking
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []     # per connection: list of commands (str)
        self.messages = []  # (how, bytes): "BDAT" or "DATA", the message as received
        self.drop_after_message = False  # close each connection after its first message
        self.socks = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        cmds = []
        with self.lock:
            self.conns.append(cmds)
        f = s.makefile("rb")
        s.sendall(b"220 sink.example ESMTP\r\n")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("ascii", "replace")
                with self.lock:
                    cmds.append(cmd)
                verb = cmd[:4].upper()
                if verb in ("EHLO", "HELO"):
                    ext = "250-PIPELINING\r\n250-8BITMIME\r\n"
                    if self.chunking:
                        ext += "250-CHUNKING\r\n"
                    s.sendall(f"250-sink.example\r\n{ext}250 SIZE 10000000\r\n".encode())
                elif verb == "BDAT":
                    size = int(cmd.split()[1])
                    data = f.read(size)
                    assert cmd.upper().endswith(" LAST")
                    with self.lock:
                        self.messages.append(("BDAT", data))
                    s.sendall(b"250 2.0.0 chunk queued\r\n")
                    if self.drop_after_message:
                        return
                elif verb == "DATA":
                    s.sendall(b"354 go ahead\r\n")
                    data = b""
                    while True:
                        ln = f.readline()
                        if ln in (b".\r\n", b""):
                            break
                        data += ln[1:] if ln.startswith(b".") else ln
                    with self.lock:
                        self.messages.append(("DATA", data))
                    s.sendall(b"250 2.0.0 data queued\r\n")
                    if self.drop_after_message:
                        return
                elif verb == "QUIT":
                    s.sendall(b"221 bye\r\n")
                    return
                else:
                    s.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            f.close()
            s.close()

    def wait_messages(self, n, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"the sink got {len(self.messages)} messages, not {n}")

    def wait_for(self, pred, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if pred():
                    return
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout}s: {self.conns}")

    def cleanup(self):
        self.stopped = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def configure(daemon, port, mport, **deliver):
    opts = {"relay": f'"127.0.0.1:{port}"', "retry-interval": "1s", "relay-tls": "none",
            "relay-connections": "1", **deliver}
    body = "\n".join(f"  {k} = {v}" for k, v in opts.items())
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"', connectors="""
        connector "Relay" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.1", "127.0.0.2" }
          tarpit-interval = 0s
        }
    """, extra=f"deliver {{\n{body}\n}}\n")
    text = open(daemon.conf).read()
    text = re.sub(r'deliver \{ maildir = "[^"]*" \}\n', "", text, count=1)
    with open(daemon.conf, "w") as f:
        f.write(text)


# dots at line starts, an empty line, 8-bit text, 90 KB (more than one 64 KiB write):
# what must not change
BODY = (b"Hello.\r\n.leading dot\r\n..two dots\r\n.\r\n\r\n"
        + "caf\u00e9 \u00fcber\r\n".encode() + (b"x" * 900 + b"\r\n") * 100 + b"end\r\n")


def send(daemon, subject):
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<sender@example.test> BODY=8BITMIME")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    stuffed = b"".join(b"." + ln if ln.startswith(b".") else ln
                       for ln in BODY.splitlines(keepends=True))
    head = f"From: <sender@example.test>\r\nTo: <user@example.test>\r\nSubject: {subject}\r\n\r\n"
    c.send(head.encode() + stuffed + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.cmd("QUIT")
    c.close()
    return re.search(r"<([0-9A-F]{16})>", text).group(1)


def relay_conns(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^mxgate_relay_connections_total\{result="(\w+)"\} (\d+)$', text, re.M)}


@pytest.fixture
def sink():
    s = ChunkSink()
    yield s
    s.cleanup()


def test_messages_reuse_one_connection_and_go_by_bdat_unchanged(daemon, sink):
    mport = free_port()
    configure(daemon, sink.port, mport)
    daemon.start()
    n = 4
    for i in range(n):
        qid = send(daemon, f"reuse {i}")
        daemon.wait_log(rf"message {qid} relayed to \[127\.0\.0\.1\]:{sink.port}")
    got = sink.wait_messages(n)
    # one connection carried them all, each later batch after an RSET
    assert len(sink.conns) == 1, sink.conns
    cmds = sink.conns[0]
    assert sum(c.startswith("BDAT ") for c in cmds) == n, cmds
    assert cmds.count("RSET") == n - 1, cmds
    assert "DATA" not in cmds
    for i, (how, data) in enumerate(got):
        assert how == "BDAT"
        # exactly the bytes the client sent (no dot-stuffing left, nothing added)
        assert data.endswith(f"Subject: reuse {i}\r\n\r\n".encode() + BODY), data[-300:]
        assert data.startswith(b"Received: from client.example")
    assert relay_conns(mport) == {"opened": 1, "reused": n - 1, "stale": 0, "failed": 0}
    assert daemon.wait_queue_empty() == []


def test_without_chunking_data_is_dot_stuffed(daemon):
    s = ChunkSink(chunking=False)
    try:
        mport = free_port()
        configure(daemon, s.port, mport)
        daemon.start()
        qid = send(daemon, "no chunking")
        daemon.wait_log(rf"message {qid} relayed to")
        how, data = s.wait_messages(1)[0]
        assert how == "DATA"
        assert data.endswith(b"Subject: no chunking\r\n\r\n" + BODY)
        assert not any(c.startswith("BDAT") for c in s.conns[0])
    finally:
        s.cleanup()


def test_a_kept_connection_closed_by_the_next_hop_is_replaced_without_a_failure(daemon, sink):
    sink.drop_after_message = True  # as if its idle timeout closed each one
    mport = free_port()
    configure(daemon, sink.port, mport)
    daemon.start()
    first = send(daemon, "first")
    daemon.wait_log(rf"message {first} relayed to")
    sink.wait_for(lambda: len(sink.conns) == 1)
    second = send(daemon, "second")
    daemon.wait_log(rf"message {second} relayed to .*: 1 delivered")
    daemon.wait_log(r"relay: the kept connection to \[127\.0\.0\.1\]:\d+ is no longer usable")
    assert len(sink.wait_messages(2)) == 2
    assert len(sink.conns) == 2
    # not a failed attempt: the message went on its first attempt, nothing deferred
    assert "deferred" not in daemon.log()
    daemon.wait_log(rf"message {second}: to=<user@example\.test>, .*attempt=1, .*status=sent")
    assert relay_conns(mport) == {"opened": 2, "reused": 0, "stale": 1, "failed": 0}


def test_an_idle_connection_is_closed_with_quit(daemon, sink):
    mport = free_port()
    configure(daemon, sink.port, mport, **{"relay-idle-timeout": "1s"})
    daemon.start()
    qid = send(daemon, "idle")
    daemon.wait_log(rf"message {qid} relayed to")
    sink.wait_for(lambda: sink.conns and sink.conns[0][-1:] == ["QUIT"])
    # the next message opens a new connection
    qid = send(daemon, "after idle")
    daemon.wait_log(rf"message {qid} relayed to")
    sink.wait_for(lambda: len(sink.conns) == 2)
    assert relay_conns(mport)["opened"] == 2


def test_idle_timeout_zero_closes_after_each_batch(daemon, sink):
    mport = free_port()
    configure(daemon, sink.port, mport, **{"relay-idle-timeout": "0s"})
    daemon.start()
    for i in range(2):
        qid = send(daemon, f"zero {i}")
        daemon.wait_log(rf"message {qid} relayed to")
        sink.wait_for(lambda: sink.conns[-1][-1:] == ["QUIT"])
    assert len(sink.conns) == 2
    assert relay_conns(mport)["reused"] == 0


def spool_inodes(daemon):
    """Every inode under the spool's queue/, tmp/ and free/ (its files; issue 15.3)."""
    for _ in range(50):
        found = set()
        try:
            for sub in ("queue", "tmp", "free"):
                d = os.path.join(daemon.spool, sub)
                for name in os.listdir(d):
                    found.add(os.stat(os.path.join(d, name)).st_ino)
            return found
        except FileNotFoundError:  # renamed between listdir and stat: look again
            time.sleep(0.01)
    raise AssertionError("the spool never held still")


def test_steady_relay_traffic_creates_no_inodes(daemon, sink):
    """Relay mode recycles data files with the envelopes: after the first messages have
    filled free/, relaying more reuses the same files (inode numbers and the number of
    directory entries stay put) — none is created, none freed."""
    mport = free_port()
    configure(daemon, sink.port, mport)
    daemon.start()
    qid = send(daemon, "warm-up")
    daemon.wait_log(rf"message {qid} relayed to")
    daemon.wait_queue_empty()
    before = spool_inodes(daemon)
    assert len(before) == 2, before  # one envelope and one data file wait in free/
    for i in range(8):
        qid = send(daemon, f"steady {i}")
        daemon.wait_log(rf"message {qid} relayed to")
        daemon.wait_queue_empty()
        assert spool_inodes(daemon) == before, f"message {i} made or freed an inode"
    assert len(sink.wait_messages(9)) == 9
