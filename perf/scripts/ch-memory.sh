#!/usr/bin/env bash
# What ClickHouse's memory is made of, every second for SECONDS, into OUT: RSS; tracked memory; merges (count, MiB);
# queries (count, MiB); mark and uncompressed caches (MiB); parts replaced by merges and not yet deleted; then the
# samples with the highest RSS. The jemalloc figures of system.asynchronous_metrics are left out: 18.16 never
# refreshes them.
# usage: perf/scripts/ch-memory.sh OUT SECONDS
. "$(dirname "$0")/lib.sh"
OUT=$1; N=$2; pid=$(ch_pid)
: >"$OUT"
echo "# time rss_mib tracked_mib merges merges_mib queries queries_mib mark_cache_mib uncompressed_cache_mib inactive_parts" >>"$OUT"
for ((i = 0; i < N; i++)); do
  r=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
  m=$(curl -s "$CLICKHOUSE_URL/" --data-binary "SELECT
    (SELECT intDiv(value, 1048576) FROM system.metrics WHERE metric = 'MemoryTracking'),
    (SELECT count() FROM system.merges), (SELECT intDiv(sum(memory_usage), 1048576) FROM system.merges),
    (SELECT count() FROM system.processes), (SELECT intDiv(sum(memory_usage), 1048576) FROM system.processes),
    (SELECT intDiv(value, 1048576) FROM system.asynchronous_metrics WHERE metric = 'MarkCacheBytes'),
    (SELECT intDiv(value, 1048576) FROM system.asynchronous_metrics WHERE metric = 'UncompressedCacheBytes'),
    (SELECT count() FROM system.parts WHERE NOT active)
    FORMAT TSV" | tr '\t' ' ')
  echo "$(date +%T) $r $m" >>"$OUT"
  sleep 1
done
grep -v '^#' "$OUT" | sort -k2 -n | tail -5
