"""Real SMTP peers for end-to-end tests: a private Postfix instance and smtp-sink.

Both run on loopback ports of their own, in their own temporary directories; nothing of
the system's Postfix is touched. Both need root (Postfix's master runs as root and drops
to the postfix user; smtp-sink drops to nobody); the CI runs as root.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time

from daemon import free_port
from haproxy import _listening


def _wait_port(port, timeout=15):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Postfix:
    """A Postfix instance delivering example.test into Maildirs (virtual mailboxes)."""

    def __init__(self, users=("user", "sender"), tls=None, extra=""):
        self.dir = tempfile.mkdtemp(prefix="mxgate-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.mail = os.path.join(self.dir, "mail")
        for d in ("etc", "queue", "data", "mail"):
            os.mkdir(os.path.join(self.dir, d))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        shutil.chown(self.mail, "nobody")
        self.port = free_port()
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in users:
                f.write(f"{u}@example.test example.test/{u}/\n")
        tls_lines = "smtpd_tls_security_level = none\n"
        if tls:
            cert, key = tls
            tls_lines = (f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
                         f"smtpd_tls_key_file = {key}\n")
        main = textwrap.dedent(f"""\
            compatibility_level = 3.6
            queue_directory = {self.dir}/queue
            data_directory = {self.dir}/data
            mail_owner = postfix
            myhostname = next.example.test
            mydestination =
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            mynetworks = 127.0.0.0/8
            smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
            virtual_mailbox_domains = example.test
            virtual_mailbox_base = {self.mail}
            virtual_mailbox_maps = texthash:{self.etc}/vmailbox
            virtual_uid_maps = static:65534
            virtual_gid_maps = static:65534
            maillog_file = /dev/stdout
            smtpd_banner = $myhostname ESMTP
            """) + tls_lines + textwrap.dedent(extra)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        src = "/usr/share/postfix/master.cf.dist"
        if not os.path.exists(src):
            src = "/etc/postfix/master.cf"
        with open(src) as f:
            master = f.read()
        master = re.sub(r"(?m)^smtp\s+inet\s.*$",
                        f"127.0.0.1:{self.port} inet n - n - - smtpd", master)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master)

    def start(self):
        r = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "postfix start failed: " + r.stdout + r.stderr
        _wait_port(self.port)
        return self

    def stop(self):
        pidfile = os.path.join(self.dir, "queue", "pid", "master.pid")
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True, timeout=60)
        # wait for the master to go, so its port and files are free
        deadline = time.time() + 15
        while pid and os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            time.sleep(0.05)
        # and for its children: each smtpd holds the listening socket the master passed
        # it, and they are told to stop (SIGTERM to the process group) as the master
        # exits, not waited for.  Until the last is gone the port still takes connections
        # (a client is then reset or left hanging instead of refused), and a new Postfix
        # on the same port cannot bind it.
        while _listening(self.port) and time.time() < deadline:
            time.sleep(0.05)
        assert not _listening(self.port), \
            f"Postfix stopped, yet 127.0.0.1:{self.port} still listens 15s later"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self, user="user", domain="example.test"):
        out = []
        for sub in ("new", "cur"):
            for p in sorted(glob.glob(os.path.join(self.mail, domain, user, sub, "*"))):
                with open(p, "rb") as f:
                    out.append(f.read())
        return out

    def wait_messages(self, n, user="user", timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.messages(user)
            if len(msgs) >= n:
                return msgs
            time.sleep(0.1)
        raise AssertionError(f"Postfix holds {len(self.messages(user))} messages for "
                             f"{user}, {n} expected")


class SmtpSink:
    """Postfix's smtp-sink: dumps every message it accepts into a directory; can refuse
    (soft -r, hard -f) or hang up (-q) on chosen commands."""

    def __init__(self, port=None):
        self.dir = tempfile.mkdtemp(prefix="mxgate-sink-")
        os.chmod(self.dir, 0o777)
        self.port = port or free_port()
        self.proc = None

    def start(self, *options):
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-d", os.path.join(self.dir, "msg."), *options,
             f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dumps(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, name), "rb") as f:
                out.append(f.read())
        return out

    def queue_ids(self):
        """mxgate queue ids (from its Received: header) of every message received."""
        ids = []
        for d in self.dumps():
            m = re.search(rb"\(mxgate, connector \"[^\"]*\"\) with \w+ id ([0-9A-F]{16})", d)
            if m:
                ids.append(m.group(1).decode())
        return ids
