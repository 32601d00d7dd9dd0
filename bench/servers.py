"""The two servers `make bench` compares, each in a directory of its own on the real disk.

Mxgate   build/release/mxgate run -c CONF, as root with user = "nobody", logging (stderr)
         into a file; spool and Maildirs under its directory.
Postfix  a private instance (own config directory, queue directory, data directory and
         port; `postfix -c DIR start`), delivering through virtual(8) into Maildirs under
         its directory, logging through postlogd into a file.  The system's Postfix is not
         touched.

Both are started from an empty directory and stopped and removed by cleanup(), which also
makes sure no process of theirs is left.  Standard library only (Debian's python3).
"""
import glob
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time

DOMAIN = "example.test"
USER = "user"
RCPT = f"{USER}@{DOMAIN}"
SENDER = "sender@remote.example"


class BenchError(Exception):
    """A server did not do the work, or could not be set up: the run is not valid."""


_PORT_RNG = random.Random()


def free_port(host="127.0.0.1"):
    """A port for a server the benchmark starts later.  Picked below the kernel's ephemeral
    range: a port the kernel handed out by bind(0) can be taken in the meantime as the
    source port of some client's connection (a load generator's), and the server
    then fails with EADDRINUSE."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = min(low, 32768) - 1
    for _ in range(200):
        port = _PORT_RNG.randint(max(1024, top - 12000), top)
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
                s.listen(1)
            except OSError:
                continue
            return port
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_line(sock):
    """What the server sends up to and including its first LF (less at EOF)."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data


def wait_banner(port, source="127.0.0.2", timeout=30, what="server"):
    """Waits until the server answers with a 220 banner; says QUIT politely."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5,
                                          source_address=(source, 0)) as s:
                data = read_line(s)
                if data.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    try:
                        s.recv(512)
                    except OSError:
                        pass
                    return
                last = data
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise BenchError(f"{what} on port {port} gave no 220 banner within {timeout}s ({last!r})")


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid, reaped=False):
    """User plus system CPU time of a process (every thread), in seconds; with reaped, also
    that of its children that have exited and been waited for."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_children(pid):
    out = []
    for p in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(p) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def proc_tree(pid):
    todo, out = [pid], []
    while todo:
        p = todo.pop()
        out.append(p)
        todo += proc_children(p)
    return out


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ancestors():
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
    return out


def pids_mentioning(path):
    """Live processes of a server under path: its command line names a file there
    (mxgate run -c PATH/...), or its environment has MAIL_CONFIG=PATH... (Postfix's master
    and its children).  Never this process or its ancestors."""
    out = []
    path = path.rstrip("/").encode()
    mine = ancestors()
    for d in glob.glob("/proc/[0-9]*"):
        pid = int(d[6:])
        if pid in mine:
            continue
        try:
            with open(f"{d}/cmdline", "rb") as f:
                if any(a.startswith(path + b"/") for a in f.read().split(b"\0")):
                    out.append(pid)
                    continue
            with open(f"{d}/environ", "rb") as f:
                if any(v == b"MAIL_CONFIG=" + path or v.startswith(b"MAIL_CONFIG=" + path + b"/")
                       for v in f.read().split(b"\0")):
                    out.append(pid)
        except OSError:
            pass
    return [p for p in out if alive(p)]


def count_maildir(path):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(path, sub)))
        except FileNotFoundError:
            pass
    return n


def check_maildir_sizes(path, min_bytes):
    """Every delivered file holds at least min_bytes: the message bodies arrived whole.
    Postfix's virtual(8) stores lines with LF alone, mxgate keeps CRLF: smtp-source's lines
    are 81 octets with CRLF, so an LF-only copy is 1/81 shorter; 2 % slack covers that and
    still catches a truncated body."""
    min_bytes = int(min_bytes * 0.98)
    short = 0
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        if not os.path.isdir(d):
            continue
        with os.scandir(d) as it:
            for e in it:
                if e.stat().st_size < min_bytes:
                    short += 1
    return short


def make_cert(directory):
    """A self-signed EC P-256 certificate for mx.example.test (both servers use it)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=mx.example.test", "-addext",
                    "subjectAltName=DNS:mx.example.test,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


class Server:
    """What both servers offer the scenarios."""
    name = "?"
    port = 0
    dir = ""

    def maildir(self):
        return os.path.join(self.dir, "mail", DOMAIN, USER)

    def delivered(self):
        return count_maildir(self.maildir())

    def wait_delivered(self, n, timeout, poll=0.02):
        """Waits until n messages are in the Maildir; returns the time.time() it saw them.
        Raises BenchError when they are not all there in time."""
        deadline = time.time() + timeout
        while True:
            got = self.delivered()
            if got >= n:
                return time.time()
            if time.time() > deadline:
                raise BenchError(f"{self.name}: only {got} of {n} messages in the Maildir "
                                 f"{timeout:.0f}s after the client finished "
                                 f"(log: {self.log_path()})")
            time.sleep(poll)

    def log_path(self):
        return ""

    def log_tail(self, n=20):
        try:
            with open(self.log_path(), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"


class Mxgate(Server):
    name = "mxgate"

    def __init__(self, root, binary, label="mxgate"):
        self.dir = os.path.join(root, label)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.bin = binary
        self.conf = os.path.join(self.dir, "mxgate.conf")
        self.port = free_port()
        self.proc = None
        self.logf = None
        self.cpus = None       # "0" or "0,1": started under taskset -c

    def log_path(self):
        return os.path.join(self.dir, "mxgate.log")

    def configure(self, ranges=('"127.0.0.1-127.0.0.2"', '"127.0.0.4-127.255.255.254"'),
                  log_level="warning", tls=None, connector_extra="", extra="", workers=None,
                  relay=None, relay_tls="none", relay_connections=4):
        """One connector for the benchmark clients: anonymous, no tarpit, no connection
        limits; 127.0.0.3 (the denied client) is outside its ranges.  Mail goes into a
        Maildir, or with relay ("HOST:PORT") to that next hop over relay_connections
        connections, STARTTLS as relay_tls says."""
        tls_text = ""
        auth = ""
        if tls:
            cert, key = tls
            tls_text = f'tls {{\n  certificate = "{cert}"\n  key = "{key}"\n}}\n'
            auth = "auth-mechanism = { tls }"
        text = textwrap.dedent(f"""\
            hostname = "mx.example.test"
            spool = "{self.dir}/spool"
            user = "nobody"
            accepted-domains = {{ "{DOMAIN}" }}
            log = stderr
            log-level = {log_level}
            """) + (f"workers = {workers}\n" if workers is not None else "") + (
            f'deliver {{\n  relay = "{relay}"\n  relay-tls = {relay_tls}\n'
            f'  relay-connections = {relay_connections}\n}}\n' if relay else
            f'deliver {{ maildir = "{self.dir}/mail/%d/%u" }}\n') + tls_text + textwrap.dedent(f"""\
            connector "Bench" {{
              usage = custom
              permission-groups = {{ anonymous-users }}
              {auth}
              bindings = {{ "127.0.0.1:{self.port}" }}
              remote-ip-ranges = {{ {", ".join(ranges)} }}
              tarpit-interval = 0s
              max-inbound-connection = unlimited
              max-inbound-connection-per-source = unlimited
              max-inbound-connection-percentage-per-source = 100
              {connector_extra}
            }}
            """) + extra
        with open(self.conf, "w") as f:
            f.write(text)
        os.chmod(self.conf, 0o644)
        r = subprocess.run([self.bin, "check", "-c", self.conf], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise BenchError(f"mxgate check refused the benchmark config:\n{r.stderr}")

    def start(self, probe_source="127.0.0.2"):
        self.logf = open(self.log_path(), "ab")
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        self.proc = subprocess.Popen(pin + [self.bin, "run", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.logf)
        try:
            wait_banner(self.port, probe_source, what="mxgate")
        except BenchError:
            raise BenchError(f"mxgate did not start:\n{self.log_tail()}")
        if self.proc.poll() is not None:
            raise BenchError(f"mxgate exited at start:\n{self.log_tail()}")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        return proc_rss_kib(self.proc.pid)

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise BenchError("mxgate did not stop within 60 s of SIGTERM")
        if self.logf:
            self.logf.close()
            self.logf = None

    def cleanup(self):
        try:
            self.stop()
        finally:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            set_aside(self.dir)


class Postfix(Server):
    """A private Postfix instance.  mode "smtpd": smtpd on the port (mail delivery, memory,
    latency, reload); mode "postscreen": postscreen on the port, refusing 127.0.0.3 at
    connect with postscreen_access_list and dropping it (521 and close)."""
    name = "Postfix"

    def __init__(self, root, label="postfix"):
        self.dir = os.path.join(root, label)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        for d in ("etc", "queue", "data", "mail"):
            os.mkdir(os.path.join(self.dir, d))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        shutil.chown(os.path.join(self.dir, "mail"), "nobody")
        self.port = free_port()
        self.master_pid = None
        self.cpus = None       # "0" or "0,1": started under taskset -c (children inherit)

    def log_path(self):
        return os.path.join(self.dir, "postfix.log")

    def configure(self, mode="smtpd", tls=None, process_limit=100, client_access=None,
                  extra="", relay=None, relay_tls=False, relay_connections=4):
        """relay ("HOST:PORT"): the domain is relayed there by smtp(8) (transport_maps),
        with at most relay_connections parallel deliveries, STARTTLS when offered if
        relay_tls, instead of going into a Maildir."""
        nobody = pwd.getpwnam("nobody")
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            f.write(f"{RCPT} {DOMAIN}/{USER}/\n")
        tls_lines = "smtpd_tls_security_level = none\n"
        if tls:
            cert, key = tls
            tls_lines = (f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\n"
                         f"smtpd_tls_key_file = {key}\n")
        access = ""
        if client_access:
            # a table in every smtpd, looked up for each client before anything else
            access = (f"smtpd_client_restrictions = check_client_access cidr:{client_access}"
                      f"\nsmtpd_delay_reject = no\n")
        main = textwrap.dedent(f"""\
            compatibility_level = 3.6
            queue_directory = {self.dir}/queue
            data_directory = {self.dir}/data
            mail_owner = postfix
            myhostname = mx.example.test
            mydestination =
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            mynetworks = 127.0.0.0/8
            smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
            virtual_mailbox_domains = {DOMAIN}
            virtual_mailbox_base = {self.dir}/mail
            virtual_mailbox_maps = texthash:{self.etc}/vmailbox
            virtual_uid_maps = static:{nobody.pw_uid}
            virtual_gid_maps = static:{nobody.pw_gid}
            maillog_file = {self.log_path()}
            smtpd_banner = $myhostname ESMTP
            # no limits, no tarpit, no feedback throttle: take the client as fast as it sends
            default_process_limit = {process_limit}
            smtpd_client_connection_count_limit = 0
            smtpd_client_connection_rate_limit = 0
            smtpd_client_message_rate_limit = 0
            smtpd_client_recipient_rate_limit = 0
            smtpd_client_new_tls_session_rate_limit = 0
            smtpd_error_sleep_time = 0s
            in_flow_delay = 0s
            smtpd_peername_lookup = no
            """) + tls_lines + access
        if relay:
            host, port = relay.rsplit(":", 1)
            # the same domain, relayed instead of delivered (the last setting wins)
            main += textwrap.dedent(f"""\
                virtual_mailbox_domains =
                relay_domains = {DOMAIN}
                transport_maps = inline:{{ {DOMAIN}=smtp:[{host}]:{port} }}
                default_destination_concurrency_limit = {relay_connections}
                smtp_destination_concurrency_limit = {relay_connections}
                initial_destination_concurrency = {relay_connections}
                smtp_tls_security_level = {"may" if relay_tls else "none"}
                """)
        if mode == "postscreen":
            with open(os.path.join(self.etc, "postscreen_access.cidr"), "w") as f:
                f.write("127.0.0.3/32 reject\n")
            main += textwrap.dedent(f"""\
                postscreen_access_list = cidr:{self.etc}/postscreen_access.cidr,
                    permit_mynetworks
                postscreen_denylist_action = drop
                """)
        main += textwrap.dedent(extra)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        src = "/usr/share/postfix/master.cf.dist"
        if not os.path.exists(src):
            src = "/etc/postfix/master.cf"
        with open(src) as f:
            master = f.read()
        # no chroot anywhere: nothing to copy into the queue directory, same work otherwise
        master = re.sub(r"(?m)^(\S+\s+(?:inet|unix|unix-dgram|fifo|pass)\s+\S+\s+\S+\s+)y(\s)",
                        r"\1n\2", master)
        if mode == "postscreen":
            listener = (f"127.0.0.1:{self.port} inet n - n - 1 postscreen\n"
                        "smtpd pass - - n - - smtpd")
        else:
            listener = f"127.0.0.1:{self.port} inet n - n - - smtpd"
        master = re.sub(r"(?m)^smtp\s+inet\s.*$", listener, master)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master)

    def set_main(self, key, value):
        subprocess.run(["postconf", "-c", self.etc, "-e", f"{key} = {value}"], check=True,
                       capture_output=True)

    def start(self):
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        r = subprocess.run(pin + ["postfix", "-c", self.etc, "start"], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError("postfix start failed: " + r.stdout + r.stderr)
        pidfile = os.path.join(self.dir, "queue", "pid", "master.pid")
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                with open(pidfile) as f:
                    self.master_pid = int(f.read().split()[0])
                break
            except (OSError, ValueError, IndexError):
                time.sleep(0.05)
        try:
            wait_banner(self.port, what="Postfix")
        except BenchError:
            raise BenchError(f"Postfix did not start:\n{self.log_tail()}")
        return self

    def processes(self):
        return proc_tree(self.master_pid) if self.master_pid and alive(self.master_pid) else []

    def smtpd_pids(self):
        return [p for p in proc_children(self.master_pid) if proc_comm(p) == "smtpd"]

    def cpu_seconds(self):
        """CPU time of every process of the instance: those alive (master and children),
        and the children that have exited (an smtpd ends after max_use sessions), which
        the master has waited for."""
        procs = self.processes()
        if not procs:
            return 0.0
        return proc_cpu_seconds(procs[0], reaped=True) + sum(
            proc_cpu_seconds(p) for p in procs[1:])

    def reload(self):
        """What `postfix reload` does, without its shell script: SIGHUP to the master."""
        os.kill(self.master_pid, signal.SIGHUP)

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True, timeout=120)
        deadline = time.time() + 30
        while time.time() < deadline:
            left = pids_mentioning(self.etc)
            if self.master_pid and alive(self.master_pid):
                left.append(self.master_pid)
            if not left:
                return
            time.sleep(0.1)
        for p in set(left):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise BenchError(f"Postfix processes {sorted(set(left))} did not stop; killed")

    def cleanup(self):
        try:
            self.stop()
        finally:
            set_aside(self.dir)


class Sink:
    """The protected next hop of the relay scenarios: a process that accepts and counts
    messages and keeps nothing.  wait_count() tells when the n-th message arrived."""
    name = "sink"

    def __init__(self):
        self.port = free_port()
        self.proc = None
        self.pin = []            # e.g. ["taskset", "-c", "1"]: where the sink runs
        self.count = 0
        self.when = {}           # count → time.time() it was first seen
        self.lines = []
        self.cv = threading.Condition()

    def _reader(self):
        raise NotImplementedError

    def _saw(self, n, t):
        with self.cv:
            if n > self.count:
                self.count = n
                self.when.setdefault(n, t)
                self.cv.notify_all()

    def start(self):
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()
        wait_banner(self.port, what=self.name)
        return self

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def wait_count(self, n, timeout):
        """Waits until the sink has received n messages; returns the time.time() of the
        n-th.  BenchError when they are not all there in time."""
        deadline = time.time() + timeout
        with self.cv:
            while self.count < n:
                left = deadline - time.time()
                if left <= 0 or self.proc.poll() is not None:
                    raise BenchError(f"{self.name}: {self.count} of {n} messages received "
                                     f"{timeout:.0f} s after the client finished")
                self.cv.wait(min(left, 1.0))
            return min(t for c, t in self.when.items() if c >= n)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SmtpSink(Sink):
    """Postfix's smtp-sink (plaintext only), counting with -c: it rewrites
    "sess=N quit=N mesg=N" on standard output each time a "." arrives."""
    name = "smtp-sink"

    def start(self):
        self.proc = subprocess.Popen(self.pin + ["smtp-sink", "-u", "nobody", "-c",
                                      f"127.0.0.1:{self.port}", "1024"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return super().start()

    def _reader(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            t = time.time()
            buf = (buf + chunk)[-200:]
            m = re.findall(rb"mesg=(\d+)", buf)
            if m:
                self._saw(int(m[-1]), t)

    def figures(self):
        return {"messages": self.count}


class TlsSink(Sink):
    """bench/tlssink: the same sink with STARTTLS (smtp-sink has none); it reports the
    wall clock of the n-th message itself (-n), and at the end the sizes it saw."""
    name = "tlssink"

    def __init__(self, binary, cert, key, expect):
        super().__init__()
        self.cmd = [binary, "-t", cert, "-k", key, "-n", str(expect), f"127.0.0.1:{self.port}"]
        self.expect = expect
        self.final = {}

    def start(self):
        self.proc = subprocess.Popen(self.pin + self.cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if self.proc.stdout.readline().strip() != "listening":
            raise BenchError("tlssink did not start")
        return super().start()

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.match(r"done messages=(\d+) t=([\d.]+)", line)
            if m:
                self._saw(int(m.group(1)), float(m.group(2)))

    def figures(self):
        """Stops the sink and returns its final figures (messages, sizes, handshakes)."""
        self.stop()
        self.thread.join(timeout=10)
        for line in self.lines:
            if line.startswith("messages="):
                self.final = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))
        if self.proc.returncode not in (0, None) or not self.final:
            raise BenchError(f"tlssink saw a protocol error: {''.join(self.lines[-2:])}")
        return {k: v.strip('"') for k, v in self.final.items()}


def set_aside(path):
    """Moves a finished server's directory into ROOT/.trash instead of deleting it: tens of
    thousands of inodes freed just before the next server starts would tax that server's
    file creates (ext4 skips recently freed inodes when it allocates one, and without a
    journal it checks each), a cost the benchmark made, not the server.  stop_leftovers()
    deletes the trash at the end of the run."""
    if not os.path.isdir(path):
        return
    trash = os.path.join(os.path.dirname(path), ".trash")
    os.makedirs(trash, exist_ok=True)
    for n in range(1000):
        dest = os.path.join(trash, f"{os.path.basename(path)}.{n}")
        if not os.path.exists(dest):
            os.rename(path, dest)
            return
    shutil.rmtree(path, ignore_errors=True)


def stop_leftovers(root):
    """Stops servers a killed earlier run left behind in root (ours: they mention root in
    their command line or environment), then removes root.  True if there was one."""
    if not os.path.isdir(root):
        return False
    for etc in glob.glob(os.path.join(root, "*", "etc")):
        if os.path.exists(os.path.join(etc, "main.cf")):
            subprocess.run(["postfix", "-c", etc, "stop"], capture_output=True, timeout=120)
    for _ in range(50):
        left = pids_mentioning(root)
        if not left:
            break
        for p in left:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    for p in pids_mentioning(root):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(root, ignore_errors=True)
    return True
