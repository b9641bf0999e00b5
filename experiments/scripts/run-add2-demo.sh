#!/usr/bin/env bash
# The RMT demo: a short `rmt train --method rmt` run from the tiny two-digit-addition base
# with a budget that shrinks from 32 to a floor of 16 (the column reasoning needs 14-19 tokens).
# Writes experiments/results/add2-demo/. A stage whose output exists is not run again (delete
# runs/add2-demo* to start over; runs/add2-base is the pre-trained base, about 14 min to remake).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/add2-demo
mkdir -p "$out"
rmt() { node bin/rmt.js "$@" 2>/dev/null; }
[ -f runs/add2-base/summary.json ] || rmt pretrain --config experiments/configs/add2-base.yaml >/dev/null
# The demo (tier mix held constant), a replicate with another seed, the demo at lr 3e-4 and, for
# comparison, the same run with CAS's moving tier mix (about 12-16 min each on 2 cores).
[ -f runs/add2-demo/summary.json ] || rmt train --config experiments/configs/add2-rmt-demo.yaml >/dev/null
[ -f runs/add2-demo-seed2/summary.json ] || rmt train --config experiments/configs/add2-rmt-demo-seed2.yaml >/dev/null
[ -f runs/add2-demo-lr3e-4/summary.json ] || rmt train --config experiments/configs/add2-rmt-demo-lr3e-4.yaml >/dev/null
[ -f runs/add2-demo-cas/summary.json ] || rmt train --config experiments/configs/add2-rmt-demo-cas.yaml >/dev/null
# The base on the same held-out answer digits under the prompt the demo ends with (budget 16); the
# demo's own final evaluation is run/eval.json.
[ -f "$out/base-ntr-budget16.json" ] ||
  rmt eval --config experiments/configs/add2-rmt-demo.yaml --checkpoint runs/add2-base/final --mode ntr \
    >"$out/base-ntr-budget16.json"
npx tsx scripts/collect-run.ts runs/add2-demo "$out/run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2-demo-seed2 "$out/seed2-run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2-demo-lr3e-4 "$out/lr3e-4-run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2-demo-cas "$out/cas-run" >/dev/null
# Windowed means (10 steps), the first and last 20 steps and the score's slope: scripts/window-table.ts
table() { npx tsx scripts/window-table.ts "$1"; }
{
  echo "Demo run (\`experiments/configs/add2-rmt-demo.yaml\`, tier mix held constant):"
  echo
  table runs/add2-demo/metrics.jsonl
  echo
  echo "Replicate with seed 2 (\`experiments/configs/add2-rmt-demo-seed2.yaml\`):"
  echo
  table runs/add2-demo-seed2/metrics.jsonl
  echo
  echo "The demo at lr 3e-4 (\`experiments/configs/add2-rmt-demo-lr3e-4.yaml\`):"
  echo
  table runs/add2-demo-lr3e-4/metrics.jsonl
  echo
  echo "Comparison (\`experiments/configs/add2-rmt-demo-cas.yaml\`, CAS tier mix moving easy -> hard, lr 3e-4):"
  echo
  table runs/add2-demo-cas/metrics.jsonl
} >"$out/table.md"
cat "$out/table.md"
