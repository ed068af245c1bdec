#!/usr/bin/env bash
# tests/run_suites.sh NAME COMMAND [NAME COMMAND ...]
# Runs each test command (a Check runner, or a runner that ends with
# "N passed, N failed[, N skipped]", such as tests/integration/run.py), keeps its output,
# and ends with what CI reads: the list of skipped tests with their reasons (the runners'
# "skipped: ..." lines), then the one closing line
#
#     N passed, N failed, N skipped
#
# summed over every runner. Check has no skips. A runner that exits non-zero without
# reporting a failure counts as one failure more.
set -u
passed=0
failed=0
skipped=0
times=""
skips=$(mktemp)
trap 'rm -f "$skips"' EXIT
while [ $# -ge 2 ]; do
  name=$1 cmd=$2
  shift 2
  echo "== $name: $cmd"
  out=$(mktemp)
  t0=$SECONDS
  bash -c "$cmd" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  p=0 f=0 s=0 found=0
  line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    checks=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    fails=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    errs=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    p=$((checks - fails - errs)) f=$((fails + errs)) found=1
  else
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$out" | tail -n 1)
    if [ -n "$line" ]; then
      p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
      f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
      case $line in
        *skipped) s=$(echo "$line" | sed -E 's/.* ([0-9]+) skipped$/\1/') ;;
      esac
      found=1
    fi
  fi
  if [ "$rc" -ne 0 ] && { [ "$found" -eq 0 ] || [ "$f" -eq 0 ]; }; then
    f=$((f + 1))
  fi
  grep -E '^skipped: ' "$out" | sed "s|^skipped: |skipped: [$name] |" >> "$skips"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
  echo "== $name: $p passed, $f failed, $s skipped in $((SECONDS - t0)) s"
  times="$times  $((SECONDS - t0)) s  $name
"
  rm -f "$out"
done
if [ "$skipped" -gt 0 ] || [ -s "$skips" ]; then
  echo "== skipped tests and why:"
  cat "$skips"
fi
# What each suite took: make test has a budget (20 minutes on 2 cores).
echo "== time per suite ($SECONDS s in all):"
printf '%s' "$times"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
