"""The station's ``--exec`` hook: one process per alarm, bounded, rate-limited, with a small
environment (never the subscriber's own: it holds the broker password variable).

Every bound is per patient: a flood of forged alarms on one bed fills that bed's budget only, and
another bed's real alarm still gets its page at once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import time
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

EXEC_TIMEOUT_S = 60.0
MAX_RUNNING = 4  # hooks running at once per patient; more wait their turn
MAX_WAITING = 32  # per patient; beyond that, a flood (not a ward) is at work: drop, loudly
PER_MINUTE = 20  # hooks started per minute per patient at most
# What a pager script needs from the station's environment; nothing else is passed on.
PASS_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def exec_env(payload: dict[str, Any], source: str = "start", keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The hook's environment: PASS_THROUGH and ``keep`` from ours, plus the SEIZUREWATCH_* facts."""
    env = {k: os.environ[k] for k in (*PASS_THROUGH, *keep) if k in os.environ}
    env.update({
        "SEIZUREWATCH_PAYLOAD": json.dumps(payload, separators=(",", ":")),
        "SEIZUREWATCH_PATIENT": str(payload.get("patient", "")),
        "SEIZUREWATCH_SEQ": str(payload.get("seq", "")),
        "SEIZUREWATCH_ALARM_ID": str(payload.get("alarm_id", "")),
        "SEIZUREWATCH_T": str(payload.get("t", "")),
        "SEIZUREWATCH_PROBABILITY": str(payload.get("probability", "")),
        "SEIZUREWATCH_SOURCE": source,  # how the alarm was first seen: "start", "update" or "state"
    })
    return env


class _Budget:
    """One patient's share: its running slots, the start times of its last minute, its queued hooks."""

    def __init__(self, max_running: int) -> None:
        self.slots = asyncio.Semaphore(max_running)
        self.started: deque[float] = deque()
        self.tasks: set[asyncio.Task[int]] = set()


class HookRunner:
    """Runs ``cmd`` once per alarm; per patient at most ``max_running`` at once, ``per_minute`` started per
    minute, ``max_waiting`` queued; what exceeds that is dropped with an error naming the alarm."""

    def __init__(self, cmd: str, shell: bool = False, keep_env: tuple[str, ...] = (),
                 max_running: int = MAX_RUNNING, max_waiting: int = MAX_WAITING, per_minute: int = PER_MINUTE,
                 timeout_s: float = EXEC_TIMEOUT_S) -> None:
        self.cmd = cmd
        self.shell = shell
        self.keep_env = keep_env
        self.timeout_s = timeout_s
        self.per_minute = per_minute
        self.max_waiting = max_waiting
        self.max_running = max_running
        self._budgets: dict[str, _Budget] = {}
        self.dropped = 0
        self.ran = 0

    @property
    def _tasks(self) -> set[asyncio.Task[int]]:
        """Every queued or running hook, all patients."""
        return {t for b in self._budgets.values() for t in b.tasks}

    def submit(self, payload: dict[str, Any], source: str = "start") -> bool:
        """Queue the hook for one alarm; False (and an error logged) if its patient's bound is reached."""
        patient = str(payload.get("patient"))
        budget = self._budgets.get(patient)
        if budget is None:
            budget = self._budgets[patient] = _Budget(self.max_running)
        if len(budget.tasks) >= self.max_waiting:
            self.dropped += 1
            log.error("--exec: too many hooks pending for this patient; this alarm's hook is dropped",
                      extra={"patient": patient, "alarm_id": payload.get("alarm_id"),
                             "pending": len(budget.tasks), "dropped": self.dropped})
            return False
        task = asyncio.create_task(self._run(budget, payload, source))
        budget.tasks.add(task)
        task.add_done_callback(budget.tasks.discard)
        return True

    async def _rate(self, started: deque[float]) -> None:
        while True:
            now = time.monotonic()
            while started and now - started[0] >= 60.0:
                started.popleft()
            if len(started) < self.per_minute:
                started.append(now)
                return
            await asyncio.sleep(60.0 - (now - started[0]))

    async def _run(self, budget: _Budget, payload: dict[str, Any], source: str) -> int:
        async with budget.slots:
            await self._rate(budget.started)
            self.ran += 1
            return await run_exec(self.cmd, payload, self.shell, source, self.keep_env, self.timeout_s)

    @property
    def pending(self) -> int:
        """Hooks queued or running."""
        return len(self._tasks)

    async def drain(self) -> None:
        tasks = self._tasks
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_exec(cmd: str, payload: dict[str, Any], shell: bool = False, source: str = "start",
                   keep_env: tuple[str, ...] = (), timeout_s: float = EXEC_TIMEOUT_S) -> int:
    """Run the hook with the payload on stdin; its failure is logged, never fatal."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    env = exec_env(payload, source, keep_env)
    try:
        if shell:
            proc = await asyncio.create_subprocess_shell(cmd, stdin=asyncio.subprocess.PIPE, env=env)
        else:
            proc = await asyncio.create_subprocess_exec(*shlex.split(cmd), stdin=asyncio.subprocess.PIPE, env=env)
    except (OSError, ValueError) as exc:
        log.error("--exec command could not run", extra={"cmd": cmd, "error": str(exc)})
        return -1
    try:
        await asyncio.wait_for(proc.communicate(body), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.error("--exec command timed out", extra={"cmd": cmd, "timeout_s": timeout_s})
        return -1
    if proc.returncode:
        log.error("--exec command failed", extra={"cmd": cmd, "returncode": proc.returncode})
    return int(proc.returncode or 0)
