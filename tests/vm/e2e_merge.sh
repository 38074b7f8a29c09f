#!/usr/bin/env bash
# tests/vm/e2e_merge.sh [BIN_DIR] - merge, hold and prune end to end on a real kernel,
# run as root in the VM guest:
#
#   CARGO_TARGET_DIR=/tmp/target-merge cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/merge-bin && cp /tmp/target-merge/release/{ublk-snapd,snapctl} /tmp/merge-bin/
#   VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_merge.sh /run/host/tmp/merge-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# It checks: ext4 on the origin; s1 (frozen) and, after changing files, s2; merging an
# active snapshot is refused (exit 7), and so is merging while the origin is mounted
# (exit 7: a first version of this test merged under the mounted filesystem, and the
# unmount wrote its stale bitmaps over the merged one, which e2fsck then flagged);
# `snapctl merge s1 --deferred` while mounted is recorded (status shows it) and starts
# at the umount (`merge --deferred --wait` follows it), e2fsck, mount: every file matches s1's
# checksums; s2 (active, mounted ro throughout) still matches its own; prune
# --dry-run lists, hold protects, prune deletes; check online and offline; e2fsck.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/merge-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-merge}
OUT=${VM_OUT:-$W}
ORIGIN=$W/origin.img
STORE=$W/store.img
SOCK=$W/run/snapd.sock
STATE=$W/run
LOG=$OUT/ublk-snapd-merge.log
DAEMON_QUEUES=1
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verify() { # verify DIR SUMS WHAT: exactly the files of SUMS, with those contents
    (cd "$1" && sha256sum --quiet -c "$2") || fail "$3: checksum mismatch"
    sums "$1" "$W/now.sums"
    cut -c67- "$2" >"$W/want.list"
    cut -c67- "$W/now.sums" >"$W/have.list"
    diff "$W/want.list" "$W/have.list" || fail "$3: not the same set of files (diff above)"
    ok "$3: $(wc -l <"$2") files match"
}
names() { ctl --json list | jq -r '[.snapshots[].name] | join(",")'; }

[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
for t in mkfs.ext4 e2fsck jq fsfreeze sha256sum; do command -v $t >/dev/null || fail "$t missing"; done
rm -rf "$W"
mkdir -p "$W" /mnt/origin /mnt/s2
: >"$LOG"
echo "binaries: $BIN; work dir: $W; daemon log: $LOG; kernel $(uname -r)"

step "format, start, mkfs.ext4, files"
truncate -s 256M "$ORIGIN"
truncate -s 512M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
ODEV=$(start_daemon) || fail "ublk-snapd did not start"
mkfs.ext4 -q -F "$ODEV"
mount "$ODEV" /mnt/origin
mkdir -p /mnt/origin/dir
for i in $(seq 1 16); do head -c $((i * 41 * 1024 + i)) /dev/urandom >/mnt/origin/f$i; done
head -c 8M /dev/urandom >/mnt/origin/dir/big
echo hello >/mnt/origin/dir/small
sync
sums /mnt/origin "$W/s1.sums"
ok "$(wc -l <"$W/s1.sums") files"

step "snapshot s1 (frozen), change files, snapshot s2 (frozen), change again"
fsfreeze -f /mnt/origin
ctl create s1 || { fsfreeze -u /mnt/origin; fail "create s1"; }
fsfreeze -u /mnt/origin
for i in $(seq 1 6); do head -c 30000 /dev/urandom >/mnt/origin/f$i; done
rm -f /mnt/origin/f7 /mnt/origin/dir/small
head -c 2M /dev/urandom | dd of=/mnt/origin/dir/big bs=1M seek=2 conv=notrunc status=none
head -c 3M /dev/urandom >/mnt/origin/new
sync
sums /mnt/origin "$W/s2.sums"
fsfreeze -f /mnt/origin
ctl create s2 || { fsfreeze -u /mnt/origin; fail "create s2"; }
fsfreeze -u /mnt/origin
head -c 1M /dev/urandom >/mnt/origin/after-s2
rm -f /mnt/origin/f8
sync
cmp -s "$W/s1.sums" "$W/s2.sums" && fail "the origin did not change"
S2DEV=$(ctl activate s2)
mount -o ro "$S2DEV" /mnt/s2
verify /mnt/s2 "$W/s2.sums" "s2 before the merge"

step "merging an active snapshot is refused"
expect_rc 7 ctl merge s2
expect_rc 6 ctl merge nosuch

step "merge s1 while the origin is mounted: refused, or --deferred until the unmount"
expect_rc 7 ctl merge s1
[[ "$(names)" == s1,s2 ]] || fail "a refused merge changed the snapshots: $(names)"
ctl merge s1 --deferred
[ "$(ctl --json status | jq -r .deferred_merge)" = s1 ] || fail "status does not show the deferred merge"
[[ "$(names)" == s1,s2 ]] || fail "a deferred merge started under the mounted filesystem: $(names)"
echo "written while the merge waits" >/mnt/origin/during-deferral
sync
sleep 2
[ "$(ctl --json status | jq -r .deferred_merge)" = s1 ] || fail "the deferred merge started while mounted"
ok "deferred while mounted; the origin stays writable"
# merge --wait follows the deferred merge: it waits for the unmount, then the copy
ctl merge s1 --deferred --wait 2>"$W/merge-progress.txt" &
WAITER=$!
# unmount once the waiter has seen the deferral (a loaded TCG guest can take more
# than a second to start snapctl: a fixed sleep let the unmount come first)
for _ in $(seq 1 150); do
    grep -q 'waiting for the origin device to be closed' "$W/merge-progress.txt" && break
    sleep 0.2
done
umount /mnt/origin
wait "$WAITER" || fail "merge --deferred --wait failed"
cat "$W/merge-progress.txt"
grep -q 'waiting for the origin device to be closed' "$W/merge-progress.txt" || fail "--wait did not report the deferral"
grep -q '^merge: [0-9]*/[0-9]* chunks' "$W/merge-progress.txt" || echo "note: the merge finished before a progress line"
[ "$(ctl --json status | jq '[.jobs[] | select(.kind=="merge")] | length')" = 0 ] || fail "merge job left after --wait"
[ "$(names)" = s2 ] || fail "after the merge: snapshots $(names), want s2"
ok "s1 merged and gone"
drop_caches
e2fsck -fn "$ODEV" >"$W/fsck.txt" 2>&1 || { cat "$W/fsck.txt"; fail "e2fsck on the merged origin"; }
ok "e2fsck -fn clean on the merged origin"
mount "$ODEV" /mnt/origin
verify /mnt/origin "$W/s1.sums" "origin after merge"
verify /mnt/s2 "$W/s2.sums" "s2 after the merge"
ctl status

step "hold and prune"
for n in a1 a2 a3; do ctl create --auto-name "$n" >/dev/null; sleep 1; done
ctl create keep-me
ctl hold keep-me
ctl list
[ "$(ctl --json list | jq -r '.snapshots[] | select(.name=="keep-me") | .hold')" = true ] || fail "keep-me not held"
expect_rc 2 ctl prune
ctl prune --keep-last 1 --dry-run | tee "$W/dry.txt"
grep -q "would delete" "$W/dry.txt" || fail "dry run lists nothing"
grep -q "skipped keep-me: held" "$W/dry.txt" || fail "dry run does not report the held snapshot"
grep -q "skipped s2: active" "$W/dry.txt" || fail "dry run does not skip the active s2"
BEFORE=$(names)
[ "$(names)" = "$BEFORE" ] || fail "a dry run deleted something"
ctl --json prune --keep-last 1 | tee "$W/prune.json"
# unheld: s2 (active), a1-*, a2-*, a3-* -> keep a3-*, skip s2, delete a1-*, a2-*
[ "$(jq -r '[.deleted[].name | sub("-[0-9-]*$"; "")] | join(",")' "$W/prune.json")" = a1,a2 ] \
    || fail "prune deleted $(jq -c '[.deleted[].name]' "$W/prune.json"), want a1-*, a2-*"
[[ "$(names)" =~ ^s2,a3-[0-9]{8}-[0-9]{6},keep-me$ ]] || fail "after prune: $(names)"
ok "prune kept the newest, the held and the active snapshot"
ctl --json prune --keep-last 1 | jq -e '.deleted | length == 0' >/dev/null || fail "a second prune deleted more"
ok "a second run deletes nothing"
ctl release keep-me
ctl prune --keep-last 1 --prefix keep
[[ "$(names)" =~ ^s2,a3-[0-9]{8}-[0-9]{6},keep-me$ ]] || fail "prune --prefix keep deleted something"
ok "release and --prefix behave"

step "check online and offline, shutdown"
ctl check
umount /mnt/s2 /mnt/origin
ctl deactivate s2
PID=$(daemon_pid)
expect_rc 7 ctl check --store "$STORE"
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
kill -0 "$PID" 2>/dev/null && fail "daemon still running after SIGTERM"
ctl check --store "$STORE"
ctl dump --store "$STORE" | head -n 30
e2fsck -fn "$ORIGIN" >"$W/fsck2.txt" 2>&1 || { cat "$W/fsck2.txt"; fail "e2fsck on the origin file"; }
ok "e2fsck -fn clean on the origin file after shutdown"
echo
echo "e2e_merge: all checks passed in $(($(date +%s) - T0)) s"
