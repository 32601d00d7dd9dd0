"""Helpers for the operational end-to-end tests: test_durability.py, test_reload_drain.py
and test_connectors_live.py.

They sit on top of daemon.py (Daemon, Client, message) without changing it: whole SMTP
transactions on a raw Client, restarting a daemon on the same spool, making Maildir
delivery fail on purpose (and repairing it), a small tmpfs for the spool, fresh TLS
certificates, and reading what reached the Maildirs and the spool.

Messages carry a unique token in their Subject, so a test can count each one in the
Maildir: "delivered exactly once" means exactly one file holds the token.
"""
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from daemon import ALLOWED, Client, message

QUEUE_ID = re.compile(r"<([0-9A-F]{16})>")
TOKEN = re.compile(rb"^Subject: (tok-[0-9A-Za-z_-]+)\r$", re.M)

IS_ROOT = os.geteuid() == 0


def nobody():
    """(uid, gid) of user nobody and its group (what the daemon drops to as root)."""
    import pwd
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def chown_nobody(path):
    """Gives path (recursively) to nobody, when running as root; else a no-op."""
    if not IS_ROOT:
        return
    uid, gid = nobody()
    os.chown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.chown(os.path.join(root, n), uid, gid, follow_symlinks=False)


# ---- connector text ------------------------------------------------------------------------

def connector(name, bindings=("127.0.0.1:{port}",), ranges=("127.0.0.2",), usage="internet",
              **settings):
    """Config text for one connector; settings are key = value (underscores become
    hyphens; values are written as given, so strings must carry their quotes)."""
    lines = [f'connector "{name}" {{',
             f"  usage = {usage}",
             "  bindings = { " + ", ".join(f'"{b}"' for b in bindings) + " }"]
    if ranges is not None:
        lines.append("  remote-ip-ranges = { " + ", ".join(f'"{r}"' for r in ranges) + " }")
    settings.setdefault("tarpit_interval", "0s")
    for k, v in settings.items():
        lines.append(f"  {k.replace('_', '-')} = {v}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- SMTP ----------------------------------------------------------------------------------

def expect(c, code, cmd=None, startswith=None):
    """Sends cmd (if given), reads one reply and checks its code (and text prefix)."""
    got_code, text = c.cmd(cmd) if cmd is not None else c.reply()
    assert got_code == code, f"{cmd!r}: expected {code}, got {text!r}"
    if startswith is not None:
        assert text.startswith(startswith), f"{cmd!r}: expected {startswith!r}, got {text!r}"
    return text


def banner(c):
    return expect(c, 220)


def session(daemon, source=ALLOWED, host="127.0.0.1", port=None, helo="client.example",
            timeout=10):
    """A Client that has read the banner and said EHLO."""
    c = Client(host, port or daemon.port, source, timeout)
    banner(c)
    expect(c, 250, f"EHLO {helo}")
    return c


def body_for(token, size=0):
    """A message whose Subject is the token, padded to about `size` bytes."""
    body = "Hello.\r\n"
    if size > 0:
        line = "x" * 76 + "\r\n"
        body += line * (size // len(line) + 1)
    return message(subject=token, body=body)


def transaction(c, token, rcpts=("user@example.test",), size=0,
                sender="sender@remote.example"):
    """MAIL, RCPT..., DATA and the message on an open session. Returns (code, text) of
    the reply to the final dot (a socket error propagates)."""
    expect(c, 250, f"MAIL FROM:<{sender}>")
    for r in rcpts:
        expect(c, 250, f"RCPT TO:<{r}>")
    expect(c, 354, "DATA")
    c.send(body_for(token, size) + ".\r\n")
    return c.reply()


def send_one(daemon, token, **kw):
    """One message on a new session; returns the queue id from the 250 reply."""
    c = session(daemon)
    try:
        code, text = transaction(c, token, **kw)
        assert code == 250, f"message {token}: {text!r}\n{daemon.log()}"
        expect(c, 221, "QUIT")
        return queue_id(text)
    finally:
        c.close()


def queue_id(text):
    m = QUEUE_ID.search(text)
    assert m, f"no queue id in {text!r}"
    return m.group(1)


def zero_bytes(host, port, source, timeout=5):
    """Connects and returns every byte the server sent before closing."""
    c = Client(host, port, source, timeout)
    try:
        return c.recv_all(timeout)
    finally:
        c.close()


def refused(host, port, source=ALLOWED):
    """True when nothing listens on host:port (the connect is refused)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


# ---- the process ---------------------------------------------------------------------------

def restart(daemon):
    """Starts the daemon again on the same directory, spool and Maildirs (after kill9 or
    stop), first checking the previous run's log for sanitizer reports."""
    daemon.check_sanitizers()
    daemon.start()


def wait_exit(daemon, timeout):
    """Waits for the process to exit; returns (exit code, seconds waited)."""
    t0 = time.monotonic()
    try:
        daemon.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"mxgate did not exit within {timeout}s:\n{daemon.log()}")
    waited = time.monotonic() - t0
    daemon._reader.join(timeout=5)
    daemon.check_sanitizers()
    return daemon.proc.returncode, waited


def sigterm(daemon):
    daemon.signal(signal.SIGTERM)


def task_status(pid):
    """{tid: {field: value}} from /proc/<pid>/task/*/status."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.strip()
        except FileNotFoundError:
            continue
        out[tid] = fields
    return out


# ---- delivery that fails on purpose ------------------------------------------------------

def block_delivery(daemon, domain="example.test", user="user"):
    """Makes Maildir delivery to user@domain fail before the daemon starts.

    As root (the daemon runs as nobody): the mail base and mail/<domain> are made here,
    owned by root with mode 0755, so nobody cannot create the user's Maildir (EACCES).
    Otherwise: a regular file stands where the user's Maildir directory must go
    (ENOTDIR)."""
    d = os.path.join(daemon.mail, domain)
    os.makedirs(d, exist_ok=True)
    if IS_ROOT:
        os.chmod(daemon.mail, 0o755)
        os.chmod(d, 0o755)
        return
    with open(os.path.join(d, user), "w") as f:
        f.write("not a Maildir\n")


def unblock_delivery(daemon, domain="example.test", user="user"):
    """Undoes block_delivery: the Maildir tree becomes the daemon's."""
    if IS_ROOT:
        chown_nobody(daemon.mail)
        return
    p = os.path.join(daemon.mail, domain, user)
    if os.path.isfile(p):
        os.unlink(p)


# ---- the spool and the Maildirs ---------------------------------------------------------

def spool_dir(daemon, sub):
    p = os.path.join(daemon.spool, sub)
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def queued_ids(daemon):
    """Ids of queued messages (those with an envelope, the commit record)."""
    return sorted(n[:-4] for n in daemon.queued() if n.endswith(".env"))


def envelope_size(daemon, qid):
    """The size line of queue/<id>.env (the data file must be exactly that long)."""
    with open(os.path.join(daemon.spool, "queue", qid + ".env")) as f:
        for line in f:
            if line.startswith("size "):
                return int(line.split()[1])
    raise AssertionError(f"no size line in the envelope of {qid}")


def wait_queue_empty(daemon, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not daemon.queued():
            return
        time.sleep(0.05)
    raise AssertionError(f"spool queue not empty after {timeout}s: {daemon.queued()}\n"
                         f"{daemon.log()}")


def maildir_files(daemon, user="user", domain="example.test"):
    """{sub: [names]} of the user's Maildir (tmp, new, cur)."""
    out = {}
    for sub in ("tmp", "new", "cur"):
        d = os.path.join(daemon.maildir(user, domain), sub)
        out[sub] = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return out


def token_counts(daemon, user="user", domain="example.test"):
    """{token: number of Maildir files (new/ and cur/) holding it}."""
    counts = {}
    for msg in daemon.messages(user, domain):
        m = TOKEN.search(msg)
        key = m.group(1).decode() if m else "<no token>"
        counts[key] = counts.get(key, 0) + 1
    return counts


def settle(daemon, n_expected=None, timeout=30, user="user"):
    """Waits until the queue is empty (every recovered or new message settled) and, if
    given, n_expected messages are in the Maildir. Returns token_counts()."""
    wait_queue_empty(daemon, timeout)
    if n_expected is not None:
        daemon.wait_messages(n_expected, user=user, timeout=timeout)
    return token_counts(daemon, user)


def snapshot_queue(daemon, dest):
    """Copies spool/queue into dest (keeping owners and modes)."""
    src = os.path.join(daemon.spool, "queue")
    os.makedirs(dest, exist_ok=True)
    for n in os.listdir(src):
        shutil.copy2(os.path.join(src, n), os.path.join(dest, n))
        st = os.stat(os.path.join(src, n))
        if IS_ROOT:
            os.chown(os.path.join(dest, n), st.st_uid, st.st_gid)
    return sorted(os.listdir(dest))


def restore_queue(daemon, snap):
    """Puts the files of a queue snapshot back into spool/queue (owned by the daemon)."""
    q = os.path.join(daemon.spool, "queue")
    for n in os.listdir(snap):
        dst = os.path.join(q, n)
        shutil.copy2(os.path.join(snap, n), dst)
        chown_nobody(dst)


# ---- a small file system for the spool ---------------------------------------------------

@contextlib.contextmanager
def tmpfs(path, size="2m"):
    """Mounts a tmpfs of `size` on path (root only); unmounts it on the way out."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        for _ in range(50):
            r = subprocess.run(["umount", path], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", path], capture_output=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# ---- TLS -------------------------------------------------------------------------------

def new_cert(cert, key, cn="mx.example.test"):
    """Writes a new self-signed certificate and key over cert and key (the key mode 0600,
    the runner's: root's in CI, read at reload by the keeper); each file is replaced
    whole. Returns the SHA-256 of the certificate's DER."""
    tmp = tempfile.mkdtemp(prefix="mxgate-newcert-")
    try:
        c, k = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", k, "-out", c, "-days", "2", "-subj", f"/CN={cn}",
                        "-addext", f"subjectAltName=DNS:{cn},IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.chmod(c, 0o644)
        os.chmod(k, 0o600)
        shutil.move(k, key + ".new")
        shutil.move(c, cert + ".new")
        os.replace(key + ".new", key)
        os.replace(cert + ".new", cert)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cert_fingerprint(cert)


def cert_fingerprint(path):
    with open(path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def presented_fingerprint(daemon, source=ALLOWED, port=None):
    """STARTTLS on a new session; the SHA-256 of the certificate the server presents."""
    c = session(daemon, source=source, port=port)
    try:
        expect(c, 220, "STARTTLS")
        c.starttls()
        return hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()
    finally:
        c.close()
