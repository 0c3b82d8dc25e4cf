#!/usr/bin/env bash
# Posts 2-line vouchers at a constant rate with k6 (perf/k6/post_vouchers.js) and reports, beside k6's latencies,
# nginx's own times for the same requests, the freshness histogram's share within 0.5 s and each service's CPU seconds.
# usage: perf/scripts/post-rate.sh [RATE=1000] [DURATION=60s]   env: COMPANY (default: the demo company), TB_SHARE (0)
. "$(dirname "$0")/lib.sh"
RATE=${1:-1000}; DUR=${2:-60s}
# Right after the worker starts the histogram has no series yet: that reads as zero, not as a failed grep.
fresh() { curl -s localhost:9102/metrics | { grep -E '^fold_event_freshness_seconds_(bucket\{le="0.5"\}|count)' || printf 'x 0\nx 0\n'; } | awk '{ print $NF }' | tr '\n' ' '; }
wait_idle
f0=$(fresh); c0=$(cpu_all); t0=$(date +%s); n0=$(wc -l <.data/nginx/logs/access.log)
out=$(mktemp)
TOKEN=$(compose/dev token ${COMPANY:+--company "$COMPANY"}) RATE=$RATE DURATION=$DUR TB_SHARE=${TB_SHARE:-0} \
  k6 run -q --system-tags name,status,method --summary-trend-stats "med,p(95),p(99),max" perf/k6/post_vouchers.js >"$out" 2>&1 || true
sleep 3
f1=$(fresh); c1=$(cpu_all); t1=$(date +%s)
grep -E "\{ name:create|http_reqs|dropped|http_req_failed\.\." "$out" || cat "$out"
# The lines this run added (the log is flushed every second; the 3 s above cover it).
nginx_percentiles POST /api/v1/vouchers $(($(wc -l <.data/nginx/logs/access.log) - n0))
python3 - "$f0" "$f1" <<'PY'
import sys
f0 = list(map(float, sys.argv[1].split())) or [0, 0]
f1 = list(map(float, sys.argv[2].split()))
n = f1[1] - f0[1]
print(f"freshness within 0.5 s: {f1[0] - f0[0]:.0f} of {n:.0f} = {100 * (f1[0] - f0[0]) / n if n else 0:.2f} %")
PY
cpu_report "$c0" "$c1" $((t1 - t0))
rm -f "$out"
