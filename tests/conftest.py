"""Shared fixtures: real Mosquitto on a free loopback port, paths to the shared recordings.

LSL: the loopback-only config is applied here, before anything imports pylsl.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cli_fork import Zygote, run_fresh

ROOT = Path(__file__).resolve().parents[1]
os.environ["LSLAPICFG"] = str(ROOT / "config" / "lsl_loopback.cfg")  # before any pylsl import

DATA = Path(os.environ.get("SEIZUREWATCH_DATA", ROOT.parent / "shared" / "data"))
DOG1 = DATA / "dog1"
SCALP8 = DATA / "scalp8"
MODEL = ROOT / "models" / "dog1-hills-early.pt"  # the shipped default (1-s windows)
CONVNET = ROOT / "models" / "dog1-convnet.pt"  # the previous default, seed ConvNet (10-s windows)
WARD_CONF = ROOT / "config" / "mosquitto" / "seizurewatch.conf"
WARD_ACL = ROOT / "config" / "mosquitto" / "seizurewatch.acl"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
EC = "ec_paramgen_curve:prime256v1"  # EC keys: quick to generate


def _port_slice() -> range:
    """Ports only this pytest worker hands out: a slice, per xdist worker, of the range below the kernel's
    ephemeral ports (ip_local_port_range), which is where bind(0) and every outgoing connection take theirs.
    So a port from free_port() is never taken meanwhile by another worker's free_port() or by a client's
    socket, even while a broker that owned it is down for an outage test and restarts on it."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    first = max(1024, low - 12_000)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    size = (low - first) // workers
    return range(first + worker * size, first + (worker + 1) * size)


_PORTS = _port_slice()
_next_port = [random.randrange(len(_PORTS))]  # another pytest session on the box starts elsewhere in the slice


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_data: uses the shared recordings (DATA); skipped when they are absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked needs_data is skipped, with the reason, where the shared recordings are not there."""
    if item.get_closest_marker("needs_data") is not None:
        missing = [d.name for d in (DOG1, SCALP8) if not d.is_dir()]
        if missing:
            pytest.skip(f"the shared recordings are not at {DATA} (missing {', '.join(missing)}/): put them there or "
                        "set SEIZUREWATCH_DATA")


def free_port() -> int:
    """A loopback port nobody listens on, from this worker's own slice (see _port_slice); never the same twice
    in a session until the slice wraps."""
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (another session on this machine): the next one
                continue
        return port
    raise RuntimeError(f"no free port in {_PORTS}")


def wait_port(port: int, timeout: float = 60.0) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (``timeout``: a hang guard only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself has a listening TCP socket on ``port`` (not merely someone on the port)."""
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


class Mosquitto:
    """A real Mosquitto broker on 127.0.0.1; restartable on the same port (outage tests)."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install -y mosquitto")
        self.exe = exe
        self.port = port or free_port()
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + ("allow_anonymous true\n" if "allow_anonymous" not in extra_conf else "")
            + "persistence false\nlog_dest stderr\nlog_type error\n"
            + extra_conf
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    PORT_ATTRS: tuple[str, ...] = ("port",)  # the listeners' ports (WardMosquitto has two)

    def start(self) -> None:
        """Start the broker and return once IT listens on its port(s). A first start whose port was taken
        (another test session on the machine) moves to fresh ports; a restart keeps its ports (outage
        tests) and retries until they are free. Time limits are hang guards only."""
        deadline = time.monotonic() + 120
        log = self.conf.with_suffix(".log")
        while True:
            with open(log, "wb") as err:
                self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=err)
            ports = [getattr(self, a) for a in self.PORT_ATTRS]
            while self.proc.poll() is None and not all(listens(self.proc.pid, p) for p in ports):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {ports} within 120 s: {log.read_text()[-500:]}")
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.started = True
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {log.read_text()[-500:]}")
            if not getattr(self, "started", False):  # never started: its port(s) may move
                text = self.conf.read_text()
                for a in self.PORT_ATTRS:
                    new = free_port()
                    text = text.replace(f"listener {getattr(self, a)} ", f"listener {new} ")
                    setattr(self, a, new)
                self.conf.write_text(text)
            else:
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # Mosquitto saves its persistence file on the way out: let it finish, busy box or not
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", EC, "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d: Path, name: str, ca: str, san: str | None = None) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", EC, "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.crt", "-extfile", str(ext), cwd=d)


class WardMosquitto(Mosquitto):
    """Mosquitto running the shipped config/mosquitto/seizurewatch.conf, as the README installs it,
    with only its machine-specific lines moved into the test's folder: the two listeners' ports
    (loopback plaintext, TLS), the persistence folder, the password file and the certificates. The
    ACL is the shipped seizurewatch.acl itself. Accounts: bedside1 (bed1's daemon), station1."""

    ACCOUNTS = {"bedside1": "bedside-pw-1", "station1": "station-pw-1", "bedside2": "bedside-pw-2"}
    PORT_ATTRS = ("port", "tls_port")
    MOVED = ("persistence_location", "password_file", "acl_file", "cafile", "certfile", "keyfile")

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(exe).exists() or not Path(passwd).exists() or not Path(OPENSSL).exists():
            pytest.skip("mosquitto, mosquitto_passwd and openssl are needed: apt-get install -y mosquitto openssl")
        self.exe = exe
        self.port = free_port()
        self.tls_port = free_port()
        d = workdir / "ward-broker"
        (d / "store").mkdir(parents=True, exist_ok=True)
        make_ca(d, "ca")
        make_cert(d, "broker", "ca", san="IP:127.0.0.1,DNS:localhost")
        self.ca = d / "ca.crt"
        self.store_file = d / "store" / "mosquitto.db"  # persistence (autosave every second)
        for i, (user, pw) in enumerate(self.ACCOUNTS.items()):
            subprocess.run([passwd, "-b", *(["-c"] if i == 0 else []), str(d / "passwd"), user, pw], check=True,
                           capture_output=True)
            (d / f"{user}.pw").write_text(pw + "\n")
            (d / f"{user}.pw").chmod(0o600)
        moved = {"persistence_location": f"{d / 'store'}/", "password_file": str(d / "passwd"),
                 "acl_file": str(WARD_ACL), "cafile": str(self.ca), "certfile": str(d / "broker.crt"),
                 "keyfile": str(d / "broker.key")}
        lines, seen = [], set()
        for line in WARD_CONF.read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key in moved:
                line, _ = f"{key} {moved[key]}", seen.add(key)
            elif line == "listener 1883 127.0.0.1":
                line, _ = f"listener {self.port} 127.0.0.1", seen.add("loopback listener")
            elif line == "listener 8883":
                line, _ = f"listener {self.tls_port} 127.0.0.1", seen.add("tls listener")
            lines.append(line)
        missing = {*moved, "loopback listener", "tls listener"} - seen
        assert not missing, f"{WARD_CONF} no longer has {sorted(missing)}: update WardMosquitto"
        # a broker started by root keeps root, so it can write under pytest's 0700 tmp dirs; errors to stderr
        lines += ["user root", "log_dest stderr", "log_type error"]
        self.conf = d / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def password_file(self, user: str) -> Path:
        return self.conf.parent / f"{user}.pw"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def ward_broker(tmp_path):
    """The shipped ward broker configuration (persistence, ACL, TLS), started."""
    broker = WardMosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def mosquitto(tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def cli_env():
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rewrite_metadata(src, dst, mutate) -> None:
    """Copy the model file ``src`` to ``dst`` with its ``extra/metadata.json`` replaced by ``mutate(bytes)``
    (None: left out), every other member as it is: a tampered, foreign or old-format model."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("extra/metadata.json"):
                data = mutate(data)
                if data is None:
                    continue
            zout.writestr(item, data)


_ZYGOTE = Zygote(ROOT)


def run_cli(*args: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """``python -m seizurewatch ARGS`` run to its end, as ``subprocess.run`` with captured text output: in a child
    forked from a process that has imported the package already (``cli_fork``), or a fresh interpreter with
    SEIZUREWATCH_TEST_FRESH_CLI=1."""
    env = dict(os.environ if env is None else env)
    if os.environ.get("SEIZUREWATCH_TEST_FRESH_CLI") == "1" or not hasattr(os, "fork"):
        return run_fresh(list(args), ROOT, env, timeout)
    return _ZYGOTE.run(list(args), ROOT, env, timeout)


async def run_daemon_until(daemon, done, timeout: float = 60.0) -> None:
    """Run ``daemon`` (prepared here unless a test already did) until ``done()`` is true (polled), then
    stop it cleanly."""
    import asyncio

    if not daemon.pipelines:
        await daemon.prepare()
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                if task.done():
                    break
                await asyncio.sleep(0.1)
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


def mount_tmpfs(mnt, options: str) -> None:
    """Mount a tmpfs with ``options`` on the folder ``mnt`` (needs root); skip the test where mounting
    is not allowed. The caller unmounts (``umount -l``)."""
    import subprocess

    import pytest

    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")


@pytest.fixture(scope="module")
def shared_cluster():
    """One small in-process Dask LocalCluster (two workers, one thread each) for a whole test module, named by
    SEIZUREWATCH_SCHEDULER so every run_tasks in the module uses it instead of starting its own."""
    from distributed import LocalCluster

    from seizurewatch.research.parallel import SCHEDULER_ENV

    old = os.environ.get(SCHEDULER_ENV)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      memory_limit=0) as cluster:
        os.environ[SCHEDULER_ENV] = cluster.scheduler_address
        try:
            yield cluster.scheduler_address
        finally:
            if old is None:
                os.environ.pop(SCHEDULER_ENV, None)
            else:
                os.environ[SCHEDULER_ENV] = old
