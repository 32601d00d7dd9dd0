"""Helpers for test_hostile_resources.py: clients that hurt the daemon's resources on
purpose, and ways to watch what the daemon spends.

They sit on top of daemon.py (Daemon, Client) without changing it: the daemon's resident
memory and per-thread status from /proc, a start under a chosen open-file limit, a client
that pipelines commands and never reads a reply, and a big ranges file.
"""
import errno
import os
import resource
import select
import socket
import ssl
import subprocess
import threading

import daemon as daemon_mod
from daemon import ALLOWED


def proc_status(pid, tid=None):
    """/proc/PID/status (or a thread's, /proc/PID/task/TID/status) as a dict."""
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def thread_status(pid):
    """{tid: status dict} for every thread of the process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[tid] = proc_status(pid, tid)
        except FileNotFoundError:
            pass  # a thread that just ended
    return out


def vmrss_kib(pid):
    """The process's resident set size in KiB."""
    return int(proc_status(pid)["VmRSS"].split()[0])


def start_with_nofile(d, nofile):
    """Starts the Daemon d like d.start(), with its soft and hard RLIMIT_NOFILE set to
    nofile (the daemon raises its soft limit to the hard one, so both are set)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    d.lines = []
    d.proc = subprocess.Popen([daemon_mod.BIN, "run", "-c", d.conf], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              errors="replace", preexec_fn=limit)
    d._reader = threading.Thread(target=d._read, daemon=True)
    d._reader.start()
    d.wait_log(r"ready: ", timeout=30)


def tls_wrap(sock):
    """The client side of STARTTLS on a connected socket (no certificate checks)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname="mx.example.test")


def flood_without_reading(socks, chunk, budget, stall=2.0):
    """Writes chunk over and over to every socket (plain or TLS) without ever reading,
    until each has taken budget bytes or has accepted nothing for `stall` seconds (the
    daemon stopped reading it).  Returns the bytes each socket took."""
    sent = [0] * len(socks)
    for s in socks:
        s.setblocking(False)
    live = set(range(len(socks)))
    while live:
        writable = [socks[i] for i in live]
        _, ready, _ = select.select([], writable, [], stall)
        if not ready:
            break  # nobody took a byte for `stall` seconds
        for s in ready:
            i = socks.index(s)
            try:
                n = s.send(chunk)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                continue
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET):
                    live.discard(i)
                    continue
                raise
            sent[i] += n
            if sent[i] >= budget:
                live.discard(i)
    return sent


def write_ranges_file(path, n):
    """n distinct /32 ranges in 10.0.0.0/8, one a line."""
    with open(path, "w") as f:
        f.write("".join(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n" for i in range(n)))
    os.chmod(path, 0o644)


def source_port(c):
    """The local port of a daemon.Client, as the daemon logs it ("[ip]:port")."""
    return c.sock.getsockname()[1]


def connect_from(d, source=ALLOWED, timeout=10):
    """A raw socket connected to the daemon from source."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", d.port))
    return s
