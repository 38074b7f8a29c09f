#!/usr/bin/env bash
# tests/vm/bench_workers.sh BIN_DIR [ROUNDS] - does offloading a queue's requests to
# worker threads (ublk-snapd --workers-per-queue) pay? Not part of CI. Run in the
# VM guest:
#
#   mkdir -p /tmp/wbench-bin && cp target/release/{ublk-snapd,snapctl} /tmp/wbench-bin/
#   VM_MEM=3G bash tests/vm/run.sh tests/vm/bench_workers.sh /run/host/tmp/wbench-bin 2
#
# For each store placement (guest tmpfs: fsync costs nothing; the results share,
# $VM_OUT, virtio-9p with cache=none: every fsync reaches the host's disk) and for
# --workers-per-queue 0 (each request served on the queue thread, one at a time) and
# 4, all in this one guest, ROUNDS times interleaved:
#   copy-out  fio randwrite 4k, iodepth 32, O_DIRECT, io_uring, 8 MiB of first writes
#             spread over a freshly snapshotted 128 MiB origin (each a copy-out + commit)
#   read      fio randread 4k, iodepth 32, 5 s, on the origin
#   snapread  the same on the snapshot's device
# Prints one line per run (IOPS) and the ratio workers=4 / workers=0 per placement
# and workload (medians). TCG: only ratios inside this run mean anything.
set -Eeuo pipefail

BIN=${1:?usage: bench_workers.sh BIN_DIR [ROUNDS]}
ROUNDS=${2:-2}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=/tmp/wbench
OUT=${VM_OUT:-$W}
RES=$W/results.txt

die() { echo "FAIL: $*"; tail -n 20 "$W/snapd.log" 2>/dev/null || true; exit 1; }
[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || die "binaries not in $BIN"
rm -rf "$W"
mkdir -p "$W"
: >"$RES"

iops() { jq -r '.jobs[0] | (.read.iops + .write.iops) | floor'; }
fio_run() { # DEV RW EXTRA...
    local dev=$1 rw=$2
    shift 2
    fio --name=b --filename="$dev" --rw="$rw" --bs=4k --direct=1 --ioengine=io_uring \
        --iodepth=32 --output-format=json "$@" 2>/dev/null | iops
}

one() { # PLACE WORKERS ROUND
    local place=$1 workers=$2 round=$3 dir
    case $place in
    tmpfs) dir=$W/files ;;
    9p) dir=$OUT/wbench-files ;;
    esac
    rm -rf "$dir" "$W/run"
    mkdir -p "$dir"
    head -c 128M /dev/urandom >"$dir/origin.img"
    truncate -s 512M "$dir/store.img"
    "$SNAPCTL" format --origin "$dir/origin.img" --store "$dir/store.img" >/dev/null
    local sock=$W/run/s.sock odev sdev pid
    odev=$("$SNAPD" --origin "$dir/origin.img" --store "$dir/store.img" --socket "$sock" \
        --state-dir "$W/run" --queues 2 --queue-depth 64 --workers-per-queue "$workers" \
        2>>"$W/snapd.log") || die "ublk-snapd did not start"
    pid=$("$SNAPCTL" --socket "$sock" --json status | jq -r .pid)
    "$SNAPCTL" --socket "$sock" create s >/dev/null
    sdev=$("$SNAPCTL" --socket "$sock" activate s)
    local c r s
    c=$(fio_run "$odev" randwrite --size=128M --io_size=8M --randseed=$round)
    r=$(fio_run "$odev" randread --size=128M --time_based --runtime=5)
    s=$(fio_run "$sdev" randread --size=128M --time_based --runtime=5)
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    rm -rf "$dir"
    printf '%s workers=%s round=%s copy-out=%s read=%s snapread=%s\n' "$place" "$workers" "$round" "$c" "$r" "$s" | tee -a "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
    for place in tmpfs 9p; do
        for workers in 0 4; do one "$place" "$workers" "$round"; done
    done
done

echo "== workers=4 / workers=0 (median IOPS over $ROUNDS rounds)"
python3 - "$RES" <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    place, workers = f[0], f[1].split('=')[1]
    for kv in f[3:]:
        k, v = kv.split('=')
        runs[(place, k, workers)].append(float(v))
for place in ('tmpfs', '9p'):
    for k in ('copy-out', 'read', 'snapread'):
        a = statistics.median(runs[(place, k, '0')])
        b = statistics.median(runs[(place, k, '4')])
        print(f"{place:6} {k:9} workers=0 {a:8.0f} IOPS  workers=4 {b:8.0f} IOPS  ratio {b / a if a else float('nan'):.2f}")
EOF
