"""Research commands: train (and, as they land, inspect / dataset / evaluate / threshold / export / predict)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe YAML and export it",
                       description="Windows -> train -> threshold on the validation recordings -> export. "
                                   "Deterministic for a given seed.")
    p.add_argument("recipe", help="training recipe YAML (see config/train-dog1-convnet.yaml)")
    p.add_argument("--output", "-o", help="model file to write (.pt TorchScript or .pt2 torch.export); "
                                          "default: the recipe's output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from seizurewatch.research.recipe import run_recipe

    command = "seizurewatch " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
    meta = run_recipe(args.recipe, output=args.output, progress=not args.no_progress, command=command)
    summary = {
        "model": meta["name"],
        "output": args.output or "(recipe output)",
        "sha256": meta["weights_sha256"],
        "threshold": meta["threshold"],
        "validation": meta["metrics"]["validation"],
        "train_seconds": meta["training"]["seconds"],
    }
    print(json.dumps(summary, indent=2))
    return 0
