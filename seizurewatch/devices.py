"""Device profiles: what an amplifier sends (channel labels, rate, units, montage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seizurewatch.checks import check_number
from seizurewatch.typedyaml import load_typed_file
from seizurewatch.units import check_unit


def canonical_label(label: str) -> str:
    """Normalise a channel label for matching: case, spaces and common EDF prefixes."""
    s = label.strip().upper().replace(" ", "")
    for prefix in ("EEG", "POL"):
        if s.startswith(prefix) and len(s) > len(prefix):
            s = s[len(prefix):]
    return s.lstrip("-_")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    channels: tuple[str, ...]
    sampling_rate: float
    units: str | None = None  # what the amplifier's channels hold when its stream or files declare no unit
    montage: str = "unspecified"  # e.g. "bipolar double banana", "referential", "intracranial grid"
    line_freq: float = 50.0  # mains frequency at the site, for signal-quality checks
    aliases: dict[str, str] = field(default_factory=dict)  # other label -> profile label
    description: str = ""
    # plausible median channel RMS of a window (µV, after the model's band-pass): outside it, a unit or gain
    # error (mV read as µV is 1000x) rather than a patient; the window gets an ``amplitude`` fault
    amplitude_uv: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("channels: at least one channel is required")
        canon = [canonical_label(c) for c in self.channels]
        if len(set(canon)) != len(canon):
            raise ValueError("channels: labels must be unique")
        check_number(self.sampling_rate, "sampling_rate", low=0, low_open=True, high=100_000)
        check_number(self.line_freq, "line_freq", low=0, low_open=True, high=1000)
        if self.units is not None:
            check_unit(self.units, "units")
        if self.amplitude_uv is not None:
            low, high = self.amplitude_uv
            check_number(low, "amplitude_uv[0]", low=0, low_open=True)
            check_number(high, "amplitude_uv[1]", low=low, low_open=True)

    def canonical(self, label: str) -> str:
        """Map a label as a source spells it to the canonical form of a profile label."""
        c = canonical_label(label)
        for alias, target in self.aliases.items():
            if canonical_label(alias) == c:
                return canonical_label(target)
        return c


def load_device(path: str | Path) -> DeviceProfile:
    """A device profile YAML (errors name the file, the key and what was expected)."""
    return load_typed_file(DeviceProfile, path)[0]
