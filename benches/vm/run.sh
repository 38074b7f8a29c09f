#!/usr/bin/env bash
# benches/vm/run.sh [RUNS] - the VM benchmark of issue 5, host side: ublk-snap against
# the kernel loop device, rublk's ublk loop (the ceiling), dm-snapshot and dm-thin, with
# fio in the QEMU (TCG) guest of tests/vm/run.sh; writes docs/benchmarks.md.
#
#   sudo bash benches/vm/run.sh          # 2 runs (about 15-20 min each on 2 cores)
#   sudo bash benches/vm/run.sh 3        # 3 runs
#   BENCH_REPORT_ONLY=DIR bash benches/vm/run.sh   # rebuild the report from DIR
#   sudo VM_KERNEL=7.x BENCH_BASE=benches/vm/results-20261124-0c0ed50 bash benches/vm/run.sh 1
#       # on 7.x (zero copy: adds rublk -z and ublk-snap --zero-copy off), the report
#       # being the BENCH_BASE (6.12) one followed by this run's as a section
#
# Steps: release build of ublk-snapd and snapctl from the committed HEAD (git archive
# into $BENCH_SRC, default /tmp/bench-src) in $BENCH_TARGET (default /tmp/target-bench,
# so nobody else's rebuild changes them mid-run); rublk $RUBLK_VERSION
# from crates.io into /tmp/rublk (once); the three binaries copied to /tmp/bench-bin;
# then RUNS guests, one at a time, each a fresh boot running tests/vm/bench_fio.sh (every
# stack and snapshot count, see its header for what is measured); then
# benches/vm/report.py turns $BENCH_OUT/bench-*.tsv into docs/benchmarks.md.
# Not part of tests/run-all.sh: the figures are emulated and vary with the host's load.
#
# Environment: BENCH_OUT (results dir, default target/bench-vm/<date>), BENCH_TARGET,
# BENCH_RUNTIME (seconds per time-based fio job, 5), BENCH_DEV_MIB (256), VM_MEM (6G:
# dm-snapshot with 16 snapshots keeps 16 copies of the device in guest RAM),
# VM_TIMEOUT (2400), BENCH_DOC (docs/benchmarks.md), and BENCH_ONLY / BENCH_*_SNAPS of
# bench_fio.sh.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=${1:-2}
RUBLK_VERSION=0.2.15
target=${BENCH_TARGET:-/tmp/target-bench}
bin=/tmp/bench-bin
out=${BENCH_OUT:-$repo/target/bench-vm/$(date -u +%Y%m%d-%H%M%S)}
doc=${BENCH_DOC:-$repo/docs/benchmarks.md}
log() { printf '[bench-vm] %s\n' "$*" >&2; }

# report DIR: docs/benchmarks.md from DIR, after the BENCH_BASE report when one is named
report() {
    if [ -n "${BENCH_BASE:-}" ]; then
        { python3 "$here/report.py" "$BENCH_BASE"; echo; python3 "$here/report.py" "$1" --section; } >"$doc"
    else
        python3 "$here/report.py" "$1" >"$doc"
    fi
}
if [ -n "${BENCH_REPORT_ONLY:-}" ]; then
    report "$BENCH_REPORT_ONLY"
    log "wrote $doc from ${BENCH_BASE:+$BENCH_BASE and }$BENCH_REPORT_ONLY"
    exit 0
fi
[ "$(id -u)" = 0 ] || { log "run as root (tests/vm/run.sh needs it)"; exit 1; }
bash "$repo/tests/vm/setup.sh" >&2   # idempotent: QEMU, kernel, fio, dmsetup, thin-provisioning-tools

# Build the committed HEAD, not the working tree (others may have work in progress there).
src=${BENCH_SRC:-/tmp/bench-src}
commit=$(git -C "$repo" rev-parse --short HEAD)
log "building ublk-snapd and snapctl (release) of $commit in $src, target $target"
rm -rf "$src"
mkdir -p "$src"
git -C "$repo" archive HEAD | tar -x -C "$src"
(cd "$src" && CARGO_TARGET_DIR=$target cargo build --release -q -p ublk-snapd -p tools)
if ! /tmp/rublk/bin/rublk --version 2>/dev/null | grep -qx "rublk $RUBLK_VERSION"; then
    log "installing rublk $RUBLK_VERSION into /tmp/rublk"
    cargo install -q rublk --version "$RUBLK_VERSION" --no-default-features --locked --root /tmp/rublk
fi
rm -rf "$bin"
mkdir -p "$bin" "$out"
cp "$target/release/ublk-snapd" "$target/release/snapctl" /tmp/rublk/bin/rublk "$bin/"
# a copy of the guest script too, so that editing the tree during a run changes nothing
cp "$repo/tests/vm/bench_fio.sh" "$repo/tests/vm/first_writes_iolog.py" "$bin/"
{
    echo "ublk-snap commit $commit (git archive HEAD, release build)"
    echo "host $(uname -r), $(nproc) cores, $(qemu-system-x86_64 --version | head -n1)"
    echo "rublk $RUBLK_VERSION (--no-default-features)"
    echo "runtime ${BENCH_RUNTIME:-5}s, device ${BENCH_DEV_MIB:-256} MiB, VM_MEM ${VM_MEM:-6G}"
    echo "guest kernel VM_KERNEL=${VM_KERNEL:-6.12}"
    echo "command VM_KERNEL=${VM_KERNEL:-6.12}${BENCH_UBLK_SNAPS:+ BENCH_UBLK_SNAPS=\"$BENCH_UBLK_SNAPS\"}${BENCH_DMSNAP_SNAPS:+ BENCH_DMSNAP_SNAPS=\"$BENCH_DMSNAP_SNAPS\"}${BENCH_THIN_SNAPS:+ BENCH_THIN_SNAPS=\"$BENCH_THIN_SNAPS\"}${BENCH_BASE:+ BENCH_BASE=$BENCH_BASE} bash benches/vm/run.sh $runs"
    echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$out/env.txt"

export VM_MEM=${VM_MEM:-6G} VM_TIMEOUT=${VM_TIMEOUT:-2400} VM_OUT=$out
export VM_PASS_ENV="BENCH_RUNTIME BENCH_DEV_MIB BENCH_ONLY BENCH_UBLK_SNAPS BENCH_DMSNAP_SNAPS BENCH_THIN_SNAPS"
for r in $(seq 1 "$runs"); do
    log "run $r of $runs (fresh guest), results in $out"
    start=$(date +%s)
    bash "$repo/tests/vm/run.sh" "$bin/bench_fio.sh" /run/host/tmp/bench-bin "$r"
    cp "$out/vm-console.log" "$out/vm-console-$r.log" 2>/dev/null || true
    log "run $r took $(($(date +%s) - start)) s"
done
report "$out"
log "wrote $doc"
