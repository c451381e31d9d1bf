"""Day one -> the patient's own model, end to end on Dog_1 (README, "Day one: a pretrained model").

Bed 3 is a new patient: no seizure of theirs has been recorded, so the daemon starts on the pretrained
brainmaze model; a nurse confirms its alarm on the first recorded seizure; the marks are exported as
labels; once the patient has seizures, their own model is trained and pinned, and the restarted daemon
runs it. Every step is the CLI a ward would use; a Mosquitto on a free loopback port stands in for the
ward broker. Prints each command and what it answered.

    python scripts/dayone_handover.py [OUT_DIR]      (default runs/dayone; needs mosquitto and '.[pretrained]')
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOG1 = ROOT.parent / "shared" / "data" / "dog1"
DEVICE = ROOT / "devices" / "dog1-ecog16.yaml"
SW = [sys.executable, "-m", "seizurewatch"]


def sh(*args: str, show: int = 30) -> str:
    print("$ seizurewatch " + " ".join(shlex.quote(str(a).replace(str(ROOT) + "/", "")) for a in args), flush=True)
    r = subprocess.run([*SW, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {r.stderr[-2000:]}")
    print("\n".join(r.stdout.splitlines()[:show]), flush=True)
    return r.stdout


def write_config(path: Path, model: Path, sha256: str, edf: Path, url: str, outbox: Path) -> None:
    path.write_text(f"streams:\n  - patient: bed3\n    device: {DEVICE}\n"
                    f"    source: {{kind: edf, path: {edf}, speed: 10}}\n"
                    f"model: {{path: {model}, sha256: {sha256}}}\n"
                    f"mqtt: {{url: {url}}}\noutbox: {{path: {outbox}}}\n", encoding="utf-8")
    print(f"# {path.name}: bed3 <- {edf.name}, model {model.name} pinned to {sha256[:16]}...", flush=True)


async def night(config: Path, port: int, url: str, confirm: bool) -> list[dict]:
    """Run the daemon on ``config`` to the end of its recording; a nurse confirms the first alarm."""
    import aiomqtt

    seen: list[dict] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier="ward-station") as c:
        await c.subscribe("seizurewatch/bed3/#", qos=1)
        daemon = await asyncio.create_subprocess_exec(*SW, "run", "--config", str(config), cwd=ROOT,
                                                      stderr=subprocess.DEVNULL)
        async with asyncio.timeout(300):
            async for m in c.messages:
                topic = str(m.topic).rsplit("/", 1)[1]
                if m.retain or topic not in ("alarm", "state", "status"):
                    continue
                if topic == "status":
                    if m.payload == b"offline":
                        break
                    continue
                ev = json.loads(m.payload)
                seen.append({"topic": topic, **ev})
                if topic == "alarm" and ev["event"] == "start":
                    print(f"  alarm start t={ev['t']} s p={ev['probability']} threshold={ev['threshold']} "
                          f"model={ev['model']['name']}", flush=True)
                    if confirm:
                        await asyncio.to_thread(sh, "ack", "--mqtt-url", url, "--patient", "bed3", "--alarm-id",
                                                ev["alarm_id"], "--action", "confirmed", "--by", "nurse A")
                elif topic == "alarm" and ev["event"] in ("end", "ack"):
                    print(f"  alarm {ev['event']} t={ev['t']} s" + (f" ({ev['action']} by {ev['by']})"
                                                                    if ev["event"] == "ack" else ""), flush=True)
        await daemon.wait()
    states = {s["model"]["name"] for s in seen if s["topic"] == "state"}
    print(f"  retained state names the model in force: {sorted(states)}", flush=True)
    return seen


def main() -> None:
    out = (ROOT / (sys.argv[1] if len(sys.argv) > 1 else "runs/dayone")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = out / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n", encoding="utf-8")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                              stderr=subprocess.DEVNULL)
    url = f"mqtt://127.0.0.1:{port}"
    try:
        time.sleep(1.0)
        print("## 1. day one: the pretrained model, pinned", flush=True)
        model = out / "brainmaze.pt"
        pin = json.loads(sh("import", "brainmaze", "--device", DEVICE, "--out", model, show=8))["file_sha256"]
        config, journal = out / "bed3.yaml", out / "outbox.sqlite3"
        write_config(config, model, pin, DOG1 / "dog1_rec01.edf", url, journal)
        print("## 2. the first recorded seizure (76-107 s): the pretrained model alarms, a nurse confirms", flush=True)
        asyncio.run(night(config, port, url, confirm=True))
        print("## 3. the marks as labels for dataset build", flush=True)
        sh("labels", "export", "--journal", journal, "--config", config, "--out", out / "labels",
           "--since", "2020-01-01", show=12)
        for csv in sorted((out / "labels").glob("*.csv")):
            print(f"# {csv.name}:\n" + csv.read_text(encoding="utf-8").strip(), flush=True)
        print("## 4. the patient's own model, once it has seizures (rec01-03), threshold out of fold", flush=True)
        patient = out / "patient.pt"
        sh("train", str(ROOT / "config" / "train-dog1.yaml"), "--output", patient, "--no-progress", show=6)
        import hashlib

        write_config(config, patient, hashlib.sha256(patient.read_bytes()).hexdigest(), DOG1 / "dog1_rec04.edf",
                     url, journal)
        print("## 5. the restarted daemon runs the patient's model for the same bed (rec04, seizure 60-101 s)",
              flush=True)
        asyncio.run(night(config, port, url, confirm=False))
    finally:
        broker.terminate()
        broker.wait(10)


if __name__ == "__main__":
    main()
