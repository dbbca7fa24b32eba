#!/usr/bin/env bash
# Runs every built test binary from the repo root and prints one closing line:
# "tests: N passed, N failed, N skipped". Exit status non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0; skip=0; bad=()
for t in build/tests/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d) continue;; esac
  out=$("$t" 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -1)
  printf '%s\n' "$out" | grep -E '^(FAIL|SKIP)' | head -40
  if [ -z "$line" ]; then
    echo "$t: crashed or printed no summary (exit $rc)"; printf '%s\n' "$out" | tail -20
    fail=$((fail+1)); bad+=("$t"); continue
  fi
  echo "$line"
  p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then fail=$((fail+1)); echo "$t: exit $rc"; fi
  [ $rc -ne 0 ] && bad+=("$t")
done
[ ${#bad[@]} -gt 0 ] && echo "failing: ${bad[*]}"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
