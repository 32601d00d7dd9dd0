"""Prometheus metrics (metrics-listen) on the real daemon: after a known sequence of
sessions, GET /metrics parsed with prometheus_client's own parser gives the exact count of
every series issue 11 names; any other path is 404."""
import os
import re
import smtplib
import subprocess
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon import ALLOWED, DENIED, free_port
from daemon import BIN
from helpers_ops import block_delivery, expect, unblock_delivery, zero_bytes


def exposition(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def scrape(port):
    values = {}
    for fam in text_string_to_metric_families(exposition(port)):
        for s in fam.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return values


def value(values, name, **labels):
    return values[(name, tuple(sorted(labels.items())))]


def wait_for(port, name, want, timeout=20, **labels):
    """Scrapes until the series reaches want (deliveries and closes finish a moment after
    the client has its reply); returns the last scrape."""
    deadline = time.time() + timeout
    while True:
        v = scrape(port)
        if v.get((name, tuple(sorted(labels.items())))) == want or time.time() > deadline:
            return v
        time.sleep(0.05)


def message(c, token):
    expect(c, 250, "MAIL FROM:<sender@remote.example>")
    expect(c, 250, "RCPT TO:<user@example.test>")
    expect(c, 354, "DATA")
    c.send(f"Subject: {token}\r\n\r\nbody {token}\r\n.\r\n")
    expect(c, 250)


@pytest.fixture
def started(daemon):
    mport = free_port()
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    daemon.wait_log(rf"metrics on http://127\.0\.0\.1:{mport}/metrics")
    return daemon, mport


def test_metrics_after_a_known_sequence(started):
    daemon, mport = started
    before = scrape(mport)
    assert value(before, "mxgate_config_generation") == 1
    assert value(before, "mxgate_queue_messages") == 0

    # a client no connector takes: closed without a byte
    assert zero_bytes("127.0.0.1", daemon.port, DENIED) == b""
    # two accepted messages, one in each session; the second session also has a RCPT
    # refused with 550 (a domain this server does not take mail for)
    for token, refuse in (("tok-1", False), ("tok-2", True)):
        c = daemon.connect(source=ALLOWED)
        expect(c, 220)
        expect(c, 250, "EHLO client.example")
        message(c, token)
        if refuse:
            expect(c, 250, "MAIL FROM:<sender@remote.example>")
            expect(c, 550, "RCPT TO:<someone@elsewhere.example>")
            expect(c, 250, "RSET")
        expect(c, 221, "QUIT")
    # a STARTTLS session
    with smtplib.SMTP("127.0.0.1", daemon.port, source_address=(ALLOWED, 0),
                      timeout=10) as s:
        s.ehlo("client.example")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo("client.example")
    daemon.wait_messages(2)
    # a reload that is accepted, then one that is refused
    daemon.reload(expect_ok=True)
    with open(daemon.conf, "a") as f:
        f.write("no-such-option = 1\n")
    daemon.reload(expect_ok=False)

    v = wait_for(mport, "mxgate_deliveries_total", 2, result="delivered")
    v = wait_for(mport, "mxgate_sessions_active", 0)
    sizes = [int(m) for m in re.findall(r"message \S+ queued: .* size=(\d+)", daemon.log())]
    assert len(sizes) == 2, daemon.log()

    assert value(v, "mxgate_connections_total", connector="Test") == 3
    assert value(v, "mxgate_sessions_active") == 0
    assert value(v, "mxgate_connector_sessions_active", connector="Test") == 0
    assert value(v, "mxgate_connections_refused_total", reason="no_connector") == 1
    for reason in ("connector_limit", "source_limit", "fd_exhausted", "no_memory"):
        assert value(v, "mxgate_connections_refused_total", reason=reason) == 0
    assert value(v, "mxgate_accept_paused_total") == 0
    assert value(v, "mxgate_messages_queued_total", connector="Test") == 2
    assert value(v, "mxgate_messages_queued_bytes_total", connector="Test") == sum(sizes)
    rejected = {dict(k[1])["code"]: n for k, n in v.items()
                if k[0] == "mxgate_messages_rejected_total"}
    assert rejected == {"550": 1}
    assert value(v, "mxgate_messages_rejected_total", connector="Test", code="550") == 1
    assert value(v, "mxgate_deliveries_total", result="delivered") == 2
    assert value(v, "mxgate_deliveries_total", result="deferred") == 0
    assert value(v, "mxgate_deliveries_total", result="failed") == 0
    assert value(v, "mxgate_queue_messages") == 0
    assert value(v, "mxgate_config_reloads_total", result="ok") == 1
    assert value(v, "mxgate_config_reloads_total", result="error") == 1
    # each reload says how long it took, and of that how much CPU its reading took
    took = [(float(a), float(b)) for a, b in re.findall(
        r"reload: read \S+ in (\d+\.\d+) s \((\d+\.\d+) s of CPU on the reload thread\)",
        daemon.log())]
    assert len(took) == 2, daemon.log()
    # printed to the millisecond: a refused reload may show 0.001 s, and 0.000 s of CPU
    assert all(0 <= cpu <= t for t, cpu in took), took
    last = value(v, "mxgate_config_reload_duration_seconds")
    assert last > 0 and abs(last - took[-1][0]) <= 0.0005 + 1e-9, (last, took)
    assert value(v, "mxgate_config_generation") == 2
    assert value(v, "mxgate_tls_sessions_total", version="TLSv1.3") == 1
    assert value(v, "mxgate_tls_sessions_total", version="TLSv1.2") == 0
    assert value(v, "mxgate_tls_handshake_failures_total") == 0
    assert value(v, "mxgate_tls_sessions_resumed_total") == 0
    assert value(v, "mxgate_commit_seconds_count") == 2
    assert value(v, "mxgate_commit_seconds_bucket", le="+Inf") == 2
    assert value(v, "mxgate_spool_sync_failures_total") == 0
    # OpenSSL's record buffers came from the slot pool (net/tlsmem), which sanitizer builds
    # leave out so that ASan keeps checking OpenSSL's buffers
    with open(BIN, "rb") as f:
        sanitized = any(m in f.read() for m in (b"__asan_init", b"__tsan_init"))
    if sanitized:
        assert not any(k[0] == "mxgate_tls_buffer_slots" for k in v)
    else:
        assert value(v, "mxgate_tls_buffer_slots", state="used") == 0  # the session ended
        assert value(v, "mxgate_tls_buffer_slots", state="hot") >= 2   # its buffers, kept
        assert value(v, "mxgate_tls_buffer_fallbacks_total") == 0
    # each message was its own group commit (the second sent after the first's 250): one
    # syncfs and one fsync of queue/ each; a delivery's sync shared one or went alone
    assert value(v, "mxgate_spool_syncs_total", step="data") == 2
    assert value(v, "mxgate_spool_syncs_total", step="directory") == 2
    assert value(v, "mxgate_spool_syncs_total", step="barrier") <= 2


def test_metrics_other_path_is_404(started):
    daemon, mport = started
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=10)
    assert e.value.code == 404


def test_metrics_listen_is_checked(daemon):
    daemon.configure(top='metrics-listen = "localhost:9100"')
    assert daemon.start(expect_fail=True) != 0
    assert "metrics-listen" in daemon.log()


def test_metrics_port_taken_stops_the_start(daemon):
    mport = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", mport))
        s.listen(1)
        daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"')
        assert daemon.start(expect_fail=True) != 0
    assert re.search(rf"metrics-listen 127\.0\.0\.1:{mport}: cannot listen: Address already "
                     r"in use; not starting", daemon.log()), daemon.log()


def test_reload_keeps_the_metrics_endpoint(started):
    """A reload that moves metrics-listen says it takes effect at the next start; the
    running endpoint keeps serving."""
    daemon, mport = started
    other = free_port()
    with open(daemon.conf) as f:
        text = f.read()
    with open(daemon.conf, "w") as f:
        f.write(text.replace(f"127.0.0.1:{mport}", f"127.0.0.1:{other}"))
    daemon.reload(expect_ok=True)
    daemon.wait_log(rf'metrics-listen = "127\.0\.0\.1:{other}" takes effect at the next start')
    assert value(scrape(mport), "mxgate_config_generation") == 2


def test_queue_gauges_follow_a_deferred_message(daemon):
    """A message whose delivery fails stays queued: the queue gauge says 1 and the
    oldest-message gauge its arrival; once delivered, 1 delivered and both gauges 0."""
    mport = free_port()
    block_delivery(daemon)
    daemon.configure(top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    sent_after = int(time.time())
    c = daemon.connect(source=ALLOWED)
    expect(c, 220)
    expect(c, 250, "EHLO client.example")
    message(c, "tok-q")
    expect(c, 221, "QUIT")
    sent_before = time.time()
    v = wait_for(mport, "mxgate_deliveries_total", 1, result="deferred")
    assert value(v, "mxgate_deliveries_total", result="deferred") == 1
    assert value(v, "mxgate_deliveries_total", result="delivered") == 0
    assert value(v, "mxgate_queue_messages") == 1
    oldest = value(v, "mxgate_queue_oldest_message_timestamp_seconds")
    assert sent_after <= oldest <= sent_before, (sent_after, oldest, sent_before)

    unblock_delivery(daemon)
    r = subprocess.run([BIN, "queue", "-c", daemon.conf, "flush"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    v = wait_for(mport, "mxgate_deliveries_total", 1, result="delivered")
    v = wait_for(mport, "mxgate_queue_oldest_message_timestamp_seconds", 0)
    assert value(v, "mxgate_deliveries_total", result="delivered") == 1
    assert value(v, "mxgate_queue_messages") == 0
    assert value(v, "mxgate_queue_oldest_message_timestamp_seconds") == 0


def test_every_metric_is_documented(started):
    """docs/OPERATIONS.md's table names every family the endpoint serves (the admin's
    reference for alerts), so a new metric cannot ship undocumented."""
    daemon, mport = started
    families = {f.name for f in text_string_to_metric_families(exposition(mport))}
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "OPERATIONS.md"),
               encoding="utf-8").read()
    missing = sorted(n for n in families
                     if n.startswith("mxgate_") and not re.search(
                         rf"`{re.escape(n)}(_total)?[`{{]", doc))
    assert not missing, f"metrics not in docs/OPERATIONS.md: {missing}"
