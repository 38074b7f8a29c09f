#!/usr/bin/env bash
# tests/vm/lib.sh - helpers shared by the guest-side test scripts (e2e_daemon.sh,
# e2e_merge.sh, e2e_space.sh, soak_kill.sh). Source it after setting SNAPD, SNAPCTL,
# ORIGIN, STORE, SOCK, STATE and LOG; it installs the ERR trap and sets T0.
#
#   step TEXT            a numbered heading with the seconds since T0
#   ok TEXT / fail TEXT  a passed check / the failure (with the daemon log and dmesg)
#   ctl ARGS...          snapctl on this daemon's socket
#   expect_rc CODE CMD   CMD must exit with CODE
#   start_daemon [SECS [ARGS...]]  start ublk-snapd in daemon mode (--queues
#                        $DAEMON_QUEUES, default 2, depth 32, then ARGS), print the
#                        origin device; with SECS (not 0), give up after that long
#   daemon_pid           the running daemon's pid
#   diag                 kernel stacks of the daemon's and fio's threads, blk-mq state,
#                        every blocked task (sysrq w) and dmesg: for hangs
#   watchdog SECS        run diag in the background if still running after SECS
#   sums DIR FILE        sha256 of every regular file under DIR, sorted
#   drop_caches          sync and drop the page cache
T0=$(date +%s)

step() { printf '\n== [%ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
fail() {
    trap - ERR
    printf 'FAIL: %s\n' "$*"
    echo "--- last lines of $LOG"
    tail -n 40 "$LOG" 2>/dev/null || true
    echo "--- kernel log"
    dmesg | tail -n 20 || true
    exit 1
}
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR
ctl() { "$SNAPCTL" --socket "$SOCK" "$@"; }
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want"
    ok "'$*' -> exit $rc"
}
# SNAPD_ARGS: extra ublk-snapd options for every script (e.g. "--zero-copy off";
# pass it into the guest with VM_PASS_ENV=SNAPD_ARGS).
# shellcheck disable=SC2086 # SNAPD_ARGS: word-split on purpose
start_daemon() {
    timeout "${1:-0}" "$SNAPD" --origin "$ORIGIN" --store "$STORE" --socket "$SOCK" \
        --state-dir "$STATE" --queues "${DAEMON_QUEUES:-2}" --queue-depth 32 ${SNAPD_ARGS:-} "${@:2}" 2>>"$LOG"
}
daemon_pid() { ctl --json status | jq -r .pid; }
diag() {
    local p t
    for p in $(pgrep -f 'ublk-snapd|fio' || true); do
        echo "--- pid $p: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | head -c 120)"
        for t in /proc/"$p"/task/*; do
            echo "  task ${t##*/} $(cat "$t"/comm 2>/dev/null) $(cat "$t"/wchan 2>/dev/null)"
            sed 's/^/    /' "$t"/stack 2>/dev/null | head -n 12
        done
    done
    for b in /sys/block/ublkb*; do echo "$b inflight: $(cat "$b"/inflight 2>/dev/null)"; done
    for b in /sys/kernel/debug/block/ublkb*; do
        grep -H . "$b"/hctx*/busy "$b"/hctx*/dispatch "$b"/requeue_list "$b"/state 2>/dev/null | head -n 20
    done
    echo w >/proc/sysrq-trigger 2>/dev/null || true # every blocked task's stack
    dmesg | tail -n 200
}
watchdog() {
    (
        sleep "$1"
        echo "!!! watchdog: still running after $1 s; dumping state"
        diag
    ) &
}
sums() { (cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z | xargs -0 -r sha256sum) >"$2"; }
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}
