#!/usr/bin/env bash
# Postgres's WAL per posting: CHECKPOINT (so every page's first change logs a full page, the worst case), then 30 s of
# posts at 1,000/s (post-rate.sh), then pg_stat_wal's counters per post: records, full-page images, bytes.
# usage: perf/scripts/wal-per-post.sh   env: COMPANY, as post-rate.sh
. "$(dirname "$0")/lib.sh"
q="SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
su_psql() { (cd / && runuser -u postgres -- psql -X -h "$REPO/.data/pg-run" -p "$(echo "$DATABASE_URL" | sed -E 's#.*:([0-9]+)/.*#\1#')" -d kerp "$@"); }
su_psql -Atc "CHECKPOINT" >/dev/null
a=$(psql "$DATABASE_URL" -Atc "$q")
run=$("$(dirname "$0")/post-rate.sh" 1000 30s)
b=$(psql "$DATABASE_URL" -Atc "$q")
echo "$run"
posts=$(echo "$run" | awk '/http_reqs/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) { print $i; exit } }')
python3 - "$a" "$b" "$posts" <<'PY'
import sys
a, b, n = list(map(int, sys.argv[1].split('|'))), list(map(int, sys.argv[2].split('|'))), int(sys.argv[3])
print(f"WAL per post: {(b[0] - a[0]) / n:.1f} records, {(b[1] - a[1]) / n:.2f} full pages, {(b[2] - a[2]) / n / 1024:.2f} KiB"
      f" ({(b[2] - a[2]) / 1048576:.0f} MiB in all)")
PY
