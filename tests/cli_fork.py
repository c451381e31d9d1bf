"""``run_cli``'s engine: the command line in a process forked from one that has already imported it.

A fresh ``python -m seizurewatch`` spends 1.5-2 s of CPU importing torch, numpy and the package before it reads
its arguments; the suite runs the command line a few hundred times. Here one process per test worker (the
*zygote*) imports them once and forks a child per call. The child is a separate process like a fresh one: its
own arguments, environment, working folder, stdout and stderr (files the caller reads), exit status (a signal
gives ``-signum``), atexit handlers; it runs ``python -m seizurewatch`` exactly as ``__main__`` does.

What a forked child shares with the zygote is the modules imported before the fork, so:

- the zygote imports nothing that reads the environment at import time or starts a thread (it checks for one
  before every fork and falls back to a fresh interpreter), and never makes an LSL call (liblsl reads its
  loopback config at its first call, in the child);
- a test about what the command imports, or about a fresh interpreter, starts one itself (``subprocess``).

``SEIZUREWATCH_TEST_FRESH_CLI=1`` makes ``run_cli`` start a fresh interpreter every time.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PRELOAD = ("torch", "numpy", "seizurewatch.cli", "seizurewatch.daemon", "seizurewatch.replay")


class Zygote:
    """The client's end: starts the zygote on first use; ``run`` is ``subprocess.run`` for one command line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._proc: subprocess.Popen | None = None
        self._path = ""
        self._lock = threading.Lock()

    def _start(self) -> None:
        folder = tempfile.mkdtemp(prefix="sw-zygote-")
        self._path = os.path.join(folder, "socket")
        self._proc = subprocess.Popen([sys.executable, __file__, self._path, str(os.getpid())], cwd=self.root,
                                      stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 600  # a hang guard: importing torch on a busy machine takes seconds
        while not os.path.exists(self._path):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the CLI zygote did not start (exit {self._proc.poll()})")
            time.sleep(0.05)
        atexit.register(self.close)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(30)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
        with tempfile.TemporaryDirectory(prefix="sw-cli-") as out:
            request = {"argv": argv, "cwd": str(cwd), "env": env,
                       "stdout": os.path.join(out, "stdout"), "stderr": os.path.join(out, "stderr")}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(self._path)
                sock.sendall(json.dumps(request).encode() + b"\n")
                replies = sock.makefile("r")
                started = json.loads(replies.readline())
                if "fresh" in started:  # the zygote could not fork safely: a fresh interpreter, as before
                    return run_fresh(argv, cwd, env, timeout)
                sock.settimeout(timeout)
                try:
                    line = replies.readline()
                except TimeoutError:
                    os.kill(started["pid"], 9)
                    raise subprocess.TimeoutExpired(argv, timeout) from None
                status = json.loads(line)["status"]
            return subprocess.CompletedProcess(argv, status, _read(request["stdout"]), _read(request["stderr"]))


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:  # as subprocess's text mode
        return f.read()


def run_fresh(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``python -m seizurewatch ARGV`` in a fresh interpreter, as ``subprocess.run`` with captured text output."""
    return subprocess.run([sys.executable, "-m", "seizurewatch", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


# ----- the zygote ---------------------------------------------------------------------------------------------
def _child(request: dict, keep_closed: list[socket.socket]) -> None:
    """In the forked child: become ``python -m seizurewatch ARGV`` and exit with its status."""
    import atexit as child_atexit
    import runpy
    import signal
    import traceback

    for s in keep_closed:
        s.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as ``python -m`` puts it first (the zygote's own first entry is tests/)
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.argv = [os.path.join(os.path.dirname(sys.modules["seizurewatch"].__file__ or ""), "__main__.py"),
                *request["argv"]]
    code: object = 0
    try:
        runpy.run_module("seizurewatch", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback on stderr, exit 1
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        child_atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def serve(path: str, parent: int) -> None:
    for name in PRELOAD:
        __import__(name)
    assert "pylsl" not in sys.modules, "the zygote must not load liblsl (its config is read at the first call)"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(16)
    os.rename(path + ".tmp", path)  # the client waits for this name: bound and listening
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection that waits for its status
    conns: list[socket.socket] = []
    while os.getppid() == parent:
        for key, _ in sel.select(timeout=0.05):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conns.append(conn)
                sel.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj  # type: ignore[assignment]
            sel.unregister(conn)
            line = conn.makefile("r").readline()
            if not line:
                conn.close()
                conns.remove(conn)
                continue
            if threading.active_count() > 1:  # forking beside a thread could copy a held lock
                conn.sendall(b'{"fresh": true}\n')
                conn.close()
                conns.remove(conn)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(json.loads(line), [listener, *conns])
            waiting[pid] = conn
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                except OSError:  # the caller gave up (timeout) and went away
                    pass
                conn.close()
                conns.remove(conn)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
