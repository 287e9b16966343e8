#!/usr/bin/env bash
# Runs amp's libFuzzer targets, SECONDS each (default 20; `make fuzz` gives 300): the TOML
# parser, the config loader, the varlink JSON decoder, the varlink framer and connection state
# machine, and the PostgreSQL log parser. Built with AddressSanitizer into .build-fuzz. Seeds:
# the toml-test cases and a few varlink messages and log lines; findings go to
# .build-fuzz/findings/TARGET. Prints one line per target (runs, corpus, time); exit 1 on any
# crash, hang or sanitizer report.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
swift=${SWIFT:-swift}
targets=(FuzzTOML FuzzConfig FuzzVarlinkJSON FuzzVarlinkFramer FuzzPostgresLog)
flags=(--scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address)
for t in "${targets[@]}"; do
  if ! out=$(AMP_FUZZ=1 "$swift" build "${flags[@]}" --product "$t" 2>&1); then
    echo "$out" | grep -v "Cannot export local symbol" >&2
    echo "fuzz: building $t failed" >&2
    exit 1
  fi
done
bin=$(AMP_FUZZ=1 "$swift" build "${flags[@]}" --show-bin-path)

work=.build-fuzz/corpus
mkdir -p "$work"
seed() {  # seed TARGET FILES...
  local dir=$work/$1; shift
  mkdir -p "$dir"
  [ -n "$(ls -A "$dir")" ] && return 0
  for f in "$@"; do cp "$f" "$dir/" 2>/dev/null || true; done
}
seed FuzzTOML Tests/AmpConfigTests/toml-test/valid/*/*.toml
seed FuzzConfig Tests/AmpConfigTests/toml-test/valid/*/*.toml
printf '[postgres]\nstart_timeout = "90s"\nmemory = "2GB"\ncpus = 4\nprofile = "durable"\n[postgres.parameters]\nwork_mem = "16MB"\n' > "$work/FuzzConfig/amp.toml"
mkdir -p "$work/FuzzVarlinkJSON" "$work/FuzzVarlinkFramer" "$work/FuzzPostgresLog"
printf '{"method":"io.fuzz.X.M","parameters":{"t":{"a":1,"c":[true],"d":{"x":1.5}}},"more":false}' > "$work/FuzzVarlinkJSON/call.json"
printf '{"error":"io.fuzz.X.E","parameters":{"why":"\\u00e9"},"continues":true}' > "$work/FuzzVarlinkJSON/reply.json"
printf '\x05{"method":"io.fuzz.X.M","parameters":{"t":{"a":1}}}\0{"method":"org.varlink.service.GetInfo"}\0{"method":"io.fuzz.X.S","more":true}\0' > "$work/FuzzVarlinkFramer/calls"
printf '[123] 00000 LOG:  database system is ready to accept connections\n[124] 42703 ERROR:  column "x" does not exist at character 8\n\tSTATEMENT:  select x;\n[1] 00000 LOG:  database system was interrupted; last known up at 2026-01-01\n[9] 53100 PANIC:  could not write to file "pg_wal/xlogtemp.9": No space left on device\n' > "$work/FuzzPostgresLog/log"

failed=0
for t in "${targets[@]}"; do
  findings=.build-fuzz/findings/$t
  mkdir -p "$findings"
  log=.build-fuzz/$t.log
  # -detect_leaks=0: the Swift runtime's own caches read as leaks at exit; crashes, overflows
  # and use-after-free are still caught by AddressSanitizer.
  if ASAN_OPTIONS=detect_leaks=0 "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$findings/" -print_final_stats=1 "$work/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $t: ok — ${runs:-?} runs in ${seconds} s, no crash (corpus $(ls "$work/$t" | wc -l) inputs)"
  else
    failed=1
    echo "fuzz $t: FAILED — see $log and $findings" >&2
    grep -E "ERROR|Fatal error|deadly signal|timeout" "$log" | head -5 >&2 || true
  fi
done
exit $failed
