"""Look at a recording before training on it: header, traces with seizures shaded, whole-file
per-channel statistics (read in chunks, never the whole file at once) and value distributions.
Writes PNGs, ``stats.json`` and one offline ``report.html``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from seizurewatch.devices import canonical_label  # noqa: E402
from seizurewatch.edfio import EdfHeader  # noqa: E402
from seizurewatch.errors import DataError  # noqa: E402
from seizurewatch.quality import QualityChecker  # noqa: E402
from seizurewatch.recordings import Recording, open_recording  # noqa: E402
from seizurewatch.research.annotations import find_annotations  # noqa: E402
from seizurewatch.research.labels import is_join, is_seizure  # noqa: E402
from seizurewatch.research.report import Section, write_report  # noqa: E402
from seizurewatch.types import Annotation  # noqa: E402

log = logging.getLogger(__name__)

LINE_FREQS = (50.0, 60.0)
HIST_BINS = 100


@dataclass(frozen=True)
class ChannelStats:
    channel: str
    unit: str
    mean: float
    std: float
    min: float
    max: float
    line_50hz: float  # share of power within ±1 Hz of 50 Hz (0.5 Hz .. Nyquist)
    line_60hz: float
    flat_s: float  # seconds (1-s blocks) with std below the daemon's flatline limit
    flat_fraction: float
    flags: tuple[str, ...]  # "flatline", "line_noise_50hz", "line_noise_60hz"


def _line_share(freqs: np.ndarray, psd: np.ndarray, f0: float) -> np.ndarray:
    if f0 >= freqs[-1] - 1:
        return np.zeros(psd.shape[0])
    total = psd[:, freqs >= 0.5].sum(axis=1) + 1e-20
    return psd[:, np.abs(freqs - f0) <= 1.0].sum(axis=1) / total


def channel_stats(rec: Recording, chunk_s: float = 60.0) -> list[ChannelStats]:
    """Whole-file statistics per channel, accumulated chunk by chunk (float64 sums)."""
    h = rec.header
    rate, C = h.rate, len(h.channels)
    sec = max(1, int(round(rate)))
    chunk = sec * max(1, int(chunk_s))
    n = 0
    s1, s2 = np.zeros(C), np.zeros(C)
    lo, hi = np.full(C, np.inf), np.full(C, -np.inf)
    flat_blocks, blocks = np.zeros(C), 0
    nper = min(int(2 * rate), h.n_samples)
    psd_sum, psd_w, freqs = None, 0.0, None
    for _, x in rec.chunks(chunk):
        xd = x.astype(np.float64)
        n += x.shape[1]
        s1 += xd.sum(axis=1)
        s2 += (xd * xd).sum(axis=1)
        lo, hi = np.minimum(lo, x.min(axis=1)), np.maximum(hi, x.max(axis=1))
        full = x.shape[1] // sec
        if full:
            b = xd[:, : full * sec].reshape(C, full, sec)
            flat_blocks += (b.std(axis=2) < QualityChecker.FLAT_STD).sum(axis=1)
            blocks += full
        if x.shape[1] >= nper:
            freqs, p = signal.welch(xd, fs=rate, nperseg=nper, axis=1)
            psd_sum = p * x.shape[1] if psd_sum is None else psd_sum + p * x.shape[1]
            psd_w += x.shape[1]
    mean = s1 / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean**2, 0.0))
    if psd_sum is not None and freqs is not None:
        psd = psd_sum / psd_w
        l50, l60 = _line_share(freqs, psd, 50.0), _line_share(freqs, psd, 60.0)
    else:
        l50 = l60 = np.zeros(C)
    out = []
    for i, ch in enumerate(h.channels):
        flat_frac = float(flat_blocks[i] / blocks) if blocks else float(std[i] < QualityChecker.FLAT_STD)
        flags = []
        if flat_frac > 0.5 or std[i] < QualityChecker.FLAT_STD:
            flags.append("flatline")
        for f0, share in ((50, l50[i]), (60, l60[i])):
            if share > QualityChecker.LINE_FRACTION:
                flags.append(f"line_noise_{f0}hz")
        out.append(ChannelStats(ch, "µV", float(mean[i]), float(std[i]), float(lo[i]), float(hi[i]),
                                float(l50[i]), float(l60[i]), float(flat_blocks[i]), flat_frac, tuple(flags)))
    return out


def histograms(rec: Recording, stats: list[ChannelStats], chunk_s: float = 60.0) -> list[tuple[np.ndarray,
                                                                                                   np.ndarray]]:
    """Per-channel value histograms over the whole file (second chunked pass; ranges from ``stats``)."""
    edges = [np.linspace(s.min, s.max if s.max > s.min else s.min + 1.0, HIST_BINS + 1) for s in stats]
    counts = [np.zeros(HIST_BINS, dtype=np.int64) for _ in stats]
    for _, x in rec.chunks(max(1, int(chunk_s * rec.header.rate))):
        for i in range(len(stats)):
            counts[i] += np.histogram(x[i], bins=edges[i])[0]
    return list(zip(counts, edges))


def _pick(h: EdfHeader, channel: str | None) -> list[int]:
    if channel is None:
        return list(range(len(h.channels)))
    want = canonical_label(channel)
    for i, lab in enumerate(h.channels):
        if canonical_label(lab) == want:
            return [i]
    raise DataError(f"{h.path}: no channel {channel!r}; the file has: {', '.join(h.channels)}")


def plot_traces(rec: Recording, anns: list[Annotation], out: Path, channel: str | None, start: float,
                window: float) -> Path:
    h = rec.header
    if start < 0 or start >= h.duration:
        raise DataError(f"{h.path}: start {start:g} s is outside the recording (0-{h.duration:g} s)")
    if window <= 0:
        raise DataError(f"{h.path}: window must be > 0 s, got {window:g}")
    idx = _pick(h, channel)
    i0 = int(start * h.rate)
    x = rec.read(i0, int(window * h.rate), idx)
    t = start + np.arange(x.shape[1]) / h.rate
    fig_h = 3.0 if len(idx) == 1 else min(2.0 + 0.45 * len(idx), 14.0)
    fig, ax = plt.subplots(figsize=(12, fig_h), dpi=100)
    if len(idx) == 1:
        ax.plot(t, x[0], lw=0.6, color="#1f3b73")
        ax.set_ylabel(f"{h.channels[idx[0]]} (µV)")  # every reader returns µV
    else:
        xc = x - np.median(x, axis=1, keepdims=True)
        spread = float(np.median(np.percentile(np.abs(xc), 99, axis=1))) or 1.0
        offsets = -np.arange(len(idx)) * 2.2 * spread
        for row in range(len(idx)):
            ax.plot(t, xc[row] + offsets[row], lw=0.5, color="#1f3b73")
        ax.set_yticks(offsets, [h.channels[i] for i in idx])
        ax.set_ylim(offsets[-1] - 2 * spread, 2 * spread)
        ax.text(1.0, 1.01, f"spacing {2.2 * spread:.3g} µV", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="#555")
    t_end = t[-1] if len(t) else start
    shaded = joined = False
    for a in anns:
        if is_seizure(a.description) and a.onset < t_end and a.end > start:
            ax.axvspan(max(a.onset, start), min(a.end, t_end), color="#d62728", alpha=0.15,
                       label=None if shaded else "seizure")
            shaded = True
        elif is_join(a.description) and start <= a.onset <= t_end:
            ax.axvline(a.onset, color="#ff7f0e", ls="--", lw=0.8, label=None if joined else "join (seam)")
            joined = True
    if shaded or joined:
        ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    ax.set_xlim(start, max(t_end, start + 1.0 / h.rate))
    ax.set_xlabel("time (s)")
    which = h.channels[idx[0]] if len(idx) == 1 else f"{len(idx)} channels"
    ax.set_title(f"{Path(h.path).name}: {which}, {start:g}-{t_end:.4g} s")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_distribution(hists: list[tuple[np.ndarray, np.ndarray]], stats: list[ChannelStats], out: Path,
                      title: str) -> Path:
    C = len(stats)
    cols = min(4, C)
    rows = int(np.ceil(C / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), dpi=90, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= C:
            ax.axis("off")
            continue
        counts, edges = hists[i]
        ax.stairs(np.maximum(counts, 0.8), edges, fill=True, color="#4c72b0", alpha=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{stats[i].channel}" + (" (flat)" if "flatline" in stats[i].flags else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}: value distribution per channel (log count)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


@dataclass
class InspectResult:
    report: Path
    images: list[Path]
    stats: list[ChannelStats]
    header: EdfHeader
    annotations: list[Annotation]


def inspect_recording(path: str | Path, out_dir: str | Path, channel: str | None = None, start: float = 0.0,
                      window: float = 10.0, rate: float | None = None, units: str | None = None) -> InspectResult:
    """Header, traces (one channel or all) from ``start`` over ``window`` seconds, whole-file stats and
    value distributions of one recording (any format of seizurewatch.recordings; ``rate`` for text);
    writes PNGs, stats.json and report.html into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    found = find_annotations(path, required=False)
    anns = found.annotations if found else []
    with open_recording(path, rate=rate, units=units) as rec:
        h = rec.header
        stem = Path(h.path).stem
        traces = plot_traces(rec, anns, out / f"{stem}-traces-{start:g}s.png", channel, start, window)
        stats = channel_stats(rec)
        hists = histograms(rec, stats)
    dist = plot_distribution(hists, stats, out / f"{stem}-distribution.png", Path(h.path).name)
    (out / "stats.json").write_text(json.dumps({
        "file": h.path, "channels": list(h.channels), "rate": h.rate, "duration_s": h.duration,
        "annotations": [asdict(a) for a in anns], "annotations_from": found.source if found else None,
        "stats": [asdict(s) for s in stats]}, indent=1) + "\n")
    header = Section("Header", tables=[(["field", "value"], [
        ["file", h.path], ["channels", f"{len(h.channels)}: {', '.join(h.channels)}"],
        ["sampling rate", f"{h.rate:g} Hz"], ["samples per channel", h.n_samples],
        ["duration", f"{h.duration:g} s ({h.duration / 60:.1f} min)"],
        ["units", f"{', '.join(sorted(set(h.units))) or 'none'} (declared; read as µV)"],
        ["start", h.start_datetime or "unknown"],
        ["skipped signals (other rates)", ", ".join(h.skipped_channels) or "none"],
    ])])
    n_sz = sum(is_seizure(a.description) for a in anns)
    ann_rows = [[f"{a.onset:g}", f"{a.duration:g}", a.description] for a in anns[:500]]
    ann_sec = Section("Annotations", paragraphs=[
        f"{len(anns)} annotations ({n_sz} seizures) from {found.source if found else 'nowhere'}."
        + (" Only the first 500 are listed." if len(anns) > 500 else "")],
        tables=[(["onset (s)", "duration (s)", "description"], ann_rows)] if anns else [],
        warnings=[] if anns else ["No annotations found (EDF+, sidecar .csv/.csv_bi or *-summary.txt)."])
    trace_sec = Section(f"Traces {start:g}-{start + window:g} s", images=[traces],
                        paragraphs=["Seizures shaded red; dashed orange lines mark seams (join annotations)."])
    stat_rows = [[s.channel, s.unit, s.mean, s.std, s.min, s.max, s.line_50hz, s.line_60hz, s.flat_s,
                  ", ".join(s.flags) or "ok"] for s in stats]
    warn = [f"{s.channel}: {', '.join(s.flags)}" for s in stats if s.flags]
    stat_sec = Section("Per-channel statistics (whole file)", tables=[(
        ["channel", "unit", "mean", "std", "min", "max", "50 Hz share", "60 Hz share", "flat s", "check"],
        stat_rows)], warnings=warn, paragraphs=[
        "Line-noise share: power within ±1 Hz of the mains frequency over the power from 0.5 Hz to Nyquist "
        f"(flagged above {QualityChecker.LINE_FRACTION:g}). Flat: 1-s blocks with std below "
        f"{QualityChecker.FLAT_STD:g} (the daemon's flatline limit), flagged when over half the file."])
    dist_sec = Section("Value distribution", images=[dist])
    report = write_report(out / "report.html", f"Inspect: {Path(h.path).name}",
                          [header, ann_sec, trace_sec, stat_sec, dist_sec])
    log.info("inspect written", extra={"file": h.path, "report": str(report)})
    return InspectResult(report, [traces, dist], stats, h, anns)
