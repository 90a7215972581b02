#!/usr/bin/env bash
# Runs examples/fleet-sim against a release backup-server (server pinned to core 0, simulator to core 1).
# WARMUP=<seconds> excludes the first wave of tasks from the figures. Build first:
#   cargo build --release -p backup-server -p example-fleet-sim
# usage: run.sh <sqlite|postgres> <agents> <heartbeat> <claim> <duration>
set -euo pipefail
db=$1; agents=$2; hb=$3; cl=$4; dur=$5
root=$(cd "$(dirname "$0")/.." && pwd)
rm -f ${SCALE_DIR:-/tmp}/s.db*
if [ "$db" = sqlite ]; then url="sqlite://${SCALE_DIR:-/tmp}/s.db"; else
  name="scale_$(date +%s)"; psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $name"; url="postgres://postgres@127.0.0.1:5432/$name"; fi
BACKUP_SERVER_LISTEN=127.0.0.1:18080 BACKUP_SERVER_DATABASE=$url BACKUP_SERVER_ADMIN_TOKEN=fleet-sim-admin-token-0123456789 \
  BACKUP_SERVER_LIMITS__AGENT_REQUESTS_PER_SECOND=0 BACKUP_SERVER_LIMITS__TENANT_REQUESTS_PER_SECOND=0 RUST_LOG=warn taskset -c 0 $root/target/release/backup-server > ${SCALE_DIR:-/tmp}/server.log 2>&1 &
spid=$!
sleep 1
taskset -c 1 $root/target/release/example-fleet-sim --url http://127.0.0.1:18080 --agents $agents --heartbeat-secs $hb --claim-secs $cl --duration-secs $dur --warmup-secs ${WARMUP:-0} --server-pid $spid || true
kill $spid; wait $spid 2>/dev/null || true
if [ "$db" = postgres ]; then psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE $name WITH (FORCE)"; fi
