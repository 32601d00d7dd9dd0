"""Recipient verification at the next hop (connector verify-recipients), against a real
Postfix backend that knows some recipients (virtual_mailbox_maps with Postfix's default
smtpd_reject_unlisted_recipient = yes): known recipients get 250, unknown ones 550 5.1.1
with Postfix's own text, a backend that is down 450 4.4.3 (or 250 with
verify-unavailable = accept); the caches answer while the backend is down; a backend
restarted under a kept probe connection is probed again on a fresh one."""
import re
import urllib.request

import pytest

from daemon import ALLOWED, free_port, message
from peers import Postfix


@pytest.fixture
def postfix():
    p = Postfix(users=("user", "sender", "known"))
    yield p
    p.cleanup()


def verify_conf(daemon, port, unavailable=None, deliver=None, connector="", top=""):
    """Relay to 127.0.0.1:port with verify-recipients on the connector; returns the
    metrics port."""
    mport = free_port()
    opts = {"relay": f'"127.0.0.1:{port}"', "relay-tls": "none", "retry-interval": "1s",
            "verify-timeout": "5s", **(deliver or {})}
    body = "\n".join(f"  {k} = {v}" for k, v in opts.items())
    more = f"verify-unavailable = {unavailable}" if unavailable else ""
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"\n{top}', connectors=f"""
        connector "Verify" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges = {{ "127.0.0.2" }}
          tarpit-interval = 0s
          verify-recipients = true
          {more}
          {connector}
        }}
    """, extra=f"deliver {{\n{body}\n}}\n")
    text = open(daemon.conf).read()
    text = re.sub(r'deliver \{ maildir = "[^"]*" \}\n', "", text, count=1)
    with open(daemon.conf, "w") as f:
        f.write(text)
    return mport


def metric(mport, result, cache):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'^mxgate_recipient_verifications_total\{result="%s",cache="%s"\} (\d+)$'
                  % (result, cache), text, re.M)
    assert m, text
    return int(m.group(1))


def rcpts(daemon, *addrs):
    """One session: MAIL, then each RCPT; returns [(code, text)]."""
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<someone@remote.example>")[0] == 250
    out = [c.cmd(f"RCPT TO:<{a}>") for a in addrs]
    c.cmd("QUIT")
    c.close()
    return out


def test_known_250_unknown_550_with_the_backends_text(daemon, postfix):
    postfix.start()
    mport = verify_conf(daemon, postfix.port)
    daemon.start()
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd("MAIL FROM:<someone@remote.example>")[0] == 250
    assert c.cmd("RCPT TO:<user@example.test>") == (250, "250 2.1.5 Recipient OK")
    code, text = c.cmd("RCPT TO:<nobody@example.test>")
    assert code == 550, text
    assert text.startswith("550 5.1.1 <nobody@example.test>: Recipient address rejected: User "
                           "unknown in virtual mailbox table"), text
    # postmaster is never asked (RFC 5321 §4.5.1), nor a domain not accepted
    assert c.cmd("RCPT TO:<postmaster@example.test>")[0] == 250
    assert c.cmd("RCPT TO:<x@elsewhere.example>")[0] == 550
    assert c.cmd("DATA")[0] == 354
    c.send(message("verified", to="user@example.test") + ".\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    c.close()
    assert b"Subject: verified" in postfix.wait_messages(1)[0]
    daemon.wait_log(r"recipient <user@example\.test> verified at the next hop \(probed\)")
    daemon.wait_log(r"recipient <nobody@example\.test> unknown at the next hop \(probed\): "
                    r"550 5\.1\.1 <nobody@example\.test>: Recipient address rejected.*"
                    r"replied 550 5\.1\.1")
    assert metric(mport, "ok", "miss") == 1
    assert metric(mport, "unknown", "miss") == 1
    assert metric(mport, "unavailable", "miss") == 0


def test_caches_answer_while_the_backend_is_down_then_450(daemon, postfix):
    postfix.start()
    mport = verify_conf(daemon, postfix.port)
    daemon.start()
    assert [r[0] for r in rcpts(daemon, "known@example.test", "gone@example.test")] == [250, 550]
    postfix.stop()
    # the same answers, from the caches (case does not matter)
    got = rcpts(daemon, "Known@Example.TEST", "gone@example.test", "new@example.test")
    assert [r[0] for r in got] == [250, 550, 450], got
    assert got[1][1].startswith("550 5.1.1 <gone@example.test>: Recipient address rejected"), got
    assert got[2] == (450, "450 4.4.3 Recipient verification unavailable, try again later")
    daemon.wait_log(r"recipient <Known@example\.test> verified at the next hop \(cached\)")
    daemon.wait_log(r"recipient <new@example\.test> not verified, the next hop is "
                    r"unavailable \(probed\): .*Connection refused; replied 450 4\.4\.3 "
                    r"\(verify-unavailable = defer\)")
    assert metric(mport, "ok", "hit") == 1
    assert metric(mport, "unknown", "hit") == 1
    assert metric(mport, "unavailable", "miss") == 1
    # unavailable is never cached: the backend back, the recipient is probed again
    postfix.start()
    assert rcpts(daemon, "new@example.test")[0][0] == 550
    assert metric(mport, "unknown", "miss") == 2


def test_backend_down_with_verify_unavailable_accept(daemon):
    port = free_port()  # nothing listens there
    mport = verify_conf(daemon, port, unavailable="accept")
    daemon.start()
    assert rcpts(daemon, "anyone@example.test") == [(250, "250 2.1.5 Recipient OK")]
    daemon.wait_log(r"recipient <anyone@example\.test> not verified, the next hop is "
                    r"unavailable \(probed\): .*; accepted unverified \(verify-unavailable = accept\)")
    assert metric(mport, "unavailable", "miss") == 1


def test_backend_restart_under_a_kept_connection(daemon, postfix):
    postfix.start()
    verify_conf(daemon, postfix.port, deliver={"verify-positive-ttl": "0s",
                                               "verify-negative-ttl": "0s"})
    daemon.start()
    assert rcpts(daemon, "user@example.test")[0][0] == 250
    postfix.stop()
    postfix.start()
    # the kept connection is dead: the probe is made again on a new one, not a 450
    assert [r[0] for r in rcpts(daemon, "user@example.test", "nobody@example.test")] == \
        [250, 550]
    daemon.wait_log(r"recipient <user@example\.test> verified at the next hop \(probed\)",
                    count=2)


def test_a_slow_backend_is_unavailable_at_verify_timeout(daemon):
    """A next hop that accepts the connection and never greets: 450 at verify-timeout,
    and the session thread kept serving others meanwhile."""
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    verify_conf(daemon, port, deliver={"verify-timeout": "2s"}, top="workers = 1")
    daemon.start()
    result = {}

    def slow():
        result["slow"] = rcpts(daemon, "slow@example.test")

    t = threading.Thread(target=slow)
    t.start()
    lsock.settimeout(20)
    probe, _ = lsock.accept()  # the probe is connected and waits for a greeting
    # a session on the one worker is served while the probe waits
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("NOOP")[0] == 250
    c.close()
    t.join(timeout=30)
    probe.close()
    lsock.close()
    assert result["slow"][0][0] == 450, result
    daemon.wait_log(r"recipient <slow@example\.test> not verified, the next hop is "
                    r"unavailable \(probed\): .*(timed out|no greeting)")
    # a next hop that let a probe hang is marked down: the next requests are not queued
    # behind another verify-timeout each
    assert rcpts(daemon, "next@example.test")[0][0] == 450
    daemon.wait_log(r"recipient <next@example\.test> not verified, the next hop is "
                    r"unavailable \(next hop marked down\): not probed, the last probe")


def test_check_warns_without_relay(daemon, mxgate):
    daemon.configure(connectors="""
        connector "Verify" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          verify-recipients = true
        }
    """)
    r = mxgate("check", "-c", daemon.conf)
    assert r.rc == 0, r.err
    assert "verify-recipients needs deliver { relay = ... }" in r.err + r.out


def test_operations_md_example_checks_starts_and_reloads(daemon, postfix, mxgate):
    """docs/OPERATIONS.md's example, as written but for the two addresses: `check` takes
    it, a daemon reloads into it from Maildir delivery, and then verifies."""
    import os
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                            "OPERATIONS.md")).read()
    section = doc.split("## 14. Recipient verification", 1)[1]
    snippet = re.search(r"```\n(deliver \{.*?)```", section, re.S).group(1)
    assert 'relay = "exchange.example.com:25"' in snippet
    assert 'bindings = { "0.0.0.0:25" }' in snippet
    snippet = snippet.replace('"exchange.example.com:25"', f'"127.0.0.1:{postfix.port}"')
    snippet = snippet.replace('"0.0.0.0:25"', f'"127.0.0.1:{daemon.port}"')
    postfix.start()
    daemon.configure()  # Maildir delivery, no verification
    daemon.start()
    assert rcpts(daemon, "nobody@example.test")[0][0] == 250
    text = open(daemon.conf).read()
    text = re.sub(r'deliver \{ maildir = "[^"]*" \}\n', "", text, count=1)
    text = re.sub(r'(?s)connector "Test" \{.*?\n\}\n', "", text)
    with open(daemon.conf, "w") as f:
        f.write(text + snippet)
    r = mxgate("check", "-c", daemon.conf)
    assert r.rc == 0, r.err
    daemon.reload()
    got = rcpts(daemon, "user@example.test", "nobody@example.test")
    assert [g[0] for g in got] == [250, 550], got


def test_reload_to_another_backend_forgets_the_caches(daemon, postfix):
    other = Postfix(users=("user", "gone"))
    try:
        other.start()
        postfix.start()
        verify_conf(daemon, postfix.port)
        daemon.start()
        assert rcpts(daemon, "gone@example.test")[0][0] == 550  # cached as unknown
        text = open(daemon.conf).read().replace(f"127.0.0.1:{postfix.port}",
                                                 f"127.0.0.1:{other.port}")
        with open(daemon.conf, "w") as f:
            f.write(text)
        daemon.reload()
        assert rcpts(daemon, "gone@example.test")[0][0] == 250
        daemon.wait_log(r"recipient <gone@example\.test> verified at the next hop \(probed\)")
    finally:
        other.cleanup()


def test_probes_use_starttls_as_relay_tls_says(daemon):
    """relay-tls = required: the probe connection is TLS too, and a backend without
    STARTTLS makes the recipient unavailable, never probed in clear."""
    backend = Postfix(users=("user",), tls=(daemon.cert, daemon.key))
    try:
        backend.start()
        verify_conf(daemon, backend.port, deliver={"relay-tls": "required"})
        daemon.start()
        assert [r[0] for r in rcpts(daemon, "user@example.test", "nobody@example.test")] == \
            [250, 550]
    finally:
        backend.cleanup()
    plain = Postfix(users=("user",))
    try:
        plain.start()
        text = open(daemon.conf).read().replace(f"127.0.0.1:{backend.port}",
                                                 f"127.0.0.1:{plain.port}")
        with open(daemon.conf, "w") as f:
            f.write(text)
        daemon.reload()
        assert rcpts(daemon, "user@example.test")[0][0] == 450
        daemon.wait_log(r"recipient <user@example\.test> not verified, the next hop is "
                        r"unavailable \(probed\): .*does not offer STARTTLS")
    finally:
        plain.cleanup()
