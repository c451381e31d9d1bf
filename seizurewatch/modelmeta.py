"""A model file's ``metadata.json``, parsed once into a typed, frozen ``ModelMeta``.

The document is read with ``typedyaml`` (the config files' converter: every error names the key and
what was expected), then checked across keys (channels, window against hop and rate, the stored
decision rule, the risk levels). Keys this version does not read (``training``, ``metrics``,
``history``...) are kept in ``ModelMeta.raw``, the document as stored, which the research tools
write back when they re-save a model; nobody digs the daemon's facts out of it.

Outputs are typed by the metadata: an output named in ``risk`` is a prediction output (its horizon and
the thresholds of its levels, ``risk.<output>.horizon_s/elevated/high``), published as a risk level
(``seizurewatch/risk.py``); the first output not named there is the detection output the alarms
follow. A model without a ``risk`` section alarms on its first output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from seizurewatch.checks import check_number
from seizurewatch.config import MAX_EARLY_GAIN, stored_gain, stored_rule
from seizurewatch.errors import ConfigError, ModelError
from seizurewatch.preprocess import PreprocessSpec
from seizurewatch.schedule import WindowSchedule
from seizurewatch.typedyaml import load_typed

FORMAT = "seizurewatch-model/1"
REQUIRED_KEYS = ("format", "name", "outputs", "preprocess", "window_s", "hop_s", "threshold", "weights_sha256")
FIX = "re-export the model ('seizurewatch export') or fix its training recipe"


@dataclass(frozen=True)
class RiskOutput:
    """A prediction output: its column in the model's answer, its horizon and its level thresholds."""

    index: int
    name: str
    horizon_s: float
    elevated: float  # smoothed probability from which the level is "elevated"
    high: float  # ... and "high"


@dataclass(frozen=True)
class _Levels:
    """``risk.<output>``."""

    horizon_s: float
    elevated: float
    high: float


@dataclass(frozen=True)
class _Threshold:
    """``threshold``: what the daemon reads of it (the research tools store more: point, auc, chosen_on...)."""

    value: float
    policy: str = "unknown"
    decision: dict[str, Any] | None = None  # the k-of-n rule chosen with it (``config.stored_rule``)


@dataclass(frozen=True)
class _Document:
    """The keys of ``metadata.json`` a model is run by; others are allowed (a format later versions extend)."""

    format: str
    name: str
    outputs: tuple[str, ...]
    preprocess: PreprocessSpec
    window_s: float
    hop_s: float
    threshold: _Threshold
    weights_sha256: str
    risk: dict[str, _Levels] | None = None


@dataclass(frozen=True)
class TrainingRecord:
    """``training``: how the model was made, read by the research tools that retrain or rebuild it, never
    by the daemon (a model runs whatever this block holds; it is parsed when a tool asks)."""

    config: dict[str, Any] | None = None  # the ``TrainConfig`` it was trained with
    best_epoch: int = -1  # -1: not trained by epochs (a forest, an imported model)
    command: str | None = None  # the command line that made it


@dataclass(frozen=True)
class ModelMeta:
    """What a model expects and how its outputs are read; built by ``parse_meta`` (or ``from_raw``)."""

    name: str
    outputs: tuple[str, ...]
    preprocess: PreprocessSpec
    window_s: float
    hop_s: float
    threshold: float
    threshold_policy: str
    # the hash of the weights (metadata ``weights_sha256``); the whole file's is ``LoadedModel.file_sha256``,
    # what ``model.sha256`` pins. Every output names them so: never a bare "sha256"
    weights_sha256: str
    rule: tuple[int, int] | None  # the k-of-n rule stored beside the threshold, in hops of hop_s
    risk_outputs: tuple[RiskOutput, ...]  # the prediction outputs, in output order (empty without ``risk``)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)  # as stored

    @property
    def early_gain(self) -> float | None:
        """The early output's gain as a second trigger stored beside the rule (``config.stored_gain``)."""
        return stored_gain(self.raw.get("threshold"))

    @property
    def detection_output(self) -> int | None:
        """The output the alarms follow: the first one that is not a prediction output (None: none is)."""
        risk = {r.name for r in self.risk_outputs}
        return next((i for i, name in enumerate(self.outputs) if name not in risk), None)

    def training(self) -> TrainingRecord:
        """The ``training`` block (empty when the file has none); ModelError naming the key if malformed."""
        try:
            return load_typed(TrainingRecord, self.raw.get("training"), f"model {self.name!r}: metadata.json",
                              "training", strict=False)
        except ConfigError as exc:
            raise ModelError(str(exc)) from None

    def architecture(self) -> dict[str, Any]:
        """The ``architecture`` block (``get_config`` of the module: what rebuilds it); ModelError without one."""
        block = self.raw.get("architecture")
        if not isinstance(block, dict):
            command = self.training().command
            how = (f"retrain it: {command}" if command else "retrain it with 'seizurewatch train RECIPE' or "
                   "'seizurewatch train --dataset DIR --model MODEL.yaml'")
            raise ModelError(f"model {self.name!r}: its metadata predates the architecture block (no "
                             f"'architecture'), so the module cannot be rebuilt; {how}")
        return dict(block)

    @property
    def schedule(self) -> WindowSchedule:
        """The windows the model takes: ``window_s`` every ``hop_s`` (the ring buffer's, the quality checks')."""
        return WindowSchedule(self.window_s, self.hop_s)

    @property
    def window_samples(self) -> int:
        return self.schedule.window_samples(self.preprocess.rate)


def parse_meta(raw: Any, where: str) -> ModelMeta:
    """``metadata.json`` of the model at ``where`` -> ModelMeta, checked like a config file: every number
    finite and in range; ModelError in one line naming the key and what was expected."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: metadata.json is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelError(f"{where}: metadata.json lacks {', '.join(missing)}")
    if raw["format"] != FORMAT:
        raise ModelError(f"{where}: unsupported model format {raw['format']!r} (expected {FORMAT})")
    try:
        doc = load_typed(_Document, raw, f"{where}: metadata.json", strict=False)
    except ConfigError as exc:
        raise ModelError(f"{exc}; {FIX}") from None
    try:
        return _checked(doc, raw)
    except ValueError as exc:
        raise ModelError(f"{where}: metadata.json: {exc}; {FIX}") from None


def _checked(doc: _Document, raw: dict[str, Any]) -> ModelMeta:
    """The checks across keys, ValueError naming the key; the typed object."""
    pre = doc.preprocess
    if pre.notch == 0:  # written as 0 by older tools: no notch
        pre = dataclasses.replace(pre, notch=None)
    if not pre.channels or not all(c.strip() for c in pre.channels):
        raise ValueError("preprocess.channels: expected a non-empty list of channel labels")
    if len(set(pre.channels)) != len(pre.channels):
        raise ValueError("preprocess.channels: labels must be unique")
    pre.check()
    check_number(doc.window_s, "window_s", low=0, low_open=True, high=3600)
    check_number(doc.hop_s, "hop_s", low=0, low_open=True, high=doc.window_s)
    schedule = WindowSchedule(doc.window_s, doc.hop_s)
    if schedule.window_samples(pre.rate) < 1 or schedule.hop_samples(pre.rate) < 1:
        raise ValueError(f"window_s/hop_s: {doc.window_s:g} s / {doc.hop_s:g} s at {pre.rate:g} Hz "
                         "give no whole sample")
    check_number(doc.threshold.value, "threshold.value", low=0, high=1, low_open=True, high_open=True)
    rule = stored_rule(raw["threshold"], doc.hop_s)  # the rule the daemon applies
    if doc.threshold.decision is not None and rule is None:
        raise ValueError(f"threshold.decision: expected evidence_s <= span_s (seconds, > 0) or k and n with "
                         f"1 <= k <= n <= 1000 hops of {doc.hop_s:g} s, got {doc.threshold.decision!r}")
    if not doc.outputs:
        raise ValueError("outputs: expected a non-empty list of output names")
    gain = (doc.threshold.decision or {}).get("early_gain") if isinstance(doc.threshold.decision, dict) else None
    if gain is not None and (stored_gain(raw["threshold"]) is None or "early" not in doc.outputs):
        raise ValueError(f"threshold.decision.early_gain: expected a number in [0, {MAX_EARLY_GAIN:g}] on a model "
                         f"with an 'early' output, got {gain!r} (outputs {doc.outputs})")
    return ModelMeta(name=doc.name, outputs=doc.outputs, preprocess=pre, window_s=doc.window_s, hop_s=doc.hop_s,
                     threshold=doc.threshold.value, threshold_policy=doc.threshold.policy,
                     weights_sha256=doc.weights_sha256, rule=rule,
                     risk_outputs=_risk_outputs(doc.risk or {}, doc.outputs), raw=raw)


def _risk_outputs(risk: dict[str, _Levels], outputs: tuple[str, ...]) -> tuple[RiskOutput, ...]:
    """``risk``: {output: {horizon_s, elevated, high}} for outputs of the model, 0 < elevated < high < 1."""
    for name, lv in risk.items():
        if name not in outputs:
            raise ValueError(f"risk.{name}: not one of the model's outputs ({', '.join(outputs)})")
        check_number(lv.horizon_s, f"risk.{name}.horizon_s", low=0, low_open=True, high=86_400 * 30)
        check_number(lv.elevated, f"risk.{name}.elevated", low=0, high=1, low_open=True, high_open=True)
        check_number(lv.high, f"risk.{name}.high", low=lv.elevated, high=1, low_open=True, high_open=True)
    return tuple(RiskOutput(i, name, risk[name].horizon_s, risk[name].elevated, risk[name].high)
                 for i, name in enumerate(outputs) if name in risk)
