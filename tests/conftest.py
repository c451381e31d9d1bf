"""Shared fixtures: real Mosquitto on a free loopback port, paths to the shared recordings.

LSL: the loopback-only config is applied here, before anything imports pylsl.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


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

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
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


def run_cli(*args: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seizurewatch", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


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
