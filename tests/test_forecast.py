"""Issue 31: prediction models evaluated the way forecasting studies are (research/forecast.py).

The chance predictor (Snyder's analytic binomial and the shuffled-onset surrogate) on traces whose
answer is known; alarm-based figures (SPH / SOP, time in warning, false warnings per day); clip AUC
against shuffled labels; ``compare`` on Kaggle prediction clips the test writes (per-horizon AUC with
the chance comparison) and on the Delhi segments; risk levels chosen on held-out windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
from conftest import DATA
from synthetic_dataset import make_dataset, tiny_model_yaml

from seizurewatch.errors import DataError
from seizurewatch.modelfile import load_model
from seizurewatch.research.crossval import CompareOptions, compare
from seizurewatch.research.dataset import DatasetSpec, build_dataset
from seizurewatch.research.dataset.spec import SplitSpec
from seizurewatch.research.forecast import (
    Recording,
    alarm_figures,
    auc_against_chance,
    chance_analytic,
    chance_surrogate,
    choose_levels,
    clip_scores,
)
from seizurewatch.research.training_run import train_from_dataset

DAY = 86_400.0


def _trace(duration: float, warn_at: list[float], onsets: list[float], hop: float = 60.0) -> Recording:
    t = np.arange(hop, duration + 1e-9, hop)
    p = np.where(np.isin(t, warn_at), 0.9, 0.1)
    return Recording(t, p, duration, tuple(onsets))


def test_alarm_figures_follow_the_sph_sop_definitions():
    # one day; warnings at 1 h and 10 h; SPH 5 min, SOP 30 min: a warning at t covers onsets in [t+300, t+2100]
    rec = _trace(DAY, [3600.0, 36000.0], [3600.0 + 1000.0, 3600.0 + 200.0 + 7200.0, 50000.0])
    f = alarm_figures([rec], threshold=0.5, sph_s=300.0, sop_s=1800.0)
    assert (f["seizures"], f["predicted"]) == (3, 1)  # the 2nd onset is after the SOP, the 3rd never warned
    assert f["time_in_warning"] == pytest.approx(2 * 2100.0 / DAY, abs=1e-4)
    assert f["false_warnings"] == 1 and f["false_warnings_per_day"] == pytest.approx(1.0)
    assert f["exposure_h"] == 24.0
    # an onset inside the SPH (too soon to act) is not predicted
    early = _trace(DAY, [3600.0], [3600.0 + 100.0])
    assert alarm_figures([early], 0.5, 300.0, 1800.0)["predicted"] == 0


def test_chance_predictor_analytic_matches_the_binomial_and_the_surrogate():
    # a predictor always in warning is no better than chance: chance sensitivity 1, p = 1
    assert chance_analytic(5, 5, 1.0) == {"chance_sensitivity": 1.0, "p_value": 1.0}
    # 4 of 5 onsets at 10 % time in warning: P(X >= 4), X ~ Binomial(5, 0.1)
    p = sum(math.comb(5, j) * 0.1**j * 0.9 ** (5 - j) for j in (4, 5))
    assert chance_analytic(5, 4, 0.1)["p_value"] == pytest.approx(p, rel=1e-4)
    # a predictor warning before every onset of 6 over 6 days at ~3 % time in warning beats the surrogate;
    # the same warnings put at random times do not
    onsets = [DAY * d + 40020.0 for d in range(6)]  # on the 60-s hop grid
    good = _trace(6 * DAY, [o - 600.0 for o in onsets], onsets)
    f = alarm_figures([good], 0.5, 300.0, 1800.0)
    assert f["sensitivity"] == 1.0 and f["time_in_warning"] < 0.05
    s = chance_surrogate([good], 0.5, 300.0, 1800.0, shuffles=400)
    assert s["chance_sensitivity"] == pytest.approx(f["time_in_warning"], abs=0.03)  # surrogate ~ analytic w
    assert s["p_value"] < 0.01 and chance_analytic(6, 6, f["time_in_warning"])["p_value"] < 1e-6
    rng = np.random.default_rng(1)
    blind = _trace(6 * DAY, sorted(float(x) for x in rng.choice(np.arange(60.0, 6 * DAY, 60.0), 6)), onsets)
    assert chance_surrogate([blind], 0.5, 300.0, 1800.0, shuffles=400)["p_value"] > 0.05


def test_clip_auc_against_shuffled_labels_moves_groups_together():
    names = [f"c{i}" for i in range(8) for _ in range(3)]  # 8 clips of 3 windows
    y = np.repeat([1, 1, 1, 1, 0, 0, 0, 0], 3)[:, None]
    p = np.repeat([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1], 3)[:, None] + 0.0
    clips, yc, pc = clip_scores(names, y, p)
    assert clips[:2] == ["c0", "c1"] and yc[:, 0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    r = auc_against_chance(yc[:, 0], pc[:, 0], shuffles=500)
    assert r["auc"] == 1.0 and r["chance_95"] < 1.0 and r["p_value"] < 0.05
    # two groups only (all positives in one): no shuffle can tell, chance reaches the observed AUC every time
    g = auc_against_chance(yc[:, 0], pc[:, 0], ["a"] * 4 + ["b"] * 4, shuffles=50)
    assert g["p_value"] > 0.4
    assert auc_against_chance(np.ones(4), np.ones(4))["auc"] is None


def test_levels_are_chosen_on_held_out_windows_and_written_to_the_model(tmp_path):
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200), np.zeros(800)]
    p = np.clip(np.r_[rng.normal(0.7, 0.15, 200), rng.normal(0.3, 0.15, 800)], 0.001, 0.999)
    lv = choose_levels(y, p, "val")
    assert 0 < lv["elevated"] < lv["high"] < 1
    assert np.mean(p[y == 0] >= lv["high"]) <= 0.05 + 1e-9  # high: at most 5 % of interictal windows
    assert choose_levels(np.zeros(5), np.zeros(5), "val")["policy"] == "default"
    ds = make_dataset(tmp_path / "ds", horizons=2, per_split={"train": 48, "val": 10, "test": 10})  # >= 10 a class
    train_from_dataset(ds, tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=3), tmp_path / "h.pt",
                       progress=False)
    meta = load_model(tmp_path / "h.pt").meta
    assert meta.detection_output is None and [(o.name, o.horizon_s) for o in meta.risk_outputs] == [
        ("preictal_600s", 600.0), ("preictal_1200s", 1200.0)]
    assert all(0 < o.elevated < o.high < 1 for o in meta.risk_outputs)


def _kaggle_clips(folder, rate: float = 64.0) -> None:
    """Kaggle prediction clips (10 min, 2 channels): 3 preictal hours of 6 clips with a 4 Hz rhythm that grows
    towards the onset, 18 interictal clips of noise."""
    rng = np.random.default_rng(0)
    n = int(600 * rate)
    t = np.arange(n) / rate
    k = 0
    for _hour in range(3):
        for seq in range(1, 7):
            k += 1
            x = rng.normal(0, 10, (2, n)) + 6.0 * seq * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
            st = {"data": x, "data_length_sec": 600, "sampling_frequency": rate,
                  "channels": np.array(["NV_c1", "NV_c2"], dtype=object), "sequence": seq}
            scipy.io.savemat(folder / f"Dog_5_preictal_segment_{k:04d}.mat", {f"preictal_segment_{k}": st})
    for k in range(1, 19):
        st = {"data": rng.normal(0, 10, (2, n)), "data_length_sec": 600, "sampling_frequency": rate,
              "channels": np.array(["NV_c1", "NV_c2"], dtype=object), "sequence": (k - 1) % 6 + 1}
        scipy.io.savemat(folder / f"Dog_5_interictal_segment_{k:04d}.mat", {f"interictal_segment_{k}": st})


def test_compare_on_kaggle_prediction_clips_prints_per_horizon_auc_with_chance(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    _kaggle_clips(clips)
    spec = DatasetSpec(recordings=(str(clips),), task="prediction", horizons_s=(600, 3600), window_s=60,
                       stride_s=60, stride_ictal_s=60, channels=("c1", "c2"), rate=64.0,
                       split=SplitSpec(assign={"*": "train"}))
    build_dataset(spec, tmp_path / "ds")
    # the 10-min horizon has 3 positive clips by design (each hour's last): below train's usual minimum
    # of 10 windows a class, which this test lowers (it is about per-horizon scoring, not data sufficiency)
    few = "min_windows_per_class: 1\n"
    res = compare(tmp_path / "ds", [str(tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=15, extra=few))],
                  tmp_path / "out", CompareOptions(baseline=None))
    (m,) = res["models"]
    assert [(h["output"], h["horizon_s"]) for h in m["horizons"]] == [("preictal_600s", 600.0),
                                                                      ("preictal_3600s", 3600.0)]
    one_hour = m["horizons"][1]
    assert (one_hour["positive"], one_hour["negative"]) == (18, 18) and m["clips"] == 36
    # the 10-min horizon: only each hour's last clip is within 10 min of the onset
    assert m["horizons"][0]["positive"] == 3
    assert one_hour["auc"] > one_hour["chance_95"] and one_hour["p_value"] < 0.05
    assert 0 < one_hour["levels"]["elevated"] < one_hour["levels"]["high"] < 1  # chosen out of fold
    assert "| preictal_3600s | 3600 s | 18/18 |" in res["markdown"] and "chance 95 %" in res["markdown"]
    assert (tmp_path / "out" / "compare.md").read_text().startswith("Per-horizon clip AUC")
    # a model trained on all of it has no validation split: default levels, until chosen out of fold
    from seizurewatch.research.threshold_choice import Validation, choose_threshold

    cfg = tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=15, extra=few)
    train_from_dataset(tmp_path / "ds", cfg, tmp_path / "pred.pt", progress=False)
    assert load_model(tmp_path / "pred.pt").meta.raw["risk"]["preictal_3600s"]["policy"] == "default"
    choose_threshold(tmp_path / "pred.pt", "oof", on=Validation(dataset=tmp_path / "ds"))
    meta = load_model(tmp_path / "pred.pt").meta
    chosen = meta.raw["risk"]["preictal_3600s"]
    assert chosen["chosen_on"] == "ds: out-of-fold windows" and chosen["policy"].startswith("youden")
    assert [o.horizon_s for o in meta.risk_outputs] == [600.0, 3600.0] and meta.detection_output is None


def test_compare_refuses_a_prediction_dataset_of_continuous_recordings(tmp_path):
    from edf_writer import write_edf

    rng = np.random.default_rng(0)
    for k in (1, 2):
        write_edf(tmp_path / f"cont{k}.edf", rng.normal(0, 10, (2, 400 * 64)), 64, ["c1", "c2"],
                  annotations=[(300.0, 20.0, "seizure")])
    spec = DatasetSpec(recordings=(str(tmp_path / "cont*.edf"),), task="prediction", horizons_s=(60.0,),
                       interictal_min_s=120.0, window_s=10.0, stride_s=10.0, split=SplitSpec(assign={"*": "train"}))
    build_dataset(spec, tmp_path / "ds")
    with pytest.raises(DataError, match=r"continuous recordings \(cont1.edf, cont2.edf\).*use 'seizurewatch evaluate'"):
        compare(tmp_path / "ds", ["m.yaml"], tmp_path / "out", CompareOptions(baseline=None))


@pytest.mark.needs_data
@pytest.mark.slow
def test_delhi_segments_compare(tmp_path):
    spec = DatasetSpec(recordings=(str(DATA / "delhi"),), task="prediction", horizons_s=(600, 3600), window_s=5.12,
                       channels=("EEG",), rate=200.0, split=SplitSpec(assign={"*": "train"}))
    m = build_dataset(spec, tmp_path / "ds")
    assert m["n"] == 100  # 50 preictal + 50 interictal segments; ictal segments are not prediction data
    res = compare(tmp_path / "ds", [str(tiny_model_yaml(tmp_path / "m.yaml", "bandpower_lr", epochs=20))],
                  tmp_path / "out", CompareOptions(baseline=None))
    for h in res["models"][0]["horizons"]:
        assert (h["positive"], h["negative"]) == (50, 50) and 0.4 < h["chance_95"] < 0.7
        assert h["auc"] is not None


def test_evaluate_a_prediction_model_on_a_continuous_recording_per_horizon(tmp_path):
    """Two seizures in 400 s; the 30-s output rises 25 s before each onset and once, falsely, at 40-50 s."""
    import torch
    from edf_writer import write_edf

    from seizurewatch.modelfile import save_model
    from seizurewatch.research.evaluate import evaluate

    rate = 50
    t = np.arange(400 * rate) / rate
    b = np.where(((t >= 125) & (t < 150)) | ((t >= 305) & (t < 330)) | ((t >= 40) & (t < 50)), 0.8, 0.1)
    data = np.random.default_rng(0).normal(0, 2, (1, len(t))) + 1000.0 * b
    edf = write_edf(tmp_path / "two.edf", data, rate, ["b"], annotations=[(150.0, 10.0, "seizure"),
                                                                         (330.0, 10.0, "seizure")])

    class Level(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, :, -50:].mean(dim=2) / 1000.0).clamp(0.0, 1.0)

    meta = {"name": "thirty", "outputs": ["preictal_30s"], "window_s": 2.0, "hop_s": 1.0,
            "preprocess": {"channels": ["b"], "rate": float(rate), "bandpass": None, "notch": None},
            "threshold": {"value": 0.5}, "risk": {"preictal_30s": {"horizon_s": 30.0, "elevated": 0.4, "high": 0.7}}}
    save_model(Level(), meta, tmp_path / "m.pt", torch.zeros(2, 1, 2 * rate))
    res = evaluate(tmp_path / "m.pt", [str(edf)], tmp_path / "out")
    (h,) = res["horizons"]
    assert (h["sph_s"], h["sop_s"]) == (0.0, 30.0)
    high = h["levels"]["high"]
    assert (high["predicted"], high["seizures"], high["false_warnings"]) == (2, 2, 1)
    # warned 125-150 s, 305-330 s and 40-50 s, each for 30 s after: ~ (55 + 55 + 40) / 400 of the time
    assert high["time_in_warning"] == pytest.approx(150 / 400, abs=0.02)
    assert high["chance_analytic"]["p_value"] == pytest.approx(high["time_in_warning"] ** 2, rel=0.01)
    # 50 of the 60 windows within 30 s of an onset are high, 10 of ~320 others: AUC ~ 0.88, far above chance
    assert h["windows"]["auc"] == pytest.approx(0.88, abs=0.03) and h["windows"]["auc"] > h["windows"]["chance_95"]
    assert "| 30 s (SPH 0, SOP 30) | high (0.700) |" in res["markdown"]
