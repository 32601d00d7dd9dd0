"""SIGHUP reload, SIGTERM drain and the privilege drop, on the real daemon.

A reload builds and checks the whole new configuration and swaps it in for new
connections only; open sessions finish under the snapshot they started with. SIGTERM
closes the listeners at once, lets transactions in DATA finish, says 421 to idle sessions
and exits 0; drain-timeout bounds the wait.
"""
import os
import re
import socket
import time

from daemon import ALLOWED, free_port
from helpers_ops import (IS_ROOT, banner, cert_fingerprint, connector, expect, new_cert,
                         nobody, presented_fingerprint, queue_id, refused, restart, send_one,
                         session, settle, sigterm, spool_dir, task_status, token_counts,
                         transaction, wait_exit, zero_bytes)

OTHER = "127.0.0.4"
MANY = dict(max_inbound_connection_per_source="unlimited",
            max_inbound_connection_percentage_per_source=100)


def received_line(msg):
    """The Received: header mxgate added (the one after Return-Path:), unfolded."""
    text = msg.decode("utf-8", "replace")
    m = re.search(r"^Received: (.*?)\r\n(?=\S)", text, re.M | re.S)
    assert m, text[:400]
    return re.sub(r"\r\n\s+", " ", m.group(1))


def test_sighup_keeps_50_open_sessions_on_their_old_config(daemon):
    """50 sessions at every step of a transaction (banner, EHLO, MAIL, RCPT, inside DATA)
    when SIGHUP swaps in a config that changes the banner, the fqdn, the connector name,
    lowers max-recipients-per-message to 1 and no longer admits their address. None is
    dropped: each finishes under the old config (a second RCPT is still allowed, the
    Received: header names the old connector) and gets 250. New connections get the new
    config: the old address gets zero bytes, a newly admitted one the new banner."""
    old = connector("Old", ranges=("127.0.0.2",), banner='"220 old config ready"',
                    max_recipients_per_message=10, **MANY)
    new = connector("New", ranges=(OTHER,), banner='"220 new config ready"',
                    fqdn='"new.example.test"', max_recipients_per_message=1, **MANY)
    daemon.configure(connectors=old)
    daemon.start()

    sessions = []
    for i in range(50):
        phase = i % 5
        c = daemon.connect(source=ALLOWED)
        assert banner(c) == "220 old config ready"
        if phase >= 1:
            expect(c, 250, "EHLO client.example")
        if phase >= 2:
            expect(c, 250, "MAIL FROM:<sender@remote.example>")
        if phase >= 3:
            expect(c, 250, "RCPT TO:<user@example.test>")
        if phase >= 4:
            expect(c, 354, "DATA")
            c.send(f"From: sender@remote.example\r\nTo: user@example.test\r\n"
                   f"Subject: tok-s{i}\r\n\r\nfirst half\r\n")
        sessions.append((i, phase, c))

    daemon.configure(connectors=new)
    daemon.reload()

    # new connections: the new configuration
    assert zero_bytes("127.0.0.1", daemon.port, ALLOWED) == b""
    c = daemon.connect(source=OTHER)
    assert banner(c) == "220 new config ready"
    assert "250-new.example.test" in expect(c, 250, "EHLO client.example")
    expect(c, 250, "MAIL FROM:<sender@remote.example>")
    expect(c, 250, "RCPT TO:<user2@example.test>")
    expect(c, 452, "RCPT TO:<user@example.test>", startswith="452 4.5.3 Too many recipients")
    expect(c, 354, "DATA")
    c.send("Subject: tok-new\r\n\r\nnew\r\n.\r\n")
    expect(c, 250)
    c.close()

    # the old sessions: every one finishes its transaction under the old configuration
    for i, phase, c in sessions:
        try:
            if phase == 0:
                ehlo = expect(c, 250, "EHLO client.example")
                assert ehlo.startswith("250-mx.example.test"), ehlo
            if phase <= 1:
                expect(c, 250, "MAIL FROM:<sender@remote.example>")
            if phase <= 2:
                expect(c, 250, "RCPT TO:<user@example.test>")
            if phase <= 3:
                expect(c, 250, "RCPT TO:<user2@example.test>")   # old limit: 10
                expect(c, 354, "DATA")
                c.send(f"Subject: tok-s{i}\r\n\r\nafter the reload\r\n.\r\n")
            else:
                c.send("second half\r\n.\r\n")
            code, text = c.reply()
            assert code == 250, f"session {i} (phase {phase}): {text}"
            expect(c, 221, "QUIT")
        except (OSError, ConnectionError) as e:
            raise AssertionError(f"session {i} (phase {phase}) dropped: {e!r}\n{daemon.log()}")
        finally:
            c.close()

    msgs = daemon.wait_messages(50)
    counts = token_counts(daemon)
    assert counts == {f"tok-s{i}": 1 for i in range(50)}, counts
    for m in msgs:
        line = received_line(m)
        assert 'by mx.example.test (mxgate, connector "Old")' in line, line
    user2 = daemon.wait_messages(41, user="user2")
    lines = [received_line(m) for m in user2]
    assert sum('connector "Old"' in l for l in lines) == 40, lines
    assert sum('by new.example.test (mxgate, connector "New")' in l for l in lines) == 1, lines


def test_broken_config_on_sighup_is_refused_and_the_old_one_serves(daemon):
    """A reload with errors logs each one as FILE:LINE plus "reload refused"; the running
    configuration keeps serving new connections; a later good reload still works."""
    good = connector("Test", banner='"220 good old banner"')
    daemon.configure(connectors=good)
    daemon.start()

    broken = connector("Test", ranges=("127.0.0.2", "300.1.2.3"), banner='"hello there"',
                       max_message_size='"lots"') + "no-such-key = 5\n"
    daemon.configure(connectors=broken)
    with open(daemon.conf) as f:
        lines = f.read().split("\n")

    def line_of(needle):
        return next(n for n, l in enumerate(lines, 1) if needle in l)

    expected = {line_of("300.1.2.3"): "300.1.2.3", line_of("lots"): "max-message-size",
                line_of("hello there"): "banner", line_of("no-such-key"): "no-such-key"}
    daemon.reload(expect_ok=False)
    daemon.wait_log(r"reload refused: 4 errors in " + re.escape(daemon.conf))
    for line, what in expected.items():
        daemon.wait_log(rf"error: {re.escape(daemon.conf)}:{line}: .*{re.escape(what)}")

    # the old configuration serves on
    c = session(daemon)
    code, text = transaction(c, "tok-after-refused")
    assert code == 250, text
    c.close()
    c = daemon.connect()
    assert banner(c) == "220 good old banner"
    c.close()
    daemon.wait_messages(1)

    # a TLS pair that cannot be loaded is refused the same way
    daemon.configure(connectors=connector("Test", banner='"220 would be new"'))
    with open(daemon.conf) as f:
        text = f.read()
    with open(daemon.conf, "w") as f:
        f.write(text.replace(daemon.cert, daemon.cert + ".missing"))
    daemon.reload(expect_ok=False)
    c = daemon.connect()
    assert banner(c) == "220 good old banner"
    c.close()

    # and a good reload afterwards applies
    daemon.configure(connectors=connector("Test", banner='"220 fixed new banner"'))
    daemon.reload()
    c = daemon.connect()
    assert banner(c) == "220 fixed new banner"
    c.close()


def test_reload_adds_and_removes_bindings_and_reloads_the_certificate(daemon):
    """A reload opens the listeners of new bindings and closes those of removed ones (a
    session accepted on a removed one still finishes), and a new certificate is
    presented to STARTTLS after SIGHUP."""
    p1, p2 = daemon.port, free_port()
    daemon.configure(connectors=connector("Test", bindings=(f"127.0.0.1:{p1}",)))
    daemon.start()
    assert refused("127.0.0.1", p2)
    old_fp = cert_fingerprint(daemon.cert)
    assert presented_fingerprint(daemon) == old_fp

    survivor = session(daemon, port=p1)
    daemon.configure(connectors=connector("Test", bindings=(f"127.0.0.1:{p2}",)))
    new_fp = new_cert(daemon.cert, daemon.key)
    assert new_fp != old_fp
    daemon.reload()
    daemon.wait_log(rf"stopped listening on 127\.0\.0\.1:{p1}")

    assert refused("127.0.0.1", p1), "the removed binding still accepts"
    c = session(daemon, port=p2)
    code, text = transaction(c, "tok-new-port")
    assert code == 250, text
    c.close()
    code, text = transaction(survivor, "tok-survivor")
    assert code == 250, text
    expect(survivor, 221, "QUIT")
    survivor.close()
    assert presented_fingerprint(daemon, port=p2) == new_fp
    daemon.wait_messages(2)
    assert token_counts(daemon) == {"tok-new-port": 1, "tok-survivor": 1}


def test_sigterm_drains_finishes_data_and_says_421_to_idle_sessions(daemon):
    """SIGTERM: the listeners close at once; a transaction inside DATA finishes and gets
    its 250; idle sessions get "421 4.3.2 Service shutting down" and are closed; the
    process exits 0 once the sessions are gone, and the message is delivered."""
    daemon.configure(connectors=connector("Test", **MANY))
    daemon.start()
    idle = [session(daemon) for _ in range(3)]
    busy = session(daemon)
    expect(busy, 250, "MAIL FROM:<sender@remote.example>")
    expect(busy, 250, "RCPT TO:<user@example.test>")
    expect(busy, 354, "DATA")
    busy.send("Subject: tok-inflight\r\n\r\nfirst part\r\n")

    sigterm(daemon)
    daemon.wait_log(r"stopping: no new connections")
    daemon.wait_log(rf"stopped listening on 127\.0\.0\.1:{daemon.port}")
    assert refused("127.0.0.1", daemon.port), "still accepting after SIGTERM"
    for c in idle:
        code, text = c.reply()
        assert (code, text) == (421, "421 4.3.2 Service shutting down, closing "
                                     "transmission channel"), text
        assert c.recv_all(5) == b""
        c.close()
    assert daemon.proc.poll() is None, "exited with a transaction in DATA"

    busy.send("second part\r\n.\r\n")
    code, text = busy.reply()
    assert code == 250, f"{text}\n{daemon.log()}"
    qid = queue_id(text)
    rest = busy.recv_all(10)
    assert rest in (b"", b"421 4.3.2 Service shutting down, closing transmission channel\r\n"), rest
    busy.close()
    rc, _ = wait_exit(daemon, 60)
    assert rc == 0, daemon.log()

    # delivered before the exit, or still queued and delivered at the next start
    restart(daemon)
    settle(daemon, n_expected=1)
    assert token_counts(daemon) == {"tok-inflight": 1}, qid


def test_drain_timeout_cuts_off_a_session_stuck_in_data(daemon):
    """With drain-timeout 1s, a session that stays in DATA is closed (421) and the
    process exits 0 within a few seconds; its half message is not queued."""
    daemon.configure(connectors=connector("Test"), top="drain-timeout = 1s")
    daemon.start()
    stuck = session(daemon)
    expect(stuck, 250, "MAIL FROM:<sender@remote.example>")
    expect(stuck, 250, "RCPT TO:<user@example.test>")
    expect(stuck, 354, "DATA")
    stuck.send("Subject: tok-stuck\r\n\r\nnever finished\r\n")
    time.sleep(0.2)

    sigterm(daemon)
    rc, waited = wait_exit(daemon, 15)   # drain-timeout 1s: over 10x margin
    assert rc == 0, daemon.log()
    daemon.wait_log(r"drain-timeout reached: closing 1 open session")
    got = stuck.recv_all(5)
    assert got in (b"", b"421 4.3.2 Service shutting down, closing transmission channel\r\n"), got
    stuck.close()
    assert daemon.queued() == [] and spool_dir(daemon, "tmp") == []
    assert daemon.messages() == []


def test_privileges_are_dropped_to_the_configured_user(daemon):
    """Started as root: every thread runs as nobody with no capability but
    CAP_NET_BIND_SERVICE (so a reload can still open a port below 1024), and the spool and
    the Maildir files belong to nobody. Not root: the daemon keeps its user and says so."""
    daemon.configure()
    daemon.start()
    pid = daemon.proc.pid
    qid = send_one(daemon, "tok-owner")
    daemon.wait_messages(1)
    if not IS_ROOT:
        daemon.wait_log(r'running as uid \d+; user = "nobody" applies only when started as root')
        return
    uid, gid = nobody()
    tasks = task_status(pid)
    assert len(tasks) >= 4, tasks   # main, workers, spool syncer, delivery
    for tid, st in tasks.items():
        assert st["Uid"].split() == [str(uid)] * 4, (tid, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (tid, st["Gid"])
        assert st["Groups"].split() in ([str(gid)], []), (tid, st["Groups"])
        for cap in ("CapEff", "CapPrm"):
            assert int(st[cap], 16) & ~(1 << 10) == 0, (tid, cap, st[cap])
    owned = [daemon.spool] + [os.path.join(daemon.spool, d)
                              for d in ("tmp", "queue", "corrupt", "free")]
    md = daemon.maildir()
    owned += [daemon.mail, os.path.dirname(md), md] + \
        [os.path.join(md, d) for d in ("tmp", "new", "cur")]
    owned += [os.path.join(md, "new", n) for n in os.listdir(os.path.join(md, "new"))]
    for p in owned:
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (uid, gid), (p, st.st_uid, st.st_gid)
    assert len(os.listdir(os.path.join(md, "new"))) == 1 and qid

    # a reload can open a new port below 1024 (CAP_NET_BIND_SERVICE kept)
    low = next(p for p in range(1023, 899, -1) if _free("127.0.0.1", p))
    daemon.configure(connectors=connector("Test", bindings=("127.0.0.1:{port}",
                                                            f"127.0.0.1:{low}")))
    daemon.reload()
    c = session(daemon, port=low)
    c.close()


def _free(host, port):
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def test_config_without_user_is_refused_as_root(daemon):
    """Started as root with no `user`, the daemon refuses to run (exit 1, with the reason);
    as another user it runs as that user."""
    daemon.configure()
    with open(daemon.conf) as f:
        text = f.read()
    assert 'user = "nobody"\n' in text
    with open(daemon.conf, "w") as f:
        f.write(text.replace('user = "nobody"\n', ""))
    if not IS_ROOT:
        daemon.start()
        send_one(daemon, "tok-nonroot")
        return
    rc = daemon.start(expect_fail=True)
    assert rc == 1, daemon.log()
    assert re.search(r'refusing to run as root: set user = "\.\.\." in ' +
                     re.escape(daemon.conf), daemon.log()), daemon.log()
    daemon.check_sanitizers()
