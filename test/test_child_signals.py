"""bringup/child_signals.py: launch's signals reach a process through os.kill, never a reaping poll()."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from m2vae_fusion.bringup.child_signals import signal_without_reaping


async def _signal_a_child(calls: list[str]) -> int:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()

    class Protocol(asyncio.SubprocessProtocol):
        def process_exited(self) -> None:
            exited.set_result(transport.get_returncode())

    transport, _ = await loop.subprocess_exec(Protocol, sys.executable, "-c", "import time; time.sleep(30)")
    popen = transport.get_extra_info("subprocess")
    poll = popen.poll

    def spying_poll():
        calls.append("poll")
        return poll()

    popen.poll = spying_poll
    transport.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(exited, 20)
    finally:
        transport.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_send_signal_leaves_reaping_to_the_child_watcher():
    signal_without_reaping()
    calls: list[str] = []
    returncode = asyncio.run(_signal_a_child(calls))
    assert returncode == -signal.SIGTERM
    assert calls == [], "send_signal polled (and could reap) the child before the watcher saw its exit"
    assert signal_without_reaping() is False, "installing twice must be a no-op"
