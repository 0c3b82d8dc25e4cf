# perf/scripts/lib.sh — what the measurement scripts beside it share. Sourced, not run.
# They measure the native dev stack (`compose/dev up`) from its own files: pids in .data/run, nginx's log, /proc.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
eval "$(compose/stack env)"

# CPU seconds (user + system) a process has used so far; 0 when it is gone.
cpu_s() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The same, summed over every process a pgrep pattern matches.
cpu_sum() { local t=0 p; for p in $(pgrep "$@"); do t=$(awk -v a="$t" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done; echo "$t"; }
ch_pid() { pgrep -f clickhouse-server | head -1; }
app_pid() { cat ".data/run/$1.pid"; }
# One line of CPU seconds: ClickHouse, Postgres (all its processes), Kafka, ingest-api, stream-workers, query-api, nginx.
cpu_all() {
  echo "$(cpu_s "$(ch_pid)") $(cpu_sum -u postgres postgres) $(cpu_s "$(pgrep -f kafka.Kafka)") $(cpu_s "$(app_pid ingest)")" \
    "$(cpu_s "$(app_pid worker)") $(cpu_s "$(app_pid query)") $(cpu_sum nginx)"
}
# Nearest-rank p50/p95/p99 (in ms) of nginx's request times for METHOD PATH over the log's last N lines.
nginx_percentiles() {
  tail -n "$3" .data/nginx/logs/access.log | awk -v m="$1" -v p="$2" '$3 == m && $4 == p { print $5 }' | sort -n |
    awk -v m="$1" -v p="$2" '{ a[NR] = $1 } END { if (NR) printf "nginx %s %s: %d requests, p50 %.0f, p95 %.0f, p99 %.0f ms\n", m, p, NR, 1000 * a[int(NR * .5) + 1], 1000 * a[int(NR * .95) + 1], 1000 * a[int(NR * .99) + 1] }'
}

# Waits (up to 180 s) until the pipeline has caught up: the outbox empty and the fold's consumer lag zero. A run that
# starts while the previous one's backlog is still draining measures both (28 Nov: a 1,000/s run right after a peak
# run had its p99 at 37 ms against 20-21 ms with the pipeline idle). Then waits 5 s more for the merges that follow.
wait_idle() {
  local i backlog lag
  for i in $(seq 180); do
    backlog=$(curl -s localhost:9101/metrics | awk '$1 == "outbox_backlog_rows" { print $2 }')
    lag=$(curl -s localhost:9102/metrics | awk '$1 ~ /^kafka_consumer_lag_messages/ { s += $2 } END { print s + 0 }')
    if [ "${backlog:-1}" = 0 ] && [ "$lag" = 0 ]; then sleep 5; return 0; fi
    sleep 1
  done
  echo "the pipeline did not catch up within 180 s (outbox $backlog, lag $lag); measuring anyway" >&2
}
