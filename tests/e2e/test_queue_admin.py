"""Message tracking and `mxgate queue` for administrators (issue 12.2): the line of an
accepted message, one size everywhere, and Postfix/OpenSMTPD's queue tools (--json,
remove all, hold and release) against a running daemon and on the files."""
import json
import os
import re
import subprocess
import urllib.request

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


def relay_conf(daemon, port, top=""):
    daemon.configure(top=top, connectors="""
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


# ---- queue tools: --json, hold, release, remove all ------------------------------------

def held_gauge(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    return int(float(re.search(r"^mxgate_queue_held_messages (\S+)$", text, re.M).group(1)))


def listing(daemon):
    rc, out, err = queue(daemon, "list", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["count"] == len(doc["messages"])
    return doc, {m["id"]: m for m in doc["messages"]}


def test_hold_survives_a_restart_and_release_delivers(daemon, sink):
    # the next hop is down at first: every message waits for its retry
    mport = free_port()
    relay_conf(daemon, sink.port, top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    ids = [send(daemon, subject=f"m{i}") for i in range(3)]
    sizes = {i: int(accepted(daemon, i)[1].group(3)) for i in ids}
    for i in ids:
        daemon.wait_log(rf"message {i} deferred \(attempt 1\)")

    rc, out, err = queue(daemon, "hold", ids[0])
    assert (rc, out) == (0, f"held {ids[0]}\n"), err
    daemon.wait_log(rf"message {ids[0]} held by the administrator")
    assert held_gauge(mport) == 1
    rc, out, err = queue(daemon, "hold", ids[0])
    assert rc == 1 and f"no unheld message {ids[0]}" in err

    doc, by_id = listing(daemon)
    assert doc["daemon_running"] is True and doc["count"] == 3
    assert by_id[ids[0]]["state"] == "held" and by_id[ids[0]]["next_attempt"] is None
    assert {by_id[i]["state"] for i in ids[1:]} == {"waiting"}
    for i in ids:      # one size everywhere: the accepted line's
        assert by_id[i]["size"] == sizes[i]
        assert by_id[i]["sender"] == "sender@example.test"
        assert by_id[i]["connector"] == "Relay" and by_id[i]["attempts"] == 1
        assert by_id[i]["recipients"][0]["address"] == "user@example.test"
        assert by_id[i]["recipients"][0]["state"] == "pending"
    rc, out, _ = queue(daemon)
    row = next(l for l in out.splitlines() if l.startswith(ids[0]))
    assert row.split()[2] == str(sizes[ids[0]]) and row.split()[4] == "held", row

    # the next hop comes up; a flush delivers the others, never the held one
    sink.start()
    assert queue(daemon, "flush")[0] == 0
    for i in ids[1:]:
        daemon.wait_log(rf"message {i}: to=<user@example.test>, .*status=sent")
    assert sorted(sink.queue_ids()) == sorted(ids[1:])

    # held across a restart: recovered as held, still not delivered
    assert daemon.stop() == 0
    doc, by_id = listing(daemon)
    assert doc["daemon_running"] is False and list(by_id) == [ids[0]]
    assert by_id[ids[0]]["state"] == "held"
    daemon.start()
    doc, by_id = listing(daemon)
    assert by_id[ids[0]]["state"] == "held"
    assert held_gauge(mport) == 1
    assert "queue: 1 held" in subprocess.run([BIN, "status", "-c", daemon.conf], capture_output=True,
                                      text=True, timeout=30).stdout

    rc, out, err = queue(daemon, "release", "all")
    assert rc == 0 and f"released {ids[0]}" in out and "1 message released" in out, err
    daemon.wait_log(rf"message {ids[0]}: to=<user@example.test>, .*size={sizes[ids[0]]}, "
                    r".*status=sent")
    assert ids[0] in sink.queue_ids()
    assert held_gauge(mport) == 0


def test_hold_all_and_remove_all_through_the_daemon(daemon):
    relay_conf(daemon, free_port())          # nothing listens: every message waits
    daemon.start()
    ids = [send(daemon, subject=f"m{i}") for i in range(3)]
    for i in ids:
        daemon.wait_log(rf"message {i} deferred \(attempt 1\)")
    # -c after the verb too, as with postqueue and smtpctl: an admin types it either way
    r = subprocess.run([BIN, "queue", "hold", "all", "-c", daemon.conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "3 messages held" in r.stdout, r.stderr
    r = subprocess.run([BIN, "queue", "list", "--config", daemon.conf, "--json"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and '"count": 3' in r.stdout.replace('":3', '": 3'), r.stderr
    assert {m["state"] for m in listing(daemon)[0]["messages"]} == {"held"}
    rc, out, err = queue(daemon, "remove", "all")
    assert rc == 0 and "3 messages removed" in out, err
    assert all(f"removed {i}" in out for i in ids)
    assert listing(daemon)[0]["count"] == 0
    assert not [f for f in os.listdir(os.path.join(daemon.spool, "queue"))]
    for i in ids:
        daemon.wait_log(rf"message {i} removed from the queue by the administrator")


def test_hold_release_and_remove_all_on_the_files(daemon):
    relay_conf(daemon, free_port())
    daemon.start()
    ids = [send(daemon, subject=f"m{i}") for i in range(2)]
    for i in ids:
        daemon.wait_log(rf"message {i} deferred \(attempt 1\)")
    assert daemon.stop() == 0
    rc, out, err = queue(daemon, "hold", "all")
    assert rc == 0 and "2 messages held (the daemon is not running)" in out, err
    doc, by_id = listing(daemon)
    assert {m["state"] for m in doc["messages"]} == {"held"}
    rc, out, err = queue(daemon, "release", ids[1])
    assert (rc, out) == (0, f"released {ids[1]}\n"), err
    assert listing(daemon)[1][ids[1]]["state"] == "stopped"
    # the files stay the run user's: the daemon recovers them (not into corrupt/)
    daemon.start()
    daemon.wait_log(r"2 queued messages recovered")
    assert listing(daemon)[1][ids[0]]["state"] == "held"
    assert daemon.stop() == 0
    rc, out, err = queue(daemon, "remove", "all")
    assert rc == 0 and "2 messages removed" in out, err
    assert listing(daemon)[0]["count"] == 0


def test_queue_usage_errors(daemon):
    relay_conf(daemon, free_port())
    for args in (("hold",), ("hold", "nothex"), ("release", "1", "2"), ("flush", "--json")):
        r = subprocess.run([BIN, "queue", "-c", daemon.conf, *args], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode in (1, 2), (args, r)
        assert r.stderr, args


def test_queue_list_shows_control_characters_of_addresses_as_question_marks(daemon):
    """A sender's UTF-8 address with U+009B, a terminal's CSI, in it: `mxgate queue` shows
    it as '?' (the administrator's terminal takes no escape sequence from a client); the
    rest of the UTF-8 address as it is."""
    relay_conf(daemon, free_port())          # nothing listens: the message waits
    daemon.start()
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<s\u00e9\u009b31mx@example.test> SMTPUTF8")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message("csi") + ".\r\n")
    code, text = c.reply()
    assert code == 250, text
    c.close()
    qid = re.search(r"<([0-9A-F]{16})>", text).group(1)
    daemon.wait_log(rf"message {qid} deferred")
    r = subprocess.run([BIN, "queue", "-c", daemon.conf], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"\xc2\x9b" not in r.stdout and b"\x1b" not in r.stdout, r.stdout
    assert "<s\u00e9?31mx@example.test>".encode() in r.stdout, r.stdout
