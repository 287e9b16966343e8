#!/usr/bin/env bash
# Runs a make target of this checkout as an unprivileged account: PostgreSQL refuses root.
# Used by `make test` when it is started as root (CI, containers).
#
#   Tests/harness/as-unprivileged.sh TARGET
#
# The account ($AMP_TEST_USER, default amp-test) is created when missing. The checkout is
# given to it (chown -R); when the account cannot reach the checkout (e.g. under /root), a
# copy without build output is made in its home and the target runs there.
set -euo pipefail

target=${1:?usage: as-unprivileged.sh TARGET}
user=${AMP_TEST_USER:-amp-test}
top=$(cd "$(dirname "$0")/../.." && pwd)

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
  echo "amp: created the unprivileged account $user for the tests" >&2
fi
home=$(getent passwd "$user" | cut -d: -f6)
# journald (for the systemd tests) is readable by the systemd-journal group.
getent group systemd-journal >/dev/null && usermod -a -G systemd-journal "$user" || true

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

exec runuser -u "$user" -- env -i \
  HOME="$home" USER="$user" LOGNAME="$user" PATH="$PATH" LANG=C.UTF-8 \
  CI="${CI:-}" AMP_WERROR="${AMP_WERROR:-1}" \
  make -C "$workdir" "$target"
