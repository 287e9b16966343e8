#!/usr/bin/env bash
# Installs what building, running and testing amp needs on Debian/Ubuntu.
# As root it installs directly; as a normal user it uses `sudo -n` when it can, and
# otherwise prints the one command to run. The Swift toolchain is expected on PATH
# (https://www.swift.org/install/linux/); it is not a Debian package.
set -euo pipefail

# `build-deps.sh` (build and run) or `build-deps.sh test` (also what the test suite, the
# systemd tests, the man page checks and the .deb build need).
packages=(make pkg-config git libpq-dev libsystemd-dev postgresql postgresql-contrib ca-certificates)
if [ "${1:-}" = test ]; then
  packages+=(systemd man-db python3-venv debhelper dpkg-dev fakeroot chrpath lintian mandoc openssl pgbackrest socat postgresql-15-pgaudit postgresql-15-cron prometheus pgbouncer cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH="$PATH:/opt/swift/usr/bin"
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "amp: the Swift toolchain (6.1 or newer) is not on PATH; install it from https://www.swift.org/install/linux/ and run this again" >&2
  exit 69
fi

[ ${#missing[@]} -eq 0 ] && exit 0

echo "amp: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "amp: missing packages; run: sudo apt-get install ${missing[*]}" >&2
  exit 69
fi
