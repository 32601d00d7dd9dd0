"""Connector selection on the live daemon: the connector chosen at accept time decides
the banner, the limits and the Received: header; no connector means zero bytes.

`mxgate which` answers the same question from the config alone; these tests check that
the running daemon agrees with it.
"""
import os
import re
import shutil
import subprocess

import pytest

from conftest import run_mxgate
from daemon import ALLOWED, DENIED, Client
from helpers_ops import (banner, chown_nobody, connector, expect, refused,
                         token_counts, transaction, zero_bytes)

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
NESTED = (connector("Outer", ranges=("127.0.0.0/8",), banner='"220 outer ready"') +
          connector("Inner", ranges=("127.0.0.2",), banner='"220 inner ready"',
                    max_recipients_per_message=1))


def which(daemon, local, remote):
    r = run_mxgate("which", "-c", daemon.conf, local, remote)
    return r.rc, r.out.strip()


def test_nested_ranges_on_one_binding(daemon):
    """127.0.0.0/8 "Outer" and 127.0.0.2 "Inner" on one binding: 127.0.0.2 gets the inner
    connector (its banner, its limit of 1 recipient, its name in Received:), 127.0.0.3 the
    outer one. With only Inner defined, 127.0.0.4 gets zero bytes."""
    daemon.configure(connectors=NESTED)
    daemon.start()

    c = daemon.connect(source="127.0.0.2")
    assert banner(c) == "220 inner ready"
    expect(c, 250, "EHLO client.example")
    expect(c, 250, "MAIL FROM:<sender@remote.example>")
    expect(c, 250, "RCPT TO:<user@example.test>")
    expect(c, 452, "RCPT TO:<user2@example.test>", startswith="452 4.5.3 Too many recipients")
    expect(c, 354, "DATA")
    c.send("Subject: tok-inner\r\n\r\ninner\r\n.\r\n")
    expect(c, 250)
    c.close()

    c = daemon.connect(source=DENIED)   # 127.0.0.3: only the outer range holds it
    assert banner(c) == "220 outer ready"
    expect(c, 250, "EHLO client.example")
    code, text = transaction(c, "tok-outer", rcpts=("user@example.test", "user2@example.test"))
    assert code == 250, text
    c.close()

    msgs = daemon.wait_messages(2)
    by_token = {re.search(rb"Subject: (tok-\w+)", m).group(1): m for m in msgs}
    assert b'connector "Inner"' in by_token[b"tok-inner"]
    assert b'connector "Outer"' in by_token[b"tok-outer"]
    daemon.wait_messages(1, user="user2")
    assert token_counts(daemon, "user2") == {"tok-outer": 1}
    for remote, name in (("127.0.0.2", "Inner"), ("127.0.0.3", "Outer")):
        rc, out = which(daemon, f"127.0.0.1:{daemon.port}", remote)
        assert rc == 0 and name in out, (remote, rc, out)

    daemon.configure(connectors=connector("Inner", ranges=("127.0.0.2",),
                                          banner='"220 inner ready"',
                                          max_recipients_per_message=1))
    daemon.reload()
    assert zero_bytes("127.0.0.1", daemon.port, "127.0.0.4") == b""
    daemon.wait_log(r"refused \[127\.0\.0\.4\]:\d+ on 127\.0\.0\.1:\d+: no connector")
    c = daemon.connect(source="127.0.0.2")
    assert banner(c) == "220 inner ready"
    c.close()
    rc, _ = which(daemon, f"127.0.0.1:{daemon.port}", "127.0.0.4")
    assert rc == 3


@pytest.mark.parametrize("wild_first", [False, True], ids=["exact-first", "wild-first"])
def test_exact_binding_beats_wildcard_on_the_same_port(daemon, wild_first):
    """"Exact" on 127.0.0.1:PORT and "Wild" on 0.0.0.0:PORT, both for 127.0.0.0/8: a
    connection to 127.0.0.1 gets Exact (a tie goes to the exact binding); one to another
    local address, 127.0.0.5, gets Wild. The daemon must agree with `mxgate which`,
    whichever connector the file names first."""
    exact = connector("Exact", ranges=("127.0.0.0/8",), banner='"220 exact ready"')
    wild = connector("Wild", bindings=("0.0.0.0:{port}",), ranges=("127.0.0.0/8",),
                     banner='"220 wild ready"')
    daemon.configure(connectors=wild + exact if wild_first else exact + wild)
    daemon.start()
    for local, name in (("127.0.0.1", "Exact"), ("127.0.0.5", "Wild")):
        rc, out = which(daemon, f"{local}:{daemon.port}", ALLOWED)
        assert rc == 0 and name in out, (local, rc, out)

    c = daemon.connect(source=ALLOWED, host="127.0.0.1")
    assert banner(c) == "220 exact ready"
    c.close()
    try:
        c = Client("127.0.0.5", daemon.port, ALLOWED, 10)
    except ConnectionRefusedError:
        raise AssertionError("nothing accepts on 127.0.0.5 for the 0.0.0.0 binding:\n" +
                             daemon.log())
    try:
        assert banner(c) == "220 wild ready"
    finally:
        c.close()
    assert "cannot listen" not in daemon.log(), daemon.log()


def test_ipv6_loopback_binding(daemon):
    """A connector bound to [::1]:PORT for ::1 serves IPv6 clients and delivers; nothing
    listens on 127.0.0.1:PORT."""
    daemon.configure(connectors=connector("Six", bindings=("[::1]:{port}",), ranges=("::1",),
                                          banner='"220 six ready"'))
    daemon.start()
    c = Client("::1", daemon.port, "::1", 10)
    assert banner(c) == "220 six ready"
    expect(c, 250, "EHLO client.example")
    code, text = transaction(c, "tok-six")
    assert code == 250, text
    c.close()
    msg = daemon.wait_messages(1)[0]
    assert b'connector "Six"' in msg and b"::1" in msg
    assert refused("127.0.0.1", daemon.port)
    rc, out = which(daemon, f"[::1]:{daemon.port}", "::1")
    assert rc == 0 and "Six" in out, out


def test_example_config_passes_check(tmp_path):
    """etc/mxgate.example.conf, in a copy of the tree layout with a certificate made the
    way scripts/run-example makes it, passes `mxgate check` (the repository's var/ is not
    touched)."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    etc.mkdir()
    shutil.copy(os.path.join(REPO, "etc", "mxgate.example.conf"), etc / "mxgate.example.conf")
    for d in ("tls", "spool", "mail"):
        (var / d).mkdir(parents=True)
    subprocess.run(f"umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 365 "
                   f"-keyout {var}/tls/key.pem -out {var}/tls/cert.pem "
                   f"-subj /CN=mx.example.test "
                   f"-addext 'subjectAltName=DNS:mx.example.test,IP:127.0.0.1,IP:::1'",
                   shell=True, check=True, capture_output=True)
    os.chmod(var / "tls" / "key.pem", 0o600)
    chown_nobody(str(var / "spool"))
    chown_nobody(str(var / "mail"))
    r = run_mxgate("check", "-c", str(etc / "mxgate.example.conf"))
    assert r.rc == 0, r.err
    assert r.out.splitlines()[0] == "configuration OK", r.out
    assert 'connector "Loopback"' in r.out
    assert "error" not in r.err, r.err
