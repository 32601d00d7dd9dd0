"""`mxgate providers` and the presets in use: the list, one preset, errors, and a config
that names a preset (`@NAME`), including the shipped etc/proofpoint-lockdown.conf."""
import os
import re
import shutil

from conftest import run_mxgate
from daemon import make_cert

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PROVIDERS = os.path.join(ROOT, "providers")

PROOFPOINT_US = ["67.231.144.0/24", "67.231.145.0/24", "67.231.146.0/24", "67.231.147.0/24",
                 "67.231.148.0/24", "67.231.149.0/24", "67.231.152.0/24", "67.231.153.0/24",
                 "67.231.154.0/24", "67.231.155.0/24", "67.231.156.0/24", "148.163.128.0/19"]


def listing(env=None):
    r = run_mxgate("providers", env=env)
    lines = r.out.splitlines()
    rows = {}
    for line in lines[1:]:
        name, status, confidence, date, n, source = line.split(None, 5)
        rows[name] = (status, confidence, date, int(n), source)
    return r, lines, rows


def test_list_names_every_preset_with_its_label():
    r, lines, rows = listing()
    assert r.rc == 0, r.err
    assert r.err == ""
    assert re.match(r"NAME +STATUS +CONFIDENCE +DATE +RANGES +SOURCE$", lines[0])
    files = sorted(f[:-5] for f in os.listdir(PROVIDERS) if f.endswith(".conf"))
    assert sorted(rows) == files
    assert rows["proofpoint-essentials-us"] == (
        "ready", "medium-high", "2023-06-13", 12,
        "https://vircomhelp.freshdesk.com/support/solutions/articles/"
        "48000859489-step-6-locking-down-o365-connections")
    assert rows["microsoft-eop"][:4] == ("ready", "high", "2023-07-31", 6)
    ready = {n for n, row in rows.items() if row[0] == "ready"}
    assert ready == {"proofpoint-essentials-us", "microsoft-eop", "google", "hornetsecurity",
                     "cloudflare-email-security"}
    for name, (status, confidence, date, n, source) in rows.items():
        assert status in ("ready", "unverified"), name
        assert confidence in ("high", "medium-high", "medium", "medium-low", "low",
                              "unverified"), name
        assert date == "undated" or re.match(r"\d{4}-\d\d-\d\d$", date), name
        assert n > 0 and re.match(r"(https?://|dns:)", source), name


def test_show_prints_the_preset_and_it_is_a_ranges_file(write_conf, tmp_path):
    r = run_mxgate("providers", "show", "proofpoint-essentials-us")
    assert r.rc == 0, r.err
    with open(os.path.join(PROVIDERS, "proofpoint-essentials-us.conf")) as f:
        assert r.out == f.read()
    assert "# provider: Proofpoint Essentials\n" in r.out
    assert "# confidence: medium-high\n# status: ready\n" in r.out
    ranges = [l for l in r.out.splitlines() if l and not l.startswith("#")]
    assert sorted(ranges) == sorted(PROOFPOINT_US)
    # what `show` prints is usable as it is
    (tmp_path / "pp.txt").write_text(r.out)
    conf = write_conf("""
        hostname = "mx.example.test"
        connector "PP" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
          remote-ip-ranges-file = "pp.txt"
        }
    """)
    r = run_mxgate("check", "-c", conf)
    assert r.rc == 0, r.err
    assert "remote: 12 ranges (12 IPv4, 0 IPv6)" in r.out


def test_show_unknown_or_bad_names_exit_1():
    for name in ("no-such-provider", "../etc/passwd", "Google", ""):
        r = run_mxgate("providers", "show", name)
        assert r.rc == 1, name
        assert r.out == ""
        assert f"no preset '{name}' in " in r.err and "`mxgate providers` lists them" in r.err
    # the name to type here is bare: no '@' as in a configuration
    r = run_mxgate("providers", "show", "proofpoint-essentials")
    assert r.rc == 1 and ("did you mean 'proofpoint-essentials-eu' or "
                          "'proofpoint-essentials-us'?") in r.err, r.err


def test_usage_errors_exit_2():
    assert run_mxgate("providers", "show").rc == 2
    assert run_mxgate("providers", "show", "a", "b").rc == 2
    r = run_mxgate("providers", "frobnicate")
    assert r.rc == 2 and "usage: mxgate providers" in r.err


def test_a_broken_preset_is_reported_with_its_line(tmp_path):
    d = tmp_path / "presets"
    d.mkdir()
    shutil.copy(os.path.join(PROVIDERS, "google.conf"), d / "good.conf")
    (d / "broken.conf").write_text(
        "# provider: X\n# region: Y\n# source: https://example.com/\n"
        "# source-date: undated\n# confidence: low\n# status: unverified\n"
        "192.0.2.0/24\n192.0.2.64/26\n")
    (d / "README.txt").write_text("not a preset\n")
    env = dict(os.environ, MXGATE_PROVIDERS_DIR=str(d))
    r, lines, rows = listing(env)
    assert r.rc == 1
    assert list(rows) == ["good"]
    assert f"{d}/broken.conf:8: 192.0.2.64/26 overlaps 192.0.2.0/24 of line 7" in r.err
    r = run_mxgate("providers", "show", "broken", env=env)
    assert r.rc == 1 and "overlaps" in r.err and r.out == ""


def test_a_config_names_a_preset(write_conf):
    conf = write_conf("""
        hostname = "mx.example.test"
        connector "Filtered" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25", "[::]:25" }
          remote-ip-ranges = { "@microsoft-eop", "@proofpoint-essentials-us", "192.0.2.1" }
        }
    """)
    r = run_mxgate("check", "-c", conf)
    assert r.rc == 0, r.err
    assert "remote: 19 ranges (17 IPv4, 2 IPv6)" in r.out
    r = run_mxgate("which", "-c", conf, "10.0.0.1:25", "67.231.152.10")
    assert (r.rc, r.out) == (0, "Filtered\n")
    r = run_mxgate("which", "-c", conf, "[2001:db8::1]:25", "2a01:111:f403::1")
    assert (r.rc, r.out) == (0, "Filtered\n")
    r = run_mxgate("which", "-c", conf, "10.0.0.1:25", "67.231.150.1")
    assert (r.rc, r.out) == (3, "none\n")

    conf = write_conf("""
        hostname = "mx.example.test"
        connector "Typo" {
          usage = custom
          permission-groups = { anonymous-users }
          bindings = { "0.0.0.0:25" }
          remote-ip-ranges = { "@proofpoint-essentials" }
        }
    """)
    r = run_mxgate("check", "-c", conf)
    assert r.rc == 1
    assert re.search(r"mxgate.conf:6: error: unknown provider preset '@proofpoint-essentials'",
                     r.err), r.err


def test_shipped_proofpoint_lockdown_config(tmp_path):
    """etc/proofpoint-lockdown.conf with only its machine paths changed: valid, locked to
    the preset, and every firewall format comes out of it without a warning."""
    cert, key = make_cert(str(tmp_path))
    with open(os.path.join(ROOT, "etc", "proofpoint-lockdown.conf")) as f:
        text = f.read()
    for old, new in (("/etc/mxgate/tls/fullchain.pem", cert), ("/etc/mxgate/tls/key.pem", key),
                     ("/var/spool/mxgate", str(tmp_path / "spool")),
                     ("/var/mail/mxgate/%d/%u", str(tmp_path / "mail/%d/%u")),
                     ('user = "mxgate"', 'user = "nobody"')):
        assert old in text, old
        text = text.replace(old, new)
    conf = tmp_path / "proofpoint-lockdown.conf"
    conf.write_text(text)
    r = run_mxgate("check", "-c", str(conf))
    assert r.rc == 0, r.err
    assert "warning" not in r.err
    assert re.search(r'connector "From Proofpoint Essentials US": internet, bindings 0.0.0.0:25, '
                     r"remote: 12 ranges \(12 IPv4, 0 IPv6\), auth tls, "
                     r"permissions anonymous-users", r.out), r.out
    for remote, want in (("67.231.152.10", 0), ("148.163.159.254", 0), ("67.231.150.1", 3),
                         ("198.51.100.10", 3)):
        assert run_mxgate("which", "-c", str(conf), "192.0.2.25:25", remote).rc == want, remote
    for fmt in ("nft", "iptables", "pf", "windows", "exchange"):
        r = run_mxgate("firewall", "-c", str(conf), "--format", fmt)
        assert r.rc == 0 and r.err == "", (fmt, r.err)
    r = run_mxgate("firewall", "-c", str(conf), "--format", "nft")
    assert "67.231.144.0-67.231.149.255,\n\t\t\t67.231.152.0-67.231.156.255,\n" \
           "\t\t\t148.163.128.0/19\n" in r.out
