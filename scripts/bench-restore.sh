#!/usr/bin/env bash
# A restore through the agent vs `restic restore` by hand, same snapshot, same run: 300 MB of
# incompressible data, backed up once by the agent, then restored ROUNDS times each way
# (alternating, each into a fresh directory, the page cache dropped before each when the
# script may). Also: from POST /restores (and POST /snapshots/{id}/ls) to restic's start on
# an idle agent with long polls, from the task's createdAt to its run's startedAt.
# Usage: cargo build --release -p backup-server -p backup-agent && scripts/bench-restore.sh
# (ROUNDS=n rounds, default 3; RESTIC_WRAPPER=<script> runs the agent's restic through a wrapper)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); dir=${BENCH_DIR:-/tmp/restorebench}; rounds=${ROUNDS:-3}
port=${BENCH_PORT:-18282}
rm -rf "$dir"; mkdir -p "$dir/data" "$dir/restores"; cd "$dir"
head -c 300000000 /dev/urandom > data/big.bin
echo "password" > pw
export RESTIC_CACHE_DIR=$dir/cache-hand RESTIC_PASSWORD_FILE=$dir/pw
restic -r "$dir/repo" init -q

BACKUP_SERVER_LISTEN=127.0.0.1:$port BACKUP_SERVER_DATABASE=sqlite://$dir/s.db \
  BACKUP_SERVER_ADMIN_TOKEN=bench-admin-token-0123456789 BACKUP_SERVER_SCHEDULER__TICK_SECONDS=1 \
  RUST_LOG=warn "$root/target/release/backup-server" > server.log 2>&1 &
spid=$!
trap 'kill $spid ${apid:-} 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
json() { python3 -c "import json,sys; v=json.load(sys.stdin); print($1)"; }
T=$(curl -s -XPOST "http://127.0.0.1:$port/tenants" -H 'Authorization: Bearer bench-admin-token-0123456789' -d '{"name":"b"}')
TID=$(echo "$T" | json 'v["id"]'); TOK=$(echo "$T" | json 'v["token"]')
api() { curl -s -X "$1" "http://127.0.0.1:$port$2" -H "Authorization: Bearer $TOK" -H "X-Tenant-ID: $TID" -H 'content-type: application/json' ${3:+-d "$3"}; }
A=$(api POST /agents '{"name":"a","hostname":"a"}')
AID=$(echo "$A" | json 'v["id"]'); ATOK=$(echo "$A" | json 'v["token"]')
cat > agent.yaml <<YAML
orchestratorUrl: http://127.0.0.1:$port
heartbeatIntervalSeconds: 5
agentId: $AID
token: $ATOK
stateDir: $dir/state
cpuQuotaPercent: 100
restoreTargets: [$dir/restores]
resticBinary: ${RESTIC_WRAPPER:-restic}
repositories:
  main: {url: $dir/repo, passwordFile: $dir/pw}
YAML
"$root/target/release/backup-agent" --config agent.yaml > agent.log 2>&1 &
apid=$!
P=$(api POST /policies "{\"name\":\"p\",\"agentId\":\"$AID\",\"kind\":\"backup\",\"schedule\":{\"every\":\"24h\"},\"paths\":[\"$dir/data\"],\"repository\":\"main\"}")
for _ in $(seq 1 600); do
  n=$(api GET "/snapshots?repository=main" | json 'len(v["items"])'); [ "$n" = 1 ] && break; sleep 0.5
done
SNAP=$(api GET "/snapshots?repository=main" | json 'v["items"][0]["id"]')
echo "restic: $(restic version | cut -d' ' -f2); snapshot ${SNAP:0:8} of 300 MB"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
ended() { # task id -> prints the task view once it ended (polled with curl and grep only:
  # a python per poll would load the 2 cores the restore runs on)
  local V
  for _ in $(seq 1 1200); do
    V=$(api GET "/tasks/$1")
    case $(echo "$V" | grep -o '"status":"[a-z_]*"') in
      *succeeded*|*failed_permanently*|*cancelled*) echo "$V"; return;;
    esac; sleep 0.5
  done; echo "task $1 did not end" >&2; exit 1
}
run_of() { api GET "/backup-runs?taskId=$1" | json 'json.dumps(v["items"][0])'; }
by_hand() { # round -> seconds
  drop; local start end; start=$(date +%s.%N)
  restic -r "$dir/repo" restore -q "$SNAP" --target "$dir/hand-$1" > /dev/null; end=$(date +%s.%N)
  python3 -c "print(round($end-$start,3))"
}
through_agent() { # round -> seconds (the run's durationMs)
  drop
  local TK V
  TK=$(api POST /restores "{\"agentId\":\"$AID\",\"repository\":\"main\",\"snapshotId\":\"$SNAP\",\"target\":\"$dir/restores/agent-$1\"}" | json 'v["id"]')
  V=$(ended "$TK"); [ "$(echo "$V" | json 'v["status"]')" = succeeded ] || { echo "$V" >&2; exit 1; }
  cmp -s "$dir/data/big.bin" "$dir/restores/agent-$1$dir/data/big.bin" || { echo "round $1: the restored file differs" >&2; exit 1; }
  run_of "$TK" | json 'v["durationMs"]/1000'
}
ratios=()
for i in $(seq 1 "$rounds"); do
  # Alternate who goes first, so that neither always meets the other's writeback.
  if [ $((i % 2)) = 1 ]; then hand=$(by_hand "$i"); agent=$(through_agent "$i")
  else agent=$(through_agent "$i"); hand=$(by_hand "$i"); fi
  ratio=$(python3 -c "print(round($agent/$hand,3))"); ratios+=("$ratio")
  echo "round $i: by hand $hand s, through the agent $agent s (durationMs of the run), ratio $ratio"
  rm -rf "$dir/hand-$i" "$dir/restores/agent-$i"
done
python3 -c "import statistics,sys; print('median ratio', statistics.median(float(x) for x in sys.argv[1:]))" "${ratios[@]}"

# Dispatch: an idle agent (its claim waiting at the server) starts what is asked at once.
latencies=()
for i in $(seq 1 20); do
  sleep 0.5
  TK=$(api POST "/snapshots/${SNAP}/ls" "{\"agentId\":\"$AID\",\"repository\":\"main\",\"path\":\"$dir/data\"}" | json 'v["id"]')
  ended "$TK" > /dev/null
  created=$(api GET "/tasks/$TK" | json 'v["createdAt"]'); started=$(run_of "$TK" | json 'v["startedAt"]')
  latencies+=("$(python3 -c "from datetime import datetime as d; f=lambda s: d.fromisoformat(s.replace('Z','+00:00')); print(round((f('$started')-f('$created')).total_seconds()*1000))")")
done
python3 - "${latencies[@]}" <<'PY'
import sys
ms = sorted(int(x) for x in sys.argv[1:])
p = lambda q: ms[min(len(ms) - 1, int(round(q * (len(ms) - 1))))]
print(f"ls asked to restic started, {len(ms)} samples: p50 {p(0.5)} ms, p99 {p(0.99)} ms, max {ms[-1]} ms")
PY
