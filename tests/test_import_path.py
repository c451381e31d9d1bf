"""What the daemon's start pulls in: every module it imports is start-up time and resident memory on a
bedside box (and a restart is that long unmonitored). The daemon's path imports no scipy (scipy.fft
alone was 18 MiB and 0.3 s of start) and nothing of the research toolkit; figures in bench_service."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

FORBIDDEN = ("scipy", "sklearn", "matplotlib", "mne", "dask", "distributed", "pandas", "starlette", "uvicorn",
             "hummingbird", "seizurewatch.research", "seizurewatch.station")


def test_the_daemon_path_imports_no_scipy_and_no_research_code():
    code = ("import json, sys\n"
            "import seizurewatch.cli, seizurewatch.cli.daemon_cmds, seizurewatch.service\n"
            "seizurewatch.cli.build_parser()\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "torch" in loaded and "seizurewatch.daemon" in loaded  # the check sees the daemon's real path
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert bad == []
