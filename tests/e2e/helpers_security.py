"""Helpers shared by test_smtp_security.py and test_smtp_limits.py.

They sit on top of daemon.py (Daemon, Client) without changing it: connector text
builders, reply assertions, reading a connection up to the server's close, and checks of
what reached the Maildirs and the spool.

"Nothing was delivered" cannot be shown by waiting for a file that never comes, so
`deliver_barrier` sends one good message after the attack and waits for it: the spool
commits and delivery runs in order, so once the barrier is in its Maildir anything the
attack had got queued would be there (and logged as queued) too.
"""
import os
import re
import socket
import time

from daemon import ALLOWED, message

OTHER = "127.0.0.4"   # a second allowed source
THIRD = "127.0.0.5"   # a third allowed source


def connector(name="Test", ranges=("127.0.0.2",), usage="internet", **settings):
    """Config text for one connector on 127.0.0.1:{port}; settings are key = value
    (underscores become hyphens; a value is written as given, strings must be quoted by
    the caller)."""
    lines = [f'connector "{name}" {{',
             f"  usage = {usage}",
             '  bindings = { "127.0.0.1:{port}" }',
             "  remote-ip-ranges = { " + ", ".join(f'"{r}"' for r in ranges) + " }"]
    settings.setdefault("tarpit_interval", "0s")
    for k, v in settings.items():
        lines.append(f"  {k.replace('_', '-')} = {v}")
    lines.append("}")
    return "\n".join(lines) + "\n"


TOP = "drain-timeout = 2s\n"


def start(daemon, *connectors, top=""):
    """Configures the daemon with the given connector texts and starts it."""
    daemon.configure(connectors="".join(connectors) or connector(), top=TOP + top)
    daemon.start()
    return daemon


def expect(c, code, text=None, cmd=None):
    """Sends cmd (if given), reads one reply, and checks its code and, if given, that its
    text starts with `text` (the whole line after the code, e.g. '5.7.54 SMTP; ...')."""
    got_code, got = c.cmd(cmd) if cmd is not None else c.reply()
    ctx = f"{cmd!r} -> {got!r}" if cmd is not None else repr(got)
    assert got_code == code, f"expected {code}: {ctx}"
    if text is not None:
        assert got[4:].startswith(text), f"expected {code} {text!r}: {ctx}"
    return got


def session(daemon, source=ALLOWED, helo="client.example", timeout=10):
    """A connected Client that has read the banner and said EHLO."""
    c = daemon.connect(source=source, timeout=timeout)
    expect(c, 220)
    expect(c, 250, cmd=f"EHLO {helo}")
    return c


def read_to_close(c, timeout=10):
    """Reads until the server closes. Returns (bytes, closed): closed is False when the
    timeout passed with the connection still open."""
    c.sock.settimeout(timeout)
    data, c.buf = c.buf, b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = c.sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return data, True
    except socket.timeout:
        return data, False
    return data, False


def expect_close(c, code, text, timeout=10):
    """The next thing from the server is exactly one reply `code text...` and then the
    connection closes. Returns the reply line."""
    data, closed = read_to_close(c, timeout)
    lines = data.split(b"\r\n")
    assert closed, f"server did not close; it sent {data!r}"
    assert data.endswith(b"\r\n") and len(lines) == 2, \
        f"expected one reply then close, got {data!r}"
    line = lines[0].decode("utf-8", "replace")
    assert line.startswith(f"{code} {text}"), f"expected {code} {text!r}, got {line!r}"
    return line


def send_message(c, msg, sender="sender@remote.example", rcpts=("user@example.test",)):
    """A whole transaction, one command a time; returns the reply to the final dot. The
    message text gets a final CRLF if it lacks one, then the lone dot."""
    expect(c, 250, cmd=f"MAIL FROM:<{sender}>")
    for r in rcpts:
        expect(c, 250, cmd=f"RCPT TO:<{r}>")
    expect(c, 354, cmd="DATA")
    if isinstance(msg, str):
        msg = msg.encode()
    if not msg.endswith(b"\r\n"):
        msg += b"\r\n"
    c.send(msg + b".\r\n")
    return c.reply()


def all_files(root):
    """Every regular file under root, as paths relative to root."""
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def mail_files(daemon):
    return all_files(daemon.mail) if os.path.isdir(daemon.mail) else []


QUEUED = r"message \S+ queued: "


def queued_lines(daemon, wait_for=0):
    """The log's "message ... queued:" lines, after waiting for at least wait_for of them
    (the log reaches the harness through a pipe and a reader thread, a little late)."""
    if wait_for:
        daemon.wait_log(QUEUED, count=wait_for)
    return [l for l in daemon.log().splitlines() if re.search(QUEUED, l)]


def deliver_barrier(daemon, name="barrier", source=ALLOWED):
    """Sends one good message to name@example.test on a fresh connection and waits until it
    is delivered and gone from the spool."""
    with session(daemon, source=source) as c:
        code, text = send_message(c, message(subject=name, to=f"{name}@example.test"),
                                  rcpts=(f"{name}@example.test",))
        assert code == 250, text
        expect(c, 221, cmd="QUIT")
    daemon.wait_messages(1, user=name)
    wait_spool_empty(daemon)


def wait_spool_empty(daemon, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tmp = os.path.join(daemon.spool, "tmp")
        if daemon.queued() == [] and (not os.path.isdir(tmp) or os.listdir(tmp) == []):
            return
        time.sleep(0.02)
    raise AssertionError(f"spool not empty: queue={daemon.queued()} "
                         f"tmp={os.listdir(os.path.join(daemon.spool, 'tmp'))}\n"
                         + daemon.log())


def assert_only_barriers_delivered(daemon, barriers=("barrier",)):
    """After deliver_barrier(): the Maildirs hold the barrier messages and nothing else,
    the spool is empty, and the log shows only the barriers were ever queued."""
    files = mail_files(daemon)
    allowed = tuple(os.path.join("example.test", b) + os.sep for b in barriers)
    stray = [f for f in files if not f.startswith(allowed)]
    assert stray == [], f"delivered although refused: {stray}\n{daemon.log()}"
    assert len(files) == len(barriers), files
    q = queued_lines(daemon, wait_for=len(barriers))
    assert len(q) == len(barriers), "queued:\n" + "\n".join(q)
    wait_spool_empty(daemon)
