#!/usr/bin/env bash
# tests/vm/e2e_resize.sh [BIN_DIR] - `snapctl resize-origin` end to end on a real
# kernel: a mounted ext4 on the origin's /dev/ublkbN grown online. Run as root in the
# VM guest (either kernel):
#
#   cargo build -p ublk-snapd -p tools
#   mkdir -p /tmp/resize-bin && cp target/debug/{ublk-snapd,snapctl} /tmp/resize-bin/
#   VM_KERNEL=7.x bash tests/vm/run.sh tests/vm/e2e_resize.sh /run/host/tmp/resize-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# A 64 MiB origin file with ext4 and files on it, snapshot `before` (frozen around
# the create), its device's sha256 recorded; then the origin file is truncated to
# 160 MiB.
# - Where the driver offers UPDATE_SIZE (7.x): `resize-origin` online; the origin's
#   device is 160 MiB at once, `resize2fs` grows the mounted filesystem, 96 MiB of
#   new files (more than the old filesystem held) are written and verified after a
#   cache drop; `before` still has 64 MiB and the same sha256; `after`, taken now,
#   has 160 MiB and holds the new files; kill -9 of the daemon and restart (user
#   recovery) bring the device back at 160 MiB with the files intact; shrinking is
#   refused (exit 2); a daemon made to abort (UBLK_SNAPD_TEST_CRASH=resize-committed)
#   inside a growth to 224 MiB after the store's commit and before the kernel's
#   resize is restarted, and its recovery resizes the device to 224 MiB (resize2fs
#   again, files intact); online and offline checks clean, e2fsck clean.
# - Without it (6.12): `resize-origin` is refused (exit 2, naming UPDATE_SIZE) and
#   nothing changes; after a clean stop, `resize-origin --store --origin` offline
#   grows the store, the restarted daemon's device is 160 MiB, and an offline
#   `resize2fs` plus the same file checks follow.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/resize-bin}}
DAEMON_QUEUES=1
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_layout resize

OLD=$((64 << 20))
NEW=$((160 << 20))
MNT=/mnt/origin
size_of() { blockdev --getsize64 "$1"; }
snap_size() { ctl --json list | jq -r ".snapshots[] | select(.name == \"$1\") | .size_bytes"; }
check_before() {
    local dev
    dev=$(ctl activate before)
    [ "$(size_of "$dev")" = "$OLD" ] || fail "before's device is $(size_of "$dev") bytes, want $OLD"
    [ "$(sha256sum <"$dev" | cut -d' ' -f1)" = "$BEFORE_SUM" ] || fail "before reads other data than when taken"
    ctl deactivate before >/dev/null
    [ "$(snap_size before)" = "$OLD" ] || fail "list says before is $(snap_size before) bytes"
    ok "before: $OLD bytes, the sha256 it had when taken"
}
new_files() { # write 96 MiB of new files into the grown filesystem
    mkdir -p $MNT/new
    for i in $(seq 1 12); do
        head -c 8M /dev/urandom >$MNT/new/f$i
    done
    sync
    sums $MNT/new "$W/new.sums"
    drop_caches
    sums $MNT/new "$W/new.sums2"
    cmp "$W/new.sums" "$W/new.sums2" || fail "the new files read back differently"
    ok "96 MiB of new files written past the old size and verified after a cache drop"
}
check_after() {
    local dev
    fsfreeze -f $MNT
    ctl create after >/dev/null
    fsfreeze -u $MNT
    [ "$(snap_size after)" = "$NEW" ] || fail "after is $(snap_size after) bytes, want $NEW"
    dev=$(ctl activate after)
    [ "$(size_of "$dev")" = "$NEW" ] || fail "after's device is $(size_of "$dev") bytes"
    mkdir -p /mnt/after
    mount -o ro,noload "$dev" /mnt/after
    sums /mnt/after/new "$W/after.sums"
    cmp "$W/new.sums" "$W/after.sums" || fail "after does not hold the new files"
    umount /mnt/after
    ctl deactivate after >/dev/null
    ok "after: $NEW bytes, holds the new files"
}

e2e_begin "${E2E_WATCHDOG:-900}" jq cmp mkfs.ext4 resize2fs e2fsck fsfreeze blockdev sha256sum
mkdir -p $MNT

step "64 MiB origin with ext4 and files, snapshot before"
truncate -s $OLD "$ORIGIN"
truncate -s 256M "$STORE"
ctl format --sparse --origin "$ORIGIN" --store "$STORE" >/dev/null
ODEV=$(start_daemon) || fail "ublk-snapd did not start"
mkfs.ext4 -q -F "$ODEV"
mount "$ODEV" $MNT
mkdir $MNT/old
for i in 1 2 3; do head -c 4M /dev/urandom >$MNT/old/f$i; done
sync
sums $MNT/old "$W/old.sums"
fsfreeze -f $MNT
ctl create before >/dev/null
fsfreeze -u $MNT
BEFORE_SUM=$(sha256sum <"$(ctl activate before)" | cut -d' ' -f1)
ctl deactivate before >/dev/null
ok "before taken, sha256 $BEFORE_SUM"
FEATURES=$(st '.driver_features // 0')
truncate -s $NEW "$ORIGIN"

if (((FEATURES & 0x400) != 0)); then
    step "the driver offers UPDATE_SIZE: resize-origin online, resize2fs on the mounted filesystem"
    ctl --json resize-origin | tee "$W/resize.json"
    [ "$(jq -r .new_bytes "$W/resize.json")" = $NEW ] || fail "new size $(jq -r .new_bytes "$W/resize.json")"
    [ "$(jq -r .device "$W/resize.json")" = "$ODEV" ] || fail "the reply names no device"
    [ "$(size_of "$ODEV")" = $NEW ] || fail "$ODEV is $(size_of "$ODEV") bytes after the resize"
    [ "$(st .size_bytes)" = $NEW ] || fail "status says $(st .size_bytes) bytes"
    ok "$ODEV is $NEW bytes"
    resize2fs "$ODEV" 2>&1 | tail -n 2
    BLOCKS=$(df -B1 --output=size $MNT | tail -n 1)
    [ "$BLOCKS" -gt $((128 << 20)) ] || fail "the filesystem is $BLOCKS bytes after resize2fs"
    ok "resize2fs online: the filesystem is $BLOCKS bytes"
    new_files
    sums $MNT/old "$W/old.sums2"
    cmp "$W/old.sums" "$W/old.sums2" || fail "the old files changed"
    check_before
    check_after
    step "kill -9 after the growth: the restarted daemon takes the device back at its new size"
    kill -9 "$(daemon_pid)"
    sleep 1
    NDEV=$(start_daemon) || fail "restart after kill -9 failed"
    [ "$NDEV" = "$ODEV" ] || fail "the origin came back as $NDEV, was $ODEV"
    [ "$(size_of "$ODEV")" = $NEW ] || fail "$ODEV is $(size_of "$ODEV") bytes after the recovery"
    [ "$(st .size_bytes)" = $NEW ] || fail "status says $(st .size_bytes) bytes after the recovery"
    drop_caches
    sums $MNT/new "$W/new.sums3"
    cmp "$W/new.sums" "$W/new.sums3" || fail "the new files changed across kill -9"
    ok "recovered at $NEW bytes, the mounted filesystem's new files intact"
    step "shrinking is refused"
    RC=0
    ctl resize-origin --size 32M 2>"$W/shrink.err" || RC=$?
    [ "$RC" = 2 ] || fail "a shrink exited $RC: $(cat "$W/shrink.err")"
    grep -q "cannot shrink" "$W/shrink.err" || fail "the shrink said: $(cat "$W/shrink.err")"
    [ "$(size_of "$ODEV")" = $NEW ] || fail "the device changed size"
    ok "exit 2: $(cat "$W/shrink.err")"
    step "a crash between the growth's commit and the kernel's resize: the restart finishes it"
    # The daemon restarted with the crash point armed aborts inside resize-origin once
    # the store holds the larger size, before UPDATE_SIZE: the kernel's device keeps
    # 160 MiB until the restart's recovery tells it the store's size.
    GROWN=$((224 << 20))
    truncate -s $GROWN "$ORIGIN"
    kill -9 "$(daemon_pid)"
    sleep 1
    export UBLK_SNAPD_TEST_CRASH=resize-committed
    NDEV=$(start_daemon) || fail "restart with the crash point armed failed"
    unset UBLK_SNAPD_TEST_CRASH
    PID=$(daemon_pid)
    RC=0
    ctl resize-origin >"$W/crash.out" 2>&1 || RC=$?
    [ "$RC" != 0 ] || fail "resize-origin returned 0 with the crash point armed: $(cat "$W/crash.out")"
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$PID" 2>/dev/null && fail "the daemon did not abort at the crash point"
    grep -q "aborting at this crash point" "$LOG" || fail "no crash-point line in the log"
    [ "$(size_of "$ODEV")" = $NEW ] || fail "$ODEV is $(size_of "$ODEV") bytes: the kernel was told before the crash"
    ok "aborted after the commit (resize-origin exit $RC), the kernel's device still $NEW bytes"
    NDEV=$(start_daemon) || fail "restart after the crash failed"
    [ "$NDEV" = "$ODEV" ] || fail "the origin came back as $NDEV, was $ODEV"
    [ "$(size_of "$ODEV")" = $GROWN ] || fail "$ODEV is $(size_of "$ODEV") bytes after the recovery, want $GROWN"
    [ "$(st .size_bytes)" = $GROWN ] || fail "status says $(st .size_bytes) bytes after the recovery"
    resize2fs "$ODEV" 2>&1 | tail -n 1
    BLOCKS2=$(df -B1 --output=size $MNT | tail -n 1)
    [ "$BLOCKS2" -gt "$BLOCKS" ] || fail "the filesystem is $BLOCKS2 bytes, was $BLOCKS"
    drop_caches
    sums $MNT/new "$W/new.sums4"
    cmp "$W/new.sums" "$W/new.sums4" || fail "the new files changed across the crash"
    check_before
    ok "the recovery resized $ODEV to $GROWN bytes; resize2fs online to $BLOCKS2 bytes; files intact"
    ctl check || fail "online check"
    umount $MNT
    e2fsck -fn "$ODEV" >/dev/null || fail "e2fsck found problems"
    ok "e2fsck clean"
    stop_daemon
    ctl check --store "$STORE" || fail "offline check"
else
    step "no UPDATE_SIZE (features $(printf %#x "$FEATURES")): an online resize is refused"
    RC=0
    ctl resize-origin 2>"$W/resize.err" || RC=$?
    [ "$RC" = 2 ] || fail "resize-origin exited $RC, want 2: $(cat "$W/resize.err")"
    grep -q "UPDATE_SIZE" "$W/resize.err" || fail "resize-origin said: $(cat "$W/resize.err")"
    [ "$(st .size_bytes)" = $OLD ] || fail "the store's origin size changed"
    [ "$(size_of "$ODEV")" = $OLD ] || fail "the device changed size"
    ok "exit 2: $(cat "$W/resize.err")"
    step "offline: stop, resize-origin --store --origin, restart, resize2fs"
    umount $MNT
    stop_daemon
    ctl resize-origin --store "$STORE" --origin "$ORIGIN" || fail "offline resize-origin"
    ctl check --store "$STORE" || fail "offline check"
    ODEV=$(start_daemon) || fail "restart failed"
    [ "$(size_of "$ODEV")" = $NEW ] || fail "$ODEV is $(size_of "$ODEV") bytes after the restart"
    ok "$ODEV is $NEW bytes after the restart"
    e2fsck -fy "$ODEV" >/dev/null || true
    resize2fs "$ODEV" 2>&1 | tail -n 2
    mount "$ODEV" $MNT
    new_files
    sums $MNT/old "$W/old.sums2"
    cmp "$W/old.sums" "$W/old.sums2" || fail "the old files changed"
    check_before
    check_after
    ctl check || fail "online check"
    umount $MNT
    e2fsck -fn "$ODEV" >/dev/null || fail "e2fsck found problems"
    stop_daemon
fi
grep -qi panic "$LOG" && fail "the daemon panicked"
ok "no panic in the daemon log"
echo "e2e_resize: PASS"
