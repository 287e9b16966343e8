#!/usr/bin/env bash
# Generates man/man1/ampctl.1 from ampctl's ArgumentParser definitions (swift-argument-parser's
# generate-manual plugin), then completes it with man/ampctl.sections.mdoc (ENVIRONMENT,
# FILES, EXIT STATUS, EXAMPLES, SEE ALSO) and a fixed date, so that the result only changes
# when the commands do.
#
#   packaging/man-ampctl.sh OUTPUT      write the page to OUTPUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: man-ampctl.sh OUTPUT}
date="November 22, 2026"   # the release date of the page; change with the version

swift package generate-manual >/dev/null
generated=.build/plugins/GenerateManual/outputs/ampctl/ampctl.1
awk -v date="$date" -v sections=man/ampctl.sections.mdoc '
  /^\.Dd / { print ".Dd " date; next }
  # --help lists the exit codes in the discussion; the page has its own section for them.
  /^EXIT STATUS$/ { skipping = 1; next }
  skipping && /^\.Bl/ { skipping = 0 }
  skipping { next }
  /^\.Sh "EXIT STATUS"$/ { while ((getline line < sections) > 0) print line; dropEx = 1; next }
  dropEx && /^\.Ex / { dropEx = 0; next }
  # Blank lines are not mdoc.
  /^$/ { next }
  { print }
' "$generated" | sed -e 's/^\(\.Nd .*\)\."$/\1"/' > "$out.tmp"
mv "$out.tmp" "$out"
