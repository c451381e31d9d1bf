"""Out-of-fold traces: the one place thresholds that transfer come from.

Each recording of a list is replayed through the daemon's pipeline with a model of the same
config trained on the other recordings of the list only, so no probability comes from a model
that saw its recording. ``threshold.transfer`` then chooses on those traces. Three callers:
``compare`` (per fold, on the fold's non-test recordings), ``threshold --policy oof`` (a
dataset's train and val recordings) and a recipe with ``threshold.chosen_on: out_of_fold``
(its training recordings).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError, SeizurewatchError
from seizurewatch.research.dataset import DatasetDir
from seizurewatch.research.predict import Trace, stream_probabilities
from seizurewatch.research.training_run import ModelSpec, train_from_dataset


def with_roles(ds: DatasetDir, roles: dict[str, str], default: str = "unused") -> DatasetDir:
    """The dataset with each recording's split set from ``roles`` (by file name), others ``default``."""
    by_name = {Path(k).name: v for k, v in roles.items()}
    return dataclasses.replace(ds, index=ds.index.with_splits(by_name, default))


def recording_paths(ds: DatasetDir) -> dict[str, str]:
    """File name -> path of the dataset's recordings (absolute when the manifest has them)."""
    return {Path(r).name: r for split in ds.index.splits_present() for r in ds.recordings(split)}


def out_of_fold(ds: DatasetDir, spec: ModelSpec, recordings: list[str], workdir: str | Path,
                decision: DecisionConfig, epochs: int | None = None, progress: bool = False,
                device: str | None = None) -> list[Trace]:
    """One trace per recording of ``recordings``, each replayed through the daemon with a model of
    ``spec`` trained on the other ``recordings`` only (no validation; with ``epochs`` given, that
    many and no early stopping), so every probability is out-of-fold. The fold models are written
    to ``workdir``; ``device`` is the device profile YAML the replays read the recordings with
    (None: as each file describes itself)."""
    if len(recordings) < 2:
        raise DataError(f"{ds.root}: out-of-fold thresholds need >= 2 recordings to leave out in turn "
                        f"(got {len(recordings)})")
    paths = recording_paths(ds)
    missing = [r for r in recordings if not Path(paths.get(Path(r).name, r)).is_file()]
    if missing:
        raise DataError(f"{ds.root}: out-of-fold thresholds replay the recordings, not found: {', '.join(missing)}")
    cfg = spec.train if epochs is None else dataclasses.replace(spec.train, epochs=max(1, int(epochs)), patience=0)
    inner = dataclasses.replace(spec, train=cfg)
    traces = []
    for r in recordings:
        path = Path(workdir) / f"oof-{Path(r).stem}.pt"
        fold = with_roles(ds, {q: "train" for q in recordings if q != r})
        try:
            train_from_dataset(fold, inner, path, progress=progress,
                               command=f"out-of-fold model for {Path(r).name} ({spec.name})")
        except SeizurewatchError as exc:
            raise type(exc)(f"{spec.name}: out-of-fold model for {Path(r).name}: {exc}") from exc
        traces.append(stream_probabilities(paths.get(Path(r).name, r), path, decision, device=device))
    return traces
