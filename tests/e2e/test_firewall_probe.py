"""`mxgate firewall` applied for real, and `mxgate probe` against mxgate, Postfix and
scripted servers.

The firewall tests make their own network namespace (as root: the CI runs as root), put
the addresses of the story on its loopback — 67.231.152.10 inside Proofpoint Essentials
US, 198.51.100.10 outside it, 203.0.113.25 the server — run mxgate in it on port 25 with
the Proofpoint preset, load the generated rules and probe from both sources. The
namespace is removed whatever happens. Everything else talks to loopback only.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time

import pytest

from conftest import BIN, assert_no_sanitizer_report, run_mxgate
from daemon import ALLOWED, DENIED, Daemon, free_port

INSIDE = "67.231.152.10"    # in proofpoint-essentials-us
OUTSIDE = "198.51.100.10"   # in no preset
SERVER = "203.0.113.25"

PROOFPOINT_CONNECTOR = f"""
    connector "From Proofpoint" {{
      usage = internet
      bindings = {{ "{SERVER}:25" }}
      remote-ip-ranges = {{ "@proofpoint-essentials-us" }}
      tarpit-interval = 0s
    }}
"""


def require_root():
    assert os.geteuid() == 0, "these tests make network namespaces: run them as root (the CI does)"


class Result:
    def __init__(self, cp):
        self.rc, self.out, self.err = cp.returncode, cp.stdout, cp.stderr


def run(cmd, ns=None, check=False, timeout=60, input=None):
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check:
        assert cp.returncode == 0, f"{cmd}: {cp.returncode}\n{cp.stdout}{cp.stderr}"
    return Result(cp)


def probe(*args, ns=None, timeout=60):
    """mxgate probe, in the namespace when given; checks for sanitizer reports."""
    r = run([BIN, "probe", *args], ns=ns, timeout=timeout)
    assert_no_sanitizer_report(r.err)
    return r


def verdict(r):
    lines = r.out.splitlines()
    assert lines and lines[-1].startswith("verdict: "), r.out + r.err
    return lines[-1][len("verdict: "):]


@pytest.fixture
def netns():
    """A fresh network namespace with lo up and the story's addresses on it."""
    require_root()
    name = f"mxgate-t{os.getpid()}-{time.monotonic_ns() % 100000}"
    run(["ip", "netns", "add", name], check=True)
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for addr in (INSIDE, OUTSIDE, SERVER):
            run(["ip", "-n", name, "addr", "add", f"{addr}/32", "dev", "lo"], check=True)
        yield name
    finally:
        run(["ip", "netns", "del", name])


class NamespacedDaemon(Daemon):
    """The e2e Daemon, run inside a network namespace."""

    def __init__(self, ns):
        super().__init__()
        self.ns = ns

    def start(self, wait=True, expect_fail=False):
        self.lines = []
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "run", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_log(r"ready: ", timeout=30)


@pytest.fixture
def ns_daemon(netns):
    d = NamespacedDaemon(netns)
    try:
        yield d
        if d.proc and d.proc.poll() is None:
            d.stop()
    finally:
        d.cleanup()


def probe_from(ns, source, *extra):
    return probe(f"{SERVER}:25", "--source", source, "--rcpt-to", "user@example.test",
                 "--timeout", "2", *extra, ns=ns)


def assert_lockdown_works(ns, d):
    """With the rules loaded: the insider still gets in, the outsider is dropped before
    mxgate sees it (no "no connector" line in mxgate's log)."""
    mark = len(d.lines)
    r = probe_from(ns, INSIDE, "--expect", "open")
    assert r.rc == 0, r.out + r.err
    assert f"connect   {SERVER}:25 from {INSIDE}:" in r.out
    r = probe_from(ns, OUTSIDE)
    assert r.rc == 3, r.out + r.err
    assert verdict(r) == "refused at connect", r.out
    assert f"{SERVER}:25 from {OUTSIDE}: no answer within 2s" in r.out
    time.sleep(0.2)
    assert not [l for l in d.lines[mark:] if "no connector" in l], \
        "the firewall let the outside source reach mxgate:\n" + d.log()


# ---- nftables ----------------------------------------------------------------------------

def test_nft_lockdown_in_a_namespace(ns_daemon, tmp_path):
    ns, d = ns_daemon.ns, ns_daemon
    d.configure(PROOFPOINT_CONNECTOR)
    d.start()

    # without a firewall mxgate itself refuses the outsider, after accept
    r = probe_from(ns, INSIDE)
    assert (r.rc, verdict(r)) == (0, "open"), r.out + r.err
    r = probe_from(ns, OUTSIDE)
    assert (r.rc, verdict(r)) == (3, "refused at banner"), r.out + r.err
    d.wait_log(rf"refused \[{OUTSIDE}\]:\d+ on {SERVER}:25: no connector")

    r = run_mxgate("firewall", "-c", d.conf, "--format", "nft")
    assert r.rc == 0 and r.err == "", r.err
    rules = tmp_path / "mxgate.nft"
    rules.write_text(r.out)
    assert f"ip daddr {SERVER} tcp dport 25 ip saddr @p25_v4_a1 accept" in r.out

    # loadable when the table does not exist yet, and again over itself: one copy
    for _ in range(2):
        run(["nft", "-f", str(rules)], ns=ns, check=True)
    ruleset = run(["nft", "list", "ruleset"], ns=ns, check=True).out
    assert ruleset.count("table inet mxgate") == 1, ruleset
    listing = run(["nft", "list", "table", "inet", "mxgate"], ns=ns, check=True).out
    assert listing.count("set p25_v4_a1") == 1 and listing.count("chain input") == 1
    assert listing.count(" drop\n") == 1 and listing.count(" accept\n") == 1, listing
    assert "67.231.144.0-67.231.149.255" in listing and "148.163.128.0/19" in listing

    # the input hook sees packets delivered over lo inside the namespace: the outsider's
    # SYN is dropped before mxgate sees it, the insider still gets through
    assert_lockdown_works(ns, d)
    listing = run(["nft", "list", "table", "inet", "mxgate"], ns=ns, check=True).out
    m = re.search(r"counter packets (\d+) bytes \d+ drop", listing)
    assert m and int(m.group(1)) >= 1, listing

    # a changed config replaces the rules, still one copy, and opens the door
    d.configure(PROOFPOINT_CONNECTOR.replace('"@proofpoint-essentials-us"',
                                             f'"@proofpoint-essentials-us", "{OUTSIDE}"'))
    rules.write_text(run_mxgate("firewall", "-c", d.conf, "--format", "nft").out)
    run(["nft", "-f", str(rules)], ns=ns, check=True)
    ruleset = run(["nft", "list", "ruleset"], ns=ns, check=True).out
    assert ruleset.count("table inet mxgate") == 1 and OUTSIDE in ruleset
    r = run(["nft", "delete", "table", "inet", "mxgate"], ns=ns, check=True)
    assert "mxgate" not in run(["nft", "list", "ruleset"], ns=ns, check=True).out


# ---- iptables ----------------------------------------------------------------------------

def test_iptables_lockdown_in_a_namespace(ns_daemon, tmp_path):
    assert shutil.which("iptables-restore") and shutil.which("ip6tables-restore"), \
        "iptables is not installed: scripts/deps check must install the Debian package iptables"
    ns, d = ns_daemon.ns, ns_daemon
    d.configure(PROOFPOINT_CONNECTOR)
    d.start()
    r = run_mxgate("firewall", "-c", d.conf, "--format", "iptables")
    assert r.rc == 0 and r.err == "", r.err
    script = tmp_path / "mxgate-iptables.sh"
    script.write_text(r.out)
    # an admin rule that was there before must stay, after ours
    run(["iptables", "-A", "INPUT", "-p", "udp", "--dport", "53", "-j", "ACCEPT"], ns=ns,
        check=True)
    for _ in range(2):
        run(["sh", str(script)], ns=ns, check=True)
    saved = run(["iptables-save", "-t", "filter"], ns=ns, check=True).out
    assert saved.count("-A INPUT -j MXGATE-INPUT") == 1, saved
    assert saved.index("-A INPUT -j MXGATE-INPUT") < saved.index("--dport 53 -j ACCEPT")
    assert saved.count(":MXGATE-INPUT") == 1
    ours = [l for l in saved.splitlines() if l.startswith("-A MXGATE-INPUT")]
    assert len(ours) == 4, saved       # two iprange ranges, the /19, the drop
    assert f"-d {SERVER}/32" in ours[-1] and ours[-1].endswith("-j DROP")
    assert any("--src-range 67.231.144.0-67.231.149.255" in l for l in ours)
    saved6 = run(["ip6tables-save", "-t", "filter"], ns=ns, check=True).out
    assert saved6.count("-A INPUT -j MXGATE-INPUT") == 1
    assert "-A MXGATE-INPUT" not in saved6
    assert_lockdown_works(ns, d)


# ---- the firewall command's interface ----------------------------------------------------

def test_firewall_usage_and_config_errors(write_conf, mxgate):
    conf = write_conf("""
        hostname = "mx.example.test"
        accepted-domains = { "example.test" }
        connector "A" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
          remote-ip-ranges = { "192.0.2.0/24" }
        }
    """)
    assert mxgate("firewall", "-c", conf).rc == 2
    r = mxgate("firewall", "-c", conf, "--format", "ipfw")
    assert r.rc == 2 and "unknown format 'ipfw'" in r.err
    assert mxgate("firewall", "-c", conf, "--format", "nft", "extra").rc == 2
    assert mxgate("firewall", "-c", conf, "--format").rc == 2
    bad = write_conf('connector "B" { bindings = { "0.0.0.0:25" }\n remote-ip-ranges = { "x" } }',
                     name="bad.conf")
    r = mxgate("firewall", "-c", bad, "--format", "nft")
    assert r.rc == 1 and r.out == "" and "bad.conf:2: error:" in r.err
    for fmt in ("nft", "iptables", "pf", "windows", "exchange"):
        r = mxgate("firewall", "-c", conf, "--format", fmt)
        assert r.rc == 0 and r.err == "" and "192.0.2.0" in r.out, fmt


def test_firewall_warns_about_a_port_open_to_everyone(write_conf, mxgate):
    conf = write_conf("""
        hostname = "mx.example.test"
        connector "Open" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
        }
        connector "Off" {
          enabled = false
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:26" }
          remote-ip-ranges = { "192.0.2.0/24" }
        }
    """)
    r = mxgate("firewall", "-c", conf, "--format", "nft")
    assert r.rc == 0
    assert re.search(r"mxgate.conf:2: warning: connector 'Open' takes every IPv4 address: the "
                     r"firewall rules leave TCP port 25 \(IPv4, any local address\) open", r.err)
    assert "dport 25" not in r.out and "26" not in r.out.split("table inet mxgate {\n")[-1]


# ---- probe against mxgate ------------------------------------------------------------------

def test_probe_against_mxgate(daemon):
    daemon.configure()
    daemon.start()
    target = f"127.0.0.1:{daemon.port}"

    r = probe(target, "--source", ALLOWED, "--rcpt-to", "user@example.test", "--helo",
              "probe.example")
    assert r.rc == 0, r.out + r.err
    assert verdict(r) == "open"
    lines = r.out.splitlines()
    assert lines[0] == f"probe     127.0.0.1 port {daemon.port} from {ALLOWED}, timeout 30s"
    assert re.match(rf"connect   127\.0\.0\.1:{daemon.port} from 127\.0\.0\.2:\d+: connected$",
                    lines[1])
    assert lines[2] == "banner    < 220 mx.example.test ESMTP ready"
    assert "EHLO      > EHLO probe.example" in lines
    assert "MAIL      > MAIL FROM:<>" in lines
    assert "RCPT      > RCPT TO:<user@example.test>" in lines
    assert any(l.startswith("RCPT      < 250") for l in lines)
    assert "RSET      > RSET" in lines and "QUIT      > QUIT" in lines
    assert not any("DATA" in l for l in lines if "> " in l), "the probe sent a message"
    assert daemon.queued() == [] and daemon.messages() == []

    # the denied source is closed at accept: no banner
    r = probe(target, "--source", DENIED, "--rcpt-to", "user@example.test")
    assert r.rc == 3, r.out + r.err
    assert verdict(r) == "refused at banner"
    assert "banner    connection closed without a banner" in r.out

    # --expect turns the verdict into the exit code a script wants
    assert probe(target, "--source", DENIED, "--expect", "refused").rc == 0
    assert probe(target, "--source", DENIED, "--expect", "open").rc == 1
    r = probe(target, "--source", ALLOWED, "--rcpt-to", "user@example.test", "--expect", "open")
    assert r.rc == 0

    # a recipient the server refuses is "refused at RCPT"
    r = probe(target, "--source", ALLOWED, "--rcpt-to", "someone@elsewhere.example")
    assert (r.rc, verdict(r)) == (3, "refused at RCPT"), r.out
    assert "RCPT      < 550 5.7.54" in r.out


def test_probe_starttls_against_mxgate(daemon):
    daemon.configure()
    daemon.start()
    r = probe(f"127.0.0.1:{daemon.port}", "--source", ALLOWED, "--starttls",
              "--mail-from", "<probe@remote.example>", "--rcpt-to", "<user@example.test>")
    assert r.rc == 0, r.out + r.err
    lines = r.out.splitlines()
    i = lines.index("STARTTLS  > STARTTLS")
    assert lines[i + 1].startswith("STARTTLS  < 220")
    assert re.match(r"TLS       TLSv1\.[23], \S+ \(\d+ bits\); the server's certificate was "
                    r"not verified$", lines[i + 2])
    assert lines[i + 3].startswith("EHLO      > EHLO ")
    assert "MAIL      > MAIL FROM:<probe@remote.example>" in lines
    assert verdict(r) == "open"


def test_probe_ipv6_target(daemon):
    daemon.configure(connectors="""
        connector "Six" {
          usage = internet
          bindings = { "[::1]:{port}" }
          remote-ip-ranges = { "::1" }
          tarpit-interval = 0s
        }
    """)
    daemon.start()
    r = probe(f"[::1]:{daemon.port}", "--source", "::1", "--rcpt-to", "user@example.test")
    assert (r.rc, verdict(r)) == (0, "open"), r.out + r.err
    assert f"connect   [::1]:{daemon.port} from [::1]:" in r.out
    assert re.search(r"EHLO      > EHLO \S+", r.out)


# ---- probe against Postfix ---------------------------------------------------------------

class Postfix:
    """A private Postfix: own config, queue and data directories, one smtpd on a loopback
    port, clients allowed by a cidr table. Started with master -d, stopped with SIGTERM."""

    def __init__(self, allowed):
        self.dir = tempfile.mkdtemp(prefix="mxgate-postfix-")
        os.chmod(self.dir, 0o755)   # the postfix user walks into it
        self.port = free_port()
        conf, queue, data = (os.path.join(self.dir, n) for n in ("conf", "queue", "data"))
        for p in (conf, queue, data):
            os.mkdir(p)
        shutil.chown(data, "postfix")
        with open(os.path.join(conf, "clients.cidr"), "w") as f:
            f.write(f"{allowed}/32 OK\n")
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(textwrap.dedent(f"""\
                compatibility_level = 3.6
                queue_directory = {queue}
                data_directory = {data}
                meta_directory = /etc/postfix
                mail_owner = postfix
                myhostname = pf.example.test
                mydomain = example.test
                mydestination = example.test
                inet_interfaces = 127.0.0.1
                inet_protocols = ipv4
                mynetworks = 127.0.0.1/32
                local_recipient_maps =
                alias_maps =
                alias_database =
                smtpd_client_restrictions = check_client_access cidr:{conf}/clients.cidr, reject
                maillog_file_prefixes = {self.dir}
                maillog_file = {self.dir}/maillog
            """))
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.write(textwrap.dedent(f"""\
                127.0.0.1:{self.port} inet n - n - - smtpd
                cleanup   unix n - n - 0 cleanup
                qmgr      unix n - n 300 1 qmgr
                rewrite   unix - - n - - trivial-rewrite
                anvil     unix - - n - 1 anvil
                bounce    unix - - n - 0 bounce
                defer     unix - - n - 0 bounce
                trace     unix - - n - 0 bounce
                proxymap  unix - - n - - proxymap
                postlog   unix-dgram n - n - 1 postlogd
            """))
        self.conf = conf
        self.proc = None

    def start(self):
        r = run(["postfix", "-c", self.conf, "check"])
        assert r.rc == 0, r.out + r.err
        self.proc = subprocess.Popen(["/usr/lib/postfix/sbin/master", "-c", self.conf, "-d"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(100).startswith(b"220 "):
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("postfix did not start:\n" + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog")) as f:
                return f.read()
        except OSError:
            return "(no maillog)"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postfix():
    require_root()
    assert os.path.exists("/usr/lib/postfix/sbin/master"), "Postfix is not installed"
    p = Postfix(allowed=ALLOWED)
    try:
        p.start()
        yield p
    finally:
        p.stop()


def test_probe_against_postfix_with_a_cidr_table(postfix):
    target = f"127.0.0.1:{postfix.port}"
    r = probe(target, "--source", ALLOWED, "--rcpt-to", "user@example.test")
    assert (r.rc, verdict(r)) == (0, "open"), r.out + r.err + postfix.log()
    assert "banner    < 220 pf.example.test ESMTP Postfix" in r.out

    # Postfix refuses late (smtpd_delay_reject): banner, EHLO and MAIL pass
    r = probe(target, "--source", DENIED, "--rcpt-to", "user@example.test")
    assert (r.rc, verdict(r)) == (3, "refused at RCPT"), r.out + r.err
    assert "MAIL      < 250 2.1.0 Ok" in r.out
    assert re.search(r"RCPT      < 554 5\.7\.1 <unknown\[127\.0\.0\.3\]>: Client host rejected",
                     r.out), r.out
    assert "QUIT      > QUIT" in r.out and "RSET" not in r.out
    assert probe(target, "--source", DENIED, "--rcpt-to", "user@example.test",
                 "--expect", "refused").rc == 0

    # with no --rcpt-to the probe names postmaster at the banner's host, which Postfix
    # checks like any recipient (a bare <postmaster> it would take from anyone)
    r = probe(target, "--source", DENIED)
    assert "no --rcpt-to: trying postmaster@pf.example.test" in r.out
    assert verdict(r) == "refused at RCPT"


# ---- probe against scripted servers: strict parsing and every refusal -------------------

class Scripted:
    """A one-connection-at-a-time server on loopback that sends fixed bytes: `script` maps
    the number of command lines received so far to what is sent next (None: close)."""

    def __init__(self, script):
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                n, buf = 0, b""
                try:
                    while True:
                        out = self.script.get(n, b"")
                        if out is None:
                            break
                        conn.sendall(out)
                        while b"\r\n" not in buf:
                            chunk = conn.recv(4096)
                            if not chunk:
                                raise EOFError
                            buf += chunk
                        line, buf = buf.split(b"\r\n", 1)
                        self.received.append(line.decode())
                        n += 1
                except (EOFError, OSError):
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        s = Scripted(script)
        servers.append(s)
        return f"127.0.0.1:{s.port}", s
    yield make
    for s in servers:
        s.close()


OK_FLOW = {0: b"220 fake ESMTP\r\n", 1: b"250-fake\r\n250 8BITMIME\r\n", 2: b"250 ok\r\n",
           3: b"250 ok\r\n", 4: b"250 reset\r\n", 5: b"221 bye\r\n", 6: None}


def test_probe_refusals_at_each_step(scripted):
    cases = [
        ({0: b"554 5.7.1 go away\r\n", 1: b"221 bye\r\n", 2: None}, "refused at banner"),
        ({0: None}, "refused at banner"),
        ({0: b"421 4.3.2 busy\r\n", 1: None}, "refused at banner"),
        ({0: b"220 x\r\n", 1: b"554 no\r\n", 2: b"221 bye\r\n", 3: None}, "refused at EHLO"),
        ({0: b"220 x\r\n", 1: None}, "refused at EHLO"),
        ({0: b"220 x\r\n", 1: b"250 x\r\n", 2: b"550 5.7.1 sender\r\n", 3: b"221 bye\r\n",
          4: None}, "refused at MAIL"),
        ({0: b"220 x\r\n", 1: b"250 x\r\n", 2: b"250 ok\r\n", 3: b"451 4.7.1 later\r\n",
          4: b"221 bye\r\n", 5: None}, "refused at RCPT"),
        (OK_FLOW, "open"),
    ]
    for script, want in cases:
        target, srv = scripted(script)
        r = probe(target, "--rcpt-to", "a@b.example", "--timeout", "5")
        assert verdict(r) == want, (script, r.out, r.err)
        assert r.rc == (0 if want == "open" else 3), (script, r.out)
        assert not any(l.startswith("DATA") for l in srv.received)


def test_probe_helo_fallback_and_starttls_refusal(scripted):
    target, srv = scripted({0: b"220 old\r\n", 1: b"502 5.5.2 what\r\n", 2: b"250 old\r\n",
                            3: b"250 ok\r\n", 4: b"250 ok\r\n", 5: b"250 ok\r\n",
                            6: b"221 bye\r\n", 7: None})
    r = probe(target, "--rcpt-to", "a@b.example", "--helo", "me.example")
    assert verdict(r) == "open", r.out
    assert srv.received[:2] == ["EHLO me.example", "HELO me.example"]

    target, srv = scripted({0: b"220 x\r\n", 1: b"250 x\r\n", 2: b"454 4.7.0 TLS not "
                            b"available\r\n", 3: b"221 bye\r\n", 4: None})
    r = probe(target, "--starttls", "--rcpt-to", "a@b.example")
    assert (r.rc, verdict(r)) == (3, "refused at STARTTLS"), r.out
    assert "STARTTLS  (not offered in the EHLO reply; trying anyway)" in r.out

    # a 220 to STARTTLS with bytes behind it: a possible injection, not a TLS session
    target, srv = scripted({0: b"220 x\r\n", 1: b"250-x\r\n250 STARTTLS\r\n",
                            2: b"220 go ahead\r\n250 injected\r\n", 3: None})
    r = probe(target, "--starttls", "--rcpt-to", "a@b.example")
    assert r.rc == 1 and verdict(r).startswith("error at STARTTLS: the server sent 14 bytes")


def test_probe_strict_reply_parsing(scripted):
    cases = [
        (b"220 ok\n", "lines must end in CRLF"),
        (b"22O ok\r\n", "must start with a code"),
        (b"220ok\r\n", "followed by a space, '-' or the end"),
        (b"220-one\r\n250 two\r\n", "changes its code from 220 to 250"),
        (b"220 bell\x07\r\n", "control character 0x07"),
        (b"220 " + b"x" * 600 + b"\r\n", "longer than 512 octets"),
        (b"220 a\rb\r\n", "lines must end in CRLF"),
        (b"600 nope\r\n", "must start with a code"),
    ]
    for banner, why in cases:
        target, _ = scripted({0: banner, 1: None})
        r = probe(target, "--timeout", "5")
        assert r.rc == 1, (banner, r.out, r.err)
        assert verdict(r).startswith("error at banner: malformed reply") and why in r.out, \
            (banner, r.out)
        assert why in r.err
    # a bare code is a whole reply line (RFC 5321 §4.2)
    target, _ = scripted({**OK_FLOW, 0: b"220\r\n"})
    assert verdict(probe(target, "--rcpt-to", "a@b.example")) == "open"
    # a reply slower than the timeout
    target, _ = scripted({0: b""})
    r = probe(target, "--timeout", "0.5")
    assert (r.rc, verdict(r)) == (3, "refused at banner") and "no reply within 1s" in r.out


def test_probe_connect_refused_and_errors():
    port = free_port()    # nothing listens there
    r = probe(f"127.0.0.1:{port}")
    assert (r.rc, verdict(r)) == (3, "refused at connect"), r.out
    assert "Connection refused" in r.out
    # a source address this host does not have is the caller's mistake
    r = probe(f"127.0.0.1:{port}", "--source", "192.0.2.99")
    assert r.rc == 1 and "cannot use source address 192.0.2.99" in r.err
    assert probe(f"127.0.0.1:{port}", "--source", "192.0.2.99", "--expect", "refused").rc == 1
    r = probe("no-such-host.invalid:25", "--timeout", "5")
    assert r.rc == 1 and "cannot resolve no-such-host.invalid" in r.err
    # an IPv4 source cannot reach an IPv6 target
    r = probe(f"[::1]:{port}", "--source", "127.0.0.1")
    assert r.rc == 1 and "cannot resolve ::1 (IPv4, as the source)" in r.err


def test_probe_usage_errors_exit_2():
    for args in ([], ["a", "b"], ["h:0"], ["h:99999"], ["[::1"], ["h", "--timeout", "0"],
                 ["h", "--timeout", "x"], ["h", "--expect", "maybe"], ["h", "--bogus"],
                 ["h", "--rcpt-to", "<>"], ["h", "--mail-from", "a b@c"], ["h", "--helo", "a b"],
                 ["h", "--source"]):
        r = probe(*args)
        assert r.rc == 2, (args, r.out, r.err)
        assert "usage: mxgate probe HOST[:PORT] [options]" in r.err
