#!/usr/bin/env bash
# bench/bench_http.sh: redqd's HTTP cost against a bare libmicrohttpd server, acting while
# the agent trains, and durable ingest. Writes bench/results/http-latest.md and prints it.
#
#   a. build/bench/bare_mhd (bench/bare_mhd.c: the flags of api/http.c, a fixed answer the
#      size of an act answer) under  wrk -t2 -c4 -d10s --latency  with a POST of
#      {"obs":[0.1,0.2,0.3],"mode":"eval"}
#   b. build/redqd (or $REDQD_BIN) with a temporary data dir; one agent (obs 3, act 1,
#      hidden [256,256], ensemble 10, async, update_per_step 20, start_timesteps 256,
#      batch 256); the same wrk against POST /v1/agents/NAME/act, first with nothing to
#      train (idle), then while it trains on 2000 transitions posted first (no other
#      request: what sharing the CPU costs), then while it trains and a background feeder
#      keeps posting (batch_id posts, 429 honoured) so that pending_updates stays above 0
#      (the bars are about this last run)
#   c. bench/bench_ingest.py against its own daemon (batches of 1, 32, 1024; 4 clients)
#
# Bars (reported, never failing the script): act throughput >= 70% of the bare server's;
# act p99 < 2 ms while training runs.
#
# Environment: REDQD_BIN (default build/redqd, built with `make build/redqd` if missing),
# BUILD (where bare_mhd goes: $BUILD/bench/bare_mhd, default build),
# BENCH_SECONDS (wrk duration, default 10), INGEST_SECONDS (per ingest case, default 5),
# BENCH_HTTP_REPORT (default bench/results/http-latest.md). Needs wrk (apt-get install wrk),
# gcc, pkg-config, libmicrohttpd-dev and python3. Exits 0 whether or not the bars are met;
# non-zero only when a step fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

secs=${BENCH_SECONDS:-10}
ingest_secs=${INGEST_SECONDS:-5}
report=${BENCH_HTTP_REPORT:-bench/results/http-latest.md}
redqd=${REDQD_BIN:-build/redqd}
bare=${BUILD:-build}/bench/bare_mhd
py=python3

log() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || {
    echo "bench_http.sh: wrk not found (apt-get install -y wrk)" >&2
    exit 1
}

if [ ! -x "$bare" ] || [ bench/bare_mhd.c -nt "$bare" ]; then
    log "building $bare"
    mkdir -p "$(dirname "$bare")"
    # shellcheck disable=SC2046
    gcc -std=c11 -O2 -Wall -Wextra -pthread -o "$bare" bench/bare_mhd.c \
        $(pkg-config --cflags --libs libmicrohttpd)
fi
if [ ! -x "$redqd" ]; then
    log "building $redqd"
    make --no-print-directory "$redqd"
fi

tmp=$(mktemp -d /tmp/redqd-bench-http.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # wait_http URL: up to 15 s for any HTTP answer
    local _
    for _ in $(seq 1 300); do
        if curl -s -o /dev/null "$1" 2>/dev/null ||
            $py -c 'import sys,urllib.request as u
try: u.urlopen(sys.argv[1], timeout=1)
except u.HTTPError: pass' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "bench_http.sh: nothing answers at $1" >&2
    return 1
}

cat >"$tmp/act.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"obs":[0.1,0.2,0.3],"mode":"eval"}'
wrk.headers["Content-Type"] = "application/json"
EOF

# run_wrk NAME URL: wrk output in $tmp/NAME.wrk; sets R_RPS, R_P50 and R_P99 (ms), R_ERR.
run_wrk() {
    local name=$1 url=$2
    log "wrk -t2 -c4 -d${secs}s --latency -s act.lua $url"
    wrk -t2 -c4 -d"${secs}s" --latency -s "$tmp/act.lua" "$url" >"$tmp/$name.wrk"
    cat "$tmp/$name.wrk" >&2
    read -r R_RPS R_P50 R_P99 R_ERR < <($py - "$tmp/$name.wrk" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x = float(m.group(1))
    return x * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
err = 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
err += int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
err += sum(int(x) for x in m.groups()) if m else 0
print("%.0f %.3f %.3f %d" % (rps, p50, p99, err))
EOF
    )
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(loadavg)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
ncpu=$(nproc)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ------------------------------------------------------------------ a. bare MHD
port=$(free_port)
"$bare" "$port" 2>"$tmp/bare.log" &
pids+=($!)
bare_pid=$!
wait_http "http://127.0.0.1:$port/"
run_wrk bare "http://127.0.0.1:$port/v1/agents/bench/act"
B_RPS=$R_RPS B_P50=$R_P50 B_P99=$R_P99 B_ERR=$R_ERR
kill "$bare_pid"
wait "$bare_pid" 2>/dev/null || true
load_mid=$(loadavg)

# ------------------------------------------------------------------ b. redqd act
port=$(free_port)
base="http://127.0.0.1:$port"
"$redqd" --port "$port" --data-dir "$tmp/data" --log-level info >"$tmp/redqd.log" 2>&1 &
redqd_pid=$!
pids+=("$redqd_pid")
wait_http "$base/v1/health"

$py - "$base" <<'EOF'
import json, sys, urllib.request
base = sys.argv[1]
body = {"name": "bench", "obs_dim": 3, "action_low": [-2.0], "action_high": [2.0],
        "config": {"hidden_sizes": [256, 256], "ensemble_size": 10, "training": "async",
                   "update_per_step": 20, "start_timesteps": 256, "batch_size": 256,
                   "checkpoint_every": 0}}
req = urllib.request.Request(base + "/v1/agents", json.dumps(body).encode(),
                             {"Content-Type": "application/json"}, method="POST")
a = json.load(urllib.request.urlopen(req))
print("agent created:", json.dumps(a["config"])[:200], file=sys.stderr)
EOF

# Idle: nothing to train yet.
run_wrk idle "$base/v1/agents/bench/act"
I_RPS=$R_RPS I_P50=$R_P50 I_P99=$R_P99 I_ERR=$R_ERR

# The feeder: 2000 transitions first (35k updates owed: minutes of training), then, while
# $tmp/feed-on exists, 32 more every 0.25 s (batch_id posts, 429 honoured), until
# $tmp/stop-feeder exists. It records pending_updates and the latency of every post.
$py - "$base" "$tmp" <<'EOF' >"$tmp/feeder.log" 2>&1 &
import http.client, json, os, random, sys, time, urllib.parse
base, tmp = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
rng = random.Random(3)
seq = [0]
stats = {"posts": 0, "rows": 0, "busy": 0, "pending": [], "lat": []}
def post(n):
    rows = [{"obs": [rng.uniform(-1, 1) for _ in range(3)], "action": [rng.uniform(-2, 2)],
             "reward": rng.uniform(-1, 1), "next_obs": [rng.uniform(-1, 1) for _ in range(3)],
             "terminated": False, "truncated": False} for _ in range(n)]
    seq[0] += 1
    body = json.dumps({"batch_id": "feed-%d" % seq[0], "transitions": rows})
    while True:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/agents/bench/transitions", body,
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status == 429:
            stats["busy"] += 1
            time.sleep(float(r.headers.get("Retry-After") or 1))
            continue
        if r.status != 200:
            raise SystemExit("feeder: %d %s" % (r.status, data[:300]))
        a = json.loads(data)
        stats["posts"] += 1
        stats["rows"] += a["accepted"]
        stats["pending"].append(a["pending_updates"])
        stats["lat"].append(dt)
        return a
for _ in range(2000 // 250):
    post(250)
open(os.path.join(tmp, "feeder-ready"), "w").close()
stats["lat"] = []
while not os.path.exists(os.path.join(tmp, "stop-feeder")):
    if os.path.exists(os.path.join(tmp, "feed-on")):
        post(32)
    time.sleep(0.25)
p, lat = stats["pending"][8:], sorted(stats["lat"])
json.dump({"posts": stats["posts"], "rows": stats["rows"], "busy": stats["busy"],
           "pending_min": min(p) if p else None, "pending_max": max(p) if p else None,
           "post_p50_ms": 1e3 * lat[len(lat) // 2] if lat else None,
           "post_max_ms": 1e3 * lat[-1] if lat else None},
          open(os.path.join(tmp, "feeder.json"), "w"))
EOF
feeder_pid=$!
pids+=("$feeder_pid")
for _ in $(seq 1 600); do
    [ -e "$tmp/feeder-ready" ] && break
    kill -0 "$feeder_pid" 2>/dev/null || { cat "$tmp/feeder.log" >&2; exit 1; }
    sleep 0.05
done
[ -e "$tmp/feeder-ready" ] || { echo "bench_http.sh: the feeder did not start" >&2; exit 1; }
sleep 1 # the trainers are busy

agent_state() {
    $py -c 'import json,sys,urllib.request as u
s = json.load(u.urlopen(sys.argv[1] + "/v1/agents/bench"))["state"]
print(s["updates"], s["pending_updates"], s["env_steps"])' "$base"
}
# Training, no request but the acts (a diagnostic: what sharing the CPU alone costs).
read -r updq0 _ _ < <(agent_state)
tq0=$(date +%s.%N)
run_wrk trainq "$base/v1/agents/bench/act"
Q_RPS=$R_RPS Q_P50=$R_P50 Q_P99=$R_P99 Q_ERR=$R_ERR
tq1=$(date +%s.%N)
read -r updq1 _ _ < <(agent_state)
# Training and fed: the measurement the bars are about.
touch "$tmp/feed-on"
sleep 0.5
read -r upd0 pend0 _ < <(agent_state)
t0=$(date +%s.%N)
run_wrk train "$base/v1/agents/bench/act"
T_RPS=$R_RPS T_P50=$R_P50 T_P99=$R_P99 T_ERR=$R_ERR
t1=$(date +%s.%N)
read -r upd1 pend1 _ < <(agent_state)
touch "$tmp/stop-feeder"
wait "$feeder_pid" || { cat "$tmp/feeder.log" >&2; exit 1; }
feeder=$(cat "$tmp/feeder.json")
upd_rate=$($py -c "print('%.0f' % (($upd1 - $upd0) / ($t1 - $t0)))")
updq_rate=$($py -c "print('%.0f' % (($updq1 - $updq0) / ($tq1 - $tq0)))")
kill -TERM "$redqd_pid"
rc=0
wait "$redqd_pid" || rc=$?
[ "$rc" = 0 ] || { echo "bench_http.sh: redqd exited $rc after SIGTERM" >&2; tail -20 "$tmp/redqd.log" >&2; exit 1; }
load_after_http=$(loadavg)

# ------------------------------------------------------------------ c. ingest
log "bench/bench_ingest.py --seconds $ingest_secs"
REDQD_BIN="$redqd" $py bench/bench_ingest.py --seconds "$ingest_secs" \
    --markdown "$tmp/ingest.md" --json "$tmp/ingest.json" >&2
load_after=$(loadavg)

# ------------------------------------------------------------------ report
mkdir -p "$(dirname "$report")"
$py - "$tmp" >"$report" <<EOF
import json, sys
tmp = sys.argv[1]
B = dict(rps=$B_RPS, p50=$B_P50, p99=$B_P99, err=$B_ERR)
I = dict(rps=$I_RPS, p50=$I_P50, p99=$I_P99, err=$I_ERR)
Q = dict(rps=$Q_RPS, p50=$Q_P50, p99=$Q_P99, err=$Q_ERR)
T = dict(rps=$T_RPS, p50=$T_P50, p99=$T_P99, err=$T_ERR)
ingest = json.load(open(tmp + "/ingest.json"))
feeder = json.loads('''$feeder''')
def ms(x): return "%.3f" % x
print("# redqd HTTP benchmark")
print()
print("Run $started on \`$cpu\`, nproc $ncpu. Load average (1/5/15 min): before "
      "$load_before; after the bare run $load_mid; after the act runs $load_after_http; "
      "at the end $load_after. The numbers are noisy when the load average is near or "
      "above nproc (other work on the machine): re-measure on a quiet machine.")
print()
print("Commands (from the repository root): \`bench/bench_http.sh\`, which runs")
print()
print("    gcc -O2 bench/bare_mhd.c \$(pkg-config --cflags --libs libmicrohttpd) -o build/bench/bare_mhd")
print("    build/bench/bare_mhd PORT")
print("    $redqd --port PORT --data-dir TMP --log-level info")
print("    wrk -t2 -c4 -d${secs}s --latency -s act.lua URL   # POST {\"obs\":[0.1,0.2,0.3],\"mode\":\"eval\"}")
print("    bench/bench_ingest.py --seconds $ingest_secs        # its own daemon")
print()
print("The act agent: obs 3, act 1, hidden [256, 256], ensemble 10, async, update_per_step 20, "
      "start_timesteps 256, batch 256; 2000 transitions posted first (about 35k updates owed). "
      "\"training, no posts\": the acts alone while the trainers work (%s updates/s). "
      "\"training + posts\": a feeder also posts 32 rows every 0.25 s (batch_id, 429 honoured; "
      "%d posts, %d rows in all, %d answered 429; pending_updates %s to %s; its posts took "
      "p50 %.0f ms, max %.0f ms); the trainers did %s updates/s (pending %s -> %s)." % (
          "$updq_rate", feeder["posts"], feeder["rows"], feeder["busy"], feeder["pending_min"],
          feeder["pending_max"], feeder["post_p50_ms"] or 0, feeder["post_max_ms"] or 0,
          "$upd_rate", "$pend0", "$pend1"))
print()
print("| server | req/s | p50 ms | p99 ms | ratio to bare | non-200 / socket errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
print("| bare MHD (bench/bare_mhd.c) | %.0f | %s | %s | 1.00 | %d |" % (B["rps"], ms(B["p50"]), ms(B["p99"]), B["err"]))
print("| redqd act, idle | %.0f | %s | %s | %.2f | %d |" % (I["rps"], ms(I["p50"]), ms(I["p99"]), I["rps"] / B["rps"], I["err"]))
print("| redqd act, training, no posts | %.0f | %s | %s | %.2f | %d |" % (Q["rps"], ms(Q["p50"]), ms(Q["p99"]), Q["rps"] / B["rps"], Q["err"]))
print("| **redqd act, training + posts** | %.0f | %s | %s | %.2f | %d |" % (T["rps"], ms(T["p50"]), ms(T["p99"]), T["rps"] / B["rps"], T["err"]))
print()
ok1 = T["rps"] >= 0.7 * B["rps"]
ok2 = T["p99"] < 2.0
print("Bars:")
print()
print("- act throughput >= 70%% of the bare server's (training + posts): %s (%.0f%%; no posts %.0f%%; idle %.0f%%)" % (
    "met" if ok1 else "NOT met", 100 * T["rps"] / B["rps"], 100 * Q["rps"] / B["rps"], 100 * I["rps"] / B["rps"]))
print("- act p99 < 2 ms while training runs (training + posts): %s (%s ms; no posts %s ms; idle %s ms)" % (
    "met" if ok2 else "NOT met", ms(T["p99"]), ms(Q["p99"]), ms(I["p99"])))
print()
print("Durable ingest (bench/bench_ingest.py, its own daemon with the default --sqlite-sync normal: "
      "training \"manual\", a 200 means committed; one keep-alive http.client connection per "
      "client process, pre-encoded bodies, $ingest_secs s per case):")
print()
print(open(tmp + "/ingest.md").read().rstrip())
print()
b = {(r["batch"], r["clients"], r["agents"]): r for r in ingest}
if (1, 1, 1) in b and (1, 4, 1) in b:
    print("Group commit: 4 clients of batch 1 on one agent give %.1fx the rows/s of one client; "
          "on 4 agents %.1fx." % (b[(1, 4, 1)]["rows_per_s"] / b[(1, 1, 1)]["rows_per_s"],
          b[(1, 4, 4)]["rows_per_s"] / b[(1, 1, 1)]["rows_per_s"] if (1, 4, 4) in b else float("nan")))
EOF
cat "$report"
