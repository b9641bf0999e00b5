#!/usr/bin/env bash
# The RMT demo: `rmt train --method rmt` from the 6000-step two-digit-addition base
# (experiments/configs/add2v-base6k.yaml) with a budget shrinking from 40 to 16
# (experiments/configs/add2v6k-rmt-demo.yaml) and its seed-2 replicate. Also measures the base and
# each final checkpoint with scripts/sample-rollouts.ts (mean accuracy and pass@8 on the held-out
# answer digits at the final budget). Writes experiments/results/add2v6k-demo/. A stage whose output exists
# is not run again (delete runs/add2v-base6k or runs/add2v6k-* to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/add2v6k-demo
mkdir -p "$out"
rmt() { node bin/rmt.js "$@" 2>/dev/null; }
[ -f runs/add2v-base6k/summary.json ] || rmt pretrain --config experiments/configs/add2v-base6k.yaml >/dev/null
for c in add2v6k-rmt-demo add2v6k-rmt-demo-seed2; do
  dir=$(sed -n 's/^run: { out_dir: \([^,]*\),.*/\1/p' "experiments/configs/$c.yaml")
  [ -f "$dir/summary.json" ] || rmt train --config "experiments/configs/$c.yaml" >/dev/null
done
samples() { # <checkpoint> <budget> <name>
  [ -f "$out/samples-$3.json" ] ||
    npx tsx scripts/sample-rollouts.ts --config experiments/configs/add2v6k-rmt-demo.yaml --checkpoint "$1" \
      --budget "$2" --show 8 --json "$out/samples-$3.json" 2>/dev/null >"$out/samples-$3.md"
}
samples runs/add2v-base6k/final 40 base-budget40
samples runs/add2v-base6k/final 16 base-budget16
samples runs/add2v6k-demo/final 16 demo-final
samples runs/add2v6k-demo-seed2/final 16 seed2-final
npx tsx scripts/collect-run.ts runs/add2v-base6k "$out/base-run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2v6k-demo "$out/run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2v6k-demo-seed2 "$out/seed2-run" >/dev/null
{
  echo "Demo run (\`experiments/configs/add2v6k-rmt-demo.yaml\`, seed 1234):"
  echo
  npx tsx scripts/window-table.ts runs/add2v6k-demo/metrics.jsonl
  echo
  echo "Replicate, seed 2 (\`experiments/configs/add2v6k-rmt-demo-seed2.yaml\`):"
  echo
  npx tsx scripts/window-table.ts runs/add2v6k-demo-seed2/metrics.jsonl
} >"$out/table.md"
cat "$out/table.md"
