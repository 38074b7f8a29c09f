#!/bin/sh
# tests/vm/guest-stage2.sh - PID 1 of the test VM after switch_root.
#
# guest-init.sh (in the initramfs) has mounted everything; the root is the
# host's root (read-only 9p + tmpfs overlay) and the control share from
# run.sh is at /run/vm-ctl.  Run the job run.sh wrote (it sets the
# environment and cwd and execs the user's script), send its output to the
# control share (run.sh streams it), record the exit status, power off.

ctl=/run/vm-ctl
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

poweroff_now() {
    sync
    # reboot(RB_POWER_OFF) does not return.  Fallback: sysrq 'o', which is
    # asynchronous, so spin in a shell builtin meanwhile (an external
    # command such as sleep may fail with EIO as 9p goes away, and PID 1
    # exiting would panic the kernel).
    [ -x /bin/busybox ] && exec /bin/busybox poweroff -f
    echo o >/proc/sysrq-trigger
    while :; do :; done
}

if ! [ -f "$ctl/job.sh" ]; then
    echo "stage 2: $ctl/job.sh missing" | tee "$ctl/init-error" >/dev/console
    poweroff_now
fi

ip link set lo up 2>/dev/null
hostname ublk-vm 2>/dev/null

echo "[vm-stage2] running job" >/dev/console
/bin/sh "$ctl/job.sh" </dev/null >"$ctl/output.log" 2>&1
rc=$?
echo "[vm-stage2] job exited with status $rc" >/dev/console
if ! { echo "$rc" >"$ctl/status.tmp" && mv "$ctl/status.tmp" "$ctl/status"; }; then
    echo "[vm-stage2] cannot write status" >/dev/console
fi
poweroff_now
