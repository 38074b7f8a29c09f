#!/usr/bin/env bash
# ublk_target/tests/vm_memdisk.sh [MEMDISK] - end-to-end test of ublk_target in the VM.
#
# Run on the host with:
#   CARGO_TARGET_DIR=/tmp/target-ublk cargo build -p ublk_target --example memdisk
#   bash tests/vm/run.sh ublk_target/tests/vm_memdisk.sh
# MEMDISK defaults to the binary built above, which the guest sees under /run/host/tmp.
#
# Checks, on real /dev/ublkbN devices served by examples/memdisk:
#   1. geometry, queues and discard/write-zeroes limits in sysfs;
#   2. fio --verify=crc32c: randwrite 4k (2 jobs) and seq 1M with fsync, O_DIRECT, QD 32;
#   3. blkdiscard and blkdiscard -z read back zeroes exactly where expected;
#   4. a 4096-byte logical block device;
#   5. SIGTERM stops the daemon and removes the device;
#   6. kill -9 + Device::recover (UBLK_F_USER_RECOVERY): data survives, I/O issued
#      while no daemon runs completes after the recovery.
set -euo pipefail

bin=${1:-${MEMDISK:-/run/host/tmp/target-ublk/debug/examples/memdisk}}
work=$(mktemp -d /tmp/vm-memdisk.XXXXXX)
out=${VM_OUT:-$work}
fails=0
pid=""

note() { printf '== %s\n' "$*"; }
ok() { printf 'ok   - %s\n' "$*"; }
bad() { printf 'FAIL - %s\n' "$*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >"$work/check.log" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/       /' "$work/check.log" | tail -n 20; fi
}
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    cp "$work"/memdisk-*.log "$out"/ 2>/dev/null || true
}
trap cleanup EXIT

[ -x "$bin" ] || { echo "memdisk binary not found at $bin (build it first)"; exit 1; }
[ -c /dev/ublk-control ] || { echo "no /dev/ublk-control (modprobe ublk_drv)"; exit 1; }
echo "kernel $(uname -r), memdisk $bin"
dmesg -C || true
# no_io_errors: the kernel logged no failed request on a ublk device since the last call.
no_io_errors() {
    local errs
    errs=$(dmesg -c | grep -E 'error, dev ublkb|I/O error.*ublkb' || true)
    [ -z "$errs" ] || { printf '%s\n' "$errs" | head -n 5; return 1; }
}

# start_memdisk NAME ARGS... : run memdisk in the background; sets pid and dev.
start_memdisk() {
    local name=$1; shift
    : >"$work/path"
    "$bin" "$@" >"$work/path" 2>"$work/memdisk-$name.log" &
    pid=$!
    local i
    for i in $(seq 600); do
        [ -s "$work/path" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "memdisk $name exited early:"; cat "$work/memdisk-$name.log"; pid=""; return 1
        fi
        sleep 0.1
    done
    dev=$(cat "$work/path")
    [ -b "$dev" ] || { echo "memdisk $name printed '$dev', not a block device"; return 1; }
    echo "memdisk $name: $dev (pid $pid)"
}

# stop_memdisk : SIGTERM, expect exit 0 and the device gone.
stop_memdisk() {
    local id=${dev#/dev/ublkb} rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    pid=""
    check "daemon exits 0 on SIGTERM (rc=$rc)" test "$rc" = 0
    check "$dev removed" test ! -e "$dev"
    check "/dev/ublkc$id removed" test ! -e "/dev/ublkc$id"
    check "ublkc$id gone from sysfs" test ! -e "/sys/class/ublk-char/ublkc$id"
}

# fio_summary: bandwidth and IOPS of the last fio run (terse v3 output in check.log).
fio_summary() {
    awk -F';' 'NF > 50 { printf "       read %s KiB/s %s IOPS, write %s KiB/s %s IOPS\n", $7, $8, $48, $49 }' \
        "$work/check.log" || true
}
# wait_pid PID SECONDS: wait for a background job, failing after SECONDS.
wait_pid() {
    local i
    for i in $(seq $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || { wait "$1"; return; }
        sleep 0.1
    done
    return 1
}

fio_common=(--direct=1 --ioengine=io_uring --iodepth=32 --verify=crc32c --verify_fatal=1
    --do_verify=1 --output-format=terse --terse-version=3 --group_reporting)

# is_zero DEV OFFSET_MIB LEN_MIB: the range reads back as zeroes.
is_zero() {
    # (no process substitution: the guest's devtmpfs has no /dev/fd)
    dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | cmp -n $(($3 << 20)) - /dev/zero
}
# is_ff DEV OFFSET_MIB LEN_MIB: the range reads back as 0xff bytes.
is_ff() {
    [ "$(dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none | tr -d '\377' | wc -c)" = 0 ]
}

# ---------------------------------------------------------------------------
note "512-byte device, 2 queues"
start_memdisk main --size-mib 128 --queues 2 --depth 64
name=$(basename "$dev")
check "size is 128 MiB" test "$(blockdev --getsize64 "$dev")" = $((128 << 20))
check "logical block size 512" test "$(blockdev --getss "$dev")" = 512
check "2 hardware queues" test "$(ls /sys/block/"$name"/mq | wc -l)" = 2
check "discard advertised" test "$(cat /sys/block/"$name"/queue/discard_max_bytes)" -gt 0
check "write-zeroes advertised" test "$(cat /sys/block/"$name"/queue/write_zeroes_max_bytes)" -gt 0
check "write cache advertised" grep -q 'write back' /sys/block/"$name"/queue/write_cache

check "fio randwrite 4k verify (2 jobs, QD 32)" timeout 600 fio --name=randwrite --filename="$dev" \
    --rw=randwrite --bs=4k --size=16M --numjobs=2 --offset_increment=32M "${fio_common[@]}"
fio_summary
check "fio seq write 1M verify with fsync" timeout 600 fio --name=seq --filename="$dev" \
    --rw=write --bs=1M --size=64M --fsync=8 "${fio_common[@]}"
fio_summary
check "fio seq read 1M" timeout 600 fio --name=seqread --filename="$dev" --rw=read --bs=1M \
    --size=64M --direct=1 --ioengine=io_uring --iodepth=32 --output-format=terse --terse-version=3
fio_summary

note "discard and write-zeroes"
check "fill 8 MiB with 0xff" sh -c \
    "tr '\\0' '\\377' </dev/zero | dd of=$dev bs=1M count=8 iflag=fullblock oflag=direct status=none"
check "0xff before discard" is_ff "$dev" 0 8
check "blkdiscard 1M..3M" blkdiscard -o $((1 << 20)) -l $((2 << 20)) "$dev"
check "discarded range reads zero" is_zero "$dev" 1 2
check "before the discard untouched" is_ff "$dev" 0 1
check "after the discard untouched" is_ff "$dev" 3 5
check "blkdiscard -z 5M..6M (write zeroes)" blkdiscard -z -o $((5 << 20)) -l $((1 << 20)) "$dev"
check "zeroed range reads zero" is_zero "$dev" 5 1
check "before the zeroed range untouched" is_ff "$dev" 3 2
check "after the zeroed range untouched" is_ff "$dev" 6 2
check "sync / flush" blockdev --flushbufs "$dev"
check "write + fsync (FLUSH) succeeds" dd if=/dev/zero of="$dev" bs=4k count=1 seek=100 \
    oflag=direct conv=fsync status=none
check "no failed requests in the kernel log" no_io_errors
stop_memdisk

# ---------------------------------------------------------------------------
note "4096-byte device"
start_memdisk bs4k --size-mib 64 --queues 1 --depth 32 --bs 4096
check "logical block size 4096" test "$(blockdev --getss "$dev")" = 4096
check "fio randwrite 4k verify on 4k device" timeout 600 fio --name=rw4k --filename="$dev" \
    --rw=randwrite --bs=4k --size=16M "${fio_common[@]}"
check "512-byte O_DIRECT read refused" sh -c \
    "! dd if=$dev of=/dev/null bs=512 count=1 iflag=direct status=none"
check "no failed requests in the kernel log" no_io_errors
stop_memdisk

# ---------------------------------------------------------------------------
note "kill -9 and recovery (UBLK_F_USER_RECOVERY)"
img=$work/disk.img
start_memdisk rec1 --size-mib 64 --queues 2 --depth 32 --file "$img" --user-recovery
id=${dev#/dev/ublkb}
check "fio write 16M (verify later)" timeout 600 fio --name=pre --filename="$dev" --rw=write \
    --bs=64k --size=16M --direct=1 --ioengine=io_uring --iodepth=16 --verify=crc32c --do_verify=0
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
check "$dev survives the daemon" test -b "$dev"
# I/O issued while nobody serves the device waits for the recovery.
dd if="$dev" of="$work/during.bin" bs=1M count=1 skip=20 iflag=direct status=none &
ddpid=$!
sleep 1
check "I/O waits while no daemon serves the device" kill -0 "$ddpid"
start_memdisk rec2 --file "$img" --recover "$id"
check "recovered the same device" test "$dev" = "/dev/ublkb$id"
check "I/O queued during the outage completes" wait_pid "$ddpid" 120
check "and read its 1 MiB" test "$(stat -c %s "$work/during.bin")" = $((1 << 20))
check "data written before kill -9 verifies" timeout 600 fio --name=pre --filename="$dev" \
    --rw=write --bs=64k --size=16M --direct=1 --ioengine=io_uring --iodepth=16 \
    --verify=crc32c --verify_only
check "fio randwrite verify after recovery" timeout 600 fio --name=post --filename="$dev" \
    --rw=randwrite --bs=4k --size=8M --offset=32M "${fio_common[@]}"
check "no failed requests in the kernel log" no_io_errors
stop_memdisk

check "no ublk devices left" sh -c '! ls /dev/ublkb* 2>/dev/null'
if [ "$fails" -ne 0 ]; then
    echo "vm_memdisk: $fails check(s) FAILED"
    exit 1
fi
echo "vm_memdisk: all checks passed"
