#!/usr/bin/env bash
# Record real restic output as test fixtures: for each case <name>.stdout, <name>.stderr and
# <name>.exit (the exit code and a newline), in a scratch repository made in a temp dir.
#
#   scripts/record-restic-fixtures.sh <restic-binary> <out-dir> [rest-server-binary]
#
# A case whose files already exist in <out-dir> is left alone (RECORD_OVERWRITE=1 records it
# again); RECORD_CASES='<extended regex>' keeps only the cases whose name matches (all still
# run). With a rest-server binary (e.g. Debian's restic-rest-server), the rest_* cases and
# forget_prune_append_only are recorded through it on a loopback port as well.
# Snapshot ids, times and the scratch path differ from run to run.
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 <restic-binary> <out-dir> [rest-server-binary]" >&2; exit 2; }
restic_bin=$(command -v "$1" || true)
[[ -n $restic_bin ]] || { echo "no restic at $1" >&2; exit 2; }
restic_bin=$(readlink -f "$restic_bin")
rest_server=${3:+$(readlink -f "$3")}
mkdir -p "$2"
out=$(cd "$2" && pwd)

scratch=$(mktemp -d /tmp/restic-fixtures.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

# Only the password file and the cache in the scratch dir: nothing from the caller's environment.
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD RESTIC_PASSWORD_COMMAND RESTIC_HOST
export RESTIC_PASSWORD_FILE=$scratch/pw RESTIC_CACHE_DIR=$scratch/cache
printf 'fixture-password\n' > "$scratch/pw"
printf 'not-the-password\n' > "$scratch/wrong-pw"
cd "$scratch"

minor=$("$restic_bin" version | sed -nE 's/^restic 0\.([0-9]+)\..*/\1/p')
echo "recording $("$restic_bin" version) into $out (scratch $scratch)"

r() { "$restic_bin" "$@"; }

# rec NAME COMMAND...: run it (always: later cases build on earlier ones), and keep its
# stdout, stderr and exit code unless the case is not selected or already recorded.
rec() {
  local name=$1 code
  shift
  set +e
  "$@" > "$scratch/case.stdout" 2> "$scratch/case.stderr"
  code=$?
  set -e
  if [[ -n ${RECORD_CASES:-} ]] && ! [[ $name =~ $RECORD_CASES ]]; then
    return 0
  fi
  if [[ ${RECORD_OVERWRITE:-0} != 1 ]] &&
    [[ -e $out/$name.stdout || -e $out/$name.stderr || -e $out/$name.exit ]]; then
    echo "  keep   $name (already recorded; exit now $code)"
    return 0
  fi
  cp "$scratch/case.stdout" "$out/$name.stdout"
  cp "$scratch/case.stderr" "$out/$name.stderr"
  printf '%s\n' "$code" > "$out/$name.exit"
  echo "  record $name: exit $code"
}

# The backed-up tree: files in nested dirs, a symlink and an empty dir, with fixed content,
# modes and mtimes.
data=$scratch/data
mkdir -p "$data/docs/deep/deeper" "$data/empty"
printf 'hello fixture\n' > "$data/hello.txt"
printf '# readme\n' > "$data/docs/readme.md"
printf 'notes\n' > "$data/docs/deep/notes.txt"
seq 1 1000 > "$data/docs/deep/deeper/numbers.txt"
ln -s docs/readme.md "$data/link-to-readme"
find "$data" -type f -exec chmod 0644 {} + && find "$data" -type d -exec chmod 0755 {} +
find "$data" -depth -exec touch -h -d '2024-01-02 03:04:05 UTC' {} +

repo=$scratch/repo
backup=(backup --json --host=h1 --tag=policy:p1 --)

rec version r version
rec init r -r "$repo" init
rec backup r -r "$repo" "${backup[@]}" "$data"
rec backup_again r -r "$repo" "${backup[@]}" "$data"
rec backup_missing_path r -r "$repo" "${backup[@]}" "$data" "$scratch/does-not-exist"
rec snapshots r -r "$repo" snapshots --json --no-lock --host=h1
snap=$(r -r "$repo" snapshots --json latest | grep -o '"id":"[0-9a-f]\{64\}"' | head -n1 | cut -d'"' -f4)

# ls: the whole snapshot, one directory, the same directory with --recursive.
rec ls_json_root r -r "$repo" ls --json "$snap"
rec ls_json_dir r -r "$repo" ls --json "$snap" "$data/docs"
rec ls_json_recursive r -r "$repo" ls --json --recursive "$snap" "$data/docs"

# restore: JSON, one included file, dry run (0.18 has it, older ones refuse the flag), plain.
rec restore_json r -r "$repo" restore --json "$snap" --target "$scratch/t-json"
rec restore_json_again r -r "$repo" restore --json "$snap" --target "$scratch/t-json"
rec restore_include r -r "$repo" restore --json "$snap" --target "$scratch/t-include" --include "$data/docs/readme.md"
rec restore_dry_run r -r "$repo" restore --json --dry-run "$snap" --target "$scratch/t-dry"
rec restore_dry_run_verbose r -r "$repo" restore --json --dry-run -vv "$snap" --target "$scratch/t-dry"
rec restore_plain r -r "$repo" restore "$snap" --target "$scratch/t-plain"
rec restore_no_snapshot r -r "$repo" restore --json 0123abcd --target "$scratch/t-none"

rec check r -r "$repo" check
rec wrong_password r -r "$repo" --password-file "$scratch/wrong-pw" "${backup[@]}" "$data"
rec no_repository r -r "$scratch/nothing-here" snapshots --json --no-lock --host=h1
rec backup_no_repository r -r "$scratch/nothing-here" "${backup[@]}" "$data"

# A file the backup cannot open. chmod 000 stops no root process that keeps
# CAP_DAC_OVERRIDE, so as root the backup runs with those capabilities dropped.
mkdir -p "$scratch/np/data"
printf 'ok\n' > "$scratch/np/data/ok.txt"
printf 'secret\n' > "$scratch/np/data/secret.txt"
chmod 000 "$scratch/np/data/secret.txt"
no_dac=()
if [[ $(id -u) -eq 0 ]]; then
  if setpriv --bounding-set -dac_override,-dac_read_search true 2>/dev/null; then
    no_dac=(setpriv --bounding-set -dac_override,-dac_read_search)
  else
    echo "  skip   backup_partial: cannot drop CAP_DAC_OVERRIDE here"
  fi
fi
if [[ $(id -u) -ne 0 || ${#no_dac[@]} -gt 0 ]]; then
  rec backup_partial "${no_dac[@]}" "$restic_bin" -r "$repo" "${backup[@]}" "$scratch/np/data"
fi

# Locks. `key passwd` takes an exclusive lock, then waits for the new password on stdin: a
# FIFO that is open but never written keeps it waiting, so the lock is held for as long as needed.
mkfifo "$scratch/hold"
exec 3<> "$scratch/hold"
"$restic_bin" -r "$repo" key passwd < "$scratch/hold" > /dev/null 2>&1 & # not via r(): $! must be restic
holder=$!
pids+=("$holder")
for _ in $(seq 100); do
  [[ -n $(ls "$repo/locks") ]] && break
  sleep 0.1
done
[[ -n $(ls "$repo/locks") ]] || { echo "the lock holder made no lock" >&2; exit 1; }
rec backup_locked r -r "$repo" "${backup[@]}" "$data"
if [[ $minor -ge 16 ]]; then
  rec backup_locked_retry r -r "$repo" backup --json --host=h1 --tag=policy:p1 --retry-lock=3s -- "$data"
fi
rec unlock_live_lock r -r "$repo" unlock
rec backup_still_locked r -r "$repo" "${backup[@]}" "$data"
{ kill -9 "$holder" && wait "$holder"; } 2>/dev/null || true # its lock stays behind, stale
exec 3>&-
rec unlock_stale r -r "$repo" unlock
rec unlock r -r "$repo" unlock
rec forget_prune r -r "$repo" forget --prune --host=h1 --keep-last 1

# Nothing listens on port 9 (discard): newer restic retries for minutes, so this is cut at 20s
# (SIGTERM; the exit recorded is restic's own answer to it).
rec backup_unreachable timeout --preserve-status 20 "$restic_bin" -r rest:http://127.0.0.1:9/ "${backup[@]}" "$data"

# Through rest-server on a loopback port: first plain (--no-auth), then --append-only.
if [[ -n $rest_server ]]; then
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  start_server() { # extra flags...
    port=$(free_port)
    "$rest_server" --listen "127.0.0.1:$port" --no-auth --path "$scratch/rest" "$@" > "$scratch/rest-server.log" 2>&1 &
    server=$!
    pids+=("$server")
    for _ in $(seq 100); do
      (exec 4<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
      sleep 0.1
    done
    echo "rest-server did not listen on $port" >&2
    exit 1
  }
  stop_server() { kill "$server"; wait "$server" 2>/dev/null || true; }

  start_server
  url=rest:http://127.0.0.1:$port/repo
  rec rest_init r -r "$url" init
  rec rest_backup r -r "$url" "${backup[@]}" "$data"
  rsnap=$(r -r "$url" snapshots --json latest | grep -o '"id":"[0-9a-f]\{64\}"' | head -n1 | cut -d'"' -f4)
  rec rest_restore r -r "$url" restore --json "$rsnap" --target "$scratch/t-rest"
  stop_server

  start_server --append-only
  url=rest:http://127.0.0.1:$port/repo
  rec rest_append_only_backup r -r "$url" "${backup[@]}" "$data"
  rec forget_prune_append_only timeout --preserve-status 120 "$restic_bin" -r "$url" forget --prune --host=h1 --keep-last 1
  stop_server
fi
echo "done: $out"
