"""Signal handlers installed in one place (after uvicorn's ``Server.capture_signals``).

``capture_signals`` installs the handlers for the length of a ``with`` block — on the running
event loop when there is one (asyncio's wake-up descriptor: the callback runs on the loop,
between tasks), else with ``signal.signal`` — restores the previous handlers when the block
ends, and then hands every signal it caught to a previous handler that was installed to hear
it (an application embedding seizurewatch, a test harness). A previous default (``SIG_DFL``,
``SIG_IGN``, Python's ``KeyboardInterrupt`` handler) is not re-raised: the signal was handled
here (``SIGTERM`` -> drain -> exit 0), not ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Handler = Callable[[signal.Signals], None]


def _listening(previous: Any) -> bool:
    return callable(previous) and previous is not signal.default_int_handler


@contextlib.contextmanager
def capture_signals(handlers: Mapping[signal.Signals, Handler]) -> Iterator[list[signal.Signals]]:
    """Install ``handlers`` (signal -> callback(signal)) for the block; yields the signals caught so far."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    previous = {sig: signal.getsignal(sig) for sig in handlers}
    caught: list[signal.Signals] = []

    def deliver(sig: signal.Signals, handler: Handler) -> None:
        caught.append(sig)
        handler(sig)

    def on_signal(signum: int, frame: Any) -> None:
        sig = signal.Signals(signum)
        deliver(sig, handlers[sig])

    for sig, handler in handlers.items():
        if loop is not None:
            loop.add_signal_handler(sig, deliver, sig, handler)
        else:
            signal.signal(sig, on_signal)
    try:
        yield caught
    finally:
        for sig in handlers:
            if loop is not None:
                loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])
        for sig in dict.fromkeys(caught):  # each once, in the order first caught
            if _listening(previous[sig]):
                signal.raise_signal(sig)
