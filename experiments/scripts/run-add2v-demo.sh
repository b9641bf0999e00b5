#!/usr/bin/env bash
# The RMT demo with a base that writes more than it needs: `rmt train --method rmt` from the
# two-digit-addition base whose reasoning is mostly verbose (experiments/configs/add2v-base.yaml),
# with a budget shrinking from 40 to a floor of 16 (experiments/configs/add2v-rmt-demo.yaml), and a
# replicate with seed 2. Writes experiments/results/add2v-demo/. A stage whose output exists is not run
# again (delete runs/add2v-* to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/add2v-demo
mkdir -p "$out"
rmt() { node bin/rmt.js "$@" 2>/dev/null; }
[ -f runs/add2v-base/summary.json ] || rmt pretrain --config experiments/configs/add2v-base.yaml >/dev/null
[ -f runs/add2v-demo/summary.json ] || rmt train --config experiments/configs/add2v-rmt-demo.yaml >/dev/null
[ -f runs/add2v-demo-seed2/summary.json ] ||
  rmt train --config experiments/configs/add2v-rmt-demo-seed2.yaml >/dev/null
# Longer (200 steps, 16 positions, floor from step 80), the RL sanity check on a tiny corpus, and
# the long run with dynamic sampling and temperature 1.0 (150 steps), each config's out_dir.
for c in add2v-rmt-long add2v-rmt-long-seed2 add2v-rmt-memorize add2v-rmt-ds add2v-rmt-ds-seed2; do
  dir=$(sed -n 's/^run: { out_dir: \([^,]*\),.*/\1/p' "experiments/configs/$c.yaml")
  [ -f "$dir/summary.json" ] || rmt train --config "experiments/configs/$c.yaml" >/dev/null
done
# The base on the demo's held-out answer digits under the prompt the demo ends with (budget 16).
[ -f "$out/base-ntr-budget16.json" ] ||
  rmt eval --config experiments/configs/add2v-rmt-demo.yaml --checkpoint runs/add2v-base/final --mode ntr \
    >"$out/base-ntr-budget16.json"
npx tsx scripts/collect-run.ts runs/add2v-base "$out/base-run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2v-demo "$out/run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2v-demo-seed2 "$out/seed2-run" >/dev/null
for r in long long-seed2 memorize ds ds-seed2; do
  npx tsx scripts/collect-run.ts "runs/add2v-$r" "$out/$r-run" >/dev/null
done
{
  echo "Demo run (\`experiments/configs/add2v-rmt-demo.yaml\`, seed 1234):"
  echo
  npx tsx scripts/window-table.ts runs/add2v-demo/metrics.jsonl
  echo
  echo "Replicate, seed 2 (\`experiments/configs/add2v-rmt-demo-seed2.yaml\`):"
  echo
  npx tsx scripts/window-table.ts runs/add2v-demo-seed2/metrics.jsonl
  for r in long long-seed2 memorize ds ds-seed2; do
    echo
    echo "\`experiments/configs/add2v-rmt-$r.yaml\`:"
    echo
    npx tsx scripts/window-table.ts "runs/add2v-$r/metrics.jsonl"
  done
} >"$out/table.md"
cat "$out/table.md"
