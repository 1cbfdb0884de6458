"""m2vae_fusion.bringup.process_group, which the launcher, `m2vae fuzz`, `bench nodes` and the test fixtures
use: children lead their own groups, and `stop` gets rid of each whatever it does with the signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from m2vae_fusion.bringup import process_group

READY = "import sys\nprint('ready', flush=True)\n"
SLEEP = "import time\ntime.sleep(600)\n"


def child(code: str) -> subprocess.Popen:
    """A Python child running `code`, returned once it has set up its signal handling."""
    proc = process_group.start([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def gone(pid: int) -> bool:
    """No such process, or only its zombie (its parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_child_leads_its_own_group_and_session() -> None:
    proc = child(READY + SLEEP)
    try:
        assert os.getpgid(proc.pid) == proc.pid == os.getsid(proc.pid) != os.getsid(0)
    finally:
        process_group.stop([proc], grace_s=5.0)
    assert proc.returncode == -signal.SIGINT  # Python ends an uncaught KeyboardInterrupt by SIGINT


def test_sigint_deaf_child_gets_sigterm_then_a_deaf_one_sigkill(tmp_path: Path) -> None:
    ignore_int = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    term = child(
        ignore_int
        + f"signal.signal(signal.SIGTERM, lambda *a: (open({str(tmp_path / 'term')!r}, 'w').close(), exit(7)))\n"
        + READY
        + SLEEP
    )
    deaf = child(ignore_int + "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + READY + SLEEP)
    started = time.monotonic()
    process_group.stop([term, deaf], grace_s=0.3, term_grace_s=0.3)
    assert (term.returncode, deaf.returncode) == (7, -signal.SIGKILL)
    assert (tmp_path / "term").is_file()
    assert time.monotonic() - started < 5


def test_a_grandchild_left_in_the_group_dies_with_it(tmp_path: Path) -> None:
    # the grandchild ignores everything but SIGKILL (and says so on the shared stdout); its parent ends on the first SIGINT
    grandchild = (
        "import signal, time\nfor s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)\n" + READY + SLEEP
    )
    pid_file = tmp_path / "grandchild"
    parent = child(
        f"import subprocess, sys\np = subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        f"open({str(pid_file)!r} + '.tmp', 'w').write(str(p.pid))\nimport os\nos.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        + SLEEP
    )
    deadline = time.monotonic() + 10
    while not pid_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    assert os.getpgid(pid) == parent.pid
    process_group.stop([parent], grace_s=2.0)
    assert parent.returncode == -signal.SIGINT  # it went on the first step; the grandchild did not
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_hurry_skips_the_grace_period() -> None:
    proc = child("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + READY + SLEEP)
    presses: list[int] = []

    def hurry() -> int:  # a second Ctrl-C arrives right after the first step began
        presses.append(1)
        return len(presses)

    started = time.monotonic()
    process_group.stop([proc], grace_s=60.0, hurry=hurry)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_stopping_what_already_ended_is_quick() -> None:
    proc = process_group.start([sys.executable, "-c", "pass"])
    proc.wait()
    started = time.monotonic()
    process_group.stop([proc, proc], grace_s=60.0)
    assert proc.returncode == 0 and time.monotonic() - started < 1


def test_a_child_of_a_caller_that_ignores_sigint_still_stops_on_it() -> None:
    """As a shell script's background job: SIGINT ignored in the caller, not in the children it starts."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = child(READY + SLEEP)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the caller keeps its own disposition
    finally:
        signal.signal(signal.SIGINT, previous)
    ignored = int(Path(f"/proc/{proc.pid}/status").read_text().split("SigIgn:")[1].split()[0], 16)
    assert not ignored & (1 << (signal.SIGINT - 1)), "the child inherited SIGINT ignored"
    process_group.stop([proc], grace_s=5.0)
    assert proc.returncode == -signal.SIGINT
