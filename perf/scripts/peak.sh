#!/usr/bin/env bash
# Posts 2-line vouchers as fast as an open model at RATE a second lets them through (default 4,000, for 30 s) and
# reports k6's rate and latencies, k6's own CPU seconds and each service's. The rate offered is above what the stack
# takes, so the rate reached is its capacity: offering just the goal's 3,000 measures k6's drops as much as the stack
# (k6 counts an iteration it could not start on time as dropped, and it shares the cores).
# usage: perf/scripts/peak.sh [RATE=4000] [DURATION=30s]   env: COMPANY (default: the demo company), MAX_VUS (600), PRE_VUS (300: VUs made
# before the start, since each one made during the run is an init and a new connection taken from the stack's CPU)
. "$(dirname "$0")/lib.sh"
RATE=${1:-4000}; DUR=${2:-30s}
wait_idle
out=$(mktemp)
c0=$(cpu_all); t0=$(date +%s)
TOKEN=$(compose/dev token ${COMPANY:+--company "$COMPANY"}) RATE=$RATE MAX_VUS=${MAX_VUS:-600} PRE_VUS=${PRE_VUS:-300} DURATION=$DUR TB_SHARE=0 \
  /usr/bin/time -f "k6 CPU-s: %U user, %S system" k6 run -q --system-tags name,status,method --summary-trend-stats "med,p(95),p(99),max" perf/k6/post_vouchers.js >"$out" 2>&1 || true
c1=$(cpu_all); t1=$(date +%s)
grep -E "\{ name:create|http_reqs|dropped|http_req_failed\.\.|k6 CPU" "$out" || cat "$out"
cpu_report "$c0" "$c1" $((t1 - t0))
rm -f "$out"
# Whether the pipeline kept up: what was still to publish and to fold when k6 stopped, and how long it took to drain.
read -r backlog lag <<<"$(pipeline_behind)"
echo "at the end: outbox $backlog rows (refreshed every 5 s), consumer lag $lag messages"
t2=$(date +%s); wait_idle; echo "drained in $(($(date +%s) - t2 - 5)) s"
