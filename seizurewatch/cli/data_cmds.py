"""Data commands: ``inspect`` a recording, ``dataset build`` / ``dataset show``."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from seizurewatch.cli.argtypes import out_dir, units_arg
from seizurewatch.cli.options import SCHEDULER
from seizurewatch.errors import DataError

Split = Literal["train", "val", "test"]


def register(sub: argparse._SubParsersAction) -> None:
    _inspect(sub)
    _dataset(sub)


def _inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="header, traces, statistics and value distribution of an EDF (PNG + HTML)",
                       description="The EEG-analysis view: header and annotations, traces from a start second "
                                   "(seizures shaded, seams marked), whole-file per-channel statistics (mean, "
                                   "std, min, max, 50/60 Hz line-noise share, flatline) and value histograms. "
                                   "Writes PNGs, stats.json and report.html (opens offline).")
    p.add_argument("file", help="recording: EDF/EDF+, BDF/BDF+, or a text signal (.csv/.txt)")
    p.add_argument("--rate", type=float, default=None, metavar="HZ",
                   help="sample rate of a text signal without a STEM.json sidecar")
    units_arg(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--channel", help="plot this channel only (label as in the file)")
    g.add_argument("--all", action="store_true", help="plot every channel (the default)")
    p.add_argument("--start", type=float, default=0.0, help="first second to plot (default 0)")
    p.add_argument("--window", type=float, default=10.0, help="seconds to plot (default 10)")
    p.add_argument("--out", default=None, type=out_dir, help="output folder (default: inspect-<file stem>)")
    p.set_defaults(func=cmd_inspect)


def _dataset(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dataset", help="build a windowed dataset from annotated recordings",
                       description="Build (or show) a dataset directory: signals/*.npy (each recording's "
                                   "preprocessed signal, once), y.npy, index.csv (the windows), manifest.json.")
    dsub = d.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    b = dsub.add_parser("build", parents=[SCHEDULER], help="recordings + annotations -> windows on disk",
                        description="From a spec YAML (see config/dataset-dog1.yaml) and/or flags; flags "
                                    "override the spec. Splits are by recording, seizure or subject, never by "
                                    "window.")
    b.add_argument("--spec", help="dataset spec YAML")
    b.add_argument("--out", required=True, type=out_dir, help="dataset folder to write")
    b.add_argument("--overwrite", action="store_true",
                   help="replace the dataset already in --out (refused otherwise: a build can take hours)")
    b.add_argument("--recordings", nargs="+", metavar="PATH",
                   help="EDF files/globs, Kaggle or Delhi clip folders, .mat clips")
    b.add_argument("--device", help="device profile YAML (channels, rate)")
    b.add_argument("--channels", help="comma-separated channel labels (without a device profile)")
    b.add_argument("--rate", type=float, help="sampling rate of the windows (Hz)")
    b.add_argument("--bandpass", type=float, nargs=2, metavar=("LOW", "HIGH"), help="causal band-pass (Hz)")
    b.add_argument("--notch", type=float, help="notch frequency (Hz)")
    b.add_argument("--task", choices=["detection", "prediction"])
    b.add_argument("--window", type=float, dest="window_s", help="window length, s (default 10)")
    b.add_argument("--stride", type=float, dest="stride_s", help="stride between interictal windows, s (default 1)")
    b.add_argument("--stride-ictal", type=float, dest="stride_ictal_s", help="stride inside seizures, s (default 1)")
    b.add_argument("--exclusion", type=float, dest="exclusion_s",
                   help="detection: interictal windows at least this far from a seizure, s (default 300)")
    b.add_argument("--horizons", type=float, nargs="+", dest="horizons_s",
                   help="prediction: preictal horizons, s (default 600 3600)")
    b.add_argument("--interictal-min", type=float, dest="interictal_min_s",
                   help="prediction: interictal at least this far from any seizure, s (default 14400)")
    b.add_argument("--balance", choices=["none", "subject"], help="undersample the majority class per subject")
    b.add_argument("--balance-splits", nargs="+", choices=["train", "val", "test"],
                   help="splits to balance (default: train)")
    b.add_argument("--split-by", choices=["recording", "seizure", "subject"])
    b.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    b.add_argument("--assign", nargs="+", metavar="NAME=SPLIT",
                   help="explicit split for a recording/seizure/subject (names or globs), e.g. dog1_rec04=test")
    b.add_argument("--units", choices=["continuous", "segments"],
                   help="what each signal file is: a continuous recording (default) or an independent segment "
                        "(Bonn-style: scored per segment, never replayed); clips say it themselves")
    b.add_argument("--seed", type=int)
    b.set_defaults(func=cmd_build)
    s = dsub.add_parser("show", help="print a dataset's manifest summary")
    s.add_argument("dir", help="dataset folder")
    s.add_argument("--json", action="store_true", help="print the whole manifest")
    s.set_defaults(func=cmd_show)
    d.set_defaults(func=lambda a: (d.print_help(), 2)[1])


def cmd_inspect(args: argparse.Namespace) -> int:
    from seizurewatch.research.inspect import inspect_recording

    out = args.out or f"inspect-{Path(args.file).stem}"
    res = inspect_recording(args.file, out, channel=args.channel, start=args.start, window=args.window, rate=args.rate,
                             units=args.units)
    flagged = {s.channel: list(s.flags) for s in res.stats if s.flags}
    print(json.dumps({"report": str(res.report), "images": [str(i) for i in res.images],
                      "channels": len(res.header.channels), "duration_s": res.header.duration,
                      "annotations": len(res.annotations), "flagged_channels": flagged}, indent=2))
    return 0


def spec_from_args(args: argparse.Namespace):
    from seizurewatch.errors import ConfigError
    from seizurewatch.research.dataset import DatasetSpec, load_spec

    if args.spec:
        spec = load_spec(args.spec)
    elif args.recordings:
        spec = DatasetSpec(recordings=tuple(os.path.abspath(Path(r).expanduser()) for r in args.recordings))
    else:
        raise ConfigError("dataset build: give --spec YAML or --recordings PATH...")
    over = {k: getattr(args, k) for k in ("device", "rate", "notch", "task", "window_s", "stride_s",
                                          "stride_ictal_s", "exclusion_s", "interictal_min_s", "balance", "seed",
                                          "units")
            if getattr(args, k) is not None}
    if args.recordings:
        over["recordings"] = tuple(os.path.abspath(Path(r).expanduser()) for r in args.recordings)
    if args.channels:
        over["channels"] = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    if args.bandpass:
        over["bandpass"] = tuple(args.bandpass)
    if args.horizons_s:
        over["horizons_s"] = tuple(args.horizons_s)
    if args.balance_splits:
        over["balance_splits"] = tuple(args.balance_splits)
    split = spec.split
    if args.split_by:
        split = dataclasses.replace(split, by=args.split_by)
    if args.fractions:
        split = dataclasses.replace(split, fractions=tuple(args.fractions))
    if args.assign:
        given: dict[str, Split] = {}
        for item in args.assign:
            name, sep, which = item.partition("=")
            if not sep or not name or which not in ("train", "val", "test"):
                raise ConfigError(f"--assign {item!r}: expected NAME=train|val|test")
            given[name] = which  # type: ignore[assignment]  # checked above
        table, overridden = override_assign(split.assign, given)
        if overridden:
            print(f"--assign overrides the spec's split.assign {', '.join(overridden)}", file=sys.stderr)
        split = dataclasses.replace(split, assign=table)
    spec = dataclasses.replace(spec, split=split, **over)
    spec.check("command line")
    return spec


def override_assign(spec: Mapping[str, Split], given: Mapping[str, Split]) -> tuple[dict[str, Split], list[str]]:
    """The command line's ``--assign`` over the spec's ``split.assign``: a spec entry whose name (or
    pattern) a command-line name or glob matches is dropped, and the command line's entries come first,
    so they win wherever both match a unit (``assign_splits``: an exact name, else the first glob).
    Returns the table and the spec entries it overrode."""
    def covered(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, g) for g in given)

    kept = {k: v for k, v in spec.items() if not covered(k)}
    dropped = [f"{k}: {v}" for k, v in spec.items() if covered(k) and given.get(k) != v]
    return {**given, **kept}, dropped


def cmd_build(args: argparse.Namespace) -> int:
    import time

    from seizurewatch.research.dataset import build_dataset

    if (Path(args.out) / "manifest.json").is_file() and not args.overwrite:
        raise DataError(f"{args.out}: holds a dataset already; give --overwrite to replace it, or another --out")
    spec = spec_from_args(args)
    command = "seizurewatch " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()
    manifest = build_dataset(spec, args.out, command=command, scheduler=args.scheduler, workers=None,
                             progress=sys.stderr.isatty())
    print(summary(manifest, args.out))
    print(f"built in {time.perf_counter() - t0:.1f} s")
    return 0


def summary(m: dict, path: str) -> str:
    lines = [f"dataset {path}: {m['task']}, outputs {', '.join(m['outputs'])}; {m['n']} windows of "
             f"{m['window_s']:g} s ({' x '.join(str(v) for v in m.get('shape', [])[1:])}, "
             f"{m['preprocess']['rate']:g} Hz); split by {m['split_by']}, balance {m['balance']['mode']}"]
    keys = [k for k in next(iter(m["counts"].values())) if k != "total"] + ["total"]
    lines.append(f"  {'split':<6}" + "".join(f"{k:>16}" for k in keys))
    for s, c in m["counts"].items():
        lines.append(f"  {s:<6}" + "".join(f"{c.get(k, 0):>16}" for k in keys))
    recs = m["recordings"]
    shown = recs if len(recs) <= 20 else recs[:20]
    for r in shown:
        dropped = ", ".join(f"{k} {v}" for k, v in r["dropped"].items()) or "none"
        lines.append(f"  {Path(r['path']).name:<32} {r['split'] or '-':<6} {r['windows']:>6} windows "
                     f"({r['positive']} positive); dropped: {dropped}")
    if len(recs) > len(shown):
        lines.append(f"  ... and {len(recs) - len(shown)} more recordings/clips (see manifest.json)")
    lines += [f"  warning: {w}" for w in m.get("warnings", [])]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    from seizurewatch.research.dataset import open_dataset

    ds = open_dataset(args.dir)
    print(json.dumps(ds.manifest, indent=1) if args.json else summary(ds.manifest, args.dir))
    return 0
