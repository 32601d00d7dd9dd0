"""Message tracking and `mxgate queue` for administrators (issue 12.2): the line of an
accepted message, one size everywhere, and Postfix/OpenSMTPD's queue tools (--json,
remove all, hold and release) against a running daemon and on the files."""
import json
import os
import re
import subprocess

import pytest

from daemon import ALLOWED, BIN, free_port, message
from peers import SmtpSink

ACCEPTED = (r"message ([0-9A-F]{16}) queued: from=<([^>]*)>, size=(\d+), nrcpt=(\d+), "
            r"message-id=(\S+), helo=(\S+), tls=(.*)$")


@pytest.fixture
def sink():
    s = SmtpSink()
    yield s
    s.cleanup()


def relay_conf(daemon, port):
    daemon.configure(connectors="""
        connector "Relay" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.2" }
          tarpit-interval = 0s
        }
    """, extra=f'deliver {{\n  relay = "127.0.0.1:{port}"\n  retry-interval = 1h\n}}\n')
    text = open(daemon.conf).read()
    text = re.sub(r'deliver \{ maildir = "[^"]*" \}\n', "", text, count=1)
    with open(daemon.conf, "w") as f:
        f.write(text)


def send(daemon, rcpts=("user@example.test",), tls=False, headers="", subject="tracked"):
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    if tls:
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<sender@example.test>")[0] == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(subject, to=", ".join(rcpts), sender="sender@example.test",
                   extra_headers=headers) + ".\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.cmd("QUIT")
    c.close()
    return re.search(r"<([0-9A-F]{16})>", text).group(1)


def accepted(daemon, qid):
    line = daemon.wait_log(rf"message {qid} queued: ")[0]
    m = re.search(ACCEPTED, line)
    assert m, line
    return line, m


def queue(daemon, *args):
    r = subprocess.run([BIN, "queue", "-c", daemon.conf, *args], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


# ---- the accepted message's line, and one size everywhere --------------------------------

def test_accepted_line_names_the_message_and_its_size_is_the_relayed_size(daemon, sink):
    sink.start()
    relay_conf(daemon, sink.port)
    daemon.start()
    # a folded Message-ID with a byte that is not printable ASCII
    qid = send(daemon, rcpts=("user@example.test", "other@example.test"), tls=True,
               headers="Message-ID:\r\n <tok.7\x01x@client.example> (comment)\r\n")
    line, m = accepted(daemon, qid)
    assert m.group(2) == "sender@example.test"
    assert m.group(4) == "2"
    assert m.group(5) == "<tok.7?x@client.example>"
    assert m.group(6) == "client.example"
    assert re.fullmatch(r"TLSv1\.[23] \S+", m.group(7)), line
    assert 'client=[127.0.0.2]:' in line and 'connector="Relay"' in line
    size = int(m.group(3))

    # the delivery lines carry the same number, and it is what the next hop received
    lines = daemon.wait_log(rf"message {qid}: to=<[^>]*>, relay=.* status=sent", count=2)
    assert all(f", size={size}, " in l for l in lines), (size, lines)
    daemon.wait_log(rf"message {qid} .*: 2 delivered, .*, {size} bytes\)")
    # smtp-sink writes its own header lines first, LF line ends, and an empty line last
    dump = sink.dumps()[0]
    ours = dump[dump.index(b"Received: from client.example"):]
    assert ours.endswith(b"Hello.\n\n")
    ours = ours[:-1].replace(b"\n", b"\r\n")
    assert len(ours) == size, (size, ours)


def test_without_message_id_and_tls(daemon):
    daemon.configure()
    daemon.start()
    qid = send(daemon)
    line, m = accepted(daemon, qid)
    assert (m.group(5), m.group(7)) == ("none", "no"), line
    # Maildir: the file holds the Return-Path line more, and nothing else
    size = int(m.group(3))
    got = daemon.wait_messages(1)[0]
    assert got.startswith(b"Return-Path: <sender@example.test>\r\n")
    assert len(got) - len(b"Return-Path: <sender@example.test>\r\n") == size
    daemon.wait_log(rf"message {qid}: to=<user@example.test>, .*, size={size}, ")
