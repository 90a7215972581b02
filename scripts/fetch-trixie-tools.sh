#!/usr/bin/env bash
# Fetch Debian trixie's restic (0.18.x) and restic-rest-server (0.13.x) and unpack them
# into a cache folder, without installing anything system-wide and without touching the
# system's apt lists: apt runs with a private configuration whose state lives in the cache.
#
#   scripts/fetch-trixie-tools.sh [CACHE_DIR]
#   (default: ${BACKUP_TOOLS_DIR:-$HOME/.cache/restic-fleet/trixie})
#
# The trixie source is derived from the machine's own Debian source file (deb822): same
# URIs, Components and Signed-By, only the suites renamed. Signatures are checked as usual.
set -euo pipefail

cache=${1:-${BACKUP_TOOLS_DIR:-$HOME/.cache/restic-fleet/trixie}}
system_sources=${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
suite=trixie
want_restic='0.18.'
want_rest_server='0.13.'

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
root=$cache/root

# The rest-server binary's place inside the package: Debian ships it as
# /usr/bin/restic-rest-server (upstream calls it rest-server); found, not assumed.
find_rest_server() {
  find "$root" \( -name restic-rest-server -o -name rest-server \) -type f -perm -u+x 2>/dev/null | head -n1
}

report() {
  local rs
  rs=$(find_rest_server)
  echo "binaries: $(dirname "$root/usr/bin/restic")"
  echo "restic:      $root/usr/bin/restic ($("$root/usr/bin/restic" version))"
  echo "rest-server: $rs ($("$rs" --version 2>&1 | head -n1))"
}

# Idempotent: nothing to do when both binaries are already unpacked.
if [[ -x $root/usr/bin/restic && -n $(find_rest_server) ]]; then
  echo "already unpacked in $root"
  report
  exit 0
fi

[[ -r $system_sources ]] || { echo "no Debian source file at $system_sources" >&2; exit 1; }

# The release the machine runs (bookworm, ...): its name is replaced in every suite, so
# bookworm -> trixie, bookworm-updates -> trixie-updates, bookworm-security -> trixie-security.
current=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n $current ]] || { echo "cannot tell this machine's Debian codename" >&2; exit 1; }

etc=$cache/etc
mkdir -p "$etc/preferences.d" "$cache/lists/partial" "$cache/cache/archives/partial" "$cache/debs" "$root"

# deb822 rewrite: only binary stanzas ("deb", no "deb-src"), suites renamed, the rest kept.
awk -v cur="$current" -v new="$suite" '
  /^[Tt]ypes:/ {
    n = split(substr($0, index($0, ":") + 1), t, " "); out = ""
    for (i = 1; i <= n; i++) if (t[i] == "deb") out = "deb"
    print "Types: " (out == "" ? "none" : out); next
  }
  /^[Ss]uites:/ {
    n = split(substr($0, index($0, ":") + 1), s, " "); line = "Suites:"
    for (i = 1; i <= n; i++) { x = s[i]; if (index(x, cur) == 1) x = new substr(x, length(cur) + 1); line = line " " x }
    print line; next
  }
  { print }
' "$system_sources" | awk 'BEGIN { RS = ""; ORS = "\n\n" } !/Types: none/' > "$etc/trixie.sources"

# Every keyring the source names must hold trixie's archive key; if one does not (an old
# debian-archive-keyring), use the trixie key files that exist on the machine instead.
has_trixie_key() {
  gpg --no-default-keyring --keyring "$1" --list-keys --with-colons 2>/dev/null |
    grep -q '^uid:.*Archive Automatic Signing Key (13/trixie)'
}
trixie_keys=$(ls /usr/share/keyrings/debian-archive-trixie-*.gpg 2>/dev/null | tr '\n' ' ' | sed 's/ $//' || true)
while read -r keyring; do
  [[ -n $keyring ]] || continue
  if has_trixie_key "$keyring"; then
    echo "keyring $keyring holds trixie's keys"
  elif [[ -n $trixie_keys ]]; then
    echo "keyring $keyring lacks trixie's keys: using $trixie_keys"
    sed -i "s|^Signed-By: *$keyring\$|Signed-By: $trixie_keys|" "$etc/trixie.sources"
  else
    echo "keyring $keyring lacks trixie's keys and no trixie key file exists" >&2
    exit 1
  fi
done < <(sed -n 's/^[Ss]igned-[Bb]y: *\(\/[^ ]*\)$/\1/p' "$etc/trixie.sources" | sort -u)

echo "trixie source ($etc/trixie.sources):"
sed 's/^/  /' "$etc/trixie.sources"

# Private apt: its own source list, preferences, lists and caches; the system's stay as they are.
apt_opts=(
  -o "Dir::Etc::sourcelist=$etc/trixie.sources"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::Etc::preferences=$etc/preferences"
  -o "Dir::Etc::preferencesparts=$etc/preferences.d"
  -o "Dir::State::Lists=$cache/lists"
  -o "Dir::Cache=$cache/cache"
  -o "Dir::Cache::archives=$cache/cache/archives"
  -o "APT::Get::List-Cleanup=0"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
)
# As root, apt would fall back to downloading unsandboxed anyway (its _apt user cannot
# enter a cache under /root); say so up front instead of printing a warning per file.
if [[ $(id -u) -eq 0 ]] && ! su -s /bin/sh _apt -c "test -w '$cache/lists/partial'" 2>/dev/null; then
  apt_opts+=(-o "APT::Sandbox::User=root")
fi
: > "$etc/preferences"

apt-get "${apt_opts[@]}" update
(cd "$cache/debs" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download restic restic-rest-server)

check_version() { # package file, wanted prefix
  local v
  v=$(dpkg-deb -f "$1" Version)
  [[ ${v#*:} == "$2"* ]] || { echo "$(basename "$1"): version $v, expected $2x" >&2; exit 1; }
  echo "$(basename "$1"): $v"
}
check_version "$(ls "$cache"/debs/restic_*.deb)" "$want_restic"
check_version "$(ls "$cache"/debs/restic-rest-server_*.deb)" "$want_rest_server"

for deb in "$cache"/debs/*.deb; do
  dpkg-deb -x "$deb" "$root"
done

report
