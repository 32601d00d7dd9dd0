"""Exchange's SMTP Receive protocol log, written by the daemon and read back with Python's
csv module: a verbose connector's session row by row, a `none` connector's not at all."""
import csv
import glob
import io
import os
import pwd
import re
import socket
import stat
import struct

from daemon import ALLOWED, DENIED, message

FIELDS = ("#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
          "remote-endpoint,event,data,context")
MARKER = "body-marker-7f3a9c-never-logged"


def configure(daemon, logdir):
    daemon.configure(top=f'protocol-log-directory = "{logdir}"\n', connectors="""
        connector "Loud, \\"verbose\\"" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.2" }
          tarpit-interval = 0s
          protocol-logging-level = verbose
        }
        connector "Quiet" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.3" }
          tarpit-interval = 0s
        }
    """)


def read_log(logdir):
    files = sorted(glob.glob(os.path.join(logdir, "RECV*.LOG")))
    assert len(files) == 1, files
    assert re.fullmatch(r"RECV\d{8}-1\.LOG", os.path.basename(files[0])), files
    with open(files[0], "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # the file is UTF-8 whatever the client sent
    assert MARKER not in text, "the message body reached the protocol log"
    lines = text.split("\r\n")
    assert lines[-1] == ""
    return lines[:-1]


def test_a_verbose_session_is_logged_row_by_row(daemon):
    logdir = os.path.join(daemon.dir, "protolog")
    configure(daemon, logdir)
    daemon.start()
    st = os.stat(logdir)
    assert stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IWOTH

    long_arg = "L" * 450
    with daemon.connect(source=ALLOWED) as c:
        assert c.reply()[0] == 220
        assert c.cmd('EHLO "client,with""quotes",x')[0] in (250, 501)
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd('MAIL FROM:<"odd,local""q"@remote.example>')[0] in (250, 501, 550, 553)
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<sender@remote.example>")[0] == 250
        assert c.cmd("RCPT TO:<user@example.test>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(message("protolog", body=MARKER + "\r\n") + ".\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("NOOP " + long_arg)[0] == 250
        assert c.cmd("NOOP tab\there \x01 \x7f")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        assert c.closed()
    with daemon.connect(source=DENIED) as c:  # the quiet connector: no rows
        assert c.reply()[0] == 220
        assert c.cmd("NOOP quiet-session")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    daemon.wait_messages(1)
    daemon.wait_log(r'connector="Quiet": closed', timeout=10)
    log = daemon.log()
    assert daemon.stop() == 0  # protolog_stop() writes what is queued

    lines = read_log(logdir)
    assert lines[0].startswith("#Software: mxgate ")
    assert lines[1] == "#Version: 15.0.0.0"
    assert lines[2] == "#Log-type: SMTP Receive Protocol Log"
    assert re.fullmatch(r"#Date: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[3]), lines[3]
    assert lines[4] == FIELDS
    rows = list(csv.reader(io.StringIO("\r\n".join(lines[5:]) + "\r\n")))
    assert rows and all(len(r) == 9 for r in rows), rows

    # one session, on the verbose connector, as the daemon's own log names it
    ids = {r[2] for r in rows}
    assert len(ids) == 1, ids
    sid = ids.pop()
    loud = [l for l in log.splitlines() if f"session={sid} " in l]
    assert loud and all('connector="Loud, \\"verbose\\""' in l or 'connector="Loud' in l
                        for l in loud), loud
    quiet = re.search(r"session=(\S+) client=\S+ connector=\"Quiet\"", log).group(1)
    assert quiet != sid and "quiet-session" not in "".join(lines)
    assert {r[1] for r in rows} == {'Loud, "verbose"'}
    assert all(r[4] == f"127.0.0.1:{daemon.port}" for r in rows)
    assert all(re.fullmatch(r"127\.0\.0\.2:\d+", r[5]) for r in rows)
    assert [int(r[3]) for r in rows] == list(range(len(rows)))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[0]) for r in rows)

    events = [r[6] for r in rows]
    assert events[0] == "+" and events[-1] == "-"
    assert set(events) == {"+", "<", ">", "*", "-"}
    first = {e: events.index(e) for e in "+<>*-"}
    assert first["+"] < first[">"] < first["<"] < first["-"]
    assert rows[-1][8] == "Local"  # the server closes after 221, as Exchange logs it

    commands = [r[7] for r in rows if r[6] == "<"]
    assert commands[0] == 'EHLO "client,with""quotes",x'  # read back whole by csv
    assert "STARTTLS" in commands and commands[-1] == "QUIT"
    assert 'MAIL FROM:<"odd,local""q"@remote.example>' in commands
    assert "NOOP " + long_arg in commands
    assert "NOOP tab\\x09here \\x01 \\x7F" in commands or \
        "NOOP tab\\x09here \\x01 \\x7f" in commands, commands
    assert "DATA" in commands and not any(MARKER in c for c in commands)
    replies = [r[7] for r in rows if r[6] == ">"]
    assert replies[0].startswith("220 ")
    assert any(r.startswith("250-") for r in replies)  # one row per EHLO reply line
    assert any(r.startswith("354 ") for r in replies)
    assert replies[-1].startswith("221 ")
    info = [(r[8], r[7]) for r in rows if r[6] == "*"]
    assert ("connector", 'Loud, "verbose"') in info
    tls = [d for ctx, d in info if ctx == "TLS"]
    assert len(tls) == 1 and re.fullmatch(
        r"TLS protocol TLSv1\.[23] negotiation succeeded using cipher \S+", tls[0]), tls
    assert any(ctx == "queued" for ctx, _ in info), info
    # rows come in the order they happened: the TLS row between STARTTLS and the next EHLO
    i_starttls = next(i for i, r in enumerate(rows) if r[6] == "<" and r[7] == "STARTTLS")
    i_tls = next(i for i, r in enumerate(rows) if r[6] == "*" and r[8] == "TLS")
    assert i_starttls < i_tls < len(rows) - 1 and rows[i_tls + 1][6] == "<"


def test_no_directory_no_log_and_a_world_writable_one_is_refused(daemon):
    logdir = os.path.join(daemon.dir, "protolog")
    os.mkdir(logdir)
    os.chmod(logdir, 0o777)
    configure(daemon, logdir)
    assert daemon.start(expect_fail=True) != 0
    assert re.search(r"protocol-log-directory .* writable by every user", daemon.log())
    assert os.listdir(logdir) == []


def sessions_in(logdir):
    rows = []
    for path in sorted(glob.glob(os.path.join(logdir, "RECV*.LOG"))):
        with open(path, newline="", encoding="utf-8") as f:
            rows += [r for r in csv.reader(l for l in f if not l.startswith("#"))]
    return rows


def test_a_reload_moves_the_log_and_a_client_hangup_is_remote(daemon):
    first = os.path.join(daemon.dir, "first")
    second = os.path.join(daemon.dir, "second")
    os.makedirs(second, 0o750)
    configure(daemon, first)
    daemon.start()
    with daemon.connect(source=ALLOWED) as c:
        assert c.reply()[0] == 220
        assert c.cmd("NOOP before-reload")[0] == 250
        assert c.cmd("QUIT")[0] == 221
        assert c.closed()
    daemon.wait_log(r"closed: ", timeout=10)
    nobody = pwd.getpwnam("nobody")
    os.chown(second, nobody.pw_uid, nobody.pw_gid)  # a reload runs as the run user
    configure(daemon, second)
    daemon.reload()
    with daemon.connect(source=ALLOWED) as c:
        assert c.reply()[0] == 220
        assert c.cmd("NOOP after-reload")[0] == 250
    daemon.wait_log(r"closed: ", timeout=10, count=2)
    assert daemon.stop() == 0

    a, b = sessions_in(first), sessions_in(second)
    assert [r[7] for r in a if r[6] == "<"] == ["NOOP before-reload", "QUIT"]
    assert [r[7] for r in b if r[6] == "<"] == ["NOOP after-reload"]
    assert b[-1][6] == "-" and b[-1][8] == "Remote"  # the client hung up


def test_a_client_reset_is_remote(daemon):
    """A client that resets the connection (RST, not FIN) closed it: "-" row, context
    "Remote", as a client hang-up is; the session log gives the reset."""
    logdir = os.path.join(daemon.dir, "protolog")
    configure(daemon, logdir)
    daemon.start()
    c = daemon.connect(source=ALLOWED)
    assert c.reply()[0] == 220
    assert c.cmd("NOOP before-reset")[0] == 250
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()
    daemon.wait_log(r"closed: read: Connection reset by peer", timeout=10)
    assert daemon.stop() == 0
    rows = sessions_in(logdir)
    assert [r[7] for r in rows if r[6] == "<"] == ["NOOP before-reset"]
    assert rows[-1][6] == "-" and rows[-1][8] == "Remote", rows[-1]


def test_session_ids_do_not_repeat_across_restarts(daemon):
    # Before, every start counted from 00000000 again, so one id named several sessions
    # in the journal and in the protocol logs of successive runs.
    daemon.configure()
    seen = []
    for run in range(2):
        daemon.start()
        for _ in range(2):
            with daemon.connect() as c:
                assert c.reply()[0] == 220
                c.cmd("QUIT")
        # read once the daemon has exited: stop() has then taken every line it wrote (the
        # log reaches daemon.lines through a pipe and a reader thread, and the line of a
        # session can still be on its way when its client has had the 221)
        daemon.stop()
        ids = re.findall(r"session=([0-9A-F]+) ", daemon.log())
        assert ids, daemon.log()
        seen.append(sorted(set(ids)))
    assert all(len(run) == 2 for run in seen), seen
    assert all(re.fullmatch(r"[0-9A-F]{16}", i) for run in seen for i in run), seen
    assert not set(seen[0]) & set(seen[1]), seen
    assert max(seen[0]) < min(seen[1]), "ids count up from the start time"
