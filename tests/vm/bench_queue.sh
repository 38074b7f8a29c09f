#!/usr/bin/env bash
# tests/vm/bench_queue.sh BIN_DIR [ROUNDS] - how should a ublk queue serve requests?
# Not part of CI. Run in the VM guest:
#
#   mkdir -p /tmp/qbench-bin && cp target/release/{ublk-snapd,snapctl} /tmp/qbench-bin/
#   VM_MEM=3G bash tests/vm/run.sh tests/vm/bench_queue.sh /run/host/tmp/qbench-bin 2
#
# Modes (BENCH_MODES, default "sync uring workers4"):
#   sync      every request served on the queue thread, one at a time (blocking pread)
#   uring     the same, but origin reads go to the queue's io_uring (many in flight)
#   workers4  requests handed to 4 worker threads per queue (--workers-per-queue 4)
# For each store placement (guest tmpfs: fsync costs nothing; the results share,
# $VM_OUT, virtio-9p with cache=none: every fsync reaches the host's disk) and each
# mode, all in this one guest, ROUNDS times interleaved:
#   copy-out  fio randwrite 4k, iodepth 32, O_DIRECT, io_uring, 8 MiB of first writes
#             spread over a freshly snapshotted 128 MiB origin (each a copy-out + commit)
#   read      fio randread 4k, iodepth 32, 5 s, on the origin
#   read1m    fio read 1M sequential, iodepth 32, 5 s, on the origin
#   snapread  fio randread 4k, iodepth 32, 5 s, on the snapshot's device
# Prints one line per run (IOPS) and each mode's median as a ratio to sync's.
# TCG: only ratios inside this run mean anything.
set -Eeuo pipefail

BIN=${1:?usage: bench_queue.sh BIN_DIR [ROUNDS]}
MODES=${BENCH_MODES:-sync uring workers4}
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

one() { # PLACE MODE ROUND
    local place=$1 mode=$2 round=$3 dir args
    case $place in
    tmpfs) dir=$W/files ;;
    9p) dir=$OUT/wbench-files ;;
    esac
    rm -rf "$dir" "$W/run"
    mkdir -p "$dir"
    head -c 128M /dev/urandom >"$dir/origin.img"
    truncate -s 512M "$dir/store.img"
    "$SNAPCTL" format --origin "$dir/origin.img" --store "$dir/store.img" >/dev/null
    case $mode in
    sync) args=(--origin-reads sync) ;;
    uring) args=(--origin-reads uring) ;;
    workers4) args=(--origin-reads sync --workers-per-queue 4) ;;
    *) die "unknown mode $mode" ;;
    esac
    local sock=$W/run/s.sock odev sdev pid
    odev=$("$SNAPD" --origin "$dir/origin.img" --store "$dir/store.img" --socket "$sock" \
        --state-dir "$W/run" --queues 2 --queue-depth 64 "${args[@]}" \
        2>>"$W/snapd.log") || die "ublk-snapd did not start"
    pid=$("$SNAPCTL" --socket "$sock" --json status | jq -r .pid)
    "$SNAPCTL" --socket "$sock" create s >/dev/null
    sdev=$("$SNAPCTL" --socket "$sock" activate s)
    local c r m s
    c=$(fio_run "$odev" randwrite --size=128M --io_size=8M --randseed=$round)
    r=$(fio_run "$odev" randread --size=128M --time_based --runtime=5)
    m=$(fio_run "$odev" read --bs=1M --size=128M --time_based --runtime=5)
    s=$(fio_run "$sdev" randread --size=128M --time_based --runtime=5)
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    rm -rf "$dir"
    printf '%s mode=%s round=%s copy-out=%s read=%s read1m=%s snapread=%s\n' "$place" "$mode" "$round" "$c" "$r" "$m" "$s" | tee -a "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
    for place in tmpfs 9p; do
        for mode in $MODES; do one "$place" "$mode" "$round"; done
    done
done

echo "== median IOPS over $ROUNDS rounds, and the ratio to sync"
python3 - "$RES" $MODES <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    place, mode = f[0], f[1].split('=')[1]
    for kv in f[3:]:
        k, v = kv.split('=')
        runs[(place, k, mode)].append(float(v))
modes = sys.argv[2:]
for place in ('tmpfs', '9p'):
    for k in ('copy-out', 'read', 'read1m', 'snapread'):
        base = statistics.median(runs[(place, k, 'sync')]) if runs[(place, k, 'sync')] else 0
        cells = []
        for m in modes:
            v = statistics.median(runs[(place, k, m)])
            cells.append(f"{m} {v:8.0f} ({v / base if base else float('nan'):.2f}x)")
        print(f"{place:6} {k:9} " + "  ".join(cells))
EOF
