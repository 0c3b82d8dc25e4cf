#!/usr/bin/env bash
# One realistic-workload run as perf/README.md's tables report them: `kerp-perf export` of COMPANY, then
# perf/k6/realistic_workload.js at SCALE=0.25 VU_SCALE=1 (500 VUs, 5 minutes), with mem-sample.sh and ch-memory.sh
# running beside it. Use a company no run has posted into (`kerp-perf generate --size medium --seed N --companies 4`).
# usage: perf/scripts/realistic-run.sh LABEL COMPANY   (files: /tmp/kerp-perf-LABEL.*)
. "$(dirname "$0")/lib.sh"
L=$1; C=$2; D=/tmp/kerp-perf-$L
TOKEN=$(compose/dev token --company "$C")
cargo run -q --release -p kerp-perf -- export --token "$TOKEN" --out-dir "$D.data" >/dev/null
"$(dirname "$0")/mem-sample.sh" "$D.mem" 320 >"$D.mem.peak" &
"$(dirname "$0")/ch-memory.sh" "$D.ch" 320 >"$D.ch.peak" &
echo "start $(date +%T)"
API_TOKEN=$TOKEN DATA_DIR="$D.data" SCALE=0.25 VU_SCALE=1 \
  k6 run -q perf/k6/realistic_workload.js >"$D.k6" 2>&1 || true
echo "end $(date +%T)"
wait
grep -E "^[a-z(]|^requests|^every|^thresholds" "$D.k6"
grep -v '^#' "$D.ch" | awk '{ print $2 }' | sort -n | awk '{ a[NR] = $1 } END { print "ClickHouse RSS MiB: median", a[int(NR / 2)], "p90", a[int(NR * 0.9)], "peak", a[NR] }'
cat "$D.mem.peak"
