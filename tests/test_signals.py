"""Signal handlers in one place: installed for a block, the old ones restored, what was caught handed on."""

from __future__ import annotations

import asyncio
import os
import signal

from seizurewatch.signals import capture_signals


def test_installed_for_the_block_then_restored_and_handed_to_a_listening_handler():
    heard: list[int] = []

    def outer(signum, frame):  # an embedding application's own handler
        heard.append(signum)

    before = signal.signal(signal.SIGUSR1, outer)
    try:
        seen: list[signal.Signals] = []
        with capture_signals({signal.SIGUSR1: seen.append}) as caught:
            os.kill(os.getpid(), signal.SIGUSR1)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # (a bytecode boundary: the handler runs)
            assert seen == [signal.SIGUSR1] and caught == [signal.SIGUSR1]
            assert heard == []  # not while the block owns it
        assert signal.getsignal(signal.SIGUSR1) is outer  # restored
        assert heard == [signal.SIGUSR1]  # and told, once the block is over
    finally:
        signal.signal(signal.SIGUSR1, before)


def test_on_the_event_loop_and_not_re_raised_to_a_default_handler():
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # default: would kill the process if re-raised

    async def main() -> list[signal.Signals]:
        got: list[signal.Signals] = []
        done = asyncio.Event()
        with capture_signals({signal.SIGUSR2: lambda sig: (got.append(sig), done.set())}):
            os.kill(os.getpid(), signal.SIGUSR2)
            await asyncio.wait_for(done.wait(), 5)
        return got

    assert asyncio.run(main()) == [signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # still alive, default restored
