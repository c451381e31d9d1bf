"""``python -m bench [--quick] [--only NAME...] [--out FILE]``: run the benchmark suite.

Runs every ``bench/bench_*.py`` that exposes ``run(quick: bool) -> dict``, each in its own
process (clean memory figures; a module that crashes or hangs becomes an error entry and the
suite goes on), prints ONE JSON object on stdout and writes it to ``bench/results/<date>.json``.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCHEMA = "seizurewatch/bench/1"
HANG_GUARD_S = 3600.0


def available() -> list[str]:
    """Module names without the ``bench_`` prefix, in a stable order."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return repr(obj)


def run_child(name: str, quick: bool, result_file: str) -> int:
    """Inside the module's own process: import it, call run(quick), write the result as JSON."""
    import logging

    logging.basicConfig(level=logging.ERROR)  # the pipeline's alarm warnings are not benchmark output
    logging.getLogger("seizurewatch").setLevel(logging.ERROR)
    mod = importlib.import_module(f"bench.bench_{name}")
    fn = getattr(mod, "run", None)
    if not callable(fn):
        raise SystemExit(f"bench/bench_{name}.py has no run(quick) function")
    result = fn(quick)
    if not isinstance(result, dict):
        raise SystemExit(f"bench/bench_{name}.py: run() returned {type(result).__name__}, expected a dict")
    Path(result_file).write_text(json.dumps(result, default=_jsonable))
    return 0


def run_module(name: str, quick: bool, timeout: float, env: dict[str, str]) -> dict[str, Any]:
    fd, result_file = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, "-m", "bench", "--child", name, "--result-file", result_file]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = round(time.perf_counter() - t0, 2)
        sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "".join(
            line + "\n" for line in proc.stderr.splitlines() if line.startswith("bench:")))
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            return {"status": "error", "seconds": seconds, "error": tail[-1] if tail else f"exit {proc.returncode}",
                    "exit_code": proc.returncode}
        data = json.loads(Path(result_file).read_text() or "{}")
        return {"status": "ok", "seconds": seconds, **data}
    except subprocess.TimeoutExpired:
        return {"status": "error", "seconds": round(time.perf_counter() - t0, 2),
                "error": f"timed out after {timeout:.0f} s"}
    except (OSError, json.JSONDecodeError) as exc:
        return {"status": "error", "seconds": round(time.perf_counter() - t0, 2), "error": repr(exc)}
    finally:
        Path(result_file).unlink(missing_ok=True)


def markdown_table(suite: dict[str, Any]) -> str:
    """Every figure of a results JSON, one row each (for the README)."""
    rows = [f"Measured {suite['date']} on {suite['machine']['cores']} cores ({suite['machine']['cpu_model']}), "
            f"torch {suite['machine']['torch']}, python {suite['machine']['python']}, load average "
            f"{suite['machine'].get('loadavg_1m_at_start', '?')} at start"
            + (" (quick mode)" if suite.get("quick") else "") + ".", "", "| module | figure | value | unit |",
            "|---|---|---|---|"]
    for name, mod in suite["modules"].items():
        if mod.get("status") != "ok":
            rows.append(f"| {name} | (error: {mod.get('error', '?')}) | | |")
            continue
        for fname, fig in mod.get("figures", {}).items():
            if isinstance(fig, dict) and isinstance(fig.get("value"), int | float):
                v = fig["value"]
                shown = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
                rows.append(f"| {name} | `{fname}` | {shown} | {fig.get('unit', '')} |")
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs and few repeats (well under a minute)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these modules ({', '.join(available())})")
    ap.add_argument("--out", help="write the JSON here (default: bench/results/<date>.json)")
    ap.add_argument("--timeout", type=float, default=HANG_GUARD_S,
                    help=f"seconds after which a module counts as hung (default {HANG_GUARD_S:g}: a hang guard, not a "
                    "budget; no module comes near it, busy machine or not)")
    ap.add_argument("--table", metavar="RESULTS", help="print the figures of a results JSON as a Markdown table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result-file", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args.child, args.quick, args.result_file)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0
    names = available()
    if args.only:
        wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.only]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print(f"bench: unknown module(s) {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        names = wanted
    from bench.common import machine_info

    started = dt.datetime.now(dt.UTC)
    load_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="seizurewatch-bench-"))
    env = dict(os.environ, BENCH_WORKDIR=str(workdir), PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), PYTHONUNBUFFERED="1")
    # Any module that uses pylsl stays on loopback even if it forgets to configure it.
    env.setdefault("LSLAPICFG", str(ROOT / "config" / "lsl_loopback.cfg"))
    timeout = args.timeout
    t0 = time.perf_counter()
    modules: dict[str, Any] = {}
    try:
        for name in names:
            print(f"bench: == {name}", file=sys.stderr, flush=True)
            modules[name] = run_module(name, args.quick, timeout, env)
            status = modules[name]["status"]
            detail = modules[name].get("error", "")
            print(f"bench: == {name}: {status} in {modules[name]['seconds']} s {detail}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    suite = {
        "schema": SCHEMA,
        "date": started.strftime("%Y-%m-%d"),
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "suite_seconds": round(time.perf_counter() - t0, 2),
        "machine": {**machine_info(), "loadavg_1m_at_start": load_start},
        "errors": sorted(n for n, m in modules.items() if m["status"] != "ok"),
        "modules": modules,
    }
    text = json.dumps(suite, indent=1, default=_jsonable)
    out = Path(args.out) if args.out else HERE / "results" / f"{suite['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)
    print(f"bench: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
