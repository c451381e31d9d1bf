"""Per-window probabilities over a whole recording, through the daemon's own streaming path
(EDF replay source -> Preprocessor -> RingBuffer -> model -> AlarmDecision), so what the
researcher sees is what the nurse would have seen. Writes a CSV, a timeline PNG and the alarms as
SzCORE's hypothesis events.tsv."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seizurewatch.config import DecisionConfig
from seizurewatch.decision import AlarmDecision
from seizurewatch.errors import DataError
from seizurewatch.research.labels import is_join, is_seizure

if TYPE_CHECKING:
    from seizurewatch.replay import ReplayResult


@dataclass
class Trace:
    """One recording replayed through the daemon: a probability per hop and what it raised."""

    recording: str
    model: str
    t: np.ndarray  # window end times, s (stream time)
    p: np.ndarray  # probability (first output) per window
    duration: float
    threshold: float
    decision: DecisionConfig
    seizures: list[tuple[float, float]] = field(default_factory=list)
    joins: list[float] = field(default_factory=list)
    alarms: list[tuple[float, float]] = field(default_factory=list)  # (start, end) as the daemon raised them
    annotation_source: str = ""
    start_datetime: str = ""  # the recording's start (ISO), "" when its header does not say
    hop_s: float = 1.0  # the model's hop: a rule in seconds is this many hops (``config.rule_in_hops``)
    outputs: np.ndarray | None = None  # (windows, outputs): every output per window (``p`` is column 0)
    output_names: tuple[str, ...] = ()

    def output(self, name: str) -> np.ndarray | None:
        """The named model output per window (e.g. ``early``), None when the model has no such output."""
        if self.outputs is None or name not in self.output_names:
            return None
        return self.outputs[:, self.output_names.index(name)]


def alarm_spans(t: np.ndarray, p: np.ndarray, threshold: float, cfg: DecisionConfig,
                duration: float, early: np.ndarray | None = None) -> list[tuple[float, float]]:
    """(start, end) of each alarm the daemon's AlarmDecision raises on this probability trace (and the
    early output per window, a second trigger when ``cfg`` has an early gain); an alarm still on at the
    end of the recording ends there."""
    dec = AlarmDecision(cfg, threshold)
    spans, start = [], None
    second = early.tolist() if early is not None and cfg.early_gain else [None] * len(t)
    for ti, pi, ei in zip(t.tolist(), p.tolist(), second):
        for ev in dec.update(ti, pi, ei):
            if ev.event == "start":
                start = ev.t
            elif ev.event == "end" and start is not None:
                spans.append((start, ev.t))
                start = None
    if start is not None:
        spans.append((start, max(duration, start)))
    return spans


def stream_probabilities(edf: str | Path, model: str | Path | None = None, decision: DecisionConfig | None = None,
                         device: str | None = None) -> Trace:
    """Replay ``edf`` through a real Daemon (``seizurewatch.replay.replay``, no MQTT): probabilities and alarms."""
    from seizurewatch.replay import ReplayOptions, replay

    decision = decision or DecisionConfig()
    res = replay(edf, ReplayOptions(model=model, decision=decision, device=device))
    return trace_of(res, decision)


def trace_of(res: ReplayResult, decision: DecisionConfig) -> Trace:
    """The research view of one replay: seizures and seams from its annotations."""
    anns = res.annotations
    return Trace(
        recording=res.recording, model=res.meta.name, t=res.t, p=res.p, duration=res.duration,
        threshold=res.threshold,  # the rule (and early gain) applied
        decision=decision.with_rule(res.meta.rule, res.meta.hop_s, res.meta.early_gain),
        seizures=[(a.onset, a.end) for a in anns if is_seizure(a.description)],
        joins=[a.onset for a in anns if is_join(a.description)], alarms=res.alarms,
        annotation_source=res.annotation_source, start_datetime=res.start_datetime, hop_s=res.meta.hop_s,
        outputs=res.outputs, output_names=tuple(res.meta.outputs),
    )


def stream_many(recordings: Sequence[str | Path], model: str | Path | None = None,
                decision: DecisionConfig | None = None, device: str | None = None,
                scheduler: str | None = None, progress: bool = False) -> list[Trace]:
    """``stream_probabilities`` of each recording, one task per recording (``parallel.run_tasks``)."""
    from seizurewatch.research.parallel import run_tasks

    fn = functools.partial(stream_probabilities, model=str(model) if model else None, decision=decision,
                           device=device)
    return run_tasks(fn, [str(r) for r in recordings], scheduler=scheduler, progress=progress)


def write_csv(trace: Trace, path: str | Path) -> Path:
    """t_end, probability, over threshold, inside an alarm, inside an annotated seizure."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        f.write("t_end,probability,over_threshold,alarm,seizure\n")
        for t, pr in zip(trace.t.tolist(), trace.p.tolist()):
            alarm = any(a <= t <= b for a, b in trace.alarms)
            sz = any(a <= t <= b for a, b in trace.seizures)
            f.write(f"{t:.3f},{pr:.6f},{int(pr >= trace.threshold)},{int(alarm)},{int(sz)}\n")
    return p


def plot_timeline(trace: Trace, path: str | Path) -> Path:
    """Write the timeline PNG of ``trace`` to ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(timeline_png(trace))
    return p


def timeline_png(trace: Trace) -> bytes:
    """The timeline of one replay as PNG bytes: probability, threshold, annotated seizures, alarms, seams
    (bytes, so a task on another machine can hand it back)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.2), dpi=110)
    for i, (a, b) in enumerate(trace.seizures):
        ax.axvspan(a, b, color="#f4a6a6", alpha=0.6, label="annotated seizure" if i == 0 else None)
    for i, (a, b) in enumerate(trace.alarms):
        ax.axvspan(a, b, ymin=0.0, ymax=0.08, color="#c0392b", label="alarm" if i == 0 else None)
    for i, j in enumerate(trace.joins):
        ax.axvline(j, color="#888", ls=":", lw=0.8, label="seam (join)" if i == 0 else None)
    if len(trace.t) and trace.t[0] > 0:
        ax.axvspan(0, float(trace.t[0]), color="#e3e3e3",
                   label=f"unscored (before the first full window, {trace.t[0]:g} s)")
    ax.plot(trace.t, trace.p, color="#1f4e79", lw=1.2, label="probability")
    ax.axhline(trace.threshold, color="#e67e22", ls="--", lw=1, label=f"threshold {trace.threshold:.3f}")
    ax.set_xlim(0, max(trace.duration, float(trace.t.max()) if len(trace.t) else 1.0))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s, window end)")
    ax.set_ylabel("P(seizure)")
    k, n = trace.decision.rule
    ax.set_title(f"{Path(trace.recording).name} - {trace.model}: alarm when {k} of the last {n} hops "
                 f"({k * trace.hop_s:g} of {n * trace.hop_s:g} s) reach the "
                 f"threshold", fontsize=10, loc="left", pad=18)
    # above the axes, under the title, so it never covers the trace
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncol=6, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_alarm_events(trace: Trace, path: str | Path) -> Path:
    """The alarms the daemon raised as SzCORE's hypothesis file (BIDS ``*_events.tsv``): one ``sz`` row per
    alarm (raised .. ended, the peak probability in it as the confidence), or one ``bckg`` row."""
    from seizurewatch.research.annotations import write_bids_events

    events = []
    for a, b in trace.alarms:
        inside = trace.p[(trace.t >= a) & (trace.t <= b)]
        events.append((a, min(b, trace.duration), float(inside.max()) if len(inside) else None))
    return write_bids_events(path, events, trace.duration, trace.start_datetime)


def predict_recording(edf: str | Path, model: str | Path | None, out_dir: str | Path,
                      decision: DecisionConfig | None = None, device: str | None = None) -> dict[str, Any]:
    """The PREDICT view for one recording: probabilities CSV, timeline PNG and the alarms as SzCORE's
    hypothesis ``*_events.tsv`` (named as BIDS names a recording's events); returns a summary."""
    from seizurewatch.research.annotations import events_path

    out = Path(out_dir)
    stem = Path(edf).stem
    events = out / events_path(edf).name
    if events.resolve() == events_path(edf).resolve():
        raise DataError(f"{events}: is the recording's own events file; give predict another --out folder")
    trace = stream_probabilities(edf, model, decision, device)
    csv_path = write_csv(trace, out / f"{stem}-probabilities.csv")
    png = plot_timeline(trace, out / f"{stem}-timeline.png")
    tsv = write_alarm_events(trace, events)
    return {"recording": str(edf), "model": trace.model, "windows": int(len(trace.t)), "threshold": trace.threshold,
            "seizures": trace.seizures, "alarms": trace.alarms, "csv": str(csv_path), "png": str(png),
            "events": str(tsv), "annotations": trace.annotation_source}


def is_clip_input(path: str | Path) -> bool:
    """A ``.mat`` clip or a folder of them (what ``predict`` scores per clip instead of replaying)."""
    p = Path(path)
    return p.suffix.lower() == ".mat" or p.is_dir()


def predict_clips(paths: Sequence[str | Path], model: str | Path | None, out_dir: str | Path,
                  early_s: float = 15.0) -> dict[str, Any]:
    """Clips (Kaggle ``.mat`` files, or folders of them) scored one probability each, never replayed: each clip
    through the model's own preprocessing, cut into its windows, the mean of their outputs
    (``research.unitscore``). Writes ``clips-probabilities.csv``; with both classes among the clips, the
    challenge's seizure and early AUCs and their mean."""
    from seizurewatch.modelfile import load_model
    from seizurewatch.research.annotations import find_clips
    from seizurewatch.research.dataset.plan import clip_signal
    from seizurewatch.research.dataset.recording import window_views
    from seizurewatch.research.train import predict
    from seizurewatch.research.unitscore import Units, score_units, unit_scores
    from seizurewatch.resources import default_model_path

    loaded = load_model(model or default_model_path())
    meta = loaded.meta
    files = [c.path for p in paths for c in (find_clips(p) if Path(p).is_dir() else [None]) if c] + [
        str(p) for p in paths if not Path(p).is_dir()]
    if not files:
        raise DataError(f"{', '.join(str(p) for p in paths)}: no clips")
    names, probs, ys, lat, counts = [], [], [], {}, []
    for f in files:
        clip, sig = clip_signal(f, meta.preprocess)
        n = meta.window_samples  # the clip in whole windows, side by side
        starts = np.arange(0, sig.shape[1] - n + 1, n) / meta.preprocess.rate
        if not len(starts):
            raise DataError(f"{f}: shorter ({sig.shape[1] / meta.preprocess.rate:g} s) than the model's window "
                            f"({meta.window_s:g} s)")
        pr = predict(loaded.module, window_views(sig, starts, meta.preprocess.rate, meta.schedule, f)[:])
        names += [Path(f).name] * len(pr)
        probs.append(pr)
        ys += [int(clip.label == "ictal")] * len(pr)
        counts.append(len(pr))
        if clip.latency is not None:
            lat[Path(f).name] = float(clip.latency)
    p = np.concatenate(probs)
    kind = "clips" if all("_segment_" in Path(f).stem for f in files) else "segments"
    us = unit_scores(Units(kind, np.asarray(names, dtype=object), lat), np.asarray(ys)[:, None], p, early_s,
                     meta.outputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "clips-probabilities.csv"
    with open(csv_path, "w", encoding="utf-8") as fh:
        fh.write("clip,label,latency_s,score,flagged\n")
        for k, name in enumerate(us.names):
            la = "" if np.isnan(us.latency[k]) else f"{us.latency[k]:g}"
            fh.write(f"{name},{'ictal' if us.ictal[k] else 'interictal'},{la},{us.p[k]:.6f},"
                     f"{int(us.p[k] >= meta.threshold)}\n")
    return {"model": meta.name, "clips": len(us.names), "threshold": meta.threshold,
            "flagged": int((us.p >= meta.threshold).sum()), "csv": str(csv_path),
            "scores": score_units(us, early_s)}
