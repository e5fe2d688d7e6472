#!/usr/bin/env bash
# The behaviours two revisions' suites cover, as the tests they collect: how many, and which
# tests only one of them has (#22 asks that a faster suite covers no fewer behaviours).
#
#   bash bench/behaviours.sh OLD_CHECKOUT [NEW_CHECKOUT]   # default NEW: this checkout
#
# Each checkout collects with its own virtualenv (scripts/setup.sh makes it, as CI does).
# Tests are compared by module and name, parameters dropped (a table that grew rows is one
# behaviour, not new ones). A test only in OLD is a behaviour moved or dropped: its docstring
# or docs/testing.md says where it went. Lists land in NEW/.behaviours/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
old="$(cd "${1:?an older checkout, e.g. a clone at the commit before the change}" && pwd)"
new="$(cd "${2:-$here}" && pwd)"
out="$new/.behaviours"
mkdir -p "$out"

collect() {  # checkout → sorted "tests/x/test_y.py::test_name" lines
  (
    cd "$1"
    source scripts/setup.sh >/dev/null
    ensure_python_env >/dev/null
    "$VENV/bin/pytest" --collect-only -q -p no:cacheprovider -p no:xdist 2>/dev/null |
      grep '::' | sed 's/\[.*\]$//' | sort -u
  )
}

collect "$old" >"$out/old.txt"
collect "$new" >"$out/new.txt"
comm -23 "$out/old.txt" "$out/new.txt" >"$out/only-old.txt"
comm -13 "$out/old.txt" "$out/new.txt" >"$out/only-new.txt"
echo "tests (parameters folded): old $(wc -l <"$out/old.txt"), new $(wc -l <"$out/new.txt")"
echo "only in old ($(wc -l <"$out/only-old.txt")): moved, renamed or dropped"
sed 's/^/  - /' "$out/only-old.txt"
echo "only in new: $(wc -l <"$out/only-new.txt") (listed in $out/only-new.txt)"
