"""The failsync shim (failsync.c beside this file) for the end-to-end tests: builds it,
and starts a Daemon (tests/e2e/daemon.py) with it preloaded."""
import os
import subprocess

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "failsync.c")


def build(directory):
    """Compiles the shim into directory; returns the path of the .so."""
    out = os.path.join(str(directory), "failsync.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror",
                    "-o", out, SRC, "-ldl"], check=True, capture_output=True)
    return out


def start(daemon, shim, monkeypatch, **narrow):
    """Starts the daemon with the shim preloaded; returns (trigger path, fault log path).
    The syncs fail (or stall) while the trigger file exists. narrow: more MXGATE_FAULT_*
    variables (dev_of, dirs_only, stall). Only the daemon gets them."""
    trigger = os.path.join(daemon.dir, "disk-fails")
    flog = os.path.join(daemon.dir, "faults.log")
    open(flog, "w").close()
    os.chmod(flog, 0o666)   # the daemon writes it as nobody
    asan = os.environ.get("ASAN_OPTIONS", "")
    with monkeypatch.context() as m:
        m.setenv("LD_PRELOAD", shim)
        m.setenv("MXGATE_FAULT_TRIGGER", trigger)
        m.setenv("MXGATE_FAULT_LOG", flog)
        # the shim comes before ASan's runtime in the library list
        m.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "verify_asan_link_order=0")
        for k, v in narrow.items():
            m.setenv("MXGATE_FAULT_" + k.upper(), v)
        daemon.start()
    return trigger, flog


def fired(flog):
    """The lines the shim logged: "<call> <fd>" per failure, "stall <call> <fd>"."""
    with open(flog) as f:
        return f.read().splitlines()
