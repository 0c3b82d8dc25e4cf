#!/usr/bin/env bash
# Resident memory of every service every 2 s for SECONDS, into OUT, then each one's peak: Kafka and ClickHouse RSS,
# Postgres PSS summed over its processes (they share their buffers), and the largest of our four services.
# usage: perf/scripts/mem-sample.sh OUT SECONDS
. "$(dirname "$0")/lib.sh"
OUT=$1; END=$(($(date +%s) + $2))
: >"$OUT"
rss() { ps -o rss= -p "$1" 2>/dev/null | tr -d ' ' || echo 0; }
while (($(date +%s) < END)); do
  pg=0; for p in $(pgrep -u postgres postgres); do v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); pg=$((pg + ${v:-0})); done
  s=""; for n in ingest worker query grpc; do s="$s $(rss "$(app_pid $n)")"; done
  echo "$(date +%T) $(rss "$(pgrep -f kafka.Kafka)") $(rss "$(ch_pid)") $pg $s" >>"$OUT"
  sleep 2
done
awk '{ if ($2 > k) k = $2; if ($3 > c) c = $3; if ($4 > p) p = $4; for (i = 5; i <= 8; i++) if ($i > s) s = $i }
  END { printf "peak MiB: Kafka %d, ClickHouse %d, Postgres (PSS) %d, our services %d\n", k / 1024, c / 1024, p / 1024, s / 1024 }' "$OUT"
