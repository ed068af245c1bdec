#!/usr/bin/env bash
# bench/run_bench.sh: the whole `make bench` flow, every measurement in one run on one
# machine, so that the ratios in the report compare like with like:
#
#   1. bench-only dependencies (python3-torch, python3-numpy for the PyTorch reference)
#   2. bench/sgemm_peak.c built into build/bench/sgemm_peak
#   3. sgemm_peak -t 1,2 -j          -> build/bench/sgemm.txt   (the GEMM bounds)
#   4. torch_redq_ref.py, lean, 1/2 threads -> build/bench/torch.jsonl
#   5. build/bench_update, single/split2/agents2 -> build/bench/redqd.jsonl
#   6. bench/report.py               -> bench/results/latest.md (and stdout);
#                                       with BENCH_QUICK=1, build/bench/latest-quick.md
#
# Run from anywhere inside the repository (it changes to the root). Environment:
#   REDQD_SHARED   a directory whose bench/ holds other copies of sgemm_peak.c,
#                  torch_redq_ref.py and redq_flops.py (default: the repository's)
#   BENCH_QUICK=1  every step short (a smoke test of the pipeline; numbers meaningless)
#   BUILD          build directory (default build, as in the Makefile)
#   BENCH_REPORT   where to write the report (default: see step 6)
#
# Exits 0 whether or not the bars are met (benchmarks never fail the build); non-zero
# only when a step fails (a crash, a missing tool, a non-finite loss in bench_update).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/.." && pwd))
cd "$root"
shared=${REDQD_SHARED:-$root}
build=${BUILD:-build}
out=$build/bench
quick=${BENCH_QUICK:-0}
py=/usr/bin/python3 # Debian's python3-torch lives here, not in a pyenv/venv python
configs=(pendulum halfcheetah humanoid small)

log() { printf '\n== %s\n' "$*" >&2; }

# Durations: modest by default (about 8 minutes on a 2-core VM), tiny with BENCH_QUICK.
if [ "$quick" = 1 ]; then
    sgemm_opts=(-n 1 -m 20)
    torch_opts=(--repeats 1 --min-time 0.2 --warmup 0.1)
    redqd_opts=(--repeats 1 --min-time 0.2 --warmup 0.1 --act-time 0.1)
else
    sgemm_opts=(-n 5 -m 100)
    torch_opts=(--repeats 3 --min-time 2 --warmup 1)
    redqd_opts=(--repeats 5 --min-time 2 --warmup 1 --act-time 1)
fi

for f in bench/sgemm_peak.c bench/torch_redq_ref.py bench/redq_flops.py; do
    if [ ! -r "$shared/$f" ]; then
        echo "run_bench.sh: $shared/$f not found (REDQD_SHARED: a directory whose bench/ holds it)" >&2
        exit 1
    fi
done
shared=$(cd "$shared" && pwd) # a plain path for the report's list of commands
mkdir -p "$out" bench/results
: >"$out/commands.txt"

# Runs a command, saving its stdout to a file and the command line to commands.txt.
run_to() {
    local dest=$1
    shift
    printf '%s > %s\n' "$*" "$dest" >>"$out/commands.txt"
    "$@" >"$dest"
}

log "1/6 bench dependencies (python3-torch, python3-numpy)"
if ! dpkg -s python3-torch >/dev/null 2>&1 || ! dpkg -s python3-numpy >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be stale on a fresh machine: update once and retry.
    $sudo apt-get install -y -qq --no-install-recommends python3-torch python3-numpy ||
        { $sudo apt-get update -qq &&
          $sudo apt-get install -y -qq --no-install-recommends python3-torch python3-numpy; }
fi

log "2/6 sgemm_peak and bench_update"
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
gcc -O2 -std=c11 -Wall -pthread $(pkg-config --cflags openblas) -o "$out/sgemm_peak" \
    "$shared/bench/sgemm_peak.c" $(pkg-config --libs openblas)
make --no-print-directory "$build/bench_update" >&2

log "3/6 sgemm peak and per-shape rates, 1 and 2 OpenBLAS threads"
# sgemm_peak sets its thread count per setting; an inherited OPENBLAS_NUM_THREADS=1 would
# size OpenBLAS's pool at start-up and could cap the 2-thread setting.
run_to "$out/sgemm.txt" env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS \
    "$out/sgemm_peak" -t 1,2 -j "${sgemm_opts[@]}"

log "4/6 PyTorch reference (lean), 1 and 2 threads"
run_to "$out/torch.jsonl" "$py" "$shared/bench/torch_redq_ref.py" --variant lean --threads 1 2 \
    --config "${configs[@]}" "${torch_opts[@]}"

log "5/6 redqd core: single, split2, agents2"
# bench_update calls openblas_set_num_threads(1) itself; the variable is what the unit
# file sets for the daemon (STYLE.md), so the bench runs the way redqd does.
run_to "$out/redqd.jsonl" env OPENBLAS_NUM_THREADS=1 "$build/bench_update" --config "${configs[@]}" \
    --mode single split2 agents2 "${redqd_opts[@]}"

log "6/6 report"
# A smoke test must not replace the recorded results: it writes under build/ instead.
report=${BENCH_REPORT:-bench/results/latest.md}
report_opts=()
if [ "$quick" = 1 ]; then
    report=${BENCH_REPORT:-$out/latest-quick.md}
    report_opts+=(--quick)
fi
"$py" bench/report.py --shared "$shared" --sgemm "$out/sgemm.txt" --torch "$out/torch.jsonl" \
    --redqd "$out/redqd.jsonl" --commands "$out/commands.txt" --out "$report" \
    "${report_opts[@]}"
log "report written to $report"
