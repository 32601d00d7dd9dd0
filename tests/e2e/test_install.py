"""`make install` and what it installs: the file list and modes, mxgate(8) through mandoc's
linter, the systemd unit through `systemd-analyze verify` and `security`, the sysusers.d
and tmpfiles.d pair through systemd's own tools, the unit's capability bounding set
against a real start, and presets found under the PREFIX the binary was installed with.

Everything is installed into temporary directories (DESTDIR).  Where a path must be real
(the unit's ExecStart=, a binary's compiled-in PREFIX, an install without DESTDIR), the
test runs in a private mount namespace that binds its temporary tree over /usr/sbin,
/opt or /etc: the machine's own directories are never written.  The tests run
the repository's Makefile, so they need the release objects (`make` builds them) and
run as root (mount namespaces, capability sets), as the e2e suites do.
"""
import glob
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# the tools these tests drive, and the Debian package of each (scripts/deps installs them)
TOOLS = {"make": "make", "mandoc": "mandoc", "systemd-analyze": "systemd",
         "systemd-sysusers": "systemd", "systemd-tmpfiles": "systemd", "setpriv": "util-linux",
         "unshare": "util-linux", "adduser": "adduser"}


@pytest.fixture(scope="module", autouse=True)
def tools():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    assert not missing, "install tests: apt-get install " + " ".join(missing)

# variables of the Makefile that an environment must not set behind the test's back
MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PREFIX", "DESTDIR",
             "SBINDIR", "PKGDATADIR", "MANDIR", "DOCDIR", "UNITDIR", "SYSUSERSDIR",
             "TMPFILESDIR", "SYSTEMD_SYSUSERS", "SYSTEMD_TMPFILES", "MXGATE_PROVIDERS_DIR")


def clean_env():
    return {k: v for k, v in os.environ.items() if k not in MAKE_VARS}


def make(*args):
    cp = subprocess.run(["make", "--no-print-directory", "-j2", "-C", ROOT, *args],
                        capture_output=True, text=True, timeout=300, env=clean_env())
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


def in_namespace(script, timeout=120):
    """Runs a sh script (set -e) in a private mount namespace: its mounts vanish with it."""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                           script], capture_output=True, text=True, timeout=timeout,
                          env=clean_env())


def repo_files(pattern):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, pattern)))


def man_pages():
    """The pages `make install` installs: MAN8 and MAN5 of the Makefile."""
    cp = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "--eval",
                         "print-man-pages: ; @echo $(MAN8) $(MAN5)", "print-man-pages"],
                        capture_output=True, text=True, env=clean_env())
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.split()


@pytest.fixture(scope="module")
def usr(tmp_path_factory):
    """`make install DESTDIR=D PREFIX=/usr`; returns D."""
    assert os.geteuid() == 0, "the install tests need root (mount namespaces, capabilities)"
    dest = str(tmp_path_factory.mktemp("dest"))
    make("install", "DESTDIR=" + dest, "PREFIX=/usr")
    return dest


def tree(dest):
    """{relative path: mode} of every file and directory under dest."""
    out = {}
    for base, dirs, files in os.walk(dest):
        for n in dirs + files:
            p = os.path.join(base, n)
            out[os.path.relpath(p, dest)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_install_puts_every_file_in_place_with_its_mode(usr):
    got = tree(usr)
    want = {"usr/sbin/mxgate": 0o755,
            "usr/lib/systemd/system/mxgate.service": 0o644,
            "usr/lib/sysusers.d/mxgate.conf": 0o644,
            "usr/lib/tmpfiles.d/mxgate.conf": 0o644}
    for page in man_pages():
        section = page.rsplit(".", 1)[1]
        want["usr/share/man/man%s/%s" % (section, os.path.basename(page))] = 0o644
    for name in repo_files("providers/*.conf"):
        want["usr/share/mxgate/providers/" + name] = 0o644
    for name in repo_files("etc/*.conf"):
        want["usr/share/doc/mxgate/examples/" + name] = 0o644
    for name in ["README.md"] + repo_files("docs/*.md"):
        want["usr/share/doc/mxgate/" + name] = 0o644
    assert "usr/share/mxgate/providers/proofpoint-essentials-us.conf" in want
    assert "usr/share/man/man8/mxgate.8" in want
    files = {p: m for p, m in got.items() if not stat.S_ISDIR(os.lstat(os.path.join(usr, p)).st_mode)}
    assert files == want
    dirs = {p: m for p, m in got.items() if p not in files}
    assert all(m == 0o755 for m in dirs.values()), dirs
    # DESTDIR is a staging tree: no user or spool was made in it (nor on this machine)
    assert not os.path.exists(os.path.join(usr, "etc"))
    assert not os.path.exists(os.path.join(usr, "var"))
    unit = open(os.path.join(usr, "usr/lib/systemd/system/mxgate.service")).read()
    assert "ExecStart=/usr/sbin/mxgate run -c /etc/mxgate/mxgate.conf\n" in unit
    assert "ExecStartPre=/usr/sbin/mxgate check -c /etc/mxgate/mxgate.conf\n" in unit
    assert "@" not in re.sub(r"(?m)^#.*$", "", unit).replace("@system-service", "") \
        .replace("@resources", ""), "a template variable was left in the unit"


def test_man_pages_are_lint_clean_and_cover_every_command(usr):
    pages = [p for p in glob.glob(os.path.join(usr, "usr/share/man/man*/*"))]
    assert pages
    for page in pages:
        cp = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", page],
                            capture_output=True, text=True)
        assert cp.returncode == 0 and cp.stdout == "" and cp.stderr == "", \
            cp.stdout + cp.stderr
    text = open(os.path.join(usr, "usr/share/man/man8/mxgate.8")).read()
    helped = subprocess.run([os.path.join(usr, "usr/sbin/mxgate"), "help"],
                            capture_output=True, text=True).stdout
    commands = re.findall(r"^  mxgate (\S+)", helped, re.M)
    assert len(commands) >= 10, helped
    synopsis = text.split(".Sh SYNOPSIS", 1)[1].split(".Sh ", 1)[0]
    for c in commands:
        assert ".Cm %s\n" % c in synopsis, "mxgate(8) SYNOPSIS lacks " + c
        assert re.search(r"^\.It (Cm %s\b|Xo\n\.Cm %s\b)" % (c, c), text, re.M), \
            "mxgate(8) does not describe " + c
    for section in ("SIGNALS", "ENVIRONMENT", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
        assert ".Sh %s\n" % section in text
    for signal in ("SIGHUP", "SIGTERM", "SIGINT"):
        assert "Dv %s" % signal in text
    for word in ("NOTIFY_SOCKET", "MXGATE_PROVIDERS_DIR", "/etc/mxgate/mxgate.conf",
                 "/var/spool/mxgate/", "control", "firewall --format nft", "which -v",
                 "mxgate probe"):
        assert word in text, word


def test_unit_verifies_and_is_hardened(usr):
    unit = os.path.join(usr, "usr/lib/systemd/system/mxgate.service")
    # the unit names /usr/sbin/mxgate: bind the installed /usr/sbin there for the check
    # (--man=no: `man` need not be installed; the pages are checked below instead)
    cp = in_namespace('mount --bind "%s/usr/sbin" /usr/sbin\n'
                      'systemd-analyze verify --man=no "%s"\n'
                      'echo "== security"\n'
                      'systemd-analyze security --offline=yes --no-pager "%s"'
                      % (usr, unit, unit))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    verify, security = cp.stdout.split("== security\n", 1)
    assert verify == "" and cp.stderr == "", cp.stdout + cp.stderr
    m = re.search(r"Overall exposure level for mxgate.service: (\d+\.\d+)", security)
    assert m, security
    print("systemd-analyze security: exposure %s" % m.group(1))
    # 2.5 when written; systemd calls up to 3.9 "OK".  A directive taken out raises it.
    assert float(m.group(1)) <= 2.6, security
    text = open(unit).read()
    for page in re.search(r"^Documentation=(.*)$", text, re.M).group(1).split():
        name, section = re.match(r"man:(.+)\((\d)\)$", page).groups()
        assert os.path.exists(os.path.join(usr, "usr/share/man/man%s/%s.%s"
                                           % (section, name, section))), page
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "ProtectSystem=strict", "ReadWritePaths=/var/spool/mxgate /var/mail/mxgate",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "UMask=0077"):
        assert "\n%s\n" % line in text, line
    # every directive is explained: the line before each one is a comment or another
    # directive of the same explained group, never a bare directive after a blank line
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z]\w+=", line) and i > 0:
            assert lines[i - 1] != "" or line.startswith(("Description=", "Type=")), \
                "directive without a reason above it: " + line


def test_sysusers_and_tmpfiles_make_the_user_and_the_directories(usr, tmp_path):
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, "etc"))
    for d in ("usr/lib/sysusers.d", "usr/lib/tmpfiles.d"):
        shutil.copytree(os.path.join(usr, d), os.path.join(root, d))
    cp = subprocess.run(["systemd-sysusers", "--root=" + root], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    users = {l.split(":")[0]: l.split(":") for l in open(os.path.join(root, "etc/passwd"))}
    groups = {l.split(":")[0]: l.split(":") for l in open(os.path.join(root, "etc/group"))}
    u = users["mxgate"]
    assert int(u[2]) < 1000, "a system user"
    assert u[3] == groups["mxgate"][2], "its own group"
    assert u[5] == "/var/spool/mxgate" and u[6].strip().endswith("nologin")
    cp = subprocess.run(["systemd-tmpfiles", "--root=" + root, "--create"],
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    for d in ("var/spool/mxgate", "var/mail/mxgate"):
        st = os.stat(os.path.join(root, d))
        assert stat.S_IMODE(st.st_mode) == 0o700, d
        assert (st.st_uid, st.st_gid) == (int(u[2]), int(u[3])), d
    # the unit may write exactly what tmpfiles.d makes
    unit = open(os.path.join(usr, "usr/lib/systemd/system/mxgate.service")).read()
    made = re.findall(r"^d (\S+)", open(os.path.join(usr, "usr/lib/tmpfiles.d/mxgate.conf"))
                      .read(), re.M)
    assert re.search(r"^ReadWritePaths=(.*)$", unit, re.M).group(1).split() == made


def free_low_port():
    """A free port below 1024 on 127.0.0.1, where binding needs CAP_NET_BIND_SERVICE."""
    for port in range(990, 600, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free port below 1024 on 127.0.0.1")


def start_bounded(binary, conf, caps, log):
    """Starts `mxgate run` as root with the capability bounding set caps (as systemd's
    CapabilityBoundingSet= and NoNewPrivileges= do); returns the process."""
    bounding = "-all," + ",".join("+" + c.lower()[4:] for c in caps)
    return subprocess.Popen(["setpriv", "--bounding-set", bounding, "--no-new-privs", binary,
                             "run", "-c", conf], stdout=log, stderr=subprocess.STDOUT)


def wait_for(path, pattern, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = open(path).read()
        if re.search(pattern, text) or proc.poll() is not None:
            return text
        time.sleep(0.05)
    return open(path).read()


def test_the_units_capabilities_are_enough_to_start_and_each_is_needed(usr, tmp_path):
    unit = open(os.path.join(usr, "usr/lib/systemd/system/mxgate.service")).read()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    assert "CAP_NET_BIND_SERVICE" in caps
    # as tmpfiles.d leaves them: the spool and the Maildir base empty, 0700, owned by the
    # run user (nobody stands in for mxgate); the path to them is open to it
    os.chmod(str(tmp_path), 0o755)
    port = free_low_port()
    conf = tmp_path / "mxgate.conf"
    conf.write_text('hostname = "mx.example.test"\nspool = "%s/spool"\nuser = "nobody"\n'
                    'accepted-domains = { "example.test" }\n'
                    'deliver {\n  maildir = "%s/mail/%%d/%%u"\n}\n'
                    'connector "Loopback" {\n  usage = internet\n  auth-mechanism = { none }\n'
                    '  bindings = { "127.0.0.1:%d" }\n  remote-ip-ranges = { "127.0.0.0/8" }\n}\n'
                    % (tmp_path, tmp_path, port))
    binary = os.path.join(usr, "usr/sbin/mxgate")

    def fresh_dirs():
        for d in ("spool", "mail"):
            shutil.rmtree(str(tmp_path / d), ignore_errors=True)
            os.mkdir(str(tmp_path / d), 0o700)
            shutil.chown(str(tmp_path / d), "nobody", "nogroup")

    # the whole set: it starts, takes a message and delivers it as the unit would
    fresh_dirs()
    logpath = str(tmp_path / "full.log")
    with open(logpath, "w") as log:
        proc = start_bounded(binary, str(conf), caps, log)
    try:
        text = wait_for(logpath, r"ready:", proc)
        assert proc.poll() is None and "ready:" in text, text
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@remote.example", ["user@example.test"],
                       "Subject: caps\r\n\r\nbounded\r\n")
        text = wait_for(logpath, r"delivered by maildir", proc)
        assert "1 delivered" in text, text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, open(logpath).read()
    assert glob.glob(str(tmp_path / "mail/example.test/user/new/*"))
    # each one taken away: the start fails, and the log says what was refused
    for cap in caps:
        fresh_dirs()
        logpath = str(tmp_path / ("without-%s.log" % cap))
        with open(logpath, "w") as log:
            proc = start_bounded(binary, str(conf), [c for c in caps if c != cap], log)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)
            pytest.fail("started without %s:\n%s" % (cap, open(logpath).read()))
        text = open(logpath).read()
        assert proc.returncode == 1 and ("Permission denied" in text or
                                         "Operation not permitted" in text), (cap, text)


def test_installed_binary_finds_the_presets_of_its_own_prefix(tmp_path):
    # `make` first, as a user would: build/release/mxgate is compiled for /usr/local
    make("build/release/mxgate")
    listed = {}
    for prefix in ("/opt/mxgate-test", "/opt/mxgate-test2"):
        dest = str(tmp_path / prefix.rsplit("/", 1)[1])
        make("install", "DESTDIR=" + dest, "PREFIX=" + prefix)
        assert os.path.exists(dest + prefix + "/share/mxgate/providers/google.conf")
        # only this install's tree is at /opt: the binary must look there and only there
        cp = in_namespace('mount --bind "%s/opt" /opt\n%s/sbin/mxgate providers\n'
                          % (dest, prefix))
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert cp.stderr == ""
        listed[prefix] = re.findall(r"^([a-z0-9-]+)\s+(?:ready|unverified)\s", cp.stdout, re.M)
        assert sorted(listed[prefix]) == [n[:-5] for n in repo_files("providers/*.conf")]
        # MXGATE_PROVIDERS_DIR overrides the compiled-in directory
        own = tmp_path / "own-presets"
        own.mkdir(exist_ok=True)
        shutil.copy(os.path.join(ROOT, "providers", "google.conf"), str(own))
        cp = in_namespace('mount --bind "%s/opt" /opt\n'
                          'MXGATE_PROVIDERS_DIR="%s" %s/sbin/mxgate providers\n'
                          % (dest, own, prefix))
        assert cp.returncode == 0, cp.stderr
        assert re.findall(r"^([a-z0-9-]+)\s+(?:ready|unverified)\s", cp.stdout, re.M) == \
            ["google"]
    # with its presets gone, the binary names the directory it was built for
    dest = str(tmp_path / "mxgate-test2")
    shutil.rmtree(dest + "/opt/mxgate-test2/share/mxgate/providers")
    cp = in_namespace('mount --bind "%s/opt" /opt\n/opt/mxgate-test2/sbin/mxgate providers || '
                      'echo "rc=$?"\n' % dest)
    assert "cannot read /opt/mxgate-test2/share/mxgate/providers" in cp.stderr, cp.stderr
    assert "rc=1" in cp.stdout


INSTALL_SYSTEM = r'''
# a private /etc (a copy), /var and /opt: what the install writes stays in this namespace
mount --bind "{tmp}/etc" /etc
test -e /etc/.mxgate-install-test       # never go on against the machine's own /etc
# the checkout stays reachable under the tmpfs mounts below, even when it lives in /var or /opt
mkdir /etc/.mxgate-checkout
mount --bind "{root}" /etc/.mxgate-checkout
mount -t tmpfs tmpfs /var
mount -t tmpfs tmpfs /opt
for f in passwd group shadow gshadow; do sed -i '/^mxgate:/d' /etc/$f; done
make --no-print-directory -C /etc/.mxgate-checkout install PREFIX=/opt/mxgate-sys {extra} >/dev/null
echo "user $(getent passwd mxgate)"
echo "group $(getent group mxgate)"
stat -c 'dir %n %a %U %G' /var/spool/mxgate /var/mail/mxgate
test -x /opt/mxgate-sys/sbin/mxgate && echo "binary ok"
make --no-print-directory -C /etc/.mxgate-checkout uninstall PREFIX=/opt/mxgate-sys >/dev/null
echo "left $(find /opt -type f | wc -l) files"
stat -c 'kept %n' /var/spool/mxgate /var/mail/mxgate
'''


@pytest.mark.parametrize("how", ["systemd", "adduser"])
def test_install_without_destdir_makes_the_user_and_the_spool(tmp_path, how):
    """`make install` on a machine: with systemd-sysusers it runs the sysusers.d and
    tmpfiles.d pair; without it (SYSTEMD_SYSUSERS= empty stands for a machine without
    systemd) it calls adduser and install -d itself."""
    assert os.geteuid() == 0
    etc = str(tmp_path / "etc")
    shutil.copytree("/etc", etc, symlinks=True)
    open(os.path.join(etc, ".mxgate-install-test"), "w").close()
    extra = "SYSTEMD_SYSUSERS=" if how == "adduser" else ""
    cp = in_namespace(INSTALL_SYSTEM.format(tmp=tmp_path, root=ROOT, extra=extra))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = cp.stdout
    u = re.search(r"^user (mxgate:x:(\d+):(\d+):[^:]*:([^:]*):(\S*))$", out, re.M)
    assert u, out
    assert int(u.group(2)) < 1000 and u.group(5).endswith(("nologin", "false")), out
    assert u.group(4) == "/var/spool/mxgate", out
    assert re.search(r"^group mxgate:x:%s:" % u.group(3), out, re.M), out
    for d in ("/var/spool/mxgate", "/var/mail/mxgate"):
        assert "dir %s 700 mxgate mxgate" % d in out, out
        assert "kept " + d in out, "uninstall keeps the spool and the mail"
    assert "binary ok" in out and "left 0 files" in out, out
    # and the machine's /etc was not touched
    assert not os.path.exists("/etc/.mxgate-install-test")


def test_uninstall_removes_what_install_put_in_place(tmp_path):
    dest = str(tmp_path / "dest")
    make("install", "DESTDIR=" + dest, "PREFIX=/usr")
    make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr")
    files = [p for p, m in tree(dest).items() if not os.path.isdir(os.path.join(dest, p))]
    assert files == []
    assert not os.path.exists(os.path.join(dest, "usr/share/mxgate"))
    assert not os.path.exists(os.path.join(dest, "usr/share/doc/mxgate"))
