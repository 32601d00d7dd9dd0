"""sd_notify around the daemon's life, against a NOTIFY_SOCKET the test owns (a path and an
abstract socket): READY=1 once every listener is open, RELOADING=1 with MONOTONIC_USEC and
then READY=1 around every SIGHUP (also when the new configuration is refused), STOPPING=1
when draining starts, and STATUS= lines an admin can read in `systemctl status`."""
import os
import re
import signal
import socket
import time

import pytest

from daemon import Client


class Manager:
    """The service manager's end: a datagram socket that collects what mxgate says."""

    def __init__(self, address, env_value):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(30)
        self.env_value = env_value
        self.seen = []

    def next(self):
        data = self.sock.recv(65536).decode()
        fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
        self.seen.append(fields)
        return fields

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def manager(request, tmp_path, monkeypatch):
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        m = Manager(path, path)
    else:
        name = f"mxgate-test-notify-{os.getpid()}-{time.monotonic_ns()}"
        m = Manager("\0" + name, "@" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", m.env_value)
    yield m
    m.close()


def test_ready_reloading_and_stopping_reach_the_manager(daemon, manager):
    daemon.configure()
    daemon.start(wait=False)
    ready = manager.next()
    assert ready.get("READY") == "1", manager.seen
    assert re.match(r"serving 1 connector on 1 listener, \d+ workers?$", ready["STATUS"]), ready
    # READY means every listener is open: a client is served at once
    with Client("127.0.0.1", daemon.port) as c:
        assert c.reply()[0] == 220

    # a good reload: RELOADING=1 with the monotonic clock, then READY=1
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.signal(signal.SIGHUP)
    r = manager.next()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert r.get("RELOADING") == "1", manager.seen
    assert before <= int(r["MONOTONIC_USEC"]) <= after, (before, r, after)
    r = manager.next()
    assert r.get("READY") == "1" and r["STATUS"].startswith("configuration reloaded"), r

    # a refused reload still ends with READY=1, and says so
    with open(daemon.conf, "a") as f:
        f.write("\nno-such-key = 1\n")
    daemon.signal(signal.SIGHUP)
    assert manager.next().get("RELOADING") == "1", manager.seen
    r = manager.next()
    assert r.get("READY") == "1" and r["STATUS"].startswith("reload refused: 1 error"), r

    daemon.signal(signal.SIGTERM)
    r = manager.next()
    assert r.get("STOPPING") == "1" and r["STATUS"].startswith("draining"), r
    assert daemon.proc.wait(timeout=30) == 0
    daemon.check_sanitizers()
