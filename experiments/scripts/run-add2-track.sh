#!/usr/bin/env bash
# RMT from the tiny two-digit-addition base with a budget that shrinks BELOW the length the policy
# writes at first (full column reasoning, 14-19 tokens), so that the length has to follow it down.
# Runs the add2-rmt-track* configs (one at a time, 200 steps each, a few minutes each after the SIMD
# kernels), evaluates the base under the chosen run's final prompt, collects the runs into
# experiments/results/add2-track/ and writes table.md. A stage whose output exists is not run again
# (delete runs/add2-track* to start over; runs/add2-base is the pre-trained base, do not delete it).
# Usage: bash experiments/scripts/run-add2-track.sh [chosen run number, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
chosen=${1:-3}
out=experiments/results/add2-track
mkdir -p "$out"
rmt() { node bin/rmt.js "$@" 2>/dev/null; }
[ -f runs/add2-base/summary.json ] || rmt pretrain --config experiments/configs/add2-base.yaml >/dev/null
runs=()
for cfg in experiments/configs/add2-rmt-track*.yaml; do
  n=$(basename "$cfg" .yaml); n=${n#add2-rmt-track}
  [ -f "runs/add2-track$n/summary.json" ] || rmt train --config "$cfg" >/dev/null
  runs+=("$n")
done
# The base on each run's held-out answer digits (the same 179 for all: same seed and data), under
# the prompt that run ends with (its B_min); a run's own evaluations are in its metrics and eval.json.
for n in "${runs[@]}"; do
  [ -f "$out/base-ntr-track$n.json" ] ||
    rmt eval --config "experiments/configs/add2-rmt-track$n.yaml" --checkpoint runs/add2-base/final --mode ntr \
      >"$out/base-ntr-track$n.json"
done
for n in "${runs[@]}"; do
  if [ "$n" = "$chosen" ]; then dest="$out/run"; else dest="$out/track$n-run"; fi
  npx tsx scripts/collect-run.ts "runs/add2-track$n" "$dest" >/dev/null
done
# Windowed means (20 steps) of the schedule, lengths and scores; the first and last 20 steps as mean ±
# standard error over steps; the least-squares slopes of the score and of the reasoning length.
table() {
  node -e '
const fs = require("fs");
const rows = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const keys = ["budget/current", "response_length/mean", "response_length/reasoning_mean",
  "critic/score/mean", "critic/length_reward/mean", "critic/rewards/mean", "frac_reward_zero_std"];
const stat = (xs) => {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return { m, se: sd / Math.sqrt(xs.length) };
};
const digits = (k) => (k.startsWith("critic") || k.startsWith("frac") ? 3 : 1);
const line = (label, win, f) => `| ${label} | ${keys.map((k) => f(k, stat(win.map((r) => r[k])))).join(" | ")} |`;
console.log(`| steps | ${keys.map((k) => "`" + k + "`").join(" | ")} |`);
console.log(`|---|${keys.map(() => "---").join("|")}|`);
for (let i = 0; i < rows.length; i += 20) {
  const win = rows.slice(i, i + 20);
  console.log(line(`${win[0].step}-${win[win.length - 1].step}`, win, (k, s) => s.m.toFixed(digits(k))));
}
const n = Math.min(20, Math.floor(rows.length / 2));
const pm = (k, s) => `${s.m.toFixed(digits(k))} ± ${s.se.toFixed(digits(k))}`;
const first = rows.slice(0, n), last = rows.slice(-n);
console.log(line(`**first ${n}** (mean ± s.e.)`, first, pm));
console.log(line(`**last ${n}** (mean ± s.e.)`, last, pm));
console.log();
for (const k of ["critic/score/mean", "response_length/reasoning_mean"]) {
  const a = stat(first.map((r) => r[k])), b = stat(last.map((r) => r[k]));
  const d = b.m - a.m, se = Math.hypot(a.se, b.se);
  const xs = rows.map((r) => r.step), ys = rows.map((r) => r[k]);
  const mx = stat(xs).m, my = stat(ys).m;
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const sl = xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) / sxx;
  const res = ys.reduce((s, y, i) => s + (y - my - sl * (xs[i] - mx)) ** 2, 0);
  const sse = Math.sqrt(res / (xs.length - 2) / sxx);
  const f = digits(k);
  console.log(`- \`${k}\`: last ${n} minus first ${n} = ${d.toFixed(f)} ± ${se.toFixed(f)} (${(d / se).toFixed(1)} s.e.); least-squares slope ${(100 * sl).toFixed(f)} ± ${(100 * sse).toFixed(f)} per 100 steps.`);
}
const ev = rows.filter((r) => r["eval/avg"] !== undefined);
const fin = JSON.parse(fs.readFileSync(process.argv[1].replace(/metrics\.jsonl$/, "summary.json"), "utf8"));
const evs = ev.map((r) => `step ${r.step}: ${(100 * r["eval/avg"]).toFixed(1)}% (${(r["eval/reasoning_length"] ?? NaN).toFixed(1)} tokens)`);
if (fin.eval) evs.push(`final (step ${fin.steps}): ${(100 * fin.eval.avg).toFixed(1)}% (${fin.eval.reasoning_length.toFixed(1)} tokens)`);
if (evs.length) console.log(`- held-out \`eval/avg\` (${fin.eval?.positions ?? "?"} answer digits, prompt states the final budget B_min): ${evs.join("; ")}.`);
' "$1"
}
{
  for n in "${runs[@]}"; do
    echo "### Run $n (\`experiments/configs/add2-rmt-track$n.yaml\`)$([ "$n" = "$chosen" ] && echo ' — the chosen run')"
    echo
    table "runs/add2-track$n/metrics.jsonl"
    echo
  done
} >"$out/table.md"
cat "$out/table.md"
