"""`mxgate status` over the control socket: uptime, the configuration's generation and
load time, each connector's live sessions and totals, the queue and the delivery state;
exit 3 when no daemon runs."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from daemon import BIN
from helpers_ops import (IS_ROOT, block_delivery, connector, expect, session, transaction,
                         unblock_delivery)


def status(daemon):
    r = subprocess.run([BIN, "status", "-c", daemon.conf], capture_output=True, text=True,
                       timeout=30)
    return r.returncode, r.stdout, r.stderr


def line(out, prefix):
    hits = [l for l in out.splitlines() if l.startswith(prefix)]
    assert len(hits) == 1, (prefix, out)
    return hits[0]


def test_status_reports_connectors_queue_and_generation(daemon):
    two = (connector("Filter", ranges=("127.0.0.2",)) +
           connector("Apps", ranges=("127.0.0.5",), usage="internal"))
    daemon.configure(connectors=two)
    block_delivery(daemon)  # a message stays queued until unblocked
    daemon.start()
    rc, out, err = status(daemon)
    assert rc == 0, err
    assert re.match(rf"mxgate \S+ \(pid {daemon.proc.pid}\): up \d+s, since "
                    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out.splitlines()[0]), out
    assert re.search(rf"^configuration: {re.escape(daemon.conf)}, generation 1, loaded .*; "
                     r"reloads since start: 0 accepted, 0 refused$", out, re.M), out
    assert line(out, 'connector "Filter"') == (
        'connector "Filter": 0 open, 0 sessions, 0 messages queued (0 bytes), '
        '0 commands refused')
    assert line(out, "queue:") == "queue: 0 messages"

    # two messages through Filter, one left queued (its Maildir blocked), a session
    # held open on Apps, a refused RCPT on Filter
    c = session(daemon)
    for tok in ("tok-a", "tok-b"):
        code, text = transaction(c, tok)
        assert code == 250, text
    expect(c, 250, "MAIL FROM:<x@remote.example>")
    expect(c, 550, "RCPT TO:<nobody@elsewhere.example>")
    c.close()
    held = session(daemon, source="127.0.0.5")
    daemon.configure(connectors=two)
    daemon.reload()
    rc, out, err = status(daemon)
    assert rc == 0, err
    assert "generation 2" in out and "reloads since start: 1 accepted, 0 refused" in out, out
    filt = line(out, 'connector "Filter"')
    assert re.fullmatch(r'connector "Filter": 0 open, 1 session, 2 messages queued '
                        r'\(\d+ bytes\), 1 command refused', filt), filt
    assert line(out, 'connector "Apps"').startswith('connector "Apps": 1 open, 1 session,')
    assert re.search(r"^sessions: 1 open; closed before a session since start: "
                     r"0 no_connector,", out, re.M), out
    assert re.fullmatch(r"queue: 2 messages, the oldest from \S+ \(\d+s ago\)",
                        line(out, "queue:")), out
    assert re.fullmatch(r"delivery: Maildir; attempts since start: 0 delivered, \d+ deferred, "
                        r"0 failed", line(out, "delivery:")), out
    assert "privileged reader running" in line(out, "state:") or \
        "no privileged reader" in line(out, "state:")
    held.close()

    unblock_delivery(daemon)
    subprocess.run([BIN, "queue", "-c", daemon.conf, "flush"], check=True,
                   capture_output=True)
    daemon.wait_messages(2)
    daemon.wait_queue_empty()
    rc, out, err = status(daemon)
    assert line(out, "queue:") == "queue: 0 messages", out
    assert re.search(r"attempts since start: 2 delivered,", out), out


def test_status_when_not_running_exits_3_and_says_so(daemon):
    daemon.configure()
    rc, out, err = status(daemon)
    assert rc == 3, (rc, out, err)
    assert "mxgate is not running (nothing answers on" in err, err


def as_stranger(conf):
    """status and queue list run as uid 4242, neither root nor the daemon's user (the
    harness runs it as nobody); each must fail with exit 1."""
    for args in (["status"], ["queue", "list"]):
        r = subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups",
                            BIN, *args, "-c", conf],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (args, r)
        yield r


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run the command as another user")
def test_a_user_the_control_socket_refuses_is_told_who_may(daemon):
    """status and queue run by a user who may not use the control socket: the error says
    whose it is and what to do, not only "Permission denied"."""
    daemon.configure()
    daemon.start()
    # a user who is neither root nor the daemon's (the harness runs it as nobody), with a
    # copy of the file it may read (pytest's own directory is root's alone)
    public = tempfile.mkdtemp(prefix="mxgate-status-")
    try:
        os.chmod(public, 0o755)
        conf = os.path.join(public, "readable.conf")
        shutil.copy(daemon.conf, conf)
        os.chmod(conf, 0o644)
        for r in as_stranger(conf):
            assert "cannot reach the daemon at " in r.stderr, r.stderr
            assert "Permission denied (the control socket is for root and the user mxgate " \
                   "runs as: run this command as one of them" in r.stderr, r.stderr
        # the file itself unreadable (as /etc/mxgate/mxgate.conf is to most users)
        os.chmod(conf, 0o600)
        for r in as_stranger(conf):
            assert f"this user may not read {conf}, where the daemon's spool and control " \
                   "socket are named; run the command as root (sudo)" in r.stderr, r.stderr
    finally:
        shutil.rmtree(public)


def test_status_and_queue_reach_the_daemon_while_the_file_has_errors(daemon):
    """A typo in the file (an edit under way, the reload refused): the daemon runs on,
    and status and queue still reach it, through the spool the file's statements name."""
    daemon.configure()
    daemon.start()
    with open(daemon.conf, "a") as f:
        f.write("tarpit-intervl = 0s\n")
    daemon.reload(expect_ok=False)
    rc, out, err = status(daemon)
    assert rc == 0, err
    assert "reloads since start: 0 accepted, 1 refused" in out, out
    assert "unknown key 'tarpit-intervl'" in err and "asking the daemon on the spool" in err
    r = subprocess.run([BIN, "queue", "-c", daemon.conf], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "0 messages" in r.stdout, r.stdout + r.stderr
    # a file that does not parse names no spool: said, exit 1
    with open(daemon.conf, "a") as f:
        f.write('connector {\n')
    rc, out, err = status(daemon)
    assert rc == 1 and "cannot be read or parsed" in err, err


def test_a_binding_a_reload_cannot_open_is_shown_until_one_does(daemon):
    """A reload whose new binding is taken applies the rest (logged); status and the gauge
    mxgate_bindings_not_listening show it, and the next reload after the port is freed
    opens it."""
    import socket
    import urllib.request
    from daemon import free_port
    mport, other = free_port(), free_port()
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", other))
    holder.listen()

    def gauge():
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            m = re.search(r"^mxgate_bindings_not_listening (\d+)$", r.read().decode(), re.M)
        assert m, "no mxgate_bindings_not_listening series"
        return int(m.group(1))

    assert gauge() == 0
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"',
                     connectors=connector("Test", bindings=("127.0.0.1:{port}",
                                                            f"127.0.0.1:{other}")))
    daemon.reload()
    daemon.wait_log(r"reload: 1 binding could not be opened")
    rc, out, err = status(daemon)
    assert rc == 0, err
    assert "1 listener (1 binding of the configuration not open" in line(out, "state:"), out
    assert gauge() == 1
    holder.close()
    daemon.reload()
    rc, out, err = status(daemon)
    assert "2 listeners, " in line(out, "state:") and "not open" not in out, out
    assert gauge() == 0
