#!/usr/bin/env bash
# Quotas through the real agent: the upload rate restic reaches under
# bandwidthLimitMbps, and the CPU restic gets under cpuQuotaPercent, idle and beside two
# busy loops at nice 0. Each case backs up into a fresh repository (no deduplication).
# The agent runs restic through a wrapper that records restic's wall, user and system time, the
# niceness and GOMAXPROCS the agent gave it.
# Usage: cargo build --release -p backup-server -p backup-agent && scripts/bench-quotas.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd); dir=${BENCH_DIR:-/tmp/quotabench}
rm -rf "$dir"; mkdir -p "$dir/updata" "$dir/cpudata"; cd "$dir"
head -c $((24 * 1024 * 1024)) /dev/urandom > updata/a.bin
head -c $((128 * 1024 * 1024)) /dev/urandom > cpudata/a.bin
echo "password" > pw
port=18183; base=http://127.0.0.1:$port; admin=bench-admin-token-0123456789
cat > restic-timed <<'SH'
#!/usr/bin/env bash
# Runs restic; appends "wall user sys nice GOMAXPROCS" for backups to times.log.
if [ "${1:-}" != "backup" ]; then exec restic "$@"; fi
nice=$(ps -o ni= -p $$ | tr -d ' ')
TIMEFORMAT="%R %U %S $nice ${GOMAXPROCS:-unset}"
exec 3>&2
{ time restic "$@" 2>&3; } 2>> "$(dirname "$0")/times.log"
SH
chmod +x restic-timed
BACKUP_SERVER_LISTEN=127.0.0.1:$port BACKUP_SERVER_DATABASE=sqlite://$dir/s.db BACKUP_SERVER_ADMIN_TOKEN=$admin \
  BACKUP_SERVER_SCHEDULER__TICK_SECONDS=1 RUST_LOG=warn "$root/target/release/backup-server" > server.log 2>&1 &
spid=$!
hogs=()
trap 'kill $spid ${apid:-} "${hogs[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "$base/healthz" > /dev/null && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
T=$(curl -s -XPOST "$base/tenants" -H "Authorization: Bearer $admin" -d '{"name":"q"}')
TID=$(echo "$T" | json '["id"]'); TOK=$(echo "$T" | json '["token"]')
api() { curl -s -X "$1" "$base$2" -H "Authorization: Bearer $TOK" -H "X-Tenant-ID: $TID" -H 'content-type: application/json' ${3:+-d "$3"}; }
A=$(api POST /agents '{"name":"q","hostname":"q"}')
AID=$(echo "$A" | json '["id"]'); ATOK=$(echo "$A" | json '["token"]')
{
  printf 'orchestratorUrl: %s\npollingIntervalSeconds: 1\nheartbeatIntervalSeconds: 1\n' "$base"
  printf 'agentId: %s\ntoken: %s\nstateDir: %s/state\nresticBinary: %s/restic-timed\nrepositories:\n' "$AID" "$ATOK" "$dir" "$dir"
  for i in $(seq 1 9); do printf '  r%s: {url: %s/repo-%s, passwordFile: %s/pw, initIfMissing: true}\n' "$i" "$dir" "$i" "$dir"; done
} > agent.yaml
"$root/target/release/backup-agent" --config agent.yaml > agent.log 2>&1 &
apid=$!
sleep 2
cpus=$(nproc)
n=0
# run SETTINGS_JSON DATA_DIR: one backup into the next fresh repository; sets $added to the
# run's dataAdded and leaves restic's times in the last line of times.log. (Not in a $(...)
# subshell: the repository counter must advance.)
run() {
  n=$((n + 1))
  api PATCH "/agents/$AID/settings" "$1" > /dev/null
  sleep 3 # the next heartbeat answer carries the settings
  local P PID R
  P=$(api POST /policies "{\"name\":\"case $n\",\"agentId\":\"$AID\",\"kind\":\"backup\",\"schedule\":{\"every\":\"24h\"},\"paths\":[\"$2\"],\"repository\":\"r$n\"}")
  PID=$(echo "$P" | json '["id"]')
  for _ in $(seq 1 600); do
    R=$(api GET "/backup-runs?policyId=$PID&status=succeeded")
    [ "$(echo "$R" | json '["items"].__len__()')" = 1 ] && break; sleep 0.5
  done
  added=$(echo "$R" | json '["items"][0]["dataAdded"]')
}
echo "machine: $cpus CPUs; restic $(restic version | cut -d' ' -f2)"
echo
echo "| bandwidthLimitMbps | --limit-upload | data added | restic wall time | upload rate | vs limit |"
echo "|---|---|---|---|---|---|"
for mbps in 8 16 32; do
  run "{\"bandwidthLimitMbps\": $mbps, \"cpuQuotaPercent\": 100}" "$dir/updata"
  read -r wall _ _ _ _ < <(tail -n 1 times.log)
  kib=$((mbps * 1000000 / 8 / 1024))
  python3 - "$mbps" "$kib" "$added" "$wall" <<'PY'
import sys
mbps, kib, added, wall = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rate = added * 8 / 1e6 / wall
print(f"| {mbps} | {kib} KiB/s | {added / 2**20:.1f} MiB | {wall:.2f} s | {rate:.2f} Mbit/s | {rate / mbps:.3f} |")
PY
done
echo
echo "| cpuQuotaPercent | niceness | GOMAXPROCS | beside | restic wall time | restic CPU time | cores used |"
echo "|---|---|---|---|---|---|---|"
for load in idle hogs; do
  if [ "$load" = hogs ]; then
    for _ in $(seq 1 "$cpus"); do (while :; do :; done) & hogs+=($!); done
  fi
  for q in 100 50 25; do
    run "{\"bandwidthLimitMbps\": null, \"cpuQuotaPercent\": $q}" "$dir/cpudata"
    read -r wall user sys nice gmp < <(tail -n 1 times.log)
    beside=$([ "$load" = hogs ] && echo "$cpus busy loops at nice 0" || echo "an idle machine")
    python3 - "$q" "$nice" "$gmp" "$beside" "$wall" "$user" "$sys" <<'PY'
import sys
q, nice, gmp, beside = sys.argv[1:5]
wall, user, sys_ = map(float, sys.argv[5:8])
print(f"| {q} | {nice} | {gmp} | {beside} | {wall:.2f} s | {user + sys_:.2f} s | {(user + sys_) / wall:.2f} |")
PY
  done
done
