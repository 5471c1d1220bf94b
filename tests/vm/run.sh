#!/bin/bash
# vm tier: boots Debian's stock kernel under qemu (TCG) with a busybox initramfs that carries the
# freshly built binaries, mounts cgroup2 and runs tests/vm/scenarios/*.sh against the real
# jobworker-server and jobctl. See tests/vm/README.md.
#
# Environment:
#   BUILD            build dir holding bin/ (and testbin/), default build/release
#   VM_SCENARIOS     comma-separated scenario names to run (default: all), e.g. "cpu,memory"
#   VM_TIMEOUT       seconds before qemu is killed (default 300)
#   VM_SHELL=1       interactive: run the scenarios, then give a shell on the serial console
#   VM_KERNEL_REFRESH=1  download the current linux-image-amd64 kernel again
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin # depmod

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build/release}
VMROOT=build/vm
CACHE=$VMROOT/cache
WORK=$VMROOT/$(basename "$BUILD")
VM_TIMEOUT=${VM_TIMEOUT:-300}
VM_SCENARIOS=${VM_SCENARIOS:-}
VM_SHELL=${VM_SHELL:-0}
# Kernel modules the guest loads, with their parameters: brd gives /dev/ram0 (64 MiB), a whole
# disk that io.max accepts.
MODULES=("brd rd_nr=1 rd_size=65536")
T0=$(date +%s.%N)

die() {
    echo "vm: FATAL: $*" >&2
    echo "vm: 0 passed, 1 failed"
    exit 1
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- 1. host tools -------------------------------------------------------------------------
need_tools() {
    local missing=() t
    for t in qemu-system-x86_64 busybox cpio depmod dpkg-deb apt-get apt-cache openssl ldd xz; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    echo "${missing[*]}"
}
lacking=$(need_tools)
if [ -n "$lacking" ]; then
    echo "vm: missing host tools: $lacking; running scripts/install-deps.sh"
    scripts/install-deps.sh || die "scripts/install-deps.sh failed; install qemu-system-x86 busybox-static cpio kmod xz-utils openssl by hand"
    lacking=$(need_tools)
    [ -z "$lacking" ] || die "still missing after install-deps: $lacking (need qemu-system-x86 busybox-static cpio kmod xz-utils openssl)"
fi
[ "$(dpkg --print-architecture)" = amd64 ] || die "the vm tier needs an amd64 host (found $(dpkg --print-architecture))"

# ---- 2. built binaries -----------------------------------------------------------------------
BINS=(jobworker-server jobctl job-init)
for b in "${BINS[@]}"; do
    [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b not built (run make BUILD=$BUILD all)"
done

# ---- 3. kernel, cached under build/vm/cache ---------------------------------------------------
mkdir -p "$CACHE"
KDIR=
if [ "${VM_KERNEL_REFRESH:-0}" != 1 ]; then
    KDIR=$(for d in "$CACHE"/linux-image-*; do
        if [ -e "$d/.ok" ]; then echo "$d"; fi; done | sort -V | tail -n 1)
fi
if [ -z "$KDIR" ]; then
    kpkg() { apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'; }
    pkg=$(kpkg)
    if [ -z "$pkg" ]; then
        echo "vm: apt lists do not know linux-image-amd64 yet; running apt-get update"
        apt-get update -qq || die "apt-get update failed (needs root and the Debian mirror)"
        pkg=$(kpkg)
    fi
    [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 to a kernel package (apt-cache depends linux-image-amd64)"
    echo "vm: downloading $pkg (once; cached in $CACHE)"
    dl=$CACHE/dl
    rm -rf "$dl" && mkdir -p "$dl"
    (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
        die "apt-get download $pkg failed"
    deb=$(ls "$dl"/*.deb) || die "apt-get download $pkg produced no .deb"
    tmp=$CACHE/$pkg.tmp
    rm -rf "$tmp"
    dpkg -x "$deb" "$tmp" || die "dpkg -x $deb failed"
    kver=$(find "$tmp/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
    if [ -z "$kver" ] || [ ! -e "$tmp/boot/vmlinuz-$kver" ]; then
        die "$pkg has no boot/vmlinuz or lib/modules"
    fi
    depmod -b "$tmp" "$kver" || die "depmod -b $tmp $kver failed"
    touch "$tmp/.ok"
    rm -rf "${CACHE:?}/$pkg" "$dl"
    mv "$tmp" "$CACHE/$pkg"
    KDIR=$CACHE/$pkg
fi
KVER=$(find "$KDIR/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
VMLINUZ=$KDIR/boot/vmlinuz-$KVER
[ -r "$VMLINUZ" ] || die "no kernel at $VMLINUZ (remove $KDIR and retry)"

# ---- 4. initramfs ----------------------------------------------------------------------------
T_IR=$(date +%s.%N)
rm -rf "$WORK"
mkdir -p "$WORK"
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var/lib/jobworker} \
    "$R"/opt/jobworker/{bin,testbin,certs} "$R"/jw/scenarios "$R"/lib/modules

# busybox and its applets at their usual paths.
cp "$(command -v busybox)" "$R/bin/busybox"
while read -r applet; do
    [ -e "$R/$applet" ] || [ -L "$R/$applet" ] || ln -s /bin/busybox "$R/$applet"
done < <("$R/bin/busybox" --list-full)
# busybox init is PID 1: it reaps orphans (killed job processes must not linger as zombies).
ln -s bin/busybox "$R/init"

elfs=("$R/bin/busybox")
for b in "${BINS[@]}"; do
    cp "$BUILD/bin/$b" "$R/opt/jobworker/bin/"
    elfs+=("$R/opt/jobworker/bin/$b")
done
if [ -d "$BUILD/testbin" ]; then
    for b in "$BUILD"/testbin/*; do
        if [ ! -f "$b" ] || [ ! -x "$b" ]; then continue; fi
        cp "$b" "$R/opt/jobworker/testbin/"
        elfs+=("$R/opt/jobworker/testbin/$(basename "$b")")
    done
fi
if command -v strip >/dev/null; then
    strip --strip-debug "$R"/opt/jobworker/bin/* "$R"/opt/jobworker/testbin/* 2>/dev/null || true
fi

# Every shared library ldd names, at the path it names, plus the dynamic loader.
: >"$WORK/libs.txt"
for e in "${elfs[@]}"; do
    if ! out=$(ldd "$e" 2>&1); then
        grep -q 'not a dynamic executable' <<<"$out" && continue
        die "ldd $e failed: $out"
    fi
    if grep -q 'not found' <<<"$out"; then
        die "ldd $e: missing libraries: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
    fi
    awk '/=> \// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out" >>"$WORK/libs.txt"
done
while read -r lib; do
    mkdir -p "$R$(dirname "$lib")"
    cp -L "$lib" "$R$lib"
done < <(sort -u "$WORK/libs.txt")

# Kernel modules with their dependencies, decompressed, in load order.
MODDIR=$KDIR/lib/modules/$KVER
modpath() { awk -F: -v m="$1" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n);
    gsub(/-/, "_", n); mm = m; gsub(/-/, "_", mm); if (n == mm) { print $1; exit } }' "$MODDIR/modules.dep"; }
moddeps() { awk -F: -v p="$1" '$1 == p { print $2; exit }' "$MODDIR/modules.dep"; }
load_list=()
add_module() { # relpath
    local rel=$1 d name
    for d in $(moddeps "$rel"); do add_module "$d"; done
    name=$(basename "$rel"); name=${name%%.ko*}.ko
    [ -e "$R/lib/modules/$name" ] && return 0
    case "$rel" in
    *.ko.xz) xz -dc "$MODDIR/$rel" >"$R/lib/modules/$name" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$rel" >"$R/lib/modules/$name" ;;
    *.ko.gz) gzip -dc "$MODDIR/$rel" >"$R/lib/modules/$name" ;;
    *) cp "$MODDIR/$rel" "$R/lib/modules/$name" ;;
    esac || die "cannot unpack module $rel"
    load_list+=("$name")
}
: >"$R/lib/modules/load.list"
for spec in "${MODULES[@]}"; do
    m=${spec%% *}
    params=${spec#"$m"}
    rel=$(modpath "$m")
    [ -n "$rel" ] || die "module $m not found in $MODDIR/modules.dep"
    load_list=()
    add_module "$rel"
    for n in "${load_list[@]}"; do
        if [ "$n" = "$(basename "${rel%%.ko*}").ko" ]; then
            echo "$n$params" >>"$R/lib/modules/load.list"
        else
            echo "$n" >>"$R/lib/modules/load.list"
        fi
    done
done

# Minimal /etc: names for root and nobody, localhost, and busybox init's table.
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$R/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$R/etc/hosts"
: >"$R/etc/resolv.conf"
for f in /etc/ssl/openssl.cnf /usr/lib/ssl/openssl.cnf; do
    if [ -e "$f" ]; then mkdir -p "$R$(dirname "$f")"; cp -L "$f" "$R$f"; fi
done
cat >"$R/etc/inittab" <<'EOF'
::sysinit:/jw/init.sh
::wait:/bin/poweroff -f
EOF

# Fresh certificates for this run.
CERTS=$WORK/certs
mkdir -p "$CERTS"
scripts/gen-certs.sh "$CERTS" >"$WORK/gen-certs.log" 2>&1 ||
    die "scripts/gen-certs.sh $CERTS failed: $(tail -n 5 "$WORK/gen-certs.log")"
for f in ca.crt server.crt server.key admin.crt admin.key viewer.crt viewer.key; do
    [ -s "$CERTS/$f" ] || die "certificate generation did not produce $f"
    cp "$CERTS/$f" "$R/opt/jobworker/certs/"
done

cp tests/vm/init.sh tests/vm/lib.sh "$R/jw/"
cp tests/vm/scenarios/*.sh "$R/jw/scenarios/"
chmod +x "$R"/jw/*.sh "$R"/jw/scenarios/*.sh

(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$WORK/initramfs.cpio"
IR_MB=$(du -m "$WORK/initramfs.cpio" | cut -f1)
echo "vm: kernel $KVER, initramfs ${IR_MB} MiB built in $(elapsed "$T_IR")s ($BUILD)"

# ---- 5. boot ---------------------------------------------------------------------------------
# Scenario names this run must report on.
expected=()
for f in tests/vm/scenarios/*.sh; do
    n=$(basename "$f" .sh)
    n=${n#[0-9][0-9]-}
    if [ -z "$VM_SCENARIOS" ] || [[ ",$VM_SCENARIOS," == *",$n,"* ]]; then expected+=("$n"); fi
done
((${#expected[@]})) || die "VM_SCENARIOS='$VM_SCENARIOS' selects no scenario (have: $(ls tests/vm/scenarios))"

APPEND="console=ttyS0 panic=-1 loglevel=3 oops=panic jw.scenarios=${VM_SCENARIOS:-all} jw.shell=$VM_SHELL"
CONSOLE=$WORK/console.log
RESULTS=$WORK/results.log
: >"$CONSOLE"
: >"$RESULTS"
QEMU=(qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nodefaults -no-reboot -display none
    -kernel "$VMLINUZ" -initrd "$WORK/initramfs.cpio" -append "$APPEND")

if [ "$VM_SHELL" = 1 ]; then
    echo "vm: interactive; results also go to $RESULTS; 'poweroff -f' or Ctrl-A X to leave"
    exec "${QEMU[@]}" -serial mon:stdio -serial "file:$RESULTS"
fi

echo "vm: booting (tcg, 2 vCPUs, 1024 MiB, timeout ${VM_TIMEOUT}s); console log: $CONSOLE"
T_BOOT=$(date +%s.%N)
timeout -k 5 "$VM_TIMEOUT" "${QEMU[@]}" -serial "file:$CONSOLE" -serial "file:$RESULTS" </dev/null &
qpid=$!
# timeout(1) runs in its own process group: an interrupted run must not leave qemu behind.
trap 'kill $qpid 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM
# Print results as they arrive.
tail -n +1 -s 0.2 -f --pid=$qpid "$RESULTS" 2>/dev/null | while IFS= read -r line; do
    line=${line%$'\r'}
    case "$line" in
    "VMTEST-DIAG "*) echo "      | ${line#VMTEST-DIAG }" ;;
    "VMTEST-BEGIN "*) ;;
    "VMTEST-INFO "*) echo "vm: ${line#VMTEST-INFO }" ;;
    VMTEST*) echo "$line" ;;
    esac
done
qrc=0
wait $qpid || qrc=$?
BOOT_S=$(elapsed "$T_BOOT")

# ---- 6. verdict (from the whole results file, not the live view) ------------------------------
tr -d '\r' <"$RESULTS" >"$RESULTS.clean"
npass=$(grep -c '^VMTEST [^ ]* PASS' "$RESULTS.clean" || true)
nfail=$(grep -c '^VMTEST [^ ]* FAIL' "$RESULTS.clean" || true)
problems=()
if ((qrc == 124 || qrc == 137)); then
    last=$(grep '^VMTEST-BEGIN ' "$RESULTS.clean" | tail -n 1 | cut -d' ' -f2)
    problems+=("qemu killed after ${VM_TIMEOUT}s timeout (last scenario started: ${last:-none})")
elif ((qrc != 0)); then
    problems+=("qemu exited with status $qrc")
fi
if grep -q 'Kernel panic' "$CONSOLE"; then
    problems+=("kernel panic: $(grep -m1 'Kernel panic' "$CONSOLE" | tr -d '\r')")
fi
grep -q '^VMTEST-DONE' "$RESULTS.clean" || problems+=("no VMTEST-DONE from the guest")
for n in "${expected[@]}"; do
    grep -Eq "^VMTEST $n(\.[^ ]*)? (PASS|FAIL)" "$RESULTS.clean" || problems+=("scenario $n reported nothing")
done
if ! ((npass + nfail)); then
    problems+=("no results at all")
fi

boot=$(sed -n 's/^VMTEST-INFO guest init after \([0-9.]*\)s.*/\1/p' "$RESULTS.clean" | head -n 1)
echo "vm: guest reached init after ${boot:-?}s (guest clock); qemu ran ${BOOT_S}s; tier total $(elapsed "$T0")s"
if ((${#problems[@]})); then
    for p in "${problems[@]}"; do echo "vm: FAIL: $p" >&2; done
    echo "vm: last console lines ($CONSOLE):" >&2
    tail -n 40 "$CONSOLE" | tr -d '\r' | sed 's/^/      | /' >&2
    nfail=$((nfail + ${#problems[@]}))
fi
echo "vm: $npass passed, $nfail failed"
((nfail == 0))
