"""Privilege separation (src/smtpd/keeper.h): the configuration, the TLS key and a ranges
file readable by root alone, in a directory only root may enter, as a secured server keeps
them. The daemon runs as nobody; a SIGHUP must still read them (through the privileged
reader), rotate the certificate, and say what is wrong in words when a file is bad."""
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from daemon import free_port
from helpers_ops import (IS_ROOT, cert_fingerprint, new_cert, presented_fingerprint,
                         session, transaction, zero_bytes)


@pytest.fixture(autouse=True)
def needs_root():
    """Privilege separation needs root: without it these tests fail, never skip."""
    assert IS_ROOT, "these tests need root: run make check as root"


def private_setup(daemon, ranges=("127.0.0.2",), top=""):
    """Moves the configuration, the TLS pair and a ranges file into DIR/private (0700,
    root's), each file 0600; returns (private dir, ranges file)."""
    priv = os.path.join(daemon.dir, "private")
    os.mkdir(priv, 0o700)
    for name in ("cert", "key"):
        src = getattr(daemon, name)
        dst = os.path.join(priv, os.path.basename(src))
        shutil.move(src, dst)
        os.chmod(dst, 0o600)
        setattr(daemon, name, dst)
    rfile = os.path.join(priv, "ranges")
    with open(rfile, "w") as f:
        f.write("\n".join(ranges) + "\n")
    os.chmod(rfile, 0o600)
    text = f"""
        connector "Test" {{
          usage = internet
          bindings = {{ "127.0.0.1:{{port}}" }}
          remote-ip-ranges-file = "{rfile}"
          tarpit-interval = 0s
        }}
    """
    daemon.conf = os.path.join(priv, "mxgate.conf")
    daemon.configure(connectors=text, top=top)
    os.chmod(daemon.conf, 0o600)
    return priv, rfile


def keeper_pid(daemon):
    out = subprocess.run(["pgrep", "-P", str(daemon.proc.pid), "-x", "mxgate-keeper"],
                         capture_output=True, text=True).stdout.split()
    assert len(out) == 1, f"no single keeper under {daemon.proc.pid}: {out}\n{daemon.log()}"
    return int(out[0])


def reader_up(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        m = re.search(r"^mxgate_privileged_reader_up (\d+)$", r.read().decode(), re.M)
    assert m, "no mxgate_privileged_reader_up series"
    return int(m.group(1))


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_reload_reads_root_only_files_and_rotates_the_certificate(daemon):
    """A reload as nobody reads the 0600 config, key and ranges file in a 0700 directory:
    the new certificate is presented and the new range admitted."""
    priv, rfile = private_setup(daemon)
    daemon.start()
    assert status(daemon.proc.pid)["Uid"].split()[0] != "0"
    old_fp = presented_fingerprint(daemon)
    assert old_fp == cert_fingerprint(daemon.cert)
    assert zero_bytes("127.0.0.1", daemon.port, "127.0.0.4") == b""

    new_fp = new_cert(daemon.cert, daemon.key, cn="rotated.example.test")
    with open(rfile, "a") as f:
        f.write("127.0.0.4\n")
    assert (os.stat(daemon.key).st_uid, os.stat(daemon.key).st_mode & 0o777) == (0, 0o600)
    daemon.reload()

    assert presented_fingerprint(daemon) == new_fp != old_fp
    c = session(daemon, source="127.0.0.4")
    code, text = transaction(c, "tok-rotated")
    assert code == 250, text
    c.close()
    daemon.wait_messages(1)


def test_a_relative_config_path_into_a_root_only_directory_reloads(daemon):
    """`mxgate run -c private/etc/mxgate.conf` (a relative path) with relative paths in
    the file: the run user cannot search private/ (0700, root's), so the daemon must name
    the files as the keeper does, by absolute path, or the reload refuses the key
    ("Permission denied") and a relative maildir ("not an absolute path")."""
    priv, _ = private_setup(daemon)
    with open(daemon.conf) as f:
        text = f.read()
    text = (text.replace(f'"{daemon.cert}"', '"cert.pem"').replace(f'"{daemon.key}"', '"key.pem"')
            .replace(f'maildir = "{daemon.mail}/%d/%u"',
                     'maildir = "%s/%%d/%%u"' % os.path.relpath(daemon.mail, priv)))
    assert '"cert.pem"' in text and '"key.pem"' in text and 'maildir = "../' in text, text
    # one level below private/: resolving the file's directory needs private/ searched
    os.remove(daemon.conf)
    os.mkdir(os.path.join(priv, "etc"), 0o700)
    text = text.replace('"cert.pem"', '"../cert.pem"').replace('"key.pem"', '"../key.pem"')
    text = text.replace('maildir = "../', 'maildir = "../../')
    daemon.conf = os.path.join(priv, "etc", "mxgate.conf")
    with open(daemon.conf, "w") as f:
        f.write(text)
    os.chmod(daemon.conf, 0o600)
    daemon.conf = os.path.relpath(daemon.conf)
    assert not os.path.isabs(daemon.conf)
    daemon.start()
    daemon.reload()
    assert "Permission denied" not in daemon.log() and "not an absolute" not in daemon.log()


def test_a_bad_key_keeps_the_old_certificate_and_says_why(daemon):
    """A key that does not parse is refused with the file's name and the reason; the
    running certificate stays. A key that is a certificate is called swapped."""
    private_setup(daemon)
    daemon.start()
    old_fp = presented_fingerprint(daemon)
    with open(daemon.key, "w") as f:
        f.write("not a key\n")
    daemon.reload(expect_ok=False)
    daemon.wait_log(re.escape(f"cannot load key {daemon.key}: no PEM private key in it"))
    assert presented_fingerprint(daemon) == old_fp

    shutil.copy(daemon.cert, daemon.key)
    daemon.reload(expect_ok=False)
    daemon.wait_log(re.escape(f"cannot load key {daemon.key}: it holds a certificate, "
                              "not a private key (are certificate and key swapped?)"))
    assert presented_fingerprint(daemon) == old_fp


def test_the_keeper_keeps_only_reading(daemon):
    """The keeper is root with no capability but CAP_DAC_READ_SEARCH, no_new_privs, and
    nothing of the daemon's open: no listener, no spool, no notify socket. The daemon
    is nobody. The keeper ends with the daemon."""
    private_setup(daemon)
    daemon.start()
    kp = keeper_pid(daemon)
    ks, ds = status(kp), status(daemon.proc.pid)
    assert ks["Uid"].split() == ["0"] * 4, ks["Uid"]
    assert int(ks["CapEff"], 16) == 1 << 2 and int(ks["CapBnd"], 16) == 1 << 2, ks
    assert int(ks["CapPrm"], 16) == 1 << 2, ks
    assert ks["NoNewPrivs"] == "1"
    assert ds["Uid"].split()[0] != "0", ds["Uid"]
    fds = os.listdir(f"/proc/{kp}/fd")
    assert sorted(int(f) for f in fds) == [0, 1, 2, 3], fds  # stdio and its channel
    daemon.stop()
    deadline = time.time() + 10
    while os.path.exists(f"/proc/{kp}") and time.time() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{kp}"), "the keeper outlived the daemon"


def test_without_the_keeper_a_reload_names_the_file_and_the_os_error(daemon):
    """When the keeper is gone (killed), the daemon says so once, and a reload as nobody
    is refused with "Permission denied" and the file's name; mail still flows. The gauge
    mxgate_privileged_reader_up goes from 1 to 0."""
    mport = free_port()
    private_setup(daemon, top=f'metrics-listen = "127.0.0.1:{mport}"')
    daemon.start()
    assert reader_up(mport) == 1
    os.kill(keeper_pid(daemon), signal.SIGKILL)
    time.sleep(0.2)
    daemon.reload(expect_ok=False)
    daemon.wait_log(r"the privileged reader \(pid \d+\) is gone: this reload and the next "
                    r"read the files as the run user")
    daemon.wait_log(re.escape(f"{daemon.conf}: cannot read the configuration: "
                              "Permission denied"))
    assert reader_up(mport) == 0
    c = session(daemon)
    code, text = transaction(c, "tok-after")
    assert code == 250, text
    c.close()
    daemon.wait_messages(1)
