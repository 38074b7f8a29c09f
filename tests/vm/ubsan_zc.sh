#!/usr/bin/env bash
# tests/vm/ubsan_zc.sh WHO [BIN_DIR] - a probe, not in the suite: does a zero-copy
# ublk server make the guest kernel print the UBSAN array-index warning in
# io_buffer_register_bvec (io_uring/rsrc.c) that 7.2.13 prints when our zero-copy
# device starts? One server per boot (UBSAN reports each source location once per
# boot, so a second server in the same guest would prove nothing):
#
#   WHO=rublk:      rublk's loop target with zero copy (`rublk add loop -f IMG -z`;
#                   rublk 0.2.15 defaults: 1 queue, depth 128, 512 KiB buffers,
#                   O_DIRECT on the backing file), RUBLK=/path/to/rublk
#   WHO=rublk-null: rublk's null target with zero copy (no backing file at all)
#   WHO=ours:       ublk-snapd from BIN_DIR (zero copy: --zero-copy auto)
#
#   cargo install rublk --root /tmp/rublk     # on the host; never committed
#   VM_KERNEL=7.x VM_PASS_ENV=RUBLK RUBLK=/run/host/tmp/rublk/bin/rublk \
#       bash tests/vm/run.sh tests/vm/ubsan_zc.sh rublk
#   VM_KERNEL=7.x bash tests/vm/run.sh tests/vm/ubsan_zc.sh ours /run/host/tmp/pressure-bin
#
# Each run: the device, 1 MiB written and read back with O_DIRECT (so requests with
# data reach the server), then the kernel log's UBSAN report with its call trace.
# Prints "UBSAN: yes" or "UBSAN: no" and exits 0 either way, 1 if the I/O failed.
set -Eeuo pipefail
WHO=${1:?usage: ubsan_zc.sh rublk|rublk-null|ours [BIN_DIR]}
W=/tmp/ubsan-zc
rm -rf "$W"
mkdir -p "$W"
echo "kernel $(uname -r); server: $WHO"
dmesg | grep -q UBSAN && echo "note: UBSAN already reported before the server started"
case $WHO in
    rublk | rublk-null)
        RUBLK=${RUBLK:-/run/host/tmp/rublk/bin/rublk}
        [ -x "$RUBLK" ] || { echo "rublk not found at $RUBLK"; exit 1; }
        if [ "$WHO" = rublk ]; then
            truncate -s 64M "$W/img"
            "$RUBLK" add loop -f "$W/img" -z
        else
            "$RUBLK" add null -z
        fi
        DEV=/dev/ublkb0
        ;;
    ours)
        BIN=${2:?ours needs BIN_DIR}
        truncate -s 64M "$W/origin"
        truncate -s 64M "$W/store"
        "$BIN/snapctl" format --origin "$W/origin" --store "$W/store" >/dev/null
        DEV=$("$BIN/ublk-snapd" --origin "$W/origin" --store "$W/store" \
            --socket "$W/sock" --state-dir "$W/run" 2>"$W/log")
        "$BIN/snapctl" --socket "$W/sock" status | sed -n '/DATA PATH/,/^$/p'
        ;;
    *) echo "unknown server $WHO"; exit 2 ;;
esac
for _ in $(seq 1 50); do [ -b "$DEV" ] && break; sleep 0.2; done
[ -b "$DEV" ] || { echo "no $DEV"; exit 1; }
sleep 2
echo "--- kernel log after the device started (partition scan: reads with data)"
dmesg | grep -A3 UBSAN || echo "(no UBSAN yet)"
head -c 1M /dev/urandom >"$W/data"
dd if="$W/data" of="$DEV" bs=1M count=1 oflag=direct status=none
dd if="$DEV" of="$W/back" bs=1M count=1 iflag=direct status=none
[ "$WHO" = rublk-null ] || cmp "$W/data" "$W/back"
sleep 1
echo "--- the UBSAN report with its call trace"
if dmesg | grep -q 'UBSAN: array-index-out-of-bounds'; then
    dmesg | sed -n '/UBSAN: array-index-out-of-bounds/,/---\[ end trace\|^\[.*\] ---/p' | head -n 40
    echo "UBSAN: yes"
else
    echo "UBSAN: no"
fi
