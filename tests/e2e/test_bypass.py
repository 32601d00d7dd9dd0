"""The bypass suite (issue 13.5): every way around the filter that mxgate can see, tried
for real in a network namespace with real nftables rules from `mxgate firewall --format
nft`, first against the shipped lockdown (etc/proofpoint-lockdown.conf: each path is
closed and `mxgate audit` finds nothing), then on a misconfigured namespace (the path is
open, and `mxgate audit`, run inside the namespace, names it):

  IPv6 left open        a second MTA on [::]:25 while the firewall locks IPv4 only
  IPv4-mapped           a dual-stack [::]:25 socket that takes IPv4 clients as ::ffff:a.b.c.d
  a second port/binding a connector open to everyone on 587; a daemon that runs another
                        file, with one more binding
  firewall vs server    rules made from another configuration than the one that runs

The story's addresses sit on the namespace's lo: 67.231.152.10 inside Proofpoint
Essentials US, 198.51.100.10 outside it, 203.0.113.25 the server, and over IPv6
2001:db8:bad::10 a client and 2001:db8:25::25 the server.  The other MTA is a small
Python SMTP responder that reports the peer address it sees.  The certificate, FCrDNS and
PROXY paths have their own suites; at the end they are tried again here, behind the same
firewall, the way another tenant of the provider would (the tenant paths).  Namespaces and processes are removed whatever
happens.
"""
import hashlib
import json
import os
import re
import subprocess
import time

import pytest

import helpers_netns
from helpers_netns import ROOT, NsDaemon, fresh_presets, local_paths, mxgate, netns, run


def findings(r):
    """audit's finding lines but the info line on the shipped lockdown's missing tenant
    proof (the tenant paths, at the end, test that one with helpers_netns.findings)."""
    return [l for l in helpers_netns.findings(r)
            if not l.startswith("info tenant-proof-missing: ")]


INSIDE = "67.231.152.10"
OUTSIDE = "198.51.100.10"
SERVER = "203.0.113.25"
OUTSIDE6 = "2001:db8:bad::10"
SERVER6 = "2001:db8:25::25"

OTHER_MTA = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(sys.argv[3]))
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    print("peer", peer[0], flush=True)
    try:
        c.settimeout(10)
        f = c.makefile("rwb")
        f.write(b"220 other-mta.example ESMTP\r\n")
        f.flush()
        for line in f:
            if line[:4].upper() == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                break
            f.write(b"250 ok\r\n")
            f.flush()
    except OSError:
        pass
    c.close()
"""


def probe(ns, source, target, port=25, timeout=3):
    host = f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
    r = mxgate(ns, "probe", host, "--source", source, "--rcpt-to", "user@example.com",
               "--timeout", str(timeout))
    lines = r.out.splitlines()
    assert lines and lines[-1].startswith("verdict: "), r.out + r.err
    return lines[-1][len("verdict: "):]


def audit(ns, conf, *extra):
    r = mxgate(ns, "audit", "-c", conf, *extra)
    assert r.rc in (0, 1), r.out + r.err
    return r


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A namespace with the story's addresses, and the presets with a source dated today
    (the shipped ones are older than audit's 180 days: test_old_preset_and_no_daemon)."""
    with fresh_presets() as presets, netns(v4=(INSIDE, OUTSIDE, SERVER),
                                           v6=(OUTSIDE6, SERVER6)) as name:
        monkeypatch.setenv("MXGATE_PROVIDERS_DIR", presets)
        yield name


@pytest.fixture
def daemon(lab):
    d = NsDaemon(lab)
    try:
        yield d
        if d.proc and d.proc.poll() is None:
            d.stop()
    finally:
        d.cleanup()


@pytest.fixture
def other_mta(lab):
    """Starts the other MTA in the namespace: other_mta(addr, port, v6only)."""
    procs = []

    def start(addr, port=25, v6only=1):
        p = subprocess.Popen(["ip", "netns", "exec", lab, "/usr/bin/python3", "-c", OTHER_MTA,
                              addr, str(port), str(v6only)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.kill()
            p.wait()


def lockdown(d, bindings='"0.0.0.0:25"', ranges='"@proofpoint-essentials-us"', more=""):
    """The shipped etc/proofpoint-lockdown.conf with this machine's paths (and optionally
    other bindings or ranges, and more connectors)."""
    with open(os.path.join(ROOT, "etc", "proofpoint-lockdown.conf")) as f:
        text = local_paths(d, f.read())
    for old, new in (('bindings = { "0.0.0.0:25" }', f"bindings = {{ {bindings} }}"),
                     ('remote-ip-ranges = { "@proofpoint-essentials-us" }',
                      f"remote-ip-ranges = {{ {ranges} }}")):
        assert old in text, old
        text = text.replace(old, new)
    return text + more


def load_firewall(ns, conf, tmp_path):
    helpers_netns.load_firewall(ns, conf, tmp_path / "mxgate.nft")


# ---- the shipped lockdown closes every path ----------------------------------------------

def test_default_lockdown_closes_every_path(daemon, other_mta, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    d.start()
    load_firewall(ns, conf, tmp_path)

    assert probe(ns, INSIDE, SERVER) == "open"
    assert probe(ns, OUTSIDE, SERVER) == "refused at connect"    # the firewall drops it
    assert probe(ns, OUTSIDE6, SERVER6) == "refused at connect"  # nothing takes IPv6
    assert probe(ns, INSIDE, SERVER, 587) == "refused at connect"  # no second port
    assert not [l for l in d.lines if "no connector" in l], d.log()

    r = audit(ns, conf)
    # only the info line on the missing tenant proof (test_audit_names_a_missing_tenant_proof)
    assert (r.rc, findings(r)) == (0, []), r.out + r.err
    assert [f.split(":")[0] for f in helpers_netns.findings(r)] == [
        "info tenant-proof-missing"], r.out
    assert "\naudit: no findings (" in r.out
    assert "firewall read" in r.out
    r = audit(ns, conf, "--json")
    assert r.rc == 0 and json.loads(r.out)["findings"][0]["check"] == "tenant-proof-missing"
    assert len(json.loads(r.out)["findings"]) == 1, r.out


# ---- IPv6 left open ----------------------------------------------------------------------

def test_ipv6_left_open_is_a_bypass_audit_finds(daemon, other_mta, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    d.start()
    load_firewall(ns, conf, tmp_path)
    mta = other_mta("::", 25, v6only=1)

    assert probe(ns, OUTSIDE, SERVER) == "refused at connect"
    assert probe(ns, OUTSIDE6, SERVER6) == "open"  # around the filter, over IPv6
    assert mta.stdout.readline().split() == ["peer", OUTSIDE6]

    r = audit(ns, conf)
    assert r.rc == 1, r.out + r.err
    f = "\n".join(findings(r))
    assert "critical ipv6-open: port 25: IPv6 is left open while IPv4 is locked: the " \
           "firewall lets 2001:db8::1" in f, f
    assert re.search(rf"critical foreign-listener: python3 \(pid {mta.pid}\) listens on "
                     r"\[::\]:25, a port of the configuration, and is not mxgate", f), f
    assert "dual-stack" not in f, f  # sock_diag says it is IPv6-only


def test_binding_ipv6_closes_it_in_the_firewall(daemon, other_mta, tmp_path):
    """docs/LOCKDOWN.md's second configuration: with [::]:25 bound (no IPv6 range), the
    rules drop every IPv6 client of port 25, even one for another MTA on that port."""
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d, bindings='"0.0.0.0:25", "[::]:25"'))
    d.start()
    load_firewall(ns, conf, tmp_path)
    assert probe(ns, OUTSIDE6, SERVER6) == "refused at connect"
    assert audit(ns, conf).rc == 0
    d.stop()
    mta = other_mta("::", 25, v6only=1)
    assert probe(ns, OUTSIDE6, SERVER6) == "refused at connect"  # dropped, not refused
    assert mta.poll() is None
    r = audit(ns, conf)
    f = "\n".join(findings(r))
    assert "critical foreign-listener" in f and "ipv6-open" not in f, f


# ---- IPv4-mapped addresses on a dual-stack socket ----------------------------------------

def test_mxgate_ipv6_socket_takes_no_ipv4(daemon, tmp_path):
    """mxgate's [::] sockets are IPv6-only: an IPv4 client never arrives as ::ffff:a.b.c.d
    on one (where an IPv4 range would not match it, or a ::/0 one would)."""
    ns, d = daemon.ns, daemon
    d.write(lockdown(d, bindings='"[::]:25"'))
    d.start()
    assert probe(ns, INSIDE, SERVER) == "refused at connect"
    assert not [l for l in d.lines if "::ffff:" in l], d.log()
    d.stop()
    # and both families bind side by side on one port
    d.write(lockdown(d, bindings='"0.0.0.0:25", "[::]:25"'))
    d.start()
    assert probe(ns, INSIDE, SERVER) == "open"
    assert not [l for l in d.lines if "::ffff:" in l], d.log()


def test_dual_stack_socket_of_another_mta_is_found(lab, other_mta, daemon, tmp_path):
    ns, d = lab, daemon
    conf = d.write(lockdown(d))
    load_firewall(ns, conf, tmp_path)
    mta = other_mta("::", 25, v6only=0)  # where mxgate should be: dual-stack
    # the firewall still drops the outsider (netfilter sees the IPv4 packet) ...
    assert probe(ns, OUTSIDE, SERVER) == "refused at connect"
    # ... but Proofpoint's address, any tenant's, reaches the other MTA, as ::ffff:
    assert probe(ns, INSIDE, SERVER) == "open"
    assert mta.stdout.readline().split() == ["peer", "::ffff:" + INSIDE]

    r = audit(ns, conf)
    assert r.rc == 1, r.out + r.err
    f = "\n".join(findings(r))
    assert re.search(r"critical foreign-listener: python3 \(pid \d+\) listens on \[::\]:25.*"
                     r"a dual-stack socket: IPv4 clients too, as ::ffff:a\.b\.c\.d", f), f
    assert "warning not-running: " in f, f


# ---- a second port or binding ------------------------------------------------------------

OPEN_SUBMISSION = """
connector "Submission" {
  usage = internet
  bindings = { "0.0.0.0:587" }
}
"""


def test_second_port_open_to_everyone(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d, more=OPEN_SUBMISSION))
    d.start()
    load_firewall(ns, conf, tmp_path)
    assert probe(ns, OUTSIDE, SERVER) == "refused at connect"
    assert probe(ns, OUTSIDE, SERVER, 587) == "open"  # next to the locked port
    r = audit(ns, conf)
    assert r.rc == 1, r.out + r.err
    assert re.search(r'warning open-connector: connector "Submission" \(.*\) takes every IPv4 '
                     r'client, next to locked connectors such as "From Proofpoint Essentials '
                     r'US"', r.out), r.out


def test_daemon_running_another_file_with_a_second_binding(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    documented = d.write(lockdown(d))
    running = d.write(lockdown(d, bindings=f'"0.0.0.0:25", "[{SERVER6}]:25"',
                               ranges=f'"@proofpoint-essentials-us", "{OUTSIDE6}"'),
                      os.path.join(d.dir, "other.conf"))
    d.start(conf=running)
    load_firewall(ns, documented, tmp_path)
    assert probe(ns, OUTSIDE6, SERVER6) == "open"  # a binding the documented file lacks
    r = audit(ns, documented)
    assert r.rc == 1, r.out + r.err
    f = "\n".join(findings(r))
    assert re.search(rf"critical other-config: the running mxgate \(pid \d+\) uses "
                     rf"{re.escape(os.path.realpath(running))}, not "
                     rf"{re.escape(os.path.realpath(documented))}", f), f
    assert f"warning unnamed-listener: mxgate listens on [{SERVER6}]:25" in f, f
    assert "critical ipv6-open: port 25" in f, f
    # audited against the file it runs, only the firewall's IPv6 gap is left
    r = audit(ns, running)
    f = "\n".join(findings(r))
    assert "other-config" not in f and "unnamed-listener" not in f, f
    assert "ipv6-open" in f, f


def test_file_changed_but_not_reloaded(daemon, tmp_path):
    """The daemon reports the SHA-256 of the file it loaded; audit compares it with the
    file now: an edit not reloaded is found, a touch is not, a reload clears it."""
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    d.start()
    load_firewall(ns, conf, tmp_path)
    with open(conf, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    r = mxgate(ns, "status", "-c", conf)
    assert f"\nconfiguration sha256: {digest} (the file as loaded; mxgate audit compares " \
           "it)\n" in r.out, r.out
    os.utime(conf, (time.time() + 5, time.time() + 5))  # touched, not changed
    assert audit(ns, conf).rc == 0
    with open(conf, "a") as f:
        f.write("# a change not reloaded\n")
    r = audit(ns, conf)
    assert findings(r) == [
        f"warning not-reloaded: {conf} is not what the running mxgate (pid {d.proc.pid}) "
        "loaded (their SHA-256 differ): it was changed since, and the daemon runs the "
        f"previous version; fix: mxgate check -c {conf}, then reload (kill -HUP "
        f"{d.proc.pid}, systemctl reload mxgate)"], r.out
    d.reload()
    assert audit(ns, conf).rc == 0


# ---- the firewall and the server disagreeing ---------------------------------------------

def test_firewall_from_another_configuration(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    stale = d.write(lockdown(d, ranges='"198.51.100.0/24"'), os.path.join(d.dir, "old.conf"))
    d.start()
    load_firewall(ns, stale, tmp_path)
    assert mxgate(ns, "which", "-c", conf, f"{SERVER}:25", INSIDE).rc == 0
    assert probe(ns, INSIDE, SERVER) == "refused at connect"  # lost at the firewall
    assert probe(ns, OUTSIDE, SERVER) == "refused at banner"  # let in, refused by mxgate
    d.wait_log(rf"refused \[{OUTSIDE}\]:\d+ on 0\.0\.0\.0:25: no connector")
    r = audit(ns, conf)
    assert r.rc == 1, r.out + r.err
    f = "\n".join(findings(r))
    assert "critical firewall-open: port 25, IPv4: the loaded firewall does not restrict " \
           "clients to the configuration's ranges: 198.51.100.1, outside them" in f, f
    assert "warning firewall-drops: port 25, IPv4: the firewall drops 12 of the ranges the " \
           "configuration takes (67.231.144.0 among them)" in f, f
    # once the rules come from the running file, nothing is left
    load_firewall(ns, conf, tmp_path)
    r = audit(ns, conf)
    assert (r.rc, findings(r)) == (0, []), r.out


def test_legacy_iptables_rules_are_counted_not_read(daemon, tmp_path):
    """iptables-legacy keeps its rules out of nftables: audit says so, whatever they do."""
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    d.start()
    load_firewall(ns, conf, tmp_path)
    assert audit(ns, conf).rc == 0
    run(["iptables-legacy", "-A", "INPUT", "-p", "tcp", "--dport", "25", "-j", "ACCEPT"], ns=ns,
        check=True)
    r = audit(ns, conf)
    assert r.rc == 1, r.out + r.err
    assert findings(r) == [
        "warning legacy-iptables: 1 rule of iptables-legacy (IPv4) is loaded; audit reads "
        "nftables and iptables-nft only, so the firewall findings do not count them; fix: "
        "move them to nftables (iptables-restore-translate), or check them by hand with "
        "iptables-legacy-save"], r.out


# ---- the rest ----------------------------------------------------------------------------

def test_old_preset_and_no_daemon(lab, daemon, monkeypatch):
    monkeypatch.delenv("MXGATE_PROVIDERS_DIR")
    conf = daemon.write(lockdown(daemon))
    r = audit(lab, conf)
    assert r.rc == 1, r.out + r.err
    f = "\n".join(findings(r))
    assert re.search(r"warning preset-old: provider preset proofpoint-essentials-us: its "
                     r"source is dated 2023-06-13, \d+ days ago \(more than 180\)", f), f
    assert "warning not-running: no mxgate answers on the control socket" in f, f
    # no firewall in a fresh namespace, and nothing listens
    assert "warning firewall-open: port 25, IPv4: " in f and "(nothing listens there now)" in f


def test_audit_usage_and_configuration_errors(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("connector {\n")
    r = mxgate(None, "audit", "-c", str(bad))
    assert r.rc == 2 and "bad.conf:" in r.err, r.err
    r = mxgate(None, "audit", "--nope")
    assert r.rc == 2 and "usage: mxgate audit" in r.err, r.err
    r = mxgate(None, "audit", "-c", str(bad), "extra")
    assert r.rc == 2, r.err


# ---- the tenant paths: another tenant of the provider, from inside its ranges --------------
# The provider's ranges are shared by all its customers: 67.231.152.x passes the address
# check whoever's mail it carries.  The tenant proof (a client certificate name, a
# forward-confirmed host name) is what stops another tenant; a forged PROXY header is
# what an attacker would try to look like someone else.

from test_tenant_cert import PKI, mail_reply, self_signed  # noqa: E402

TENANT = "mta1.tenant-1234.pphosted.example"
OTHER_TENANT = "mta1.tenant-9999.pphosted.example"
SUFFIX = "outbound.pphosted.example"
SPOOFED = "67.231.152.11"  # PTR under the suffix, whose A record is another address
WRONG = "67.231.152.12"    # forward-confirmed, but not under the suffix

# A DNS server for the namespace (python3-dnslib), on its 127.0.0.1:53
DNS_SERVER = r"""
import ipaddress, socket, sys
from dnslib import A, PTR, QTYPE, RCODE, RR, DNSRecord
zone = {"67.231.152.10": ("mx1.%(s)s", "67.231.152.10"),
        "67.231.152.11": ("mx2.%(s)s", "67.231.152.99"),
        "67.231.152.12": ("mail.attacker.example", "67.231.152.12")}
ptrs = {ipaddress.ip_address(ip).reverse_pointer + ".": v for ip, v in zone.items()}
addrs = {v[0] + ".": v[1] for v in zone.values()}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    q = DNSRecord.parse(data)
    name, qtype = str(q.q.qname), QTYPE[q.q.qtype]
    print("query", name, qtype, flush=True)
    r = q.reply()
    if qtype == "PTR" and name in ptrs:
        r.add_answer(RR(name, QTYPE.PTR, rdata=PTR(ptrs[name][0] + "."), ttl=60))
    elif qtype == "A" and name in addrs:
        r.add_answer(RR(name, QTYPE.A, rdata=A(addrs[name]), ttl=60))
    elif name not in addrs:
        r.header.rcode = RCODE.NXDOMAIN
    s.sendto(r.pack(), peer)
""" % {"s": SUFFIX}

# A plain SMTP client: connects from argv[1] to argv[2]:25, sends each later argument as a
# line, and prints the last line of each reply (the greeting first)
SMTP_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[2], 25), timeout=10, source_address=(sys.argv[1], 0))
f = c.makefile("rb")
def reply():
    while True:
        line = f.readline().decode()
        if len(line) < 4 or line[3] != "-":
            print(line.rstrip("\r\n"), flush=True)
            return
reply()
for cmd in sys.argv[3:]:
    c.sendall(cmd.encode() + b"\r\n")
    reply()
"""


def add_addresses(ns, *addrs):
    for a in addrs:
        run(["ip", "-n", ns, "addr", "add", f"{a}/32", "dev", "lo"], check=True)


def tenant_lockdown(d, connector="", top=""):
    """The shipped lockdown with more lines in its connector and at its top."""
    text = lockdown(d)
    old = "  max-inbound-connection-per-source = 20\n"
    assert old in text
    text = text.replace(old, old + connector)
    old = 'accepted-domains = { "example.com" }\n'
    assert old in text
    return text.replace(old, old + top)


def smtp(ns, source, *cmds):
    r = run(["/usr/bin/python3", "-c", SMTP_CLIENT, source, SERVER, *cmds], ns=ns)
    assert r.rc == 0, r.out + r.err
    return r.out.splitlines()


@pytest.fixture
def tenant_pki():
    d = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                     f"mxgate-bypass-pki-{os.getpid()}-{time.monotonic_ns() % 1000000}")
    os.makedirs(d)
    os.chmod(d, 0o755)
    try:
        ca = PKI(d, "tenant")
        certs = {"ca": ca.cert,
                 "right": ca.leaf("right", TENANT, [TENANT]),
                 "other": ca.leaf("other", OTHER_TENANT, [OTHER_TENANT]),
                 "self": self_signed(d, TENANT)}
        for v in certs.values():
            for p in (v if isinstance(v, tuple) else (v,)):
                os.chmod(p, 0o644)
        yield certs
    finally:
        subprocess.run(["rm", "-rf", d])


def swaks_in(ns, pair=None):
    args = ["swaks", "--server", f"{SERVER}:25", "--local-interface", INSIDE, "--to",
            "user@example.com", "--from", "tenant@remote.example", "--timeout", "10", "--tls"]
    if pair:
        args += ["--tls-cert", pair[0], "--tls-key", pair[1]]
    r = run(args, ns=ns)
    return r.out + r.err


def test_another_tenant_without_the_certificate_is_refused(daemon, tenant_pki, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(tenant_lockdown(
        d, connector=f'  tls-sender-certificate-name = "{TENANT}"\n').replace(
        f'key = "{d.key}"\n', f'key = "{d.key}"\n  client-ca-file = "{tenant_pki["ca"]}"\n'))
    assert "client-ca-file" in open(conf).read()
    d.start()
    load_firewall(ns, conf, tmp_path)
    # another tenant: the right address, no certificate, or one for another name
    assert mail_reply(swaks_in(ns)).startswith("530 5.7.1 "), d.log()
    assert mail_reply(swaks_in(ns, tenant_pki["other"])) == (
        f"550 5.7.1 Client certificate name mismatch: presented {OTHER_TENANT}")
    assert mail_reply(swaks_in(ns, tenant_pki["self"])) == (
        "550 5.7.1 Client certificate not trusted: self-signed certificate")
    assert not d.messages(domain="example.com")
    # the tenant: accepted (the test can pass)
    out = swaks_in(ns, tenant_pki["right"])
    assert "250 2.6.0 <" in out, out
    d.wait_messages(1, domain="example.com")
    # and the proof is on: audit has nothing to say, not even the info line
    r = audit(ns, conf)
    assert (r.rc, helpers_netns.findings(r)) == (0, []), r.out + r.err


def test_another_tenant_without_a_confirmed_host_name_is_refused(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    add_addresses(ns, SPOOFED, WRONG)
    dns = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", DNS_SERVER],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert dns.stdout.readline().strip() == "ready", dns.stderr.read()
        conf = d.write(tenant_lockdown(
            d, connector=f'  remote-hostname-suffixes = {{ "{SUFFIX}" }}\n',
            top='resolvers = { "127.0.0.1:53" }\n'))
        d.start()
        load_firewall(ns, conf, tmp_path)
        mail = ("EHLO client.example", "MAIL FROM:<a@remote.example>", "QUIT")
        # a spoofed PTR: a name under the suffix whose A record is not the client
        replies = smtp(ns, SPOOFED, *mail)
        assert replies[2].startswith(f"550 5.7.1 Reverse DNS name mx2.{SUFFIX}"), replies
        assert "not forward-confirmed" in replies[2], replies
        # forward-confirmed, but not under the suffix
        replies = smtp(ns, WRONG, *mail)
        assert replies[2].startswith(
            "550 5.7.1 Forward-confirmed name mail.attacker.example"), replies
        # the confirmed name under the suffix: accepted
        replies = smtp(ns, INSIDE, *mail)
        assert replies[2] == "250 2.1.0 Sender OK", replies
        d.wait_log(rf"forward-confirmed reverse DNS: {re.escape(INSIDE)} is mx1\.")
        r = audit(ns, conf)
        assert (r.rc, helpers_netns.findings(r)) == (0, []), r.out + r.err
    finally:
        dns.kill()
        dns.wait()


def test_a_forged_proxy_header_is_never_believed(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    # a balancer is configured, but the client is not it
    conf = d.write(tenant_lockdown(d, top='proxy-protocol-from = { "203.0.113.80" }\n'))
    d.start()
    load_firewall(ns, conf, tmp_path)
    forged = f"PROXY TCP4 67.231.152.99 {SERVER} 40000 25"
    replies = smtp(ns, INSIDE, forged, "EHLO client.example", "MAIL FROM:<a@remote.example>",
                   "RCPT TO:<user@example.com>", "DATA",
                   "Subject: forged\r\n\r\nhello\r\n.", "QUIT")
    assert replies[1].startswith("500 "), replies  # the header is SMTP input, unknown
    assert replies[2].startswith("250"), replies
    assert replies[6].startswith("250 2.6.0"), replies
    msg = d.wait_messages(1, domain="example.com")[0]
    assert f"[{INSIDE}]".encode() in msg and b"67.231.152.99" not in msg.split(b"\r\n\r\n")[0]
    # the session's log lines name the real peer, never the header's address
    assert [l for l in d.lines if f"[{INSIDE}]:" in l], d.log()
    assert not [l for l in d.lines if "67.231.152.99" in l and "PROXY" not in l], d.log()


def test_audit_names_a_missing_tenant_proof(daemon, tmp_path):
    ns, d = daemon.ns, daemon
    conf = d.write(lockdown(d))
    d.start()
    load_firewall(ns, conf, tmp_path)
    r = audit(ns, conf)
    assert r.rc == 0, r.out + r.err  # info: the exit status is not changed
    assert helpers_netns.findings(r) == [
        f'info tenant-proof-missing: connector "From Proofpoint Essentials US" ({conf}:'
        + helpers_netns.findings(r)[0].split(f"({conf}:")[1].split(")")[0]
        + ") takes its clients from preset proofpoint-essentials-us with no tenant proof: "
        "another tenant of proofpoint-essentials-us can relay through it; fix: "
        "tls-sender-certificate-name or remote-hostname-suffixes (docs/LOCKDOWN.md section 5)"
    ], r.out
    r = audit(ns, conf, "--json")
    f = json.loads(r.out)["findings"]
    assert [(x["severity"], x["check"]) for x in f] == [("info", "tenant-proof-missing")]
