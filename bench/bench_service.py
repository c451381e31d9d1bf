"""The daemon as systemd runs it: time to ``READY=1``, steady RSS and CPU with 1 and 20 streams.

Each run starts ``python -m seizurewatch run --config`` as a subprocess with ``NOTIFY_SOCKET``
pointing at a datagram socket of this process (what systemd does), against a real Mosquitto
on a free loopback port; the streams replay ``dog1_rec04.edf`` at real time (speed 1) through
the shipped model (``models/dog1-hills-early.pt``, byte for byte the package's copy: trusted
without a pin). RSS and CPU come from ``/proc/<pid>`` while the streams run.

    python -m bench.bench_service [--quick]      # prints JSON on stdout
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import DOG1, ROOT, SHIPPED_MODELS, Mosquitto, figure, log

REC04 = DOG1 / "dog1_rec04.edf"
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
MODEL = SHIPPED_MODELS / "dog1-hills-early.pt"  # the shipped default (1 s window, 1 s hop)
READY_TARGET_S = 2.0
RSS_TARGET_MB = 250.0
SETTLE_S = 3.0  # steady = after the first windows (1 s) have been classified
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Notify:
    """systemd's end of sd_notify: an abstract datagram socket; records when each message arrived."""

    def __init__(self) -> None:
        self.address = f"@seizurewatch-bench-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.1)
        self.ready_at: float | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._recv, daemon=True)
        self._t.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "READY=1" in msg.splitlines() and self.ready_at is None:
                self.ready_at = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def _recordings(folder: Path, n: int) -> list[Path]:
    """One file per stream: pyedflib opens a file once per process and the daemon refuses one recording
    (symlinks resolved) for two streams, so streams 2..n get copies (1.5 MB each)."""
    paths = [REC04]
    for i in range(1, n):
        copy = folder / f"rec04-{i:02d}.edf"
        if not copy.exists():
            shutil.copyfile(REC04, copy)
        paths.append(copy)
    return paths


def _config(folder: Path, port: int, streams: int) -> Path:
    import yaml

    cfg = {
        "streams": [{"patient": f"bed{i + 1:02d}", "device": str(DEVICE),
                     "source": {"kind": "edf", "path": str(edf), "speed": 1, "loop": True}}
                    for i, edf in enumerate(_recordings(folder, streams))],
        "model": {"path": str(MODEL), "threads": 1},
        "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
        "outbox": {"path": str(folder / f"outbox-{streams}.sqlite3")},
        "logging": {"level": "WARNING", "format": "json"},
    }
    path = folder / f"service-{streams}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rss_anon_mb(pid: int) -> float:
    """Anonymous (private, not file-backed) resident memory: what the process itself allocated."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _proc_sample(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds user+system) of ``pid``."""
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE / 2**20
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return rss, cpu


def run_daemon(folder: Path, broker: Mosquitto, streams: int, steady_s: float) -> dict[str, float]:
    """Start, wait for READY=1, watch RSS/CPU for ``steady_s`` seconds, SIGTERM, time the exit."""
    notify = Notify()
    env = dict(os.environ, NOTIFY_SOCKET=notify.address, PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_USEC", None)
    t0 = time.monotonic()
    errlog = folder / f"daemon-{streams}.log"
    with open(errlog, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "seizurewatch", "run", "--config",
                                 str(_config(folder, broker.port, streams))],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while notify.ready_at is None:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: {errlog.read_text()[-500:]}")
            if time.monotonic() - t0 > 120:
                raise RuntimeError("no READY=1 within 120 s")
            time.sleep(0.01)
        ready_s = notify.ready_at - t0
        ready_cpu_s = _proc_sample(proc.pid)[1]  # CPU spent to get there: what a busy machine cannot inflate
        time.sleep(SETTLE_S)
        rss, cpu0 = _proc_sample(proc.pid)
        w0 = time.monotonic()
        rss_samples = [rss]
        while time.monotonic() - w0 < steady_s:
            time.sleep(0.5)
            rss_samples.append(_proc_sample(proc.pid)[0])
        rss_end, cpu1 = _proc_sample(proc.pid)
        anon = _rss_anon_mb(proc.pid)
        cpu_pct = 100.0 * (cpu1 - cpu0) / (time.monotonic() - w0)
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        stop_s = time.monotonic() - t_stop
        if rc != 0:
            raise RuntimeError(f"daemon exited {rc} on SIGTERM: {errlog.read_text()[-500:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    return {"ready_s": ready_s, "ready_cpu_s": ready_cpu_s, "rss_mb": statistics.median(rss_samples),
            "rss_max_mb": max(rss_samples), "rss_anon_mb": anon, "cpu_pct": cpu_pct, "stop_s": stop_s}


# torch and the shipped model and nothing else: what any process running this model on this torch holds.
# Loaded from the file's bytes as the daemon loads it, one thread, 20 calls of one window of the model's shape.
_FLOOR = """
import io, sys, torch
torch.set_num_threads(1)
def status():
    got = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            got[key] = int(rest.split()[0]) / 1024
    return got
after_import = status()
module = torch.jit.load(io.BytesIO(open(sys.argv[1], "rb").read()), map_location="cpu")
x = torch.randn(1, int(sys.argv[2]), int(sys.argv[3]))
with torch.inference_mode():
    for _ in range(20):
        module(x)
print(after_import["VmRSS"], status()["VmRSS"], status()["RssAnon"])
"""


def rss_floor() -> dict[str, float]:
    """RSS (MiB) of a bare process after ``import torch`` and after running the shipped model: the daemon's floor."""
    from seizurewatch.modelfile import read_metadata
    from seizurewatch.modelmeta import parse_meta

    meta = parse_meta(read_metadata(MODEL), str(MODEL))
    channels, samples = len(meta.preprocess.channels), meta.window_samples
    out = subprocess.run([sys.executable, "-c", _FLOOR, str(MODEL), str(channels), str(samples)],
                         capture_output=True, text=True, check=True, timeout=600).stdout.split()
    torch_mb, model_mb, anon_mb = map(float, out)
    return {"torch_mb": torch_mb, "model_mb": model_mb, "anon_mb": anon_mb}


def run(quick: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-service-"))
    broker = Mosquitto(folder).start()
    try:
        n_ready = 1 if quick else 5  # READY and RSS: the median of several starts
        steady = 3.0 if quick else 8.0  # the runner allows 300 s per module (120 s quick)
        log(f"service: 1 stream, {n_ready} start(s), {steady:.0f} s steady each")
        one = [run_daemon(folder, broker, 1, steady) for _ in range(n_ready)]
        log(f"service: 20 streams, {steady:.0f} s steady")
        twenty = run_daemon(folder, broker, 20, steady)
        log(f"service: the floor (torch and the model alone), {n_ready} start(s)")
        floors = [rss_floor() for _ in range(n_ready)]
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    load = os.getloadavg()[0]
    ready = statistics.median(r["ready_s"] for r in one)
    rss1 = statistics.median(r["rss_mb"] for r in one)
    cpu1 = statistics.median(r["cpu_pct"] for r in one)
    floor = statistics.median(f["model_mb"] for f in floors)
    how = ("python -m seizurewatch run, NOTIFY_SOCKET set, real Mosquitto on loopback, dog1_rec04.edf replayed "
           "at real time per stream, shipped dog1-hills-early (16 ch x 400 Hz, 1 s window, 1 s hop), model.threads 1; "
           f"machine load average {load:.1f} at the end")
    figures = {
        "service.ready_s": figure(ready, "s", f"process start -> READY=1 (median of {n_ready}); {how}",
                                  target=READY_TARGET_S, meets_target=ready <= READY_TARGET_S),
        "service.ready_cpu_s": figure(
            statistics.median(r["ready_cpu_s"] for r in one), "s",
            "CPU time (user+system) the daemon used from exec to READY=1 (imports, model load, broker, first "
            "samples); on an idle machine time to READY is about this plus the first block"),
        "service.rss_1_stream_mb": figure(rss1, "MiB", f"median RSS over {steady:.0f} s steady, 1 stream; {how}",
                                          target=RSS_TARGET_MB, meets_target=rss1 <= RSS_TARGET_MB),
        "service.rss_anon_1_stream_mb": figure(
            statistics.median(r["rss_anon_mb"] for r in one), "MiB",
            "anonymous (private) part of that RSS at the end of the steady phase; the rest is shared library "
            "pages (libtorch, scipy) that other processes map too"),
        "service.rss_20_streams_mb": figure(
            twenty["rss_mb"], "MiB", f"median RSS over {steady:.0f} s steady, 20 streams, one shared model; {how}"),
        "service.rss_floor_mb": figure(
            floor, "MiB",
            f"RSS of a bare python that imports torch, loads the shipped dog1-hills-early from its bytes and runs it "
            f"20 times on one window, one thread (median of {n_ready}): what any process running this model on "
            f"this torch holds, the daemon's floor", import_torch_mb=statistics.median(f["torch_mb"] for f in floors),
            anon_mb=statistics.median(f["anon_mb"] for f in floors)),
        "service.rss_over_floor_mb": figure(
            rss1 - floor, "MiB", "the daemon's own share of its 1-stream RSS: service.rss_1_stream_mb - "
            "service.rss_floor_mb (imports, config, broker link, journal, EDF reader, buffers, threads)"),
        "service.cpu_pct_per_stream_1": figure(cpu1, "% of one core",
                                               f"CPU (user+system) / wall over {steady:.0f} s, 1 stream; {how}"),
        "service.cpu_pct_per_stream_20": figure(
            twenty["cpu_pct"] / 20, "% of one core",
            f"CPU / wall over {steady:.0f} s with 20 streams, divided by 20; {how}"),
        "service.stop_s": figure(statistics.median(r["stop_s"] for r in one), "s",
                                 "SIGTERM -> exit 0 (drain: end alarms, flush outbox, publish offline), 1 stream"),
        "service.ready_20_streams_s": figure(twenty["ready_s"], "s",
                                             f"process start -> READY=1 with 20 streams; {how}"),
    }
    return {"figures": figures}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
