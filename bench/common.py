"""Helpers shared by the benchmark modules: figures, timing, machine, and the inputs they run on.

Every benchmark module ``bench/bench_*.py`` exposes ``run(quick: bool) -> dict`` and returns
``{"figures": {name: figure(...)}, ...}``; a figure is ``{"value", "unit", "setup"}``.

Inputs are built into one work folder per suite run (``BENCH_WORKDIR``, set by the runner,
else a temporary folder of this process), never into the repository:

- ``synth_recording(seconds)``: a 23-channel x 256 Hz EDF (CHB-MIT labels) tiled from the
  shared recordings (Dog_1 iEEG and the scalp8 EEG, resampled to 256 Hz).
- ``timing_convnet()``: the seed ConvNet for 23 ch x 256 Hz x 30 s windows, hop 1 s, with
  RANDOM weights. It is for timing only: untrained, never shipped, never used to decide anything.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEIZUREWATCH_DATA", ROOT.parent / "shared" / "data"))
DOG1 = DATA / "dog1"
SCALP8 = DATA / "scalp8"
SHIPPED_MODELS = ROOT / "models"
CHBMIT_DEVICE = ROOT / "devices" / "chbmit-23.yaml"

SYNTH_RATE = 256.0
SYNTH_HOUR_S = 3600.0
TIMING_WINDOW_S = 30.0
TIMING_HOP_S = 1.0
TIMING_BANDPASS = (1.0, 70.0)


# ----- figures ---------------------------------------------------------------------------
def figure(value: float, unit: str, setup: str, **extra: Any) -> dict[str, Any]:
    """One measured number with its unit and a sentence saying how it was measured."""
    v = float(value)
    return {"value": round(v, 6) if abs(v) < 1e6 else round(v, 1), "unit": unit, "setup": setup, **extra}


def percentiles(samples: list[float] | np.ndarray, qs: tuple[float, ...] = (50, 99)) -> dict[str, float]:
    arr = np.asarray(samples, dtype=np.float64)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as elapsed: ...; elapsed()`` -> seconds (perf_counter)."""
    t0 = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - t0
    end.append(time.perf_counter())


def repeat_timing(fn: Callable[[], Any], n: int, warmup: int = 2) -> list[float]:
    """Seconds per call of ``fn`` over ``n`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----- machine ---------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    import seizurewatch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "cpu_model": cpu_model(),
        "memory_gib": mem_total,
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),  # each figure's setup says what it used
        "torch_interop_threads_default": torch.get_num_interop_threads(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "seizurewatch": seizurewatch.__version__,
        "loadavg_1m": round(os.getloadavg()[0], 2),  # > cores: other work shared the CPU, figures are low
    }


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


# ----- work folder -----------------------------------------------------------------------
_OWN_WORKDIR: Path | None = None


def workdir() -> Path:
    """The suite's scratch folder (shared by the module subprocesses through BENCH_WORKDIR)."""
    global _OWN_WORKDIR
    env = os.environ.get("BENCH_WORKDIR")
    if env:
        p = Path(env)
        p.mkdir(parents=True, exist_ok=True)
        return p
    if _OWN_WORKDIR is None:
        _OWN_WORKDIR = Path(tempfile.mkdtemp(prefix="seizurewatch-bench-"))
        import atexit

        atexit.register(shutil.rmtree, _OWN_WORKDIR, True)
    return _OWN_WORKDIR


def _publish(tmp: Path, final: Path) -> Path:
    os.replace(tmp, final)  # atomic: concurrent builders never see a half-written file
    return final


# ----- the synthesised recording ---------------------------------------------------------
def chbmit_channels() -> tuple[str, ...]:
    from seizurewatch.devices import load_device

    return tuple(load_device(str(CHBMIT_DEVICE)).channels)


def _tiles_256hz() -> np.ndarray:
    """Real EEG from the shared recordings at 256 Hz: (23, n) float32 µV.

    Channels 0-15: Dog_1 rec01..04 (16 ch, 400 Hz -> 256 Hz); channels 16-22: scalp8
    (first 7 of 8 channels, 100 Hz -> 256 Hz), tiled to the Dog_1 length.
    """
    from scipy.signal import resample_poly

    from seizurewatch.edfio import EdfRecording

    dog = []
    for i in range(1, 5):
        with EdfRecording(DOG1 / f"dog1_rec0{i}.edf") as rec:
            dog.append(resample_poly(rec.read(0, rec.header.n_samples), 16, 25, axis=1))
    dog_x = np.concatenate(dog, axis=1)
    with EdfRecording(SCALP8 / "scalp8_rec01.edf") as rec:
        scalp = resample_poly(rec.read(0, rec.header.n_samples)[:7], 64, 25, axis=1)
    reps = int(np.ceil(dog_x.shape[1] / scalp.shape[1]))
    scalp_x = np.tile(scalp, (1, reps))[:, : dog_x.shape[1]]
    return np.concatenate([dog_x, scalp_x], axis=0).astype(np.float32)


def synth_recording(seconds: float = SYNTH_HOUR_S) -> Path:
    """A 23 ch x 256 Hz EDF of ``seconds`` seconds, tiled from real shared recordings (cached)."""
    import pyedflib

    final = workdir() / f"synth-chbmit23-256hz-{int(seconds)}s.edf"
    if final.is_file():
        return final
    labels = chbmit_channels()
    tiles = _tiles_256hz()
    n = int(round(seconds * SYNTH_RATE))
    reps = int(np.ceil(n / tiles.shape[1]))
    x = np.tile(tiles, (1, reps))[:, :n].astype(np.float64)
    tmp = final.with_suffix(f".{os.getpid()}.tmp")
    rate = int(SYNTH_RATE)
    w = pyedflib.EdfWriter(str(tmp), len(labels), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        heads = []
        for i, lab in enumerate(labels):
            lo, hi = float(np.floor(x[i].min())) - 1.0, float(np.ceil(x[i].max())) + 1.0
            heads.append({"label": lab.rsplit("-", 1)[0] if lab.startswith("T8-P8-") else lab,
                          "dimension": "uV", "sample_frequency": rate, "physical_min": lo,
                          "physical_max": hi, "digital_min": -32768, "digital_max": 32767,
                          "transducer": "", "prefilter": ""})
        w.setSignalHeaders(heads)  # type: ignore[arg-type]
        w.setPatientCode("synthetic")
        for start in range(0, n - n % rate, rate * 60):  # data records of 1 s, written a minute at a time
            stop = min(start + rate * 60, n - n % rate)
            w.writeSamples([np.ascontiguousarray(x[i, start:stop]) for i in range(len(labels))])
    finally:
        w.close()
    return _publish(tmp, final)


# ----- the timing-only seed ConvNet ------------------------------------------------------
def timing_convnet(suffix: str = ".pt", hop_s: float = TIMING_HOP_S) -> Path:
    """Seed ConvNet for 23 ch x 256 Hz x 30 s, hop ``hop_s`` (1 s), RANDOM weights (seed 0). Timing only."""
    import torch

    from seizurewatch.modelfile import save_model
    from seizurewatch.preprocess import PreprocessSpec
    from seizurewatch.research.architectures import Deployable, build

    hop_tag = "" if hop_s == TIMING_HOP_S else f"-hop{hop_s:g}"
    final = workdir() / f"timing-seed-convnet-23ch{hop_tag}{suffix}"
    if final.is_file():
        return final
    labels = chbmit_channels()
    n_samples = int(TIMING_WINDOW_S * SYNTH_RATE)
    torch.manual_seed(0)
    net = build("seed_convnet", n_channels=len(labels), n_samples=n_samples, n_outputs=1)
    model = Deployable(net, torch.zeros(len(labels)), torch.full((len(labels),), 50.0))
    spec = PreprocessSpec(channels=labels, rate=SYNTH_RATE, bandpass=TIMING_BANDPASS, notch=None)
    meta = {
        "name": "timing-seed-convnet-23ch",
        "description": "UNTRAINED seed ConvNet (random weights, seed 0) for benchmark timing only; never ship",
        "task": "timing-only",
        "outputs": ["seizure"],
        "preprocess": spec.to_json(),
        "window_s": TIMING_WINDOW_S,
        "hop_s": hop_s,
        "threshold": {"value": 0.5, "policy": "none (untrained, timing only)"},
        "training": {"config": {"arch": "seed_convnet", "arch_kwargs": {}}, "untrained": True},
        "architecture": net.get_config(),  # the model describes itself, as train writes it (export rebuilds from it)
    }
    tmp = final.with_name(f"tmp{os.getpid()}-{final.name}")
    save_model(model, meta, tmp, torch.zeros(2, len(labels), n_samples))
    return _publish(tmp, final)


def shipped_models() -> list[Path]:
    return sorted([*SHIPPED_MODELS.glob("*.pt"), *SHIPPED_MODELS.glob("*.pt2")])


def log(msg: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Mosquitto:
    """A throwaway Mosquitto on 127.0.0.1 (anonymous, no persistence). ``start()`` again after
    ``stop()`` reuses the same port, which is how the outbox benchmark makes an outage."""

    def __init__(self, folder: Path) -> None:
        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.conf = folder / f"mosquitto-{self.port}.conf"
        # set_tcp_nodelay: PUBACKs leave at once, as the README advises for a broker serving seizurewatch
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             "set_tcp_nodelay true\nlog_dest stderr\nlog_type error\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
