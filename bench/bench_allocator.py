"""The allocator setting of ``inference.configure_compute``: page faults per model call with glibc's
mmap/trim thresholds raised (the daemon's setting) and left as they are, each in a fresh process (the
setting is process-wide). Moved here from tests/ (issue 14.17): a count that depends on the machine's
load is a figure, not a pass/fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

from bench.common import figure

SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from concurrent.futures import ThreadPoolExecutor
    from seizurewatch.research.architectures import build
    if sys.argv[1] == "tuned":
        from seizurewatch.inference import configure_compute
        assert configure_compute(1)
    else:
        torch.set_num_threads(1)
    net = build("seed_convnet", n_channels=23, n_samples=7680, n_outputs=1).eval()
    x = torch.randn(8, 23, 7680)
    calls = int(sys.argv[2])

    def call():  # in a worker thread (its own malloc arena), a fresh 5.6 MB input each call
        with torch.inference_mode():
            return net(x * 1.0)

    model_thread = ThreadPoolExecutor(1)
    for _ in range(3):
        model_thread.submit(call).result()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        model_thread.submit(call).result()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / calls)
""")


def faults_per_call(mode: str, calls: int) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(calls)], capture_output=True, text=True,
                         timeout=600, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    if not sys.platform.startswith("linux"):
        return {"figures": {}, "errors": {"allocator": "glibc's allocator only"}}
    calls = 50 if quick else 200
    setup = (f"seed ConvNet 23 ch x 7680 samples, batch 8, {calls} calls in a worker thread after 3 warm-up "
             "calls, minor page faults (getrusage) per call, each mode in a fresh process")
    tuned, untuned = faults_per_call("tuned", calls), faults_per_call("untuned", calls)
    return {"figures": {
        "allocator.tuned_faults_per_call": figure(tuned, "page faults/call", setup),
        "allocator.untuned_faults_per_call": figure(untuned, "page faults/call", setup),
        "allocator.untuned_vs_tuned": figure(untuned / max(tuned, 1.0), "ratio", setup + "; measured in one run"),
    }}
