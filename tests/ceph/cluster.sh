#!/usr/bin/env bash
# tests/ceph/cluster.sh — a throw-away single-host Ceph cluster on loopback (one mon,
# one mgr, one memstore OSD, auth none), for the rbd interop test. Sourced by
# tests/ceph/run.sh; not a cluster for data.
#
#   ceph_start DIR   start it with all state in DIR (sets CEPH_CONF, exports it);
#                    returns non-zero (and prints why) when it does not come up
#   ceph_stop        kill every daemon it started (by pid), never by name
#   ceph_log_tail    the last lines of each daemon's log
#
# Every wait is bounded (CEPH_WAIT seconds, default 60).

ceph_pids=()
CEPH_WAIT=${CEPH_WAIT:-60}

# A free TCP port on 127.0.0.1 (bind to port 0 and read what the kernel chose).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    while ! "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $end ]; then
            echo "ceph: timed out after ${limit}s waiting for $what" >&2
            return 1
        fi
        sleep 0.5
    done
}

# ceph CLI with a bound on every call (a mon that is down makes it hang).
cephq() { timeout 20 ceph --connect-timeout 10 "$@"; }

ceph_start() {
    local dir=$1
    CEPH_DIR=$dir
    mkdir -p "$dir"/{mon,mgr/ceph-x,osd/ceph-0,log,run}
    local fsid port
    fsid=$(cat /proc/sys/kernel/random/uuid)
    port=$(free_port)
    export CEPH_CONF=$dir/ceph.conf
    cat >"$CEPH_CONF" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
public network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon allow pool size one = true
mon allow pool delete = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
run dir = $dir/run
keyring = $dir/keyring
[mon]
mon data = $dir/mon
mon initial members = a
mon cluster log file = $dir/log/cluster.log
[mgr]
mgr data = $dir/mgr/ceph-x
mgr initial modules =
[osd]
osd data = $dir/osd/ceph-0
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-1073741824}
osd crush update on start = false
osd class update on start = false
osd max object name len = 256
osd max object namespace len = 64
CONF
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$dir/monmap" >/dev/null ||
        { echo "ceph: monmaptool failed" >&2; return 1; }
    ceph-mon -c "$CEPH_CONF" -i a --mkfs --monmap "$dir/monmap" 2>>"$dir/log/stderr-mkfs.log" ||
        { echo "ceph: ceph-mon --mkfs failed" >&2; return 1; }
    ceph-mon -c "$CEPH_CONF" -i a -f 2>>"$dir/log/stderr-mon.log" & ceph_pids+=($!)
    wait_for "$CEPH_WAIT" "the monitor (ceph -s)" cephq -s || return 1
    ceph-mgr -c "$CEPH_CONF" -i x -f 2>>"$dir/log/stderr-mgr.log" & ceph_pids+=($!)
    local osd
    osd=$(cephq osd create) || { echo "ceph: osd create failed" >&2; return 1; }
    ceph-osd -c "$CEPH_CONF" -i "$osd" --mkfs --osd-uuid "$(cat /proc/sys/kernel/random/uuid)" 2>>"$dir/log/stderr-mkfs.log" ||
        { echo "ceph: ceph-osd --mkfs failed" >&2; return 1; }
    cephq osd crush add-bucket localhost host >/dev/null &&
        cephq osd crush move localhost root=default >/dev/null &&
        cephq osd crush add "osd.$osd" 1.0 host=localhost >/dev/null ||
        { echo "ceph: crush setup failed" >&2; return 1; }
    ceph-osd -c "$CEPH_CONF" -i "$osd" -f 2>>"$dir/log/stderr-osd.log" & ceph_pids+=($!)
    wait_for "$CEPH_WAIT" "osd.$osd up" osd_up || return 1
    wait_for "$CEPH_WAIT" "an active mgr" mgr_active || return 1
}

osd_up() { cephq osd dump 2>/dev/null | grep -q '^osd\.0 up'; }
mgr_active() { cephq mgr stat 2>/dev/null | grep -q '"available": true'; }

ceph_stop() {
    local p
    for p in "${ceph_pids[@]}"; do kill "$p" 2>/dev/null; done
    local end=$((SECONDS + 10))
    for p in "${ceph_pids[@]}"; do
        while kill -0 "$p" 2>/dev/null; do
            [ $SECONDS -ge $end ] && { kill -9 "$p" 2>/dev/null; break; }
            sleep 0.2
        done
    done
    ceph_pids=()
}

ceph_log_tail() {
    local f
    for f in "$CEPH_DIR"/log/*.log; do
        [ -s "$f" ] || continue
        echo "--- ${f##*/} (last ${1:-20} lines)"
        tail -n "${1:-20}" "$f"
    done
}

# Every placement group active+clean (none creating, peering, ...).
pgs_clean() {
    local s
    s=$(cephq pg stat 2>/dev/null) || return 1
    [[ $s =~ ([0-9]+)\ pgs:\ ([0-9]+)\ active\+clean\; ]] && [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]
}
