"""Shared fixtures for the end-to-end tests: they run the real mxgate binary.

MXGATE_BIN names the binary under test (tests/run sets it per build variant). Every
command's stderr is checked for sanitizer reports, so the ASan+UBSan run fails on them.
"""
import os
import sys
import subprocess
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(__file__))

BIN = os.environ.get("MXGATE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "release", "mxgate")

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def assert_no_sanitizer_report(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, "sanitizer report:\n" + text


class Result:
    def __init__(self, cp):
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr


def run_mxgate(*args, timeout=60, env=None):
    cp = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                        env=env)
    assert_no_sanitizer_report(cp.stderr)
    return Result(cp)


@pytest.fixture
def mxgate():
    return run_mxgate


@pytest.fixture
def write_conf(tmp_path):
    """Writes a config file (dedented) into the test's directory and returns its path."""
    def write(text, name="mxgate.conf"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)
    return write


@pytest.fixture
def tls_pair(tmp_path):
    """A self-signed certificate and key (mode 0600) made with the openssl CLI."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=mx.example.test",
                    "-addext", "subjectAltName=DNS:mx.example.test,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return str(cert), str(key)


@pytest.fixture
def daemon():
    """A Daemon (daemon.py) with its own directory; stopped and removed after the test,
    failing the test on sanitizer reports."""
    from daemon import Daemon
    d = Daemon()
    yield d
    try:
        if d.proc and d.proc.poll() is None:
            d.stop()
        elif d.proc:
            d.check_sanitizers()
    finally:
        d.cleanup()
