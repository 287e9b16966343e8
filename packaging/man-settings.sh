#!/usr/bin/env bash
# Puts the settings table (from Sources/AmpConfig/SettingDescriptors.swift, through the hidden
# `ampd settings --man-reference`) into man/man5/amp.toml.5 between its markers, or at the end of
# its [postgres.parameters] section the first time.
#
#   packaging/man-settings.sh PAGE      rewrite PAGE (a copy of amp.toml.5) in place
set -euo pipefail
cd "$(dirname "$0")/.."
page=${1:?usage: man-settings.sh PAGE}
ampd="$(swift build --show-bin-path)/ampd"
[ -x "$ampd" ] || swift build --product ampd >/dev/null
"$ampd" settings --man-reference > "$page.table"
python3 - "$page" "$page.table" <<'PY'
import sys
page, table = sys.argv[1], open(sys.argv[2]).read()
text = open(page).read()
begin, end = table.splitlines()[0], table.splitlines()[-1]
if begin in text:
    head, rest = text.split(begin, 1)
    tail = rest.split(end + "\n", 1)[1]
    text = head + table + tail
else:
    text = text.replace(".SH ENVIRONMENT\n", table + ".SH ENVIRONMENT\n", 1)
open(page + ".tmp", "w").write(text)
PY
mv "$page.tmp" "$page"
rm -f "$page.table"
