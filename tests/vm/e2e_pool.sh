#!/usr/bin/env bash
# tests/vm/e2e_pool.sh [BIN_DIR] - a pool on a real kernel: one store, one daemon,
# three origins, each its own /dev/ublkbN. Run as root in the VM guest:
#
#   cargo build --release -p ublk-snapd -p tools
#   mkdir -p /tmp/pool-bin && cp target/release/{ublk-snapd,snapctl} /tmp/pool-bin/
#   bash tests/vm/run.sh tests/vm/e2e_pool.sh /run/host/tmp/pool-bin
#
# BIN_DIR holds copies of ublk-snapd and snapctl (see e2e_daemon.sh for why copies).
# 1. format for origin a; start; `origin add b` and `origin add c` online: each gets
#    its own device; ext4 on all three, files written.
# 2. snapshots a@s1, b@s1, c@s1 (the same name on each origin); the origins change;
#    each snapshot, activated by ORIGIN@NAME, reads the files it was taken with.
# 3. origins d and e (raw): a writer writes a counter to d, waits, then to e, over
#    and over, while group snapshots of d and e are taken every 100 ms: in every
#    group e's counter is never ahead of d's; `delete NAME` takes a whole group.
#    A quota on d: its writes past it get ENOSPC, e's go on; lifted, they go.
#    d@r sent as an rbd diff and received into e (receive --origin); e exported over NBD and read
#    with nbd-client; resize-origin d (online on 7.x, refused on 6.12).
# 4. a group snapshot of a, b and c (ext4), then kill -9 of the daemon while writing
#    to b: restart takes every device back (user recovery), the filesystems stay
#    mounted, every file verifies, and so does every member of the group.
# 5. `create --freeze` (alone and of a group): the unsynced file is in each snapshot
#    and its ext4 needs no journal recovery; a hung pre-hook is killed at
#    --hook-timeout, no snapshot is taken, the post-hook runs.
# 6. clean stop; b's file moved away: the daemon starts, serves a and c, and
#    `origin list` reports b missing (exit 11), b's snapshot is refused `activate`;
#    b back, next start serves it.
# 7. `merge pre` (the group of a, b, c): all three roll back together.
# 8. `origin remove c` refused with a snapshot, then --with-snapshots: c's device
#    goes, `origin list` shows a and b; offline check clean.
set -Eeuo pipefail

BIN=${1:-${UBLK_SNAP_BIN:-/run/host/tmp/pool-bin}}
DAEMON_QUEUES=1
# shellcheck source=tests/vm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_layout pool

# origin a is the store's first origin, named "origin"
oname() { if [ "$1" = a ]; then echo origin; else echo "$1"; fi; }
# origin list exits 11 while an origin is missing: its JSON is still the list
olist() { ctl --json origin list || [ $? = 11 ]; }
dev_of() { olist | jq -r ".origins[] | select(.name == \"$(oname "$1")\") | .device"; }
state_of() { olist | jq -r ".origins[] | select(.name == \"$(oname "$1")\") | .state"; }
write_files() { # write_files DIR TAG
    for i in 1 2 3 4; do head -c 1M /dev/urandom >"$1/f$i-$2"; done
    sync
}
verify_dir() { # verify_dir DIR SUMS WHAT
    (cd "$1" && sha256sum --quiet -c "$2") || fail "$3: checksum mismatch"
    ok "$3: $(wc -l <"$2") files match"
}

e2e_begin "${E2E_WATCHDOG:-900}" jq mkfs.ext4 dumpe2fs sha256sum
mkdir -p /mnt/pa /mnt/pb /mnt/pc /mnt/sb

step "origin a, then b and c added online"
truncate -s 64M "$ORIGIN"
truncate -s 48M "$W/b.img"
truncate -s 32M "$W/c.img"
truncate -s 256M "$STORE"
ctl format --origin "$ORIGIN" --store "$STORE"
A=$(start_daemon) || fail "ublk-snapd did not start"
ctl origin add b --device "$W/b.img" >/dev/null
ctl origin add c --device "$W/c.img" >/dev/null
B=$(dev_of b)
C=$(dev_of c)
[ -b "$A" ] && [ -b "$B" ] && [ -b "$C" ] || fail "devices: a=$A b=$B c=$C"
[ "$(blockdev --getsize64 "$B")" = $((48 << 20)) ] || fail "b's device is not 48 MiB"
[ "$(blockdev --getsize64 "$C")" = $((32 << 20)) ] || fail "c's device is not 32 MiB"
ok "a=$A b=$B c=$C"
expect_rc 7 ctl origin add b --device "$W/c.img"
expect_rc 2 ctl origin add "x@y" --device "$W/c.img"
for d in a:"$A" b:"$B" c:"$C"; do
    mkfs.ext4 -q "${d#*:}"
    mount "${d#*:}" "/mnt/p${d%%:*}"
    write_files "/mnt/p${d%%:*}" one
done

step "a@s1, b@s1, c@s1; the origins change; each snapshot reads its files"
for o in a b c; do
    (cd "/mnt/p$o" && sha256sum f*) >"$W/$o-s1.sums"
done
ctl create origin@s1 >/dev/null
ctl create b@s1 >/dev/null
ctl create c@s1 >/dev/null
expect_rc 7 ctl create b@s1
for o in a b c; do
    write_files "/mnt/p$o" two
    rm "/mnt/p$o/f1-one"
done
sync
for o in b c; do
    SD=$(ctl activate "$o@s1")
    mount -o ro,noload "$SD" /mnt/sb
    verify_dir /mnt/sb "$W/$o-s1.sums" "$o@s1 (on $SD)"
    umount /mnt/sb
    ctl deactivate "$o@s1" >/dev/null
done
N=$(ctl --json list | jq '[.snapshots[] | select(.name == "s1")] | length')
[ "$N" = 3 ] || fail "list shows $N snapshots named s1, not 3"
ok "list: s1 on each origin ($(ctl list | awk 'NR>1 {print $2}' | tr '\n' ' '))"

step "group snapshots every 100 ms while a writer writes A, then B: B never ahead"
truncate -s 8M "$W/d.img" "$W/e.img"
ctl origin add d --device "$W/d.img" >/dev/null
ctl origin add e --device "$W/e.img" >/dev/null
D=$(dev_of d)
E=$(dev_of e)
(
    i=0
    while [ ! -e "$W/stop-writer" ]; do
        i=$((i + 1))
        printf '%-4096s' "$i" | dd of="$D" bs=4096 count=1 oflag=direct,dsync conv=notrunc status=none
        printf '%-4096s' "$i" | dd of="$E" bs=4096 count=1 oflag=direct,dsync conv=notrunc status=none
    done
    echo "$i" >"$W/writer-rounds"
) &
WP=$!
sleep 1
NG=20
for n in $(seq 1 $NG); do
    ctl create "c$n" --origins d,e >/dev/null
    sleep 0.1
done
touch "$W/stop-writer"
wait "$WP"
counter() { dd if="$1" bs=4096 count=1 iflag=direct status=none | tr -d ' \0'; }
AHEAD=0
for n in $(seq 1 $NG); do
    SD=$(ctl activate "d@c$n")
    SE=$(ctl activate "e@c$n")
    CD=$(counter "$SD")
    CE=$(counter "$SE")
    ctl deactivate "d@c$n" >/dev/null
    ctl deactivate "e@c$n" >/dev/null
    [ "${CE:-0}" -le "${CD:-0}" ] || fail "group c$n: e's counter $CE is ahead of d's $CD"
    [ "${CD:-0}" -le $((${CE:-0} + 1)) ] || fail "group c$n: d's $CD, e's $CE"
    [ "$CD" != "$CE" ] && AHEAD=$((AHEAD + 1))
done
ok "$NG group snapshots over $(cat "$W/writer-rounds") writer rounds: e never ahead of d (d one ahead in $AHEAD)"
ctl delete c1 >/dev/null
[ "$(ctl --json list | jq '[.snapshots[] | select(.name == "c1")] | length')" = 0 ] \
    || fail "delete c1 left members"
ok "delete c1 removed both members"

step "a quota: d's writes that need more space get ENOSPC, e's go on"
used_of() { olist | jq -r ".origins[] | select(.name == \"$1\") | .used_bytes"; }
# c1's delete frees its chunks in a cleanup pass: d's use is settled once it ran
wait_reclaimed
U0=$(used_of d)
ctl origin quota d $((U0 + (128 << 10))) >/dev/null # two more 64 KiB chunks
ctl create q --origins d,e >/dev/null
for c in 1 2; do
    dd if=/dev/urandom of="$D" bs=64K seek=$c count=1 oflag=direct conv=notrunc status=none \
        || fail "d: chunk $c, inside the quota, refused"
done
if dd if=/dev/urandom of="$D" bs=64K seek=3 count=1 oflag=direct conv=notrunc status=none 2>"$W/q.err"; then
    fail "d: a write past its quota went through"
fi
grep -q "No space left" "$W/q.err" || fail "d: refused, but not with ENOSPC: $(cat "$W/q.err")"
for c in 1 2 3 4; do
    dd if=/dev/urandom of="$E" bs=64K seek=$c count=1 oflag=direct conv=notrunc status=none \
        || fail "e: chunk $c refused (d's quota is d's)"
done
[ "$(used_of d)" = $((U0 + (128 << 10))) ] || fail "d uses $(used_of d), not $U0 + 128 KiB"
log_has "write refused with ENOSPC: the origin's quota is full"
ctl origin quota d none >/dev/null
dd if=/dev/urandom of="$D" bs=64K seek=3 count=1 oflag=direct conv=notrunc status=none \
    || fail "d: refused with the quota lifted"
ctl delete q >/dev/null
ok "d: 2 chunks past its quota's start taken, the 3rd refused (ENOSPC), e unaffected; lifted, it goes"

step "a pool's other origins: receive into e, e over NBD, resize-origin d"
# d@r received into origin e (of d's size): e's device reads it. Our own stream
# keeps d@r's guid, which this store holds already (refused: a guid is one
# snapshot's); an rbd diff carries none, so e@r gets its own
dd if=/dev/urandom of="$D" bs=64K count=16 oflag=direct conv=notrunc status=none
ctl create d@r >/dev/null
ctl send d@r -o "$W/r.stream" 2>/dev/null || fail "send d@r"
if ctl receive --origin e -i "$W/r.stream" >"$W/recv.out" 2>&1; then
    fail "d@r's own stream received into the pool that holds d@r"
fi
grep -q "holds the stream's snapshot already" "$W/recv.out" || fail "receive of a guid the pool holds: $(cat "$W/recv.out")"
ctl send d@r --format rbd-diff -o "$W/r.rbd" 2>/dev/null || fail "send d@r --format rbd-diff"
ctl receive --origin e --format rbd-diff -i "$W/r.rbd" >"$W/recv.out" 2>&1 \
    || fail "receive --origin e: $(cat "$W/recv.out")"
[ "$(ctl --json list | jq -r '[.snapshots[] | select(.name == "r") | .origin] | sort | join(" ")')" = "d e" ] \
    || fail "r is not a snapshot of both d and e: $(ctl list)"
SR=$(ctl activate d@r)
# (files, not <(...): the guest has no /dev/fd)
dd if="$SR" of="$W/dr.img" bs=1M iflag=direct status=none
dd if="$E" of="$W/e.read" bs=1M iflag=direct status=none
cmp "$W/dr.img" "$W/e.read" || fail "e's device does not read what d@r reads after the receive"
ctl deactivate d@r >/dev/null
ok "d@r sent (rbd diff) and received into e: e's /dev/ublkbN reads d@r, e@r taken"
# origin e exported over NBD (export "e"), read with the kernel's NBD client
if command -v nbd-client >/dev/null && modprobe nbd nbds_max=2 2>/dev/null; then
    NBDSOCK=$(ctl export - --origin e | sed -n 's/^nbd+unix:\/\/\/e?socket=//p' | head -n 1)
    [ -S "$NBDSOCK" ] || fail "export - --origin e: no nbd+unix URI of export e"
    nbd-client -u -N e "$NBDSOCK" /dev/nbd0 >>"$W/nbd.log" 2>&1 || fail "nbd-client e: $(cat "$W/nbd.log")"
    dd if=/dev/nbd0 of="$W/e.nbd" bs=1M iflag=direct status=none
    cmp "$W/e.nbd" "$W/e.read" || fail "export e does not read what e's device reads"
    nbd-client -d /dev/nbd0 >>"$W/nbd.log" 2>&1 || true
    ctl unexport e >/dev/null
    ok "export - --origin e: nbd-client reads e's data"
else
    echo "  (no nbd-client or nbd module in this guest: NBD of e not tried)"
fi
# resize-origin d: online where the driver offers UPDATE_SIZE (7.x), refused on 6.12
A_SIZE=$(blockdev --getsize64 "$(dev_of a)")
truncate -s 16M "$W/d.img"
if ((($(st '.driver_features // 0') & 0x400) != 0)); then
    ctl resize-origin d >/dev/null || fail "resize-origin d"
    [ "$(blockdev --getsize64 "$D")" = $((16 << 20)) ] || fail "d's device is $(blockdev --getsize64 "$D") bytes, not 16 MiB"
    dd if=/dev/urandom of="$D" bs=64K seek=200 count=1 oflag=direct conv=notrunc status=none \
        || fail "a write to d's new part"
    ok "resize-origin d: d's /dev/ublkbN is 16 MiB and takes writes there"
else
    RC=0
    ctl resize-origin d 2>"$W/resize.err" || RC=$?
    [ "$RC" = 2 ] && grep -q UPDATE_SIZE "$W/resize.err" \
        || fail "resize-origin d without UPDATE_SIZE: exit $RC, $(cat "$W/resize.err")"
    truncate -s 8M "$W/d.img"
    ok "resize-origin d refused without UPDATE_SIZE (exit 2), nothing changed"
fi
[ "$(blockdev --getsize64 "$(dev_of a)")" = "$A_SIZE" ] || fail "a's device changed size"
ctl delete d@r >/dev/null && ctl delete e@r >/dev/null

step "create --freeze: dirty data is in the snapshot, its ext4 needs no recovery"
head -c 4M /dev/urandom >/mnt/pa/dirty
head -c 4M /dev/urandom >/mnt/pb/dirty
DS_A=$(sha256sum </mnt/pa/dirty)
DS_B=$(sha256sum </mnt/pb/dirty)
FZ=$(ctl --json create fz --freeze | jq -r '.frozen | join(",")')
[ "$FZ" = /mnt/pa ] || fail "create --freeze froze '$FZ', not /mnt/pa"
GZ=$(ctl --json create gz --origins origin,b --freeze | jq -r '.frozen | join(",")')
[ "$GZ" = /mnt/pa,/mnt/pb ] || fail "group --freeze froze '$GZ'"
for s in origin@fz origin@gz b@gz; do
    SD=$(ctl activate "$s")
    if dumpe2fs -h "$SD" 2>/dev/null | grep -q needs_recovery; then
        fail "$s: its ext4 needs journal recovery (not frozen)"
    fi
    mount -o ro "$SD" /mnt/sb
    want=$DS_A
    [ "${s%@*}" = b ] && want=$DS_B
    [ "$(sha256sum </mnt/sb/dirty)" = "$want" ] || fail "$s: the dirty file differs"
    umount /mnt/sb
    ctl deactivate "$s" >/dev/null
    ok "$s: clean ext4 (no recovery needed), the unsynced file in it"
done
ctl delete fz >/dev/null
ctl delete gz >/dev/null

step "a hung pre-hook never outlives its timeout; the post-hook runs anyway"
T1=$(date +%s)
expect_rc 3 ctl create hz --freeze --pre-hook 'sleep 60' --post-hook "touch $W/post-ran" --hook-timeout 2
[ $(($(date +%s) - T1)) -lt 15 ] || fail "the hung pre-hook held the create for $(($(date +%s) - T1)) s"
[ -e "$W/post-ran" ] || fail "the post-hook did not run"
[ "$(ctl --json list | jq '[.snapshots[] | select(.name == "hz")] | length')" = 0 ] \
    || fail "a snapshot was taken after the pre-hook failed"
touch /mnt/pa/still-writable && rm /mnt/pa/still-writable
ok "refused in $(($(date +%s) - T1)) s, no snapshot, post-hook ran, /mnt/pa writable"

step "kill -9 while writing to b; restart takes every device back"
for o in a b c; do (cd "/mnt/p$o" && sha256sum f*) >"$W/$o-now.sums"; done
sync
ctl create pre --origins origin,b,c >/dev/null
PID=$(daemon_pid)
dd if=/dev/urandom of=/mnt/pb/inflight bs=1M count=8 2>/dev/null &
DDP=$!
sleep 1
kill -9 "$PID"
wait "$DDP" || true
A2=$(start_daemon) || fail "the daemon did not restart"
[ "$A2" = "$A" ] || fail "origin a came back as $A2, not $A"
[ "$(dev_of b)" = "$B" ] && [ "$(dev_of c)" = "$C" ] || fail "b or c came back elsewhere"
for o in a b c; do
    [ "$(state_of "$o")" = served ] || fail "$o: $(state_of "$o")"
done
sync
for o in a b c; do verify_dir "/mnt/p$o" "$W/$o-now.sums" "$o after kill -9"; done
for o in a b c; do
    SD=$(ctl activate "$(oname "$o")@pre")
    mount -o ro,noload "$SD" /mnt/sb
    verify_dir /mnt/sb "$W/$o-now.sums" "group member $(oname "$o")@pre after kill -9"
    umount /mnt/sb
    ctl deactivate "$(oname "$o")@pre" >/dev/null
done

step "b's file missing at start: reported, a and c served"
for o in a b c; do umount "/mnt/p$o"; done
stop_daemon
mv "$W/b.img" "$W/b.away"
A3=$(start_daemon) || fail "the daemon did not start without b"
expect_rc 11 ctl origin list
SB=$(state_of b)
case $SB in missing*) ok "b: $SB" ;; *) fail "b: $SB" ;; esac
[ "$(state_of c)" = served ] || fail "c: $(state_of c)"
mount "$A3" /mnt/pa
verify_dir /mnt/pa "$W/a-now.sums" "a with b missing"
umount /mnt/pa
# b's snapshot reads b where it shares chunks with it: refused, with the reason
if ctl activate "$(oname b)@pre" >/dev/null 2>"$W/act.err"; then fail "b@pre activated with b missing"; fi
grep -q 'origin "b"' "$W/act.err" || fail "activate b@pre: $(cat "$W/act.err")"
ok "b@pre refused: $(head -c 160 "$W/act.err")"
stop_daemon
mv "$W/b.away" "$W/b.img"
start_daemon >/dev/null || fail "the daemon did not restart with b"
expect_rc 0 ctl origin list
mount "$(dev_of b)" /mnt/pb
verify_dir /mnt/pb "$W/b-now.sums" "b back"
umount /mnt/pb

step "merge of group pre: a, b and c roll back together"
for o in a b c; do
    mount "$(dev_of "$o")" "/mnt/p$o"
    write_files "/mnt/p$o" three
    umount "/mnt/p$o"
done
ctl merge pre >/dev/null
for o in a b c; do
    mount "$(dev_of "$o")" "/mnt/p$o"
    verify_dir "/mnt/p$o" "$W/$o-now.sums" "$o rolled back to pre"
    [ ! -e "/mnt/p$o/f1-three" ] || fail "$o: a file written after pre survived the merge"
    umount "/mnt/p$o"
done
[ "$(ctl --json list | jq '[.snapshots[] | select(.name == "pre")] | length')" = 0 ] \
    || fail "the group's members are still listed after its merge"
ok "the group's members are gone"

step "origin remove c: refused with a snapshot, then with it"
expect_rc 7 ctl origin remove c
ctl origin remove c --with-snapshots >/dev/null
[ -e "$C" ] && [ "$(dev_of c)" = "$C" ] && fail "c's device still served"
for _ in $(seq 1 50); do
    [ "$(ctl --json origin list | jq '.origins | length')" = 4 ] && break
    sleep 0.2
done
[ "$(ctl --json origin list | jq -r '[.origins[].name] | join(",")')" = origin,b,d,e ] \
    || fail "origins left: $(ctl --json origin list | jq -c '[.origins[].name]')"
ok "c removed"
stop_daemon
ctl check --store "$STORE" >/dev/null || fail "offline check found problems"
ok "offline check clean"

echo
echo "e2e_pool: PASS ($(($(date +%s) - T0)) s)"
