"""Smoke test of the benchmark suite: it runs (quick mode, tiny inputs) and its JSON keeps its shape.

No timed assertions: the figures are checked to be positive numbers with units, not fast.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

MINE = ("replay", "inference", "scale", "corpus")


def _figures(module: dict) -> dict[str, dict]:
    figs = module.get("figures")
    assert isinstance(figs, dict) and figs, f"module without figures: {module}"
    return figs


def _check_figure(name: str, fig: dict) -> None:
    assert set(fig) >= {"value", "unit", "setup"}, name
    assert isinstance(fig["unit"], str) and fig["unit"], name
    assert isinstance(fig["setup"], str) and len(fig["setup"]) > 10, name


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "result.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", *MINE, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == printed  # the file holds what was printed
    return printed


def test_suite_structure_and_machine(suite: dict) -> None:
    assert suite["schema"] == "seizurewatch/bench/1"
    assert suite["quick"] is True
    m = suite["machine"]
    assert m["cores"] >= 1 and m["cpu_model"] and m["torch"].startswith("2.") and m["python"].count(".") == 2
    assert set(suite["modules"]) == set(MINE)
    assert suite["errors"] == [], {n: suite["modules"][n].get("error") for n in suite["errors"]}


def test_every_figure_is_a_positive_number_with_unit_and_setup(suite: dict) -> None:
    for name in MINE:
        for fname, fig in _figures(suite["modules"][name]).items():
            _check_figure(fname, fig)
            if fname.endswith("probability_max_abs_diff"):
                assert 0.0 <= fig["value"] < 1e-3, (fname, fig)  # pipeline and baseline classify the same windows
            elif fname == "peak_rss_growth":  # a fraction: may be zero or below
                assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]), (fname, fig)
            else:
                assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]) and fig["value"] > 0, (
                    fname, fig)


def test_replay_breakdown_and_baseline(suite: dict) -> None:
    figs = _figures(suite["modules"]["replay"])
    for rec in ("dog1_rec04", "synth23"):
        assert figs[f"{rec}.pipeline_x_realtime"]["unit"] == "x real time"
        stages = figs[f"{rec}.stages"]["stages_s"]
        assert set(stages) >= {"read", "preprocess", "buffer", "inference", "decision", "publish"}
        assert stages["inference"] > 0 and stages["read"] > 0
        assert figs[f"{rec}.pipeline_vs_baseline"]["unit"] == "ratio"
    assert figs["synth23.pipeline_x_realtime"]["target"] == 2000.0


def test_inference_covers_each_shipped_model_in_each_of_its_forms(suite: dict) -> None:
    figs = _figures(suite["modules"]["inference"])
    for model in sorted((ROOT / "models").glob("*.pt")):
        import torch  # noqa: F401 - only to read the name from the metadata below

        from seizurewatch.modelfile import load_model

        loaded = load_model(model)
        name = loaded.meta.name
        fitted = loaded.meta.raw["training"]["config"]["arch"] == "hills_forest"  # a forest: TorchScript only
        for kind in ("torchscript",) if fitted else ("torchscript", "eager", "pt2"):
            assert figs[f"{name}.{kind}.latency_p99"]["value"] >= figs[f"{name}.{kind}.latency_p50"]["value"]
            assert figs[f"{name}.{kind}.batch16_windows_per_s"]["unit"] == "windows/s"


def test_corpus_runs_serial_and_on_clusters_with_equal_results(suite: dict) -> None:
    """The corpus module times evaluate and the replays serially and on 1 and 2 one-core workers, and
    the three gave the same metrics and traces (what the ratios may be is for the JSON, not a test)."""
    figs = _figures(suite["modules"]["corpus"])
    for what in ("evaluate", "replay"):
        h = next(k for k in figs if k.startswith(f"{what}_") and k.endswith(".speedup_2_vs_1")).rsplit(".", 1)[0]
        assert {f"{h}.seconds_serial", f"{h}.seconds_1_worker", f"{h}.seconds_2_workers"} <= set(figs)
        assert figs[f"{h}.speedup_2_vs_1"]["identical_results"] is True
        assert figs[f"{h}.speedup_2_vs_serial"]["identical_results"] is True
    assert figs["cores.speedup_2_vs_1"]["unit"] == "ratio"


def test_scale_reports_streams_and_memory(suite: dict) -> None:
    mod = suite["modules"]["scale"]
    figs = _figures(mod)
    assert figs["scale.realtime_streams"]["unit"] == "streams"
    assert figs["scale.realtime_streams"]["value"] >= 1
    assert mod["trials"] and all(t["rss_run_mb"] > 0 for t in mod["trials"])


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
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    suite = json.loads(proc.stdout)
    assert suite["errors"] == ["boom"]
    assert suite["modules"]["boom"]["status"] == "error" and "boom on purpose" in suite["modules"]["boom"]["error"]
    assert suite["modules"]["fine"]["figures"]["x"]["value"] == 1.5


@pytest.mark.parametrize("argv", [["bench", "--only", "no_such_module"]])
def test_cli_bench_rejects_an_unknown_module(argv: list[str]) -> None:
    from conftest import run_cli

    proc = run_cli(*argv, timeout=60)
    assert proc.returncode == 2
    assert "no_such_module" in proc.stderr and "replay" in proc.stderr


def test_corpus_dataset_stays_about_one_copy_of_the_signal(suite: dict) -> None:
    """The dataset layout, not a speed: windows are cut on read, so the folder holds the signal once
    whatever the stride; evaluate on 1 and 2 workers gives the same metrics."""
    figs = _figures(suite["modules"]["corpus"])
    ratios = {k: v["value"] for k, v in figs.items() if k.endswith("disk_vs_signal")}
    assert len(ratios) >= 2 and all(1.0 <= r <= 1.1 for r in ratios.values()), ratios
    speed = [v for k, v in figs.items() if k.endswith("speedup_2_vs_1") and k.startswith(("evaluate", "replay"))]
    assert speed and all(v["identical_results"] for v in speed)
    assert figs["processes.speedup_2_vs_1"]["unit"] == "ratio"
