#!/usr/bin/env bash
# tests/vm/bench_nbd.sh [BIN_DIR] [SIZE_MIB] - NBD export read throughput, run as root
# in the VM guest (a benchmark, not part of the suite):
#
#   CARGO_TARGET_DIR=/tmp/target-nbd cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/nbd-bin && cp /tmp/target-nbd/release/{ublk-snapd,snapctl} /tmp/nbd-bin/
#   bash tests/vm/run.sh tests/vm/bench_nbd.sh /run/host/tmp/nbd-bin 256
#
# A SIZE_MIB origin of random data (default 256), snapshot s1, the origin then
# rewritten in every other chunk (so s1 reads half from the store, half from the
# origin). s1 is exported; a raw copy of it (read through the export) is served by
# qemu-nbd on another Unix socket. Each tool reads both sides BENCH_NBD_ROUNDS times
# (default 7), ours and qemu-nbd back to back in each round (order alternating), and
# prints the median times and the median (min, max) of the per-round ratios
# qemu-nbd time / ours (>1: we are faster):
#   nbdcopy --connections=4 EXPORT null:   (libnbd's null destination)
#   qemu-img convert -O raw EXPORT /dev/null   (well, a tmpfs file, removed)
#   nbdcopy of s1's ublk device (activated) to null:, as a third reference.
# Everything is in guest RAM (tmpfs), so this measures the servers, not a disk.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/nbd-bin}}
MIB=${2:-256}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/bench-nbd}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
NBDSOCK=$W/run/snapd.nbd.sock
QSOCK=$W/qemu-nbd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-bench-nbd.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rm -rf "$W"
mkdir -p "$W" "$OUT"
: >"$LOG"

head -c "${MIB}M" /dev/urandom >"$ORIGIN"
truncate -s $((MIB * 2 + 64))M "$STORE"
"$SNAPCTL" format --sparse --origin "$ORIGIN" --store "$STORE" >/dev/null
ODEV=$(start_daemon 60)
ctl create s1 >/dev/null
# every other 64 KiB chunk (write 64 KiB, skip 64 KiB)
fio --name=rewrite --filename="$ODEV" --rw=write:64k --bs=64k --direct=1 \
    --size="${MIB}M" --ioengine=psync --refill_buffers >/dev/null
ctl export s1 >/dev/null
U="nbd+unix:///s1?socket=$NBDSOCK"
nbdcopy "$U" "$W/raw.img"
qemu-nbd -t -r -f raw -x s1 -k "$QSOCK" "$W/raw.img" &
QPID=$!
for _ in $(seq 50); do [ -S "$QSOCK" ] && break; sleep 0.1; done
Q="nbd+unix:///s1?socket=$QSOCK"
SDEV=$(ctl activate s1)

ROUNDS=${BENCH_NBD_ROUNDS:-7}
secs() { # secs CMD...: wall seconds of one run
    local s
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    echo "$(date +%s.%N) - $s" | bc
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
convert() { qemu-img convert -f raw -O raw "$1" "$W/conv.img" && rm -f "$W/conv.img"; }
# pairs TOOL ARGS-BEFORE-URI: ROUNDS rounds, each running the tool on ours then on
# qemu-nbd back to back (the order alternating), so both sides of a ratio see the
# same moment of the host's load; prints the median times and the median, min
# and max of the per-round ratios qemu-nbd/ours (>1: we are faster).
pairs() {
    local label=$1 r ta tb
    shift
    : >"$W/ratios" ; : >"$W/ta" ; : >"$W/tb"
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then
            ta=$(secs "$@" "$U"); tb=$(secs "$@" "$Q")
        else
            tb=$(secs "$@" "$Q"); ta=$(secs "$@" "$U")
        fi
        echo "$ta" >>"$W/ta"; echo "$tb" >>"$W/tb"
        echo "$tb / $ta" | bc -l >>"$W/ratios"
    done
    printf '%-9s ublk-snap %ss  qemu-nbd %ss  ratio qemu-nbd/ours: median %.2f (min %.2f, max %.2f, %s rounds)\n' \
        "$label" "$(median <"$W/ta")" "$(median <"$W/tb")" "$(median <"$W/ratios")" \
        "$(sort -n "$W/ratios" | head -1)" "$(sort -n "$W/ratios" | tail -1)" "$ROUNDS"
}
copy_null() { nbdcopy --connections=4 "$1" null:; }
step "nbdcopy --connections=4 to null: ($MIB MiB, $ROUNDS interleaved rounds)"
pairs nbdcopy copy_null
printf 'nbdcopy   of the ublk device %ss (one run, for reference)\n' "$(secs copy_null "$SDEV")"
step "qemu-img convert to a tmpfs file ($MIB MiB, $ROUNDS interleaved rounds)"
pairs convert convert
kill "$QPID" 2>/dev/null || true
ctl deactivate s1 >/dev/null
