#!/usr/bin/python3
"""mxgate and Postfix side by side, in one run, on loopback (issue 6).

Each scenario runs mxgate, then a Postfix instance configured to do the same work, each
from an empty directory on the real disk (BENCH_DIR), each stopped and removed afterwards.
It prints a table per scenario as it goes, then one combined table, also written to
build/bench/results.md.  A benchmark asserts nothing about speed, but a server that did not
do the work (messages missing from the Maildir, a session dropped, a client refused that
should not be) makes the scenario FAILED, and the run ends with exit status 1.

Scenarios (BENCH_SCENARIOS, default all): accept shed memory latency reload tls relay
relaytls cores.
Sizes (environment):
  BENCH_MESSAGES=20000 BENCH_SESSIONS=20 BENCH_SIZES="1024 65536"     accept
  BENCH_MODES="1 d" BENCH_REPEAT=3 BENCH_SETTLE=36 (seconds after each Postfix run)
  BENCH_TLS_MESSAGES=5000 BENCH_TLS_MODES="plain starttls"            tls (bench/tlsload;
                                            the mode bdat sends BDAT n LAST, RFC 3030)
  BENCH_RELAY_MESSAGES=5000 BENCH_RELAY_CONNECTIONS=4                  relay, relaytls
  BENCH_CORES="1 2" BENCH_CORES_MODES="starttls plain" BENCH_CORES_REPEAT=1   cores
  BENCH_CLIENT_CORE=1   tls, relay, relaytls with the load generator and the next hop
                        pinned to that core and each server (mxgate with as many workers)
                        to the others, as where the filtering service's machines are not
                        the gateway's: the client's TLS no longer takes the server's CPU
  BENCH_FLOOD_SECONDS=10 BENCH_FLOOD_WARMUP=2 BENCH_FLOOD_INFLIGHT=50   shed
  BENCH_IDLE=10000 BENCH_POSTFIX_PROCS=100                             memory
  BENCH_RATE=200 BENCH_LATENCY_SECONDS=20 BENCH_LATENCY_WARMUP=2       latency
  BENCH_RANGES=1000000 BENCH_RELOAD_SESSIONS=50 BENCH_RELOADS=3        reload
  BENCH_DIR=/var/tmp/mxgate-bench  BENCH_RESULTS=build/bench/results.md
  MXGATE_BIN=build/release/mxgate  BENCH_BIN=build/release/bench
Runs as root (Postfix needs it; mxgate starts as root and drops to nobody).
"""
import datetime
import fcntl
import os
import platform
import random
import re
import select
import socket
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servers import (RCPT, SENDER, BenchError, Mxgate, Postfix, SmtpSink, TlsSink,  # noqa
                     check_maildir_sizes, make_cert, proc_cpu_seconds, read_line,
                     proc_pss_kib, proc_rss_kib, stop_leftovers)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default, kind=int):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


ROOT = os.environ.get("BENCH_DIR") or "/var/tmp/mxgate-bench"
MXGATE_BIN = os.environ.get("MXGATE_BIN") or os.path.join(REPO, "build/release/mxgate")
BENCH_BIN = os.environ.get("BENCH_BIN") or os.path.join(REPO, "build/release/bench")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(REPO, "build/bench/results.md")
ALL = "accept shed memory latency reload tls relay relaytls cores"
SCENARIOS = (os.environ.get("BENCH_SCENARIOS") or ALL).split()

MESSAGES = env_num("BENCH_MESSAGES", 20000)
SESSIONS = env_num("BENCH_SESSIONS", 20)
SIZES = [int(x) for x in (os.environ.get("BENCH_SIZES") or "1024 65536").split()]
MODES = (os.environ.get("BENCH_MODES") or "1 d").split()   # 1: a message a connection; d: -d
REPEAT = env_num("BENCH_REPEAT", 3)                          # accept runs per server, median
SETTLE = env_num("BENCH_SETTLE", 36.0, float)                # pause after each Postfix
FLOOD_SECONDS = env_num("BENCH_FLOOD_SECONDS", 10.0, float)
FLOOD_WARMUP = env_num("BENCH_FLOOD_WARMUP", 2.0, float)
FLOOD_INFLIGHT = env_num("BENCH_FLOOD_INFLIGHT", 50)
IDLE = env_num("BENCH_IDLE", 10000)
POSTFIX_PROCS = env_num("BENCH_POSTFIX_PROCS", 100)
RATE = env_num("BENCH_RATE", 200.0, float)
LATENCY_SECONDS = env_num("BENCH_LATENCY_SECONDS", 20.0, float)
LATENCY_WARMUP = env_num("BENCH_LATENCY_WARMUP", 2.0, float)
RANGES = env_num("BENCH_RANGES", 1000000)
RELOAD_SESSIONS = env_num("BENCH_RELOAD_SESSIONS", 50)
RELOADS = env_num("BENCH_RELOADS", 3)
TLS_MESSAGES = env_num("BENCH_TLS_MESSAGES", 5000)
TLS_MODES = (os.environ.get("BENCH_TLS_MODES") or "plain starttls").split()
RELAY_MESSAGES = env_num("BENCH_RELAY_MESSAGES", 5000)
RELAY_CONNECTIONS = env_num("BENCH_RELAY_CONNECTIONS", 4)
CORES = [int(x) for x in (os.environ.get("BENCH_CORES") or "1 2").split()]
# the client's core (tlsload and the sinks), the servers on the rest; None: nothing pinned
CLIENT_CORE = os.environ.get("BENCH_CLIENT_CORE") or None
SERVER_CORES = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))
                        if str(c) != CLIENT_CORE) if CLIENT_CORE else None
CORES_MODES = (os.environ.get("BENCH_CORES_MODES") or "starttls plain").split()
CORES_REPEAT = env_num("BENCH_CORES_REPEAT", 1)

DENIED = "127.0.0.3"      # no mxgate connector covers it; postscreen drops it
CLIENT = "127.0.0.2"      # the usual allowed client
MARKER = "127.0.0.9"      # reload probe: allowed or refused depending on the config


def log(msg):
    print(msg, flush=True)


def sync():
    """Every run starts with clean page cache writeback, so no run pays for the last one."""
    os.sync()


def touch(path):
    with open(path, "w"):
        pass


def kib(n):
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


# ---- results -----------------------------------------------------------------------------

class Row:
    def __init__(self, scenario, figure, mx, pf, unit, better, note=""):
        self.scenario, self.figure, self.mx, self.pf = scenario, figure, mx, pf
        self.unit, self.better, self.note = unit, better, note

    def ratio(self):
        if not isinstance(self.mx, (int, float)) or not isinstance(self.pf, (int, float)):
            return "n/a"
        if self.pf == 0:
            return "n/a" if self.mx == 0 else "inf"
        return f"{self.mx / self.pf:.2f}x"


def fmt(v, unit):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if unit in ("msg/s", "conn/s", "tx", "tx/s"):
        return f"{v:,.0f}"
    if unit == "sessions":
        return f"{v:d}"
    if unit in ("µs/conn",):
        return f"{v:.1f}"
    if unit == "KiB":
        return f"{v:,.1f}"
    if unit == "MiB":
        return f"{v:,.1f}"
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if unit == "x":
        return f"{v:.2f}"
    return f"{v}"


def table(rows, with_scenario=False):
    head = (["scenario"] if with_scenario else []) + [
        "figure", "unit", "mxgate", "Postfix", "mxgate/Postfix", "better", "notes"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * (1 if with_scenario else 0) +
                            ["---", "---", "---:", "---:", "---:", "---", "---"]) + "|"]
    for r in rows:
        cells = ([r.scenario] if with_scenario else []) + [
            r.figure, r.unit, fmt(r.mx, r.unit), fmt(r.pf, r.unit), r.ratio(), r.better,
            r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ROWS = []
FAILED = []


def report(title, rows):
    ROWS.extend(rows)
    log(f"\n### {title}\n\n{table(rows)}\n")


# ---- helpers -----------------------------------------------------------------------------

def tool(name):
    path = os.path.join(BENCH_BIN, name)
    if not os.access(path, os.X_OK):
        raise BenchError(f"{path} is missing: build it with `make bench`")
    return path


def keyvals(line):
    out = {}
    for m in re.finditer(r'(\w+)=("([^"]*)"|\S+)', line):
        out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def mxgate(label, **conf):
    s = Mxgate(ROOT, MXGATE_BIN, label)
    s.configure(**conf)
    return s


def postfix(label, **conf):
    s = Postfix(ROOT, label)
    s.configure(**conf)
    return s


def client_pin():
    """The taskset prefix of the load generator and the next hop (BENCH_CLIENT_CORE)."""
    return ["taskset", "-c", CLIENT_CORE] if CLIENT_CORE else []


def split_server(kind, label, **conf):
    """mxgate or Postfix for the tls and relay scenarios: with BENCH_CLIENT_CORE, pinned to
    the other cores, mxgate with a worker for each."""
    if kind == "mxgate":
        if CLIENT_CORE:
            conf["workers"] = len(SERVER_CORES.split(","))
        srv = mxgate(f"mxgate-{label}", **conf)
    else:
        srv = postfix(f"postfix-{label}", **conf)
    srv.cpus = SERVER_CORES
    return srv


def pinning():
    """The words a report's title adds for BENCH_CLIENT_CORE."""
    return (f"; client and next hop on core {CLIENT_CORE}, the server on {SERVER_CORES} "
            "(taskset)") if CLIENT_CORE else ""


def run_server(server, body, settle=None):
    """Starts server from its empty directory, runs body(server), always stops and removes
    it.  Returns what body returns.  settle: seconds to wait afterwards (default: SETTLE
    after Postfix, 2 s after mxgate)."""
    sync()
    try:
        server.start()
        return body(server)
    finally:
        server.cleanup()
        # Postfix deletes a queue file per message.  ext4 without a journal steps over
        # every inode freed in the last 5 s (35 s while its inode-table block is dirty,
        # which the next server's creates make it) each time it allocates one: the next
        # server, whose new directories often land in the very block group just emptied,
        # would pay for those deletions.  They are this server's cost, not the next's.
        # (mxgate frees no inodes when delivering to Maildirs: envelope files are
        # recycled and the data lives on in the Maildir.)
        sync()
        if settle is None:
            settle = SETTLE if isinstance(server, Postfix) else 2.0
        time.sleep(settle)


def certs():
    """One certificate for both servers: mxgate's key belongs to nobody (it reads it after
    dropping privileges on reload), Postfix's to root."""
    d = os.path.join(ROOT, "tls")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    cert, key = make_cert(d)
    mxkey = os.path.join(d, "mxgate-key.pem")
    with open(key, "rb") as f, open(mxkey, "wb") as g:
        g.write(f.read())
    os.chmod(mxkey, 0o600)
    os.chown(mxkey, 65534, 65534)
    return (cert, mxkey), (cert, key)


# ---- 1. accepted mail --------------------------------------------------------------------

def smtp_source(server, size, reuse):
    cmd = ["smtp-source", "-s", str(SESSIONS), "-m", str(MESSAGES), "-l", str(size), "-f",
           SENDER, "-t", RCPT] + (["-d"] if reuse else []) + [f"127.0.0.1:{server.port}"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    t1 = time.time()
    if r.returncode != 0 or "fatal" in r.stderr or "warning" in r.stderr:
        raise BenchError(f"{server.name}: smtp-source failed ({r.returncode}): "
                         f"{r.stderr.strip()[:500]}")
    t_last = server.wait_delivered(MESSAGES, timeout=max(120.0, 10 * (t1 - t0)))
    got = server.delivered()
    if got != MESSAGES:
        raise BenchError(f"{server.name}: {got} messages in the Maildir, {MESSAGES} sent")
    short = check_maildir_sizes(server.maildir(), size)
    if short:
        raise BenchError(f"{server.name}: {short} delivered messages shorter than {size} B")
    return MESSAGES / (t1 - t0), t_last - t0


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def scenario_accept():
    """Each configuration REPEAT times, mxgate and Postfix alternating (a virtual disk's
    speed drifts; alternating spreads the drift over both), each from an empty
    directory; the median of the runs goes in the table and every run in the notes."""
    rows = []
    for size in SIZES:
        for mode in MODES:
            reuse = mode == "d"
            how = "many msgs/conn (-d)" if reuse else "1 msg/conn"
            label = f"{kib(size)}, {how}"
            res = {"mxgate": [], "postfix": []}
            for rep in range(REPEAT):
                for kind in ("mxgate", "postfix"):
                    srv = mxgate("mxgate-accept") if kind == "mxgate" else \
                        postfix("postfix-accept")
                    log(f"  accept {label}: {srv.name}, smtp-source -s {SESSIONS} "
                        f"-m {MESSAGES} -l {size}{' -d' if reuse else ''} "
                        f"(run {rep + 1}/{REPEAT})")
                    r = run_server(srv, lambda s: smtp_source(s, size, reuse))
                    res[kind].append(r)
                    log(f"    {r[0]:,.0f} msg/s at the client, last message in the "
                        f"Maildir after {r[1]:.2f} s")
            rate = {k: [r[0] for r in v] for k, v in res.items()}
            last = {k: [r[1] for r in v] for k, v in res.items()}

            def runs(xs, f):
                return " / ".join(f.format(x) for x in xs)
            rows.append(Row("accept", f"{label}: messages/s at the client",
                            median(rate["mxgate"]), median(rate["postfix"]), "msg/s",
                            "higher",
                            f"median of {REPEAT}; mxgate {runs(rate['mxgate'], '{:,.0f}')}; "
                            f"Postfix {runs(rate['postfix'], '{:,.0f}')}"))
            rows.append(Row("accept", f"{label}: last message in the Maildir",
                            median(last["mxgate"]), median(last["postfix"]), "s", "lower",
                            f"{MESSAGES} messages, from the client's start; mxgate "
                            f"{runs(last['mxgate'], '{:.2f}')}; Postfix "
                            f"{runs(last['postfix'], '{:.2f}')}"))
    report(f"1. Accepted mail: smtp-source -s {SESSIONS} -m {MESSAGES}, into a Maildir, "
           "fsync before 250", rows)


# ---- 2. shedding denied clients ----------------------------------------------------------

def flood(port, cpu_of, quit=False):
    cmd = [tool("flood")] + (["-q"] if quit else []) + ["-s", DENIED, "-c", str(FLOOD_INFLIGHT), "-w", str(FLOOD_WARMUP),
           "-d", str(FLOOD_SECONDS), f"127.0.0.1:{port}"]
    c0 = cpu_of()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=FLOOD_SECONDS * 3 + 60)
    c1 = cpu_of()
    if r.returncode != 0:
        raise BenchError(f"flood failed: {r.stderr.strip()} {r.stdout.strip()}")
    kv = keyvals(r.stdout)
    total = int(kv["total"])
    kv["cpu_us"] = (c1 - c0) / total * 1e6 if total else 0.0
    return kv


def scenario_shed():
    res = {}
    log(f"  shed: mxgate, {FLOOD_INFLIGHT} in flight from {DENIED}, {FLOOD_WARMUP:g} s warm-up "
        f"+ {FLOOD_SECONDS:g} s")
    res["mxgate"] = run_server(mxgate("mxgate-shed"), lambda s: flood(s.port, s.cpu_seconds))
    log(f"    {res['mxgate']}")
    if float(res["mxgate"]["bytes_per_conn"]) != 0:
        raise BenchError(f"mxgate sent bytes to the denied client: {res['mxgate']}")

    log("  shed: Postfix postscreen, access list rejects it, denylist action drop")
    res["postfix"] = run_server(postfix("postfix-shed", mode="postscreen"),
                                lambda s: flood(s.port, s.cpu_seconds))
    log(f"    {res['postfix']}")
    if not res["postfix"]["first_reply"].startswith("521"):
        raise BenchError(f"postscreen did not refuse the denied client: {res['postfix']}")

    log("  shed: Postfix smtpd, check_client_access rejects it at connect (554 banner; the "
        "client sends QUIT)")
    access = os.path.join(ROOT, "smtpd_client_access.cidr")
    with open(access, "w") as f:
        f.write(f"{DENIED}/32 REJECT\n")

    def smtpd_flood(s):
        return flood(s.port, s.cpu_seconds, quit=True)
    res["smtpd"] = run_server(postfix("postfix-shed-smtpd", client_access=access,
                                      process_limit=FLOOD_INFLIGHT + 10), smtpd_flood)
    log(f"    {res['smtpd']}")
    if not res["smtpd"]["first_reply"].startswith("554"):
        raise BenchError(f"smtpd did not refuse the denied client: {res['smtpd']}")

    log("  shed: bare accept-and-close loop")
    port = __import__("servers").free_port()
    loop = subprocess.Popen([tool("acceptloop"), f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            text=True)
    try:
        if loop.stdout.readline().strip() != "listening":
            raise BenchError("acceptloop did not start")
        res["loop"] = flood(port, lambda: proc_cpu_seconds(loop.pid))
    finally:
        loop.terminate()
        loop.wait(timeout=10)
    log(f"    {res['loop']}")

    mx, pf, sd, lp = (float(res[k]["rate"]) for k in ("mxgate", "postfix", "smtpd", "loop"))
    notes = {k: f"{res[k]['stalls']} stalled, {res[k]['connect_errors']} connect errors"
             for k in res}
    rows = [
        Row("shed", "denied connections/s vs Postfix smtpd refusing at connect", mx, sd,
            "conn/s", "higher",
            f"bare accept loop {lp:,.0f}/s; mxgate = {mx / lp * 100:.0f} % of it"),
        Row("shed", "denied connections/s vs Postfix postscreen (drop)", mx, pf, "conn/s",
            "higher", "postscreen: one event-driven process, Postfix's cheapest refusal"),
        Row("shed", "server CPU per denied connection vs smtpd", res["mxgate"]["cpu_us"],
            res["smtpd"]["cpu_us"], "µs/conn", "lower",
            f"bare accept loop {res['loop']['cpu_us']:.1f} µs; Postfix: every process of "
            "the instance"),
        Row("shed", "server CPU per denied connection vs postscreen", res["mxgate"]["cpu_us"],
            res["postfix"]["cpu_us"], "µs/conn", "lower"),
        Row("shed", "what the client got", "close, 0 B",
            f"smtpd {res['smtpd']['first_reply'][:20]}…; postscreen "
            f"{res['postfix']['first_reply'][:20]}…", "", "",
            f"mxgate {notes['mxgate']}; smtpd {notes['smtpd']}; postscreen "
            f"{notes['postfix']}"),
    ]
    report(f"2. Shedding a denied client: {FLOOD_INFLIGHT} connections in flight from "
           f"{DENIED}, {FLOOD_SECONDS:g} s after {FLOOD_WARMUP:g} s warm-up", rows)


# ---- 3. memory per connection ------------------------------------------------------------

def idle_sessions(server, n, tls, measure, naddrs):
    cmd = [tool("idleconns"), "-n", str(n), "-a", str(naddrs), "-b", "127.0.1.1"] + \
          (["-t"] if tls else []) + [f"127.0.0.1:{server.port}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 600)
        line = p.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            p.kill()
            raise BenchError(f"{server.name}: {n} idle sessions could not be set up "
                             f"({line.strip() or 'timeout'})")
        time.sleep(1.0)
        figures = measure()
        p.stdin.close()
        final = p.stdout.readline()
        rc = p.wait(timeout=60)
        if rc != 0:
            raise BenchError(f"{server.name}: the server closed idle sessions: {final.strip()}")
        figures["setup"] = keyvals(line).get("setup_seconds")
        return figures
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def mx_memory(server, tls):
    time.sleep(0.5)
    rss0 = server.rss_kib()

    def measure():
        return {"rss0": rss0, "rss1": server.rss_kib()}
    f = idle_sessions(server, IDLE, tls, measure, naddrs=max(1, IDLE // 2000 + 1))
    f["per_conn"] = (f["rss1"] - f["rss0"]) / IDLE
    return f


def pf_memory(server, tls):
    def measure():
        pids = server.smtpd_pids()
        if len(pids) != POSTFIX_PROCS:
            raise BenchError(f"Postfix: {len(pids)} smtpd processes for {POSTFIX_PROCS} "
                             "connections")
        return {"rss": sum(proc_rss_kib(p) for p in pids),
                "pss": sum(proc_pss_kib(p) for p in pids)}
    f = idle_sessions(server, POSTFIX_PROCS, tls, measure, naddrs=1)
    f["per_conn"] = f["rss"] / POSTFIX_PROCS
    f["pss_per_conn"] = f["pss"] / POSTFIX_PROCS
    return f


def scenario_memory():
    mxtls, pftls = certs()
    res = {}
    for tls in (False, True):
        what = "after STARTTLS" if tls else "plaintext"
        log(f"  memory {what}: mxgate, {IDLE} idle sessions")
        res[("mx", tls)] = run_server(mxgate("mxgate-memory", tls=mxtls),
                                      lambda s: mx_memory(s, tls))
        log(f"    {res[('mx', tls)]}")
        log(f"  memory {what}: Postfix, {POSTFIX_PROCS} idle sessions (its process limit)")
        res[("pf", tls)] = run_server(
            postfix("postfix-memory", tls=pftls, process_limit=POSTFIX_PROCS),
            lambda s: pf_memory(s, tls))
        log(f"    {res[('pf', tls)]}")
    rows = []
    for tls in (False, True):
        what = "after STARTTLS" if tls else "plaintext"
        mx, pf = res[("mx", tls)], res[("pf", tls)]
        rows.append(Row("memory", f"{what}: resident memory per idle connection",
                        mx["per_conn"], pf["per_conn"], "KiB", "lower",
                        f"mxgate: VmRSS growth {mx['rss0']:,} → {mx['rss1']:,} KiB over "
                        f"{IDLE:,} sessions; Postfix: VmRSS sum of {POSTFIX_PROCS} smtpd "
                        f"/ {POSTFIX_PROCS}"))
        rows.append(Row("memory", f"{what}: proportional (PSS) per idle connection",
                        mx["per_conn"], pf["pss_per_conn"], "KiB", "lower",
                        "Postfix PSS counts shared pages once; mxgate's figure is the same "
                        "RSS growth (all private)"))
    report(f"3. Memory per idle connection after the banner (mxgate {IDLE:,} sessions, "
           f"Postfix {POSTFIX_PROCS} = its process limit)", rows)


# ---- 4. latency --------------------------------------------------------------------------

def latency(server):
    cmd = [tool("latency"), "-r", str(RATE), "-d", str(LATENCY_SECONDS), "-w",
           str(LATENCY_WARMUP), "-l", "1024", "-s", CLIENT, "-f", SENDER, "-t", RCPT,
           f"127.0.0.1:{server.port}"]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=LATENCY_SECONDS + LATENCY_WARMUP + 180)
    if r.returncode != 0:
        raise BenchError(f"{server.name}: {r.stderr.strip()} {r.stdout.strip()}")
    kv = keyvals(r.stdout)
    total = int((LATENCY_WARMUP + LATENCY_SECONDS) * RATE)
    server.wait_delivered(total, timeout=120)
    if server.delivered() != total:
        raise BenchError(f"{server.name}: {server.delivered()} messages delivered, {total} sent")
    return kv


def scenario_latency():
    res = {}
    for kind in ("mxgate", "postfix"):
        srv = mxgate("mxgate-latency") if kind == "mxgate" else postfix("postfix-latency")
        log(f"  latency: {srv.name}, {RATE:g} transactions/s for {LATENCY_SECONDS:g} s")
        res[kind] = run_server(srv, latency)
        log(f"    {res[kind]}")
    mx, pf = res["mxgate"], res["postfix"]
    rows = []
    for key, name in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"),
                      ("max_ms", "max")):
        rows.append(Row("latency", f"{name} of a whole transaction", float(mx[key]),
                        float(pf[key]), "ms", "lower",
                        "connect → 221 after QUIT, from the scheduled start"
                        if name == "p50" else ""))
    rows.append(Row("latency", "p99 / p50", float(mx["p99_ms"]) / float(mx["p50_ms"]),
                    float(pf["p99_ms"]) / float(pf["p50_ms"]), "x", "lower",
                    f"{mx['count']} / {pf['count']} transactions recorded"))
    report(f"4. Latency: 1 KiB transactions (connect … QUIT), open loop at {RATE:g}/s for "
           f"{LATENCY_SECONDS:g} s", rows)


# ---- 5. reload with 1M ranges ------------------------------------------------------------

def gen_ranges(n, seed):
    """n random CIDR blocks, half IPv4 (/16–/32, mostly /24) and half IPv6 (/32–/128,
    mostly /48), as bench/rangeset generates them; none in 0/8 or 127/8, so they never
    overlap the benchmark connector's loopback ranges."""
    r = random.Random(seed)
    v4 = (16, 20, 22, 24, 24, 24, 24, 26, 28, 29, 32, 32)
    v6 = (32, 36, 40, 44, 48, 48, 48, 56, 64, 64, 128)
    out = []
    for _ in range(n):
        if r.getrandbits(1):
            p = r.choice(v4)
            while True:
                a = r.getrandbits(32) & (0xffffffff << (32 - p)) & 0xffffffff
                if a >> 24 not in (0, 127):
                    break
            out.append(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/{p}")
        else:
            p = r.choice(v6)
            a = (r.getrandbits(125) | (1 << 125)) & ((1 << 128) - (1 << (128 - p)))
            out.append(":".join(f"{(a >> s) & 0xffff:x}" for s in range(112, -16, -16)) +
                       f"/{p}")
    return out


class Sessions:
    """RELOAD_SESSIONS SMTP sessions from 127.0.0.2 that stay open across every reload.
    Per cycle each one opens a transaction and sends half the message (ready), finishes it
    once the reload has begun (go), then keeps sending whole transactions until stop."""

    def __init__(self, port, n, cycles):
        self.port, self.n = port, n
        self.go = [threading.Event() for _ in range(cycles)]
        self.stop = [threading.Event() for _ in range(cycles)]
        self.quit = threading.Event()
        self.cv = threading.Condition()
        self.ready = [0] * cycles
        self.done = [0] * cycles
        self.accepted = []            # time.time() of every 250 after the dot
        self.dropped = []             # (session, error)
        self.body = ("From: <%s>\r\nTo: <%s>\r\nSubject: reload\r\n\r\n" % (SENDER, RCPT) +
                     ("y" * 70 + "\r\n") * 13).encode()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()

    def wait(self, counter, cycle, timeout=60):
        deadline = time.time() + timeout
        with self.cv:
            while counter[cycle] + len(self.dropped) < self.n:
                left = deadline - time.time()
                if left <= 0:
                    raise BenchError(f"sessions stuck: {counter[cycle]} of {self.n} reached "
                                     f"cycle {cycle}")
                self.cv.wait(left)

    def bump(self, counter, cycle):
        with self.cv:
            counter[cycle] += 1
            self.cv.notify_all()

    def run(self, i):
        buf = b""
        s = None

        def reply(expect):
            nonlocal buf
            while True:
                while b"\r\n" not in buf:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise ConnectionError(f"closed by the server (waiting for {expect})")
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                if line[3:4] != b"-":
                    if not line.startswith(str(expect).encode()):
                        raise ConnectionError(f"expected {expect}, got {line!r}")
                    return

        def cmd(text, expect):
            s.sendall(text.encode() + b"\r\n")
            reply(expect)

        half = len(self.body) // 2
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=60,
                                         source_address=(CLIENT, 0))
            reply(220)
            cmd("EHLO reload.bench.example.test", 250)
            for c in range(len(self.go)):
                cmd(f"MAIL FROM:<{SENDER}>", 250)
                cmd(f"RCPT TO:<{RCPT}>", 250)
                cmd("DATA", 354)
                s.sendall(self.body[:half])
                self.bump(self.ready, c)
                self.go[c].wait()
                s.sendall(self.body[half:] + b".\r\n")
                reply(250)
                self.accepted.append(time.time())
                while not self.stop[c].is_set():
                    cmd(f"MAIL FROM:<{SENDER}>", 250)
                    cmd(f"RCPT TO:<{RCPT}>", 250)
                    cmd("DATA", 354)
                    s.sendall(self.body + b".\r\n")
                    reply(250)
                    self.accepted.append(time.time())
                self.bump(self.done, c)
            self.quit.wait()
            cmd("QUIT", 221)
        except Exception as e:  # a dropped session, whatever the cause
            with self.cv:
                self.dropped.append((i, str(e)))
                self.cv.notify_all()
        finally:
            if s:
                s.close()


def probe(port, want_banner, t_hup, timeout=120):
    """Connects from MARKER until the answer is the new configuration's: a 220 banner
    (want_banner) or a refusal (mxgate: closed without a byte; Postfix: a 554 greeting).
    Returns seconds since t_hup."""
    deadline = t_hup + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                          source_address=(MARKER, 0)) as s:
                data = read_line(s)
                t = time.time()
                got_banner = data.startswith(b"220")
                if got_banner:
                    s.sendall(b"QUIT\r\n")
        except ConnectionResetError:
            t, got_banner = time.time(), False
        if got_banner == want_banner:
            return t - t_hup
        time.sleep(0.005)
    raise BenchError(f"the new configuration did not serve {MARKER} within {timeout}s")


def log_time(line):
    ts = line.split(" ", 1)[0]
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def wait_log_line(path, offset, pattern, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path, errors="replace") as f:
            f.seek(offset)
            for line in f:
                if "reload refused" in line:
                    raise BenchError(f"mxgate refused the reload: {line.strip()}")
                if pattern in line:
                    return line
        time.sleep(0.01)
    raise BenchError(f"no '{pattern}' in the mxgate log within {timeout}s")


def reload_cycles(server, configs, apply, after_hup=None):
    """Runs len(configs) reloads with the sessions open; configs[i] = (want_banner, ...).
    apply(i) installs configuration i+1, then SIGHUP is sent.  Returns figures."""
    sess = Sessions(server.port, RELOAD_SESSIONS, len(configs))
    sess.start()
    served, logged, during, extra, settled, windows = [], [], [], [], [], []
    try:
        for c, want_banner in enumerate(configs):
            sess.wait(sess.ready, c)
            apply(c)
            offset = os.path.getsize(server.log_path()) if isinstance(server, Mxgate) else 0
            t_hup = time.time()
            server.reload()
            sess.go[c].set()
            served.append(probe(server.port, want_banner, t_hup))
            if isinstance(server, Mxgate):
                line = wait_log_line(server.log_path(), offset, "configuration reloaded")
                start = wait_log_line(server.log_path(), offset, "SIGHUP: reloading")
                logged.append((log_time(line) - t_hup, log_time(line) - log_time(start)))
            t_end = t_hup + max(served[-1], logged[-1][0] if logged else 0)
            if after_hup:
                extra.append(after_hup())
            time.sleep(0.3)
            sess.stop[c].set()
            sess.wait(sess.done, c)
            during.append(sum(1 for t in sess.accepted if t_hup <= t <= t_end))
            windows.append(t_end - t_hup)
            if after_hup:
                # the sessions that held the previous configuration have ended: what
                # stays is the new table alone
                settled.append(after_hup())
    finally:
        for e in sess.go + sess.stop:
            e.set()
        sess.quit.set()
        for t in sess.threads:
            t.join(timeout=60)
    total = len(sess.accepted)
    server.wait_delivered(total, timeout=120)
    if server.delivered() != total:
        raise BenchError(f"{server.name}: {server.delivered()} messages delivered, {total} "
                         "accepted during the reload scenario")
    return {"served": served, "logged": logged, "during": during, "extra": extra,
            "settled": settled, "windows": windows, "dropped": sess.dropped,
            "messages": total}


class _Reloadable:
    """Adds reload() to an Mxgate: SIGHUP to the daemon."""


def scenario_reload():
    log(f"  reload: generating two files of {RANGES:,} random CIDR ranges")
    work = os.path.join(ROOT, "ranges")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    files = {}
    for name, seed in (("a", 1), ("b", 2)):
        ranges = gen_ranges(RANGES, seed)
        plain, cidr = os.path.join(work, f"{name}.txt"), os.path.join(work, f"{name}.cidr")
        with open(plain, "w") as f:
            f.write("\n".join(ranges) + "\n")
        with open(cidr, "w") as f:
            if name == "a":        # table a refuses the marker client (first match)
                f.write(f"{MARKER}/32 REJECT reload marker\n")
            f.write(" OK\n".join(ranges) + " OK\n")
        os.chmod(plain, 0o644)
        os.chmod(cidr, 0o644)
        files[name] = (plain, cidr)
    del ranges
    # start small; then a (1M, marker refused), b (1M, marker served), a again...
    seq = ["a" if i % 2 == 0 else "b" for i in range(RELOADS)]
    want_banner = [name == "b" for name in seq]
    res = {}

    # mxgate: the marker is outside the benchmark connector in configuration a
    allowed = ('"127.0.0.1-127.0.0.2"', '"127.0.0.4-127.255.255.254"')
    refused = ('"127.0.0.1-127.0.0.2"', '"127.0.0.4-127.0.0.8"', '"127.0.0.10-127.255.255.254"')
    mx = Mxgate(ROOT, MXGATE_BIN, "mxgate-reload")
    mx.configure(log_level="info")

    def mx_apply(c):
        name = seq[c]
        mx.configure(log_level="info", ranges=refused if name == "a" else allowed,
                     extra=f'connector "Million" {{\n  usage = custom\n'
                           f'  permission-groups = {{ anonymous-users }}\n'
                           f'  bindings = {{ "127.0.0.1:{mx.port}" }}\n'
                           f'  remote-ip-ranges-file = "{files[name][0]}"\n}}\n')

    mx.reload = lambda: os.kill(mx.pid, __import__("signal").SIGHUP)
    rss = {}
    log(f"  reload: mxgate, {RELOAD_SESSIONS} sessions mid-transaction, {RELOADS} reloads")

    def mx_body(s):
        rss["start"] = s.rss_kib()
        return reload_cycles(s, want_banner, mx_apply, after_hup=s.rss_kib)
    res["mxgate"] = run_server(mx, mx_body)
    res["mxgate"]["rss_start"] = rss["start"]
    log(f"    {res['mxgate']}")

    pf = Postfix(ROOT, "postfix-reload")
    small = os.path.join(pf.etc, "small.cidr")
    with open(small, "w") as f:
        f.write("192.0.2.0/24 OK\n")
    pf.configure(client_access=small)

    def pf_apply(c):
        pf.set_main("smtpd_client_restrictions",
                    f"check_client_access cidr:{files[seq[c]][1]}")

    def pf_rss():
        return max((proc_rss_kib(p) for p in pf.smtpd_pids()), default=0)
    log(f"  reload: Postfix, {RELOAD_SESSIONS} sessions mid-transaction, {RELOADS} reloads "
        "(SIGHUP to the master, as `postfix reload`)")
    res["postfix"] = run_server(pf, lambda s: reload_cycles(s, want_banner, pf_apply,
                                                             after_hup=pf_rss))
    log(f"    {res['postfix']}")

    m, p = res["mxgate"], res["postfix"]
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    rows = [
        Row("reload", f"reload to {RANGES:,} ranges: SIGHUP → 'configuration reloaded' "
            "logged (median)", med([x[0] for x in m["logged"]]), "n/a", "s", "lower",
            f"each: {', '.join(f'{x[0]:.3f}' for x in m['logged'])} s; in the log, "
            f"'reloading' → 'reloaded': {', '.join(f'{x[1]:.3f}' for x in m['logged'])} s. "
            "Postfix has no such moment: each new smtpd loads the table itself"),
        Row("reload", "SIGHUP → a new connection sees the new config (median)",
            med(m["served"]), med(p["served"]), "s", "lower",
            f"mxgate {', '.join(f'{x:.3f}' for x in m['served'])}; Postfix "
            f"{', '.join(f'{x:.3f}' for x in p['served'])} (a new smtpd reading the cidr: "
            "table)"),
        Row("reload", "sessions dropped (mid-transaction at SIGHUP)", len(m["dropped"]),
            len(p["dropped"]), "sessions", "lower",
            f"{RELOAD_SESSIONS} sessions × {RELOADS} reloads"),
        Row("reload", "messages accepted by open sessions while reloading",
            sum(m["during"]) / sum(m["windows"]), sum(p["during"]) / sum(p["windows"]),
            "tx/s", "higher",
            f"from SIGHUP to the new config serving: {sum(m['during'])} in "
            f"{sum(m['windows']):.2f} s / {sum(p['during'])} in {sum(p['windows']):.2f} s; "
            f"{m['messages']} / {p['messages']} messages in all, all in the Maildir"),
        Row("reload", f"memory for a {RANGES:,}-range table",
            (max(m["settled"]) - m["rss_start"]) / 1024, max(p["settled"]) / 1024, "MiB",
            "lower",
            "mxgate: daemon VmRSS growth once the sessions holding the previous "
            "configuration ended (one shared table); Postfix: VmRSS of one smtpd holding "
            "the cidr: table — every smtpd process pays it"),
        Row("reload", f"memory for a {RANGES:,}-range table, peak while reloading",
            (max(m["extra"]) - m["rss_start"]) / 1024, max(p["extra"]) / 1024, "MiB", "lower",
            "mxgate: VmRSS growth at 'configuration reloaded', sessions still holding the "
            "previous table (two tables); Postfix: largest smtpd then"),
    ]
    report(f"5. Reload: {RANGES:,} random CIDR ranges, {RELOAD_SESSIONS} sessions "
           f"mid-transaction at SIGHUP, {RELOADS} reloads", rows)
    for name, r in (("mxgate", m), ("Postfix", p)):
        if r["dropped"]:
            FAILED.append(f"reload: {name} dropped {len(r['dropped'])} sessions: "
                          f"{r['dropped'][:3]}")


# ---- 6. STARTTLS accepted mail (issue 15 a) ------------------------------------------------

def tlsload(server, n, tls, sessions=SESSIONS, bdat=False):
    """bench/tlsload: n messages of 1 KiB, one a connection, `sessions` at a time, over
    STARTTLS (TLS 1.3, a full handshake each) when tls, with BDAT instead of DATA when
    bdat.  Returns its figures and the server's CPU seconds before it started."""
    cmd = client_pin() + [tool("tlsload")] + (["-T"] if tls else []) + (["-B"] if bdat else []) + [
        "-c", str(sessions), "-m", str(n), "-l", "1024", "-s", CLIENT, "-f", SENDER,
        "-t", RCPT, f"127.0.0.1:{server.port}"]
    c0 = server.cpu_seconds()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise BenchError(f"{server.name}: tlsload failed: {r.stderr.strip()[:500]} "
                         f"{r.stdout.strip()}")
    kv = keyvals(r.stdout)
    if int(kv["messages"]) != n:
        raise BenchError(f"{server.name}: {kv['messages']} of {n} messages acknowledged")
    if tls and (not kv["tls"].startswith("TLSv1.3") or int(kv["handshakes"]) != n):
        raise BenchError(f"{server.name}: not TLS 1.3 on every connection: {r.stdout}")
    return kv, c0


def tls_accept(server, n, tls, bdat=False):
    kv, c0 = tlsload(server, n, tls, bdat=bdat)
    start = float(kv["start"])
    t_last = server.wait_delivered(n, timeout=max(120.0, 10 * float(kv["seconds"])))
    cpu = server.cpu_seconds() - c0
    if server.delivered() != n:
        raise BenchError(f"{server.name}: {server.delivered()} messages in the Maildir, {n} "
                         "sent")
    short = check_maildir_sizes(server.maildir(), 1024)
    if short:
        raise BenchError(f"{server.name}: {short} delivered messages shorter than 1 KiB")
    return {"rate": float(kv["rate"]), "last": t_last - start, "cpu_ms": cpu / n * 1e3}


def mode_name(mode):
    return {"starttls": "STARTTLS (TLS 1.3)", "bdat": "plaintext, BDAT"}.get(mode, "plaintext")


def alternate(label, make, body, repeat):
    """Runs body on mxgate and Postfix `repeat` times, alternating; lists of results."""
    res = {"mxgate": [], "postfix": []}
    for rep in range(repeat):
        for kind in ("mxgate", "postfix"):
            srv = make(kind)
            log(f"  {label}: {srv.name} (run {rep + 1}/{repeat})")
            r = run_server(srv, body, settle=SETTLE if kind == "postfix" or
                           getattr(srv, "relaying", False) else None)
            res[kind].append(r)
            log("    " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in r.items()))
    return res


def runs(xs, f):
    return " / ".join(f.format(x) for x in xs)


def median_rows(scenario, label, res, figures, note=""):
    """Rows of the medians of res's runs: figures = [(key, name, unit, better, fmt)]."""
    rows = []
    n = len(res["mxgate"])
    for key, name, unit, better, f in figures:
        mx = [r[key] for r in res["mxgate"]]
        pf = [r[key] for r in res["postfix"]]
        rows.append(Row(scenario, f"{label}: {name}", median(mx), median(pf), unit, better,
                        (f"median of {n}; " if n > 1 else "") +
                        f"mxgate {runs(mx, f)}; Postfix {runs(pf, f)}" + note))
        note = ""
    return rows


def scenario_tls():
    mxtls, pftls = certs()
    rows = []
    for mode in TLS_MODES:
        tls, bdat = mode == "starttls", mode == "bdat"

        def make(kind):
            return split_server(kind, "tls", tls=mxtls if kind == "mxgate" else pftls)
        res = alternate(f"tls {mode}: tlsload -c {SESSIONS} -m {TLS_MESSAGES}"
                        f"{' -T' if tls else ''}{' -B' if bdat else ''}", make,
                        lambda s: tls_accept(s, TLS_MESSAGES, tls, bdat), REPEAT)
        rows += median_rows("tls", f"{mode_name(mode)}, 1 KiB, 1 msg/conn", res, [
            ("rate", "messages/s at the client", "msg/s", "higher", "{:,.0f}"),
            ("last", "last message in the Maildir", "s", "lower", "{:.2f}"),
            ("cpu_ms", "server CPU per message", "ms", "lower", "{:.3f}")],
            note=f"; {TLS_MESSAGES} messages, both offer STARTTLS with the same P-256 "
                 "certificate")
    report(f"6. Accepted mail over STARTTLS: bench/tlsload, {SESSIONS} sessions, 1 KiB, one "
           f"message a connection, into a Maildir, fsync before 250{pinning()}", rows)


# ---- 7. relay end to end (issue 15 b, c) ---------------------------------------------------

def relay_run(server, sink, n, tls):
    kv, c0 = tlsload(server, n, tls)
    start = float(kv["start"])
    t_last = sink.wait_count(n, timeout=max(180.0, 20 * float(kv["seconds"])))
    cpu = server.cpu_seconds() - c0
    time.sleep(1.0)                  # a duplicate would arrive now
    if sink.count != n:
        raise BenchError(f"{server.name}: the sink received {sink.count} messages, {n} sent")
    return {"e2e": n / (t_last - start), "rate": float(kv["rate"]), "last": t_last - start,
            "cpu_ms": cpu / n * 1e3}


def scenario_relay_common(tls):
    mxtls, pftls = certs()
    name = "relaytls" if tls else "relay"
    conns = RELAY_CONNECTIONS
    sinks = {}

    def make(kind):
        sink = TlsSink(tool("tlssink"), pftls[0], pftls[1], RELAY_MESSAGES) if tls else \
            SmtpSink()
        sink.pin = client_pin()
        if kind == "mxgate":
            srv = split_server(kind, "relay", tls=mxtls, relay=f"127.0.0.1:{sink.port}",
                               relay_tls="opportunistic" if tls else "none",
                               relay_connections=conns)
            srv.relaying = True      # relay mode unlinks its spool files: settle after it
        else:
            srv = split_server(kind, "relay", tls=pftls, relay=f"127.0.0.1:{sink.port}",
                               relay_tls=tls, relay_connections=conns)
        sinks[id(srv)] = sink
        return srv

    def body(srv):
        sink = sinks.pop(id(srv))
        sink.start()
        try:
            r = relay_run(srv, sink, RELAY_MESSAGES, tls)
            r["sink_cpu_ms"] = sink.cpu_seconds() / RELAY_MESSAGES * 1e3
            if tls:
                f = sink.figures()
                if int(f["min_bytes"]) < 1000:
                    raise BenchError(f"{srv.name}: a relayed message arrived short: {f}")
                if int(f["handshakes"]) < 1 or int(f["connections"]) - int(f["handshakes"]) > 1:
                    raise BenchError(f"{srv.name}: the next hop leg was not all TLS: {f}")
                r["hop_conns"] = int(f["handshakes"])
            return r
        finally:
            sink.stop()

    what = "STARTTLS on both legs" if tls else "plaintext"
    res = alternate(f"{name}: tlsload -c {SESSIONS} -m {RELAY_MESSAGES}{' -T' if tls else ''}"
                    f" → server → {'bench/tlssink' if tls else 'smtp-sink'}", make, body,
                    REPEAT)
    rows = median_rows(name, f"{what}, 1 KiB, 1 msg/conn", res, [
        ("e2e", "end to end: messages/s, first connect → last message at the sink", "msg/s",
         "higher", "{:,.0f}"),
        ("rate", "messages/s at the client (250 after fsync)", "msg/s", "higher",
         "{:,.0f}"),
        ("cpu_ms", "server CPU per message (receive + relay)", "ms", "lower", "{:.3f}")],
        note=f"; {RELAY_MESSAGES} messages; {conns} connections to the next hop for both "
             f"(relay-connections / smtp destination concurrency)")
    title = "8. Relay end to end over STARTTLS on both legs" if tls else \
        "7. Relay end to end"
    report(f"{title}: bench/tlsload{' -T' if tls else ''}, {SESSIONS} sessions → server "
           f"(250 after fsync) → {'bench/tlssink (STARTTLS)' if tls else 'smtp-sink'}, "
           f"{conns} connections to it{pinning()}", rows)


def scenario_relay():
    scenario_relay_common(False)


def scenario_relaytls():
    scenario_relay_common(True)


# ---- 9. scaling over cores (issue 15 d) -----------------------------------------------------

def scenario_cores():
    mxtls, pftls = certs()
    rows = []
    for mode in CORES_MODES:
        tls = mode == "starttls"
        rate = {}
        for ncores in CORES:
            cpus = ",".join(str(i) for i in range(ncores))

            def make(kind):
                if kind == "mxgate":
                    srv = mxgate("mxgate-cores", tls=mxtls, workers=ncores)
                else:
                    srv = postfix("postfix-cores", tls=pftls)
                srv.cpus = cpus
                return srv
            res = alternate(f"cores {mode}: {ncores} (taskset -c {cpus}), tlsload -c "
                            f"{SESSIONS} -m {TLS_MESSAGES}{' -T' if tls else ''}", make,
                            lambda s: tls_accept(s, TLS_MESSAGES, tls), CORES_REPEAT)
            rate[ncores] = (median([r["rate"] for r in res["mxgate"]]),
                            median([r["rate"] for r in res["postfix"]]))
            rows += median_rows("cores", f"{mode_name(mode)}, {ncores} core"
                                f"{'s' if ncores > 1 else ''} (taskset -c {cpus})", res, [
                ("rate", "messages/s at the client", "msg/s", "higher", "{:,.0f}"),
                ("cpu_ms", "server CPU per message", "ms", "lower", "{:.3f}")],
                note=f"; mxgate workers = {ncores}; Postfix's master and every child "
                     "pinned alike; the client is not pinned")
        lo, hi = min(CORES), max(CORES)
        if lo != hi:
            rows.append(Row("cores", f"{mode_name(mode)}: messages/s on {hi} cores ÷ on {lo}",
                            rate[hi][0] / rate[lo][0], rate[hi][1] / rate[lo][1], "x",
                            "higher", "what the next core buys"))
    report(f"9. Scaling over cores: accepted mail (bench/tlsload, {SESSIONS} sessions, 1 KiB, "
           "1 msg/conn, into a Maildir), server pinned with taskset", rows)


# ---- the run -----------------------------------------------------------------------------

def describe():
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except OSError:
            return ""
    cpu = re.search(r"Model name:\s*(.*)", out(["lscpu"]))
    mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read())
    fs = out(["findmnt", "-T", os.path.dirname(ROOT) or "/", "-no", "SOURCE,FSTYPE"]).split()
    return [
        f"Machine: {os.cpu_count()} cores ({cpu.group(1).strip() if cpu else '?'}), "
        f"{int(mem.group(1)) // 1024 // 1024 if mem else '?'} GiB RAM, kernel "
        f"{platform.release()}; data on {' '.join(fs) or '?'} ({os.path.dirname(ROOT)})",
        f"Versions: {out([MXGATE_BIN, 'version']).strip()}, Postfix "
        f"{out(['postconf', '-dh', 'mail_version']).strip()}, "
        f"{out(['openssl', 'version']).strip()}",
        f"Sizes: BENCH_MESSAGES={MESSAGES} BENCH_SESSIONS={SESSIONS} BENCH_REPEAT={REPEAT} "
        f"BENCH_SIZES=\"{' '.join(map(str, SIZES))}\" BENCH_FLOOD_SECONDS={FLOOD_SECONDS:g} "
        f"BENCH_FLOOD_INFLIGHT={FLOOD_INFLIGHT} BENCH_IDLE={IDLE} "
        f"BENCH_POSTFIX_PROCS={POSTFIX_PROCS} BENCH_RATE={RATE:g} "
        f"BENCH_LATENCY_SECONDS={LATENCY_SECONDS:g} BENCH_RANGES={RANGES} "
        f"BENCH_RELOAD_SESSIONS={RELOAD_SESSIONS} BENCH_RELOADS={RELOADS} "
        f"BENCH_TLS_MESSAGES={TLS_MESSAGES} BENCH_RELAY_MESSAGES={RELAY_MESSAGES} "
        f"BENCH_RELAY_CONNECTIONS={RELAY_CONNECTIONS} BENCH_CORES_REPEAT={CORES_REPEAT}"
        + (f" BENCH_CLIENT_CORE={CLIENT_CORE}" if CLIENT_CORE else ""),
        f"Scenarios: {' '.join(SCENARIOS)}",
    ]


def main():
    if os.geteuid() != 0:
        sys.exit("bench/sidebyside.py: run as root (Postfix's master, mxgate's user switch)")
    for s in SCENARIOS:
        if s not in ALL.split():
            sys.exit(f"bench/sidebyside.py: unknown scenario {s}")
    lock = open(ROOT.rstrip("/") + ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"bench/sidebyside.py: another run holds {lock.name}")
    # see servers.set_aside(): inodes freed in the last seconds tax every file create, so
    # the first server must not start right after a mass deletion (an earlier run's
    # leftovers here, or its own clean-up at its end, stamped in CLEANED)
    cleaned = ROOT.rstrip("/") + ".cleaned"
    if stop_leftovers(ROOT):
        touch(cleaned)
    try:
        wait = 40 - (time.time() - os.path.getmtime(cleaned))
    except OSError:
        wait = 0
    if wait > 0:
        log(f"(an earlier run's files were deleted moments ago; waiting {wait:.0f} s for "
            "the file system to settle)")
        sync()
        time.sleep(wait)
    os.makedirs(ROOT)
    os.chmod(ROOT, 0o755)
    started = time.time()
    head = describe()
    log("## mxgate and Postfix side by side\n")
    for line in head:
        log(line)
    funcs = {"accept": scenario_accept, "shed": scenario_shed, "memory": scenario_memory,
             "latency": scenario_latency, "reload": scenario_reload, "tls": scenario_tls,
             "relay": scenario_relay, "relaytls": scenario_relaytls,
             "cores": scenario_cores}
    try:
        for s in SCENARIOS:
            log(f"\n== {s}")
            t0 = time.time()
            try:
                funcs[s]()
            except BenchError as e:
                FAILED.append(f"{s}: {e}")
                log(f"!! {s} FAILED: {e}")
            except Exception:
                FAILED.append(f"{s}: {traceback.format_exc()}")
                log(f"!! {s} FAILED:\n{traceback.format_exc()}")
            log(f"   ({s}: {time.time() - t0:.0f} s)")
    finally:
        stop_leftovers(ROOT)
        touch(cleaned)
    combined = table(ROWS, with_scenario=True)
    elapsed = time.time() - started
    log(f"\n## All scenarios ({elapsed / 60:.1f} min)\n\n{combined}\n")
    for f in FAILED:
        log(f"FAILED: {f}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write(f"# mxgate and Postfix side by side — "
                f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n\n")
        f.write("\n".join(f"- {line}" for line in head) + "\n")
        env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                       if k.startswith("BENCH_") or k == "MXGATE_BIN")
        f.write(f"- Command: {env + ' ' if env else ''}bench/sidebyside.py (`make bench` runs "
                f"it through bench/run), {elapsed / 60:.1f} min\n\n")
        f.write(combined + "\n")
        for line in FAILED:
            f.write(f"\nFAILED: {line}\n")
    log(f"(written to {RESULTS})")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
