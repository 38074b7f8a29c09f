#!/usr/bin/env bash
# tests/vm/e2e_features.sh [BIN_DIR] - the daemon's report of the ublk driver's
# features and each device's data path, checked against the kernel itself, on
# whatever kernel the VM boots (run it on each: VM_KERNEL=6.12 and VM_KERNEL=7.x):
#
#   bash tests/vm/run.sh tests/vm/e2e_features.sh /run/host/tmp/e2e-bin
#   VM_KERNEL=7.x bash tests/vm/run.sh tests/vm/e2e_features.sh /run/host/tmp/e2e-bin
#
# It checks: the feature mask in `snapctl --json status` and in the daemon's log is
# the one tests/vm/ublk-features.c reads with its own UBLK_U_CMD_GET_FEATURES (a
# second, independent reader of the driver); every device's flags are a subset of
# what the driver offers; the origin has user_recovery (and reissue) on, which it
# asks for; the data path is "zero-copy" (flags auto_buf_reg and user_copy) where the
# driver offers both (7.x) and the daemon was not started with --zero-copy off
# (SNAPD_ARGS), else "copy" (6.12); an activated snapshot's
# device reports the same; after kill -9 and a restart (user recovery) the recovered
# device reports its flags again; the text status prints the driver line and the
# DATA PATH column; then data through every piece of the data path (origin reads and
# writes after a snapshot, a snapshot's copied-out chunks, its own writes, a hole, a
# range still on the origin) reads back exactly, a snapshot read over and over while
# its origin chunks are copied out and overwritten reads its old data every time,
# and at the clean shutdown the
# zero-copy queues' counters show fixed-buffer reads and writes (none on the copy path).
# Every copying device says why in status (copy_reason), a zero-copy one says nothing;
# where zero copy is on, a restart with --workers-per-queue 2 copies, warns at start
# that zero copy is off and says why in status (JSON and text).
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/e2e-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-features}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-features.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
for t in jq cc; do command -v $t >/dev/null || fail "$t missing"; done
rm -rf "$W"
mkdir -p "$W"
: >"$LOG"
echo "binaries: $BIN; kernel $(uname -r)"

step "the driver's feature mask, read by ublk-features.c"
cc -O2 -Wall -o "$W/ublk-features" tests/vm/ublk-features.c
REF=$("$W/ublk-features")
echo "   $REF"
MASK=$(printf '%d' "$(echo "$REF" | sed -n 's/^ublk features \(0x[0-9a-f]*\):.*/\1/p')")
[ -n "$MASK" ] || fail "cannot parse: $REF"
ok "driver mask $(printf '%#x' "$MASK")"

step "the daemon reports the same mask"
truncate -s 64M "$ORIGIN"
truncate -s 128M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE" >/dev/null
ODEV=$(start_daemon 120) || fail "ublk-snapd did not start"
S=$(ctl --json status)
[ "$(echo "$S" | jq -r .driver_features)" = "$MASK" ] \
    || fail "status driver_features $(echo "$S" | jq -r .driver_features), want $MASK"
ok "status: driver_features = $MASK"
DNAMES=$(ctl status | sed -n 's/^ublk driver: *features 0x[0-9a-f]* (\(.*\))$/\1/p')
[ "$(echo "$DNAMES" | wc -w)" = "$(printf '%d' "$MASK" | awk '{n=0; v=$1; while (v > 0) { n += v % 2; v = int(v / 2) } print n}')" ] \
    || fail "the text status does not name every bit: $DNAMES"
ok "status names every bit: $DNAMES"
grep -q "ublk driver features.*$(printf '%#x' "$MASK")" "$LOG" || fail "the daemon did not log the mask"
ok "logged: $(grep -o 'ublk driver features.*' "$LOG" | head -n 1 | cut -c1-160)"

# The data path every device must report.
PATH_WANT=copy
if [ $((MASK & 0x880)) = $((0x880)) ]; then
    case " ${SNAPD_ARGS:-} " in *" --zero-copy off "*) ;; *) PATH_WANT=zero-copy ;; esac
fi
echo "   expected data path: $PATH_WANT"

# check_device JSON_OF_ONE_DEVICE WHAT: flags inside the driver's, recovery on, the
# expected data path (zero copy: with auto_buf_reg and user_copy, else without).
check_device() {
    local d=$1 what=$2 names
    names=$(echo "$d" | jq -r '.features | join(" ")')
    for n in $names; do
        case " $DNAMES " in *" $n "*) ;; *) fail "$what: flag $n is not one the driver offers" ;; esac
    done
    for n in user_recovery user_recovery_reissue; do
        case " $names " in *" $n "*) ;; *) fail "$what: $n missing: $names" ;; esac
    done
    [ "$(echo "$d" | jq -r .data_path)" = "$PATH_WANT" ] \
        || fail "$what: data path $(echo "$d" | jq -r .data_path), want $PATH_WANT"
    for n in auto_buf_reg user_copy; do
        case " $names " in
            *" $n "*) [ "$PATH_WANT" = zero-copy ] || fail "$what: $n on a copying device: $names" ;;
            *) [ "$PATH_WANT" = copy ] || fail "$what: zero copy without $n: $names" ;;
        esac
    done
    # why a device copies: said for copying devices only
    case "$PATH_WANT,$(echo "$d" | jq -r '.copy_reason // ""')" in
        zero-copy,) ;;
        zero-copy,*) fail "$what: zero copy, yet a copy_reason: $d" ;;
        copy,) fail "$what: copying, but status does not say why: $d" ;;
    esac
    ok "$what: data path $PATH_WANT$(echo "$d" | jq -r '.copy_reason // "" | if . == "" then "" else " (\(.))" end'), flags: $names"
}
check_device "$(echo "$S" | jq -c '.devices[0]')" "origin $ODEV"

step "an activated snapshot's device"
ctl create s1 >/dev/null
ctl activate s1 >/dev/null
S=$(ctl --json status)
[ "$(echo "$S" | jq '.devices | length')" = 2 ] || fail "expected 2 devices: $S"
check_device "$(echo "$S" | jq -c '.devices[] | select(.snapshot == "s1")')" "snapshot s1"

step "the text status"
T=$(ctl status)
echo "$T" | grep -q "^ublk driver: *features $(printf '%#x' "$MASK")" || fail "no driver line in: $T"
echo "$T" | grep -q "DATA PATH" || fail "no DATA PATH column in: $T"
echo "$T" | grep -E "^\(origin\) +$ODEV +$PATH_WANT +" >/dev/null || fail "no origin row with its data path in: $T"
ok "driver line and DATA PATH column"

step "kill -9, restart: the recovered devices report their flags"
PID=$(daemon_pid)
kill -9 "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
ODEV2=$(start_daemon 120) || fail "the restart did not come up"
[ "$ODEV2" = "$ODEV" ] || fail "the origin came back as $ODEV2, not $ODEV"
grep -q "device recovered" "$LOG" || fail "the restart did not recover the devices"
S=$(ctl --json status)
check_device "$(echo "$S" | jq -c '.devices[0]')" "recovered origin"
check_device "$(echo "$S" | jq -c '.devices[] | select(.snapshot == "s1")')" "recovered s1"
[ "$(echo "$S" | jq -r .driver_features)" = "$MASK" ] || fail "mask after the restart"

step "data through every path of the data path in use (after the recovery)"
# Origin reads and writes (fixed-buffer on zero copy, copy-outs first), a snapshot's
# copied-out chunks, its own chunks written through user copy, a hole (a fixed read
# of /dev/zero on zero copy), and a snapshot range still on the origin (copy path).
MiB=$((1 << 20))
for f in a b c; do head -c $((4 * MiB)) /dev/urandom >"$W/$f"; done
head -c $MiB /dev/zero >"$W/zero"
put() { dd if="$1" of="$2" bs=1M seek="$3" oflag=direct conv=fsync,notrunc status=none; }
get() { dd if="$1" of="$W/got" bs=1M skip="$2" count="$3" iflag=direct status=none; }
same() { cmp -s "$W/got" "$1" || fail "$2: the bytes differ"; ok "$2"; }
put "$W/c" "$ODEV" 8
ctl create s2 >/dev/null
S2DEV=$(ctl activate s2)
put "$W/a" "$ODEV" 8
get "$ODEV" 8 4 && same "$W/a" "origin reads the new data"
get "$S2DEV" 8 4 && same "$W/c" "s2 reads its copied-out chunks (the old data)"
put "$W/b" "$S2DEV" 0
get "$S2DEV" 0 4 && same "$W/b" "s2 reads what was written to it"
blkdiscard -o $((4 * MiB)) -l $MiB "$S2DEV"
get "$S2DEV" 4 1 && same "$W/zero" "s2 reads a discarded range as zeros"
get "$ODEV" 12 4 && cp "$W/got" "$W/o12"
get "$S2DEV" 12 4 && same "$W/o12" "s2 reads the origin where it was not written"

step "a snapshot read racing the copy-outs of its origin chunks"
# s3's chunks are all on the origin; while fio overwrites them (every 64 KiB block
# once, in random order: each write a copy-out), s3 is read again and again. On zero
# copy a read planned from the origin whose chunk was copied out under it is read
# again (the queue's `reread` counter); either way s3 must read its old data.
head -c $((32 * MiB)) /dev/urandom >"$W/d"
put "$W/d" "$ODEV" 16
ctl create s3 >/dev/null
S3DEV=$(ctl activate s3)
fio --name=race --filename="$ODEV" --rw=randwrite --bs=64k --offset=16M --size=32M \
    --direct=1 --ioengine=io_uring --iodepth=16 --randrepeat=0 \
    --output="$W/fio-race.log" &
FIO=$!
passes=0
while kill -0 "$FIO" 2>/dev/null || [ "$passes" -eq 0 ]; do
    dd if="$S3DEV" of="$W/got" bs=64k skip=256 count=512 iflag=direct status=none
    cmp -s "$W/got" "$W/d" || fail "s3 read other data during pass $passes of the race"
    passes=$((passes + 1))
done
wait "$FIO" || fail "fio failed: $(cat "$W/fio-race.log")"
RACE_PASSES=$passes
get "$S3DEV" 16 32 && same "$W/d" "s3 read its old data in $passes passes during the copy-outs and after"
cmp -s <(dd if="$ODEV" bs=1M skip=16 count=32 iflag=direct status=none) "$W/d" \
    && fail "the origin was not overwritten"
ok "the origin was overwritten"

step "clean shutdown"
PID=$(daemon_pid)
kill -TERM "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
ok "daemon stopped"
# What the zero-copy queues did (logged as each stops), summed over the run.
zc_sum() {
    { grep -o "zero-copy queue stopped.*" "$LOG" || true; } | { grep -o "$1=[0-9]*" || true; } \
        | cut -d= -f2 | awk '{s += $1} END {print s + 0}'
}
FR=$(zc_sum fixed_reads) FW=$(zc_sum fixed_writes) CP=$(zc_sum copied) RR=$(zc_sum reread)
if [ "$PATH_WANT" = zero-copy ]; then
    [ "$FR" -gt 0 ] && [ "$FW" -gt 0 ] || fail "zero copy, yet $FR fixed-buffer reads and $FW writes"
    # a pass that began while fio ran read planned origin chunks as they moved. With
    # two passes the first may have been planned after every copy-out of its chunks
    # (store pieces only, nothing to re-read) and the second after fio: seen once in
    # a full .ci/run on a busy host; three passes put one inside the copy-outs.
    [ "$RACE_PASSES" -lt 3 ] || [ "$RR" -gt 0 ] \
        || fail "$RACE_PASSES passes of s3 during the copy-outs, yet no read was read again"
    ok "zero-copy queues: $FR fixed-buffer reads ($RR read again: moved under them), $FW fixed-buffer writes, $CP requests copied"
else
    [ "$FR$FW" = 00 ] || fail "copy path, yet zero-copy queues ran: $FR reads, $FW writes"
    ok "no zero-copy queue ran"
fi

if [ "$PATH_WANT" = zero-copy ]; then
    step "--workers-per-queue turns zero copy off: a warning at start, the reason in status"
    ODEV=$(start_daemon 120 --workers-per-queue 2) || fail "the start with workers did not come up"
    grep -q "zero copy is off.*--workers-per-queue 2" "$LOG" || fail "no warning that zero copy is off"
    ok "log: $(grep -m1 -o 'zero copy is off.*' "$LOG" | cut -c1-160)"
    D=$(ctl --json status | jq -c '.devices[0]')
    [ "$(echo "$D" | jq -r .data_path)" = copy ] || fail "workers, yet data path: $D"
    echo "$D" | jq -r .copy_reason | grep -q -- "--workers-per-queue 2" || fail "status does not say why: $D"
    ctl status | grep -q "^copying: *--workers-per-queue 2" || fail "the text status does not say why it copies"
    ok "status: data path copy, copy_reason '$(echo "$D" | jq -r .copy_reason)'"
    stop_daemon "$ODEV"
fi
echo "e2e_features: all checks passed ($(($(date +%s) - T0)) s)"
