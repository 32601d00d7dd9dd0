"""Exchange's IPv6 exemption (2013 on): tarpitting and the per-source connection limits
apply only to global IPv6 sources; link-local and site-local ones cannot come from the
internet and are exempt.  Run in a namespace of its own with a site-local and a global
address on lo, so both are real sources of real connections."""
import os
import subprocess
import time

import pytest

from test_firewall_probe import NamespacedDaemon, require_root, run

SITE = "fec0::7"       # site-local (fec0::/10)
GLOBAL = "2001:db8::7"  # documentation prefix, treated as global


@pytest.fixture
def v6ns():
    require_root()
    name = f"mxgate-v6-{os.getpid()}-{time.monotonic_ns() % 100000}"
    run(["ip", "netns", "add", name], check=True)
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for a in (SITE, GLOBAL):
            run(["ip", "-n", name, "addr", "add", f"{a}/128", "dev", "lo", "nodad"], check=True)
        yield name
    finally:
        run(["ip", "netns", "del", name])


CLIENT = r"""
import socket, sys, time
src, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks, answers = [], []
for i in range(n):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect((src, port))
    socks.append(s)
    answers.append(s.recv(512).decode(errors="replace").split("\r\n")[0][:3])
print(" ".join(answers))
"""


def test_per_source_limit_exempts_site_local_but_not_global_sources(v6ns):
    d = NamespacedDaemon(v6ns)
    try:
        d.configure(f"""
            connector "v6" {{
              usage = custom
              permission-groups = {{ anonymous-users }}
              bindings = {{ "[::]:{{port}}" }}
              remote-ip-ranges = {{ "{SITE}", "{GLOBAL}" }}
              max-inbound-connection-per-source = 2
              tarpit-interval = 0s
            }}
        """, tls=False)
        d.start()
        site = subprocess.run(["ip", "netns", "exec", v6ns, "/usr/bin/python3", "-c", CLIENT,
                               SITE, str(d.port), "4"], capture_output=True, text=True,
                              timeout=30)
        assert site.returncode == 0, site.stderr
        assert site.stdout.split() == ["220"] * 4, site.stdout
        glob = subprocess.run(["ip", "netns", "exec", v6ns, "/usr/bin/python3", "-c", CLIENT,
                               GLOBAL, str(d.port), "4"], capture_output=True, text=True,
                              timeout=30)
        assert glob.returncode == 0, glob.stderr
        assert glob.stdout.split() == ["220", "220", "421", "421"], glob.stdout
        d.wait_log(r"per-source limit")
        d.stop()
    finally:
        d.cleanup()
