#!/usr/bin/env bash
# tests/vm/profile_copyout.sh BINDIR [SNAPS] - guest side: profile ublk-snapd on the
# copy-out path with perf, the workload of the VM benchmark's "first randwrite4k"
# (bench_fio.sh) on a bigger device, so that it runs long enough to sample: a 1 GiB
# origin file on tmpfs (PROF_MIB), SNAPS (1) snapshots, then one 4 KiB
# O_DIRECT write into each 64 KiB chunk of the first half, shuffled, iodepth 32, while
# `perf record` samples the whole guest (cpu-clock, 999 Hz, -a: per-process
# sampling gets no samples in this guest; no call graph: release builds have no frame
# pointers). Writes $VM_OUT/perf-copyout.txt (symbols by self time) and
# the fio result. Not part of the suite:
#
#   cp target/release/{ublk-snapd,snapctl} /tmp/prof-bin/
#   VM_MEM=3G VM_OUT=target/prof bash tests/vm/run.sh tests/vm/profile_copyout.sh /run/host/tmp/prof-bin
#
# Extra daemon options: PROF_DAEMON_ARGS="--workers-per-queue 4" VM_PASS_ENV=PROF_DAEMON_ARGS ...
set -Eeuo pipefail

BIN=${1:?usage: profile_copyout.sh BINDIR [SNAPS]}
NSNAPS=${2:-1}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=/tmp/prof
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-prof.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v perf >/dev/null || fail "perf missing (Debian: linux-perf)"

mkdir -p $W "$STATE"
mount -t tmpfs -o size=2g tmpfs $W
mkdir -p "$STATE"
: >"$LOG"
MIB=${PROF_MIB:-1024}
HALF=$((MIB << 19))
step "origin ${MIB} MiB, store, $NSNAPS snapshots"
head -c 64M /dev/urandom >$W/rand
for _ in $(seq 1 $((MIB / 64))); do cat $W/rand; done >"$ORIGIN"
rm $W/rand
truncate -s 1G "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE" --chunk-size 64K >/dev/null
# shellcheck disable=SC2086 # PROF_DAEMON_ARGS: extra daemon options, word-split
ODEV=$(start_daemon 0 ${PROF_DAEMON_ARGS:-})
for i in $(seq 1 "$NSNAPS"); do ctl create "p$i" >/dev/null; done
python3 "$(dirname "${BASH_SOURCE[0]}")/first_writes_iolog.py" "$HALF" >"$W/first.iolog"

step "perf record of the daemon during the copy-out writes"
perf record -e cpu-clock -F 999 -a -o $W/perf.data 2>$W/perf.err &
PERF=$!
sleep 8 # perf's start-up (it reads every process's maps) takes seconds under TCG
TXN0=$(ctl --json status | jq .txn_id)
fio --name=first --filename="$ODEV" --direct=1 --ioengine=io_uring --iodepth=32 \
    --read_iolog=$W/first.iolog --replay_redirect="$ODEV" --replay_no_stall=1 \
    --output-format=terse --terse-version=3 >$W/fio.terse
TXN1=$(ctl --json status | jq .txn_id)
kill -INT $PERF
wait $PERF || true
cp $W/perf.err "$OUT/perf-record.err"
perf report -i $W/perf.data --stdio --header-only 2>&1 | grep -E 'sample|event' | head -n 5 || true
# terse v3: field 49 write IOPS
NW=$(grep -c ' write ' "$W/first.iolog" || true)
echo "fio: write IOPS $(cut -d';' -f49 $W/fio.terse), $((TXN1 - TXN0)) commits for $NW first writes" | tee "$OUT/fio-copyout.txt"
perf report -i $W/perf.data --no-children --sort comm,dso,symbol --stdio 2>"$OUT/perf-report.err" \
    | grep -v '^$' >"$OUT/perf-copyout.txt" || true
grep -v '^#' "$OUT/perf-copyout.txt" | sed -n 1,40p
ctl status >/dev/null
echo "profile_copyout: done in $(($(date +%s) - T0)) s"
