#!/usr/bin/env bash
# Issue 31's targets, measured: each way of lying (worker/lie-modes.ts) by one worker beside 1 and 2 honest
# ones, mnist-small, 40 steps, --verify-fraction P (default 0.1). Prints a Markdown table: whether the liar was
# caught and evicted, at which step, the steps replayed, and whether the final weights equal the honest run's.
# Run from a built checkout (npm run build), alone on the machine.
set -euo pipefail
P=${1:-0.1}
STEPS=${STEPS:-40}
cd "$(dirname "$0")/.."
gf() { node dist/cli/main.js "$@"; }
OUT=$(mktemp -d /tmp/hostile-matrix.XXXXXX)
CONFIG=(--model mnist-small --batch-size 64 --micro-batch 16 --seed 7 --max-steps "$STEPS" --epochs 1 --eval-chunk 500 --json)
sha() { node -e 'const l=require("fs").readFileSync(0,"utf8").trim().split("\n").pop(); const j=JSON.parse(l); console.log(j.weights_sha256, j.test_accuracy, j.wall_s)'; }
read -r HONEST HONEST_ACC _ < <(gf train "${CONFIG[@]}" --workers 2 --backend wasm --out "$OUT/honest" 2>/dev/null | sha)
echo "| lie | workers (honest + liar) | caught | first lie named at | evicted | replayed steps | weights = honest run's | test accuracy | wall s |"
echo "|---|---|---|---|---|---|---|---|---|"
for honest in 1 2; do
  for lie in flip-sign scale labels loss eval unassigned; do
    dir="$OUT/$lie-$honest"
    gf coordinator "${CONFIG[@]}" --port 0 --no-metrics --out "$dir" --min-workers 1 --verify-fraction "$P" >"$dir.json" 2>"$dir.log" &
    c=$!
    url=""
    for _ in $(seq 120); do url=$(grep -o 'ws://[0-9.:]*' "$dir.log" | head -1 || true); [ -n "$url" ] && break; sleep 0.5; done
    gf worker --connect "$url" --backend wasm --id liar --fault-lie "$lie" 2>"$dir.liar.log" &
    for i in $(seq "$honest"); do gf worker --connect "$url" --backend wasm --id "honest-$i" 2>/dev/null & done
    wait "$c"
    read -r got acc wall < <(sha <"$dir.json")
    at=$(grep -o '"msg":"worker liar lied: [^"]*' "$dir.log" | head -1 | grep -o 'of step [0-9]*\|of evaluation [0-9]*' | head -1 || true)
    [ -z "$at" ] && at=$(grep -o 'of step [0-9]* were not assigned to liar' "$dir.log" | head -1 | grep -o 'step [0-9]*' || true)
    evicted=$(grep -c '"msg":"worker liar evicted' "$dir.log" || true)
    replayed=$(node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8").trim().split("\n").pop()); console.log(j.replayed_steps)' <"$dir.json")
    caught=$([ "$evicted" -gt 0 ] && echo yes || echo NO)
    same=$([ "$got" = "$HONEST" ] && echo yes || echo NO)
    echo "| $lie | $honest + 1 | $caught | ${at:-—} | $([ "$evicted" -gt 0 ] && echo yes || echo no) | $replayed | $same | $acc | $wall |"
    wait
  done
done
echo
echo "honest run: weights_sha256 $HONEST, test accuracy $HONEST_ACC (--verify-fraction $P, $STEPS steps; logs in $OUT)"
