#!/usr/bin/env bash
# Gives an unprivileged account a real systemd user manager and a real journald where none
# runs (CI containers, where PID 1 is not systemd), so the systemd tests drive the real thing.
# Where they already run (a booted Linux desktop) it does nothing.
#
#   Tests/harness/user-manager.sh start USER   (as root) start what is missing; prints what it did
#   Tests/harness/user-manager.sh stop         (as root) stop only what `start` started
#
# What this does and why: ../shared/notes/systemd-user-manager-in-containers.md (in short:
# /run/systemd/system must exist, the manager needs a delegated cgroup in both hierarchies,
# /run/user/UID must exist, journald is started as root). The PIDs it starts are kept in
# $state and only those are stopped, never anything found by name.
set -euo pipefail

state=/run/amp-test-harness
cmd=${1:?usage: user-manager.sh start USER | stop}

log() { echo "user-manager: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# The process's executable, to tell a recorded PID from a recycled one.
exe_of() { readlink -f "/proc/$1/exe" 2>/dev/null || true; }

start() {
  local user=$1 uid home
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  mkdir -p "$state"

  # journald: needed when no journal socket answers.
  if [ ! -S /run/systemd/journal/socket ] || ! systemd-cat -t amp-harness true 2>/dev/null; then
    # Journal files are readable by the systemd-journal group when their directory carries
    # that group with setgid (what systemd-tmpfiles arranges on a booted system). Volatile
    # storage only: nothing of the tests outlives the machine.
    mkdir -p /run/systemd/journal /run/log/journal
    if getent group systemd-journal >/dev/null; then
      chgrp -R systemd-journal /run/log/journal && chmod 2755 /run/log/journal
    fi
    setsid /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
    echo $! > "$state/journald.pid"
    for _ in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
    log "started systemd-journald (PID $(cat "$state/journald.pid"))"
  fi
  getent group systemd-journal >/dev/null && usermod -a -G systemd-journal "$user"

  local rt=/run/user/$uid
  if [ -S "$rt/systemd/private" ] && runuser -u "$user" -- env XDG_RUNTIME_DIR="$rt" systemctl --user is-system-running >/dev/null 2>&1; then
    log "a user manager already runs for $user"
    return 0
  fi
  [ -d /run/systemd/system ] || { mkdir -p /run/systemd/system; touch "$state/created-run-systemd-system"; }
  mkdir -p "$rt" && chown "$user": "$rt" && chmod 0700 "$rt"

  local hierarchies=()
  for h in systemd unified; do
    [ -d "/sys/fs/cgroup/$h" ] && hierarchies+=("$h")
  done
  if [ ${#hierarchies[@]} -eq 0 ] && [ -f /sys/fs/cgroup/cgroup.procs ]; then
    hierarchies=(.)   # pure cgroup v2
  fi
  for h in "${hierarchies[@]}"; do
    local cg=/sys/fs/cgroup/$h/user.slice/user-$uid.slice/user@$uid.service
    mkdir -p "$cg" && chown -R "$user" "$cg"
  done
  (
    for h in "${hierarchies[@]}"; do
      echo "$BASHPID" > "/sys/fs/cgroup/$h/user.slice/user-$uid.slice/user@$uid.service/cgroup.procs"
    done
    exec setsid runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" \
      PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 XDG_RUNTIME_DIR="$rt" \
      /lib/systemd/systemd --user </dev/null >"$state/manager.log" 2>&1
  ) &
  echo $! > "$state/manager.pid"
  echo "$user" > "$state/manager.user"
  for _ in $(seq 100); do
    if runuser -u "$user" -- env XDG_RUNTIME_DIR="$rt" systemctl --user is-system-running >/dev/null 2>&1; then
      log "started a systemd user manager for $user (PID $(cat "$state/manager.pid"))"
      return 0
    fi
    # "degraded" is still a running manager.
    case $(runuser -u "$user" -- env XDG_RUNTIME_DIR="$rt" systemctl --user is-system-running 2>/dev/null || true) in
      running|degraded) log "started a systemd user manager for $user (PID $(cat "$state/manager.pid"))"; return 0 ;;
    esac
    alive "$(cat "$state/manager.pid")" || { log "the user manager exited:"; cat "$state/manager.log" >&2; return 1; }
    sleep 0.1
  done
  log "the user manager did not come up within 10 s:"; cat "$state/manager.log" >&2
  return 1
}

stop() {
  [ -d "$state" ] || return 0
  if [ -f "$state/manager.pid" ]; then
    local pid user rt
    pid=$(cat "$state/manager.pid") user=$(cat "$state/manager.user")
    rt=/run/user/$(id -u "$user")
    # Ask the manager to stop its units and exit, then end the runuser that started it.
    runuser -u "$user" -- env XDG_RUNTIME_DIR="$rt" systemctl --user exit >/dev/null 2>&1 || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    rm -f "$state/manager.pid"
    log "stopped the user manager of $user"
  fi
  if [ -f "$state/journald.pid" ]; then
    # journald picks persistent storage when /var/log/journal exists; the harness never made it.
    local pid; pid=$(cat "$state/journald.pid")
    [ "$(exe_of "$pid")" = /usr/lib/systemd/systemd-journald ] && kill -TERM "$pid" 2>/dev/null || true
    rm -f "$state/journald.pid"
    log "stopped systemd-journald"
  fi
  [ -f "$state/created-run-systemd-system" ] && rmdir /run/systemd/system 2>/dev/null || true
  rm -rf "$state"
}

case $cmd in
  start) start "${2:?usage: user-manager.sh start USER}" ;;
  stop) stop ;;
  *) echo "usage: user-manager.sh start USER | stop" >&2; exit 64 ;;
esac
