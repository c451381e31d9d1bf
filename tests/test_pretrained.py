"""seizurewatch import brainmaze: the model file gives brainmaze-eeg-models' own ONNX Runtime probabilities,
carries its licence, and runs in the daemon like any model (real Mosquitto, real Dog_1 recording)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from alarm_support import validate
from conftest import DOG1, ROOT

pytest.importorskip("brainmaze_eeg_models", reason="pip install '.[test]' (brainmaze-eeg-models, onnx)")

DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
PARITY_ATOL = 1e-5  # float32 BiLSTM in two runtimes; measured <= 2.4e-7 over 161 windows of rec01-04


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from seizurewatch.pretrained.importer import import_brainmaze

    out = tmp_path_factory.mktemp("pretrained") / "brainmaze.pt"
    meta = import_brainmaze(out, DEVICE)
    return out, meta


def _reference(windows: np.ndarray, rate: int) -> np.ndarray:
    """brainmaze's own code on ONNX Runtime: each channel's spectrogram, P(seizure) of the newest column, max."""
    from brainmaze_eeg_models.seizure import infer_seizure_probability, preprocess_input

    b, c, t = windows.shape
    sxx = preprocess_input(windows.reshape(b * c, t).astype(np.float64), rate)
    p = infer_seizure_probability(sxx, "modelA", device="cpu")  # (b*c, columns)
    return p[:, -1].reshape(b, c).max(axis=1)


def test_imported_file_gives_brainmaze_onnx_runtime_probabilities_on_dog1(imported):
    from seizurewatch.modelfile import load_model
    from seizurewatch.recordings import open_recording

    path, meta = imported
    model = load_model(path, expect_sha256=meta["file_sha256"])  # the printed pin loads it
    n = model.meta.window_samples
    assert (model.meta.window_s, model.meta.hop_s, model.meta.preprocess.rate) == (10.0, 1.0, 400.0)
    with open_recording(DOG1 / "dog1_rec04.edf") as rec:
        # windows ending before, at and inside the seizure (60-101 s) and after it
        windows = np.stack([rec.read(int(end * 400) - n, n) for end in (30, 55, 65, 75, 85, 95, 110)])
    ref = _reference(windows, 400)
    with torch.inference_mode():
        got = model.module(torch.from_numpy(windows.astype(np.float32))).numpy()[:, 0]
    assert np.abs(got - ref).max() <= PARITY_ATOL, (got, ref)
    assert ref.max() > 0.5 > ref.min(), "the windows span both sides of the default threshold"


def test_model_file_keeps_the_source_and_its_licence(imported):
    from seizurewatch.modelfile import load_model

    path, meta = imported
    raw = load_model(path).meta.raw
    src = raw["source"]
    assert (src["package"], src["version"], src["variant"], src["license"]) == (
        "brainmaze-eeg-models", "0.1.0", "modelA", "BSD-3-Clause")
    assert len(src["onnx_sha256"]) == 64
    assert "BSD 3-Clause License" in src["license_text"] and "Mayo Clinic" in src["license_text"]
    assert (path.parent / (path.name + ".LICENSE")).read_text() == src["license_text"]
    assert raw["pretrained"]["causal"] and raw["pretrained"]["context_s"] == 10.0
    assert raw["preprocess"]["channels"] == [f"c{i:03d}" for i in range(1, 17)]


def test_cli_import_prints_the_pin_of_the_file_it_wrote(tmp_path):
    out = tmp_path / "bm.pt"
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "import", "brainmaze", "--variant", "modelB",
                        "--device", str(DEVICE), "--context-s", "5", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert printed["source"]["variant"] == "modelB" and printed["window_s"] == 5.0


def test_cli_import_refuses_a_rate_the_model_cannot_use(tmp_path):
    r = subprocess.run([sys.executable, "-m", "seizurewatch", "import", "brainmaze", "--device", str(DEVICE),
                        "--rate", "199", "--out", str(tmp_path / "bm.pt")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert "--rate: 199 Hz" in r.stderr and "whole, even rate >= 200" in r.stderr
    assert not (tmp_path / "bm.pt").exists()


async def _collect(port: int, started: asyncio.Event, out: dict[str, list[bytes]], patient: str) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="test-pretrained") as c:
        await c.subscribe(f"seizurewatch/{patient}/#", qos=1)
        started.set()
        async with asyncio.timeout(240):  # hang guard; the daemon's offline status ends it
            async for m in c.messages:
                if m.retain:  # what an earlier run left on the broker, not this run's
                    continue
                out.setdefault(str(m.topic).rsplit("/", 1)[1], []).append(bytes(m.payload))
                if str(m.topic).endswith("/status") and m.payload == b"offline":
                    return


def _run_daemon(config, port: int, patient: str) -> dict[str, list[bytes]]:
    """Run the daemon on ``config`` to the end of its recording; what the broker carried for ``patient``."""

    async def main() -> dict[str, list[bytes]]:
        got: dict[str, list[bytes]] = {}
        started = asyncio.Event()
        sub = asyncio.create_task(_collect(port, started, got, patient))
        await started.wait()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "seizurewatch", "run", "--config",
                                                    str(config), cwd=ROOT, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        await asyncio.wait_for(sub, 60)
        return got

    return asyncio.run(main())


def _config(path, model, sha256: str, broker_url: str, outbox) -> None:
    path.write_text(
        f"streams:\n  - patient: bed3\n    device: {DEVICE}\n"
        f"    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: max}}\n"
        f"model: {{path: {model}, sha256: {sha256}}}\n"
        f"mqtt: {{url: {broker_url}}}\noutbox: {{path: {outbox}}}\n")


@pytest.mark.slow
def test_day_one_pretrained_model_then_the_patient_model_into_mosquitto(imported, mosquitto, tmp_path):
    """Day one: the daemon runs the pinned pretrained file on rec04 and publishes its alarm; then the config
    pins the patient's own model (the shipped Dog_1 model) and the restarted daemon goes on for the same bed.
    Every alarm and every retained state names the model in force, and the station shows it on the bed."""
    from seizurewatch.station.ward import Ward

    path, meta = imported
    config, outbox = tmp_path / "bed3.yaml", tmp_path / "outbox.sqlite3"
    _config(config, path, meta["file_sha256"], mosquitto.url, outbox)
    day_one = _run_daemon(config, mosquitto.port, "bed3")
    patient_model = ROOT / "models" / "dog1-hills-early.pt"
    _config(config, patient_model, hashlib.sha256(patient_model.read_bytes()).hexdigest(), mosquitto.url, outbox)
    later = _run_daemon(config, mosquitto.port, "bed3")

    ward = Ward()
    for got, name in ((day_one, "brainmaze-modelA-10s"), (later, "dog1-hills-early")):
        alarms = [json.loads(x) for x in got.get("alarm", [])]
        for a in alarms:
            validate(a)
        starts = [a for a in alarms if a["event"] == "start"]
        assert starts, f"{name}: no alarm published; topics {sorted(got)}"
        assert 60 <= starts[0]["t"] <= 101, f"{name}: first alarm at {starts[0]['t']} s; the seizure is 60-101 s"
        assert {a["model"]["name"] for a in alarms} == {name}
        states = [json.loads(s) for s in got["state"]]
        for st in states:
            validate(st)
            ward.on_state("bed3", st, st["wall_time"])
        assert {st["model"]["name"] for st in states} == {name} and "alarm" in [st["state"] for st in states]
        assert ward.snapshot(states[-1]["wall_time"])["beds"][0]["model"] == name  # the station's bed card
    first = [json.loads(x) for x in day_one["alarm"]]
    assert first[0]["threshold_policy"] == "default" and first[0]["threshold"] == 0.5
    # one patient, one journal: the sequence numbers go on across the hand-over
    assert max(json.loads(x)["seq"] for x in day_one["alarm"]) < min(json.loads(x)["seq"] for x in later["alarm"])


def test_train_and_compare_take_the_pretrained_model_as_a_model_fitted_once_with_nothing_to_fit(tmp_path):
    """The path compare and threshold --policy oof take (train_from_dataset on a fold): the file it writes
    computes what the pretrained network computes, whatever the training windows were."""
    from synthetic_dataset import RATE, make_dataset

    from seizurewatch.modelfile import load_model
    from seizurewatch.research.architectures import Deployable, build
    from seizurewatch.research.crossval import fits_once
    from seizurewatch.research.dataset import open_dataset
    from seizurewatch.research.training_run import load_model_config, train_from_dataset

    ds = open_dataset(make_dataset(tmp_path / "ds", per_split={"train": 8, "val": 4, "test": 4}))
    spec = load_model_config(ROOT / "config" / "models" / "brainmaze.yaml")
    assert fits_once(ds, spec)
    meta = train_from_dataset(ds, spec, tmp_path / "fold.pt", progress=False)
    assert meta["architecture"]["arch"] == "brainmaze" and meta["architecture"]["kwargs"] == {"variant": "modelA"}
    n_ch, n = ds.x.shape[1], ds.x.shape[2]
    untouched = Deployable(build("brainmaze", n_ch, n, 1, rate=RATE), torch.zeros(n_ch), torch.ones(n_ch)).eval()
    x = torch.from_numpy(np.ascontiguousarray(ds.x[ds.rows("test")], dtype=np.float32))
    with torch.inference_mode():
        got, want = load_model(tmp_path / "fold.pt").module(x), untouched(x)
    assert float((got - want).abs().max()) <= PARITY_ATOL  # the training windows changed nothing
    assert float(want.max()) > float(want.min())  # and the windows give different scores
