#!/usr/bin/env bash
# tests/vm/e2e_space.sh [BIN_DIR] - the space policy end to end on a real kernel: a
# deliberately small store fills up under origin writes, run as root in the VM guest:
#
#   CARGO_TARGET_DIR=/tmp/target-space cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/space-bin && cp /tmp/target-space/release/{ublk-snapd,snapctl} /tmp/space-bin/
#   bash tests/vm/run.sh tests/vm/e2e_space.sh /run/host/tmp/space-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# A 64 MiB origin of random data, an 8 MiB store (128 chunks of 64 KiB, 16 of them the
# metadata reserve), every write O_DIRECT through /dev/ublkbN with dd, 256 KiB (one
# request) at a time. An image file mirrors every write that succeeded: the origin
# device must equal it byte for byte, so a refused write that half-happened, or a
# write that went elsewhere, fails the test. Each snapshot is compared, whole, with a
# copy of that image taken when it was created.
#
# 1. --space-policy fail: s1, s2, s3, each followed by a rewrite of the same 1 MiB
#    (so each holds copies of its own), then writes to fresh chunks until the store
#    is full: dd fails with ENOSPC ("No space left on device"; dmesg shows the
#    block layer's BLK_STS_NOSPC, so the daemon answered -ENOSPC, not -EIO); the
#    refused 256 KiB are unchanged; every snapshot reads what it read when taken;
#    `status` counts the refused write (enospc_writes, and the text line); the log
#    says why and where; online check clean. A 4 KiB write into a fresh chunk is
#    refused too. Deleting s1 gives its chunks back (in the background); the refused
#    write then succeeds.
# 2. --min-free, after a clean shutdown and an offline check: a guard of all the
#    free space refuses a write that needs a copy-out (ENOSPC, nothing written), not
#    one that needs none; restarted without the guard, the same write succeeds;
#    s2 and s3 still read their data.
# 3. --space-policy delete-oldest on a fresh store, s1 held, s2 active (a device up),
#    s3 neither: filling the store deletes s3 only (the log names it; status:
#    auto_deleted 1) and the writes go on into the space it held; with only the held
#    and the active snapshot left, ENOSPC, the refused write unchanged, s2 reads its
#    data through its device, s1 its own. Deactivated, the next write deletes s2;
#    released, the next deletes s1; both writes succeed.
# 4. Clean shutdown, offline check, restart: the store opens, online check clean,
#    the origin intact; no panic in the daemon log.
# 5. Readers (issue 20): on a fresh store under delete-oldest, r1..r4; r1 activated
#    and read whole with dd in a loop through its /dev/ublkbN, r2 exported over NBD
#    and read the same way through nbd-client's /dev/nbd0. `prune --keep-last 1`
#    deletes r3 only and lists r1 (active) and r2 (exported) as skipped; filling the
#    store deletes r4 only, then ENOSPC; every pass of both readers, before, during
#    and after, reads the sha256 the snapshot had when taken; checks clean.
# Any mismatch exits non-zero. About 30 s in the guest under TCG (90 s on a busy host).
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/space-bin}}
DAEMON_QUEUES=1
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_layout space

R=$((256 << 10)) # one dd record, one request: 4 chunks of 64 KiB
NREC=$(((64 << 20) / R)) # records on the origin
EXPECT=$W/expect.img
NEW=$W/new.bin
names() { ctl --json list | jq -r '[.snapshots[].name] | join(",")'; }
# expect_enospc WHAT: the last owrite failed with ENOSPC
expect_enospc() {
    [ "$DD_RC" != 0 ] || fail "$1: the write succeeded"
    case $DD_ERR in *"No space left on device"*) ;; *) fail "$1: dd failed, but not with ENOSPC: $DD_ERR" ;; esac
    ok "$1: dd exit $DD_RC, '${DD_ERR##*: }' after $DD_OUT records"
}
# origin_matches WHAT [FROM COUNT]: the origin device equals $EXPECT, whole or in
# records FROM..FROM+COUNT (so refused records are unchanged: $EXPECT never got them).
# Pipes, not <(...): the guest has no /dev/fd.
origin_matches() {
    local from=${2:-0} count=${3:-$NREC}
    dd if="$ODEV" bs=$R skip="$from" count="$count" iflag=direct status=none \
        | cmp -n $((count * R)) -i 0:$((from * R)) - "$EXPECT" \
        || fail "$1: the origin device differs from the expected image"
    ok "$1: the origin matches the expected image (records $from..$((from + count)))"
}
snap() { # snap NAME: create NAME, keep a copy of what it must read
    ctl create "$1" >/dev/null
    cp "$EXPECT" "$W/$1.img"
}
verify_snap() { # verify_snap NAME: activate, compare the whole device, deactivate
    local dev
    dev=$(ctl activate "$1")
    dd if="$dev" bs=1M iflag=direct status=none | cmp - "$W/$1.img" \
        || fail "$1 does not read what it read when taken"
    ctl deactivate "$1" >/dev/null
    ok "$1 reads its original data (all $((NREC * R)) bytes compared)"
}

e2e_begin "${E2E_WATCHDOG:-600}" jq sha256sum cmp nbd-client
modprobe nbd nbds_max=2 || fail "modprobe nbd"

step "64 MiB origin of random data, 8 MiB store, policy fail"
head -c 64M /dev/urandom >"$ORIGIN"
cp "$ORIGIN" "$EXPECT"
head -c 16M /dev/urandom >"$NEW"
truncate -s 8M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
ODEV=$(start_daemon) || fail "ublk-snapd did not start"
[ "$(st .space_policy)" = fail ] || fail "status: space policy $(st .space_policy), want fail"
[ "$(cat /sys/block/"${ODEV#/dev/}"/queue/max_sectors_kb)" -ge 256 ] || fail "a 256 KiB write would be split"
ctl status

step "snapshots s1, s2, s3, each followed by a rewrite of the first MiB"
for i in 1 2 3; do
    snap s$i
    owrite $((4 * i)) 0 4
    [ "$DD_RC" = 0 ] || fail "rewrite after s$i: $DD_ERR"
done
echo "free: $(st .usage.nr_free) of $(st .usage.nr_chunks) chunks"

step "fill the store: writes to fresh chunks until ENOSPC"
owrite 0 32 48
expect_enospc "fill"
K=$DD_OUT
[ "$K" -gt 0 ] || fail "not even one write fitted"
REFUSED=$((32 + K))
origin_matches "after ENOSPC"
for i in 1 2 3; do verify_snap s$i; done
ctl status | tee "$W/status.txt"
FREE=$(st .usage.nr_free)
RESERVE=$FREE # what a full store keeps free: the metadata reserve
[ "$(st .enospc_writes)" = 1 ] || fail "status: enospc_writes $(st .enospc_writes), want 1"
grep -q 'space policy: *fail, min free 0 chunks, 0 snapshots deleted automatically, 1 writes refused (no space)' \
    "$W/status.txt" || fail "snapctl status does not show the refused write"
ok "status: $FREE chunks free (the metadata reserve), 1 write refused"
log_has "fail with ENOSPC (policy: fail)"
log_has "write refused with ENOSPC: no store space .*offset=$((REFUSED * R)) .*out of data space"
# BLK_STS_NOSPC: the daemon completed the request with -ENOSPC, not -EIO
dmesg | grep -m1 "critical space allocation error, dev ${ODEV#/dev/}" \
    || fail "no BLK_STS_NOSPC ('critical space allocation error') for ${ODEV#/dev/} in dmesg"
ctl check || fail "online check after ENOSPC"
ok "online check clean"

step "a 4 KiB write into a fresh chunk is refused too"
DD_RC=0
dd if="$NEW" of="$ODEV" bs=4096 count=1 seek=$(((REFUSED + 1) * 64 + 1)) oflag=direct status=none \
    2>"$W/dd.err" || DD_RC=$?
DD_ERR=$(cat "$W/dd.err")
DD_OUT=0
expect_enospc "4 KiB write"
origin_matches "after the refused 4 KiB write" "$REFUSED" 2
[ "$(st .enospc_writes)" = 2 ] || fail "status: enospc_writes $(st .enospc_writes), want 2"

step "delete s1: its space comes back, the refused write succeeds"
ctl delete s1
wait_reclaimed
[ "$(st .usage.nr_free)" -gt "$FREE" ] || fail "deleting s1 freed nothing: $(st .usage.nr_free) free"
ok "free chunks: $FREE -> $(st .usage.nr_free)"
owrite "$K" "$REFUSED" 1
[ "$DD_RC" = 0 ] || fail "the refused write still fails: $DD_ERR"
ok "the refused write succeeded"
origin_matches "after the retried write" 32 $((REFUSED - 30))
ctl check || fail "online check after the delete"

step "clean shutdown, offline check; restart with --min-free covering all free space"
FREE=$(st .usage.nr_free)
stop_daemon "$ODEV"
ctl check --store "$STORE" || fail "offline check"
ODEV=$(start_daemon 0 --min-free $((FREE * 64))K) || fail "restart with --min-free failed"
[ "$(st .min_free_chunks)" = "$FREE" ] || fail "status: min_free_chunks $(st .min_free_chunks), want $FREE"
[ "$(st .usage.nr_free)" = "$FREE" ] || fail "free chunks changed across the restart: $(st .usage.nr_free), was $FREE"
owrite 8 128 1
expect_enospc "write under the min-free guard"
origin_matches "after the guarded write" 128 1
[ "$(st .enospc_writes)" = 1 ] || fail "status: enospc_writes $(st .enospc_writes), want 1"
[ "$(grep -c 'write refused with ENOSPC' "$LOG")" = 3 ] || fail "the log does not show the third refused write"
owrite 9 32 1
[ "$DD_RC" = 0 ] || fail "a write needing no space was refused under the guard: $DD_ERR"
ok "a write to an already copied chunk is not refused"
origin_matches "after the rewrite" 32 1
ctl status
stop_daemon "$ODEV"
ODEV=$(start_daemon) || fail "restart without --min-free failed"
owrite 8 128 1
[ "$DD_RC" = 0 ] || fail "without the guard the write still fails: $DD_ERR"
ok "without the guard the same write succeeds"
origin_matches "after the write without the guard"
for i in 2 3; do verify_snap s$i; done
ctl check || fail "online check after restart"
stop_daemon "$ODEV"

step "delete-oldest on a fresh store: s1 held, s2 active, s3 neither"
truncate -s 0 "$STORE"
truncate -s 8M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
ODEV=$(start_daemon 0 --space-policy delete-oldest) || fail "start with delete-oldest failed"
[ "$(st .space_policy)" = delete-oldest ] || fail "status: space policy $(st .space_policy)"
for i in 1 2 3; do
    snap s$i
    [ "$i" = 1 ] && ctl hold s1
    owrite $((4 * i + 16)) 0 4
    [ "$DD_RC" = 0 ] || fail "rewrite after s$i: $DD_ERR"
done
S2DEV=$(ctl activate s2)
FREE=$(st .usage.nr_free)
echo "free: $FREE chunks; s2 active as $S2DEV"
owrite 0 160 60
expect_enospc "fill with delete-oldest"
[ $((DD_OUT * 4)) -gt $((FREE - RESERVE)) ] || fail "only $DD_OUT records fitted: nothing was made room for"
ok "$((DD_OUT * 4)) chunks written with $FREE free at the start ($RESERVE of them the metadata reserve)"
[ "$(names)" = s1,s2 ] || fail "snapshots left: $(names), want s1,s2 (held, active)"
[ "$(st .auto_deleted)" = 1 ] || fail "status: auto_deleted $(st .auto_deleted), want 1"
ok "s3 deleted automatically; s1 (held) and s2 (active) kept"
grep 'deleting the oldest unheld snapshot' "$LOG" | grep -o 'snapshot=[^ ]*' | tr '\n' ' ' >"$W/victims"
[ "$(cat "$W/victims")" = "snapshot=s3 " ] || fail "log names victims '$(cat "$W/victims")', want s3"
ok "log names s3 only"
log_has "every snapshot left is held or active"
origin_matches "after the fill"
[ "$(st .enospc_writes)" = 1 ] || fail "status: enospc_writes $(st .enospc_writes), want 1"
dd if="$S2DEV" bs=1M iflag=direct status=none | cmp - "$W/s2.img" \
    || fail "the active s2 does not read what it read when taken"
ok "the active s2 reads its original data through its device"
ctl deactivate s2 >/dev/null
verify_snap s1
ctl status
ctl check || fail "online check after the automatic delete"

step "deactivated, s2 goes; released, s1 goes; the refused write succeeds"
REFUSED=$((160 + DD_OUT))
owrite "$DD_OUT" "$REFUSED" 1
[ "$DD_RC" = 0 ] || fail "after deactivating s2 the write still fails: $DD_ERR"
[ "$(names)" = s1 ] || fail "snapshots left: $(names), want s1"
[ "$(st .auto_deleted)" = 2 ] || fail "status: auto_deleted $(st .auto_deleted), want 2"
ok "s2 deleted automatically once deactivated"
origin_matches "after the write" "$REFUSED" 1
verify_snap s1
ctl release s1
owrite $((DD_OUT + 1)) $((REFUSED + 1)) 20
[ "$DD_RC" = 0 ] || fail "after release the write still fails: $DD_ERR"
[ "$(names)" = "" ] || fail "snapshots left: $(names)"
[ "$(st .auto_deleted)" = 3 ] || fail "status: auto_deleted $(st .auto_deleted), want 3"
grep 'deleting the oldest unheld snapshot' "$LOG" | tail -n 1 | grep -q 'snapshot=s1' || fail "the log does not name s1"
ok "s1 deleted automatically once released"
origin_matches "after the writes" "$REFUSED" 21

step "clean shutdown, offline check, restart, online check"
stop_daemon "$ODEV"
ctl check --store "$STORE" || fail "offline check"
ODEV=$(start_daemon 0 --space-policy delete-oldest) || fail "restart failed"
ctl check || fail "online check after restart"
origin_matches "after restart"
stop_daemon "$ODEV"
step "readers keep their snapshots: r1 read through its ublk device, r2 over NBD"
truncate -s 0 "$STORE"
truncate -s 8M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
ODEV=$(start_daemon 0 --space-policy delete-oldest) || fail "start with delete-oldest failed"
for i in 1 2 3 4; do
    snap r$i
    owrite $((4 * i + 40)) 0 4
    [ "$DD_RC" = 0 ] || fail "rewrite after r$i: $DD_ERR"
done
R1DEV=$(ctl activate r1)
ctl export r2 >/dev/null
nbd-client -u -N r2 "$STATE/snapd.nbd.sock" /dev/nbd0 >>"$LOG" 2>&1 || fail "nbd-client r2"
rm -f "$W/stop"
reader() { # reader NAME DEV: read DEV whole until $W/stop exists; a line per pass
    trap - ERR
    local n=0 got want
    want=$(sha256sum <"$W/$1.img" | cut -c1-64)
    while [ ! -e "$W/stop" ]; do
        got=$(dd if="$2" bs=1M iflag=direct status=none | sha256sum | cut -c1-64) || got="read error"
        n=$((n + 1))
        if [ "$got" = "$want" ]; then echo "pass $n ok"; else echo "pass $n BAD $got"; fi
    done >"$W/reader-$1.log" 2>&1
}
passes() { # passes NAME: the reader's good passes so far
    local n
    n=$(grep -c ok "$W/reader-$1.log" 2>/dev/null) || true
    echo "${n:-0}"
}
reader r1 "$R1DEV" &
P1=$!
reader r2 /dev/nbd0 &
P2=$!
for _ in $(seq 1 300); do [ "$(passes r1)" -ge 1 ] && [ "$(passes r2)" -ge 1 ] && break; sleep 0.2; done
ok "r1 ($R1DEV) and r2 (/dev/nbd0) read in loops: $(passes r1) and $(passes r2) passes so far"
ctl --json prune --keep-last 1 >"$W/prune.json"
[ "$(jq -r '[.deleted[].name] | join(",")' "$W/prune.json")" = r3 ] \
    || fail "prune deleted $(jq -c .deleted "$W/prune.json"), want r3 only"
jq -e '.skipped[] | select(.name == "r1") | .reason | startswith("active as /dev/ublkb")' "$W/prune.json" >/dev/null \
    || fail "prune does not skip r1 as active: $(jq -c .skipped "$W/prune.json")"
jq -e '.skipped[] | select(.name == "r2") | .reason | startswith("exported over NBD")' "$W/prune.json" >/dev/null \
    || fail "prune does not skip r2 as exported: $(jq -c .skipped "$W/prune.json")"
ok "prune --keep-last 1: r3 deleted, r4 kept, skipped $(jq -c '[.skipped[] | [.name, .reason]]' "$W/prune.json")"
wait_reclaimed
B1=$(passes r1)
B2=$(passes r2)
owrite 0 100 60
expect_enospc "fill with delete-oldest under readers"
[ "$(names)" = r1,r2 ] || fail "snapshots left: $(names), want r1,r2 (active, exported)"
[ "$(st .auto_deleted)" = 1 ] || fail "status: auto_deleted $(st .auto_deleted), want 1"
grep 'deleting the oldest unheld snapshot' "$LOG" | tail -n 1 | grep -q 'snapshot=r4' || fail "the log does not name r4"
ok "the fill deleted r4 only; r1 (read through ublk) and r2 (read over NBD) kept"
origin_matches "after the fill under readers"
# a whole pass of each reader after the fill began
for _ in $(seq 1 600); do [ "$(passes r1)" -ge $((B1 + 2)) ] && [ "$(passes r2)" -ge $((B2 + 2)) ] && break; sleep 0.2; done
touch "$W/stop"
wait "$P1" "$P2"
for r in r1 r2; do
    grep -q BAD "$W/reader-$r.log" && fail "$r misread: $(grep -m1 BAD "$W/reader-$r.log")"
    [ "$(passes $r)" -ge 2 ] || fail "$r: only $(passes $r) passes"
done
[ "$(passes r1)" -ge $((B1 + 2)) ] && [ "$(passes r2)" -ge $((B2 + 2)) ] || fail "the readers stalled"
ok "every pass read the original sha256: r1 $(passes r1) passes, r2 $(passes r2) passes"
nbd-client -d /dev/nbd0 >>"$LOG" 2>&1 || true
ctl unexport r2 >/dev/null
ctl deactivate r1 >/dev/null
ctl check || fail "online check after the readers"
stop_daemon "$ODEV"
ctl check --store "$STORE" || fail "offline check"

grep -E 'panicked|thread .* panicked' "$LOG" && fail "the daemon log shows a panic"
echo
echo "e2e_space: all checks passed in $(($(date +%s) - T0)) s"
