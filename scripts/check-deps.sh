#!/bin/bash
# Exits 0 when every build and test dependency is present, else names what is missing.
missing=()
for pc in grpc libprotobuf-c openssl libcap cmocka; do
    pkg-config --exists "$pc" || missing+=("pkg-config:$pc")
done
for cmd in protoc-c openssl gcc clang-format python3 qemu-system-x86_64 busybox curl; do
    command -v "$cmd" >/dev/null || missing+=("command:$cmd")
done
/usr/bin/python3 -c 'import grpc' 2>/dev/null || missing+=("python3-grpcio")
[ -e /usr/lib/clang/14/lib/linux/libclang_rt.fuzzer-x86_64.a ] || missing+=("libclang-rt-14-dev")
if ((${#missing[@]})); then
    echo "missing: ${missing[*]}" >&2
    exit 1
fi
