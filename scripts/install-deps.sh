#!/bin/bash
# Installs every Debian package listed in scripts/deps.txt that is missing. Idempotent: installed
# packages are left alone, and nothing runs when none is missing. Needs root (apt-get).
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t need < <(./check-deps.sh --list-missing)
if ((${#need[@]} == 0)); then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install: ${need[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
