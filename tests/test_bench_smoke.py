"""Smoke test of the benchmark suite: every module runs (quick mode, tiny inputs), so none rots unseen, and its
JSON keeps its documented shape.

No timed assertions and no time budget: figures are checked to be numbers with units and setups (and a few
relations that hold at any speed), not fast; the only time limit is a hang guard.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

MODULES = tuple(sorted(p.stem.removeprefix("bench_") for p in (ROOT / "bench").glob("bench_*.py")))
HANG_GUARD_S = 3600  # a module that hangs fails the test; a busy machine does not (no budget here)


def _figures(module: dict) -> dict[str, dict]:
    figs = module.get("figures")
    assert isinstance(figs, dict) and figs, f"module without figures: {module}"
    return figs


def _check_figure(name: str, fig: dict) -> None:
    assert set(fig) >= {"value", "unit", "setup"}, name
    assert isinstance(fig["unit"], str), name
    assert isinstance(fig["setup"], str) and len(fig["setup"]) > 10, name
    assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]), (name, fig)
    if name in ("peak_rss_growth", "service.rss_over_floor_mb"):  # a fraction, a difference: may be zero or below
        return
    assert fig["value"] >= 0, (name, fig)


def run_quick(name: str, out: Path) -> dict:
    """``python -m bench --quick --only NAME``: its JSON, checked to be what the runner printed."""
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", name, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S + 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed  # the file holds what was printed
    return printed


# ----- what each module's figures look like (bench/README.md), beyond value/unit/setup ---------------------------
def check_replay(figs: dict) -> None:
    for rec in ("dog1_rec04", "synth23"):
        assert figs[f"{rec}.pipeline_x_realtime"]["unit"] == "x real time"
        assert figs[f"{rec}.pipeline_x_realtime"]["value"] > 0
        stages = figs[f"{rec}.stages"]["stages_s"]
        assert set(stages) >= {"read", "preprocess", "buffer", "inference", "decision", "publish"}
        assert stages["inference"] > 0 and stages["read"] > 0
        assert figs[f"{rec}.pipeline_vs_baseline"]["unit"] == "ratio"
        assert 0.0 <= figs[f"{rec}.probability_max_abs_diff"]["value"] < 1e-3  # the same windows classified
    assert figs["synth23.pipeline_x_realtime"]["target"] == 2000.0
    # CPU per real-time stream at each hop of the shipped model, and as a ratio to the 1-s hop
    assert figs["hop1.cpu_vs_1s_hop"]["value"] == 1.0
    for hop, windows in (("1", 118), ("0.5", 235), ("0.25", 469)):
        cpu = figs[f"hop{hop}.cpu_per_stream"]
        assert cpu["unit"] == "% of a core" and cpu["value"] > 0
        assert windows - 8 <= cpu["windows"] <= windows  # less any a signal fault kept from the model
        assert figs[f"hop{hop}.cpu_vs_1s_hop"]["unit"] == "ratio"


def check_inference(figs: dict) -> None:
    """Each shipped model in each of its forms (a forest: TorchScript only)."""
    from seizurewatch.modelfile import read_metadata

    for model in sorted((ROOT / "models").glob("*.pt")):
        meta = read_metadata(model)
        fitted = meta["training"]["config"]["arch"] == "hills_forest"
        for kind in ("torchscript",) if fitted else ("torchscript", "eager", "pt2"):
            name = meta["name"]
            assert figs[f"{name}.{kind}.latency_p99"]["value"] >= figs[f"{name}.{kind}.latency_p50"]["value"] > 0
            assert figs[f"{name}.{kind}.batch16_windows_per_s"]["unit"] == "windows/s"


def check_corpus(figs: dict) -> None:
    """Evaluate and the replays serially and on 1 and 2 one-core workers gave the same metrics and traces; the
    dataset holds the signal about once whatever the stride (its layout, not a speed)."""
    for what in ("evaluate", "replay"):
        h = next(k for k in figs if k.startswith(f"{what}_") and k.endswith(".speedup_2_vs_1")).rsplit(".", 1)[0]
        assert {f"{h}.seconds_serial", f"{h}.seconds_1_worker", f"{h}.seconds_2_workers"} <= set(figs)
        assert figs[f"{h}.speedup_2_vs_1"]["identical_results"] is True
        assert figs[f"{h}.speedup_2_vs_serial"]["identical_results"] is True
    assert figs["cores.speedup_2_vs_1"]["unit"] == "ratio" and figs["processes.speedup_2_vs_1"]["unit"] == "ratio"
    ratios = {k: v["value"] for k, v in figs.items() if k.endswith("disk_vs_signal")}
    assert len(ratios) >= 2 and all(1.0 <= r <= 1.1 for r in ratios.values()), ratios


def check_scale(figs: dict, module: dict) -> None:
    assert figs["scale.realtime_streams"]["unit"] == "streams" and figs["scale.realtime_streams"]["value"] >= 1
    assert module["trials"] and all(t["rss_run_mb"] > 0 for t in module["trials"])


def check_service(figs: dict) -> None:
    """READY and RSS of the shipped model, each with its target and whether it met it."""
    for name, unit in (("service.ready_s", "s"), ("service.rss_1_stream_mb", "MiB")):
        assert figs[name]["unit"] == unit and figs[name]["value"] > 0
        assert isinstance(figs[name]["meets_target"], bool) and figs[name]["target"] > 0
        assert "dog1-hills-early" in figs[name]["setup"]
    assert figs["service.rss_20_streams_mb"]["value"] > 0 and figs["service.ready_cpu_s"]["value"] > 0
    floor = figs["service.rss_floor_mb"]  # torch and the model alone, beside the daemon's own share
    assert 0 < floor["import_torch_mb"] <= floor["value"] and 0 < floor["anon_mb"] <= floor["value"]
    assert figs["service.rss_over_floor_mb"]["value"] == pytest.approx(
        figs["service.rss_1_stream_mb"]["value"] - floor["value"], abs=1e-3)


def check_lsl(figs: dict) -> None:
    assert figs["lsl.latency_p99_ms"]["value"] >= figs["lsl.latency_p50_ms"]["value"] > 0
    assert figs["lsl.mqtt_delivered_p99_ms"]["value"] >= figs["lsl.mqtt_delivered_p50_ms"]["value"] > 0
    assert figs["lsl.realtime_streams"]["unit"] == "streams"


def check_station(figs: dict) -> None:
    for rate in ("x1", "x5", "x20"):
        assert figs[f"{rate}.lag_max"]["value"] >= figs[f"{rate}.lag_p95"]["value"] >= figs[f"{rate}.lag_p50"]["value"]
        assert figs[f"{rate}.snapshots_per_s"]["value"] > 0
    assert figs["ward_push_with_traces_bytes"]["value"] > figs["ward_push_bytes"]["value"] > 0


def check_outbox(figs: dict) -> None:
    assert {"journal_append_us", "backlog_drain_inflight1", "backlog_drain_inflight20"} <= set(figs)
    assert all(figs[k]["value"] > 0 for k in figs if k.startswith("backlog_drain"))


def check_parallel(figs: dict) -> None:
    assert figs["local_cluster_2_workers.startup_s"]["value"] > 0
    assert figs["evaluate_dog1_rec03_rec04.speedup_2_vs_1"]["unit"] == "ratio"


def check_allocator(figs: dict) -> None:
    assert {"allocator.tuned_faults_per_call", "allocator.untuned_faults_per_call", "allocator.untuned_vs_tuned"} \
        <= set(figs)


def check_research(figs: dict) -> None:
    assert figs["dog1.dataset_build_s"]["value"] > 0 and figs["dog1.train_seed_convnet_s"]["value"] > 0
    assert 0.0 <= figs["dog1.validation_roc_auc"]["value"] <= 1.0
    assert any(k.startswith("dog1.fold_train_s.") for k in figs)


CHECKS = {"replay": check_replay, "inference": check_inference, "corpus": check_corpus, "service": check_service,
          "lsl": check_lsl, "station": check_station, "outbox": check_outbox, "parallel": check_parallel,
          "allocator": check_allocator, "research": check_research}


def test_every_bench_module_has_a_shape_check() -> None:
    """A new bench module comes with its check here, so the smoke test sees what it reports."""
    assert set(MODULES) == {*CHECKS, "scale"}


@pytest.mark.timeout(HANG_GUARD_S + 120)
@pytest.mark.parametrize("name", MODULES)
def test_bench_module_runs_quick_and_reports_its_figures(name: str, tmp_path: Path) -> None:
    """Every module of the suite runs (quick mode: tiny inputs), is ok, and reports figures shaped as documented.
    One test per module, so pytest-xdist spreads them over its workers; values are checked for shape, not speed."""
    suite = run_quick(name, tmp_path / "result.json")
    assert suite["schema"] == "seizurewatch/bench/1" and suite["quick"] is True
    m = suite["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["torch"].startswith("2.") and m["python"].count(".") == 2
    assert set(suite["modules"]) == {name}
    assert suite["errors"] == [], suite["modules"][name].get("error")
    module = suite["modules"][name]
    figs = _figures(module)
    for fname, fig in figs.items():
        _check_figure(fname, fig)
    if name == "scale":
        check_scale(figs, module)
    else:
        CHECKS[name](figs)


def test_a_failing_module_is_an_error_entry_not_a_crash(tmp_path) -> None:
    """A module that raises is reported as an error; the others still report."""
    import os

    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    for f in ("__init__.py", "__main__.py", "common.py"):
        (bench_dir / f).write_text((ROOT / "bench" / f).read_text())
    (bench_dir / "bench_boom.py").write_text("def run(quick):\n    raise RuntimeError('boom on purpose')\n")
    (bench_dir / "bench_fine.py").write_text("from bench.common import figure\n\n\ndef run(quick):\n"
                                             "    return {'figures': {'x': figure(1.5, 's', 'a setup text')}}\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path / "r.json")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    suite = json.loads(proc.stdout)
    assert suite["errors"] == ["boom"]
    assert suite["modules"]["boom"]["status"] == "error" and "boom on purpose" in suite["modules"]["boom"]["error"]
    assert suite["modules"]["fine"]["figures"]["x"]["value"] == 1.5


@pytest.mark.parametrize("argv", [["bench", "--only", "no_such_module"]])
def test_cli_bench_rejects_an_unknown_module(argv: list[str]) -> None:
    from conftest import run_cli

    proc = run_cli(*argv, timeout=600)
    assert proc.returncode == 2
    assert "no_such_module" in proc.stderr and "replay" in proc.stderr
