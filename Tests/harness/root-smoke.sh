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

# A project owned by an unprivileged account, run by root (issue 23): its seed scripts run as
# that account, never as root; a seed outside the project (/etc/shadow) is refused without
# being read; what root's run made in .amp belongs to the owner, whose own ampd then starts.
user=${AMP_TEST_USER:-amp-test}
id -u "$user" >/dev/null 2>&1 || { echo "root-smoke: no account $user; the owner checks need it (make test creates it)" >&2; exit 1; }
uid=$(id -u "$user")
proj=$(mktemp -d /tmp/amp-root-owner.XXXXXX)
out2=$proj.log
cleanup2() { [ -n "${pid2:-}" ] && kill -KILL "$pid2" 2>/dev/null; rm -rf "$proj" "$out2"; }
trap 'cleanup; cleanup2' EXIT
chmod 0755 "$proj"
mkdir -p "$proj/.amp" "$proj/run"
printf 'CREATE TABLE seeded (n int);\n\\! id -u > %s/who\n' "$proj" > "$proj/seed.sql"
printf '[postgres]\nseed = ["seed.sql", "/etc/shadow"]\n' > "$proj/.amp/config.toml"
cp "$ampd" "$proj/ampd"; chmod 0755 "$proj/ampd"
chown -R "$user": "$proj"; chmod 0700 "$proj/run"
rc=0; NO_COLOR=1 "$ampd" run --amp-dir "$proj" >"$out2" 2>&1 || rc=$?
[ "$rc" -eq 78 ] && grep -q "outside the project directory" "$out2" || { echo "root-smoke: FAILED: a seed of /etc/shadow was not refused (exit $rc)" >&2; cat "$out2" >&2; exit 1; }
! grep -q "^root:" "$out2" || { echo "root-smoke: FAILED: /etc/shadow reached ampd's log" >&2; exit 1; }
[ ! -e "$proj/.amp/metadb/PG_VERSION" ] || { echo "root-smoke: FAILED: a cluster was made despite the bad config" >&2; exit 1; }
printf '[postgres]\nseed = ["seed.sql"]\n' > "$proj/.amp/config.toml"; chown "$user": "$proj/.amp/config.toml"
NO_COLOR=1 "$ampd" run --amp-dir "$proj" >"$out2" 2>&1 &
pid2=$!
for _ in $(seq 1 300); do grep -q '^ready in ' "$out2" && break; kill -0 "$pid2" 2>/dev/null || break; sleep 0.1; done
grep -q '^ready in ' "$out2" || { echo "root-smoke: FAILED: root's ampd for $user's project did not become ready" >&2; cat "$out2" >&2; exit 1; }
[ "$(cat "$proj/who" 2>/dev/null)" = "$uid" ] || { echo "root-smoke: FAILED: the seed script ran as UID $(cat "$proj/who" 2>/dev/null), not as $user ($uid)" >&2; exit 1; }
kill -TERM "$pid2"; wait "$pid2" || true; pid2=
for f in .amp .amp/ampd.lock .amp/layout .amp/metadb; do
  [ "$(stat -c %U "$proj/$f")" = "$user" ] || { echo "root-smoke: FAILED: $f belongs to $(stat -c %U "$proj/$f"), not to $user" >&2; exit 1; }
done
runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/tmp NO_COLOR=1 XDG_RUNTIME_DIR="$proj/run" "$proj/ampd" run --amp-dir "$proj" >"$out2" 2>&1 &
pid2=$!
for _ in $(seq 1 300); do grep -q '^ready in ' "$out2" && break; kill -0 "$pid2" 2>/dev/null || break; sleep 0.1; done
grep -q '^ready in ' "$out2" || { echo "root-smoke: FAILED: the owner's own ampd did not start after root's run" >&2; cat "$out2" >&2; exit 1; }
kill -TERM "$pid2"; wait "$pid2" || true; pid2=
echo "root-smoke: root ran $user's seed as UID $uid, refused /etc/shadow as a seed, left .amp to $user, whose own ampd started"
