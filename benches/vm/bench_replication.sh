#!/usr/bin/env bash
# benches/vm/bench_replication.sh [BIN_DIR] [MIB] - send and receive throughput in the
# VM guest as a ratio to dd of the same bytes in the same run (not part of the suite):
#
#   cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/repl-bin && cp target/release/{ublk-snapd,snapctl} /tmp/repl-bin/
#   VM_MEM=3G bash tests/vm/run.sh benches/vm/bench_replication.sh /run/host/tmp/repl-bin 256
#
# Two daemons (A sends, B receives), origins of MIB MiB (default 256) filled with
# random data. Full: `send s1 -o FILE` against `dd` of A's origin device to a file
# (same bytes read from a ublk device, written to the same tmpfs); `receive -i FILE`
# against `dd` of that file onto B's origin device. Incremental: 1% of the chunks
# rewritten (64 KiB each), `send --from s1 s2` and its receive, against dd of the
# stream's size. Prints one line per measurement and the ratios (>1: slower than dd).
set -Eeuo pipefail
BIN=${1:-/run/host/tmp/repl-bin}
MIB=${2:-256}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=/tmp/bench-repl
OUT=${VM_OUT:-$W}
DAEMON_QUEUES=1
use() {
    ORIGIN=$W/$1/origin.img
    STORE=$W/$1/store.img
    SOCK=$W/$1/run/snapd.sock
    STATE=$W/$1/run
    LOG=$OUT/ublk-snapd-bench-repl-$1.log
}
use A
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../tests/vm/lib.sh"
ctlA() { "$SNAPCTL" --socket "$W/A/run/snapd.sock" "$@"; }
ctlB() { "$SNAPCTL" --socket "$W/B/run/snapd.sock" "$@"; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

rm -rf "$W"
mkdir -p "$W/A/run" "$W/B/run"
for d in A B; do
    use $d
    : >"$LOG"
    truncate -s "${MIB}M" "$ORIGIN"
    truncate -s "$((MIB * 3))M" "$STORE"
    "$SNAPCTL" format --origin "$ORIGIN" --store "$STORE" >/dev/null
done
use A
ADEV=$(start_daemon)
use B
BDEV=$(start_daemon)
dd if=/dev/urandom of="$ADEV" bs=1M count="$MIB" oflag=direct status=none
ctlA create s1 >/dev/null
sync
drop_caches

step "full: $MIB MiB"
t_send=$(secs ctlA send s1 -o "$W/full.stream")
n=$(stat -c %s "$W/full.stream")
drop_caches
t_dd_read=$(secs dd if="$ADEV" of="$W/dd.out" bs=1M iflag=direct status=none)
rm -f "$W/dd.out"
drop_caches
t_recv=$(secs ctlB receive -i "$W/full.stream")
echo "full send: $n bytes in $t_send s; dd of the origin device: $t_dd_read s; ratio $(ratio "$t_send" "$t_dd_read")"

step "incremental: 1% of the chunks"
chunks=$((MIB * 16))
k=$((chunks / 100))
for c in $(shuf -i 0-$((chunks - 1)) -n "$k"); do
    dd if=/dev/urandom of="$ADEV" bs=64K seek="$c" count=1 oflag=direct status=none
done
ctlA create s2 >/dev/null
drop_caches
t_isend=$(secs ctlA send --from s1 s2 -o "$W/inc.stream")
m=$(stat -c %s "$W/inc.stream")
mb=$(((m + 1048575) / 1048576))
drop_caches
t_dd_iread=$(secs dd if="$ADEV" of="$W/dd.out" bs=1M count="$mb" iflag=direct status=none)
rm -f "$W/dd.out"
drop_caches
t_irecv=$(secs ctlB receive -i "$W/inc.stream")
[ "$(ctlB --json list | jq -r '[.snapshots[].name] | join(",")')" = "s1,s2" ] || fail "target: $(ctlB list)"
# dd of the same bytes onto B's origin device (after the receives: it overwrites it)
drop_caches
t_dd_write=$(secs dd if="$W/full.stream" of="$BDEV" bs=1M count="$MIB" iflag=fullblock oflag=direct status=none)
drop_caches
t_dd_iwrite=$(secs dd if="$W/inc.stream" of="$BDEV" bs=1M oflag=direct status=none)
echo "full receive: $n bytes in $t_recv s; dd onto the origin device: $t_dd_write s; ratio $(ratio "$t_recv" "$t_dd_write")"
echo "incremental: $k of $chunks chunks changed; stream $m bytes ($(echo "scale=4; $m / $n" | bc -l) of the full stream)"
echo "incremental send: $t_isend s; dd of $mb MiB of the origin device: $t_dd_iread s; ratio $(ratio "$t_isend" "$t_dd_iread")"
echo "incremental receive: $t_irecv s; dd of the stream onto the origin device: $t_dd_iwrite s; ratio $(ratio "$t_irecv" "$t_dd_iwrite")"
