#!/usr/bin/env bash
# tests/vm/bench_pool.sh BIN_DIR - issue 21's pool benchmark, guest side: four origins
# in one pool (one store, one daemon) against four separate stores and daemons, with
# fio writing 4 KiB at random on all four devices at once. Run as root in the QEMU
# guest of tests/vm/run.sh (one guest at a time; see docs/benchmarks-pool.md):
#
#   cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/pool-bench-bin && cp target/release/{ublk-snapd,snapctl} /tmp/pool-bench-bin/
#   VM_MEM=6G VM_OUT=/tmp/pool-bench-out VM_PASS_ENV="BENCH_ROUNDS BENCH_RUNTIME" \
#       bash tests/vm/run.sh tests/vm/bench_pool.sh /run/host/tmp/pool-bench-bin
#
# Two systems, both set up at once in one guest from fresh files on a guest tmpfs
# (so that what is compared runs seconds apart, not minutes: the host is shared and
# TCG timings drift):
#
#   pool      one store formatted for origin "origin", then `origin add` o1 o2 o3
#             (BENCH_DEV_MIB each, default 128); one daemon; a snapshot is a group
#             snapshot of the four (`create rN --origins origin,o1,o2,o3`)
#   separate  four stores, one per origin, four daemons; a snapshot is a `create rN`
#             on each daemon
#
# BENCH_STORE=brd puts the stores on RAM block devices (/dev/ram0 the pool's,
# /dev/ram1-4 the separate ones; `modprobe brd`) instead of files on the tmpfs: a
# write to a file takes its inode lock exclusively (shmem_file_write_iter), so four
# origins' copy-outs into one store file queue there where four store files do not;
# a block device's writes take no such lock. The origins stay files either way.
#
# Both: 64 KiB chunks, --queues 2 --queue-depth 64 per device. Every device is filled
# (1M sequential, untimed). Then BENCH_ROUNDS rounds (default 6), each phase run on
# one system and then on the other (pool first in odd rounds, separate first in
# even ones), one fio process per run with one job per device, all four at once
# (O_DIRECT, io_uring, iodepth 32):
#
#   none    4 KiB random writes, BENCH_RUNTIME seconds (default 8), no snapshot
#           (after the previous round's snapshot was deleted and its space freed)
#   first   right after snapshot rN: one 4 KiB write into every 64 KiB chunk of the
#           device in a shuffled order (replayed fio iolog, first_writes_iolog.py),
#           so every write copies its chunk out; a fixed count (2048 per device at
#           128 MiB)
#   steady  after an untimed 1M sequential pass over every device (no chunk shared
#           any more): 4 KiB random writes, BENCH_RUNTIME seconds, with rN
#
# then rN is deleted (`delete rN`: the whole group in the pool) and its space freed
# (`status` shows no job) before the next round.
#
# The figure of a run is the four jobs' I/Os over the longest job's runtime. Output
# in $VM_OUT: bench-pool.tsv (round system phase ios seconds iops per-job-iops),
# bench-pool.log, bench-pool-ratios.txt (for each ratio its median, min and max over
# the rounds, then each round's: pool/separate for none, first and steady, and
# steady/none inside each system), guest-kernel.txt. Read the medians: a round
# whose host was busy (TCG shares the host's CPUs) shows as one outlier.
set -Eeuo pipefail

BIN=${1:?usage: bench_pool.sh BIN_DIR}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
OUT=${VM_OUT:-/tmp}
RT=${BENCH_RUNTIME:-8}
MIB=${BENCH_DEV_MIB:-128}
ROUNDS=${BENCH_ROUNDS:-6}
STORE_ON=${BENCH_STORE:-tmpfs}
W=/bench-pool
RES=$OUT/bench-pool.tsv
LOG=$OUT/bench-pool.log
SIZE=$((MIB << 20))
NAMES=(origin o1 o2 o3)
T0=$(date +%s)
uname -r >"$OUT/guest-kernel.txt"

say() { printf '[%4ss] %s\n' "$(($(date +%s) - T0))" "$*" | tee -a "$LOG"; }
die() {
    trap - ERR
    say "FAIL: $*"
    tail -n 30 $W/ublk-snapd*.log 2>/dev/null || true
    dmesg | tail -n 20 || true
    exit 1
}
trap 'die "line $LINENO: $BASH_COMMAND"' ERR

for t in fio jq python3; do command -v $t >/dev/null || die "$t missing"; done
[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || die "ublk-snapd/snapctl not in $BIN"
mem_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
mkdir -p $W
mount -t tmpfs -o size=$((mem_kib * 9 / 10))k tmpfs $W
: >"$LOG"
printf 'round\tsystem\tphase\tios\tseconds\tiops\tjob_iops\n' >"$RES"
POOL_STORE_LEN=$((4 * 2 * SIZE + (256 << 20)))
SEP_STORE_LEN=$((2 * SIZE + (64 << 20)))
case $STORE_ON in
    tmpfs) ;;
    brd)
        # five RAM disks of the pool store's size (pages are allocated as written)
        modprobe brd rd_nr=5 rd_size=$((POOL_STORE_LEN >> 10)) || die "modprobe brd"
        for i in 0 1 2 3 4; do [ -b /dev/ram$i ] || die "/dev/ram$i missing after modprobe brd"; done
        ;;
    *) die "BENCH_STORE=$STORE_ON: tmpfs or brd" ;;
esac
say "kernel $(uname -r), $(nproc) vCPUs, ${mem_kib} KiB RAM, fio $(fio --version), 4 devices of ${MIB} MiB, runtime ${RT}s, $ROUNDS rounds, stores on $STORE_ON"

IOLOG_PY=$(dirname "${BASH_SOURCE[0]}")/first_writes_iolog.py
[ -f "$IOLOG_PY" ] || IOLOG_PY=$BIN/first_writes_iolog.py
python3 "$IOLOG_PY" "$SIZE" >"$W/first.iolog" # every chunk of the device

POOL_DEVS=()
SEP_DEVS=()
PS=$W/run-pool/snapd.sock
# fio4 ROUND SYSTEM PHASE: the phase's workload on the system's four devices at once
fio4() {
    local round=$1 sys=$2 phase=$3 d a=() devs=("${POOL_DEVS[@]}")
    [ "$sys" = separate ] && devs=("${SEP_DEVS[@]}")
    a=(--direct=1 --ioengine=io_uring --iodepth=32 --output-format=json)
    for d in "${devs[@]}"; do
        a+=(--name="${d##*/}" --filename="$d")
        case $phase in
            first) a+=(--read_iolog="$W/first.iolog" --replay_redirect="$d" --replay_no_stall=1) ;;
            *) a+=(--rw=randwrite --bs=4k --time_based --runtime="$RT") ;;
        esac
    done
    fio "${a[@]}" >"$W/fio.json" 2>"$W/fio.err" \
        || { cat "$W/fio.err" "$W/fio.json" >>"$LOG"; die "fio $sys/$phase"; }
    grep -v '^$' "$W/fio.err" >>"$LOG" || true
    local line
    line=$(jq -r '([.jobs[].write.total_ios] | add) as $n
        | ([.jobs[].write.runtime] | max / 1000) as $s
        | "\($n)\t\($s)\t\($n / $s)\t\([.jobs[].write.iops | floor] | join(","))"' "$W/fio.json")
    printf '%s\t%s\t%s\t%s\n' "$round" "$sys" "$phase" "$line" >>"$RES"
    say "$(printf 'round %s %-8s %-6s ' "$round" "$sys" "$phase")$(awk -F'\t' '{printf "ios %s in %ss: iops %.0f (per device %s)", $1, $2, $3, $4}' <<<"$line")"
}
fill8() { # every device of both systems, at once
    local d a=(--direct=1 --ioengine=io_uring --iodepth=32 --rw=write --bs=1M --output-format=terse)
    for d in "${POOL_DEVS[@]}" "${SEP_DEVS[@]}"; do a+=(--name="${d##*/}" --filename="$d" --size="$SIZE"); done
    fio "${a[@]}" >/dev/null 2>>"$LOG" || die "fill"
}
ctl_at() { local s=$1; shift; "$SNAPCTL" --socket "$s" "$@"; }
# start_snapd DIR ORIGIN STORE: a daemon with its socket and state in DIR; prints the origin device
start_snapd() {
    mkdir -p "$1"
    "$SNAPD" --origin "$2" --store "$3" --socket "$1/snapd.sock" --state-dir "$1" \
        --queues 2 --queue-depth 64 2>>"$W/ublk-snapd-${1##*/}.log"
}
stop_snapd() { # SOCKET
    local pid
    pid=$(ctl_at "$1" --json status | jq -r .pid)
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "ublk-snapd $pid did not exit on SIGTERM"
    return 0
}
sockets() { # SYSTEM: its daemons' sockets
    if [ "$1" = pool ]; then echo "$PS"; else for k in "${NAMES[@]}"; do echo "$W/run-sep-$k/snapd.sock"; done; fi
}
snapshot() { # SYSTEM NAME
    local s
    if [ "$1" = pool ]; then ctl_at "$PS" create "$2" --origins origin,o1,o2,o3 >/dev/null; return; fi
    for s in $(sockets separate); do ctl_at "$s" create "$2" >/dev/null; done
}
drop_snapshot() { # SYSTEM NAME: delete it and wait until its space is freed
    local s
    for s in $(sockets "$1"); do
        ctl_at "$s" delete "$2" >/dev/null
        for _ in $(seq 600); do [ "$(ctl_at "$s" --json status | jq '.jobs | length')" = 0 ] && break; sleep 0.1; done
    done
}

setup_pool() {
    local k
    for k in "${NAMES[@]}"; do truncate -s $SIZE "$W/pool-$k.img"; done
    local store=$W/pool-store.img
    if [ "$STORE_ON" = brd ]; then store=/dev/ram0; else truncate -s $POOL_STORE_LEN "$store"; fi
    mkdir -p $W/run-pool
    ctl_at "$PS" format --origin $W/pool-origin.img --store "$store" --chunk-size 64K >>"$LOG"
    start_snapd $W/run-pool $W/pool-origin.img "$store" >/dev/null || die "ublk-snapd (pool) did not start"
    for k in "${NAMES[@]:1}"; do ctl_at "$PS" origin add "$k" --device "$W/pool-$k.img" >/dev/null; done
    # (no process substitution: the guest has no /dev/fd)
    ctl_at "$PS" --json origin list | jq -r '.origins[].device' >$W/devs
    mapfile -t POOL_DEVS <$W/devs
    [ ${#POOL_DEVS[@]} = 4 ] || die "pool devices: ${POOL_DEVS[*]}"
    say "pool: daemon $(ctl_at "$PS" --json status | jq -r .pid), devices ${POOL_DEVS[*]}"
}
setup_separate() {
    local k r store i=1
    for k in "${NAMES[@]}"; do
        r=$W/run-sep-$k
        truncate -s $SIZE "$W/sep-$k.img"
        store=$W/sep-store-$k.img
        if [ "$STORE_ON" = brd ]; then store=/dev/ram$i; else truncate -s $SEP_STORE_LEN "$store"; fi
        i=$((i + 1))
        mkdir -p "$r"
        ctl_at "$r/snapd.sock" format --origin "$W/sep-$k.img" --store "$store" \
            --chunk-size 64K >>"$LOG"
        SEP_DEVS+=("$(start_snapd "$r" "$W/sep-$k.img" "$store")") \
            || die "ublk-snapd ($k) did not start"
    done
    say "separate: devices ${SEP_DEVS[*]}"
}

setup_pool
setup_separate
fill8
for r in $(seq 1 "$ROUNDS"); do
    order="pool separate"
    [ $((r % 2)) = 0 ] && order="separate pool"
    for sys in $order; do fio4 "$r" "$sys" none; done
    for sys in $order; do
        snapshot "$sys" "r$r"
        fio4 "$r" "$sys" first
    done
    fill8
    for sys in $order; do fio4 "$r" "$sys" steady; done
    for sys in $order; do drop_snapshot "$sys" "r$r"; done
done
for s in $(sockets pool) $(sockets separate); do stop_snapd "$s"; done

python3 - "$RES" >"$OUT/bench-pool-ratios.txt" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
iops = {(r["round"], r["system"], r["phase"]): float(r["iops"]) for r in rows}
rounds = sorted({r["round"] for r in rows}, key=int)
ratios = {
    "pool/separate none (4K randwrite, no snapshot)": lambda k: iops[(k, "pool", "none")] / iops[(k, "separate", "none")],
    "pool/separate first (4K first writes after a snapshot)": lambda k: iops[(k, "pool", "first")] / iops[(k, "separate", "first")],
    "pool/separate steady (4K randwrite, chunks copied)": lambda k: iops[(k, "pool", "steady")] / iops[(k, "separate", "steady")],
    "pool steady/none (snapshot vs no snapshot)": lambda k: iops[(k, "pool", "steady")] / iops[(k, "pool", "none")],
    "separate steady/none": lambda k: iops[(k, "separate", "steady")] / iops[(k, "separate", "none")],
}
for name, f in ratios.items():
    v = [f(k) for k in rounds]
    med = statistics.median(v)
    print(f"{name}: median {med:.3f} min {min(v):.3f} max {max(v):.3f} (rounds: {' '.join(f'{x:.3f}' for x in v)})")
EOF
cat "$OUT/bench-pool-ratios.txt" | tee -a "$LOG"
umount $W || true
say "done: $RES"
