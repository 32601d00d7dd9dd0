"""tls { session-tickets }: how many TLS 1.3 session tickets follow a full handshake, and
that a client resumes with one; also that the certificate chain sent is the file's.

Real peers: openssl s_client (counts the NewSessionTicket messages it receives, shows the
chain) and Python's ssl module (resumes a session with the ticket it kept)."""
import os
import re
import socket
import ssl
import subprocess
import urllib.request

from daemon import ALLOWED, free_port


def configure(daemon, tickets=None, top=""):
    """The default connector; `tickets` is written as session-tickets when not None."""
    daemon.configure(top=top)
    if tickets is not None:
        with open(daemon.conf) as f:
            text = f.read()
        text = text.replace(f'key = "{daemon.key}" }}',
                            f'key = "{daemon.key}"\n  session-tickets = {tickets} }}')
        assert f"session-tickets = {tickets}" in text
        with open(daemon.conf, "w") as f:
            f.write(text)


def s_client(daemon, *extra):
    """One STARTTLS session of openssl s_client (TLS 1.3): EHLO, QUIT; its stdout."""
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-tls1_3", "-ign_eof",
                        "-connect", f"127.0.0.1:{daemon.port}", "-bind", f"{ALLOWED}:0",
                        *extra],
                       input="EHLO client.example\r\nQUIT\r\n", capture_output=True,
                       text=True, timeout=30)
    assert "221" in p.stdout, p.stdout + p.stderr
    return p.stdout


def tickets_seen(daemon):
    return s_client(daemon).count("Post-Handshake New Session Ticket arrived")


def smtp_tls(daemon, ctx, session=None):
    """EHLO, STARTTLS, EHLO, QUIT over Python's ssl; (session, session_reused, version)."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10,
                                    source_address=(ALLOWED, 0))
    f = sock.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            assert line[:1] in b"2", line
            if line[3:4] != b"-":
                return line

    reply()
    sock.sendall(b"EHLO client.example\r\n")
    reply()
    sock.sendall(b"STARTTLS\r\n")
    reply()
    t = ctx.wrap_socket(sock, server_hostname="mx.example.test", session=session)
    tf = t.makefile("rb")
    t.sendall(b"EHLO client.example\r\n")
    while tf.readline()[3:4] == b"-":
        pass
    t.sendall(b"QUIT\r\n")
    assert tf.readline().startswith(b"221")  # the tickets came before: they are read
    out = (t.session, t.session_reused, t.version())
    t.close()
    return out


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def test_one_ticket_by_default_and_the_option_sets_the_number(daemon):
    configure(daemon)
    daemon.start()
    assert tickets_seen(daemon) == 1  # OpenSSL's own default would send 2
    daemon.stop()
    for n in (0, 3):
        configure(daemon, n)
        daemon.start()
        assert tickets_seen(daemon) == n
        daemon.stop()


def test_reload_changes_the_number(daemon):
    configure(daemon, 2)
    daemon.start()
    assert tickets_seen(daemon) == 2
    configure(daemon, 0)
    daemon.reload()
    assert tickets_seen(daemon) == 0


def test_a_client_resumes_with_its_ticket_and_it_is_counted(daemon):
    mport = free_port()
    configure(daemon, top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    ctx = client_ctx()
    sess, reused, version = smtp_tls(daemon, ctx)
    assert version == "TLSv1.3" and not reused and sess is not None and sess.has_ticket
    _, reused, _ = smtp_tls(daemon, ctx, sess)
    assert reused
    daemon.wait_log(r"TLS established: TLSv1\.3 \S+ \(resumed session\)")
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert re.search(r"^mxgate_tls_sessions_resumed_total 1$", text, re.M), text
    assert 'mxgate_tls_sessions_total{version="TLSv1.3"} 2' in text, text


def test_no_tickets_no_resumption(daemon):
    configure(daemon, 0)
    daemon.start()
    ctx = client_ctx()
    sess, reused, _ = smtp_tls(daemon, ctx)
    assert not reused and not (sess and sess.has_ticket)
    _, reused, _ = smtp_tls(daemon, ctx, sess)
    assert not reused


def test_out_of_range_is_refused(daemon, mxgate):
    configure(daemon, 9)
    r = mxgate("check", "-c", daemon.conf)
    assert r.rc != 0 and "session-tickets" in r.err + r.out, r.err


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_the_chain_sent_is_the_files(daemon):
    """A leaf and its intermediate in the file: both go; the leaf alone: the leaf alone
    (the context builds no chain of its own on each handshake)."""
    d = daemon.dir
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    im_csr, im, im_key = (os.path.join(d, n) for n in ("im.csr", "im.pem", "im.key"))
    leaf_csr, leaf, leaf_key = (os.path.join(d, n) for n in ("l.csr", "l.pem", "l.key"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj",
             "/CN=Test Root", "-addext", "basicConstraints=critical,CA:TRUE")
    _openssl("req", "-new", *ec, "-keyout", im_key, "-out", im_csr, "-subj",
             "/CN=Test Intermediate")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("[ca]\nbasicConstraints=critical,CA:TRUE\n"
                "[leaf]\nsubjectAltName=DNS:mx.example.test\n")
    _openssl("x509", "-req", "-in", im_csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-days", "2", "-out", im, "-extfile", ext, "-extensions", "ca")
    _openssl("req", "-new", *ec, "-keyout", leaf_key, "-out", leaf_csr, "-subj",
             "/CN=mx.example.test")
    _openssl("x509", "-req", "-in", leaf_csr, "-CA", im, "-CAkey", im_key,
             "-CAcreateserial", "-days", "2", "-out", leaf, "-extfile", ext, "-extensions",
             "leaf")
    os.chmod(leaf_key, 0o600)
    full = os.path.join(d, "full.pem")
    with open(full, "w") as f:
        f.write(open(leaf).read() + open(im).read())
    os.chmod(full, 0o644)
    os.chmod(leaf, 0o644)
    for cert, subjects in ((full, ["mx.example.test", "Test Intermediate"]),
                           (leaf, ["mx.example.test"])):
        daemon.cert, daemon.key = cert, leaf_key
        configure(daemon)
        daemon.start()
        out = s_client(daemon, "-showcerts")
        chain = out.split("Certificate chain", 1)[1].split("\n---\n", 1)[0]
        assert re.findall(r"^ *\d+ s:.*CN ?= ?([^,\n]+)", chain, re.M) == subjects, chain
        daemon.stop()
