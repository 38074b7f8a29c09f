#!/usr/bin/env bash
# tests/vm/e2e_grow.sh [BIN_DIR] - `snapctl grow-store` end to end on a real kernel: a
# full store, grown online while the daemon serves, then accepts the writes it
# refused. Run as root in the VM guest:
#
#   cargo build -p ublk-snapd -p tools
#   mkdir -p /tmp/grow-bin && cp target/debug/{ublk-snapd,snapctl} /tmp/grow-bin/
#   bash tests/vm/run.sh tests/vm/e2e_grow.sh /run/host/tmp/grow-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# A 64 MiB origin of random data, an 8 MiB store (policy fail), snapshot s1, O_DIRECT
# 256 KiB writes through /dev/ublkbN until ENOSPC; an image mirrors every write that
# succeeded, and the origin device must equal it byte for byte.
# 1. grow-store on a store that did not grow: exit 2, "did not grow", nothing changed.
# 2. truncate the store file to 96 MiB, grow-store (online): status shows the new
#    chunks; the refused write and the rest of the fill succeed; s1 reads what it
#    read when taken; online check clean; the new part is preallocated (the file's
#    blocks cover it).
# 3. clean shutdown, offline check, restart: the store opens at the new size, s1 and
#    the origin intact; an offline grow-store after another truncate works too.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/grow-bin}}
DAEMON_QUEUES=1
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_layout grow

R=$((256 << 10))
NREC=$(((64 << 20) / R))
EXPECT=$W/expect.img
NEW=$W/new.bin
origin_matches() {
    dd if="$ODEV" bs=1M iflag=direct status=none | cmp - "$EXPECT" \
        || fail "$1: the origin device differs from the expected image"
    ok "$1: the origin matches the expected image"
}
verify_s1() {
    local dev
    dev=$(ctl activate s1)
    dd if="$dev" bs=1M iflag=direct status=none | cmp - "$W/s1.img" \
        || fail "s1 does not read what it read when taken"
    ctl deactivate s1 >/dev/null
    ok "s1 reads its original data"
}

e2e_begin "${E2E_WATCHDOG:-600}" jq cmp

step "64 MiB origin, 8 MiB store (preallocated), policy fail, snapshot s1"
head -c 64M /dev/urandom >"$ORIGIN"
cp "$ORIGIN" "$EXPECT"
head -c 64M /dev/urandom >"$NEW"
truncate -s 8M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
ODEV=$(start_daemon) || fail "ublk-snapd did not start"
ctl create s1 >/dev/null
cp "$EXPECT" "$W/s1.img"

step "fill the store until ENOSPC"
owrite 0 0 "$NREC"
[ "$DD_RC" != 0 ] || fail "the whole origin fitted in an 8 MiB store"
case $DD_ERR in *"No space left on device"*) ;; *) fail "dd failed, but not with ENOSPC: $DD_ERR" ;; esac
K=$DD_OUT
ok "ENOSPC after $K records"
origin_matches "after ENOSPC"
CHUNKS=$(st .usage.nr_chunks)

step "grow-store on a store that did not grow: refused, nothing changed"
RC=0
ctl grow-store 2>"$W/grow.err" || RC=$?
[ "$RC" = 2 ] || fail "grow-store exited $RC, want 2: $(cat "$W/grow.err")"
grep -q "did not grow" "$W/grow.err" || fail "grow-store said: $(cat "$W/grow.err")"
[ "$(st .usage.nr_chunks)" = "$CHUNKS" ] || fail "chunks changed"
# (no txn check: the daemon's periodic commit and late writeback may commit meanwhile;
# the store's size is what a refused growth must leave alone)
ok "exit 2: $(cat "$W/grow.err")"

step "truncate the store to 96 MiB, grow-store online"
truncate -s 96M "$STORE"
ctl --json grow-store | tee "$W/grow.json"
[ "$(jq -r .new_bytes "$W/grow.json")" = $((96 << 20)) ] || fail "new size $(jq -r .new_bytes "$W/grow.json")"
[ "$(st .usage.nr_chunks)" = 1536 ] || fail "status: $(st .usage.nr_chunks) chunks, want 1536"
STORAGE=$(jq -r .storage "$W/grow.json")
if [ "$STORAGE" = preallocated ]; then
    [ $(($(stat -c %b "$STORE") * 512)) -ge $((96 << 20)) ] || fail "the store file has $(stat -c %b "$STORE") blocks"
fi
ok "1536 chunks, $(st .usage.nr_free) free, new part $STORAGE"

step "the refused write and the rest of the fill now succeed"
owrite "$K" "$K" $((NREC - K))
[ "$DD_RC" = 0 ] || fail "writes after the growth: $DD_ERR"
ok "$DD_OUT records written after the growth"
origin_matches "after the growth"
verify_s1
ctl check || fail "online check after the growth"
[ "$(st .enospc_writes)" = 1 ] || fail "enospc_writes $(st .enospc_writes), want 1"

step "clean shutdown, offline check, offline grow-store, restart"
stop_daemon
ctl check --store "$STORE" || fail "offline check"
truncate -s 112M "$STORE"
ctl grow-store --store "$STORE" || fail "offline grow-store"
ctl check --store "$STORE" || fail "offline check after the offline growth"
ODEV=$(start_daemon) || fail "restart failed"
[ "$(st .usage.nr_chunks)" = 1792 ] || fail "status after restart: $(st .usage.nr_chunks) chunks, want 1792"
origin_matches "after the restart"
verify_s1
ctl check || fail "online check after the restart"
stop_daemon
grep -qi panic "$LOG" && fail "the daemon panicked"
ok "no panic in the daemon log"
echo "e2e_grow: PASS"
