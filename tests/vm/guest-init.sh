#!/bin/busybox sh
# tests/vm/guest-init.sh - /init of the test VM's initramfs (runs as PID 1).
#
# Built into the initramfs by setup.sh; run.sh boots it.  It:
#   1. loads the modules in /modules (9p, overlay, ublk_drv, ...) in order,
#   2. mounts the run.sh control share (tag "vmctl") and reads job.env,
#   3. mounts the host root read-only (tag "hostroot") with a tmpfs overlay
#      on top, and the writable results share (tag "vmout") at $VM_OUT,
#      plus /proc, /sys, /dev (devtmpfs), /tmp and /run inside it,
#   4. switch_root's into it, running tests/vm/guest-stage2.sh (read from
#      the host via 9p, so it can change without rebuilding the initramfs)
#      as the new PID 1; stage 2 runs the job and reports its status.
# Any failure here is written to init-error on the control share (when it
# is mounted) and to the serial console; the VM then powers off and run.sh
# reports it.  switch_root (not chroot) matters: kernel usermode helpers
# such as module autoloading (/sbin/modprobe) run in PID 1's root.

/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "[vm-init] $*"; }
fail() {
    say "FATAL: $*"
    grep -q " /ctl " /proc/mounts 2>/dev/null && echo "$*" >/ctl/init-error
    sync
    poweroff -f
    sleep 5
    exit 1          # PID 1 exiting panics; panic=-1 + -no-reboot ends QEMU
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
say "kernel $(uname -r), loading modules"

for ko in /modules/*.ko; do
    [ -e "$ko" ] || continue
    insmod "$ko" || fail "insmod $ko"
done

# Options for every 9p mount.  The host root is read-only, so it can use
# the page cache (cache=loose); writable shares use cache=none so that every
# write reaches the host at once (run.sh tails output.log live).
p9="trans=virtio,version=9p2000.L,msize=524288"

mkdir -p /ctl
mount -t 9p -o "$p9,cache=none" vmctl /ctl || fail "mount 9p vmctl"
[ -f /ctl/job.env ] || fail "no job.env on control share"
. /ctl/job.env     # VM_OUT, VM_KVER_MODDIR, VM_STAGE2

mkdir -p /lower /rw /newroot
mount -t 9p -o "ro,$p9,cache=${VM_ROOT_CACHE:-loose}" hostroot /lower || fail "mount 9p hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs /rw"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "mount overlay"

n=/newroot
# The host directories the job needs at their own paths (run.sh's `keep` list: the
# repo and the VM cache), when they are under /tmp or /run, would be hidden by the
# guest's own /tmp and /run below: hold their overlay view aside, bind it back after.
: >/kept
i=0
if [ -f /ctl/keep ]; then
    while IFS= read -r d; do
        case "$d" in /tmp/*|/run/*) ;; *) continue ;; esac
        [ -d "$n$d" ] || continue
        mkdir -p /keep/$i && mount -o bind "$n$d" /keep/$i || fail "hold $d"
        printf '%s %s\n' "$i" "$d" >>/kept
        i=$((i + 1))
    done </ctl/keep
fi
mount -t proc proc $n/proc || fail "mount $n/proc"
mount -t sysfs sysfs $n/sys || fail "mount $n/sys"
mount -t devtmpfs devtmpfs $n/dev || fail "mount $n/dev"
mkdir -p $n/dev/pts $n/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $n/dev/pts || fail "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $n/dev/shm || fail "mount /dev/shm"
mount -t tmpfs -o mode=1777 tmpfs $n/tmp || fail "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs $n/run || fail "mount /run"
[ -d /sys/kernel/debug ] && mount -t debugfs debugfs $n/sys/kernel/debug 2>/dev/null

# Read-only view of the whole host root (e.g. the host's /tmp, hidden by the
# guest's own /tmp) at /run/host.
mkdir -p $n/run/host $n/run/vm-ctl
mount -o bind /lower $n/run/host || fail "bind /run/host"
mount -o bind /ctl $n/run/vm-ctl || fail "bind /run/vm-ctl"

while read -r i d; do
    mkdir -p "$n$d" && mount -o bind "/keep/$i" "$n$d" || fail "bind $d back"
    umount "/keep/$i"
done </kept

# Results share, at the same path as on the host.
mkdir -p "$n$VM_OUT" || fail "mkdir $VM_OUT"
mount -t 9p -o "$p9,cache=none" vmout "$n$VM_OUT" || fail "mount 9p vmout at $VM_OUT"

# The guest kernel's modules (from the cache dir, via the host root) at
# /lib/modules/$(uname -r), so modprobe works in the guest (dm-mod, loop...).
kmods=$n/lib/modules/$(uname -r)
mkdir -p "$kmods" && mount -o bind "$n$VM_KVER_MODDIR" "$kmods" || fail "bind $kmods"

[ -f "$n$VM_STAGE2" ] || fail "stage 2 script $VM_STAGE2 not found"
say "switching root, stage 2: $VM_STAGE2"
umount /proc /sys 2>/dev/null
exec switch_root $n /bin/sh "$VM_STAGE2"
fail "switch_root failed"
