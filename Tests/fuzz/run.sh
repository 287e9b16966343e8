#!/usr/bin/env bash
# Runs amp's libFuzzer targets, SECONDS each (default 20; `make fuzz` gives 300): the TOML
# parser, the config loader, the varlink JSON decoder, the varlink framer and connection state
# machine, the PostgreSQL log parser (with pgaudit's entries) and pgBackRest's info JSON. Built with AddressSanitizer into .build-fuzz. Seeds:
# the toml-test cases and a few varlink messages and log lines; findings go to
# .build-fuzz/findings/TARGET. Prints one line per target (runs, coverage, new inputs, corpus);
# exit 1 on any crash, hang or sanitizer report, and when a target ran without coverage
# feedback (no cov: figures, or not one new input found in its run).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
swift=${SWIFT:-swift}
targets=(FuzzTOML FuzzConfig FuzzVarlinkJSON FuzzVarlinkFramer FuzzPostgresLog FuzzPgBackRestInfo)
# SwiftPM's `--sanitize=fuzzer --sanitize=address` alone instruments a random half of the
# modules for coverage: it writes them as two -sanitize= flags in an order that changes from
# run to run (a Set), and the Swift driver keeps only the last one it is given (seen in CI as
# "no interesting inputs were found … Is the code instrumented for coverage?"). A last flag
# of our own, carrying both, settles every Swift compile and link; SwiftPM's flags stay so
# that it builds fuzzer executables (libFuzzer's main) and instruments the C targets.
flags=(--scratch-path .build-fuzz --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address)
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
mkdir -p "$work/FuzzVarlinkJSON" "$work/FuzzVarlinkFramer" "$work/FuzzPostgresLog" "$work/FuzzPgBackRestInfo"
printf '{"method":"io.fuzz.X.M","parameters":{"t":{"a":1,"c":[true],"d":{"x":1.5}}},"more":false}' > "$work/FuzzVarlinkJSON/call.json"
printf '{"error":"io.fuzz.X.E","parameters":{"why":"\\u00e9"},"continues":true}' > "$work/FuzzVarlinkJSON/reply.json"
printf '\x05{"method":"io.fuzz.X.M","parameters":{"t":{"a":1}}}\0{"method":"org.varlink.service.GetInfo"}\0{"method":"io.fuzz.X.S","more":true}\0' > "$work/FuzzVarlinkFramer/calls"
printf '[{"archive":[{"id":"15-1","max":"000000010000000000000005","min":"000000010000000000000001"}],"backup":[{"archive":{"start":"000000010000000000000002"},"database":{"id":1},"error":false,"info":{"repository":{"delta":3062512}},"label":"20261205-010715F","lsn":{"start":"0/2000028","stop":"0/3000050"},"prior":null,"timestamp":{"start":1796432835,"stop":1796432838},"type":"full"},{"archive":{"start":"000000010000000000000004"},"database":{"id":1},"error":false,"info":{"repository":{"delta":431}},"label":"20261205-010715F_20261205-010719I","lsn":{"start":"0/4000028","stop":"0/5000050"},"prior":"20261205-010715F","timestamp":{"start":1796432839,"stop":1796432840},"type":"incr"}],"db":[{"id":1,"system-id":7715620255964215574,"version":"15"}],"name":"amp","status":{"code":0,"message":"ok"}}]' > "$work/FuzzPgBackRestInfo/info.json"
printf '[123] 00000 LOG:  database system is ready to accept connections\n[124] 42703 ERROR:  column "x" does not exist at character 8\n\tSTATEMENT:  select x;\n[1] 00000 LOG:  database system was interrupted; last known up at 2026-01-01\n[9] 53100 PANIC:  could not write to file "pg_wal/xlogtemp.9": No space left on device\n[10] 00000 LOG:  AUDIT: SESSION,1,1,DDL,CREATE TABLE,TABLE,public.t,"CREATE TABLE t (a int, b int)",<not logged>\n' > "$work/FuzzPostgresLog/log"

failed=0
for t in "${targets[@]}"; do
  findings=.build-fuzz/findings/$t
  mkdir -p "$findings"
  log=.build-fuzz/$t.log
  # -detect_leaks=0: the Swift runtime's own caches read as leaks at exit; crashes, overflows
  # and use-after-free are still caught by AddressSanitizer.
  before=$(ls "$work/$t" | wc -l)
  if ASAN_OPTIONS=detect_leaks=0 "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$findings/" -print_final_stats=1 "$work/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # A fuzzer without coverage feedback is a random-input loop that cannot fail: it must
    # report coverage, and its run must have found new inputs (NEW) or smaller ones (REDUCE).
    counters=$(sed -n 's/^INFO: Loaded [0-9]* modules *(\([0-9]*\) inline 8-bit counters.*/\1/p' "$log" | head -1)
    cov=$(grep -oE '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse|DONE)[[:space:]]+cov: [0-9]+' "$log" | tail -1 | sed 's/.*cov: //')
    found=$(grep -cE '^#[0-9]+[[:space:]]+(NEW|REDUCE)[[:space:]]' "$log" || true)
    if [ -z "$cov" ] || [ "${cov:-0}" -eq 0 ] || [ "$found" -eq 0 ]; then
      failed=1
      echo "fuzz $t: FAILED — ran without coverage feedback (${counters:-no} counters, cov: ${cov:-none}, $found new inputs in ${runs:-?} runs); see $log" >&2
      grep -E "no interesting inputs|instrumented" "$log" | head -2 >&2 || true
      continue
    fi
    echo "fuzz $t: ok — ${runs:-?} runs in ${seconds} s, no crash; coverage ${cov} of ${counters:-?} edges, $found new inputs, corpus $before → $(ls "$work/$t" | wc -l) inputs"
  else
    failed=1
    echo "fuzz $t: FAILED — see $log and $findings" >&2
    grep -E "ERROR|Fatal error|deadly signal|timeout" "$log" | head -5 >&2 || true
  fi
done
exit $failed
