#!/usr/bin/env bash
# What each checkpoint of a paper-benchmark run answers: re-evaluates every trained row's final
# checkpoint (and the base under the RMT prompt) with the row's own config, as the table did, and
# lists the most frequent predicted tokens next to the accuracy. A row that answers one token
# everywhere scores that token's share of the targets. Usage:
#   bash scripts/paper-answers.sh [runs/paper-full] [bench/results/archive/paper-full/paper-answers.md]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/paper-full}
out=${2:-bench/results/archive/paper-full/paper-answers.md}
rows=(ntp rpt rmt rmt-no-dtb rmt-no-cas rmt-no-ntp)
lines=()
for seed_dir in "$run"/seed-*; do
  seed=${seed_dir##*/seed-}
  for m in "${rows[@]}" base; do
    cfg="$seed_dir/$m/config.resolved.json"
    ckpt="$seed_dir/$m/final"
    mode=ntr
    if [ "$m" = base ]; then cfg="$seed_dir/rmt/config.resolved.json"; ckpt="$run/base/final"; fi
    if [ "$m" = ntp ]; then mode=ntp; fi
    [ -f "$cfg" ] && [ -d "$ckpt" ] || continue
    json=$(node bin/rmt.js eval --config "$cfg" --checkpoint "$ckpt" --mode "$mode" --json 2>/dev/null)
    lines+=("$(node -e '
const [seed, m, mode] = process.argv.slice(1);
const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
const r = d.result ?? d;
const fmt = (xs) => xs.map(([t, n]) => `\`${t}\` ${n}`).join(", ");
const row = m === "ntp" ? "ntp-trained" : m;
console.log(`| ${seed} | ${row} | ${mode} | ${(100 * r.avg).toFixed(1)} | ${r.reasoning_length.toFixed(1)} | ${fmt(r.top_predictions)} | ${fmt(r.top_targets)} |`);
' "$seed" "$m" "$mode" <<<"$json")")
  done
done
{
  echo "# What the checkpoints of \`$run\` answer"
  echo
  echo "Written by \`bash scripts/paper-answers.sh $run $out\` on $(date -u +%Y-%m-%dT%H:%MZ)."
  echo "Each trained row's final checkpoint is evaluated again with its own config (greedy, the"
  echo "held-out answer digits of its seed); \`ntp-trained\` is the NTP run (argmax), \`base\` the base model"
  echo "reasoning under the RMT row's prompt (budget B_T stated)."
  echo "Predictions and targets are the five most frequent, with counts out of the positions evaluated."
  echo
  echo "| seed | row | mode | accuracy % | reasoning tokens | predictions | targets |"
  echo "|---|---|---|---:|---:|---|---|"
  printf '%s\n' "${lines[@]}"
} >"$out"
cat "$out"
