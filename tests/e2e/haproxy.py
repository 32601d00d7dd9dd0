"""A private HAProxy in front of test servers, and a PROXY-protocol recording server.

HAProxy runs from its own configuration in a temporary directory, in the foreground (-db),
on loopback ports of its own, in `mode tcp`; it logs to its standard output, which goes to
a file the test reads (log()).  Nothing of the system's HAProxy is touched.  Used by the
load-balancer tests: HAProxy sends PROXY headers (send-proxy, send-proxy-v2) to the servers
behind it and health-checks them (option smtpchk, or tcp-check).

    rec = ProxyRecorder().start()                  # or mxgate's binding
    hp = HAProxy(servers=[rec.addr], send_proxy="v2", check="smtpchk").start()
    ... connect to ("127.0.0.1", hp.port) ...
    hp.cleanup(); rec.stop()

parse_v1() and parse_v2() read a PROXY header strictly (HAProxy's doc/proxy-protocol.txt),
independently of mxgate's parser, so the tests can check what HAProxy really sends.
"""
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import threading
import time

from daemon import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _listening(port):
    """True when a TCP socket listens on port (read from /proc: no connection made, so
    nothing reaches the servers behind HAProxy)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def refused_without_a_byte(port, source):
    """Connects to 127.0.0.1:port from source: True when the connection is closed before
    any byte arrives. HAProxy's `tcp-request connection reject` resets the connection
    as soon as it accepts it, and on a loaded machine that reset can land before the
    blocking connect() returns, which then fails with ECONNRESET: that is the same
    outcome. A refused connect (nothing listening) is not, and raises."""
    with socket.socket() as s:
        s.settimeout(10)
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", port))
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def crc32c(data):
    """CRC32c (Castagnoli), as the PROXY v2 CRC32C TLV carries it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


_V1 = re.compile(rb"PROXY (?:(TCP4|TCP6) (\S+) (\S+) (0|[1-9][0-9]{0,4}) (0|[1-9][0-9]{0,4})"
                 rb"|UNKNOWN(?: [\x20-\x7e]*)?)\r\n")


def parse_v1(data):
    """The v1 line at the start of data: a dict, or None when it is not one."""
    end = data.find(b"\r\n")
    if end < 0 or end + 2 > 107:
        return None
    line = data[:end + 2]
    m = _V1.fullmatch(line)
    if not m:
        return None
    if not m.group(1):
        return {"version": 1, "command": "PROXY", "family": "UNSPEC", "len": len(line)}
    fam = ipaddress.IPv4Address if m.group(1) == b"TCP4" else ipaddress.IPv6Address
    src, dst = fam(m.group(2).decode()), fam(m.group(3).decode())
    sport, dport = int(m.group(4)), int(m.group(5))
    if sport > 65535 or dport > 65535:
        return None
    return {"version": 1, "command": "PROXY", "family": "INET" if fam is ipaddress.IPv4Address
            else "INET6", "src": (str(src), sport), "dst": (str(dst), dport), "len": len(line)}


def parse_v2(data):
    """The v2 header at the start of data: a dict (with its TLVs and whether a CRC32C
    TLV matched), or None when it is not a complete, valid one."""
    if len(data) < 16 or data[:12] != V2_SIG or data[12] >> 4 != 2 or data[12] & 15 > 1:
        return None
    total = 16 + struct.unpack(">H", data[14:16])[0]
    if len(data) < total:
        return None
    hdr = data[:total]
    fam = hdr[13]
    out = {"version": 2, "command": "PROXY" if hdr[12] & 15 else "LOCAL", "len": total,
           "tlvs": [], "crc32c": None}
    if fam == 0x11 and total >= 28:
        src, dst = ipaddress.IPv4Address(hdr[16:20]), ipaddress.IPv4Address(hdr[20:24])
        sport, dport = struct.unpack(">HH", hdr[24:28])
        off, out["family"] = 28, "INET"
    elif fam == 0x21 and total >= 52:
        src, dst = ipaddress.IPv6Address(hdr[16:32]), ipaddress.IPv6Address(hdr[32:48])
        sport, dport = struct.unpack(">HH", hdr[48:52])
        off, out["family"] = 52, "INET6"
    elif fam == 0x00:
        off, out["family"] = 16, "UNSPEC"
    else:
        return None
    if out["family"] != "UNSPEC":
        out["src"], out["dst"] = (str(src), sport), (str(dst), dport)
    while off < total:
        if total - off < 3:
            return None
        t, n = hdr[off], struct.unpack(">H", hdr[off + 1:off + 3])[0]
        if off + 3 + n > total:
            return None
        value = hdr[off + 3:off + 3 + n]
        out["tlvs"].append((t, value))
        if t == 0x03:
            zeroed = hdr[:off + 3] + b"\0\0\0\0" + hdr[off + 7:]
            out["crc32c"] = n == 4 and struct.unpack(">I", value)[0] == crc32c(zeroed)
        off += 3 + n
    return out


def parse_header(data):
    """parse_v1() or parse_v2() by the signature; None for neither."""
    if data.startswith(b"PROXY "):
        return parse_v1(data)
    if data.startswith(V2_SIG):
        return parse_v2(data)
    return None


class Connection:
    """What ProxyRecorder saw on one connection: the header's bytes and what it means,
    and the SMTP lines after it."""

    def __init__(self, peer):
        self.peer = peer          # (address, port) of the TCP peer: HAProxy
        self.raw = b""            # the PROXY header's bytes
        self.header = None        # parse_header(raw)
        self.lines = []           # the lines after the header, without CRLF
        self.done = threading.Event()


class ProxyRecorder:
    """A TCP server on loopback that expects a PROXY header (v1 or v2) on every
    connection, records its bytes, then speaks just enough SMTP for a client and for
    HAProxy's `option smtpchk`: a 220 greeting, 250 to HELO/EHLO and anything else, 221
    to QUIT.  A connection whose first bytes are no header is recorded with header None
    and closed."""

    def __init__(self, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or free_port(host)
        self.addr = (host, self.port)
        self.connections = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._sock = None
        self._thread = None
        self._stop = False

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(fam, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(self.addr)
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop = True
        if self._thread:
            self._thread.join(timeout=5)
        if self._sock:
            self._sock.close()

    def _accept_loop(self):
        while not self._stop:
            try:
                s, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c = Connection(peer)
            with self._cond:
                self.connections.append(c)
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(s, c), daemon=True).start()

    @staticmethod
    def _read_header(s):
        """The header's bytes and parse_header() of them (None: not a valid header).  One
        byte at a time, so not a byte past the header is taken."""
        data = b""
        while True:
            if data.startswith(b"PROXY"):
                if data.endswith(b"\r\n") or len(data) >= 107:
                    return data, parse_v1(data)
            elif data.startswith(V2_SIG):
                if len(data) >= 16 and len(data) == 16 + struct.unpack(">H", data[14:16])[0]:
                    return data, parse_v2(data)
            elif not (b"PROXY".startswith(data) or V2_SIG.startswith(data)):
                return data, None
            chunk = s.recv(1)
            if not chunk:
                return data, None
            data += chunk

    def _serve(self, s, c):
        try:
            s.settimeout(10)
            c.raw, c.header = self._read_header(s)
            if c.header is None:
                return
            s.sendall(b"220 recorder.example ESMTP\r\n")
            buf = b""
            while True:
                while b"\r\n" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                c.lines.append(line)
                if line.upper().startswith(b"QUIT"):
                    s.sendall(b"221 bye\r\n")
                    return
                s.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            s.close()
            c.done.set()

    def wait_connections(self, n, timeout=15, where=None):
        """The first n connections (where(c) true, if given) once each has ended."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                got = [c for c in self.connections if where is None or where(c)]
                if len(got) >= n:
                    break
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{len(got)} connections, {n} expected: "
                                         f"{[c.raw for c in self.connections]}")
                self._cond.wait(left)
        for c in got[:n]:
            assert c.done.wait(max(0.1, deadline - time.time())), "a connection never ended"
        return got[:n]


class HAProxy:
    """A private HAProxy: one `mode tcp` frontend on a free loopback port (port) and a
    backend with the given servers.

    send_proxy: None, "v1" (send-proxy) or "v2" (send-proxy-v2); proxy_v2_options e.g.
    "crc32c".  check: None, "tcp" (a plain connect), "smtpchk" (option smtpchk: HELO and a
    2xx), or "tcp-check" (expect a 220 banner, send QUIT, expect 221).  With send_proxy
    the health checks send the header too (HAProxy's default).  frontend_extra and
    backend_extra are lines added to the sections; body, when given, replaces both
    sections (the test's own frontends and backends, e.g. mxgate's snippet)."""

    def __init__(self, servers=(), send_proxy="v2", proxy_v2_options=None, check=None,
                 frontend_extra="", backend_extra="", body=None, bind="127.0.0.1"):
        self.dir = tempfile.mkdtemp(prefix="mxgate-haproxy-")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logfile = os.path.join(self.dir, "haproxy.log")
        self.port = free_port(bind)
        self.proc = None
        self._log = None
        if body is None:
            body = self._sections(servers, send_proxy, proxy_v2_options, check,
                                  frontend_extra, backend_extra, bind)
        with open(self.cfg, "w") as f:
            f.write(self.config_text(body))

    @staticmethod
    def config_text(body):
        """A complete configuration around body: global and defaults sections."""
        return textwrap.dedent("""\
            global
                log stdout format raw local0 info
                nbthread 1
                maxconn 256

            defaults
                mode tcp
                log global
                option tcplog
                timeout connect 5s
                timeout client 30s
                timeout server 30s
                timeout check 5s

            """) + textwrap.dedent(body)

    def _sections(self, servers, send_proxy, proxy_v2_options, check, frontend_extra,
                  backend_extra, bind):
        opts = {None: "", "v1": " send-proxy", "v2": " send-proxy-v2"}[send_proxy]
        if proxy_v2_options:
            opts += f" proxy-v2-options {proxy_v2_options}"
        if check:
            opts += " check inter 500ms fall 1 rise 1"
        checks = {None: "", "tcp": "", "smtpchk": "    option smtpchk EHLO haproxy.test\n",
                  "tcp-check": "    option tcp-check\n    tcp-check expect rstring ^220\n"
                               "    tcp-check send QUIT\\r\\n\n"
                               "    tcp-check expect rstring ^221\n"}[check]
        lines = "".join(f"    server s{i} {h}:{p}{opts}\n"
                        for i, (h, p) in enumerate(servers, 1))
        host = f"[{bind}]" if ":" in bind else bind
        return (f"frontend fe\n    bind {host}:{self.port}\n    default_backend be\n"
                + textwrap.indent(textwrap.dedent(frontend_extra), "    ")
                + f"\nbackend be\n{checks}{lines}"
                + textwrap.indent(textwrap.dedent(backend_extra), "    "))

    def check_config(self):
        """haproxy -c on the configuration: (exit code, output)."""
        r = subprocess.run([HAPROXY, "-c", "-f", self.cfg], capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stdout + r.stderr

    def start(self, wait_port=None):
        rc, out = self.check_config()
        assert rc == 0, f"haproxy -c refused {self.cfg}:\n{out}"
        self._log = open(self.logfile, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        port = wait_port or self.port
        deadline = time.time() + 15
        while not _listening(port):
            assert self.proc.poll() is None, "haproxy exited:\n" + self.log()
            assert time.time() < deadline, f"haproxy does not listen on {port}:\n" + self.log()
            time.sleep(0.05)
        return self

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=15):
        """The first match of the regular expression pattern in the log."""
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m:
                return m
            if time.time() > deadline:
                raise AssertionError(f"no /{pattern}/ in the HAProxy log:\n{self.log()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
