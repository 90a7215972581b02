#!/usr/bin/env bash
# One tenant floods a release backup-server (pinned to core 0) from many connections while another
# tenant reads at 20 requests a second (the simulator pinned to core 1): the quiet tenant's latency
# before and during the flood, with the per-tenant limit at its default and switched off.
# Build first: cargo build --release -p backup-server -p example-fleet-sim
# usage: bench-tenant-flood.sh [connections] [seconds]     (defaults 32 and 20)
set -euo pipefail
connections=${1:-32}; secs=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for limit in 50 0; do
  echo "== limits.tenantRequestsPerSecond: $limit"
  rm -f "$dir"/s.db*
  BACKUP_SERVER_LISTEN=127.0.0.1:18081 BACKUP_SERVER_DATABASE="sqlite://$dir/s.db" \
    BACKUP_SERVER_ADMIN_TOKEN=fleet-sim-admin-token-0123456789 \
    BACKUP_SERVER_LIMITS__TENANT_REQUESTS_PER_SECOND=$limit RUST_LOG=warn \
    taskset -c 0 "$root/target/release/backup-server" > "$dir/server.log" 2>&1 &
  spid=$!
  sleep 1
  taskset -c 1 "$root/target/release/example-fleet-sim" --url http://127.0.0.1:18081 \
    --tenant-flood "$connections" --duration-secs "$secs" || true
  kill $spid; wait $spid 2>/dev/null || true
done
