"""``seizurewatch import``: a published pretrained model as a model file (see seizurewatch/pretrained)."""

from __future__ import annotations

import argparse
import json

from seizurewatch.cli.argtypes import out_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="a published pretrained model as a model file (day one, no patient data)",
                       description="Write a pretrained model as a regular model file for a device's channels "
                                   "and print its sha256 to pin (model.sha256). Needs the optional extra: "
                                   "pip install 'seizurewatch[pretrained]'.")
    what = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    b = what.add_parser("brainmaze", help="brainmaze-eeg-models' iEEG seizure detector (Mayo Clinic, BSD-3)")
    b.add_argument("--variant", choices=["modelA", "modelB"], default="modelA",
                   help="modelA: the published model (Sladky et al. 2022); modelB: an extended training set")
    b.add_argument("--device", required=True, help="device profile YAML: the channels and rate the file takes")
    b.add_argument("--rate", type=float, help="model rate in Hz (default: the device's; whole, even, >= 200)")
    b.add_argument("--context-s", type=float, default=10.0, metavar="S",
                   help="seconds of past signal each score sees (default 10: measured on Dog_1, see README)")
    b.add_argument("--hop-s", type=float, default=1.0, metavar="S", help="seconds between scores (default 1)")
    b.add_argument("--threshold", type=float, default=0.5,
                   help="stored threshold (default 0.5, the model's own; 'seizurewatch threshold' chooses one)")
    b.add_argument("--out", "-o", required=True, type=out_file, help="model file to write (.pt)")
    b.set_defaults(func=cmd_import_brainmaze)


def cmd_import_brainmaze(args: argparse.Namespace) -> int:
    from seizurewatch.pretrained.importer import import_brainmaze

    meta = import_brainmaze(args.out, args.device, args.variant, args.context_s, args.hop_s, args.rate,
                            args.threshold)
    print(json.dumps({"output": args.out, "name": meta["name"], "file_sha256": meta["file_sha256"],
                      "source": {k: meta["source"][k] for k in ("package", "version", "variant", "onnx_sha256",
                                                               "license")},
                      "license_file": f"{args.out}.LICENSE", "window_s": meta["window_s"], "hop_s": meta["hop_s"],
                      "max_abs_diff": meta["max_abs_diff"]}, indent=2))
    return 0
