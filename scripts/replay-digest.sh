#!/usr/bin/env bash
# Replays dog1_rec04 through both shipped models (`seizurewatch replay --speed max`) and prints the SHA-256 of
# the per-hop probabilities and of the events (full-precision JSON; wall time, alarm ids and epochs, which
# change every run, dropped). Run it on two commits: equal digests = the daemon's behaviour is unchanged.
#   scripts/replay-digest.sh [DATA_DIR]      (default: ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${SEIZUREWATCH_DATA:-../shared/data}}
py=${PYTHON:-python}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for m in dog1-hills-early dog1-convnet; do
  "$py" -m seizurewatch replay "$data/dog1/dog1_rec04.edf" --model "models/$m.pt" --jsonl \
    --probabilities "$tmp/p.csv" > "$tmp/e.jsonl" 2>/dev/null
  events=$("$py" -c 'import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        e = json.loads(line)
        for k in ("wall_time", "alarm_id", "epoch"):
            e.pop(k, None)
        print(json.dumps(e, sort_keys=True))' "$tmp/e.jsonl" | sha256sum | cut -c1-16)
  echo "$m probabilities $(sha256sum < "$tmp/p.csv" | cut -c1-16) ($(($(wc -l < "$tmp/p.csv") - 1)) hops)" \
       "events $events ($(grep -c '^{' "$tmp/e.jsonl") events)"
done
