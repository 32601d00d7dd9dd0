"""`mxgate check`, `mxgate which`, `mxgate reference`: exit codes and what users read."""
import os
import re
import subprocess

from conftest import BIN

EXCHANGE_EXAMPLE = """
    hostname = "mx.example.test"
    accepted-domains = { "example.test" }
    connector "Default Frontend" {
      usage = custom
      permission-groups = { anonymous-users }
      bindings = { "0.0.0.0:25", "[::]:25" }
      remote-ip-ranges = { "0.0.0.0-255.255.255.255" }
    }
    connector "Subnet" {
      usage = custom
      permission-groups = { anonymous-users }
      bindings = { "0.0.0.0:25" }
      remote-ip-ranges = { "192.168.1.0-192.168.1.255" }
    }
    connector "One host" {
      usage = internal
      auth-mechanism = { none }
      bindings = { "0.0.0.0:25" }
      remote-ip-ranges = { "192.168.1.75" }
    }
"""


def test_check_ok_prints_summary_per_connector(mxgate, write_conf):
    conf = write_conf(EXCHANGE_EXAMPLE)
    r = mxgate("check", "-c", conf)
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "configuration OK"
    assert len(lines) == 4
    assert lines[1].startswith('connector "Default Frontend": custom, bindings 0.0.0.0:25 [::]:25')
    assert "permissions exchange-servers" in lines[3]
    # the whole-internet anonymous connector is only a warning
    assert re.search(r"mxgate.conf:7: warning: .*opens the server to anyone", r.err)

    # no user key: as root (the CI, mxgate.service's ExecStartPre) `run` would refuse,
    # so check says so; as anyone else it would run, and check says nothing
    if os.geteuid() == 0:
        assert "warning: no user key: started as root" in r.err, r.err
    conf = write_conf('user = "nobody"\n' + EXCHANGE_EXAMPLE)
    r = mxgate("check", "-c", conf)
    assert r.rc == 0 and "no user key" not in r.err, r.err


def test_which_exchange_documented_example(mxgate, write_conf):
    conf = write_conf(EXCHANGE_EXAMPLE)
    for remote, want in (("192.168.1.75", "One host"), ("192.168.1.100", "Subnet"),
                         ("10.0.0.1", "Default Frontend")):
        r = mxgate("which", "-c", conf, "10.0.0.5:25", remote)
        assert (r.rc, r.out) == (0, want + "\n"), (remote, r.out, r.err)


def test_which_none_exits_3(mxgate, write_conf):
    conf = write_conf(EXCHANGE_EXAMPLE)
    r = mxgate("which", "-c", conf, "10.0.0.5:2525", "10.0.0.1")
    assert (r.rc, r.out) == (3, "none\n")
    # "0.0.0.0-255.255.255.255" is IPv4 only, as in Exchange: IPv6 clients find nothing
    r = mxgate("which", "-c", conf, "[::1]:25", "2001:db8::1")
    assert (r.rc, r.out) == (3, "none\n")
    assert "has no IPv6 range: binding [::]:25 takes no client" in r.err


def test_which_verbose_explains(mxgate, write_conf):
    conf = write_conf(EXCHANGE_EXAMPLE)
    r = mxgate("which", "-v", "-c", conf, "10.0.0.5:25", "192.168.1.100")
    assert r.rc == 0
    assert 'candidate "Default Frontend" (wildcard binding): smallest containing range 0.0.0.0/0' in r.out
    assert 'candidate "Subnet" (wildcard binding): smallest containing range 192.168.1.0/24 (/24)' in r.out
    assert 'candidate "One host" (wildcard binding): no range contains 192.168.1.100' in r.out
    assert 'selected "Subnet"' in r.out
    assert r.out.rstrip().endswith("Subnet")


def test_which_usage_errors_exit_2(mxgate, write_conf):
    conf = write_conf(EXCHANGE_EXAMPLE)
    assert mxgate("which", "-c", conf, "10.0.0.5", "1.2.3.4").rc == 2
    assert mxgate("which", "-c", conf, "10.0.0.5:25", "not-an-ip").rc == 2
    assert mxgate("which", "-c", conf, "10.0.0.5:25").rc == 2
    assert mxgate("check", "-c", conf, "extra").rc == 2
    assert mxgate("check", "-x").rc == 2
    assert mxgate("frobnicate").rc == 2
    assert mxgate().rc == 2


def test_check_reports_every_error_with_file_and_line(mxgate, write_conf):
    conf = write_conf("""
        hostname = "mx.example.test"
        max-mesage-size = 10
        connector "A" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
          remote-ip-ranges = { "10.0.0.0/33", "10.0.0.0/16" }
          banner = "250 nope"
        }
        connector "B" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
          remote-ip-ranges = { "10.0.128.0-10.1.0.255" }
          connection-timeout = 1m
        }
    """)
    r = mxgate("check", "-c", conf)
    assert r.rc == 1
    assert r.out == ""
    errors = [l for l in r.err.splitlines() if ": error: " in l]
    assert len(errors) == 5, r.err
    for line_no, text in ((2, "unknown key 'max-mesage-size'"), (7, "prefix length 33"),
                          (8, "must start with \"220 \""), (14, "partly overlaps"),
                          (15, "connection-timeout (60s) must be above")):
        assert any(e.startswith(f"{conf}:{line_no}: error: ") and text in e for e in errors), \
            (line_no, text, r.err)
    assert r.err.rstrip().endswith("5 errors; the configuration was not accepted")


def test_check_missing_file(mxgate, tmp_path):
    r = mxgate("check", "-c", str(tmp_path / "nope.conf"))
    assert r.rc == 1
    assert "cannot read the configuration" in r.err


def test_reference_and_version(mxgate):
    r = mxgate("reference")
    assert r.rc == 0 and "| `max-inbound-connection-per-source` |" in r.out
    r = mxgate("version")
    assert r.rc == 0 and re.match(r"mxgate \d+\.\d+\.\d+\n$", r.out)


def test_docs_config_md_is_the_reference(mxgate):
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "CONFIG.md")
    with open(path) as f:
        assert f.read() == mxgate("reference").out, \
            "docs/CONFIG.md is stale: run `mxgate reference > docs/CONFIG.md`"


def test_check_refuses_a_certificate_and_key_that_do_not_belong_together(mxgate, tmp_path):
    """The pair is loaded where it is used: `check` loads it as the daemon will, and the
    error points at the certificate's line."""
    for name in ("a", "b"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", str(tmp_path / f"{name}.key"), "-out",
                        str(tmp_path / f"{name}.pem"), "-subj", f"/CN={name}.example"],
                       check=True, capture_output=True)
        os.chmod(tmp_path / f"{name}.key", 0o600)
    conf = tmp_path / "mxgate.conf"
    conf.write_text('hostname = "mx.example.test"\n'
                    'accepted-domains = { "example.test" }\n'
                    'tls {\n'
                    '  certificate = "a.pem"\n'
                    '  key = "b.key"\n'
                    '}\n'
                    'connector "c" {\n'
                    '  usage = internet\n'
                    '  bindings = { "127.0.0.1:2525" }\n'
                    '  remote-ip-ranges = { "127.0.0.2" }\n'
                    '}\n')
    r = mxgate("check", "-c", str(conf))
    assert r.rc == 1, r.out + r.err
    assert re.search(r"mxgate\.conf:4: error: .*(key|certificate)", r.err), r.err
    conf.write_text(conf.read_text().replace("b.key", "a.key"))
    r = mxgate("check", "-c", str(conf))
    assert r.rc == 0, r.out + r.err


def test_every_command_has_its_help(mxgate):
    """`mxgate COMMAND --help` (and -h) prints that command's usage on stdout and exits 0,
    for every command `mxgate help` lists; before, it was "unknown option"."""
    r = mxgate("help")
    assert r.rc == 0
    commands = re.findall(r"^  mxgate (\w+)", r.out, re.M)
    assert {"run", "check", "which", "queue", "firewall", "probe"} <= set(commands), r.out
    for cmd in commands:
        for flag in ("--help", "-h"):
            h = mxgate(cmd, flag)
            assert h.rc == 0, (cmd, flag, h.out, h.err)
            assert h.out.startswith(f"usage: mxgate {cmd}"), (cmd, h.out)
            assert "exit status: 0 success" in h.out and h.err == "", (cmd, h.out, h.err)
    assert "3 no connector" in mxgate("which", "--help").out
    # after "--" it is an argument like any other
    assert mxgate("which", "--", "--help").rc == 2


def test_tls_errors_name_the_real_cause(mxgate, tmp_path):
    """A certificate and key given the wrong way round say so, instead of OpenSSL's
    "PEM lib"; an unreadable key names the OS error, not "system lib"."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"),
                    "-subj", "/CN=mx.example.test"], check=True, capture_output=True)
    os.chmod(tmp_path / "k.pem", 0o600)
    conf = tmp_path / "mxgate.conf"
    base = ('hostname = "mx.example.test"\naccepted-domains = { "example.test" }\n'
            'tls {\n  certificate = "%s"\n  key = "%s"\n}\n'
            'connector "c" {\n  usage = internet\n  bindings = { "127.0.0.1:2525" }\n'
            '  remote-ip-ranges = { "127.0.0.2" }\n}\n')
    conf.write_text(base % ("k.pem", "c.pem"))
    os.chmod(tmp_path / "c.pem", 0o600)
    r = mxgate("check", "-c", str(conf))
    assert r.rc == 1 and "swapped" in r.err and "PEM lib" not in r.err, r.err
    conf.write_text(base % ("c.pem", "k.pem"))
    os.chmod(tmp_path / "c.pem", 0o644)
    # a key the checking user cannot read: run as nobody (the CI runs as root)
    os.chmod(tmp_path, 0o755)
    os.chmod(conf, 0o644)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        BIN, "check", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
    assert "system lib" not in r.stderr, r.stderr
    # a key of another certificate: said in words, not OpenSSL's "key values mismatch"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(tmp_path / "k2.pem"), "-out", str(tmp_path / "c2.pem"),
                    "-subj", "/CN=other.example.test"], check=True, capture_output=True)
    os.chmod(tmp_path / "k2.pem", 0o600)
    conf.write_text(base % ("c.pem", "k2.pem"))
    r = mxgate("check", "-c", str(conf))
    assert r.rc == 1 and "does not match the certificate" in r.err, r.err


def test_reference_man_is_lint_clean_and_has_every_key(mxgate, tmp_path):
    """mxgate.conf(5) comes from the same table as the Markdown reference: every key
    `mxgate reference` lists is in it, and mandoc finds nothing to warn about."""
    r = mxgate("reference", "--man")
    assert r.rc == 0, r.err
    page = tmp_path / "mxgate.conf.5"
    page.write_text(r.out)
    lint = subprocess.run(["mandoc", "-T", "lint", "-W", "warning", str(page)],
                          capture_output=True, text=True)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, ""), lint.stdout + lint.stderr
    keys = re.findall(r"^\| `([a-z0-9-]+)` \|", mxgate("reference").out, re.M)
    assert len(keys) >= 40, keys
    for key in keys:
        assert re.search(r"^\.It Ic %s Ar " % re.escape(key), r.out, re.M), key
    assert ".Xr mxgate 8" in r.out and ".Sh FILES" in r.out
    assert mxgate("reference", "--man", "extra").rc == 2


def test_man_page_is_the_reference(mxgate):
    path = os.path.join(os.path.dirname(__file__), "..", "..", "man", "mxgate.conf.5")
    with open(path) as f:
        assert f.read() == mxgate("reference", "--man").out, \
            "man/mxgate.conf.5 is stale: run `make man/mxgate.conf.5`"


# ---- error messages that name the real cause (issue 12.4) ------------------------------

def one_connector(ranges):
    return f"""
    accepted-domains = {{ "example.test" }}
    connector "Filter" {{
      usage = custom
      permission-groups = {{ anonymous-users }}
      bindings = {{ "127.0.0.1:25" }}
      remote-ip-ranges = {{ {ranges} }}
    }}
"""


def test_preset_name_without_at_gets_a_did_you_mean(mxgate, write_conf):
    r = mxgate("check", "-c", write_conf(one_connector('"proofpoint"')))
    assert r.rc == 1
    assert ("bad remote range 'proofpoint': a provider preset is written with '@': did you "
            "mean '@proofpoint-essentials-eu' or '@proofpoint-essentials-us'?") in r.err
    r = mxgate("check", "-c", write_conf(one_connector('"Google"')))
    assert "did you mean '@google'?" in r.err
    # a plain bad range is not taken for a preset
    r = mxgate("check", "-c", write_conf(one_connector('"10.0.0.300"')))
    assert r.rc == 1 and "did you mean" not in r.err


def test_unknown_preset_names_the_closest(mxgate, write_conf):
    r = mxgate("check", "-c", write_conf(one_connector('"@proofpint-essentials-us"')))
    assert r.rc == 1
    assert ("unknown provider preset '@proofpint-essentials-us': did you mean "
            "'@proofpoint-essentials-us'?") in r.err
    r = mxgate("check", "-c", write_conf(one_connector('"@mimecast"')))
    assert "did you mean '@mimecast-au', '@mimecast-ca', " in r.err
    assert "'@mimecast-us' or '@mimecast-za'?" in r.err
    r = mxgate("check", "-c", write_conf(one_connector('"@nothing-like-it"')))
    assert r.rc == 1 and "unknown provider preset '@nothing-like-it' (in " in r.err
    assert "did you mean" not in r.err


def test_counts_are_singular_when_one(mxgate, write_conf):
    r = mxgate("check", "-c", write_conf(one_connector('"127.0.0.1"')))
    assert r.rc == 0, r.err
    assert "remote: 1 range (1 IPv4, 0 IPv6)" in r.out
    r = mxgate("check", "-c", write_conf(one_connector('"127.0.0.1", "::1"')))
    assert "remote: 2 ranges (1 IPv4, 1 IPv6)" in r.out
    r = mxgate("check", "-c", write_conf(one_connector('"bad"')))
    assert r.rc == 1 and "1 error; the configuration was not accepted" in r.err


# ---- mxgate config: the effective configuration (issue 12.4) ---------------------------

def test_config_prints_the_effective_configuration(mxgate, write_conf, tls_pair, tmp_path):
    ranges = tmp_path / "office.txt"
    ranges.write_text("10.1.0.0/16\n10.2.0.0/16\n# a comment\n")
    cert, key = tls_pair
    conf = write_conf(f"""
    hostname = "mx.example.test"
    accepted-domains = {{ "example.test" }}
    tls {{ certificate = "{cert}"
      key = "{key}" }}
    connector "From Proofpoint" {{
      usage = internet
      bindings = {{ "0.0.0.0:25" }}
      remote-ip-ranges = {{ "@proofpoint-essentials-us", "192.0.2.1" }}
      max-message-size = 50MB
    }}
    connector "Office" {{
      usage = internal
      bindings = {{ "0.0.0.0:2525" }}
      remote-ip-ranges = {{ "10.0.0.0/8" }}
      remote-ip-ranges-file = {{ "{ranges}" }}
      connection-timeout = 20m
    }}
""")
    r = mxgate("config", "-c", conf)
    assert r.rc == 0, r.err
    out = r.out
    assert 'hostname = "mx.example.test"' in out
    assert "spool =" not in out and "max-header-size" not in out   # defaults: only with --all
    proof = out[out.index('connector "From Proofpoint"'):out.index('connector "Office"')]
    assert "  auth-mechanism = { tls }  # from usage internet\n" in proof
    assert "  permission-groups = { anonymous-users }  # from usage internet\n" in proof
    assert '  bindings = { "0.0.0.0:25" }\n' in proof
    assert "  remote-ip-ranges: 13 ranges (13 IPv4, 0 IPv6)\n" in proof
    assert "    12 @proofpoint-essentials-us\n    1 inline\n" in proof
    assert "  max-message-size = 50MB\n" in proof
    office = out[out.index('connector "Office"'):]
    assert "permission-groups = { exchange-servers }  # from usage internal" in office
    assert "may relay to any domain" in office
    assert f"    1 inline\n    2 file {ranges}\n" in office
    assert "  connection-timeout = 20m\n" in office

    r = mxgate("config", "-c", conf, "--all")
    assert r.rc == 0, r.err
    assert 'spool = "/var/spool/mxgate"  # default' in r.out
    assert "  max-header-size = 256KB  # default\n" in r.out
    assert "  max-message-size = 50MB\n" in r.out                 # written: no mark
    assert "  message-rate-limit = unlimited  # default\n" in r.out
    assert "  tarpit-interval = 5s  # default\n" in r.out
    assert "# proxy-protocol-from: not set  # default\n" in r.out

    # the balancers that may name any client are shown, as every other top-level list is
    conf = write_conf('proxy-protocol-from = { "10.9.0.10", "10.9.1.0/24" }\n' +
                      one_connector('"192.0.2.0/24"'))
    r = mxgate("config", "-c", conf)
    assert r.rc == 0, r.err
    assert 'proxy-protocol-from = { "10.9.0.10/32", "10.9.1.0/24" }\n' in r.out, r.out


def test_config_refuses_a_bad_file_and_bad_arguments(mxgate, write_conf):
    r = mxgate("config", "-c", write_conf(one_connector('"proofpoint"')))
    assert r.rc == 1 and "1 error; the configuration was not accepted" in r.err
    assert r.out == ""
    conf = write_conf(one_connector('"127.0.0.1"'))
    assert mxgate("config", "-c", conf, "extra").rc == 2
    assert mxgate("config", "-c", conf, "--bogus").rc == 2
    r = mxgate("config", "-c", conf)
    assert "  remote-ip-ranges: 1 range (1 IPv4, 0 IPv6)\n    1 inline\n" in r.out


def test_check_refuses_the_directories_run_would_refuse(mxgate, write_conf, tmp_path):
    """A spool that is a file and a protocol-log directory every user may write: run
    refused them at start; check (and a reload) now say so, with the line."""
    (tmp_path / "spoolfile").write_text("")
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chmod(logs, 0o777)
    def check(spool):
        return mxgate("check", "-c", write_conf(f"""
            user = "nobody"
            spool = "{spool}"
            protocol-log-directory = "{logs}"
        """ + EXCHANGE_EXAMPLE))

    r = check(tmp_path / "spoolfile")
    assert r.rc == 1, r.out
    assert (f"mxgate.conf:2: error: spool {tmp_path / 'spoolfile'} is not a directory; "
            "point spool at a directory (mxgate makes it when it does not exist)") in r.err
    assert (f"mxgate.conf:3: error: protocol-log-directory {logs} is writable by every "
            "user; chmod o-w it") in r.err
    # fixed, and a spool not made yet: OK (run makes it)
    os.chmod(logs, 0o750)
    r = check(tmp_path / "spool-to-be")
    assert r.rc == 0, r.err
