#!/usr/bin/env bash
# The Debian package end to end, as root (run by `make test` as root, so by CI):
#   build it (as the unprivileged account), lintian at error+warning level, apt-get install it,
#   then as the account with a real user manager: ampctl init, systemctl --user start amp@P,
#   ampctl status, journalctl shows PostgreSQL's start-up, man -w finds every page the unit
#   names, bash completion of `ampctl st<TAB>`, the Cockpit page in a real browser
#   (Tests/browser/cockpit_browser.py: cockpit-ws, chromium, selenium; screenshots kept in
#   .build/browser-screenshots); then apt-get remove amp stops nothing and leaves the
#   project's data in place.
#
#   Tests/harness/deb-test.sh WORKDIR USER
#
# Nobody else sees the package: the script runs in a private mount namespace where /usr, /etc
# and /var are overlays whose upper layers live in a temporary directory, removed at the end
# (also on failure). Outside, the machine never has amp installed, not even for a moment.
set -euo pipefail

workdir=${1:?usage: deb-test.sh WORKDIR USER}
user=${2:?usage: deb-test.sh WORKDIR USER}
harness=$(cd "$(dirname "$0")" && pwd)

if [ -z "${AMP_DEB_ROOT:-}" ]; then
  scratch=$(mktemp -d /tmp/amp-deb-root.XXXXXX)
  rc=0
  unshare --mount --propagation private env AMP_DEB_ROOT="$scratch" "$0" "$@" || rc=$?
  rm -rf "$scratch"
  exit $rc
fi
for d in usr etc var; do
  mkdir -p "$AMP_DEB_ROOT/$d/upper" "$AMP_DEB_ROOT/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$AMP_DEB_ROOT/$d/upper,workdir=$AMP_DEB_ROOT/$d/work" "/$d" \
    || { echo "deb-test: FAILED: cannot overlay /$d in a private mount namespace (needs root with CAP_SYS_ADMIN)" >&2; exit 1; }
done
uid=$(id -u "$user")
rt=/run/user/$uid
# The tools' temporary files (lintian's MLDBM stores among them) go below the scratch
# directory, which is removed at the end, instead of into the machine's /tmp.
usertmp="$AMP_DEB_ROOT/tmp"
chmod 711 "$AMP_DEB_ROOT"
mkdir -p "$usertmp" && chown "$user" "$usertmp" && chmod 700 "$usertmp"
project=""
unit=""
installed_here=0
# NAME:DIR of the projects the browser test adds (registered, maybe running).
extra_projects=""

say() { echo "deb-test: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
as_user() { runuser -u "$user" -- env -i HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" \
  PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 XDG_RUNTIME_DIR="$rt" NO_COLOR=1 TMPDIR="$usertmp" "$@"; }

cleanup() {
  rc=$?
  trap '' INT TERM HUP  # finish cleaning up whatever arrives now
  if [ -n "$unit" ]; then as_user systemctl --user stop "$unit" >/dev/null 2>&1 || true; fi
  for entry in $extra_projects; do
    name=${entry%%:*}
    as_user systemctl --user stop "amp@$name.service" >/dev/null 2>&1 || true
    as_user rm -f "$(getent passwd "$user" | cut -d: -f6)/.config/amp/registry/$name.toml" || true
    rm -rf "${entry#*:}"
  done
  if [ $installed_here = 1 ] && dpkg-query -W -f='${Status}' amp 2>/dev/null | grep -q "install ok installed"; then
    apt-get remove -y -qq amp >/dev/null 2>&1 || true
  fi
  if [ -n "$project" ]; then
    as_user rm -f "$(getent passwd "$user" | cut -d: -f6)/.config/amp/registry/debtest.toml" || true
    rm -rf "$project"
  fi
  "$harness/user-manager.sh" stop || true
  [ $rc = 0 ] && say "passed" || say "exit $rc"
  exit $rc
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap cleans up then too.
trap "exit 130" INT
trap "exit 143" TERM
trap "exit 129" HUP

if dpkg-query -W -f='${Status}' amp 2>/dev/null | grep -q "install ok installed"; then
  fail "an amp package is installed already; remove it first (this test installs and removes its own)"
fi

say "building the package as $user"
as_user make -C "$workdir" deb >"$workdir/.build/deb-build.log" 2>&1 || { tail -30 "$workdir/.build/deb-build.log" >&2; fail "make deb"; }
deb=$(ls "$workdir"/.build/deb/amp_*_*.deb)

say "lintian $deb"
as_user lintian --fail-on error,warning "$deb" || fail "lintian reports errors or warnings"

say "apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null || fail "apt-get install"
installed_here=1
for f in /usr/bin/ampd /usr/bin/ampctl /usr/lib/systemd/user/amp@.service /usr/lib/systemd/user/amp-backup-verify@.timer /usr/lib/systemd/user/amp-backup-verify@.service /usr/lib/systemd/user-generators/amp-generator \
         /usr/share/man/man1/ampctl.1.gz /usr/share/bash-completion/completions/ampctl /usr/share/doc/amp/changelog.Debian.gz; do
  [ -e "$f" ] || fail "$f is not installed"
done
if readelf -d /usr/bin/ampd | grep -qE 'RUNPATH|RPATH'; then fail "ampd has a RUNPATH"; fi
if ldd /usr/bin/ampd | grep -q libswiftCore; then fail "ampd links the Swift runtime dynamically"; fi

"$harness/user-manager.sh" start "$user"

project=$(mktemp -d /tmp/amp-deb.XXXXXX)
chown "$user": "$project"
say "ampctl init in $project"
as_user sh -c "cd '$project' && ampctl init --name debtest" || fail "ampctl init"
unit=amp@debtest.service
fragment=$(as_user systemctl --user show -p FragmentPath --value "$unit")
[ "$fragment" = /usr/lib/systemd/user/amp@.service ] || fail "amp@.service comes from $fragment, not the package (remove that file)"
grep -q "AMP_DIR=$project" <<<"$(as_user systemctl --user cat "$unit")" || fail "the generator's drop-in does not set AMP_DIR"
as_user systemctl --user start "$unit" || fail "systemctl --user start $unit"
status=$(as_user ampctl status debtest) || true
echo "$status" >&2
grep -q "State: ready" <<<"$status" || fail "ampctl status is not ready"
# (Read the journal whole before grep: with pipefail, grep -q closing the pipe early would fail it.)
journal=""
for _ in $(seq 50); do
  journal=$(as_user journalctl --user-unit="$unit" --no-pager)
  grep -q "database system is ready to accept connections" <<<"$journal" && break
  sleep 0.1
done
grep -q "database system is ready to accept connections" <<<"$journal" \
  || fail "journalctl --user-unit $unit lacks PostgreSQL's start-up lines"

for page in ampctl ampd amp-generator amp.toml amp@.service; do
  as_user man -w "$page" >/dev/null || fail "man -w $page"
done
# Every Documentation=man: of the unit resolves.
for doc in $(as_user systemctl --user show -p Documentation --value "$unit"); do
  case $doc in man:*) p=${doc#man:}; as_user man -w "${p%%(*}" >/dev/null || fail "unit Documentation $doc has no page" ;; esac
done
as_user systemd-analyze --user verify /usr/lib/systemd/user/amp@.service || fail "systemd-analyze --user verify"

completions=$(as_user bash -c 'source /usr/share/bash-completion/completions/ampctl
  COMP_WORDS=(ampctl st); COMP_CWORD=1; COMP_LINE="ampctl st"; COMP_POINT=9
  _ampctl ampctl st ampctl; echo "${COMPREPLY[*]}"')
for want in status start stop; do
  [[ " $completions " == *" $want "* ]] || fail "bash completion of 'ampctl st' lacks $want: $completions"
done
names=$(as_user bash -c 'source /usr/share/bash-completion/completions/ampctl
  COMP_WORDS=(ampctl status deb); COMP_CWORD=2; COMP_LINE="ampctl status deb"; COMP_POINT=17
  _ampctl ampctl deb status; echo "${COMPREPLY[*]}"')
[[ " $names " == *" debtest "* ]] || fail "bash completion of project names lacks debtest: $names"

say "the Cockpit page in a real browser (cockpit-ws in local-session mode, chromium through selenium)"
[ -f /usr/share/cockpit/amp/manifest.json ] || fail "the package does not install the Cockpit page in /usr/share/cockpit/amp"
for tool in /usr/lib/cockpit/cockpit-ws /usr/bin/cockpit-bridge /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || fail "$tool is missing; install cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver (packaging/build-deps.sh test)"
done
venv="$(getent passwd "$user" | cut -d: -f6)/.cache/amp-varlink-venv"
as_user test -x "$venv/bin/python" || as_user /usr/bin/python3 -m venv "$venv" >/dev/null || fail "python3 -m venv $venv"
as_user "$venv/bin/python" -c 'import selenium' 2>/dev/null \
  || as_user "$venv/bin/pip" install --quiet --disable-pip-version-check selenium || fail "pip install selenium"
for name in debtest2 debtest3; do
  dir=$(mktemp -d /tmp/amp-deb.XXXXXX)
  chown "$user": "$dir"
  extra_projects="$extra_projects $name:$dir"
  as_user sh -c "cd '$dir' && ampctl init --name $name" >/dev/null || fail "ampctl init --name $name"
done
as_user systemctl --user start amp@debtest2.service || fail "systemctl --user start amp@debtest2.service"
shots="$workdir/.build/browser-screenshots"
rm -rf "$shots" && mkdir -p "$shots" && chown "$user": "$shots"
as_user "$venv/bin/python" "$workdir/Tests/browser/cockpit_browser.py" --running debtest --running debtest2 --stopped debtest3 --shots "$shots" \
  || fail "the Cockpit page in the browser (screenshots of each step in $shots)"
say "Cockpit page: list, chart, start, snapshot and restart seen in the browser; screenshots in $shots"

postmaster=$(head -1 "$project/.amp/metadb/postmaster.pid")
say "apt-get remove amp"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq amp >/dev/null || fail "apt-get remove"
installed_here=0
[ "$(as_user systemctl --user is-active "$unit")" = active ] || fail "removing the package stopped $unit"
kill -0 "$postmaster" 2>/dev/null || fail "removing the package stopped PostgreSQL"
[ -f "$project/.amp/metadb/PG_VERSION" ] || fail "the project's data is gone"
as_user systemctl --user stop "$unit" || fail "stopping $unit after removal"
[ -f "$project/.amp/metadb/PG_VERSION" ] || fail "the project's data is gone after stop"
say "package built, lintian clean, installed, used, removed; data kept"
