#!/usr/bin/env bash
# A whole redqd experiment with plain curl: create an agent, act, feed it transitions,
# train, read its statistics, checkpoint and restore it, download its policy, pause it,
# see an error, delete it. Needs curl and python3 (for random data and JSON fields).
#
#   make run                            # the daemon, in another terminal
#   bash clients/curl/session.sh        # REDQD_URL, REDQD_TOKEN and OUT_DIR are optional
#
# Downloaded files go to $OUT_DIR (default ./redqd-curl-demo).
set -euo pipefail

URL=${REDQD_URL:-http://127.0.0.1:8470}
AGENT=curl-demo
OUT=${OUT_DIR:-redqd-curl-demo}
mkdir -p "$OUT"

AUTH=()
if [ -n "${REDQD_TOKEN:-}" ]; then
    AUTH=(-H "Authorization: Bearer $REDQD_TOKEN")
fi

step() { printf '\n==> %s\n' "$*"; }

# api METHOD PATH [curl options...]: prints the answer; fails on an HTTP error.
api() {
    local method=$1 path=$2
    shift 2
    curl -sS --fail-with-body -w '\n' -X "$method" "${AUTH[@]}" "$URL$path" "$@"
}

# post METHOD PATH JSON: a request with a JSON body (redqd needs the Content-Type).
post() {
    api "$1" "$2" -H 'Content-Type: application/json' --data-binary "$3"
}

# download PATH FILE: saves the answer to FILE; fails on an HTTP error.
download() {
    curl -sS --fail-with-body "${AUTH[@]}" "$URL$1" -o "$2"
}

# field NAME: one field of the JSON document on stdin.
field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

step "Is the daemon up?"
api GET /v1/health || { echo "no redqd at $URL (start one with: make run)" >&2; exit 1; }

step "Start clean: delete a $AGENT left over from an earlier run (404 if there is none)"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -X DELETE "${AUTH[@]}" "$URL/v1/agents/$AGENT"

step "Create agent $AGENT: 3 observations, one action in [-2, 2], trained on request"
post POST /v1/agents '{
  "name": "'"$AGENT"'", "obs_dim": 3, "action_low": [-2.0], "action_high": [2.0],
  "config": {"hidden_sizes": [64, 64], "ensemble_size": 5, "batch_size": 32,
             "start_timesteps": 0, "training": "manual", "seed": 1}
}'

step "Act: an explore action for one observation"
post POST "/v1/agents/$AGENT/act" '{"obs": [1.0, 0.0, 0.5], "mode": "explore"}'

step "Act: eval actions for two observations at once"
post POST "/v1/agents/$AGENT/act" '{"obs": [[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]], "mode": "eval"}'

step "Post 64 random transitions, with a batch_id so that a retry cannot store them twice"
python3 - > "$OUT/transitions.json" <<'EOF'
import json, random
rng = random.Random(0)
obs = lambda: [rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-8, 8)]
rows = [{"obs": obs(), "action": [rng.uniform(-2, 2)], "reward": rng.uniform(-16, 0),
         "next_obs": obs(), "terminated": False, "truncated": i % 32 == 31}
        for i in range(64)]
print(json.dumps({"batch_id": "curl-demo-1", "transitions": rows}))
EOF
post POST "/v1/agents/$AGENT/transitions" "@$OUT/transitions.json"

step "Post the same batch again: the same answer, and nothing is stored twice"
post POST "/v1/agents/$AGENT/transitions" "@$OUT/transitions.json"

step "Train 50 updates now"
post POST "/v1/agents/$AGENT/train" '{"updates": 50}'

step "Statistics: the first 3 rows as JSON, then all of them as CSV"
sleep 1    # stats rows reach the database within a second of the updates
api GET "/v1/agents/$AGENT/stats?limit=3"
api GET "/v1/agents/$AGENT/stats?format=csv"

step "Create a checkpoint"
CHECKPOINT=$(post POST "/v1/agents/$AGENT/checkpoints" '{}')
echo "$CHECKPOINT"
CKPT=$(field id <<< "$CHECKPOINT")

step "List the checkpoints"
api GET "/v1/agents/$AGENT/checkpoints"

step "Download checkpoint $CKPT to $OUT/checkpoint-$CKPT.bin"
download "/v1/agents/$AGENT/checkpoints/$CKPT" "$OUT/checkpoint-$CKPT.bin"
ls -l "$OUT/checkpoint-$CKPT.bin"

step "Train 50 more, then restore checkpoint $CKPT (policy_version goes up by one)"
post POST "/v1/agents/$AGENT/train" '{"updates": 50}' > /dev/null
post POST "/v1/agents/$AGENT/restore" '{"checkpoint": '"$CKPT"'}' | python3 -c '
import json, sys; state = json.load(sys.stdin)["state"]
print({k: state[k] for k in ("env_steps", "updates", "policy_version")})'

step "Download the policy to $OUT/policy.safetensors and show its metadata"
download "/v1/agents/$AGENT/policy" "$OUT/policy.safetensors"
python3 - "$OUT/policy.safetensors" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack_from("<Q", data)
header = json.loads(data[8:8 + n])
print(header.pop("__metadata__"))
for name, t in header.items():
    print(f"  {name}: {t['dtype']} {t['shape']}")
EOF

step "Pause background training"
post PATCH "/v1/agents/$AGENT" '{"training": "paused"}' | python3 -c '
import json, sys; print("training:", json.load(sys.stdin)["config"]["training"])'

step "An error: 4 observations for an agent that expects 3 (a problem+json answer)"
curl -sS -i -X POST "${AUTH[@]}" "$URL/v1/agents/$AGENT/act" \
     -H 'Content-Type: application/json' --data-binary '{"obs": [1, 2, 3, 4]}'
echo

step "Delete the agent"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' --fail-with-body -X DELETE "${AUTH[@]}" \
     "$URL/v1/agents/$AGENT"

step "Done; the files are in $OUT/"
ls "$OUT"
