"""The EEG behind an alarm: the last seconds of signal the model saw up to the decision, kept with the alarm.

With each alarm start the pipeline cuts ``SNIPPET_S`` seconds of the preprocessed signal (the model's channels,
filtered as the model saw them) ending at the decision, thins it for display (``POINTS`` per channel, keeping each
bin's largest deflection so a spike survives) and hands it on: the daemon journals it beside the alarm (``labels
export`` writes it out for review) and publishes it retained on ``<prefix>/<patient>/eeg/<alarm_id>``
(docs/alarm.schema.json, ``eeg``), where the station shows it on the alarm card. Bounded: at most
``MAX_CHANNELS`` x ``POINTS`` integers (about 25 kB of JSON for 16 channels).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

SNIPPET_S = 10.0  # seconds of signal up to the decision
POINTS = 400  # per channel, for display (40 per second over 10 s)
MAX_CHANNELS = 32
EEG_SCHEMA = "seizurewatch/eeg/1"


def eeg_topic(prefix: str, patient: str, alarm_id: str) -> str:
    return f"{prefix}/{patient}/eeg/{alarm_id}"


class SignalTail:
    """The last ``keep_s`` seconds of a stream's preprocessed signal, (channels, samples) at ``rate``, on stream
    time. Cleared at a gap or a loss: a snippet never joins two pieces of signal as if they were one."""

    def __init__(self, channels: tuple[str, ...], rate: float, keep_s: float = 2 * SNIPPET_S) -> None:
        self.channels, self.rate, self.keep_s = channels, rate, keep_s
        self.blocks: deque[tuple[float, np.ndarray]] = deque()  # (stream time of the first sample, samples)

    def clear(self) -> None:
        self.blocks.clear()

    def push(self, t0: float, x: np.ndarray) -> None:
        if x.shape[1] == 0:
            return
        self.blocks.append((t0, x))
        end = t0 + x.shape[1] / self.rate
        while self.blocks and self.blocks[0][0] + self.blocks[0][1].shape[1] / self.rate < end - self.keep_s:
            self.blocks.popleft()

    def cut(self, t_end: float, seconds: float = SNIPPET_S) -> tuple[float, np.ndarray] | None:
        """(stream time of its first sample, samples) of the ``seconds`` before ``t_end``; None if none kept."""
        if not self.blocks:
            return None
        t_first = self.blocks[0][0]
        x = np.concatenate([b for _, b in self.blocks], axis=1)
        stop = min(x.shape[1], max(int(round((t_end - t_first) * self.rate)), 0))
        start = max(stop - int(round(seconds * self.rate)), 0)
        if stop - start < 2:
            return None
        return t_first + start / self.rate, x[:, start:stop]


def thin(x: np.ndarray, points: int = POINTS) -> np.ndarray:
    """At most ``points`` samples per channel: each bin keeps its largest deflection from the channel's median."""
    n = x.shape[1]
    if n <= points:
        return x
    edges = np.linspace(0, n, points + 1).astype(int)
    centred = x - np.median(x, axis=1, keepdims=True)
    out = np.empty((x.shape[0], points), dtype=x.dtype)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        idx = np.argmax(np.abs(centred[:, a:b]), axis=1) + a
        out[:, i] = x[np.arange(x.shape[0]), idx]
    return out


def snippet_payload(patient: str, alarm_id: str, t0: float, x: np.ndarray, rate: float,
                    channels: tuple[str, ...], probability: float | None) -> dict[str, Any]:
    """The retained, journaled record of what the model saw (docs/alarm.schema.json, ``eeg``)."""
    x = np.nan_to_num(x[:MAX_CHANNELS], nan=0.0, posinf=0.0, neginf=0.0)
    shown = thin(x)
    return {"schema": EEG_SCHEMA, "patient": patient, "alarm_id": alarm_id, "t_start": round(t0, 3),
            "t_end": round(t0 + x.shape[1] / rate, 3), "rate": round(shown.shape[1] * rate / x.shape[1], 4),
            "unit": "uV", "channels": list(channels[:MAX_CHANNELS]),
            "probability": None if probability is None else round(float(probability), 5),
            "data": np.round(shown).astype(int).tolist()}
