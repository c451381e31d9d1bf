"""Regenerate docs/station.png: a real ward on a real Mosquitto, photographed in Debian's headless Chromium.

    .venv/bin/python scripts/station_screenshot.py [OUT.png [AFTER_ACK.png]]

bed1 replays dog1_rec04 (its seizure raises an alarm, escalated after 10 s unanswered, with the EEG the model saw
on its card; the page's sound is switched on, so it plays the escalation pattern), bed2 loops
dog1_rec02 from its seizure-free start (OK), bed3 replays dog1_rec02 with 12 of 16 channels flat (a
flatline fault that escalates), bed4's daemon is killed with SIGKILL (its last will: OFFLINE).
Everything runs on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyedflib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import DOG1, MODEL, Mosquitto, free_port, wait_port  # noqa: E402
from edf_writer import write_edf  # noqa: E402


def flat_copy(src: Path, dest: Path, flat: int) -> Path:
    with pyedflib.EdfReader(str(src)) as r:
        labels = r.getSignalLabels()
        rate = int(r.getSampleFrequency(0))
        data = np.vstack([r.readSignal(i) for i in range(len(labels))])
    data[:flat] = 0.0  # electrodes off: a flat line on most channels
    return write_edf(dest, data, rate, labels, plus=False)


async def first_state(port: int, patient: str) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier=f"shot-{patient}") as c:
        await c.subscribe(f"seizurewatch/{patient}/state", qos=1)
        async with asyncio.timeout(180):
            async for m in c.messages:
                if b'"ok"' in bytes(m.payload):  # type: ignore[arg-type]
                    return


def main(out: Path, after: Path | None = None) -> None:
    work = Path(tempfile.mkdtemp(prefix="station-shot-"))
    broker = Mosquitto(work)
    broker.start()
    procs: list[subprocess.Popen] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        flat = flat_copy(DOG1 / "dog1_rec02.edf", work / "bed3_flat.edf", flat=12)
        (work / "ward.yaml").write_text(
            "streams:\n"
            f"  - patient: bed1\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec04.edf'}, speed: 2}}\n"
            f"  - patient: bed2\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec03.edf'}, speed: 0.5}}\n"
            f"  - patient: bed3\n    source: {{kind: edf, path: {flat}, speed: 1, loop: true}}\n"
            f"model: {{path: {MODEL}}}\ndecision: {{escalate_after_s: 10}}\n"
            f"mqtt: {{url: {broker.url}}}\noutbox: {{path: {work / 'ward.sqlite3'}}}\n")
        (work / "bed4.yaml").write_text(
            f"streams:\n  - patient: bed4\n    source: {{kind: edf, path: {DOG1 / 'dog1_rec01.edf'}, speed: 1}}\n"
            f"model: {{path: {MODEL}}}\nmqtt: {{url: {broker.url}}}\noutbox: {{path: {work / 'bed4.sqlite3'}}}\n")
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "seizurewatch", "station", "--listen",
                                       f"127.0.0.1:{port}", "--mqtt-url", broker.url], cwd=ROOT, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port, 30)
        bed4 = subprocess.Popen([sys.executable, "-m", "seizurewatch", "run", "--config", str(work / "bed4.yaml")],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(bed4)
        procs.append(subprocess.Popen([sys.executable, "-m", "seizurewatch", "run", "--config",
                                       str(work / "ward.yaml")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        asyncio.run(first_state(broker.port, "bed4"))  # monitoring (its state is on the broker)...
        bed4.send_signal(signal.SIGKILL)  # the bedside box dies: the broker publishes its last will
        from selenium import webdriver
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1500,1150", "--hide-scrollbars"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            driver.find_element(By.ID, "sound").click()  # the one click that lets the page sound the alarm
            WebDriverWait(driver, 120, 0.5, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: "ESCALATED" in d.find_element(By.ID, "bed-bed1").text
                and d.find_elements(By.CSS_SELECTOR, "#bed-bed1 .eegbox svg.eeg")
                and d.find_element(By.ID, "bed-bed4").get_attribute("data-shown") == "offline"
                and d.find_element(By.ID, "bed-bed3").get_attribute("data-shown") == "fault")
            name = driver.find_element(By.ID, "by")
            name.send_keys("Nurse Okafor")
            time.sleep(6)  # one trace push
            driver.save_screenshot(str(out))
            if after is not None:  # the same ward once bed1's alarm is acknowledged
                driver.find_element(By.CSS_SELECTOR, "#bed-bed1 button.ack").click()
                WebDriverWait(driver, 30, 0.5, ignored_exceptions=(StaleElementReferenceException,)).until(
                    lambda d: "Acknowledged by Nurse Okafor" in d.find_element(By.ID, "bed-bed1").text)
                driver.save_screenshot(str(after))
        except Exception:
            driver.save_screenshot(str(out.with_suffix(".failed.png")))  # what the page showed when it gave up
            raise
        finally:
            driver.quit()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
        broker.stop()
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "station.png",
         Path(sys.argv[2]) if len(sys.argv) > 2 else None)
