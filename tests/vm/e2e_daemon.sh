#!/usr/bin/env bash
# tests/vm/e2e_daemon.sh [BIN_DIR] - end-to-end test of ublk-snapd and snapctl on a
# real kernel, run as root in the VM guest:
#
#   CARGO_TARGET_DIR=/tmp/target-daemon cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/e2e-bin && cp /tmp/target-daemon/release/{ublk-snapd,snapctl} /tmp/e2e-bin/
#   VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_daemon.sh /run/host/tmp/e2e-bin
#
# BIN_DIR holds the ublk-snapd and snapctl binaries (default: $UBLK_SNAP_BIN, else
# /run/host/tmp/e2e-bin, the host's /tmp as the guest sees it). Copy them out of the
# target dir: a cargo build on the host during the run (cargo test relinks the
# binaries with test features) replaces them under the guest, which then crashes
# in ld.so when it starts the daemon again.
#
# It checks: format; a read-only origin refused (exit 3, store unchanged); daemon start (daemon mode, readiness); a second daemon and an
# online format are refused; mkfs.ext4 + files on the origin; a snapshot (frozen
# fs) verified file by file after the origin changed; a snapshot of a snapshot,
# written to, both verified; fio --verify=crc32c on the origin and on a writable
# snapshot; kill -9 mid-write, restart (user recovery), every snapshot and all
# flushed origin data verified; delete; clean shutdown on SIGTERM.
# Any mismatch exits non-zero.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/e2e-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-daemon}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd.log
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify() { # verify DIR SUMS WHAT
    (cd "$1" && sha256sum --quiet -c "$2") || fail "$3: checksum mismatch"
    ok "$3: $(wc -l <"$2") files match"
}

[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
for t in mkfs.ext4 fio jq fsfreeze sha256sum; do command -v $t >/dev/null || fail "$t missing"; done
watchdog "${E2E_WATCHDOG:-900}"
rm -rf "$W"
mkdir -p "$W" /mnt/origin /mnt/s1 /mnt/s2
: >"$LOG"
echo "binaries: $BIN; work dir: $W; daemon log: $LOG; kernel $(uname -r)"

step "format"
truncate -s 256M "$ORIGIN"
truncate -s 512M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
expect_rc 2 ctl format --origin "$ORIGIN" --store "$STORE" --chunk-size 3K
expect_rc 5 ctl status

step "a read-only origin is refused, nothing written"
mkdir -p /mnt/ro
mount -t tmpfs -o size=64M tmpfs /mnt/ro
truncate -s 16M /mnt/ro/origin.img
truncate -s 64M "$W/ro-store.img"
ctl format --origin /mnt/ro/origin.img --store "$W/ro-store.img" >/dev/null
mount -o remount,ro /mnt/ro
RO_SUM=$(sha256sum <"$W/ro-store.img")
RO_ERR=$("$SNAPD" --foreground --origin /mnt/ro/origin.img --store "$W/ro-store.img" \
    --socket "$W/ro.sock" --state-dir "$W/ro-run" 2>&1) && fail "ublk-snapd served a read-only origin"
case $RO_ERR in *"Read-only file system"*) ;; *) fail "unclear error for a read-only origin: $RO_ERR" ;; esac
expect_rc 3 "$SNAPD" --foreground --origin /mnt/ro/origin.img --store "$W/ro-store.img" --socket "$W/ro.sock" --state-dir "$W/ro-run"
[ "$(sha256sum <"$W/ro-store.img")" = "$RO_SUM" ] || fail "the refused daemon changed the store"
umount /mnt/ro
ok "read-only origin: ${RO_ERR##*: }"

step "start the daemon (daemon mode)"
ODEV=$(start_daemon) || fail "ublk-snapd did not start"
[ -b "$ODEV" ] || fail "origin device $ODEV is not a block device"
ok "origin device $ODEV"
[ "$(stat -c %a "$SOCK")" = 600 ] || fail "socket mode $(stat -c %a "$SOCK"), want 600"
ok "socket $SOCK is 0600"
PID=$(daemon_pid)
ok "daemon pid $PID"
expect_rc 7 "$SNAPD" --foreground --origin "$ORIGIN" --store "$STORE" --socket "$W/other.sock" --state-dir "$W/other"
expect_rc 7 ctl format --origin "$ORIGIN" --store "$STORE"
[ -S "$SOCK" ] || fail "the refused daemon removed the socket"
ctl status

step "mkfs.ext4 on the origin, files"
mkfs.ext4 -q -F "$ODEV"
mount "$ODEV" /mnt/origin
mkdir -p /mnt/origin/dir/sub
for i in $(seq 1 24); do head -c $((i * 37 * 1024 + i)) /dev/urandom >/mnt/origin/f$i; done
head -c 12M /dev/urandom >/mnt/origin/dir/big
for i in 1 2 3; do echo "small $i" >/mnt/origin/dir/sub/s$i; done
sync
sums /mnt/origin "$W/s1.sums"
ok "$(wc -l <"$W/s1.sums") files written"

step "snapshot s1 of the frozen origin"
fsfreeze -f /mnt/origin
C1=$(ctl --json create s1) || { fsfreeze -u /mnt/origin; fail "create s1"; }
fsfreeze -u /mnt/origin
echo "$C1"
TX1=$(jq -r .txn_id <<<"$C1")
[ "$(jq -r .name <<<"$C1")" = s1 ] && [ "$TX1" -gt 0 ] || fail "bad create reply"
expect_rc 7 ctl create s1
expect_rc 2 ctl create 'bad/name'
expect_rc 6 ctl create s9 --from nosuch

step "change the origin"
for i in $(seq 1 8); do head -c 50000 /dev/urandom >/mnt/origin/f$i; done
rm -f /mnt/origin/f9 /mnt/origin/f10 /mnt/origin/dir/sub/s1
head -c 4M /dev/urandom | dd of=/mnt/origin/dir/big bs=1M seek=3 conv=notrunc status=none
head -c 3M /dev/urandom >/mnt/origin/new
sync
sums /mnt/origin "$W/origin1.sums"
cmp -s "$W/s1.sums" "$W/origin1.sums" && fail "the origin did not change"
ok "origin changed"

step "activate s1, mount read-only, verify every original file"
S1DEV=$(ctl activate s1)
[ -b "$S1DEV" ] && [ "$S1DEV" != "$ODEV" ] || fail "bad snapshot device $S1DEV"
[ "$(ctl activate s1)" = "$S1DEV" ] || fail "activate is not idempotent"
ok "s1 is $S1DEV"
mount -o ro "$S1DEV" /mnt/s1
verify /mnt/s1 "$W/s1.sums" "s1"
[ ! -e /mnt/s1/new ] && [ -e /mnt/s1/f9 ] || fail "s1 sees later origin changes"
ok "s1 has deleted files and lacks new ones"
drop_caches
verify /mnt/origin "$W/origin1.sums" "origin after s1"
ctl list
expect_rc 7 ctl delete s1

step "snapshot s2 of s1, written to; both verified"
ctl create s2 --from s1
S2DEV=$(ctl activate s2)
mount "$S2DEV" /mnt/s2
verify /mnt/s2 "$W/s1.sums" "s2 before writes"
for i in $(seq 11 16); do head -c 70000 /dev/urandom >/mnt/s2/f$i; done
rm -f /mnt/s2/f17
head -c 2M /dev/urandom >/mnt/s2/s2-only
sync
sums /mnt/s2 "$W/s2.sums"
umount /mnt/s2
umount /mnt/s1
drop_caches
mount "$S2DEV" /mnt/s2
verify /mnt/s2 "$W/s2.sums" "s2 after remount"
mount -o ro "$S1DEV" /mnt/s1
verify /mnt/s1 "$W/s1.sums" "s1 after s2 writes"
verify /mnt/origin "$W/origin1.sums" "origin after s2 writes"

step "fio --verify=crc32c on the origin (file on ext4, direct I/O)"
fio --name=origin --filename=/mnt/origin/fio.dat --size=24M --bs=4k --rw=randwrite \
    --direct=1 --ioengine=psync --numjobs=1 --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --group_reporting --output-format=terse >"$W/fio-origin.txt" \
    || { cat "$W/fio-origin.txt"; fail "fio on the origin"; }
ok "fio verify on the origin passed"
rm -f /mnt/origin/fio.dat

step "fio --verify=crc32c on a writable snapshot (raw device, 2 jobs)"
ctl create s3
S3DEV=$(ctl activate s3)
fio --name=snap --filename="$S3DEV" --offset=64M --size=32M --bs=16k --rw=randwrite \
    --direct=1 --ioengine=io_uring --iodepth=8 --numjobs=2 --offset_increment=32M \
    --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting \
    --output-format=terse >"$W/fio-snap.txt" || { cat "$W/fio-snap.txt"; fail "fio on s3"; }
ok "fio verify on s3 passed"
drop_caches
verify /mnt/origin "$W/origin1.sums" "origin after fio on s3"
verify /mnt/s1 "$W/s1.sums" "s1 after fio on s3"
expect_rc 7 ctl delete s3
ctl deactivate s3
expect_rc 7 ctl deactivate s3
[ ! -e "$S3DEV" ] || fail "$S3DEV still exists after deactivate"
D3=$(ctl --json delete s3)
echo "$D3"
[ "$(jq -r .txn_id <<<"$D3")" -gt "$TX1" ] || fail "txn id did not advance"
expect_rc 6 ctl activate s3
ctl status

step "kill -9 the daemon mid-write, restart, verify"
sums /mnt/origin "$W/origin2.sums"
# flushed data: written and synced before the kill
head -c 6M /dev/urandom >/mnt/origin/flushed
sync
sums /mnt/origin "$W/origin2.sums"
PID=$(daemon_pid)
dd if=/dev/urandom of=/mnt/origin/inflight bs=64k count=512 oflag=direct status=none 2>"$W/dd.err" &
DD=$!
sleep 2
kill -9 "$PID"
ok "killed daemon $PID while dd was writing"
sleep 1
NDEV=$(start_daemon) || fail "restart failed"
[ "$NDEV" = "$ODEV" ] || fail "origin came back as $NDEV, was $ODEV"
ok "restarted; origin is $NDEV again"
[ "$(ctl --json status | jq -r .last_shutdown_clean)" = false ] || fail "status: last shutdown clean after kill -9"
ctl status | grep -q "last shutdown:  not clean" || fail "snapctl status does not say the shutdown was not clean"
ok "status: the store was not shut down cleanly"
# UBLK_F_USER_RECOVERY_REISSUE: requests in flight at the kill are sent again to the
# restarted daemon, so the writer never sees an error.
wait "$DD" && ok "dd finished across the crash (in-flight I/O reissued)" || fail "dd failed across the crash: $(cat "$W/dd.err")"
ctl list
LIST=$(ctl --json list)
[ "$(jq -r '.snapshots[] | select(.name=="s1") | .device' <<<"$LIST")" = "$S1DEV" ] || fail "s1 device not recovered"
[ "$(jq -r '.snapshots[] | select(.name=="s2") | .device' <<<"$LIST")" = "$S2DEV" ] || fail "s2 device not recovered"
ok "s1 and s2 kept their devices"
umount /mnt/origin
umount /mnt/s1
umount /mnt/s2
drop_caches
e2fsck -fn "$ODEV" >"$W/fsck-origin.txt" 2>&1 || { cat "$W/fsck-origin.txt"; echo "note: fsck found issues on the origin after the crash"; }
mount "$ODEV" /mnt/origin
rm -f /mnt/origin/inflight
cut -c67- "$W/origin2.sums" | grep -qx './flushed' || fail "flushed file not in the sums"
verify /mnt/origin "$W/origin2.sums" "origin flushed data after crash"
mount -o ro "$S1DEV" /mnt/s1
verify /mnt/s1 "$W/s1.sums" "s1 after crash"
mount -o ro "$S2DEV" /mnt/s2
verify /mnt/s2 "$W/s2.sums" "s2 after crash"

step "clean shutdown on SIGTERM"
umount /mnt/s1 /mnt/s2 /mnt/origin
PID=$(daemon_pid)
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
kill -0 "$PID" 2>/dev/null && fail "daemon still running after SIGTERM"
[ ! -e "$ODEV" ] && [ ! -e "$S1DEV" ] || fail "devices left after shutdown"
[ ! -e "$SOCK" ] || fail "socket left after shutdown"
ls "$STATE"/*.state.json >/dev/null 2>&1 && fail "state file left after a clean shutdown"
ok "devices, socket and state file removed"

step "start again: snapshots persist, inactive until activated"
ODEV=$(start_daemon)
[ "$(ctl --json status | jq -r .last_shutdown_clean)" = true ] || fail "status: last shutdown not clean after SIGTERM"
ctl list
[ "$(ctl --json list | jq -r '[.snapshots[].name] | join(",")')" = "s1,s2" ] || fail "snapshot list"
[ "$(ctl --json list | jq -r '[.snapshots[].device] | map(select(. != null)) | length')" = 0 ] || fail "devices active after a clean restart"
S1DEV=$(ctl activate s1)
mount -o ro "$S1DEV" /mnt/s1
verify /mnt/s1 "$W/s1.sums" "s1 after clean restart"
mount "$ODEV" /mnt/origin
verify /mnt/origin "$W/origin2.sums" "origin after clean restart"
umount /mnt/s1 /mnt/origin
ctl deactivate s1
ctl status
kill -TERM "$(daemon_pid)"
sleep 1
echo
echo "e2e_daemon: all checks passed in $(($(date +%s) - T0)) s"
