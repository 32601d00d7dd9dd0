"""PROXY protocol in the daemon, with a real HAProxy in front (haproxy.py).

HAProxy connects to mxgate from its own address, BALANCER (`source` in its backend), the
one address in mxgate's proxy-protocol-from; clients connect to HAProxy from ALLOWED
(inside the connector's ranges) or DENIED (outside).  The header's client is what mxgate
selects, limits, logs and stamps in Received:.  A peer outside proxy-protocol-from is never
believed, and a balancer that sends no header is closed without a byte.
"""
import glob
import os
import re
import smtplib
import socket
import time

import pytest

from daemon import ALLOWED, DENIED, Daemon, message
from haproxy import HAProxy, refused_without_a_byte

BALANCER = "127.0.0.10"


def proxied_config(daemon, ranges=f'"{ALLOWED}"', timeout="5s", extra_connectors="",
                   top=""):
    logdir = os.path.join(daemon.dir, "protolog")
    daemon.configure(top=f"""
        proxy-protocol-from = {{ "{BALANCER}" }}
        proxy-protocol-timeout = {timeout}
        protocol-log-directory = "{logdir}"
        metrics-listen = "127.0.0.1:{daemon.mport}"
        {top}
    """, connectors=f"""
        connector "Public" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges = {{ {ranges} }}
          tarpit-interval = 0s
          protocol-logging-level = verbose
        }}
        {extra_connectors}
    """)
    return logdir


def metric(daemon, name, **labels):
    """The value of one series from the daemon's /metrics (0 when absent)."""
    with socket.create_connection(("127.0.0.1", daemon.mport), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    want = f"{name}{{{lab}}}" if lab else name
    for line in data.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0


def protolog_rows(logdir, want, timeout=10):
    """The protocol log's text once it holds `want` (or after timeout): its writer thread
    writes the rows the sessions queue a moment later, asynchronously."""
    deadline = time.time() + timeout
    while True:
        rows = "".join(open(p).read() for p in sorted(glob.glob(os.path.join(logdir,
                                                                             "RECV*.LOG"))))
        if want in rows or time.time() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture
def haproxy():
    made = []

    def make(*args, **kwargs):
        kwargs.setdefault("backend_extra", f"source {BALANCER}\n")
        hp = HAProxy(*args, **kwargs)
        made.append(hp)
        return hp
    yield make
    for hp in made:
        hp.cleanup()


@pytest.fixture
def pdaemon(daemon):
    from daemon import free_port
    daemon.mport = free_port()
    return daemon


def send_via(port, source, n=1, subject="proxied"):
    """n messages over one SMTP session through HAProxy from source."""
    with smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=20) as s:
        for i in range(n):
            s.sendmail("a@remote.example", ["user@example.test"],
                       message(f"{subject} {i}").encode())


@pytest.mark.parametrize("send_proxy", ["v1", "v2"])
def test_the_header_client_is_the_client_for_everything(pdaemon, haproxy, send_proxy):
    d = pdaemon
    logdir = proxied_config(d)
    d.start()
    hp = haproxy(servers=[("127.0.0.1", d.port)], send_proxy=send_proxy).start()
    send_via(hp.port, ALLOWED)
    msg = d.wait_messages(1)[0]
    # Received: names the client, not the balancer
    received = msg.split(b"\r\n\r\n")[0].decode()
    assert f"[{ALLOWED}]" in received and BALANCER not in received, received
    # the session's log lines name both
    d.wait_log(rf"client=\[{re.escape(ALLOWED)}\]:\d+ via=\[{re.escape(BALANCER)}\]:\d+ "
               r'connector="Public": accepted on')
    # the protocol log's remote-endpoint is the client
    rows = protolog_rows(logdir, f",{ALLOWED}:")
    assert f",{ALLOWED}:" in rows and BALANCER not in rows, rows
    assert metric(d, "mxgate_proxy_headers_total", result="ok") == 1
    # outside the connector's ranges: closed without an SMTP byte, though the balancer is
    # not covered either way
    assert refused_without_a_byte(hp.port, DENIED)
    d.wait_log(rf"refused \[{re.escape(DENIED)}\]:\d+ via \[{re.escape(BALANCER)}\]:\d+ "
               r"on .*: no connector")
    assert metric(d, "mxgate_connections_refused_total", reason="no_connector") == 1


def test_per_source_limits_count_the_header_client(pdaemon, haproxy):
    d = pdaemon
    proxied_config(d, ranges=f'"{ALLOWED}", "{DENIED}"', extra_connectors="")
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace("tarpit-interval = 0s",
                             "tarpit-interval = 0s\n  max-inbound-connection-per-source = 1"))
    d.start()
    hp = haproxy(servers=[("127.0.0.1", d.port)], send_proxy="v2").start()
    first = socket.create_connection(("127.0.0.1", hp.port), source_address=(ALLOWED, 0),
                                     timeout=10)
    assert first.recv(100).startswith(b"220")
    # the same client again: over its limit, though another one still gets in
    with socket.create_connection(("127.0.0.1", hp.port), source_address=(ALLOWED, 0),
                                  timeout=10) as s:
        assert s.recv(200).startswith(b"421 4.3.2")
    with socket.create_connection(("127.0.0.1", hp.port), source_address=(DENIED, 0),
                                  timeout=10) as s:
        assert s.recv(100).startswith(b"220")
    first.close()


@pytest.mark.parametrize("send_proxy,check", [("v2", "smtpchk"), ("v1", "tcp-check")])
def test_health_checks_get_a_session_of_the_balancer(pdaemon, haproxy, send_proxy, check):
    d = pdaemon
    health = f"""
        connector "Balancer checks" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges = {{ "{BALANCER}" }}
          tarpit-interval = 0s
        }}
    """
    proxied_config(d, extra_connectors=health)
    d.start()
    hp = haproxy(servers=[("127.0.0.1", d.port)], send_proxy=send_proxy, check=check).start()
    # a check session on the balancer's own address (v2 LOCAL, or v1 whose client is the
    # balancer), on the connector that covers it; HAProxy sees the server up
    d.wait_log(rf'client=\[{re.escape(BALANCER)}\]:\d+ (via=\S+ )?connector="Balancer checks": '
               r"accepted on", timeout=15)
    time.sleep(1.5)  # a few more checks: none may fail
    assert "is DOWN" not in hp.log(), hp.log()
    result = "local" if send_proxy == "v2" else "ok"
    assert metric(d, "mxgate_proxy_headers_total", result=result) >= 1
    assert metric(d, "mxgate_proxy_headers_total", result="invalid") == 0
    send_via(hp.port, ALLOWED)
    d.wait_messages(1)


def test_local_check_without_a_connector_is_closed(pdaemon, haproxy):
    d = pdaemon
    proxied_config(d)
    d.start()
    hp = haproxy(servers=[("127.0.0.1", d.port)], send_proxy="v2", check="smtpchk").start()
    # no connector covers the balancer itself: its LOCAL checks are closed, the server
    # is down for HAProxy
    hp.wait_log(r"is DOWN", timeout=15)
    d.wait_log(rf"refused \[{re.escape(BALANCER)}\]:\d+ on .*: no connector")
    assert metric(d, "mxgate_proxy_headers_total", result="local") >= 1


def test_a_forged_header_from_a_client_is_smtp_input(pdaemon):
    d = pdaemon
    proxied_config(d)
    d.start()
    with d.connect(source=ALLOWED) as c:
        assert c.reply()[0] == 220
        code, text = c.cmd(f"PROXY TCP4 192.0.2.1 127.0.0.1 5000 {d.port}")
        assert code == 500, text
        code, _ = c.cmd("EHLO client.example")
        assert code == 250
    # a client outside every connector sending a header: still refused at accept
    with d.connect(source=DENIED) as c:
        assert c.closed()
    assert metric(d, "mxgate_proxy_headers_total", result="ok") == 0


def test_a_balancer_sending_garbage_or_nothing_is_closed(pdaemon):
    d = pdaemon
    proxied_config(d, timeout="1s")
    d.start()
    # garbage: closed at once, without a byte
    with d.connect(source=BALANCER) as c:
        c.send(b"EHLO balancer.example\r\n")
        assert c.recv_all(10) == b""
    d.wait_log(r"closed \[127\.0\.0\.10\]:\d+ on .*: invalid PROXY header .*send-proxy")
    # a v2 header whose family byte is UDP: refused as well
    with d.connect(source=BALANCER) as c:
        c.send(b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12))
        assert c.recv_all(10) == b""
    # nothing: closed at the timeout, without a byte
    with d.connect(source=BALANCER) as c:
        assert c.recv_all(10) == b""
    d.wait_log(r"no whole PROXY header within proxy-protocol-timeout \(1000 ms\)")
    assert metric(d, "mxgate_proxy_headers_total", result="invalid") == 2
    assert metric(d, "mxgate_proxy_headers_total", result="timeout") == 1


def test_a_header_split_and_followed_by_pipelined_smtp(pdaemon):
    """The stage takes the header's bytes and nothing more: what follows is the
    session's, even in the same segment."""
    d = pdaemon
    proxied_config(d)
    d.start()
    with d.connect(source=BALANCER) as c:
        c.send(b"PROXY TCP4 127.0.0.2 127.0")
        time.sleep(0.2)
        c.send(b".0.1 4242 25\r\nEHLO pipelined.example\r\n")
        assert c.reply()[0] == 220
        assert c.reply()[0] == 250
        c.cmd("QUIT")
    d.wait_log(r"client=\[127\.0\.0\.2\]:4242 via=\[127\.0\.0\.10\]:\d+")


def test_reload_changes_the_list(pdaemon):
    d = pdaemon
    proxied_config(d)
    d.start()
    with d.connect(source=BALANCER) as c:
        c.send(f"PROXY TCP4 {ALLOWED} 127.0.0.1 4000 25\r\n")
        assert c.reply()[0] == 220
    # the balancer leaves the list; the client ALLOWED becomes a balancer
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace(f'proxy-protocol-from = {{ "{BALANCER}" }}',
                             f'proxy-protocol-from = {{ "{ALLOWED}" }}'))
    d.reload()
    with d.connect(source=BALANCER) as c:  # not believed, and no connector covers it
        c.send(f"PROXY TCP4 {ALLOWED} 127.0.0.1 4000 25\r\n")
        assert c.recv_all(5) == b""
    with d.connect(source=ALLOWED) as c:  # now a balancer: no greeting before a header
        c.send(f"PROXY TCP4 {ALLOWED} 127.0.0.1 4001 25\r\n")
        assert c.reply()[0] == 220
    d.wait_log(r"client=\[127\.0\.0\.2\]:4001 via=\[127\.0\.0\.2\]:\d+")


# ---- two nodes behind one HAProxy -------------------------------------------------------

HEALTH = f"""
    connector "Balancer checks" {{
      usage = internet
      bindings = {{ "127.0.0.1:{{port}}" }}
      remote-ip-ranges = {{ "{BALANCER}" }}
      tarpit-interval = 0s
    }}
"""


def subjects(d):
    """The subjects (tokens) of every message in d's Maildir."""
    out = []
    for m in d.messages():
        hit = re.search(rb"^Subject: (.*?)\r\n", m, re.M)
        out.append(hit.group(1).decode() if hit else "?")
    return out


def test_two_nodes_share_the_mail_and_a_killed_node_loses_nothing(pdaemon, haproxy):
    from daemon import free_port
    from helpers_ops import block_delivery, restart, unblock_delivery
    a, b = pdaemon, Daemon()
    b.mport = free_port()
    try:
        for d in (a, b):
            proxied_config(d, extra_connectors=HEALTH)
        block_delivery(a)  # a keeps what it takes queued: the spool a kill must not lose
        a.start()
        b.start()
        hp = haproxy(servers=[("127.0.0.1", a.port), ("127.0.0.1", b.port)],
                     send_proxy="v2", check="smtpchk",
                     backend_extra=f"source {BALANCER}\nbalance roundrobin\n"
                                   "option redispatch\nretries 3\n").start()
        n = 10
        for i in range(n):  # one session each: roundrobin alternates the nodes
            send_via(hp.port, ALLOWED, subject=f"tok-{i}")
        b.wait_messages(1)
        b.wait_queue_empty()
        on_b = len(b.messages())
        a.wait_log(r"deferred", timeout=20)
        assert 0 < on_b < n, (on_b, b.log())
        assert a.messages() == []
        # node a dies with its queue; new sessions go to b
        a.kill9()
        for i in range(n, n + 6):
            send_via(hp.port, ALLOWED, subject=f"tok-{i}")
        b.wait_messages(on_b + 6)
        hp.wait_log(r"s1 is DOWN")
        # a comes back on the same spool: it delivers what it acknowledged
        unblock_delivery(a)
        restart(a)
        a.wait_messages(n - on_b, timeout=30)
        got = sorted(subjects(a) + subjects(b))
        assert got == sorted(f"tok-{i} 0" for i in range(n + 6)), got
        assert a.wait_queue_empty() == []
    finally:
        b.stop()
        b.cleanup()


def test_check_warns_when_a_binding_is_open_to_everyone_directly(pdaemon):
    from conftest import run_mxgate
    d = pdaemon
    proxied_config(d, ranges='"0.0.0.0/0"')
    r = run_mxgate("check", "-c", d.conf)
    assert r.rc == 0, r.out + r.err
    assert re.search(r"proxy-protocol-from is set, yet connector 'Public' takes every IPv4 "
                     r"address: any client may connect to its bindings directly",
                     r.out + r.err), r.out + r.err
    # listed clients only: no such warning
    proxied_config(d)
    r = run_mxgate("check", "-c", d.conf)
    assert "proxy-protocol-from is set" not in r.out + r.err
    # and the firewall lets the balancer through to the port
    r = run_mxgate("firewall", "--format", "nft", "-c", d.conf)
    assert r.rc == 0, r.err
    assert BALANCER in r.out and ALLOWED in r.out, r.out


def doc_blocks():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "SCALING.md")
    with open(path) as f:
        return re.findall(r"^```\n(.*?)^```$", f.read(), re.M | re.S)


def test_scaling_md_snippets_work_as_written(pdaemon, tmp_path):
    """docs/SCALING.md's mxgate.conf passes check as written, then starts and reloads
    (on a test port and spool); its HAProxy backend passes haproxy -c."""
    from conftest import run_mxgate
    conf, backend = doc_blocks()
    assert conf.startswith("# mxgate.conf")
    # the documented run user, which the install makes; nobody stands in for it here
    assert 'user = "mxgate"\n' in conf
    conf = conf.replace('user = "mxgate"\n', 'user = "nobody"\n')
    path = tmp_path / "mxgate.conf"
    path.write_text(conf)
    r = run_mxgate("check", "-c", str(path))
    assert r.rc == 0, r.out + r.err
    assert "proxy-protocol-from is set" not in r.out + r.err
    d = pdaemon
    running = (conf.replace("0.0.0.0:25", f"127.0.0.1:{d.port}")
               .replace('"/var/spool/mxgate"', f'"{d.spool}"')
               .replace('"10.9.0.10"', f'"{BALANCER}"'))
    running += f'deliver {{ maildir = "{d.mail}/%d/%u" }}\n'
    with open(d.conf, "w") as f:
        f.write(running)
    os.chmod(d.conf, 0o644)
    d.start()
    with d.connect(source=BALANCER) as c:  # a LOCAL header: the health-check connector
        c.send(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
        assert c.reply()[0] == 220
    d.wait_log(r'client=\[127\.0\.0\.10\]:\d+ connector="Balancer health checks"')
    d.reload()
    hp = HAProxy(body="frontend fe\n    bind 127.0.0.1:2525\n    default_backend mxgate_p25\n\n"
                      + backend)
    try:
        rc, out = hp.check_config()
        assert rc == 0, out
    finally:
        hp.cleanup()
