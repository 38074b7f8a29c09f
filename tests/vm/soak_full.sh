#!/usr/bin/env bash
# tests/vm/soak_full.sh [BIN_DIR [SECS]] - a store that fills again and again under
# rolling snapshots while fio writes and verifies (issue 20: a full store never
# bricks itself), run as root in the VM guest:
#
#   mkdir -p /tmp/soakfull-bin && cp target/release/{ublk-snapd,snapctl} /tmp/soakfull-bin/
#   bash tests/vm/run.sh tests/vm/soak_full.sh /run/host/tmp/soakfull-bin        # CI: 90 s
#   VM_TIMEOUT=4800 bash tests/vm/run.sh tests/vm/soak_full.sh /run/host/tmp/soakfull-bin 1800
#
# A 32 MiB origin, a 96 MiB store (1536 chunks of 64 KiB), `--space-policy
# delete-oldest`. A writable snapshot w, activated and written whole first (so it owns
# every chunk it reads: its overwrites need no space, and origin writes need no
# copy-out for it; an active snapshot is never the policy's victim, so one that read
# the origin would end with ENOSPC once its copies filled the store; w's 512 chunks
# leave room for about two rolling snapshots' copies of the origin). Then for SECS
# seconds (default SOAK_FULL_SECS, 90):
# - fio on the origin's /dev/ublkbN and on w's device, each in a loop of runs: random
#   writes over the whole device (bssplit 4k/64k, O_DIRECT, io_uring, iodepth 8),
#   then fio's read-back of every block with verify=crc32c (verify_fatal);
# - `snapctl create roll-N` every SOAK_FULL_ROLL seconds (default 3): each makes the
#   origin's next writes copy-outs, so the store fills, and the policy deletes the
#   oldest rolling snapshots to make room, round after round.
# It fails on a fio run that exits non-zero (an EIO, ENOSPC or a verify mismatch), a
# rolling create refused for anything but ENOSPC, dmesg lines of I/O errors or
# BLK_STS_NOSPC on a ublk device, a daemon that dies or latches (`failed`), an
# online or offline `check` that is not clean, or a last snapshot that does not read
# what the origin reads. At the end it prints the figures: rounds (rolling
# snapshots taken), creates refused for space, snapshots the policy deleted, store
# fills (rounds in which it deleted), fio runs and bandwidth per device.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/soakfull-bin}}
SECS=${2:-${SOAK_FULL_SECS:-90}}
ROLL=${SOAK_FULL_ROLL:-3}
case $SECS$ROLL in *[!0-9]*) echo "SECS and SOAK_FULL_ROLL must be whole seconds, got '$SECS' and '$ROLL'" >&2; exit 2 ;; esac
[ "$ROLL" -ge 1 ] || { echo "SOAK_FULL_ROLL must be at least 1" >&2; exit 2; }
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_layout soakfull

# fio_loop NAME DEV SEED0: fio runs (write, then verify) until $W/stop; one JSON
# output per run, fio-NAME-K.json; the first failure ends the loop with its status
fio_loop() {
    trap - ERR
    local k=0 rc=0
    while [ ! -e "$W/stop" ]; do
        k=$((k + 1))
        fio --name="$1" --filename="$2" --rw=randwrite --bssplit=4k/50:64k/50 \
            --direct=1 --ioengine=io_uring --iodepth=8 --randseed=$(($3 + k)) \
            --verify=crc32c --verify_fatal=1 --output-format=json \
            --output="$W/fio-$1-$k.json" >"$W/fio-$1-$k.err" 2>&1 || rc=$?
        if [ "$rc" != 0 ]; then
            echo "$rc" >"$W/fio-$1.failed"
            return "$rc"
        fi
    done
}
# fio_sum NAME FIELD: the sum of jq FIELD over the runs of NAME (jobs[0])
fio_sum() { cat "$W"/fio-"$1"-*.json | jq -s "[.[].jobs[0].$2] | add // 0"; }
no_ublk_errors() { # no_ublk_errors WHEN: no I/O error or BLK_STS_NOSPC on a ublk device in dmesg
    if dmesg | grep -E 'ublkb[0-9]+' | grep -iE 'I/O error|critical space allocation|error' >"$W/dmesg-errors"; then
        head -n 5 "$W/dmesg-errors"
        fail "$1: the kernel logged errors on a ublk device"
    fi
}

e2e_begin $((SECS + 400)) fio jq sha256sum
echo "soak_full: $SECS s, a rolling snapshot every $ROLL s"

step "32 MiB origin, 96 MiB store, delete-oldest; w written whole"
head -c 32M /dev/urandom >"$ORIGIN"
truncate -s 96M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE" >/dev/null
ODEV=$(start_daemon 0 --space-policy delete-oldest) || fail "ublk-snapd did not start"
ctl create w >/dev/null
WDEV=$(ctl activate w)
dd if=/dev/urandom of="$WDEV" bs=1M count=32 oflag=direct status=none || fail "writing w whole"
NCHUNKS=$(st .usage.nr_chunks)
ok "origin $ODEV, w $WDEV; $(st .usage.nr_free) of $NCHUNKS chunks free"

step "fio on the origin and on w, a rolling snapshot every $ROLL s, for $SECS s"
rm -f "$W/stop"
fio_loop orig "$ODEV" 1000 &
FO=$!
fio_loop w "$WDEV" 2000 &
FW=$!
ROUNDS=0
REFUSED=0
FILLS=0
DEL=$(st .auto_deleted)
START=$(date +%s)
END=$((START + SECS))
while [ "$(date +%s)" -lt "$END" ]; do
    sleep "$ROLL"
    for p in "$FO" "$FW"; do kill -0 "$p" 2>/dev/null || break 2; done
    N=$((ROUNDS + REFUSED + 1))
    if ctl create "roll-$N" >/dev/null 2>"$W/create.err"; then
        ROUNDS=$((ROUNDS + 1))
    else
        grep -qi 'space' "$W/create.err" || fail "create roll-$N: $(cat "$W/create.err")"
        REFUSED=$((REFUSED + 1))
    fi
    ctl --json status >"$W/status.json" || fail "the daemon does not answer"
    [ "$(jq -r .failed "$W/status.json")" = false ] || fail "the store latched (failed)"
    D=$(jq -r .auto_deleted "$W/status.json")
    [ "$D" -gt "$DEL" ] && FILLS=$((FILLS + 1))
    DEL=$D
    echo "   round $N: $(jq -r '.usage.nr_free' "$W/status.json") chunks free, $D deleted by the policy, snapshots: $(ctl --json list | jq -r '[.snapshots[].name] | join(" ")')"
done
ELAPSED=$(($(date +%s) - START))
touch "$W/stop"
wait "$FO" || fail "fio on the origin failed (exit $(cat "$W/fio-orig.failed")): $(tail -n 5 "$W"/fio-orig-*.err | tail -n 5)"
wait "$FW" || fail "fio on w failed (exit $(cat "$W/fio-w.failed")): $(tail -n 5 "$W"/fio-w-*.err | tail -n 5)"
ok "every fio run wrote and verified (crc32c) without an error"
no_ublk_errors "after the writes"
[ "$FILLS" -ge 1 ] || fail "the store never filled: nothing was soaked"

[ "$(st .enospc_writes)" = 0 ] || fail "$(st .enospc_writes) writes refused with ENOSPC"

step "a last snapshot reads what the origin reads; checks"
AUTO=$(st .auto_deleted)
# room for it: the rolling snapshots but the newest go, and their passes end
ctl prune --prefix roll- --keep-last 1 >/dev/null
for _ in $(seq 1 600); do [ "$(st '.jobs | length')" = 0 ] && break; sleep 0.2; done
[ "$(st '.jobs | length')" = 0 ] || fail "the pruned snapshots' passes did not end: $(st .jobs)"
ctl create last >/dev/null
LDEV=$(ctl activate last)
[ "$(sha256sum <"$LDEV" | cut -c1-64)" = "$(sha256sum <"$ODEV" | cut -c1-64)" ] \
    || fail "the last snapshot does not read what the origin reads"
ctl deactivate last >/dev/null
ok "last reads the origin's sha256"
ctl check || fail "online check"
ctl status
stop_daemon "$ODEV"
ctl check --store "$STORE" || fail "offline check"
no_ublk_errors "at the end"
grep -E 'panicked' "$LOG" && fail "the daemon log shows a panic"

runs_o=$(ls "$W"/fio-orig-*.json | wc -l)
runs_w=$(ls "$W"/fio-w-*.json | wc -l)
mib() { echo "$(($1 / 1048576))"; }
bw() { # bw NAME: MiB/s written over the time its runs spent writing
    local b ms
    b=$(fio_sum "$1" write.io_bytes)
    ms=$(fio_sum "$1" write.runtime)
    echo "$((b * 1000 / (ms > 0 ? ms : 1) / 1024)) KiB/s"
}
wo=$(fio_sum orig write.io_bytes)
ww=$(fio_sum w write.io_bytes)
ro=$(fio_sum orig read.io_bytes)
rw=$(fio_sum w read.io_bytes)
echo
echo "soak_full figures ($SECS s asked, $ELAPSED s of writes, kernel $(uname -r)):"
echo "  rounds: $ROUNDS rolling snapshots taken, $REFUSED creates refused for space"
echo "  space policy: $AUTO snapshots deleted, the store filled in $FILLS rounds, 0 writes refused"
echo "  fio origin: $runs_o runs, $(mib "$wo") MiB written, $(mib "$ro") MiB verified, $(bw orig) written"
echo "  fio w:      $runs_w runs, $(mib "$ww") MiB written, $(mib "$rw") MiB verified, $(bw w) written"
echo "soak_full: all checks passed in $(($(date +%s) - T0)) s"
