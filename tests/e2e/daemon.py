"""Runs the real mxgate daemon for end-to-end tests, and talks to it.

A test gets a Daemon from the `daemon` fixture (conftest.py), writes a config with
`daemon.configure(...)` and starts it. Everything lives in one world-readable temporary
directory (the daemon drops to user nobody when the tests run as root, and must still
read its config on reload). Ports are free ephemeral ports on loopback.

Clients bind to chosen loopback source addresses: 127.0.0.2 is the usual allowed client,
127.0.0.3 a denied one.
"""
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time

BIN = os.environ.get("MXGATE_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "release", "mxgate")

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "SUMMARY: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer",
                   "SUMMARY: ThreadSanitizer")

ALLOWED = "127.0.0.2"
DENIED = "127.0.0.3"


_PORT_RNG = random.Random()
_PORTS_GIVEN = set()


def free_port(host="127.0.0.1"):
    """A port for a server the test starts later.  Picked below the kernel's ephemeral
    range: a port the kernel handed out by bind(0) can be taken in the meantime as the
    source port of some client's connection (the next hop's, a probe's), and the server
    then fails with EADDRINUSE.  Never the same port twice in one run: a test often asks
    for two or three ports before it starts anything on them (the daemon's, its metrics',
    a next hop's), and the bind() below cannot see a port already promised to another
    server that has not bound it yet."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 32768) - 1
    for _ in range(200):
        port = _PORT_RNG.randint(max(1024, top - 12000), top)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                s.listen(1)
            except OSError:
                continue
            _PORTS_GIVEN.add(port)
            return port
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_CERT_CACHE = {}


def make_cert(directory):
    """A self-signed certificate for mx.example.test, its key mode 0600 and the runner's
    (root's in CI: a reload after the privilege drop reads it through the keeper)."""
    if "pair" not in _CERT_CACHE:
        import atexit
        src = tempfile.mkdtemp(prefix="mxgate-cert-")
        atexit.register(shutil.rmtree, src, True)
        cert, key = os.path.join(src, "cert.pem"), os.path.join(src, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", "/CN=mx.example.test",
                        "-addext", "subjectAltName=DNS:mx.example.test,IP:127.0.0.1"],
                       check=True, capture_output=True)
        _CERT_CACHE["pair"] = (cert, key)
    cert, key = _CERT_CACHE["pair"]
    dcert, dkey = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    shutil.copy(cert, dcert)
    shutil.copy(key, dkey)
    os.chmod(dcert, 0o644)
    os.chmod(dkey, 0o600)  # root's alone, as the docs ask: reloads get it from the keeper
    return dcert, dkey


class Daemon:
    """One mxgate process with its own directory, config, spool and Maildirs."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mxgate-e2e-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "mxgate.conf")
        self.spool = os.path.join(self.dir, "spool")
        self.mail = os.path.join(self.dir, "mail")
        self.port = free_port()
        self.proc = None
        self.lines = []
        self._lock = threading.Lock()
        self._reader = None
        self.cert, self.key = make_cert(self.dir)

    # ---- configuration ---------------------------------------------------------------
    def configure(self, connectors=None, top="", tls=True, extra=""):
        """Writes mxgate.conf. `connectors` is config text for connector sections; in it
        {port} is this daemon's port. Without it, one anonymous connector on
        127.0.0.1:{port} for 127.0.0.2 with no tarpit. `top` goes at the top level."""
        if connectors is None:
            connectors = """
                connector "Test" {
                  usage = internet
                  bindings = { "127.0.0.1:{port}" }
                  remote-ip-ranges = { "127.0.0.2" }
                  tarpit-interval = 0s
                }
            """
        text = textwrap.dedent(f"""
            hostname = "mx.example.test"
            spool = "{self.spool}"
            user = "nobody"
            accepted-domains = {{ "example.test" }}
            deliver {{ maildir = "{self.mail}/%d/%u" }}
        """)
        if tls:
            text += f'tls {{ certificate = "{self.cert}"\n  key = "{self.key}" }}\n'
        text += textwrap.dedent(top) + "\n"
        text += textwrap.dedent(connectors).replace("{port}", str(self.port)) + "\n"
        text += textwrap.dedent(extra)
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o644)
        return self.conf

    # ---- process control ---------------------------------------------------------------
    def start(self, wait=True, expect_fail=False):
        self.lines = []
        self.proc = subprocess.Popen([BIN, "run", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if expect_fail:
            self.proc.wait(timeout=30)
            self._reader.join(timeout=5)
            return self.proc.returncode
        if wait:
            self.wait_log(r"ready: ", timeout=30)
        return None

    def _read(self):
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self._lock:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout=10, count=1):
        """Waits until `count` log lines match the regex; returns the matching lines."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            with self._lock:
                hits = [l for l in self.lines if rx.search(l)]
            if len(hits) >= count:
                return hits
            if self.proc.poll() is not None and time.time() > deadline - timeout + 0.5:
                with self._lock:
                    hits = [l for l in self.lines if rx.search(l)]
                if len(hits) >= count:
                    return hits
                raise AssertionError(f"mxgate exited ({self.proc.returncode}) before "
                                     f"logging {pattern!r}:\n{self.log()}")
            if time.time() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s:"
                                     f"\n{self.log()}")
            time.sleep(0.02)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, expect_ok=True, timeout=10):
        n_ok = len([l for l in self.lines if "configuration reloaded" in l])
        n_bad = len([l for l in self.lines if "reload refused" in l])
        self.signal(signal.SIGHUP)
        if expect_ok:
            self.wait_log("configuration reloaded", timeout, count=n_ok + 1)
        else:
            self.wait_log("reload refused", timeout, count=n_bad + 1)

    def stop(self, timeout=30):
        """SIGTERM, wait, and check the log for sanitizer reports. Returns the exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mxgate did not stop on SIGTERM:\n" + self.log())
        self._reader.join(timeout=5)
        self.check_sanitizers()
        return self.proc.returncode

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def check_sanitizers(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            assert mark not in text, "sanitizer report:\n" + text

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- results -----------------------------------------------------------------------
    def maildir(self, user="user", domain="example.test"):
        return os.path.join(self.mail, domain, user)

    def messages(self, user="user", domain="example.test"):
        """Contents (bytes) of every message delivered to user@domain, new/ and cur/."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir(user, domain), sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def wait_messages(self, n, user="user", domain="example.test", timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.messages(user, domain)
            if len(msgs) >= n:
                return msgs
            time.sleep(0.02)
        raise AssertionError(f"{n} messages expected for {user}@{domain}, found "
                             f"{len(self.messages(user, domain))}:\n{self.log()}")

    def wait_queue_empty(self, timeout=10):
        """Waits until the spool's queue/ is empty (delivery also removes the files a
        moment after the message lands)."""
        deadline = time.time() + timeout
        while self.queued() and time.time() < deadline:
            time.sleep(0.02)
        return self.queued()

    def queued(self):
        q = os.path.join(self.spool, "queue")
        return sorted(os.listdir(q)) if os.path.isdir(q) else []

    # ---- clients -----------------------------------------------------------------------
    def connect(self, source=ALLOWED, host="127.0.0.1", port=None, timeout=10):
        return Client(host, port or self.port, source, timeout)


class Client:
    """A raw SMTP client: send exact bytes, read whole replies."""

    def __init__(self, host, port, source=ALLOWED, timeout=10):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def reply(self):
        """One whole (possibly multi-line) reply: (code, text with lines joined by \\n)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def recv_all(self, timeout=5):
        """Everything until the server closes (bytes)."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except (ConnectionResetError, socket.timeout):
            return data

    def closed(self, timeout=5):
        """True when the server has closed the connection (reads EOF)."""
        try:
            return self.recv_all(timeout) is not None and self._eof_seen()
        except OSError:
            return True

    def _eof_seen(self):
        try:
            self.sock.settimeout(0.5)
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def starttls(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.example.test")
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def message(subject="test", body="Hello.\r\n", sender="sender@remote.example",
            to="user@example.test", extra_headers=""):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra_headers}\r\n{body}")
