#!/usr/bin/env bash
# tests/vm/e2e_nbd.sh [BIN_DIR] - the NBD export with the kernel's own client, run as
# root in the VM guest:
#
#   CARGO_TARGET_DIR=/tmp/target-nbd cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/nbd-bin && cp /tmp/target-nbd/release/{ublk-snapd,snapctl} /tmp/nbd-bin/
#   bash tests/vm/run.sh tests/vm/e2e_nbd.sh /run/host/tmp/nbd-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# Needs nbd-client (Debian package nbd-client on the host) and the guest kernel's
# nbd module (modprobe nbd; the guest has the kernel's module tree).
#
# 1. ext4 on the origin's ublk device, files written, unmounted; snapshot s1; the
#    origin rewritten (copy-outs). s1 exported read-only; nbd-client attaches it as
#    /dev/nbd0; mounted read-only (noload), its files' sha256 equal those taken
#    before the rewrite; a write to /dev/nbd0 fails (read-only export).
# 2. s2 exported --writable as /dev/nbd1; fio --verify (random 4 KiB and 64 KiB
#    writes, direct, end_fsync) on it passes; s2 activated as a ublk device reads
#    the same bytes as /dev/nbd1 (NBD and ublk share the store paths).
# 3. kill -9 of the daemon with both clients attached: the clients get errors (no
#    hang); restarted, the daemon serves both exports again (state file); s2
#    reattached, fio --verify_only finds every block of step 2 (the completed,
#    flushed writes survived); s1 mounts again with the same sums.
# 4. Clean shutdown, offline check clean, no panic in the log.
# About a minute in the guest under TCG.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/nbd-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-nbd}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
NBDSOCK=$W/run/snapd.nbd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-nbd.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v nbd-client >/dev/null || fail "nbd-client is not installed (apt-get install nbd-client)"
modprobe nbd nbds_max=4 || fail "modprobe nbd"
rm -rf "$W"
mkdir -p "$W" "$OUT" "$W/mnt"
: >"$LOG"

attach() { # attach EXPORT DEV
    nbd-client -u -N "$1" "$NBDSOCK" "$2" >>"$LOG" 2>&1 || fail "nbd-client $1 $2"
    ok "nbd-client attached $1 as $2 ($(blockdev --getsize64 "$2") bytes)"
}
detach() { nbd-client -d "$1" >>"$LOG" 2>&1 || true; }

step "origin, store, daemon"
truncate -s 128M "$ORIGIN"
truncate -s 256M "$STORE"
"$SNAPCTL" format --origin "$ORIGIN" --store "$STORE" >/dev/null
ODEV=$(start_daemon 60)
ok "daemon up, origin $ODEV"

step "1. ext4, s1, the origin rewritten; s1 over NBD, read-only"
mkfs.ext4 -q -F "$ODEV"
mount "$ODEV" "$W/mnt"
for i in 1 2 3 4; do head -c 4M /dev/urandom >"$W/mnt/f$i"; done
sums "$W/mnt" "$W/s1.sums"
umount "$W/mnt"
ctl create s1 >/dev/null
mount "$ODEV" "$W/mnt"
for i in 1 2 3 4; do head -c 4M /dev/urandom >"$W/mnt/f$i"; done
sync
umount "$W/mnt"
ctl export s1 | grep -q "nbd+unix:///s1?socket=$NBDSOCK" || fail "export s1 URI"
attach s1 /dev/nbd0
mount -o ro,noload /dev/nbd0 "$W/mnt"
sums "$W/mnt" "$W/s1.now"
cmp -s "$W/s1.sums" "$W/s1.now" || fail "s1 over NBD differs from the origin before the rewrite"
ok "s1's files over NBD equal the origin's before the rewrite"
umount "$W/mnt"
if dd if=/dev/zero of=/dev/nbd0 bs=4k count=1 oflag=direct status=none 2>/dev/null; then
    fail "a write to the read-only export succeeded"
fi
ok "a write to the read-only export fails"
ctl --json list | jq -e '.snapshots[] | select(.name=="s1") | .exports == ["s1"]' >/dev/null || fail "list shows the export"
ctl --json status | jq -e '.nbd.exports[] | select(.export=="s1") | .connections == 1' >/dev/null || fail "status counts the client"
ok "list and status show the export and its client"

step "2. s2 writable over NBD: fio --verify; the same bytes through ublk"
ctl create s2 >/dev/null
ctl export s2 --writable >/dev/null
attach s2 /dev/nbd1
fio_job() { # fio_job NAME EXTRA...
    fio --name="$1" --filename=/dev/nbd1 --direct=1 --ioengine=psync --size=32M \
        --rw=randwrite --bssplit=4k/50:64k/50 --verify=crc32c --verify_fatal=1 \
        --randseed=14 --end_fsync=1 "${@:2}" >"$W/fio-$1.log" 2>&1 || {
        tail -n 20 "$W/fio-$1.log"
        fail "fio $1"
    }
}
fio_job write
ok "fio randwrite + verify over NBD"
SDEV=$(ctl activate s2)
cmp -n $((32 << 20)) /dev/nbd1 "$SDEV" || fail "s2 over NBD differs from s2 through ublk"
ok "s2 over NBD equals s2 through ublk ($SDEV), first 32 MiB"
ctl deactivate s2 >/dev/null

step "3. kill -9 with both clients attached; restart; the exports are back"
pid=$(daemon_pid)
kill -9 "$pid"
sleep 1
if timeout 20 dd if=/dev/nbd1 of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
    ok "a read after the kill succeeded (served before the socket closed?)"
else
    ok "a read after the kill fails (no hang)"
fi
detach /dev/nbd0
detach /dev/nbd1
ODEV=$(start_daemon 60)
ok "daemon restarted, origin $ODEV"
ctl --json status | jq -e '[.nbd.exports[].export] == ["s1","s2"]' >/dev/null || fail "exports after the restart: $(ctl --json status | jq -c .nbd)"
ok "both exports restored from the state file"
attach s2 /dev/nbd1
fio_job write --verify_only
ok "every block fio wrote over NBD survived the kill"
attach s1 /dev/nbd0
mount -o ro,noload /dev/nbd0 "$W/mnt"
sums "$W/mnt" "$W/s1.again"
cmp -s "$W/s1.sums" "$W/s1.again" || fail "s1 differs after the restart"
umount "$W/mnt"
ok "s1 mounts with the same sums"
detach /dev/nbd0
detach /dev/nbd1

step "4. clean shutdown, offline check"
ctl unexport s1 >/dev/null
pid=$(daemon_pid)
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null && fail "daemon still running after SIGTERM"
"$SNAPCTL" check --store "$STORE" >/dev/null || fail "offline check"
ok "offline check clean"
if grep -q panicked "$LOG"; then fail "the daemon panicked"; fi
step "e2e_nbd: all passed"
