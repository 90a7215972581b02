#!/usr/bin/env bash
# API fuzzing with schemathesis against the live server's own /openapi.json, as a tenant and as
# an agent, with the checks not_a_server_error, ignored_auth, response_schema_conformance and
# status_code_conformance (every status a route returns is declared in the document).
# Usage: scripts/schemathesis.sh [path to a schemathesis binary]   (CI makes a virtualenv)
# The server runs on a fresh SQLite file, or on SCHEMATHESIS_DATABASE (an empty PostgreSQL).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
st=${1:-schemathesis}
(cd "$root" && cargo build -q -p backup-server)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin="schemathesis-admin-token-0123456789"
# Rate limits off: ignored_auth sends wrong tokens on purpose, and the per-address limit would
# answer every later request 429 (the limits have tests of their own: backup-server's socket.rs).
BACKUP_SERVER_LISTEN=127.0.0.1:$port BACKUP_SERVER_DATABASE="${SCHEMATHESIS_DATABASE:-sqlite://$work/st.db}" BACKUP_SERVER_ADMIN_TOKEN=$admin \
  BACKUP_SERVER_LIMITS__AGENT_REQUESTS_PER_SECOND=0 BACKUP_SERVER_LIMITS__TENANT_REQUESTS_PER_SECOND=0 BACKUP_SERVER_LIMITS__AUTH_FAILURES_PER_MINUTE=0 RUST_LOG=warn "$root/target/debug/backup-server" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "$base/healthz" > /dev/null && break; sleep 0.1; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
tenant=$(curl -sf -X POST "$base/tenants" -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d '{"name":"fuzz"}')
tid=$(echo "$tenant" | json '["id"]'); tok=$(echo "$tenant" | json '["token"]')
agent=$(curl -sf -X POST "$base/agents" -H "Authorization: Bearer $tok" -H "X-Tenant-ID: $tid" -H 'content-type: application/json' -d '{"name":"fuzz","hostname":"fuzz"}')
aid=$(echo "$agent" | json '["id"]'); atok=$(echo "$agent" | json '["token"]')
curl -sf -X POST "$base/policies" -H "Authorization: Bearer $tok" -H "X-Tenant-ID: $tid" -H 'content-type: application/json' \
  -d "{\"name\":\"p\",\"agentId\":\"$aid\",\"kind\":\"backup\",\"schedule\":{\"every\":\"1h\"},\"paths\":[\"/srv\"],\"repository\":\"main\"}" > /dev/null
checks=not_a_server_error,ignored_auth,response_schema_conformance,status_code_conformance
common=(--checks "$checks" --max-examples "${MAX_EXAMPLES:-40}" --seed 1 --workers 1 --request-timeout 10 --suppress-health-check all --warnings off)
echo "== as a tenant"
"$st" run "$base/openapi.json" "${common[@]}" -H "Authorization: Bearer $tok" -H "X-Tenant-ID: $tid" --exclude-tag "agent protocol"
echo "== as an agent"
"$st" run "$base/openapi.json" "${common[@]}" -H "Authorization: Bearer $atok" --include-tag "agent protocol"
echo "== the server answered no 500 and never crashed"
kill -0 $server
