#!/usr/bin/env bash
# One command for any machine: which WebGPU adapters it has, whether every available backend's
# gradients agree with the cpu backend, `bench compute` of both models on each of them at
# micro-batch 32, 128 and 512, a 1-epoch run of each model on the best backend (GPU only), and
# PyTorch's samples/s where `import torch` works. Prints a table, writes OUT_DIR/gpu-check.json.
# Usage: scripts/gpu-check.sh [--quick] [OUT_DIR]   (--quick: micro-batch 32 only, no epochs)
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
out=${1:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
gf() { node dist/cli/main.js "$@"; }
skips="$out/skipped.jsonl"
: >"$skips"
skip() { printf '{"what":"%s","why":"%s"}\n' "$1" "$2" >>"$skips"; echo "skipped: $1: $2" >&2; }
[ -f dist/cli/main.js ] || npm run build >/dev/null

gf bench adapters --json >"$out/adapters.json" 2>>"$out/log.txt"
hardware=$(node -e 'const a=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).adapters;console.log(a.filter(x=>!x.software).length)' "$out/adapters.json")

gf bench agreement --backend tensorflow webgpu native wasm --json >"$out/agreement.jsonl" 2>>"$out/log.txt"
available=$(node -e 'const rows=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);console.log([...new Set(rows.filter(r=>!r.skipped).map(r=>r.backend))].join(" "))' "$out/agreement.jsonl")

batches="32 128 512"
[ $quick = 1 ] && batches=32 && skip "micro-batch 128 and 512" "--quick"
: >"$out/compute.jsonl"
for backend in $available; do
  for batch in $batches; do
    models="mnist-small mnist-cnn"
    # On a software adapter a large step takes minutes and says nothing about a GPU.
    if [ "$backend" = webgpu ] && [ "$hardware" = 0 ] && [ "$batch" != 32 ]; then
      skip "bench compute webgpu batch $batch" "software adapter only: its speed means nothing for a GPU"; continue
    fi
    steps=5; [ "$backend" = webgpu ] && [ "$hardware" = 0 ] && steps=2
    gf bench compute --backend "$backend" --model $models --batch "$batch" --steps "$steps" --conv-repeats 1 --json >>"$out/compute.jsonl" 2>>"$out/log.txt" \
      || skip "bench compute $backend batch $batch" "failed (see $out/log.txt)"
  done
done

: >"$out/epochs.jsonl"
best=$(gf bench compute --backend auto --model mnist-small --batch 8 --steps 1 --conv-repeats 1 --json 2>/dev/null | tail -1 | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).backend))')
gpu_best=0
{ [ "$best" = webgpu ] || [ "$best" = tensorflow ]; } && gpu_best=1
if [ $quick = 1 ]; then
  skip "1-epoch runs" "--quick"
elif [ $gpu_best = 0 ]; then
  skip "1-epoch runs" "the best backend here is $best, not a GPU: an epoch on the CPU takes many minutes and measures the CPU"
else
  workers=1  # one process drives the GPU
  for model in mnist-small mnist-cnn; do
    gf train --backend auto --model "$model" --epochs 1 --workers "$workers" --out "$out/epoch-$model" --json 2>>"$out/log.txt" | tail -1 >>"$out/epochs.jsonl" \
      || skip "1-epoch $model" "failed (see $out/log.txt)"
  done
fi

: >"$out/torch.jsonl"
if python3 -c 'import torch' 2>/dev/null; then
  for batch in $batches; do python3 scripts/gpu-check-torch.py "$batch" >>"$out/torch.jsonl" 2>>"$out/log.txt" || skip "PyTorch batch $batch" "failed (see $out/log.txt)"; done
else
  skip "PyTorch" "python3 -c 'import torch' fails here"
fi

node dist/bench/gpu-check-report.js "$out"
