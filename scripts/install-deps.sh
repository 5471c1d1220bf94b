#!/bin/bash
# Installs every Debian package that building, testing and the demo need. Idempotent: packages
# that are already installed are left alone. Needs root (apt-get).
set -euo pipefail
PKGS=(
    build-essential pkg-config clang clang-format libclang-rt-14-dev
    libgrpc-dev libprotobuf-c-dev protobuf-c-compiler libssl-dev libcap-dev libcmocka-dev
    openssl python3 python3-grpcio curl openssh-server openssh-client
    qemu-system-x86 busybox-static cpio kmod xz-utils iproute2
)
need=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
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
