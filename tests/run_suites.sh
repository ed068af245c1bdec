#!/usr/bin/env bash
# tests/run_suites.sh NAME BINARY [NAME BINARY ...]
# Runs each Check runner, keeps its output, and ends with the one closing line CI reads:
# "N passed, N failed" summed over every runner (a runner that crashes or exits non-zero
# without a Check summary counts as one failure).
set -u
passed=0
failed=0
while [ $# -ge 2 ]; do
  name=$1 bin=$2
  shift 2
  echo "== $name: $bin"
  out=$(mktemp)
  "$bin" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    fails=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    errs=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    passed=$((passed + checks - fails - errs))
    failed=$((failed + fails + errs))
  elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
  fi
  if [ "$rc" -ne 0 ] && [ -n "$line" ] && [ "$fails" -eq 0 ] && [ "$errs" -eq 0 ]; then
    failed=$((failed + 1)) # exited non-zero after reporting no failure: count it
  fi
  rm -f "$out"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
