#!/usr/bin/env bash
# tests/vm/soak_kill.sh BIN_DIR [KILLS] - kill -9 soak of ublk-snapd (not part of CI),
# run as root in the VM guest:
#
#   mkdir -p /tmp/soak-bin && cp target/release/{ublk-snapd,snapctl} /tmp/soak-bin/
#   VM_MEM=3G VM_TIMEOUT=7200 bash tests/vm/run.sh tests/vm/soak_kill.sh /run/host/tmp/soak-bin 50
#
# Setup: a 128 MiB origin file filled with a random pattern (sha256 recorded), a
# 256 MiB store, the daemon, a snapshot s0 of the origin (activated) and a
# writable snapshot w1 (activated).  Then KILLS times:
#   1. fio randwrite 4k, direct I/O, --verify=crc32c --do_verify=0 --fsync=16
#      --verify_state_save=1 --rate_iops=,1500 on the origin device and on w1's device, in the
#      background;
#   2. sleep 1-4 s (random), kill -9 the daemon, restart it (it recovers the same
#      devices from its state file; in-flight requests are reissued);
#   3. both fio writers must finish without error;
#   4. fio --verify_only --verify_state_load=1 (same job parameters) on both
#      devices: every block fio wrote must read back with a valid crc32c header;
#   5. s0's sha256 must equal the origin's original sha256;
#   6. `snapctl check` (online) must exit 0.
# SOAK_DSYNC=1 adds --sync=dsync (every write is FUA). Every acknowledged write must
# survive a kill -9, flushed or not: the kernel keeps the device alive across the
# restart, so a lost completed write would be silent corruption (docs/architecture.md,
# "A killed daemon is not a power loss").
# SOAK_ROLL=1: every iteration also snapshots the origin first (r<i>, sha256 of the
# origin device recorded), so the origin's writes are copy-outs again and kills land
# mid-copy-out; after the restart r<i> must read what the origin read when it was
# taken, then it is deleted.
# SOAK_DAEMON_ARGS: extra ublk-snapd options (e.g. "--workers-per-queue 4": copy-outs
# of one queue run at once).
# SOAK_RESTART_TIMEOUT (default 90 s): a restart that is not ready by then fails the
# run after printing the blocked tasks' stacks and blk-mq state.
# One line per iteration, "soak_kill: N kills survived" at the end; exits non-zero
# on the first failure, saying what failed.
set -Eeuo pipefail

BIN=${1:?usage: soak_kill.sh BIN_DIR [KILLS]}
KILLS=${2:-50}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${SOAK_DIR:-/tmp/soak-kill}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-soak.log
FIO_SIZE=${SOAK_FIO_SIZE:-32M}
# write rate cap per device so the writers are still running at the kill (sleep <= 4 s):
# 32 MiB of 4k blocks at 1500 IOPS take >= 5.5 s
FIO_RATE=${SOAK_FIO_RATE_IOPS:-1500}
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
snap_dev() { ctl --json list | jq -r --arg n "$1" '.snapshots[] | select(.name==$n) | .device'; }
# fio_job NAME DEV SEED EXTRA...: the write job's parameters; the verify pass uses the
# same ones (the verify state file is <cwd>/local-NAME-0-verify.state)
fio_job() {
    local name=$1 dev=$2 seed=$3
    shift 3
    fio --name="$name" --filename="$dev" --size="$FIO_SIZE" --bs=4k --rw=randwrite \
        --direct=1 --ioengine=io_uring --iodepth=8 --randseed="$seed" \
        ${SOAK_DSYNC:+--sync=dsync} --verify=crc32c --verify_fatal=1 --verify_state_save=1 \
        --output-format=terse "$@"
}

[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
for t in fio jq sha256sum; do command -v $t >/dev/null || fail "$t missing"; done
rm -rf "$W"
mkdir -p "$W"
: >"$LOG"
cd "$W"
echo "soak_kill: binaries $BIN, $KILLS kills, fio size $FIO_SIZE, daemon log $LOG, kernel $(uname -r)"

# origin with a known pattern, store, daemon
head -c 128M /dev/urandom >"$ORIGIN"
SUM0=$(sha256sum <"$ORIGIN" | cut -d' ' -f1)
truncate -s 256M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE" >/dev/null
# shellcheck disable=SC2086 # SOAK_DAEMON_ARGS: word-split on purpose
ODEV=$(start_daemon 0 ${SOAK_DAEMON_ARGS:-}) || fail "ublk-snapd did not start"
[ -b "$ODEV" ] || fail "origin device $ODEV is not a block device"
ctl create s0 >/dev/null
S0DEV=$(ctl activate s0)
ctl create w1 >/dev/null
W1DEV=$(ctl activate w1)
[ "$(sha256sum <"$S0DEV" | cut -d' ' -f1)" = "$SUM0" ] || fail "s0 differs from the origin pattern at the start"
echo "setup: origin $ODEV, s0 $S0DEV, w1 $W1DEV, origin sha256 ${SUM0:0:16}..., write_cache $(cat /sys/block/"${W1DEV#/dev/}"/queue/write_cache 2>/dev/null) ($(($(date +%s) - T0)) s)"

for i in $(seq 1 "$KILLS"); do
    TI=$(date +%s)
    rm -f ./*-verify.state
    if [ -n "${SOAK_ROLL:-}" ]; then
        RSUM=$(sha256sum <"$ODEV" | cut -d' ' -f1)
        ctl create "r$i" >/dev/null
        RDEV=$(ctl activate "r$i")
    fi
    fio_job orig "$ODEV" "$i" --do_verify=0 --fsync=16 --rate_iops=,"$FIO_RATE" >"$W/fio-orig-w.txt" 2>&1 &
    FO=$!
    fio_job w1 "$W1DEV" "$((i + 100000))" --do_verify=0 --fsync=16 --rate_iops=,"$FIO_RATE" >"$W/fio-w1-w.txt" 2>&1 &
    FW=$!
    PID=$(daemon_pid)
    SLEEP=$((RANDOM % 4 + 1))
    sleep "$SLEEP"
    kill -0 "$FO" 2>/dev/null || kill -0 "$FW" 2>/dev/null || echo "   note: iteration $i: fio already done before the kill"
    kill -9 "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
    # shellcheck disable=SC2086
    NDEV=$(start_daemon "${SOAK_RESTART_TIMEOUT:-90}" ${SOAK_DAEMON_ARGS:-}) \
        || { diag; fail "iteration $i: restart failed or timed out"; }
    [ "$NDEV" = "$ODEV" ] || fail "iteration $i: origin came back as $NDEV, was $ODEV"
    [ "$(snap_dev s0)" = "$S0DEV" ] && [ "$(snap_dev w1)" = "$W1DEV" ] \
        || fail "iteration $i: snapshot devices not recovered: $(ctl list)"
    wait "$FO" || { cat "$W/fio-orig-w.txt"; fail "iteration $i: fio write on the origin failed across the kill"; }
    wait "$FW" || { cat "$W/fio-w1-w.txt"; fail "iteration $i: fio write on w1 failed across the kill"; }
    for s in local-orig-0-verify.state local-w1-0-verify.state; do
        [ -s "$s" ] || fail "iteration $i: fio wrote no verify state $s"
    done
    echo 3 >/proc/sys/vm/drop_caches
    fio_job orig "$ODEV" "$i" --verify_only --verify_state_load=1 >"$W/fio-orig-v.txt" 2>&1 \
        || { cat "$W/fio-orig-v.txt"; fail "iteration $i: fio verify on the origin failed"; }
    fio_job w1 "$W1DEV" "$((i + 100000))" --verify_only --verify_state_load=1 >"$W/fio-w1-v.txt" 2>&1 \
        || { cat "$W/fio-w1-v.txt"; fail "iteration $i: fio verify on w1 failed"; }
    S=$(sha256sum <"$S0DEV" | cut -d' ' -f1)
    [ "$S" = "$SUM0" ] || fail "iteration $i: s0 sha256 changed: $S, want $SUM0"
    if [ -n "${SOAK_ROLL:-}" ]; then
        [ "$(snap_dev "r$i")" = "$RDEV" ] || fail "iteration $i: r$i's device not recovered"
        S=$(sha256sum <"$RDEV" | cut -d' ' -f1)
        [ "$S" = "$RSUM" ] || fail "iteration $i: r$i does not read the origin as it was when taken"
        ctl deactivate "r$i" >/dev/null
        ctl delete "r$i" >/dev/null
    fi
    CHK=$(ctl check 2>&1) || { echo "$CHK"; fail "iteration $i: snapctl check (online) failed"; }
    echo "kill $i/$KILLS: slept ${SLEEP}s, daemon $PID killed, restarted, origin+w1 fio verify ok, s0 unchanged, check ok ($(($(date +%s) - TI)) s)"
done

kill -TERM "$(daemon_pid)" || true
sleep 1
echo "soak_kill: $KILLS kills survived in $(($(date +%s) - T0)) s"
