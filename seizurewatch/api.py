"""seizurewatch's public Python API: what scripts and notebooks import (the README's examples do).

    from seizurewatch.api import replay, load_model, evaluate, open_dataset, discover

Everything here keeps its name and meaning across releases; every other module is internal (its names may
move; import from here). Names are imported when first used (``replay`` does not pull in training code, nor
``discover`` torch).

- the daemon's pipeline on a recording: ``replay``, ``replay_async`` (with ``ReplayOptions``, ``ReplayHooks``),
  ``ReplayResult``, ``load_config``, ``Config``, ``DecisionConfig``, ``MqttConfig``;
- model files: ``load_model``, ``LoadedModel``, ``read_metadata``;
- recordings and corpora: ``open_recording``, ``discover``;
- datasets (one writer, one reader): ``build_dataset``, ``load_spec``, ``DatasetSpec``, ``open_dataset``,
  ``DatasetDir``;
- research: ``evaluate`` (``EvaluateOptions``), ``predict_recording``, ``choose_threshold`` (``Validation``,
  ``ThresholdOptions``), ``Compute`` (where their tasks run);
- the ward side: ``subscribe``, ``ack_and_wait``, ``Ack``;
- errors: ``SeizurewatchError`` and its kinds (each carries the CLI's exit code).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seizurewatch.alarms.ack import Ack
    from seizurewatch.alarms.answer import ack_and_wait
    from seizurewatch.alarms.subscriber import subscribe
    from seizurewatch.config import Config, DecisionConfig, MqttConfig, load_config
    from seizurewatch.errors import BrokerError, ConfigError, DataError, ModelError, SeizurewatchError
    from seizurewatch.modelfile import LoadedModel, load_model, read_metadata
    from seizurewatch.recordings import open_recording
    from seizurewatch.replay import ReplayHooks, ReplayOptions, ReplayResult, replay, replay_async
    from seizurewatch.research.corpus import discover
    from seizurewatch.research.dataset import DatasetDir, DatasetSpec, build_dataset, load_spec, open_dataset
    from seizurewatch.research.evaluate import EvaluateOptions, evaluate
    from seizurewatch.research.parallel import Compute
    from seizurewatch.research.predict import predict_recording
    from seizurewatch.research.threshold_choice import ThresholdOptions, Validation, choose_threshold

_WHERE = {
    "replay": "seizurewatch.replay", "replay_async": "seizurewatch.replay", "ReplayResult": "seizurewatch.replay",
    "ReplayOptions": "seizurewatch.replay", "ReplayHooks": "seizurewatch.replay",
    "load_config": "seizurewatch.config", "Config": "seizurewatch.config", "DecisionConfig": "seizurewatch.config",
    "MqttConfig": "seizurewatch.config",
    "load_model": "seizurewatch.modelfile", "LoadedModel": "seizurewatch.modelfile",
    "read_metadata": "seizurewatch.modelfile",
    "open_recording": "seizurewatch.recordings", "discover": "seizurewatch.research.corpus",
    "build_dataset": "seizurewatch.research.dataset", "load_spec": "seizurewatch.research.dataset",
    "DatasetSpec": "seizurewatch.research.dataset", "open_dataset": "seizurewatch.research.dataset",
    "DatasetDir": "seizurewatch.research.dataset",
    "evaluate": "seizurewatch.research.evaluate", "predict_recording": "seizurewatch.research.predict",
    "choose_threshold": "seizurewatch.research.threshold_choice",
    "Validation": "seizurewatch.research.threshold_choice",
    "ThresholdOptions": "seizurewatch.research.threshold_choice",
    "EvaluateOptions": "seizurewatch.research.evaluate", "Compute": "seizurewatch.research.parallel",
    "subscribe": "seizurewatch.alarms.subscriber", "ack_and_wait": "seizurewatch.alarms.answer",
    "Ack": "seizurewatch.alarms.ack",
    "SeizurewatchError": "seizurewatch.errors", "ConfigError": "seizurewatch.errors",
    "DataError": "seizurewatch.errors",
    "ModelError": "seizurewatch.errors", "BrokerError": "seizurewatch.errors",
}

__all__ = ["Ack", "BrokerError", "Compute", "Config", "ConfigError", "DataError", "DatasetDir", "DatasetSpec",
           "DecisionConfig", "EvaluateOptions", "LoadedModel", "ModelError", "MqttConfig", "ReplayHooks",
           "ReplayOptions", "ReplayResult", "SeizurewatchError", "ThresholdOptions", "Validation", "ack_and_wait",
           "build_dataset", "choose_threshold", "discover", "evaluate", "load_config", "load_model", "load_spec",
           "open_dataset", "open_recording", "predict_recording", "read_metadata", "replay", "replay_async",
           "subscribe"]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'seizurewatch.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
