"""Forward-confirmed reverse DNS per connector (remote-hostname-suffixes), against a DNS
server the test runs on loopback (Debian's python3-dnslib), clients from 127.0.0.x.

Each client address has its own PTR story in ZONE: confirmed with the right suffix, a
PTR name whose A record points elsewhere (a spoofed PTR), a confirmed name with the wrong
suffix, a suffix that only matches inside a label, no PTR at all, SERVFAIL, and a second
PTR name that is the good one (every name counts, not only the first)."""
import glob
import ipaddress
import re
import select
import socket
import threading
import urllib.request

import pytest
from dnslib import AAAA, A, PTR, QTYPE, RCODE, RR, DNSRecord

from daemon import free_port, message

SUFFIX = "pphosted.com"
ZONE = {
    "127.0.0.10": (["mx1.pphosted.com"], {"mx1.pphosted.com": "127.0.0.10"}),
    "127.0.0.11": (["mx2.pphosted.com"], {"mx2.pphosted.com": "127.0.0.99"}),
    "127.0.0.12": (["mail.attacker.example"], {"mail.attacker.example": "127.0.0.12"}),
    "127.0.0.13": (["mx.evilpphosted.com"], {"mx.evilpphosted.com": "127.0.0.13"}),
    "127.0.0.14": None,  # NXDOMAIN
    "127.0.0.15": (["host.other.example", "mx3.pphosted.com"],
                   {"host.other.example": "127.0.0.15", "mx3.pphosted.com": "127.0.0.15"}),
    "127.0.0.16": "SERVFAIL",
    "127.0.0.17": (["slow.pphosted.com"], {"slow.pphosted.com": "127.0.0.17"}),
    "127.0.0.18": (["bad\\010name.pphosted.com"], {}),
    "::1": (["v6.pphosted.com"], {"v6.pphosted.com": "::1"}),
}
SLOW = "127.0.0.17"


def rev(ip):
    return ipaddress.ip_address(ip).reverse_pointer + "."


class DnsServer:
    """UDP DNS on 127.0.0.1: answers from ZONE, each query on a thread of its own, so a
    held answer (SLOW's, until `release` is set) holds nothing else.  Counts queries."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.release = threading.Event()
        self.queries = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if r:
                data, peer = self.sock.recvfrom(4096)
                threading.Thread(target=self.answer, args=(data, peer), daemon=True).start()

    def answer(self, data, peer):
        q = DNSRecord.parse(data)
        name, qtype = str(q.q.qname), QTYPE[q.q.qtype]
        self.queries.append((name, qtype))
        reply = q.reply()
        ptrs = {rev(ip): v for ip, v in ZONE.items()}
        addrs = {}
        for v in ZONE.values():
            if isinstance(v, tuple):
                addrs.update({n + ".": a for n, a in v[1].items()})
        if name == rev(SLOW):
            self.release.wait(60)
        if qtype == "PTR" and name in ptrs:
            v = ptrs[name]
            if v is None:
                reply.header.rcode = RCODE.NXDOMAIN
            elif v == "SERVFAIL":
                reply.header.rcode = RCODE.SERVFAIL
            else:
                for n in v[0]:
                    reply.add_answer(RR(name, QTYPE.PTR, rdata=PTR(n + "."), ttl=300))
        elif qtype in ("A", "AAAA") and name in addrs:
            a = addrs[name]
            if qtype == "A" and ":" not in a:
                reply.add_answer(RR(name, QTYPE.A, rdata=A(a), ttl=300))
            elif qtype == "AAAA" and ":" in a:
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(a), ttl=300))
            # else NODATA
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        try:
            self.sock.sendto(reply.pack(), peer)
        except OSError:
            pass

    def close(self):
        self.release.set()
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def dns():
    d = DnsServer()
    yield d
    d.close()


def start(daemon, resolver, timeout="20s", suffixes=f'"{SUFFIX}"', top=""):
    # one worker: the cache is the worker's
    daemon.configure(top=f'resolvers = {{ "{resolver}" }}\ndns-timeout = {timeout}\n'
                     f'workers = 1\n{top}',
                     connectors=f"""
        connector "Filter" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges = {{ "127.0.0.10-127.0.0.30" }}
          remote-hostname-suffixes = {{ {suffixes} }}
          tarpit-interval = 0s
          protocol-logging-level = verbose
        }}
    """, extra=f'protocol-log-directory = "{daemon.dir}/protolog"\n')
    daemon.start()


def mail_from(daemon, source):
    with daemon.connect(source=source) as c:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        return c.cmd("MAIL FROM:<a@remote.example>")


def test_confirmed_name_with_the_suffix_is_accepted_and_named_in_received(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    with daemon.connect(source="127.0.0.10") as c:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("MAIL FROM:<a@remote.example>") == (250, "250 2.1.0 Sender OK")
        assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(message("fcrdns") + "\r\n.\r\n")
        assert c.reply()[0] == 250
    msg = daemon.wait_messages(1)[0]
    assert b"Received: from client.example (mx1.pphosted.com [127.0.0.10])" in msg
    daemon.wait_log(r"forward-confirmed reverse DNS: 127\.0\.0\.10 is mx1\.pphosted\.com")
    # the answer is cached for its TTL: a second session asks the DNS server nothing
    n = len(dns.queries)
    assert mail_from(daemon, "127.0.0.10")[0] == 250
    assert len(dns.queries) == n
    daemon.wait_log(r"127\.0\.0\.10 is mx1\.pphosted\.com \(cached\)")


def test_every_ptr_name_counts_not_only_the_first(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    assert mail_from(daemon, "127.0.0.15") == (250, "250 2.1.0 Sender OK")


def test_spoofed_ptr_not_forward_confirmed_is_refused(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.11")
    assert code == 550 and text.startswith("550 5.7.1 Reverse DNS name mx2.pphosted.com")
    assert "not forward-confirmed" in text


def test_wrong_suffix_is_refused(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.12")
    assert code == 550
    assert text.startswith("550 5.7.1 Forward-confirmed name mail.attacker.example")


def test_suffix_only_at_a_label_boundary(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.13")
    assert code == 550 and "mx.evilpphosted.com" in text


def test_no_ptr_is_refused(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.14")
    assert code == 550 and "has no reverse DNS (PTR) name" in text


def test_a_ptr_name_that_is_no_host_name_is_not_used(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.18")
    assert code == 550 and "has no reverse DNS (PTR) name" in text


def test_ipv6_client_is_checked_through_ip6_arpa(daemon, dns):
    daemon.configure(top=f'resolvers = {{ "127.0.0.1:{dns.port}" }}\nworkers = 1\n',
                     connectors=f"""
        connector "Filter6" {{
          usage = internet
          bindings = {{ "[::1]:{{port}}" }}
          remote-ip-ranges = {{ "::1" }}
          remote-hostname-suffixes = {{ "{SUFFIX}" }}
          tarpit-interval = 0s
        }}
    """)
    daemon.start()
    with daemon.connect(source="::1", host="::1") as c:
        assert c.reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("MAIL FROM:<a@remote.example>") == (250, "250 2.1.0 Sender OK")
    assert (rev("::1"), "PTR") in dns.queries and ("v6.pphosted.com.", "AAAA") in dns.queries


def test_servfail_is_a_temporary_failure(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}")
    code, text = mail_from(daemon, "127.0.0.16")
    assert code == 451 and text.startswith("451 4.4.3 ")


def test_dns_down_is_a_temporary_failure(daemon):
    # a port nothing listens on: the resolver gets no answer
    start(daemon, f"127.0.0.1:{free_port()}", timeout="1s")
    code, text = mail_from(daemon, "127.0.0.10")
    assert code == 451 and text.startswith("451 4.4.3 Cannot check the reverse DNS")


def test_slow_dns_does_not_block_another_session(daemon, dns):
    start(daemon, f"127.0.0.1:{dns.port}", timeout="60s")
    slow = daemon.connect(source=SLOW)
    try:
        assert slow.reply()[0] == 220
        assert slow.cmd("EHLO client.example")[0] == 250
        slow.send("MAIL FROM:<a@remote.example>\r\n")
        # while the DNS server holds the slow client's answer, another client goes through
        assert mail_from(daemon, "127.0.0.10")[0] == 250
        r, _, _ = select.select([slow.sock], [], [], 0)
        assert not r, "the slow client was answered before its DNS answer came"
        dns.release.set()
        assert slow.reply() == (250, "250 2.1.0 Sender OK")
    finally:
        slow.close()


def test_metrics_and_protocol_log_count_each_verdict(daemon, dns):
    mport = free_port()
    start(daemon, f"127.0.0.1:{dns.port}", top=f'metrics-listen = "127.0.0.1:{mport}"\n')
    for ip in ("127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.14", "127.0.0.16"):
        mail_from(daemon, ip)
    daemon.wait_log(r"forward-confirmed reverse DNS: DNS trouble")
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        page = r.read().decode()
    for result in ("pass", "no_ptr", "not_confirmed", "wrong_suffix", "tempfail"):
        assert f'mxgate_fcrdns_checks_total{{result="{result}"}} 1' in page
    daemon.stop()
    rows = "".join(open(f).read() for f in glob.glob(f"{daemon.dir}/protolog/*.LOG"))
    for verdict in ("pass mx1.pphosted.com", "not forward-confirmed", "wrong suffix",
                    "no PTR", "DNS trouble"):
        assert verdict in rows


def test_operations_snippet_checks_starts_and_reloads(daemon, dns, mxgate, write_conf):
    """The snippet of docs/OPERATIONS.md section 12, as written: `mxgate check` takes
    it; a running daemon reloads into it (its binding moved to the test's port, the
    resolver to the test's server) and refuses a client the snippet's ranges leave out."""
    import os
    import re
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                            "OPERATIONS.md")).read()
    section = doc.split("## 12. Forward-confirmed reverse DNS", 1)[1]
    snippet = re.search(r"```\n(.*?)```", section, re.S).group(1)
    path = write_conf('hostname = "mx.example.test"\nspool = "/tmp/unused"\n'
                      'accepted-domains = { "example.test" }\n'
                      f'tls {{ certificate = "{daemon.cert}"\n key = "{daemon.key}" }}\n'
                      + snippet)
    r = mxgate("check", "-c", path)
    assert r.rc == 0, r.err
    assert "remote-hostname-suffixes pphosted.com" in r.out
    start(daemon, f"127.0.0.1:{dns.port}")
    assert mail_from(daemon, "127.0.0.12")[0] == 550
    live = snippet.replace('"0.0.0.0:25"', '"127.0.0.1:{port}"') \
                  .replace('"127.0.0.1:53"', f'"127.0.0.1:{dns.port}"') \
                  .replace('"@proofpoint-essentials-us"', '"127.0.0.10-127.0.0.30"')
    daemon.configure(top="workers = 1\n", connectors=live)
    daemon.reload()
    assert mail_from(daemon, "127.0.0.10")[0] == 250
    assert mail_from(daemon, "127.0.0.11")[0] == 550


def test_reload_switches_resolvers(daemon, dns):
    start(daemon, f"127.0.0.1:{free_port()}", timeout="1s")
    assert mail_from(daemon, "127.0.0.10")[0] == 451
    start_conf = open(daemon.conf).read()
    with open(daemon.conf, "w") as f:
        f.write(re.sub(r'resolvers = \{ "[^"]*" \}',
                       f'resolvers = {{ "127.0.0.1:{dns.port}" }}', start_conf))
    daemon.reload()
    assert mail_from(daemon, "127.0.0.10") == (250, "250 2.1.0 Sender OK")


def test_reload_while_a_lookup_is_under_way(daemon, dns):
    """The old resolver keeps the lookup it has; sessions after the reload use the new
    one at once, and the old one's answer still reaches its session."""
    start(daemon, f"127.0.0.1:{dns.port}", timeout="60s")
    second = DnsServer()
    try:
        slow = daemon.connect(source=SLOW)
        assert slow.reply()[0] == 220
        assert slow.cmd("EHLO client.example")[0] == 250
        slow.send("MAIL FROM:<a@remote.example>\r\n")
        for _ in range(400):  # the slow lookup has reached the old server
            if (rev(SLOW), "PTR") in dns.queries:
                break
            select.select([], [], [], 0.05)
        assert (rev(SLOW), "PTR") in dns.queries
        conf = open(daemon.conf).read()
        with open(daemon.conf, "w") as f:
            f.write(conf.replace(f"127.0.0.1:{dns.port}", f"127.0.0.1:{second.port}"))
        daemon.reload()
        assert mail_from(daemon, "127.0.0.12")[0] == 550
        assert (rev("127.0.0.12"), "PTR") in second.queries
        assert (rev("127.0.0.12"), "PTR") not in dns.queries
        dns.release.set()
        assert slow.reply() == (250, "250 2.1.0 Sender OK")
        slow.close()
    finally:
        second.close()
