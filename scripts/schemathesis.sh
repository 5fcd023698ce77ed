#!/usr/bin/env bash
# Fuzz the HTTP API with schemathesis against its own OpenAPI: a real `glidepath api` process on
# the embedded default (SQLite, file-system broker) in a temporary data dir, no worker (runs it
# queues stay queued). All checks (scripts/schemathesis.toml: `--checks all`, said in the file so
# that an operation's exceptions hold), the examples, coverage, fuzzing and stateful phases; any
# failure (a 5xx, a response off its schema, a schema-valid request refused, ...) fails the run.
# What may answer 422 although the schema allows it, and why: scripts/schemathesis.toml.
#
#   scripts/schemathesis.sh                     # CI's run: fixed seed, bounded examples
#   SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_SEED=random scripts/schemathesis.sh   # a longer one
#   scripts/schemathesis.sh --include-path /v1/sweeps    # extra arguments go to `schemathesis run`
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=$(cd "${VENV:-.venv}/bin" && pwd)
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-15}
SEED=${SCHEMATHESIS_SEED:-16}

DATA=$(mktemp -d "${TMPDIR:-/tmp}/glidepath-schemathesis.XXXXXX")
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
API_PID=""
cleanup() {
  if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null || true; wait "$API_PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

# The API's settings: only the temp dir, whatever the caller's environment says. An admin token
# guards it, as a deployment would be: open, the first POST /v1/tokens the fuzzer sends would
# lock it out of everything after.
unset GLIDEPATH_DATABASE_URL GLIDEPATH_BROKER_URL GLIDEPATH_ARTIFACT_URL
export GLIDEPATH_DATA_DIR="$DATA"
TOKEN="fuzz-$("$BIN/python" -c 'import secrets; print(secrets.token_hex(16))')"
export GLIDEPATH_API_TOKENS="$TOKEN"
"$BIN/glidepath" migrate >/dev/null
"$BIN/glidepath" api --port "$PORT" --log-level warning >"$DATA/api.log" 2>&1 &
API_PID=$!
# Ready once /readyz answers 200; then one spec checked, which imports torch (seconds on a busy
# machine): the fuzzer's first request should not pay that.
URL="http://127.0.0.1:$PORT" "$BIN/python" - "$API_PID" <<'PY' || { cat "$DATA/api.log"; exit 1; }
import os, sys, time
import httpx
url, pid = os.environ["URL"], int(sys.argv[1])
deadline = time.monotonic() + 90
while True:
    try:
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    os.kill(pid, 0)  # raises once the API has died
    if time.monotonic() > deadline:
        sys.exit("the API did not become ready in 90 s")
    time.sleep(0.5)
httpx.post(f"{url}/v1/schedules/preview", json={"base_lr": 0.1, "epochs": 2}, timeout=120,
           headers={"Authorization": f"Bearer {os.environ['GLIDEPATH_API_TOKENS']}"})
PY

seed_args=()
[ "$SEED" = random ] || seed_args=(--seed "$SEED")
status=0
# Run from the data dir: schemathesis keeps its example database in ./.schemathesis otherwise.
(cd "$DATA" && "$BIN/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" \
  run "http://127.0.0.1:$PORT/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --request-timeout 30 \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$EXAMPLES" "${seed_args[@]}" \
  --generation-database none \
  --workers 1 \
  --no-color \
  "$@" >"$DATA/schemathesis.log" 2>&1) || status=$?
if [ "$status" -ne 0 ]; then
  cat "$DATA/schemathesis.log"
  if grep -q "Traceback" "$DATA/api.log"; then
    echo "--- the API's errors (frames in the project's code) ---"
    grep -v -e '^  File "[^"]*site-packages' -e '^    ' "$DATA/api.log" | grep -v '^\s*\^*$' | head -300
  fi
  exit "$status"
fi
# Passed: its summary, and one closing line in the form CI reads after a test runner's.
sed -n '/^=* SUMMARY =*$/,$p' "$DATA/schemathesis.log"
cases=$(sed -n 's/^ *\([0-9]*\) generated, \([0-9]*\) passed.*/\2/p' "$DATA/schemathesis.log" | tail -n1)
echo "schemathesis: ${cases:-0} passed, 0 failed"
