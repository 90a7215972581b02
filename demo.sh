#!/usr/bin/env bash
# The Quickstart demo: builds the server, the agent and the demo, makes sure restic is there,
# then runs a server and an agent doing real restic backups on this machine (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v restic >/dev/null 2>&1; then
    echo "restic is not installed; the demo runs the real restic."
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y restic || { apt-get update && apt-get install -y restic; }
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
        sudo apt-get install -y restic || { sudo apt-get update && sudo apt-get install -y restic; }
    else
        echo "Install it first, then run ./demo.sh again:"
        echo "  Debian/Ubuntu: sudo apt-get install restic"
        echo "  Fedora: sudo dnf install restic    macOS: brew install restic"
        echo "  or a release binary from https://github.com/restic/restic/releases"
        exit 1
    fi
fi

echo "Building (the first build takes a few minutes)..."
cargo build --release --quiet -p backup-server -p backup-agent -p backup-demo
exec ./target/release/backup-demo
