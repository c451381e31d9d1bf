"""Out-of-fold traces: the one place thresholds that transfer come from.

Each recording of a list is replayed through the daemon's pipeline with a model of the same
config trained on the other recordings of the list only, so no probability comes from a model
that saw its recording. ``threshold.transfer`` then chooses on those traces. Three callers:
``compare`` (per fold, on the fold's non-test recordings), ``threshold --policy oof`` (a
dataset's train and val recordings) and a recipe with ``threshold.chosen_on: out_of_fold``
(its training recordings).

Each left-out recording (its fold model's training, then its replay) is one task
(``parallel.run_tasks``): on an in-process cluster, a ``scheduler``'s, or serially with
``workers=1``, with the same traces. Inside another task (compare's fold x model) they are tasks of
the same cluster.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from seizurewatch.config import DecisionConfig
from seizurewatch.errors import DataError, SeizurewatchError
from seizurewatch.research.dataset import DatasetDir, open_dataset
from seizurewatch.research.parallel import run_tasks
from seizurewatch.research.predict import Trace, stream_probabilities
from seizurewatch.research.training_run import ModelSpec, train_from_dataset


def with_roles(ds: DatasetDir, roles: dict[str, str], default: str = "unused") -> DatasetDir:
    """The dataset with each recording's split set from ``roles`` (by file name), others ``default``."""
    by_name = {Path(k).name: v for k, v in roles.items()}
    return dataclasses.replace(ds, index=ds.index.with_splits(by_name, default))


def recording_paths(ds: DatasetDir) -> dict[str, str]:
    """File name -> path of the dataset's recordings (absolute when the manifest has them)."""
    return {Path(r).name: r for split in ds.index.splits_present() for r in ds.recordings(split)}


@dataclasses.dataclass(frozen=True)
class LeftOut:
    """One task of ``out_of_fold``: train ``spec`` on ``recordings`` but ``recording`` (the dataset reopened
    from its folder: a task carries paths, not arrays), save it to ``model``, replay ``replay`` with it."""

    root: str
    spec: ModelSpec
    recording: str
    recordings: tuple[str, ...]
    model: str
    replay: str
    decision: DecisionConfig
    device: str | None

    def __str__(self) -> str:
        return Path(self.recording).name


def left_out_trace(task: LeftOut) -> Trace:
    fold = with_roles(open_dataset(task.root), {q: "train" for q in task.recordings if q != task.recording})
    name = Path(task.recording).name
    try:
        train_from_dataset(fold, task.spec, Path(task.model), progress=False,
                           command=f"out-of-fold model for {name} ({task.spec.name})")
    except SeizurewatchError as exc:
        raise type(exc)(f"{task.spec.name}: out-of-fold model for {name}: {exc}") from exc
    return stream_probabilities(task.replay, task.model, task.decision, device=task.device)


def out_of_fold(ds: DatasetDir, spec: ModelSpec, recordings: list[str], workdir: str | Path,
                decision: DecisionConfig, epochs: int | None = None, progress: bool = False,
                device: str | None = None, scheduler: str | None = None, workers: int | None = None) -> list[Trace]:
    """One trace per recording of ``recordings``, each replayed through the daemon with a model of
    ``spec`` trained on the other ``recordings`` only (no validation; with ``epochs`` given, that
    many and no early stopping), so every probability is out-of-fold. The fold models are written
    to ``workdir``; ``device`` is the device profile YAML the replays read the recordings with
    (None: as each file describes itself). One task per recording (``scheduler``, ``workers``: as
    ``parallel.run_tasks``), results in ``recordings`` order."""
    if len(recordings) < 2:
        raise DataError(f"{ds.root}: out-of-fold thresholds need >= 2 recordings to leave out in turn "
                        f"(got {len(recordings)})")
    paths = recording_paths(ds)
    missing = [r for r in recordings if not Path(paths.get(Path(r).name, r)).is_file()]
    if missing:
        raise DataError(f"{ds.root}: out-of-fold thresholds replay the recordings, not found: {', '.join(missing)}")
    cfg = spec.train if epochs is None else dataclasses.replace(spec.train, epochs=max(1, int(epochs)), patience=0)
    inner = dataclasses.replace(spec, train=cfg)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    if device and Path(device).is_file():
        device = str(Path(device).resolve())  # a worker may start elsewhere
    # a bar over the left-out recordings (progress); none per fold model's epochs (they may run in workers)
    tasks = [LeftOut(str(Path(ds.root).resolve()), inner, r, tuple(recordings),
                     str((Path(workdir) / f"oof-{Path(r).stem}.pt").resolve()),
                     os.path.abspath(paths.get(Path(r).name, r)), decision, device)  # links kept: sidecars
             for r in recordings]
    return run_tasks(left_out_trace, tasks, scheduler=scheduler, workers=workers, progress=progress,
                     what="left-out recording")
