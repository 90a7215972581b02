#!/usr/bin/env bash
# Backup through the agent vs restic by hand on the same data; idle agent RSS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); dir=${BENCH_DIR:-/tmp/agentbench}; mkdir -p $dir; cd $dir
rm -rf agent-repo-* hand-repo-* state s.db* cache-hand
mkdir -p data; [ -f data/big.bin ] || head -c 300000000 /dev/urandom > data/big.bin
echo "password" > pw
export RESTIC_CACHE_DIR=$dir/cache-hand
BACKUP_SERVER_LISTEN=127.0.0.1:18181 BACKUP_SERVER_DATABASE=sqlite://$dir/s.db BACKUP_SERVER_ADMIN_TOKEN=bench-admin-token-0123456789 \
  BACKUP_SERVER_SCHEDULER__TICK_SECONDS=1 RUST_LOG=warn $root/target/release/backup-server > server.log 2>&1 &
spid=$!; sleep 1
api() { curl -s -X "$1" "http://127.0.0.1:18181$2" -H "Authorization: Bearer $TOK" -H "X-Tenant-ID: $TID" -H 'content-type: application/json' ${3:+-d "$3"}; }
T=$(curl -s -XPOST http://127.0.0.1:18181/tenants -H 'Authorization: Bearer bench-admin-token-0123456789' -d '{"name":"b"}')
TID=$(echo "$T" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'); TOK=$(echo "$T" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
A=$(api POST /agents '{"name":"a","hostname":"a"}')
AID=$(echo "$A" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'); ATOK=$(echo "$A" | python3 -c 'import json,sys;print(json.load(sys.stdin)["token"])')
for i in 1 2 3; do restic -r $dir/agent-repo-$i --password-file pw init -q; done
cat > agent.yaml <<YAML
orchestratorUrl: http://127.0.0.1:18181
pollingIntervalSeconds: 1
heartbeatIntervalSeconds: 5
agentId: $AID
token: $ATOK
stateDir: $dir/state
cpuQuotaPercent: 100
repositories:
  r1: {url: $dir/agent-repo-1, passwordFile: $dir/pw}
  r2: {url: $dir/agent-repo-2, passwordFile: $dir/pw}
  r3: {url: $dir/agent-repo-3, passwordFile: $dir/pw}
YAML
$root/target/release/backup-agent --config agent.yaml > agent.log 2>&1 &
apid=$!
sleep 12
echo "idle agent RSS: $(grep VmRSS /proc/$apid/status)"
for i in 1 2 3; do
  restic -r $dir/hand-repo-$i --password-file pw init -q
  start=$(date +%s.%N); restic -r $dir/hand-repo-$i --password-file pw backup -q $dir/data; end=$(date +%s.%N)
  echo "by hand $i: $(python3 -c "print(round($end-$start,3))") s"
  P=$(api POST /policies "{\"name\":\"p$i\",\"agentId\":\"$AID\",\"kind\":\"backup\",\"schedule\":{\"every\":\"24h\"},\"paths\":[\"$dir/data\"],\"repository\":\"r$i\"}")
  PID=$(echo "$P" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  for t in $(seq 1 300); do
    R=$(api GET "/backup-runs?policyId=$PID&status=succeeded"); n=$(echo "$R" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["items"]))')
    [ "$n" = 1 ] && break; sleep 0.5
  done
  echo "through the agent $i: $(echo "$R" | python3 -c 'import json,sys;r=json.load(sys.stdin)["items"][0];print(r["durationMs"]/1000)') s (durationMs of the run)"
done
echo "agent RSS after three 300 MB backups: $(grep VmRSS /proc/$apid/status)"
kill $apid $spid; wait 2>/dev/null || true
