#!/usr/bin/env bash
# The two-digit-addition experiment: pre-train a tiny base where reasoning can pay, run RMT from it,
# and evaluate both on the same held-out answer digits. Writes experiments/results/add2/. A stage whose
# output exists is not run again (delete runs/add2-* to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=experiments/results/add2
mkdir -p "$out"
rmt() { node bin/rmt.js "$@" 2>/dev/null; }
[ -f runs/add2-base/summary.json ] || rmt pretrain --config experiments/configs/add2-base.yaml >/dev/null
[ -f runs/add2-rmt/summary.json ] || rmt train --config experiments/configs/add2-rmt.yaml >/dev/null
cfg=experiments/configs/add2-rmt.yaml
# The base: argmax (ntp), reasoning with no budget stated (ntr), and reasoning under the prompt RMT
# ends with (B_T = 6); RMT's final checkpoint under that same prompt.
rmt eval --config $cfg --checkpoint runs/add2-base/final --mode ntp --method ntr >"$out/base-ntp.json"
rmt eval --config $cfg --checkpoint runs/add2-base/final --mode ntr --method ntr >"$out/base-ntr.json"
rmt eval --config $cfg --checkpoint runs/add2-base/final --mode ntr --method rmt >"$out/base-ntr-budget.json"
rmt eval --config $cfg --checkpoint runs/add2-rmt/final --mode ntr --method rmt >"$out/rmt-ntr-budget.json"
npx tsx scripts/collect-run.ts runs/add2-base "$out/base-run" >/dev/null
npx tsx scripts/collect-run.ts runs/add2-rmt "$out/rmt-run" >/dev/null
node -e '
const fs = require("fs");
const row = (name, f) => {
  const d = JSON.parse(fs.readFileSync(process.argv[1] + "/" + f, "utf8"));
  const pct = (x) => (100 * x).toFixed(1);
  return `| ${name} | ${pct(d.avg)} ± ${pct(d.easy.ci95)} | ${d.easy.n} | ${d.reasoning_length.toFixed(1)} |`;
};
console.log("| model / prompt | accuracy on held-out answer digits (%, ±95% CI) | positions | reasoning tokens |");
console.log("|---|---|---|---|");
console.log(row("base, argmax (NTP)", "base-ntp.json"));
console.log(row("base, reasoning, no budget (NTR)", "base-ntr.json"));
console.log(row("base, reasoning, budget 6", "base-ntr-budget.json"));
console.log(row("RMT (100 steps), reasoning, budget 6", "rmt-ntr-budget.json"));
' "$out" >"$out/table.md"
cat "$out/table.md"
