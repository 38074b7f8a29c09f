#!/usr/bin/env bash
# tests/vm/smoke.sh - guest-side sanity check of the test VM.
# Run with:  bash tests/vm/run.sh tests/vm/smoke.sh
# Checks ublk_drv (/dev/ublk-control), io_uring (via fio), fio, mkfs.ext4,
# devtmpfs, writable /tmp and $VM_OUT, and modprobe of guest modules.
set -euo pipefail

fails=0
check() {   # check DESCRIPTION COMMAND...
    local what=$1; shift
    if out=$("$@" 2>&1); then
        echo "ok   - $what"
    else
        echo "FAIL - $what"
        printf '%s\n' "$out" | sed 's/^/       /'
        fails=$((fails + 1))
    fi
}

echo "kernel: $(uname -r) ($(uname -v))"
echo "cwd: $(pwd)   VM_OUT: ${VM_OUT:-unset}   nproc: $(nproc)"
check "running as root" test "$(id -u)" = 0
check "inside the VM (VM_GUEST=1)" test "${VM_GUEST:-}" = 1
check "ublk_drv loaded" grep -qw '^ublk_drv' /proc/modules
check "/dev/ublk-control exists" test -c /dev/ublk-control
check "ublk_drv parameters visible" ls /sys/module/ublk_drv/parameters
check "io_uring not disabled by sysctl" \
    sh -c '[ ! -e /proc/sys/kernel/io_uring_disabled ] || [ "$(cat /proc/sys/kernel/io_uring_disabled)" = 0 ]'
check "/tmp is writable tmpfs" sh -c 'findmnt -no FSTYPE /tmp | grep -qx tmpfs && touch /tmp/.w'
check "root overlay is writable" sh -c 'touch /etc/.vm-write-test && rm /etc/.vm-write-test'
check "\$VM_OUT is writable" sh -c 'echo smoke > "$VM_OUT/smoke.txt"'
check "fio runs" fio --version
# A short io_uring job on a tmpfs file proves io_uring_setup/enter work.
check "fio with ioengine=io_uring" \
    fio --name=uring --filename=/tmp/fio.dat --size=4M --rw=randrw --bs=4k \
        --ioengine=io_uring --iodepth=8 --direct=0 --runtime=2 --time_based=0 \
        --output-format=terse
check "mkfs.ext4 + e2fsck on an image" sh -c \
    'truncate -s 64M /tmp/ext4.img && mkfs.ext4 -q -F /tmp/ext4.img && e2fsck -fn /tmp/ext4.img'
check "modprobe from the guest kernel's modules (loop)" modprobe loop
check "loop mount of the ext4 image" sh -c \
    'mkdir -p /mnt/e && mount -o loop /tmp/ext4.img /mnt/e && echo hi > /mnt/e/x && umount /mnt/e'
check "modprobe dm-mod" modprobe dm-mod

# A real ublk control command over io_uring (URING_CMD, SQE128), if a C
# compiler is around (it is built here, in the guest, to stay self-contained).
if command -v cc >/dev/null; then
    check "build ublk-features.c" cc -O2 -Wall -o /tmp/ublk-features tests/vm/ublk-features.c
    check "UBLK_U_CMD_GET_FEATURES via io_uring" /tmp/ublk-features
    [ -x /tmp/ublk-features ] && /tmp/ublk-features || true
else
    echo "skip - UBLK_U_CMD_GET_FEATURES (no C compiler)"
fi

if [ "$fails" -ne 0 ]; then
    echo "smoke: $fails check(s) FAILED"
    exit 1
fi
echo "smoke: all checks passed"
