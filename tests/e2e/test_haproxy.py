"""HAProxy, for real: the test helper (haproxy.py) and `mxgate firewall --format haproxy`.

The helper runs a private HAProxy on loopback in front of ProxyRecorder, a small server
that records the PROXY header bytes of each connection; the tests compare them with the
forms HAProxy's specification gives (send-proxy: v1, send-proxy-v2: v2, health checks
included).  The snippet tests have HAProxy check every golden haproxy.cfg (haproxy -c,
no traffic), and run one generated snippet in front of the recorder: a client inside the
connector's ranges gets through, one outside is turned away at accept.
"""
import glob
import os
import socket
import struct
import subprocess

import pytest

from conftest import run_mxgate
from daemon import ALLOWED, DENIED, free_port
from haproxy import HAPROXY, V2_SIG, HAProxy, ProxyRecorder, parse_v2, refused_without_a_byte

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "golden", "firewall")


@pytest.fixture
def recorder():
    rec = ProxyRecorder().start()
    yield rec
    rec.stop()


@pytest.fixture
def haproxy():
    made = []

    def make(*args, **kwargs):
        hp = HAProxy(*args, **kwargs)
        made.append(hp)
        return hp
    yield make
    for hp in made:
        hp.cleanup()


def smtp_through(port, source=ALLOWED, host="127.0.0.1"):
    """Greeting, EHLO, QUIT through the frontend; returns (client port, replies)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect((host, port))
        with s.makefile("rb") as f:
            replies = [f.readline()]
            s.sendall(b"EHLO client.example\r\nQUIT\r\n")
            replies += [f.readline(), f.readline()]
        return s.getsockname()[1], replies


def client_connections(rec, n, client_port):
    return rec.wait_connections(
        n, where=lambda c: c.header and c.header.get("src", ("", 0))[1] == client_port)


# ---- the helper: what HAProxy sends ---------------------------------------------------------

def test_send_proxy_v1(recorder, haproxy):
    hp = haproxy(servers=[recorder.addr], send_proxy="v1").start()
    cport, replies = smtp_through(hp.port)
    assert replies == [b"220 recorder.example ESMTP\r\n", b"250 ok\r\n", b"221 bye\r\n"]
    (c,) = client_connections(recorder, 1, cport)
    assert c.raw == f"PROXY TCP4 {ALLOWED} 127.0.0.1 {cport} {hp.port}\r\n".encode()
    assert c.header["family"] == "INET"
    assert c.lines == [b"EHLO client.example", b"QUIT"]
    # the session's log line, once it has ended
    hp.wait_log(rf"{ALLOWED}:{cport} \[[^]]+\] fe be/s1 ")


def test_send_proxy_v2(recorder, haproxy):
    hp = haproxy(servers=[recorder.addr], send_proxy="v2").start()
    cport, _ = smtp_through(hp.port)
    (c,) = client_connections(recorder, 1, cport)
    assert c.raw == (V2_SIG + b"\x21\x11\x00\x0c" + socket.inet_aton(ALLOWED)
                     + socket.inet_aton("127.0.0.1") + struct.pack(">HH", cport, hp.port))
    assert c.header["command"] == "PROXY" and c.header["tlvs"] == []


def test_send_proxy_v2_ipv6(recorder, haproxy):
    hp = haproxy(servers=[recorder.addr], send_proxy="v2", bind="::1").start()
    cport, replies = smtp_through(hp.port, source="::1", host="::1")
    assert replies[0] == b"220 recorder.example ESMTP\r\n"
    (c,) = client_connections(recorder, 1, cport)
    assert c.raw[12:16] == b"\x21\x21\x00\x24"   # TCP over IPv6, 36 address bytes
    assert c.header["src"] == ("::1", cport) and c.header["dst"] == ("::1", hp.port)


def test_send_proxy_v2_tlvs_and_crc32c(recorder, haproxy):
    hp = haproxy(servers=[recorder.addr], send_proxy="v2", proxy_v2_options="crc32c,unique-id",
                 frontend_extra='unique-id-format "%ci:%cp"\n').start()
    cport, _ = smtp_through(hp.port)
    (c,) = client_connections(recorder, 1, cport)
    h = c.header
    assert h["crc32c"] is True, c.raw
    assert [t for t, _ in h["tlvs"]] == [0x03, 0x05]
    assert h["tlvs"][1][1] == f"{ALLOWED}:{cport}".encode()
    # one byte changed anywhere in the header and the checksum no longer matches
    broken = bytearray(c.raw)
    broken[17] ^= 1
    assert parse_v2(bytes(broken))["crc32c"] is False


def test_health_check_v2_smtpchk(recorder, haproxy):
    """send-proxy-v2 health checks open with a v2 LOCAL header, then option smtpchk's
    EHLO; a server that stops answering is marked DOWN in the log."""
    hp = haproxy(servers=[recorder.addr], send_proxy="v2", check="smtpchk").start()
    (c,) = recorder.wait_connections(1)
    assert c.raw == V2_SIG + b"\x20\x00\x00\x00"
    assert c.header["command"] == "LOCAL" and c.header["family"] == "UNSPEC"
    assert c.lines[0] == b"EHLO haproxy.test"
    recorder.stop()
    hp.wait_log(r"Server be/s1 is DOWN")


def test_health_check_v1_tcp_check(recorder, haproxy):
    """send-proxy health checks send a v1 line with the check's own endpoints: HAProxy's
    address as the client, the server as the destination."""
    hp = haproxy(servers=[recorder.addr], send_proxy="v1", check="tcp-check").start()
    (c,) = recorder.wait_connections(1)
    h = c.header
    assert h["version"] == 1 and h["src"][0] == "127.0.0.1"
    assert h["dst"] == ("127.0.0.1", recorder.port)
    assert c.lines == [b"QUIT"]
    assert hp.proc.poll() is None


# ---- mxgate firewall --format haproxy ------------------------------------------------------

def goldens():
    return sorted(glob.glob(os.path.join(GOLDEN, "*.haproxy.cfg")))


def test_there_are_golden_snippets():
    assert len(goldens()) >= 7


@pytest.mark.parametrize("path", goldens(), ids=os.path.basename)
def test_golden_snippet_passes_haproxy_check(path, tmp_path):
    with open(path) as f:
        snippet = f.read()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAProxy.config_text(snippet))
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Configuration file is valid" in out
    assert "[WARNING]" not in out and "[ALERT]" not in out, out


def test_haproxy_check_refuses_a_broken_snippet(tmp_path):
    """The check above can fail: an address HAProxy cannot read."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAProxy.config_text(
        "frontend f\n\tbind 127.0.0.1:1\n\tacl a src 300.0.0.1\n"
        "\ttcp-request connection reject if !a\n"))
    r = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0


def test_generated_snippet_lets_in_only_the_ranges(write_conf, recorder, haproxy):
    """A snippet from a config, run for real in front of the recorder with its server
    line filled in: the allowed source reaches the server with its address in the PROXY
    header; the other is closed at accept and never reaches it."""
    port = free_port()
    conf = write_conf(f"""
        hostname = "mx.example.test"
        accepted-domains = {{ "example.test" }}
        connector "Allowed only" {{
          usage = custom
          permission-groups = {{ anonymous-users }}
          bindings = {{ "127.0.0.1:{port}" }}
          remote-ip-ranges = {{ "{ALLOWED}" }}
        }}
    """)
    r = run_mxgate("firewall", "-c", conf, "--format", "haproxy")
    assert r.rc == 0 and r.err == "", r.err
    template = f"# server node1 192.0.2.10:{port} send-proxy-v2 check"
    assert template in r.out and f"bind 127.0.0.1:{port}\n" in r.out
    snippet = r.out.replace(template, f"server node1 127.0.0.1:{recorder.port} send-proxy-v2")
    hp = haproxy(body=snippet).start(wait_port=port)

    cport, replies = smtp_through(port, source=ALLOWED)
    assert replies[0] == b"220 recorder.example ESMTP\r\n"
    (c,) = client_connections(recorder, 1, cport)
    assert c.header["src"] == (ALLOWED, cport) and c.header["dst"] == ("127.0.0.1", port)

    assert refused_without_a_byte(port, DENIED)
    assert not [k for k in recorder.connections if k.header and k.header["src"][0] == DENIED]
    assert len(recorder.connections) == 1
    hp.stop()
