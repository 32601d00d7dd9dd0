"""Helpers for the suites that run mxgate in a network namespace with real nftables rules:
test_bypass.py and test_lockdown_doc.py.

A namespace (made and removed by `netns()`), mxgate run inside it (NsDaemon, on a
config text of the test's own), commands run inside it (`run`, `mxgate`), the provider
presets copied with their source dated today (`fresh_presets`: the shipped ones are older
than audit's 180 days), and the shipped configuration's machine paths made this
machine's (`local_paths`).
"""
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from conftest import BIN, assert_no_sanitizer_report
from daemon import Daemon

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


class Result:
    def __init__(self, cp):
        self.rc, self.out, self.err = cp.returncode, cp.stdout, cp.stderr


def run(cmd, ns=None, check=False, timeout=60):
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    r = Result(subprocess.run(cmd, capture_output=True, text=True, timeout=timeout))
    if check:
        assert r.rc == 0, f"{cmd}: {r.rc}\n{r.out}{r.err}"
    return r


def mxgate(ns, *args, timeout=60):
    """mxgate ARGS, in the namespace when ns is given; checks for sanitizer reports."""
    r = run([BIN, *args], ns=ns, timeout=timeout)
    assert_no_sanitizer_report(r.err)
    return r


def findings(r):
    """The finding lines of an `mxgate audit` run."""
    return [l for l in r.out.splitlines() if re.match(r"(critical|warning|info) ", l)]


@contextlib.contextmanager
def fresh_presets():
    """providers/ copied with every dated source dated today, into a directory the daemon
    can read after dropping to nobody (a reload reads the presets again); removed after."""
    top = tempfile.mkdtemp(prefix="mxgate-presets-")
    os.chmod(top, 0o755)
    directory = os.path.join(top, "providers")
    try:
        _copy_fresh(directory)
        yield directory
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _copy_fresh(directory):
    shutil.copytree(os.path.join(ROOT, "providers"), directory)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"(?m)^# source-date: \d{4}-\d\d-\d\d$", "# source-date: " + today,
                           text))
        os.chmod(path, 0o644)


@contextlib.contextmanager
def netns(v4=(), v6=()):
    """A fresh namespace with lo up and the addresses on it; removed whatever happens."""
    assert os.geteuid() == 0, "these tests make network namespaces: run them as root"
    name = f"mxgate-n{os.getpid()}-{time.monotonic_ns() % 1000000}"
    run(["ip", "netns", "add", name], check=True)
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for addr in v4:
            run(["ip", "-n", name, "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
        for addr in v6:
            run(["ip", "-n", name, "addr", "add", f"{addr}/128", "dev", "lo", "nodad"],
                check=True)
        yield name
    finally:
        run(["ip", "netns", "del", name])


class NsDaemon(Daemon):
    """mxgate run inside a namespace, on a config text of the test's own."""

    def __init__(self, ns):
        super().__init__()
        self.ns = ns

    def write(self, text, path=None):
        path = path or self.conf
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def start(self, wait=True, expect_fail=False, conf=None):
        self.lines = []
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "run", "-c",
                                      conf or self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_log(r"ready: ", timeout=30)


def local_paths(d, text):
    """The machine paths of the shipped configurations (etc/, docs/) made d's."""
    for old, new in (("/etc/mxgate/tls/fullchain.pem", d.cert), ("/etc/mxgate/tls/key.pem", d.key),
                     ("/var/spool/mxgate", d.spool),
                     ("/var/mail/mxgate/%d/%u", d.mail + "/%d/%u"),
                     ('user = "mxgate"', 'user = "nobody"')):
        assert old in text, old
        text = text.replace(old, new)
    return text


def load_firewall(ns, conf, path):
    """`mxgate firewall --format nft` of conf, written to path and loaded in ns."""
    r = mxgate(None, "firewall", "-c", conf, "--format", "nft")
    assert r.rc == 0, r.err
    with open(path, "w") as f:
        f.write(r.out)
    run(["nft", "-f", str(path)], ns=ns, check=True)
    return r
