"""The server's TLS context: tls { session-tickets } (how many TLS 1.3 session tickets
follow a full handshake, and that a client resumes with one), the certificate chain sent
(the file's), and reading ahead (several records in one segment, a record cut in two).

Real peers: openssl s_client (counts the NewSessionTicket messages it receives, shows the
chain) and Python's ssl module (resumes a session with the ticket it kept; its SSLObject
makes records that the test sends in the segments it chooses)."""
import os
import re
import socket
import ssl
import subprocess
import time
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


def tls_over_memory(daemon):
    """A session after STARTTLS and EHLO with the TLS records in the test's hands: (sock,
    SSLObject, its incoming and outgoing BIOs)."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10,
                                    source_address=(ALLOWED, 0))
    f = sock.makefile("rb")
    for line in (None, b"EHLO client.example\r\n", b"STARTTLS\r\n"):
        if line:
            sock.sendall(line)
        while f.readline()[3:4] == b"-":
            pass
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="mx.example.test")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            inc.write(sock.recv(65536))
    sock.sendall(out.read())
    return sock, obj, inc, out


def read_replies(sock, obj, inc, n):
    """n whole replies (multi-line ones count once), as text."""
    text = b""
    while len(re.findall(rb"^\d{3} .*\r\n", text, re.M)) < n:
        try:
            text += obj.read(65536)
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            assert data, text
            inc.write(data)
    return text.decode()


def write_envelope(obj):
    """EHLO, MAIL and RCPT into the TLS object: three records, not yet sent."""
    obj.write(b"EHLO client.example\r\n")
    obj.write(b"MAIL FROM:<sender@remote.example>\r\n")
    obj.write(b"RCPT TO:<user@example.test>\r\n")


def test_records_in_one_segment_are_all_answered(daemon):
    """Three commands in three TLS records that reach the server in one segment, then the
    client waits: the records read ahead behind the first are answered without another
    byte from the client (no socket event announces them)."""
    daemon.configure()
    daemon.start()
    sock, obj, inc, out = tls_over_memory(daemon)
    write_envelope(obj)
    sock.sendall(out.read())  # one send: the three records together
    text = read_replies(sock, obj, inc, 3)
    assert "250 2.1.0" in text and "250 2.1.5" in text, text
    obj.write(b"DATA\r\n")
    sock.sendall(out.read())
    assert read_replies(sock, obj, inc, 1).startswith("354")
    for line in (b"Subject: ahead\r\n", b"\r\n", b"one\r\n", b".\r\n", b"QUIT\r\n"):
        obj.write(line)
    sock.sendall(out.read())
    text = read_replies(sock, obj, inc, 2)
    assert "250 2.6.0" in text and "221" in text, text
    daemon.wait_messages(1)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_record_cut_in_two_is_answered_when_its_rest_comes(daemon):
    """The part kept after a read that wanted more is not taken for input waiting to be
    read: the session waits for the socket (it does not spin; the daemon's CPU time stays
    near zero meanwhile, about 2 s of it when it spins) and answers when the rest comes."""
    daemon.configure()
    daemon.start()
    sock, obj, inc, out = tls_over_memory(daemon)
    obj.write(b"EHLO client.example\r\n")
    rec = out.read()
    sock.sendall(rec[:7])  # the header and two bytes
    time.sleep(0.2)
    before = cpu_seconds(daemon.proc.pid)
    time.sleep(2)
    assert cpu_seconds(daemon.proc.pid) - before < 0.3
    sock.sendall(rec[7:])
    assert "250" in read_replies(sock, obj, inc, 1)
    obj.write(b"QUIT\r\n")
    sock.sendall(out.read())
    assert read_replies(sock, obj, inc, 1).startswith("221")


def test_a_message_sent_with_close_notify_behind_it_is_still_answered(daemon):
    """A TLS 1.3 client may close its sending side with close_notify and go on reading
    (RFC 8446 §6.1): the end of its message, QUIT and the close_notify in one segment
    still get their replies, the 250 first; without it the client never learns that the
    message was queued, and sends it again."""
    daemon.configure()
    daemon.start()
    sock, obj, inc, out = tls_over_memory(daemon)
    write_envelope(obj)
    sock.sendall(out.read())
    read_replies(sock, obj, inc, 3)
    obj.write(b"DATA\r\n")
    sock.sendall(out.read())
    assert read_replies(sock, obj, inc, 1).startswith("354")
    obj.write(b"Subject: close_notify behind\r\n\r\none\r\n.\r\nQUIT\r\n")
    try:
        obj.unwrap()  # close_notify: the client sends nothing more
    except ssl.SSLWantReadError:
        pass
    sock.sendall(out.read())  # the records and the close_notify together
    text = b""
    while True:
        try:
            text += obj.read(65536)
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            if not data:
                break
            inc.write(data)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    assert b"250 2.6.0 <" in text and b"221 2.0.0" in text, text
    assert b"Subject: close_notify behind" in daemon.wait_messages(1)[0]
