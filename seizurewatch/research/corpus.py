"""Every recording of a corpus folder, with its subject, session and seizures.

``discover(folder)`` walks a folder laid out as a corpus is published and returns one
``CorpusRecording`` per signal file, so a dataset build or an evaluation gets each recording
with its subject (for subject-wise splits) and its annotations:

- CHB-MIT (PhysioNet): ``chbNN/chbNN_MM.edf`` + ``chbNN/chbNN-summary.txt`` -> subject ``chbNN``.
- TUH TUSZ: ``.../SUBJECT/sSSS_YYYY/MONTAGE/SUBJECT_sSSS_tTTT.edf`` + ``.csv_bi`` -> subject, session ``sSSS``.
- BIDS-EEG (as SzCORE uses): ``sub-X/[ses-Y/]eeg/sub-X_[ses-Y_]..._eeg.{edf,bdf}`` + ``*_events.tsv``.
- Text signals (``.csv``/``.txt``...) with a ``STEM.json`` rate sidecar and ``STEM_events.tsv``
  annotations; subject = the parent folder (Bonn: set ``Z`` for ``Z/Z001.txt``).
- Anything else readable: subject = the parent folder.
Sidecars (``STEM.csv`` annotations next to an EDF, ``*_events.tsv``, ``*-summary.txt``...) are not
taken for signals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from seizurewatch.errors import DataError
from seizurewatch.recordings import SIGNAL_SUFFIXES, read_header, signal_format
from seizurewatch.research.annotations import find_annotations
from seizurewatch.types import Annotation

_CHBMIT_RE = re.compile(r"^(chb\d+[a-z]?)_\d+", re.I)
_TUH_RE = re.compile(r"^(?P<subject>[a-z0-9]+)_(?P<session>s\d{3})_t\d{3}$", re.I)
_BIDS_SUB_RE = re.compile(r"(?:^|_)sub-([A-Za-z0-9]+)")
_BIDS_SES_RE = re.compile(r"(?:^|_)ses-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class CorpusRecording:
    path: str
    subject: str
    session: str  # "" when the layout has none
    layout: str  # "chbmit" | "tusz" | "bids" | "text" | "plain"
    format: str  # "edf" | "bdf" | "text"
    annotations: tuple[Annotation, ...]
    annotation_source: str  # the file the annotations came from ("" when none)
    montage: str = ""  # TUSZ: the reference its channel labels name ("AR", "LE"), else the folder's (01_tcp_ar)


def _is_sidecar(f: Path) -> bool:
    """A BIDS/summary table, or ``STEM.csv`` annotations next to a signal of another suffix (``rec.edf``)."""
    name = f.name.lower()
    if name.endswith(("_events.tsv", "_channels.tsv", "_electrodes.tsv", "-summary.txt", "participants.tsv",
                      "_scans.tsv", "_sessions.tsv")) or name in ("readme.txt", "changes.txt", "license.txt"):
        return True
    if f.suffix.lower() != ".csv":
        return False
    return any(f.with_suffix(s).is_file() for s in SIGNAL_SUFFIXES if s != ".csv")


def _identify(root: Path, f: Path) -> tuple[str, str, str]:
    """(layout, subject, session) of one signal file."""
    sub = _BIDS_SUB_RE.search(f.stem)
    if sub and f.stem.endswith("_eeg"):
        ses = _BIDS_SES_RE.search(f.stem)
        return "bids", sub.group(1), ses.group(1) if ses else ""
    m = _CHBMIT_RE.match(f.stem)
    if m and any(f.parent.glob("*-summary.txt")):
        return "chbmit", m.group(1).lower(), ""
    m = _TUH_RE.match(f.stem)
    if m and f.with_suffix(".csv_bi").is_file():
        return "tusz", m.group("subject"), m.group("session")
    parent = f.parent.name if f.parent != root else root.name
    return ("text" if signal_format(f) == "text" else "plain"), parent, ""


_TUSZ_MONTAGE_RE = re.compile(r"^\d\d_(tcp_(?:ar|le)(?:_a)?)$", re.I)


def montage_of(f: Path) -> str:
    """A TUSZ file's montage: the reference its channel labels name (``-REF``: AR, ``-LE``: LE), as TUH
    writes it into each EDF, else the release's folder (``01_tcp_ar`` -> "tcp_ar"); "" when neither says."""
    try:
        ref = read_header(f).reference
    except DataError:
        ref = ""
    if ref:
        return ref
    m = _TUSZ_MONTAGE_RE.match(f.parent.name)
    return m.group(1).lower() if m else ""


def discover(folder: str | Path) -> list[CorpusRecording]:
    """Every signal file under ``folder`` (recursively), ordered by subject, session, path."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: corpus folder not found")
    out = []
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in SIGNAL_SUFFIXES or _is_sidecar(f):
            continue
        if any(part.startswith(".") for part in f.relative_to(root).parts):
            continue
        layout, subject, session = _identify(root, f)
        found = find_annotations(f, required=False)
        out.append(CorpusRecording(
            path=str(f), subject=subject, session=session, layout=layout, format=signal_format(f),
            annotations=tuple(found.annotations) if found else (),
            annotation_source=found.source if found else "", montage=montage_of(f) if layout == "tusz" else ""))
    if not out:
        raise DataError(f"{root}: no recordings (looked for {', '.join(SIGNAL_SUFFIXES)} files)")
    return sorted(out, key=lambda r: (r.subject, r.session, r.path))
