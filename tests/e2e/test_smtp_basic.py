"""The SMTP service with real clients: Python's smtplib, swaks, openssl s_client."""
import smtplib
import ssl
import subprocess

from daemon import ALLOWED, DENIED, message


def test_smtplib_delivers_into_the_maildir(daemon):
    daemon.configure()
    daemon.start()
    with smtplib.SMTP("127.0.0.1", daemon.port, source_address=(ALLOWED, 0), timeout=10) as s:
        code, banner = s.ehlo("client.example")
        assert code == 250
        assert b"SIZE 37748736" in banner and b"PIPELINING" in banner and b"STARTTLS" in banner
        refused = s.sendmail("sender@remote.example", ["user@example.test"],
                             message("smtplib").encode())
        assert refused == {}
    msgs = daemon.wait_messages(1)
    assert b"Subject: smtplib" in msgs[0]
    assert msgs[0].startswith(b"Return-Path: <sender@remote.example>\r\nReceived: from client.example ([127.0.0.2])")
    assert b'by mx.example.test (mxgate, connector "Test") with ESMTP id ' in msgs[0]
    assert daemon.wait_queue_empty() == []


def test_a_maildir_name_too_long_for_one_recipient_bounces_at_once(daemon):
    """A template with %d and %u in one name: a recipient whose encoded parts make it
    longer than a directory entry may be fails for good (550, a bounce), not "451" retried
    until the message expires; a short recipient in the same message is delivered."""
    domain = "d" * 60 + ".example.test"
    daemon.configure()
    text = open(daemon.conf).read()
    text = text.replace(f'"{daemon.mail}/%d/%u"', f'"{daemon.mail}/%d.%u"')
    text = text.replace('accepted-domains = { "example.test" }',
                        f'accepted-domains = {{ "example.test", "{domain}" }}')
    with open(daemon.conf, "w") as f:
        f.write(text)
    daemon.start()
    long_rcpt = "#" * 64 + "@" + domain  # each '#' is %23: 192 + 1 + 73 bytes in one name
    with smtplib.SMTP("127.0.0.1", daemon.port, source_address=(ALLOWED, 0), timeout=10) as s:
        assert s.sendmail("sender@remote.example", [long_rcpt, "user@example.test"],
                          message("long").encode()) == {}
    daemon.wait_log(r"to=<#{64}@d{60}\.example\.test>, relay=maildir, .*dsn=5\.1\.3, "
                    r"status=bounced \(550 5\.1\.3 Maildir path for the recipient has a "
                    r"name longer than 255 bytes\)")
    daemon.wait_log(r"to=<user@example\.test>, relay=maildir, .*status=sent")
    assert "status=deferred" not in daemon.log()
    assert daemon.wait_queue_empty() == []


def test_smtplib_starttls(daemon):
    daemon.configure()
    daemon.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", daemon.port, source_address=(ALLOWED, 0), timeout=10) as s:
        s.starttls(context=ctx)
        code, caps = s.ehlo("client.example")
        assert b"STARTTLS" not in caps
        s.sendmail("a@remote.example", ["user@example.test"], message("tls").encode())
    msg = daemon.wait_messages(1)[0]
    assert b"with ESMTPS id" in msg and b"(using TLSv1.3 with cipher" in msg


def test_swaks_plain_and_tls(daemon):
    daemon.configure()
    daemon.start()
    for tls in ([], ["--tls"]):
        r = subprocess.run(["swaks", "--server", f"127.0.0.1:{daemon.port}",
                            "--local-interface", ALLOWED, "--to", "user@example.test",
                            "--from", "swaks@remote.example", "--timeout", "10", *tls],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "250 2.6.0 <" in r.stdout
    daemon.wait_messages(2)


def test_openssl_s_client_starttls(daemon):
    daemon.configure()
    daemon.start()
    script = ("EHLO client.example\r\nMAIL FROM:<o@remote.example>\r\n"
              "RCPT TO:<user@example.test>\r\nDATA\r\n")
    p = subprocess.Popen(["openssl", "s_client", "-starttls", "smtp", "-quiet",
                          "-connect", f"127.0.0.1:{daemon.port}", "-bind", f"{ALLOWED}:0"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # s_client itself says EHLO and STARTTLS; then our commands go through TLS
    import time
    for line in script.splitlines(keepends=True):
        p.stdin.write(line)
        p.stdin.flush()
        time.sleep(0.2)
    p.stdin.write("Subject: s_client\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=30)
    assert "250 2.6.0" in out, out + err
    assert b"Subject: s_client" in daemon.wait_messages(1)[0]


def test_denied_source_receives_zero_bytes(daemon):
    daemon.configure()
    daemon.start()
    c = daemon.connect(source=DENIED)
    assert c.recv_all(timeout=5) == b""
    daemon.wait_log(r"refused \[127\.0\.0\.3\]:\d+ on 127\.0\.0\.1:\d+: no connector")
    c = daemon.connect(source=ALLOWED)
    code, text = c.reply()
    assert code == 220 and "mx.example.test" in text
