"""Durability and recovery of the spool, on the real daemon (spool.h's protocol).

A process crash is simulated with kill -9 (SIGKILL: no handler, no flush). What these
tests cannot show is survival of a power loss (that needs the fsyncs to reach a disk and
a machine to lose its page cache); they show that a 250 is never given for a message
that is not complete in spool/queue, that recovery delivers what was queued, and that a
delivery repeated after a crash does not duplicate mail.
"""
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from daemon import BIN, Client
from helpers_ops import (IS_ROOT, banner, block_delivery, body_for, chown_nobody, envelope_size,
                         expect, free_bytes, maildir_files, nobody, queue_id, queued_ids,
                         restart, restore_queue, send_one, session, settle, snapshot_queue,
                         spool_dir, tmpfs, token_counts, transaction, unblock_delivery)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fault"))
import failsync as fault  # noqa: E402  (tests/fault/failsync.py, the shim's driver)


def assert_exactly_once(counts, tokens, log=""):
    for t in tokens:
        assert counts.get(t, 0) == 1, f"{t} delivered {counts.get(t, 0)} times: {counts}\n{log}"


def test_kill9_right_after_250_delivers_exactly_once(daemon):
    """kill -9 the moment the 250 arrives: after a restart on the same spool the message
    is in the Maildir exactly once.

    Where the kill lands is a race with the delivery thread (it usually has linked the
    message into new/ already; sometimes the message is still only queued, or linked and
    not yet removed from the spool), so five rounds with growing delays cover the windows.
    The still-queued case is made certain in test_failed_delivery_stays_queued_across_kill9.
    """
    daemon.configure()
    daemon.start()
    tokens = []
    for i in range(5):
        token = f"tok-kill-{i}"
        c = session(daemon)
        code, text = transaction(c, token)
        if i:
            time.sleep(0.001 * i)
        daemon.kill9()
        c.close()
        assert code == 250, text
        tokens.append(token)
        restart(daemon)
        counts = settle(daemon, n_expected=len(tokens))
        assert_exactly_once(counts, tokens, daemon.log())
        assert sum(counts.values()) == len(tokens), counts
    files = maildir_files(daemon)
    assert files["tmp"] == [], files
    assert spool_dir(daemon, "tmp") == []


def test_kill9_during_concurrent_sends(daemon):
    """50 messages from 5 threads, kill -9 at a random point. After the restart every
    message that got 250 is in the Maildir exactly once, and no message is there twice.

    A message that did not get its 250 may still be delivered: the daemon can die after
    the commit and before the reply reached the client. The client then sends it again
    (a duplicate the protocol cannot avoid), but mxgate itself never delivers twice, and
    nothing appears that was never sent."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    daemon.configure(connectors="""
        connector "Test" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.2" }
          tarpit-interval = 0s
          max-inbound-connection-per-source = unlimited
          max-inbound-connection-percentage-per-source = 100
        }
    """)
    daemon.start()
    n_threads, per_thread = 5, 10
    lock = threading.Condition()
    acked, sent = set(), set()
    kill_after = rnd.randrange(1, 40)

    def worker(t):
        try:
            c = session(daemon)
        except OSError:
            return
        try:
            for i in range(per_thread):
                token = f"tok-t{t}-m{i}"
                with lock:
                    sent.add(token)
                code, text = transaction(c, token)
                if code != 250:
                    return
                with lock:
                    acked.add(token)
                    lock.notify_all()
        except (OSError, AssertionError):
            return   # the daemon died under us
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    with lock:
        lock.wait_for(lambda: len(acked) >= kill_after, timeout=60)
    time.sleep(rnd.random() * 0.01)
    daemon.kill9()
    for th in threads:
        th.join(timeout=30)
    with lock:
        acked_now, sent_now = set(acked), set(sent)
    ctx = f"seed {seed}, kill after {kill_after} acks, acked {len(acked_now)}"
    assert len(acked_now) >= kill_after, ctx

    restart(daemon)
    counts = settle(daemon, n_expected=len(acked_now))
    missing = sorted(t for t in acked_now if counts.get(t, 0) != 1)
    assert not missing, f"{ctx}: acknowledged but not delivered once: {missing}: {counts}"
    twice = sorted(t for t, n in counts.items() if n != 1)
    assert not twice, f"{ctx}: delivered more than once: {twice}"
    invented = sorted(set(counts) - sent_now)
    assert not invented, f"{ctx}: delivered but never sent: {invented}"
    assert spool_dir(daemon, "tmp") == [], ctx
    assert maildir_files(daemon)["tmp"] == [], ctx


def test_failed_delivery_stays_queued_across_kill9(daemon, tmp_path):
    """Delivery fails (the Maildir cannot be made): the message stays in spool/queue and
    the log says it is deferred. kill -9, repair, restart: delivered exactly once, and the
    queue is empty. Then the state of a crash between the Maildir link and the removal
    from the spool is recreated by hand (the queue files put back): the next start finds
    the message delivered already, in new/ and after a reader moved it to cur/, and does
    not duplicate it."""
    daemon.configure()
    block_delivery(daemon)
    daemon.start()
    qid = send_one(daemon, "tok-deferred")
    daemon.wait_log(rf"message {qid} deferred .*next try", timeout=20)
    assert qid in queued_ids(daemon)
    assert os.path.getsize(os.path.join(daemon.spool, "queue", qid)) == \
        envelope_size(daemon, qid)
    assert daemon.messages() == []
    daemon.kill9()
    snap = str(tmp_path / "queue-snapshot")
    assert f"{qid}.env" in snapshot_queue(daemon, snap)

    unblock_delivery(daemon)
    restart(daemon)
    daemon.wait_log(r"1 queued messages? recovered")
    counts = settle(daemon, n_expected=1)
    assert counts == {"tok-deferred": 1}, counts
    assert daemon.queued() == []

    # a crash after the link into new/ and before the spool removal
    daemon.kill9()
    restore_queue(daemon, snap)
    restart(daemon)
    counts = settle(daemon)
    assert counts == {"tok-deferred": 1}, f"{counts}\n{daemon.log()}"

    # the same after a mail reader moved the message to cur/ (and marked it seen)
    daemon.kill9()
    md = daemon.maildir()
    [name] = os.listdir(os.path.join(md, "new"))
    os.rename(os.path.join(md, "new", name), os.path.join(md, "cur", name + ":2,S"))
    restore_queue(daemon, snap)
    restart(daemon)
    counts = settle(daemon)
    assert counts == {"tok-deferred": 1}, f"{counts}\n{daemon.log()}"
    files = maildir_files(daemon)
    assert files["new"] == [] and files["cur"] == [name + ":2,S"], files
    assert daemon.queued() == []


def test_full_spool_answers_452_and_loses_nothing(daemon):
    """The spool on a 2 MB tmpfs, delivery held back so messages pile up: messages are
    accepted until the file system is full, then refused with 452 4.3.1. Every 250 has
    its complete message in spool/queue, nothing is left half-written, and once space is
    freed a new message is accepted. After a restart with delivery repaired, every
    acknowledged message is delivered exactly once."""
    assert IS_ROOT, "mounting the small tmpfs for the spool needs root (the CI runs as root)"
    os.makedirs(daemon.spool)
    with tmpfs(daemon.spool, "2m"):
        try:
            # room to free later: the test's own file beside the spool's directories
            filler = os.path.join(daemon.spool, "filler")
            with open(filler, "wb") as f:
                f.write(b"\0" * (384 * 1024))
            daemon.configure()
            block_delivery(daemon)
            daemon.start()
            acked = {}   # token -> queue id
            refused_reply = None
            c = session(daemon)
            for i in range(40):
                token = f"tok-full-{i}"
                code, text = transaction(c, token, size=100 * 1024)
                if code == 250:
                    acked[token] = queue_id(text)
                    continue
                refused_reply = text
                break
            c.close()
            assert refused_reply is not None, \
                f"40 messages of 100 KB fit a 2 MB spool?\n{daemon.log()}"
            assert refused_reply.startswith("452 4.3.1 Insufficient system resources"), \
                refused_reply
            assert len(acked) >= 5, f"only {len(acked)} accepted\n{daemon.log()}"
            daemon.wait_log(r"not queued: No space left on device; replied 452 4.3.1")
            # nothing half-written: tmp/ is empty, queue/ holds exactly the acknowledged
            # messages, each complete
            assert spool_dir(daemon, "tmp") == []
            assert queued_ids(daemon) == sorted(acked.values())
            for qid in acked.values():
                assert os.path.getsize(os.path.join(daemon.spool, "queue", qid)) == \
                    envelope_size(daemon, qid), qid
            # the refused message's data is gone: what is left is the filler's room
            os.unlink(filler)
            assert free_bytes(daemon.spool) >= 300 * 1024
            qid = send_one(daemon, "tok-after-free", size=100 * 1024)
            acked["tok-after-free"] = qid
            assert queued_ids(daemon) == sorted(acked.values())

            daemon.stop()
            unblock_delivery(daemon)
            restart(daemon)
            counts = settle(daemon, n_expected=len(acked))
            assert_exactly_once(counts, acked, daemon.log())
            assert sum(counts.values()) == len(acked), counts
            assert spool_dir(daemon, "tmp") == []
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def test_restart_cleans_tmp_and_quarantines_corrupt_envelopes(daemon):
    """At start, spool/tmp is emptied (nothing there was ever acknowledged); a queued
    message whose envelope does not parse, or whose data does not match it, is moved to
    spool/corrupt (not deleted) with an error line; good messages are still delivered."""
    daemon.configure()
    block_delivery(daemon)
    daemon.start()
    ids = {t: send_one(daemon, t) for t in ("tok-good", "tok-trunc-env", "tok-short-data")}
    for qid in ids.values():
        daemon.wait_log(rf"message {qid} deferred")
    daemon.kill9()

    q = os.path.join(daemon.spool, "queue")
    # an envelope cut short (its "end" line lost)
    env = os.path.join(q, ids["tok-trunc-env"] + ".env")
    with open(env) as f:
        text = f.read()
    assert text.endswith("end\n"), text
    with open(env, "w") as f:
        f.write(text[:-len("end\n")])
    # a data file one byte shorter than its envelope says
    data = os.path.join(q, ids["tok-short-data"])
    os.truncate(data, os.path.getsize(data) - 1)
    # an envelope that is not one at all, with a data file
    garbage = "0123456789ABCDEF"
    with open(os.path.join(q, garbage + ".env"), "w") as f:
        f.write("this is not an envelope\n")
    with open(os.path.join(q, garbage), "w") as f:
        f.write("Subject: tok-garbage\r\n\r\nx\r\n")
    # leftovers of messages being received when the process died
    tmpd = os.path.join(daemon.spool, "tmp")
    for name in ("FEDCBA9876543210", "FEDCBA9876543210.env", "junk"):
        with open(os.path.join(tmpd, name), "w") as f:
            f.write("partial")
    chown_nobody(daemon.spool)

    unblock_delivery(daemon)
    restart(daemon)
    daemon.wait_log(r"spool: removed 3 unfinished files from .*/tmp")
    bad = {"malformed envelope": [ids["tok-trunc-env"], garbage],
           "data file missing or not": [ids["tok-short-data"]]}
    for why, qids in bad.items():
        for qid in qids:
            daemon.wait_log(rf"error: spool: queued message {qid} moved to "
                            rf"{re.escape(daemon.spool)}/corrupt: {why}")
    daemon.wait_messages(1)
    daemon.wait_log(rf"message {ids['tok-good']} delivered")
    assert token_counts(daemon) == {"tok-good": 1}, daemon.log()
    assert spool_dir(daemon, "tmp") == []
    # the quarantined messages leave nothing behind in queue/ (a queue/<id>.state left
    # there would be deleted as an orphan at the next start: the record of which
    # recipients were already delivered would be lost, silently)
    assert daemon.queued() == [], daemon.log()
    corrupt = spool_dir(daemon, "corrupt")
    for qid in (ids["tok-trunc-env"], ids["tok-short-data"], garbage):
        assert qid in corrupt and qid + ".env" in corrupt, corrupt
    with open(os.path.join(daemon.spool, "corrupt", garbage + ".env")) as f:
        assert f.read() == "this is not an envelope\n"


# ---- trust: a spool others can write is refused (spool.h, TRUST) ----------------------

ATTACKER = 4242   # a local user who is neither root nor the daemon's user


def forge(queue_dir, qid, token, uid):
    """Plants a queued message (envelope and data) in queue_dir, owned by uid."""
    data = body_for(token).encode()
    env = (f"mxgate-envelope 1\nid {qid}\nreceived {int(time.time())}\nsize {len(data)}\n"
           f"prefix 0\nflags\nconnector Test\nclient 127.0.0.2\nhelo forger.example\n"
           f"from ceo@example.test\nrcpt user@example.test\nend\n")
    for name, content in ((qid, data), (qid + ".env", env.encode())):
        path = os.path.join(queue_dir, name)
        with open(path, "wb") as f:
            f.write(content)
        os.chown(path, uid, uid)


def test_forged_envelope_in_a_world_writable_spool_is_never_delivered(daemon):
    """The attack of issue 16 (defect 6): with a 0777 spool, a local user renames queue/
    away, makes a queue/ of their own with a forged envelope, and waits for the next
    start. mxgate refuses to start, saying what is wrong and the command that fixes it;
    fixed one step at a time, it refuses the attacker's queue/, then quarantines the
    planted message instead of delivering it."""
    assert IS_ROOT, "making files of another user needs root (the CI runs as root)"
    import grp
    import pwd
    daemon.configure()
    daemon.start()
    send_one(daemon, "tok-legit")
    settle(daemon, n_expected=1)
    assert daemon.stop() == 0

    os.chmod(daemon.spool, 0o777)
    q = os.path.join(daemon.spool, "queue")
    os.rename(q, q + ".old")
    os.mkdir(q, 0o755)
    os.chown(q, ATTACKER, ATTACKER)
    forged = "0123456789ABCDEF"
    forge(q, forged, "tok-forged", ATTACKER)

    assert daemon.start(expect_fail=True) != 0, daemon.log()
    daemon.wait_log(rf"error: not starting: spool directory {re.escape(daemon.spool)} is "
                    rf"writable by everyone \(mode 0777\): .*\. "
                    rf"Fix: chmod 0700 {re.escape(daemon.spool)} ")
    assert "ready:" not in daemon.log()

    # the administrator runs the chmod; the attacker's queue/ is still there
    os.chmod(daemon.spool, 0o700)
    assert daemon.start(expect_fail=True) != 0, daemon.log()
    user = "nobody"
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    daemon.wait_log(rf"error: not starting: spool directory {re.escape(q)} belongs to "
                    rf"{ATTACKER}, not to {user} that mxgate runs as: .*\. "
                    rf"Fix: chown {user}:{group} {re.escape(q)} ")

    # the chown, but the planted files stay: they are quarantined, never delivered
    chown_nobody(q)
    forge(q, forged, "tok-forged", ATTACKER)
    restart(daemon)
    daemon.wait_log(rf"error: spool: queued message {forged} moved to "
                    rf"{re.escape(daemon.spool)}/corrupt: envelope owned by uid {ATTACKER}")
    send_one(daemon, "tok-after")
    counts = settle(daemon, n_expected=2)
    assert counts == {"tok-legit": 1, "tok-after": 1}, f"{counts}\n{daemon.log()}"
    assert f"{forged}.env" in spool_dir(daemon, "corrupt")


def test_world_writable_maildir_base_inside_the_spool_is_refused(daemon):
    """The Maildir base inside the spool (the default, <spool>/maildir) is part of the
    spool: writable by others, the daemon refuses to start and the error says the chmod;
    after the chmod it starts and delivers into it."""
    assert IS_ROOT, "the base owned by root and given away needs root (the CI runs as root)"
    base = os.path.join(daemon.spool, "maildir")
    os.makedirs(base, mode=0o700)
    os.chmod(base, 0o777)
    daemon.configure()
    text = open(daemon.conf).read().replace(f'"{daemon.mail}/%d/%u"', f'"{base}/%d/%u"')
    with open(daemon.conf, "w") as f:
        f.write(text)
    refusal = (rf"error: maildir base refused, no delivery into it: spool directory "
               rf"{re.escape(base)} is writable by everyone \(mode 0777\): .* "
               rf"Fix: chmod 0700 {re.escape(base)} ")
    # the daemon refuses to start: an unsafe Maildir base is a refusal like an unsafe spool
    assert daemon.start(expect_fail=True) != 0
    daemon.wait_log(refusal)
    assert os.listdir(base) == []

    os.chmod(base, 0o700)
    restart(daemon)
    assert refusal_absent(daemon, refusal)
    send_one(daemon, "tok-base")
    deadline = time.time() + 20
    while daemon.queued() and time.time() < deadline:
        time.sleep(0.05)
    assert daemon.queued() == [], daemon.log()
    new = os.path.join(base, "example.test", "user", "new")
    assert len(os.listdir(new)) == 1, daemon.log()
    st = os.stat(base)
    assert (st.st_uid, st.st_mode & 0o7777) == (nobody()[0], 0o700), st


def refusal_absent(daemon, pattern):
    return re.search(pattern, daemon.log()) is None


# ---- a disk that fails its syncs (spool.h, FAILED SYNCS) --------------------------------

CONCURRENT = """
    connector "Test" {
      usage = internet
      bindings = { "127.0.0.1:{port}" }
      remote-ip-ranges = { "127.0.0.2" }
      tarpit-interval = 0s
      max-inbound-connection-per-source = unlimited
      max-inbound-connection-percentage-per-source = 100
    }
"""


@pytest.fixture(scope="module")
def failsync(tmp_path_factory):
    """tests/fault/failsync.c built as a preloadable shim."""
    return fault.build(tmp_path_factory.mktemp("fault"))


def try_message(c, token, before_dot=None):
    """RSET, MAIL, RCPT, DATA and the message; (code, text, phase): the code that
    decided it, 250 or the refusal (at DATA when the spool will not start a message, at
    the dot when its commit failed), and what before_dot() returned just before the
    message was sent (or before RSET, for a refusal before the message)."""
    start = before_dot() if before_dot else None
    for cmd, want in (("RSET", 250), ("MAIL FROM:<sender@remote.example>", 250),
                      ("RCPT TO:<user@example.test>", 250), ("DATA", 354)):
        code, text = c.cmd(cmd)
        if code != want:
            return code, text, start
    after = before_dot() if before_dot else None
    c.send(body_for(token) + ".\r\n")
    code, text = c.reply()
    return code, text, after


def test_a_failed_sync_fails_the_spool_until_restart(daemon, failsync, monkeypatch):
    """The disk fails its syncs (EIO from fsync, fdatasync and syncfs) while four clients
    send: every message whose data ends after the failure starts gets 452 4.3.1, never
    250, and so does every message after the disk "recovers" (a sync that succeeds after
    a failed one proves nothing: the kernel may have dropped the pages it could not
    write). One error line says to check the disk and restart. After the restart every
    message that got 250 is delivered exactly once, and none that got 452."""
    daemon.configure(connectors=CONCURRENT)
    trigger, flog = fault.start(daemon, failsync, monkeypatch)
    before = [f"tok-before-{i}" for i in range(3)]
    for t in before:
        send_one(daemon, t)
    settle(daemon, n_expected=3)   # delivered while the disk works

    lock = threading.Condition()
    results = []   # (token, phase when the dot went, code)
    phase = ["ok"]   # ok -> failing -> recovered -> stop

    def now():
        with lock:
            return phase[0]

    def worker(t):
        c = Client("127.0.0.1", daemon.port, "127.0.0.2", 10)
        banner(c)
        assert c.cmd("EHLO client.example")[0] == 250
        i = 0
        try:
            while now() != "stop":
                token = f"tok-t{t}-m{i}"
                i += 1
                code, text, ph = try_message(c, token, now)
                with lock:
                    results.append((token, ph, code, text))
                    lock.notify_all()
        finally:
            c.close()

    def count(pred):
        return sum(1 for r in results if pred(r))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    with lock:
        assert lock.wait_for(lambda: count(lambda r: r[2] == 250) >= 8, timeout=60), \
            f"{results}\n{daemon.log()}"
        open(trigger, "w").close()
        phase[0] = "failing"
        assert lock.wait_for(lambda: count(lambda r: r[1] == "failing") >= 12, timeout=60), \
            f"{results}\n{daemon.log()}"
        os.unlink(trigger)
        phase[0] = "recovered"
        assert lock.wait_for(lambda: count(lambda r: r[1] == "recovered") >= 12,
                             timeout=60), f"{results}\n{daemon.log()}"
        phase[0] = "stop"
    for th in threads:
        th.join(timeout=30)

    assert fault.fired(flog), "the shim injected no failure: the test proves nothing"
    bad = [r for r in results if r[2] not in (250, 452)]
    assert not bad, bad
    late_250 = [r for r in results if r[1] in ("failing", "recovered") and r[2] == 250]
    assert not late_250, f"250 after the disk failed: {late_250}\n{daemon.log()}"
    assert count(lambda r: r[1] == "failing" and r[2] == 452) > 0
    for r in results:
        if r[2] == 452:
            assert r[3].startswith("452 4.3.1 "), r
    daemon.wait_log(r"error: spool: the disk failed: .* failed: Input/output error\. .* "
                    r"until it is restarted\.  Check the disk .*then restart mxgate")
    assert len(daemon.wait_log(r"spool: the disk failed")) == 1
    acked = before + [r[0] for r in results if r[2] == 250]
    refused = [r[0] for r in results if r[2] != 250]
    assert daemon.stop() == 0
    assert re.search(r"error: spool: \d+ failed syncs?, \d+ messages? refused after the "
                     r"first", daemon.log()), daemon.log()

    restart(daemon)   # without the shim: the disk was checked
    counts = settle(daemon, n_expected=len(acked))
    assert_exactly_once(counts, acked, daemon.log())
    assert not set(counts) & set(refused), f"refused yet delivered: {set(counts) & set(refused)}"
    assert spool_dir(daemon, "tmp") == []
    # and the spool accepts mail again
    send_one(daemon, "tok-after-restart")


def test_a_failed_maildir_sync_holds_deliveries_until_restart(daemon, failsync, monkeypatch):
    """The Maildirs on a file system of their own whose directory syncs fail: the mail
    is still accepted (the spool's disk is fine) but no delivery is confirmed, not even
    after the disk "recovers" (a repeat finds the file in new/ and syncs nothing new);
    the messages stay queued, and after the restart each is delivered exactly once."""
    assert IS_ROOT, "mounting a tmpfs for the Maildirs needs root (the CI runs as root)"
    os.makedirs(daemon.mail)
    with tmpfs(daemon.mail, "8m"):
        try:
            chown_nobody(daemon.mail)
            daemon.configure()
            trigger, flog = fault.start(daemon, failsync, monkeypatch,
                                              dev_of=daemon.mail, dirs_only="1")
            send_one(daemon, "tok-md-ok")
            settle(daemon, n_expected=1)
            open(trigger, "w").close()
            ids = [send_one(daemon, f"tok-md-{i}") for i in range(3)]
            for qid in ids:
                daemon.wait_log(rf"message {qid} deferred .*syncing the Maildir file system "
                                rf"failed")
            daemon.wait_log(r"error: maildir: the disk failed: syncing the Maildirs under "
                            rf"{re.escape(daemon.mail)} failed: Input/output error\. .*"
                            r"until mxgate is restarted")
            os.unlink(trigger)
            r = subprocess.run([BIN, "queue", "-c", daemon.conf, "flush"],
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            for qid in ids:
                daemon.wait_log(rf"message {qid} deferred .*a sync of the Maildir file "
                                rf"system failed earlier; waiting for mxgate to be restarted")
            assert queued_ids(daemon) == sorted(ids)
            assert any(l.startswith("fsync ") for l in fault.fired(flog))
            assert daemon.stop() == 0
            restart(daemon)
            counts = settle(daemon, n_expected=4)
            assert counts == {"tok-md-ok": 1, "tok-md-0": 1, "tok-md-1": 1, "tok-md-2": 1}, \
                f"{counts}\n{daemon.log()}"
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def wait_fault_lines(flog, pred, what, timeout=30):
    """Waits until the shim's log has a line for which pred(lines, i) holds; returns the
    lines."""
    deadline = time.time() + timeout
    while True:
        lines = fault.fired(flog)
        if any(pred(lines, i) for i in range(len(lines))):
            return lines
        assert time.time() < deadline, f"{what}: the shim logged {lines}"
        time.sleep(0.02)


def send_to_the_dot(daemon, token):
    """A session that has sent a whole message and not read the reply to its dot."""
    c = session(daemon)
    for cmd, want in (("MAIL FROM:<sender@remote.example>", 250),
                      ("RCPT TO:<user@example.test>", 250), ("DATA", 354)):
        code, text = c.cmd(cmd)
        assert code == want, f"{cmd}: {text}\n{daemon.log()}"
    c.send(body_for(token) + ".\r\n")
    return c


def no_reply_yet(c):
    """True when nothing came back within a moment (the reply to the dot is owed)."""
    c.sock.settimeout(0.3)
    try:
        c.sock.recv(1, socket.MSG_PEEK)
        return False   # a reply, or the connection closed
    except socket.timeout:
        return True
    finally:
        c.sock.settimeout(10)


def test_the_next_group_syncs_while_the_last_groups_directory_fsync_hangs(daemon, failsync,
                                                                         monkeypatch):
    """The spool's pipeline (spool.c): a group's envelopes are renamed after its syncfs(),
    and the fsync() of queue/ that makes the renames durable runs on a thread of its own,
    so the next group's syncfs() does not wait for it. Here the disk hangs every directory
    fsync: message A's group reaches its fsync of queue/ and waits there; message B, sent
    meanwhile, gets its own syncfs() (the old single syncer thread sat in A's fsync). And
    the order each message needs holds: neither is answered while the fsync of queue/
    after its rename hangs; both get 250 once it returns, and both are delivered once."""
    daemon.configure(connectors=CONCURRENT)
    trigger, flog = fault.start(daemon, failsync, monkeypatch, stall="1", calls="fsync",
                                dirs_only="1", trace="1")
    send_one(daemon, "tok-pipe-warm")
    settle(daemon, n_expected=1)
    open(trigger, "w").close()
    try:
        a = send_to_the_dot(daemon, "tok-pipe-a")
        lines = wait_fault_lines(flog, lambda ls, i: ls[i].startswith("stall fsync "),
                                 "message A's fsync of queue/ never started")
        n_before = len(lines)
        b = send_to_the_dot(daemon, "tok-pipe-b")
        wait_fault_lines(flog, lambda ls, i: i >= n_before and ls[i].startswith("pass syncfs "),
                         "message B's group had no syncfs() while A's fsync of queue/ hung")
        assert no_reply_yet(a), "message A answered before the fsync of queue/ returned"
        assert no_reply_yet(b), "message B answered before an fsync of queue/ returned"
    finally:
        os.unlink(trigger)
    for c in (a, b):
        code, text = c.reply()
        assert code == 250, f"{text}\n{daemon.log()}"
        expect(c, 221, "QUIT")
        c.close()
    counts = settle(daemon, n_expected=3)
    assert_exactly_once(counts, ["tok-pipe-warm", "tok-pipe-a", "tok-pipe-b"], daemon.log())
