#!/usr/bin/env bash
# tests/vm/lib.sh - helpers shared by the guest-side test scripts (e2e_daemon.sh,
# e2e_merge.sh, e2e_space.sh, e2e_grow.sh, e2e_resize.sh, soak_kill.sh). Source it
# after setting SNAPD, SNAPCTL, ORIGIN, STORE, SOCK, STATE and LOG (or set BIN, source
# it, then call e2e_layout); it installs the ERR trap and sets T0.
#
#   e2e_layout NAME      the one-daemon layout: SNAPD and SNAPCTL in $BIN, the work
#                        dir W (${E2E_DIR:-/tmp/e2e-NAME}), OUT (${VM_OUT:-$W}),
#                        ORIGIN, STORE, SOCK, STATE, and LOG ($OUT/ublk-snapd-NAME.log)
#   e2e_begin SECS TOOLS...  check the binaries and TOOLS, start the watchdog (SECS),
#                        make a fresh W and LOG, print where everything is
#   st FILTER            jq FILTER of `snapctl --json status`
#   stop_daemon [DEV]    SIGTERM the daemon and wait for it to exit (20 s); with DEV,
#                        that device must be gone too
#   owrite SKIP SEEK COUNT  write COUNT records of $NEW (from record SKIP, $R bytes
#                        each) to the origin device $ODEV at record SEEK, O_DIRECT;
#                        sets DD_RC, DD_OUT (records written), DD_ERR, and applies the
#                        records written to $EXPECT
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
# log_has PATTERN: the daemon's log (of e2e_layout) has a line matching it
log_has() { grep -q -- "$1" "$LOG" || fail "the daemon log lacks '$1'"; ok "log: $(grep -m1 -- "$1" "$LOG" | cut -c1-200)"; }
# wait_reclaimed: wait until no background job (a delete's cleanup pass, a merge) is left
wait_reclaimed() {
    for _ in $(seq 1 300); do
        [ "$(st '.jobs | length')" = 0 ] && return 0
        sleep 0.2
    done
    fail "background work still running after 60 s: $(st .jobs)"
}
e2e_layout() {
    SNAPD=$BIN/ublk-snapd
    SNAPCTL=$BIN/snapctl
    W=${E2E_DIR:-/tmp/e2e-$1}
    OUT=${VM_OUT:-$W}
    ORIGIN=$W/origin.img
    STORE=$W/store.img
    SOCK=$W/run/snapd.sock
    STATE=$W/run
    LOG=$OUT/ublk-snapd-$1.log
}
e2e_begin() {
    local t
    [ -x "$SNAPD" ] && [ -x "$SNAPCTL" ] || fail "binaries not found in $BIN"
    for t in "${@:2}"; do command -v "$t" >/dev/null || fail "$t missing"; done
    watchdog "$1"
    rm -rf "$W"
    mkdir -p "$W"
    : >"$LOG"
    echo "binaries: $BIN; work dir: $W; daemon log: $LOG; kernel $(uname -r)"
}
st() { ctl --json status | jq -r "$1"; }
stop_daemon() {
    local pid
    pid=$(daemon_pid)
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && fail "daemon still running after SIGTERM"
    [ -z "${1:-}" ] || [ ! -e "$1" ] || fail "$1 left after shutdown"
    ok "daemon $pid stopped cleanly"
}
owrite() {
    DD_RC=0
    dd if="$NEW" of="$ODEV" bs=$R skip="$1" seek="$2" count="$3" oflag=direct \
        conv=notrunc status=noxfer 2>"$W/dd.err" || DD_RC=$?
    DD_ERR=$(grep -v 'records' "$W/dd.err" || true)
    DD_OUT=$(sed -n 's/^\([0-9]*\)+0 records out$/\1/p' "$W/dd.err")
    [ -n "$DD_OUT" ] || fail "no record count from dd: $(cat "$W/dd.err")"
    dd if="$NEW" of="$EXPECT" bs=$R skip="$1" seek="$2" count="$DD_OUT" conv=notrunc status=none
}
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
