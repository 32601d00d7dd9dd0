"""Clients and neighbours that go after the daemon's resources (issue 16): a client that
pipelines commands and never reads its replies, more connections than the open-file limit
allows, a reload of a huge configuration, and what a compromised daemon could still do
(no_new_privs, the capability bounding set).
"""
import os
import re
import signal
import time

from daemon import ALLOWED, Client
from helpers_hostile import (connect_from, flood_without_reading, start_with_nofile,
                             thread_status, tls_wrap, vmrss_kib, write_ranges_file)
from helpers_ops import IS_ROOT, banner, connector, expect, session

MiB = 1024 * 1024
HELP_CHUNK = b"HELP\r\n" * 10923  # 64 KiB of pipelined commands


def _ehlo(s):
    """Reads the banner and says EHLO on a raw socket (plain or TLS)."""
    buf = b""
    while not re.search(rb"(^|\r\n)220 [^\r\n]*\r\n$", buf):
        buf += s.recv(4096)
    s.sendall(b"EHLO client.example\r\n")
    buf = b""
    while not re.search(rb"(^|\r\n)250 [^\r\n]*\r\n$", buf):
        buf += s.recv(4096)
    return buf


def _starttls(s):
    s.sendall(b"STARTTLS\r\n")
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(4096)
    assert buf.startswith(b"220 "), buf
    t = tls_wrap(s)
    t.sendall(b"EHLO client.example\r\n")
    buf = b""
    while not re.search(rb"(^|\r\n)250 [^\r\n]*\r\n$", buf):
        buf += t.recv(4096)
    return t


def _quick_session(d):
    c = session(d)
    expect(c, 221, "QUIT")
    c.close()


def test_clients_that_never_read_their_replies_cannot_grow_the_daemons_memory(daemon):
    """Five sessions (one in TLS) pipeline HELP after EHLO and never read a reply: 20 MiB
    offered, about 370 MiB of replies.  The daemon stops reading each one once its unsent
    replies pass the high-water mark, so its resident memory stays near where it started
    (the old daemon buffered every reply: hundreds of MiB).  A session left that way is
    closed after connection-inactivity-timeout without progress, and others are served."""
    daemon.configure(connectors=connector("Test", connection_inactivity_timeout="3s",
                                          connection_timeout="60s"))
    daemon.start()
    pid = daemon.proc.pid
    for _ in range(3):
        _quick_session(daemon)
    before = vmrss_kib(pid)

    socks = []
    for i in range(5):
        s = connect_from(daemon)
        _ehlo(s)
        socks.append(_starttls(s) if i == 0 else s)
    sent = flood_without_reading(socks, HELP_CHUNK, budget=4 * MiB)
    peak = before
    for _ in range(10):  # the daemon may still be working through what it read
        peak = max(peak, vmrss_kib(pid))
        time.sleep(0.2)
    grown = (peak - before) / 1024
    assert grown < 48, (f"resident memory grew by {grown:.0f} MiB ({before} KiB before, "
                        f"{peak} KiB at peak) with {sum(sent)} bytes pipelined unread")
    daemon.wait_log(r"does not read its replies: \d+ bytes? unsent; reading paused",
                    count=5)
    # another client is served meanwhile
    _quick_session(daemon)
    # nobody reads for connection-inactivity-timeout: the daemon lets go of them
    daemon.wait_log(r"closed: client read none of its replies for 3s", count=5, timeout=20)
    for s in socks:
        s.close()
    _quick_session(daemon)


def test_running_out_of_descriptors_pauses_accepting_instead_of_spinning(daemon):
    """With an open-file limit of 128 and 300 clients connected from a listed source, the
    listener still has connections waiting when accept() fails with EMFILE.  The old
    daemon retried at once, forever (609,606 log lines in 5 s); now it pauses accepting
    for a moment, says so at most once every 10 s, and serves again once descriptors are
    free."""
    daemon.configure(connectors=connector(
        "Test", max_inbound_connection_per_source="unlimited",
        max_inbound_connection_percentage_per_source="100"))
    start_with_nofile(daemon, 128)
    socks = [connect_from(daemon) for _ in range(300)]
    time.sleep(3)  # hold them: the daemon has ~100 descriptors for 300 clients
    hits = [l for l in daemon.log().splitlines() if "Too many open files" in l]
    assert 1 <= len(hits) <= 3, f"{len(hits)} EMFILE lines:\n" + "\n".join(hits[:10])
    assert re.search(r"open-file limit reached.*LimitNOFILE.*ulimit -Hn", hits[0]), hits[0]
    for s in socks:
        s.close()
    _quick_session(daemon)


def test_a_reload_that_parses_a_huge_ranges_file_does_not_stop_accepting(daemon):
    """SIGHUP into a configuration with a 300,000-line ranges file: the parse takes a
    while (most under ASan), and the old daemon parsed on its accepting thread, so no
    client got in until it was done.  Clients connect one after another from the moment
    the reload starts until it ends; the daemon's own log must show one of them accepted
    between "SIGHUP: reloading" and "configuration reloaded"."""
    daemon.configure()
    daemon.start()
    big = os.path.join(daemon.dir, "big-ranges.txt")
    write_ranges_file(big, 300_000)
    daemon.configure(connectors=connector("Test") + connector(
        "Big", ranges=None, remote_ip_ranges_file=f'{{ "{big}" }}'))
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"SIGHUP: reloading")
    ports = set()
    deadline = time.time() + 120
    while "configuration reloaded" not in daemon.log():
        assert time.time() < deadline, daemon.log()
        with Client("127.0.0.1", daemon.port, ALLOWED, timeout=60) as c:
            banner(c)
            ports.add(c.sock.getsockname()[1])
            expect(c, 221, "QUIT")
    lines = daemon.log().splitlines()
    start = next(i for i, l in enumerate(lines) if "SIGHUP: reloading" in l)
    done = next(i for i, l in enumerate(lines) if "configuration reloaded" in l)
    rx = re.compile(rf"client=\[{re.escape(ALLOWED)}\]:(\d+) .*: accepted on")
    accepted = [i for i, l in enumerate(lines)
                if (m := rx.search(l)) and int(m.group(1)) in ports and i > start]
    assert accepted, lines
    assert any(i < done for i in accepted), "\n".join(lines[start:start + 20])
    # the new configuration serves
    daemon.wait_log(r"configuration reloaded: 2 connectors")
    _quick_session(daemon)

    # SIGHUPs that arrive during a reload ask for one more reload after it, not one each
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"SIGHUP: reloading", count=2)
    daemon.signal(signal.SIGHUP)
    daemon.signal(signal.SIGHUP)
    daemon.wait_log(r"configuration reloaded", count=3, timeout=120)
    lines = daemon.log().splitlines()
    follows = [i for i, l in enumerate(lines) if "SIGHUP during a reload" in l]
    reloads = [i for i, l in enumerate(lines) if "SIGHUP: reloading" in l]
    done = [i for i, l in enumerate(lines) if "configuration reloaded" in l]
    assert len(follows) == 1 and reloads[1] < follows[0] < done[1] < reloads[2] < done[2], \
        "\n".join(lines[reloads[1]:])


def test_no_thread_can_gain_privileges_back(daemon):
    """Every thread has no_new_privs (nothing it could execute would gain privileges from
    set-user-ID bits or file capabilities) and, started as root, a capability bounding set
    of CAP_NET_BIND_SERVICE alone (bit 10), with no ambient or inheritable capability."""
    daemon.configure()
    daemon.start()
    _quick_session(daemon)
    tasks = thread_status(daemon.proc.pid)
    assert len(tasks) >= 4, tasks  # main, workers, spool syncer, delivery
    for tid, st in tasks.items():
        assert st["NoNewPrivs"] == "1", (tid, st["Name"], st["NoNewPrivs"])
        if IS_ROOT:
            assert int(st["CapBnd"], 16) == 1 << 10, (tid, st["Name"], st["CapBnd"])
            assert int(st["CapAmb"], 16) == 0, (tid, st["Name"], st["CapAmb"])
            assert int(st["CapInh"], 16) == 0, (tid, st["Name"], st["CapInh"])
