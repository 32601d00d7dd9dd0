"""docs/LOCKDOWN.md as written: every configuration in it (its ```conf blocks) passes
`mxgate check`, starts, and reloads into itself, in a network namespace; the firewall
made from it, loaded the way the page says (the ```nft include line after Debian's
default /etc/nftables.conf), leaves `mxgate audit` nothing to find; and the `mxgate
which` lines of the page answer as their comments say."""
import os
import re

import pytest

from helpers_netns import (ROOT, NsDaemon, findings, fresh_presets, local_paths, mxgate, netns,
                           run)

DOC = os.path.join(ROOT, "docs", "LOCKDOWN.md")

# Debian 12's /etc/nftables.conf, as the nftables package installs it
DEBIAN_NFTABLES_CONF = """#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
"""


def blocks(lang):
    with open(DOC) as f:
        text = f.read()
    return re.findall(r"^```%s\n(.*?)^```$" % lang, text, re.M | re.S)


def test_the_page_has_its_blocks():
    assert len(blocks("conf")) == 4
    assert blocks("nft") == ['include "/etc/nftables.d/mxgate.nft"\n']


@pytest.fixture
def presets(monkeypatch):
    with fresh_presets() as directory:
        monkeypatch.setenv("MXGATE_PROVIDERS_DIR", directory)
        yield directory


@pytest.mark.parametrize("index", range(4))
def test_documented_config_checks_starts_reloads_and_audits_clean(index, presets, tmp_path):
    with netns() as ns:
        d = NsDaemon(ns)
        try:
            conf = d.write(local_paths(d, blocks("conf")[index]))
            r = mxgate(None, "check", "-c", conf)
            assert r.rc == 0 and "error" not in r.err, r.err
            d.start()
            d.reload()
            # the firewall, as the page loads it
            rules = tmp_path / "mxgate.nft"
            r = mxgate(None, "firewall", "-c", conf, "--format", "nft")
            assert r.rc == 0, r.err
            rules.write_text(r.out)
            main = tmp_path / "nftables.conf"
            main.write_text(DEBIAN_NFTABLES_CONF + blocks("nft")[0].replace(
                "/etc/nftables.d/mxgate.nft", str(rules)))
            run(["nft", "-f", str(main)], ns=ns, check=True)
            assert "table inet mxgate" in run(["nft", "list", "ruleset"], ns=ns).out
            r = mxgate(ns, "audit", "-c", conf)
            # a connector on the shared preset without a tenant proof gets an info line
            # (section 5 turns the proof on), which does not change the exit status
            text = blocks("conf")[index]
            proven = "tls-sender-certificate-name" in text or "remote-hostname-suffixes" in text
            left = [f for f in findings(r)
                    if proven or not f.startswith("info tenant-proof-missing: ")]
            assert (r.rc, left) == (0, []), r.out + r.err
            d.stop()
        finally:
            d.cleanup()


def test_documented_which_lines(presets, tmp_path):
    d = NsDaemon(None)
    try:
        conf = d.write(local_paths(d, blocks("conf")[0]))
        with open(DOC) as f:
            lines = re.findall(r"^(mxgate which .*?)(?:\s+# none: exit 3)?$", f.read(), re.M)
        assert len(lines) == 2, lines
        for line, want in zip(lines, (0, 3)):
            args = line.split()[1:]
            args = [conf if a == "/etc/mxgate/mxgate.conf" else a for a in args]
            r = mxgate(None, *args)
            assert r.rc == want, (line, r.out, r.err)
    finally:
        d.cleanup()
