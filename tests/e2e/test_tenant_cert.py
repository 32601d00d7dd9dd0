"""tls-sender-certificate-name: the client proves the tenant with a certificate (issue 13.1).

Real peers: certificates made by the openssl CLI (a CA, leaves signed by `openssl ca`,
an expired one, a self-signed one, one from another CA), swaks and openssl s_client as
the clients."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from daemon import ALLOWED, free_port

CA_CNF = """
[ca]
default_ca = ca_default
[ca_default]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}/new
serial = {d}/serial
default_md = sha256
policy = policy_any
copy_extensions = copy
unique_subject = no
[policy_any]
commonName = supplied
organizationName = optional
"""


def _run(*args):
    subprocess.run(args, check=True, capture_output=True)


class PKI:
    """A CA made with `openssl req -x509`, and leaves it signs with `openssl ca`."""

    def __init__(self, directory, name):
        self.d = os.path.join(directory, name)
        os.makedirs(os.path.join(self.d, "new"))
        open(os.path.join(self.d, "index.txt"), "w").close()
        with open(os.path.join(self.d, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.d, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(d=self.d))
        self.cert, self.key = os.path.join(self.d, "ca.pem"), os.path.join(self.d, "ca.key")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out", self.cert,
             "-days", "3", "-subj", f"/O=Test/CN={name} Root CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(self, label, cn, sans=(), expired=False):
        """(cert, key) for CN cn with these DNS subjectAltNames (none: no SAN at all)."""
        key, csr = (os.path.join(self.d, f"{label}.{x}") for x in ("key", "csr"))
        cert = os.path.join(self.d, f"{label}.pem")
        args = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                "-subj", f"/O=Tenant/CN={cn}"]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in sans)]
        _run(*args)
        dates = (["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
                 if expired else ["-days", "2"])
        _run("openssl", "ca", "-batch", "-notext", "-config", self.cnf, "-cert", self.cert,
             "-keyfile", self.key, "-in", csr, "-out", cert, *dates)
        return cert, key


def self_signed(directory, cn):
    cert, key = os.path.join(directory, "self.pem"), os.path.join(directory, "self.key")
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName=DNS:{cn}")
    return cert, key


@pytest.fixture(scope="module")
def pki():
    d = tempfile.mkdtemp(prefix="mxgate-pki-")
    os.chmod(d, 0o755)
    ca, other = PKI(d, "tenant"), PKI(d, "other")
    certs = {
        "good": ca.leaf("good", "a.example.com", ["a.example.com"]),
        "upper": ca.leaf("upper", "x", ["OUT-1.Example.COM"]),
        "wrong": ca.leaf("wrong", "a.example.org", ["a.example.org", "b.example.org"]),
        "deep": ca.leaf("deep", "a.b.example.com", ["a.b.example.com"]),
        "cn_only": ca.leaf("cn_only", "cn.example.com"),
        "cn_ignored": ca.leaf("cn_ignored", "a.example.com", ["other.example.org"]),
        "expired": ca.leaf("expired", "a.example.com", ["a.example.com"], expired=True),
        "other_ca": other.leaf("oca", "a.example.com", ["a.example.com"]),
        "self": self_signed(d, "a.example.com"),
        "doc": ca.leaf("doc", "mta1.outbound.provider.example",
                       ["mta1.outbound.provider.example"]),
    }
    for cert, key in certs.values():
        os.chmod(key, 0o644)
    yield {"ca": ca.cert, "other_ca_root": other.cert, "dir": d, **certs}
    shutil.rmtree(d, ignore_errors=True)


def connector(name='*.example.com', extra=""):
    return f"""
        connector "Tenant" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges = {{ "127.0.0.2" }}
          tarpit-interval = 0s
          protocol-logging-level = verbose
          tls-sender-certificate-name = "{name}"
          {extra}
        }}
    """


def start(daemon, pki, name='*.example.com', top="", ca=None):
    daemon.configure(connectors=connector(name), top=top)
    # the tls section is written by configure(); client-ca-file goes into it
    with open(daemon.conf) as f:
        text = f.read()
    text = text.replace(f'key = "{daemon.key}" }}',
                        f'key = "{daemon.key}"\n  client-ca-file = "{ca or pki["ca"]}" }}')
    with open(daemon.conf, "w") as f:
        f.write(text)
    daemon.start()


def swaks(daemon, pair=None):
    """swaks through STARTTLS, presenting pair (cert, key) when given: its transcript."""
    args = ["swaks", "--server", f"127.0.0.1:{daemon.port}", "--local-interface", ALLOWED,
            "--to", "user@example.test", "--from", "tenant@remote.example", "--timeout",
            "10", "--tls"]
    if pair:
        args += ["--tls-cert", pair[0], "--tls-key", pair[1]]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def mail_reply(out):
    """The reply to MAIL in a swaks transcript ("<~  250 ..." or "<~* 550 ...")."""
    m = re.search(r"^<~[ *] (\d\d\d .*)$", out.split("MAIL FROM")[1], re.M)
    assert m, out
    return m.group(1)


def test_the_right_certificate_is_accepted_and_logged(daemon, pki):
    start(daemon, pki)
    out = swaks(daemon, pki["good"])
    assert "250 2.6.0 <" in out, out
    daemon.wait_messages(1)
    line = daemon.wait_log(r"client certificate: subject")[0]
    assert 'subject "O=Tenant,CN=a.example.com"' in line, line
    assert 'issuer "CN=tenant Root CA,O=Test"' in line, line
    fp = subprocess.run(["openssl", "x509", "-in", pki["good"][0], "-noout", "-fingerprint",
                         "-sha256"], capture_output=True, text=True).stdout
    assert fp.strip().split("=", 1)[1] in line, (fp, line)
    assert "verdict ok" in line
    # names are compared ignoring case
    assert "250 2.6.0 <" in swaks(daemon, pki["upper"])


def test_no_certificate_is_refused_at_mail(daemon, pki):
    start(daemon, pki)
    out = swaks(daemon)
    assert mail_reply(out) == ("530 5.7.1 Client was not authenticated: no client "
                               "certificate was presented"), out
    assert daemon.wait_log(r"client certificate: none presented, "
                           r"tls-sender-certificate-name \*\.example\.com wants one")
    assert not daemon.messages()


@pytest.mark.parametrize("which,reply", [
    ("wrong", "550 5.7.1 Client certificate name mismatch: presented a.example.org, "
              "b.example.org"),
    ("deep", "550 5.7.1 Client certificate name mismatch: presented a.b.example.com"),
    ("cn_ignored", "550 5.7.1 Client certificate name mismatch: presented "
                   "other.example.org"),
    ("self", "550 5.7.1 Client certificate not trusted: self-signed certificate"),
    ("expired", "550 5.7.1 Client certificate not trusted: certificate has expired"),
    ("other_ca", "550 5.7.1 Client certificate not trusted: unable to get local issuer "
                 "certificate"),
])
def test_a_certificate_that_does_not_prove_the_tenant_is_refused(daemon, pki, which, reply):
    start(daemon, pki)
    out = swaks(daemon, pki[which])
    assert mail_reply(out) == reply, out
    assert not daemon.messages()


def test_cn_is_used_only_without_a_dns_san(daemon, pki):
    start(daemon, pki, name="cn.example.com")
    assert "250 2.6.0 <" in swaks(daemon, pki["cn_only"])


def test_mail_before_starttls_and_s_client(daemon, pki):
    start(daemon, pki)
    with daemon.connect() as c:
        c.reply()
        c.cmd("EHLO client.example")
        assert c.cmd("MAIL FROM:<a@remote.example>")[1].startswith(
            "451 5.7.3 Must issue a STARTTLS command first")
    script = ("EHLO client.example\r\nMAIL FROM:<o@remote.example>\r\n"
              "RCPT TO:<user@example.test>\r\nDATA\r\n")
    for pair, want in ((pki["good"], "250 2.6.0"), (pki["deep"], "550 5.7.1 Client "
                                                                 "certificate name")):
        p = subprocess.Popen(["openssl", "s_client", "-starttls", "smtp", "-quiet",
                              "-connect", f"127.0.0.1:{daemon.port}", "-bind",
                              f"{ALLOWED}:0", "-cert", pair[0], "-key", pair[1]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        for line in script.splitlines(keepends=True):
            p.stdin.write(line)
            p.stdin.flush()
            time.sleep(0.2)
        p.stdin.write("Subject: s_client\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=30)
        assert want in out, out + err


def test_metrics_and_protocol_log(daemon, pki):
    mport = free_port()
    plog = os.path.join(daemon.dir, "plog")
    start(daemon, pki, top=f'metrics-listen = "127.0.0.1:{mport}"\n'
                           f'protocol-log-directory = "{plog}"')
    for which in ("good", "wrong", "self", "expired"):
        swaks(daemon, pki[which])
    swaks(daemon)
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    for result in ("ok", "none", "untrusted", "expired", "mismatch"):
        assert (f'mxgate_tls_client_certificates_total{{connector="Tenant",'
                f'result="{result}"}} 1') in text, text
    daemon.stop()
    rows = ""
    for name in os.listdir(plog):
        with open(os.path.join(plog, name)) as f:
            rows += f.read()
    assert "client certificate: subject=CN=a.example.com" in rows, rows
    assert "verdict=untrusted; self-signed certificate" in rows, rows
    assert "client certificate: none; verdict=none" in rows, rows


def test_reload_changes_the_name_and_reads_a_root_only_ca(daemon, pki):
    # never skipped: make check runs as root (the daemon drops to nobody, the keeper reads
    # as root); without root this fails instead of proving nothing
    assert os.geteuid() == 0, "this test needs root: run make check as root"
    ca = os.path.join(daemon.dir, "clients-ca.pem")
    shutil.copy(pki["ca"], ca)
    os.chmod(ca, 0o600)
    start(daemon, pki, ca=ca)
    assert "250 2.6.0 <" in swaks(daemon, pki["good"])
    # a new name: the same certificate no longer proves the tenant, another one does
    with open(daemon.conf) as f:
        text = f.read()
    with open(daemon.conf, "w") as f:
        f.write(text.replace('"*.example.com"', '"*.example.org"'))
    daemon.reload()
    assert mail_reply(swaks(daemon, pki["good"])) == (
        "550 5.7.1 Client certificate name mismatch: presented a.example.com")
    assert "250 2.6.0 <" in swaks(daemon, pki["wrong"])
    # a new root-only CA file: the reload (as nobody) reads it through the keeper
    other = os.path.join(daemon.dir, "other-ca.pem")
    shutil.copy(pki["other_ca_root"], other)
    os.chmod(other, 0o600)
    with open(daemon.conf, "w") as f:
        f.write(text.replace(ca, other))
    daemon.reload()
    assert "250 2.6.0 <" in swaks(daemon, pki["other_ca"])
    assert mail_reply(swaks(daemon, pki["good"])).startswith(
        "550 5.7.1 Client certificate not trusted: unable to get local issuer")


def test_check_says_what_the_name_implies(mxgate, write_conf, tls_pair, pki):
    cert, key = tls_pair
    base = f"""
        hostname = "mx.example.test"
        accepted-domains = {{ "example.test" }}
        tls {{ certificate = "{cert}"
          key = "{key}"
          client-ca-file = "{pki['ca']}" }}
        connector "Tenant" {{
          usage = internet
          bindings = {{ "127.0.0.1:2525" }}
          %s
        }}
    """
    r = mxgate("check", "-c", write_conf(base % 'tls-sender-certificate-name = "*.example.com"'))
    assert r.rc == 0, r.err
    assert ("require-tls (implied), client certificate named *.example.com" in r.out), r.out
    r = mxgate("check", "-c", write_conf(base % 'tls-sender-certificate-name = "f*.example.com"'))
    assert r.rc == 1 and "wildcard only as the whole first label" in r.err, r.err
    r = mxgate("check", "-c", write_conf(base % 'tls-sender-certificate-name = "a.example.com"\n'
                                                'auth-mechanism = { none }'))
    assert r.rc == 1 and "tls-sender-certificate-name needs 'tls'" in r.err, r.err
    r = mxgate("check", "-c", write_conf(base % 'tls-sender-certificate-name = "a.example.com"\n'
                                                'require-tls = false'))
    assert r.rc == 0 and "require-tls = false has no effect" in r.err, r.err
    bad = write_conf((base % 'tls-sender-certificate-name = "a.example.com"').replace(
        pki["ca"], key))
    r = mxgate("check", "-c", bad)
    assert r.rc == 1 and "no PEM certificate in it" in r.err, r.err


def test_the_operations_guide_snippet_works_as_written(daemon, pki):
    """docs/OPERATIONS.md section 13: check, start, send and reload into it, with only the
    paths, the binding and the client range put in for this test."""
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs",
                            "OPERATIONS.md")).read()
    section = doc.split("## 13. Proving the tenant with a certificate", 1)[1]
    snippet = section.split("```\n", 2)[1]
    ca = os.path.join(daemon.dir, "clients-ca.pem")
    shutil.copy(pki["ca"], ca)
    os.chmod(ca, 0o600)
    snippet = (snippet.replace("/etc/mxgate/tls/fullchain.pem", daemon.cert)
               .replace("/etc/mxgate/tls/key.pem", daemon.key)
               .replace("/etc/mxgate/tls/clients-ca.pem", ca)
               .replace('"0.0.0.0:25"', '"127.0.0.1:{port}"')
               .replace('"192.0.2.0/24"', '"127.0.0.2"')
               .replace("usage = internet", "usage = internet\n  tarpit-interval = 0s"))
    daemon.configure(connectors=snippet, tls=False)
    r = subprocess.run([daemon_bin(), "check", "-c", daemon.conf], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    daemon.start()
    assert "250 2.6.0 <" in swaks(daemon, pki["doc"])
    assert mail_reply(swaks(daemon)).startswith("530 5.7.1")
    daemon.reload()
    assert mail_reply(swaks(daemon, pki["good"])).startswith("550 5.7.1 Client certificate "
                                                             "name mismatch")


def daemon_bin():
    from daemon import BIN
    return BIN


def sub_ca_leaf(pki, label, ca_eku):
    """A leaf for a.example.com (serverAuth only, as providers' are) issued by an
    intermediate CA of the tenant root whose extendedKeyUsage is ca_eku: (cert, key,
    intermediate)."""
    d = os.path.join(pki["dir"], label)
    os.makedirs(d)
    root_key = os.path.join(os.path.dirname(pki["ca"]), "ca.key")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("[im]\nbasicConstraints=critical,CA:TRUE\n"
                "keyUsage=critical,keyCertSign,cRLSign\n"
                f"extendedKeyUsage={ca_eku}\n"
                "[leaf]\nsubjectAltName=DNS:a.example.com\nextendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    im, im_key, leaf, key = (os.path.join(d, n) for n in ("im.pem", "im.key", "leaf.pem",
                                                           "leaf.key"))
    _run("openssl", "req", "-new", *ec, "-keyout", im_key, "-out", im + ".csr", "-subj",
         f"/O=Sub/CN={label} CA")
    _run("openssl", "x509", "-req", "-in", im + ".csr", "-CA", pki["ca"], "-CAkey", root_key,
         "-set_serial", "7", "-days", "2", "-out", im, "-extfile", ext, "-extensions", "im")
    _run("openssl", "req", "-new", *ec, "-keyout", key, "-out", leaf + ".csr", "-subj",
         "/CN=a.example.com")
    _run("openssl", "x509", "-req", "-in", leaf + ".csr", "-CA", im, "-CAkey", im_key,
         "-set_serial", "8", "-days", "2", "-out", leaf, "-extfile", ext, "-extensions",
         "leaf")
    os.chmod(key, 0o644)
    return leaf, key, im


def test_an_intermediate_not_meant_for_tls_clients_proves_nothing(daemon, pki):
    """OpenSSL's "unsuitable certificate purpose" is overlooked for the client's own
    certificate (providers present their serverAuth certificate), but not for a CA in its
    chain: an intermediate whose extendedKeyUsage keeps it to S/MIME (emailProtection,
    what enterprises get as a constrained sub-CA under a public root) must not mint
    certificates that prove a tenant's name.  The intermediates are in client-ca-file
    (not anchors: the chain still ends at the root), as an administrator adds them."""
    smime = sub_ca_leaf(pki, "smime-sub", "emailProtection")
    tls = sub_ca_leaf(pki, "tls-sub", "clientAuth,serverAuth")
    ca = os.path.join(daemon.dir, "clients-ca.pem")
    with open(ca, "w") as f:
        f.write("".join(open(p).read() for p in (pki["ca"], smime[2], tls[2])))
    start(daemon, pki, ca=ca)
    out = swaks(daemon, tls[:2])
    assert "250 2.6.0 <" in out, out
    out = swaks(daemon, smime[:2])
    assert mail_reply(out) == ("550 5.7.1 Client certificate not trusted: unsuitable "
                               "certificate purpose"), out
    daemon.wait_messages(1)

