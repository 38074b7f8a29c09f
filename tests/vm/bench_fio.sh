#!/usr/bin/env bash
# tests/vm/bench_fio.sh BIN_DIR [RUN_ID] - the VM benchmark of issue 5, guest side.
# Run as root in the QEMU guest of tests/vm/run.sh, one guest at a time; the host
# driver benches/vm/run.sh boots it and builds docs/benchmarks.md from the results:
#
#   VM_MEM=6G VM_PASS_ENV="BENCH_RUNTIME BENCH_ONLY" \
#       bash tests/vm/run.sh tests/vm/bench_fio.sh /run/host/tmp/bench-bin 1
#
# BIN_DIR holds ublk-snapd, snapctl and rublk (the guest sees the host's /tmp at
# /run/host/tmp).  It measures fio throughput (O_DIRECT, io_uring, iodepth 32, one
# job) on a 256 MiB device (BENCH_DEV_MIB) whose backing files live on a guest tmpfs,
# for these stacks, one after the other, each from fresh files:
#
#   loop        kernel loop device (direct I/O) over the origin file   (ceiling)
#   rublk       rublk's ublk loop target over the origin file          (ceiling)
#   rublk-buf   the same with --buffered-io (ublk-snapd's files are buffered too)
#   rublk-z     the same with -z (auto_buf_reg zero copy; the zero-copy ceiling),
#               skipped where the driver does not offer it (6.12)
#   ublk-snap   ublk-snapd's origin device, 64 KiB chunks, 0/1/16/256 snapshots
#               (zero copy where the driver offers it: --zero-copy auto)
#   ublk-snap-copy  ublk-snapd --zero-copy off, 0 snapshots, only where ublk-snap
#               was zero-copy (its data path as `snapctl status` reports it)
#   dm-snap     dm snapshot-origin over a loop device, 0/1/16 classic snapshots
#               (chunk 64 KiB, persistent, one loop COW device each)
#   dm-thin     thin volume of a thin-pool (block 64 KiB, skip_block_zeroing) on
#               loop devices, 0/1/16/256 thin snapshots
#
# Each device is first filled (1M sequential writes, untimed), then snapshotted N
# times.  Phase "first" (every chunk still shared, the copy-out path):
#   randwrite4k  4 KiB writes, one into each 64 KiB chunk of the first half of the
#                device, in a shuffled order (replayed fio iolog, so every write is a
#                first write to its chunk; a fixed count, not time-based)
#   seqwrite1M   1 MiB sequential writes over the second half (once)
#   randread4k, seqread1M   BENCH_RUNTIME seconds each on the origin
# after which every chunk is unshared; an untimed 1M sequential pass over the whole
# device makes sure of it.  Phase "steady": randwrite4k, randread4k, seqwrite1M,
# seqread1M, BENCH_RUNTIME seconds each.  With 0 snapshots there is one phase, "none".
# With 1 snapshot, the snapshot device (ublk-snap and dm-thin) is also read
# (randread4k, seqread1M) right after it is taken ("snap-shared": its chunks are the
# origin's) and after the origin was rewritten ("snap-copied").  Metadata: ublk-snap's
# node blocks (snapctl check) and metadata chunks (snapctl status), dm-thin's used
# metadata blocks (dmsetup status; thin_ls is logged), before and after the random and
# the sequential copy-out of the 1-snapshot run.
#
# Output in $VM_OUT: guest-kernel.txt (uname -r), bench-RUN.tsv (run system snaps phase workload iops MBps seconds),
# bench-meta-RUN.tsv (run system what chunks_copied meta_bytes ...), bench-RUN.log.
#
# Environment: BENCH_RUNTIME (5), BENCH_DEV_MIB (256), BENCH_ONLY (space-separated
# stacks, e.g. "loop rublk rublk-buf ublk-snap"; default all), BENCH_UBLK_SNAPS ("0 1 16 256"),
# BENCH_DMSNAP_SNAPS ("0 1 16"), BENCH_THIN_SNAPS ("0 1 16 256").
set -Eeuo pipefail

BIN=${1:?usage: bench_fio.sh BIN_DIR [RUN_ID]}
RUN=${2:-1}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
RUBLK=$BIN/rublk
OUT=${VM_OUT:-/tmp}
RT=${BENCH_RUNTIME:-5}
MIB=${BENCH_DEV_MIB:-256}
ONLY=${BENCH_ONLY:-loop rublk rublk-buf rublk-z ublk-snap ublk-snap-copy dm-snap dm-thin}
UBLK_SNAPS=${BENCH_UBLK_SNAPS:-0 1 16 256}
DMSNAP_SNAPS=${BENCH_DMSNAP_SNAPS:-0 1 16}
THIN_SNAPS=${BENCH_THIN_SNAPS:-0 1 16 256}
W=/bench
RES=$OUT/bench-$RUN.tsv
META=$OUT/bench-meta-$RUN.tsv
LOG=$OUT/bench-$RUN.log
SIZE=$((MIB << 20))
SECT=$((SIZE / 512))
HALF=$((SIZE / 2))
T0=$(date +%s)
uname -r >"$OUT/guest-kernel.txt"

say() { printf '[%4ss] %s\n' "$(($(date +%s) - T0))" "$*" | tee -a "$LOG"; }
die() {
    trap - ERR
    say "FAIL: $*"
    tail -n 30 "$W/ublk-snapd.log" 2>/dev/null || true
    dmesg | tail -n 20 || true
    exit 1
}
trap 'die "line $LINENO: $BASH_COMMAND"' ERR
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

for t in fio jq python3 losetup dmsetup thin_ls; do command -v $t >/dev/null || die "$t missing"; done
[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || die "ublk-snapd/snapctl not in $BIN"
{ want rublk || want rublk-buf || want rublk-z; } && { [ -x "$RUBLK" ] || die "rublk not in $BIN"; }
modprobe loop
modprobe dm-mod
modprobe dm-snapshot
modprobe dm-thin-pool
# Backing files live on a tmpfs of their own (the guest has no disk): 90% of RAM.
mem_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
mkdir -p $W
mount -t tmpfs -o size=$((mem_kib * 9 / 10))k tmpfs $W
: >"$LOG"
[ -s "$RES" ] || printf 'run\tsystem\tsnaps\tphase\tworkload\tiops\tMBps\tseconds\n' >"$RES"
[ -s "$META" ] || printf 'run\tsystem\twhat\tchunks_copied\tmeta_bytes\tmeta_alloc_bytes\n' >"$META"
say "kernel $(uname -r), $(nproc) vCPUs, ${mem_kib} KiB RAM, fio $(fio --version), device ${MIB} MiB, runtime ${RT}s, stacks: $ONLY"

# The random copy-out workload: one 4 KiB write into each 64 KiB chunk of the first
# half, shuffled (fixed seed, the same on every stack).
# beside this script, or in BIN_DIR when run.sh copied the script alone into the guest
# (benches/vm/run.sh puts both in BIN_DIR)
IOLOG_PY=$(dirname "${BASH_SOURCE[0]}")/first_writes_iolog.py
[ -f "$IOLOG_PY" ] || IOLOG_PY=$BIN/first_writes_iolog.py
python3 "$IOLOG_PY" "$HALF" >"$W/randwrite-first.iolog"

# fio_jobs SYSTEM SNAPS PHASE DEV WORKLOAD...: run the workloads one after the other
# (stonewall) in one fio process (fio's start-up takes seconds under TCG), append one
# result line per workload.
fio_jobs() {
    local sys=$1 snaps=$2 phase=$3 dev=$4 wl a=()
    shift 4
    a=(--filename="$dev" --direct=1 --ioengine=io_uring --iodepth=32 --numjobs=1
        --output-format=json)
    for wl in "$@"; do
        a+=(--name="$wl")
        case "$phase:$wl" in
            first:randwrite4k) a+=(--read_iolog="$W/randwrite-first.iolog" --replay_redirect="$dev"
                --replay_no_stall=1) ;;
            first:seqwrite1M) a+=(--rw=write --bs=1M --offset="$HALF" --size="$HALF") ;;
            *:randwrite4k) a+=(--rw=randwrite --bs=4k --time_based --runtime="$RT") ;;
            *:randread4k) a+=(--rw=randread --bs=4k --time_based --runtime="$RT") ;;
            *:seqwrite1M) a+=(--rw=write --bs=1M --time_based --runtime="$RT") ;;
            *:seqread1M) a+=(--rw=read --bs=1M --time_based --runtime="$RT") ;;
            *) die "unknown workload $phase:$wl" ;;
        esac
        a+=(--stonewall)
    done
    fio "${a[@]}" >"$W/fio.json" 2>"$W/fio.err" \
        || { cat "$W/fio.err" "$W/fio.json" >>"$LOG"; die "fio $sys/$snaps/$phase/$*"; }
    grep -v '^$' "$W/fio.err" >>"$LOG" || true
    # (no process substitution: the guest has no /dev/fd)
    jq -r '.jobs[] | (if (.jobname | test("read")) then .read else .write end) as $d
        | "\(.jobname) \($d.iops) \($d.bw_bytes / 1e6) \($d.runtime / 1000)"' "$W/fio.json" >"$W/fio.lines"
    local name iops mbps secs
    while read -r name iops mbps secs; do
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$RUN" "$sys" "$snaps" "$phase" "$name" "$iops" "$mbps" "$secs" >>"$RES"
        say "$(printf '%-13s %3s %-11s %-11s iops %-8.0f MB/s %-7.1f %ss' "$sys" "$snaps" "$phase" "$name" "$iops" "$mbps" "$secs")"
    done <"$W/fio.lines"
}
# fill DEV [SIZE]: untimed sequential 1M writes over the device
fill() {
    fio --name=fill --filename="$1" --direct=1 --ioengine=io_uring --iodepth=32 --rw=write \
        --bs=1M --size="${2:-$SIZE}" --output-format=terse >/dev/null 2>>"$LOG" || die "fill $1"
}
# phases SYSTEM SNAPS DEV [META_HOOK]: the workloads on a device with SNAPS snapshots
phases() {
    local sys=$1 n=$2 dev=$3 hook=${4:-}
    if [ "$n" = 0 ]; then
        fio_jobs "$sys" 0 none "$dev" randwrite4k randread4k seqwrite1M seqread1M
        return
    fi
    [ -n "$hook" ] && $hook before
    fio_jobs "$sys" "$n" first "$dev" randwrite4k
    [ -n "$hook" ] && $hook random
    fio_jobs "$sys" "$n" first "$dev" seqwrite1M
    [ -n "$hook" ] && $hook sequential
    fio_jobs "$sys" "$n" first "$dev" randread4k seqread1M
    fill "$dev"
    fio_jobs "$sys" "$n" steady "$dev" randwrite4k randread4k seqwrite1M seqread1M
}
snapreads() { fio_jobs "$1" 1 "$2" "$3" randread4k seqread1M; } # SYSTEM PHASE DEV
new_file() { rm -f "$1"; truncate -s "$2" "$1"; }
loopdev() { losetup --direct-io=on -f --show "$1" 2>/dev/null || losetup -f --show "$1"; }
rm_loops() { losetup -D; }

# ---------------------------------------------------------------- ceilings
if want loop; then
    say "== kernel loop"
    new_file $W/origin.img $SIZE
    d=$(loopdev $W/origin.img)
    say "loop: $d, $(cat /sys/block/${d#/dev/}/loop/dio 2>/dev/null | sed 's/^/dio=/')"
    fill "$d"
    phases loop 0 "$d"
    losetup -d "$d"
    rm -f $W/origin.img
fi
# rublk twice: its default (O_DIRECT on the backing file) and --buffered-io (as
# ublk-snapd opens its files); the report takes the better of the two as the ceiling.
# Then -z (zero copy, O_DIRECT) where the driver offers auto_buf_reg.
for mode in direct buffered zc; do
    sys=rublk; [ $mode = buffered ] && sys=rublk-buf; [ $mode = zc ] && sys=rublk-z
    want "$sys" || continue
    say "== $sys loop ($($RUBLK --version))"
    new_file $W/origin.img $SIZE
    opt=(); [ $mode = buffered ] && opt=(--buffered-io); [ $mode = zc ] && opt=(-z)
    $RUBLK add loop -n 90 -f $W/origin.img -q 2 -d 64 --quiet "${opt[@]}" >>"$LOG" 2>&1 || true
    for _ in $(seq 100); do [ -b /dev/ublkb90 ] && break; sleep 0.1; done
    if [ $mode = zc ] && ! [ -b /dev/ublkb90 ]; then
        say "rublk-z: no device (the driver does not offer zero copy?): skipped"
        rm -f $W/origin.img
        continue
    fi
    [ -b /dev/ublkb90 ] || die "rublk device did not appear"
    fill /dev/ublkb90
    phases "$sys" 0 /dev/ublkb90
    $RUBLK del -n 90 >>"$LOG" 2>&1
    for _ in $(seq 100); do [ -e /dev/ublkb90 ] || break; sleep 0.1; done
    rm -f $W/origin.img
done

# ---------------------------------------------------------------- ublk-snap
ctl() { "$SNAPCTL" --socket $W/run/snapd.sock "$@"; }
ublk_meta() { # record node bytes (check) and metadata chunk bytes (status)
    local chk st
    chk=$(ctl --json check) || say "snapctl check exited non-zero: $chk"
    st=$(ctl --json status)
    echo "$1 check $chk" >>"$LOG"
    echo "$1 status $st" >>"$LOG"
    printf '%s\t%s\t%s\t%s\n' "$1" "$(jq -r '.. | .nr_data_chunks? // empty' <<<"$chk" | head -n1)" \
        "$(jq -r '.. | .nr_meta_blocks? // empty' <<<"$chk" | head -n1)" \
        "$(jq -c . <<<"$st")" >>"$W/ublk-meta.raw"
}
if want ublk-snap; then
    say "== ublk-snap ($("$SNAPD" --version 2>/dev/null || echo ublk-snapd))"
    for n in $UBLK_SNAPS; do
        new_file $W/origin.img $SIZE
        new_file $W/store.img $((SIZE * 3 + (256 << 20)))
        mkdir -p $W/run
        ctl format --origin $W/origin.img --store $W/store.img --chunk-size 64K >>"$LOG"
        dev=$("$SNAPD" --origin $W/origin.img --store $W/store.img --socket $W/run/snapd.sock \
            --state-dir $W/run --queues 2 --queue-depth 64 2>>$W/ublk-snapd.log) || die "ublk-snapd did not start"
        pid=$(ctl --json status | jq -r .pid)
        ZC_PATH=$(ctl --json status | jq -r '.devices[0].data_path')
        say "ublk-snap, $n snapshots: origin $dev, daemon $pid, data path $ZC_PATH"
        fill "$dev"
        for i in $(seq 1 "$n"); do ctl create "s$i" >/dev/null; done
        hook=""
        if [ "$n" = 1 ]; then
            sdev=$(ctl activate s1)
            snapreads ublk-snap snap-shared "$sdev"
            ctl deactivate s1 >/dev/null
            : >$W/ublk-meta.raw
            hook=ublk_meta
        fi
        phases ublk-snap "$n" "$dev" $hook
        if [ "$n" = 1 ]; then
            sdev=$(ctl activate s1)
            snapreads ublk-snap snap-copied "$sdev"
            ctl deactivate s1 >/dev/null
            cp $W/ublk-meta.raw "$OUT/bench-ublk-meta-$RUN.raw"
        fi
        kill -TERM "$pid"
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && die "ublk-snapd $pid did not exit on SIGTERM"
        rm -rf $W/origin.img $W/store.img $W/run
    done
fi

# ublk-snap with --zero-copy off beside the zero-copy one: the gain of zero copy.
if want ublk-snap-copy && [ "${ZC_PATH:-}" = zero-copy ]; then
    say "== ublk-snap-copy (--zero-copy off)"
    new_file $W/origin.img $SIZE
    new_file $W/store.img $((SIZE * 3 + (256 << 20)))
    mkdir -p $W/run
    ctl format --origin $W/origin.img --store $W/store.img --chunk-size 64K >>"$LOG"
    dev=$("$SNAPD" --origin $W/origin.img --store $W/store.img --socket $W/run/snapd.sock \
        --state-dir $W/run --queues 2 --queue-depth 64 --zero-copy off 2>>$W/ublk-snapd.log) \
        || die "ublk-snapd did not start"
    pid=$(ctl --json status | jq -r .pid)
    say "ublk-snap-copy: origin $dev, daemon $pid, data path $(ctl --json status | jq -r '.devices[0].data_path')"
    fill "$dev"
    phases ublk-snap-copy 0 "$dev"
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && die "ublk-snapd $pid did not exit on SIGTERM"
    rm -rf $W/origin.img $W/store.img $W/run
fi

# ---------------------------------------------------------------- dm-snapshot
if want dm-snap; then
    say "== dm-snapshot"
    for n in $DMSNAP_SNAPS; do
        new_file $W/origin.img $SIZE
        lo=$(loopdev $W/origin.img)
        dmsetup create bs-origin --table "0 $SECT snapshot-origin $lo"
        dev=/dev/mapper/bs-origin
        fill "$dev"
        for i in $(seq 1 "$n"); do
            new_file $W/cow$i.img $((SIZE + (16 << 20)))
            c=$(loopdev $W/cow$i.img)
            dmsetup suspend bs-origin
            dmsetup create bs-snap$i --table "0 $SECT snapshot $lo $c P 128"
            dmsetup resume bs-origin
        done
        say "dm-snap, $n snapshots: $dev on $lo"
        phases dm-snap "$n" "$dev"
        [ "$n" -gt 0 ] && dmsetup status bs-snap1 >>"$LOG"
        for i in $(seq 1 "$n"); do dmsetup remove bs-snap$i; done
        dmsetup remove bs-origin
        rm_loops
        rm -f $W/origin.img $W/cow*.img
    done
fi

# ---------------------------------------------------------------- dm-thin
thin_meta() { # used metadata blocks (4 KiB) and data blocks of the pool
    local st
    blockdev --flushbufs /dev/mapper/bs-thin
    sleep 1.5   # the pool commits every second
    st=$(dmsetup status bs-pool)
    echo "$1 pool status: $st" >>"$LOG"
    # <start> <len> thin-pool <txn> <used meta>/<total meta> <used data>/<total data> ...
    set -- "$1" $st
    printf '%s\t%s\t%s\n' "$1" "${7%%/*}" "${6%%/*}" >>$W/thin-meta.raw
}
if want dm-thin; then
    say "== dm-thin"
    for n in $THIN_SNAPS; do
        new_file $W/tmeta.img $((64 << 20))
        new_file $W/tdata.img $((SIZE * 3))
        lm=$(loopdev $W/tmeta.img)
        ld=$(loopdev $W/tdata.img)
        dmsetup create bs-pool --table "0 $((SIZE * 3 / 512)) thin-pool $lm $ld 128 0 1 skip_block_zeroing"
        dmsetup message bs-pool 0 "create_thin 0"
        dmsetup create bs-thin --table "0 $SECT thin /dev/mapper/bs-pool 0"
        dev=/dev/mapper/bs-thin
        fill "$dev"
        for i in $(seq 1 "$n"); do
            dmsetup suspend bs-thin
            dmsetup message bs-pool 0 "create_snap $i 0"
            dmsetup resume bs-thin
        done
        say "dm-thin, $n snapshots: $dev (meta $lm, data $ld)"
        hook=""
        if [ "$n" = 1 ]; then
            dmsetup create bs-tsnap --table "0 $SECT thin /dev/mapper/bs-pool 1"
            snapreads dm-thin snap-shared /dev/mapper/bs-tsnap
            dmsetup remove bs-tsnap
            : >$W/thin-meta.raw
            hook=thin_meta
        fi
        phases dm-thin "$n" "$dev" $hook
        if [ "$n" = 1 ]; then
            dmsetup create bs-tsnap --table "0 $SECT thin /dev/mapper/bs-pool 1"
            snapreads dm-thin snap-copied /dev/mapper/bs-tsnap
            dmsetup remove bs-tsnap
            dmsetup message bs-pool 0 reserve_metadata_snap
            { echo "thin_ls:"; thin_ls --metadata-snap "$lm"; } >>"$LOG" 2>&1 || true
            dmsetup message bs-pool 0 release_metadata_snap
            cp $W/thin-meta.raw "$OUT/bench-thin-meta-$RUN.raw"
        fi
        dmsetup status bs-pool >>"$LOG"
        dmsetup remove bs-thin
        dmsetup remove bs-pool
        rm_loops
        rm -f $W/tmeta.img $W/tdata.img
    done
fi

# ---------------------------------------------------------------- metadata table
# chunks copied and metadata bytes added by the random and by the sequential copy-out
# (2048 chunks each at 256 MiB), from the before/random/sequential samples.
if [ -s "$OUT/bench-ublk-meta-$RUN.raw" ]; then
    python3 - "$RUN" "$OUT/bench-ublk-meta-$RUN.raw" >>"$META" <<'EOF'
import json, sys
run, path = sys.argv[1], sys.argv[2]
rows = {}
for line in open(path):
    what, data, nodes, st = line.rstrip("\n").split("\t", 3)
    st = json.loads(st)
    def find(o, k):
        if isinstance(o, dict):
            if k in o: return o[k]
            for v in o.values():
                r = find(v, k)
                if r is not None: return r
        return None
    mc = find(st, "nr_meta_chunks") or 0
    cs = find(st, "chunk_size") or 65536
    rows[what] = (int(data), int(nodes) * 4096, int(mc) * int(cs))
for a, b in (("before", "random"), ("random", "sequential")):
    if a in rows and b in rows:
        d = rows[b][0] - rows[a][0]
        print(f"{run}\tublk-snap\t{b}\t{d}\t{rows[b][1] - rows[a][1]}\t{rows[b][2] - rows[a][2]}")
EOF
fi
if [ -s "$OUT/bench-thin-meta-$RUN.raw" ]; then
    awk -v run="$RUN" -F'\t' '{ d[$1] = $2; m[$1] = $3 }
        END { n = split("before random sequential", k, " ")
              for (i = 2; i <= n; i++) if ((k[i-1] in d) && (k[i] in d))
                  printf "%s\tdm-thin\t%s\t%d\t%d\t%d\n", run, k[i], d[k[i]] - d[k[i-1]],
                         (m[k[i]] - m[k[i-1]]) * 4096, (m[k[i]] - m[k[i-1]]) * 4096 }' \
        "$OUT/bench-thin-meta-$RUN.raw" >>"$META"
fi
umount $W || true
say "done: $RES"
