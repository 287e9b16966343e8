#!/usr/bin/env bash
# Root mode of `ampd run` (issue: PostgreSQL refuses root): as root, ampd runs PostgreSQL as an
# unprivileged account, answers a query, and stops cleanly on SIGTERM. Run by `make test` as root.
set -euo pipefail
ampd=${1:?usage: root-smoke.sh PATH-TO-AMPD}
[ "$(id -u)" -eq 0 ] || { echo "root-smoke: not root, nothing to check" >&2; exit 0; }
dir=$(mktemp -d /tmp/amp-root-smoke.XXXXXX)
chmod 0755 "$dir"  # the postgres account must reach .amp/metadb
out=$dir.log
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$dir" "$out"; }
trap cleanup EXIT
NO_COLOR=1 "$ampd" run --amp-dir "$dir" >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^ready in ' "$out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
url=$(sed -n 's/^ready in [^:]*: \(postgresql:[^ ]*\) .*/\1/p' "$out")
[ -n "$url" ] || { echo "root-smoke: FAILED: ampd did not become ready as root" >&2; cat "$out" >&2; exit 1; }
[ "$(psql "$url" -XAtc 'SELECT current_user')" = postgres ] || { echo "root-smoke: FAILED: query as postgres" >&2; exit 1; }
[ "$(stat -c %U "$dir/.amp/metadb")" = postgres ] || { echo "root-smoke: FAILED: metadb not owned by postgres" >&2; exit 1; }
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || { echo "root-smoke: FAILED: ampd exited $rc after SIGTERM" >&2; cat "$out" >&2; exit 1; }
[ ! -e "$dir/.amp/metadb/postmaster.pid" ] || { echo "root-smoke: FAILED: postmaster.pid left behind" >&2; exit 1; }
echo "root-smoke: ampd as root ran PostgreSQL as postgres, answered, stopped cleanly"
