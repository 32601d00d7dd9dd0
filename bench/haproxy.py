#!/usr/bin/python3
"""mxgate behind HAProxy (issue 14): one node direct, one node behind HAProxy, two nodes
behind HAProxy (roundrobin, send-proxy-v2), on loopback.

Each scenario starts fresh daemons (tests/e2e/daemon.py: their own spool and Maildir in a
temporary directory) and, when asked, a private HAProxy (tests/e2e/haproxy.py) that
connects from BALANCER, the daemons' proxy-protocol-from.  Postfix's smtp-source sends
BENCH_MESSAGES messages of BENCH_SIZE bytes over BENCH_SESSIONS parallel sessions, one
message a session (so roundrobin spreads them).  The figure is messages accepted (250)
per second of smtp-source's run; the scenario then waits until every message is in a
Maildir exactly once, else it is FAILED (exit status 1).  Each scenario runs
BENCH_REPEAT times and the median is printed.

    BENCH_MESSAGES=2000 BENCH_SESSIONS=10 BENCH_SIZE=1024 BENCH_REPEAT=3 \\
        MXGATE_BIN=build/release/mxgate /usr/bin/python3 bench/haproxy.py

The whole run is short (seconds per scenario): a figure for a document, not a soak test.
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "e2e"))
from daemon import Daemon  # noqa: E402
from haproxy import HAProxy  # noqa: E402

BALANCER = "127.0.0.10"
N = int(os.environ.get("BENCH_MESSAGES", "2000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "10"))
SIZE = int(os.environ.get("BENCH_SIZE", "1024"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))


def node():
    d = Daemon()
    d.configure(top=f'proxy-protocol-from = {{ "{BALANCER}" }}\n', connectors="""
        connector "Bench" {
          usage = internet
          bindings = { "127.0.0.1:{port}" }
          remote-ip-ranges = { "127.0.0.1" }
          tarpit-interval = 0s
          max-inbound-connection-per-source = unlimited
        }
    """)
    d.start()
    return d


def delivered(nodes):
    total = 0
    for d in nodes:
        for sub in ("new", "cur"):
            p = os.path.join(d.maildir(), sub)
            total += len(os.listdir(p)) if os.path.isdir(p) else 0
    return total


def run(n_nodes, balanced):
    nodes = [node() for _ in range(n_nodes)]
    hp = None
    try:
        port = nodes[0].port
        if balanced:
            hp = HAProxy(servers=[("127.0.0.1", d.port) for d in nodes], send_proxy="v2",
                         backend_extra=f"source {BALANCER}\nbalance roundrobin\n").start()
            port = hp.port
        t0 = time.monotonic()
        r = subprocess.run(["smtp-source", "-s", str(SESSIONS), "-m", str(N), "-l", str(SIZE),
                            "-f", "bench@remote.example", "-t", "user@example.test",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600)
        secs = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"smtp-source: {r.stdout}{r.stderr}")
        deadline = time.time() + 120
        while delivered(nodes) < N and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        got = delivered(nodes)
        if got != N:
            raise RuntimeError(f"{got} messages delivered of {N}")
        share = [delivered([d]) for d in nodes]
        return N / secs, share
    finally:
        if hp:
            hp.cleanup()
        for d in nodes:
            d.stop()
            d.cleanup()


def main():
    scenarios = [("one node, direct", 1, False), ("one node behind HAProxy", 1, True),
                 ("two nodes behind HAProxy", 2, True)]
    print(f"# mxgate behind HAProxy: {N} messages of {SIZE} bytes, {SESSIONS} sessions, "
          f"one message a session, median of {REPEAT}; {os.cpu_count()} CPUs\n")
    print("| scenario | msgs/s (median) | runs | split over the nodes (last run) |")
    print("|---|---|---|---|")
    failed = False
    for name, n, balanced in scenarios:
        rates, share = [], []
        try:
            for _ in range(REPEAT):
                rate, share = run(n, balanced)
                rates.append(rate)
        except Exception as e:  # noqa: BLE001  a scenario that did not do the work
            print(f"| {name} | FAILED: {e} | | |")
            failed = True
            continue
        print(f"| {name} | {statistics.median(rates):.0f} | "
              f"{', '.join(f'{r:.0f}' for r in rates)} | {' / '.join(map(str, share))} |",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
