#!/bin/sh
# shellcheck source=../lib.sh disable=SC2034,SC2086,SC2046,SC2119 # SCENARIO is read by lib.sh; pid lists split on purpose
# env: the guest itself is fit for the other scenarios: cgroup2 with every controller, /dev/ram0
# accepted by io.max, and the copied binaries load (every shared library made it in).
. /jw/lib.sh
SCENARIO="env"

ctl=$(cat $CG/cgroup.controllers 2>/dev/null)
sub=$(cat $CG/cgroup.subtree_control 2>/dev/null)
if ! grep -q ' cgroup2 ' /proc/mounts; then
    fail env.cgroup2 "/sys/fs/cgroup is not a cgroup2 mount: $(grep cgroup /proc/mounts)"
else
    miss=
    for c in cpu memory io pids; do
        case " $sub " in *" $c "*) ;; *) miss="$miss $c" ;; esac
    done
    if [ -n "$miss" ]; then
        fail env.cgroup2 "controllers not enabled at the root:$miss (available: $ctl)"
    else
        pass env.cgroup2 "controllers: $sub"
    fi
fi

if [ ! -b /dev/ram0 ]; then
    fail env.io "/dev/ram0 missing (brd not loaded?): $(echo /dev/*)"
else
    dev=$(cat /sys/block/ram0/dev)
    t=$CG/vmtest-env
    mkdir -p $t
    if ! echo "$dev wbps=4194304" >$t/io.max; then
        fail env.io "io.max rejects '$dev wbps=4194304'"
    elif ! grep -q "^$dev rbps=max wbps=4194304 " $t/io.max; then
        fail env.io "io.max reads back '$(cat $t/io.max)'"
    else
        pass env.io "/dev/ram0 is $dev, $(($(cat /sys/block/ram0/size) / 2048)) MiB; io.max: $(cat $t/io.max)"
    fi
    rmdir $t
fi

# The dynamic loader resolves each binary's libraries as it will at run time.
LDSO=$(ls /lib64/ld-linux-x86-64.so.2 2>/dev/null)
bad="" n=0
for b in "$BIN"/* "$TESTBIN"/*; do
    [ -x "$b" ] || continue
    n=$((n + 1))
    [ -n "$LDSO" ] || break
    out=$("$LDSO" --list "$b" 2>&1)
    case "$out" in
    *"not found"*) bad="$bad $(basename "$b"): $(echo "$out" | grep 'not found' | tr '\n' ' ');" ;;
    esac
done
if [ -z "$LDSO" ]; then
    fail env.binaries "no dynamic loader at /lib64/ld-linux-x86-64.so.2"
elif [ -n "$bad" ]; then
    fail env.binaries "missing shared libraries:$bad"
else
    pass env.binaries "$n binaries resolve all their libraries; $(find /lib /lib64 /usr/lib -name '*.so*' 2>/dev/null | wc -l) shared libraries in the initramfs"
fi
