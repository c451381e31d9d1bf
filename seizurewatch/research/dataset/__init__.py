"""One dataset layer: the spec, the plan (windows and labels before any sample is read), the split,
the per-recording build and the folder format (one writer, one reader)."""

from seizurewatch.research.dataset.build import RecordingEntry, RecordingJob, build_dataset, build_recording
from seizurewatch.research.dataset.plan import Piece, default_subject, load_signal, match_name, plan
from seizurewatch.research.dataset.spec import DatasetSpec, SplitSpec, load_spec
from seizurewatch.research.dataset.split import assign_splits
from seizurewatch.research.dataset.store import (
           FORMAT,
           SPLITS,
           DatasetDir,
           IndexRow,
           Windows,
           open_dataset,
           write_dataset,
)

__all__ = ["FORMAT", "SPLITS", "DatasetDir", "DatasetSpec", "IndexRow", "Piece", "RecordingEntry", "RecordingJob",
           "SplitSpec", "Windows", "assign_splits", "build_dataset", "build_recording", "default_subject",
           "load_signal", "load_spec", "match_name", "open_dataset", "plan", "write_dataset"]
