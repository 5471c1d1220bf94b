#!/bin/bash
# Exits 0 when every package of scripts/deps.txt is installed, else names the missing ones.
# --list-missing prints them one per line (for install-deps.sh) and exits 0.
cd "$(dirname "$0")" || exit 1
missing=()
# shellcheck disable=SC2013 # a line may name several packages: split into words on purpose
for p in $(grep -v '^#' deps.txt); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${1:-}" = --list-missing ]; then
    printf '%s\n' "${missing[@]}" | grep -v '^$'
    exit 0
fi
if ((${#missing[@]})); then
    echo "missing Debian packages: ${missing[*]} (run scripts/install-deps.sh as root)" >&2
    exit 1
fi
