"""bench: run the benchmark suite of a source checkout (``bench/`` next to the package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seizurewatch.errors import ConfigError


def checkout_root() -> Path:
    """The repository folder holding ``bench/``; the suite is not part of an installed wheel."""
    import seizurewatch

    root = Path(seizurewatch.__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").is_file():
        raise ConfigError(f"{root / 'bench'}: benchmark suite not found; run 'seizurewatch bench' from a source "
                          "checkout installed with 'pip install -e .', or 'python -m bench' in the checkout")
    return root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (JSON)",
                       description="Run the benchmark suite (bench/bench_*.py): replay throughput with a per-stage "
                                   "breakdown and a plain baseline, inference latency, streams per box, and the "
                                   "modules' other figures. Prints one JSON object and writes "
                                   "bench/results/<date>.json. Same as 'python -m bench' in a checkout.")
    p.add_argument("--quick", action="store_true", help="small inputs and few repeats (under a minute)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these modules (e.g. replay inference)")
    p.add_argument("--out", help="write the JSON here (default: bench/results/<date>.json)")
    p.add_argument("--timeout", type=float, help="seconds per module (default 300, quick 120)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    root = checkout_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench.__main__ import main

    argv = ["--quick"] if args.quick else []
    if args.only:
        argv += ["--only", *args.only]
    if args.out:
        argv += ["--out", args.out]
    if args.timeout:
        argv += ["--timeout", str(args.timeout)]
    return main(argv)
