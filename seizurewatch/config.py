"""The daemon's configuration: a frozen dataclass tree loaded from one YAML file.

Relative paths in the file are resolved against the file's own folder, so a config can
be moved together with its device profiles and models.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from seizurewatch.checks import (
    check_broker_url,
    check_int,
    check_number,
    check_sha256,
    check_text,
    check_topic_level,
    check_topic_prefix,
    check_xpath,
)
from seizurewatch.errors import ConfigError
from seizurewatch.typedyaml import FilePath, PathField, load_typed_file
from seizurewatch.units import check_unit


@dataclass(frozen=True)
class SourceConfig:
    """Where one stream's samples come from."""

    kind: Literal["edf", "lsl"] = "edf"
    path: FilePath | None = None  # edf: the recording
    speed: float | Literal["max"] = 1.0  # edf: 1 = real time, 50 = 50x, "max" = as fast as possible
    chunk_s: float = 0.25  # edf: seconds per block pushed into the pipeline
    loop: bool = False  # edf: start over at the end (soak tests)
    rate: float | None = None  # edf: sample rate (Hz) of a text signal (.csv/.txt) without a STEM.json sidecar
    # what a channel declaring no unit (or one seizurewatch does not know) holds: V, mV, uV, nV; None: the
    # device profile's units, else such a recording or stream is refused
    units: str | None = None
    # lsl: how to find the stream; at least one of name / type / source_id
    name: str | None = None
    type: str | None = "EEG"
    source_id: str | None = None
    predicate: str | None = None  # lsl: extra XPath 1.0 condition, e.g. "starts-with(name,'Amp') and hostname='bed1'"
    resolve_timeout_s: float = 10.0
    lost_after_s: float = 5.0  # no samples for this long -> stream_lost fault
    max_gap_s: float = 0.5  # a timestamp gap longer than this resets the buffer (stream_gap)

    def __post_init__(self) -> None:
        if self.kind == "edf" and not self.path:
            raise ValueError("path: required when kind is 'edf'")
        if self.speed != "max":
            check_number(self.speed, "speed", low=0, low_open=True, high=10_000)
        check_number(self.chunk_s, "chunk_s", low=0, low_open=True, high=60)
        if self.rate is not None:
            check_number(self.rate, "rate", low=0, low_open=True, high=1_000_000)
        if self.units is not None:
            check_unit(self.units, "units")
        if self.kind == "edf":  # an LSL setting here means the kind line was forgotten: say so, not ignore it
            lsl_set = [k for k in ("name", "source_id", "predicate") if getattr(self, k) is not None]
            lsl_set += ["type"] if self.type != "EEG" else []
            if lsl_set:
                raise ValueError(f"{lsl_set[0]}: an LSL setting, but this source is kind: edf (set kind: lsl, "
                                 f"or remove {', '.join(lsl_set)})")
        if self.kind == "lsl" and not (self.name or self.type or self.source_id or self.predicate):
            raise ValueError("lsl: give at least one of name, type, source_id, predicate")
        for key in ("name", "type", "source_id", "predicate"):
            if getattr(self, key) is not None:
                check_text(getattr(self, key), key)
        if self.predicate is not None:
            check_xpath(self.predicate, "predicate")
        check_number(self.resolve_timeout_s, "resolve_timeout_s", low=0, low_open=True, high=3600)
        check_number(self.lost_after_s, "lost_after_s", low=0, low_open=True, high=3600)
        check_number(self.max_gap_s, "max_gap_s", low=0, low_open=True, high=3600)


@dataclass(frozen=True)
class StreamConfig:
    """One monitored patient: a source, the device it comes from, the patient id used in topics."""

    patient: str
    source: SourceConfig
    device: FilePath | None = None  # device profile YAML; None: as the source describes itself (EDF header, LSL XML)

    def __post_init__(self) -> None:
        check_topic_level(self.patient, "patient")
        if self.device is not None and not self.device.strip():
            raise ValueError("device: empty (remove the key to take the source's own description)")


DEFAULT_RULE_S = (3.0, 4.0)  # 3 s over the threshold in the last 4 s, when neither the config nor the model says
DEFAULT_RULE = (3, 4)  # the same in hops of 1 s, for a decision no model has filled in (``for_model``)
MAX_THREADS = 256  # torch.set_num_threads beyond this only oversubscribes (and 100,000 would exhaust the process)


@dataclass(frozen=True)
class ModelConfig:
    path: FilePath
    sha256: str | None = None  # pin: the whole file's SHA-256 (sha256sum), checked before the file is opened
    trusted: bool = False  # run an unpinned model anyway (a model file is code: pin it instead)
    threads: int = 1  # torch.set_num_threads
    max_batch: int = 64  # at most this many windows per model call (calls also stay within 1.5 MiB of input)

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", check_sha256(self.sha256, "sha256"))
        check_int(self.threads, "threads", low=1, high=MAX_THREADS)
        check_int(self.max_batch, "max_batch", low=1, high=4096)


def rule_in_hops(evidence_s: float, span_s: float, hop_s: float) -> tuple[int, int]:
    """k of n hops for a rule stated in seconds: at least ``evidence_s`` of hops over the threshold within
    the last ``span_s`` (rounded up: never less evidence than stated), so a rule means the same at any hop."""
    k = max(1, math.ceil(evidence_s / hop_s - 1e-6))
    return k, max(k, math.ceil(span_s / hop_s - 1e-6))


def stored_rule(threshold_block: Any, hop_s: float) -> tuple[int, int] | None:
    """The k-of-n rule a model file stores beside its threshold (``threshold.decision``), in hops of
    ``hop_s`` (the model's): stated in seconds (``evidence_s`` of the last ``span_s``), else as ``k``/``n``
    hops (files written before rules were stated in seconds: hops of their own hop_s, which they keep);
    1 <= k <= n <= 1000. None when there is none or it is not a rule (the model loader refuses those)."""
    d = threshold_block.get("decision") if isinstance(threshold_block, dict) else None
    if not isinstance(d, dict):
        return None
    e, s = d.get("evidence_s"), d.get("span_s")
    if e is not None or s is not None:
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (e, s))
        if not ok or not 0 < e <= s or not hop_s > 0:  # type: ignore[operator]
            return None
        k, n = rule_in_hops(float(e), float(s), hop_s)  # type: ignore[arg-type]
        return (k, n) if n <= 1000 else None
    hk, hn = d.get("k"), d.get("n")
    return (hk, hn) if isinstance(hk, int) and isinstance(hn, int) and 1 <= hk <= hn <= 1000 else None


MAX_EARLY_GAIN = 100.0


def stored_gain(threshold_block: Any) -> float | None:
    """The early output's gain as a second trigger a model file stores beside its rule
    (``threshold.decision.early_gain``, chosen with it: ``research/trigger.py``); None when there is none,
    0 when it says off. Not a number in [0, MAX_EARLY_GAIN]: None too (the model loader refuses those)."""
    d = threshold_block.get("decision") if isinstance(threshold_block, dict) else None
    g = d.get("early_gain") if isinstance(d, dict) else None
    ok = isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) and 0 <= g <= MAX_EARLY_GAIN
    return float(g) if ok else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class DecisionConfig:
    """Turns one probability per hop into alarm start/update/end events."""

    threshold: float | None = None  # None: use the threshold stored in the model
    # start when k of the last n probabilities are >= threshold; None: the rule stored in the model
    # beside its threshold (chosen with it, ``research/threshold.py``), else DEFAULT_RULE_S (3 of 4 s)
    k: int | None = None
    n: int | None = None
    # the model's ``early`` output as a second trigger: a hop is evidence when max(probability, early_gain x
    # early output) reaches the threshold, i.e. the early output reaches threshold / early_gain. None: the
    # gain the model file stores beside its rule, else none; 0: none
    early_gain: float | None = None
    hysteresis: float = 0.1  # end threshold = threshold - hysteresis
    off_hops: int = 3  # end after this many consecutive hops below the end threshold
    refractory_s: float = 30.0  # no new alarm start this long after an end
    update_every_s: float = 5.0  # "update" events while an alarm is active
    escalate_after_s: float = 60.0  # unacknowledged alarm (or lasting fault) -> "escalate" every this long; 0 = off
    # risk levels of a prediction model's outputs (risk.py): the median probability over the last risk_span_s
    # (at least RISK_MIN_WINDOWS windows, so one window's blip never moves it); a level is left downwards only
    # risk_hysteresis below the threshold that entered it
    risk_span_s: float = 60.0
    risk_hysteresis: float = 0.05

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check_number(self.threshold, "threshold", low=0, high=1, low_open=True, high_open=True)
        if (self.k is None) != (self.n is None):
            raise ValueError(f"k, n: set both or neither (k={self.k}, n={self.n}); neither: the model's rule")
        if self.k is not None and self.n is not None:
            check_int(self.n, "n", low=1, high=1000)
            if not 1 <= self.k <= self.n:
                raise ValueError(f"k: must satisfy 1 <= k <= n (k={self.k}, n={self.n})")
        if self.early_gain is not None:
            check_number(self.early_gain, "early_gain", low=0, high=MAX_EARLY_GAIN)
        check_number(self.hysteresis, "hysteresis", low=0, high=1, high_open=True)
        check_int(self.off_hops, "off_hops", low=1, high=10_000)
        check_number(self.refractory_s, "refractory_s", low=0, high=86_400)
        check_number(self.update_every_s, "update_every_s", low=0, low_open=True, high=86_400)
        check_number(self.escalate_after_s, "escalate_after_s", low=0, high=86_400)  # 0 turns escalation off
        check_number(self.risk_span_s, "risk_span_s", low=0, low_open=True, high=86_400)
        check_number(self.risk_hysteresis, "risk_hysteresis", low=0, high=1, high_open=True)

    @property
    def rule(self) -> tuple[int, int]:
        """(k, n) in force: the configured ones, else DEFAULT_RULE (``for_model`` fills the model's)."""
        return (self.k, self.n) if self.k is not None and self.n is not None else DEFAULT_RULE

    def for_model(self, threshold_block: Any, hop_s: float) -> DecisionConfig:
        """This config with k and n filled in: the configured ones, else the rule a model file stores
        beside its threshold (``threshold.decision``, chosen together with it; in seconds, turned into
        hops of the model's ``hop_s``), else DEFAULT_RULE_S at that hop; and the early gain stored beside the
        rule (``stored_gain``) unless this config sets one."""
        return self.with_rule(stored_rule(threshold_block, hop_s), hop_s, stored_gain(threshold_block))

    def with_rule(self, stored: tuple[int, int] | None, hop_s: float, gain: float | None = None) -> DecisionConfig:
        """This config with k and n filled in: the configured ones, else ``stored`` (a model's rule in hops
        of its ``hop_s``: ``ModelMeta.rule``), else DEFAULT_RULE_S at that hop; and ``early_gain``: the
        configured one, else ``gain`` (a model's: ``ModelMeta.early_gain``)."""
        out = self if self.early_gain is not None or gain is None else dataclasses.replace(self, early_gain=gain)
        if out.k is not None:
            return out
        k, n = stored or rule_in_hops(*DEFAULT_RULE_S, hop_s)
        return dataclasses.replace(out, k=k, n=n)

    def describe(self, hop_s: float | None = None) -> dict[str, Any]:
        """The decision settings in force, for metadata and reports; with the model's ``hop_s``, the rule
        in seconds too (``evidence_s`` of the last ``span_s``: what ``stored_rule`` reads first)."""
        k, n = self.rule
        out: dict[str, Any] = {"k": k, "n": n, "hysteresis": self.hysteresis, "off_hops": self.off_hops,
                               "refractory_s": self.refractory_s}
        if hop_s is not None:
            out |= {"hop_s": hop_s, "evidence_s": round(k * hop_s, 6), "span_s": round(n * hop_s, 6)}
        if self.early_gain:  # the second trigger, when there is one (a rule without it reads as before)
            out["early_gain"] = self.early_gain
        return out


@dataclass(frozen=True)
class MqttConfig:
    url: str = "mqtt://127.0.0.1:1883"  # mqtt:// or mqtts://; "embedded" starts an in-process broker
    topic_prefix: str = "seizurewatch"
    client_id: str | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    username: str | None = None
    password_file: FilePath | None = None
    password_env: str | None = None
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    allow_plaintext_remote: bool = False
    protocol: Literal["auto", "v5", "v311"] = "auto"  # auto: MQTT v5, falling back to 3.1.1 if refused
    publish_timeout_s: float = 10.0  # no PUBACK within this: reconnect and resend
    max_inflight: int = 20  # QoS 1 publishes awaiting PUBACK at once while draining a backlog
    drain_timeout_s: float = 30.0  # at shutdown, keep trying this long to deliver the outbox
    discovery: bool = False  # publish retained Home Assistant MQTT discovery configs (alarms/discovery.py)
    homeassistant_discovery: bool = False  # older name of `discovery`, still accepted
    homeassistant_prefix: str = "homeassistant"
    state_every_s: float = 2.0  # republish the retained state (probability, last seen) this often; 0 = on change only

    def __post_init__(self) -> None:
        if self.url != "embedded":
            try:
                check_broker_url(self.url, "url")
            except ValueError as exc:
                raise ValueError(f"{exc} (or 'embedded')") from None
        if self.password_file and self.password_env:
            raise ValueError("password_file: give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("username: required when a password is configured")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file: requires cert_file")
        check_topic_prefix(self.topic_prefix, "topic_prefix")
        check_topic_prefix(self.homeassistant_prefix, "homeassistant_prefix")
        for key in ("client_id", "username"):
            if getattr(self, key) is not None:
                check_text(getattr(self, key), key)
        check_int(self.keepalive_s, "keepalive_s", low=1, high=65_535)  # MQTT's keep-alive is 16 bits
        check_number(self.connect_timeout_s, "connect_timeout_s", low=0, low_open=True, high=600)
        check_number(self.publish_timeout_s, "publish_timeout_s", low=0, low_open=True, high=3600)
        check_number(self.drain_timeout_s, "drain_timeout_s", low=0, high=3600)
        check_int(self.max_inflight, "max_inflight", low=1, high=65_535)
        check_number(self.state_every_s, "state_every_s", low=0, high=3600)  # 0 = only when it changes


JournalPath = Annotated[str, PathField(keep=(":memory:",))]  # ":memory:": a throwaway journal


@dataclass(frozen=True)
class OutboxConfig:
    path: JournalPath = "outbox.sqlite3"  # durable journal; ":memory:" only for throwaway runs
    keep_delivered_days: float = 7.0  # delivered events older than this are pruned from the journal

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path: the journal's file name is empty (':memory:' for a throwaway run)")
        check_number(self.keep_delivered_days, "keep_delivered_days", low=0, high=3650)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None  # "127.0.0.1:9108"; None disables the endpoint

    def __post_init__(self) -> None:
        if self.listen is not None:
            from seizurewatch.metrics import parse_listen

            try:
                parse_listen(self.listen)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("metrics.")) from None


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class Config:
    streams: tuple[StreamConfig, ...]
    model: ModelConfig
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source_file: str = "(built in code)"

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("streams: at least one stream is required")
        patients = [s.patient for s in self.streams]
        dupes = {p for p in patients if patients.count(p) > 1}
        if dupes:
            raise ValueError(f"streams: patient ids must be unique (repeated: {', '.join(sorted(dupes))})")
        opened: dict[Path, int] = {}
        for i, s in enumerate(self.streams):
            if s.source.kind != "edf" or not s.source.path:
                continue
            first = opened.setdefault(Path(s.source.path).resolve(), i)
            if first != i:  # the EDF library opens a file once per process
                raise ValueError(f"streams[{i}].source.path: {s.source.path} is already replayed by streams[{first}] "
                                 f"({self.streams[first].patient}); a recording can feed one stream of a daemon: give "
                                 "the other stream a copy of the file")


def load_config(path: str | Path) -> Config:
    """Load and validate a config file; raises ConfigError naming file, key and expectation. Relative
    paths in it are relative to its folder (``typedyaml.FilePath``)."""
    p = Path(path)
    cfg, _ = load_typed_file(Config, p)
    cfg = dataclasses.replace(cfg, source_file=str(p))
    for i, s in enumerate(cfg.streams):
        if s.device and not Path(s.device).is_file():
            raise ConfigError(f"{p}: streams[{i}].device: device profile not found: {s.device}")
        if s.source.kind == "edf" and s.source.path and not Path(s.source.path).is_file():
            raise ConfigError(f"{p}: streams[{i}].source.path: recording not found: {s.source.path}")
    if not Path(cfg.model.path).is_file():
        raise ConfigError(f"{p}: model.path: model file not found: {cfg.model.path}")
    return cfg


def load_mqtt_section(path: str | Path) -> MqttConfig:
    """The ``mqtt:`` section of a YAML file: a station's own file (nothing else in it) or a daemon's config.
    Validated like the daemon's (errors name file and key); relative paths are relative to the file."""
    return load_typed_file(MqttConfig, path, section="mqtt")[0]
