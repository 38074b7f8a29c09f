#!/usr/bin/env bash
# tests/vm/e2e_replication.sh [BIN_DIR] - send | receive between two daemons in one
# guest (two origins, two stores, two sockets), run as root in the VM guest:
#
#   cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/repl-bin && cp target/release/{ublk-snapd,snapctl} /tmp/repl-bin/
#   VM_MEM=3G bash tests/vm/run.sh tests/vm/e2e_replication.sh /run/host/tmp/repl-bin
#
# It checks: ext4 on the source origin, snapshots s1..s4 (frozen) with files changed
# between them; `send s1 | receive`, then `send --from s(i-1) s(i) | receive` for
# i = 2..4; every received snapshot activated on the target reads the same sha256
# as the source's, and the target's s4 mounted read-only has the source's files; a
# stream with a flipped byte is refused (exit 4) with the target's snapshots and
# origin unchanged; kill -9 of the receiving daemon mid-stream, restart, `status`
# shows a resume token, `send --resume TOKEN` completes it and s5 matches; while a
# receive runs, the origin's device is held exclusively (no mount, no O_EXCL open)
# and a plain O_DIRECT write to it is refused with EBUSY (the daemon says why); the
# receive cut mid-stream exits 3, and after the cut a 4 KiB write through that device
# makes the resume refused (exit 7, "written since"); sent again with `receive
# --force`, s6 matches.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/repl-bin}}
SNAPD=$BIN/ublk-snapd
SNAPCTL=$BIN/snapctl
W=${E2E_DIR:-/tmp/e2e-repl}
OUT=${VM_OUT:-$W}
DAEMON_QUEUES=1
# Daemon A (source) and B (target); lib.sh's helpers use these names, so `use A|B`
# switches them.
use() {
    ORIGIN=$W/$1/origin.img
    STORE=$W/$1/store.img
    SOCK=$W/$1/run/snapd.sock
    STATE=$W/$1/run
    LOG=$OUT/ublk-snapd-repl-$1.log
}
use A
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ctlA() { "$SNAPCTL" --socket "$W/A/run/snapd.sock" "$@"; }
ctlB() { "$SNAPCTL" --socket "$W/B/run/snapd.sock" "$@"; }
names() { "$SNAPCTL" --socket "$W/$1/run/snapd.sock" --json list | jq -r '[.snapshots[].name] | join(",")'; }
devsum() { # devsum A|B SNAP: sha256 of the snapshot's device
    local dev s
    dev=$("$SNAPCTL" --socket "$W/$1/run/snapd.sock" activate "$2")
    s=$(sha256sum <"$dev" | cut -c1-64)
    "$SNAPCTL" --socket "$W/$1/run/snapd.sock" deactivate "$2" >/dev/null
    echo "$s"
}
snap() { # snap NAME: freeze, snapshot the source, thaw
    fsfreeze -f /mnt/src
    ctlA create "$1" >/dev/null || { fsfreeze -u /mnt/src; fail "create $1"; }
    fsfreeze -u /mnt/src
}

[ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
for t in mkfs.ext4 jq fsfreeze sha256sum; do command -v $t >/dev/null || fail "$t missing"; done
rm -rf "$W"
mkdir -p "$W/A/run" "$W/B/run" /mnt/src /mnt/dst
echo "binaries: $BIN; work dir: $W; logs: $OUT/ublk-snapd-repl-{A,B}.log; kernel $(uname -r)"

step "format and start two daemons"
for d in A B; do
    use $d
    : >"$LOG"
    truncate -s 128M "$ORIGIN"
    truncate -s 512M "$STORE"
    ctl format --origin "$ORIGIN" --store "$STORE" >/dev/null
done
use A
ADEV=$(start_daemon) || fail "daemon A did not start"
use B
BDEV=$(start_daemon) || fail "daemon B did not start"
ok "A: $ADEV, B: $BDEV"

step "ext4 on A's origin, files, s1..s4 with changes between"
mkfs.ext4 -q -F "$ADEV"
mount "$ADEV" /mnt/src
for i in $(seq 1 12); do head -c $((i * 97 * 1024)) /dev/urandom >/mnt/src/f$i; done
sync
snap s1
for n in 2 3 4; do
    for i in $(seq 1 3); do head -c 50000 /dev/urandom >/mnt/src/f$((i + n)); done
    head -c 2M /dev/urandom >/mnt/src/new$n
    rm -f /mnt/src/f$((n + 7))
    sync
    snap s$n
done
sums /mnt/src "$W/s4.sums"
ok "snapshots: $(names A)"

step "send s1 | receive, then three incrementals"
ctlA send --progress s1 2>"$W/send.err" | ctlB receive --progress >"$W/recv.out"
tail -n 1 "$W/send.err"
tail -n 1 "$W/recv.out"
for n in 2 3 4; do
    ctlA send --from s$((n - 1)) s$n 2>>"$W/send.err" | ctlB receive >>"$W/recv.out"
    ok "s$n: $(tail -n 1 "$W/recv.out")"
done
[ "$(names B)" = "s1,s2,s3,s4" ] || fail "target holds $(names B)"
for n in 1 2 3 4; do
    a=$(devsum A s$n)
    b=$(devsum B s$n)
    [ "$a" = "$b" ] || fail "s$n: source $a, target $b"
    ok "s$n sha256 equal ($a)"
done
SDEV=$(ctlB activate s4)
mount -o ro,noload "$SDEV" /mnt/dst
(cd /mnt/dst && sha256sum --quiet -c "$W/s4.sums") || fail "target s4 files differ"
umount /mnt/dst
ctlB deactivate s4 >/dev/null
ok "target s4 mounted: $(wc -l <"$W/s4.sums") files match"

step "a corrupted stream is refused, the target unchanged"
head -c 40M /dev/urandom >/mnt/src/big
sync
snap s5
ctlA send --from s4 s5 -o "$W/s5.stream"
cp "$W/s5.stream" "$W/bad.stream"
len=$(stat -c %s "$W/bad.stream")
printf '\x5a' | dd of="$W/bad.stream" bs=1 seek=$((len / 2)) conv=notrunc status=none
before=$(sha256sum <"$BDEV" | cut -c1-64)
expect_rc 4 ctlB receive -i "$W/bad.stream"
[ "$(names B)" = "s1,s2,s3,s4" ] || fail "target holds $(names B) after a refused stream"
# The refused stream's rollback (a merge) finishes in the background.
for _ in $(seq 1 100); do [ "$(ctlB --json status | jq '.jobs | length')" = 0 ] && break; sleep 0.2; done
after=$(sha256sum <"$BDEV" | cut -c1-64)
[ "$before" = "$after" ] || fail "target origin changed by a refused stream"
[ "$(devsum B s4)" = "$(devsum A s4)" ] || fail "target s4 changed"
ok "refused, snapshots and origin unchanged"

step "kill -9 of the receiving daemon mid-stream, restart, resume"
half=$((len / 2))
( head -c "$half" "$W/s5.stream"; sleep 60 ) | ctlB receive >"$W/cut.out" 2>&1 &
RECV=$!
sleep 8
use B
PID=$(ctlB --json status | jq -r .pid)
kill -9 "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.1; done
kill "$RECV" 2>/dev/null || true
wait "$RECV" 2>/dev/null || true
NB=$(start_daemon 90) || fail "daemon B did not restart"
TOKEN=$(ctlB --json status | jq -r '.receive_resume // empty')
[ -n "$TOKEN" ] || fail "no resume token in status after the kill"
ok "resume token $TOKEN"
[ "$(names B | tr ',' '\n' | grep -c '^s5$' || true)" = 0 ] || fail "s5 appeared before the stream ended"
ctlA send --from s4 --resume "$TOKEN" s5 | ctlB receive
[ "$(ctlB --json status | jq -r '.receive_resume // empty')" = "" ] || fail "token still shown"
[ "$(devsum A s5)" = "$(devsum B s5)" ] || fail "resumed s5 differs"
ok "resumed s5 sha256 equal; target holds $(names B | tr ',' '\n' | grep -v '^recv' | paste -sd,)"

step "a cut receive, the origin written through its device, the resume refused"
# tests/replication.rs proves the refusal for a write through the store; here the
# write goes through the kernel: the origin's /dev/ublkbN, O_DIRECT.
head -c 6M /dev/urandom >/mnt/src/more
sync
snap s6
ctlA send --from s5 s6 -o "$W/s6.stream"
len=$(stat -c %s "$W/s6.stream")
# (the exit status through a file: the ERR trap would turn it into 1 in the subshell)
( head -c $((len / 2)) "$W/s6.stream"; sleep 20 ) | {
    rc=0
    ctlB receive >"$W/cut6.out" 2>&1 || rc=$?
    echo "$rc" >"$W/cut6.rc"
} &
RECV=$!
# excl DEV: open DEV with O_EXCL (what mount and mkfs do); 0 when it could
excl() { python3 -c 'import os,sys; os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)' "$1" 2>/dev/null; }
for _ in $(seq 1 100); do excl "$NB" || break; sleep 0.2; done
excl "$NB" && fail "the origin's device is not held while the receive runs"
mount -o ro,noload "$NB" /mnt/dst 2>/dev/null && { umount /mnt/dst; fail "the origin mounted mid-receive"; }
ok "mid-receive: $NB held exclusively (O_EXCL open and mount refused)"
# a plain open for writing is not kept out by O_EXCL: the daemon refuses the write
if dd if=/dev/urandom of="$NB" bs=4k count=1 seek=300 oflag=direct status=none 2>"$W/busy.err"; then
    fail "a write to $NB went through mid-receive"
fi
grep -q "Device or resource busy" "$W/busy.err" || fail "the mid-receive write failed, but not with EBUSY: $(cat "$W/busy.err")"
grep -q "origin write refused with EBUSY: a receive is writing the origin" "$OUT/ublk-snapd-repl-B.log" \
    || fail "the daemon log does not say why the write was refused"
ok "mid-receive: a plain O_DIRECT write to $NB refused: $(cat "$W/busy.err")"
wait "$RECV"
rc=$(cat "$W/cut6.rc")
[ "$rc" = 3 ] || fail "the cut receive exited $rc, expected 3: $(cat "$W/cut6.out")"
grep -q resume "$W/cut6.out" || fail "the cut receive does not mention the resume: $(cat "$W/cut6.out")"
TOKEN=$(ctlB --json status | jq -r '.receive_resume // empty')
[ -n "$TOKEN" ] || fail "no resume token after the cut"
ok "cut: exit 3, token $TOKEN"
dd if=/dev/urandom of="$NB" bs=4k count=1 seek=200 oflag=direct status=none || fail "write to $NB after the cut"
ok "4 KiB written to $NB after the cut"
rc=0
ctlA send --from s5 --resume "$TOKEN" s6 2>/dev/null | ctlB receive >"$W/resume6.out" 2>&1 || rc=$?
[ "$rc" = 7 ] || fail "the resume exited $rc, expected 7: $(cat "$W/resume6.out")"
grep -q "written since" "$W/resume6.out" || fail "the refusal does not say why: $(cat "$W/resume6.out")"
ok "resume refused (exit 7): $(grep -m1 'written since' "$W/resume6.out" | cut -c1-160)"
[ "$(names B | tr ',' '\n' | grep -c '^s6$' || true)" = 0 ] || fail "s6 appeared on the target"
ctlA send --from s5 s6 | ctlB receive --force >"$W/force6.out" 2>&1 || fail "receive --force: $(cat "$W/force6.out")"
[ "$(devsum A s6)" = "$(devsum B s6)" ] || fail "s6 after receive --force differs"
[ "$(ctlB --json status | jq -r '.receive_resume // empty')" = "" ] || fail "token still shown after --force"
ok "sent again with receive --force: s6 sha256 equal; target holds $(names B)"

umount /mnt/src
for d in A B; do "$SNAPCTL" --socket "$W/$d/run/snapd.sock" --json status >/dev/null; done
echo
echo "e2e_replication: PASS ($(($(date +%s) - T0)) s)"
