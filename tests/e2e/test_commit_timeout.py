"""A timeout that fires while a message is being committed (issue 16, item 8).

The sender must learn the outcome of a message the gateway keeps: a 421 while the
message commits anyway makes it send the message again, and it is delivered twice.  The
session timer fires during the commit; the reply must be the 250, then the 421.

The commit is held open deterministically, not by timing: a small preloaded library makes
syncfs(), fsync() and fdatasync() wait while a gate file exists.  The test creates the
gate before the final dot, waits until the daemon logs that connection-timeout was
reached, and only then removes the gate.
"""
import os
import signal
import subprocess

import pytest

from daemon import message
from helpers_security import connector, expect, expect_close, send_message, session, start

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

/* While the file named by MXGATE_TEST_SYNC_GATE exists, the syncs wait for it to go. */
static void
gate(void)
{
	const char *g = getenv("MXGATE_TEST_SYNC_GATE");
	while (g && access(g, F_OK) == 0)
		usleep(5000);
}

#define WRAP(name)                                                              \
	int name(int fd)                                                        \
	{                                                                       \
		int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, #name);       \
		gate();                                                         \
		return real(fd);                                                \
	}
WRAP(syncfs)
WRAP(fsync)
WRAP(fdatasync)
"""


@pytest.fixture
def held_sync(daemon, monkeypatch):
    """Builds the shim into the daemon's directory and preloads it into the daemon to be
    started. Returns the gate file's path (absent: syncs run)."""
    src = os.path.join(daemon.dir, "sync_gate.c")
    lib = os.path.join(daemon.dir, "sync_gate.so")
    with open(src, "w") as f:
        f.write(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", lib, src, "-ldl"], check=True,
                   capture_output=True)
    os.chmod(lib, 0o755)
    gate = os.path.join(daemon.dir, "sync-gate")
    monkeypatch.setenv("LD_PRELOAD", lib)
    monkeypatch.setenv("MXGATE_TEST_SYNC_GATE", gate)
    # an ASan build wants its runtime first among the preloaded libraries
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "verify_asan_link_order=0")
    return gate


def test_session_timeout_during_commit_answers_250_then_421(daemon, held_sync):
    start(daemon, connector(connection_inactivity_timeout="2s", connection_timeout="3s"))
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 250, cmd="RCPT TO:<user@example.test>")
        expect(c, 354, cmd="DATA")
        open(held_sync, "w").close()            # from here the commit cannot finish
        c.send(message(subject="held-commit") + ".\r\n")
        daemon.wait_log(r"connection-timeout \(3s\) reached", timeout=30)
        os.unlink(held_sync)                     # the commit finishes now
        expect(c, 250, "2.6.0 <")                # the message's outcome first ...
        expect_close(c, 421, "4.4.1 Connection timed out")   # ... then the timeout
    daemon.wait_log(r"session timeout while the message was being committed: replied 250 "
                    r"first")
    msgs = daemon.wait_messages(1)
    assert len(msgs) == 1 and b"Subject: held-commit" in msgs[0]
    # the session is still usable by others: the gate is gone, commits run as ever
    with session(daemon) as c:
        code, text = send_message(c, message(subject="after"))
        assert code == 250, text
    assert len(daemon.wait_messages(2)) == 2


def test_drain_timeout_during_commit_answers_250_before_closing(daemon, held_sync):
    """SIGTERM's drain-timeout closes the sessions still open, but not one whose message
    is being committed: it gets its 250 (then the shutdown's 421), so the sender does not
    send again a message the gateway keeps."""
    start(daemon, connector())   # drain-timeout = 2s (helpers_security.TOP)
    with session(daemon) as c:
        expect(c, 250, cmd="MAIL FROM:<sender@remote.example>")
        expect(c, 250, cmd="RCPT TO:<user@example.test>")
        expect(c, 354, cmd="DATA")
        open(held_sync, "w").close()
        c.send(message(subject="held-at-drain") + ".\r\n")
        daemon.signal(signal.SIGTERM)   # the final dot is read long before drain-timeout
        daemon.wait_log(r"drain-timeout reached", timeout=30)
        os.unlink(held_sync)
        expect(c, 250, "2.6.0 <")
        expect_close(c, 421, "4.3.2")
    assert daemon.proc.wait(timeout=30) == 0
    daemon.check_sanitizers()
