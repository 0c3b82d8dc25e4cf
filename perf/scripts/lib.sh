# perf/scripts/lib.sh — what the measurement scripts beside it share. Sourced, not run.
# They measure the native dev stack (`compose/dev up`) from its own files: pids in .data/run, nginx's log, /proc.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
eval "$(compose/stack env)"
# k6 is written in Go and shares the 2 cores with the stack it measures. At 3,000 posts/s, with Go's default GOGC of
# 100, its garbage collector was about a fifth of its CPU; 400 lets its heap grow to five times the live data before
# collecting (a few hundred MiB here) and gave the stack back 1-2 CPU-s in 30 s (perf/README.md, 28 Nov).
export GOGC="${GOGC:-400}"

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

# CPU seconds each service used between two cpu_all lines, over SECONDS of wall time, on one line.
# usage: cpu_report "$c0" "$c1" SECONDS
cpu_report() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
c0, c1 = list(map(float, sys.argv[1].split())), list(map(float, sys.argv[2].split()))
names = "ch pg kafka ingest worker query nginx".split()
print(f"CPU-s over {sys.argv[3]} s:", " ".join(f"{k}={b - a:.1f}" for k, a, b in zip(names, c0, c1)))
PY
}

# What the pipeline has still to do: the outbox rows ingest-api has not published (its gauge is refreshed every
# 5 s) and the messages the fold has not consumed, as "BACKLOG LAG".
pipeline_behind() {
  echo "$(curl -s localhost:9101/metrics | awk '$1 == "outbox_backlog_rows" { print $2 }')" \
    "$(curl -s localhost:9102/metrics | awk '$1 ~ /^kafka_consumer_lag_messages/ { s += $2 } END { print s + 0 }')"
}

# Waits (up to 180 s) until the pipeline has caught up: the outbox empty and the fold's consumer lag zero. A run that
# starts while the previous one's backlog is still draining measures both (28 Nov: a 1,000/s run right after a peak
# run had its p99 at 37 ms against 20-21 ms with the pipeline idle). Then waits 5 s more for the merges that follow.
wait_idle() {
  local i backlog lag
  for i in $(seq 180); do
    read -r backlog lag <<<"$(pipeline_behind)"
    if [ "${backlog:-1}" = 0 ] && [ "$lag" = 0 ]; then sleep 5; return 0; fi
    sleep 1
  done
  echo "the pipeline did not catch up within 180 s (outbox $backlog, lag $lag); measuring anyway" >&2
}
