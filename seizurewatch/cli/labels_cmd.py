"""``seizurewatch labels export``: the alarms marked false / confirmed, as annotation sidecars."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels", help="marks from the station (false alarm / confirmed) -> annotation sidecars",
                       description="Labels that people gave alarms over MQTT, for retraining.")
    lsub = p.add_subparsers(dest="labels_command", metavar="SUBCOMMAND")
    e = lsub.add_parser(
        "export", help="write the marked alarms as onset,duration,description CSV sidecars for dataset build",
        description="Read the daemon's journal (outbox.path) and write one CSV per patient: confirmed alarms as "
                    "seizures, false alarms as labelled interictal spans; unmarked alarms appear as comments only. "
                    "With --config the files are named after each stream's recording, ready for dataset build "
                    "(next to the EDF, or through the spec's annotations: map).")
    e.add_argument("--journal", required=True, help="the daemon's outbox journal (outbox.path)")
    e.add_argument("--out", required=True, help="folder for the CSV files")
    e.add_argument("--since", help="only alarms that started at or after this (Unix seconds or ISO date/time)")
    e.add_argument("--patient", help="only this patient")
    e.add_argument("--config", "-c", help="daemon config: name each file after the patient's EDF recording")
    e.add_argument("--lead", type=float, default=10.0, dest="lead_s",
                   help="seconds before the alarm start that the label covers "
                        "(default 10: the window and the k-of-n hops that raised it)")
    e.set_defaults(func=cmd_export)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def cmd_export(args: argparse.Namespace) -> int:
    from seizurewatch.research.marks import export_marks, parse_since

    recordings: dict[str, str] = {}
    if args.config:
        from seizurewatch.config import load_config

        recordings = {s.patient: s.source.path for s in load_config(args.config).streams
                      if s.source.kind == "edf" and s.source.path}
    summary = export_marks(args.journal, args.out, since=parse_since(args.since), lead_s=args.lead_s,
                           recordings=recordings, patient=args.patient)
    print(json.dumps(summary, indent=1))
    return 0
